//! `--measure`: which Redis measure every pool's trigger uses, and where
//! the bench writes a pool's depth in that framework's own layout (no
//! framework runs at bench time: the bench writes its keys itself).

use serde_json::{json, Value};

/// A pool's trigger measure.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Measure {
    /// `list`: LLEN of one list (the default).
    List,
    /// `celery`: kombu's queue list and its priority lists, plus the
    /// endpoint's shared in-flight index.
    Celery,
    /// `rq`: Waiting, InFlight, Scheduled, as examples/queues/rq.
    Rq,
    /// `arq`: every due job (its default), as examples/queues/arq.
    Arq,
    /// `huey`: Waiting and Scheduled, as examples/queues/huey.
    Huey,
    /// `bullmq`: all four kinds, as examples/queues/bullmq.
    Bullmq,
    /// `dramatiq`: Waiting and InFlight (its default), as examples/queues/dramatiq.
    Dramatiq,
    /// `sidekiq`: Waiting and InFlight (its default: the shared `processes`
    /// set is read too), as examples/queues/sidekiq.
    Sidekiq,
}

/// How the depth is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepthKind {
    /// A list of `depth` items.
    List,
    /// A sorted set of `depth` members, all due long ago (arq).
    DueZset,
}

impl Measure {
    /// Pool `i`'s queue as its trigger names it. A framework queue's name
    /// is one every framework accepts (no `:` for BullMQ, only
    /// `[A-Za-z0-9_]` for Huey).
    pub fn queue(self, pid: u32, i: usize) -> String {
        match self {
            Measure::List => format!("scale_bench:{pid}:q-{i}"),
            _ => format!("scale_bench_{pid}_q_{i}"),
        }
    }

    /// The key the bench fills to set the depth of `queue`: the
    /// framework's list (or sorted set) of waiting jobs.
    pub fn depth_key(self, queue: &str) -> String {
        match self {
            Measure::List | Measure::Celery | Measure::Arq => queue.to_string(),
            Measure::Rq => format!("rq:queue:{queue}"),
            Measure::Huey => format!("huey.redis.{queue}"),
            Measure::Bullmq => format!("bull:{queue}:wait"),
            Measure::Dramatiq => format!("dramatiq:{queue}"),
            Measure::Sidekiq => format!("queue:{queue}"),
        }
    }

    pub fn depth_kind(self) -> DepthKind {
        match self {
            Measure::Arq => DepthKind::DueZset,
            _ => DepthKind::List,
        }
    }

    /// The trigger's `redis` fields besides the URL.
    pub fn trigger(self, queue: &str) -> Value {
        match self {
            Measure::List => json!({ "list": queue }),
            Measure::Celery => json!({ "celery": { "queue": queue } }),
            Measure::Rq => json!({
                "rq": { "queue": queue, "include": ["Waiting", "InFlight", "Scheduled"] }
            }),
            Measure::Arq => json!({ "arq": { "queueName": queue } }),
            Measure::Huey => json!({
                "huey": { "name": queue, "include": ["Waiting", "Scheduled"] }
            }),
            Measure::Bullmq => json!({
                "bullmq": {
                    "queue": queue,
                    "include": ["Waiting", "InFlight", "Scheduled", "Retrying"]
                }
            }),
            Measure::Dramatiq => json!({ "dramatiq": { "queue": queue } }),
            Measure::Sidekiq => json!({ "sidekiq": { "queue": queue } }),
        }
    }

    /// The command a read sends per pool, as `INFO commandstats` names it
    /// (the report counts it per tick): the framework measures run one
    /// script, whose own commands Redis counts too.
    pub fn read_command(self) -> &'static str {
        match self {
            Measure::List | Measure::Celery => "llen",
            _ => "evalsha",
        }
    }
}
