//! What the decision remembers between polls: recent recommendations (for
//! the stabilization windows), recent scale events (for the rate policies),
//! inactivity and failure counters.
//!
//! It is kept in `status.history` so a restarted operator or a new leader
//! applies the same windows as the old one. Times are unix milliseconds
//! (simulate uses milliseconds from the start of the trace); status shows
//! them as RFC 3339 (see `status_time`).

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::{Decision, DrainTrack, Policy};

/// A run of polls that all recommended the same count, from `from` to `to`
/// (inclusive). Storing runs instead of samples keeps a 1 s poll with a
/// 300 s window at a handful of entries; it is exact, because a run
/// intersects a window `(now - w, now]` iff its last sample does.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecommendationSpan {
    /// First poll of the run (RFC 3339).
    #[serde(with = "super::status_time")]
    #[schemars(schema_with = "super::status_time::schema")]
    pub from: i64,
    /// Last poll of the run (RFC 3339).
    #[serde(with = "super::status_time")]
    #[schemars(schema_with = "super::status_time::schema")]
    pub to: i64,
    /// The count every poll of the run recommended.
    pub replicas: i32,
}

/// One scale of the target: `change` replicas added (scale-up list) or
/// removed (scale-down list), as HPA's `timestampedScaleEvent`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleEvent {
    /// When the target was scaled (RFC 3339).
    #[serde(with = "super::status_time")]
    #[schemars(schema_with = "super::status_time::schema")]
    pub at: i64,
    /// Replicas added or removed.
    pub change: i32,
}

/// The decision's memory for one pool.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct History {
    /// Recent recommendations as runs of equal counts (for the stabilization windows).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recommendations: Vec<RecommendationSpan>,
    /// Recent scale-ups (for the scale-up rate policies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale_up_events: Vec<ScaleEvent>,
    /// Recent scale-downs (for the scale-down rate policies).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scale_down_events: Vec<ScaleEvent>,
    /// Since when every trigger has been inactive (unset while any is active).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::status_time::optional"
    )]
    #[schemars(schema_with = "super::status_time::optional::schema")]
    pub inactive_since: Option<i64>,
    /// Last time any trigger was active.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::status_time::optional"
    )]
    #[schemars(schema_with = "super::status_time::optional::schema")]
    pub last_active: Option<i64>,
    /// Consecutive failed polls per trigger name (absent = 0).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "super::status_time::failure_counts_schema")]
    pub failures: BTreeMap<String, u32>,
    /// Set while the fallback is in effect (start of the episode).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "super::status_time::optional"
    )]
    #[schemars(schema_with = "super::status_time::optional::schema")]
    pub fallback_since: Option<i64>,
    /// Recent backlog samples per drain trigger name, for the arrival rate.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub drain: BTreeMap<String, DrainTrack>,
}

/// Consecutive failures beyond this count mean the same to every rule.
const MAX_REMEMBERED_FAILURES: u32 = 1_000_000;

impl History {
    /// Records a poll's (pre-behavior) recommendation, merging it into the
    /// last run when unchanged.
    pub fn record_recommendation(&mut self, now: i64, replicas: i32) {
        if let Some(last) = self.recommendations.last_mut() {
            if last.replicas == replicas && last.to <= now {
                last.to = now;
                return;
            }
        }
        self.recommendations.push(RecommendationSpan {
            from: now,
            to: now,
            replicas,
        });
    }

    /// Records a scale of the target from `from` to `to` replicas.
    pub fn record_scale(&mut self, now: i64, from: i32, to: i32) {
        if to > from {
            self.scale_up_events.push(ScaleEvent {
                at: now,
                change: to.saturating_sub(from),
            });
        } else if to < from {
            self.scale_down_events.push(ScaleEvent {
                at: now,
                change: from.saturating_sub(to),
            });
        }
    }

    /// Drops what no window or policy can see any more, so the history stays
    /// small (HPA reuses "outdated" slots for the same reason).
    pub fn prune(&mut self, now: i64, horizon_ms: i64) {
        let cutoff = now.saturating_sub(horizon_ms);
        // Keep the newest span even when old: it still says what the last poll wanted.
        let keep_from = self
            .recommendations
            .iter()
            .position(|s| s.to > cutoff)
            .unwrap_or(self.recommendations.len().saturating_sub(1));
        self.recommendations.drain(..keep_from);
        self.scale_up_events.retain(|e| e.at > cutoff);
        self.scale_down_events.retain(|e| e.at > cutoff);
    }

    /// The history as read back from `status.history`, which anyone allowed
    /// to patch `workerpools/status` can write: times after `now` or before
    /// the epoch, negative counts and changes, and absurd failure counts are
    /// dropped or clamped, so no arithmetic on them can overflow or reach
    /// into the future.
    pub fn sanitized(mut self, now: i64) -> History {
        let in_past = |t: i64| (0..=now).contains(&t);
        self.recommendations
            .retain(|s| in_past(s.from) && in_past(s.to) && s.from <= s.to && s.replicas >= 0);
        self.recommendations.sort_by_key(|s| s.to);
        for events in [&mut self.scale_up_events, &mut self.scale_down_events] {
            events.retain(|e| in_past(e.at) && e.change > 0);
            events.sort_by_key(|e| e.at);
        }
        for t in [
            &mut self.inactive_since,
            &mut self.last_active,
            &mut self.fallback_since,
        ] {
            *t = t.filter(|t| in_past(*t));
        }
        for n in self.failures.values_mut() {
            *n = (*n).min(MAX_REMEMBERED_FAILURES);
        }
        self
    }

    /// Sum of `change` over events strictly after `now - period_ms`
    /// (HPA's `getReplicasChangePerPeriod`).
    pub fn change_in_period(events: &[ScaleEvent], now: i64, period_ms: i64) -> i32 {
        let cutoff = now.saturating_sub(period_ms);
        events
            .iter()
            .filter(|e| e.at > cutoff)
            .fold(0i32, |acc, e| acc.saturating_add(e.change))
    }
}

impl History {
    /// Remembers each drain trigger's sample of this poll; a failed read adds
    /// none (but what status held is still checked and bounded). Tracks of
    /// triggers that are gone (or no longer drain) are dropped.
    pub fn record_drain(&mut self, policy: &Policy, decision: &Decision, now: i64) {
        self.drain.retain(|name, _| {
            policy
                .triggers
                .iter()
                .any(|t| &t.name == name && t.drain.is_some())
        });
        for (t, outcome) in policy.triggers.iter().zip(&decision.triggers) {
            let Some(p) = &t.drain else { continue };
            match (&outcome.drain, self.drain.get_mut(&t.name)) {
                (Some(est), _) => self.drain.entry(t.name.clone()).or_default().record(p, est),
                (None, Some(track)) => track.sanitize(now),
                (None, None) => {}
            }
        }
    }
}
