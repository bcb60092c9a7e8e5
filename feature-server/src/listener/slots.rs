//! How many connections may be open: one count for both ports, bounded by `max_connections` and
//! by the process's open-file limit.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The connections a server has open, both ports together, against `max_connections`.
#[derive(Debug)]
pub struct Slots {
    open: AtomicUsize,
    max: usize,
    created: std::time::Instant,
    /// When a refusal was last logged, in ms since `created` (+1; 0 = never).
    warned_at: AtomicU64,
}

/// How often a refused connection is logged at most.
const REFUSAL_LOG_EVERY: Duration = Duration::from_secs(10);

impl Slots {
    pub fn new(max_connections: usize) -> Arc<Slots> {
        Arc::new(Slots {
            open: AtomicUsize::new(0),
            max: max_connections,
            created: std::time::Instant::now(),
            warned_at: AtomicU64::new(0),
        })
    }

    pub(super) fn take(self: &Arc<Self>) -> Option<Slot> {
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Slot(self.clone()))
    }

    pub(super) fn refused(&self, port: &'static str) {
        metrics::counter!("quiver_connections_refused_total", "port" => port).increment(1);
        let now = self.created.elapsed().as_millis() as u64 + 1;
        let last = self.warned_at.load(Ordering::Relaxed);
        if (last == 0 || now - last >= REFUSAL_LOG_EVERY.as_millis() as u64)
            && self
                .warned_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                port,
                max_connections = self.max,
                "refusing connections: {} open, the limit (serving.max_connections); \
                 counted in quiver_connections_refused_total",
                self.max
            );
        }
    }
}

/// One open connection's place in [`Slots`], given back when dropped.
pub(super) struct Slot(Arc<Slots>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// `max_connections`, lowered when the process's open-file limit (`ulimit -n`) could not hold
/// that many connections besides the rest of the process (stores, registry, training files):
/// past it, `accept` itself would fail and clients would stall instead of being refused. Read
/// from `/proc/self/limits`; unchanged where that cannot be read.
pub fn fit_open_file_limit(max_connections: usize) -> usize {
    let Some(files) = open_file_limit() else {
        return max_connections;
    };
    let fit = connections_within(files);
    if fit < max_connections {
        tracing::warn!(
            "serving.max_connections is {max_connections}, but the open-file limit (ulimit -n) \
             is {files}: at most {fit} connections will be open at once; raise the limit \
             (e.g. LimitNOFILE in systemd) to allow more"
        );
        return fit;
    }
    max_connections
}

/// Connections that fit in `files` descriptors: an eighth is kept for the rest of the process
/// (at least 32, at most 256).
fn connections_within(files: usize) -> usize {
    files.saturating_sub((files / 8).clamp(32, 256)).max(1)
}

fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::connections_within;

    #[test]
    fn connections_leave_room_for_the_rest_of_the_process() {
        assert_eq!(connections_within(120), 88);
        assert_eq!(connections_within(1024), 896);
        assert_eq!(connections_within(1 << 20), (1 << 20) - 256);
        assert_eq!(connections_within(10), 1);
    }
}
