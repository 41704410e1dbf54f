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

/// The one API version of the spec language.
pub const API_GROUP: &str = "plinth.dev";
pub const API_VERSION: &str = "plinth.dev/v1alpha1";

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
