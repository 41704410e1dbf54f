//! `Project`: a tenant team, its people, quotas, volumes, images and network.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Image, PodSecurityLevel};
use super::quantity::Quantity;

/// A team sharing the platform: one namespace per cluster it lives on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectSpec {
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// What the team does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Users who own the project; they get the `admin` role.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub owners: Vec<String>,
    /// Users and groups with their roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<Member>,
    /// Resource quota of the whole project namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<ProjectQuota>,
    /// The most one user may consume inside the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_user_quota: Option<PerUserQuota>,
    /// Requests and limits given to containers that set none (a LimitRange), so pods without
    /// requests are not rejected once a quota exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub defaults: Option<ContainerDefaults>,
    /// Home and shared volumes.
    #[serde(default)]
    pub volumes: Volumes,
    /// Images private to this project (in addition to the platform's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    /// Instance types the project may launch on (names from GpuQuotas or the Platform).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_types: Vec<String>,
    /// Model deployments.
    #[serde(default)]
    pub deployments: Deployments,
    /// Batch job settings.
    #[serde(default)]
    pub jobs: Jobs,
    /// MLflow tracking server used by the project.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mlflow: Option<Mlflow>,
    /// Cloud identity the project's workloads assume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud_identity: Option<CloudIdentity>,
    /// Network isolation of the project namespace.
    #[serde(default)]
    pub network: Network,
    /// Pod Security Standard level; the platform default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security: Option<PodSecurityLevel>,
    /// Clusters the project lives on; the platform's default clusters when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
}

/// A user or a group, and the role they hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Member {
    /// A user name as the identity provider reports it (exactly one of `user`, `group`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// A group name as the identity provider reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Role in the project.
    #[serde(default)]
    pub role: Role,
}

/// Project roles, bound to the built-in `admin`, `edit` and `view` ClusterRoles.
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
pub enum Role {
    Admin,
    #[default]
    Edit,
    View,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Edit => "edit",
            Role::View => "view",
        }
    }
}

/// Quota of a project namespace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProjectQuota {
    /// Total CPU requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Total memory requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Total persistent volume storage requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<Quantity>,
    /// Most pods at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pods: Option<u32>,
}

/// What one user may consume inside the project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PerUserQuota {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// GPUs of any pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<u32>,
}

/// Container defaults for the namespace's LimitRange.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerDefaults {
    /// Default CPU request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Quantity>,
    /// Default memory request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Quantity>,
    /// Default CPU limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<Quantity>,
    /// Default memory limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<Quantity>,
}

/// Volumes of a project.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Volumes {
    /// Each user's home volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<HomeVolume>,
    /// A volume shared by the whole project (ReadWriteMany).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<SharedVolume>,
}

/// Per-user home volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HomeVolume {
    pub capacity: Quantity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

/// The project's shared ReadWriteMany volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SharedVolume {
    pub capacity: Quantity,
    /// A class that supports ReadWriteMany (NFS, EFS, Filestore, Azure Files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Where workloads mount it.
    #[serde(default = "default_shared_mount")]
    pub mount_path: String,
    /// Link the shared volume into each user's home directory.
    #[serde(default)]
    pub home_symlink: bool,
    /// Only workloads launched for this project may mount it.
    #[serde(default)]
    pub launch_group_only: bool,
}

fn default_shared_mount() -> String {
    "/project".to_owned()
}

/// Model deployment settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Deployments {
    /// Whether the project may serve models.
    #[serde(default = "super::common::yes")]
    pub enabled: bool,
    /// Most `ModelRollout`s the project may have.
    #[serde(default = "default_max_deployments")]
    pub max: u32,
}

fn default_max_deployments() -> u32 {
    10
}

impl Default for Deployments {
    fn default() -> Self {
        Deployments {
            enabled: true,
            max: default_max_deployments(),
        }
    }
}

/// Batch job settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Jobs {
    /// Longest a job may run before it is stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_deadline_seconds: Option<u64>,
    /// How long finished jobs are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_seconds_after_finished: Option<u64>,
}

/// MLflow tracking settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mlflow {
    /// `MLFLOW_TRACKING_URI` given to workloads.
    pub tracking_uri: String,
    /// Where artifacts are stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_uri: Option<String>,
    /// Link to the MLflow UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui_url: Option<String>,
}

/// Cloud identity of the project's workloads.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CloudIdentity {
    /// AWS IAM role assumed through IRSA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws: Option<AwsIdentity>,
    /// GCP service account used through workload identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpIdentity>,
    /// Azure managed identity used through workload identity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureIdentity>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AwsIdentity {
    /// `arn:aws:iam::<account>:role/<name>`.
    #[schemars(extend("pattern" = r"^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]+$"))]
    pub role_arn: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcpIdentity {
    /// `<name>@<project>.iam.gserviceaccount.com`.
    #[schemars(extend("pattern" = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]@[a-z][a-z0-9-]{4,28}[a-z0-9]\.iam\.gserviceaccount\.com$"))]
    pub service_account: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AzureIdentity {
    /// Client ID (a UUID) of the managed identity.
    #[schemars(extend("pattern" = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"))]
    pub client_id: String,
    /// Tenant ID, when it differs from the cluster's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<String>,
}

/// Network isolation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Network {
    /// Refuse traffic from other namespaces; the platform default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub isolation: Option<bool>,
    /// Sources allowed in despite isolation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_from: Vec<AllowFrom>,
}

/// One allowed source of traffic (exactly one field).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct AllowFrom {
    /// Another project's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// A namespace outside plinth (an ingress controller, monitoring).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// An IP block in CIDR notation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cidr: Option<String>,
}
