//! `simulate` with a `busyPods` column: the keepBusy limit replayed through
//! the exact decision, as a user runs the binary.

use std::process::Command;

fn simulate(pool: &str, trace: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let (p, t) = (dir.path().join("pool.yaml"), dir.path().join("trace.csv"));
    std::fs::write(&p, pool).unwrap();
    std::fs::write(&t, trace).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_workerpool-operator"))
        .args(["simulate", "-f"])
        .arg(&p)
        .arg("--trace")
        .arg(&t)
        .args(["--start", "6"])
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (out.status.success(), text(out.stdout), text(out.stderr))
}

fn pool(scale_in: &str) -> String {
    format!(
        "apiVersion: workerpool.dev/v1alpha1
kind: WorkerPool
metadata: {{name: reports}}
spec:
  scaleTargetRef: {{name: reports-worker}}
  minReplicas: 1
  maxReplicas: 10
  triggers:
    - name: reports
      redis: {{url: 'redis://127.0.0.1:6379/0', rq: {{queue: reports}}}}
      targetPerReplica: 1
  behavior:
    scaleDown: {{stabilizationWindowSeconds: 0}}
{scale_in}"
    )
}

const KEEP: &str = "  scaleIn: {busySignal: {rq: {trigger: reports}}}\n";

#[test]
fn busy_pods_hold_the_scale_in_until_their_work_is_done() {
    // 6 replicas, queue drained, 2 pods busy; then one poll whose busy read
    // fails (held), then none busy (down to the minimum).
    let trace = "time,reports,busyPods\n0,6,0\n15,0,2\n30,0,2\n45,0,\n60,0,0\n";
    let (ok, out, err) = simulate(&pool(KEEP), trace);
    assert!(ok, "{err}");
    let want = "time,reports,busyPods,current,desired,event
0,6,0,6,6,
15,0,2,6,2,ScaledIn
30,0,2,2,2,
45,0,,2,2,
60,0,0,2,1,ScaledIn
";
    assert_eq!(out, want);
}

#[test]
fn without_keep_busy_the_column_does_not_hold() {
    let scale_in = "  scaleIn: {busySignal: {rq: {trigger: reports}}, keepBusy: false}\n";
    let (ok, out, err) = simulate(&pool(scale_in), "time,reports,busyPods\n0,0,2\n");
    assert!(ok, "{err}");
    assert!(out.ends_with("0,0,2,6,1,ScaledIn\n"), "{out}");
}

#[test]
fn a_busy_column_is_checked() {
    let (ok, _, err) = simulate(&pool(""), "time,reports,busyPods\n0,0,2\n");
    assert!(!ok);
    assert!(err.contains("column busyPods needs spec.scaleIn"), "{err}");
    let (ok, _, err) = simulate(&pool(KEEP), "time,reports,busyPods\n0,0,1.5\n");
    assert!(!ok);
    assert!(
        err.contains("busyPods value \"1.5\" must be a whole number >= 0"),
        "{err}"
    );
}
