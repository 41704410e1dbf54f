//! Push webhooks: checking that a request comes from the forge, and whether it concerns the
//! tracked branch. Pure.
//!
//! - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`;
//! - Gitea and Forgejo: `X-Gitea-Signature` (or `X-Forgejo-Signature`, `X-Gogs-Signature`):
//!   `<hex HMAC-SHA256 of the body>`;
//! - GitLab: `X-Gitlab-Token: <the shared secret>`, compared in constant time.
//!
//! With forge `none`, any of the three is accepted. A hook never carries what to apply: it only
//! wakes the loop, which fetches from the configured remote. So the payload is read for one
//! thing only: its `ref`, to ignore pushes to other branches.
//!
//! A signature covers the body, not the time: a recorded delivery stays valid. So deliveries
//! are also de-duplicated by their ID ([`delivery_id`], [`Deliveries`]): a replay within the
//! window is answered and ignored. (Outside it, a replay can only wake the loop, whose wakes
//! are coalesced and spaced.)

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::Sha256;

/// The headers naming a delivery: GitHub, Gitea, Forgejo, Gogs; GitLab's per-event UUID.
const DELIVERY_HEADERS: &[&str] = &[
    "X-GitHub-Delivery",
    "X-Gitea-Delivery",
    "X-Forgejo-Delivery",
    "X-Gogs-Delivery",
    "X-Gitlab-Event-UUID",
];

/// The forge's ID of a delivery, if it sent one (bounded to 200 bytes).
pub fn delivery_id(headers: &[(String, String)]) -> Option<String> {
    DELIVERY_HEADERS
        .iter()
        .find_map(|h| header(headers, h))
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(str::to_owned)
}

/// The IDs seen, and when, oldest first.
type Seen = (HashSet<String>, VecDeque<(Instant, String)>);

/// Delivery IDs seen within a window (at most `cap` of them, oldest forgotten first).
#[derive(Debug)]
pub struct Deliveries {
    window: Duration,
    cap: usize,
    seen: Mutex<Seen>,
}

impl Default for Deliveries {
    /// One hour, 10,000 IDs (forges retry failed deliveries within minutes).
    fn default() -> Deliveries {
        Deliveries::new(Duration::from_secs(3600), 10_000)
    }
}

impl Deliveries {
    pub fn new(window: Duration, cap: usize) -> Deliveries {
        Deliveries {
            window,
            cap: cap.max(1),
            seen: Mutex::new((HashSet::new(), VecDeque::new())),
        }
    }

    /// Whether `id` is new (then it is remembered); `false` for a replay within the window.
    pub fn first(&self, id: &str, now: Instant) -> bool {
        let mut g = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (set, order) = &mut *g;
        while let Some((t, old)) = order.front() {
            if now.saturating_duration_since(*t) <= self.window && order.len() < self.cap {
                break;
            }
            set.remove(old);
            order.pop_front();
        }
        if set.contains(id) {
            return false;
        }
        set.insert(id.to_owned());
        order.push_back((now, id.to_owned()));
        true
    }
}

/// A forge, as far as hooks and statuses are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    GitHub,
    GitLab,
    Gitea,
    None,
}

/// Why a hook was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No signature or token header at all.
    Unsigned,
    /// A signature or token that does not match.
    BadSignature,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Refused::Unsigned => "no signature header",
            Refused::BadSignature => "the signature does not match",
        })
    }
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn hmac_ok(secret: &[u8], body: &[u8], hex: &str) -> bool {
    let Some(sig) = decode_hex(hex) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Equality that takes the same time wherever the first difference is.
fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (x, y) in a.iter().zip(b.iter().cycle()) {
        diff |= x ^ y;
    }
    diff == 0 && !b.is_empty()
}

/// HMAC-SHA256 of `body`, hex: what a forge signs (for tests and tools).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(body);
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Check a hook's signature. `headers` are (name, value) pairs.
pub fn verify(
    forge: Forge,
    secret: &[u8],
    headers: &[(String, String)],
    body: &[u8],
) -> Result<(), Refused> {
    let github = || {
        header(headers, "X-Hub-Signature-256").map(|v| {
            v.strip_prefix("sha256=")
                .is_some_and(|h| hmac_ok(secret, body, h))
        })
    };
    let gitea = || {
        [
            "X-Gitea-Signature",
            "X-Forgejo-Signature",
            "X-Gogs-Signature",
        ]
        .iter()
        .find_map(|h| header(headers, h))
        .map(|v| hmac_ok(secret, body, v))
    };
    let gitlab = || header(headers, "X-Gitlab-Token").map(|v| same(v.as_bytes(), secret));
    let checks: Vec<Option<bool>> = match forge {
        Forge::GitHub => vec![github()],
        Forge::Gitea => vec![gitea(), github()],
        Forge::GitLab => vec![gitlab()],
        Forge::None => vec![github(), gitea(), gitlab()],
    };
    if checks.contains(&Some(true)) {
        Ok(())
    } else if checks.iter().all(Option::is_none) {
        Err(Refused::Unsigned)
    } else {
        Err(Refused::BadSignature)
    }
}

/// What a verified hook asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    /// A ping (GitHub's `ping` event, or a payload without a `ref`): nothing to do.
    Ping,
    /// A push to the tracked branch: fetch now.
    Push,
    /// A push to another ref: ignored.
    Other(String),
}

/// Classify a verified hook for `branch`.
pub fn classify(headers: &[(String, String)], body: &[u8], branch: &str) -> Hook {
    if header(headers, "X-GitHub-Event") == Some("ping") {
        return Hook::Ping;
    }
    let payload: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match payload.get("ref").and_then(|r| r.as_str()) {
        None => Hook::Push,
        Some(r) if r == format!("refs/heads/{branch}") || r == branch => Hook::Push,
        Some(r) => Hook::Other(r.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(k: &str, v: &str) -> Vec<(String, String)> {
        vec![(k.to_owned(), v.to_owned())]
    }

    #[test]
    fn signatures() {
        let body = br#"{"ref":"refs/heads/main"}"#;
        let sig = sign(b"s3cret", body);
        // The example of GitHub's documentation.
        assert_eq!(
            sign(b"It's a Secret to Everybody", b"Hello, World!"),
            "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
        );
        let gh = h("x-hub-signature-256", &format!("sha256={sig}"));
        assert_eq!(verify(Forge::GitHub, b"s3cret", &gh, body), Ok(()));
        assert_eq!(
            verify(Forge::GitHub, b"other", &gh, body),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            verify(Forge::GitHub, b"s3cret", &gh, b"tampered"),
            Err(Refused::BadSignature)
        );
        assert_eq!(
            verify(Forge::GitHub, b"s3cret", &[], body),
            Err(Refused::Unsigned)
        );
        let gt = h("X-Gitea-Signature", &sig);
        assert_eq!(verify(Forge::Gitea, b"s3cret", &gt, body), Ok(()));
        assert_eq!(
            verify(Forge::GitHub, b"s3cret", &gt, body),
            Err(Refused::Unsigned)
        );
        let gl = h("X-Gitlab-Token", "s3cret");
        assert_eq!(verify(Forge::GitLab, b"s3cret", &gl, body), Ok(()));
        assert_eq!(
            verify(Forge::GitLab, b"s3cret!", &gl, body),
            Err(Refused::BadSignature)
        );
        assert_eq!(verify(Forge::None, b"s3cret", &gl, body), Ok(()));
        assert!(!same(b"", b""));
    }

    #[test]
    fn deliveries_are_seen_once_within_the_window() {
        let d = Deliveries::new(Duration::from_secs(60), 3);
        let t = Instant::now();
        assert!(d.first("a", t));
        assert!(!d.first("a", t + Duration::from_secs(30)));
        assert!(d.first("a", t + Duration::from_secs(61)));
        for id in ["b", "c", "d"] {
            assert!(d.first(id, t + Duration::from_secs(62)));
        }
        assert_eq!(d.seen.lock().map(|g| g.1.len()).unwrap_or(0), 3);
        assert_eq!(
            delivery_id(&h("X-GitHub-Delivery", "72d3162e")).as_deref(),
            Some("72d3162e")
        );
        assert_eq!(
            delivery_id(&h("x-gitlab-event-uuid", "u-1")).as_deref(),
            Some("u-1")
        );
        assert_eq!(delivery_id(&h("X-Gitlab-Token", "s")), None);
    }

    #[test]
    fn branches() {
        let push = |r: &str| format!("{{\"ref\":\"{r}\"}}").into_bytes();
        assert_eq!(classify(&[], &push("refs/heads/main"), "main"), Hook::Push);
        assert_eq!(
            classify(&[], &push("refs/heads/dev"), "main"),
            Hook::Other("refs/heads/dev".into())
        );
        assert_eq!(
            classify(&h("X-GitHub-Event", "ping"), b"{}", "main"),
            Hook::Ping
        );
        assert_eq!(classify(&[], b"not json", "main"), Hook::Push);
    }
}
