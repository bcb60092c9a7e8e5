//! `quiver quickstart`: the five-minute tour on the embedded defaults, no server needed.

use std::path::PathBuf;

use anyhow::Result;
use quiver_registry::store::{Applied, apply};
use serde_json::json;

use super::materialize::{execute, render};
use super::sample::SampleArgs;
use super::serve;
use crate::context::Context;
use crate::exit::UserError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where to create (or refresh) the sample repository.
    #[arg(long, default_value = "quiver_quickstart")]
    pub dir: PathBuf,
    /// Stop after materializing instead of serving.
    #[arg(long)]
    pub no_serve: bool,
    /// HTTP address to serve on.
    #[arg(long, default_value = "127.0.0.1:6566")]
    pub http: String,
    /// gRPC address to serve on ("" for none).
    #[arg(long, default_value = "127.0.0.1:6567")]
    pub grpc: String,
    #[command(flatten)]
    pub sample: SampleArgs,
}

/// Whether `dir` holds an earlier quickstart sample (which the run replaces); an error when it
/// holds another repository, which the quickstart must not overwrite.
fn refreshable(dir: &std::path::Path) -> Result<bool> {
    let config = dir.join("quiver.yaml");
    let text = match std::fs::read_to_string(&config) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => anyhow::bail!("{}: {e}", config.display()),
    };
    let project = text.lines().find_map(|line| {
        let line = line.split('#').next().unwrap_or_default().trim();
        let value = line.strip_prefix("project:")?.trim();
        Some(value.trim_matches(|c| c == '"' || c == '\'').to_string())
    });
    if project.as_deref() == Some("quickstart") {
        return Ok(true);
    }
    Err(UserError(format!(
        "{} holds a repository that is not the quickstart's sample (project `{}`); the quickstart \
         replaces its directory's files, so choose another --dir",
        dir.display(),
        project.as_deref().unwrap_or("?")
    ))
    .into())
}

pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let dir = if args.dir.is_absolute() {
        args.dir
    } else {
        ctx.repo.join(args.dir)
    };
    let started = std::time::Instant::now();
    let spec = args.sample.spec()?;
    if refreshable(&dir)? {
        // The sample's data is generated again (new values, new times ending now): what its
        // store, watermarks and run records say came from the old data. Start them afresh —
        // unless another process (a server, a Python store) has the store open: it would go on
        // serving the old file.
        let state = dir.join(".quiver");
        let store = state.join("online.redb");
        if store.exists() {
            drop(quiver_online_store::EmbeddedStore::open(&store)?);
        }
        match std::fs::remove_dir_all(&state) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                anyhow::bail!(
                    "{}: cannot remove the earlier sample's state: {e}",
                    state.display()
                )
            }
            _ => {}
        }
    }
    let summary = quiver_examples::scaffold(&dir, "quickstart", &spec, true)?;
    let repo_ctx = Context {
        repo: dir.clone(),
        config: None,
        output: ctx.output,
    };
    let repo = repo_ctx.open()?;
    let (store, prepared) = repo_ctx.prepare(&repo)?;
    let applied_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let version = match apply(store.as_ref(), &prepared, applied_at)? {
        Applied::Unchanged(v) => v,
        Applied::Committed(v) => v.version,
    };
    let end_ns = chrono::Utc::now()
        .timestamp_nanos_opt()
        .expect("now fits in i64 nanoseconds");
    let runs = execute(
        &repo_ctx,
        &repo,
        &[],
        quiver_materializer::Range::Incremental { end_ns },
    )?;
    let shown = dir.display();
    let value = json!({
        "repository": dir,
        "registry_version": version,
        "driver_rows": summary.driver_rows,
        "customer_rows": summary.customer_rows,
        "trip_rows": summary.trip_rows,
        "materialized": runs,
        "seconds": started.elapsed().as_secs_f64(),
    });
    ctx.print(&value, || {
        format!(
            "Quiver quickstart\n\
             \n\
             1. Wrote a sample repository to {shown}\n   \
                features/drivers.yaml, features/customers.yaml, features/activity.yaml\n   \
                (2 entities, 4 feature views — one of time-window aggregates —, 3 feature services)\n   \
                data/driver_stats.parquet ({} rows), data/customer_profile.parquet ({} rows),\n   \
                data/trip_events.parquet ({} trips), data/labels.parquet (an entity table for training)\n\
             2. Validated it against its Parquet sources and applied it: registry version {version}\n\
             3. Materialized the latest values into the embedded online store ({shown}/.quiver/online.redb):\n{}\
             \n\
             Try next:\n  \
               quiver -C {shown} online get driver_hourly_stats --key driver_id=1001\n  \
               quiver -C {shown} online get customer_profile --key customer_id=1\n  \
               quiver -C {shown} online get driver_activity --key driver_id=1001   # windows at now\n  \
               quiver -C {shown} registry list\n  \
               quiver -C {shown} registry describe driver_hourly_stats\n  \
               quiver -C {shown} plan                  # edit features/*.yaml first to see a diff\n  \
               quiver -C {shown} registry history\n  \
               quiver -C {shown} materialize-incremental   # picks up where the last run stopped\n  \
               quiver -C {shown} retrieve --entities {shown}/data/labels.parquet --features model_v1 --output train.parquet\n  \
               quiver -C {shown} verify                # online values = offline join? (with the server stopped:\n  \
                                                        # the embedded store is one process at a time)\n\
             \n\
             Done in {:.2}s.\n",
            summary.driver_rows,
            summary.customer_rows,
            summary.trip_rows,
            render(&runs).lines().map(|l| format!("   {l}\n")).collect::<String>(),
            started.elapsed().as_secs_f64()
        )
    })?;
    if args.no_serve {
        return Ok(());
    }
    println!(
        "\n4. Serving it (Ctrl-C to stop). Look at it in a browser:\n\n  \
         console: http://{http}/ui\n\n\
         Or ask it from another terminal:\n\n  \
         curl -s {http}/get-online-features -H 'Content-Type: application/json' \\\n    \
         -d '{{\"feature_service\":\"model_v1\",\"entities\":{{\"driver_id\":[1001,1002],\"customer_id\":[1,2]}}}}'\n\n  \
         curl -s {http}/get-online-features -H 'Content-Type: application/json' \\\n    \
         -d '{{\"feature_service\":\"driver_activity_v1\",\"entities\":{{\"driver_id\":[1001]}}}}'\n\n  \
         curl -s -X POST '{http}/get-historical-features?features=model_v1' --data-binary @{shown}/data/labels.parquet -o train.arrows\n",
        http = args.http
    );
    serve::run(
        &repo_ctx,
        serve::Args {
            http: Some(args.http),
            grpc: Some(args.grpc),
        },
    )
}
