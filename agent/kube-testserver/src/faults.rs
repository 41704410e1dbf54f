//! Fault injection: rules armed by a test that make chosen requests fail.
//!
//! A [`Fault`] matches requests by method (or any) and a substring of the request target
//! (path and query, e.g. `/configmaps/c` or `watch=true`), fires on the next `times`
//! matching requests, then disarms itself. Rules are tried in the order armed; the first
//! one with shots left fires.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

/// What a fault does to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this HTTP status and a matching `Status` body (500 `InternalError`,
    /// 503 `ServiceUnavailable`, 429 `TooManyRequests`, 504 `Timeout`, ...).
    Status(u16),
    /// Wait, then serve the request normally.
    Delay(Duration),
    /// Close the connection without answering.
    Drop,
    /// Answer 409 `Conflict` as for a stale resourceVersion.
    Conflict,
}

/// A fault rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    method: Option<String>,
    target: String,
    times: usize,
    action: FaultAction,
}

impl Fault {
    /// Requests with this method (`GET`, `PATCH`, ...) whose path and query contain
    /// `target`. Fires once with a 500 unless told otherwise.
    pub fn on(method: &str, target: &str) -> Fault {
        Fault {
            method: Some(method.to_ascii_uppercase()),
            target: target.to_string(),
            times: 1,
            action: FaultAction::Status(500),
        }
    }

    /// Requests of any method whose path and query contain `target`.
    pub fn any(target: &str) -> Fault {
        Fault {
            method: None,
            ..Fault::on("GET", target)
        }
    }

    /// Fire on the next `n` matching requests.
    pub fn times(mut self, n: usize) -> Fault {
        self.times = n;
        self
    }

    pub fn status(mut self, code: u16) -> Fault {
        self.action = FaultAction::Status(code);
        self
    }

    pub fn delay(mut self, d: Duration) -> Fault {
        self.action = FaultAction::Delay(d);
        self
    }

    pub fn drop_connection(mut self) -> Fault {
        self.action = FaultAction::Drop;
        self
    }

    pub fn conflict(mut self) -> Fault {
        self.action = FaultAction::Conflict;
        self
    }

    fn matches(&self, method: &str, target: &str) -> bool {
        self.times > 0
            && self.method.as_deref().is_none_or(|m| m == method)
            && target.contains(&self.target)
    }
}

#[derive(Debug, Default)]
struct Rules {
    armed: Vec<Fault>,
    fired: usize,
}

/// The server's fault rules; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct Faults {
    inner: Arc<Mutex<Rules>>,
}

impl Faults {
    fn lock(&self) -> std::sync::MutexGuard<'_, Rules> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Arm a rule.
    pub fn arm(&self, fault: Fault) {
        self.lock().armed.push(fault);
    }

    /// Disarm every rule.
    pub fn clear(&self) {
        self.lock().armed.clear();
    }

    /// Shots left across all rules.
    pub fn remaining(&self) -> usize {
        self.lock().armed.iter().map(|f| f.times).sum()
    }

    /// Faults fired so far.
    pub fn fired(&self) -> usize {
        self.lock().fired
    }

    /// The action for a request, using up one shot of the first matching rule.
    pub(crate) fn take(&self, method: &str, target: &str) -> Option<FaultAction> {
        let mut rules = self.lock();
        let rule = rules.armed.iter_mut().find(|f| f.matches(method, target))?;
        rule.times -= 1;
        let action = rule.action.clone();
        rules.armed.retain(|f| f.times > 0);
        rules.fired += 1;
        Some(action)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_fire_then_disarm() {
        let f = Faults::default();
        f.arm(Fault::on("patch", "/configmaps/c").times(2).status(503));
        assert_eq!(f.take("GET", "/api/v1/namespaces/x/configmaps/c"), None);
        assert_eq!(
            f.take("PATCH", "/api/v1/namespaces/x/configmaps/c?force=true"),
            Some(FaultAction::Status(503))
        );
        assert_eq!(f.remaining(), 1);
        assert!(
            f.take("PATCH", "/api/v1/namespaces/x/configmaps/c")
                .is_some()
        );
        assert_eq!(f.take("PATCH", "/api/v1/namespaces/x/configmaps/c"), None);
        assert_eq!(f.fired(), 2);
    }
}
