//! Redaction: the one place that decides which values never leave plinth in clear — for
//! `plinth plan` (terminal, Markdown, JSON), `plinth log`, and the agent's drift output and
//! audit trail alike.
//!
//! Redacted, in objects ([`object`]):
//! - the `data`, `stringData` and `binaryData` of Secrets and of objects annotated
//!   `plinth.dev/redact: "true"` or `plinth.dev/sensitivity: confidential|pii`;
//! - ConfigMap `data`/`binaryData` entries and annotations whose key looks secret
//!   ([`secret_name`]: password, passwd, passphrase, token, secret, credential, apikey,
//!   private, cookie, the words `auth` and `…key`);
//! - container `env` values whose name looks secret;
//! - anywhere in any string: known token formats (GitHub `ghp_`/`gho_`/`ghu_`/`ghs_`/`ghr_`/
//!   `github_pat_`, GitLab `glpat-`, AWS `AKIA…`/`ASIA…`, Slack `xox?-`, JWTs), PEM blocks,
//!   the userinfo of URLs (`postgres://app:password@db` → `postgres://(redacted)@db`) and
//!   `NAME=value` / `name: value` assignments whose name looks secret.
//!
//! A redacted value reads `(redacted, hmac:0123456789ab)`: a keyed fingerprint (HMAC-SHA256
//! with a [`Key`]), so a reviewer sees that a value changed (and which values are equal)
//! without a plain hash anyone could brute-force. Free text (messages, reasons, commit
//! subjects) goes through [`text`], which drops secrets without a fingerprint.

use std::borrow::Cow;
use std::sync::{Arc, LazyLock, OnceLock};

use hmac::{Hmac, KeyInit as _, Mac as _};
use regex::Regex;
use serde_json::Value;
use sha2::Sha256;

/// The environment variable holding the fingerprint key (a CI / cluster secret).
pub const KEY_ENV: &str = "PLINTH_FINGERPRINT_KEY";

/// What every redacted value starts with.
pub const MARK: &str = "(redacted";

/// The key of redaction fingerprints.
#[derive(Clone, PartialEq, Eq)]
pub struct Key(Arc<[u8]>);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    /// A key from bytes (at least one byte; an empty key is the run's random key).
    pub fn new(bytes: &[u8]) -> Key {
        if bytes.is_empty() {
            return Key::run();
        }
        Key(Arc::from(bytes))
    }

    /// A random key made once per process: fingerprints compare within one output only.
    pub fn run() -> Key {
        static RUN: OnceLock<Key> = OnceLock::new();
        RUN.get_or_init(|| {
            use std::hash::{BuildHasher, Hasher};
            // `RandomState` is seeded from the operating system's randomness.
            let mut bytes = Vec::with_capacity(32);
            for i in 0u8..4 {
                let mut h = std::collections::hash_map::RandomState::new().build_hasher();
                h.write_u8(i);
                h.write_u128(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_nanos()),
                );
                bytes.extend_from_slice(&h.finish().to_le_bytes());
            }
            Key(Arc::from(bytes.as_slice()))
        })
        .clone()
    }

    /// The key from `value` of [`KEY_ENV`] when set and not empty, else [`Key::run`].
    pub fn from_env_value(value: Option<&str>) -> Key {
        match value {
            Some(v) if !v.trim().is_empty() => Key::new(v.trim().as_bytes()),
            _ => Key::run(),
        }
    }

    /// The keyed fingerprint of a value: 12 hex digits of HMAC-SHA256.
    pub fn fingerprint(&self, value: &[u8]) -> String {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return "000000000000".to_owned();
        };
        mac.update(value);
        let out = mac.finalize().into_bytes();
        crate::output::hex(&out[..6])
    }

    /// `(redacted, hmac:…)` for a value.
    pub fn redacted(&self, value: &[u8]) -> String {
        format!("{MARK}, hmac:{})", self.fingerprint(value))
    }
}

impl Default for Key {
    fn default() -> Key {
        Key::run()
    }
}

/// Words that make a name (an env variable, a ConfigMap or annotation key) secret.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "token",
    "secret",
    "credential",
    "apikey",
    "private",
    "cookie",
];

/// Whether a name looks like it holds a secret: `DB_PASSWORD`, `apiKey`, `github-token`,
/// `tls.key`, `aws_secret_access_key`, `credentials.json`, …
pub fn secret_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let squashed: String = lower.chars().filter(char::is_ascii_alphanumeric).collect();
    if SECRET_WORDS.iter().any(|w| squashed.contains(w)) {
        return true;
    }
    // `key` as a word or a word's ending (`ssh_key`, `accessKey`, `tls.key`), not inside
    // one (`keycloak`, `monkeypatch`).
    let words = split_words(name);
    words
        .iter()
        .any(|w| w == "key" || w == "keys" || w == "auth" || (w.ends_with("key") && w.len() > 3))
        && !words.iter().any(|w| w == "monkey" || w == "hotkey")
}

/// A name's words, lowercase: split at non-alphanumerics and camelCase humps.
fn split_words(name: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for ch in name.chars() {
        if !ch.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                words.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if ch.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            words.push(std::mem::take(&mut cur));
        }
        prev_lower = ch.is_ascii_lowercase() || ch.is_ascii_digit();
        cur.push(ch.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        words.push(cur);
    }
    words
}

/// Whole secrets found inside text: (pattern, name).
static TOKENS: LazyLock<Vec<(Regex, &'static str)>> = LazyLock::new(|| {
    [
        (
            r"-----BEGIN [A-Z0-9 ]{0,40}-----(?s:.*?)(?:-----END [A-Z0-9 ]{0,40}-----|\z)",
            "pem",
        ),
        (
            r"\b(?:gh[pousr]_[A-Za-z0-9]{16,}|github_pat_[A-Za-z0-9_]{16,})",
            "github",
        ),
        (r"\bglpat-[A-Za-z0-9_\-]{16,}", "gitlab"),
        (r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b", "aws"),
        (r"\bxox[abposr]-[A-Za-z0-9\-]{8,}", "slack"),
        (
            r"\beyJ[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]*",
            "jwt",
        ),
    ]
    .into_iter()
    .filter_map(|(re, name)| Regex::new(re).ok().map(|r| (r, name)))
    .collect()
});

/// The userinfo of a URL (`scheme://user:pass@`): group 1 is `scheme://`, group 2 the userinfo.
static URL_USERINFO: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"([A-Za-z][A-Za-z0-9+.\-]{0,30}://)([^/\s@?#\x22'`<>]+)@").ok());

/// `NAME=value`, `name: value`, `"name": "value"` where the name looks secret: group 1 is
/// the name with its separator, group 2 the value.
static ASSIGNMENT: LazyLock<Option<Regex>> = LazyLock::new(|| {
    Regex::new(
        r#"(?i)((?:^|[^A-Za-z0-9_.\-])[A-Za-z0-9_.\-]*(?:password|passwd|passphrase|secret|token|credential|api[_\-.]?key|access[_\-.]?key|private[_\-.]?key)[A-Za-z0-9_.\-]*"?\s{0,4}[=:]\s{0,4}"?)([^\s"'`,;}{\]\[]+)"#,
    )
    .ok()
});

/// Redact every secret inside `s`, replacing each by `replace(secret)`.
fn scrub<'a>(s: &'a str, replace: &dyn Fn(&str) -> String) -> Cow<'a, str> {
    let mut out: Cow<'a, str> = Cow::Borrowed(s);
    for (re, _) in TOKENS.iter() {
        if re.is_match(&out) {
            out = Cow::Owned(
                re.replace_all(&out, |c: &regex::Captures| replace(&c[0]))
                    .into_owned(),
            );
        }
    }
    if let Some(re) = URL_USERINFO.as_ref()
        && re.is_match(&out)
    {
        out = Cow::Owned(
            re.replace_all(&out, |c: &regex::Captures| {
                if c[2].starts_with(MARK) {
                    c[0].to_owned()
                } else {
                    format!("{}{}@", &c[1], replace(&c[2]))
                }
            })
            .into_owned(),
        );
    }
    if let Some(re) = ASSIGNMENT.as_ref()
        && re.is_match(&out)
    {
        out = Cow::Owned(
            re.replace_all(&out, |c: &regex::Captures| {
                if c[2].starts_with(MARK) || c[2].starts_with("(redacted") {
                    c[0].to_owned()
                } else {
                    format!("{}{}", &c[1], replace(&c[2]))
                }
            })
            .into_owned(),
        );
    }
    out
}

/// Free text (a message, a reason, a commit subject) with every secret replaced by
/// `(redacted)`.
pub fn text(s: &str) -> Cow<'_, str> {
    // Values already fingerprinted stay as they are (no pattern matches them).
    scrub(s, &|_| format!("{MARK})"))
}

/// [`text`] over every string of a JSON value (a report made of free text).
pub fn texts(v: &mut Value) {
    match v {
        Value::Object(m) => m.values_mut().for_each(texts),
        Value::Array(a) => a.iter_mut().for_each(texts),
        Value::String(s) => {
            if let Cow::Owned(r) = text(s) {
                *s = r;
            }
        }
        _ => {}
    }
}

/// Whether free text holds something [`text`] would redact.
pub fn has_secret(s: &str) -> bool {
    matches!(text(s), Cow::Owned(_))
}

/// A string value with every secret inside replaced by its fingerprint.
pub fn string<'a>(s: &'a str, key: &Key) -> Cow<'a, str> {
    if s.starts_with(MARK) {
        return Cow::Borrowed(s);
    }
    scrub(s, &|secret| {
        if secret.starts_with(MARK) {
            secret.to_owned()
        } else {
            key.redacted(secret.as_bytes())
        }
    })
}

/// A whole value replaced by its fingerprint (strings by their text, others by their JSON).
pub fn whole(v: &Value, key: &Key) -> Value {
    match v {
        Value::String(s) if s.starts_with(MARK) => v.clone(),
        Value::String(s) => Value::String(key.redacted(s.as_bytes())),
        other => Value::String(key.redacted(other.to_string().as_bytes())),
    }
}

/// Whether an object's data is sensitive as a whole: a Secret, or annotated
/// `plinth.dev/redact: "true"` or `plinth.dev/sensitivity: confidential|pii`.
pub fn sensitive_object(v: &Value) -> bool {
    v["kind"] == "Secret"
        || v.pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .is_some_and(|a| {
                a.get(crate::output::REDACT_ANNOTATION)
                    .and_then(Value::as_str)
                    == Some("true")
                    || matches!(
                        a.get("plinth.dev/sensitivity").and_then(Value::as_str),
                        Some("confidential" | "pii")
                    )
            })
}

/// Redact a Kubernetes object in place (see the module documentation).
pub fn object(v: &mut Value, key: &Key) {
    object_as(v, key, false);
}

/// [`object`], treating the object as sensitive as a whole when `sensitive` (another
/// version of it is).
pub fn object_as(v: &mut Value, key: &Key, sensitive: bool) {
    let sensitive = sensitive || sensitive_object(v);
    let configmap = v["kind"] == "ConfigMap";
    for field in ["data", "stringData", "binaryData"] {
        if let Some(m) = v.get_mut(field).and_then(Value::as_object_mut) {
            for (k, val) in m.iter_mut() {
                if sensitive || (configmap && secret_name(k)) {
                    *val = whole(val, key);
                }
            }
        }
    }
    if let Some(ann) = v
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        for (k, val) in ann.iter_mut() {
            if secret_name(k) {
                *val = whole(val, key);
            }
        }
    }
    walk(v, key);
}

/// Every env value with a secret name, and every secret inside every string.
fn walk(v: &mut Value, key: &Key) {
    match v {
        Value::Object(m) => {
            for (k, child) in m.iter_mut() {
                if k == "env"
                    && let Some(list) = child.as_array_mut()
                {
                    for e in list.iter_mut() {
                        let secret = e
                            .get("name")
                            .and_then(Value::as_str)
                            .is_some_and(secret_name);
                        if secret && let Some(val) = e.get_mut("value") {
                            *val = whole(val, key);
                        }
                    }
                }
                walk(child, key);
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| walk(x, key)),
        Value::String(s) => {
            if let Cow::Owned(r) = string(s, key) {
                *s = r;
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn key() -> Key {
        Key::new(b"test key")
    }

    #[test]
    fn secret_names() {
        for n in [
            "DB_PASSWORD",
            "db_password",
            "passwd",
            "API_TOKEN",
            "apiKey",
            "api-key",
            "aws_secret_access_key",
            "ssh_key",
            "tls.key",
            "accessKey",
            "credentials.json",
            "private.pem",
            "GITHUB_TOKEN",
            "basic-auth",
        ] {
            assert!(secret_name(n), "{n}");
        }
        for n in [
            "display-name",
            "KEYCLOAK_URL",
            "LOG_LEVEL",
            "plinth.dev/display-name",
            "replicas",
            "monkey",
            "hostname",
        ] {
            assert!(!secret_name(n), "{n}");
        }
    }

    #[test]
    fn every_token_format_is_redacted_in_text() {
        let cases = [
            ("github", "ghp_0123456789abcdefghijABCDEFGHIJ012345"),
            ("github oauth", "gho_0123456789abcdefghijABCDEFGHIJ012345"),
            (
                "github fine-grained",
                "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789",
            ),
            ("gitlab", "glpat-abcdefghij0123456789"),
            ("aws", "AKIAIOSFODNN7EXAMPLE"),
            ("slack", "xoxb-123456789012-abcdefghijkl"),
            (
                "jwt",
                "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            ),
            (
                "pem",
                "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----",
            ),
            (
                "pem unterminated",
                "-----BEGIN PRIVATE KEY-----\nMIIEpAIBAAKCAQEA",
            ),
        ];
        for (what, secret) in cases {
            let t = format!("before {secret} after");
            let r = text(&t);
            assert!(!r.contains(secret), "{what}: {r}");
            assert!(r.contains("(redacted)"), "{what}: {r}");
            assert!(r.starts_with("before "), "{what}: {r}");
            let s = string(&t, &key());
            assert!(
                !s.contains(secret) && s.contains("(redacted, hmac:"),
                "{what}: {s}"
            );
        }
    }

    #[test]
    fn urls_with_userinfo_and_secret_assignments() {
        let r = text("DATABASE_URL=postgres://app:password@db.internal:5432/app");
        assert!(!r.contains("password@"), "{r}");
        assert!(r.contains("postgres://(redacted)@db.internal"), "{r}");
        let r = text("https://x-access-token:abc@github.com/acme/p.git");
        assert!(!r.contains("abc@"), "{r}");
        let r = text("db.password=hunter2\nuser=app\nAPI_TOKEN: s3cr3t");
        assert!(!r.contains("hunter2") && !r.contains("s3cr3t"), "{r}");
        assert!(r.contains("user=app"), "{r}");
        // Ordinary prose and URLs stay.
        for t in [
            "https://github.com/acme/platform",
            "the agent holds the forge token and cluster-wide rights",
            "`spec.hard.requests.cpu` is lowered from 8 to 4",
        ] {
            assert_eq!(text(t), t);
        }
    }

    #[test]
    fn objects_env_configmaps_annotations_and_secrets() {
        let mut d = json!({
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "x", "annotations": {"acme.io/api-token": "t0k", "plinth.dev/display-name": "X"}},
            "spec": {"template": {"spec": {"containers": [{"name": "c", "env": [
                {"name": "API_TOKEN", "value": "plain-but-secret"},
                {"name": "LOG_LEVEL", "value": "debug"},
                {"name": "DATABASE_URL", "value": "postgres://app:pw@db/app"},
                {"name": "GH", "value": "ghp_0123456789abcdefghijABCDEFGHIJ012345"},
            ]}]}}}
        });
        object(&mut d, &key());
        let s = d.to_string();
        for secret in ["t0k", "plain-but-secret", "pw@", "ghp_0123"] {
            assert!(!s.contains(secret), "{secret}: {s}");
        }
        assert!(s.contains("debug") && s.contains("\"X\""), "{s}");
        let mut cm =
            json!({"kind": "ConfigMap", "data": {"db_password": "hunter2", "mode": "fast"}});
        object(&mut cm, &key());
        assert_eq!(cm["data"]["mode"], "fast");
        assert!(
            cm["data"]["db_password"]
                .as_str()
                .unwrap()
                .starts_with("(redacted, hmac:")
        );
        let mut sec = json!({"kind": "Secret", "data": {"x": "aHVudGVyMg=="}, "stringData": {"y": "hunter2"}});
        object(&mut sec, &key());
        assert!(!sec.to_string().contains("hunter2") && !sec.to_string().contains("aHVudGVyMg"));
    }

    #[test]
    fn fingerprints_are_keyed() {
        let (a, b) = (Key::new(b"one"), Key::new(b"two"));
        assert_eq!(a.fingerprint(b"hunter2"), a.fingerprint(b"hunter2"));
        assert_ne!(a.fingerprint(b"hunter2"), b.fingerprint(b"hunter2"));
        assert_ne!(a.fingerprint(b"hunter2"), a.fingerprint(b"hunter3"));
        // Not the plain hash (`sha256("hunter2")` starts `f52fbd32b2b3`).
        assert_ne!(a.fingerprint(b"hunter2"), "f52fbd32b2b3");
        assert_eq!(Key::run().fingerprint(b"x"), Key::run().fingerprint(b"x"));
        assert_eq!(
            Key::from_env_value(Some("k")).fingerprint(b"x"),
            Key::new(b"k").fingerprint(b"x")
        );
    }
}
