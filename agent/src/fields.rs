//! Field paths, `managedFields` sets, and objects flattened into leaves.
//!
//! The API server records who owns which field in `metadata.managedFields` as `FieldsV1`
//! trees (`f:<field>`, `k:{"name":"x"}` for an item of an associative list, `v:<json>` for an
//! item of a set, `i:<n>` for a position). Drift detection compares two objects leaf by leaf and
//! asks those trees who owns each differing leaf, so both sides must name fields the same way.
//! The agent has no OpenAPI schemas: how a list is keyed is learnt from the `managedFields` of
//! the objects compared ([`Shapes`]); a list nobody's set describes is compared whole.
//!
//! Pure: no I/O.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::{Map, Value};

/// One step of a [`Path`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    /// A field of an object.
    Field(String),
    /// An item of an associative list: its key fields (sorted by name) with canonical JSON
    /// values.
    Key(Vec<(String, String)>),
    /// An item of a set: its canonical JSON value.
    Value(String),
    /// A list position.
    Index(usize),
}

impl Seg {
    /// The `FieldsV1` key of this step.
    pub fn encode(&self) -> String {
        match self {
            Seg::Field(f) => format!("f:{f}"),
            Seg::Key(fields) => {
                let inner: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{}:{v}", Value::String(k.clone())))
                    .collect();
                format!("k:{{{}}}", inner.join(","))
            }
            Seg::Value(v) => format!("v:{v}"),
            Seg::Index(i) => format!("i:{i}"),
        }
    }

    /// Parse a `FieldsV1` key (`"."` is not a step and gives `None`).
    pub fn decode(s: &str) -> Option<Seg> {
        let (tag, rest) = s.split_once(':')?;
        match tag {
            "f" => Some(Seg::Field(rest.to_owned())),
            "k" => {
                let v: Value = serde_json::from_str(rest).ok()?;
                let fields = v
                    .as_object()?
                    .iter()
                    .map(|(k, v)| (k.clone(), canonical(v)))
                    .collect();
                Some(key_seg(fields))
            }
            "v" => {
                let v: Value = serde_json::from_str(rest).ok()?;
                Some(Seg::Value(canonical(&v)))
            }
            "i" => rest.parse().ok().map(Seg::Index),
            _ => None,
        }
    }
}

fn key_seg(mut fields: Vec<(String, String)>) -> Seg {
    fields.sort();
    Seg::Key(fields)
}

/// Canonical JSON (sorted keys, no whitespace), as list keys are compared.
pub fn canonical(v: &Value) -> String {
    plinth::lower::canonical_json(v)
}

/// A path to a field: `spec.template.spec.containers[name=model].image`.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Path(pub Vec<Seg>);

impl Path {
    pub fn child(&self, seg: Seg) -> Path {
        let mut p = self.clone();
        p.0.push(seg);
        p
    }

    /// Whether `self` is `other` or lies under it.
    pub fn starts_with(&self, other: &Path) -> bool {
        self.0.starts_with(&other.0)
    }

    /// The path of plain field names (`["spec", "hard"]`), if it has no list steps.
    pub fn fields(&self) -> Option<Vec<&str>> {
        self.0
            .iter()
            .map(|s| match s {
                Seg::Field(f) => Some(f.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// A JSON value as a reader expects it in a path: strings without quotes.
fn plain(json: &str) -> String {
    match serde_json::from_str::<Value>(json) {
        Ok(Value::String(s)) => s,
        _ => json.to_owned(),
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Field(name) => {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(name)?;
                }
                Seg::Key(fields) => {
                    let inner: Vec<String> = fields
                        .iter()
                        .map(|(k, v)| format!("{k}={}", plain(v)))
                        .collect();
                    write!(f, "[{}]", inner.join(","))?;
                }
                Seg::Value(v) => write!(f, "[{}]", plain(v))?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A set of field paths: one manager's `fieldsV1`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSet {
    /// The path leading here is itself in the set.
    pub member: bool,
    pub children: BTreeMap<Seg, FieldSet>,
}

impl FieldSet {
    /// Read a `fieldsV1` tree; unreadable keys are skipped.
    pub fn from_fields_v1(v: &Value) -> FieldSet {
        let mut set = FieldSet::default();
        let Some(m) = v.as_object() else {
            return set;
        };
        if m.is_empty() {
            set.member = true;
            return set;
        }
        for (k, child) in m {
            if k == "." {
                set.member = true;
            } else if let Some(seg) = Seg::decode(k) {
                set.children.insert(seg, FieldSet::from_fields_v1(child));
            }
        }
        set
    }

    pub fn is_empty(&self) -> bool {
        !self.member && self.children.values().all(FieldSet::is_empty)
    }

    fn node(&self, path: &[Seg]) -> Option<&FieldSet> {
        let mut n = self;
        for seg in path {
            n = n.children.get(seg)?;
        }
        Some(n)
    }

    /// Whether the set owns the leaf at `path` itself: the path or anything under it is a
    /// member (a list or map compared whole counts as owned when any part of it is).
    pub fn owns_exactly(&self, path: &Path) -> bool {
        self.node(&path.0).is_some_and(|n| !n.is_empty())
    }

    /// Whether an ancestor of `path` is an atomic member (a member with nothing recorded under
    /// it, such as a Deployment's `selector`), which owns everything below it.
    pub fn owns_ancestor(&self, path: &Path) -> bool {
        let mut n = self;
        for (i, seg) in path.0.iter().enumerate() {
            if i > 0 && n.member && n.children.is_empty() {
                return true;
            }
            match n.children.get(seg) {
                Some(c) => n = c,
                None => return false,
            }
        }
        false
    }

    /// [`FieldSet::owns_exactly`] or [`FieldSet::owns_ancestor`].
    pub fn owns(&self, path: &Path) -> bool {
        self.owns_exactly(path) || self.owns_ancestor(path)
    }

    /// Whether `path` itself is a member.
    pub fn contains(&self, path: &Path) -> bool {
        self.node(&path.0).is_some_and(|n| n.member)
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manager {
    pub name: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// Empty for the main resource (`status`, `scale`, ... otherwise).
    pub subresource: String,
    pub fields: FieldSet,
}

/// The `managedFields` of an object.
pub fn managers(obj: &Value) -> Vec<Manager> {
    let Some(entries) = obj
        .pointer("/metadata/managedFields")
        .and_then(Value::as_array)
    else {
        return Vec::new();
    };
    entries
        .iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            Manager {
                name: s("manager"),
                operation: s("operation"),
                subresource: s("subresource"),
                fields: e
                    .get("fieldsV1")
                    .map(FieldSet::from_fields_v1)
                    .unwrap_or_default(),
            }
        })
        .collect()
}

/// The fields `manager` owns through server-side apply (empty when it applied nothing).
pub fn applied_by(obj: &Value, manager: &str) -> FieldSet {
    managers(obj)
        .into_iter()
        .find(|m| m.name == manager && m.operation == "Apply" && m.subresource.is_empty())
        .map(|m| m.fields)
        .unwrap_or_default()
}

/// How a list is merged, as learnt from field sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListKind {
    /// Associative: items identified by these key fields (sorted).
    Keyed(Vec<String>),
    /// A set of scalars.
    Set,
}

/// List kinds by the field names leading to the list (`*` for a list item).
#[derive(Debug, Clone, Default)]
pub struct Shapes(BTreeMap<Vec<String>, ListKind>);

impl Shapes {
    /// Learn from every field set of these objects.
    pub fn learn<'a>(objects: impl IntoIterator<Item = &'a Value>) -> Shapes {
        let mut shapes = Shapes::default();
        for o in objects {
            for m in managers(o) {
                shapes.add(&m.fields, &mut Vec::new());
            }
        }
        shapes
    }

    fn add(&mut self, set: &FieldSet, at: &mut Vec<String>) {
        for (seg, child) in &set.children {
            match seg {
                Seg::Field(f) => {
                    at.push(f.clone());
                    self.add(child, at);
                    at.pop();
                }
                Seg::Key(fields) => {
                    self.0.entry(at.clone()).or_insert_with(|| {
                        ListKind::Keyed(fields.iter().map(|(k, _)| k.clone()).collect())
                    });
                    at.push("*".into());
                    self.add(child, at);
                    at.pop();
                }
                Seg::Value(_) => {
                    self.0.entry(at.clone()).or_insert(ListKind::Set);
                }
                Seg::Index(_) => {}
            }
        }
    }

    fn get(&self, at: &[String]) -> Option<&ListKind> {
        self.0.get(at)
    }
}

/// An object's leaves: every scalar, empty map or list, and list compared whole, by path.
pub type Leaves = BTreeMap<Path, Value>;

/// Flatten `v` into leaves. Lists are split into items when `shapes` knows how they are keyed
/// and every item carries its keys (unique); otherwise the list is one leaf.
pub fn flatten(v: &Value, shapes: &Shapes) -> Leaves {
    let mut out = Leaves::new();
    walk(v, shapes, &mut Path::default(), &mut Vec::new(), &mut out);
    out
}

fn walk(v: &Value, shapes: &Shapes, path: &mut Path, at: &mut Vec<String>, out: &mut Leaves) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, x) in m {
                path.0.push(Seg::Field(k.clone()));
                at.push(k.clone());
                walk(x, shapes, path, at, out);
                at.pop();
                path.0.pop();
            }
        }
        Value::Array(items) if !items.is_empty() => {
            let Some(segs) = item_segs(items, shapes.get(at)) else {
                out.insert(path.clone(), v.clone());
                return;
            };
            for (seg, item) in segs.into_iter().zip(items) {
                path.0.push(seg.clone());
                if matches!(seg, Seg::Value(_)) {
                    out.insert(path.clone(), item.clone());
                } else {
                    at.push("*".into());
                    walk(item, shapes, path, at, out);
                    at.pop();
                }
                path.0.pop();
            }
        }
        _ => {
            out.insert(path.clone(), v.clone());
        }
    }
}

/// The path step of each item of a list, or `None` to compare the list whole.
fn item_segs(items: &[Value], kind: Option<&ListKind>) -> Option<Vec<Seg>> {
    let segs: Vec<Seg> = match kind? {
        ListKind::Keyed(keys) => items
            .iter()
            .map(|item| {
                let m = item.as_object()?;
                let fields = keys
                    .iter()
                    .map(|k| m.get(k).map(|v| (k.clone(), canonical(v))))
                    .collect::<Option<Vec<_>>>()?;
                Some(key_seg(fields))
            })
            .collect::<Option<_>>()?,
        ListKind::Set => items
            .iter()
            .map(|item| {
                (!item.is_object() && !item.is_array()).then(|| Seg::Value(canonical(item)))
            })
            .collect::<Option<_>>()?,
    };
    let mut unique = segs.clone();
    unique.sort();
    unique.dedup();
    (unique.len() == segs.len()).then_some(segs)
}

/// The value at `path`, if any.
pub fn get<'v>(v: &'v Value, path: &Path) -> Option<&'v Value> {
    let mut cur = v;
    for seg in &path.0 {
        cur = match (seg, cur) {
            (Seg::Field(f), Value::Object(m)) => m.get(f)?,
            (Seg::Index(i), Value::Array(a)) => a.get(*i)?,
            (seg, Value::Array(a)) => &a[find_item(a, seg)?],
            _ => return None,
        };
    }
    Some(cur)
}

/// The index of the list item a key or value step names. Key fields missing from an item (a
/// default the server fills in, such as a port's `protocol`) are not held against it, as long
/// as one item matches.
fn find_item(items: &[Value], seg: &Seg) -> Option<usize> {
    match seg {
        Seg::Value(v) => items.iter().position(|i| canonical(i) == *v),
        Seg::Key(fields) => {
            let matches = |item: &Value, strict: bool| {
                let Some(m) = item.as_object() else {
                    return false;
                };
                fields.iter().all(|(k, v)| match m.get(k) {
                    Some(x) => canonical(x) == *v,
                    None => !strict,
                })
            };
            items.iter().position(|i| matches(i, true)).or_else(|| {
                let loose: Vec<usize> = (0..items.len())
                    .filter(|&n| matches(&items[n], false))
                    .collect();
                (loose.len() == 1).then(|| loose[0])
            })
        }
        Seg::Index(i) => (*i < items.len()).then_some(*i),
        Seg::Field(_) => None,
    }
}

/// Remove the field at `path` (a list item for a key or value step). Maps left empty by the
/// removal are removed too; list items keep their key fields. Returns whether anything was
/// removed.
pub fn remove(v: &mut Value, path: &Path) -> bool {
    let Some((last, parent)) = path.0.split_last() else {
        return false;
    };
    let removed = match container_mut(v, parent) {
        Some(Value::Object(m)) => match last {
            Seg::Field(f) => m.remove(f).is_some(),
            _ => false,
        },
        Some(Value::Array(a)) => match find_item(a, last) {
            Some(i) => {
                a.remove(i);
                true
            }
            None => false,
        },
        _ => false,
    };
    if removed && !parent.is_empty() {
        let parent_path = Path(parent.to_vec());
        if get(v, &parent_path).is_some_and(|p| p.as_object().is_some_and(Map::is_empty))
            && matches!(parent.last(), Some(Seg::Field(_)))
        {
            remove(v, &parent_path);
        }
    }
    removed
}

/// Set the field at `path` to `value`, creating maps on the way (list items must exist).
/// Returns whether it was set.
pub fn set(v: &mut Value, path: &Path, value: Value) -> bool {
    let Some((last, parent)) = path.0.split_last() else {
        *v = value;
        return true;
    };
    let mut cur = v;
    for seg in parent {
        cur = match (seg, cur) {
            (Seg::Field(f), Value::Object(m)) => m
                .entry(f.clone())
                .or_insert_with(|| Value::Object(Map::new())),
            (seg, Value::Array(a)) => match find_item(a, seg) {
                Some(i) => &mut a[i],
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, cur) {
        (Seg::Field(f), Value::Object(m)) => {
            m.insert(f.clone(), value);
            true
        }
        (seg, Value::Array(a)) => match find_item(a, seg) {
            Some(i) => {
                a[i] = value;
                true
            }
            None => false,
        },
        _ => false,
    }
}

fn container_mut<'v>(v: &'v mut Value, path: &[Seg]) -> Option<&'v mut Value> {
    let mut cur = v;
    for seg in path {
        cur = match (seg, cur) {
            (Seg::Field(f), Value::Object(m)) => m.get_mut(f)?,
            (seg, Value::Array(a)) => {
                let i = find_item(a, seg)?;
                &mut a[i]
            }
            _ => return None,
        };
    }
    Some(cur)
}

/// A value as a report shows it: strings bare, the rest as compact JSON.
pub fn show(v: Option<&Value>) -> String {
    match v {
        None => "(none)".to_owned(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    fn p(segs: &[Seg]) -> Path {
        Path(segs.to_vec())
    }

    fn f(s: &str) -> Seg {
        Seg::Field(s.into())
    }

    #[test]
    fn fields_v1_round_trip() {
        let v = json!({"f:spec": {"f:containers": {"k:{\"name\":\"m\"}": {".": {}, "f:image": {}, "f:name": {}}}},
                       "f:metadata": {"f:finalizers": {"v:\"a\"": {}}}});
        let set = FieldSet::from_fields_v1(&v);
        let key = Seg::decode("k:{\"name\":\"m\"}").unwrap();
        assert_eq!(key.encode(), "k:{\"name\":\"m\"}");
        let image = p(&[f("spec"), f("containers"), key.clone(), f("image")]);
        assert!(set.owns(&image));
        assert!(set.contains(&p(&[f("spec"), f("containers"), key.clone()])));
        assert!(!set.owns(&p(&[f("spec"), f("replicas")])));
        assert_eq!(image.to_string(), "spec.containers[name=m].image");
        assert_eq!(
            p(&[f("metadata"), f("finalizers"), Seg::Value("\"a\"".into())]).to_string(),
            "metadata.finalizers[a]"
        );
    }

    #[test]
    fn atomic_ancestors_own_what_is_below() {
        let set = FieldSet::from_fields_v1(&json!({"f:spec": {"f:selector": {}}}));
        assert!(set.owns(&p(&[f("spec"), f("selector"), f("matchLabels"), f("app")])));
        // A map member with children owns only the map's existence.
        let set = FieldSet::from_fields_v1(&json!({"f:data": {".": {}, "f:a": {}}}));
        assert!(set.owns(&p(&[f("data"), f("a")])));
        assert!(!set.owns(&p(&[f("data"), f("b")])));
    }

    #[test]
    fn flatten_uses_learnt_list_keys() {
        let live = json!({
            "metadata": {"managedFields": [{"manager": "plinth", "operation": "Apply",
                "fieldsV1": {"f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {"f:port": {}}},
                             "f:finalizers": {"v:\"x\"": {}}}}}]},
        });
        let shapes = Shapes::learn([&live]);
        let obj = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP", "name": "http"}],
                                  "finalizers": ["x", "y"], "args": ["a", "b"], "empty": {}}});
        let leaves = flatten(&obj, &shapes);
        let keys: Vec<String> = leaves.keys().map(ToString::to_string).collect();
        assert_eq!(
            keys,
            [
                "spec.args",
                "spec.empty",
                "spec.finalizers[x]",
                "spec.finalizers[y]",
                "spec.ports[port=80,protocol=TCP].name",
                "spec.ports[port=80,protocol=TCP].port",
                "spec.ports[port=80,protocol=TCP].protocol",
            ]
        );
    }

    #[test]
    fn remove_and_set_follow_keys() {
        let mut obj = json!({"spec": {"containers": [{"name": "m", "image": "a", "ports": [{"containerPort": 80}]}],
                                      "replicas": 2, "only": {"x": 1}}});
        let key = Seg::Key(vec![("name".into(), "\"m\"".into())]);
        let image = p(&[f("spec"), f("containers"), key.clone(), f("image")]);
        assert_eq!(get(&obj, &image), Some(&json!("a")));
        assert!(set(&mut obj, &image, json!("b")));
        assert_eq!(get(&obj, &image), Some(&json!("b")));
        // A defaulted key field missing from the item still finds it.
        let port = Seg::Key(vec![
            ("containerPort".into(), "80".into()),
            ("protocol".into(), "\"TCP\"".into()),
        ]);
        let cp = p(&[
            f("spec"),
            f("containers"),
            key,
            f("ports"),
            port,
            f("containerPort"),
        ]);
        assert_eq!(get(&obj, &cp), Some(&json!(80)));
        assert!(remove(&mut obj, &p(&[f("spec"), f("replicas")])));
        assert!(remove(&mut obj, &p(&[f("spec"), f("only"), f("x")])));
        assert_eq!(obj["spec"].get("only"), None);
        assert!(!remove(&mut obj, &p(&[f("spec"), f("missing")])));
    }
}
