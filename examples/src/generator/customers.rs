//! Daily customer profiles: the sample data of `features/customers.yaml`, one row per customer
//! and day, every Arrow type the online format encodes (lists, binary, booleans, int32, …).

use std::sync::Arc;

use arrow::array::{
    ArrayBuilder, ArrayRef, BinaryBuilder, BooleanBuilder, Float32Builder, Float64Builder,
    Int32Builder, Int64Builder, ListBuilder, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::{mostly, ts_field};

const TIERS: [&str; 4] = ["bronze", "silver", "gold", "platinum"];

pub(super) fn customer_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("customer_id", DataType::Int64, false),
        ts_field("event_timestamp", false),
        ts_field("created", false),
        Field::new("current_balance", DataType::Float64, true),
        Field::new("avg_passenger_count", DataType::Float32, true),
        Field::new("lifetime_trips", DataType::Int64, true),
        Field::new("loyalty_tier", DataType::Utf8, true),
        Field::new("is_premium", DataType::Boolean, true),
        Field::new("age", DataType::Int32, true),
        ts_field("signup_at", true),
        Field::new(
            "recent_ratings",
            DataType::List(Arc::new(Field::new("item", DataType::Float64, true))),
            true,
        ),
        Field::new("referral_code", DataType::Binary, true),
        Field::new("churn_risk", DataType::Float32, true),
    ]))
}

#[derive(Default)]
pub(super) struct CustomerBatch {
    id: Int64Builder,
    event: TimestampMicrosecondBuilder,
    created: TimestampMicrosecondBuilder,
    current_balance: Float64Builder,
    avg_passenger_count: Float32Builder,
    lifetime_trips: Int64Builder,
    loyalty_tier: StringBuilder,
    is_premium: BooleanBuilder,
    age: Int32Builder,
    signup_at: TimestampMicrosecondBuilder,
    recent_ratings: ListBuilder<Float64Builder>,
    referral_code: BinaryBuilder,
    churn_risk: Float32Builder,
}

impl CustomerBatch {
    pub(super) fn len(&self) -> usize {
        self.id.len()
    }

    pub(super) fn push(
        &mut self,
        rng: &mut ChaCha8Rng,
        id: i64,
        event: i64,
        created: i64,
        signup: i64,
    ) {
        self.id.append_value(id);
        self.event.append_value(event);
        self.created.append_value(created);
        let v = rng.random::<f64>() * 1000.0 - 100.0;
        self.current_balance.append_option(mostly(rng, v));
        let v = 1.0 + rng.random::<f32>() * 3.0;
        self.avg_passenger_count.append_option(mostly(rng, v));
        let v = rng.random_range(0..5_000);
        self.lifetime_trips.append_option(mostly(rng, v));
        let v = TIERS[rng.random_range(0..TIERS.len())];
        self.loyalty_tier.append_option(mostly(rng, v));
        let v = rng.random_bool(0.3);
        self.is_premium.append_option(mostly(rng, v));
        let v = rng.random_range(18..90);
        self.age.append_option(mostly(rng, v));
        self.signup_at.append_option(mostly(rng, signup));
        if rng.random_bool(0.02) {
            self.recent_ratings.append_null();
        } else {
            let n = rng.random_range(0..5);
            for _ in 0..n {
                let r = f64::from(rng.random_range(1..=5));
                self.recent_ratings.values().append_value(r);
            }
            self.recent_ratings.append(true);
        }
        let code: [u8; 6] = rng.random();
        self.referral_code.append_option(mostly(rng, code));
        let v = rng.random::<f32>();
        self.churn_risk.append_option(mostly(rng, v));
    }

    pub(super) fn finish(&mut self) -> RecordBatch {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.event.finish().with_timezone("UTC")),
            Arc::new(self.created.finish().with_timezone("UTC")),
            Arc::new(self.current_balance.finish()),
            Arc::new(self.avg_passenger_count.finish()),
            Arc::new(self.lifetime_trips.finish()),
            Arc::new(self.loyalty_tier.finish()),
            Arc::new(self.is_premium.finish()),
            Arc::new(self.age.finish()),
            Arc::new(self.signup_at.finish().with_timezone("UTC")),
            Arc::new(self.recent_ratings.finish()),
            Arc::new(self.referral_code.finish()),
            Arc::new(self.churn_risk.finish()),
        ];
        RecordBatch::try_new(customer_schema(), columns).expect("builders match the schema")
    }
}
