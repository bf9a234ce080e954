//! The operator under test, in its own process, and the driver's handle
//! on it (readiness, /metrics, /proc, stop).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;

use super::measure::Scrape;

/// What `workerpool-operator run` takes that the bench sets.
#[derive(Parser, Debug)]
struct ChildArgs {
    #[arg(long)]
    kubeconfig: PathBuf,
    #[arg(long)]
    metrics_addr: SocketAddr,
    #[arg(long, default_value_t = 512)]
    max_api_writes: u16,
}

/// `scale_bench __operator ...`: exactly what `workerpool-operator run`
/// does with these flags (main.rs `run`), through the library.
pub fn child_main(argv: &[String]) -> anyhow::Result<()> {
    let args =
        ChildArgs::parse_from(std::iter::once("operator".to_string()).chain(argv.iter().cloned()));
    let _ = rustls::crypto::ring::default_provider().install_default();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube_lease_manager=warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let kc = kube::config::Kubeconfig::read_from(&args.kubeconfig)?;
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
        // As `workerpool-operator run` builds its client.
        let connections = usize::from(args.max_api_writes.max(1))
            + workerpool_operator::runtime::api_client::CONNECTIONS_BESIDES_WRITES;
        let client = workerpool_operator::runtime::api_client::capped(config, connections)?;
        let cfg = workerpool_operator::runtime::RunConfig {
            namespace: None,
            metrics_addr: args.metrics_addr,
            leader_election: None,
            max_api_writes: args.max_api_writes.max(1),
            settings: workerpool_operator::controller::Settings {
                status_resync: Duration::from_secs(30),
                ..Default::default()
            },
            instance: Some(format!("scale-bench-{}", std::process::id())),
            endpoints: workerpool_operator::sources::policy::EndpointPolicy::open(),
        };
        let operator = workerpool_operator::runtime::Operator::start(client, cfg).await?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        term.recv().await;
        operator.shutdown(Duration::from_secs(5)).await;
        anyhow::Ok(())
    })
}

pub struct OperatorProcess {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl OperatorProcess {
    pub fn spawn(
        bin: Option<&Path>,
        kubeconfig: &Path,
        max_api_writes: u16,
        rust_log: &str,
        log: &Path,
    ) -> anyhow::Result<OperatorProcess> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut cmd = match bin {
            Some(b) => {
                let mut c = Command::new(b);
                c.arg("run");
                c
            }
            None => {
                let mut c = Command::new(std::env::current_exe()?);
                c.arg("__operator");
                c
            }
        };
        cmd.arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--metrics-addr")
            .arg(addr.to_string())
            .arg("--max-api-writes")
            .arg(max_api_writes.to_string())
            .env("RUST_LOG", rust_log)
            // As the chart and the image set it.
            .env("MIMALLOC_PURGE_DELAY", "0")
            .env("MIMALLOC_ARENA_EAGER_COMMIT", "0")
            .env_remove("KUBECONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).context("operator log file")?);
        let child = cmd.spawn().context("spawn operator")?;
        Ok(OperatorProcess {
            child,
            addr,
            log: log.to_path_buf(),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "operator exited ({status}) before ready; log: {}",
                    self.log.display()
                );
            }
            if let Ok((200, _)) = http_get(self.addr, "/readyz").await {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!("operator not ready after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn scrape(&self) -> anyhow::Result<Scrape> {
        let t = Instant::now();
        let (code, body) = http_get(self.addr, "/metrics").await?;
        anyhow::ensure!(code == 200, "/metrics answered {code}");
        let mut s = Scrape::parse(&body);
        s.bytes = body.len();
        s.took = t.elapsed();
        Ok(s)
    }

    /// SIGTERM, wait, and a one-phrase summary of the log.
    pub async fn stop(&mut self, timeout: Duration) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines = text.lines().count();
        let warns: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(" WARN ") || l.contains(" ERROR "))
            .collect();
        let mut s = format!(
            "{lines} lines, {:.1} MiB, {} WARN/ERROR",
            text.len() as f64 / 1048576.0,
            warns.len()
        );
        if let Some(first) = warns.first() {
            let cut: String = first.chars().take(300).collect();
            s.push_str(&format!(" (first: {cut})"));
        }
        s
    }
}

impl Drop for OperatorProcess {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// GET over HTTP/1.0: (status code, body).
async fn http_get(addr: SocketAddr, path: &str) -> anyhow::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut buf)).await??;
    let text = String::from_utf8_lossy(&buf);
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Ok((code, body))
}
