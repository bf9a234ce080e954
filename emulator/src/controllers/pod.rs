//! What the controllers read from a Pod: activity, readiness, times,
//! restarts, ownership and the `pod-deletion-cost` annotation.

use serde_json::Value;

use crate::status::Cause;

/// The annotation that orders pods for deletion on a ReplicaSet scale-down.
pub const DELETION_COST: &str = "controller.kubernetes.io/pod-deletion-cost";

/// Nanoseconds since the Unix epoch; `None` stands for Go's zero time.
pub type Instant = Option<i64>;

pub fn parse_time(v: &Value) -> Instant {
    let text = v.as_str()?;
    let t = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    t.timestamp_nanos_opt()
}

pub fn now_nanos() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(i64::MAX)
}

/// Neither finished (Succeeded/Failed) nor being deleted: the pods a
/// ReplicaSet counts toward its replicas.
pub fn is_active(pod: &Value) -> bool {
    let phase = pod["status"]["phase"].as_str().unwrap_or_default();
    phase != "Succeeded" && phase != "Failed" && pod["metadata"]["deletionTimestamp"].is_null()
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

/// The `Ready` condition is `True`.
pub fn is_ready(pod: &Value) -> bool {
    ready_condition(pod).is_some_and(|c| c["status"] == "True")
}

/// When the pod last became ready (zero when it is not ready).
pub fn ready_since(pod: &Value) -> Instant {
    ready_condition(pod)
        .filter(|c| c["status"] == "True")
        .and_then(|c| parse_time(&c["lastTransitionTime"]))
}

pub fn created(pod: &Value) -> Instant {
    parse_time(&pod["metadata"]["creationTimestamp"])
}

pub fn node(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or_default()
}

pub fn uid(obj: &Value) -> &str {
    obj["metadata"]["uid"].as_str().unwrap_or_default()
}

pub fn name(obj: &Value) -> &str {
    obj["metadata"]["name"].as_str().unwrap_or_default()
}

/// The highest restart count among the pod's (regular) containers.
pub fn max_restarts(pod: &Value) -> i64 {
    pod["status"]["containerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["restartCount"].as_i64())
        .max()
        .unwrap_or(0)
        .max(0)
}

/// The uid of the object's controller (the owner reference with
/// `controller: true`) when it is of `kind`.
pub fn controller_uid<'a>(obj: &'a Value, kind: &str) -> Option<&'a str> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
        .filter(|r| r["kind"] == kind)
        .and_then(|r| r["uid"].as_str())
}

/// The deletion cost as the ReplicaSet controller reads it: a base-10
/// int32 without a `+` sign or leading zeros; anything else is an error
/// (which the controller then treats as cost 0).
pub fn parse_deletion_cost(text: &str) -> Option<i32> {
    let first_ok = match text.as_bytes().first() {
        Some(b'-') | Some(b'1'..=b'9') => true,
        Some(b'0') => text == "0",
        _ => false,
    };
    if !first_ok {
        return None;
    }
    text.parse::<i32>().ok()
}

/// The pod's deletion cost; absent or invalid is 0, as in the controller.
pub fn deletion_cost(pod: &Value) -> i32 {
    pod["metadata"]["annotations"][DELETION_COST]
        .as_str()
        .and_then(parse_deletion_cost)
        .unwrap_or(0)
}

fn has_invalid_cost(pod: &Value) -> bool {
    pod["metadata"]["annotations"][DELETION_COST]
        .as_str()
        .is_some_and(|v| parse_deletion_cost(v).is_none())
}

/// Pod validation of the annotation, as kube-apiserver does it: a value
/// that is not an int32 is refused, except on an update of a pod whose
/// stored value was already invalid.
pub fn deletion_cost_problem(new: &Value, old: Option<&Value>) -> Option<Cause> {
    if !has_invalid_cost(new) || old.is_some_and(has_invalid_cost) {
        return None;
    }
    let value = &new["metadata"]["annotations"][DELETION_COST];
    Some(Cause::new(
        "FieldValueInvalid",
        format!("metadata.annotations[{DELETION_COST}]"),
        format!("Invalid value: {value}: must be a 32bit integer"),
    ))
}

#[cfg(test)]
mod test {
    use super::*;
    use serde_json::json;

    #[test]
    fn pod_deletion_cost_accepts_only_canonical_int32() {
        assert_eq!(parse_deletion_cost("0"), Some(0));
        assert_eq!(parse_deletion_cost("-5"), Some(-5));
        assert_eq!(parse_deletion_cost("2147483647"), Some(i32::MAX));
        assert_eq!(parse_deletion_cost("-2147483648"), Some(i32::MIN));
        for bad in ["", "+1", "007", "00", "2147483648", "1.5", "ten", " 1", "-"] {
            assert_eq!(parse_deletion_cost(bad), None, "{bad:?}");
        }
        let pod = json!({"metadata": {"annotations": {DELETION_COST: "+3"}}});
        assert_eq!(deletion_cost(&pod), 0, "an invalid cost counts as 0");
    }
}
