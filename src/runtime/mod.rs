//! The boring, dangerous parts, owned once (as kubert does): the HTTP port,
//! leader election, and an orderly shutdown around the controller.

pub mod api_client;
pub mod http;
pub mod leader;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::controller::events::EventSender;
use kube::Client;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::info;

use crate::controller::{self, Caches, Context, Scope, Settings};
use crate::sources::policy::EndpointPolicy;
use crate::sources::Sources;
use leader::LeaseConfig;
use metrics::Metrics;

/// Everything `run` needs besides a client.
#[derive(Clone, Debug)]
pub struct RunConfig {
    /// Watch one namespace; None = all.
    pub namespace: Option<String>,
    pub metrics_addr: SocketAddr,
    /// None = no leader election (this instance always leads).
    pub leader_election: Option<LeaseConfig>,
    /// Most pools reconciled at once.
    /// Most API writes in flight at once.
    pub max_api_writes: u16,
    pub settings: Settings,
    /// Reporting instance for Events (the pod name).
    pub instance: Option<String>,
    /// Which hosts triggers may make the operator connect to.
    pub endpoints: EndpointPolicy,
}

/// Whether this instance leads, and whether that is known yet (with
/// election, not before the first Lease read).
#[derive(Clone)]
struct Leadership {
    leader: Arc<AtomicBool>,
    known: Arc<AtomicBool>,
}

impl Leadership {
    fn new(always_leads: bool) -> Leadership {
        Leadership {
            leader: Arc::new(AtomicBool::new(always_leads)),
            known: Arc::new(AtomicBool::new(always_leads)),
        }
    }
}

/// The controller's shared context: clients, caches, sources, settings.
fn context(
    client: &Client,
    cfg: &RunConfig,
    caches: &Caches,
    metrics: &Arc<Metrics>,
    leader: &Arc<AtomicBool>,
) -> Arc<Context> {
    Arc::new(Context::new(
        client.clone(),
        EventSender::new(
            client.clone(),
            "workerpool-operator",
            // events.k8s.io/v1 requires a reporting instance.
            cfg.instance.as_deref().unwrap_or("workerpool-operator"),
            usize::from(cfg.max_api_writes),
            metrics.events_dropped.clone(),
        ),
        metrics.clone(),
        Sources::with_policy(cfg.endpoints.clone()),
        caches.deployments.clone(),
        caches.statefulsets.clone(),
        leader.clone(),
        cfg.settings.clone(),
    ))
}

/// Sets `/readyz` once every cache has listed and leadership is known, and
/// keeps the leader and pool gauges and the Redis round-trip counters current.
struct Readiness {
    ready: Arc<AtomicBool>,
    leadership: Leadership,
    metrics: Arc<Metrics>,
    ctx: Arc<Context>,
    stores: (
        crate::controller::target_cache::TargetCache,
        crate::controller::target_cache::TargetCache,
    ),
}

impl Readiness {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        tokio::select! { _ = self.synced() => {}, _ = stop.changed() => return }
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let mut round_trips = std::collections::BTreeMap::new();
        loop {
            tokio::select! { _ = tick.tick() => {}, _ = stop.changed() => return }
            let leads = self.leadership.leader.load(Ordering::Acquire);
            self.metrics.is_leader.set(i64::from(leads));
            self.metrics.pools.set(self.ctx.polled_pools() as i64);
            let totals = self.ctx.sources.redis_round_trips_by_server();
            self.metrics.record_round_trips(&totals, &mut round_trips);
            let known = self.leadership.known.load(Ordering::Acquire);
            if known && !self.ready.swap(true, Ordering::AcqRel) {
                info!("ready");
            }
        }
    }

    async fn synced(&self) {
        self.stores.0.wait_until_ready().await;
        self.stores.1.wait_until_ready().await;
        let mut poll = tokio::time::interval(Duration::from_millis(50));
        while !self.ctx.hpas.synced() {
            poll.tick().await;
        }
    }
}

/// A running operator.
pub struct Operator {
    /// Where `/metrics`, `/healthz` and `/readyz` are served.
    pub http_addr: SocketAddr,
    pub ready: Arc<AtomicBool>,
    pub leader: Arc<AtomicBool>,
    pub metrics: Arc<Metrics>,
    ctx: Arc<Context>,
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Operator {
    /// Starts the controller, the HTTP port and (if configured) leader
    /// election. Fails only if the HTTP port cannot be bound.
    pub async fn start(client: Client, cfg: RunConfig) -> std::io::Result<Operator> {
        let metrics = Arc::new(Metrics::new());
        let (stop, stop_rx) = watch::channel(false);
        let leadership = Leadership::new(cfg.leader_election.is_none());
        let ready = Arc::new(AtomicBool::new(false));
        let scope = Scope {
            namespace: cfg.namespace.clone(),
        };
        let caches = Caches::new(&client, &scope);
        let ctx = context(&client, &cfg, &caches, &metrics, &leadership.leader);

        let health = http::Health {
            metrics: metrics.clone(),
            ready: ready.clone(),
        };
        let (http_addr, serve) =
            http::bind(cfg.metrics_addr, health, stopped(stop_rx.clone())).await?;
        info!(%http_addr, "serving /metrics, /healthz, /readyz");
        let mut tasks = vec![tokio::spawn(async move {
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "http server failed");
            }
        })];
        if let Some(lease) = cfg.leader_election.clone() {
            tasks.push(tokio::spawn(leader::hold(
                client.clone(),
                lease,
                leadership.leader.clone(),
                leadership.known.clone(),
                stop_rx.clone(),
            )));
        }
        let readiness = Readiness {
            ready: ready.clone(),
            leadership: leadership.clone(),
            metrics: metrics.clone(),
            ctx: ctx.clone(),
            stores: (caches.deployments.clone(), caches.statefulsets.clone()),
        };
        tasks.push(tokio::spawn(readiness.run(stop_rx.clone())));
        tasks.push(tokio::spawn(controller::run::run(
            client,
            scope,
            caches,
            ctx.clone(),
            stopped(stop_rx),
        )));
        Ok(Operator {
            http_addr,
            ready,
            leader: leadership.leader,
            metrics,
            ctx,
            stop,
            tasks,
        })
    }

    /// Stops scaling at once, releases the lease, drains the controller and
    /// the HTTP port; gives up waiting after `timeout`.
    pub async fn shutdown(self, timeout: Duration) {
        self.ctx.stop();
        let _ = self.stop.send(true);
        let all = futures::future::join_all(self.tasks);
        if tokio::time::timeout(timeout, all).await.is_err() {
            tracing::warn!("shutdown timed out; exiting anyway");
        }
    }

    /// Simulates a crash for tests: stops everything without releasing the
    /// lease or finishing in-flight work.
    pub fn abort(self) {
        self.ctx.stop();
        for t in self.tasks {
            t.abort();
        }
    }
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}
