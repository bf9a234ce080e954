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
//! The index lives in memory, fed by the WorkerPool watch's events (so
//! every pool is known before any of them polls, and a deleted pool's claim
//! goes at once); the ownership check costs one map look-up when the
//! index has changed since the pool last found itself unopposed, and
//! nothing otherwise ([`TargetIndex::version`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use k8s_openapi::jiff::Timestamp;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher::Event;

use crate::api::{ScaleTargetRef, WorkerPool, PAUSE_ANNOTATION};

/// A pool's key: namespace and name only. `ObjectRef::from_obj` also
/// copies the uid and resourceVersion, which equality ignores and nothing
/// here reads; at thousands of pools, each key kept twice, they add up.
pub fn pool_key(pool: &WorkerPool) -> ObjectRef<WorkerPool> {
    let key = ObjectRef::new(pool.metadata.name.as_deref().unwrap_or_default());
    match pool.metadata.namespace.as_deref() {
        Some(ns) => key.within(ns),
        None => key,
    }
}

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
    /// Shared with the index's map of targets (a key is four strings).
    pub target: Arc<TargetKey>,
    pub created: Option<Timestamp>,
    /// Paused or shadow: it writes nothing to the target.
    pub passive: bool,
}

impl Claim {
    /// The claim a WorkerPool makes, as the watch delivers it.
    pub fn of(pool: &WorkerPool) -> Option<(ObjectRef<WorkerPool>, Claim)> {
        let namespace = pool.metadata.namespace.as_deref()?;
        let paused = pool.spec.paused
            || pool
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(PAUSE_ANNOTATION))
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let claim = Claim {
            target: Arc::new(TargetKey::of(namespace, &pool.spec.scale_target_ref)),
            created: pool.metadata.creation_timestamp.as_ref().map(|t| t.0),
            passive: paused || pool.spec.mode.is_shadow(),
        };
        Some((pool_key(pool), claim))
    }
}

/// A pool's claim, and the list that last delivered the pool.
struct Held {
    claim: Claim,
    listed: u64,
}

/// A pool's name, shared by the two maps of the claims.
pub type PoolRef = Arc<ObjectRef<WorkerPool>>;

#[derive(Default)]
struct Claims {
    by_pool: super::FastMap<PoolRef, Held>,
    by_target: super::FastMap<Arc<TargetKey>, Vec<PoolRef>>,
    /// The number of the latest (re-)list. A pool it delivers is marked
    /// with it, and at its end the pools not marked are dropped: no set of
    /// names is built while thousands of pools are listed.
    list: u64,
}

impl Claims {
    /// Records the claim of a pool the current list delivered; false when
    /// the pool already made this very claim (its status echo).
    fn insert(&mut self, pool: ObjectRef<WorkerPool>, claim: Claim) -> bool {
        let list = self.list;
        if let Some(held) = self.by_pool.get_mut(&pool) {
            held.listed = list;
            if held.claim == claim {
                return false;
            }
        }
        self.remove(&pool);
        let pool = Arc::new(pool);
        // Nearly every target has one pool (two are a conflict).
        let pools =
            (self.by_target.entry(claim.target.clone())).or_insert_with(|| Vec::with_capacity(1));
        pools.push(pool.clone());
        self.by_pool.insert(
            pool,
            Held {
                claim,
                listed: list,
            },
        );
        true
    }

    /// False when the pool made no claim.
    fn remove(&mut self, pool: &ObjectRef<WorkerPool>) -> bool {
        let Some(old) = self.by_pool.remove(pool) else {
            return false;
        };
        let target = &*old.claim.target;
        if let Some(pools) = self.by_target.get_mut(target) {
            pools.retain(|p| **p != *pool);
            if pools.is_empty() {
                self.by_target.remove(target);
            }
        }
        true
    }

    /// Drops every pool the finished list did not deliver; false when
    /// there was none.
    fn drop_unlisted(&mut self) -> bool {
        let gone: Vec<_> = (self.by_pool.iter())
            .filter(|(_, held)| held.listed != self.list)
            .map(|(pool, _)| pool.clone())
            .collect();
        for pool in &gone {
            self.remove(pool);
        }
        !gone.is_empty()
    }
}

/// Target → the pools that name it, kept from the WorkerPool watch's events,
/// so every pool the API server holds is known before any of them polls.
#[derive(Default)]
pub struct TargetIndex {
    claims: Mutex<Claims>,
    /// The first full list of pools is in: before it, a pool cannot know
    /// whether an older one names its target, so none may write.
    synced: AtomicBool,
    /// Bumped by every change of the claims.
    version: AtomicU64,
}

impl TargetIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, Claims> {
        self.claims.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Changes whenever a claim may have: an answer of [`Self::other_owner`]
    /// holds while this stays the same. Read before asking, so a change
    /// racing the question moves it past what the asker saw.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    fn changed(&self) {
        self.version.fetch_add(1, Ordering::Release);
    }

    /// Takes one event of the WorkerPool watch.
    pub fn observe<P: AsRef<WorkerPool>>(&self, event: &Event<P>) {
        let mut claims = self.lock();
        let changed = match event {
            Event::Apply(p) | Event::InitApply(p) => {
                Claim::of(p.as_ref()).is_some_and(|(pool, claim)| claims.insert(pool, claim))
            }
            Event::Delete(p) => claims.remove(&pool_key(p.as_ref())),
            Event::Init => {
                claims.list += 1;
                false
            }
            Event::InitDone => {
                let dropped = claims.drop_unlisted();
                self.synced.store(true, Ordering::Release);
                dropped
            }
        };
        if changed {
            self.changed();
        }
    }

    /// Whether every pool of the first list is known.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Records `claim` for `pool` (tests, and pools known before their event).
    pub fn claim(&self, pool: &ObjectRef<WorkerPool>, claim: &Claim) {
        if self.lock().insert(pool.clone(), claim.clone()) {
            self.changed();
        }
    }

    /// Pools that name this target.
    pub fn pools_for(&self, target: &TargetKey) -> Vec<PoolRef> {
        self.lock()
            .by_target
            .get(target)
            .cloned()
            .unwrap_or_default()
    }

    /// The pool that owns `target`: the oldest active claimant, ties broken
    /// by name. None when no active pool names it.
    #[cfg(test)]
    pub fn owner(&self, target: &TargetKey) -> Option<ObjectRef<WorkerPool>> {
        Self::owner_in(&self.lock(), target).cloned()
    }

    /// The name of the pool that owns `target` when that is not `pool`
    /// (None: `pool` owns it, or nobody does). Asked on every poll, so it
    /// copies nothing unless there is a conflict.
    pub fn other_owner(&self, target: &TargetKey, pool: &ObjectRef<WorkerPool>) -> Option<String> {
        let claims = self.lock();
        let owner = Self::owner_in(&claims, target)?;
        (owner != pool).then(|| owner.name.clone())
    }

    fn owner_in<'a>(claims: &'a Claims, target: &TargetKey) -> Option<&'a ObjectRef<WorkerPool>> {
        let active = claims.by_target.get(target)?.iter().filter_map(|p| {
            let c = &claims.by_pool.get(p)?.claim;
            (!c.passive).then_some((p, c))
        });
        active
            .min_by(|(pa, a), (pb, b)| {
                // A pool with no creation time (never from the API server) sorts last.
                let time = |c: &Claim| (c.created.is_none(), c.created);
                time(a).cmp(&time(b)).then_with(|| pa.name.cmp(&pb.name))
            })
            .map(|(p, _)| &**p)
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
            target: Arc::new(key()),
            created: Timestamp::from_second(secs).ok(),
            passive,
        }
    }

    #[test]
    fn the_oldest_active_pool_owns_and_names_break_ties() {
        let idx = TargetIndex::default();
        idx.claim(&pool("b"), &claim(100, false));
        idx.claim(&pool("c"), &claim(50, true));
        idx.claim(&pool("a"), &claim(100, false));
        assert_eq!(idx.owner(&key()), Some(pool("a")));
        idx.lock().remove(&pool("a"));
        assert_eq!(idx.owner(&key()), Some(pool("b")));
    }

    #[test]
    fn a_retargeted_pool_leaves_its_old_target() {
        let idx = TargetIndex::default();
        let old = claim(1, false);
        idx.claim(&pool("a"), &old);
        idx.claim(&pool("b"), &claim(2, false));
        let mut moved = old.clone();
        Arc::make_mut(&mut moved.target).name = "other".into();
        idx.claim(&pool("a"), &moved);
        assert_eq!(idx.owner(&key()), Some(pool("b")));
        assert_eq!(idx.pools_for(&moved.target), vec![Arc::new(pool("a"))]);
    }

    #[test]
    fn passive_pools_never_own() {
        let idx = TargetIndex::default();
        idx.claim(&pool("a"), &claim(1, true));
        assert_eq!(idx.owner(&key()), None);
    }

    fn wp(name: &str, target: &str, created: &str) -> WorkerPool {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
            "metadata": {"name": name, "namespace": "shop", "creationTimestamp": created},
            "spec": {"scaleTargetRef": {"name": target}, "maxReplicas": 3,
                     "triggers": [{"redis": {"url": "redis://r", "list": "q"}, "targetPerReplica": 1}]}
        }))
        .unwrap()
    }

    #[test]
    fn the_version_moves_with_claims_not_with_status_echoes() {
        let idx = TargetIndex::default();
        let v0 = idx.version();
        idx.observe(&Event::Apply(wp("a", "w", "2026-01-01T00:00:00Z")));
        let v1 = idx.version();
        assert_ne!(v0, v1, "a new claim");
        idx.observe(&Event::Apply(wp("a", "w", "2026-01-01T00:00:00Z")));
        assert_eq!(
            idx.version(),
            v1,
            "the same claim again (a status write's echo)"
        );
        idx.observe(&Event::Apply(wp("a", "v", "2026-01-01T00:00:00Z")));
        let v2 = idx.version();
        assert_ne!(v1, v2, "retargeted");
        idx.observe(&Event::<WorkerPool>::Init);
        idx.observe(&Event::InitApply(wp("a", "v", "2026-01-01T00:00:00Z")));
        idx.observe(&Event::<WorkerPool>::InitDone);
        assert_eq!(idx.version(), v2, "a re-list that finds the same claims");
        idx.observe(&Event::Delete(wp("a", "v", "2026-01-01T00:00:00Z")));
        assert_ne!(idx.version(), v2, "deleted");
    }

    #[test]
    fn the_watch_feeds_claims_and_a_relist_drops_the_vanished() {
        let idx = TargetIndex::default();
        idx.observe(&Event::<WorkerPool>::Init);
        idx.observe(&Event::InitApply(wp("b", "w", "2026-01-01T00:00:00Z")));
        assert!(!idx.synced(), "not every pool is known yet");
        // Claimed at once, even mid-list.
        assert_eq!(idx.owner(&key()), Some(pool("b")));
        idx.observe(&Event::InitApply(wp("a", "w", "2026-01-01T00:00:05Z")));
        idx.observe(&Event::<WorkerPool>::InitDone);
        assert!(idx.synced());
        assert_eq!(
            idx.owner(&key()),
            Some(pool("b")),
            "the older one, whatever the name"
        );
        idx.observe(&Event::Delete(wp("b", "w", "2026-01-01T00:00:00Z")));
        assert_eq!(idx.owner(&key()), Some(pool("a")));
        idx.observe(&Event::<WorkerPool>::Init);
        idx.observe(&Event::<WorkerPool>::InitDone);
        assert_eq!(idx.owner(&key()), None, "a re-list without a pool drops it");
    }

    #[test]
    fn a_relist_keeps_the_pools_it_delivers_and_drops_the_rest() {
        let idx = TargetIndex::default();
        let owner = |target: &str| {
            let mut k = key();
            k.name = target.into();
            idx.owner(&k).map(|p| p.name)
        };
        idx.observe(&Event::<WorkerPool>::Init);
        idx.observe(&Event::InitApply(wp("a", "wa", "2026-01-01T00:00:00Z")));
        idx.observe(&Event::InitApply(wp("b", "wb", "2026-01-01T00:00:00Z")));
        idx.observe(&Event::<WorkerPool>::InitDone);
        idx.observe(&Event::Apply(wp("c", "wc", "2026-01-01T00:00:00Z")));
        idx.observe(&Event::<WorkerPool>::Init);
        idx.observe(&Event::InitApply(wp("c", "wc", "2026-01-01T00:00:00Z")));
        idx.observe(&Event::InitApply(wp("a", "wa", "2026-01-01T00:00:00Z")));
        let v = idx.version();
        idx.observe(&Event::<WorkerPool>::InitDone);
        assert_ne!(idx.version(), v, "b was dropped");
        assert_eq!(owner("wa").as_deref(), Some("a"));
        assert_eq!(owner("wb"), None, "deleted while the watch was down");
        assert_eq!(owner("wc").as_deref(), Some("c"));
    }
}
