//! Argo Rollouts (`argoproj.io/v1alpha1`): Rollout, AnalysisTemplate.
//!
//! Field names and types follow the upstream CRDs (`manifests/crds/rollout-crd.yaml`,
//! `analysis-template-crd.yaml`). The pod template and the selector are the `k8s-openapi` types.

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use schemars::JsonSchema;
use serde::Serialize;

use super::spec::CrdSpec;

/// Argo Rollout: a Deployment replacement with canary and blue-green strategies.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct RolloutSpec {
    /// Absent when a HorizontalPodAutoscaler owns the replica count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    #[schemars(with = "serde_json::Value")]
    pub selector: LabelSelector,
    #[schemars(with = "serde_json::Value")]
    pub template: PodTemplateSpec,
    pub strategy: RolloutStrategy,
}
impl CrdSpec for RolloutSpec {
    const API_VERSION: &'static str = "argoproj.io/v1alpha1";
    const KIND: &'static str = "Rollout";
    const NAMESPACED: bool = true;
}

/// Exactly one of the two strategies.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct RolloutStrategy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canary: Option<CanaryStrategy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blue_green: Option<BlueGreenStrategy>,
}

/// `strategy.canary`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct CanaryStrategy {
    /// Service Argo points at the stable ReplicaSet's pods.
    pub stable_service: String,
    /// Service Argo points at the canary ReplicaSet's pods.
    pub canary_service: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<CanaryStep>,
    /// Who moves the weights: without it, Argo splits by replica count.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub traffic_routing: Option<TrafficRouting>,
}

/// `canary.trafficRouting` (exactly one provider).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct TrafficRouting {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub istio: Option<IstioTrafficRouting>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nginx: Option<NginxTrafficRouting>,
}

/// Argo sets the weights of the stable and canary Services' destinations in this
/// VirtualService's routes.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct IstioTrafficRouting {
    pub virtual_service: IstioVirtualService,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct IstioVirtualService {
    pub name: String,
    pub routes: Vec<String>,
}

/// Argo clones this Ingress (whose backend is the stable Service) into a canary Ingress with
/// ingress-nginx's canary weight.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct NginxTrafficRouting {
    pub stable_ingress: String,
}

/// One canary step (exactly one field).
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct CanaryStep {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 100))]
    pub set_weight: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause: Option<Pause>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub analysis: Option<RolloutAnalysis>,
}

/// `pause`: without a duration, until promoted.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Pause {
    /// A Go duration (`30s`, `10m`, `1h`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = r"^[0-9]+(ms|s|m|h)$"))]
    pub duration: Option<String>,
}

/// An analysis run: templates to combine and the arguments they get.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct RolloutAnalysis {
    #[schemars(length(min = 1))]
    pub templates: Vec<AnalysisTemplateRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<AnalysisArg>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct AnalysisTemplateRef {
    pub template_name: String,
}

/// A named argument with a literal value.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct AnalysisArg {
    pub name: String,
    pub value: String,
}

/// `strategy.blueGreen`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct BlueGreenStrategy {
    /// Service Argo points at the active ReplicaSet's pods.
    pub active_service: String,
    /// Service Argo points at the preview ReplicaSet's pods.
    pub preview_service: String,
    pub auto_promotion_enabled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pre_promotion_analysis: Option<RolloutAnalysis>,
}

/// Argo AnalysisTemplate.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct AnalysisTemplateSpec {
    /// Arguments the query refers to as `{{args.<name>}}`; values come from the Rollout.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Argument>,
    #[schemars(length(min = 1))]
    pub metrics: Vec<Metric>,
}
impl CrdSpec for AnalysisTemplateSpec {
    const API_VERSION: &'static str = "argoproj.io/v1alpha1";
    const KIND: &'static str = "AnalysisTemplate";
    const NAMESPACED: bool = true;
}

/// A declared argument, optionally with a default value.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Argument {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// One metric of an analysis.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Metric {
    pub name: String,
    /// A Go duration between measurements.
    #[schemars(extend("pattern" = r"^[0-9]+(ms|s|m|h)$"))]
    pub interval: String,
    pub count: u32,
    pub success_condition: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_condition: Option<String>,
    pub failure_limit: u32,
    pub provider: MetricProvider,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct MetricProvider {
    pub prometheus: PrometheusMetric,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct PrometheusMetric {
    pub address: String,
    pub query: String,
}

/// The kinds of this module, for `crd::registry`.
pub(super) fn register() -> Vec<super::spec::Registered> {
    super::spec::register![RolloutSpec, AnalysisTemplateSpec]
}
