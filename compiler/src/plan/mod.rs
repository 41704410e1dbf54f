//! Plan: the difference between two compiled platforms, as a reviewer needs it.
//!
//! Objects are paired by (apiVersion, kind, namespace, name) per cluster. Provenance
//! annotations (`plinth.dev/source`, `plinth.dev/spec-hash`) are not content: a spec moved to
//! another file changes nothing. Each change is classified by blast radius:
//!
//! - **destructive**: deleting a Namespace, PersistentVolumeClaim, PersistentVolume, bucket or
//!   CustomResourceDefinition; lowering a quota (a ResourceQuota hard limit or a Kueue nominal
//!   quota); changing a field the API server will not change in place (the object must be
//!   replaced);
//! - **disruptive**: restarting workloads (pod template changes), changing who may reach or
//!   administer something (NetworkPolicy, RBAC, Service selectors), deleting other objects;
//! - **safe**: everything else (creations, quota increases, metadata).
//!
//! Destructive changes fail the plan unless allowed: by `--allow-destructive`, by the
//! annotation `plinth.dev/approve-destructive: <reason>` on the head spec that produces the
//! object, or, for deletions, by an entry in the Platform's `spec.approvals`. A head that
//! deletes more than a set share of a cluster's objects is refused outright.
//!
//! Pure: history (which commits touched which spec) is attached by the caller.

pub mod render;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::emit::to_yaml;
use crate::load::git::CommitInfo;
use crate::lower::{
    Lowered, Manifest, ObjectKey, Origin, PROVENANCE_ANNOTATIONS, canonical_json, sha256_hex,
};
use crate::parse::{FieldPath, Seg};

/// Annotation on a spec approving the destructive changes of the objects it produces.
pub const APPROVE_ANNOTATION: &str = "plinth.dev/approve-destructive";
/// Annotation marking an object whose data must never appear in a plan.
pub const REDACT_ANNOTATION: &str = "plinth.dev/redact";

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
    /// Whether a destructive change is allowed, and by what.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approved_by: Option<String>,
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

/// A plan.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Plan {
    pub counts: BTreeMap<String, Counts>,
    /// Sorted by cluster, then action (deletes last), then key.
    pub changes: Vec<Change>,
    /// Why the plan may not be applied (destructive changes not approved, mass deletion).
    pub refusals: Vec<String>,
}

impl Plan {
    pub fn has_changes(&self) -> bool {
        !self.changes.is_empty()
    }
    pub fn is_refused(&self) -> bool {
        !self.refusals.is_empty()
    }
}

/// Options of a plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Allow every destructive change.
    pub allow_destructive: bool,
    /// Largest share of a cluster's base objects a head may delete (0.0–1.0).
    pub max_delete_share: f64,
    /// Objects approved for deletion by the head Platform (`<Kind>/<name>` or
    /// `<Kind>/<namespace>/<name>`, optionally `<cluster>:` in front).
    pub approvals: BTreeSet<String>,
}

impl Default for PlanOptions {
    fn default() -> Self {
        PlanOptions {
            allow_destructive: false,
            max_delete_share: 0.5,
            approvals: BTreeSet::new(),
        }
    }
}

/// An object without provenance annotations, secrets redacted: what plans compare and show.
pub fn content(m: &Manifest) -> Value {
    let mut v = m.object.clone();
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
    redact(&mut v);
    v
}

/// Replace sensitive values by a short hash, so a reviewer sees that a value changed but never
/// the value: Secret `data`/`stringData`, and the data of objects annotated `plinth.dev/redact`
/// or holding confidential or PII data (`plinth.dev/sensitivity`).
pub fn redact(v: &mut Value) {
    let sensitive = v["kind"] == "Secret"
        || v.pointer("/metadata/annotations")
            .and_then(Value::as_object)
            .is_some_and(|a| {
                a.get(REDACT_ANNOTATION).and_then(Value::as_str) == Some("true")
                    || matches!(
                        a.get("plinth.dev/sensitivity").and_then(Value::as_str),
                        Some("confidential" | "pii")
                    )
            });
    if !sensitive {
        return;
    }
    for field in ["data", "stringData", "binaryData"] {
        if let Some(m) = v.get_mut(field).and_then(Value::as_object_mut) {
            for val in m.values_mut() {
                let text = val.as_str().map_or_else(|| val.to_string(), str::to_owned);
                *val = Value::String(format!(
                    "(redacted, sha256:{})",
                    &sha256_hex(text.as_bytes())[..12]
                ));
            }
        }
    }
}

/// Compare two compiled platforms. `base` is `None` for a first deployment.
pub fn plan(base: &Lowered, head: &Lowered, opts: &PlanOptions) -> Plan {
    let mut p = Plan::default();
    let clusters: BTreeSet<&String> = base.clusters.keys().chain(head.clusters.keys()).collect();
    for cluster in clusters {
        let empty = Vec::new();
        let b = base.clusters.get(cluster).map_or(&empty, |c| &c.manifests);
        let h = head.clusters.get(cluster).map_or(&empty, |c| &c.manifests);
        let bm: BTreeMap<&ObjectKey, &Manifest> = b.iter().map(|m| (&m.key, m)).collect();
        let hm: BTreeMap<&ObjectKey, &Manifest> = h.iter().map(|m| (&m.key, m)).collect();
        let mut counts = Counts::default();
        let keys: BTreeSet<&ObjectKey> = bm.keys().chain(hm.keys()).copied().collect();
        for key in keys {
            let change = match (bm.get(key), hm.get(key)) {
                (None, Some(h)) => Some(change(cluster, key, Action::Create, None, Some(h))),
                (Some(b), None) => Some(change(cluster, key, Action::Delete, Some(b), None)),
                (Some(b), Some(h)) => {
                    if b.hash == h.hash
                        || canonical_json(&content(b)) == canonical_json(&content(h))
                    {
                        counts.unchanged += 1;
                        None
                    } else {
                        Some(change(cluster, key, Action::Update, Some(b), Some(h)))
                    }
                }
                (None, None) => None,
            };
            if let Some(mut c) = change {
                match c.action {
                    Action::Create => counts.create += 1,
                    Action::Update => counts.update += 1,
                    Action::Delete => counts.delete += 1,
                }
                if c.risk == Risk::Destructive {
                    counts.destructive += 1;
                    c.approved_by = approval(&c, head, opts);
                    if c.approved_by.is_none() {
                        p.refusals.push(format!(
                            "destructive {} of {} in cluster `{cluster}` is not approved ({})",
                            c.action.as_str(),
                            c.key,
                            c.reasons.join("; ")
                        ));
                    }
                }
                p.changes.push(c);
            }
        }
        if !b.is_empty() {
            let share = counts.delete as f64 / b.len() as f64;
            if share > opts.max_delete_share {
                p.refusals.push(format!(
                    "head deletes {} of the {} objects of cluster `{cluster}` ({:.0}%), more than the {:.0}% allowed; an empty or broken render is the usual cause",
                    counts.delete,
                    b.len(),
                    share * 100.0,
                    opts.max_delete_share * 100.0
                ));
            }
        }
        p.counts.insert(cluster.clone(), counts);
    }
    p.changes
        .sort_by(|a, b| (&a.cluster, a.action, &a.key).cmp(&(&b.cluster, b.action, &b.key)));
    p
}

fn approval(c: &Change, head: &Lowered, opts: &PlanOptions) -> Option<String> {
    if opts.allow_destructive {
        return Some("--allow-destructive".to_owned());
    }
    let ns = c
        .key
        .namespace
        .as_deref()
        .map(|n| format!("{n}/"))
        .unwrap_or_default();
    let id = format!("{}/{ns}{}", c.key.kind, c.key.name);
    for candidate in [id.clone(), format!("{}:{id}", c.cluster)] {
        if opts.approvals.contains(&candidate) {
            return Some(format!("Platform `spec.approvals` entry `{candidate}`"));
        }
    }
    // Spec annotations are copied onto the objects a spec produces: the head object says
    // whether its spec approves. (A deleted object has no head spec; a base approval is stale.)
    if c.action != Action::Delete {
        let m = head
            .clusters
            .get(&c.cluster)?
            .manifests
            .iter()
            .find(|m| m.key == c.key)?;
        let reason = m
            .object
            .pointer("/metadata/annotations")?
            .get(APPROVE_ANNOTATION)?
            .as_str()?;
        return Some(format!("`{APPROVE_ANNOTATION}: {reason}` on {}", m.origin));
    }
    None
}

fn change(
    cluster: &str,
    key: &ObjectKey,
    action: Action,
    base: Option<&Manifest>,
    head: Option<&Manifest>,
) -> Change {
    let before = base.map(content);
    let after = head.map(content);
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
    let (risk, reasons) = classify(key, action, &fields);
    let origin = head
        .or(base)
        .map(|m| m.origin.clone())
        .unwrap_or_else(|| Origin {
            file: "".into(),
            line: 0,
            kind: crate::model::Kind::Platform,
            name: String::new(),
        });
    Change {
        cluster: cluster.to_owned(),
        key: key.clone(),
        action,
        risk,
        reasons,
        approved_by: None,
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

/// Kinds whose deletion loses data or breaks everything inside.
fn destructive_to_delete(key: &ObjectKey) -> Option<&'static str> {
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

fn classify(key: &ObjectKey, action: Action, fields: &[FieldChange]) -> (Risk, Vec<String>) {
    let mut reasons = Vec::new();
    let mut risk = Risk::Safe;
    let mut raise = |r: Risk, why: String, risk: &mut Risk| {
        if r > *risk {
            *risk = r;
        }
        reasons.push(why);
    };
    match action {
        Action::Create => {}
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
                if let Some(imm) = immutable_fields(&key.kind).iter().find(|p| {
                    f.path == **p
                        || f.path.starts_with(&format!("{p}."))
                        || f.path.starts_with(&format!("{p}["))
                }) {
                    raise(
                        Risk::Destructive,
                        format!("`{imm}` cannot change in place: the object is replaced"),
                        &mut risk,
                    );
                } else if is_quota_field(&key.kind, &f.path) {
                    // A removed borrowing limit means unlimited borrowing: not a loss.
                    match (&f.before, &f.after) {
                        (Some(b), Some(a)) if lower_quantity(b, a) => raise(
                            Risk::Destructive,
                            format!("`{}` is lowered from {b} to {a}", f.path),
                            &mut risk,
                        ),
                        (Some(b), None) if !f.path.contains("borrowingLimit") => raise(
                            Risk::Destructive,
                            format!("`{}` ({b}) is removed", f.path),
                            &mut risk,
                        ),
                        _ => {}
                    }
                } else if f.path.starts_with("spec.template")
                    || f.path.starts_with("spec.predictor")
                {
                    raise(
                        Risk::Disruptive,
                        "pods are replaced (their template changes)".to_owned(),
                        &mut risk,
                    );
                } else if key.kind == "NetworkPolicy" || key.group() == "rbac.authorization.k8s.io"
                {
                    raise(
                        Risk::Disruptive,
                        format!("access changes (`{}`)", f.path),
                        &mut risk,
                    );
                } else if key.kind == "Service" && f.path.starts_with("spec.selector") {
                    raise(
                        Risk::Disruptive,
                        "the Service sends traffic elsewhere".to_owned(),
                        &mut risk,
                    );
                } else if key.kind == "InferenceService" && f.path.contains("canaryTrafficPercent")
                {
                    raise(
                        Risk::Disruptive,
                        "live traffic moves between versions".to_owned(),
                        &mut risk,
                    );
                }
            }
        }
    }
    reasons.sort();
    reasons.dedup();
    (risk, reasons)
}
