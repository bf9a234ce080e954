//! The target's pods at scale-in time (`spec.scaleIn`): which of them are
//! busy, and their `controller.kubernetes.io/pod-deletion-cost`.
//!
//! Pods are found by the target's own selector with one labelled LIST, only
//! when a pool with `scaleIn` is about to scale in: no Pod watch, so the
//! operator's memory does not grow with the pods of the cluster, and pools
//! without `scaleIn` never touch a pod.
//!
//! Deletion cost (Deployments only: their ReplicaSet removes the pods of
//! lowest cost first; a StatefulSet always removes its highest ordinal): an
//! idle pod costs 0 (the annotation is removed, which the ReplicaSet reads
//! as 0), a busy pod its number of busy tasks, so idle pods go first and,
//! among busy ones, those doing the least. Only pods whose cost changes are
//! patched (JSON merge patch of the one annotation).

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use kube::Client;

use super::context::Context;
use super::status::FIELD_MANAGER;
use super::target::{cached_kind, CachedKind};
use crate::api::ScaleTargetRef;
use crate::sources::BusyPods;

/// The annotation the ReplicaSet controller ranks pods by on scale-in.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// The target's running pods (not terminating, not finished), by the
/// target's selector.
pub async fn target_pods(
    ctx: &Context,
    r: &ScaleTargetRef,
    namespace: &str,
    resolved: Option<&kube::discovery::ApiResource>,
) -> Result<Vec<Pod>, String> {
    let selector = selector(ctx, r, namespace, resolved).await?;
    if selector.is_empty() {
        return Err(format!("{} {} has no pod selector", r.kind, r.name));
    }
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), namespace);
    let list = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| {
            format!(
                "listing the pods of {} {} ({selector}): {e}",
                r.kind, r.name
            )
        })?;
    Ok(list.items.into_iter().filter(is_running).collect())
}

/// A pod that counts among the target's replicas.
fn is_running(p: &Pod) -> bool {
    let finished = (p.status.as_ref())
        .and_then(|s| s.phase.as_deref())
        .is_some_and(|ph| ph == "Succeeded" || ph == "Failed");
    p.metadata.deletion_timestamp.is_none() && !finished
}

/// The target's label selector as a string: from the watch caches for
/// Deployments and StatefulSets, from `/scale` for other kinds.
async fn selector(
    ctx: &Context,
    r: &ScaleTargetRef,
    namespace: &str,
    resolved: Option<&kube::discovery::ApiResource>,
) -> Result<String, String> {
    let of = |s: Option<&Result<Box<str>, Box<str>>>| -> Result<String, String> {
        match s.ok_or_else(|| format!("{} {} not found", r.kind, r.name))? {
            Ok(s) => Ok(s.to_string()),
            Err(e) => Err(format!("the selector of {} {}: {e}", r.kind, r.name)),
        }
    };
    match (cached_kind(r), resolved) {
        (Some(CachedKind::Deployment), _) => {
            let d = ctx.deployments.get(namespace, &r.name);
            of(d.as_ref().and_then(|d| d.selector.as_ref()))
        }
        (Some(CachedKind::StatefulSet), _) => {
            let s = ctx.statefulsets.get(namespace, &r.name);
            of(s.as_ref().and_then(|s| s.selector.as_ref()))
        }
        (None, Some(ar)) => {
            let api: Api<DynamicObject> = Api::namespaced_with(ctx.client.clone(), namespace, ar);
            let scale = (api.get_scale(&r.name).await).map_err(|e| format!("{e}"))?;
            Ok(scale.status.and_then(|s| s.selector).unwrap_or_default())
        }
        (None, None) => Err(format!("{} {} is not resolved", r.kind, r.name)),
    }
}

/// The cost a pod should have: its busy tasks, or None (0) when idle.
fn wanted_cost(busy: &BusyPods, pod: &str) -> Option<String> {
    match busy.tasks(pod) {
        0 => None,
        n => Some(n.to_string()),
    }
}

/// Writes the deletion cost of every pod whose cost changes; returns how
/// many were patched. The first failure stops (the scale-in then holds).
pub async fn write_deletion_costs(
    client: &Client,
    namespace: &str,
    pods: &[Pod],
    busy: &BusyPods,
) -> Result<usize, String> {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let pp = PatchParams {
        field_manager: Some(FIELD_MANAGER.into()),
        ..PatchParams::default()
    };
    let mut patched = 0;
    for p in pods {
        let Some(name) = p.metadata.name.as_deref() else {
            continue;
        };
        let now = (p.metadata.annotations.as_ref()).and_then(|a| a.get(DELETION_COST));
        let want = wanted_cost(busy, name);
        if now.map(|s| s.trim()) == want.as_deref() || (now.is_none() && want.is_none()) {
            continue;
        }
        let body = serde_json::json!({"metadata": {"annotations": {DELETION_COST: want}}});
        api.patch(name, &pp, &Patch::Merge(body))
            .await
            .map_err(|e| format!("writing {DELETION_COST} on pod {name}: {e}"))?;
        patched += 1;
    }
    Ok(patched)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_pods_cost_nothing_and_busy_ones_their_tasks() {
        let mut b = BusyPods::default();
        b.add("w-a", 3);
        assert_eq!(wanted_cost(&b, "w-a").as_deref(), Some("3"));
        assert_eq!(wanted_cost(&b, "w-b"), None);
    }

    #[test]
    fn terminating_and_finished_pods_do_not_count() {
        let mut p = Pod::default();
        assert!(is_running(&p));
        p.status = Some(k8s_openapi::api::core::v1::PodStatus {
            phase: Some("Succeeded".into()),
            ..Default::default()
        });
        assert!(!is_running(&p));
    }
}
