//! How the driver spends its time (`GET /admin/driver`).

use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (ms) of the [`DriverStats::batch_ms`] buckets; the last bucket is the rest.
pub const BATCH_MS_BOUNDS: [u64; 8] = [1, 2, 5, 10, 20, 50, 100, 200];

/// Where the driver's time goes: every batch runs the engine, then commits. A request waits
/// for the batch it is in and, at worst, for the one before it.
#[derive(Default)]
pub struct DriverStats {
    pub batches: AtomicU64,
    pub messages: AtomicU64,
    pub engine_us: AtomicU64,
    pub max_engine_us: AtomicU64,
    pub commit_us: AtomicU64,
    pub max_commit_us: AtomicU64,
    /// Batches by how long they took (engine and commit), bucketed by [`BATCH_MS_BOUNDS`].
    pub batch_ms: [AtomicU64; BATCH_MS_BOUNDS.len() + 1],
}

impl DriverStats {
    pub fn record(&self, messages: usize, engine: Duration, commit: Duration) {
        let (e, c) = (engine.as_micros() as u64, commit.as_micros() as u64);
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.messages.fetch_add(messages as u64, Ordering::Relaxed);
        self.engine_us.fetch_add(e, Ordering::Relaxed);
        self.max_engine_us.fetch_max(e, Ordering::Relaxed);
        self.commit_us.fetch_add(c, Ordering::Relaxed);
        self.max_commit_us.fetch_max(c, Ordering::Relaxed);
        let ms = (e + c) / 1000;
        let bucket = BATCH_MS_BOUNDS
            .iter()
            .position(|&b| ms < b)
            .unwrap_or(BATCH_MS_BOUNDS.len());
        self.batch_ms[bucket].fetch_add(1, Ordering::Relaxed);
    }

    /// Start measuring afresh.
    pub fn reset(&self) {
        let all = [
            &self.batches,
            &self.messages,
            &self.engine_us,
            &self.max_engine_us,
            &self.commit_us,
            &self.max_commit_us,
        ];
        for a in all.into_iter().chain(&self.batch_ms) {
            a.store(0, Ordering::Relaxed);
        }
    }

    /// As `GET /admin/driver` shows it.
    pub fn to_json(&self) -> Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let ms = |us: u64| us as f64 / 1000.0;
        let buckets: serde_json::Map<String, Value> = self
            .batch_ms
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let name = match BATCH_MS_BOUNDS.get(i) {
                    Some(b) => format!("under{b}ms"),
                    None => format!("{}msOrMore", BATCH_MS_BOUNDS[BATCH_MS_BOUNDS.len() - 1]),
                };
                (name, get(n).into())
            })
            .collect();
        serde_json::json!({
            "batches": get(&self.batches),
            "messages": get(&self.messages),
            "engineMs": ms(get(&self.engine_us)),
            "maxEngineMs": ms(get(&self.max_engine_us)),
            "commitMs": ms(get(&self.commit_us)),
            "maxCommitMs": ms(get(&self.max_commit_us)),
            "batchesByDuration": buckets,
        })
    }
}

/// ringside's allocator, for every binary that links the node (the server, its tests and the
/// benches alike). glibc's malloc let resident memory creep under a steady load while the
/// bytes in use stayed flat: freed blocks between live ones stayed resident, and a fixed mmap
/// threshold, trimming the heap and fewer arenas each only slowed it (tests/stress/soak.py,
/// docs/reliability.md). jemalloc keeps blocks of one size together and hands pages nobody
/// uses back to the system within seconds (its dirty-page decay).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// The allocator's own count (`GET /admin/driver` `heap`): bytes handed out to ringside
/// (`inUseBytes`), bytes in pages the allocator has resident (`heldBytes`), and the difference
/// (`freeBytes`). Resident memory that rises while `inUseBytes` stays flat is the allocator's,
/// not ringside's state; the soak (tests/stress/soak.py) reports both.
pub fn heap() -> Value {
    use tikv_jemalloc_ctl::{epoch, stats};
    // The counters are a snapshot taken at each epoch.
    let _ = epoch::advance();
    let (Ok(in_use), Ok(held)) = (stats::allocated::read(), stats::resident::read()) else {
        return Value::Null;
    };
    serde_json::json!({
        "inUseBytes": in_use,
        "heldBytes": held,
        "freeBytes": held.saturating_sub(in_use),
    })
}
