//! The audit trail: every apply, prune, drift finding and refusal, with the commit, its
//! author, the time, the objects touched and the outcome, recorded three ways:
//!
//! 1. a structured log line (target `plinth_agent::audit`; one JSON object per line with
//!    `--log-format json`);
//! 2. a Kubernetes Event (`events.k8s.io/v1`, through kube's event `Recorder`) regarding the
//!    inventory ConfigMap, so `kubectl -n plinth-system get events` shows it;
//! 3. a bounded history (the last [`HISTORY`] entries, at most [`HISTORY_BYTES`] bytes) in the
//!    inventory ConfigMap, data key
//!    `history` (one JSON entry per line, oldest first), next to `commit`, the git commit last
//!    applied. Both are written by server-side apply as field manager `plinth-agent`, so the
//!    apply engine's own inventory writes (manager `plinth`) leave them alone.
//!
//! `plinth-agent history` prints that history. Recording never fails a sync: errors are
//! logged and counted.
//!
//! Every entry is bounded ([`Entry::bounded`]): subject, author and message are cut (saying
//! how much was cut), object lists capped with a count. So a commit with a multi-megabyte
//! subject cannot push the ConfigMap past Kubernetes' 1 MiB limit, and the applied commit
//! (its own data key) is always recorded.

use std::fmt::Write as _;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use plinth::lower::ObjectKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cluster::{ApiError, Cluster, Write};
use crate::inventory;

/// Entries kept in the inventory ConfigMap.
pub const HISTORY: usize = 50;
/// Field manager of the agent's own records.
pub const MANAGER: &str = "plinth-agent";
/// Bytes of history kept in the inventory ConfigMap (far below Kubernetes' 1 MiB per object);
/// the oldest entries go first, the newest is always kept.
pub const HISTORY_BYTES: usize = 256 * 1024;
/// Objects listed per entry (the rest are counted).
const OBJECTS: usize = 25;
/// Characters kept of a subject or an author.
const SHORT_TEXT: usize = 200;
/// Characters kept of a message or of one object line.
const LONG_TEXT: usize = 2000;
const OBJECT_LINE: usize = 300;

/// `s` cut to `limit` characters, saying how many were cut.
fn bound(s: &str, limit: usize) -> String {
    let n = s.chars().count();
    if n <= limit {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(limit).collect();
    let _ = write!(out, "… ({} more characters)", n - limit);
    out
}

/// What an entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Objects created or updated for a commit.
    Apply,
    /// Objects deleted because the commit no longer has them.
    Prune,
    /// Fields changed in the cluster, not in git (a new finding, or drift that went away).
    Drift,
    /// Drift put back to the git values (`--drift heal`).
    Heal,
    /// A commit not applied: it does not build, rewrites history, is not signed by a trusted
    /// key, or its plan refuses it (a destructive change without approval).
    Refuse,
    /// A namespace kept instead of pruned: it holds objects plinth does not own.
    Hold,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Apply => "apply",
            Action::Prune => "prune",
            Action::Drift => "drift",
            Action::Heal => "heal",
            Action::Refuse => "refuse",
            Action::Hold => "hold",
        }
    }
}

/// One record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Entry {
    /// RFC 3339, UTC.
    pub time: String,
    pub cluster: String,
    pub action: Action,
    /// The git commit (full sha).
    pub commit: String,
    /// `Name <email>` of the commit's author.
    pub author: String,
    /// The commit's subject line.
    pub subject: String,
    /// Objects touched: `+ Kind ns/name` created, `~` updated, `- ` deleted, `! ` drifted, `*`
    /// healed; at most 25, then `… N more`.
    pub objects: Vec<String>,
    /// `success`, `failure`, `refused`, `detected`, `resolved`, `healed`.
    pub outcome: String,
    pub message: String,
}

impl Entry {
    /// The entry with every secret in its free text (author, subject, objects, message)
    /// dropped by `plinth::redact::text`: what the ledger, the log and Events carry.
    /// Bounded too ([`Entry::bounded`]): redacted first, so a cut never leaves half a secret
    /// unrecognised.
    pub fn redacted(&self) -> Entry {
        let t = |s: &str| plinth::redact::text(s).into_owned();
        Entry {
            author: t(&self.author),
            subject: t(&self.subject),
            objects: self.objects.iter().map(|o| t(o)).collect(),
            message: t(&self.message),
            ..self.clone()
        }
        .bounded()
    }

    /// The entry with its free text cut (subject and author to 200 characters, the message to
    /// 2,000, each object line to 300) and its objects capped at 25 with a count.
    pub fn bounded(mut self) -> Entry {
        self.subject = bound(&self.subject, SHORT_TEXT);
        self.author = bound(&self.author, SHORT_TEXT);
        self.message = bound(&self.message, LONG_TEXT);
        self.cluster = bound(&self.cluster, SHORT_TEXT);
        self.outcome = bound(&self.outcome, SHORT_TEXT);
        self.commit = bound(&self.commit, 64);
        self.objects = cap(std::mem::take(&mut self.objects))
            .iter()
            .map(|o| bound(o, OBJECT_LINE))
            .collect();
        self
    }

    pub fn short_commit(&self) -> &str {
        &self.commit[..self.commit.len().min(7)]
    }
}

/// The current time, RFC 3339.
pub fn now() -> String {
    let t = k8s_openapi::jiff::Timestamp::now();
    // Whole seconds (truncated): what people read and compare.
    k8s_openapi::jiff::Timestamp::from_second(t.as_second())
        .map_or_else(|_| t.to_string(), |r| r.to_string())
}

/// Objects as entry lines: `<mark> <key>`, capped.
pub fn lines<'a>(mark: char, keys: impl IntoIterator<Item = &'a ObjectKey>) -> Vec<String> {
    keys.into_iter().map(|k| format!("{mark} {k}")).collect()
}

/// Cap a list of object lines.
pub fn cap(mut v: Vec<String>) -> Vec<String> {
    if v.len() > OBJECTS {
        let more = v.len() - OBJECTS + 1;
        v.truncate(OBJECTS - 1);
        v.push(format!("… {more} more"));
    }
    v
}

/// The agent's records in the inventory ConfigMap.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ledger {
    /// The git commit last handed to the apply engine (empty: none).
    pub commit: String,
    /// Oldest first.
    pub history: Vec<Entry>,
}

impl Ledger {
    /// Read from the inventory ConfigMap (missing keys are empty; unreadable lines skipped).
    pub fn from_configmap(cm: &Value) -> Ledger {
        let data = |k: &str| cm.pointer(&format!("/data/{k}")).and_then(Value::as_str);
        Ledger {
            commit: data("commit").unwrap_or("").to_owned(),
            history: data("history")
                .unwrap_or("")
                .lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect(),
        }
    }

    /// The server-side apply body for the agent's fields.
    pub fn to_apply(&self) -> Value {
        let mut history = String::new();
        for e in &self.history {
            history.push_str(&serde_json::to_string(e).unwrap_or_default());
            history.push('\n');
        }
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": inventory::NAME,
                "namespace": inventory::NAMESPACE,
                "labels": {inventory::AGENT_LABEL.0: inventory::AGENT_LABEL.1},
            },
            "data": {"commit": self.commit, "history": history},
        })
    }

    /// Append entries (redacted and bounded), keeping the last [`HISTORY`] within
    /// [`HISTORY_BYTES`]; the newest entry is always kept.
    pub fn push(&mut self, entries: &[Entry]) {
        self.history.extend(entries.iter().map(Entry::redacted));
        let extra = self.history.len().saturating_sub(HISTORY);
        self.history.drain(..extra);
        let size = |e: &Entry| serde_json::to_string(e).map_or(0, |s| s.len() + 1);
        let mut total: usize = self.history.iter().map(size).sum();
        let mut drop = 0;
        while total > HISTORY_BYTES && drop + 1 < self.history.len() {
            total -= size(&self.history[drop]);
            drop += 1;
        }
        self.history.drain(..drop);
    }
}

/// Read the agent's records.
pub async fn read(cluster: &Cluster) -> Result<Ledger, ApiError> {
    Ok(cluster
        .get(&inventory::key())
        .await?
        .map(|cm| Ledger::from_configmap(&cm))
        .unwrap_or_default())
}

/// Write the agent's records (creating `plinth-system` first when needed).
pub async fn write(cluster: &Cluster, ledger: &Ledger) -> Result<(), ApiError> {
    let ns = inventory::namespace_key();
    if cluster.get(&ns).await?.is_none() {
        // The name only: the apply engine (or plinth's own install manifests) owns the rest.
        let body = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": inventory::NAMESPACE},
        });
        cluster.apply(&ns, &body, MANAGER, Write::Force).await?;
    }
    cluster
        .apply(&inventory::key(), &ledger.to_apply(), MANAGER, Write::Force)
        .await?;
    Ok(())
}

/// Records entries: log lines, Events, and the ledger.
pub struct Audit {
    recorder: Recorder,
    reference: ObjectReference,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit").finish_non_exhaustive()
    }
}

impl Audit {
    pub fn new(cluster: &Cluster) -> Audit {
        let reporter = Reporter {
            controller: "plinth-agent".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Audit {
            recorder: Recorder::new(cluster.client().clone(), reporter),
            reference: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("ConfigMap".into()),
                namespace: Some(inventory::NAMESPACE.into()),
                name: Some(inventory::NAME.into()),
                ..ObjectReference::default()
            },
        }
    }

    /// Log and publish one entry as an Event. Returns whether the Event was accepted.
    pub async fn publish(&self, e: &Entry) -> bool {
        let e = &e.redacted();
        tracing::info!(
            target: "plinth_agent::audit",
            time = %e.time,
            cluster = %e.cluster,
            action = e.action.as_str(),
            commit = %e.commit,
            author = %e.author,
            subject = %e.subject,
            objects = %e.objects.join(", "),
            outcome = %e.outcome,
            message = %e.message,
            "audit"
        );
        let warning = matches!(
            e.outcome.as_str(),
            "failure" | "refused" | "detected" | "held"
        );
        let reason = match (e.action, warning) {
            (Action::Apply, false) => "Applied",
            (Action::Apply, true) => "ApplyFailed",
            (Action::Prune, false) => "Pruned",
            (Action::Prune, true) => "PruneFailed",
            (Action::Drift, true) => "DriftDetected",
            (Action::Drift, false) => "DriftResolved",
            (Action::Heal, _) => "DriftHealed",
            (Action::Refuse, _) => "Refused",
            (Action::Hold, _) => "NamespaceHeld",
        };
        let mut note = format!(
            "{} {} by {}: {}",
            e.short_commit(),
            e.subject,
            e.author,
            e.message
        );
        if !e.objects.is_empty() {
            let _ = write!(note, " [{}]", e.objects.join(", "));
        }
        let ev = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.into(),
            note: Some(crate::status::truncate(&note, 1000)),
            action: e.action.as_str().to_owned(),
            secondary: None,
        };
        match self.recorder.publish(&ev, &self.reference).await {
            Ok(()) => true,
            Err(err) => {
                tracing::warn!(error = %crate::error::chain(&err), "recording an event failed");
                false
            }
        }
    }
}

/// The history as text, newest first.
pub fn to_text(history: &[Entry]) -> String {
    let mut out = String::new();
    if history.is_empty() {
        out.push_str("no history yet\n");
    }
    for e in history.iter().rev().map(Entry::redacted) {
        let _ = writeln!(
            out,
            "{}  {:<7} {:<9} {} {} — {}",
            e.time,
            e.action.as_str(),
            e.outcome,
            e.short_commit(),
            e.author,
            e.subject
        );
        if !e.message.is_empty() {
            let _ = writeln!(out, "    {}", e.message);
        }
        for o in &e.objects {
            let _ = writeln!(out, "    {o}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(n: usize) -> Entry {
        Entry {
            time: "2026-11-20T10:00:00Z".into(),
            cluster: "prod".into(),
            action: Action::Apply,
            commit: format!("{n:040x}"),
            author: "Dana <dana@acme.example>".into(),
            subject: "raise the quota".into(),
            objects: vec!["~ ResourceQuota er/quota".into()],
            outcome: "success".into(),
            message: "applied 1 object".into(),
        }
    }

    #[test]
    fn entries_are_redacted_in_the_ledger() {
        let mut e = entry(1);
        e.message = "apply failed: https://x-access-token:ghp_0123456789abcdefghijABCDEFGHIJ012345@github.com/a/b".to_owned();
        e.subject = "rotate DB_PASSWORD=hunter2".to_owned();
        let mut l = Ledger::default();
        l.push(&[e]);
        let text = serde_json::to_string(&l.to_apply()).expect("json");
        assert!(
            !text.contains("ghp_0123") && !text.contains("hunter2"),
            "{text}"
        );
        assert!(text.contains("(redacted)"), "{text}");
    }

    #[test]
    fn huge_entries_are_cut_and_the_history_stays_small() {
        let mut l = Ledger::default();
        let mut big = entry(1);
        big.subject = "x".repeat(5 * 1024 * 1024);
        big.author = format!("{} <a@b>", "y".repeat(100_000));
        big.message = "m".repeat(1_000_000);
        big.objects = (0..10_000)
            .map(|i| format!("+ Kind ns/{i}{}", "z".repeat(1000)))
            .collect();
        l.push(&[big]);
        let e = &l.history[0];
        assert_eq!(
            e.subject.chars().count(),
            200 + "… (5242680 more characters)".chars().count()
        );
        assert!(
            e.subject.ends_with("… (5242680 more characters)"),
            "{}",
            &e.subject[190..]
        );
        assert_eq!(e.objects.len(), 25);
        assert_eq!(e.objects[24], "… 9976 more");
        // Many large entries: the history keeps what fits, the newest last.
        for i in 0..200 {
            let mut e = entry(i);
            e.message = "w".repeat(5000);
            l.push(&[e]);
        }
        let text = serde_json::to_string(&l.to_apply()).expect("json");
        assert!(text.len() <= HISTORY_BYTES + 1024, "{}", text.len());
        assert_eq!(
            l.history.last().map(|e| e.commit.clone()),
            Some(format!("{:040x}", 199))
        );
    }

    #[test]
    fn ledger_round_trip_and_bound() {
        let mut l = Ledger {
            commit: "abc".into(),
            history: Vec::new(),
        };
        let many: Vec<Entry> = (0..60).map(entry).collect();
        l.push(&many);
        assert_eq!(l.history.len(), HISTORY);
        assert_eq!(l.history[0], entry(10));
        let cm = l.to_apply();
        assert_eq!(Ledger::from_configmap(&cm), l);
        let text = to_text(&l.history[l.history.len() - 1..]);
        assert!(
            text.contains("apply   success   0000000 Dana <dana@acme.example> — raise the quota"),
            "{text}"
        );
        assert_eq!(cap((0..30).map(|i| i.to_string()).collect()).len(), 25);
        assert_eq!(
            cap((0..30).map(|i| i.to_string()).collect())[24],
            "… 6 more"
        );
        assert!(now().ends_with('Z'));
    }
}
