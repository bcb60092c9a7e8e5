//! The output of [`super::WindowAggExec`]: per entity row its position, each aggregate's
//! value over its window, and the latest event's times, built into Arrow batches.

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder,
    Int32Builder, Int64Builder, RecordBatch, StringBuilder, TimestampNanosecondBuilder,
    UInt64Builder,
};
use arrow::datatypes::SchemaRef;
use datafusion::error::Result;
use quiver_online_store::value_codec::Value;
use quiver_registry::aggregation::{first_tile, tile_of};
use quiver_registry::{Aggregations, ScalarType, ValueType};

use super::KeyState;

/// Output columns being built.
pub(super) struct Output {
    schema: SchemaRef,
    types: Vec<ScalarType>,
    positions: UInt64Builder,
    values: Vec<Vec<Option<Value>>>,
    event: TimestampNanosecondBuilder,
    created: TimestampNanosecondBuilder,
}

impl Output {
    pub(super) fn new(schema: &SchemaRef, aggs: &Aggregations, capacity: usize) -> Self {
        let types = aggs
            .items
            .iter()
            .map(|a| match a.output_type() {
                ValueType::Scalar(s) => s,
                ValueType::List(s) => s,
            })
            .collect();
        Output {
            schema: schema.clone(),
            types,
            positions: UInt64Builder::with_capacity(capacity),
            values: vec![Vec::with_capacity(capacity); aggs.items.len()],
            event: TimestampNanosecondBuilder::with_capacity(capacity),
            created: TimestampNanosecondBuilder::with_capacity(capacity),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.positions.len()
    }

    pub(super) fn push_nulls(&mut self, position: u64) {
        self.positions.append_value(position);
        for v in &mut self.values {
            v.push(None);
        }
        self.event.append_null();
        self.created.append_null();
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn push(
        &mut self,
        position: u64,
        state: &mut KeyState,
        aggs: &Aggregations,
        spans: &[i64],
        t: i64,
        hop: i64,
        max_tiles: i64,
    ) {
        self.positions.append_value(position);
        for (i, a) in aggs.items.iter().enumerate() {
            let first = first_tile(t, hop, spans[i]);
            // The window's complete tiles (evicted up to `first`), then the current tile.
            // Entity rows of a key come in ascending time: no later row needs an evicted tile.
            let window = &mut state.windows[i];
            window.evict_before(first);
            let mut total = window.total();
            if let Some((h, tile)) = &state.head
                && *h >= first
            {
                total.merge(&tile.partials[i]);
            }
            self.values[i].push(total.finish(a.function));
        }
        match state.latest {
            Some((e, c)) if tile_of(e, hop) >= first_tile(t, hop, max_tiles) => {
                self.event.append_value(e);
                self.created.append_option(c);
            }
            _ => {
                self.event.append_null();
                self.created.append_null();
            }
        }
    }

    pub(super) fn finish(&mut self) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = vec![Arc::new(self.positions.finish())];
        for (values, t) in self.values.iter_mut().zip(&self.types) {
            columns.push(to_array(*t, values));
            values.clear();
        }
        columns.push(Arc::new(self.event.finish().with_timezone("UTC")));
        columns.push(Arc::new(self.created.finish().with_timezone("UTC")));
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

/// Values of one scalar type as an Arrow array of its canonical type.
fn to_array(t: ScalarType, values: &[Option<Value>]) -> ArrayRef {
    macro_rules! build {
        ($builder:ty, $variant:ident, $get:expr) => {{
            let mut b = <$builder>::new();
            for v in values {
                match v {
                    Some(Value::$variant(x)) => b.append_value($get(x)),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish()) as ArrayRef
        }};
    }
    match t {
        ScalarType::Bool => build!(BooleanBuilder, Bool, |x: &bool| *x),
        ScalarType::Int32 => build!(Int32Builder, Int32, |x: &i32| *x),
        ScalarType::Int64 => build!(Int64Builder, Int64, |x: &i64| *x),
        ScalarType::Float32 => build!(Float32Builder, Float32, |x: &f32| *x),
        ScalarType::Float64 => build!(Float64Builder, Float64, |x: &f64| *x),
        ScalarType::String => build!(StringBuilder, String, |x: &String| x.clone()),
        ScalarType::Bytes => build!(BinaryBuilder, Bytes, |x: &Vec<u8>| x.clone()),
        ScalarType::Timestamp => {
            let mut b = TimestampNanosecondBuilder::with_capacity(values.len());
            for v in values {
                match v {
                    Some(Value::Timestamp(x)) => b.append_value(*x),
                    _ => b.append_null(),
                }
            }
            Arc::new(b.finish().with_timezone("UTC"))
        }
    }
}
