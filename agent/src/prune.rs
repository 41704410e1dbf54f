//! Pruning rules: which inventory objects may be deleted, and the guards that refuse a run.
//!
//! An object is deleted only when it is in the inventory, no longer desired, still labelled
//! `app.kubernetes.io/managed-by: plinth` and not annotated `plinth.dev/prune: disabled`.
//! Kept candidates stay in the inventory (so a namespace holding one is kept too, and
//! removing the annotation lets a later run delete it); only deleted or vanished objects
//! leave it. Guards, checked before anything is deleted: an empty or nearly empty render is refused
//! outright (that is how a broken build looks, and it would prune everything), and a revision
//! that would delete more than the budget (a number of objects, a share of the inventory) is
//! refused whole.
//!
//! Data plinth does not own is never deleted: a namespace is deleted only when everything in it
//! is in the inventory, was made by a controller for something that is (it has owner
//! references), or is one of the objects Kubernetes puts in every namespace ([`unowned`]);
//! otherwise it is **held** — kept, labelled `plinth.dev/held: "true"` and reported with what
//! it holds. And the kinds whose deletion loses data (namespaces, volumes, buckets, CRDs: the
//! plan's [`plinth::plan::destructive_to_delete`]) are deleted only when their deletion is
//! approved ([`approval`]) — by a `spec.approvals` entry the applied revision adds, or one spent
//! on them earlier and still pending — or by `--allow-destructive` on `apply --once`.
//!
//! Pure.

use std::collections::BTreeSet;

use plinth::lower::{Approval, MANAGED_BY, ObjectKey};
use serde::Serialize;
use serde_json::Value;

/// Annotation that keeps an object when it leaves the desired state.
pub const PRUNE_ANNOTATION: &str = "plinth.dev/prune";
/// Label on a namespace kept because it holds objects plinth does not own.
pub const HELD_LABEL: &str = "plinth.dev/held";
/// Annotation listing what a held namespace holds.
pub const HELD_ANNOTATION: &str = "plinth.dev/held-objects";
/// Field manager of the held label and annotation (so the apply engine's own fields stay
/// as they are).
pub const HOLD_MANAGER: &str = "plinth-prune-hold";

/// How much one revision may delete.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// At most this many deletions (`None`: no count limit).
    pub max_objects: Option<usize>,
    /// At most this share of the inventory (0.0–1.0).
    pub max_share: f64,
}

impl Default for Budget {
    fn default() -> Budget {
        Budget {
            max_objects: None,
            max_share: 0.5,
        }
    }
}

impl Budget {
    /// `Err` with the reason when `deletions` out of an inventory of `inventory` objects is
    /// over budget.
    pub fn check(&self, deletions: usize, inventory: usize) -> Result<(), String> {
        if let Some(max) = self.max_objects
            && deletions > max
        {
            return Err(format!(
                "{deletions} deletions are over the budget of {max} per revision"
            ));
        }
        if deletions > 0 && inventory > 0 {
            let share = deletions as f64 / inventory as f64;
            if share > self.max_share {
                return Err(format!(
                    "{deletions} of {inventory} applied objects ({:.0}%) would be deleted, over the budget of {:.0}%",
                    share * 100.0,
                    self.max_share * 100.0
                ));
            }
        }
        Ok(())
    }
}

/// Refuse a render that is empty, or keeps less than a tenth of an inventory of ten or more
/// objects, unless `allow_empty`.
pub fn check_render(desired: usize, inventory: usize, allow_empty: bool) -> Result<(), String> {
    if allow_empty {
        return Ok(());
    }
    if desired == 0 {
        return Err("the render is empty".into());
    }
    if inventory >= 10 && desired * 10 < inventory {
        return Err(format!(
            "the render is nearly empty: {desired} objects where {inventory} are applied"
        ));
    }
    Ok(())
}

/// What to do with one prune candidate, given its live state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "camelCase")]
pub enum Verdict {
    /// Delete it (only if its uid is still this one).
    Delete { uid: Option<String> },
    /// Already gone.
    Gone,
    /// Annotated `plinth.dev/prune: disabled`: kept.
    Disabled,
    /// Not labelled as plinth's: never deleted.
    NotOurs,
    /// A namespace holding objects that are kept, or that plinth does not own: deleting it
    /// would delete them. `objects`: what it holds (`Kind namespace/name`).
    Holds { objects: Vec<String> },
}

/// Decide about a candidate.
pub fn verdict(live: Option<&Value>) -> Verdict {
    let Some(live) = live else {
        return Verdict::Gone;
    };
    if live.pointer("/metadata/deletionTimestamp").is_some() {
        return Verdict::Gone;
    }
    let labelled = live
        .pointer("/metadata/labels")
        .and_then(|l| l.get(MANAGED_BY.0))
        .and_then(Value::as_str)
        == Some(MANAGED_BY.1);
    if !labelled {
        return Verdict::NotOurs;
    }
    let disabled = live
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(PRUNE_ANNOTATION))
        .and_then(Value::as_str)
        == Some("disabled");
    if disabled {
        return Verdict::Disabled;
    }
    Verdict::Delete {
        uid: live
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(str::to_owned),
    }
}

/// Turn the deletion of a namespace that holds kept candidates (disabled, or not plinth's),
/// or the inventory, into [`Verdict::Holds`]: a namespace's deletion takes everything in it
/// along.
pub fn hold_namespaces(verdicts: &mut [(ObjectKey, Verdict)]) {
    let mut held: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (k, v) in verdicts.iter() {
        if matches!(v, Verdict::Disabled | Verdict::NotOurs)
            && let Some(ns) = &k.namespace
        {
            held.entry(ns.clone()).or_default().push(k.to_string());
        }
    }
    // The inventory's namespace holds the inventory (and the agent): never deleted.
    held.entry(crate::inventory::NAMESPACE.to_owned())
        .or_default()
        .push(format!(
            "ConfigMap {}/{} (the agent's inventory)",
            crate::inventory::NAMESPACE,
            crate::inventory::NAME
        ));
    for (k, v) in verdicts.iter_mut() {
        if is_namespace(k)
            && matches!(v, Verdict::Delete { .. })
            && let Some(objects) = held.get(&k.name)
        {
            *v = Verdict::Holds {
                objects: objects.clone(),
            };
        }
    }
}

pub fn is_namespace(k: &ObjectKey) -> bool {
    k.group().is_empty() && k.kind == "Namespace"
}

/// Objects Kubernetes itself puts in every namespace (kind, name): never a reason to keep one.
const PER_NAMESPACE: &[(&str, &str)] = &[
    ("ConfigMap", "kube-root-ca.crt"),
    ("ServiceAccount", "default"),
];

/// What of a namespace's live objects plinth does not own, as `Kind namespace/name`: not in the
/// inventory, not made by a controller (no owner references: those go with their owner), not
/// being deleted already, not an object Kubernetes makes in every namespace, and not an Event.
/// `listed`: every object of the namespace, of every namespaced kind the API serves.
pub fn unowned(listed: &[Value], inventory: &BTreeSet<ObjectKey>) -> Vec<String> {
    let same = |a: &ObjectKey, b: &ObjectKey| {
        a.group() == b.group() && a.kind == b.kind && a.namespace == b.namespace && a.name == b.name
    };
    let mut out: Vec<String> = listed
        .iter()
        .filter(|o| {
            let key = ObjectKey::of(o);
            let meta = &o["metadata"];
            let owned = meta["ownerReferences"]
                .as_array()
                .is_some_and(|r| !r.is_empty());
            let system = PER_NAMESPACE
                .iter()
                .any(|(kind, name)| key.kind == *kind && key.name == *name)
                || (key.kind == "Secret" && o["type"] == "kubernetes.io/service-account-token")
                || key.kind == "Event";
            !owned
                && !system
                && meta.get("deletionTimestamp").is_none()
                && !inventory.iter().any(|k| same(k, &key))
        })
        .map(|o| ObjectKey::of(o).to_string())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Whether the deletion of `key` in `cluster` is approved, and by what: `allow` (the operator's
/// `--allow-destructive`), an approval spent on it earlier and still pending (`pending`), or an
/// entry of the revision being applied (`approvals`) that the last complete revision did not
/// have (`seen`): an entry approves once. Only for kinds whose deletion is destructive; others
/// need no approval (`Some`).
pub fn approval(
    cluster: &str,
    key: &ObjectKey,
    approvals: &[Approval],
    seen: &[Approval],
    pending: &BTreeSet<ObjectKey>,
    allow: bool,
) -> Option<String> {
    if plinth::plan::destructive_to_delete(key).is_none() {
        return Some("not destructive".into());
    }
    if allow {
        return Some("`--allow-destructive`".into());
    }
    if pending.contains(key) {
        return Some("approved earlier, deletion pending".into());
    }
    approvals
        .iter()
        .filter(|a| !seen.iter().any(|s| s.same_entry(a)))
        .find(|a| a.covers(cluster, key))
        .map(|a| {
            let mut s = format!(
                "`spec.approvals` entry ({}:{}): {}",
                a.file, a.line, a.reason
            );
            if let Some(w) = &a.approver {
                s.push_str(&format!(" — by {w}"));
            }
            s
        })
}

/// Deletion order: the reverse of apply order (workloads before their namespaces).
pub fn order(keys: &mut [ObjectKey]) {
    keys.sort_by(|a, b| (plinth::emit::Stage::of(b), b).cmp(&(plinth::emit::Stage::of(a), a)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn guards() {
        assert!(check_render(0, 0, false).is_err());
        assert!(check_render(0, 0, true).is_ok());
        assert!(check_render(1, 20, false).is_err());
        assert!(check_render(2, 20, false).is_ok());
        assert!(check_render(1, 5, false).is_ok());
        let b = Budget {
            max_objects: Some(2),
            max_share: 0.5,
        };
        assert!(b.check(2, 10).is_ok());
        assert!(b.check(3, 10).is_err());
        assert!(Budget::default().check(6, 10).is_err());
        assert!(Budget::default().check(5, 10).is_ok());
        assert!(Budget::default().check(0, 0).is_ok());
    }

    #[test]
    fn verdicts() {
        let obj = |labels: Value, annotations: Value| json!({"metadata": {"uid": "u1", "labels": labels, "annotations": annotations}});
        let ours = json!({"app.kubernetes.io/managed-by": "plinth"});
        assert_eq!(verdict(None), Verdict::Gone);
        assert_eq!(
            verdict(Some(&obj(ours.clone(), json!({})))),
            Verdict::Delete {
                uid: Some("u1".into())
            }
        );
        assert_eq!(
            verdict(Some(&obj(ours, json!({"plinth.dev/prune": "disabled"})))),
            Verdict::Disabled
        );
        assert_eq!(verdict(Some(&obj(json!({}), json!({})))), Verdict::NotOurs);
    }

    #[test]
    fn namespaces_holding_kept_objects_are_kept() {
        let k = |kind: &str, ns: Option<&str>, name: &str| ObjectKey {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: name.into(),
        };
        let mut v = vec![
            (k("ConfigMap", Some("a"), "keep"), Verdict::Disabled),
            (k("Namespace", None, "a"), Verdict::Delete { uid: None }),
            (k("Namespace", None, "b"), Verdict::Delete { uid: None }),
        ];
        hold_namespaces(&mut v);
        assert_eq!(
            v[1].1,
            Verdict::Holds {
                objects: vec!["ConfigMap a/keep".into()]
            }
        );
        assert_eq!(v[2].1, Verdict::Delete { uid: None });
    }

    #[test]
    fn what_plinth_does_not_own() {
        let inv: BTreeSet<ObjectKey> = [ObjectKey {
            api_version: "v1".into(),
            kind: "ResourceQuota".into(),
            namespace: Some("a".into()),
            name: "quota".into(),
        }]
        .into();
        let o = |kind: &str, name: &str, extra: Value| {
            let mut v = json!({"apiVersion": "v1", "kind": kind, "metadata": {"name": name, "namespace": "a"}});
            if let (Some(m), Some(e)) = (v.as_object_mut(), extra.as_object()) {
                for (k, x) in e {
                    if k == "metadata" {
                        for (mk, mv) in x.as_object().into_iter().flatten() {
                            m["metadata"][mk] = mv.clone();
                        }
                    } else {
                        m.insert(k.clone(), x.clone());
                    }
                }
            }
            v
        };
        let listed = vec![
            o("ResourceQuota", "quota", json!({})),
            o("ConfigMap", "kube-root-ca.crt", json!({})),
            o("ServiceAccount", "default", json!({})),
            o(
                "Pod",
                "web-1",
                json!({"metadata": {"ownerReferences": [{"kind": "ReplicaSet", "name": "web"}]}}),
            ),
            o("PersistentVolumeClaim", "scratch", json!({})),
            o("Pod", "debug", json!({})),
            o(
                "Pod",
                "going",
                json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
            ),
            o(
                "Secret",
                "sa-token",
                json!({"type": "kubernetes.io/service-account-token"}),
            ),
        ];
        assert_eq!(
            unowned(&listed, &inv),
            ["PersistentVolumeClaim a/scratch", "Pod a/debug"]
        );
    }

    #[test]
    fn deleting_data_needs_a_fresh_or_pending_approval() {
        let k = |kind: &str, ns: Option<&str>, name: &str| ObjectKey {
            api_version: "v1".into(),
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: name.into(),
        };
        let a = |object: &str, cluster: Option<&str>| Approval {
            object: object.into(),
            cluster: cluster.map(Into::into),
            reason: "CHG-1".into(),
            approver: None,
            file: "plinth.yaml".into(),
            line: 3,
        };
        let pvc = k("PersistentVolumeClaim", Some("a"), "data");
        let none = BTreeSet::new();
        // Not destructive: no approval needed.
        assert!(
            approval(
                "prod",
                &k("ConfigMap", Some("a"), "c"),
                &[],
                &[],
                &none,
                false
            )
            .is_some()
        );
        assert!(approval("prod", &pvc, &[], &[], &none, false).is_none());
        assert!(approval("prod", &pvc, &[], &[], &none, true).is_some());
        let fresh = [a("PersistentVolumeClaim/a/data", None)];
        assert!(approval("prod", &pvc, &fresh, &[], &none, false).is_some());
        // Another cluster's approval, or one already seen, approves nothing.
        assert!(
            approval(
                "prod",
                &pvc,
                &[a("PersistentVolumeClaim/a/data", Some("dev"))],
                &[],
                &none,
                false
            )
            .is_none()
        );
        assert!(approval("prod", &pvc, &fresh, &fresh, &none, false).is_none());
        // Spent earlier and still pending: still approved.
        let pending: BTreeSet<ObjectKey> = [pvc.clone()].into();
        assert!(approval("prod", &pvc, &fresh, &fresh, &pending, false).is_some());
    }

    #[test]
    fn deletes_in_reverse_apply_order() {
        let k = |api: &str, kind: &str, ns: Option<&str>| ObjectKey {
            api_version: api.into(),
            kind: kind.into(),
            namespace: ns.map(Into::into),
            name: "a".into(),
        };
        let mut keys = vec![
            k("v1", "Namespace", None),
            k("apps/v1", "Deployment", Some("x")),
            k("v1", "ResourceQuota", Some("x")),
        ];
        order(&mut keys);
        let kinds: Vec<&str> = keys.iter().map(|k| k.kind.as_str()).collect();
        assert_eq!(kinds, ["Deployment", "ResourceQuota", "Namespace"]);
    }
}
