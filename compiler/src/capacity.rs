//! GPU capacity: per cluster and pool, what each project is guaranteed, may lend, may reach by
//! borrowing and may take per user, and the standing GPU demand the platform itself declares
//! (ModelRollouts and Apps) against it. `plinth plan` compares two of them ([`diff`]),
//! `plinth report` draws one.
//!
//! Pure, computed from [`Specs`] with the helpers `lower::gpu` lowers by (placement, spare)
//! and the rules of `lower::rules` (per-user limit, declared users), so the figures are those of the Kueue objects built:
//! - **guaranteed**: the allocation (`nominalQuota` of ClusterQueue or Cohort `<project>.<pool>`);
//! - **lendable**: what the cohort may borrow of it (`lendingLimit`, else all of it; nothing
//!   without a cohort);
//! - **max**: guaranteed plus what it may borrow — the pool's spare in the cluster (the
//!   Cohort's own quota) and what the other allocations lend, at most its `borrowingLimit`
//!   (none: unlimited), never more than the pool's capacity there;
//! - **per user**: the lower of the pool's `perUserGpu` and the project's `perUserQuota.gpu`,
//!   when the project declares users (otherwise no per-user queues exist);
//! - **demand**: GPUs of the instance type (or `resources.gpu`) × most replicas × versions
//!   (both versions of a canary, blue-green or shadow run) for a ModelRollout; × `replicas`
//!   of its values (1 when absent) for an App; on every cluster the workload runs on.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::load::Snapshot;
use crate::lower::{Ctx, Index, gpu, rules};
use crate::specs::Specs;

/// The specs of a snapshot, read again (a cached build keeps only the Platform's).
pub fn specs_of(snapshot: &Snapshot, yaml: crate::parse::YamlLimits) -> Specs {
    let (docs, _) = crate::parse::parse(snapshot, yaml);
    crate::resolve::resolve(&docs).0
}

/// The capacity of every pool of every cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Capacity {
    /// Cluster → pool → figures.
    pub clusters: BTreeMap<String, BTreeMap<String, Pool>>,
}

/// One pool in one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pool {
    /// Extended resource (`nvidia.com/gpu`, a MIG profile).
    pub resource: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
    /// GPUs of the pool in the cluster.
    pub capacity: u32,
    /// Sum of the allocations of the projects living there.
    pub allocated: u32,
    /// Capacity no allocation holds (the Cohort's own quota when the pool has a cohort).
    pub spare: u32,
    /// Per project living there with an allocation or demand on the pool.
    pub projects: BTreeMap<String, Share>,
}

/// One project's share of a pool in a cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Share {
    /// Whether the project has an allocation on the pool (demand without one is unqueued).
    pub allocated: bool,
    pub guaranteed: u32,
    pub lendable: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub borrowing_limit: Option<u32>,
    /// Most GPUs reachable with borrowing.
    pub max: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_user: Option<u32>,
    /// Users with a queue of their own.
    pub users: usize,
    /// Standing demand: the sum of `workloads`.
    pub demand: u32,
    pub workloads: Vec<Workload>,
}

impl Share {
    /// GPUs the project's ModelRollouts need.
    pub fn serving(&self) -> u32 {
        self.workloads
            .iter()
            .filter(|w| w.kind == WorkloadKind::ModelRollout)
            .map(|w| w.gpus)
            .sum()
    }
}

/// What declares standing GPU demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
pub enum WorkloadKind {
    ModelRollout,
    App,
}

impl WorkloadKind {
    /// `rollout`, `app`: how messages name it.
    pub fn noun(self) -> &'static str {
        match self {
            WorkloadKind::ModelRollout => "rollout",
            WorkloadKind::App => "app",
        }
    }
}

/// One workload's standing demand on a pool.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workload {
    pub kind: WorkloadKind,
    pub name: String,
    /// GPUs per replica.
    pub gpus_each: u32,
    /// Most replicas per version.
    pub replicas: u32,
    /// Versions running side by side.
    pub versions: u32,
    /// `gpus_each × replicas × versions`.
    pub gpus: u32,
}

/// The GPU pool and GPUs per replica of an instance type or explicit resources.
/// Instance types by name, with the pool defining each ([`crate::check::semantic::instance_types`]).
type InstanceTypes<'a> =
    BTreeMap<&'a str, (&'a crate::model::common::InstanceType, Option<&'a str>)>;

/// The pool a workload of this instance type (else of this pool) may ask GPUs of, whether or
/// not it asks for any.
fn pool_of<'a>(
    its: &InstanceTypes<'a>,
    instance_type: Option<&str>,
    quota: Option<&'a str>,
) -> Option<&'a str> {
    match instance_type {
        Some(t) => its.get(t).and_then(|(_, pool)| *pool),
        None => quota,
    }
}

fn gpu_of(
    its: &InstanceTypes<'_>,
    instance_type: Option<&str>,
    resources: Option<(u32, Option<&str>)>,
) -> Option<(String, u32)> {
    if let Some(name) = instance_type {
        let (t, pool) = its.get(name)?;
        return pool.filter(|_| t.gpu > 0).map(|p| (p.to_owned(), t.gpu));
    }
    let (gpu, pool) = resources?;
    pool.filter(|_| gpu > 0).map(|p| (p.to_owned(), gpu))
}

impl Capacity {
    /// The capacity model of `specs` (empty without a Platform).
    pub fn of(specs: &Specs) -> Capacity {
        let its = crate::check::semantic::instance_types(specs);
        Capacity::computed(specs, None, &its)
    }

    /// The capacity of `specs` from `base`, the capacity of a revision with the same files
    /// and view graph whose spec files `changed` (neither with a document that did not type:
    /// so every project lives where it did, every allocation and workload names the pool it
    /// did). Only the pools an edit can reach are computed again: those allocating to a changed
    /// project (its per-user limit and users) and those a changed rollout or App may ask GPUs
    /// of. `None` when the Platform or a pool changed (then compute it whole).
    pub fn against(
        specs: &Specs,
        base: &Capacity,
        changed: &crate::load::Changed,
    ) -> Option<Capacity> {
        let platform = specs.platform.as_ref()?;
        if platform.in_changed(changed) || specs.gpu_quotas.values().any(|q| q.in_changed(changed))
        {
            return None;
        }
        let its = crate::check::semantic::instance_types(specs);
        let projects: std::collections::HashSet<&str> =
            crate::specs::changed_names(&specs.projects, changed).collect();
        let mut reached: BTreeSet<&str> = BTreeSet::new();
        if !projects.is_empty() {
            for (name, q) in &specs.gpu_quotas {
                if q.spec
                    .allocations
                    .iter()
                    .any(|a| projects.contains(a.project.as_str()))
                {
                    reached.insert(name);
                }
            }
        }
        for r in specs.rollouts.values().filter(|r| r.in_changed(changed)) {
            let (it, quota) = (r.spec.instance_type.as_deref(), r.spec.gpu_quota.as_deref());
            reached.extend(pool_of(&its, it, quota));
        }
        for a in specs.apps.values().filter(|a| a.in_changed(changed)) {
            reached.extend(pool_of(&its, a.spec.instance_type.as_deref(), None));
        }
        let mut out = base.clone();
        if reached.is_empty() {
            return Some(out);
        }
        let fresh = Capacity::computed(specs, Some(&reached), &its);
        for (cluster, pools) in fresh.clusters {
            let at = out.clusters.entry(cluster).or_default();
            at.retain(|name, _| !reached.contains(name.as_str()));
            at.extend(pools);
        }
        Some(out)
    }

    /// The capacity of the pools `only` names (every pool when `None`); `its`: the instance
    /// types of `specs` (made once, not per workload).
    fn computed(specs: &Specs, only: Option<&BTreeSet<&str>>, its: &InstanceTypes<'_>) -> Capacity {
        let mut out = Capacity::default();
        let Some(platform) = &specs.platform else {
            return out;
        };
        let snapshot = Snapshot::default();
        let index = Index::new(specs);
        for cluster in &platform.spec.clusters {
            let cx = Ctx {
                specs,
                platform: &platform.spec,
                cluster,
                snapshot: &snapshot,
                index: &index,
            };
            let mut pools: BTreeMap<String, Pool> = BTreeMap::new();
            for (name, q) in &specs.gpu_quotas {
                if cx.has_pool(name) && only.is_none_or(|o| o.contains(name.as_str())) {
                    pools.insert(name.clone(), pool(&cx, &q.spec));
                }
            }
            let asked = |pool: &str| pools.contains_key(pool);
            let demand: Vec<(String, String, Workload)> = rollout_demand(&cx, its, &asked)
                .into_iter()
                .chain(app_demand(&cx, its, &asked))
                .collect();
            let mut add = |pool: &str, project: &str, w: Workload| {
                if let Some(p) = pools.get_mut(pool) {
                    let share = p.projects.entry(project.to_owned()).or_default();
                    share.demand = share.demand.saturating_add(w.gpus);
                    share.workloads.push(w);
                }
            };
            for (project, pool, w) in demand {
                add(&pool, &project, w);
            }
            out.clusters.insert(cluster.name.clone(), pools);
        }
        out
    }

    /// The figures of one project's share, if the project has one there.
    pub fn share(&self, cluster: &str, pool: &str, project: &str) -> Option<&Share> {
        self.clusters.get(cluster)?.get(pool)?.projects.get(project)
    }
}

/// A pool's figures on one cluster: capacity, allocations, and each hosted project's share.
fn pool(cx: &Ctx<'_>, q: &crate::model::GpuQuotaSpec) -> Pool {
    let cluster = cx.cluster;
    let hosted: Vec<&crate::model::gpu::Allocation> = q
        .allocations
        .iter()
        .filter(|a| cx.hosts(&a.project))
        .collect();
    let capacity = q.capacity_in(&cluster.name);
    let spare = u32::try_from(gpu::spare(cx, q)).unwrap_or(u32::MAX);
    let lendable = |a: &crate::model::gpu::Allocation| {
        if q.cohort.is_some() {
            a.lending_limit.unwrap_or(a.gpu).min(a.gpu)
        } else {
            0
        }
    };
    // What every hosted allocation lends, so that each one's "the others" is a subtraction
    // (a pool allocates to thousands of projects).
    let lent: u64 = hosted.iter().map(|a| u64::from(lendable(a))).sum();
    let mut projects = BTreeMap::new();
    for a in &hosted {
        if projects.contains_key(&a.project) {
            continue;
        }
        let others = lent - u64::from(lendable(a));
        let borrowable = if q.cohort.is_some() {
            let pool = others + u64::from(spare);
            a.borrowing_limit.map_or(pool, |b| pool.min(u64::from(b)))
        } else {
            0
        };
        let max = (u64::from(a.gpu) + borrowable).min(u64::from(capacity.max(a.gpu)));
        let users = rules::declared_users(cx, &a.project);
        projects.insert(
            a.project.clone(),
            Share {
                allocated: true,
                guaranteed: a.gpu,
                lendable: lendable(a),
                borrowing_limit: q.cohort.as_ref().and(a.borrowing_limit),
                max: u32::try_from(max).unwrap_or(u32::MAX),
                per_user: rules::per_user_limit(cx, q, &a.project).filter(|_| !users.is_empty()),
                users: users.len(),
                demand: 0,
                workloads: Vec::new(),
            },
        );
    }
    Pool {
        resource: q.pool.resource_name.clone(),
        display_name: q.display_name.clone(),
        model: q.pool.model.clone(),
        cohort: q.cohort.clone(),
        capacity,
        allocated: hosted.iter().map(|a| a.gpu).sum(),
        spare,
        projects,
    }
}

/// The standing GPU demand of the rollouts on this cluster: (project, pool, workload).
fn rollout_demand(
    cx: &Ctx<'_>,
    its: &InstanceTypes<'_>,
    asked: &dyn Fn(&str) -> bool,
) -> Vec<(String, String, Workload)> {
    let specs = cx.specs;
    let mut out = Vec::new();
    let mut add = |pool: &str, project: &str, w: Workload| {
        out.push((project.to_owned(), pool.to_owned(), w));
    };
    for (name, r) in &specs.rollouts {
        let s = &r.spec;
        if !cx.hosts(&s.project) {
            continue;
        }
        let Some((pool, each)) = gpu_of(
            its,
            s.instance_type.as_deref(),
            s.resources
                .as_ref()
                .map(|res| (res.gpu, s.gpu_quota.as_deref())),
        ) else {
            continue;
        };
        if !asked(&pool) {
            continue;
        }
        let versions = s
            .traffic
            .as_ref()
            .map_or(1, |t| u32::try_from(t.versions.len().max(1)).unwrap_or(1));
        let replicas = s.max_replicas();
        add(
            &pool,
            &s.project,
            Workload {
                kind: WorkloadKind::ModelRollout,
                name: name.clone(),
                gpus_each: each,
                replicas,
                versions,
                gpus: each.saturating_mul(replicas).saturating_mul(versions),
            },
        );
    }
    out
}

/// The standing GPU demand of the Apps on this cluster: (project, pool, workload).
fn app_demand(
    cx: &Ctx<'_>,
    its: &InstanceTypes<'_>,
    asked: &dyn Fn(&str) -> bool,
) -> Vec<(String, String, Workload)> {
    let specs = cx.specs;
    let cluster = cx.cluster;
    let mut out = Vec::new();
    let mut add = |pool: &str, project: &str, w: Workload| {
        out.push((project.to_owned(), pool.to_owned(), w));
    };
    for (name, a) in &specs.apps {
        let s = &a.spec;
        if !cx.hosts(&s.project) || (!s.clusters.is_empty() && !s.clusters.contains(&cluster.name))
        {
            continue;
        }
        let Some((pool, each)) = gpu_of(its, s.instance_type.as_deref(), None) else {
            continue;
        };
        if !asked(&pool) {
            continue;
        }
        let replicas = s
            .values
            .get("replicas")
            .and_then(serde_json::Value::as_u64)
            .map_or(1, |r| u32::try_from(r).unwrap_or(u32::MAX));
        add(
            &pool,
            &s.project,
            Workload {
                kind: WorkloadKind::App,
                name: name.clone(),
                gpus_each: each,
                replicas,
                versions: 1,
                gpus: each.saturating_mul(replicas),
            },
        );
    }
    out
}

/// A figure on both sides of a change (`None`: absent there).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Figure {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub before: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<u32>,
}

impl Figure {
    fn of(before: Option<u32>, after: Option<u32>) -> Figure {
        Figure { before, after }
    }
    pub fn changed(&self) -> bool {
        self.before != self.after
    }
    /// `16`, `16 → 14`, `– → 4`.
    pub fn text(&self) -> String {
        let s = |v: Option<u32>| v.map_or_else(|| "–".to_owned(), |v| v.to_string());
        if self.changed() {
            format!("{} → {}", s(self.before), s(self.after))
        } else {
            s(self.after)
        }
    }
}

/// One project's figures on a pool before and after.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ShareDiff {
    pub project: String,
    pub guaranteed: Figure,
    pub lendable: Figure,
    pub max: Figure,
    pub per_user: Figure,
    pub demand: Figure,
}

/// One pool in one cluster before and after.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolDiff {
    pub cluster: String,
    pub pool: String,
    pub resource: String,
    pub capacity: Figure,
    pub allocated: Figure,
    pub spare: Figure,
    /// Projects whose figures change, by name.
    pub projects: Vec<ShareDiff>,
    /// Every project's guarantee on both sides (for charts).
    pub guaranteed: BTreeMap<String, Figure>,
}

/// How much a finding matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Warning,
    /// Serving workloads lose their guarantee: approval needed.
    Destructive,
}

/// A consequence of a change a reviewer should see.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub severity: Severity,
    pub cluster: String,
    pub pool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// ModelRollouts concerned (destructive findings), by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rollouts: Vec<String>,
    /// Apps sharing the guarantee (destructive findings), by name.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub apps: Vec<String>,
    pub message: String,
    /// The object whose change needs the approval (`Kind/name`), set by the plan.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

/// The GPU consequences of a change.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Diff {
    /// Pools whose figures change, by cluster and name.
    pub pools: Vec<PoolDiff>,
    /// Most severe first.
    pub findings: Vec<Finding>,
}

impl Diff {
    pub fn is_empty(&self) -> bool {
        self.pools.is_empty() && self.findings.is_empty()
    }
}

fn names(ws: &[&Workload]) -> String {
    let parts: Vec<String> = ws
        .iter()
        .map(|w| format!("{} `{}`", w.kind.noun(), w.name))
        .collect();
    match parts.as_slice() {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn findings_of(
    cluster: &str,
    pool: &str,
    project: &str,
    b: Option<&Share>,
    a: &Share,
    out: &mut Vec<Finding>,
) {
    let at = format!("`{pool}` in `{cluster}`");
    let before_fit = b.is_some_and(|b| b.demand <= b.guaranteed);
    let was = b.map_or_else(|| "none".to_owned(), |b| b.guaranteed.to_string());
    let ws: Vec<&Workload> = a.workloads.iter().collect();
    let needs = if ws.len() == 1 {
        format!("{} needs {} GPUs of {at}", names(&ws), a.demand)
    } else {
        format!("{} need {} GPUs of {at} together", names(&ws), a.demand)
    };
    if a.demand > a.guaranteed {
        // Serving that ran within the guarantee before and runs beyond it now.
        let kept: Vec<String> = a
            .workloads
            .iter()
            .filter(|w| w.kind == WorkloadKind::ModelRollout)
            .filter(|w| {
                b.is_some_and(|b| {
                    b.workloads
                        .iter()
                        .any(|x| x.kind == w.kind && x.name == w.name)
                })
            })
            .map(|w| w.name.clone())
            .collect();
        let message = format!(
            "{needs} but `{project}` is guaranteed {} after this change (was {was}): {} will depend on borrowing and can be preempted",
            a.guaranteed,
            if ws.len() == 1 { "it" } else { "they" }
        );
        if before_fit && !kept.is_empty() {
            out.push(Finding {
                severity: Severity::Destructive,
                cluster: cluster.to_owned(),
                pool: pool.to_owned(),
                project: Some(project.to_owned()),
                rollouts: kept,
                apps: a
                    .workloads
                    .iter()
                    .filter(|w| w.kind == WorkloadKind::App)
                    .map(|w| w.name.clone())
                    .collect(),
                message,
                object: None,
            });
        } else if before_fit || b.is_none_or(|b| b.demand < a.demand || b.guaranteed > a.guaranteed)
        {
            out.push(Finding {
                severity: Severity::Warning,
                cluster: cluster.to_owned(),
                pool: pool.to_owned(),
                project: Some(project.to_owned()),
                rollouts: Vec::new(),
                apps: Vec::new(),
                message,
                object: None,
            });
        }
    }
    let before_reach = b.is_none_or(|b| b.demand <= b.max);
    if a.demand > a.max && (before_reach || b.is_some_and(|b| b.max > a.max || b.demand < a.demand))
    {
        out.push(Finding {
            severity: Severity::Warning,
            cluster: cluster.to_owned(),
            pool: pool.to_owned(),
            project: Some(project.to_owned()),
            rollouts: Vec::new(),
            apps: Vec::new(),
            message: format!(
                "{needs} but `{project}` can reach at most {} even by borrowing: part of it can never run",
                a.max
            ),
            object: None,
        });
    }
}

/// What changes between two capacity models, and what it means.
pub fn diff(base: &Capacity, head: &Capacity) -> Diff {
    let mut out = Diff::default();
    let empty = BTreeMap::new();
    let clusters: BTreeSet<&String> = base.clusters.keys().chain(head.clusters.keys()).collect();
    for cluster in clusters {
        let bp = base.clusters.get(cluster).unwrap_or(&empty);
        let hp = head.clusters.get(cluster).unwrap_or(&empty);
        let pools: BTreeSet<&String> = bp.keys().chain(hp.keys()).collect();
        for pool in pools {
            let (b, h) = (bp.get(pool), hp.get(pool));
            // A pool the same on both sides changes no figure and gives no finding (every
            // finding compares a share or the pool with what it was).
            if b.is_some() && b == h {
                continue;
            }
            let fig = |f: fn(&Pool) -> u32| Figure::of(b.map(f), h.map(f));
            let mut d = PoolDiff {
                cluster: cluster.clone(),
                pool: pool.clone(),
                resource: h.or(b).map(|p| p.resource.clone()).unwrap_or_default(),
                capacity: fig(|p| p.capacity),
                allocated: fig(|p| p.allocated),
                spare: fig(|p| p.spare),
                projects: Vec::new(),
                guaranteed: BTreeMap::new(),
            };
            let projects: BTreeSet<&String> = b
                .into_iter()
                .chain(h)
                .flat_map(|p| p.projects.keys())
                .collect();
            for project in projects {
                let bs = b.and_then(|p| p.projects.get(project));
                let hs = h.and_then(|p| p.projects.get(project));
                let f = |g: fn(&Share) -> Option<u32>| Figure::of(bs.and_then(g), hs.and_then(g));
                let s = ShareDiff {
                    project: project.clone(),
                    guaranteed: f(|s| s.allocated.then_some(s.guaranteed)),
                    lendable: f(|s| s.allocated.then_some(s.lendable)),
                    max: f(|s| s.allocated.then_some(s.max)),
                    per_user: f(|s| s.per_user),
                    demand: f(|s| Some(s.demand)),
                };
                if s.guaranteed.before.is_some() || s.guaranteed.after.is_some() {
                    d.guaranteed.insert(project.clone(), s.guaranteed);
                }
                if [s.guaranteed, s.lendable, s.max, s.per_user, s.demand]
                    .iter()
                    .any(Figure::changed)
                {
                    d.projects.push(s);
                }
                if let Some(a) = hs {
                    findings_of(cluster, pool, project, bs, a, &mut out.findings);
                }
            }
            if let Some(h) = h
                && h.allocated > h.capacity
                && b.is_none_or(|b| b.allocated <= b.capacity)
            {
                out.findings.push(Finding {
                    severity: Severity::Warning,
                    cluster: cluster.clone(),
                    pool: pool.clone(),
                    project: None,
                    rollouts: Vec::new(),
                    apps: Vec::new(),
                    message: format!(
                        "`{pool}` in `{cluster}` is overcommitted after this change: {} GPUs are guaranteed of {}",
                        h.allocated, h.capacity
                    ),
                    object: None,
                });
            }
            if [d.capacity, d.allocated, d.spare]
                .iter()
                .any(Figure::changed)
                || !d.projects.is_empty()
            {
                out.pools.push(d);
            }
        }
    }
    // Most severe first; otherwise in the order found (cluster, pool, project).
    out.findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use crate::load::MemSource;

    use crate::generate::testing::{Files, file_with, specs_of as specs_of_files};

    /// After edits of what the capacity reads of projects and rollouts (keeping every name,
    /// reference and file), the capacity taken from the base's equals the capacity computed
    /// whole; an edit of a pool or the Platform is computed whole.
    #[test]
    fn a_capacity_against_its_base_equals_the_whole_one() {
        let mut files: Files = crate::generate::platform(120, 2).into_iter().collect();
        let mut base = Capacity::of(&specs_of_files(&files));
        let pool = file_with(&files, "gpu/", "allocations:");
        let allocated = files[&pool]
            .lines()
            .find_map(|l| l.trim_start().strip_prefix("- project: "))
            .unwrap()
            .to_owned();
        let project = file_with(&files, "projects/", &format!("name: {allocated}\n"));
        let rollout = file_with(&files, "models/", "instanceType: gpu-");
        let edits: [(&str, &str, String); 3] = [
            (
                "per-user limit",
                &project,
                "spec:\n  perUserQuota:\n    gpu: 1\n".to_owned(),
            ),
            ("rollout replicas", &rollout, "replicas: 3\n".to_owned()),
            ("lines moved", &project, String::new()),
        ];
        for (what, path, with) in edits {
            let before = files[path].clone();
            let after = match what {
                "per-user limit" => before.replace("spec:\n", &with),
                "rollout replicas" => before.replace("replicas: 1\n", &with),
                _ => format!("# moved\n{before}"),
            };
            files.insert(path.to_owned(), after);
            let specs = specs_of_files(&files);
            let changed = crate::load::Changed::from_iter([std::sync::Arc::from(path)]);
            let whole = Capacity::of(&specs);
            if what != "lines moved" {
                assert_ne!(whole, base, "{what}: the edit changes the capacity");
            }
            let taken = Capacity::against(&specs, &base, &changed).expect("taken");
            assert_eq!(taken, whole, "{what}");
            base = whole;
        }
        for dir in ["gpu/", "plinth.yaml"] {
            let path = file_with(&files, dir, "\n");
            let mut edited = files.clone();
            edited.insert(path.clone(), format!("# moved\n{}", files[&path]));
            let changed = crate::load::Changed::from_iter([std::sync::Arc::from(path.as_str())]);
            assert!(Capacity::against(&specs_of_files(&edited), &base, &changed).is_none());
        }
    }

    /// Two clusters; pool `p` (20 GPUs, 10 in `c2`) in cohort `shared`; projects `a` (on both
    /// clusters), `b` and `c` (on `c1`).
    const PLATFORM: &str = "apiVersion: plinth.dev/v1alpha1
kind: Platform
metadata:
  name: t
spec:
  clusters:
    - name: c1
      kubernetesVersion: \"1.32\"
      provider: aws
      gpuPools: [p]
    - name: c2
      kubernetesVersion: \"1.32\"
      provider: aws
      gpuPools: [p]
  defaults:
    clusters: [c1]
  serving:
    mesh: istio
    kserve:
      restrictedStorageInitializer: true
";

    const PROJECTS: &str = "apiVersion: plinth.dev/v1alpha1
kind: Project
metadata:
  name: a
spec:
  owners: [ann@example.org, al@example.org]
  perUserQuota:
    gpu: 1
  instanceTypes: [p-2]
  clusters: [c1, c2]
---
apiVersion: plinth.dev/v1alpha1
kind: Project
metadata:
  name: b
spec:
  owners: [bo@example.org]
  instanceTypes: [p-1]
---
apiVersion: plinth.dev/v1alpha1
kind: Project
metadata:
  name: c
spec:
  owners: [cy@example.org]
";

    fn pool(allocations: &str) -> String {
        format!(
            "apiVersion: plinth.dev/v1alpha1
kind: GpuQuota
metadata:
  name: p
spec:
  pool:
    capacity: 20
    capacityByCluster:
      c2: 10
    gpusPerNode: 4
  instanceTypes:
    - {{name: p-1, gpu: 1, cpu: 4, memory: 16Gi}}
    - {{name: p-2, gpu: 2, cpu: 8, memory: 32Gi}}
  cohort: shared
  perUserGpu: 2
  allocations:
{allocations}"
        )
    }

    const ALLOCATIONS: &str = "    - {project: a, gpu: 8, borrowingLimit: 4, lendingLimit: 2}
    - {project: b, gpu: 6, lendingLimit: 6}
    - {project: c, gpu: 2, borrowingLimit: 3, lendingLimit: 0}
";

    /// Rollout `r` of `a`: 2 GPUs × 2 replicas × 2 versions; app `nb` of `b`: 1 GPU.
    const WORKLOADS: &str = "apiVersion: plinth.dev/v1alpha1
kind: ModelRollout
metadata:
  name: r
spec:
  project: a
  runtime: kserve
  model:
    format: pytorch
  instanceType: p-2
  replicas: 2
  traffic:
    strategy: canary
    versions:
      - {name: v1, storageUri: \"s3://m/1\", weight: 90}
      - {name: v2, storageUri: \"s3://m/2\", weight: 10}
";

    fn built(allocations: &str, workloads: &str) -> crate::Built {
        let mut src = MemSource::new()
            .with("plinth.yaml", PLATFORM)
            .with("projects.yaml", PROJECTS)
            .with("gpu.yaml", pool(allocations).as_str());
        if !workloads.is_empty() {
            src = src.with("models.yaml", workloads);
        }
        let b = crate::build_source(&src, &crate::Options::default()).unwrap();
        let errors: Vec<String> = b
            .checked
            .diagnostics
            .clone()
            .into_sorted()
            .into_iter()
            .filter(|d| d.is_error())
            .map(|d| d.message)
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
        b
    }

    #[test]
    fn figures_of_a_cohort_with_lending_limits_by_hand() {
        let c = Capacity::of(&built(ALLOCATIONS, WORKLOADS).checked.specs);
        let p = &c.clusters["c1"]["p"];
        // 8 + 6 + 2 of 20 promised; 4 spare in the cohort.
        assert_eq!((p.capacity, p.allocated, p.spare), (20, 16, 4));
        let a = &p.projects["a"];
        // Others lend 6 (b, all of it) + 0 (c) and the cohort holds 4: 10, capped at 4.
        assert_eq!((a.guaranteed, a.lendable, a.max), (8, 2, 12));
        // Two owners: per-user queues, at the project's 1 (below the pool's 2).
        assert_eq!((a.per_user, a.users), (Some(1), 2));
        // Canary: both versions run 2 replicas of 2 GPUs.
        assert_eq!(a.demand, 8);
        assert_eq!(a.workloads[0].versions, 2);
        let b = &p.projects["b"];
        // No borrowing limit: all the others lend (2 of a, 0 of c) and the spare (4).
        assert_eq!(
            (b.guaranteed, b.lendable, b.max, b.borrowing_limit),
            (6, 6, 12, None)
        );
        assert_eq!(b.per_user, Some(2));
        let c1 = &p.projects["c"];
        // Lends nothing; may borrow 3 of the 12 lent to it.
        assert_eq!((c1.guaranteed, c1.lendable, c1.max), (2, 0, 5));
        // `c2`: only `a` lives there, 8 of 10; it can borrow the 2 spare only.
        let p2 = &c.clusters["c2"]["p"];
        assert_eq!((p2.capacity, p2.allocated, p2.spare), (10, 8, 2));
        assert_eq!(p2.projects.keys().collect::<Vec<_>>(), ["a"]);
        assert_eq!((p2.projects["a"].max, p2.projects["a"].demand), (10, 8));
    }

    /// A finding compares with what was: `a` needing more than it is guaranteed is reported
    /// when it becomes so; a pool the same on both sides gives no figure and no finding, even
    /// while a share of it needs more than it is guaranteed.
    #[test]
    fn a_pool_the_same_on_both_sides_gives_nothing() {
        let base = Capacity::of(&built(ALLOCATIONS, WORKLOADS).checked.specs);
        let mut tight = base.clone();
        let share = tight.clusters.get_mut("c1").unwrap().get_mut("p").unwrap();
        let share = share.projects.get_mut("a").unwrap();
        share.demand = share.guaranteed + 2;
        assert_eq!(diff(&base, &tight).findings.len(), 1);
        assert!(diff(&tight, &tight).is_empty());
        // Only `c2`'s pool changes: `c1`'s, tight on both sides, says nothing.
        let mut moved = tight.clone();
        moved
            .clusters
            .get_mut("c2")
            .unwrap()
            .get_mut("p")
            .unwrap()
            .capacity += 2;
        let d = diff(&tight, &moved);
        assert!(d.findings.is_empty(), "{d:?}");
        let pools: Vec<_> = d
            .pools
            .iter()
            .map(|p| (p.cluster.as_str(), p.pool.as_str()))
            .collect();
        assert_eq!(pools, [("c2", "p")]);
    }

    #[test]
    fn the_model_agrees_with_the_kueue_objects_built() {
        let b = built(ALLOCATIONS, WORKLOADS);
        let c = Capacity::of(&b.checked.specs);
        let lowered = b.lowered.unwrap();
        for (cluster, pools) in &c.clusters {
            let objs = &lowered.clusters[cluster].manifests;
            let find = |kind: &str, name: &str| {
                objs.iter()
                    .find(|m| m.key.kind == kind && m.key.name == name)
                    .map(|m| &m.object)
            };
            for (pool, p) in pools {
                // The cohort's nominal quota for the pool's flavor is the spare.
                let cohort = find("Cohort", "shared").unwrap();
                let flavors = &cohort["spec"]["resourceGroups"][0]["flavors"];
                let spare = flavors
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|f| f["name"] == pool.as_str())
                    .unwrap()["resources"][0]["nominalQuota"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                assert_eq!(spare, p.spare.to_string(), "{cluster}");
                for (project, s) in &p.projects {
                    // Per-user projects hold their allocation on a Cohort, others on the queue.
                    let kind = if s.per_user.is_some() {
                        "Cohort"
                    } else {
                        "ClusterQueue"
                    };
                    let q = find(kind, &format!("{project}.{pool}")).unwrap();
                    let gpu = q["spec"]["resourceGroups"][0]["flavors"][0]["resources"][2].clone();
                    assert_eq!(gpu["name"], "nvidia.com/gpu");
                    assert_eq!(gpu["nominalQuota"], s.guaranteed.to_string(), "{project}");
                    assert_eq!(
                        gpu.get("borrowingLimit").and_then(|v| v.as_str()),
                        s.borrowing_limit.map(|v| v.to_string()).as_deref()
                    );
                    // The backstop allows at least what Kueue may admit.
                    let rq = objs
                        .iter()
                        .find(|m| {
                            m.key.kind == "ResourceQuota"
                                && m.key.namespace.as_deref() == Some(project)
                                && m.key.name == "gpu-nvidia-com-gpu"
                        })
                        .unwrap();
                    let hard: u32 = rq.object["spec"]["hard"]["requests.nvidia.com/gpu"]
                        .as_str()
                        .unwrap()
                        .parse()
                        .unwrap();
                    assert!(s.max <= hard, "{project}: {} > {hard}", s.max);
                }
            }
        }
    }

    #[test]
    fn moving_gpus_between_projects_shows_both_and_keeps_the_rest_in_the_chart() {
        let base = Capacity::of(&built(ALLOCATIONS, WORKLOADS).checked.specs);
        // 2 GPUs from b to a.
        let moved = ALLOCATIONS
            .replace("project: a, gpu: 8", "project: a, gpu: 10")
            .replace(
                "project: b, gpu: 6, lendingLimit: 6",
                "project: b, gpu: 4, lendingLimit: 4",
            );
        let head = Capacity::of(&built(&moved, WORKLOADS).checked.specs);
        let d = diff(&base, &head);
        let c1 = &d.pools[0];
        assert_eq!((c1.cluster.as_str(), c1.allocated.changed()), ("c1", false));
        let a = c1.projects.iter().find(|s| s.project == "a").unwrap();
        assert_eq!(a.guaranteed, Figure::of(Some(8), Some(10)));
        // a borrows at most 4: 14 (b lends 4 now, the cohort holds 4).
        assert_eq!(a.max, Figure::of(Some(12), Some(14)));
        let b = c1.projects.iter().find(|s| s.project == "b").unwrap();
        assert_eq!(b.guaranteed.text(), "6 → 4");
        // b: a lends 2, c 0, spare 4 → 4 + 6 = 10.
        assert_eq!(b.max.text(), "12 → 10");
        // c's reach is capped by its limit: unchanged, so not in the table, but in the chart.
        assert!(c1.projects.iter().all(|s| s.project != "c"));
        assert_eq!(c1.guaranteed["c"], Figure::of(Some(2), Some(2)));
        // c2: a's allocation 10 of 10 now, no spare.
        let c2 = &d.pools[1];
        assert_eq!(
            (c2.cluster.as_str(), c2.spare.text()),
            ("c2", "2 → 0".to_owned())
        );
        assert!(d.findings.is_empty(), "{:#?}", d.findings);
        // Unchanged: nothing to say.
        assert!(diff(&base, &base).is_empty());
    }

    #[test]
    fn serving_that_loses_its_guarantee_is_destructive_and_other_demand_a_warning() {
        // The check refuses rollouts above their allocation (E135), so a rollout loses its
        // guarantee when other standing demand (an app) shares it: modelled on the figures.
        let base = Capacity::of(&built(ALLOCATIONS, WORKLOADS).checked.specs);
        let notebook = Workload {
            kind: WorkloadKind::App,
            name: "nb".to_owned(),
            gpus_each: 2,
            replicas: 1,
            versions: 1,
            gpus: 2,
        };
        let mut head = base.clone();
        let a = head.clusters.get_mut("c1").unwrap().get_mut("p").unwrap();
        let share = a.projects.get_mut("a").unwrap();
        share.workloads.push(notebook.clone());
        share.demand += 2;
        let d = diff(&base, &head);
        assert_eq!(d.findings.len(), 1, "{:#?}", d.findings);
        let f = &d.findings[0];
        assert_eq!(
            (f.severity, f.rollouts.as_slice()),
            (Severity::Destructive, &["r".to_owned()][..])
        );
        assert_eq!(
            f.message,
            "rollout `r` and app `nb` need 10 GPUs of `p` in `c1` together but `a` is guaranteed 8 after this change (was 8): they will depend on borrowing and can be preempted"
        );
        // Demand of apps alone beyond the guarantee: a warning; beyond reach: a second one.
        let mut base2 = base.clone();
        let b2 = base2.clusters.get_mut("c1").unwrap().get_mut("p").unwrap();
        b2.projects.get_mut("a").unwrap().workloads.clear();
        b2.projects.get_mut("a").unwrap().demand = 0;
        let mut head2 = base2.clone();
        let h2 = head2.clusters.get_mut("c1").unwrap().get_mut("p").unwrap();
        let share = h2.projects.get_mut("a").unwrap();
        share.workloads.push(Workload {
            replicas: 7,
            gpus: 14,
            ..notebook
        });
        share.demand = 14;
        let d = diff(&base2, &head2);
        let msgs: Vec<(Severity, &str)> = d
            .findings
            .iter()
            .map(|f| (f.severity, f.message.as_str()))
            .collect();
        assert_eq!(msgs.len(), 2, "{msgs:#?}");
        assert!(msgs.iter().all(|(s, _)| *s == Severity::Warning));
        assert!(
            msgs[0]
                .1
                .starts_with("app `nb` needs 14 GPUs of `p` in `c1` but `a` is guaranteed 8"),
            "{msgs:?}"
        );
        assert!(
            msgs[1]
                .1
                .ends_with("can reach at most 12 even by borrowing: part of it can never run"),
            "{msgs:?}"
        );
    }

    #[test]
    fn raising_a_borrowing_limit_raises_only_that_reach() {
        let base = Capacity::of(&built(ALLOCATIONS, WORKLOADS).checked.specs);
        let raised = ALLOCATIONS.replace("gpu: 2, borrowingLimit: 3", "gpu: 2, borrowingLimit: 8");
        let head = Capacity::of(&built(&raised, WORKLOADS).checked.specs);
        let d = diff(&base, &head);
        assert_eq!(d.pools.len(), 1);
        let rows: Vec<(&str, String)> = d.pools[0]
            .projects
            .iter()
            .map(|s| (s.project.as_str(), s.max.text()))
            .collect();
        assert_eq!(rows, [("c", "5 → 10".to_owned())]);
        assert!(d.findings.is_empty());
    }
}
