//! Thin entry point: parse arguments, hand over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// See Cargo.toml: allocation is a large share of a poll's cost.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use workerpool_operator::sources::policy::{EndpointPolicy, EndpointRule};
use workerpool_operator::{api, cli};

#[derive(Parser)]
#[command(
    name = "workerpool-operator",
    version,
    about = "Autoscale background workers from queue depth"
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator (kubeconfig or in-cluster).
    Run(Box<RunArgs>),
    /// Print the WorkerPool CustomResourceDefinition as YAML.
    Crd,
    /// Validate a manifest, read its triggers once from the live Redis/Prometheus,
    /// and print the decision the operator would make and why.
    /// Exit 0: all triggers read; 1: a trigger failed; 2: invalid manifest or usage.
    Check {
        /// WorkerPool manifest (YAML; other documents in the file are ignored).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// A Secret value a trigger names: `name/key=value`, or `name/key=@file`. Repeatable.
        #[arg(long = "secret", value_name = "NAME/KEY=VALUE", value_parser = cli::check::parse_secret_flag)]
        secrets: Vec<cli::check::SecretFlag>,
        /// Replicas the target runs now (default: minReplicas).
        #[arg(long, value_parser = clap::value_parser!(i32).range(0..))]
        current: Option<i32>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = cli::check::Format::Text)]
        output: cli::check::Format,
        #[command(flatten)]
        endpoints: EndpointArgs,
    },
    /// Replay a metric trace through the scaling decision; prints the replica timeline as CSV.
    Simulate {
        /// WorkerPool manifest (YAML; other documents in the file are ignored).
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// CSV trace: header `time,<trigger name>,...`, one row per poll; an empty cell is a failed read.
        #[arg(long)]
        trace: PathBuf,
        /// Replicas at the start (default: minReplicas).
        #[arg(long)]
        start: Option<i32>,
        /// Also draw the timeline as an SVG chart.
        #[arg(long)]
        svg: Option<PathBuf>,
        /// Closed loop: the trace gives arrivals per second; the simulator models the queue.
        #[arg(long, conflicts_with = "svg")]
        arrivals: bool,
        /// With --arrivals: items/s one replica completes (default: drain.throughputPerReplica).
        #[arg(long, requires = "arrivals")]
        throughput_per_replica: Option<f64>,
        /// Wall clock of the trace's time 0, RFC 3339 (e.g. 2026-11-30T06:00:00Z); schedules are read on it. Default: the Unix epoch.
        #[arg(long, value_parser = cli::simulate::parse_at)]
        at: Option<i64>,
    },
    /// Convert KEDA ScaledObjects (and the TriggerAuthentications they use) into WorkerPools.
    /// Prints the WorkerPools on stdout and every field without an exact equivalent as a
    /// warning on stderr. Exit 0: converted (warnings or not); 2: not a ScaledObject, or a
    /// trigger type that cannot be converted (nothing printed).
    Convert {
        /// KEDA manifests (YAML, several documents allowed); `-` reads stdin.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Emit `mode: Active` (the WorkerPool scales the target at once) instead of
        /// `mode: Shadow` (it only reports what it would do, beside KEDA).
        #[arg(long)]
        active: bool,
    },
}

/// The endpoint policy (`run` and `check` alike): which hosts a trigger may
/// make the operator connect to.
#[derive(clap::Args)]
struct EndpointArgs {
    /// Any: every host but the deny lists; SameNamespace: only Services of
    /// the pool's own namespace (the multi-tenant setting) and the allow list.
    #[arg(long, env = "ENDPOINT_POLICY", value_enum, default_value_t = EndpointRule::Any)]
    endpoint_policy: EndpointRule,
    /// Comma-separated CIDRs and host globs a trigger may always reach
    /// (also lifts the built-in deny list for what it names explicitly).
    #[arg(long, env = "ALLOW_ENDPOINTS", default_value = "")]
    allow_endpoints: String,
    /// Comma-separated CIDRs and host globs a trigger may never reach; wins over the allow list.
    #[arg(long, env = "DENY_ENDPOINTS", default_value = "")]
    deny_endpoints: String,
}

impl EndpointArgs {
    fn policy(&self) -> Result<EndpointPolicy, String> {
        EndpointPolicy::new(
            self.endpoint_policy,
            &self.allow_endpoints,
            &self.deny_endpoints,
        )
    }
}

/// A boolean flag whose environment variable takes the usual spellings
/// (true/false, 1/0, yes/no, on/off); `--flag` alone means true.
fn boolish() -> clap::builder::BoolishValueParser {
    clap::builder::BoolishValueParser::new()
}

/// Flags of `run`; every flag also reads an environment variable.
#[derive(clap::Args)]
struct RunArgs {
    /// Watch WorkerPools in this namespace only (default: all namespaces).
    #[arg(long, env = "WATCH_NAMESPACE")]
    namespace: Option<String>,
    /// Address of the HTTP port serving /metrics, /healthz and /readyz.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: std::net::SocketAddr,
    /// Elect a leader with a coordination.k8s.io/v1 Lease; only the leader scales.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = false, value_parser = boolish(),
          num_args = 0..=1, default_missing_value = "true", action = clap::ArgAction::Set)]
    leader_election: bool,
    #[arg(long, env = "LEASE_NAME", default_value = "workerpool-operator")]
    lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, else "default").
    #[arg(long, env = "LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Seconds a lease is valid without renewal (a standby takes over after it).
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// This instance's identity in the Lease and in Events (default: pod name or host name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[arg(long, env = "POD_NAMESPACE", hide = true)]
    pod_namespace: Option<String>,
    /// Most API writes in flight at once (status, scale, Events, pod
    /// annotations); each holds one connection to the API server.
    #[arg(long, env = "MAX_API_WRITES", default_value_t = 26)]
    max_api_writes: u16,
    /// No longer used (every pool due in a slot is polled at once); kept so
    /// that old manifests still start.
    #[arg(long, env = "MAX_CONCURRENT_RECONCILES", hide = true)]
    concurrency: Option<u16>,
    /// Longest time between two status writes of an unchanged WorkerPool.
    #[arg(long, env = "STATUS_RESYNC_SECONDS", default_value_t = 30)]
    status_resync_seconds: u64,
    /// Longest time a Secret read for a pool is used before it is read again
    /// (an authentication failure re-reads it at once).
    #[arg(long, env = "SECRET_REFRESH_SECONDS", default_value_t = 60)]
    secret_refresh_seconds: u64,
    /// Log format (the Helm chart sets json).
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(flatten)]
    endpoints: EndpointArgs,
    /// Path to a kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // More than one rustls crypto backend is linked (dependencies disagree);
    // pick ring, the one kube is built with, before any TLS client exists.
    let _ = rustls::crypto::ring::default_provider().install_default();
    if let Command::Check {
        file,
        secrets,
        current,
        output,
        endpoints,
    } = &args.command
    {
        let endpoints = match endpoints.policy() {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        };
        return ExitCode::from(cli::check::run(file, secrets, *current, *output, endpoints));
    }
    if let Command::Convert { file, active } = &args.command {
        return ExitCode::from(cli::convert::run(file, *active));
    }
    let result = match args.command {
        Command::Run(run_args) => run(*run_args),
        Command::Crd => api::crd_yaml()
            .map_err(|e| e.to_string())
            .map(|y| print!("{y}")),
        Command::Simulate {
            file,
            trace,
            start,
            arrivals: true,
            throughput_per_replica,
            ..
        } => cli::closed_loop::run(&file, &trace, start, throughput_per_replica),
        Command::Simulate {
            file,
            trace,
            start,
            svg,
            at,
            ..
        } => simulate(&file, &trace, start, svg.as_deref(), at),
        Command::Check { .. } | Command::Convert { .. } => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn simulate(
    file: &std::path::Path,
    trace_path: &std::path::Path,
    start: Option<i32>,
    svg: Option<&std::path::Path>,
    at: Option<i64>,
) -> Result<(), String> {
    let (pool, policy) = cli::manifest::load(file).map_err(|e| e.to_string())?;
    let input =
        std::fs::File::open(trace_path).map_err(|e| format!("{}: {e}", trace_path.display()))?;
    let mut trace =
        cli::trace::parse(input).map_err(|e| format!("{}: {e}", trace_path.display()))?;
    trace
        .anchor(at)
        .map_err(|e| format!("{}: {e}", trace_path.display()))?;
    let steps = cli::simulate::simulate(&policy, &trace, start.unwrap_or(policy.min_replicas))
        .map_err(|e| format!("{}: {e}", trace_path.display()))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    cli::simulate::write_csv(&mut out, &policy, &trace, &steps)
        .map_err(|e| format!("writing output: {e}"))?;
    std::io::Write::flush(&mut out).map_err(|e| format!("writing output: {e}"))?;
    if let Some(path) = svg {
        let name = pool.metadata.name.as_deref().unwrap_or("workerpool");
        let title = format!(
            "WorkerPool {name}: {} over {}",
            policy
                .triggers
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            trace_path.display()
        );
        let chart = cli::svg::render_at(&title, &policy, &steps, trace.wall_clock);
        std::fs::write(path, chart).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn run(args: RunArgs) -> Result<(), String> {
    let endpoints = args.endpoints.policy()?;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_lease_manager=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never into log files.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match args.log_format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
    let runtime = tokio::runtime::Runtime::new().map_err(|e| format!("starting tokio: {e}"))?;
    runtime.block_on(async move {
        let config = match &args.kubeconfig {
            Some(path) => {
                let kc = kube::config::Kubeconfig::read_from(path)
                    .map_err(|e| format!("{}: {e}", path.display()))?;
                kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .map_err(|e| format!("{}: {e}", path.display()))?
            }
            None => kube::Config::infer()
                .await
                .map_err(|e| format!("no kubeconfig or in-cluster config: {e}"))?,
        };
        let connections = usize::from(args.max_api_writes.max(1))
            + workerpool_operator::runtime::api_client::CONNECTIONS_BESIDES_WRITES;
        let client = workerpool_operator::runtime::api_client::capped(config, connections)
            .map_err(|e| format!("kubernetes client: {e}"))?;
        let identity = args
            .identity
            .clone()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| format!("workerpool-operator-{}", std::process::id()));
        let leader_election =
            args.leader_election
                .then(|| workerpool_operator::runtime::leader::LeaseConfig {
                    name: args.lease_name.clone(),
                    namespace: args
                        .lease_namespace
                        .clone()
                        .or(args.pod_namespace.clone())
                        .unwrap_or_else(|| "default".into()),
                    identity: identity.clone(),
                    duration: std::time::Duration::from_secs(args.lease_duration_seconds.max(2)),
                    grace: std::time::Duration::from_secs((args.lease_duration_seconds / 3).max(1)),
                });
        let cfg = workerpool_operator::runtime::RunConfig {
            namespace: args.namespace.clone(),
            metrics_addr: args.metrics_addr,
            leader_election,
            max_api_writes: args.max_api_writes.max(1),
            settings: workerpool_operator::controller::Settings {
                status_resync: std::time::Duration::from_secs(args.status_resync_seconds.max(1)),
                secret_refresh: std::time::Duration::from_secs(args.secret_refresh_seconds.max(1)),
            },
            endpoints,
            instance: Some(identity),
        };
        let operator = workerpool_operator::runtime::Operator::start(client, cfg)
            .await
            .map_err(|e| format!("binding {}: {e}", args.metrics_addr))?;
        wait_for_signal().await;
        tracing::info!("shutting down");
        operator.shutdown(std::time::Duration::from_secs(5)).await;
        Ok(())
    })
}

/// SIGTERM (Kubernetes) or SIGINT (a terminal).
async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
