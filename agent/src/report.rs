//! What a run did (or, for `diff`, would do): per object, per prune candidate, and the
//! failures of the run; rendered as text for people or JSON for tools. Pure.

use std::fmt::Write as _;

use plinth::lower::ObjectKey;
use serde::Serialize;

use crate::cluster::ApiError;
use crate::drift::{Class, Extra, FieldDiff, Mode};
use crate::health::Health;

/// Which command produced a report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Command {
    Apply,
    Diff,
}

/// What happened to a desired object (for `diff`: what would happen).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    Create,
    Update,
    /// Drift restored (`--drift heal`); for `diff`, drift an apply with `heal` would restore.
    Heal,
    Unchanged,
    /// Only provenance annotations changed (the spec moved to another file or line): the
    /// annotations were written, but the object's content is what it was.
    Provenance,
    Failed,
    /// Not attempted: an earlier stage failed.
    Skipped,
}

/// One desired object.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectReport {
    pub key: ObjectKey,
    /// The spec that produced it (`file:line`).
    pub source: String,
    pub action: Action,
    /// Differing fields: updates, drift, fields left to other managers.
    pub diffs: Vec<FieldDiff>,
    /// Fields added by hand that plinth does not apply.
    pub extras: Vec<Extra>,
    /// Health after the run (objects written, or found unhealthy).
    pub health: Option<Health>,
    /// Drift was restored (for `diff`: would be, with `--drift heal`).
    pub healed: bool,
    pub error: Option<ApiError>,
}

impl ObjectReport {
    pub fn new(key: ObjectKey, source: String, action: Action) -> ObjectReport {
        ObjectReport {
            key,
            source,
            action,
            diffs: Vec::new(),
            extras: Vec::new(),
            health: None,
            healed: false,
            error: None,
        }
    }

    /// Drift this run left in place.
    pub fn drift_left(&self) -> bool {
        !self.healed && self.diffs.iter().any(|d| d.class.is_drift())
    }
}

/// What happened to an object that is applied but no longer desired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum PruneAction {
    /// Deleted (for `diff`: would be deleted with `--prune`).
    Delete,
    /// Gone already.
    Gone,
    /// Kept: annotated `plinth.dev/prune: disabled`.
    KeptDisabled,
    /// Kept: not labelled `app.kubernetes.io/managed-by: plinth`.
    NotOurs,
    /// Kept: a namespace holding objects that are kept or that plinth does not own
    /// (`holds` lists them); labelled `plinth.dev/held`, deleted by a later run once they are
    /// gone.
    Holds,
    /// Left for a later run: pruning is off, refused by a guard, or not reached.
    Pending,
    Failed,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PruneReport {
    pub key: ObjectKey,
    pub action: PruneAction,
    pub error: Option<ApiError>,
    /// For a held namespace: what it holds (`Kind namespace/name`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holds: Vec<String>,
    /// For the deletion of data (a namespace, volume, bucket, CRD): what approved it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<String>,
}

impl PruneReport {
    pub fn new(key: ObjectKey, action: PruneAction) -> PruneReport {
        PruneReport {
            key,
            action,
            error: None,
            holds: Vec::new(),
            approval: None,
        }
    }

    pub fn failed(key: ObjectKey, error: ApiError) -> PruneReport {
        PruneReport {
            error: Some(error),
            ..PruneReport::new(key, PruneAction::Failed)
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// `apply`: everything applied and healthy, nothing left to do. `diff`: no difference.
    Clean,
    /// `apply`: applied, but drift was detected and left (`--drift detect`). `diff`:
    /// differences found.
    Changes,
    Failed,
}

/// A run.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub command: Command,
    pub cluster: String,
    /// sha256 of the applied `plinth.lock.json`.
    pub revision: String,
    /// The revision the inventory recorded before the run (empty: none).
    pub previous_revision: String,
    pub drift_mode: Mode,
    pub objects: Vec<ObjectReport>,
    pub prune: Vec<PruneReport>,
    /// Failures of the run as a whole: refusals, inventory, health timeouts.
    pub failures: Vec<String>,
    /// Deletions of data that were not approved (the run was refused before writing).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unapproved: Vec<ObjectKey>,
}

impl Report {
    pub fn new(command: Command, cluster: &str, revision: &str, drift_mode: Mode) -> Report {
        Report {
            command,
            cluster: cluster.to_owned(),
            revision: revision.to_owned(),
            previous_revision: String::new(),
            drift_mode,
            objects: Vec::new(),
            prune: Vec::new(),
            failures: Vec::new(),
            unapproved: Vec::new(),
        }
    }

    /// Namespaces kept because of what they hold.
    pub fn held(&self) -> impl Iterator<Item = &PruneReport> {
        self.prune.iter().filter(|p| p.action == PruneAction::Holds)
    }

    pub fn failed(&self) -> bool {
        !self.failures.is_empty()
            || self
                .objects
                .iter()
                .any(|o| matches!(o.action, Action::Failed | Action::Skipped))
            || self.prune.iter().any(|p| p.action == PruneAction::Failed)
    }

    /// Whether there is anything to do (`diff`) or drift left (`apply`).
    pub fn changes(&self) -> bool {
        match self.command {
            Command::Apply => self.objects.iter().any(ObjectReport::drift_left),
            Command::Diff => {
                self.objects.iter().any(|o| o.action != Action::Unchanged)
                    || self.prune.iter().any(|p| p.action == PruneAction::Delete)
            }
        }
    }

    pub fn outcome(&self) -> Outcome {
        if self.failed() {
            Outcome::Failed
        } else if self.changes() {
            Outcome::Changes
        } else {
            Outcome::Clean
        }
    }

    /// `0` clean, `2` changes (`diff`) or drift left (`apply`), `1` failure.
    pub fn exit_code(&self) -> u8 {
        match self.outcome() {
            Outcome::Clean => 0,
            Outcome::Changes => 2,
            Outcome::Failed => 1,
        }
    }

    pub fn count(&self, action: Action) -> usize {
        self.objects.iter().filter(|o| o.action == action).count()
    }

    /// Stable JSON (`version: 1`).
    pub fn to_json(&self) -> String {
        let mut v = serde_json::to_value(self).unwrap_or_default();
        // Field values are redacted already; errors and messages are free text.
        plinth::redact::texts(&mut v);
        if let Some(m) = v.as_object_mut() {
            m.insert("version".into(), 1.into());
            m.insert(
                "outcome".into(),
                serde_json::to_value(self.outcome()).unwrap_or_default(),
            );
        }
        let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Text for a person: one line per thing that happened, then a summary.
    pub fn to_text(&self) -> String {
        let apply = self.command == Command::Apply;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "cluster `{}`: revision {} (applied before this run: {})",
            self.cluster,
            short(&self.revision),
            short(&self.previous_revision)
        );
        for o in &self.objects {
            object_lines(&mut out, o, apply);
        }
        let skipped = self.count(Action::Skipped);
        if skipped > 0 {
            line(
                &mut out,
                "skipped",
                &format!("{skipped} objects of later stages (an earlier stage failed)"),
            );
        }
        for p in &self.prune {
            self.prune_line(&mut out, p, apply);
        }
        for f in &self.failures {
            let _ = writeln!(out, "error: {f}");
        }
        self.summary(&mut out, apply);
        // Field values are redacted already; errors and messages are free text.
        plinth::redact::text(&out).into_owned()
    }

    /// The line for one prune candidate (none for one gone already).
    fn prune_line(&self, out: &mut String, p: &PruneReport, apply: bool) {
        let key = p.key.to_string();
        match p.action {
            PruneAction::Delete => line(
                out,
                if apply { "pruned" } else { "prune" },
                &match &p.approval {
                    Some(a) => format!("{key} (approved: {a})"),
                    None if self.unapproved.contains(&p.key) => format!(
                        "{key} (loses data and is not approved: an apply with `--prune` refuses the revision)"
                    ),
                    None => key,
                },
            ),
            PruneAction::Gone => {}
            PruneAction::KeptDisabled => line(
                out,
                "kept",
                &format!("{key} (`plinth.dev/prune: disabled`)"),
            ),
            PruneAction::NotOurs => line(
                out,
                "not ours",
                &format!(
                    "{key} (not labelled `app.kubernetes.io/managed-by: plinth`; never deleted)"
                ),
            ),
            PruneAction::Holds => line(
                out,
                "held",
                &format!(
                    "{key} (holds {} that plinth does not delete: {}; deleted once they are gone)",
                    if p.holds.len() == 1 {
                        "1 object".to_owned()
                    } else {
                        format!("{} objects", p.holds.len())
                    },
                    p.holds.join(", ")
                ),
            ),
            PruneAction::Pending => line(
                out,
                "orphan",
                &format!("{key} (no longer desired; `--prune` deletes it)"),
            ),
            PruneAction::Failed => {
                let e = p
                    .error
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string);
                line(out, "failed", &e);
            }
        }
    }

    /// The closing line: counts, then how the run ended.
    fn summary(&self, out: &mut String, apply: bool) {
        let drifted = self.objects.iter().filter(|o| o.drift_left()).count();
        let pruned = self
            .prune
            .iter()
            .filter(|p| p.action == PruneAction::Delete)
            .count();
        let mut parts = Vec::new();
        let counts = [
            (Action::Create, if apply { "created" } else { "to create" }),
            (Action::Update, if apply { "updated" } else { "to update" }),
            (Action::Heal, if apply { "healed" } else { "drifted" }),
            (Action::Unchanged, "unchanged"),
            (
                Action::Provenance,
                if apply {
                    "re-annotated (spec moved)"
                } else {
                    "to re-annotate (spec moved)"
                },
            ),
            (Action::Failed, "failed"),
            (Action::Skipped, "skipped"),
        ];
        for (a, word) in counts {
            let n = self.count(a);
            if n > 0 {
                parts.push(format!("{n} {word}"));
            }
        }
        if drifted > 0 && apply {
            parts.push(format!("{drifted} drifted"));
        }
        if pruned > 0 {
            parts.push(format!(
                "{pruned} {}",
                if apply { "pruned" } else { "to prune" }
            ));
        }
        let result = match (self.outcome(), apply) {
            (Outcome::Clean, true) => "synced".to_owned(),
            (Outcome::Changes, true) => {
                "applied; drift detected and left in place (`--drift heal` restores it)".to_owned()
            }
            (Outcome::Clean, false) => "no differences".to_owned(),
            (Outcome::Changes, false) => "differences found".to_owned(),
            (Outcome::Failed, _) => "failed".to_owned(),
        };
        if parts.is_empty() {
            let _ = writeln!(out, "{result}");
        } else {
            let _ = writeln!(out, "{}: {result}", parts.join(", "));
        }
    }
}

/// A revision shortened for a person (`none` for no revision).
fn short(r: &str) -> String {
    if r.is_empty() {
        "none".to_owned()
    } else {
        r[..r.len().min(12)].to_owned()
    }
}

/// One line of the text report: a verb in a column, then the rest.
fn line(out: &mut String, verb: &str, rest: &str) {
    let _ = writeln!(out, "  {verb:<11}{rest}");
}

/// The lines for one desired object: what happened, its drift, fields left alone or added by
/// hand, and its health when unhealthy.
fn object_lines(out: &mut String, o: &ObjectReport, apply: bool) {
    match o.action {
        Action::Create => line(
            out,
            if apply { "created" } else { "create" },
            &o.key.to_string(),
        ),
        Action::Update => {
            line(
                out,
                if apply { "updated" } else { "update" },
                &o.key.to_string(),
            );
            let hash = |d: &&FieldDiff| {
                d.path.fields().as_deref()
                    == Some(&["metadata", "annotations", plinth::lower::HASH_ANNOTATION][..])
            };
            for d in o
                .diffs
                .iter()
                .filter(|d| matches!(d.class, Class::Update | Class::Reclaimed { .. }) && !hash(d))
            {
                let _ = writeln!(out, "               {d}");
            }
        }
        Action::Failed => {
            let e = o
                .error
                .as_ref()
                .map_or_else(String::new, ToString::to_string);
            line(out, "failed", &format!("{}: {e}", o.key));
        }
        Action::Heal | Action::Unchanged | Action::Provenance | Action::Skipped => {}
    }
    for d in o.diffs.iter().filter(|d| d.class.is_drift()) {
        if o.healed && apply {
            line(out, "healed", &format!("{}: {}", o.key, d.restored()));
        } else {
            line(out, "drift", &format!("{}: {d}", o.key));
        }
    }
    for d in o
        .diffs
        .iter()
        .filter(|d| matches!(d.class, Class::Other { .. }))
    {
        line(out, "left alone", &format!("{}: {d}", o.key));
    }
    for e in &o.extras {
        line(
            out,
            "added",
            &format!(
                "{}: {} = {}, by {} (plinth does not apply it)",
                o.key,
                e.path,
                crate::fields::show(Some(&e.value)),
                e.manager
            ),
        );
    }
    if let Some(h) = &o.health
        && !h.is_healthy()
    {
        line(out, "unhealthy", &format!("{}: {h}", o.key));
    }
}
