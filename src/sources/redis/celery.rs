//! Celery queue depth on kombu's Redis transport.
//!
//! # The layout, as observed with Celery 5.7.0 / kombu 5.7.0
//! tests/sources_celery.rs checks every point below against what a real
//! Celery publisher and a real prefork worker write, on every run:
//! * A task sent to queue `Q` with priority `p` is `LPUSH`ed to the list
//!   `Q` (p in 0..=2), `Q\x06\x163` (3..=5), `Q\x06\x166` (6..=8) or
//!   `Q\x06\x169` (9): kombu rounds down to its `priority_steps`
//!   `[0, 3, 6, 9]` and joins with its separator `"\x06\x16"`; step 0 is the
//!   bare queue name (`Channel._q_for_pri`). A list that empties is
//!   deleted, as Redis does. Workers `BRPOP` the lists in that order, so
//!   priority 0 runs first. Queued = the sum of their lengths, which is
//!   kombu's own count (`Channel._size`, `queue_declare(passive=True)`).
//!   Every other key kombu writes is bookkeeping named `_kombu.*` (e.g.
//!   the set `_kombu.binding.Q`), besides `unacked` and `unacked_index`.
//! * A message a worker has taken but not acknowledged is a field of the
//!   hash `unacked`: delivery tag (also the message's
//!   `properties.delivery_tag`) → JSON `[message, exchange, routing_key]`
//!   (`QoS.append`), e.g. `[{"body": "...", "headers": {"id": <task id>,
//!   ...}, "properties": {...}}, "", "Q"]`: Celery's default routing for
//!   `apply_async(queue="Q")` publishes to the default exchange `""` with
//!   routing key `Q`. Python's `json.dumps` writes it, so the value ends
//!   `, "Q"]`. The sorted set `unacked_index` holds the same tags (score:
//!   when taken). The task ids in `unacked` for `Q` are exactly those
//!   `celery inspect reserved` lists (prefetched, waiting for the pool),
//!   plus, only with `task_acks_late=True`, those `inspect active` lists:
//!   by default Celery acknowledges a task as it starts, so a running task
//!   is in neither the lists nor `unacked`. In-flight therefore counts the
//!   work a scale-out can still spread, which is what prefetch hides: a
//!   worker with concurrency 1 and prefetch multiplier 4 keeps 4 messages
//!   in `unacked` (4 reserved besides the running task, or 3 reserved and
//!   the running one with late acks).
//! * Messages of a worker that died (SIGKILL) stay in `unacked` until
//!   another worker restores them after `visibility_timeout` (1 h): they
//!   are still work, and are counted as in-flight.
//!
//! Not supported (they are kombu transport options the spec has no field
//! for): custom `priority_steps`, `sep`, `unacked_key`, `global_keyprefix`;
//! and routing keys that differ from the queue name (a task routed through
//! a topic exchange keeps its routing key in `unacked`, so it is not
//! matched to the queue; with Celery's default direct routing they are equal).
//!
//! # Cost of reading in-flight
//! `unacked` holds every reserved message of every queue on the database.
//! In-flight counts come from the endpoint's shared in-flight index
//! ([`super::celery_index`]), which reads the delivery tags each poll slot
//! and each message's routing key once: the broker's cost grows with the
//! number of endpoints and with the rate at which workers take messages,
//! not with pools x messages x message size. The queue's `LLEN`s go in the
//! endpoint's pipeline alongside the index's reads.
//!
//! # When the index cannot be read
//! If ACLs deny what the index needs, the source falls back to the method
//! it replaced and says so in [`MetricSource::warning`]: a server-side Lua
//! script (`HVALS`, a suffix comparison per value) that reads the lists and
//! the hash in one step, or, if scripts are denied too (`NOPERM`), `HSCAN`
//! from the client, counting the same way. Both read every in-flight
//! message on every poll, which is what the index exists to avoid.

use std::collections::HashSet;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::{RedisError, Script, Value};
use tokio::time::Instant;

use super::batch::Commands;
use super::celery_index::{InFlightIndex, Lookup, UNACKED_INDEX_KEY, UNACKED_KEY};
use super::endpoint::{Conn, Counted, Endpoint};
use super::errors::{has_code, key_text, within, OpError};
use crate::sources::{MetricSource, ReadFuture, SourceError};

/// kombu's `PRIORITY_STEPS` (kombu/transport/redis.py).
const PRIORITY_STEPS: [u8; 4] = [0, 3, 6, 9];
/// kombu's `Channel.sep`.
const SEP: &str = "\x06\x16";

/// KEYS[1..4]: the queue's priority lists; KEYS[5]: the unacked hash.
/// ARGV[1]: the routing key as kombu's JSON writes it, with quotes, then `]`.
/// A value counts when it ends with ARGV[1] preceded by `,` (and spaces):
/// the opening quote then cannot be an escaped one, so the last element is
/// exactly the routing key.
const SCRIPT: &str = r"
local queued = 0
for i = 1, 4 do
  queued = queued + redis.call('LLEN', KEYS[i])
end
local tail = ARGV[1]
local n = #tail
local inflight = 0
for _, v in ipairs(redis.call('HVALS', KEYS[5])) do
  if #v > n and string.sub(v, -n) == tail then
    local i = #v - n
    while i > 0 and string.byte(v, i) == 32 do i = i - 1 end
    if i > 0 and string.byte(v, i) == 44 then inflight = inflight + 1 end
  end
end
return {queued, inflight}
";

/// A `celery` trigger.
#[derive(Debug)]
pub(super) struct CelerySource {
    endpoint: Arc<Endpoint>,
    tail: String,
    include_in_flight: bool,
    timeout: Duration,
    script: Script,
    /// `LLEN` of each of the queue's lists, built once.
    llens: Commands,
    /// The script's `EVALSHA` for this queue (KEYS: the lists, then
    /// `unacked`; ARGV: the tail), built once.
    evalsha: Commands,
    /// Set once the server refused the script (ACL): use HSCAN from then on.
    script_denied: AtomicBool,
    /// The endpoint's shared in-flight index.
    index: Arc<InFlightIndex>,
    /// The queue's name as kombu's JSON writes a routing key (quoted).
    route: Vec<u8>,
    /// Why the last read counted in-flight the slow way, if it did.
    warning: Mutex<Option<String>>,
    /// [`MetricSource::describe`]'s text, made once rather than every read.
    what: String,
}

impl CelerySource {
    pub(super) fn new(
        endpoint: Arc<Endpoint>,
        index: Arc<InFlightIndex>,
        queue: String,
        include_in_flight: bool,
        timeout: Duration,
    ) -> Self {
        let lists = priority_lists(&queue);
        let route = python_json_string(&queue);
        let tail = format!("{route}]");
        let what = format!(
            "Celery queue {} ({}) on {}",
            key_text(&queue),
            if include_in_flight {
                "queued + unacked"
            } else {
                "queued"
            },
            endpoint.display()
        );
        let script = Script::new(SCRIPT);
        let llens = lists
            .iter()
            .map(|k| {
                let mut llen = ::redis::cmd("LLEN");
                llen.arg(k);
                llen
            })
            .collect();
        let mut evalsha = ::redis::cmd("EVALSHA");
        evalsha
            .arg(script.get_hash())
            .arg(lists.len() + 1)
            .arg(&lists)
            .arg(UNACKED_KEY)
            .arg(&tail);
        CelerySource {
            what,
            endpoint,
            tail,
            include_in_flight,
            timeout,
            script,
            llens,
            evalsha: Commands::from([evalsha]),
            script_denied: AtomicBool::new(false),
            index,
            route: route.into_bytes(),
            warning: Mutex::new(None),
        }
    }

    /// Queued alone: the four `LLEN`s, answered together in the endpoint's
    /// next pipeline. With in-flight: the same, while the endpoint's index
    /// (refreshed at most once per poll slot, its reads in the same
    /// pipeline) counts the queue's in-flight messages.
    async fn read_once(&self, conn: Conn, asked: Instant) -> Result<f64, OpError> {
        let ep = &*self.endpoint;
        let deadline = conn.deadline;
        if !self.include_in_flight {
            let r = ep.query_group(conn, &self.llens).await?;
            return Ok(self.queued(r)? as f64);
        }
        let (queued, inflight) = futures::join!(
            ep.query_group(conn, &self.llens),
            self.index.count(&self.route, asked, deadline, &self.what)
        );
        let inflight = inflight.map_err(|e| match e {
            OpError::Redis(e) => self.wrong_type_or(e),
            e => e,
        });
        match inflight? {
            Lookup::Count(n) => {
                let queued = self.queued(queued?)?;
                self.set_warning(None);
                Ok((queued + n) as f64)
            }
            Lookup::Denied(why) => {
                let r = Box::pin(self.read_without_index(deadline)).await;
                self.set_warning(Some(format!(
                    "in-flight counted by reading every message in {UNACKED_KEY:?} on each \
                     poll, which loads Redis: {why}"
                )));
                r.map_err(|e| self.denied_too(e, &why))
            }
        }
    }

    /// Records the warning, logging when one starts.
    fn set_warning(&self, w: Option<String>) {
        let mut cur = self.warning.lock().unwrap_or_else(|e| e.into_inner());
        if let (Some(w), None) = (&w, &*cur) {
            tracing::warn!(source = %self.what, "{w}");
        }
        *cur = w;
    }

    /// A failed fallback read says that the index was denied first.
    fn denied_too(&self, e: OpError, why: &str) -> OpError {
        match e {
            OpError::Redis(e) => OpError::Source(in_context_denied(
                self.endpoint.redis_error(&self.what, &e),
                why,
            )),
            OpError::Source(e) => OpError::Source(in_context_denied(e, why)),
            OpError::TimedOut => OpError::TimedOut,
        }
    }

    /// The method the index replaced: `EVALSHA` of the script, batched;
    /// loading the script after `NOSCRIPT` (after a server restart or
    /// `SCRIPT FLUSH`) and the `HSCAN` fallback go on the connection directly.
    /// Those two are boxed: the future of every read would otherwise carry
    /// their state, and grow past what the allocator serves quickly.
    async fn read_without_index(&self, deadline: Instant) -> Result<f64, OpError> {
        let ep = &*self.endpoint;
        if !self.script_denied.load(Ordering::Relaxed) {
            let conn = ep.connection(&self.what, deadline).await?;
            let r: Result<(i64, i64), OpError> = match ep.query_one(conn, &self.evalsha).await {
                // The server does not have the script (yet, or since a
                // restart or SCRIPT FLUSH): load it, then run it again.
                Err(OpError::Redis(e)) if has_code(&e, "NOSCRIPT") => {
                    Box::pin(self.endpoint.load_and_run(
                        &self.what,
                        &self.script,
                        &self.evalsha,
                        deadline,
                    ))
                    .await
                }
                other => other,
            };
            match r {
                Ok((queued, inflight)) => return Ok((queued + inflight) as f64),
                Err(OpError::Redis(e)) if has_code(&e, "NOPERM") => {
                    self.script_denied.store(true, Ordering::Relaxed);
                }
                Err(OpError::Redis(e)) => return Err(self.wrong_type_or(e)),
                Err(e) => return Err(e),
            }
        }
        Box::pin(self.read_without_script(deadline)).await
    }

    /// Queued, then in-flight by [`CelerySource::in_flight_by_scan`].
    async fn read_without_script(&self, deadline: Instant) -> Result<f64, OpError> {
        let ep = &*self.endpoint;
        let c = ep.connection(&self.what, deadline).await?;
        let queued = ep.query_group(c, &self.llens).await?;
        let queued = self.queued(queued)?;
        let inflight = within(deadline, async {
            let c = ep.connection(&self.what, deadline).await?;
            self.in_flight_by_scan(&mut ep.direct(c)).await
        });
        Ok((queued + inflight.await?) as f64)
    }

    /// The sum of the `LLEN` replies.
    fn queued(&self, replies: Vec<Value>) -> Result<i64, OpError> {
        super::errors::replies::<i64>(replies)
            .map(|v| v.iter().sum())
            .map_err(|e| self.wrong_type_or(e))
    }

    /// The fallback when scripts are denied: HSCAN the hash (deduplicated
    /// by delivery tag, as SCAN may repeat a field).
    async fn in_flight_by_scan(&self, conn: &mut Counted<'_>) -> Result<i64, OpError> {
        let mut cursor: u64 = 0;
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut n = 0;
        loop {
            let r: Result<HscanPage, RedisError> = ::redis::cmd("HSCAN")
                .arg(UNACKED_KEY)
                .arg(cursor)
                .arg("COUNT")
                .arg(500)
                .query_async(conn)
                .await;
            let (next, entries) = r.map_err(|e| self.wrong_type_or(e))?;
            for (tag, value) in entries {
                if routed_to(&value, self.tail.as_bytes()) && seen.insert(tag) {
                    n += 1;
                }
            }
            if next == 0 {
                return Ok(n);
            }
            cursor = next;
        }
    }

    fn wrong_type_or(&self, e: RedisError) -> OpError {
        if has_code(&e, "WRONGTYPE") {
            OpError::Source(SourceError::BadResult(format!(
                "{}: wrong type: the queue's lists must be lists, {UNACKED_KEY:?} a hash and \
                 {UNACKED_INDEX_KEY:?} a sorted set \
                 (is this database used by something other than kombu?)",
                self.what
            )))
        } else {
            OpError::Redis(e)
        }
    }
}

impl MetricSource for CelerySource {
    fn read(&self) -> ReadFuture<'_> {
        Box::pin(async move {
            let asked = Instant::now();
            self.endpoint
                .run(&self.what, self.timeout, |conn| self.read_once(conn, asked))
                .await
        })
    }

    fn warning(&self) -> Option<String> {
        self.warning
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}

/// An error of the fallback read, prefixed with why there was a fallback.
fn in_context_denied(e: SourceError, why: &str) -> SourceError {
    let add = |m: String| format!("{m} (after the in-flight index was denied: {why})");
    match e {
        SourceError::Auth(m) => SourceError::Auth(add(m)),
        SourceError::BadResult(m) => SourceError::BadResult(add(m)),
        SourceError::Connection(m) => SourceError::Connection(add(m)),
        other => other,
    }
}

/// The lists kombu uses for a queue, in its priority order.
fn priority_lists(queue: &str) -> [String; 4] {
    PRIORITY_STEPS.map(|step| {
        if step == 0 {
            queue.to_string()
        } else {
            format!("{queue}{SEP}{step}")
        }
    })
}

/// The same test as the Lua script, for the HSCAN fallback.
fn routed_to(value: &[u8], tail: &[u8]) -> bool {
    if value.len() <= tail.len() || !value.ends_with(tail) {
        return false;
    }
    let before = &value[..value.len() - tail.len()];
    before
        .iter()
        .rev()
        .find(|b| **b != b' ')
        .is_some_and(|b| *b == b',')
}

/// A string as Python's `json.dumps` writes it (`ensure_ascii=True`):
/// `"`, `\` and the usual control characters escaped by name, everything
/// else outside printable ASCII as `\uXXXX` (UTF-16, lowercase hex).
fn python_json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
    out
}

/// One HSCAN reply: the next cursor and (field, value) pairs.
type HscanPage = (u64, Vec<(Vec<u8>, Vec<u8>)>);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_follow_kombu() {
        assert_eq!(
            priority_lists("orders"),
            [
                "orders".to_string(),
                "orders\x06\x163".to_string(),
                "orders\x06\x166".to_string(),
                "orders\x06\x169".to_string()
            ]
        );
    }

    #[test]
    fn json_escaping_matches_python() {
        // python3 -c 'import json; print(json.dumps("a\"b\\c\nü€😀\x7f"))'
        assert_eq!(
            python_json_string("a\"b\\c\nü€😀\x7f"),
            r#""a\"b\\c\n\u00fc\u20ac\ud83d\ude00\u007f""#
        );
        assert_eq!(python_json_string("orders"), "\"orders\"");
    }

    #[test]
    fn routing_key_is_the_last_element_only() {
        let tail = format!("{}]", python_json_string("q1"));
        let t = tail.as_bytes();
        assert!(routed_to(br#"[{"body": "x"}, "", "q1"]"#, t));
        assert!(routed_to(br#"[{"body": "x"},"","q1"]"#, t));
        assert!(!routed_to(br#"[{"body": "x"}, "", "xq1"]"#, t));
        // A routing key ending in an escaped quote followed by q1.
        assert!(!routed_to(br#"[{"body": "x"}, "", "a, \"q1"]"#, t));
        assert!(!routed_to(br#"[{"body": "x"}, "", "q2"]"#, t));
    }
}
