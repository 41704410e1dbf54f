//! `GpuQuota`: a GPU pool, its instance types, and who may use how much of it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{InstanceType, TaintEffect};
use super::quantity::Quantity;

/// Names a pool may not have: `default` is each project's default Kueue queue and
/// `plinth-cpu` the Kueue flavor of CPU-only work (pool names are queue and flavor names).
pub const RESERVED_POOL_NAMES: [&str; 2] = ["default", "plinth-cpu"];

/// A pool of GPUs and its allocations to projects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuQuotaSpec {
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The hardware.
    pub pool: GpuPool,
    /// Instance types carved out of the pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_types: Vec<InstanceType>,
    /// Which projects get how many GPUs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allocations: Vec<Allocation>,
    /// Kueue cohort: queues in one cohort lend unused quota to each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cohort: Option<String>,
    /// When workloads may preempt others.
    #[serde(default)]
    pub preemption: Preemption,
    /// Allow allocations to add up to more than the capacity.
    #[serde(default)]
    pub allow_overcommit: bool,
    /// The most GPUs of this pool one user may hold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_user_gpu: Option<u32>,
    /// Workload priority classes offered on this pool.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub priority_classes: Vec<PriorityClass>,
    /// The priority class of the pool's workloads that name none (one of `priorityClasses`;
    /// the lowest-valued one when absent). Every workload plinth queues carries a class, so
    /// Kueue's priority preemption (`reclaimWithinCohort: LowerPriority`, …) can work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_priority_class: Option<String>,
}

impl GpuQuotaSpec {
    /// GPUs of the pool in `cluster`: its entry of `capacityByCluster`, else `capacity`.
    pub fn capacity_in(&self, cluster: &str) -> u32 {
        self.pool
            .capacity_by_cluster
            .get(cluster)
            .copied()
            .unwrap_or(self.pool.capacity)
    }

    /// The class a workload gets: `explicit`, else the default, else the lowest-valued class.
    pub fn priority_class_for<'a>(&'a self, explicit: Option<&'a str>) -> Option<&'a str> {
        explicit
            .or(self.default_priority_class.as_deref())
            .or_else(|| {
                self.priority_classes
                    .iter()
                    .min_by_key(|c| (c.value, &c.name))
                    .map(|c| c.name.as_str())
            })
    }
}

/// GPU hardware of a pool.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GpuPool {
    /// Extended resource name: `nvidia.com/gpu`, a MIG profile such as
    /// `nvidia.com/mig-1g.10gb`, or `amd.com/gpu`.
    #[serde(default = "default_resource")]
    #[schemars(extend("pattern" = r"^[a-z0-9.-]+\.[a-z]+/[a-z0-9.-]+$"))]
    pub resource_name: String,
    /// GPU model, e.g. `NVIDIA-A100-SXM4-80GB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Labels that select the pool's nodes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_labels: BTreeMap<String, String>,
    /// Taints on the pool's nodes; workloads get matching tolerations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub taints: Vec<Taint>,
    /// GPUs (or MIG slices) of the pool **in each cluster** that lists the pool in its
    /// `gpuPools` (`capacityByCluster` overrides it per cluster). Allocations apply per cluster
    /// too: a project gets its allocation in every cluster it lives on, and the allocations of
    /// a cluster's projects must fit that cluster's capacity.
    pub capacity: u32,
    /// GPUs of the pool in particular clusters, where they differ from `capacity`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub capacity_by_cluster: BTreeMap<String, u32>,
    /// GPUs (or MIG slices) on one node.
    #[schemars(range(min = 1))]
    pub gpus_per_node: u32,
}

fn default_resource() -> String {
    "nvidia.com/gpu".to_owned()
}

/// A node taint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Taint {
    pub key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    pub effect: TaintEffect,
}

/// GPUs given to one project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Allocation {
    pub project: String,
    /// Guaranteed GPUs (Kueue nominal quota).
    pub gpu: u32,
    /// Most GPUs the project may borrow from its cohort beyond `gpu`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub borrowing_limit: Option<u32>,
    /// Most of its `gpu` the project lends to the cohort when idle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lending_limit: Option<u32>,
    /// CPU available to the project's queued workloads on this pool; unlimited when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Memory available to the project's queued workloads on this pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
}

/// Kueue preemption settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Preemption {
    /// Reclaim lent quota from other queues of the cohort.
    #[serde(default)]
    pub reclaim_within_cohort: ReclaimPolicy,
    /// Preempt within the project's own queue.
    #[serde(default)]
    pub within_cluster_queue: WithinQueuePolicy,
}

/// Kueue `reclaimWithinCohort`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ReclaimPolicy {
    Never,
    #[default]
    LowerPriority,
    Any,
}

/// Kueue `withinClusterQueue`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum WithinQueuePolicy {
    Never,
    #[default]
    LowerPriority,
    LowerOrNewerEqualPriority,
}

/// A Kueue WorkloadPriorityClass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PriorityClass {
    pub name: String,
    pub value: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}
