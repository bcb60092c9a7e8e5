//! `verify`: the guarantee against training/serving skew, checked. For a sample of each online
//! view's entities, the value the online store holds must equal what point-in-time retrieval
//! computes from the offline source at the view's watermark (just before it, as materialization
//! ranges end exclusively), ignoring ttl (the store keeps a value until it is replaced; the ttl
//! is applied when serving).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, TimestampNanosecondArray};
use arrow::compute::concat_batches;
use arrow::datatypes::{Field as ArrowField, Schema};
use datafusion::prelude::{cast as cast_expr, ident, lit};
use futures::TryStreamExt;
use quiver_online_store::OnlineStore;
use quiver_online_store::key_codec::{online_key, view_prefix};
use quiver_online_store::value_codec::{Decoded, Value, decode};
use quiver_registry::store::RegistryVersion;
use quiver_registry::{FeatureRef, FeatureView, Field, Ttl};
use rand::SeedableRng;
use rand::seq::index::sample;
use serde::Serialize;

use crate::columns::{Layout, Rows, key_type, utc_ns};
use crate::error::{Error, Result};
use crate::materialize::rfc3339;
use crate::retrieve::{Engine, EntityInput, Options, Request, retrieve, stream_error};
use crate::source::{session, view_input};

/// How many examples of disagreement a report keeps.
const EXAMPLES: usize = 5;

#[derive(Debug)]
pub struct VerifyJob<'a> {
    pub registry: &'a RegistryVersion,
    pub root: &'a Path,
    pub online: Arc<dyn OnlineStore>,
    /// Entities per view.
    pub sample: usize,
    pub seed: u64,
    pub engine: Engine,
    /// Online keys expire at event time + ttl (Redis `key_ttl: true`): an offline winner older
    /// than that is expected to be gone online, and is counted as expired, not missing.
    pub key_ttl: bool,
    /// What run records say each (view, generation) was materialized to
    /// ([`crate::materialize::recorded_watermarks`]): a view the store has no watermark for,
    /// though recorded, lost its data.
    pub recorded: std::collections::HashMap<(String, u64), String>,
}

/// Agreement of one feature over the sample.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct FeatureAgreement {
    pub feature: String,
    pub matched: u64,
    pub mismatched: u64,
    /// The offline join has a value row, the online store has nothing for the entity.
    pub missing: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ViewReport {
    pub view: String,
    /// RFC 3339; `None`: never materialized, nothing to compare.
    pub watermark: Option<String>,
    pub entities: u64,
    pub sampled: u64,
    /// Entities whose online value comes from a different (event, created) time than offline.
    pub time_mismatches: u64,
    /// Entities with no online value because their key expired (`key_ttl`), as it should.
    pub expired: u64,
    /// Entities whose online value is from a row at or after the watermark (written by an
    /// explicit range past a gap, or a run still going): newer than what verify compares with,
    /// so not compared.
    pub ahead: u64,
    /// Entities whose online value is damaged (checksum mismatch, or it does not decode): never
    /// served (`NOT_FOUND`), replaced by the next materialization of its range.
    pub corrupt: u64,
    /// Set when the online store has no watermark for a materialized generation: its data is
    /// gone (wiped, flushed, evicted).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lost: Option<String>,
    pub features: Vec<FeatureAgreement>,
    /// A few disagreements, described.
    pub examples: Vec<String>,
}

impl ViewReport {
    pub fn agrees(&self) -> bool {
        self.lost.is_none()
            && self.corrupt == 0
            && self.time_mismatches == 0
            && self
                .features
                .iter()
                .all(|f| f.mismatched == 0 && f.missing == 0)
    }
}

/// Equal as stored: floats bit for bit (so NaN equals NaN), lists element by element.
fn same(a: &Option<Value>, b: &Option<Value>) -> bool {
    match (a, b) {
        (Some(Value::Float32(x)), Some(Value::Float32(y))) => x.to_bits() == y.to_bits(),
        (Some(Value::Float64(x)), Some(Value::Float64(y))) => x.to_bits() == y.to_bits(),
        (Some(Value::List(x)), Some(Value::List(y))) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        _ => a == b,
    }
}

pub async fn verify(job: &VerifyJob<'_>, views: &[&FeatureView]) -> Result<Vec<ViewReport>> {
    let mut reports = Vec::new();
    for view in views {
        reports.push(verify_view(job, view).await?);
    }
    Ok(reports)
}

async fn verify_view(job: &VerifyJob<'_>, view: &FeatureView) -> Result<ViewReport> {
    let registry = &job.registry.registry;
    let project = &registry.project;
    let mut report = ViewReport {
        view: view.name.clone(),
        watermark: None,
        entities: 0,
        sampled: 0,
        time_mismatches: 0,
        expired: 0,
        ahead: 0,
        corrupt: 0,
        lost: None,
        features: view
            .features
            .iter()
            .map(|f| FeatureAgreement {
                feature: f.name.clone(),
                ..Default::default()
            })
            .collect(),
        examples: Vec::new(),
    };
    let Some(watermark) = job
        .online
        .watermark(project, &view.name, view.generation)
        .await?
    else {
        if let Some(w) = job.recorded.get(&(view.name.clone(), view.generation)) {
            report.lost = Some(crate::materialize::lost_message(&view.name, w));
        }
        return Ok(report);
    };
    report.watermark = Some(rfc3339(watermark));
    let at = watermark.saturating_sub(1);
    let join_keys: Vec<Field> = registry.join_keys(view).into_iter().cloned().collect();
    let source = registry
        .sources
        .get(&view.source)
        .ok_or_else(|| Error::Invalid(format!("unknown source `{}`", view.source)))?;

    // Every entity with a row before the watermark, then a seeded sample of them.
    let ctx = session(job.engine.partitions);
    let df = view_input(&ctx, job.root, source, view.query.as_deref()).await?;
    let mut select = Vec::new();
    for k in &join_keys {
        let to = key_type(k).map_err(Error::Invalid)?;
        select.push(cast_expr(ident(&k.name), to).alias(&k.name));
    }
    let context = || format!("sampling the entities of `{}`", view.name);
    let event = cast_expr(ident(&source.timestamp_field), utc_ns());
    let at_lit = lit(datafusion::common::ScalarValue::TimestampNanosecond(
        Some(at),
        Some("UTC".into()),
    ));
    let keys = df
        .filter(event.lt_eq(at_lit))
        .and_then(|df| df.select(select))
        .and_then(|df| df.distinct())
        .map_err(Error::engine(context()))?
        .collect()
        .await
        .map_err(Error::engine(context()))?;
    let Some(first) = keys.first() else {
        return Ok(report);
    };
    let keys = concat_batches(&first.schema(), &keys).map_err(Error::arrow(context()))?;
    report.entities = keys.num_rows() as u64;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(job.seed);
    let mut picked: Vec<usize> = if keys.num_rows() <= job.sample {
        (0..keys.num_rows()).collect()
    } else {
        sample(&mut rng, keys.num_rows(), job.sample).into_vec()
    };
    picked.sort_unstable();
    let indices = arrow::array::UInt64Array::from_iter_values(picked.iter().map(|&i| i as u64));
    let mut columns: Vec<ArrayRef> = keys
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c, &indices, None))
        .collect::<std::result::Result<_, _>>()
        .map_err(Error::arrow(context()))?;
    let n = picked.len();
    report.sampled = n as u64;
    columns.push(Arc::new(
        TimestampNanosecondArray::from_iter_values(std::iter::repeat_n(at, n)).with_timezone("UTC"),
    ));
    let mut fields: Vec<ArrowField> = keys
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(ArrowField::new(
        crate::retrieve::DEFAULT_TIMESTAMP_COLUMN,
        utc_ns(),
        false,
    ));
    let entities = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(Error::arrow(context()))?;

    // The offline answer at the watermark, with the winning row's times, ttl ignored.
    let dir = tempfile::tempdir().map_err(Error::io(&std::env::temp_dir()))?;
    let path = dir.path().join("entities.arrow");
    {
        let file = std::fs::File::create(&path).map_err(Error::io(&path))?;
        let mut w = arrow::ipc::writer::FileWriter::try_new(file, &entities.schema())
            .map_err(Error::arrow(context()))?;
        w.write(&entities)
            .and_then(|_| w.finish())
            .map_err(Error::arrow(context()))?;
    }
    let input = EntityInput::open(&path, None)?;
    let mut unbounded = registry.clone();
    if let Some(v) = unbounded.feature_views.get_mut(&view.name) {
        v.ttl = Ttl { seconds: 0 };
    }
    let features: Vec<FeatureRef> = view
        .features
        .iter()
        .map(|f| FeatureRef {
            view: view.name.clone(),
            feature: f.name.clone(),
        })
        .collect();
    let request = Request {
        registry: &unbounded,
        root: job.root,
        features: &features,
        entities: &input,
        options: Options {
            full_feature_names: true,
            created_cutoff: false,
        },
    };
    let engine = Engine {
        with_times: true,
        ..job.engine
    };
    let retrieval = retrieve(&request, &engine).await?;
    let schema = retrieval.schema.clone();
    let batches: Vec<RecordBatch> = retrieval.stream.try_collect().await.map_err(stream_error)?;
    let offline = concat_batches(&schema, &batches).map_err(Error::arrow(format!(
        "computing `{}` offline at the watermark",
        view.name
    )))?;
    let layout = Layout {
        join_keys: join_keys.clone(),
        timestamp: format!("{}__event_timestamp", view.name),
        created: Some(format!("{}__created_timestamp", view.name)),
        features: view
            .features
            .iter()
            .map(|f| Field {
                name: format!("{}__{}", view.name, f.name),
                ..f.clone()
            })
            .collect(),
    };
    let rows = Rows::new(&offline, &layout).map_err(Error::Invalid)?;

    // The online answer for the same entities, in one read.
    let prefix = view_prefix(project, &view.name, view.generation);
    let mut entity = String::new();
    let mut online_keys = Vec::with_capacity(n);
    let mut entity_names = Vec::with_capacity(n);
    for row in 0..n {
        rows.entity_key(row, &mut entity);
        online_keys.push(online_key(&prefix, &entity));
        entity_names.push(entity.clone());
    }
    let blobs = job.online.read(&online_keys).await?;
    let types: Vec<_> = view.features.iter().map(|f| f.value_type).collect();
    let now_ms = chrono::Utc::now().timestamp_millis();
    let expires = |event_ns: i64| {
        (job.key_ttl && !view.ttl.is_unbounded()).then(|| {
            event_ns
                .div_euclid(1_000_000)
                .saturating_add(view.ttl.millis())
        })
    };
    for (row, blob) in blobs.into_iter().enumerate() {
        let Some((event, created)) = rows.times(row) else {
            // No offline value: the online store must have none either.
            for f in &mut report.features {
                if blob.is_none() {
                    f.matched += 1;
                } else {
                    f.mismatched += 1;
                }
            }
            if blob.is_some() && report.examples.len() < EXAMPLES {
                report.examples.push(format!(
                    "entity {}: an online value, but no offline row before the watermark",
                    entity_names[row]
                ));
            }
            continue;
        };
        let expected = decode(&rows.encode(row, event, created, Vec::new()), &types)?;
        if blob.is_none() && expires(event).is_some_and(|at| at <= now_ms) {
            report.expired += 1;
            continue;
        }
        let Some(blob) = blob else {
            for f in &mut report.features {
                f.missing += 1;
            }
            if report.examples.len() < EXAMPLES {
                report.examples.push(format!(
                    "entity {}: no online value; offline has the row of {}",
                    entity_names[row],
                    rfc3339(event)
                ));
            }
            continue;
        };
        let stored: Decoded = match decode(&blob, &types) {
            Ok(d) => d,
            Err(e) => {
                report.corrupt += 1;
                for f in &mut report.features {
                    f.mismatched += 1;
                }
                if report.examples.len() < EXAMPLES {
                    report.examples.push(format!(
                        "entity {}: the online value cannot be decoded: {e}",
                        entity_names[row]
                    ));
                }
                continue;
            }
        };
        if stored.event_ns >= watermark {
            report.ahead += 1;
            continue;
        }
        if (stored.event_ns, stored.created_ns) != (expected.event_ns, expected.created_ns) {
            report.time_mismatches += 1;
            if report.examples.len() < EXAMPLES {
                report.examples.push(format!(
                    "entity {}: online value from the row of {} (created {}), offline from {} (created {})",
                    entity_names[row],
                    rfc3339(stored.event_ns),
                    stored.created_ns.map_or("—".into(), rfc3339),
                    rfc3339(expected.event_ns),
                    expected.created_ns.map_or("—".into(), rfc3339),
                ));
            }
        }
        for (i, f) in report.features.iter_mut().enumerate() {
            let want = expected.values.get(i).cloned().flatten();
            let got = stored.values.get(i).cloned().flatten();
            if same(&want, &got) {
                f.matched += 1;
            } else {
                f.mismatched += 1;
                if report.examples.len() < EXAMPLES {
                    let show =
                        |v: &Option<Value>| v.as_ref().map_or("null".into(), Value::to_string);
                    report.examples.push(format!(
                        "entity {}: `{}` online {}, offline {}",
                        entity_names[row],
                        f.feature,
                        show(&got),
                        show(&want)
                    ));
                }
            }
        }
    }
    Ok(report)
}

/// Per-view agreement as a table, for the terminal.
pub fn render(reports: &[ViewReport]) -> String {
    let mut out = String::new();
    for r in reports {
        if let Some(lost) = &r.lost {
            out.push_str(&format!(
                "{}: DATA LOST — {lost}; run `quiver materialize-incremental` to refill it\n\n",
                r.view
            ));
            continue;
        }
        let Some(w) = &r.watermark else {
            out.push_str(&format!(
                "{}: not materialized yet, nothing to verify\n\n",
                r.view
            ));
            continue;
        };
        out.push_str(&format!(
            "{}: {} of {} entities sampled at watermark {} — {}\n",
            r.view,
            r.sampled,
            r.entities,
            w,
            if r.agrees() {
                "online = offline"
            } else {
                "DISAGREE"
            }
        ));
        let width = r
            .features
            .iter()
            .map(|f| f.feature.len())
            .max()
            .unwrap_or(7)
            .max(7);
        out.push_str(&format!(
            "  {:width$}  {:>8}  {:>8}  {:>8}  {:>7}\n",
            "feature", "match", "mismatch", "missing", "agree"
        ));
        for f in &r.features {
            let total = f.matched + f.mismatched + f.missing;
            let share = if total == 0 {
                100.0
            } else {
                100.0 * f.matched as f64 / total as f64
            };
            out.push_str(&format!(
                "  {:width$}  {:>8}  {:>8}  {:>8}  {:>6.2}%\n",
                f.feature, f.matched, f.mismatched, f.missing, share
            ));
        }
        if r.time_mismatches > 0 {
            out.push_str(&format!(
                "  {} entities hold a value from a different row than offline\n",
                r.time_mismatches
            ));
        }
        if r.corrupt > 0 {
            out.push_str(&format!(
                "  {} entities hold a damaged online value (served as NOT_FOUND): materialize the view's full range again to replace them\n",
                r.corrupt
            ));
        }
        if r.ahead > 0 {
            out.push_str(&format!(
                "  {} entities hold a value newer than the watermark (an explicit range past it, or a run in progress): not compared\n",
                r.ahead
            ));
        }
        if r.expired > 0 {
            out.push_str(&format!(
                "  {} entities have no online value because their key expired (key_ttl: older than the ttl), as expected\n",
                r.expired
            ));
        }
        for e in &r.examples {
            out.push_str(&format!("  e.g. {e}\n"));
        }
        out.push('\n');
    }
    out
}
