//! Project → Namespace, ResourceQuota, LimitRange, ServiceAccount (the cloud side of its
//! identity in [`super::identity`]), RoleBindings, NetworkPolicy, shared PVC, the default Kueue queue (CPU only) and the admission policies of
//! per-user quota.
//!
//! Per-user quota has no built-in Kubernetes object that sums one user's pods. plinth emits
//! (documented in the README): a `ValidatingAdmissionPolicy` that caps what one container may
//! ask for (CPU, memory, GPUs: no single container above what one user may hold), on pods and on
//! every workload kind that carries a pod template, at create and update — so a Deployment is
//! refused when applied, not its ReplicaSet later; and (in [`super::gpu`]) a personal Kueue queue
//! per declared user, bounded by the same per-user GPU limit, so queued GPU work is capped per
//! user as a whole — with a second policy that lets only that user name it.
//!
//! The `default` LocalQueue (Kueue puts every unlabelled job of the namespace there) leads to
//! the project's CPU-only ClusterQueue `<project>` on the flavor `plinth-cpu`: CPU work never
//! lands on GPU nodes or spends GPU quota; GPU work names its pool's LocalQueue.

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

use super::context::{Ctx, Sink};
use super::rules::{WORKLOAD_SA, default_queue, gpu_queues};
use crate::crd::{self, kueue};
use crate::model::platform::CloudProvider;
use crate::model::project::Role;
use crate::model::{Kind, ProjectSpec};
use crate::output::Origin;
use crate::specs::Object;

/// Default container requests when a project sets none but has a quota.
const DEFAULT_CPU: &str = "100m";
const DEFAULT_MEMORY: &str = "256Mi";

fn q(s: &str) -> KQuantity {
    KQuantity(s.to_owned())
}

pub fn lower(cx: &Ctx<'_>, p: &Object<ProjectSpec>, sink: &mut Sink<'_>) {
    let origin = Origin::of(Kind::Project, p);
    namespace(cx, p, &origin, sink);
    resource_quota(cx, p, &origin, sink);
    limit_range(cx, p, &origin, sink);
    service_account(cx, p, &origin, sink);
    super::identity::lower(cx, p, sink);
    role_bindings(cx, p, &origin, sink);
    network_policy(cx, p, &origin, sink);
    shared_volume(cx, p, &origin, sink);
    default_kueue_queue(cx, p, &origin, sink);
    // Admission policies of per-user quota.
    container_cap_policy(cx, p, &origin, sink);
    user_queue_policy(cx, p, &origin, sink);
}

/// The project's Namespace: its pod-security level and descriptive annotations.
fn namespace(cx: &Ctx<'_>, p: &Object<ProjectSpec>, origin: &Origin, sink: &mut Sink<'_>) {
    let ns = p.name();
    let s = &p.spec;
    let project = Some(ns);
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
    let ann = meta.annotations.get_or_insert_with(BTreeMap::new);
    let gpu_queues = gpu_queues(cx, ns);
    if !gpu_queues.is_empty() {
        // The LocalQueues GPU work names (`kueue.x-k8s.io/queue-name`), one per pool.
        ann.insert("plinth.dev/gpu-queues".to_owned(), gpu_queues.join(","));
    }
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
        origin,
        Namespace {
            metadata: meta,
            ..Namespace::default()
        },
    );
}

/// The namespace's ResourceQuota, when the project sets a quota.
fn resource_quota(cx: &Ctx<'_>, p: &Object<ProjectSpec>, origin: &Origin, sink: &mut Sink<'_>) {
    let ns = p.name();
    let s = &p.spec;
    let project = Some(ns);
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
                origin,
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
}

/// The LimitRange of default requests (once a quota or defaults exist).
fn limit_range(cx: &Ctx<'_>, p: &Object<ProjectSpec>, origin: &Origin, sink: &mut Sink<'_>) {
    let ns = p.name();
    let s = &p.spec;
    let project = Some(ns);
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
        // No default limits: the LimitRanger gives a container without a limit the default
        // one even when it requests more, and the API server then rejects the pod (request
        // above limit). Kubernetes has no "default limit unless the request is higher".
        for (field, set) in [
            ("cpuLimit", d.and_then(|d| d.cpu_limit.as_ref()).is_some()),
            (
                "memoryLimit",
                d.and_then(|d| d.memory_limit.as_ref()).is_some(),
            ),
        ] {
            if set {
                sink.report(
                    crate::diag::Diagnostic::new(
                        crate::diag::Code::NotEnforced,
                        format!("`defaults.{field}` is not applied: as a LimitRange default it would be given to containers that request more, and Kubernetes would reject them"),
                    )
                    .at(p.at(&format!("spec.defaults.{field}")))
                    .hint("remove it; set limits in the workloads (plinth's models and apps always do), and cap containers with `perUserQuota`"),
                );
            }
        }
        sink.push(
            origin,
            LimitRange {
                metadata: cx.meta("defaults", Some(ns), project, p),
                spec: Some(LimitRangeSpec {
                    limits: vec![LimitRangeItem {
                        type_: "Container".to_owned(),
                        default_request: Some(request),
                        ..LimitRangeItem::default()
                    }],
                }),
            },
        );
    }
}

/// The workload ServiceAccount, annotated with the cloud identity of its provider.
fn service_account(cx: &Ctx<'_>, p: &Object<ProjectSpec>, origin: &Origin, sink: &mut Sink<'_>) {
    let ns = p.name();
    let s = &p.spec;
    let project = Some(ns);
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
                    // The `azure.workload.identity/use` label belongs on pods (see
                    // [`super::identity`]), not here.
                }
            }
            CloudProvider::OnPrem => {}
        }
        if sa_meta.annotations.as_ref().is_some_and(BTreeMap::is_empty) {
            sa_meta.annotations = None;
        }
    }
    sink.push(
        origin,
        ServiceAccount {
            metadata: sa_meta,
            ..ServiceAccount::default()
        },
    );
}

/// One RoleBinding per role, to the built-in ClusterRoles.
fn role_bindings(cx: &Ctx<'_>, p: &Object<ProjectSpec>, origin: &Origin, sink: &mut Sink<'_>) {
    let ns = p.name();
    let s = &p.spec;
    let project = Some(ns);
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
            origin,
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
}

/// The ingress isolation NetworkPolicy, when the project is isolated.
fn network_policy(cx: &Ctx<'_>, p: &Object<ProjectSpec>, origin: &Origin, sink: &mut Sink<'_>) {
    let ns = p.name();
    let s = &p.spec;
    let project = Some(ns);
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
            origin,
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
}

/// The project's shared ReadWriteMany volume.
fn shared_volume(cx: &Ctx<'_>, p: &Object<ProjectSpec>, origin: &Origin, sink: &mut Sink<'_>) {
    let ns = p.name();
    let s = &p.spec;
    let project = Some(ns);
    if let Some(sv) = &s.volumes.shared {
        let mut meta = cx.meta("shared", Some(ns), project, p);
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert("plinth.dev/mount-path".to_owned(), sv.mount_path.clone());
        sink.push(
            origin,
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
}

/// The CPU-only ClusterQueue and the `default` LocalQueue leading to it.
fn default_kueue_queue(
    cx: &Ctx<'_>,
    p: &Object<ProjectSpec>,
    origin: &Origin,
    sink: &mut Sink<'_>,
) {
    let ns = p.name();
    let s = &p.spec;
    let project = Some(ns);
    // Default Kueue queue: Kueue sends every job without a queue label here (its default
    // LocalQueue), so it leads to a CPU-only ClusterQueue bounded by the project's quota.
    if cx.platform.backends.kueue
        && let Some(cq) = default_queue(cx, ns)
    {
        let bound = |x: Option<&crate::model::Quantity>, unbounded: &str| {
            x.map_or_else(|| unbounded.to_owned(), |v| v.to_string())
        };
        let quota = s.quota.as_ref();
        sink.push_value(
            origin,
            crd::object(
                cx.meta(&cq, None, project, p),
                &kueue::ClusterQueueSpec {
                    cohort_name: None,
                    namespace_selector: kueue::LabelSelector {
                        match_labels: BTreeMap::from([(
                            "kubernetes.io/metadata.name".to_owned(),
                            ns.to_owned(),
                        )]),
                    },
                    queueing_strategy: "BestEffortFIFO".to_owned(),
                    resource_groups: vec![kueue::ResourceGroup {
                        covered_resources: vec!["cpu".to_owned(), "memory".to_owned()],
                        flavors: vec![kueue::FlavorQuotas {
                            name: super::rules::CPU_FLAVOR.to_owned(),
                            resources: vec![
                                kueue::ResourceQuota {
                                    name: "cpu".to_owned(),
                                    nominal_quota: bound(
                                        quota.and_then(|q| q.cpu.as_ref()),
                                        super::rules::UNBOUNDED_CPU,
                                    ),
                                    borrowing_limit: None,
                                    lending_limit: None,
                                },
                                kueue::ResourceQuota {
                                    name: "memory".to_owned(),
                                    nominal_quota: bound(
                                        quota.and_then(|q| q.memory.as_ref()),
                                        super::rules::UNBOUNDED_MEMORY,
                                    ),
                                    borrowing_limit: None,
                                    lending_limit: None,
                                },
                            ],
                        }],
                    }],
                    preemption: kueue::ClusterQueuePreemption {
                        reclaim_within_cohort: "Never".to_owned(),
                        borrow_within_cohort: None,
                        within_cluster_queue: "LowerPriority".to_owned(),
                    },
                },
            ),
        );
        sink.push_value(
            origin,
            crd::object(
                cx.meta("default", Some(ns), project, p),
                &kueue::LocalQueueSpec { cluster_queue: cq },
            ),
        );
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

/// Resources of pod templates and where their pod spec is, for admission policies: every
/// built-in kind that creates pods, so a workload is refused when it is applied (not its pods
/// later, out of sight).
fn pod_rules() -> Vec<admission::NamedRuleWithOperations> {
    let rule = |group: &str, resources: &[&str]| admission::NamedRuleWithOperations {
        api_groups: Some(vec![group.to_owned()]),
        api_versions: Some(vec!["v1".to_owned()]),
        operations: Some(vec!["CREATE".to_owned(), "UPDATE".to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        ..admission::NamedRuleWithOperations::default()
    };
    vec![
        rule("", &["pods"]),
        rule(
            "apps",
            &["deployments", "statefulsets", "daemonsets", "replicasets"],
        ),
        rule("batch", &["jobs", "cronjobs"]),
    ]
}

/// The pod spec of any of [`pod_rules`]' kinds, as a CEL expression.
const POD_SPEC: &str = "object.kind == 'Pod' ? object.spec : (object.kind == 'CronJob' ? object.spec.jobTemplate.spec.template.spec : object.spec.template.spec)";

/// The cluster cannot serve admission policies (before 1.30): warn, at `field`.
fn policies_unsupported(
    cx: &Ctx<'_>,
    p: &Object<ProjectSpec>,
    what: &str,
    field: &str,
    sink: &mut Sink<'_>,
) -> bool {
    if cx.minor_version() >= 30 {
        return false;
    }
    // `admissionregistration.k8s.io/v1` ValidatingAdmissionPolicy is served from 1.30.
    sink.report(
        crate::diag::Diagnostic::new(
            crate::diag::Code::NotEnforced,
            format!(
                "{what} of project `{}` is not enforced on cluster `{}`: it runs Kubernetes {}, and admission policies need 1.30",
                p.name(),
                cx.cluster.name,
                cx.cluster.kubernetes_version
            ),
        )
        .at(p.at(field))
        .hint("upgrade the cluster, or keep the project off it; per-user GPU queues still apply"),
    );
    true
}

/// The per-container cap of per-user quota: no container above what one user may hold. GPU
/// limits per resource are those of the user's queues (the lower of the pool's `perUserGpu` and
/// the project's `perUserQuota.gpu`; the highest over pools sharing a resource).
fn container_cap_policy(
    cx: &Ctx<'_>,
    p: &Object<ProjectSpec>,
    origin: &Origin,
    sink: &mut Sink<'_>,
) {
    let ns = p.name();
    let pu = p.spec.per_user_quota.as_ref();
    let mut caps: Vec<(String, String)> = Vec::new();
    if let Some(c) = pu.and_then(|u| u.cpu.as_ref()) {
        caps.push(("cpu".to_owned(), c.to_string()));
    }
    if let Some(m) = pu.and_then(|u| u.memory.as_ref()) {
        caps.push(("memory".to_owned(), m.to_string()));
    }
    let mut gpu: BTreeMap<&str, u32> = BTreeMap::new();
    for (pool, _) in cx.index.allocations.get(ns).into_iter().flatten() {
        if let Some(q) = cx.specs.gpu_quotas.get(*pool)
            && let Some(limit) = super::rules::per_user_limit(cx, &q.spec, ns)
        {
            let e = gpu.entry(q.spec.pool.resource_name.as_str()).or_insert(0);
            *e = (*e).max(limit);
        }
    }
    caps.extend(gpu.into_iter().map(|(r, n)| (r.to_owned(), n.to_string())));
    if caps.is_empty() {
        return;
    }
    if policies_unsupported(cx, p, "the per-user quota", "spec.perUserQuota", sink) {
        return;
    }
    let checks = caps
        .iter()
        .map(|(resource, max)| admission::Validation {
            expression: format!(
                "(variables.spec.containers + (has(variables.spec.initContainers) ? variables.spec.initContainers : [])).all(c, !has(c.resources) || !has(c.resources.requests) || !('{resource}' in c.resources.requests) || quantity(c.resources.requests['{resource}']).compareTo(quantity('{max}')) <= 0)"
            ),
            message: Some(format!("a container may request at most {max} of `{resource}`: no container may hold more than one user's quota in project `{ns}`")),
            reason: Some("Forbidden".to_owned()),
            message_expression: None,
        })
        .collect();
    let name = format!("plinth-container-cap-{ns}");
    push_policy(cx, p, &name, checks, Vec::new(), origin, sink);
}

/// Per-user LocalQueues are their user's: a policy refuses a workload naming one unless the
/// request comes from that user (or from Kubernetes' own controllers creating pods from a
/// template the user wrote). Checked when the object is created or its queue label changes.
fn user_queue_policy(cx: &Ctx<'_>, p: &Object<ProjectSpec>, origin: &Origin, sink: &mut Sink<'_>) {
    let ns = p.name();
    let users = super::rules::declared_users(cx, ns);
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    for (pool, _) in cx.index.allocations.get(ns).into_iter().flatten() {
        let Some(q) = cx.specs.gpu_quotas.get(*pool) else {
            continue;
        };
        if !cx.has_pool(pool) || super::rules::per_user_limit(cx, &q.spec, ns).is_none() {
            continue;
        }
        for u in &users {
            owners.insert(
                super::rules::user_queue_name(pool, u),
                format!("{}{u}", cx.platform.identity.user_prefix),
            );
        }
    }
    if owners.is_empty() || !cx.platform.backends.kueue {
        return;
    }
    if policies_unsupported(
        cx,
        p,
        "who may use the per-user queues",
        "spec.perUserQuota",
        sink,
    ) {
        return;
    }
    let cel = |s: &str| s.replace('\\', "\\\\").replace('\'', "\\'");
    let map = owners
        .iter()
        .map(|(q, u)| format!("'{}': '{}'", cel(q), cel(u)))
        .collect::<Vec<_>>()
        .join(", ");
    let label = super::rules::QUEUE_LABEL;
    let queue_of = |obj: &str| {
        format!(
            "({obj}.kind == 'CronJob' ? (has({obj}.spec.jobTemplate.metadata) && has({obj}.spec.jobTemplate.metadata.labels) && '{label}' in {obj}.spec.jobTemplate.metadata.labels ? {obj}.spec.jobTemplate.metadata.labels['{label}'] : '') : (has({obj}.metadata.labels) && '{label}' in {obj}.metadata.labels ? {obj}.metadata.labels['{label}'] : ''))"
        )
    };
    let variables = vec![
        admission::Variable {
            name: "queue".to_owned(),
            expression: queue_of("object"),
        },
        admission::Variable {
            name: "owners".to_owned(),
            expression: format!("{{{map}}}"),
        },
    ];
    let checks = vec![admission::Validation {
        expression: "!(variables.queue in variables.owners) || variables.owners[variables.queue] == request.userInfo.username".to_owned(),
        message: None,
        message_expression: Some(format!(
            "'LocalQueue ' + variables.queue + ' of project {ns} belongs to ' + variables.owners[variables.queue] + ': only that user may queue work in it'"
        )),
        reason: Some("Forbidden".to_owned()),
    }];
    let conditions = vec![
        admission::MatchCondition {
            name: "not-a-pod-controller".to_owned(),
            expression:
                "!request.userInfo.username.startsWith('system:serviceaccount:kube-system:')"
                    .to_owned(),
        },
        admission::MatchCondition {
            name: "queue-set-or-changed".to_owned(),
            expression: format!(
                "request.operation == 'CREATE' || {} != {}",
                queue_of("object"),
                queue_of("oldObject")
            ),
        },
    ];
    let name = format!("plinth-user-queues-{ns}");
    let mut pol = PolicyParts {
        checks,
        variables,
        conditions,
    };
    push_policy_parts(cx, p, &name, &mut pol, origin, sink);
}

struct PolicyParts {
    checks: Vec<admission::Validation>,
    variables: Vec<admission::Variable>,
    conditions: Vec<admission::MatchCondition>,
}

fn push_policy(
    cx: &Ctx<'_>,
    p: &Object<ProjectSpec>,
    name: &str,
    checks: Vec<admission::Validation>,
    conditions: Vec<admission::MatchCondition>,
    origin: &Origin,
    sink: &mut Sink<'_>,
) {
    let mut parts = PolicyParts {
        checks,
        variables: vec![admission::Variable {
            name: "spec".to_owned(),
            expression: POD_SPEC.to_owned(),
        }],
        conditions,
    };
    push_policy_parts(cx, p, name, &mut parts, origin, sink);
}

/// A ValidatingAdmissionPolicy over [`pod_rules`] and its binding to the project namespace.
fn push_policy_parts(
    cx: &Ctx<'_>,
    p: &Object<ProjectSpec>,
    name: &str,
    parts: &mut PolicyParts,
    origin: &Origin,
    sink: &mut Sink<'_>,
) {
    let ns = p.name();
    let mut meta = cx.meta(name, None, Some(ns), p);
    meta.namespace = None;
    sink.push(
        origin,
        admission::ValidatingAdmissionPolicy {
            metadata: meta,
            spec: Some(admission::ValidatingAdmissionPolicySpec {
                failure_policy: Some("Fail".to_owned()),
                match_constraints: Some(admission::MatchResources {
                    resource_rules: Some(pod_rules()),
                    ..admission::MatchResources::default()
                }),
                match_conditions: if parts.conditions.is_empty() {
                    None
                } else {
                    Some(std::mem::take(&mut parts.conditions))
                },
                variables: Some(std::mem::take(&mut parts.variables)),
                validations: Some(std::mem::take(&mut parts.checks)),
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
                ..cx.meta(name, None, Some(ns), p)
            },
            spec: Some(admission::ValidatingAdmissionPolicyBindingSpec {
                policy_name: Some(name.to_owned()),
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
