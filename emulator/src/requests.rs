//! Observation: the request log and a live feed of writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use crate::router::Verb;
use crate::state::Shared;

/// One handled request.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    /// When the request arrived.
    pub at: Instant,
    pub method: String,
    /// None for discovery and for methods the path does not allow.
    pub verb: Option<Verb>,
    pub path: String,
    pub query: String,
    pub content_type: Option<String>,
    pub user_agent: Option<String>,
    /// The response status (200 for a watch that was started).
    pub code: u16,
    /// Time to the response head (for a watch: to the stream start).
    pub elapsed: Duration,
}

/// A write request (create, update, patch, delete), as it completed.
#[derive(Debug, Clone)]
pub struct WriteRecord {
    /// When the request arrived.
    pub at: Instant,
    pub verb: Verb,
    pub path: String,
    pub code: u16,
}

/// Test-side access to the request log.
#[derive(Clone)]
pub struct Requests(pub(crate) Arc<Shared>);

impl Requests {
    pub fn all(&self) -> Vec<RequestRecord> {
        self.0.log.lock().clone()
    }

    pub fn clear(&self) {
        self.0.log.lock().clear();
    }

    /// Requests with this HTTP method whose path contains `path_contains`.
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.0
            .log
            .lock()
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path.contains(path_contains))
            .count()
    }

    /// Requests of this API verb whose path contains `path_contains`.
    pub fn count_verb(&self, verb: Verb, path_contains: &str) -> usize {
        self.0
            .log
            .lock()
            .iter()
            .filter(|r| r.verb == Some(verb) && r.path.contains(path_contains))
            .count()
    }

    /// Every future write, as it completes (lagging receivers lose the oldest).
    pub fn subscribe_writes(&self) -> broadcast::Receiver<WriteRecord> {
        self.0.writes.subscribe()
    }
}
