//! GpuQuota → Kueue ResourceFlavor, WorkloadPriorityClasses, the pool's Cohort (its spare
//! capacity), a ClusterQueue and LocalQueue per allocation, per-user queues, and a
//! ResourceQuota GPU cap as a backstop for pods outside Kueue. Targets Kueue's `v1beta2` API
//! (Kueue 0.15 and later; behaviour checked against 0.19).
//!
//! Everything is per cluster: the pool's capacity there (`capacity`, or `capacityByCluster`)
//! and the allocations of the projects that live there.
//!
//! Queues per allocation (project `p`, pool `q`):
//! - without a per-user GPU limit: ClusterQueue `p.q` holds the allocation as nominal quota,
//!   in the pool's cohort with the allocation's borrowing and lending limits;
//! - with one (`perUserGpu` on the pool or `perUserQuota.gpu` on the project), Cohort `p.q`
//!   holds the allocation (its parent is the pool's cohort), and every ClusterQueue under it has
//!   no quota of its own: the shared `p.q` may borrow all of it, and each declared user's
//!   `p.q.u-<id>` at most the per-user limit. Since they all borrow, a higher-priority workload
//!   may preempt lower-priority ones of its siblings (`borrowWithinCohort: LowerPriority`;
//!   Kueue's `reclaimWithinCohort` only reclaims nominal quota, and theirs is zero). Users reach
//!   their queue through LocalQueue `q-u-<id>` (labelled with the user id, annotated with the
//!   name), and an admission policy lets only that user name it (`project.rs`). Members who
//!   may only view get no queue.
//!
//! The pool's cohort is a Kueue `Cohort` object whose nominal quota is the pool's capacity in
//! the cluster minus the allocations there: Kueue counts a Cohort's quota **on top of** its
//! ClusterQueues', so the spare GPUs are exactly what queues may borrow beyond what others
//! lend. A missing `borrowingLimit` is unlimited in Kueue, so the GPU ResourceQuota backstop
//! then allows up to the pool's capacity in the cluster.
//!
//! The project's LocalQueue for a pool is named after the pool; `default` is reserved for the
//! project's default queue, which leads to a CPU-only ClusterQueue (`project.rs`), never to a
//! GPU flavor (a pool may not be called `default` or `plinth-cpu`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceQuota, ResourceQuotaSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;

use super::context::{Ctx, Sink};
use super::rules::{
    CPU_FLAVOR, UNBOUNDED_CPU, UNBOUNDED_MEMORY, declared_users, per_user_limit, user_id,
    user_queue_name,
};
use crate::crd::{self, kueue};
use crate::model::gpu::{Allocation, ReclaimPolicy, WithinQueuePolicy};
use crate::model::{GpuQuotaSpec, Kind};
use crate::output::Origin;
use crate::specs::Object;

/// `<project>.<pool>`: a dot cannot appear in either name, so names of different allocations
/// never collide (`a` + `b-c` and `a-b` + `c` would with a dash).
pub fn cluster_queue_name(project: &str, pool: &str) -> String {
    format!("{project}.{pool}")
}

/// Label on a per-user LocalQueue: the user's id.
pub const USER_LABEL: &str = "plinth.dev/user-id";

/// Name of the backstop ResourceQuota for a GPU resource: `gpu-nvidia-com-mig-1g-10gb`.
pub fn backstop_name(resource: &str) -> String {
    let slug: String = resource
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("gpu-{}", slug.trim_matches('-'))
}

fn quotas(
    q: &GpuQuotaSpec,
    cx: &Ctx<'_>,
    a: &Allocation,
    gpu: &str,
    limits: bool,
) -> Vec<kueue::ResourceQuota> {
    let project_quota = cx
        .specs
        .projects
        .get(&a.project)
        .and_then(|p| p.spec.quota.as_ref());
    let cpu = a
        .cpu
        .as_ref()
        .or(project_quota.and_then(|pq| pq.cpu.as_ref()))
        .map_or(UNBOUNDED_CPU.to_owned(), |c| c.to_string());
    let memory = a
        .memory
        .as_ref()
        .or(project_quota.and_then(|pq| pq.memory.as_ref()))
        .map_or(UNBOUNDED_MEMORY.to_owned(), |m| m.to_string());
    let plain = |name: &str, nominal: String| kueue::ResourceQuota {
        name: name.to_owned(),
        nominal_quota: nominal,
        borrowing_limit: None,
        lending_limit: None,
    };
    vec![
        plain("cpu", cpu),
        plain("memory", memory),
        kueue::ResourceQuota {
            name: q.pool.resource_name.clone(),
            nominal_quota: gpu.to_owned(),
            borrowing_limit: if limits {
                a.borrowing_limit.map(|b| b.to_string())
            } else {
                None
            },
            lending_limit: if limits {
                a.lending_limit.map(|l| l.to_string())
            } else {
                None
            },
        },
    ]
}

fn group(
    pool: &str,
    resource: &str,
    resources: Vec<kueue::ResourceQuota>,
) -> Vec<kueue::ResourceGroup> {
    vec![kueue::ResourceGroup {
        covered_resources: vec!["cpu".to_owned(), "memory".to_owned(), resource.to_owned()],
        flavors: vec![kueue::FlavorQuotas {
            name: pool.to_owned(),
            resources,
        }],
    }]
}

fn preemption(q: &GpuQuotaSpec, borrow: bool) -> kueue::ClusterQueuePreemption {
    kueue::ClusterQueuePreemption {
        // Kueue refuses `borrowWithinCohort` unless `reclaimWithinCohort` is other than Never.
        borrow_within_cohort: (borrow
            && q.preemption.reclaim_within_cohort != ReclaimPolicy::Never)
            .then(|| kueue::BorrowWithinCohort {
                policy: "LowerPriority".to_owned(),
            }),
        reclaim_within_cohort: match q.preemption.reclaim_within_cohort {
            ReclaimPolicy::Never => "Never",
            ReclaimPolicy::LowerPriority => "LowerPriority",
            ReclaimPolicy::Any => "Any",
        }
        .to_owned(),
        within_cluster_queue: match q.preemption.within_cluster_queue {
            WithinQueuePolicy::Never => "Never",
            WithinQueuePolicy::LowerPriority => "LowerPriority",
            WithinQueuePolicy::LowerOrNewerEqualPriority => "LowerOrNewerEqualPriority",
        }
        .to_owned(),
    }
}

fn selector(project: &str) -> kueue::LabelSelector {
    kueue::LabelSelector {
        match_labels: BTreeMap::from([(
            "kubernetes.io/metadata.name".to_owned(),
            project.to_owned(),
        )]),
    }
}

pub fn lower(cx: &Ctx<'_>, o: &Object<GpuQuotaSpec>, sink: &mut Sink<'_>) {
    let origin = Origin::of(Kind::GpuQuota, o);
    if cx.platform.backends.kueue {
        kueue_objects(cx, o, &origin, sink);
    }
}

/// A project's backstop ResourceQuotas on this cluster: one per GPU resource of the pools here
/// that allocate to it, allowing what Kueue may admit for it in all of them, attributed to the
/// first of those pools by name (its allocation to the project). Lowered with the project (its
/// view holds the pools allocating to it), so a change to one project or pool lowers only the
/// backstops of the projects it touches.
pub fn lower_backstops(cx: &Ctx<'_>, project: &str, sink: &mut Sink<'_>) {
    if !cx.hosts(project) {
        return;
    }
    // Per resource, the pools here allocating to the project (by name) and those allocations.
    let mut by_resource: BTreeMap<&str, Vec<(&Object<GpuQuotaSpec>, &Allocation)>> =
        BTreeMap::new();
    for q in cx
        .specs
        .gpu_quotas
        .values()
        .filter(|q| cx.has_pool(q.name()))
    {
        for a in q.spec.allocations.iter().filter(|a| a.project == project) {
            by_resource
                .entry(q.spec.pool.resource_name.as_str())
                .or_default()
                .push((q, a));
        }
    }
    for (resource, allocations) in by_resource {
        let Some(&(first, _)) = allocations.first() else {
            continue;
        };
        let origin = first
            .spec
            .allocations
            .iter()
            .position(|a| a.project == project)
            .map_or_else(
                || Origin::of(Kind::GpuQuota, first),
                |i| Origin::at(Kind::GpuQuota, first, &format!("spec.allocations[{i}]")),
            );
        // What Kueue may admit for the project: each allocation plus what it may borrow — the
        // borrowing limit, or, when there is none, anything up to the pool's capacity here.
        let total: u64 = allocations
            .iter()
            .map(|(q, a)| most_admitted(cx, &q.spec, a))
            .sum();
        let hard = BTreeMap::from([(format!("requests.{resource}"), KQuantity(total.to_string()))]);
        sink.push(
            &origin,
            ResourceQuota {
                metadata: cx.meta(
                    &backstop_name(resource),
                    Some(project),
                    Some(project),
                    first,
                ),
                spec: Some(ResourceQuotaSpec {
                    hard: Some(hard),
                    ..ResourceQuotaSpec::default()
                }),
                ..ResourceQuota::default()
            },
        );
    }
}

/// The pool's Kueue objects: its ResourceFlavor, priority classes and the queues of each
/// allocation (its cohort is [`lower_cohort`]'s).
fn kueue_objects(cx: &Ctx<'_>, o: &Object<GpuQuotaSpec>, origin: &Origin, sink: &mut Sink<'_>) {
    let q = &o.spec;
    let pool = o.name();
    let taints: Vec<kueue::Taint> = q
        .pool
        .taints
        .iter()
        .map(|t| kueue::Taint {
            key: t.key.clone(),
            value: t.value.clone(),
            effect: t.effect.as_str().to_owned(),
        })
        .collect();
    let tolerations = q
        .pool
        .taints
        .iter()
        .map(|t| kueue::Toleration {
            key: t.key.clone(),
            operator: if t.value.is_some() { "Equal" } else { "Exists" }.to_owned(),
            value: t.value.clone(),
            effect: Some(t.effect.as_str().to_owned()),
        })
        .collect();
    let mut meta = cx.meta(pool, None, None, o);
    if let Some(model) = &q.pool.model {
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert("plinth.dev/gpu-model".to_owned(), model.clone());
    }
    sink.push_value(
        origin,
        crd::object(
            meta,
            &kueue::ResourceFlavorSpec {
                node_labels: q.pool.node_labels.clone(),
                node_taints: taints,
                tolerations,
            },
        ),
    );
    for pc in &q.priority_classes {
        sink.push_value(
            origin,
            crd::object(
                cx.meta(&pc.name, None, None, o),
                &kueue::WorkloadPriorityClassBody {
                    value: pc.value,
                    description: pc.description.clone(),
                },
            ),
        );
    }
    for (i, a) in q.allocations.iter().enumerate() {
        lower_allocation(
            cx,
            o,
            a,
            &Origin::at(Kind::GpuQuota, o, &format!("spec.allocations[{i}]")),
            sink,
        );
    }
}

/// The most GPUs of a pool Kueue may admit for one allocation in this cluster.
pub fn most_admitted(cx: &Ctx<'_>, q: &GpuQuotaSpec, a: &Allocation) -> u64 {
    let capacity = u64::from(q.capacity_in(&cx.cluster.name));
    let borrow = match (&q.cohort, a.borrowing_limit) {
        (None, _) => 0,
        (Some(_), Some(b)) => u64::from(b),
        (Some(_), None) => capacity,
    };
    (u64::from(a.gpu) + borrow).min(capacity.max(u64::from(a.gpu)))
}

/// GPUs of a pool in this cluster that no allocation there holds.
pub fn spare(cx: &Ctx<'_>, q: &GpuQuotaSpec) -> u64 {
    let allocated: u64 = q
        .allocations
        .iter()
        .filter(|a| cx.hosts(&a.project))
        .map(|a| u64::from(a.gpu))
        .sum();
    u64::from(q.capacity_in(&cx.cluster.name)).saturating_sub(allocated)
}

/// A cohort of pools on this cluster: its Kueue Cohort, attributed to its first pool by name
/// (lowered once per cohort, apart from the pools, so that a pool reads only its own
/// allocations and a cohort reads its members).
pub fn lower_cohort(cx: &Ctx<'_>, cohort: &str, sink: &mut Sink<'_>) {
    if !cx.platform.backends.kueue {
        return;
    }
    let first = cx
        .specs
        .gpu_quotas
        .values()
        .find(|p| cx.has_pool(p.name()) && p.spec.cohort.as_deref() == Some(cohort));
    if let Some(o) = first {
        spare_cohort(cx, o, cohort, &Origin::of(Kind::GpuQuota, o), sink);
    }
}

/// The pool's cohort as a Kueue Cohort holding the spare GPUs of every pool in it (emitted once
/// per cluster, by the first such pool by name), one resource group per GPU resource.
fn spare_cohort(
    cx: &Ctx<'_>,
    o: &Object<GpuQuotaSpec>,
    cohort: &str,
    origin: &Origin,
    sink: &mut Sink<'_>,
) {
    let members: Vec<&Object<GpuQuotaSpec>> = cx
        .specs
        .gpu_quotas
        .values()
        .filter(|p| cx.has_pool(p.name()) && p.spec.cohort.as_deref() == Some(cohort))
        .collect();
    if members.first().map(|p| p.name()) != Some(o.name()) {
        return;
    }
    let mut by_resource: BTreeMap<&str, Vec<kueue::FlavorQuotas>> = BTreeMap::new();
    for p in &members {
        by_resource
            .entry(p.spec.pool.resource_name.as_str())
            .or_default()
            .push(kueue::FlavorQuotas {
                name: p.name().to_owned(),
                resources: vec![kueue::ResourceQuota {
                    name: p.spec.pool.resource_name.clone(),
                    nominal_quota: spare(cx, &p.spec).to_string(),
                    borrowing_limit: None,
                    lending_limit: None,
                }],
            });
    }
    let mut meta = cx.meta(cohort, None, None, o);
    meta.annotations.get_or_insert_with(BTreeMap::new).insert(
        "plinth.dev/spare".to_owned(),
        "nominal quota: the pools' capacity in this cluster minus the allocations here".to_owned(),
    );
    sink.push_value(
        origin,
        crd::object(
            meta,
            &kueue::CohortSpec {
                parent_name: None,
                resource_groups: by_resource
                    .into_iter()
                    .map(|(r, flavors)| kueue::ResourceGroup {
                        covered_resources: vec![r.to_owned()],
                        flavors,
                    })
                    .collect(),
            },
        ),
    );
}

/// The CPU-only ResourceFlavor of a cluster, when some project there has a default queue.
pub fn lower_platform(cx: &Ctx<'_>, p: &Object<crate::model::PlatformSpec>, sink: &mut Sink<'_>) {
    if !cx.platform.backends.kueue {
        return;
    }
    let needed = cx
        .specs
        .projects
        .keys()
        .any(|name| cx.hosts(name) && super::rules::default_queue(cx, name).is_some());
    if !needed {
        return;
    }
    sink.push_value(
        &Origin::of(Kind::Platform, p),
        crd::object(
            cx.meta(CPU_FLAVOR, None, None, p),
            &kueue::ResourceFlavorSpec {
                node_labels: BTreeMap::new(),
                node_taints: Vec::new(),
                tolerations: Vec::new(),
            },
        ),
    );
}

fn lower_allocation(
    cx: &Ctx<'_>,
    o: &Object<GpuQuotaSpec>,
    a: &Allocation,
    origin: &Origin,
    sink: &mut Sink<'_>,
) {
    let q = &o.spec;
    let pool = o.name();
    let resource = q.pool.resource_name.as_str();
    let project = a.project.as_str();
    if !cx.hosts(project) {
        return;
    }
    let cq = cluster_queue_name(project, pool);
    let users = declared_users(cx, project);
    let per_user = per_user_limit(cx, q, project).filter(|_| !users.is_empty());
    let gpu = a.gpu.to_string();

    match per_user {
        None => {
            sink.push_value(
                origin,
                crd::object(
                    cx.meta(&cq, None, Some(project), o),
                    &kueue::ClusterQueueSpec {
                        cohort_name: q.cohort.clone(),
                        namespace_selector: selector(project),
                        queueing_strategy: "BestEffortFIFO".to_owned(),
                        resource_groups: group(
                            pool,
                            resource,
                            quotas(q, cx, a, &gpu, q.cohort.is_some()),
                        ),
                        preemption: preemption(q, false),
                    },
                ),
            );
        }
        Some(limit) => {
            per_user_queues(cx, o, a, &cq, &users, limit, origin, sink);
        }
    }
    sink.push_value(
        origin,
        crd::object(
            cx.meta(pool, Some(project), Some(project), o),
            &kueue::LocalQueueSpec { cluster_queue: cq },
        ),
    );
}

/// An allocation with a per-user limit: it lives on a project cohort, under which the
/// project's queue and one queue per declared user (with its LocalQueue) borrow from it.
#[allow(clippy::too_many_arguments)]
fn per_user_queues(
    cx: &Ctx<'_>,
    o: &Object<GpuQuotaSpec>,
    a: &Allocation,
    cq: &str,
    users: &[&str],
    limit: u32,
    origin: &Origin,
    sink: &mut Sink<'_>,
) {
    let q = &o.spec;
    let pool = o.name();
    let resource = q.pool.resource_name.as_str();
    let project = a.project.as_str();
    let gpu = a.gpu.to_string();
    // The allocation lives on a project cohort; queues under it borrow from it.
    sink.push_value(
        origin,
        crd::object(
            cx.meta(cq, None, Some(project), o),
            &kueue::CohortSpec {
                parent_name: q.cohort.clone(),
                resource_groups: group(pool, resource, quotas(q, cx, a, &gpu, q.cohort.is_some())),
            },
        ),
    );
    let zero = |borrow: Option<u32>| {
        let mut rs = quotas(q, cx, a, "0", false);
        for r in &mut rs {
            r.nominal_quota = "0".to_owned();
        }
        if let (Some(b), Some(gpu_q)) = (borrow, rs.last_mut()) {
            gpu_q.borrowing_limit = Some(b.to_string());
        }
        rs
    };
    sink.push_value(
        origin,
        crd::object(
            cx.meta(cq, None, Some(project), o),
            &kueue::ClusterQueueSpec {
                cohort_name: Some(cq.to_owned()),
                namespace_selector: selector(project),
                queueing_strategy: "BestEffortFIFO".to_owned(),
                resource_groups: group(pool, resource, zero(None)),
                preemption: preemption(q, true),
            },
        ),
    );
    for user in users {
        let id = user_id(user);
        let user_cq = format!("{cq}.{id}");
        let mut meta = cx.meta(&user_cq, None, Some(project), o);
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert("plinth.dev/user".to_owned(), (*user).to_owned());
        sink.push_value(
            origin,
            crd::object(
                meta,
                &kueue::ClusterQueueSpec {
                    cohort_name: Some(cq.to_owned()),
                    namespace_selector: selector(project),
                    queueing_strategy: "BestEffortFIFO".to_owned(),
                    resource_groups: group(pool, resource, zero(Some(limit))),
                    preemption: preemption(q, true),
                },
            ),
        );
        // Workloads name their LocalQueue in a label: the name must fit a label value.
        let mut lq_meta = cx.meta(
            &user_queue_name(pool, user),
            Some(project),
            Some(project),
            o,
        );
        lq_meta
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert("plinth.dev/user".to_owned(), (*user).to_owned());
        lq_meta
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(USER_LABEL.to_owned(), id.clone());
        sink.push_value(
            origin,
            crd::object(
                lq_meta,
                &kueue::LocalQueueSpec {
                    cluster_queue: user_cq,
                },
            ),
        );
    }
}
