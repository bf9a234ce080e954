//! What every queue-framework source (`rq`, ...) shares. A framework file
//! gives a [`Layout`]: a small server-side script that counts the queue's
//! jobs by kind in one step, the keys it reads, and how the framework
//! writes an enqueue time. This file runs the script through the
//! endpoint's batched pipeline (one `EVALSHA` per read: still one round
//! trip per endpoint per poll slot), loads it after `NOSCRIPT`, and sums the
//! kinds the trigger includes.
//!
//! Every script starts with [`PRELUDE`]: `typed(key, type)` fails the read
//! with a `WRONGTYPE` error naming the key when a key holds something else
//! (a missing key is an empty queue: the frameworks delete what empties), and
//! `want(c)` says whether the read needs a kind (ARGV[1] holds the letters
//! W, I, S, R of the included kinds, or A for the age of the oldest job), so
//! a script skips the work a trigger does not need. A script returns
//! `{waiting, inFlight, scheduled, retrying, headEnqueuedAt}`, the last
//! being the enqueue time of the next job to run as the framework writes it
//! (false when not asked for or the queue is empty). Times are the
//! server's (`TIME`), so the operator's clock does not matter.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ::redis::Script;

use super::batch::Commands;
use super::endpoint::{Conn, Endpoint};
use super::errors::{has_code, OpError};
use crate::api::{FrameworkMeasureKind, JobState};

/// Per-job look-ups (or decodes) one read may make before it is refused:
/// ~3.5–4 µs each, so at most ~40 ms of the Redis server's time.
pub(super) const MAX_DUE_LOOKUPS: u32 = 10_000;
use crate::sources::{MetricSource, ReadFuture, SourceError};

/// Lua shared by every framework script (see the module doc).
pub(super) const PRELUDE: &str = r"
local function want(c) return string.find(ARGV[1], c, 1, true) ~= nil end
local function typed(key, expected)
  local t = redis.call('TYPE', key).ok
  if t ~= 'none' and t ~= expected then
    error({err = 'WRONGTYPE key ' .. key .. ' holds a ' .. t .. ', not a ' .. expected})
  end
  return t ~= 'none'
end
local function now()
  local t = redis.call('TIME')
  return tonumber(t[1]) + tonumber(t[2]) / 1000000
end
";

/// How a framework's queue is read.
#[derive(Debug)]
pub(super) struct Layout {
    /// The framework's name, for descriptions and errors (`RQ`).
    pub framework: &'static str,
    /// The queue as the trigger names it, for descriptions (`queue "default"`).
    pub queue_text: String,
    /// The framework's script body, run after [`PRELUDE`].
    pub body: &'static str,
    /// The script's KEYS.
    pub keys: Vec<String>,
    /// The script's ARGV after the first (which says what to compute).
    pub args: Vec<String>,
    /// Reads the framework's enqueue time as unix seconds (OldestAgeSeconds).
    pub parse_time: fn(&str) -> Option<f64>,
}

/// A queue-framework trigger.
#[derive(Debug)]
pub(super) struct FrameworkSource {
    endpoint: Arc<Endpoint>,
    layout: Layout,
    measure: FrameworkMeasureKind,
    include: Vec<JobState>,
    script: Script,
    /// The script's `EVALSHA` for this trigger, built once.
    evalsha: Commands,
    timeout: Duration,
    what: String,
}

/// What one run of a framework script answered.
type Answer = (i64, i64, i64, i64, Option<String>);

impl FrameworkSource {
    pub(super) fn new(
        endpoint: Arc<Endpoint>,
        layout: Layout,
        measure: FrameworkMeasureKind,
        include: Vec<JobState>,
        timeout: Duration,
    ) -> Self {
        let (flags, reading) = match measure {
            FrameworkMeasureKind::OldestAgeSeconds => {
                ("A".to_string(), "age of the next job".to_string())
            }
            FrameworkMeasureKind::Count => (
                include.iter().map(|s| letter(*s)).collect(),
                include
                    .iter()
                    .map(|s| format!("{s:?}"))
                    .collect::<Vec<_>>()
                    .join(" + "),
            ),
        };
        let what = format!(
            "{} {} ({reading}) on {}",
            layout.framework,
            layout.queue_text,
            endpoint.display()
        );
        let script = Script::new(&format!("{PRELUDE}{}", layout.body));
        let mut c = ::redis::cmd("EVALSHA");
        c.arg(script.get_hash())
            .arg(layout.keys.len())
            .arg(&layout.keys)
            .arg(flags)
            .arg(&layout.args);
        FrameworkSource {
            endpoint,
            layout,
            measure,
            include,
            script,
            evalsha: Commands::from([c]),
            timeout,
            what,
        }
    }

    async fn read_once(&self, conn: Conn) -> Result<f64, OpError> {
        let deadline = conn.deadline;
        let r: Result<Answer, OpError> = match self.endpoint.query_one(conn, &self.evalsha).await {
            // Not loaded yet, or lost in a restart or SCRIPT FLUSH.
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
        let (waiting, in_flight, scheduled, retrying, head) = match r {
            Ok(a) => a,
            Err(OpError::Redis(e)) if has_code(&e, "WRONGTYPE") => return Err(self.wrong_type(&e)),
            Err(OpError::Redis(e)) if has_code(&e, "TOOMANY") || has_code(&e, "UNREADABLE") => {
                return Err(self.too_many(&e))
            }
            Err(e) => return Err(e),
        };
        if self.measure == FrameworkMeasureKind::OldestAgeSeconds {
            return self.age(head);
        }
        let count = |s| match s {
            JobState::Waiting => waiting,
            JobState::InFlight => in_flight,
            JobState::Scheduled => scheduled,
            JobState::Retrying => retrying,
        };
        Ok(self.include.iter().map(|s| count(*s)).sum::<i64>() as f64)
    }

    /// Seconds since `head` (the next job's enqueue time); 0 for an empty queue.
    fn age(&self, head: Option<String>) -> Result<f64, OpError> {
        let Some(text) = head else {
            return Ok(0.0);
        };
        let at = (self.layout.parse_time)(&text).ok_or_else(|| {
            OpError::Source(SourceError::BadResult(format!(
                "{}: the next job's enqueue time {:?} is not in {}'s format",
                self.what,
                text.escape_debug().to_string(),
                self.layout.framework
            )))
        })?;
        Ok((unix_now() - at).max(0.0))
    }

    /// A script's refusal of per-job look-ups on a huge backlog, or of a job
    /// it cannot decode (its own words: only our scripts raise `TOOMANY`
    /// and `UNREADABLE`).
    fn too_many(&self, e: &::redis::RedisError) -> OpError {
        let detail = e
            .detail()
            .map(|d| d.split(" script:").next().unwrap_or(d).to_string())
            .unwrap_or_default();
        OpError::Source(SourceError::BadResult(format!("{}: {detail}", self.what)))
    }

    /// The script's `WRONGTYPE key K holds a T, not a U` with the framework
    /// and the source around it.
    fn wrong_type(&self, e: &::redis::RedisError) -> OpError {
        let detail = e
            .detail()
            .map(|d| d.split(" script:").next().unwrap_or(d).to_string())
            .unwrap_or_else(|| e.to_string());
        OpError::Source(SourceError::BadResult(format!(
            "{}: wrong type: {detail}, which is what {} keeps there \
             (is the queue name right, or is this database used by something else?)",
            self.what, self.layout.framework
        )))
    }
}

impl MetricSource for FrameworkSource {
    fn read(&self) -> ReadFuture<'_> {
        Box::pin(async move {
            self.endpoint
                .run(&self.what, self.timeout, |conn| self.read_once(conn))
                .await
        })
    }

    fn describe(&self) -> String {
        self.what.clone()
    }
}

/// The script's letter for a kind (see the module doc).
fn letter(s: JobState) -> char {
    match s {
        JobState::Waiting => 'W',
        JobState::InFlight => 'I',
        JobState::Scheduled => 'S',
        JobState::Retrying => 'R',
    }
}

/// Seconds since the epoch, as the frameworks' scores count them.
pub(super) fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}
