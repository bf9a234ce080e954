//! The validated, defaulted form of a WorkerPool spec that the decision reads.
//!
//! Built once per spec generation by [`crate::api::validate`]; everything
//! after that trusts it (parse at the edge, as Linkerd's policy controller does).

pub use crate::api::{PolicyType, SelectPolicy};

/// Everything the decision needs from a spec, with HPA defaults applied.
#[derive(Clone, Debug, PartialEq)]
pub struct Policy {
    /// Fewest replicas.
    pub min_replicas: i32,
    /// Most replicas.
    pub max_replicas: i32,
    /// How long every trigger must be inactive before scaling to zero.
    pub cooldown_ms: i64,
    /// The triggers, in the spec's order.
    pub triggers: Vec<TriggerPolicy>,
    /// Scale-up behavior (HPA `behavior.scaleUp`).
    pub scale_up: Rules,
    /// Scale-down behavior (HPA `behavior.scaleDown`).
    pub scale_down: Rules,
    /// HPA's tolerance: a ratio this close to 1 proposes the current count.
    pub tolerance: f64,
    /// What to do when a trigger keeps failing.
    pub fallback: Option<FallbackPolicy>,
    /// Time windows that move the bounds while open (`spec.schedules`).
    pub schedules: Vec<super::schedule::Window>,
    /// Scale-in that spares busy workers (`spec.scaleIn`).
    pub scale_in: Option<ScaleInPolicy>,
}

/// What `spec.scaleIn` asks of a scale-in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScaleInPolicy {
    /// Never scale below the number of busy pods.
    pub keep_busy: bool,
    /// Rank busy pods last for deletion (Deployments only; not the decision's concern).
    pub deletion_cost: bool,
}

/// One trigger's scaling parameters (its source lives in the spec).
#[derive(Clone, Debug, PartialEq)]
pub struct TriggerPolicy {
    /// The trigger's name (given, or `<type>-<index>`).
    pub name: String,
    /// Items one replica should hold. For a drain trigger (unused by the
    /// decision): the items one replica clears within `drain.seconds`, or
    /// `drain.seconds` when the throughput is measured.
    pub target_per_replica: f64,
    /// Active when the value is above this.
    pub activation_threshold: f64,
    /// Size by drain time instead of `target_per_replica`.
    pub drain: Option<super::DrainPolicy>,
}

/// One direction's behavior, as autoscaling/v2 `HPAScalingRules` after defaulting.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// The stabilization window.
    pub stabilization_window_ms: i64,
    /// Which policy's limit wins (HPA `selectPolicy`).
    pub select_policy: SelectPolicy,
    /// The rate policies.
    pub policies: Vec<RatePolicy>,
}

/// At most `value` pods (or percent) of change per `period_ms`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RatePolicy {
    /// Pods or Percent.
    pub kind: PolicyType,
    /// How many pods (or percent) per period.
    pub value: i32,
    /// The period the change is counted over.
    pub period_ms: i64,
}

/// Replicas to run while a trigger keeps failing.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FallbackPolicy {
    /// Failed polls in a row before the fallback applies.
    pub failure_threshold: u32,
    /// Replicas during the fallback (None: hold the current count).
    pub replicas: Option<i32>,
}

impl Rules {
    /// HPA's default scale-up rules (`GenerateHPAScaleUpRules`): no window,
    /// Percent 100/15s and Pods 4/15s, Max.
    pub fn default_scale_up() -> Self {
        Rules {
            stabilization_window_ms: 0,
            select_policy: SelectPolicy::Max,
            policies: vec![
                RatePolicy {
                    kind: PolicyType::Percent,
                    value: 100,
                    period_ms: 15_000,
                },
                RatePolicy {
                    kind: PolicyType::Pods,
                    value: 4,
                    period_ms: 15_000,
                },
            ],
        }
    }

    /// HPA's default scale-down rules (`GenerateHPAScaleDownRules`): 300 s
    /// window, Percent 100/15s.
    pub fn default_scale_down() -> Self {
        Rules {
            stabilization_window_ms: 300_000,
            select_policy: SelectPolicy::Max,
            policies: vec![RatePolicy {
                kind: PolicyType::Percent,
                value: 100,
                period_ms: 15_000,
            }],
        }
    }

    /// Longest `periodSeconds` among the policies (HPA's `getLongestPolicyPeriod`).
    pub fn longest_period_ms(&self) -> i64 {
        self.policies.iter().map(|p| p.period_ms).max().unwrap_or(0)
    }
}

impl Policy {
    /// How far back the history must reach for every window and policy.
    pub fn history_horizon_ms(&self) -> i64 {
        [
            self.scale_up.stabilization_window_ms,
            self.scale_down.stabilization_window_ms,
            self.scale_up.longest_period_ms(),
            self.scale_down.longest_period_ms(),
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }
}
