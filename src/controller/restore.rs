//! The decision's memory, restored from `status.history` when a pool is
//! first seen (after a restart or a change of leader).
//!
//! Status is untrusted input — anyone allowed to patch `workerpools/status`
//! writes it — so what is read back is sanitized before any arithmetic.

use crate::decision::History;

/// Loads the decision's memory from the history read back from status
/// (`recorded`: the status's currentReplicas), and accounts for a scale the
/// last leader made but could not record (it died between the /scale PATCH
/// and the status write): the target shows a count the status does not, so
/// that change is remembered as a scale event now — which keeps the rate
/// policies conservative.
///
/// The restored recommendations end at the last status write, which may be
/// up to `status_resync` old (an unchanged decision is not rewritten), so
/// the last leader's later recommendations are unknown. As HPA's
/// `maybeInitScaleDownStabilizationWindow` does for a fresh start, the
/// current count counts as a recommendation now: a restart inside a
/// scale-down window never scales in before a full window has passed.
pub fn restore_history(
    read_back: Option<Box<History>>,
    recorded: Option<i32>,
    current: i32,
    now_ms: i64,
) -> History {
    let mut h = read_back.map(|h| *h).unwrap_or_default().sanitized(now_ms);
    if h.recommendations.is_empty() {
        return h;
    }
    if let Some(recorded) = recorded.map(|r| r.max(0)) {
        if recorded != current {
            h.record_scale(now_ms, recorded, current);
        }
    }
    h.record_recommendation(now_ms, current);
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::WorkerPool;

    /// Restores from the status of `pool` as the first poll does.
    fn restore(pool: &WorkerPool, current: i32, now_ms: i64) -> History {
        let status = pool.status.clone().unwrap_or_default();
        restore_history(status.history, status.current_replicas, current, now_ms)
    }

    fn pool_with_status(status: serde_json::Value) -> WorkerPool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
            "metadata": {"name": "p", "namespace": "ns"},
            "spec": {"scaleTargetRef": {"name": "w"}, "maxReplicas": 10,
                     "triggers": [{"redis": {"url": "redis://r", "list": "q"}, "targetPerReplica": 1}]},
            "status": status
        }))
        .unwrap()
    }

    #[test]
    fn restored_history_counts_the_current_count_as_a_recommendation_now() {
        // Last written at t=1000 recommending 5; restarted at t=9000.
        let p = pool_with_status(serde_json::json!({
            "currentReplicas": 5,
            "history": {"recommendations": [{"from": 0, "to": 1000, "replicas": 5}]}
        }));
        let h = restore(&p, 5, 9000);
        assert_eq!(
            h.recommendations.last().map(|s| (s.to, s.replicas)),
            Some((9000, 5))
        );
        assert!(h.scale_up_events.is_empty() && h.scale_down_events.is_empty());
    }

    #[test]
    fn a_scale_the_status_missed_is_remembered_as_a_scale_event() {
        let p = pool_with_status(serde_json::json!({
            "currentReplicas": 2,
            "history": {"recommendations": [{"from": 0, "to": 1000, "replicas": 2}]}
        }));
        let h = restore(&p, 4, 2000);
        assert_eq!(h.scale_up_events.len(), 1);
        assert_eq!(
            (h.scale_up_events[0].at, h.scale_up_events[0].change),
            (2000, 2)
        );
        assert_eq!(
            h.recommendations.last().map(|s| (s.to, s.replicas)),
            Some((2000, 4))
        );
    }

    #[test]
    fn hostile_status_values_neither_overflow_nor_reach_the_future() {
        let p = pool_with_status(serde_json::json!({
            "currentReplicas": -2147483648i64,
            "history": {
                "recommendations": [{"from": -9223372036854775807i64, "to": 1000, "replicas": 2},
                                    {"from": 0, "to": 9223372036854775807i64, "replicas": 7},
                                    {"from": 0, "to": 1000, "replicas": 3}],
                "scaleUpEvents": [{"at": 500, "change": -2147483648i64}],
                "inactiveSince": 9223372036854775807i64,
                "failures": {"q": 4294967295u64}
            }
        }));
        let h = restore(&p, 2147483647, 2000);
        assert!(h
            .recommendations
            .iter()
            .all(|s| s.to <= 2000 && s.from >= 0));
        assert_eq!(h.inactive_since, None);
        assert!(h.scale_up_events.iter().all(|e| e.change > 0));
        assert!(h.failures.values().all(|n| *n <= 1_000_000));
    }

    #[test]
    fn readable_times_and_older_operators_numbers_restore_alike() {
        let text = pool_with_status(serde_json::json!({
            "currentReplicas": 5,
            "history": {"recommendations": [{"from": "1970-01-01T00:00:00Z",
                                             "to": "1970-01-01T00:00:01.000Z", "replicas": 5}],
                        "scaleUpEvents": [{"at": "1970-01-01T00:00:00.500Z", "change": 2}],
                        "inactiveSince": "not a time"}
        }));
        let numbers = pool_with_status(serde_json::json!({
            "currentReplicas": 5,
            "history": {"recommendations": [{"from": 0, "to": 1000, "replicas": 5}],
                        "scaleUpEvents": [{"at": 500, "change": 2}]}
        }));
        let restored = restore(&text, 5, 9000);
        assert_eq!(restored, restore(&numbers, 5, 9000));
        assert_eq!(restored.scale_up_events[0].at, 500);
        assert_eq!(
            restored.inactive_since, None,
            "an unreadable time is dropped"
        );
    }

    #[test]
    fn no_status_or_no_recommendations_restore_nothing_new() {
        let p = pool_with_status(serde_json::Value::Null);
        assert_eq!(restore(&p, 3, 1000), History::default());
        let p = pool_with_status(serde_json::json!({"currentReplicas": 1}));
        assert_eq!(restore(&p, 3, 1000), History::default());
    }
}
