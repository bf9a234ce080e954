//! KEDA `redis-streams` triggers (and their `redis-sentinel-streams` /
//! `redis-cluster-streams` forms). KEDA picks the number by the fields set:
//! a consumer group with `lagCount` reads the group's lag; a group without
//! it, the pending entries (`pendingEntriesCount` per replica, default 5);
//! no group, the stream length (`streamLength` per replica, default 5).

use super::Mapping;
use serde_json::Value;

use super::redis_connection::{connection, Topology};
use super::source::Source;
use super::trigger::TriggerCtx;
use super::warnings::ConvertError;

/// KEDA's default for both `pendingEntriesCount` and `streamLength`.
pub const DEFAULT_TARGET: i64 = 5;

pub fn convert(t: &mut TriggerCtx<'_>, topology: Topology) -> Result<Source, ConvertError> {
    let mut body = connection(t, topology)?;
    let Some(stream) = t.meta.take_str("stream", t.w)? else {
        let at = t.meta.path("stream");
        return Err(t.w.invalid(at, "is required (the stream to measure)"));
    };
    let group = t
        .meta
        .take_str("consumerGroup", t.w)?
        .filter(|g| !g.is_empty());
    let (measure, target) = measure_and_target(t, group.is_some())?;
    if measure == "Lag" {
        let at = t.meta.path("lagCount");
        t.w.add(at, "Lag needs Redis >= 7 (XINFO GROUPS lag), as in KEDA; where KEDA read a missing stream as 0 and a missing group as XLEN, a WorkerPool reports a failed read (and never scales down on one): create the group before switching to Active");
    }
    let mut m = Mapping::new();
    m.insert("name".into(), stream.into());
    if let Some(group) = group {
        m.insert("group".into(), group.into());
    }
    m.insert("measure".into(), measure.into());
    body.insert("stream".into(), Value::Object(m));
    let activation = t.meta.take_i64("activationLagCount", t.w)?.unwrap_or(0);
    Ok(Source {
        key: "redis",
        body,
        target: target as f64,
        activation: activation as f64,
    })
}

/// KEDA's choice of number, and its target per replica; the counts KEDA
/// ignores for that choice are warned about.
fn measure_and_target(
    t: &mut TriggerCtx<'_>,
    has_group: bool,
) -> Result<(&'static str, i64), ConvertError> {
    let pending = t.meta.take_i64("pendingEntriesCount", t.w)?;
    let length = t.meta.take_i64("streamLength", t.w)?;
    let lag = t.meta.take_i64("lagCount", t.w)?.filter(|l| *l != 0);
    let (measure, target, unused) = match (has_group, lag) {
        (true, Some(lag)) => (
            "Lag",
            lag,
            [("pendingEntriesCount", pending), ("streamLength", length)],
        ),
        (true, None) => (
            "Pending",
            pending.unwrap_or(DEFAULT_TARGET),
            [("streamLength", length), ("lagCount", None)],
        ),
        (false, _) => (
            "Length",
            length.unwrap_or(DEFAULT_TARGET),
            [("pendingEntriesCount", pending), ("lagCount", lag)],
        ),
    };
    for (field, value) in unused {
        if value.is_some() {
            let msg = format!(
                "KEDA ignores it when measuring {measure} (see consumerGroup/lagCount); ignored"
            );
            t.w.add(t.meta.path(field), msg);
        }
    }
    if target <= 0 {
        let at = t.meta.path(target_field(measure));
        return Err(t.w.invalid(at, format!("must be > 0, got {target}")));
    }
    Ok((measure, target))
}

fn target_field(measure: &str) -> &'static str {
    match measure {
        "Lag" => "lagCount",
        "Pending" => "pendingEntriesCount",
        _ => "streamLength",
    }
}
