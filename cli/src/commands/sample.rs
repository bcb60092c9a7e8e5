//! The sample-data options shared by `init` and `quickstart`.

use anyhow::Result;
use chrono::{DateTime, Utc};
use quiver_examples::SampleSpec;

use crate::exit::UserError;

#[derive(Debug, Clone, clap::Args)]
pub struct SampleArgs {
    /// Drivers to generate (hourly rows each).
    #[arg(long, default_value_t = 100)]
    pub drivers: u64,
    /// Hourly rows per driver.
    #[arg(long, default_value_t = 24)]
    pub hours: u32,
    /// Customers to generate (daily rows each).
    #[arg(long, default_value_t = 500)]
    pub customers: u64,
    /// Daily rows per customer.
    #[arg(long, default_value_t = 5)]
    pub customer_days: u32,
    /// Random seed: the same seed, sizes and end give the same data.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Rows of the sample entity table `data/labels.parquet` (for `quiver retrieve`).
    #[arg(long, default_value_t = 1000)]
    pub labels: u64,
    /// Newest event time (RFC 3339, e.g. 2026-01-02T00:00:00Z); default: now.
    #[arg(long)]
    pub end: Option<String>,
}

impl SampleArgs {
    pub fn spec(&self) -> Result<SampleSpec> {
        let end = match &self.end {
            Some(text) => DateTime::parse_from_rfc3339(text)
                .map_err(|e| {
                    UserError(format!(
                        "invalid --end `{text}`: {e}; write e.g. 2026-01-02T00:00:00Z"
                    ))
                })?
                .to_utc(),
            None => Utc::now(),
        };
        if self.hours == 0 || self.customer_days == 0 {
            return Err(UserError("--hours and --customer-days must be at least 1".into()).into());
        }
        Ok(SampleSpec {
            drivers: self.drivers,
            hours: self.hours,
            customers: self.customers,
            customer_days: self.customer_days,
            seed: self.seed,
            end,
            labels: self.labels,
        })
    }
}
