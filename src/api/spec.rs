//! `WorkerPool.spec`: what users write (see docs/architecture.md).

use std::collections::BTreeMap;

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::status::WorkerPoolStatus;

/// A pool of background workers scaled from queue depth and metrics.
// Each printcolumn repeats `type_`, which clippy mistakes for a duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "workerpool.dev",
    version = "v1alpha1",
    kind = "WorkerPool",
    plural = "workerpools",
    shortname = "wp",
    namespaced,
    status = "WorkerPoolStatus",
    derive = "PartialEq",
    doc = "WorkerPool scales a Deployment (or anything with a /scale subresource) from Redis queue depth and Prometheus queries.",
    printcolumn(
        name = "Target",
        type_ = "string",
        json_path = ".spec.scaleTargetRef.name"
    ),
    printcolumn(name = "Mode", type_ = "string", json_path = ".spec.mode"),
    printcolumn(name = "Min", type_ = "integer", json_path = ".spec.minReplicas"),
    printcolumn(name = "Max", type_ = "integer", json_path = ".spec.maxReplicas"),
    printcolumn(
        name = "Current",
        type_ = "integer",
        json_path = ".status.currentReplicas"
    ),
    printcolumn(
        name = "Desired",
        type_ = "integer",
        json_path = ".status.desiredReplicas"
    ),
    printcolumn(
        name = "Active",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Active\")].status"
    ),
    printcolumn(
        name = "Value",
        type_ = "string",
        json_path = ".status.triggers[0].value"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[x_kube(validation = Rule::new("self.maxReplicas >= (self.minReplicas > 1 ? self.minReplicas : 1)").message("maxReplicas must be >= max(1, minReplicas)").field_path(".maxReplicas"))]
#[x_kube(validation = Rule::new("self.triggers.all(t, !has(t.name) || self.triggers.exists_one(u, has(u.name) && u.name == t.name))").message("trigger names must be unique").field_path(".triggers"))]
#[x_kube(validation = Rule::new("!has(self.schedules) || self.schedules.all(s, !has(s.minReplicas) || has(s.maxReplicas) || s.minReplicas <= self.maxReplicas)").message("a schedule's minReplicas must be <= spec.maxReplicas unless the schedule sets its own maxReplicas").field_path(".schedules"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkerPoolSpec {
    /// The workload to scale: anything with a `/scale` subresource.
    pub scale_target_ref: ScaleTargetRef,
    /// `Active` (default) scales the target; `Shadow` reads, decides and
    /// reports what it would do, but never writes to the target.
    #[serde(default)]
    pub mode: super::Mode,
    /// Fewest replicas. 0 enables scale-to-zero after `cooldownSeconds` of inactivity.
    #[serde(default = "default_min_replicas")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub min_replicas: i32,
    /// Most replicas; must be >= max(1, minReplicas).
    #[schemars(range(min = 1, max = 2147483647))]
    pub max_replicas: i32,
    /// How often the triggers are read.
    #[serde(default = "default_polling_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub polling_interval_seconds: i32,
    /// How long every trigger must be inactive before scaling to zero
    /// (only when minReplicas is 0).
    #[serde(default = "default_cooldown")]
    #[schemars(range(min = 0, max = 86400))]
    pub cooldown_seconds: i32,
    /// Stop all writes to the target (also: annotation `workerpool.dev/paused: "true"`).
    #[serde(default)]
    pub paused: bool,
    /// Work signals; desired replicas is the maximum over triggers.
    #[schemars(length(min = 1, max = 16))]
    pub triggers: Vec<Trigger>,
    /// Scale-up/down rate limits and stabilization, as autoscaling/v2 HPA behavior.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub behavior: Option<Behavior>,
    /// What to do when a trigger keeps failing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Fallback>,
    /// Time windows that raise the floor (and may move the ceiling) while open; 0 to 16, unique names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    #[x_kube(validation = Rule::new("self.all(s, self.exists_one(u, u.name == s.name))").message("schedule names must be unique"))]
    pub schedules: Vec<super::Schedule>,
    /// Scale-in that spares busy workers: keep them, and remove idle pods first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_in: Option<Box<super::ScaleIn>>,
}

fn default_min_replicas() -> i32 {
    1
}
fn default_polling_interval() -> i32 {
    5
}
fn default_cooldown() -> i32 {
    300
}

/// Names the scaled workload, as `autoscaling/v2` CrossVersionObjectReference.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScaleTargetRef {
    /// API version of the target; default apps/v1.
    #[serde(default = "default_target_api_version")]
    pub api_version: String,
    /// Kind of the target; default Deployment.
    #[serde(default = "default_target_kind")]
    pub kind: String,
    /// Name of the target in the WorkerPool's namespace.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

fn default_target_api_version() -> String {
    "apps/v1".into()
}
fn default_target_kind() -> String {
    "Deployment".into()
}

/// One work signal. Exactly one source (`redis` or `prometheus`) is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("(has(self.redis) ? 1 : 0) + (has(self.prometheus) ? 1 : 0) == 1").message("exactly one source (redis or prometheus) must be set"))]
#[x_kube(validation = Rule::new("(has(self.targetPerReplica) ? 1 : 0) + (has(self.drain) ? 1 : 0) == 1").message("exactly one of targetPerReplica and drain must be set"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trigger {
    /// Unique name within the pool; default `<type>-<index>` (e.g. `redis-0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$")
    )]
    pub name: Option<String>,
    /// Redis queue depth.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisTrigger>,
    /// A Prometheus instant query.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prometheus: Option<Box<PrometheusTrigger>>,
    /// Work items one replica should hold; > 0. Exactly one of this and `drain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self > 0.0").message("targetPerReplica must be > 0"))]
    pub target_per_replica: Option<f64>,
    /// Replicas so the backlog clears within a time (instead of `targetPerReplica`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drain: Option<Box<super::drain::Drain>>,
    /// The trigger is active when its value is above this.
    #[serde(default)]
    pub activation_threshold: f64,
}

impl Trigger {
    /// The name of every Secret the trigger names (credentials, CA bundles).
    pub fn secret_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        if let Some(r) = &self.redis {
            names.extend(r.password_secret_ref.iter().map(|s| s.name.as_str()));
            names.extend(r.username_secret_ref.iter().map(|s| s.name.as_str()));
            let ca = r.tls.iter().flat_map(|t| t.ca_secret_ref.iter());
            names.extend(ca.map(|s| s.name.as_str()));
            if let Some(s) = &r.sentinel {
                let refs = [
                    &s.sentinel_password_secret_ref,
                    &s.sentinel_username_secret_ref,
                ];
                names.extend(refs.into_iter().flatten().map(|r| r.name.as_str()));
            }
        }
        if let Some(p) = &self.prometheus {
            names.extend(p.bearer_token_secret_ref.iter().map(|s| s.name.as_str()));
            names.extend(p.basic_auth_secret_ref.iter().map(|s| s.name.as_str()));
        }
        names
    }
}

/// Where a Secret's key lives (in the WorkerPool's namespace).
#[derive(
    KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord,
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretKeyRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
    /// Key within the Secret's data.
    #[schemars(length(min = 1, max = 253))]
    pub key: String,
}

/// A whole Secret (in the WorkerPool's namespace).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// Redis queue depth. Exactly one measure is set.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("(has(self.list) ? 1 : 0) + (has(self.lists) ? 1 : 0) + (has(self.celery) ? 1 : 0) + (has(self.stream) ? 1 : 0) + (has(self.sortedSet) ? 1 : 0) + (has(self.rq) ? 1 : 0) + (has(self.arq) ? 1 : 0) + (has(self.huey) ? 1 : 0) + (has(self.dramatiq) ? 1 : 0) + (has(self.sidekiq) ? 1 : 0) + (has(self.bullmq) ? 1 : 0) == 1").message("exactly one of list, lists, celery, stream, sortedSet, rq, arq, huey, dramatiq, sidekiq, bullmq must be set"))]
#[x_kube(validation = Rule::new("(has(self.url) ? 1 : 0) + (has(self.sentinel) ? 1 : 0) + (has(self.cluster) ? 1 : 0) == 1").message("exactly one of url, sentinel, cluster must be set"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisTrigger {
    /// `redis://host:port/db` or `rediss://` for TLS (one server; or use `sentinel` or `cluster`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^rediss?://"))]
    pub url: Option<String>,
    /// The master is found through Redis Sentinel (instead of `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentinel: Option<Box<super::topology::RedisSentinel>>,
    /// The keys are read across a Redis Cluster (instead of `url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<super::topology::RedisCluster>,
    /// Password for AUTH, from a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_ref: Option<Box<SecretKeyRef>>,
    /// ACL user name, from a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_secret_ref: Option<Box<SecretKeyRef>>,
    /// TLS settings for `rediss://` URLs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<Box<RedisTls>>,
    /// LLEN of one list (a missing key is an empty list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1))]
    pub list: Option<String>,
    /// Sum of LLENs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    pub lists: Option<Vec<String>>,
    /// A Celery queue on kombu's Redis transport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub celery: Option<CeleryMeasure>,
    /// A Redis stream (consumer group lag/pending, or length).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream: Option<Box<StreamMeasure>>,
    /// A sorted set (delayed jobs): ZCARD, or due entries only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sorted_set: Option<SortedSetMeasure>,
    /// A Python RQ queue: waiting, taken and started, due scheduled jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rq: Option<Box<super::frameworks::RqMeasure>>,
    /// An arq queue: waiting, running and retrying jobs that are due.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arq: Option<Box<super::frameworks::ArqMeasure>>,
    /// A Huey queue: queued tasks and due scheduled ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub huey: Option<Box<super::frameworks::HueyMeasure>>,
    /// A Dramatiq queue: queued, fetched by workers, due delayed and due retried messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dramatiq: Option<Box<super::dramatiq::DramatiqMeasure>>,
    /// A Sidekiq queue: enqueued, running, due scheduled and due retried jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidekiq: Option<Box<super::sidekiq::SidekiqMeasure>>,
    /// A BullMQ queue: waiting, active, and due delayed and retrying jobs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bullmq: Option<Box<super::bullmq::BullMqMeasure>>,
}

/// TLS settings for `rediss://`. With `sentinel` or `cluster` (no URL scheme to
/// say it), TLS is on when `tls` is set at all: `tls: {}` means TLS with the system roots.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedisTls {
    /// Skip server certificate verification (testing only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// PEM CA bundle to verify the server with, instead of the system roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_secret_ref: Option<SecretKeyRef>,
}

/// Celery queue depth: the queue list plus kombu's priority lists.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CeleryMeasure {
    /// Celery queue name (the task's `queue`; Celery's default is `celery`).
    #[schemars(length(min = 1))]
    pub queue: String,
    /// Also count tasks workers have prefetched but not acknowledged
    /// (kombu's `unacked` hash); default true, because prefetch hides them from LLEN.
    #[serde(default = "default_true")]
    pub include_in_flight: bool,
}

fn default_true() -> bool {
    true
}

/// Which number of a stream to read.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum StreamMeasureKind {
    /// Entries not yet delivered to the group (`XINFO GROUPS` lag; Redis >= 7).
    #[default]
    Lag,
    /// Entries delivered but not acknowledged (`XINFO GROUPS` pending).
    Pending,
    /// All entries in the stream (`XLEN`).
    Length,
}

/// A Redis stream measure.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("self.measure == 'Length' || has(self.group)").message("group is required unless measure is Length"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StreamMeasure {
    /// Key of the stream.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Consumer group; required for Lag and Pending.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Which number to read: Lag (default), Pending or Length.
    #[serde(default)]
    pub measure: StreamMeasureKind,
}

/// A sorted set of scheduled jobs (score = due time in unix seconds).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SortedSetMeasure {
    /// Key of the sorted set.
    #[schemars(length(min = 1))]
    pub name: String,
    /// Count only entries with score <= now (ZCOUNT -inf now); else ZCARD.
    #[serde(default)]
    pub due_only: bool,
}

/// What an empty Prometheus result means.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum OnEmpty {
    /// An empty result is an error: usually a broken query or scrape, not "no work".
    #[default]
    Error,
    /// An empty result is 0.
    Zero,
}

/// A Prometheus instant query whose result is one number.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PrometheusTrigger {
    /// Base URL of the Prometheus HTTP API, e.g. `http://prometheus:9090`.
    #[schemars(length(min = 1, max = 2048), regex(pattern = r"^https?://"))]
    pub url: String,
    /// PromQL returning a scalar or a single-sample vector.
    #[schemars(length(min = 1, max = 16384))]
    pub query: String,
    /// Bearer token sent as `Authorization: Bearer`, from a Secret key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bearer_token_secret_ref: Option<SecretKeyRef>,
    /// A Secret with keys `username` and `password`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth_secret_ref: Option<SecretRef>,
    /// Extra request headers, e.g. `X-Scope-OrgID`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// What an empty result means: Error (default) or Zero.
    #[serde(default)]
    pub on_empty: OnEmpty,
}

/// Scaling behavior, with the meaning of autoscaling/v2 `HorizontalPodAutoscalerBehavior`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Behavior {
    /// Default: no stabilization; Percent 100/15s and Pods 4/15s, Max.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_up: Option<ScalingRules>,
    /// Default: 300 s stabilization; Percent 100/15s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_down: Option<ScalingRules>,
    /// Ratio change ignored around the current count; default 0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub tolerance: Option<f64>,
}

/// One direction's rules, as autoscaling/v2 `HPAScalingRules`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingRules {
    /// Seconds of past recommendations considered: scale-up takes their
    /// lowest, scale-down their highest, so a brief spike or dip is ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 3600))]
    pub stabilization_window_seconds: Option<i32>,
    /// Which policy applies when several allow different changes: Max (default), Min or Disabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub select_policy: Option<SelectPolicy>,
    /// Limits on how fast replicas may change in this direction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 10))]
    pub policies: Option<Vec<ScalingPolicy>>,
}

/// Which policy wins when several allow different changes.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum SelectPolicy {
    /// The policy allowing the largest change.
    #[default]
    Max,
    /// The policy allowing the smallest change.
    Min,
    /// No scaling in this direction.
    Disabled,
}

/// Pods or Percent.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PolicyType {
    /// A number of pods.
    Pods,
    /// A percentage of the current replicas.
    Percent,
}

/// At most `value` pods (or percent) of change per `periodSeconds`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ScalingPolicy {
    /// Pods (a number of replicas) or Percent (of the current replicas).
    #[serde(rename = "type")]
    pub type_: PolicyType,
    /// The most change allowed per period, in pods or percent; > 0.
    #[schemars(range(min = 1, max = 2147483647))]
    pub value: i32,
    /// Length of the window the change is counted over, in seconds (1-1800).
    #[schemars(range(min = 1, max = 1800))]
    pub period_seconds: i32,
}

/// Replicas to run while a trigger keeps failing.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Fallback {
    /// Consecutive failed polls of a trigger before the fallback applies.
    #[serde(default = "default_failure_threshold")]
    #[schemars(range(min = 1, max = 1000))]
    pub failure_threshold: i32,
    /// Replicas to run (clamped to min/max; never below current). Unset: hold current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 2147483647))]
    pub replicas: Option<i32>,
}

fn default_failure_threshold() -> i32 {
    3
}
