//! Raw trip events: the sample data of the aggregation view (`features/activity.yaml`).

use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, Float64Builder, Int64Builder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{
    BATCH_ROWS, FIRST_DRIVER_ID, GeneratorError, MICROS_PER_HOUR, SampleSpec, mostly, write_table,
};

/// Raw trip events for the aggregation view: per driver and hour of the data, 0 to 3 trips at
/// random times within the hour, each with a fare and a distance (2% of them null).
pub(super) fn write_trips(path: &Path, spec: &SampleSpec) -> Result<u64, GeneratorError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("driver_id", DataType::Int64, false),
        Field::new(
            "event_timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("fare", DataType::Float64, true),
        Field::new("distance_km", DataType::Float64, true),
    ]));
    let end = spec.end.timestamp_micros();
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed.wrapping_add(2));
    write_table(path, schema.clone(), |emit| {
        let (mut id, mut at, mut fare, mut distance) = (
            Int64Builder::new(),
            TimestampMicrosecondBuilder::new().with_timezone("UTC"),
            Float64Builder::new(),
            Float64Builder::new(),
        );
        let mut flush = |id: &mut Int64Builder,
                         at: &mut TimestampMicrosecondBuilder,
                         fare: &mut Float64Builder,
                         distance: &mut Float64Builder|
         -> Result<(), GeneratorError> {
            let columns: Vec<ArrayRef> = vec![
                Arc::new(id.finish()),
                Arc::new(at.finish()),
                Arc::new(fare.finish()),
                Arc::new(distance.finish()),
            ];
            emit(RecordBatch::try_new(schema.clone(), columns).expect("the schema's columns"))
        };
        for d in 0..spec.drivers {
            let driver = FIRST_DRIVER_ID + d as i64;
            for h in 0..spec.hours {
                let hour_start = end - i64::from(spec.hours - h) * MICROS_PER_HOUR;
                for _ in 0..rng.random_range(0..4) {
                    id.append_value(driver);
                    at.append_value(hour_start + rng.random_range(1..=MICROS_PER_HOUR));
                    let f = (rng.random_range(500..6_000) as f64) / 100.0;
                    fare.append_option(mostly(&mut rng, f));
                    let k = (rng.random_range(5..300) as f64) / 10.0;
                    distance.append_option(mostly(&mut rng, k));
                }
                if id.len() >= BATCH_ROWS {
                    flush(&mut id, &mut at, &mut fare, &mut distance)?;
                }
            }
        }
        flush(&mut id, &mut at, &mut fare, &mut distance)
    })
}
