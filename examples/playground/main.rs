//! The playground: the operator's real loop on one machine, no cluster.
//!
//! Starts the in-repo Kubernetes API emulator (kubeconfig written to a
//! printed path), a `redis-server` on a free 127.0.0.1 port and the
//! operator binary (`workerpool-operator run`); applies with kubectl the
//! CRD, a namespace, a worker Deployment and a WorkerPool; then enqueues
//! bursts of Celery-shaped messages and drains them at a rate proportional
//! to the Deployment's replicas (the emulator runs no pods, so the
//! consumer plays the workers). A live table shows depth, desired and
//! current replicas and the last decision. Ctrl-C stops everything.
//!
//! ```sh
//! scripts/playground.sh            # builds, then runs this
//! ```

mod stack;
mod traffic;
mod view;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Parser;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Command-line flags (scripts/playground.sh passes its arguments through).
#[derive(Parser, Clone, Debug)]
#[command(about = "Run the operator against an emulated API server and a local Redis")]
pub struct Args {
    /// The operator binary (default: `workerpool-operator` next to this example's directory).
    #[arg(long)]
    pub operator: Option<PathBuf>,
    /// Directory for the kubeconfig, manifests and logs.
    #[arg(long, default_value_os_t = std::env::temp_dir().join("workerpool-playground"))]
    pub dir: PathBuf,
    /// Namespace of the demo objects.
    #[arg(long, default_value = "shop")]
    pub namespace: String,
    /// Messages per burst.
    #[arg(long, default_value_t = 600)]
    pub burst: usize,
    /// Seconds between bursts; 0 sends one burst only.
    #[arg(long, default_value_t = 90)]
    pub repeat_secs: u64,
    /// Messages one worker replica handles per second.
    #[arg(long, default_value_t = 4.0)]
    pub per_replica_rate: f64,
    /// The WorkerPool's targetPerReplica.
    #[arg(long, default_value_t = 20)]
    pub target_per_replica: u32,
    /// The WorkerPool's maxReplicas.
    #[arg(long, default_value_t = 10)]
    pub max_replicas: u32,
    /// The WorkerPool's scale-down stabilization window, in seconds.
    #[arg(long, default_value_t = 10)]
    pub scale_down_window: u32,
    /// One line per second, no screen clearing (for logs and tests).
    #[arg(long)]
    pub plain: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Taken over before any child starts: from here on Ctrl-C cannot end
    // this process before it has stopped what it started.
    let mut stop = Stop::new()?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;
    let mut stack = stack::Stack::start(&args).await?;
    let outcome = run(&args, &stack, &mut stop).await;
    // Whatever happened, nothing this process started is left running.
    stack.stop().await;
    outcome
}

/// Sets up the demo objects, then runs traffic and the view until Ctrl-C
/// (or until the operator exits, which is an error).
async fn run(args: &Args, stack: &stack::Stack, stop: &mut Stop) -> anyhow::Result<()> {
    stack.apply_manifests(args).await?;
    let mut view = view::View::new(args, stack);
    let started = Instant::now();
    let mut traffic = traffic::Traffic::new(args, stack).await?;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut ticks: u64 = 0;
    loop {
        tokio::select! {
            _ = stop.requested() => {
                println!("\nstopping the operator, redis-server and the API emulator");
                return Ok(());
            }
            exited = stack.operator_exited() => {
                anyhow::bail!("the operator exited ({exited}); its log: {}", stack.operator_log().display());
            }
            _ = tick.tick() => {
                traffic.step(started.elapsed()).await?;
                ticks += 1;
                if ticks.is_multiple_of(4) {
                    view.show(&traffic.snapshot(started.elapsed()).await?);
                }
            }
        }
    }
}

/// SIGINT (Ctrl-C) or SIGTERM.
struct Stop {
    interrupt: Signal,
    terminate: Signal,
}

impl Stop {
    fn new() -> std::io::Result<Stop> {
        Ok(Stop {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn requested(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}
