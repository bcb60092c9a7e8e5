//! Quiver's registry: the definitions model, YAML parsing and validation, plan/diff, and the
//! versioned registry store.
//!
//! It owns what users declare (entities, sources, feature views, feature services) and every
//! applied version of it. It knows nothing about the online value format, DataFusion, HTTP or
//! gRPC; it reads Parquet footers only to check declared features against their sources.
//!
//! Module map:
//! - [`config`] — `quiver.yaml` (project, registry, online store, serving, token scopes)
//! - [`definitions`] — the YAML shapes of definition files, as written
//! - [`validate`] — written definitions → the checked [`model::Registry`], every problem at once
//! - [`source_schema`] — reading source Parquet schemas for validation
//! - [`hint`] — "did you mean" for misspelt names
//! - [`plan`] — diffs between registry versions, and view generations
//! - [`store`] — immutable, numbered registry versions in a local directory or Redis
//! - [`repo`] — a feature repository on disk, tying the above together

pub mod aggregation;
pub mod config;
pub mod definitions;
pub mod duration;
pub mod env_subst;
pub mod error;
pub mod hint;
pub mod model;
pub mod plan;
pub mod repo;
pub mod source_schema;
pub mod store;
pub mod validate;
pub mod value_type;
mod yaml;

pub use aggregation::{Aggregate, Aggregations, Function};
pub use config::{
    AuthConfig, CacheConfig, OnlineStoreConfig, ProjectConfig, RegistryConfig, Scope,
    ServingConfig, TlsConfig, TokenConfig,
};
pub use duration::Ttl;
pub use error::{Diagnostic, Error, Result, Severity, Span};
pub use hint::did_you_mean;
pub use model::{
    Entity, FeatureRef, FeatureService, FeatureView, Field, PartitionColumn, PushSource, Registry,
    Source, TimePartition,
};
pub use plan::Plan;
pub use repo::Repository;
pub use store::{RegistryStore, RegistryVersion};
pub use value_type::{ScalarType, ValueType};
