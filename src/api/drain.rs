//! `trigger.drain`: size the pool so the backlog clears within a time, instead
//! of by a fixed number of items per replica.
//!
//! The trigger's value must be a backlog (items waiting). That is checked for
//! Redis measures by construction; a Prometheus trigger may use `drain` too,
//! and then its query is trusted to return a backlog (the operator cannot tell
//! a queue length from a rate).

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::spec::PrometheusTrigger;
use super::validate::{err, validate_prometheus, SpecError};
use crate::decision::{DrainPolicy, Throughput};

/// Longest drain time accepted: one day. A longer promise is not a latency
/// target any more, and its proposals would round to the minimum.
pub const MAX_DRAIN_SECONDS: i32 = 86_400;

/// Longest arrival-rate window: one hour, like the longest behavior period.
pub const MAX_RATE_WINDOW_SECONDS: i32 = 3_600;

/// Replicas so that the backlog clears within `seconds` while new work keeps
/// arriving: `ceil((arrivalRate + backlog / seconds) / throughputPerReplica)`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("(has(self.throughputPerReplica) ? 1 : 0) + (has(self.throughputFrom) ? 1 : 0) == 1").message("exactly one of throughputPerReplica and throughputFrom must be set"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Drain {
    /// The backlog should clear within this many seconds (1..86400): the
    /// longest an item should wait when the pool has its proposed size.
    #[schemars(range(min = 1, max = 86400))]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 86400").message("drain.seconds must be in 1..86400"))]
    pub seconds: i32,
    /// Items per second one replica completes; > 0. Replicas are assumed to
    /// work at this rate whenever the backlog is not empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0").message("drain.throughputPerReplica must be > 0"))]
    pub throughput_per_replica: Option<f64>,
    /// Where to read the measured total completions per second of the whole
    /// pool (instead of `throughputPerReplica`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throughput_from: Option<ThroughputFrom>,
    /// Window of the arrival-rate estimate in seconds (5..3600, default 60):
    /// longer is steadier, shorter reacts faster to a burst.
    #[serde(default = "default_rate_window")]
    #[schemars(range(min = 5, max = 3600))]
    pub rate_window_seconds: i32,
}

fn default_rate_window() -> i32 {
    60
}

/// A measured throughput: total items per second the pool completes.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ThroughputFrom {
    /// A Prometheus instant query returning completions per second of the
    /// whole pool, e.g. `sum(rate(celery_tasks_succeeded_total{queue="payments"}[1m]))`.
    /// Read on every poll next to the trigger's value; a failed read counts as
    /// a failed read of the trigger.
    pub prometheus: PrometheusTrigger,
}

impl Drain {
    /// Checks what the schema cannot (or what a manifest file skipped) and
    /// returns the decision's form; `at` is the field path of this `drain`.
    pub(super) fn policy(&self, at: &str) -> Result<DrainPolicy, SpecError> {
        if !(1..=MAX_DRAIN_SECONDS).contains(&self.seconds) {
            return Err(err(
                format!("{at}.seconds"),
                format!("must be in 1..{MAX_DRAIN_SECONDS}, got {}", self.seconds),
            ));
        }
        if !(5..=MAX_RATE_WINDOW_SECONDS).contains(&self.rate_window_seconds) {
            return Err(err(
                format!("{at}.rateWindowSeconds"),
                format!(
                    "must be in 5..{MAX_RATE_WINDOW_SECONDS}, got {}",
                    self.rate_window_seconds
                ),
            ));
        }
        let throughput = match (self.throughput_per_replica, &self.throughput_from) {
            (Some(t), None) if t.is_finite() && t > 0.0 => Throughput::PerReplica(t),
            (Some(t), None) => {
                return Err(err(
                    format!("{at}.throughputPerReplica"),
                    format!("must be a number > 0, got {t}"),
                ))
            }
            (None, Some(from)) => {
                validate_prometheus(&from.prometheus, &format!("{at}.throughputFrom.prometheus"))?;
                Throughput::Measured
            }
            _ => {
                return Err(err(
                    at,
                    "exactly one of throughputPerReplica and throughputFrom must be set",
                ))
            }
        };
        Ok(DrainPolicy {
            seconds: f64::from(self.seconds),
            throughput,
            rate_window_ms: i64::from(self.rate_window_seconds) * 1000,
        })
    }
}
