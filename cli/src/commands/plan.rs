//! `quiver plan` and `quiver apply`.

use anyhow::Result;
use quiver_registry::store::{Applied, apply as commit};
use serde_json::json;

use crate::context::Context;

pub fn plan(ctx: &Context) -> Result<()> {
    let repo = ctx.open()?;
    let (_, prepared) = ctx.prepare(&repo)?;
    ctx.print(&prepared.plan, || prepared.plan.render())
}

pub fn apply(ctx: &Context) -> Result<()> {
    let repo = ctx.open()?;
    let (store, prepared) = ctx.prepare(&repo)?;
    let applied_at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    match commit(store.as_ref(), &prepared, applied_at)? {
        Applied::Unchanged(version) => ctx.print(
            &json!({"changed": false, "version": version, "hash": prepared.next.content_hash()}),
            || format!("No changes: registry version {version} is current.\n"),
        ),
        Applied::Committed(v) => ctx.print(
            &json!({"changed": true, "version": v.version, "hash": v.hash, "plan": prepared.plan}),
            || {
                let mut out = prepared.plan.render_applied(v.version);
                out.push_str(&format!(
                    "Applied registry version {} (content {}) to {}.\n",
                    v.version,
                    &v.hash[..12],
                    store.location()
                ));
                out
            },
        ),
    }
}
