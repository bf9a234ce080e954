//! Dev binary: run the emulator on a fixed port so a person can point
//! kubectl at it: `kube-emulator --port 8001 --kubeconfig out.yaml`, then
//! `kubectl --kubeconfig out.yaml get ns`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use kube_emulator::{Config, Emulator};

#[derive(Parser)]
#[command(about = "In-memory Kubernetes API server emulator (test support)")]
struct Args {
    /// Port to listen on (127.0.0.1); 0 picks a free one.
    #[arg(long, env = "KUBE_EMULATOR_PORT", default_value_t = 8001)]
    port: u16,
    /// Address to bind.
    #[arg(long, env = "KUBE_EMULATOR_BIND", default_value = "127.0.0.1")]
    bind: std::net::IpAddr,
    /// Write a kubeconfig for this server here.
    #[arg(long, env = "KUBE_EMULATOR_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Seconds between watch bookmarks.
    #[arg(long, env = "KUBE_EMULATOR_BOOKMARK_SECS", default_value_t = 5)]
    bookmark_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let args = Args::parse();
    let config = Config {
        bookmark_interval: Duration::from_secs(args.bookmark_secs.max(1)),
        ..Config::default()
    };
    let emu = Emulator::start_on(SocketAddr::new(args.bind, args.port), config).await?;
    if let Some(path) = &args.kubeconfig {
        emu.write_kubeconfig(path)?;
        eprintln!("kubeconfig written to {}", path.display());
    }
    eprintln!("kube-emulator serving on {}", emu.url());
    tokio::signal::ctrl_c().await?;
    Ok(())
}
