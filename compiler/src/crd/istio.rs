//! Istio (`networking.istio.io/v1`, Istio 1.22 or later): VirtualService.
//!
//! Used for what KServe, Deployments and Argo cannot do alone inside the cluster: weighted
//! routing between two versions and mirroring requests to a shadow. Field names follow Istio's
//! API reference (`networking/v1/virtual_service.proto`); no upstream CRD schema is part of
//! the test data, so tests check these objects against this module's own schema.

use schemars::JsonSchema;
use serde::Serialize;

use super::spec::CrdSpec;

/// A VirtualService for callers inside the mesh.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct VirtualServiceSpec {
    /// Hosts the rules apply to (a Service's cluster name).
    #[schemars(length(min = 1))]
    pub hosts: Vec<String>,
    pub http: Vec<HttpRoute>,
}
impl CrdSpec for VirtualServiceSpec {
    const API_VERSION: &'static str = "networking.istio.io/v1";
    const KIND: &'static str = "VirtualService";
    const NAMESPACED: bool = true;
}

/// One HTTP route: weighted destinations, and optionally a mirror.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct HttpRoute {
    /// Route name (Argo Rollouts finds its route by it).
    pub name: String,
    #[schemars(length(min = 1))]
    pub route: Vec<RouteDestination>,
    /// Where a copy of the requests goes (answers discarded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct RouteDestination {
    pub destination: Destination,
    #[schemars(range(max = 100))]
    pub weight: u32,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Destination {
    pub host: String,
    pub port: PortSelector,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct PortSelector {
    #[schemars(range(min = 1, max = 65535))]
    pub number: u32,
}

/// `mirrorPercentage` (a double upstream; whole percents here, so the YAML round-trips).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Percent {
    #[schemars(range(max = 100))]
    pub value: u32,
}

/// The kinds of this module, for `crd::registry`.
pub(super) fn register() -> Vec<super::spec::Registered> {
    super::spec::register![VirtualServiceSpec]
}
