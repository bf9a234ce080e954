//! Reading numbers: /proc, the operator's /metrics text, percentiles.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

/// `/proc/loadavg`'s 1-minute load.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "?".into())
}

fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// User + system CPU seconds of a process (all its threads).
pub fn proc_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces): state is 3rd,
    // utime 14th, stime 15th.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| anyhow::anyhow!("bad /proc/{pid}/stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    let stime: f64 = f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
    Ok((utime + stime) / clock_ticks())
}

/// Machine-wide (busy, total) jiffies from `/proc/stat`.
pub fn machine_cpu() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(line) = stat.lines().find(|l| l.starts_with("cpu ")) else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle and iowait are the 4th and 5th fields.
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

pub fn busy_percent(a: (u64, u64), b: (u64, u64)) -> f64 {
    let total = b.1.saturating_sub(a.1);
    if total == 0 {
        return 0.0;
    }
    100.0 * b.0.saturating_sub(a.0) as f64 / total as f64
}

pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Open file descriptors (sockets included) of a process.
pub fn proc_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

pub fn proc_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count())
}

pub struct Rss {
    /// Peak resident set (VmHWM), KiB.
    pub hwm: u64,
    /// Current resident set (VmRSS), KiB.
    pub rss: u64,
}

pub fn proc_rss_kib(pid: u32) -> anyhow::Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(Rss {
        hwm: field("VmHWM:"),
        rss: field("VmRSS:"),
    })
}

/// One scrape of the Prometheus/OpenMetrics text.
pub struct Scrape {
    samples: Vec<(String, f64)>,
    /// Size of the exposition and time to fetch it.
    pub bytes: usize,
    pub took: Duration,
}

impl Scrape {
    pub fn parse(text: &str) -> Scrape {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect();
        Scrape {
            samples,
            bytes: 0,
            took: Duration::ZERO,
        }
    }

    /// A series without labels.
    pub fn counter(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, v)| *v)
    }

    /// The sum over every series of a metric.
    pub fn sum(&self, name: &str) -> f64 {
        self.samples
            .iter()
            .filter(|(n, _)| n == name || n.starts_with(&format!("{name}{{")))
            .map(|(_, v)| v)
            .sum()
    }

    /// Every series of a metric, keyed by the value of its `label` (series
    /// without that label are left out; equal values are summed).
    pub fn by_label(&self, name: &str, label: &str) -> BTreeMap<String, f64> {
        let prefix = format!("{name}{{");
        let mut out = BTreeMap::new();
        for (series, v) in &self.samples {
            let Some(labels) = series.strip_prefix(&prefix) else {
                continue;
            };
            if let Some(value) = label_value(labels, label) {
                *out.entry(value).or_insert(0.0) += v;
            }
        }
        out
    }

    /// `(le, cumulative count)` of an unlabelled histogram.
    pub fn histogram(&self, name: &str) -> Vec<(f64, f64)> {
        let prefix = format!("{name}_bucket{{le=\"");
        let mut out: Vec<(f64, f64)> = self
            .samples
            .iter()
            .filter_map(|(n, v)| {
                let le = n.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().ok()?
                };
                Some((le, *v))
            })
            .collect();
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }
}

/// The value of `label` in `a="x",label="y"}` (the text after `{`).
fn label_value(labels: &str, label: &str) -> Option<String> {
    let mut rest = labels;
    loop {
        let (key, after) = rest.split_once("=\"")?;
        let key = key.trim_start_matches([',', ' ']);
        // Values are Prometheus-escaped: skip `\"` when finding the end.
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                '\\' if !escaped => escaped = true,
                '"' if !escaped => {
                    end = Some(i);
                    break;
                }
                _ => escaped = false,
            }
        }
        let end = end?;
        if key == label {
            return Some(after[..end].to_string());
        }
        rest = &after[end + 1..];
    }
}

/// RSS growth once the process has warmed up: from the sample at
/// `from_s` seconds (the first at or after it) to the largest after it,
/// and to the last, in MiB. `trace` is (seconds into the window, KiB).
pub fn rss_growth_after(trace: &[(u64, u64)], from_s: u64) -> Option<(f64, f64)> {
    let start = trace.iter().position(|(t, _)| *t >= from_s)?;
    let base = trace[start].1 as f64;
    let after = &trace[start..];
    let max = after.iter().map(|s| s.1).max()? as f64;
    let last = after.last()?.1 as f64;
    Some(((max - base) / 1024.0, (last - base) / 1024.0))
}

/// A histogram's counts between two scrapes.
pub struct Histogram {
    buckets: Vec<(f64, f64)>,
}

impl Histogram {
    pub fn delta(a: &[(f64, f64)], b: &[(f64, f64)]) -> Histogram {
        let before: HashMap<u64, f64> = a.iter().map(|(le, c)| (le.to_bits(), *c)).collect();
        Histogram {
            buckets: b
                .iter()
                .map(|(le, c)| (*le, c - before.get(&le.to_bits()).copied().unwrap_or(0.0)))
                .collect(),
        }
    }

    fn total(&self) -> f64 {
        self.buckets.last().map_or(0.0, |b| b.1)
    }

    /// Share of observations at most `le` (which must be a bucket bound).
    pub fn share_at_most(&self, le: f64) -> f64 {
        let total = self.total();
        if total == 0.0 {
            return 0.0;
        }
        self.buckets
            .iter()
            .rfind(|(b, _)| *b <= le + 1e-9)
            .map_or(0.0, |b| b.1 / total)
    }

    /// Quantile, linear inside the bucket; None without data, infinity past
    /// the last finite bound.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.total();
        if total == 0.0 {
            return None;
        }
        let want = q * total;
        let mut prev = (0.0, 0.0);
        for &(le, c) in &self.buckets {
            if c >= want {
                if le.is_infinite() {
                    return Some(f64::INFINITY);
                }
                let in_bucket = c - prev.1;
                let frac = if in_bucket > 0.0 {
                    (want - prev.1) / in_bucket
                } else {
                    1.0
                };
                return Some(prev.0 + frac * (le - prev.0));
            }
            prev = (le, c);
        }
        Some(f64::INFINITY)
    }
}

pub fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

/// Percentile counting `missed` samples as longer than any seen (None = beyond).
pub fn percentile_with_missed(sorted: &[Duration], missed: usize, q: f64) -> Option<Duration> {
    let total = sorted.len() + missed;
    if total == 0 {
        return None;
    }
    let i = ((q * total as f64).ceil() as usize).clamp(1, total) - 1;
    sorted.get(i).copied().or(Some(Duration::MAX))
}

pub fn fmt_secs(s: Option<f64>) -> String {
    match s {
        None => "n/a".into(),
        Some(s) if s.is_infinite() => ">16s".into(),
        Some(s) if s < 1.0 => format!("{:.0}ms", s * 1000.0),
        Some(s) => format!("{s:.2}s"),
    }
}

pub fn fmt_dur(d: Option<Duration>) -> String {
    match d {
        Some(Duration::MAX) => "never".into(),
        d => fmt_secs(d.map(|d| d.as_secs_f64())),
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn labelled_counters_are_keyed_by_their_label() {
        let s = Scrape::parse(
            "# TYPE rt counter\n\
             rt_total{server=\"redis://127.0.0.1:1/0\"} 5\n\
             rt_total{kind=\"a\",server=\"redis://127.0.0.1:2/0\"} 7\n\
             rt_total 9\n",
        );
        let m = s.by_label("rt_total", "server");
        assert_eq!(m.len(), 2);
        assert_eq!(m["redis://127.0.0.1:1/0"], 5.0);
        assert_eq!(m["redis://127.0.0.1:2/0"], 7.0);
    }

    #[test]
    fn rss_growth_counts_from_the_sample_at_the_start() {
        let trace = [(0, 1024), (120, 2048), (130, 5120), (140, 3072)];
        assert_eq!(rss_growth_after(&trace, 120), Some((3.0, 1.0)));
        assert_eq!(rss_growth_after(&trace, 200), None);
    }
}
