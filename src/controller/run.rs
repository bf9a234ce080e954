//! The watches and what they feed: the WorkerPool watch keeps each pool's
//! entry (the one copy of the object the operator holds) and hands spec
//! and annotation changes to the poll engine (`engine.rs`), which owns
//! every pool's clock; the Deployment/StatefulSet watches fill trimmed
//! caches and wake the pools naming a target whose replicas changed; the
//! HPA watch feeds the HPA index. The status writer (`status_writer.rs`)
//! runs beside them. No kube-rs Controller: its scheduler would only
//! repeat what the engine does, and its store would be a second copy of
//! every pool.

use std::sync::Arc;
use std::time::Instant;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use tracing::{info, warn};

use super::context::Context;
use super::target_cache::{Name, Snapshot, TargetCache};
use super::targets::{pool_key, TargetKey};
use super::watched_pool::WatchedPool;

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
    pub deployments: TargetCache,
    pub statefulsets: TargetCache,
    streams: Option<CacheStreams>,
}

type Boxed<K> =
    std::pin::Pin<Box<dyn Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send>>;

struct CacheStreams {
    deployments: Boxed<Deployment>,
    statefulsets: Boxed<StatefulSet>,
    hpas: Boxed<HorizontalPodAutoscaler>,
}

/// kube-rs's default: lists in pages of 500 at the latest revision. Not
/// `any_semantic`: a list at `resourceVersion=0` (served from the API
/// server's watch cache) comes whole, and decoding thousands of
/// Deployments at once — a few KiB each before the snapshot keeps a
/// hundred bytes — was the operator's largest peak of memory.
fn config() -> watcher::Config {
    watcher::Config::default()
}

/// A workload kind the operator can scale from its cache.
trait Workload:
    Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
    + Clone
    + std::fmt::Debug
    + serde::de::DeserializeOwned
    + Send
    + Sync
    + 'static
{
    const KIND: &'static str;
    /// What the operator keeps of it.
    fn snapshot(self) -> (Name, Snapshot);
}

fn name_of(meta: &mut ObjectMeta) -> Name {
    (
        meta.namespace.take().unwrap_or_default(),
        meta.name.take().unwrap_or_default(),
    )
}

impl Workload for Deployment {
    const KIND: &'static str = "Deployment";
    fn snapshot(mut self) -> (Name, Snapshot) {
        let spec = self.spec.take();
        let (replicas, selector) = spec.map_or((None, None), |s| (s.replicas, Some(s.selector)));
        let snap = Snapshot::new(replicas, &mut self.metadata, selector);
        (name_of(&mut self.metadata), snap)
    }
}

impl Workload for StatefulSet {
    const KIND: &'static str = "StatefulSet";
    fn snapshot(mut self) -> (Name, Snapshot) {
        let spec = self.spec.take();
        let (replicas, selector) = spec.map_or((None, None), |s| (s.replicas, Some(s.selector)));
        let snap = Snapshot::new(replicas, &mut self.metadata, selector);
        (name_of(&mut self.metadata), snap)
    }
}

fn workload_watch<K: Workload>(client: &Client, scope: &Scope) -> Boxed<K> {
    watcher(scope.api::<K>(client), config())
        .default_backoff()
        .boxed()
}

/// Keeps `cache` in step with its watch; a workload whose replicas (or
/// identity) changed wakes the pools naming it.
fn on_workload_event<K: Workload>(ctx: &Context, cache: &TargetCache, event: watcher::Event<K>) {
    match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
            let (name, snap) = o.snapshot();
            if cache.apply(name.clone(), snap) {
                wake(ctx, name.0, K::KIND, name.1);
            }
        }
        watcher::Event::Delete(o) => {
            let (name, _) = o.snapshot();
            cache.delete(&name);
            wake(ctx, name.0, K::KIND, name.1);
        }
        watcher::Event::Init => cache.relist_started(),
        watcher::Event::InitDone => cache.relist_done(),
    }
}

impl Caches {
    pub fn new(client: &Client, scope: &Scope) -> Self {
        let hpas = watcher(scope.api::<HorizontalPodAutoscaler>(client), config())
            .default_backoff()
            .boxed();
        Caches {
            deployments: TargetCache::default(),
            statefulsets: TargetCache::default(),
            streams: Some(CacheStreams {
                deployments: workload_watch::<Deployment>(client, scope),
                statefulsets: workload_watch::<StatefulSet>(client, scope),
                hpas,
            }),
        }
    }
}

/// A target's replicas changed (or it appeared): the pools naming it are
/// polled in the next slot, where each checks whether it moved away from
/// what the pool expects.
fn wake(ctx: &Context, namespace: String, kind: &str, name: String) {
    let key = TargetKey {
        namespace,
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

/// What the pool watch needs between events: the number of the latest
/// (re-)list, with which the pools it delivers are marked, to forget those
/// deleted while the watch was down.
#[derive(Default)]
struct PoolWatch {
    list: u64,
}

impl PoolWatch {
    /// Keeps the target index, the pool entries and the engine in step
    /// with the pool watch. Every pool's claim on its target is recorded
    /// before any pool polls; a pool whose spec, annotations or identity
    /// changed is polled in the next slot (its own status writes, which
    /// change nothing of those, do not wake it); a deleted pool stops.
    fn on_event(&mut self, ctx: &Context, event: watcher::Event<WatchedPool>) {
        ctx.targets.observe(&event);
        match event {
            watcher::Event::Apply(pool) | watcher::Event::InitApply(pool) => {
                self.applied(ctx, pool)
            }
            watcher::Event::Delete(pool) => ctx.forget(&pool_key(pool.pool())),
            watcher::Event::Init => self.list += 1,
            watcher::Event::InitDone => ctx.forget_unlisted(self.list),
        }
    }

    fn applied(&mut self, ctx: &Context, mut pool: WatchedPool) {
        if pool.pool().namespace().is_none() {
            return; // the CRD is namespaced; never polled
        }
        trim_pool(pool.meta_mut());
        let (entry, changed) = ctx.observe(pool);
        entry.mark_listed(self.list);
        if changed {
            ctx.engine.schedule(&entry, Instant::now());
        }
    }
}

/// Drops every annotation but the operator's own (a
/// `last-applied-configuration` is the whole manifest again); the target
/// index has seen them already. The rest of what a poll never reads is
/// not decoded at all (see `watched_pool`).
fn trim_pool(meta: &mut ObjectMeta) {
    if let Some(a) = meta.annotations.as_mut() {
        a.retain(|k, _| k.starts_with("workerpool.dev/"));
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
    let pools = watcher(scope.api::<WatchedPool>(&client), config())
        .default_backoff()
        .for_each(|event| {
            match event {
                Ok(event) => pool_watch.on_event(&ctx, event),
                Err(e) => warn!(error = %e, "WorkerPool watch"),
            }
            async {}
        });
    let deployments = streams.deployments.for_each(|event| {
        if let Ok(event) = event {
            on_workload_event(&ctx, &caches.deployments, event);
        }
        async {}
    });
    let statefulsets = streams.statefulsets.for_each(|event| {
        if let Ok(event) = event {
            on_workload_event(&ctx, &caches.statefulsets, event);
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
