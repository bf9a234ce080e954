//! HorizontalPodAutoscalers by the target they scale: a pool whose target an
//! HPA also scales stands down (two autoscalers on one target fight). Kept
//! from the HPA watch's events, so the check on every poll is one look-up,
//! not a scan of every HPA.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;

use k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler;
use kube::runtime::watcher::Event;

use super::targets::{group_of, TargetKey};

#[derive(Default)]
struct Maps {
    /// Target → names of the HPAs that scale it.
    by_target: HashMap<TargetKey, BTreeSet<String>>,
    /// (namespace, HPA name) → its target, to move or drop it on change.
    target_of: HashMap<(String, String), TargetKey>,
    /// A re-list under way builds a fresh copy, swapped in when it is done.
    relisting: Option<Box<Maps>>,
}

/// The HPA index, fed by [`HpaIndex::apply`] with the watch's events.
#[derive(Default)]
pub struct HpaIndex {
    maps: Mutex<Maps>,
    /// The first list is in.
    synced: AtomicBool,
    /// Bumped whenever an HPA's target may have changed (not by its status
    /// updates): a poll that found no HPA on its target at this version
    /// need not look again until it moves.
    version: AtomicU64,
}

impl HpaIndex {
    /// Takes one watch event.
    pub fn apply(&self, event: &Event<HorizontalPodAutoscaler>) {
        let mut maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        let changed = match event {
            Event::Apply(h) => maps.upsert(h),
            Event::Delete(h) => maps.remove(h),
            Event::Init => {
                maps.relisting = Some(Box::default());
                false
            }
            Event::InitApply(h) => {
                maps.relisting.get_or_insert_with(Box::default).upsert(h);
                false
            }
            Event::InitDone => {
                let fresh = maps.relisting.take().unwrap_or_default();
                *maps = *fresh;
                self.synced.store(true, Ordering::Release);
                true
            }
        };
        if changed {
            self.version.fetch_add(1, Ordering::Release);
        }
    }

    /// Changes with every change of the index (see
    /// [`super::targets::TargetIndex::version`]).
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }

    /// Whether the first list of HPAs is in.
    pub fn synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// The name of an HPA that scales `target`, if any.
    pub fn scaling(&self, target: &TargetKey) -> Option<String> {
        let maps = self.maps.lock().unwrap_or_else(|e| e.into_inner());
        maps.by_target.get(target)?.iter().next().cloned()
    }
}

impl Maps {
    /// False when the HPA already scaled this target (a status update).
    fn upsert(&mut self, h: &HorizontalPodAutoscaler) -> bool {
        let (key, target) = (name_of(h), target_of(h));
        if let (Some(key), Some(target)) = (&key, &target) {
            if self.target_of.get(key) == Some(target) {
                return false;
            }
        }
        let removed = self.remove(h);
        let (Some(key), Some(target)) = (key, target) else {
            return removed;
        };
        self.by_target
            .entry(target.clone())
            .or_default()
            .insert(key.1.clone());
        self.target_of.insert(key, target);
        true
    }

    /// False when the HPA was not known.
    fn remove(&mut self, h: &HorizontalPodAutoscaler) -> bool {
        let Some(key) = name_of(h) else { return false };
        let Some(target) = self.target_of.remove(&key) else {
            return false;
        };
        if let Some(names) = self.by_target.get_mut(&target) {
            names.remove(&key.1);
            if names.is_empty() {
                self.by_target.remove(&target);
            }
        }
        true
    }
}

fn name_of(h: &HorizontalPodAutoscaler) -> Option<(String, String)> {
    Some((h.metadata.namespace.clone()?, h.metadata.name.clone()?))
}

fn target_of(h: &HorizontalPodAutoscaler) -> Option<TargetKey> {
    let t = &h.spec.as_ref()?.scale_target_ref;
    Some(TargetKey {
        namespace: h.metadata.namespace.clone()?,
        group: group_of(t.api_version.as_deref().unwrap_or("")).to_string(),
        kind: t.kind.clone(),
        name: t.name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hpa(name: &str, target: &str) -> HorizontalPodAutoscaler {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"maxReplicas": 3, "scaleTargetRef":
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}}
        }))
        .unwrap()
    }

    fn key(name: &str) -> TargetKey {
        TargetKey {
            namespace: "shop".into(),
            group: "apps".into(),
            kind: "Deployment".into(),
            name: name.into(),
        }
    }

    #[test]
    fn the_version_moves_with_targets_not_with_status_updates() {
        let idx = HpaIndex::default();
        idx.apply(&Event::Apply(hpa("h", "w")));
        let v = idx.version();
        idx.apply(&Event::Apply(hpa("h", "w")));
        assert_eq!(idx.version(), v, "same target: a status update");
        idx.apply(&Event::Apply(hpa("h", "v")));
        assert_ne!(idx.version(), v, "retargeted");
        let v = idx.version();
        idx.apply(&Event::Delete(hpa("h", "v")));
        assert_ne!(idx.version(), v, "deleted");
    }

    #[test]
    fn follows_applies_retargets_deletes_and_relists() {
        let idx = HpaIndex::default();
        idx.apply(&Event::Apply(hpa("h", "w")));
        assert_eq!(idx.scaling(&key("w")).as_deref(), Some("h"));
        idx.apply(&Event::Apply(hpa("h", "v")));
        assert_eq!(idx.scaling(&key("w")), None);
        assert_eq!(idx.scaling(&key("v")).as_deref(), Some("h"));
        idx.apply(&Event::Delete(hpa("h", "v")));
        assert_eq!(idx.scaling(&key("v")), None);
        idx.apply(&Event::Apply(hpa("old", "w")));
        idx.apply(&Event::Init);
        idx.apply(&Event::InitApply(hpa("new", "x")));
        assert_eq!(idx.scaling(&key("w")).as_deref(), Some("old"));
        idx.apply(&Event::InitDone);
        assert_eq!(idx.scaling(&key("w")), None);
        assert_eq!(idx.scaling(&key("x")).as_deref(), Some("new"));
    }
}
