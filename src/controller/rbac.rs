//! Every Kubernetes API call the operator makes, as RBAC rules: the one
//! place the Helm chart's ClusterRole/Role is checked against (see
//! tests/chart.rs). Adding an API call means adding its verb here, and the
//! chart test then fails until the chart grants it.

/// One RBAC rule: verbs on resources of an API group ("" = core).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub api_group: &'static str,
    pub resources: &'static [&'static str],
    pub verbs: &'static [&'static str],
}

/// Rules needed in every watched namespace (a ClusterRole, or a Role per
/// namespace when the operator watches one namespace).
pub const WATCH_RULES: &[Rule] = &[
    // The pools: watched by the Controller; status written by server-side apply.
    Rule {
        api_group: "workerpool.dev",
        resources: &["workerpools"],
        verbs: &["get", "list", "watch"],
    },
    Rule {
        api_group: "workerpool.dev",
        resources: &["workerpools/status"],
        verbs: &["get", "patch"],
    },
    // Scale targets: watched so current replicas come from a cache and a
    // manual change triggers a reconcile; scaled with one PATCH of /scale.
    Rule {
        api_group: "apps",
        resources: &["deployments", "statefulsets"],
        verbs: &["get", "list", "watch"],
    },
    Rule {
        api_group: "apps",
        resources: &["deployments/scale", "statefulsets/scale"],
        verbs: &["get", "patch"],
    },
    // HPAs: watched to refuse fighting one that targets the same object.
    Rule {
        api_group: "autoscaling",
        resources: &["horizontalpodautoscalers"],
        verbs: &["list", "watch"],
    },
    // Secrets named by triggers: read by name, never listed or watched.
    Rule {
        api_group: "",
        resources: &["secrets"],
        verbs: &["get"],
    },
    // Pods of a target with spec.scaleIn: LISTed by the target's selector
    // just before a scale-in (never watched), and their pod-deletion-cost
    // annotation patched (see controller::pods). Granted always: scaleIn is
    // a per-pool choice, and a missing grant would hold every such scale-in.
    Rule {
        api_group: "",
        resources: &["pods"],
        verbs: &["get", "list", "patch"],
    },
    // Events for every scale and every new failure (events.k8s.io/v1,
    // each created once: see controller::events).
    Rule {
        api_group: "events.k8s.io",
        resources: &["events"],
        verbs: &["create"],
    },
];

/// Rules needed in the operator's own namespace for leader election.
pub const LEADER_ELECTION_RULES: &[Rule] = &[Rule {
    api_group: "coordination.k8s.io",
    resources: &["leases"],
    verbs: &["get", "create", "patch"],
}];
