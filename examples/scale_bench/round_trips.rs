//! Redis round trips per endpoint over the window, counted twice: by the
//! operator itself (`workerpool_redis_round_trips_total{server}` on its
//! /metrics) and by the server (`total_reads_processed`, less the
//! driver's own commands).

use super::measure::Scrape;

const METRIC: &str = "workerpool_redis_round_trips_total";

/// One endpoint's round trips per second over the window.
pub struct EndpointTrips {
    /// `host:port`.
    pub endpoint: String,
    /// As the operator counted them (None: no series names this endpoint).
    pub operator_per_s: Option<f64>,
    /// As the server counted them.
    pub server_per_s: f64,
}

/// `host:port` of `redis[s]://[user:pass@]host:port[/db]`.
fn host_port(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest)
}

/// `server_reads[e]` is endpoint e's `total_reads_processed` delta and
/// `driver_reads[e]` the driver's own commands to it in the window.
pub fn per_endpoint(
    urls: &[String],
    a: &Scrape,
    b: &Scrape,
    server_reads: &[u64],
    driver_reads: &[u64],
    elapsed_s: f64,
) -> Vec<EndpointTrips> {
    let before = a.by_label(METRIC, "server");
    let after = b.by_label(METRIC, "server");
    urls.iter()
        .enumerate()
        .map(|(e, url)| {
            let endpoint = host_port(url).to_string();
            let ours: Vec<f64> = after
                .iter()
                .filter(|(server, _)| host_port(server) == endpoint)
                .map(|(server, v)| v - before.get(server).copied().unwrap_or(0.0))
                .collect();
            let server = server_reads.get(e).copied().unwrap_or(0);
            let driver = driver_reads.get(e).copied().unwrap_or(0);
            EndpointTrips {
                endpoint,
                operator_per_s: (!ours.is_empty()).then(|| ours.iter().sum::<f64>() / elapsed_s),
                server_per_s: server.saturating_sub(driver) as f64 / elapsed_s,
            }
        })
        .collect()
}

/// `127.0.0.1:6379 operator 1.0/s (1.0/tick) server 1.0/s (1.0/tick); ...`
pub fn describe(trips: &[EndpointTrips], interval_s: f64) -> String {
    let fmt = |per_s: f64| format!("{per_s:.1}/s ({:.1}/tick)", per_s * interval_s);
    trips
        .iter()
        .map(|t| {
            let ours = t.operator_per_s.map_or("n/a (no series)".into(), fmt);
            format!(
                "{} operator {ours} server {}",
                t.endpoint,
                fmt(t.server_per_s)
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// The busiest endpoint by the operator's own count (None: no series).
pub fn busiest_operator_per_s(trips: &[EndpointTrips]) -> Option<f64> {
    trips
        .iter()
        .filter_map(|t| t.operator_per_s)
        .max_by(f64::total_cmp)
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn operator_and_server_counts_pair_up_by_host_and_port() {
        let a = Scrape::parse(
            "workerpool_redis_round_trips_total{server=\"redis://127.0.0.1:7/0\"} 10\n",
        );
        let b = Scrape::parse(
            "workerpool_redis_round_trips_total{server=\"redis://127.0.0.1:7/0\"} 30\n",
        );
        let urls = [
            "redis://127.0.0.1:7".to_string(),
            "redis://127.0.0.1:8".to_string(),
        ];
        let t = per_endpoint(&urls, &a, &b, &[50, 4], &[10, 0], 10.0);
        assert_eq!(t[0].endpoint, "127.0.0.1:7");
        assert_eq!(t[0].operator_per_s, Some(2.0));
        assert_eq!(t[0].server_per_s, 4.0);
        assert_eq!(t[1].operator_per_s, None);
        assert_eq!(busiest_operator_per_s(&t), Some(2.0));
    }
}
