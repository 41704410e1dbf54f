//! Rekey: a revision's units keyed from another revision's keys, viewing only the units an
//! edit can reach.
//!
//! A unit's key hashes the files its view reads ([`super::units`]), and its view is a function
//! of a few fields of the specs: their names and files, a project's clusters, and the
//! references between specs — a dataset's grants, bucket, storage account and whether it is
//! global; a pool's allocations, cohort and instance types; a rollout's project, pool and
//! instance type; an App's project and instance type — with the Platform file. [`graph`] hashes
//! exactly those. Two revisions with the same graph have the same units, in the same order,
//! each with the same view, so a unit's key differs between them exactly when a file its view
//! reads differs (or, for an App, a template). [`jobs_against`] views and keys only the units
//! whose view can hold a changed file ([`Hit`]: the inverse of the view table in
//! [`super::units`]) and the units that read everything; every other unit takes the key the
//! other revision stored in its place. A revision's entry keeps what that takes
//! ([`Revision`]: its graph, and its spec files' and templates' paths and digests).
//!
//! A missed edge would be a stale key, not a slow one: debug builds key every unit as well and
//! panic on a difference ([`super::delta::lower_delta`]), which every test lowering against a
//! base runs, and the incremental property tests edit references at random.

use std::collections::HashSet;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::units::{Job, Keying, Unit, field};
use crate::load::{FileRole, Snapshot};
use crate::specs::Specs;

/// Bumped when what [`graph`] covers changes.
const FORMAT: &str = "plinth-view-graph-v1";

/// What a revision keeps so that another can take its units' keys ([module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// [`graph`] of its specs.
    pub graph: [u8; 32],
    /// The paths and roles of its spec files and templates, in order, hashed.
    pub paths: [u8; 32],
    /// Their digests, in that order.
    pub digests: Vec<[u8; 32]>,
    /// The digests of every project's entry of the policies' data, in name order
    /// (`crate::policy::ProjectDigests`), when made: a revision compiled against this one
    /// digests again only the entries an edit reaches.
    pub projects: Option<Vec<[u8; 32]>>,
}

impl Revision {
    pub fn of(specs: &Specs, snapshot: &Snapshot) -> Revision {
        let (graph, (paths, digests)) = rayon::join(|| graph(specs), || files(snapshot));
        Revision {
            graph,
            paths,
            digests,
            projects: None,
        }
    }
}

/// A revision's [`Revision`] and its units' keys, by number (as its entry lists them: each
/// cluster's units in merge order, then its agent unit when the Platform installs the agent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    /// Shared with the revision's entry.
    pub revision: Arc<Revision>,
    /// Shared with the revision's entry.
    pub keys: Arc<[String]>,
}

/// The spec files and templates of a snapshot (what unit keys read of it): their paths and
/// roles hashed, and their digests.
fn files(snapshot: &Snapshot) -> ([u8; 32], Vec<[u8; 32]>) {
    let mut h = Sha256::new();
    let mut digests = Vec::new();
    for f in &snapshot.files {
        let role: &[u8] = match f.role {
            FileRole::Spec => b"s",
            FileRole::Template => b"t",
            _ => continue,
        };
        h.update(role);
        field(&mut h, f.path.as_bytes());
        digests.push(f.digest);
    }
    (h.finalize().into(), digests)
}

/// The hash of everything the units of `specs` and their views are a function of (besides the
/// build of plinth): the Platform file, and every spec's name, file and references.
pub fn graph(specs: &Specs) -> [u8; 32] {
    let mut h = Sha256::new();
    field(&mut h, FORMAT.as_bytes());
    field(&mut h, super::units::FORMAT.as_bytes());
    let opt = |h: &mut Sha256, s: Option<&str>| match s {
        Some(s) => {
            h.update(b"1");
            field(h, s.as_bytes());
        }
        None => h.update(b"0"),
    };
    if let Some(p) = &specs.platform {
        field(&mut h, p.doc.file.as_bytes());
        h.update(p.doc.digest);
    }
    let list = |h: &mut Sha256, items: &mut dyn Iterator<Item = &str>| {
        let mut n = 0u64;
        for s in items {
            field(h, s.as_bytes());
            n += 1;
        }
        h.update(n.to_le_bytes());
    };
    field(&mut h, b"projects");
    for (name, p) in &specs.projects {
        field(&mut h, name.as_bytes());
        field(&mut h, p.doc.file.as_bytes());
        list(&mut h, &mut p.clusters().iter().map(String::as_str));
    }
    field(&mut h, b"datasets");
    for (name, d) in &specs.datasets {
        field(&mut h, name.as_bytes());
        field(&mut h, d.doc.file.as_bytes());
        h.update([u8::from(d.spec.global)]);
        opt(
            &mut h,
            d.spec.source.gcs.as_ref().map(|g| g.bucket.as_str()),
        );
        let account = d.spec.source.azure_blob.as_ref();
        opt(&mut h, account.map(|a| a.storage_account.as_str()));
        list(
            &mut h,
            &mut d.spec.access.iter().map(|a| a.project.as_str()),
        );
    }
    field(&mut h, b"pools");
    for (name, q) in &specs.gpu_quotas {
        field(&mut h, name.as_bytes());
        field(&mut h, q.doc.file.as_bytes());
        opt(&mut h, q.spec.cohort.as_deref());
        list(
            &mut h,
            &mut q.spec.allocations.iter().map(|a| a.project.as_str()),
        );
        list(
            &mut h,
            &mut q.spec.instance_types.iter().map(|t| t.name.as_str()),
        );
    }
    field(&mut h, b"rollouts");
    for (name, r) in &specs.rollouts {
        field(&mut h, name.as_bytes());
        field(&mut h, r.doc.file.as_bytes());
        field(&mut h, r.spec.project.as_bytes());
        opt(&mut h, r.spec.gpu_quota.as_deref());
        opt(&mut h, r.spec.instance_type.as_deref());
    }
    field(&mut h, b"apps");
    for (name, a) in &specs.apps {
        field(&mut h, name.as_bytes());
        field(&mut h, a.doc.file.as_bytes());
        field(&mut h, a.spec.project.as_bytes());
        opt(&mut h, a.spec.instance_type.as_deref());
    }
    h.finalize().into()
}

/// A set of names looked up for every unit (a fast hasher).
type Names<'s> = HashSet<&'s str, foldhash::fast::RandomState>;

/// The units whose view can hold a changed file: the inverse of the view table of
/// [`super::units`] for the specs in the changed files (each set by name).
#[derive(Default)]
struct Hit<'s> {
    /// Projects whose project view holds a changed spec (a rollout's and an App's view hold
    /// their project's).
    projects: Names<'s>,
    /// Pools that changed or allocate to a changed project.
    pools: Names<'s>,
    cohorts: Names<'s>,
    /// Datasets that changed or grant a changed project, and their buckets and accounts (a
    /// dataset's view holds the datasets sharing one).
    datasets: Names<'s>,
    buckets: Names<'s>,
    accounts: Names<'s>,
    /// The buckets and accounts of global datasets (a dataset sharing one reads everything).
    global_buckets: Names<'s>,
    global_accounts: Names<'s>,
    changed_pools: Names<'s>,
    /// Instance type names a changed pool defines.
    types: Names<'s>,
    rollouts: Names<'s>,
    apps: Names<'s>,
    templates: bool,
}

impl<'s> Hit<'s> {
    /// `None` when a changed file holds what every project's view reads (a global dataset) or
    /// the Platform.
    fn of(specs: &'s Specs, changed: &Changed, templates: bool) -> Option<Hit<'s>> {
        let mut hit = Hit {
            templates,
            ..Hit::default()
        };
        if specs
            .platform
            .as_ref()
            .is_some_and(|p| p.in_changed(changed))
        {
            return None;
        }
        let changed_projects: Names<'s> =
            crate::specs::changed_names(&specs.projects, changed).collect();
        hit.projects.clone_from(&changed_projects);
        for (name, q) in &specs.gpu_quotas {
            let changed = q.in_changed(changed);
            if changed {
                hit.changed_pools.insert(name.as_str());
                hit.types
                    .extend(q.spec.instance_types.iter().map(|t| t.name.as_str()));
            }
            let allocated = q.spec.allocations.iter().map(|a| a.project.as_str());
            if hit.names_projects(changed, allocated, &changed_projects) {
                hit.pools.insert(name.as_str());
                hit.cohorts.extend(q.spec.cohort.as_deref());
            }
        }
        for (name, d) in &specs.datasets {
            let (bucket, account) = storage(&d.spec);
            if d.spec.global {
                if d.in_changed(changed) {
                    return None;
                }
                hit.global_buckets.extend(bucket);
                hit.global_accounts.extend(account);
            }
            let granted = d.spec.access.iter().map(|a| a.project.as_str());
            if hit.names_projects(d.in_changed(changed), granted, &changed_projects) {
                hit.datasets.insert(name.as_str());
                hit.buckets.extend(bucket);
                hit.accounts.extend(account);
            }
        }
        hit.rollouts
            .extend(crate::specs::changed_names(&specs.rollouts, changed));
        hit.apps
            .extend(crate::specs::changed_names(&specs.apps, changed));
        Some(hit)
    }

    /// A spec naming `projects` (a pool's allocations, a dataset's grants): when it `changed`,
    /// the views of those projects hold it; whether its own unit's view (it and those
    /// projects) holds a changed spec.
    fn names_projects<'p>(
        &mut self,
        changed: bool,
        mut projects: impl Iterator<Item = &'s str> + Clone,
        changed_projects: &Names<'p>,
    ) -> bool {
        if changed {
            self.projects.extend(projects.clone());
        }
        changed || projects.any(|p| changed_projects.contains(p))
    }

    /// Whether `unit`'s view may hold a changed file or reads everything (its key computed
    /// again).
    fn hits(&self, unit: Unit<'_>) -> bool {
        let type_hit = |t: Option<&String>| t.is_some_and(|t| self.types.contains(t.as_str()));
        match unit {
            Unit::Platform(_) => true,
            Unit::Project(p) => self.projects.contains(p.name()),
            Unit::GpuQuota(q) => self.pools.contains(q.name()),
            Unit::Cohort(c) => self.cohorts.contains(c),
            Unit::Dataset(d) => {
                let (bucket, account) = storage(&d.spec);
                let within = |set: &Names<'_>, x: Option<&str>| x.is_some_and(|x| set.contains(x));
                d.spec.global
                    || within(&self.global_buckets, bucket)
                    || within(&self.global_accounts, account)
                    || self.datasets.contains(d.name())
                    || within(&self.buckets, bucket)
                    || within(&self.accounts, account)
            }
            Unit::Rollout(r) => {
                self.rollouts.contains(r.name())
                    || self.projects.contains(r.spec.project.as_str())
                    || r.spec
                        .gpu_quota
                        .as_deref()
                        .is_some_and(|q| self.changed_pools.contains(q))
                    || type_hit(r.spec.instance_type.as_ref())
            }
            Unit::App(a) => {
                self.templates
                    || self.apps.contains(a.name())
                    || self.projects.contains(a.spec.project.as_str())
                    || type_hit(a.spec.instance_type.as_ref())
            }
        }
    }
}

/// The spec files and templates of a revision that differ from another's (by path).
pub use crate::load::Changed;

/// A revision, and its spec files and templates that differ from another revision's (when the
/// two have the same files): made once for a head's check and lowering against its base.
pub struct Since {
    pub revision: Revision,
    pub changed: Option<Changed>,
}

impl Since {
    /// The revision of `specs` and what differs from `was`.
    pub fn of(specs: &Specs, snapshot: &Snapshot, was: &Revision) -> Since {
        let revision = Revision::of(specs, snapshot);
        let changed = changed_since(snapshot, &revision, was);
        Since { revision, changed }
    }
}

/// What [`jobs_against`] found: the units keyed (when the base's keys could be taken) and how
/// many took the base's key, the revision of the specs, and the files that differ from the
/// base's (when both have the same files).
pub struct Against<'s> {
    pub jobs: Option<(Vec<Job<'s>>, usize)>,
    pub revision: Revision,
    pub changed: Option<Changed>,
}

/// A dataset's GCS bucket and Azure storage account (datasets sharing one read each other).
fn storage(d: &crate::model::DatasetSpec) -> (Option<&str>, Option<&str>) {
    (
        d.source.gcs.as_ref().map(|g| g.bucket.as_str()),
        d.source
            .azure_blob
            .as_ref()
            .map(|a| a.storage_account.as_str()),
    )
}

/// The units of `specs` keyed against `base` ([module docs](self)); the jobs are `None` when
/// `base`'s keys cannot be taken (another graph, other files, another number of units).
/// `since`: the revision of `specs` against `base`'s, when already made.
pub fn jobs_against<'s>(
    specs: &'s Specs,
    snapshot: &Snapshot,
    salt: &'s str,
    base: &Keyed,
    since: Option<Since>,
) -> Against<'s> {
    let Since { revision, changed } =
        since.unwrap_or_else(|| Since::of(specs, snapshot, &base.revision));
    let jobs = match &changed {
        Some(changed) if revision.graph == base.revision.graph => {
            keyed(specs, snapshot, salt, base, changed)
        }
        _ => None,
    };
    Against {
        jobs,
        revision,
        changed,
    }
}

/// The spec files and templates of `snapshot` (whose revision is `now`) that differ from
/// `was`'s; `None` when the two do not have the same files.
fn changed_since(snapshot: &Snapshot, now: &Revision, was: &Revision) -> Option<Changed> {
    (now.paths == was.paths && now.digests.len() == was.digests.len())
        .then(|| changed(snapshot, &now.digests, &was.digests))
}

/// The spec files and templates whose digests differ (`now` and `was` in the snapshot's order).
fn changed(snapshot: &Snapshot, now: &[[u8; 32]], was: &[[u8; 32]]) -> Changed {
    let keyed_files = snapshot
        .files
        .iter()
        .filter(|f| matches!(f.role, FileRole::Spec | FileRole::Template));
    keyed_files
        .zip(now.iter().zip(was))
        .filter(|(_, (now, was))| now != was)
        .map(|(f, _)| f.path.clone())
        .collect()
}

/// [`jobs_against`] once the graphs and paths are known to be the same.
fn keyed<'s>(
    specs: &'s Specs,
    snapshot: &Snapshot,
    salt: &'s str,
    base: &Keyed,
    changed: &Changed,
) -> Option<(Vec<Job<'s>>, usize)> {
    use rayon::prelude::*;
    let platform = specs.platform.as_ref()?;
    let agent_on = platform.spec.agent.as_ref().is_some_and(|a| a.enabled);
    let templates = snapshot
        .with_role(FileRole::Template)
        .any(|f| changed.contains(&f.path));
    let hit = Hit::of(specs, changed, templates)?;
    let keying = Keying::new(specs, snapshot, Some(salt))?;
    let listed = keying.listed(specs, snapshot);
    let agents = if agent_on { listed.len() } else { 0 };
    if listed.iter().map(|(_, u)| u.len()).sum::<usize>() + agents != base.keys.len() {
        return None;
    }
    // Each unit with its number in the base's list (a cluster's agent unit follows its units).
    let mut all = Vec::new();
    let mut n = 0;
    for (cluster, units) in listed {
        for unit in units {
            all.push((cluster, unit, n));
            n += 1;
        }
        n += usize::from(agent_on);
    }
    let taken = std::sync::atomic::AtomicUsize::new(0);
    let jobs: Vec<Job<'s>> = all
        .into_par_iter()
        .map(|(cluster, unit, n)| {
            if hit.hits(unit) {
                keying.job(specs, cluster, unit)
            } else {
                taken.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let key = base.keys.get(n).cloned().unwrap_or_default();
                Keying::known(cluster, unit, key)
            }
        })
        .collect();
    Some((jobs, taken.into_inner()))
}
