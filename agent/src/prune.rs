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
//! Pure.

use plinth::lower::{MANAGED_BY, ObjectKey};
use serde::Serialize;
use serde_json::Value;

/// Annotation that keeps an object when it leaves the desired state.
pub const PRUNE_ANNOTATION: &str = "plinth.dev/prune";

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
    /// A namespace holding objects that are kept: deleting it would delete them.
    Holds,
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
    let mut held: std::collections::BTreeSet<String> = verdicts
        .iter()
        .filter(|(_, v)| matches!(v, Verdict::Disabled | Verdict::NotOurs))
        .filter_map(|(k, _)| k.namespace.clone())
        .collect();
    // The inventory's namespace holds the inventory (and the agent): never deleted.
    held.insert(crate::inventory::NAMESPACE.to_owned());
    for (k, v) in verdicts.iter_mut() {
        if k.group().is_empty()
            && k.kind == "Namespace"
            && held.contains(&k.name)
            && matches!(v, Verdict::Delete { .. })
        {
            *v = Verdict::Holds;
        }
    }
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
        assert_eq!(v[1].1, Verdict::Holds);
        assert_eq!(v[2].1, Verdict::Delete { uid: None });
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
