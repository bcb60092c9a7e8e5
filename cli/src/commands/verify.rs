//! `quiver verify`: online values against the offline join at each view's watermark.

use anyhow::Result;
use quiver_materializer::retrieve::Engine;
use quiver_materializer::select_views;
use quiver_materializer::verify::{VerifyJob, render, verify};

use crate::context::Context;
use crate::exit::UserError;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Entities to compare per view (all of them when a view has fewer).
    #[arg(long, default_value_t = 10_000)]
    pub sample: usize,
    /// Seed of the sample: the same seed picks the same entities.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Only these views (comma-separated); default: every online view.
    #[arg(long, value_delimiter = ',')]
    pub views: Vec<String>,
    /// The time aggregation views are compared at (RFC 3339 or a date, UTC); default: just
    /// before each one's watermark. A later time compares pushed tiles too.
    #[arg(long)]
    pub at: Option<String>,
}

pub fn run(ctx: &Context, args: Args) -> Result<()> {
    if args.sample == 0 {
        return Err(UserError("--sample must be at least 1".into()).into());
    }
    let at_ns = args
        .at
        .as_deref()
        .map(crate::commands::time::parse_time)
        .transpose()?;
    let repo = ctx.open()?;
    let store = repo.store()?;
    let version = ctx.current_version(&repo, store.as_ref())?;
    let views = select_views(&version, &args.views).map_err(|e| UserError(e.to_string()))?;
    let runtime = ctx.runtime()?;
    let reports = runtime.block_on(async {
        let online = quiver_online_store::open(&repo.config.online_store, &repo.root).await?;
        let job = VerifyJob {
            registry: &version,
            root: &repo.root,
            online,
            sample: args.sample,
            seed: args.seed,
            engine: Engine {
                cluster: quiver_materializer::cluster::Cluster::of(
                    &repo.config.engine,
                    &repo.root,
                )?,
                ..Engine::default()
            },
            key_ttl: repo.config.online_store.key_ttl(),
            recorded: quiver_materializer::materialize::recorded_watermarks(store.as_ref())?,
            at_ns,
        };
        let reports = verify(&job, &views).await;
        // What a cluster's retrievals staged (and this process's staging directory) goes.
        drop(job);
        quiver_materializer::retrieve::remove_staged().await;
        anyhow::Ok(reports?)
    })?;
    ctx.print(&reports, || render(&reports))?;
    let disagreeing: Vec<&str> = reports
        .iter()
        .filter(|r| !r.agrees())
        .map(|r| r.view.as_str())
        .collect();
    if !disagreeing.is_empty() {
        anyhow::bail!(
            "online values disagree with the offline join for {}",
            disagreeing.join(", ")
        );
    }
    Ok(())
}
