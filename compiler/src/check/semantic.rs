//! Semantic rules: references, names, capacities, quotas, versions and rollout traffic.
//!
//! Every rule reads the whole [`Specs`] index and reports at the offending field; where two
//! places conflict (a duplicate, an over-allocated pool) the other place is a related label.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use crate::diag::{Code, Diagnostic, Diagnostics, Label, did_you_mean};
use crate::load::Snapshot;
use crate::model::common::InstanceType;
use crate::model::dataset::{AccessMode, SourceKind};
use crate::model::rollout::{Runtime, Strategy};
use crate::model::{Kind, Quantity};
use crate::names::is_dns_label;
use crate::resolve::invalid_name;
use crate::specs::{Object, Specs};

use super::reach::Reach;
use super::record::Record;

mod app;
mod dataset;
mod gpu;
mod platform;
mod project;
mod rollout;

/// Every instance type by name, with the pool it belongs to.
pub fn instance_types(specs: &Specs) -> BTreeMap<&str, (&InstanceType, Option<&str>)> {
    let mut out = BTreeMap::new();
    if let Some(p) = &specs.platform {
        for it in &p.spec.instance_types {
            out.entry(it.name.as_str()).or_insert((it, None));
        }
    }
    for (name, q) in &specs.gpu_quotas {
        for it in &q.spec.instance_types {
            out.entry(it.name.as_str())
                .or_insert((it, Some(name.as_str())));
        }
    }
    out
}

/// Every semantic rule, in one pass over the index.
pub fn check(specs: &Specs, snapshot: &Snapshot) -> Diagnostics {
    run(specs, snapshot, None).0
}

/// [`check`], with what it found per spec ([`Record`]).
pub fn check_recorded(specs: &Specs, snapshot: &Snapshot) -> (Diagnostics, Record) {
    run(specs, snapshot, None)
}

/// [`check_recorded`] of a revision whose spec files `changed` from those of the revision
/// `base` is the record of (with the same files and view graph, neither with a document that
/// did not type: see [`super::reach`]): only the rules an edit can reach run, every other
/// spec's diagnostics are `base`'s. `None` when an edit reaches every rule.
pub fn check_against(
    specs: &Specs,
    snapshot: &Snapshot,
    base: &Record,
    changed: &crate::load::Changed,
) -> Option<(Diagnostics, Record)> {
    let reach = super::reach::of(specs, base, changed)?;
    Some(run(specs, snapshot, Some((base, &reach))))
}

/// The rules: every one, or (`against`) those a [`Reach`] names, the others' diagnostics
/// taken from a record.
fn run(
    specs: &Specs,
    snapshot: &Snapshot,
    against: Option<(&Record, &Reach<'_>)>,
) -> (Diagnostics, Record) {
    let cx = Cx::new(specs, snapshot, against.is_none());
    let of = |kind| Of { kind, against };
    // The rules over the whole index beside the per-spec ones; reported in this order.
    let (whole, (projects, (datasets, quotas, rollouts, capacity, apps))) = rayon::join(
        || match against {
            Some((base, _)) => base.whole.clone(),
            None => {
                let mut d = Diagnostics::new();
                cx.platform(&mut d);
                cx.instance_type_names(&mut d);
                cx.priority_class_names(&mut d);
                d.into_iter().collect()
            }
        },
        || {
            rayon::join(
                || of(Kind::Project).each(&specs.projects, |p, d| cx.project(p, d)),
                || {
                    let datasets =
                        of(Kind::Dataset).each(&specs.datasets, |ds, d| cx.dataset(ds, d));
                    let quotas =
                        of(Kind::GpuQuota).each(&specs.gpu_quotas, |q, d| cx.gpu_quota(q, d));
                    let (rollouts, capacity) = rayon::join(
                        || of(Kind::ModelRollout).each(&specs.rollouts, |r, d| cx.rollout(r, d)),
                        || match against {
                            Some((base, reach)) if !reach.capacity => base.capacity.clone(),
                            _ => {
                                let mut d = Diagnostics::new();
                                cx.rollout_capacity(&mut d);
                                d.into_iter().collect()
                            }
                        },
                    );
                    let apps = of(Kind::App).each(&specs.apps, |a, d| cx.app(a, d));
                    (datasets, quotas, rollouts, capacity, apps)
                },
            )
        },
    );
    let mut d = Diagnostics::new();
    d.extend(whole.iter().cloned());
    let mut record = Record {
        whole,
        capacity: Vec::new(),
        specs: Vec::new(),
    };
    for (kind, found) in [
        (Kind::Project, projects),
        (Kind::Dataset, datasets),
        (Kind::GpuQuota, quotas),
        (Kind::ModelRollout, rollouts),
    ] {
        record.keep(kind, found, &mut d);
    }
    d.extend(capacity.iter().cloned());
    record.capacity = capacity;
    record.keep(Kind::App, apps, &mut d);
    (d, record)
}

/// The per-spec rules of one kind: run on every spec, or on those a [`Reach`] names (the
/// others' diagnostics taken from the record).
#[derive(Clone, Copy)]
struct Of<'r, 's> {
    kind: Kind,
    against: Option<(&'r Record, &'r Reach<'s>)>,
}

impl Of<'_, '_> {
    /// `rule` run on every spec of the kind (in parallel) or taken from the record, the
    /// diagnostics of each in the order of the specs (as one pass in order reports them).
    fn each<'m, T: Sync>(
        self,
        specs: &'m BTreeMap<String, T>,
        rule: impl Fn(&'m T, &mut Diagnostics) + Sync,
    ) -> Vec<(&'m str, Vec<Diagnostic>)> {
        use rayon::prelude::*;
        let all: Vec<(&'m String, &'m T)> = specs.iter().collect();
        let run = |spec: &'m T| {
            let mut d = Diagnostics::new();
            rule(spec, &mut d);
            d.into_iter().collect::<Vec<_>>()
        };
        match self.against {
            None => all
                .par_iter()
                .map(|(name, spec)| (name.as_str(), run(spec)))
                .collect(),
            Some((base, reach)) => all
                .iter()
                .map(|(name, spec)| {
                    let found = if reach.has(self.kind, name) {
                        run(spec)
                    } else {
                        base.of(self.kind, name).to_vec()
                    };
                    (name.as_str(), found)
                })
                .collect(),
        }
    }
}

/// Dataset names by mount path.
fn datasets_by_path(specs: &Specs) -> BTreeMap<String, Vec<&str>> {
    let mut by_path: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, ds) in &specs.datasets {
        let path = ds
            .spec
            .mount
            .path
            .clone()
            .unwrap_or_else(|| format!("/datasets/{name}"));
        by_path.entry(path).or_default().push(name);
    }
    by_path
}

/// Model rollout names by project.
fn rollouts_by_project(specs: &Specs) -> BTreeMap<&str, Vec<&str>> {
    let mut by_project: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, r) in &specs.rollouts {
        by_project
            .entry(r.spec.project.as_str())
            .or_default()
            .push(name);
    }
    by_project
}

struct Cx<'a> {
    specs: &'a Specs,
    snapshot: &'a Snapshot,
    /// The shared lookups, each a walk of one kind: made side by side before every rule runs,
    /// or when first asked for (when few rules run).
    its: OnceLock<BTreeMap<&'a str, (&'a InstanceType, Option<&'a str>)>>,
    /// Dataset names by mount path.
    by_path: OnceLock<BTreeMap<String, Vec<&'a str>>>,
    /// Model rollout names by project.
    rollouts_by_project: OnceLock<BTreeMap<&'a str, Vec<&'a str>>>,
    /// The global datasets, and the datasets granted per project (in name order).
    usable_datasets: OnceLock<UsableDatasets<'a>>,
}

impl<'a> Cx<'a> {
    /// With the shared lookups made now (`eager`) or when first asked for.
    fn new(specs: &'a Specs, snapshot: &'a Snapshot, eager: bool) -> Cx<'a> {
        let cx = Cx {
            specs,
            snapshot,
            its: OnceLock::new(),
            by_path: OnceLock::new(),
            rollouts_by_project: OnceLock::new(),
            usable_datasets: OnceLock::new(),
        };
        if eager {
            rayon::join(
                || rayon::join(|| cx.its(), || cx.by_path()),
                || rayon::join(|| cx.rollouts_by_project(), || cx.usable_datasets()),
            );
        }
        cx
    }

    /// Every instance type by name, with the pool it belongs to ([`instance_types`]).
    fn its(&self) -> &BTreeMap<&'a str, (&'a InstanceType, Option<&'a str>)> {
        self.its.get_or_init(|| instance_types(self.specs))
    }

    fn by_path(&self) -> &BTreeMap<String, Vec<&'a str>> {
        self.by_path.get_or_init(|| datasets_by_path(self.specs))
    }

    fn rollouts_by_project(&self) -> &BTreeMap<&'a str, Vec<&'a str>> {
        self.rollouts_by_project
            .get_or_init(|| rollouts_by_project(self.specs))
    }

    fn usable_datasets(&self) -> &UsableDatasets<'a> {
        self.usable_datasets
            .get_or_init(|| usable_datasets(self.specs))
    }
}

/// The global datasets, and per project the datasets granted to it (each in name order).
type UsableDatasets<'a> = (Vec<&'a str>, BTreeMap<&'a str, Vec<&'a str>>);

fn usable_datasets(specs: &Specs) -> UsableDatasets<'_> {
    let mut global: Vec<&str> = Vec::new();
    let mut granted: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, ds) in &specs.datasets {
        if ds.spec.global {
            global.push(name);
        }
        for g in &ds.spec.access {
            let to = granted.entry(g.project.as_str()).or_default();
            if to.last() != Some(&name.as_str()) {
                to.push(name);
            }
        }
    }
    (global, granted)
}

/// [`app_datasets`] from [`usable_datasets`] (scanning every dataset per App is quadratic).
fn usable_of<'a>(index: &UsableDatasets<'a>, project: &str) -> Vec<&'a str> {
    let (global, granted) = index;
    let mut usable: Vec<&'a str> = global.clone();
    usable.extend(granted.get(project).into_iter().flatten().copied());
    usable.sort_unstable();
    usable.dedup();
    usable
}

impl<'a> Cx<'a> {
    fn app_datasets_of(&self, project: &str) -> Vec<&'a str> {
        usable_of(self.usable_datasets(), project)
    }
}

/// The CSI driver mounting an object store, for messages.
fn driver_name(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::S3 => "Mountpoint for Amazon S3 CSI driver",
        SourceKind::Gcs => "Cloud Storage FUSE CSI driver of GKE",
        SourceKind::AzureBlob => "Azure Blob CSI driver",
        _ => "volume driver",
    }
}

fn list(names: impl IntoIterator<Item = impl AsRef<str>>) -> String {
    let v: Vec<String> = names
        .into_iter()
        .take(8)
        .map(|n| format!("`{}`", n.as_ref()))
        .collect();
    if v.is_empty() {
        "none are defined".to_owned()
    } else {
        v.join(", ")
    }
}

fn unknown<'k>(
    code: Code,
    what: &str,
    name: &str,
    at: impl Into<Label>,
    known: impl Iterator<Item = &'k str> + Clone,
) -> Diagnostic {
    let d = Diagnostic::new(code, format!("{what} `{name}` does not exist")).at(at);
    match did_you_mean(name, known.clone()) {
        Some(s) => d.hint(format!("did you mean `{s}`?")),
        None => d.hint(format!("known: {}", list(known))),
    }
}

fn nanos(q: &Quantity) -> i128 {
    q.nanos().unwrap_or(0)
}

impl<'a> Cx<'a> {
    fn project_ref(&self, name: &str, at: impl Into<Label>, d: &mut Diagnostics) -> bool {
        if self.specs.projects.contains_key(name) {
            return true;
        }
        if self.specs.is_broken(crate::model::Kind::Project, name) {
            return false;
        }
        d.push(unknown(
            Code::UnknownProject,
            "project",
            name,
            at,
            self.specs.projects.keys().map(String::as_str),
        ));
        false
    }

    fn clusters(&self) -> Vec<&'a str> {
        self.specs
            .platform
            .as_ref()
            .map(|p| p.spec.clusters.iter().map(|c| c.name.as_str()).collect())
            .unwrap_or_default()
    }

    /// Clusters a project lives on.
    fn placement(&self, p: &'a Object<crate::model::ProjectSpec>) -> Vec<&'a str> {
        self.specs.placement(&p.spec)
    }

    /// An instance type exists and its project may use it.
    /// Whether a document that declares instance types failed to type (so a missing name may
    /// be declared there).
    fn instance_types_incomplete(&self) -> bool {
        self.specs
            .broken
            .iter()
            .any(|(k, _)| matches!(k, Kind::GpuQuota | Kind::Platform))
    }

    fn instance_type_use(
        &self,
        name: &str,
        project: Option<&Object<crate::model::ProjectSpec>>,
        at: impl Into<Label>,
        d: &mut Diagnostics,
    ) {
        if !self.its().contains_key(name) {
            if self.instance_types_incomplete() {
                return;
            }
            d.push(unknown(
                Code::UnknownInstanceType,
                "instance type",
                name,
                at,
                self.its().keys().copied(),
            ));
            return;
        }
        if let Some(p) = project
            && !p.spec.instance_types.is_empty()
            && !p.spec.instance_types.iter().any(|n| n == name)
        {
            d.push(
                Diagnostic::new(
                    Code::NotAllowed,
                    format!("project `{}` may not use instance type `{name}`", p.name()),
                )
                .at(at)
                .related(
                    p.at("spec.instanceTypes")
                        .note("the project's instance types"),
                )
                .hint(format!(
                    "add `{name}` to the project's `instanceTypes`, or pick one of {}",
                    list(&p.spec.instance_types)
                )),
            );
        }
    }

    /// `spec.priorityClass` of a workload on `pool`: a class the pool offers; a workload on no
    /// GPU pool is not queued, so a class means nothing there.
    fn priority_class_ref<S>(
        &self,
        o: &Object<S>,
        pc: &str,
        pool: Option<&str>,
        d: &mut Diagnostics,
    ) {
        let at = o.at("spec.priorityClass");
        match pool.and_then(|p| self.specs.gpu_quotas.get(p)) {
            None => d.push(
                Diagnostic::new(
                    Code::InvalidChoice,
                    format!("priority class `{pc}` has no effect: the workload runs on no GPU pool, so Kueue does not queue it"),
                )
                .at(at)
                .hint("remove `priorityClass`, or use a GPU instance type"),
            ),
            Some(q) if !q.spec.priority_classes.iter().any(|c| c.name == pc) => {
                d.push(unknown(
                    Code::UnknownPriorityClass,
                    "priority class",
                    pc,
                    at,
                    q.spec.priority_classes.iter().map(|c| c.name.as_str()),
                ).related(q.at("spec.priorityClasses").note(format!("the classes of pool `{}`", q.name()))));
            }
            Some(_) => {}
        }
    }
}

/// The datasets a project's Apps may mount: granted to it, or global.
pub fn app_datasets<'s>(specs: &'s Specs, project: &str) -> Vec<&'s str> {
    specs
        .datasets
        .values()
        .filter(|ds| ds.spec.global || ds.spec.access.iter().any(|g| g.project == project))
        .map(|ds| ds.name())
        .collect()
}

/// The script of a letter, for the scripts whose letters look alike.
fn script(c: char) -> Option<&'static str> {
    match c {
        'A'..='Z' | 'a'..='z' | '\u{00C0}'..='\u{024F}' => Some("Latin"),
        '\u{0370}'..='\u{03FF}' => Some("Greek"),
        '\u{0400}'..='\u{052F}' => Some("Cyrillic"),
        _ => None,
    }
}

/// Warn about text a reviewer may misread: invisible characters (zero-width, soft hyphen, byte
/// order mark), bidirectional controls (which reorder what is displayed), and words mixing
/// look-alike scripts (Latin `a` and Cyrillic `а`).
fn suspicious(text: &str, what: &str, at: impl Into<Label>, d: &mut Diagnostics) {
    // Invisible characters, bidirectional controls and look-alike scripts are not ASCII.
    if text.is_ascii() {
        return;
    }
    let invisible = text.chars().find(|c| {
        matches!(
            c,
            '\u{00AD}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}'
        )
    });
    let bidi = text
        .chars()
        .find(|c| matches!(c, '\u{061C}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'));
    let mixed = text.split(|c: char| !c.is_alphanumeric()).find_map(|word| {
        let scripts: std::collections::BTreeSet<&str> = word.chars().filter_map(script).collect();
        (scripts.len() > 1).then(|| {
            (
                word.to_owned(),
                scripts.into_iter().collect::<Vec<_>>().join(" and "),
            )
        })
    });
    let problem = if let Some(c) = bidi {
        Some(format!(
            "a bidirectional control character (U+{:04X}), which reorders how the text is displayed",
            c as u32
        ))
    } else if let Some(c) = invisible {
        Some(format!("an invisible character (U+{:04X})", c as u32))
    } else {
        mixed.map(|(word, scripts)| {
            format!("`{word}`, which mixes {scripts} letters that look alike")
        })
    };
    if let Some(p) = problem {
        d.push(
            Diagnostic::new(
                Code::SuspiciousText,
                format!("{what} `{}` has {p}", text.escape_default()),
            )
            .at(at)
            .hint("retype it in one script, without invisible characters: it may not be who or what it looks like"),
        );
    }
}

fn image_names<S>(
    o: &Object<S>,
    base: &'static str,
    images: &[crate::model::Image],
    d: &mut Diagnostics,
) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, img) in images.iter().enumerate() {
        let at = o.at_item(base, i, ".name");
        if !is_dns_label(&img.name) {
            d.push(invalid_name("image name", &img.name, at.clone()));
        }
        if let Some(first) = seen.insert(&img.name, i) {
            d.push(
                Diagnostic::new(
                    Code::DuplicateEntry,
                    format!("image `{}` is listed twice", img.name),
                )
                .at(at)
                .related(
                    o.at(&format!("{base}[{first}].name"))
                        .note("first listed here"),
                ),
            );
        }
    }
}

/// `None` when `r` is a full hex commit id of `len` characters; otherwise why it floats.
fn floating_commit(r: &str, len: usize) -> Option<String> {
    if r.len() == len
        && r.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    {
        None
    } else if r.len() >= 7 && r.len() < len && r.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some(format!(
            "is pinned to the abbreviated commit `{r}`, which can become ambiguous"
        ))
    } else {
        Some(format!("follows `{r}`, a branch or tag that can move"))
    }
}

fn is_floating_word(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "" | "latest"
            | "head"
            | "main"
            | "master"
            | "trunk"
            | "develop"
            | "dev"
            | "stable"
            | "current"
            | "live"
            | "newest"
    )
}

fn is_cidr(s: &str) -> bool {
    let Some((addr, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(len) = len.parse::<u8>() else {
        return false;
    };
    match addr.parse::<std::net::IpAddr>() {
        Ok(std::net::IpAddr::V4(_)) => len <= 32,
        Ok(std::net::IpAddr::V6(_)) => len <= 128,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_datasets_a_project_may_use_are_found_from_the_index() {
        let source = crate::load::MemSource {
            files: crate::generate::platform(120, 2)
                .into_iter()
                .map(|(p, t)| (p, t.into_bytes()))
                .collect(),
        };
        let checked = crate::check_source(&source, &crate::Options::default()).expect("loads");
        let specs = &checked.specs;
        let index = usable_datasets(specs);
        let mut some = 0;
        for p in specs.projects.keys().map(String::as_str).chain(["nobody"]) {
            let usable = usable_of(&index, p);
            assert_eq!(usable, app_datasets(specs, p), "{p}");
            some += usize::from(!usable.is_empty());
        }
        assert!(some > 10, "{some} projects may use datasets");
    }

    use super::*;

    #[test]
    fn commit_pinning() {
        assert_eq!(floating_commit(&"a".repeat(40), 40), None);
        assert!(floating_commit("main", 40).is_some_and(|m| m.contains("branch")));
        assert!(floating_commit("abc1234", 40).is_some_and(|m| m.contains("abbreviated")));
        assert!(floating_commit(&"A".repeat(40), 40).is_some());
    }

    #[test]
    fn cidrs() {
        assert!(is_cidr("10.0.0.0/8"));
        assert!(is_cidr("fd00::/64"));
        assert!(!is_cidr("10.0.0.0/33"));
        assert!(!is_cidr("10.0.0.0"));
        assert!(!is_cidr("x/8"));
    }
}
