//! Schemas: the JSON Schemas of the spec kinds, generated from [`crate::model`], and
//! validation of documents against them with located diagnostics.
//!
//! The files in `schemas/` are what editors use (`# yaml-language-server: $schema=...`) and
//! what the compiler validates with (they are embedded at build time). `generate_all` rebuilds
//! them from the Rust types; the `schemas_match_types` test fails when the committed files
//! and the types drift, and `PLINTH_UPDATE_SCHEMAS=1 cargo test` rewrites them.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use crate::diag::{Code, Diagnostic, Label, did_you_mean};
use crate::model::quantity::QUANTITY_PATTERN;
use crate::model::{
    API_VERSION, AppSpec, DatasetSpec, GpuQuotaSpec, Kind, Metadata, ModelRolloutSpec,
    PlatformSpec, ProjectSpec,
};
use crate::parse::{Document, FieldPath, Seg};

/// Where the schemas are published; `$id`s are built from it.
pub const SCHEMA_BASE: &str = "https://plinth.dev/schemas/v1alpha1/";

/// The schema of one kind, generated from the Rust types.
pub fn generate(kind: Kind) -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .for_deserialize()
        .into_generator();
    let spec = match kind {
        Kind::Platform => generator.subschema_for::<PlatformSpec>(),
        Kind::Project => generator.subschema_for::<ProjectSpec>(),
        Kind::Dataset => generator.subschema_for::<DatasetSpec>(),
        Kind::GpuQuota => generator.subschema_for::<GpuQuotaSpec>(),
        Kind::ModelRollout => generator.subschema_for::<ModelRolloutSpec>(),
        Kind::App => generator.subschema_for::<AppSpec>(),
    };
    let metadata = generator.subschema_for::<Metadata>();
    let defs = generator.take_definitions(true);
    let description = match kind {
        Kind::Platform => {
            "plinth Platform: clusters, defaults, identity, backends and policy sources"
        }
        Kind::Project => {
            "plinth Project: a tenant team with its members, quotas, volumes and network"
        }
        Kind::Dataset => {
            "plinth Dataset: versioned data and the projects that may read or write it"
        }
        Kind::GpuQuota => "plinth GpuQuota: a GPU pool, its instance types and allocations",
        Kind::ModelRollout => {
            "plinth ModelRollout: a served model and how traffic moves between versions"
        }
        Kind::App => "plinth App: a third-party tool rendered from a template",
    };
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("{SCHEMA_BASE}{}", kind.schema_file()),
        "title": kind.as_str(),
        "description": description,
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": false,
        "properties": {
            "apiVersion": { "const": API_VERSION },
            "kind": { "const": kind.as_str() },
            "metadata": metadata,
            "spec": spec,
        },
        "$defs": Value::Object(defs),
    })
}

/// Every schema file of `schemas/`, by file name, as its exact committed text.
pub fn generate_all() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for kind in Kind::ALL {
        out.insert(kind.schema_file(), pretty(&generate(kind)));
    }
    let branches: Vec<Value> = Kind::ALL
        .iter()
        .map(|k| {
            json!({
                "if": { "properties": { "kind": { "const": k.as_str() } }, "required": ["kind"] },
                "then": { "$ref": k.schema_file() }
            })
        })
        .collect();
    let any = json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("{SCHEMA_BASE}plinth.schema.json"),
        "title": "plinth spec",
        "description": "Any plinth spec document; the `kind` picks the schema.",
        "type": "object",
        "required": ["apiVersion", "kind"],
        "properties": {
            "apiVersion": { "const": API_VERSION },
            "kind": { "enum": Kind::ALL.iter().map(|k| k.as_str()).collect::<Vec<_>>() }
        },
        "allOf": branches,
    });
    out.insert("plinth.schema.json".to_owned(), pretty(&any));
    out
}

fn pretty(v: &Value) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_default();
    s.push('\n');
    s
}

/// The committed schema texts, embedded so the binary validates with exactly what editors see.
pub fn committed(kind: Kind) -> &'static str {
    match kind {
        Kind::Platform => include_str!("../../schemas/platform.schema.json"),
        Kind::Project => include_str!("../../schemas/project.schema.json"),
        Kind::Dataset => include_str!("../../schemas/dataset.schema.json"),
        Kind::GpuQuota => include_str!("../../schemas/gpuquota.schema.json"),
        Kind::ModelRollout => include_str!("../../schemas/modelrollout.schema.json"),
        Kind::App => include_str!("../../schemas/app.schema.json"),
    }
}

struct Compiled {
    schema: Value,
    validator: Validator,
}

fn compiled(kind: Kind) -> &'static Compiled {
    static CELLS: [OnceLock<Compiled>; 6] = [const { OnceLock::new() }; 6];
    let i = Kind::ALL.iter().position(|k| *k == kind).unwrap_or(0);
    CELLS[i].get_or_init(|| {
        // The committed schema is valid by the `schemas_match_types` test; fall back to the
        // generated one so a hand-broken file cannot take the compiler down.
        let schema: Value =
            serde_json::from_str(committed(kind)).unwrap_or_else(|_| generate(kind));
        let validator = jsonschema::draft202012::new(&schema)
            .or_else(|_| jsonschema::draft202012::new(&generate(kind)))
            .unwrap_or_else(|e| panic!("generated schema of {kind} does not compile: {e}"));
        Compiled { schema, validator }
    })
}

/// Validate a document (already known to be of `kind`) against its schema.
pub fn validate(doc: &Document, kind: Kind, instance: &Value) -> Vec<Diagnostic> {
    let c = compiled(kind);
    let mut out = Vec::new();
    for err in c.validator.iter_errors(instance) {
        map_error(doc, &c.schema, &err, &mut out);
    }
    out
}

fn path_of(doc: &Document, err: &ValidationError<'_>) -> FieldPath {
    FieldPath::from_pointer(err.instance_path().as_str()).resolve_against(doc.root())
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "mapping",
    }
}

fn kind_name(k: &TypeKind) -> String {
    let one = |t: &jsonschema::JsonType| match t.to_string().as_str() {
        "array" => "list".to_owned(),
        "object" => "mapping".to_owned(),
        other => other.to_owned(),
    };
    match k {
        TypeKind::Single(t) => one(t),
        TypeKind::Multiple(ts) => {
            let names: Vec<String> = ts
                .iter()
                .filter(|t| t.to_string() != "null")
                .map(|t| one(&t))
                .collect();
            names.join(" or ")
        }
    }
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

fn map_error(doc: &Document, schema: &Value, err: &ValidationError<'_>, out: &mut Vec<Diagnostic>) {
    let path = path_of(doc, err);
    let at = || doc.label(&path);
    let where_ = if path.is_root() {
        "the document".to_owned()
    } else {
        format!("`{path}`")
    };
    let instance: &Value = err.instance().as_ref();
    match err.kind() {
        ValidationErrorKind::AdditionalProperties { unexpected } => {
            unknown_fields(doc, schema, &path, &where_, unexpected, out);
        }
        ValidationErrorKind::Required { property } => {
            out.push(missing_field(doc, &path, &where_, property));
        }
        ValidationErrorKind::Type { kind } => {
            wrong_type(kind, instance, &where_, &at, out);
        }
        ValidationErrorKind::Enum { options } => {
            let opts: Vec<String> = options
                .as_array()
                .map(|a| a.iter().map(short).collect())
                .unwrap_or_default();
            out.push(enum_error(instance, &opts, &where_, at()));
        }
        ValidationErrorKind::Constant { expected_value } => out.push(
            Diagnostic::new(
                Code::InvalidValue,
                format!("{where_} must be `{}`", short(expected_value)),
            )
            .at(at()),
        ),
        ValidationErrorKind::Pattern { pattern } => {
            out.push(pattern_error(instance, pattern, &where_, at()))
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context }
            if !context.is_empty()
                && context.iter().flatten().all(|e| {
                    matches!(
                        e.kind(),
                        ValidationErrorKind::Constant { .. } | ValidationErrorKind::Enum { .. }
                    ) && e.instance_path() == err.instance_path()
                }) =>
        {
            enum_of_consts(context, instance, &where_, &at, out);
        }
        ValidationErrorKind::AnyOf { context } | ValidationErrorKind::OneOfNotValid { context } => {
            furthest_branch(doc, schema, err, context, instance, &where_, &at, out);
        }
        ValidationErrorKind::MinProperties { .. } | ValidationErrorKind::MaxProperties { .. } => {
            exactly_one_field(schema, &path, instance, &where_, &at, out);
        }
        ValidationErrorKind::Minimum { limit }
        | ValidationErrorKind::ExclusiveMinimum { limit } => out.push(
            Diagnostic::new(
                Code::InvalidValue,
                format!(
                    "{where_} is {}, below the minimum of {limit}",
                    short(instance)
                ),
            )
            .at(at()),
        ),
        ValidationErrorKind::Maximum { limit }
        | ValidationErrorKind::ExclusiveMaximum { limit } => out.push(
            Diagnostic::new(
                Code::InvalidValue,
                format!(
                    "{where_} is {}, above the maximum of {limit}",
                    short(instance)
                ),
            )
            .at(at()),
        ),
        ValidationErrorKind::MinItems { limit } => out.push(
            Diagnostic::new(
                Code::InvalidValue,
                format!("{where_} needs at least {limit} item(s)"),
            )
            .at(at()),
        ),
        ValidationErrorKind::MaxItems { limit } => out.push(
            Diagnostic::new(
                Code::InvalidValue,
                format!("{where_} takes at most {limit} item(s)"),
            )
            .at(at()),
        ),
        ValidationErrorKind::MinLength { limit } => out.push(
            Diagnostic::new(
                Code::InvalidValue,
                format!("{where_} must be at least {limit} character(s) long"),
            )
            .at(at()),
        ),
        ValidationErrorKind::MaxLength { limit } => out.push(
            Diagnostic::new(
                Code::InvalidValue,
                format!("{where_} must be at most {limit} characters long"),
            )
            .at(at()),
        ),
        ValidationErrorKind::PropertyNames { error } => {
            let key = short(error.instance());
            out.push(
                Diagnostic::new(
                    Code::InvalidValue,
                    format!("`{key}` is not a valid name in {where_}"),
                )
                .at(doc.key_label(&path.clone().key(key.clone()))),
            );
        }
        _ => out.push(Diagnostic::new(Code::InvalidValue, format!("{where_}: {err}")).at(at())),
    }
}

/// A required field that is missing, located at its mapping.
fn missing_field(doc: &Document, path: &FieldPath, where_: &str, property: &Value) -> Diagnostic {
    let name = property.as_str().unwrap_or_default();
    let field = path.clone().key(name);
    Diagnostic::new(
        Code::MissingField,
        format!("missing field `{name}` in {where_}"),
    )
    .at(doc.label(&field))
    .hint(format!("add `{name}:` to {where_}"))
}

/// Fields the schema does not know, each with the field it most likely meant.
fn unknown_fields(
    doc: &Document,
    schema: &Value,
    path: &FieldPath,
    where_: &str,
    unexpected: &[String],
    out: &mut Vec<Diagnostic>,
) {
    let allowed = allowed_keys(schema, path);
    for key in unexpected {
        let field = path.clone().key(key.clone());
        let mut d = Diagnostic::new(
            Code::UnknownField,
            format!("unknown field `{key}` in {where_}"),
        )
        .at(doc.key_label(&field));
        let suggestion = did_you_mean(key, allowed.iter().map(String::as_str));
        d = match (suggestion, key.as_str()) {
            (_, "<<") => d.hint("YAML merge keys (`<<`) are not supported; write the fields out"),
            (Some(s), _) => d.hint(format!("did you mean `{s}`?")),
            (None, _) if !allowed.is_empty() => d.hint(format!(
                "allowed fields here: {}",
                allowed
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            _ => d,
        };
        out.push(d);
    }
}

/// A value of the wrong type, with how to write the expected one.
fn wrong_type(
    kind: &TypeKind,
    instance: &Value,
    where_: &str,
    at: &impl Fn() -> Label,
    out: &mut Vec<Diagnostic>,
) {
    let expected = kind_name(kind);
    let found = type_name(instance);
    let mut d = Diagnostic::new(
        Code::WrongType,
        format!(
            "{where_} must be {}, found {}",
            article(&expected),
            article(found)
        ),
    )
    .at(at());
    if expected == "string" && matches!(instance, Value::Number(_) | Value::Bool(_)) {
        d = d.hint(format!("quote the value: `\"{}\"`", short(instance)));
    } else if expected == "list" && found == "mapping" {
        d = d.hint("start each item with `- `");
    } else if expected == "integer" {
        d = d.hint("write a whole number, e.g. `8`");
    } else if expected == "boolean" {
        d = d.hint("write `true` or `false`");
    }
    out.push(d);
}

/// An enum whose variants carry docs: `oneOf` of `const`s.
fn enum_of_consts(
    context: &[Vec<ValidationError<'static>>],
    instance: &Value,
    where_: &str,
    at: &impl Fn() -> Label,
    out: &mut Vec<Diagnostic>,
) {
    // An enum whose variants carry docs: `oneOf` of `const`s.
    let mut opts: Vec<String> = Vec::new();
    for e in context.iter().flatten() {
        match e.kind() {
            ValidationErrorKind::Constant { expected_value } => opts.push(short(expected_value)),
            ValidationErrorKind::Enum { options } => {
                opts.extend(options.as_array().into_iter().flatten().map(short));
            }
            _ => {}
        }
    }
    out.push(enum_error(instance, &opts, where_, at()));
}

/// `anyOf`/`oneOf` (`Option<T>`, `Quantity`): the branch that got furthest, or the types expected.
#[allow(clippy::too_many_arguments)]
fn furthest_branch(
    doc: &Document,
    schema: &Value,
    err: &ValidationError<'_>,
    context: &[Vec<ValidationError<'static>>],
    instance: &Value,
    where_: &str,
    at: &impl Fn() -> Label,
    out: &mut Vec<Diagnostic>,
) {
    // Option<T> and Quantity produce `anyOf`. Report the branch that got furthest:
    // one that did not fail on the value's type alone.
    let informative = context.iter().find(|branch| {
        !branch.iter().all(|e| {
            matches!(e.kind(), ValidationErrorKind::Type { .. })
                && e.instance_path() == err.instance_path()
        })
    });
    match informative {
        Some(branch) => {
            for e in branch {
                map_error(doc, schema, e, out);
            }
        }
        None => {
            let expected: Vec<String> = context
                .iter()
                .flatten()
                .filter_map(|e| match e.kind() {
                    ValidationErrorKind::Type { kind } => Some(kind_name(kind)),
                    _ => None,
                })
                .filter(|k| k != "null")
                .collect();
            out.push(
                Diagnostic::new(
                    Code::WrongType,
                    format!(
                        "{where_} must be {}, found {}",
                        article(&expected.join(" or ")),
                        article(type_name(instance))
                    ),
                )
                .at(at()),
            );
        }
    }
}

/// A one-of-several-fields mapping with none or more than one.
fn exactly_one_field(
    schema: &Value,
    path: &FieldPath,
    instance: &Value,
    where_: &str,
    at: &impl Fn() -> Label,
    out: &mut Vec<Diagnostic>,
) {
    let allowed = allowed_keys(schema, path);
    let list = allowed
        .iter()
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let given = instance.as_object().map_or(0, Map::len);
    let msg = if given == 0 {
        format!("{where_} needs exactly one field, found none")
    } else {
        format!("{where_} takes exactly one field, found {given}")
    };
    out.push(
        Diagnostic::new(Code::InvalidChoice, msg)
            .at(at())
            .hint(format!("choose one of {list}")),
    );
}

fn enum_error(
    instance: &Value,
    opts: &[String],
    where_: &str,
    at: crate::diag::Label,
) -> Diagnostic {
    let value = short(instance);
    let d = Diagnostic::new(
        Code::InvalidValue,
        format!("`{value}` is not a valid value for {where_}"),
    )
    .at(at);
    match did_you_mean(&value, opts.iter().map(String::as_str)) {
        Some(s) => d.hint(format!("did you mean `{s}`?")),
        None => d.hint(format!(
            "expected one of {}",
            opts.iter()
                .map(|o| format!("`{o}`"))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// `a string`, `an integer`.
fn article(noun: &str) -> String {
    let an = noun.starts_with(['a', 'e', 'i', 'o', 'u']);
    format!("{} {noun}", if an { "an" } else { "a" })
}

fn pattern_error(
    instance: &Value,
    pattern: &str,
    where_: &str,
    at: crate::diag::Label,
) -> Diagnostic {
    let value = short(instance);
    if pattern == QUANTITY_PATTERN {
        return Diagnostic::new(Code::InvalidQuantity, format!("`{value}` is not a valid quantity for {where_}"))
            .at(at)
            .hint("write a number with an optional suffix: `500m`, `2`, `16Gi`, `1Ti` (suffixes are case-sensitive)");
    }
    let hint = match pattern {
        p if p.contains("ms|s|m|h|d|w|y") => {
            "write a whole number and a unit: `30s`, `10m`, `1h`, `7d`".to_owned()
        }
        p if p.starts_with("^1\\.") => {
            "write the minor version as a quoted string, e.g. `\"1.32\"`".to_owned()
        }
        p if p.starts_with("^/") => "use an absolute path, starting with `/`".to_owned(),
        p if p.starts_with("^arn:aws") => {
            "write the full role ARN, `arn:aws:iam::<account-id>:role/<name>`".to_owned()
        }
        p if p.starts_with("^(s3|gs") => {
            "use `s3://`, `gs://`, `pvc://`, `hf://`, `https://`, `azureblob://` or `models:/`"
                .to_owned()
        }
        p => format!("the value must match `{p}`"),
    };
    Diagnostic::new(
        Code::InvalidValue,
        format!("`{value}` is not a valid value for {where_}"),
    )
    .at(at)
    .hint(hint)
}

/// The property names the schema allows at `path`, for "did you mean" hints.
fn allowed_keys(root: &Value, path: &FieldPath) -> Vec<String> {
    let mut node = root;
    for seg in &path.0 {
        node = deref(root, node);
        let next = match seg {
            Seg::Key(k) => node.get("properties").and_then(|p| p.get(k)),
            Seg::Index(_) => node.get("items"),
        };
        match next {
            Some(n) => node = n,
            None => return Vec::new(),
        }
    }
    let node = deref(root, node);
    node.get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}

/// Follow `$ref` and the non-null branch of `anyOf`/`oneOf`.
fn deref<'a>(root: &'a Value, mut node: &'a Value) -> &'a Value {
    for _ in 0..16 {
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            match r.strip_prefix('#').and_then(|p| root.pointer(p)) {
                Some(n) => {
                    node = n;
                    continue;
                }
                None => return node,
            }
        }
        if let Some(branches) = node
            .get("anyOf")
            .or_else(|| node.get("oneOf"))
            .and_then(Value::as_array)
            && let Some(b) = branches
                .iter()
                .find(|b| b.get("$ref").is_some() || b.get("properties").is_some())
        {
            node = b;
            continue;
        }
        return node;
    }
    node
}

/// Make sure a schema compiles (used by tests on the committed files).
pub fn compiles(schema: &Value) -> Result<(), String> {
    jsonschema::draft202012::new(schema)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_match_types() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas");
        let update = std::env::var_os("PLINTH_UPDATE_SCHEMAS").is_some();
        let mut stale = Vec::new();
        for (name, text) in generate_all() {
            let path = dir.join(&name);
            let current = std::fs::read_to_string(&path).unwrap_or_default();
            if current != text {
                if update {
                    std::fs::write(&path, &text).expect("write schema");
                } else {
                    stale.push(name);
                }
            }
        }
        assert!(
            stale.is_empty(),
            "schemas/ is out of step with the Rust types: {stale:?}; run `PLINTH_UPDATE_SCHEMAS=1 cargo test -p plinth schema` and review the diff"
        );
        for kind in Kind::ALL {
            let v: Value = serde_json::from_str(committed(kind)).expect("committed schema is JSON");
            compiles(&v).expect("committed schema compiles");
            assert!(
                jsonschema::meta::is_valid(&v),
                "{kind} schema is not a valid 2020-12 schema"
            );
        }
    }

    #[test]
    fn quantity_pattern_agrees_with_the_parser() {
        let v = jsonschema::validator_for(&json!({"type": "string", "pattern": QUANTITY_PATTERN}))
            .expect("compiles");
        for s in [
            "500m", "2", "16Gi", "1.5", ".5", "1e3", "+3", "3E-2", "1Ti", "100k",
        ] {
            assert!(v.is_valid(&json!(s)), "{s} should match");
            assert!(
                crate::model::quantity::parse_nanos(s).is_some(),
                "{s} should parse"
            );
        }
        for s in ["abc", "5Gb", "", "1.2.3", "-1", "1 Gi", "Gi"] {
            assert!(!v.is_valid(&json!(s)), "{s} should not match");
            assert!(
                crate::model::quantity::parse_nanos(s).is_none(),
                "{s} should not parse"
            );
        }
    }
}
