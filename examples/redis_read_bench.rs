//! How fast the Redis source reads many lists at once through its one
//! shared connection (DESIGN.md 3.1), against a floor: `redis-benchmark`
//! pipelining the same `LLEN`s on one connection (or, without
//! redis-benchmark, the redis crate pipelining them on one connection).
//!
//! ```text
//! cargo run --release --example redis_read_bench -- --keys 5000 --rounds 50
//! cargo run --release --example redis_read_bench -- --keys 5000 --rounds 50 --cluster 3
//! ```
//!
//! With `--cluster N` the bench starts a Redis Cluster of N masters
//! (`redis-cli --cluster create`), spreads the lists over it, reads them
//! through `redis.cluster` sources, and compares with `redis-benchmark
//! --cluster` pipelining the same number of `LLEN`s across the same nodes.
//!
//! Each round reads `--keys` list lengths concurrently, each through its own
//! source built by the real `Sources::build` (as `--keys` WorkerPools naming
//! one Redis would), all sharing one connection, driven unordered as the
//! poll engine drives a slot's polls. Uses `$REDIS_URL`, or starts a
//! `redis-server` of its own on a free port. Ours and the floor run in
//! alternating blocks (the machine's speed drifts over a run), each over a
//! fifth of the rounds. Prints one line for ours (the median round), the
//! requests ours sent per round and its CPU (`Sources::redis_round_trips`:
//! reads issued together leave as pipelines of up to about 1,000
//! commands), one line for the floor (the median block), and their ratio.
//!
//! `--celery` measures something else: what counting Celery's in-flight
//! work costs Redis (see `redis_read_bench/celery.rs`):
//!
//! ```text
//! cargo run --example redis_read_bench -- --celery --pools 20 --in-flight 10000 --seconds 20
//! ```

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::json;
use workerpool_operator::api::Trigger;
use workerpool_operator::sources::{MetricSource, SourceError, Sources};

// The shipped binary's allocator (src/main.rs): the reads are measured as
// the operator makes them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// A crate root resolves `mod x;` next to itself, hence the path.
#[path = "redis_read_bench/celery.rs"]
mod celery;
#[path = "redis_read_bench/cluster_bench.rs"]
mod cluster_bench;

#[derive(Parser)]
#[command(about = "Time N concurrent list reads through the shared Redis source connection")]
struct Args {
    /// Lists read per round (one source each).
    #[arg(long, default_value_t = 5000)]
    keys: usize,
    /// Timed rounds (after one warm-up round).
    #[arg(long, default_value_t = 50)]
    rounds: usize,
    /// The Redis to read; without it a redis-server is started here.
    #[arg(long, env = "REDIS_URL")]
    redis_url: Option<String>,
    /// Celery mode: Redis's time on counting in-flight work (always on a
    /// redis-server of its own: it flushes the database and resets stats).
    #[arg(long)]
    celery: bool,
    /// Celery mode: WorkerPools polling together.
    #[arg(long, default_value_t = 20)]
    pools: usize,
    /// Celery mode: messages in kombu's `unacked` hash.
    #[arg(long, default_value_t = 10_000)]
    in_flight: usize,
    /// Celery mode: size of each in-flight message.
    #[arg(long, default_value_t = 1024)]
    message_bytes: usize,
    /// Celery mode: seconds of polling once a second.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Celery mode: messages taken and acknowledged per second meanwhile.
    #[arg(long, default_value_t = 0)]
    churn: u64,
    /// Celery mode: read as an ACL user denied `ZRANGE` (the old method).
    #[arg(long)]
    deny_index: bool,
    /// Read from a Redis Cluster of this many masters, started here.
    #[arg(long)]
    cluster: Option<usize>,
}

/// A redis-server started by the bench, killed on drop.
struct OwnRedis(Child);

impl Drop for OwnRedis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_redis() -> anyhow::Result<(String, OwnRedis)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    start_redis_with(port, &[])
}

/// A redis-server on `port` with `extra` arguments, once it answers.
fn start_redis_with(port: u16, extra: &[String]) -> anyhow::Result<(String, OwnRedis)> {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .args(extra)
        .stdout(Stdio::null())
        .spawn()
        .context("no REDIS_URL and no redis-server to start (apt-get install redis-server)")?;
    let own = OwnRedis(child);
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while redis::Client::open(url.as_str())?
        .get_connection_with_timeout(Duration::from_millis(200))
        .is_err()
    {
        if Instant::now() > deadline {
            bail!("redis-server on port {port} did not answer within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((url, own))
}

/// CPU time used so far by every thread of this process (Linux
/// `/proc/self/task/*/schedstat`, in ns); `None` elsewhere. The rounds'
/// CPU is steadier than their wall time on a busy machine.
fn process_cpu() -> Option<Duration> {
    let mut ns: u64 = 0;
    for task in std::fs::read_dir("/proc/self/task").ok()? {
        let stat = std::fs::read_to_string(task.ok()?.path().join("schedstat")).ok()?;
        ns += stat.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(ns))
}

/// Time per round: median and mean.
fn summary(rounds: &[Duration]) -> (Duration, Duration) {
    let mut sorted = rounds.to_vec();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    let mean = rounds.iter().sum::<Duration>() / u32::try_from(rounds.len()).unwrap_or(u32::MAX);
    (median, mean)
}

/// Reads every source once, concurrently, and returns each source's value
/// in `sources`' order. Unordered, as the operator's poll engine reads the
/// pools of one slot (src/controller/engine.rs): `join_all` would also keep
/// the answers in order, a heap the operator does not have.
async fn read_round(sources: &[Arc<dyn MetricSource>]) -> Vec<Result<f64, SourceError>> {
    use futures::StreamExt;
    let mut reads: futures::stream::FuturesUnordered<_> = sources
        .iter()
        .enumerate()
        .map(|(i, s)| async move { (i, s.read().await) })
        .collect();
    let mut values = Vec::with_capacity(sources.len());
    values.resize_with(sources.len(), || Ok(f64::NAN));
    while let Some((i, v)) = reads.next().await {
        values[i] = v;
    }
    values
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

/// The floor with redis-benchmark: `keys`-deep pipelines of LLEN on random
/// keys of the same set, one connection. None if it is not installed.
fn redis_benchmark(
    url: &str,
    prefix: &str,
    keys: usize,
    rounds: usize,
) -> anyhow::Result<Option<Duration>> {
    let out = match Command::new("redis-benchmark")
        .args(["-u", url, "-c", "1", "-P", &keys.to_string()])
        .args([
            "-n",
            &(keys * rounds).to_string(),
            "-r",
            &keys.to_string(),
            "--csv",
        ])
        .args(["LLEN", &format!("{prefix}:__rand_int__")])
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).context("running redis-benchmark"),
    };
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "redis-benchmark failed: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // "test","rps",...  then  "LLEN ...","123456.78",...
    let rps: f64 = text
        .lines()
        .filter(|l| l.starts_with("\"LLEN"))
        .find_map(|l| l.split(',').nth(1))
        .map(|v| v.trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no LLEN rate in redis-benchmark output: {text}"))?;
    Ok(Some(Duration::from_secs_f64(keys as f64 / rps)))
}

/// The fallback floor: the redis crate pipelining `keys` LLENs per round
/// on one multiplexed connection.
async fn pipelined(url: &str, names: &[String], rounds: usize) -> anyhow::Result<Vec<Duration>> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut pipe = redis::pipe();
    for k in names {
        pipe.cmd("LLEN").arg(k);
    }
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..=rounds {
        let t0 = Instant::now();
        let v: Vec<i64> = pipe.query_async(&mut conn).await?;
        times.push(t0.elapsed());
        if v.len() != names.len() {
            bail!(
                "pipeline returned {} replies for {} keys",
                v.len(),
                names.len()
            );
        }
    }
    times.remove(0); // warm-up
    Ok(times)
}

/// Timings of ours and of the floor, taken in alternating blocks.
struct Measured {
    ours: Vec<Duration>,
    /// Requests (pipelines) ours sent, and the CPU it used, over `ours`.
    trips: u64,
    cpu: Option<Duration>,
    floor_name: String,
    /// The floor's time per round, one per block.
    floor: Vec<Duration>,
}

/// Blocks ours and the floor alternate in: the machine's speed drifts
/// over a run (a virtual machine's neighbours), and one floor measured
/// after all of ours moved the ratio by a third between runs.
const BLOCKS: usize = 5;

/// Reads every source `args.rounds` times (after one warm-up round),
/// checking each value, in [`BLOCKS`] blocks, each followed by the floor.
async fn measure(
    args: &Args,
    url: &str,
    prefix: &str,
    names: &[String],
    sources: &Sources,
    triggers: &[Arc<dyn MetricSource>],
) -> anyhow::Result<Measured> {
    check_round(&read_round(triggers).await, names, 0)?; // connects, warms up
    let mut m = Measured {
        ours: Vec::with_capacity(args.rounds),
        trips: 0,
        cpu: Some(Duration::ZERO),
        floor_name: format!("redis-benchmark -c 1 -P {} LLEN", args.keys),
        floor: Vec::with_capacity(BLOCKS),
    };
    let per_block = args.rounds.div_ceil(BLOCKS);
    let mut round = 1;
    while round <= args.rounds {
        let block = per_block.min(args.rounds + 1 - round);
        let (trips, cpu) = (sources.redis_round_trips(), process_cpu());
        for _ in 0..block {
            let t0 = Instant::now();
            let values = read_round(triggers).await;
            m.ours.push(t0.elapsed());
            check_round(&values, names, round)?;
            round += 1;
        }
        m.trips += sources.redis_round_trips() - trips;
        m.cpu = m
            .cpu
            .zip(process_cpu().zip(cpu))
            .map(|(sum, (after, before))| sum + after.saturating_sub(before));
        // Four times as many pipelines: redis-benchmark times a run in
        // whole milliseconds, ±5 % on ten pipelines of 5,000.
        let floor_rounds = block * 4;
        match redis_benchmark(url, prefix, args.keys, floor_rounds)? {
            Some(per_round) => m.floor.push(per_round),
            None => {
                m.floor_name = "redis crate pipeline (no redis-benchmark)".to_string();
                let times = pipelined(url, names, floor_rounds).await?;
                m.floor.push(summary(&times).0);
            }
        }
    }
    Ok(m)
}

/// Each list's length is its index modulo 10.
fn check_round(
    values: &[Result<f64, SourceError>],
    names: &[String],
    round: usize,
) -> anyhow::Result<()> {
    for (i, v) in values.iter().enumerate() {
        let v = v
            .as_ref()
            .map_err(|e| anyhow::anyhow!("round {round}, {}: {e}", names[i]))?;
        if *v != (i % 10) as f64 {
            bail!("round {round}: {} read {v}, want {}", names[i], i % 10);
        }
    }
    Ok(())
}

fn report(args: &Args, m: &Measured) {
    let (median, mean) = summary(&m.ours);
    let (floor, _) = summary(&m.floor);
    let per_read = |d: Duration| d.as_secs_f64() * 1e9 / args.keys as f64;
    let rounds = u32::try_from(args.rounds).unwrap_or(u32::MAX);
    println!(
        "ours:  {} sources, 1 shared connection: {} per {} reads (median of {} rounds; mean {}), {:.0} ns/read",
        args.keys,
        ms(median),
        args.keys,
        args.rounds,
        ms(mean),
        per_read(median)
    );
    println!(
        "ours:  {:.1} requests (pipelines) to Redis per round of {} reads, {} CPU per round (all threads)",
        m.trips as f64 / args.rounds as f64,
        args.keys,
        m.cpu.map_or_else(|| "?".to_string(), |c| ms(c / rounds)),
    );
    let blocks: Vec<String> = m.floor.iter().map(|d| ms(*d)).collect();
    println!(
        "floor: {}: {} per {} reads (median of {} blocks between ours: {}), {:.0} ns/read",
        m.floor_name,
        ms(floor),
        args.keys,
        m.floor.len(),
        blocks.join(", "),
        per_read(floor)
    );
    println!(
        "ratio: ours/floor = {:.2}",
        median.as_secs_f64() / floor.as_secs_f64()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if args.celery {
        let (url, _own) = start_redis()?;
        let o = celery::Options {
            pools: args.pools,
            in_flight: args.in_flight,
            message_bytes: args.message_bytes,
            seconds: args.seconds.max(1),
            churn: args.churn,
            deny_index: args.deny_index,
        };
        return celery::run(&url, &o).await;
    }
    if args.keys == 0 || args.rounds == 0 {
        bail!("--keys and --rounds must be at least 1");
    }
    if let Some(masters) = args.cluster {
        return cluster_bench::run(&args, masters).await;
    }
    let (url, _own) = match &args.redis_url {
        Some(u) => (u.clone(), None),
        None => {
            let (u, own) = start_redis()?;
            (u, Some(own))
        }
    };

    // The lists: length i % 10, names as redis-benchmark's __rand_int__ spells them.
    let prefix = format!("bench:{}", std::process::id());
    let names: Vec<String> = (0..args.keys)
        .map(|i| format!("{prefix}:{i:012}"))
        .collect();
    let mut conn = redis::Client::open(url.as_str())?
        .get_multiplexed_async_connection()
        .await?;
    let mut fill = redis::pipe();
    for (i, k) in names.iter().enumerate() {
        fill.cmd("DEL").arg(k).ignore();
        for _ in 0..i % 10 {
            fill.cmd("RPUSH").arg(k).arg("x").ignore();
        }
    }
    fill.query_async::<()>(&mut conn).await?;

    let sources = Sources::new();
    let triggers: Vec<Arc<dyn MetricSource>> = names
        .iter()
        .map(|k| {
            let t: Trigger = serde_json::from_value(json!({
                "redis": {"url": url, "list": k},
                "targetPerReplica": 1.0,
            }))?;
            Ok(sources.build(&t, &BTreeMap::new(), Duration::from_secs(10))?)
        })
        .collect::<anyhow::Result<_>>()?;

    let m = measure(&args, &url, &prefix, &names, &sources, &triggers).await?;
    if sources.redis_endpoints() != 1 {
        bail!("{} endpoints for one Redis", sources.redis_endpoints());
    }
    report(&args, &m);

    let mut clean = redis::pipe();
    for k in &names {
        clean.cmd("DEL").arg(k).ignore();
    }
    clean.query_async::<()>(&mut conn).await?;
    Ok(())
}
