//! "No write lost": once the depths stop changing, every pool whose depth
//! changed must end with its final replicas both on its Deployment and in
//! its WorkerPool status, read straight from the emulator's store.

use std::time::{Duration, Instant};

use kube_emulator::Emulator;

/// Pools whose final state is not (yet) what their last depth asks for.
#[derive(Debug, Default)]
pub struct Unsettled {
    /// Deployment `spec.replicas` wrong.
    pub deployment: Vec<usize>,
    /// WorkerPool `status.desiredReplicas` wrong.
    pub desired: Vec<usize>,
    /// WorkerPool `status.currentReplicas` wrong.
    pub current: Vec<usize>,
    /// Pools wrong in any of the three.
    pub pools: usize,
}

fn unsettled(emu: &Emulator, ns: &str, want: &[(usize, u64)]) -> Unsettled {
    let mut u = Unsettled::default();
    for &(i, replicas) in want {
        let replicas = Some(replicas);
        let deployment = emu
            .get_json("apps/v1/deployments", ns, &format!("w-{i}"))
            .and_then(|d| d["spec"]["replicas"].as_u64());
        let pool = emu.get_json("workerpool.dev/v1alpha1/workerpools", ns, &format!("p-{i}"));
        let status = |field: &str| pool.as_ref().and_then(|p| p["status"][field].as_u64());
        let mut wrong = false;
        for (got, list) in [
            (deployment, &mut u.deployment),
            (status("desiredReplicas"), &mut u.desired),
            (status("currentReplicas"), &mut u.current),
        ] {
            if got != replicas {
                list.push(i);
                wrong = true;
            }
        }
        u.pools += usize::from(wrong);
    }
    u
}

/// Polls until every pool in `want` (pool index, final replicas) is
/// settled. Gives up once `within` has passed and for `within` neither a
/// pool settled nor any write reached the server (`writes_seen`; a slow API
/// server still draining its backlog is not a lost write), or after `CAP`;
/// what is still wrong then is lost.
pub async fn wait_settled(
    emu: &Emulator,
    ns: &str,
    want: &[(usize, u64)],
    within: Duration,
    writes_seen: impl Fn() -> u64,
) -> (Unsettled, Duration) {
    const CAP: Duration = Duration::from_secs(180);
    let t = Instant::now();
    let mut last = (usize::MAX, writes_seen(), t);
    loop {
        let u = unsettled(emu, ns, want);
        let writes = writes_seen();
        if u.pools < last.0 || writes > last.1 {
            last = (u.pools.min(last.0), writes, Instant::now());
        }
        let stalled = t.elapsed() >= within && last.2.elapsed() >= within;
        if u.pools == 0 || stalled || t.elapsed() >= CAP {
            return (u, t.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// `writes lost: K of M changed pools (...)`.
pub fn describe(u: &Unsettled, changed: usize, waited: Duration) -> String {
    let first = |v: &[usize]| {
        v.first()
            .map_or(String::new(), |i| format!(", first p-{i}"))
    };
    format!(
        "writes lost: {} of {changed} changed pools (settled check waited {:.1}s; \
         Deployment replicas wrong {}{}, status.desiredReplicas wrong {}{}, \
         status.currentReplicas wrong {}{})",
        u.pools,
        waited.as_secs_f64(),
        u.deployment.len(),
        first(&u.deployment),
        u.desired.len(),
        first(&u.desired),
        u.current.len(),
        first(&u.current),
    )
}
