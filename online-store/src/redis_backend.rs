//! The Redis backend, standalone or Cluster: one multiplexed connection shared by all callers,
//! reconnecting by itself; every operation bounded by a timeout; writes as Lua scripts that
//! compare `(event_ts, created_ts)` and set, atomically per key.

use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, StreamExt, TryStreamExt};
use quiver_registry::OnlineStoreConfig;
use quiver_registry::config::{check_redis_url_encoding, invalid_redis_url, redact_url};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use crate::error::{Error, Result};
use crate::health::StoreReport;
use crate::key_codec::watermark_key;
use crate::redis_health::{Answer, Answers, HEALTH_COMMANDS, server_report};
use crate::store::{LiveSwapEntry, OnlineStore, SwapEntry, WriteEntry};

mod scripts;
mod slots;
mod swap;
use scripts::{ADVANCE_WATERMARK, READ_LIVE, SWAP, SWAP_LIVE, WRITE_IF_NEWER};
pub use slots::slot;
use slots::{Keyed, calls, distinct_rounds};

/// Keys per script call: large enough to amortize the round trip, small enough not to block
/// Redis for long.
const KEYS_PER_CALL: usize = 512;
// The write script passes its winners to one `MSET` through Lua's `unpack`, which stops at
// about 8,000 values: two per key.
const _: () = assert!(2 * KEYS_PER_CALL < 7_000);
/// Script calls in flight at once on the multiplexed connection.
const CALLS_IN_FLIGHT: usize = 8;

#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

pub struct RedisStore {
    conn: Conn,
    cluster: bool,
    timeout: Duration,
    write_timeout: Duration,
    shown: String,
    write_script: Script,
    swap_script: Script,
    read_live_script: Script,
    swap_live_script: Script,
    watermark_script: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("at", &self.shown)
            .field("cluster", &self.cluster)
            .finish()
    }
}

/// `timeout_ms` bounds a read of up to this many keys; larger reads get proportionally more.
pub const KEYS_PER_TIMEOUT: usize = 1000;

/// The bound on one read of `keys` keys. Without scaling, requests near `max_entity_rows` timed
/// out under load while single rows had time to spare (found by `benches/soak.sh`).
pub fn read_bound(timeout: Duration, keys: usize) -> Duration {
    let units = u32::try_from(keys.div_ceil(KEYS_PER_TIMEOUT)).unwrap_or(u32::MAX);
    timeout.saturating_mul(units.max(1))
}

impl RedisStore {
    /// Connects; a `tls_ca_file` is relative to `root`.
    pub async fn connect(config: &OnlineStoreConfig, root: &std::path::Path) -> Result<Self> {
        let OnlineStoreConfig::Redis {
            url,
            cluster,
            cluster_nodes,
            timeout_ms,
            write_timeout_ms,
            tls_ca_file,
            ..
        } = config
        else {
            return Err(Error::Config(
                "not a Redis online store configuration".into(),
            ));
        };
        let timeout = Duration::from_millis(*timeout_ms);
        let shown = redact_url(url);
        // Such a URL may parse, but into another host, port or database than the one meant.
        for u in std::iter::once(url).chain(cluster_nodes) {
            check_redis_url_encoding(u).map_err(Error::Config)?;
        }
        let unavailable = |e: redis::RedisError| Error::Unavailable(format!("{shown}: {e}"));
        let certs = match tls_ca_file {
            Some(f) => {
                let path = root.join(f);
                let pem = std::fs::read(&path)
                    .map_err(|e| Error::Config(format!("tls_ca_file {}: {e}", path.display())))?;
                Some(redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                })
            }
            None => None,
        };
        let conn = if *cluster {
            let nodes: Vec<&str> = std::iter::once(url.as_str())
                .chain(cluster_nodes.iter().map(String::as_str))
                .collect();
            let mut builder = redis::cluster::ClusterClientBuilder::new(nodes)
                .connection_timeout(timeout.max(Duration::from_secs(1)))
                .response_timeout(Duration::from_millis(*write_timeout_ms));
            if let Some(certs) = certs {
                builder = builder.certs(certs);
            }
            let client = builder.build().map_err(|e| {
                Error::Config(format!(
                    "invalid Redis Cluster configuration: {e}; {}",
                    quiver_registry::config::REDIS_URL_HINT
                ))
            })?;
            let conn = tokio::time::timeout(Duration::from_secs(5), client.get_async_connection())
                .await
                .map_err(|_| Error::Unavailable(format!("{shown}: no answer within 5 s")))?
                .map_err(unavailable)?;
            Conn::Cluster(conn)
        } else {
            let client = match certs {
                None => redis::Client::open(url.as_str()),
                Some(certs) => redis::Client::build_with_tls(url.as_str(), certs),
            }
            .map_err(|e| Error::Config(invalid_redis_url(url, e)))?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(timeout.max(Duration::from_secs(1))))
                .set_response_timeout(Some(Duration::from_millis(*write_timeout_ms)))
                .set_number_of_retries(2);
            let conn = tokio::time::timeout(
                Duration::from_secs(5),
                ConnectionManager::new_with_config(client, config),
            )
            .await
            .map_err(|_| Error::Unavailable(format!("{shown}: no answer within 5 s")))?
            .map_err(unavailable)?;
            Conn::Single(conn)
        };
        Ok(RedisStore {
            conn,
            cluster: *cluster,
            timeout,
            write_timeout: Duration::from_millis(*write_timeout_ms),
            shown,
            write_script: Script::new(WRITE_IF_NEWER),
            swap_script: Script::new(SWAP),
            read_live_script: Script::new(READ_LIVE),
            swap_live_script: Script::new(SWAP_LIVE),
            watermark_script: Script::new(ADVANCE_WATERMARK),
        })
    }

    /// Runs `f` within `limit`; a store that cannot answer now (down, slow, loading its data
    /// after a restart, failing over) is `Unavailable` — a 503 the client retries — and any
    /// other error a backend error.
    async fn bounded<T>(
        &self,
        limit: Duration,
        f: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        match tokio::time::timeout(limit, f).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e))
                if e.is_io_error()
                    || e.is_timeout()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || temporarily_unable(&e) =>
            {
                Err(Error::Unavailable(format!("{}: {e}", self.shown)))
            }
            Ok(Err(e)) => Err(Error::Backend(format!("{}: {e}", self.shown))),
            Err(_) => Err(Error::Unavailable(format!(
                "{}: no answer within {} ms",
                self.shown,
                limit.as_millis()
            ))),
        }
    }

    async fn write_group(&self, group: Vec<WriteEntry>) -> Result<u64> {
        // The script's arguments: whether any entry expires, the blobs, then (only if so) the
        // expiry of each.
        let mut invocation = self.write_script.prepare_invoke();
        let expiring = group.iter().any(|e| e.expire_at_ms.is_some());
        invocation.arg(u8::from(expiring));
        for e in &group {
            invocation.key(&e.key).arg(&e.blob);
        }
        if expiring {
            for e in &group {
                invocation.arg(e.expire_at_ms.unwrap_or(0));
            }
        }
        let mut conn = self.conn.clone();
        self.bounded(
            self.write_timeout,
            invocation.invoke_async::<u64>(&mut conn),
        )
        .await
    }

    /// `MGET keys` within `limit`.
    async fn mget(&self, keys: &[String], limit: Duration) -> Result<Vec<Option<Vec<u8>>>> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("MGET");
        cmd.arg(keys);
        self.bounded(limit, cmd.query_async::<Vec<Option<Vec<u8>>>>(&mut conn))
            .await
    }

    /// Runs `call` on `items` split into script calls (by slot on a Cluster), with each item's
    /// index; answers come back by index and are put in order.
    async fn by_slot<E, T, F, Fut>(&self, items: Vec<E>, call: F) -> Result<Vec<T>>
    where
        E: Keyed + Clone,
        F: Fn(Vec<(usize, E)>) -> Fut,
        Fut: Future<Output = Result<Vec<(usize, T)>>>,
    {
        let n = items.len();
        let indexed: Vec<(usize, E)> = items.into_iter().enumerate().collect();
        let answers: Vec<Vec<(usize, T)>> = stream::iter(calls(indexed, self.cluster))
            .map(call)
            .buffer_unordered(CALLS_IN_FLIGHT)
            .try_collect()
            .await?;
        let mut out: Vec<Option<T>> = (0..n).map(|_| None).collect();
        for (i, answer) in answers.into_iter().flatten() {
            out[i] = Some(answer);
        }
        out.into_iter()
            .map(|a| {
                a.ok_or_else(|| Error::Backend(format!("{}: a script answered short", self.shown)))
            })
            .collect()
    }

    /// Sends `cmd` to every server holding values (the one server, or each master of a
    /// Cluster) and returns each one's answer, by server. An error is a store that did not
    /// answer at all.
    async fn on_every_server(&self, cmd: &Cmd) -> Result<Vec<(String, Answer)>> {
        let limit = self.timeout.max(Duration::from_secs(1));
        let answer = match &self.conn {
            Conn::Single(c) => {
                let mut c = c.clone();
                self.bounded(limit, cmd.query_async::<Value>(&mut c)).await
            }
            Conn::Cluster(c) => {
                let mut c = c.clone();
                let masters = redis::cluster_routing::RoutingInfo::MultiNode((
                    redis::cluster_routing::MultipleNodeRoutingInfo::AllMasters,
                    None,
                ));
                self.bounded(limit, c.route_command(cmd.clone(), masters))
                    .await
            }
        };
        let server = self.shown.clone();
        match answer {
            // A command sent to several nodes answers with each node's reply, by address.
            Ok(Value::Map(replies)) if self.cluster => Ok(replies
                .into_iter()
                .map(|(node, reply)| {
                    let node =
                        redis::from_redis_value::<String>(node).unwrap_or_else(|_| server.clone());
                    let reply = match reply {
                        Value::ServerError(e) => Err(e.to_string()),
                        other => Ok(other),
                    };
                    (node, reply)
                })
                .collect()),
            Ok(reply) => Ok(vec![(server, Ok(reply))]),
            Err(Error::Backend(refused)) => Ok(vec![(server, Err(refused))]),
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl OnlineStore for RedisStore {
    async fn write(&self, entries: Vec<WriteEntry>) -> Result<u64> {
        let mut written = 0;
        for round in distinct_rounds(entries) {
            let counts: Vec<u64> = stream::iter(calls(round, self.cluster))
                .map(|group| self.write_group(group))
                .buffer_unordered(CALLS_IN_FLIGHT)
                .try_collect()
                .await?;
            written += counts.into_iter().sum::<u64>();
        }
        Ok(written)
    }

    async fn swap(&self, entries: Vec<SwapEntry>) -> Result<Vec<bool>> {
        self.by_slot(entries, |g| self.swap_group(g)).await
    }

    async fn read_live(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        self.by_slot(keys.to_vec(), |g| self.read_live_group(g))
            .await
    }

    async fn swap_live(&self, entries: Vec<LiveSwapEntry>) -> Result<Vec<bool>> {
        self.by_slot(entries, |g| self.swap_live_group(g)).await
    }

    async fn read_for_update(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        self.mget(keys, self.write_timeout).await
    }

    async fn read(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>> {
        self.mget(keys, read_bound(self.timeout, keys.len())).await
    }

    async fn watermark(&self, project: &str, view: &str, generation: u64) -> Result<Option<i64>> {
        let mut conn = self.conn.clone();
        let mut cmd = redis::cmd("HGET");
        cmd.arg(watermark_key(project, view)).arg(generation);
        self.bounded(
            self.timeout.max(Duration::from_secs(1)),
            cmd.query_async::<Option<i64>>(&mut conn),
        )
        .await
    }

    async fn advance_watermark(
        &self,
        project: &str,
        view: &str,
        generation: u64,
        end_ns: i64,
    ) -> Result<()> {
        let mut conn = self.conn.clone();
        let mut invocation = self.watermark_script.prepare_invoke();
        invocation
            .key(watermark_key(project, view))
            .arg(generation)
            .arg(end_ns);
        self.bounded(
            self.write_timeout,
            invocation.invoke_async::<i64>(&mut conn),
        )
        .await
        .map(|_| ())
    }

    async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        self.bounded(
            self.timeout,
            redis::cmd("PING").query_async::<String>(&mut conn),
        )
        .await
        .map(|_| ())
    }

    async fn health_report(&self) -> Result<StoreReport> {
        let mut servers: Vec<(String, Answers)> = Vec::new();
        for (i, args) in HEALTH_COMMANDS.into_iter().enumerate() {
            let mut cmd = Cmd::new();
            for arg in args {
                cmd.arg(*arg);
            }
            for (server, answer) in self.on_every_server(&cmd).await? {
                let at = match servers.iter().position(|(s, _)| *s == server) {
                    Some(at) => at,
                    None => {
                        servers.push((server, Vec::new()));
                        servers.len() - 1
                    }
                };
                let answers = &mut servers[at].1;
                answers.resize(i, Err("no answer".into()));
                answers.push(answer);
            }
        }
        servers.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(StoreReport {
            servers: servers
                .into_iter()
                .map(|(server, answers)| server_report(server, &answers))
                .collect(),
        })
    }

    fn location(&self) -> String {
        format!(
            "Redis {}{}",
            self.shown,
            if self.cluster { " (cluster)" } else { "" }
        )
    }
}

/// Replies that mean "not now" rather than "wrong": Redis loading its dataset after a restart
/// (`-LOADING`), a cluster reconfiguring, a primary down, a failover leaving this node a replica.
fn temporarily_unable(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind as S};
    matches!(
        e.kind(),
        ErrorKind::Server(
            S::BusyLoading | S::TryAgain | S::ClusterDown | S::MasterDown | S::ReadOnly
        )
    )
}

#[cfg(test)]
mod tests;
