//! kube-rs runtime against the emulator: a `watcher` and a `Controller`
//! over a custom resource under a steady stream of updates, for
//! `EMU_SOAK_SECS` seconds (default 10), with no errors and exactly one
//! initial list per watcher unless a watch is deliberately dropped.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use futures::StreamExt;
use kube::api::{
    Api as KubeApi, ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{watcher, WatchStreamExt};
use kube_emulator::{Config, Emulator, Verb};
use serde_json::json;

#[derive(Default)]
struct Counters {
    watch_events: AtomicUsize,
    watch_errors: AtomicUsize,
    reconciles: AtomicUsize,
    reconcile_errors: AtomicUsize,
    updates: AtomicUsize,
}

struct Ctx {
    api: KubeApi<DynamicObject>,
    counters: Arc<Counters>,
}

async fn reconcile(obj: Arc<DynamicObject>, ctx: Arc<Ctx>) -> Result<Action, kube::Error> {
    ctx.counters.reconciles.fetch_add(1, Ordering::Relaxed);
    let name = obj.metadata.name.clone().unwrap_or_default();
    let replicas = obj.data["spec"]["replicas"].as_i64().unwrap_or(0);
    if obj.data["status"]["replicas"].as_i64() != Some(replicas) {
        let status = Patch::Merge(json!({"status": {"replicas": replicas}}));
        ctx.api
            .patch_status(&name, &PatchParams::default(), &status)
            .await?;
    }
    Ok(Action::requeue(Duration::from_secs(300)))
}

fn error_policy(_obj: Arc<DynamicObject>, err: &kube::Error, ctx: Arc<Ctx>) -> Action {
    eprintln!("reconcile error: {err}");
    ctx.counters
        .reconcile_errors
        .fetch_add(1, Ordering::Relaxed);
    Action::requeue(Duration::from_secs(1))
}

fn soak_duration() -> Duration {
    let secs = std::env::var("EMU_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    Duration::from_secs(secs)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kube_rs_watcher_and_controller_run_clean_under_steady_updates() {
    let config = Config {
        bookmark_interval: Duration::from_secs(1),
        ..Config::default()
    };
    let emu = Emulator::start_with(config).await.expect("emulator starts");
    install_widgets(&Api::new(&emu)).await;
    let client = emu.client().expect("client");
    let ar = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.dev", "v1", "Widget"),
        "widgets",
    );
    let api: KubeApi<DynamicObject> = KubeApi::namespaced_with(client.clone(), "default", &ar);
    const N: usize = 8;
    for i in 0..N {
        let obj: DynamicObject =
            serde_json::from_value(widget(&format!("w{i}"), 1)).expect("object");
        api.create(&PostParams::default(), &obj)
            .await
            .expect("created");
    }
    emu.requests().clear();
    let counters = Arc::new(Counters::default());

    let watch_counters = counters.clone();
    let watch_stream = watcher(api.clone(), watcher::Config::default()).default_backoff();
    let watch_task = tokio::spawn(async move {
        futures::pin_mut!(watch_stream);
        while let Some(ev) = watch_stream.next().await {
            match ev {
                Ok(_) => watch_counters.watch_events.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    eprintln!("watcher error: {e}");
                    watch_counters.watch_errors.fetch_add(1, Ordering::Relaxed)
                }
            };
        }
    });

    let ctx = Arc::new(Ctx {
        api: api.clone(),
        counters: counters.clone(),
    });
    let run_counters = counters.clone();
    let controller = Controller::new_with(api.clone(), watcher::Config::default(), ar.clone())
        .run(reconcile, error_policy, ctx)
        .for_each(move |res| {
            if let Err(e) = res {
                eprintln!("controller error: {e}");
                run_counters
                    .reconcile_errors
                    .fetch_add(1, Ordering::Relaxed);
            }
            futures::future::ready(())
        });
    let controller_task = tokio::spawn(controller);

    // Steady updates: one spec change every 50 ms, spread over the objects.
    let duration = soak_duration();
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    let mut n = 0usize;
    let mut dropped_watches = false;
    while started.elapsed() < duration {
        tick.tick().await;
        let name = format!("w{}", n % N);
        let patch = Patch::Merge(json!({"spec": {"replicas": (n % 5) as i64}}));
        api.patch(&name, &PatchParams::default(), &patch)
            .await
            .expect("update");
        counters.updates.fetch_add(1, Ordering::Relaxed);
        n += 1;
        // Halfway: drop every watch once; clients must resume, not re-list.
        if !dropped_watches && started.elapsed() > duration / 2 {
            emu.faults().close_watches();
            dropped_watches = true;
        }
    }

    // Converges: every status mirrors its spec.
    eventually(secs(20), "status to catch up with spec", || {
        let emu = &emu;
        async move {
            let all = emu.list_json("example.dev/v1/widgets", Some("default"));
            all.iter()
                .all(|w| w["status"]["replicas"] == w["spec"]["replicas"])
                .then_some(())
        }
    })
    .await;

    let lists = emu.requests().count_verb(Verb::List, "/widgets");
    let watches = emu.requests().count_verb(Verb::Watch, "/widgets");
    assert_eq!(
        counters.watch_errors.load(Ordering::Relaxed),
        0,
        "watcher errors"
    );
    assert_eq!(
        counters.reconcile_errors.load(Ordering::Relaxed),
        0,
        "reconcile errors"
    );
    let trail: Vec<String> = emu
        .requests()
        .all()
        .iter()
        .filter(|r| matches!(r.verb, Some(Verb::List | Verb::Watch)) && r.path.contains("/widgets"))
        .map(|r| {
            format!(
                "{:?} {} {} {}",
                r.verb,
                r.code,
                r.query,
                r.user_agent.clone().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        lists, 2,
        "one initial list per watcher (watcher + controller), no re-lists: {trail:#?}"
    );
    assert!(
        watches >= 4,
        "both watchers re-watched after the drop: {watches}"
    );
    assert!(counters.reconciles.load(Ordering::Relaxed) > 0);
    assert!(
        counters.watch_events.load(Ordering::Relaxed)
            >= counters.updates.load(Ordering::Relaxed) / 2
    );

    // While the server is down, history is compacted past what the
    // watchers saw: their re-watch gets 410 Gone, and each re-lists. A
    // re-list that lands while kube's watcher backs off after the outage
    // may be retried once, so each watcher lists once or twice more.
    emu.faults()
        .refuse_connections(Duration::from_secs(1))
        .await;
    emu.create_json("example.dev/v1/widgets", "default", widget("late", 2))
        .expect("created behind the watchers' backs");
    emu.faults().compact();
    eventually(secs(30), "both watchers to re-list after 410", || {
        let emu = &emu;
        async move { (emu.requests().count_verb(Verb::List, "/widgets") >= 4).then_some(()) }
    })
    .await;
    eventually(
        secs(20),
        "the controller to reconcile the late object",
        || {
            let emu = &emu;
            async move {
                let late = emu.get_json("example.dev/v1/widgets", "default", "late")?;
                (late["status"]["replicas"] == 2).then_some(())
            }
        },
    )
    .await;
    let lists = emu.requests().count_verb(Verb::List, "/widgets");
    assert!(
        (4..=6).contains(&lists),
        "after the 410 each watcher re-lists, once or twice: {lists} LISTs in all"
    );

    watch_task.abort();
    controller_task.abort();
}
