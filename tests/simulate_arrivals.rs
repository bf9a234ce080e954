//! `simulate --arrivals` (the closed loop) as a user runs it: the README's
//! drain-versus-targetPerReplica runs are exactly what the command prints,
//! the recorded timelines match, and bad input is a one-line error.

use std::path::PathBuf;
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the binary with `args` (a command line as written in the README,
/// without the program name) from the repository root.
fn run(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_workerpool-operator"))
        .current_dir(root())
        .args(args)
        .output()
        .unwrap()
}

/// The README block after `<!-- drain-vs-target: {name} -->`: the command
/// line and the lines it shows.
fn readme_block(name: &str) -> (String, Vec<String>) {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let marker = format!("<!-- drain-vs-target: {name} -->");
    let after = readme
        .split_once(&marker)
        .unwrap_or_else(|| panic!("README has no {marker}"))
        .1;
    let body = after
        .trim_start()
        .strip_prefix("```\n")
        .unwrap()
        .split_once("```")
        .unwrap()
        .0;
    let mut lines = body.lines();
    let command = lines
        .next()
        .unwrap()
        .strip_prefix("$ ")
        .unwrap()
        .to_string();
    (command, lines.map(str::to_string).collect())
}

/// The header, the rows with an event during the burst (before 300 s), and
/// the stderr summary: what the README shows of a run.
fn shown(out: &Output) -> Vec<String> {
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    let mut lines = stdout.lines();
    let mut shown = vec![lines.next().unwrap().to_string()];
    for line in lines {
        let cells: Vec<&str> = line.split(',').collect();
        let time: f64 = cells[0].parse().unwrap();
        if !cells[cells.len() - 1].is_empty() && time < 300.0 {
            shown.push(line.to_string());
        }
    }
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    shown.extend(stderr.lines().map(str::to_string));
    shown
}

fn worst_wait(summary: &str) -> f64 {
    let tail = summary.split_once("at most ").unwrap().1;
    tail.split_once('s').unwrap().0.parse().unwrap()
}

#[test]
fn readme_runs_are_what_the_command_prints() {
    let mut waits = vec![];
    for name in ["drain", "target"] {
        let (command, want) = readme_block(name);
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let out = run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            shown(&out),
            want,
            "README.md's {name} run is out of date with `{command}`"
        );
        waits.push(worst_wait(want.last().unwrap()));
    }
    // The point of the comparison: drain holds its 60 s promise with room,
    // targetPerReplica lets the wait climb towards what one replica holds.
    assert!(waits[0] < 40.0 && waits[0] < waits[1], "{waits:?}");
}

#[test]
fn recorded_timelines_match() {
    for name in ["drain", "target"] {
        let pool = format!("examples/traces/flash-sale-{name}.yaml");
        let out = run(&[
            "simulate",
            "-f",
            &pool,
            "--trace",
            "examples/traces/flash-sale-arrivals.csv",
            "--arrivals",
            "--throughput-per-replica",
            "2.5",
        ]);
        assert!(out.status.success());
        let want = std::fs::read_to_string(
            root().join(format!("examples/traces/flash-sale-{name}.out.csv")),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            want,
            "regenerate examples/traces/flash-sale-{name}.out.csv if the change is intended"
        );
    }
}

#[test]
fn a_drain_trigger_brings_its_own_throughput() {
    let args = |extra: &[&'static str]| {
        let mut a = vec![
            "simulate",
            "-f",
            "examples/traces/flash-sale-drain.yaml",
            "--trace",
            "examples/traces/flash-sale-arrivals.csv",
            "--arrivals",
        ];
        a.extend_from_slice(extra);
        a
    };
    let own = run(&args(&[]));
    let flag = run(&args(&["--throughput-per-replica", "2.5"]));
    assert!(own.status.success());
    assert_eq!(own.stdout, flag.stdout);
}

#[test]
fn missing_or_bad_throughput_is_a_one_line_error() {
    for extra in [vec![], vec!["--throughput-per-replica", "0"]] {
        let mut args = vec![
            "simulate",
            "-f",
            "examples/traces/flash-sale-target.yaml",
            "--trace",
            "examples/traces/flash-sale-arrivals.csv",
            "--arrivals",
        ];
        args.extend(extra);
        let out = run(&args);
        let err = String::from_utf8(out.stderr).unwrap();
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains("--throughput-per-replica"), "{err}");
    }
}
