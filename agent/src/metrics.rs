//! Metrics in the Prometheus text format (version 0.0.4), served at `/metrics`.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `plinth_agent_info` | gauge (1) | `cluster`, `version` |
//! | `plinth_agent_last_applied_revision` | gauge (1) | `cluster`, `commit`, `revision` (lock hash) |
//! | `plinth_agent_last_applied_timestamp_seconds` | gauge | `cluster` |
//! | `plinth_agent_syncs_total` | counter | `cluster`, `outcome` (`clean`, `changes`, `failed`) |
//! | `plinth_agent_objects_applied_total` | counter | `cluster`, `action` (`create`, `update`, `heal`) |
//! | `plinth_agent_objects_pruned_total` | counter | `cluster` |
//! | `plinth_agent_drift_findings_total` | counter | `cluster` (a new set of drifted fields) |
//! | `plinth_agent_drifted_objects` | gauge | `cluster` |
//! | `plinth_agent_held_namespaces` | gauge | `cluster` (namespaces kept at the last sync: they hold objects plinth does not own) |
//! | `plinth_agent_refusals_total` | counter | `cluster`, `reason` (`non-fast-forward`, `signature`, `check`, `plan`) |
//! | `plinth_agent_errors_total` | counter | `cluster`, `kind` (`fetch`, `compile`, `apply`, `audit`) |
//! | `plinth_agent_status_posts_total` | counter | `state`, `result` (`ok`, `retry`, `failed`) |
//! | `plinth_agent_webhooks_total` | counter | `cluster`, `result` (`wake`, `ignored`, `duplicate`, `refused`) |
//! | `plinth_agent_sync_duration_seconds` | histogram | `cluster` |
//! | `plinth_agent_fetch_duration_seconds` | histogram | `cluster` |
//!
//! Hand-written: a few maps behind one mutex; rendering is sorted, so the output is stable.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

const BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
];

#[derive(Debug, Default, Clone)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, v: f64) {
        for (i, b) in BUCKETS.iter().enumerate() {
            if v <= *b {
                self.counts[i] += 1;
            }
        }
        self.sum += v;
        self.count += 1;
    }
}

#[derive(Debug, Default)]
struct Inner {
    cluster: String,
    last_applied: Option<(String, String)>,
    last_applied_time: Option<f64>,
    syncs: BTreeMap<String, u64>,
    applied: BTreeMap<String, u64>,
    pruned: u64,
    drift_findings: u64,
    drifted: u64,
    held: u64,
    refusals: BTreeMap<String, u64>,
    errors: BTreeMap<String, u64>,
    posts: BTreeMap<(String, String), u64>,
    webhooks: BTreeMap<String, u64>,
    sync_duration: Histogram,
    fetch_duration: Histogram,
}

/// A step of the loop that failed: its name is the `kind` label of
/// `plinth_agent_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failed {
    /// Fetching the remote.
    Fetch,
    /// Compiling the commit (or reading its history).
    Compile,
    /// A run of the apply engine.
    Apply,
    /// Publishing or recording an audit entry.
    Audit,
}

impl Failed {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Failed::Fetch => "fetch",
            Failed::Compile => "compile",
            Failed::Apply => "apply",
            Failed::Audit => "audit",
        }
    }
}

/// The agent's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

/// `"` `\` and newlines escaped for a label value.
fn label(v: &str) -> String {
    v.replace('\\', r"\\")
        .replace('"', "\\\"")
        .replace('\n', r"\n")
}

impl Metrics {
    pub fn new(cluster: &str) -> Metrics {
        let m = Metrics::default();
        m.lock().cluster = cluster.to_owned();
        m
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub fn applied_revision(&self, commit: &str, revision: &str, unix_time: f64) {
        let mut m = self.lock();
        m.last_applied = Some((commit.to_owned(), revision.to_owned()));
        m.last_applied_time = Some(unix_time);
    }
    pub fn sync(&self, outcome: &str, took: Duration) {
        let mut m = self.lock();
        *m.syncs.entry(outcome.to_owned()).or_default() += 1;
        m.sync_duration.observe(took.as_secs_f64());
    }
    pub fn fetched(&self, took: Duration) {
        self.lock().fetch_duration.observe(took.as_secs_f64());
    }
    pub fn objects(&self, action: &str, n: usize) {
        if n > 0 {
            *self.lock().applied.entry(action.to_owned()).or_default() += n as u64;
        }
    }
    pub fn pruned(&self, n: usize) {
        self.lock().pruned += n as u64;
    }
    pub fn drift(&self, drifted_objects: usize, new_finding: bool) {
        let mut m = self.lock();
        m.drifted = drifted_objects as u64;
        if new_finding {
            m.drift_findings += 1;
        }
    }
    /// Namespaces held at the last sync.
    pub fn held(&self, namespaces: usize) {
        self.lock().held = namespaces as u64;
    }

    pub fn refusal(&self, reason: &str) {
        *self.lock().refusals.entry(reason.to_owned()).or_default() += 1;
    }
    /// A webhook handled: `wake`, `ignored` (another ref, a ping), `duplicate`, `refused`.
    pub fn webhook(&self, result: &str) {
        *self.lock().webhooks.entry(result.to_owned()).or_default() += 1;
    }
    pub fn error(&self, step: Failed) {
        *self
            .lock()
            .errors
            .entry(step.label().to_owned())
            .or_default() += 1;
    }
    pub fn status_posted(&self, state: &str, result: &str) {
        *self
            .lock()
            .posts
            .entry((state.to_owned(), result.to_owned()))
            .or_default() += 1;
    }

    /// A counter's value, for tests: `errors/fetch`, `refusals/signature`, `syncs/clean`, …
    pub fn get(&self, what: &str) -> u64 {
        let m = self.lock();
        let (family, key) = what.split_once('/').unwrap_or((what, ""));
        match family {
            "errors" => m.errors.get(key).copied().unwrap_or(0),
            "refusals" => m.refusals.get(key).copied().unwrap_or(0),
            "syncs" => m.syncs.get(key).copied().unwrap_or(0),
            "applied" => m.applied.get(key).copied().unwrap_or(0),
            "pruned" => m.pruned,
            "drift_findings" => m.drift_findings,
            "drifted" => m.drifted,
            "held" => m.held,
            "webhooks" => m.webhooks.get(key).copied().unwrap_or(0),
            _ => 0,
        }
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let m = self.lock();
        let c = label(&m.cluster);
        let mut o = String::new();
        head(
            &mut o,
            "plinth_agent_info",
            "gauge",
            "The agent and the cluster it applies to.",
        );
        let _ = writeln!(
            o,
            "plinth_agent_info{{cluster=\"{c}\",version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        head(
            &mut o,
            "plinth_agent_last_applied_revision",
            "gauge",
            "The commit and lock hash last applied (value 1).",
        );
        if let Some((commit, rev)) = &m.last_applied {
            let _ = writeln!(
                o,
                "plinth_agent_last_applied_revision{{cluster=\"{c}\",commit=\"{}\",revision=\"{}\"}} 1",
                label(commit),
                label(rev)
            );
        }
        head(
            &mut o,
            "plinth_agent_last_applied_timestamp_seconds",
            "gauge",
            "When the last commit was applied (UNIX time).",
        );
        if let Some(t) = m.last_applied_time {
            let _ = writeln!(
                o,
                "plinth_agent_last_applied_timestamp_seconds{{cluster=\"{c}\"}} {t:.3}"
            );
        }
        render_counts(&mut o, &c, &m);
        head(
            &mut o,
            "plinth_agent_status_posts_total",
            "counter",
            "Commit status posts, by state and result.",
        );
        for ((state, result), v) in &m.posts {
            let _ = writeln!(
                o,
                "plinth_agent_status_posts_total{{cluster=\"{c}\",state=\"{}\",result=\"{}\"}} {v}",
                label(state),
                label(result)
            );
        }
        for (name, help, h) in [
            (
                "plinth_agent_sync_duration_seconds",
                "How long a sync (compile, apply, health, prune) took.",
                &m.sync_duration,
            ),
            (
                "plinth_agent_fetch_duration_seconds",
                "How long a fetch took.",
                &m.fetch_duration,
            ),
        ] {
            histogram(&mut o, &c, name, help, h);
        }
        o
    }
}

/// The `# HELP` and `# TYPE` lines of a family.
fn head(o: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(o, "# HELP {name} {help}");
    let _ = writeln!(o, "# TYPE {name} {kind}");
}

/// A family of one sample labelled with the cluster only.
fn single(o: &mut String, c: &str, name: &str, kind: &str, help: &str, v: u64) {
    head(o, name, kind, help);
    let _ = writeln!(o, "{name}{{cluster=\"{c}\"}} {v}");
}

/// A counter family with one sample per key of `map`.
fn counter_map(
    o: &mut String,
    c: &str,
    (name, help, key): (&str, &str, &str),
    map: &BTreeMap<String, u64>,
) {
    head(o, name, "counter", help);
    for (k, v) in map {
        let _ = writeln!(o, "{name}{{cluster=\"{c}\",{key}=\"{}\"}} {v}", label(k));
    }
}

/// The counters and gauges between the revision and the status posts, in exposition order.
fn render_counts(o: &mut String, c: &str, m: &Inner) {
    counter_map(
        o,
        c,
        (
            "plinth_agent_syncs_total",
            "Sync runs by outcome.",
            "outcome",
        ),
        &m.syncs,
    );
    counter_map(
        o,
        c,
        (
            "plinth_agent_objects_applied_total",
            "Objects written, by action.",
            "action",
        ),
        &m.applied,
    );
    single(
        o,
        c,
        "plinth_agent_objects_pruned_total",
        "counter",
        "Objects deleted by pruning.",
        m.pruned,
    );
    single(
        o,
        c,
        "plinth_agent_drift_findings_total",
        "counter",
        "Times a new set of drifted fields was found.",
        m.drift_findings,
    );
    single(
        o,
        c,
        "plinth_agent_drifted_objects",
        "gauge",
        "Objects with drift left in place at the last sync.",
        m.drifted,
    );
    single(
        o,
        c,
        "plinth_agent_held_namespaces",
        "gauge",
        "Namespaces kept instead of pruned at the last sync: they hold objects plinth does not own.",
        m.held,
    );
    counter_map(
        o,
        c,
        (
            "plinth_agent_refusals_total",
            "Commits refused, by reason.",
            "reason",
        ),
        &m.refusals,
    );
    counter_map(
        o,
        c,
        ("plinth_agent_errors_total", "Errors, by kind.", "kind"),
        &m.errors,
    );
    counter_map(
        o,
        c,
        (
            "plinth_agent_webhooks_total",
            "Webhooks received, by result.",
            "result",
        ),
        &m.webhooks,
    );
}

/// A histogram family: cumulative buckets, then sum and count.
fn histogram(o: &mut String, c: &str, name: &str, help: &str, h: &Histogram) {
    head(o, name, "histogram", help);
    for (i, b) in BUCKETS.iter().enumerate() {
        let _ = writeln!(
            o,
            "{name}_bucket{{cluster=\"{c}\",le=\"{b}\"}} {}",
            h.counts[i]
        );
    }
    let _ = writeln!(
        o,
        "{name}_bucket{{cluster=\"{c}\",le=\"+Inf\"}} {}",
        h.count
    );
    let _ = writeln!(o, "{name}_sum{{cluster=\"{c}\"}} {}", h.sum);
    let _ = writeln!(o, "{name}_count{{cluster=\"{c}\"}} {}", h.count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_text_format() {
        let m = Metrics::new("prod");
        m.applied_revision("abc", "def", 1.5);
        m.sync("clean", Duration::from_millis(300));
        m.objects("create", 3);
        m.error(Failed::Fetch);
        let t = m.render();
        assert!(t.contains("plinth_agent_last_applied_revision{cluster=\"prod\",commit=\"abc\",revision=\"def\"} 1\n"), "{t}");
        assert!(t.contains("plinth_agent_syncs_total{cluster=\"prod\",outcome=\"clean\"} 1\n"));
        assert!(t.contains(
            "plinth_agent_sync_duration_seconds_bucket{cluster=\"prod\",le=\"0.5\"} 1\n"
        ));
        assert!(t.contains(
            "plinth_agent_sync_duration_seconds_bucket{cluster=\"prod\",le=\"0.25\"} 0\n"
        ));
        assert!(t.contains("plinth_agent_errors_total{cluster=\"prod\",kind=\"fetch\"} 1\n"));
        assert_eq!(m.get("errors/fetch"), 1);
        // Every sample line belongs to a declared family.
        for l in t.lines().filter(|l| !l.starts_with('#')) {
            let name = l.split(['{', ' ']).next().unwrap_or("");
            let family = name
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            assert!(t.contains(&format!("# TYPE {family} ")), "{l}");
        }
    }
}
