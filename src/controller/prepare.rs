//! Preparing a pool: validate its spec, read the Secrets it names, build its
//! sources and resolve its target kind — once per spec generation and per
//! version of those Secrets, never per poll.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kube::discovery::ApiResource;

use super::context::Context;
use super::secrets::Snapshot;
use super::target;
use crate::api::{validate, WorkerPool};
use crate::decision::Policy;
use crate::sources::{read_timeout, BusySource, MetricSource, SourceError};

/// A pool's spec, parsed and built.
pub struct Prepared {
    pub generation: Option<i64>,
    /// The Secrets' versions the sources were built with, and when they were read.
    pub secret_versions: Vec<Option<String>>,
    pub secrets_read_at: Instant,
    pub policy: Arc<Policy>,
    pub sources: Vec<Arc<dyn MetricSource>>,
    /// The busy signal of `spec.scaleIn`, read only before a scale-in.
    pub busy: Option<Arc<dyn BusySource>>,
    pub polling: Duration,
    /// The API resource of a target kind the operator does not cache
    /// (boxed: rare, and five strings in every pool's state).
    pub resolved: Option<Box<ApiResource>>,
    /// The target, as the HPA and pool indexes know it.
    pub target_key: super::targets::TargetKey,
    /// The HPA and pool indexes' versions when this pool last found no
    /// other autoscaler on its target: while they stay, it need not look.
    pub unopposed_at: Option<(u64, u64)>,
}

/// Why a pool cannot be prepared; each is a `Ready=False` reason.
#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    /// The spec breaks a rule the CRD schema could not express.
    #[error("{0}")]
    InvalidSpec(String),
    /// A schedule's cron or time zone cannot be used.
    #[error("{0}")]
    InvalidSchedule(String),
    /// A Secret (or key) a trigger names does not exist.
    #[error("{0}")]
    SecretNotFound(String),
    /// The Secrets could not be read (API error, missing permission).
    #[error("{0}")]
    SecretUnreadable(String),
    /// A trigger cannot be built (bad URL, CA bundle, header).
    #[error("{0}")]
    InvalidTrigger(String),
    /// The endpoint policy refuses a trigger's host.
    #[error("{0}")]
    EndpointNotAllowed(String),
    /// The target's kind is not served by the API server.
    #[error("{0}")]
    TargetNotFound(String),
}

impl PrepareError {
    fn from_spec(e: crate::api::SpecError) -> Self {
        match e.reason() {
            "InvalidSchedule" => PrepareError::InvalidSchedule(e.to_string()),
            _ => PrepareError::InvalidSpec(e.to_string()),
        }
    }

    /// The condition reason (and Event reason) this error reports.
    pub fn reason(&self) -> &'static str {
        match self {
            PrepareError::InvalidSpec(_) => "InvalidSpec",
            PrepareError::InvalidSchedule(_) => "InvalidSchedule",
            PrepareError::SecretNotFound(_) => "SecretNotFound",
            PrepareError::SecretUnreadable(_) => "SecretUnreadable",
            PrepareError::InvalidTrigger(_) => "InvalidTrigger",
            PrepareError::EndpointNotAllowed(_) => "EndpointNotAllowed",
            PrepareError::TargetNotFound(_) => "TargetNotFound",
        }
    }
}

/// The names of the Secrets a spec refers to, sorted, each once.
pub fn referenced_secrets(pool: &WorkerPool) -> Vec<String> {
    let mut names: Vec<String> = pool
        .spec
        .triggers
        .iter()
        .flat_map(|t| t.secret_names())
        .chain(pool.spec.scale_in.iter().flat_map(|s| s.secret_names()))
        .map(str::to_string)
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Reads the Secrets `pool` names in `namespace`.
pub async fn read_secrets(
    ctx: &Context,
    pool: &WorkerPool,
    namespace: &str,
) -> Result<Snapshot, PrepareError> {
    let names = referenced_secrets(pool);
    ctx.secrets.read(namespace, &names).await.map_err(|e| {
        PrepareError::SecretUnreadable(format!("reading secrets {}: {e}", names.join(", ")))
    })
}

/// Validates the spec and builds its sources from `secrets`.
pub async fn prepare(
    ctx: &Context,
    pool: &WorkerPool,
    secrets: &Snapshot,
) -> Result<Prepared, PrepareError> {
    let spec = &pool.spec;
    let policy = validate(spec).map_err(PrepareError::from_spec)?;
    let timeout = read_timeout(spec.polling_interval_seconds);
    let namespace = pool.metadata.namespace.as_deref().unwrap_or_default();
    let mut sources = Vec::with_capacity(spec.triggers.len());
    for (trigger, tp) in spec.triggers.iter().zip(&policy.triggers) {
        let source = ctx
            .sources
            .build_in(namespace, trigger, secrets, timeout)
            .map_err(|e| trigger_error(&tp.name, e))?;
        sources.push(source);
    }
    let busy = (ctx.sources)
        .build_busy_in(namespace, spec, secrets, timeout)
        .map_err(busy_signal_error)?;
    Ok(Prepared {
        generation: pool.metadata.generation,
        secret_versions: secrets.versions(),
        secrets_read_at: Instant::now(),
        policy: Arc::new(policy),
        sources,
        busy,
        polling: Duration::from_secs(spec.polling_interval_seconds.clamp(1, 3600) as u64),
        resolved: resolve_target(ctx, pool).await?,
        target_key: super::targets::TargetKey::of(
            pool.metadata.namespace.as_deref().unwrap_or_default(),
            &spec.scale_target_ref,
        ),
        unopposed_at: None,
    })
}

/// The busy signal cannot be built: reported as a trigger would be.
fn busy_signal_error(e: SourceError) -> PrepareError {
    let message = format!("scaleIn.busySignal: {e}");
    match e {
        SourceError::SecretMissing { .. } => PrepareError::SecretNotFound(message),
        SourceError::NotAllowed(_) => PrepareError::EndpointNotAllowed(message),
        _ => PrepareError::InvalidTrigger(message),
    }
}

fn trigger_error(trigger: &str, e: SourceError) -> PrepareError {
    let message = format!("trigger {trigger}: {e}");
    match e {
        SourceError::SecretMissing { .. } => PrepareError::SecretNotFound(message),
        SourceError::NotAllowed(_) => PrepareError::EndpointNotAllowed(message),
        _ => PrepareError::InvalidTrigger(message),
    }
}

/// Finds the API resource of a target kind the operator does not cache.
async fn resolve_target(
    ctx: &Context,
    pool: &WorkerPool,
) -> Result<Option<Box<ApiResource>>, PrepareError> {
    let r = &pool.spec.scale_target_ref;
    if target::cached_kind(r).is_some() {
        return Ok(None);
    }
    target::resolve(&ctx.client, r)
        .await
        .map(|resource| Some(Box::new(resource)))
        .map_err(|e| {
            PrepareError::TargetNotFound(format!(
                "cannot resolve {} {}: {e}",
                r.api_version, r.kind
            ))
        })
}
