//! RQ's worker registry as a busy signal (rq 3.0's layout, checked against
//! real RQ workers by tests/scale_in_signals.rs).
//!
//! Where RQ defines it:
//! * `rq/worker_registration.py`: every live worker's key `rq:worker:<name>`
//!   is in the set `rq:workers`, and in `rq:workers:<queue>` for each queue
//!   it listens to; a worker removes itself when it stops.
//! * `rq/worker/base.py`: the worker's hash has `hostname`
//!   (`socket.gethostname()`: the pod's name) and `state` (`busy` while a
//!   job runs, `idle`, `started`, `suspended`); `death` once it stopped. The
//!   hash expires without heartbeats, so a dead worker's member is skipped.
//! * `rq/executions.py`: `rq:worker:<name>:executions` is the set of the
//!   worker's running jobs (one for the forking worker).
//!
//! RQ before 2.0 kept `current_job` in the hash instead of the executions
//! set: either marks the worker busy.

use ::redis::{Cmd, Value};

use super::worker_registry::{text, Parsed, Registry};

/// The registry of the workers of `queue` (None: every worker).
pub(super) fn registry(queue: Option<&str>) -> Registry {
    let (what, set) = match queue {
        Some(q) => (
            format!("RQ workers of queue {q:?}"),
            format!("rq:workers:{q}"),
        ),
        None => ("RQ workers".to_string(), "rq:workers".to_string()),
    };
    Registry {
        what,
        set,
        record,
        parse,
    }
}

fn record(key: &str) -> Vec<Cmd> {
    let fields = ["hostname", "state", "current_job", "death"];
    vec![
        ::redis::cmd("HMGET").arg(key).arg(&fields[..]).clone(),
        ::redis::cmd("SCARD")
            .arg(format!("{key}:executions"))
            .clone(),
    ]
}

fn parse(replies: &[Value]) -> Parsed {
    let [fields, executions] = replies else {
        return Err("unexpected reply shape".into());
    };
    let fields: Vec<Option<String>> = match fields {
        Value::Array(vs) => vs.iter().map(text).collect(),
        _ => return Err("a worker record is not a hash".into()),
    };
    let (Some(Some(host)), Some(state), Some(job), Some(death)) =
        (fields.first(), fields.get(1), fields.get(2), fields.get(3))
    else {
        return Ok(None);
    };
    if death.is_some() {
        return Ok(None);
    }
    let running: u32 = ::redis::from_redis_value(executions.clone()).unwrap_or(0);
    let busy = state.as_deref() == Some("busy") || job.as_deref().is_some_and(|j| !j.is_empty());
    let tasks = if busy { running.max(1) } else { 0 };
    Ok(Some((host.clone(), tasks)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn busy_state_or_current_job_makes_a_busy_worker() {
        let busy = [
            Value::Array(vec![bulk("w-a"), bulk("busy"), Value::Nil, Value::Nil]),
            Value::Int(1),
        ];
        assert_eq!(parse(&busy), Ok(Some(("w-a".into(), 1))));
        let old_rq = [
            Value::Array(vec![bulk("w-b"), bulk("?"), bulk("job-1"), Value::Nil]),
            Value::Int(0),
        ];
        assert_eq!(parse(&old_rq), Ok(Some(("w-b".into(), 1))));
        let idle = [
            Value::Array(vec![bulk("w-c"), bulk("idle"), Value::Nil, Value::Nil]),
            Value::Int(0),
        ];
        assert_eq!(parse(&idle), Ok(Some(("w-c".into(), 0))));
        let gone = [
            Value::Array(vec![Value::Nil, Value::Nil, Value::Nil, Value::Nil]),
            Value::Int(0),
        ];
        assert_eq!(parse(&gone), Ok(None));
        let dead = [
            Value::Array(vec![bulk("w-d"), bulk("busy"), Value::Nil, bulk("2026")]),
            Value::Int(0),
        ];
        assert_eq!(parse(&dead), Ok(None));
    }
}
