//! Types shared by several kinds: images, instance types, pod security levels.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::quantity::Quantity;

/// `serde(default)` for flags that are on unless turned off.
pub(crate) fn yes() -> bool {
    true
}

/// Pod Security Standard level of a namespace.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum PodSecurityLevel {
    Privileged,
    Baseline,
    #[default]
    Restricted,
}

impl PodSecurityLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurityLevel::Privileged => "privileged",
            PodSecurityLevel::Baseline => "baseline",
            PodSecurityLevel::Restricted => "restricted",
        }
    }
}

/// A container image users may launch (PrimeHub's Image).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Image {
    /// Short name users pick the image by.
    pub name: String,
    /// Human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Image reference for CPU workloads, e.g. `registry.example.org/ml/base:2.3.1`.
    pub url: String,
    /// Image reference for GPU workloads, when it differs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_for_gpu: Option<String>,
    /// Whether the image is for CPU, GPU or both kinds of instance.
    #[serde(default, rename = "type")]
    pub image_type: ImageType,
    /// Name of the image pull secret in the project namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret: Option<String>,
}

/// What kind of instance an image runs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ImageType {
    Cpu,
    Gpu,
    #[default]
    Both,
}

/// A named size of machine slice users launch on (PrimeHub's InstanceType).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InstanceType {
    /// Name (DNS-1123 label), unique across the platform.
    pub name: String,
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// GPUs per instance (whole devices or MIG slices of the pool's resource).
    #[serde(default)]
    pub gpu: u32,
    /// CPU request, e.g. `4` or `3500m`.
    pub cpu: Quantity,
    /// Memory request, e.g. `32Gi`.
    pub memory: Quantity,
    /// CPU limit; the request when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<Quantity>,
    /// Memory limit; the request when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<Quantity>,
    /// Extra node labels this instance type must land on.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub node_selector: std::collections::BTreeMap<String, String>,
    /// Extra tolerations for nodes of this instance type.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}

/// A toleration, as in a pod spec.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Toleration {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default)]
    pub operator: TolerationOperator,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effect: Option<TaintEffect>,
}

/// Toleration operator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TolerationOperator {
    #[default]
    Equal,
    Exists,
}

/// Taint effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
}

impl TaintEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
        }
    }
}

/// CPU and memory (and GPUs) of a workload, when no instance type is named.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    pub cpu: Quantity,
    pub memory: Quantity,
    /// GPUs of the pool named by `gpuQuota`.
    #[serde(default)]
    pub gpu: u32,
}
