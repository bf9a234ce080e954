//! Server-side apply (`application/apply-patch+yaml`), approximated.
//!
//! What is real: a `fieldManager` is required; applying to an absent object
//! creates it; each manager's applied fields are recorded in
//! `metadata.managedFields` (operation `Apply`); a field another manager owns
//! with a different value is a 409 conflict unless `force=true`, which
//! transfers ownership; fields a manager applied before and omits now are
//! removed unless someone else also owns them.
//!
//! What is approximated: all lists are atomic (replaced whole, never merged
//! by `name` or other keys), `.` entries for maps are not recorded, and the
//! applied configuration is merged into the live object like a JSON merge
//! patch (objects recurse, everything else replaces, null removes).

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::fields::{self, Entry, FieldSet, Part};
use crate::status::{ApiError, ApiResult};

/// The request-independent inputs of one apply.
pub struct ApplyRequest<'a> {
    pub manager: &'a str,
    pub force: bool,
    pub part: Part,
    pub subresource: &'a str,
    pub api_version: &'a str,
    pub now: &'a str,
}

fn deep_merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else if v.is_object() && t.get(k).is_some_and(Value::is_object) {
                    if let Some(slot) = t.get_mut(k) {
                        deep_merge(slot, v);
                    }
                } else {
                    t.insert(k.clone(), v.clone());
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

fn dotted(p: &[String]) -> String {
    p.iter().map(|s| format!(".{s}")).collect()
}

fn conflict_error(conflicts: &BTreeMap<String, Vec<String>>) -> ApiError {
    let total: usize = conflicts.values().map(Vec::len).sum();
    let mut causes = Vec::new();
    let mut parts = Vec::new();
    for (manager, paths) in conflicts {
        for p in paths {
            causes.push(json!({"reason": "FieldManagerConflict", "message": format!("conflict with \"{manager}\""), "field": p}));
        }
        if total == 1 {
            parts.push(format!("conflict with \"{manager}\": {}", paths[0]));
        } else {
            let lines: Vec<String> = paths.iter().map(|p| format!("- {p}")).collect();
            parts.push(format!(
                "conflicts with \"{manager}\":\n{}",
                lines.join("\n")
            ));
        }
    }
    let plural = if total == 1 { "conflict" } else { "conflicts" };
    let mut e = ApiError::conflict_with("", "", "", "");
    e.message = format!("Apply failed with {total} {plural}: {}", parts.join("\n"));
    e.details = Some(Box::new(json!({"causes": causes})));
    e
}

/// Merges the applied `config` into `live` and returns the new object with
/// its managedFields updated; the caller runs the normal write pipeline.
pub fn apply(live: &Value, config: &Value, req: &ApplyRequest<'_>) -> ApiResult<Value> {
    let mut cfg = config.clone();
    if let Some(m) = cfg.as_object_mut() {
        match req.part {
            Part::Status => {
                m.retain(|k, _| matches!(k.as_str(), "apiVersion" | "kind" | "metadata" | "status"))
            }
            Part::Main {
                status_separate: true,
            } => {
                m.remove("status");
            }
            Part::Main { .. } => {}
        }
        if req.part == Part::Status {
            if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.retain(|k, _| matches!(k.as_str(), "name" | "namespace" | "resourceVersion"));
            }
        }
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.remove("managedFields");
        }
    }
    let applied = FieldSet::of(&cfg, req.part);
    let mut entries = Entry::read_all(live);
    let mine = |e: &Entry| {
        e.manager == req.manager && e.operation == "Apply" && e.subresource == req.subresource
    };

    let mut conflicts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for e in entries.iter().filter(|e| !mine(e)) {
        for p in &applied.0 {
            // An empty map merges into the live one: it takes nothing below it.
            let merges =
                fields::get(&cfg, p).is_some_and(|v| v.as_object().is_some_and(|m| m.is_empty()));
            let clash = e
                .fields
                .0
                .iter()
                .any(|q| q == p || p.starts_with(q) || (q.starts_with(p) && !merges));
            if clash && fields::get(live, p) != fields::get(&cfg, p) && !merges {
                conflicts
                    .entry(e.manager.clone())
                    .or_default()
                    .push(dotted(p));
            }
        }
    }
    if !conflicts.is_empty() {
        if !req.force {
            return Err(conflict_error(&conflicts));
        }
        let taken = FieldSet(
            applied
                .0
                .iter()
                .filter(|p| fields::get(live, p) != fields::get(&cfg, p))
                .cloned()
                .collect(),
        );
        for e in entries.iter_mut().filter(|e| !mine(e)) {
            e.fields.remove_overlapping(&taken);
        }
    }

    let mut out = live.clone();
    if let Some(previous) = entries.iter().find(|e| mine(e)) {
        for p in previous.fields.0.iter().filter(|p| !applied.covers(p)) {
            let shared = entries.iter().any(|e| !mine(e) && e.fields.overlaps(p));
            if !shared {
                fields::remove(&mut out, p);
            }
        }
    }
    deep_merge(&mut out, &cfg);

    entries.retain(|e| !mine(e));
    entries.push(Entry {
        manager: req.manager.to_string(),
        operation: "Apply".into(),
        api_version: req.api_version.to_string(),
        time: req.now.to_string(),
        subresource: req.subresource.to_string(),
        fields: applied,
    });
    Entry::write_all(&mut out, &entries);
    Ok(out)
}

#[cfg(test)]
mod test {
    use super::*;

    fn req<'a>(manager: &'a str, force: bool) -> ApplyRequest<'a> {
        ApplyRequest {
            manager,
            force,
            part: Part::Main {
                status_separate: true,
            },
            subresource: "",
            api_version: "v1",
            now: "t",
        }
    }

    #[test]
    fn second_manager_conflicts_unless_forced() {
        let live = json!({"metadata": {"name": "a"}, "spec": {}});
        let one = apply(&live, &json!({"spec": {"replicas": 1}}), &req("one", false)).unwrap();
        let err = apply(&one, &json!({"spec": {"replicas": 2}}), &req("two", false)).unwrap_err();
        assert_eq!(err.code, 409);
        assert_eq!(
            err.message,
            "Apply failed with 1 conflict: conflict with \"one\": .spec.replicas"
        );
        let forced = apply(&one, &json!({"spec": {"replicas": 2}}), &req("two", true)).unwrap();
        assert_eq!(forced["spec"]["replicas"], 2);
        // Same value: shared ownership, no conflict.
        assert!(apply(&one, &json!({"spec": {"replicas": 1}}), &req("two", false)).is_ok());
    }

    #[test]
    fn fields_dropped_from_the_config_are_removed() {
        let live = json!({"metadata": {"name": "a"}});
        let one = apply(
            &live,
            &json!({"spec": {"a": 1, "b": 2}}),
            &req("one", false),
        )
        .unwrap();
        let two = apply(&one, &json!({"spec": {"a": 1}}), &req("one", false)).unwrap();
        assert_eq!(two["spec"], json!({"a": 1}));
    }
}
