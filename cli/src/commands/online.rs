//! `quiver online get VIEW --key k=v`: what the online store holds for one entity (debugging aid).

use anyhow::Result;
use quiver_feature_server::Snapshot;
use quiver_feature_server::http::value_json;
use quiver_feature_server::service::{feature_status, is_outside_max_age};
use quiver_online_store::key_codec::{KeyValue, entity_key, online_key};
use quiver_registry::{ScalarType, ValueType};
use serde_json::{Value as Json, json};

use crate::context::Context;
use crate::exit::UserError;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Show one entity's stored values of a feature view.
    Get {
        /// The feature view.
        view: String,
        /// A join key value, `name=value`; one per join key of the view.
        #[arg(long = "key", required = true)]
        keys: Vec<String>,
    },
}

pub fn run(ctx: &Context, cmd: Command) -> Result<()> {
    let Command::Get { view, keys } = cmd;
    let repo = ctx.open()?;
    let version = ctx.current_version(&repo, repo.store()?.as_ref())?;
    let registry = &version.registry;
    let fv = registry.feature_views.get(&view).ok_or_else(|| {
        let hint =
            quiver_registry::did_you_mean(&view, registry.feature_views.keys().map(String::as_str))
                .map(|h| format!("; {h}"))
                .unwrap_or_default();
        UserError(format!("unknown feature view `{view}`{hint}"))
    })?;
    let join_keys = registry.join_keys(fv);
    let mut given: Vec<(String, String)> = Vec::new();
    for k in &keys {
        let (name, value) = k
            .split_once('=')
            .ok_or_else(|| UserError(format!("--key `{k}`: write `name=value`")))?;
        given.push((name.to_string(), value.to_string()));
    }
    let mut values = Vec::new();
    for jk in &join_keys {
        let (_, text) = given.iter().find(|(n, _)| *n == jk.name).ok_or_else(|| {
            UserError(format!(
                "view `{view}` needs --key {}=… (its join keys: {})",
                jk.name,
                join_keys
                    .iter()
                    .map(|k| k.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })?;
        values.push(match jk.value_type {
            ValueType::Scalar(ScalarType::Int32 | ScalarType::Int64) => KeyValue::Int(
                text.parse()
                    .map_err(|_| UserError(format!("--key {}={text}: not an integer", jk.name)))?,
            ),
            ValueType::Scalar(ScalarType::Bytes) => KeyValue::Bytes(text.as_bytes().to_vec()),
            _ => KeyValue::Str(text.clone()),
        });
    }
    if let Some((extra, _)) = given
        .iter()
        .find(|(n, _)| !join_keys.iter().any(|k| k.name == *n))
    {
        return Err(UserError(format!("`{extra}` is not a join key of view `{view}`")).into());
    }
    let snapshot = Snapshot::new(version.clone());
    let plan = &snapshot.views[&fv.name];
    let key = online_key(&plan.prefix, &entity_key(&values));
    let blob = ctx.runtime()?.block_on(async {
        let store = quiver_online_store::open(&repo.config.online_store, &repo.root).await?;
        anyhow::Ok(
            store
                .read(std::slice::from_ref(&key))
                .await?
                .pop()
                .flatten(),
        )
    })?;
    let Some(blob) = blob else {
        let value = json!({"key": key, "found": false});
        return ctx.print(&value, || {
            format!("{key}: not found (materialize the view first?)\n")
        });
    };
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX);
    let decoded = plan.decode(&blob, now)?;
    let age_s = (now - decoded.event_ns) as f64 / 1e9;
    let expired = is_outside_max_age(decoded.event_ns, plan.ttl_ns, now);
    let features: Vec<Json> = fv
        .features
        .iter()
        .enumerate()
        .map(|(i, f)| {
            // The status serving would answer; the value as stored, even when too old to serve.
            let status = feature_status(&decoded, i, plan.ttl_ns, now).name();
            let value = match decoded.values.get(i) {
                Some(Some(v)) => value_json(v),
                _ => Json::Null,
            };
            json!({"name": f.name, "type": f.value_type.to_string(), "status": status, "value": value})
        })
        .collect();
    let ts = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    };
    let value = json!({
        "key": key,
        "found": true,
        "event_timestamp": ts(decoded.event_ns),
        "created_timestamp": decoded.created_ns.map(ts),
        "age_seconds": age_s,
        "outside_ttl": expired,
        "features": features,
    });
    ctx.print(&value, || {
        let mut out = format!(
            "{key}\n  event time {} (age {:.0}s{})\n",
            ts(decoded.event_ns),
            age_s,
            if expired {
                format!(", older than ttl {}: served as OUTSIDE_MAX_AGE", fv.ttl)
            } else {
                String::new()
            }
        );
        for f in &features {
            out.push_str(&format!(
                "  {:<24} {:<14} {:<10} {}\n",
                f["name"].as_str().unwrap_or_default(),
                f["type"].as_str().unwrap_or_default(),
                f["status"].as_str().unwrap_or_default(),
                f["value"]
            ));
        }
        out
    })
}
