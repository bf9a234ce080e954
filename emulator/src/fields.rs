//! `metadata.managedFields`: which field manager owns which fields.
//!
//! Approximation of structured-merge-diff: a field set is the set of leaf
//! paths (scalars, lists and empty objects); every list is atomic (owned
//! whole, never merged by key) and no `.` (map itself) entries are kept.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

/// A leaf path such as `["spec", "replicas"]`.
pub type FieldPath = Vec<String>;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSet(pub BTreeSet<FieldPath>);

/// Which part of the object a write may touch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but `status` (when it has a status
    /// subresource) and system metadata.
    Main { status_separate: bool },
    /// The `status` subresource: only `status`.
    Status,
}

const TRACKED_METADATA: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

fn collect(value: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                prefix.push(k.clone());
                collect(v, prefix, out);
                prefix.pop();
            }
        }
        _ => {
            out.insert(prefix.clone());
        }
    }
}

impl FieldSet {
    /// The leaf paths of the fields `part` of `object` sets.
    pub fn of(object: &Value, part: Part) -> FieldSet {
        let mut out = BTreeSet::new();
        let Some(map) = object.as_object() else {
            return FieldSet(out);
        };
        for (k, v) in map {
            let tracked = match (part, k.as_str()) {
                (_, "apiVersion" | "kind") => false,
                (Part::Status, key) => key == "status",
                (Part::Main { .. }, "metadata") => {
                    for mk in TRACKED_METADATA {
                        if let Some(mv) = v.get(mk) {
                            collect(mv, &mut vec!["metadata".into(), mk.into()], &mut out);
                        }
                    }
                    false
                }
                (Part::Main { status_separate }, "status") => !status_separate,
                _ => true,
            };
            if tracked {
                collect(v, &mut vec![k.clone()], &mut out);
            }
        }
        FieldSet(out)
    }

    /// Leaves whose value differs between `old` and `new` (added, changed
    /// or removed), restricted to `part`.
    pub fn changed(old: &Value, new: &Value, part: Part) -> FieldSet {
        let a = FieldSet::of(old, part);
        let b = FieldSet::of(new, part);
        let mut out = BTreeSet::new();
        for p in a.0.symmetric_difference(&b.0) {
            out.insert(p.clone());
        }
        for p in b.0.intersection(&a.0) {
            if get(old, p) != get(new, p) {
                out.insert(p.clone());
            }
        }
        FieldSet(out)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `p` equals, contains or is contained by a path of this set.
    pub fn overlaps(&self, p: &FieldPath) -> bool {
        self.0.iter().any(|q| q.starts_with(p) || p.starts_with(q))
    }

    /// Whether this set has `p` itself or a field below it.
    pub fn covers(&self, p: &FieldPath) -> bool {
        self.0.iter().any(|q| q.starts_with(p))
    }

    pub fn remove_overlapping(&mut self, other: &FieldSet) {
        self.0.retain(|p| !other.overlaps(p));
    }

    /// The `fieldsV1` encoding: `{"f:spec": {"f:replicas": {}}}`.
    pub fn to_fields_v1(&self) -> Value {
        let mut root = Map::new();
        for path in &self.0 {
            let mut cur = &mut root;
            for seg in path {
                let entry = cur
                    .entry(format!("f:{seg}"))
                    .or_insert_with(|| Value::Object(Map::new()));
                let Value::Object(next) = entry else { break };
                cur = next;
            }
        }
        Value::Object(root)
    }

    pub fn from_fields_v1(v: &Value) -> FieldSet {
        fn walk(v: &Value, prefix: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
            let Some(map) = v.as_object() else { return };
            let children: Vec<(&String, &Value)> =
                map.iter().filter(|(k, _)| k.as_str() != ".").collect();
            if (children.is_empty() || map.contains_key(".")) && !prefix.is_empty() {
                out.insert(prefix.clone());
            }
            for (k, child) in children {
                // `k:{...}` / `v:...` / `i:N` list members collapse onto the list.
                let Some(name) = k.strip_prefix("f:") else {
                    if !prefix.is_empty() {
                        out.insert(prefix.clone());
                    }
                    continue;
                };
                prefix.push(name.to_string());
                walk(child, prefix, out);
                prefix.pop();
            }
        }
        let mut out = BTreeSet::new();
        walk(v, &mut Vec::new(), &mut out);
        FieldSet(out)
    }
}

/// The value at a leaf path.
pub fn get<'a>(v: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    path.iter().try_fold(v, |cur, seg| cur.get(seg))
}

/// Removes the value at a leaf path (and leaves parents in place).
pub fn remove(v: &mut Value, path: &FieldPath) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        match cur.get_mut(seg) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Some(map) = cur.as_object_mut() {
        map.remove(last);
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    pub api_version: String,
    pub time: String,
    pub subresource: String,
    pub fields: FieldSet,
}

impl Entry {
    pub fn read_all(object: &Value) -> Vec<Entry> {
        object["metadata"]["managedFields"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| {
                        Some(Entry {
                            manager: e["manager"].as_str()?.to_string(),
                            operation: e["operation"].as_str().unwrap_or("Update").to_string(),
                            api_version: e["apiVersion"].as_str().unwrap_or_default().to_string(),
                            time: e["time"].as_str().unwrap_or_default().to_string(),
                            subresource: e["subresource"].as_str().unwrap_or_default().to_string(),
                            fields: FieldSet::from_fields_v1(&e["fieldsV1"]),
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn write_all(object: &mut Value, entries: &[Entry]) {
        let list: Vec<Value> = entries
            .iter()
            .filter(|e| !e.fields.is_empty())
            .map(|e| {
                let mut v = json!({
                    "manager": e.manager,
                    "operation": e.operation,
                    "apiVersion": e.api_version,
                    "time": e.time,
                    "fieldsType": "FieldsV1",
                    "fieldsV1": e.fields.to_fields_v1(),
                });
                if !e.subresource.is_empty() {
                    v["subresource"] = json!(e.subresource);
                }
                v
            })
            .collect();
        if let Some(meta) = object.get_mut("metadata").and_then(Value::as_object_mut) {
            if list.is_empty() {
                meta.remove("managedFields");
            } else {
                meta.insert("managedFields".into(), Value::Array(list));
            }
        }
    }
}

/// Records an Update-operation write by `manager`: it takes ownership of
/// every field it changed, away from all other managers.
pub fn record_update(
    entries: &mut Vec<Entry>,
    changed: &FieldSet,
    present: Option<&FieldSet>,
    manager: &str,
    api_version: &str,
    subresource: &str,
    now: &str,
) {
    if changed.is_empty() {
        return;
    }
    for e in entries.iter_mut() {
        if !(e.manager == manager && e.operation == "Update" && e.subresource == subresource) {
            e.fields.remove_overlapping(changed);
        }
    }
    // A field the write removed is owned by nobody afterwards (as in the
    // apiserver's managed-fields tracking): the writer gains only what exists.
    // A map emptied by the removal of its last field (`spec: {}`) is not a
    // field the writer set either.
    let is_present = |p: &FieldPath| present.is_none_or(|f| f.0.contains(p));
    let removed: Vec<&FieldPath> = changed.0.iter().filter(|p| !is_present(p)).collect();
    let gained: Vec<FieldPath> = changed
        .0
        .iter()
        .filter(|p| {
            is_present(p)
                && !removed
                    .iter()
                    .any(|r| r.len() > p.len() && r.starts_with(p))
        })
        .cloned()
        .collect();
    match entries
        .iter_mut()
        .find(|e| e.manager == manager && e.operation == "Update" && e.subresource == subresource)
    {
        Some(e) => {
            // Its own earlier ownership of what it just removed ends too.
            let gone = FieldSet(removed.iter().map(|p| (*p).clone()).collect());
            e.fields.remove_overlapping(&gone);
            e.fields.0.extend(gained.iter().cloned());
            e.time = now.to_string();
            e.api_version = api_version.to_string();
        }
        None => entries.push(Entry {
            manager: manager.to_string(),
            operation: "Update".into(),
            api_version: api_version.to_string(),
            time: now.to_string(),
            subresource: subresource.to_string(),
            fields: FieldSet(gained.into_iter().collect()),
        }),
    }
    entries.retain(|e| !e.fields.is_empty());
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn fields_v1_round_trip() {
        let obj = json!({"apiVersion": "v1", "kind": "X", "metadata": {"name": "n", "labels": {"a": "b"}},
            "spec": {"replicas": 2, "list": [1, 2], "empty": {}}, "status": {"ready": 1}});
        let set = FieldSet::of(
            &obj,
            Part::Main {
                status_separate: true,
            },
        );
        let v1 = set.to_fields_v1();
        assert_eq!(
            v1,
            json!({"f:metadata": {"f:labels": {"f:a": {}}},
            "f:spec": {"f:replicas": {}, "f:list": {}, "f:empty": {}}})
        );
        assert_eq!(FieldSet::from_fields_v1(&v1), set);
        assert_eq!(FieldSet::of(&obj, Part::Status).0.len(), 1);
    }

    #[test]
    fn update_takes_ownership_from_other_managers() {
        let old = json!({"spec": {"a": 1, "b": 1}});
        let new = json!({"spec": {"a": 2, "b": 1}});
        let mut entries = vec![Entry {
            manager: "applier".into(),
            operation: "Apply".into(),
            api_version: "v1".into(),
            time: "t".into(),
            subresource: String::new(),
            fields: FieldSet::of(
                &old,
                Part::Main {
                    status_separate: false,
                },
            ),
        }];
        let changed = FieldSet::changed(
            &old,
            &new,
            Part::Main {
                status_separate: false,
            },
        );
        record_update(&mut entries, &changed, None, "editor", "v1", "", "t2");
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].fields.0.len(), 1);
        assert_eq!(entries[1].manager, "editor");
    }
}
