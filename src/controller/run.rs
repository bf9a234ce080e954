//! The watches and what they feed: the WorkerPool watch keeps each pool's
//! entry (the one copy of the object the operator holds) and hands spec
//! and annotation changes to the poll engine (`engine.rs`), which owns
//! every pool's clock; the Deployment/StatefulSet watches fill trimmed
//! caches and wake the pools naming a target whose replicas changed; the
//! HPA watch feeds the HPA index. The status writer (`status_writer.rs`)
//! runs beside them. No kube-rs Controller: its scheduler would only
//! repeat what the engine does, and its store would be a second copy of
//! every pool.

use std::collections::HashSet;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, StatefulSet, StatefulSetSpec};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use tracing::{info, warn};

use super::context::Context;
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
    /// Keeps only what the operator reads (identity, resourceVersion,
    /// replicas, selector): the pod template, status, labels and
    /// annotations (a `last-applied-configuration` is the whole manifest
    /// again) would be most of the cache and are never read.
    fn trim(&mut self);
}

/// The metadata the operator reads of a target.
fn trimmed_meta(meta: &mut ObjectMeta) -> ObjectMeta {
    ObjectMeta {
        name: meta.name.take(),
        namespace: meta.namespace.take(),
        uid: meta.uid.take(),
        resource_version: meta.resource_version.take(),
        ..Default::default()
    }
}

impl Workload for Deployment {
    fn replicas(&self) -> Option<i32> {
        self.spec.as_ref().and_then(|s| s.replicas)
    }
    fn trim(&mut self) {
        let spec = self.spec.take().map(|s| DeploymentSpec {
            replicas: s.replicas,
            selector: s.selector,
            ..Default::default()
        });
        *self = Deployment {
            metadata: trimmed_meta(&mut self.metadata),
            spec,
            status: None,
        };
    }
}

impl Workload for StatefulSet {
    fn replicas(&self) -> Option<i32> {
        self.spec.as_ref().and_then(|s| s.replicas)
    }
    fn trim(&mut self) {
        let spec = self.spec.take().map(|s| StatefulSetSpec {
            replicas: s.replicas,
            selector: s.selector,
            ..Default::default()
        });
        *self = StatefulSet {
            metadata: trimmed_meta(&mut self.metadata),
            spec,
            status: None,
        };
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
        .modify(K::trim)
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

/// A target's replicas changed (or it appeared): the pools naming it are
/// polled in the next slot, where each checks whether it moved away from
/// what the pool expects.
fn wake(ctx: &Context, namespace: Option<String>, kind: &str, name: String) {
    let key = TargetKey {
        namespace: namespace.unwrap_or_default(),
        group: "apps".to_string(),
        kind: kind.to_string(),
        name,
    };
    for pool in ctx.targets.pools_for(&key) {
        if let Some(entry) = ctx.entry(&pool) {
            ctx.engine.schedule(&entry, Instant::now());
        }
    }
}

/// What the pool watch needs between events: the pools seen during a
/// re-list, to forget those deleted while the watch was down.
#[derive(Default)]
struct PoolWatch {
    relisting: Option<HashSet<ObjectRef<WorkerPool>>>,
}

impl PoolWatch {
    /// Keeps the target index, the pool entries and the engine in step
    /// with the pool watch. Every pool's claim on its target is recorded
    /// before any pool polls; a pool whose spec, annotations or identity
    /// changed is polled in the next slot (its own status writes, which
    /// change nothing of those, do not wake it); a deleted pool stops.
    fn on_event(&mut self, ctx: &Context, event: watcher::Event<WorkerPool>) {
        ctx.targets.observe(&event);
        match event {
            watcher::Event::Apply(pool) => self.applied(ctx, pool),
            watcher::Event::InitApply(pool) => {
                if let Some(seen) = self.relisting.as_mut() {
                    seen.insert(ObjectRef::from_obj(&pool));
                }
                self.applied(ctx, pool);
            }
            watcher::Event::Delete(pool) => ctx.forget(&ObjectRef::from_obj(&pool)),
            watcher::Event::Init => self.relisting = Some(HashSet::new()),
            watcher::Event::InitDone => {
                if let Some(seen) = self.relisting.take() {
                    ctx.retain_pools(|k| seen.contains(k));
                }
            }
        }
    }

    fn applied(&mut self, ctx: &Context, mut pool: WorkerPool) {
        if pool.namespace().is_none() {
            return; // the CRD is namespaced; never polled
        }
        // managedFields are a third of a pool's size and never read.
        pool.managed_fields_mut().clear();
        let (entry, changed) = ctx.observe(Arc::new(pool));
        if changed {
            ctx.engine.schedule(&entry, Instant::now());
        }
    }
}

/// Runs the watches, the poll engine and the status writer until
/// `shutdown` resolves.
pub async fn run(
    client: Client,
    scope: Scope,
    mut caches: Caches,
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let Some(streams) = caches.streams.take() else {
        return;
    };
    let mut pool_watch = PoolWatch::default();
    let pools = watcher(scope.api::<WorkerPool>(&client), watcher::Config::default())
        .default_backoff()
        .for_each(|event| {
            match event {
                Ok(event) => pool_watch.on_event(&ctx, event),
                Err(e) => warn!(error = %e, "WorkerPool watch"),
            }
            async {}
        });
    let deployments = streams.deployments.for_each(|d| {
        if let Ok(d) = d {
            wake(&ctx, d.namespace(), "Deployment", d.name_any());
        }
        async {}
    });
    let statefulsets = streams.statefulsets.for_each(|s| {
        if let Ok(s) = s {
            wake(&ctx, s.namespace(), "StatefulSet", s.name_any());
        }
        async {}
    });
    let hpas = streams.hpas.for_each(|event| {
        if let Ok(event) = event {
            ctx.hpas.apply(&event);
        }
        async {}
    });
    let watches = futures::future::join4(pools, deployments, statefulsets, hpas);
    let engine = super::engine::run(ctx.clone());
    let status_writer = super::status_writer::run(ctx.clone());
    tokio::select! {
        _ = shutdown => {}
        _ = futures::future::join3(watches, engine, status_writer) => {}
    }
    info!("controller stopped");
}
