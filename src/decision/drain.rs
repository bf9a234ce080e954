//! The drain-time target: replicas so a trigger's backlog clears within
//! `drain.seconds` while work keeps arriving. Pure code; time is an input.
//!
//! There is no HPA function for this; the estimate is a fluid queue model.
//! Over the rate window, arrivals = depth change + items completed, so
//! `λ = (depth_now − depth_then + completed) / window`, never below 0, and
//! the proposal is `ceil((λ + depth / seconds) / per_replica)`, with the
//! same tolerance band as a `targetPerReplica` trigger.
//!
//! Completed items are kept as a running total per sample (`served`), so
//! the samples can be thinned freely: the window's completions are the
//! difference of two totals, however many polls lie between them.
//!
//! - `throughputPerReplica`: a replica completes that many items per second
//!   while the backlog is not empty. Over a poll interval that ended with an
//!   empty backlog the replicas were partly idle, so completions there are
//!   at most what was queued at its start (otherwise an idle pool would
//!   "see" arrivals equal to its capacity and never shrink).
//! - measured (`throughputFrom`): completions are the measured total. The
//!   per-replica rate used to size the pool is measured total / replicas,
//!   taken while the backlog was not empty (idle replicas complete little,
//!   which says nothing about what they could do) and remembered; with no
//!   such measurement yet, the current measured total / replicas is used,
//!   and with 0 replicas or nothing ever measured there is no rate to size
//!   by: the proposal keeps the current count, and at least 1 while there is
//!   work, so the next polls can measure one.
//!
//! Until the window holds a second sample (first poll, or after a restart
//! without history) λ is unknown: the proposal sizes for the backlog alone
//! and never goes below the current count.

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::proposal::propose;
use super::{Reading, TriggerPolicy};

/// Most samples kept per trigger; the rate window is cut into this many
/// slices so a 1 s poll with a 1 h window stays small in status.
pub const MAX_SAMPLES: usize = 32;

/// Largest depth or running total accepted from status (untrusted input).
const MAX_ITEMS: f64 = 1e15;

/// A trigger's drain target, after validation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DrainPolicy {
    /// The backlog should clear within this many seconds (> 0).
    pub seconds: f64,
    /// Where completions come from.
    pub throughput: Throughput,
    /// Window of the arrival-rate estimate (> 0).
    pub rate_window_ms: i64,
}

/// Where a drain trigger's per-replica throughput comes from.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Throughput {
    /// Items per second one replica completes (> 0).
    PerReplica(f64),
    /// A second reading each poll: total completions per second of the pool.
    Measured,
}

/// One poll's backlog, kept for later polls' arrival-rate estimates.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq)]
pub struct DrainSample {
    /// When (RFC 3339 in status; simulate: ms from the trace start).
    #[serde(with = "super::status_time")]
    #[schemars(schema_with = "super::status_time::schema")]
    pub at: i64,
    /// The trigger's value (the backlog) then.
    pub depth: f64,
    /// Items completed from the oldest kept sample up to this one (running total).
    pub served: f64,
}

/// What the drain estimate remembers for one trigger.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct DrainTrack {
    /// Recent samples, oldest first; at most [`MAX_SAMPLES`] + 2.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples: Vec<DrainSample>,
    /// Measured items/s per replica while the backlog was not empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_replica: Option<f64>,
}

/// The drain estimate of one trigger on one poll.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DrainEstimate {
    /// Items/s arriving over the window; None until the window has two samples.
    pub arrival_rate: Option<f64>,
    /// Seconds to clear the backlog at the current replicas; None when it
    /// does not shrink (or λ is unknown).
    pub drain_seconds: Option<f64>,
    /// Items/s one replica completes, as used for the proposal.
    pub per_replica: Option<f64>,
    /// The measured total completions/s of this poll (throughputFrom).
    pub measured: Option<f64>,
    /// This poll's sample, recorded by `History::commit`.
    pub sample: DrainSample,
    /// Per-replica rate to remember after this poll.
    remembered: Option<f64>,
}

/// The reading `decide` judges a trigger by: a drain trigger with a
/// measured throughput but no throughput reading has failed (the read is
/// part of the trigger). The throughput itself is read by [`propose_trigger`].
pub fn judged_reading(t: &TriggerPolicy, reading: Option<&Reading>) -> Option<Reading> {
    let measured = t
        .drain
        .is_some_and(|d| d.throughput == Throughput::Measured);
    match reading? {
        Reading::WithThroughput { value, .. } => Some(Reading::Value(*value)),
        Reading::Value(_) if measured => Some(Reading::Failed(
            "drain.throughputFrom: no throughput reading".into(),
        )),
        r => Some(r.clone()),
    }
}

/// Replicas a trigger proposes for `value`, and whether that is the current
/// count held by the tolerance: [`propose`] for `targetPerReplica`, the
/// drain estimate for `drain`.
pub fn propose_trigger(
    t: &TriggerPolicy,
    value: f64,
    reading: Option<&Reading>,
    current: i32,
    tolerance: f64,
    tracks: &BTreeMap<String, DrainTrack>,
    now: i64,
) -> (i32, bool, Option<DrainEstimate>) {
    let Some(p) = &t.drain else {
        let (n, within) = propose(value, t.target_per_replica, current, tolerance);
        return (n, within, None);
    };
    let measured = match reading {
        Some(Reading::WithThroughput { throughput, .. }) => Some(*throughput),
        _ => None,
    };
    let est = estimate(p, tracks.get(&t.name), now, value, current, measured);
    let needed = est.arrival_rate.unwrap_or(0.0) + value.max(0.0) / p.seconds;
    let (n, within) = match est.per_replica {
        Some(rate) => propose(needed, rate, current, tolerance),
        None if needed > 0.0 => (current.max(1), false),
        None => (current, true),
    };
    // Without a rate estimate there is no evidence that fewer replicas keep up.
    let n = if est.arrival_rate.is_none() {
        n.max(current)
    } else {
        n
    };
    (n, within && n == current, Some(est))
}

/// The arrival rate, per-replica throughput and drain time for one poll.
pub fn estimate(
    p: &DrainPolicy,
    track: Option<&DrainTrack>,
    now: i64,
    depth: f64,
    current: i32,
    measured: Option<f64>,
) -> DrainEstimate {
    let depth = depth.clamp(0.0, MAX_ITEMS);
    let measured = measured.map(|m| if m.is_finite() { m.max(0.0) } else { 0.0 });
    let samples = track
        .map(|t| valid_samples(&t.samples, now))
        .unwrap_or_default();
    let replicas = f64::from(current.max(0));
    let served = samples.last().map_or(0.0, |last| {
        last.served + served_since(p, last, now, depth, replicas, measured)
    });
    let sample = DrainSample {
        at: now,
        depth,
        served,
    };
    let arrival_rate = anchor(&samples, now, p.rate_window_ms).map(|a| {
        let secs = (now - a.at) as f64 / 1000.0;
        ((depth - a.depth + served - a.served) / secs).max(0.0)
    });
    let saturated = match (measured, depth > 0.0 && replicas > 0.0) {
        (Some(m), true) if m > 0.0 => Some(m / replicas),
        _ => None,
    };
    let remembered = saturated.or(track.and_then(|t| valid_rate(t.per_replica)));
    let per_replica = match p.throughput {
        Throughput::PerReplica(x) => Some(x),
        Throughput::Measured => remembered.or(match measured {
            Some(m) if m > 0.0 && replicas > 0.0 => Some(m / replicas),
            _ => None,
        }),
    };
    let drain_seconds = drain_time(depth, arrival_rate, per_replica.map(|r| r * replicas));
    DrainEstimate {
        arrival_rate,
        drain_seconds,
        per_replica,
        measured,
        sample,
        remembered,
    }
}

/// Items completed between the last sample and now.
fn served_since(
    p: &DrainPolicy,
    last: &DrainSample,
    now: i64,
    depth: f64,
    replicas: f64,
    measured: Option<f64>,
) -> f64 {
    let secs = (now - last.at) as f64 / 1000.0;
    match p.throughput {
        Throughput::Measured => measured.unwrap_or(0.0) * secs,
        Throughput::PerReplica(rate) => {
            let capacity = rate * replicas * secs;
            if depth > 0.0 {
                capacity
            } else {
                capacity.min(last.depth)
            }
        }
    }
}

/// The sample the window starts at: the newest at or before `now - window`,
/// else the oldest (a window not yet full).
fn anchor(samples: &[DrainSample], now: i64, window_ms: i64) -> Option<DrainSample> {
    let start = now - window_ms;
    samples
        .iter()
        .rev()
        .find(|s| s.at <= start)
        .or(samples.first())
        .copied()
}

/// Longest drain time reported; beyond it the backlog does not shrink on
/// any scale a person acts on (and a surplus of rounding error would
/// otherwise report ~10^15 s).
pub const MAX_DRAIN_SECONDS: f64 = 1e7;

/// Seconds to clear `depth` with `capacity` items/s while `arrivals` keep coming.
fn drain_time(depth: f64, arrivals: Option<f64>, capacity: Option<f64>) -> Option<f64> {
    if depth <= 0.0 {
        return Some(0.0);
    }
    let shrink = capacity? - arrivals?;
    Some(depth / shrink).filter(|s| shrink > 0.0 && *s <= MAX_DRAIN_SECONDS)
}

/// Samples from status are untrusted: keep only finite, in-range ones in
/// strictly increasing time (before `now`) with a non-decreasing total,
/// and at most the newest [`MAX_SAMPLES`] + 2.
fn valid_samples(samples: &[DrainSample], now: i64) -> Vec<DrainSample> {
    let mut out: Vec<DrainSample> = Vec::with_capacity(samples.len().min(MAX_SAMPLES + 2));
    for s in samples {
        let sane = (0..now).contains(&s.at)
            && s.depth.is_finite()
            && (0.0..=MAX_ITEMS).contains(&s.depth)
            && s.served.is_finite()
            && (0.0..=MAX_ITEMS).contains(&s.served);
        let ordered = out
            .last()
            .is_none_or(|prev| s.at > prev.at && s.served >= prev.served);
        if sane && ordered {
            out.push(*s);
        }
    }
    let excess = out.len().saturating_sub(MAX_SAMPLES + 2);
    out.drain(..excess);
    out
}

fn valid_rate(rate: Option<f64>) -> Option<f64> {
    rate.filter(|r| r.is_finite() && *r > 0.0 && *r <= MAX_ITEMS)
}

impl DrainTrack {
    /// Keeps only the valid samples of what status held (a poll without a
    /// reading adds none, but must not carry garbage along).
    pub fn sanitize(&mut self, now: i64) {
        self.samples = valid_samples(&self.samples, now.saturating_add(1));
        self.per_replica = valid_rate(self.per_replica);
    }

    /// Adds a poll's sample and forgets what the window no longer needs:
    /// samples before the window's anchor, and samples closer together than
    /// `window / MAX_SAMPLES` (the newest is always kept: the next interval
    /// starts there). Running totals are rebased to start at 0.
    pub fn record(&mut self, p: &DrainPolicy, est: &DrainEstimate) {
        let now = est.sample.at;
        let mut samples = valid_samples(&self.samples, now);
        samples.push(est.sample);
        let spacing = (p.rate_window_ms / MAX_SAMPLES as i64).max(1);
        let n = samples.len();
        if n >= 3 && samples[n - 2].at - samples[n - 3].at < spacing {
            samples.remove(n - 2);
        }
        if let Some(a) = anchor(&samples, now, p.rate_window_ms) {
            samples.retain(|s| s.at >= a.at);
        }
        let excess = samples.len().saturating_sub(MAX_SAMPLES + 2);
        samples.drain(..excess);
        let base = samples.first().map_or(0.0, |s| s.served);
        for s in &mut samples {
            s.served -= base;
        }
        self.samples = samples;
        self.per_replica = valid_rate(est.remembered);
    }
}

#[cfg(test)]
mod tests;
