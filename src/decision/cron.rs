//! Five-field cron expressions (`minute hour day-of-month month day-of-week`)
//! with the meaning Vixie cron, cronie and Kubernetes CronJobs give them.
//!
//! Our own small parser rather than a crate: the maintained Rust cron crates
//! either sit on chrono (so a second time-zone stack beside jiff) or use the
//! Quartz dialect (a seconds field, Sunday = 1, day fields ANDed), which reads
//! `0 8 * * 1-5` as something else than every cron user means. Matching is
//! done on the civil (wall-clock) date and time; turning that into instants,
//! daylight-saving gaps and folds included, is the schedule's job.
//!
//! Supported: `*`, numbers, `a-b` ranges, `/step` (after `*`, a range or a
//! start), lists with `,`, month and weekday names (`jan`, `mon`, case
//! insensitive), weekday 7 = Sunday, and `@hourly`, `@daily`/`@midnight`,
//! `@weekly`, `@monthly`, `@yearly`/`@annually`. As in Vixie cron, when both
//! day fields are restricted a day matches either of them.

use jiff::civil::Date;

/// A cron expression that cannot be used, naming the part that is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// Not five fields (and not an `@` macro).
    #[error("must have 5 fields (minute hour day-of-month month day-of-week), got {0}")]
    FieldCount(usize),
    /// An `@` word we do not know (or `@reboot`, which has no time).
    #[error("unknown macro {0:?} (use @hourly, @daily, @weekly, @monthly or @yearly)")]
    UnknownMacro(String),
    /// One field is malformed.
    #[error("{field} field {text:?}: {why}")]
    Field {
        /// Which of the five fields (or the whole expression).
        field: &'static str,
        /// The text that could not be used.
        text: String,
        /// Why.
        why: String,
    },
    /// Day fields that no calendar date satisfies (say, `30 2` for 30 February).
    #[error("day-of-month and month never match a real date, so it never fires")]
    NeverFires,
}

/// A parsed cron expression: one bit per allowed value of each field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cron {
    minutes: u64,
    hours: u32,
    days: u32,
    months: u16,
    weekdays: u8,
    /// The day-of-month field is not `*` (Vixie: a field starting with `*`).
    day_restricted: bool,
    weekday_restricted: bool,
}

struct FieldSpec {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

const MINUTE: FieldSpec = FieldSpec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
};
const HOUR: FieldSpec = FieldSpec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
};
const DAY: FieldSpec = FieldSpec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
};
const MONTH: FieldSpec = FieldSpec {
    name: "month",
    min: 1,
    max: 12,
    names: &[
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ],
};
// 0..=7 with both 0 and 7 meaning Sunday; names map from 0.
const WEEKDAY: FieldSpec = FieldSpec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &["sun", "mon", "tue", "wed", "thu", "fri", "sat"],
};

impl Cron {
    /// Parses a 5-field expression or an `@` macro.
    pub fn parse(text: &str) -> Result<Cron, CronError> {
        let text = text.trim();
        let expanded = match text.to_ascii_lowercase().as_str() {
            "@yearly" | "@annually" => "0 0 1 1 *",
            "@monthly" => "0 0 1 * *",
            "@weekly" => "0 0 * * 0",
            "@daily" | "@midnight" => "0 0 * * *",
            "@hourly" => "0 * * * *",
            m if m.starts_with('@') => return Err(CronError::UnknownMacro(truncate(text))),
            _ => text,
        };
        let fields: Vec<&str> = expanded.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(CronError::FieldCount(fields.len()));
        }
        let minutes = parse_field(fields[0], &MINUTE)?;
        let hours = parse_field(fields[1], &HOUR)? as u32;
        let days = parse_field(fields[2], &DAY)? as u32;
        let months = parse_field(fields[3], &MONTH)? as u16;
        let weekdays = parse_field(fields[4], &WEEKDAY)?;
        let cron = Cron {
            minutes,
            hours,
            days,
            months,
            // Fold 7 (Sunday) onto 0.
            weekdays: ((weekdays | (weekdays >> 7)) & 0x7f) as u8,
            day_restricted: !fields[2].starts_with('*'),
            weekday_restricted: !fields[4].starts_with('*'),
        };
        if !cron.some_date_matches() {
            return Err(CronError::NeverFires);
        }
        Ok(cron)
    }

    /// Whether the cron fires on some minute of this civil date.
    pub fn matches_day(&self, date: Date) -> bool {
        if self.months & (1 << date.month()) == 0 {
            return false;
        }
        let dom = self.days & (1 << date.day()) != 0;
        let dow = self.weekdays & (1 << date.weekday().to_sunday_zero_offset()) != 0;
        match (self.day_restricted, self.weekday_restricted) {
            (true, true) => dom || dow,
            _ => dom && dow,
        }
    }

    /// The (hour, minute) pairs of a matching day, earliest first.
    pub fn times(&self) -> impl DoubleEndedIterator<Item = (i8, i8)> + '_ {
        (0..24i8)
            .filter(move |h| self.hours & (1 << h) != 0)
            .flat_map(move |h| {
                (0..60i8)
                    .filter(move |m| self.minutes & (1u64 << m) != 0)
                    .map(move |m| (h, m))
            })
    }

    /// With only the day-of-month restricted, some month must have that day
    /// (29 February counts: leap years come). Weekdays always recur.
    fn some_date_matches(&self) -> bool {
        if !self.day_restricted || self.weekday_restricted {
            return true;
        }
        const LONGEST: [u32; 13] = [0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
        (1..=12).any(|m| {
            self.months & (1 << m) != 0 && (1..=LONGEST[m]).any(|d| self.days & (1 << d) != 0)
        })
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

fn parse_field(text: &str, spec: &FieldSpec) -> Result<u64, CronError> {
    let fail = |why: String| CronError::Field {
        field: spec.name,
        text: truncate(text),
        why,
    };
    let mut bits = 0u64;
    for item in text.split(',') {
        bits |= parse_item(item, spec).map_err(fail)?;
    }
    Ok(bits)
}

fn parse_item(item: &str, spec: &FieldSpec) -> Result<u64, String> {
    let (range, step) = match item.split_once('/') {
        Some((r, s)) => {
            let step: u32 = s
                .parse()
                .map_err(|_| format!("step {s:?} is not a number"))?;
            if step == 0 || step > spec.max {
                return Err(format!("step must be in 1..={}, got {step}", spec.max));
            }
            (r, step)
        }
        None => (item, 1),
    };
    let (lo, hi) = if range == "*" {
        (spec.min, spec.max)
    } else if let Some((a, b)) = range.split_once('-') {
        let (lo, hi) = (value(a, spec)?, value(b, spec)?);
        if lo > hi {
            return Err(format!("range {range:?} runs backwards"));
        }
        (lo, hi)
    } else {
        let v = value(range, spec)?;
        // `5/15` means from 5 to the end in steps of 15.
        (v, if step > 1 { spec.max } else { v })
    };
    Ok((lo..=hi).step_by(step as usize).fold(0, |b, v| b | 1 << v))
}

fn value(text: &str, spec: &FieldSpec) -> Result<u32, String> {
    if text.is_empty() {
        return Err("empty value".into());
    }
    let lower = text.to_ascii_lowercase();
    if let Some(i) = spec.names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + if spec.names.len() == 12 { 1 } else { 0 });
    }
    let v: u32 = text.parse().map_err(|_| {
        if text.contains(['?', 'L', 'W', '#']) {
            format!("{text:?}: Quartz extensions (? L W #) are not supported")
        } else {
            format!("{text:?} is not a number")
        }
    })?;
    if v < spec.min || v > spec.max {
        return Err(format!("{v} is outside {}..={}", spec.min, spec.max));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::civil::date;

    fn minutes(c: &Cron) -> Vec<(i8, i8)> {
        c.times().collect()
    }

    #[test]
    fn parses_the_common_forms() {
        let c = Cron::parse("0 8 * * 1-5").unwrap();
        assert_eq!(minutes(&c), vec![(8, 0)]);
        // 2026-11-30 is a Monday, 2026-11-29 a Sunday.
        assert!(c.matches_day(date(2026, 11, 30)));
        assert!(!c.matches_day(date(2026, 11, 29)));
        let c = Cron::parse("*/20 9-10 * * *").unwrap();
        assert_eq!(
            minutes(&c),
            vec![(9, 0), (9, 20), (9, 40), (10, 0), (10, 20), (10, 40)]
        );
        let c = Cron::parse("5/30 0 * * *").unwrap();
        assert_eq!(minutes(&c), vec![(0, 5), (0, 35)]);
        let c = Cron::parse("0 0 1,15 jan-MAR *").unwrap();
        assert!(c.matches_day(date(2027, 3, 15)));
        assert!(!c.matches_day(date(2027, 4, 1)));
        assert_eq!(Cron::parse("@daily"), Cron::parse("0 0 * * *"));
        assert_eq!(Cron::parse("@weekly"), Cron::parse("0 0 * * sun"));
    }

    #[test]
    fn sunday_is_zero_and_seven() {
        let a = Cron::parse("0 0 * * 0").unwrap();
        let b = Cron::parse("0 0 * * 7").unwrap();
        assert_eq!(a, b);
        assert!(a.matches_day(date(2026, 11, 29)));
        let c = Cron::parse("0 0 * * 5-7").unwrap();
        assert!(c.matches_day(date(2026, 11, 27))); // Friday
        assert!(c.matches_day(date(2026, 11, 29))); // Sunday
        assert!(!c.matches_day(date(2026, 11, 30))); // Monday
    }

    #[test]
    fn restricted_day_fields_are_ored_as_in_vixie_cron() {
        // The 1st of the month, or any Monday.
        let c = Cron::parse("0 0 1 * mon").unwrap();
        assert!(c.matches_day(date(2026, 12, 1))); // Tuesday the 1st
        assert!(c.matches_day(date(2026, 11, 30))); // Monday
        assert!(!c.matches_day(date(2026, 12, 2)));
        // A starred field (even stepped) leaves the other one in charge.
        let c = Cron::parse("0 0 */2 * mon").unwrap();
        assert!(!c.matches_day(date(2026, 12, 1)));
        assert!(c.matches_day(date(2026, 12, 7)));
        assert!(!c.matches_day(date(2026, 12, 8)));
    }

    #[test]
    fn rejects_malformed_expressions_naming_the_field() {
        let cases = [
            ("0 8 * *", "5 fields"),
            ("0 0 8 * * 1-5", "5 fields"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("* * 0 * *", "day-of-month"),
            ("* * * 13 *", "month"),
            ("* * * * 8", "day-of-week"),
            ("* * * * mon-", "day-of-week"),
            ("*/0 * * * *", "step"),
            ("10-5 * * * *", "backwards"),
            ("0 0 ? * MON", "Quartz"),
            ("0 0 L * *", "Quartz"),
            ("a b c d e", "minute"),
            ("@reboot", "macro"),
            ("0 0 30 2 *", "never fires"),
            ("0 0 31 4,6,9,11 *", "never fires"),
            ("", "5 fields"),
        ];
        for (text, want) in cases {
            let e = Cron::parse(text).expect_err(text).to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        // 29 February fires in leap years: allowed.
        assert!(Cron::parse("0 0 29 2 *").is_ok());
    }
}
