//! One Event, two APIs: the apiserver serves the same stored Event as
//! events.k8s.io/v1 and core/v1. Here the two are stored apart, so an
//! events.k8s.io/v1 Event created through the API is also created as its
//! core/v1 view — what `kubectl get events` and `kubectl describe` list.

use serde_json::{json, Map, Value};

use crate::objects::{self, Target, WriteOpts};
use crate::store::Store;

/// The core/v1 view of an events.k8s.io/v1 Event (the apiserver's field
/// mapping: regarding → involvedObject, note → message, deprecated* → the
/// core names, reportingController → source.component).
pub fn core_view(event: &Value) -> Value {
    let meta = &event["metadata"];
    let count = event["deprecatedCount"]
        .as_i64()
        .or_else(|| event["series"]["count"].as_i64())
        .unwrap_or(1);
    let last = event["deprecatedLastTimestamp"]
        .as_str()
        .or_else(|| event["series"]["lastObservedTime"].as_str())
        .or_else(|| event["eventTime"].as_str());
    let fields = [
        ("apiVersion", json!("v1")),
        ("kind", json!("Event")),
        (
            "metadata",
            json!({"name": meta["name"], "namespace": meta["namespace"],
                            "labels": meta["labels"], "annotations": meta["annotations"]}),
        ),
        ("involvedObject", event["regarding"].clone()),
        ("related", event["related"].clone()),
        ("reason", event["reason"].clone()),
        ("message", event["note"].clone()),
        ("type", event["type"].clone()),
        ("action", event["action"].clone()),
        ("eventTime", event["eventTime"].clone()),
        ("reportingComponent", event["reportingController"].clone()),
        ("reportingInstance", event["reportingInstance"].clone()),
        (
            "source",
            json!({"component": event["reportingController"], "host": event["deprecatedSource"]["host"]}),
        ),
        ("count", json!(count)),
        ("firstTimestamp", event["deprecatedFirstTimestamp"].clone()),
        ("lastTimestamp", last.map_or(Value::Null, |t| json!(t))),
    ];
    let mut out = Map::new();
    for (key, value) in fields {
        if let Some(v) = without_nulls(value) {
            out.insert(key.to_string(), v);
        }
    }
    Value::Object(out)
}

fn without_nulls(v: Value) -> Option<Value> {
    match v {
        Value::Null => None,
        Value::Object(map) => {
            let kept: Map<String, Value> = map
                .into_iter()
                .filter_map(|(k, v)| without_nulls(v).map(|v| (k, v)))
                .collect();
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        other => Some(other),
    }
}

/// Creates the core/v1 view of a just-created events.k8s.io/v1 Event. A
/// failure (say, the name already taken by a core/v1 Event) leaves the
/// events.k8s.io/v1 create as it was: the view is a convenience.
pub fn mirror_to_core(store: &mut Store, opts: &WriteOpts, event: &Value) {
    let Some(ty) = store.registry.find("", "v1", "events") else {
        return;
    };
    let target = Target {
        ty,
        version: "v1".into(),
        namespace: event["metadata"]["namespace"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };
    let _ = objects::create(store, &target, opts, core_view(event));
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn the_core_view_maps_the_renamed_fields() {
        let event = json!({
            "apiVersion": "events.k8s.io/v1", "kind": "Event",
            "metadata": {"name": "e1", "namespace": "shop", "uid": "u"},
            "regarding": {"kind": "WorkerPool", "name": "orders", "namespace": "shop"},
            "reason": "ScaledUp", "note": "1 -> 5", "type": "Normal", "action": "Scale",
            "eventTime": "2026-01-01T00:00:00.000000Z", "reportingController": "workerpool.dev/operator",
            "reportingInstance": "op-1",
        });
        let core = core_view(&event);
        assert_eq!(core["involvedObject"]["name"], "orders");
        assert_eq!(core["message"], "1 -> 5");
        assert_eq!(
            core["source"],
            json!({"component": "workerpool.dev/operator"})
        );
        assert_eq!(core["count"], 1);
        assert_eq!(core["lastTimestamp"], "2026-01-01T00:00:00.000000Z");
        assert_eq!(core["metadata"], json!({"name": "e1", "namespace": "shop"}));
        assert!(core.get("related").is_none());
    }
}
