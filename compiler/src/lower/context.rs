//! What every lowering function shares: [`Ctx`] (the specs, the platform and the cluster being
//! lowered), [`Index`] (platform facts computed once), and [`Sink`] (one cluster's objects, with
//! their provenance annotations added and duplicates reported).
//!
//! Uses no kind file: every kind file (and the driver in `mod.rs`) uses this one.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::load::Snapshot;
use crate::model::PlatformSpec;
use crate::model::platform::Cluster;
use crate::output::{
    HASH_ANNOTATION, MANAGED_BY, Manifest, Obj, ObjectKey, Origin, PROJECT_LABEL,
    SOURCE_ANNOTATION, internal, spec_hash,
};
use crate::specs::{Object, Specs};

/// Collects one cluster's objects.
pub struct Sink<'a> {
    pub(super) cluster: &'a str,
    pub(super) out: &'a mut BTreeMap<ObjectKey, Manifest>,
    pub(super) diags: &'a mut Diagnostics,
}

impl Sink<'_> {
    pub fn cluster(&self) -> &str {
        self.cluster
    }

    /// Report a problem found while lowering (a setting this cluster cannot honour).
    pub fn report(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// Add a `k8s-openapi` resource (a custom resource is built with [`crate::crd::object`] and
    /// added by [`Sink::push_value`]). Its JSON is marked as serialised from its type, which
    /// verification relies on (see [`crate::verify::verify_one`]).
    pub fn push<T: k8s_openapi::Resource + Serialize>(&mut self, origin: &Origin, object: T) {
        match serde_json::to_value(object) {
            Ok(v) => self.add(origin, v, Obj::typed::<T>),
            Err(e) => self.diags.push(internal(
                origin,
                &format!("cannot serialise an object: {e}"),
            )),
        }
    }

    /// Add an object given as JSON; provenance annotations are added here.
    pub fn push_value(&mut self, origin: &Origin, v: Value) {
        self.add(origin, v, Obj::from);
    }

    /// Add an object: its provenance annotations and hash, then `obj` of the result.
    fn add(&mut self, origin: &Origin, mut v: Value, obj: impl FnOnce(Value) -> Obj) {
        strip_nulls(&mut v);
        let source = format!("{}:{}", origin.file, origin.line);
        let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) else {
            self.diags
                .push(internal(origin, "generated object has no metadata"));
            return;
        };
        let ann = meta
            .entry("annotations")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Some(a) = ann.as_object_mut() {
            a.insert(SOURCE_ANNOTATION.to_owned(), Value::String(source));
        }
        let hash = spec_hash(&v);
        if let Some(a) = v
            .get_mut("metadata")
            .and_then(|m| m.get_mut("annotations"))
            .and_then(Value::as_object_mut)
        {
            a.insert(HASH_ANNOTATION.to_owned(), Value::String(hash.clone()));
            sort_object(a);
        }
        if let Some(m) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            sort_object(m);
        }
        let key = ObjectKey::of(&v);
        if let Some(first) = self.out.get(&key) {
            self.diags
                .push(duplicate_object(self.cluster, &key, &first.origin, origin));
            return;
        }
        self.out.insert(
            key.clone(),
            Manifest {
                key,
                object: obj(v),
                origin: origin.clone(),
                hash,
            },
        );
    }
}

fn sort_object(m: &mut Map<String, Value>) {
    m.sort_keys();
}

/// Drop `null` members (k8s-openapi serialises absent options as nothing already; this keeps
/// hand-built JSON to the same rule).
pub(super) fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Two specs generate the same object.
pub(super) fn duplicate_object(
    cluster: &str,
    key: &ObjectKey,
    first: &Origin,
    origin: &Origin,
) -> Diagnostic {
    Diagnostic::new(
        Code::DuplicateName,
        format!(
            "{key} would be generated twice in cluster `{cluster}`: by {first} and by {origin}"
        ),
    )
    .at(crate::diag::Label::new(crate::diag::Span::new(
        origin.file.clone(),
        crate::diag::Pos::new(origin.line, 1),
        crate::diag::Pos::new(origin.line, 1),
    )))
    .hint("two specs produce an object of the same kind, namespace and name; rename one of them")
}

/// What every lowering function reads.
pub struct Ctx<'a> {
    pub specs: &'a Specs,
    pub platform: &'a PlatformSpec,
    pub cluster: &'a Cluster,
    pub snapshot: &'a Snapshot,
    pub index: &'a Index<'a>,
}

impl<'a> Ctx<'a> {
    /// Clusters a project lives on.
    pub fn placement(specs: &'a Specs, project: &'a crate::model::ProjectSpec) -> Vec<&'a str> {
        specs.placement(project)
    }

    /// Whether a project lives on this cluster.
    pub fn hosts(&self, project: &str) -> bool {
        self.specs
            .projects
            .get(project)
            .is_some_and(|p| self.hosts_spec(p))
    }

    /// Whether this cluster hosts this project (as [`Ctx::hosts`], without looking it up;
    /// reading only its `clusters`).
    pub fn hosts_spec(&self, project: &Object<crate::model::ProjectSpec>) -> bool {
        let name = self.cluster.name.as_str();
        self.specs.placed_on(project.clusters()).any(|c| c == name)
    }

    /// The cluster's Kubernetes minor version (`"1.32"` → 32).
    pub fn minor_version(&self) -> u32 {
        self.cluster
            .kubernetes_version
            .split('.')
            .nth(1)
            .and_then(|m| m.parse().ok())
            .unwrap_or(0)
    }

    /// Whether a GPU pool is present on this cluster.
    pub fn has_pool(&self, pool: &str) -> bool {
        self.cluster.gpu_pools.iter().any(|p| p == pool)
    }

    /// The storage class for a volume: the spec's, the cluster's, the platform's.
    pub fn storage_class(&self, explicit: Option<&String>) -> Option<String> {
        explicit
            .or(self.cluster.storage_class.as_ref())
            .or(self.platform.defaults.storage_class.as_ref())
            .cloned()
    }

    /// Object metadata with plinth's labels and the spec's own labels and annotations.
    pub fn meta<S>(
        &self,
        name: &str,
        namespace: Option<&str>,
        project: Option<&str>,
        spec: &Object<S>,
    ) -> ObjectMeta {
        let mut labels: BTreeMap<String, String> = spec.metadata.labels.clone();
        labels.insert(MANAGED_BY.0.to_owned(), MANAGED_BY.1.to_owned());
        if let Some(p) = project {
            labels.insert(PROJECT_LABEL.to_owned(), p.to_owned());
        }
        let annotations = spec.metadata.annotations.clone();
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: namespace.map(str::to_owned),
            labels: Some(labels),
            annotations: if annotations.is_empty() {
                None
            } else {
                Some(annotations)
            },
            ..ObjectMeta::default()
        }
    }
}

/// Facts about the whole platform that lowering looks up often, computed once.
#[derive(Debug, Default)]
///
/// Its maps are looked up, never walked (a fast hasher: built for every compile and every
/// unit lowered).
pub struct Index<'a> {
    /// Per project: its GPU allocations as (pool, allocation), pools in name order.
    pub allocations: Lookup<'a, Vec<(&'a str, &'a crate::model::gpu::Allocation)>>,
    /// App templates' values schemas and the templates themselves, compiled once per compile.
    pub templates: std::sync::Arc<crate::template::TemplateCache>,
    /// Per project: the datasets granted to it, in name order.
    pub dataset_grants: Lookup<'a, Vec<&'a Object<crate::model::DatasetSpec>>>,
    /// Datasets every project may read, in name order.
    pub global_datasets: Vec<&'a Object<crate::model::DatasetSpec>>,
    /// Per GCS bucket, the datasets in it, in name order.
    pub datasets_by_bucket: Lookup<'a, Vec<&'a Object<crate::model::DatasetSpec>>>,
    /// Per Azure storage account, the datasets in it, in name order.
    pub datasets_by_account: Lookup<'a, Vec<&'a Object<crate::model::DatasetSpec>>>,
}

/// A map of an [`Index`], by name.
pub type Lookup<'a, V> = std::collections::HashMap<&'a str, V, foldhash::fast::RandomState>;

impl<'a> Index<'a> {
    pub fn new(specs: &'a Specs) -> Index<'a> {
        Index::with_templates(specs, &std::sync::Arc::default())
    }

    /// An index whose values schemas and compiled templates come from (and go to)
    /// `templates`.
    pub fn with_templates(
        specs: &'a Specs,
        templates: &std::sync::Arc<crate::template::TemplateCache>,
    ) -> Index<'a> {
        let mut allocations: Lookup<'_, Vec<(&str, &crate::model::gpu::Allocation)>> =
            Lookup::default();
        for (pool, q) in &specs.gpu_quotas {
            for a in &q.spec.allocations {
                allocations
                    .entry(a.project.as_str())
                    .or_default()
                    .push((pool.as_str(), a));
            }
        }
        let mut dataset_grants: Lookup<'_, Vec<&Object<crate::model::DatasetSpec>>> =
            Lookup::default();
        let mut global_datasets = Vec::new();
        let mut datasets_by_bucket: Lookup<'_, Vec<&Object<crate::model::DatasetSpec>>> =
            Lookup::default();
        let mut datasets_by_account: Lookup<'_, Vec<&Object<crate::model::DatasetSpec>>> =
            Lookup::default();
        for d in specs.datasets.values() {
            if d.spec.global {
                global_datasets.push(d);
            }
            if let Some(g) = &d.spec.source.gcs {
                datasets_by_bucket.entry(&g.bucket).or_default().push(d);
            }
            if let Some(a) = &d.spec.source.azure_blob {
                datasets_by_account
                    .entry(&a.storage_account)
                    .or_default()
                    .push(d);
            }
            let mut granted: Vec<&str> = d.spec.access.iter().map(|g| g.project.as_str()).collect();
            granted.sort_unstable();
            granted.dedup();
            for p in granted {
                dataset_grants.entry(p).or_default().push(d);
            }
        }
        Index {
            allocations,
            templates: templates.clone(),
            dataset_grants,
            global_datasets,
            datasets_by_bucket,
            datasets_by_account,
        }
    }

    /// The datasets a project may use (granted to it, or global), in name order, once each.
    pub fn datasets_of(&self, project: &str) -> Vec<&'a Object<crate::model::DatasetSpec>> {
        let mut all: Vec<&Object<crate::model::DatasetSpec>> = self
            .dataset_grants
            .get(project)
            .into_iter()
            .flatten()
            .chain(&self.global_datasets)
            .copied()
            .collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        all.dedup_by(|a, b| a.name() == b.name());
        all
    }
}
