//! Typed custom resources plinth emits (Kueue, KServe, Argo Rollouts, Istio, Crossplane), and their
//! JSON Schemas in `schemas/crds/`.
//!
//! Each kind is a spec struct implementing [`CrdSpec`]; [`object`] wraps it with `apiVersion`,
//! `kind` and `metadata`. The schemas (generated from these structs, committed, and checked for
//! drift like the spec schemas) cover exactly the fields plinth emits, written from the
//! upstream API references; emitted objects are validated against them before anything is
//! written. Tests additionally validate the output against the upstream CRDs.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde::Serialize;
use serde_json::{Value, json};

/// A custom resource kind plinth emits.
pub trait CrdSpec: Serialize + JsonSchema {
    /// `group/version`.
    const API_VERSION: &'static str;
    const KIND: &'static str;
    const NAMESPACED: bool;
    /// Whether the payload sits under `spec` (most kinds) or at the top level
    /// (Kueue's WorkloadPriorityClass carries `value` and `description` directly).
    const TOP_LEVEL: bool = false;
}

/// A custom resource ready to serialise.
pub fn object<S: CrdSpec>(metadata: ObjectMeta, spec: &S) -> Value {
    let mut v = json!({ "apiVersion": S::API_VERSION, "kind": S::KIND });
    let meta = serde_json::to_value(metadata).unwrap_or_else(|_| json!({}));
    v["metadata"] = meta;
    let body = serde_json::to_value(spec).unwrap_or_else(|_| json!({}));
    if S::TOP_LEVEL {
        if let (Some(o), Value::Object(b)) = (v.as_object_mut(), body) {
            o.extend(b);
        }
    } else {
        v["spec"] = body;
    }
    v
}

/// File name of a kind's schema in `schemas/crds/`: `<group>_<version>_<Kind>.json`.
pub fn schema_file(api_version: &str, kind: &str) -> String {
    format!("{}_{kind}.json", api_version.replace('/', "_"))
}

fn schema_of<S: CrdSpec>() -> (String, Value) {
    let mut generator = SchemaSettings::draft2020_12()
        .for_serialize()
        .into_generator();
    let body = generator.subschema_for::<S>();
    let defs = generator.take_definitions(true);
    let mut properties = serde_json::Map::new();
    properties.insert("apiVersion".into(), json!({ "const": S::API_VERSION }));
    properties.insert("kind".into(), json!({ "const": S::KIND }));
    properties.insert("metadata".into(), json!({ "$ref": "#/$defs/ObjectMeta" }));
    let mut required = vec![json!("apiVersion"), json!("kind"), json!("metadata")];
    if S::TOP_LEVEL {
        // Inline the body's properties next to the type meta.
        let inner = defs
            .get(S::schema_name().as_ref())
            .cloned()
            .unwrap_or(Value::Null);
        if let Some(p) = inner.get("properties").and_then(Value::as_object) {
            for (k, v) in p {
                properties.insert(k.clone(), v.clone());
            }
        }
        if let Some(r) = inner.get("required").and_then(Value::as_array) {
            required.extend(r.iter().cloned());
        }
    } else {
        properties.insert("spec".into(), body.to_value());
        required.push(json!("spec"));
    }
    let mut defs = defs;
    defs.insert(
        "ObjectMeta".into(),
        json!({
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": { "type": "string", "maxLength": 253, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$" },
                "namespace": { "type": "string", "maxLength": 63, "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" },
                "labels": { "type": "object", "additionalProperties": { "type": "string" } },
                "annotations": { "type": "object", "additionalProperties": { "type": "string" } }
            },
            "additionalProperties": false
        }),
    );
    let schema = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("https://plinth.dev/schemas/crds/{}", schema_file(S::API_VERSION, S::KIND)),
        "title": format!("{} {} (fields plinth emits)", S::API_VERSION, S::KIND),
        "type": "object",
        "required": required,
        "additionalProperties": false,
        "properties": properties,
        "$defs": defs,
    });
    (schema_file(S::API_VERSION, S::KIND), schema)
}

/// Every custom resource kind plinth emits: (api version, kind, namespaced).
pub fn kinds() -> Vec<(&'static str, &'static str, bool)> {
    registry()
        .into_iter()
        .map(|r| (r.api_version, r.kind, r.namespaced))
        .collect()
}

/// A registered kind: what [`registry`] lists.
pub(crate) struct Registered {
    api_version: &'static str,
    kind: &'static str,
    namespaced: bool,
    schema: fn() -> (String, Value),
}

/// `register![TypeA, TypeB]`: the [`Registered`] entries of some [`CrdSpec`] types.
macro_rules! register {
    ($($t:ty),* $(,)?) => {
        vec![$($crate::crd::Registered::new::<$t>()),*]
    };
}
pub(crate) use register;

impl Registered {
    pub(crate) fn new<S: CrdSpec>() -> Registered {
        Registered {
            api_version: S::API_VERSION,
            kind: S::KIND,
            namespaced: S::NAMESPACED,
            schema: schema_of::<S>,
        }
    }
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

/// Compiled validators of the CRD schemas, by (apiVersion, kind). They are generated from the
/// types in memory; the committed files equal them (test `crd_schemas_match_types`).
pub fn validators() -> &'static BTreeMap<(String, String), jsonschema::Validator> {
    static CELL: std::sync::OnceLock<BTreeMap<(String, String), jsonschema::Validator>> =
        std::sync::OnceLock::new();
    CELL.get_or_init(|| {
        registry()
            .into_iter()
            .filter_map(|r| {
                let (_, schema) = (r.schema)();
                let v = jsonschema::draft202012::new(&schema).ok()?;
                Some(((r.api_version.to_owned(), r.kind.to_owned()), v))
            })
            .collect()
    })
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
            let v: Value = serde_json::from_str(text).expect("json");
            assert!(jsonschema::meta::is_valid(&v));
        }
    }
}
