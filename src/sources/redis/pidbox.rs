//! kombu's process mailbox ("pidbox") as Celery's remote control uses it on
//! the Redis transport: the names of the channel, the reply queue and its
//! binding, the request a client broadcasts and the replies workers send.
//!
//! What kombu does (`kombu/pidbox.py`, `kombu/transport/redis.py`,
//! `kombu/transport/virtual/base.py`), with Celery's defaults:
//!
//! - The mailbox exchange `<control_exchange>.pidbox` (`celery.pidbox`) is a
//!   fanout exchange. Redis carries fanout over pub/sub: with
//!   `fanout_prefix` and `fanout_patterns` on (Celery's defaults) and an
//!   empty routing key the channel is `/<db>.celery.pidbox`, so mailboxes of
//!   different databases of one server never hear each other.
//! - Replies go to the direct exchange `reply.celery.pidbox`, routed by the
//!   sender's routing key to its reply queue `<routing_key>.reply.celery.pidbox`.
//!   A direct exchange's bindings live in the set `_kombu.binding.<exchange>`,
//!   members `routing_key SEP pattern SEP queue` (SEP = `\x06\x16`, the
//!   pattern empty); a worker looks the set up when it replies and LPUSHes
//!   to every queue bound to the routing key, or drops the reply when none is.
//! - Every message is a JSON envelope: the body (itself JSON, base64-encoded
//!   because `body_encoding` is `base64`), `content-type`,
//!   `content-encoding`, `headers` and `properties`. A request's body names
//!   the `method`, its `arguments`, the `destination` (null: every worker),
//!   the `ticket` replies must carry back in their `ticket` header, and
//!   `reply_to` (exchange and routing key). A reply's body is
//!   `{"<worker hostname>": <the command's result>}`, or
//!   `{"<hostname>": {"error": "..."}}` when the command raised.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{json, Map, Value};

/// kombu's separator inside a binding-set member (`Channel.sep`).
const SEP: &str = "\x06\x16";

/// The longest worker hostname accepted in a reply: a node name plus a
/// host name (at most 255 by DNS) fits; anything longer is not Celery's.
const MAX_HOSTNAME: usize = 512;

/// The pub/sub channel a broadcast to every worker of `exchange` (Celery's
/// `control_exchange`) on database `db` is published to.
pub(super) fn broadcast_channel(db: i64, exchange: &str) -> String {
    format!("/{db}.{exchange}.pidbox")
}

/// One call's reply queue: unique per call, so concurrent calls never
/// take each other's replies.
#[derive(Debug, Clone)]
pub(super) struct ReplyQueue {
    /// The reply exchange, `reply.<control_exchange>.pidbox`.
    pub(super) exchange: String,
    /// The routing key workers reply with.
    pub(super) routing_key: String,
    /// The list workers LPUSH replies to.
    pub(super) list: String,
    /// The reply exchange's binding set.
    pub(super) binding_set: String,
    /// This queue's member of the binding set.
    pub(super) binding_member: String,
}

impl ReplyQueue {
    pub(super) fn new(control_exchange: &str) -> ReplyQueue {
        let exchange = format!("reply.{control_exchange}.pidbox");
        let routing_key = unique_id();
        let list = format!("{routing_key}.{exchange}");
        ReplyQueue {
            binding_set: format!("_kombu.binding.{exchange}"),
            binding_member: format!("{routing_key}{SEP}{SEP}{list}"),
            exchange,
            routing_key,
            list,
        }
    }

    /// Every list kombu keeps for the queue (one per priority step), for
    /// cleaning up as kombu's `queue_delete` does: replies are sent at
    /// priority 0, into `list` itself, but another client's may not be.
    pub(super) fn priority_lists(&self) -> [String; 4] {
        let l = &self.list;
        [
            l.clone(),
            format!("{l}{SEP}3"),
            format!("{l}{SEP}6"),
            format!("{l}{SEP}9"),
        ]
    }
}

/// The envelope of a request for `method` to every worker of
/// `control_exchange`, replies to `reply` carrying `ticket`. `expires_at`
/// (seconds since the epoch) tells workers that honour it not to answer
/// after the caller stopped listening.
pub(super) fn request(
    control_exchange: &str,
    method: &str,
    arguments: Value,
    ticket: &str,
    reply: &ReplyQueue,
    expires_at: f64,
) -> String {
    let body = json!({
        "method": method,
        "arguments": arguments,
        "destination": null,
        "pattern": null,
        "matcher": null,
        "ticket": ticket,
        "reply_to": {"exchange": reply.exchange, "routing_key": reply.routing_key},
    });
    let body = base64::engine::general_purpose::STANDARD.encode(body.to_string());
    json!({
        "body": body,
        "content-encoding": "utf-8",
        "content-type": "application/json",
        // We keep no Lamport clock: 0 leaves the workers' clocks as they are.
        "headers": {"clock": 0, "expires": expires_at},
        "properties": {
            "delivery_mode": 2,
            "delivery_info": {"exchange": format!("{control_exchange}.pidbox"), "routing_key": ""},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": unique_id(),
        },
    })
    .to_string()
}

/// One worker's reply to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Reply {
    /// The request's ticket, from the `ticket` header.
    pub(super) ticket: String,
    /// The worker's hostname (`celery@<host>`), the body's only key.
    pub(super) hostname: String,
    pub(super) answer: Answer,
}

/// What a worker answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// A list of this many tasks (`active`, `reserved`).
    Tasks(usize),
    /// The command failed on the worker (`{"error": ...}`): its state is unknown.
    Failed,
}

/// Decodes one reply as a worker LPUSHed it. The error says what was
/// wrong without quoting the reply (it is untrusted and may end up in
/// status or Events).
pub(super) fn decode_reply(raw: &[u8]) -> Result<Reply, String> {
    let envelope: Value =
        serde_json::from_slice(raw).map_err(|e| format!("is not JSON ({})", json_error(&e)))?;
    let envelope = envelope.as_object().ok_or("is not a JSON object")?;
    let ticket = header_ticket(envelope)?;
    let body = body_bytes(envelope)?;
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("has a body that is not JSON ({})", json_error(&e)))?;
    let (hostname, answer) = body_answer(&body)?;
    Ok(Reply {
        ticket,
        hostname,
        answer,
    })
}

/// serde_json's category and position, never the offending text.
fn json_error(e: &serde_json::Error) -> String {
    format!(
        "{:?} error at line {} column {}",
        e.classify(),
        e.line(),
        e.column()
    )
}

fn header_ticket(envelope: &Map<String, Value>) -> Result<String, String> {
    let headers = envelope
        .get("headers")
        .and_then(Value::as_object)
        .ok_or("has no headers object")?;
    if headers.get("compression").is_some_and(|c| !c.is_null()) {
        return Err("is compressed (only uncompressed JSON replies are supported)".into());
    }
    match headers.get("ticket") {
        Some(Value::String(t)) => Ok(t.clone()),
        _ => Err("has no ticket header".into()),
    }
}

/// The body's bytes: base64-decoded when `body_encoding` says so, else as
/// written (kombu leaves the body alone for `utf-8` or no encoding).
fn body_bytes(envelope: &Map<String, Value>) -> Result<Vec<u8>, String> {
    match envelope.get("content-type").and_then(Value::as_str) {
        Some("application/json") => {}
        _ => return Err("is not application/json (set the workers' serializer to json)".into()),
    }
    let body = envelope
        .get("body")
        .and_then(Value::as_str)
        .ok_or("has no body string")?;
    let encoding = envelope
        .get("properties")
        .and_then(|p| p.get("body_encoding"))
        .and_then(Value::as_str);
    match encoding {
        Some(e) if e.eq_ignore_ascii_case("base64") => base64::engine::general_purpose::STANDARD
            .decode(body)
            .map_err(|_| "has a body that is not valid base64".to_string()),
        None | Some("utf-8") => Ok(body.as_bytes().to_vec()),
        Some(_) => Err("has a body_encoding other than base64 or utf-8".into()),
    }
}

/// `{"<hostname>": [task, ...]}` or `{"<hostname>": {"error": ...}}`.
fn body_answer(body: &Value) -> Result<(String, Answer), String> {
    let body = body.as_object().ok_or("has a body that is not an object")?;
    let mut entries = body.iter();
    let (Some((hostname, value)), None) = (entries.next(), entries.next()) else {
        return Err(format!(
            "has {} hostnames in its body (expected one)",
            body.len()
        ));
    };
    check_hostname(hostname)?;
    let answer = match value {
        Value::Array(tasks) => Answer::Tasks(tasks.len()),
        Value::Object(o) if o.contains_key("error") => Answer::Failed,
        _ => return Err("is neither a list of tasks nor an error".into()),
    };
    Ok((hostname.clone(), answer))
}

fn check_hostname(h: &str) -> Result<(), String> {
    if h.is_empty() {
        return Err("names an empty worker hostname".into());
    }
    if h.len() > MAX_HOSTNAME {
        return Err(format!(
            "names a worker hostname of {} bytes (at most {MAX_HOSTNAME})",
            h.len()
        ));
    }
    if h.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("names a worker hostname with whitespace or control characters".into());
    }
    Ok(())
}

/// A random id in UUID text form, for reply queues, tickets and delivery
/// tags. Made from the standard library's randomly keyed hasher (seeded
/// from the OS) over a process-wide counter and the time: unique without
/// another dependency.
pub(super) fn unique_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let half = |which: u8| {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        h.write_u8(which);
        h.finish()
    };
    let v = (u128::from(half(0)) << 64) | u128::from(half(1));
    let hex = format!("{v:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    /// A reply exactly as a Celery 5.7 worker LPUSHed it (captured with MONITOR).
    fn worker_reply(body: &str, ticket: &str) -> String {
        json!({
            "body": b64(body),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {"ticket": ticket, "clock": 3},
            "properties": {
                "delivery_mode": 1,
                "delivery_info": {"exchange": "reply.celery.pidbox", "routing_key": "rk"},
                "priority": 0,
                "body_encoding": "base64",
                "delivery_tag": "455fd970-87ae-4429-9a0c-433870224eec",
            },
        })
        .to_string()
    }

    #[test]
    fn names_follow_kombu_redis_layout() {
        assert_eq!(broadcast_channel(7, "celery"), "/7.celery.pidbox");
        let q = ReplyQueue::new("celery");
        assert_eq!(q.exchange, "reply.celery.pidbox");
        assert_eq!(q.list, format!("{}.reply.celery.pidbox", q.routing_key));
        assert_eq!(q.binding_set, "_kombu.binding.reply.celery.pidbox");
        assert_eq!(
            q.binding_member,
            format!("{}\x06\x16\x06\x16{}", q.routing_key, q.list)
        );
        assert_eq!(q.priority_lists()[3], format!("{}\x06\x169", q.list));
    }

    #[test]
    fn reply_queues_and_ids_are_unique() {
        let ids: std::collections::BTreeSet<String> = (0..1000).map(|_| unique_id()).collect();
        assert_eq!(ids.len(), 1000);
        assert!(ids
            .iter()
            .all(|i| i.len() == 36 && i.matches('-').count() == 4));
        assert_ne!(ReplyQueue::new("c").list, ReplyQueue::new("c").list);
    }

    #[test]
    fn request_is_the_envelope_kombu_publishes() {
        let q = ReplyQueue::new("celery");
        let raw = request("celery", "active", json!({"safe": true}), "t-1", &q, 12.5);
        let v: Value = serde_json::from_str(&raw).unwrap();
        assert_eq!(v["content-type"], "application/json");
        assert_eq!(v["content-encoding"], "utf-8");
        assert_eq!(v["headers"]["expires"], 12.5);
        assert_eq!(v["properties"]["body_encoding"], "base64");
        assert_eq!(
            v["properties"]["delivery_info"]["exchange"],
            "celery.pidbox"
        );
        let body = base64::engine::general_purpose::STANDARD
            .decode(v["body"].as_str().unwrap())
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["method"], "active");
        assert_eq!(body["arguments"], json!({"safe": true}));
        assert_eq!(body["destination"], Value::Null);
        assert_eq!(body["ticket"], "t-1");
        assert_eq!(body["reply_to"]["exchange"], "reply.celery.pidbox");
        assert_eq!(body["reply_to"]["routing_key"], q.routing_key.as_str());
    }

    #[test]
    fn decodes_task_lists_and_worker_errors() {
        let raw = worker_reply(
            r#"{"celery@web-7d9f-x2x": [{"id": "a"}, {"id": "b"}]}"#,
            "t",
        );
        let r = decode_reply(raw.as_bytes()).unwrap();
        assert_eq!(r.ticket, "t");
        assert_eq!(r.hostname, "celery@web-7d9f-x2x");
        assert_eq!(r.answer, Answer::Tasks(2));
        let raw = worker_reply(r#"{"celery@fake-pod-abc": []}"#, "t");
        assert_eq!(
            decode_reply(raw.as_bytes()).unwrap().answer,
            Answer::Tasks(0)
        );
        let raw = worker_reply(r#"{"celery@p": {"error": "KeyError('x')"}}"#, "t");
        assert_eq!(decode_reply(raw.as_bytes()).unwrap().answer, Answer::Failed);
    }

    #[test]
    fn a_body_without_encoding_is_read_as_written() {
        let raw = json!({
            "body": r#"{"celery@p": [1]}"#, "content-type": "application/json",
            "headers": {"ticket": "t"}, "properties": {},
        });
        let r = decode_reply(raw.to_string().as_bytes()).unwrap();
        assert_eq!(r.answer, Answer::Tasks(1));
    }

    #[test]
    fn malformed_replies_say_what_is_wrong_without_quoting_them() {
        let secret = "s3cr3t-payload";
        let cases: Vec<(String, &str)> = vec![
            (format!("{secret} not json"), "is not JSON"),
            ("[1, 2]".into(), "is not a JSON object"),
            (
                json!({"body": b64("{}"), "content-type": "application/json"}).to_string(),
                "has no headers object",
            ),
            (
                worker_reply("{}", "t").replace("\"ticket\"", "\"tick\""),
                "has no ticket header",
            ),
            (
                worker_reply("{}", "t")
                    .replace("application/json", "application/x-python-serialize"),
                "is not application/json",
            ),
            (
                json!({"body": format!("!{secret}!"), "content-type": "application/json",
                       "headers": {"ticket": "t"}, "properties": {"body_encoding": "base64"}})
                .to_string(),
                "not valid base64",
            ),
            (worker_reply(secret, "t"), "body that is not JSON"),
            (worker_reply("[]", "t"), "body that is not an object"),
            (worker_reply("{}", "t"), "has 0 hostnames"),
            (
                worker_reply(r#"{"a@b": [], "c@d": []}"#, "t"),
                "has 2 hostnames",
            ),
            (
                worker_reply(r#"{"a@b": 3}"#, "t"),
                "neither a list of tasks nor an error",
            ),
            (worker_reply(r#"{"": []}"#, "t"), "empty worker hostname"),
            (worker_reply(r#"{"a@b\nc": []}"#, "t"), "control characters"),
            (
                worker_reply(&format!(r#"{{"{}": []}}"#, "h".repeat(600)), "t"),
                "600 bytes",
            ),
            (
                worker_reply("{}", "t")
                    .replace("\"clock\"", "\"compression\": \"zlib\", \"clock\""),
                "is compressed",
            ),
        ];
        for (raw, want) in cases {
            let err = decode_reply(raw.as_bytes()).expect_err(want);
            assert!(err.contains(want), "{err:?} should say {want:?}");
            assert!(!err.contains(secret), "{err:?} quotes the reply");
        }
    }
}
