//! The desired state: one cluster's compiled output (`out/<cluster>/`), read back.
//!
//! `plinth.lock.json` lists every object with its path and the sha256 of its canonical JSON;
//! each file is parsed with plinth's YAML reader and checked against its lock entry (key and
//! hash), so a hand-edited or half-written tree is refused rather than applied. The revision
//! of a tree is the sha256 of its lock file.

use std::path::Path;

use plinth::emit::Stage;
use plinth::lower::{Approval, HASH_ANNOTATION, ObjectKey, canonical_json, sha256_hex};
use serde::Deserialize;
use serde_json::Value;

use crate::error::Error;

/// One object to apply.
#[derive(Debug, Clone)]
pub struct DesiredObject {
    pub key: ObjectKey,
    /// The object as compiled, provenance annotations included.
    pub object: Value,
    /// `plinth.dev/spec-hash`.
    pub hash: String,
    pub stage: Stage,
    /// `file:line` of the spec that produced it.
    pub source: String,
    /// Path of its file inside the tree.
    pub path: String,
    /// The object as the previously applied revision compiled it, when known (the GitOps loop
    /// knows it): a field the new revision changes is applied even over a hand edit.
    pub previous: Option<Value>,
}

/// One cluster's compiled objects, sorted by apply stage then key.
#[derive(Debug, Clone)]
pub struct Desired {
    pub cluster: String,
    /// sha256 of `plinth.lock.json`.
    pub revision: String,
    pub objects: Vec<DesiredObject>,
    /// The Platform's `spec.approvals` entries for this cluster (the lock file lists them): what
    /// may approve the deletion of data when pruning.
    pub approvals: Vec<Approval>,
}

#[derive(Deserialize)]
struct Lock {
    version: u32,
    cluster: String,
    objects: Vec<LockEntry>,
    #[serde(default)]
    approvals: Vec<Approval>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LockEntry {
    api_version: String,
    kind: String,
    #[serde(default)]
    namespace: Option<String>,
    name: String,
    path: String,
    sha256: String,
    #[serde(default)]
    source: Option<LockSource>,
}

#[derive(Deserialize)]
struct LockSource {
    file: String,
    line: u32,
}

impl Desired {
    /// Read `dir` (an `out/<cluster>/` directory).
    pub fn read(dir: &Path) -> Result<Desired, Error> {
        let read = |rel: &str| -> Result<String, Error> {
            let p = dir.join(rel);
            std::fs::read_to_string(&p).map_err(|e| Error::Read {
                path: p.display().to_string(),
                source: e,
            })
        };
        if !dir.join("plinth.lock.json").exists() {
            // `--dir out` instead of `--dir out/<cluster>`: name the clusters it holds.
            let mut clusters: Vec<String> = std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.path().join("plinth.lock.json").is_file())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect();
            clusters.sort();
            if let Some(first) = clusters.first() {
                return Err(Error::Usage(format!(
                    "`{}` holds one directory per cluster ({}): pass `--dir {}`",
                    dir.display(),
                    clusters
                        .iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                    dir.join(first).display()
                )));
            }
        }
        let lock = read("plinth.lock.json")?;
        Desired::from_files(&lock, |rel| read(rel))
    }

    /// Build from the lock file's text and a reader of the tree's files (paths relative to
    /// the tree).
    pub fn from_files(
        lock_text: &str,
        mut read: impl FnMut(&str) -> Result<String, Error>,
    ) -> Result<Desired, Error> {
        let bad = |m: String| Error::Tree(m);
        let lock: Lock = serde_json::from_str(lock_text)
            .map_err(|e| bad(format!("`plinth.lock.json` is not a plinth lock file: {e}")))?;
        if lock.version != 1 {
            return Err(bad(format!(
                "`plinth.lock.json` has version {}; this agent reads version 1",
                lock.version
            )));
        }
        let mut objects = Vec::with_capacity(lock.objects.len());
        for e in lock.objects {
            if e.path.starts_with('/') || e.path.split('/').any(|c| c == ".." || c.is_empty()) {
                return Err(bad(format!("lock entry path `{}` leaves the tree", e.path)));
            }
            let text = read(&e.path)?;
            let name: std::sync::Arc<str> = std::sync::Arc::from(e.path.as_str());
            let (docs, diags) =
                plinth::parse::yaml::parse_documents(&name, &text, Default::default());
            if let Some(d) = diags.first() {
                return Err(bad(format!("`{}`: {}", e.path, d.message)));
            }
            let [doc] = docs.as_slice() else {
                return Err(bad(format!(
                    "`{}` holds {} documents; plinth writes one object per file",
                    e.path,
                    docs.len()
                )));
            };
            let object = doc.root.to_json();
            let key = ObjectKey::of(&object);
            let expected = ObjectKey {
                api_version: e.api_version,
                kind: e.kind,
                namespace: e.namespace,
                name: e.name,
            };
            if key != expected {
                return Err(bad(format!(
                    "`{}` holds {key}, but the lock file says {expected}",
                    e.path
                )));
            }
            if sha256_hex(canonical_json(&object).as_bytes()) != e.sha256 {
                return Err(bad(format!(
                    "`{}` does not match its sha256 in `plinth.lock.json` (edited after the build?)",
                    e.path
                )));
            }
            let hash = object
                .pointer("/metadata/annotations")
                .and_then(|a| a.get(HASH_ANNOTATION))
                .and_then(Value::as_str)
                .map_or_else(|| plinth::lower::spec_hash(&object), str::to_owned);
            objects.push(DesiredObject {
                previous: None,
                stage: Stage::of(&key),
                key,
                object,
                hash,
                source: e
                    .source
                    .map(|s| format!("{}:{}", s.file, s.line))
                    .unwrap_or_default(),
                path: e.path,
            });
        }
        objects.sort_by(|a, b| (a.stage, &a.key).cmp(&(b.stage, &b.key)));
        if let Some(w) = objects.windows(2).find(|w| w[0].key == w[1].key) {
            return Err(bad(format!("{} is listed twice", w[0].key)));
        }
        Ok(Desired {
            cluster: lock.cluster,
            revision: sha256_hex(lock_text.as_bytes()),
            objects,
            approvals: lock.approvals,
        })
    }

    /// Build from a cluster's compiled output in memory (what `plinth build` would write):
    /// the same objects, sources and revision as [`Desired::read`] of the written tree, without
    /// rendering and re-reading every file.
    pub fn from_output(
        cluster: &str,
        out: &plinth::lower::ClusterOutput,
    ) -> Result<Desired, Error> {
        let tree = plinth::emit::cluster_tree(cluster, out).map_err(Error::Tree)?;
        let lock = tree
            .get("plinth.lock.json")
            .ok_or_else(|| Error::Tree("the compiled tree has no `plinth.lock.json`".into()))?;
        let mut objects: Vec<DesiredObject> = out
            .manifests
            .iter()
            .map(|m| DesiredObject {
                previous: None,
                key: m.key.clone(),
                object: serde_json::Value::clone(&m.object),
                hash: m.hash.clone(),
                stage: Stage::of(&m.key),
                source: format!("{}:{}", m.origin.file, m.origin.line),
                path: plinth::emit::object_path(&m.key),
            })
            .collect();
        objects.sort_by(|a, b| (a.stage, &a.key).cmp(&(b.stage, &b.key)));
        Ok(Desired {
            cluster: cluster.to_owned(),
            revision: sha256_hex(lock.as_bytes()),
            objects,
            approvals: out.approvals.clone(),
        })
    }

    /// This state as a new revision of `previous`: each object learns how `previous` had it.
    #[must_use]
    pub fn after(&self, previous: &Desired) -> Desired {
        let before: std::collections::BTreeMap<&ObjectKey, &Value> = previous
            .objects
            .iter()
            .map(|o| (&o.key, &o.object))
            .collect();
        let mut next = self.clone();
        for o in &mut next.objects {
            o.previous = before.get(&o.key).map(|v| (*v).clone());
        }
        next
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&DesiredObject> {
        self.objects.iter().find(|o| &o.key == key)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const CM: &str =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: x\ndata:\n  k: v\n";

    fn lock(sha: &str, path: &str) -> String {
        format!(
            r#"{{"version": 1, "cluster": "prod", "objects": [{{"apiVersion": "v1", "kind": "ConfigMap",
            "namespace": "x", "name": "c", "path": "{path}", "sha256": "{sha}",
            "source": {{"file": "p.yaml", "line": 3, "kind": "Project", "name": "x"}}}}]}}"#
        )
    }

    fn sha(text: &str) -> String {
        let (docs, _) = plinth::parse::yaml::parse_documents(&"f".into(), text, Default::default());
        sha256_hex(canonical_json(&docs[0].root.to_json()).as_bytes())
    }

    #[test]
    fn reads_and_checks_a_tree() {
        let l = lock(&sha(CM), "x/configmap-c.yaml");
        let d = Desired::from_files(&l, |_| Ok(CM.to_owned())).unwrap();
        assert_eq!(d.cluster, "prod");
        assert_eq!(d.objects.len(), 1);
        assert_eq!(d.objects[0].key.to_string(), "ConfigMap x/c");
        assert_eq!(d.objects[0].stage, Stage::Policy);
        assert_eq!(d.objects[0].source, "p.yaml:3");
        assert_eq!(d.revision, sha256_hex(l.as_bytes()));
    }

    #[test]
    fn compiled_output_equals_the_tree_read_back() {
        let src = plinth::load::MemSource::new()
            .with(
                "plinth.yaml",
                "apiVersion: plinth.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: a\nspec:\n  clusters:\n    - name: prod\n      kubernetesVersion: \"1.32\"\n      provider: onPrem\n",
            )
            .with(
                "projects/er.yaml",
                "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: er\nspec:\n  owners: [dana@acme.example]\n  quota: {cpu: \"8\", memory: 16Gi}\n",
            );
        let built = plinth::build_source(&src, &plinth::Options::default()).unwrap();
        let out = &built.lowered.unwrap().clusters["prod"];
        let direct = Desired::from_output("prod", out).unwrap();
        let tree = plinth::emit::cluster_tree("prod", out).unwrap();
        let read = Desired::from_files(&tree["plinth.lock.json"], |p| Ok(tree[p].clone())).unwrap();
        assert_eq!(direct.revision, read.revision);
        assert_eq!(direct.objects.len(), read.objects.len());
        for (a, b) in direct.objects.iter().zip(&read.objects) {
            assert_eq!(
                (&a.key, &a.hash, a.stage, &a.source, &a.path),
                (&b.key, &b.hash, b.stage, &b.source, &b.path)
            );
            assert_eq!(canonical_json(&a.object), canonical_json(&b.object));
        }
    }

    #[test]
    fn refuses_edited_files_and_escaping_paths() {
        let l = lock(&sha(CM), "x/configmap-c.yaml");
        let edited = CM.replace("k: v", "k: w");
        let e = Desired::from_files(&l, |_| Ok(edited.clone())).unwrap_err();
        assert!(e.to_string().contains("does not match its sha256"), "{e}");
        let l = lock(&sha(CM), "../etc/passwd");
        let e = Desired::from_files(&l, |_| Ok(CM.to_owned())).unwrap_err();
        assert!(e.to_string().contains("leaves the tree"), "{e}");
        let l = lock(&sha(CM), "x/configmap-c.yaml");
        let other = CM.replace("name: c", "name: d");
        let e = Desired::from_files(&l, |_| Ok(other.clone())).unwrap_err();
        assert!(e.to_string().contains("the lock file says"), "{e}");
    }

    #[test]
    fn a_tree_file_expanding_by_aliases_is_refused() {
        let big = "x".repeat(256 * 1024);
        let mut text = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  namespace: x\ndata:\n  a: &s \"{big}\"\n"
        );
        for i in 0..100 {
            text.push_str(&format!("  k{i}: *s\n"));
        }
        let l = lock("0000", "x/configmap-c.yaml");
        let err = Desired::from_files(&l, |_| Ok(text.clone())).unwrap_err();
        assert!(err.to_string().contains("aliases add more than"), "{err}");
    }
}
