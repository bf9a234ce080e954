//! Wiring the kube-rs Controller: the WorkerPool watch (filtered to spec and
//! annotation changes, so our own status writes do not wake pools), and the
//! Deployment/StatefulSet watches that both fill the caches and wake the
//! pools naming a changed target.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{predicates, watcher, WatchStreamExt};
use kube::{Client, Resource, ResourceExt};
use tracing::{info, warn};

use super::context::{Context, TargetKey};
use super::reconcile::{error_policy, reconcile};
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
    pub hpas: Store<HorizontalPodAutoscaler>,
    pub secrets: Store<Secret>,
    streams: Option<CacheStreams>,
}

type Boxed<K> = std::pin::Pin<Box<dyn Stream<Item = Result<K, watcher::Error>> + Send>>;

struct CacheStreams {
    deployments: Boxed<Deployment>,
    statefulsets: Boxed<StatefulSet>,
    hpas: Boxed<HorizontalPodAutoscaler>,
    secrets: Boxed<Secret>,
}

/// A watcher config that does not fetch what the operator never reads.
fn config() -> watcher::Config {
    watcher::Config::default().any_semantic()
}

/// Hash of what makes a target change interesting: its identity and its
/// replica count (status churn of a rolling Deployment is not).
fn replicas_predicate<K: Resource>(replicas: fn(&K) -> Option<i32>) -> impl Fn(&K) -> Option<u64> {
    move |obj: &K| {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        obj.meta().uid.hash(&mut h);
        replicas(obj).hash(&mut h);
        Some(h.finish())
    }
}

impl Caches {
    pub fn new(client: &Client, scope: &Scope) -> Self {
        let (deployments, dw) = reflector::store();
        let (statefulsets, sw) = reflector::store();
        let (hpas, hw) = reflector::store();
        let (secrets, secw) = reflector::store();
        let d = watcher(scope.api::<Deployment>(client), config())
            .default_backoff()
            .modify(|o: &mut Deployment| {
                o.managed_fields_mut().clear();
                if let Some(s) = o.spec.as_mut() {
                    s.template = Default::default();
                }
            })
            .reflect(dw)
            .applied_objects()
            .predicate_filter(
                replicas_predicate(|d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas)),
                Default::default(),
            );
        let s = watcher(scope.api::<StatefulSet>(client), config())
            .default_backoff()
            .modify(|o: &mut StatefulSet| {
                o.managed_fields_mut().clear();
                if let Some(s) = o.spec.as_mut() {
                    s.template = Default::default();
                }
            })
            .reflect(sw)
            .applied_objects()
            .predicate_filter(
                replicas_predicate(|d: &StatefulSet| d.spec.as_ref().and_then(|s| s.replicas)),
                Default::default(),
            );
        let h = watcher(scope.api::<HorizontalPodAutoscaler>(client), config())
            .default_backoff()
            .reflect(hw)
            .applied_objects();
        let sec = watcher(scope.api::<Secret>(client), config())
            .default_backoff()
            .modify(|o: &mut Secret| o.managed_fields_mut().clear())
            .reflect(secw)
            .applied_objects();
        Caches {
            deployments,
            statefulsets,
            hpas,
            secrets,
            streams: Some(CacheStreams {
                deployments: d.boxed(),
                statefulsets: s.boxed(),
                hpas: h.boxed(),
                secrets: sec.boxed(),
            }),
        }
    }

    /// Waits until every cache has its first list.
    pub async fn ready(&self) -> Result<(), reflector::store::WriterDropped> {
        self.deployments.wait_until_ready().await?;
        self.statefulsets.wait_until_ready().await?;
        self.hpas.wait_until_ready().await?;
        self.secrets.wait_until_ready().await?;
        Ok(())
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
        kind: kind.to_string(),
        name,
    };
    ctx.pools_for(&key)
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
    let (pool_store, pool_writer) = reflector::store::<WorkerPool>();
    let pools = watcher(scope.api::<WorkerPool>(&client), watcher::Config::default())
        .default_backoff()
        // managedFields are a third of a pool's size in the cache and never read.
        .modify(|p: &mut WorkerPool| p.managed_fields_mut().clear())
        .reflect(pool_writer)
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

    // HPAs and Secrets only feed caches; drive them here.
    tokio::spawn(streams.hpas.for_each(|_| async {}));
    tokio::spawn(streams.secrets.for_each(|_| async {}));

    // Forget pools that were deleted (the Controller never reconciles those).
    let gc_ctx = ctx.clone();
    let gc_store = pool_store.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            gc_ctx.retain_pools(|k| gc_store.get(k).is_some());
        }
    });

    let (c1, c2) = (ctx.clone(), ctx.clone());
    Controller::for_stream(pools, pool_store)
        .with_config(controller::Config::default().concurrency(concurrency))
        .watches_stream(streams.deployments, move |d: Deployment| {
            wake(&c1, d.namespace(), "Deployment", d.name_any())
        })
        .watches_stream(streams.statefulsets, move |s: StatefulSet| {
            wake(&c2, s.namespace(), "StatefulSet", s.name_any())
        })
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|res| async move {
            match res {
                Ok((obj, _)) => tracing::trace!(workerpool = %obj.name, "reconciled"),
                Err(controller::Error::ReconcilerFailed(e, obj)) => {
                    warn!(workerpool = %obj.name, error = %e, reason = e.metric_label(), "reconcile failed")
                }
                Err(e) => warn!(error = %e, "controller"),
            }
        })
        .await;
    info!("controller stopped");
}
