//! The entity side of a view's join: the entity table's join keys (cast to the view's key
//! types), time and position, streamed from the entity table (the caller sorts them like the
//! view's rows);
//! and, for small entity tables, the key values the view's rows are filtered by.

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::streaming::StreamingTable;
use datafusion::common::ScalarValue;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::physical_plan::streaming::PartitionStream;
use datafusion::prelude::SessionContext;

use super::asof::{ENTITY_ROW, ENTITY_TIME};
use super::{EntityInput, external};
use crate::columns::utc_ns;
use crate::error::{Error, Result};

/// The entity table's join keys (cast to the key type), time and position, for one view.
#[derive(Debug)]
struct EntityKeys {
    input: EntityInput,
    keys: Vec<(String, DataType)>,
    schema: SchemaRef,
}

impl EntityKeys {
    fn project(&self, batch: &RecordBatch, first_row: u64) -> Result<RecordBatch> {
        let mut columns: Vec<ArrayRef> = Vec::with_capacity(self.keys.len() + 2);
        for (name, to) in &self.keys {
            let column = batch
                .column_by_name(name)
                .ok_or_else(|| Error::Invalid(format!("entity table lacks column `{name}`")))?;
            columns.push(self.input.cast_column(name, column, to, first_row)?);
        }
        columns.push(Arc::new(self.input.times(batch, first_row)?));
        let n = batch.num_rows() as u64;
        columns.push(Arc::new(UInt64Array::from_iter_values(
            first_row..first_row + n,
        )));
        RecordBatch::try_new(self.schema.clone(), columns)
            .map_err(Error::arrow("building the entity keys"))
    }
}

impl PartitionStream for EntityKeys {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let mut builder = RecordBatchReceiverStreamBuilder::new(self.schema.clone(), 2);
        let tx = builder.tx();
        let this = EntityKeys {
            input: self.input.clone(),
            keys: self.keys.clone(),
            schema: self.schema.clone(),
        };
        builder.spawn_blocking(move || {
            let mut row = 0u64;
            let mut columns: Vec<&str> = this.keys.iter().map(|(k, _)| k.as_str()).collect();
            columns.push(&this.input.timestamp_column);
            for batch in this.input.reader_of(Some(&columns)).map_err(external)? {
                let batch = batch.map_err(|e| external(this.input.read_error(e)))?;
                let out = this.project(&batch, row).map_err(external)?;
                row += batch.num_rows() as u64;
                if tx.blocking_send(Ok(out)).is_err() {
                    break;
                }
            }
            Ok(())
        });
        builder.build()
    }
}

/// The entity rows as `keys` (name, type), `__t` and `__row`, in file order, one partition.
pub(super) async fn entity_keys(
    ctx: &SessionContext,
    input: &EntityInput,
    keys: &[(String, DataType)],
) -> Result<Arc<dyn ExecutionPlan>> {
    let mut fields: Vec<Field> = keys
        .iter()
        .map(|(n, t)| Field::new(n, t.clone(), true))
        .collect();
    fields.push(Field::new(ENTITY_TIME, utc_ns(), true));
    fields.push(Field::new(ENTITY_ROW, DataType::UInt64, false));
    let schema = Arc::new(Schema::new(fields));
    let partition = Arc::new(EntityKeys {
        input: input.clone(),
        keys: keys.to_vec(),
        schema: schema.clone(),
    });
    let table = StreamingTable::try_new(schema, vec![partition])
        .map_err(Error::engine("the entity table"))?;
    ctx.read_table(Arc::new(table))
        .map_err(Error::engine("the entity table"))?
        .create_physical_plan()
        .await
        .map_err(Error::engine("the entity table"))
}

/// The distinct non-null values of each join key column in the entity table, cast as the view
/// reads them; for small entity tables only (read in full).
pub(super) fn entity_key_values(
    input: &EntityInput,
    keys: &[(String, DataType)],
) -> Result<Vec<(String, Vec<ScalarValue>)>> {
    let names: Vec<&str> = keys.iter().map(|(n, _)| n.as_str()).collect();
    let mut sets: Vec<HashSet<ScalarValue>> = vec![Default::default(); keys.len()];
    let mut row = 0u64;
    for batch in input.reader_of(Some(&names))? {
        let batch = batch.map_err(|e| input.read_error(e))?;
        for (i, (name, to)) in keys.iter().enumerate() {
            let column = batch
                .column_by_name(name)
                .ok_or_else(|| Error::Invalid(format!("entity table lacks column `{name}`")))?;
            let cast = input.cast_column(name, column, to, row)?;
            for r in 0..cast.len() {
                if cast.is_valid(r) {
                    let value = ScalarValue::try_from_array(&cast, r)
                        .map_err(Error::engine("reading the entity keys"))?;
                    sets[i].insert(value);
                }
            }
        }
        row += batch.num_rows() as u64;
    }
    Ok(keys
        .iter()
        .zip(sets)
        .map(|((name, _), set)| (name.clone(), set.into_iter().collect()))
        .collect())
}
