//! The online store's values for the sampled entities, in one read, compared with the offline
//! answer: bytes as stored, times first, then each feature.

use quiver_online_store::key_codec::{online_key, view_prefix};
use quiver_online_store::value_codec::{Decoded, Value, decode};
use quiver_registry::{FeatureView, ValueType};

use super::{EXAMPLES, VerifyJob, ViewReport};
use crate::columns::Rows;
use crate::error::Result;
use crate::materialize::rfc3339;

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

/// What is known of one sampled entity.
struct Entity<'a> {
    /// Its key, as examples show it.
    name: &'a str,
    /// The offline winner's blob, decoded, if there is one.
    expected: Option<Decoded>,
    /// What the online store holds.
    blob: Option<Vec<u8>>,
}

/// Reads the online values of `offline`'s entities and counts each against its offline value
/// in `report`; `watermark` is the view's.
pub(super) async fn compare(
    job: &VerifyJob<'_>,
    view: &FeatureView,
    offline: &Rows,
    watermark: i64,
    report: &mut ViewReport,
) -> Result<()> {
    let n = report.sampled as usize;
    let prefix = view_prefix(&job.registry.registry.project, &view.name, view.generation);
    let mut entity = String::new();
    let mut online_keys = Vec::with_capacity(n);
    let mut entity_names = Vec::with_capacity(n);
    for row in 0..n {
        offline.entity_key(row, &mut entity);
        online_keys.push(online_key(&prefix, &entity));
        entity_names.push(entity.clone());
    }
    let blobs = job.online.read(&online_keys).await?;
    let types: Vec<ValueType> = view.features.iter().map(|f| f.value_type).collect();
    let now_ms = chrono::Utc::now().timestamp_millis();
    // Whether a value of this event time has expired online (`key_ttl`).
    let expired = |event_ns: i64| {
        (job.key_ttl && !view.ttl.is_unbounded())
            .then(|| {
                event_ns
                    .div_euclid(1_000_000)
                    .saturating_add(view.ttl.millis())
            })
            .is_some_and(|at| at <= now_ms)
    };
    for (row, blob) in blobs.into_iter().enumerate() {
        let expected = match offline.times(row) {
            Some((event, created)) => Some(decode(
                &offline.encode(row, event, created, Vec::new()),
                &types,
            )?),
            None => None,
        };
        let entity = Entity {
            name: &entity_names[row],
            expected,
            blob,
        };
        compare_entity(report, entity, &types, watermark, &expired);
    }
    Ok(())
}

/// Counts one entity in `report`.
fn compare_entity(
    report: &mut ViewReport,
    entity: Entity<'_>,
    types: &[ValueType],
    watermark: i64,
    expired: &dyn Fn(i64) -> bool,
) {
    let Some(expected) = entity.expected else {
        // No offline value: the online store must have none either.
        for f in &mut report.features {
            if entity.blob.is_none() {
                f.matched += 1;
            } else {
                f.mismatched += 1;
            }
        }
        if entity.blob.is_some() {
            report.example(|| {
                format!(
                    "entity {}: an online value, but no offline row before the watermark",
                    entity.name
                )
            });
        }
        return;
    };
    if entity.blob.is_none() && expired(expected.event_ns) {
        report.expired += 1;
        return;
    }
    let Some(blob) = entity.blob else {
        for f in &mut report.features {
            f.missing += 1;
        }
        report.example(|| {
            format!(
                "entity {}: no online value; offline has the row of {}",
                entity.name,
                rfc3339(expected.event_ns)
            )
        });
        return;
    };
    let stored: Decoded = match decode(&blob, types) {
        Ok(d) => d,
        Err(e) => {
            report.corrupt += 1;
            for f in &mut report.features {
                f.mismatched += 1;
            }
            report.example(|| {
                format!(
                    "entity {}: the online value cannot be decoded: {e}",
                    entity.name
                )
            });
            return;
        }
    };
    if stored.event_ns >= watermark {
        report.ahead += 1;
        return;
    }
    compare_values(report, entity.name, &expected, &stored);
}

/// Counts the times and each feature of a stored value that is not newer than the watermark.
fn compare_values(report: &mut ViewReport, entity: &str, expected: &Decoded, stored: &Decoded) {
    if (stored.event_ns, stored.created_ns) != (expected.event_ns, expected.created_ns) {
        report.time_mismatches += 1;
        report.example(|| {
            format!(
                "entity {entity}: online value from the row of {} (created {}), offline from {} (created {})",
                rfc3339(stored.event_ns),
                stored.created_ns.map_or("—".into(), rfc3339),
                rfc3339(expected.event_ns),
                expected.created_ns.map_or("—".into(), rfc3339),
            )
        });
    }
    for (i, f) in report.features.iter_mut().enumerate() {
        let want = expected.values.get(i).cloned().flatten();
        let got = stored.values.get(i).cloned().flatten();
        if same(&want, &got) {
            f.matched += 1;
        } else {
            f.mismatched += 1;
            if report.examples.len() < EXAMPLES {
                let show = |v: &Option<Value>| v.as_ref().map_or("null".into(), Value::to_string);
                report.examples.push(format!(
                    "entity {entity}: `{}` online {}, offline {}",
                    f.feature,
                    show(&got),
                    show(&want)
                ));
            }
        }
    }
}

/// Equal, floats within the merge-order tolerance of aggregates: 1e-9 of the larger magnitude
/// (and 1e-12 absolute near zero).
fn close(a: &Option<Value>, b: &Option<Value>) -> bool {
    match (a, b) {
        (Some(Value::Float64(x)), Some(Value::Float64(y))) => {
            x.to_bits() == y.to_bits() || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()) + 1e-12
        }
        _ => same(a, b),
    }
}

/// An aggregation view's online tiles merged at `at` against the retrieval at `at`.
pub(super) async fn compare_aggregates(
    job: &VerifyJob<'_>,
    view: &FeatureView,
    offline: &Rows,
    at: i64,
    report: &mut ViewReport,
) -> Result<()> {
    let aggregations = view.aggregations.as_ref().expect("an aggregation view");
    let n = report.sampled as usize;
    let prefix = view_prefix(&job.registry.registry.project, &view.name, view.generation);
    let mut entity = String::new();
    let mut keys = Vec::with_capacity(n);
    let mut names = Vec::with_capacity(n);
    for row in 0..n {
        offline.entity_key(row, &mut entity);
        keys.push(online_key(&prefix, &entity));
        names.push(entity.clone());
    }
    let blobs = job.online.read(&keys).await?;
    let empty = quiver_online_store::tiles::Tiles::new(i64::MIN).window(aggregations, at)?;
    for (row, blob) in blobs.into_iter().enumerate() {
        let name = &names[row];
        let expected: Vec<Option<Value>> = (0..view.features.len())
            .map(|i| offline.value(i, row))
            .collect();
        let expected_time = offline.times(row);
        let online = match blob {
            None => empty.clone(),
            Some(b) => match quiver_online_store::tiles::window_of(&b, aggregations, at) {
                Ok(w) => w,
                Err(e @ quiver_online_store::Error::Unanswerable(_)) => {
                    return Err(crate::Error::Invalid(format!(
                        "feature view `{}`, entity {name}: {e}; verify at the last materialization's end (the default) or after the pushed tiles (--at)",
                        view.name
                    )));
                }
                Err(e) => {
                    report.corrupt += 1;
                    for f in &mut report.features {
                        f.mismatched += 1;
                    }
                    report.example(|| {
                        format!("entity {name}: the online value cannot be decoded: {e}")
                    });
                    continue;
                }
            },
        };
        if online.latest != expected_time {
            report.time_mismatches += 1;
            let show = |t: Option<(i64, Option<i64>)>| t.map_or("none".into(), |(e, _)| rfc3339(e));
            report.example(|| {
                format!(
                    "entity {name}: latest event in the window online {}, offline {}",
                    show(online.latest),
                    show(expected_time)
                )
            });
        }
        for (i, f) in report.features.iter_mut().enumerate() {
            let (got, want) = (&online.values[i], &expected[i]);
            if close(got, want) {
                f.matched += 1;
            } else {
                f.mismatched += 1;
                if report.examples.len() < EXAMPLES {
                    let show =
                        |v: &Option<Value>| v.as_ref().map_or("null".into(), Value::to_string);
                    report.examples.push(format!(
                        "entity {name}: `{}` online {}, offline {} at {}",
                        f.feature,
                        show(got),
                        show(want),
                        rfc3339(at)
                    ));
                }
            }
        }
    }
    Ok(())
}
