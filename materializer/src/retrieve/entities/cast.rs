//! Reading the entity table's values as a retrieval needs them, every value kept: join keys as
//! the view's key types, times as UTC nanoseconds, and the timestamp column as the output shows
//! it.

use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, TimestampNanosecondArray};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit, TimestampNanosecondType};

use super::EntityInput;
use crate::columns::utc_ns;
use crate::error::{Error, Result};

impl EntityInput {
    /// The timestamp column of `batch` (whose first row is row `first_row` of the table) as UTC
    /// nanoseconds (naive times are UTC). A value that cannot be read — text that is no time,
    /// a time outside 1677..2262 — is an error naming its row, never a silent null.
    pub fn times(&self, batch: &RecordBatch, first_row: u64) -> Result<TimestampNanosecondArray> {
        let column = batch
            .column_by_name(&self.timestamp_column)
            .ok_or_else(|| self.invalid("a batch lacks the timestamp column"))?;
        let cast = self.cast_column(&self.timestamp_column, column, &utc_ns(), first_row)?;
        Ok(cast.as_primitive::<TimestampNanosecondType>().clone())
    }

    /// `column` (named `name`, first row `first_row`) cast to `to`, every value kept: a
    /// non-null value that would become null (unparseable text, a number or time out of range)
    /// is an error naming the row (1-based, as a spreadsheet or `head -n` shows it), the column
    /// and the value.
    pub fn cast_column(
        &self,
        name: &str,
        column: &ArrayRef,
        to: &DataType,
        first_row: u64,
    ) -> Result<ArrayRef> {
        let out = cast(column, to).map_err(|e| {
            self.invalid(format!(
                "column `{name}` ({}) cannot be read as {to}: {e}",
                column.data_type()
            ))
        })?;
        // A float key is read as an integer only when it is one: 1001.7 is not driver 1001.
        let mut changed = None;
        if column.data_type().is_floating() && to.is_integer() {
            // Casting back and comparing what was just cast can only fail in the engine.
            let back = cast(&out, column.data_type()).map_err(Error::arrow(&self.name))?;
            let same = arrow::compute::kernels::cmp::eq(&back, column)
                .map_err(Error::arrow(&self.name))?;
            changed = (0..same.len())
                .find(|&i| arrow::array::Array::is_valid(&same, i) && !same.value(i));
        }
        let lost = (out.null_count() > column.null_count())
            .then(|| (0..out.len()).find(|&i| out.is_null(i) && column.is_valid(i)))
            .flatten();
        if let Some(i) = lost.into_iter().chain(changed).min() {
            let value = arrow::util::display::array_value_to_string(column, i)
                .unwrap_or_else(|_| "?".into());
            let hint = if matches!(to, DataType::Timestamp(..)) {
                "; write times as RFC 3339 (e.g. 2026-01-01T00:00:00Z or 2026-01-01 00:00:00), between 1677-09-22 and 2262-04-11"
            } else {
                ""
            };
            return Err(self.invalid(format!(
                "row {}, column `{name}`: `{value}` cannot be read as {}{hint}",
                first_row + i as u64 + 1,
                type_name(to)
            )));
        }
        Ok(out)
    }

    /// The schema of the output's entity columns: the input's, with the timestamp column as a
    /// UTC timestamp whatever the input format (text, dates, naive or zoned times; seconds
    /// become milliseconds, which Parquet can hold as a timestamp).
    pub fn output_schema(&self) -> SchemaRef {
        let fields: Vec<_> = self
            .schema
            .fields()
            .iter()
            .map(|f| {
                if f.name() == &self.timestamp_column {
                    Arc::new(f.as_ref().clone().with_data_type(self.output_time_type()))
                } else {
                    f.clone()
                }
            })
            .collect();
        Arc::new(arrow::datatypes::Schema::new_with_metadata(
            fields,
            self.schema.metadata().clone(),
        ))
    }

    fn output_time_type(&self) -> DataType {
        let unit = match self.schema.field_with_name(&self.timestamp_column) {
            Ok(f) => match f.data_type() {
                DataType::Timestamp(TimeUnit::Second, _) | DataType::Date32 | DataType::Date64 => {
                    TimeUnit::Millisecond
                }
                DataType::Timestamp(unit, _) => *unit,
                _ => TimeUnit::Nanosecond,
            },
            Err(_) => TimeUnit::Nanosecond,
        };
        DataType::Timestamp(unit, Some("UTC".into()))
    }

    /// `batch` (first row `first_row`) with its timestamp column as [`Self::output_schema`] says.
    pub fn for_output(&self, batch: &RecordBatch, first_row: u64) -> Result<RecordBatch> {
        let schema = self.output_schema();
        let mut columns = batch.columns().to_vec();
        let i = schema
            .index_of(&self.timestamp_column)
            .map_err(Error::arrow(&self.name))?;
        let to = schema.field(i).data_type().clone();
        columns[i] = self.cast_column(&self.timestamp_column, &columns[i], &to, first_row)?;
        RecordBatch::try_new(schema, columns).map_err(|e| self.invalid(e))
    }
}

/// How a type is named to users: `int64`, `timestamp`, … (Arrow's names otherwise).
fn type_name(t: &DataType) -> String {
    match t {
        DataType::Timestamp(..) => "a timestamp".into(),
        DataType::Int64 => "int64".into(),
        DataType::Int32 => "int32".into(),
        DataType::Utf8 | DataType::LargeUtf8 => "string".into(),
        other => other.to_string(),
    }
}
