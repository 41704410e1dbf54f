//! `events.k8s.io/v1` `Event` as a view of core `v1` `Event`, as in a real cluster: both APIs
//! serve the same stored objects (kube's event `Recorder` writes through the first, `kubectl
//! get events` reads through the second).
//!
//! Objects are stored in core form. Requests to the `events.k8s.io` endpoints have their bodies
//! converted to core form, and answers (objects, lists, watch events, managed fields) converted
//! back. Managed-fields entries written through either API are recorded in core field names.

use serde_json::{Map, Value, json};

use crate::registry::Registry;

/// (`events.k8s.io/v1` field, core `v1` field) for the fields whose names differ.
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

pub const API_VERSION: &str = "events.k8s.io/v1";

/// The core `Event` kind when `kind` is the `events.k8s.io/v1` `Event` and both are served.
pub fn alias(registry: &Registry, kind: usize) -> Option<usize> {
    let k = registry.get(kind);
    if k.group == "events.k8s.io" && k.version == "v1" && k.kind == "Event" {
        registry.by_kind("v1", "Event")
    } else {
        None
    }
}

fn rename_keys(m: &mut Map<String, Value>, to_core: bool) {
    let old = std::mem::take(m);
    for (k, v) in old {
        let renamed = RENAMES.iter().find_map(|(new, core)| {
            if to_core {
                (k == *new).then_some(*core)
            } else {
                (k == *core).then_some(*new)
            }
        });
        m.insert(renamed.map_or(k, str::to_string), v);
    }
}

/// A request body (object, merge patch, JSON patch) in `events.k8s.io/v1` form to core form.
pub fn to_core(v: &mut Value) {
    match v {
        Value::Object(m) => {
            rename_keys(m, true);
            if m.get("apiVersion").and_then(Value::as_str) == Some(API_VERSION) {
                m.insert("apiVersion".into(), json!("v1"));
            }
        }
        Value::Array(ops) => {
            for op in ops.iter_mut().filter_map(Value::as_object_mut) {
                for field in ["path", "from"] {
                    if let Some(Value::String(p)) = op.get_mut(field) {
                        for (new, core) in RENAMES {
                            let prefix = format!("/{new}");
                            if *p == prefix || p.starts_with(&format!("{prefix}/")) {
                                *p = format!("/{core}{}", &p[prefix.len()..]);
                            }
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// An answer in core form (an `Event`, an `EventList`, a `Status`) to `events.k8s.io/v1`
/// form.
pub fn from_core(v: &mut Value) {
    let Some(m) = v.as_object_mut() else {
        return;
    };
    match m.get("kind").and_then(Value::as_str) {
        Some("EventList") => {
            m.insert("apiVersion".into(), json!(API_VERSION));
            if let Some(Value::Array(items)) = m.get_mut("items") {
                for item in items {
                    object_from_core(item, false);
                }
            }
        }
        Some("Status") | Some("Table") => {}
        _ => object_from_core(v, true),
    }
}

fn object_from_core(v: &mut Value, typed: bool) {
    let Some(m) = v.as_object_mut() else {
        return;
    };
    rename_keys(m, false);
    if typed || m.contains_key("apiVersion") {
        m.insert("apiVersion".into(), json!(API_VERSION));
    }
    if let Some(Value::Array(entries)) = m
        .get_mut("metadata")
        .and_then(|md| md.get_mut("managedFields"))
    {
        for e in entries.iter_mut().filter_map(Value::as_object_mut) {
            if e.get("apiVersion").and_then(Value::as_str) == Some("v1") {
                e.insert("apiVersion".into(), json!(API_VERSION));
            }
            if let Some(Value::Object(f)) = e.get_mut("fieldsV1") {
                let old = std::mem::take(f);
                for (k, val) in old {
                    let key = k
                        .strip_prefix("f:")
                        .and_then(|name| RENAMES.iter().find(|(_, core)| *core == name))
                        .map_or(k.clone(), |(new, _)| format!("f:{new}"));
                    f.insert(key, val);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let mut v = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod"}, "note": "n", "reason": "R", "deprecatedCount": 2});
        let original = v.clone();
        to_core(&mut v);
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["involvedObject"]["kind"], "Pod");
        assert_eq!(v["message"], "n");
        assert_eq!(v["count"], 2);
        from_core(&mut v);
        assert_eq!(v, original);
        let mut ops = json!([{"op": "replace", "path": "/note", "value": "x"}, {"op": "add", "path": "/regarding/name", "value": "p"}]);
        to_core(&mut ops);
        assert_eq!(ops[0]["path"], "/message");
        assert_eq!(ops[1]["path"], "/involvedObject/name");
    }
}
