//! Fault injection, driven by tests through [`Faults`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::router::Verb;
use crate::state::{Outage, Shared};
use crate::status::ApiError;

/// Which requests a rule applies to: a verb (None = any), a substring
/// of the URL path (empty = any) and the client's exact `User-Agent`
/// (None = any client; one client only, to partition one of several).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matcher {
    pub verb: Option<Verb>,
    pub path_contains: String,
    pub user_agent: Option<String>,
}

impl Matcher {
    pub fn new(verb: Option<Verb>, path_contains: &str) -> Self {
        Matcher {
            verb,
            path_contains: path_contains.to_string(),
            user_agent: None,
        }
    }

    /// A rule for the requests of one client only.
    pub fn for_client(user_agent: &str, verb: Option<Verb>, path_contains: &str) -> Self {
        Matcher {
            user_agent: Some(user_agent.to_string()),
            ..Matcher::new(verb, path_contains)
        }
    }

    /// Whether a request (from `user_agent`, if known) is one this rule names.
    pub fn matches_client(&self, verb: Option<Verb>, path: &str, user_agent: Option<&str>) -> bool {
        self.verb.is_none_or(|v| Some(v) == verb)
            && path.contains(&self.path_contains)
            && self
                .user_agent
                .as_deref()
                .is_none_or(|ua| Some(ua) == user_agent)
    }
}

#[derive(Debug, Clone)]
struct Forced {
    matcher: Matcher,
    code: u16,
    retry_after: Option<u64>,
    remaining: usize,
}

/// The active rules.
#[derive(Debug, Default)]
pub struct FaultRules {
    latency: Vec<(Matcher, Duration)>,
    forced: Vec<Forced>,
}

impl FaultRules {
    /// The added latency of a request from `user_agent` (rules add up).
    pub fn delay_for(&self, verb: Option<Verb>, path: &str, user_agent: Option<&str>) -> Duration {
        self.latency
            .iter()
            .filter(|(m, _)| m.matches_client(verb, path, user_agent))
            .map(|(_, d)| *d)
            .sum()
    }

    /// The forced failure for this request, consuming one use of the rule.
    #[cfg(test)]
    pub fn take_forced(&mut self, verb: Option<Verb>, path: &str) -> Option<ApiError> {
        self.take_forced_for(verb, path, None)
    }

    /// The forced failure for a request from `user_agent`, consuming one
    /// use of the rule.
    pub fn take_forced_for(
        &mut self,
        verb: Option<Verb>,
        path: &str,
        user_agent: Option<&str>,
    ) -> Option<ApiError> {
        let rule = self
            .forced
            .iter_mut()
            .find(|f| f.remaining > 0 && f.matcher.matches_client(verb, path, user_agent))?;
        rule.remaining -= 1;
        let err = ApiError::injected(rule.code, rule.retry_after);
        self.forced.retain(|f| f.remaining > 0);
        Some(err)
    }
}

/// Test-side control of injected faults.
#[derive(Clone)]
pub struct Faults(pub(crate) Arc<Shared>);

impl Faults {
    /// Delays every matching request by `delay` before it is handled.
    pub fn add_latency(&self, verb: Option<Verb>, path_contains: &str, delay: Duration) {
        self.0
            .faults
            .lock()
            .latency
            .push((Matcher::new(verb, path_contains), delay));
    }

    /// Answers the next `times` matching requests with `code` (a `Status`
    /// body whose reason matches the code) instead of handling them.
    pub fn fail_next(&self, verb: Option<Verb>, path_contains: &str, code: u16, times: usize) {
        self.push_forced(verb, path_contains, code, None, times);
    }

    /// As [`Faults::add_latency`], for the requests of the client whose
    /// `User-Agent` is `user_agent` only (a slow link to one replica).
    pub fn add_latency_for(
        &self,
        user_agent: &str,
        verb: Option<Verb>,
        path_contains: &str,
        delay: Duration,
    ) {
        self.0
            .faults
            .lock()
            .latency
            .push((Matcher::for_client(user_agent, verb, path_contains), delay));
    }

    /// As [`Faults::fail_next`], for the requests of the client whose
    /// `User-Agent` is `user_agent` only.
    pub fn fail_next_for(
        &self,
        user_agent: &str,
        verb: Option<Verb>,
        path_contains: &str,
        code: u16,
        times: usize,
    ) {
        self.0.faults.lock().forced.push(Forced {
            matcher: Matcher::for_client(user_agent, verb, path_contains),
            code,
            retry_after: None,
            remaining: times,
        });
    }

    /// Answers the next `times` matching requests with 429 TooManyRequests
    /// and `Retry-After: retry_after_secs`.
    pub fn throttle_next(
        &self,
        verb: Option<Verb>,
        path_contains: &str,
        retry_after_secs: u64,
        times: usize,
    ) {
        self.push_forced(verb, path_contains, 429, Some(retry_after_secs), times);
    }

    fn push_forced(
        &self,
        verb: Option<Verb>,
        path_contains: &str,
        code: u16,
        retry_after: Option<u64>,
        times: usize,
    ) {
        self.0.faults.lock().forced.push(Forced {
            matcher: Matcher::new(verb, path_contains),
            code,
            retry_after,
            remaining: times,
        });
    }

    /// Removes every latency and forced-status rule.
    pub fn clear(&self) {
        *self.0.faults.lock() = FaultRules::default();
    }

    /// Forced failures not yet used up.
    pub fn pending_failures(&self) -> usize {
        self.0
            .faults
            .lock()
            .forced
            .iter()
            .map(|f| f.remaining)
            .sum()
    }

    /// Ends every open watch stream now (clients see the response end, as
    /// when an apiserver restarts or times a watch out).
    pub fn close_watches(&self) {
        self.0.close_watches.send_modify(|n| *n += 1);
    }

    /// Closes the listener and every open connection, refuses connections
    /// for `duration`, then listens again on the same port. Returns once
    /// the port is closed.
    pub async fn refuse_connections(&self, duration: Duration) {
        let (tx, rx) = oneshot::channel();
        let outage = Outage {
            duration,
            closed: tx,
        };
        if self.0.outages.send(outage).is_ok() {
            let _ = rx.await;
        }
    }

    /// Compacts the event history at the current revision: watches and
    /// exact lists from any older resourceVersion get 410 Gone.
    pub fn compact(&self) {
        self.0.store.lock().compact();
    }
}

#[cfg(test)]
mod test {
    use super::*;

    #[test]
    fn forced_rules_are_used_up() {
        let mut rules = FaultRules::default();
        rules.forced.push(Forced {
            matcher: Matcher::new(Some(Verb::Patch), "/scale"),
            code: 409,
            retry_after: None,
            remaining: 2,
        });
        assert!(rules.take_forced(Some(Verb::Get), "/x/scale").is_none());
        assert_eq!(
            rules
                .take_forced(Some(Verb::Patch), "/x/scale")
                .map(|e| e.code),
            Some(409)
        );
        assert!(rules.take_forced(Some(Verb::Patch), "/x/scale").is_some());
        assert!(rules.take_forced(Some(Verb::Patch), "/x/scale").is_none());
    }

    #[test]
    fn client_rules_match_that_client_only() {
        let mut rules = FaultRules::default();
        rules.forced.push(Forced {
            matcher: Matcher::for_client("op-b", Some(Verb::Patch), "/leases/"),
            code: 500,
            retry_after: None,
            remaining: 1,
        });
        rules.latency.push((
            Matcher::for_client("op-b", None, "/leases/"),
            Duration::from_millis(300),
        ));
        assert!(rules.take_forced(Some(Verb::Patch), "/leases/l").is_none());
        assert!(rules
            .take_forced_for(Some(Verb::Patch), "/leases/l", Some("op-a"))
            .is_none());
        assert_eq!(
            rules.delay_for(None, "/leases/l", Some("op-a")),
            Duration::ZERO
        );
        assert_eq!(
            rules.delay_for(None, "/leases/l", Some("op-b")),
            Duration::from_millis(300)
        );
        assert!(rules
            .take_forced_for(Some(Verb::Patch), "/leases/l", Some("op-b"))
            .is_some());
    }
}
