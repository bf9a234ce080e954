//! The `simulate` trace parser (src/cli/trace.rs) on arbitrary bytes, and
//! every trace it accepts replayed through the decision with a fixed pool:
//! neither may panic, and a replay stays within [minReplicas, maxReplicas].
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use workerpool_operator::cli::{manifest, simulate, trace};
use workerpool_operator::decision::Policy;

const POOL: &str = r#"
apiVersion: workerpool.dev/v1alpha1
kind: WorkerPool
metadata: {name: fuzz}
spec:
  scaleTargetRef: {name: w}
  minReplicas: 0
  maxReplicas: 40
  cooldownSeconds: 30
  fallback: {failureThreshold: 2, replicas: 5}
  triggers:
    - name: a
      redis: {url: "redis://r:6379", list: q}
      targetPerReplica: 20
    - name: b
      prometheus: {url: "http://p:9090", query: "sum(x)"}
      targetPerReplica: 0.5
      activationThreshold: 1
"#;

fn policy() -> &'static Policy {
    static P: OnceLock<Policy> = OnceLock::new();
    P.get_or_init(|| manifest::parse(POOL).expect("the fuzz pool is valid").1)
}

fuzz_target!(|data: &[u8]| {
    let Ok(t) = trace::parse(data) else { return };
    let policy = policy();
    if t.columns.len() != policy.triggers.len() {
        return;
    }
    for start in [0, 3, policy.max_replicas] {
        if let Ok(steps) = simulate::simulate(policy, &t, start) {
            let mut out = Vec::new();
            let _ = simulate::write_csv(&mut out, policy, &t, &steps);
        }
    }
});
