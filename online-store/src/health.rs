//! What an online store says about keeping the values written to it: whether it may evict them
//! when its memory is full, whether they survive a restart, and how many keys it has evicted.
//!
//! Quiver needs every value it writes to stay until a newer one replaces it or (with `key_ttl`)
//! its ttl expires it: a value evicted behind a moved watermark is never written again by
//! `materialize-incremental`. The rules deciding what is a risk live here, once, for the
//! materializer (which refuses or counts) and the server (which warns and exports gauges).

/// A server's memory limit and what it does when the limit is reached (Redis `maxmemory` and
/// `maxmemory-policy`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// `noeviction`, `allkeys-lru`, `volatile-lru`, …
    pub policy: String,
    /// In bytes; 0 is no limit, and nothing is evicted then.
    pub maxmemory: u64,
}

impl Eviction {
    /// Whether the server may drop values Quiver wrote to make room: under a memory limit, any
    /// policy but `noeviction` (an unknown one counts as evicting), except a `volatile-*` one
    /// when values have no expiry (`key_ttl: false`): those evict only keys with a ttl.
    pub fn may_evict_values(&self, key_ttl: bool) -> bool {
        self.maxmemory > 0
            && self.policy != "noeviction"
            && (key_ttl || !self.policy.starts_with("volatile-"))
    }
}

/// Whether a server writes its data to disk (Redis RDB snapshots, the append-only file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Persistence {
    /// RDB snapshots (`save` points); `None` when the server would not say (CONFIG refused).
    pub rdb: Option<bool>,
    /// The append-only file (`aof_enabled`).
    pub aof: bool,
}

impl Persistence {
    /// `Some(false)` when a restart empties the server; `None` when that is not known.
    pub fn survives_restart(&self) -> Option<bool> {
        match (self.aof, self.rdb) {
            (true, _) | (_, Some(true)) => Some(true),
            (false, Some(false)) => Some(false),
            (false, None) => None,
        }
    }
}

/// What one server holding values reports; a field is `None` when it could not be found out,
/// and `unchecked` says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerReport {
    /// Where the server is, for messages (no secrets).
    pub server: String,
    pub eviction: Option<Eviction>,
    pub persistence: Option<Persistence>,
    /// Keys the server has evicted since it started (Redis `evicted_keys`).
    pub evicted_keys: Option<u64>,
    /// What could not be checked, and why.
    pub unchecked: Vec<String>,
}

/// What a store reports about keeping values. A store that keeps everything on disk and never
/// evicts (embedded) has no servers to report: nothing to worry about.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreReport {
    /// Each server holding values: the one standalone Redis, or every master of a Cluster.
    pub servers: Vec<ServerReport>,
}

/// What to change when a store may evict values.
pub const EVICTION_FIX: &str = "set maxmemory-policy to noeviction (or keep a volatile-* policy and set `key_ttl: false`), or give Redis enough maxmemory for every view; to accept losing values, set `allow_eviction: true` under online_store";

impl StoreReport {
    /// `Some(true)` when a server's policy may evict values Quiver wrote (see
    /// [`Eviction::may_evict_values`]), `Some(false)` when none may, `None` when a server's
    /// policy could not be found out.
    pub fn may_evict_values(&self, key_ttl: bool) -> Option<bool> {
        let mut known = true;
        for s in &self.servers {
            match &s.eviction {
                Some(e) if e.may_evict_values(key_ttl) => return Some(true),
                Some(_) => {}
                None => known = false,
            }
        }
        known.then_some(false)
    }

    /// `Some(false)` when a restart empties a server, `None` when that is not known.
    pub fn survives_restart(&self) -> Option<bool> {
        let mut known = true;
        for s in &self.servers {
            match s
                .persistence
                .as_ref()
                .and_then(Persistence::survives_restart)
            {
                Some(true) => {}
                Some(false) => return Some(false),
                None => known = false,
            }
        }
        known.then_some(true)
    }

    /// Keys evicted so far over all servers; `None` when a server did not say.
    pub fn evicted_keys(&self) -> Option<u64> {
        self.servers.iter().map(|s| s.evicted_keys).sum()
    }

    /// One sentence per server whose policy may evict values, saying why.
    pub fn eviction_risks(&self, key_ttl: bool) -> Vec<String> {
        self.servers
            .iter()
            .filter_map(|s| {
                let e = s.eviction.as_ref()?;
                e.may_evict_values(key_ttl).then(|| {
                    let volatile = if e.policy.starts_with("volatile-") {
                        " (with `key_ttl: true` every value has a ttl, so every value may be evicted)"
                    } else {
                        ""
                    };
                    format!(
                        "Redis {} may evict Quiver's values when full: maxmemory {} bytes, maxmemory-policy {}{volatile}",
                        s.server, e.maxmemory, e.policy
                    )
                })
            })
            .collect()
    }

    /// Everything worth a warning whatever the policy decision: servers a restart empties, and
    /// what could not be checked.
    pub fn warnings(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.servers {
            if s.persistence
                .as_ref()
                .and_then(Persistence::survives_restart)
                == Some(false)
            {
                out.push(format!(
                    "Redis {} keeps no copy on disk (neither RDB snapshots nor AOF): a restart empties it, and every view must be materialized again; turn on `appendonly yes` or `save` points",
                    s.server
                ));
            }
            for what in &s.unchecked {
                out.push(format!("Redis {}: {what}", s.server));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(policy: &str, maxmemory: u64) -> ServerReport {
        ServerReport {
            server: "h:1".into(),
            eviction: Some(Eviction {
                policy: policy.into(),
                maxmemory,
            }),
            persistence: Some(Persistence {
                rdb: Some(false),
                aof: true,
            }),
            evicted_keys: Some(3),
            unchecked: Vec::new(),
        }
    }

    #[test]
    fn which_policies_may_evict_values() {
        for (policy, maxmemory, key_ttl, evicts) in [
            ("noeviction", 1 << 20, true, false),
            ("allkeys-lru", 0, true, false),
            ("allkeys-lru", 1 << 20, false, true),
            ("allkeys-random", 1 << 20, false, true),
            ("volatile-lru", 1 << 20, false, false),
            ("volatile-lru", 1 << 20, true, true),
            ("volatile-ttl", 1 << 20, true, true),
            ("volatile-lru", 0, true, false),
            ("some-future-policy", 1 << 20, false, true),
        ] {
            let e = Eviction {
                policy: policy.into(),
                maxmemory,
            };
            assert_eq!(
                e.may_evict_values(key_ttl),
                evicts,
                "{policy} {maxmemory} {key_ttl}"
            );
        }
    }

    #[test]
    fn a_cluster_is_as_risky_as_its_riskiest_master() {
        let mut unknown = server("noeviction", 0);
        unknown.eviction = None;
        unknown.persistence = None;
        unknown.evicted_keys = None;
        let report = |servers| StoreReport { servers };
        let safe = report(vec![server("noeviction", 0), server("noeviction", 0)]);
        assert_eq!(safe.may_evict_values(true), Some(false));
        assert_eq!(safe.evicted_keys(), Some(6));
        assert_eq!(safe.survives_restart(), Some(true));
        let risky = report(vec![server("noeviction", 0), server("allkeys-lru", 9)]);
        assert_eq!(risky.may_evict_values(false), Some(true));
        assert_eq!(risky.eviction_risks(false).len(), 1);
        let partly_known = report(vec![server("noeviction", 0), unknown.clone()]);
        assert_eq!(partly_known.may_evict_values(true), None);
        assert_eq!(partly_known.evicted_keys(), None);
        assert_eq!(partly_known.survives_restart(), None);
        let partly_risky = report(vec![unknown, server("allkeys-lru", 9)]);
        assert_eq!(partly_risky.may_evict_values(true), Some(true));
        let embedded = StoreReport::default();
        assert_eq!(embedded.may_evict_values(true), Some(false));
        assert_eq!(embedded.evicted_keys(), Some(0));
        assert!(embedded.warnings().is_empty());
    }

    #[test]
    fn a_server_without_persistence_is_a_warning() {
        let mut s = server("noeviction", 0);
        s.persistence = Some(Persistence {
            rdb: Some(false),
            aof: false,
        });
        let report = StoreReport { servers: vec![s] };
        assert_eq!(report.survives_restart(), Some(false));
        let warnings = report.warnings();
        assert!(warnings[0].contains("a restart empties it"), "{warnings:?}");
    }
}
