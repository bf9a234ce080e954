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
    let zone = policy
        .schedules
        .first()
        .map_or(jiff::tz::TimeZone::UTC, |w| w.zone.clone());
    let zone_label = policy
        .schedules
        .first()
        .map_or("UTC", |w| w.zone_name.as_str());
    let time_label = |secs: f64| {
        if wall_clock {
            fmt_clock(secs, &zone)
        } else {
            fmt_time(secs)
        }
    };
    let mut s = String::with_capacity(16 * 1024);
    let t_end = steps.last().map_or(1, |x| x.time_ms).max(1) as f64 / 1000.0;
    let t_start = steps.first().map_or(0, |x| x.time_ms) as f64 / 1000.0;
    let span = (t_end - t_start).max(1.0);
    let plot_w = W - LEFT - RIGHT;
    let x = |ms: i64| LEFT + ((ms as f64 / 1000.0) - t_start) / span * plot_w;

    let vmax = steps
        .iter()
        .flat_map(|st| st.values.iter().flatten().copied())
        .fold(0.0f64, f64::max);
    let (v_top, v_step) = nice_axis(vmax);
    let rmax = steps
        .iter()
        .map(|st| st.desired.max(st.current))
        .max()
        .unwrap_or(0)
        .max(policy.max_replicas.min(10_000));
    let (r_top, r_step) = nice_axis(f64::from(rmax));
    // Replicas are whole numbers: never a fractional tick.
    let r_step = r_step.max(1.0).ceil();
    let r_top = (r_top / r_step).ceil() * r_step;
    let yv = |v: f64| TOP_Y + TOP_H - (v / v_top) * TOP_H;
    let yr = |r: f64| BOT_Y + BOT_H - (r / r_top) * BOT_H;

    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="Helvetica, Arial, sans-serif" font-size="12">
<rect width="100%" height="100%" fill="#ffffff"/>
<text x="{LEFT}" y="26" font-size="17" font-weight="bold">{}</text>
"##,
        esc(title)
    );

    // Axes and grid.
    for (py, ph, top, step, label) in [
        (TOP_Y, TOP_H, v_top, v_step, "trigger value"),
        (BOT_Y, BOT_H, r_top, r_step, "replicas"),
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
            r##"<rect x="{LEFT}" y="{py}" width="{plot_w}" height="{ph}" fill="none" stroke="#888"/><text transform="translate(18,{:.1}) rotate(-90)" text-anchor="middle" fill="#222">{label}</text>"##,
            py + ph / 2.0
        );
    }
    let t_step = time_step(span);
    let mut t = (t_start / t_step).ceil() * t_step;
    while t <= t_end + t_step * 0.01 {
        let xx = LEFT + (t - t_start) / span * plot_w;
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{BOT_Y}" x2="{xx:.1}" y2="{:.1}" stroke="#f0f0f0"/><line x1="{xx:.1}" y1="{TOP_Y}" x2="{xx:.1}" y2="{:.1}" stroke="#f0f0f0"/><text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#444">{}</text>"##,
            BOT_Y + BOT_H,
            TOP_Y + TOP_H,
            BOT_Y + BOT_H + 16.0,
            time_label(t)
        );
        t += t_step;
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#222">{}</text>"##,
        LEFT + plot_w / 2.0,
        BOT_Y + BOT_H + 36.0,
        if wall_clock {
            format!("time ({zone_label})")
        } else {
            "time since start".to_string()
        }
    );
    s.push_str(&schedule_shading(policy, steps, &x, &time_label));
    s.push_str(&effective_floor(policy, steps, &x, &yr));

    // Trigger values: one polyline per trigger, broken where a read failed.
    for (i, tp) in policy.triggers.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let mut seg = String::new();
        for st in steps {
            match st.values.get(i).copied().flatten() {
                Some(v) => {
                    let _ = write!(seg, "{:.1},{:.1} ", x(st.time_ms), yv(v));
                }
                None => {
                    flush_line(&mut s, &mut seg, color, 2.0);
                    let _ = writeln!(
                        s,
                        r##"<line x1="{0:.1}" y1="{1:.1}" x2="{0:.1}" y2="{2:.1}" stroke="#d62728" stroke-width="2"><title>{3} failed at {4}</title></line>"##,
                        x(st.time_ms),
                        TOP_Y + TOP_H - 10.0,
                        TOP_Y + TOP_H,
                        esc(&tp.name),
                        time_label(st.time_ms as f64 / 1000.0)
                    );
                }
            }
        }
        flush_line(&mut s, &mut seg, color, 2.0);
    }

    // min / max replicas.
    for (r, label) in [(policy.min_replicas, "min"), (policy.max_replicas, "max")] {
        if f64::from(r) <= r_top {
            let yy = yr(f64::from(r));
            let _ = writeln!(
                s,
                r##"<line x1="{LEFT}" y1="{yy:.1}" x2="{:.1}" y2="{yy:.1}" stroke="#999" stroke-dasharray="6 4"/><text x="{:.1}" y="{:.1}" text-anchor="end" fill="#777">{label} {r}</text>"##,
                W - RIGHT,
                W - RIGHT - 4.0,
                yy - 4.0
            );
        }
    }

    // Replica timeline: a step line of desired replicas.
    let mut path = String::new();
    for (k, st) in steps.iter().enumerate() {
        let xx = x(st.time_ms);
        if k == 0 {
            let _ = write!(path, "M{xx:.1},{:.1} ", yr(f64::from(st.current)));
        }
        let _ = write!(path, "L{xx:.1},{:.1} ", yr(f64::from(st.desired)));
        if let Some(next) = steps.get(k + 1) {
            let _ = write!(
                path,
                "L{:.1},{:.1} ",
                x(next.time_ms),
                yr(f64::from(st.desired))
            );
        }
    }
    let _ = writeln!(
        s,
        r##"<path d="{path}" fill="none" stroke="#2ca02c" stroke-width="2.5"/>"##
    );

    // Events.
    for st in steps {
        let Some(ev) = st.event else { continue };
        let (xx, yy) = (x(st.time_ms), yr(f64::from(st.desired)));
        let shape = marker(ev, xx, yy);
        let _ = writeln!(
            s,
            r##"<g>{shape}<title>{} at {}: {}</title></g>"##,
            ev.as_str(),
            time_label(st.time_ms as f64 / 1000.0),
            esc(&st.explanation)
        );
    }

    // Legend.
    let mut lx = LEFT;
    let ly = 48.0;
    for (i, tp) in policy.triggers.iter().enumerate() {
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
    s.push_str("</svg>\n");
    s
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
