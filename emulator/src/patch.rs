//! PATCH bodies by `Content-Type`: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902) and strategic merge patch (approximated, see `strategic`).
//! Server-side apply lives in `apply.rs`.

use serde_json::{Map, Value};

use crate::status::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType {
    Merge,
    Json,
    Strategic,
    Apply,
}

pub const ACCEPTED: &str =
    "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml";
const ACCEPTED_BUILTIN: &str = "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json";

impl PatchType {
    /// The patch type of a request `Content-Type`; custom resources do not
    /// accept strategic merge patch (415, like the apiserver).
    pub fn from_content_type(ct: &str, custom: bool) -> ApiResult<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        let t = match base {
            "application/merge-patch+json" => PatchType::Merge,
            "application/json-patch+json" => PatchType::Json,
            "application/strategic-merge-patch+json" if !custom => PatchType::Strategic,
            "application/apply-patch+yaml"
            | "application/apply-patch+json"
            | "application/apply-patch+cbor" => PatchType::Apply,
            _ => {
                return Err(ApiError::unsupported_media_type(
                    ct,
                    if custom { ACCEPTED } else { ACCEPTED_BUILTIN },
                ))
            }
        };
        Ok(t)
    }
}

fn parse_json(body: &[u8]) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))
}

/// Applies a non-apply patch to `doc` and returns the patched document.
pub fn apply_patch(doc: &Value, kind: PatchType, body: &[u8]) -> ApiResult<Value> {
    let mut out = doc.clone();
    match kind {
        PatchType::Merge => {
            let p = parse_json(body)?;
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: merge patch must be a JSON object",
                ));
            }
            json_patch::merge(&mut out, &p);
        }
        PatchType::Json => {
            let p: json_patch::Patch = serde_json::from_slice(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding patch: {e}")))?;
            json_patch::patch(&mut out, &p).map_err(|e| ApiError::unprocessable(e.to_string()))?;
        }
        PatchType::Strategic => {
            let p = parse_json(body)?;
            if !p.is_object() {
                return Err(ApiError::bad_request(
                    "error decoding patch: strategic merge patch must be a JSON object",
                ));
            }
            strategic(&mut out, &p);
        }
        PatchType::Apply => return Err(ApiError::internal("apply is not a plain patch")),
    }
    if !out.is_object() {
        return Err(ApiError::bad_request("patch did not produce an object"));
    }
    Ok(out)
}

/// The merge key of a list of objects, by field name, for the built-in
/// types this emulator serves (the `patchMergeKey` tags of k8s.io/api).
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    let first = items.iter().find(|i| i.is_object())?;
    let key = match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "conditions" => "type",
        "hostAliases" => "ip",
        "ports" if first.get("containerPort").is_some() => "containerPort",
        "ports" => "port",
        "topologySpreadConstraints" => "topologyKey",
        _ => return None,
    };
    Some(key)
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .filter(|i| i.get("$patch").is_none())
                .map(strip_directives)
                .collect(),
        ),
        other => other.clone(),
    }
}

fn merge_list(orig: &mut Vec<Value>, patch: &[Value], key: &str) {
    if patch
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        *orig = patch
            .iter()
            .filter(|i| i.get("$patch").is_none())
            .map(strip_directives)
            .collect();
        return;
    }
    for item in patch {
        let id = item.get(key);
        let pos = orig.iter().position(|o| id.is_some() && o.get(key) == id);
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                orig.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => strategic(&mut orig[i], item),
            (None, false) => orig.push(strip_directives(item)),
        }
    }
}

/// Strategic merge patch, approximated: objects merge recursively, `null`
/// deletes, lists of objects with a known merge key merge by that key
/// (honouring `$patch: delete|replace`), other lists are replaced,
/// `$deleteFromPrimitiveList/` removes values, `$setElementOrder/` and
/// `$retainKeys` are ignored.
fn strategic(doc: &mut Value, patch: &Value) {
    let Some(p) = patch.as_object() else {
        *doc = strip_directives(patch);
        return;
    };
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        *doc = strip_directives(patch);
        return;
    }
    if !doc.is_object() {
        *doc = Value::Object(Map::new());
    }
    let Some(target) = doc.as_object_mut() else {
        return;
    };
    for (k, v) in p {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Some(remove)) = (target.get_mut(field), v.as_array())
            {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                target.remove(k);
            }
            Value::Object(_) => {
                let slot = target.entry(k.clone()).or_insert(Value::Null);
                strategic(slot, v);
            }
            Value::Array(items) => match (merge_key(k, items), target.get_mut(k)) {
                (Some(key), Some(Value::Array(orig))) => merge_list(orig, items, key),
                _ => {
                    target.insert(k.clone(), strip_directives(v));
                }
            },
            other => {
                target.insert(k.clone(), other.clone());
            }
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_null_deletes() {
        let out = apply_patch(
            &json!({"a": 1, "b": {"c": 2}}),
            PatchType::Merge,
            br#"{"a":null,"b":{"d":3}}"#,
        )
        .unwrap();
        assert_eq!(out, json!({"b": {"c": 2, "d": 3}}));
    }

    #[test]
    fn json_patch_test_op_failure_is_422() {
        let err = apply_patch(
            &json!({"a": 1}),
            PatchType::Json,
            br#"[{"op":"test","path":"/a","value":2}]"#,
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
        let err = apply_patch(&json!({"a": 1}), PatchType::Json, b"{not json").unwrap_err();
        assert_eq!(err.code, 400);
    }

    #[test]
    fn strategic_merges_containers_by_name() {
        let doc = json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}});
        let patch = br#"{"spec":{"$setElementOrder/containers":[{"name":"a"},{"name":"b"}],"containers":[{"name":"b","image":"z"}]}}"#;
        let out = apply_patch(&doc, PatchType::Strategic, patch).unwrap();
        assert_eq!(
            out,
            json!({"spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "z"}]}})
        );
    }

    #[test]
    fn strategic_is_refused_for_custom_resources() {
        let err = PatchType::from_content_type("application/strategic-merge-patch+json", true)
            .unwrap_err();
        assert_eq!(err.code, 415);
    }
}
