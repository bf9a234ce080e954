//! Issue #15's targets for a run's N, as a table: one PASS/MISS line each.

/// The run's figures the targets judge.
pub struct Figures {
    pub n: usize,
    pub interval_s: f64,
    /// Share of polls on time and share of the expected polls done.
    pub on_time: f64,
    pub done: f64,
    pub lag_p99_s: Option<f64>,
    /// None: no reaction measured; infinity: some never came.
    pub reaction_p99_s: Option<f64>,
    pub cpu_cores: f64,
    pub peak_rss_mib: f64,
    /// The busiest endpoint, by the operator's own count.
    pub round_trips_per_s: Option<f64>,
    pub status_beyond_changes_per_s: f64,
    /// Ours/floor CPU per 1,000 reads, when the floor ran.
    pub floor_ratio: Option<f64>,
    /// Slow-API mode: (most connections open at once, writes lost).
    pub slow_api: Option<(usize, usize)>,
}

/// One target: its name, the figure (None = not measured: a MISS), the
/// bound, and whether the figure must be at least (true) or at most it.
struct Row {
    name: &'static str,
    got: Option<f64>,
    bound: f64,
    at_least: bool,
    unit: &'static str,
}

fn row(
    name: &'static str,
    got: Option<f64>,
    at_least: bool,
    bound: f64,
    unit: &'static str,
) -> Row {
    Row {
        name,
        got,
        bound,
        at_least,
        unit,
    }
}

/// The rows for this run: the N=5000 tier below 20,000 pools (N=1 with
/// its own RSS bound), the N>=20000 tier above; slow-API rows when on.
fn rows(f: &Figures) -> Vec<Row> {
    let large = f.n >= 20_000;
    let (lag, slack, cpu, rss) = match (large, f.n) {
        (true, _) => (0.25, 0.25, 0.5, 150.0),
        (false, 1) => (0.10, 0.10, 0.10, 15.0),
        (false, _) => (0.10, 0.10, 0.10, 60.0),
    };
    let mut rows = vec![
        row("polls on time", Some(100.0 * f.on_time), true, 99.0, "%"),
        row("polls done", Some(100.0 * f.done), true, 99.0, "%"),
        row(
            "poll lag p99",
            f.lag_p99_s.map(|s| s * 1000.0),
            false,
            lag * 1000.0,
            "ms",
        ),
        row(
            "reaction p99",
            f.reaction_p99_s,
            false,
            f.interval_s + slack,
            "s",
        ),
        row("operator cpu", Some(f.cpu_cores), false, cpu, "cores"),
        row("peak RSS", Some(f.peak_rss_mib), false, rss, "MiB"),
    ];
    if !large {
        let per_s = f.round_trips_per_s;
        rows.push(row(
            "redis round trips per endpoint (operator's count)",
            per_s,
            false,
            10.0,
            "/s",
        ));
        let status = Some(f.status_beyond_changes_per_s);
        rows.push(row(
            "status writes beyond changes",
            status,
            false,
            f.n as f64 / 30.0,
            "/s",
        ));
    }
    if let Some(ratio) = f.floor_ratio {
        rows.push(row("cpu vs raw floor", Some(ratio), false, 3.0, "x"));
    }
    if let Some((connections, lost)) = f.slow_api {
        rows.push(row(
            "slow API: connections at once",
            Some(connections as f64),
            false,
            32.0,
            "",
        ));
        rows.push(row(
            "slow API: writes lost",
            Some(lost as f64),
            false,
            0.0,
            "",
        ));
    }
    rows
}

/// One line per target, then a summary line.
pub fn report(f: &Figures) -> Vec<String> {
    let tier = match f.n {
        1 => "N=1",
        n if n >= 20_000 => "N>=20000",
        _ => "N=5000",
    };
    let rows = rows(f);
    let mut missed = 0;
    let mut lines: Vec<String> = rows
        .iter()
        .map(|r| {
            let pass = r.got.is_some_and(|g| {
                if r.at_least {
                    g >= r.bound
                } else {
                    g <= r.bound
                }
            });
            missed += usize::from(!pass);
            let got = r.got.map_or("n/a".into(), |g| number(g, r.unit));
            let cmp = if r.at_least { ">=" } else { "<=" };
            format!(
                "target {} {}: {got} (want {cmp} {}; #15 tier {tier})",
                if pass { "PASS" } else { "MISS" },
                r.name,
                number(r.bound, r.unit),
            )
        })
        .collect();
    lines.push(format!(
        "targets: {} of {} PASS ({tier} tier)",
        rows.len() - missed,
        rows.len()
    ));
    lines
}

/// Three significant-ish digits, then the unit.
fn number(x: f64, unit: &str) -> String {
    let digits = match x.abs() {
        a if a >= 100.0 || a == 0.0 || x.fract() == 0.0 => 0,
        a if a >= 1.0 => 2,
        _ => 3,
    };
    format!("{x:.digits$} {unit}").trim_end().to_string()
}
