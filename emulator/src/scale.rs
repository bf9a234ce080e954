//! The `scale` subresource: an autoscaling/v1 `Scale` view of a workload's
//! replicas (Deployment/StatefulSet, or a CRD's declared paths).

use serde_json::{json, Value};

use crate::objects::Target;
use crate::resources::ScalePaths;
use crate::status::{ApiError, ApiResult, Cause};

fn paths(t: &Target) -> ApiResult<ScalePaths> {
    t.ty.version(&t.version)
        .and_then(|v| v.scale.clone())
        .ok_or_else(ApiError::no_route)
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('.').filter(|s| !s.is_empty())
}

fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    segments(path).try_fold(v, |cur, seg| cur.get(seg))
}

fn set_path(v: &mut Value, path: &str, value: Value) {
    let segs: Vec<&str> = segments(path).collect();
    let Some((last, parents)) = segs.split_last() else {
        return;
    };
    let mut cur = v;
    for seg in parents {
        let Some(map) = cur.as_object_mut() else {
            return;
        };
        let next = map.entry(seg.to_string()).or_insert_with(|| json!({}));
        if !next.is_object() {
            *next = json!({});
        }
        cur = next;
    }
    if let Some(map) = cur.as_object_mut() {
        map.insert(last.to_string(), value);
    }
}

/// `metav1.LabelSelectorAsSelector(spec.selector).String()`.
pub(crate) fn selector_string(sel: &Value) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(labels) = sel["matchLabels"].as_object() {
        let mut keys: Vec<&String> = labels.keys().collect();
        keys.sort();
        for k in keys {
            parts.push(format!("{k}={}", labels[k].as_str().unwrap_or_default()));
        }
    }
    for e in sel["matchExpressions"].as_array().into_iter().flatten() {
        let key = e["key"].as_str().unwrap_or_default();
        let mut values: Vec<&str> = e["values"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        values.sort_unstable();
        let part = match e["operator"].as_str().unwrap_or_default() {
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => continue,
        };
        parts.push(part);
    }
    parts.sort();
    parts.join(",")
}

/// The `Scale` object of a stored workload.
pub fn read(t: &Target, obj: &Value) -> ApiResult<Value> {
    let p = paths(t)?;
    let spec = get_path(obj, &p.spec_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let status = get_path(obj, &p.status_replicas)
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let selector = if p.selector_from_spec {
        selector_string(&obj["spec"]["selector"])
    } else {
        p.label_selector
            .as_deref()
            .and_then(|path| get_path(obj, path))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let m = &obj["metadata"];
    let mut metadata = json!({
        "name": m["name"],
        "uid": m["uid"],
        "resourceVersion": m["resourceVersion"],
        "creationTimestamp": m["creationTimestamp"],
    });
    if let Some(ns) = m.get("namespace") {
        metadata["namespace"] = ns.clone();
    }
    let mut status_obj = json!({"replicas": status});
    if !selector.is_empty() {
        status_obj["selector"] = json!(selector);
    }
    Ok(json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": spec},
        "status": status_obj,
    }))
}

/// The workload with `spec.replicas` taken from a `Scale` body.
pub fn write(t: &Target, old: &Value, scale: &Value) -> ApiResult<Value> {
    let p = paths(t)?;
    let name = old["metadata"]["name"].as_str().unwrap_or_default();
    let replicas = match &scale["spec"]["replicas"] {
        Value::Null => 0,
        v => v.as_i64().ok_or_else(|| {
            ApiError::bad_request(format!(
                "Scale.autoscaling \"{name}\": spec.replicas must be an integer"
            ))
        })?,
    };
    if replicas < 0 {
        return Err(ApiError::invalid(
            "autoscaling",
            "Scale",
            name,
            vec![Cause::new(
                "FieldValueInvalid",
                "spec.replicas",
                format!("Invalid value: {replicas}: must be greater than or equal to 0"),
            )],
        ));
    }
    let mut new = old.clone();
    set_path(&mut new, &p.spec_replicas, json!(replicas));
    Ok(new)
}

/// Deployments and StatefulSets default `spec.replicas` to 1.
pub fn default_replicas(t: &Target, obj: &mut Value) {
    if t.ty.custom {
        return;
    }
    if let Ok(p) = paths(t) {
        if get_path(obj, &p.spec_replicas).is_none() {
            set_path(obj, &p.spec_replicas, json!(1));
        }
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn selector_is_rendered_like_labels_selector_string() {
        let sel = json!({"matchLabels": {"b": "2", "a": "1"}, "matchExpressions": [{"key": "c", "operator": "In", "values": ["y", "x"]}]});
        assert_eq!(selector_string(&sel), "a=1,b=2,c in (x,y)");
    }
}
