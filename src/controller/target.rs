//! The scale target: its current replicas (from the watch caches for
//! Deployments and StatefulSets, from `/scale` for anything else) and the one
//! PATCH that scales it.

use super::target_cache::TargetCache;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;
use kube::discovery::{pinned_kind, ApiResource};
use kube::Client;

use crate::api::ScaleTargetRef;

/// What the poll found about the target.
#[derive(Clone, Debug, PartialEq)]
pub enum TargetState {
    /// `spec.replicas` of the target (the API's default, 1, when unset).
    Found {
        replicas: i32,
        /// The version the replicas were read from (see `PoolState::patched_over`).
        resource_version: Option<String>,
    },
    NotFound,
}

/// What the API server sets an unset `spec.replicas` to (Deployments and
/// StatefulSets; a custom /scale is read the same way, one rule for all).
pub const DEFAULT_REPLICAS: i32 = 1;

/// Which built-in kind a reference names, if one the operator caches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CachedKind {
    Deployment,
    StatefulSet,
}

pub fn cached_kind(r: &ScaleTargetRef) -> Option<CachedKind> {
    match (r.api_version.as_str(), r.kind.as_str()) {
        ("apps/v1", "Deployment") => Some(CachedKind::Deployment),
        ("apps/v1", "StatefulSet") => Some(CachedKind::StatefulSet),
        _ => None,
    }
}

/// Reads the target from the caches; None when the kind is not cached.
pub fn from_cache(
    r: &ScaleTargetRef,
    namespace: &str,
    deployments: &TargetCache,
    statefulsets: &TargetCache,
) -> Option<TargetState> {
    let cache = match cached_kind(r)? {
        CachedKind::Deployment => deployments,
        CachedKind::StatefulSet => statefulsets,
    };
    let found = cache.with(namespace, &r.name, |s| TargetState::Found {
        replicas: s.replicas,
        resource_version: s.resource_version.clone(),
    });
    Some(found.unwrap_or(TargetState::NotFound))
}

/// The API resource of an arbitrary scale target kind (found by discovery).
pub async fn resolve(client: &Client, r: &ScaleTargetRef) -> Result<ApiResource, kube::Error> {
    let (group, version) = match r.api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", r.api_version.as_str()),
    };
    let gvk = GroupVersionKind::gvk(group, version, &r.kind);
    let (ar, _caps) = pinned_kind(client, &gvk).await?;
    Ok(ar)
}

/// Reads `/scale` of a target the operator does not cache.
pub async fn get_scale(
    client: &Client,
    ar: &ApiResource,
    namespace: &str,
    name: &str,
) -> Result<TargetState, kube::Error> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, ar);
    match api.get_scale(name).await {
        Ok(scale) => Ok(TargetState::Found {
            replicas: scale
                .spec
                .and_then(|s| s.replicas)
                .unwrap_or(DEFAULT_REPLICAS),
            // Read fresh from the API, never stale: nothing to compare.
            resource_version: None,
        }),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(TargetState::NotFound),
        Err(e) => Err(e),
    }
}

/// Scales the target: one merge PATCH of `spec.replicas` on its `/scale`.
pub async fn patch_scale(
    client: &Client,
    r: &ScaleTargetRef,
    resolved: Option<&ApiResource>,
    namespace: &str,
    replicas: i32,
) -> Result<(), kube::Error> {
    let patch = Patch::Merge(serde_json::json!({ "spec": { "replicas": replicas } }));
    let pp = PatchParams::default();
    match (cached_kind(r), resolved) {
        (Some(CachedKind::Deployment), _) => {
            Api::<Deployment>::namespaced(client.clone(), namespace)
                .patch_scale(&r.name, &pp, &patch)
                .await?;
        }
        (Some(CachedKind::StatefulSet), _) => {
            Api::<StatefulSet>::namespaced(client.clone(), namespace)
                .patch_scale(&r.name, &pp, &patch)
                .await?;
        }
        (None, Some(ar)) => {
            Api::<DynamicObject>::namespaced_with(client.clone(), namespace, ar)
                .patch_scale(&r.name, &pp, &patch)
                .await?;
        }
        (None, None) => {
            let ar = resolve(client, r).await?;
            Api::<DynamicObject>::namespaced_with(client.clone(), namespace, &ar)
                .patch_scale(&r.name, &pp, &patch)
                .await?;
        }
    }
    Ok(())
}
