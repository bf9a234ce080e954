//! One poll of one WorkerPool: read the target and the triggers, decide,
//! scale, remember, report. Level-triggered and idempotent: a scale sets an
//! absolute count, so a retried poll can never apply a change twice.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::runtime::reflector::ObjectRef;
use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::context::{Context, PoolState, Prepared, TargetKey};
use super::error::{Error, Result};
use super::secrets::{self, NamespacedSecrets};
use super::status::{self, Cond, ACTIVE, METRICS_AVAILABLE, PAUSED, READY, SCALING_LIMITED};
use super::target::{self, TargetState};
use crate::api::{validate, TriggerStatus, WorkerPool, WorkerPoolStatus, PAUSE_ANNOTATION};
use crate::decision::{decide, Decision, History, Limit, Reading, ScaleEventKind};
use crate::runtime::metrics::{ErrorLabels, PoolLabels, ScaleLabels, TriggerLabels};
use crate::sources::{read_timeout, SourceError};

/// The Controller's reconcile function.
pub async fn reconcile(pool: Arc<WorkerPool>, ctx: Arc<Context>) -> Result<Action> {
    let started = Instant::now();
    let namespace = pool.namespace().ok_or(Error::NoNamespace)?;
    let key = ObjectRef::from_obj(&*pool);
    let state = ctx.state(&key);
    let mut st = state.lock().await;
    let result = Poll {
        pool: &pool,
        ns: &namespace,
        name: pool.name_any(),
        key: &key,
        ctx: &ctx,
    }
    .run(&mut st)
    .await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    match &result {
        Ok(_) => st.errors = 0,
        Err(e) => {
            st.errors = st.errors.saturating_add(1);
            warn!(workerpool = %pool.name_any(), namespace = %namespace, error = %e, "reconcile failed");
        }
    }
    result
}

/// Polls are due on shared 100 ms slots, so the reads of pools polled in
/// the same slot reach each Redis endpoint together and leave as one
/// pipeline (see `sources::redis`): round trips per second stay near ten per
/// endpoint instead of one per pool. Costs at most one slot of reaction time.
const POLL_SLOT: Duration = Duration::from_millis(100);

fn on_slot(t: Instant) -> Instant {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    let since = t.saturating_duration_since(epoch).as_nanos();
    let slot = POLL_SLOT.as_nanos();
    let rounded = since.div_ceil(slot) * slot;
    epoch + Duration::from_nanos(u64::try_from(rounded).unwrap_or(u64::MAX))
}

/// The resync period of one pool's status: `base` plus up to 20 % picked by
/// the pool's name, so pools created together do not all rewrite their
/// status in the same second forever after.
fn resync_period(base: Duration, key: &ObjectRef<WorkerPool>) -> Duration {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    base + base.mul_f64((h.finish() % 1000) as f64 / 5000.0)
}

/// Backoff with jitter for failed reconciles: 1 s doubling to 16 s, ±25 %
/// (short enough that a pool resumes within seconds of the API returning).
pub fn error_policy(pool: Arc<WorkerPool>, _err: &Error, ctx: Arc<Context>) -> Action {
    let errors = ctx
        .state(&ObjectRef::from_obj(&*pool))
        .try_lock()
        .map(|s| s.errors)
        .unwrap_or(1);
    let base = Duration::from_secs(1u64 << errors.clamp(1, 5).saturating_sub(1));
    let nanos = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    );
    let jitter = 0.75 + (nanos % 1000) as f64 / 2000.0;
    Action::requeue(base.mul_f64(jitter))
}

struct Poll<'a> {
    pool: &'a WorkerPool,
    ns: &'a str,
    name: String,
    key: &'a ObjectRef<WorkerPool>,
    ctx: &'a Context,
}

impl Poll<'_> {
    async fn run(&self, st: &mut PoolState) -> Result<Action> {
        let ctx = self.ctx;
        let spec = &self.pool.spec;
        let generation = self.pool.metadata.generation;

        // 1. Parse and build once per generation (and per Secret version).
        let secret_names = referenced_secrets(self.pool);
        let versions = secrets::versions(&ctx.secrets, self.ns, &secret_names);
        let fresh = st
            .prepared
            .as_ref()
            .is_none_or(|p| p.generation != generation || p.secret_versions != versions);
        if fresh {
            st.prepared = None;
            match self.prepare(versions).await {
                Ok(p) => {
                    let tkey = TargetKey {
                        namespace: self.ns.to_string(),
                        kind: spec.scale_target_ref.kind.clone(),
                        name: spec.scale_target_ref.name.clone(),
                    };
                    if st.indexed_target.as_ref() != Some(&tkey) {
                        ctx.index_target(st.indexed_target.as_ref(), tkey.clone(), self.key);
                        st.indexed_target = Some(tkey);
                    }
                    st.prepared = Some(p);
                }
                Err((reason, message)) => {
                    return self
                        .stand_down(st, reason, &message, EventType::Warning)
                        .await;
                }
            }
        }
        let Some(prepared) = st.prepared.as_ref() else {
            return Ok(Action::requeue(ctx.settings.retry_delay));
        };
        let polling = prepared.polling;
        let policy = prepared.policy.clone();
        let sources = prepared.sources.clone();
        let resolved = prepared.resolved.clone();

        if !ctx.is_leader() {
            // Standbys keep nothing warm but the parsed spec: a new leader
            // loads the decision's memory from status.
            st.history = None;
            st.next_due = None;
            return Ok(Action::requeue(polling));
        }

        // 2. Paused: no writes to the target.
        let paused = spec.paused
            || self
                .pool
                .annotations()
                .get(PAUSE_ANNOTATION)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if paused {
            st.next_due = None;
            let conds = vec![
                Cond::new(
                    READY,
                    true,
                    "Paused",
                    "pool is paused; the target is not scaled",
                ),
                Cond::new(
                    PAUSED,
                    true,
                    "Paused",
                    if spec.paused {
                        "spec.paused is true"
                    } else {
                        "annotation workerpool.dev/paused is \"true\""
                    },
                ),
            ];
            let mut status = self.base_status();
            status.conditions =
                status::conditions(&conds, self.prev_conditions(), generation, Timestamp::now());
            self.maybe_write_status(st, status).await?;
            return Ok(Action::requeue(polling));
        }

        // 3. Woken early (a watched target changed, or our own status write):
        //    poll only if the target moved away from what we expect.
        let now = Instant::now();
        let target_state = match target::from_cache(
            &spec.scale_target_ref,
            self.ns,
            &ctx.deployments,
            &ctx.statefulsets,
        ) {
            Some(s) => s,
            None => match resolved.as_ref() {
                Some(ar) => {
                    target::get_scale(&ctx.client, ar, self.ns, &spec.scale_target_ref.name).await?
                }
                None => TargetState::NotFound,
            },
        };
        let current = match &target_state {
            TargetState::Found {
                replicas,
                resource_version,
                ..
            } => match (&st.patched_over, st.expected_replicas) {
                (Some(over), Some(expected)) if resource_version.as_ref() == Some(over) => expected,
                _ => {
                    st.patched_over = None;
                    *replicas
                }
            },
            TargetState::NotFound => {
                st.next_due = None;
                st.expected_replicas = None;
                let r = &spec.scale_target_ref;
                let msg = format!(
                    "{} {}/{} ({}) not found",
                    r.kind, self.ns, r.name, r.api_version
                );
                return self
                    .stand_down(st, "TargetNotFound", &msg, EventType::Warning)
                    .await;
            }
        };
        if let Some(due) = st.next_due {
            if !fresh && now < due && st.expected_replicas == Some(current) {
                return Ok(Action::requeue(due - now));
            }
        }

        // 4. Fight nobody: an HPA on the same target wins.
        if let Some(hpa) = target::conflicting_hpa(&ctx.hpas, self.ns, &spec.scale_target_ref) {
            st.next_due = None;
            let msg = format!(
                "HorizontalPodAutoscaler {}/{} also scales {} {}; not scaling it",
                self.ns, hpa, spec.scale_target_ref.kind, spec.scale_target_ref.name
            );
            return self
                .stand_down(st, "ConflictingHPA", &msg, EventType::Warning)
                .await;
        }

        // 5. The decision's memory: from status on first sight, rebuilt with
        //    what the target shows (a scale whose status write was lost).
        let now_ms = Utc::now().timestamp_millis();
        let history = st
            .history
            .get_or_insert_with(|| restore_history(self.pool, current, now_ms));

        // 6. Read every trigger concurrently.
        let lag = st
            .next_due
            .map_or(0.0, |due| now.saturating_duration_since(due).as_secs_f64());
        ctx.metrics.poll_lag.observe(lag);
        let results = futures::future::join_all(sources.iter().map(|s| s.read())).await;
        let readings: Vec<Reading> = results.iter().map(Reading::of).collect();

        // 7. Decide, and scale.
        let d = decide(&policy, now_ms, current, &readings, history);
        let mut applied = false;
        if d.desired != current {
            if let Err(e) = target::patch_scale(
                &ctx.client,
                &spec.scale_target_ref,
                resolved.as_ref(),
                self.ns,
                d.desired,
            )
            .await
            {
                let target = format!(
                    "{} {}/{}",
                    spec.scale_target_ref.kind, self.ns, spec.scale_target_ref.name
                );
                let msg = format!("scaling {target} from {current} to {}: {e}", d.desired);
                // One Event per failure episode, not one per retry.
                if st.last_warning.as_deref() != Some(msg.as_str()) {
                    self.publish_note(EventType::Warning, "ScaleFailed", &msg)
                        .await;
                    st.last_warning = Some(msg);
                }
                return Err(Error::Scale { target, source: e });
            }
            applied = true;
            st.patched_over = match &target_state {
                TargetState::Found {
                    resource_version, ..
                } => resource_version.clone(),
                TargetState::NotFound => None,
            };
            let direction = if d.desired > current { "up" } else { "down" };
            ctx.metrics
                .scales
                .get_or_create(&ScaleLabels {
                    namespace: self.ns.into(),
                    workerpool: self.name.clone(),
                    direction,
                })
                .inc();
        }
        history.commit(&policy, &d, now_ms, applied);
        ctx.metrics.polls.inc();
        // A line per decision that changes something; the steady state at
        // 1 s polling over thousands of pools would otherwise be a log flood.
        if d.desired != current || d.event.is_some() {
            info!(
                workerpool = %self.name, namespace = %self.ns, current, desired = d.desired,
                event = d.event.map_or("", ScaleEventKind::as_str), "{}", d.explanation
            );
        } else {
            debug!(
                workerpool = %self.name, namespace = %self.ns, current, "{}", d.explanation
            );
        }

        // 8. Events: every scale, every new failure, the start of a fallback.
        if let Some(ev) = d.event {
            if applied || ev == ScaleEventKind::FallbackApplied {
                let kind = if ev == ScaleEventKind::FallbackApplied {
                    EventType::Warning
                } else {
                    EventType::Normal
                };
                self.publish_note(kind, ev.as_str(), &d.explanation).await;
            }
        }
        for (t, r) in d.triggers.iter().zip(&results) {
            if let Err(e) = r {
                ctx.metrics
                    .trigger_errors
                    .get_or_create(&ErrorLabels {
                        namespace: self.ns.into(),
                        workerpool: self.name.clone(),
                        trigger: t.name.clone(),
                        reason: e.metric_label(),
                    })
                    .inc();
                if st.failing.insert(t.name.clone()) {
                    let msg = format!(
                        "trigger {} failed: {e}; not scaling down while it fails",
                        t.name
                    );
                    self.publish_note(EventType::Warning, "TriggerFailed", &msg)
                        .await;
                }
            } else if st.failing.remove(&t.name) {
                self.publish_note(
                    EventType::Normal,
                    "TriggerRecovered",
                    &format!("trigger {} is read again", t.name),
                )
                .await;
            }
        }
        st.last_warning = None;

        // 9. Status (on change, or every resync) and metrics.
        let new_current = if applied { d.desired } else { current };
        let mut status =
            self.decided_status(&d, new_current, applied, &results, history.clone(), now_ms);
        status.active_schedules = d.bounds.open.clone();
        status.next_openings = crate::api::next_openings(&policy.schedules, now_ms);
        self.record_metrics(&d, new_current, &policy.triggers);
        self.record_schedule_metrics(&d, &policy.schedules);
        st.expected_replicas = Some(new_current);
        self.maybe_write_status(st, status).await?;

        // 10. Next poll on a fixed schedule (no drift from reconcile time).
        let next = st.next_due.map_or(now + polling, |due| due + polling);
        let next = if next <= now { now + polling } else { next };
        let next = on_slot(next);
        st.next_due = Some(next);
        debug!(workerpool = %self.name, lag, "polled");
        Ok(Action::requeue(
            next.saturating_duration_since(Instant::now()),
        ))
    }

    /// Validates the spec and builds its sources. Errors are a condition
    /// reason and message for status.
    async fn prepare(
        &self,
        secret_versions: Vec<Option<String>>,
    ) -> std::result::Result<Prepared, (&'static str, String)> {
        let spec = &self.pool.spec;
        let policy = validate(spec).map_err(|e| (e.reason(), e.to_string()))?;
        let timeout = read_timeout(spec.polling_interval_seconds);
        let lookup = NamespacedSecrets {
            store: &self.ctx.secrets,
            namespace: self.ns,
        };
        let mut sources = Vec::with_capacity(spec.triggers.len());
        for (trigger, tp) in spec.triggers.iter().zip(&policy.triggers) {
            match self.ctx.sources.build(trigger, &lookup, timeout) {
                Ok(s) => sources.push(s),
                Err(e @ SourceError::SecretMissing { .. }) => {
                    return Err(("SecretNotFound", format!("trigger {}: {e}", tp.name)));
                }
                Err(e) => return Err(("InvalidTrigger", format!("trigger {}: {e}", tp.name))),
            }
        }
        let resolved = if target::cached_kind(&spec.scale_target_ref).is_none() {
            let r = &spec.scale_target_ref;
            Some(target::resolve(&self.ctx.client, r).await.map_err(|e| {
                (
                    "TargetNotFound",
                    format!("cannot resolve {} {}: {e}", r.api_version, r.kind),
                )
            })?)
        } else {
            None
        };
        Ok(Prepared {
            generation: self.pool.metadata.generation,
            secret_versions,
            policy: Arc::new(policy),
            sources,
            polling: Duration::from_secs(spec.polling_interval_seconds.clamp(1, 3600) as u64),
            read_timeout: timeout,
            resolved,
        })
    }

    /// Reports a pool that cannot be polled (Ready=False) without scaling,
    /// with one Event per episode, and retries later.
    async fn stand_down(
        &self,
        st: &mut PoolState,
        reason: &'static str,
        message: &str,
        kind: EventType,
    ) -> Result<Action> {
        let retry = st
            .prepared
            .as_ref()
            .map_or(self.ctx.settings.retry_delay, |p| {
                p.polling.max(Duration::from_secs(5))
            });
        if !self.ctx.is_leader() {
            return Ok(Action::requeue(retry));
        }
        let episode = format!("{reason}: {message}");
        if st.last_warning.as_deref() != Some(episode.as_str()) {
            self.publish_note(kind, reason, message).await;
            st.last_warning = Some(episode);
        }
        let mut status = self.base_status();
        let conds = vec![
            Cond::new(READY, false, reason, message),
            Cond::new(PAUSED, false, "NotPaused", ""),
        ];
        status.conditions = status::conditions(
            &conds,
            self.prev_conditions(),
            self.pool.metadata.generation,
            Timestamp::now(),
        );
        self.maybe_write_status(st, status).await?;
        Ok(Action::requeue(retry))
    }

    /// Status fields kept from the last written status (values, history).
    fn base_status(&self) -> WorkerPoolStatus {
        let mut s = self.pool.status.clone().unwrap_or_default();
        s.observed_generation = self.pool.metadata.generation;
        s
    }

    fn prev_conditions(&self) -> &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition] {
        self.pool
            .status
            .as_ref()
            .map_or(&[], |s| s.conditions.as_slice())
    }

    fn decided_status(
        &self,
        d: &Decision,
        current: i32,
        applied: bool,
        results: &[std::result::Result<f64, SourceError>],
        history: History,
        now_ms: i64,
    ) -> WorkerPoolStatus {
        let prev = self.pool.status.clone().unwrap_or_default();
        let now = Timestamp::now();
        let triggers = d
            .triggers
            .iter()
            .zip(results)
            .map(|(t, r)| {
                let last_ok = prev
                    .triggers
                    .iter()
                    .find(|p| p.name == t.name)
                    .and_then(|p| p.last_success_time.clone());
                TriggerStatus {
                    name: t.name.clone(),
                    value: t.value.map(status::value_text),
                    proposed_replicas: t.proposed,
                    active: t.active,
                    last_success_time: if r.is_ok() {
                        status::time_ms(now_ms)
                    } else {
                        last_ok
                    },
                    consecutive_failures: t.consecutive_failures.min(i32::MAX as u32) as i32,
                    error: r
                        .as_ref()
                        .err()
                        .map(|e| status::truncate(&e.to_string(), 512)),
                }
            })
            .collect();
        let failed: Vec<String> = d
            .triggers
            .iter()
            .filter_map(|t| t.error.as_ref().map(|e| format!("{}: {}", t.name, e)))
            .collect();
        let active: Vec<&str> = d
            .triggers
            .iter()
            .filter(|t| t.active)
            .map(|t| t.name.as_str())
            .collect();
        let r = &self.pool.spec.scale_target_ref;
        let mut conds = vec![
            Cond::new(
                READY,
                true,
                "Scaling",
                format!(
                    "scaling {} {} every {}s",
                    r.kind, r.name, self.pool.spec.polling_interval_seconds
                ),
            ),
            if active.is_empty() {
                Cond::new(
                    ACTIVE,
                    false,
                    "NoTriggerActive",
                    "no trigger is above its activation threshold",
                )
            } else {
                Cond::new(
                    ACTIVE,
                    true,
                    "TriggerActive",
                    format!("active: {}", active.join(", ")),
                )
            },
            if failed.is_empty() {
                Cond::new(
                    METRICS_AVAILABLE,
                    true,
                    "AllTriggersRead",
                    "every trigger was read on the last poll",
                )
            } else if d.fallback {
                Cond::new(
                    METRICS_AVAILABLE,
                    false,
                    "FallbackApplied",
                    failed.join("; "),
                )
            } else {
                Cond::new(METRICS_AVAILABLE, false, "TriggerFailed", failed.join("; "))
            },
        ];
        conds.push(
            match d.limits.iter().find(|l| {
                !matches!(
                    l,
                    Limit::FailingTriggerHold(_) | Limit::CooldownPending { .. }
                )
            }) {
                Some(l) if d.scaling_limited() => Cond::new(
                    SCALING_LIMITED,
                    true,
                    limit_reason(l),
                    d.explanation.clone(),
                ),
                _ => Cond::new(
                    SCALING_LIMITED,
                    false,
                    "DesiredWithinRange",
                    "the desired count is within the allowed range",
                ),
            },
        );
        conds.push(Cond::new(PAUSED, false, "NotPaused", ""));
        WorkerPoolStatus {
            observed_generation: self.pool.metadata.generation,
            current_replicas: Some(current),
            desired_replicas: Some(d.desired),
            last_scale_time: if applied {
                status::time_ms(now_ms)
            } else {
                prev.last_scale_time
            },
            last_active_time: d.last_active().and_then(status::time_ms),
            triggers,
            last_decision: Some(status::truncate(&d.explanation, 2048)),
            conditions: status::conditions(
                &conds,
                &prev.conditions,
                self.pool.metadata.generation,
                now,
            ),
            history: Some(history),
            ..WorkerPoolStatus::default()
        }
    }

    async fn maybe_write_status(&self, st: &mut PoolState, status: WorkerPoolStatus) -> Result<()> {
        if !self.ctx.is_leader() {
            return Ok(());
        }
        let sig = status::signature(&status);
        let due = st.last_status_write.is_none_or(|t| {
            t.elapsed() >= resync_period(self.ctx.settings.status_resync, self.key)
        });
        if st.last_status_signature.as_deref() == Some(sig.as_str()) && !due {
            return Ok(());
        }
        let api: Api<WorkerPool> = Api::namespaced(self.ctx.client.clone(), self.ns);
        status::write(&api, &self.name, &status)
            .await
            .map_err(Error::Status)?;
        self.ctx.metrics.status_writes.inc();
        st.last_status_signature = Some(sig);
        st.last_status_write = Some(Instant::now());
        Ok(())
    }

    fn record_metrics(
        &self,
        d: &Decision,
        current: i32,
        triggers: &[crate::decision::TriggerPolicy],
    ) {
        let m = &self.ctx.metrics;
        let pool = PoolLabels {
            namespace: self.ns.into(),
            workerpool: self.name.clone(),
        };
        m.desired_replicas
            .get_or_create(&pool)
            .set(i64::from(d.desired));
        m.current_replicas
            .get_or_create(&pool)
            .set(i64::from(current));
        for (t, _) in d.triggers.iter().zip(triggers) {
            if let Some(v) = t.value {
                let labels = TriggerLabels {
                    namespace: self.ns.into(),
                    workerpool: self.name.clone(),
                    trigger: t.name.clone(),
                };
                m.trigger_value.get_or_create(&labels).set(v);
            }
        }
    }

    /// `workerpool_schedule_active`: 1 per open window, 0 per closed one.
    fn record_schedule_metrics(&self, d: &Decision, windows: &[crate::decision::Window]) {
        for w in windows {
            let labels = crate::runtime::metrics::ScheduleLabels {
                namespace: self.ns.into(),
                workerpool: self.name.clone(),
                schedule: w.name.clone(),
            };
            let open = d.bounds.open.contains(&w.name);
            self.ctx
                .metrics
                .schedule_active
                .get_or_create(&labels)
                .set(i64::from(open));
        }
    }

    /// Sends an Event in the background: a slow Events API must not delay polls.
    async fn publish_note(&self, kind: EventType, reason: &str, note: &str) {
        self.ctx.events.send(
            self.pool.object_ref(&()),
            kind,
            reason,
            "Scale",
            status::truncate(note, 1000),
        );
    }
}

/// HPA-style condition reasons for the limit that bit.
fn limit_reason(l: &Limit) -> &'static str {
    match l {
        Limit::MaxReplicas(_) => "TooManyReplicas",
        Limit::MinReplicas(_) => "TooFewReplicas",
        Limit::OutOfRange(_) => "OutOfRange",
        Limit::ScaleUpStabilized(_) => "ScaleUpStabilized",
        Limit::ScaleDownStabilized(_) => "ScaleDownStabilized",
        Limit::ScaleUpPolicy(_) => "ScaleUpLimit",
        Limit::ScaleDownPolicy(_) => "ScaleDownLimit",
        Limit::Disabled => "ScalingDisabled",
        Limit::FailingTriggerHold(_) => "TriggerFailed",
        Limit::CooldownPending { .. } => "CooldownPending",
    }
}

/// The names of the Secrets a spec refers to.
fn referenced_secrets(pool: &WorkerPool) -> Vec<String> {
    let mut names = Vec::new();
    for t in &pool.spec.triggers {
        if let Some(r) = &t.redis {
            names.extend(r.password_secret_ref.iter().map(|s| s.name.clone()));
            names.extend(r.username_secret_ref.iter().map(|s| s.name.clone()));
            names.extend(
                r.tls
                    .iter()
                    .flat_map(|t| t.ca_secret_ref.iter())
                    .map(|s| s.name.clone()),
            );
        }
        if let Some(p) = &t.prometheus {
            names.extend(p.bearer_token_secret_ref.iter().map(|s| s.name.clone()));
            names.extend(p.basic_auth_secret_ref.iter().map(|s| s.name.clone()));
        }
    }
    names.sort();
    names.dedup();
    names
}

/// Loads the decision's memory from status, and accounts for a scale the
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
fn restore_history(pool: &WorkerPool, current: i32, now_ms: i64) -> History {
    let Some(status) = pool.status.as_ref() else {
        return History::default();
    };
    let mut h = status.history.clone().unwrap_or_default();
    if h.recommendations.is_empty() {
        return h;
    }
    if let Some(recorded) = status.current_replicas {
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
        let h = restore_history(&p, 5, 9000);
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
        let h = restore_history(&p, 4, 2000);
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
    fn no_status_or_no_recommendations_restore_nothing_new() {
        let p = pool_with_status(serde_json::Value::Null);
        assert_eq!(restore_history(&p, 3, 1000), History::default());
        let p = pool_with_status(serde_json::json!({"currentReplicas": 1}));
        assert_eq!(restore_history(&p, 3, 1000), History::default());
    }
}
