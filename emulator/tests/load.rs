//! The emulator holds benchmark-sized state: 5,000 Deployments and 5,000
//! custom resources, with gets, scale patches and lists staying fast.

mod common;

use std::time::{Duration, Instant};

use common::*;
use futures::StreamExt;
use kube_emulator::Emulator;

const EACH: usize = 5_000;
const CONCURRENCY: usize = 16;

async fn run_all<F, Fut>(n: usize, f: F) -> Duration
where
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = u16>,
{
    let t = Instant::now();
    let codes: Vec<u16> = futures::stream::iter(0..n)
        .map(f)
        .buffer_unordered(CONCURRENCY)
        .collect()
        .await;
    assert!(
        codes.iter().all(|c| (200..300).contains(c)),
        "all requests succeed"
    );
    t.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_objects_are_served_without_per_request_slowdown() {
    let emu = Emulator::start().await.expect("emulator starts");
    let api = Api::new(&emu);
    install_widgets(&api).await;

    let create_deploys = run_all(EACH, |i| {
        let api = &api;
        async move { api.post(DEPLOY, &deployment(&format!("d{i}"), 1)).await.0 }
    })
    .await;
    let create_widgets = run_all(EACH, |i| {
        let api = &api;
        async move { api.post(WIDGETS, &widget(&format!("w{i}"), 1)).await.0 }
    })
    .await;
    let scales = run_all(EACH, |i| {
        let api = &api;
        async move {
            api.patch(
                &format!("{DEPLOY}/d{i}/scale"),
                MERGE,
                r#"{"spec":{"replicas":2}}"#,
            )
            .await
            .0
        }
    })
    .await;
    let gets = run_all(EACH, |i| {
        let api = &api;
        async move { api.get(&format!("{WIDGETS}/w{i}")).await.0 }
    })
    .await;
    let t = Instant::now();
    let (code, list) = api.get(DEPLOY).await;
    let list_time = t.elapsed();
    assert_eq!(code, 200);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(EACH));

    eprintln!(
        "create deployments {create_deploys:?}, create widgets {create_widgets:?}, \
         scale patches {scales:?}, widget gets {gets:?}, list of {EACH} {list_time:?}"
    );
    // Generous bounds for unoptimized builds on two cores; a per-request
    // cost growing with the object count would blow far past them.
    for (what, took) in [
        ("creates", create_deploys),
        ("widget creates", create_widgets),
        ("scales", scales),
        ("gets", gets),
    ] {
        assert!(took < Duration::from_secs(60), "{what} took {took:?}");
    }
    assert!(
        list_time < Duration::from_secs(10),
        "list took {list_time:?}"
    );
}
