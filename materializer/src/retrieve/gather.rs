//! A view's join output back in input order. The merge emits rows in (join keys, time) order,
//! each with its entity row's position `__row`; when the whole output fits the view's share of
//! the memory limit its batches are kept and gathered in `__row` order (one copy, no
//! comparisons), otherwise a spilling sort on `__row` puts them back.

use std::sync::Arc;

use arrow::array::{ArrayRef, AsArray, RecordBatch, UInt32Array, UInt64Array};
use arrow::compute::concat_batches;
use arrow::datatypes::{DataType, Schema, UInt64Type};
use datafusion::error::DataFusionError;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr_common::sort_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties};
use futures::StreamExt;

use super::asof::ENTITY_ROW;

/// `join`'s output (of `rows` rows, one per entity row) in `__row` order: gathered in memory
/// when it fits in `share` bytes, else sorted by a spilling sort.
pub(super) fn in_input_order(
    join: Arc<dyn ExecutionPlan>,
    rows: u64,
    share: u64,
    batch_rows: usize,
    task: Arc<TaskContext>,
) -> datafusion::error::Result<SendableRecordBatchStream> {
    let schema = join.schema();
    // The merges of the key partitions, in any order: `__row` puts them in place.
    let join: Arc<dyn ExecutionPlan> = if join.output_partitioning().partition_count() > 1 {
        Arc::new(CoalescePartitionsExec::new(join))
    } else {
        join
    };
    if rows.saturating_mul(estimated_row_bytes_of(&schema)) > share || rows > u64::from(u32::MAX) {
        let by_row = LexOrdering::new([PhysicalSortExpr::new_default(Arc::new(Column::new(
            ENTITY_ROW, 0,
        )))])
        .expect("one sort expression");
        return SortExec::new(by_row, join).execute(0, task);
    }
    let mut stream = join.execute(0, task)?;
    let mut builder = RecordBatchReceiverStreamBuilder::new(schema.clone(), 2);
    let tx = builder.tx();
    builder.spawn(async move {
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            batches.push(batch?);
        }
        let all = concat_batches(&schema, &batches)?;
        drop(batches);
        let at = positions(&all)?;
        let batch_rows = batch_rows.max(1);
        for (c, chunk) in at.chunks(batch_rows).enumerate() {
            let first = (c * batch_rows) as u64;
            let columns = gathered(&all, chunk, first)?;
            let batch = RecordBatch::try_new(schema.clone(), columns).map_err(Into::into);
            if tx.send(batch).await.is_err() {
                break;
            }
        }
        Ok(())
    });
    Ok(builder.build())
}

/// `at[r]`: where entity row `r` is in `all`; every entity row must be there.
fn positions(all: &RecordBatch) -> datafusion::error::Result<Vec<u32>> {
    let n = all.num_rows();
    let mut at = vec![u32::MAX; n];
    let positions = all.column(0).as_primitive::<UInt64Type>();
    for (i, r) in positions.values().iter().enumerate() {
        let slot = at
            .get_mut(*r as usize)
            .ok_or_else(|| DataFusionError::Internal(format!("as-of join row {r} of {n}")))?;
        *slot = u32::try_from(i)
            .map_err(|_| DataFusionError::Internal("too many rows to reorder in memory".into()))?;
    }
    if at.contains(&u32::MAX) {
        return Err(DataFusionError::Internal(
            "as-of join lost an entity row".into(),
        ));
    }
    Ok(at)
}

/// The columns of the rows of `all` at `indices`, as entity rows `first..`.
fn gathered(
    all: &RecordBatch,
    indices: &[u32],
    first: u64,
) -> datafusion::error::Result<Vec<ArrayRef>> {
    let indices = UInt32Array::from(indices.to_vec());
    let mut columns: Vec<ArrayRef> = vec![Arc::new(UInt64Array::from_iter_values(
        first..first + indices.len() as u64,
    ))];
    for column in &all.columns()[1..] {
        columns.push(arrow::compute::take(column, &indices, None)?);
    }
    Ok(columns)
}

fn estimated_row_bytes_of(schema: &Schema) -> u64 {
    schema
        .fields()
        .iter()
        .map(|f| match f.data_type() {
            DataType::Utf8 | DataType::Binary => 32,
            DataType::List(_) => 64,
            _ => 9,
        })
        .sum()
}
