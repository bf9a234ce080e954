//! Redis sources: the plain measures (`list`, `lists`, `stream`,
//! `sortedSet`, in [`measures`]) and the queue frameworks (`celery`, ...),
//! one file each, all reading through shared endpoints.
//!
//! Files: [`settings`] turns a trigger into connection settings (URL,
//! Sentinel or Cluster, Secrets, TLS); [`endpoint`] is what the measures
//! read through, whatever the topology; [`node`] owns one server's shared
//! connection, made by [`dial`] (TCP, [`tls`], `AUTH`, `SELECT`) and driven
//! by [`wire`] (our own pipelined RESP connection); [`sentinel`] finds the
//! master; [`cluster`] and [`slots`] route keys to cluster nodes; [`batch`]
//! sends the reads of one slot as one pipeline (per node); [`errors`]
//! classifies replies.
//!
//! # One connection per endpoint
//! An endpoint is everything that makes a connection different: the URL
//! (scheme, host, port, db), user, password and TLS settings. Every source
//! naming the same endpoint shares one pipelined connection, so concurrent
//! reads from many pools are pipelined over it: round trips per tick scale
//! with the number of Redis servers, not the number of pools.
//!
//! The connection is made on the first read (building a source does no
//! I/O), shared by concurrent first readers, and made again after it is
//! lost. A read that finds its connection dead (reset, closed by the server
//! or a proxy's idle timeout) reconnects and retries once within its
//! timeout: reads are idempotent, and a failed poll is costly (it blocks
//! scale-down and raises an Event). A read that times out drops the
//! connection too, since a half-open TCP connection would otherwise time
//! out every read until the kernel gives up on it; concurrent timeouts
//! cause one reconnect, not one each. No lock is held across an await.
//!
//! Endpoints are held weakly: when the last source naming one is dropped
//! (pool deleted, spec or Secret changed), its connection closes.
//!
//! # One pipeline per batch of reads
//! Sharing the connection is not enough by itself: a client that carries
//! each command separately (its own oneshot and reply routing, as redis-rs's
//! multiplexed connection does) cost more than Redis did at 5,000 pools.
//! So reads are batched explicitly: every
//! read's commands go through the endpoint's batcher
//! ([`batch`]), which sends the reads queued together as one
//! pipeline and hands each read its own replies (a command the server
//! refuses fails only its read). What cannot share a pipeline goes on the
//! connection directly: loading the Celery script after `NOSCRIPT`, the
//! `HSCAN` fallback, and the `TYPE` lookups that explain a `WRONGTYPE`.
//! Every request either way is counted (`Endpoint::round_trips`).
//!
//! The read timeout is a deadline every wait of a read honours: the
//! batcher answers a read by its deadline, and connecting or a direct
//! request runs `errors::within` it. (One `tokio::time::timeout` around the whole
//! read did the same with a timer per read, a tenth of a read's cost.)

mod arq;
mod batch;
mod bullmq;
mod celery;
mod celery_index;
pub(super) mod celery_inspect;
mod cluster;
mod dial;
mod dramatiq;
mod endpoint;
mod errors;
mod framework;
mod huey;
mod measures;
mod node;
mod pidbox;
mod rq;
mod rq_workers;
mod sentinel;
mod settings;
mod sidekiq;
mod sidekiq_processes;
mod slots;
mod stream_groups;
mod tls;
mod wire;
mod worker_registry;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use super::policy::EndpointPolicy;
use super::{BusySource, MetricSource, SecretLookup, SourceError, Sources};
use crate::api::{
    included, included_arq, included_without_in_flight, BusySignalKind, FrameworkMeasureKind,
    JobState, RedisTrigger, Trigger,
};
use batch::SlotGate;
pub use batch::SlotHold;
use endpoint::Endpoint;
use settings::{ConnectionSettings, EndpointKey};

/// The registry's entry point: builds a Redis source when `trigger.redis` is set.
pub(super) fn build(
    sources: &Sources,
    trigger: &Trigger,
    secrets: &dyn SecretLookup,
    timeout: Duration,
) -> Option<Result<Arc<dyn MetricSource>, SourceError>> {
    let r = trigger.redis.as_ref()?;
    Some(build_redis(sources, r, secrets, timeout))
}

fn build_redis(
    sources: &Sources,
    r: &RedisTrigger,
    secrets: &dyn SecretLookup,
    timeout: Duration,
) -> Result<Arc<dyn MetricSource>, SourceError> {
    let endpoint = sources.inner.redis.get(r, secrets, &sources.inner.policy)?;
    if let Some(c) = &r.celery {
        if c.include_in_flight && endpoint.is_cluster() {
            // kombu keeps every queue's in-flight messages in one `unacked`
            // hash, in another hash slot than the queue's lists: the script
            // that reads them together cannot run on one cluster node.
            return Err(SourceError::Config(
                "redis.celery.includeInFlight is not supported on redis.cluster \
                 (kombu's `unacked` hash and the queue's lists are in different hash slots); \
                 set includeInFlight: false to count the queued tasks"
                    .into(),
            ));
        }
        let index = sources.inner.redis.celery_indexes.of(&endpoint);
        return Ok(Arc::new(celery::CelerySource::new(
            endpoint,
            index,
            c.queue.clone(),
            c.include_in_flight,
            timeout,
        )));
    }
    if let Some(layout) = framework_layout(r) {
        let (layout, include, measure) = layout;
        return Ok(Arc::new(framework::FrameworkSource::new(
            endpoint, layout, measure, include, timeout,
        )));
    }
    measures::build(endpoint, r, timeout)
}

/// The Celery inspector for the broker a Redis trigger names, sharing the
/// trigger's endpoint (and so its connection and endpoint policy).
pub(super) fn celery_inspector(
    sources: &Sources,
    trigger: &Trigger,
    secrets: &dyn SecretLookup,
    timeout: Duration,
) -> Result<celery_inspect::CeleryInspector, SourceError> {
    let r = trigger.redis.as_ref().ok_or_else(|| {
        SourceError::Config("Celery inspect needs a redis trigger (the Celery broker)".into())
    })?;
    let endpoint = sources.inner.redis.get(r, secrets, &sources.inner.policy)?;
    if endpoint.is_cluster() {
        // kombu's Redis transport has no cluster mode: no Celery broker is one.
        return Err(SourceError::Config(
            "Celery inspect is not supported on redis.cluster (kombu's Redis transport \
             does not run on a cluster)"
                .into(),
        ));
    }
    Ok(celery_inspect::CeleryInspector::new(endpoint, timeout))
}

/// A Redis busy signal (`rq` or `sidekiq`) over `trigger`'s endpoint: the
/// same shared connection as the trigger's reads.
pub(super) fn build_busy(
    sources: &Sources,
    kind: BusySignalKind,
    trigger: &Trigger,
    secrets: &dyn SecretLookup,
    timeout: Duration,
) -> Result<Arc<dyn BusySource>, SourceError> {
    let r = trigger.redis.as_ref().ok_or_else(|| {
        SourceError::Config("the busy signal's trigger is not a redis trigger".into())
    })?;
    let registry = match kind {
        BusySignalKind::Rq => rq_workers::registry(r.rq.as_ref().map(|q| q.queue.as_str())),
        BusySignalKind::Sidekiq => sidekiq_processes::registry(),
        BusySignalKind::Celery | BusySignalKind::Prometheus => {
            return Err(SourceError::Config(
                "only rq and sidekiq busy signals read a worker registry".into(),
            ))
        }
    };
    let endpoint = sources.inner.redis.get(r, secrets, &sources.inner.policy)?;
    Ok(Arc::new(worker_registry::RegistrySource::new(
        endpoint, registry, timeout,
    )))
}

/// The queue framework a trigger names, if any: its layout, the kinds of
/// job to count and the measure.
fn framework_layout(
    r: &RedisTrigger,
) -> Option<(framework::Layout, Vec<JobState>, FrameworkMeasureKind)> {
    if let Some(q) = &r.rq {
        return Some((rq::layout(&q.queue), included(&q.include), q.measure));
    }
    if let Some(q) = &r.arq {
        return Some((
            arq::layout(&q.queue_name),
            included_arq(&q.include),
            q.measure,
        ));
    }
    if let Some(d) = &r.dramatiq {
        let layout = dramatiq::layout(&d.namespace, &d.queue);
        return Some((layout, included(&d.include), d.measure));
    }
    if let Some(s) = &r.sidekiq {
        return Some((sidekiq::layout(&s.queue), included(&s.include), s.measure));
    }
    if let Some(h) = &r.huey {
        let include = included_without_in_flight(&h.include);
        return Some((huey::layout(&h.name), include, h.measure));
    }
    if let Some(b) = &r.bullmq {
        let include = included(&b.include);
        return Some((bullmq::layout(&b.prefix, &b.queue), include, b.measure));
    }
    None
}

/// Every Redis endpoint in use, by what distinguishes its connection.
#[derive(Default)]
pub(super) struct Endpoints {
    map: Mutex<HashMap<EndpointKey, Weak<Endpoint>>>,
    /// Each endpoint's Celery in-flight index, shared by its Celery sources.
    celery_indexes: celery_index::Indexes,
    /// Requests sent by every endpoint there has been (see [`RoundTrips`]).
    round_trips: Arc<AtomicU64>,
    /// Holds every endpoint's batch while a poll slot starts (see [`SlotGate`]).
    gate: Arc<SlotGate>,
}

impl Endpoints {
    /// The endpoint for a trigger's connection settings: the existing one
    /// if any source still holds it, else a new (not yet connected) one.
    fn get(
        &self,
        r: &RedisTrigger,
        secrets: &dyn SecretLookup,
        policy: &EndpointPolicy,
    ) -> Result<Arc<Endpoint>, SourceError> {
        let settings = ConnectionSettings::resolve(r, secrets)?;
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ep) = map.get(&settings.key).and_then(Weak::upgrade) {
            return Ok(ep);
        }
        map.retain(|_, w| w.strong_count() > 0);
        let key = settings.key.clone();
        let ep = Arc::new(Endpoint::new(
            settings,
            self.round_trips.clone(),
            self.gate.clone(),
            policy.clone(),
        )?);
        map.insert(key, Arc::downgrade(&ep));
        Ok(ep)
    }

    /// Holds every endpoint's batch until the hold is dropped.
    pub(super) fn hold_batches(&self) -> SlotHold {
        self.gate.hold()
    }

    pub(super) fn live(&self) -> usize {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, w| w.strong_count() > 0);
        map.len()
    }

    /// Requests sent to Redis by every endpoint since these were made.
    pub(super) fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Requests sent so far by each live endpoint, by server (`redis[s]://host:port/db`;
    /// endpoints that differ only in credentials or TLS settings are summed).
    pub(super) fn round_trips_by_server(&self) -> std::collections::BTreeMap<String, u64> {
        let mut out = std::collections::BTreeMap::new();
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        for ep in map.values().filter_map(Weak::upgrade) {
            *out.entry(ep.display().to_string()).or_insert(0) += ep.round_trips();
        }
        out
    }
}
