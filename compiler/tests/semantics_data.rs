//! Dataset and identity semantics of built output: whether the volumes, pods and cloud objects
//! plinth emits would work in a real cluster, read with the rules of the upstream components —
//! not just whether they validate. Run on `examples/repo`, on variants of it, and on a small
//! three-cloud platform written here.
//!
//! Upstream facts these assertions rely on:
//! - a CSI driver exists only where it is installed: Mountpoint for Amazon S3 (`s3.csi.aws.com`)
//!   is an EKS add-on, Cloud Storage FUSE (`gcsfuse.csi.storage.gke.io`) a GKE add-on, Azure
//!   Blob (`blob.csi.azure.com`) an AKS add-on; a PV naming an absent driver never mounts;
//! - Mountpoint shows files as owned by the mounting user (root) and lets no other user in
//!   without `allow-other`; `uid=`/`gid=` change the owner; deleting and overwriting objects
//!   need `allow-delete` and `allow-overwrite`;
//! - GKE injects the Cloud Storage FUSE sidecar only into pods annotated
//!   `gke-gcsfuse/volumes: "true"`, and a Kubernetes ServiceAccount acts as a Google service
//!   account only with `roles/iam.workloadIdentityUser` on it for
//!   `serviceAccount:<pool>[<namespace>/<name>]`;
//! - the Azure workload identity webhook mutates pods labelled
//!   `azure.workload.identity/use: "true"` (the label on a ServiceAccount does nothing);
//! - EKS IRSA: STS lets a pod assume a role only if its trust policy allows
//!   `sts:AssumeRoleWithWebIdentity` from the cluster's OIDC provider for the pod's
//!   `system:serviceaccount:<namespace>:<name>` subject.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{build, build_errors, edit, example, of_kind};
use plinth::lower::Lowered;
use plinth::model::platform::CloudProvider;
use plinth::specs::Specs;
use serde_json::Value;

const CLOUDS_PLATFORM: &str = r#"
apiVersion: plinth.dev/v1alpha1
kind: Platform
metadata: {name: acme}
spec:
  clusters:
    - {name: aks, kubernetesVersion: "1.32", provider: azure, region: westeurope}
    - {name: eks, kubernetesVersion: "1.32", provider: aws, region: eu-west-1, oidcIssuer: "https://oidc.eks.eu-west-1.amazonaws.com/id/0A1B2C3D"}
    - {name: eks-us, kubernetesVersion: "1.32", provider: aws, region: us-east-1, oidcIssuer: "https://oidc.eks.us-east-1.amazonaws.com/id/9F8E7D6C/"}
    - {name: gke, kubernetesVersion: "1.32", provider: gcp, region: europe-west4, workloadIdentityPool: acme-gke.svc.id.goog}
    - {name: lab, kubernetesVersion: "1.32", provider: onPrem}
  defaults: {storageClass: standard, podSecurity: restricted, runAsUser: 2000, runAsGroup: 3000}
  instanceTypes:
    - {name: cpu-2, cpu: "2", memory: 8Gi}
"#;

const CLOUDS_PROJECTS: &str = r#"
apiVersion: plinth.dev/v1alpha1
kind: Project
metadata: {name: ml}
spec:
  owners: [ada@acme.example]
  cloudIdentity:
    aws: {roleArn: "arn:aws:iam::111122223333:role/teams/ml-workloads"}
    gcp: {serviceAccount: ml-workloads@acme-data.iam.gserviceaccount.com}
    azure: {clientId: 0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b}
---
apiVersion: plinth.dev/v1alpha1
kind: Project
metadata: {name: ops}
spec:
  owners: [bob@acme.example]
  clusters: [eks, lab]
"#;

const CLOUDS_DATASETS: &str = r#"
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: events}
spec:
  source: {s3: {bucket: acme-events, prefix: raw/, region: eu-west-1}}
  version: v1
  access:
    - {project: ml, mode: read-write, clusters: [eks, eks-us]}
    - {project: ops, clusters: [eks]}
---
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: images}
spec:
  source: {gcs: {bucket: acme-images, prefix: v3/}}
  version: "17"
  access: [{project: ml, clusters: [gke]}]
---
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: blobs}
spec:
  source: {azureBlob: {storageAccount: acmeblobs, container: train, resourceGroup: rg}}
  version: "1"
  access: [{project: ml, clusters: [aks]}]
---
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: reference}
spec:
  source: {s3: {bucket: acme-reference, region: eu-west-1}}
  version: "2026.1"
  sensitivity: public
  global: true
"#;

const CLOUDS_APP: &str = r#"
apiVersion: plinth.dev/v1alpha1
kind: App
metadata: {name: worker}
spec:
  project: ml
  template: worker
---
apiVersion: plinth.dev/v1alpha1
kind: App
metadata: {name: own-sa}
spec:
  project: ml
  template: worker
  values: {serviceAccount: default}
  clusters: [aks]
"#;

const CLOUDS_TEMPLATE: &str = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ app.name }}
spec:
  replicas: 1
  selector:
    matchLabels: {app: {{ app.name }}}
  template:
    metadata:
      labels: {app: {{ app.name }}}
    spec:
      serviceAccountName: {{ values.serviceAccount | default(project.serviceAccount) }}
      securityContext: {runAsNonRoot: true, runAsUser: 2000, runAsGroup: 3000}
      containers:
        - name: main
          image: registry.acme.example/worker:1.0
          resources: {requests: {cpu: "1", memory: 1Gi}, limits: {cpu: "1", memory: 1Gi}}
          volumeMounts:
            - {name: scratch, mountPath: /scratch}
{% for d in project.datasets if d.type == "volume" %}
            - {name: {{ d.name }}, mountPath: {{ d.mountPath }}, readOnly: {{ d.readOnly | tojson }}}
{% endfor %}
      volumes:
        - {name: scratch, emptyDir: {}}
{% for d in project.datasets if d.type == "volume" %}
        - name: {{ d.name }}
          persistentVolumeClaim: {claimName: {{ d.claim }}, readOnly: {{ d.readOnly | tojson }}}
{% endfor %}
"#;

const CLOUDS_ROLLOUT: &str = r#"
apiVersion: plinth.dev/v1alpha1
kind: ModelRollout
metadata: {name: scorer}
spec:
  project: ml
  runtime: deployment
  model: {format: onnx, image: "registry.acme.example/serving/onnx:1.19", port: 8000, storageUri: "s3://acme-models/scorer/1"}
  instanceType: cpu-2
  replicas: 1
"#;

/// A platform on three clouds and a lab, one project on all of them.
fn clouds() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("plinth.yaml".to_owned(), CLOUDS_PLATFORM.to_owned()),
        ("projects.yaml".to_owned(), CLOUDS_PROJECTS.to_owned()),
        ("datasets.yaml".to_owned(), CLOUDS_DATASETS.to_owned()),
        ("apps.yaml".to_owned(), CLOUDS_APP.to_owned()),
        ("models.yaml".to_owned(), CLOUDS_ROLLOUT.to_owned()),
        (
            "templates/worker.yaml.j2".to_owned(),
            CLOUDS_TEMPLATE.to_owned(),
        ),
    ])
}

fn provider(specs: &Specs, cluster: &str) -> CloudProvider {
    specs
        .platform
        .as_ref()
        .unwrap()
        .spec
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .unwrap()
        .provider
}

fn every_cluster(l: &Lowered) -> Vec<String> {
    l.clusters.keys().cloned().collect()
}

fn s<'a>(v: &'a Value, ptr: &str) -> &'a str {
    v.pointer(ptr).and_then(Value::as_str).unwrap_or_default()
}

/// The cloud whose clusters have a CSI driver.
fn driver_cloud(driver: &str) -> Option<CloudProvider> {
    match driver {
        "s3.csi.aws.com" => Some(CloudProvider::Aws),
        "gcsfuse.csi.storage.gke.io" => Some(CloudProvider::Gcp),
        "blob.csi.azure.com" => Some(CloudProvider::Azure),
        _ => None,
    }
}

/// Every pod template of a cluster: (what, namespace, pod metadata, pod spec).
fn pods(l: &Lowered, cluster: &str) -> Vec<(String, String, Value, Value)> {
    let mut out = Vec::new();
    for m in &l.clusters[cluster].manifests {
        let o = &m.object;
        let (meta, spec) = match m.key.kind.as_str() {
            "Pod" => ("/metadata", "/spec"),
            "Deployment" | "StatefulSet" | "Job" | "Rollout" => {
                ("/spec/template/metadata", "/spec/template/spec")
            }
            "CronJob" => (
                "/spec/jobTemplate/spec/template/metadata",
                "/spec/jobTemplate/spec/template/spec",
            ),
            "InferenceService" => ("/spec/predictor", "/spec/predictor"),
            _ => continue,
        };
        out.push((
            m.key.to_string(),
            m.key.namespace.clone().unwrap_or_default(),
            o.pointer(meta).cloned().unwrap_or(Value::Null),
            o.pointer(spec).cloned().unwrap_or(Value::Null),
        ));
    }
    out
}

fn claims(pod_spec: &Value) -> Vec<String> {
    pod_spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.pointer("/persistentVolumeClaim/claimName")?.as_str())
        .map(str::to_owned)
        .collect()
}

/// The PV bound to a claim of a namespace, if plinth emitted one.
fn bound_pv<'a>(l: &'a Lowered, cluster: &str, ns: &str, claim: &str) -> Option<&'a Value> {
    of_kind(l, cluster, "PersistentVolume")
        .into_iter()
        .find(|pv| s(pv, "/spec/claimRef/namespace") == ns && s(pv, "/spec/claimRef/name") == claim)
}

// ---------------------------------------------------------------------------------------------
// Finding 15: volumes only where their driver exists

#[test]
fn no_csi_volume_of_a_driver_foreign_to_the_cluster() {
    let mut seen = 0;
    for files in [example(), clouds()] {
        let b = build(&files);
        for cluster in every_cluster(&b.lowered) {
            let cloud = provider(&b.specs, &cluster);
            for pv in of_kind(&b.lowered, &cluster, "PersistentVolume") {
                let driver = s(pv, "/spec/csi/driver");
                if driver.is_empty() {
                    continue;
                }
                seen += 1;
                assert_eq!(
                    driver_cloud(driver),
                    Some(cloud),
                    "{cluster} ({cloud:?}) has a PV of driver {driver}: {}",
                    s(pv, "/metadata/name")
                );
            }
            // Nothing inert: every dataset claim a pod mounts exists on the cluster.
            let pvcs: Vec<(String, String)> =
                of_kind(&b.lowered, &cluster, "PersistentVolumeClaim")
                    .into_iter()
                    .map(|c| {
                        (
                            s(c, "/metadata/namespace").to_owned(),
                            s(c, "/metadata/name").to_owned(),
                        )
                    })
                    .collect();
            for (what, ns, _, spec) in pods(&b.lowered, &cluster) {
                for claim in claims(&spec) {
                    assert!(
                        pvcs.contains(&(ns.clone(), claim.clone())),
                        "{cluster}: {what} mounts claim {claim}, which is not there"
                    );
                }
            }
        }
    }
    assert!(
        seen >= 8,
        "only {seen} CSI volumes: the test would be vacuous"
    );
}

#[test]
fn global_object_stores_skip_foreign_clusters_with_a_warning() {
    let b = build(&clouds());
    // `reference` (S3, global) reaches `ml` and `ops` on the AWS clusters only.
    let mut where_: Vec<String> = Vec::new();
    for cluster in every_cluster(&b.lowered) {
        for pvc in of_kind(&b.lowered, &cluster, "PersistentVolumeClaim") {
            if s(pvc, "/metadata/name") == "dataset-reference" {
                where_.push(format!("{cluster}/{}", s(pvc, "/metadata/namespace")));
            }
        }
    }
    where_.sort();
    assert_eq!(where_, ["eks-us/ml", "eks/ml", "eks/ops"]);
    let w: Vec<_> = b
        .diagnostics
        .iter()
        .filter(|d| d.code.id() == "W015")
        .collect();
    assert_eq!(w.len(), 1, "{w:#?}");
    assert_eq!(
        w[0].primary.as_ref().unwrap().field.as_deref(),
        Some("spec.global")
    );
    for skipped in ["ml on aks", "ml on gke", "ml on lab", "ops on lab"] {
        assert!(w[0].message.contains(skipped), "{}", w[0].message);
    }
}

#[test]
fn a_grant_on_a_cluster_of_another_cloud_is_refused_at_the_grant() {
    // The example's GCS dataset, without the grant's `clusters`: radiology also lives on the
    // AWS cluster.
    let mut files = example();
    edit(
        &mut files,
        "datasets/chest-xray.yaml",
        "      clusters: [research-b]\n",
        "",
    );
    let errors = build_errors(&files);
    let e = errors.iter().find(|d| d.code.id() == "E160").expect("E160");
    let at = e.primary.as_ref().unwrap();
    assert_eq!(&*at.span.file, "datasets/chest-xray.yaml");
    assert_eq!(at.field.as_deref(), Some("spec.access[0]"));
    assert!(e.message.contains("`prod-a`"), "{}", e.message);
    assert!(
        e.hint
            .as_deref()
            .unwrap()
            .contains("clusters: [research-b]"),
        "{:?}",
        e.hint
    );
    // Naming the cluster explicitly points at the list entry.
    let mut files = clouds();
    edit(
        &mut files,
        "datasets.yaml",
        "clusters: [gke]}]",
        "clusters: [gke, eks]}]",
    );
    let errors = build_errors(&files);
    let e = errors.iter().find(|d| d.code.id() == "E160").expect("E160");
    assert_eq!(
        e.primary.as_ref().unwrap().field.as_deref(),
        Some("spec.access[0].clusters[1]")
    );
    // A cluster the project does not live on.
    let mut files = clouds();
    edit(
        &mut files,
        "datasets.yaml",
        "{project: ops, clusters: [eks]}",
        "{project: ops, clusters: [eks-us]}",
    );
    let errors = build_errors(&files);
    assert!(
        errors.iter().any(|d| d.code.id() == "E162"
            && d.primary.as_ref().unwrap().field.as_deref() == Some("spec.access[1].clusters[0]")),
        "{errors:#?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Finding 15: GKE Cloud Storage FUSE

#[test]
fn gcs_fuse_pods_are_annotated_and_their_service_account_may_act_as_the_google_one() {
    let mut checked = 0;
    for files in [example(), clouds()] {
        let b = build(&files);
        // Every workloadIdentityUser binding, from every cluster's output.
        let mut bindings: Vec<(String, String)> = Vec::new();
        for cluster in every_cluster(&b.lowered) {
            for m in of_kind(&b.lowered, &cluster, "ServiceAccountIAMMember") {
                assert_eq!(s(m, "/apiVersion"), "cloudplatform.gcp.upbound.io/v1beta2");
                if s(m, "/spec/forProvider/role") == "roles/iam.workloadIdentityUser" {
                    bindings.push((
                        s(m, "/spec/forProvider/serviceAccountId").to_owned(),
                        s(m, "/spec/forProvider/member").to_owned(),
                    ));
                }
            }
        }
        for cluster in every_cluster(&b.lowered) {
            for (what, ns, meta, spec) in pods(&b.lowered, &cluster) {
                let gcs = claims(&spec).iter().any(|c| {
                    bound_pv(&b.lowered, &cluster, &ns, c)
                        .is_some_and(|pv| s(pv, "/spec/csi/driver") == "gcsfuse.csi.storage.gke.io")
                });
                if !gcs {
                    continue;
                }
                checked += 1;
                assert_eq!(
                    s(&meta, "/annotations/gke-gcsfuse~1volumes"),
                    "true",
                    "{cluster}: {what} mounts a GCS volume without the sidecar annotation"
                );
                // Its ServiceAccount impersonates a Google service account, bound to it.
                let ksa = s(&spec, "/serviceAccountName");
                let sa = of_kind(&b.lowered, &cluster, "ServiceAccount")
                    .into_iter()
                    .find(|x| s(x, "/metadata/namespace") == ns && s(x, "/metadata/name") == ksa)
                    .unwrap_or_else(|| panic!("{cluster}: no ServiceAccount {ns}/{ksa}"));
                let gsa = s(sa, "/metadata/annotations/iam.gke.io~1gcp-service-account");
                assert!(
                    !gsa.is_empty(),
                    "{cluster}: {ns}/{ksa} has no Google account"
                );
                let pool = b
                    .specs
                    .platform
                    .as_ref()
                    .unwrap()
                    .spec
                    .clusters
                    .iter()
                    .find(|c| c.name == cluster)
                    .and_then(|c| c.workload_identity_pool.clone())
                    .unwrap();
                let member = format!("serviceAccount:{pool}[{ns}/{ksa}]");
                assert!(
                    bindings
                        .iter()
                        .any(|(id, m)| id.ends_with(&format!("/serviceAccounts/{gsa}"))
                            && *m == member),
                    "{cluster}: no workloadIdentityUser binding of {gsa} for {member}: {bindings:?}"
                );
            }
        }
    }
    assert!(checked >= 2, "only {checked} GCS pods: vacuous");
}

#[test]
fn the_default_workload_identity_pool_is_the_service_accounts_project() {
    let mut files = clouds();
    edit(
        &mut files,
        "plinth.yaml",
        ", workloadIdentityPool: acme-gke.svc.id.goog",
        "",
    );
    let b = build(&files);
    let all: Vec<&Value> = every_cluster(&b.lowered)
        .iter()
        .flat_map(|c| of_kind(&b.lowered, c, "ServiceAccountIAMMember"))
        .collect();
    assert_eq!(all.len(), 1);
    assert_eq!(
        s(all[0], "/spec/forProvider/member"),
        "serviceAccount:acme-data.svc.id.goog[ml/workload]"
    );
    assert_eq!(
        s(all[0], "/spec/forProvider/serviceAccountId"),
        "projects/acme-data/serviceAccounts/ml-workloads@acme-data.iam.gserviceaccount.com"
    );
}

// ---------------------------------------------------------------------------------------------
// Finding 16: Mountpoint options

#[test]
fn s3_mounts_let_the_workload_user_in_and_write_only_when_granted() {
    let (mut ro, mut rw) = (0, 0);
    for files in [example(), clouds()] {
        let b = build(&files);
        let d = &b.specs.platform.as_ref().unwrap().spec.defaults;
        let (uid, gid) = (
            format!("uid={}", d.run_as_user),
            format!("gid={}", d.run_as_group),
        );
        for cluster in every_cluster(&b.lowered) {
            for pv in of_kind(&b.lowered, &cluster, "PersistentVolume") {
                if s(pv, "/spec/csi/driver") != "s3.csi.aws.com" {
                    continue;
                }
                let name = s(pv, "/metadata/name");
                let options: Vec<&str> = pv["spec"]["mountOptions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                for o in [uid.as_str(), gid.as_str(), "allow-other"] {
                    assert!(
                        options.contains(&o),
                        "{cluster}: {name} lacks {o}: {options:?}"
                    );
                }
                let writable =
                    s(pv, "/metadata/annotations/plinth.dev~1access-mode") == "read-write";
                assert_eq!(
                    writable,
                    s(pv, "/spec/accessModes/0") == "ReadWriteMany",
                    "{cluster}: {name}"
                );
                assert_eq!(
                    pv.pointer("/spec/csi/readOnly") == Some(&Value::Bool(true)),
                    !writable,
                    "{cluster}: {name}"
                );
                for o in ["allow-delete", "allow-overwrite"] {
                    assert_eq!(
                        options.contains(&o),
                        writable,
                        "{cluster}: {name}: {o} iff read-write: {options:?}"
                    );
                }
                if writable { rw += 1 } else { ro += 1 }
            }
        }
    }
    assert!(
        ro >= 2 && rw >= 2,
        "read-only {ro}, read-write {rw}: vacuous"
    );
}

#[test]
fn the_platform_workload_user_is_the_mount_owner() {
    let b = build(&clouds());
    let pv = of_kind(&b.lowered, "eks", "PersistentVolume")
        .into_iter()
        .find(|pv| s(pv, "/metadata/name") == "dataset-events.ml")
        .unwrap();
    let options = &pv["spec"]["mountOptions"];
    assert!(
        options
            .as_array()
            .unwrap()
            .contains(&Value::from("uid=2000"))
    );
    assert!(
        options
            .as_array()
            .unwrap()
            .contains(&Value::from("gid=3000"))
    );
    // The App template's pods run as that user, and their writes land on a writable mount.
    let worker = of_kind(&b.lowered, "eks", "Deployment")
        .into_iter()
        .find(|d| s(d, "/metadata/name") == "worker")
        .unwrap();
    assert_eq!(
        worker.pointer("/spec/template/spec/securityContext/runAsUser"),
        Some(&Value::from(2000))
    );
}

// ---------------------------------------------------------------------------------------------
// Finding 16: Azure workload identity

#[test]
fn azure_workload_identity_label_is_on_pods_not_service_accounts() {
    let b = build(&clouds());
    let label = "/labels/azure.workload.identity~1use";
    for cluster in every_cluster(&b.lowered) {
        for sa in of_kind(&b.lowered, &cluster, "ServiceAccount") {
            assert!(
                sa.pointer(&format!("/metadata{label}")).is_none(),
                "{cluster}: ServiceAccount {} carries the pod label",
                s(sa, "/metadata/name")
            );
        }
        let azure = provider(&b.specs, &cluster) == CloudProvider::Azure;
        let mut labelled = 0;
        for (what, _, meta, spec) in pods(&b.lowered, &cluster) {
            let runs_as_workload = s(&spec, "/serviceAccountName") == "workload";
            let has = s(&meta, label) == "true";
            assert_eq!(
                has,
                azure && runs_as_workload,
                "{cluster}: {what}: label iff an Azure pod running as `workload`"
            );
            labelled += usize::from(has);
        }
        if azure {
            // The model server and the App worker; not the App pod on its own account.
            assert_eq!(labelled, 2, "{cluster}");
        }
    }
    // The ServiceAccount still says which identity.
    let sa = of_kind(&b.lowered, "aks", "ServiceAccount")
        .into_iter()
        .find(|x| s(x, "/metadata/name") == "workload")
        .unwrap();
    assert_eq!(
        s(
            sa,
            "/metadata/annotations/azure.workload.identity~1client-id"
        ),
        "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
    );
}

// ---------------------------------------------------------------------------------------------
// Finding 16: IRSA trust policy

#[test]
fn the_project_role_trusts_each_clusters_oidc_provider_for_the_namespace_account() {
    let b = build(&clouds());
    let roles: Vec<(String, &Value)> = every_cluster(&b.lowered)
        .into_iter()
        .flat_map(|c| {
            of_kind(&b.lowered, &c, "Role")
                .into_iter()
                .filter(|r| s(r, "/apiVersion") == "iam.aws.upbound.io/v1beta1")
                .map(move |r| (c.clone(), r))
                .collect::<Vec<_>>()
        })
        .collect();
    // One role, managed once (two clusters' Crossplanes would fight over it).
    assert_eq!(roles.len(), 1, "{roles:?}");
    let (cluster, role) = &roles[0];
    assert_eq!(cluster, "eks");
    assert_eq!(
        s(role, "/metadata/annotations/crossplane.io~1external-name"),
        "ml-workloads"
    );
    assert_eq!(s(role, "/spec/forProvider/path"), "/teams/");
    assert_eq!(s(role, "/spec/deletionPolicy"), "Orphan");
    let policy: Value =
        serde_json::from_str(s(role, "/spec/forProvider/assumeRolePolicy")).unwrap();
    let statements = policy["Statement"].as_array().unwrap();
    assert_eq!(statements.len(), 2, "one per AWS cluster: {policy:#}");
    for (st, host) in statements.iter().zip([
        "oidc.eks.eu-west-1.amazonaws.com/id/0A1B2C3D",
        "oidc.eks.us-east-1.amazonaws.com/id/9F8E7D6C",
    ]) {
        assert_eq!(st["Effect"], "Allow");
        assert_eq!(st["Action"], "sts:AssumeRoleWithWebIdentity");
        assert_eq!(
            st["Principal"]["Federated"],
            format!("arn:aws:iam::111122223333:oidc-provider/{host}")
        );
        let cond = &st["Condition"]["StringEquals"];
        assert_eq!(
            cond[format!("{host}:sub")],
            "system:serviceaccount:ml:workload"
        );
        assert_eq!(cond[format!("{host}:aud")], "sts.amazonaws.com");
    }
    // The ServiceAccount the trust names is the one pods run as, annotated with that role.
    for c in ["eks", "eks-us"] {
        let sa = of_kind(&b.lowered, c, "ServiceAccount")
            .into_iter()
            .find(|x| s(x, "/metadata/namespace") == "ml" && s(x, "/metadata/name") == "workload")
            .unwrap();
        assert_eq!(
            s(sa, "/metadata/annotations/eks.amazonaws.com~1role-arn"),
            "arn:aws:iam::111122223333:role/teams/ml-workloads"
        );
    }
    // `ops` has no AWS identity: its mount uses the driver's credentials, and no role is needed.
    let ops = of_kind(&b.lowered, "eks", "PersistentVolume")
        .into_iter()
        .find(|pv| s(pv, "/metadata/name") == "dataset-events.ops")
        .unwrap();
    assert!(
        ops.pointer("/spec/csi/volumeAttributes/authenticationSource")
            .is_none()
    );
}

#[test]
fn the_example_roles_trust_prod_a() {
    let b = build(&example());
    let issuer = "oidc.eks.eu-west-1.amazonaws.com/id/8A3F0C3E9B1D4E5F6A7B8C9D0E1F2A3B";
    for (project, p) in &b.specs.projects {
        let Some(aws) = p.spec.cloud_identity.as_ref().and_then(|i| i.aws.as_ref()) else {
            continue;
        };
        let name = aws.role_arn.rsplit('/').next().unwrap();
        let role = of_kind(&b.lowered, "prod-a", "Role")
            .into_iter()
            .find(|r| s(r, "/metadata/annotations/crossplane.io~1external-name") == name)
            .unwrap_or_else(|| panic!("no Role for {project}"));
        let policy: Value =
            serde_json::from_str(s(role, "/spec/forProvider/assumeRolePolicy")).unwrap();
        assert_eq!(
            policy["Statement"][0]["Condition"]["StringEquals"][format!("{issuer}:sub")],
            format!("system:serviceaccount:{project}:workload")
        );
    }
}

#[test]
fn an_aws_cluster_without_its_oidc_issuer_is_refused_when_a_role_mounts_s3() {
    let mut files = example();
    edit(
        &mut files,
        "plinth.yaml",
        "      oidcIssuer: https://oidc.eks.eu-west-1.amazonaws.com/id/8A3F0C3E9B1D4E5F6A7B8C9D0E1F2A3B\n",
        "",
    );
    let errors = build_errors(&files);
    let e161: Vec<_> = errors.iter().filter(|d| d.code.id() == "E161").collect();
    assert!(!e161.is_empty(), "{errors:#?}");
    for e in e161 {
        let at = e.primary.as_ref().unwrap();
        assert!(at.span.file.starts_with("datasets/"), "{at:?}");
        assert!(at.field.as_deref().unwrap().starts_with("spec.access["));
        assert_eq!(&*e.related[0].span.file, "plinth.yaml");
    }
    // Without the Crossplane backend plinth writes no trust policy and needs no issuer.
    edit(
        &mut files,
        "plinth.yaml",
        "    crossplane: true",
        "    crossplane: false",
    );
    build(&files);
}
