//! Health per kind, read from a live object's `status` (what the cluster's controllers
//! report). Ordered: `Healthy` < `Progressing` < `Degraded`, so the worst of a set is its max.
//!
//! - Deployment, StatefulSet: the controller has seen the latest generation and every replica
//!   is updated and available (ready for a StatefulSet); a Deployment whose `Progressing`
//!   condition says `ProgressDeadlineExceeded` is degraded.
//! - PersistentVolumeClaim: `Bound` (`Lost` is degraded); PersistentVolume: `Bound` or
//!   `Available` (`Failed` is degraded).
//! - Namespace: `Active`. CustomResourceDefinition: `Established`.
//! - KServe InferenceService: condition `Ready` is `True` for the latest generation.
//! - Argo Rollout: phase `Healthy` (`Paused` counts as healthy: a blue-green rollout waiting
//!   for promotion is what the spec asked for), `Degraded` is degraded.
//! - Everything else is healthy once it exists.
//!
//! Pure: the agent's loop polls and calls [`of`].

use std::fmt;

use serde::Serialize;
use serde_json::Value;

/// How an object is doing.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "state", content = "reason", rename_all = "camelCase")]
pub enum Health {
    Healthy,
    /// Not there yet: waiting is expected to help.
    Progressing(String),
    /// Failed: waiting will not help.
    Degraded(String),
}

impl Health {
    pub fn is_healthy(&self) -> bool {
        matches!(self, Health::Healthy)
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Healthy => f.write_str("healthy"),
            Health::Progressing(r) => write!(f, "progressing: {r}"),
            Health::Degraded(r) => write!(f, "degraded: {r}"),
        }
    }
}

fn int(v: &Value, ptr: &str) -> Option<i64> {
    let x = v.pointer(ptr)?;
    x.as_i64()
        .or_else(|| x.as_str().and_then(|s| s.parse().ok()))
}

fn string<'v>(v: &'v Value, ptr: &str) -> Option<&'v str> {
    v.pointer(ptr).and_then(Value::as_str)
}

/// The condition of `type_` in `status.conditions`.
fn condition<'v>(v: &'v Value, type_: &str) -> Option<&'v Value> {
    v.pointer("/status/conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
}

/// Whether the controller has seen the latest spec (`status.observedGeneration ≥
/// metadata.generation`); objects without a generation count as seen.
fn observed(v: &Value) -> Result<(), Health> {
    match (
        int(v, "/metadata/generation"),
        int(v, "/status/observedGeneration"),
    ) {
        (Some(g), Some(o)) if o >= g => Ok(()),
        (Some(g), o) => Err(Health::Progressing(format!(
            "generation {g} not yet observed (observed {})",
            o.map_or_else(|| "none".to_owned(), |o| o.to_string())
        ))),
        (None, _) => Ok(()),
    }
}

/// The health of a live object.
pub fn of(v: &Value) -> Health {
    let kind = string(v, "/kind").unwrap_or("");
    let group = string(v, "/apiVersion")
        .and_then(|a| a.rsplit_once('/'))
        .map_or("", |(g, _)| g);
    match (group, kind) {
        ("apps", "Deployment") => deployment(v),
        ("apps", "StatefulSet") => statefulset(v),
        ("", "PersistentVolumeClaim") => match string(v, "/status/phase") {
            Some("Bound") => Health::Healthy,
            Some("Lost") => Health::Degraded("claim lost its volume".into()),
            Some(p) => Health::Progressing(format!("phase {p}")),
            None => Health::Progressing("no phase yet".into()),
        },
        ("", "PersistentVolume") => match string(v, "/status/phase") {
            Some("Bound" | "Available") => Health::Healthy,
            Some("Failed") => Health::Degraded(
                string(v, "/status/message")
                    .unwrap_or("volume failed")
                    .to_owned(),
            ),
            Some(p) => Health::Progressing(format!("phase {p}")),
            None => Health::Progressing("no phase yet".into()),
        },
        ("", "Namespace") => match string(v, "/status/phase") {
            Some("Active") | None => Health::Healthy,
            Some(p) => Health::Progressing(format!("phase {p}")),
        },
        ("apiextensions.k8s.io", "CustomResourceDefinition") => ready(v, "Established"),
        ("serving.kserve.io", "InferenceService") => {
            if let Err(h) = observed(v) {
                return h;
            }
            ready(v, "Ready")
        }
        ("argoproj.io", "Rollout") => rollout(v),
        _ => Health::Healthy,
    }
}

/// Healthy when condition `type_` is `True`.
fn ready(v: &Value, type_: &str) -> Health {
    match condition(v, type_) {
        Some(c) if c.get("status").and_then(Value::as_str) == Some("True") => Health::Healthy,
        Some(c) => {
            let why = c
                .get("message")
                .or_else(|| c.get("reason"))
                .and_then(Value::as_str)
                .unwrap_or("");
            Health::Progressing(format!("{type_} is not True{}", suffix(why)))
        }
        None => Health::Progressing(format!("no {type_} condition yet")),
    }
}

fn suffix(why: &str) -> String {
    if why.is_empty() {
        String::new()
    } else {
        format!(": {why}")
    }
}

fn deployment(v: &Value) -> Health {
    if let Some(c) = condition(v, "Progressing")
        && c.get("reason").and_then(Value::as_str) == Some("ProgressDeadlineExceeded")
    {
        return Health::Degraded(format!(
            "progress deadline exceeded{}",
            suffix(c.get("message").and_then(Value::as_str).unwrap_or(""))
        ));
    }
    if let Err(h) = observed(v) {
        return h;
    }
    let want = int(v, "/spec/replicas").unwrap_or(1);
    let updated = int(v, "/status/updatedReplicas").unwrap_or(0);
    let available = int(v, "/status/availableReplicas").unwrap_or(0);
    let total = int(v, "/status/replicas").unwrap_or(0);
    if updated < want {
        return Health::Progressing(format!("{updated} of {want} replicas updated"));
    }
    if total > updated {
        return Health::Progressing(format!(
            "{} old replicas pending termination",
            total - updated
        ));
    }
    if available < updated {
        return Health::Progressing(format!(
            "{available} of {updated} updated replicas available"
        ));
    }
    Health::Healthy
}

fn statefulset(v: &Value) -> Health {
    if let Err(h) = observed(v) {
        return h;
    }
    let want = int(v, "/spec/replicas").unwrap_or(1);
    let ready = int(v, "/status/readyReplicas").unwrap_or(0);
    let updated = int(v, "/status/updatedReplicas").unwrap_or(0);
    if updated < want {
        return Health::Progressing(format!("{updated} of {want} replicas updated"));
    }
    if ready < want {
        return Health::Progressing(format!("{ready} of {want} replicas ready"));
    }
    Health::Healthy
}

fn rollout(v: &Value) -> Health {
    if let Err(h) = observed(v) {
        return h;
    }
    let message = string(v, "/status/message").unwrap_or("");
    match string(v, "/status/phase") {
        Some("Healthy") => Health::Healthy,
        Some("Paused") => Health::Healthy,
        Some("Degraded") => Health::Degraded(format!("rollout degraded{}", suffix(message))),
        Some(p) => Health::Progressing(format!("phase {p}{}", suffix(message))),
        None => Health::Progressing("no phase yet".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn deployments() {
        let mut d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"generation": 2}, "spec": {"replicas": 2}});
        assert!(matches!(of(&d), Health::Progressing(r) if r.contains("generation 2")));
        d["status"] = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1});
        assert_eq!(
            of(&d),
            Health::Progressing("1 of 2 replicas updated".into())
        );
        d["status"] = json!({"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2});
        assert_eq!(of(&d), Health::Healthy);
        d["status"]["conditions"] = json!([{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]);
        assert!(matches!(of(&d), Health::Degraded(_)));
    }

    #[test]
    fn claims_namespaces_inference_services_rollouts() {
        let pvc = |phase: &str| json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "status": {"phase": phase}});
        assert_eq!(of(&pvc("Bound")), Health::Healthy);
        assert!(matches!(of(&pvc("Pending")), Health::Progressing(_)));
        assert!(matches!(of(&pvc("Lost")), Health::Degraded(_)));
        let ns =
            json!({"apiVersion": "v1", "kind": "Namespace", "status": {"phase": "Terminating"}});
        assert!(matches!(of(&ns), Health::Progressing(_)));
        let mut isvc = json!({"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"generation": 1}, "status": {"observedGeneration": 1}});
        assert!(matches!(of(&isvc), Health::Progressing(r) if r.contains("no Ready")));
        isvc["status"]["conditions"] = json!([{"type": "Ready", "status": "True"}]);
        assert_eq!(of(&isvc), Health::Healthy);
        let ro = json!({"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout", "status": {"phase": "Paused"}});
        assert_eq!(of(&ro), Health::Healthy);
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap"});
        assert_eq!(of(&cm), Health::Healthy);
        assert!(Health::Healthy < Health::Progressing(String::new()));
    }
}
