//! Simulated controllers (opt-in: [`crate::Builder::simulate_controllers`], the binary's
//! `--simulate-controllers`): what a cluster's controllers would report once a workload has
//! settled, so an agent run against the test server can end healthy.
//!
//! - PersistentVolumeClaim: `Bound` (with the requested capacity); PersistentVolume:
//!   `Bound` when it has a `claimRef`, else `Available`.
//! - Deployment, StatefulSet: rolled out: `observedGeneration` is the object's generation and
//!   every replica of `spec.replicas` (default 1) is updated, ready and available.
//! - KServe InferenceService: condition `Ready` `True` at the latest generation.
//! - Argo Rollout: phase `Healthy` at the latest generation.
//!
//! A status is written only when it differs from what the controller would report: a new
//! generation (a changed spec) is observed again; a settled object is not written again.
//! Nothing is created (no pods, no ReplicaSets, no volumes).

use serde_json::{Value, json};

use crate::store::{ObjKey, Store};

/// The status a controller would settle `object` on, when it differs from its current one.
pub fn settled_status(group: &str, kind: &str, object: &Value) -> Option<Value> {
    let generation = object
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let replicas = object
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    let old = object.get("status").cloned().unwrap_or(Value::Null);
    let status = match (group, kind) {
        ("", "PersistentVolumeClaim") => {
            let mut s = json!({"phase": "Bound"});
            if let Some(modes) = object.pointer("/spec/accessModes") {
                s["accessModes"] = modes.clone();
            }
            if let Some(size) = object.pointer("/spec/resources/requests/storage") {
                s["capacity"] = json!({"storage": size});
            }
            s
        }
        ("", "PersistentVolume") => {
            let phase = if object.pointer("/spec/claimRef").is_some() {
                "Bound"
            } else {
                "Available"
            };
            json!({"phase": phase})
        }
        ("apps", "Deployment") => json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
            "conditions": [
                {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"},
                {"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"},
            ],
        }),
        ("apps", "StatefulSet") => json!({
            "observedGeneration": generation,
            "replicas": replicas,
            "currentReplicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }),
        ("serving.kserve.io", "InferenceService") => json!({
            "observedGeneration": generation,
            "conditions": [{"type": "Ready", "status": "True"}],
        }),
        // Argo Rollouts reports `observedGeneration` as a string.
        ("argoproj.io", "Rollout") => json!({
            "observedGeneration": generation.to_string(),
            "phase": "Healthy",
            "replicas": replicas,
            "updatedReplicas": replicas,
            "readyReplicas": replicas,
            "availableReplicas": replicas,
        }),
        _ => return None,
    };
    (status != old).then_some(status)
}

/// One pass of every simulated controller over the store; returns how many objects changed.
pub fn reconcile(store: &mut Store) -> usize {
    let due: Vec<(ObjKey, Value)> = store
        .objects
        .iter()
        .filter_map(|(key, stored)| {
            let info = store.registry.kinds().get(key.kind)?;
            let status = settled_status(&info.group, &info.kind, &stored.body)?;
            Some((key.clone(), status))
        })
        .collect();
    let n = due.len();
    for (key, status) in due {
        store.modify(&key, |o| {
            if let Some(m) = o.as_object_mut() {
                m.insert("status".into(), status);
            }
        });
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deployment_is_rolled_out_at_its_generation_and_then_left_alone() {
        let d = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "generation": 3}, "spec": {"replicas": 2}});
        let s = settled_status("apps", "Deployment", &d).expect("a status");
        assert_eq!(s["observedGeneration"], 3);
        assert_eq!(s["availableReplicas"], 2);
        let mut settled = d.clone();
        settled["status"] = s;
        assert_eq!(settled_status("apps", "Deployment", &settled), None);
        settled["metadata"]["generation"] = json!(4);
        assert_eq!(
            settled_status("apps", "Deployment", &settled).expect("observed again")["observedGeneration"],
            4
        );
    }

    #[test]
    fn reconcile_settles_the_store_once_and_again_after_a_new_generation() {
        use crate::ops::WriteOpts;
        use crate::registry::Registry;
        let registry = std::sync::Arc::new(Registry::plinth());
        let mut store = Store::new(std::sync::Arc::clone(&registry));
        let opts = WriteOpts {
            manager: "test".into(),
            manager_given: true,
            ..WriteOpts::default()
        };
        let ns = registry.by_kind("v1", "Namespace").expect("namespaces");
        store
            .create(
                ns,
                None,
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}),
                &opts,
            )
            .expect("namespace");
        let dep = registry
            .by_kind("apps/v1", "Deployment")
            .expect("deployments");
        let body = json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "a", "namespace": "x"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        store
            .create(dep, Some("x"), body, &opts)
            .expect("deployment");
        assert_eq!(reconcile(&mut store), 1);
        assert_eq!(
            reconcile(&mut store),
            0,
            "a settled object is not written again"
        );
        let key = store.key(dep, Some("x"), "a");
        let v = store.objects[&key].body.clone();
        assert_eq!(
            v["status"]["observedGeneration"],
            v["metadata"]["generation"]
        );
        assert_eq!(v["status"]["availableReplicas"], 2);
    }

    #[test]
    fn claims_bind_and_other_kinds_are_untouched() {
        let pvc = json!({"kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        let s = settled_status("", "PersistentVolumeClaim", &pvc).expect("bound");
        assert_eq!(s["phase"], "Bound");
        assert_eq!(s["capacity"]["storage"], "1Gi");
        assert_eq!(
            settled_status("", "ConfigMap", &json!({"metadata": {}})),
            None
        );
    }
}
