//! Parse: YAML files of a snapshot into documents whose every node has a span.
//!
//! Parsing never fails: it returns the documents it could read plus diagnostics for the rest.
//! A [`Document`] is shared (`Arc`) by every later stage so diagnostics can point back at any
//! field with [`Document::label`].

pub mod node;
pub mod yaml;

use std::sync::Arc;

pub use node::{FieldPath, Node, NodeSpan, NodeValue, Seg};
pub use yaml::YamlLimits;

use crate::diag::{Code, Diagnostic, Diagnostics, Label, Span};
use crate::load::{FileRole, Snapshot};

/// One YAML document of a spec file.
///
/// Its tree is parsed when first read ([`Document::root`]) when the document came from a
/// cache of earlier reads (`resolve::FileStore`): a file whose bytes are unchanged is typed
/// from what was kept, and only a diagnostic, a template or a policy that reads the document
/// parses it again.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: Arc<str>,
    /// Position of the document in its file, from 0.
    pub index: usize,
    /// Problems were reported while reading it; see [`yaml::YamlDoc::tainted`].
    pub tainted: bool,
    /// The SHA-256 of its file's text ([`crate::load::SourceFile::digest`]).
    pub digest: [u8; 32],
    /// The line of its first node.
    line: u32,
    /// Its `kind` and `metadata.name`, when they are strings.
    kind: Option<Arc<str>>,
    name: Option<Arc<str>>,
    root: Root,
}

/// What is known of a document without its tree (kept by a cache of earlier reads).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Read {
    pub tainted: bool,
    pub line: u32,
    pub kind: Option<Arc<str>>,
    pub name: Option<Arc<str>>,
}

#[derive(Debug, Clone)]
enum Root {
    Parsed(Node),
    /// Parsed when first read: the document `index` of its file.
    Later(Arc<Unparsed>),
}

/// A file whose documents are parsed when one of them is first read.
#[derive(Debug)]
pub struct Unparsed {
    path: Arc<str>,
    text: Arc<str>,
    limits: YamlLimits,
    docs: std::sync::OnceLock<Vec<yaml::YamlDoc>>,
}

impl Unparsed {
    pub fn of(path: Arc<str>, text: Arc<str>, limits: YamlLimits) -> Arc<Unparsed> {
        Arc::new(Unparsed {
            path,
            text,
            limits,
            docs: std::sync::OnceLock::new(),
        })
    }
}

/// What a document whose file no longer parses as it did reads as (a cache entry that does
/// not match its file: never expected, never a panic).
static EMPTY: Node = Node {
    value: NodeValue::Null,
    span: NodeSpan {
        start: crate::diag::Pos { line: 1, column: 1 },
        end: crate::diag::Pos { line: 1, column: 1 },
    },
};

impl Document {
    /// A document parsed now.
    pub fn new(file: Arc<str>, index: usize, root: Node, tainted: bool, digest: [u8; 32]) -> Self {
        Document {
            file,
            index,
            tainted,
            digest,
            line: root.span.start.line,
            kind: root
                .get("kind")
                .and_then(|e| e.value.as_str())
                .map(Arc::from),
            name: root
                .get("metadata")
                .and_then(|m| m.value.get("name"))
                .and_then(|e| e.value.as_str())
                .map(Arc::from),
            root: Root::Parsed(root),
        }
    }

    /// The document `index` of `file`, parsed when first read; `line`, `kind` and `name`
    /// are what parsing it gave before.
    pub fn later(file: &Arc<Unparsed>, index: usize, digest: [u8; 32], read: Read) -> Self {
        Document {
            file: file.path.clone(),
            index,
            tainted: read.tainted,
            digest,
            line: read.line,
            kind: read.kind,
            name: read.name,
            root: Root::Later(file.clone()),
        }
    }

    /// What [`Document::later`] needs to know of the document without parsing it.
    pub fn read(&self) -> Read {
        Read {
            tainted: self.tainted,
            line: self.line,
            kind: self.kind.clone(),
            name: self.name.clone(),
        }
    }

    /// The document's tree.
    pub fn root(&self) -> &Node {
        match &self.root {
            Root::Parsed(n) => n,
            Root::Later(f) => f
                .docs
                .get_or_init(|| yaml::parse_documents(&f.path, &f.text, f.limits).0)
                .iter()
                .find(|d| d.index == self.index)
                .map_or(&EMPTY, |d| &d.root),
        }
    }

    /// Whether its tree has been parsed (a document kept by a cache of earlier reads is
    /// parsed when first read).
    pub fn is_parsed(&self) -> bool {
        match &self.root {
            Root::Parsed(_) => true,
            Root::Later(f) => f.docs.get().is_some(),
        }
    }

    /// Its `kind`, when that is a string.
    pub fn kind(&self) -> Option<&str> {
        self.kind.as_deref()
    }

    /// Its `metadata.name`, when that is a string.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    pub fn span(&self, s: NodeSpan) -> Span {
        Span::new(self.file.clone(), s.start, s.end)
    }

    /// The best place to point at for a field: a scalar value itself, the key of a collection,
    /// or, when the field is missing, the key of the deepest parent that exists.
    pub fn label(&self, path: &FieldPath) -> Label {
        let w = self.root().walk(path);
        let complete = w.matched == path.0.len();
        let is_collection = matches!(w.node.value, NodeValue::Map(_) | NodeValue::Seq(_));
        let s = match (complete, w.key_span) {
            (true, _) if !is_collection => w.node.span,
            (_, Some(k)) => k,
            (_, None) => NodeSpan {
                start: w.node.span.start,
                end: w.node.span.start,
            },
        };
        Label::new(self.span(s)).field(path.to_string())
    }

    /// The key of a field (for unknown fields and duplicates), falling back to [`Document::label`].
    pub fn key_label(&self, path: &FieldPath) -> Label {
        let w = self.root().walk(path);
        match (w.matched == path.0.len(), w.key_span) {
            (true, Some(k)) => Label::new(self.span(k)).field(path.to_string()),
            _ => self.label(path),
        }
    }

    /// Label from the dotted path form, for checks written by hand.
    pub fn at(&self, path: &str) -> Label {
        self.label(&FieldPath::parse(path))
    }

    /// The line of the document's first node: the provenance line of what it compiles to.
    pub fn line(&self) -> u32 {
        self.line
    }
}

/// Parse every spec file of a snapshot.
pub fn parse(snapshot: &Snapshot, limits: YamlLimits) -> (Vec<Arc<Document>>, Diagnostics) {
    use rayon::prelude::*;
    let files: Vec<&crate::load::SourceFile> = snapshot.with_role(FileRole::Spec).collect();
    // Files parse independently; results are gathered in file order.
    let parsed: Vec<(Vec<Arc<Document>>, Vec<Diagnostic>)> =
        files.par_iter().map(|f| parse_file(f, limits)).collect();
    let mut docs = Vec::new();
    let mut diags = Diagnostics::new();
    for (d, ds) in parsed {
        docs.extend(d);
        diags.extend(ds);
    }
    (docs, diags)
}

/// Parse one spec file.
pub fn parse_file(
    f: &crate::load::SourceFile,
    limits: YamlLimits,
) -> (Vec<Arc<Document>>, Vec<Diagnostic>) {
    let (file_docs, mut file_diags) = yaml::parse_documents(&f.path, &f.text, limits);
    if file_docs.is_empty() && file_diags.is_empty() {
        file_diags.push(
            Diagnostic::new(
                Code::EmptyFile,
                format!("`{}` holds no YAML documents", f.path),
            )
            .at(Label::new(Span::file_start(f.path.clone())))
            .hint("add a spec to the file or delete it"),
        );
    }
    let docs = file_docs
        .into_iter()
        .map(|d| {
            Arc::new(Document::new(
                f.path.clone(),
                d.index,
                d.root,
                d.tainted,
                f.digest,
            ))
        })
        .collect();
    (docs, file_diags)
}
