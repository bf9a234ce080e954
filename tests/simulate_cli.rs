//! `workerpool-operator simulate` and `crd` as a user runs them: exact
//! stdout, and one-line errors (no panic) for bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_workerpool-operator"))
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn simulate(pool: &Path, trace: &Path, extra: &[&str]) -> Output {
    bin()
        .arg("simulate")
        .arg("-f")
        .arg(pool)
        .arg("--trace")
        .arg(trace)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn crd_command_prints_the_checked_in_crd() {
    let out = bin().arg("crd").output().unwrap();
    assert!(out.status.success());
    let file = std::fs::read(root().join("crds/workerpool.yaml")).unwrap();
    assert!(
        out.stdout == file,
        "crds/workerpool.yaml differs from `workerpool-operator crd`"
    );
}

#[test]
fn example_traces_match_their_recorded_output() {
    for name in ["flash-sale", "night-drain"] {
        let dir = root().join("examples/traces");
        let out = simulate(
            &dir.join(format!("{name}.yaml")),
            &dir.join(format!("{name}.csv")),
            &[],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let want = std::fs::read_to_string(dir.join(format!("{name}.out.csv"))).unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            want,
            "{name}: regenerate examples/traces/{name}.out.csv if the change is intended"
        );
    }
}

#[test]
fn stdout_is_only_csv_with_the_documented_header() {
    let dir = root().join("examples/traces");
    let tmp = tempfile::tempdir().unwrap();
    let svg = tmp.path().join("out.svg");
    let out = simulate(
        &dir.join("flash-sale.yaml"),
        &dir.join("flash-sale.csv"),
        &["--svg", svg.to_str().unwrap(), "--start", "3"],
    );
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("time,orders,checkout-rate,current,desired,event")
    );
    let first: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(first[3], "3", "--start sets the first current");
    for line in text.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells.len(), 6, "{line}");
        assert!(
            [
                "",
                "ScaledOut",
                "ScaledIn",
                "ScaledToZero",
                "FallbackApplied"
            ]
            .contains(&cells[5]),
            "{line}"
        );
        let desired: i32 = cells[4].parse().unwrap();
        assert!((1..=30).contains(&desired), "{line}");
    }
    let chart = std::fs::read_to_string(&svg).unwrap();
    assert!(chart.starts_with("<svg"), "not an SVG");
    for part in [
        "replicas",
        "orders (40/replica)",
        "time since start",
        "max 30",
        "ScaledOut",
    ] {
        assert!(chart.contains(part), "chart lacks {part:?}");
    }
}

/// Runs simulate on a bad input and returns stderr, checking it is one line
/// with no panic.
fn expect_error(pool_yaml: &str, trace_csv: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let (pool, trace) = (tmp.path().join("pool.yaml"), tmp.path().join("trace.csv"));
    std::fs::write(&pool, pool_yaml).unwrap();
    std::fs::write(&trace, trace_csv).unwrap();
    let out = simulate(&pool, &trace, &[]);
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        !out.status.success(),
        "expected failure, got success; stderr {err}"
    );
    assert!(out.stdout.is_empty(), "stdout must stay empty on error");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "error must be one line: {err}"
    );
    assert!(
        !err.contains("panicked") && !err.contains("RUST_BACKTRACE"),
        "{err}"
    );
    err
}

const POOL: &str = "apiVersion: workerpool.dev/v1alpha1
kind: WorkerPool
metadata: {name: p}
spec:
  scaleTargetRef: {name: w}
  minReplicas: 1
  maxReplicas: 10
  triggers:
    - name: orders
      redis: {url: \"redis://r:6379\", list: orders}
      targetPerReplica: 20
";
const TRACE: &str = "time,orders\n0,10\n5,100\n";

#[test]
fn good_inputs_used_by_the_error_tests_do_work() {
    let tmp = tempfile::tempdir().unwrap();
    let (pool, trace) = (tmp.path().join("pool.yaml"), tmp.path().join("trace.csv"));
    std::fs::write(&pool, POOL).unwrap();
    std::fs::write(&trace, TRACE).unwrap();
    let out = simulate(&pool, &trace, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "time,orders,current,desired,event\n0,10,1,1,\n5,100,1,5,ScaledOut\n"
    );
}

#[test]
fn unknown_field_is_named() {
    let e = expect_error(
        &POOL.replace("  minReplicas: 1\n", "  minReplicas: 1\n  minReplica: 2\n"),
        TRACE,
    );
    assert!(
        e.contains("spec.minReplica: unknown field `minReplica`") && e.contains("line 7"),
        "{e}"
    );
}

#[test]
fn min_above_max_is_named() {
    let e = expect_error(&POOL.replace("minReplicas: 1", "minReplicas: 12"), TRACE);
    assert!(e.contains("spec.maxReplicas"), "{e}");
}

#[test]
fn zero_target_per_replica_is_named() {
    let e = expect_error(
        &POOL.replace("targetPerReplica: 20", "targetPerReplica: 0"),
        TRACE,
    );
    assert!(e.contains("spec.triggers[0].targetPerReplica"), "{e}");
}

#[test]
fn list_and_stream_together_are_rejected() {
    let e = expect_error(
        &POOL.replace(
            "list: orders}",
            "list: orders, stream: {name: s, group: g}}",
        ),
        TRACE,
    );
    assert!(
        e.contains("spec.triggers[0].redis") && e.contains("exactly one of"),
        "{e}"
    );
}

#[test]
fn malformed_csv_names_the_line() {
    let e = expect_error(POOL, "time,orders\n0,10\n5,ten\n");
    assert!(e.contains("line 3"), "{e}");
    let e = expect_error(POOL, "time,orders\n0,10\n5,1,2\n");
    assert!(e.contains("line 3"), "{e}");
    let e = expect_error(POOL, "when,orders\n0,10\n");
    assert!(e.contains("line 1"), "{e}");
}

#[test]
fn trace_column_naming_no_trigger_is_rejected() {
    let e = expect_error(POOL, "time,orders,refunds\n0,10,1\n");
    assert!(e.contains("\"refunds\" names no trigger"), "{e}");
}

#[test]
fn wrong_type_and_missing_file_are_one_line_errors() {
    let e = expect_error(&POOL.replace("maxReplicas: 10", "maxReplicas: ten"), TRACE);
    assert!(e.contains("spec.maxReplicas"), "{e}");
    let e = expect_error("spec: [unclosed", TRACE);
    assert!(e.contains("YAML"), "{e}");
    let out = simulate(
        Path::new("/nonexistent/pool.yaml"),
        Path::new("/nonexistent.csv"),
        &[],
    );
    assert!(!out.status.success());
}

#[test]
fn check_prints_a_json_error_for_an_invalid_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let pool = dir.path().join("bad.yaml");
    std::fs::write(
        &pool,
        "apiVersion: workerpool.dev/v1alpha1\nkind: WorkerPool\nspec: {}\n",
    )
    .unwrap();
    let out = bin()
        .args(["check", "-f", pool.to_str().unwrap(), "--output", "json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert!(
        report["error"].as_str().is_some_and(|e| !e.is_empty()),
        "{report}"
    );
}

#[test]
fn boolean_flags_take_the_usual_spellings_from_the_environment() {
    for value in ["1", "yes", "true", "on", "0", "no", "false", "off"] {
        let out = bin()
            .args([
                "run",
                "--kubeconfig",
                "/nonexistent/kubeconfig",
                "--metrics-addr",
                "127.0.0.1:0",
            ])
            .env("LEADER_ELECTION", value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Parsing passed: the run fails later, on the missing kubeconfig.
        assert!(
            stderr.contains("/nonexistent/kubeconfig"),
            "LEADER_ELECTION={value}: {stderr}"
        );
    }
}
