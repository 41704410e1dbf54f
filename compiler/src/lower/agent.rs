//! Platform `spec.agent` → the plinth agent's install manifests, for every cluster:
//! Namespace, ServiceAccount, a least-privilege ClusterRole and its ClusterRoleBinding, the
//! Deployment and its Service.
//!
//! The ClusterRole is derived from what plinth emits for the cluster ([`rules_for`]):
//! - `get`, `create`, `patch` (server-side apply), `delete` on the kinds emitted (the agent's
//!   own objects and the inventory ConfigMap included);
//! - `get` and `delete` only on the other kinds plinth can emit (the built-in kinds of
//!   [`crate::verify`]'s table, [`BUILTIN_KINDS`], and the custom resources of
//!   [`crd::kinds`]): what a previous commit applied must still be prunable;
//! - ClusterRoles and ClusterRoleBindings only by name (`resourceNames`: the ones emitted);
//! - `bind` only on the roles the emitted bindings refer to, by name;
//! - `escalate` only by name, on emitted roles granting something the agent does not hold
//!   itself (the API server refuses to write such a role otherwise) — its own ClusterRole
//!   among them when it grows, so that a platform emitting a new kind can widen it;
//! - creating and patching `events.k8s.io` Events (the audit trail).
//!
//! The Deployment runs one replica (`Recreate`: never two agents at once) as a non-root user
//! with a read-only root filesystem, no capabilities, the default seccomp profile; probes on
//! `/healthz` and `/readyz`; the token Secret (`spec.agent.tokenSecret`, keys `token` and
//! optionally `webhook-secret`, created outside plinth) mounted as files; an `emptyDir` for
//! the git mirror and one for `/tmp`. The Service exposes port 8080 for webhooks
//! (`/hooks/git`) and metrics.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, Namespace, ObjectFieldSelector, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SeccompProfile, SecretVolumeSource, SecurityContext, Service,
    ServiceAccount, ServicePort, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use serde_json::Value;

use super::context::{Ctx, Sink};
use crate::crd;
use crate::model::platform::{AgentSettings, DriftMode};
use crate::model::{Kind, PlatformSpec};
use crate::output::Origin;
use crate::specs::Object;

/// Name of the agent's ServiceAccount, ClusterRole, binding, Deployment and Service.
pub const NAME: &str = "plinth-agent";
/// The port of `/metrics`, `/healthz`, `/readyz` and `/hooks/git`.
pub const PORT: i32 = 8080;
/// Where the token Secret is mounted.
pub const SECRET_DIR: &str = "/var/run/secrets/plinth";
/// Where the git mirror lives.
pub const CACHE_DIR: &str = "/var/cache/plinth";
/// The agent's user and group (distroless `nonroot`).
const UID: i64 = 65_532;

/// The built-in kinds plinth emits, as the API serves them: (apiVersion, kind, plural,
/// namespaced). Equal to the table of `verify.rs` (a test reads it).
pub const BUILTIN_KINDS: &[(&str, &str, &str, bool)] = &[
    ("v1", "Namespace", "namespaces", false),
    ("v1", "ResourceQuota", "resourcequotas", true),
    ("v1", "LimitRange", "limitranges", true),
    ("v1", "ServiceAccount", "serviceaccounts", true),
    ("v1", "PersistentVolume", "persistentvolumes", false),
    (
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
    ),
    ("v1", "ConfigMap", "configmaps", true),
    ("v1", "Secret", "secrets", true),
    ("v1", "Service", "services", true),
    ("v1", "Pod", "pods", true),
    ("apps/v1", "Deployment", "deployments", true),
    ("apps/v1", "StatefulSet", "statefulsets", true),
    ("batch/v1", "Job", "jobs", true),
    ("batch/v1", "CronJob", "cronjobs", true),
    (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
        true,
    ),
    (
        "networking.k8s.io/v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    ("networking.k8s.io/v1", "Ingress", "ingresses", true),
    (
        "policy/v1",
        "PodDisruptionBudget",
        "poddisruptionbudgets",
        true,
    ),
    ("rbac.authorization.k8s.io/v1", "Role", "roles", true),
    (
        "rbac.authorization.k8s.io/v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRole",
        "clusterroles",
        false,
    ),
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
        "clusterrolebindings",
        false,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicy",
        "validatingadmissionpolicies",
        false,
    ),
    (
        "admissionregistration.k8s.io/v1",
        "ValidatingAdmissionPolicyBinding",
        "validatingadmissionpolicybindings",
        false,
    ),
];

/// The resource name of a kind, as the API server derives it.
pub fn plural(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with('s')
        || lower.ends_with('x')
        || lower.ends_with("ch")
        || lower.ends_with("sh")
    {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y')
        && !stem.ends_with(['a', 'e', 'i', 'o', 'u'])
    {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    }
}

fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map_or("", |(g, _)| g)
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| (*s).to_owned()).collect()
}

/// A string field of an object (empty when absent).
fn json_str(o: &Value, p: &str) -> String {
    o.pointer(p)
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned()
}

/// What plinth can emit at all: (group, resource).
fn known_resources() -> std::collections::BTreeSet<(String, String)> {
    let mut known: std::collections::BTreeSet<(String, String)> = BUILTIN_KINDS
        .iter()
        .map(|(v, _, p, _)| (group_of(v).to_owned(), (*p).to_owned()))
        .collect();
    known.extend(
        crd::kinds()
            .iter()
            .map(|(v, k, _)| (group_of(v).to_owned(), plural(k))),
    );
    known
}

/// The (group, resource) of an emitted object.
fn resource_of(o: &Value) -> (String, String) {
    let (v, k) = (json_str(o, "/apiVersion"), json_str(o, "/kind"));
    let p = BUILTIN_KINDS
        .iter()
        .find(|(bv, bk, _, _)| *bv == v && *bk == k)
        .map_or_else(|| plural(&k), |(_, _, p, _)| (*p).to_owned());
    (group_of(&v).to_owned(), p)
}

/// Roles that grant more than the agent holds (`rules`): `escalate` on them, by name.
fn escalated_roles(
    emitted: &[std::borrow::Cow<'_, Value>],
    rules: &[PolicyRule],
) -> BTreeMap<String, std::collections::BTreeSet<String>> {
    let rbac = "rbac.authorization.k8s.io";
    let field = json_str;
    let mut escalate: BTreeMap<String, std::collections::BTreeSet<String>> = BTreeMap::new();
    for o in emitted {
        let (g, r) = resource_of(o);
        if g != rbac || (r != "roles" && r != "clusterroles") {
            continue;
        }
        let grants: Vec<PolicyRule> = o
            .get("rules")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .unwrap_or_default();
        if grants.iter().any(|g| !held(rules, g)) {
            escalate
                .entry(r)
                .or_default()
                .insert(field(o, "/metadata/name"));
        }
    }
    escalate
}

/// The ClusterRole's rules for objects `emitted` (the agent's own included), per API group,
/// resources sorted. See the module documentation.
pub fn rules_for(emitted: &[std::borrow::Cow<'_, Value>]) -> Vec<PolicyRule> {
    use std::collections::BTreeSet;
    type Set = BTreeSet<String>;
    let rbac = "rbac.authorization.k8s.io";
    let field = json_str;
    let known = known_resources();
    let mut written: BTreeSet<(String, String)> = BTreeSet::new();
    // The inventory ConfigMap, and the namespace it lives in.
    written.insert((String::new(), "configmaps".to_owned()));
    written.insert((String::new(), "namespaces".to_owned()));
    let mut named: BTreeMap<String, Set> = BTreeMap::new();
    let mut bind: BTreeMap<String, Set> = BTreeMap::new();
    for o in emitted {
        let (g, r) = resource_of(o);
        if g == rbac && (r == "clusterroles" || r == "clusterrolebindings") {
            named
                .entry(r.clone())
                .or_default()
                .insert(field(o, "/metadata/name"));
        } else {
            written.insert((g.clone(), r.clone()));
        }
        if g == rbac && (r == "rolebindings" || r == "clusterrolebindings") {
            let role = match field(o, "/roleRef/kind").as_str() {
                "ClusterRole" => "clusterroles",
                _ => "roles",
            };
            bind.entry(role.to_owned())
                .or_default()
                .insert(field(o, "/roleRef/name"));
        }
    }
    let full = ["get", "create", "patch", "delete"];
    let mut by_group: BTreeMap<(String, bool), Set> = BTreeMap::new();
    for (g, r) in &written {
        by_group
            .entry((g.clone(), true))
            .or_default()
            .insert(r.clone());
    }
    for (g, r) in &known {
        let cluster_rbac = g == rbac && (r == "clusterroles" || r == "clusterrolebindings");
        if !written.contains(&(g.clone(), r.clone())) && !cluster_rbac {
            by_group
                .entry((g.clone(), false))
                .or_default()
                .insert(r.clone());
        }
    }
    let rule =
        |group: &str, resources: Vec<String>, verbs: &[&str], names: Option<&Set>| PolicyRule {
            api_groups: Some(vec![group.to_owned()]),
            resources: Some(resources),
            verbs: strings(verbs),
            resource_names: names.map(|n| n.iter().cloned().collect()),
            ..PolicyRule::default()
        };
    let mut rules: Vec<PolicyRule> = by_group
        .into_iter()
        .map(|((group, write), resources)| {
            let verbs: &[&str] = if write { &full } else { &["get", "delete"] };
            rule(&group, resources.into_iter().collect(), verbs, None)
        })
        .collect();
    for (resource, names) in &named {
        rules.push(rule(rbac, vec![resource.clone()], &full, Some(names)));
    }
    for (resource, names) in &bind {
        rules.push(rule(rbac, vec![resource.clone()], &["bind"], Some(names)));
    }
    rules.push(rule(
        "events.k8s.io",
        strings(&["events"]),
        &["create", "patch"],
        None,
    ));
    // Before deleting a namespace the agent lists everything in it (every namespaced kind the
    // cluster serves): a namespace holding anything plinth does not own is held, not deleted.
    // Without `list` that check is refused and no namespace is ever pruned. Read-only, and
    // the only rule not narrowed to the kinds plinth emits.
    rules.push(PolicyRule {
        api_groups: Some(strings(&["*"])),
        resources: Some(strings(&["*"])),
        verbs: strings(&["list"]),
        ..PolicyRule::default()
    });
    let escalate = escalated_roles(emitted, &rules);
    for (resource, names) in &escalate {
        rules.push(rule(
            rbac,
            vec![resource.clone()],
            &["escalate"],
            Some(names),
        ));
    }
    rules
}

/// `emitted` and the agent's own install objects (as far as its rules are concerned: kinds,
/// names, the binding's role). Its own ClusterRole is not given `escalate`: a platform that
/// starts emitting a new kind needs the install manifests applied once by an administrator
/// (the agent cannot widen its own rights); until then that apply is refused and reported.
pub fn with_own<'a>(emitted: &[&'a Value]) -> Vec<std::borrow::Cow<'a, Value>> {
    use std::borrow::Cow;
    let mut v: Vec<Cow<'a, Value>> = emitted.iter().map(|o| Cow::Borrowed(*o)).collect();
    for (api_version, kind) in [
        ("v1", "Namespace"),
        ("v1", "ServiceAccount"),
        ("v1", "Service"),
        ("apps/v1", "Deployment"),
        ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ] {
        v.push(Cow::Owned(serde_json::json!({
            "apiVersion": api_version, "kind": kind, "metadata": {"name": NAME},
        })));
    }
    v.push(Cow::Owned(serde_json::json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": NAME},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
    })));
    v
}

/// Whether `rules` grant everything `wanted` does (no wildcards are granted by `rules`;
/// a wildcard or a non-resource URL in `wanted` is never held).
pub fn held(rules: &[PolicyRule], wanted: &PolicyRule) -> bool {
    if wanted
        .non_resource_urls
        .as_ref()
        .is_some_and(|u| !u.is_empty())
    {
        return false;
    }
    let groups = wanted.api_groups.clone().unwrap_or_default();
    let resources = wanted.resources.clone().unwrap_or_default();
    groups.iter().all(|g| {
        resources.iter().all(|r| {
            wanted.verbs.iter().all(|v| {
                rules.iter().any(|have| {
                    have.api_groups.as_deref().unwrap_or_default().contains(g)
                        && have.resources.as_deref().unwrap_or_default().contains(r)
                        && have.verbs.contains(v)
                        && have.resource_names.as_ref().is_none_or(|have_names| {
                            wanted.resource_names.as_ref().is_some_and(|w| {
                                !w.is_empty() && w.iter().all(|n| have_names.contains(n))
                            })
                        })
                })
            })
        })
    })
}

/// The agent's command line for one cluster.
pub fn args(a: &AgentSettings, cluster: &str) -> Vec<String> {
    let interval = a
        .interval
        .seconds()
        .map_or_else(|| a.interval.to_string(), |s| format!("{}s", s.max(1)));
    let mut v = vec![
        "run".to_owned(),
        format!("--repo={}", a.repo),
        format!("--branch={}", a.branch),
        format!("--cluster={cluster}"),
        format!("--interval={interval}"),
        format!("--forge={}", a.forge.as_str()),
    ];
    if !a.path.is_empty() {
        v.push(format!("--path={}", a.path));
    }
    if let Some(u) = &a.forge_url {
        v.push(format!("--forge-url={u}"));
    }
    if let Some(r) = &a.forge_repo {
        v.push(format!("--forge-repo={r}"));
    }
    v.extend([
        format!("--token-file={SECRET_DIR}/token"),
        format!("--webhook-secret-file={SECRET_DIR}/webhook-secret"),
        format!("--listen=0.0.0.0:{PORT}"),
        // A directory the agent creates itself (`0700`): the volume's root is the kubelet's.
        format!("--cache-dir={CACHE_DIR}/mirror"),
        "--log-format=json".to_owned(),
        format!(
            "--drift={}",
            match a.drift {
                DriftMode::Detect => "detect",
                DriftMode::Heal => "heal",
            }
        ),
    ]);
    if a.prune {
        v.push("--prune".to_owned());
    }
    v
}

fn probe(path: &str, initial: i32, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String("http".to_owned()),
            ..HTTPGetAction::default()
        }),
        initial_delay_seconds: Some(initial),
        period_seconds: Some(period),
        failure_threshold: Some(3),
        timeout_seconds: Some(5),
        ..Probe::default()
    }
}

/// The agent's install manifests; `emitted` is everything else the cluster receives (its
/// ClusterRole is derived from it).
pub fn lower(cx: &Ctx<'_>, p: &Object<PlatformSpec>, emitted: &[&Value], sink: &mut Sink<'_>) {
    let Some(a) = p.spec.agent.as_ref().filter(|a| a.enabled) else {
        return;
    };
    let origin = Origin::at(Kind::Platform, p, "spec.agent");
    let ns = a.namespace.as_str();
    let meta = |name: &str, namespace: Option<&str>| -> ObjectMeta {
        let mut m = cx.meta(name, namespace, None, p);
        let labels = m.labels.get_or_insert_with(BTreeMap::new);
        labels.insert("app.kubernetes.io/name".to_owned(), NAME.to_owned());
        labels.insert("app.kubernetes.io/component".to_owned(), "agent".to_owned());
        m
    };
    let selector: BTreeMap<String, String> =
        [("app.kubernetes.io/name".to_owned(), NAME.to_owned())].into();

    let mut ns_meta = meta(ns, None);
    let labels = ns_meta.labels.get_or_insert_with(BTreeMap::new);
    for mode in ["enforce", "audit", "warn"] {
        labels.insert(
            format!("pod-security.kubernetes.io/{mode}"),
            "restricted".to_owned(),
        );
    }
    sink.push(
        &origin,
        Namespace {
            metadata: ns_meta,
            ..Namespace::default()
        },
    );
    sink.push(
        &origin,
        ServiceAccount {
            metadata: meta(NAME, Some(ns)),
            ..ServiceAccount::default()
        },
    );
    sink.push(
        &origin,
        ClusterRole {
            metadata: meta(NAME, None),
            rules: Some(rules_for(&with_own(emitted))),
            ..ClusterRole::default()
        },
    );
    sink.push(
        &origin,
        ClusterRoleBinding {
            metadata: meta(NAME, None),
            role_ref: RoleRef {
                api_group: "rbac.authorization.k8s.io".to_owned(),
                kind: "ClusterRole".to_owned(),
                name: NAME.to_owned(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".to_owned(),
                name: NAME.to_owned(),
                namespace: Some(ns.to_owned()),
                ..Subject::default()
            }]),
        },
    );

    let container = container(cx, a);
    let pod = pod_spec(a, container);
    let mut template_meta = ObjectMeta {
        labels: Some(selector.clone()),
        ..ObjectMeta::default()
    };
    if let Some(l) = template_meta.labels.as_mut() {
        l.insert("app.kubernetes.io/component".to_owned(), "agent".to_owned());
    }
    sink.push(
        &origin,
        Deployment {
            metadata: meta(NAME, Some(ns)),
            spec: Some(DeploymentSpec {
                replicas: Some(1),
                selector: LabelSelector {
                    match_labels: Some(selector.clone()),
                    ..LabelSelector::default()
                },
                strategy: Some(DeploymentStrategy {
                    type_: Some("Recreate".to_owned()),
                    ..DeploymentStrategy::default()
                }),
                template: PodTemplateSpec {
                    metadata: Some(template_meta),
                    spec: Some(pod),
                },
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        },
    );
    sink.push(
        &origin,
        Service {
            metadata: meta(NAME, Some(ns)),
            spec: Some(ServiceSpec {
                type_: Some("ClusterIP".to_owned()),
                selector: Some(selector),
                ports: Some(vec![ServicePort {
                    name: Some("http".to_owned()),
                    port: PORT,
                    target_port: Some(IntOrString::String("http".to_owned())),
                    protocol: Some("TCP".to_owned()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        },
    );
}

/// The agent's container: its arguments, probes, resources and a restricted security context.
fn container(cx: &Ctx<'_>, a: &AgentSettings) -> Container {
    let q = |s: &str| Quantity(s.to_owned());
    Container {
        name: "agent".to_owned(),
        image: Some(a.image.clone()),
        args: Some(args(a, &cx.cluster.name)),
        env: Some(vec![
            EnvVar {
                name: "POD_NAME".to_owned(),
                value_from: Some(EnvVarSource {
                    field_ref: Some(ObjectFieldSelector {
                        field_path: "metadata.name".to_owned(),
                        ..ObjectFieldSelector::default()
                    }),
                    ..EnvVarSource::default()
                }),
                ..EnvVar::default()
            },
            EnvVar {
                name: "HOME".to_owned(),
                value: Some("/tmp".to_owned()),
                ..EnvVar::default()
            },
        ]),
        ports: Some(vec![ContainerPort {
            name: Some("http".to_owned()),
            container_port: PORT,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        resources: Some(ResourceRequirements {
            requests: Some(
                [
                    ("cpu".to_owned(), q("100m")),
                    ("memory".to_owned(), q("256Mi")),
                ]
                .into(),
            ),
            limits: Some([("memory".to_owned(), q("1Gi"))].into()),
            ..ResourceRequirements::default()
        }),
        liveness_probe: Some(probe("/healthz", 10, 20)),
        readiness_probe: Some(probe("/readyz", 5, 10)),
        security_context: Some(SecurityContext {
            allow_privilege_escalation: Some(false),
            read_only_root_filesystem: Some(true),
            run_as_non_root: Some(true),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                ..Capabilities::default()
            }),
            ..SecurityContext::default()
        }),
        volume_mounts: Some(vec![
            VolumeMount {
                name: "token".to_owned(),
                mount_path: SECRET_DIR.to_owned(),
                read_only: Some(true),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "cache".to_owned(),
                mount_path: CACHE_DIR.to_owned(),
                ..VolumeMount::default()
            },
            VolumeMount {
                name: "tmp".to_owned(),
                mount_path: "/tmp".to_owned(),
                ..VolumeMount::default()
            },
        ]),
        ..Container::default()
    }
}

/// The agent's pod: its service account, restricted pod security context and volumes.
fn pod_spec(a: &AgentSettings, container: Container) -> PodSpec {
    let q = |s: &str| Quantity(s.to_owned());
    PodSpec {
        service_account_name: Some(NAME.to_owned()),
        security_context: Some(PodSecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(UID),
            run_as_group: Some(UID),
            fs_group: Some(UID),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                ..SeccompProfile::default()
            }),
            ..PodSecurityContext::default()
        }),
        containers: vec![container],
        volumes: Some(vec![
            Volume {
                name: "token".to_owned(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(a.token_secret.clone()),
                    optional: Some(true),
                    default_mode: Some(0o440),
                    ..SecretVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "cache".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(q("2Gi")),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            },
            Volume {
                name: "tmp".to_owned(),
                empty_dir: Some(EmptyDirVolumeSource {
                    size_limit: Some(q("256Mi")),
                    ..EmptyDirVolumeSource::default()
                }),
                ..Volume::default()
            },
        ]),
        ..PodSpec::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// `("apiVersion", "Kind") =>` entries of `verify.rs`'s `builtin()` table.
    fn verify_table() -> Vec<(String, String)> {
        let src = include_str!("../verify.rs");
        let start = src.find("fn builtin(").expect("builtin() in verify.rs");
        let body = &src[start..];
        let end = body.find("_ => return None").expect("the end of the table");
        let mut out = Vec::new();
        let mut rest = &body[..end];
        while let Some(i) = rest.find("(\"") {
            rest = &rest[i + 2..];
            let Some(j) = rest.find('"') else { break };
            let v = rest[..j].to_owned();
            rest = &rest[j..];
            let Some(k) = rest.find(", \"") else { break };
            rest = &rest[k + 3..];
            let Some(l) = rest.find('"') else { break };
            out.push((v, rest[..l].to_owned()));
            rest = &rest[l..];
        }
        out
    }

    #[test]
    fn the_cluster_role_covers_exactly_the_kinds_plinth_emits() {
        let table: std::collections::BTreeSet<(String, String)> =
            verify_table().into_iter().collect();
        let ours: std::collections::BTreeSet<(String, String)> = BUILTIN_KINDS
            .iter()
            .map(|(v, k, _, _)| ((*v).to_owned(), (*k).to_owned()))
            .collect();
        assert_eq!(
            ours, table,
            "BUILTIN_KINDS must equal verify.rs's builtin() table"
        );
        // Plurals and scopes as the API server has them.
        for (v, k, plural, namespaced) in BUILTIN_KINDS {
            assert_eq!(super::plural(k), *plural, "{k}");
            let mut meta = json!({"name": "x"});
            if *namespaced {
                meta["namespace"] = json!("ns");
            }
            let m = crate::lower::Manifest {
                key: crate::lower::ObjectKey {
                    api_version: (*v).to_owned(),
                    kind: (*k).to_owned(),
                    namespace: namespaced.then(|| "ns".to_owned()),
                    name: "x".to_owned(),
                },
                object: json!({"apiVersion": v, "kind": k, "metadata": meta}).into(),
                origin: crate::lower::Origin {
                    file: "plinth.yaml".into(),
                    line: 1,
                    kind: Kind::Platform,
                    name: "p".into(),
                },
                hash: String::new(),
            };
            // A kind verify knows, in the right scope (a minimal object may lack required
            // fields, e.g. a RoleBinding's `roleRef`).
            if let Err(e) = crate::verify::verify_one(&m) {
                assert!(
                    !e.contains("no schema") && !e.contains("namespace"),
                    "{v} {k}: {e}"
                );
            }
        }
        // Nothing emitted but the agent itself: every kind plinth can emit may be read and
        // deleted (pruned), none written.
        let rules = rules_for(&with_own(&[]));
        let covered = |group: &str, resource: &str, verb: &str| {
            rules.iter().any(|r| {
                r.api_groups
                    .as_deref()
                    .unwrap_or_default()
                    .iter()
                    .any(|g| g == group)
                    && r.resources
                        .as_deref()
                        .unwrap_or_default()
                        .iter()
                        .any(|x| x == resource)
                    && r.verbs.iter().any(|x| x == verb)
            })
        };
        for (v, k, _) in crd::kinds() {
            assert!(covered(group_of(v), &plural(k), "delete"), "{v} {k}");
            assert!(!covered(group_of(v), &plural(k), "patch"), "{v} {k}");
        }
        assert!(covered("", "configmaps", "patch"), "the inventory");
        assert!(
            covered("apps", "deployments", "patch"),
            "its own Deployment"
        );
        assert!(covered("events.k8s.io", "events", "create"));
        assert!(covered("rbac.authorization.k8s.io", "clusterroles", "bind"));
        assert!(!covered("", "nodes", "get"), "nothing else");
        assert!(!covered("apps", "daemonsets", "get"), "nothing else");
        // `list` only in the one read-only rule the held-namespace check needs.
        for r in &rules {
            assert!(!r.verbs.iter().any(|v| v == "*"), "{r:?}");
            if r.verbs.iter().any(|v| v == "list") {
                assert_eq!(r.verbs, ["list"], "{r:?}");
            }
        }
        assert_eq!(plural("ResourcePolicy"), "resourcepolicies");
        assert_eq!(plural("Gateway"), "gateways");
    }

    #[test]
    fn the_cluster_role_is_no_wider_than_the_output() {
        let rbac = "rbac.authorization.k8s.io";
        let emitted = [
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q", "namespace": "er"}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "editors", "namespace": "er"},
                   "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": "edit"}}),
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                   "metadata": {"name": "launcher", "namespace": "er"},
                   "roleRef": {"apiGroup": rbac, "kind": "Role", "name": "launcher"}}),
            // Grants what the agent does not hold (the `scale` subresource): needs `escalate`.
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": "launcher", "namespace": "er"},
                   "rules": [{"apiGroups": ["apps"], "resources": ["statefulsets/scale"], "verbs": ["patch"]}]}),
            // Grants only what the agent holds: no `escalate`.
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
                   "metadata": {"name": "reader", "namespace": "er"},
                   "rules": [{"apiGroups": [""], "resources": ["resourcequotas"], "verbs": ["get"]}]}),
        ];
        let refs: Vec<&Value> = emitted.iter().collect();
        let rules = rules_for(&with_own(&refs));
        let find = |verb: &str, resource: &str| -> Vec<&PolicyRule> {
            rules
                .iter()
                .filter(|r| {
                    r.verbs.iter().any(|v| v == verb)
                        && r.resources
                            .as_deref()
                            .unwrap_or_default()
                            .iter()
                            .any(|x| x == resource)
                })
                .collect()
        };
        let names = |r: &PolicyRule| r.resource_names.clone().unwrap_or_default();
        // `bind`: exactly the roles the bindings refer to, by name.
        let bind = find("bind", "clusterroles");
        assert_eq!(bind.len(), 1);
        assert_eq!(names(bind[0]), ["edit", NAME]);
        assert_eq!(names(find("bind", "roles")[0]), ["launcher"]);
        // `escalate`: only on the role that grants more than the agent holds.
        let esc: Vec<&PolicyRule> = rules
            .iter()
            .filter(|r| r.verbs.iter().any(|v| v == "escalate"))
            .collect();
        assert_eq!(esc.len(), 1, "{esc:?}");
        assert_eq!(esc[0].resources.as_deref(), Some(&["roles".to_owned()][..]));
        assert_eq!(names(esc[0]), ["launcher"]);
        // ClusterRoles and ClusterRoleBindings: only the agent's own, by name, for every verb.
        for resource in ["clusterroles", "clusterrolebindings"] {
            for verb in ["get", "create", "patch", "delete"] {
                let r = find(verb, resource);
                assert!(!r.is_empty(), "{verb} {resource}");
                assert!(
                    r.iter().all(|r| names(r) == [NAME]),
                    "{verb} {resource}: {r:?}"
                );
            }
        }
        // Written (create, patch): only the kinds emitted, the agent's and the inventory's.
        let written: std::collections::BTreeSet<String> = rules
            .iter()
            .filter(|r| r.verbs.iter().any(|v| v == "create" || v == "patch"))
            .filter(|r| r.api_groups.as_deref() != Some(&["events.k8s.io".to_owned()][..]))
            .flat_map(|r| r.resources.clone().unwrap_or_default())
            .collect();
        let expected: std::collections::BTreeSet<String> = [
            "resourcequotas",
            "rolebindings",
            "roles",
            "namespaces",
            "serviceaccounts",
            "services",
            "deployments",
            "configmaps",
            "clusterroles",
            "clusterrolebindings",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        assert_eq!(written, expected);
        assert!(find("patch", "statefulsets").is_empty());
        assert!(!find("delete", "statefulsets").is_empty(), "prunable");
        // No wildcard verb, no resource-name-free rule on cluster-wide RBAC; a wildcard
        // resource only for the read-only `list` of the held-namespace check.
        for r in &rules {
            assert!(!r.verbs.iter().any(|v| v == "*"), "{r:?}");
            let res = r.resources.clone().unwrap_or_default();
            if res.iter().any(|x| x == "*") || r.verbs.iter().any(|v| v == "list") {
                assert_eq!(r.verbs, ["list"], "{r:?}");
                continue;
            }
            if res
                .iter()
                .any(|x| x == "clusterroles" || x == "clusterrolebindings")
            {
                assert!(r.resource_names.is_some(), "{r:?}");
            }
        }
    }
}
