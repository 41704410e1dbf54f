//! Dataset → per consuming project a PV/PVC pair, git-sync and env ConfigMaps; cloud buckets and
//! IAM grants through Crossplane.
//!
//! # Per consuming project (on every cluster the grant is mounted on)
//!
//! The consumers are the `access` grants, plus every project when the dataset is `global`
//! (read-only). A grant is mounted on the clusters its project lives on, or those of its
//! `clusters`; an object store only on clusters of its cloud, where its CSI driver exists
//! ([`SourceKind::mount_cloud`]): the check refuses a grant asking otherwise (E160) and warns
//! about what a global dataset leaves out (W015), and nothing is emitted there. Each gets, in its
//! namespace, an object named `dataset-<dataset>`:
//!
//! - object stores, NFS and host paths: a PersistentVolumeClaim statically bound (`volumeName`,
//!   `storageClassName: ""`) to a cluster-scoped PersistentVolume `dataset-<dataset>.<project>`
//!   (the `.` keeps the name unambiguous: dataset and project names are DNS labels, so no two
//!   pairs give the same name) whose `claimRef` reserves it for that claim. `ReadOnlyMany`, or
//!   `ReadWriteMany` for a read-write grant; read-only grants also set `readOnly` in the volume
//!   source (CSI, NFS), since an access mode alone does not make a mount read-only. The PV is
//!   `Retain`ed: deleting the claim never deletes data. Its capacity is the dataset's `size`
//!   (drivers ignore it); the claim requests a nominal [`NOMINAL`], so remote data does not
//!   count against the project's `requests.storage` quota. Drivers:
//!   - `s3`: Mountpoint for Amazon S3 (`s3.csi.aws.com`): `bucketName`, and
//!     `authenticationSource: pod` when the project has an AWS identity, so the mount uses the
//!     project's IRSA role (the IAM grants below; its trust policy in [`super::identity`])
//!     rather than the driver's; mount options `region`, `prefix` (with a trailing `/`),
//!     `endpoint-url` for S3-compatible stores, `uid=`/`gid=` of the platform's workload user
//!     and `allow-other` (Mountpoint shows files as root's and lets no other user in without
//!     them), and for read-write grants only `allow-delete` and `allow-overwrite` (without
//!     them Mountpoint refuses deletes and overwrites).
//!   - `gcs`: Cloud Storage FUSE (`gcsfuse.csi.storage.gke.io`), volume handle the bucket,
//!     mount options `only-dir=<prefix>` and `uid=`/`gid=` of the workload user; authentication
//!     is the pod's workload identity (the KSA→GSA binding in [`super::identity`]); pods need
//!     the `gke-gcsfuse/volumes` annotation (`rules::pod_annotations`).
//!   - `azureBlob`: `blob.csi.azure.com` with `storageAccount`, `containerName`,
//!     `resourceGroup`; with the project's Azure identity, `clientID` and
//!     `mountWithWorkloadIdentityToken` (the mount then needs only a Storage Blob Data role);
//!     the prefix is blobfuse2's `--subdirectory=`.
//!   - `nfs`: the in-tree `nfs` source. `hostPath`: type `Directory`; it has no `readOnly` and
//!     takes no mount options (kubelet refuses them), so `mount.mountOptions` are dropped and
//!     read-only rests on the consumer's `readOnly` volume mount.
//! - `pv`: a dynamically provisioned claim (the source's storage class, else the cluster's or
//!   the platform's), `ReadWriteMany`, of the dataset's size. Kubernetes cannot share one
//!   dynamically provisioned volume across namespaces, so each project gets its own volume; and
//!   a `ReadOnlyMany` claim of a fresh volume is empty forever (many provisioners refuse it
//!   too), so read-only grants get a `ReadWriteMany` claim as well and the read-only promise is
//!   the `plinth.dev/access-mode: read-only` annotation, for the workload to mount `readOnly`.
//! - `git`: a ConfigMap of git-sync v4 settings for a one-shot init container:
//!   `GITSYNC_REPO`, `GITSYNC_REF` (the pinned commit), `GITSYNC_DEPTH=1`,
//!   `GITSYNC_ONE_TIME=true`, `GITSYNC_ROOT=<parent>/.git-sync/<dataset>` and
//!   `GITSYNC_LINK=<mount path>`, where `<parent>` is the mount path's parent: git-sync's link
//!   must live in the same volume as its root, so consumers mount one `emptyDir` at `<parent>`
//!   (annotation `plinth.dev/git-sync-volume`) in the init container and the workload, and find
//!   the checkout at the mount path. `PLINTH_GIT_SECRET` names the credentials Secret (which
//!   must exist in the namespace).
//! - `env`: a ConfigMap holding exactly the variables (for `envFrom`).
//! - `lakefs`, `dvc`: not mountable without credentials plinth does not hold, so a ConfigMap of
//!   coordinates: `LAKEFS_ENDPOINT`, `LAKEFS_REPOSITORY`, `LAKEFS_REF`, `LAKEFS_PATH`,
//!   `LAKEFS_URI` (`lakefs://repo/ref/path`) and `LAKEFS_S3_URI` (`s3://repo/ref/path`, for S3
//!   clients pointed at the gateway); `DVC_REPO`, `DVC_PATH`, `DVC_REV`, `DVC_REMOTE`.
//!
//! Every one of these objects carries label `plinth.dev/project` and `plinth.dev/dataset`, and
//! annotations `plinth.dev/dataset`, `plinth.dev/dataset-version` (when the dataset has one),
//! `plinth.dev/sensitivity`, `plinth.dev/access-mode` and `plinth.dev/mount-path`; its
//! provenance is the grant (`spec.access[i]`, or `spec.global`).
//!
//! # Cloud (Crossplane)
//!
//! With the `crossplane` backend, for an object store of the cluster's provider (`s3` without
//! an `endpoint` on AWS, `gcs` on GCP, `azureBlob` on Azure), emitted on one cluster only: the
//! first of that provider by name. (Not "the first with a consumer": the owner would then move
//! when projects move, and the move deletes the managed resources on the old cluster, which with
//! `deletionPolicy: Delete` deletes the bucket. Clusters change far less often than grants.)
//!
//! - `provision.createBucket`: AWS Bucket (+ BucketVersioning `Enabled`/`Suspended`, + a
//!   BucketServerSideEncryptionConfiguration `aws:kms` with the key, else `AES256`, unless
//!   encryption is off); GCP Bucket (versioning, `defaultKmsKeyName`, location, uniform
//!   bucket-level access, public access prevention enforced); Azure Account (versioning,
//!   `LRS`: data stays in its region) and Container. `deletionPolicy` from the spec, `Retain`
//!   being Crossplane's `Orphan`. Names: the bucket (or `<account>.<container>`), made a
//!   DNS-1123 name if needed, with `crossplane.io/external-name` carrying the real name.
//!   Skipped when the region (AWS), location (GCP) or resource group and location (Azure) is
//!   known neither from the source nor from the cluster. Several datasets in one Azure account:
//!   the first by name creates the account, with its settings. An Azure `kmsKey` is not applied
//!   (a customer-managed key needs a user-assigned identity the specs do not name), and
//!   `retention` is not turned into bucket retention or object lock.
//! - Read or read-write grants to each consumer mounting it on a cluster of that provider, by its
//!   cloud identity, named `dataset-<dataset>.<project>` and deleted with the grant: AWS Policy
//!   (list on the bucket limited to the prefix; get/get-version on its objects, plus
//!   put/delete/abort-multipart-upload for writers; KMS decrypt, and generate-data-key for
//!   writers, on the `kmsKey` when it is a key ARN) attached to the project's role; GCP
//!   BucketIAMMember (`objectViewer` / `objectUser` on the whole bucket: list permissions cannot
//!   be limited to a prefix), emitted once per (bucket, role, member) by the first dataset by
//!   name. Azure role assignments are not generated: they need the identity's principal
//!   (object) id and the container's full resource id, neither of which the specs hold.

use std::collections::BTreeMap;
use std::ops::Bound;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ConfigMap, HostPathVolumeSource, NFSVolumeSource, ObjectReference,
    PersistentVolume, PersistentVolumeClaim, PersistentVolumeClaimSpec, PersistentVolumeSpec,
    VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::{Value, json};

use super::context::{Ctx, Sink};
use super::rules::{Grant, claim_name, grants, k8s_name, mount_path, mounted_on, owns_cloud};
use crate::crd::{self, crossplane as xp};
use crate::model::dataset::{
    AccessMode, AzureBlobSource, DeletionPolicy, GcsSource, Provision, S3Source, SourceKind,
};
use crate::model::platform::CloudProvider;
use crate::model::{DatasetSpec, Kind};
use crate::output::Origin;
use crate::specs::Object;

/// Label and annotation naming the dataset an object serves.
pub const DATASET_ANNOTATION: &str = "plinth.dev/dataset";
/// Annotation holding the version consumers are pinned to.
pub const VERSION_ANNOTATION: &str = "plinth.dev/dataset-version";
pub const SENSITIVITY_ANNOTATION: &str = "plinth.dev/sensitivity";
pub const ACCESS_MODE_ANNOTATION: &str = "plinth.dev/access-mode";
pub const MOUNT_PATH_ANNOTATION: &str = "plinth.dev/mount-path";
/// Where consumers of a git dataset mount the volume git-sync writes to.
pub const GIT_SYNC_VOLUME_ANNOTATION: &str = "plinth.dev/git-sync-volume";
/// What a statically bound claim requests (see the module docs).
pub const NOMINAL: &str = "1Mi";
const NOMINAL_NANOS: i128 = 1024 * 1024 * 1_000_000_000;

/// Cluster-scoped per-project objects (PV, IAM grants).
pub fn grant_name(dataset: &str, project: &str) -> String {
    format!("dataset-{dataset}.{project}")
}

pub fn lower(cx: &Ctx<'_>, d: &Object<DatasetSpec>, sink: &mut Sink<'_>) {
    let Some(kind) = d.spec.source.kind() else {
        return;
    };
    for g in grants(cx.specs, d) {
        if mounted_on(cx.specs, kind, &g, cx.cluster) {
            lower_grant(cx, d, kind, &g, sink);
        }
    }
    if cx.platform.backends.crossplane {
        cloud(cx, d, sink);
    }
}

// ---------------------------------------------------------------------------------------------
// Metadata

fn access_mode(mode: AccessMode) -> &'static str {
    match mode {
        AccessMode::ReadOnly => "ReadOnlyMany",
        AccessMode::ReadWrite => "ReadWriteMany",
    }
}

/// Metadata of an object serving a dataset: plinth's labels, the dataset labels and
/// annotations; per-project objects add the grant's access mode (and, when mounted, the path).
fn dataset_meta(
    cx: &Ctx<'_>,
    d: &Object<DatasetSpec>,
    name: &str,
    namespace: Option<&str>,
    grant: Option<&Grant<'_>>,
    mounted: bool,
) -> ObjectMeta {
    let mut meta = cx.meta(name, namespace, grant.map(|g| g.project), d);
    meta.labels
        .get_or_insert_with(BTreeMap::new)
        .insert(DATASET_ANNOTATION.to_owned(), d.name().to_owned());
    let ann = meta.annotations.get_or_insert_with(BTreeMap::new);
    ann.insert(DATASET_ANNOTATION.to_owned(), d.name().to_owned());
    ann.insert(
        SENSITIVITY_ANNOTATION.to_owned(),
        d.spec.sensitivity.as_str().to_owned(),
    );
    if let Some(g) = grant {
        ann.insert(
            ACCESS_MODE_ANNOTATION.to_owned(),
            g.mode.as_str().to_owned(),
        );
    }
    if mounted {
        if let Some(v) = d.spec.pinned_version() {
            ann.insert(VERSION_ANNOTATION.to_owned(), v.to_owned());
        }
        ann.insert(MOUNT_PATH_ANNOTATION.to_owned(), mount_path(d));
    }
    meta
}

/// Metadata of a cloud resource: the dataset, its sensitivity (policies key on it), and the
/// cloud name when given. Not the version: moving it would show every bucket and grant as
/// changed in a plan while nothing in the cloud changes.
fn cloud_meta(
    cx: &Ctx<'_>,
    d: &Object<DatasetSpec>,
    name: &str,
    grant: Option<&Grant<'_>>,
    external_name: Option<&str>,
) -> ObjectMeta {
    let mut meta = dataset_meta(cx, d, name, None, grant, false);
    if let Some(ext) = external_name {
        meta.annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(xp::EXTERNAL_NAME.to_owned(), ext.to_owned());
    }
    meta
}

// ---------------------------------------------------------------------------------------------
// Per consuming project

fn lower_grant(
    cx: &Ctx<'_>,
    d: &Object<DatasetSpec>,
    kind: SourceKind,
    g: &Grant<'_>,
    sink: &mut Sink<'_>,
) {
    let origin = Origin::at(Kind::Dataset, d, &g.field);
    let claim = claim_name(d.name());
    match kind {
        SourceKind::S3
        | SourceKind::Gcs
        | SourceKind::AzureBlob
        | SourceKind::Nfs
        | SourceKind::HostPath => static_volume(cx, d, g, &origin, sink),
        SourceKind::Pv => {
            let Some(pv) = &d.spec.source.pv else { return };
            sink.push(
                &origin,
                PersistentVolumeClaim {
                    metadata: dataset_meta(cx, d, &claim, Some(g.project), Some(g), true),
                    spec: Some(PersistentVolumeClaimSpec {
                        access_modes: Some(vec!["ReadWriteMany".to_owned()]),
                        storage_class_name: cx.storage_class(pv.storage_class.as_ref()),
                        resources: Some(VolumeResourceRequirements {
                            requests: Some(storage(pv.size.as_str())),
                            limits: None,
                        }),
                        ..PersistentVolumeClaimSpec::default()
                    }),
                    ..PersistentVolumeClaim::default()
                },
            );
        }
        SourceKind::Git | SourceKind::Env | SourceKind::Lakefs | SourceKind::Dvc => {
            let mut meta = dataset_meta(cx, d, &claim, Some(g.project), Some(g), true);
            let data = config_data(d, kind, &mut meta);
            sink.push(
                &origin,
                ConfigMap {
                    metadata: meta,
                    data: Some(data),
                    ..ConfigMap::default()
                },
            );
        }
    }
}

fn storage(q: &str) -> BTreeMap<String, KQuantity> {
    BTreeMap::from([("storage".to_owned(), KQuantity(q.to_owned()))])
}

/// An object-store prefix as a directory: no leading `/`, one trailing `/`; `None` for the
/// whole bucket.
fn dir_prefix(prefix: Option<&String>) -> Option<String> {
    let p = prefix?.trim_matches('/');
    (!p.is_empty()).then(|| format!("{p}/"))
}

fn static_volume(
    cx: &Ctx<'_>,
    d: &Object<DatasetSpec>,
    g: &Grant<'_>,
    origin: &Origin,
    sink: &mut Sink<'_>,
) {
    let pv_name = grant_name(d.name(), g.project);
    let claim = claim_name(d.name());
    let Some((mut spec, options)) = volume_source(cx, d, g, &pv_name) else {
        return;
    };
    let capacity = d
        .spec
        .size
        .as_ref()
        .filter(|s| s.nanos().is_some_and(|n| n >= NOMINAL_NANOS))
        .map_or(NOMINAL, |s| s.as_str());
    let mode = access_mode(g.mode).to_owned();
    spec.access_modes = Some(vec![mode.clone()]);
    spec.capacity = Some(storage(capacity));
    spec.claim_ref = Some(ObjectReference {
        namespace: Some(g.project.to_owned()),
        name: Some(claim.clone()),
        ..ObjectReference::default()
    });
    spec.mount_options = (!options.is_empty()).then_some(options);
    spec.persistent_volume_reclaim_policy = Some("Retain".to_owned());
    spec.storage_class_name = Some(String::new());
    sink.push(
        origin,
        PersistentVolume {
            metadata: dataset_meta(cx, d, &pv_name, None, Some(g), true),
            spec: Some(spec),
            ..PersistentVolume::default()
        },
    );
    sink.push(
        origin,
        PersistentVolumeClaim {
            metadata: dataset_meta(cx, d, &claim, Some(g.project), Some(g), true),
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec![mode]),
                storage_class_name: Some(String::new()),
                volume_name: Some(pv_name),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(storage(NOMINAL)),
                    limits: None,
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        },
    );
}

/// The volume source of a grant's PersistentVolume (CSI driver, NFS or host path) and its
/// mount options; `None` for a source that is not mounted this way.
fn volume_source(
    cx: &Ctx<'_>,
    d: &Object<DatasetSpec>,
    g: &Grant<'_>,
    pv_name: &str,
) -> Option<(PersistentVolumeSpec, Vec<String>)> {
    let src = &d.spec.source;
    let read_only = g.mode == AccessMode::ReadOnly;
    let identity = cx
        .specs
        .projects
        .get(g.project)
        .and_then(|p| p.spec.cloud_identity.as_ref());
    let mut spec = PersistentVolumeSpec::default();
    let mut options: Vec<String> = Vec::new();
    let mut user_options = true;
    let csi = |driver: &str, handle: &str, attributes: BTreeMap<String, String>| {
        CSIPersistentVolumeSource {
            driver: driver.to_owned(),
            volume_handle: handle.to_owned(),
            read_only: read_only.then_some(true),
            volume_attributes: (!attributes.is_empty()).then_some(attributes),
            ..CSIPersistentVolumeSource::default()
        }
    };
    if let Some(s3) = &src.s3 {
        let mut attrs = BTreeMap::from([("bucketName".to_owned(), s3.bucket.clone())]);
        if cx.cluster.provider == CloudProvider::Aws
            && s3.endpoint.is_none()
            && identity.is_some_and(|i| i.aws.is_some())
        {
            attrs.insert("authenticationSource".to_owned(), "pod".to_owned());
        }
        if let Some(r) = &s3.region {
            options.push(format!("region {r}"));
        }
        if let Some(p) = dir_prefix(s3.prefix.as_ref()) {
            options.push(format!("prefix {p}"));
        }
        if let Some(e) = &s3.endpoint {
            options.push(format!("endpoint-url {e}"));
        }
        // Mountpoint shows every file as owned by the mounting user (root) and refuses other
        // users without `allow-other`: plinth's pods run as the platform's workload user.
        let defaults = &cx.platform.defaults;
        options.push(format!("uid={}", defaults.run_as_user));
        options.push(format!("gid={}", defaults.run_as_group));
        options.push("allow-other".to_owned());
        if !read_only {
            // Without them Mountpoint refuses to delete or replace objects.
            options.push("allow-delete".to_owned());
            options.push("allow-overwrite".to_owned());
        }
        spec.csi = Some(csi("s3.csi.aws.com", pv_name, attrs));
    } else if let Some(gcs) = &src.gcs {
        if let Some(p) = dir_prefix(gcs.prefix.as_ref()) {
            options.push(format!("only-dir={}", p.trim_end_matches('/')));
        }
        // Files owned by the workload user, so a non-root pod can write.
        options.push(format!("uid={}", cx.platform.defaults.run_as_user));
        options.push(format!("gid={}", cx.platform.defaults.run_as_group));
        spec.csi = Some(csi(
            "gcsfuse.csi.storage.gke.io",
            &gcs.bucket,
            BTreeMap::new(),
        ));
    } else if let Some(az) = &src.azure_blob {
        let mut attrs = BTreeMap::from([
            ("storageAccount".to_owned(), az.storage_account.clone()),
            ("containerName".to_owned(), az.container.clone()),
        ]);
        if let Some(rg) = &az.resource_group {
            attrs.insert("resourceGroup".to_owned(), rg.clone());
        }
        if let Some(a) = identity.and_then(|i| i.azure.as_ref()) {
            attrs.insert("clientID".to_owned(), a.client_id.clone());
            attrs.insert(
                "mountWithWorkloadIdentityToken".to_owned(),
                "true".to_owned(),
            );
        }
        if let Some(p) = dir_prefix(az.prefix.as_ref()) {
            options.push(format!("--subdirectory={p}"));
        }
        spec.csi = Some(csi("blob.csi.azure.com", pv_name, attrs));
    } else if let Some(nfs) = &src.nfs {
        spec.nfs = Some(NFSVolumeSource {
            server: nfs.server.clone(),
            path: nfs.path.clone(),
            read_only: read_only.then_some(true),
        });
    } else if let Some(hp) = &src.host_path {
        spec.host_path = Some(HostPathVolumeSource {
            path: hp.path.clone(),
            type_: Some("Directory".to_owned()),
        });
        user_options = false;
    } else {
        return None;
    }
    if user_options {
        for o in &d.spec.mount.mount_options {
            if !options.contains(o) {
                options.push(o.clone());
            }
        }
    }
    Some((spec, options))
}

/// The ConfigMap data of a git, env, lakeFS or DVC dataset.
fn config_data(
    d: &Object<DatasetSpec>,
    kind: SourceKind,
    meta: &mut ObjectMeta,
) -> BTreeMap<String, String> {
    let src = &d.spec.source;
    let mut data = BTreeMap::new();
    fn put(data: &mut BTreeMap<String, String>, k: &str, v: &str) {
        data.insert(k.to_owned(), v.to_owned());
    }
    match kind {
        SourceKind::Git => {
            let Some(git) = &src.git else { return data };
            let path = mount_path(d);
            let parent = match path.trim_end_matches('/').rsplit_once('/') {
                Some((p, _)) if !p.is_empty() => p.to_owned(),
                _ => String::new(),
            };
            put(&mut data, "GITSYNC_REPO", &git.url);
            put(&mut data, "GITSYNC_REF", &git.git_ref);
            put(&mut data, "GITSYNC_DEPTH", "1");
            put(&mut data, "GITSYNC_ONE_TIME", "true");
            put(
                &mut data,
                "GITSYNC_ROOT",
                &format!("{parent}/.git-sync/{}", d.name()),
            );
            put(&mut data, "GITSYNC_LINK", &path);
            if let Some(s) = &git.secret_ref {
                put(&mut data, "PLINTH_GIT_SECRET", s);
            }
            meta.annotations.get_or_insert_with(BTreeMap::new).insert(
                GIT_SYNC_VOLUME_ANNOTATION.to_owned(),
                if parent.is_empty() {
                    "/".to_owned()
                } else {
                    parent
                },
            );
        }
        SourceKind::Env => {
            if let Some(env) = &src.env {
                for (k, v) in &env.variables {
                    put(&mut data, k, v);
                }
            }
        }
        SourceKind::Lakefs => {
            let Some(l) = &src.lakefs else { return data };
            let path = l.path.as_deref().unwrap_or("").trim_start_matches('/');
            if let Some(e) = &l.endpoint {
                put(&mut data, "LAKEFS_ENDPOINT", e);
            }
            put(&mut data, "LAKEFS_REPOSITORY", &l.repo);
            put(&mut data, "LAKEFS_REF", &l.lakefs_ref);
            if !path.is_empty() {
                put(&mut data, "LAKEFS_PATH", path);
            }
            put(
                &mut data,
                "LAKEFS_URI",
                &format!("lakefs://{}/{}/{path}", l.repo, l.lakefs_ref),
            );
            put(
                &mut data,
                "LAKEFS_S3_URI",
                &format!("s3://{}/{}/{path}", l.repo, l.lakefs_ref),
            );
        }
        SourceKind::Dvc => {
            let Some(v) = &src.dvc else { return data };
            put(&mut data, "DVC_REPO", &v.repo);
            put(&mut data, "DVC_PATH", &v.path);
            put(&mut data, "DVC_REV", &v.rev);
            if let Some(r) = &v.remote {
                put(&mut data, "DVC_REMOTE", r);
            }
        }
        _ => {}
    }
    data
}

// ---------------------------------------------------------------------------------------------
// Cloud

/// Whether a grant is mounted on at least one cluster of a provider (the project's cloud
/// identity is used there).
fn on_provider(cx: &Ctx<'_>, kind: SourceKind, g: &Grant<'_>, provider: CloudProvider) -> bool {
    cx.platform
        .clusters
        .iter()
        .any(|c| c.provider == provider && mounted_on(cx.specs, kind, g, c))
}

fn deletion(p: DeletionPolicy) -> xp::DeletionPolicy {
    match p {
        DeletionPolicy::Retain => xp::DeletionPolicy::Orphan,
        DeletionPolicy::Delete => xp::DeletionPolicy::Delete,
    }
}

/// Labels or tags for a bucket (keys and values valid on every provider).
fn cloud_labels(d: &Object<DatasetSpec>) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("managed-by".to_owned(), "plinth".to_owned()),
        ("plinth-dataset".to_owned(), d.name().to_owned()),
        (
            "plinth-sensitivity".to_owned(),
            d.spec.sensitivity.as_str().to_owned(),
        ),
    ])
}

fn cloud(cx: &Ctx<'_>, d: &Object<DatasetSpec>, sink: &mut Sink<'_>) {
    let src = &d.spec.source;
    let (provider, kind) = match (&src.s3, &src.gcs, &src.azure_blob) {
        (Some(s3), _, _) if s3.endpoint.is_none() => (CloudProvider::Aws, SourceKind::S3),
        (_, Some(_), _) => (CloudProvider::Gcp, SourceKind::Gcs),
        (_, _, Some(_)) => (CloudProvider::Azure, SourceKind::AzureBlob),
        _ => return,
    };
    if cx.cluster.provider != provider || !owns_cloud(cx, provider) {
        return;
    }
    let create = d.spec.provision.as_ref().filter(|p| p.create_bucket);
    let bucket_origin = if d.spec.provision.is_some() {
        Origin::at(Kind::Dataset, d, "spec.provision")
    } else {
        Origin::of(Kind::Dataset, d)
    };
    let consumers: Vec<Grant<'_>> = grants(cx.specs, d)
        .into_iter()
        .filter(|g| on_provider(cx, kind, g, provider))
        .collect();
    if let Some(s3) = &src.s3 {
        if let Some(p) = create {
            aws_bucket(cx, d, s3, p, &bucket_origin, sink);
        }
        for g in &consumers {
            aws_grant(cx, d, s3, g, sink);
        }
    } else if let Some(gcs) = &src.gcs {
        if let Some(p) = create {
            gcs_bucket(cx, d, gcs, p, &bucket_origin, sink);
        }
        for g in &consumers {
            gcs_grant(cx, d, gcs, g, sink);
        }
    } else if let Some(az) = &src.azure_blob
        && let Some(p) = create
    {
        azure_container(cx, d, az, p, &bucket_origin, sink);
    }
}

fn aws_bucket(
    cx: &Ctx<'_>,
    d: &Object<DatasetSpec>,
    s3: &S3Source,
    p: &Provision,
    origin: &Origin,
    sink: &mut Sink<'_>,
) {
    // The region is required; without one (neither the source's nor the cluster's) there is
    // nothing to create.
    let Some(region) = s3.region.as_ref().or(cx.cluster.region.as_ref()) else {
        return;
    };
    let name = k8s_name(&s3.bucket);
    let deletion_policy = deletion(p.deletion_policy);
    sink.push_value(
        origin,
        crd::object(
            cloud_meta(cx, d, &name, None, Some(&s3.bucket)),
            &xp::S3Bucket {
                deletion_policy,
                for_provider: xp::S3BucketParameters {
                    region: region.clone(),
                    tags: cloud_labels(d),
                },
            },
        ),
    );
    sink.push_value(
        origin,
        crd::object(
            cloud_meta(cx, d, &name, None, None),
            &xp::S3BucketVersioning {
                deletion_policy,
                for_provider: xp::S3BucketVersioningParameters {
                    bucket: s3.bucket.clone(),
                    region: region.clone(),
                    versioning_configuration: xp::S3VersioningConfiguration {
                        status: if p.versioning { "Enabled" } else { "Suspended" }.to_owned(),
                    },
                },
            },
        ),
    );
    if p.encryption.enabled {
        let kms = p.encryption.kms_key.clone();
        sink.push_value(
            origin,
            crd::object(
                cloud_meta(cx, d, &name, None, None),
                &xp::S3BucketEncryption {
                    deletion_policy,
                    for_provider: xp::S3BucketEncryptionParameters {
                        bucket: s3.bucket.clone(),
                        region: region.clone(),
                        rule: vec![xp::S3EncryptionRule {
                            bucket_key_enabled: kms.is_some().then_some(true),
                            apply_server_side_encryption_by_default: xp::S3EncryptionByDefault {
                                sse_algorithm: if kms.is_some() { "aws:kms" } else { "AES256" }
                                    .to_owned(),
                                kms_master_key_id: kms,
                            },
                        }],
                    },
                },
            ),
        );
    }
}

/// The IAM policy document granting a project its access to an S3 dataset.
pub fn s3_policy_document(
    partition: &str,
    bucket: &str,
    prefix: Option<&str>,
    mode: AccessMode,
    kms_key: Option<&str>,
) -> Value {
    let bucket_arn = format!("arn:{partition}:s3:::{bucket}");
    let objects = format!("{bucket_arn}/{}*", prefix.unwrap_or(""));
    let mut list = json!({
        "Sid": "ListDataset",
        "Effect": "Allow",
        "Action": ["s3:ListBucket"],
        "Resource": [bucket_arn],
    });
    if let Some(p) = prefix {
        list["Condition"] = json!({ "StringLike": { "s3:prefix": [format!("{p}*")] } });
    }
    let write = mode == AccessMode::ReadWrite;
    let mut actions = vec!["s3:GetObject", "s3:GetObjectVersion"];
    if write {
        actions.extend(["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]);
    }
    let mut statements = vec![
        list,
        json!({
            "Sid": if write { "ReadWriteDataset" } else { "ReadDataset" },
            "Effect": "Allow",
            "Action": actions,
            "Resource": [objects],
        }),
    ];
    if let Some(key) = kms_key {
        let mut kms = vec!["kms:Decrypt"];
        if write {
            kms.push("kms:GenerateDataKey");
        }
        statements.push(json!({
            "Sid": "UseDatasetKey",
            "Effect": "Allow",
            "Action": kms,
            "Resource": [key],
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

fn aws_grant(
    cx: &Ctx<'_>,
    d: &Object<DatasetSpec>,
    s3: &S3Source,
    g: &Grant<'_>,
    sink: &mut Sink<'_>,
) {
    let Some(role_arn) = cx
        .specs
        .projects
        .get(g.project)
        .and_then(|p| p.spec.cloud_identity.as_ref())
        .and_then(|i| i.aws.as_ref())
        .map(|a| a.role_arn.as_str())
    else {
        return;
    };
    // `arn:<partition>:iam::<account>:role/<path/>name`.
    let partition = role_arn
        .split(':')
        .nth(1)
        .filter(|p| !p.is_empty())
        .unwrap_or("aws");
    let role = role_arn.rsplit(['/', ':']).next().unwrap_or(role_arn);
    // Only a key ARN can name the key in a policy (not an alias or a bare id).
    let kms_key = d
        .spec
        .provision
        .as_ref()
        .filter(|p| p.encryption.enabled)
        .and_then(|p| p.encryption.kms_key.as_deref())
        .filter(|k| k.starts_with("arn:") && k.contains(":key/"));
    let prefix = dir_prefix(s3.prefix.as_ref());
    let document = s3_policy_document(partition, &s3.bucket, prefix.as_deref(), g.mode, kms_key);
    let origin = Origin::at(Kind::Dataset, d, &g.field);
    let name = grant_name(d.name(), g.project);
    sink.push_value(
        &origin,
        crd::object(
            cloud_meta(cx, d, &name, Some(g), None),
            &xp::IamPolicy {
                deletion_policy: xp::DeletionPolicy::Delete,
                for_provider: xp::IamPolicyParameters {
                    description: Some(format!(
                        "plinth: {} access of project {} to dataset {}",
                        g.mode.as_str(),
                        g.project,
                        d.name()
                    )),
                    policy: serde_json::to_string_pretty(&document).unwrap_or_default(),
                },
            },
        ),
    );
    sink.push_value(
        &origin,
        crd::object(
            cloud_meta(cx, d, &name, Some(g), None),
            &xp::IamRolePolicyAttachment {
                deletion_policy: xp::DeletionPolicy::Delete,
                for_provider: xp::IamRolePolicyAttachmentParameters {
                    policy_arn_ref: xp::Reference { name: name.clone() },
                    role: role.to_owned(),
                },
            },
        ),
    );
}

fn gcs_bucket(
    cx: &Ctx<'_>,
    d: &Object<DatasetSpec>,
    gcs: &GcsSource,
    p: &Provision,
    origin: &Origin,
    sink: &mut Sink<'_>,
) {
    let Some(location) = gcs
        .location
        .clone()
        .or_else(|| cx.cluster.region.as_ref().map(|r| r.to_ascii_uppercase()))
    else {
        return;
    };
    let encryption = p
        .encryption
        .kms_key
        .as_ref()
        .filter(|_| p.encryption.enabled)
        .map(|k| xp::GcsEncryption {
            default_kms_key_name: k.clone(),
        });
    sink.push_value(
        origin,
        crd::object(
            cloud_meta(cx, d, &k8s_name(&gcs.bucket), None, Some(&gcs.bucket)),
            &xp::GcsBucket {
                deletion_policy: deletion(p.deletion_policy),
                for_provider: xp::GcsBucketParameters {
                    location,
                    versioning: xp::GcsVersioning {
                        enabled: p.versioning,
                    },
                    encryption,
                    uniform_bucket_level_access: true,
                    public_access_prevention: "enforced".to_owned(),
                    labels: cloud_labels(d),
                },
            },
        ),
    );
}

fn gcs_role(mode: AccessMode) -> &'static str {
    match mode {
        AccessMode::ReadOnly => "roles/storage.objectViewer",
        AccessMode::ReadWrite => "roles/storage.objectUser",
    }
}

fn gcs_grant(
    cx: &Ctx<'_>,
    d: &Object<DatasetSpec>,
    gcs: &GcsSource,
    g: &Grant<'_>,
    sink: &mut Sink<'_>,
) {
    let Some(account) = cx
        .specs
        .projects
        .get(g.project)
        .and_then(|p| p.spec.cloud_identity.as_ref())
        .and_then(|i| i.gcp.as_ref())
        .map(|a| a.service_account.as_str())
    else {
        return;
    };
    // One binding per (bucket, role, member): two managed resources for the same binding would
    // fight, and deleting either would revoke both. The first dataset by name emits it.
    let taken = cx
        .specs
        .datasets
        .range::<str, _>((Bound::Unbounded, Bound::Excluded(d.name())))
        .any(|(_, e)| {
            e.spec
                .source
                .gcs
                .as_ref()
                .is_some_and(|o| o.bucket == gcs.bucket)
                && grants(cx.specs, e)
                    .iter()
                    .any(|o| o.project == g.project && o.mode == g.mode)
        });
    if taken {
        return;
    }
    sink.push_value(
        &Origin::at(Kind::Dataset, d, &g.field),
        crd::object(
            cloud_meta(cx, d, &grant_name(d.name(), g.project), Some(g), None),
            &xp::GcsBucketIamMember {
                deletion_policy: xp::DeletionPolicy::Delete,
                for_provider: xp::GcsBucketIamMemberParameters {
                    bucket: gcs.bucket.clone(),
                    role: gcs_role(g.mode).to_owned(),
                    member: format!("serviceAccount:{account}"),
                },
            },
        ),
    );
}

/// Where an Azure storage account can be created: its resource group and location.
fn azure_account_site<'a>(cx: &'a Ctx<'_>, az: &'a AzureBlobSource) -> Option<(&'a str, &'a str)> {
    Some((
        az.resource_group.as_deref()?,
        az.location.as_deref().or(cx.cluster.region.as_deref())?,
    ))
}

fn azure_container(
    cx: &Ctx<'_>,
    d: &Object<DatasetSpec>,
    az: &AzureBlobSource,
    p: &Provision,
    origin: &Origin,
    sink: &mut Sink<'_>,
) {
    // The container references the account, which plinth creates (versioning and encryption
    // are account settings); without a resource group and a location it cannot.
    let Some((resource_group, location)) = azure_account_site(cx, az) else {
        return;
    };
    let account = &az.storage_account;
    // Datasets sharing an account: the first by name creates it, with its settings.
    let sharing = cx.index.datasets_by_account.get(account.as_str());
    let first = sharing.into_iter().flatten().find(|e| {
        e.spec.provision.as_ref().is_some_and(|p| p.create_bucket)
            && e.spec
                .source
                .azure_blob
                .as_ref()
                .is_some_and(|o| azure_account_site(cx, o).is_some())
    });
    if first.is_some_and(|e| e.name() == d.name()) {
        sink.push_value(
            origin,
            crd::object(
                cloud_meta(cx, d, account, None, Some(account)),
                &xp::AzureAccount {
                    deletion_policy: deletion(p.deletion_policy),
                    for_provider: xp::AzureAccountParameters {
                        resource_group_name: resource_group.to_owned(),
                        location: location.to_owned(),
                        account_tier: "Standard".to_owned(),
                        account_replication_type: "LRS".to_owned(),
                        allow_nested_items_to_be_public: false,
                        min_tls_version: "TLS1_2".to_owned(),
                        blob_properties: xp::AzureBlobProperties {
                            versioning_enabled: p.versioning,
                        },
                        tags: cloud_labels(d),
                    },
                },
            ),
        );
    }
    sink.push_value(
        origin,
        crd::object(
            cloud_meta(
                cx,
                d,
                &format!("{account}.{}", az.container),
                None,
                Some(&az.container),
            ),
            &xp::AzureContainer {
                deletion_policy: deletion(p.deletion_policy),
                for_provider: xp::AzureContainerParameters {
                    storage_account_id_ref: xp::Reference {
                        name: account.clone(),
                    },
                    container_access_type: "private".to_owned(),
                },
            },
        ),
    );
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use crate::load::MemSource;
    use crate::lower::Lowered;

    const PLATFORM: &str = r#"
apiVersion: plinth.dev/v1alpha1
kind: Platform
metadata: {name: acme}
spec:
  clusters:
    - {name: aws-2, kubernetesVersion: "1.32", provider: aws, region: us-east-1, oidcIssuer: "https://oidc.eks.us-east-1.amazonaws.com/id/B2"}
    - {name: aws-1, kubernetesVersion: "1.32", provider: aws, region: eu-west-1, oidcIssuer: "https://oidc.eks.eu-west-1.amazonaws.com/id/A1"}
    - {name: gcp-1, kubernetesVersion: "1.32", provider: gcp, region: europe-west4}
    - {name: lab, kubernetesVersion: "1.32", provider: onPrem}
  defaults:
    storageClass: standard
"#;

    const PROJECTS: &str = r#"
apiVersion: plinth.dev/v1alpha1
kind: Project
metadata: {name: alpha}
spec:
  owners: [ada@acme.example]
  cloudIdentity:
    aws: {roleArn: "arn:aws:iam::111122223333:role/teams/alpha-workloads"}
    gcp: {serviceAccount: alpha-sa@acme-prod.iam.gserviceaccount.com}
---
apiVersion: plinth.dev/v1alpha1
kind: Project
metadata: {name: beta}
spec:
  owners: [bob@acme.example]
  clusters: [aws-2, gcp-1]
  cloudIdentity:
    aws: {roleArn: "arn:aws:iam::111122223333:role/beta"}
    gcp: {serviceAccount: beta-sa@acme-prod.iam.gserviceaccount.com}
---
apiVersion: plinth.dev/v1alpha1
kind: Project
metadata: {name: gamma}
spec:
  owners: [gil@acme.example]
  clusters: [lab]
"#;

    /// The real front end on an in-memory repository, then lowering and verification.
    fn build_with(platform: &str, datasets: &str) -> Lowered {
        let src = MemSource::new()
            .with("plinth.yaml", platform)
            .with("projects.yaml", PROJECTS)
            .with("datasets.yaml", datasets);
        let checked = crate::check_source(&src, &crate::Options::default()).expect("loads");
        assert!(
            !checked.diagnostics.has_errors(),
            "{:#?}",
            checked.diagnostics
        );
        let (lowered, diags) = crate::lower::lower(&checked.specs, &checked.snapshot);
        assert!(!diags.has_errors(), "{diags:#?}");
        let verified = crate::verify::verify(&lowered);
        assert!(!verified.has_errors(), "{verified:#?}");
        lowered
    }

    fn build(datasets: &str) -> Lowered {
        build_with(PLATFORM, datasets)
    }

    fn find<'a>(
        l: &'a Lowered,
        cluster: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<&'a Value> {
        l.clusters[cluster]
            .manifests
            .iter()
            .find(|m| {
                m.key.kind == kind && m.key.namespace.as_deref() == namespace && m.key.name == name
            })
            .map(|m| &*m.object)
    }

    fn get<'a>(
        l: &'a Lowered,
        cluster: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> &'a Value {
        find(l, cluster, kind, namespace, name).unwrap_or_else(|| {
            panic!(
                "no {kind} {namespace:?}/{name} in {cluster}: {:?}",
                keys(l, cluster, |_| true)
            )
        })
    }

    /// `Kind ns/name` of a cluster's objects matching a filter.
    fn keys(l: &Lowered, cluster: &str, keep: impl Fn(&Value) -> bool) -> Vec<String> {
        l.clusters[cluster]
            .manifests
            .iter()
            .filter(|m| keep(&m.object))
            .map(|m| m.key.to_string())
            .collect()
    }

    fn of_dataset(name: &str) -> impl Fn(&Value) -> bool + '_ {
        move |v: &Value| {
            v.pointer("/metadata/labels/plinth.dev~1dataset") == Some(&Value::from(name))
        }
    }

    fn s(v: &Value, pointer: &str) -> String {
        v.pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no string at {pointer} in {v:#}"))
            .to_owned()
    }

    const S3: &str = r#"
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: events}
spec:
  source: {s3: {bucket: acme-events, prefix: raw/2026, region: eu-west-1}}
  version: 3HL4kqtJlcpXroDTDmJ.rDSAGhRmZU8q
  sensitivity: pii
  size: 40Gi
  access:
    - {project: beta, clusters: [aws-2]}
    - {project: alpha, mode: read-write, clusters: [aws-1, aws-2]}
  mount: {mountOptions: [allow-other]}
"#;

    #[test]
    fn read_only_s3_grant_is_a_bound_pv_pvc_pair() {
        let l = build(S3);
        let pv = get(&l, "aws-2", "PersistentVolume", None, "dataset-events.beta");
        assert_eq!(s(pv, "/spec/accessModes/0"), "ReadOnlyMany");
        assert_eq!(s(pv, "/spec/storageClassName"), "");
        assert_eq!(s(pv, "/spec/persistentVolumeReclaimPolicy"), "Retain");
        assert_eq!(s(pv, "/spec/capacity/storage"), "40Gi");
        assert_eq!(s(pv, "/spec/claimRef/namespace"), "beta");
        assert_eq!(s(pv, "/spec/claimRef/name"), "dataset-events");
        assert_eq!(s(pv, "/spec/csi/driver"), "s3.csi.aws.com");
        assert_eq!(s(pv, "/spec/csi/volumeHandle"), "dataset-events.beta");
        assert_eq!(pv.pointer("/spec/csi/readOnly"), Some(&Value::Bool(true)));
        assert_eq!(
            pv.pointer("/spec/csi/volumeAttributes"),
            Some(&serde_json::json!({"authenticationSource": "pod", "bucketName": "acme-events"}))
        );
        assert_eq!(
            pv.pointer("/spec/mountOptions"),
            Some(&serde_json::json!([
                "region eu-west-1",
                "prefix raw/2026/",
                "uid=1000",
                "gid=1000",
                "allow-other"
            ])),
            "the user's `allow-other` is not repeated; no delete or overwrite when read-only"
        );
        let pvc = get(
            &l,
            "aws-2",
            "PersistentVolumeClaim",
            Some("beta"),
            "dataset-events",
        );
        assert_eq!(s(pvc, "/spec/accessModes/0"), "ReadOnlyMany");
        assert_eq!(s(pvc, "/spec/volumeName"), "dataset-events.beta");
        assert_eq!(s(pvc, "/spec/storageClassName"), "");
        assert_eq!(s(pvc, "/spec/resources/requests/storage"), super::NOMINAL);
        for v in [pv, pvc] {
            assert_eq!(s(v, "/metadata/labels/plinth.dev~1project"), "beta");
            assert_eq!(s(v, "/metadata/annotations/plinth.dev~1dataset"), "events");
            assert_eq!(
                s(v, "/metadata/annotations/plinth.dev~1dataset-version"),
                "3HL4kqtJlcpXroDTDmJ.rDSAGhRmZU8q"
            );
            assert_eq!(s(v, "/metadata/annotations/plinth.dev~1sensitivity"), "pii");
            assert_eq!(
                s(v, "/metadata/annotations/plinth.dev~1access-mode"),
                "read-only"
            );
            assert_eq!(
                s(v, "/metadata/annotations/plinth.dev~1mount-path"),
                "/datasets/events"
            );
            // Provenance: the grant line (`- {project: beta}`, line 11 of the file).
            assert_eq!(
                s(v, "/metadata/annotations/plinth.dev~1source"),
                "datasets.yaml:11"
            );
        }
        // beta does not live on aws-1; alpha does.
        assert!(find(&l, "aws-1", "PersistentVolume", None, "dataset-events.beta").is_none());
        assert!(
            find(
                &l,
                "aws-1",
                "PersistentVolume",
                None,
                "dataset-events.alpha"
            )
            .is_some()
        );
        // beta's grant is limited to aws-2: nothing on gcp-1, where S3 cannot be mounted.
        assert!(find(&l, "gcp-1", "PersistentVolume", None, "dataset-events.beta").is_none());
    }

    #[test]
    fn read_write_grant_is_read_write_many() {
        let l = build(S3);
        let pv = get(
            &l,
            "aws-1",
            "PersistentVolume",
            None,
            "dataset-events.alpha",
        );
        assert_eq!(s(pv, "/spec/accessModes/0"), "ReadWriteMany");
        assert!(pv.pointer("/spec/csi/readOnly").is_none());
        let options = pv["spec"]["mountOptions"].as_array().expect("options");
        for o in ["allow-delete", "allow-overwrite", "uid=1000", "gid=1000"] {
            assert!(options.contains(&Value::from(o)), "{o} in {options:?}");
        }
        let pvc = get(
            &l,
            "aws-1",
            "PersistentVolumeClaim",
            Some("alpha"),
            "dataset-events",
        );
        assert_eq!(s(pvc, "/spec/accessModes/0"), "ReadWriteMany");
        assert_eq!(
            s(pvc, "/metadata/annotations/plinth.dev~1access-mode"),
            "read-write"
        );
    }

    #[test]
    fn other_storage_sources() {
        let platform = PLATFORM.replace(
            "    - {name: lab,",
            "    - {name: aks, kubernetesVersion: \"1.32\", provider: azure, region: westeurope}\n    - {name: lab,",
        );
        let l = build_with(
            &platform,
            r#"
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: scans}
spec:
  source: {nfs: {server: filer.lab, path: /exports/scans}}
  version: snap-1
  access: [{project: gamma}]
  mount: {path: /data/scans, mountOptions: [nfsvers=4.1]}
---
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: local}
spec:
  source: {hostPath: {path: /mnt/local}}
  version: "1"
  access: [{project: gamma}]
  mount: {mountOptions: [ro]}
---
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: images}
spec:
  source: {gcs: {bucket: acme-images, prefix: v3/}}
  version: "17"
  access: [{project: alpha, mode: read-write, clusters: [gcp-1]}]
---
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: blobs}
spec:
  source: {azureBlob: {storageAccount: acmeblobs, container: train, prefix: x, resourceGroup: rg}}
  version: "1"
  access: [{project: alpha, clusters: [aks]}]
---
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: scratch}
spec:
  source: {pv: {size: 100Gi}}
  allowFloatingVersion: true
  access: [{project: gamma}]
"#,
        );
        let nfs = get(&l, "lab", "PersistentVolume", None, "dataset-scans.gamma");
        assert_eq!(
            nfs.pointer("/spec/nfs"),
            Some(
                &serde_json::json!({"path": "/exports/scans", "readOnly": true, "server": "filer.lab"})
            )
        );
        assert_eq!(s(nfs, "/spec/mountOptions/0"), "nfsvers=4.1");
        assert_eq!(
            s(nfs, "/metadata/annotations/plinth.dev~1mount-path"),
            "/data/scans"
        );
        let hp = get(&l, "lab", "PersistentVolume", None, "dataset-local.gamma");
        assert_eq!(s(hp, "/spec/hostPath/type"), "Directory");
        assert!(
            hp.pointer("/spec/mountOptions").is_none(),
            "hostPath takes no mount options"
        );
        let gcs = get(
            &l,
            "gcp-1",
            "PersistentVolume",
            None,
            "dataset-images.alpha",
        );
        assert_eq!(s(gcs, "/spec/csi/driver"), "gcsfuse.csi.storage.gke.io");
        assert_eq!(s(gcs, "/spec/csi/volumeHandle"), "acme-images");
        assert_eq!(
            gcs["spec"]["mountOptions"],
            serde_json::json!(["only-dir=v3", "uid=1000", "gid=1000"])
        );
        assert_eq!(s(gcs, "/spec/accessModes/0"), "ReadWriteMany");
        let az = get(&l, "aks", "PersistentVolume", None, "dataset-blobs.alpha");
        assert_eq!(s(az, "/spec/csi/driver"), "blob.csi.azure.com");
        assert_eq!(
            s(az, "/spec/csi/volumeAttributes/storageAccount"),
            "acmeblobs"
        );
        assert_eq!(s(az, "/spec/csi/volumeAttributes/containerName"), "train");
        assert_eq!(s(az, "/spec/csi/volumeAttributes/resourceGroup"), "rg");
        assert_eq!(s(az, "/spec/mountOptions/0"), "--subdirectory=x/");
        // A dynamically provisioned volume: no PV, a writable claim of the storage class.
        let pvc = get(
            &l,
            "lab",
            "PersistentVolumeClaim",
            Some("gamma"),
            "dataset-scratch",
        );
        assert_eq!(s(pvc, "/spec/accessModes/0"), "ReadWriteMany");
        assert_eq!(s(pvc, "/spec/storageClassName"), "standard");
        assert_eq!(s(pvc, "/spec/resources/requests/storage"), "100Gi");
        assert!(pvc.pointer("/spec/volumeName").is_none());
        assert_eq!(
            s(pvc, "/metadata/annotations/plinth.dev~1access-mode"),
            "read-only"
        );
    }

    #[test]
    fn global_datasets_reach_every_project_read_only() {
        let l = build(
            r#"
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: reference}
spec:
  source: {nfs: {server: filer, path: /ref}}
  version: "2026.1"
  sensitivity: public
  global: true
  access: [{project: beta}]
"#,
        );
        let pvcs = |cluster: &str| {
            keys(&l, cluster, |v| {
                of_dataset("reference")(v) && v["kind"] == "PersistentVolumeClaim"
            })
        };
        assert_eq!(
            pvcs("aws-2"),
            [
                "PersistentVolumeClaim alpha/dataset-reference",
                "PersistentVolumeClaim beta/dataset-reference"
            ]
        );
        assert_eq!(
            pvcs("aws-1"),
            ["PersistentVolumeClaim alpha/dataset-reference"]
        );
        assert_eq!(
            pvcs("lab"),
            [
                "PersistentVolumeClaim alpha/dataset-reference",
                "PersistentVolumeClaim gamma/dataset-reference"
            ]
        );
        for (project, line) in [("alpha", "9"), ("beta", "10")] {
            let pv = get(
                &l,
                "aws-2",
                "PersistentVolume",
                None,
                &format!("dataset-reference.{project}"),
            );
            assert_eq!(s(pv, "/spec/accessModes/0"), "ReadOnlyMany");
            assert_eq!(pv.pointer("/spec/nfs/readOnly"), Some(&Value::Bool(true)));
            // An explicit grant points at its line, the others at `global`.
            assert_eq!(
                s(pv, "/metadata/annotations/plinth.dev~1source"),
                format!("datasets.yaml:{line}")
            );
        }
    }

    #[test]
    fn git_sync_and_env_config_maps() {
        let l = build(
            r#"
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: codes}
spec:
  source:
    git:
      url: https://git.acme.example/coding/codes.git
      ref: 38f62667ec93ab6bde624723d712da0884d8dc9f
      secretRef: coding-git
  access: [{project: gamma}]
  mount: {path: /ref/codes}
---
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: calendar}
spec:
  source: {env: {variables: {TZ: Europe/Dublin, HOLIDAYS: IE}}}
  version: "2025.11"
  access: [{project: gamma}]
"#,
        );
        let git = get(&l, "lab", "ConfigMap", Some("gamma"), "dataset-codes");
        assert_eq!(
            git["data"],
            serde_json::json!({
                "GITSYNC_DEPTH": "1",
                "GITSYNC_LINK": "/ref/codes",
                "GITSYNC_ONE_TIME": "true",
                "GITSYNC_REF": "38f62667ec93ab6bde624723d712da0884d8dc9f",
                "GITSYNC_REPO": "https://git.acme.example/coding/codes.git",
                "GITSYNC_ROOT": "/ref/.git-sync/codes",
                "PLINTH_GIT_SECRET": "coding-git",
            })
        );
        assert_eq!(
            s(git, "/metadata/annotations/plinth.dev~1dataset-version"),
            "38f62667ec93ab6bde624723d712da0884d8dc9f"
        );
        assert_eq!(
            s(git, "/metadata/annotations/plinth.dev~1git-sync-volume"),
            "/ref"
        );
        assert_eq!(
            s(git, "/metadata/annotations/plinth.dev~1mount-path"),
            "/ref/codes"
        );
        let env = get(&l, "lab", "ConfigMap", Some("gamma"), "dataset-calendar");
        assert_eq!(
            env["data"],
            serde_json::json!({"HOLIDAYS": "IE", "TZ": "Europe/Dublin"})
        );
        assert_eq!(
            s(env, "/metadata/annotations/plinth.dev~1dataset-version"),
            "2025.11"
        );
        // No volumes for them.
        assert_eq!(
            keys(&l, "lab", |v| of_dataset("codes")(v)
                || of_dataset("calendar")(v)),
            [
                "ConfigMap gamma/dataset-calendar",
                "ConfigMap gamma/dataset-codes"
            ]
        );
    }

    #[test]
    fn aws_bucket_and_iam_grants() {
        let l = build(
            r#"
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: events}
spec:
  source: {s3: {bucket: acme-events, prefix: raw/, region: eu-west-1}}
  version: v1
  sensitivity: confidential
  access:
    - {project: beta, clusters: [aws-2]}
    - {project: alpha, mode: read-write, clusters: [aws-1, aws-2]}
  provision:
    createBucket: true
    encryption: {kmsKey: "arn:aws:kms:eu-west-1:111122223333:key/1234abcd"}
"#,
        );
        // Cloud objects on the first AWS cluster by name only.
        let cloud = |cluster: &str| {
            let mut k = keys(&l, cluster, |v| {
                of_dataset("events")(v)
                    && v["apiVersion"]
                        .as_str()
                        .is_some_and(|a| a.contains("upbound.io"))
            });
            k.sort();
            k
        };
        assert!(cloud("aws-2").is_empty());
        assert!(cloud("gcp-1").is_empty() && cloud("lab").is_empty());
        assert_eq!(
            cloud("aws-1"),
            [
                "Bucket acme-events",
                "BucketServerSideEncryptionConfiguration acme-events",
                "BucketVersioning acme-events",
                "Policy dataset-events.alpha",
                "Policy dataset-events.beta",
                "RolePolicyAttachment dataset-events.alpha",
                "RolePolicyAttachment dataset-events.beta",
            ]
        );
        let bucket = get(&l, "aws-1", "Bucket", None, "acme-events");
        assert_eq!(s(bucket, "/apiVersion"), "s3.aws.upbound.io/v1beta2");
        assert_eq!(
            s(bucket, "/spec/deletionPolicy"),
            "Orphan",
            "Retain is Crossplane's Orphan"
        );
        assert_eq!(s(bucket, "/spec/forProvider/region"), "eu-west-1");
        assert_eq!(
            s(bucket, "/metadata/annotations/crossplane.io~1external-name"),
            "acme-events"
        );
        assert_eq!(
            s(bucket, "/metadata/annotations/plinth.dev~1sensitivity"),
            "confidential"
        );
        let versioning = get(&l, "aws-1", "BucketVersioning", None, "acme-events");
        assert_eq!(
            s(
                versioning,
                "/spec/forProvider/versioningConfiguration/status"
            ),
            "Enabled"
        );
        assert_eq!(s(versioning, "/spec/deletionPolicy"), "Orphan");
        let sse = get(
            &l,
            "aws-1",
            "BucketServerSideEncryptionConfiguration",
            None,
            "acme-events",
        );
        assert_eq!(
            sse.pointer("/spec/forProvider/rule/0/applyServerSideEncryptionByDefault"),
            Some(&serde_json::json!({
                "sseAlgorithm": "aws:kms",
                "kmsMasterKeyId": "arn:aws:kms:eu-west-1:111122223333:key/1234abcd"
            }))
        );
        let policy = get(&l, "aws-1", "Policy", None, "dataset-events.beta");
        assert_eq!(s(policy, "/spec/deletionPolicy"), "Delete");
        let doc: Value =
            serde_json::from_str(&s(policy, "/spec/forProvider/policy")).expect("json");
        assert_eq!(
            doc["Statement"][0],
            serde_json::json!({
                "Sid": "ListDataset", "Effect": "Allow", "Action": ["s3:ListBucket"],
                "Resource": ["arn:aws:s3:::acme-events"],
                "Condition": {"StringLike": {"s3:prefix": ["raw/*"]}}
            })
        );
        assert_eq!(
            doc["Statement"][1]["Action"],
            serde_json::json!(["s3:GetObject", "s3:GetObjectVersion"])
        );
        assert_eq!(
            doc["Statement"][1]["Resource"],
            serde_json::json!(["arn:aws:s3:::acme-events/raw/*"])
        );
        assert_eq!(
            doc["Statement"][2]["Action"],
            serde_json::json!(["kms:Decrypt"])
        );
        let write: Value = serde_json::from_str(&s(
            get(&l, "aws-1", "Policy", None, "dataset-events.alpha"),
            "/spec/forProvider/policy",
        ))
        .expect("json");
        let actions = write["Statement"][1]["Action"].as_array().expect("actions");
        assert!(actions.contains(&Value::from("s3:PutObject")));
        assert!(actions.contains(&Value::from("s3:DeleteObject")));
        assert_eq!(
            write["Statement"][2]["Action"],
            serde_json::json!(["kms:Decrypt", "kms:GenerateDataKey"])
        );
        let attach = get(
            &l,
            "aws-1",
            "RolePolicyAttachment",
            None,
            "dataset-events.alpha",
        );
        assert_eq!(s(attach, "/spec/forProvider/role"), "alpha-workloads");
        assert_eq!(
            s(attach, "/spec/forProvider/policyArnRef/name"),
            "dataset-events.alpha"
        );
        assert_eq!(s(attach, "/metadata/labels/plinth.dev~1project"), "alpha");
        // Without encryption settings S3's default SSE-S3 is stated; versioning can be off.
        let plain = build(
            r#"
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: open}
spec:
  source: {s3: {bucket: acme.open.data}}
  version: v1
  sensitivity: public
  access: [{project: alpha, clusters: [aws-1, aws-2]}]
  provision: {createBucket: true, versioning: false, deletionPolicy: Delete}
"#,
        );
        let bucket = get(&plain, "aws-1", "Bucket", None, "acme.open.data");
        assert_eq!(s(bucket, "/spec/deletionPolicy"), "Delete");
        assert_eq!(
            s(bucket, "/spec/forProvider/region"),
            "eu-west-1",
            "the cluster's region"
        );
        let sse = get(
            &plain,
            "aws-1",
            "BucketServerSideEncryptionConfiguration",
            None,
            "acme.open.data",
        );
        assert_eq!(
            s(
                sse,
                "/spec/forProvider/rule/0/applyServerSideEncryptionByDefault/sseAlgorithm"
            ),
            "AES256"
        );
        assert_eq!(
            s(
                get(&plain, "aws-1", "BucketVersioning", None, "acme.open.data"),
                "/spec/forProvider/versioningConfiguration/status"
            ),
            "Suspended"
        );
        // No Crossplane backend: no cloud objects, volumes still.
        let off = build_with(
            &PLATFORM.replace(
                "  defaults:",
                "  backends: {crossplane: false}\n  defaults:",
            ),
            S3,
        );
        assert!(find(&off, "aws-1", "Policy", None, "dataset-events.alpha").is_none());
        assert!(
            find(
                &off,
                "aws-1",
                "PersistentVolume",
                None,
                "dataset-events.alpha"
            )
            .is_some()
        );
    }

    #[test]
    fn gcs_bucket_and_iam_members() {
        let l = build(
            r#"
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: images-a}
spec:
  source: {gcs: {bucket: acme_images, prefix: a/, location: EUROPE-WEST4}}
  version: "1"
  access: [{project: alpha, clusters: [gcp-1]}, {project: beta, mode: read-write, clusters: [gcp-1]}]
  provision:
    createBucket: true
    encryption: {kmsKey: projects/p/locations/europe-west4/keyRings/r/cryptoKeys/k}
---
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: images-b}
spec:
  source: {gcs: {bucket: acme_images, prefix: b/}}
  version: "1"
  access: [{project: alpha, clusters: [gcp-1]}, {project: beta, clusters: [gcp-1]}]
"#,
        );
        let bucket = get(&l, "gcp-1", "Bucket", None, "acme-images");
        assert_eq!(s(bucket, "/apiVersion"), "storage.gcp.upbound.io/v1beta2");
        assert_eq!(
            s(bucket, "/metadata/annotations/crossplane.io~1external-name"),
            "acme_images"
        );
        assert_eq!(s(bucket, "/spec/deletionPolicy"), "Orphan");
        assert_eq!(
            bucket["spec"]["forProvider"],
            serde_json::json!({
                "location": "EUROPE-WEST4",
                "versioning": {"enabled": true},
                "encryption": {"defaultKmsKeyName": "projects/p/locations/europe-west4/keyRings/r/cryptoKeys/k"},
                "uniformBucketLevelAccess": true,
                "publicAccessPrevention": "enforced",
                "labels": {"managed-by": "plinth", "plinth-dataset": "images-a", "plinth-sensitivity": "internal"}
            })
        );
        let member = |name: &str| get(&l, "gcp-1", "BucketIAMMember", None, name);
        assert_eq!(
            member("dataset-images-a.alpha")["spec"]["forProvider"],
            serde_json::json!({
                "bucket": "acme_images",
                "role": "roles/storage.objectViewer",
                "member": "serviceAccount:alpha-sa@acme-prod.iam.gserviceaccount.com"
            })
        );
        assert_eq!(
            s(member("dataset-images-a.beta"), "/spec/forProvider/role"),
            "roles/storage.objectUser"
        );
        assert_eq!(
            s(member("dataset-images-a.beta"), "/spec/deletionPolicy"),
            "Delete"
        );
        // images-b grants alpha the same role on the same bucket: one binding, not two; beta's
        // read role is a different binding.
        assert!(
            find(
                &l,
                "gcp-1",
                "BucketIAMMember",
                None,
                "dataset-images-b.alpha"
            )
            .is_none()
        );
        assert_eq!(
            s(member("dataset-images-b.beta"), "/spec/forProvider/role"),
            "roles/storage.objectViewer"
        );
        assert!(
            find(
                &l,
                "aws-1",
                "BucketIAMMember",
                None,
                "dataset-images-a.alpha"
            )
            .is_none()
        );
    }

    #[test]
    fn azure_account_and_containers() {
        let platform = PLATFORM.replace(
            "    - {name: lab,",
            "    - {name: aks, kubernetesVersion: \"1.32\", provider: azure, region: westeurope}\n    - {name: lab,",
        );
        let l = build_with(
            &platform,
            r#"
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: eval}
spec:
  source: {azureBlob: {storageAccount: acmeblobs, container: eval, resourceGroup: rg-data}}
  version: "1"
  access: [{project: alpha, clusters: [aks]}]
  provision: {createBucket: true, versioning: false}
---
apiVersion: plinth.dev/v1alpha1
kind: Dataset
metadata: {name: train}
spec:
  source: {azureBlob: {storageAccount: acmeblobs, container: train, resourceGroup: rg-data}}
  version: "1"
  access: [{project: alpha, clusters: [aks]}]
  provision: {createBucket: true}
"#,
        );
        let account = get(&l, "aks", "Account", None, "acmeblobs");
        assert_eq!(
            s(account, "/apiVersion"),
            "storage.azure.upbound.io/v1beta2"
        );
        assert_eq!(s(account, "/spec/forProvider/location"), "westeurope");
        assert_eq!(
            s(account, "/metadata/annotations/plinth.dev~1dataset"),
            "eval"
        );
        assert_eq!(
            account.pointer("/spec/forProvider/blobProperties/versioningEnabled"),
            Some(&Value::Bool(false))
        );
        for c in ["eval", "train"] {
            let container = get(&l, "aks", "Container", None, &format!("acmeblobs.{c}"));
            assert_eq!(
                s(container, "/apiVersion"),
                "storage.azure.upbound.io/v1beta1"
            );
            assert_eq!(
                s(
                    container,
                    "/metadata/annotations/crossplane.io~1external-name"
                ),
                c
            );
            assert_eq!(
                s(container, "/spec/forProvider/storageAccountIdRef/name"),
                "acmeblobs"
            );
        }
        let pv = get(&l, "aks", "PersistentVolume", None, "dataset-train.alpha");
        assert_eq!(s(pv, "/spec/csi/driver"), "blob.csi.azure.com");
    }

    #[test]
    fn names_stay_distinct() {
        // `a-b` for project `c` and `a` for project `b-c` would both be `a-b-c` with a dash.
        assert_ne!(super::grant_name("a-b", "c"), super::grant_name("a", "b-c"));
        assert_eq!(super::k8s_name("acme_images"), "acme-images");
        assert_eq!(super::k8s_name("acme.data"), "acme.data");
    }
}
