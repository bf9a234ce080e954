//! One poll of one WorkerPool (run by the poll engine, `engine.rs`): prepare, find the target, make sure no other
//! autoscaler owns it, read the triggers, decide, scale, report.
//! Level-triggered and idempotent: a scale sets an absolute count, so a
//! retried poll can never apply a change twice.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::runtime::events::EventType;
use kube::{Resource, ResourceExt};
use tracing::{debug, info, warn};

use super::context::{Context, PoolEntry, PoolState};
use super::engine::{backoff, on_slot};
use super::error::{Error, Result};
use super::pool_metrics::PoolGauges;
use super::prepare::{prepare, read_secrets, referenced_secrets, PrepareError, Prepared};
use super::restore::restore_history;
use super::spare_busy::ScaleInContext;
use super::status::{self, PollReport, Writes};
use super::status_memory::StatusMemory;
use super::target::{self, TargetState};
use super::targets::TargetKey;
use crate::api::{WorkerPool, WorkerPoolStatus, PAUSE_ANNOTATION};
use crate::decision::{decide_unexplained, Busy, Decision, Reading, ScaleEventKind};
use crate::runtime::metrics::{ErrorLabels, ScaleLabels};
use crate::sources::SourceError;
use crate::text::truncate;

/// Polls the pool of `entry` once; returns when it is due next.
pub async fn poll_pool(ctx: &Arc<Context>, entry: &Arc<PoolEntry>) -> Instant {
    let started = Instant::now();
    let pool = entry.pool();
    let Some(namespace) = pool.namespace() else {
        // Cluster-scoped: the CRD never allows it; polled again only if it changes.
        return started + Duration::from_secs(3600);
    };
    let mut st = entry.state.lock().await;
    let result = Poll {
        pool: &pool,
        ns: &namespace,
        name: pool.name_any(),
        entry,
        ctx,
    }
    .run(&mut st)
    .await;
    ctx.metrics
        .reconcile_duration
        .observe(started.elapsed().as_secs_f64());
    match result {
        Ok(next) => {
            st.errors = 0;
            next
        }
        Err(e) => {
            st.errors = st.errors.saturating_add(1);
            warn!(workerpool = %pool.name_any(), namespace = %namespace, error = %e, reason = e.metric_label(), "poll failed");
            Instant::now() + backoff(st.errors)
        }
    }
}

/// The decision's memory on a leader's first poll of a pool: the history
/// read back from status, handed over from the status memory.
fn restored_history(
    st: &mut PoolState,
    current: i32,
    now_ms: i64,
) -> Box<crate::decision::History> {
    let last = st.last_status.get_or_insert_with(StatusMemory::default);
    let recorded = last.kept().current_replicas;
    Box::new(restore_history(
        last.take_history(),
        recorded,
        current,
        now_ms,
    ))
}

/// Why a pool is not polled this time; each is a `Ready=False` reason.
struct StandDown {
    reason: &'static str,
    message: String,
}

impl From<PrepareError> for StandDown {
    fn from(e: PrepareError) -> Self {
        StandDown {
            reason: e.reason(),
            message: e.to_string(),
        }
    }
}

/// What one poll read and decided.
struct Polled {
    decision: Decision,
    results: Vec<std::result::Result<f64, SourceError>>,
    /// Each source's warning after its read.
    warnings: Vec<Option<String>>,
    /// The target's replicas after the poll.
    current: i32,
    applied: bool,
    now_ms: i64,
}

struct Poll<'a> {
    pool: &'a WorkerPool,
    ns: &'a str,
    name: String,
    entry: &'a Arc<PoolEntry>,
    ctx: &'a Context,
}

impl Poll<'_> {
    async fn run(&self, st: &mut PoolState) -> Result<Instant> {
        let writes = self.writes();
        let fresh = match self.ensure_prepared(st).await {
            Ok(fresh) => fresh,
            Err(e) => return self.stand_down(st, e.into(), writes).await,
        };
        if !self.ctx.is_leader() {
            self.stand_by(st);
            return Ok(Instant::now() + self.polling(st));
        }
        self.remember_status(st);
        let (current, found) = match self.read_target(st).await? {
            Some(found) => found,
            None => return self.stand_down(st, self.target_not_found(), writes).await,
        };
        let now = Instant::now();
        if let Some(due) = self.not_due(st, fresh, current, now) {
            return Ok(due);
        }
        if !writes.passive() {
            if !self.ctx.targets.synced() || !self.ctx.hpas.synced() {
                // Until every pool and every HPA is known, an older pool or
                // an HPA on the same target could still appear: write
                // nothing yet.
                return Ok(now + Duration::from_millis(200));
            }
            if let Some(conflict) = st.prepared.as_mut().and_then(|p| self.conflict(p)) {
                st.next_due = None;
                return self.stand_down(st, conflict, writes).await;
            }
        }
        let mut polled = self.poll(st, current, &found, writes, now).await?;
        self.report(st, &mut polled, writes);
        Ok(self.schedule_next(st, now))
    }

    /// Standbys keep nothing warm but the parsed spec: a new leader loads
    /// the decision's memory from status. What this instance last wrote
    /// goes back into the pool it holds, in case it leads again before
    /// another leader writes a newer status.
    fn stand_by(&self, st: &mut PoolState) {
        let history = st.history.take();
        if let Some(last) = st.last_status.take() {
            self.entry.keep_watched_status(last.into_status(history));
        }
        st.next_due = None;
    }

    /// The leader's first poll of a pool takes what the next statuses need
    /// from the one the watch delivered; the watched copies are dropped
    /// from then on (see `status_memory`).
    fn remember_status(&self, st: &mut PoolState) {
        if st.last_status.is_none() {
            let status = self.pool.status.clone().unwrap_or_default();
            st.last_status = Some(StatusMemory::of(status));
            self.entry.drop_watched_status();
        }
    }

    /// Whether this pool may write to its target (paused or shadow: no).
    fn writes(&self) -> Writes {
        let annotated = self
            .pool
            .annotations()
            .get(PAUSE_ANNOTATION)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if self.pool.spec.paused || annotated {
            Writes::Paused {
                by_spec: self.pool.spec.paused,
            }
        } else if self.pool.spec.mode.is_shadow() {
            Writes::Shadow
        } else {
            Writes::Active
        }
    }

    fn polling(&self, st: &PoolState) -> Duration {
        st.prepared.as_ref().map_or_else(
            || Duration::from_secs(self.pool.spec.polling_interval_seconds.clamp(1, 3600) as u64),
            |p| p.polling,
        )
    }

    /// Builds the pool's sources when its spec or Secrets changed, and
    /// re-reads its Secrets once they are older than the refresh period (or
    /// a read failed authentication). True when the sources were rebuilt.
    async fn ensure_prepared(&self, st: &mut PoolState) -> std::result::Result<bool, PrepareError> {
        let generation = self.pool.metadata.generation;
        let spec_changed = st
            .prepared
            .as_ref()
            .is_none_or(|p| p.generation != generation);
        let secrets_due = st.refresh_secrets
            || st
                .prepared
                .as_ref()
                .is_none_or(|p| p.secrets_read_at.elapsed() >= self.ctx.secrets.max_age());
        if !spec_changed && !secrets_due {
            return Ok(false);
        }
        // The rare paths of a poll are boxed: every poll's future is as
        // large as its largest await, and a slot holds hundreds of them.
        let secrets = Box::pin(read_secrets(self.ctx, self.pool, self.ns)).await?;
        st.refresh_secrets = false;
        if let Some(p) = st.prepared.as_mut().filter(|_| !spec_changed) {
            if p.secret_versions == secrets.versions() {
                p.secrets_read_at = Instant::now();
                return Ok(false);
            }
        }
        // The old sources stay alive until the new ones exist, so that the
        // connections they share are kept, not closed and made again.
        match Box::pin(prepare(self.ctx, self.pool, &secrets)).await {
            Ok(p) => {
                st.prepared = Some(p);
                Ok(true)
            }
            Err(e) => {
                st.prepared = None;
                Err(e)
            }
        }
    }

    /// The target's replicas (None: it does not exist). Right after our own
    /// scale the cache may still show the version our PATCH replaced: then
    /// what we set is the truth.
    async fn read_target(&self, st: &mut PoolState) -> Result<Option<(i32, TargetState)>> {
        let r = &self.pool.spec.scale_target_ref;
        let ctx = self.ctx;
        let state = match target::from_cache(r, self.ns, &ctx.deployments, &ctx.statefulsets) {
            Some(s) => s,
            None => match st.prepared.as_ref().and_then(|p| p.resolved.as_deref()) {
                Some(ar) => Box::pin(target::get_scale(&ctx.client, ar, self.ns, &r.name)).await?,
                None => TargetState::NotFound,
            },
        };
        let TargetState::Found {
            replicas,
            resource_version,
        } = &state
        else {
            st.next_due = None;
            st.expected_replicas = None;
            return Ok(None);
        };
        let current = match (&st.patched_over, st.expected_replicas) {
            (Some(over), Some(expected)) if resource_version.as_ref() == Some(over) => expected,
            _ => {
                st.patched_over = None;
                *replicas
            }
        };
        Ok(Some((current, state)))
    }

    fn target_not_found(&self) -> StandDown {
        let r = &self.pool.spec.scale_target_ref;
        StandDown {
            reason: "TargetNotFound",
            message: format!(
                "{} {}/{} ({}) not found",
                r.kind, self.ns, r.name, r.api_version
            ),
        }
    }

    /// Woken early (a watched target changed): poll only if the target
    /// moved away from what we expect; else the poll stays when it was due.
    fn not_due(&self, st: &PoolState, fresh: bool, current: i32, now: Instant) -> Option<Instant> {
        let due = st.next_due?;
        let deferred = self.entry.status_deferred.load(Ordering::Acquire);
        (!fresh && !deferred && now < due && st.expected_replicas == Some(current)).then_some(due)
    }

    /// Another autoscaler on the target, looked up only when the indexes
    /// changed since this pool last found none (every poll asks).
    fn conflict(&self, prepared: &mut Prepared) -> Option<StandDown> {
        let versions = (self.ctx.hpas.version(), self.ctx.targets.version());
        if prepared.unopposed_at == Some(versions) {
            return None;
        }
        let found = self.find_conflict(&prepared.target_key);
        prepared.unopposed_at = found.is_none().then_some(versions);
        found
    }

    /// Another autoscaler of the same target: an HPA, or an older WorkerPool.
    fn find_conflict(&self, key: &TargetKey) -> Option<StandDown> {
        let r = &self.pool.spec.scale_target_ref;
        if let Some(hpa) = self.ctx.hpas.scaling(key) {
            return Some(StandDown {
                reason: "ConflictingHPA",
                message: format!(
                    "HorizontalPodAutoscaler {}/{hpa} also scales {} {}; not scaling it",
                    self.ns, r.kind, r.name
                ),
            });
        }
        let owner = self.ctx.targets.other_owner(key, &self.entry.key)?;
        Some(StandDown {
            reason: "ConflictingWorkerPool",
            message: format!(
                "WorkerPool {}/{owner} (older) already scales {} {}; not scaling it until that pool is deleted or retargeted",
                self.ns, r.kind, r.name
            ),
        })
    }

    /// Reads every trigger concurrently, decides, and scales when active.
    async fn poll(
        &self,
        st: &mut PoolState,
        current: i32,
        found: &TargetState,
        writes: Writes,
        now: Instant,
    ) -> Result<Polled> {
        let Some(prepared) = st.prepared.as_ref() else {
            return Err(Error::NotPrepared);
        };
        let (policy, sources) = (prepared.policy.clone(), prepared.sources.clone());
        let now_ms = jiff::Timestamp::now().as_millisecond();
        let mut history = match st.history.take() {
            Some(history) => history,
            None => restored_history(st, current, now_ms),
        };
        let lag = st
            .next_due
            .map_or(0.0, |due| now.saturating_duration_since(due).as_secs_f64());
        self.ctx.metrics.poll_lag.observe(lag);
        let measured = futures::future::join_all(sources.iter().map(|s| s.measure())).await;
        let readings: Vec<Reading> = (measured.iter())
            .map(|m| Reading::measured(&m.value, m.throughput))
            .collect();
        let results: Vec<_> = measured.into_iter().map(|m| m.value).collect();
        let warnings: Vec<_> = sources.iter().map(|s| s.warning()).collect();
        let decide =
            |b: &Busy| decide_unexplained(&policy, now_ms, current, &readings, &history, b);
        let first = decide(&Busy::NotRead);
        let decision = match self.scale_in(st, writes) {
            // Boxed: a scale-in is rare next to polls, whose futures would
            // otherwise all be as large as this one.
            Some(s) if s.reads_busy(&first) => Box::pin(s.spare_busy(first, decide)).await,
            _ => first,
        };
        let applied = !writes.passive() && decision.desired != current;
        if applied {
            if let Err(e) = self.scale(st, current, decision.desired, found).await {
                st.history = Some(history);
                return Err(e);
            }
        }
        history.commit(&policy, &decision, now_ms, applied);
        st.history = Some(history);
        self.ctx.metrics.polls.inc();
        Ok(Polled {
            current: if applied { decision.desired } else { current },
            decision,
            results,
            warnings,
            applied,
            now_ms,
        })
    }

    /// `spec.scaleIn`: what a scale-in needs to read the busy pods and
    /// decide again.
    fn scale_in<'a>(&'a self, st: &'a PoolState, writes: Writes) -> Option<ScaleInContext<'a>> {
        Some(ScaleInContext {
            ctx: self.ctx,
            pool: self.pool,
            namespace: self.ns,
            prepared: st.prepared.as_ref()?,
            writes: !writes.passive(),
        })
    }

    /// One PATCH of `/scale`; a failure is one Event per episode.
    async fn scale(
        &self,
        st: &mut PoolState,
        current: i32,
        desired: i32,
        found: &TargetState,
    ) -> Result<()> {
        let r = &self.pool.spec.scale_target_ref;
        let resolved = st.prepared.as_ref().and_then(|p| p.resolved.as_deref());
        // Within the API write limit. The scale stays in the poll (not
        // queued like status) because the decision's history must know
        // whether it landed; the poll runs apart from the clock, so a slow
        // API server delays only this pool.
        let patched = {
            let _permit = self.ctx.writes.acquire().await;
            Box::pin(target::patch_scale(
                &self.ctx.client,
                r,
                resolved,
                self.ns,
                desired,
            ))
            .await
        };
        if let Err(e) = patched {
            let target = format!("{} {}/{}", r.kind, self.ns, r.name);
            let msg = format!("scaling {target} from {current} to {desired}: {e}");
            if st.last_warning.as_deref() != Some(msg.as_str()) {
                self.publish_note(EventType::Warning, "ScaleFailed", &msg);
                st.last_warning = Some(msg);
            }
            return Err(Error::Scale { target, source: e });
        }
        if let TargetState::Found {
            resource_version, ..
        } = found
        {
            st.patched_over = resource_version.clone();
        }
        let direction = if desired > current { "up" } else { "down" };
        self.ctx
            .metrics
            .scales
            .get_or_create(&ScaleLabels {
                namespace: self.ns.into(),
                workerpool: self.name.clone(),
                direction,
            })
            .inc();
        Ok(())
    }

    /// Log line, Events, metrics and status for a poll.
    fn report(&self, st: &mut PoolState, p: &mut Polled, writes: Writes) {
        let none = StatusMemory::default();
        let last = st.last_status.as_ref().unwrap_or(&none);
        let sig = status::decided_signature(&self.poll_report(last, p, writes));
        let due = self.status_due(st, sig);
        self.explain_if_read(st, p, due.is_some());
        self.log_decision(p, writes);
        self.scale_events(p, writes);
        self.trigger_events(st, p);
        self.busy_events(st, &p.decision);
        st.last_warning = None;
        self.record_metrics(st, p, writes);
        st.expected_replicas = Some(p.current);
        let Some(changed) = due else {
            return;
        };
        let last = st.last_status.as_ref().unwrap_or(&none);
        let mut status = status::decided(&self.poll_report(last, p, writes));
        if let Some(prepared) = st.prepared.as_ref() {
            let windows = &prepared.policy.schedules;
            status.active_schedules = p.decision.bounds.open.clone();
            status.next_openings = crate::api::next_openings(windows, p.now_ms);
        }
        self.submit_status(st, status, sig, changed);
    }

    fn poll_report<'a>(
        &'a self,
        last: &'a StatusMemory,
        p: &'a Polled,
        writes: Writes,
    ) -> PollReport<'a> {
        PollReport {
            pool: self.pool,
            last,
            decision: &p.decision,
            results: &p.results,
            warnings: &p.warnings,
            current: p.current,
            applied: p.applied,
            writes,
            now_ms: p.now_ms,
        }
    }

    /// Writes the decision's explanation when something will carry it: a
    /// status, an Event, an info line (a change), or a debug line when
    /// debug is on. Most polls of a steady fleet have none of these.
    fn explain_if_read(&self, st: &PoolState, p: &mut Polled, status_due: bool) {
        let d = &p.decision;
        let read = status_due
            || d.desired != d.current
            || d.event.is_some()
            || tracing::enabled!(tracing::Level::DEBUG);
        if let (true, Some(prepared)) = (read, st.prepared.as_ref()) {
            p.decision.explain(&prepared.policy);
        }
    }

    /// A line per decision that changes something; the steady state at 1 s
    /// polling over thousands of pools would otherwise be a log flood.
    fn log_decision(&self, p: &Polled, writes: Writes) {
        let d = &p.decision;
        let current = d.current;
        if d.desired != current || d.event.is_some() {
            info!(
                workerpool = %self.name, namespace = %self.ns, current, desired = d.desired,
                passive = writes.passive(),
                event = d.event.map_or("", ScaleEventKind::as_str), "{}", d.explanation
            );
        } else {
            debug!(workerpool = %self.name, namespace = %self.ns, current, "{}", d.explanation);
        }
    }

    /// Every scale, and the start of a fallback, is an Event.
    fn scale_events(&self, p: &Polled, writes: Writes) {
        let d = &p.decision;
        let Some(ev) = d.event else { return };
        if ev == ScaleEventKind::FallbackApplied {
            self.publish_note(EventType::Warning, ev.as_str(), &d.explanation);
        } else if p.applied {
            self.publish_note(EventType::Normal, ev.as_str(), &d.explanation);
        } else if writes == Writes::Shadow {
            self.publish_note(EventType::Normal, "WouldScale", &d.explanation);
        }
    }

    /// One Event when a trigger starts failing, one when it is read again.
    fn trigger_events(&self, st: &mut PoolState, p: &Polled) {
        for (t, r) in p.decision.triggers.iter().zip(&p.results) {
            let Err(e) = r else {
                if st.failing.remove(&t.name) {
                    let msg = format!("trigger {} is read again", t.name);
                    self.publish_note(EventType::Normal, "TriggerRecovered", &msg);
                }
                continue;
            };
            if matches!(e, SourceError::Auth(_)) {
                // The password may have just been rotated: read it again.
                self.ctx
                    .secrets
                    .forget(self.ns, &referenced_secrets(self.pool));
                st.refresh_secrets = true;
            }
            self.ctx
                .metrics
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
                self.publish_note(EventType::Warning, "TriggerFailed", &msg);
            }
        }
    }

    /// One Event when the busy signal starts failing (the scale-in holds);
    /// the episode ends when it is read again.
    fn busy_events(&self, st: &mut PoolState, d: &Decision) {
        match &d.busy {
            Busy::Failed(e) if !st.busy_failing => {
                st.busy_failing = true;
                let msg = format!("busy signal failed: {e}; not scaling in while it fails");
                self.publish_note(EventType::Warning, "BusySignalFailed", &msg);
            }
            Busy::Pods(_) => st.busy_failing = false,
            _ => {}
        }
    }

    /// The next poll on a fixed schedule (no drift from poll time).
    fn schedule_next(&self, st: &mut PoolState, now: Instant) -> Instant {
        let polling = self.polling(st);
        let next = st.next_due.map_or(now + polling, |due| due + polling);
        let next = on_slot(if next <= now { now + polling } else { next });
        st.next_due = Some(next);
        next
    }

    /// Reports a pool that cannot be polled (Ready=False) without scaling,
    /// with one Event per episode, and tries again after one polling
    /// interval (a Secret created meanwhile is found on the next poll).
    async fn stand_down(
        &self,
        st: &mut PoolState,
        why: StandDown,
        writes: Writes,
    ) -> Result<Instant> {
        let retry = Instant::now() + self.polling(st);
        if !self.ctx.is_leader() {
            self.stand_by(st);
            return Ok(retry);
        }
        self.remember_status(st);
        let episode = format!("{}: {}", why.reason, why.message);
        if st.last_warning.as_deref() != Some(episode.as_str()) {
            self.publish_note(EventType::Warning, why.reason, &why.message);
            st.last_warning = Some(episode);
        }
        let none = StatusMemory::default();
        let last = st.last_status.as_ref().unwrap_or(&none);
        let status = status::stood_down(self.pool, last, why.reason, &why.message, writes);
        self.maybe_write_status(st, status);
        Ok(retry)
    }

    /// Hands the status to the status writer when something a person
    /// cares about changed, the resync period passed, or the last write
    /// failed.
    fn maybe_write_status(&self, st: &mut PoolState, status: WorkerPoolStatus) {
        let sig = status::signature(&status);
        if let Some(changed) = self.status_due(st, sig) {
            self.submit_status(st, status, sig, changed);
        }
    }

    /// Whether a status of signature `sig` is to be written: None when not,
    /// else whether it is urgent (a change or a retry, written before
    /// resyncs).
    fn status_due(&self, st: &PoolState, sig: u64) -> Option<bool> {
        if !self.ctx.is_leader() {
            return None;
        }
        let retry = self.entry.status_retry.state(Instant::now());
        if retry == Some(false) {
            return None; // backing off after failed writes
        }
        let changed = st.last_status_signature != Some(sig);
        let due = retry == Some(true)
            || st.last_status_write.is_none_or(|t| {
                t.elapsed() >= self.entry.resync_period(self.ctx.settings.status_resync)
            });
        (changed || due).then_some(changed || retry.is_some())
    }

    fn submit_status(
        &self,
        st: &mut PoolState,
        mut status: WorkerPoolStatus,
        sig: u64,
        urgent: bool,
    ) {
        if !self.ctx.status_writer.admit(self.entry, urgent) {
            // The writer is full: the next statuses build on this one. A
            // change is handed over by a later poll (the pool is woken when
            // there is room); a resync is shed until its next period.
            st.last_status = Some(StatusMemory::of(status));
            if !urgent {
                st.last_status_write = Some(Instant::now());
            }
            return;
        }
        // The history is the largest part of a status, and not part of its
        // signature: lent to a status that is written while it is made into
        // bytes (a status built before the history was restored keeps the
        // one read back).
        let lent = st.history.is_some();
        if lent {
            status.history = st.history.take();
        }
        let body = status::StatusBody::of(&status);
        if lent {
            st.history = status.history.take();
        }
        st.last_status = Some(StatusMemory::of(status));
        match body {
            Some(body) => self.ctx.status_writer.submit(self.entry, body, urgent),
            None => warn!(workerpool = %self.name, namespace = %self.ns, "status not serializable"),
        }
        st.last_status_signature = Some(sig);
        st.last_status_write = Some(Instant::now());
    }

    /// The pool's gauges, from handles kept between polls.
    fn record_metrics(&self, st: &mut PoolState, p: &Polled, writes: Writes) {
        let shadow = writes == Writes::Shadow;
        let windows = st
            .prepared
            .as_ref()
            .map_or(&[][..], |pr| &pr.policy.schedules[..]);
        let fits = (st.gauges.as_ref()).is_some_and(|g| g.fits(shadow, &p.decision, windows));
        if !fits {
            let names: Vec<String> = p.decision.triggers.iter().map(|t| t.name.clone()).collect();
            let m = &self.ctx.metrics;
            st.gauges = Some(PoolGauges::new(
                m, self.ns, &self.name, shadow, &names, windows,
            ));
        }
        if let Some(g) = st.gauges.as_mut() {
            g.record(&self.ctx.metrics, &p.decision, p.current);
        }
    }

    /// Sends an Event in the background: a slow Events API must not delay polls.
    fn publish_note(&self, kind: EventType, reason: &str, note: &str) {
        self.ctx.events.send(
            self.pool.object_ref(&()),
            kind,
            reason,
            "Scale",
            truncate(note, 1000),
        );
    }
}
