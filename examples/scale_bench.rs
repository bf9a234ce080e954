//! Scale benchmark: the real operator against the in-repo Kubernetes API
//! emulator and real `redis-server`s, with N WorkerPools polling N lists
//! (or N queues of a task framework, `--measure celery|rq|arq|huey|bullmq`:
//! each queue written in that framework's own layout by the bench itself).
//!
//! ```sh
//! cargo run --release --example scale_bench -- --pools 5000 --interval-ms 1000 --seconds 60
//! cargo run --release --example scale_bench -- --pools 1000 --seconds 30 --measure bullmq
//! ```
//!
//! # How the processes are split (and why)
//! The operator must be measured alone (CPU, peak RSS), so it runs in its
//! own process: by default this same binary re-executed as `__operator
//! --kubeconfig ...` (which does exactly what `workerpool-operator run`
//! does, through the library, so it can never be a stale build of `src/`);
//! `--operator-bin target/release/workerpool-operator` runs the real binary
//! instead. The emulator runs inside this (driver) process, which lets the
//! driver see every write the moment the emulator receives it (its write
//! feed): reaction time is measured from the driver's depth change to the
//! `/scale` PATCH arriving at the emulator, with no watch in between.
//! The driver, the emulator and Redis share the machine's cores with the
//! operator; the driver's own CPU is printed so the load is visible.
//!
//! # What is measured (in a window after warm-up)
//! - polls/s: `workerpool_polls_total` delta vs N / interval.
//! - poll lag p50/p99 and the on-time share: `workerpool_poll_lag_seconds`
//!   delta, interpolated inside its buckets (1 ms doubling; "on time" =
//!   the 256 ms bucket, the closest to the 250 ms target).
//! - reaction p50/p99: depth change (just before the write is sent to
//!   Redis) to the first `/scale` PATCH of that pool's Deployment.
//! - operator CPU from `/proc/<pid>/stat`, peak RSS from `VmHWM`.
//! - Redis round trips per tick: the server's `total_reads_processed`
//!   (read events on client sockets, i.e. round trips; a pipeline bigger
//!   than 16 KiB counts as a few) minus the driver's own commands, per
//!   interval; LLEN (framework measures: EVALSHA) commands per tick from
//!   `INFO commandstats`.
//! - API writes/s from the emulator's write feed: `/scale` PATCHes, status
//!   writes, Events.
//! - Redis round trips per endpoint as the operator counted them itself
//!   (`workerpool_redis_round_trips_total{server}` delta), beside the
//!   server's count for the same endpoint.
//! - Writes lost: after the window, each pool whose depth changed must
//!   show its final replicas on its Deployment and in its status.
//! - API connections: the most the emulator had open at once (the
//!   driver's own client is gone before the operator starts);
//!   `--write-latency-ms` delays every write to see what a slow API
//!   server costs.
//! - RSS every 10 s; from 180 s on, its growth after minute 2.
//!
//! The last lines judge the run against #15's targets for its N
//! (`targets.rs`).
//!
//! The depth schedule flips a steady trickle of pools (`--changes-per-s`,
//! default N/100) between 20 and 50 items (2 and 5 replicas at 10 per
//! replica), at times spread over the interval; each flip must cause one
//! `/scale` PATCH.
//!
//! Pool phases: pools are created after the operator is ready, spread over
//! `--create-spread-ms` (default: one interval), as pools created over time
//! would be; `--create-spread-ms 0` creates them all before the operator
//! starts (an operator restart: every pool due at the same instant).
//!
//! The second line is the raw floor: the same N LLENs per tick sent by a
//! minimal tokio loop (one multiplexed connection per endpoint, all N at
//! once), in its own process, and `redis-benchmark` pipelining the same
//! number of LLENs flat out; the ratio is operator CPU per 1,000 polls to
//! the loop's CPU per 1,000 LLENs.

// The allocator of the shipped binary (src/main.rs), so that the operator
// this binary runs (`__operator`) is measured as shipped.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

// A crate root resolves `mod x;` next to itself, hence the paths.
#[path = "scale_bench/changer.rs"]
mod changer;
#[path = "scale_bench/floor.rs"]
mod floor;
#[path = "scale_bench/layouts.rs"]
mod layouts;
#[path = "scale_bench/measure.rs"]
mod measure;
#[path = "scale_bench/operator.rs"]
mod operator;
#[path = "scale_bench/redis_fleet.rs"]
mod redis_fleet;
#[path = "scale_bench/round_trips.rs"]
mod round_trips;
#[path = "scale_bench/settle.rs"]
mod settle;
#[path = "scale_bench/snapshot.rs"]
mod snapshot;
#[path = "scale_bench/targets.rs"]
mod targets;
#[path = "scale_bench/write_feed.rs"]
mod write_feed;

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Parser;
use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, PostParams};
use kube_emulator::{Emulator, Verb};
use serde_json::json;

use layouts::Measure;
use measure::Histogram;
use operator::OperatorProcess;
use redis_fleet::{Fleet, ServerStats};
use snapshot::Snapshot;
use write_feed::Tally;

#[derive(Parser, Debug, Clone)]
#[command(about = "Scale benchmark of workerpool-operator against the API emulator and real Redis")]
struct Args {
    /// WorkerPools (each with its own Deployment and Redis list).
    #[arg(long, default_value_t = 1000)]
    pools: usize,
    /// Polling interval (pollingIntervalSeconds is whole seconds: a multiple of 1000).
    #[arg(long, default_value_t = 1000)]
    interval_ms: u64,
    /// Length of the measured window.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// redis-servers to start (on free ports); pools are spread over them.
    /// With REDIS_URL set (comma-separated URLs), those are used instead.
    #[arg(long, default_value_t = 1)]
    redis_endpoints: usize,
    /// Depth changes per second (default N/100, at least 1).
    #[arg(long)]
    changes_per_s: Option<f64>,
    /// Create the pools over this long once the operator is ready (default:
    /// one interval); 0 creates them before the operator starts.
    #[arg(long)]
    create_spread_ms: Option<u64>,
    /// Seconds between the last pool created and the measured window.
    #[arg(long, default_value_t = 5)]
    warmup_s: u64,
    /// Each pool's trigger: `list`, or a framework's measure on a queue the
    /// bench writes in that framework's layout (its waiting jobs flip
    /// between the two depths; its other keys are empty).
    #[arg(long, value_enum, default_value_t = Measure::List)]
    measure: Measure,
    /// The operator's --max-api-writes (its default is 26).
    #[arg(long, default_value_t = 26)]
    max_api_writes: u16,
    /// Run this binary with `run ...` instead of re-executing this one.
    #[arg(long)]
    operator_bin: Option<PathBuf>,
    /// RUST_LOG of the operator (the binary's default when unset).
    #[arg(long, default_value = "info,kube_lease_manager=warn")]
    operator_log_level: String,
    /// Seconds of the raw-floor loop (default min(seconds, 15)); 0 skips it.
    #[arg(long)]
    floor_seconds: Option<u64>,
    /// Raw floor: `pipe` (one explicit pipeline per endpoint per tick) or
    /// `concurrent` (N concurrent LLENs on the multiplexed connection).
    #[arg(long, default_value = "pipe")]
    floor_mode: String,
    /// Where the operator's log goes (default: a temporary file, removed).
    #[arg(long)]
    operator_log: Option<PathBuf>,
    /// Slow API server: the emulator delays every write (create, update,
    /// patch, delete) by this long; the report adds the most connections
    /// the operator held open at once and the slow-API targets.
    #[arg(long, default_value_t = 0)]
    write_latency_ms: u64,
}

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    match argv.get(1).map(String::as_str) {
        Some("__operator") => return operator::child_main(&argv[2..]),
        Some("__floor") => return floor::child_main(&argv[2..]),
        _ => {}
    }
    let args = Args::parse();
    if args.interval_ms < 1000 || args.interval_ms % 1000 != 0 {
        bail!("--interval-ms must be a multiple of 1000 (pollingIntervalSeconds is whole seconds)");
    }
    if args.pools == 0 {
        bail!("--pools must be at least 1");
    }
    let _ = rustls::crypto::ring::default_provider().install_default();
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(drive(args))
}

const NS: &str = "bench";
const PER_REPLICA: u64 = 10;
const LOW: u64 = 20;
const HIGH: u64 = 50;

async fn drive(args: Args) -> anyhow::Result<()> {
    let n = args.pools;
    let interval = Duration::from_millis(args.interval_ms);
    let load_start = measure::loadavg();
    let tmp = tempfile::tempdir()?;
    let pid = std::process::id();
    // The raw floor's lists (the pools' own with `--measure list`).
    let prefix = format!("scale_bench:{pid}");
    let queues: Vec<String> = (0..n).map(|i| args.measure.queue(pid, i)).collect();
    let depth_kind = args.measure.depth_kind();

    // 1. Redis: K servers (or REDIS_URL), every queue at the low depth.
    let fleet = Fleet::start(args.redis_endpoints, tmp.path())?;
    let k = fleet.len();
    let endpoint_of = |i: usize| i % k;
    let keys: Vec<String> = queues.iter().map(|q| args.measure.depth_key(q)).collect();
    let mut depth = vec![LOW; n];
    let mut conns = fleet.connect().await?;
    let init: Vec<(usize, u64)> = (0..n).map(|i| (i, LOW)).collect();
    fleet
        .set_depths(&mut conns, &init, &keys, depth_kind, endpoint_of)
        .await?;

    // 2. The emulator, the CRD, Deployments at the replicas the depth wants.
    let emu = start_emulator(n, Duration::from_millis(args.write_latency_ms)).await?;

    // 3. Watch the emulator's writes from now on.
    let tally = write_feed::spawn(&emu);

    // 4. Pools: all before the operator starts, or spread once it is ready.
    let spread = Duration::from_millis(args.create_spread_ms.unwrap_or(args.interval_ms));
    let pool_json = |i: usize| {
        let trigger = args.measure.trigger(&queues[i]);
        pool(i, &fleet.urls()[endpoint_of(i)], trigger, interval)
    };
    if spread.is_zero() {
        create_pools(&emu, n, Duration::ZERO, &pool_json).await?;
    }
    let kubeconfig = tmp.path().join("kubeconfig.yaml");
    emu.write_kubeconfig(&kubeconfig)?;
    let log_path = args
        .operator_log
        .clone()
        .unwrap_or_else(|| tmp.path().join("operator.log"));
    let mut op = OperatorProcess::spawn(
        args.operator_bin.as_deref(),
        &kubeconfig,
        args.max_api_writes,
        &args.operator_log_level,
        &log_path,
    )?;
    op.wait_ready(Duration::from_secs(120)).await?;
    let started = Instant::now();
    if !spread.is_zero() {
        create_pools(&emu, n, spread, &pool_json).await?;
    }
    eprintln!(
        "scale_bench: operator pid {} ready; {n} pools in place {:.1?} after; warming up {} s",
        op.pid(),
        started.elapsed(),
        args.warmup_s
    );
    tokio::time::sleep(Duration::from_secs(args.warmup_s)).await;

    // 5. The measured window.
    let a = Snapshot::before(&op, &fleet, &mut conns).await?;
    let t0 = Instant::now();
    {
        let mut t = tally.lock().unwrap();
        t.measuring = true;
        t.t0 = Some(t0);
    }
    let plan = changer::Plan {
        rate: args.changes_per_s.unwrap_or((n as f64 / 100.0).max(1.0)),
        length: Duration::from_secs(args.seconds),
        operator_pid: op.pid(),
    };
    let queues_at = changer::Queues {
        fleet: &fleet,
        keys: &keys,
        kind: depth_kind,
    };
    let window = changer::run(&queues_at, &mut conns, &mut depth, &tally, &plan, t0).await?;
    let changer::Window {
        driver_cmds,
        changes,
        changed: changed_pools,
        rss_trace,
    } = window;
    let b = Snapshot::after(&op, &fleet, &mut conns).await?;
    let elapsed = b
        .operator_cpu_at
        .saturating_duration_since(t0)
        .as_secs_f64();
    let fds = measure::proc_fds(op.pid());
    let threads = measure::proc_threads(op.pid());
    let (status_peak_s, status_median_s) =
        busiest_and_median_second(&tally.lock().unwrap(), args.seconds);
    let writes = {
        let mut t = tally.lock().unwrap();
        t.measuring = false;
        (
            t.scale_patches,
            t.status_writes,
            t.events,
            t.other_writes,
            t.failed_writes,
            t.unexpected_scales,
            t.lost,
        )
    };
    // Reactions to the last changes may land after the window.
    let (reactions, missed) = wait_reactions(&tally, interval + Duration::from_secs(3)).await;
    print_diagnostics(&tally.lock().unwrap(), t0, &rss_trace, &emu);
    let want: Vec<(usize, u64)> = (0..n)
        .filter(|&i| changed_pools[i])
        .map(|i| (i, depth[i] / PER_REPLICA))
        .collect();
    let settle_within = 3 * interval + Duration::from_secs(5);
    let writes_seen = || tally.lock().unwrap().writes_seen;
    let (unsettled, waited) =
        settle::wait_settled(&emu, NS, &want, settle_within, writes_seen).await;
    let connections = emu.connections();
    let rss_final = measure::proc_rss_kib(op.pid())?;
    let log_summary = op.stop(Duration::from_secs(10)).await;

    // 6. The raw floor.
    let floor = run_floor(&args, &fleet, &mut conns, &prefix).await?;
    fleet.cleanup(&mut conns, &keys, endpoint_of).await;

    // 7. Report.
    let ticks = elapsed / interval.as_secs_f64();
    let polls =
        b.metrics.counter("workerpool_polls_total") - a.metrics.counter("workerpool_polls_total");
    let expected = n as f64 * ticks;
    let lag = Histogram::delta(
        &a.metrics.histogram("workerpool_poll_lag_seconds"),
        &b.metrics.histogram("workerpool_poll_lag_seconds"),
    );
    let on_time = lag.share_at_most(0.256);
    let cpu = b.operator_cpu - a.operator_cpu;
    let rd = ServerStats::delta(&a.redis, &b.redis);
    // Driver's own reads: its EVALs, and the INFO that took snapshot B.
    let driver_reads: u64 = driver_cmds.iter().sum::<u64>() + k as u64;
    let op_reads = rd.reads.saturating_sub(driver_reads);
    // The command each read sends per pool (a framework's script).
    let read_cmd = args.measure.read_command();
    let reads = match read_cmd {
        "llen" => rd.llen_calls,
        _ => rd.evalsha_calls,
    };
    let read_cmd = read_cmd.to_uppercase();
    let driver_by_endpoint: Vec<u64> = driver_cmds.iter().map(|c| c + 1).collect();
    let trips = round_trips::per_endpoint(
        fleet.urls(),
        &a.metrics,
        &b.metrics,
        &rd.reads_by_endpoint,
        &driver_by_endpoint,
        elapsed,
    );
    let op_counted_per_tick: f64 =
        trips.iter().filter_map(|t| t.operator_per_s).sum::<f64>() * interval.as_secs_f64();
    let (scales, status, events, other, failed, unexpected, lost) = writes;
    let trig_err = b.metrics.sum("workerpool_trigger_errors_total")
        - a.metrics.sum("workerpool_trigger_errors_total");
    let scale_metric =
        b.metrics.sum("workerpool_scale_total") - a.metrics.sum("workerpool_scale_total");
    let status_metric = b.metrics.counter("workerpool_status_writes_total")
        - a.metrics.counter("workerpool_status_writes_total");
    let load_end = measure::loadavg();
    let per_s = |x: u64| x as f64 / elapsed;
    let interval_ms = args.interval_ms;
    let r50 = measure::percentile(&reactions, 0.50);
    let r99 = measure::percentile_with_missed(&reactions, missed, 0.99);

    println!(
        "scale_bench N={n} measure={:?} interval={interval_ms}ms redis={k} window={elapsed:.0}s changes={changes} load={load_start}->{load_end}: \
         polls/s {:.0}/{:.0} ({:.1}%), on time (lag<=256ms) {:.2}% | poll lag p50 {} p99 {} | \
         reaction p50 {} p99 {} (n={}, missed {missed}, unexpected scales {unexpected}) | \
         operator cpu {:.3} cores, {:.4} cpu-s/1000 polls | peak RSS {:.1} MiB (window start {:.1}, end {:.1}), {fds} fds, {threads} threads | \
         redis round trips/tick {:.1} server-counted, {op_counted_per_tick:.1} operator-counted ({read_cmd}/tick {:.0}, reads/{read_cmd} {:.3}) | \
         api writes/s: scale {:.1} status {:.1} (beyond scales {:.1}; N/30={:.1}; busiest second {status_peak_s}, median second {status_median_s}) events {:.1} other {:.1} failed {failed} lost {lost} | \
         metrics: scale {scale_metric:.0} status {status_metric:.0} trigger errors {trig_err:.0}, /metrics {:.0} KiB in {:.0?} | \
         driver+emulator cpu {:.2} cores, machine busy {:.0}% of {} cpus | operator log: {}",
        args.measure,
        polls / elapsed,
        expected / elapsed,
        100.0 * polls / expected,
        100.0 * on_time,
        measure::fmt_secs(lag.quantile(0.50)),
        measure::fmt_secs(lag.quantile(0.99)),
        measure::fmt_dur(r50),
        measure::fmt_dur(r99),
        reactions.len(),
        cpu / elapsed,
        1000.0 * cpu / polls.max(1.0),
        b.rss.hwm as f64 / 1024.0,
        a.rss.rss as f64 / 1024.0,
        rss_final.rss as f64 / 1024.0,
        op_reads as f64 / ticks,
        reads as f64 / ticks,
        op_reads as f64 / (reads.max(1)) as f64,
        per_s(scales),
        per_s(status),
        per_s(status.saturating_sub(scales)),
        n as f64 / 30.0,
        per_s(events),
        per_s(other),
        b.metrics.bytes as f64 / 1024.0,
        b.metrics.took,
        (b.driver_cpu - a.driver_cpu) / elapsed,
        measure::busy_percent(a.machine, b.machine),
        measure::cpus(),
        log_summary,
    );
    let ours_per_1000 = 1000.0 * cpu / polls.max(1.0);
    // Printed for scale, not a target: a poll does far more than an LLEN
    // (#15 judges the read path alone with examples/redis_read_bench.rs).
    print_floor(floor.as_ref(), &args, k, ours_per_1000);
    let slow_api = (args.write_latency_ms > 0).then_some((connections.peak, unsettled.pools));
    let figures = targets::Figures {
        n,
        interval_s: interval.as_secs_f64(),
        on_time,
        done: polls / expected,
        lag_p99_s: lag.quantile(0.99),
        reaction_p99_s: r99.map(|r| match r {
            Duration::MAX => f64::INFINITY,
            r => r.as_secs_f64(),
        }),
        cpu_cores: cpu / elapsed,
        peak_rss_mib: b.rss.hwm as f64 / 1024.0,
        round_trips_per_s: round_trips::busiest_operator_per_s(&trips),
        status_beyond_changes_per_s: per_s(status.saturating_sub(scales)),
        slow_api,
    };
    print_extras(
        &trips,
        interval,
        &settle::describe(&unsettled, want.len(), waited),
        connections,
        args.write_latency_ms,
        &rss_trace,
        args.seconds,
    );
    for line in targets::report(&figures) {
        println!("{line}");
    }
    Ok(())
}

/// The emulator with the CRD, the namespace and N Deployments at the
/// replicas the low depth wants; its writes slowed by `write_latency`.
async fn start_emulator(n: usize, write_latency: Duration) -> anyhow::Result<Emulator> {
    let emu = Emulator::start().await?;
    let client = emu.client()?;
    let crd_text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/crds/workerpool.yaml"))?;
    let crd: CustomResourceDefinition = workerpool_operator::yaml::from_str(&crd_text)?;
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .context("create CRD")?;
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": NS}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .context("create namespace")?;
    forget_driver_connections(&emu, client).await;
    slow_writes(&emu, write_latency);
    let t = Instant::now();
    for i in 0..n {
        emu.create_json("apps/v1/deployments", NS, deployment(i, LOW / PER_REPLICA))
            .map_err(|e| anyhow::anyhow!("create deployment: {}", e.message))?;
    }
    eprintln!(
        "scale_bench: {n} Deployments created in {:.1?}",
        t.elapsed()
    );
    Ok(emu)
}

/// The floor's result, the server's counters over it, redis-benchmark's line.
type Floor = (floor::FloorResult, ServerStats, String);

/// The raw floor: the same N reads per tick from a minimal loop in its own
/// process, then `redis-benchmark`; None with `--floor-seconds 0`.
async fn run_floor(
    args: &Args,
    fleet: &Fleet,
    conns: &mut [redis::aio::MultiplexedConnection],
    prefix: &str,
) -> anyhow::Result<Option<Floor>> {
    let floor_s = args.floor_seconds.unwrap_or(args.seconds.min(15));
    if floor_s == 0 {
        return Ok(None);
    }
    let interval = Duration::from_millis(args.interval_ms);
    let before = fleet.stats(conns).await?;
    let f = floor::run_child(
        fleet.urls(),
        prefix,
        args.pools,
        interval,
        floor_s,
        &args.floor_mode,
    )
    .await?;
    let after = fleet.stats(conns).await?;
    let bench = floor::redis_benchmark(&fleet.urls()[0], &format!("{prefix}:q-0"), f.llens);
    Ok(Some((f, ServerStats::delta(&before, &after), bench)))
}

/// The raw floor's line, with ours/floor CPU per 1,000 reads.
fn print_floor(floor: Option<&Floor>, args: &Args, k: usize, ours_per_1000: f64) {
    let Some((f, fd, bench)) = floor else {
        println!("raw floor: skipped (--floor-seconds 0)");
        return;
    };
    let n = args.pools;
    let floor_per_1000 = 1000.0 * f.cpu_s / (f.llens.max(1)) as f64;
    let fticks = f.wall_s / Duration::from_millis(args.interval_ms).as_secs_f64();
    println!(
        "raw floor ({}): tokio loop, 1 multiplexed conn/endpoint, {n} LLEN per tick, {}s: \
         {} LLEN, {:.3} cores, {:.4} cpu-s/1000 LLEN, round trips/tick {:.1}, tick p99 {} | \
         {} | ratio ours/floor (cpu per 1000) {:.1}x",
        args.floor_mode,
        f.wall_s.round(),
        f.llens,
        f.cpu_s / f.wall_s,
        floor_per_1000,
        fd.reads.saturating_sub(k as u64) as f64 / fticks,
        measure::fmt_secs(Some(f.tick_p99_s)),
        bench,
        if f.cpu_s > 0.0 {
            ours_per_1000 / floor_per_1000
        } else {
            f64::NAN
        },
    );
}

/// Status writes in the window's busiest second and in its median one.
fn busiest_and_median_second(t: &Tally, seconds: u64) -> (u64, u64) {
    let mut v: Vec<u64> = (0..seconds)
        .map(|s| t.status_per_s.get(&s).copied().unwrap_or(0))
        .collect();
    v.sort();
    (
        v.last().copied().unwrap_or(0),
        v.get(v.len() / 2).copied().unwrap_or(0),
    )
}

/// Waits up to `grace` for the reactions still pending; the reactions
/// (sorted) and how many never came.
async fn wait_reactions(tally: &Mutex<Tally>, grace: Duration) -> (Vec<Duration>, usize) {
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && !tally.lock().unwrap().pending.is_empty() {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let t = tally.lock().unwrap();
    let mut reactions = t.reactions.clone();
    reactions.sort();
    (reactions, t.pending.len())
}

/// Diagnostics (stderr): the slowest reactions and unexpected scales, to
/// look up in the operator log; the RSS trace; one pool's stored size.
fn print_diagnostics(t: &Tally, t0: Instant, rss_trace: &[(u64, u64)], emu: &Emulator) {
    for (i, at, r) in &t.slow {
        eprintln!(
            "scale_bench: slow reaction p-{i}: changed at t0+{:.3}s, /scale after {:.3}s",
            at.saturating_duration_since(t0).as_secs_f64(),
            r.as_secs_f64()
        );
    }
    for (i, since) in &t.unexpected {
        eprintln!("scale_bench: unexpected /scale p-{i}: {since:?} after its previous /scale");
    }
    let mib: Vec<u64> = rss_trace.iter().map(|(_, kib)| kib / 1024).collect();
    eprintln!("scale_bench: operator RSS MiB every 10 s of the window: {mib:?}");
    if let Some(p) = emu.get_json("workerpool.dev/v1alpha1/workerpools", NS, "p-0") {
        eprintln!(
            "scale_bench: p-0 stored JSON {} bytes (status {} bytes, {} managedFields)",
            p.to_string().len(),
            p["status"].to_string().len(),
            p["metadata"]["managedFields"]
                .as_array()
                .map_or(0, |a| a.len())
        );
    }
}

/// The lines after the result line: round trips per endpoint (both
/// counts), writes lost, connections, RSS growth of a long run.
fn print_extras(
    trips: &[round_trips::EndpointTrips],
    interval: Duration,
    writes_lost: &str,
    connections: kube_emulator::Connections,
    write_latency_ms: u64,
    rss_trace: &[(u64, u64)],
    window_s: u64,
) {
    println!(
        "redis round trips per endpoint: {}",
        round_trips::describe(trips, interval.as_secs_f64())
    );
    println!("{writes_lost}");
    println!(
        "api connections: at most {} open at once during the run, {} open at the end (write latency {write_latency_ms} ms)",
        connections.peak, connections.open
    );
    match measure::rss_growth_after(rss_trace, 120) {
        Some((max, last)) if window_s >= 180 => println!(
            "RSS growth after minute 2: {max:.1} MiB (max after 120 s minus at 120 s), {last:.1} MiB (last minus at 120 s)"
        ),
        _ => println!("RSS growth after minute 2: n/a (window under 180 s)"),
    }
}

/// `--write-latency-ms`: every write verb waits this long at the emulator.
fn slow_writes(emu: &Emulator, delay: Duration) {
    if delay.is_zero() {
        return;
    }
    for verb in [
        Verb::Create,
        Verb::Update,
        Verb::Patch,
        Verb::Delete,
        Verb::DeleteCollection,
    ] {
        emu.faults().add_latency(Some(verb), "", delay);
    }
}

/// Drops the driver's own client and waits (briefly) for its connections
/// to close, so the emulator's connection peak counts the operator's only.
async fn forget_driver_connections(emu: &Emulator, client: kube::Client) {
    drop(client);
    let deadline = Instant::now() + Duration::from_secs(5);
    while emu.connections().open > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let left = emu.connections().open;
    if left > 0 {
        eprintln!(
            "scale_bench: {left} set-up connections still open; the connection peak includes them"
        );
    }
    emu.reset_connection_peak();
}

fn deployment(i: usize, replicas: u64) -> serde_json::Value {
    let name = format!("w-{i}");
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}},
                         "spec": {"containers": [{"name": "w", "image": "worker"}]}}
        }
    })
}

/// A pool whose replicas follow the depth at once both ways (no
/// stabilization, no rate limit that bites), so each flip is one scale.
fn pool(i: usize, url: &str, trigger: serde_json::Value, interval: Duration) -> serde_json::Value {
    let mut redis = trigger;
    redis["url"] = json!(url);
    json!({
        "apiVersion": "workerpool.dev/v1alpha1", "kind": "WorkerPool",
        "metadata": {"name": format!("p-{i}"), "namespace": NS},
        "spec": {
            "scaleTargetRef": {"name": format!("w-{i}")},
            "minReplicas": 1,
            "maxReplicas": 100,
            "pollingIntervalSeconds": interval.as_secs(),
            "triggers": [{"name": "queue", "redis": redis,
                          "targetPerReplica": PER_REPLICA}],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 0,
                            "policies": [{"type": "Pods", "value": 1000, "periodSeconds": 1}]},
                "scaleDown": {"stabilizationWindowSeconds": 0,
                              "policies": [{"type": "Percent", "value": 100, "periodSeconds": 1}]}
            }
        }
    })
}

/// Creates pools through the emulator's write path (validation, CEL,
/// defaults; no HTTP), evenly over `spread`.
async fn create_pools(
    emu: &Emulator,
    n: usize,
    spread: Duration,
    pool_json: &dyn Fn(usize) -> serde_json::Value,
) -> anyhow::Result<()> {
    let t0 = Instant::now();
    for i in 0..n {
        let at = t0 + spread.mul_f64(i as f64 / n as f64);
        if i % 16 == 0 {
            tokio::time::sleep_until(at.into()).await;
        }
        emu.create_json("workerpool.dev/v1alpha1/workerpools", NS, pool_json(i))
            .map_err(|e| anyhow::anyhow!("create pool p-{i}: {}", e.message))?;
    }
    eprintln!(
        "scale_bench: {n} WorkerPools created in {:.1?} (asked for {:.1?})",
        t0.elapsed(),
        spread
    );
    Ok(())
}
