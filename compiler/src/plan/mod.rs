//! Plan: the difference between two compiled platforms, as a reviewer needs it — and the one
//! safety contract that `plinth plan` and the agent (`plinth-agent run`) both enforce.
//!
//! Objects are paired by (apiVersion, kind, namespace, name) per cluster. Provenance
//! annotations (`plinth.dev/source`, `plinth.dev/spec-hash`) are not content: a spec moved to
//! another file changes nothing. Each change is classified by blast radius:
//!
//! - **destructive**: deleting a Namespace, PersistentVolumeClaim, PersistentVolume, bucket or
//!   CustomResourceDefinition; lowering a quota (a ResourceQuota hard limit or a Kueue nominal
//!   quota); changing a field the API server will not change in place (the object must be
//!   replaced); re-pointing or reconfiguring the agent (`spec.agent`: its Deployment beyond
//!   the sync interval) or changing its RBAC, and removing any part of its installation;
//! - **disruptive**: restarting workloads (pod template changes), changing who may reach or
//!   administer something (NetworkPolicy, RBAC, Service selectors), deleting other objects;
//! - **safe**: everything else (creations, quota increases, metadata).
//!
//! A destructive change is refused unless approved, and an approval counts only for the change
//! that introduces it ([`approve`]):
//! - `--allow-destructive` (a local plan only; the agent has no such switch in its loop);
//! - an entry of the Platform's `spec.approvals` (`object: ResourceQuota/p6/quota`, optional
//!   `cluster:`, `reason:`, `approver:`) that is **not** present at the base;
//! - the annotation `plinth.dev/approve-destructive: <reason>` on the head spec that produces
//!   the object, when the base object did not carry the same value.
//!
//! An approval already present at the base approves nothing and is reported as stale (a
//! warning with a hint to remove it); a new entry that matches no destructive change is
//! reported too. Every refusal carries the YAML that would approve it. A head that deletes more
//! than a set share of a cluster's objects is refused outright.
//!
//! Pure: history (which commits touched which spec) is attached by the caller.

pub mod md;
pub mod render;

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::Serialize;
use serde_json::Value;

use crate::emit::to_yaml;
use crate::load::git::CommitInfo;
use crate::lower::{
    Approval, ClusterOutput, Lowered, Manifest, ObjectKey, Origin, PROVENANCE_ANNOTATIONS,
    canonical_json,
};
use crate::parse::{FieldPath, Seg};

/// Annotation on a spec approving the destructive changes of the objects it produces.
pub const APPROVE_ANNOTATION: &str = crate::output::APPROVE_ANNOTATION;
pub use crate::output::REDACT_ANNOTATION;

/// What happens to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Create,
    Update,
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Update => "update",
            Action::Delete => "delete",
        }
    }
}

/// Blast radius of a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    Safe,
    Disruptive,
    Destructive,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Safe => "safe",
            Risk::Disruptive => "disruptive",
            Risk::Destructive => "destructive",
        }
    }
}

/// Where a change comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Provenance {
    /// The spec (in head; in base for deletions).
    pub origin: Origin,
    /// Commits between base and head that touched that spec's file, newest first.
    pub commits: Vec<CommitInfo>,
}

/// One object that changes.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub cluster: String,
    pub key: ObjectKey,
    pub action: Action,
    pub risk: Risk,
    /// Why it has that risk.
    pub reasons: Vec<String>,
    /// What approved a destructive change (`None`: not approved, or not destructive).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approved>,
    /// Unified diff of the object's YAML (provenance annotations left out, secrets redacted).
    pub diff: String,
    pub provenance: Provenance,
    /// Field paths that changed (updates only), e.g. `spec.hard.requests.cpu`.
    pub fields: Vec<FieldChange>,
}

/// One changed field of an update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldChange {
    /// The field's path (`spec.hard["requests.nvidia.com/gpu"]`).
    pub path: String,
    /// Its last step, for summaries (`requests.nvidia.com/gpu`).
    #[serde(skip)]
    pub leaf: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

/// Per-cluster counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub create: usize,
    pub update: usize,
    pub delete: usize,
    pub unchanged: usize,
    pub destructive: usize,
}

/// How a destructive change was approved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Via {
    /// `plinth plan --allow-destructive`.
    Flag,
    /// An entry of the Platform's `spec.approvals` added by this change.
    Entry,
    /// `plinth.dev/approve-destructive` on the spec, set by this change.
    Annotation,
}

impl Via {
    pub fn as_str(self) -> &'static str {
        match self {
            Via::Flag => "flag",
            Via::Entry => "entry",
            Via::Annotation => "annotation",
        }
    }
}

/// The approval of one destructive change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approved {
    pub via: Via,
    /// Why (the entry's `reason`, the annotation's value).
    pub reason: String,
    /// Who approved, when the entry names them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// Where the approval is written (the Platform's file and the entry's line, or the spec's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<std::sync::Arc<str>>,
    pub line: u32,
    /// Commits between base and head that touched that file, newest first (who added it).
    pub commits: Vec<CommitInfo>,
}

impl Approved {
    /// `` `spec.approvals` entry (plinth.yaml:12) ``, `` `--allow-destructive` ``, …
    pub fn what(&self) -> String {
        let at = self
            .file
            .as_ref()
            .map(|f| format!(" ({f}:{})", self.line))
            .unwrap_or_default();
        match self.via {
            Via::Flag => "`--allow-destructive`".to_owned(),
            Via::Entry => format!("`spec.approvals` entry{at}"),
            Via::Annotation => format!("`{APPROVE_ANNOTATION}`{at}"),
        }
    }

    /// Who stands behind it: the named approver, else the authors of the commits that wrote it.
    pub fn who(&self) -> Option<String> {
        if let Some(a) = &self.approver {
            return Some(a.clone());
        }
        let mut authors: Vec<&str> = Vec::new();
        for c in &self.commits {
            if !authors.contains(&c.author.as_str()) {
                authors.push(&c.author);
            }
        }
        (!authors.is_empty()).then(|| authors.join(", "))
    }

    /// One line: `reason — approved by X via Y`.
    pub fn describe(&self) -> String {
        let mut s = format!("approved: {}", self.reason);
        if let Some(w) = self.who() {
            s.push_str(&format!(" — by {w}"));
        }
        s.push_str(&format!(" — {}", self.what()));
        if let Some(c) = self.commits.first() {
            s.push_str(&format!(", added in {}", c.short));
        }
        s
    }
}

/// One field changed the same way across many objects of a kind in a cluster (a mass change),
/// summarised once above the per-object details.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub cluster: String,
    pub kind: String,
    /// The field's path (`metadata.annotations["plinth.dev/display-name"]`).
    pub path: String,
    /// How many objects change it.
    pub objects: usize,
    /// The value before and after, when every object has the same ones.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Whether every object goes from the same value to the same value.
    pub same: bool,
}

/// Fewest objects sharing a field change to make a [`Group`].
pub const GROUP_MIN: usize = 5;

/// Why (part of) a plan may not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub cluster: String,
    /// The object whose destructive change is not approved (`None`: a refusal of the whole
    /// cluster, such as a mass deletion).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<ObjectKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<Action>,
    pub message: String,
    /// What to do about it (for an object: the YAML that approves it).
    pub hint: String,
}

/// Something a reviewer should know that does not stop the plan (a stale approval).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Warning {
    /// The file and line it is about.
    pub file: std::sync::Arc<str>,
    pub line: u32,
    pub message: String,
    pub hint: String,
}

/// A plan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub counts: BTreeMap<String, Counts>,
    /// Sorted by cluster, then action (deletes last), then key.
    pub changes: Vec<Change>,
    /// Why the plan may not be applied (destructive changes not approved, mass deletion).
    pub refusals: Vec<Refusal>,
    /// Stale or unused approvals.
    pub warnings: Vec<Warning>,
    /// The Platform's file in the head (where approvals go), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub platform_file: Option<std::sync::Arc<str>>,
    /// GPU consequences, when the specs of both sides were given ([`plan_with_capacity`])
    /// and some GPU figure changes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capacity: Option<crate::capacity::Diff>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }
    pub fn is_refused(&self) -> bool {
        !self.refusals.is_empty()
    }
    /// Identical field changes of updates across at least `min` objects of a kind in a
    /// cluster, most objects first (pure: from the changes alone).
    pub fn groups(&self, min: usize) -> Vec<Group> {
        type Values<'a> = (Option<&'a String>, Option<&'a String>);
        let mut by: BTreeMap<(&str, &str, &str), (usize, Values<'_>, bool)> = BTreeMap::new();
        for c in self.changes.iter().filter(|c| c.action == Action::Update) {
            let mut seen = BTreeSet::new();
            for f in &c.fields {
                if !seen.insert(f.path.as_str()) {
                    continue;
                }
                let vals = (f.before.as_ref(), f.after.as_ref());
                let e = by
                    .entry((c.cluster.as_str(), c.key.kind.as_str(), f.path.as_str()))
                    .or_insert((0, vals, true));
                e.0 += 1;
                e.2 &= e.1 == vals;
            }
        }
        let mut out: Vec<Group> = by
            .into_iter()
            .filter(|(_, (n, _, _))| *n >= min.max(2))
            .map(|((cluster, kind, path), (n, (b, a), same))| Group {
                cluster: cluster.to_owned(),
                kind: kind.to_owned(),
                path: path.to_owned(),
                objects: n,
                before: b.filter(|_| same).cloned(),
                after: a.filter(|_| same).cloned(),
                same,
            })
            .collect();
        out.sort_by(|x, y| {
            (y.objects, &x.cluster, &x.kind, &x.path)
                .cmp(&(x.objects, &y.cluster, &y.kind, &y.path))
        });
        out
    }

    /// The refusals that concern `cluster`.
    pub fn refusals_of<'a>(&'a self, cluster: &'a str) -> impl Iterator<Item = &'a Refusal> + 'a {
        self.refusals.iter().filter(move |r| r.cluster == cluster)
    }

    /// The `spec.approvals` entries that would approve every refused object change, as YAML to
    /// paste under the Platform's `spec:` (empty when no refusal can be approved).
    pub fn approval_yaml(&self, cluster: Option<&str>) -> String {
        approval_yaml(
            self.refusals
                .iter()
                .filter(|r| cluster.is_none_or(|c| r.cluster == c)),
        )
    }

    /// Attach history: `touched(file)` lists the commits between base and head that touched a
    /// file (newest first); every change gets those of its spec's file, every approval those
    /// of the file it is written in. Files as named after [`Plan::prefix_files`].
    pub fn attach_history<E>(
        &mut self,
        mut touched: impl FnMut(&str) -> Result<Vec<CommitInfo>, E>,
    ) -> Result<(), E> {
        let mut memo: BTreeMap<String, Vec<CommitInfo>> = BTreeMap::new();
        let mut get = |f: &str| -> Result<Vec<CommitInfo>, E> {
            if let Some(v) = memo.get(f) {
                return Ok(v.clone());
            }
            let mut v = touched(f)?;
            for k in &mut v {
                k.summary = crate::redact::text(&k.summary).into_owned();
                k.author = crate::redact::text(&k.author).into_owned();
            }
            memo.insert(f.to_owned(), v.clone());
            Ok(v)
        };
        for c in &mut self.changes {
            c.provenance.commits = get(&c.provenance.origin.file)?;
            if let Some(a) = &mut c.approval
                && let Some(f) = &a.file
            {
                a.commits = get(f)?;
            }
        }
        Ok(())
    }

    /// Put `prefix` in front of every spec file named (the platform's directory inside the
    /// repository), so paths read from the repository root.
    pub fn prefix_files(&mut self, prefix: &str) {
        if prefix.is_empty() {
            return;
        }
        let fix = |f: &mut std::sync::Arc<str>| {
            *f = std::sync::Arc::from(format!("{prefix}{f}").as_str());
        };
        for c in &mut self.changes {
            fix(&mut c.provenance.origin.file);
            if let Some(f) = c.approval.as_mut().and_then(|a| a.file.as_mut()) {
                fix(f);
            }
        }
        for w in &mut self.warnings {
            fix(&mut w.file);
        }
        if let Some(f) = &mut self.platform_file {
            fix(f);
        }
        let platform = self.platform_file.clone();
        for r in &mut self.refusals {
            if let Some(k) = &r.object {
                let spec = self
                    .changes
                    .iter()
                    .find(|c| c.cluster == r.cluster && &c.key == k)
                    .map(|c| c.provenance.origin.clone());
                if let (Some(a), Some(_)) = (r.action, &r.object) {
                    r.hint = refusal_hint(&r.cluster, k, a, platform.as_deref(), spec.as_ref());
                }
            }
        }
    }
}

/// The YAML of `spec.approvals` entries for the object refusals among `refusals`.
pub fn approval_yaml<'a>(refusals: impl Iterator<Item = &'a Refusal>) -> String {
    approvals_yaml(refusals.filter_map(|r| r.object.as_ref().map(|k| (r.cluster.as_str(), k))))
}

/// An `approvals:` list (YAML, to go under the Platform's `spec:`) with one entry per
/// (cluster, object), placeholders for the reason and the approver; empty for no objects.
pub fn approvals_yaml<'a>(objects: impl IntoIterator<Item = (&'a str, &'a ObjectKey)>) -> String {
    let mut s = String::new();
    let mut seen = BTreeSet::new();
    for (cluster, k) in objects {
        let id = Approval::object_id(k);
        if !seen.insert((cluster, id.clone())) {
            continue;
        }
        if s.is_empty() {
            s.push_str("approvals:\n");
        }
        s.push_str(&format!(
            "  - object: {id}\n    cluster: {cluster}\n    reason: \"<why; a ticket>\"\n    approver: \"<who reviewed it>\"\n"
        ));
    }
    s
}

fn refusal_hint(
    cluster: &str,
    key: &ObjectKey,
    action: Action,
    platform_file: Option<&str>,
    spec: Option<&Origin>,
) -> String {
    let file = platform_file.map_or_else(|| "the Platform".to_owned(), |f| format!("`{f}`"));
    let mut s = format!(
        "approve it in this change: add under `spec:` of {file}\n  approvals:\n    - object: {}\n      cluster: {cluster}\n      reason: \"<why; a ticket>\"\n      approver: \"<who reviewed it>\"",
        Approval::object_id(key)
    );
    if action != Action::Delete
        && let Some(o) = spec
        && !o.file.is_empty()
    {
        s.push_str(&format!(
            "\nor annotate its spec ({}:{}) with `{APPROVE_ANNOTATION}: <why>` in this change",
            o.file, o.line
        ));
    }
    s.push_str("\nan approval counts once: remove it again in a later change");
    s
}

/// Options of a plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Allow every destructive change (a local plan; never the agent's loop).
    pub allow_destructive: bool,
    /// Largest share of a cluster's base objects a head may delete (0.0–1.0).
    pub max_delete_share: f64,
    /// The key of redaction fingerprints (`PLINTH_FINGERPRINT_KEY`; a random key per run
    /// by default).
    pub fingerprint: crate::redact::Key,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            allow_destructive: false,
            max_delete_share: 0.5,
            fingerprint: crate::redact::Key::default(),
        }
    }
}

/// An object without provenance annotations, secrets redacted ([`crate::redact::object`]
/// with `key`): what plans compare and show.
pub fn content(m: &Manifest, key: &crate::redact::Key) -> Value {
    let mut v = Value::clone(&m.object);
    if let Some(ann) = v
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        for a in PROVENANCE_ANNOTATIONS {
            ann.remove(a);
        }
        if ann.is_empty()
            && let Some(meta) = v.pointer_mut("/metadata").and_then(Value::as_object_mut)
        {
            meta.remove("annotations");
        }
    }
    crate::redact::object(&mut v, key);
    v
}

/// Compare two compiled platforms. `base` is empty for a first deployment.
///
/// The one classification: `plinth plan` calls it for a pull request, the agent for the
/// commit it applied and the commit it is about to apply.
pub fn plan(base: &Lowered, head: &Lowered, opts: &PlanOptions) -> Plan {
    plan_inner(base, head, opts, &BTreeMap::new(), &Totals::default())
}

/// [`plan`] of two revisions restricted to what [`prune`] wanted.
pub fn plan_pruned_without_capacity(
    base: &Lowered,
    head: &Lowered,
    totals: &Totals,
    opts: &PlanOptions,
) -> Plan {
    plan_inner(base, head, opts, &BTreeMap::new(), totals)
}

/// The index of a compiled revision (what [`prune`] compares).
pub fn index_of(lowered: &Lowered) -> crate::output::LoweredIndex {
    use rayon::prelude::*;
    crate::output::LoweredIndex {
        clusters: lowered
            .clusters
            .iter()
            .map(|(name, c)| {
                let objects = c
                    .manifests
                    .par_iter()
                    .map(|m| crate::output::Indexed {
                        key: m.key.clone(),
                        hash: m.hash.clone(),
                        approve: m.approves(),
                    })
                    .collect();
                let index = crate::output::ClusterIndex {
                    objects,
                    approvals: c.approvals.clone(),
                };
                (name.clone(), index)
            })
            .collect(),
        platform_file: lowered.platform_file.clone(),
    }
}

/// What a plan knows of a revision's units without reading their objects: per cluster, its
/// number of objects and, per unit (by key), how many of the unit's objects the cluster kept
/// and whether one of them carries an approval annotation. Two revisions share every unit
/// whose inputs did not change, so a plan compares units first ([`prune_units`]) and indexes
/// only the objects of the units that differ.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UnitSummary<'k> {
    pub clusters: BTreeMap<String, ClusterUnits<'k>>,
}

/// One cluster of a [`UnitSummary`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClusterUnits<'k> {
    pub objects: usize,
    /// Unit key (borrowed from the revision's list) → (objects kept, one of them carries an
    /// approval annotation). Looked up, never walked for output (keys are hashes: a fast
    /// hasher, randomly seeded).
    pub units: HashMap<&'k str, (usize, bool), foldhash::fast::RandomState>,
}

/// A [`UnitSummary`] owned, in key order ([`UnitSummary::sorted`]): per cluster, its number of
/// objects and per unit key its objects kept and whether one carries an approval annotation.
pub type SortedUnits = BTreeMap<String, (usize, BTreeMap<String, (usize, bool)>)>;

/// Units by key (looked up, never walked for output).
pub type UnitSet<'k> = std::collections::HashSet<&'k str, foldhash::fast::RandomState>;

/// Per cluster, the units two revisions share ([`shared_units`]).
pub type Shared<'k> = BTreeMap<String, UnitSet<'k>>;

impl<'k> UnitSummary<'k> {
    /// The summary of a compile whose objects came from a unit store (`None` when they did
    /// not).
    pub fn of(lowered: &'k Lowered) -> Option<UnitSummary<'k>> {
        let refs = lowered.units.as_deref()?;
        let clusters = lowered
            .clusters
            .iter()
            .map(|(name, c)| Some((name.as_str(), cluster_units(c, refs.places.get(name)?)?)))
            .collect::<Option<Vec<_>>>()?;
        UnitSummary::named(&refs.keys, clusters.iter().map(|(n, u)| (*n, &u[..])))
    }

    /// Each cluster's number of objects and its units in key order, owned (to compare the
    /// summaries of revisions no longer held).
    pub fn sorted(&self) -> SortedUnits {
        self.clusters
            .iter()
            .map(|(name, c)| {
                let units = c.units.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
                (name.clone(), (c.objects, units))
            })
            .collect()
    }

    /// The summary of clusters' units given by number ([`cluster_units`]), named by `keys`.
    pub fn named<'a>(
        keys: &'k [String],
        clusters: impl Iterator<Item = (&'a str, &'a [(u32, u32, bool)])>,
    ) -> Option<UnitSummary<'k>> {
        let mut out = UnitSummary::default();
        for (name, units) in clusters {
            let mut c = ClusterUnits::default();
            c.units.reserve(units.len());
            for &(u, n, approve) in units {
                let key = keys.get(usize::try_from(u).ok()?)?;
                let n = usize::try_from(n).ok()?;
                c.units.insert(key.as_str(), (n, approve));
                c.objects += n;
            }
            out.clusters.insert(name.to_owned(), c);
        }
        Some(out)
    }
}

/// A cluster's units, by number: `[unit number, objects kept, one carries an approval
/// annotation]`, from where each object is in the unit store (`None` when that does not list
/// every object).
pub fn cluster_units(
    c: &crate::output::ClusterOutput,
    places: &[(u32, u32)],
) -> Option<Vec<(u32, u32, bool)>> {
    if places.len() != c.manifests.len() {
        return None;
    }
    // Per unit number: its objects kept, and whether one carries the annotation (an object
    // read from the unit store is asked only when its unit's text may hold it: the store
    // recorded that, see `output::Body::may_approve`).
    let size = places
        .iter()
        .map(|&(u, _)| u as usize + 1)
        .max()
        .unwrap_or(0);
    let mut units: Vec<(u32, bool)> = vec![(0, false); size];
    for (m, &(u, _)) in c.manifests.iter().zip(places) {
        let e = &mut units[u as usize];
        e.0 += 1;
        e.1 = e.1 || m.approves();
    }
    Some(
        units
            .into_iter()
            .enumerate()
            .filter(|(_, (n, _))| *n > 0)
            .map(|(u, (n, a))| (u32::try_from(u).unwrap_or(u32::MAX), n, a))
            .collect(),
    )
}

/// Per cluster, the units whose objects are the same on both sides: the same key (so the same
/// result), as many of their objects kept on both sides, none carrying an approval annotation
/// (a plan reads those even when unchanged).
pub fn shared_units<'k>(base: &UnitSummary<'k>, head: &UnitSummary<'_>) -> Shared<'k> {
    base.clusters
        .iter()
        .filter_map(|(cluster, b)| {
            let h = head.clusters.get(cluster)?;
            let shared = b
                .units
                .iter()
                .filter(|(k, (n, approve))| !approve && h.units.get(*k) == Some(&(*n, false)))
                .map(|(k, _)| *k)
                .collect();
            Some((cluster.clone(), shared))
        })
        .collect()
}

/// The index of a compile's objects outside the `shared` units (`None` when its objects did not
/// come from a unit store).
pub fn index_outside(
    lowered: &Lowered,
    shared: &Shared<'_>,
) -> Option<crate::output::LoweredIndex> {
    let refs = lowered.units.as_deref()?;
    let mut out = crate::output::LoweredIndex {
        clusters: BTreeMap::new(),
        platform_file: lowered.platform_file.clone(),
    };
    let none = UnitSet::default();
    for (name, c) in &lowered.clusters {
        let places = refs.places.get(name)?;
        let shared = shared.get(name).unwrap_or(&none);
        // Per unit number, whether it is shared.
        let is_shared: Vec<bool> = refs
            .keys
            .iter()
            .map(|k| shared.contains(k.as_str()))
            .collect();
        let mut objects = Vec::new();
        for (m, &(u, _)) in c.manifests.iter().zip(places) {
            if !*is_shared.get(usize::try_from(u).ok()?)? {
                objects.push(crate::output::Indexed {
                    key: m.key.clone(),
                    hash: m.hash.clone(),
                    approve: m.approves(),
                });
            }
        }
        let index = crate::output::ClusterIndex {
            objects,
            approvals: c.approvals.clone(),
        };
        out.clusters.insert(name.clone(), index);
    }
    Some(out)
}

/// [`prune`] of two revisions from their units: `base_rest` and `head_rest` index the objects
/// of the units not in `shared` ([`shared_units`]), and the shared units' objects count as
/// unchanged. For revisions compiled without errors (no object dropped as a duplicate), this
/// is [`prune`] of their whole indexes (a property test compares them).
pub fn prune_units(
    base: &UnitSummary<'_>,
    base_rest: &crate::output::LoweredIndex,
    head: &UnitSummary<'_>,
    head_rest: &crate::output::LoweredIndex,
    shared: &Shared<'_>,
) -> Pruned {
    let mut out = prune(base_rest, head_rest);
    let clusters: BTreeSet<&String> = base.clusters.keys().chain(head.clusters.keys()).collect();
    for cluster in clusters {
        let b = base.clusters.get(cluster);
        let same: usize = match (b, shared.get(cluster)) {
            (Some(b), Some(s)) => s
                .iter()
                .filter_map(|k| b.units.get(k))
                .map(|(n, _)| n)
                .sum(),
            _ => 0,
        };
        out.totals
            .base
            .insert(cluster.clone(), b.map_or(0, |b| b.objects));
        *out.totals.unchanged.entry(cluster.clone()).or_default() += same;
        out.wanted.entry(cluster.clone()).or_default();
    }
    out
}

/// What a plan of two indexed revisions reads beyond their indexes.
#[derive(Debug, Default, PartialEq)]
pub struct Pruned {
    /// Per cluster, the objects to load from both sides: the ones whose hashes differ, that
    /// one side lacks, or that carry an approval annotation on both.
    pub wanted: BTreeMap<String, BTreeSet<ObjectKey>>,
    pub totals: Totals,
}

/// What the objects a plan does not load contribute: per cluster, the base's number of objects
/// and how many equal objects were left out.
#[derive(Debug, Default, PartialEq)]
pub struct Totals {
    pub base: BTreeMap<String, usize>,
    pub unchanged: BTreeMap<String, usize>,
}

/// Compare two indexes: the plan of the objects in [`Pruned::wanted`] (both sides restricted to
/// them, [`Lowered::only`]) with [`Pruned::totals`] is the plan of the whole revisions.
pub fn prune(base: &crate::output::LoweredIndex, head: &crate::output::LoweredIndex) -> Pruned {
    let mut out = Pruned::default();
    let empty = crate::output::ClusterIndex::default();
    let clusters: BTreeSet<&String> = base.clusters.keys().chain(head.clusters.keys()).collect();
    for cluster in clusters {
        let b = base.clusters.get(cluster).unwrap_or(&empty);
        let h = head.clusters.get(cluster).unwrap_or(&empty);
        // Both lists in key order (as indexes keep them), walked side by side.
        let (bs, hs) = (in_key_order(&b.objects), in_key_order(&h.objects));
        let mut wanted = BTreeSet::new();
        let mut unchanged = 0;
        let (mut i, mut j) = (0, 0);
        loop {
            let (x, y) = (bs.get(i), hs.get(j));
            let order = match (x, y) {
                (Some(x), Some(y)) => x.key.cmp(&y.key),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => break,
            };
            match (order, x, y) {
                (std::cmp::Ordering::Equal, Some(x), Some(y)) => {
                    if x.hash == y.hash && !(x.approve && y.approve) {
                        unchanged += 1;
                    } else {
                        wanted.insert(x.key.clone());
                    }
                    i += 1;
                    j += 1;
                }
                (std::cmp::Ordering::Less, Some(x), _) => {
                    wanted.insert(x.key.clone());
                    i += 1;
                }
                (_, _, Some(y)) => {
                    wanted.insert(y.key.clone());
                    j += 1;
                }
                _ => break,
            }
        }
        out.totals.base.insert(cluster.clone(), b.objects.len());
        out.totals.unchanged.insert(cluster.clone(), unchanged);
        out.wanted.insert(cluster.clone(), wanted);
    }
    out
}

/// An index's objects in key order, each key once (the last of equal keys, as a map of them
/// would keep): as written, unless the list is not sorted.
fn in_key_order(objects: &[crate::output::Indexed]) -> Vec<&crate::output::Indexed> {
    let mut v: Vec<&crate::output::Indexed> = objects.iter().collect();
    if !v.windows(2).all(|w| w[0].key < w[1].key) {
        // Stable: of equal keys the last stays last, and is the one kept.
        v.sort_by(|a, b| a.key.cmp(&b.key));
        let mut out: Vec<&crate::output::Indexed> = Vec::with_capacity(v.len());
        for o in v {
            match out.last_mut() {
                Some(last) if last.key == o.key => *last = o,
                _ => out.push(o),
            }
        }
        v = out;
    }
    v
}

/// [`plan`] with the GPU capacity of both sides (`base_specs` `None`: nothing deployed yet):
/// the plan carries the [`crate::capacity::Diff`], and a destructive finding (serving that
/// loses its guarantee) makes the change that causes it destructive — the project's queue (or
/// queue cohort) `<project>.<pool>` when it changes, else the first changed object of the
/// workloads concerned — so it is approved like any destructive change.
pub fn plan_with_capacity(
    base: &Lowered,
    head: &Lowered,
    base_specs: Option<&crate::specs::Specs>,
    head_specs: &crate::specs::Specs,
    opts: &PlanOptions,
) -> Plan {
    let before = base_specs
        .map(crate::capacity::Capacity::of)
        .unwrap_or_default();
    let after = crate::capacity::Capacity::of(head_specs);
    plan_pruned(base, head, &Totals::default(), (&before, &after), opts)
}

/// [`plan_with_capacity`] of two revisions restricted to what [`prune`] wanted (`totals`: what
/// the objects left out count for; empty when nothing was left out), with the GPU capacity
/// of both sides (`capacity`: base, head; the base's is empty when nothing is deployed yet).
pub fn plan_pruned(
    base: &Lowered,
    head: &Lowered,
    totals: &Totals,
    capacity: (&crate::capacity::Capacity, &crate::capacity::Capacity),
    opts: &PlanOptions,
) -> Plan {
    let mut diff = crate::capacity::diff(capacity.0, capacity.1);
    let mut extra: BTreeMap<(String, ObjectKey), Vec<String>> = BTreeMap::new();
    let empty = ClusterOutput::default();
    for f in &mut diff.findings {
        if f.severity != crate::capacity::Severity::Destructive {
            continue;
        }
        let bo = base.clusters.get(&f.cluster).unwrap_or(&empty);
        let ho = head.clusters.get(&f.cluster).unwrap_or(&empty);
        if let Some(key) = capacity_object(f, bo, ho, &opts.fingerprint) {
            f.object = Some(Approval::object_id(&key));
            extra
                .entry((f.cluster.clone(), key))
                .or_default()
                .push(format!("GPU capacity: {}", f.message));
        }
    }
    let mut p = plan_inner(base, head, opts, &extra, totals);
    if !diff.is_empty() {
        p.capacity = Some(diff);
    }
    p
}

/// The changed object that carries a destructive capacity finding in a cluster.
fn capacity_object(
    f: &crate::capacity::Finding,
    base: &ClusterOutput,
    head: &ClusterOutput,
    key: &crate::redact::Key,
) -> Option<ObjectKey> {
    let queue = f
        .project
        .as_deref()
        .map(|p| crate::lower::gpu::cluster_queue_name(p, &f.pool));
    let all = || base.manifests.iter().chain(&head.manifests);
    let mut queues: Vec<&ObjectKey> = all()
        .filter(|m| {
            m.key.namespace.is_none()
                && matches!(m.key.kind.as_str(), "Cohort" | "ClusterQueue")
                && Some(&m.key.name) == queue.as_ref()
        })
        .map(|m| &m.key)
        .collect();
    // The Cohort holds a per-user project's allocation; the ClusterQueue otherwise.
    queues.sort_by_key(|k| (k.kind != "Cohort", *k));
    let mut workloads: Vec<&ObjectKey> = all()
        .filter(|m| {
            (m.origin.kind == crate::model::Kind::ModelRollout
                && f.rollouts.iter().any(|r| r.as_str() == &*m.origin.name))
                || (m.origin.kind == crate::model::Kind::App
                    && f.apps.iter().any(|a| a.as_str() == &*m.origin.name))
        })
        .map(|m| &m.key)
        .collect();
    workloads.sort();
    let changes = |k: &ObjectKey| {
        let b = base.manifests.iter().find(|m| &m.key == k);
        let h = head.manifests.iter().find(|m| &m.key == k);
        match (b, h) {
            (Some(b), Some(h)) => {
                b.hash != h.hash
                    && canonical_json(&content(b, key)) != canonical_json(&content(h, key))
            }
            _ => true,
        }
    };
    queues
        .into_iter()
        .chain(workloads)
        .find(|k| changes(k))
        .cloned()
}

fn plan_inner(
    base: &Lowered,
    head: &Lowered,
    opts: &PlanOptions,
    extra: &BTreeMap<(String, ObjectKey), Vec<String>>,
    totals: &Totals,
) -> Plan {
    let mut p = Plan::default();
    let empty = ClusterOutput::default();
    let clusters: BTreeSet<&String> = base.clusters.keys().chain(head.clusters.keys()).collect();
    // Approval entries by where they are written: whether they approved anything.
    let mut used: BTreeSet<(std::sync::Arc<str>, u32)> = BTreeSet::new();
    let mut fresh_entries: BTreeMap<(std::sync::Arc<str>, u32), &Approval> = BTreeMap::new();
    let mut warnings: BTreeSet<Warning> = BTreeSet::new();
    p.platform_file = head
        .clusters
        .values()
        .flat_map(|c| c.approvals.first())
        .map(|a| a.file.clone())
        .next()
        .or_else(|| head.platform_file.clone());
    for cluster in clusters {
        let bo = base.clusters.get(cluster).unwrap_or(&empty);
        let ho = head.clusters.get(cluster).unwrap_or(&empty);
        let (b, h) = (&bo.manifests, &ho.manifests);
        let bm: BTreeMap<&ObjectKey, &Manifest> = b.iter().map(|m| (&m.key, m)).collect();
        let hm: BTreeMap<&ObjectKey, &Manifest> = h.iter().map(|m| (&m.key, m)).collect();
        let fresh = fresh_approvals(bo, ho, &mut fresh_entries, &mut warnings);
        let mut counts = Counts {
            unchanged: totals.unchanged.get(cluster).copied().unwrap_or(0),
            ..Counts::default()
        };
        let keys: BTreeSet<&ObjectKey> = bm.keys().chain(hm.keys()).copied().collect();
        for key in keys {
            let (bo_m, ho_m) = (bm.get(key).copied(), hm.get(key).copied());
            if let (Some(b), Some(h)) = (bo_m, ho_m) {
                warnings.extend(stale_annotation_warning(b, h));
            }
            let change = match (bo_m, ho_m) {
                (None, Some(h)) => Some(change(cluster, key, Action::Create, None, Some(h), opts)),
                (Some(b), None) => Some(change(cluster, key, Action::Delete, Some(b), None, opts)),
                (Some(b), Some(h)) => {
                    if b.hash == h.hash
                        || canonical_json(&content(b, &opts.fingerprint))
                            == canonical_json(&content(h, &opts.fingerprint))
                    {
                        counts.unchanged += 1;
                        None
                    } else {
                        Some(change(cluster, key, Action::Update, Some(b), Some(h), opts))
                    }
                }
                (None, None) => None,
            };
            if let Some(mut c) = change {
                if let Some(why) = extra.get(&(cluster.clone(), c.key.clone())) {
                    c.risk = Risk::Destructive;
                    c.reasons.extend(why.iter().cloned());
                    c.reasons.sort();
                    c.reasons.dedup();
                }
                match c.action {
                    Action::Create => counts.create += 1,
                    Action::Update => counts.update += 1,
                    Action::Delete => counts.delete += 1,
                }
                if c.risk == Risk::Destructive {
                    counts.destructive += 1;
                    c.approval = approve(&c, &fresh, bo_m, ho_m, opts);
                    match &c.approval {
                        Some(a) => {
                            if a.via == Via::Entry
                                && let Some(f) = &a.file
                            {
                                used.insert((f.clone(), a.line));
                            }
                        }
                        None => p.refusals.push(Refusal {
                            cluster: cluster.clone(),
                            object: Some(c.key.clone()),
                            action: Some(c.action),
                            message: format!(
                                "destructive {} of {} in cluster `{cluster}` is not approved ({})",
                                c.action.as_str(),
                                c.key,
                                c.reasons.join("; ")
                            ),
                            hint: refusal_hint(
                                cluster,
                                &c.key,
                                c.action,
                                p.platform_file.as_deref(),
                                Some(&c.provenance.origin),
                            ),
                        }),
                    }
                }
                p.changes.push(c);
            }
        }
        let total = totals.base.get(cluster).copied().unwrap_or(b.len());
        if let Some(r) = delete_share_refusal(cluster, total, &counts, opts) {
            p.refusals.push(r);
        }
        p.counts.insert(cluster.clone(), counts);
    }
    unused_approvals(fresh_entries, &used, &mut warnings);
    p.warnings = warnings.into_iter().collect();
    p.changes
        .sort_by(|a, b| (&a.cluster, a.action, &a.key).cmp(&(&b.cluster, b.action, &b.key)));
    p
}

/// The approval entries of a cluster new at head (an entry already present at the base approves
/// nothing, and is warned about); each is recorded by where it is written.
fn fresh_approvals<'h>(
    bo: &ClusterOutput,
    ho: &'h ClusterOutput,
    fresh_entries: &mut BTreeMap<(std::sync::Arc<str>, u32), &'h Approval>,
    warnings: &mut BTreeSet<Warning>,
) -> Vec<&'h Approval> {
    // An entry already present at the base approves nothing.
    let fresh: Vec<&Approval> = ho
        .approvals
        .iter()
        .filter(|a| !bo.approvals.iter().any(|x| x.same_entry(a)))
        .collect();
    for a in &ho.approvals {
        if fresh.iter().any(|f| std::ptr::eq(*f, a)) {
            fresh_entries.insert((a.file.clone(), a.line), a);
        } else {
            warnings.insert(Warning {
                    file: a.file.clone(),
                    line: a.line,
                    message: format!(
                        "the approval of `{}` was already present at the base: it approves nothing in this change",
                        a.object
                    ),
                    hint: "approvals are one-shot: remove the entry from `spec.approvals` (a new destructive change needs a new entry in its own change)".to_owned(),
                });
        }
    }
    fresh
}

/// The refusal of a plan that deletes a larger share of a cluster's `total` objects than allowed.
fn delete_share_refusal(
    cluster: &str,
    total: usize,
    counts: &Counts,
    opts: &PlanOptions,
) -> Option<Refusal> {
    if total == 0 {
        return None;
    }
    let share = counts.delete as f64 / total as f64;
    if share > opts.max_delete_share {
        return Some(Refusal {
                    cluster: cluster.to_owned(),
                    object: None,
                    action: None,
                    message: format!(
                        "head deletes {} of the {} objects of cluster `{cluster}` ({:.0}%), more than the {:.0}% allowed",
                        counts.delete,
                        total,
                        share * 100.0,
                        opts.max_delete_share * 100.0
                    ),
                    hint: "an empty or broken render is the usual cause; if the deletion is meant, split it into smaller changes (a local plan takes `--max-delete-share`, the agent `--delete-budget-share`)".to_owned(),
                });
    }
    None
}

/// A warning for each fresh approval entry that approved no destructive change.
fn unused_approvals(
    fresh_entries: BTreeMap<(std::sync::Arc<str>, u32), &Approval>,
    used: &BTreeSet<(std::sync::Arc<str>, u32)>,
    warnings: &mut BTreeSet<Warning>,
) {
    for (at, a) in fresh_entries {
        if !used.contains(&at) {
            warnings.insert(Warning {
                file: at.0.clone(),
                line: at.1,
                message: format!(
                    "the approval of `{}`{} matches no destructive change of this change",
                    a.object,
                    a.cluster
                        .as_ref()
                        .map(|c| format!(" in cluster `{c}`"))
                        .unwrap_or_default()
                ),
                hint: "check the object (`<Kind>/<namespace>/<name>`, as the refusal names it) and the cluster, or remove the entry".to_owned(),
            });
        }
    }
}

/// The annotation approval of an object, when its value is the same at base and head (stale).
/// The warning for an approval annotation the base already had (it approves nothing).
fn stale_annotation_warning(b: &Manifest, h: &Manifest) -> Option<Warning> {
    stale_annotation(b, h)?;
    Some(Warning {
        file: h.origin.file.clone(),
        line: h.origin.line,
        message: format!(
            "`{APPROVE_ANNOTATION}` on {} `{}` was already present at the base: it approves nothing in this change",
            h.origin.kind, h.origin.name
        ),
        hint: "approvals are one-shot: remove the annotation (approve a new destructive change with a new value in that change)".to_owned(),
    })
}

fn stale_annotation<'a>(base: &'a Manifest, head: &Manifest) -> Option<&'a str> {
    let b = annotation(base, APPROVE_ANNOTATION)?;
    (annotation(head, APPROVE_ANNOTATION) == Some(b)).then_some(b)
}

fn annotation<'a>(m: &'a Manifest, name: &str) -> Option<&'a str> {
    m.object
        .pointer("/metadata/annotations")?
        .get(name)?
        .as_str()
}

/// What approves a destructive change, if anything: the flag, an entry of `spec.approvals`
/// that the head adds (`fresh`), or an approval annotation the head sets on the object's spec.
/// The one approval rule, for `plinth plan` and the agent alike.
pub fn approve(
    c: &Change,
    fresh: &[&Approval],
    base: Option<&Manifest>,
    head: Option<&Manifest>,
    opts: &PlanOptions,
) -> Option<Approved> {
    if opts.allow_destructive {
        return Some(Approved {
            via: Via::Flag,
            reason: "`--allow-destructive`".to_owned(),
            approver: None,
            file: None,
            line: 0,
            commits: Vec::new(),
        });
    }
    if let Some(a) = fresh.iter().find(|a| a.covers(&c.cluster, &c.key)) {
        return Some(Approved {
            via: Via::Entry,
            reason: crate::redact::text(&a.reason).into_owned(),
            approver: a
                .approver
                .as_deref()
                .map(|x| crate::redact::text(x).into_owned()),
            file: Some(a.file.clone()),
            line: a.line,
            commits: Vec::new(),
        });
    }
    // Spec annotations are copied onto the objects a spec produces: the head object says
    // whether its spec approves, the base object whether that approval is old. (A deleted
    // object has no head spec.)
    let h = head?;
    let reason = annotation(h, APPROVE_ANNOTATION)?;
    if base.and_then(|b| annotation(b, APPROVE_ANNOTATION)) == Some(reason) {
        return None;
    }
    Some(Approved {
        via: Via::Annotation,
        reason: crate::redact::text(reason).into_owned(),
        approver: None,
        file: Some(h.origin.file.clone()),
        line: h.origin.line,
        commits: Vec::new(),
    })
}

fn change(
    cluster: &str,
    key: &ObjectKey,
    action: Action,
    base: Option<&Manifest>,
    head: Option<&Manifest>,
    opts: &PlanOptions,
) -> Change {
    let before = base.map(|m| content(m, &opts.fingerprint));
    let after = head.map(|m| content(m, &opts.fingerprint));
    let text = |v: &Option<Value>| v.as_ref().map(to_yaml).unwrap_or_default();
    let (bt, ht) = (text(&before), text(&after));
    let diff = similar::TextDiff::from_lines(&bt, &ht)
        .unified_diff()
        .context_radius(3)
        .header(
            if base.is_some() { "base" } else { "/dev/null" },
            if head.is_some() { "head" } else { "/dev/null" },
        )
        .to_string();
    let fields = match (&before, &after) {
        (Some(b), Some(a)) => {
            let mut f = Vec::new();
            field_changes(b, a, FieldPath::root(), &mut f);
            f
        }
        _ => Vec::new(),
    };
    let (risk, reasons) = classify(key, action, &fields, base, head);
    let origin = head
        .or(base)
        .map(|m| m.origin.clone())
        .unwrap_or_else(|| Origin {
            file: "".into(),
            line: 0,
            kind: crate::model::Kind::Platform,
            name: "".into(),
        });
    Change {
        cluster: cluster.to_owned(),
        key: key.clone(),
        action,
        risk,
        reasons,
        approval: None,
        diff,
        provenance: Provenance {
            origin,
            commits: Vec::new(),
        },
        fields,
    }
}

fn short(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Object(_) | Value::Array(_) => {
            let s = v.to_string();
            if s.len() > 60 {
                format!(
                    "{}…",
                    &s[..s.char_indices().take(60).last().map_or(0, |(i, _)| i)]
                )
            } else {
                s
            }
        }
        other => other.to_string(),
    }
}

fn field_change(at: &FieldPath, before: Option<String>, after: Option<String>) -> FieldChange {
    let leaf = match at.0.last() {
        Some(Seg::Key(k)) => k.clone(),
        Some(Seg::Index(i)) => format!("[{i}]"),
        None => String::new(),
    };
    FieldChange {
        path: at.to_string(),
        leaf,
        before,
        after,
    }
}

fn field_changes(a: &Value, b: &Value, at: FieldPath, out: &mut Vec<FieldChange>) {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            for k in keys {
                let here = at.clone().key(k.clone());
                match (x.get(k), y.get(k)) {
                    (Some(va), Some(vb)) => field_changes(va, vb, here, out),
                    (Some(va), None) => out.push(field_change(&here, Some(short(va)), None)),
                    (None, Some(vb)) => out.push(field_change(&here, None, Some(short(vb)))),
                    (None, None) => {}
                }
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                field_changes(va, vb, at.clone().index(i), out);
            }
        }
        _ if a != b => out.push(field_change(&at, Some(short(a)), Some(short(b)))),
        _ => {}
    }
}

/// Kinds whose deletion loses data or breaks everything inside: deleting one is destructive,
/// in a plan and when the agent prunes.
pub fn destructive_to_delete(key: &ObjectKey) -> Option<&'static str> {
    match key.kind.as_str() {
        "Namespace" => Some("deleting a namespace deletes everything in it"),
        "PersistentVolumeClaim" | "PersistentVolume" => Some("deleting a volume can lose its data"),
        "CustomResourceDefinition" => Some("deleting a CRD deletes every object of its kind"),
        "Bucket" | "Account" | "Container" if key.group().contains("upbound.io") => {
            Some("deleting a bucket can lose its data")
        }
        _ => None,
    }
}

/// Fields the API server refuses to change in place, by kind.
fn immutable_fields(kind: &str) -> &'static [&'static str] {
    match kind {
        "PersistentVolumeClaim" => &[
            "spec.accessModes",
            "spec.storageClassName",
            "spec.volumeName",
            "spec.selector",
            "spec.volumeMode",
        ],
        "PersistentVolume" => &[
            "spec.csi",
            "spec.nfs",
            "spec.hostPath",
            "spec.storageClassName",
            "spec.volumeMode",
        ],
        "Deployment" | "DaemonSet" | "Rollout" => &["spec.selector"],
        "StatefulSet" => &[
            "spec.selector",
            "spec.volumeClaimTemplates",
            "spec.serviceName",
        ],
        "Job" => &["spec.template", "spec.selector"],
        "RoleBinding" | "ClusterRoleBinding" => &["roleRef"],
        "Service" => &["spec.clusterIP", "spec.ipFamilies"],
        "LocalQueue" => &["spec.clusterQueue"],
        "Bucket" => &["spec.forProvider.region", "spec.forProvider.location"],
        _ => &[],
    }
}

/// The Cohort holding a pool's unallocated GPUs (annotated `plinth.dev/spare`).
fn is_spare_cohort(m: &Manifest) -> bool {
    m.key.kind == "Cohort"
        && m.object
            .pointer("/metadata/annotations")
            .and_then(|a| a.get("plinth.dev/spare"))
            .is_some()
}

/// Quota fields where a lower value takes capacity away.
fn is_quota_field(kind: &str, path: &str) -> bool {
    match kind {
        "ResourceQuota" => path.starts_with("spec.hard"),
        "ClusterQueue" | "Cohort" => {
            path.contains(".nominalQuota") || path.contains(".borrowingLimit")
        }
        _ => false,
    }
}

fn lower_quantity(before: &str, after: &str) -> bool {
    match (
        crate::model::quantity::parse_nanos(before),
        crate::model::quantity::parse_nanos(after),
    ) {
        (Some(b), Some(a)) => a < b,
        _ => false,
    }
}

/// Whether an object is part of the agent's own installation (`spec.agent`).
fn is_agent_object(m: &Manifest) -> bool {
    m.origin.kind == crate::model::Kind::Platform
        && m.object
            .pointer("/metadata/labels/app.kubernetes.io~1name")
            .and_then(Value::as_str)
            == Some(crate::lower::agent::NAME)
}

/// The agent's Deployment without what may change freely (the sync interval).
fn agent_deployment_essence(m: &Manifest) -> Value {
    let mut v = content(m, &crate::redact::Key::run());
    if let Some(containers) = v
        .pointer_mut("/spec/template/spec/containers")
        .and_then(Value::as_array_mut)
    {
        for c in containers {
            if let Some(args) = c.get_mut("args").and_then(Value::as_array_mut) {
                args.retain(|a| !a.as_str().is_some_and(|s| s.starts_with("--interval=")));
            }
        }
    }
    v
}

/// Why a change to the agent's own installation is destructive, if it is.
fn agent_change(
    key: &ObjectKey,
    action: Action,
    base: Option<&Manifest>,
    head: Option<&Manifest>,
) -> Option<String> {
    match (action, base, head) {
        (Action::Delete, Some(b), _) if is_agent_object(b) => Some(
            "part of the agent's installation is removed (`spec.agent`): the agent stops or loses its rights"
                .to_owned(),
        ),
        (Action::Update, Some(b), Some(h)) if is_agent_object(b) || is_agent_object(h) => {
            match (key.group(), key.kind.as_str()) {
                ("apps", "Deployment") => (agent_deployment_essence(b)
                    != agent_deployment_essence(h))
                .then(|| {
                    "the agent is re-pointed or reconfigured (`spec.agent`: repository, branch, path, forge, image, …); it holds the forge token and cluster-wide rights".to_owned()
                }),
                ("rbac.authorization.k8s.io", _) | ("", "ServiceAccount") => {
                    Some("the agent's rights change (its RBAC or service account)".to_owned())
                }
                _ => None,
            }
        }
        _ => None,
    }
}

fn classify(
    key: &ObjectKey,
    action: Action,
    fields: &[FieldChange],
    base: Option<&Manifest>,
    head: Option<&Manifest>,
) -> (Risk, Vec<String>) {
    let mut reasons = Vec::new();
    let mut risk = Risk::Safe;
    let mut raise = |r: Risk, why: String, risk: &mut Risk| {
        if r > *risk {
            *risk = r;
        }
        reasons.push(why);
    };
    if let Some(why) = agent_change(key, action, base, head) {
        raise(Risk::Destructive, why, &mut risk);
    }
    match action {
        Action::Create => {
            // Argo's first revision of a Rollout is promoted at once, steps skipped: where the
            // Rollout is new, the candidate takes all traffic and the stable version never runs.
            if key.kind == "Rollout"
                && let Some(stable) = head
                    .and_then(|h| {
                        h.object
                            .pointer("/metadata/annotations/plinth.dev~1stable-version")
                    })
                    .and_then(Value::as_str)
            {
                raise(
                    Risk::Disruptive,
                    format!(
                        "a new Argo Rollout starts at its template, the candidate, with all traffic: stable version `{stable}` never runs here; apply the stable version alone first"
                    ),
                    &mut risk,
                );
            }
        }
        Action::Delete => match destructive_to_delete(key) {
            Some(why) => raise(Risk::Destructive, why.to_owned(), &mut risk),
            None => raise(
                Risk::Disruptive,
                "the object is deleted".to_owned(),
                &mut risk,
            ),
        },
        Action::Update => {
            for f in fields {
                if let Some((r, why)) = field_risk(key, f, base, head) {
                    raise(r, why, &mut risk);
                }
            }
        }
    }
    reasons.sort();
    reasons.dedup();
    (risk, reasons)
}

/// The risk one changed field of an update carries, if any, and why.
fn field_risk(
    key: &ObjectKey,
    f: &FieldChange,
    base: Option<&Manifest>,
    head: Option<&Manifest>,
) -> Option<(Risk, String)> {
    let mut found = None;
    let mut raise = |r: Risk, why: String| found = Some((r, why));
    if let Some(imm) = immutable_fields(&key.kind).iter().find(|p| {
        f.path == **p
            || f.path.starts_with(&format!("{p}."))
            || f.path.starts_with(&format!("{p}["))
    }) {
        raise(
            Risk::Destructive,
            format!("`{imm}` cannot change in place: the object is replaced"),
        );
    } else if is_quota_field(&key.kind, &f.path) && (base.or(head)).is_some_and(is_spare_cohort) {
        // A pool's spare GPUs (the Cohort plinth keeps the unallocated rest in):
        // less of it is less to borrow, no promise taken back.
        if let (Some(b), Some(a)) = (&f.before, &f.after)
            && lower_quantity(b, a)
        {
            raise(
                Risk::Disruptive,
                format!("less spare capacity to borrow (`{}` {b} → {a})", f.path),
            );
        }
    } else if is_quota_field(&key.kind, &f.path) {
        // A removed borrowing limit means unlimited borrowing: not a loss.
        match (&f.before, &f.after) {
            (Some(b), Some(a)) if lower_quantity(b, a) => raise(
                Risk::Destructive,
                format!("`{}` is lowered from {b} to {a}", f.path),
            ),
            (Some(b), None) if !f.path.contains("borrowingLimit") => {
                raise(Risk::Destructive, format!("`{}` ({b}) is removed", f.path))
            }
            _ => {}
        }
    } else if f.path.starts_with("spec.template") || f.path.starts_with("spec.predictor") {
        raise(
            Risk::Disruptive,
            "pods are replaced (their template changes)".to_owned(),
        );
    } else if key.kind == "NetworkPolicy" || key.group() == "rbac.authorization.k8s.io" {
        raise(Risk::Disruptive, format!("access changes (`{}`)", f.path));
    } else if key.kind == "Service" && f.path.starts_with("spec.selector") {
        raise(
            Risk::Disruptive,
            "the Service sends traffic elsewhere".to_owned(),
        );
    } else if (key.kind == "VirtualService" && f.path.starts_with("spec.http"))
        || (key.kind == "Ingress" && f.path.contains("nginx.ingress.kubernetes.io/canary"))
    {
        raise(
            Risk::Disruptive,
            "live traffic moves between versions (routing or mirroring)".to_owned(),
        );
    } else if key.kind == "Ingress"
        && (f.path.starts_with("spec.tls")
            || f.path.starts_with("spec.ingressClassName")
            || f.path.contains("nginx.ingress.kubernetes.io/auth"))
    {
        raise(
            Risk::Disruptive,
            format!("who can reach the endpoint changes (`{}`)", f.path),
        );
    } else if key.kind == "InferenceService" && f.path.contains("canaryTrafficPercent") {
        raise(
            Risk::Disruptive,
            "live traffic moves between versions".to_owned(),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::{ClusterIndex, Indexed, LoweredIndex};

    fn key(ns: Option<&str>, kind: &str, name: &str) -> ObjectKey {
        ObjectKey {
            api_version: "v1".to_owned(),
            kind: kind.to_owned(),
            namespace: ns.map(str::to_owned),
            name: name.to_owned(),
        }
    }

    /// Objects of units read from a store share one text per unit: a unit whose text holds
    /// the approval annotation in one object only is flagged, and only by that object; the
    /// others are not (each object's own text decides), parsed objects included.
    #[test]
    fn units_sharing_a_text_are_flagged_by_the_object_that_carries_an_approval() {
        let object = |name: &str, approve: bool| {
            let mut annotations = serde_json::Map::new();
            if approve {
                annotations.insert(APPROVE_ANNOTATION.to_owned(), "why".into());
            }
            serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": name, "annotations": annotations}})
            .to_string()
        };
        // Unit 0: `a` without, `b` with the annotation; unit 1: `c`, `d` without; unit 2: a
        // parsed object with it.
        let unit = |texts: Vec<String>| -> Vec<crate::output::Obj> {
            let all = std::sync::Arc::new(crate::output::Body::ready(texts.concat()));
            let mut at = 0;
            texts
                .iter()
                .map(|t| {
                    let o = crate::output::Obj::from_shared(&all, at..at + t.len(), String::new());
                    at += t.len();
                    o
                })
                .collect()
        };
        let u0 = unit(vec![object("a", false), object("b", true)]);
        let u1 = unit(vec![object("c", false), object("d", false)]);
        let parsed: crate::output::Obj =
            serde_json::from_str::<serde_json::Value>(&object("e", true))
                .map(crate::output::Obj::from)
                .unwrap_or_default();
        let objects = u0.into_iter().chain(u1).chain([parsed]);
        let places = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)];
        let manifests: Vec<Manifest> = objects
            .zip(["a", "b", "c", "d", "e"])
            .map(|(object, name)| Manifest {
                key: key(None, "ConfigMap", name),
                object,
                origin: crate::output::Origin {
                    file: "p.yaml".into(),
                    line: 1,
                    kind: crate::model::Kind::Project,
                    name: "p".into(),
                },
                hash: String::new(),
            })
            .collect();
        let c = crate::output::ClusterOutput {
            manifests,
            approvals: Vec::new(),
        };
        // (Asked first: asking an object itself parses it.)
        assert_eq!(
            cluster_units(&c, &places),
            Some(vec![(0, 2, true), (1, 2, false), (2, 1, true)])
        );
        assert!(c.manifests[2..4].iter().all(|m| !m.object.is_parsed()));
        let flags: Vec<bool> = c.manifests.iter().map(Manifest::approves).collect();
        assert_eq!(flags, [false, true, false, false, true]);
    }

    fn index(objects: Vec<(ObjectKey, &str, bool)>) -> LoweredIndex {
        let objects = objects
            .into_iter()
            .map(|(key, hash, approve)| Indexed {
                key,
                hash: hash.to_owned(),
                approve,
            })
            .collect();
        LoweredIndex {
            clusters: BTreeMap::from([(
                "prod".to_owned(),
                ClusterIndex {
                    objects,
                    approvals: Vec::new(),
                },
            )]),
            platform_file: None,
        }
    }

    /// What `prune` means, written the plain way: every key of either side, wanted unless
    /// both sides hold it with one hash and not both carry an approval.
    fn reference(base: &LoweredIndex, head: &LoweredIndex) -> (BTreeSet<ObjectKey>, usize) {
        let b: BTreeMap<&ObjectKey, &Indexed> = base.clusters["prod"]
            .objects
            .iter()
            .map(|o| (&o.key, o))
            .collect();
        let h: BTreeMap<&ObjectKey, &Indexed> = head.clusters["prod"]
            .objects
            .iter()
            .map(|o| (&o.key, o))
            .collect();
        let mut wanted = BTreeSet::new();
        let mut unchanged = 0;
        for k in b.keys().chain(h.keys()).collect::<BTreeSet<_>>() {
            match (b.get(k), h.get(k)) {
                (Some(x), Some(y)) if x.hash == y.hash && !(x.approve && y.approve) => {
                    unchanged += 1
                }
                _ => {
                    wanted.insert((*k).clone());
                }
            }
        }
        (wanted, unchanged)
    }

    #[test]
    fn prune_walks_both_indexes_in_key_order_whatever_order_they_come_in() {
        let base = vec![
            (key(None, "Namespace", "a"), "1", false),
            (key(Some("a"), "ConfigMap", "same"), "2", false),
            (key(Some("a"), "ConfigMap", "changed"), "3", false),
            (key(Some("a"), "Role", "gone"), "4", false),
            (key(Some("b"), "Secret", "approved"), "5", true),
            (key(Some("b"), "Secret", "approved-once"), "6", true),
        ];
        let head = vec![
            (key(None, "Namespace", "a"), "1", false),
            (key(Some("a"), "ConfigMap", "same"), "2", false),
            (key(Some("a"), "ConfigMap", "changed"), "3b", false),
            (key(Some("a"), "Role", "new"), "7", false),
            (key(Some("b"), "Secret", "approved"), "5", true),
            (key(Some("b"), "Secret", "approved-once"), "6", false),
            (key(Some("c"), "Service", "z"), "8", false),
        ];
        let sorted = |mut v: Vec<(ObjectKey, &'static str, bool)>| {
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let mut reversed = head.clone();
        reversed.reverse();
        for (b, h) in [
            (sorted(base.clone()), sorted(head.clone())),
            (base.clone(), reversed),
            (sorted(base.clone()), Vec::new()),
            (Vec::new(), sorted(head.clone())),
        ] {
            let (b, h) = (index(b), index(h));
            let (wanted, unchanged) = reference(&b, &h);
            let got = prune(&b, &h);
            assert_eq!(got.wanted["prod"], wanted);
            assert_eq!(got.totals.unchanged["prod"], unchanged);
        }
        // The expected shape, not only agreement: three unchanged, the rest wanted (in key
        // order: kind before namespace).
        let got = prune(&index(sorted(base)), &index(sorted(head)));
        assert_eq!(got.totals.unchanged["prod"], 3);
        let names: Vec<&str> = got.wanted["prod"].iter().map(|k| k.name.as_str()).collect();
        assert_eq!(names, ["changed", "gone", "new", "approved", "z"]);
    }
}
