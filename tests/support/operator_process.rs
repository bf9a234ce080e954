//! The real operator binary (`workerpool-operator run`) as a child process,
//! its logs collected as they come, its HTTP port bound by itself (port 0)
//! and read back from its log: no port is picked in advance, so none can be
//! taken by another process in between.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct OperatorProcess {
    child: Child,
    logs: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    pub http_addr: SocketAddr,
}

impl OperatorProcess {
    /// Starts `run --log-format json` with debug logs and `extra` flags.
    pub fn start(kubeconfig: &Path, extra: &[&str]) -> OperatorProcess {
        let mut child = Command::new(env!("CARGO_BIN_EXE_workerpool-operator"))
            .args([
                "run",
                "--log-format",
                "json",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(extra)
            .env("RUST_LOG", "debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the operator binary");
        let logs = Arc::new(Mutex::new(String::new()));
        let mut readers = Vec::new();
        let out: Box<dyn std::io::Read + Send> = Box::new(child.stdout.take().unwrap());
        let err: Box<dyn std::io::Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [out, err] {
            let logs = logs.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    let mut l = logs.lock().unwrap();
                    l.push_str(&line);
                    l.push('\n');
                }
            }));
        }
        let http_addr = wait_for_addr(&logs, &mut child);
        OperatorProcess {
            child,
            logs,
            readers,
            http_addr,
        }
    }

    /// The operator's process id (for /proc readings such as its memory).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    /// SIGTERM, waits for the exit (10 s at most), and returns every log line.
    pub fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("no exit 10 s after SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
        self.logs()
    }
}

/// The address in the operator's "serving /metrics" log line.
fn wait_for_addr(logs: &Mutex<String>, child: &mut Child) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = logs.lock().unwrap().clone();
        if let Some(addr) = text
            .split("\"http_addr\":\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .and_then(|a| a.parse().ok())
        {
            return addr;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the operator exited ({status}) before serving HTTP:\n{text}");
        }
        assert!(
            Instant::now() < deadline,
            "no HTTP address logged in 30 s:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
