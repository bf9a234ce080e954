//! Which Celery workers are busy, asked of the workers themselves: the
//! equivalent of `celery inspect active` and `celery inspect reserved`,
//! spoken over the trigger's Redis broker with kombu's mailbox protocol
//! (see [`super::pidbox`] for the wire format).
//!
//! One call: bind a fresh reply queue, broadcast `active` and `reserved`
//! together (one ticket each), collect the replies until every mailbox
//! that received the broadcast has answered both or the wait is over,
//! then remove the reply queue. `PUBLISH` says how many mailboxes
//! received each broadcast, so a call where every worker answers returns
//! within a few round trips instead of waiting out the whole window.
//!
//! A worker that does not answer in time is *unknown*, never idle: it may
//! be stuck, overloaded, or unable to answer while it works (`--pool solo`
//! runs tasks on the thread that answers). Callers must treat a pod whose
//! workers did not all answer as busy.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use ::redis::{Script, Value};
use tokio::time::Instant;

use super::endpoint::{Conn, Endpoint};
use super::errors::{replies, within, OpError};
use super::pidbox::{self, Answer, Reply, ReplyQueue};
use crate::sources::SourceError;

/// How long Celery's own `inspect` waits for replies (`Inspect(timeout=1.0)`).
pub const DEFAULT_INSPECT_WAIT: Duration = Duration::from_secs(1);

/// The longest wait a caller may ask for: a call stays bounded whatever it is handed.
const MAX_WAIT: Duration = Duration::from_secs(30);
/// The largest reply accepted. Workers list each reserved task with its
/// arguments, so big arguments make big replies; past this the call fails.
const MAX_REPLY_BYTES: usize = 4 << 20;
/// All replies of one call together.
const MAX_TOTAL_BYTES: usize = 32 << 20;
/// Replies to one command (one per worker).
const MAX_WORKERS: usize = 4096;
/// Replies taken per round trip, and their bytes.
const POP_COUNT: usize = 256;
const POP_BYTES: usize = 8 << 20;
/// The pause between looks at the reply list grows to this.
const MAX_PAUSE: Duration = Duration::from_millis(100);

/// Takes up to ARGV[1] replies from the tail of list KEYS[1] (the oldest:
/// workers LPUSH), never more than ARGV[3] bytes in all, and sets the
/// list's TTL to ARGV[4] ms so that a reply queue we could not remove
/// still goes away. A reply over ARGV[2] bytes is removed and answered by
/// its size (an integer) instead: untrusted data is bounded on the server.
const POP_REPLIES: &str = r"
local out = {}
local max_item = tonumber(ARGV[2])
local budget = tonumber(ARGV[3])
for i = 1, tonumber(ARGV[1]) do
  local item = redis.call('LINDEX', KEYS[1], -1)
  if not item then break end
  local size = string.len(item)
  if size <= max_item and size > budget then break end
  redis.call('RPOP', KEYS[1])
  if size > max_item then
    out[#out + 1] = size
    break
  end
  budget = budget - size
  out[#out + 1] = item
end
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return out
";

/// Asks Celery workers on one broker what they are doing.
#[derive(Debug)]
pub struct CeleryInspector {
    endpoint: Arc<Endpoint>,
    control_exchange: String,
    /// Bounds each request to Redis (not the wait for replies).
    timeout: Duration,
    what: String,
    script: Script,
}

/// What the workers that answered are doing, by worker hostname.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BusyWorkers {
    /// Workers that answered both commands.
    pub workers: BTreeMap<String, WorkerLoad>,
    /// Workers that answered only one command in time, or answered with
    /// an error: their state is unknown.
    pub unknown: BTreeSet<String>,
    /// How many mailboxes received the broadcast (the larger `PUBLISH`
    /// count of the two commands). More than `workers.len()` means some
    /// worker did not answer: which one cannot be known, so every pod
    /// without a full answer must be treated as busy.
    pub listeners: u64,
}

/// One worker's tasks, as `celery inspect` counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkerLoad {
    /// Tasks it is running (`inspect active`).
    pub active: u32,
    /// Tasks it has taken from the queue but not started (`inspect
    /// reserved`: prefetched, not counting active or ETA-scheduled ones).
    pub reserved: u32,
}

impl WorkerLoad {
    /// Neither running nor holding a task.
    pub fn is_idle(&self) -> bool {
        self.active == 0 && self.reserved == 0
    }
}

impl BusyWorkers {
    /// Every mailbox that received the broadcast answered both commands.
    pub fn all_answered(&self) -> bool {
        self.unknown.is_empty() && self.workers.len() as u64 >= self.listeners
    }

    /// The summed load of the workers running in pod `pod_name` (see
    /// [`runs_in_pod`]; a pod may run several worker processes), or `None`
    /// when it is unknown: no worker of the pod answered, or one of them
    /// answered only in part.
    pub fn pod_load(&self, pod_name: &str) -> Option<WorkerLoad> {
        if self.unknown.iter().any(|h| runs_in_pod(h, pod_name)) {
            return None;
        }
        let mut found = None;
        for (_, load) in self
            .workers
            .iter()
            .filter(|(h, _)| runs_in_pod(h, pod_name))
        {
            let sum: &mut WorkerLoad = found.get_or_insert_with(WorkerLoad::default);
            sum.active = sum.active.saturating_add(load.active);
            sum.reserved = sum.reserved.saturating_add(load.reserved);
        }
        found
    }
}

/// Why a call failed. A failed call says nothing about any worker: treat
/// every pod as busy.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InspectError {
    /// Redis was unreachable, refused a command (ACL), or did not answer in time.
    #[error(transparent)]
    Redis(#[from] SourceError),
    /// A reply broke the protocol; says what was wrong, never quotes it.
    #[error("{what}: a reply {problem}")]
    BadReply { what: String, problem: String },
    /// Replies over the size or count limits.
    #[error("{what}: {problem}")]
    TooMuch { what: String, problem: String },
}

// === worker hostnames and pods ===

/// The host part of a Celery worker hostname: what follows the first `@`
/// (Celery's `nodesplit`), or all of it when there is no `@`. A worker
/// started with `-n celery@%h` (Celery's default) in a pod has the pod's
/// hostname there.
pub fn worker_host(hostname: &str) -> &str {
    hostname.split_once('@').map_or(hostname, |(_, host)| host)
}

/// The hostname a pod's containers see: the pod's name, cut to 63
/// characters without a trailing `-` or `.` (the kubelet's rule, as
/// `gethostname()` allows no more). Pods with `spec.hostname` set see that
/// instead, and are not recognised.
pub fn pod_hostname(pod_name: &str) -> &str {
    const MAX: usize = 63;
    match pod_name.get(..MAX) {
        Some(cut) if pod_name.len() > MAX => cut.trim_end_matches(['-', '.']),
        _ => pod_name,
    }
}

/// Whether a worker with hostname `<name>@<host>` runs in pod `pod_name`:
/// its host is the pod's hostname, or starts with it followed by a `.`
/// (an FQDN, from `setHostnameAsFQDN`).
pub fn runs_in_pod(worker_hostname: &str, pod_name: &str) -> bool {
    let host = worker_host(worker_hostname);
    let pod = pod_hostname(pod_name);
    !pod.is_empty()
        && host
            .strip_prefix(pod)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

// === the call ===

impl CeleryInspector {
    pub(super) fn new(endpoint: Arc<Endpoint>, timeout: Duration) -> CeleryInspector {
        let what = format!("Celery inspect on {}", endpoint.display());
        CeleryInspector {
            endpoint,
            control_exchange: "celery".into(),
            timeout,
            what,
            script: Script::new(POP_REPLIES),
        }
    }

    /// What is asked where (never a secret).
    pub fn what(&self) -> &str {
        &self.what
    }

    /// Uses Celery's `control_exchange` setting `name` instead of `celery`.
    pub fn with_control_exchange(mut self, name: &str) -> Result<Self, SourceError> {
        if name.is_empty() || name.len() > 200 || name.chars().any(char::is_control) {
            return Err(SourceError::Config(
                "Celery control exchange: 1 to 200 characters, no control characters".into(),
            ));
        }
        self.control_exchange = name.to_string();
        Ok(self)
    }

    /// Broadcasts `active` and `reserved` to every worker of the broker's
    /// database and collects the replies for at most `wait` (capped at
    /// 30 s; Celery's default is [`DEFAULT_INSPECT_WAIT`]), returning early
    /// once every mailbox that received the broadcast has answered both.
    /// The reply queue is removed before this returns (or, if the call is
    /// dropped midway, by a task spawned on drop).
    pub async fn busy_workers(&self, wait: Duration) -> Result<BusyWorkers, InspectError> {
        let queue = ReplyQueue::new(&self.control_exchange);
        let cleanup = Cleanup::new(self, &queue);
        let wait = wait.min(MAX_WAIT);
        let tickets = [pidbox::unique_id(), pidbox::unique_id()];
        let listeners = self.broadcast(&queue, &tickets, wait).await?;
        let mut replies = Collected::new(tickets, listeners);
        let result = self
            .collect(&queue, Instant::now() + wait, &mut replies)
            .await;
        if let Err(e) = cleanup.run().await {
            // The list expires by itself; only the binding member may stay.
            tracing::warn!(error = %e, "Celery inspect: the reply queue was not removed");
        }
        result?;
        Ok(replies.finish())
    }

    /// Binds the reply queue and publishes both requests in one pipeline;
    /// returns how many mailboxes received each.
    async fn broadcast(
        &self,
        queue: &ReplyQueue,
        tickets: &[String; 2],
        wait: Duration,
    ) -> Result<[u64; 2], InspectError> {
        let channel = pidbox::broadcast_channel(self.endpoint.db(), &self.control_exchange);
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| (d + wait).as_secs_f64())
            .unwrap_or_default();
        let mut bind = ::redis::cmd("SADD");
        bind.arg(&queue.binding_set).arg(&queue.binding_member);
        let mut cmds = vec![bind];
        // `safe` lists arguments by their bounded repr: smaller replies.
        let requests = [
            ("active", serde_json::json!({"safe": true})),
            ("reserved", serde_json::json!({})),
        ];
        for ((method, args), ticket) in requests.into_iter().zip(tickets) {
            let body =
                pidbox::request(&self.control_exchange, method, args, ticket, queue, expires);
            let mut publish = ::redis::cmd("PUBLISH");
            publish.arg(&channel).arg(body);
            cmds.push(publish);
        }
        let cmds: super::batch::Commands = cmds.into();
        let ep = &*self.endpoint;
        let counts = ep
            .run(&self.what, self.timeout, |conn| {
                let cmds = &cmds;
                async move {
                    let v = ep.query_group(conn, cmds).await?;
                    replies::<i64>(v).map_err(OpError::Redis)
                }
            })
            .await?;
        let count = |i: usize| counts.get(i).map_or(0, |n| u64::try_from(*n).unwrap_or(0));
        Ok([count(1), count(2)])
    }

    /// Takes replies off the reply list until all are in or `deadline`
    /// passes, looking again after a pause that grows from 5 ms.
    async fn collect(
        &self,
        queue: &ReplyQueue,
        deadline: Instant,
        into: &mut Collected,
    ) -> Result<(), InspectError> {
        let mut pause = Duration::from_millis(5);
        while !into.complete() {
            for item in self.pop(queue, deadline).await? {
                into.add(item).map_err(|e| e.within(&self.what))?;
            }
            let now = Instant::now();
            if into.complete() || now >= deadline {
                break;
            }
            tokio::time::sleep(pause.min(deadline - now)).await;
            pause = (pause * 2).min(MAX_PAUSE);
        }
        Ok(())
    }

    /// One run of [`POP_REPLIES`].
    async fn pop(&self, queue: &ReplyQueue, deadline: Instant) -> Result<Vec<Value>, InspectError> {
        let ttl = (deadline.saturating_duration_since(Instant::now()) + self.timeout)
            .max(Duration::from_secs(10));
        let ep = &*self.endpoint;
        let op = |conn: Conn| async move {
            let limit = conn.deadline;
            within(limit, async {
                self.script
                    .key(&queue.list)
                    .arg(POP_COUNT)
                    .arg(MAX_REPLY_BYTES)
                    .arg(POP_BYTES)
                    .arg(ttl.as_millis() as u64)
                    .invoke_async(&mut ep.direct(conn))
                    .await
                    .map_err(OpError::Redis)
            })
            .await
        };
        ep.run(&self.what, self.timeout, op)
            .await
            .map_err(|e| match e {
                SourceError::Auth(m) => SourceError::Auth(format!(
                    "{m} (replies are read by a script: the Redis user needs EVALSHA and EVAL)"
                )),
                e => e,
            })
            .map_err(InspectError::Redis)
    }
}

/// Removes a call's reply queue: the binding first, so no worker routes a
/// reply to it any more, then its lists. Runs on a spawned task if the
/// call is dropped before it ran.
struct Cleanup {
    endpoint: Arc<Endpoint>,
    commands: super::batch::Commands,
    timeout: Duration,
    what: String,
    armed: bool,
}

impl Cleanup {
    fn new(inspector: &CeleryInspector, queue: &ReplyQueue) -> Cleanup {
        let mut unbind = ::redis::cmd("SREM");
        unbind.arg(&queue.binding_set).arg(&queue.binding_member);
        let mut delete = ::redis::cmd("DEL");
        delete.arg(&queue.priority_lists());
        Cleanup {
            endpoint: inspector.endpoint.clone(),
            commands: super::batch::Commands::from([unbind, delete]),
            timeout: inspector.timeout,
            what: inspector.what.clone(),
            armed: true,
        }
    }

    async fn run(mut self) -> Result<(), SourceError> {
        self.armed = false;
        remove(&self.endpoint, &self.commands, self.timeout, &self.what).await
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (ep, cmds) = (self.endpoint.clone(), self.commands.clone());
            let (timeout, what) = (self.timeout, self.what.clone());
            runtime.spawn(async move {
                let _ = remove(&ep, &cmds, timeout, &what).await;
            });
        }
    }
}

async fn remove(
    ep: &Endpoint,
    cmds: &super::batch::Commands,
    timeout: Duration,
    what: &str,
) -> Result<(), SourceError> {
    ep.run(what, timeout, |conn| async move {
        let v = ep.query_group(conn, cmds).await?;
        replies::<i64>(v).map(|_| ()).map_err(OpError::Redis)
    })
    .await
}

// === collecting replies ===

/// The replies of one call so far: per command, each worker's answer.
struct Collected {
    /// The tickets of `active` and `reserved`.
    tickets: [String; 2],
    /// How many mailboxes received each.
    listeners: [u64; 2],
    answers: [BTreeMap<String, Answer>; 2],
    bytes: usize,
}

/// A reply [`Collected`] refused.
enum Refused {
    Bad(String),
    TooMuch(String),
}

impl Refused {
    fn within(self, what: &str) -> InspectError {
        let what = what.to_string();
        match self {
            Refused::Bad(problem) => InspectError::BadReply { what, problem },
            Refused::TooMuch(problem) => InspectError::TooMuch { what, problem },
        }
    }
}

impl Collected {
    fn new(tickets: [String; 2], listeners: [u64; 2]) -> Collected {
        Collected {
            tickets,
            listeners,
            answers: Default::default(),
            bytes: 0,
        }
    }

    /// Every mailbox that received a command has answered it.
    fn complete(&self) -> bool {
        (0..2).all(|i| self.answers[i].len() as u64 >= self.listeners[i])
    }

    /// Takes one item of [`POP_REPLIES`]'s answer.
    fn add(&mut self, item: Value) -> Result<(), Refused> {
        let raw = match item {
            Value::BulkString(b) => b,
            Value::Int(size) => {
                return Err(Refused::TooMuch(format!(
                    "a reply of {size} bytes is over the {} MiB limit \
                     (reserved tasks are listed with their arguments)",
                    MAX_REPLY_BYTES >> 20
                )))
            }
            _ => return Err(Refused::Bad("is not a string".into())),
        };
        self.bytes += raw.len();
        if self.bytes > MAX_TOTAL_BYTES {
            return Err(Refused::TooMuch(format!(
                "replies over {} MiB in all",
                MAX_TOTAL_BYTES >> 20
            )));
        }
        let reply = pidbox::decode_reply(&raw).map_err(Refused::Bad)?;
        self.record(reply)
    }

    fn record(&mut self, reply: Reply) -> Result<(), Refused> {
        // A ticket of another call cannot reach our unique queue unless
        // someone wrote it there; it is not ours to count.
        let Some(i) = self.tickets.iter().position(|t| *t == reply.ticket) else {
            return Ok(());
        };
        let answers = &mut self.answers[i];
        if answers.len() >= MAX_WORKERS && !answers.contains_key(&reply.hostname) {
            return Err(Refused::TooMuch(format!(
                "replies from more than {MAX_WORKERS} workers"
            )));
        }
        // Two answers under one hostname (two workers sharing a name, or a
        // broadcast sent twice after a reconnect): keep the busier one.
        let merged = match (answers.get(&reply.hostname), reply.answer) {
            (Some(Answer::Tasks(a)), Answer::Tasks(b)) => Answer::Tasks((*a).max(b)),
            (Some(Answer::Failed), _) => Answer::Failed,
            (_, answer) => answer,
        };
        answers.insert(reply.hostname, merged);
        Ok(())
    }

    fn finish(self) -> BusyWorkers {
        let [active, reserved] = self.answers;
        let mut out = BusyWorkers {
            listeners: self.listeners[0].max(self.listeners[1]),
            ..BusyWorkers::default()
        };
        let hosts: BTreeSet<&String> = active.keys().chain(reserved.keys()).collect();
        for host in hosts {
            match (active.get(host), reserved.get(host)) {
                (Some(Answer::Tasks(a)), Some(Answer::Tasks(r))) => {
                    let count = |n: &usize| u32::try_from(*n).unwrap_or(u32::MAX);
                    let load = WorkerLoad {
                        active: count(a),
                        reserved: count(r),
                    };
                    out.workers.insert(host.clone(), load);
                }
                _ => {
                    out.unknown.insert(host.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_host_is_what_follows_the_first_at() {
        assert_eq!(worker_host("celery@web-7d9f6c-x2x4z"), "web-7d9f6c-x2x4z");
        assert_eq!(worker_host("w1@pod@odd"), "pod@odd");
        assert_eq!(worker_host("no-at-sign"), "no-at-sign");
        assert_eq!(worker_host("celery@"), "");
    }

    #[test]
    fn pod_hostname_follows_the_kubelet_truncation() {
        assert_eq!(pod_hostname("web-7d9f6c-x2x4z"), "web-7d9f6c-x2x4z");
        let long = format!("{}-abcde", "a".repeat(70));
        assert_eq!(pod_hostname(&long), "a".repeat(63));
        // Cut right after a '-': the '-' goes too.
        let dash = format!("{}-{}", "b".repeat(62), "c".repeat(10));
        assert_eq!(pod_hostname(&dash), "b".repeat(62));
        let exact = "d".repeat(63);
        assert_eq!(pod_hostname(&exact), exact);
    }

    #[test]
    fn runs_in_pod_matches_name_forms() {
        assert!(runs_in_pod("celery@web-1", "web-1"));
        assert!(runs_in_pod("w2@web-1", "web-1"));
        assert!(runs_in_pod("web-1", "web-1"));
        assert!(runs_in_pod(
            "celery@web-1.workers.ns.svc.cluster.local",
            "web-1"
        ));
        assert!(!runs_in_pod("celery@web-10", "web-1"));
        assert!(!runs_in_pod("celery@web-1", "web-10"));
        assert!(!runs_in_pod("celery@", ""));
        let long = format!("{}-7d9f6c-x2x4z", "worker".repeat(11));
        assert!(runs_in_pod(
            &format!("celery@{}", pod_hostname(&long)),
            &long
        ));
    }

    fn reply(ticket: &str, host: &str, answer: Answer) -> Reply {
        Reply {
            ticket: ticket.into(),
            hostname: host.into(),
            answer,
        }
    }

    fn collected(listeners: u64, replies: &[Reply]) -> Collected {
        let mut c = Collected::new(["a".into(), "r".into()], [listeners, listeners]);
        for r in replies {
            assert!(c.record(r.clone()).is_ok());
        }
        c
    }

    #[test]
    fn a_worker_is_known_only_when_it_answered_both() {
        let c = collected(
            4,
            &[
                reply("a", "celery@busy", Answer::Tasks(1)),
                reply("r", "celery@busy", Answer::Tasks(3)),
                reply("a", "celery@half", Answer::Tasks(0)),
                reply("r", "celery@failed", Answer::Tasks(0)),
                reply("a", "celery@failed", Answer::Failed),
                reply("x", "celery@other-call", Answer::Tasks(9)),
            ],
        );
        assert!(!c.complete());
        let b = c.finish();
        assert_eq!(
            b.workers,
            BTreeMap::from([(
                "celery@busy".into(),
                WorkerLoad {
                    active: 1,
                    reserved: 3
                }
            )])
        );
        assert_eq!(
            b.unknown,
            BTreeSet::from(["celery@failed".into(), "celery@half".into()])
        );
        assert_eq!(b.listeners, 4);
        assert!(!b.all_answered());
        assert_eq!(
            b.pod_load("busy"),
            Some(WorkerLoad {
                active: 1,
                reserved: 3
            })
        );
        assert_eq!(b.pod_load("half"), None);
        assert_eq!(b.pod_load("absent"), None);
    }

    #[test]
    fn duplicates_keep_the_busier_answer_and_complete_counts_hosts() {
        let c = collected(
            2,
            &[
                reply("a", "celery@p", Answer::Tasks(2)),
                reply("a", "celery@p", Answer::Tasks(1)),
                reply("r", "celery@p", Answer::Tasks(0)),
                reply("a", "w2@p", Answer::Tasks(0)),
                reply("r", "w2@p", Answer::Tasks(4)),
            ],
        );
        assert!(c.complete());
        let b = c.finish();
        assert!(b.all_answered());
        assert_eq!(
            b.pod_load("p"),
            Some(WorkerLoad {
                active: 2,
                reserved: 4
            })
        );
        assert!(!b.workers["celery@p"].is_idle());
    }

    #[test]
    fn oversized_and_odd_items_are_errors() {
        let mut c = Collected::new(["a".into(), "r".into()], [1, 1]);
        let too_big = c.add(Value::Int(9 << 20)).err().map(|e| e.within("w"));
        assert!(
            matches!(&too_big, Some(InspectError::TooMuch { problem, .. }) if problem.contains("9437184 bytes")),
            "{too_big:?}"
        );
        let odd = c.add(Value::Nil).err().map(|e| e.within("w"));
        assert!(matches!(odd, Some(InspectError::BadReply { .. })));
        let garbage = c
            .add(Value::BulkString(b"nope".to_vec()))
            .err()
            .map(|e| e.within("w"));
        let text = garbage.map(|e| e.to_string()).unwrap_or_default();
        assert!(text.starts_with("w: a reply is not JSON"), "{text}");
    }

    #[test]
    fn too_many_workers_is_an_error() {
        let mut c = Collected::new(["a".into(), "r".into()], [1, 1]);
        for i in 0..MAX_WORKERS {
            assert!(c
                .record(reply("a", &format!("celery@{i}"), Answer::Tasks(0)))
                .is_ok());
        }
        assert!(c.record(reply("a", "celery@0", Answer::Tasks(1))).is_ok());
        assert!(c
            .record(reply("a", "celery@one-more", Answer::Tasks(0)))
            .is_err());
    }
}
