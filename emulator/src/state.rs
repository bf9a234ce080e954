//! State shared by the server tasks and the test-side handles.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, oneshot, watch};

use crate::connections::ConnectionGauge;
use crate::faults::FaultRules;
use crate::requests::{RequestRecord, WriteRecord};
use crate::store::Store;

/// Tunables of an emulator instance.
#[derive(Debug, Clone)]
pub struct Config {
    /// Watch events retained per resource; older resourceVersions get 410.
    pub history_per_resource: usize,
    /// How often a watch with `allowWatchBookmarks=true` gets a BOOKMARK.
    pub bookmark_interval: Duration,
    /// Events a watcher may fall behind by before the server closes it.
    pub watcher_buffer: usize,
    /// Namespaces that exist from the start.
    pub namespaces: Vec<String>,
    /// The `gitVersion` reported by `/version`.
    pub git_version: String,
    /// Stand in for the Deployment/StatefulSet controllers: after each
    /// write, status reports every desired replica ready (a second write).
    pub workload_status: bool,
    /// Stand in for the Deployment, ReplicaSet and StatefulSet controllers
    /// (and a scheduler/kubelet): workloads get ReplicaSets and Pods that
    /// follow `spec.replicas`, scale-down deletes the pods the real
    /// ReplicaSet controller would, and status counts the pods. Replaces
    /// `workload_status` for Deployments and StatefulSets.
    pub workload_controllers: bool,
    /// With `workload_controllers`: new pods stay Pending and unscheduled,
    /// as on a cluster without a scheduler or nodes.
    pub pods_pending: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            history_per_resource: 10_000,
            bookmark_interval: Duration::from_secs(5),
            watcher_buffer: 100_000,
            namespaces: ["default", "kube-system", "kube-public", "kube-node-lease"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
            git_version: "v1.33.0".into(),
            workload_status: false,
            workload_controllers: false,
            pods_pending: false,
        }
    }
}

/// A request to stop serving for a while (see `Faults::refuse_connections`).
pub struct Outage {
    pub duration: Duration,
    /// Answered once the listener is closed.
    pub closed: oneshot::Sender<()>,
}

pub struct Shared {
    pub config: Config,
    pub store: Mutex<Store>,
    pub faults: Mutex<FaultRules>,
    pub log: Mutex<Vec<RequestRecord>>,
    pub writes: broadcast::Sender<WriteRecord>,
    /// Bumped to end every open watch stream.
    pub close_watches: watch::Sender<u64>,
    /// Bumped to drop every open connection.
    pub drop_connections: watch::Sender<u64>,
    pub outages: mpsc::UnboundedSender<Outage>,
    /// Client connections open now and at most.
    pub connections: Arc<ConnectionGauge>,
}
