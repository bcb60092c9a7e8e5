//! One registry version prepared for serving: per view, its key prefix, join keys, feature types
//! and ttl; per feature service, its features already resolved to (view, index). A request works
//! on one snapshot from start to end.

use std::collections::HashMap;
use std::sync::Arc;

use quiver_online_store::key_codec::view_prefix;
use quiver_online_store::tiles::window_of;
use quiver_online_store::value_codec::{Decoded, decode};
use quiver_registry::did_you_mean;
use quiver_registry::store::RegistryVersion;
use quiver_registry::{Field, ValueType};

use crate::error::{ErrorCode, Result, ServiceError};

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
    /// An aggregation view's aggregates: its stored values are tiles, answered at read time.
    pub aggregations: Option<quiver_registry::Aggregations>,
}

impl ViewPlan {
    /// A stored value as served at `now_ns`. An aggregation view's tiles answer each aggregate
    /// over its window at `now_ns` (count 0 and nulls when no event is in it), with the event
    /// time of the latest event in the longest window (0 when there is none).
    pub fn decode(&self, blob: &[u8], now_ns: i64) -> quiver_online_store::Result<Decoded> {
        match &self.aggregations {
            None => decode(blob, &self.types),
            Some(a) => window_of(blob, a, now_ns).map(|w| Decoded {
                event_ns: w.latest.map_or(0, |(e, _)| e),
                created_ns: w.latest.and_then(|(_, c)| c),
                values: w.values,
            }),
        }
    }
}

/// A requested feature: its view and its index in the view's features.
pub type Resolved<'s> = (&'s ViewPlan, usize);

/// A feature service resolved for a snapshot, or the reason it cannot be served.
type ResolvedService = std::result::Result<Vec<(Arc<ViewPlan>, usize)>, ServiceError>;

#[derive(Debug)]
pub struct Snapshot {
    pub version: RegistryVersion,
    pub views: HashMap<String, Arc<ViewPlan>>,
    /// Each feature service resolved once per version (or why it cannot be served), so a request
    /// naming a service does no per-feature lookups.
    services: HashMap<String, ResolvedService>,
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
                    ttl_ns: v.ttl.nanos(),
                    aggregations: v.aggregations.clone(),
                };
                (v.name.clone(), Arc::new(plan))
            })
            .collect();
        let mut snapshot = Snapshot {
            version,
            views,
            services: HashMap::new(),
        };
        let services = snapshot
            .version
            .registry
            .feature_services
            .values()
            .map(|service| {
                let refs = service
                    .features
                    .iter()
                    .map(|r| (r.view.as_str(), r.feature.as_str()));
                let resolved = snapshot.resolve_refs(refs).map(|list| {
                    list.into_iter()
                        .map(|(view, index)| (snapshot.views[&view.name].clone(), index))
                        .collect()
                });
                (service.name.clone(), resolved)
            })
            .collect();
        snapshot.services = services;
        snapshot
    }

    /// What a server serves before its first registry version has loaded (the registry store
    /// was unreachable at start): version 0, project `project`, nothing in it. Requests are
    /// refused as unavailable until [`crate::reload`] swaps in a real version.
    pub fn unloaded(project: &str) -> Self {
        Snapshot::new(RegistryVersion {
            version: 0,
            hash: String::new(),
            applied_at: String::new(),
            quiver_version: String::new(),
            registry: quiver_registry::Registry {
                project: project.to_string(),
                ..Default::default()
            },
        })
    }

    /// Whether this is a registry version (not [`Snapshot::unloaded`]); versions start at 1.
    pub fn loaded(&self) -> bool {
        self.version.version > 0
    }

    /// The features of feature service `name`, in its order.
    pub fn resolve_service(&self, name: &str) -> Result<Vec<Resolved<'_>>> {
        match self.services.get(name) {
            Some(Ok(list)) => Ok(list.iter().map(|(v, i)| (v.as_ref(), *i)).collect()),
            Some(Err(e)) => Err(e.clone()),
            None => {
                let registry = &self.version.registry;
                let hint = did_you_mean(name, registry.feature_services.keys().map(String::as_str));
                Err(ServiceError::new(
                    ErrorCode::ServiceNotFound,
                    hinted(format!("unknown feature service `{name}`"), hint),
                ))
            }
        }
    }

    /// `(view, feature)` references, in order: each must name an online view and one of its
    /// features.
    pub fn resolve_refs<'a>(
        &self,
        refs: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Vec<Resolved<'_>>> {
        if refs.len() == 0 {
            return Err(ServiceError::invalid(
                "no features requested: give `features` or `feature_service`",
            ));
        }
        refs.map(|(v, f)| {
            let view = self.views.get(v).ok_or_else(|| {
                let hint = did_you_mean(v, self.views.keys().map(String::as_str));
                ServiceError::new(
                    ErrorCode::ViewNotFound,
                    hinted(format!("unknown feature view `{v}`"), hint),
                )
            })?;
            if !view.online {
                return Err(ServiceError::invalid(format!(
                    "feature view `{v}` is not online"
                )));
            }
            let index = view
                .features
                .iter()
                .position(|x| x.name == f)
                .ok_or_else(|| {
                    let hint = did_you_mean(f, view.features.iter().map(|x| x.name.as_str()));
                    ServiceError::invalid(hinted(
                        format!("feature view `{v}` has no feature `{f}`"),
                        hint,
                    ))
                })?;
            Ok((view.as_ref(), index))
        })
        .collect()
    }
}

/// `message`, then `; hint` when there is one.
fn hinted(message: String, hint: Option<String>) -> String {
    match hint {
        Some(h) => format!("{message}; {h}"),
        None => message,
    }
}
