//! The status writer: polls hand it the status they want written and go
//! on; it writes them with bounded concurrency, latest first-come.
//!
//! Latest wins: a status handed over while an older one of the same pool
//! still waits replaces it (only the newest is worth writing), and a pool
//! never has two writes in flight, so an older write can never land after
//! a newer one. Only the leader writes: leadership is checked right before
//! each write, so a status queued before leadership was lost is dropped.
//! A failed write marks its pool (`StatusRetry`): once a backoff (1 s
//! doubling to 16 s) has passed, the pool's next poll writes its status
//! again even if nothing changed, so a write is never lost for good while
//! the pool is polled, and a failing status API is not hammered.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use kube::api::Api;
use kube::runtime::reflector::ObjectRef;
use tokio::sync::Notify;
use tracing::warn;

use super::context::{Context, PoolEntry};
use super::engine::backoff;
use super::status;
use crate::api::{WorkerPool, WorkerPoolStatus};

type Key = ObjectRef<WorkerPool>;

struct Job {
    entry: Arc<PoolEntry>,
    status: WorkerPoolStatus,
}

#[derive(Default)]
struct Queue {
    /// Pools with a status waiting, oldest first (each at most once).
    order: VecDeque<Key>,
    /// The newest status of each waiting pool.
    latest: HashMap<Key, Job>,
    /// Pools whose write is in flight.
    in_flight: HashSet<Key>,
}

#[derive(Default)]
pub struct StatusWriter {
    queue: Mutex<Queue>,
    ready: Notify,
}

impl StatusWriter {
    /// Queues `status` for the pool of `entry`, replacing one still waiting.
    pub fn submit(&self, entry: &Arc<PoolEntry>, status: WorkerPoolStatus) {
        let key = entry.key.clone();
        let job = Job {
            entry: entry.clone(),
            status,
        };
        let mut q = self.lock();
        if q.latest.insert(key.clone(), job).is_none() && !q.in_flight.contains(&key) {
            q.order.push_back(key);
        }
        drop(q);
        self.ready.notify_one();
    }

    /// Statuses waiting (not yet in flight).
    pub fn waiting(&self) -> usize {
        self.lock().latest.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The oldest waiting status whose pool has no write in flight.
    fn take(&self) -> Option<Job> {
        let mut q = self.lock();
        while let Some(key) = q.order.pop_front() {
            if let Some(job) = q.latest.remove(&key) {
                q.in_flight.insert(key);
                return Some(job);
            }
        }
        None
    }

    /// The write of `key` ended; a status that arrived meanwhile is next.
    fn done(&self, key: &Key) {
        let mut q = self.lock();
        q.in_flight.remove(key);
        if q.latest.contains_key(key) {
            q.order.push_back(key.clone());
            drop(q);
            self.ready.notify_one();
        }
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
            ctx.status_writer.done(&job.entry.key);
        });
    }
}

async fn write(ctx: &Context, job: &Job) {
    if !ctx.is_leader() {
        return;
    }
    let key = &job.entry.key;
    let ns = key.namespace.as_deref().unwrap_or_default();
    let api: Api<WorkerPool> = Api::namespaced(ctx.client.clone(), ns);
    match status::write(&api, &key.name, &job.status).await {
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
        Arc::new(PoolEntry::new(Arc::new(pool)))
    }

    fn status(desired: i32) -> WorkerPoolStatus {
        WorkerPoolStatus {
            desired_replicas: Some(desired),
            ..Default::default()
        }
    }

    #[test]
    fn the_newest_status_of_a_pool_replaces_the_waiting_one() {
        let w = StatusWriter::default();
        let (a, b) = (entry("a"), entry("b"));
        w.submit(&a, status(1));
        w.submit(&b, status(5));
        w.submit(&a, status(2));
        let first = w
            .take()
            .map(|j| (j.entry.key.name.clone(), j.status.desired_replicas));
        assert_eq!(first, Some(("a".into(), Some(2))));
        let second = w.take().map(|j| j.status.desired_replicas);
        assert_eq!(second, Some(Some(5)));
        assert!(w.take().is_none());
    }

    #[test]
    fn a_pool_never_has_two_writes_in_flight() {
        let w = StatusWriter::default();
        let a = entry("a");
        w.submit(&a, status(1));
        let in_flight = w.take();
        assert!(in_flight.is_some());
        w.submit(&a, status(2));
        assert!(w.take().is_none(), "the second waits for the first");
        w.done(&a.key);
        let next = w.take().map(|j| j.status.desired_replicas);
        assert_eq!(next, Some(Some(2)));
    }
}
