//! `metadata.managedFields`: who owns which fields of an object.
//!
//! Entries are identified as the apiserver identifies them: by manager, operation and
//! subresource, plus the API version for `Update` entries (an applier keeps one entry whatever
//! version it applies with). They are rendered sorted as the apiserver sorts them: by
//! operation (`Apply` first), then time, manager, API version and subresource.

use serde_json::{Map, Value, json};

use crate::fieldset::FieldSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    /// RFC 3339, seconds.
    pub time: Option<String>,
    /// Empty for the main resource.
    pub subresource: String,
    pub fields: FieldSet,
}

/// What identifies an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: String,
}

impl Entry {
    pub fn is(&self, key: &Key) -> bool {
        self.manager == key.manager
            && self.operation == key.operation
            && self.subresource == key.subresource
            && (self.operation == Operation::Apply || self.api_version == key.api_version)
    }

    /// How conflict messages name the manager: `"plinth"` for an applier,
    /// `"kubectl-patch" using v1` for an updater.
    pub fn describe(&self) -> String {
        let mut s = Value::String(self.manager.clone()).to_string();
        if !self.subresource.is_empty() {
            s.push_str(&format!(
                " with subresource {}",
                Value::String(self.subresource.clone())
            ));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

/// All entries of an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Managers {
    pub entries: Vec<Entry>,
}

impl Managers {
    pub fn get(&self, key: &Key) -> Option<&Entry> {
        self.entries.iter().find(|e| e.is(key))
    }

    pub fn get_mut(&mut self, key: &Key) -> Option<&mut Entry> {
        self.entries.iter_mut().find(|e| e.is(key))
    }

    /// Set the fields of `key`'s entry (creating it with `time` if missing; keeping its time
    /// otherwise unless `time` is given).
    pub fn set(&mut self, key: &Key, fields: FieldSet, time: Option<String>) {
        match self.get_mut(key) {
            Some(e) => {
                e.fields = fields;
                e.api_version.clone_from(&key.api_version);
                if time.is_some() {
                    e.time = time;
                }
            }
            None => self.entries.push(Entry {
                manager: key.manager.clone(),
                operation: key.operation,
                api_version: key.api_version.clone(),
                time,
                subresource: key.subresource.clone(),
                fields,
            }),
        }
    }

    /// The union of every entry's fields.
    pub fn owned(&self) -> FieldSet {
        self.entries
            .iter()
            .fold(FieldSet::new(), |acc, e| acc.union(&e.fields))
    }

    pub fn drop_empty(&mut self) {
        self.entries.retain(|e| !e.fields.is_empty());
    }

    /// The `managedFields` list, sorted as the apiserver sorts it.
    pub fn to_json(&self) -> Value {
        let mut entries: Vec<&Entry> = self.entries.iter().collect();
        entries.sort_by(|p, q| {
            p.operation
                .cmp(&q.operation)
                .then_with(|| p.time.cmp(&q.time))
                .then_with(|| p.manager.cmp(&q.manager))
                .then_with(|| p.api_version.cmp(&q.api_version))
                .then_with(|| p.subresource.cmp(&q.subresource))
        });
        Value::Array(
            entries
                .into_iter()
                .map(|e| {
                    let mut m = Map::new();
                    m.insert("manager".into(), json!(e.manager));
                    m.insert("operation".into(), json!(e.operation.as_str()));
                    m.insert("apiVersion".into(), json!(e.api_version));
                    if let Some(t) = &e.time {
                        m.insert("time".into(), json!(t));
                    }
                    m.insert("fieldsType".into(), json!("FieldsV1"));
                    m.insert("fieldsV1".into(), e.fields.to_fields_v1());
                    if !e.subresource.is_empty() {
                        m.insert("subresource".into(), json!(e.subresource));
                    }
                    Value::Object(m)
                })
                .collect(),
        )
    }

    /// Read a `managedFields` list sent by a client. A list holding one empty entry clears
    /// the managed fields, as with the apiserver.
    pub fn from_json(v: &Value) -> Result<Managers, String> {
        let Value::Array(items) = v else {
            return Err("managedFields must be a list".into());
        };
        let mut out = Managers::default();
        for item in items {
            let Value::Object(m) = item else {
                return Err("managedFields entries must be objects".into());
            };
            if m.is_empty() {
                continue;
            }
            let text = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            let operation = match text("operation").as_str() {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                other => return Err(format!("invalid managedFields operation `{other}`")),
            };
            let fields = match m.get("fieldsV1") {
                Some(f) => FieldSet::from_fields_v1(f)?,
                None => FieldSet::new(),
            };
            out.entries.push(Entry {
                manager: text("manager"),
                operation,
                api_version: text("apiVersion"),
                time: m.get("time").and_then(Value::as_str).map(str::to_string),
                subresource: text("subresource"),
                fields,
            });
        }
        Ok(out)
    }
}
