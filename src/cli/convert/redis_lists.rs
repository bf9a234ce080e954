//! KEDA `redis`, `redis-sentinel` and `redis-cluster` triggers (the Redis
//! Lists scaler): the length of `listName`, `listLength` per replica.

use serde_json::Value;

use super::redis_connection::{connection, Topology};
use super::source::Source;
use super::trigger::TriggerCtx;
use super::warnings::ConvertError;

/// KEDA's default `listLength` (target items per replica).
pub const DEFAULT_LIST_LENGTH: i64 = 5;

pub fn convert(t: &mut TriggerCtx<'_>, topology: Topology) -> Result<Source, ConvertError> {
    let mut body = connection(t, topology)?;
    let Some(list) = t.meta.take_str("listName", t.w)? else {
        let at = t.meta.path("listName");
        return Err(t.w.invalid(at, "is required (the Redis list to measure)"));
    };
    if list == "celery" {
        let at = t.meta.path("listName");
        t.w.add(at, "looks like Celery's default queue: consider `celery: {queue: celery}` instead of `list`, which also counts Celery's priority lists and the tasks workers have prefetched (LLEN misses both)");
    }
    body.insert("list".into(), Value::from(list));
    let target = t
        .meta
        .take_i64("listLength", t.w)?
        .unwrap_or(DEFAULT_LIST_LENGTH);
    if target <= 0 {
        let at = t.meta.path("listLength");
        return Err(t.w.invalid(at, format!("must be > 0, got {target}")));
    }
    let activation = t.meta.take_i64("activationListLength", t.w)?.unwrap_or(0);
    Ok(Source {
        key: "redis",
        body,
        target: target as f64,
        activation: activation as f64,
    })
}
