//! The queue-framework measures of a Redis trigger (`rq`, ...): each counts
//! one queue of a task framework on the framework's own key layout, where a
//! plain `LLEN` would miss the jobs the framework keeps elsewhere.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

use super::validate::SpecError;

/// A kind of job a framework measure counts. The same words for every
/// framework; a framework that does not record a kind rejects it.
#[derive(schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Ready to run and no worker holds it.
    Waiting,
    /// A worker holds it (taken from the queue, reserved or running) and it is not finished.
    InFlight,
    /// Delayed or scheduled, and its due time has passed (a scheduler releases it now);
    /// future-dated jobs are never counted.
    Scheduled,
    /// Waiting to be retried, and its retry time has passed.
    Retrying,
}

/// Which number of the queue a framework measure reports.
#[derive(
    schemars::JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default,
)]
pub enum FrameworkMeasureKind {
    /// How many jobs of the kinds in `include`.
    #[default]
    Count,
    /// Seconds since the job at the head of the queue (the next to run) was enqueued;
    /// 0 for an empty queue. Only where the framework stores an enqueue time.
    OldestAgeSeconds,
}

/// A Python RQ queue (RQ 3.0 key layout: `rq:queue:<queue>`, its
/// `:intermediate` list, the `rq:wip:<queue>` and `rq:scheduled:<queue>` registries).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.include) || !self.include.exists(i, i == 'Retrying')").message("rq.include: RQ keeps retries that wait an interval in its scheduled registry: include Scheduled instead of Retrying").field_path(".include"))]
#[x_kube(validation = Rule::new("self.measure != 'OldestAgeSeconds' || !has(self.include)").message("include applies to measure Count only").field_path(".include"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RqMeasure {
    /// The queue's name as given to `rq.Queue(name)`, e.g. `default`.
    #[schemars(length(min = 1, max = 512))]
    pub queue: String,
    /// Which jobs to count (measure Count): Waiting (the queue list), InFlight
    /// (taken by a worker: its intermediate list plus the started registry),
    /// Scheduled (due entries of the scheduled registry, including retries
    /// waiting out an interval). Default: Waiting and InFlight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4))]
    pub include: Option<Vec<JobState>>,
    /// Count (default), or OldestAgeSeconds: the age of the job at the head
    /// of the queue, from its `enqueued_at`.
    #[serde(default)]
    pub measure: FrameworkMeasureKind,
}

/// An arq queue (arq 0.28 key layout: the sorted set `<queueName>` of job
/// ids scored by due time in ms, `arq:in-progress:<id>`, `arq:retry:<id>`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.include) || !self.include.exists(i, i == 'Scheduled')").message("arq.include: arq keeps a due deferred job exactly like an immediate one (both Waiting): include Waiting instead of Scheduled").field_path(".include"))]
#[x_kube(validation = Rule::new("self.measure == 'Count'").message("arq.measure: arq stores the enqueue time only inside its pickled job, so only Count is supported").field_path(".measure"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArqMeasure {
    /// The queue's sorted set, as `queue_name` in arq's `WorkerSettings`
    /// and `enqueue_job(_queue_name=...)`; default `arq:queue`.
    #[serde(default = "default_arq_queue")]
    #[schemars(length(min = 1, max = 512))]
    pub queue_name: String,
    /// Which jobs to count: Waiting (due, no worker holds it, never tried),
    /// InFlight (due and a worker runs it: `arq:in-progress:<id>`), Retrying
    /// (due again after a failed try raised Retry: `arq:retry:<id>`, not in
    /// progress). Default: all three, every due job, one ZCOUNT per poll;
    /// any other list looks up two keys per due job (refused above 10,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4))]
    pub include: Option<Vec<JobState>>,
    /// Count (the only one arq allows).
    #[serde(default)]
    pub measure: FrameworkMeasureKind,
}

/// A Huey queue on `RedisHuey` (Huey 3.5 key layout: the list
/// `huey.redis.<name>`, or a sorted set with `PriorityRedisHuey`, and the
/// schedule `huey.schedule.<name>`).
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[x_kube(validation = Rule::new("!has(self.include) || !self.include.exists(i, i == 'InFlight' || i == 'Retrying')").message("huey.include: Huey keeps no record of running tasks, and retries wait in its schedule: include Waiting and/or Scheduled").field_path(".include"))]
#[x_kube(validation = Rule::new("self.measure == 'Count'").message("huey.measure: Huey stores the enqueue time only inside its pickled task, so only Count is supported").field_path(".measure"))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HueyMeasure {
    /// The Huey instance's name (`RedisHuey(name)`), before Huey removes
    /// every character outside `[A-Za-z0-9_]` from it; default `huey`.
    #[serde(default = "default_huey_name")]
    #[schemars(length(min = 1, max = 512))]
    pub name: String,
    /// Which tasks to count: Waiting (the queue) and Scheduled (due tasks in
    /// the schedule, including retries waiting out `retry_delay`). Default: Waiting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4))]
    pub include: Option<Vec<JobState>>,
    /// Count (the only one Huey allows).
    #[serde(default)]
    pub measure: FrameworkMeasureKind,
}

fn default_huey_name() -> String {
    "huey".into()
}

fn default_arq_queue() -> String {
    "arq:queue".into()
}

/// The include list a measure uses: the one given, else Waiting and
/// InFlight where the framework records in-flight work.
pub fn included(include: &Option<Vec<JobState>>) -> Vec<JobState> {
    include
        .clone()
        .unwrap_or_else(|| vec![JobState::Waiting, JobState::InFlight])
}

/// arq's include list: the one given, else every due job (Waiting,
/// InFlight and Retrying share one sorted set, so counting them together
/// is one ZCOUNT, and telling them apart costs look-ups per job).
pub fn included_arq(include: &Option<Vec<JobState>>) -> Vec<JobState> {
    include
        .clone()
        .unwrap_or_else(|| vec![JobState::Waiting, JobState::InFlight, JobState::Retrying])
}

/// The include list of a framework that records no in-flight work: the
/// one given, else Waiting.
pub fn included_without_in_flight(include: &Option<Vec<JobState>>) -> Vec<JobState> {
    include.clone().unwrap_or_else(|| vec![JobState::Waiting])
}

/// The operator's own check of the framework measures (the CRD's rules
/// again, for manifests read from files), `at` being the trigger's path.
pub(super) fn validate_frameworks(r: &super::RedisTrigger, at: &str) -> Result<(), SpecError> {
    let bad = |f: &str, m: &str| SpecError {
        field: format!("{at}.{f}"),
        message: m.to_string(),
    };
    if let Some(q) = &r.rq {
        if q.queue.is_empty() {
            return Err(bad("rq.queue", "must not be empty"));
        }
        check_include(&q.include, q.measure, "rq", &[JobState::Retrying])
            .map_err(|m| bad("rq.include", &m))?;
    }
    if let Some(q) = &r.arq {
        if q.queue_name.is_empty() {
            return Err(bad("arq.queueName", "must not be empty"));
        }
        if q.measure != FrameworkMeasureKind::Count {
            return Err(bad(
                "arq.measure",
                "arq stores no readable enqueue time: only Count",
            ));
        }
        check_include(&q.include, q.measure, "arq", &[JobState::Scheduled])
            .map_err(|m| bad("arq.include", &m))?;
    }
    if let Some(h) = &r.huey {
        if h.name.is_empty() {
            return Err(bad("huey.name", "must not be empty"));
        }
        if h.measure != FrameworkMeasureKind::Count {
            return Err(bad(
                "huey.measure",
                "Huey stores no readable enqueue time: only Count",
            ));
        }
        check_include(
            &h.include,
            h.measure,
            "Huey",
            &[JobState::InFlight, JobState::Retrying],
        )
        .map_err(|m| bad("huey.include", &m))?;
    }
    Ok(())
}

/// An include list's own rules: not empty, and none of `unsupported`
/// (kinds the framework does not record), and only for measure Count.
pub(super) fn check_include(
    include: &Option<Vec<JobState>>,
    measure: FrameworkMeasureKind,
    framework: &str,
    unsupported: &[JobState],
) -> Result<(), String> {
    let Some(list) = include else {
        return Ok(());
    };
    if measure != FrameworkMeasureKind::Count {
        return Err("applies to measure Count only".into());
    }
    if list.is_empty() {
        return Err("must name at least one of Waiting, InFlight, Scheduled, Retrying".into());
    }
    match list.iter().find(|s| unsupported.contains(s)) {
        Some(s) => Err(format!(
            "{framework} does not record {s:?} jobs apart from others"
        )),
        None => Ok(()),
    }
}
