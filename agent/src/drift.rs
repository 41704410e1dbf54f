//! Drift: what differs between a live object and the desired one, field by field, who made
//! it differ, and what to apply about it.
//!
//! The desired side is the server's answer to a forced dry-run apply of the compiled object
//! (`merged`): the live object with plinth's fields set, defaulted and normalised by the server
//! itself, so quantities, defaults and list merging never show up as differences. Each
//! differing leaf is classified with the live object's `managedFields`:
//!
//! - [`Class::Update`]: the desired state changed (the object's `plinth.dev/spec-hash` moved)
//!   on a field plinth owns or nobody owns: a new revision to apply.
//! - [`Class::Hand`]: a field plinth applies whose value differs and which another manager now
//!   owns, that manager being a person's tool (`kubectl-edit`, `kubectl-patch`, any `kubectl…`,
//!   a dashboard; see [`Policy::hand_managers`]): drift. `detect` reports it and leaves it;
//!   `heal` re-applies with force.
//! - [`Class::OutOfBand`]: a field plinth applies whose value differs though no other manager
//!   owns it (written without managed fields, or removed): drift, handled like `Hand`.
//! - [`Class::Reclaimed`]: a field a person (or nobody) changed in the cluster that the new
//!   revision changes too (known when the caller passes the object as the previous revision
//!   compiled it — the GitOps loop does): git wins, the field is applied with force. A
//!   `git revert` is never fought by the hand edit it undoes.
//! - [`Class::Other`]: a field plinth applies that another, non-human manager owns with
//!   another value (an autoscaler's `replicas`, another controller): reported and left alone:
//!   plinth stops applying it (unless the manager is in [`Policy::take_from`]).
//!
//! Fields only the live object has — server defaults, or fields others added — are not
//! differences: the merged object keeps them too. Fields a person added (owned by a hand
//! manager, not applied by plinth) are listed as [`Extra`] for information.
//!
//! Pure.

use std::collections::BTreeSet;
use std::fmt;

use plinth::lower::HASH_ANNOTATION;
use serde::{Serialize, Serializer};
use serde_json::Value;

use crate::fields::{self, Leaves, Manager, Path, Shapes};

/// What to do about drift.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Mode {
    /// Report drift, leave it.
    #[default]
    Detect,
    /// Re-apply the desired values with force.
    Heal,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Detect => "detect",
            Mode::Heal => "heal",
        }
    }
}

/// How drift is told apart and handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// Field managers that are people's tools: a change they own is a hand edit. Prefixes.
    pub hand_managers: Vec<String>,
    /// Other field managers whose fields plinth takes back anyway. Prefixes.
    pub take_from: Vec<String>,
    /// The key of redaction fingerprints in what is reported (`PLINTH_FINGERPRINT_KEY`).
    pub fingerprint: plinth::redact::Key,
}

impl Default for Policy {
    fn default() -> Policy {
        Policy {
            mode: Mode::Detect,
            hand_managers: [
                "kubectl",
                "k9s",
                "Mozilla",
                "dashboard",
                "kubernetes-dashboard",
                "Lens",
            ]
            .map(String::from)
            .to_vec(),
            take_from: Vec::new(),
            fingerprint: plinth::redact::Key::default(),
        }
    }
}

impl Policy {
    fn is_hand(&self, manager: &str) -> bool {
        self.hand_managers
            .iter()
            .any(|p| manager.starts_with(p.as_str()))
    }
    fn takes_from(&self, manager: &str) -> bool {
        self.take_from
            .iter()
            .any(|p| manager.starts_with(p.as_str()))
    }
}

/// Why a field differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "class", rename_all = "camelCase")]
pub enum Class {
    Update,
    Hand {
        manager: String,
    },
    OutOfBand,
    /// Changed in the cluster, and changed by the new revision too: the revision wins.
    /// `manager` is who had changed it (empty: no field manager).
    Reclaimed {
        manager: String,
    },
    Other {
        manager: String,
    },
}

impl Class {
    /// Drift (as opposed to a desired change or someone else's field).
    pub fn is_drift(&self) -> bool {
        matches!(self, Class::Hand { .. } | Class::OutOfBand)
    }
}

/// One differing field. Values are redacted by `plinth::redact` (Secrets, objects annotated
/// `plinth.dev/redact` or holding confidential data, secret-looking env values, tokens, …).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldDiff {
    #[serde(serialize_with = "path_string")]
    pub path: Path,
    pub desired: Option<Value>,
    pub live: Option<Value>,
    #[serde(flatten)]
    pub class: Class,
}

fn path_string<S: Serializer>(p: &Path, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&p.to_string())
}

impl FieldDiff {
    /// Drift put back, in the direction of the repair: live → desired
    /// (`spec.hard.requests.cpu 96 (live) → 48 (desired), an edit by kubectl-edit undone`).
    pub fn restored(&self) -> String {
        let by = match &self.class {
            Class::Hand { manager } | Class::Reclaimed { manager } | Class::Other { manager }
                if !manager.is_empty() =>
            {
                format!("an edit by {manager} undone")
            }
            _ => "a change outside any field manager undone".to_owned(),
        };
        format!(
            "{} {} (live) → {} (desired), {by}",
            self.path,
            fields::show(self.live.as_ref()),
            fields::show(self.desired.as_ref())
        )
    }
}

impl fmt::Display for FieldDiff {
    /// In the direction of the change: an update goes from live to desired
    /// (`spec.hard.pods 10→20`), drift from desired to live
    /// (`spec.hard.requests.cpu 32→48, changed by kubectl-edit`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (from, to) = match self.class {
            Class::Update | Class::Reclaimed { .. } => (&self.live, &self.desired),
            _ => (&self.desired, &self.live),
        };
        write!(
            f,
            "{} {}→{}",
            self.path,
            fields::show(from.as_ref()),
            fields::show(to.as_ref())
        )?;
        match &self.class {
            Class::Update => Ok(()),
            Class::Hand { manager } => write!(f, ", changed by {manager}"),
            Class::OutOfBand => f.write_str(", changed outside any field manager"),
            Class::Reclaimed { manager } if manager.is_empty() => {
                f.write_str(", changed in git over a change outside any field manager")
            }
            Class::Reclaimed { manager } => {
                write!(f, ", changed in git over an edit by {manager}")
            }
            Class::Other { manager } => write!(f, ", owned by {manager} (left alone)"),
        }
    }
}

/// A field someone added by hand that plinth does not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Extra {
    #[serde(serialize_with = "path_string")]
    pub path: Path,
    pub value: Value,
    pub manager: String,
}

/// Live against desired, for one object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    pub diffs: Vec<FieldDiff>,
    pub extras: Vec<Extra>,
    /// The spec hash of the live object differs from the desired one.
    pub hash_changed: bool,
    /// plinth's ownership would change although no value does (adopting an object someone
    /// else created, or releasing a field another manager shares).
    pub ownership_changed: bool,
}

impl Comparison {
    pub fn drift(&self) -> impl Iterator<Item = &FieldDiff> {
        self.diffs.iter().filter(|d| d.class.is_drift())
    }
    pub fn updates(&self) -> impl Iterator<Item = &FieldDiff> {
        self.diffs
            .iter()
            .filter(|d| matches!(d.class, Class::Update | Class::Reclaimed { .. }))
    }
    pub fn others(&self) -> impl Iterator<Item = &FieldDiff> {
        self.diffs
            .iter()
            .filter(|d| matches!(d.class, Class::Other { .. }))
    }
}

/// Server-set fields that are never compared.
const SERVER_FIELDS: &[&str] = &[
    "managedFields",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "uid",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
];

/// The object without server-set metadata and `status`.
pub fn normalise(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
        if let Some(meta) = m.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in SERVER_FIELDS {
                meta.remove(*f);
            }
        }
    }
    v
}

/// The spec hash a live object carries.
pub fn live_hash(live: &Value) -> Option<&str> {
    live.pointer("/metadata/annotations")
        .and_then(|a| a.get(HASH_ANNOTATION))
        .and_then(Value::as_str)
}

/// Compare `live` with `merged` (the answer to a forced dry-run apply by `manager` of the
/// object whose spec hash is `desired_hash`).
pub fn compare(
    live: &Value,
    merged: &Value,
    desired_hash: &str,
    manager: &str,
    policy: &Policy,
) -> Comparison {
    compare_revisions(live, merged, None, desired_hash, manager, policy)
}

/// [`compare`], knowing what the revision changed: `revisions` is the object as the previously
/// applied revision compiled it and as the new one does. A field changed in the cluster that
/// the new revision changes too is [`Class::Reclaimed`], not drift.
pub fn compare_revisions(
    live: &Value,
    merged: &Value,
    revisions: Option<(&Value, &Value)>,
    desired_hash: &str,
    manager: &str,
    policy: &Policy,
) -> Comparison {
    let shapes = match revisions {
        Some((prev, next)) => Shapes::learn([live, merged, prev, next]),
        None => Shapes::learn([live, merged]),
    };
    let hash_changed = live_hash(live) != Some(desired_hash);
    // Leaves the new revision changes (only when it is a new revision of this object).
    let changed_in_git: Option<(Leaves, Leaves)> =
        revisions.filter(|_| hash_changed).map(|(prev, next)| {
            (
                fields::flatten(&normalise(prev), &shapes),
                fields::flatten(&normalise(next), &shapes),
            )
        });
    let git_changed = |p: &Path| {
        changed_in_git
            .as_ref()
            .is_some_and(|(a, b)| a.get(p) != b.get(p))
    };
    let l = fields::flatten(&normalise(live), &shapes);
    let m = fields::flatten(&normalise(merged), &shapes);
    let ours_merged = fields::applied_by(merged, manager);
    let ours_live = fields::applied_by(live, manager);
    let others: Vec<Manager> = fields::managers(live)
        .into_iter()
        .filter(|e| e.name != manager)
        .collect();
    // What is reported: both sides redacted by `plinth::redact` (a leaf missing there, as a
    // whole fingerprint).
    let sensitive =
        plinth::redact::sensitive_object(merged) || plinth::redact::sensitive_object(live);
    let shown_side = |v: &Value| {
        let mut x = normalise(v);
        plinth::redact::object_as(&mut x, &policy.fingerprint, sensitive);
        fields::flatten(&x, &shapes)
    };
    let (l_shown, m_shown) = (shown_side(live), shown_side(merged));
    let key = &policy.fingerprint;
    let shown = |side: &Leaves, p: &Path, v: &Value| -> Value {
        side.get(p)
            .cloned()
            .unwrap_or_else(|| plinth::redact::whole(v, key))
    };

    let paths = differing_paths(&l, &m);
    let mut diffs = Vec::new();
    for p in &paths {
        let Some(class) = classify(
            p,
            &others,
            &ours_merged,
            hash_changed,
            git_changed(p),
            policy,
        ) else {
            continue;
        };
        diffs.push(FieldDiff {
            path: (*p).clone(),
            desired: m.get(*p).map(|v| shown(&m_shown, p, v)),
            live: l.get(*p).map(|v| shown(&l_shown, p, v)),
            class,
        });
    }

    let extras = l
        .iter()
        .filter(|(p, _)| !paths.contains(p) && !ours_merged.owns(p))
        .filter_map(|(p, v)| {
            others
                .iter()
                .find(|e| policy.is_hand(&e.name) && e.fields.owns_exactly(p))
                .map(|owner| Extra {
                    path: p.clone(),
                    value: shown(&l_shown, p, v),
                    manager: owner.name.clone(),
                })
        })
        .collect();

    let ownership_changed = l
        .keys()
        .chain(m.keys())
        .filter(|p| !paths.contains(p))
        .any(|p| ours_live.owns_exactly(p) != ours_merged.owns_exactly(p));

    Comparison {
        diffs,
        extras,
        hash_changed,
        ownership_changed,
    }
}

/// The paths whose leaves differ between `l` and `m` (a leaf covered by a whole value on the
/// other side does not).
fn differing_paths<'a>(l: &'a Leaves, m: &'a Leaves) -> BTreeSet<&'a Path> {
    let mut paths: BTreeSet<&Path> = BTreeSet::new();
    for (p, v) in l {
        if m.get(p) != Some(v) && !covered(p, v, m) {
            paths.insert(p);
        }
    }
    for (p, v) in m {
        if !l.contains_key(p) && !covered(p, v, l) {
            paths.insert(p);
        }
    }
    paths
}

/// The class of a differing field, by who owns it; `None`: not plinth's field and not a new
/// revision, so the server's doing (defaults following another field) and nothing to apply.
fn classify(
    p: &Path,
    others: &[Manager],
    ours_merged: &fields::FieldSet,
    hash_changed: bool,
    git_changed: bool,
    policy: &Policy,
) -> Option<Class> {
    let exact: Vec<&Manager> = others.iter().filter(|e| e.fields.owns_exactly(p)).collect();
    let owners = if exact.is_empty() {
        others
            .iter()
            .filter(|e| e.fields.owns_ancestor(p))
            .collect()
    } else {
        exact.clone()
    };
    let in_desired =
        ours_merged.owns_exactly(p) || (exact.is_empty() && ours_merged.owns_ancestor(p));
    let class = if is_provenance(p) {
        // A new hash, or a spec moved to another file: part of the revision.
        Class::Update
    } else if !in_desired {
        if !hash_changed {
            return None;
        }
        Class::Update
    } else if let Some(owner) = owners.iter().find(|e| policy.is_hand(&e.name)) {
        if git_changed {
            Class::Reclaimed {
                manager: owner.name.clone(),
            }
        } else {
            Class::Hand {
                manager: owner.name.clone(),
            }
        }
    } else if let Some(owner) = owners.first() {
        Class::Other {
            manager: owner.name.clone(),
        }
    } else if hash_changed {
        Class::Update
    } else {
        Class::OutOfBand
    };
    Some(class)
}

/// `metadata.annotations.plinth.dev/source`, `.../spec-hash` or `.../template`.
pub fn is_provenance(p: &Path) -> bool {
    use plinth::lower::PROVENANCE_ANNOTATIONS;
    matches!(p.fields().as_deref(), Some(["metadata", "annotations", a]) if PROVENANCE_ANNOTATIONS.contains(a))
}

/// An empty map or list leaf whose place the other side fills with leaves below it: the
/// difference shows in those leaves.
fn covered(p: &Path, v: &Value, other: &Leaves) -> bool {
    let empty =
        v.as_object().is_some_and(|o| o.is_empty()) || v.as_array().is_some_and(Vec::is_empty);
    empty
        && other
            .range(p.clone()..)
            .take_while(|(q, _)| q.starts_with(p))
            .any(|(q, _)| q != p)
}

/// What to send for one existing object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApplyPlan {
    /// Whether anything needs applying at all.
    pub needed: bool,
    /// The configuration to apply: the desired object less the fields left to others (and,
    /// in `detect` mode, with drifted fields kept as they are).
    pub body: Value,
    /// Apply with force (taking fields back from hand edits).
    pub force: bool,
}

/// Decide what to apply for an existing object.
pub fn plan(desired: &Value, live: &Value, cmp: &Comparison, policy: &Policy) -> ApplyPlan {
    let mut body = desired.clone();
    let mut force = false;
    let mut needed = cmp.ownership_changed || cmp.updates().next().is_some();
    for d in &cmp.diffs {
        match (&d.class, policy.mode) {
            (Class::Update, _) => {}
            (Class::Reclaimed { .. }, _) => {
                force = true;
                needed = true;
            }
            (Class::Other { manager }, _) => {
                if policy.takes_from(manager) {
                    force = true;
                    needed = true;
                } else {
                    fields::remove(&mut body, &d.path);
                }
            }
            (Class::Hand { .. }, Mode::Heal) => {
                force = true;
                needed = true;
            }
            (Class::OutOfBand, Mode::Heal) => needed = true,
            (Class::Hand { .. }, Mode::Detect) => {
                fields::remove(&mut body, &d.path);
            }
            (Class::OutOfBand, Mode::Detect) => match fields::get(&normalise(live), &d.path) {
                Some(v) => {
                    let v = v.clone();
                    fields::set(&mut body, &d.path, v);
                }
                None => {
                    fields::remove(&mut body, &d.path);
                }
            },
        }
    }
    ApplyPlan {
        needed,
        body,
        force,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn quota(cpu: &str, hash: &str, managed: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "quota", "namespace": "er", "annotations": {HASH_ANNOTATION: hash},
                         "resourceVersion": "7", "managedFields": managed},
            "spec": {"hard": {"requests.cpu": cpu, "pods": "10"}},
        })
    }

    fn plinth_owns(fields: Value) -> Value {
        json!({"manager": "plinth", "operation": "Apply", "fieldsV1": fields})
    }

    fn all_fields() -> Value {
        json!({"f:metadata": {"f:annotations": {"f:plinth.dev/spec-hash": {}}},
               "f:spec": {"f:hard": {"f:requests.cpu": {}, "f:pods": {}}}})
    }

    #[test]
    fn unchanged_objects_compare_equal() {
        let live = quota("32", "h1", json!([plinth_owns(all_fields())]));
        let c = compare(&live, &live, "h1", "plinth", &Policy::default());
        assert_eq!(c, Comparison::default());
        let p = plan(&live, &live, &c, &Policy::default());
        assert!(!p.needed);
    }

    #[test]
    fn hand_edits_are_drift() {
        let kept = json!({"f:metadata": {"f:annotations": {"f:plinth.dev/spec-hash": {}}},
                          "f:spec": {"f:hard": {"f:pods": {}}}});
        let live = quota(
            "48",
            "h1",
            json!([plinth_owns(kept),
            {"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:spec": {"f:hard": {"f:requests.cpu": {}}}}}]),
        );
        let merged = quota("32", "h1", json!([plinth_owns(all_fields())]));
        let c = compare(&live, &merged, "h1", "plinth", &Policy::default());
        assert_eq!(c.diffs.len(), 1);
        assert_eq!(
            c.diffs[0].to_string(),
            "spec.hard.requests.cpu 32→48, changed by kubectl-edit"
        );
        let desired = normalise(&merged);
        let detect = plan(&desired, &live, &c, &Policy::default());
        assert!(!detect.needed);
        let heal_policy = Policy {
            mode: Mode::Heal,
            ..Policy::default()
        };
        let heal = plan(&desired, &live, &c, &heal_policy);
        assert!(heal.needed && heal.force);
        assert_eq!(heal.body["spec"]["hard"]["requests.cpu"], "32");
    }

    #[test]
    fn a_revision_changing_a_hand_edited_field_takes_it_back() {
        let hand = json!({"manager": "kubectl-edit", "operation": "Update",
                          "fieldsV1": {"f:spec": {"f:hard": {"f:requests.cpu": {}, "f:pods": {}}}}});
        let kept = json!({"f:metadata": {"f:annotations": {"f:plinth.dev/spec-hash": {}}}});
        // Applied at 48 (h2), edited by hand to 64 cpus and 12 pods; the new revision (h1)
        // sets cpu back to 32 and leaves pods at 10.
        let mut live = quota("64", "h2", json!([plinth_owns(kept), hand]));
        live["spec"]["hard"]["pods"] = json!("12");
        let merged = quota("32", "h1", json!([plinth_owns(all_fields())]));
        let previous = quota("48", "h2", json!([]));
        let next = quota("32", "h1", json!([]));
        let policy = Policy::default();
        let c = compare_revisions(
            &live,
            &merged,
            Some((&previous, &next)),
            "h1",
            "plinth",
            &policy,
        );
        let shown: Vec<String> = c.diffs.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "metadata.annotations.plinth.dev/spec-hash h2→h1",
                "spec.hard.pods 10→12, changed by kubectl-edit",
                "spec.hard.requests.cpu 64→32, changed in git over an edit by kubectl-edit",
            ]
        );
        let p = plan(&normalise(&merged), &live, &c, &policy);
        assert!(p.needed && p.force);
        assert_eq!(p.body["spec"]["hard"]["requests.cpu"], "32");
        assert_eq!(
            p.body["spec"]["hard"].get("pods"),
            None,
            "the other edit stays"
        );

        // Without the previous revision, or on the same revision, it is drift as before.
        let c = compare(&live, &merged, "h1", "plinth", &policy);
        assert!(
            c.diffs
                .iter()
                .all(|d| !matches!(d.class, Class::Reclaimed { .. }))
        );
        let same = quota("32", "h2", json!([plinth_owns(all_fields())]));
        let c = compare_revisions(
            &live,
            &same,
            Some((&previous, &next)),
            "h2",
            "plinth",
            &policy,
        );
        assert!(c.diffs.iter().all(|d| d.class.is_drift()), "{:?}", c.diffs);
    }

    #[test]
    fn other_managers_are_left_alone_and_updates_applied() {
        let live = quota(
            "48",
            "h1",
            json!([plinth_owns(json!({"f:spec": {"f:hard": {"f:pods": {}}}})),
            {"manager": "quota-controller", "operation": "Update", "fieldsV1": {"f:spec": {"f:hard": {"f:requests.cpu": {}}}}}]),
        );
        let mut merged = quota("32", "h2", json!([plinth_owns(all_fields())]));
        merged["spec"]["hard"]["pods"] = json!("20");
        let c = compare(&live, &merged, "h2", "plinth", &Policy::default());
        let shown: Vec<String> = c.diffs.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "metadata.annotations.plinth.dev/spec-hash h1→h2",
                "spec.hard.pods 10→20",
                "spec.hard.requests.cpu 32→48, owned by quota-controller (left alone)",
            ]
        );
        let p = plan(&normalise(&merged), &live, &c, &Policy::default());
        assert!(p.needed && !p.force);
        assert_eq!(p.body["spec"]["hard"].get("requests.cpu"), None);
    }

    #[test]
    fn a_moved_spec_file_is_an_update_not_drift() {
        let mut live = quota("32", "h1", json!([plinth_owns(all_fields())]));
        live["metadata"]["annotations"]["plinth.dev/source"] = json!("projects/er.yaml:1");
        let mut merged = live.clone();
        merged["metadata"]["annotations"]["plinth.dev/source"] = json!("teams/er.yaml:1");
        let c = compare(&live, &merged, "h1", "plinth", &Policy::default());
        assert_eq!(c.diffs.len(), 1);
        assert_eq!(c.diffs[0].class, Class::Update);
        assert!(plan(&normalise(&merged), &live, &c, &Policy::default()).needed);
    }

    #[test]
    fn changes_by_unknown_managers_follow_the_policy() {
        let kept = json!({"f:metadata": {"f:annotations": {"f:plinth.dev/spec-hash": {}}},
                          "f:spec": {"f:hard": {"f:pods": {}}}});
        let live = quota(
            "48",
            "h1",
            json!([plinth_owns(kept),
            {"manager": "ops-console", "operation": "Update", "fieldsV1": {"f:spec": {"f:hard": {"f:requests.cpu": {}}}}}]),
        );
        let merged = quota("32", "h1", json!([plinth_owns(all_fields())]));
        let c = compare(&live, &merged, "h1", "plinth", &Policy::default());
        assert_eq!(
            c.diffs[0].class,
            Class::Other {
                manager: "ops-console".into()
            }
        );
        let mut policy = Policy::default();
        policy.hand_managers.push("ops-".into());
        let c = compare(&live, &merged, "h1", "plinth", &policy);
        assert_eq!(
            c.diffs[0].class,
            Class::Hand {
                manager: "ops-console".into()
            }
        );
    }

    #[test]
    fn server_defaults_are_not_differences_and_secrets_are_redacted() {
        let mut live = quota("32", "h1", json!([plinth_owns(all_fields())]));
        live["spec"]["scopes"] = json!(["NotTerminating"]);
        let c = compare(&live, &live, "h1", "plinth", &Policy::default());
        assert!(c.diffs.is_empty());
        let secret = |v: &str, m: Value| {
            json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "s", "annotations": {HASH_ANNOTATION: "h"}, "managedFields": m}, "data": {"k": v}})
        };
        let owned = json!([plinth_owns(
            json!({"f:data": {"f:k": {}}, "f:metadata": {"f:annotations": {"f:plinth.dev/spec-hash": {}}}})
        )]);
        let c = compare(
            &secret("b2xk", owned.clone()),
            &secret("bmV3", owned),
            "h",
            "plinth",
            &Policy::default(),
        );
        assert_eq!(c.diffs.len(), 1);
        assert!(
            c.diffs[0].to_string().contains("(redacted, hmac:"),
            "{}",
            c.diffs[0]
        );
        assert!(!c.diffs[0].to_string().contains("bmV3"));
    }

    #[test]
    fn drift_in_configmaps_and_env_is_redacted_like_a_plan() {
        let cm = |pw: &str, url: &str, m: Value| {
            json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "annotations": {HASH_ANNOTATION: "h"}, "managedFields": m},
            "data": {"db_password": pw, "url": url, "mode": "fast"}})
        };
        let owned = json!([plinth_owns(json!({
            "f:data": {"f:db_password": {}, "f:url": {}, "f:mode": {}},
            "f:metadata": {"f:annotations": {"f:plinth.dev/spec-hash": {}}}
        }))]);
        let live = cm(
            "hunter2",
            "postgres://app:pw-live@db/app",
            json!([{"manager": "kubectl-edit", "operation": "Update", "fieldsV1": {"f:data": {"f:db_password": {}, "f:url": {}}}}]),
        );
        let desired = cm("hunter3", "postgres://app:pw-git@db/app", owned);
        let policy = Policy {
            fingerprint: plinth::redact::Key::new(b"k"),
            ..Policy::default()
        };
        let c = compare(&live, &desired, "h", "plinth", &policy);
        let shown: String = c.diffs.iter().map(|d| format!("{d}\n")).collect::<String>()
            + &serde_json::to_string(&c.diffs).unwrap();
        assert_eq!(c.diffs.len(), 2, "{shown}");
        for leak in ["hunter2", "hunter3", "pw-live", "pw-git"] {
            assert!(!shown.contains(leak), "{leak}: {shown}");
        }
        assert!(shown.contains("(redacted, hmac:"), "{shown}");
        // A changed secret shows as changed: two different fingerprints.
        for d in &c.diffs {
            assert_ne!(d.desired, d.live, "{d}");
        }
    }
}
