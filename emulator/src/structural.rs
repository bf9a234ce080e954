//! Structural-schema pruning and defaulting, as the apiserver does for custom
//! resources when it decodes a request (prune unknown fields, then fill in
//! `default`s).

use serde_json::Value;

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true)
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// Removes fields the schema does not declare, returning their paths
/// (`spec.foo`) so strict field validation can report them.
/// `apiVersion`, `kind` and `metadata` at the root are always kept.
pub fn prune_root(object: &mut Value, schema: &Value) -> Vec<String> {
    let mut pruned = Vec::new();
    prune_object(object, schema, "", true, &mut pruned);
    // The API server reports unknown fields sorted, whatever order they came in.
    pruned.sort();
    pruned
}

fn prune_object(value: &mut Value, schema: &Value, path: &str, root: bool, out: &mut Vec<String>) {
    let embedded = root || schema["x-kubernetes-embedded-resource"] == Value::Bool(true);
    match value {
        Value::Object(map) => {
            let props = schema["properties"].as_object();
            let additional = schema["additionalProperties"]
                .as_object()
                .map(|_| &schema["additionalProperties"]);
            let keep_unknown = preserves_unknown(schema);
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let here = join(path, &key);
                if embedded && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                let sub = props.and_then(|p| p.get(&key)).or(additional);
                match sub {
                    Some(s) => {
                        if let Some(v) = map.get_mut(&key) {
                            prune_object(v, s, &here, false, out);
                        }
                    }
                    None if keep_unknown => {}
                    None => {
                        map.remove(&key);
                        out.push(here);
                    }
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for (i, item) in items.iter_mut().enumerate() {
                prune_object(item, &schema["items"], &format!("{path}[{i}]"), false, out);
            }
        }
        _ => {}
    }
}

/// Fills in schema `default`s for absent (or null, when not nullable) fields,
/// recursing through properties, `additionalProperties` and array items.
pub fn apply_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(props) = schema["properties"].as_object() {
                for (key, sub) in props {
                    let nullable = sub["nullable"] == Value::Bool(true);
                    let missing = match map.get(key) {
                        None => true,
                        Some(Value::Null) => !nullable,
                        Some(_) => false,
                    };
                    if missing {
                        if let Some(d) = sub.get("default") {
                            map.insert(key.clone(), d.clone());
                        }
                    }
                    if let Some(v) = map.get_mut(key) {
                        apply_defaults(v, sub);
                    }
                }
            }
            if schema["additionalProperties"].is_object() {
                let sub = &schema["additionalProperties"];
                for v in map.values_mut() {
                    apply_defaults(v, sub);
                }
            }
        }
        Value::Array(items) if schema["items"].is_object() => {
            for item in items {
                apply_defaults(item, &schema["items"]);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    fn schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "replicas": {"type": "integer", "default": 1},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "items": {"type": "array", "items": {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }
            }
        })
    }

    #[test]
    fn prunes_undeclared_fields_but_keeps_preserved_ones() {
        let mut obj = json!({"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "n"},
            "spec": {"replicas": 2, "bogus": 1, "labels": {"k": "v"}, "free": {"any": 1},
                     "items": [{"a": "y", "b": 2}]},
            "extra": true});
        let pruned = prune_root(&mut obj, &schema());
        assert_eq!(pruned, vec!["extra", "spec.bogus", "spec.items[0].b"]);
        assert_eq!(obj["spec"]["free"]["any"], 1);
        assert_eq!(obj["spec"]["labels"]["k"], "v");
        assert_eq!(obj["metadata"]["name"], "n");
    }

    #[test]
    fn defaults_absent_fields_recursively() {
        let mut obj = json!({"spec": {"items": [{}]}});
        apply_defaults(&mut obj, &schema());
        assert_eq!(obj["spec"]["replicas"], 1);
        assert_eq!(obj["spec"]["items"][0]["a"], "x");
    }
}
