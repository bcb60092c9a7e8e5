//! The sample feature repository (drivers and customers) and its deterministic data generator.
//!
//! `quiver init` and `quiver quickstart` write it; the benchmarks generate it at scale with the
//! same code. It knows nothing about the registry, stores or servers: it only writes files.
//!
//! - [`scaffold`]: the repository's files (`quiver.yaml`, `features/*.yaml`)
//! - [`generator`]: its Parquet data, reproducible from a seed and an end time

pub mod generator;
pub mod scaffold;

pub use generator::{SampleSpec, SampleSummary, write_sample_data};
pub use scaffold::{ScaffoldError, project_name, scaffold};
