//! `simulate --arrivals`: a closed loop. The trace gives arrivals per second
//! per trigger (a rate that holds from its row until the next); the
//! simulator keeps one FIFO queue per trigger, serves it with its own
//! replicas at a throughput per replica, polls every
//! `pollingIntervalSeconds`, and feeds the queue's depth to the same
//! decision the controller runs. So a user sees whether a drain SLO (or a
//! `targetPerReplica`) holds: the output has each queue's depth and the wait
//! of its oldest item.
//!
//! Model: time advances in 100 ms ticks; arrivals of a tick join the queue,
//! then the replicas serve `replicas × throughputPerReplica × 0.1` items
//! from its head. A decision applies at once (the replicas start when
//! decided, as in the replay mode). An empty cell makes that trigger's reads
//! fail and brings no arrivals until the next row. A drain trigger that
//! measures its throughput gets the items served over the last polling
//! interval as its reading.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;

use super::simulate::SimulateError;
use super::trace::{self, Trace};
use crate::decision::{decide, History, Policy, Reading, ScaleEventKind, Throughput};

/// Length of one model step.
pub const TICK_MS: i64 = 100;

/// A FIFO queue of fractional items: cohorts of (arrival time, count).
#[derive(Clone, Debug, Default)]
pub struct Queue {
    cohorts: VecDeque<(i64, f64)>,
    depth: f64,
}

/// Counts below this are rounding noise, not items.
const EPSILON: f64 = 1e-9;

impl Queue {
    pub fn depth(&self) -> f64 {
        self.depth
    }

    pub fn arrive(&mut self, at_ms: i64, items: f64) {
        if items > EPSILON {
            self.cohorts.push_back((at_ms, items));
            self.depth += items;
        }
    }

    /// Serves up to `capacity` items from the head; returns how many.
    pub fn serve(&mut self, capacity: f64) -> f64 {
        let mut left = capacity;
        while left > EPSILON {
            let Some(front) = self.cohorts.front_mut() else {
                break;
            };
            let take = front.1.min(left);
            front.1 -= take;
            left -= take;
            if front.1 <= EPSILON {
                self.cohorts.pop_front();
            }
        }
        let served = capacity - left;
        self.depth = if self.cohorts.is_empty() {
            0.0
        } else {
            (self.depth - served).max(0.0)
        };
        served
    }

    /// Seconds the oldest waiting item has waited at `now_ms` (0 when empty).
    pub fn oldest_wait(&self, now_ms: i64) -> f64 {
        self.cohorts
            .front()
            .map_or(0.0, |(at, _)| (now_ms - at) as f64 / 1000.0)
    }
}

/// One poll of the closed loop.
#[derive(Clone, Debug, PartialEq)]
pub struct LoopStep {
    pub time_ms: i64,
    /// Per trigger: the depth its read returned, and its oldest item's wait (s).
    pub depth: Vec<f64>,
    pub wait: Vec<f64>,
    pub current: i32,
    pub desired: i32,
    pub event: Option<ScaleEventKind>,
    pub explanation: String,
}

/// The worst a queue got over a run.
#[derive(Clone, Copy, Debug, PartialEq, Default)]
pub struct Worst {
    pub wait: f64,
    pub wait_at_ms: i64,
    pub depth: f64,
}

/// Settings of one closed-loop run.
#[derive(Clone, Debug)]
pub struct LoopSettings {
    /// Per trigger (policy order): items/s one replica completes.
    pub throughput: Vec<f64>,
    pub polling_ms: i64,
    pub start: i32,
}

/// Runs the loop over `trace` (arrivals per second per trigger column).
pub fn run_loop(
    policy: &Policy,
    trace: &Trace,
    s: &LoopSettings,
) -> Result<(Vec<LoopStep>, Vec<Worst>), SimulateError> {
    let column_of = columns_of(policy, trace)?;
    let n = policy.triggers.len();
    let mut queues = vec![Queue::default(); n];
    let mut served_since_poll = vec![0.0; n];
    let mut worst = vec![Worst::default(); n];
    let (mut history, mut current) = (History::default(), s.start.max(0));
    let mut steps = Vec::new();
    let end = trace.rows.last().map_or(0, |r| r.time_ms);
    let mut row = 0;
    let mut t = 0;
    while t <= end {
        while row + 1 < trace.rows.len() && trace.rows[row + 1].time_ms <= t {
            row += 1;
        }
        let cells = &trace.rows[row].values;
        if t % s.polling_ms == 0 {
            let readings: Vec<Reading> = (0..n)
                .map(|i| match cells[column_of[i]] {
                    None => Reading::Failed("no value in trace".into()),
                    Some(_) => reading(policy, i, &queues[i], served_since_poll[i], s.polling_ms),
                })
                .collect();
            served_since_poll.iter_mut().for_each(|x| *x = 0.0);
            let d = decide(policy, t, current, &readings, &history);
            history.commit(policy, &d, t, d.desired != d.current);
            steps.push(LoopStep {
                time_ms: t,
                depth: queues.iter().map(Queue::depth).collect(),
                wait: queues.iter().map(|q| q.oldest_wait(t)).collect(),
                current: d.current,
                desired: d.desired,
                event: d.event,
                explanation: d.explanation,
            });
            current = d.desired;
        }
        let dt = TICK_MS as f64 / 1000.0;
        for i in 0..n {
            let rate = cells[column_of[i]].unwrap_or(0.0).max(0.0);
            queues[i].arrive(t, rate * dt);
            served_since_poll[i] += queues[i].serve(f64::from(current) * s.throughput[i] * dt);
            let w = &mut worst[i];
            let wait = queues[i].oldest_wait(t + TICK_MS);
            if wait > w.wait {
                (w.wait, w.wait_at_ms) = (wait, t + TICK_MS);
            }
            w.depth = w.depth.max(queues[i].depth());
        }
        t += TICK_MS;
    }
    Ok((steps, worst))
}

/// The trace column of each trigger (policy order); every column must name
/// a trigger and every trigger needs a column.
fn columns_of(policy: &Policy, trace: &Trace) -> Result<Vec<usize>, SimulateError> {
    if let Some(c) = (trace.columns.iter()).find(|c| !policy.triggers.iter().any(|t| &t.name == *c))
    {
        return Err(SimulateError(format!(
            "trace line 1: column {c:?} names no trigger"
        )));
    }
    (policy.triggers.iter())
        .map(|t| {
            (trace.columns.iter().position(|c| *c == t.name)).ok_or_else(|| {
                SimulateError(format!("trace has no column for trigger {:?}", t.name))
            })
        })
        .collect()
}

/// What trigger `i` reads from its queue: the depth, with the measured
/// throughput of the last interval when its drain target measures one.
fn reading(policy: &Policy, i: usize, q: &Queue, served: f64, polling_ms: i64) -> Reading {
    let measured = policy.triggers[i]
        .drain
        .is_some_and(|d| d.throughput == Throughput::Measured);
    if measured {
        Reading::WithThroughput {
            value: q.depth(),
            throughput: served / (polling_ms as f64 / 1000.0),
        }
    } else {
        Reading::Value(q.depth())
    }
}

/// Throughput per replica for each trigger: the flag, else the trigger's
/// own `drain.throughputPerReplica`.
pub fn throughputs(policy: &Policy, flag: Option<f64>) -> Result<Vec<f64>, SimulateError> {
    if let Some(f) = flag {
        if !(f.is_finite() && f > 0.0) {
            return Err(SimulateError(format!(
                "--throughput-per-replica must be a number > 0, got {f}"
            )));
        }
    }
    policy
        .triggers
        .iter()
        .map(|t| match (flag, t.drain.map(|d| d.throughput)) {
            (Some(f), _) => Ok(f),
            (None, Some(Throughput::PerReplica(x))) => Ok(x),
            _ => Err(SimulateError(format!(
                "trigger {}: --arrivals needs --throughput-per-replica (items/s one replica completes)",
                t.name
            ))),
        })
        .collect()
}

/// Writes the timeline: `time,<name>.arrivals,<name>.depth,<name>.wait,...,current,desired,event`.
pub fn write_csv(
    out: &mut impl Write,
    policy: &Policy,
    trace: &Trace,
    steps: &[LoopStep],
) -> std::io::Result<()> {
    let mut header = String::from("time");
    for t in &policy.triggers {
        header.push_str(&format!(",{0}.arrivals,{0}.depth,{0}.wait", t.name));
    }
    writeln!(out, "{header},current,desired,event")?;
    let columns = columns_of(policy, trace).unwrap_or_default();
    for step in steps {
        let row = trace
            .rows
            .iter()
            .rev()
            .find(|r| r.time_ms <= step.time_ms)
            .or(trace.rows.first());
        let mut line = seconds_text(step.time_ms);
        for (i, c) in columns.iter().enumerate() {
            let cell = row.map_or("", |r| r.cells[*c].as_str());
            line.push_str(&format!(",{cell},{:.0},{:.0}", step.depth[i], step.wait[i]));
        }
        let event = step.event.map_or("", ScaleEventKind::as_str);
        writeln!(out, "{line},{},{},{event}", step.current, step.desired)?;
    }
    Ok(())
}

/// The one summary line per trigger printed on stderr.
pub fn summary(policy: &Policy, worst: &[Worst]) -> Vec<String> {
    policy
        .triggers
        .iter()
        .zip(worst)
        .map(|(t, w)| {
            format!(
                "{}: the oldest item waited at most {:.0}s (at {}s); depth peaked at {:.0}",
                t.name,
                w.wait,
                seconds_text(w.wait_at_ms),
                w.depth
            )
        })
        .collect()
}

fn seconds_text(ms: i64) -> String {
    if ms % 1000 == 0 {
        format!("{}", ms / 1000)
    } else {
        format!("{:.1}", ms as f64 / 1000.0)
    }
}

/// The whole `simulate --arrivals` command: CSV on stdout, summary on stderr.
pub fn run(
    file: &Path,
    trace_path: &Path,
    start: Option<i32>,
    throughput: Option<f64>,
) -> Result<(), String> {
    let (pool, policy) = super::manifest::load(file).map_err(|e| e.to_string())?;
    let input =
        std::fs::File::open(trace_path).map_err(|e| format!("{}: {e}", trace_path.display()))?;
    let trace = trace::parse(input).map_err(|e| format!("{}: {e}", trace_path.display()))?;
    let start = start.unwrap_or(policy.min_replicas);
    if start < 0 {
        return Err(format!("--start must be >= 0, got {start}"));
    }
    let settings = LoopSettings {
        throughput: throughputs(&policy, throughput).map_err(|e| e.to_string())?,
        polling_ms: i64::from(pool.spec.polling_interval_seconds.clamp(1, 3600)) * 1000,
        start,
    };
    let (steps, worst) = run_loop(&policy, &trace, &settings)
        .map_err(|e| format!("{}: {e}", trace_path.display()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    write_csv(&mut out, &policy, &trace, &steps).map_err(|e| format!("writing output: {e}"))?;
    out.flush().map_err(|e| format!("writing output: {e}"))?;
    for line in summary(&policy, &worst) {
        eprintln!("{line}");
    }
    Ok(())
}
