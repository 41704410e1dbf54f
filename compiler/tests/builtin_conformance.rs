//! Built-in Kubernetes objects of the output, held to what the API server would accept.
//!
//! Two independent layers, over the example platform and every golden build case:
//! - `plinth::verify::verify_one` on every object (typed `k8s-openapi` round trip: the JSON
//!   must read back into its type and serialise to identical JSON);
//! - rules of this file, which the typed round trip cannot see because the types accept any
//!   string: quantities that parse, enums with their allowed values, required lists that are
//!   not empty, references between objects that resolve (a RoleBinding's role, a LocalQueue's
//!   ClusterQueue, an HPA's target, a binding's policy, the namespace of every namespaced
//!   object), provenance (`plinth.dev/source` names the spec, `plinth.dev/spec-hash` is the
//!   hash of the object), and the API version of each kind being served by the cluster's
//!   Kubernetes version.
//!
//! `rules_catch_broken_objects` feeds each rule an object it must refuse, so none of them
//! passes vacuously (Deployments, Services and HPAs appear once rollouts are lowered).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use plinth::load::DirSource;
use plinth::lower::{ClusterOutput, Manifest, ObjectKey, Origin};
use plinth::model::Kind;
use serde_json::{Value, json};

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

// ---------------------------------------------------------------------------------------------
// Small parsers.

/// A Kubernetes quantity (`resource.Quantity` grammar) as a number, or `None` when the API
/// server would refuse it.
fn quantity(s: &str) -> Option<f64> {
    let body = s.strip_prefix(['+', '-']).unwrap_or(s);
    let sign = if s.starts_with('-') { -1.0 } else { 1.0 };
    let split = body
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(body.len());
    let (num, suffix) = body.split_at(split);
    if num.is_empty() || num == "." || num.matches('.').count() > 1 {
        return None;
    }
    let n: f64 = num.parse().ok()?;
    let mult = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024f64,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        e if e.starts_with(['e', 'E']) => {
            let exp = &e[1..];
            let digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            10f64.powi(exp.parse().ok()?)
        }
        _ => return None,
    };
    Some(sign * n * mult)
}

fn is_cidr(s: &str) -> bool {
    let Some((ip, len)) = s.split_once('/') else {
        return false;
    };
    let Ok(ip) = ip.parse::<std::net::IpAddr>() else {
        return false;
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    len.parse::<u8>().is_ok_and(|l| l <= max)
}

fn is_dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

fn is_dns_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// ConfigMap and Secret keys.
fn is_config_key(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || b"-._".contains(&c))
}

fn str_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a str> {
    v.pointer(ptr).and_then(Value::as_str)
}

fn arr_at<'a>(v: &'a Value, ptr: &str) -> &'a [Value] {
    v.pointer(ptr)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn obj_at<'a>(v: &'a Value, ptr: &str) -> Option<&'a serde_json::Map<String, Value>> {
    v.pointer(ptr).and_then(Value::as_object)
}

// ---------------------------------------------------------------------------------------------
// The rules.

/// What the rules may look up: every object of one cluster.
struct Cluster<'a> {
    name: &'a str,
    kubernetes_minor: u32,
    objects: BTreeMap<ObjectKey, &'a Value>,
}

impl Cluster<'_> {
    fn has(&self, api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> bool {
        self.objects.contains_key(&ObjectKey {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
            namespace: ns.map(str::to_owned),
            name: name.to_owned(),
        })
    }
    fn has_kind_named(&self, kind: &str, ns: Option<&str>, name: &str) -> bool {
        self.objects
            .keys()
            .any(|k| k.kind == kind && k.namespace.as_deref() == ns && k.name == name)
    }
}

/// Lowest Kubernetes minor version serving an API version of a kind (only where it is above
/// the oldest version plinth accepts).
fn min_minor(api_version: &str, kind: &str) -> u32 {
    match (api_version, kind) {
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy")
        | ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding") => 30,
        ("autoscaling/v2", _) => 23,
        ("policy/v1", _) | ("batch/v1", "CronJob") => 21,
        ("networking.k8s.io/v1", "Ingress") => 19,
        _ => 0,
    }
}

const ACCESS_MODES: &[&str] = &[
    "ReadWriteOnce",
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOncePod",
];

/// Every problem of one object, as messages.
fn rules(cx: &Cluster<'_>, key: &ObjectKey, v: &Value) -> Vec<String> {
    let mut p = Vec::new();
    let ns = key.namespace.as_deref();
    let group = key.group();

    // Served by the cluster's Kubernetes.
    let need = min_minor(&key.api_version, &key.kind);
    if cx.kubernetes_minor < need {
        p.push(format!(
            "{} {} needs Kubernetes 1.{need}, the cluster runs 1.{}",
            key.api_version, key.kind, cx.kubernetes_minor
        ));
    }
    // The namespace exists.
    if let Some(ns) = ns
        && !cx.has("v1", "Namespace", None, ns)
    {
        p.push(format!(
            "namespace `{ns}` is not created on cluster `{}`",
            cx.name
        ));
    }

    let is_builtin = matches!(
        group,
        "" | "apps"
            | "autoscaling"
            | "policy"
            | "batch"
            | "rbac.authorization.k8s.io"
            | "networking.k8s.io"
            | "admissionregistration.k8s.io"
    );
    match (is_builtin, key.kind.as_str()) {
        (true, "Namespace") => {
            if !is_dns_label(&key.name) {
                p.push("namespace name is not a DNS-1123 label".to_owned());
            }
            let levels: Vec<Option<&str>> = ["enforce", "audit", "warn"]
                .iter()
                .map(|m| {
                    str_at(
                        v,
                        &format!("/metadata/labels/pod-security.kubernetes.io~1{m}"),
                    )
                })
                .collect();
            for l in &levels {
                if !matches!(l, Some("privileged" | "baseline" | "restricted")) {
                    p.push(format!("pod security level {l:?} is not a level"));
                }
            }
            if levels.iter().collect::<BTreeSet<_>>().len() != 1 {
                p.push(format!("pod security modes disagree: {levels:?}"));
            }
        }
        (true, "ResourceQuota") => {
            let hard = obj_at(v, "/spec/hard");
            if hard.is_none_or(|h| h.is_empty()) {
                p.push("`spec.hard` is empty".to_owned());
            }
            for (k, q) in hard.into_iter().flatten() {
                if !plinth::verify::is_qualified_name(k) {
                    p.push(format!("`{k}` is not a resource name"));
                }
                match q.as_str().and_then(quantity) {
                    Some(n) if n >= 0.0 => {}
                    _ => p.push(format!("`spec.hard.{k}` = {q} is not a quantity")),
                }
            }
        }
        (true, "LimitRange") => {
            let limits = arr_at(v, "/spec/limits");
            if limits.is_empty() {
                p.push("`spec.limits` is empty".to_owned());
            }
            for (i, l) in limits.iter().enumerate() {
                let t = str_at(l, "/type");
                if !matches!(t, Some("Container" | "Pod" | "PersistentVolumeClaim")) {
                    p.push(format!("`spec.limits[{i}].type` {t:?} is not a limit type"));
                }
                let mut parsed: BTreeMap<(&str, &str), f64> = BTreeMap::new();
                for field in [
                    "default",
                    "defaultRequest",
                    "max",
                    "min",
                    "maxLimitRequestRatio",
                ] {
                    for (r, q) in l
                        .get(field)
                        .and_then(Value::as_object)
                        .into_iter()
                        .flatten()
                    {
                        match q.as_str().and_then(quantity) {
                            Some(n) => {
                                parsed.insert((field, r.as_str()), n);
                            }
                            None => {
                                p.push(format!("`spec.limits[{i}].{field}.{r}` is not a quantity"))
                            }
                        }
                    }
                }
                // The API server refuses a default request above the default limit.
                for ((field, r), n) in &parsed {
                    if *field == "defaultRequest"
                        && let Some(lim) = parsed.get(&("default", *r))
                        && n > lim
                    {
                        p.push(format!(
                            "`spec.limits[{i}]`: default request of `{r}` is above its default limit"
                        ));
                    }
                }
            }
        }
        (true, "RoleBinding" | "ClusterRoleBinding") => {
            if str_at(v, "/roleRef/apiGroup") != Some("rbac.authorization.k8s.io") {
                p.push("`roleRef.apiGroup` is not rbac.authorization.k8s.io".to_owned());
            }
            let role = str_at(v, "/roleRef/name").unwrap_or_default();
            match str_at(v, "/roleRef/kind") {
                Some("ClusterRole") => {
                    let builtin = ["admin", "edit", "view", "cluster-admin"].contains(&role);
                    if !builtin && !cx.has_kind_named("ClusterRole", None, role) {
                        p.push(format!(
                            "ClusterRole `{role}` is neither built in nor generated"
                        ));
                    }
                }
                Some("Role") if key.kind == "RoleBinding" => {
                    if !cx.has_kind_named("Role", ns, role) {
                        p.push(format!("Role `{role}` is not generated in the namespace"));
                    }
                }
                other => p.push(format!("`roleRef.kind` {other:?} is not allowed here")),
            }
            let subjects = arr_at(v, "/subjects");
            if subjects.is_empty() {
                p.push("no subjects".to_owned());
            }
            let mut seen = BTreeSet::new();
            for (i, s) in subjects.iter().enumerate() {
                let (kind, name) = (str_at(s, "/kind"), str_at(s, "/name").unwrap_or_default());
                if name.is_empty() {
                    p.push(format!("`subjects[{i}].name` is empty"));
                }
                if !seen.insert((kind, name, str_at(s, "/namespace"))) {
                    p.push(format!("`subjects[{i}]` is listed twice"));
                }
                match kind {
                    Some("User" | "Group") => {
                        if str_at(s, "/apiGroup") != Some("rbac.authorization.k8s.io") {
                            p.push(format!(
                                "`subjects[{i}].apiGroup` must be rbac.authorization.k8s.io"
                            ));
                        }
                    }
                    Some("ServiceAccount") => {
                        if str_at(s, "/apiGroup").is_some_and(|g| !g.is_empty()) {
                            p.push(format!("`subjects[{i}].apiGroup` must be empty"));
                        }
                        if str_at(s, "/namespace").is_none_or(str::is_empty) {
                            p.push(format!("`subjects[{i}]` needs a namespace"));
                        }
                    }
                    other => p.push(format!(
                        "`subjects[{i}].kind` {other:?} is not a subject kind"
                    )),
                }
            }
        }
        (true, "NetworkPolicy") => {
            if v.pointer("/spec/podSelector").is_none() {
                p.push("`spec.podSelector` is missing".to_owned());
            }
            let types = arr_at(v, "/spec/policyTypes");
            if types.is_empty()
                || !types
                    .iter()
                    .all(|t| matches!(t.as_str(), Some("Ingress" | "Egress")))
            {
                p.push(format!("`spec.policyTypes` {types:?}"));
            }
            for dir in ["ingress", "egress"] {
                let peers_key = if dir == "ingress" { "from" } else { "to" };
                for (i, rule) in arr_at(v, &format!("/spec/{dir}")).iter().enumerate() {
                    for (j, peer) in arr_at(rule, &format!("/{peers_key}")).iter().enumerate() {
                        let at = format!("`spec.{dir}[{i}].{peers_key}[{j}]`");
                        if let Some(c) = str_at(peer, "/ipBlock/cidr") {
                            if !is_cidr(c) {
                                p.push(format!("{at}: `{c}` is not a CIDR"));
                            }
                            if peer.get("podSelector").is_some()
                                || peer.get("namespaceSelector").is_some()
                            {
                                p.push(format!("{at}: ipBlock with a selector"));
                            }
                        } else if peer.get("podSelector").is_none()
                            && peer.get("namespaceSelector").is_none()
                        {
                            p.push(format!("{at}: an empty peer"));
                        }
                    }
                }
            }
        }
        (true, "PersistentVolumeClaim") => {
            let modes = arr_at(v, "/spec/accessModes");
            if modes.is_empty() {
                p.push("`spec.accessModes` is empty".to_owned());
            }
            for m in modes {
                if !m.as_str().is_some_and(|m| ACCESS_MODES.contains(&m)) {
                    p.push(format!("access mode {m} is not one"));
                }
            }
            match str_at(v, "/spec/resources/requests/storage").and_then(quantity) {
                Some(n) if n > 0.0 => {}
                _ => p.push(
                    "`spec.resources.requests.storage` is not a positive quantity".to_owned(),
                ),
            }
            if let Some(sc) = str_at(v, "/spec/storageClassName")
                && !sc.is_empty()
                && !is_dns_subdomain(sc)
            {
                p.push(format!("storage class `{sc}` is not a DNS subdomain"));
            }
            if let Some(pv) = str_at(v, "/spec/volumeName")
                && !cx.has("v1", "PersistentVolume", None, pv)
            {
                p.push(format!(
                    "bound to PersistentVolume `{pv}`, which is not generated"
                ));
            }
        }
        (true, "PersistentVolume") => {
            let modes = arr_at(v, "/spec/accessModes");
            if modes.is_empty()
                || !modes
                    .iter()
                    .all(|m| m.as_str().is_some_and(|m| ACCESS_MODES.contains(&m)))
            {
                p.push(format!("`spec.accessModes` {modes:?}"));
            }
            match str_at(v, "/spec/capacity/storage").and_then(quantity) {
                Some(n) if n > 0.0 => {}
                _ => p.push("`spec.capacity.storage` is not a positive quantity".to_owned()),
            }
            const NOT_SOURCES: &[&str] = &[
                "accessModes",
                "capacity",
                "claimRef",
                "mountOptions",
                "nodeAffinity",
                "persistentVolumeReclaimPolicy",
                "storageClassName",
                "volumeMode",
                "volumeAttributesClassName",
            ];
            let sources: Vec<&String> = obj_at(v, "/spec")
                .into_iter()
                .flat_map(|s| s.keys())
                .filter(|k| !NOT_SOURCES.contains(&k.as_str()))
                .collect();
            if sources.len() != 1 {
                p.push(format!(
                    "a PersistentVolume needs exactly one source, has {sources:?}"
                ));
            }
            if let Some(pol) = str_at(v, "/spec/persistentVolumeReclaimPolicy")
                && !matches!(pol, "Retain" | "Delete" | "Recycle")
            {
                p.push(format!("reclaim policy `{pol}`"));
            }
            if let Some(c) = v.pointer("/spec/claimRef") {
                let (cns, cname) = (
                    str_at(c, "/namespace"),
                    str_at(c, "/name").unwrap_or_default(),
                );
                if cns.is_none() || !cx.has("v1", "PersistentVolumeClaim", cns, cname) {
                    p.push(format!("claimRef {cns:?}/{cname} is not a generated claim"));
                }
            }
        }
        (true, "ConfigMap" | "Secret") => {
            let mut keys = BTreeSet::new();
            for field in ["data", "binaryData", "stringData"] {
                for (k, val) in obj_at(v, &format!("/{field}")).into_iter().flatten() {
                    if !is_config_key(k) {
                        p.push(format!("`{field}` key `{k}` is not a valid key"));
                    }
                    if !val.is_string() {
                        p.push(format!("`{field}.{k}` is not a string"));
                    }
                    if field != "stringData" && !keys.insert(k.clone()) {
                        p.push(format!("key `{k}` is in `data` and `binaryData`"));
                    }
                }
            }
        }
        (true, "Deployment") => {
            let sel = obj_at(v, "/spec/selector/matchLabels");
            let labels = obj_at(v, "/spec/template/metadata/labels");
            match (sel, labels) {
                (Some(s), Some(l)) if !s.is_empty() => {
                    for (k, val) in s {
                        if l.get(k) != Some(val) {
                            p.push(format!("selector `{k}` does not match the pod template"));
                        }
                    }
                }
                _ => p.push("no selector matching the pod template labels".to_owned()),
            }
            p.extend(pod_spec_rules(cx, ns, v.pointer("/spec/template/spec")));
        }
        (true, "Service") => {
            let ports = arr_at(v, "/spec/ports");
            if ports.is_empty() && str_at(v, "/spec/type") != Some("ExternalName") {
                p.push("a Service without ports".to_owned());
            }
            let mut names = BTreeSet::new();
            for (i, port) in ports.iter().enumerate() {
                if !port["port"]
                    .as_u64()
                    .is_some_and(|n| (1..=65535).contains(&n))
                {
                    p.push(format!("`spec.ports[{i}].port` is not a port"));
                }
                if ports.len() > 1 && !str_at(port, "/name").is_some_and(|n| names.insert(n)) {
                    p.push(format!("`spec.ports[{i}]` needs a unique name"));
                }
            }
            if obj_at(v, "/spec/selector").is_some_and(|s| s.is_empty()) {
                p.push("an empty selector".to_owned());
            }
        }
        (true, "HorizontalPodAutoscaler") => {
            let (min, max) = (
                v.pointer("/spec/minReplicas")
                    .and_then(Value::as_u64)
                    .unwrap_or(1),
                v.pointer("/spec/maxReplicas")
                    .and_then(Value::as_u64)
                    .unwrap_or(0),
            );
            if max < 1 || min > max {
                p.push(format!("replicas {min}..{max}"));
            }
            let (tk, tn) = (
                str_at(v, "/spec/scaleTargetRef/kind").unwrap_or_default(),
                str_at(v, "/spec/scaleTargetRef/name").unwrap_or_default(),
            );
            if !cx.has_kind_named(tk, ns, tn) {
                p.push(format!(
                    "scale target {tk} `{tn}` is not generated in the namespace"
                ));
            }
        }
        (true, "PodDisruptionBudget") => {
            if v.pointer("/spec/minAvailable").is_some()
                && v.pointer("/spec/maxUnavailable").is_some()
            {
                p.push("both minAvailable and maxUnavailable".to_owned());
            }
            if v.pointer("/spec/selector").is_none() {
                p.push("no selector".to_owned());
            }
        }
        (true, "Ingress") => {
            for (i, r) in arr_at(v, "/spec/rules").iter().enumerate() {
                if let Some(h) = str_at(r, "/host")
                    && !is_dns_subdomain(h.strip_prefix("*.").unwrap_or(h))
                {
                    p.push(format!("`spec.rules[{i}].host` `{h}`"));
                }
            }
        }
        (true, "ValidatingAdmissionPolicy") => {
            let validations = arr_at(v, "/spec/validations");
            if validations.is_empty() {
                p.push("no validations".to_owned());
            }
            for (i, val) in validations.iter().enumerate() {
                if str_at(val, "/expression").is_none_or(str::is_empty) {
                    p.push(format!("`spec.validations[{i}].expression` is empty"));
                }
            }
            if !matches!(
                str_at(v, "/spec/failurePolicy"),
                None | Some("Fail" | "Ignore")
            ) {
                p.push("`spec.failurePolicy`".to_owned());
            }
            if arr_at(v, "/spec/matchConstraints/resourceRules").is_empty() {
                p.push("no `spec.matchConstraints.resourceRules`".to_owned());
            }
        }
        (true, "ValidatingAdmissionPolicyBinding") => {
            let policy = str_at(v, "/spec/policyName").unwrap_or_default();
            if !cx.has(&key.api_version, "ValidatingAdmissionPolicy", None, policy) {
                p.push(format!("binds policy `{policy}`, which is not generated"));
            }
            let actions: BTreeSet<&str> = arr_at(v, "/spec/validationActions")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            if actions.is_empty()
                || !actions
                    .iter()
                    .all(|a| matches!(*a, "Deny" | "Warn" | "Audit"))
                || (actions.contains("Deny") && actions.contains("Warn"))
            {
                p.push(format!("`spec.validationActions` {actions:?}"));
            }
        }
        (false, "LocalQueue") if group == "kueue.x-k8s.io" => {
            let cq = str_at(v, "/spec/clusterQueue").unwrap_or_default();
            if !cx.has(&key.api_version, "ClusterQueue", None, cq) {
                p.push(format!(
                    "points at ClusterQueue `{cq}`, which is not generated"
                ));
            }
        }
        (false, "ClusterQueue" | "Cohort") if group == "kueue.x-k8s.io" => {
            for (i, g) in arr_at(v, "/spec/resourceGroups").iter().enumerate() {
                let covered: Vec<&str> = arr_at(g, "/coveredResources")
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                for (j, f) in arr_at(g, "/flavors").iter().enumerate() {
                    let flavor = str_at(f, "/name").unwrap_or_default();
                    if !cx.has(&key.api_version, "ResourceFlavor", None, flavor) {
                        p.push(format!("`resourceGroups[{i}].flavors[{j}]`: ResourceFlavor `{flavor}` is not generated"));
                    }
                    let names: Vec<&str> = arr_at(f, "/resources")
                        .iter()
                        .filter_map(|r| str_at(r, "/name"))
                        .collect();
                    // Kueue: a flavor lists exactly the covered resources, in order.
                    if names != covered {
                        p.push(format!(
                            "`resourceGroups[{i}].flavors[{j}]` lists {names:?}, covers {covered:?}"
                        ));
                    }
                    for r in arr_at(f, "/resources") {
                        for field in ["nominalQuota", "borrowingLimit", "lendingLimit"] {
                            if let Some(q) = r.get(field)
                                && !q.as_str().and_then(quantity).is_some_and(|n| n >= 0.0)
                            {
                                p.push(format!("{field} {q} is not a quantity"));
                            }
                        }
                        if let (Some(l), Some(n)) = (
                            str_at(r, "/lendingLimit").and_then(quantity),
                            str_at(r, "/nominalQuota").and_then(quantity),
                        ) && l > n
                        {
                            p.push("a lending limit above the nominal quota".to_owned());
                        }
                    }
                }
            }
        }
        _ => {}
    }
    p
}

/// Containers of a pod template.
fn pod_spec_rules(cx: &Cluster<'_>, ns: Option<&str>, spec: Option<&Value>) -> Vec<String> {
    let mut p = Vec::new();
    let Some(spec) = spec else {
        return vec!["no pod template spec".to_owned()];
    };
    let containers = arr_at(spec, "/containers");
    if containers.is_empty() {
        p.push("a pod template without containers".to_owned());
    }
    let volumes: BTreeSet<&str> = arr_at(spec, "/volumes")
        .iter()
        .filter_map(|v| str_at(v, "/name"))
        .collect();
    let mut names = BTreeSet::new();
    for (i, c) in containers
        .iter()
        .chain(arr_at(spec, "/initContainers"))
        .enumerate()
    {
        let name = str_at(c, "/name").unwrap_or_default();
        if !is_dns_label(name) {
            p.push(format!(
                "container {i}: name `{name}` is not a DNS-1123 label"
            ));
        }
        if !names.insert(name) {
            p.push(format!("container name `{name}` is used twice"));
        }
        if str_at(c, "/image").is_none_or(|s| s.trim().is_empty()) {
            p.push(format!("container `{name}` has no image"));
        }
        for port in arr_at(c, "/ports") {
            if !port["containerPort"]
                .as_u64()
                .is_some_and(|n| (1..=65535).contains(&n))
            {
                p.push(format!("container `{name}`: port {port}"));
            }
        }
        for e in arr_at(c, "/env") {
            let n = str_at(e, "/name").unwrap_or_default();
            if n.is_empty() || n.starts_with(|c: char| c.is_ascii_digit()) || n.contains('=') {
                p.push(format!("container `{name}`: env name `{n}`"));
            }
        }
        for m in arr_at(c, "/volumeMounts") {
            let vname = str_at(m, "/name").unwrap_or_default();
            if !volumes.contains(vname) {
                p.push(format!(
                    "container `{name}` mounts volume `{vname}`, which the pod lacks"
                ));
            }
        }
        let requests = obj_at(c, "/resources/requests");
        let limits = obj_at(c, "/resources/limits");
        for (r, q) in requests.into_iter().flatten() {
            let Some(req) = q.as_str().and_then(quantity) else {
                p.push(format!(
                    "container `{name}`: request `{r}` is not a quantity"
                ));
                continue;
            };
            if let Some(lim) = limits
                .and_then(|l| l.get(r))
                .and_then(Value::as_str)
                .and_then(quantity)
                && req > lim
            {
                p.push(format!(
                    "container `{name}`: request of `{r}` above its limit"
                ));
            }
        }
        for (r, q) in limits.into_iter().flatten() {
            if q.as_str().and_then(quantity).is_none() {
                p.push(format!("container `{name}`: limit `{r}` is not a quantity"));
            }
        }
    }
    if let Some(sa) = str_at(spec, "/serviceAccountName")
        && sa != "default"
        && !cx.has("v1", "ServiceAccount", ns, sa)
    {
        p.push(format!(
            "service account `{sa}` is not generated in the namespace"
        ));
    }
    p
}

/// Provenance every object carries.
fn provenance(m: &Manifest) -> Vec<String> {
    let mut p = Vec::new();
    let v = &m.object;
    if plinth::lower::ObjectKey::of(v) != m.key {
        p.push("the key does not match the object".to_owned());
    }
    if str_at(v, "/metadata/labels/app.kubernetes.io~1managed-by") != Some("plinth") {
        p.push("no `app.kubernetes.io/managed-by: plinth` label".to_owned());
    }
    let want_source = format!("{}:{}", m.origin.file, m.origin.line);
    if str_at(v, "/metadata/annotations/plinth.dev~1source") != Some(want_source.as_str()) {
        p.push(format!("`plinth.dev/source` is not `{want_source}`"));
    }
    let hash = plinth::lower::spec_hash(v);
    if str_at(v, "/metadata/annotations/plinth.dev~1spec-hash") != Some(hash.as_str())
        || m.hash != hash
    {
        p.push("`plinth.dev/spec-hash` is not the hash of the object".to_owned());
    }
    if let (Some(project), Some(ns)) = (
        str_at(v, "/metadata/labels/plinth.dev~1project"),
        m.key.namespace.as_deref(),
    ) && project != ns
    {
        p.push(format!(
            "labelled project `{project}` but lives in namespace `{ns}`"
        ));
    }
    p
}

// ---------------------------------------------------------------------------------------------
// Running them.

struct Checked {
    violations: Vec<String>,
    kinds: BTreeSet<String>,
}

fn check_repo(label: &str, repo: &Path) -> Checked {
    let built = plinth::build_source(&DirSource::new(repo), &plinth::Options::default())
        .unwrap_or_else(|e| panic!("{label}: cannot load: {e}"));
    let Some(lowered) = &built.lowered else {
        panic!(
            "{label}: the build stopped: {:#?}",
            built.checked.diagnostics.clone().into_sorted()
        );
    };
    let platform = built.checked.specs.platform.as_ref().expect("platform");
    let mut violations = Vec::new();
    let mut kinds = BTreeSet::new();
    for (name, out) in &lowered.clusters {
        let minor = platform
            .spec
            .clusters
            .iter()
            .find(|c| &c.name == name)
            .and_then(|c| c.kubernetes_version.strip_prefix("1."))
            .and_then(|m| m.parse().ok())
            .expect("cluster version");
        violations.extend(check_cluster(label, name, minor, out, &mut kinds));
    }
    Checked { violations, kinds }
}

fn check_cluster(
    label: &str,
    name: &str,
    kubernetes_minor: u32,
    out: &ClusterOutput,
    kinds: &mut BTreeSet<String>,
) -> Vec<String> {
    let cx = Cluster {
        name,
        kubernetes_minor,
        objects: out
            .manifests
            .iter()
            .map(|m| (m.key.clone(), &*m.object))
            .collect(),
    };
    let mut violations = Vec::new();
    for m in &out.manifests {
        kinds.insert(m.key.kind.clone());
        let mut problems = Vec::new();
        if let Err(e) = plinth::verify::verify_one(m) {
            problems.push(format!("verify_one: {e}"));
        }
        problems.extend(provenance(m));
        problems.extend(rules(&cx, &m.key, &m.object));
        violations.extend(
            problems
                .into_iter()
                .map(|p| format!("{label}: {name}: {}: {p}", m.key)),
        );
    }
    violations
}

fn golden_repos() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> =
        std::fs::read_dir(Path::new(WORKSPACE).join("tests/golden/build"))
            .expect("tests/golden/build")
            .map(|e| e.expect("entry").path().join("repo"))
            .filter(|p| p.is_dir())
            .collect();
    cases.sort();
    cases
}

#[test]
fn example_builtin_objects_are_valid() {
    let c = check_repo("examples/repo", &Path::new(WORKSPACE).join("examples/repo"));
    for kind in [
        "Namespace",
        "ResourceQuota",
        "LimitRange",
        "ServiceAccount",
        "RoleBinding",
        "NetworkPolicy",
        "PersistentVolumeClaim",
        "ValidatingAdmissionPolicy",
        "ValidatingAdmissionPolicyBinding",
    ] {
        assert!(
            c.kinds.contains(kind),
            "the example emits no {kind}: {:?}",
            c.kinds
        );
    }
    assert!(
        c.violations.is_empty(),
        "{} problem(s):\n{}",
        c.violations.len(),
        c.violations.join("\n")
    );
}

#[test]
fn golden_case_builtin_objects_are_valid() {
    let mut violations = Vec::new();
    let repos = golden_repos();
    assert!(repos.len() >= 15, "golden build cases not found");
    for repo in repos {
        let label = repo
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        violations.extend(check_repo(&label, &repo).violations);
    }
    assert!(
        violations.is_empty(),
        "{} problem(s):\n{}",
        violations.len(),
        violations.join("\n")
    );
}

#[test]
fn quantities_parse_like_the_api_server() {
    for (s, n) in [
        ("1", 1.0),
        ("250m", 0.25),
        ("1.5", 1.5),
        ("2Gi", 2.0 * 1024f64.powi(3)),
        ("1e3", 1000.0),
        ("+4", 4.0),
        (".5", 0.5),
        ("100000", 1e5),
        ("1000Ti", 1000.0 * 1024f64.powi(4)),
    ] {
        assert_eq!(quantity(s), Some(n), "{s}");
    }
    for s in ["", "Gi", "1GB", "one", "1..2", "1 Gi", "1e", "--1", "."] {
        assert_eq!(quantity(s), None, "{s}");
    }
}

/// Each rule refuses a broken object, so the rules above are not vacuous.
#[test]
fn rules_catch_broken_objects() {
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "er", "labels": {
        "pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/audit": "restricted",
        "pod-security.kubernetes.io/warn": "restricted"}}});
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "m", "namespace": "er"},
                "spec": {"selector": {"matchLabels": {"app": "m"}}, "template": {"metadata": {"labels": {"app": "m"}},
                "spec": {"containers": [{"name": "server"}]}}}}),
            "has no image",
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "m", "namespace": "er"},
                "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "m"}},
                "spec": {"containers": [{"name": "server", "image": "i", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}}}}),
            "does not match the pod template",
        ),
        (
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "m", "namespace": "er"},
                "spec": {"selector": {"matchLabels": {"app": "m"}}, "template": {"metadata": {"labels": {"app": "m"}},
                "spec": {"containers": [{"name": "server", "image": "i", "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}}}]}}}}),
            "above its limit",
        ),
        (
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c", "namespace": "er"},
                "spec": {"resources": {"requests": {"storage": "1Gi"}}}}),
            "`spec.accessModes` is empty",
        ),
        (
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c", "namespace": "er"},
                "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "lots"}}}}),
            "not a positive quantity",
        ),
        (
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b", "namespace": "er"},
                "roleRef": {"apiGroup": "", "kind": "ClusterRole", "name": "edit"},
                "subjects": [{"kind": "User", "name": "u", "apiGroup": "rbac.authorization.k8s.io"}]}),
            "roleRef.apiGroup",
        ),
        (
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "b", "namespace": "er"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "editor"},
                "subjects": [{"kind": "Group", "name": "g"}]}),
            "neither built in nor generated",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q", "namespace": "er"},
                "spec": {"hard": {"requests.cpu": "12 cores"}}}),
            "is not a quantity",
        ),
        (
            json!({"apiVersion": "v1", "kind": "LimitRange", "metadata": {"name": "d", "namespace": "er"},
                "spec": {"limits": [{"type": "Container", "defaultRequest": {"cpu": "2"}, "default": {"cpu": "1"}}]}}),
            "above its default limit",
        ),
        (
            json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "n", "namespace": "er"},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/33"}}]}]}}),
            "is not a CIDR",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "missing"}, "data": {"a b": "x"}}),
            "not a valid key",
        ),
        (
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "missing"}}),
            "namespace `missing` is not created",
        ),
        (
            json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "h", "namespace": "er"},
                "spec": {"maxReplicas": 3, "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "ghost"}}}),
            "is not generated in the namespace",
        ),
        (
            json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": "b"},
                "spec": {"policyName": "ghost", "validationActions": ["Deny"]}}),
            "which is not generated",
        ),
        (
            json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue", "metadata": {"name": "q", "namespace": "er"},
                "spec": {"clusterQueue": "ghost"}}),
            "which is not generated",
        ),
    ];
    for (obj, want) in cases {
        let key = ObjectKey::of(&obj);
        let mut objects: BTreeMap<ObjectKey, &Value> = BTreeMap::new();
        objects.insert(ObjectKey::of(&ns), &ns);
        objects.insert(key.clone(), &obj);
        let cx = Cluster {
            name: "test",
            kubernetes_minor: 32,
            objects,
        };
        let problems = rules(&cx, &key, &obj);
        assert!(
            problems.iter().any(|p| p.contains(want)),
            "{key}: expected a problem containing `{want}`, got {problems:?}"
        );
    }
    // Kubernetes 1.29 does not serve admissionregistration.k8s.io/v1 policies.
    let vap = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy", "metadata": {"name": "p"},
        "spec": {"validations": [{"expression": "true"}], "matchConstraints": {"resourceRules": [{}]}}});
    let key = ObjectKey::of(&vap);
    let cx = Cluster {
        name: "old",
        kubernetes_minor: 29,
        objects: BTreeMap::from([(key.clone(), &vap)]),
    };
    assert!(
        rules(&cx, &key, &vap)
            .iter()
            .any(|p| p.contains("needs Kubernetes 1.30"))
    );
    // Provenance: a hand-edited object no longer matches its hash.
    let mut v = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "er",
        "labels": {"app.kubernetes.io/managed-by": "plinth"}, "annotations": {"plinth.dev/source": "p.yaml:1"}}});
    let hash = plinth::lower::spec_hash(&v);
    v["metadata"]["annotations"]["plinth.dev/spec-hash"] = json!(hash.clone());
    let m = Manifest {
        key: ObjectKey::of(&v),
        object: v.clone().into(),
        origin: Origin {
            file: "p.yaml".into(),
            line: 1,
            kind: Kind::Project,
            name: "er".into(),
        },
        hash,
    };
    assert_eq!(provenance(&m), Vec::<String>::new());
    let mut edited = m.clone();
    edited.object["metadata"]["labels"]["extra"] = json!("x");
    assert!(provenance(&edited).iter().any(|p| p.contains("spec-hash")));
}
