//! Project → Namespace, ResourceQuota, LimitRange, ServiceAccount, RoleBindings,
//! NetworkPolicy, shared PVC, default Kueue LocalQueue and the per-user admission policy.
//!
//! Per-user quota has no built-in Kubernetes object that sums one user's pods. plinth emits two
//! things (documented in the README): a `ValidatingAdmissionPolicy` that refuses any container
//! asking for more CPU, memory or GPUs than one user may hold, and (in [`super::gpu`]) a
//! personal Kueue queue per declared user, bounded by the per-user GPU limit, so queued GPU work
//! is capped per user as a whole.

use std::collections::BTreeMap;

use k8s_openapi::api::admissionregistration::v1 as admission;
use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, ResourceQuota, ResourceQuotaSpec, ServiceAccount,
    VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::crd::{self, kueue};
use super::{Ctx, Origin, Sink};
use crate::model::platform::CloudProvider;
use crate::model::project::Role;
use crate::model::{Kind, Object, ProjectSpec};

/// Name of the service account project workloads run as.
pub const WORKLOAD_SA: &str = "workload";
/// Default container requests when a project sets none but has a quota.
const DEFAULT_CPU: &str = "100m";
const DEFAULT_MEMORY: &str = "256Mi";

fn q(s: &str) -> KQuantity {
    KQuantity(s.to_owned())
}

pub fn lower(cx: &Ctx<'_>, p: &Object<ProjectSpec>, sink: &mut Sink<'_>) {
    let origin = Origin::of(Kind::Project, p);
    let ns = p.name();
    let s = &p.spec;
    let project = Some(ns);

    // Namespace.
    let mut meta = cx.meta(ns, None, project, p);
    let level = s
        .pod_security
        .unwrap_or(cx.platform.defaults.pod_security)
        .as_str();
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            level.to_owned(),
        );
    }
    if let Some(queue) = default_queue(cx, ns) {
        labels.insert("plinth.dev/queue".to_owned(), super::gpu::fit_label(&queue));
    }
    let ann = meta.annotations.get_or_insert_with(BTreeMap::new);
    if let Some(d) = &s.display_name {
        ann.insert("plinth.dev/display-name".to_owned(), d.clone());
    }
    if let Some(d) = &s.description {
        ann.insert("plinth.dev/description".to_owned(), d.clone());
    }
    if let Some(h) = &s.volumes.home {
        ann.insert(
            "plinth.dev/home-capacity".to_owned(),
            h.capacity.to_string(),
        );
    }
    if let Some(m) = &s.mlflow {
        ann.insert(
            "plinth.dev/mlflow-tracking-uri".to_owned(),
            m.tracking_uri.clone(),
        );
    }
    if meta.annotations.as_ref().is_some_and(BTreeMap::is_empty) {
        meta.annotations = None;
    }
    sink.push(
        &origin,
        Namespace {
            metadata: meta,
            ..Namespace::default()
        },
    );

    // Quota.
    if let Some(quota) = &s.quota {
        let mut hard = BTreeMap::new();
        if let Some(c) = &quota.cpu {
            hard.insert("requests.cpu".to_owned(), q(c.as_str()));
        }
        if let Some(m) = &quota.memory {
            hard.insert("requests.memory".to_owned(), q(m.as_str()));
        }
        if let Some(st) = &quota.storage {
            hard.insert("requests.storage".to_owned(), q(st.as_str()));
        }
        if let Some(n) = quota.pods {
            hard.insert("pods".to_owned(), q(&n.to_string()));
        }
        if !hard.is_empty() {
            sink.push(
                &origin,
                ResourceQuota {
                    metadata: cx.meta("quota", Some(ns), project, p),
                    spec: Some(ResourceQuotaSpec {
                        hard: Some(hard),
                        ..ResourceQuotaSpec::default()
                    }),
                    ..ResourceQuota::default()
                },
            );
        }
    }

    // LimitRange: defaults so pods without requests are admitted once a quota exists.
    if s.quota.is_some() || s.defaults.is_some() {
        let d = s.defaults.as_ref();
        let mut request = BTreeMap::new();
        request.insert(
            "cpu".to_owned(),
            q(d.and_then(|d| d.cpu.as_ref())
                .map_or(DEFAULT_CPU, |x| x.as_str())),
        );
        request.insert(
            "memory".to_owned(),
            q(d.and_then(|d| d.memory.as_ref())
                .map_or(DEFAULT_MEMORY, |x| x.as_str())),
        );
        let mut limit = BTreeMap::new();
        if let Some(c) = d.and_then(|d| d.cpu_limit.as_ref()) {
            limit.insert("cpu".to_owned(), q(c.as_str()));
        }
        if let Some(m) = d.and_then(|d| d.memory_limit.as_ref()) {
            limit.insert("memory".to_owned(), q(m.as_str()));
        }
        sink.push(
            &origin,
            LimitRange {
                metadata: cx.meta("defaults", Some(ns), project, p),
                spec: Some(LimitRangeSpec {
                    limits: vec![LimitRangeItem {
                        type_: "Container".to_owned(),
                        default_request: Some(request),
                        default: if limit.is_empty() { None } else { Some(limit) },
                        ..LimitRangeItem::default()
                    }],
                }),
            },
        );
    }

    // Workload identity.
    let mut sa_meta = cx.meta(WORKLOAD_SA, Some(ns), project, p);
    if let Some(id) = &s.cloud_identity {
        let ann = sa_meta.annotations.get_or_insert_with(BTreeMap::new);
        match cx.cluster.provider {
            CloudProvider::Aws => {
                if let Some(a) = &id.aws {
                    ann.insert("eks.amazonaws.com/role-arn".to_owned(), a.role_arn.clone());
                }
            }
            CloudProvider::Gcp => {
                if let Some(g) = &id.gcp {
                    ann.insert(
                        "iam.gke.io/gcp-service-account".to_owned(),
                        g.service_account.clone(),
                    );
                }
            }
            CloudProvider::Azure => {
                if let Some(a) = &id.azure {
                    ann.insert(
                        "azure.workload.identity/client-id".to_owned(),
                        a.client_id.clone(),
                    );
                    if let Some(t) = &a.tenant_id {
                        ann.insert("azure.workload.identity/tenant-id".to_owned(), t.clone());
                    }
                    sa_meta
                        .labels
                        .get_or_insert_with(BTreeMap::new)
                        .insert("azure.workload.identity/use".to_owned(), "true".to_owned());
                }
            }
            CloudProvider::OnPrem => {}
        }
        if sa_meta.annotations.as_ref().is_some_and(BTreeMap::is_empty) {
            sa_meta.annotations = None;
        }
    }
    sink.push(
        &origin,
        ServiceAccount {
            metadata: sa_meta,
            ..ServiceAccount::default()
        },
    );

    // RBAC: one RoleBinding per role, to the built-in ClusterRoles.
    let identity = &cx.platform.identity;
    let mut by_role: BTreeMap<Role, Vec<Subject>> = BTreeMap::new();
    for owner in &s.owners {
        by_role
            .entry(Role::Admin)
            .or_default()
            .push(subject("User", &identity.user_prefix, owner));
    }
    for m in &s.members {
        let sub = match (&m.user, &m.group) {
            (Some(u), _) => subject("User", &identity.user_prefix, u),
            (None, Some(g)) => subject("Group", &identity.group_prefix, g),
            (None, None) => continue,
        };
        by_role.entry(m.role).or_default().push(sub);
    }
    for (role, mut subjects) in by_role {
        subjects.sort_by(|a, b| (&a.kind, &a.name).cmp(&(&b.kind, &b.name)));
        subjects.dedup_by(|a, b| a.kind == b.kind && a.name == b.name);
        sink.push(
            &origin,
            RoleBinding {
                metadata: cx.meta(&format!("plinth-{}", role.as_str()), Some(ns), project, p),
                role_ref: RoleRef {
                    api_group: "rbac.authorization.k8s.io".to_owned(),
                    kind: "ClusterRole".to_owned(),
                    name: role.as_str().to_owned(),
                },
                subjects: Some(subjects),
            },
        );
    }

    // Network isolation.
    if s.network
        .isolation
        .unwrap_or(cx.platform.defaults.network_isolation)
    {
        let mut from = vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..NetworkPolicyPeer::default()
        }];
        for a in &s.network.allow_from {
            if let Some(other) = a.project.as_ref().or(a.namespace.as_ref()) {
                from.push(NetworkPolicyPeer {
                    namespace_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            "kubernetes.io/metadata.name".to_owned(),
                            other.clone(),
                        )])),
                        ..LabelSelector::default()
                    }),
                    ..NetworkPolicyPeer::default()
                });
            }
            if let Some(c) = &a.cidr {
                from.push(NetworkPolicyPeer {
                    ip_block: Some(IPBlock {
                        cidr: c.clone(),
                        except: None,
                    }),
                    ..NetworkPolicyPeer::default()
                });
            }
        }
        sink.push(
            &origin,
            NetworkPolicy {
                metadata: cx.meta("isolation", Some(ns), project, p),
                spec: Some(NetworkPolicySpec {
                    pod_selector: Some(LabelSelector::default()),
                    policy_types: Some(vec!["Ingress".to_owned()]),
                    ingress: Some(vec![NetworkPolicyIngressRule {
                        from: Some(from),
                        ports: None,
                    }]),
                    ..NetworkPolicySpec::default()
                }),
            },
        );
    }

    // Shared volume.
    if let Some(sv) = &s.volumes.shared {
        let mut meta = cx.meta("shared", Some(ns), project, p);
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert("plinth.dev/mount-path".to_owned(), sv.mount_path.clone());
        sink.push(
            &origin,
            PersistentVolumeClaim {
                metadata: meta,
                spec: Some(PersistentVolumeClaimSpec {
                    access_modes: Some(vec!["ReadWriteMany".to_owned()]),
                    storage_class_name: cx.storage_class(sv.storage_class.as_ref()),
                    resources: Some(VolumeResourceRequirements {
                        requests: Some(BTreeMap::from([(
                            "storage".to_owned(),
                            q(sv.capacity.as_str()),
                        )])),
                        limits: None,
                    }),
                    ..PersistentVolumeClaimSpec::default()
                }),
                ..PersistentVolumeClaim::default()
            },
        );
    }

    // Default Kueue queue: jobs without a queue label land in the project's first GPU queue.
    if cx.platform.backends.kueue
        && let Some(cq) = default_queue(cx, ns)
    {
        sink.push_value(
            &origin,
            crd::object(
                cx.meta("default", Some(ns), project, p),
                &kueue::LocalQueueSpec { cluster_queue: cq },
            ),
        );
    }

    // Per-user admission policy.
    if let Some(pu) = &s.per_user_quota {
        per_user_policy(cx, p, pu, &origin, sink);
    }
}

fn subject(kind: &str, prefix: &str, name: &str) -> Subject {
    Subject {
        kind: kind.to_owned(),
        name: format!("{prefix}{name}"),
        api_group: Some("rbac.authorization.k8s.io".to_owned()),
        namespace: None,
    }
}

/// The ClusterQueue a project's default LocalQueue points at: its allocation in the first GPU
/// pool (by name) present on this cluster.
pub fn default_queue(cx: &Ctx<'_>, project: &str) -> Option<String> {
    cx.index
        .allocations
        .get(project)?
        .iter()
        .find(|(pool, _)| cx.has_pool(pool))
        .map(|(pool, _)| super::gpu::cluster_queue_name(project, pool))
}

fn per_user_policy(
    cx: &Ctx<'_>,
    p: &Object<ProjectSpec>,
    pu: &crate::model::project::PerUserQuota,
    origin: &Origin,
    sink: &mut Sink<'_>,
) {
    let ns = p.name();
    if cx.minor_version() < 30 {
        // `admissionregistration.k8s.io/v1` ValidatingAdmissionPolicy is served from 1.30.
        sink.report(
            crate::diag::Diagnostic::new(
                crate::diag::Code::NotEnforced,
                format!(
                    "the per-user quota of project `{ns}` is not enforced on cluster `{}`: it runs Kubernetes {}, and admission policies need 1.30",
                    cx.cluster.name, cx.cluster.kubernetes_version
                ),
            )
            .at(p.at("spec.perUserQuota"))
            .hint("upgrade the cluster, or keep the project off it; per-user GPU queues still apply"),
        );
        return;
    }
    let mut checks = Vec::new();
    let mut limit = |resource: &str, max: String| {
        checks.push(admission::Validation {
            expression: format!(
                "(object.spec.containers + (has(object.spec.initContainers) ? object.spec.initContainers : [])).all(c, !has(c.resources) || !has(c.resources.requests) || !('{resource}' in c.resources.requests) || quantity(c.resources.requests['{resource}']).compareTo(quantity('{max}')) <= 0)"
            ),
            message: Some(format!("a container may request at most {max} of `{resource}`, the per-user quota of project `{ns}`")),
            reason: Some("Forbidden".to_owned()),
            message_expression: None,
        });
    };
    if let Some(c) = &pu.cpu {
        limit("cpu", c.to_string());
    }
    if let Some(m) = &pu.memory {
        limit("memory", m.to_string());
    }
    if let Some(g) = pu.gpu {
        let mut resources: Vec<&str> = cx
            .index
            .allocations
            .get(ns)
            .into_iter()
            .flatten()
            .filter_map(|(pool, _)| cx.specs.gpu_quotas.get(*pool))
            .map(|q| q.spec.pool.resource_name.as_str())
            .collect();
        resources.sort();
        resources.dedup();
        for r in resources {
            limit(r, g.to_string());
        }
    }
    if checks.is_empty() {
        return;
    }
    let name = format!("plinth-per-user-{ns}");
    let mut meta = cx.meta(&name, None, Some(ns), p);
    meta.namespace = None;
    sink.push(
        origin,
        admission::ValidatingAdmissionPolicy {
            metadata: meta,
            spec: Some(admission::ValidatingAdmissionPolicySpec {
                failure_policy: Some("Fail".to_owned()),
                match_constraints: Some(admission::MatchResources {
                    resource_rules: Some(vec![admission::NamedRuleWithOperations {
                        api_groups: Some(vec![String::new()]),
                        api_versions: Some(vec!["v1".to_owned()]),
                        operations: Some(vec!["CREATE".to_owned()]),
                        resources: Some(vec!["pods".to_owned()]),
                        ..admission::NamedRuleWithOperations::default()
                    }]),
                    ..admission::MatchResources::default()
                }),
                validations: Some(checks),
                ..admission::ValidatingAdmissionPolicySpec::default()
            }),
            ..admission::ValidatingAdmissionPolicy::default()
        },
    );
    sink.push(
        origin,
        admission::ValidatingAdmissionPolicyBinding {
            metadata: ObjectMeta {
                namespace: None,
                ..cx.meta(&name, None, Some(ns), p)
            },
            spec: Some(admission::ValidatingAdmissionPolicyBindingSpec {
                policy_name: Some(name.clone()),
                validation_actions: Some(vec!["Deny".to_owned()]),
                match_resources: Some(admission::MatchResources {
                    namespace_selector: Some(LabelSelector {
                        match_labels: Some(BTreeMap::from([(
                            "kubernetes.io/metadata.name".to_owned(),
                            ns.to_owned(),
                        )])),
                        ..LabelSelector::default()
                    }),
                    ..admission::MatchResources::default()
                }),
                ..admission::ValidatingAdmissionPolicyBindingSpec::default()
            }),
        },
    );
}
