//! `App`: a third-party tool rendered from a template in the platform repository.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// An instance of an App template in a project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AppSpec {
    /// The project the app runs in.
    pub project: String,
    /// Template name: `templates/<template>.yaml.j2` in the platform repository.
    #[schemars(extend("pattern" = r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"))]
    pub template: String,
    /// Instance type for the app's workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Kueue priority of the app's GPU workload (a `priorityClasses` entry of the instance
    /// type's pool); the pool's `defaultPriorityClass` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class: Option<String>,
    /// Clusters of the project the app runs on; every cluster the project lives on when empty
    /// (an app reading a dataset mounted on some of them only names those).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// Values for the template, checked against its schema when it ships one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub values: BTreeMap<String, serde_json::Value>,
}
