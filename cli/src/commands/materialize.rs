//! `quiver materialize START END` and `quiver materialize-incremental [END]`.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use quiver_materializer::{Job, Progress, Range, materialize, select_views};
use quiver_registry::store::MaterializationRun;

use super::time::parse_time;
use crate::context::Context;
use crate::exit::UserError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Start of the range, inclusive (RFC 3339, or a date: 2026-01-01).
    pub start: String,
    /// End of the range, exclusive.
    pub end: String,
    /// Only these views (comma-separated); default: every online view.
    #[arg(long, value_delimiter = ',')]
    pub views: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct IncrementalArgs {
    /// End of the range, exclusive; default: now.
    pub end: Option<String>,
    /// Only these views (comma-separated); default: every online view.
    #[arg(long, value_delimiter = ',')]
    pub views: Vec<String>,
}

pub fn fixed(ctx: &Context, args: Args) -> Result<()> {
    let (start_ns, end_ns) = (parse_time(&args.start)?, parse_time(&args.end)?);
    if start_ns >= end_ns {
        return Err(UserError(format!(
            "START ({}) must be before END ({})",
            args.start, args.end
        ))
        .into());
    }
    run(ctx, &args.views, Range::Fixed { start_ns, end_ns })
}

pub fn incremental(ctx: &Context, args: IncrementalArgs) -> Result<()> {
    let end_ns = match &args.end {
        Some(end) => parse_time(end)?,
        None => chrono::Utc::now()
            .timestamp_nanos_opt()
            .expect("now fits in i64 nanoseconds"),
    };
    run(ctx, &args.views, Range::Incremental { end_ns })
}

/// Prints the runs that committed — all of them, or on a failure part-way the ones before the
/// failing view (stdout keeps its shape, so a scheduler reading JSON sees exactly what moved) —
/// then returns the failure.
fn run(ctx: &Context, views: &[String], range: Range) -> Result<()> {
    let repo = ctx.open()?;
    match execute(ctx, &repo, views, range) {
        Ok(runs) => ctx.print(&runs, || render(&runs)),
        Err(e) => {
            if let Some(quiver_materializer::Error::ViewFailed { committed, .. }) =
                e.downcast_ref::<quiver_materializer::Error>()
            {
                ctx.print(committed, || render(committed))?;
            }
            Err(e)
        }
    }
}

/// Materializes the applied registry's `views` (all online views when empty) over `range`.
pub fn execute(
    ctx: &Context,
    repo: &quiver_registry::Repository,
    views: &[String],
    range: Range,
) -> Result<Vec<MaterializationRun>> {
    let registry_store = repo.store()?;
    let version = ctx.current_version(repo, registry_store.as_ref())?;
    let runtime = ctx.runtime()?;
    runtime.block_on(async {
        let online = quiver_online_store::open(&repo.config.online_store, &repo.root).await?;
        let progress = ctx.output == crate::Output::Text;
        let target = Target {
            repo,
            version: &version,
            registry_store: registry_store.as_ref(),
            online,
        };
        run_views(&target, views, range, progress).await
    })
}

/// Where a materialization writes: the repository's applied `version`, recorded in
/// `registry_store`, its values in `online`.
#[derive(Debug)]
pub struct Target<'a> {
    pub repo: &'a quiver_registry::Repository,
    pub version: &'a quiver_registry::store::RegistryVersion,
    pub registry_store: &'a dyn quiver_registry::store::RegistryStore,
    pub online: Arc<dyn quiver_online_store::OnlineStore>,
}

/// Materializes `views` (all online views when empty) of `target` over `range`, with a progress
/// bar on stderr when `progress` is set and stderr is a terminal.
pub async fn run_views(
    target: &Target<'_>,
    views: &[String],
    range: Range,
    progress: bool,
) -> Result<Vec<MaterializationRun>> {
    let views = select_views(target.version, views).map_err(|e| UserError(e.to_string()))?;
    let config = &target.repo.config.online_store;
    let job = Job {
        registry: target.version,
        root: &target.repo.root,
        online: target.online.clone(),
        registry_store: target.registry_store,
        key_ttl: config.key_ttl(),
        allow_eviction: config.allow_eviction(),
        partitions: std::thread::available_parallelism().map_or(2, |n| n.get()),
        cluster: quiver_materializer::cluster::Cluster::of(
            &target.repo.config.engine,
            &target.repo.root,
        )?,
    };
    let bar = Bar::new(progress);
    let runs = materialize(&job, &views, range, &bar).await;
    bar.finish();
    Ok(runs?)
}

/// A byte count for people: `512 B`, `3.4 MiB`.
pub(crate) fn bytes_text(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut v = b as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

pub fn render(runs: &[MaterializationRun]) -> String {
    let mut out = String::new();
    for r in runs {
        if r.rows_read == 0 && r.start.as_deref() >= Some(r.end.as_str()) {
            let future =
                chrono::DateTime::parse_from_rfc3339(&r.end).is_ok_and(|w| w > chrono::Utc::now());
            out.push_str(&format!(
                "{:<24} up to date (watermark {}){}\n",
                r.view,
                r.end,
                if future {
                    " — IN THE FUTURE: events before it that arrive later are never picked up; materialize that range explicitly"
                } else {
                    ""
                }
            ));
            continue;
        }
        let files = match (r.files_read, r.bytes_read, &r.engine) {
            (Some(f), Some(b), _) => format!(" ({f} files, {})", bytes_text(b)),
            (_, _, Some(cluster)) => format!(" (on {cluster})"),
            _ => String::new(),
        };
        out.push_str(&format!(
            "{:<24} {} rows read{files}, {} entities, {} keys written in {:.2}s  [{} .. {})\n",
            r.view,
            r.rows_read,
            r.entities,
            r.keys_written,
            r.seconds,
            r.start.as_deref().unwrap_or("beginning"),
            r.end
        ));
        if let Some(note) = &r.watermark_note {
            out.push_str(&format!("{:<24} ! {note}\n", ""));
        }
        for warning in &r.warnings {
            out.push_str(&format!("{:<24} ! {warning}\n", ""));
        }
    }
    out
}

/// A progress bar on stderr when it is a terminal; silent otherwise.
struct Bar {
    bar: Option<Arc<ProgressBar>>,
}

impl Bar {
    fn new(enabled: bool) -> Self {
        let bar = (enabled && std::io::IsTerminal::is_terminal(&std::io::stderr())).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.enable_steady_tick(Duration::from_millis(120));
            Arc::new(bar)
        });
        Bar { bar }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn view_started(&self, view: &str) {
        if let Some(b) = &self.bar {
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix}: {msg}").expect("valid template"),
            );
            b.set_prefix(view.to_string());
            b.set_message("reading");
        }
    }
    fn rows_read(&self, rows: u64) {
        if let Some(b) = &self.bar {
            b.set_message(format!("read {rows} rows"));
        }
    }
    fn keys_written(&self, keys: u64, of: u64) {
        if let Some(b) = &self.bar {
            b.set_message(format!("written {keys}/{of} keys"));
        }
    }
}
