//! A real `prometheus` server owned by one test, with a config the test
//! writes, scraping a tiny exporter the test serves from Rust (axum on a
//! tokio listener). Both stop on drop.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::redis::free_port;

/// Serves `GET /metrics` with a body the test can change at any time.
pub struct Exporter {
    pub addr: SocketAddr,
    body: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
}

impl Exporter {
    /// Starts serving `body` (Prometheus text format) on 127.0.0.1.
    pub async fn serve(body: &str) -> Exporter {
        let body = Arc::new(Mutex::new(body.to_string()));
        let shared = body.clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let text = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
                async move { ([("content-type", "text/plain; version=0.0.4")], text) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the exporter");
        let addr = listener.local_addr().expect("exporter address");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Exporter { addr, body, task }
    }

    /// What the next scrape sees.
    pub fn set(&self, body: &str) {
        *self.body.lock().unwrap_or_else(|e| e.into_inner()) = body.to_string();
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A `prometheus` process scraping `targets` every second (job `exporter`),
/// with its TSDB in a temporary directory. Killed on drop.
pub struct PrometheusProcess {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl PrometheusProcess {
    /// Starts Prometheus on a free port and waits until `/-/ready` says so.
    pub fn start(targets: &[SocketAddr]) -> PrometheusProcess {
        let dir = tempfile::tempdir().expect("tempdir");
        let targets: Vec<String> = targets.iter().map(|a| format!("'{a}'")).collect();
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: exporter\n    scrape_interval: 1s\n    \
             static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.path().join("prometheus.log")).expect("log file");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect(
                "the prometheus binary was not found: scripts/test.sh installs it \
                 (apt-get install prometheus)",
            );
        let mut p = PrometheusProcess {
            port,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if http_get(port, "/-/ready").is_some_and(|(status, _)| status == 200) {
                return p;
            }
            let exited = p.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                let log = p.log();
                p.stop();
                panic!("prometheus did not become ready (exit: {exited:?}); its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("prometheus.log")).unwrap_or_default()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrometheusProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A bare HTTP/1.0 GET on 127.0.0.1 (no client library, so it works from
/// sync and async code alike): the status and body, or None if unreachable.
pub fn http_get(port: u16, path_and_query: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path_and_query} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((status, body))
}
