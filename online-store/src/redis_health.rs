//! Reading what a Redis server says about keeping values (`CONFIG GET`, `INFO`) into a
//! [`ServerReport`]. `CONFIG GET` first; managed Redis often refuses CONFIG, and `INFO memory`
//! then still tells the policy (though not whether RDB snapshots are on).

use std::collections::HashMap;

use redis::Value;

use crate::health::{Eviction, Persistence, ServerReport};

/// One server's answer to a command, or why it gave none (an error reply, e.g. CONFIG refused).
pub(crate) type Answer = std::result::Result<Value, String>;

/// The `field:value` lines of an `INFO` answer.
fn info_fields(reply: &Answer) -> std::result::Result<HashMap<String, String>, String> {
    let reply = reply.as_ref().map_err(String::clone)?;
    let text = redis::from_redis_value_ref::<String>(reply).map_err(|e| e.to_string())?;
    Ok(text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim().to_string()))
        .collect())
}

/// The `name value` pairs of a `CONFIG GET` answer.
fn config_fields(reply: &Answer) -> std::result::Result<HashMap<String, String>, String> {
    let reply = reply.as_ref().map_err(String::clone)?;
    redis::from_redis_value_ref::<HashMap<String, String>>(reply).map_err(|e| e.to_string())
}

/// The answers of every server to each of the health commands, in [`HEALTH_COMMANDS`] order.
pub(crate) type Answers = Vec<Answer>;

/// What `RedisStore::health_report` asks each server, in order.
pub(crate) const HEALTH_COMMANDS: [&[&str]; 5] = [
    &["CONFIG", "GET", "maxmemory*"],
    &["CONFIG", "GET", "save"],
    &["INFO", "memory"],
    &["INFO", "persistence"],
    &["INFO", "stats"],
];

/// One server's report from its answers to [`HEALTH_COMMANDS`].
pub(crate) fn server_report(server: String, answers: &Answers) -> ServerReport {
    let missing = || Err("no answer".to_string());
    let get = |i: usize| answers.get(i).cloned().unwrap_or_else(missing);
    let (config, save, memory, persistence, stats) = (
        config_fields(&get(0)),
        config_fields(&get(1)),
        info_fields(&get(2)),
        info_fields(&get(3)),
        info_fields(&get(4)),
    );
    let mut unchecked = Vec::new();
    let eviction_from = |fields: &HashMap<String, String>, policy: &str| {
        Some(Eviction {
            policy: fields.get(policy)?.clone(),
            maxmemory: fields.get("maxmemory")?.parse().ok()?,
        })
    };
    let eviction = match (&config, &memory) {
        (Ok(c), _) if eviction_from(c, "maxmemory-policy").is_some() => {
            eviction_from(c, "maxmemory-policy")
        }
        (_, Ok(m)) if eviction_from(m, "maxmemory_policy").is_some() => {
            eviction_from(m, "maxmemory_policy")
        }
        (c, m) => {
            unchecked.push(format!(
                "could not read maxmemory and maxmemory-policy, so whether it may evict values is unknown (CONFIG GET: {}; INFO memory: {})",
                c.as_ref().err().map_or("no such fields", String::as_str),
                m.as_ref().err().map_or("no such fields", String::as_str),
            ));
            None
        }
    };
    let rdb = save
        .as_ref()
        .ok()
        .and_then(|s| s.get("save"))
        .map(|s| !s.trim().is_empty());
    let persistence = match &persistence {
        // While it loads its dataset after a restart, Redis reports AOF as off.
        Ok(p) if p.get("loading").is_some_and(|v| v == "1") => {
            unchecked.push(
                "it is loading its dataset after a restart, so whether it keeps values across a restart is not known yet".to_string(),
            );
            None
        }
        Ok(p) => {
            let aof = p.get("aof_enabled").is_some_and(|v| v == "1");
            if rdb.is_none() && !aof {
                unchecked.push(format!(
                    "AOF is off and whether RDB snapshots are on is unknown (CONFIG GET save: {}): if neither is, a restart empties it",
                    save.as_ref().err().map_or("no such field", String::as_str)
                ));
            }
            Some(Persistence { rdb, aof })
        }
        Err(e) => {
            unchecked.push(format!(
                "could not read INFO persistence, so whether it keeps values across a restart is unknown ({e})"
            ));
            None
        }
    };
    let evicted_keys = match &stats {
        Ok(s) => s.get("evicted_keys").and_then(|v| v.parse().ok()),
        Err(_) => None,
    };
    if evicted_keys.is_none() {
        unchecked.push(format!(
            "could not read evicted_keys from INFO stats, so evictions cannot be counted ({})",
            stats.as_ref().err().map_or("no such field", String::as_str)
        ));
    }
    ServerReport {
        server,
        eviction,
        persistence,
        evicted_keys,
        unchecked,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Answer {
        Ok(Value::BulkString(s.as_bytes().to_vec()))
    }

    fn pairs(kv: &[(&str, &str)]) -> Answer {
        Ok(Value::Array(
            kv.iter()
                .flat_map(|(k, v)| [*k, *v])
                .map(|s| Value::BulkString(s.as_bytes().to_vec()))
                .collect(),
        ))
    }

    const MEMORY: &str =
        "# Memory\r\nused_memory:914568\r\nmaxmemory:41943040\r\nmaxmemory_policy:volatile-lru\r\n";
    const PERSISTENCE: &str = "# Persistence\r\nloading:0\r\naof_enabled:0\r\n";
    const STATS: &str = "# Stats\r\nexpired_keys:5\r\nevicted_keys:238879\r\n";

    #[test]
    fn a_server_that_answers_everything() {
        let answers = vec![
            pairs(&[
                ("maxmemory", "2097152"),
                ("maxmemory-policy", "allkeys-lru"),
            ]),
            pairs(&[("save", "")]),
            text(MEMORY),
            text(PERSISTENCE),
            text(STATS),
        ];
        let r = server_report("h:1".into(), &answers);
        assert_eq!(
            r.eviction,
            Some(Eviction {
                policy: "allkeys-lru".into(),
                maxmemory: 2_097_152
            })
        );
        assert_eq!(
            r.persistence,
            Some(Persistence {
                rdb: Some(false),
                aof: false
            })
        );
        assert_eq!(r.evicted_keys, Some(238_879));
        assert!(r.unchecked.is_empty(), "{:?}", r.unchecked);
    }

    /// While Redis loads its dataset, INFO says `aof_enabled:0` even with AOF on: persistence is
    /// unknown then, never "none" (which would warn that a restart empties it).
    #[test]
    fn a_loading_server_has_unknown_persistence() {
        let answers = vec![
            pairs(&[("maxmemory", "0"), ("maxmemory-policy", "noeviction")]),
            pairs(&[("save", "")]),
            text(MEMORY),
            text("# Persistence\r\nloading:1\r\naof_enabled:0\r\n"),
            text(STATS),
        ];
        let r = server_report("h:1".into(), &answers);
        assert_eq!(r.persistence, None);
        assert!(
            r.unchecked
                .iter()
                .any(|u| u.contains("loading its dataset")),
            "{:?}",
            r.unchecked
        );
    }

    /// Managed Redis refuses CONFIG: the policy comes from INFO memory, and RDB is unknown.
    #[test]
    fn a_server_that_refuses_config_is_read_through_info() {
        let refused = || Err("ERR unknown command 'CONFIG'".to_string());
        let answers = vec![
            refused(),
            refused(),
            text(MEMORY),
            text(PERSISTENCE),
            text(STATS),
        ];
        let r = server_report("h:1".into(), &answers);
        assert_eq!(
            r.eviction,
            Some(Eviction {
                policy: "volatile-lru".into(),
                maxmemory: 41_943_040
            })
        );
        assert_eq!(r.persistence.as_ref().unwrap().rdb, None);
        assert_eq!(r.evicted_keys, Some(238_879));
        assert!(
            r.unchecked.len() == 1 && r.unchecked[0].contains("RDB"),
            "{:?}",
            r.unchecked
        );
    }

    /// A server that answers nothing useful is reported as unknown, never as safe.
    #[test]
    fn a_server_that_refuses_everything_is_unknown() {
        let refused = || Err("NOPERM".to_string());
        let r = server_report("h:1".into(), &vec![refused(); 5]);
        assert_eq!(
            (r.eviction, r.persistence, r.evicted_keys),
            (None, None, None)
        );
        assert_eq!(r.unchecked.len(), 3, "{:?}", r.unchecked);
        assert!(r.unchecked[0].contains("NOPERM"), "{:?}", r.unchecked);
    }
}
