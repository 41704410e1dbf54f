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
#[derive(Debug, Clone)]
pub struct Document {
    pub file: Arc<str>,
    /// Position of the document in its file, from 0.
    pub index: usize,
    pub root: Node,
    /// Problems were reported while reading it; see [`yaml::YamlDoc::tainted`].
    pub tainted: bool,
    /// The SHA-256 of its file's text ([`crate::load::SourceFile::digest`]).
    pub digest: [u8; 32],
}

impl Document {
    pub fn span(&self, s: NodeSpan) -> Span {
        Span::new(self.file.clone(), s.start, s.end)
    }

    /// The best place to point at for a field: a scalar value itself, the key of a collection,
    /// or, when the field is missing, the key of the deepest parent that exists.
    pub fn label(&self, path: &FieldPath) -> Label {
        let w = self.root.walk(path);
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
        let w = self.root.walk(path);
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
        self.root.span.start.line
    }
}

/// Parse every spec file of a snapshot.
pub fn parse(snapshot: &Snapshot, limits: YamlLimits) -> (Vec<Arc<Document>>, Diagnostics) {
    use rayon::prelude::*;
    let files: Vec<&crate::load::SourceFile> = snapshot.with_role(FileRole::Spec).collect();
    // Files parse independently; results are gathered in file order.
    let parsed: Vec<(Vec<Arc<Document>>, Vec<Diagnostic>)> = files
        .par_iter()
        .map(|f| {
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
                    Arc::new(Document {
                        file: f.path.clone(),
                        index: d.index,
                        root: d.root,
                        tainted: d.tainted,
                        digest: f.digest,
                    })
                })
                .collect();
            (docs, file_diags)
        })
        .collect();
    let mut docs = Vec::new();
    let mut diags = Diagnostics::new();
    for (d, ds) in parsed {
        docs.extend(d);
        diags.extend(ds);
    }
    (docs, diags)
}
