//! `ModelRollout`: serving a model, and moving traffic between its versions safely.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::Resources;
use super::quantity::Duration;

/// A served model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelRolloutSpec {
    /// The project that owns and runs the model.
    pub project: String,
    /// How the model is served.
    #[serde(default)]
    pub runtime: Runtime,
    /// The model.
    pub model: Model,
    /// Instance type to run on (sets CPU, memory and GPUs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// Resources, when no instance type is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Kueue priority of the model's pods (a `priorityClasses` entry of its GPU pool); the
    /// pool's `defaultPriorityClass` when absent. Only for models on a GPU pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority_class: Option<String>,
    /// GPU pool (`GpuQuota` name) for `resources.gpu`; implied by a GPU instance type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_quota: Option<String>,
    /// Fixed number of replicas (per version). Mutually exclusive with `autoscaling`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Autoscaling bounds and target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Versions and how traffic moves between them; one version at 100% when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<Traffic>,
    /// Who may call the model.
    #[serde(default)]
    pub endpoint: Endpoint,
    /// Why this change was made; kept as an annotation for the audit trail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_message: Option<String>,
}

impl ModelRolloutSpec {
    /// Most replicas that can run at once, per version.
    pub fn max_replicas(&self) -> u32 {
        match (&self.autoscaling, self.replicas) {
            (Some(a), _) => a.max,
            (None, Some(r)) => r,
            (None, None) => 1,
        }
    }
}

/// Serving runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Runtime {
    /// A KServe InferenceService.
    #[default]
    Kserve,
    /// A Deployment (or Argo Rollout) with a Service and an autoscaler.
    Deployment,
}

/// What is served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Model {
    /// Model format; picks the KServe serving runtime.
    pub format: ModelFormat,
    /// Where the model is: `s3://`, `gs://`, `pvc://`, `hf://` or MLflow `models:/name/version`.
    /// Required unless `traffic.versions` lists the versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = r"^(s3|gs|pvc|hf|https|azureblob)://.+|^models:/.+"))]
    pub storage_uri: Option<String>,
    /// The model's version label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Serving image (required for `runtime: deployment`, optional override for KServe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Extra environment variables of the serving container.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Container port the model server listens on.
    #[serde(default = "default_port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,
}

fn default_port() -> u16 {
    8080
}

/// Model formats KServe knows, plus `custom`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ModelFormat {
    Sklearn,
    Xgboost,
    Lightgbm,
    Pytorch,
    Tensorflow,
    Onnx,
    Triton,
    Huggingface,
    Mlflow,
    Custom,
}

impl ModelFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelFormat::Sklearn => "sklearn",
            ModelFormat::Xgboost => "xgboost",
            ModelFormat::Lightgbm => "lightgbm",
            ModelFormat::Pytorch => "pytorch",
            ModelFormat::Tensorflow => "tensorflow",
            ModelFormat::Onnx => "onnx",
            ModelFormat::Triton => "triton",
            ModelFormat::Huggingface => "huggingface",
            ModelFormat::Mlflow => "mlflow",
            ModelFormat::Custom => "custom",
        }
    }
}

/// Autoscaling.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Autoscaling {
    #[serde(default = "one")]
    pub min: u32,
    #[schemars(range(min = 1))]
    pub max: u32,
    #[serde(default)]
    pub metric: ScaleMetric,
    /// Target value: percent for `cpu`/`memory`, per-replica value for `rps`/`concurrency`.
    #[schemars(range(min = 1))]
    pub target: u32,
    /// Scale to zero replicas when idle (KServe serverless only).
    #[serde(default)]
    pub scale_to_zero: bool,
}

fn one() -> u32 {
    1
}

/// What autoscaling follows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ScaleMetric {
    #[default]
    Cpu,
    Memory,
    Rps,
    Concurrency,
}

impl ScaleMetric {
    pub fn as_str(self) -> &'static str {
        match self {
            ScaleMetric::Cpu => "cpu",
            ScaleMetric::Memory => "memory",
            ScaleMetric::Rps => "rps",
            ScaleMetric::Concurrency => "concurrency",
        }
    }
}

/// Versions and how traffic moves between them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Traffic {
    pub strategy: Strategy,
    /// The versions served: the stable one first, the candidate second. Weights add up to 100.
    #[schemars(length(min = 1, max = 2))]
    pub versions: Vec<ModelVersion>,
    /// Steps of a progressive rollout (Argo Rollouts, `runtime: deployment`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<RolloutStep>,
    /// Automated analysis that gates promotion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<Analysis>,
    /// Share of live requests copied to the candidate (`shadow` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 100))]
    pub mirror_percent: Option<u32>,
    /// Promote the preview automatically once healthy (`blueGreen` only).
    #[serde(default)]
    pub auto_promote: bool,
}

/// Traffic strategy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Strategy {
    /// Part of the traffic goes to the candidate.
    Canary,
    /// The candidate runs beside the active version and takes over at once.
    BlueGreen,
    /// The candidate receives a copy of the traffic; its answers are discarded.
    Shadow,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Canary => "canary",
            Strategy::BlueGreen => "blueGreen",
            Strategy::Shadow => "shadow",
        }
    }
}

/// One served version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModelVersion {
    /// Version name (DNS-1123 label), e.g. `v7`.
    pub name: String,
    #[schemars(extend("pattern" = r"^(s3|gs|pvc|hf|https|azureblob)://.+|^models:/.+"))]
    pub storage_uri: String,
    /// Percent of live traffic.
    #[schemars(range(max = 100))]
    pub weight: u32,
}

/// One step of a progressive rollout (exactly one field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct RolloutStep {
    /// Move this percent of traffic to the candidate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub set_weight: Option<u32>,
    /// Wait; without a duration, until promoted by hand.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    /// Run the rollout's analysis now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<StepAnalysis>,
}

/// A pause step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Pause {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
}

/// An analysis step.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StepAnalysis {
    /// Number of measurements; the analysis' own count when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

/// Metric analysis against Prometheus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Analysis {
    pub prometheus: Prometheus,
    /// Expression over `result` that must hold, e.g. `result[0] >= 0.95`.
    pub success_condition: String,
    /// Expression over `result` that fails the rollout at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    /// Failed measurements tolerated before the rollout is aborted.
    #[serde(default)]
    pub failure_limit: u32,
    /// Time between measurements.
    #[serde(default = "default_interval")]
    pub interval: Duration,
    /// Measurements taken.
    #[serde(default = "default_count")]
    pub count: u32,
}

fn default_interval() -> Duration {
    Duration("1m".to_owned())
}

fn default_count() -> u32 {
    5
}

/// A Prometheus query.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Prometheus {
    /// Prometheus base URL.
    pub address: String,
    /// PromQL; `{{args.service}}` and `{{args.namespace}}` are filled in.
    pub query: String,
}

/// Endpoint exposure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    #[serde(default)]
    pub access: EndpointAccess,
    /// External host name (public endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// Projects whose workloads may call a private endpoint.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_projects: Vec<String>,
    /// Secret (in the project) holding the public endpoint's certificate (`tls.crt`,
    /// `tls.key`); when absent, the platform's `serving.ingress.clusterIssuer` issues one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_secret: Option<String>,
    /// How callers of a public endpoint authenticate, checked by the ingress controller
    /// (required for public endpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<EndpointAuth>,
}

/// Authentication of a public endpoint, enforced by ingress-nginx (exactly one field).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct EndpointAuth {
    /// Client certificates (mutual TLS): a Secret in the project whose `ca.crt` signs them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ca_secret: Option<String>,
    /// HTTP basic authentication: a Secret in the project whose key `auth` is an htpasswd file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth_secret: Option<String>,
    /// External authentication: ingress-nginx asks this URL (`auth-url`) for every request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = r"^https?://.+"))]
    pub url: Option<String>,
}

/// Who may reach an endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum EndpointAccess {
    /// Reachable from outside the cluster through the ingress.
    Public,
    /// Reachable only from the project and the listed projects.
    #[default]
    Private,
}
