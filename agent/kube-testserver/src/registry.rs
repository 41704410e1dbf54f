//! The kinds the server serves: built-in Kubernetes kinds plinth emits, and custom resources.
//!
//! A [`Registry`] is fixed when the server starts. Each [`KindInfo`] carries what discovery
//! shows (plural, singular, short names, scope) and what the write paths need to know about the
//! kind's schema: whether it has a `status` subresource, which top-level fields exist (for
//! `fieldValidation=Strict`), and which lists are associative (for server-side apply). There are
//! no OpenAPI schemas: lists of custom resources are atomic, as for a CRD without
//! `x-kubernetes-list-type` annotations.

/// The verbs every kind supports.
pub const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

/// One kind the server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindInfo {
    /// API group; empty for the core group.
    pub group: String,
    pub version: String,
    pub kind: String,
    /// Resource name in URLs (`configmaps`).
    pub plural: String,
    /// Lower-case kind (`configmap`).
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    /// A built-in Kubernetes kind (vs a custom resource): DELETE answers a `Status`, and
    /// built-in defaulting and list semantics apply.
    pub builtin: bool,
    /// Has a `status` subresource: `status` is reset on writes to the main resource and
    /// never recorded in its managed fields.
    pub status_subresource: bool,
    /// Has a `scale` subresource (`autoscaling/v1` `Scale` over `spec.replicas`).
    pub scale_subresource: bool,
    /// Fields allowed at the top level besides `apiVersion`, `kind` and `metadata`; `None`
    /// means any (no strict checking).
    pub top_level: Option<Vec<String>>,
}

impl KindInfo {
    /// `group/version`, or `version` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `ConfigMap` for the core group, `Deployment.apps` otherwise: the qualified kind that
    /// `Invalid` messages name.
    pub fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// `configmaps` for the core group, `deployments.apps` otherwise: the qualified resource
    /// that `NotFound` and `AlreadyExists` messages name.
    pub fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// How a list at `path` (field names from the object root, list positions left out)
    /// merges under server-side apply.
    pub fn list_type(&self, path: &[&str]) -> ListType {
        list_type(self, path)
    }
}

/// The merge semantics of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListType {
    /// Replaced as a whole and owned as one field.
    Atomic,
    /// Items are objects identified by these key fields (`x-kubernetes-list-type: map`).
    Map(&'static [&'static str]),
    /// Items are distinct scalars (`x-kubernetes-list-type: set`).
    Set,
}

impl KindInfo {
    /// Whether the object at `path` is an atomic struct (`+structType=atomic`): owned, compared
    /// and replaced as a whole. Label selectors of built-in kinds are (`metav1.LabelSelector`);
    /// a Service's `spec.selector` is a plain map and is not.
    pub fn atomic_map(&self, path: &[&str]) -> bool {
        self.builtin
            && matches!(
                path.last(),
                Some(&("selector" | "podSelector" | "namespaceSelector" | "labelSelector"))
            )
            && !(self.kind == "Service" && path == ["spec", "selector"])
    }
}

/// Default values of list-map key fields the apiserver fills in before computing keys.
pub fn key_default(field: &str) -> Option<serde_json::Value> {
    (field == "protocol").then(|| serde_json::Value::String("TCP".into()))
}

fn list_type(kind: &KindInfo, path: &[&str]) -> ListType {
    match path {
        ["metadata", "finalizers"] => return ListType::Set,
        ["metadata", "ownerReferences"] => return ListType::Map(&["uid"]),
        _ => {}
    }
    if !kind.builtin {
        return ListType::Atomic;
    }
    let Some((last, parents)) = path.split_last() else {
        return ListType::Atomic;
    };
    let parent = parents.last().copied().unwrap_or("");
    let in_container = matches!(
        parent,
        "containers" | "initContainers" | "ephemeralContainers"
    );
    match *last {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "imagePullSecrets"
        | "resourceClaims"
        | "matchConditions"
        | "variables" => ListType::Map(&["name"]),
        "volumes" if parent == "spec" => ListType::Map(&["name"]),
        "env" if in_container => ListType::Map(&["name"]),
        "volumeMounts" if in_container => ListType::Map(&["mountPath"]),
        "volumeDevices" if in_container => ListType::Map(&["devicePath"]),
        "ports" if in_container => ListType::Map(&["containerPort", "protocol"]),
        "ports" if kind.kind == "Service" && path == ["spec", "ports"] => {
            ListType::Map(&["port", "protocol"])
        }
        "hostAliases" => ListType::Map(&["ip"]),
        "topologySpreadConstraints" => ListType::Map(&["topologyKey", "whenUnsatisfiable"]),
        "conditions" if parents.first() == Some(&"status") => ListType::Map(&["type"]),
        "validationActions" => ListType::Set,
        _ => ListType::Atomic,
    }
}

/// The plural resource name Kubernetes derives from a kind (`Policy` → `policies`,
/// `WorkloadPriorityClass` → `workloadpriorityclasses`).
pub fn plural_of(kind: &str) -> String {
    let lower = kind.to_ascii_lowercase();
    if lower.ends_with('s')
        || lower.ends_with('x')
        || lower.ends_with("ch")
        || lower.ends_with("sh")
    {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y') {
        if stem.ends_with(['a', 'e', 'i', 'o', 'u']) {
            format!("{lower}s")
        } else {
            format!("{stem}ies")
        }
    } else {
        format!("{lower}s")
    }
}

/// The set of kinds a server serves.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    kinds: Vec<KindInfo>,
}

impl Registry {
    /// No kinds at all (add some with [`Registry::add`]).
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// The built-in kinds plinth emits, plus `Event` (core, and `events.k8s.io` as a view of it)
    /// and `CustomResourceDefinition`.
    pub fn builtins() -> Registry {
        let mut r = Registry::empty();
        for b in BUILTINS {
            let (group, version) = split_api_version(b.api_version);
            r.add(KindInfo {
                group: group.into(),
                version: version.into(),
                kind: b.kind.into(),
                plural: b.plural.into(),
                singular: b.kind.to_ascii_lowercase(),
                namespaced: b.namespaced,
                short_names: b.short_names.iter().map(|s| (*s).to_string()).collect(),
                builtin: true,
                status_subresource: b.status,
                scale_subresource: matches!(b.kind, "Deployment" | "StatefulSet"),
                top_level: Some(b.top_level.iter().map(|s| (*s).to_string()).collect()),
            });
        }
        r
    }

    /// The built-ins and every custom resource kind plinth emits
    /// (`plinth::lower::crd::kinds()`).
    pub fn plinth() -> Registry {
        let mut r = Registry::builtins();
        for (api_version, kind, namespaced) in plinth::lower::crd::kinds() {
            r.add_custom(api_version, kind, namespaced);
        }
        r
    }

    /// Add a custom resource kind with the conventional plural, its upstream short names
    /// when known, a `status` subresource unless the kind has none upstream, and top-level
    /// fields `spec` and `status` (Kueue's `WorkloadPriorityClass`: `value`, `description`).
    pub fn add_custom(&mut self, api_version: &str, kind: &str, namespaced: bool) -> &mut Self {
        let (group, version) = split_api_version(api_version);
        let short: &[&str] = match (group, kind) {
            ("kueue.x-k8s.io", "ClusterQueue") => &["cq"],
            ("kueue.x-k8s.io", "LocalQueue") => &["queue", "queues", "lq"],
            ("kueue.x-k8s.io", "ResourceFlavor") => &["flavor", "flavors", "rf"],
            ("kueue.x-k8s.io", "WorkloadPriorityClass") => &["wpc"],
            ("serving.kserve.io", "InferenceService") => &["isvc"],
            ("argoproj.io", "Rollout") => &["ro"],
            _ => &[],
        };
        let no_status = matches!(kind, "WorkloadPriorityClass" | "ResourceFlavor");
        let top_level: &[&str] = if kind == "WorkloadPriorityClass" {
            &["value", "description"]
        } else {
            &["spec", "status"]
        };
        self.add(KindInfo {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural_of(kind),
            singular: kind.to_ascii_lowercase(),
            namespaced,
            short_names: short.iter().map(|s| (*s).to_string()).collect(),
            builtin: false,
            status_subresource: !no_status,
            scale_subresource: false,
            top_level: Some(top_level.iter().map(|s| (*s).to_string()).collect()),
        })
    }

    /// Add a kind; a kind with the same group, version and plural replaces the earlier one.
    pub fn add(&mut self, info: KindInfo) -> &mut Self {
        if let Some(i) = self.kinds.iter().position(|k| {
            k.group == info.group && k.version == info.version && k.plural == info.plural
        }) {
            self.kinds[i] = info;
        } else {
            self.kinds.push(info);
        }
        self
    }

    pub fn kinds(&self) -> &[KindInfo] {
        &self.kinds
    }

    /// Index of the kind served at `group/version/plural`.
    pub fn by_resource(&self, group: &str, version: &str, plural: &str) -> Option<usize> {
        self.kinds
            .iter()
            .position(|k| k.group == group && k.version == version && k.plural == plural)
    }

    /// Index of the kind with this `apiVersion` and `kind`.
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<usize> {
        let (group, version) = split_api_version(api_version);
        self.kinds
            .iter()
            .position(|k| k.group == group && k.version == version && k.kind == kind)
    }

    pub fn get(&self, idx: usize) -> &KindInfo {
        &self.kinds[idx]
    }

    /// API groups in discovery order: the core group first, then built-in groups in the
    /// order registered, then custom groups sorted by name. Each with its versions.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>, bool)> = Vec::new();
        for k in &self.kinds {
            match out.iter_mut().find(|(g, _, _)| *g == k.group) {
                Some((_, versions, _)) => {
                    if !versions.contains(&k.version) {
                        versions.push(k.version.clone());
                    }
                }
                None => out.push((k.group.clone(), vec![k.version.clone()], k.builtin)),
            }
        }
        out.sort_by(|a, b| {
            let rank = |g: &(String, Vec<String>, bool)| (!g.0.is_empty(), !g.2);
            rank(a).cmp(&rank(b)).then_with(|| {
                if a.2 {
                    std::cmp::Ordering::Equal
                } else {
                    a.0.cmp(&b.0)
                }
            })
        });
        out.into_iter().map(|(g, v, _)| (g, v)).collect()
    }

    /// The kinds of one group version, in registration order.
    pub fn resources(&self, group: &str, version: &str) -> Vec<usize> {
        (0..self.kinds.len())
            .filter(|&i| self.kinds[i].group == group && self.kinds[i].version == version)
            .collect()
    }
}

/// `apps/v1` → (`apps`, `v1`); `v1` → (``, `v1`).
pub fn split_api_version(api_version: &str) -> (&str, &str) {
    match api_version.rsplit_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version),
    }
}

struct Builtin {
    api_version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    short_names: &'static [&'static str],
    status: bool,
    top_level: &'static [&'static str],
}

const SPEC_STATUS: &[&str] = &["spec", "status"];

const BUILTINS: &[Builtin] = &[
    Builtin {
        api_version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
        short_names: &["ns"],
        status: true,
        top_level: SPEC_STATUS,
    },
    Builtin {
        api_version: "v1",
        kind: "ResourceQuota",
        plural: "resourcequotas",
        namespaced: true,
        short_names: &["quota"],
        status: true,
        top_level: SPEC_STATUS,
    },
    Builtin {
        api_version: "v1",
        kind: "LimitRange",
        plural: "limitranges",
        namespaced: true,
        short_names: &["limits"],
        status: false,
        top_level: &["spec"],
    },
    Builtin {
        api_version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        namespaced: true,
        short_names: &["sa"],
        status: false,
        top_level: &[
            "secrets",
            "imagePullSecrets",
            "automountServiceAccountToken",
        ],
    },
    Builtin {
        api_version: "v1",
        kind: "PersistentVolume",
        plural: "persistentvolumes",
        namespaced: false,
        short_names: &["pv"],
        status: true,
        top_level: SPEC_STATUS,
    },
    Builtin {
        api_version: "v1",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        namespaced: true,
        short_names: &["pvc"],
        status: true,
        top_level: SPEC_STATUS,
    },
    Builtin {
        api_version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        namespaced: true,
        short_names: &["cm"],
        status: false,
        top_level: &["data", "binaryData", "immutable"],
    },
    Builtin {
        api_version: "v1",
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
        short_names: &[],
        status: false,
        top_level: &["data", "stringData", "type", "immutable"],
    },
    Builtin {
        api_version: "v1",
        kind: "Service",
        plural: "services",
        namespaced: true,
        short_names: &["svc"],
        status: true,
        top_level: SPEC_STATUS,
    },
    Builtin {
        api_version: "v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
        short_names: &["ev"],
        status: false,
        top_level: &[
            "involvedObject",
            "reason",
            "message",
            "source",
            "firstTimestamp",
            "lastTimestamp",
            "count",
            "type",
            "eventTime",
            "series",
            "action",
            "related",
            "reportingComponent",
            "reportingInstance",
        ],
    },
    Builtin {
        api_version: "v1",
        kind: "Pod",
        plural: "pods",
        namespaced: true,
        short_names: &["po"],
        status: true,
        top_level: SPEC_STATUS,
    },
    Builtin {
        api_version: "events.k8s.io/v1",
        kind: "Event",
        plural: "events",
        namespaced: true,
        short_names: &[],
        status: false,
        top_level: &[
            "eventTime",
            "series",
            "reportingController",
            "reportingInstance",
            "action",
            "reason",
            "regarding",
            "related",
            "note",
            "type",
            "deprecatedSource",
            "deprecatedFirstTimestamp",
            "deprecatedLastTimestamp",
            "deprecatedCount",
        ],
    },
    Builtin {
        api_version: "apps/v1",
        kind: "Deployment",
        plural: "deployments",
        namespaced: true,
        short_names: &["deploy"],
        status: true,
        top_level: SPEC_STATUS,
    },
    Builtin {
        api_version: "apps/v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        namespaced: true,
        short_names: &["sts"],
        status: true,
        top_level: SPEC_STATUS,
    },
    Builtin {
        api_version: "batch/v1",
        kind: "Job",
        plural: "jobs",
        namespaced: true,
        short_names: &[],
        status: true,
        top_level: SPEC_STATUS,
    },
    Builtin {
        api_version: "batch/v1",
        kind: "CronJob",
        plural: "cronjobs",
        namespaced: true,
        short_names: &["cj"],
        status: true,
        top_level: SPEC_STATUS,
    },
    Builtin {
        api_version: "autoscaling/v2",
        kind: "HorizontalPodAutoscaler",
        plural: "horizontalpodautoscalers",
        namespaced: true,
        short_names: &["hpa"],
        status: true,
        top_level: SPEC_STATUS,
    },
    Builtin {
        api_version: "networking.k8s.io/v1",
        kind: "NetworkPolicy",
        plural: "networkpolicies",
        namespaced: true,
        short_names: &["netpol"],
        status: false,
        top_level: &["spec"],
    },
    Builtin {
        api_version: "networking.k8s.io/v1",
        kind: "Ingress",
        plural: "ingresses",
        namespaced: true,
        short_names: &["ing"],
        status: true,
        top_level: SPEC_STATUS,
    },
    Builtin {
        api_version: "policy/v1",
        kind: "PodDisruptionBudget",
        plural: "poddisruptionbudgets",
        namespaced: true,
        short_names: &["pdb"],
        status: true,
        top_level: SPEC_STATUS,
    },
    Builtin {
        api_version: "rbac.authorization.k8s.io/v1",
        kind: "Role",
        plural: "roles",
        namespaced: true,
        short_names: &[],
        status: false,
        top_level: &["rules"],
    },
    Builtin {
        api_version: "rbac.authorization.k8s.io/v1",
        kind: "RoleBinding",
        plural: "rolebindings",
        namespaced: true,
        short_names: &[],
        status: false,
        top_level: &["subjects", "roleRef"],
    },
    Builtin {
        api_version: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRole",
        plural: "clusterroles",
        namespaced: false,
        short_names: &[],
        status: false,
        top_level: &["rules", "aggregationRule"],
    },
    Builtin {
        api_version: "rbac.authorization.k8s.io/v1",
        kind: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        namespaced: false,
        short_names: &[],
        status: false,
        top_level: &["subjects", "roleRef"],
    },
    Builtin {
        api_version: "admissionregistration.k8s.io/v1",
        kind: "ValidatingAdmissionPolicy",
        plural: "validatingadmissionpolicies",
        namespaced: false,
        short_names: &[],
        status: true,
        top_level: SPEC_STATUS,
    },
    Builtin {
        api_version: "admissionregistration.k8s.io/v1",
        kind: "ValidatingAdmissionPolicyBinding",
        plural: "validatingadmissionpolicybindings",
        namespaced: false,
        short_names: &[],
        status: false,
        top_level: &["spec"],
    },
    Builtin {
        api_version: "apiextensions.k8s.io/v1",
        kind: "CustomResourceDefinition",
        plural: "customresourcedefinitions",
        namespaced: false,
        short_names: &["crd", "crds"],
        status: true,
        top_level: SPEC_STATUS,
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plurals_follow_kubernetes() {
        assert_eq!(plural_of("Policy"), "policies");
        assert_eq!(
            plural_of("WorkloadPriorityClass"),
            "workloadpriorityclasses"
        );
        assert_eq!(plural_of("Bucket"), "buckets");
        assert_eq!(plural_of("Gateway"), "gateways");
        assert_eq!(plural_of("Ingress"), "ingresses");
    }

    #[test]
    fn plinth_kinds_are_registered() {
        let r = Registry::plinth();
        for (api_version, kind, namespaced) in plinth::lower::crd::kinds() {
            let i = r.by_kind(api_version, kind).expect("registered");
            assert_eq!(r.get(i).namespaced, namespaced);
        }
        assert!(r.by_kind("v1", "Namespace").is_some());
        assert!(
            r.by_resource("kueue.x-k8s.io", "v1beta2", "localqueues")
                .is_some()
        );
        let groups = r.groups();
        assert_eq!(groups[0].0, "");
        assert!(groups.iter().all(|(_, v)| !v.is_empty()));
    }
}
