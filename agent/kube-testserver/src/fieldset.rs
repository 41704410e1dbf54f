//! Sets of field paths, as structured-merge-diff keeps them, and their `FieldsV1` encoding.
//!
//! A [`FieldSet`] is a tree keyed by [`PathElement`]s; a node is a *member* when the path to
//! it is in the set (`"."` in `FieldsV1` when the node also has children). Encoding follows
//! the apiserver: `f:<field>`, `k:{"name":"x"}` (key fields sorted), `v:<json>`, `i:<index>`,
//! leaves as `{}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde_json::{Map, Value};

/// One step of a path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PathElement {
    /// A field of an object.
    Field(String),
    /// An item of an associative list: key field names (sorted) with their JSON-encoded
    /// values.
    Key(Vec<(String, String)>),
    /// An item of a set-list: the JSON-encoded value.
    Value(String),
    /// A list position (not used for managed fields of this server, accepted in `FieldsV1`).
    Index(usize),
}

impl PathElement {
    /// A key element from key fields and their values (sorted by field name).
    pub fn key(fields: Vec<(String, Value)>) -> PathElement {
        let mut fields: Vec<(String, String)> = fields
            .into_iter()
            .map(|(k, v)| (k, canonical_json(&v)))
            .collect();
        fields.sort();
        PathElement::Key(fields)
    }

    /// The `FieldsV1` key: `f:data`, `k:{"name":"x"}`, `v:"x"`, `i:0`.
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(f) => format!("f:{f}"),
            PathElement::Key(fields) => {
                let mut s = String::from("k:{");
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push_str(&Value::String(k.clone()).to_string());
                    s.push(':');
                    s.push_str(v);
                }
                s.push('}');
                s
            }
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parse a `FieldsV1` key.
    pub fn decode(s: &str) -> Result<PathElement, String> {
        let (prefix, rest) = s
            .split_once(':')
            .ok_or_else(|| format!("invalid field path element `{s}`"))?;
        match prefix {
            "f" => Ok(PathElement::Field(rest.to_string())),
            "v" => {
                let v: Value = serde_json::from_str(rest)
                    .map_err(|e| format!("invalid value in `{s}`: {e}"))?;
                Ok(PathElement::Value(canonical_json(&v)))
            }
            "k" => {
                let v: Value =
                    serde_json::from_str(rest).map_err(|e| format!("invalid key in `{s}`: {e}"))?;
                let Value::Object(m) = v else {
                    return Err(format!("invalid key in `{s}`: not an object"));
                };
                Ok(PathElement::key(m.into_iter().collect()))
            }
            "i" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|_| format!("invalid index in `{s}`")),
            _ => Err(format!("invalid field path element `{s}`")),
        }
    }

    /// The form of conflict messages: `.data`, `[name="x",port=80]`, `[="x"]`, `[3]`.
    fn display(&self, out: &mut String) {
        match self {
            PathElement::Field(f) => {
                out.push('.');
                out.push_str(f);
            }
            PathElement::Key(fields) => {
                out.push('[');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    let _ = write!(out, "{k}={v}");
                }
                out.push(']');
            }
            PathElement::Value(v) => {
                let _ = write!(out, "[={v}]");
            }
            PathElement::Index(i) => {
                let _ = write!(out, "[{i}]");
            }
        }
    }
}

/// `.spec.containers[name="app"].image`
pub fn path_string(path: &[PathElement]) -> String {
    let mut s = String::new();
    for pe in path {
        pe.display(&mut s);
    }
    s
}

/// JSON with object keys sorted, so that equal values encode equally.
pub fn canonical_json(v: &Value) -> String {
    fn sorted(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                let mut out = Map::new();
                for k in keys {
                    out.insert(k.clone(), sorted(&m[k]));
                }
                Value::Object(out)
            }
            Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
            other => other.clone(),
        }
    }
    sorted(v).to_string()
}

/// A set of paths, as a tree.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    member: bool,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> FieldSet {
        FieldSet::default()
    }

    /// No path at all.
    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    pub fn insert(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => self.member = true,
            Some((first, rest)) => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    pub fn contains(&self, path: &[PathElement]) -> bool {
        match path.split_first() {
            None => self.member,
            Some((first, rest)) => self.children.get(first).is_some_and(|c| c.contains(rest)),
        }
    }

    /// The subtree at `path`, if any path of the set starts with it.
    pub fn at(&self, path: &[PathElement]) -> Option<&FieldSet> {
        match path.split_first() {
            None => Some(self),
            Some((first, rest)) => self.children.get(first).and_then(|c| c.at(rest)),
        }
    }

    /// Remove `path` itself (not what lies below it).
    pub fn remove(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => self.member = false,
            Some((first, rest)) => {
                if let Some(c) = self.children.get_mut(first) {
                    c.remove(rest);
                    if c.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    /// Remove `path` and everything below it.
    pub fn remove_subtree(&mut self, path: &[PathElement]) {
        match path.split_first() {
            None => *self = FieldSet::default(),
            Some((first, rest)) => {
                if let Some(c) = self.children.get_mut(first) {
                    c.remove_subtree(rest);
                    if c.is_empty() {
                        self.children.remove(first);
                    }
                }
            }
        }
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.member |= other.member;
        for (k, v) in &other.children {
            let merged = match out.children.get(k) {
                Some(mine) => mine.union(v),
                None => v.clone(),
            };
            out.children.insert(k.clone(), merged);
        }
        out
    }

    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && !other.member,
            children: BTreeMap::new(),
        };
        for (k, v) in &self.children {
            let d = match other.children.get(k) {
                Some(o) => v.difference(o),
                None => v.clone(),
            };
            if !d.is_empty() {
                out.children.insert(k.clone(), d);
            }
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet {
            member: self.member && other.member,
            children: BTreeMap::new(),
        };
        for (k, v) in &self.children {
            if let Some(o) = other.children.get(k) {
                let i = v.intersection(o);
                if !i.is_empty() {
                    out.children.insert(k.clone(), i);
                }
            }
        }
        out
    }

    /// Every path in the set, sorted.
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        let mut prefix = Vec::new();
        self.collect(&mut prefix, &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        if self.member {
            out.push(prefix.clone());
        }
        for (k, v) in &self.children {
            prefix.push(k.clone());
            v.collect(prefix, out);
            prefix.pop();
        }
    }

    /// The `FieldsV1` tree.
    pub fn to_fields_v1(&self) -> Value {
        let mut m = Map::new();
        if self.member && !self.children.is_empty() {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (k, v) in &self.children {
            if !v.is_empty() {
                m.insert(k.encode(), v.to_fields_v1());
            }
        }
        Value::Object(m)
    }

    /// Read a `FieldsV1` tree.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, String> {
        fn node(v: &Value) -> Result<FieldSet, String> {
            let Value::Object(m) = v else {
                return Err("fieldsV1 must be a tree of objects".into());
            };
            let mut set = FieldSet::default();
            if m.is_empty() {
                set.member = true;
            }
            for (k, child) in m {
                if k == "." {
                    set.member = true;
                } else {
                    set.children.insert(PathElement::decode(k)?, node(child)?);
                }
            }
            Ok(set)
        }
        let mut set = node(v)?;
        // The root itself is never a member.
        set.member = false;
        Ok(set)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(s: &str) -> PathElement {
        PathElement::Field(s.into())
    }

    #[test]
    fn encodes_like_the_apiserver() {
        let mut s = FieldSet::new();
        s.insert(&[f("data")]);
        s.insert(&[f("data"), f("key")]);
        s.insert(&[f("metadata"), f("labels"), f("app")]);
        let k = PathElement::key(vec![
            ("protocol".into(), json!("TCP")),
            ("containerPort".into(), json!(80)),
        ]);
        s.insert(&[f("spec"), f("ports"), k.clone()]);
        s.insert(&[
            f("metadata"),
            f("finalizers"),
            PathElement::Value("\"x\"".into()),
        ]);
        let v = s.to_fields_v1();
        assert_eq!(
            v,
            json!({
                "f:data": {".": {}, "f:key": {}},
                "f:metadata": {"f:finalizers": {"v:\"x\"": {}}, "f:labels": {"f:app": {}}},
                "f:spec": {"f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {}}}
            })
        );
        assert_eq!(FieldSet::from_fields_v1(&v), Ok(s));
        assert_eq!(
            path_string(&[f("spec"), f("ports"), k, f("name")]),
            ".spec.ports[containerPort=80,protocol=\"TCP\"].name"
        );
    }

    #[test]
    fn set_algebra() {
        let mut a = FieldSet::new();
        a.insert(&[f("a"), f("b")]);
        a.insert(&[f("a"), f("c")]);
        let mut b = FieldSet::new();
        b.insert(&[f("a"), f("c")]);
        b.insert(&[f("d")]);
        assert_eq!(a.intersection(&b).paths(), vec![vec![f("a"), f("c")]]);
        assert_eq!(a.difference(&b).paths(), vec![vec![f("a"), f("b")]]);
        assert_eq!(a.union(&b).paths().len(), 3);
        assert!(a.difference(&a).is_empty());
    }
}
