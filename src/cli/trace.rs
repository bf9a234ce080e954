//! The metric trace `simulate` replays: CSV with a header
//! `time,<trigger name>,...`, one row per poll; an empty cell means that
//! trigger failed on that poll. `time` is seconds from 0 (which
//! `simulate --at` pins to a wall clock, by default the Unix epoch) or RFC
//! 3339 timestamps (`2026-11-30T09:30:00Z`), one kind per trace.

use std::io::Read;

/// One poll of a trace.
#[derive(Clone, Debug, PartialEq)]
pub struct TraceRow {
    /// Milliseconds from the start of the trace; after [`Trace::anchor`],
    /// Unix milliseconds (the wall clock schedules are read on).
    pub time_ms: i64,
    /// The time cell as written, echoed in the output.
    pub time_text: String,
    /// Per column (in header order): the value, or None when the read failed.
    pub values: Vec<Option<f64>>,
    /// The cells as written, echoed in the output.
    pub cells: Vec<String>,
}

/// A parsed trace: trigger names from the header and the rows.
#[derive(Clone, Debug, PartialEq)]
pub struct Trace {
    pub columns: Vec<String>,
    pub rows: Vec<TraceRow>,
    /// The time column held RFC 3339 timestamps (rows are Unix milliseconds).
    pub wall_clock: bool,
}

impl Trace {
    /// Gives seconds-from-0 rows a wall clock: time 0 is `at_ms` (Unix
    /// milliseconds). A trace of timestamps has one already, so `--at` with
    /// one is a mistake, not something to ignore silently.
    pub fn anchor(&mut self, at_ms: Option<i64>) -> Result<(), TraceError> {
        match (self.wall_clock, at_ms) {
            (true, Some(_)) => Err(TraceError(
                "--at is for traces timed in seconds; this one has RFC 3339 timestamps".into(),
            )),
            (true, None) | (false, None) => Ok(()),
            (false, Some(at)) => {
                for r in &mut self.rows {
                    r.time_ms = r.time_ms.saturating_add(at);
                }
                self.wall_clock = true;
                Ok(())
            }
        }
    }
}

/// A time cell: seconds from 0, or an RFC 3339 timestamp (Unix milliseconds).
fn parse_time(text: &str, line: u64) -> Result<(i64, bool), TraceError> {
    if let Ok(secs) = text.parse::<f64>() {
        if !(0.0..=1e9).contains(&secs) {
            return Err(TraceError(format!(
                "line {line}: time {text:?} must be between 0 and 1e9 seconds"
            )));
        }
        return Ok(((secs * 1000.0).round() as i64, false));
    }
    match text.parse::<jiff::Timestamp>() {
        Ok(t) => Ok((t.as_millisecond(), true)),
        Err(_) => Err(TraceError(format!(
            "line {line}: time {text:?} is neither seconds nor an RFC 3339 timestamp"
        ))),
    }
}

/// A trace that could not be read, naming the line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TraceError(pub String);

/// Parses a trace. Every error names its line (1 = the header).
pub fn parse(input: impl Read) -> Result<Trace, TraceError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(input);
    let mut records = reader.records();
    let header = match records.next() {
        None => {
            return Err(TraceError(
                "line 1: empty trace, expected header `time,<trigger name>,...`".into(),
            ))
        }
        Some(r) => r.map_err(|e| TraceError(format!("line 1: {e}")))?,
    };
    let columns = header_columns(&header)?;
    let mut rows: Vec<TraceRow> = Vec::new();
    let mut wall_clock: Option<bool> = None;
    for record in records {
        let record = record.map_err(|e| {
            let line = e.position().map_or(0, |p| p.line());
            TraceError(format!("line {line}: {e}"))
        })?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        let (row, stamped) = parse_row(&record, &columns, rows.last(), wall_clock)?;
        wall_clock = Some(stamped);
        rows.push(row);
    }
    if rows.is_empty() {
        return Err(TraceError("trace has a header but no rows".into()));
    }
    Ok(Trace {
        columns,
        rows,
        wall_clock: wall_clock.unwrap_or(false),
    })
}

fn line_of(record: &csv::StringRecord) -> u64 {
    record.position().map_or(0, |p| p.line())
}

/// The trigger columns after `time`: present, named, each once.
fn header_columns(header: &csv::StringRecord) -> Result<Vec<String>, TraceError> {
    if header.get(0).map(|h| h.trim_start_matches('\u{feff}')) != Some("time") {
        return Err(TraceError(format!(
            "line 1: first column must be `time`, got {:?}",
            header.get(0).unwrap_or_default()
        )));
    }
    let columns: Vec<String> = header.iter().skip(1).map(str::to_string).collect();
    if columns.is_empty() {
        return Err(TraceError("line 1: no trigger columns after `time`".into()));
    }
    for (i, c) in columns.iter().enumerate() {
        if c.is_empty() {
            return Err(TraceError(format!(
                "line 1: column {} has an empty name",
                i + 2
            )));
        }
        if columns[..i].contains(c) {
            return Err(TraceError(format!("line 1: column {c:?} appears twice")));
        }
    }
    Ok(columns)
}

/// One row: its time (after `previous`'s, and in the same form as the
/// rows before: `wall_clock` says whether those were RFC 3339 timestamps)
/// and one value per column; also whether the time was a timestamp.
fn parse_row(
    record: &csv::StringRecord,
    columns: &[String],
    previous: Option<&TraceRow>,
    wall_clock: Option<bool>,
) -> Result<(TraceRow, bool), TraceError> {
    let line = line_of(record);
    if record.len() != columns.len() + 1 {
        return Err(TraceError(format!(
            "line {line}: expected {} cells, got {}",
            columns.len() + 1,
            record.len()
        )));
    }
    let time_text = record.get(0).unwrap_or_default().to_string();
    let (time_ms, stamped) = parse_time(&time_text, line)?;
    if wall_clock.is_some_and(|w| w != stamped) {
        return Err(TraceError(format!(
            "line {line}: time {time_text:?} mixes seconds and RFC 3339 timestamps"
        )));
    }
    if previous.is_some_and(|prev| time_ms <= prev.time_ms) {
        return Err(TraceError(format!(
            "line {line}: time {time_text} is not after the previous row"
        )));
    }
    let cells: Vec<String> = record.iter().skip(1).map(str::to_string).collect();
    let values = (cells.iter().zip(columns))
        .map(|(cell, column)| parse_value(cell, column, line))
        .collect::<Result<_, _>>()?;
    let row = TraceRow {
        time_ms,
        time_text,
        values,
        cells,
    };
    Ok((row, stamped))
}

/// A cell: empty is a failed read (None), else a finite number.
fn parse_value(cell: &str, column: &str, line: u64) -> Result<Option<f64>, TraceError> {
    if cell.is_empty() {
        return Ok(None);
    }
    let v: f64 = cell.parse().map_err(|_| {
        TraceError(format!(
            "line {line}: {column} value {cell:?} is not a number"
        ))
    })?;
    if !v.is_finite() {
        return Err(TraceError(format!(
            "line {line}: {column} value {cell:?} is not finite"
        )));
    }
    Ok(Some(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_values_and_failures() {
        let t = parse("time,orders,rate\n0,10,\n5,20,1.5\n".as_bytes()).unwrap();
        assert_eq!(t.columns, vec!["orders", "rate"]);
        assert_eq!(t.rows[0].values, vec![Some(10.0), None]);
        assert_eq!(t.rows[1].time_ms, 5000);
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("time,orders\n0,1\n5,abc\n".as_bytes()).unwrap_err();
        assert!(e.0.starts_with("line 3:"), "{e}");
        let e = parse("time,orders\n0,1\n0,2\n".as_bytes()).unwrap_err();
        assert!(e.0.starts_with("line 3:"), "{e}");
        let e = parse("t,orders\n".as_bytes()).unwrap_err();
        assert!(e.0.starts_with("line 1:"), "{e}");
        let e = parse("time,orders\n0,1,2\n".as_bytes()).unwrap_err();
        assert!(e.0.starts_with("line 2:"), "{e}");
    }

    #[test]
    fn rfc3339_times_are_unix_milliseconds() {
        let t =
            parse("time,orders\n2026-11-30T09:30:00+01:00,1\n2026-11-30T08:30:05Z,2\n".as_bytes())
                .unwrap();
        assert!(t.wall_clock);
        assert_eq!(t.rows[0].time_ms, 1_796_027_400_000);
        assert_eq!(t.rows[1].time_ms, 1_796_027_405_000);
        let e = parse("time,orders\n2026-11-30T09:30:00Z,1\n60,2\n".as_bytes()).unwrap_err();
        assert!(e.0.starts_with("line 3:") && e.0.contains("mixes"), "{e}");
        let e = parse("time,orders\nmonday,1\n".as_bytes()).unwrap_err();
        assert!(e.0.contains("RFC 3339"), "{e}");
        let e = parse("time,orders\n2026-11-30T09:30:00Z,1\n2026-11-30T09:29:00Z,2\n".as_bytes())
            .unwrap_err();
        assert!(e.0.starts_with("line 3:"), "{e}");
    }

    #[test]
    fn anchor_pins_time_zero_to_a_wall_clock() {
        let mut t = parse("time,orders\n0,1\n5,2\n".as_bytes()).unwrap();
        t.anchor(Some(1_796_027_400_000)).unwrap();
        assert_eq!(t.rows[1].time_ms, 1_796_027_405_000);
        let mut t = parse("time,orders\n2026-11-30T09:30:00Z,1\n".as_bytes()).unwrap();
        assert!(t.anchor(Some(0)).is_err());
        assert!(t.anchor(None).is_ok());
    }
}
