//! `quiver init DIR`: scaffold a sample repository.

use std::path::PathBuf;

use anyhow::Result;

use super::sample::SampleArgs;
use crate::context::Context;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Directory to create the repository in.
    pub dir: PathBuf,
    #[command(flatten)]
    pub sample: SampleArgs,
}

pub fn run(ctx: &Context, args: Args) -> Result<()> {
    let dir = if args.dir.is_absolute() {
        args.dir
    } else {
        ctx.repo.join(args.dir)
    };
    let project = quiver_examples::project_name(&dir);
    let summary = quiver_examples::scaffold(&dir, &project, &args.sample.spec()?, false)?;
    let value = serde_json::json!({
        "repository": dir,
        "project": project,
        "driver_rows": summary.driver_rows,
        "customer_rows": summary.customer_rows,
        "trip_rows": summary.trip_rows,
    });
    ctx.print(&value, || {
        format!(
            "Created a Quiver repository in {} (project `{}`)\n  features/drivers.yaml, features/customers.yaml, features/activity.yaml\n  data/driver_stats.parquet ({} rows), data/customer_profile.parquet ({} rows), data/trip_events.parquet ({} trips)\n\nNext:\n  cd {}\n  quiver plan\n  quiver apply\n",
            dir.display(),
            project,
            summary.driver_rows,
            summary.customer_rows,
            summary.trip_rows,
            dir.display()
        )
    })
}
