//! The entities a view is verified for: every entity with a row before the watermark, then a
//! seeded sample of them, as an entity table at that time.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, TimestampNanosecondArray, UInt64Array};
use arrow::compute::concat_batches;
use arrow::datatypes::{Field as ArrowField, Schema};
use datafusion::common::ScalarValue;
use datafusion::prelude::{cast as cast_expr, ident, lit};
use quiver_registry::{FeatureView, Field};
use rand::SeedableRng;
use rand::seq::index::sample;

use super::VerifyJob;
use crate::columns::{key_type, utc_ns};
use crate::error::{Error, Result};
use crate::retrieve::DEFAULT_TIMESTAMP_COLUMN;
use crate::source::{engine_session, view_input};

/// A view's sampled entities.
#[derive(Debug)]
pub(super) struct Sample {
    /// How many entities have a row before the watermark.
    pub(super) entities: u64,
    /// The sampled ones: their join keys and `event_timestamp`, the time they are verified at.
    pub(super) keys: RecordBatch,
}

/// The entities of `view` with a row at or before `at`, sampled; `None` when there are none.
pub(super) async fn sample_entities(
    job: &VerifyJob<'_>,
    view: &FeatureView,
    at: i64,
) -> Result<Option<Sample>> {
    let Some(keys) = distinct_keys(job, view, at).await? else {
        return Ok(None);
    };
    let context = || format!("sampling the entities of `{}`", view.name);
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(job.seed);
    let mut picked: Vec<usize> = if keys.num_rows() <= job.sample {
        (0..keys.num_rows()).collect()
    } else {
        sample(&mut rng, keys.num_rows(), job.sample).into_vec()
    };
    picked.sort_unstable();
    let indices = UInt64Array::from_iter_values(picked.iter().map(|&i| i as u64));
    let mut columns: Vec<ArrayRef> = keys
        .columns()
        .iter()
        .map(|c| arrow::compute::take(c, &indices, None))
        .collect::<std::result::Result<_, _>>()
        .map_err(Error::arrow(context()))?;
    let n = picked.len();
    columns.push(Arc::new(
        TimestampNanosecondArray::from_iter_values(std::iter::repeat_n(at, n)).with_timezone("UTC"),
    ));
    let mut fields: Vec<ArrowField> = keys
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields.push(ArrowField::new(DEFAULT_TIMESTAMP_COLUMN, utc_ns(), false));
    let sampled = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(Error::arrow(context()))?;
    Ok(Some(Sample {
        entities: keys.num_rows() as u64,
        keys: sampled,
    }))
}

/// Every distinct join key tuple of the view's rows at or before `at`, cast to the key types;
/// `None` when there is none.
async fn distinct_keys(
    job: &VerifyJob<'_>,
    view: &FeatureView,
    at: i64,
) -> Result<Option<RecordBatch>> {
    let registry = &job.registry.registry;
    let join_keys: Vec<Field> = registry.join_keys(view).into_iter().cloned().collect();
    let source = registry.history_source(view).map_err(Error::Invalid)?;
    let ctx = engine_session(job.engine.partitions, job.engine.cluster.as_ref()).await?;
    let df = view_input(&ctx, job.root, source, view.query.as_deref(), None).await?;
    let mut select = Vec::new();
    for k in &join_keys {
        let to = key_type(k).map_err(Error::Invalid)?;
        select.push(cast_expr(ident(&k.name), to).alias(&k.name));
    }
    let context = || format!("sampling the entities of `{}`", view.name);
    let event = cast_expr(ident(&source.timestamp_field), utc_ns());
    let at_lit = lit(ScalarValue::TimestampNanosecond(
        Some(at),
        Some("UTC".into()),
    ));
    // A row with a null key identifies no entity (materialization skips it): not one to sample.
    let keyed = join_keys
        .iter()
        .map(|k| ident(&k.name).is_not_null())
        .reduce(|a, b| a.and(b))
        .unwrap_or_else(|| lit(true));
    let keys = df
        .filter(event.lt_eq(at_lit))
        .and_then(|df| df.select(select))
        .and_then(|df| df.filter(keyed))
        .and_then(|df| df.distinct())
        .map_err(Error::engine(context()))?
        .collect()
        .await
        .map_err(Error::engine(context()))?;
    let Some(first) = keys.first() else {
        return Ok(None);
    };
    concat_batches(&first.schema(), &keys)
        .map(Some)
        .map_err(Error::arrow(context()))
}
