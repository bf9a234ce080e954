//! Which pools name which scale target: so a change of a Deployment wakes
//! the pools that scale it, and so that exactly one pool owns a target.
//!
//! Two active pools on one target would fight (one scales up, the other
//! down, and nobody is told), so the oldest active pool by
//! `metadata.creationTimestamp` owns it, ties broken by name; the others
//! stand down with `ConflictingWorkerPool` until the owner is deleted or
//! retargeted. Paused and shadow pools write nothing, so they never own a
//! target against an active pool and never block one.
//!
//! The index lives in memory, updated when a pool's target or passivity
//! changes, so the ownership check costs one map look-up per poll however
//! many pools there are.

use std::collections::HashMap;
use std::sync::Mutex;

use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;

use crate::api::{ScaleTargetRef, WorkerPool};

/// A target as the index keys it: namespace, API group, kind, name (the
/// version does not change which object it is).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TargetKey {
    pub namespace: String,
    pub group: String,
    pub kind: String,
    pub name: String,
}

impl TargetKey {
    pub fn of(namespace: &str, r: &ScaleTargetRef) -> Self {
        TargetKey {
            namespace: namespace.to_string(),
            group: group_of(&r.api_version).to_string(),
            kind: r.kind.clone(),
            name: r.name.clone(),
        }
    }
}

/// `apps` of `apps/v1`; the core group of `v1` is "".
pub fn group_of(api_version: &str) -> &str {
    api_version.split_once('/').map_or("", |(g, _)| g)
}

/// What one pool says about the target it names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    pub target: TargetKey,
    pub created: Option<Timestamp>,
    /// Paused or shadow: it writes nothing to the target.
    pub passive: bool,
}

#[derive(Clone, Debug)]
struct Claimant {
    pool: ObjectRef<WorkerPool>,
    created: Option<Timestamp>,
    passive: bool,
}

/// Target → the pools that name it.
#[derive(Default)]
pub struct TargetIndex {
    by_target: Mutex<HashMap<TargetKey, Vec<Claimant>>>,
}

impl TargetIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TargetKey, Vec<Claimant>>> {
        self.by_target.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records `claim` for `pool`, replacing `old` (its previous claim).
    pub fn claim(&self, pool: &ObjectRef<WorkerPool>, old: Option<&Claim>, claim: &Claim) {
        let mut map = self.lock();
        if let Some(old) = old {
            remove(&mut map, &old.target, pool);
        }
        map.entry(claim.target.clone()).or_default().push(Claimant {
            pool: pool.clone(),
            created: claim.created,
            passive: claim.passive,
        });
    }

    /// Forgets every pool for which `keep` is false (deleted pools).
    pub fn retain(&self, keep: impl Fn(&ObjectRef<WorkerPool>) -> bool) {
        let mut map = self.lock();
        map.retain(|_, claimants| {
            claimants.retain(|c| keep(&c.pool));
            !claimants.is_empty()
        });
    }

    /// Pools that name this target.
    pub fn pools_for(&self, target: &TargetKey) -> Vec<ObjectRef<WorkerPool>> {
        self.lock()
            .get(target)
            .map(|cs| cs.iter().map(|c| c.pool.clone()).collect())
            .unwrap_or_default()
    }

    /// The pool that owns `target`: the oldest active claimant, ties broken
    /// by name. None when no active pool names it.
    pub fn owner(&self, target: &TargetKey) -> Option<ObjectRef<WorkerPool>> {
        let map = self.lock();
        map.get(target)?
            .iter()
            .filter(|c| !c.passive)
            .min_by(|a, b| {
                // A pool with no creation time (never from the API server) sorts last.
                let time = |c: &Claimant| (c.created.is_none(), c.created);
                time(a)
                    .cmp(&time(b))
                    .then_with(|| a.pool.name.cmp(&b.pool.name))
            })
            .map(|c| c.pool.clone())
    }
}

fn remove(
    map: &mut HashMap<TargetKey, Vec<Claimant>>,
    key: &TargetKey,
    pool: &ObjectRef<WorkerPool>,
) {
    if let Some(cs) = map.get_mut(key) {
        cs.retain(|c| &c.pool != pool);
        if cs.is_empty() {
            map.remove(key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TargetKey {
        TargetKey {
            namespace: "shop".into(),
            group: "apps".into(),
            kind: "Deployment".into(),
            name: "w".into(),
        }
    }

    fn pool(name: &str) -> ObjectRef<WorkerPool> {
        ObjectRef::new(name).within("shop")
    }

    fn claim(secs: i64, passive: bool) -> Claim {
        Claim {
            target: key(),
            created: Timestamp::from_second(secs).ok(),
            passive,
        }
    }

    #[test]
    fn the_oldest_active_pool_owns_and_names_break_ties() {
        let idx = TargetIndex::default();
        idx.claim(&pool("b"), None, &claim(100, false));
        idx.claim(&pool("c"), None, &claim(50, true));
        idx.claim(&pool("a"), None, &claim(100, false));
        assert_eq!(idx.owner(&key()), Some(pool("a")));
        idx.retain(|p| p.name != "a");
        assert_eq!(idx.owner(&key()), Some(pool("b")));
    }

    #[test]
    fn a_retargeted_pool_leaves_its_old_target() {
        let idx = TargetIndex::default();
        let old = claim(1, false);
        idx.claim(&pool("a"), None, &old);
        idx.claim(&pool("b"), None, &claim(2, false));
        let mut moved = old.clone();
        moved.target.name = "other".into();
        idx.claim(&pool("a"), Some(&old), &moved);
        assert_eq!(idx.owner(&key()), Some(pool("b")));
        assert_eq!(idx.pools_for(&moved.target), vec![pool("a")]);
    }

    #[test]
    fn passive_pools_never_own() {
        let idx = TargetIndex::default();
        idx.claim(&pool("a"), None, &claim(1, true));
        assert_eq!(idx.owner(&key()), None);
    }
}
