//! Compare-and-sets of aggregation values: whole values staged under a key of their slot and
//! renamed into place, and pushes' in-place reads and rewrites of a value's live part
//! (docs/online-format.md, "Aggregation tiles"). Values never pass through Lua.

use super::RedisStore;
use crate::error::Result;
use crate::store::{LiveSwapEntry, SwapEntry};

/// How long a value staged for a compare-and-set lives if its writer never completes it.
const STAGED_MS: u64 = 60_000;

/// A number no other write (of this process or another) stages under: a per-process random
/// hash of a counter.
fn staging_nonce() -> u64 {
    use std::hash::BuildHasher;
    use std::sync::LazyLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static STATE: LazyLock<std::collections::hash_map::RandomState> =
        LazyLock::new(std::collections::hash_map::RandomState::new);
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    STATE.hash_one(COUNTER.fetch_add(1, Ordering::Relaxed))
}

impl RedisStore {
    /// One slot's compare-and-sets, in one round trip: each new value is staged under a key of
    /// its own in the same slot (`SET … PX`), then one script compares each key's token and
    /// renames the staged value into place or drops it.
    pub(super) async fn swap_group(
        &self,
        group: Vec<(usize, SwapEntry)>,
    ) -> Result<Vec<(usize, bool)>> {
        let nonce = staging_nonce();
        let staged: Vec<String> = group
            .iter()
            .enumerate()
            .map(|(i, (_, e))| format!("{}:swap:{nonce:016x}{i:04x}", e.key))
            .collect();
        let mut invocation = self.swap_script.prepare_invoke();
        let mut pipe = redis::pipe();
        for ((_, e), s) in group.iter().zip(&staged) {
            pipe.cmd("SET")
                .arg(s)
                .arg(&e.blob)
                .arg("PX")
                .arg(STAGED_MS)
                .ignore();
            invocation
                .key(&e.key)
                .key(s)
                .arg(e.expected.as_deref().unwrap_or_default())
                .arg(e.expire_at_ms.unwrap_or(0));
        }
        pipe.invoke_script(&invocation);
        let mut conn = self.conn.clone();
        let run = async {
            match pipe.query_async::<(Vec<i64>,)>(&mut conn).await {
                // The server restarted or flushed its scripts: load, then once more.
                Err(e)
                    if e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoScript) =>
                {
                    invocation.load_async(&mut conn).await?;
                    pipe.query_async::<(Vec<i64>,)>(&mut conn).await
                }
                other => other,
            }
        };
        let (stored,) = self.bounded(self.write_timeout, run).await?;
        Ok(group
            .into_iter()
            .map(|(i, _)| i)
            .zip(stored.into_iter().map(|s| s == 1))
            .collect())
    }

    pub(super) async fn read_live_group(
        &self,
        group: Vec<(usize, String)>,
    ) -> Result<Vec<(usize, Option<Vec<u8>>)>> {
        let mut invocation = self.read_live_script.prepare_invoke();
        for (_, key) in &group {
            invocation.key(key);
        }
        let mut conn = self.conn.clone();
        let values: Vec<Option<Vec<u8>>> = self
            .bounded(
                // A write's read: bounded like the write it is part of.
                self.write_timeout,
                invocation.invoke_async(&mut conn),
            )
            .await?;
        Ok(group.into_iter().map(|(i, _)| i).zip(values).collect())
    }

    pub(super) async fn swap_live_group(
        &self,
        group: Vec<(usize, LiveSwapEntry)>,
    ) -> Result<Vec<(usize, bool)>> {
        let mut invocation = self.swap_live_script.prepare_invoke();
        for (_, e) in &group {
            invocation
                .key(&e.key)
                .arg(&e.expected)
                .arg(&e.header)
                .arg(e.live_at)
                .arg(&e.live)
                .arg(e.expire_at_ms.unwrap_or(0));
        }
        let mut conn = self.conn.clone();
        let stored: Vec<i64> = self
            .bounded(self.write_timeout, invocation.invoke_async(&mut conn))
            .await?;
        Ok(group
            .into_iter()
            .map(|(i, _)| i)
            .zip(stored.into_iter().map(|s| s == 1))
            .collect())
    }
}
