//! One registry version prepared for serving: per view, its key prefix, join keys, feature types
//! and ttl. A request works on one snapshot from start to end.

use std::collections::HashMap;

use quiver_online_store::key_codec::view_prefix;
use quiver_registry::store::RegistryVersion;
use quiver_registry::{Field, ValueType};

#[derive(Debug)]
pub struct ViewPlan {
    pub name: String,
    pub generation: u64,
    pub online: bool,
    /// `quiver:<project>:<view>:<generation>:`.
    pub prefix: String,
    pub join_keys: Vec<Field>,
    pub features: Vec<Field>,
    pub types: Vec<ValueType>,
    /// 0 = unbounded.
    pub ttl_ns: i64,
}

#[derive(Debug)]
pub struct Snapshot {
    pub version: RegistryVersion,
    pub views: HashMap<String, ViewPlan>,
}

impl Snapshot {
    pub fn new(version: RegistryVersion) -> Self {
        let registry = &version.registry;
        let views = registry
            .feature_views
            .values()
            .map(|v| {
                let plan = ViewPlan {
                    name: v.name.clone(),
                    generation: v.generation,
                    online: v.online,
                    prefix: view_prefix(&registry.project, &v.name, v.generation),
                    join_keys: registry.join_keys(v).into_iter().cloned().collect(),
                    features: v.features.clone(),
                    types: v.features.iter().map(|f| f.value_type).collect(),
                    ttl_ns: i64::try_from(v.ttl.seconds)
                        .unwrap_or(i64::MAX / 1_000_000_000)
                        .saturating_mul(1_000_000_000),
                };
                (v.name.clone(), plan)
            })
            .collect();
        Snapshot { version, views }
    }
}
