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
    pub spec: Arc<S>,
    pub doc: Arc<Document>,
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
        let (named, every): (&'a [String], &'a [crate::model::platform::Cluster]) =
            if !project.clusters.is_empty() {
                (&project.clusters, &[])
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
            spec: Arc::new(()),
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
