//! The emulator's write feed, tallied: reactions (depth change to the
//! pool's `/scale` PATCH), unexpected scales, and API writes by kind.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube_emulator::{Emulator, Verb, WriteRecord};

/// Shared between the depth changer and the write-feed reader.
#[derive(Default)]
pub struct Tally {
    pub measuring: bool,
    /// Pool index -> when its depth was changed (not yet reacted to).
    pub pending: HashMap<usize, Instant>,
    pub reactions: Vec<Duration>,
    /// Slowest reactions: (pool, when changed, reaction).
    pub slow: Vec<(usize, Instant, Duration)>,
    /// Pool index -> last /scale PATCH seen (to explain unexpected ones).
    pub last_scale: HashMap<usize, Instant>,
    /// Unexpected scales: (pool, time since that pool's previous PATCH).
    pub unexpected: Vec<(usize, Option<Duration>)>,
    pub unexpected_scales: u64,
    pub scale_patches: u64,
    pub status_writes: u64,
    pub events: u64,
    pub other_writes: u64,
    pub failed_writes: u64,
    pub lost: u64,
    /// Status writes per whole second of the window (to show bursts).
    pub status_per_s: HashMap<u64, u64>,
    pub t0: Option<Instant>,
    /// Every write seen, in or out of the window (to tell a slow API server
    /// still draining from one that stopped).
    pub writes_seen: u64,
}

/// Tallies the emulator's writes from now on, and keeps its request log
/// small (it keeps every request).
pub fn spawn(emu: &Emulator) -> Arc<Mutex<Tally>> {
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut feed = emu.requests().subscribe_writes();
    let feed_tally = tally.clone();
    tokio::spawn(async move {
        use tokio::sync::broadcast::error::RecvError;
        loop {
            match feed.recv().await {
                Ok(w) => record(&mut feed_tally.lock().unwrap(), &w),
                Err(RecvError::Lagged(k)) => feed_tally.lock().unwrap().lost += k,
                Err(RecvError::Closed) => return,
            }
        }
    });
    let requests = emu.requests();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            requests.clear();
        }
    });
    tally
}

fn record(t: &mut Tally, w: &WriteRecord) {
    t.writes_seen += 1;
    let scale = w.verb == Verb::Patch && w.path.ends_with("/scale");
    if scale && w.code < 400 {
        record_scale(t, w);
    }
    if !t.measuring {
        return;
    }
    if w.code >= 400 {
        t.failed_writes += 1;
    } else if scale {
        t.scale_patches += 1;
    } else if w.path.contains("/workerpools/") && w.path.ends_with("/status") {
        t.status_writes += 1;
        if let Some(t0) = t.t0 {
            *t.status_per_s
                .entry(w.at.saturating_duration_since(t0).as_secs())
                .or_default() += 1;
        }
    } else if w.path.contains("/events") {
        t.events += 1;
    } else {
        t.other_writes += 1;
    }
}

/// A successful `/scale` PATCH: the reaction to a pending change, or an
/// unexpected scale.
fn record_scale(t: &mut Tally, w: &WriteRecord) {
    // .../deployments/w-<i>/scale
    let idx = w
        .path
        .rsplit('/')
        .nth(1)
        .and_then(|s| s.strip_prefix("w-"))
        .and_then(|s| s.parse::<usize>().ok());
    let prev = idx.and_then(|i| t.last_scale.insert(i, w.at));
    match idx.and_then(|i| t.pending.remove(&i).map(|at| (i, at))) {
        Some((i, at)) => {
            let r = w.at.saturating_duration_since(at);
            if t.measuring {
                t.reactions.push(r);
                t.slow.push((i, at, r));
                t.slow.sort_by_key(|s| std::cmp::Reverse(s.2));
                t.slow.truncate(8);
            }
        }
        None if t.measuring => {
            t.unexpected_scales += 1;
            if t.unexpected.len() < 8 {
                let since = prev.map(|p| w.at.saturating_duration_since(p));
                t.unexpected.push((idx.unwrap_or(usize::MAX), since));
            }
        }
        None => {}
    }
}
