//! What every custom resource kind shares: the [`CrdSpec`] trait its spec type implements, the
//! object wrapper ([`object`]), its schema (generated from the type) and its registration.

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

/// A registered kind: what `crd::registry` lists.
pub(crate) struct Registered {
    pub(crate) api_version: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) namespaced: bool,
    pub(crate) schema: fn() -> (String, Value),
}

/// `register![TypeA, TypeB]`: the [`Registered`] entries of some [`CrdSpec`] types.
macro_rules! register {
    ($($t:ty),* $(,)?) => {
        vec![$($crate::crd::spec::Registered::new::<$t>()),*]
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
