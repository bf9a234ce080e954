//! WorkerPool deserialisation and validation (src/api, src/cli/manifest.rs)
//! on arbitrary YAML and JSON; every spec that validates is then put
//! through the decision with extreme readings. Nothing may panic, and a
//! decision always lands within [minReplicas, maxReplicas].
#![no_main]

use libfuzzer_sys::fuzz_target;
use workerpool_operator::api::{validate, WorkerPoolSpec};
use workerpool_operator::cli::manifest;
use workerpool_operator::decision::{decide, History, Policy, Reading};

fn exercise(policy: &Policy, seed: &[u8]) {
    let values = [
        0.0,
        1.0,
        f64::MAX,
        -f64::MAX,
        f64::MIN_POSITIVE,
        f64::NAN,
        f64::INFINITY,
        1e300,
        -1.0,
        12345.678,
    ];
    let mut history = History::default();
    let mut current = policy.min_replicas;
    let mut now: i64 = 0;
    for (step, b) in seed.iter().take(32).enumerate() {
        let readings: Vec<Reading> = (0..policy.triggers.len())
            .map(|i| {
                let pick = (usize::from(*b) + i * 7 + step) % (values.len() + 1);
                values
                    .get(pick)
                    .map_or_else(|| Reading::Failed("down".into()), |v| Reading::Value(*v))
            })
            .collect();
        let current_in = if b & 0x80 != 0 { i32::MAX } else { current };
        let d = decide(policy, now, current_in, &readings, &history);
        assert!(
            (policy.min_replicas..=policy.max_replicas).contains(&d.desired),
            "desired {} outside [{}, {}]",
            d.desired,
            policy.min_replicas,
            policy.max_replicas
        );
        history.commit(policy, &d, now, d.desired != d.current);
        current = d.desired;
        now = now.saturating_add(i64::from(*b) * 997);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((_, policy)) = manifest::parse(text) {
        exercise(&policy, data);
    }
    if let Ok(spec) = serde_json::from_slice::<WorkerPoolSpec>(data) {
        if let Ok(policy) = validate(&spec) {
            exercise(&policy, data);
        }
    }
});
