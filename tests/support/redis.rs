//! A real `redis-server` process owned by one test (for what a shared
//! server must not see: stopping it, restarting it). Killed on drop.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct RedisProcess {
    pub port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("no free port")
}

impl RedisProcess {
    /// Starts a redis-server on a free port and waits until it answers.
    pub fn start() -> Self {
        let mut r = RedisProcess {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        r.restart();
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// (Re)starts the server on the same port.
    pub fn restart(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .current_dir(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: scripts/test.sh installs it (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not answer within 10 s",
            self.port
        );
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn ping(&self) -> bool {
        redis::Client::open(self.url())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(200)))
            .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c))
            .is_ok()
    }
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A synchronous connection to the shared test Redis (REDIS_URL, default
/// redis://127.0.0.1:16379, started by scripts/test.sh).
pub fn shared_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:16379".into())
}

pub fn connect(url: &str) -> redis::Connection {
    redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        .unwrap_or_else(|e| {
            panic!("cannot reach Redis at {url} ({e}); run the tests through scripts/test.sh")
        })
}

/// A `redis-server` started with arguments the test chooses (a TLS port,
/// say), owning its directory. Ready once its log says so, because a TLS
/// or ACL-only server does not answer a plain PING. Killed on drop.
pub struct RedisWithArgs {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<Child>,
}

impl RedisWithArgs {
    /// Starts `redis-server --bind 127.0.0.1 --save "" --appendonly no
    /// --logfile <dir>/redis.log <args>` in `dir`; `port` is what the test
    /// connects to (it must appear in `args`, as `--port` or `--tls-port`).
    pub fn start(port: u16, dir: tempfile::TempDir, args: &[String]) -> Self {
        let log = dir.path().join("redis.log");
        let child = Command::new("redis-server")
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .arg("--logfile")
            .arg(&log)
            .args(args)
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: scripts/test.sh installs it (apt-get install redis-server)");
        let mut r = RedisWithArgs {
            port,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Ready to accept connections") {
                return r;
            }
            let exited = r.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || Instant::now() > deadline {
                r.stop();
                panic!("redis-server {args:?} did not start (exit: {exited:?}); its log:\n{text}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for RedisWithArgs {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs one command on a fresh synchronous connection (admin steps of a test).
pub fn command<T: redis::FromRedisValue>(url: &str, args: &[&str]) -> T {
    let mut c = connect(url);
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut c)
        .unwrap_or_else(|e| panic!("{args:?} on {url}: {e}"))
}

/// A key name no other test (or test process) uses.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Makes the list `key` hold exactly `n` items.
pub fn fill_list(url: &str, key: &str, n: usize) {
    let mut r = connect(url);
    let _: () = redis::cmd("DEL").arg(key).query(&mut r).unwrap();
    if n > 0 {
        let items: Vec<String> = (0..n).map(|i| i.to_string()).collect();
        let _: () = redis::cmd("RPUSH")
            .arg(key)
            .arg(&items)
            .query(&mut r)
            .unwrap();
    }
}
