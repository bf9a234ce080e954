//! What the operator keeps of each Deployment and StatefulSet: the few
//! fields a poll reads, not the object.
//!
//! A `Deployment` value is a few KiB even with its pod template emptied
//! (every optional field of the spec, status and metadata takes its room),
//! and a cluster has far more workloads than pools. A snapshot is its
//! replicas, its resourceVersion and its selector: about a tenth of that.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use tokio::sync::Notify;

use super::target::DEFAULT_REPLICAS;

/// One workload as a poll sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// `spec.replicas` (1 when unset, as the API server defaults it).
    pub replicas: i32,
    pub resource_version: Option<String>,
    /// A fingerprint of the uid: a workload deleted and made again under
    /// the same name is news to the pools naming it. Only compared, so
    /// not kept as the 36-character string.
    pub uid: Option<u64>,
    /// The pod selector as a label selector string (`app=w`), rendered
    /// once: a `LabelSelector`'s map takes a whole B-tree node, half a KiB,
    /// for its one label. Err: why it cannot be rendered.
    pub selector: Option<Result<Box<str>, Box<str>>>,
}

/// (namespace, name) of a workload.
pub type Name = (String, String);

/// A snapshot, and the list that last delivered its workload.
struct Held {
    snapshot: Snapshot,
    listed: u64,
}

#[derive(Default)]
struct Inner {
    /// namespace → name → snapshot: looked up by `&str`, without allocating.
    map: RwLock<super::FastMap<String, super::FastMap<String, Held>>>,
    /// The number of the latest (re-)list. A workload it delivers is
    /// marked with it, and at its end the workloads not marked are
    /// forgotten: no set of names is built while thousands are listed.
    list: AtomicU64,
    synced: AtomicBool,
    ready: Notify,
}

/// The snapshots of one kind of workload, filled by its watch. Cheap to
/// clone: clones share it.
#[derive(Clone, Default)]
pub struct TargetCache(Arc<Inner>);

impl TargetCache {
    pub fn get(&self, namespace: &str, name: &str) -> Option<Snapshot> {
        self.with(namespace, name, Snapshot::clone)
    }

    /// `read` of the snapshot of `namespace`/`name`, without copying it.
    pub fn with<T>(
        &self,
        namespace: &str,
        name: &str,
        read: impl FnOnce(&Snapshot) -> T,
    ) -> Option<T> {
        let map = self.0.map.read().unwrap_or_else(|p| p.into_inner());
        map.get(namespace)?
            .get(name)
            .map(|held| read(&held.snapshot))
    }

    /// Records a workload; true when its replicas or identity changed (or
    /// it is new): what the pools naming it must look at.
    pub fn apply(&self, name: Name, snapshot: Snapshot) -> bool {
        let mut map = self.0.map.write().unwrap_or_else(|p| p.into_inner());
        let listed = self.0.list.load(Ordering::Relaxed);
        let (namespace, name) = name;
        let (replicas, uid) = (snapshot.replicas, snapshot.uid);
        let held = Held { snapshot, listed };
        let old = map.entry(namespace).or_default().insert(name, held);
        old.is_none_or(|o| o.snapshot.replicas != replicas || o.snapshot.uid != uid)
    }

    pub fn delete(&self, name: &Name) {
        let mut map = self.0.map.write().unwrap_or_else(|p| p.into_inner());
        if let Some(names) = map.get_mut(&name.0) {
            names.remove(&name.1);
            if names.is_empty() {
                map.remove(&name.0);
            }
        }
    }

    /// The watch starts a full list: what it does not list again is gone.
    pub fn relist_started(&self) {
        // Under the map's lock, so that no workload is marked with the
        // number of the list before.
        let _map = self.0.map.write().unwrap_or_else(|p| p.into_inner());
        self.0.list.fetch_add(1, Ordering::Relaxed);
    }

    /// The full list is in: forgets what it did not hold.
    pub fn relist_done(&self) {
        let mut map = self.0.map.write().unwrap_or_else(|p| p.into_inner());
        let list = self.0.list.load(Ordering::Relaxed);
        for names in map.values_mut() {
            names.retain(|_, held| held.listed == list);
        }
        map.retain(|_, names| !names.is_empty());
        drop(map);
        self.0.synced.store(true, Ordering::Release);
        self.0.ready.notify_waiters();
    }

    /// Waits until the first full list is in.
    pub async fn wait_until_ready(&self) {
        loop {
            let ready = self.0.ready.notified();
            if self.0.synced.load(Ordering::Acquire) {
                return;
            }
            ready.await;
        }
    }
}

impl Snapshot {
    pub fn new(
        replicas: Option<i32>,
        meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
        selector: Option<LabelSelector>,
    ) -> Self {
        let rendered = selector.map(|s| match kube::core::Selector::try_from(s) {
            Ok(s) => Ok(s.to_string().into_boxed_str()),
            Err(e) => Err(e.to_string().into_boxed_str()),
        });
        Snapshot {
            replicas: replicas.unwrap_or(DEFAULT_REPLICAS),
            resource_version: meta.resource_version.take(),
            uid: meta.uid.as_deref().map(fingerprint),
            selector: rendered,
        }
    }
}

fn fingerprint(uid: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::default().hash_one(uid)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(replicas: i32, rv: &str) -> Snapshot {
        Snapshot {
            replicas,
            resource_version: Some(rv.into()),
            uid: Some(fingerprint("u")),
            selector: None,
        }
    }

    fn name(n: &str) -> Name {
        ("ns".into(), n.into())
    }

    #[test]
    fn only_a_replica_or_identity_change_is_news() {
        let c = TargetCache::default();
        assert!(c.apply(name("a"), snap(1, "1")), "new");
        assert!(!c.apply(name("a"), snap(1, "2")), "status churn");
        assert!(c.apply(name("a"), snap(3, "3")), "replicas");
        let mut remade = snap(3, "4");
        remade.uid = Some(fingerprint("another uid"));
        assert!(c.apply(name("a"), remade), "deleted and made again");
        assert_eq!(
            c.get("ns", "a").map(|s| s.resource_version),
            Some(Some("4".into()))
        );
    }

    #[test]
    fn a_relist_forgets_what_it_no_longer_lists() {
        let c = TargetCache::default();
        c.apply(name("a"), snap(1, "1"));
        c.apply(name("b"), snap(1, "1"));
        c.relist_started();
        c.apply(name("b"), snap(1, "2"));
        c.relist_done();
        assert!(c.get("ns", "a").is_none());
        assert!(c.get("ns", "b").is_some());
    }
}
