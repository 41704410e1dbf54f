//! Object validation the apiserver does for every kind: names, labels, and (for
//! `fieldValidation=Strict`) unknown top-level and metadata fields.

use serde_json::{Map, Value};

use crate::registry::KindInfo;
use crate::status::Cause;

const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')";
const DNS1035_MSG: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const NAME_PART_MSG: &str = "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
pub fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.split('.').all(is_dns1123_label)
}

fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
}

/// Problems with an object name, as messages (one cause each).
pub fn name_problems(kind: &KindInfo, name: &str) -> Vec<String> {
    let mut out = Vec::new();
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Namespace") => {
            if name.len() > 63 {
                out.push("must be no more than 63 characters".to_string());
            }
            if !is_dns1123_label(name) {
                out.push(LABEL_MSG.to_string());
            }
        }
        ("", "Service") => {
            if name.len() > 63 {
                out.push("must be no more than 63 characters".to_string());
            }
            if !is_dns1035_label(name) {
                out.push(DNS1035_MSG.to_string());
            }
        }
        ("rbac.authorization.k8s.io", _) => {
            if name == "." || name == ".." {
                out.push(format!("may not be '{name}'"));
            }
            for bad in ["/", "%"] {
                if name.contains(bad) {
                    out.push(format!("may not contain '{bad}'"));
                }
            }
        }
        _ => {
            if name.len() > 253 {
                out.push("must be no more than 253 characters".to_string());
            }
            if !is_dns1123_subdomain(name) {
                out.push(SUBDOMAIN_MSG.to_string());
            }
        }
    }
    out
}

/// Causes for `metadata`: name, labels and annotation keys.
pub fn metadata_causes(kind: &KindInfo, meta: &Map<String, Value>) -> Vec<Cause> {
    let mut causes = Vec::new();
    match meta.get("name").and_then(Value::as_str) {
        None | Some("") => causes.push(Cause::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => {
            for msg in name_problems(kind, name) {
                causes.push(Cause::invalid("metadata.name", name, &msg));
            }
        }
    }
    if let Some(Value::Object(labels)) = meta.get("labels") {
        for (k, v) in labels {
            for msg in qualified_name_problems(k) {
                causes.push(Cause::invalid("metadata.labels", k, &msg));
            }
            match v.as_str() {
                Some(v) => {
                    if v.len() > 63 {
                        causes.push(Cause::invalid(
                            "metadata.labels",
                            v,
                            "must be no more than 63 characters",
                        ));
                    }
                    if !v.is_empty() && !is_name_part(v) {
                        causes.push(Cause::invalid("metadata.labels", v, LABEL_VALUE_MSG));
                    }
                }
                None => causes.push(Cause::invalid(
                    "metadata.labels",
                    &v.to_string(),
                    "label values must be strings",
                )),
            }
        }
    }
    if let Some(Value::Object(annotations)) = meta.get("annotations") {
        for k in annotations.keys() {
            for msg in qualified_name_problems(k) {
                causes.push(Cause::invalid("metadata.annotations", k, &msg));
            }
        }
    }
    causes
}

/// A label or annotation key: `[prefix/]name`.
fn qualified_name_problems(key: &str) -> Vec<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let mut out = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            out.push("prefix part must be non-empty".to_string());
        } else if !is_dns1123_subdomain(p) {
            out.push(format!("prefix part {SUBDOMAIN_MSG}"));
        }
    }
    if name.is_empty() {
        out.push("name part must be non-empty".to_string());
    } else {
        if name.len() > 63 {
            out.push("name part must be no more than 63 characters".to_string());
        }
        if !is_name_part(name) {
            out.push(NAME_PART_MSG.to_string());
        }
    }
    out
}

/// Top-level and metadata fields the kind does not have (`spec2`, `metadata.foo`).
pub fn unknown_fields(kind: &KindInfo, obj: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let Some(m) = obj.as_object() else {
        return out;
    };
    let Some(allowed) = &kind.top_level else {
        return out;
    };
    for k in m.keys() {
        if !matches!(k.as_str(), "apiVersion" | "kind" | "metadata") && !allowed.contains(k) {
            out.push(k.clone());
        }
    }
    if let Some(Value::Object(meta)) = m.get("metadata") {
        for k in meta.keys() {
            // The metadata fields a client may send: those the server writes.
            if !crate::store::META_ORDER.contains(&k.as_str()) {
                out.push(format!("metadata.{k}"));
            }
        }
    }
    out
}

/// Remove the fields [`unknown_fields`] reports (what the apiserver drops when not strict).
pub fn drop_fields(obj: &mut Value, fields: &[String]) {
    for f in fields {
        match f.strip_prefix("metadata.") {
            Some(k) => {
                if let Some(Value::Object(meta)) = obj.get_mut("metadata") {
                    meta.shift_remove(k);
                }
            }
            None => {
                if let Some(m) = obj.as_object_mut() {
                    m.shift_remove(f);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(is_dns1123_subdomain("a.b-c"));
        assert!(!is_dns1123_subdomain("Bad_Name"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(is_dns1123_label("x1"));
        assert!(!is_dns1123_label("-x"));
        assert!(is_name_part("My_value.1"));
        assert!(!is_name_part("_x"));
        assert!(qualified_name_problems("app.kubernetes.io/name").is_empty());
        assert_eq!(qualified_name_problems("a/b/c").len(), 1);
    }
}
