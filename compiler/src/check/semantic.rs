//! Semantic rules: references, names, capacities, quotas, versions and rollout traffic.
//!
//! Every rule reads the whole [`Specs`] index and reports at the offending field; where two
//! places conflict (a duplicate, an over-allocated pool) the other place is a related label.

use std::collections::{BTreeMap, BTreeSet};

use crate::diag::{Code, Diagnostic, Diagnostics, Label, did_you_mean};
use crate::load::Snapshot;
use crate::model::common::InstanceType;
use crate::model::dataset::{AccessMode, SourceKind};
use crate::model::rollout::{Runtime, Strategy};
use crate::model::{Kind, Object, Quantity, Specs};
use crate::names::is_dns_label;
use crate::resolve::invalid_name;

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
    let mut d = Diagnostics::new();
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
    let mut rollouts_by_project: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (name, r) in &specs.rollouts {
        rollouts_by_project
            .entry(r.spec.project.as_str())
            .or_default()
            .push(name);
    }
    let cx = Cx {
        specs,
        snapshot,
        its: instance_types(specs),
        by_path,
        rollouts_by_project,
    };
    cx.platform(&mut d);
    cx.instance_type_names(&mut d);
    cx.priority_class_names(&mut d);
    for p in specs.projects.values() {
        cx.project(p, &mut d);
    }
    for ds in specs.datasets.values() {
        cx.dataset(ds, &mut d);
    }
    for q in specs.gpu_quotas.values() {
        cx.gpu_quota(q, &mut d);
    }
    for r in specs.rollouts.values() {
        cx.rollout(r, &mut d);
    }
    cx.rollout_capacity(&mut d);
    for a in specs.apps.values() {
        cx.app(a, &mut d);
    }
    d
}

struct Cx<'a> {
    specs: &'a Specs,
    snapshot: &'a Snapshot,
    its: BTreeMap<&'a str, (&'a InstanceType, Option<&'a str>)>,
    /// Dataset names by mount path.
    by_path: BTreeMap<String, Vec<&'a str>>,
    /// Model rollout names by project.
    rollouts_by_project: BTreeMap<&'a str, Vec<&'a str>>,
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
    at: Label,
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
    fn project_ref(&self, name: &str, at: Label, d: &mut Diagnostics) -> bool {
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

    fn platform(&self, d: &mut Diagnostics) {
        let Some(pl) = &self.specs.platform else {
            return;
        };
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, c) in pl.spec.clusters.iter().enumerate() {
            let at = pl.at(&format!("spec.clusters[{i}].name"));
            if !is_dns_label(&c.name) {
                d.push(invalid_name("cluster name", &c.name, at.clone()));
            }
            if let Some(first) = seen.insert(&c.name, i) {
                d.push(
                    Diagnostic::new(
                        Code::DuplicateEntry,
                        format!("cluster `{}` is declared twice", c.name),
                    )
                    .at(at)
                    .related(
                        pl.at(&format!("spec.clusters[{first}].name"))
                            .note("first declared here"),
                    ),
                );
            }
            for (j, pool) in c.gpu_pools.iter().enumerate() {
                if !self.specs.gpu_quotas.contains_key(pool)
                    && !self.specs.is_broken(Kind::GpuQuota, pool)
                {
                    d.push(unknown(
                        Code::UnknownGpuQuota,
                        "GPU pool",
                        pool,
                        pl.at(&format!("spec.clusters[{i}].gpuPools[{j}]")),
                        self.specs.gpu_quotas.keys().map(String::as_str),
                    ));
                }
            }
        }
        for (i, a) in pl.spec.approvals.iter().enumerate() {
            if let Some(c) = &a.cluster
                && !seen.contains_key(c.as_str())
            {
                d.push(unknown(
                    Code::UnknownCluster,
                    "cluster",
                    c,
                    pl.at(&format!("spec.approvals[{i}].cluster")),
                    seen.keys().copied(),
                ));
            }
        }
        for (i, c) in pl.spec.defaults.clusters.iter().enumerate() {
            if !seen.contains_key(c.as_str()) {
                d.push(unknown(
                    Code::UnknownCluster,
                    "cluster",
                    c,
                    pl.at(&format!("spec.defaults.clusters[{i}]")),
                    seen.keys().copied(),
                ));
            }
        }
        for (i, it) in pl.spec.instance_types.iter().enumerate() {
            if it.gpu > 0 {
                d.push(
                    Diagnostic::new(
                        Code::NotAllowed,
                        format!("instance type `{}` asks for GPUs but is declared on the Platform", it.name),
                    )
                    .at(pl.at(&format!("spec.instanceTypes[{i}].gpu")))
                    .hint("declare GPU instance types in the `GpuQuota` of their pool, so quotas and queues cover them"),
                );
            }
        }
        image_names(pl, "spec.images", &pl.spec.images, d);
    }

    /// Instance type names are global: the Platform's and every pool's.
    fn instance_type_names(&self, d: &mut Diagnostics) {
        let mut seen: BTreeMap<&str, Label> = BTreeMap::new();
        let mut visit = |name: &'a str, at: Label, d: &mut Diagnostics| {
            if !is_dns_label(name) {
                d.push(invalid_name("instance type name", name, at.clone()));
            }
            match seen.get(name) {
                Some(first) => d.push(
                    Diagnostic::new(
                        Code::DuplicateName,
                        format!("instance type `{name}` is defined twice"),
                    )
                    .at(at)
                    .related(first.clone().note("first defined here"))
                    .hint("instance type names are unique across the Platform and every GpuQuota"),
                ),
                None => {
                    seen.insert(name, at);
                }
            }
        };
        if let Some(p) = &self.specs.platform {
            for (i, it) in p.spec.instance_types.iter().enumerate() {
                visit(&it.name, p.at(&format!("spec.instanceTypes[{i}].name")), d);
            }
        }
        for q in self.specs.gpu_quotas.values() {
            for (i, it) in q.spec.instance_types.iter().enumerate() {
                visit(&it.name, q.at(&format!("spec.instanceTypes[{i}].name")), d);
            }
        }
    }

    /// Kueue WorkloadPriorityClasses are cluster-scoped: names are unique across pools.
    fn priority_class_names(&self, d: &mut Diagnostics) {
        let mut seen: BTreeMap<&str, Label> = BTreeMap::new();
        for q in self.specs.gpu_quotas.values() {
            for (i, pc) in q.spec.priority_classes.iter().enumerate() {
                let at = q.at(&format!("spec.priorityClasses[{i}].name"));
                if !is_dns_label(&pc.name) {
                    d.push(invalid_name("priority class name", &pc.name, at.clone()));
                }
                match seen.get(pc.name.as_str()) {
                    Some(first) => d.push(
                        Diagnostic::new(Code::DuplicateName, format!("priority class `{}` is defined twice", pc.name))
                            .at(at)
                            .related(first.clone().note("first defined here"))
                            .hint("priority classes are cluster-wide; names are unique across every GpuQuota"),
                    ),
                    None => {
                        seen.insert(&pc.name, at);
                    }
                }
            }
        }
    }

    fn project(&self, p: &'a Object<crate::model::ProjectSpec>, d: &mut Diagnostics) {
        let s = &p.spec;
        // Identities and names a reviewer reads: no invisible or look-alike characters.
        for (i, o) in s.owners.iter().enumerate() {
            suspicious(o, "owner", p.at(&format!("spec.owners[{i}]")), d);
        }
        for (i, m) in s.members.iter().enumerate() {
            if let Some(u) = &m.user {
                suspicious(u, "user", p.at(&format!("spec.members[{i}].user")), d);
            }
            if let Some(g) = &m.group {
                suspicious(g, "group", p.at(&format!("spec.members[{i}].group")), d);
            }
        }
        if let Some(n) = &s.display_name {
            suspicious(n, "display name", p.at("spec.displayName"), d);
        }
        // Placement.
        let clusters = self.clusters();
        for (i, c) in s.clusters.iter().enumerate() {
            if self.specs.platform.is_some() && !clusters.contains(&c.as_str()) {
                d.push(unknown(
                    Code::UnknownCluster,
                    "cluster",
                    c,
                    p.at(&format!("spec.clusters[{i}]")),
                    clusters.iter().copied(),
                ));
            }
        }
        // People.
        let mut members: BTreeMap<(bool, &str), usize> = BTreeMap::new();
        for (i, m) in s.members.iter().enumerate() {
            let at = p.at(&format!("spec.members[{i}]"));
            let who = match (&m.user, &m.group) {
                (Some(u), None) => (true, u.as_str()),
                (None, Some(g)) => (false, g.as_str()),
                _ => {
                    d.push(
                        Diagnostic::new(
                            Code::InvalidChoice,
                            "a member has exactly one of `user` and `group`",
                        )
                        .at(at)
                        .hint("write one member entry per user or group"),
                    );
                    continue;
                }
            };
            if let Some(first) = members.insert(who, i) {
                d.push(
                    Diagnostic::new(
                        Code::DuplicateEntry,
                        format!("member `{}` is listed twice", who.1),
                    )
                    .at(p.at(&format!("spec.members[{i}]")))
                    .related(
                        p.at(&format!("spec.members[{first}]"))
                            .note("first listed here"),
                    )
                    .hint("give each user or group one role"),
                );
            }
        }
        if s.owners.is_empty()
            && !s
                .members
                .iter()
                .any(|m| m.role == crate::model::project::Role::Admin)
        {
            d.push(
                Diagnostic::new(
                    Code::NoOwners,
                    format!("project `{}` has no owners", p.name()),
                )
                .at(p.at("metadata.name"))
                .hint(
                    "add `owners:` so someone can administer the project and approve its changes",
                ),
            );
        }
        // Quotas.
        if let (Some(pu), q) = (&s.per_user_quota, &s.quota) {
            for (field, user, project) in [
                ("cpu", &pu.cpu, q.as_ref().and_then(|q| q.cpu.as_ref())),
                (
                    "memory",
                    &pu.memory,
                    q.as_ref().and_then(|q| q.memory.as_ref()),
                ),
            ] {
                if let (Some(u), Some(pq)) = (user, project)
                    && nanos(u) > nanos(pq)
                {
                    d.push(
                        Diagnostic::new(
                            Code::PerUserAboveProject,
                            format!("per-user {field} quota `{u}` is above the project's {field} quota `{pq}`"),
                        )
                        .at(p.at(&format!("spec.perUserQuota.{field}")))
                        .related(p.at(&format!("spec.quota.{field}")).note("project quota"))
                        .hint(format!("lower `perUserQuota.{field}` to at most `{pq}`")),
                    );
                }
            }
            if let Some(g) = pu.gpu {
                let allocations: Vec<(Label, u32)> = self
                    .specs
                    .gpu_quotas
                    .values()
                    .flat_map(|q| {
                        q.spec
                            .allocations
                            .iter()
                            .enumerate()
                            .filter(|(_, a)| a.project == p.name())
                            .map(move |(i, a)| {
                                (
                                    q.at(&format!("spec.allocations[{i}].gpu"))
                                        .note(format!("allocation in pool `{}`", q.name())),
                                    a.gpu,
                                )
                            })
                    })
                    .collect();
                let total: u64 = allocations.iter().map(|(_, n)| u64::from(*n)).sum();
                if u64::from(g) > total {
                    let mut diag = Diagnostic::new(
                        Code::PerUserAboveProject,
                        format!("per-user GPU quota {g} is above the {total} GPU(s) the project is allocated"),
                    )
                    .at(p.at("spec.perUserQuota.gpu"));
                    for (l, _) in allocations {
                        diag = diag.related(l);
                    }
                    d.push(diag.hint("raise the project's allocation in a `GpuQuota`, or lower `perUserQuota.gpu`"));
                }
            }
        }
        for (field, q) in [
            (
                "spec.quota.cpu",
                s.quota.as_ref().and_then(|q| q.cpu.as_ref()),
            ),
            (
                "spec.quota.memory",
                s.quota.as_ref().and_then(|q| q.memory.as_ref()),
            ),
        ] {
            if let Some(q) = q
                && nanos(q) == 0
            {
                d.push(
                    Diagnostic::new(
                        Code::QuantityRange,
                        format!("`{field}` is zero: no pod could start"),
                    )
                    .at(p.at(field))
                    .hint("give the project some quota, or remove the field for no limit"),
                );
            }
        }
        if let Some(def) = &s.defaults {
            for (req, lim, name) in [
                (&def.cpu, &def.cpu_limit, "cpu"),
                (&def.memory, &def.memory_limit, "memory"),
            ] {
                if let (Some(r), Some(l)) = (req, lim)
                    && nanos(r) > nanos(l)
                {
                    d.push(
                        Diagnostic::new(
                            Code::QuantityRange,
                            format!(
                                "default {name} request `{r}` is above the default limit `{l}`"
                            ),
                        )
                        .at(p.at(&format!("spec.defaults.{name}")))
                        .related(
                            p.at(&format!("spec.defaults.{name}Limit"))
                                .note("default limit"),
                        ),
                    );
                }
            }
        }
        // Instance types and images.
        for (i, name) in s.instance_types.iter().enumerate() {
            if !self.its.contains_key(name.as_str()) && !self.instance_types_incomplete() {
                d.push(unknown(
                    Code::UnknownInstanceType,
                    "instance type",
                    name,
                    p.at(&format!("spec.instanceTypes[{i}]")),
                    self.its.keys().copied(),
                ));
            }
        }
        image_names(p, "spec.images", &s.images, d);
        // Network.
        for (i, a) in s.network.allow_from.iter().enumerate() {
            if let Some(other) = &a.project {
                self.project_ref(
                    other,
                    p.at(&format!("spec.network.allowFrom[{i}].project")),
                    d,
                );
            }
            if let Some(ns) = &a.namespace
                && !is_dns_label(ns)
            {
                d.push(invalid_name(
                    "namespace",
                    ns,
                    p.at(&format!("spec.network.allowFrom[{i}].namespace")),
                ));
            }
            if let Some(c) = &a.cidr
                && !is_cidr(c)
            {
                d.push(
                    Diagnostic::new(
                        Code::InvalidValue,
                        format!("`{c}` is not an IP block in CIDR notation"),
                    )
                    .at(p.at(&format!("spec.network.allowFrom[{i}].cidr")))
                    .hint("write an address and a prefix length, e.g. `10.20.0.0/16`"),
                );
            }
        }
        if let Some(sv) = &s.volumes.shared
            && nanos(&sv.capacity) == 0
        {
            d.push(
                Diagnostic::new(Code::QuantityRange, "the shared volume's capacity is zero")
                    .at(p.at("spec.volumes.shared.capacity")),
            );
        }
    }

    fn dataset(&self, ds: &'a Object<crate::model::DatasetSpec>, d: &mut Diagnostics) {
        let s = &ds.spec;
        let Some(kind) = s.source.kind() else { return };
        // Version pinning.
        if !s.allow_floating_version {
            let (field, problem) = match kind {
                SourceKind::Git => (
                    "spec.source.git.ref",
                    floating_commit(
                        &s.source
                            .git
                            .as_ref()
                            .map(|g| g.git_ref.clone())
                            .unwrap_or_default(),
                        40,
                    ),
                ),
                SourceKind::Dvc => (
                    "spec.source.dvc.rev",
                    floating_commit(
                        &s.source
                            .dvc
                            .as_ref()
                            .map(|g| g.rev.clone())
                            .unwrap_or_default(),
                        40,
                    ),
                ),
                SourceKind::Lakefs => (
                    "spec.source.lakefs.ref",
                    floating_commit(
                        &s.source
                            .lakefs
                            .as_ref()
                            .map(|g| g.lakefs_ref.clone())
                            .unwrap_or_default(),
                        64,
                    ),
                ),
                SourceKind::Env => ("", None),
                _ => match &s.version {
                    None => ("spec.source", Some("has no `version`".to_owned())),
                    Some(v) if is_floating_word(v) => {
                        ("spec.version", Some(format!("version `{v}` can move")))
                    }
                    Some(_) => ("", None),
                },
            };
            if let Some(problem) = problem {
                let hint = match kind {
                    SourceKind::Git | SourceKind::Dvc => {
                        "pin a full 40-character commit id, or set `allowFloatingVersion: true`"
                    }
                    SourceKind::Lakefs => {
                        "pin a lakeFS commit id (64 hex characters), or set `allowFloatingVersion: true`"
                    }
                    _ => {
                        "set `version` to an immutable object version or snapshot id, or set `allowFloatingVersion: true`"
                    }
                };
                d.push(
                    Diagnostic::new(
                        Code::FloatingVersion,
                        format!(
                            "dataset `{}` {problem}: consumers would not see a fixed revision",
                            ds.name()
                        ),
                    )
                    .at(ds.at(field))
                    .hint(hint),
                );
            }
        }
        if matches!(kind, SourceKind::Git | SourceKind::Dvc | SourceKind::Lakefs)
            && s.version.is_some()
        {
            d.push(
                Diagnostic::new(
                    Code::InvalidChoice,
                    format!("`version` is not used with a `{}` source", kind.as_str()),
                )
                .at(ds.at("spec.version"))
                .hint("the source's own `ref`/`rev` is the version; remove `version`"),
            );
        }
        // Access.
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, a) in s.access.iter().enumerate() {
            let at = ds.at(&format!("spec.access[{i}].project"));
            self.project_ref(&a.project, at.clone(), d);
            if let Some(first) = seen.insert(&a.project, i) {
                d.push(
                    Diagnostic::new(
                        Code::DuplicateEntry,
                        format!("project `{}` is granted access twice", a.project),
                    )
                    .at(at)
                    .related(
                        ds.at(&format!("spec.access[{first}].project"))
                            .note("first grant here"),
                    )
                    .hint("keep one entry per project, with the widest mode it needs"),
                );
            }
            if s.global && a.mode == AccessMode::ReadWrite {
                d.push(
                    Diagnostic::new(
                        Code::GlobalWritable,
                        format!("global dataset `{}` cannot be granted read-write", ds.name()),
                    )
                    .at(ds.at(&format!("spec.access[{i}].mode")))
                    .related(ds.at("spec.global").note("the dataset is global"))
                    .hint("global datasets are read-only everywhere; make it non-global to grant write access"),
                );
            }
            if matches!(
                kind,
                SourceKind::Env | SourceKind::Git | SourceKind::Lakefs | SourceKind::Dvc
            ) && a.mode == AccessMode::ReadWrite
            {
                d.push(
                    Diagnostic::new(
                        Code::NotAllowed,
                        format!("`{}` datasets are read-only", kind.as_str()),
                    )
                    .at(ds.at(&format!("spec.access[{i}].mode")))
                    .hint("use `mode: read-only`; write new data to a new revision and pin it"),
                );
            }
        }
        self.dataset_clusters(ds, kind, d);
        if s.access.is_empty() && !s.global {
            d.push(
                Diagnostic::new(
                    Code::UnusedDataset,
                    format!("dataset `{}` is granted to no project", ds.name()),
                )
                .at(ds.at("metadata.name"))
                .hint(
                    "add `access:` entries, or `global: true` to share it read-only with everyone",
                ),
            );
        }
        if let Some(pv) = &s.provision
            && !kind.is_bucket()
            && pv.create_bucket
        {
            d.push(
                Diagnostic::new(
                    Code::InvalidChoice,
                    format!(
                        "`provision.createBucket` needs an object store, not a `{}` source",
                        kind.as_str()
                    ),
                )
                .at(ds.at("spec.provision.createBucket"))
                .hint("provisioning applies to `s3`, `gcs` and `azureBlob` sources"),
            );
        }
        // Two datasets mounted at the same path in one project.
        let path = self.mount_path(ds);
        let same_path = self
            .by_path
            .get(&path)
            .into_iter()
            .flatten()
            .filter(|n| **n > ds.name());
        for other_name in same_path {
            let other = &self.specs.datasets[*other_name];
            let shared: Vec<&str> = self
                .consumers(ds)
                .intersection(&self.consumers(other))
                .copied()
                .collect();
            if let Some(project) = shared.first() {
                d.push(
                    Diagnostic::new(
                        Code::DuplicateEntry,
                        format!("datasets `{}` and `{other_name}` are both mounted at `{path}` in project `{project}`", ds.name()),
                    )
                    .at(other.at("spec.mount.path"))
                    .related(ds.at("spec.mount.path").note("same path"))
                    .hint("give one of them a different `mount.path`"),
                );
            }
        }
    }

    /// Where each grant is mounted: the clusters a grant names must be its project's; an object
    /// store only on clusters of its cloud (E160 for a grant, W015 for what a global dataset
    /// leaves out); with IRSA, only on AWS clusters whose OIDC issuer is known (E161).
    fn dataset_clusters(
        &self,
        ds: &'a Object<crate::model::DatasetSpec>,
        kind: SourceKind,
        d: &mut Diagnostics,
    ) {
        let Some(pl) = &self.specs.platform else {
            return;
        };
        let s = &ds.spec;
        let cluster = |name: &str| pl.spec.clusters.iter().position(|c| c.name == name);
        let cloud = kind.mount_cloud();
        let irsa = kind == SourceKind::S3
            && s.source.s3.as_ref().is_some_and(|x| x.endpoint.is_none())
            && pl.spec.backends.crossplane;
        // Clusters lacking an OIDC issuer, with the first grant needing it.
        let mut no_issuer: BTreeMap<usize, (String, &'a str)> = BTreeMap::new();
        let mut explicit: BTreeSet<&str> = BTreeSet::new();
        for (i, a) in s.access.iter().enumerate() {
            explicit.insert(a.project.as_str());
            let Some(p) = self.specs.projects.get(&a.project) else {
                continue;
            };
            let lives = self.placement(p);
            let mut on: Vec<(&str, String)> = Vec::new();
            for (j, c) in a.clusters.iter().enumerate() {
                let field = format!("spec.access[{i}].clusters[{j}]");
                if cluster(c).is_none() {
                    d.push(unknown(
                        Code::UnknownCluster,
                        "cluster",
                        c,
                        ds.at(&field),
                        self.clusters().into_iter(),
                    ));
                } else if !lives.contains(&c.as_str()) {
                    d.push(
                        Diagnostic::new(
                            Code::GrantCluster,
                            format!(
                                "project `{}` does not live on cluster `{c}`: the grant cannot be mounted there",
                                a.project
                            ),
                        )
                        .at(ds.at(&field))
                        .hint(format!("the project lives on {}", list(&lives))),
                    );
                } else {
                    on.push((c.as_str(), field));
                }
            }
            if a.clusters.is_empty() {
                on = lives
                    .iter()
                    .map(|c| (*c, format!("spec.access[{i}]")))
                    .collect();
            }
            if let Some(cloud) = cloud {
                let foreign: Vec<&(&str, String)> = on
                    .iter()
                    .filter(|(c, _)| {
                        cluster(c).is_some_and(|k| pl.spec.clusters[k].provider != cloud)
                    })
                    .collect();
                if let Some((first, field)) = foreign.first() {
                    let fitting: Vec<&str> = lives
                        .iter()
                        .copied()
                        .filter(|c| {
                            cluster(c).is_some_and(|k| pl.spec.clusters[k].provider == cloud)
                        })
                        .collect();
                    let names: Vec<&str> = foreign.iter().map(|(c, _)| *c).collect();
                    let mut diag = Diagnostic::new(
                        Code::NotMountable,
                        format!(
                            "dataset `{}` cannot be mounted for project `{}` on {} {}: its `{}` source needs the {}, which exists only on `{}` clusters",
                            ds.name(),
                            a.project,
                            if names.len() == 1 { "cluster" } else { "clusters" },
                            list(&names),
                            kind.as_str(),
                            driver_name(kind),
                            cloud.as_str()
                        ),
                    )
                    .at(ds.at(field))
                    .hint(if fitting.is_empty() {
                        format!(
                            "project `{}` lives on no `{}` cluster: place it on one, or copy the data to storage its clusters can mount",
                            a.project,
                            cloud.as_str()
                        )
                    } else {
                        format!(
                            "mount it only on the project's `{}` clusters: `clusters: [{}]`",
                            cloud.as_str(),
                            fitting.join(", ")
                        )
                    });
                    if let Some(k) = cluster(first) {
                        diag = diag.related(pl.at(&format!("spec.clusters[{k}].provider")).note(
                            format!(
                                "cluster `{first}` runs on `{}`",
                                pl.spec.clusters[k].provider.as_str()
                            ),
                        ));
                    }
                    d.push(diag);
                    on.retain(|(c, _)| !names.contains(c));
                }
            }
            if irsa
                && p.spec
                    .cloud_identity
                    .as_ref()
                    .is_some_and(|x| x.aws.is_some())
            {
                for (c, field) in &on {
                    if let Some(k) = cluster(c)
                        && pl.spec.clusters[k].oidc_issuer.is_none()
                    {
                        no_issuer
                            .entry(k)
                            .or_insert((field.clone(), a.project.as_str()));
                    }
                }
            }
        }
        if s.global {
            let mut skipped: Vec<String> = Vec::new();
            for (name, p) in &self.specs.projects {
                if explicit.contains(name.as_str()) {
                    continue;
                }
                for c in self.placement(p) {
                    let Some(k) = cluster(c) else { continue };
                    let provider = pl.spec.clusters[k].provider;
                    if cloud.is_some_and(|x| x != provider) {
                        skipped.push(format!("{name} on {c}"));
                    } else if irsa
                        && provider == crate::model::platform::CloudProvider::Aws
                        && pl.spec.clusters[k].oidc_issuer.is_none()
                        && p.spec
                            .cloud_identity
                            .as_ref()
                            .is_some_and(|x| x.aws.is_some())
                    {
                        no_issuer
                            .entry(k)
                            .or_insert(("spec.global".to_owned(), name.as_str()));
                    }
                }
            }
            if let (Some(cloud), false) = (cloud, skipped.is_empty()) {
                d.push(
                    Diagnostic::new(
                        Code::NotMountedEverywhere,
                        format!(
                            "global dataset `{}` is not mounted where its {} does not exist: {}",
                            ds.name(),
                            driver_name(kind),
                            list(&skipped)
                        ),
                    )
                    .at(ds.at("spec.global"))
                    .hint(format!(
                        "only `{}` clusters can mount a `{}` source; projects elsewhere need a copy on storage their clusters mount",
                        cloud.as_str(),
                        kind.as_str()
                    )),
                );
            }
        }
        for (k, (field, project)) in no_issuer {
            let c = &pl.spec.clusters[k];
            d.push(
                Diagnostic::new(
                    Code::IdentitySetup,
                    format!(
                        "cluster `{}` has no `oidcIssuer`: project `{project}` would mount dataset `{}` with its IAM role, which no trust policy lets the cluster's service accounts assume",
                        c.name,
                        ds.name()
                    ),
                )
                .at(ds.at(&field))
                .related(pl.at(&format!("spec.clusters[{k}].name")).note("the cluster"))
                .hint("set the cluster's `oidcIssuer` in the Platform (EKS: `aws eks describe-cluster --name <cluster> --query cluster.identity.oidc.issuer`)"),
            );
        }
    }

    fn mount_path(&self, ds: &Object<crate::model::DatasetSpec>) -> String {
        Specs::mount_path(ds)
    }

    fn consumers(&self, ds: &'a Object<crate::model::DatasetSpec>) -> BTreeSet<&'a str> {
        if ds.spec.global {
            self.specs.projects.keys().map(String::as_str).collect()
        } else {
            ds.spec.access.iter().map(|a| a.project.as_str()).collect()
        }
    }

    fn gpu_quota(&self, q: &'a Object<crate::model::GpuQuotaSpec>, d: &mut Diagnostics) {
        let s = &q.spec;
        if crate::model::gpu::RESERVED_POOL_NAMES.contains(&q.name()) {
            d.push(
                Diagnostic::new(Code::InvalidName, format!("a GPU quota may not be called `{}`", q.name()))
                    .at(q.at("metadata.name"))
                    .hint("`default` is each project's default Kueue queue and `plinth-cpu` the flavor of CPU work; pick another name, e.g. `a100`"),
            );
        }
        // Instance types fit a node.
        for (i, it) in s.instance_types.iter().enumerate() {
            if it.gpu > s.pool.gpus_per_node {
                d.push(
                    Diagnostic::new(
                        Code::InstanceTypeTooLarge,
                        format!(
                            "instance type `{}` asks for {} GPUs but a node of pool `{}` has {}",
                            it.name,
                            it.gpu,
                            q.name(),
                            s.pool.gpus_per_node
                        ),
                    )
                    .at(q.at(&format!("spec.instanceTypes[{i}].gpu")))
                    .related(q.at("spec.pool.gpusPerNode").note("GPUs per node"))
                    .hint("pods cannot span nodes; lower `gpu` or use a larger node pool"),
                );
            }
            if it.gpu == 0 {
                d.push(
                    Diagnostic::new(
                        Code::NotAllowed,
                        format!(
                            "instance type `{}` of GPU pool `{}` has no GPUs",
                            it.name,
                            q.name()
                        ),
                    )
                    .at(q.at(&format!("spec.instanceTypes[{i}].gpu")))
                    .hint("declare CPU-only instance types on the Platform (`spec.instanceTypes`)"),
                );
            }
        }
        if s.pool.gpus_per_node > s.pool.capacity {
            d.push(
                Diagnostic::new(
                    Code::QuantityRange,
                    format!(
                        "pool `{}` has {} GPUs per node but only {} in total",
                        q.name(),
                        s.pool.gpus_per_node,
                        s.pool.capacity
                    ),
                )
                .at(q.at("spec.pool.gpusPerNode"))
                .related(q.at("spec.pool.capacity").note("capacity")),
            );
        }
        // Allocations, per cluster: a project's allocation applies in every cluster it lives
        // on that has the pool, and must fit that cluster's capacity.
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        let pool_clusters: Vec<&str> = self
            .specs
            .platform
            .as_ref()
            .map(|pl| {
                pl.spec
                    .clusters
                    .iter()
                    .filter(|c| c.gpu_pools.iter().any(|g| g == q.name()))
                    .map(|c| c.name.as_str())
                    .collect()
            })
            .unwrap_or_default();
        for c in s.pool.capacity_by_cluster.keys() {
            if !pool_clusters.contains(&c.as_str()) {
                d.push(
                    Diagnostic::new(
                        Code::UnknownCluster,
                        format!("cluster `{c}` does not have pool `{}`", q.name()),
                    )
                    .at(q.at(&format!("spec.pool.capacityByCluster.{c}")))
                    .hint(format!(
                        "the clusters with this pool (their `gpuPools` name it) are {}",
                        if pool_clusters.is_empty() {
                            "none".to_owned()
                        } else {
                            pool_clusters
                                .iter()
                                .map(|c| format!("`{c}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    )),
                );
            }
        }
        if !s.allow_overcommit {
            for cluster in &pool_clusters {
                let capacity = u64::from(s.capacity_in(cluster));
                let here = |a: &crate::model::gpu::Allocation| {
                    self.specs
                        .projects
                        .get(&a.project)
                        .is_some_and(|p| self.placement(p).contains(cluster))
                };
                let sum: u64 = s
                    .allocations
                    .iter()
                    .filter(|a| here(a))
                    .map(|a| u64::from(a.gpu))
                    .sum();
                if sum <= capacity {
                    continue;
                }
                // Which allocation was raised is not known without the previous revision, so
                // none is blamed: the capacity is the place, every allocation counted here is
                // marked beside it.
                let cap_at = if s.pool.capacity_by_cluster.contains_key(*cluster) {
                    format!("spec.pool.capacityByCluster.{cluster}")
                } else {
                    "spec.pool.capacity".to_owned()
                };
                let mut diag = Diagnostic::new(
                    Code::GpuOvercommit,
                    format!(
                        "allocations in pool `{}` add up to {sum} GPUs in cluster `{cluster}`, over its capacity there of {capacity} (by {})",
                        q.name(),
                        sum - capacity
                    ),
                )
                .at(q.at(&cap_at));
                for (i, a) in s.allocations.iter().enumerate().filter(|(_, a)| here(a)) {
                    diag = diag.related(
                        q.at(&format!("spec.allocations[{i}].gpu"))
                            .note(format!("`{}`: {} GPU(s)", a.project, a.gpu)),
                    );
                }
                d.push(diag.hint(format!(
                    "capacity is per cluster and a project's allocation applies in every cluster it lives on; lower the allocations marked by {} GPU(s) in total, raise the capacity (`capacityByCluster`), or set `allowOvercommit: true`",
                    sum - capacity
                )));
            }
        }
        // Priority classes: the default must be one of them.
        if let Some(def) = &s.default_priority_class
            && !s.priority_classes.iter().any(|c| &c.name == def)
        {
            d.push(unknown(
                Code::UnknownPriorityClass,
                "priority class",
                def,
                q.at("spec.defaultPriorityClass"),
                s.priority_classes.iter().map(|c| c.name.as_str()),
            ));
        }
        if s.priority_classes.is_empty()
            && s.cohort.is_some()
            && s.preemption.reclaim_within_cohort == crate::model::gpu::ReclaimPolicy::LowerPriority
        {
            d.push(
                Diagnostic::new(
                    Code::NotEnforced,
                    format!(
                        "pool `{}` reclaims lent GPUs only from lower-priority workloads, but declares no priority classes: every workload has priority 0, so nothing is ever reclaimed",
                        q.name()
                    ),
                )
                .at(q.at("spec.preemption.reclaimWithinCohort"))
                .hint("declare `priorityClasses` (and a `defaultPriorityClass`), or use `reclaimWithinCohort: Any`"),
            );
        }
        for (i, a) in s.allocations.iter().enumerate() {
            let at = q.at(&format!("spec.allocations[{i}].project"));
            self.project_ref(&a.project, at.clone(), d);
            if let Some(first) = seen.insert(&a.project, i) {
                d.push(
                    Diagnostic::new(
                        Code::DuplicateEntry,
                        format!(
                            "project `{}` has two allocations in pool `{}`",
                            a.project,
                            q.name()
                        ),
                    )
                    .at(at)
                    .related(
                        q.at(&format!("spec.allocations[{first}].project"))
                            .note("first allocation here"),
                    )
                    .hint("merge them into one allocation"),
                );
            }
            if let Some(l) = a.lending_limit
                && l > a.gpu
            {
                d.push(
                    Diagnostic::new(
                        Code::AllocationLimits,
                        format!(
                            "lending limit {l} is above the allocation of {} GPUs",
                            a.gpu
                        ),
                    )
                    .at(q.at(&format!("spec.allocations[{i}].lendingLimit")))
                    .hint("a project can lend at most what it is allocated"),
                );
            }
            if a.borrowing_limit.is_some() && s.cohort.is_none() {
                d.push(
                    Diagnostic::new(
                        Code::AllocationLimits,
                        "a borrowing limit needs a cohort to borrow from",
                    )
                    .at(q.at(&format!("spec.allocations[{i}].borrowingLimit")))
                    .hint("set `cohort:` on the GpuQuota, or remove `borrowingLimit`"),
                );
            }
            if let Some(pu) = s.per_user_gpu
                && pu > a.gpu
            {
                d.push(
                    Diagnostic::new(
                        Code::PerUserAboveProject,
                        format!(
                            "per-user GPU limit {pu} is above project `{}`'s allocation of {} GPUs",
                            a.project, a.gpu
                        ),
                    )
                    .at(q.at("spec.perUserGpu"))
                    .related(
                        q.at(&format!("spec.allocations[{i}].gpu"))
                            .note("the project's allocation"),
                    )
                    .hint("lower `perUserGpu` or raise the allocation"),
                );
            }
        }
        if let Some(c) = &s.cohort
            && !is_dns_label(c)
        {
            d.push(invalid_name("cohort", c, q.at("spec.cohort")));
        }
    }

    fn rollout(&self, r: &'a Object<crate::model::ModelRolloutSpec>, d: &mut Diagnostics) {
        let s = &r.spec;
        let project = self.specs.projects.get(&s.project);
        if project.is_none() {
            self.project_ref(&s.project, r.at("spec.project"), d);
        }
        // Sizing.
        match (&s.instance_type, &s.resources) {
            (None, None) => d.push(
                Diagnostic::new(
                    Code::InvalidChoice,
                    "a model rollout needs an `instanceType` or `resources`",
                )
                .at(r.at("spec"))
                .hint("name an instance type the project may use"),
            ),
            (Some(_), Some(_)) => d.push(
                Diagnostic::new(
                    Code::InvalidChoice,
                    "`instanceType` and `resources` are mutually exclusive",
                )
                .at(r.at("spec.resources"))
                .hint("keep one of the two"),
            ),
            _ => {}
        }
        if let Some(it) = &s.instance_type {
            self.instance_type_use(it, project, r.at("spec.instanceType"), d);
        }
        if let Some(pc) = &s.priority_class {
            let its = instance_types(self.specs);
            let pool = match (&s.instance_type, &s.resources) {
                (Some(it), _) => its.get(it.as_str()).and_then(|(_, p)| *p),
                (None, Some(res)) if res.gpu > 0 => s.gpu_quota.as_deref(),
                _ => None,
            };
            self.priority_class_ref(r, pc, pool, d);
        }
        if let Some(res) = &s.resources
            && res.gpu > 0
        {
            match &s.gpu_quota {
                None => d.push(
                    Diagnostic::new(
                        Code::UnknownGpuQuota,
                        "`resources.gpu` needs a `gpuQuota` naming the pool",
                    )
                    .at(r.at("spec.resources.gpu"))
                    .hint("add `gpuQuota: <pool>`, or use a GPU instance type"),
                ),
                Some(q)
                    if !self.specs.gpu_quotas.contains_key(q)
                        && !self.specs.is_broken(Kind::GpuQuota, q) =>
                {
                    d.push(unknown(
                        Code::UnknownGpuQuota,
                        "GPU quota",
                        q,
                        r.at("spec.gpuQuota"),
                        self.specs.gpu_quotas.keys().map(String::as_str),
                    ))
                }
                _ => {}
            }
        }
        if s.replicas.is_some() && s.autoscaling.is_some() {
            d.push(
                Diagnostic::new(
                    Code::InvalidChoice,
                    "`replicas` and `autoscaling` are mutually exclusive",
                )
                .at(r.at("spec.autoscaling"))
                .hint("use `autoscaling.min`/`max` instead of `replicas`"),
            );
        }
        if let Some(a) = &s.autoscaling {
            if a.min > a.max {
                d.push(
                    Diagnostic::new(
                        Code::QuantityRange,
                        format!("autoscaling `min` {} is above `max` {}", a.min, a.max),
                    )
                    .at(r.at("spec.autoscaling.min"))
                    .related(r.at("spec.autoscaling.max").note("max")),
                );
            }
            if a.scale_to_zero && s.runtime == Runtime::Deployment {
                d.push(
                    Diagnostic::new(
                        Code::RolloutStrategy,
                        "`scaleToZero` needs `runtime: kserve`",
                    )
                    .at(r.at("spec.autoscaling.scaleToZero"))
                    .hint(
                        "a plain Deployment cannot scale to zero on demand; use KServe serverless",
                    ),
                );
            }
        }
        // Model and runtime.
        if s.runtime == Runtime::Deployment && s.model.image.is_none() {
            d.push(
                Diagnostic::new(
                    Code::MissingField,
                    "`runtime: deployment` needs `model.image`",
                )
                .at(r.at("spec.model"))
                .hint("name the serving image, e.g. `registry.example.org/serving/xgboost:2.1`"),
            );
        }
        if let Some(pl) = &self.specs.platform
            && s.runtime == Runtime::Kserve
            && !pl.spec.backends.kserve
        {
            d.push(
                Diagnostic::new(
                    Code::Placement,
                    "`runtime: kserve` but the KServe backend is disabled",
                )
                .at(r.at("spec.runtime"))
                .related(pl.at("spec.backends.kserve").note("disabled here"))
                .hint("use `runtime: deployment`, or enable the backend"),
            );
        }
        // Traffic.
        match (&s.traffic, &s.model.storage_uri) {
            (None, None) => d.push(
                Diagnostic::new(Code::MissingField, "missing `model.storageUri`")
                    .at(r.at("spec.model"))
                    .hint("say where the model is, or list versions under `traffic.versions`"),
            ),
            (Some(_), Some(_)) => d.push(
                Diagnostic::new(
                    Code::InvalidChoice,
                    "`model.storageUri` and `traffic.versions` are mutually exclusive",
                )
                .at(r.at("spec.model.storageUri"))
                .hint("with `traffic`, each version carries its own `storageUri`"),
            ),
            _ => {}
        }
        if let Some(t) = &s.traffic {
            self.traffic(r, t, d);
        }
        // Endpoint.
        for (i, other) in s.endpoint.allow_projects.iter().enumerate() {
            self.project_ref(other, r.at(&format!("spec.endpoint.allowProjects[{i}]")), d);
        }
        if s.endpoint.access == crate::model::rollout::EndpointAccess::Public
            && s.endpoint.host.is_none()
        {
            d.push(
                Diagnostic::new(
                    Code::MissingField,
                    "a public endpoint needs `endpoint.host`",
                )
                .at(r.at("spec.endpoint.access"))
                .hint("give the external host name, e.g. `bed-forecast.models.example.org`"),
            );
        }
        self.serving(r, project, d);
        // Deployment limits of the project.
        if let Some(p) = project {
            if !p.spec.deployments.enabled {
                d.push(
                    Diagnostic::new(
                        Code::DeploymentsDisabled,
                        format!("project `{}` may not serve models", p.name()),
                    )
                    .at(r.at("spec.project"))
                    .related(
                        p.at("spec.deployments.enabled")
                            .note("deployments disabled here"),
                    )
                    .hint("enable `deployments` in the project, or move the rollout"),
                );
            } else {
                let mine: &[&str] = self
                    .rollouts_by_project
                    .get(s.project.as_str())
                    .map_or(&[], Vec::as_slice);
                let max = p.spec.deployments.max as usize;
                if mine.len() > max
                    && mine
                        .iter()
                        .position(|n| *n == r.name())
                        .is_some_and(|i| i >= max)
                {
                    let limit_at = if p
                        .doc
                        .root
                        .walk(&crate::parse::FieldPath::parse("spec.deployments.max"))
                        .matched
                        == 3
                    {
                        p.at("spec.deployments.max")
                    } else {
                        p.at("metadata.name")
                    };
                    d.push(
                        Diagnostic::new(
                            Code::TooManyDeployments,
                            format!(
                                "project `{}` has {} model rollouts, over its limit of {max}",
                                p.name(),
                                mine.len()
                            ),
                        )
                        .at(r.at("metadata.name"))
                        .related(limit_at.note("deployment limit"))
                        .hint("raise `deployments.max` in the project, or retire a rollout"),
                    );
                }
            }
        }
    }

    fn traffic(
        &self,
        r: &Object<crate::model::ModelRolloutSpec>,
        t: &crate::model::rollout::Traffic,
        d: &mut Diagnostics,
    ) {
        let s = &r.spec;
        let sum: u64 = t.versions.iter().map(|v| u64::from(v.weight)).sum();
        if sum != 100 {
            let mut diag = Diagnostic::new(
                Code::TrafficWeights,
                format!("traffic weights add up to {sum}, not 100"),
            )
            .at(r.at("spec.traffic.versions"));
            for (i, v) in t.versions.iter().enumerate() {
                diag = diag.related(
                    r.at(&format!("spec.traffic.versions[{i}].weight"))
                        .note(format!("`{}`: {}", v.name, v.weight)),
                );
            }
            d.push(diag.hint("weights are percentages of live traffic; make them add up to 100"));
        }
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, v) in t.versions.iter().enumerate() {
            let at = r.at(&format!("spec.traffic.versions[{i}].name"));
            if !is_dns_label(&v.name) {
                d.push(invalid_name("version name", &v.name, at.clone()));
            }
            if let Some(first) = names.insert(&v.name, i) {
                d.push(
                    Diagnostic::new(
                        Code::DuplicateEntry,
                        format!("version `{}` is listed twice", v.name),
                    )
                    .at(at)
                    .related(
                        r.at(&format!("spec.traffic.versions[{first}].name"))
                            .note("first listed here"),
                    ),
                );
            }
        }
        let strategy = t.strategy.as_str();
        let problem = |msg: String, at: Label, hint: &str| {
            Diagnostic::new(Code::RolloutStrategy, msg)
                .at(at)
                .hint(hint.to_owned())
        };
        if t.versions.len() != 2 {
            d.push(problem(
                format!("a `{strategy}` rollout needs two versions, the stable one and the candidate, found {}", t.versions.len()),
                r.at("spec.traffic.versions"),
                "list the serving version first and the new one second; drop `traffic` to serve one version",
            ));
        } else if matches!(t.strategy, Strategy::BlueGreen | Strategy::Shadow)
            && (t.versions[0].weight != 100 || t.versions[1].weight != 0)
        {
            d.push(problem(
                format!("a `{strategy}` rollout sends all live traffic to the first version: weights must be 100 and 0"),
                r.at("spec.traffic.versions[1].weight"),
                if t.strategy == Strategy::Shadow {
                    "the candidate gets a copy of the traffic (`mirrorPercent`), not a share of it"
                } else {
                    "promote the candidate by swapping the versions' order in a new commit"
                },
            ));
        }
        if t.strategy == Strategy::Shadow && t.mirror_percent.is_none() {
            d.push(problem(
                "a `shadow` rollout needs `mirrorPercent`".to_owned(),
                r.at("spec.traffic"),
                "say what share of live requests is copied to the candidate, e.g. `mirrorPercent: 100`",
            ));
        }
        if t.strategy != Strategy::Shadow && t.mirror_percent.is_some() {
            d.push(problem(
                "`mirrorPercent` applies to `shadow` rollouts only".to_owned(),
                r.at("spec.traffic.mirrorPercent"),
                "remove it, or use `strategy: shadow`",
            ));
        }
        if t.auto_promote && t.strategy != Strategy::BlueGreen {
            d.push(problem(
                "`autoPromote` applies to `blueGreen` rollouts only".to_owned(),
                r.at("spec.traffic.autoPromote"),
                "remove it",
            ));
        }
        if !t.steps.is_empty() || t.analysis.is_some() {
            let field = if t.steps.is_empty() {
                "spec.traffic.analysis"
            } else {
                "spec.traffic.steps"
            };
            if s.runtime != Runtime::Deployment {
                d.push(problem(
                    "rollout `steps` and `analysis` need `runtime: deployment` (Argo Rollouts)".to_owned(),
                    r.at(field),
                    "KServe moves traffic by the candidate's weight alone; use `runtime: deployment` for stepped rollouts",
                ));
            } else if t.strategy != Strategy::Canary && !t.steps.is_empty() {
                d.push(problem(
                    format!("`steps` apply to `canary` rollouts, not `{strategy}`"),
                    r.at("spec.traffic.steps"),
                    "remove the steps, or use `strategy: canary`",
                ));
            }
            if let Some(pl) = &self.specs.platform
                && s.runtime == Runtime::Deployment
                && !pl.spec.backends.argo_rollouts
            {
                d.push(
                    Diagnostic::new(
                        Code::Placement,
                        "rollout `steps` need Argo Rollouts, but that backend is disabled",
                    )
                    .at(r.at(field))
                    .related(pl.at("spec.backends.argoRollouts").note("disabled here")),
                );
            }
        }
        for (i, step) in t.steps.iter().enumerate() {
            if step.analysis.is_some() && t.analysis.is_none() {
                d.push(problem(
                    "an `analysis` step needs `traffic.analysis`".to_owned(),
                    r.at(&format!("spec.traffic.steps[{i}].analysis")),
                    "describe the Prometheus query and success condition under `traffic.analysis`",
                ));
            }
        }
    }

    /// What a rollout needs of the serving infrastructure the Platform declares
    /// (`spec.serving`): a restricted-compliant KServe storage initializer, a deployment mode,
    /// a mesh or ingress controller to route traffic, TLS and authentication for public
    /// endpoints, and a model repository Triton can read.
    fn serving(
        &self,
        r: &'a Object<crate::model::ModelRolloutSpec>,
        project: Option<&'a Object<crate::model::ProjectSpec>>,
        d: &mut Diagnostics,
    ) {
        use crate::model::platform::Mesh;
        use crate::model::rollout::{EndpointAccess, ModelFormat, ScaleMetric};
        let Some(pl) = &self.specs.platform else {
            return;
        };
        let sv = &pl.spec.serving;
        let s = &r.spec;
        let kserve = s.runtime == Runtime::Kserve;
        let public = s.endpoint.access == EndpointAccess::Public;
        let strategy = s
            .traffic
            .as_ref()
            .filter(|t| t.versions.len() == 2)
            .map(|t| t.strategy);
        // Storage URIs with their fields.
        let uris: Vec<(&str, String)> = match &s.traffic {
            Some(t) => t
                .versions
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    (
                        v.storage_uri.as_str(),
                        format!("spec.traffic.versions[{i}].storageUri"),
                    )
                })
                .collect(),
            None => s
                .model
                .storage_uri
                .iter()
                .map(|u| (u.as_str(), "spec.model.storageUri".to_owned()))
                .collect(),
        };

        // KServe's storage initializer under `restricted` (kserve/kserve#5373).
        let (level, level_at) = match project.and_then(|p| p.spec.pod_security.map(|l| (l, p))) {
            Some((l, p)) => (l, p.at("spec.podSecurity")),
            None => (
                pl.spec.defaults.pod_security,
                pl.at("spec.defaults.podSecurity"),
            ),
        };
        if kserve
            && level == crate::model::PodSecurityLevel::Restricted
            && !sv.kserve.restricted_storage_initializer
            && uris.iter().any(|(u, _)| !u.starts_with("pvc://"))
        {
            d.push(
                Diagnostic::new(
                    Code::StorageInitializer,
                    "KServe injects a `storage-initializer` container without a security context, which the `restricted` Pod Security level refuses",
                )
                .at(r.at("spec.runtime"))
                .related(level_at.note("`restricted` here"))
                .hint("patch `ClusterStorageContainer/default` with a restricted security context (no privilege escalation, all capabilities dropped, `runAsNonRoot`, `runAsUser: 1000`, `RuntimeDefault` seccomp; kserve/kserve#5373) and declare it with `serving.kserve.restrictedStorageInitializer: true`, or use `runtime: deployment`"),
            );
        }

        // KServe deployment mode: `Knative` for scale-to-zero, `Standard` otherwise.
        let knative = s.autoscaling.as_ref().is_some_and(|a| a.scale_to_zero);
        if kserve && knative {
            let at = r.at("spec.autoscaling.scaleToZero");
            let mode = |msg: String, at: Label, hint: &str| {
                Diagnostic::new(Code::KserveMode, msg)
                    .at(at)
                    .hint(hint.to_owned())
            };
            if !sv.kserve.knative {
                d.push(mode(
                    "`scaleToZero` needs KServe's `Knative` deployment mode, and the platform does not declare Knative Serving".to_owned(),
                    at.clone(),
                    "install Knative Serving and set `serving.kserve.knative: true` on the Platform, or drop `scaleToZero`",
                ));
            } else if self.has_node_placement(s) && !sv.kserve.knative_node_placement {
                let place = if s.instance_type.is_some() {
                    "spec.instanceType"
                } else {
                    "spec.gpuQuota"
                };
                d.push(mode(
                    "in `Knative` mode (`scaleToZero`) the pods' node selector and tolerations are refused unless Knative's `kubernetes.podspec-nodeselector` and `kubernetes.podspec-tolerations` features are enabled".to_owned(),
                    r.at(place),
                    "enable both in Knative's `config-features` and set `serving.kserve.knativeNodePlacement: true`, or drop `scaleToZero`",
                ));
            }
            if let Some(st @ (Strategy::Canary | Strategy::Shadow)) = strategy {
                d.push(mode(
                    format!("a `{}` KServe rollout is routed between two InferenceServices in `Standard` mode; `scaleToZero` needs `Knative` mode", st.as_str()),
                    at.clone(),
                    "drop `scaleToZero` while the rollout runs",
                ));
            }
            if public {
                d.push(mode(
                    "a public KServe endpoint is served through plinth's Ingress in `Standard` mode; `scaleToZero` needs `Knative` mode".to_owned(),
                    at.clone(),
                    "drop `scaleToZero`, or make the endpoint private",
                ));
            }
            if let Some(a) = &s.autoscaling
                && matches!(a.metric, ScaleMetric::Cpu | ScaleMetric::Memory)
            {
                d.push(mode(
                    format!(
                        "Knative scales on `concurrency` or `rps`, not `{}`",
                        a.metric.as_str()
                    ),
                    r.at("spec.autoscaling.metric"),
                    "use `metric: concurrency` or `metric: rps` with `scaleToZero`",
                ));
            }
        } else if kserve
            && let Some(a) = &s.autoscaling
            && matches!(a.metric, ScaleMetric::Rps | ScaleMetric::Concurrency)
        {
            d.push(
                Diagnostic::new(
                    Code::KserveMode,
                    format!("KServe's `Standard` mode scales with a HorizontalPodAutoscaler on `cpu` or `memory`, not `{}`", a.metric.as_str()),
                )
                .at(r.at("spec.autoscaling.metric"))
                .hint("use `metric: cpu` or `metric: memory`; request-based scaling needs `scaleToZero` (Knative mode)"),
            );
        }

        // Routing: mirroring and weights need a mesh or the ingress controller.
        let no_mesh = sv.mesh == Mesh::None;
        match strategy {
            Some(Strategy::Shadow) => {
                if no_mesh {
                    d.push(
                        Diagnostic::new(
                            Code::TrafficRouting,
                            "`shadow` copies requests with the service mesh (an Istio VirtualService `mirror`), but the platform declares no mesh: the candidate would get nothing",
                        )
                        .at(r.at("spec.traffic.strategy"))
                        .related(pl.at("spec.serving").note("no `mesh` declared"))
                        .hint("set `serving.mesh: istio` if the clusters run Istio, or use `blueGreen` to run the candidate beside the stable version"),
                    );
                }
                if public {
                    d.push(
                        Diagnostic::new(
                            Code::TrafficRouting,
                            "requests through the ingress controller bypass the mesh, so a public `shadow` endpoint would not mirror them",
                        )
                        .at(r.at("spec.endpoint.access"))
                        .hint("mirror a private endpoint (callers in the mesh), or use `blueGreen`"),
                    );
                }
            }
            Some(Strategy::Canary) if !public && no_mesh => d.push(
                Diagnostic::new(
                    Code::TrafficRouting,
                    "a private `canary` needs weighted routing, and the platform declares no mesh: split by replicas, the candidate's share would be anything from 1/n to half",
                )
                .at(r.at("spec.traffic.strategy"))
                .related(pl.at("spec.serving").note("no `mesh` declared"))
                .hint("set `serving.mesh: istio` if the clusters run Istio, or make the endpoint public (weighted by ingress-nginx)"),
            ),
            _ => {}
        }

        // Public endpoints: ingress controller, TLS, authentication.
        let e = &s.endpoint;
        if public {
            match &sv.ingress {
                None => d.push(
                    Diagnostic::new(
                        Code::EndpointExposure,
                        "a public endpoint needs an ingress controller, and the platform declares none",
                    )
                    .at(r.at("spec.endpoint.access"))
                    .related(pl.at("spec.serving").note("no `ingress` declared"))
                    .hint("declare the ingress-nginx controller with `serving.ingress.className`, or make the endpoint private"),
                ),
                Some(ing) if e.tls_secret.is_none() && ing.cluster_issuer.is_none() => d.push(
                    Diagnostic::new(
                        Code::EndpointExposure,
                        "a public endpoint needs TLS: no `endpoint.tlsSecret`, and the platform has no `serving.ingress.clusterIssuer`",
                    )
                    .at(r.at("spec.endpoint.access"))
                    .hint("name the certificate's Secret in `endpoint.tlsSecret`, or declare a cert-manager ClusterIssuer"),
                ),
                _ => {}
            }
            if e.auth.is_none() {
                d.push(
                    Diagnostic::new(
                        Code::EndpointExposure,
                        "a public endpoint needs authentication (`endpoint.auth`)",
                    )
                    .at(r.at("spec.endpoint.access"))
                    .hint("require client certificates (`clientCaSecret`), basic authentication (`basicAuthSecret`) or an external check (`url`)"),
                );
            }
        } else {
            for (field, set) in [
                ("auth", e.auth.is_some()),
                ("tlsSecret", e.tls_secret.is_some()),
            ] {
                if set {
                    d.push(
                        Diagnostic::new(
                            Code::EndpointExposure,
                            format!("`endpoint.{field}` applies to public endpoints; a private endpoint is guarded by its NetworkPolicy"),
                        )
                        .at(r.at(&format!("spec.endpoint.{field}")))
                        .hint("remove it, or make the endpoint public"),
                    );
                }
            }
        }

        // Triton reads its model repository itself.
        if s.runtime == Runtime::Deployment && s.model.format == ModelFormat::Triton {
            for (uri, field) in &uris {
                if !(uri.starts_with("s3://") || uri.starts_with("gs://")) {
                    let scheme = uri.split("://").next().unwrap_or(uri);
                    d.push(
                        Diagnostic::new(
                            Code::TritonRepository,
                            format!("Triton reads its model repository from `s3://` or `gs://`, not `{scheme}`"),
                        )
                        .at(r.at(field))
                        .hint("copy the model repository to a bucket, or serve it with `runtime: kserve` (its storage initializer downloads it)"),
                    );
                }
            }
        }
    }

    /// Whether the rollout's pods get a node selector or tolerations (a GPU pool's labels and
    /// taints, an instance type's node selector and tolerations).
    fn has_node_placement(&self, s: &crate::model::ModelRolloutSpec) -> bool {
        let pool = |name: Option<&str>| {
            name.and_then(|n| self.specs.gpu_quotas.get(n))
                .is_some_and(|q| {
                    !q.spec.pool.node_labels.is_empty() || !q.spec.pool.taints.is_empty()
                })
        };
        match (&s.instance_type, &s.resources) {
            (Some(it), _) => self.its.get(it.as_str()).is_some_and(|(t, p)| {
                !t.node_selector.is_empty() || !t.tolerations.is_empty() || pool(*p)
            }),
            (None, Some(res)) => res.gpu > 0 && pool(s.gpu_quota.as_deref()),
            _ => false,
        }
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
        at: Label,
        d: &mut Diagnostics,
    ) {
        if !self.its.contains_key(name) {
            if self.instance_types_incomplete() {
                return;
            }
            d.push(unknown(
                Code::UnknownInstanceType,
                "instance type",
                name,
                at,
                self.its.keys().copied(),
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

    /// GPUs each project's rollouts need per pool, against the project's allocation there, and
    /// the pool's presence on the clusters the project lives on.
    fn rollout_capacity(&self, d: &mut Diagnostics) {
        // (project, pool) -> running total
        let mut need: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for r in self.specs.rollouts.values() {
            let s = &r.spec;
            let (gpu, pool, field) = match (&s.instance_type, &s.resources) {
                (Some(it), None) => match self.its.get(it.as_str()) {
                    Some((t, Some(pool))) => (t.gpu, *pool, "spec.instanceType"),
                    _ => continue,
                },
                (None, Some(res)) if res.gpu > 0 => match &s.gpu_quota {
                    Some(q) if self.specs.gpu_quotas.contains_key(q) => {
                        (res.gpu, q.as_str(), "spec.resources.gpu")
                    }
                    _ => continue,
                },
                _ => continue,
            };
            if gpu == 0 {
                continue;
            }
            let Some(project) = self.specs.projects.get(&s.project) else {
                continue;
            };
            let versions = s.traffic.as_ref().map_or(1, |t| t.versions.len().max(1)) as u64;
            let this = u64::from(gpu) * u64::from(s.max_replicas()) * versions;
            let total = need.entry((s.project.as_str(), pool)).or_default();
            *total += this;
            let quota = &self.specs.gpu_quotas[pool];
            let alloc = quota
                .spec
                .allocations
                .iter()
                .enumerate()
                .find(|(_, a)| a.project == s.project);
            let allowed = alloc.map_or(0, |(_, a)| u64::from(a.gpu));
            if *total > allowed && *total - this <= allowed {
                let mut diag = Diagnostic::new(
                    Code::RolloutGpuExceeds,
                    format!(
                        "model rollouts of project `{}` need {} GPUs of pool `{pool}`, but the project is allocated {allowed}",
                        s.project, *total
                    ),
                )
                .at(r.at(field));
                diag = match alloc {
                    Some((i, _)) => diag.related(
                        quota
                            .at(&format!("spec.allocations[{i}].gpu"))
                            .note("the project's allocation"),
                    ),
                    None => diag,
                };
                d.push(diag.hint(format!(
                    "this rollout needs {gpu} GPU(s) × {} replica(s) × {versions} version(s); raise the allocation or lower the replicas",
                    s.max_replicas()
                )));
            }
            // The pool must exist on each cluster the project lives on.
            if let Some(pl) = &self.specs.platform {
                for c in self.placement(project) {
                    if let Some((ci, cluster)) = pl
                        .spec
                        .clusters
                        .iter()
                        .enumerate()
                        .find(|(_, x)| x.name == c)
                        && !cluster.gpu_pools.iter().any(|p| p == pool)
                    {
                        d.push(
                            Diagnostic::new(
                                Code::Placement,
                                format!("GPU pool `{pool}` is not present on cluster `{c}`, where project `{}` lives", s.project),
                            )
                            .at(r.at(field))
                            .related(pl.at(&format!("spec.clusters[{ci}].gpuPools")).note("the cluster's GPU pools"))
                            .hint("add the pool to the cluster's `gpuPools`, or limit the project's `clusters`"),
                        );
                    }
                }
            }
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

    /// `values.datasets`, by the convention of the template library, names the datasets an
    /// App mounts: each must be one the project may use (granted to it, or global).
    fn app_datasets(&self, a: &'a Object<crate::model::AppSpec>, d: &mut Diagnostics) {
        let Some(serde_json::Value::Array(wanted)) = a.spec.values.get("datasets") else {
            return;
        };
        let project = a.spec.project.as_str();
        let usable = app_datasets(self.specs, project);
        for (i, name) in wanted.iter().enumerate() {
            let Some(name) = name.as_str() else { continue };
            if usable.contains(&name) {
                continue;
            }
            let at = a.at(&format!("spec.values.datasets[{i}]"));
            match self.specs.datasets.get(name) {
                Some(ds) => d.push(
                    Diagnostic::new(
                        Code::UnknownDataset,
                        format!("dataset `{name}` is not granted to project `{project}`"),
                    )
                    .at(at)
                    .related(ds.at("spec.access").note("who may use it"))
                    .hint(format!(
                        "add `{{project: {project}}}` (read-only) to its `spec.access`, or use one the project may: {}",
                        list(usable.iter())
                    )),
                ),
                None => d.push(unknown(
                    Code::UnknownDataset,
                    "dataset",
                    name,
                    at,
                    usable.iter().copied(),
                )),
            }
        }
    }

    fn app(&self, a: &'a Object<crate::model::AppSpec>, d: &mut Diagnostics) {
        let project = self.specs.projects.get(&a.spec.project);
        if let Some(pc) = &a.spec.priority_class {
            let its = instance_types(self.specs);
            let pool = a
                .spec
                .instance_type
                .as_deref()
                .and_then(|it| its.get(it))
                .and_then(|(_, p)| *p);
            self.priority_class_ref(a, pc, pool, d);
        }
        if project.is_none() {
            self.project_ref(&a.spec.project, a.at("spec.project"), d);
        }
        if project.is_some() {
            self.app_datasets(a, d);
        }
        let path = format!("templates/{}.yaml.j2", a.spec.template);
        if self.snapshot.get(&path).is_none() {
            let known: Vec<&str> = self
                .snapshot
                .files
                .iter()
                .filter_map(|f| {
                    f.path
                        .strip_prefix("templates/")
                        .and_then(|p| p.strip_suffix(".yaml.j2"))
                })
                .collect();
            d.push(
                unknown(
                    Code::UnknownTemplate,
                    "template",
                    &a.spec.template,
                    a.at("spec.template"),
                    known.iter().copied(),
                )
                .hint(
                    match did_you_mean(&a.spec.template, known.iter().copied()) {
                        Some(s) => format!(
                            "did you mean `{s}`? templates live in `templates/<name>.yaml.j2`"
                        ),
                        None => format!("add `{path}` to the platform repository"),
                    },
                ),
            );
        }
        if let Some(it) = &a.spec.instance_type {
            self.instance_type_use(it, project, a.at("spec.instanceType"), d);
        }
        if let Some(p) = project {
            let lives = self.placement(p);
            for (i, c) in a.spec.clusters.iter().enumerate() {
                let at = a.at(&format!("spec.clusters[{i}]"));
                if !self.clusters().contains(&c.as_str()) {
                    d.push(unknown(
                        Code::UnknownCluster,
                        "cluster",
                        c,
                        at,
                        self.clusters().into_iter(),
                    ));
                } else if !lives.contains(&c.as_str()) {
                    d.push(
                        Diagnostic::new(
                            Code::GrantCluster,
                            format!(
                                "project `{}` does not live on cluster `{c}`: the app cannot run there",
                                a.spec.project
                            ),
                        )
                        .at(at)
                        .hint(format!("the project lives on {}", list(&lives))),
                    );
                }
            }
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
fn suspicious(text: &str, what: &str, at: Label, d: &mut Diagnostics) {
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

fn image_names<S>(o: &Object<S>, base: &str, images: &[crate::model::Image], d: &mut Diagnostics) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, img) in images.iter().enumerate() {
        let at = o.at(&format!("{base}[{i}].name"));
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
