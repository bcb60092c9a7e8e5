//! Deterministic sample data: hourly driver statistics and daily customer profiles.
//!
//! The same seed, sizes and end time give the same bytes. About 1% of rows are followed by a
//! correction: the same entity and event time, a later created time and different values, so
//! that `(event_ts, created_ts)` ordering is exercised everywhere. A few values are null.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int32Builder,
    Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use chrono::{DateTime, Utc};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Rows written per Parquet row group: memory stays flat whatever the size.
const BATCH_ROWS: usize = 65_536;
const MICROS_PER_HOUR: i64 = 3_600_000_000;
mod customers;
mod trips;
use customers::{CustomerBatch, customer_schema};
use trips::write_trips;

const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;
pub const FIRST_DRIVER_ID: i64 = 1001;
pub const FIRST_CUSTOMER_ID: i64 = 1;
const CITIES: [&str; 6] = ["Amsterdam", "Berlin", "Lisbon", "Madrid", "Paris", "Warsaw"];

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleSpec {
    pub drivers: u64,
    /// Hourly rows per driver, ending at `end`.
    pub hours: u32,
    pub customers: u64,
    /// Daily rows per customer, ending at `end`.
    pub customer_days: u32,
    pub seed: u64,
    /// The newest event time in the data.
    pub end: DateTime<Utc>,
    /// Rows of the sample entity table (`labels.parquet`) for training retrieval.
    pub labels: u64,
}

impl SampleSpec {
    /// The quickstart's size: a few thousand rows of each, ending now.
    pub fn small(end: DateTime<Utc>) -> Self {
        SampleSpec {
            drivers: 100,
            hours: 24,
            customers: 500,
            customer_days: 5,
            seed: 42,
            end,
            labels: 1000,
        }
    }
}

/// What was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampleSummary {
    pub driver_stats: PathBuf,
    pub driver_rows: u64,
    pub customer_profile: PathBuf,
    pub customer_rows: u64,
    pub labels: PathBuf,
    pub label_rows: u64,
    pub trip_events: PathBuf,
    pub trip_rows: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum GeneratorError {
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write Parquet {path}: {message}")]
    Parquet { path: PathBuf, message: String },
}

/// Writes `driver_stats.parquet` and `customer_profile.parquet` into `dir`.
pub fn write_sample_data(dir: &Path, spec: &SampleSpec) -> Result<SampleSummary, GeneratorError> {
    std::fs::create_dir_all(dir).map_err(|source| GeneratorError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let end = spec.end.timestamp_micros();
    let drivers = dir.join("driver_stats.parquet");
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let driver_rows = write_table(&drivers, driver_schema(), |emit| {
        let mut batch = DriverBatch::default();
        for d in 0..spec.drivers {
            let id = FIRST_DRIVER_ID + d as i64;
            for h in 0..spec.hours {
                let event = end - i64::from(spec.hours - 1 - h) * MICROS_PER_HOUR;
                let created = event + rng.random_range(0..60_000_000);
                batch.push(&mut rng, id, event, created);
                if rng.random_bool(0.01) {
                    let corrected = created + rng.random_range(1_000_000..600_000_000);
                    batch.push(&mut rng, id, event, corrected);
                }
                if batch.len() >= BATCH_ROWS {
                    emit(batch.finish())?;
                }
            }
        }
        emit(batch.finish())
    })?;
    let customers = dir.join("customer_profile.parquet");
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed.wrapping_add(1));
    let customer_rows = write_table(&customers, customer_schema(), |emit| {
        let mut batch = CustomerBatch::default();
        for c in 0..spec.customers {
            let id = FIRST_CUSTOMER_ID + c as i64;
            let signup = end - rng.random_range(30..2000) * MICROS_PER_DAY;
            for day in 0..spec.customer_days {
                let event = end - i64::from(spec.customer_days - 1 - day) * MICROS_PER_DAY;
                let created = event + rng.random_range(0..60_000_000);
                batch.push(&mut rng, id, event, created, signup);
                if rng.random_bool(0.01) {
                    let corrected = created + rng.random_range(1_000_000..600_000_000);
                    batch.push(&mut rng, id, event, corrected, signup);
                }
                if batch.len() >= BATCH_ROWS {
                    emit(batch.finish())?;
                }
            }
        }
        emit(batch.finish())
    })?;
    let labels = dir.join("labels.parquet");
    let label_rows = write_labels(&labels, spec)?;
    let trip_events = dir.join("trip_events.parquet");
    let trip_rows = write_trips(&trip_events, spec)?;
    Ok(SampleSummary {
        driver_stats: drivers,
        driver_rows,
        customer_profile: customers,
        customer_rows,
        labels,
        label_rows,
        trip_events,
        trip_rows,
    })
}

/// An entity table for training retrieval: a driver, a customer, a time and a label per row.
/// Times spread from two hours before the first driver row to an hour after the last; about 2%
/// of the ids have no data at all, so every retrieval case shows up.
fn write_labels(path: &Path, spec: &SampleSpec) -> Result<u64, GeneratorError> {
    let end = spec.end.timestamp_micros();
    let span = i64::from(spec.hours + 3) * MICROS_PER_HOUR;
    let first = end - i64::from(spec.hours + 1) * MICROS_PER_HOUR;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed.wrapping_add(2));
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver_id", DataType::Int64, false),
        Field::new("customer_id", DataType::Int64, false),
        ts_field("event_timestamp", false),
        Field::new("trip_completed", DataType::Boolean, false),
    ]));
    let drivers = (spec.drivers + spec.drivers / 50).max(1);
    let customers = (spec.customers + spec.customers / 50).max(1);
    write_table(path, schema.clone(), |emit| {
        let mut done = 0u64;
        while done < spec.labels {
            let n = (spec.labels - done).min(BATCH_ROWS as u64) as usize;
            let mut d = Int64Builder::with_capacity(n);
            let mut c = Int64Builder::with_capacity(n);
            let mut t = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
            let mut y = BooleanBuilder::with_capacity(n);
            for _ in 0..n {
                d.append_value(FIRST_DRIVER_ID + rng.random_range(0..drivers) as i64);
                c.append_value(FIRST_CUSTOMER_ID + rng.random_range(0..customers) as i64);
                t.append_value(first + rng.random_range(0..span));
                y.append_value(rng.random_bool(0.7));
            }
            let columns: Vec<ArrayRef> = vec![
                Arc::new(d.finish()),
                Arc::new(c.finish()),
                Arc::new(t.finish()),
                Arc::new(y.finish()),
            ];
            emit(RecordBatch::try_new(schema.clone(), columns).expect("columns match the schema"))?;
            done += n as u64;
        }
        Ok(())
    })
}

type Emit<'a> = dyn FnMut(RecordBatch) -> Result<(), GeneratorError> + 'a;

/// Streams batches from `produce` into a Parquet file written atomically (temp file + rename).
fn write_table(
    path: &Path,
    schema: SchemaRef,
    produce: impl FnOnce(&mut Emit<'_>) -> Result<(), GeneratorError>,
) -> Result<u64, GeneratorError> {
    let tmp = path.with_extension("parquet.tmp");
    let perr = |e: parquet::errors::ParquetError| GeneratorError::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let file = File::create(&tmp).map_err(|source| GeneratorError::Io {
        path: tmp.clone(),
        source,
    })?;
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(BATCH_ROWS * 4))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(perr)?;
    let mut rows = 0u64;
    produce(&mut |batch: RecordBatch| {
        rows += batch.num_rows() as u64;
        if batch.num_rows() > 0 {
            writer.write(&batch).map_err(perr)?;
        }
        Ok(())
    })?;
    writer.close().map_err(perr)?;
    std::fs::rename(&tmp, path).map_err(|source| GeneratorError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(rows)
}

fn ts_field(name: &str, nullable: bool) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        nullable,
    )
}

fn driver_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("driver_id", DataType::Int64, false),
        ts_field("event_timestamp", false),
        ts_field("created", false),
        Field::new("conv_rate", DataType::Float32, true),
        Field::new("acc_rate", DataType::Float32, true),
        Field::new("avg_daily_trips", DataType::Int64, true),
        Field::new("rating", DataType::Float64, true),
        Field::new("total_trips", DataType::Int64, true),
        Field::new("online_hours", DataType::Float32, true),
        Field::new("cancellations", DataType::Int32, true),
        Field::new("city", DataType::Utf8, true),
        Field::new("is_active", DataType::Boolean, true),
        Field::new("earnings", DataType::Float64, true),
    ]))
}

/// `Some(v)` except for about 2% nulls.
fn mostly<T>(rng: &mut ChaCha8Rng, v: T) -> Option<T> {
    (!rng.random_bool(0.02)).then_some(v)
}

#[derive(Default)]
struct DriverBatch {
    id: Int64Builder,
    event: TimestampMicrosecondBuilder,
    created: TimestampMicrosecondBuilder,
    conv_rate: Float32Builder,
    acc_rate: Float32Builder,
    avg_daily_trips: Int64Builder,
    rating: Float64Builder,
    total_trips: Int64Builder,
    online_hours: Float32Builder,
    cancellations: Int32Builder,
    city: StringBuilder,
    is_active: BooleanBuilder,
    earnings: Float64Builder,
}

impl DriverBatch {
    fn len(&self) -> usize {
        self.id.len()
    }

    fn push(&mut self, rng: &mut ChaCha8Rng, id: i64, event: i64, created: i64) {
        self.id.append_value(id);
        self.event.append_value(event);
        self.created.append_value(created);
        let v = rng.random::<f32>();
        self.conv_rate.append_option(mostly(rng, v));
        let v = rng.random::<f32>();
        self.acc_rate.append_option(mostly(rng, v));
        let v = rng.random_range(0..40);
        self.avg_daily_trips.append_option(mostly(rng, v));
        let v = 1.0 + rng.random::<f64>() * 4.0;
        self.rating.append_option(mostly(rng, v));
        let v = rng.random_range(0..20_000);
        self.total_trips.append_option(mostly(rng, v));
        let v = rng.random::<f32>() * 12.0;
        self.online_hours.append_option(mostly(rng, v));
        let v = rng.random_range(0..10);
        self.cancellations.append_option(mostly(rng, v));
        let v = CITIES[rng.random_range(0..CITIES.len())];
        self.city.append_option(mostly(rng, v));
        let v = rng.random_bool(0.8);
        self.is_active.append_option(mostly(rng, v));
        let v = rng.random::<f64>() * 500.0;
        self.earnings.append_option(mostly(rng, v));
    }

    fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.event.finish().with_timezone("UTC")),
            Arc::new(self.created.finish().with_timezone("UTC")),
            Arc::new(self.conv_rate.finish()),
            Arc::new(self.acc_rate.finish()),
            Arc::new(self.avg_daily_trips.finish()),
            Arc::new(self.rating.finish()),
            Arc::new(self.total_trips.finish()),
            Arc::new(self.online_hours.finish()),
            Arc::new(self.cancellations.finish()),
            Arc::new(self.city.finish()),
            Arc::new(self.is_active.finish()),
            Arc::new(self.earnings.finish()),
        ];
        RecordBatch::try_new(driver_schema(), columns).expect("builders match the schema")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    fn spec() -> SampleSpec {
        SampleSpec {
            labels: 100,
            drivers: 50,
            hours: 10,
            customers: 40,
            customer_days: 3,
            seed: 7,
            end: DateTime::parse_from_rfc3339("2026-01-02T00:00:00Z")
                .unwrap()
                .to_utc(),
        }
    }

    #[test]
    fn same_seed_same_bytes_and_the_requested_shape() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let sa = write_sample_data(a.path(), &spec()).unwrap();
        let sb = write_sample_data(b.path(), &spec()).unwrap();
        assert_eq!(
            std::fs::read(&sa.driver_stats).unwrap(),
            std::fs::read(&sb.driver_stats).unwrap()
        );
        assert_eq!(
            std::fs::read(&sa.customer_profile).unwrap(),
            std::fs::read(&sb.customer_profile).unwrap()
        );
        // One row per driver-hour plus ~1% corrections.
        assert!((500..520).contains(&sa.driver_rows), "{}", sa.driver_rows);
        assert!(
            (120..130).contains(&sa.customer_rows),
            "{}",
            sa.customer_rows
        );

        let reader =
            ParquetRecordBatchReaderBuilder::try_new(File::open(&sa.driver_stats).unwrap())
                .unwrap()
                .build()
                .unwrap();
        let mut max_event = i64::MIN;
        for batch in reader {
            let batch = batch.unwrap();
            let ev = batch
                .column(1)
                .as_any()
                .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
                .unwrap();
            max_event = max_event.max(arrow::compute::max(ev).unwrap());
        }
        assert_eq!(
            max_event,
            spec().end.timestamp_micros(),
            "data ends exactly at `end`"
        );
        let other = SampleSpec { seed: 8, ..spec() };
        let c = tempfile::tempdir().unwrap();
        let sc = write_sample_data(c.path(), &other).unwrap();
        assert_ne!(
            std::fs::read(&sa.driver_stats).unwrap(),
            std::fs::read(&sc.driver_stats).unwrap()
        );
    }
}
