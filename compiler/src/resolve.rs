//! Resolve: documents into the typed [`Specs`] model.
//!
//! For each document: the envelope (`apiVersion`, `kind`), schema validation, typing, and the
//! name; then every object goes into its kind's index, where duplicate names are caught with
//! both places. References between objects are checked in [`crate::check`], which has the
//! whole index to look names up in.
//!
//! Reading a file (parsing it and typing its documents) is a function of its path and bytes:
//! [`read`] takes from a [`FileStore`] (the cache) what reading an unchanged file gave before
//! — its diagnostics, and each document as JSON once it typed — and parses only the files the
//! store does not know. Such a file's documents are parsed again only when something reads
//! their trees (see [`Document::root`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use serde::{Deserialize, Serialize};

use crate::diag::{Code, Diagnostic, Diagnostics, Label, did_you_mean};
use crate::load::{FileRole, Snapshot, SourceFile};
use crate::model::{API_VERSION, Envelope, Kind};
pub use crate::names::is_dns_label;
use crate::parse::{Document, FieldPath, NodeValue, Unparsed, YamlLimits};
use crate::schema;
use crate::specs::{AnySpec, Object, Specs};

/// A diagnostic for a name that is not a DNS-1123 label, with a hint that suggests one.
pub fn invalid_name(what: &str, name: &str, at: impl Into<Label>) -> Diagnostic {
    let suggestion: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect::<String>()
        .split('-')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    let why = if name.len() > 63 {
        " (longer than 63 characters)"
    } else {
        ""
    };
    let mut d = Diagnostic::new(
        Code::InvalidName,
        format!("{what} `{name}` is not a valid DNS-1123 label{why}"),
    )
    .at(at);
    d = if !suggestion.is_empty() && suggestion.len() <= 63 && suggestion != name {
        d.hint(format!(
            "names use lowercase letters, digits and `-`, e.g. `{suggestion}`"
        ))
    } else {
        d.hint("names use lowercase letters, digits and `-`, start and end with a letter or digit, at most 63 characters")
    };
    d
}

/// Bumped when what a file's read holds, or how it is keyed, changes.
const FORMAT: &str = "plinth-file-read-v2";

/// What reading one spec file gave: its parse diagnostics and, per document, what typing it
/// gave. A function of the file's path and bytes, the YAML limits and plinth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileRead {
    pub parse: Vec<Diagnostic>,
    pub docs: Vec<DocRead>,
}

/// What reading one document gave.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DocRead {
    pub index: usize,
    pub read: crate::parse::Read,
    /// The document as JSON, when it typed (its kind is `read.kind`).
    pub typed: Option<RawJson>,
    pub diagnostics: Vec<Diagnostic>,
    /// A typed Project's [`Outline`] (what is read of every project), as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outline: Option<RawJson>,
    /// With an outline: the CRC-32 of `typed`'s text and the outline's, checked when read
    /// back (a project's JSON is typed only when first read, long after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sum: Option<u32>,
}

/// What is read of every project of a revision, kept beside its JSON so that a project read
/// back is typed only when its spec is first read ([`crate::specs::Spec::later`]): a compile
/// against a base reads few.
#[derive(Debug, Serialize, Deserialize)]
struct Outline {
    metadata: crate::model::Metadata,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    clusters: Vec<String>,
}

/// The CRC-32 of a document's JSON and its outline's.
fn outline_sum(json: &str, outline: &str) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(json.as_bytes());
    h.update(b"\0");
    h.update(outline.as_bytes());
    h.finalize()
}

/// The text a store's reads are in, shared: a project typed when first read keeps its JSON
/// there rather than a copy.
pub type StoreText = Arc<Vec<u8>>;

/// A JSON text kept as it is: stored embedded in the store's JSON, not as a string to unescape.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<serde_json::value::RawValue>);

impl RawJson {
    /// `text`, when it is JSON.
    pub fn new(text: String) -> Option<RawJson> {
        serde_json::value::RawValue::from_string(text)
            .ok()
            .map(RawJson)
    }

    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &RawJson) -> bool {
        self.get() == other.get()
    }
}

mod stored;
pub use stored::{AnyEnvelope, DocReadRef, FileReadRef, TypedRef};

impl FileRead {
    /// This read, borrowed (its diagnostics copied).
    pub fn borrowed(&self) -> FileReadRef<'_> {
        FileReadRef {
            parse: self.parse.clone(),
            docs: self
                .docs
                .iter()
                .map(|d| DocReadRef {
                    index: d.index,
                    read: d.read.clone(),
                    typed: d.typed.as_ref().map(|t| TypedRef::Json(&t.0)),
                    diagnostics: d.diagnostics.clone(),
                    outline: d.outline.as_ref().map(|o| &*o.0),
                    sum: d.sum,
                })
                .collect(),
        }
    }
}

/// Where files' reads are looked up before parsing and offered after (the cache).
pub trait FileStore: Send + Sync {
    /// `f` of the read stored under `key`, when there is one, with the text it is read from
    /// when the store has one to share.
    fn get(&self, key: &str, f: &mut dyn FnMut(FileReadRef<'_>, Option<&StoreText>));
    fn put(&self, key: &str, read: FileRead);
    /// Every lookup is over: keep what was used and added.
    fn finish(&self) {}
}

/// A store of files' reads and what its keys are salted with (this build of plinth).
pub struct Files<'a> {
    pub store: &'a dyn FileStore,
    pub salt: &'a str,
}

/// Every spec file of a snapshot read: its documents in file order, each with what typing it
/// gave, and the parse diagnostics. Files are read in parallel; a file `files` knows is not
/// parsed.
pub fn read(
    snapshot: &Snapshot,
    limits: YamlLimits,
    files: Option<&Files<'_>>,
) -> (Vec<Arc<Document>>, Vec<Typed>, Diagnostics) {
    use rayon::prelude::*;
    let spec_files: Vec<&SourceFile> = snapshot.with_role(FileRole::Spec).collect();
    let salted = files.map(|files| {
        <sha2::Sha256 as sha2::Digest>::new_with_prefix(key_prefix(files.salt, limits))
    });
    let read: Vec<FileDocs> = spec_files
        .par_iter()
        .map(|f| {
            let (Some(files), Some(salted)) = (files, &salted) else {
                return read_file(f, limits, false).0;
            };
            let key = file_key(salted, f);
            let mut stored = None;
            files
                .store
                .get(&key, &mut |r, text| stored = from_store(f, limits, r, text));
            if let Some(r) = stored {
                return r;
            }
            let (r, kept) = read_file(f, limits, true);
            if let Some(kept) = kept {
                files.store.put(&key, kept);
            }
            r
        })
        .collect();
    // Made their size at once: a platform's documents are many.
    let n = read.iter().map(|(d, _, _)| d.len()).sum();
    let mut docs = Vec::with_capacity(n);
    let mut typed = Vec::with_capacity(n);
    let mut diags = Diagnostics::new();
    for (d, t, p) in read {
        docs.extend(d);
        typed.extend(t);
        diags.extend(p);
    }
    (docs, typed, diags)
}

/// What typing one document gave.
pub type Typed = (Option<AnySpec>, Diagnostics);

/// One file read: its documents, what typing each gave, its parse diagnostics.
type FileDocs = (Vec<Arc<Document>>, Vec<Typed>, Vec<Diagnostic>);

/// What every file's key in the store begins with.
fn key_prefix(salt: &str, limits: YamlLimits) -> String {
    format!("{FORMAT}|{salt}|{limits:?}|")
}

/// The store's key of a file's read (`salted`: [`key_prefix`], hashed once for every file).
fn file_key(salted: &sha2::Sha256, f: &SourceFile) -> String {
    use sha2::Digest;
    let mut h = salted.clone();
    h.update(f.path.as_bytes());
    h.update(b"\0");
    h.update(f.digest);
    crate::output::hex(&h.finalize())
}

/// Parse and type a file; with `keep`, also what a store keeps of it.
fn read_file(f: &SourceFile, limits: YamlLimits, keep: bool) -> (FileDocs, Option<FileRead>) {
    let (docs, parse) = crate::parse::parse_file(f, limits);
    let mut typed = Vec::with_capacity(docs.len());
    let mut kept = keep.then(|| FileRead {
        parse: parse.clone(),
        docs: Vec::with_capacity(docs.len()),
    });
    for doc in &docs {
        let mut d = Diagnostics::new();
        let (spec, json) = type_document(doc, &mut d, keep);
        if let Some(k) = &mut kept {
            let typed = json.and_then(RawJson::new);
            let outline = match (&spec, &typed) {
                (Some(AnySpec::Project(p)), Some(_)) => serde_json::to_string(&Outline {
                    metadata: p.metadata.clone(),
                    clusters: p.spec.clusters.clone(),
                })
                .ok()
                .and_then(RawJson::new),
                _ => None,
            };
            let sum = typed
                .as_ref()
                .zip(outline.as_ref())
                .map(|(t, o)| outline_sum(t.get(), o.get()));
            k.docs.push(DocRead {
                index: doc.index,
                read: doc.read(),
                typed,
                diagnostics: d.iter().cloned().collect(),
                outline,
                sum,
            });
        }
        typed.push((spec, d));
    }
    ((docs, typed, parse), kept)
}

/// A file's documents from what reading it gave before: typed from their JSON, their trees
/// parsed only when read. `None` when that does not type again (a damaged entry).
fn from_store(
    f: &SourceFile,
    limits: YamlLimits,
    r: FileReadRef<'_>,
    text: Option<&StoreText>,
) -> Option<FileDocs> {
    let lazy = Unparsed::of(f.path.clone(), f.text.clone(), limits);
    let mut docs = Vec::with_capacity(r.docs.len());
    let mut typed = Vec::with_capacity(r.docs.len());
    for d in r.docs {
        let kind = d.read.kind.as_deref().and_then(Kind::parse);
        let doc = Arc::new(Document::later(&lazy, d.index, f.digest, d.read));
        let spec = match d.typed {
            Some(TypedRef::Json(json)) => match (d.outline, text) {
                (Some(outline), Some(text)) if kind == Some(Kind::Project) => {
                    Some(later(json, (outline, d.sum?), text, &doc)?)
                }
                _ => Some(retype(kind?, json.get(), &doc)?),
            },
            Some(TypedRef::Read(env)) => Some(typed_as(kind?, *env, &doc)?),
            None => None,
        };
        let mut diags = Diagnostics::new();
        diags.extend(d.diagnostics);
        docs.push(doc);
        typed.push((spec, diags));
    }
    Some((docs, typed, r.parse))
}

/// A Project read back, typed when its spec is first read (a compile against a base reads
/// few): its metadata and `clusters` from its outline, its JSON kept where the store's `text`
/// has it. `None` when the JSON and outline are not what was written (their sum) or the
/// metadata is not this document's: a damaged entry.
fn later(
    json: &serde_json::value::RawValue,
    (outline, sum): (&serde_json::value::RawValue, u32),
    text: &StoreText,
    doc: &Arc<Document>,
) -> Option<AnySpec> {
    if outline_sum(json.get(), outline.get()) != sum {
        return None;
    }
    let outline: Outline = serde_json::from_str(outline.get()).ok()?;
    if !object_ok(&outline.metadata, doc) {
        return None;
    }
    let json = crate::specs::JsonAt::within(text, json.get())?;
    Some(AnySpec::Project(Object {
        metadata: outline.metadata,
        spec: crate::specs::Spec::later(json, doc.clone(), typed_later, outline.clusters),
        doc: doc.clone(),
    }))
}

/// A Project's spec typed later ([`later`]) from its document's JSON; were that not to type
/// (the entry's sum matched, so only a cache written by something else), from the document,
/// as when first read — which typed then, or the entry would not hold it.
fn typed_later(json: &[u8], doc: &Arc<Document>) -> crate::model::ProjectSpec {
    if let Ok(env) = serde_json::from_slice::<Envelope<crate::model::ProjectSpec>>(json) {
        return env.spec;
    }
    match type_document(doc, &mut Diagnostics::new(), false).0 {
        Some(AnySpec::Project(o)) => (*o.spec).clone(),
        // Only if the cache held a read of this file, with its sum, that its bytes do not give.
        _ => panic!(
            "`{}`: the cache's read of this document does not type, nor does the document; remove the cache",
            doc.file
        ),
    }
}

/// A document typed before, from its JSON.
fn retype(kind: Kind, json: &str, doc: &Arc<Document>) -> Option<AnySpec> {
    let mut de = serde_json::Deserializer::from_str(json);
    let env = AnyEnvelope::of(kind, &mut de).ok()?;
    de.end().ok()?;
    typed_as(kind, env, doc)
}

/// A document typed before, deserialized: its object, when it is of `kind` and of this document
/// (a damaged entry could pair another kind's or document's JSON), its names what typing
/// admits (they become objects' names and labels).
fn typed_as(kind: Kind, env: AnyEnvelope, doc: &Arc<Document>) -> Option<AnySpec> {
    fn object<S>(env: Envelope<S>, doc: &Arc<Document>) -> Option<Object<S>> {
        if !object_ok(&env.metadata, doc) {
            return None;
        }
        Some(Object {
            metadata: env.metadata,
            spec: crate::specs::Spec::new(env.spec),
            doc: doc.clone(),
        })
    }
    if env.kind() != kind.as_str() {
        return None;
    }
    Some(match env {
        AnyEnvelope::Platform(e) if kind == Kind::Platform => AnySpec::Platform(object(e, doc)?),
        AnyEnvelope::Project(e) if kind == Kind::Project => AnySpec::Project(object(e, doc)?),
        AnyEnvelope::Dataset(e) if kind == Kind::Dataset => AnySpec::Dataset(object(e, doc)?),
        AnyEnvelope::GpuQuota(e) if kind == Kind::GpuQuota => AnySpec::GpuQuota(object(e, doc)?),
        AnyEnvelope::ModelRollout(e) if kind == Kind::ModelRollout => {
            AnySpec::ModelRollout(object(e, doc)?)
        }
        AnyEnvelope::App(e) if kind == Kind::App => AnySpec::App(object(e, doc)?),
        _ => return None,
    })
}

/// Whether metadata typed before is this document's, its names what typing admits (they
/// become objects' names and labels).
fn object_ok(metadata: &crate::model::Metadata, doc: &Document) -> bool {
    Some(metadata.name.as_str()) == doc.name()
        && is_dns_label(&metadata.name)
        && metadata_ok(doc, metadata, &mut Diagnostics::new())
}

/// Type every document and index the objects by kind and name.
pub fn resolve(docs: &[Arc<Document>]) -> (Specs, Diagnostics) {
    use rayon::prelude::*;
    // Typing (schema validation included) is per document and runs in parallel; indexing
    // (duplicates) runs in document order.
    let typed: Vec<Typed> = docs
        .par_iter()
        .map(|doc| {
            let mut d = Diagnostics::new();
            let spec = type_document(doc, &mut d, false).0;
            (spec, d)
        })
        .collect();
    index(docs, typed)
}

/// Index typed documents by kind and name (duplicates reported), in document order.
pub fn index(docs: &[Arc<Document>], typed: Vec<Typed>) -> (Specs, Diagnostics) {
    let mut diags = Diagnostics::new();
    let mut specs = Specs::default();
    let mut platforms: Vec<Arc<Document>> = Vec::new();
    for (doc, (spec, d)) in docs.iter().zip(typed) {
        diags.extend(d);
        match spec {
            Some(spec) => insert(&mut specs, spec, &mut platforms, &mut diags),
            None => {
                let kind = doc.kind().and_then(Kind::parse);
                let name = doc.name();
                if let (Some(k), Some(n)) = (kind, name) {
                    if k == Kind::Platform {
                        platforms.push(doc.clone());
                    }
                    specs.broken.insert((k, n.to_owned()));
                }
            }
        }
    }
    if platforms.is_empty() && !docs.is_empty() {
        diags.push(
            Diagnostic::new(
                Code::PlatformCount,
                "the repository has no `Platform` document",
            )
            .hint("add a `plinth.yaml` with `kind: Platform` declaring the clusters"),
        );
    }
    (specs, diags)
}

/// Type a document; with `keep`, also its JSON when it typed.
fn type_document(
    doc: &Arc<Document>,
    diags: &mut Diagnostics,
    keep: bool,
) -> (Option<AnySpec>, Option<String>) {
    if doc.tainted {
        // Its problem is already reported; its tree is not what the author meant.
        return (None, None);
    }
    let Some((kind, json)) = envelope(doc, diags) else {
        return (None, None);
    };
    let errors = schema::validate(doc, kind, &json);
    if !errors.is_empty() {
        diags.extend(errors);
        return (None, None);
    }
    let text = keep.then(|| json.to_string());
    let spec = match kind {
        Kind::Platform => typed(doc, json, diags).map(AnySpec::Platform),
        Kind::Project => typed(doc, json, diags).map(AnySpec::Project),
        Kind::Dataset => typed(doc, json, diags).map(AnySpec::Dataset),
        Kind::GpuQuota => typed(doc, json, diags).map(AnySpec::GpuQuota),
        Kind::ModelRollout => typed(doc, json, diags).map(AnySpec::ModelRollout),
        Kind::App => typed(doc, json, diags).map(AnySpec::App),
    };
    let text = spec.as_ref().and(text);
    (spec, text)
}

/// A document's kind and JSON, when it is a mapping of this API with a kind plinth knows.
fn envelope(doc: &Arc<Document>, diags: &mut Diagnostics) -> Option<(Kind, serde_json::Value)> {
    let root = doc.root();
    let NodeValue::Map(_) = root.value else {
        diags.push(
            Diagnostic::new(Code::NotAMapping, format!("a spec document must be a mapping, found a {}", root.type_name()))
                .at(doc.label(&FieldPath::root()))
                .hint("each document holds `apiVersion`, `kind`, `metadata` and `spec`; separate documents with `---`"),
        );
        return None;
    };
    let mut ok = true;
    // A document of another API (a stray Kubernetes manifest): its kind is not ours to judge.
    let mut foreign = false;
    match root.get("apiVersion").map(|e| &e.value) {
        None => {
            ok = false;
            diags.push(
                Diagnostic::new(Code::MissingField, "missing field `apiVersion`")
                    .at(doc.label(&FieldPath::root()))
                    .hint(format!("add `apiVersion: {API_VERSION}`")),
            );
        }
        Some(v) if v.as_str() == Some(API_VERSION) => {}
        Some(v) => {
            ok = false;
            if !v.as_str().is_some_and(|s| s.starts_with("plinth.dev/")) {
                foreign = true;
            }
            let shown = v
                .as_str()
                .map_or_else(|| format!("a {}", v.type_name()), |s| format!("`{s}`"));
            let hint = match v.as_str() {
                Some(s) if s.starts_with("plinth.dev/") => {
                    format!("this plinth reads `{API_VERSION}`")
                }
                _ => format!(
                    "plinth specs use `apiVersion: {API_VERSION}`; other YAML does not belong in the platform repository"
                ),
            };
            diags.push(
                Diagnostic::new(
                    Code::WrongApiVersion,
                    format!("`apiVersion` is {shown}, expected `{API_VERSION}`"),
                )
                .at(doc.at("apiVersion"))
                .hint(hint),
            );
        }
    }
    let kind = match root.get("kind").map(|e| &e.value) {
        None => {
            diags.push(
                Diagnostic::new(Code::MissingField, "missing field `kind`")
                    .at(doc.label(&FieldPath::root()))
                    .hint(kinds_hint()),
            );
            None
        }
        Some(v) => match v.as_str().and_then(Kind::parse) {
            Some(k) => Some(k),
            None if foreign => None,
            None => {
                let shown = v
                    .as_str()
                    .map_or_else(|| format!("a {}", v.type_name()), |s| format!("`{s}`"));
                let mut d = Diagnostic::new(Code::UnknownKind, format!("unknown kind {shown}"))
                    .at(doc.at("kind"));
                d = match v
                    .as_str()
                    .and_then(|s| did_you_mean(s, Kind::ALL.iter().map(|k| k.as_str())))
                {
                    Some(s) => d.hint(format!("did you mean `{s}`?")),
                    None => d.hint(kinds_hint()),
                };
                diags.push(d);
                None
            }
        },
    };
    let kind = kind?;
    ok.then(|| (kind, root.to_json()))
}

fn kinds_hint() -> String {
    format!(
        "the kinds are {}",
        Kind::ALL
            .iter()
            .map(|k| format!("`{k}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

fn typed<S: DeserializeOwned>(
    doc: &Arc<Document>,
    json: serde_json::Value,
    diags: &mut Diagnostics,
) -> Option<Object<S>> {
    match serde_path_to_error::deserialize::<_, Envelope<S>>(json) {
        Ok(env) => {
            let name = &env.metadata.name;
            if !is_dns_label(name) {
                diags.push(invalid_name("name", name, doc.at("metadata.name")));
                return None;
            }
            if !metadata_ok(doc, &env.metadata, diags) {
                return None;
            }
            Some(Object {
                metadata: env.metadata,
                spec: crate::specs::Spec::new(env.spec),
                doc: doc.clone(),
            })
        }
        Err(e) => {
            // The schema accepted the document, so this is a value serde is stricter about
            // (an integer out of range, a quantity too large to compute with): say where.
            let mut at = FieldPath::root();
            for seg in e.path().iter() {
                at = match seg {
                    serde_path_to_error::Segment::Seq { index } => at.index(*index),
                    serde_path_to_error::Segment::Map { key } => at.key(key.clone()),
                    serde_path_to_error::Segment::Enum { .. }
                    | serde_path_to_error::Segment::Unknown => at,
                };
            }
            let inner = e.into_inner().to_string();
            let d = match inner.strip_prefix("quantity: ") {
                Some(why) => Diagnostic::new(Code::InvalidQuantity, why.to_owned())
                    .at(doc.label(&at))
                    .hint("quantities are at most 2^63 - 1 units (`9223372036854775807`); write the amount you mean, with a suffix (`64Gi`, `2Ti`)"),
                None => Diagnostic::new(Code::WrongType, format!("invalid value at `{at}`: {inner}"))
                    .at(doc.label(&at))
                    .hint("check that numbers fit their field (GPU counts and replicas are whole, non-negative numbers)"),
            };
            diags.push(d);
            None
        }
    }
}

/// Labels and annotations are copied onto generated objects: they must be what the API
/// server accepts.
fn metadata_ok(doc: &Document, m: &crate::model::Metadata, diags: &mut Diagnostics) -> bool {
    use crate::names::{is_label_value, is_qualified_name};
    let mut ok = true;
    for (k, v) in &m.labels {
        let field = FieldPath::root()
            .key("metadata")
            .key("labels")
            .key(k.clone());
        if !is_qualified_name(k) {
            ok = false;
            diags.push(
                Diagnostic::new(Code::InvalidValue, format!("`{k}` is not a valid label key"))
                    .at(doc.key_label(&field))
                    .hint("a label key is an optional DNS prefix and `/`, then up to 63 letters, digits, `-`, `_` or `.`"),
            );
        } else if !is_label_value(v) {
            ok = false;
            diags.push(
                Diagnostic::new(Code::InvalidValue, format!("`{v}` is not a valid value for label `{k}`"))
                    .at(doc.label(&field))
                    .hint("label values are at most 63 letters, digits, `-`, `_` or `.`, starting and ending with a letter or digit; put free text in an annotation"),
            );
        }
    }
    for k in m.annotations.keys() {
        if !is_qualified_name(k) {
            ok = false;
            diags.push(
                Diagnostic::new(Code::InvalidValue, format!("`{k}` is not a valid annotation key"))
                    .at(doc.key_label(&FieldPath::root().key("metadata").key("annotations").key(k.clone())))
                    .hint("an annotation key is an optional DNS prefix and `/`, then up to 63 letters, digits, `-`, `_` or `.`"),
            );
        }
    }
    ok
}

fn insert(
    specs: &mut Specs,
    spec: AnySpec,
    platforms: &mut Vec<Arc<Document>>,
    diags: &mut Diagnostics,
) {
    fn put<S>(
        map: &mut BTreeMap<String, Object<S>>,
        obj: Object<S>,
        kind: Kind,
        diags: &mut Diagnostics,
    ) {
        if let Some(first) = map.get(obj.name()) {
            diags.push(duplicate(
                kind,
                obj.name(),
                obj.at("metadata.name"),
                first.at("metadata.name"),
            ));
        } else {
            map.insert(obj.name().to_owned(), obj);
        }
    }
    match spec {
        AnySpec::Platform(p) => {
            if let Some(first) = platforms.first() {
                diags.push(
                    Diagnostic::new(
                        Code::PlatformCount,
                        "a repository holds exactly one `Platform`, found a second",
                    )
                    .at(p.at("kind"))
                    .related(first.at("kind").note("first `Platform` here"))
                    .hint("merge the two into one `Platform` document"),
                );
            } else {
                platforms.push(p.doc.clone());
                specs.platform = Some(p);
            }
        }
        AnySpec::Project(o) => put(&mut specs.projects, o, Kind::Project, diags),
        AnySpec::Dataset(o) => put(&mut specs.datasets, o, Kind::Dataset, diags),
        AnySpec::GpuQuota(o) => put(&mut specs.gpu_quotas, o, Kind::GpuQuota, diags),
        AnySpec::ModelRollout(o) => put(&mut specs.rollouts, o, Kind::ModelRollout, diags),
        AnySpec::App(o) => put(&mut specs.apps, o, Kind::App, diags),
    }
}

/// Two objects of one kind with the same name.
pub fn duplicate(
    kind: Kind,
    name: &str,
    here: impl Into<Label>,
    first: impl Into<Label>,
) -> Diagnostic {
    Diagnostic::new(
        Code::DuplicateName,
        format!("{kind} `{name}` is defined twice"),
    )
    .at(here)
    .related(first.into().note("first defined here"))
    .hint(format!(
        "names are unique per kind; rename or remove one of the two `{name}`"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels() {
        for ok in ["a", "er-capacity", "x1", "a-b-c", &"a".repeat(63)] {
            assert!(is_dns_label(ok), "{ok}");
        }
        for bad in [
            "",
            "-a",
            "a-",
            "A",
            "a_b",
            "a.b",
            "../../x",
            &"a".repeat(64),
            "é",
        ] {
            assert!(!is_dns_label(bad), "{bad}");
        }
    }

    /// A read kept by a store and read back types every document as reading the file did —
    /// each spec deserialized as the kind its read names, in the same pass over the stored
    /// text —, with the same diagnostics; a stored spec of another kind than its read names, or
    /// of another document, is not taken (the file is then read again).
    #[test]
    fn a_stored_read_types_as_reading_the_file() {
        let example = |p: &str| {
            std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../examples/repo")
                    .join(p),
            )
            .expect("example")
        };
        let text = [
            example("datasets/admissions.yaml"),
            "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: p1\nspec:\n  owners: 7\n".to_owned(),
            "kind: Nothing\n".to_owned(),
            "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: p2\n  labels: {team: er}\nspec:\n  owners: [dana@example.org]\n  clusters: [west]\n".to_owned(),
        ]
        .join("\n---\n");
        let f = SourceFile::new("a.yaml".into(), FileRole::Spec, text.as_str().into());
        let limits = YamlLimits::default();
        let ((_, read, parse), kept) = read_file(&f, limits, true);
        let kept = serde_json::to_vec(&kept.expect("kept")).expect("json");
        let back: FileReadRef<'_> = serde_json::from_slice(&kept).expect("read back");
        // Typed in the same pass, or (a Project) kept as JSON to be typed when first read.
        let taken: Vec<_> = back
            .docs
            .iter()
            .map(|d| match d.typed {
                Some(TypedRef::Read(_)) => "typed",
                Some(TypedRef::Json(_)) => "later",
                None => "none",
            })
            .collect();
        assert_eq!(taken, ["typed", "none", "none", "later"]);
        // Read back from a store's shared text: the project typed when first read.
        let shared: StoreText = Arc::new(kept.clone());
        let elsewhere = serde_json::from_slice::<FileReadRef<'_>>(&kept).expect("json");
        assert!(
            from_store(&f, limits, elsewhere, Some(&shared)).is_none(),
            "a JSON not in the shared text"
        );
        let back = serde_json::from_slice::<FileReadRef<'_>>(&shared).expect("json");
        let (docs, typed, parse_again) =
            from_store(&f, limits, back, Some(&shared)).expect("typed");
        assert_eq!(docs.len(), 4);
        let later = |t: &[Typed]| match &t[3].0 {
            Some(AnySpec::Project(o)) => o.clone(),
            _ => panic!("a project"),
        };
        assert!(!later(&typed).spec.is_typed(), "not typed until read");
        assert_eq!(later(&typed).clusters(), ["west"], "its clusters, untyped");
        assert_eq!(later(&typed).metadata.labels["team"], "er");
        assert_eq!(format!("{parse:?}"), format!("{parse_again:?}"));
        let shown = |t: &[Typed]| -> Vec<String> {
            t.iter()
                .map(|(spec, d)| {
                    let spec = match spec {
                        Some(AnySpec::Project(o)) => format!("{:?} {:?}", o.metadata, o.spec),
                        Some(AnySpec::Dataset(o)) => format!("{:?} {:?}", o.metadata, o.spec),
                        Some(_) => "other".to_owned(),
                        None => "none".to_owned(),
                    };
                    format!("{spec} {:?}", d.iter().collect::<Vec<_>>())
                })
                .collect()
        };
        assert_eq!(shown(&typed), shown(&read));
        assert!(shown(&typed)[3].contains("dana@example.org"));
        assert!(later(&typed).spec.is_typed());
        // Without a text to keep (a read added in this run), typed at once, the same.
        let back = serde_json::from_slice::<FileReadRef<'_>>(&kept).expect("json");
        let (_, now, _) = from_store(&f, limits, back, None).expect("typed");
        assert!(later(&now).spec.is_typed());
        assert_eq!(shown(&now), shown(&read));
        let text = String::from_utf8(kept).expect("utf-8");
        let from = |text: &str| {
            let shared: StoreText = Arc::new(text.as_bytes().to_vec());
            let back = serde_json::from_slice::<FileReadRef<'_>>(&shared).ok()?;
            from_store(&f, limits, back, Some(&shared))
        };
        // A project's JSON that does not type, with its sum made again (a cache written by
        // something else): typed from its document when read.
        let owners = ("\"owners\":[\"dana@example.org\"]", "\"owners\":\"dana\"");
        let resummed = {
            let stored: FileRead = serde_json::from_str(&text).expect("a read");
            let mut d = stored.docs[3].clone();
            let json = d
                .typed
                .as_ref()
                .expect("typed")
                .get()
                .replace(owners.0, owners.1);
            let outline = d.outline.as_ref().expect("an outline").get();
            d.sum = Some(outline_sum(&json, outline));
            d.typed = RawJson::new(json);
            let docs = [stored.docs[..3].to_vec(), vec![d]].concat();
            serde_json::to_string(&FileRead { docs, ..stored }).expect("json")
        };
        let (_, again, _) = from(&resummed).expect("its outline reads back");
        assert!(!later(&again).spec.is_typed());
        assert_eq!(shown(&again), shown(&read));
        // Another kind's spec under a document's read, or another document's, a project's
        // JSON or outline changed (its sum): not taken.
        for damaged in [
            text.replace(
                "\"kind\":\"Project\",\"metadata\":{\"name\":\"p2\"",
                "\"kind\":\"Dataset\",\"metadata\":{\"name\":\"p2\"",
            ),
            text.replace("{\"name\":\"p2\"", "{\"name\":\"p3\""),
            text.replace(owners.0, owners.1),
            text.replace("\"clusters\":[\"west\"]}", "\"clusters\":[\"east\"]}"),
            // A spec typed in the same pass that does not type: the file is read again.
            text.replacen("}},\"spec\":{", "}},\"spec\":{\"owners\":7,", 1),
        ] {
            assert_ne!(damaged, text);
            assert!(from(&damaged).is_none(), "{damaged}");
        }
        // An entry written before outlines (none): typed at once.
        let old: FileRead = serde_json::from_str(&text).expect("a read");
        let old = FileRead {
            docs: old
                .docs
                .into_iter()
                .map(|d| DocRead {
                    outline: None,
                    sum: None,
                    ..d
                })
                .collect(),
            ..old
        };
        let (_, typed_now, _) = from(&serde_json::to_string(&old).expect("json")).expect("typed");
        assert!(later(&typed_now).spec.is_typed());
        assert_eq!(shown(&typed_now), shown(&read));
    }

    #[test]
    fn duplicates_are_reported_in_document_order_against_the_first() {
        let project = |name: &str| {
            format!(
                "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: {name}\nspec:\n  owners: [dana@example.org]\n"
            )
        };
        let dataset = |name: &str| {
            let text = std::fs::read_to_string(
                std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../examples/repo/datasets/admissions.yaml"),
            )
            .expect("example dataset");
            text.replace("name: admissions", &format!("name: {name}"))
        };
        let broken = "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: broken\nspec:\n  owners: 7\n";
        let files = [
            ("a.yaml", project("p1")),
            ("b.yaml", dataset("d1")),
            ("c.yaml", project("p1")),
            ("d.yaml", dataset("d1")),
            ("e.yaml", project("p0")),
            ("f.yaml", project("p1")),
            ("g.yaml", broken.to_owned()),
            ("h.yaml", project("p2")),
        ];
        let mut docs = Vec::new();
        for (path, text) in files {
            let f = SourceFile::new(path.into(), FileRole::Spec, text.as_str().into());
            docs.extend(crate::parse::parse_file(&f, YamlLimits::default()).0);
        }
        let (specs, diags) = resolve(&docs);
        let file = |d: &Diagnostic| d.primary.as_ref().map(|l| l.span.file.to_string());
        let related = |d: &Diagnostic| d.related.first().map(|l| l.span.file.to_string());
        let dups: Vec<_> = diags
            .iter()
            .filter(|d| d.code == Code::DuplicateName)
            .map(|d| (file(d), related(d)))
            .collect();
        let some = |s: &str| Some(s.to_owned());
        assert_eq!(
            dups,
            [
                (some("c.yaml"), some("a.yaml")),
                (some("d.yaml"), some("b.yaml")),
                (some("f.yaml"), some("a.yaml")),
            ]
        );
        // Every diagnostic in document order: the duplicates, then the broken document's.
        let places: Vec<_> = diags.iter().filter_map(file).collect();
        let mut sorted = places.clone();
        sorted.sort();
        assert_eq!(places, sorted);
        assert!(places.last().is_some_and(|f| f == "g.yaml"), "{places:?}");
        // The first of each name is kept; the broken one is remembered by name.
        assert_eq!(
            specs.projects.keys().collect::<Vec<_>>(),
            ["p0", "p1", "p2"]
        );
        assert_eq!(&*specs.projects["p1"].doc.file, "a.yaml");
        assert_eq!(&*specs.datasets["d1"].doc.file, "b.yaml");
        assert!(specs.broken.contains(&(Kind::Project, "broken".to_owned())));
    }

    #[test]
    fn invalid_names_get_a_suggestion() {
        let d = invalid_name(
            "name",
            "ER_Capacity",
            Label::new(crate::diag::Span::file_start("x".into())),
        );
        assert_eq!(
            d.hint.as_deref(),
            Some("names use lowercase letters, digits and `-`, e.g. `er-capacity`")
        );
    }
}
