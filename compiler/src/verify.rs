//! Verify: every generated object against the schema of its kind, before anything is written.
//!
//! Built-in kinds are read back into their `k8s-openapi` type and must serialise to exactly
//! the same JSON (a field the API does not know, or a value of the wrong type, would be lost or
//! refused). Custom resources are validated against `schemas/crds/`. Names, namespaces and
//! labels follow the API server's rules. A failure is an internal-error diagnostic naming the
//! object and the spec that produced it: plinth generated something it should not have.

use k8s_openapi::api::admissionregistration::v1 as admission;
use k8s_openapi::api::apps::v1 as apps;
use k8s_openapi::api::autoscaling::v2 as autoscaling;
use k8s_openapi::api::batch::v1 as batch;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as networking;
use k8s_openapi::api::policy::v1 as policy;
use k8s_openapi::api::rbac::v1 as rbac;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::crd;
use crate::diag::Diagnostics;
pub use crate::names::{is_dns_label, is_dns_subdomain, is_label_value, is_qualified_name};
use crate::output::{Lowered, Manifest, at, internal};

/// Check every object of every cluster.
pub fn verify(lowered: &Lowered) -> Diagnostics {
    use rayon::prelude::*;
    let mut d = Diagnostics::new();
    for (cluster, out) in &lowered.clusters {
        let failures: Vec<crate::diag::Diagnostic> = out
            .manifests
            .par_iter()
            .filter_map(|m| {
                verify_one(m).err().map(|msg| {
                    internal(
                        &m.origin,
                        &format!(
                            "generated {} in cluster `{cluster}` is invalid: {msg}",
                            m.key
                        ),
                    )
                })
            })
            .collect();
        d.extend(failures);
    }
    d
}

/// Check one object; the error says what is wrong.
pub fn verify_one(m: &Manifest) -> Result<(), String> {
    let key = &m.key;
    metadata(&m.object)?;
    let namespaced = match builtin(&key.api_version, &key.kind) {
        Some((check, namespaced)) => {
            // Serialised from this very type (and only given annotations since): reading it
            // back cannot lose or change a field, so release builds skip the round trip. Debug
            // builds, every test, make it anyway, which keeps that claim tested on every typed
            // object.
            if cfg!(debug_assertions) || !built_from_its_type(m) {
                check(&m.object)?;
            }
            namespaced
        }
        None => {
            let crd = crd::find(&key.api_version, &key.kind);
            let Some((crd, validator)) = crd.and_then(|c| Some((c, c.validator()?))) else {
                return Err(format!(
                    "plinth has no schema for `{}` `{}`",
                    key.api_version, key.kind
                ));
            };
            let errors: Vec<String> = validator
                .iter_errors(&m.object)
                .map(|e| format!("{} at `{}`", e, e.instance_path()))
                .take(3)
                .collect();
            if !errors.is_empty() {
                return Err(errors.join("; "));
            }
            crd.namespaced
        }
    };
    match (namespaced, &key.namespace) {
        (true, None) => Err("a namespaced kind without a namespace".to_owned()),
        (false, Some(ns)) => Err(format!("a cluster-scoped kind with namespace `{ns}`")),
        _ => Ok(()),
    }
}

type Check = fn(&Value) -> Result<(), String>;

/// Whether an object's JSON was serialised from the `k8s-openapi` type of its own
/// `apiVersion` and `kind` (by [`crate::lower::Sink::push`]) and not changed since.
fn built_from_its_type(m: &Manifest) -> bool {
    m.object.typed_as() == Some((m.key.api_version.as_str(), m.key.kind.as_str()))
}

/// The check of a built-in kind and whether it is namespaced.
fn builtin(api_version: &str, kind: &str) -> Option<(Check, bool)> {
    Some(match (api_version, kind) {
        ("v1", "Namespace") => entry::<core::Namespace>(),
        ("v1", "ResourceQuota") => entry::<core::ResourceQuota>(),
        ("v1", "LimitRange") => entry::<core::LimitRange>(),
        ("v1", "ServiceAccount") => entry::<core::ServiceAccount>(),
        ("v1", "PersistentVolume") => entry::<core::PersistentVolume>(),
        ("v1", "PersistentVolumeClaim") => entry::<core::PersistentVolumeClaim>(),
        ("v1", "ConfigMap") => entry::<core::ConfigMap>(),
        ("v1", "Secret") => entry::<core::Secret>(),
        ("v1", "Service") => entry::<core::Service>(),
        ("v1", "Pod") => entry::<core::Pod>(),
        ("apps/v1", "Deployment") => entry::<apps::Deployment>(),
        ("apps/v1", "StatefulSet") => entry::<apps::StatefulSet>(),
        ("batch/v1", "Job") => entry::<batch::Job>(),
        ("batch/v1", "CronJob") => entry::<batch::CronJob>(),
        ("autoscaling/v2", "HorizontalPodAutoscaler") => {
            entry::<autoscaling::HorizontalPodAutoscaler>()
        }
        ("networking.k8s.io/v1", "NetworkPolicy") => entry::<networking::NetworkPolicy>(),
        ("networking.k8s.io/v1", "Ingress") => entry::<networking::Ingress>(),
        ("policy/v1", "PodDisruptionBudget") => entry::<policy::PodDisruptionBudget>(),
        ("rbac.authorization.k8s.io/v1", "Role") => entry::<rbac::Role>(),
        ("rbac.authorization.k8s.io/v1", "RoleBinding") => entry::<rbac::RoleBinding>(),
        ("rbac.authorization.k8s.io/v1", "ClusterRole") => entry::<rbac::ClusterRole>(),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
            entry::<rbac::ClusterRoleBinding>()
        }
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicy") => {
            entry::<admission::ValidatingAdmissionPolicy>()
        }
        ("admissionregistration.k8s.io/v1", "ValidatingAdmissionPolicyBinding") => {
            entry::<admission::ValidatingAdmissionPolicyBinding>()
        }
        _ => return None,
    })
}

/// A built-in kind's [`Check`] and scope.
fn entry<T>() -> (Check, bool)
where
    T: DeserializeOwned + Serialize + k8s_openapi::Resource,
    T::Scope: Scoped,
{
    (round_trip::<T>, <T::Scope as Scoped>::NAMESPACED)
}

/// Read the object into its typed form and back; nothing may be lost or changed.
fn round_trip<T>(v: &Value) -> Result<(), String>
where
    T: DeserializeOwned + Serialize + k8s_openapi::Resource,
{
    let typed = T::deserialize(v).map_err(|e| format!("not a valid {}: {e}", T::KIND))?;
    let mut back = serde_json::to_value(&typed).map_err(|e| e.to_string())?;
    // A StatefulSet's claim templates are PersistentVolumeClaims, which k8s-openapi writes
    // with `apiVersion` and `kind`; the API server does not ask for them there.
    if let (Some(orig), Some(Value::Array(templates))) = (
        at(v, &["spec", "volumeClaimTemplates"]).and_then(Value::as_array),
        back.pointer_mut("/spec/volumeClaimTemplates"),
    ) {
        for (o, b) in orig.iter().zip(templates.iter_mut()) {
            if let (Some(o), Some(b)) = (o.as_object(), b.as_object_mut()) {
                for k in ["apiVersion", "kind"] {
                    if !o.contains_key(k) {
                        b.remove(k);
                    }
                }
            }
        }
    }
    // Map equality ignores key order, as canonical JSON does.
    if back != *v {
        let path = first_difference(v, &back, String::new()).unwrap_or_default();
        return Err(format!(
            "`{path}` is not a field of {} {} (or has the wrong type)",
            T::API_VERSION,
            T::KIND
        ));
    }
    Ok(())
}

/// Whether a `k8s-openapi` scope marker means "namespaced".
trait Scoped {
    const NAMESPACED: bool;
}
impl Scoped for k8s_openapi::NamespaceResourceScope {
    const NAMESPACED: bool = true;
}
impl Scoped for k8s_openapi::ClusterResourceScope {
    const NAMESPACED: bool = false;
}

fn first_difference(a: &Value, b: &Value, at: String) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                let here = if at.is_empty() {
                    k.clone()
                } else {
                    format!("{at}.{k}")
                };
                match y.get(k) {
                    None => return Some(here),
                    Some(vb) => {
                        if let Some(p) = first_difference(va, vb, here) {
                            return Some(p);
                        }
                    }
                }
            }
            y.keys()
                .find(|k| !x.contains_key(*k))
                .map(|k| format!("{at}.{k}"))
        }
        (Value::Array(x), Value::Array(y)) => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                if let Some(p) = first_difference(va, vb, format!("{at}[{i}]")) {
                    return Some(p);
                }
            }
            (x.len() != y.len()).then_some(at)
        }
        _ => (a != b).then_some(at),
    }
}

/// Names, namespaces, label keys and values as the API server checks them.
fn metadata(v: &Value) -> Result<(), String> {
    let name = v
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .ok_or("no `metadata.name`")?;
    if !is_dns_subdomain(name) {
        return Err(format!("name `{name}` is not a DNS-1123 subdomain"));
    }
    if let Some(ns) = at(v, &["metadata", "namespace"]).and_then(Value::as_str)
        && !is_dns_label(ns)
    {
        return Err(format!("namespace `{ns}` is not a DNS-1123 label"));
    }
    if let Some(labels) = at(v, &["metadata", "labels"]).and_then(Value::as_object) {
        for (k, val) in labels {
            if !is_qualified_name(k) {
                return Err(format!("label key `{k}` is not a qualified name"));
            }
            let val = val
                .as_str()
                .ok_or_else(|| format!("label `{k}` is not a string"))?;
            if !is_label_value(val) {
                return Err(format!("label `{k}` has the invalid value `{val}`"));
            }
        }
    }
    if let Some(ann) = at(v, &["metadata", "annotations"]).and_then(Value::as_object) {
        let size: usize = ann
            .iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum();
        if size > 256 * 1024 {
            return Err(format!(
                "annotations total {size} bytes, over the API server's 256 KiB"
            ));
        }
        for k in ann.keys() {
            if !is_qualified_name(k) {
                return Err(format!("annotation key `{k}` is not a qualified name"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::{ObjectKey, Origin};
    use crate::model::Kind;
    use serde_json::json;

    fn manifest(v: Value) -> Manifest {
        Manifest {
            key: ObjectKey::of(&v),
            object: v.into(),
            origin: Origin {
                file: "p.yaml".into(),
                line: 1,
                kind: Kind::Project,
                name: "p".into(),
            },
            hash: String::new(),
        }
    }

    #[test]
    fn builtin_round_trip_catches_unknown_fields() {
        let ok = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "er"}});
        assert_eq!(verify_one(&manifest(ok)), Ok(()));
        let bad = json!({"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": "q", "namespace": "er"}, "spec": {"hardd": {}}});
        let err = verify_one(&manifest(bad)).expect_err("unknown field");
        assert!(err.contains("spec.hardd"), "{err}");
        let wrong_scope =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
        assert!(
            verify_one(&manifest(wrong_scope)).is_err_and(|e| e.contains("without a namespace"))
        );
    }

    #[test]
    fn only_an_unchanged_object_of_its_own_type_counts_as_built_from_it() {
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "er"}});
        let mut typed = Manifest {
            object: crate::output::Obj::typed::<core::Namespace>(ns.clone()),
            ..manifest(ns.clone())
        };
        assert!(built_from_its_type(&typed));
        // Marked with another type than its own kind's: not trusted.
        let other = Manifest {
            object: crate::output::Obj::typed::<core::ConfigMap>(ns.clone()),
            ..manifest(ns.clone())
        };
        assert!(!built_from_its_type(&other));
        // Kept as text (a unit stored), still the same value.
        let text = Manifest {
            object: typed.object.clone().into_text(),
            ..manifest(ns.clone())
        };
        assert!(built_from_its_type(&text));
        // Changed in place: no longer what the type wrote.
        typed.object["spec"] = json!({"finalizerz": []});
        assert!(!built_from_its_type(&typed));
        // The full check still runs on it, in every build.
        assert!(verify_one(&typed).is_err_and(|e| e.contains("finalizerz")));
        assert!(!built_from_its_type(&manifest(ns)));
    }

    #[test]
    fn crds_are_checked_against_their_schema() {
        let ok = json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue", "metadata": {"name": "a100", "namespace": "er"}, "spec": {"clusterQueue": "er-a100"}});
        assert_eq!(verify_one(&manifest(ok)), Ok(()));
        let bad = json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue", "metadata": {"name": "a100", "namespace": "er"}, "spec": {"clusterQueu": "x"}});
        assert!(verify_one(&manifest(bad)).is_err());
        let unknown =
            json!({"apiVersion": "example.org/v1", "kind": "Thing", "metadata": {"name": "t"}});
        assert!(verify_one(&manifest(unknown)).is_err_and(|e| e.contains("no schema")));
    }

    #[test]
    fn label_rules() {
        assert!(is_qualified_name("app.kubernetes.io/managed-by"));
        assert!(is_qualified_name("plinth"));
        assert!(!is_qualified_name("a/b/c"));
        assert!(!is_qualified_name("-x"));
        assert!(is_label_value(""));
        assert!(is_label_value("er-capacity"));
        assert!(!is_label_value("dana@example.org"));
        assert!(!is_label_value(&"a".repeat(64)));
    }
}
