//! The `simulate --svg` chart: trigger values on top, the replica timeline
//! below on the same time axis, with min/max and every scale event marked.
//! Hand-written SVG so the binary carries no plotting stack.

use std::fmt::Write;

use super::simulate::SimStep;
use crate::decision::{bounds_at, Bounds, Policy, ScaleEventKind};

const W: f64 = 1000.0;
const H: f64 = 620.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 30.0;
const TOP_Y: f64 = 70.0;
const TOP_H: f64 = 210.0;
const BOT_Y: f64 = 330.0;
const BOT_H: f64 = 230.0;
const PALETTE: [&str; 8] = [
    "#1f77b4", "#ff7f0e", "#9467bd", "#17becf", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
];

/// Renders the simulation as a standalone SVG document.
pub fn render(title: &str, policy: &Policy, steps: &[SimStep]) -> String {
    render_at(title, policy, steps, false)
}

/// As [`render`]; with `wall_clock` the step times are Unix milliseconds and
/// the time axis shows the wall clock (in the first schedule's zone, else UTC).
pub fn render_at(title: &str, policy: &Policy, steps: &[SimStep], wall_clock: bool) -> String {
    let chart = Chart::new(policy, steps, wall_clock);
    let mut s = String::with_capacity(16 * 1024);
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="Helvetica, Arial, sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{LEFT}" y="26" font-size="17" font-weight="bold">{}</text>
"##,
        esc(title)
    );
    chart.value_axes(&mut s);
    chart.time_axis(&mut s);
    let time_label = |secs: f64| chart.time_label(secs);
    let x = |ms: i64| chart.x(ms);
    let yr = |r: f64| chart.yr(r);
    s.push_str(&schedule_shading(policy, steps, &x, &time_label));
    s.push_str(&effective_floor(policy, steps, &x, &yr));
    chart.trigger_lines(&mut s);
    chart.replica_bounds(&mut s);
    chart.replica_line(&mut s);
    chart.events(&mut s);
    chart.trigger_legend(&mut s);
    chart.replica_legend(&mut s);
    s.push_str("</svg>\n");
    s
}

/// The two panels' scales and the time axis of one chart.
struct Chart<'a> {
    policy: &'a Policy,
    steps: &'a [SimStep],
    wall_clock: bool,
    zone: jiff::tz::TimeZone,
    zone_label: &'a str,
    t_start: f64,
    t_end: f64,
    span: f64,
    /// Top and tick step of the trigger-value panel.
    values: (f64, f64),
    /// Top and tick step of the replica panel (whole numbers).
    replicas: (f64, f64),
}

const PLOT_W: f64 = W - LEFT - RIGHT;

impl<'a> Chart<'a> {
    fn new(policy: &'a Policy, steps: &'a [SimStep], wall_clock: bool) -> Chart<'a> {
        let first_schedule = policy.schedules.first();
        let t_end = steps.last().map_or(1, |x| x.time_ms).max(1) as f64 / 1000.0;
        let t_start = steps.first().map_or(0, |x| x.time_ms) as f64 / 1000.0;
        let vmax = steps
            .iter()
            .flat_map(|st| st.values.iter().flatten().copied())
            .fold(0.0f64, f64::max);
        Chart {
            policy,
            steps,
            wall_clock,
            zone: first_schedule.map_or(jiff::tz::TimeZone::UTC, |w| w.zone.clone()),
            zone_label: first_schedule.map_or("UTC", |w| w.zone_name.as_str()),
            t_start,
            t_end,
            span: (t_end - t_start).max(1.0),
            values: nice_axis(vmax),
            replicas: replica_axis(policy, steps),
        }
    }

    fn time_label(&self, secs: f64) -> String {
        if self.wall_clock {
            fmt_clock(secs, &self.zone)
        } else {
            fmt_time(secs)
        }
    }

    fn x(&self, ms: i64) -> f64 {
        LEFT + ((ms as f64 / 1000.0) - self.t_start) / self.span * PLOT_W
    }

    fn yv(&self, v: f64) -> f64 {
        TOP_Y + TOP_H - (v / self.values.0) * TOP_H
    }

    fn yr(&self, r: f64) -> f64 {
        BOT_Y + BOT_H - (r / self.replicas.0) * BOT_H
    }

    /// Both panels' frames, horizontal grid lines and value labels.
    fn value_axes(&self, s: &mut String) {
        for (py, ph, (top, step), label) in [
            (TOP_Y, TOP_H, self.values, "trigger value"),
            (BOT_Y, BOT_H, self.replicas, "replicas"),
        ] {
            let mut v = 0.0;
            while v <= top + step * 0.01 {
                let yy = py + ph - v / top * ph;
                let _ = writeln!(
                    s,
                    r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#e5e5e5"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#444">{}</text>"##,
                    W - RIGHT,
                    LEFT - 6.0,
                    yy + 4.0,
                    fmt_num(v)
                );
                v += step;
            }
            let _ = writeln!(
                s,
                r##"<rect x="{LEFT}" y="{py}" width="{PLOT_W}" height="{ph}" fill="none" stroke="#888"/><text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle" fill="#222">{label}</text>"##,
                py + ph / 2.0
            );
        }
    }

    /// Vertical grid lines with time labels, and the axis title.
    fn time_axis(&self, s: &mut String) {
        let t_step = time_step(self.span);
        let mut t = (self.t_start / t_step).ceil() * t_step;
        while t <= self.t_end + t_step * 0.01 {
            let xx = LEFT + (t - self.t_start) / self.span * PLOT_W;
            let _ = writeln!(
                s,
                r##"<line x1="{xx:.1}" y1="{BOT_Y}" x2="{xx:.1}" y2="{:.1}" stroke="#f0f0f0"/><line x1="{xx:.1}" y1="{TOP_Y}" x2="{xx:.1}" y2="{:.1}" stroke="#f0f0f0"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
                BOT_Y + BOT_H,
                TOP_Y + TOP_H,
                BOT_Y + BOT_H + 16.0,
                self.time_label(t)
            );
            t += t_step;
        }
        let title = if self.wall_clock {
            format!("time ({})", self.zone_label)
        } else {
            "time since start".to_string()
        };
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#222">{title}</text>"##,
            LEFT + PLOT_W / 2.0,
            BOT_Y + BOT_H + 36.0,
        );
    }

    /// One polyline per trigger, broken (and marked red) where a read failed.
    fn trigger_lines(&self, s: &mut String) {
        for (i, tp) in self.policy.triggers.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let mut seg = String::new();
            for st in self.steps {
                match st.values.get(i).copied().flatten() {
                    Some(v) => {
                        let _ = write!(seg, "{:.1},{:.1} ", self.x(st.time_ms), self.yv(v));
                    }
                    None => {
                        flush_line(s, &mut seg, color, 2.0);
                        let _ = writeln!(
                            s,
                            r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#d62728" stroke-width="2"><title>{3} failed at {4}</title></line>"##,
                            self.x(st.time_ms),
                            TOP_Y + TOP_H - 10.0,
                            TOP_Y + TOP_H,
                            esc(&tp.name),
                            self.time_label(st.time_ms as f64 / 1000.0)
                        );
                    }
                }
            }
            flush_line(s, &mut seg, color, 2.0);
        }
    }

    /// Dashed lines at minReplicas and maxReplicas (when inside the panel).
    fn replica_bounds(&self, s: &mut String) {
        let bounds = [
            (self.policy.min_replicas, "min"),
            (self.policy.max_replicas, "max"),
        ];
        for (r, label) in bounds {
            if f64::from(r) <= self.replicas.0 {
                let yy = self.yr(f64::from(r));
                let _ = writeln!(
                    s,
                    r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#999" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#777">{label} {r}</text>"##,
                    W - RIGHT,
                    W - RIGHT - 4.0,
                    yy - 4.0
                );
            }
        }
    }

    /// The desired replicas as a step line.
    fn replica_line(&self, s: &mut String) {
        let mut path = String::new();
        for (k, st) in self.steps.iter().enumerate() {
            let xx = self.x(st.time_ms);
            let desired = self.yr(f64::from(st.desired));
            if k == 0 {
                let _ = write!(path, "M{xx:.1},{:.1} ", self.yr(f64::from(st.current)));
            }
            let _ = write!(path, "L{xx:.1},{desired:.1} ");
            if let Some(next) = self.steps.get(k + 1) {
                let _ = write!(path, "L{:.1},{desired:.1} ", self.x(next.time_ms));
            }
        }
        let _ = writeln!(
            s,
            r##"<path d="{path}" fill="none" stroke="#2ca02c" stroke-width="2.5"/>"##
        );
    }

    /// A marker per scale event, its explanation as a tooltip.
    fn events(&self, s: &mut String) {
        for st in self.steps {
            let Some(ev) = st.event else { continue };
            let shape = marker(ev, self.x(st.time_ms), self.yr(f64::from(st.desired)));
            let _ = writeln!(
                s,
                r##"<g>{shape}<title>{} at {}: {}</title></g>"##,
                ev.as_str(),
                self.time_label(st.time_ms as f64 / 1000.0),
                esc(&st.explanation)
            );
        }
    }

    /// Above the value panel: each trigger's colour and target.
    fn trigger_legend(&self, s: &mut String) {
        let mut lx = LEFT;
        let ly = 48.0;
        for (i, tp) in self.policy.triggers.iter().enumerate() {
            let color = PALETTE[i % PALETTE.len()];
            let label = format!("{} ({}/replica)", tp.name, fmt_num(tp.target_per_replica));
            let _ = writeln!(
                s,
                r##"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"##,
                lx + 18.0,
                lx + 22.0,
                ly + 4.0,
                esc(&label)
            );
            lx += 40.0 + 7.0 * label.len() as f64;
        }
    }

    /// Above the replica panel: the line, each event marker, a failed read.
    fn replica_legend(&self, s: &mut String) {
        let mut lx = LEFT;
        let ly = BOT_Y - 12.0;
        let _ = writeln!(
            s,
            r##"<line x1="{lx}" y1="{ly}" x2="{:.1}" y2="{ly}" stroke="#2ca02c" stroke-width="3"/><text x="{:.1}" y="{:.1}">replicas</text>"##,
            lx + 18.0,
            lx + 22.0,
            ly + 4.0
        );
        lx += 90.0;
        for ev in [
            ScaleEventKind::ScaledOut,
            ScaleEventKind::ScaledIn,
            ScaleEventKind::ScaledToZero,
            ScaleEventKind::FallbackApplied,
        ] {
            let _ = writeln!(
                s,
                "{}<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                marker(ev, lx + 6.0, ly),
                lx + 14.0,
                ly + 4.0,
                ev.as_str()
            );
            lx += 24.0 + 7.0 * ev.as_str().len() as f64;
        }
        let _ = writeln!(
            s,
            r##"<text x="{:.1}" y="{:.1}" fill="#d62728">| failed read</text>"##,
            lx,
            ly + 4.0
        );
    }
}

/// The replica panel's top and tick step: room for the largest count seen
/// and maxReplicas (capped, so a huge max does not flatten the line), in
/// whole-number ticks.
fn replica_axis(policy: &Policy, steps: &[SimStep]) -> (f64, f64) {
    let rmax = steps
        .iter()
        .map(|st| st.desired.max(st.current))
        .max()
        .unwrap_or(0)
        .max(policy.max_replicas.min(10_000));
    let (r_top, r_step) = nice_axis(f64::from(rmax));
    let r_step = r_step.max(1.0).ceil();
    ((r_top / r_step).ceil() * r_step, r_step)
}

fn marker(ev: ScaleEventKind, x: f64, y: f64) -> String {
    match ev {
        ScaleEventKind::ScaledOut => format!(
            r##"<path d="M{:.1},{:.1} L{:.1},{:.1} L{:.1},{:.1} Z" fill="#2ca02c"/>"##,
            x,
            y - 6.0,
            x - 5.0,
            y + 3.0,
            x + 5.0,
            y + 3.0
        ),
        ScaleEventKind::ScaledIn => format!(
            r##"<path d="M{:.1},{:.1} L{:.1},{:.1} L{:.1},{:.1} Z" fill="#1f77b4"/>"##,
            x,
            y + 6.0,
            x - 5.0,
            y - 3.0,
            x + 5.0,
            y - 3.0
        ),
        ScaleEventKind::ScaledToZero => {
            format!(r##"<circle cx="{x:.1}" cy="{y:.1}" r="5" fill="#555"/>"##)
        }
        ScaleEventKind::FallbackApplied => format!(
            r##"<path d="M{:.1},{:.1} L{:.1},{:.1} L{:.1},{:.1} L{:.1},{:.1} Z" fill="#d62728"/>"##,
            x,
            y - 6.0,
            x + 6.0,
            y,
            x,
            y + 6.0,
            x - 6.0,
            y
        ),
    }
}

fn flush_line(s: &mut String, seg: &mut String, color: &str, width: f64) {
    if seg.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="{width}"/>"##,
        seg.trim_end()
    );
    seg.clear();
}

/// A tick step in seconds that lands on round times, with at most ~8 ticks.
/// Open schedule windows as shaded bands over both panels, named at the
/// top, and the floor they set as a dashed step line.
fn schedule_shading(
    policy: &Policy,
    steps: &[SimStep],
    x: &dyn Fn(i64) -> f64,
    time_label: &dyn Fn(f64) -> String,
) -> String {
    let mut s = String::new();
    if policy.schedules.is_empty() || steps.is_empty() {
        return s;
    }
    let bounds: Vec<Bounds> = steps
        .iter()
        .map(|st| bounds_at(policy, st.time_ms, st.current))
        .collect();
    let end_of = |k: usize| steps.get(k + 1).map_or(steps[k].time_ms, |n| n.time_ms);
    for (i, w) in policy.schedules.iter().enumerate() {
        let mut k = 0;
        while k < steps.len() {
            if !bounds[k].open.contains(&w.name) {
                k += 1;
                continue;
            }
            let first = k;
            while k < steps.len() && bounds[k].open.contains(&w.name) {
                k += 1;
            }
            let (x0, x1) = (x(steps[first].time_ms), x(end_of(k - 1)));
            let _ = writeln!(
                s,
                r##"<g><rect x="{x0:.1}" y="{TOP_Y}" width="{:.1}" height="{:.1}" fill="{}" fill-opacity="0.12"/><text x="{:.1}" y="{:.1}" fill="#555">{}</text><title>schedule {} open from {}</title></g>"##,
                (x1 - x0).max(1.0),
                BOT_Y + BOT_H - TOP_Y,
                PALETTE[(i + 3) % PALETTE.len()],
                x0 + 4.0,
                TOP_Y + 14.0 + 14.0 * i as f64,
                esc(&w.name),
                esc(&w.name),
                time_label(steps[first].time_ms as f64 / 1000.0)
            );
        }
    }
    s
}

/// The floor in force at each step (schedules move it) as a dashed step line.
fn effective_floor(
    policy: &Policy,
    steps: &[SimStep],
    x: &dyn Fn(i64) -> f64,
    yr: &dyn Fn(f64) -> f64,
) -> String {
    if policy.schedules.is_empty() || steps.is_empty() {
        return String::new();
    }
    let mut path = String::new();
    for (k, st) in steps.iter().enumerate() {
        let floor = f64::from(bounds_at(policy, st.time_ms, st.current).min);
        let end = steps.get(k + 1).map_or(st.time_ms, |n| n.time_ms);
        let cmd = if k == 0 { 'M' } else { 'L' };
        let _ = write!(
            path,
            "{cmd}{:.1},{:.1} L{:.1},{:.1} ",
            x(st.time_ms),
            yr(floor),
            x(end),
            yr(floor)
        );
    }
    format!(
        "<path d=\"{path}\" fill=\"none\" stroke=\"#555\" stroke-width=\"1.5\" stroke-dasharray=\"2 3\"><title>floor in force</title></path>\n"
    )
}

/// Hours and minutes of a Unix time on the given zone's wall clock.
fn fmt_clock(secs: f64, zone: &jiff::tz::TimeZone) -> String {
    match jiff::Timestamp::from_millisecond((secs * 1000.0) as i64) {
        Ok(t) => zone.to_datetime(t).strftime("%a %H:%M").to_string(),
        Err(_) => fmt_time(secs),
    }
}

fn time_step(span: f64) -> f64 {
    const STEPS: [f64; 16] = [
        1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
        21600.0, 86400.0,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 8.0)
        .unwrap_or(86400.0 * (span / 86400.0 / 8.0).ceil())
}

/// A round upper bound and tick step for an axis reaching `max`.
fn nice_axis(max: f64) -> (f64, f64) {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    let raw = max / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * mag);
    let step = if max <= 5.0 && step < 1.0 && max.fract() == 0.0 {
        1.0
    } else {
        step
    };
    ((max / step).ceil().max(1.0) * step, step)
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn fmt_time(secs: f64) -> String {
    let secs = secs.max(0.0);
    if secs >= 3600.0 {
        format!(
            "{}h{:02}m",
            (secs / 3600.0) as i64,
            ((secs % 3600.0) / 60.0) as i64
        )
    } else if secs >= 60.0 {
        let (m, s) = ((secs / 60.0) as i64, (secs % 60.0).round() as i64);
        if s == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{s:02}s")
        }
    } else {
        format!("{}s", fmt_num(secs))
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::nice_axis;

    #[test]
    fn axes_are_round() {
        assert_eq!(nice_axis(137.0), (150.0, 50.0));
        assert_eq!(nice_axis(10.0), (10.0, 2.0));
        assert_eq!(nice_axis(3.0), (3.0, 1.0));
        assert_eq!(nice_axis(0.0), (1.0, 1.0));
    }
}
