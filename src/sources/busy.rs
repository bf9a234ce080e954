//! Busy signals (`spec.scaleIn.busySignal`): which pods are running work,
//! read from the framework's own state, behind one trait, [`BusySource`].
//!
//! A signal is built with the pool's sources (cheap, no I/O) and read only
//! before a scale-in. The Redis ones (`rq`, `sidekiq`, `celery`) reuse the
//! named trigger's endpoint — the same shared connection, credentials and
//! TLS settings; `prometheus` goes through the shared HTTP client. Each
//! worker reports its host name, which in Kubernetes is its pod's name.
//!
//! Adding a framework: a type implementing [`BusySource`] (for Celery the
//! adapter in [`celery`] takes the inspect reply), and one arm in
//! [`Sources::build_busy_in`].

mod celery;
mod prometheus;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

pub use celery::{CeleryBusy, CeleryInspect, InspectFuture};

use super::runs_in_pod;
use super::{SecretLookup, SourceError, Sources};
use crate::api::{kind_field, BusySignalKind, WorkerPoolSpec};

/// Most workers one busy read accepts: a registry listing more is refused
/// (the read would be a huge pipeline, and the pool cannot be that big).
pub const MAX_WORKERS: usize = 10_000;

/// What [`BusySource::read`] returns.
pub type BusyFuture<'a> = Pin<Box<dyn Future<Output = Result<BusyPods, SourceError>> + Send + 'a>>;

/// A pool's busy signal, built once per spec generation, read before a scale-in.
pub trait BusySource: Send + Sync + std::fmt::Debug {
    /// Reads which pods are busy now, within the timeout it was built with.
    fn read(&self) -> BusyFuture<'_>;
    /// What is read where (never a secret), e.g. `RQ workers of queue "reports" on redis://r:6379/0`.
    fn describe(&self) -> String;
}

/// Busy pods and their busy tasks (always >= 1), by pod name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BusyPods {
    tasks: BTreeMap<String, u32>,
}

impl BusyPods {
    /// Counts `tasks` busy tasks on `pod` (several workers on one pod add
    /// up); zero tasks is an idle worker, not recorded.
    pub fn add(&mut self, pod: &str, tasks: u32) {
        if tasks > 0 && !pod.is_empty() {
            let n = self.tasks.entry(pod.to_string()).or_insert(0);
            *n = n.saturating_add(tasks);
        }
    }

    /// The busy pods' names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.tasks.keys().cloned().collect()
    }

    /// Busy tasks on `pod` (0: idle or unknown).
    pub fn tasks(&self, pod: &str) -> u32 {
        self.tasks.get(pod).copied().unwrap_or(0)
    }

    /// Number of busy pods.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// No pod is busy.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Only the busy pods among `pods` (the target's), keyed by pod name:
    /// a worker reports its host name, which is the pod's name cut to 63
    /// characters (or that name as an FQDN), see [`runs_in_pod`]. A worker
    /// elsewhere (another Deployment on the same queue, a stale record) is
    /// not ours.
    pub fn among<'a>(&self, pods: impl IntoIterator<Item = &'a str>) -> BusyPods {
        let mut ours = BusyPods::default();
        for pod in pods {
            for (host, tasks) in &self.tasks {
                if runs_in_pod(host, pod) {
                    ours.add(pod, *tasks);
                }
            }
        }
        ours
    }
}

impl Sources {
    /// Builds the busy signal of a pool of `namespace` (None without
    /// `scaleIn`). Hosts are checked against the endpoint policy first, as
    /// for triggers.
    pub fn build_busy_in(
        &self,
        namespace: &str,
        spec: &WorkerPoolSpec,
        secrets: &dyn SecretLookup,
        timeout: Duration,
    ) -> Result<Option<Arc<dyn BusySource>>, SourceError> {
        let Some(scale_in) = &spec.scale_in else {
            return Ok(None);
        };
        let at = "scaleIn.busySignal";
        let Some((kind, _)) = scale_in.busy_signal.kind() else {
            return Err(SourceError::Config(format!("{at}: set exactly one signal")));
        };
        if let Some(p) = &scale_in.busy_signal.prometheus {
            let field = "scaleIn.busySignal.prometheus.url";
            let host = url::Url::parse(&p.url)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                .ok_or_else(|| SourceError::Config(format!("{field} names no host")))?;
            self.inner.policy.check_written(namespace, field, &host)?;
            return prometheus::build(self, p, secrets, timeout).map(Some);
        }
        let field = kind_field(kind);
        let trigger = (scale_in.trigger_index(&spec.triggers))
            .map(|i| &spec.triggers[i])
            .ok_or_else(|| SourceError::Config(format!("{at}.{field}.trigger names no trigger")))?;
        if kind == BusySignalKind::Celery {
            let inspector = self.celery_inspector(namespace, trigger, secrets, timeout)?;
            return Ok(Some(Arc::new(CeleryBusy(inspector))));
        }
        for (field, host) in super::policy::written_hosts(trigger)? {
            self.inner.policy.check_written(namespace, field, &host)?;
        }
        super::redis::build_busy(self, kind, trigger, secrets, timeout).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_pods_add_up_per_pod_and_keep_only_the_targets() {
        let mut b = BusyPods::default();
        b.add("w-1", 1);
        b.add("w-1", 2);
        b.add("w-2", 0);
        b.add("w-3", 1);
        assert_eq!(b.names(), vec!["w-1", "w-3"]);
        assert_eq!(b.tasks("w-1"), 3);
        let ours = b.among(["w-1", "w-2"]);
        assert_eq!((ours.len(), ours.tasks("w-3")), (1, 0));
    }
}
