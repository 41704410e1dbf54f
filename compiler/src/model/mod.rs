//! The spec language: typed models of every kind (`apiVersion: plinth.dev/v1alpha1`).
//!
//! These types are the source of truth for the JSON Schemas in `schemas/` (generated from them
//! by [`crate::schema`]; a test fails when the two drift). They are plain data: no I/O, no
//! validation beyond what serde enforces. Cross-object rules live in [`crate::check`].

pub mod app;
pub mod common;
pub mod dataset;
pub mod gpu;
pub mod platform;
pub mod project;
pub mod quantity;
pub mod rollout;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use app::AppSpec;
pub use common::{Image, InstanceType, PodSecurityLevel, Resources};
pub use dataset::DatasetSpec;
pub use gpu::GpuQuotaSpec;
pub use platform::PlatformSpec;
pub use project::ProjectSpec;
pub use quantity::{Duration, Quantity};
pub use rollout::ModelRolloutSpec;

use crate::diag::Label;
use crate::parse::{Document, FieldPath};

/// The one API version of the spec language.
pub const API_GROUP: &str = "plinth.dev";
pub const API_VERSION: &str = "plinth.dev/v1alpha1";

fn yes() -> bool {
    true
}

/// The kinds of the spec language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    Platform,
    Project,
    Dataset,
    GpuQuota,
    ModelRollout,
    App,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Platform,
        Kind::Project,
        Kind::Dataset,
        Kind::GpuQuota,
        Kind::ModelRollout,
        Kind::App,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Platform => "Platform",
            Kind::Project => "Project",
            Kind::Dataset => "Dataset",
            Kind::GpuQuota => "GpuQuota",
            Kind::ModelRollout => "ModelRollout",
            Kind::App => "App",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// File stem of the kind's schema in `schemas/`.
    pub fn schema_file(self) -> String {
        format!("{}.schema.json", self.as_str().to_ascii_lowercase())
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Metadata shared by every kind.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// Name: a DNS-1123 label (lowercase letters, digits and `-`, at most 63 characters),
    /// unique within the kind.
    pub name: String,
    /// Labels copied onto the objects the spec compiles to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations copied onto the objects the spec compiles to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// A document of one kind as it appears in a file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Envelope<S> {
    pub api_version: String,
    pub kind: String,
    pub metadata: Metadata,
    pub spec: S,
}

/// A typed spec and where it came from.
#[derive(Debug, Clone)]
pub struct Object<S> {
    pub metadata: Metadata,
    pub spec: S,
    pub doc: Arc<Document>,
}

impl<S> Object<S> {
    pub fn name(&self) -> &str {
        &self.metadata.name
    }
    /// A label for a field of this object, e.g. `obj.at("spec.pool.capacity")`.
    pub fn at(&self, path: &str) -> Label {
        self.doc.at(path)
    }
    pub fn label(&self, path: &FieldPath) -> Label {
        self.doc.label(path)
    }
    /// `file:line` of the document, for provenance.
    pub fn source(&self) -> String {
        format!("{}:{}", self.doc.file, self.doc.line())
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
        if !project.clusters.is_empty() {
            return project.clusters.iter().map(String::as_str).collect();
        }
        match self.platform.as_ref().map(|p| &p.spec) {
            Some(pl) if !pl.defaults.clusters.is_empty() => {
                pl.defaults.clusters.iter().map(String::as_str).collect()
            }
            Some(pl) => pl.clusters.iter().map(|c| c.name.as_str()).collect(),
            None => Vec::new(),
        }
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
