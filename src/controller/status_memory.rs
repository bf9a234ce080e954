//! What a pool's next status needs from its last one, kept per pool by the
//! leader instead of the whole status the watch delivers.
//!
//! A status keeps a few values across polls: when the target was last
//! scaled, each trigger's last success, since when each condition has had
//! its status, and — for a pool that stands down — every value of the last
//! poll. The whole status held in the watched object also carries the
//! decision's history (kept separately, in the pool's state) and every
//! condition's message, about 2 KiB a pool that no poll reads. So the
//! leader's first poll of a pool takes this memory from the watched status,
//! and from then on the watch's copies of the status — the echoes of the
//! leader's own writes — are dropped on arrival (`PoolEntry`).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use crate::api::condition::{ACTIVE, METRICS_AVAILABLE, PAUSED, READY, SCALING_LIMITED};
use crate::api::WorkerPoolStatus;
use crate::decision::History;

/// The last status without its conditions, and since when each of the
/// operator's conditions has had its status. Its history is only the one
/// read from the API server and not yet restored into the decision's
/// memory (statuses the operator builds carry none here).
#[derive(Clone, Debug, Default)]
pub struct StatusMemory {
    kept: WorkerPoolStatus,
    since: Vec<Since>,
}

/// A condition of type `type_` has had `status` since `at`.
#[derive(Clone, Debug)]
struct Since {
    type_: &'static str,
    status: bool,
    at: Time,
}

const CONDITION_TYPES: [&str; 5] = [READY, ACTIVE, METRICS_AVAILABLE, SCALING_LIMITED, PAUSED];

impl Since {
    /// Only the operator's own condition types with a True or False status
    /// are remembered; anything else in a status read back is ignored.
    fn of(c: &Condition) -> Option<Since> {
        let type_ = CONDITION_TYPES.into_iter().find(|t| *t == c.type_)?;
        let status = match c.status.as_str() {
            "True" => true,
            "False" => false,
            _ => return None,
        };
        Some(Since {
            type_,
            status,
            at: c.last_transition_time.clone(),
        })
    }
}

impl StatusMemory {
    /// Remembers `status` (moved, not copied).
    pub fn of(mut status: WorkerPoolStatus) -> Self {
        let since = status.conditions.iter().filter_map(Since::of).collect();
        status.conditions = Vec::new();
        StatusMemory {
            kept: status,
            since,
        }
    }

    /// Every value of the last status but its conditions.
    pub fn kept(&self) -> &WorkerPoolStatus {
        &self.kept
    }

    /// When the condition `type_` last turned `status`, if it still has it.
    pub fn since(&self, type_: &str, status: bool) -> Option<Time> {
        (self.since.iter())
            .find(|s| s.type_ == type_ && s.status == status)
            .map(|s| s.at.clone())
    }

    /// The history read from the API server, handed over once: from then on
    /// the decision's memory holds it.
    pub fn take_history(&mut self) -> Option<Box<History>> {
        self.kept.history.take()
    }

    /// A status this memory stands for, with `history` and the conditions'
    /// types, statuses and times (their reasons and messages are not kept):
    /// what a standby restores from when it leads again before another
    /// leader wrote a newer one.
    pub fn into_status(self, history: Option<Box<History>>) -> WorkerPoolStatus {
        let conditions = (self.since.into_iter())
            .map(|s| Condition {
                type_: s.type_.to_string(),
                status: if s.status { "True" } else { "False" }.to_string(),
                last_transition_time: s.at,
                message: String::new(),
                reason: String::new(),
                observed_generation: self.kept.observed_generation,
            })
            .collect();
        WorkerPoolStatus {
            conditions,
            history: history.or(self.kept.history),
            ..self.kept
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_back(json: serde_json::Value) -> WorkerPoolStatus {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn only_the_operators_conditions_with_a_definite_status_are_remembered() {
        let m = StatusMemory::of(read_back(serde_json::json!({
            "currentReplicas": 3,
            "conditions": [
                {"type": "Ready", "status": "True", "reason": "Scaling", "message": "m",
                 "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "Active", "status": "Unknown", "reason": "x", "message": "",
                 "lastTransitionTime": "2026-01-01T00:00:01Z"},
                {"type": "SomeoneElses", "status": "True", "reason": "x", "message": "",
                 "lastTransitionTime": "2026-01-01T00:00:02Z"}
            ]
        })));
        let ready = m.since(READY, true).map(|t| t.0.to_string());
        assert_eq!(ready.as_deref(), Some("2026-01-01T00:00:00Z"));
        assert!(m.since(READY, false).is_none());
        assert!(m.since(ACTIVE, true).is_none() && m.since(ACTIVE, false).is_none());
        assert_eq!(m.kept().current_replicas, Some(3));
        assert!(m.kept().conditions.is_empty());
    }

    #[test]
    fn the_history_read_back_is_handed_over_once_and_a_standby_gets_the_newest() {
        let mut m = StatusMemory::of(read_back(serde_json::json!({
            "history": {"recommendations": [{"from": 0, "to": 1000, "replicas": 5}]},
            "conditions": [{"type": "Ready", "status": "False", "reason": "r", "message": "",
                            "lastTransitionTime": "2026-01-01T00:00:00Z"}]
        })));
        assert!(m.take_history().is_some());
        assert!(m.take_history().is_none());
        let newer = History::default();
        let status = m.into_status(Some(Box::new(newer.clone())));
        assert_eq!(status.history, Some(Box::new(newer)));
        assert_eq!(status.conditions.len(), 1);
        assert_eq!(status.conditions[0].status, "False");
    }
}
