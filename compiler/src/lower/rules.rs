//! The rules one kind of spec applies to the objects of another — the platform index of
//! issue 20: Kueue's labels and queue names (gpu.rs makes the queues; projects, rollouts and
//! Apps name them), where a workload is placed, what pods running as a project's `workload`
//! ServiceAccount carry (identity.rs makes the cloud side), and which datasets a project mounts
//! under which claim (dataset.rs makes the volumes).
//!
//! Kind files use these and never each other; this file uses no kind file.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Toleration;

use super::context::Ctx;
use crate::model::DatasetSpec;
use crate::model::GpuQuotaSpec;
use crate::model::dataset::{AccessMode, SourceKind};
use crate::model::platform::{CloudProvider, Cluster};
use crate::output::sha256_hex;
use crate::specs::{Object, Specs};

// ---------------------------------------------------------------------------------------------
// Kueue queues

/// Kueue's queue label.
pub(super) const QUEUE_LABEL: &str = "kueue.x-k8s.io/queue-name";

/// Kueue's priority label, read from jobs, Deployments and pods.
pub(super) const PRIORITY_LABEL: &str = "kueue.x-k8s.io/priority-class";

/// CPU and memory quota of a queue whose allocation names none: Kueue needs every requested
/// resource covered, and the namespace's ResourceQuota is what bounds them.
pub(super) const UNBOUNDED_CPU: &str = "100000";
pub(super) const UNBOUNDED_MEMORY: &str = "1000Ti";

/// The ResourceFlavor of CPU-only work (no node labels, no tolerations): what every project's
/// `default` queue uses.
pub(super) const CPU_FLAVOR: &str = crate::model::gpu::RESERVED_POOL_NAMES[1];

/// A name that must also be a label value (at most 63 characters): kept when it fits, else
/// shortened with a hash of the whole so it stays unique.
fn fit_label(name: &str) -> String {
    if name.len() <= 63 {
        return name.to_owned();
    }
    let hash = &sha256_hex(name.as_bytes())[..10];
    let head = name[..52].trim_end_matches(['-', '.']);
    format!("{head}-{hash}")
}

/// The name of a user's LocalQueue of a pool.
pub(super) fn user_queue_name(pool: &str, user: &str) -> String {
    fit_label(&format!("{pool}-{}", user_id(user)))
}

/// A short, stable id for a user name (`u-` and 10 hex digits of its sha256).
pub(super) fn user_id(user: &str) -> String {
    format!("u-{}", &sha256_hex(user.as_bytes())[..10])
}

/// The per-user GPU limit of a project in a pool, if any: the lower of the pool's
/// `perUserGpu` and the project's `perUserQuota.gpu`. The one number the user's queue and the
/// admission policy enforce.
pub(crate) fn per_user_limit(cx: &Ctx<'_>, q: &GpuQuotaSpec, project: &str) -> Option<u32> {
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

/// Users declared by name in a project who may run work (owners and user members who may
/// edit or administer; view-only members get no queue), sorted.
pub(crate) fn declared_users<'s>(cx: &Ctx<'s>, project: &str) -> Vec<&'s str> {
    let Some(p) = cx.specs.projects.get(project) else {
        return Vec::new();
    };
    let mut users: Vec<&str> = p
        .spec
        .owners
        .iter()
        .map(String::as_str)
        .chain(
            p.spec
                .members
                .iter()
                .filter(|m| m.role != crate::model::project::Role::View)
                .filter_map(|m| m.user.as_deref()),
        )
        .collect();
    users.sort();
    users.dedup();
    users
}

/// Kueue's labels for a workload of `project` on `pool` (its LocalQueue and priority class),
/// when the pool queues it here; `explicit` names a class of the pool.
pub(super) fn queue_labels(
    cx: &Ctx<'_>,
    project: &str,
    pool: &str,
    explicit: Option<&str>,
) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    let Some(q) = cx.specs.gpu_quotas.get(pool) else {
        return l;
    };
    if !cx.platform.backends.kueue
        || !cx.has_pool(pool)
        || !q.spec.allocations.iter().any(|a| a.project == project)
    {
        return l;
    }
    l.insert(QUEUE_LABEL.to_owned(), pool.to_owned());
    if let Some(pc) = q.spec.priority_class_for(explicit) {
        l.insert(PRIORITY_LABEL.to_owned(), pc.to_owned());
    }
    l
}

/// The ClusterQueue a project's default LocalQueue points at — its CPU-only queue, named after
/// the project — when the project queues GPU work on this cluster (an allocation in a pool
/// here).
pub(super) fn default_queue(cx: &Ctx<'_>, project: &str) -> Option<String> {
    (!gpu_queues(cx, project).is_empty()).then(|| project.to_owned())
}

/// The LocalQueues of the project's GPU pools on this cluster (named after the pools).
pub(super) fn gpu_queues(cx: &Ctx<'_>, project: &str) -> Vec<String> {
    let mut v: Vec<String> = cx
        .index
        .allocations
        .get(project)
        .into_iter()
        .flatten()
        .filter(|(pool, _)| cx.has_pool(pool))
        .map(|(pool, _)| (*pool).to_owned())
        .collect();
    v.sort();
    v.dedup();
    v
}

// ---------------------------------------------------------------------------------------------
// Placement

/// Where a workload sized by an instance type (or by resources on a pool) runs: the pool's node
/// labels and the instance type's node selector; tolerations of the pool's taints, then the
/// instance type's tolerations, without duplicates. The one placement rule of rollouts and
/// Apps.
pub(super) fn placement(
    pool: Option<&GpuQuotaSpec>,
    instance_type: Option<&crate::model::common::InstanceType>,
) -> (BTreeMap<String, String>, Vec<Toleration>) {
    use crate::model::common::TolerationOperator;
    let mut node_selector = BTreeMap::new();
    let mut tolerations: Vec<Toleration> = Vec::new();
    if let Some(q) = pool {
        node_selector.extend(q.pool.node_labels.clone());
        for t in &q.pool.taints {
            tolerations.push(Toleration {
                key: Some(t.key.clone()),
                operator: Some(if t.value.is_some() { "Equal" } else { "Exists" }.to_owned()),
                value: t.value.clone(),
                effect: Some(t.effect.as_str().to_owned()),
                toleration_seconds: None,
            });
        }
    }
    if let Some(t) = instance_type {
        node_selector.extend(t.node_selector.clone());
        for tol in &t.tolerations {
            let exists = tol.operator == TolerationOperator::Exists;
            tolerations.push(Toleration {
                key: Some(tol.key.clone()),
                operator: Some(if exists { "Exists" } else { "Equal" }.to_owned()),
                value: if exists { None } else { tol.value.clone() },
                effect: tol.effect.map(|e| e.as_str().to_owned()),
                toleration_seconds: None,
            });
        }
    }
    let mut unique: Vec<Toleration> = Vec::new();
    for t in tolerations {
        if !unique.contains(&t) {
            unique.push(t);
        }
    }
    (node_selector, unique)
}

// ---------------------------------------------------------------------------------------------
// Pods running as the project's `workload` ServiceAccount

/// Name of the service account project workloads run as.
pub(super) const WORKLOAD_SA: &str = "workload";

/// Pod label the Azure workload identity webhook acts on.
pub(super) const AZURE_USE_LABEL: &str = "azure.workload.identity/use";

/// Pod annotation asking GKE to inject the Cloud Storage FUSE sidecar.
pub(super) const GCSFUSE_ANNOTATION: &str = "gke-gcsfuse/volumes";

/// Labels of a pod of `project` running as the `workload` ServiceAccount on this cluster.
pub(super) fn pod_labels(cx: &Ctx<'_>, project: &str) -> BTreeMap<String, String> {
    let azure = cx.cluster.provider == CloudProvider::Azure
        && cx
            .specs
            .projects
            .get(project)
            .and_then(|p| p.spec.cloud_identity.as_ref())
            .is_some_and(|i| i.azure.is_some());
    if azure {
        BTreeMap::from([(AZURE_USE_LABEL.to_owned(), "true".to_owned())])
    } else {
        BTreeMap::new()
    }
}

/// Annotations of a pod of `project` mounting the claims `claims` on this cluster.
pub(super) fn pod_annotations<'c>(
    cx: &Ctx<'_>,
    project: &str,
    mut claims: impl Iterator<Item = &'c str>,
) -> BTreeMap<String, String> {
    let gcs: Vec<String> = mounted(cx, project)
        .into_iter()
        .filter(|(d, _)| d.spec.source.kind() == Some(SourceKind::Gcs))
        .map(|(d, _)| claim_name(d.name()))
        .collect();
    if !gcs.is_empty() && claims.any(|c| gcs.iter().any(|g| g == c)) {
        BTreeMap::from([(GCSFUSE_ANNOTATION.to_owned(), "true".to_owned())])
    } else {
        BTreeMap::new()
    }
}

/// Whether a pod spec runs as the project's `workload` ServiceAccount.
pub(super) fn runs_as_workload(pod_spec: &serde_json::Value) -> bool {
    pod_spec.get("serviceAccountName").and_then(|v| v.as_str()) == Some(WORKLOAD_SA)
}

// ---------------------------------------------------------------------------------------------
// Datasets: who mounts what, under which name

/// The namespaced object (PVC or ConfigMap) a project mounts.
pub(super) fn claim_name(dataset: &str) -> String {
    format!("dataset-{dataset}")
}

/// Where the dataset appears in pods.
pub(super) fn mount_path(d: &Object<DatasetSpec>) -> String {
    Specs::mount_path(d)
}

/// A project's use of a dataset.
#[derive(Debug, Clone)]
pub(super) struct Grant<'a> {
    pub(super) project: &'a str,
    pub(super) mode: AccessMode,
    /// The clusters the grant is limited to (all the project's when empty).
    pub(super) clusters: &'a [String],
    /// The spec field granting it, for provenance.
    pub(super) field: String,
}

/// Every consumer (existing projects only), by project name.
pub(super) fn grants<'a>(specs: &'a Specs, d: &'a Object<DatasetSpec>) -> Vec<Grant<'a>> {
    let mut out: BTreeMap<&str, Grant<'a>> = BTreeMap::new();
    for (i, a) in d.spec.access.iter().enumerate() {
        out.entry(a.project.as_str()).or_insert(Grant {
            project: &a.project,
            mode: if d.spec.global {
                AccessMode::ReadOnly
            } else {
                a.mode
            },
            clusters: &a.clusters,
            field: format!("spec.access[{i}]"),
        });
    }
    if d.spec.global {
        for name in specs.projects.keys() {
            out.entry(name.as_str()).or_insert(Grant {
                project: name,
                mode: AccessMode::ReadOnly,
                clusters: &[],
                field: "spec.global".to_owned(),
            });
        }
    }
    out.into_values()
        .filter(|g| specs.projects.contains_key(g.project))
        .collect()
}

/// Whether a grant is mounted on a cluster: one of its project's, among those the grant names
/// (if it names any), and able to mount the source (an object store only on clusters of its
/// cloud; the check reports grants that ask otherwise, E160, and what a global dataset leaves
/// out, W015).
pub(super) fn mounted_on(
    specs: &Specs,
    kind: SourceKind,
    g: &Grant<'_>,
    cluster: &Cluster,
) -> bool {
    let lives = specs
        .projects
        .get(g.project)
        .is_some_and(|p| Ctx::placement(specs, &p.spec).contains(&cluster.name.as_str()));
    lives
        && (g.clusters.is_empty() || g.clusters.contains(&cluster.name))
        && kind.mount_cloud().is_none_or(|c| c == cluster.provider)
}

/// The datasets mounted for a project on this cluster, with its access mode.
pub(super) fn mounted<'a>(
    cx: &Ctx<'a>,
    project: &str,
) -> Vec<(&'a Object<DatasetSpec>, AccessMode)> {
    let mut out = Vec::new();
    for d in cx.index.datasets_of(project) {
        let Some(kind) = d.spec.source.kind() else {
            continue;
        };
        if let Some(g) = grants(cx.specs, d)
            .into_iter()
            .find(|g| g.project == project && mounted_on(cx.specs, kind, g, cx.cluster))
        {
            out.push((d, g.mode));
        }
    }
    out
}

/// Whether this cluster is the one emitting a provider's cloud objects: the first cluster of
/// that provider by name.
pub(super) fn owns_cloud(cx: &Ctx<'_>, provider: CloudProvider) -> bool {
    cx.platform
        .clusters
        .iter()
        .filter(|c| c.provider == provider)
        .map(|c| c.name.as_str())
        .min()
        == Some(cx.cluster.name.as_str())
}

/// A cloud resource name as a Kubernetes name: itself when it is a DNS-1123 subdomain, else
/// lowercase alphanumerics joined by single `-`.
pub(super) fn k8s_name(s: &str) -> String {
    if crate::names::is_dns_subdomain(s) {
        return s.to_owned();
    }
    let mut out = String::new();
    for c in s.chars().map(|c| c.to_ascii_lowercase()) {
        if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').chars().take(253).collect()
}
