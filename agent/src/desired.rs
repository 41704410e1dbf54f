//! The desired state: one cluster's compiled output (`out/<cluster>/`), read back.
//!
//! `plinth.lock.json` lists every object with its path and the sha256 of its canonical JSON;
//! each file is parsed with plinth's YAML reader and checked against its lock entry (key and
//! hash), so a hand-edited or half-written tree is refused rather than applied. The revision
//! of a tree is the sha256 of its lock file.

use std::path::Path;

use plinth::emit::Stage;
use plinth::lower::{HASH_ANNOTATION, ObjectKey, canonical_json, sha256_hex};
use serde::Deserialize;
use serde_json::Value;

use crate::Error;

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
}

/// One cluster's compiled objects, sorted by apply stage then key.
#[derive(Debug, Clone)]
pub struct Desired {
    pub cluster: String,
    /// sha256 of `plinth.lock.json`.
    pub revision: String,
    pub objects: Vec<DesiredObject>,
}

#[derive(Deserialize)]
struct Lock {
    version: u32,
    cluster: String,
    objects: Vec<LockEntry>,
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
        })
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
}
