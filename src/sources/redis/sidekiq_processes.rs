//! Sidekiq's process records as a busy signal (Sidekiq 6.4's layout, from
//! Debian's ruby-sidekiq; checked against a real Sidekiq process by
//! tests/scale_in_signals.rs).
//!
//! Where Sidekiq defines it (`lib/sidekiq/launcher.rb`, the heartbeat):
//! * the set `processes` holds each live process's identity
//!   (`<hostname>:<pid>:<nonce>`);
//! * the hash named by the identity has `info` (JSON with `hostname`:
//!   `ENV["DYNO"]` or `Socket.gethostname`, the pod's name) and `busy` (the
//!   jobs its threads are running), rewritten every heartbeat (5 s) and
//!   expiring after 60 s without one, so a dead process is skipped.
//!
//! `busy` is as old as the last heartbeat: a job that started in the last
//! seconds may not be counted yet.

use ::redis::{Cmd, Value};

use super::worker_registry::{text, Parsed, Registry};

/// The registry of every Sidekiq process on the server.
pub(super) fn registry() -> Registry {
    Registry {
        what: "Sidekiq processes".into(),
        set: "processes".into(),
        record,
        parse,
    }
}

fn record(identity: &str) -> Vec<Cmd> {
    vec![::redis::cmd("HMGET")
        .arg(identity)
        .arg(&["info", "busy"][..])
        .clone()]
}

fn parse(replies: &[Value]) -> Parsed {
    let [Value::Array(fields)] = replies else {
        return Err("a process record is not a hash".into());
    };
    let (Some(Some(info)), Some(busy)) = (fields.first().map(text), fields.get(1).map(text)) else {
        return Ok(None);
    };
    let info: serde_json::Value =
        serde_json::from_str(&info).map_err(|_| "a process's info is not JSON".to_string())?;
    let Some(host) = info["hostname"].as_str() else {
        return Err("a process's info has no hostname".into());
    };
    let busy = busy.and_then(|b| b.parse::<u32>().ok()).unwrap_or(0);
    Ok(Some((host.to_string(), busy)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn hostname_from_info_and_busy_count() {
        let info = r#"{"hostname":"mailers-abc","pid":7,"identity":"mailers-abc:7:f00"}"#;
        let r = [Value::Array(vec![bulk(info), bulk("3")])];
        assert_eq!(parse(&r), Ok(Some(("mailers-abc".into(), 3))));
        let expired = [Value::Array(vec![Value::Nil, Value::Nil])];
        assert_eq!(parse(&expired), Ok(None));
        let bad = [Value::Array(vec![bulk("{"), bulk("1")])];
        assert!(parse(&bad).is_err());
    }
}
