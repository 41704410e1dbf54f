//! The desired state: one cluster's compiled output (`out/<cluster>/`), read back.
//!
//! `plinth.lock.json` lists the tree's lock parts (version 2: `<dir>/plinth.lock.json` per
//! directory, each with the sha256 of its text), and each part every object of its directory
//! with its path and the sha256 of its canonical JSON (version 1: one lock file listing every
//! object). Each part is checked against its sha256 and each file is parsed with plinth's YAML
//! reader and checked against its lock entry (key and hash), so a hand-edited or half-written
//! tree is refused rather than applied. The revision of a tree is the sha256 of its lock file
//! (which covers the parts' texts, through their sha256).

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

/// A lock file: a cluster's (version 1: its `objects`; version 2: its `parts`) or a part's
/// (version 2: its `dir` and `objects`).
#[derive(Deserialize)]
struct Lock {
    version: u32,
    cluster: String,
    #[serde(default)]
    dir: Option<String>,
    #[serde(default)]
    parts: Vec<LockPart>,
    #[serde(default)]
    objects: Vec<LockEntry>,
    #[serde(default)]
    approvals: Vec<Approval>,
}

/// A part listed by a cluster's lock file.
#[derive(Deserialize)]
struct LockPart {
    path: String,
    sha256: String,
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

/// The object entries of a cluster's lock parts: each part read, checked against the sha256
/// its cluster's lock file lists, and holding only objects of its own directory.
fn read_parts(
    cluster: &str,
    parts: Vec<LockPart>,
    read: &mut impl FnMut(&str) -> Result<String, Error>,
) -> Result<Vec<LockEntry>, Error> {
    let bad = |m: String| Error::Tree(m);
    let mut entries = Vec::new();
    for part in parts {
        let dir = part
            .path
            .strip_suffix("/plinth.lock.json")
            .filter(|d| !d.is_empty() && !d.contains('/') && *d != ".." && *d != ".")
            .ok_or_else(|| {
                bad(format!(
                    "lock part path `{}` is not `<directory>/plinth.lock.json` in the tree",
                    part.path
                ))
            })?;
        let text = read(&part.path)?;
        if sha256_hex(text.as_bytes()) != part.sha256 {
            return Err(bad(format!(
                "`{}` does not match its sha256 in `plinth.lock.json` (edited after the build?)",
                part.path
            )));
        }
        let lock: Lock = serde_json::from_str(&text)
            .map_err(|e| bad(format!("`{}` is not a plinth lock part: {e}", part.path)))?;
        if lock.version != 2
            || lock.cluster != cluster
            || lock.dir.as_deref() != Some(dir)
            || !lock.parts.is_empty()
            || !lock.approvals.is_empty()
        {
            return Err(bad(format!(
                "`{}` is not the lock part of `{dir}` in cluster `{cluster}`",
                part.path
            )));
        }
        if let Some(e) = lock
            .objects
            .iter()
            .find(|e| e.path.split_once('/').map(|(d, _)| d) != Some(dir))
        {
            return Err(bad(format!(
                "`{}` lists `{}`, outside its directory",
                part.path, e.path
            )));
        }
        entries.extend(lock.objects);
    }
    Ok(entries)
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
        let mut lock: Lock = serde_json::from_str(lock_text)
            .map_err(|e| bad(format!("`plinth.lock.json` is not a plinth lock file: {e}")))?;
        match (lock.version, &lock.dir) {
            (1, None) if lock.parts.is_empty() => {}
            (2, None) if lock.objects.is_empty() => {
                let parts = std::mem::take(&mut lock.parts);
                lock.objects = read_parts(&lock.cluster, parts, &mut read)?;
            }
            (2, Some(dir)) => {
                return Err(Error::Usage(format!(
                    "this `plinth.lock.json` lists the objects of `{dir}` only (a part of cluster \
                     `{}`): pass the cluster's directory, the one above",
                    lock.cluster
                )));
            }
            (version, _) => {
                return Err(bad(format!(
                    "`plinth.lock.json` has version {version} (or fields its version has not); \
                     this agent reads versions 1 and 2"
                )));
            }
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

    /// A platform of one project, compiled: cluster `prod`'s output.
    fn compiled() -> plinth::lower::ClusterOutput {
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
        built.lowered.unwrap().clusters.remove("prod").unwrap()
    }

    /// The tree `tree` with its lock part `path` made `edit` of what it was, and the cluster's
    /// lock file listing it with the sha256 of its new text.
    fn with_part(
        tree: &plinth::emit::Tree,
        path: &str,
        edit: impl Fn(&mut serde_json::Value),
    ) -> plinth::emit::Tree {
        let mut tree = tree.clone();
        let mut part: serde_json::Value = serde_json::from_str(&tree[path]).unwrap();
        edit(&mut part);
        let text = serde_json::to_string_pretty(&part).unwrap();
        let mut top: serde_json::Value = serde_json::from_str(&tree["plinth.lock.json"]).unwrap();
        for p in top["parts"].as_array_mut().unwrap() {
            if p["path"] == path {
                p["sha256"] = sha256_hex(text.as_bytes()).into();
            }
        }
        tree.insert(path.to_owned(), text);
        tree.insert(
            "plinth.lock.json".to_owned(),
            serde_json::to_string_pretty(&top).unwrap(),
        );
        tree
    }

    /// A tree of lock parts reads back as its objects; a part changed behind its lock file, one
    /// that is not a lock part, one listing an object outside its directory or of another
    /// directory or cluster, a part path leaving the tree, a part given as the tree's lock file
    /// and an unknown version are refused.
    #[test]
    fn reads_a_tree_of_lock_parts_and_refuses_a_part_changed_or_misplaced() {
        let out = compiled();
        let tree = plinth::emit::cluster_tree("prod", &out).unwrap();
        let read = |tree: &plinth::emit::Tree| {
            Desired::from_files(&tree["plinth.lock.json"], |p| {
                tree.get(p)
                    .cloned()
                    .ok_or_else(|| Error::Tree(format!("no `{p}`")))
            })
        };
        let d = read(&tree).unwrap();
        assert_eq!(d.objects.len(), out.manifests.len());
        assert!(
            tree.contains_key("er/plinth.lock.json")
                && tree.contains_key("_cluster/plinth.lock.json")
        );
        let err = |tree: &plinth::emit::Tree| read(tree).unwrap_err().to_string();
        let mut edited = tree.clone();
        edited.get_mut("er/plinth.lock.json").unwrap().push(' ');
        assert!(
            err(&edited).contains("`er/plinth.lock.json` does not match its sha256"),
            "{}",
            err(&edited)
        );
        let mut garbled = tree.clone();
        let text = "not a lock part\n".to_owned();
        let top = garbled["plinth.lock.json"].replace(
            &sha256_hex(garbled["er/plinth.lock.json"].as_bytes()),
            &sha256_hex(text.as_bytes()),
        );
        garbled.insert("er/plinth.lock.json".into(), text);
        garbled.insert("plinth.lock.json".into(), top);
        assert!(
            err(&garbled).contains("`er/plinth.lock.json` is not a plinth lock part"),
            "{}",
            err(&garbled)
        );
        let outside = with_part(&tree, "er/plinth.lock.json", |p| {
            p["objects"][0]["path"] = "_cluster/x.yaml".into();
        });
        assert!(
            err(&outside).contains("outside its directory"),
            "{}",
            err(&outside)
        );
        for (field, value) in [("dir", "_cluster"), ("cluster", "staging")] {
            let other = with_part(&tree, "er/plinth.lock.json", |p| p[field] = value.into());
            assert!(
                err(&other).contains("is not the lock part of `er` in cluster `prod`"),
                "{}",
                err(&other)
            );
        }
        let mut leaving = tree.clone();
        let top = leaving["plinth.lock.json"]
            .replace("\"er/plinth.lock.json\"", "\"../er/plinth.lock.json\"");
        leaving.insert("plinth.lock.json".into(), top);
        assert!(
            err(&leaving).contains("is not `<directory>/plinth.lock.json` in the tree"),
            "{}",
            err(&leaving)
        );
        let part =
            Desired::from_files(&tree["er/plinth.lock.json"], |p| Ok(tree[p].clone())).unwrap_err();
        assert!(matches!(part, Error::Usage(_)), "{part}");
        assert!(
            part.to_string().contains("pass the cluster's directory"),
            "{part}"
        );
        let mut v3 = tree.clone();
        let top = v3["plinth.lock.json"].replacen("\"version\": 2", "\"version\": 3", 1);
        v3.insert("plinth.lock.json".into(), top);
        assert!(
            err(&v3).contains("this agent reads versions 1 and 2"),
            "{}",
            err(&v3)
        );
    }

    #[test]
    fn compiled_output_equals_the_tree_read_back() {
        let out = &compiled();
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
