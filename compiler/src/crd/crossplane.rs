//! Crossplane providers (AWS, GCP, Azure): buckets and IAM.
//!
//! The legacy cluster-scoped API groups of the Upbound / crossplane-contrib providers
//! (`*.upbound.io`), at their served, non-deprecated versions: `s3.aws.upbound.io/v1beta2`
//! (Bucket, BucketVersioning, BucketServerSideEncryptionConfiguration), `iam.aws.upbound.io/v1beta1`
//! (Policy, Role, RolePolicyAttachment), `storage.gcp.upbound.io/v1beta2` (Bucket, BucketIAMMember;
//! the storage version of Bucket), `cloudplatform.gcp.upbound.io/v1beta2` ServiceAccountIAMMember, `storage.azure.upbound.io/v1beta2` Account and `/v1beta1` Container.
//!
//! Every managed resource is `spec: {deletionPolicy, forProvider}` ([`Managed`]); only the
//! `forProvider` fields plinth sets are typed. `providerConfigRef` is left out: the CRDs default
//! it to `{name: default}`, the provider configuration a platform installs with Crossplane.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Serialize;

use super::spec::CrdSpec;

/// Annotation naming the cloud resource a managed resource stands for.
pub const EXTERNAL_NAME: &str = "crossplane.io/external-name";

/// What Crossplane does with the cloud resource when the managed resource is deleted. (The
/// spec language's `Retain` is Crossplane's `Orphan`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, JsonSchema)]
pub enum DeletionPolicy {
    Orphan,
    Delete,
}

/// The `spec` of a managed resource.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct Managed<P> {
    pub deletion_policy: DeletionPolicy,
    pub for_provider: P,
}

/// A reference to another managed resource by name (`*Ref` fields).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct Reference {
    pub name: String,
}

// ---------------------------------------------------------------------------------------------
// AWS

/// `s3.aws.upbound.io/v1beta2` Bucket; the bucket name is the external name.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct S3BucketParameters {
    pub region: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}
pub type S3Bucket = Managed<S3BucketParameters>;
impl CrdSpec for S3Bucket {
    const API_VERSION: &'static str = "s3.aws.upbound.io/v1beta2";
    const KIND: &'static str = "Bucket";
    const NAMESPACED: bool = false;
}

/// `s3.aws.upbound.io/v1beta2` BucketVersioning.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct S3BucketVersioningParameters {
    pub bucket: String,
    pub region: String,
    pub versioning_configuration: S3VersioningConfiguration,
}
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct S3VersioningConfiguration {
    #[schemars(extend("enum" = ["Enabled", "Suspended"]))]
    pub status: String,
}
pub type S3BucketVersioning = Managed<S3BucketVersioningParameters>;
impl CrdSpec for S3BucketVersioning {
    const API_VERSION: &'static str = "s3.aws.upbound.io/v1beta2";
    const KIND: &'static str = "BucketVersioning";
    const NAMESPACED: bool = false;
}

/// `s3.aws.upbound.io/v1beta2` BucketServerSideEncryptionConfiguration.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct S3BucketEncryptionParameters {
    pub bucket: String,
    pub region: String,
    /// Exactly one rule (the provider supports one).
    #[schemars(length(min = 1, max = 1))]
    pub rule: Vec<S3EncryptionRule>,
}
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct S3EncryptionRule {
    pub apply_server_side_encryption_by_default: S3EncryptionByDefault,
    /// S3 Bucket Keys (fewer KMS calls); set with `aws:kms`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bucket_key_enabled: Option<bool>,
}
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct S3EncryptionByDefault {
    #[schemars(extend("enum" = ["AES256", "aws:kms"]))]
    pub sse_algorithm: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kms_master_key_id: Option<String>,
}
pub type S3BucketEncryption = Managed<S3BucketEncryptionParameters>;
impl CrdSpec for S3BucketEncryption {
    const API_VERSION: &'static str = "s3.aws.upbound.io/v1beta2";
    const KIND: &'static str = "BucketServerSideEncryptionConfiguration";
    const NAMESPACED: bool = false;
}

/// `iam.aws.upbound.io/v1beta1` Policy; the policy name is the external name.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct IamPolicyParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The policy document, as JSON text.
    pub policy: String,
}
pub type IamPolicy = Managed<IamPolicyParameters>;
impl CrdSpec for IamPolicy {
    const API_VERSION: &'static str = "iam.aws.upbound.io/v1beta1";
    const KIND: &'static str = "Policy";
    const NAMESPACED: bool = false;
}

/// `iam.aws.upbound.io/v1beta1` Role: a project's IAM role, for its trust policy (IRSA); the
/// role name is the external name.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct IamRoleParameters {
    /// The trust policy, as JSON text.
    pub assume_role_policy: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The role's path (`/` or `/a/b/`).
    pub path: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}
pub type IamRole = Managed<IamRoleParameters>;
impl CrdSpec for IamRole {
    const API_VERSION: &'static str = "iam.aws.upbound.io/v1beta1";
    const KIND: &'static str = "Role";
    const NAMESPACED: bool = false;
}

/// `iam.aws.upbound.io/v1beta1` RolePolicyAttachment: a [`IamPolicy`] (by reference) attached
/// to a role that exists outside this object (by name).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct IamRolePolicyAttachmentParameters {
    pub policy_arn_ref: Reference,
    /// Role name (not ARN).
    pub role: String,
}
pub type IamRolePolicyAttachment = Managed<IamRolePolicyAttachmentParameters>;
impl CrdSpec for IamRolePolicyAttachment {
    const API_VERSION: &'static str = "iam.aws.upbound.io/v1beta1";
    const KIND: &'static str = "RolePolicyAttachment";
    const NAMESPACED: bool = false;
}

// ---------------------------------------------------------------------------------------------
// GCP

/// `storage.gcp.upbound.io/v1beta2` Bucket; the bucket name is the external name.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct GcsBucketParameters {
    pub location: String,
    pub versioning: GcsVersioning,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<GcsEncryption>,
    pub uniform_bucket_level_access: bool,
    #[schemars(extend("enum" = ["inherited", "enforced"]))]
    pub public_access_prevention: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct GcsVersioning {
    pub enabled: bool,
}
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct GcsEncryption {
    /// A Cloud KMS key: `projects/…/locations/…/keyRings/…/cryptoKeys/…`.
    pub default_kms_key_name: String,
}
pub type GcsBucket = Managed<GcsBucketParameters>;
impl CrdSpec for GcsBucket {
    const API_VERSION: &'static str = "storage.gcp.upbound.io/v1beta2";
    const KIND: &'static str = "Bucket";
    const NAMESPACED: bool = false;
}

/// `storage.gcp.upbound.io/v1beta2` BucketIAMMember: one role for one member on one bucket.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[schemars(deny_unknown_fields)]
pub struct GcsBucketIamMemberParameters {
    pub bucket: String,
    /// `roles/…`.
    pub role: String,
    /// `serviceAccount:<email>`.
    pub member: String,
}
pub type GcsBucketIamMember = Managed<GcsBucketIamMemberParameters>;
impl CrdSpec for GcsBucketIamMember {
    const API_VERSION: &'static str = "storage.gcp.upbound.io/v1beta2";
    const KIND: &'static str = "BucketIAMMember";
    const NAMESPACED: bool = false;
}

/// `cloudplatform.gcp.upbound.io/v1beta2` ServiceAccountIAMMember: one member of a role on a
/// Google service account (here `roles/iam.workloadIdentityUser` for a Kubernetes service
/// account of a workload identity pool).
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct GcpServiceAccountIamMemberParameters {
    /// `projects/<project>/serviceAccounts/<email>`.
    pub service_account_id: String,
    /// `roles/…`.
    pub role: String,
    /// `serviceAccount:<pool>[<namespace>/<name>]`.
    pub member: String,
}
pub type GcpServiceAccountIamMember = Managed<GcpServiceAccountIamMemberParameters>;
impl CrdSpec for GcpServiceAccountIamMember {
    const API_VERSION: &'static str = "cloudplatform.gcp.upbound.io/v1beta2";
    const KIND: &'static str = "ServiceAccountIAMMember";
    const NAMESPACED: bool = false;
}

// ---------------------------------------------------------------------------------------------
// Azure

/// `storage.azure.upbound.io/v1beta2` Account; the account name is the external name.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct AzureAccountParameters {
    pub resource_group_name: String,
    pub location: String,
    #[schemars(extend("enum" = ["Standard", "Premium"]))]
    pub account_tier: String,
    #[schemars(extend("enum" = ["LRS", "GRS", "RAGRS", "ZRS", "GZRS", "RAGZRS"]))]
    pub account_replication_type: String,
    pub allow_nested_items_to_be_public: bool,
    #[schemars(extend("enum" = ["TLS1_2"]))]
    pub min_tls_version: String,
    pub blob_properties: AzureBlobProperties,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
}
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct AzureBlobProperties {
    pub versioning_enabled: bool,
}
pub type AzureAccount = Managed<AzureAccountParameters>;
impl CrdSpec for AzureAccount {
    const API_VERSION: &'static str = "storage.azure.upbound.io/v1beta2";
    const KIND: &'static str = "Account";
    const NAMESPACED: bool = false;
}

/// `storage.azure.upbound.io/v1beta1` Container, in an [`AzureAccount`] given by reference.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(deny_unknown_fields)]
pub struct AzureContainerParameters {
    pub storage_account_id_ref: Reference,
    #[schemars(extend("enum" = ["private", "blob", "container"]))]
    pub container_access_type: String,
}
pub type AzureContainer = Managed<AzureContainerParameters>;
impl CrdSpec for AzureContainer {
    const API_VERSION: &'static str = "storage.azure.upbound.io/v1beta1";
    const KIND: &'static str = "Container";
    const NAMESPACED: bool = false;
}

/// The kinds of this module, for `crd::registry`.
pub(super) fn register() -> Vec<super::spec::Registered> {
    super::spec::register![
        S3Bucket,
        S3BucketVersioning,
        S3BucketEncryption,
        IamPolicy,
        IamRole,
        IamRolePolicyAttachment,
        GcsBucket,
        GcsBucketIamMember,
        GcpServiceAccountIamMember,
        AzureAccount,
        AzureContainer,
    ]
}
