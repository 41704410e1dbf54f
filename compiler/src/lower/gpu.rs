//! GpuQuota → Kueue ResourceFlavor, WorkloadPriorityClasses, a ClusterQueue and LocalQueue per
//! allocation, per-user queues, and a ResourceQuota GPU cap as a backstop for pods outside
//! Kueue.
//!
//! Queues per allocation (project `p`, pool `q`):
//! - without a per-user GPU limit: ClusterQueue `p.q` holds the allocation as nominal quota,
//!   in the pool's cohort with the allocation's borrowing and lending limits;
//! - with one (`perUserGpu` on the pool or `perUserQuota.gpu` on the project), Cohort `p.q`
//!   holds the allocation (its parent is the pool's cohort), and every ClusterQueue under it has
//!   no quota of its own: the shared `p.q` may borrow all of it, and each declared user's
//!   `p.q.u-<id>` at most the per-user limit. Users reach their queue through LocalQueue
//!   `q-u-<id>` (annotated with the user's name) in the project namespace.
//!
//! The project's LocalQueue for a pool is named after the pool; `default` is reserved for the
//! project's default queue (a pool may not be called `default`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ResourceQuota, ResourceQuotaSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;

use super::crd::{self, kueue};
use super::{Ctx, Origin, Sink};
use crate::model::gpu::{Allocation, ReclaimPolicy, WithinQueuePolicy};
use crate::model::{GpuQuotaSpec, Kind, Object};

/// CPU and memory quota of a queue whose allocation names none: Kueue needs every requested
/// resource covered, and the namespace's ResourceQuota is what bounds them.
const UNBOUNDED_CPU: &str = "100000";
const UNBOUNDED_MEMORY: &str = "1000Ti";

/// `<project>.<pool>`: a dot cannot appear in either name, so names of different allocations
/// never collide (`a` + `b-c` and `a-b` + `c` would with a dash).
pub fn cluster_queue_name(project: &str, pool: &str) -> String {
    format!("{project}.{pool}")
}

/// A name that must also be a label value (at most 63 characters): kept when it fits, else
/// shortened with a hash of the whole so it stays unique.
pub fn fit_label(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_owned();
    }
    let hash = &super::sha256_hex(name.as_bytes())[..10];
    let head = name[..52].trim_end_matches(['-', '.']);
    format!("{head}-{hash}")
}

/// A short, stable id for a user name (`u-` and 10 hex digits of its sha256).
pub fn user_id(user: &str) -> String {
    format!("u-{}", &super::sha256_hex(user.as_bytes())[..10])
}

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

/// The per-user GPU limit of a project in a pool, if any.
fn per_user_limit(cx: &Ctx<'_>, q: &GpuQuotaSpec, project: &str) -> Option<u32> {
    let project_limit = cx
        .specs
        .projects
        .get(project)
        .and_then(|p| p.spec.per_user_quota.as_ref())
        .and_then(|u| u.gpu);
    match (q.per_user_gpu, project_limit) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// Users declared by name in a project (owners and user members), sorted.
fn declared_users(cx: &Ctx<'_>, project: &str) -> Vec<String> {
    let Some(p) = cx.specs.projects.get(project) else {
        return Vec::new();
    };
    let mut users: Vec<String> = p
        .spec
        .owners
        .iter()
        .cloned()
        .chain(p.spec.members.iter().filter_map(|m| m.user.clone()))
        .collect();
    users.sort();
    users.dedup();
    users
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

fn preemption(q: &GpuQuotaSpec) -> kueue::ClusterQueuePreemption {
    kueue::ClusterQueuePreemption {
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
    let q = &o.spec;
    let pool = o.name();
    let resource = q.pool.resource_name.as_str();

    if cx.platform.backends.kueue {
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
            &origin,
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
                &origin,
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

    // Backstop ResourceQuota per project and GPU resource, emitted once by the first pool (by
    // name) on this cluster with that resource; it sums every such pool's allocation.
    let pools_with_resource: Vec<&Object<GpuQuotaSpec>> = cx
        .specs
        .gpu_quotas
        .values()
        .filter(|p| cx.has_pool(p.name()) && p.spec.pool.resource_name == resource)
        .collect();
    if pools_with_resource.first().map(|p| p.name()) != Some(pool) {
        return;
    }
    let mut projects: Vec<&str> = pools_with_resource
        .iter()
        .flat_map(|p| p.spec.allocations.iter().map(|a| a.project.as_str()))
        .filter(|p| cx.hosts(p))
        .collect();
    projects.sort();
    projects.dedup();
    for project in projects {
        // Provenance: this pool's allocation to the project, when it has one.
        let origin = q
            .allocations
            .iter()
            .position(|a| a.project == project)
            .map_or_else(
                || origin.clone(),
                |i| Origin::at(Kind::GpuQuota, o, &format!("spec.allocations[{i}]")),
            );
        let total: u64 = pools_with_resource
            .iter()
            .flat_map(|p| p.spec.allocations.iter())
            .filter(|a| a.project == project)
            .map(|a| u64::from(a.gpu) + u64::from(a.borrowing_limit.unwrap_or(0)))
            .sum();
        let hard = BTreeMap::from([(format!("requests.{resource}"), KQuantity(total.to_string()))]);
        sink.push(
            &origin,
            ResourceQuota {
                metadata: cx.meta(&backstop_name(resource), Some(project), Some(project), o),
                spec: Some(ResourceQuotaSpec {
                    hard: Some(hard),
                    ..ResourceQuotaSpec::default()
                }),
                ..ResourceQuota::default()
            },
        );
    }
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
                        preemption: preemption(q),
                    },
                ),
            );
        }
        Some(limit) => {
            // The allocation lives on a project cohort; queues under it borrow from it.
            sink.push_value(
                origin,
                crd::object(
                    cx.meta(&cq, None, Some(project), o),
                    &kueue::CohortSpec {
                        parent_name: q.cohort.clone(),
                        resource_groups: group(
                            pool,
                            resource,
                            quotas(q, cx, a, &gpu, q.cohort.is_some()),
                        ),
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
                    cx.meta(&cq, None, Some(project), o),
                    &kueue::ClusterQueueSpec {
                        cohort_name: Some(cq.clone()),
                        namespace_selector: selector(project),
                        queueing_strategy: "BestEffortFIFO".to_owned(),
                        resource_groups: group(pool, resource, zero(None)),
                        preemption: preemption(q),
                    },
                ),
            );
            for user in &users {
                let id = user_id(user);
                let user_cq = format!("{cq}.{id}");
                let mut meta = cx.meta(&user_cq, None, Some(project), o);
                meta.annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert("plinth.dev/user".to_owned(), user.clone());
                sink.push_value(
                    origin,
                    crd::object(
                        meta,
                        &kueue::ClusterQueueSpec {
                            cohort_name: Some(cq.clone()),
                            namespace_selector: selector(project),
                            queueing_strategy: "BestEffortFIFO".to_owned(),
                            resource_groups: group(pool, resource, zero(Some(limit))),
                            preemption: preemption(q),
                        },
                    ),
                );
                // Workloads name their LocalQueue in a label: the name must fit a label value.
                let mut lq_meta = cx.meta(
                    &fit_label(&format!("{pool}-{id}")),
                    Some(project),
                    Some(project),
                    o,
                );
                lq_meta
                    .annotations
                    .get_or_insert_with(BTreeMap::new)
                    .insert("plinth.dev/user".to_owned(), user.clone());
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
    }
    sink.push_value(
        origin,
        crd::object(
            cx.meta(pool, Some(project), Some(project), o),
            &kueue::LocalQueueSpec { cluster_queue: cq },
        ),
    );
}
