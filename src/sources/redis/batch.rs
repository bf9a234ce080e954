//! Explicit batching of the reads on one Redis endpoint.
//!
//! # Why
//! Concurrent reads sharing one socket, each sent on its own, carry a
//! per-command overhead (a channel hop and a routed reply each). With 5,000
//! pools reading one Redis through redis-rs's multiplexed connection that
//! overhead, not Redis, was most of a tick's cost
//! (examples/redis_read_bench.rs: 7x the `redis-benchmark -P` floor), and
//! how many requests reached Redis was up to the socket's timing, not to us.
//!
//! # How
//! A read hands its commands (one `LLEN`, or a group answered together,
//! such as a `lists` trigger's `LLEN`s) to its endpoint's batcher task and
//! waits for their replies. The batcher takes the first request, then the
//! requests that join it, up to [`FULL`] commands, and sends them as
//! one pipeline on the endpoint's shared connection (each read's commands
//! are packed in RESP once, when its source is built: the batch copies
//! their bytes, see [`super::wire`]), on a task of its own that hands each
//! read its replies. A batch stays open while reads keep
//! joining it, so the reads of one tick leave together ([`batch_loop`]);
//! pipelines of different batches may be in flight at once.
//!
//! # Errors
//! A command the server refuses (`WRONGTYPE`, `NOPERM`) comes back as that
//! command's `Value::ServerError` and fails only the read that sent it,
//! with the error the command alone would have given. A connection error fails
//! every read in the pipeline; each then reconnects and retries as a lone
//! read would ([`super::redis::Endpoint::run`]), sharing one reconnect.
//!
//! # Deadlines
//! Every read is answered by its deadline at the latest: the pipeline's
//! task keeps one timer, for the earliest deadline of the reads still
//! waiting, and answers [`Unanswered::TimedOut`] to those whose deadline
//! passes first. A timer per read instead (`tokio::time::timeout`) cost a
//! tenth of a read. Once no read waits any longer the task drops the
//! pipeline and its handle on the connection, so a connection that went
//! silent (half-open) is not kept open by it.
//!
//! # Lifetime
//! The batcher task is started by the first read (building a source does
//! no I/O and needs no runtime), holds no connection while idle, and ends
//! when its endpoint is dropped. If its runtime goes away (a test's
//! runtime, say), the next read starts another.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::redis::{Cmd, RedisError, Value};
use tokio::sync::{mpsc, oneshot, Notify};
use tokio::time::Instant;

use super::node::SharedConnection;

/// Most commands in one pipeline: a read bigger than this (a `lists`
/// trigger of thousands of lists) goes in a pipeline of its own.
const MAX_COMMANDS: usize = 10_000;

/// A batch this big is sent without waiting for more (see [`batch_loop`]):
/// Redis starts on it while the rest of a large burst is still arriving.
const FULL: usize = 1024;

/// A batch is sent once no read has joined it for this long. Tokio's
/// timers tick every millisecond, so the quiet is noticed 0.2 to 1.2 ms
/// after the last read: nothing beside a polling interval of a second.
const QUIET: Duration = Duration::from_micros(200);

/// Longest a batch stays open while reads keep trickling in.
const MAX_LINGER: Duration = Duration::from_millis(10);

/// Longest a batch waits for a [`SlotHold`] to end: the poll engine holds
/// the batches for the few milliseconds it takes to start a slot's polls;
/// should that ever take longer, reads are not kept waiting for it.
const MAX_HOLD: Duration = Duration::from_millis(50);

/// Lets the poll engine close every endpoint's batch itself. While a hold
/// is on, a batch neither closes on [`QUIET`] nor at [`FULL`]: it waits
/// for the hold to end and then leaves at once. The engine holds the
/// batches while it starts the polls of one slot, so all of that slot's
/// reads on an endpoint leave as exactly one pipeline, however long the
/// start took and however the scheduler interleaved it with the batcher.
#[derive(Debug)]
pub(super) struct SlotGate {
    holds: tokio::sync::watch::Sender<usize>,
}

impl Default for SlotGate {
    fn default() -> Self {
        SlotGate {
            holds: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl SlotGate {
    pub(super) fn hold(self: &Arc<Self>) -> SlotHold {
        self.holds.send_modify(|h| *h += 1);
        SlotHold(self.clone())
    }
}

/// A hold on every batch of the endpoints sharing one [`SlotGate`],
/// released when dropped.
pub struct SlotHold(Arc<SlotGate>);

impl Drop for SlotHold {
    fn drop(&mut self) {
        self.0.holds.send_modify(|h| *h = h.saturating_sub(1));
    }
}

/// Requests sent to Redis by the sources: one per pipeline or lone
/// command, whatever its size. Connection set-up is not counted.
#[derive(Debug, Default)]
pub(super) struct RoundTrips {
    /// This endpoint's.
    here: AtomicU64,
    /// Every endpoint's of the same [`super::Sources`]: outlives endpoints.
    all: Arc<AtomicU64>,
    /// The gate of every endpoint of the same [`super::Sources`].
    gate: Arc<SlotGate>,
}

impl RoundTrips {
    pub(super) fn new(all: Arc<AtomicU64>, gate: Arc<SlotGate>) -> Self {
        RoundTrips {
            here: AtomicU64::new(0),
            all,
            gate,
        }
    }

    pub(super) fn add(&self) {
        self.here.fetch_add(1, Ordering::Relaxed);
        self.all.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn get(&self) -> u64 {
        self.here.load(Ordering::Relaxed)
    }
}

/// What one read sends, answered together and in order: the commands, and
/// their RESP bytes, packed once when the list is made. Built once per
/// source and shared by its reads (a clone is a reference count); the
/// batcher copies the bytes into its pipeline, on its own task rather than
/// on the task polling the reads.
#[derive(Clone, Debug)]
pub(super) struct Commands(Arc<CommandList>);

#[derive(Debug)]
struct CommandList {
    commands: Box<[Cmd]>,
    packed: Box<[u8]>,
}

impl Commands {
    /// The commands in RESP, as they are written to the connection.
    pub(super) fn packed(&self) -> &[u8] {
        &self.0.packed
    }
}

impl std::ops::Deref for Commands {
    type Target = [Cmd];

    fn deref(&self) -> &[Cmd] {
        &self.0.commands
    }
}

impl From<Vec<Cmd>> for Commands {
    fn from(commands: Vec<Cmd>) -> Self {
        let mut packed = Vec::new();
        for c in &commands {
            c.write_packed_command(&mut packed);
        }
        Commands(Arc::new(CommandList {
            commands: commands.into(),
            packed: packed.into(),
        }))
    }
}

impl<const N: usize> From<[Cmd; N]> for Commands {
    fn from(commands: [Cmd; N]) -> Self {
        Vec::from(commands).into()
    }
}

impl FromIterator<Cmd> for Commands {
    fn from_iter<I: IntoIterator<Item = Cmd>>(commands: I) -> Self {
        commands.into_iter().collect::<Vec<_>>().into()
    }
}

/// The replies to [`Commands`], in the same order; a command the server
/// refused is a `Value::ServerError`.
pub(super) enum Replies {
    /// The reply to a read of one command.
    One(Value),
    Group(Vec<Value>),
}

/// Why a batched read got no replies.
pub(super) enum Unanswered {
    /// The pipeline failed (the connection's error, the same for every
    /// read in it), or the batcher stopped.
    Redis(RedisError),
    /// The read's deadline passed first.
    TimedOut,
}

type Answer = Result<Replies, Unanswered>;

/// One read waiting in the queue.
struct Request {
    /// Which connection the read was given (see `Endpoint::connection`):
    /// requests on different connections never share a pipeline.
    conn_id: u64,
    conn: SharedConnection,
    commands: Commands,
    /// When the read stops waiting.
    deadline: Instant,
    reply: oneshot::Sender<Answer>,
}

/// An endpoint's batcher: the queue its reads join, and the task that
/// turns the queue into pipelines (started by the first read).
pub(super) struct Batcher {
    queue: Mutex<Option<mpsc::UnboundedSender<Request>>>,
    trips: Arc<RoundTrips>,
}

impl Batcher {
    pub(super) fn new(trips: Arc<RoundTrips>) -> Self {
        Batcher {
            queue: Mutex::new(None),
            trips,
        }
    }

    /// Queues `commands` for the endpoint's next pipeline on `conn`
    /// (connection number `conn_id`) at once, and returns their replies, by
    /// `deadline` at the latest. An `Err` is never one command's: see
    /// [`Replies`]. Not an `async fn`: the returned future holds only the
    /// answer's receiver, and every read's future holds one of these.
    pub(super) fn query(
        &self,
        conn_id: u64,
        conn: SharedConnection,
        commands: Commands,
        deadline: Instant,
    ) -> impl std::future::Future<Output = Answer> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(Request {
            conn_id,
            conn,
            commands,
            deadline,
            reply,
        });
        async move {
            answer
                .await
                .unwrap_or_else(|_| Err(Unanswered::Redis(batcher_gone())))
        }
    }

    fn enqueue(&self, request: Request) {
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let request = match queue.as_ref() {
            Some(q) => match q.send(request) {
                Ok(()) => return,
                Err(mpsc::error::SendError(request)) => request,
            },
            None => request,
        };
        // No batcher yet, or the runtime it ran on is gone.
        let (q, rx) = mpsc::unbounded_channel();
        tokio::spawn(batch_loop(rx, self.trips.clone()));
        // Cannot fail: the receiver is alive, in the task just spawned.
        let _ = q.send(request);
        *queue = Some(q);
    }
}

/// A read whose batcher ended before answering (its runtime shut down):
/// treated as a lost connection, so the read retries once.
fn batcher_gone() -> RedisError {
    std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        "the endpoint's batcher stopped",
    )
    .into()
}

/// The batcher task: one pipeline per batch of requests, until the
/// endpoint (the queue's sender) is dropped.
///
/// A batch stays open while reads keep joining it: it is sent once none has
/// joined for [`QUIET`], once it holds [`FULL`] commands, or
/// [`MAX_LINGER`] after it opened. Why wait at all: the reads of a tick do
/// not arrive at one instant. The controller polls the pools due in the
/// same 100 ms slot in turn, over a few milliseconds for thousands (its task
/// yields to the scheduler every hundred or so), counting on their reads
/// leaving as one pipeline. Sending whatever was queued each time the
/// batcher woke up sent them as many pipelines as it woke up for (measured
/// with examples/redis_read_bench.rs: 3 or 4 per 5,000 reads on an idle
/// machine, 40 to 90 on a busy one), and waiting for the previous
/// pipeline's answer instead still gave 2 per burst of 500. With the quiet
/// window a burst of up to `FULL` reads is one pipeline, idle or busy, for
/// about half a millisecond more per burst.
///
/// One exception ends the wait early: a batch that opened while this
/// batcher's earlier pipelines were in flight is sent as soon as they are
/// all answered and no read is queued. That is the end of a burst larger
/// than `FULL` (its last part would otherwise wait out the quiet window, a
/// millisecond of tokio's timer, while Redis sat idle: a fifth of the time
/// of 5,000 reads in examples/redis_read_bench.rs); a burst's first batch
/// still waits for the quiet window, so a burst of up to `FULL` reads is
/// still one pipeline.
async fn batch_loop(mut queue: mpsc::UnboundedReceiver<Request>, trips: Arc<RoundTrips>) {
    let mut next: Option<Request> = None;
    let mut open = true;
    let mut gate = trips.gate.holds.subscribe();
    let pipelines = Arc::new(Pipelines::default());
    while open || next.is_some() {
        let first = match next.take() {
            Some(r) => r,
            None => match queue.recv().await {
                Some(r) => r,
                None => return,
            },
        };
        let opened = Instant::now();
        let mut batch = Batch::default();
        batch.offer(first, opened, &mut next);
        open = batch
            .fill(&mut queue, &mut gate, &pipelines, &mut next)
            .await;
        batch.send(&trips, &pipelines);
    }
}

/// The pipelines of one batcher sent and not yet answered, and a notice
/// when the last is.
#[derive(Default)]
struct Pipelines {
    in_flight: AtomicUsize,
    idle: Notify,
}

impl Pipelines {
    fn busy(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) > 0
    }

    /// Counts a pipeline in flight until the guard is dropped.
    fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }
}

struct InFlight(Arc<Pipelines>);

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Requests bound for one pipeline.
#[derive(Default)]
struct Batch {
    /// The connection of its first request, with its number.
    conn: Option<(u64, SharedConnection)>,
    /// The commands, in RESP, as they are written to the connection.
    bytes: Vec<u8>,
    commands: usize,
    /// Per request: how many replies are its, until when, and where they go.
    waiters: Vec<Waiter>,
}

struct Waiter {
    count: usize,
    deadline: Instant,
    /// Taken once answered.
    reply: Option<oneshot::Sender<Answer>>,
}

impl Batch {
    /// Adds the requests that join the batch until it closes: once none has
    /// joined for [`QUIET`], at [`FULL`] commands or [`MAX_LINGER`] after
    /// the first, or, while the [`SlotGate`] is held, as soon as the hold
    /// ends. False when the endpoint is gone (the queue closed).
    async fn fill(
        &mut self,
        queue: &mut mpsc::UnboundedReceiver<Request>,
        gate: &mut tokio::sync::watch::Receiver<usize>,
        pipelines: &Pipelines,
        next: &mut Option<Request>,
    ) -> bool {
        let opened = Instant::now();
        let mut last_joined = opened;
        let mut waited_for_redis = false;
        loop {
            // Made before the count is read, so an answer that comes in
            // between still wakes this batch.
            let idle = pipelines.idle.notified();
            let held = *gate.borrow_and_update() > 0;
            let limit = if held { MAX_COMMANDS } else { FULL };
            self.drain(queue, last_joined, next, limit);
            if next.is_some() || self.commands >= limit {
                return true;
            }
            let busy = pipelines.busy();
            if !held && waited_for_redis && !busy {
                return true; // Redis has caught up: no reason to wait for more
            }
            waited_for_redis |= busy;
            let until = if held {
                opened + MAX_HOLD
            } else {
                (last_joined + QUIET).min(opened + MAX_LINGER)
            };
            if Instant::now() >= until {
                return true;
            }
            tokio::select! {
                biased;
                r = queue.recv() => match r {
                    Some(r) => {
                        last_joined = Instant::now();
                        self.offer(r, last_joined, next);
                    }
                    // The endpoint is gone: send what there is, and stop.
                    None => return false,
                },
                // The hold ended: this slot's reads are all in.
                Ok(()) = gate.changed(), if held => {
                    if *gate.borrow_and_update() == 0 {
                        return true;
                    }
                }
                () = idle, if busy && !held => {}
                () = tokio::time::sleep_until(until) => return true,
            }
        }
    }

    /// Adds the requests queued until the batch holds `limit` commands; one
    /// that must go in the next pipeline is left in `next`.
    fn drain(
        &mut self,
        queue: &mut mpsc::UnboundedReceiver<Request>,
        now: Instant,
        next: &mut Option<Request>,
        limit: usize,
    ) {
        while next.is_none() && self.commands < limit {
            match queue.try_recv() {
                Ok(r) => self.offer(r, now, next),
                Err(_) => return,
            }
        }
    }

    /// Adds a request, answers it if its deadline has passed already, or
    /// leaves it in `next` when it belongs in the next pipeline (another
    /// connection, or this one is full).
    fn offer(&mut self, r: Request, now: Instant, next: &mut Option<Request>) {
        if r.deadline <= now {
            let _ = r.reply.send(Err(Unanswered::TimedOut));
            return;
        }
        match &self.conn {
            None => self.conn = Some((r.conn_id, r.conn)),
            Some((id, _)) => {
                if *id != r.conn_id || self.commands + r.commands.len() > MAX_COMMANDS {
                    *next = Some(r);
                    return;
                }
                // Its clone of the shared connection is not needed: the batch's is.
                drop(r.conn);
            }
        }
        self.bytes.extend_from_slice(r.commands.packed());
        self.commands += r.commands.len();
        self.waiters.push(Waiter {
            count: r.commands.len(),
            deadline: r.deadline,
            reply: Some(r.reply),
        });
    }

    /// Sends the pipeline on a task of its own, which answers every waiter
    /// (see "Deadlines" above); nothing when no request was left to send.
    fn send(self, trips: &Arc<RoundTrips>, pipelines: &Arc<Pipelines>) {
        let Batch {
            conn,
            bytes,
            commands,
            mut waiters,
        } = self;
        let Some((_, shared)) = conn else {
            return;
        };
        if waiters.is_empty() {
            return;
        }
        let trips = trips.clone();
        let in_flight = pipelines.start();
        tokio::spawn(async move {
            let _in_flight = in_flight;
            trips.add();
            let query = shared.send(bytes, commands);
            tokio::pin!(query);
            let result = loop {
                let Some(earliest) = waiters
                    .iter()
                    .filter(|w| w.reply.is_some())
                    .map(|w| w.deadline)
                    .min()
                else {
                    // Nobody waits any more.
                    return;
                };
                tokio::select! {
                    r = &mut query => break r,
                    () = tokio::time::sleep_until(earliest) => {
                        let now = Instant::now();
                        for w in waiters.iter_mut().filter(|w| w.deadline <= now) {
                            if let Some(reply) = w.reply.take() {
                                let _ = reply.send(Err(Unanswered::TimedOut));
                            }
                        }
                    }
                }
            };
            let values = match result {
                Ok(v) if v.len() == commands => v,
                Ok(v) => {
                    let e = RedisError::from((
                        ::redis::ErrorKind::UnexpectedReturnType,
                        "pipeline answered with the wrong number of replies",
                        format!("{} replies to {commands} commands", v.len()),
                    ));
                    return answer_all(waiters, &e);
                }
                Err(e) => return answer_all(waiters, &e),
            };
            let mut values = values.into_iter();
            for w in waiters {
                let replies = if w.count == 1 {
                    Replies::One(values.next().unwrap_or(Value::Nil))
                } else {
                    Replies::Group(values.by_ref().take(w.count).collect())
                };
                if let Some(reply) = w.reply {
                    let _ = reply.send(Ok(replies));
                }
            }
        });
    }
}

fn answer_all(waiters: Vec<Waiter>, e: &RedisError) {
    for w in waiters {
        if let Some(reply) = w.reply {
            let _ = reply.send(Err(Unanswered::Redis(e.clone())));
        }
    }
}
