//! What the plain Redis measures read: `list`, `lists`, `stream`, `sortedSet`.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::{Cmd, RedisError, Value};
use tokio::time::Instant;

use super::batch::Commands;
use super::endpoint::{Conn, Endpoint};
use super::errors::*;
use super::stream_groups::group_value;
use crate::api::{RedisTrigger, StreamMeasureKind};
use crate::sources::{MetricSource, ReadFuture, SourceError};

/// The source of a `list`, `lists`, `stream` or `sortedSet` trigger.
pub(super) fn build(
    endpoint: Arc<Endpoint>,
    r: &RedisTrigger,
    timeout: Duration,
) -> Result<Arc<dyn MetricSource>, SourceError> {
    let measure = if let Some(l) = &r.list {
        Measure::List(l.clone())
    } else if let Some(ls) = &r.lists {
        if ls.is_empty() {
            return Err(SourceError::Config("redis.lists names no list".into()));
        }
        Measure::Lists(ls.clone())
    } else if let Some(s) = &r.stream {
        match (s.measure, &s.group) {
            (StreamMeasureKind::Length, _) => Measure::StreamLength(s.name.clone()),
            (kind, Some(g)) if !g.is_empty() => Measure::StreamGroup {
                stream: s.name.clone(),
                group: g.clone(),
                kind,
            },
            (kind, _) => {
                return Err(SourceError::Config(format!(
                    "redis.stream.group is required for measure {kind:?}"
                )))
            }
        }
    } else if let Some(z) = &r.sorted_set {
        Measure::SortedSet {
            key: z.name.clone(),
            due_only: z.due_only,
        }
    } else {
        return Err(SourceError::Config(
            "redis sets none of list, lists, celery, stream, sortedSet".into(),
        ));
    };
    Ok(Arc::new(RedisSource {
        what: describe(&measure, endpoint.display()),
        commands: commands(&measure),
        endpoint,
        measure,
        timeout,
    }))
}

/// What a Redis source reads.
#[derive(Debug, Clone)]
enum Measure {
    List(String),
    Lists(Vec<String>),
    StreamGroup {
        stream: String,
        group: String,
        kind: StreamMeasureKind,
    },
    StreamLength(String),
    SortedSet {
        key: String,
        due_only: bool,
    },
}

/// A `list`, `lists`, `stream` or `sortedSet` trigger.
#[derive(Debug)]
struct RedisSource {
    endpoint: Arc<Endpoint>,
    measure: Measure,
    /// What every read sends, built once ([`commands`]).
    commands: Commands,
    timeout: Duration,
    /// [`describe`]'s text, made once: errors need it, and formatting it on
    /// every read was a tenth of the cost of a read (examples/redis_read_bench.rs).
    what: String,
}

impl MetricSource for RedisSource {
    fn read(&self) -> ReadFuture<'_> {
        Box::pin(async move {
            let what = self.what.as_str();
            self.endpoint
                .run(what, self.timeout, |conn| self.read_once(conn, what))
                .await
        })
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}

/// What a source reads where, e.g. `LLEN orders on redis://h:6379/0`.
fn describe(measure: &Measure, on: &str) -> String {
    match measure {
        Measure::List(k) => format!("LLEN {} on {on}", key_text(k)),
        Measure::Lists(ks) => format!(
            "sum of LLEN {} on {on}",
            ks.iter()
                .map(|k| key_text(k))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Measure::StreamGroup {
            stream,
            group,
            kind,
        } => format!(
            "{} of group {} on stream {} on {on}",
            match kind {
                StreamMeasureKind::Lag => "lag",
                StreamMeasureKind::Pending => "pending",
                StreamMeasureKind::Length => "length",
            },
            key_text(group),
            key_text(stream)
        ),
        Measure::StreamLength(k) => format!("XLEN {} on {on}", key_text(k)),
        Measure::SortedSet { key, due_only } => {
            if *due_only {
                format!("ZCOUNT {} -inf now on {on}", key_text(key))
            } else {
                format!("ZCARD {} on {on}", key_text(key))
            }
        }
    }
}

/// The commands a measure's reads send, together in a batch's pipeline.
/// A `dueOnly` sorted set's `ZCOUNT` names the time of the read, so it is
/// built per read instead (its `ZCARD` here goes unused).
fn commands(measure: &Measure) -> Commands {
    fn cmd(name: &str, args: &[&str]) -> Cmd {
        let mut c = ::redis::cmd(name);
        for a in args {
            c.arg(*a);
        }
        c
    }
    match measure {
        Measure::List(k) => Commands::from([cmd("LLEN", &[k])]),
        Measure::Lists(ks) => ks.iter().map(|k| cmd("LLEN", &[k])).collect(),
        Measure::SortedSet { key, .. } => Commands::from([cmd("ZCARD", &[key])]),
        Measure::StreamLength(k) => Commands::from([cmd("TYPE", &[k]), cmd("XLEN", &[k])]),
        Measure::StreamGroup { stream, .. } => Commands::from([cmd("XINFO", &["GROUPS", stream])]),
    }
}

impl RedisSource {
    async fn read_once(&self, conn: Conn, what: &str) -> Result<f64, OpError> {
        let ep = &*self.endpoint;
        let deadline = conn.deadline;
        let check = |keys, expected| WrongTypeExplainer {
            ep,
            what,
            keys,
            expected,
            deadline,
        };
        match &self.measure {
            Measure::List(k) => {
                let n: Result<i64, OpError> = ep.query_one(conn, &self.commands).await;
                Ok(check(&[k], "list").reply(n).await? as f64)
            }
            Measure::Lists(ks) => {
                let n = ep.query_group(conn, &self.commands).await?;
                let v = replies::<i64>(n).map_err(OpError::Redis);
                let keys: Vec<&String> = ks.iter().collect();
                let v = check(&keys, "list").reply(v).await?;
                Ok(v.iter().sum::<i64>() as f64)
            }
            Measure::SortedSet { key, due_only } => {
                let n: Result<i64, OpError> = if *due_only {
                    let now = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .map(|d| d.as_secs_f64())
                        .unwrap_or(0.0);
                    let mut c = ::redis::cmd("ZCOUNT");
                    c.arg(key).arg("-inf").arg(format!("{now:.3}"));
                    ep.query_one(conn, &Commands::from([c])).await
                } else {
                    ep.query_one(conn, &self.commands).await
                };
                Ok(check(&[key], "zset").reply(n).await? as f64)
            }
            Measure::StreamLength(k) => {
                let v = ep.query_group(conn, &self.commands).await?;
                let r = match <[Value; 2]>::try_from(v) {
                    Ok([kind, len]) => {
                        reply::<String>(kind).and_then(|kind| Ok((kind, reply::<i64>(len)?)))
                    }
                    Err(_) => Err(wrong_shape()),
                };
                let (kind, len) = check(&[k], "stream")
                    .reply(r.map_err(OpError::Redis))
                    .await?;
                if kind == "none" {
                    return Err(OpError::Source(SourceError::NotFound(format!(
                        "{what}: stream {} does not exist",
                        key_text(k)
                    ))));
                }
                Ok(len as f64)
            }
            Measure::StreamGroup {
                stream,
                group,
                kind,
            } => {
                let r: Result<Value, OpError> = ep.query_one(conn, &self.commands).await;
                let groups = match r {
                    Err(OpError::Redis(e))
                        if e.detail().is_some_and(|d| d.contains("no such key")) =>
                    {
                        return Err(OpError::Source(SourceError::NotFound(format!(
                            "{what}: stream {} does not exist",
                            key_text(stream)
                        ))))
                    }
                    other => check(&[stream], "stream").reply(other).await?,
                };
                group_value(&groups, group, *kind)
                    .map_err(|e| OpError::Source(e.in_context(what, stream, group)))
            }
        }
    }
}

/// Turns a `WRONGTYPE` reply into an error that says what the keys hold
/// instead: one more round trip, on the error path only, on the connection
/// directly (errors are rare, and need not wait for a batch).
struct WrongTypeExplainer<'a> {
    ep: &'a Endpoint,
    what: &'a str,
    keys: &'a [&'a String],
    /// The type the keys should have, as `TYPE` names it.
    expected: &'a str,
    /// The read's.
    deadline: Instant,
}

impl WrongTypeExplainer<'_> {
    /// Passes a reply through, or explains a `WRONGTYPE`.
    async fn reply<T>(&self, r: Result<T, OpError>) -> Result<T, OpError> {
        match r {
            Err(OpError::Redis(e)) if has_code(&e, "WRONGTYPE") => {
                // Boxed, so that the future of every read does not carry it.
                Err(Box::pin(self.wrong_type()).await)
            }
            other => other,
        }
    }

    async fn wrong_type(&self) -> OpError {
        let (ep, what, expected) = (self.ep, self.what, self.expected);
        let mut pipe = ::redis::pipe();
        for k in self.keys {
            pipe.cmd("TYPE").arg(k.as_str());
        }
        let lookup = within(self.deadline, async {
            let c = ep.connection(what, self.deadline).await?;
            let types: Result<Vec<String>, RedisError> = pipe.query_async(&mut ep.direct(c)).await;
            Ok(types.unwrap_or_default())
        });
        let types = match lookup.await {
            Ok(types) => types,
            Err(e) => return e,
        };
        let wrong: Vec<String> = self
            .keys
            .iter()
            .zip(&types)
            .filter(|(_, t)| t.as_str() != expected && t.as_str() != "none")
            .map(|(k, t)| format!("{} is a {t}", key_text(k)))
            .collect();
        let detail = if wrong.is_empty() {
            format!("a key is not a {expected}")
        } else {
            format!("{}, not a {expected}", wrong.join(", "))
        };
        OpError::Source(SourceError::BadResult(format!(
            "{what}: wrong type: {detail}"
        )))
    }
}
