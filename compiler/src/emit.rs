//! Emit: lowered manifests as files — YAML text, the `out/<cluster>/` layout, a
//! `kustomization.yaml` and a `plinth.lock.json` per cluster, or one YAML stream.
//!
//! Pure: it builds an in-memory [`Tree`] of relative paths and bytes. Writing the tree to disk
//! (atomically) is the CLI's job.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::lower::{Approval, ClusterOutput, Lowered, Manifest, ObjectKey};

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
        "sha256": m.object.sha(),
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

pub use crate::output::to_yaml;

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
