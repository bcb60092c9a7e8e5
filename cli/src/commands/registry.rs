//! `quiver registry list|describe|history`: read the applied registry.

use anyhow::Result;
use quiver_registry::store::RegistryVersion;
use quiver_registry::{FeatureView, Registry};
use serde_json::json;

use crate::context::Context;
use crate::exit::UserError;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Entities, sources, feature views and services of the current version.
    List,
    /// One feature view, feature service, entity or source, in full.
    Describe {
        /// Its name.
        name: String,
        /// A registry version other than the current one.
        #[arg(long)]
        version: Option<u64>,
    },
    /// Every applied version, oldest first.
    History,
}

pub fn run(ctx: &Context, cmd: Command) -> Result<()> {
    let repo = ctx.open()?;
    let store = repo.store()?;
    let current = |version: Option<u64>| -> Result<RegistryVersion> {
        match version {
            Some(v) => {
                let version = store.get(v)?;
                crate::context::same_project(&repo, store.as_ref(), &version)?;
                Ok(version)
            }
            None => ctx.current_version(&repo, store.as_ref()),
        }
    };
    match cmd {
        Command::List => {
            let v = current(None)?;
            let r = &v.registry;
            let value = json!({
                "version": v.version,
                "hash": v.hash,
                "entities": r.entities.keys().collect::<Vec<_>>(),
                "sources": r.sources.keys().collect::<Vec<_>>(),
                "push_sources": r.push_sources.values().map(|p| json!({
                    "name": p.name, "columns": p.schema.len(), "batch_source": p.batch_source,
                })).collect::<Vec<_>>(),
                "feature_views": r.feature_views.values().map(|f| json!({
                    "name": f.name, "entities": f.entities, "features": f.features.len(),
                    "ttl": f.ttl.to_string(), "online": f.online, "generation": f.generation,
                })).collect::<Vec<_>>(),
                "feature_services": r.feature_services.values().map(|s| json!({
                    "name": s.name, "features": s.features.len(),
                })).collect::<Vec<_>>(),
            });
            ctx.print(&value, || render_list(&v))
        }
        Command::Describe { name, version } => {
            let v = current(version)?;
            describe(ctx, &v.registry, &name)
        }
        Command::History => {
            if let Some(latest) = store.latest()? {
                crate::context::same_project(&repo, store.as_ref(), &latest)?;
            }
            let history = store.history()?;
            let location = store.location();
            ctx.print(&history, || {
                if history.is_empty() {
                    return format!(
                        "No registry versions in {location} yet: run `quiver apply` first.\n"
                    );
                }
                let mut out = format!(
                    "{:>7}  {:<20}  {:<12}  {:>5}  {:>8}\n",
                    "VERSION", "APPLIED", "HASH", "VIEWS", "SERVICES"
                );
                for h in &history {
                    out.push_str(&format!(
                        "{:>7}  {:<20}  {:<12}  {:>5}  {:>8}\n",
                        h.version,
                        h.applied_at,
                        &h.hash[..12.min(h.hash.len())],
                        h.feature_views,
                        h.feature_services
                    ));
                }
                out
            })
        }
    }
}

fn render_list(v: &RegistryVersion) -> String {
    let r = &v.registry;
    let mut out = format!(
        "Project `{}`, registry version {} ({})\n",
        r.project,
        v.version,
        &v.hash[..12]
    );
    out.push_str("\nEntities:\n");
    for e in r.entities.values() {
        let keys: Vec<String> = e
            .join_keys
            .iter()
            .map(|k| format!("{}: {}", k.name, k.value_type))
            .collect();
        out.push_str(&format!("  {:<24} {}\n", e.name, keys.join(", ")));
    }
    out.push_str("\nSources:\n");
    for s in r.sources.values() {
        out.push_str(&format!("  {:<24} {}\n", s.name, s.path));
    }
    if !r.push_sources.is_empty() {
        out.push_str("\nPush sources:\n");
        for p in r.push_sources.values() {
            let batch = p
                .batch_source
                .as_deref()
                .map(|b| format!("history in `{b}`"))
                .unwrap_or_else(|| "push only".into());
            out.push_str(&format!(
                "  {:<24} {} columns, {batch}\n",
                p.name,
                p.schema.len()
            ));
        }
    }
    out.push_str("\nFeature views:\n");
    for f in r.feature_views.values() {
        let span = match &f.aggregations {
            Some(a) => format!("hop {}", a.hop),
            None => format!("ttl {}", f.ttl),
        };
        out.push_str(&format!(
            "  {:<24} {} {}, entities [{}], {span}, {}, generation {}\n",
            f.name,
            f.features.len(),
            if f.aggregations.is_some() {
                "aggregates"
            } else {
                "features"
            },
            f.entities.join(", "),
            if f.online { "online" } else { "offline only" },
            f.generation
        ));
    }
    out.push_str("\nFeature services:\n");
    for s in r.feature_services.values() {
        out.push_str(&format!("  {:<24} {} features\n", s.name, s.features.len()));
    }
    out
}

fn describe(ctx: &Context, r: &Registry, name: &str) -> Result<()> {
    if let Some(view) = r.feature_views.get(name) {
        return ctx.print(view, || render_view(r, view));
    }
    if let Some(s) = r.feature_services.get(name) {
        return ctx.print(s, || {
            let mut out = format!("Feature service `{}`\n", s.name);
            if !s.description.is_empty() {
                out.push_str(&format!("  {}\n", s.description));
            }
            for f in &s.features {
                out.push_str(&format!("  {f}\n"));
            }
            out
        });
    }
    if let Some(e) = r.entities.get(name) {
        return ctx.print(e, || {
            format!("{}\n", serde_json::to_string_pretty(e).unwrap_or_default())
        });
    }
    if let Some(s) = r.sources.get(name) {
        return ctx.print(s, || {
            format!("{}\n", serde_json::to_string_pretty(s).unwrap_or_default())
        });
    }
    if let Some(p) = r.push_sources.get(name) {
        return ctx.print(p, || {
            format!("{}\n", serde_json::to_string_pretty(p).unwrap_or_default())
        });
    }
    let names = r
        .feature_views
        .keys()
        .chain(r.feature_services.keys())
        .chain(r.entities.keys())
        .chain(r.sources.keys())
        .chain(r.push_sources.keys())
        .map(String::as_str);
    let hint = quiver_registry::did_you_mean(name, names)
        .unwrap_or_else(|| "see `quiver registry list`".into());
    Err(UserError(format!("nothing named `{name}` in the registry; {hint}")).into())
}

fn render_view(r: &Registry, v: &FeatureView) -> String {
    let mut out = format!("Feature view `{}` (generation {})\n", v.name, v.generation);
    if !v.description.is_empty() {
        out.push_str(&format!("  {}\n", v.description));
    }
    let keys: Vec<String> = r
        .join_keys(v)
        .iter()
        .map(|k| format!("{} {}", k.name, k.value_type))
        .collect();
    out.push_str(&format!(
        "  entities:  {} (join keys: {})\n",
        v.entities.join(", "),
        keys.join(", ")
    ));
    out.push_str(&format!("  source:    {}\n", v.source));
    if let Some(q) = &v.query {
        out.push_str(&format!("  query:     {q}\n"));
    }
    match &v.aggregations {
        Some(a) => out.push_str(&format!("  hop:       {}\n", a.hop)),
        None => out.push_str(&format!(
            "  ttl:       {}\n",
            if v.ttl.is_unbounded() {
                "unbounded".to_string()
            } else {
                v.ttl.to_string()
            }
        )),
    }
    out.push_str(&format!("  online:    {}\n", v.online));
    if !v.owner.is_empty() {
        out.push_str(&format!("  owner:     {}\n", v.owner));
    }
    if let Some(a) = &v.aggregations {
        out.push_str("  aggregations:\n");
        for (item, f) in a.items.iter().zip(&v.features) {
            let over = item
                .column
                .as_deref()
                .map_or("events".to_string(), |c| format!("`{c}`"));
            out.push_str(&format!(
                "    {:<24} {:<16} {}({over}) over {}\n",
                f.name,
                f.value_type.to_string(),
                item.function,
                item.window
            ));
        }
        return out;
    }
    out.push_str("  features:\n");
    for f in &v.features {
        out.push_str(&format!(
            "    {:<24} {:<16} {}\n",
            f.name,
            f.value_type.to_string(),
            f.description
        ));
    }
    out
}
