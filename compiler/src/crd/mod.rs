//! Typed custom resources plinth emits (Kueue, KServe, Argo Rollouts, Istio, Crossplane), and their
//! JSON Schemas in `schemas/crds/`.
//!
//! Each kind is a spec struct implementing [`CrdSpec`]; [`object`] wraps it with `apiVersion`,
//! `kind` and `metadata`. The schemas (generated from these structs, committed, and checked for
//! drift like the spec schemas) cover exactly the fields plinth emits, written from the
//! upstream API references; emitted objects are validated against them before anything is
//! written. Tests additionally validate the output against the upstream CRDs.

use std::collections::BTreeMap;

pub mod spec;

use spec::Registered;
pub use spec::{CrdSpec, object, schema_file};

/// Every custom resource kind plinth emits: (api version, kind, namespaced).
pub fn kinds() -> Vec<(&'static str, &'static str, bool)> {
    registry()
        .into_iter()
        .map(|r| (r.api_version, r.kind, r.namespaced))
        .collect()
}

/// Every kind, one module per API family.
fn registry() -> Vec<Registered> {
    let mut r = kueue::register();
    r.extend(kserve::register());
    r.extend(argo::register());
    r.extend(crossplane::register());
    r.extend(istio::register());
    r
}

/// The CRD schemas as committed (`schemas/crds/*.json`, by file name), embedded when plinth is
/// built: what the cache's fingerprint hashes of them ([`crate::cache::fingerprint`]).
pub const COMMITTED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/committed_crds.rs"));

/// Every schema file of `schemas/crds/`, by file name, as its exact committed text.
pub fn generate_all() -> BTreeMap<String, String> {
    registry()
        .into_iter()
        .map(|r| {
            let (name, v) = (r.schema)();
            let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
            s.push('\n');
            (name, s)
        })
        .collect()
}

/// A custom resource kind plinth emits, as [`find`] gives it.
pub struct Crd {
    /// Whether its objects live in a namespace.
    pub namespaced: bool,
    schema: fn() -> (String, serde_json::Value),
    validator: std::sync::OnceLock<Option<jsonschema::Validator>>,
}

impl Crd {
    /// The compiled validator of its schema (generated from its type in memory; the committed
    /// file equals it, test `crd_schemas_match_types`), compiled when first asked for: a
    /// compile that verifies a few units compiles only their kinds' schemas. `None` if it does
    /// not compile.
    pub fn validator(&self) -> Option<&jsonschema::Validator> {
        self.validator
            .get_or_init(|| jsonschema::draft202012::new(&(self.schema)().1).ok())
            .as_ref()
    }
}

/// The custom resource kind `kind` of `api_version`, if plinth emits it.
pub fn find(api_version: &str, kind: &str) -> Option<&'static Crd> {
    type Kinds = Vec<((&'static str, &'static str), Crd)>;
    static CELL: std::sync::OnceLock<Kinds> = std::sync::OnceLock::new();
    let all = CELL.get_or_init(|| {
        let mut all: Kinds = registry()
            .into_iter()
            .map(|r| {
                let crd = Crd {
                    namespaced: r.namespaced,
                    schema: r.schema,
                    validator: std::sync::OnceLock::new(),
                };
                ((r.api_version, r.kind), crd)
            })
            .collect();
        all.sort_by_key(|(key, _)| *key);
        all
    });
    let at = all
        .binary_search_by(|((v, k), _)| (*v, *k).cmp(&(api_version, kind)))
        .ok()?;
    Some(&all[at].1)
}

pub mod argo;
pub mod crossplane;
pub mod istio;
pub mod kserve;
pub mod kueue;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_found_with_a_compiling_schema() {
        for (api_version, kind, namespaced) in kinds() {
            let crd = find(api_version, kind).expect("registered kind found");
            assert_eq!(crd.namespaced, namespaced, "{api_version} {kind}");
            let validator = crd.validator().expect("schema compiles");
            // The same validator every time (compiled once).
            assert!(std::ptr::eq(validator, crd.validator().expect("again")));
            // It validates: an object of another shape is refused.
            assert!(!validator.is_valid(&serde_json::json!({"spec": 7})));
        }
        assert!(find("kueue.x-k8s.io/v1beta1", "NoSuchKind").is_none());
        assert!(find("v1", "ConfigMap").is_none());
    }

    /// What the cache's fingerprint hashes of the CRD schemas (their committed texts, embedded
    /// when plinth was built) is what the schemas generated from their types are: a type that
    /// changes its schema changes every cache key.
    #[test]
    fn the_embedded_schemas_are_the_generated_ones() {
        let embedded: BTreeMap<String, String> = COMMITTED
            .iter()
            .map(|(n, t)| ((*n).to_owned(), (*t).to_owned()))
            .collect();
        assert_eq!(embedded, generate_all());
    }

    #[test]
    fn crd_schemas_match_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/crds");
        let update = std::env::var_os("PLINTH_UPDATE_SCHEMAS").is_some();
        let generated = generate_all();
        let mut stale = Vec::new();
        for (name, text) in &generated {
            let path = dir.join(name);
            if std::fs::read_to_string(&path).unwrap_or_default() != *text {
                if update {
                    std::fs::create_dir_all(&dir).expect("mkdir");
                    std::fs::write(&path, text).expect("write");
                } else {
                    stale.push(name.clone());
                }
            }
        }
        // No stale files for kinds plinth no longer emits.
        for entry in std::fs::read_dir(&dir).expect("schemas/crds") {
            let name = entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned();
            if name.ends_with(".json") && !generated.contains_key(&name) {
                if update {
                    std::fs::remove_file(dir.join(&name)).expect("remove");
                } else {
                    stale.push(name);
                }
            }
        }
        assert!(
            stale.is_empty(),
            "schemas/crds is out of step: {stale:?}; run `PLINTH_UPDATE_SCHEMAS=1 cargo test -p plinth schema`"
        );
        for text in generated.values() {
            let v: serde_json::Value = serde_json::from_str(text).expect("json");
            assert!(jsonschema::meta::is_valid(&v));
        }
    }
}
