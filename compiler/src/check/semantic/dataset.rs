//! Datasets: sources and versions, grants, mount paths, the clusters that can mount them.

use super::*;

impl<'a> Cx<'a> {
    pub(super) fn dataset(&self, ds: &'a Object<crate::model::DatasetSpec>, d: &mut Diagnostics) {
        let s = &ds.spec;
        let Some(kind) = s.source.kind() else { return };
        self.floating_version(ds, kind, d);
        self.version_field_choice(ds, kind, d);
        self.access_grants(ds, kind, d);
        self.dataset_clusters(ds, kind, d);
        self.unused_dataset(ds, d);
        self.provision_choice(ds, kind, d);
        self.same_mount_path(ds, d);
    }

    /// `FloatingVersion`: the source is pinned to an immutable version.
    fn floating_version(
        &self,
        ds: &'a Object<crate::model::DatasetSpec>,
        kind: SourceKind,
        d: &mut Diagnostics,
    ) {
        let s = &ds.spec;
        if !s.allow_floating_version {
            let (field, problem) = match kind {
                SourceKind::Git => (
                    "spec.source.git.ref",
                    floating_commit(
                        &s.source
                            .git
                            .as_ref()
                            .map(|g| g.git_ref.clone())
                            .unwrap_or_default(),
                        40,
                    ),
                ),
                SourceKind::Dvc => (
                    "spec.source.dvc.rev",
                    floating_commit(
                        &s.source
                            .dvc
                            .as_ref()
                            .map(|g| g.rev.clone())
                            .unwrap_or_default(),
                        40,
                    ),
                ),
                SourceKind::Lakefs => (
                    "spec.source.lakefs.ref",
                    floating_commit(
                        &s.source
                            .lakefs
                            .as_ref()
                            .map(|g| g.lakefs_ref.clone())
                            .unwrap_or_default(),
                        64,
                    ),
                ),
                SourceKind::Env => ("", None),
                _ => match &s.version {
                    None => ("spec.source", Some("has no `version`".to_owned())),
                    Some(v) if is_floating_word(v) => {
                        ("spec.version", Some(format!("version `{v}` can move")))
                    }
                    Some(_) => ("", None),
                },
            };
            if let Some(problem) = problem {
                let hint = match kind {
                    SourceKind::Git | SourceKind::Dvc => {
                        "pin a full 40-character commit id, or set `allowFloatingVersion: true`"
                    }
                    SourceKind::Lakefs => {
                        "pin a lakeFS commit id (64 hex characters), or set `allowFloatingVersion: true`"
                    }
                    _ => {
                        "set `version` to an immutable object version or snapshot id, or set `allowFloatingVersion: true`"
                    }
                };
                d.push(
                    Diagnostic::new(
                        Code::FloatingVersion,
                        format!(
                            "dataset `{}` {problem}: consumers would not see a fixed revision",
                            ds.name()
                        ),
                    )
                    .at(ds.at(field))
                    .hint(hint),
                );
            }
        }
    }

    /// `InvalidChoice`: `version` only with sources that have versions.
    fn version_field_choice(
        &self,
        ds: &'a Object<crate::model::DatasetSpec>,
        kind: SourceKind,
        d: &mut Diagnostics,
    ) {
        let s = &ds.spec;
        if matches!(kind, SourceKind::Git | SourceKind::Dvc | SourceKind::Lakefs)
            && s.version.is_some()
        {
            d.push(
                Diagnostic::new(
                    Code::InvalidChoice,
                    format!("`version` is not used with a `{}` source", kind.as_str()),
                )
                .at(ds.at("spec.version"))
                .hint("the source's own `ref`/`rev` is the version; remove `version`"),
            );
        }
    }

    /// `DuplicateEntry`, `GlobalWritable`, `NotAllowed`: each project is granted once, and what it may do.
    fn access_grants(
        &self,
        ds: &'a Object<crate::model::DatasetSpec>,
        kind: SourceKind,
        d: &mut Diagnostics,
    ) {
        let s = &ds.spec;
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, a) in s.access.iter().enumerate() {
            let at = ds.at_item("spec.access", i, ".project");
            self.project_ref(&a.project, at.clone(), d);
            if let Some(first) = seen.insert(&a.project, i) {
                d.push(
                    Diagnostic::new(
                        Code::DuplicateEntry,
                        format!("project `{}` is granted access twice", a.project),
                    )
                    .at(at)
                    .related(
                        ds.at(&format!("spec.access[{first}].project"))
                            .note("first grant here"),
                    )
                    .hint("keep one entry per project, with the widest mode it needs"),
                );
            }
            if s.global && a.mode == AccessMode::ReadWrite {
                d.push(
                    Diagnostic::new(
                        Code::GlobalWritable,
                        format!("global dataset `{}` cannot be granted read-write", ds.name()),
                    )
                    .at(ds.at(&format!("spec.access[{i}].mode")))
                    .related(ds.at("spec.global").note("the dataset is global"))
                    .hint("global datasets are read-only everywhere; make it non-global to grant write access"),
                );
            }
            if matches!(
                kind,
                SourceKind::Env | SourceKind::Git | SourceKind::Lakefs | SourceKind::Dvc
            ) && a.mode == AccessMode::ReadWrite
            {
                d.push(
                    Diagnostic::new(
                        Code::NotAllowed,
                        format!("`{}` datasets are read-only", kind.as_str()),
                    )
                    .at(ds.at(&format!("spec.access[{i}].mode")))
                    .hint("use `mode: read-only`; write new data to a new revision and pin it"),
                );
            }
        }
    }

    /// `UnusedDataset`: someone may use the data.
    fn unused_dataset(&self, ds: &'a Object<crate::model::DatasetSpec>, d: &mut Diagnostics) {
        let s = &ds.spec;
        if s.access.is_empty() && !s.global {
            d.push(
                Diagnostic::new(
                    Code::UnusedDataset,
                    format!("dataset `{}` is granted to no project", ds.name()),
                )
                .at(ds.at("metadata.name"))
                .hint(
                    "add `access:` entries, or `global: true` to share it read-only with everyone",
                ),
            );
        }
    }

    /// `InvalidChoice`: what plinth provisions fits the source.
    fn provision_choice(
        &self,
        ds: &'a Object<crate::model::DatasetSpec>,
        kind: SourceKind,
        d: &mut Diagnostics,
    ) {
        let s = &ds.spec;
        if let Some(pv) = &s.provision
            && !kind.is_bucket()
            && pv.create_bucket
        {
            d.push(
                Diagnostic::new(
                    Code::InvalidChoice,
                    format!(
                        "`provision.createBucket` needs an object store, not a `{}` source",
                        kind.as_str()
                    ),
                )
                .at(ds.at("spec.provision.createBucket"))
                .hint("provisioning applies to `s3`, `gcs` and `azureBlob` sources"),
            );
        }
    }

    /// `DuplicateEntry`: two datasets mounted at the same path in one project.
    fn same_mount_path(&self, ds: &'a Object<crate::model::DatasetSpec>, d: &mut Diagnostics) {
        let path = self.mount_path(ds);
        let same_path = self
            .by_path()
            .get(&path)
            .into_iter()
            .flatten()
            .filter(|n| **n > ds.name());
        for other_name in same_path {
            let other = &self.specs.datasets[*other_name];
            let shared: Vec<&str> = self
                .consumers(ds)
                .intersection(&self.consumers(other))
                .copied()
                .collect();
            if let Some(project) = shared.first() {
                d.push(
                    Diagnostic::new(
                        Code::DuplicateEntry,
                        format!("datasets `{}` and `{other_name}` are both mounted at `{path}` in project `{project}`", ds.name()),
                    )
                    .at(other.at("spec.mount.path"))
                    .related(ds.at("spec.mount.path").note("same path"))
                    .hint("give one of them a different `mount.path`"),
                );
            }
        }
    }

    /// Where each grant is mounted: the clusters a grant names must be its project's; an object
    /// store only on clusters of its cloud (E160 for a grant, W015 for what a global dataset
    /// leaves out); with IRSA, only on AWS clusters whose OIDC issuer is known (E161).
    pub(super) fn dataset_clusters(
        &self,
        ds: &'a Object<crate::model::DatasetSpec>,
        kind: SourceKind,
        d: &mut Diagnostics,
    ) {
        let Some(pl) = &self.specs.platform else {
            return;
        };
        let s = &ds.spec;
        let cluster = |name: &str| pl.spec.clusters.iter().position(|c| c.name == name);
        let cloud = kind.mount_cloud();
        let irsa = kind == SourceKind::S3
            && s.source.s3.as_ref().is_some_and(|x| x.endpoint.is_none())
            && pl.spec.backends.crossplane;
        // Clusters lacking an OIDC issuer, with the first grant needing it.
        let mut no_issuer: BTreeMap<usize, (String, &'a str)> = BTreeMap::new();
        let mut explicit: BTreeSet<&str> = BTreeSet::new();
        for (i, a) in s.access.iter().enumerate() {
            explicit.insert(a.project.as_str());
            let Some(p) = self.specs.projects.get(&a.project) else {
                continue;
            };
            let lives = self.placement(p);
            let mut on = self.grant_clusters(ds, pl, i, a, &lives, d);
            Self::not_mountable(ds, pl, kind, a, &lives, &mut on, d);
            if irsa
                && p.spec
                    .cloud_identity
                    .as_ref()
                    .is_some_and(|x| x.aws.is_some())
            {
                for (c, field) in &on {
                    if let Some(k) = cluster(c)
                        && pl.spec.clusters[k].oidc_issuer.is_none()
                    {
                        no_issuer
                            .entry(k)
                            .or_insert((field.clone(), a.project.as_str()));
                    }
                }
            }
        }
        if s.global {
            let mut skipped: Vec<String> = Vec::new();
            for (name, p) in &self.specs.projects {
                if explicit.contains(name.as_str()) {
                    continue;
                }
                for c in self.specs.placement_iter(&p.spec) {
                    let Some(k) = cluster(c) else { continue };
                    let provider = pl.spec.clusters[k].provider;
                    if cloud.is_some_and(|x| x != provider) {
                        skipped.push(format!("{name} on {c}"));
                    } else if irsa
                        && provider == crate::model::platform::CloudProvider::Aws
                        && pl.spec.clusters[k].oidc_issuer.is_none()
                        && p.spec
                            .cloud_identity
                            .as_ref()
                            .is_some_and(|x| x.aws.is_some())
                    {
                        no_issuer
                            .entry(k)
                            .or_insert(("spec.global".to_owned(), name.as_str()));
                    }
                }
            }
            if let (Some(cloud), false) = (cloud, skipped.is_empty()) {
                d.push(
                    Diagnostic::new(
                        Code::NotMountedEverywhere,
                        format!(
                            "global dataset `{}` is not mounted where its {} does not exist: {}",
                            ds.name(),
                            driver_name(kind),
                            list(&skipped)
                        ),
                    )
                    .at(ds.at("spec.global"))
                    .hint(format!(
                        "only `{}` clusters can mount a `{}` source; projects elsewhere need a copy on storage their clusters mount",
                        cloud.as_str(),
                        kind.as_str()
                    )),
                );
            }
        }
        Self::identity_setup(ds, pl, no_issuer, d);
    }

    /// `UnknownCluster`, `GrantCluster`: the clusters a grant names exist and are its project's; where it is mounted.
    fn grant_clusters(
        &self,
        ds: &'a Object<crate::model::DatasetSpec>,
        pl: &'a Object<crate::model::PlatformSpec>,
        i: usize,
        a: &'a crate::model::dataset::Access,
        lives: &[&'a str],
        d: &mut Diagnostics,
    ) -> Vec<(&'a str, String)> {
        let cluster = |name: &str| pl.spec.clusters.iter().position(|c| c.name == name);
        let mut on: Vec<(&str, String)> = Vec::new();
        for (j, c) in a.clusters.iter().enumerate() {
            let field = format!("spec.access[{i}].clusters[{j}]");
            if cluster(c).is_none() {
                d.push(unknown(
                    Code::UnknownCluster,
                    "cluster",
                    c,
                    ds.at(&field),
                    self.clusters().into_iter(),
                ));
            } else if !lives.contains(&c.as_str()) {
                d.push(
                        Diagnostic::new(
                            Code::GrantCluster,
                            format!(
                                "project `{}` does not live on cluster `{c}`: the grant cannot be mounted there",
                                a.project
                            ),
                        )
                        .at(ds.at(&field))
                        .hint(format!("the project lives on {}", list(lives))),
                    );
            } else {
                on.push((c.as_str(), field));
            }
        }
        if a.clusters.is_empty() {
            on = lives
                .iter()
                .map(|c| (*c, format!("spec.access[{i}]")))
                .collect();
        }
        on
    }

    /// `NotMountable`: an object store is mounted only on clusters of its cloud; drops the others from `on`.
    fn not_mountable(
        ds: &'a Object<crate::model::DatasetSpec>,
        pl: &'a Object<crate::model::PlatformSpec>,
        kind: SourceKind,
        a: &'a crate::model::dataset::Access,
        lives: &[&'a str],
        on: &mut Vec<(&'a str, String)>,
        d: &mut Diagnostics,
    ) {
        let cluster = |name: &str| pl.spec.clusters.iter().position(|c| c.name == name);
        let cloud = kind.mount_cloud();
        if let Some(cloud) = cloud {
            let foreign: Vec<&(&str, String)> = on
                .iter()
                .filter(|(c, _)| cluster(c).is_some_and(|k| pl.spec.clusters[k].provider != cloud))
                .collect();
            if let Some((first, field)) = foreign.first() {
                let fitting: Vec<&str> = lives
                    .iter()
                    .copied()
                    .filter(|c| cluster(c).is_some_and(|k| pl.spec.clusters[k].provider == cloud))
                    .collect();
                let names: Vec<&str> = foreign.iter().map(|(c, _)| *c).collect();
                let mut diag = Diagnostic::new(
                        Code::NotMountable,
                        format!(
                            "dataset `{}` cannot be mounted for project `{}` on {} {}: its `{}` source needs the {}, which exists only on `{}` clusters",
                            ds.name(),
                            a.project,
                            if names.len() == 1 { "cluster" } else { "clusters" },
                            list(&names),
                            kind.as_str(),
                            driver_name(kind),
                            cloud.as_str()
                        ),
                    )
                    .at(ds.at(field))
                    .hint(if fitting.is_empty() {
                        format!(
                            "project `{}` lives on no `{}` cluster: place it on one, or copy the data to storage its clusters can mount",
                            a.project,
                            cloud.as_str()
                        )
                    } else {
                        format!(
                            "mount it only on the project's `{}` clusters: `clusters: [{}]`",
                            cloud.as_str(),
                            fitting.join(", ")
                        )
                    });
                if let Some(k) = cluster(first) {
                    diag =
                        diag.related(pl.at(&format!("spec.clusters[{k}].provider")).note(format!(
                            "cluster `{first}` runs on `{}`",
                            pl.spec.clusters[k].provider.as_str()
                        )));
                }
                d.push(diag);
                on.retain(|(c, _)| !names.contains(c));
            }
        }
    }

    /// `IdentitySetup`: IRSA mounts need the cluster's OIDC issuer.
    fn identity_setup(
        ds: &'a Object<crate::model::DatasetSpec>,
        pl: &'a Object<crate::model::PlatformSpec>,
        no_issuer: BTreeMap<usize, (String, &'a str)>,
        d: &mut Diagnostics,
    ) {
        for (k, (field, project)) in no_issuer {
            let c = &pl.spec.clusters[k];
            d.push(
                Diagnostic::new(
                    Code::IdentitySetup,
                    format!(
                        "cluster `{}` has no `oidcIssuer`: project `{project}` would mount dataset `{}` with its IAM role, which no trust policy lets the cluster's service accounts assume",
                        c.name,
                        ds.name()
                    ),
                )
                .at(ds.at(&field))
                .related(pl.at(&format!("spec.clusters[{k}].name")).note("the cluster"))
                .hint("set the cluster's `oidcIssuer` in the Platform (EKS: `aws eks describe-cluster --name <cluster> --query cluster.identity.oidc.issuer`)"),
            );
        }
    }

    pub(super) fn mount_path(&self, ds: &Object<crate::model::DatasetSpec>) -> String {
        Specs::mount_path(ds)
    }

    pub(super) fn consumers(&self, ds: &'a Object<crate::model::DatasetSpec>) -> BTreeSet<&'a str> {
        if ds.spec.global {
            self.specs.projects.keys().map(String::as_str).collect()
        } else {
            ds.spec.access.iter().map(|a| a.project.as_str()).collect()
        }
    }
}
