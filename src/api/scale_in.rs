//! `spec.scaleIn`: scale-in that spares busy workers. Before a scale-in the
//! operator asks the workers' framework which pods are busy, keeps at least
//! that many replicas (`keepBusy`) and ranks the busy pods last for deletion
//! (`deletionCost`), so a scale-in removes idle workers, not running work.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::spec::{PrometheusTrigger, Trigger};
use super::validate::{default_trigger_name, err, validate_prometheus, SpecError};
use crate::decision::ScaleInPolicy;

/// How the pool scales in when some of its workers are busy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleIn {
    /// How the operator learns which pods are busy (exactly one source).
    /// Read only when the decision is below the current count; a failed read
    /// holds that scale-in (never a blind one) and never delays a scale-out.
    pub busy_signal: BusySignal,
    /// Default true: before a scale-in of a Deployment, annotate its pods with
    /// `controller.kubernetes.io/pod-deletion-cost` (idle pods 0, a busy pod
    /// its number of busy tasks) so its ReplicaSet removes idle pods first.
    /// StatefulSets always remove the highest ordinal, so only `keepBusy` applies to them.
    #[serde(default = "default_true")]
    pub deletion_cost: bool,
    /// Default true: never scale below the number of busy pods.
    #[serde(default = "default_true")]
    pub keep_busy: bool,
}

fn default_true() -> bool {
    true
}

/// Where the busy pods are read. Each worker's host name must be its pod's
/// name (the default in Kubernetes).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("(has(self.celery) ? 1 : 0) + (has(self.sidekiq) ? 1 : 0) + (has(self.rq) ? 1 : 0) + (has(self.prometheus) ? 1 : 0) == 1").message("exactly one busySignal (celery, sidekiq, rq or prometheus) must be set"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BusySignal {
    /// Celery remote control over the named trigger's broker: the `active`
    /// and `reserved` inspect replies; worker `celery@<pod>` is pod `<pod>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub celery: Option<TriggerRef>,
    /// Sidekiq's process records on the named trigger's Redis (the
    /// `processes` set): each process's hostname and busy count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidekiq: Option<TriggerRef>,
    /// RQ's worker registry on the named trigger's Redis: each worker's
    /// hostname and state (`busy`). With an `rq` trigger, the workers of its
    /// queue; otherwise every registered worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rq: Option<TriggerRef>,
    /// A Prometheus query returning a vector with a `pod` label: busy work per
    /// pod (a sample > 0 is a busy pod). `onEmpty: Zero` reads an empty vector
    /// as "no pod busy"; by default it is an error (a broken query or scrape).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<PrometheusTrigger>,
}

/// A trigger of this pool whose Redis connection (URL, credentials, TLS) the
/// busy signal reuses.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TriggerRef {
    /// The name of a `redis` trigger in `spec.triggers` (its given name, or
    /// the default `redis-<index>`).
    #[schemars(length(min = 1, max = 63))]
    pub trigger: String,
}

/// Which framework a busy signal reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BusySignalKind {
    /// Celery remote control.
    Celery,
    /// Sidekiq process records.
    Sidekiq,
    /// RQ worker registry.
    Rq,
    /// A Prometheus per-pod vector.
    Prometheus,
}

impl BusySignal {
    /// The one signal set, and the trigger it names (None for Prometheus).
    pub fn kind(&self) -> Option<(BusySignalKind, Option<&str>)> {
        fn named(r: &TriggerRef) -> Option<&str> {
            Some(r.trigger.as_str())
        }
        match (&self.celery, &self.sidekiq, &self.rq, &self.prometheus) {
            (Some(r), None, None, None) => Some((BusySignalKind::Celery, named(r))),
            (None, Some(r), None, None) => Some((BusySignalKind::Sidekiq, named(r))),
            (None, None, Some(r), None) => Some((BusySignalKind::Rq, named(r))),
            (None, None, None, Some(_)) => Some((BusySignalKind::Prometheus, None)),
            _ => None,
        }
    }
}

impl ScaleIn {
    /// The Secrets the busy signal names itself (a Redis signal uses its
    /// trigger's, which the trigger names already).
    pub fn secret_names(&self) -> Vec<&str> {
        let Some(p) = &self.busy_signal.prometheus else {
            return Vec::new();
        };
        let bearer = p.bearer_token_secret_ref.iter().map(|s| s.name.as_str());
        let basic = p.basic_auth_secret_ref.iter().map(|s| s.name.as_str());
        bearer.chain(basic).collect()
    }

    /// The index of the trigger a Redis busy signal names, if it names one.
    pub fn trigger_index(&self, triggers: &[Trigger]) -> Option<usize> {
        let (_, name) = self.busy_signal.kind()?;
        let name = name?;
        triggers
            .iter()
            .enumerate()
            .position(|(i, t)| t.name.clone().unwrap_or_else(|| default_trigger_name(t, i)) == name)
    }

    /// Checks what the schema cannot: the trigger a signal names exists and
    /// reads Redis; returns the decision's form.
    pub(super) fn policy(&self, triggers: &[Trigger]) -> Result<ScaleInPolicy, SpecError> {
        let at = "spec.scaleIn.busySignal";
        let Some((kind, name)) = self.busy_signal.kind() else {
            return Err(err(
                at,
                "exactly one busySignal (celery, sidekiq, rq or prometheus) must be set",
            ));
        };
        if let Some(p) = &self.busy_signal.prometheus {
            validate_prometheus(p, &format!("{at}.prometheus"))?;
        }
        if let Some(name) = name {
            let field = format!("{at}.{}.trigger", kind_field(kind));
            let Some(i) = self.trigger_index(triggers) else {
                return Err(err(
                    field,
                    format!("names no trigger of this pool: {name:?}"),
                ));
            };
            if triggers[i].redis.is_none() {
                return Err(err(
                    field,
                    format!(
                        "trigger {name:?} is not a redis trigger; the busy signal reads its Redis"
                    ),
                ));
            }
        }
        if !self.keep_busy && !self.deletion_cost {
            return Err(err(
                "spec.scaleIn",
                "keepBusy and deletionCost are both false: nothing would use the busy signal",
            ));
        }
        Ok(ScaleInPolicy {
            keep_busy: self.keep_busy,
            deletion_cost: self.deletion_cost,
        })
    }
}

/// The field name of a signal kind, for errors.
pub fn kind_field(kind: BusySignalKind) -> &'static str {
    match kind {
        BusySignalKind::Celery => "celery",
        BusySignalKind::Sidekiq => "sidekiq",
        BusySignalKind::Rq => "rq",
        BusySignalKind::Prometheus => "prometheus",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::WorkerPoolSpec;

    fn spec(scale_in: serde_json::Value) -> WorkerPoolSpec {
        serde_json::from_value(serde_json::json!({
            "scaleTargetRef": {"name": "w"},
            "maxReplicas": 10,
            "triggers": [
                {"name": "reports", "redis": {"url": "redis://r:6379", "rq": {"queue": "reports"}}, "targetPerReplica": 1},
                {"prometheus": {"url": "http://p:9090", "query": "up"}, "targetPerReplica": 1},
                {"redis": {"url": "redis://r:6379", "list": "l"}, "targetPerReplica": 1}
            ],
            "scaleIn": scale_in,
        }))
        .unwrap()
    }

    fn error_of(scale_in: serde_json::Value) -> String {
        crate::api::validate(&spec(scale_in))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn defaults_keep_busy_and_deletion_cost() {
        let p = crate::api::validate(&spec(
            serde_json::json!({"busySignal": {"rq": {"trigger": "reports"}}}),
        ))
        .unwrap();
        assert_eq!(
            p.scale_in,
            Some(ScaleInPolicy {
                keep_busy: true,
                deletion_cost: true
            })
        );
        // The default name of the third trigger works too.
        let s = spec(serde_json::json!({"busySignal": {"sidekiq": {"trigger": "redis-2"}}}));
        assert!(crate::api::validate(&s).is_ok());
        assert_eq!(
            s.scale_in.as_ref().unwrap().trigger_index(&s.triggers),
            Some(2)
        );
    }

    #[test]
    fn errors_name_the_field() {
        let e = error_of(serde_json::json!({"busySignal": {"rq": {"trigger": "nope"}}}));
        assert!(
            e.starts_with("spec.scaleIn.busySignal.rq.trigger: names no trigger"),
            "{e}"
        );
        let e =
            error_of(serde_json::json!({"busySignal": {"celery": {"trigger": "prometheus-1"}}}));
        assert!(e.starts_with("spec.scaleIn.busySignal.celery.trigger: trigger \"prometheus-1\" is not a redis trigger"), "{e}");
        let e = error_of(serde_json::json!({"busySignal": {}}));
        assert!(
            e.starts_with("spec.scaleIn.busySignal: exactly one busySignal"),
            "{e}"
        );
        let both = serde_json::json!({"busySignal": {"rq": {"trigger": "reports"}, "sidekiq": {"trigger": "reports"}}});
        assert!(error_of(both).contains("exactly one"));
        let e = error_of(
            serde_json::json!({"busySignal": {"prometheus": {"url": "ftp://p", "query": "x"}}}),
        );
        assert!(
            e.starts_with("spec.scaleIn.busySignal.prometheus.url"),
            "{e}"
        );
        let e = error_of(
            serde_json::json!({"busySignal": {"rq": {"trigger": "reports"}}, "keepBusy": false, "deletionCost": false}),
        );
        assert!(
            e.starts_with("spec.scaleIn: keepBusy and deletionCost"),
            "{e}"
        );
    }
}
