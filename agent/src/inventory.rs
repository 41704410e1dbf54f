//! The inventory: what the agent has applied to a cluster, kept in the cluster itself
//! (ConfigMap `plinth-system/plinth-inventory`), so that pruning deletes only objects the
//! agent created and no longer desires, whatever happened to the tree in between.
//!
//! Data keys: `cluster` (the plinth cluster name the objects belong to), `revision` (the
//! sha256 of the `plinth.lock.json` last applied completely), `objects` (one JSON object key
//! per line, sorted), `approvals` (the Platform's `spec.approvals` entries of that revision,
//! one JSON entry per line: an entry already seen approves nothing new) and `approved` (object
//! keys whose approved deletion is still pending — a namespace held, a failed delete — so the
//! approval that was spent on them keeps counting until they are gone). Before applying, the agent records desired ∪ inventory, so an object is
//! tracked before it exists and an interrupted run loses nothing; after a complete run it
//! records what is desired plus every candidate it did not delete. An object leaves the
//! inventory only once it is gone.
//!
//! Pure: converting to and from the ConfigMap, and the set arithmetic.

use std::collections::BTreeSet;

use plinth::lower::{Approval, ObjectKey};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::Error;

/// Namespace of the inventory ConfigMap.
pub const NAMESPACE: &str = "plinth-system";
/// Name of the inventory ConfigMap.
pub const NAME: &str = "plinth-inventory";
/// The inventory ConfigMap (where the audit ledger is kept too).
pub fn key() -> ObjectKey {
    ObjectKey {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some(NAMESPACE.into()),
        name: NAME.into(),
    }
}

/// The namespace the inventory is kept in.
pub fn namespace_key() -> ObjectKey {
    ObjectKey {
        api_version: "v1".into(),
        kind: "Namespace".into(),
        namespace: None,
        name: NAMESPACE.into(),
    }
}

/// Label on what the agent writes for itself (never `plinth`, so nothing of the agent's own
/// is ever a prune candidate).
pub const AGENT_LABEL: (&str, &str) = ("app.kubernetes.io/managed-by", "plinth-agent");

/// The objects applied to one cluster.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Inventory {
    pub cluster: String,
    /// Lock hash of the last complete apply (empty before the first).
    pub revision: String,
    pub objects: BTreeSet<ObjectKey>,
    /// The approvals of the revision last applied completely.
    pub approvals: Vec<Approval>,
    /// Objects whose deletion was approved and has not happened yet.
    pub approved: BTreeSet<ObjectKey>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Line {
    api_version: String,
    kind: String,
    #[serde(default)]
    namespace: Option<String>,
    name: String,
}

impl Inventory {
    pub fn new(cluster: &str) -> Inventory {
        Inventory {
            cluster: cluster.to_owned(),
            ..Inventory::default()
        }
    }

    /// Read the inventory ConfigMap.
    pub fn from_configmap(cm: &Value) -> Result<Inventory, Error> {
        let data = |k: &str| cm.pointer(&format!("/data/{k}")).and_then(Value::as_str);
        let keys = |name: &str| -> Result<BTreeSet<ObjectKey>, Error> {
            let mut out = BTreeSet::new();
            for (n, line) in data(name).unwrap_or("").lines().enumerate() {
                if line.trim().is_empty() {
                    continue;
                }
                let l: Line = serde_json::from_str(line).map_err(|e| {
                    Error::Inventory(format!(
                        "line {} of `{name}` is not an object key: {e}",
                        n + 1
                    ))
                })?;
                out.insert(ObjectKey {
                    api_version: l.api_version,
                    kind: l.kind,
                    namespace: l.namespace,
                    name: l.name,
                });
            }
            Ok(out)
        };
        let mut approvals = Vec::new();
        for (n, line) in data("approvals").unwrap_or("").lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            approvals.push(serde_json::from_str(line).map_err(|e| {
                Error::Inventory(format!(
                    "line {} of `approvals` is not an approval: {e}",
                    n + 1
                ))
            })?);
        }
        Ok(Inventory {
            cluster: data("cluster").unwrap_or("").to_owned(),
            revision: data("revision").unwrap_or("").to_owned(),
            objects: keys("objects")?,
            approvals,
            approved: keys("approved")?,
        })
    }

    /// The ConfigMap to apply.
    pub fn to_configmap(&self) -> Value {
        let objects = json_lines(&self.objects);
        let approvals = json_lines(&self.approvals);
        let approved = json_lines(&self.approved);
        json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": NAME,
                "namespace": NAMESPACE,
                "labels": {AGENT_LABEL.0: AGENT_LABEL.1},
            },
            "data": {
                "cluster": self.cluster,
                "revision": self.revision,
                "objects": objects,
                "approvals": approvals,
                "approved": approved,
            },
        })
    }

    /// This inventory with `keys` added.
    pub fn with<'a>(&self, keys: impl IntoIterator<Item = &'a ObjectKey>) -> Inventory {
        let mut inv = self.clone();
        inv.objects.extend(keys.into_iter().cloned());
        inv
    }

    /// Objects in the inventory that are no longer desired: the prune candidates. An object
    /// whose group, kind, namespace and name are still desired under another API version is
    /// not a candidate (deleting the old version would delete the new one).
    pub fn candidates(&self, desired: &BTreeSet<ObjectKey>) -> Vec<ObjectKey> {
        let same = |a: &ObjectKey, b: &ObjectKey| {
            a.group() == b.group()
                && a.kind == b.kind
                && a.namespace == b.namespace
                && a.name == b.name
        };
        self.objects
            .iter()
            .filter(|k| !desired.iter().any(|d| same(d, k)))
            .cloned()
            .collect()
    }
}

/// One JSON document per line.
fn json_lines<'a, T: serde::Serialize + 'a>(items: impl IntoIterator<Item = &'a T>) -> String {
    let mut s = String::new();
    for i in items {
        s.push_str(&serde_json::to_string(i).unwrap_or_default());
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn key(api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> ObjectKey {
        ObjectKey {
            api_version: api_version.into(),
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: name.into(),
        }
    }

    #[test]
    fn configmap_round_trip() {
        let mut inv = Inventory::new("prod");
        inv.revision = "abc".into();
        inv.objects.insert(key("v1", "Namespace", None, "x"));
        inv.objects.insert(key("v1", "ConfigMap", Some("x"), "c"));
        inv.approved.insert(key("v1", "Namespace", None, "x"));
        inv.approvals.push(Approval {
            object: "Namespace/x".into(),
            cluster: None,
            reason: "CHG-1".into(),
            approver: Some("dana".into()),
            file: "plinth.yaml".into(),
            line: 12,
        });
        let cm = inv.to_configmap();
        assert_eq!(cm["metadata"]["namespace"], NAMESPACE);
        assert_eq!(
            cm["data"]["objects"],
            "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"namespace\":\"x\",\"name\":\"c\"}\n{\"apiVersion\":\"v1\",\"kind\":\"Namespace\",\"name\":\"x\"}\n"
        );
        assert_eq!(Inventory::from_configmap(&cm).unwrap(), inv);
        let bad = json!({"data": {"objects": "nope\n"}});
        assert!(Inventory::from_configmap(&bad).is_err());
    }

    #[test]
    fn candidates_skip_objects_still_desired_under_another_version() {
        let mut inv = Inventory::new("prod");
        inv.objects
            .insert(key("kueue.x-k8s.io/v1beta1", "LocalQueue", Some("x"), "q"));
        inv.objects
            .insert(key("v1", "ConfigMap", Some("x"), "gone"));
        inv.objects
            .insert(key("v1", "ConfigMap", Some("x"), "kept"));
        let desired: BTreeSet<ObjectKey> = [
            key("kueue.x-k8s.io/v1beta2", "LocalQueue", Some("x"), "q"),
            key("v1", "ConfigMap", Some("x"), "kept"),
        ]
        .into();
        assert_eq!(
            inv.candidates(&desired),
            [key("v1", "ConfigMap", Some("x"), "gone")]
        );
    }
}
