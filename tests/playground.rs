//! The playground's one command (scripts/playground.sh, debug build):
//! a burst scales the pool out, the drained queue scales it back in, and
//! SIGINT stops the whole process tree; a second run in the same directory
//! works. Needs redis-server and kubectl (scripts/test.sh installs both).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

struct Run {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Run {
    fn start(dir: &Path) -> Run {
        let root = env!("CARGO_MANIFEST_DIR");
        let mut child = Command::new(format!("{root}/scripts/playground.sh"))
            .args(["--plain", "--burst", "300", "--repeat-secs", "0"])
            .args(["--scale-down-window", "5"])
            .arg("--dir")
            .arg(dir)
            .env("PLAYGROUND_PROFILE", "debug")
            .stdout(Stdio::piped())
            .spawn()
            .expect("scripts/playground.sh started");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Run {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// The first line (within `within`) for which `check` holds.
    fn wait_for(&mut self, within: Duration, what: &str, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if check(&line) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!(
            "no line for {what} within {within:?}; output:\n{}",
            self.seen.join("\n")
        );
    }

    /// SIGINT, as Ctrl-C would send, then the exit status within a deadline.
    fn interrupt(&mut self) {
        let status = Command::new("kill")
            .args(["-INT", &self.child.id().to_string()])
            .status()
            .expect("kill ran");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                assert!(status.success(), "playground exited with {status}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "playground still running 60 s after SIGINT"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A number after `key=` in a table row.
fn field(line: &str, key: &str) -> Option<i64> {
    let rest = line.split(&format!("{key}=")).nth(1)?;
    rest.split_whitespace().next()?.parse().ok()
}

fn pid_in(line: &str) -> u32 {
    let after = line.split("pid ").nth(1).expect("a pid");
    let digits: String = after.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().expect("pid digits")
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn playground_scales_out_and_in_and_stops_everything_on_sigint() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut run = Run::start(dir.path());
    // The first start may build the operator and the example.
    let build = Duration::from_secs(1200);
    let redis = pid_in(&run.wait_for(build, "redis pid", |l| l.starts_with("redis-server:")));
    let operator = pid_in(&run.wait_for(build, "operator pid", |l| l.starts_with("operator:")));
    run.wait_for(build, "kubectl create namespace", |l| {
        l.contains("namespace/shop created")
    });
    let minute = Duration::from_secs(120);
    let out = run.wait_for(minute, "a scale-out", |l| {
        field(l, "current").is_some_and(|c| c > 1)
    });
    assert!(field(&out, "depth").is_some_and(|d| d > 0), "{out}");
    run.wait_for(minute, "drained and scaled back in", |l| {
        field(l, "depth") == Some(0) && field(l, "current") == Some(1)
    });
    assert!(alive(redis) && alive(operator));
    run.interrupt();
    assert!(!alive(redis), "redis-server {redis} left running");
    assert!(!alive(operator), "operator {operator} left running");
    assert!(run
        .seen
        .iter()
        .any(|l| l.contains("kubectl get wp -n shop -w")));

    // A second run in the same directory starts and stops cleanly too.
    let mut again = Run::start(dir.path());
    let redis = pid_in(&again.wait_for(build, "redis pid", |l| l.starts_with("redis-server:")));
    again.wait_for(minute, "a first row", |l| l.starts_with("t="));
    again.interrupt();
    assert!(
        !alive(redis),
        "redis-server {redis} left running after the second run"
    );
}
