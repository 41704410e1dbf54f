//! The typed specs of one repository and where each came from: [`Object`] pairs a model type
//! with the parsed document it was read from (for located diagnostics and provenance), and
//! [`Specs`] holds every kind by name. This is the seam between the spec language
//! ([`crate::model`], plain data that knows nothing of YAML or spans) and the parsed files
//! ([`crate::parse`]); [`crate::resolve`] builds it.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::diag::Label;
use crate::model::{
    AppSpec, DatasetSpec, GpuQuotaSpec, Kind, Metadata, ModelRolloutSpec, PlatformSpec, ProjectSpec,
};
use crate::parse::{Document, FieldPath};

/// A typed spec and where it came from. Cloning shares the spec and the document.
#[derive(Debug)]
pub struct Object<S> {
    pub metadata: Metadata,
    pub spec: Spec<S>,
    pub doc: Arc<Document>,
}

/// A spec: typed, or typed when first read ([`Spec::later`]: a Project read back from a
/// cache of earlier reads, which a revision compiled against a base mostly never reads).
/// Reading it is reading the typed value either way. Cloning shares it.
///
/// (Typing only what is read saved about 5 % of a one-file plan's CPU at 3,000 projects,
/// see docs/benchmarks.md; a project's `clusters` are read at once, as every unit's listing
/// and the view graph read them.)
pub struct Spec<S>(SpecCell<S>);

enum SpecCell<S> {
    Typed(Arc<S>),
    /// Small until typed (a spec is hundreds of bytes; most of a compile against a base are
    /// never typed).
    Later(Arc<Later<S>>),
}

struct Later<S> {
    typed: std::sync::OnceLock<Box<S>>,
    /// Its document's JSON, and what types it.
    json: JsonAt,
    doc: Arc<Document>,
    typing: fn(&[u8], &Arc<Document>) -> S,
    /// A project's `clusters`, read without typing the rest (what every unit's listing and
    /// the view graph read of every project: [`Object::clusters`]).
    clusters: Vec<String>,
}

impl<S> Spec<S> {
    /// A spec typed now.
    pub fn new(spec: S) -> Spec<S> {
        Spec(SpecCell::Typed(Arc::new(spec)))
    }

    /// A spec typed when first read by `typing` its document's `json` (and the document),
    /// with its `clusters` (a project's) known now.
    pub fn later(
        json: JsonAt,
        doc: Arc<Document>,
        typing: fn(&[u8], &Arc<Document>) -> S,
        clusters: Vec<String>,
    ) -> Spec<S> {
        Spec(SpecCell::Later(Arc::new(Later {
            typed: std::sync::OnceLock::new(),
            json,
            doc,
            typing,
            clusters,
        })))
    }

    /// Whether it is typed (it was, or has been read).
    pub fn is_typed(&self) -> bool {
        match &self.0 {
            SpecCell::Typed(_) => true,
            SpecCell::Later(later) => later.typed.get().is_some(),
        }
    }
}

/// A JSON text where a store's text has it (kept, not copied).
pub struct JsonAt {
    text: Arc<Vec<u8>>,
    range: std::ops::Range<usize>,
}

impl JsonAt {
    /// `json`, which is a part of `text`; `None` when it is not.
    pub fn within(text: &Arc<Vec<u8>>, json: &str) -> Option<JsonAt> {
        let start = (json.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
        let range = start..start.checked_add(json.len())?;
        (range.end <= text.len()).then(|| JsonAt {
            text: text.clone(),
            range,
        })
    }

    pub fn bytes(&self) -> &[u8] {
        self.text.get(self.range.clone()).unwrap_or_default()
    }
}

impl<S> Clone for Spec<S> {
    fn clone(&self) -> Self {
        Spec(match &self.0 {
            SpecCell::Typed(s) => SpecCell::Typed(s.clone()),
            SpecCell::Later(later) => SpecCell::Later(later.clone()),
        })
    }
}

impl<S> std::ops::Deref for Spec<S> {
    type Target = S;
    fn deref(&self) -> &S {
        match &self.0 {
            SpecCell::Typed(s) => s,
            SpecCell::Later(later) => later
                .typed
                .get_or_init(|| Box::new((later.typing)(later.json.bytes(), &later.doc))),
        }
    }
}

impl<S: PartialEq> PartialEq for Spec<S> {
    fn eq(&self, other: &Spec<S>) -> bool {
        **self == **other
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for Spec<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(f)
    }
}

impl Object<ProjectSpec> {
    /// The project's `clusters` (where it lives when it names any), without typing the rest
    /// of a spec typed later.
    pub fn clusters(&self) -> &[String] {
        match &self.spec.0 {
            SpecCell::Later(later) => &later.clusters,
            SpecCell::Typed(s) => &s.clusters,
        }
    }
}

impl<S> Object<S> {
    /// Whether its document is in one of the `changed` files (a compile against a base asks
    /// it of every spec).
    pub fn in_changed(&self, changed: &crate::load::Changed) -> bool {
        changed.contains(&*self.doc.file)
    }
}

/// The names of the specs of one kind whose documents are in `changed` files, in name order.
pub fn changed_names<'s, 'c, S>(
    specs: &'s BTreeMap<String, Object<S>>,
    changed: &'c crate::load::Changed,
) -> impl Iterator<Item = &'s str> + use<'s, 'c, S> {
    specs
        .iter()
        .filter(move |(_, o)| o.in_changed(changed))
        .map(|(name, _)| name.as_str())
}

impl<S> Clone for Object<S> {
    fn clone(&self) -> Self {
        Object {
            metadata: self.metadata.clone(),
            spec: self.spec.clone(),
            doc: self.doc.clone(),
        }
    }
}

impl<S> Object<S> {
    pub fn name(&self) -> &str {
        &self.metadata.name
    }
    /// A field of this object, e.g. `obj.at("spec.pool.capacity")`, for a diagnostic.
    pub fn at(&self, path: &str) -> At {
        At {
            doc: self.doc.clone(),
            path: Path::Dotted(path.to_owned()),
        }
    }
    /// An item of a list field, e.g. `obj.at_item("spec.allocations", i, ".project")` for
    /// `spec.allocations[i].project` (`field`: empty, or from a `.` on): its path is written
    /// only when a diagnostic takes it (the check names an item of every list it walks).
    pub fn at_item(&self, list: &'static str, index: usize, field: &'static str) -> At {
        At {
            doc: self.doc.clone(),
            path: Path::Item(list, index, field),
        }
    }
    pub fn label(&self, path: &FieldPath) -> At {
        At {
            doc: self.doc.clone(),
            path: Path::Field(path.clone()),
        }
    }
    /// `file:line` of the document, for provenance.
    pub fn source(&self) -> String {
        format!("{}:{}", self.doc.file, self.doc.line())
    }
}

/// A field of a spec, located (a [`Label`]) only when a diagnostic takes it: locating reads
/// the document's tree, which a document kept by a cache of earlier reads does not hold until
/// then (see [`Document::root`]). Checks name fields on every spec; few of them report.
#[derive(Debug, Clone)]
pub struct At {
    doc: Arc<Document>,
    path: Path,
}

#[derive(Debug, Clone)]
enum Path {
    Dotted(String),
    Field(FieldPath),
    /// `list[index]field`.
    Item(&'static str, usize, &'static str),
}

impl At {
    /// The place, with what it has to do with the problem.
    pub fn note(self, note: impl Into<String>) -> Label {
        Label::from(self).note(note)
    }
}

impl From<At> for Label {
    fn from(a: At) -> Label {
        match &a.path {
            Path::Dotted(p) => a.doc.at(p),
            Path::Field(f) => a.doc.label(f),
            Path::Item(list, index, field) => a.doc.at(&format!("{list}[{index}]{field}")),
        }
    }
}

/// Any kind's spec.
#[derive(Debug, Clone)]
pub enum AnySpec {
    Platform(Object<PlatformSpec>),
    Project(Object<ProjectSpec>),
    Dataset(Object<DatasetSpec>),
    GpuQuota(Object<GpuQuotaSpec>),
    ModelRollout(Object<ModelRolloutSpec>),
    App(Object<AppSpec>),
}

impl AnySpec {
    pub fn kind(&self) -> Kind {
        match self {
            AnySpec::Platform(_) => Kind::Platform,
            AnySpec::Project(_) => Kind::Project,
            AnySpec::Dataset(_) => Kind::Dataset,
            AnySpec::GpuQuota(_) => Kind::GpuQuota,
            AnySpec::ModelRollout(_) => Kind::ModelRollout,
            AnySpec::App(_) => Kind::App,
        }
    }
}

/// Every spec of a platform repository, by kind and name (ordered, for determinism).
#[derive(Debug, Clone, Default)]
pub struct Specs {
    pub platform: Option<Object<PlatformSpec>>,
    pub projects: BTreeMap<String, Object<ProjectSpec>>,
    pub datasets: BTreeMap<String, Object<DatasetSpec>>,
    pub gpu_quotas: BTreeMap<String, Object<GpuQuotaSpec>>,
    pub rollouts: BTreeMap<String, Object<ModelRolloutSpec>>,
    pub apps: BTreeMap<String, Object<AppSpec>>,
    /// Names of documents that failed to type (schema errors). References to them are not
    /// reported again as missing: the first error is the one to fix.
    pub broken: std::collections::BTreeSet<(Kind, String)>,
}

impl Specs {
    /// The clusters a project lives on: its own `clusters`, else the Platform's default
    /// clusters, else every cluster.
    pub fn placement<'a>(&'a self, project: &'a ProjectSpec) -> Vec<&'a str> {
        self.placement_iter(project).collect()
    }

    /// [`Specs::placement`] without collecting it (for the loops over every project).
    pub fn placement_iter<'a>(
        &'a self,
        project: &'a ProjectSpec,
    ) -> impl Iterator<Item = &'a str> + 'a {
        self.placed_on(&project.clusters)
    }

    /// [`Specs::placement_iter`] of a project whose `clusters` are `clusters` (a project's
    /// [`Object::clusters`], not typing the rest of it).
    pub fn placed_on<'a>(&'a self, clusters: &'a [String]) -> impl Iterator<Item = &'a str> + 'a {
        let (named, every): (&'a [String], &'a [crate::model::platform::Cluster]) =
            if !clusters.is_empty() {
                (clusters, &[])
            } else {
                match self.platform.as_ref().map(|p| &p.spec) {
                    Some(pl) if !pl.defaults.clusters.is_empty() => (&pl.defaults.clusters, &[]),
                    Some(pl) => (&[], &pl.clusters),
                    None => (&[], &[]),
                }
            };
        named
            .iter()
            .map(String::as_str)
            .chain(every.iter().map(|c| c.name.as_str()))
    }

    /// Where a dataset appears in pods: its `mount.path`, else `/datasets/<name>`.
    pub fn mount_path(dataset: &Object<DatasetSpec>) -> String {
        dataset
            .spec
            .mount
            .path
            .clone()
            .unwrap_or_else(|| format!("/datasets/{}", dataset.name()))
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        usize::from(self.platform.is_some())
            + self.projects.len()
            + self.datasets.len()
            + self.gpu_quotas.len()
            + self.rollouts.len()
            + self.apps.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Whether a document of this kind and name exists but did not type.
    pub fn is_broken(&self, kind: Kind, name: &str) -> bool {
        self.broken.contains(&(kind, name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    /// A list item's place is the one its written-out path names, for fields and for the item
    /// itself, and the path is spelled the same.
    #[test]
    fn an_item_is_located_as_its_path_written_out() {
        let text = "kind: GpuQuota\nmetadata:\n  name: q\nspec:\n  allocations:\n    - project: a\n      gpu: 1\n    - project: b\n      gpu: 2\n";
        let file = crate::load::SourceFile::new(
            Arc::from("gpu/q.yaml"),
            crate::load::FileRole::Spec,
            Arc::from(text),
        );
        let (docs, _) = crate::parse::parse_file(&file, crate::parse::YamlLimits::default());
        let metadata: Metadata = serde_json::from_value(serde_json::json!({"name": "q"})).unwrap();
        let o = Object {
            metadata,
            spec: Spec::new(()),
            doc: docs[0].clone(),
        };
        for (i, field) in [(0, ".project"), (1, ".gpu"), (1, "")] {
            let item = Label::from(o.at_item("spec.allocations", i, field));
            let written = Label::from(o.at(&format!("spec.allocations[{i}]{field}")));
            assert_eq!(item, written);
            assert_eq!(
                item.field.as_deref(),
                Some(format!("spec.allocations[{i}]{field}").as_str())
            );
        }
        let second = Label::from(o.at_item("spec.allocations", 1, ".project"));
        assert_eq!(second.span.start.line, 8);
    }
}
