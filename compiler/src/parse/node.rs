//! The YAML tree with a span on every node, and field paths into it.

use std::fmt;

use serde_json::Value;

use crate::diag::Pos;

/// Start and end of a node inside its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NodeSpan {
    pub start: Pos,
    pub end: Pos,
}

/// A YAML value after core-schema resolution, with its place in the file.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: NodeValue,
    pub span: NodeSpan,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<Entry>),
}

/// A mapping entry: keys are scalars, kept as their text.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub key: String,
    pub key_span: NodeSpan,
    pub value: Node,
}

impl Node {
    pub fn as_map(&self) -> Option<&[Entry]> {
        match &self.value {
            NodeValue::Map(m) => Some(m),
            _ => None,
        }
    }
    pub fn as_str(&self) -> Option<&str> {
        match &self.value {
            NodeValue::Str(s) => Some(s),
            _ => None,
        }
    }
    pub fn get(&self, key: &str) -> Option<&Entry> {
        self.as_map()?.iter().find(|e| e.key == key)
    }

    /// The name of this node's type, as a user reads it.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            NodeValue::Null => "null",
            NodeValue::Bool(_) => "boolean",
            NodeValue::Int(_) => "integer",
            NodeValue::Float(_) => "number",
            NodeValue::Str(_) => "string",
            NodeValue::Seq(_) => "list",
            NodeValue::Map(_) => "mapping",
        }
    }

    /// The node's JSON value (the form schemas and the typed model read).
    pub fn to_json(&self) -> Value {
        match &self.value {
            NodeValue::Null => Value::Null,
            NodeValue::Bool(b) => Value::Bool(*b),
            NodeValue::Int(i) => Value::from(*i),
            NodeValue::Float(f) => {
                serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number)
            }
            NodeValue::Str(s) => Value::String(s.clone()),
            NodeValue::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeValue::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|e| (e.key.clone(), e.value.to_json()))
                    .collect(),
            ),
        }
    }

    /// Follow a field path as far as it goes. Returns the deepest node reached, the span of the
    /// key that led to it (if the last step was a key), and how many segments were matched.
    pub fn walk(&self, path: &FieldPath) -> Walked<'_> {
        let mut node = self;
        let mut key_span = None;
        for (i, seg) in path.0.iter().enumerate() {
            let next = match (seg, &node.value) {
                (Seg::Key(k), NodeValue::Map(entries)) => entries
                    .iter()
                    .find(|e| &e.key == k)
                    .map(|e| (&e.value, Some(e.key_span))),
                (Seg::Index(i), NodeValue::Seq(items)) => items.get(*i).map(|n| (n, None)),
                _ => None,
            };
            match next {
                Some((n, ks)) => {
                    node = n;
                    key_span = ks;
                }
                None => {
                    return Walked {
                        node,
                        key_span,
                        matched: i,
                    };
                }
            }
        }
        Walked {
            node,
            key_span,
            matched: path.0.len(),
        }
    }
}

/// The result of [`Node::walk`].
#[derive(Debug, Clone, Copy)]
pub struct Walked<'a> {
    pub node: &'a Node,
    pub key_span: Option<NodeSpan>,
    pub matched: usize,
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A path to a field inside a document: `spec.allocations[2].gpu`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    pub fn root() -> FieldPath {
        FieldPath(Vec::new())
    }

    /// Parse the dotted form. Keys holding `.` or `[` cannot be written this way; build those
    /// with [`FieldPath::key`].
    pub fn parse(s: &str) -> FieldPath {
        let mut segs = Vec::new();
        for part in s.split('.').filter(|p| !p.is_empty()) {
            let (name, rest) = match part.find('[') {
                Some(i) => (&part[..i], &part[i..]),
                None => (part, ""),
            };
            if !name.is_empty() {
                segs.push(Seg::Key(name.to_owned()));
            }
            for idx in rest.split('[').filter(|x| !x.is_empty()) {
                if let Ok(i) = idx.trim_end_matches(']').parse() {
                    segs.push(Seg::Index(i));
                }
            }
        }
        FieldPath(segs)
    }

    /// From a JSON pointer (`/spec/allocations/2/gpu`), as schema validators report paths.
    /// A segment of digits is taken as a list index; [`Node::walk`] reads it as a key when the
    /// node there is a mapping, see [`FieldPath::resolve_against`].
    pub fn from_pointer(ptr: &str) -> FieldPath {
        let segs = ptr
            .split('/')
            .skip(1)
            .map(|raw| {
                let s = raw.replace("~1", "/").replace("~0", "~");
                match s.parse::<usize>() {
                    Ok(i) if !s.starts_with('+') => Seg::Index(i),
                    _ => Seg::Key(s),
                }
            })
            .collect();
        FieldPath(segs)
    }

    /// Turn numeric segments back into keys where the tree has a mapping at that place.
    pub fn resolve_against(mut self, root: &Node) -> FieldPath {
        let mut node = Some(root);
        for seg in &mut self.0 {
            let Some(n) = node else { break };
            if let (Seg::Index(i), NodeValue::Map(_)) = (&*seg, &n.value) {
                *seg = Seg::Key(i.to_string());
            }
            node = match (&*seg, &n.value) {
                (Seg::Key(k), NodeValue::Map(entries)) => {
                    entries.iter().find(|e| &e.key == k).map(|e| &e.value)
                }
                (Seg::Index(i), NodeValue::Seq(items)) => items.get(*i),
                _ => None,
            };
        }
        self
    }

    pub fn key(mut self, k: impl Into<String>) -> FieldPath {
        self.0.push(Seg::Key(k.into()));
        self
    }
    pub fn index(mut self, i: usize) -> FieldPath {
        self.0.push(Seg::Index(i));
        self
    }
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
    pub fn last_key(&self) -> Option<&str> {
        match self.0.last() {
            Some(Seg::Key(k)) => Some(k),
            _ => None,
        }
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) => {
                    let plain = !k.is_empty()
                        && k.chars().all(|c| c.is_alphanumeric() || "_-/".contains(c));
                    match (i, plain) {
                        (0, true) => write!(f, "{k}")?,
                        (_, true) => write!(f, ".{k}")?,
                        (_, false) => write!(f, "[{k:?}]")?,
                    }
                }
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_round_trip_through_text() {
        let p = FieldPath::parse("spec.allocations[2].gpu");
        assert_eq!(
            p.0,
            vec![
                Seg::Key("spec".into()),
                Seg::Key("allocations".into()),
                Seg::Index(2),
                Seg::Key("gpu".into())
            ]
        );
        assert_eq!(p.to_string(), "spec.allocations[2].gpu");
        assert_eq!(FieldPath::from_pointer("/spec/allocations/2/gpu"), p);
        assert_eq!(
            FieldPath::root().key("metadata").key("a.b").to_string(),
            "metadata[\"a.b\"]"
        );
        assert_eq!(
            FieldPath::from_pointer("/a~1b/c~0d").0,
            vec![Seg::Key("a/b".into()), Seg::Key("c~d".into())]
        );
    }
}
