//! Failures as the apiserver reports them: a `Status` object with `status: Failure`, a
//! `reason`, a `message`, `details` and the HTTP `code` (always both `status` and `code`).

use serde_json::{Map, Value, json};

use crate::registry::KindInfo;
use crate::ssa::Conflict;

/// An error answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// One `details.causes` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

impl Cause {
    /// `field: Invalid value: "v": msg`
    pub fn invalid(field: &str, value: &str, msg: &str) -> Cause {
        Cause {
            reason: "FieldValueInvalid".into(),
            message: format!("Invalid value: {}: {msg}", Value::String(value.into())),
            field: field.into(),
        }
    }

    pub fn required(field: &str, msg: &str) -> Cause {
        Cause {
            reason: "FieldValueRequired".into(),
            message: format!("Required value: {msg}"),
            field: field.into(),
        }
    }

    pub fn forbidden(field: &str, msg: &str) -> Cause {
        Cause {
            reason: "FieldValueForbidden".into(),
            message: format!("Forbidden: {msg}"),
            field: field.into(),
        }
    }
}

fn details(name: &str, kind: &KindInfo, resource_kind: bool) -> Map<String, Value> {
    let mut d = Map::new();
    d.insert("name".into(), json!(name));
    if !kind.group.is_empty() {
        d.insert("group".into(), json!(kind.group));
    }
    d.insert(
        "kind".into(),
        json!(if resource_kind {
            &kind.plural
        } else {
            &kind.kind
        }),
    );
    d
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    /// `configmaps "c" not found`
    pub fn not_found(kind: &KindInfo, name: &str) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("{} \"{name}\" not found", kind.qualified_resource()),
            details: Some(Value::Object(details(name, kind, true))),
        }
    }

    /// `namespaces "x" not found`
    pub fn namespace_not_found(ns: &str) -> ApiError {
        ApiError {
            code: 404,
            reason: "NotFound",
            message: format!("namespaces \"{ns}\" not found"),
            details: Some(json!({"name": ns, "kind": "namespaces"})),
        }
    }

    /// `configmaps "c" already exists`
    pub fn already_exists(kind: &KindInfo, name: &str) -> ApiError {
        ApiError {
            code: 409,
            reason: "AlreadyExists",
            message: format!("{} \"{name}\" already exists", kind.qualified_resource()),
            details: Some(Value::Object(details(name, kind, true))),
        }
    }

    /// An update against a stale resourceVersion.
    pub fn stale(kind: &KindInfo, name: &str) -> ApiError {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                kind.qualified_resource()
            ),
            details: Some(Value::Object(details(name, kind, true))),
        }
    }

    /// A failed delete precondition.
    pub fn precondition(kind: &KindInfo, name: &str, message: String) -> ApiError {
        ApiError {
            code: 409,
            reason: "Conflict",
            message: format!(
                "Operation cannot be fulfilled on {} \"{name}\": {message}",
                kind.qualified_resource()
            ),
            details: Some(Value::Object(details(name, kind, true))),
        }
    }

    /// Server-side apply conflicts, in the apiserver's wording.
    pub fn apply_conflict(kind: &KindInfo, name: &str, conflicts: &[Conflict]) -> ApiError {
        let message = if let [c] = conflicts {
            format!(
                "Apply failed with 1 conflict: conflict with {}: {}",
                c.manager,
                c.field()
            )
        } else {
            let mut managers: Vec<&str> = conflicts.iter().map(|c| c.manager.as_str()).collect();
            managers.sort();
            managers.dedup();
            let mut lines = Vec::new();
            for m in managers {
                lines.push(format!("conflicts with {m}:"));
                for c in conflicts.iter().filter(|c| c.manager == m) {
                    lines.push(format!("- {}", c.field()));
                }
            }
            format!(
                "Apply failed with {} conflicts: {}",
                conflicts.len(),
                lines.join("\n")
            )
        };
        let mut d = details(name, kind, true);
        d.insert(
            "causes".into(),
            Value::Array(
                conflicts
                    .iter()
                    .map(|c| {
                        json!({
                            "reason": "FieldManagerConflict",
                            "message": format!("conflict with {}", c.manager),
                            "field": c.field(),
                        })
                    })
                    .collect(),
            ),
        );
        ApiError {
            code: 409,
            reason: "Conflict",
            message,
            details: Some(Value::Object(d)),
        }
    }

    /// 422: `ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: ...`
    pub fn invalid(kind: &KindInfo, name: &str, causes: &[Cause]) -> ApiError {
        let parts: Vec<String> = causes
            .iter()
            .map(|c| format!("{}: {}", c.field, c.message))
            .collect();
        let joined = if parts.len() == 1 {
            parts[0].clone()
        } else {
            format!("[{}]", parts.join(", "))
        };
        let mut d = details(name, kind, false);
        d.insert(
            "causes".into(),
            Value::Array(
                causes
                    .iter()
                    .map(|c| json!({"reason": c.reason, "message": c.message, "field": c.field}))
                    .collect(),
            ),
        );
        ApiError {
            code: 422,
            reason: "Invalid",
            message: format!("{} \"{name}\" is invalid: {joined}", kind.qualified_kind()),
            details: Some(Value::Object(d)),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn unsupported_media_type(content_type: &str, accepted: &[&str]) -> ApiError {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: {}",
                if accepted.is_empty() {
                    content_type.to_string()
                } else {
                    accepted.join(", ")
                }
            ),
        )
    }

    pub fn path_not_found() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    /// The `Status` object.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("kind".into(), json!("Status"));
        m.insert("apiVersion".into(), json!("v1"));
        m.insert("metadata".into(), json!({}));
        m.insert("status".into(), json!("Failure"));
        m.insert("message".into(), json!(self.message));
        m.insert("reason".into(), json!(self.reason));
        if let Some(d) = &self.details {
            m.insert("details".into(), d.clone());
        }
        m.insert("code".into(), json!(self.code));
        Value::Object(m)
    }
}
