//! Output: what the compiler produces, shared by every stage after lowering and by the agent —
//! object identity ([`ObjectKey`]), generated objects ([`Manifest`]) per cluster ([`Lowered`]),
//! approvals travelling with them, provenance labels and annotations, canonical JSON and the
//! content hash. The output counterpart of `model/`: data and pure functions, no stage logic.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::diag::{Code, Diagnostic};
use crate::model::Kind;
use crate::specs::Object;

/// Label every generated object carries.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "plinth");
/// Annotation marking an object whose data must never appear in a plan, a log or an audit.
pub const REDACT_ANNOTATION: &str = "plinth.dev/redact";
/// Label naming the project an object belongs to.
pub const PROJECT_LABEL: &str = "plinth.dev/project";
/// Annotation naming the spec file and line an object came from.
pub const SOURCE_ANNOTATION: &str = "plinth.dev/source";
/// Annotation holding the object's content hash.
pub const HASH_ANNOTATION: &str = "plinth.dev/spec-hash";
/// Annotation naming the template line an App's object came from.
pub const TEMPLATE_ANNOTATION: &str = "plinth.dev/template";

/// Provenance annotations: where an object came from, not what it is. Hashes and plans leave
/// them out, so moving specs or template lines around changes nothing.
pub const PROVENANCE_ANNOTATIONS: [&str; 3] =
    [SOURCE_ANNOTATION, HASH_ANNOTATION, TEMPLATE_ANNOTATION];

/// The spec an object was generated from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
pub struct Origin {
    pub file: Arc<str>,
    pub line: u32,
    pub kind: Kind,
    /// Shared: a unit's objects mostly have one origin, cloned for each.
    pub name: Arc<str>,
}

impl Origin {
    /// The document of a spec.
    pub fn of<S>(kind: Kind, o: &Object<S>) -> Origin {
        Origin {
            file: o.doc.file.clone(),
            line: o.doc.line(),
            kind,
            name: Arc::from(o.name()),
        }
    }
    /// A field of a spec (an allocation, a grant): the line a reviewer should look at.
    pub fn at<S>(kind: Kind, o: &Object<S>, path: &str) -> Origin {
        Origin {
            line: o.doc.at(path).span.start.line,
            ..Origin::of(kind, o)
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} `{}` ({}:{})",
            self.kind, self.name, self.file, self.line
        )
    }
}

/// The identity of a Kubernetes object: what the API server keys it by.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectKey {
    pub api_version: String,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub name: String,
}

/// The compact JSON text of `v`, written into a buffer this thread reuses and copied out at
/// its size (instead of a string grown, and copied, a few times per object).
fn json_text(v: &Value) -> Option<String> {
    thread_local! {
        static BUF: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
    }
    let mut buf = BUF.take();
    buf.clear();
    let text = serde_json::to_writer(&mut buf, v)
        .ok()
        .and_then(|()| std::str::from_utf8(&buf).ok().map(str::to_owned));
    if buf.capacity() <= 1 << 20 {
        BUF.set(buf);
    }
    text
}

/// `v.a.b…` through objects: what `Value::pointer("/a/b")` finds, without unescaping (and
/// allocating) each segment.
pub fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(v, |v, k| v.as_object()?.get(*k))
}

impl ObjectKey {
    pub fn of(v: &Value) -> ObjectKey {
        let s = |p: &[&str]| at(v, p).and_then(Value::as_str).map(str::to_owned);
        ObjectKey {
            api_version: s(&["apiVersion"]).unwrap_or_default(),
            kind: s(&["kind"]).unwrap_or_default(),
            namespace: s(&["metadata", "namespace"]),
            name: s(&["metadata", "name"]).unwrap_or_default(),
        }
    }
    /// The API group (`""` for the core group).
    pub fn group(&self) -> &str {
        self.api_version.rsplit_once('/').map_or("", |(g, _)| g)
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{} {}/{}", self.kind, ns, self.name),
            None => write!(f, "{} {}", self.kind, self.name),
        }
    }
}

/// One generated object.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Manifest {
    pub key: ObjectKey,
    /// The object, provenance included, in emission order.
    pub object: Obj,
    pub origin: Origin,
    /// `plinth.dev/spec-hash`.
    pub hash: String,
}

impl Manifest {
    /// Whether it carries an approval annotation ([`APPROVE_ANNOTATION`]: a plan reads it even
    /// when unchanged). Asked of the text first: an object read from the unit store is parsed
    /// only when its text may hold it.
    pub fn approves(&self) -> bool {
        self.object.may_hold(APPROVE_ANNOTATION)
            && self
                .object
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(APPROVE_ANNOTATION))
                .and_then(Value::as_str)
                .is_some()
    }
}

/// A generated object's JSON: a [`Value`], or the serialised text of one (an object reused from
/// the cache), parsed the first time it is read. A one-file change reuses most objects of a
/// platform and most stages only need their key and hashes: those objects stay text, which is
/// also a fraction of the memory of a `Value`. Reads through `Deref`; `DerefMut` parses first.
#[derive(Clone, Default)]
pub struct Obj {
    value: std::sync::OnceLock<Value>,
    /// `serde_json` text of the value (key order kept).
    text: Option<Text>,
    /// sha256 of the canonical JSON (provenance included): the lock file's `sha256`.
    sha: std::sync::OnceLock<String>,
    /// The `apiVersion` and `kind` of the `k8s-openapi` type the value was serialised from
    /// ([`Obj::typed`]); forgotten when the value is changed in place.
    typed: Option<fn() -> (&'static str, &'static str)>,
}

/// An object's text: a part of a text shared with other objects (the objects of a unit read
/// from the cache share one), or all of one.
#[derive(Clone)]
struct Text {
    all: Arc<Body>,
    range: std::ops::Range<usize>,
}

impl std::ops::Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        self.all.text().get(self.range.clone()).unwrap_or_default()
    }
}

/// The annotation by which a Platform's approvals are found on objects: a plan reads every
/// object carrying it, changed or not (the plan module's `APPROVE_ANNOTATION`).
pub const APPROVE_ANNOTATION: &str = "plinth.dev/approve-destructive";

/// Where a [`Body`] not read yet is read from (the unit store: a place in a pack it holds open).
pub trait BodySource: Send + Sync {
    /// The text as it was stored; `None` when it can no longer be read so (a read failing, a
    /// checksum not matching).
    fn read(&self) -> Option<String>;
}

/// The text the objects of a unit share: given, or read from the unit store the first time one
/// of them is read. A unit reused by a one-file change is mostly never read (its objects' keys
/// and hashes are in the store's header of the unit): the plan, the writer and policy read
/// only the objects they act on.
///
/// A read that fails (the store damaged after it was opened) gives an empty text — each
/// object reads as `null` — and is remembered ([`Body::lost`]): every consumer that would act
/// on an object or keep a result computed from one ([`Lowered::texts_lost`], the policy memo,
/// the unit store) checks it first, so a lost text is an error, never an output.
pub struct Body {
    text: std::sync::OnceLock<String>,
    source: Option<Box<dyn BodySource>>,
    /// Whether the text holds [`APPROVE_ANNOTATION`]: as the store recorded it, else looked
    /// for once.
    approves: std::sync::OnceLock<bool>,
    lost: std::sync::atomic::AtomicBool,
}

impl Body {
    /// A text given now.
    pub fn ready(text: String) -> Body {
        Body {
            text: std::sync::OnceLock::from(text),
            source: None,
            approves: std::sync::OnceLock::new(),
            lost: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// A text read from `source` when first asked for; `approves`: whether it holds
    /// [`APPROVE_ANNOTATION`].
    pub fn stored(source: Box<dyn BodySource>, approves: bool) -> Body {
        Body {
            text: std::sync::OnceLock::new(),
            source: Some(source),
            approves: std::sync::OnceLock::from(approves),
            lost: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The text (read now when it was not).
    pub fn text(&self) -> &str {
        self.text
            .get_or_init(|| match self.source.as_ref().and_then(|s| s.read()) {
                Some(t) => t,
                None => {
                    self.lost.store(true, std::sync::atomic::Ordering::Relaxed);
                    String::new()
                }
            })
    }

    /// Whether it was read.
    #[cfg(test)]
    pub(crate) fn is_read(&self) -> bool {
        self.text.get().is_some()
    }

    /// Whether reading it failed (its objects read as `null`).
    pub fn lost(&self) -> bool {
        self.lost.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the text may hold [`APPROVE_ANNOTATION`] (answered without reading it when
    /// the store recorded it; else looked for once).
    pub fn may_approve(&self) -> bool {
        *self
            .approves
            .get_or_init(|| self.text().contains(APPROVE_ANNOTATION))
    }
}

impl Obj {
    /// An object whose serialised text is `text` (produced by `serde_json` from a `Value`) and
    /// whose canonical hash is `sha`; parsed only when read.
    pub fn from_text(text: String, sha: String) -> Obj {
        let range = 0..text.len();
        Obj::from_shared(&Arc::new(Body::ready(text)), range, sha)
    }

    /// [`Obj::from_text`] of a part of a text shared with other objects (not copied); a range
    /// that is not a part of it stands for `null`.
    pub fn from_shared(all: &Arc<Body>, range: std::ops::Range<usize>, sha: String) -> Obj {
        Obj {
            value: std::sync::OnceLock::new(),
            text: Some(Text {
                all: all.clone(),
                range,
            }),
            sha: std::sync::OnceLock::from(sha),
            typed: None,
        }
    }

    /// An object serialised from a `k8s-openapi` resource of type `T` (see
    /// [`Obj::typed_as`]).
    pub fn typed<T: k8s_openapi::Resource>(v: Value) -> Obj {
        Obj {
            typed: Some(|| (T::API_VERSION, T::KIND)),
            ..Obj::from(v)
        }
    }

    /// The `apiVersion` and `kind` of the `k8s-openapi` type the value was serialised from,
    /// when it was and has not been changed in place since: reading it back into that type
    /// gives the same value.
    pub fn typed_as(&self) -> Option<(&'static str, &'static str)> {
        self.typed.map(|f| f())
    }

    /// The object as text, when it has not been parsed (a reader that can take JSON text
    /// need not make a `Value` of it).
    pub fn unparsed_text(&self) -> Option<&str> {
        match (&self.text, self.value.get()) {
            (Some(t), None) => Some(t),
            _ => None,
        }
        .map(|t| &**t)
    }

    /// The same object kept as text: its `Value` is dropped (a fraction of the memory).
    pub fn into_text(self) -> Obj {
        let text = match self.text {
            Some(t) => t,
            None => {
                let all = Arc::new(Body::ready(
                    self.value
                        .get()
                        .and_then(json_text)
                        .unwrap_or_else(|| "null".to_owned()),
                ));
                let range = 0..all.text().len();
                Text { all, range }
            }
        };
        Obj {
            value: std::sync::OnceLock::new(),
            text: Some(text),
            sha: self.sha,
            typed: self.typed,
        }
    }

    /// Whether the value was parsed (or given).
    pub fn is_parsed(&self) -> bool {
        self.value.get().is_some()
    }

    /// Whether the object may hold the string `s` (a key or a value): `false` only when its
    /// text does not hold it, so a caller looking for an annotation need not parse objects
    /// that cannot have it. (`s` is looked for as written: it must need no JSON escaping.)
    pub fn may_hold(&self, s: &str) -> bool {
        match (&self.text, self.value.get()) {
            (Some(t), None) if s == APPROVE_ANNOTATION && !t.all.may_approve() => false,
            (Some(t), None) => t.contains(s),
            _ => true,
        }
    }

    /// The text this object's text is a part of, when it is kept unparsed (the objects of a
    /// unit read from the cache share one).
    #[cfg(test)]
    pub(crate) fn shared_body(&self) -> Option<&Body> {
        match (&self.text, self.value.get()) {
            (Some(t), None) => Some(&*t.all),
            _ => None,
        }
    }

    /// Whether its text was to be read from the unit store and could not be (it reads as
    /// `null`): nothing may act on it, or keep what was computed from it.
    pub fn text_lost(&self) -> bool {
        self.text.as_ref().is_some_and(|t| t.all.lost())
    }

    /// The serialised text: kept when there is one, else written now.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        match (&self.text, self.value.get()) {
            (Some(t), _) => std::borrow::Cow::Borrowed(&**t),
            (None, Some(v)) => std::borrow::Cow::Owned(v.to_string()),
            (None, None) => std::borrow::Cow::Borrowed("null"),
        }
    }

    /// Read the value without keeping it: an object kept as text is parsed for `f` and the
    /// parse dropped after (a reader of many shared objects, such as the writer, would
    /// otherwise leave every one of them parsed).
    pub fn peek<R>(&self, f: impl FnOnce(&Value) -> R) -> R {
        match self.value.get() {
            Some(v) => f(v),
            None => f(&parse_text(self.text.as_deref())),
        }
    }

    /// Its hash ([`Obj::sha`]) and `f` of its value, from one parse at most (`f` is not
    /// called when `want(sha)` says no).
    pub fn sha_and<R>(
        &self,
        want: impl FnOnce(&str) -> bool,
        f: impl FnOnce(&Value) -> R,
    ) -> (&str, Option<R>) {
        if let Some(sha) = self.sha.get() {
            return (sha, want(sha).then(|| self.peek(f)));
        }
        self.peek(|v| {
            let sha = self
                .sha
                .get_or_init(|| sha256_hex(canonical_json(v).as_bytes()));
            (sha.as_str(), want(sha).then(|| f(v)))
        })
    }

    /// Its YAML ([`to_yaml`]): written straight from its text when it is kept as text (no
    /// value built), else from its value.
    pub fn yaml(&self) -> String {
        match (self.value.get(), self.text.as_deref()) {
            (None, Some(text)) => yaml_of_json(text).unwrap_or_else(|| self.peek(to_yaml)),
            _ => self.peek(to_yaml),
        }
    }

    /// Its hash ([`Obj::sha`]) and, when `want(sha)` says so, its YAML ([`Obj::yaml`]).
    pub fn sha_and_yaml(&self, want: impl FnOnce(&str) -> bool) -> (&str, Option<String>) {
        match self.sha.get() {
            Some(sha) => (sha, want(sha).then(|| self.yaml())),
            None => self.sha_and(want, to_yaml),
        }
    }

    /// sha256 of the canonical JSON (provenance included), computed once.
    pub fn sha(&self) -> &str {
        // An object kept as text stays text: its value is parsed for the hash and dropped.
        self.sha
            .get_or_init(|| sha256_hex(self.peek(canonical_json).as_bytes()))
    }

    /// The value, owned (parsed from the text when there is no value yet).
    pub fn into_value(self) -> Value {
        match self.value.into_inner() {
            Some(v) => v,
            None => parse_text(self.text.as_deref()),
        }
    }
}

/// The value of an object's text. The text was written by `serde_json` and checked against a
/// checksum when read from the cache, so it parses; `null` stands for the impossible.
fn parse_text(text: Option<&str>) -> Value {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

impl From<Value> for Obj {
    fn from(v: Value) -> Obj {
        Obj {
            value: std::sync::OnceLock::from(v),
            text: None,
            sha: std::sync::OnceLock::new(),
            typed: None,
        }
    }
}

impl std::ops::Deref for Obj {
    type Target = Value;
    fn deref(&self) -> &Value {
        self.value.get_or_init(|| parse_text(self.text.as_deref()))
    }
}

impl std::ops::DerefMut for Obj {
    fn deref_mut(&mut self) -> &mut Value {
        if self.value.get().is_none() {
            let v = parse_text(self.text.as_deref());
            self.value = std::sync::OnceLock::from(v);
        }
        // Changed in place: the text, the hash and the type no longer describe it.
        self.text = None;
        self.sha = std::sync::OnceLock::new();
        self.typed = None;
        match self.value.get_mut() {
            Some(v) => v,
            None => unreachable!("set above"),
        }
    }
}

impl fmt::Debug for Obj {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

impl PartialEq for Obj {
    fn eq(&self, other: &Obj) -> bool {
        **self == **other
    }
}

impl PartialEq<Value> for Obj {
    fn eq(&self, other: &Value) -> bool {
        **self == *other
    }
}

impl Serialize for Obj {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(s)
    }
}

impl<'de> serde::Deserialize<'de> for Obj {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Obj, D::Error> {
        Value::deserialize(d).map(Obj::from)
    }
}

/// What one cluster receives.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct ClusterOutput {
    /// Sorted by key; keys are unique.
    pub manifests: Vec<Manifest>,
    /// The Platform's `spec.approvals` entries that concern this cluster (in spec order). They
    /// travel with the objects (the lock file lists them) so that every consumer of the output
    /// — `plinth plan`, the agent — judges destructive changes by the same approvals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
}

/// A Platform `spec.approvals` entry, with where it is written.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// `<Kind>/<name>` or `<Kind>/<namespace>/<name>`.
    pub object: String,
    /// The cluster it is limited to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
    /// The Platform's file and the entry's line.
    pub file: Arc<str>,
    pub line: u32,
}

impl Approval {
    /// The `<Kind>/[<namespace>/]<name>` form of an object key, as approvals name objects.
    pub fn object_id(key: &ObjectKey) -> String {
        match &key.namespace {
            Some(ns) => format!("{}/{ns}/{}", key.kind, key.name),
            None => format!("{}/{}", key.kind, key.name),
        }
    }

    /// Whether this entry names `key` in `cluster`.
    pub fn covers(&self, cluster: &str, key: &ObjectKey) -> bool {
        self.cluster.as_deref().is_none_or(|c| c == cluster) && self.object == Self::object_id(key)
    }

    /// The same entry, wherever it is written (what "already present at the base" compares).
    pub fn same_entry(&self, other: &Approval) -> bool {
        (&self.object, &self.cluster, &self.reason, &self.approver)
            == (
                &other.object,
                &other.cluster,
                &other.reason,
                &other.approver,
            )
    }
}

/// Every cluster's objects.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize)]
pub struct Lowered {
    pub clusters: BTreeMap<String, ClusterOutput>,
    /// The file holding the Platform (where approvals are written).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_file: Option<Arc<str>>,
    /// Where each object is in the unit store, when the compile kept its units there (a cached
    /// revision refers to its objects there instead of holding a copy).
    #[serde(skip)]
    pub units: Option<Arc<UnitRefs>>,
}

/// The units a compile's objects came from ([`crate::lower::units`]): their keys in the unit
/// store, and per cluster, per object (in the cluster's order), its unit (an index into `keys`)
/// and its place among that unit's objects.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct UnitRefs {
    pub keys: Vec<String>,
    pub places: BTreeMap<String, Vec<(u32, u32)>>,
    /// The units (by number, ascending) whose output holds diagnostics.
    #[serde(default)]
    pub noisy: Vec<u32>,
}

/// An object's text could not be read back from the unit store ([`Body`]).
#[derive(Debug, thiserror::Error)]
#[error(
    "an object's text could not be read back from the cache's unit store (changed or damaged while \
     plinth ran); nothing was acted on: run again, the damaged pack is no longer read"
)]
pub struct TextsLost;

impl Lowered {
    /// Whether an object's text was to be read from the unit store and could not be
    /// ([`Body`]): the compile's result, and anything made from the objects read, must not be
    /// acted on (a system failure; the pack it was in is no longer read).
    pub fn texts_lost(&self) -> bool {
        self.clusters
            .values()
            .flat_map(|c| &c.manifests)
            .any(|m| m.object.text_lost())
    }

    /// An error when [`Lowered::texts_lost`]: called by every consumer before it acts (writes
    /// the output, prints a plan, applies objects), after reading the objects it acts on.
    pub fn texts_intact(&self) -> Result<(), TextsLost> {
        if self.texts_lost() {
            Err(TextsLost)
        } else {
            Ok(())
        }
    }

    pub fn object_count(&self) -> usize {
        self.clusters.values().map(|c| c.manifests.len()).sum()
    }
}

/// What a plan needs to know of a compiled revision without its objects: per cluster, every
/// object's key and content hash (and whether it carries an approval annotation), and the
/// approvals. A plan compares two indexes and loads only the objects that differ.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct LoweredIndex {
    pub clusters: BTreeMap<String, ClusterIndex>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_file: Option<Arc<str>>,
}

/// One cluster of a [`LoweredIndex`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct ClusterIndex {
    /// In key order.
    pub objects: Vec<Indexed>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
}

/// An object of a [`ClusterIndex`].
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Indexed {
    pub key: ObjectKey,
    /// `plinth.dev/spec-hash`: equal hashes, equal objects.
    pub hash: String,
    /// The object carries an approval annotation (a plan reads it even when unchanged).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub approve: bool,
}

impl Lowered {
    /// The objects of `keep` (per cluster), with every cluster's approvals.
    pub fn only(&self, keep: &BTreeMap<String, std::collections::BTreeSet<ObjectKey>>) -> Lowered {
        Lowered {
            clusters: self
                .clusters
                .iter()
                .map(|(name, c)| {
                    let wanted = keep.get(name);
                    let manifests = c
                        .manifests
                        .iter()
                        .filter(|m| wanted.is_some_and(|w| w.contains(&m.key)))
                        .cloned()
                        .collect();
                    let out = ClusterOutput {
                        manifests,
                        approvals: c.approvals.clone(),
                    };
                    (name.clone(), out)
                })
                .collect(),
            platform_file: self.platform_file.clone(),
            units: None,
        }
    }
}

/// Canonical JSON: keys sorted at every level, no whitespace. What hashes are taken of.
pub fn canonical_json(v: &Value) -> String {
    let mut s = String::with_capacity(512);
    write_canonical(v, &mut s, Level::Plain);
    s
}

/// Where [`write_canonical`] is, for leaving provenance annotations out of hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    /// Anywhere: write everything.
    Plain,
    /// The object itself: its `metadata` is [`Level::Metadata`].
    Object,
    /// `metadata`: its `annotations` lose the provenance keys (and go when left empty).
    Metadata,
}

/// JSON string escaping (RFC 8259), straight into `out`.
fn write_json_str(s: &str, out: &mut String) {
    out.push('"');
    // Runs of characters that need no escape are copied whole (most strings are one run).
    let mut rest = s;
    while let Some(at) = rest
        .bytes()
        .position(|b| b == b'"' || b == b'\\' || b < 0x20)
    {
        out.push_str(&rest[..at]);
        // An ASCII byte: a character boundary on both sides.
        let c = rest.as_bytes()[at];
        match c {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            c => {
                use std::fmt::Write;
                let _ = write!(out, "\\u{:04x}", c);
            }
        }
        rest = &rest[at + 1..];
    }
    out.push_str(rest);
    out.push('"');
}

/// Canonical JSON of `v` into `out`: every map in key order; at [`Level::Object`], the
/// provenance annotations of its `metadata.annotations` are left out (an emptied `annotations`
/// too).
fn write_canonical(v: &Value, out: &mut String, level: Level) {
    match v {
        Value::Object(m) => {
            out.push('{');
            let mut first = true;
            for_sorted(m, |k, val| {
                let kept = |ak: &String| !PROVENANCE_ANNOTATIONS.contains(&ak.as_str());
                let annotations = (level == Level::Metadata && k == "annotations")
                    .then(|| val.as_object())
                    .flatten();
                if annotations.is_some_and(|a| !a.keys().any(kept)) {
                    // Only provenance: left out, as an emptied map.
                    return;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                write_json_str(k, out);
                out.push(':');
                match annotations {
                    Some(a) => {
                        out.push('{');
                        let mut first = true;
                        for_sorted(a, |ak, av| {
                            if kept(ak) {
                                if !first {
                                    out.push(',');
                                }
                                first = false;
                                write_json_str(ak, out);
                                out.push(':');
                                write_canonical(av, out, Level::Plain);
                            }
                        });
                        out.push('}');
                    }
                    None if level == Level::Object && k == "metadata" => {
                        write_canonical(val, out, Level::Metadata)
                    }
                    None => write_canonical(val, out, Level::Plain),
                }
            });
            out.push('}');
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(x, out, Level::Plain);
            }
            out.push(']');
        }
        Value::String(s) => write_json_str(s, out),
        other => {
            use std::fmt::Write;
            let _ = write!(out, "{other}");
        }
    }
}

/// `f` of each entry of `m` in key order. Maps are mostly in order already (`k8s-openapi`
/// writes fields alphabetically, lowering sorts metadata), so they are only sorted when not.
fn for_sorted<'a>(m: &'a serde_json::Map<String, Value>, mut f: impl FnMut(&'a String, &'a Value)) {
    if m.keys().zip(m.keys().skip(1)).all(|(a, b)| a < b) {
        m.iter().for_each(|(k, v)| f(k, v));
    } else {
        let mut entries: Vec<(&String, &Value)> = m.iter().collect();
        entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
        entries.into_iter().for_each(|(k, v)| f(k, v));
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// Bytes as lowercase hexadecimal digits (digests in keys, ids and fingerprints).
pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 15)] as char);
    }
    s
}

/// The content hash of an object: sha256 of its canonical JSON without the provenance
/// annotations. A moved or renamed spec file changes `plinth.dev/source` but not the hash, so
/// plans and the agent see no change.
pub fn spec_hash(object: &Value) -> String {
    thread_local! {
        /// The canonical text of the last object hashed on this thread, its buffer reused.
        static CANONICAL: std::cell::Cell<String> = const { std::cell::Cell::new(String::new()) };
    }
    // Taken out while in use (nothing here can ask for it again, but a borrow held across
    // the call would not say so).
    let mut s = CANONICAL.take();
    s.clear();
    write_canonical(object, &mut s, Level::Object);
    let hash = sha256_hex(s.as_bytes());
    // A buffer grown for a very large object is not kept.
    if s.capacity() <= 1 << 20 {
        CANONICAL.set(s);
    }
    hash
}

/// Deterministic block-style YAML for a JSON value (a document, without `---`).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::with_capacity(1024);
    match v {
        Value::Object(m) if !m.is_empty() => write_map(m, 0, false, &mut out),
        Value::Array(a) if !a.is_empty() => write_seq(a, 0, &mut out),
        other => {
            push_scalar(other, 0, &mut out);
            out.push('\n');
        }
    }
    out
}

/// [`to_yaml`] of the JSON `text`, written as it is read (no value built: an object kept as
/// text is written without parsing it into maps first); `None` when it is not JSON.
pub fn yaml_of_json(text: &str) -> Option<String> {
    use serde::de::DeserializeSeed;
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    let mut de = serde_json::Deserializer::from_str(text);
    let top = Node {
        out: &mut out,
        indent: 0,
        at: At::Top,
    };
    top.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(out)
}

/// Where a JSON value read by [`Node`] is written: the document itself, a map entry's value or
/// a sequence's item (its dash written).
#[derive(Clone, Copy, PartialEq)]
enum At {
    Top,
    Value,
    Item,
}

/// A JSON value written as YAML as it is read, as [`to_yaml`] writes it: `indent` is its map
/// entry's or sequence's.
struct Node<'o> {
    out: &'o mut String,
    indent: usize,
    at: At,
}

impl Node<'_> {
    /// Where a non-empty map or list of this node starts, and the indentation of its entries.
    fn nested(&self, map: bool) -> (&'static str, usize) {
        match self.at {
            At::Top => ("", 0),
            At::Item if map => (" ", self.indent + 2),
            At::Value | At::Item => ("\n", self.indent + 2),
        }
    }

    /// A scalar of this node (an empty map or list in flow style).
    fn scalar(self, v: &Value) {
        match self.at {
            At::Top => push_scalar(v, 0, self.out),
            At::Value | At::Item => {
                self.out.push(' ');
                push_scalar(v, self.indent + 2, self.out);
            }
        }
        self.out.push('\n');
    }

    fn string(self, s: &str) {
        let indent = if self.at == At::Top {
            0
        } else {
            self.indent + 2
        };
        if self.at != At::Top {
            self.out.push(' ');
        }
        push_string(s, indent, self.out);
        self.out.push('\n');
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for Node<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Node<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.scalar(&Value::Null);
        Ok(())
    }

    fn visit_bool<E>(self, b: bool) -> Result<(), E> {
        self.scalar(&Value::Bool(b));
        Ok(())
    }

    fn visit_i64<E>(self, n: i64) -> Result<(), E> {
        self.scalar(&Value::from(n));
        Ok(())
    }

    fn visit_u64<E>(self, n: u64) -> Result<(), E> {
        self.scalar(&Value::from(n));
        Ok(())
    }

    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<(), E> {
        let n = serde_json::Number::from_f64(n).ok_or_else(|| E::custom("not a JSON number"))?;
        self.scalar(&Value::Number(n));
        Ok(())
    }

    fn visit_str<E>(self, s: &str) -> Result<(), E> {
        self.string(s);
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let (start, indent) = self.nested(false);
        let (out, at) = (self.out, self.at);
        let mark = out.len();
        out.push_str(start);
        let mut empty = true;
        loop {
            let item = out.len();
            pad(indent, out);
            out.push('-');
            let node = Node {
                out: &mut *out,
                indent,
                at: At::Item,
            };
            if seq.next_element_seed(node)?.is_none() {
                out.truncate(item);
                break;
            }
            empty = false;
        }
        if empty {
            out.truncate(mark);
            let indent = self.indent;
            Node { out, indent, at }.scalar(&Value::Array(Vec::new()));
        }
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (start, indent) = self.nested(true);
        let (out, at) = (self.out, self.at);
        let mark = out.len();
        out.push_str(start);
        let mut empty = true;
        loop {
            let entry = out.len();
            // The first entry of an item follows its dash.
            if !(at == At::Item && empty) {
                pad(indent, out);
            }
            if map.next_key_seed(Key(&mut *out))?.is_none() {
                out.truncate(entry);
                break;
            }
            out.push(':');
            map.next_value_seed(Node {
                out: &mut *out,
                indent,
                at: At::Value,
            })?;
            empty = false;
        }
        if empty {
            out.truncate(mark);
            let indent = self.indent;
            Node { out, indent, at }.scalar(&Value::Object(serde_json::Map::new()));
        }
        Ok(())
    }
}

/// A map's key, written as [`to_yaml`] writes it.
struct Key<'o>(&'o mut String);

impl<'de> serde::de::DeserializeSeed<'de> for Key<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for Key<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, k: &str) -> Result<(), E> {
        if plain_ok(k) {
            self.0.push_str(k);
        } else {
            push_quoted(k, self.0);
        }
        Ok(())
    }
}

/// `n` spaces.
fn pad(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A map's entries at `indent`, the first one's indentation left out when it follows a
/// sequence's dash (`inline`).
fn write_map(m: &serde_json::Map<String, Value>, indent: usize, inline: bool, out: &mut String) {
    for (i, (k, v)) in m.iter().enumerate() {
        if !(inline && i == 0) {
            pad(indent, out);
        }
        if plain_ok(k) {
            out.push_str(k);
        } else {
            push_quoted(k, out);
        }
        out.push(':');
        write_value(v, indent, out);
    }
}

fn write_seq(a: &[Value], indent: usize, out: &mut String) {
    for v in a {
        pad(indent, out);
        out.push('-');
        match v {
            Value::Object(m) if !m.is_empty() => {
                // First entry on the dash line, the rest aligned under it.
                out.push(' ');
                write_map(m, indent + 2, true, out);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(inner, indent + 2, out);
            }
            other => {
                out.push(' ');
                push_scalar(other, indent + 2, out);
                out.push('\n');
            }
        }
    }
}

/// What [`to_yaml`] writes for the string `s` as an item of a sequence at `indent` (a list
/// written item by item, without a `Value` of it).
pub fn push_string_item(s: &str, indent: usize, out: &mut String) {
    pad(indent, out);
    out.push_str("- ");
    push_string(s, indent + 2, out);
    out.push('\n');
}

fn write_value(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(m, indent + 2, false, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(a, indent + 2, out);
        }
        other => {
            out.push(' ');
            push_scalar(other, indent + 2, out);
            out.push('\n');
        }
    }
}

/// A scalar (an empty map or list in flow style), its continuation lines at `indent`.
fn push_scalar(v: &Value, indent: usize, out: &mut String) {
    use std::fmt::Write;
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // Writing into a string cannot fail.
        Value::Number(n) => {
            let _ = write!(out, "{n}");
        }
        Value::String(s) => push_string(s, indent, out),
        Value::Object(_) => out.push_str("{}"),
        Value::Array(_) => out.push_str("[]"),
    }
}

/// A string scalar: plain when it reads back as itself, a literal block for readable multi-line
/// text (its lines at `indent`), quoted otherwise.
fn push_string(s: &str, indent: usize, out: &mut String) {
    if plain_ok(s) {
        out.push_str(s);
    } else if literal_ok(s) {
        out.push_str(if s.ends_with('\n') { "|" } else { "|-" });
        for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
            out.push('\n');
            if !line.is_empty() {
                pad(indent, out);
                out.push_str(line);
            }
        }
    } else {
        push_quoted(s, out);
    }
}

/// Whether a string can be written without quotes and read back as the same string by YAML 1.1
/// and 1.2 readers alike (kubectl's included).
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if first.is_ascii_digit() || "-+.?:,[]{}#&*!|>'\"%@` ~=<".contains(first) {
        return false;
    }
    if s.ends_with([' ', ':']) || s.contains(": ") || s.contains(" #") || s.contains('\t') {
        return false;
    }
    if s.chars().any(|c| c.is_control() || !is_printable(c)) {
        return false;
    }
    !["y", "n", "yes", "no", "on", "off", "true", "false", "null"]
        .iter()
        .any(|w| s.eq_ignore_ascii_case(w))
}

/// A multi-line string that reads well as a literal block.
fn literal_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && !s.ends_with("\n\n")
        && !s.contains(" \n")
        && s.chars()
            .all(|c| c == '\n' || (!c.is_control() && is_printable(c)))
}

fn is_printable(c: char) -> bool {
    !matches!(c as u32, 0x7F..=0x9F | 0xFEFF | 0xFFFE | 0xFFFF)
}

/// A YAML double-quoted scalar (JSON escapes plus the ones YAML needs).
fn push_quoted(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || !is_printable(c) => {
                use std::fmt::Write;
                // Writing into a string cannot fail.
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An internal error: plinth generated something it should not have.
pub fn internal(origin: &Origin, message: &str) -> Diagnostic {
    Diagnostic::new(
        Code::Internal,
        format!("{message} (generating from {origin})"),
    )
    .at(crate::diag::Label::new(crate::diag::Span::new(
        origin.file.clone(),
        crate::diag::Pos::new(origin.line, 1),
        crate::diag::Pos::new(origin.line, 1),
    )))
    .hint("this is a bug in plinth; please report it with the spec")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// [`to_yaml`] as it was written before it wrote into one buffer (a string allocated per
    /// line, key and scalar): the oracle of the property below. It shares what decides a
    /// scalar's style (`plain_ok`, `literal_ok`, `push_quoted`) with the writer: the writer's
    /// structure is what it checks.
    mod reference {
        use super::super::{literal_ok, plain_ok, push_quoted};
        use serde_json::Value;

        pub(super) fn to_yaml(v: &Value) -> String {
            let mut out = String::new();
            match v {
                Value::Object(m) if !m.is_empty() => write_map(m, 0, &mut out),
                Value::Array(a) if !a.is_empty() => write_seq(a, 0, &mut out),
                other => {
                    out.push_str(&scalar(other, 0));
                    out.push('\n');
                }
            }
            out
        }

        fn write_map(m: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
            for (k, v) in m {
                out.push_str(&" ".repeat(indent));
                out.push_str(&key(k));
                out.push(':');
                write_value(v, indent, out);
            }
        }

        fn write_seq(a: &[Value], indent: usize, out: &mut String) {
            for v in a {
                out.push_str(&" ".repeat(indent));
                out.push('-');
                match v {
                    Value::Object(m) if !m.is_empty() => {
                        // First entry on the dash line, the rest aligned under it.
                        let mut inner = String::new();
                        write_map(m, indent + 2, &mut inner);
                        out.push(' ');
                        out.push_str(&inner[indent + 2..]);
                    }
                    Value::Array(inner) if !inner.is_empty() => {
                        out.push('\n');
                        write_seq(inner, indent + 2, out);
                    }
                    other => {
                        out.push(' ');
                        out.push_str(&scalar(other, indent + 2));
                        out.push('\n');
                    }
                }
            }
        }

        /// What [`to_yaml`] writes for the string `s` as an item of a sequence at `indent` (a list
        /// written item by item, without a `Value` of it).
        fn write_value(v: &Value, indent: usize, out: &mut String) {
            match v {
                Value::Object(m) if !m.is_empty() => {
                    out.push('\n');
                    write_map(m, indent + 2, out);
                }
                Value::Array(a) if !a.is_empty() => {
                    out.push('\n');
                    write_seq(a, indent + 2, out);
                }
                other => {
                    out.push(' ');
                    out.push_str(&scalar(other, indent + 2));
                    out.push('\n');
                }
            }
        }

        fn key(k: &str) -> String {
            if plain_ok(k) { k.to_owned() } else { quote(k) }
        }

        fn scalar(v: &Value, indent: usize) -> String {
            match v {
                Value::Null => "null".to_owned(),
                Value::Bool(b) => b.to_string(),
                Value::Number(n) => n.to_string(),
                Value::String(s) if plain_ok(s) => s.clone(),
                Value::String(s) if literal_ok(s) => {
                    let pad = " ".repeat(indent);
                    let chomp = if s.ends_with('\n') { "" } else { "-" };
                    let mut out = format!("|{chomp}");
                    for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
                        out.push('\n');
                        if !line.is_empty() {
                            out.push_str(&pad);
                            out.push_str(line);
                        }
                    }
                    out
                }
                Value::String(s) => quote(s),
                Value::Object(_) => "{}".to_owned(),
                Value::Array(_) => "[]".to_owned(),
            }
        }

        fn quote(s: &str) -> String {
            let mut out = String::new();
            push_quoted(s, &mut out);
            out
        }
    }

    /// Any JSON value: strings from an alphabet of what YAML treats specially.
    fn any_value() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let string = || {
            proptest::string::string_regex("(y|N|yes|Off|TRUE|null|~|-|- a|a: b|a #b|#|:|1|1.5|-1|0x1|\\u{7f}|\\u{85}|\\u{feff}|é|雪| |\\t|\\n|\\r|\\\\|\"|'|a|b|\\{\\}|\\[\\]|\\*|&|!|%|@|`|>|\\|){0,6}")
                .expect("regex")
        };
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            string().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, move |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                proptest::collection::vec((string(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn yaml_reserved_words_are_quoted_in_any_case() {
        for w in ["y", "N", "Yes", "nO", "ON", "off", "True", "fAlSe", "NULL"] {
            assert!(!plain_ok(w), "{w}");
        }
        for w in ["yy", "nope", "onto", "offset", "truth", "nullable", "é"] {
            assert!(plain_ok(w), "{w}");
        }
    }

    #[test]
    fn yaml_of_what_is_not_json_is_none() {
        for text in ["", "{", "{\"a\": 1} x", "[1,]", "nul", &"[".repeat(200)] {
            assert_eq!(yaml_of_json(text), None, "{text}");
        }
        let deep = format!("{}{}", "[".repeat(100), "]".repeat(100));
        assert_eq!(
            yaml_of_json(&deep),
            serde_json::from_str::<Value>(&deep)
                .ok()
                .map(|v| to_yaml(&v))
        );
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(512))]
        #[test]
        fn yaml_is_written_as_before(v in any_value()) {
            proptest::prop_assert_eq!(to_yaml(&v), reference::to_yaml(&v));
        }

        #[test]
        fn an_object_kept_as_text_is_written_as_its_value(v in any_value()) {
            let text = Obj::from(v.clone()).into_text();
            proptest::prop_assert_eq!(text.yaml(), to_yaml(&v));
            proptest::prop_assert!(text.value.get().is_none(), "no value was built");
        }

        #[test]
        fn yaml_written_from_json_text_is_the_values(v in any_value()) {
            let text = serde_json::to_string(&v).expect("json");
            proptest::prop_assert_eq!(yaml_of_json(&text), Some(to_yaml(&v)));
        }
    }

    fn stored(v: &Value) -> Obj {
        Obj::from_text(v.to_string(), sha256_hex(canonical_json(v).as_bytes()))
    }

    #[test]
    fn strings_are_escaped_as_character_by_character() {
        // The escaping canonical JSON has always had (hashes depend on it), one character at a
        // time: the oracle.
        fn oracle(s: &str) -> String {
            let mut out = String::from('"');
            for c in s.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                    c => out.push(c),
                }
            }
            out.push('"');
            out
        }
        let alphabet: Vec<char> = "a\"\\\n\r\t\u{0}\u{1f}\u{7f}é€😀 /".chars().collect();
        let mut seed = 7u64;
        for len in 0..200 {
            let s: String = (0..len)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    alphabet[usize::try_from(seed >> 33).unwrap_or(0) % alphabet.len()]
                })
                .collect();
            let mut out = String::new();
            write_json_str(&s, &mut out);
            assert_eq!(out, oracle(&s), "{s:?}");
            assert_eq!(
                serde_json::from_str::<String>(&out).ok().as_deref(),
                Some(&*s)
            );
        }
    }

    #[test]
    fn canonical_json_sorts_every_map_and_the_hash_leaves_out_provenance() {
        let sorted = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"annotations": {"a": "1", "z": "2"}, "name": "c"}, "data": {"b": "x", "a": [{"y": 1, "x": null}]}});
        assert_eq!(
            canonical_json(&sorted),
            r#"{"apiVersion":"v1","data":{"a":[{"x":null,"y":1}],"b":"x"},"kind":"ConfigMap","metadata":{"annotations":{"a":"1","z":"2"},"name":"c"}}"#
        );
        let mut with_provenance = sorted.clone();
        let ann = &mut with_provenance["metadata"]["annotations"];
        ann[SOURCE_ANNOTATION] = json!("p.yaml:3");
        ann[HASH_ANNOTATION] = json!("abc");
        assert_eq!(spec_hash(&with_provenance), spec_hash(&sorted));
        assert_ne!(
            canonical_json(&with_provenance),
            canonical_json(&sorted),
            "the lock file's digest covers provenance"
        );
        // Only provenance annotations: hashed as an object without annotations.
        let bare = json!({"kind": "Namespace", "metadata": {"name": "n"}});
        let only = json!({"kind": "Namespace", "metadata": {"name": "n", "annotations": {SOURCE_ANNOTATION: "p.yaml:1"}}});
        assert_eq!(spec_hash(&only), spec_hash(&bare));
        // Nested `annotations` are plain data.
        let nested = json!({"kind": "X", "metadata": {"name": "n"}, "spec": {"metadata": {"annotations": {SOURCE_ANNOTATION: "kept"}}}});
        assert!(canonical_json(&nested).contains("kept"));
        let mut unhashed = nested.clone();
        unhashed["spec"]["metadata"]["annotations"] = json!({});
        assert_ne!(spec_hash(&nested), spec_hash(&unhashed));
    }

    #[test]
    fn an_object_kept_as_text_reads_as_its_value_and_hash() {
        let v = json!({"kind": "ConfigMap", "metadata": {"name": "a", "annotations": {"z": "1", "a": "2"}}});
        let o = stored(&v);
        assert!(!o.is_parsed());
        assert_eq!(
            o.sha(),
            Obj::from(v.clone()).sha(),
            "the stored hash is the computed one"
        );
        assert!(!o.is_parsed(), "the hash needs no parse");
        assert_eq!(*o, v);
        assert!(o.is_parsed());
        // Key order is kept (the YAML written from it is the same).
        assert_eq!(to_yaml(&o), to_yaml(&v));
        assert_eq!(o.clone().into_value(), v);
    }

    #[test]
    fn a_changed_object_forgets_its_text_and_hash() {
        let v = json!({"kind": "ConfigMap", "metadata": {"name": "a"}});
        let mut o = stored(&v);
        let before = o.sha().to_owned();
        o["metadata"]["name"] = json!("b");
        assert_ne!(o.sha(), before);
        assert_eq!(o.text(), o.to_string());
        assert!(o.text().contains("\"b\""));
    }

    #[test]
    fn hashing_or_peeking_at_an_object_kept_as_text_leaves_it_text() {
        // Objects shared by every later stage (the writer, the caches) would otherwise each
        // keep their parse: at 10,000 projects twice the peak memory of a build.
        let v = json!({"kind": "ConfigMap", "metadata": {"name": "a"}, "data": {"k": "v"}});
        let o = Obj::from(v.clone()).into_text();
        assert_eq!(o.sha(), Obj::from(v.clone()).sha());
        assert!(
            !o.is_parsed(),
            "the hash is computed from a parse that is dropped"
        );
        assert_eq!(o.peek(to_yaml), to_yaml(&v));
        assert!(!o.is_parsed(), "a peek does not keep its parse");
        let o = Obj::from(v.clone()).into_text();
        let (sha, yaml) = o.sha_and(|_| true, to_yaml);
        assert_eq!(
            (sha, yaml.as_deref()),
            (Obj::from(v.clone()).sha(), Some(to_yaml(&v).as_str()))
        );
        assert!(!o.is_parsed());
        let (_, none) = o.sha_and(|_| false, to_yaml);
        assert_eq!(none, None, "not rendered when not wanted");
        // A parsed object is read in place.
        let p = Obj::from(v.clone());
        assert_eq!(p.peek(to_yaml), to_yaml(&v));
        assert!(p.is_parsed());
    }

    #[test]
    fn may_hold_is_false_only_when_the_text_lacks_the_string() {
        let v = json!({"metadata": {"annotations": {"plinth.dev/approve-destructive": "x"}}});
        assert!(stored(&v).may_hold("plinth.dev/approve-destructive"));
        assert!(!stored(&json!({"a": 1})).may_hold("plinth.dev/approve-destructive"));
        // A parsed object always may.
        assert!(Obj::from(json!({"a": 1})).may_hold("anything"));
    }
}
