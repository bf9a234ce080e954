//! The Deployment controller stand-in: one ReplicaSet per pod template
//! (`<deployment>-<pod-template-hash>`) scaled to `spec.replicas`, older
//! ones scaled to 0 at once, and the Deployment's status summed from them.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::hash::pod_template_hash;
use super::kubelet::controller_ref;
use super::pod;
use super::replicaset::set_count;
use super::writes::{self, deployments, replicasets};
use crate::objects::Sub;
use crate::store::Store;

pub const HASH_LABEL: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";
const DESIRED: &str = "deployment.kubernetes.io/desired-replicas";
const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

fn owned_replicasets(store: &Store, d: &Value) -> Vec<Arc<Value>> {
    let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
    store
        .list(&replicasets(), Some(ns))
        .into_iter()
        .filter(|r| pod::controller_uid(r, "Deployment") == Some(pod::uid(d)))
        .collect()
}

fn revision(obj: &Value) -> i64 {
    obj["metadata"]["annotations"][REVISION]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn replicas(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1).max(0)
}

/// `replicas + maxSurge` (an int or a percentage rounded up; default 25%).
fn max_replicas(d: &Value) -> i64 {
    let n = replicas(d);
    let surge = &d["spec"]["strategy"]["rollingUpdate"]["maxSurge"];
    let extra = match surge.as_str().and_then(|s| s.strip_suffix('%')) {
        Some(pct) => (n * pct.parse::<i64>().unwrap_or(25) + 99) / 100,
        None => surge.as_i64().unwrap_or((n * 25 + 99) / 100),
    };
    n + extra
}

/// The template with the hash label: what the new ReplicaSet's pods get.
fn hashed_template(d: &Value, hash: &str) -> Value {
    let mut template = d["spec"]["template"].clone();
    template["metadata"]["labels"][HASH_LABEL] = json!(hash);
    template
}

fn new_replicaset(d: &Value, name: &str, hash: &str, revision: i64) -> Value {
    let template = hashed_template(d, hash);
    let mut selector = d["spec"]["selector"].clone();
    selector["matchLabels"][HASH_LABEL] = json!(hash);
    let mut spec = json!({"replicas": replicas(d), "selector": selector, "template": template});
    if let Some(m) = d["spec"].get("minReadySeconds") {
        spec["minReadySeconds"] = m.clone();
    }
    json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": name,
            "labels": template["metadata"]["labels"],
            "annotations": {
                REVISION: revision.to_string(),
                DESIRED: replicas(d).to_string(),
                MAX_REPLICAS: max_replicas(d).to_string(),
            },
            "ownerReferences": [controller_ref(d, "Deployment")],
        },
        "spec": spec,
    })
}

/// Sets `spec.replicas` and the bookkeeping annotations of an owned
/// ReplicaSet (one write, only when something differs).
fn scale_replicaset(store: &mut Store, rs: &Value, d: &Value, to: i64, revision: Option<i64>) {
    let mut next = rs.clone();
    next["spec"]["replicas"] = json!(to);
    let notes = &mut next["metadata"]["annotations"];
    notes[DESIRED] = json!(replicas(d).to_string());
    notes[MAX_REPLICAS] = json!(max_replicas(d).to_string());
    if let Some(r) = revision {
        notes[REVISION] = json!(r.to_string());
    }
    if next != *rs {
        writes::replace(store, &replicasets(), next, Sub::Main, None);
    }
}

/// Makes the ReplicaSet of the current template hold `spec.replicas` and
/// every older one 0; the Deployment's revision annotation follows.
pub fn sync(store: &mut Store, d: &Arc<Value>) {
    if !d["metadata"]["deletionTimestamp"].is_null() {
        return;
    }
    let collisions = d["status"]["collisionCount"].as_u64().map(|n| n as u32);
    let hash = pod_template_hash(&d["spec"]["template"], collisions);
    let name = format!("{}-{hash}", pod::name(d));
    let ns = d["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let owned = owned_replicasets(store, d);
    let (current, old): (Vec<_>, Vec<_>) = owned.into_iter().partition(|r| pod::name(r) == name);
    let newest_old = old.iter().map(|r| revision(r)).max().unwrap_or(0);
    let rev = match current.first() {
        Some(rs) if revision(rs) > newest_old => revision(rs),
        _ => newest_old + 1,
    };
    match current.first() {
        Some(rs) => scale_replicaset(store, rs, d, replicas(d), Some(rev)),
        None if store.get(&replicasets(), &ns, &name).is_some() => {
            tracing::warn!(%name, "a ReplicaSet not owned by the Deployment holds its name");
        }
        None => {
            writes::create(
                store,
                &replicasets(),
                &ns,
                new_replicaset(d, &name, &hash, rev),
            );
        }
    }
    for rs in &old {
        scale_replicaset(store, rs, d, 0, None);
    }
    set_revision(store, d, rev);
}

fn set_revision(store: &mut Store, d: &Arc<Value>, rev: i64) {
    if revision(d) == rev {
        return;
    }
    let ns = d["metadata"]["namespace"].as_str().unwrap_or_default();
    let Some(fresh) = store.get(&deployments(), ns, pod::name(d)) else {
        return;
    };
    let mut next = (*fresh).clone();
    next["metadata"]["annotations"][REVISION] = json!(rev.to_string());
    writes::replace(store, &deployments(), next, Sub::Main, None);
}

fn sum(sets: &[Arc<Value>], key: &str) -> i64 {
    sets.iter().filter_map(|r| r["status"][key].as_i64()).sum()
}

/// The Deployment status the real controller computes from its
/// ReplicaSets (every count `omitempty`).
pub fn update_status(store: &mut Store, d: &Arc<Value>) {
    let owned = owned_replicasets(store, d);
    let hash = pod_template_hash(
        &d["spec"]["template"],
        d["status"]["collisionCount"].as_u64().map(|n| n as u32),
    );
    let updated: i64 = owned
        .iter()
        .filter(|r| r["metadata"]["labels"][HASH_LABEL] == hash.as_str())
        .filter_map(|r| r["status"]["replicas"].as_i64())
        .sum();
    let total_spec: i64 = owned.iter().map(|r| replicas(r)).sum();
    let available = sum(&owned, "availableReplicas");
    let mut status: Map<String, Value> = d["status"].as_object().cloned().unwrap_or_default();
    let count = |n: i64| n.max(0) as usize;
    set_count(&mut status, "replicas", count(sum(&owned, "replicas")));
    set_count(&mut status, "updatedReplicas", count(updated));
    set_count(
        &mut status,
        "readyReplicas",
        count(sum(&owned, "readyReplicas")),
    );
    set_count(&mut status, "availableReplicas", count(available));
    set_count(
        &mut status,
        "unavailableReplicas",
        count(total_spec - available),
    );
    if let Some(g) = d["metadata"]["generation"].as_i64() {
        status.insert("observedGeneration".into(), json!(g));
    }
    let status = Value::Object(status);
    if d["status"] != status {
        let mut next = (**d).clone();
        next["status"] = status;
        writes::replace(store, &deployments(), next, Sub::Status, None);
    }
}
