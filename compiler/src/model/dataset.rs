//! `Dataset`: versioned data, where it lives, and who may read or write it.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::quantity::{Duration, Quantity};

/// Versioned data shared with projects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatasetSpec {
    /// Human-readable name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// What the data is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Where the data lives (exactly one source).
    pub source: DatasetSource,
    /// The immutable revision consumers see: an object version or snapshot id for storage
    /// sources. For `git`, `lakefs` and `dvc` the source's own `ref`/`rev` is the version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Accept a version that can move (a branch, `latest`, or none at all).
    #[serde(default)]
    pub allow_floating_version: bool,
    /// How sensitive the data is; policies key on it.
    #[serde(default)]
    pub sensitivity: Sensitivity,
    /// Approximate size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<Quantity>,
    /// How long the data must be kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention: Option<Duration>,
    /// Projects that may use the data, and how.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub access: Vec<Access>,
    /// Readable (never writable) by every project.
    #[serde(default)]
    pub global: bool,
    /// How consumers mount it.
    #[serde(default)]
    pub mount: Mount,
    /// Cloud resources plinth creates for the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision: Option<Provision>,
}

impl DatasetSpec {
    /// The version consumers are pinned to, from wherever this source keeps it.
    pub fn pinned_version(&self) -> Option<&str> {
        let s = &self.source;
        if let Some(g) = &s.git {
            return Some(&g.git_ref);
        }
        if let Some(l) = &s.lakefs {
            return Some(&l.lakefs_ref);
        }
        if let Some(d) = &s.dvc {
            return Some(&d.rev);
        }
        self.version.as_deref()
    }
}

/// Where a dataset lives. Exactly one field.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
pub struct DatasetSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub s3: Option<S3Source>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcs: Option<GcsSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure_blob: Option<AzureBlobSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nfs: Option<NfsSource>,
    /// A volume provisioned by a storage class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pv: Option<PvSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<HostPathSource>,
    /// A git repository synced into pods by git-sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitSource>,
    /// Plain values given to pods as environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<EnvSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lakefs: Option<LakefsSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dvc: Option<DvcSource>,
}

/// The kind of a dataset's source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum SourceKind {
    S3,
    Gcs,
    AzureBlob,
    Nfs,
    Pv,
    HostPath,
    Git,
    Env,
    Lakefs,
    Dvc,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::S3 => "s3",
            SourceKind::Gcs => "gcs",
            SourceKind::AzureBlob => "azureBlob",
            SourceKind::Nfs => "nfs",
            SourceKind::Pv => "pv",
            SourceKind::HostPath => "hostPath",
            SourceKind::Git => "git",
            SourceKind::Env => "env",
            SourceKind::Lakefs => "lakefs",
            SourceKind::Dvc => "dvc",
        }
    }
    /// The cloud whose clusters can mount an object store: the CSI driver exists only there
    /// (Mountpoint for Amazon S3 on EKS, Cloud Storage FUSE on GKE, Azure Blob on AKS).
    /// `None` for sources any cluster mounts (or none does).
    pub fn mount_cloud(self) -> Option<super::platform::CloudProvider> {
        use super::platform::CloudProvider;
        match self {
            SourceKind::S3 => Some(CloudProvider::Aws),
            SourceKind::Gcs => Some(CloudProvider::Gcp),
            SourceKind::AzureBlob => Some(CloudProvider::Azure),
            _ => None,
        }
    }
    /// Object stores, which plinth can provision buckets for.
    pub fn is_bucket(self) -> bool {
        matches!(
            self,
            SourceKind::S3 | SourceKind::Gcs | SourceKind::AzureBlob
        )
    }
}

impl DatasetSource {
    /// The kind of the (single) source given. Schema validation guarantees exactly one.
    pub fn kind(&self) -> Option<SourceKind> {
        let kinds = [
            (self.s3.is_some(), SourceKind::S3),
            (self.gcs.is_some(), SourceKind::Gcs),
            (self.azure_blob.is_some(), SourceKind::AzureBlob),
            (self.nfs.is_some(), SourceKind::Nfs),
            (self.pv.is_some(), SourceKind::Pv),
            (self.host_path.is_some(), SourceKind::HostPath),
            (self.git.is_some(), SourceKind::Git),
            (self.env.is_some(), SourceKind::Env),
            (self.lakefs.is_some(), SourceKind::Lakefs),
            (self.dvc.is_some(), SourceKind::Dvc),
        ];
        kinds.into_iter().find(|(set, _)| *set).map(|(_, k)| k)
    }
}

/// An S3 (or S3-compatible) bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct S3Source {
    #[schemars(extend("pattern" = r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$"))]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Endpoint of an S3-compatible store (MinIO, Ceph); AWS when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

/// A Google Cloud Storage bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcsSource {
    #[schemars(extend("pattern" = r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$"))]
    pub bucket: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Bucket location, e.g. `EUROPE-WEST4`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// An Azure Blob Storage container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AzureBlobSource {
    #[schemars(extend("pattern" = r"^[a-z0-9]{3,24}$"))]
    pub storage_account: String,
    #[schemars(extend("pattern" = r"^[a-z0-9]([a-z0-9-]{1,61}[a-z0-9])?$"))]
    pub container: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    /// Resource group of the storage account (needed to provision it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group: Option<String>,
    /// Azure location, e.g. `westeurope`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
}

/// An NFS export.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NfsSource {
    pub server: String,
    #[schemars(extend("pattern" = r"^/"))]
    pub path: String,
}

/// A dynamically provisioned volume.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PvSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    pub size: Quantity,
}

/// A directory on every node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HostPathSource {
    #[schemars(extend("pattern" = r"^/"))]
    pub path: String,
}

/// A git repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GitSource {
    pub url: String,
    /// The commit to check out: a full 40-hex commit id pins it; a branch or tag floats.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// Secret holding credentials for git-sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<String>,
}

/// Environment variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvSource {
    /// Variable names (`[A-Za-z_][A-Za-z0-9_]*`) and values.
    #[schemars(extend("propertyNames" = {"pattern": "^[A-Za-z_][A-Za-z0-9_]*$"}))]
    pub variables: BTreeMap<String, String>,
}

/// A lakeFS repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LakefsSource {
    /// lakeFS S3 gateway endpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    pub repo: String,
    /// A commit id pins the data; a branch floats.
    #[serde(rename = "ref")]
    pub lakefs_ref: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
}

/// Data tracked by DVC in a git repository.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DvcSource {
    /// The git repository holding the `.dvc` files.
    pub repo: String,
    /// Path of the data inside the repository.
    pub path: String,
    /// Git revision: a full 40-hex commit id pins it.
    pub rev: String,
    /// Remote storage URL, when it differs from the repository's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
}

/// How sensitive data is.
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
pub enum Sensitivity {
    Public,
    #[default]
    Internal,
    Confidential,
    Pii,
}

impl Sensitivity {
    pub fn as_str(self) -> &'static str {
        match self {
            Sensitivity::Public => "public",
            Sensitivity::Internal => "internal",
            Sensitivity::Confidential => "confidential",
            Sensitivity::Pii => "pii",
        }
    }
}

/// A project's access to a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Access {
    pub project: String,
    #[serde(default)]
    pub mode: AccessMode,
    /// Clusters of the project on which the grant is mounted; every cluster the project lives
    /// on when empty. An object store mounts only on clusters of its cloud (`s3` on AWS, `gcs`
    /// on GCP, `azureBlob` on Azure), so a project living on clusters of several clouds names
    /// the ones of the dataset's here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clusters: Vec<String>,
}

/// Read-only or read-write.
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
#[serde(rename_all = "kebab-case")]
pub enum AccessMode {
    #[default]
    ReadOnly,
    ReadWrite,
}

impl AccessMode {
    pub fn as_str(self) -> &'static str {
        match self {
            AccessMode::ReadOnly => "read-only",
            AccessMode::ReadWrite => "read-write",
        }
    }
}

/// How consumers mount a dataset.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mount {
    /// Mount path in pods; `/datasets/<name>` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("pattern" = r"^/"))]
    pub path: Option<String>,
    /// Mount options passed to the volume driver.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_options: Vec<String>,
}

/// Cloud resources for a dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Provision {
    /// Create the bucket (Crossplane) rather than use an existing one.
    #[serde(default)]
    pub create_bucket: bool,
    /// Keep every object version.
    #[serde(default = "super::common::yes")]
    pub versioning: bool,
    /// Server-side encryption.
    #[serde(default)]
    pub encryption: Encryption,
    /// What happens to the bucket when the spec is removed.
    #[serde(default)]
    pub deletion_policy: DeletionPolicy,
}

/// Server-side encryption of a bucket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Encryption {
    #[serde(default = "super::common::yes")]
    pub enabled: bool,
    /// A customer-managed key (KMS ARN, Cloud KMS key name, Key Vault key id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key: Option<String>,
}

impl Default for Encryption {
    fn default() -> Self {
        Encryption {
            enabled: true,
            kms_key: None,
        }
    }
}

/// Crossplane deletion policy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum DeletionPolicy {
    #[default]
    Retain,
    Delete,
}

impl DeletionPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionPolicy::Retain => "Retain",
            DeletionPolicy::Delete => "Delete",
        }
    }
}
