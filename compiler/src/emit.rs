//! Emit: lowered manifests as files — YAML text, the `out/<cluster>/` layout, a
//! `kustomization.yaml` and a `plinth.lock.json` per cluster, or one YAML stream.
//!
//! Pure: it builds an in-memory [`Tree`] of relative paths and bytes. Writing the tree to disk
//! (atomically) is the CLI's job.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::lower::{
    Approval, ClusterOutput, Lowered, Manifest, ObjectKey, canonical_json, sha256_hex,
};

/// Files by path relative to the output directory (`/`-separated).
pub type Tree = BTreeMap<String, String>;

/// Apply order: what must exist before what. Used for streams and by the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Stage {
    Crds,
    Namespaces,
    ClusterScoped,
    Policy,
    Volumes,
    Workloads,
}

impl Stage {
    pub fn of(key: &ObjectKey) -> Stage {
        match (key.group(), key.kind.as_str()) {
            ("apiextensions.k8s.io", "CustomResourceDefinition") => Stage::Crds,
            ("", "Namespace") => Stage::Namespaces,
            (
                _,
                "ServiceAccount" | "ResourceQuota" | "LimitRange" | "NetworkPolicy" | "ConfigMap"
                | "Secret",
            ) if key.namespace.is_some() => Stage::Policy,
            ("rbac.authorization.k8s.io", _) => Stage::Policy,
            (_, "PersistentVolume" | "PersistentVolumeClaim") => Stage::Volumes,
            _ if key.namespace.is_none() => Stage::ClusterScoped,
            _ => Stage::Workloads,
        }
    }
}

/// The file an object is written to: `<namespace or _cluster>/<kind>-<name>.yaml`.
pub fn object_path(key: &ObjectKey) -> String {
    let dir = key.namespace.as_deref().unwrap_or("_cluster");
    format!("{dir}/{}-{}.yaml", key.kind.to_ascii_lowercase(), key.name)
}

/// The `out/` tree for some clusters (all when `only` is `None`).
pub fn tree(lowered: &Lowered, only: Option<&str>) -> Result<Tree, String> {
    let mut t = Tree::new();
    for (cluster, out) in &lowered.clusters {
        if only.is_some_and(|o| o != cluster) {
            continue;
        }
        for (path, text) in cluster_tree(cluster, out)? {
            t.insert(format!("{cluster}/{path}"), text);
        }
    }
    Ok(t)
}

/// [`tree`], consuming the compiled output: each object is freed once rendered, so the
/// objects and their text are never all in memory at once.
pub fn into_tree(lowered: Lowered, only: Option<&str>) -> Result<Tree, String> {
    use rayon::prelude::*;
    let mut t = Tree::new();
    for (cluster, out) in lowered.clusters {
        if only.is_some_and(|o| o != cluster) {
            continue;
        }
        let rendered: Vec<(String, String, Value)> =
            out.manifests.into_par_iter().map(|m| render(&m)).collect();
        for (path, text) in assemble(&cluster, rendered, &out.approvals)? {
            t.insert(format!("{cluster}/{path}"), text);
        }
    }
    Ok(t)
}

/// One object's file: its path, its text and its lock entry.
fn render(m: &Manifest) -> (String, String, Value) {
    let path = object_path(&m.key);
    let text = to_yaml(&m.object);
    let entry = lock_entry(m, &path);
    (path, text, entry)
}

/// One cluster's files.
pub fn cluster_tree(cluster: &str, out: &ClusterOutput) -> Result<Tree, String> {
    use rayon::prelude::*;
    // Rendering is per object and runs in parallel; the tree is assembled in object order.
    let rendered: Vec<(String, String, Value)> = out.manifests.par_iter().map(render).collect();
    assemble(cluster, rendered, &out.approvals)
}

/// The files of a cluster from its rendered objects, in object order: the objects, the
/// kustomization and the lock file (which also lists the approvals of the cluster, when there
/// are any: the agent judges deletions by them).
fn assemble(
    cluster: &str,
    rendered: Vec<(String, String, Value)>,
    approvals: &[Approval],
) -> Result<Tree, String> {
    let mut t = Tree::new();
    let mut lock = Vec::with_capacity(rendered.len());
    for (path, text, entry) in rendered {
        if t.insert(path.clone(), text).is_some() {
            return Err(format!(
                "two objects of cluster `{cluster}` map to the file `{path}`"
            ));
        }
        lock.push(entry);
    }
    let resources: Vec<Value> = t.keys().map(|p| Value::String(p.clone())).collect();
    let kustomization = json!({
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": resources,
    });
    t.insert("kustomization.yaml".to_owned(), to_yaml(&kustomization));
    let mut lock_doc = json!({ "version": 1, "cluster": cluster, "objects": lock });
    if !approvals.is_empty() {
        lock_doc["approvals"] = serde_json::to_value(approvals).map_err(|e| e.to_string())?;
    }
    let mut lock_text = serde_json::to_string_pretty(&lock_doc).map_err(|e| e.to_string())?;
    lock_text.push('\n');
    t.insert("plinth.lock.json".to_owned(), lock_text);
    Ok(t)
}

fn lock_entry(m: &Manifest, path: &str) -> Value {
    let mut e = json!({
        "apiVersion": m.key.api_version,
        "kind": m.key.kind,
        "name": m.key.name,
        "path": path,
        "sha256": sha256_hex(canonical_json(&m.object).as_bytes()),
        "source": {
            "file": m.origin.file.as_ref(),
            "line": m.origin.line,
            "kind": m.origin.kind.as_str(),
            "name": m.origin.name,
        },
    });
    if let Some(ns) = &m.key.namespace {
        e["namespace"] = Value::String(ns.clone());
    }
    e
}

/// One cluster's objects as a single YAML stream, in apply order.
pub fn stream(out: &ClusterOutput) -> String {
    let mut ms: Vec<&Manifest> = out.manifests.iter().collect();
    ms.sort_by(|a, b| (Stage::of(&a.key), &a.key).cmp(&(Stage::of(&b.key), &b.key)));
    let mut s = String::new();
    for m in ms {
        s.push_str("---\n");
        s.push_str(&to_yaml(&m.object));
    }
    s
}

/// Deterministic block-style YAML for a JSON value (a document, without `---`).
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => write_map(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => write_seq(a, 0, &mut out),
        other => {
            out.push_str(&scalar(other, 0));
            out.push('\n');
        }
    }
    out
}

fn write_map(m: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (k, v) in m {
        out.push_str(&" ".repeat(indent));
        out.push_str(&key(k));
        out.push(':');
        write_value(v, indent, out);
    }
}

fn write_seq(a: &[Value], indent: usize, out: &mut String) {
    for v in a {
        out.push_str(&" ".repeat(indent));
        out.push('-');
        match v {
            Value::Object(m) if !m.is_empty() => {
                // First entry on the dash line, the rest aligned under it.
                let mut inner = String::new();
                write_map(m, indent + 2, &mut inner);
                out.push(' ');
                out.push_str(&inner[indent + 2..]);
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.push('\n');
                write_seq(inner, indent + 2, out);
            }
            other => {
                out.push(' ');
                out.push_str(&scalar(other, indent + 2));
                out.push('\n');
            }
        }
    }
}

fn write_value(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(m, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(a, indent + 2, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other, indent + 2));
            out.push('\n');
        }
    }
}

fn key(k: &str) -> String {
    if plain_ok(k) { k.to_owned() } else { quote(k) }
}

fn scalar(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) if plain_ok(s) => s.clone(),
        Value::String(s) if literal_ok(s) => {
            let pad = " ".repeat(indent);
            let chomp = if s.ends_with('\n') { "" } else { "-" };
            let mut out = format!("|{chomp}");
            for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
                out.push('\n');
                if !line.is_empty() {
                    out.push_str(&pad);
                    out.push_str(line);
                }
            }
            out
        }
        Value::String(s) => quote(s),
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
    }
}

/// Whether a string can be written without quotes and read back as the same string by YAML 1.1
/// and 1.2 readers alike (kubectl's included).
fn plain_ok(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    if first.is_ascii_digit() || "-+.?:,[]{}#&*!|>'\"%@` ~=<".contains(first) {
        return false;
    }
    if s.ends_with([' ', ':']) || s.contains(": ") || s.contains(" #") || s.contains('\t') {
        return false;
    }
    if s.chars().any(|c| c.is_control() || !is_printable(c)) {
        return false;
    }
    let lower = s.to_ascii_lowercase();
    !matches!(
        lower.as_str(),
        "y" | "n" | "yes" | "no" | "on" | "off" | "true" | "false" | "null"
    )
}

/// A multi-line string that reads well as a literal block.
fn literal_ok(s: &str) -> bool {
    s.contains('\n')
        && !s.starts_with([' ', '\n'])
        && !s.ends_with("\n\n")
        && !s.contains(" \n")
        && s.chars()
            .all(|c| c == '\n' || (!c.is_control() && is_printable(c)))
}

fn is_printable(c: char) -> bool {
    !matches!(c as u32, 0x7F..=0x9F | 0xFEFF | 0xFFFE | 0xFFFF)
}

/// A YAML double-quoted scalar (JSON escapes plus the ones YAML needs).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() || !is_printable(c) => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::yaml::{YamlLimits, parse_documents};
    use std::sync::Arc;

    fn round_trip(v: &Value) -> Value {
        let text = to_yaml(v);
        let (docs, diags) = parse_documents(&Arc::from("x.yaml"), &text, YamlLimits::default());
        assert!(diags.is_empty(), "{diags:?}\n{text}");
        docs.first()
            .map(|d| d.root.to_json())
            .unwrap_or(Value::Null)
    }

    #[test]
    fn yaml_reads_back_as_written() {
        let v = json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"app.kubernetes.io/managed-by": "plinth"}, "annotations": {}},
            "data": {
                "yes": "no", "n": "on", "num": "123", "float": "1.5", "neg": "-1", "q": "500m",
                "url": "s3://bucket/p", "colon": "a: b", "hash": "a #b", "empty": "", "space": " x",
                "multi": "line one\nline two\n", "multi2": "a\nb", "tab": "a\tb", "quote": "say \"hi\"",
                "uni": "é 雪", "ctl": "\u{7f}\u{85}", "star": "*x", "tilde": "~", "null": "null", "lead": "- a",
                "trail": "a\n\n", "crlf": "a\r\nb",
            },
            "list": [1, "two", {"a": 1, "b": [true, null]}, [], {}, [["nested"]]],
            "n": null,
            "f": 2.5,
        });
        assert_eq!(round_trip(&v), v);
    }

    #[test]
    fn yaml_shape_is_stable() {
        let v = json!({"a": {"b": [{"c": 1, "d": "x"}, "z", "y"]}, "e": []});
        assert_eq!(
            to_yaml(&v),
            "a:\n  b:\n    - c: 1\n      d: x\n    - z\n    - \"y\"\ne: []\n"
        );
    }

    #[test]
    fn paths_and_stages() {
        let k = ObjectKey {
            api_version: "v1".into(),
            kind: "Namespace".into(),
            namespace: None,
            name: "er".into(),
        };
        assert_eq!(object_path(&k), "_cluster/namespace-er.yaml");
        assert_eq!(Stage::of(&k), Stage::Namespaces);
        let k = ObjectKey {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            namespace: Some("er".into()),
            name: "m".into(),
        };
        assert_eq!(object_path(&k), "er/deployment-m.yaml");
        assert_eq!(Stage::of(&k), Stage::Workloads);
    }
}
