//! The in-process handle tests hold: start, address, client, kubeconfig,
//! direct store access, faults and the request log.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::connections::Connections;
use crate::faults::{FaultRules, Faults};
use crate::objects::{self, FieldValidation, Target, WriteOpts};
use crate::requests::Requests;
use crate::resources::GroupResource;
use crate::server;
use crate::state::{Config, Shared};
use crate::status::ApiError;
use crate::store::Store;

/// A resource addressed as group, version and plural, e.g. parsed from
/// `"apps/v1/deployments"` or `"v1/configmaps"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gvr {
    pub group: String,
    pub version: String,
    pub resource: String,
}

impl Gvr {
    pub fn new(group: &str, version: &str, resource: &str) -> Self {
        Gvr {
            group: group.into(),
            version: version.into(),
            resource: resource.into(),
        }
    }
}

impl From<&str> for Gvr {
    fn from(s: &str) -> Self {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [v, r] => Gvr::new("", v, r),
            [g, v, r] => Gvr::new(g, v, r),
            _ => Gvr::new("", "", s),
        }
    }
}

impl fmt::Display for Gvr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.group.is_empty() {
            write!(f, "{}/{}", self.version, self.resource)
        } else {
            write!(f, "{}/{}/{}", self.group, self.version, self.resource)
        }
    }
}

/// A running API emulator. Dropping it stops the server.
pub struct Emulator {
    shared: Arc<Shared>,
    addr: SocketAddr,
    shutdown: CancellationToken,
}

impl Emulator {
    /// Starts on `127.0.0.1` with an ephemeral port and default settings.
    pub async fn start() -> io::Result<Emulator> {
        Self::start_with(Config::default()).await
    }

    pub async fn start_with(config: Config) -> io::Result<Emulator> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts on a given address (the dev binary uses a fixed port).
    pub async fn start_on(addr: SocketAddr, config: Config) -> io::Result<Emulator> {
        let listener = TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (outages_tx, outages_rx) = mpsc::unbounded_channel();
        let mut store = Store::new(config.history_per_resource, config.watcher_buffer);
        store.workload_status = config.workload_status;
        store.controllers = crate::controllers::Settings {
            enabled: config.workload_controllers,
            pods_pending: config.pods_pending,
        };
        let namespaces = Target {
            ty: store
                .registry
                .find("", "v1", "namespaces")
                .ok_or_else(|| io::Error::other("namespaces type missing"))?,
            version: "v1".into(),
            namespace: String::new(),
        };
        let opts = WriteOpts {
            manager: "kube-apiserver".into(),
            dry_run: false,
            validation: FieldValidation::Ignore,
        };
        for ns in &config.namespaces {
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            objects::create(&mut store, &namespaces, &opts, body)
                .map_err(|e| io::Error::other(e.message))?;
        }
        let shared = Arc::new(Shared {
            config,
            store: Mutex::new(store),
            faults: Mutex::new(FaultRules::default()),
            log: Mutex::new(Vec::new()),
            writes: broadcast::channel(65_536).0,
            close_watches: watch::channel(0).0,
            drop_connections: watch::channel(0).0,
            outages: outages_tx,
            connections: Arc::default(),
        });
        let shutdown = CancellationToken::new();
        tokio::spawn(server::run(
            shared.clone(),
            listener,
            outages_rx,
            shutdown.clone(),
        ));
        Ok(Emulator {
            shared,
            addr,
            shutdown,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kube client for this server (default namespace `default`).
    ///
    /// Installs rustls' `ring` provider as the process default when none is
    /// set: kube builds a TLS connector even for `http://` URLs, and a
    /// workspace build can enable both rustls providers.
    pub fn client(&self) -> Result<kube::Client, kube::Error> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        let uri = self
            .url()
            .parse()
            .map_err(|e: http::uri::InvalidUri| kube::Error::Service(Box::new(e)))?;
        kube::Client::try_from(kube::Config::new(uri))
    }

    /// A kubeconfig that points kubectl at this server (plain HTTP).
    pub fn kubeconfig(&self) -> String {
        crate::kubeconfig::render(&self.url())
    }

    pub fn write_kubeconfig(&self, path: impl AsRef<Path>) -> io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// Fault injection controls.
    pub fn faults(&self) -> Faults {
        Faults(self.shared.clone())
    }

    /// The request log and write feed.
    pub fn requests(&self) -> Requests {
        Requests(self.shared.clone())
    }

    /// Client TCP connections open now, and the most open at once since
    /// start or [`Emulator::reset_connection_peak`].
    pub fn connections(&self) -> Connections {
        self.shared.connections.get()
    }

    /// Starts counting the peak again from the connections open now (e.g.
    /// once set-up clients are gone and the client under test starts).
    pub fn reset_connection_peak(&self) {
        self.shared.connections.reset_peak();
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().rv()
    }

    fn target(&self, gvr: &Gvr, namespace: &str) -> Result<Target, ApiError> {
        let ty = self
            .shared
            .store
            .lock()
            .registry
            .find(&gvr.group, &gvr.version, &gvr.resource)
            .ok_or_else(ApiError::no_route)?;
        let namespace = if ty.namespaced {
            namespace.to_string()
        } else {
            String::new()
        };
        Ok(Target {
            ty,
            version: gvr.version.clone(),
            namespace,
        })
    }

    /// The stored object, straight from memory (no HTTP, no log entry).
    pub fn get_json(&self, gvr: impl Into<Gvr>, namespace: &str, name: &str) -> Option<Value> {
        let gvr = gvr.into();
        let t = self.target(&gvr, namespace).ok()?;
        let obj = self.shared.store.lock().get(&t.gr(), &t.namespace, name)?;
        let mut v = (*obj).clone();
        v["apiVersion"] = json!(t.api_version());
        Some(v)
    }

    /// Stored objects of a resource (all namespaces when `namespace` is None).
    pub fn list_json(&self, gvr: impl Into<Gvr>, namespace: Option<&str>) -> Vec<Value> {
        let gvr = gvr.into();
        let gr = GroupResource::new(&gvr.group, &gvr.resource);
        self.shared
            .store
            .lock()
            .list(&gr, namespace)
            .into_iter()
            .map(|o| (*o).clone())
            .collect()
    }

    /// Creates an object through the normal write path (validation,
    /// defaults, events), without HTTP.
    pub fn create_json(
        &self,
        gvr: impl Into<Gvr>,
        namespace: &str,
        object: Value,
    ) -> Result<Value, ApiError> {
        let gvr = gvr.into();
        let t = self.target(&gvr, namespace)?;
        let opts = WriteOpts {
            manager: "kube-emulator".into(),
            dry_run: false,
            validation: FieldValidation::Warn,
        };
        let w = objects::create(&mut self.shared.store.lock(), &t, &opts, object)?;
        Ok((*w.object).clone())
    }

    /// Marks a pod ready or not ready, as a kubelet's readiness probe
    /// would: the `Ready` and `ContainersReady` conditions (a new
    /// `lastTransitionTime` when they change) and each container's `ready`.
    /// With `Config::workload_controllers` its ReplicaSet/StatefulSet and
    /// Deployment status follow. False when the pod does not exist.
    pub fn set_pod_ready(&self, namespace: &str, name: &str, ready: bool) -> bool {
        crate::controllers::set_pod_ready(&mut self.shared.store.lock(), namespace, name, ready)
    }

    /// Binds a Pending pod to the emulator's node and reports it Running
    /// and Ready, as a scheduler and kubelet would (for pods left Pending by
    /// `Config::pods_pending`). False when the pod does not exist.
    pub fn start_pod(&self, namespace: &str, name: &str) -> bool {
        crate::controllers::start_pod(&mut self.shared.store.lock(), namespace, name)
    }

    /// Stops the server and drops every connection.
    pub fn shutdown(&self) {
        self.shutdown.cancel();
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
