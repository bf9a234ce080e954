//! The ScaledObject's metadata: name, namespace and labels carry over;
//! KEDA's `autoscaling.keda.sh/paused*` annotations become `paused` and
//! disabled scaling directions; the object's server-set state does not.

use super::Mapping;
use serde_json::Value;

use super::fields::{parse_go_bool, Object};
use super::warnings::{ConvertError, Warnings};

/// What KEDA's pause annotations ask for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pause {
    pub paused: bool,
    pub scale_in: bool,
    pub scale_out: bool,
}

/// Fields the API server sets on the ScaledObject: they describe that
/// object, not the user's intent, so they are not carried over.
const SERVER_SET: [&str; 9] = [
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "managedFields",
    "selfLink",
    "finalizers",
];
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The WorkerPool's metadata and the pause the annotations ask for.
pub fn metadata(mut meta: Object, w: &mut Warnings) -> Result<(Mapping, Pause), ConvertError> {
    let mut out = Mapping::new();
    let name = meta
        .take_str("name", w)?
        .ok_or_else(|| w.invalid("metadata.name", "is required"))?;
    out.insert("name".into(), name.into());
    if let Some(ns) = meta.take_str("namespace", w)? {
        out.insert("namespace".into(), ns.into());
    }
    if let Some(labels) = meta.take("labels") {
        out.insert("labels".into(), labels);
    }
    let mut server_set: Vec<String> = SERVER_SET
        .iter()
        .filter(|k| meta.take(k).is_some())
        .map(|k| format!("metadata.{k}"))
        .collect();
    let mut annotations = meta.child("annotations", w)?;
    if annotations.take(LAST_APPLIED).is_some() {
        server_set.push(format!("metadata.annotations.{LAST_APPLIED}"));
    }
    if !server_set.is_empty() {
        w.add(
            server_set.join(", "),
            "state of the existing ScaledObject, not carried over",
        );
    }
    let pause = pause(&mut annotations, w)?;
    let kept = keep_annotations(annotations, w);
    if !kept.is_empty() {
        out.insert("annotations".into(), Value::Object(kept));
    }
    meta.warn_leftovers(
        w,
        "not carried over (set it on the WorkerPool by hand if it matters)",
    );
    Ok((out, pause))
}

fn pause(a: &mut Object, w: &mut Warnings) -> Result<Pause, ConvertError> {
    let mut flag = |key: &str, w: &mut Warnings| -> Result<bool, ConvertError> {
        match a.take_str(key, w)? {
            None => Ok(false),
            Some(v) => parse_go_bool(&v)
                .ok_or_else(|| w.invalid(a.path(key), format!("not a boolean: {v:?}"))),
        }
    };
    let mut pause = Pause {
        paused: flag("autoscaling.keda.sh/paused", w)?,
        scale_in: flag("autoscaling.keda.sh/paused-scale-in", w)?,
        scale_out: flag("autoscaling.keda.sh/paused-scale-out", w)?,
    };
    let key = "autoscaling.keda.sh/paused-replicas";
    if let Some(n) = a.take_str(key, w)? {
        pause.paused = true;
        let msg = format!("carried over as paused: true; KEDA also scaled the target to {n} first: scale it yourself (kubectl scale --replicas={n} ...)");
        w.add(a.path(key), msg);
    }
    Ok(pause)
}

/// Annotations other than KEDA's carry over; KEDA's remaining ones are warned about.
fn keep_annotations(a: Object, w: &mut Warnings) -> Mapping {
    let Some(Value::Object(all)) = Object::into_value(a.clone()) else {
        return Mapping::new();
    };
    let mut kept = Mapping::new();
    for (k, v) in all {
        let key = k.clone();
        if key.contains("keda.sh/") {
            let msg = if key == "autoscaling.keda.sh/force-activation" {
                "no equivalent: a WorkerPool is active only when a trigger is; ignored"
            } else {
                "KEDA-specific (a WorkerPool creates no HPA); ignored"
            };
            w.add(a.path(&key), msg);
        } else {
            kept.insert(k, v);
        }
    }
    kept
}
