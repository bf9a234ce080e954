//! Wiring the kube-rs Controller: the WorkerPool watch (filtered to spec and
//! annotation changes, so our own status writes do not wake pools), and the
//! Deployment/StatefulSet watches that both fill the caches and wake the
//! pools naming a changed target, and the HPA watch that feeds the HPA index.
//! The Controller only hands changes to the poll engine (`engine.rs`),
//! which owns every pool's clock; the status writer (`status_writer.rs`)
//! runs beside them.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::api::Api;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{predicates, watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use tracing::{info, warn};

use super::context::Context;
use super::error::{Error, Result};
use super::targets::TargetKey;
use crate::api::WorkerPool;

/// Where to watch.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    /// Watch one namespace; None = all namespaces.
    pub namespace: Option<String>,
}

impl Scope {
    pub fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        match &self.namespace {
            Some(ns) => Api::namespaced(client.clone(), ns),
            None => Api::all(client.clone()),
        }
    }
}

/// The caches the controller reads instead of GETs, and their watch streams.
pub struct Caches {
    pub deployments: Store<Deployment>,
    pub statefulsets: Store<StatefulSet>,
    streams: Option<CacheStreams>,
}

type Boxed<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

struct CacheStreams {
    deployments: Boxed<Deployment>,
    statefulsets: Boxed<StatefulSet>,
    hpas: Boxed<watcher::Event<HorizontalPodAutoscaler>>,
}

/// A watcher config that does not fetch what the operator never reads.
fn config() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

/// A workload kind the operator caches: what it keeps of one, and its replicas.
trait Workload:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
    fn replicas(&self) -> Option<i32>;
    /// Drops the pod template: most of the object, and never read.
    fn trim(&mut self);
}

impl Workload for Deployment {
    fn replicas(&self) -> Option<i32> {
        self.spec.as_ref().and_then(|s| s.replicas)
    }
    fn trim(&mut self) {
        if let Some(s) = self.spec.as_mut() {
            s.template = Default::default();
        }
    }
}

impl Workload for StatefulSet {
    fn replicas(&self) -> Option<i32> {
        self.spec.as_ref().and_then(|s| s.replicas)
    }
    fn trim(&mut self) {
        if let Some(s) = self.spec.as_mut() {
            s.template = Default::default();
        }
    }
}

/// Hash of what makes a target change interesting: its identity and its
/// replica count (status churn of a rolling Deployment is not).
fn replicas_hash<K: Workload>(obj: &K) -> Option<u64> {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    obj.meta().uid.hash(&mut h);
    obj.replicas().hash(&mut h);
    Some(h.finish())
}

/// One watch that both fills the cache of `K` and yields the objects whose
/// replica count changed (to wake the pools naming them).
fn workload_watch<K: Workload>(client: &Client, scope: &Scope) -> (Store<K>, Boxed<K>) {
    let (store, writer) = reflector::store();
    let stream = watcher(scope.api::<K>(client), config())
        .default_backoff()
        .modify(|o: &mut K| {
            o.managed_fields_mut().clear();
            o.trim();
        })
        .reflect(writer)
        .applied_objects()
        .predicate_filter(replicas_hash::<K>, Default::default());
    (store, stream.boxed())
}

impl Caches {
    pub fn new(client: &Client, scope: &Scope) -> Self {
        let (deployments, d) = workload_watch::<Deployment>(client, scope);
        let (statefulsets, s) = workload_watch::<StatefulSet>(client, scope);
        let hpas = watcher(scope.api::<HorizontalPodAutoscaler>(client), config())
            .default_backoff()
            .boxed();
        Caches {
            deployments,
            statefulsets,
            streams: Some(CacheStreams {
                deployments: d,
                statefulsets: s,
                hpas,
            }),
        }
    }
}

fn wake(
    ctx: &Arc<Context>,
    namespace: Option<String>,
    kind: &str,
    name: String,
) -> Vec<ObjectRef<WorkerPool>> {
    let key = TargetKey {
        namespace: namespace.unwrap_or_default(),
        group: "apps".to_string(),
        kind: kind.to_string(),
        name,
    };
    ctx.targets.pools_for(&key)
}

/// Forgets pools that were deleted (the Controller never reconciles those).
async fn forget_deleted_pools(ctx: Arc<Context>, pools: Store<WorkerPool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(30));
    loop {
        tick.tick().await;
        ctx.retain_pools(|k| pools.get(k).is_some());
    }
}

/// The Controller's reconcile: a changed pool (or its target) is handed
/// to the poll engine, which polls it in the next slot. Never waits for
/// the poll: the Controller keeps no timer of its own.
async fn hand_to_engine(pool: Arc<WorkerPool>, ctx: Arc<Context>) -> Result<Action> {
    if pool.namespace().is_none() {
        return Err(Error::NoNamespace);
    }
    let entry = ctx.observe(pool);
    ctx.engine.schedule(&entry, std::time::Instant::now());
    Ok(Action::await_change())
}

/// Only a pool without a namespace fails to be handed over; the CRD never
/// allows one, so it is not retried.
fn never_retry(_: Arc<WorkerPool>, _: &Error, _: Arc<Context>) -> Action {
    Action::await_change()
}

/// Keeps the pool index and the engine in step with the pool watch: every
/// pool's claim on its target is known before any pool polls, and a
/// deleted pool stops at once.
fn observe_pool_event(ctx: &Context, event: &watcher::Event<WorkerPool>) {
    ctx.targets.observe(event);
    if let watcher::Event::Delete(pool) = event {
        ctx.forget(&ObjectRef::from_obj(pool));
    }
}

/// The WorkerPool watch: only spec (generation), annotation and identity
/// changes wake a pool, so the operator's own status writes do not.
fn pool_watch(
    client: &Client,
    scope: &Scope,
    ctx: Arc<Context>,
) -> (
    Store<WorkerPool>,
    impl Stream<Item = Result<WorkerPool, watcher::Error>>,
) {
    let (store, writer) = reflector::store::<WorkerPool>();
    let stream = watcher(scope.api::<WorkerPool>(client), watcher::Config::default())
        .default_backoff()
        // managedFields are a third of a pool's size in the cache and never read.
        .modify(|p: &mut WorkerPool| p.managed_fields_mut().clear())
        .reflect(writer)
        .inspect_ok(move |event| observe_pool_event(&ctx, event))
        .applied_objects()
        .predicate_filter(
            |p: &WorkerPool| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                predicates::generation(p).hash(&mut h);
                predicates::annotations(p).hash(&mut h);
                p.uid().hash(&mut h);
                Some(h.finish())
            },
            Default::default(),
        );
    (store, stream)
}

/// Runs the controller until `shutdown` resolves. Returns when drained.
pub async fn run(
    client: Client,
    scope: Scope,
    mut caches: Caches,
    ctx: Arc<Context>,
    concurrency: u16,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let Some(streams) = caches.streams.take() else {
        return;
    };
    let (pool_store, pools) = pool_watch(&client, &scope, ctx.clone());
    // The HPA watch and the clean-up of deleted pools live exactly as long
    // as the controller: a stopped operator keeps no watch open.
    let hpa_ctx = ctx.clone();
    let hpas = streams.hpas.for_each(move |event| {
        if let Ok(event) = event {
            hpa_ctx.hpas.apply(&event);
        }
        async {}
    });
    let gc = forget_deleted_pools(ctx.clone(), pool_store.clone());
    let engine = super::engine::run(ctx.clone());
    let status_writer = super::status_writer::run(ctx.clone());

    let (c1, c2) = (ctx.clone(), ctx.clone());
    let controller = Controller::for_stream(pools, pool_store)
        .with_config(controller::Config::default().concurrency(concurrency))
        .watches_stream(streams.deployments, move |d: Deployment| {
            wake(&c1, d.namespace(), "Deployment", d.name_any())
        })
        .watches_stream(streams.statefulsets, move |s: StatefulSet| {
            wake(&c2, s.namespace(), "StatefulSet", s.name_any())
        })
        .graceful_shutdown_on(shutdown)
        .run(hand_to_engine, never_retry, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::trace!(workerpool = %obj.name, "reconciled"),
                Err(controller::Error::ReconcilerFailed(e, obj)) => {
                    warn!(workerpool = %obj.name, error = %e, reason = e.metric_label(), "reconcile failed")
                }
                Err(e) => warn!(error = %e, "controller"),
            }
        });
    tokio::select! {
        _ = controller => {}
        _ = futures::future::join4(hpas, gc, engine, status_writer) => {}
    }
    info!("controller stopped");
}
