//! The measured window's depth schedule: a steady trickle of pools flips
//! between the low and high depth, at jittered times, while the operator's
//! RSS is sampled every 10 s.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;

use super::layouts::DepthKind;
use super::measure;
use super::redis_fleet::Fleet;
use super::write_feed::Tally;
use super::{HIGH, LOW};

/// The pools' queues: where each depth is written.
pub struct Queues<'a> {
    pub fleet: &'a Fleet,
    /// Pool i's depth key, on endpoint `i % endpoints`.
    pub keys: &'a [String],
    pub kind: DepthKind,
}

/// How fast and how long to change depths, and whose RSS to sample.
pub struct Plan {
    /// Depth changes per second.
    pub rate: f64,
    pub length: Duration,
    pub operator_pid: u32,
}

/// What the window did.
pub struct Window {
    /// Commands the driver sent to each endpoint (to subtract from the
    /// server's count).
    pub driver_cmds: Vec<u64>,
    pub changes: u64,
    /// Pools whose depth changed at least once.
    pub changed: Vec<bool>,
    /// (seconds into the window, operator VmRSS KiB) every 10 s.
    pub rss_trace: Vec<(u64, u64)>,
}

/// xorshift64: jitter that differs per run without a dependency.
struct Jitter(u64);

impl Jitter {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Flips `plan.rate` pools a second (not ones still awaiting their
/// reaction) for `plan.length` from `t0`; `depth` holds each pool's depth.
pub async fn run(
    queues: &Queues<'_>,
    conns: &mut [MultiplexedConnection],
    depth: &mut [u64],
    tally: &Mutex<Tally>,
    plan: &Plan,
    t0: Instant,
) -> anyhow::Result<Window> {
    let n = depth.len();
    let k = conns.len();
    let mut w = Window {
        driver_cmds: vec![0; k],
        changes: 0,
        changed: vec![false; n],
        rss_trace: Vec::new(),
    };
    let mut next_pool = 0usize;
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // Change times jittered inside each 100 ms step, so they fall at every
    // phase of a pool's polling cycle (matters for small N).
    let mut jitter = Jitter((std::process::id() as u64) | 1);
    while t0.elapsed() < plan.length {
        tick.tick().await;
        if w.rss_trace.len() < (t0.elapsed().as_secs() / 10 + 1) as usize {
            let at = t0.elapsed().as_secs();
            w.rss_trace
                .push((at, measure::proc_rss_kib(plan.operator_pid)?.rss));
        }
        tokio::time::sleep(Duration::from_millis(jitter.next() % 100)).await;
        // rate/10 per step on average, randomly rounded (a fixed carry would
        // put every change at the same phase of the second).
        let want = (plan.rate * 0.1 + jitter.unit()) as usize;
        let batch = pick(&tally.lock().unwrap(), n, want, &mut next_pool);
        if batch.is_empty() {
            continue;
        }
        let sets = flip(&batch, depth, &mut w.changed, tally);
        let sent = queues
            .fleet
            .set_depths(conns, &sets, queues.keys, queues.kind, |i| i % k)
            .await?;
        for (e, c) in sent.into_iter().enumerate() {
            w.driver_cmds[e] += c;
        }
        w.changes += sets.len() as u64;
    }
    Ok(w)
}

/// Up to `want` pools, round robin from `next_pool`, skipping those whose
/// last change has not been reacted to yet.
fn pick(t: &Tally, n: usize, want: usize, next_pool: &mut usize) -> Vec<usize> {
    let mut batch = Vec::new();
    let mut tried = 0;
    while batch.len() < want && tried < n {
        let i = *next_pool;
        *next_pool = (*next_pool + 1) % n;
        tried += 1;
        if !t.pending.contains_key(&i) {
            batch.push(i);
        }
    }
    batch
}

/// The new depths of `batch`, recorded as changed and pending from now.
fn flip(
    batch: &[usize],
    depth: &mut [u64],
    changed: &mut [bool],
    tally: &Mutex<Tally>,
) -> Vec<(usize, u64)> {
    let sets: Vec<(usize, u64)> = batch
        .iter()
        .map(|&i| (i, if depth[i] == LOW { HIGH } else { LOW }))
        .collect();
    let now = Instant::now();
    let mut t = tally.lock().unwrap();
    for &(i, d) in &sets {
        depth[i] = d;
        changed[i] = true;
        t.pending.insert(i, now);
    }
    sets
}
