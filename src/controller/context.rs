//! What every poll shares: the client, caches, metric sources, the
//! event recorder, and each pool's in-memory state. Passed as an `Arc`,
//! never a global (as controller-rs does).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::runtime::reflector::ObjectRef;
use kube::Client;

use super::hpas::HpaIndex;
use super::prepare::Prepared;
use super::secrets::SecretCache;
use super::target_cache::TargetCache;
use super::targets::TargetIndex;
use super::watched_pool::WatchedPool;
use crate::api::WorkerPool;
use crate::decision::History;
use crate::runtime::metrics::Metrics;
use crate::sources::Sources;

/// Tunables of the controller.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Longest time between two status writes of an unchanged pool.
    pub status_resync: Duration,
    /// Longest time a Secret read for a pool is trusted before it is read
    /// again (an authentication failure re-reads it at once).
    pub secret_refresh: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            status_resync: Duration::from_secs(30),
            secret_refresh: Duration::from_secs(60),
        }
    }
}

/// What the operator remembers about one pool between polls.
#[derive(Default)]
pub struct PoolState {
    pub prepared: Option<Prepared>,
    /// The decision's memory (loaded from status.history on first sight);
    /// boxed, as a status's is, to keep the entry held for every pool small.
    pub history: Option<Box<History>>,
    /// What the next status needs from the last one (the leader's only).
    pub last_status: Option<super::status_memory::StatusMemory>,
    /// When the next poll is due.
    pub next_due: Option<Instant>,
    /// Target replicas after the last poll (what a scale set, or what was seen).
    pub expected_replicas: Option<i32>,
    /// The target's resourceVersion in the cache when this pool last scaled
    /// it. While the cache still shows exactly that version, the watch has
    /// not delivered our own PATCH yet: the replicas it shows are stale and
    /// `expected_replicas` is the truth (else the next poll would send the
    /// same PATCH again).
    pub patched_over: Option<String>,
    pub last_status_signature: Option<u64>,
    pub last_status_write: Option<Instant>,
    /// Reason of the last Warning Event, to send one per episode, not per poll.
    pub last_warning: Option<String>,
    /// Trigger names currently failing (one Event per failure episode).
    pub failing: HashSet<String>,
    /// The busy signal failed and its Event was sent (one per episode).
    pub busy_failing: bool,
    /// An authentication failure asks for the Secrets to be read again.
    pub refresh_secrets: bool,
    /// Consecutive failed polls, for backoff.
    pub errors: u32,
    /// The pool's metric handles, kept between polls.
    pub gauges: Option<super::pool_metrics::PoolGauges>,
}

/// One pool as the poll engine knows it: the latest object the watch
/// delivered, and what the operator remembers between polls.
pub struct PoolEntry {
    /// Shared with the map of pools, which is keyed by it.
    pub key: Arc<ObjectRef<WorkerPool>>,
    pool: Mutex<Arc<WorkerPool>>,
    pub state: tokio::sync::Mutex<PoolState>,
    /// The slot this pool is queued for in the engine's wheel (0: none).
    pub(super) queued: AtomicU64,
    /// The number of the last list of pools that delivered this one (see
    /// [`Context::forget_unlisted`]).
    listed: AtomicU64,
    /// The pool was deleted: nothing schedules it any more.
    pub(super) gone: AtomicBool,
    /// Failed status writes: the next poll writes again, after a backoff.
    pub(super) status_retry: super::status_writer::StatusRetry,
    /// The status writer's queue was full: this pool's status waits for
    /// its next poll, which comes as soon as there is room.
    pub(super) status_deferred: AtomicBool,
    /// The leader keeps what it needs of this pool's status in its state
    /// (`StatusMemory`): the status in the watch's objects is dropped.
    drops_status: AtomicBool,
    /// How much longer than the base this pool's status resync period is,
    /// in thousandths of a fifth of it (see [`PoolEntry::resync_period`]).
    resync_spread: u16,
}

/// A pool's [`PoolEntry::resync_spread`], picked by its name: the same on
/// every poll and in every replica of the operator.
fn resync_spread(key: &ObjectRef<WorkerPool>) -> u16 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    (h.finish() % 1000) as u16
}

impl PoolEntry {
    /// The entry of `pool`, whose key (`targets::pool_key`) the caller
    /// has made already to look it up.
    pub(super) fn new(pool: Arc<WorkerPool>, key: ObjectRef<WorkerPool>) -> Self {
        PoolEntry {
            resync_spread: resync_spread(&key),
            key: Arc::new(key),
            pool: Mutex::new(pool),
            state: tokio::sync::Mutex::default(),
            queued: AtomicU64::new(0),
            listed: AtomicU64::new(0),
            gone: AtomicBool::new(false),
            status_retry: Default::default(),
            drops_status: AtomicBool::new(false),
            status_deferred: AtomicBool::new(false),
        }
    }

    /// The resync period of this pool's status: `base` plus up to 20 %
    /// picked by the pool's name, so pools created together do not all
    /// rewrite their status in the same second forever after. The name is
    /// hashed once, when the entry is made: a poll only multiplies.
    pub(super) fn resync_period(&self, base: Duration) -> Duration {
        base + base.mul_f64(f64::from(self.resync_spread) / 5000.0)
    }

    /// List number `list` delivered this pool.
    pub(super) fn mark_listed(&self, list: u64) {
        self.listed.store(list, Ordering::Relaxed);
    }

    /// The pool as last seen by the watch.
    pub fn pool(&self) -> Arc<WorkerPool> {
        self.held().clone()
    }

    fn held(&self) -> std::sync::MutexGuard<'_, Arc<WorkerPool>> {
        self.pool.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The leader's poll took what it needs from the status: drop the one
    /// held, and every one the watch delivers from now on.
    pub(super) fn drop_watched_status(&self) {
        self.drops_status.store(true, Ordering::Release);
        let mut held = self.held();
        if held.status.is_some() {
            *held = Arc::new(without_status(&held));
        }
    }

    /// This instance no longer leads: hold `status` — the last it wrote —
    /// until the watch delivers a newer one, which is held too, so that
    /// leading again starts from the newest status.
    pub(super) fn keep_watched_status(&self, status: crate::api::WorkerPoolStatus) {
        self.drops_status.store(false, Ordering::Release);
        let mut held = self.held();
        if held.status.is_none() {
            let mut pool = without_status(&held);
            pool.status = Some(status);
            *held = Arc::new(pool);
        }
    }
}

fn without_status(pool: &WorkerPool) -> WorkerPool {
    WorkerPool {
        metadata: pool.metadata.clone(),
        spec: pool.spec.clone(),
        status: None,
    }
}

/// Shared by every poll.
pub struct Context {
    pub client: Client,
    pub events: super::events::EventSender,
    pub metrics: Arc<Metrics>,
    pub sources: Sources,
    pub deployments: TargetCache,
    pub statefulsets: TargetCache,
    pub hpas: HpaIndex,
    pub secrets: SecretCache,
    pub targets: TargetIndex,
    pub settings: Settings,
    /// Bounds the API writes in flight (status, scale, Events, pod
    /// annotations), and so the connections to the API server.
    pub writes: Arc<tokio::sync::Semaphore>,
    pub engine: super::engine::PollEngine,
    pub status_writer: super::status_writer::StatusWriter,
    leader: Arc<AtomicBool>,
    stopping: AtomicBool,
    pools: Mutex<super::FastMap<Arc<ObjectRef<WorkerPool>>, Arc<PoolEntry>>>,
}

impl Context {
    #[allow(clippy::too_many_arguments)] // wiring only; every part is distinct
    pub fn new(
        client: Client,
        events: super::events::EventSender,
        metrics: Arc<Metrics>,
        sources: Sources,
        deployments: TargetCache,
        statefulsets: TargetCache,
        leader: Arc<AtomicBool>,
        settings: Settings,
    ) -> Self {
        Context {
            writes: events.permits(),
            client: client.clone(),
            events,
            metrics,
            sources,
            deployments,
            statefulsets,
            hpas: HpaIndex::default(),
            secrets: SecretCache::new(client.clone(), settings.secret_refresh),
            targets: TargetIndex::default(),
            settings,
            engine: Default::default(),
            status_writer: Default::default(),
            leader,
            stopping: AtomicBool::new(false),
            pools: Mutex::default(),
        }
    }

    /// Only the leader scales and writes status.
    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::Acquire) && !self.stopping.load(Ordering::Acquire)
    }

    /// After SIGTERM: no more writes.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// The entry of `pool`, made on first sight; the watch's latest object
    /// replaces the one it held. True when the pool is new or its spec,
    /// annotations or identity changed (what a poll must see at once).
    ///
    /// The status is parsed only if the entry keeps it (see `watched_pool`);
    /// only the pool watch calls this, so an entry cannot appear meanwhile.
    pub fn observe(&self, watched: WatchedPool) -> (Arc<PoolEntry>, bool) {
        let key = super::targets::pool_key(watched.pool());
        let Some(entry) = self.entry(&key) else {
            let entry = Arc::new(PoolEntry::new(Arc::new(watched.with_status()), key));
            let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
            pools.insert(entry.key.clone(), entry.clone());
            return (entry, true);
        };
        let mut pool = if entry.drops_status.load(Ordering::Acquire) {
            watched.without_status()
        } else {
            watched.with_status()
        };
        let mut held = entry.held();
        // The leader may have started dropping statuses since the check.
        if entry.drops_status.load(Ordering::Acquire) {
            pool.status = None;
        }
        let changed = held.metadata.generation != pool.metadata.generation
            || held.metadata.uid != pool.metadata.uid
            || held.metadata.annotations != pool.metadata.annotations;
        *held = Arc::new(pool);
        drop(held);
        (entry, changed)
    }

    /// The entry of a known pool.
    pub fn entry(&self, key: &ObjectRef<WorkerPool>) -> Option<Arc<PoolEntry>> {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.get(key).cloned()
    }

    /// Forgets a deleted pool at once (its queued poll is dropped).
    pub fn forget(&self, key: &ObjectRef<WorkerPool>) {
        let removed = self
            .pools
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove_entry(key);
        if let Some((key, entry)) = removed {
            self.drop_entry(key, entry);
        }
    }

    /// WorkerPools this instance polls: none on a standby, so a sum over
    /// replicas counts each pool once.
    pub fn polled_pools(&self) -> usize {
        if !self.is_leader() {
            return 0;
        }
        self.pools.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Forgets every pool that list number `list` did not deliver (pools
    /// deleted while the watch was down). Pools are marked as a list
    /// delivers them rather than collected in a set of names, which would
    /// hold thousands of them at once while a list comes in.
    pub fn forget_unlisted(&self, list: u64) {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        let mut gone = Vec::new();
        pools.retain(|k, entry| {
            let kept = entry.listed.load(Ordering::Relaxed) == list;
            if !kept {
                gone.push((k.clone(), entry.clone()));
            }
            kept
        });
        drop(pools);
        for (key, entry) in gone {
            self.drop_entry(key, entry);
        }
    }

    /// Stops a forgotten pool's polls and removes its metric series.
    fn drop_entry(&self, key: Arc<ObjectRef<WorkerPool>>, entry: Arc<PoolEntry>) {
        entry.gone.store(true, Ordering::Release);
        // The pool's trigger names are in its state, which a poll still
        // running for it may hold: wait for it off this thread.
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let policy = (entry.state.lock().await.prepared.as_ref()).map(|p| p.policy.clone());
            let (triggers, schedules): (Vec<String>, Vec<String>) = match policy {
                Some(p) => (
                    p.triggers.iter().map(|t| t.name.clone()).collect(),
                    p.schedules.iter().map(|w| w.name.clone()).collect(),
                ),
                None => (Vec::new(), Vec::new()),
            };
            let ns = key.namespace.as_deref().unwrap_or_default();
            metrics.forget_pool(ns, &key.name, &triggers);
            metrics.forget_schedules(ns, &key.name, &schedules);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::WorkerPoolStatus;

    fn pool_with_status(replicas: i32) -> WorkerPool {
        let spec = serde_json::from_value(serde_json::json!({
            "scaleTargetRef": {"name": "w"},
            "maxReplicas": 10,
            "triggers": [{"redis": {"url": "redis://r:6379", "list": "l"}, "targetPerReplica": 1}],
        }))
        .unwrap();
        let mut pool = WorkerPool::new("p", spec);
        pool.metadata.namespace = Some("ns".into());
        pool.status = Some(WorkerPoolStatus {
            current_replicas: Some(replicas),
            ..Default::default()
        });
        pool
    }

    fn held_replicas(entry: &PoolEntry) -> Option<i32> {
        entry
            .pool()
            .status
            .as_ref()
            .and_then(|s| s.current_replicas)
    }

    #[test]
    fn resync_periods_are_spread_over_a_fifth_by_name_and_stable() {
        let base = Duration::from_secs(30);
        let periods: Vec<Duration> = (0..200)
            .map(|i| {
                let mut pool = pool_with_status(1);
                pool.metadata.name = Some(format!("p{i}"));
                let key = super::super::targets::pool_key(&pool);
                PoolEntry::new(Arc::new(pool), key).resync_period(base)
            })
            .collect();
        assert!(periods.iter().all(|p| *p >= base && *p < base.mul_f64(1.2)));
        let spread = periods
            .iter()
            .max()
            .unwrap()
            .saturating_sub(*periods.iter().min().unwrap());
        assert!(spread > Duration::from_secs(3), "spread {spread:?}");
        let pool = pool_with_status(1);
        let again = |p: &WorkerPool| {
            PoolEntry::new(Arc::new(p.clone()), super::super::targets::pool_key(p))
                .resync_period(base)
        };
        assert_eq!(again(&pool), again(&pool));
    }

    #[test]
    fn a_leader_drops_the_watched_status_and_a_standby_holds_its_last_one() {
        let pool = pool_with_status(3);
        let entry = PoolEntry::new(
            Arc::new(pool.clone()),
            super::super::targets::pool_key(&pool),
        );
        entry.drop_watched_status();
        assert!(entry.pool().status.is_none());
        assert!(entry.drops_status.load(Ordering::Acquire));
        let last = WorkerPoolStatus {
            current_replicas: Some(4),
            ..Default::default()
        };
        entry.keep_watched_status(last);
        assert_eq!(held_replicas(&entry), Some(4));
        assert!(!entry.drops_status.load(Ordering::Acquire));
        // A newer status the watch delivered meanwhile is not replaced.
        *entry.held() = Arc::new(pool_with_status(5));
        entry.keep_watched_status(WorkerPoolStatus::default());
        assert_eq!(held_replicas(&entry), Some(5));
    }
}
