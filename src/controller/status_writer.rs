//! The status writer: polls hand it the status they want written and go
//! on; it writes them with bounded concurrency, latest first-come.
//!
//! Latest wins: a status handed over while an older one of the same pool
//! still waits replaces it (only the newest is worth writing), and a pool
//! never has two writes in flight, so an older write can never land after
//! a newer one. Only the leader writes: leadership is checked right before
//! each write, so a status queued before leadership was lost is dropped.
//! A status that changed goes before one written only because its resync
//! period passed: when the API server cannot keep up with every pool's
//! resync, what changed still reaches it within moments, and the resyncs
//! wait.
//! At most `MAX_WAITING_STATUSES` statuses wait (`admit`). When as many
//! wait, a changed status takes the place of the oldest waiting resync; a
//! resync is shed (the pool's next one comes a period later: under a load
//! the API server cannot take, values are refreshed less often, changes
//! still go first); and a changed status with only changed ones waiting is
//! deferred: its poll does not hand it over (the next poll builds a newer
//! one), and the pool is woken to poll again as soon as half the room is
//! free. So the first statuses of thousands of pools at start, or a long
//! stall of the API server, hold a bounded number of statuses, not one per
//! pool, and no change is lost.
//! A failed write marks its pool (`StatusRetry`): once a backoff (1 s
//! doubling to 16 s) has passed, the pool's next poll writes its status
//! again even if nothing changed, so a write is never lost for good while
//! the pool is polled, and a failing status API is not hammered.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;
use tracing::warn;

use super::context::{Context, PoolEntry};
use super::engine::backoff;
use super::status::{self, StatusBody};
use crate::api::WorkerPool;

type Key = Arc<ObjectRef<WorkerPool>>;

/// Most statuses waiting for their write (each ~1.5 KiB of JSON).
pub const MAX_WAITING_STATUSES: usize = 1024;

struct Job {
    entry: Arc<PoolEntry>,
    status: StatusBody,
    changed: bool,
}

#[derive(Default)]
struct Queue {
    /// Pools whose waiting status changed, oldest first. A pool may be
    /// listed twice (here and in `resyncs`); the first to come takes it.
    changed: VecDeque<Key>,
    /// Pools whose waiting status is only a resync, oldest first.
    resyncs: VecDeque<Key>,
    /// The newest status of each waiting pool.
    latest: HashMap<Key, Job>,
    /// Pools whose write is in flight.
    in_flight: HashSet<Key>,
    /// Pools turned away while the queue was full, to wake when it is not.
    deferred: Vec<Arc<PoolEntry>>,
}

impl Queue {
    /// Drops the oldest waiting resync; false when none waits.
    fn drop_a_resync(&mut self) -> bool {
        while let Some(key) = self.resyncs.pop_front() {
            if self.latest.get(&key).is_some_and(|j| !j.changed) {
                self.latest.remove(&key);
                return true;
            }
        }
        false
    }

    fn queue(&mut self, key: Key, changed: bool) {
        if changed {
            self.changed.push_back(key);
        } else {
            self.resyncs.push_back(key);
        }
    }
}

#[derive(Default)]
pub struct StatusWriter {
    queue: Mutex<Queue>,
    ready: Notify,
}

impl StatusWriter {
    /// Queues `status` for the pool of `entry`, replacing one still
    /// waiting; `changed`: it differs from the last one written in what a
    /// person cares about (else it is a resync, written after every change).
    pub fn submit(&self, entry: &Arc<PoolEntry>, status: StatusBody, changed: bool) {
        let key = entry.key.clone();
        let job = Job {
            entry: entry.clone(),
            status,
            changed,
        };
        let mut q = self.lock();
        let was_changed = q.latest.get(&key).map(|j| j.changed);
        let changed = changed || was_changed == Some(true);
        q.latest.insert(key.clone(), Job { changed, ..job });
        if !q.in_flight.contains(&key) && was_changed != Some(changed) {
            q.queue(key, changed);
        }
        drop(q);
        self.ready.notify_one();
    }

    /// Whether a status of the pool of `entry` may be handed over now:
    /// one of it waits already (it would be replaced), there is room, or
    /// it `changed` and a waiting resync gives way. A changed status turned
    /// away defers the pool, woken when there is room.
    pub fn admit(&self, entry: &Arc<PoolEntry>, changed: bool) -> bool {
        let mut q = self.lock();
        let admitted = q.latest.len() < MAX_WAITING_STATUSES
            || q.latest.contains_key(&entry.key)
            || (changed && q.drop_a_resync());
        if admitted {
            entry.status_deferred.store(false, Ordering::Release);
        } else if changed && !entry.status_deferred.swap(true, Ordering::AcqRel) {
            q.deferred.push(entry.clone());
        }
        admitted
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The oldest waiting changed status, else the oldest resync, of a
    /// pool with no write in flight.
    fn take(&self) -> Option<Job> {
        let mut q = self.lock();
        while let Some(key) = q.changed.pop_front().or_else(|| q.resyncs.pop_front()) {
            if q.in_flight.contains(&key) {
                continue; // listed twice; `done` queues it again
            }
            if let Some(job) = q.latest.remove(&key) {
                q.in_flight.insert(key);
                return Some(job);
            }
        }
        None
    }

    /// The write of `key` ended; a status that arrived meanwhile is next.
    /// Returns the deferred pools to wake now that there is room.
    fn done(&self, key: &Key) -> Vec<Arc<PoolEntry>> {
        let mut q = self.lock();
        q.in_flight.remove(key);
        let room = (MAX_WAITING_STATUSES / 2).saturating_sub(q.latest.len());
        let wake = q.deferred.len().saturating_sub(room);
        let woken = q.deferred.split_off(wake);
        if let Some(changed) = q.latest.get(key).map(|j| j.changed) {
            q.queue(key.clone(), changed);
            drop(q);
            self.ready.notify_one();
        }
        woken
    }
}

/// Failed status writes of one pool in a row, and when to try again.
#[derive(Default)]
pub struct StatusRetry(Mutex<Option<(u32, Instant)>>);

impl StatusRetry {
    fn failed(&self) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let failures = g.map_or(1, |(n, _)| n.saturating_add(1));
        *g = Some((failures, Instant::now() + backoff(failures)));
    }

    fn succeeded(&self) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// None: the last write did not fail. Some(true): it failed and a
    /// retry is due; Some(false): it failed and the backoff runs.
    pub fn state(&self, now: Instant) -> Option<bool> {
        let g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        g.map(|(_, retry_at)| now >= retry_at)
    }
}

/// Writes queued statuses until the task is dropped, each holding one of
/// the API write permits while in flight.
pub async fn run(ctx: Arc<Context>) {
    loop {
        let Ok(permit) = ctx.writes.clone().acquire_owned().await else {
            return;
        };
        let job = loop {
            if let Some(job) = ctx.status_writer.take() {
                break job;
            }
            ctx.status_writer.ready.notified().await;
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            write(&ctx, &job).await;
            drop(permit);
            for entry in ctx.status_writer.done(&job.entry.key) {
                ctx.engine.schedule(&entry, Instant::now());
            }
        });
    }
}

async fn write(ctx: &Context, job: &Job) {
    if !ctx.is_leader() {
        return;
    }
    let key = &job.entry.key;
    let ns = key.namespace.as_deref().unwrap_or_default();
    match status::write(&ctx.client, ns, &key.name, &job.status).await {
        Ok(()) => {
            ctx.metrics.status_writes.inc();
            job.entry.status_retry.succeeded();
        }
        Err(e) => {
            job.entry.status_retry.failed();
            warn!(workerpool = %key.name, namespace = %ns, error = %e, "status write failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str) -> Arc<PoolEntry> {
        let spec = serde_json::from_value(serde_json::json!({
            "scaleTargetRef": {"name": "w"},
            "maxReplicas": 10,
            "triggers": [{"redis": {"url": "redis://r:6379", "list": "l"}, "targetPerReplica": 1}],
        }))
        .unwrap();
        let mut pool = WorkerPool::new(name, spec);
        pool.metadata.namespace = Some("ns".into());
        let key = super::super::targets::pool_key(&pool);
        Arc::new(PoolEntry::new(Arc::new(pool), key))
    }

    fn status(desired: i32) -> StatusBody {
        let status = crate::api::WorkerPoolStatus {
            desired_replicas: Some(desired),
            ..Default::default()
        };
        StatusBody::of(&status).unwrap()
    }

    fn desired(job: &Job) -> Option<i64> {
        let status: serde_json::Value = serde_json::from_str(job.status.json()).unwrap();
        status["desiredReplicas"].as_i64()
    }

    #[test]
    fn the_newest_status_of_a_pool_replaces_the_waiting_one() {
        let w = StatusWriter::default();
        let (a, b) = (entry("a"), entry("b"));
        w.submit(&a, status(1), true);
        w.submit(&b, status(5), true);
        w.submit(&a, status(2), true);
        let first = w.take().map(|j| (j.entry.key.name.clone(), desired(&j)));
        assert_eq!(first, Some(("a".into(), Some(2))));
        let second = w.take().map(|j| desired(&j));
        assert_eq!(second, Some(Some(5)));
        assert!(w.take().is_none());
    }

    #[test]
    fn a_pool_never_has_two_writes_in_flight() {
        let w = StatusWriter::default();
        let a = entry("a");
        w.submit(&a, status(1), true);
        let in_flight = w.take();
        assert!(in_flight.is_some());
        w.submit(&a, status(2), false);
        assert!(w.take().is_none(), "the second waits for the first");
        w.done(&a.key);
        let next = w.take().map(|j| desired(&j));
        assert_eq!(next, Some(Some(2)));
    }

    /// A writer with `MAX_WAITING_STATUSES` waiting, the i-th changed
    /// when `changed(i)`.
    fn full_writer(changed: impl Fn(usize) -> bool) -> (StatusWriter, Vec<Arc<PoolEntry>>) {
        let w = StatusWriter::default();
        let waiting: Vec<_> = (0..MAX_WAITING_STATUSES)
            .map(|i| entry(&format!("p{i}")))
            .collect();
        for (i, e) in waiting.iter().enumerate() {
            assert!(w.admit(e, changed(i)));
            w.submit(e, status(1), changed(i));
        }
        (w, waiting)
    }

    #[test]
    fn a_full_writer_defers_new_pools_and_wakes_them_when_half_is_free() {
        let (w, waiting) = full_writer(|_| true);
        let late = entry("late");
        assert!(!w.admit(&late, true), "no room for one more pool");
        assert!(!w.admit(&late, true), "deferred once");
        assert!(!w.admit(&entry("resync"), false), "a resync is shed");
        let replaces = w.admit(&waiting[0], true);
        assert!(replaces, "a waiting pool's newer status replaces its own");
        let mut woken = Vec::new();
        for _ in 0..=MAX_WAITING_STATUSES / 2 {
            let job = w.take().unwrap();
            woken.extend(w.done(&job.entry.key));
            if !woken.is_empty() {
                break;
            }
        }
        let names: Vec<_> = woken.iter().map(|e| e.key.name.clone()).collect();
        assert_eq!(names, ["late"], "woken once half the room is free");
        assert!(w.admit(&late, true));
        assert!(!late.status_deferred.load(Ordering::Acquire));
    }

    #[test]
    fn a_changed_status_takes_the_place_of_a_waiting_resync_when_full() {
        let (w, _) = full_writer(|i| i != 3);
        let changed = entry("changed");
        assert!(w.admit(&changed, true), "p3's resync gives way");
        w.submit(&changed, status(2), true);
        assert!(
            !w.admit(&entry("another"), true),
            "no resync is left to give way"
        );
        let names: Vec<String> = std::iter::from_fn(|| w.take())
            .map(|j| j.entry.key.name.clone())
            .collect();
        assert_eq!(names.len(), MAX_WAITING_STATUSES);
        assert!(!names.contains(&"p3".to_string()) && names.contains(&"changed".to_string()));
    }

    #[test]
    fn a_changed_status_goes_before_resyncs_queued_earlier() {
        let w = StatusWriter::default();
        let (a, b, c) = (entry("a"), entry("b"), entry("c"));
        w.submit(&a, status(1), false);
        w.submit(&b, status(1), false);
        w.submit(&c, status(3), true);
        w.submit(&b, status(4), true);
        let order: Vec<String> = std::iter::from_fn(|| w.take())
            .map(|j| j.entry.key.name.clone())
            .collect();
        assert_eq!(order, ["c", "b", "a"]);
    }
}
