//! Versions in Redis, so a fleet of feature servers shares one registry. All keys of a project
//! share a hash tag (one Cluster slot); a Lua script checks the base version and publishes the
//! new one in one atomic step.

use std::time::Duration;

use redis::{Commands, Connection};

use super::{MaterializationRun, RegistryStore, RegistryVersion, VersionSummary};
use crate::config::{check_redis_url_encoding, invalid_redis_url, redact_url};
use crate::error::{Error, Result};

const TIMEOUT: Duration = Duration::from_secs(5);

/// KEYS: latest, versions (hash), history (list). ARGV: base, next, version json, summary json.
const COMMIT: &str = r#"
local latest = tonumber(redis.call('GET', KEYS[1]) or '0')
if latest ~= tonumber(ARGV[1]) then return latest end
redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
redis.call('RPUSH', KEYS[3], ARGV[4])
redis.call('SET', KEYS[1], ARGV[2])
return -1
"#;

/// KEYS: the runs list, the index hash; ARGV: the record, `view@generation`, its `finished_at`,
/// 1 to index it. Appends the record; makes it the index entry unless that finished later.
const RECORD_RUN: &str = r#"
redis.call('RPUSH', KEYS[1], ARGV[1])
if ARGV[4] == '1' then
  local old = redis.call('HGET', KEYS[2], ARGV[2])
  if (not old) or cjson.decode(old)['finished_at'] <= ARGV[3] then
    redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
  end
end
return 1
"#;

#[derive(Debug)]
pub struct RedisStore {
    client: redis::Client,
    url_shown: String,
    latest_key: String,
    versions_key: String,
    history_key: String,
    runs_key: String,
    /// A hash: `view@generation` → that generation's newest run record.
    latest_runs_key: String,
}

impl RedisStore {
    /// `ca`: a PEM CA certificate to trust for `rediss://` instead of the system's roots.
    pub fn open(url: &str, prefix: &str, project: &str, ca: Option<Vec<u8>>) -> Result<Self> {
        // Such a URL may parse, but into another host, port or database than the one meant.
        check_redis_url_encoding(url).map_err(Error::Unavailable)?;
        let client = match ca {
            None => redis::Client::open(url),
            Some(pem) => redis::Client::build_with_tls(
                url,
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                },
            ),
        }
        .map_err(|e| Error::Unavailable(invalid_redis_url(url, e)))?;
        let tag = format!("{prefix}:{{{project}}}");
        Ok(RedisStore {
            client,
            url_shown: redact_url(url),
            latest_key: format!("{tag}:latest"),
            versions_key: format!("{tag}:versions"),
            history_key: format!("{tag}:history"),
            runs_key: format!("{tag}:runs"),
            latest_runs_key: format!("{tag}:runs:latest"),
        })
    }

    fn parse_run(&self, json: &str) -> Result<MaterializationRun> {
        serde_json::from_str(json)
            .map_err(|e| Error::Corrupt(format!("{} runs: {e}", self.location())))
    }

    fn connection(&self) -> Result<Connection> {
        let con = self
            .client
            .get_connection_with_timeout(TIMEOUT)
            .map_err(|e| self.unavailable(e))?;
        con.set_read_timeout(Some(TIMEOUT))
            .map_err(|e| self.unavailable(e))?;
        con.set_write_timeout(Some(TIMEOUT))
            .map_err(|e| self.unavailable(e))?;
        Ok(con)
    }

    /// A read timeout on a blocking socket surfaces as `WouldBlock` ("Resource temporarily
    /// unavailable (os error 11)"): say what it means.
    fn unavailable(&self, e: redis::RedisError) -> Error {
        if e.is_timeout() {
            return Error::Unavailable(format!(
                "{}: timed out: no answer within {} s",
                self.url_shown,
                TIMEOUT.as_secs()
            ));
        }
        Error::Unavailable(format!("{}: {e}", self.url_shown))
    }
}

impl RegistryStore for RedisStore {
    fn latest_version(&self) -> Result<Option<u64>> {
        let latest: Option<u64> = self
            .connection()?
            .get(&self.latest_key)
            .map_err(|e| self.unavailable(e))?;
        Ok(latest.filter(|v| *v > 0))
    }

    fn get(&self, version: u64) -> Result<RegistryVersion> {
        let json: Option<String> = self
            .connection()?
            .hget(&self.versions_key, version)
            .map_err(|e| self.unavailable(e))?;
        let json = json.ok_or_else(|| {
            Error::NotFound(format!(
                "registry version {version} does not exist in {}",
                self.location()
            ))
        })?;
        serde_json::from_str(&json)
            .map_err(|e| Error::Corrupt(format!("{} version {version}: {e}", self.location())))
    }

    fn history(&self) -> Result<Vec<VersionSummary>> {
        let items: Vec<String> = self
            .connection()?
            .lrange(&self.history_key, 0, -1)
            .map_err(|e| self.unavailable(e))?;
        items
            .iter()
            .map(|s| {
                serde_json::from_str(s)
                    .map_err(|e| Error::Corrupt(format!("{} history: {e}", self.location())))
            })
            .collect()
    }

    fn commit(&self, base: Option<u64>, next: &RegistryVersion) -> Result<()> {
        let json = serde_json::to_string(next).expect("versions always serialize");
        let summary =
            serde_json::to_string(&VersionSummary::from(next)).expect("summaries always serialize");
        let result: i64 = redis::Script::new(COMMIT)
            .key(&self.latest_key)
            .key(&self.versions_key)
            .key(&self.history_key)
            .arg(base.unwrap_or(0))
            .arg(next.version)
            .arg(json)
            .arg(summary)
            .invoke(&mut self.connection()?)
            .map_err(|e| self.unavailable(e))?;
        if result >= 0 {
            return Err(Error::Conflict {
                base: base.unwrap_or(0),
                conflicting: result as u64,
            });
        }
        Ok(())
    }

    fn location(&self) -> String {
        format!("{} ({})", self.url_shown, self.latest_key)
    }

    fn record_run(&self, run: &MaterializationRun) -> Result<()> {
        let json = serde_json::to_string(run).expect("runs always serialize");
        // The record, and (for a record that says how far its generation was materialized)
        // the index entry unless the one there finished later: one script, so both or neither.
        let _: i64 = redis::Script::new(RECORD_RUN)
            .key(&self.runs_key)
            .key(&self.latest_runs_key)
            .arg(&json)
            .arg(format!("{}@{}", run.view, run.generation))
            .arg(&run.finished_at)
            .arg(i32::from(run.indexed()))
            .invoke(&mut self.connection()?)
            .map_err(|e| self.unavailable(e))?;
        Ok(())
    }

    fn indexed_latest_runs(&self) -> Result<Vec<MaterializationRun>> {
        let items: Vec<String> = self
            .connection()?
            .hvals(&self.latest_runs_key)
            .map_err(|e| self.unavailable(e))?;
        items.iter().map(|s| self.parse_run(s)).collect()
    }

    fn view_runs(
        &self,
        view: &str,
        limit: usize,
    ) -> Result<(Vec<MaterializationRun>, Option<u64>)> {
        // One list holds every view's records: read it newest first, a page at a time, until
        // `limit` of this view's are found or [`MAX_SCANNED`] records are read.
        const PAGE: isize = 1_000;
        const MAX_SCANNED: usize = 50_000;
        let mut con = self.connection()?;
        let total: isize = con.llen(&self.runs_key).map_err(|e| self.unavailable(e))?;
        let marker = format!(
            "\"view\":{}",
            serde_json::to_string(view).unwrap_or_default()
        );
        let mut found = Vec::new();
        let mut end = total;
        let stop = (total - MAX_SCANNED as isize).max(0);
        while end > stop && found.len() < limit {
            let start = (end - PAGE).max(0);
            let items: Vec<String> = con
                .lrange(&self.runs_key, start, end - 1)
                .map_err(|e| self.unavailable(e))?;
            for item in items.iter().rev() {
                if found.len() < limit && item.contains(&marker) {
                    let run = self.parse_run(item)?;
                    if run.view == view {
                        found.push(run);
                    }
                }
            }
            end = start;
        }
        found.reverse();
        // Counted only when every record was read.
        let count = (end == 0 && found.len() < limit).then_some(found.len() as u64);
        Ok((found, count))
    }

    fn runs(&self, limit: usize) -> Result<Vec<MaterializationRun>> {
        let items: Vec<String> = self
            .connection()?
            .lrange(&self.runs_key, -(limit.max(1) as isize), -1)
            .map_err(|e| self.unavailable(e))?;
        items.iter().map(|s| self.parse_run(s)).collect()
    }
}
