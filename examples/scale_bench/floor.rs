//! The raw floor: the same N LLENs per tick with nothing else around them
//! (a minimal tokio loop, one multiplexed connection per endpoint, by
//! default one explicit pipeline of all its LLENs per tick), in its own
//! process so its CPU is its own; and `redis-benchmark` sending as many
//! LLENs pipelined, flat out.

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use serde::{Deserialize, Serialize};

use super::measure;

#[derive(Parser, Debug)]
struct FloorArgs {
    #[arg(long, value_delimiter = ',')]
    urls: Vec<String>,
    #[arg(long)]
    prefix: String,
    #[arg(long)]
    pools: usize,
    #[arg(long)]
    interval_ms: u64,
    #[arg(long)]
    seconds: u64,
    /// `pipe`: one explicit pipeline per endpoint per tick; `concurrent`:
    /// N concurrent commands on the multiplexed connection.
    #[arg(long, default_value = "pipe")]
    mode: String,
}

#[derive(Serialize, Deserialize, Debug)]
pub struct FloorResult {
    pub llens: u64,
    pub cpu_s: f64,
    pub wall_s: f64,
    /// Time to get all N answers of one tick, p99.
    pub tick_p99_s: f64,
}

/// `scale_bench __floor ...`
pub fn child_main(argv: &[String]) -> anyhow::Result<()> {
    let a = FloorArgs::parse_from(std::iter::once("floor".to_string()).chain(argv.iter().cloned()));
    let rt = tokio::runtime::Runtime::new()?;
    let r = rt.block_on(async move {
        let mut conns = Vec::new();
        for u in &a.urls {
            let config = redis::AsyncConnectionConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(10)))
                .set_response_timeout(None);
            conns.push(
                redis::Client::open(u.as_str())?
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            );
        }
        let keys: Vec<String> = (0..a.pools)
            .map(|i| format!("{}:q-{i}", a.prefix))
            .collect();
        let k = conns.len();
        let pipelined = a.mode == "pipe";
        let round = |conns: Vec<redis::aio::MultiplexedConnection>| {
            let keys = &keys;
            async move {
                if pipelined {
                    // One explicit pipeline per endpoint: one round trip each.
                    let futs = conns.into_iter().enumerate().map(|(e, mut c)| async move {
                        let mut p = redis::pipe();
                        for key in keys.iter().skip(e).step_by(k) {
                            p.cmd("LLEN").arg(key);
                        }
                        p.query_async::<Vec<i64>>(&mut c).await
                    });
                    futures::future::join_all(futs)
                        .await
                        .into_iter()
                        .map(|r| r.map_or(0, |v| v.len()))
                        .sum::<usize>()
                } else {
                    // N concurrent single commands on the shared connection.
                    let futs = (0..keys.len()).map(|i| {
                        let mut c = conns[i % k].clone();
                        async move {
                            redis::cmd("LLEN")
                                .arg(&keys[i])
                                .query_async::<i64>(&mut c)
                                .await
                        }
                    });
                    futures::future::join_all(futs)
                        .await
                        .iter()
                        .filter(|r| r.is_ok())
                        .count()
                }
            }
        };
        round(conns.clone()).await;
        let cpu0 = measure::proc_cpu_seconds(std::process::id())?;
        let t0 = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(a.interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut llens = 0u64;
        let mut tick_times = Vec::new();
        while t0.elapsed() < Duration::from_secs(a.seconds) {
            tick.tick().await;
            let s = Instant::now();
            let done = round(conns.clone()).await;
            tick_times.push(s.elapsed());
            llens += done as u64;
        }
        let wall_s = t0.elapsed().as_secs_f64();
        let cpu_s = measure::proc_cpu_seconds(std::process::id())? - cpu0;
        tick_times.sort();
        let tick_p99_s = measure::percentile(&tick_times, 0.99).map_or(0.0, |d| d.as_secs_f64());
        anyhow::Ok(FloorResult {
            llens,
            cpu_s,
            wall_s,
            tick_p99_s,
        })
    })?;
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

/// Runs the floor loop in a child process and reads its result.
pub async fn run_child(
    urls: &[String],
    prefix: &str,
    pools: usize,
    interval: Duration,
    seconds: u64,
    mode: &str,
) -> anyhow::Result<FloorResult> {
    let mut cmd = tokio::process::Command::new(std::env::current_exe()?);
    cmd.arg("__floor")
        .arg("--urls")
        .arg(urls.join(","))
        .arg("--prefix")
        .arg(prefix)
        .arg("--pools")
        .arg(pools.to_string())
        .arg("--interval-ms")
        .arg(interval.as_millis().to_string())
        .arg("--seconds")
        .arg(seconds.to_string())
        .arg("--mode")
        .arg(mode);
    let out = cmd.output().await.context("floor child")?;
    anyhow::ensure!(
        out.status.success(),
        "floor child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8_lossy(&out.stdout);
    Ok(serde_json::from_str(line.trim())?)
}

/// `redis-benchmark` pipelining `count` LLENs on one connection; a
/// one-phrase summary with its CPU (from the shell's `times`).
pub fn redis_benchmark(url: &str, key: &str, count: u64) -> String {
    let Some((host, port)) = url
        .strip_prefix("redis://")
        .and_then(|hp| hp.split('/').next())
        .and_then(|hp| hp.rsplit_once(':'))
    else {
        return "redis-benchmark: cannot parse URL".into();
    };
    let count = count.max(1000);
    let script = format!(
        "redis-benchmark -h {host} -p {port} -c 1 -P 1000 -n {count} -q LLEN '{key}' >/dev/null 2>&1 || exit 3; times"
    );
    let t = Instant::now();
    let out = match Command::new("bash").arg("-c").arg(&script).output() {
        Ok(o) if o.status.success() => o,
        _ => return "redis-benchmark: not run (missing or failed)".into(),
    };
    let wall = t.elapsed().as_secs_f64();
    // `times`: line 1 the shell, line 2 its children: "0m0.120s 0m0.030s".
    let text = String::from_utf8_lossy(&out.stdout);
    let cpu: f64 = text
        .lines()
        .nth(1)
        .map(|l| l.split_whitespace().map(parse_times).sum())
        .unwrap_or(f64::NAN);
    format!(
        "redis-benchmark -c 1 -P 1000: {count} LLEN in {wall:.2}s, {:.4} cpu-s/1000 LLEN",
        1000.0 * cpu / count as f64
    )
}

fn parse_times(s: &str) -> f64 {
    let s = s.trim_end_matches('s');
    match s.split_once('m') {
        Some((m, sec)) => {
            m.parse::<f64>().unwrap_or(0.0) * 60.0 + sec.parse::<f64>().unwrap_or(0.0)
        }
        None => 0.0,
    }
}
