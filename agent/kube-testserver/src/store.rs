//! The object store: objects by kind, namespace and name; the global resourceVersion
//! counter; the event history and the watchers; write counts for tests.
//!
//! Everything here runs under one mutex held by the HTTP layer for the duration of a request's
//! store work (never across an await), so requests are serialised and the outcome of a
//! sequence of requests is deterministic. Request semantics (create, update, patch, apply,
//! delete) live in [`crate::ops`]; this module only persists and notifies.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::managed::Managers;
use crate::registry::{KindInfo, Registry};
use crate::time;

/// Events kept by default for watches that resume from a resourceVersion.
pub const DEFAULT_HISTORY: usize = 10_000;

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjKey {
    /// Index into the [`Registry`].
    pub kind: usize,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    pub name: String,
}

/// A stored object: its JSON without `metadata.managedFields`, and the managers apart.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    pub body: Value,
    pub managers: Managers,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change, as watchers see it.
#[derive(Debug, Clone)]
pub struct Event {
    pub rv: u64,
    pub kind: usize,
    pub namespace: String,
    pub etype: EventType,
    /// The object after the change (for `DELETED`, its last state at the deletion's
    /// resourceVersion).
    pub object: Value,
    /// The object before a `MODIFIED` change (selector watches turn a change that leaves or
    /// enters the selection into `DELETED` or `ADDED`).
    pub prev: Option<Value>,
}

/// The store.
#[derive(Debug)]
pub struct Store {
    pub(crate) registry: Arc<Registry>,
    pub(crate) objects: BTreeMap<ObjKey, Stored>,
    rv: u64,
    uids: u64,
    ips: u64,
    names: u64,
    history: VecDeque<Arc<Event>>,
    history_limit: usize,
    /// Resource versions at or below this are no longer in `history`.
    history_floor: u64,
    watchers: Vec<mpsc::UnboundedSender<Arc<Event>>>,
    writes: BTreeMap<ObjKey, u64>,
    total_writes: u64,
}

impl Store {
    pub fn new(registry: Arc<Registry>) -> Store {
        Store {
            registry,
            objects: BTreeMap::new(),
            rv: 100,
            uids: 0,
            ips: 10,
            names: 0,
            history: VecDeque::new(),
            history_limit: DEFAULT_HISTORY,
            history_floor: 100,
            watchers: Vec::new(),
            writes: BTreeMap::new(),
            total_writes: 0,
        }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Keep at most `n` events for watches resuming from a resourceVersion; older ones get
    /// `410 Gone` (an `ERROR` event), as after etcd compaction.
    pub fn set_history_limit(&mut self, n: usize) {
        self.history_limit = n;
        while self.history.len() > n {
            if let Some(old) = self.history.pop_front() {
                self.history_floor = old.rv;
            }
        }
    }

    pub fn kind(&self, idx: usize) -> &KindInfo {
        self.registry.get(idx)
    }

    /// The current (latest) resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub(crate) fn next_uid(&mut self) -> String {
        self.uids += 1;
        format!("6f1c0000-0000-4000-8000-{:012x}", self.uids)
    }

    pub(crate) fn next_ip(&mut self) -> String {
        self.ips += 1;
        format!("10.96.{}.{}", self.ips / 250, self.ips % 250)
    }

    /// A `generateName` suffix: five characters from the apiserver's alphabet.
    pub(crate) fn next_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        self.names += 1;
        let mut n = self.names * 7919;
        let mut s = String::new();
        for _ in 0..5 {
            s.push(char::from(ALPHABET[usize::try_from(n % 27).unwrap_or(0)]));
            n /= 27;
        }
        s
    }

    pub fn namespace_exists(&self, ns: &str) -> bool {
        match self.registry.by_kind("v1", "Namespace") {
            Some(k) => self.objects.contains_key(&ObjKey {
                kind: k,
                namespace: String::new(),
                name: ns.to_string(),
            }),
            None => true,
        }
    }

    /// The object as clients see it: `apiVersion`, `kind`, `metadata` (in the apiserver's
    /// field order, with `managedFields`), then the rest.
    pub fn render(&self, stored: &Stored) -> Value {
        render(&stored.body, &stored.managers)
    }

    /// Persist a created or updated object with the next resourceVersion; returns it
    /// rendered.
    pub(crate) fn put(&mut self, key: ObjKey, mut stored: Stored) -> Value {
        self.rv += 1;
        let rv = self.rv;
        set_meta(&mut stored.body, "resourceVersion", json!(rv.to_string()));
        let object = self.render(&stored);
        let prev = self.objects.insert(key.clone(), stored);
        let (etype, prev) = match prev {
            Some(p) => (EventType::Modified, Some(self.render(&p))),
            None => (EventType::Added, None),
        };
        self.count_write(&key);
        self.emit(Event {
            rv,
            kind: key.kind,
            namespace: key.namespace,
            etype,
            object: object.clone(),
            prev,
        });
        object
    }

    /// Remove an object; returns its last state (at the deletion's resourceVersion).
    pub(crate) fn remove(&mut self, key: &ObjKey) -> Option<Value> {
        let mut stored = self.objects.remove(key)?;
        self.rv += 1;
        let rv = self.rv;
        let before = self.render(&stored);
        set_meta(&mut stored.body, "resourceVersion", json!(rv.to_string()));
        let object = self.render(&stored);
        self.count_write(key);
        self.emit(Event {
            rv,
            kind: key.kind,
            namespace: key.namespace.clone(),
            etype: EventType::Deleted,
            object,
            prev: None,
        });
        Some(before)
    }

    fn count_write(&mut self, key: &ObjKey) {
        *self.writes.entry(key.clone()).or_default() += 1;
        self.total_writes += 1;
    }

    fn emit(&mut self, event: Event) {
        let event = Arc::new(event);
        self.watchers.retain(|w| w.send(Arc::clone(&event)).is_ok());
        self.history.push_back(event);
        while self.history.len() > self.history_limit {
            if let Some(old) = self.history.pop_front() {
                self.history_floor = old.rv;
            }
        }
    }

    /// Start watching one kind. `since`: `None` starts with a synthetic `ADDED` for every
    /// current object (`resourceVersion` unset or `0`, or `sendInitialEvents`); `Some(rv)`
    /// replays the changes after `rv`. Returns the events to send first and the channel of
    /// later ones, or `Err(oldest)` when `rv` is older than the history kept.
    #[allow(clippy::type_complexity)]
    pub fn watch(
        &mut self,
        kind: usize,
        namespace: Option<&str>,
        since: Option<u64>,
    ) -> Result<(Vec<Arc<Event>>, mpsc::UnboundedReceiver<Arc<Event>>), u64> {
        let initial: Vec<Arc<Event>> = match since {
            None => self
                .objects
                .iter()
                .filter(|(k, _)| k.kind == kind && namespace.is_none_or(|ns| k.namespace == ns))
                .map(|(k, s)| {
                    let object = self.render(s);
                    let rv = object
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    Arc::new(Event {
                        rv,
                        kind,
                        namespace: k.namespace.clone(),
                        etype: EventType::Added,
                        object,
                        prev: None,
                    })
                })
                .collect(),
            Some(rv) => {
                if rv < self.history_floor {
                    return Err(self.history_floor);
                }
                self.history
                    .iter()
                    .filter(|e| e.rv > rv && e.kind == kind)
                    .cloned()
                    .collect()
            }
        };
        let (tx, rx) = mpsc::unbounded_channel();
        self.watchers.push(tx);
        Ok((initial, rx))
    }

    /// Persisted writes (creates, updates, deletes) of one object so far.
    pub fn writes(&self, key: &ObjKey) -> u64 {
        self.writes.get(key).copied().unwrap_or(0)
    }

    pub fn total_writes(&self) -> u64 {
        self.total_writes
    }

    /// The key of `name` in `namespace` of the kind (`namespace` ignored for cluster-scoped
    /// kinds).
    pub fn key(&self, kind: usize, namespace: Option<&str>, name: &str) -> ObjKey {
        let namespaced = self.kind(kind).namespaced;
        ObjKey {
            kind,
            namespace: if namespaced {
                namespace.unwrap_or("").to_string()
            } else {
                String::new()
            },
            name: name.to_string(),
        }
    }

    /// Change a stored object in place, as a controller would (status, or anything): the
    /// resourceVersion moves and watchers see `MODIFIED`; managed fields are left alone.
    /// Returns the new object, or `None` if there is no such object.
    pub fn modify(&mut self, key: &ObjKey, f: impl FnOnce(&mut Value)) -> Option<Value> {
        let stored = self.objects.get(key)?.clone();
        let mut changed = stored.clone();
        f(&mut changed.body);
        if changed.body == stored.body {
            return Some(self.render(&stored));
        }
        Some(self.put(key.clone(), changed))
    }

    pub fn now(&self) -> String {
        time::rfc3339(time::now_unix())
    }
}

/// Set a `metadata` field.
pub fn set_meta(body: &mut Value, field: &str, v: Value) {
    if let Some(obj) = body.as_object_mut() {
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(m) = meta.as_object_mut() {
            m.insert(field.to_string(), v);
        }
    }
}

/// `metadata` keys in the order the apiserver writes them (and the only ones it takes).
pub(crate) const META_ORDER: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// See [`Store::render`].
pub fn render(body: &Value, managers: &Managers) -> Value {
    let Some(obj) = body.as_object() else {
        return body.clone();
    };
    let mut out = Map::new();
    for k in ["apiVersion", "kind"] {
        if let Some(v) = obj.get(k) {
            out.insert(k.to_string(), v.clone());
        }
    }
    let mut meta_in = obj
        .get("metadata")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    if !managers.entries.is_empty() {
        meta_in.insert("managedFields".into(), managers.to_json());
    }
    let mut meta = Map::new();
    for k in META_ORDER {
        if let Some(v) = meta_in.shift_remove(*k) {
            meta.insert((*k).to_string(), v);
        }
    }
    meta.extend(meta_in);
    out.insert("metadata".into(), Value::Object(meta));
    for (k, v) in obj {
        if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            out.insert(k.clone(), v.clone());
        }
    }
    Value::Object(out)
}
