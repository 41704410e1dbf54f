//! Emit: lowered manifests as files — YAML text, the `out/<cluster>/` layout, a
//! `kustomization.yaml` and a `plinth.lock.json` per cluster, or one YAML stream.
//!
//! Pure: it builds an in-memory [`Tree`] of relative paths and bytes. Writing the tree to disk
//! (atomically) is the CLI's job.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::lower::{Approval, ClusterOutput, Lowered, Manifest, ObjectKey, sha256_hex};

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
    Ok(files(lowered, only, &|_, _| false)?.texts)
}

/// A build's files, not all of them necessarily rendered: `texts` holds the rendered ones and
/// `ids` names the content of every file — an object's file by its object's `sha256` (as the
/// lock file lists it), any other file by the sha256 of its text. A file in `ids` but not in
/// `texts` was not rendered: the caller knew a file on disk holding that content.
#[derive(Debug, Default)]
pub struct Files {
    pub texts: Tree,
    pub ids: BTreeMap<String, String>,
    /// Rendered files the caller knows to differ from the file on disk (written without
    /// reading the old one first).
    pub differ: std::collections::BTreeSet<String>,
}

/// The files of some clusters (all when `only` is `None`), rendering only the objects whose
/// file is not `known(path, id)` to hold them already (an incremental build renders what
/// changed). The lock files and kustomizations are always rendered.
pub fn files(
    lowered: &Lowered,
    only: Option<&str>,
    known: &(dyn Fn(&str, &str) -> bool + Sync),
) -> Result<Files, String> {
    use rayon::prelude::*;
    let mut files = Files::default();
    for (cluster, out) in &lowered.clusters {
        if only.is_some_and(|o| o != cluster) {
            continue;
        }
        let rendered: Vec<Rendered> = out
            .manifests
            .par_iter()
            .map(|m| {
                let path = object_path(&m.key);
                let (id, text) = m
                    .object
                    .sha_and(|id| !known(&format!("{cluster}/{path}"), id), to_yaml);
                let id = id.to_owned();
                let entry = lock_entry(m, &path);
                (path, text, id, entry)
            })
            .collect();
        add_cluster(
            &mut files,
            (cluster, &format!("{cluster}/")),
            rendered,
            &out.approvals,
            known,
        )?;
    }
    Ok(files)
}

/// [`tree`], consuming the compiled output: each object is freed once rendered, so the
/// objects and their text are never all in memory at once.
pub fn into_tree(lowered: Lowered, only: Option<&str>) -> Result<Tree, String> {
    use rayon::prelude::*;
    let mut files = Files::default();
    for (cluster, out) in lowered.clusters {
        if only.is_some_and(|o| o != cluster) {
            continue;
        }
        let rendered: Vec<Rendered> = out
            .manifests
            .into_par_iter()
            .map(|m| {
                let (path, text, entry) = render(&m);
                (path, Some(text), m.object.sha().to_owned(), entry)
            })
            .collect();
        add_cluster(
            &mut files,
            (&cluster, &format!("{cluster}/")),
            rendered,
            &out.approvals,
            &|_, _| false,
        )?;
    }
    Ok(files.texts)
}

/// One object's file: its path, its text and its lock entry.
fn render(m: &Manifest) -> (String, String, LockEntry) {
    let path = object_path(&m.key);
    // One parse for the text and the hash (the lock entry's).
    let text = m.object.sha_and(|_| true, to_yaml).1.unwrap_or_default();
    let entry = lock_entry(m, &path);
    (path, text, entry)
}

/// One cluster's files.
pub fn cluster_tree(cluster: &str, out: &ClusterOutput) -> Result<Tree, String> {
    use rayon::prelude::*;
    // Rendering is per object and runs in parallel; the tree is assembled in object order.
    let rendered: Vec<Rendered> = out
        .manifests
        .par_iter()
        .map(|m| {
            let (path, text, entry) = render(m);
            (path, Some(text), m.object.sha().to_owned(), entry)
        })
        .collect();
    let mut files = Files::default();
    add_cluster(
        &mut files,
        (cluster, ""),
        rendered,
        &out.approvals,
        &|_, _| false,
    )?;
    Ok(files.texts)
}

/// An object's file: its path in the cluster's directory, its text (`None`: not rendered), the
/// id of its content and its lock entry.
type Rendered = (String, Option<String>, String, LockEntry);

/// Add a cluster's files from its rendered objects, in object order: the objects, the
/// kustomization and the lock file (which also lists the approvals of the cluster, when there
/// are any: the agent judges deletions by them). Paths are prefixed with `prefix`; a file
/// `known` to hold its content already is not kept (only its id).
fn add_cluster(
    files: &mut Files,
    (cluster, prefix): (&str, &str),
    rendered: Vec<Rendered>,
    approvals: &[Approval],
    known: &(dyn Fn(&str, &str) -> bool + Sync),
) -> Result<(), String> {
    let mut lock = Vec::with_capacity(rendered.len());
    let mut resources: Vec<Value> = Vec::with_capacity(rendered.len());
    let mut ids: BTreeMap<String, String> = BTreeMap::new();
    for (path, text, id, entry) in rendered {
        let full = format!("{prefix}{path}");
        if let Some(text) = text {
            files.texts.insert(full.clone(), text);
        }
        if ids.insert(full, id).is_some() {
            return Err(format!(
                "two objects of cluster `{cluster}` map to the file `{path}`"
            ));
        }
        resources.push(Value::String(path));
        lock.push(entry);
    }
    // The two aggregate files, each rendered and hashed at once with the other.
    let (kustomization, lock_text) = rayon::join(
        || {
            resources.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            let k = json!({
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": resources,
            });
            let text = to_yaml(&k);
            let id = sha256_hex(text.as_bytes());
            (text, id)
        },
        || {
            lock_file_text(cluster, lock, approvals).map(|text| {
                let id = sha256_hex(text.as_bytes());
                (text, id)
            })
        },
    );
    for (name, (text, id)) in [
        ("kustomization.yaml", kustomization),
        ("plinth.lock.json", lock_text?),
    ] {
        let full = format!("{prefix}{name}");
        if !known(&full, &id) {
            files.texts.insert(full.clone(), text);
        }
        ids.insert(full, id);
    }
    files.ids.extend(ids);
    Ok(())
}

/// The text of `plinth.lock.json`: `serde_json`'s pretty form of a [`LockFile`], its object
/// entries rendered in parallel (tens of megabytes for a large platform).
fn lock_file_text(
    cluster: &str,
    objects: Vec<LockEntry>,
    approvals: &[Approval],
) -> Result<String, String> {
    use rayon::prelude::*;
    let doc = |objects| LockFile {
        version: 1,
        cluster,
        objects,
        approvals,
    };
    if objects.is_empty() {
        let mut text = serde_json::to_string_pretty(&doc(objects)).map_err(|e| e.to_string())?;
        text.push('\n');
        return Ok(text);
    }
    // Each entry as the whole document's pretty form has it: at depth 2 (four spaces). A
    // JSON string holds no raw newline, so indenting after each newline is exact.
    let entries: Vec<String> = objects
        .par_iter()
        .map(|e| {
            serde_json::to_string_pretty(e).map(|t| format!("    {}", t.replace('\n', "\n    ")))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let shell = serde_json::to_string_pretty(&doc(Vec::new())).map_err(|e| e.to_string())?;
    // The empty list's place (the quotes of a key cannot occur inside a JSON string).
    let at = "\"objects\": []";
    let Some(i) = shell.find(at) else {
        return Err("the lock file has no object list".to_owned());
    };
    let size = shell.len() + entries.iter().map(|e| e.len() + 2).sum::<usize>() + 16;
    let mut text = String::with_capacity(size);
    text.push_str(&shell[..i]);
    text.push_str("\"objects\": [\n");
    for (n, e) in entries.iter().enumerate() {
        if n > 0 {
            text.push_str(",\n");
        }
        text.push_str(e);
    }
    text.push_str("\n  ]");
    text.push_str(&shell[i + at.len()..]);
    text.push('\n');
    Ok(text)
}

fn lock_entry(m: &Manifest, path: &str) -> LockEntry {
    LockEntry {
        api_version: m.key.api_version.clone(),
        kind: m.key.kind.clone(),
        name: m.key.name.clone(),
        path: path.to_owned(),
        sha256: m.object.sha().to_owned(),
        source: LockSource {
            file: m.origin.file.clone(),
            line: m.origin.line,
            kind: m.origin.kind.as_str(),
            name: m.origin.name.clone(),
        },
        namespace: m.key.namespace.clone(),
    }
}

/// An object's entry in `plinth.lock.json` (fields in the order written).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct LockEntry {
    api_version: String,
    kind: String,
    name: String,
    path: String,
    sha256: String,
    source: LockSource,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
}

#[derive(serde::Serialize)]
struct LockSource {
    file: std::sync::Arc<str>,
    line: u32,
    kind: &'static str,
    name: String,
}

/// `plinth.lock.json`.
#[derive(serde::Serialize)]
struct LockFile<'a> {
    version: u32,
    cluster: &'a str,
    objects: Vec<LockEntry>,
    #[serde(skip_serializing_if = "<[Approval]>::is_empty")]
    approvals: &'a [Approval],
}

/// One cluster's objects as a single YAML stream, in apply order.
pub fn stream(out: &ClusterOutput) -> String {
    let mut ms: Vec<&Manifest> = out.manifests.iter().collect();
    ms.sort_by(|a, b| (Stage::of(&a.key), &a.key).cmp(&(Stage::of(&b.key), &b.key)));
    let mut s = String::new();
    for m in ms {
        s.push_str("---\n");
        s.push_str(&m.object.peek(to_yaml));
    }
    s
}

pub use crate::output::to_yaml;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::yaml::{YamlLimits, parse_documents};
    use std::sync::Arc;

    #[test]
    fn the_lock_file_is_the_pretty_form_of_the_whole_document() {
        let entry = |i: usize, ns: Option<&str>| LockEntry {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("cm-{i}"),
            path: format!("x/configmap-cm-{i}.yaml"),
            sha256: "ab".repeat(32),
            source: LockSource {
                file: Arc::from("projects/a \"quoted\" file.yaml"),
                line: 3,
                kind: "Project",
                name: "a\nb".into(),
            },
            namespace: ns.map(str::to_owned),
        };
        let approvals = [Approval {
            object: "ConfigMap/x/cm-1".into(),
            cluster: Some("prod".into()),
            reason: "because \"objects\": []".into(),
            approver: None,
            file: Arc::from("platform.yaml"),
            line: 7,
        }];
        for n in [0, 1, 3] {
            for a in [&approvals[..], &[]] {
                let objects: Vec<LockEntry> = (0..n)
                    .map(|i| entry(i, (i % 2 == 0).then_some("x")))
                    .collect();
                let mut want = serde_json::to_string_pretty(&LockFile {
                    version: 1,
                    cluster: "prod",
                    objects: (0..n)
                        .map(|i| entry(i, (i % 2 == 0).then_some("x")))
                        .collect(),
                    approvals: a,
                })
                .expect("json");
                want.push('\n');
                assert_eq!(lock_file_text("prod", objects, a).expect("text"), want);
            }
        }
    }

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
