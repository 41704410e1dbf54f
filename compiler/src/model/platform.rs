//! `Platform`: clusters, defaults, identity, output backends, policy sources.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{Image, InstanceType, PodSecurityLevel};

/// Settings of the whole platform. Exactly one per repository, conventionally `plinth.yaml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlatformSpec {
    /// Human-readable name of the organisation's platform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// The Kubernetes clusters the platform runs on.
    #[schemars(length(min = 1))]
    pub clusters: Vec<Cluster>,
    /// Defaults applied to every project unless it says otherwise.
    #[serde(default)]
    pub defaults: PlatformDefaults,
    /// How users and groups of the identity provider appear to Kubernetes RBAC.
    #[serde(default)]
    pub identity: Identity,
    /// Which kinds of output plinth may generate.
    #[serde(default)]
    pub backends: Backends,
    /// Serving infrastructure installed in the clusters (mesh, ingress, KServe modes) that
    /// model rollouts may rely on. plinth does not install it; a rollout that needs what is not
    /// declared here is refused.
    #[serde(default)]
    pub serving: Serving,
    /// Where policies come from.
    #[serde(default)]
    pub policies: PolicySettings,
    /// Instance types without GPUs, available to projects that list them. GPU instance types
    /// are declared in their `GpuQuota`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub instance_types: Vec<InstanceType>,
    /// Images every project may use.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub images: Vec<Image>,
    /// Destructive changes reviewers approved (see `plinth plan`). An entry approves only the
    /// change that adds it: one already present at the base of a plan approves nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
    /// The plinth agent, installed by `plinth build` in every cluster when enabled: it tracks
    /// the platform repository and applies each new commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<AgentSettings>,
}

/// How the plinth agent is installed and what it tracks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSettings {
    /// Whether `plinth build` emits the agent's install manifests (Namespace, ServiceAccount,
    /// ClusterRole and binding, Deployment, Service) for every cluster.
    #[serde(default)]
    pub enabled: bool,
    /// The agent's container image, with a tag or digest (`registry.example.org/plinth-agent:0.1.0`).
    #[schemars(length(min = 1))]
    pub image: String,
    /// Namespace the agent runs in.
    #[serde(default = "default_agent_namespace")]
    #[schemars(extend("pattern" = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub namespace: String,
    /// The platform repository's git remote (`https://…`, `ssh://…`, `git@host:path`, …).
    #[schemars(length(min = 1))]
    pub repo: String,
    /// The branch the agent applies.
    #[serde(default = "default_branch")]
    pub branch: String,
    /// The platform's directory inside the repository (empty: its root).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Time between syncs (a push webhook triggers one at once).
    #[serde(default = "default_interval")]
    pub interval: super::quantity::Duration,
    /// The forge that receives commit statuses (`plinth/<cluster>`) and sends webhooks.
    #[serde(default)]
    pub forge: Forge,
    /// The forge's API root (default `https://api.github.com`, `https://gitlab.com`; required
    /// for Gitea).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge_url: Option<String>,
    /// The repository on the forge, `owner/name` (default: from `repo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forge_repo: Option<String>,
    /// A Secret in the agent's namespace whose key `token` holds the forge (and git) token,
    /// and optional key `webhook-secret`; mounted as files, never emitted by plinth.
    #[serde(default = "default_token_secret")]
    pub token_secret: String,
    /// Delete objects that a commit no longer has.
    #[serde(default = "super::common::yes")]
    pub prune: bool,
    /// What the agent does about fields changed in the cluster by hand.
    #[serde(default)]
    pub drift: DriftMode,
}

fn default_agent_namespace() -> String {
    "plinth-system".to_owned()
}

fn default_branch() -> String {
    "main".to_owned()
}

fn default_interval() -> super::quantity::Duration {
    super::quantity::Duration("1m".to_owned())
}

fn default_token_secret() -> String {
    "plinth-agent-token".to_owned()
}

/// A git forge.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Forge {
    Github,
    Gitlab,
    Gitea,
    /// No forge: statuses go to the agent's log.
    #[default]
    None,
}

impl Forge {
    pub fn as_str(self) -> &'static str {
        match self {
            Forge::Github => "github",
            Forge::Gitlab => "gitlab",
            Forge::Gitea => "gitea",
            Forge::None => "none",
        }
    }
}

/// The agent's drift mode.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DriftMode {
    /// Report drift (a failure status) and leave it.
    #[default]
    Detect,
    /// Put the git values back.
    Heal,
}

/// An approved destructive change of one object (deleting it, lowering its quota, replacing
/// it). One-shot: it approves the change of the pull request (or commit) that adds it, and
/// nothing once it is present at the base.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Approval {
    /// `<Kind>/<name>` or `<Kind>/<namespace>/<name>`, e.g. `Namespace/sepsis` or
    /// `ResourceQuota/sepsis/quota`.
    #[schemars(extend("pattern" = r"^[A-Za-z]+/([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub object: String,
    /// Only in this cluster; every cluster when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    /// Why (a ticket, the reason of the change).
    #[schemars(length(min = 1))]
    pub reason: String,
    /// Who approved (a name, a team, a handle); shown with the approval. Require their review
    /// of the file with CODEOWNERS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approver: Option<String>,
}

/// A Kubernetes cluster of the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cluster {
    /// Cluster name (DNS-1123 label); output goes to `out/<name>/`.
    pub name: String,
    /// Kubernetes minor version, e.g. `"1.32"`.
    #[schemars(extend("pattern" = r"^1\.[0-9]{1,2}$"))]
    pub kubernetes_version: String,
    /// Cloud provider hosting the cluster; decides which cloud manifests are generated.
    pub provider: CloudProvider,
    /// Cloud region, e.g. `eu-west-1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Names of the `GpuQuota` pools whose nodes exist in this cluster.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gpu_pools: Vec<String>,
    /// Whether this is a production cluster (policies may hold production to stricter rules).
    #[serde(default)]
    pub production: bool,
    /// Storage class for this cluster's volumes; the platform default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// AWS: the cluster's OIDC issuer URL (EKS `identity.oidc.issuer`, e.g.
    /// `https://oidc.eks.eu-west-1.amazonaws.com/id/<id>`), registered as an IAM OIDC provider
    /// in the account of each project's role. plinth writes the IRSA trust policy of every
    /// project role with it; required when an S3 dataset is mounted with a project's role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = r"^https://[^\s/]+(/[^\s]*)?$"))]
    pub oidc_issuer: Option<String>,
    /// GCP: the cluster's workload identity pool (`<gcp-project>.svc.id.goog`); by default the
    /// pool of the project owning each project's Google service account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = r"^[a-z][a-z0-9-]{4,28}[a-z0-9]\.svc\.id\.goog$"))]
    pub workload_identity_pool: Option<String>,
}

/// Cloud provider of a cluster.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "camelCase")]
pub enum CloudProvider {
    Aws,
    Gcp,
    Azure,
    /// On-premises: no cloud manifests.
    OnPrem,
}

impl CloudProvider {
    pub fn as_str(self) -> &'static str {
        match self {
            CloudProvider::Aws => "aws",
            CloudProvider::Gcp => "gcp",
            CloudProvider::Azure => "azure",
            CloudProvider::OnPrem => "onPrem",
        }
    }
}

/// Platform-wide defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlatformDefaults {
    /// Storage class for volumes that do not name one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Pod Security Standard enforced on project namespaces.
    #[serde(default)]
    pub pod_security: PodSecurityLevel,
    /// Whether project namespaces refuse traffic from other namespaces by default.
    #[serde(default = "super::common::yes")]
    pub network_isolation: bool,
    /// Clusters a project lives on when it names none (all clusters when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
    /// The user id workloads run as (`runAsUser` of the pods plinth's templates render):
    /// object-store mounts show their files as owned by it, so a non-root pod can write.
    #[serde(default = "default_workload_id")]
    #[schemars(range(min = 1))]
    pub run_as_user: u32,
    /// The group id workloads run as (`runAsGroup`), likewise.
    #[serde(default = "default_workload_id")]
    #[schemars(range(min = 1))]
    pub run_as_group: u32,
}

fn default_workload_id() -> u32 {
    1000
}

impl Default for PlatformDefaults {
    fn default() -> Self {
        PlatformDefaults {
            storage_class: None,
            pod_security: PodSecurityLevel::default(),
            network_isolation: true,
            clusters: Vec::new(),
            run_as_user: default_workload_id(),
            run_as_group: default_workload_id(),
        }
    }
}

/// Identity provider mapping.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identity {
    /// Prefix the API server adds to group names from the identity provider (`oidc:`).
    #[serde(default)]
    pub group_prefix: String,
    /// Prefix the API server adds to user names.
    #[serde(default)]
    pub user_prefix: String,
}

/// Output backends; a disabled backend's objects are never generated.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backends {
    /// KServe InferenceServices for `runtime: kserve` rollouts.
    #[serde(default = "super::common::yes")]
    pub kserve: bool,
    /// Argo Rollouts for stepped `runtime: deployment` rollouts.
    #[serde(default = "super::common::yes")]
    pub argo_rollouts: bool,
    /// Kueue queues for GPU quotas.
    #[serde(default = "super::common::yes")]
    pub kueue: bool,
    /// Crossplane buckets and IAM for datasets and project identities.
    #[serde(default = "super::common::yes")]
    pub crossplane: bool,
}

impl Default for Backends {
    fn default() -> Self {
        Backends {
            kserve: true,
            argo_rollouts: true,
            kueue: true,
            crossplane: true,
        }
    }
}

/// Serving infrastructure the clusters have (see README, "ModelRollout").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Serving {
    /// The service mesh every cluster runs, with sidecars (or waypoints) for the model
    /// namespaces and their callers: needed to mirror traffic (`shadow`) and to split private
    /// canaries by weight (Istio VirtualServices).
    #[serde(default)]
    pub mesh: Mesh,
    /// The ingress-nginx controller public endpoints go through; without it, public endpoints
    /// are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<IngressSettings>,
    /// What the KServe installation supports.
    #[serde(default)]
    pub kserve: KserveSettings,
}

/// A service mesh.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum Mesh {
    /// No mesh: no mirroring, no weighted routing inside the cluster.
    #[default]
    None,
    /// Istio (`networking.istio.io/v1`, Istio 1.22 or later).
    Istio,
}

/// The ingress controller of public endpoints (ingress-nginx).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IngressSettings {
    /// The controller's IngressClass, set as `ingressClassName` on every Ingress.
    #[schemars(extend("pattern" = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"))]
    pub class_name: String,
    /// Namespace the controller runs in (admitted by public endpoints' NetworkPolicies).
    #[serde(default = "default_ingress_namespace")]
    #[schemars(extend("pattern" = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"), length(max = 63))]
    pub namespace: String,
    /// A cert-manager ClusterIssuer that issues certificates for endpoints without
    /// `endpoint.tlsSecret` (`cert-manager.io/cluster-issuer`, Secret `<name>-tls`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_issuer: Option<String>,
}

fn default_ingress_namespace() -> String {
    "ingress-nginx".to_owned()
}

/// What the clusters' KServe installation (0.16 or later) supports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KserveSettings {
    /// Knative Serving is installed, so InferenceServices may use the `Knative` deployment
    /// mode (needed for `scaleToZero`). Everything else runs in `Standard` mode.
    #[serde(default)]
    pub knative: bool,
    /// Knative's `kubernetes.podspec-nodeselector` and `kubernetes.podspec-tolerations`
    /// features are enabled (`config-features`); without them Knative refuses node selectors
    /// and tolerations, so GPU-pool and tainted instance types cannot scale to zero.
    #[serde(default)]
    pub knative_node_placement: bool,
    /// `ClusterStorageContainer/default` gives the injected `storage-initializer` a
    /// `restricted`-compliant security context (kserve/kserve#5373; KServe's own default has
    /// none). Without it, KServe pods in `restricted` namespaces are refused by admission, so
    /// plinth refuses them first.
    #[serde(default)]
    pub restricted_storage_initializer: bool,
}

/// Policy sources.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySettings {
    /// Directories of the platform repository holding Rego policies.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub directories: Vec<String>,
    /// Whether plinth's default policy library runs.
    #[serde(default = "super::common::yes")]
    pub default_library: bool,
    /// Values policies read as `data.plinth.parameters` (allowed registries, GPU caps, …).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub parameters: std::collections::BTreeMap<String, serde_json::Value>,
}

impl Default for PolicySettings {
    fn default() -> Self {
        PolicySettings {
            directories: Vec::new(),
            default_library: true,
            parameters: Default::default(),
        }
    }
}
