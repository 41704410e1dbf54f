//! Kueue (`kueue.x-k8s.io/v1beta2`): ResourceFlavor, ClusterQueue, LocalQueue, Cohort,
//! WorkloadPriorityClass.

use super::spec::CrdSpec;
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeMap;

/// Kueue ResourceFlavor.
#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ResourceFlavorSpec {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub node_taints: Vec<Taint>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
}
impl CrdSpec for ResourceFlavorSpec {
    const API_VERSION: &'static str = "kueue.x-k8s.io/v1beta2";
    const KIND: &'static str = "ResourceFlavor";
    const NAMESPACED: bool = false;
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Taint {
    pub key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[schemars(extend("enum" = ["NoSchedule", "PreferNoSchedule", "NoExecute"]))]
    pub effect: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Toleration {
    pub key: String,
    #[schemars(extend("enum" = ["Equal", "Exists"]))]
    pub operator: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = ["NoSchedule", "PreferNoSchedule", "NoExecute"]))]
    pub effect: Option<String>,
}

/// Kueue ClusterQueue.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ClusterQueueSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cohort_name: Option<String>,
    /// `{}` admits workloads from every namespace; plinth selects the project's.
    pub namespace_selector: LabelSelector,
    #[schemars(extend("enum" = ["StrictFIFO", "BestEffortFIFO"]))]
    pub queueing_strategy: String,
    #[schemars(length(min = 1))]
    pub resource_groups: Vec<ResourceGroup>,
    pub preemption: ClusterQueuePreemption,
}
impl CrdSpec for ClusterQueueSpec {
    const API_VERSION: &'static str = "kueue.x-k8s.io/v1beta2";
    const KIND: &'static str = "ClusterQueue";
    const NAMESPACED: bool = false;
}

#[derive(Debug, Clone, Default, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct LabelSelector {
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ResourceGroup {
    #[schemars(length(min = 1))]
    pub covered_resources: Vec<String>,
    #[schemars(length(min = 1))]
    pub flavors: Vec<FlavorQuotas>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct FlavorQuotas {
    pub name: String,
    #[schemars(length(min = 1))]
    pub resources: Vec<ResourceQuota>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ResourceQuota {
    pub name: String,
    /// A Kubernetes quantity.
    pub nominal_quota: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub borrowing_limit: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lending_limit: Option<String>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct ClusterQueuePreemption {
    #[schemars(extend("enum" = ["Never", "LowerPriority", "Any"]))]
    pub reclaim_within_cohort: String,
    /// Whether a workload that must borrow may preempt lower-priority workloads elsewhere in
    /// the cohort (Kueue allows it only when `reclaimWithinCohort` is not `Never`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub borrow_within_cohort: Option<BorrowWithinCohort>,
    #[schemars(extend("enum" = ["Never", "LowerPriority", "LowerOrNewerEqualPriority"]))]
    pub within_cluster_queue: String,
}

/// Kueue `preemption.borrowWithinCohort`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct BorrowWithinCohort {
    #[schemars(extend("enum" = ["Never", "LowerPriority"]))]
    pub policy: String,
}

/// Kueue LocalQueue.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct LocalQueueSpec {
    pub cluster_queue: String,
}
impl CrdSpec for LocalQueueSpec {
    const API_VERSION: &'static str = "kueue.x-k8s.io/v1beta2";
    const KIND: &'static str = "LocalQueue";
    const NAMESPACED: bool = true;
}

/// Kueue Cohort (hierarchical cohorts).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct CohortSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_name: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resource_groups: Vec<ResourceGroup>,
}
impl CrdSpec for CohortSpec {
    const API_VERSION: &'static str = "kueue.x-k8s.io/v1beta2";
    const KIND: &'static str = "Cohort";
    const NAMESPACED: bool = false;
}

/// Kueue WorkloadPriorityClass (fields at the top level, no `spec`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct WorkloadPriorityClassBody {
    pub value: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}
impl CrdSpec for WorkloadPriorityClassBody {
    const API_VERSION: &'static str = "kueue.x-k8s.io/v1beta2";
    const KIND: &'static str = "WorkloadPriorityClass";
    const NAMESPACED: bool = false;
    const TOP_LEVEL: bool = true;
}

/// The kinds of this module, for `crd::registry`.
pub(super) fn register() -> Vec<super::spec::Registered> {
    super::spec::register![
        ResourceFlavorSpec,
        ClusterQueueSpec,
        LocalQueueSpec,
        CohortSpec,
        WorkloadPriorityClassBody
    ]
}
