//! KServe (`serving.kserve.io/v1beta1`): InferenceService.
//!
//! Only the predictor is emitted. Field names and types follow the upstream CRD
//! (`config/crd/full/serving.kserve.io_inferenceservices.yaml`); pod-level pieces that are plain
//! Kubernetes types (tolerations, security contexts, resources, environment, containers) are the
//! `k8s-openapi` types, so they serialise exactly as the API expects.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, PodSecurityContext, ResourceRequirements, SecurityContext, Toleration,
};
use schemars::JsonSchema;
use serde::Serialize;

use super::spec::CrdSpec;

/// KServe InferenceService.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct InferenceServiceSpec {
    pub predictor: PredictorSpec,
}
impl CrdSpec for InferenceServiceSpec {
    const API_VERSION: &'static str = "serving.kserve.io/v1beta1";
    const KIND: &'static str = "InferenceService";
    const NAMESPACED: bool = true;
}

/// The predictor: the model (or a custom container) and the pod around it.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct PredictorSpec {
    /// `0` scales to zero when idle (serverless mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["cpu", "memory", "concurrency", "rps"]))]
    pub scale_metric: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scale_target: Option<u32>,
    /// Percent of traffic for the revision being rolled out; the last ready revision keeps the
    /// rest (serverless mode).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub canary_traffic_percent: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account_name: Option<String>,
    /// Labels of the predictor's pods.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<serde_json::Value>")]
    pub tolerations: Vec<Toleration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub security_context: Option<PodSecurityContext>,
    /// A model served by the ServingRuntime that supports its format.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelSpec>,
    /// A custom predictor container (instead of `model`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<serde_json::Value>")]
    pub containers: Vec<Container>,
}

/// `predictor.model`: a container spec the ServingRuntime's container is merged with.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ModelSpec {
    pub model_format: ModelFormat,
    pub storage_uri: String,
    /// Overrides the ServingRuntime's image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<serde_json::Value>")]
    pub env: Vec<EnvVar>,
    #[schemars(with = "serde_json::Value")]
    pub resources: ResourceRequirements,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub security_context: Option<SecurityContext>,
}

/// `predictor.model.modelFormat`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct ModelFormat {
    pub name: String,
}

/// The kinds of this module, for `crd::registry`.
pub(super) fn register() -> Vec<super::spec::Registered> {
    super::spec::register![InferenceServiceSpec]
}
