//! Non-apply patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902), and an
//! approximation of strategic merge patch for built-in kinds.

use serde_json::{Map, Value};

use crate::registry::{KindInfo, ListType, key_default};

/// RFC 7386: objects merge recursively, `null` removes, anything else replaces.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(p) => {
            let mut out = match target {
                Value::Object(t) => t.clone(),
                _ => Map::new(),
            };
            for (k, pv) in p {
                if pv.is_null() {
                    out.shift_remove(k);
                } else {
                    let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), pv);
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Strategic merge patch as kubectl sends it for built-in kinds: a merge patch in which
/// associative lists (containers by name, ports by port and protocol, ...) merge item by
/// item and `$patch: delete` items remove theirs. Other directives (`$setElementOrder`,
/// `$retainKeys`, `$deleteFromPrimitiveList`) are ignored.
pub fn strategic_merge_patch(kind: &KindInfo, target: &Value, patch: &Value) -> Value {
    smp(kind, &mut Vec::new(), target, patch)
}

fn smp(kind: &KindInfo, fpath: &mut Vec<String>, target: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(p) => {
            if p.get("$patch").and_then(Value::as_str) == Some("replace") {
                let mut p = p.clone();
                p.shift_remove("$patch");
                return Value::Object(p);
            }
            let mut out = match target {
                Value::Object(t) => t.clone(),
                _ => Map::new(),
            };
            for (k, pv) in p {
                if k.starts_with('$') {
                    continue;
                }
                if pv.is_null() {
                    out.shift_remove(k);
                    continue;
                }
                fpath.push(k.clone());
                let merged = smp(kind, fpath, out.get(k).unwrap_or(&Value::Null), pv);
                fpath.pop();
                out.insert(k.clone(), merged);
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let names: Vec<&str> = fpath.iter().map(String::as_str).collect();
            let keys = match kind.list_type(&names) {
                ListType::Map(keys) => keys,
                _ => return patch.clone(),
            };
            let Value::Array(live) = target else {
                return Value::Array(
                    items
                        .iter()
                        .filter(|i| i.get("$patch").is_none())
                        .cloned()
                        .collect(),
                );
            };
            let key_of = |v: &Value| -> Vec<Option<Value>> {
                keys.iter()
                    .map(|k| v.get(*k).cloned().or_else(|| key_default(k)))
                    .collect()
            };
            let mut out: Vec<Value> = live.clone();
            for item in items {
                let k = key_of(item);
                let pos = out.iter().position(|l| key_of(l) == k);
                let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                match (pos, delete) {
                    (Some(i), true) => {
                        out.remove(i);
                    }
                    (None, true) => {}
                    (Some(i), false) => {
                        out[i] = smp(kind, fpath, &out[i], item);
                    }
                    (None, false) => out.push(smp(kind, fpath, &Value::Null, item)),
                }
            }
            Value::Array(out)
        }
        other => other.clone(),
    }
}

/// RFC 6902. Errors are messages for a 422 answer.
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value, String> {
    let Value::Array(ops) = patch else {
        return Err("a JSON patch must be a list of operations".into());
    };
    let mut doc = target.clone();
    for op in ops {
        let name = op.get("op").and_then(Value::as_str).unwrap_or("");
        let path = op
            .get("path")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("operation {op} has no path"))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| format!("operation {op} has no value"))
        };
        let from = || {
            op.get("from")
                .and_then(Value::as_str)
                .ok_or_else(|| format!("operation {op} has no from"))
        };
        match name {
            "add" => add(&mut doc, path, value()?)?,
            "remove" => {
                remove(&mut doc, path)?;
            }
            "replace" => {
                remove(&mut doc, path)?;
                add(&mut doc, path, value()?)?;
            }
            "move" => {
                let v = remove(&mut doc, from()?)?;
                add(&mut doc, path, v)?;
            }
            "copy" => {
                let v = doc
                    .pointer(from()?)
                    .cloned()
                    .ok_or_else(|| format!("missing value at {}", from().unwrap_or("")))?;
                add(&mut doc, path, v)?;
            }
            "test" => {
                if doc.pointer(path) != Some(&value()?) {
                    return Err(format!("testing value {path} failed"));
                }
            }
            other => return Err(format!("unexpected operation `{other}`")),
        }
    }
    Ok(doc)
}

fn split_pointer(path: &str) -> Result<(String, String), String> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| format!("invalid path `{path}`"))?;
    Ok((
        parent.to_string(),
        last.replace("~1", "/").replace("~0", "~"),
    ))
}

fn add(doc: &mut Value, path: &str, v: Value) -> Result<(), String> {
    if path.is_empty() {
        *doc = v;
        return Ok(());
    }
    let (parent, last) = split_pointer(path)?;
    let target = doc
        .pointer_mut(&parent)
        .ok_or_else(|| format!("doc is missing path: {path}"))?;
    match target {
        Value::Object(m) => {
            m.insert(last, v);
            Ok(())
        }
        Value::Array(a) => {
            if last == "-" {
                a.push(v);
                return Ok(());
            }
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid index in `{path}`"))?;
            if i > a.len() {
                return Err(format!("index out of range in `{path}`"));
            }
            a.insert(i, v);
            Ok(())
        }
        _ => Err(format!("doc is missing path: {path}")),
    }
}

fn remove(doc: &mut Value, path: &str) -> Result<Value, String> {
    let (parent, last) = split_pointer(path)?;
    let target = doc
        .pointer_mut(&parent)
        .ok_or_else(|| format!("doc is missing path: {path}"))?;
    match target {
        Value::Object(m) => m
            .shift_remove(&last)
            .ok_or_else(|| format!("doc is missing key: {path}")),
        Value::Array(a) => {
            let i: usize = last
                .parse()
                .map_err(|_| format!("invalid index in `{path}`"))?;
            if i >= a.len() {
                return Err(format!("index out of range in `{path}`"));
            }
            Ok(a.remove(i))
        }
        _ => Err(format!("doc is missing path: {path}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_rfc7386() {
        let t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        let p = json!({"a": "z", "c": {"f": null}});
        assert_eq!(merge_patch(&t, &p), json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn json_patch_ops() {
        let t = json!({"a": [1, 2], "b": {"c": 1}});
        let p = json!([
            {"op": "add", "path": "/a/-", "value": 3},
            {"op": "replace", "path": "/b/c", "value": 2},
            {"op": "remove", "path": "/a/0"},
            {"op": "test", "path": "/b/c", "value": 2},
            {"op": "copy", "from": "/b", "path": "/d"},
        ]);
        assert_eq!(
            json_patch(&t, &p),
            Ok(json!({"a": [2, 3], "b": {"c": 2}, "d": {"c": 2}}))
        );
        assert!(json_patch(&t, &json!([{"op": "test", "path": "/b/c", "value": 9}])).is_err());
    }
}
