//! `workerpool-operator simulate`: replays a metric trace through the exact
//! decision the controller runs, with the target assumed to follow each
//! decision before the next poll.
//!
//! A pool with `spec.scaleIn` may have a `busyPods` column: the number of
//! busy pods the busy signal would report on that poll (an empty cell: the
//! signal could not be read). As in the controller, it is used only when
//! the poll's decision is a scale-in. (No trigger can be named `busyPods`:
//! trigger names are lower case.)

use std::io::Write;

use super::trace::Trace;
use super::trace::TraceRow;
use crate::decision::{decide, decide_with_busy, Busy, History, Policy, Reading, ScaleEventKind};

/// The trace column of busy pods.
pub const BUSY_COLUMN: &str = "busyPods";

/// One poll of a simulation.
#[derive(Clone, Debug, PartialEq)]
pub struct SimStep {
    pub time_ms: i64,
    pub values: Vec<Option<f64>>,
    pub current: i32,
    pub desired: i32,
    pub event: Option<ScaleEventKind>,
    pub explanation: String,
}

/// A simulation that cannot run, e.g. a trace column naming no trigger.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SimulateError(pub String);

/// Runs `trace` through `policy` from `start` replicas.
pub fn simulate(policy: &Policy, trace: &Trace, start: i32) -> Result<Vec<SimStep>, SimulateError> {
    let names: Vec<&str> = policy.triggers.iter().map(|t| t.name.as_str()).collect();
    let busy_column = busy_column(policy, trace)?;
    for c in &trace.columns {
        if !names.contains(&c.as_str()) && c != BUSY_COLUMN {
            return Err(SimulateError(format!(
                "trace line 1: column {c:?} names no trigger (triggers: {})",
                names.join(", ")
            )));
        }
    }
    // Map each trigger to its trace column.
    let mut column_of = Vec::with_capacity(names.len());
    for n in &names {
        match trace.columns.iter().position(|c| c == n) {
            Some(i) => column_of.push(i),
            None => {
                return Err(SimulateError(format!(
                    "trace has no column for trigger {n:?} (header: time,{})",
                    trace.columns.join(",")
                )))
            }
        }
    }
    if start < 0 {
        return Err(SimulateError(format!("--start must be >= 0, got {start}")));
    }
    let mut history = History::default();
    let mut current = start;
    let mut steps = Vec::with_capacity(trace.rows.len());
    let mut readings = Vec::with_capacity(names.len());
    for row in &trace.rows {
        readings.clear();
        readings.extend(column_of.iter().map(|&c| match row.values[c] {
            Some(v) => Reading::Value(v),
            None => Reading::Failed("no value in trace".into()),
        }));
        let mut d = decide(policy, row.time_ms, current, &readings, &history);
        if let (Some(c), true) = (busy_column, d.wants_busy_signal(policy)) {
            let busy = busy_of(row, c)?;
            d = decide_with_busy(policy, row.time_ms, current, &readings, &history, &busy);
        }
        history.commit(policy, &d, row.time_ms, d.desired != d.current);
        steps.push(SimStep {
            time_ms: row.time_ms,
            values: column_of.iter().map(|&c| row.values[c]).collect(),
            current: d.current,
            desired: d.desired,
            event: d.event,
            explanation: d.explanation,
        });
        current = d.desired;
    }
    Ok(steps)
}

/// Where the `busyPods` column is, if the trace has one; an error when the
/// pool has no `scaleIn` to use it.
fn busy_column(policy: &Policy, trace: &Trace) -> Result<Option<usize>, SimulateError> {
    let Some(c) = trace.columns.iter().position(|c| c == BUSY_COLUMN) else {
        return Ok(None);
    };
    if policy.scale_in.is_none() {
        return Err(SimulateError(format!(
            "trace line 1: column {BUSY_COLUMN} needs spec.scaleIn in the pool"
        )));
    }
    Ok(Some(c))
}

/// A row's busy pods: a whole number >= 0, or a failed busy read (empty cell).
fn busy_of(row: &TraceRow, column: usize) -> Result<Busy, SimulateError> {
    match row.values[column] {
        None => Ok(Busy::Failed("no busyPods value in trace".into())),
        Some(v) if v >= 0.0 && v.fract() == 0.0 && v <= f64::from(i32::MAX) => {
            Ok(Busy::Pods(v as i32))
        }
        Some(_) => Err(SimulateError(format!(
            "trace time {}: {BUSY_COLUMN} value {:?} must be a whole number >= 0",
            row.time_text, row.cells[column]
        ))),
    }
}

/// Writes the timeline as CSV: `time,<trigger names...>[,busyPods],current,desired,event`.
pub fn write_csv(
    out: &mut impl Write,
    policy: &Policy,
    trace: &Trace,
    steps: &[SimStep],
) -> std::io::Result<()> {
    let mut header = String::from("time");
    for t in &policy.triggers {
        header.push(',');
        header.push_str(&csv_cell(&t.name));
    }
    let mut column_of: Vec<usize> = policy
        .triggers
        .iter()
        .map(|t| trace.columns.iter().position(|c| *c == t.name).unwrap_or(0))
        .collect();
    if let Some(c) = trace.columns.iter().position(|c| c == BUSY_COLUMN) {
        header.push_str(&format!(",{BUSY_COLUMN}"));
        column_of.push(c);
    }
    header.push_str(",current,desired,event");
    writeln!(out, "{header}")?;
    for (row, step) in trace.rows.iter().zip(steps) {
        let mut line = row.time_text.clone();
        for &c in &column_of {
            line.push(',');
            line.push_str(&csv_cell(&row.cells[c]));
        }
        let event = step.event.map_or("", ScaleEventKind::as_str);
        writeln!(out, "{line},{},{},{event}", step.current, step.desired)?;
    }
    Ok(())
}

/// Parses `--at`: an RFC 3339 timestamp, as Unix milliseconds.
pub fn parse_at(s: &str) -> Result<i64, String> {
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| format!("not an RFC 3339 timestamp (like 2026-11-30T06:00:00Z): {e}"))
}

fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
