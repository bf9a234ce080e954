//! The ReplicaSet controller stand-in: keeps `spec.replicas` active pods
//! (creating from the template, deleting in the real controller's order)
//! and reports their counts in status.

use std::sync::Arc;

use serde_json::{json, Map, Value};

use super::kubelet;
use super::pod;
use super::ranking;
use super::writes::{self, pods, replicasets};
use super::Settings;
use crate::objects::Sub;
use crate::selectors::LabelSelector;
use crate::store::Store;

/// The real controller's generated-name prefix limit (63 - 5 random).
const MAX_PREFIX: usize = 58;

fn selector(rs: &Value) -> Option<LabelSelector> {
    LabelSelector::parse(&crate::scale::selector_string(&rs["spec"]["selector"])).ok()
}

/// Active pods the ReplicaSet controls (owner reference) and still selects.
pub fn owned_pods(store: &Store, rs: &Value) -> Vec<Arc<Value>> {
    let ns = rs["metadata"]["namespace"].as_str().unwrap_or_default();
    let Some(sel) = selector(rs) else {
        return Vec::new();
    };
    store
        .list(&pods(), Some(ns))
        .into_iter()
        .filter(|p| pod::is_active(p) && pod::controller_uid(p, "ReplicaSet") == Some(pod::uid(rs)))
        .filter(|p| sel.matches(p))
        .collect()
}

/// Pods of every ReplicaSet with the same controller (Deployment) as `rs`:
/// the population the "doubled up" rank counts on each node.
fn related_pods(store: &Store, rs: &Value) -> Vec<Arc<Value>> {
    let Some(owner) = pod::controller_uid(rs, "Deployment") else {
        return owned_pods(store, rs);
    };
    let ns = rs["metadata"]["namespace"].as_str().unwrap_or_default();
    store
        .list(&replicasets(), Some(ns))
        .iter()
        .filter(|r| pod::controller_uid(r, "Deployment") == Some(owner))
        .flat_map(|r| owned_pods(store, r))
        .collect()
}

fn desired(obj: &Value) -> usize {
    obj["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize
}

/// Creates one pod (then its status, as the kubelet would report it).
pub fn start_pod(store: &mut Store, ns: &str, body: Value, settings: &Settings) {
    let Some(created) = writes::create(store, &pods(), ns, body) else {
        return;
    };
    let mut next = (*created).clone();
    next["status"] = if settings.pods_pending {
        kubelet::pending_status()
    } else {
        kubelet::running_status(&created)
    };
    writes::replace(store, &pods(), next, Sub::Status, Some(writes::KUBELET));
}

fn create_pods(store: &mut Store, rs: &Value, count: usize, settings: &Settings) {
    let ns = rs["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let mut prefix = format!("{}-", pod::name(rs));
    prefix.truncate(MAX_PREFIX);
    for _ in 0..count {
        let owner = kubelet::controller_ref(rs, "ReplicaSet");
        let mut body = kubelet::pod_from_template(
            &rs["spec"]["template"],
            owner,
            &Map::new(),
            !settings.pods_pending,
        );
        body["metadata"]["generateName"] = json!(prefix);
        start_pod(store, &ns, body, settings);
    }
}

fn delete_pods(store: &mut Store, rs: &Value, owned: &[Arc<Value>], count: usize) {
    let related = related_pods(store, rs);
    let related: Vec<&Value> = related.iter().map(|p| &**p).collect();
    let candidates: Vec<&Value> = owned.iter().map(|p| &**p).collect();
    let chosen: Vec<Value> = ranking::victims(&candidates, &related, count, pod::now_nanos())
        .into_iter()
        .cloned()
        .collect();
    for victim in chosen {
        writes::terminate_pod(store, &victim);
    }
}

/// One sync of one ReplicaSet: pods to match `spec.replicas`, then status.
pub fn sync(store: &mut Store, rs: &Arc<Value>, settings: &Settings) {
    let owned = owned_pods(store, rs);
    let want = desired(rs);
    if rs["metadata"]["deletionTimestamp"].is_null() {
        if owned.len() < want {
            create_pods(store, rs, want - owned.len(), settings);
        } else if owned.len() > want {
            delete_pods(store, rs, &owned, owned.len() - want);
        }
    }
    let ns = rs["metadata"]["namespace"].as_str().unwrap_or_default();
    if let Some(fresh) = store.get(&replicasets(), ns, pod::name(rs)) {
        update_status(store, &fresh);
    }
}

/// Ready for at least `minReadySeconds`.
fn is_available(p: &Value, min_ready_secs: i64) -> bool {
    if !pod::is_ready(p) {
        return false;
    }
    if min_ready_secs <= 0 {
        return true;
    }
    let since = pod::ready_since(p).unwrap_or(i64::MAX);
    since.saturating_add(min_ready_secs.saturating_mul(1_000_000_000)) <= pod::now_nanos()
}

/// Sets a count the way Go serializes an `omitempty` integer.
pub fn set_count(status: &mut Map<String, Value>, key: &str, n: usize) {
    if n == 0 {
        status.remove(key);
    } else {
        status.insert(key.into(), json!(n));
    }
}

fn update_status(store: &mut Store, rs: &Value) {
    let owned = owned_pods(store, rs);
    let template =
        LabelSelector::parse(&label_string(&rs["spec"]["template"]["metadata"]["labels"])).ok();
    let min_ready = rs["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let count = |f: &dyn Fn(&Value) -> bool| owned.iter().filter(|p| f(p)).count();
    let mut status = rs["status"].as_object().cloned().unwrap_or_default();
    status.insert("replicas".into(), json!(owned.len()));
    set_count(
        &mut status,
        "fullyLabeledReplicas",
        count(&|p| template.as_ref().is_some_and(|s| s.matches(p))),
    );
    set_count(&mut status, "readyReplicas", count(&|p| pod::is_ready(p)));
    set_count(
        &mut status,
        "availableReplicas",
        count(&|p| is_available(p, min_ready)),
    );
    if let Some(g) = rs["metadata"]["generation"].as_i64() {
        status.insert("observedGeneration".into(), json!(g));
    }
    let status = Value::Object(status);
    if rs["status"] != status {
        let mut next = rs.clone();
        next["status"] = status;
        writes::replace(store, &replicasets(), next, Sub::Status, None);
    }
}

/// `a=1,b=2` for a label map (an equality selector).
fn label_string(labels: &Value) -> String {
    crate::scale::selector_string(&json!({"matchLabels": labels}))
}
