//! Cloud identity of a project's workloads beyond its ServiceAccount: what pods carry, and the
//! cloud side that lets the ServiceAccount assume the project's identity.
//!
//! The `workload` ServiceAccount (in [`super::project`]) is annotated with the project's
//! identity on clusters of its cloud. The rest:
//!
//! - **AWS (EKS IRSA).** The role in `cloudIdentity.aws.roleArn` can be assumed by the
//!   namespace's ServiceAccount only if its trust policy lets the cluster's OIDC provider do so
//!   (`sts:AssumeRoleWithWebIdentity`). With the `crossplane` backend plinth manages the role
//!   (`iam.aws.upbound.io/v1beta1` Role, external name the role name, path from the ARN,
//!   `deletionPolicy: Orphan`: deleting the project never deletes the role): its trust policy
//!   has one statement per AWS cluster the project lives on whose `oidcIssuer` is known —
//!   principal `arn:<partition>:iam::<account>:oidc-provider/<issuer without https://>`,
//!   conditions `<issuer>:sub` = `system:serviceaccount:<project>:workload` and `<issuer>:aud` =
//!   `sts.amazonaws.com`. One Role per project (the spec names one role for all clusters),
//!   emitted on the first AWS cluster by name like the other cloud objects. The trust policy is
//!   plinth's: statements added by hand are removed. The OIDC provider itself is the cluster's
//!   (`eksctl utils associate-iam-oidc-provider`), not plinth's.
//! - **GCP (GKE workload identity).** The Kubernetes ServiceAccount impersonates the Google
//!   service account only with `roles/iam.workloadIdentityUser` on it for member
//!   `serviceAccount:<pool>[<project>/workload]`: a `cloudplatform.gcp.upbound.io/v1beta2`
//!   ServiceAccountIAMMember per (project, workload identity pool of its GCP clusters), on the
//!   first GCP cluster by name. The pool is the cluster's `workloadIdentityPool`, else
//!   `<project of the service account>.svc.id.goog`.
//! - **Azure workload identity.** The webhook mutates only pods labelled
//!   `azure.workload.identity/use: "true"` (the label on a ServiceAccount does nothing):
//!   `rules::pod_labels` gives it to the pods plinth renders that run as the
//!   `workload` ServiceAccount (model servers, App templates' output). Role assignments are not
//!   generated (see [`super::dataset`]).
//! - **GKE Cloud Storage FUSE.** The driver's sidecar is injected only into pods annotated
//!   `gke-gcsfuse/volumes: "true"`: `rules::pod_annotations` gives it to pods plinth
//!   renders that mount a GCS dataset's claim.
//!
//! Pods plinth does not render (a user's own Job) must carry the label and annotation
//! themselves; the README says so.

use std::collections::BTreeMap;

use serde_json::json;

use super::context::{Ctx, Sink};
use super::rules::{WORKLOAD_SA, k8s_name, owns_cloud};
use crate::crd::{self, crossplane as xp};
use crate::model::platform::CloudProvider;
use crate::model::{Kind, ProjectSpec};
use crate::output::Origin;
use crate::specs::Object;

/// The role letting a Kubernetes ServiceAccount impersonate a Google service account.
pub const WORKLOAD_IDENTITY_USER: &str = "roles/iam.workloadIdentityUser";

/// The cloud side of a project's identity (Crossplane backend).
pub fn lower(cx: &Ctx<'_>, p: &Object<ProjectSpec>, sink: &mut Sink<'_>) {
    if !cx.platform.backends.crossplane {
        return;
    }
    let Some(id) = &p.spec.cloud_identity else {
        return;
    };
    let clusters: Vec<_> = Ctx::placement(cx.specs, &p.spec)
        .into_iter()
        .filter_map(|n| cx.platform.clusters.iter().find(|c| c.name == n))
        .collect();
    if let Some(aws) = &id.aws
        && owns_cloud(cx, CloudProvider::Aws)
    {
        let issuers: Vec<&str> = clusters
            .iter()
            .filter(|c| c.provider == CloudProvider::Aws)
            .filter_map(|c| c.oidc_issuer.as_deref())
            .collect();
        if !issuers.is_empty() {
            irsa_role(cx, p, &aws.role_arn, &issuers, sink);
        }
    }
    if let Some(gcp) = &id.gcp
        && owns_cloud(cx, CloudProvider::Gcp)
    {
        // `<name>@<project>.iam.gserviceaccount.com`.
        let Some(gcp_project) = gcp
            .service_account
            .split_once('@')
            .and_then(|(_, domain)| domain.split_once('.'))
            .map(|(proj, _)| proj)
        else {
            return;
        };
        let mut pools: Vec<String> = clusters
            .iter()
            .filter(|c| c.provider == CloudProvider::Gcp)
            .map(|c| {
                c.workload_identity_pool
                    .clone()
                    .unwrap_or_else(|| format!("{gcp_project}.svc.id.goog"))
            })
            .collect();
        pools.sort();
        pools.dedup();
        let origin = Origin::at(Kind::Project, p, "spec.cloudIdentity.gcp");
        for pool in pools {
            sink.push_value(
                &origin,
                crd::object(
                    cx.meta(
                        &format!("workload-identity.{}.{pool}", p.name()),
                        None,
                        Some(p.name()),
                        p,
                    ),
                    &xp::GcpServiceAccountIamMember {
                        deletion_policy: xp::DeletionPolicy::Delete,
                        for_provider: xp::GcpServiceAccountIamMemberParameters {
                            service_account_id: format!(
                                "projects/{gcp_project}/serviceAccounts/{}",
                                gcp.service_account
                            ),
                            role: WORKLOAD_IDENTITY_USER.to_owned(),
                            member: format!("serviceAccount:{pool}[{}/{WORKLOAD_SA}]", p.name()),
                        },
                    },
                ),
            );
        }
    }
}

/// The IRSA trust policy of a project's role: its `workload` ServiceAccount, through each
/// cluster's OIDC provider.
pub fn trust_policy(
    partition: &str,
    account: &str,
    namespace: &str,
    issuers: &[&str],
) -> serde_json::Value {
    let mut statements = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for issuer in issuers {
        let host = issuer.trim_start_matches("https://").trim_end_matches('/');
        if seen.contains(&host) {
            continue;
        }
        seen.push(host);
        statements.push(json!({
            "Effect": "Allow",
            "Principal": {"Federated": format!("arn:{partition}:iam::{account}:oidc-provider/{host}")},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {"StringEquals": {
                format!("{host}:sub"): format!("system:serviceaccount:{namespace}:{WORKLOAD_SA}"),
                format!("{host}:aud"): "sts.amazonaws.com",
            }},
        }));
    }
    json!({"Version": "2012-10-17", "Statement": statements})
}

fn irsa_role(
    cx: &Ctx<'_>,
    p: &Object<ProjectSpec>,
    role_arn: &str,
    issuers: &[&str],
    sink: &mut Sink<'_>,
) {
    // `arn:<partition>:iam::<account>:role/<path/>name`.
    let mut parts = role_arn.splitn(6, ':');
    let (Some(_), Some(partition), Some(_), Some(_), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return;
    };
    let Some(path_name) = resource.strip_prefix("role/") else {
        return;
    };
    let (path, name) = match path_name.rsplit_once('/') {
        Some((dir, name)) => (format!("/{dir}/"), name),
        None => ("/".to_owned(), path_name),
    };
    let document = trust_policy(partition, account, p.name(), issuers);
    let mut meta = cx.meta(&k8s_name(name), None, Some(p.name()), p);
    meta.annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(xp::EXTERNAL_NAME.to_owned(), name.to_owned());
    sink.push_value(
        &Origin::at(Kind::Project, p, "spec.cloudIdentity.aws"),
        crd::object(
            meta,
            &xp::IamRole {
                deletion_policy: xp::DeletionPolicy::Orphan,
                for_provider: xp::IamRoleParameters {
                    assume_role_policy: serde_json::to_string_pretty(&document).unwrap_or_default(),
                    description: Some(format!("plinth: workloads of project {} (IRSA)", p.name())),
                    path,
                    tags: BTreeMap::from([
                        ("managed-by".to_owned(), "plinth".to_owned()),
                        ("plinth-project".to_owned(), p.name().to_owned()),
                    ]),
                },
            },
        ),
    );
}
