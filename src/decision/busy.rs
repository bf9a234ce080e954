//! The last step of a scale-in: spare busy workers (`spec.scaleIn`).
//!
//! HPA has no such step: it scales by metrics alone and lets the ReplicaSet
//! pick victims. Here the busy signal (which pods are running work) is an
//! input, read only when the other steps propose fewer replicas than now:
//! - `keepBusy`: never below the number of busy pods (nor above current or
//!   the ceiling: this step only holds a scale-in, it never scales out);
//! - a busy signal that could not be read holds the scale-in at the current
//!   count (clamped to the ceiling): never a blind scale-in when the pool
//!   asked for care, whether for `keepBusy` or for `deletionCost`.

use super::{Decision, Limit, Policy, ScaleInPolicy};

/// What the busy signal said on this poll.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Busy {
    /// Not read: the pool has no `scaleIn`, or the decision was not a scale-in.
    #[default]
    NotRead,
    /// This many of the target's pods are busy.
    Pods(i32),
    /// The signal (or the pods it is matched with) could not be read; why.
    Failed(String),
}

/// The keep-busy step on a count `desired` the other steps left: the
/// count, raised when busy pods (or a failed busy read) hold the scale-in,
/// and the limit that did it.
pub fn keep_busy(
    desired: i32,
    current: i32,
    max: i32,
    policy: Option<&ScaleInPolicy>,
    busy: &Busy,
) -> (i32, Option<Limit>) {
    let Some(policy) = policy else {
        return (desired, None);
    };
    if desired >= current {
        return (desired, None);
    }
    match busy {
        Busy::NotRead => (desired, None),
        Busy::Failed(_) => {
            let hold = current.min(max);
            if hold > desired {
                (hold, Some(Limit::BusySignalFailed(hold)))
            } else {
                (desired, None)
            }
        }
        Busy::Pods(n) if policy.keep_busy => {
            let floor = (*n).min(current).min(max).max(0);
            if floor > desired {
                let limit = Limit::KeepBusy {
                    held: floor,
                    busy: *n,
                };
                (floor, Some(limit))
            } else {
                (desired, None)
            }
        }
        Busy::Pods(_) => (desired, None),
    }
}

impl Decision {
    /// Whether the busy signal must be read before this decision is final:
    /// the pool has `scaleIn` and the decision is a scale-in. A scale-out or
    /// a hold never waits for it.
    pub fn wants_busy_signal(&self, policy: &Policy) -> bool {
        policy.scale_in.is_some() && self.desired < self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEEP: ScaleInPolicy = ScaleInPolicy {
        keep_busy: true,
        deletion_cost: true,
    };
    const RANK_ONLY: ScaleInPolicy = ScaleInPolicy {
        keep_busy: false,
        deletion_cost: true,
    };

    #[test]
    fn keep_busy_holds_a_scale_in_at_the_busy_count() {
        let (d, l) = keep_busy(1, 6, 10, Some(&KEEP), &Busy::Pods(2));
        assert_eq!((d, l), (2, Some(Limit::KeepBusy { held: 2, busy: 2 })));
        // Fewer busy than the proposal: nothing to hold.
        assert_eq!(keep_busy(3, 6, 10, Some(&KEEP), &Busy::Pods(2)), (3, None));
    }

    #[test]
    fn keep_busy_never_scales_out_nor_past_the_ceiling() {
        // 9 busy of 6 replicas (a stale record, or workers outside the pool): hold 6.
        let (d, _) = keep_busy(1, 6, 10, Some(&KEEP), &Busy::Pods(9));
        assert_eq!(d, 6);
        // Current above a schedule's ceiling of 4: at most 4.
        let (d, _) = keep_busy(4 - 2, 8, 4, Some(&KEEP), &Busy::Pods(8));
        assert_eq!(d, 4);
        // Scale-out and no change are left alone, even when the read failed.
        let failed = Busy::Failed("down".into());
        assert_eq!(keep_busy(7, 6, 10, Some(&KEEP), &failed), (7, None));
        assert_eq!(keep_busy(6, 6, 10, Some(&KEEP), &failed), (6, None));
    }

    #[test]
    fn a_failed_busy_read_holds_whatever_the_pool_asked_for() {
        for p in [KEEP, RANK_ONLY] {
            let (d, l) = keep_busy(1, 6, 10, Some(&p), &Busy::Failed("x".into()));
            assert_eq!((d, l), (6, Some(Limit::BusySignalFailed(6))));
        }
    }

    #[test]
    fn without_keep_busy_or_a_reading_nothing_is_held() {
        assert_eq!(
            keep_busy(1, 6, 10, Some(&RANK_ONLY), &Busy::Pods(5)),
            (1, None)
        );
        assert_eq!(keep_busy(1, 6, 10, Some(&KEEP), &Busy::NotRead), (1, None));
        assert_eq!(keep_busy(1, 6, 10, None, &Busy::Pods(5)), (1, None));
    }
}
