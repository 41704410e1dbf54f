//! Units of lowering, what each may read, and the key of its result.
//!
//! A *unit* is one spec lowered on one cluster (a project, a pool, a dataset, a rollout, an
//! App, or the Platform's own objects). Its *view* is the part of the platform it may read:
//! itself, the Platform, and the specs its rules look up —
//!
//! | unit | view |
//! |---|---|
//! | project `p` (and its GPU backstops) | `p`, the datasets granted to `p` (and the global ones), the pools allocating to `p` |
//! | pool `q` | `q`, the projects it allocates to |
//! | cohort | its pools and the projects they allocate to |
//! | dataset `d` | `d` and the datasets sharing its bucket or Azure account, the projects their grants name; everything when one of them is global |
//! | rollout / App | itself, its project's view, the pools that may define its instance type (and a rollout's `gpuQuota`); an App also the `templates/` files |
//! | Platform objects | everything |
//!
//! A unit is lowered against its view only (a [`Specs`] holding just those specs, and a
//! snapshot holding only the templates when it is an App), so its output is a function of the
//! files the view's specs come from — by construction, not by a list kept in sync with the
//! rules. The unit's [`key`](Job::key) hashes exactly those files' bytes (with plinth's
//! fingerprint), so a cached result is reused only when every input of the unit is unchanged,
//! and an edit re-lowers exactly the units whose view holds the edited file.
//!
//! Each unit's objects are verified (schemas, built-in round trips) with the unit, so a cached
//! unit carries its verification too. [`assemble`] merges the units of every cluster in a fixed
//! order (duplicates across units reported as before), then adds the agent's install manifests,
//! which derive from everything emitted and are never cached.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::context::{Ctx, Index, Sink, duplicate_object};
use super::{agent, app, dataset, gpu, project, rollout};
use crate::diag::{Diagnostic, Diagnostics};
use crate::load::{FileRole, Snapshot};
use crate::model::platform::Cluster;
use crate::model::{
    AppSpec, DatasetSpec, GpuQuotaSpec, ModelRolloutSpec, PlatformSpec, ProjectSpec,
};
use crate::output::{Approval, ClusterOutput, Lowered, Manifest, ObjectKey, UnitRefs, sha256_hex};
use crate::specs::{Object, Specs};

/// Bumped when what a unit's key covers or its output format changes.
pub(super) const FORMAT: &str = "plinth-unit-v3";

/// One spec to lower on one cluster.
#[derive(Clone, Copy)]
pub(crate) enum Unit<'a> {
    Project(&'a Object<ProjectSpec>),
    GpuQuota(&'a Object<GpuQuotaSpec>),
    Dataset(&'a Object<DatasetSpec>),
    Rollout(&'a Object<ModelRolloutSpec>),
    App(&'a Object<AppSpec>),
    /// A cohort of pools (its Kueue Cohort).
    Cohort(&'a str),
    /// Platform-wide objects of a cluster (the CPU ResourceFlavor of default queues).
    Platform(&'a Object<PlatformSpec>),
}

impl Unit<'_> {
    fn id(&self) -> (&'static str, &str) {
        match self {
            Unit::Project(o) => ("Project", o.name()),
            Unit::GpuQuota(o) => ("GpuQuota", o.name()),
            Unit::Dataset(o) => ("Dataset", o.name()),
            Unit::Rollout(o) => ("ModelRollout", o.name()),
            Unit::App(o) => ("App", o.name()),
            Unit::Cohort(name) => ("Cohort", name),
            Unit::Platform(o) => ("Platform", o.name()),
        }
    }
}

/// What a unit may read.
pub(super) enum View<'s> {
    /// The specs named by the table in the module documentation (the Platform besides);
    /// boxed, as most jobs of a compile against a base are [`View::Pending`] (a job per unit).
    Own(Box<Refs<'s>>),
    /// The whole platform (the Platform's objects, a global dataset).
    Everything,
    /// Not computed: the unit's key came from a revision whose views were the same
    /// ([`super::rekey`]); computed when the unit is lowered after all (its result not in the
    /// store).
    Pending,
}

/// Some specs of a platform, by kind and name: each list sorted by name, once each
/// ([`Refs::sorted`]).
#[derive(Default)]
pub(super) struct Refs<'s> {
    projects: Vec<(&'s str, &'s Object<ProjectSpec>)>,
    datasets: Vec<(&'s str, &'s Object<DatasetSpec>)>,
    gpu_quotas: Vec<(&'s str, &'s Object<GpuQuotaSpec>)>,
    rollouts: Vec<(&'s str, &'s Object<ModelRolloutSpec>)>,
    apps: Vec<(&'s str, &'s Object<AppSpec>)>,
}

impl<'s> Refs<'s> {
    /// Each list sorted by name, once each (a name is one object of the platform).
    fn sorted(mut self) -> Refs<'s> {
        fn sort<S>(v: &mut Vec<(&str, &Object<S>)>) {
            v.sort_unstable_by_key(|(name, _)| *name);
            v.dedup_by_key(|(name, _)| *name);
        }
        sort(&mut self.projects);
        sort(&mut self.datasets);
        sort(&mut self.gpu_quotas);
        sort(&mut self.rollouts);
        sort(&mut self.apps);
        self
    }

    /// The files the specs come from, with their digests, in path order, once each.
    fn files(&self) -> Vec<(&'s str, &'s [u8; 32])> {
        fn of<'s, S>(
            v: &[(&'s str, &'s Object<S>)],
        ) -> impl Iterator<Item = (&'s str, &'s [u8; 32])> {
            v.iter().map(|(_, o)| (&*o.doc.file, &o.doc.digest))
        }
        let mut files: Vec<(&str, &[u8; 32])> = Vec::new();
        files.extend(of(&self.projects));
        files.extend(of(&self.datasets));
        files.extend(of(&self.gpu_quotas));
        files.extend(of(&self.rollouts));
        files.extend(of(&self.apps));
        files
    }

    /// A platform of these specs and `platform` (the specs are shared, not copied).
    fn to_specs(&self, platform: Option<&Object<PlatformSpec>>) -> Specs {
        fn own<S>(m: &[(&str, &Object<S>)]) -> BTreeMap<String, Object<S>> {
            m.iter()
                .map(|(k, v)| ((*k).to_owned(), Object::clone(v)))
                .collect()
        }
        Specs {
            platform: platform.cloned(),
            projects: own(&self.projects),
            datasets: own(&self.datasets),
            gpu_quotas: own(&self.gpu_quotas),
            rollouts: own(&self.rollouts),
            apps: own(&self.apps),
            broken: BTreeSet::new(),
        }
    }
}

/// A unit ready to lower: where, what it may read, and the key of its result.
pub struct Job<'s> {
    pub cluster: &'s Cluster,
    unit: Unit<'s>,
    view: View<'s>,
    /// sha256 of plinth's fingerprint, the unit and the bytes of every file its view reads.
    pub key: String,
    /// Read the whole snapshot, not only the templates ([`lower_unrestricted`]).
    whole_snapshot: bool,
}

impl Job<'_> {
    /// The unit and its cluster, for a message (debug builds' cross-check of the keys taken
    /// from a base, `lower/delta.rs`).
    #[cfg(debug_assertions)]
    pub(crate) fn describe(&self) -> String {
        let (kind, name) = self.unit.id();
        format!("{kind} `{name}` on cluster `{}`", self.cluster.name)
    }
}

/// What lowering one unit produced: its objects (verified) and its diagnostics.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UnitOutput {
    /// In key order.
    pub objects: Vec<Manifest>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Where unit results are looked up before lowering and offered after ([this module](self)): the
/// implementation (the cache) keeps what it is offered in memory until its owner writes it.
pub trait UnitStore: Send + Sync {
    fn get(&self, key: &str) -> Option<UnitOutput>;
    fn put(&self, key: &str, out: &UnitOutput);
}

/// A store that holds nothing.
pub struct NoStore;

impl UnitStore for NoStore {
    fn get(&self, _: &str) -> Option<UnitOutput> {
        None
    }
    fn put(&self, _: &str, _: &UnitOutput) {}
}

/// A store in memory for one hand-over: a plan whose base is not cached lowers its base first
/// and its head takes the units the base lowered (their objects' texts shared, not copied;
/// with a cache, this store sits in front of the cache's, see [`Layered`]). A result is handed
/// out once (taken, not copied: what the head does not take is all that stays).
#[derive(Default)]
pub struct MemStore(std::sync::Mutex<std::collections::HashMap<String, UnitOutput>>);

impl UnitStore for MemStore {
    fn get(&self, key: &str) -> Option<UnitOutput> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key)
    }
    fn put(&self, key: &str, out: &UnitOutput) {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(key.to_owned(), out.clone());
    }
}

/// Two stores, looked up in order and both offered every result.
pub struct Layered {
    pub first: std::sync::Arc<dyn UnitStore>,
    pub then: std::sync::Arc<dyn UnitStore>,
}

impl UnitStore for Layered {
    fn get(&self, key: &str) -> Option<UnitOutput> {
        self.first.get(key).or_else(|| self.then.get(key))
    }
    fn put(&self, key: &str, out: &UnitOutput) {
        self.first.put(key, out);
        self.then.put(key, out);
    }
}

/// Hashes of file contents, computed once per compile (a unit's own view files are hashed from
/// its specs' documents, which carry their file's digest).
struct FileHashes {
    /// Every spec file, and every template, in path order.
    everything: [u8; 32],
    templates: [u8; 32],
}

impl FileHashes {
    fn new(snapshot: &Snapshot) -> FileHashes {
        let fold = |role: Option<FileRole>| -> [u8; 32] {
            let mut h = Sha256::new();
            for f in &snapshot.files {
                if matches!(f.role, FileRole::Spec | FileRole::Template)
                    && role.is_none_or(|r| r == f.role)
                {
                    field(&mut h, f.path.as_bytes());
                    h.update(f.digest);
                }
            }
            h.finalize().into()
        };
        let (everything, templates) = rayon::join(|| fold(None), || fold(Some(FileRole::Template)));
        FileHashes {
            everything,
            templates,
        }
    }
}

/// A length-prefixed field, so field boundaries cannot shift.
pub(super) fn field(h: &mut Sha256, bytes: &[u8]) {
    h.update((bytes.len() as u64).to_le_bytes());
    h.update(bytes);
}

/// The units of every cluster, in merge order, with their views and, when `salt` is given,
/// their keys (empty otherwise: nothing is looked up). `salt` stands for the build of plinth
/// (its fingerprint): results of another build never match.
pub fn jobs<'s>(specs: &'s Specs, snapshot: &Snapshot, salt: Option<&str>) -> Vec<Job<'s>> {
    use rayon::prelude::*;
    let Some(keying) = Keying::new(specs, snapshot, salt) else {
        return Vec::new();
    };
    let all: Vec<(&Cluster, Unit<'_>)> = keying
        .listed(specs, snapshot)
        .into_iter()
        .flat_map(|(cluster, units)| units.into_iter().map(move |u| (cluster, u)))
        .collect();
    all.into_par_iter()
        .map(|(cluster, unit)| keying.job(specs, cluster, unit))
        .collect()
}

/// What viewing and keying units needs of a whole platform, made once per compile.
pub(super) struct Keying<'s> {
    platform: &'s Object<PlatformSpec>,
    index: Index<'s>,
    types: InstanceTypePools<'s>,
    /// With the salt, when units are keyed.
    hashes: Option<(String, FileHashes)>,
}

impl<'s> Keying<'s> {
    /// `None` without a Platform (nothing to lower).
    pub(super) fn new(
        specs: &'s Specs,
        snapshot: &Snapshot,
        salt: Option<&str>,
    ) -> Option<Keying<'s>> {
        Some(Keying {
            platform: specs.platform.as_ref()?,
            index: Index::new(specs),
            types: instance_type_pools(specs),
            hashes: salt.map(|s| (s.to_owned(), FileHashes::new(snapshot))),
        })
    }

    /// Each cluster's units (in the Platform's order), in merge order.
    pub(super) fn listed(
        &self,
        specs: &'s Specs,
        snapshot: &Snapshot,
    ) -> Vec<(&'s Cluster, Vec<Unit<'s>>)> {
        self.platform
            .spec
            .clusters
            .iter()
            .map(|cluster| {
                let cx = Ctx {
                    specs,
                    platform: &self.platform.spec,
                    cluster,
                    snapshot,
                    index: &self.index,
                };
                (cluster, units(&cx, specs, self.platform))
            })
            .collect()
    }

    /// A unit with its view and (when keyed) its key.
    pub(super) fn job(&self, specs: &'s Specs, cluster: &'s Cluster, unit: Unit<'s>) -> Job<'s> {
        let view = view(specs, &self.index, &self.types, unit);
        let key = match &self.hashes {
            Some((salt, hashes)) => {
                let platform_file = (&*self.platform.doc.file, &self.platform.doc.digest);
                key(salt, cluster, unit, &view, Some(platform_file), hashes)
            }
            None => String::new(),
        };
        Job {
            cluster,
            unit,
            view,
            key,
            whole_snapshot: false,
        }
    }

    /// A unit whose key is known (its view the one of a revision whose key it is): its view
    /// is computed only if it is lowered.
    pub(super) fn known(cluster: &'s Cluster, unit: Unit<'s>, key: String) -> Job<'s> {
        Job {
            cluster,
            unit,
            view: View::Pending,
            key,
            whole_snapshot: false,
        }
    }
}

/// What a cluster lowers: the projects, pools, rollouts and apps it hosts, every dataset, and
/// the platform.
fn units<'s>(cx: &Ctx<'_>, specs: &'s Specs, platform: &'s Object<PlatformSpec>) -> Vec<Unit<'s>> {
    let mut units: Vec<Unit<'_>> = Vec::new();
    units.extend(
        specs
            .projects
            .values()
            .filter(|p| cx.hosts_spec(p))
            .map(Unit::Project),
    );
    units.extend(
        specs
            .gpu_quotas
            .values()
            .filter(|q| cx.has_pool(q.name()))
            .map(Unit::GpuQuota),
    );
    let cohorts: BTreeSet<&str> = specs
        .gpu_quotas
        .values()
        .filter(|q| cx.has_pool(q.name()))
        .filter_map(|q| q.spec.cohort.as_deref())
        .collect();
    units.extend(cohorts.into_iter().map(Unit::Cohort));
    units.extend(specs.datasets.values().map(Unit::Dataset));
    units.extend(
        specs
            .rollouts
            .values()
            .filter(|r| cx.hosts(&r.spec.project))
            .map(Unit::Rollout),
    );
    units.extend(
        specs
            .apps
            .values()
            .filter(|a| cx.hosts(&a.spec.project))
            .map(Unit::App),
    );
    units.push(Unit::Platform(platform));
    units
}

/// The specs a unit may read (the table of the module documentation).
fn view<'s>(
    specs: &'s Specs,
    index: &Index<'s>,
    types: &InstanceTypePools<'_>,
    unit: Unit<'s>,
) -> View<'s> {
    let mut v = Refs::default();
    match unit {
        Unit::Platform(_) => return View::Everything,
        Unit::Dataset(d) if d.spec.global => return View::Everything,
        Unit::Project(p) => project_view(specs, index, p.name(), &mut v),
        Unit::GpuQuota(q) => pool_view(specs, q, &mut v),
        Unit::Cohort(cohort) => {
            // Every member's spare GPUs: its capacity less what it allocates to projects here.
            let pools = specs.gpu_quotas.values();
            for m in pools.filter(|p| p.spec.cohort.as_deref() == Some(cohort)) {
                pool_view(specs, m, &mut v);
            }
        }
        Unit::Dataset(d) => {
            // The datasets sharing its bucket or storage account (the first by name emits what
            // they share: the account, one IAM binding per member and role), with the
            // projects their grants name. A global one among them reads every project.
            // (From the index: scanning every dataset per dataset is quadratic.)
            let source = &d.spec.source;
            let mut related: Vec<&Object<DatasetSpec>> = vec![d];
            if let Some(same) = source
                .gcs
                .as_ref()
                .and_then(|g| index.datasets_by_bucket.get(g.bucket.as_str()))
            {
                related.extend(same.iter().copied());
            }
            if let Some(same) = source
                .azure_blob
                .as_ref()
                .and_then(|a| index.datasets_by_account.get(a.storage_account.as_str()))
            {
                related.extend(same.iter().copied());
            }
            if related.iter().any(|e| e.spec.global) {
                return View::Everything;
            }
            for e in related {
                add(&specs.datasets, e.name(), &mut v.datasets);
                for g in &e.spec.access {
                    add(&specs.projects, &g.project, &mut v.projects);
                }
            }
        }
        Unit::Rollout(r) => {
            project_view(specs, index, &r.spec.project, &mut v);
            if let Some(pool) = &r.spec.gpu_quota {
                add(&specs.gpu_quotas, pool, &mut v.gpu_quotas);
            }
            add_instance_type_pools(specs, types, r.spec.instance_type.as_deref(), &mut v);
            add(&specs.rollouts, r.name(), &mut v.rollouts);
        }
        Unit::App(a) => {
            project_view(specs, index, &a.spec.project, &mut v);
            add_instance_type_pools(specs, types, a.spec.instance_type.as_deref(), &mut v);
            add(&specs.apps, a.name(), &mut v.apps);
        }
    }
    View::Own(Box::new(v.sorted()))
}

/// Per instance type name, every pool defining one of that name (the first by name wins, so
/// all of them decide which one a unit gets).
type InstanceTypePools<'a> = BTreeMap<&'a str, Vec<&'a str>>;

fn instance_type_pools<'a>(specs: &'a Specs) -> InstanceTypePools<'a> {
    let mut out: InstanceTypePools<'a> = BTreeMap::new();
    for (pool, q) in &specs.gpu_quotas {
        for it in &q.spec.instance_types {
            out.entry(it.name.as_str()).or_default().push(pool.as_str());
        }
    }
    out
}

/// The pools that may decide what an instance type name means.
fn add_instance_type_pools<'s>(
    specs: &'s Specs,
    types: &InstanceTypePools<'_>,
    name: Option<&str>,
    v: &mut Refs<'s>,
) {
    for pool in name.and_then(|n| types.get(n)).into_iter().flatten() {
        add(&specs.gpu_quotas, pool, &mut v.gpu_quotas);
    }
}

/// A pool and the projects it allocates to (their placement decides where it applies).
fn pool_view<'s>(specs: &'s Specs, q: &Object<GpuQuotaSpec>, v: &mut Refs<'s>) {
    add(&specs.gpu_quotas, q.name(), &mut v.gpu_quotas);
    for a in &q.spec.allocations {
        add(&specs.projects, &a.project, &mut v.projects);
    }
}

/// A project, the datasets it may use and the pools allocating to it.
fn project_view<'s>(specs: &'s Specs, index: &Index<'s>, project: &str, v: &mut Refs<'s>) {
    add(&specs.projects, project, &mut v.projects);
    // The datasets granted to it and the global ones ([`Index::datasets_of`], without a
    // sorted list per project: the view's lists are sorted once, by `Refs::sorted`).
    let granted = index.dataset_grants.get(project).into_iter().flatten();
    for &d in granted.chain(&index.global_datasets) {
        v.datasets.push((d.name(), d));
    }
    for (pool, _) in index.allocations.get(project).into_iter().flatten() {
        add(&specs.gpu_quotas, pool, &mut v.gpu_quotas);
    }
}

/// The spec `name` of `from`, when there is one (sorted and made unique by [`Refs::sorted`]).
fn add<'s, S>(
    from: &'s BTreeMap<String, Object<S>>,
    name: &str,
    to: &mut Vec<(&'s str, &'s Object<S>)>,
) {
    if let Some((k, o)) = from.get_key_value(name) {
        to.push((k.as_str(), o));
    }
}

/// The key of a unit: plinth's build, the cluster, the unit, and the bytes of every file its
/// view reads (templates for an App; every spec file for a unit that reads everything).
fn key(
    salt: &str,
    cluster: &Cluster,
    unit: Unit<'_>,
    view: &View<'_>,
    platform_file: Option<(&str, &[u8; 32])>,
    hashes: &FileHashes,
) -> String {
    let mut h = Sha256::new();
    field(&mut h, FORMAT.as_bytes());
    field(&mut h, salt.as_bytes());
    field(&mut h, cluster.name.as_bytes());
    let (kind, name) = unit.id();
    field(&mut h, kind.as_bytes());
    field(&mut h, name.as_bytes());
    match view {
        View::Everything => h.update(hashes.everything),
        // Not reached: a pending view's key is known.
        View::Pending => h.update(hashes.everything),
        View::Own(v) => {
            // Each file's digest as its documents were read from it (the snapshot's).
            let mut files = v.files();
            files.extend(platform_file);
            files.sort_unstable_by_key(|(path, _)| *path);
            files.dedup_by_key(|(path, _)| *path);
            for (path, digest) in files {
                field(&mut h, path.as_bytes());
                h.update(digest);
            }
            if matches!(unit, Unit::App(_)) {
                h.update(hashes.templates);
            }
        }
    }
    sha256_hex(&h.finalize())
}

/// Every unit lowered against the whole platform and the whole snapshot instead of its view:
/// what tests compare [`super::lower`] with, so a rule reading a spec that its unit's view
/// lacks is found (the two outputs differ) rather than cached wrongly.
#[doc(hidden)]
pub fn lower_unrestricted(specs: &Specs, snapshot: &Snapshot) -> (Lowered, Diagnostics) {
    let templates = std::sync::Arc::default();
    let mut jobs = jobs(specs, snapshot, None);
    for j in &mut jobs {
        j.view = View::Everything;
        j.whole_snapshot = true;
    }
    let parts = {
        use rayon::prelude::*;
        jobs.par_iter()
            .map(|j| (j, run(j, specs, snapshot, &templates)))
            .collect()
    };
    assemble(specs, snapshot, parts, None)
}

/// Panics when lowering against views differs from lowering against the whole platform (debug
/// builds: see [`super::lower`]), naming the first object that differs.
#[cfg(debug_assertions)]
#[allow(clippy::panic)]
pub(crate) fn assert_views_complete(
    specs: &Specs,
    snapshot: &Snapshot,
    viewed: &(Lowered, Diagnostics),
) {
    let (whole, d) = lower_unrestricted(specs, snapshot);
    for (cluster, out) in &whole.clusters {
        let other = viewed
            .0
            .clusters
            .get(cluster)
            .map(|c| c.manifests.as_slice())
            .unwrap_or_default();
        let keys = |ms: &[Manifest]| {
            ms.iter()
                .map(|m| (m.key.clone(), m.hash.clone()))
                .collect::<Vec<_>>()
        };
        let (a, b) = (keys(&out.manifests), keys(other));
        if a != b {
            let first = a.iter().zip(&b).find(|(x, y)| x != y).map_or_else(
                || format!("{} objects against {}", a.len(), b.len()),
                |(x, y)| format!("{} (whole platform) against {} (views)", x.0, y.0),
            );
            panic!(
                "a unit read a spec outside its view (lower/units.rs) in cluster `{cluster}`: {first}"
            );
        }
    }
    let show = |d: &Diagnostics| {
        let mut v: Vec<String> = d.iter().map(|x| format!("{x:?}")).collect();
        v.sort();
        v
    };
    assert_eq!(
        show(&viewed.1),
        show(&d),
        "a unit read a spec outside its view: diagnostics differ"
    );
}

/// Lower one unit against its view and verify what it emitted.
pub fn run(
    job: &Job<'_>,
    specs: &Specs,
    snapshot: &Snapshot,
    templates: &std::sync::Arc<crate::template::TemplateCache>,
) -> UnitOutput {
    let empty = Snapshot::default();
    let template_files;
    let snapshot = if job.whole_snapshot {
        snapshot
    } else if matches!(job.unit, Unit::App(_)) {
        template_files = Snapshot {
            files: snapshot.with_role(FileRole::Template).cloned().collect(),
        };
        &template_files
    } else {
        &empty
    };
    // A unit keyed from another revision and not in the store after all: its view now.
    let computed;
    let view = match &job.view {
        View::Pending => {
            computed = view(
                specs,
                &Index::new(specs),
                &instance_type_pools(specs),
                job.unit,
            );
            &computed
        }
        v => v,
    };
    let own;
    let specs = match view {
        View::Own(v) => {
            own = v.to_specs(specs.platform.as_ref());
            &own
        }
        View::Everything | View::Pending => specs,
    };
    let Some(platform) = &specs.platform else {
        return UnitOutput::default();
    };
    let index = Index::with_templates(specs, templates);
    let cx = Ctx {
        specs,
        platform: &platform.spec,
        cluster: job.cluster,
        snapshot,
        index: &index,
    };
    let mut out = BTreeMap::new();
    let mut d = Diagnostics::new();
    let mut sink = Sink {
        cluster: &job.cluster.name,
        out: &mut out,
        diags: &mut d,
    };
    match job.unit {
        Unit::Project(p) => {
            project::lower(&cx, p, &mut sink);
            // Its GPU backstops sum its allocations in the pools its view holds.
            gpu::lower_backstops(&cx, p.name(), &mut sink);
        }
        Unit::GpuQuota(q) => gpu::lower(&cx, q, &mut sink),
        Unit::Dataset(ds) => dataset::lower(&cx, ds, &mut sink),
        Unit::Rollout(r) => rollout::lower(&cx, r, &mut sink),
        Unit::App(a) => app::lower(&cx, a, &mut sink),
        Unit::Cohort(c) => gpu::lower_cohort(&cx, c, &mut sink),
        Unit::Platform(p) => gpu::lower_platform(&cx, p, &mut sink),
    }
    let objects: Vec<Manifest> = out.into_values().collect();
    let mut diagnostics: Vec<Diagnostic> = d.into_iter().collect();
    diagnostics.extend(verified(&job.cluster.name, &objects));
    // Verified: kept as text from here on (a fifth of the memory; readers parse what they read).
    let objects = objects
        .into_iter()
        .map(|mut m| {
            m.object = m.object.into_text();
            m
        })
        .collect();
    UnitOutput {
        objects,
        diagnostics,
    }
}

/// The verification failures of some objects of a cluster.
fn verified(cluster: &str, objects: &[Manifest]) -> Vec<Diagnostic> {
    objects
        .iter()
        .filter_map(|m| {
            crate::verify::verify_one(m).err().map(|msg| {
                crate::output::internal(
                    &m.origin,
                    &format!(
                        "generated {} in cluster `{cluster}` is invalid: {msg}",
                        m.key
                    ),
                )
            })
        })
        .collect()
}

/// Merge the units' outputs (in [`jobs`] order) into the platform's output: per cluster, in
/// unit order, the first of two objects with one key kept and the second reported; then the
/// agent's install manifests, derived from everything the cluster received.
/// `store`: where the agent's part is looked up and offered, with the salt of keys (see
/// [`agent_key`]).
pub fn assemble(
    specs: &Specs,
    snapshot: &Snapshot,
    parts: Vec<(&Job<'_>, UnitOutput)>,
    store: Option<(&dyn UnitStore, &str)>,
) -> (Lowered, Diagnostics) {
    let mut diags = Diagnostics::new();
    let mut lowered = Lowered::default();
    let Some(platform) = &specs.platform else {
        return (lowered, diags);
    };
    lowered.platform_file = Some(platform.doc.file.clone());
    // Per cluster, its units' outputs and their keys in the store.
    let mut by_cluster: BTreeMap<&str, (Vec<UnitOutput>, Vec<String>)> = BTreeMap::new();
    for (job, out) in parts {
        let (outs, keys) = by_cluster.entry(&job.cluster.name).or_default();
        outs.push(out);
        keys.push(job.key.clone());
    }
    let index = Index::new(specs);
    // Where each object is in the store (when every unit is there, under a key).
    let mut refs = store.map(|_| UnitRefs::default());
    for cluster in &platform.spec.clusters {
        let (mut parts, mut keys) = by_cluster.remove(cluster.name.as_str()).unwrap_or_default();
        if platform.spec.agent.as_ref().is_some_and(|a| a.enabled) {
            let cx = Ctx {
                specs,
                platform: &platform.spec,
                cluster,
                snapshot,
                index: &index,
            };
            let key = store.map(|(_, salt)| agent_key(salt, &cx, platform, &parts));
            let cached = store.zip(key.as_deref()).and_then(|((st, _), k)| st.get(k));
            let part = cached.unwrap_or_else(|| {
                let part = agent_part(&cx, platform, &parts);
                // Not kept when made from an object whose text could not be read.
                let lost = parts
                    .iter()
                    .flat_map(|p| &p.objects)
                    .any(|m| m.object.text_lost());
                if let (Some((st, _)), Some(k), false) = (store, &key, lost) {
                    st.put(k, &part);
                }
                part
            });
            parts.push(part);
            keys.push(key.unwrap_or_default());
        }
        let first_unit = refs.as_ref().map_or(0, |r| r.keys.len());
        let mut objects: Vec<Vec<Manifest>> = Vec::with_capacity(parts.len());
        let mut unit_diags = Vec::with_capacity(parts.len());
        for (part, key) in parts.into_iter().zip(keys) {
            if let Some(r) = &mut refs {
                if key.is_empty() {
                    // A unit without a key is not in the store.
                    refs = None;
                } else {
                    if !part.diagnostics.is_empty() {
                        r.noisy
                            .push(u32::try_from(r.keys.len()).unwrap_or(u32::MAX));
                    }
                    r.keys.push(key);
                }
            }
            unit_diags.push(part.diagnostics);
            objects.push(part.objects);
        }
        let first = u32::try_from(first_unit).unwrap_or(u32::MAX);
        let (manifests, places, duplicates) = merge_units(&cluster.name, objects, first);
        // Diagnostics in unit order, a unit's duplicates after its own.
        let mut duplicates = duplicates.into_iter().peekable();
        for (u, ds) in unit_diags.into_iter().enumerate() {
            diags.extend(ds);
            let u = u32::try_from(first_unit + u).unwrap_or(u32::MAX);
            while let Some((_, d)) = duplicates.next_if(|((du, _), _)| *du == u) {
                diags.push(d);
            }
        }
        diags.extend(duplicates.map(|(_, d)| d));
        if let Some(r) = &mut refs {
            r.places.insert(cluster.name.clone(), places);
        }
        lowered.clusters.insert(
            cluster.name.clone(),
            ClusterOutput {
                manifests,
                approvals: approvals(platform, cluster),
            },
        );
    }
    lowered.units = refs.map(std::sync::Arc::new);
    (lowered, diags)
}

/// A cluster's objects in key order with their places in the units (unit numbers from
/// `first`), from every unit's objects (in unit order): of two objects with one key, the first
/// is kept and the second reported (with its place, to report in unit order). Sorts positions
/// rather than the objects, which are large: each is moved once, from its unit to its place.
#[allow(clippy::type_complexity)]
fn merge_units(
    cluster: &str,
    units: Vec<Vec<Manifest>>,
    first: u32,
) -> (
    Vec<Manifest>,
    Vec<(u32, u32)>,
    Vec<((u32, u32), Diagnostic)>,
) {
    let place = |u: usize, i: usize| {
        let u = first.saturating_add(u32::try_from(u).unwrap_or(u32::MAX));
        (u, u32::try_from(i).unwrap_or(u32::MAX))
    };
    // Every object's place in `units`, in unit order, and the order of their keys.
    let at: Vec<(usize, usize)> = units
        .iter()
        .enumerate()
        .flat_map(|(u, objects)| (0..objects.len()).map(move |i| (u, i)))
        .collect();
    let order = {
        let keys: Vec<&ObjectKey> = units.iter().flatten().map(|m| &m.key).collect();
        key_order(&keys)
    };
    // Taken out of their units in key order (each unit's objects made optional in place).
    let mut units: Vec<Vec<Option<Manifest>>> = units
        .into_iter()
        .map(|objects| objects.into_iter().map(Some).collect())
        .collect();
    let mut manifests: Vec<Manifest> = Vec::with_capacity(order.len());
    let mut places = Vec::with_capacity(order.len());
    let mut duplicates = Vec::new();
    for n in order {
        let (u, i) = at[n];
        let Some(m) = units[u][i].take() else {
            continue;
        };
        // Of equal keys (now adjacent, in unit order) the first is kept, the others reported.
        match manifests.last() {
            Some(first) if first.key == m.key => {
                let d = duplicate_object(cluster, &m.key, &first.origin, &m.origin);
                duplicates.push((place(u, i), d));
            }
            _ => {
                manifests.push(m);
                places.push(place(u, i));
            }
        }
    }
    duplicates.sort_by_key(|(place, _)| *place);
    (manifests, places, duplicates)
}

/// The positions of `all` in key order, equal keys in unit order (the order of `all`). Keys are
/// grouped by API version and kind first (a few dozen groups), then each group is sorted by
/// namespace and name with a stable sort that finds runs: units come in name order and a
/// project's objects live in its namespace, so a group is mostly in order already. Sorting
/// every position by the whole key instead compared scattered strings two million times at
/// 10,000 projects.
fn key_order(all: &[&ObjectKey]) -> Vec<usize> {
    use rayon::prelude::*;
    // Each API version and kind numbered as first seen, one hash lookup per object; the
    // groups then put in key order.
    let mut seen: std::collections::HashMap<(&str, &str), usize, foldhash::fast::RandomState> =
        Default::default();
    let mut groups: Vec<((&str, &str), Vec<usize>)> = Vec::new();
    for (i, key) in all.iter().enumerate() {
        let kind = (key.api_version.as_str(), key.kind.as_str());
        let g = *seen.entry(kind).or_insert_with(|| {
            groups.push((kind, Vec::new()));
            groups.len() - 1
        });
        groups[g].1.push(i);
    }
    groups.sort_unstable_by_key(|(kind, _)| *kind);
    let mut groups: Vec<Vec<usize>> = groups.into_iter().map(|(_, g)| g).collect();
    groups.par_iter_mut().for_each(|g| {
        g.sort_by(|&a, &b| {
            let (a, b) = (all[a], all[b]);
            a.namespace
                .cmp(&b.namespace)
                .then_with(|| a.name.cmp(&b.name))
        });
    });
    groups.concat()
}

/// The key of a cluster's agent part: everything [`agent_part`] reads — plinth's build, the
/// cluster, the Platform's file (path and bytes: the agent's settings and the objects'
/// provenance), the identity and content hash of every RBAC object emitted, and the kinds of
/// the others (all their names do not matter: see [`reads_content`]).
fn agent_key(
    salt: &str,
    cx: &Ctx<'_>,
    platform: &Object<PlatformSpec>,
    parts: &[UnitOutput],
) -> String {
    let mut h = Sha256::new();
    field(&mut h, b"agent");
    field(&mut h, FORMAT.as_bytes());
    field(&mut h, salt.as_bytes());
    field(&mut h, cx.cluster.name.as_bytes());
    field(&mut h, platform.doc.file.as_bytes());
    let bytes = cx
        .snapshot
        .files
        .iter()
        .find(|f| f.path == platform.doc.file);
    field(&mut h, bytes.map_or(&b""[..], |f| f.text.as_bytes()));
    let mut rbac: Vec<(&ObjectKey, &str)> = Vec::new();
    let mut kinds: BTreeSet<(&str, &str)> = BTreeSet::new();
    for m in parts.iter().flat_map(|p| &p.objects) {
        if reads_content(&m.key) {
            rbac.push((&m.key, &m.hash));
        } else {
            kinds.insert((&m.key.api_version, &m.key.kind));
        }
    }
    rbac.sort_unstable();
    for (k, hash) in rbac {
        field(
            &mut h,
            serde_json::to_string(k).unwrap_or_default().as_bytes(),
        );
        field(&mut h, hash.as_bytes());
    }
    field(&mut h, b"kinds");
    for (v, k) in kinds {
        field(&mut h, v.as_bytes());
        field(&mut h, k.as_bytes());
    }
    sha256_hex(&h.finalize())
}

/// The agent's install manifests of a cluster (its ClusterRole derives from what the other
/// units emit), verified.
fn agent_part(cx: &Ctx<'_>, platform: &Object<PlatformSpec>, parts: &[UnitOutput]) -> UnitOutput {
    // Its rules read the kind of every object, and the name and content of RBAC objects only
    // (what a role grants, what a binding binds): of the others, one stand-in per kind.
    let kinds: BTreeSet<(&str, &str)> = parts
        .iter()
        .flat_map(|p| &p.objects)
        .filter(|m| !reads_content(&m.key))
        .map(|m| (m.key.api_version.as_str(), m.key.kind.as_str()))
        .collect();
    let stubs: Vec<serde_json::Value> = kinds
        .into_iter()
        .map(|(v, k)| serde_json::json!({"apiVersion": v, "kind": k, "metadata": {"name": "-"}}))
        .collect();
    let emitted: Vec<&serde_json::Value> = parts
        .iter()
        .flat_map(|p| &p.objects)
        .filter(|m| reads_content(&m.key))
        .map(|m| &*m.object)
        .chain(&stubs)
        .collect();
    let mut out = BTreeMap::new();
    let mut d = Diagnostics::new();
    let mut sink = Sink {
        cluster: &cx.cluster.name,
        out: &mut out,
        diags: &mut d,
    };
    agent::lower(cx, platform, &emitted, &mut sink);
    let objects: Vec<Manifest> = out.into_values().collect();
    let mut diagnostics: Vec<Diagnostic> = d.into_iter().collect();
    diagnostics.extend(verified(&cx.cluster.name, &objects));
    UnitOutput {
        objects,
        diagnostics,
    }
}

/// Whether the agent's rules read an object's name and content (RBAC objects), not only its
/// kind.
pub(super) fn reads_content(key: &ObjectKey) -> bool {
    key.group() == "rbac.authorization.k8s.io"
}

/// The Platform's approval entries that apply to a cluster, with where each is written.
pub(super) fn approvals(platform: &Object<PlatformSpec>, cluster: &Cluster) -> Vec<Approval> {
    platform
        .spec
        .approvals
        .iter()
        .enumerate()
        .filter(|(_, a)| a.cluster.as_ref().is_none_or(|c| *c == cluster.name))
        .map(|(i, a)| Approval {
            object: a.object.clone(),
            cluster: a.cluster.clone(),
            reason: a.reason.clone(),
            approver: a.approver.clone(),
            file: platform.doc.file.clone(),
            line: platform
                .doc
                .at(&format!("spec.approvals[{i}]"))
                .span
                .start
                .line,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// An object of unit `u` with a key from a small alphabet (so keys repeat).
    fn object(u: u32, (v, k, ns, n): (u8, u8, Option<u8>, u8)) -> Manifest {
        Manifest {
            key: ObjectKey {
                api_version: ["v1", "apps/v1", "rbac.authorization.k8s.io/v1"][usize::from(v % 3)]
                    .to_owned(),
                kind: ["Service", "Role", "ConfigMap", "A"][usize::from(k % 4)].to_owned(),
                namespace: ns.map(|ns| format!("ns-{}", ns % 5)),
                name: format!("n{}", n % 7),
            },
            object: crate::output::Obj::default(),
            origin: crate::output::Origin {
                file: format!("projects/u{u}.yaml").into(),
                line: u + 1,
                kind: crate::model::Kind::Project,
                name: format!("u{u}").into(),
            },
            hash: String::new(),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        /// The merge by groups and runs gives what sorting every position by the whole key
        /// gave: the objects in key order, the first unit's object of a key kept, every later
        /// one reported with its place, in place order.
        #[test]
        fn merging_units_is_a_stable_sort_by_key_keeping_the_first(
            units in proptest::collection::vec(
                proptest::collection::vec((any::<u8>(), any::<u8>(), any::<Option<u8>>(), any::<u8>()), 0..12),
                0..12,
            )
        ) {
            // The cluster's units are numbered from `FIRST` (the units of the clusters before).
            const FIRST: u32 = 3;
            let mut all = Vec::new();
            let mut by_unit = Vec::new();
            for (u, objects) in units.iter().enumerate() {
                let u = u32::try_from(u).unwrap_or(u32::MAX);
                let mut objects: Vec<Manifest> = objects.iter().map(|&o| object(u, o)).collect();
                // A unit's own objects are in key order (a map), without repeats.
                objects.sort_by(|a, b| a.key.cmp(&b.key));
                objects.dedup_by(|a, b| a.key == b.key);
                by_unit.push(objects.clone());
                all.extend(objects.into_iter().enumerate().map(|(i, m)| {
                    (m, (u + FIRST, u32::try_from(i).unwrap_or(u32::MAX)))
                }));
            }
            // What the merge replaced: every position sorted by (key, position).
            let mut order: Vec<usize> = (0..all.len()).collect();
            order.sort_by(|&a, &b| all[a].0.key.cmp(&all[b].0.key).then(a.cmp(&b)));
            let mut want_kept: Vec<(ObjectKey, (u32, u32))> = Vec::new();
            let mut want_dups: Vec<((u32, u32), String)> = Vec::new();
            for i in order {
                let (m, place) = &all[i];
                match want_kept.last() {
                    Some((k, first)) if *k == m.key => {
                        let kept = all.iter().find(|(_, p)| p == first);
                        prop_assert!(kept.is_some());
                        if let Some((kept, _)) = kept {
                            let d = duplicate_object("c", &m.key, &kept.origin, &m.origin);
                            want_dups.push((*place, d.message));
                        }
                    }
                    _ => want_kept.push((m.key.clone(), *place)),
                }
            }
            want_dups.sort_by_key(|(place, _)| *place);
            let (manifests, places, dups) = merge_units("c", by_unit, FIRST);
            let kept: Vec<(ObjectKey, (u32, u32))> =
                manifests.into_iter().map(|m| m.key).zip(places).collect();
            prop_assert_eq!(kept, want_kept);
            let dups: Vec<((u32, u32), String)> =
                dups.into_iter().map(|(p, d)| (p, d.message)).collect();
            prop_assert_eq!(dups, want_dups);
        }
    }
}
