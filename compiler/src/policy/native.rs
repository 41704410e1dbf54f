//! The default library's rules (`policies/*.rego`) written again in Rust, behind the same
//! interface: a rule's value on an input is what regorus gives for the Rego text — the same
//! findings, in the same order — or [`Verdict::Defer`] when the input or `data` has a shape the
//! rule was not written for (a name that is not a string, a list that is an object, a number
//! that is not whole: wherever the Rego could fail or format a value in a way of its own), and
//! regorus evaluates it. Deferring is always safe; answering differently never is: the
//! differential tests (`policy::tests`, `tests/policy_native.rs`) compare every rule with
//! regorus on realistic and randomly mutated inputs.
//!
//! Used only when the library loaded is exactly the embedded one ([`super::default_library`]);
//! a rule not listed here is deferred. Reading `data` goes through the same paths the Rego reads,
//! so the memo's keys (the rule's reads) stay what they are for the Rego.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

/// `v.a.b…`: defined only through objects, as a Rego reference is.
use crate::output::at;

/// The digest of the library these rules were written for (`policy::library_digest`): when
/// `policies/*.rego` change, the library is evaluated by regorus alone until this file is
/// changed to match and this digest updated (a unit test says so).
pub(super) const WRITTEN_FOR: &str =
    "ea3cfbb6cc2749667963c2d6ea1ad99c3c1c74b974748165850292d8a8014f01";

/// A rule's value on one input.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Verdict {
    /// The value regorus gives (a partial set rule's value: its findings, sorted).
    Value(Value),
    /// Not decided here: regorus evaluates the rule.
    Defer,
}

/// The input or data has a shape this implementation does not decide.
struct Defer;

type R<T> = Result<T, Defer>;

/// The value of rule `name` of package `package` on `input`, with `data` (the whole `data`
/// document, `data.plinth` in it).
pub(super) fn eval(package: &str, name: &str, input: &Value, data: &Value, whole: bool) -> Verdict {
    let Some(pkg) = package.strip_prefix("plinth_defaults.") else {
        return Verdict::Defer;
    };
    let cx = Cx { input, data, whole };
    let found: R<Vec<Value>> = match (pkg, name) {
        ("bucket_encryption", "deny_bucket_encryption_off") => cx.bucket_encryption_off(),
        ("bucket_encryption", "warn_bucket_managed_key") => cx.bucket_managed_key(),
        ("deletion_policy", "deny_deletion_policy") => cx.deletion_policy(),
        ("gpu_cap", "deny_gpu_cap") => cx.gpu_cap(),
        ("gpu_cap", "deny_gpu_model_cap") => cx.gpu_model_cap(),
        ("gpu_limits", "deny_gpu_requests_differ") => cx.gpu_requests_differ(),
        ("latest_tag", "deny_latest_tag") => cx.latest_tag(),
        ("network_isolation", "deny_network_isolation_off") => cx.network_isolation_deny(),
        ("network_isolation", "warn_network_isolation_off") => cx.network_isolation_warn(),
        ("owners", "warn_single_owner") => cx.single_owner(),
        ("pii_datasets", "deny_pii_write") => cx.pii_write(),
        ("pii_datasets", "deny_pii_global") => cx.pii_global(),
        ("pii_datasets", "deny_pii_outside_production") => cx.pii_outside_production(),
        ("pii_retention", "warn_retention") => cx.retention(),
        ("privileged", "deny_privileged") => cx.container_flag("privileged", "is privileged"),
        ("privileged", "deny_privilege_escalation") => {
            cx.container_flag("allowPrivilegeEscalation", "allows privilege escalation")
        }
        ("privileged", "deny_host_namespaces") => cx.host_namespaces(),
        ("production_rollouts", "deny_production_rollout_strategy") => cx.rollout_strategy(),
        ("registries", "deny_image_registry") => cx.image_registry(),
        ("resource_requests", "deny_missing_requests") => cx.missing_requests(),
        ("run_as_non_root", "warn_run_as_root") => cx.run_as_root(),
        _ => return Verdict::Defer,
    };
    match found {
        Ok(found) => Verdict::Value(as_set(found)),
        Err(Defer) => Verdict::Defer,
    }
}

/// Findings as regorus returns a set of them: each once, in regorus' order of values.
fn as_set(found: Vec<Value>) -> Value {
    if found.is_empty() {
        return Value::Array(Vec::new());
    }
    let set: BTreeSet<regorus::Value> = found
        .iter()
        .map(<regorus::Value as serde::Deserialize>::deserialize)
        .collect::<Result<_, _>>()
        .unwrap_or_default();
    serde_json::to_value(regorus::Value::from(set)).unwrap_or(Value::Null)
}

/// A finding with a location: `{"msg": msg, "location": {"field": field}}`.
fn located(msg: String, field: String) -> Value {
    json!({"msg": msg, "location": {"field": field}})
}

/// A bare expression succeeds when it is defined and not `false`.
fn truthy(v: Option<&Value>) -> bool {
    v.is_some_and(|v| *v != Value::Bool(false))
}

fn is_str(v: Option<&Value>, s: &str) -> bool {
    v.and_then(Value::as_str) == Some(s)
}

fn is_bool(v: Option<&Value>, b: bool) -> bool {
    v == Some(&Value::Bool(b))
}

/// A value formatted by `%s`: a string, `None` when undefined (the finding is not made).
fn text(v: Option<&Value>) -> R<Option<&str>> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(Defer),
    }
}

/// A whole number (what `%d` formats and comparisons read here).
fn int(v: &Value) -> R<i64> {
    v.as_i64().ok_or(Defer)
}

/// Whether two numbers are equal, as Rego compares them (`2 == 2.0`); exact only where both
/// are whole or small enough for a double to hold exactly.
fn same_number(a: &serde_json::Number, b: &serde_json::Number) -> R<bool> {
    if let (Some(a), Some(b)) = (a.as_i64(), b.as_i64()) {
        return Ok(a == b);
    }
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match (a.as_f64(), b.as_f64()) {
        (Some(a), Some(b)) if a.abs() < EXACT && b.abs() < EXACT => Ok(a == b),
        _ => Err(Defer),
    }
}

/// `object.get(v, key, default)` of an object (`Defer` for anything else: the builtin's
/// operand must be an object).
fn object_get<'a>(v: &'a Value, key: &str, default: &'a Value) -> R<&'a Value> {
    Ok(v.as_object().ok_or(Defer)?.get(key).unwrap_or(default))
}

/// `object.get(c, "name", "model")` of a container, as `%s` formats it.
fn container_name(c: &Value) -> R<Option<&str>> {
    match c.as_object().ok_or(Defer)?.get("name") {
        None => Ok(Some("model")),
        name => text(name),
    }
}

/// The elements of an array (`some x in v`); anything else is not decided here.
fn elements(v: &Value) -> R<&[Value]> {
    v.as_array().map(Vec::as_slice).ok_or(Defer)
}

const EMPTY: &Value = &Value::Array(Vec::new());

/// The kinds `lib.workload_kinds` and the rules over pod specs name.
const WORKLOADS: [&str; 6] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "ReplicaSet",
    "Job",
    "Rollout",
];

/// The kinds the container rules guard on.
fn pod_kind(kind: &str) -> bool {
    WORKLOADS.contains(&kind) || ["CronJob", "Pod", "InferenceService"].contains(&kind)
}

struct Cx<'a> {
    input: &'a Value,
    data: &'a Value,
    /// `data` holds every project's entry; else only some, and reading one it lacks defers.
    whole: bool,
}

impl<'a> Cx<'a> {
    fn get(&self, path: &[&str]) -> Option<&'a Value> {
        at(self.input, path)
    }

    fn kind(&self) -> Option<&'a str> {
        self.get(&["kind"]).and_then(Value::as_str)
    }

    /// `input.metadata.name` as `%s` formats it.
    fn name(&self) -> R<Option<&'a str>> {
        text(self.get(&["metadata", "name"]))
    }

    /// `lib.is_spec(input)`.
    fn is_spec(&self) -> R<bool> {
        match self.get(&["apiVersion"]) {
            None => Ok(false),
            Some(Value::String(s)) => Ok(s.starts_with("plinth.dev/")),
            Some(_) => Err(Defer),
        }
    }

    fn parameters(&self) -> Option<&'a Value> {
        at(self.data, &["plinth", "parameters"])
    }

    /// `lib.project_of(input)`.
    fn project_of(&self) -> R<Option<&'a Value>> {
        let Some(kind) = self.kind() else {
            return Ok(None);
        };
        let name = match kind {
            "Project" => self.get(&["metadata", "name"]),
            "ModelRollout" | "App" => self.get(&["spec", "project"]),
            _ => self.get(&["metadata", "labels", "plinth.dev/project"]),
        };
        // A key that is not a string names no project (the projects are an object).
        match name.and_then(Value::as_str) {
            Some(name) => self.project(name),
            None => Ok(None),
        }
    }

    /// `data.plinth.resolved.projects[name]`: deferred when the data holds only some entries
    /// and not this one.
    fn project(&self, name: &str) -> R<Option<&'a Value>> {
        match at(self.data, &["plinth", "resolved", "projects", name]) {
            None if !self.whole => Err(Defer),
            found => Ok(found),
        }
    }

    /// `lib.pod_spec(input)`.
    fn pod_spec(&self) -> Option<&'a Value> {
        match self.kind()? {
            k if WORKLOADS.contains(&k) => self.get(&["spec", "template", "spec"]),
            "CronJob" => self.get(&["spec", "jobTemplate", "spec", "template", "spec"]),
            "Pod" => self.get(&["spec"]),
            "InferenceService" => self.get(&["spec", "predictor"]),
            _ => None,
        }
    }

    /// `lib.containers(input)`: `None` when undefined.
    fn containers(&self) -> R<Option<Vec<&'a Value>>> {
        let Some(spec) = self.pod_spec() else {
            return Ok(None);
        };
        let mut all: Vec<&Value> = Vec::new();
        all.extend(elements(object_get(spec, "containers", EMPTY)?)?);
        all.extend(elements(object_get(spec, "initContainers", EMPTY)?)?);
        if self.kind() == Some("InferenceService")
            && let Some(model) = self.get(&["spec", "predictor", "model"])
            && truthy(Some(model))
        {
            all.push(model);
        }
        Ok(Some(all))
    }

    /// `lib.images(input)`: every image, each a string (anything else is deferred, as
    /// `endswith` and `startswith` would fail on it).
    fn images(&self) -> R<BTreeSet<&'a str>> {
        let mut images: Vec<&Value> = Vec::new();
        match self.kind() {
            Some("Project" | "Platform") => {
                if let Some(spec) = self.get(&["spec"]) {
                    for i in elements(object_get(spec, "images", EMPTY)?)? {
                        if let Some(url) = at(i, &["url"]) {
                            images.push(url);
                            images.push(i.get("urlForGpu").unwrap_or(url));
                        }
                    }
                }
            }
            Some("ModelRollout") => {
                let image = self.get(&["spec", "model", "image"]);
                if truthy(image) {
                    images.extend(image);
                }
            }
            _ => {}
        }
        for c in self.containers()?.unwrap_or_default() {
            let image = at(c, &["image"]);
            if truthy(image) {
                images.extend(image);
            }
        }
        images
            .into_iter()
            .map(|v| v.as_str().ok_or(Defer))
            .collect()
    }

    fn bucket_encryption_off(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        if self.kind() == Some("Dataset")
            && truthy(self.get(&["spec", "provision"]))
            && is_bool(
                self.get(&["spec", "provision", "encryption", "enabled"]),
                false,
            )
            && let Some(name) = self.name()?
        {
            out.push(located(
                format!("dataset `{name}` provisions a bucket without encryption at rest"),
                "spec.provision.encryption.enabled".into(),
            ));
        }
        Ok(out)
    }

    fn bucket_managed_key(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        let sensitivity = self.get(&["spec", "sensitivity"]);
        if self.kind() == Some("Dataset")
            && is_bool(self.get(&["spec", "provision", "createBucket"]), true)
            && (is_str(sensitivity, "confidential") || is_str(sensitivity, "pii"))
            && !truthy(self.get(&["spec", "provision", "encryption", "kmsKey"]))
            && let (Some(s), Some(name)) = (text(sensitivity)?, self.name()?)
        {
            out.push(located(
                    format!("{s} dataset `{name}` is encrypted with the provider's key; set `provision.encryption.kmsKey` to a customer-managed key"),
                    "spec.provision".into(),
                ));
        }
        Ok(out)
    }

    fn deletion_policy(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        let kind = self.kind();
        let sensitivity = self.get(&["spec", "sensitivity"]);
        if kind == Some("Dataset")
            && is_str(self.get(&["spec", "provision", "deletionPolicy"]), "Delete")
            && sensitivity.is_some_and(|s| !is_str(Some(s), "public"))
            && let (Some(name), Some(s)) = (self.name()?, text(sensitivity)?)
        {
            out.push(located(
                    format!("dataset `{name}` holds {s} data and would delete its bucket with the spec; use `deletionPolicy: Retain`"),
                    "spec.provision.deletionPolicy".into(),
                ));
        }
        if let Some(kind @ ("Bucket" | "Account" | "Container")) = kind {
            let upbound = match self.get(&["apiVersion"]) {
                None => false,
                Some(Value::String(s)) => s.contains("upbound.io/"),
                Some(_) => return Err(Defer),
            };
            let sensitivity = self.get(&["metadata", "annotations", "plinth.dev/sensitivity"]);
            if upbound
                && is_str(self.get(&["spec", "deletionPolicy"]), "Delete")
                && sensitivity.is_some_and(|s| !is_str(Some(s), "public"))
                && let Some(name) = self.name()?
            {
                out.push(Value::String(format!(
                    "{kind} `{name}` would be deleted with its spec; use `deletionPolicy: Retain`"
                )));
            }
        }
        Ok(out)
    }

    /// The Project spec's resolved view, when `gpu_cap`'s rules apply to the input.
    fn capped_project(&self) -> R<Option<&'a Value>> {
        if self.kind() != Some("Project")
            || !self.is_spec()?
            || truthy(self.get(&["metadata", "annotations", "plinth.dev/gpu-cap-approval"]))
        {
            return Ok(None);
        }
        self.project_of()
    }

    fn gpu_cap(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        let (Some(project), Some(params)) = (self.capped_project()?, self.parameters()) else {
            return Ok(out);
        };
        let default = json!(16);
        let cap = int(object_get(params, "maxGpusPerProject", &default)?)?;
        let Some(total) = at(project, &["gpuTotal"]) else {
            return Ok(out);
        };
        let total = int(total)?;
        if total > cap
            && let Some(name) = self.name()?
        {
            out.push(located(
                    format!("project `{name}` is allocated {total} GPUs, over the cap of {cap}; add the annotation `plinth.dev/gpu-cap-approval` with the approval ticket"),
                    "metadata.name".into(),
                ));
        }
        Ok(out)
    }

    fn gpu_model_cap(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        let (Some(project), Some(params)) = (self.capped_project()?, self.parameters()) else {
            return Ok(out);
        };
        let empty = Value::Object(Map::new());
        let caps = object_get(params, "gpuCapsByModel", &empty)?
            .as_object()
            .ok_or(Defer)?;
        let allocations = match at(project, &["allocations"]) {
            None => &[][..],
            Some(a) => elements(a)?,
        };
        for (model, cap) in caps {
            let mut total: i64 = 0;
            for a in allocations {
                if is_str(at(a, &["model"]), model)
                    && let Some(gpu) = at(a, &["gpu"])
                {
                    total = total.checked_add(int(gpu)?).ok_or(Defer)?;
                }
            }
            let cap = int(cap)?;
            if total > cap
                && let Some(name) = self.name()?
            {
                out.push(located(
                        format!("project `{name}` is allocated {total} `{model}` GPUs, over the cap of {cap}; add the annotation `plinth.dev/gpu-cap-approval` with the approval ticket"),
                        "metadata.name".into(),
                    ));
            }
        }
        Ok(out)
    }

    fn gpu_requests_differ(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        let Some(kind) = self.kind().filter(|k| pod_kind(k)) else {
            return Ok(out);
        };
        let empty = Value::Object(Map::new());
        for c in self.containers()?.unwrap_or_default() {
            let requests = object_get(object_get(c, "resources", &empty)?, "requests", &empty)?;
            for (name, request) in requests.as_object().ok_or(Defer)? {
                if !(name.ends_with("/gpu") || name.contains("/mig-")) {
                    continue;
                }
                let limit = match at(c, &["resources", "limits"]) {
                    None => None,
                    Some(Value::Object(l)) => l.get(name),
                    Some(_) => return Err(Defer),
                };
                let differs = match (limit, request) {
                    (None, Value::String(r)) => r != "none",
                    (None, r) => {
                        int(r)?;
                        true
                    }
                    (Some(Value::String(l)), Value::String(r)) => l != r,
                    (Some(Value::Number(l)), Value::Number(r)) => !same_number(l, r)?,
                    (Some(Value::String(_)), r) | (Some(r), Value::String(_)) => {
                        int(r)?;
                        true
                    }
                    _ => return Err(Defer),
                };
                if !differs {
                    continue;
                }
                let request = match request {
                    Value::String(s) => s.clone(),
                    r => int(r)?.to_string(),
                };
                let container = container_name(c)?;
                if let (Some(container), Some(object)) = (container, self.name()?) {
                    out.push(Value::String(format!(
                        "container `{container}` of {kind} `{object}` requests {request} of `{name}` but its limit differs"
                    )));
                }
            }
        }
        Ok(out)
    }

    fn latest_tag(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        let Some(kind) = self
            .kind()
            .filter(|k| pod_kind(k) || ["Project", "Platform", "ModelRollout"].contains(k))
        else {
            return Ok(out);
        };
        for image in self.images()? {
            if floating(image)
                && let Some(name) = self.name()?
            {
                out.push(Value::String(format!(
                    "image `{image}` of {kind} `{name}` floats; pin a version tag or a digest"
                )));
            }
        }
        Ok(out)
    }

    fn network_isolation_deny(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        if self.kind() == Some("Project")
            && self.is_spec()?
            && is_bool(self.get(&["spec", "network", "isolation"]), false)
            && truthy(self.project_of()?.and_then(|p| at(p, &["production"])))
            && let Some(name) = self.name()?
        {
            out.push(located(
                    format!("project `{name}` runs on a production cluster and must keep network isolation on"),
                    "spec.network.isolation".into(),
                ));
        }
        if self.kind() == Some("Platform")
            && is_bool(self.get(&["spec", "defaults", "networkIsolation"]), false)
        {
            out.push(located(
                "the platform turns network isolation off by default; projects must opt out one by one".into(),
                "spec.defaults.networkIsolation".into(),
            ));
        }
        Ok(out)
    }

    fn network_isolation_warn(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        if self.kind() == Some("Project")
            && self.is_spec()?
            && is_bool(self.get(&["spec", "network", "isolation"]), false)
            && !truthy(self.project_of()?.and_then(|p| at(p, &["production"])))
            && let Some(name) = self.name()?
        {
            out.push(located(
                format!(
                    "project `{name}` turns network isolation off: any namespace can reach its pods"
                ),
                "spec.network.isolation".into(),
            ));
        }
        Ok(out)
    }

    fn single_owner(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        if self.kind() != Some("Project") || !self.is_spec()? {
            return Ok(out);
        }
        let Some(spec) = self.get(&["spec"]) else {
            return Ok(out);
        };
        let owners = match object_get(spec, "owners", EMPTY)? {
            Value::Array(a) => a.len(),
            Value::Object(o) => o.len(),
            _ => return Err(Defer),
        };
        if owners < 2
            && let Some(name) = self.name()?
        {
            out.push(located(
                format!("project `{name}` has fewer than two owners"),
                "spec.owners".into(),
            ));
        }
        Ok(out)
    }

    /// The access grants of a PII dataset (`some i, grant in input.spec.access`).
    fn pii_grants(&self) -> R<&'a [Value]> {
        if self.kind() != Some("Dataset") || !is_str(self.get(&["spec", "sensitivity"]), "pii") {
            return Ok(&[]);
        }
        match self.get(&["spec", "access"]) {
            None => Ok(&[]),
            Some(a) => elements(a),
        }
    }

    fn pii_write(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        for (i, grant) in self.pii_grants()?.iter().enumerate() {
            if is_str(at(grant, &["mode"]), "read-write")
                && let (Some(name), Some(project)) = (self.name()?, text(at(grant, &["project"]))?)
            {
                out.push(located(
                        format!("PII dataset `{name}` must be read-only, but project `{project}` is granted read-write"),
                        format!("spec.access[{i}].mode"),
                    ));
            }
        }
        Ok(out)
    }

    fn pii_global(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        if self.kind() == Some("Dataset")
            && is_str(self.get(&["spec", "sensitivity"]), "pii")
            && is_bool(self.get(&["spec", "global"]), true)
            && let Some(name) = self.name()?
        {
            out.push(located(
                format!(
                    "PII dataset `{name}` must not be global; grant it to the projects that need it"
                ),
                "spec.global".into(),
            ));
        }
        Ok(out)
    }

    /// `grant_clusters(grant)`.
    fn grant_clusters(&self, grant: &'a Value) -> R<&'a [Value]> {
        let clusters = elements(object_get(grant, "clusters", EMPTY)?)?;
        if !clusters.is_empty() {
            return Ok(clusters);
        }
        let project = match at(grant, &["project"]).and_then(Value::as_str) {
            Some(p) => self.project(p)?,
            None => None,
        };
        match project.and_then(|p| at(p, &["clusters"])) {
            None => Ok(&[]),
            Some(c) => elements(c),
        }
    }

    fn pii_outside_production(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        for (i, grant) in self.pii_grants()?.iter().enumerate() {
            for cluster in self.grant_clusters(grant)? {
                let production = cluster.as_str().and_then(|c| {
                    at(
                        self.data,
                        &["plinth", "resolved", "clusters", c, "production"],
                    )
                });
                if truthy(production) {
                    continue;
                }
                let (name, project, cluster) = (
                    self.name()?,
                    text(at(grant, &["project"]))?,
                    text(Some(cluster))?,
                );
                if let (Some(name), Some(project), Some(cluster)) = (name, project, cluster) {
                    out.push(located(
                        format!("PII dataset `{name}` is granted to project `{project}`, which lives on cluster `{cluster}`, not a production cluster"),
                        format!("spec.access[{i}].project"),
                    ));
                }
            }
        }
        Ok(out)
    }

    fn retention(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        let sensitivity = self.get(&["spec", "sensitivity"]);
        if self.kind() == Some("Dataset")
            && (is_str(sensitivity, "confidential") || is_str(sensitivity, "pii"))
            && !truthy(self.get(&["spec", "retention"]))
            && let (Some(s), Some(name)) = (text(sensitivity)?, self.name()?)
        {
            out.push(located(
                format!("{s} dataset `{name}` has no `retention`"),
                "spec.sensitivity".into(),
            ));
        }
        Ok(out)
    }

    /// `deny_privileged` and `deny_privilege_escalation`: a container whose
    /// `securityContext.<flag>` is `true`.
    fn container_flag(&self, flag: &str, says: &str) -> R<Vec<Value>> {
        let mut out = Vec::new();
        let Some(kind) = self.kind().filter(|k| pod_kind(k)) else {
            return Ok(out);
        };
        for c in self.containers()?.unwrap_or_default() {
            if is_bool(at(c, &["securityContext", flag]), true)
                && let (Some(container), Some(name)) = (text(at(c, &["name"]))?, self.name()?)
            {
                out.push(Value::String(format!(
                    "container `{container}` of {kind} `{name}` {says}"
                )));
            }
        }
        Ok(out)
    }

    fn host_namespaces(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        let (Some(kind), Some(spec)) = (self.kind().filter(|k| pod_kind(k)), self.pod_spec())
        else {
            return Ok(out);
        };
        for field in ["hostNetwork", "hostPID", "hostIPC"] {
            if is_bool(at(spec, &[field]), true)
                && let Some(name) = self.name()?
            {
                out.push(Value::String(format!(
                    "{kind} `{name}` uses the host's namespaces (`{field}`)"
                )));
            }
        }
        Ok(out)
    }

    fn rollout_strategy(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        if self.kind() == Some("ModelRollout")
            && self.is_spec()?
            && truthy(self.project_of()?.and_then(|p| at(p, &["production"])))
            && !truthy(self.get(&["spec", "traffic"]))
            && let Some(name) = self.name()?
        {
            out.push(located(
                    format!("model rollout `{name}` runs on a production cluster and must use a `canary`, `blueGreen` or `shadow` strategy (`spec.traffic`)"),
                    "spec".into(),
                ));
        }
        Ok(out)
    }

    fn image_registry(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        let Some(kind) = self
            .kind()
            .filter(|k| pod_kind(k) || ["Project", "Platform", "ModelRollout"].contains(k))
        else {
            return Ok(out);
        };
        let Some(allowed) = self
            .parameters()
            .and_then(|p| at(p, &["allowedRegistries"]))
        else {
            return Ok(out);
        };
        let allowed: Vec<&str> = elements(allowed)?
            .iter()
            .map(|p| p.as_str().ok_or(Defer))
            .collect::<R<_>>()?;
        for image in self.images()? {
            if allowed.iter().any(|p| image.starts_with(p)) {
                continue;
            }
            if let Some(name) = self.name()? {
                let allowed = allowed.join(", ");
                out.push(Value::String(format!(
                    "image `{image}` of {kind} `{name}` is not from an allowed registry ({allowed})"
                )));
            }
        }
        Ok(out)
    }

    fn missing_requests(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        let Some(kind) = self.kind().filter(|k| pod_kind(k)) else {
            return Ok(out);
        };
        for c in self.containers()?.unwrap_or_default() {
            for resource in ["cpu", "memory"] {
                if truthy(at(c, &["resources", "requests", resource])) {
                    continue;
                }
                let container = container_name(c)?;
                if let (Some(container), Some(name)) = (container, self.name()?) {
                    out.push(Value::String(format!(
                        "container `{container}` of {kind} `{name}` has no `{resource}` request"
                    )));
                }
            }
        }
        Ok(out)
    }

    fn run_as_root(&self) -> R<Vec<Value>> {
        let mut out = Vec::new();
        let (Some(kind), Some(spec)) = (self.kind().filter(|k| pod_kind(k)), self.pod_spec())
        else {
            return Ok(out);
        };
        let pod_non_root = is_bool(at(spec, &["securityContext", "runAsNonRoot"]), true);
        for c in elements(object_get(spec, "containers", EMPTY)?)? {
            if is_bool(at(c, &["securityContext", "runAsNonRoot"]), true) || pod_non_root {
                continue;
            }
            if let (Some(container), Some(name)) = (text(at(c, &["name"]))?, self.name()?) {
                out.push(Value::String(format!(
                    "container `{container}` of {kind} `{name}` may run as root; set `runAsNonRoot: true`"
                )));
            }
        }
        Ok(out)
    }
}

/// `floating(image)` of `latest_tag.rego`.
fn floating(image: &str) -> bool {
    image.ends_with(":latest")
        || (!image.contains('@') && !image.rsplit('/').next().unwrap_or("").contains(':'))
}
