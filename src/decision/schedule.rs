//! Schedules: time windows that raise the floor (and may move the ceiling)
//! while they are open. Pure code; the wall-clock instant is an input.
//!
//! A window opens at each cron firing, read in its time zone, and stays open
//! `durationSeconds` of real time; a firing while it is open extends it. So a
//! window is open at `now` iff some firing lies in `(now - duration, now]`.
//!
//! Daylight saving: cron fields match the wall clock. A time the clock skips
//! (02:30 on the spring-forward night) fires as much later as the clock
//! jumped (03:30), as RFC 5545 and jiff's `compatible` rule have it, so a
//! window is never lost; a time the clock repeats fires once, at its first
//! occurrence. The effective bounds follow HPA-style `minReplicas` semantics:
//! see [`bounds_at`].

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::cron::Cron;
use super::Policy;

/// One schedule of a spec, parsed and with its zone resolved.
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// The schedule's name.
    pub name: String,
    /// When each window opens.
    pub cron: Cron,
    /// The IANA name as written (for messages).
    pub zone_name: String,
    /// The time zone the cron is read in.
    pub zone: TimeZone,
    /// How long a window stays open.
    pub duration_ms: i64,
    /// The floor while open.
    pub min_replicas: Option<i32>,
    /// The ceiling while open.
    pub max_replicas: Option<i32>,
}

/// Looks up an IANA zone in the tz database built into the binary, never in
/// the host's: the distroless image has none, and `check` or `simulate` on a
/// laptop must read a schedule exactly as the operator in the cluster does.
pub fn time_zone(name: &str) -> Option<TimeZone> {
    static DB: std::sync::OnceLock<jiff::tz::TimeZoneDatabase> = std::sync::OnceLock::new();
    DB.get_or_init(jiff::tz::TimeZoneDatabase::bundled)
        .get(name)
        .ok()
}

/// An instant a window's state could not be computed for (only at the far
/// edges of the calendar; never a panic).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("schedule {schedule}: cannot compute its windows at {at}: {why}")]
pub struct ScheduleError {
    /// The schedule that could not be evaluated.
    pub schedule: String,
    /// When (Unix milliseconds).
    pub at: i64,
    /// Why.
    pub why: String,
}

/// The bounds in force at one instant and why.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Bounds {
    /// The effective minReplicas.
    pub min: i32,
    /// The effective maxReplicas.
    pub max: i32,
    /// The schedule that set the floor, when one raised it above `spec.minReplicas`.
    pub min_from: Option<String>,
    /// The schedule that set the ceiling, when an open window sets one.
    pub max_from: Option<String>,
    /// Names of the open windows, in spec order.
    pub open: Vec<String>,
    /// A window whose state could not be computed: the pool holds its count.
    pub error: Option<String>,
}

// Offsets of one zone differ by at most ~26 h (UTC-12 to UTC+14): a civil time
// this far from another can never swap order with it in real time.
const ZONE_SLACK_DAYS: i64 = 2;
// 29 February can be 8 years away (2096 to 2104).
const HORIZON_DAYS: i64 = 8 * 366 + 2;

impl Window {
    /// The latest firing in `(now - duration, now]`: the window is open iff
    /// there is one, and then it closes at that firing plus the duration.
    pub fn last_opening(&self, now: Timestamp) -> Result<Option<Timestamp>, ScheduleError> {
        let floor = now - SignedDuration::from_millis(self.duration_ms);
        let first_day = shift(self.local_date(floor), -ZONE_SLACK_DAYS);
        let quiet = self.no_transition_near(floor, now);
        let local_now = self.zone.to_datetime(now);
        let mut day = shift(self.local_date(now), 1);
        let mut best: Option<Timestamp> = None;
        let mut stop_at: Option<Date> = None;
        while day >= first_day && stop_at.is_none_or(|s| day >= s) {
            if self.cron.matches_day(day) {
                for (h, m) in self.cron.times().rev() {
                    let dt = day.at(h, m, 0, 0);
                    // With one offset throughout, wall time orders like real time:
                    // skip the future without a zone conversion.
                    if quiet && dt > local_now {
                        continue;
                    }
                    let t = self.instant(dt, now)?;
                    if t <= now && t > floor && best.is_none_or(|b| t > b) {
                        best = Some(t);
                        // Real time follows wall time except across a
                        // transition: with none near, the first hit is the latest.
                        if quiet {
                            return Ok(best);
                        }
                        stop_at.get_or_insert(shift(day, -ZONE_SLACK_DAYS));
                    }
                }
            }
            let Ok(prev) = day.yesterday() else { break };
            day = prev;
        }
        Ok(best)
    }

    /// The first firing strictly after `now` (None if none within 8 years,
    /// which a validated cron cannot be).
    pub fn next_opening(&self, now: Timestamp) -> Result<Option<Timestamp>, ScheduleError> {
        let quiet = self.no_transition_near(now, now);
        let local_now = self.zone.to_datetime(now);
        let mut day = shift(self.local_date(now), -1);
        let mut best: Option<Timestamp> = None;
        let mut stop_at: Option<Date> = None;
        for _ in 0..HORIZON_DAYS {
            if stop_at.is_some_and(|s| day > s) {
                break;
            }
            if self.cron.matches_day(day) {
                for (h, m) in self.cron.times() {
                    let dt = day.at(h, m, 0, 0);
                    if quiet && dt <= local_now {
                        continue;
                    }
                    let t = self.instant(dt, now)?;
                    if t > now && best.is_none_or(|b| t < b) {
                        best = Some(t);
                        if self.no_transition_near(now, t) {
                            return Ok(best);
                        }
                        stop_at.get_or_insert(shift(day, ZONE_SLACK_DAYS));
                    }
                }
            }
            let Ok(next) = day.tomorrow() else { break };
            day = next;
        }
        Ok(best)
    }

    /// The civil date at `t` in this window's zone.
    fn local_date(&self, t: Timestamp) -> Date {
        self.zone.to_datetime(t).date()
    }

    fn instant(&self, dt: DateTime, now: Timestamp) -> Result<Timestamp, ScheduleError> {
        self.zone
            .to_ambiguous_timestamp(dt)
            .compatible()
            .map_err(|e| self.fail(now, e))
    }

    /// No offset change between a margin before `from` and after `to`.
    fn no_transition_near(&self, from: Timestamp, to: Timestamp) -> bool {
        let margin = SignedDuration::from_hours(24 * ZONE_SLACK_DAYS);
        let (Ok(lo), Ok(hi)) = (from.checked_sub(margin), to.checked_add(margin)) else {
            return false;
        };
        self.zone
            .preceding(hi)
            .next()
            .is_none_or(|tr| tr.timestamp() < lo)
    }

    fn fail(&self, now: Timestamp, e: impl std::fmt::Display) -> ScheduleError {
        ScheduleError {
            schedule: self.name.clone(),
            at: now.as_millisecond(),
            why: e.to_string(),
        }
    }
}

/// `date` moved by whole days, stopping at the ends of the calendar.
fn shift(date: Date, days: i64) -> Date {
    date.checked_add(SignedDuration::from_hours(24 * days))
        .unwrap_or(if days < 0 { Date::MIN } else { Date::MAX })
}

fn timestamp(now_ms: i64) -> Result<Timestamp, String> {
    Timestamp::from_millisecond(now_ms).map_err(|e| format!("instant {now_ms} ms: {e}"))
}

/// The bounds at `now_ms` (Unix milliseconds). While windows are open the
/// floor is the largest of `spec.minReplicas` and their `minReplicas`, and
/// the ceiling the largest of their `maxReplicas` (else `spec.maxReplicas`);
/// a floor above that ceiling lifts the ceiling with it (an explicit ask for
/// capacity wins). If a window's state cannot be computed, the bounds pin
/// the pool at `current` (kept within the spec's own range): no scale on a
/// bound we could not compute.
pub fn bounds_at(policy: &Policy, now_ms: i64, current: i32) -> Bounds {
    let mut b = Bounds {
        min: policy.min_replicas,
        max: policy.max_replicas,
        ..Bounds::default()
    };
    if policy.schedules.is_empty() {
        return b;
    }
    let mut ceiling: Option<(i32, &str)> = None;
    for w in &policy.schedules {
        let open = timestamp(now_ms).and_then(|now| {
            w.last_opening(now)
                .map(|t| t.is_some())
                .map_err(|e| e.to_string())
        });
        match open {
            Err(e) => {
                let held = current.clamp(policy.min_replicas, policy.max_replicas);
                return Bounds {
                    min: held,
                    max: held,
                    error: Some(e),
                    ..Bounds::default()
                };
            }
            Ok(false) => continue,
            Ok(true) => b.open.push(w.name.clone()),
        }
        if let Some(m) = w.min_replicas.filter(|m| *m > b.min) {
            b.min = m;
            b.min_from = Some(w.name.clone());
        }
        if let Some(m) = w
            .max_replicas
            .filter(|m| ceiling.is_none_or(|(c, _)| *m > c))
        {
            ceiling = Some((m, &w.name));
        }
    }
    if let Some((m, name)) = ceiling {
        b.max = m;
        b.max_from = Some(name.to_string());
    }
    b.max = b.max.max(b.min);
    b
}

/// One schedule's state at an instant, for status and `check`.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowState {
    /// The schedule's name.
    pub name: String,
    /// When the open window closes (None when closed).
    pub closes_at: Option<Timestamp>,
    /// When it opens next (None: never, within the search horizon).
    pub next_opening: Option<Timestamp>,
}

/// Every schedule's state at `now_ms`, or the first that cannot be computed.
pub fn states_at(windows: &[Window], now_ms: i64) -> Result<Vec<WindowState>, String> {
    let now = timestamp(now_ms)?;
    windows
        .iter()
        .map(|w| {
            let last = w.last_opening(now).map_err(|e| e.to_string())?;
            let closes_at = last.and_then(|t| {
                t.checked_add(SignedDuration::from_millis(w.duration_ms))
                    .ok()
            });
            Ok(WindowState {
                name: w.name.clone(),
                closes_at,
                next_opening: w.next_opening(now).map_err(|e| e.to_string())?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
