//! A test cluster: the in-repo Kubernetes API emulator (or, with `WP_KUBE`,
//! a real API server: see control_plane.rs) with the real CRD installed,
//! plus helpers to run the real operator against it and to poll for
//! outcomes with a deadline (never sleep-and-hope).

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use workerpool_operator::sources::policy::EndpointPolicy;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube_emulator::{Emulator, Gvr};

pub use super::control_plane::{backend, Backend};
use super::control_plane::{real_client, unique_namespace};
pub use super::real_api::{install_crd, EmulatorOnly};
use serde_json::{json, Value};
use workerpool_operator::controller::Settings;
use workerpool_operator::runtime::leader::LeaseConfig;
use workerpool_operator::runtime::{Operator, RunConfig};

pub struct Cluster {
    pub emu: EmulatorOnly,
    pub client: kube::Client,
    pub ns: String,
    pub backend: Backend,
}

/// The operator's settings in tests: production resync and Secret refresh.
pub fn test_settings() -> Settings {
    Settings {
        status_resync: Duration::from_secs(30),
        secret_refresh: Duration::from_secs(60),
    }
}

/// Polls `f` until it returns Some, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

impl Cluster {
    /// Starts the backend `WP_KUBE` selects (the emulator by default),
    /// installs crds/workerpool.yaml and creates `ns` (on a real server a
    /// unique namespace named after it, since tests share that server).
    pub async fn start(ns: &str) -> Cluster {
        Cluster::start_on(backend(), ns).await
    }

    /// The emulator with its Deployment/ReplicaSet/StatefulSet controller
    /// stand-ins on: scaling a Deployment creates and deletes its pods.
    pub async fn start_with_workloads(ns: &str) -> Cluster {
        let config = kube_emulator::Config {
            workload_controllers: true,
            ..kube_emulator::Config::default()
        };
        let emu = Emulator::start_with(config).await.expect("emulator");
        let client = emu.client().expect("client");
        Cluster::finish(Some(emu), client, ns.to_string(), Backend::Emulator).await
    }

    pub async fn start_on(backend: Backend, ns: &str) -> Cluster {
        // RUST_LOG=workerpool_operator=debug shows the operator's logs in test output.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let (emu, client, ns) = match backend {
            Backend::Emulator => {
                let emu = Emulator::start().await.expect("emulator");
                let client = emu.client().expect("client");
                (Some(emu), client, ns.to_string())
            }
            real => (None, real_client(real).await, unique_namespace(ns)),
        };
        Cluster::finish(emu, client, ns, backend).await
    }

    async fn finish(
        emu: Option<Emulator>,
        client: kube::Client,
        ns: String,
        backend: Backend,
    ) -> Cluster {
        install_crd(&client).await;
        let namespace: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        Api::<Namespace>::all(client.clone())
            .create(&PostParams::default(), &namespace)
            .await
            .expect("create namespace");
        Cluster {
            emu: EmulatorOnly(emu),
            client,
            ns,
            backend,
        }
    }

    /// Creates a Deployment with `replicas`.
    pub async fn deployment(&self, name: &str, replicas: i32) {
        let d: Deployment = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "w", "image": "worker"}]}}
            }
        }))
        .unwrap();
        Api::<Deployment>::namespaced(self.client.clone(), &self.ns)
            .create(&PostParams::default(), &d)
            .await
            .expect("create deployment");
    }

    pub fn replicas(&self, deployment: &str) -> Option<i64> {
        self.get_json(Gvr::new("apps", "v1", "deployments"), deployment)?["spec"]["replicas"]
            .as_i64()
    }

    /// Applies a WorkerPool (server-side apply, as `kubectl apply --server-side`).
    pub async fn apply_pool(&self, pool: Value) {
        let name = pool["metadata"]["name"].as_str().unwrap().to_string();
        self.pools_api()
            .patch(
                &name,
                &PatchParams::apply("test").force(),
                &Patch::Apply(pool),
            )
            .await
            .expect("apply WorkerPool");
    }

    /// The WorkerPools of this cluster's namespace.
    fn pools_api(&self) -> Api<kube::api::DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.ns,
            &kube::discovery::ApiResource::from_gvk_with_plural(
                &kube::core::GroupVersionKind::gvk("workerpool.dev", "v1alpha1", "WorkerPool"),
                "workerpools",
            ),
        )
    }

    /// The /scale PATCHes the emulator saw for a deployment, with their times.
    pub fn scale_patches(&self, deployment: &str) -> Vec<Instant> {
        let path = format!("/deployments/{deployment}/scale");
        self.emu
            .requests()
            .all()
            .into_iter()
            .filter(|r| r.method == "PATCH" && r.path.ends_with(&path))
            .map(|r| r.at)
            .collect()
    }

    /// Deletes a WorkerPool.
    pub async fn delete_pool(&self, name: &str) {
        self.pools_api()
            .delete(name, &Default::default())
            .await
            .expect("delete WorkerPool");
    }

    pub fn pool(&self, name: &str) -> Value {
        self.get_json(Gvr::new("workerpool.dev", "v1alpha1", "workerpools"), name)
            .unwrap_or(Value::Null)
    }

    pub fn condition(&self, pool: &str, type_: &str) -> Option<(String, String, String)> {
        let p = self.pool(pool);
        p["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == type_)
            .map(|c| {
                (
                    c["status"].as_str().unwrap_or("").to_string(),
                    c["reason"].as_str().unwrap_or("").to_string(),
                    c["message"].as_str().unwrap_or("").to_string(),
                )
            })
    }

    /// events.k8s.io/v1 Events about `pool` with `reason`.
    pub fn events(&self, pool: &str, reason: &str) -> Vec<Value> {
        self.list_json(Gvr::new("events.k8s.io", "v1", "events"))
            .into_iter()
            .filter(|e| e["regarding"]["name"] == pool && e["reason"] == reason)
            .collect()
    }

    /// Starts the real operator in-process against this cluster.
    pub async fn operator(&self, lease: Option<LeaseConfig>) -> Operator {
        let cfg = RunConfig {
            namespace: None,
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            leader_election: lease,
            max_api_writes: 26,
            settings: test_settings(),
            instance: Some("test".into()),
            endpoints: EndpointPolicy::open(),
        };
        let cfg = self.scoped(cfg);
        Operator::start(self.client.clone(), cfg)
            .await
            .expect("start operator")
    }
}

/// GET over plain HTTP/1.0 (for /metrics, /readyz): (status code, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).await.ok()?;
    let code = buf.split_whitespace().nth(1)?.parse().ok()?;
    let body = buf
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((code, body))
}

/// Every `spec.replicas` a Deployment took, as a watch on it saw them (a
/// watch resumes from its last resourceVersion after a drop, and the
/// emulator keeps the history, so no value is missed across outages).
pub struct ReplicaRecorder {
    seen: std::sync::Arc<std::sync::Mutex<Vec<(Instant, i64)>>>,
    last_rv: std::sync::Arc<std::sync::Mutex<Option<String>>>,
    deployment: String,
    task: tokio::task::JoinHandle<()>,
}

/// Retries a dropped test watch every 200 ms (the default backoff grows to
/// 30 s, which would only slow the tests down).
struct QuickRetry;

impl Iterator for QuickRetry {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        Some(Duration::from_millis(200))
    }
}

impl kube::runtime::utils::Backoff for QuickRetry {
    fn reset(&mut self) {}
}

impl ReplicaRecorder {
    /// Every value seen so far, in order, with when it was seen.
    pub fn timeline(&self) -> Vec<(Instant, i64)> {
        self.seen.lock().unwrap().clone()
    }

    /// Every value seen so far, in order.
    pub fn values(&self) -> Vec<i64> {
        self.timeline().into_iter().map(|(_, v)| v).collect()
    }

    /// Waits until the watch has seen the Deployment's current revision,
    /// then asserts that every value it ever took was in [min, max].
    /// Returns the values.
    pub async fn assert_within(&self, c: &Cluster, min: i64, max: i64) -> Vec<i64> {
        eventually(
            "the replica watch caught up with the Deployment",
            Duration::from_secs(60),
            || async {
                let d = c.get_json(Gvr::new("apps", "v1", "deployments"), &self.deployment)?;
                let rv = d["metadata"]["resourceVersion"].as_str()?.to_string();
                (self.last_rv.lock().unwrap().as_deref() == Some(rv.as_str())).then_some(())
            },
        )
        .await;
        let values = self.values();
        assert!(!values.is_empty(), "the replica watch saw nothing");
        for v in &values {
            assert!(
                (min..=max).contains(v),
                "{} took {v} replicas, outside [{min}, {max}]: {values:?}",
                self.deployment
            );
        }
        values
    }
}

impl Drop for ReplicaRecorder {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Cluster {
    /// Starts recording every `spec.replicas` of a Deployment (it may not exist yet).
    pub fn record_replicas(&self, deployment: &str) -> ReplicaRecorder {
        use futures::StreamExt;
        use kube::runtime::{watcher, WatchStreamExt};
        let api = Api::<Deployment>::namespaced(self.client.clone(), &self.ns);
        let cfg = watcher::Config::default().fields(&format!("metadata.name={deployment}"));
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let last_rv = std::sync::Arc::new(std::sync::Mutex::new(None));
        let (s, rv) = (seen.clone(), last_rv.clone());
        let task = tokio::spawn(async move {
            let mut events = watcher(api, cfg).backoff(QuickRetry).boxed();
            while let Some(ev) = events.next().await {
                let d = match ev {
                    Ok(watcher::Event::Apply(d)) | Ok(watcher::Event::InitApply(d)) => d,
                    _ => continue,
                };
                let replicas = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                let mut seen = s.lock().unwrap();
                if seen.last().map(|(_, v)| *v) != Some(i64::from(replicas)) {
                    seen.push((Instant::now(), i64::from(replicas)));
                }
                *rv.lock().unwrap() = d.metadata.resource_version.clone();
            }
        });
        ReplicaRecorder {
            seen,
            last_rv,
            deployment: deployment.to_string(),
            task,
        }
    }

    /// How many times Events with `reason` were reported about `pool`
    /// (kube's Recorder folds a repeat into one Event with `series.count`).
    pub fn event_count(&self, pool: &str, reason: &str) -> i64 {
        self.events(pool, reason)
            .iter()
            .map(|e| e["series"]["count"].as_i64().unwrap_or(1))
            .sum()
    }

    /// A client whose requests carry `User-Agent: agent`, which the
    /// emulator's request log keeps: tests tell operators apart by it.
    pub fn client_as(&self, agent: &str) -> kube::Client {
        let _ = self.emu.client();
        let mut cfg = kube::Config::new(self.emu.url().parse().expect("emulator url"));
        cfg.headers.push((
            reqwest::header::USER_AGENT,
            reqwest::header::HeaderValue::from_str(agent).expect("user agent"),
        ));
        kube::Client::try_from(cfg).expect("client")
    }

    /// Starts the real operator in-process with its own client and settings.
    pub async fn operator_with(
        &self,
        client: kube::Client,
        lease: Option<LeaseConfig>,
        settings: Settings,
    ) -> Operator {
        let cfg = RunConfig {
            namespace: None,
            metrics_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            leader_election: lease,
            max_api_writes: 26,
            settings,
            instance: Some("test".into()),
            endpoints: EndpointPolicy::open(),
        };
        let cfg = self.scoped(cfg);
        Operator::start(client, cfg).await.expect("start operator")
    }
}
