//! Which pods a ReplicaSet removes first when it has too many: the order of
//! the real ReplicaSet controller (`getPodsToDelete` ranking its pods with
//! `ActivePodsWithRanks`), as of Kubernetes v1.34, with the feature gates
//! `PodDeletionCost` and `LogarithmicScaleDown` at their defaults (on).
//!
//! A pod sorts first (is deleted earlier) when, at the first criterion
//! that tells two pods apart:
//! 1. it is not assigned to a node and the other is;
//! 2. its phase is earlier: Pending (and any other phase) < Unknown < Running;
//! 3. it is not ready and the other is;
//! 4. its `controller.kubernetes.io/pod-deletion-cost` is lower (absent or
//!    invalid counts as 0);
//! 5. more active pods of the same Deployment share its node ("doubled up");
//! 6. both ready: it became ready more recently, compared in power-of-two
//!    buckets of time since then; within one bucket the smaller uid first
//!    (a zero ready time sorts first);
//! 7. its containers restarted more (the maximum over containers);
//! 8. it was created more recently, in the same log2 buckets; within one
//!    bucket the smaller uid first (a zero time sorts first).
//!
//! Pods equal on all of these keep their list order (by name here; the
//! real controller's order then depends on its informer cache).

use std::cmp::Ordering;

use serde_json::Value;

use super::pod::{self, Instant};

/// A pod with the facts the ranking reads, gathered once.
#[derive(Debug, Clone)]
pub struct Ranked<'a> {
    pub pod: &'a Value,
    node: &'a str,
    phase_order: u8,
    ready: bool,
    cost: i32,
    colocated: usize,
    ready_since: Instant,
    restarts: i64,
    created: Instant,
    uid: &'a str,
}

fn phase_order(pod: &Value) -> u8 {
    match pod["status"]["phase"].as_str() {
        Some("Unknown") => 1,
        Some("Running") => 2,
        _ => 0,
    }
}

impl<'a> Ranked<'a> {
    /// `related` are the pods of every ReplicaSet of the same Deployment;
    /// the active ones on this pod's node make its "doubled up" rank.
    pub fn new(pod: &'a Value, related: &[&Value]) -> Self {
        let node = pod::node(pod);
        let colocated = related
            .iter()
            .filter(|p| pod::is_active(p) && pod::node(p) == node)
            .count();
        Ranked {
            pod,
            node,
            phase_order: phase_order(pod),
            ready: pod::is_ready(pod),
            cost: pod::deletion_cost(pod),
            colocated,
            ready_since: pod::ready_since(pod),
            restarts: pod::max_restarts(pod),
            created: pod::created(pod),
            uid: pod::uid(pod),
        }
    }
}

/// floor(log2(now - t)) in nanoseconds; -1 when `t` is not in the past.
fn log_bucket(t: i64, now: i64) -> i64 {
    let age = now.saturating_sub(t);
    if age > 0 {
        (age as f64).log2() as i64
    } else {
        -1
    }
}

/// "`a` is later than `b`", where a zero time counts as the latest.
fn later_or_zero(a: Instant, b: Instant) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a > b,
        (a, _) => a.is_none(),
    }
}

/// Newer first by log2 bucket of age; the same bucket falls to uid order.
fn newer_first(a: &Ranked<'_>, b: &Ranked<'_>, ta: Instant, tb: Instant, now: i64) -> bool {
    let (Some(x), Some(y)) = (ta, tb) else {
        return later_or_zero(ta, tb);
    };
    match log_bucket(x, now).cmp(&log_bucket(y, now)) {
        Ordering::Equal => a.uid < b.uid,
        other => other == Ordering::Less,
    }
}

/// The first of criteria 1–5 that tells the pods apart, if any.
fn by_state(a: &Ranked<'_>, b: &Ranked<'_>) -> Option<bool> {
    if a.node != b.node && (a.node.is_empty() || b.node.is_empty()) {
        return Some(a.node.is_empty());
    }
    if a.phase_order != b.phase_order {
        return Some(a.phase_order < b.phase_order);
    }
    if a.ready != b.ready {
        return Some(!a.ready);
    }
    if a.cost != b.cost {
        return Some(a.cost < b.cost);
    }
    if a.colocated != b.colocated {
        return Some(a.colocated > b.colocated);
    }
    None
}

/// Whether `a` should be deleted before `b` (the controller's `Less`).
pub fn delete_first(a: &Ranked<'_>, b: &Ranked<'_>, now: i64) -> bool {
    if let Some(decided) = by_state(a, b) {
        return decided;
    }
    if a.ready && b.ready && a.ready_since != b.ready_since {
        return newer_first(a, b, a.ready_since, b.ready_since, now);
    }
    if a.restarts != b.restarts {
        return a.restarts > b.restarts;
    }
    if a.created != b.created {
        return newer_first(a, b, a.created, b.created, now);
    }
    false
}

/// The `count` pods to delete, first victim first. An insertion sort:
/// stable, and it cannot fail on the (not always transitive) comparison.
pub fn victims<'a>(
    pods: &[&'a Value],
    related: &[&Value],
    count: usize,
    now: i64,
) -> Vec<&'a Value> {
    let mut ranked: Vec<Ranked<'a>> = pods.iter().map(|p| Ranked::new(p, related)).collect();
    for i in 1..ranked.len() {
        let mut j = i;
        while j > 0 && delete_first(&ranked[j], &ranked[j - 1], now) {
            ranked.swap(j, j - 1);
            j -= 1;
        }
    }
    ranked.into_iter().take(count).map(|r| r.pod).collect()
}
