//! The poll engine: the one clock of every pool.
//!
//! Polls fall on shared 100 ms slots. The engine keeps a wheel of slots,
//! each holding the pools due in it; every slot it takes the due pools and
//! starts their polls together on one task, holding every Redis endpoint's
//! batch while it does (`Sources::hold_batches`), so the reads of one slot
//! reach each endpoint as exactly one pipeline. Each poll reads, decides,
//! scales when it must, hands its status to the status writer and returns
//! when it is due next; the engine queues it for that slot.
//!
//! The kube-rs Controller only delivers what changed (a spec, a target's
//! replicas) by queueing the pool for the next slot; it never waits for a
//! poll, and a poll never waits for the Controller's scheduler.
//! A slot's polls run on a task of their own, so a slow API write delays
//! only its own pool, never the clock.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::Poll as TaskPoll;
use std::time::{Duration, Instant};

use futures::stream::FuturesUnordered;
use futures::StreamExt;

use super::context::{Context, PoolEntry};
use super::reconcile::poll_pool;

/// Polls are due on shared slots of this length, so the reads of pools
/// polled in the same slot leave as one pipeline per endpoint: round trips
/// per second stay at ten per endpoint instead of one per pool. Costs at
/// most one slot of reaction time.
pub const POLL_SLOT: Duration = Duration::from_millis(100);

/// Slot numbers count from the first use; 0 means "not queued".
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    // One slot before the first use, so every real slot number is > 0.
    *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(POLL_SLOT).unwrap_or(now)
    })
}

/// The first slot starting at or after `t` (a poll is never early).
fn slot_at_or_after(t: Instant) -> u64 {
    let since = t.saturating_duration_since(epoch()).as_nanos();
    u64::try_from(since.div_ceil(POLL_SLOT.as_nanos()))
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The slot in progress at `t`.
fn slot_at(t: Instant) -> u64 {
    let since = t.saturating_duration_since(epoch()).as_nanos();
    u64::try_from(since / POLL_SLOT.as_nanos()).unwrap_or(u64::MAX)
}

/// When slot `n` starts.
fn slot_start(n: u64) -> Instant {
    let nanos = u64::try_from(POLL_SLOT.as_nanos()).unwrap_or(u64::MAX);
    epoch() + Duration::from_nanos(n.saturating_mul(nanos))
}

/// The time a poll due at `t` really happens: the start of its slot.
pub fn on_slot(t: Instant) -> Instant {
    slot_start(slot_at_or_after(t))
}

/// The wheel: slot number → pools queued for it. A pool is in at most one
/// live place, its `queued` slot; entries left behind when a pool moved to
/// an earlier slot are skipped when their slot comes.
#[derive(Default)]
pub struct PollEngine {
    wheel: Mutex<BTreeMap<u64, Vec<Arc<PoolEntry>>>>,
}

impl PollEngine {
    /// Queues `entry` for the slot of `at`, unless it is queued for an
    /// earlier slot already (a change delivered during a poll must not be
    /// pushed back by that poll's own "next due").
    pub fn schedule(&self, entry: &Arc<PoolEntry>, at: Instant) {
        if entry.gone.load(Ordering::Acquire) {
            return;
        }
        let slot = slot_at_or_after(at);
        let queued = entry
            .queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |q| {
                (q == 0 || slot < q).then_some(slot)
            });
        if queued.is_ok() {
            let mut wheel = self.wheel.lock().unwrap_or_else(|p| p.into_inner());
            wheel.entry(slot).or_default().push(entry.clone());
        }
    }

    /// Takes every pool due in slot `through` or before.
    fn take_due(&self, through: u64) -> Vec<Arc<PoolEntry>> {
        let due = {
            let mut wheel = self.wheel.lock().unwrap_or_else(|p| p.into_inner());
            let later = wheel.split_off(&through.saturating_add(1));
            std::mem::replace(&mut *wheel, later)
        };
        let mut pools = Vec::new();
        for (slot, entries) in due {
            pools.extend(entries.into_iter().filter(|e| {
                e.queued
                    .compare_exchange(slot, 0, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            }));
        }
        pools
    }
}

/// Runs the clock until the task is dropped: at each slot's start, the
/// polls of the pools due then.
pub async fn run(ctx: Arc<Context>) {
    let mut slot = slot_at(Instant::now());
    loop {
        slot += 1;
        tokio::time::sleep_until(slot_start(slot).into()).await;
        // Behind (a stalled runtime)? Catch up in one go, not slot by slot.
        slot = slot.max(slot_at(Instant::now()));
        let due = ctx.engine.take_due(slot);
        if !due.is_empty() {
            tokio::spawn(run_slot(ctx.clone(), due));
        }
    }
}

/// The polls of one slot. Every poll runs up to its first read while the
/// batches are held, so all the slot's reads are queued when they leave.
async fn run_slot(ctx: Arc<Context>, due: Vec<Arc<PoolEntry>>) {
    let mut polls: FuturesUnordered<_> = due
        .into_iter()
        .map(|entry| poll_and_requeue(&ctx, entry))
        .collect();
    let hold = ctx.sources.hold_batches();
    // Unconstrained: tokio's cooperative budget would otherwise stop the
    // first pass after a hundred or so polls, before their reads are queued.
    tokio::task::unconstrained(futures::future::poll_fn(|cx| loop {
        match polls.poll_next_unpin(cx) {
            TaskPoll::Ready(Some(())) => continue,
            _ => return TaskPoll::Ready(()),
        }
    }))
    .await;
    drop(hold);
    while polls.next().await.is_some() {}
}

/// Backoff with jitter after `errors` failures in a row (of a poll, or
/// of a status write): 1 s doubling to 16 s, ±25 %
/// (short enough that a pool resumes within seconds of the API returning).
pub fn backoff(errors: u32) -> Duration {
    let base = Duration::from_secs(1u64 << errors.clamp(1, 5).saturating_sub(1));
    let nanos = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    );
    let jitter = 0.75 + (nanos % 1000) as f64 / 2000.0;
    base.mul_f64(jitter)
}

async fn poll_and_requeue(ctx: &Arc<Context>, entry: Arc<PoolEntry>) {
    let next = poll_pool(ctx, &entry).await;
    ctx.engine.schedule(&entry, next);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_due_time_falls_on_the_next_slot_start_never_before() {
        let t = Instant::now() + Duration::from_millis(1234);
        let s = on_slot(t);
        assert!(s >= t);
        assert!(s - t < POLL_SLOT);
        assert_eq!(on_slot(s), s, "a slot start is its own slot");
        assert_eq!(slot_at(s), slot_at_or_after(s));
    }

    #[test]
    fn slots_are_numbered_from_one() {
        assert_eq!(slot_at_or_after(epoch()), 1);
        assert!(slot_at_or_after(Instant::now()) >= 1);
    }
}
