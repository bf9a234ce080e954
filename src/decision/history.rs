//! What the decision remembers between polls: recent recommendations (for
//! the stabilization windows), recent scale events (for the rate policies),
//! inactivity and failure counters.
//!
//! It is kept in `status.history` so a restarted operator or a new leader
//! applies the same windows as the old one. Times are unix milliseconds
//! (simulate uses milliseconds from the start of the trace).

use std::collections::BTreeMap;

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// A run of polls that all recommended the same count, from `from` to `to`
/// (inclusive). Storing runs instead of samples keeps a 1 s poll with a
/// 300 s window at a handful of entries; it is exact, because a run
/// intersects a window `(now - w, now]` iff its last sample does.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecommendationSpan {
    /// First poll of the run (unix milliseconds).
    pub from: i64,
    /// Last poll of the run (unix milliseconds).
    pub to: i64,
    /// The count every poll of the run recommended.
    pub replicas: i32,
}

/// One scale of the target: `change` replicas added (scale-up list) or
/// removed (scale-down list), as HPA's `timestampedScaleEvent`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleEvent {
    /// When the target was scaled (unix milliseconds).
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inactive_since: Option<i64>,
    /// Last time any trigger was active.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_active: Option<i64>,
    /// Consecutive failed polls per trigger name (absent = 0).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub failures: BTreeMap<String, u32>,
    /// Set while the fallback is in effect (start of the episode).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback_since: Option<i64>,
}

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
                change: to - from,
            });
        } else if to < from {
            self.scale_down_events.push(ScaleEvent {
                at: now,
                change: from - to,
            });
        }
    }

    /// Drops what no window or policy can see any more, so the history stays
    /// small (HPA reuses "outdated" slots for the same reason).
    pub fn prune(&mut self, now: i64, horizon_ms: i64) {
        let cutoff = now - horizon_ms;
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

    /// Sum of `change` over events strictly after `now - period_ms`
    /// (HPA's `getReplicasChangePerPeriod`).
    pub fn change_in_period(events: &[ScaleEvent], now: i64, period_ms: i64) -> i32 {
        let cutoff = now - period_ms;
        events
            .iter()
            .filter(|e| e.at > cutoff)
            .fold(0i32, |acc, e| acc.saturating_add(e.change))
    }
}
