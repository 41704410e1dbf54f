//! Emit: lowered manifests as files — YAML text, the `out/<cluster>/` layout, a
//! `kustomization.yaml` and a `plinth.lock.json` per cluster, or one YAML stream.
//!
//! Pure: it builds an in-memory [`Tree`] of relative paths and bytes. Writing the tree to disk
//! (atomically) is the CLI's job.

use std::collections::BTreeMap;

use serde_json::json;

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
    let mut path = String::new();
    push_object_path(key, &mut path);
    path
}

/// [`object_path`], appended to `out`.
fn push_object_path(key: &ObjectKey, out: &mut String) {
    out.reserve(
        key.namespace.as_ref().map_or(8, String::len) + key.kind.len() + key.name.len() + 8,
    );
    out.push_str(key.namespace.as_deref().unwrap_or("_cluster"));
    out.push('/');
    out.extend(key.kind.chars().map(|c| c.to_ascii_lowercase()));
    out.push('-');
    out.push_str(&key.name);
    out.push_str(".yaml");
}

/// The `out/` tree for some clusters (all when `only` is `None`).
pub fn tree(lowered: &Lowered, only: Option<&str>) -> Result<Tree, String> {
    Ok(files(lowered, only, &|_, _| false)?.texts)
}

/// A build's files, not all of them necessarily rendered: `texts` holds the rendered ones and
/// `ids` names the content of every file — an object's file by its object's `sha256` (as the
/// lock file lists it), the kustomization and lock file by a digest of their text
/// ([`large_text_id`]). A file in `ids` but not in
/// `texts` was not rendered: the caller knew a file on disk holding that content.
#[derive(Debug, Default)]
pub struct Files {
    pub texts: Tree,
    pub ids: BTreeMap<String, String>,
    /// Rendered files the caller knows to differ from the file on disk (written without
    /// reading the old one first).
    pub differ: std::collections::BTreeSet<String>,
}

/// Objects rendered a run at a time (a hundred thousand at scale: one lock text per run, not
/// per object).
const RUN: usize = 512;

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
        let prefix = format!("{cluster}/");
        let runs: Vec<Run> = out
            .manifests
            .par_chunks(RUN)
            .map(|run| {
                render_run(run, &prefix, |m, path| {
                    let (id, text) = m.object.sha_and_yaml(|id| !known(path, id));
                    (text, id.to_owned())
                })
            })
            .collect();
        add_cluster(&mut files, (cluster, &prefix), runs, &out.approvals, known)?;
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
        // In runs, each moved out once (and freed with its run once rendered).
        let mut objects = out.manifests.into_iter();
        let mut runs: Vec<Vec<Manifest>> = Vec::new();
        loop {
            let run: Vec<Manifest> = objects.by_ref().take(RUN).collect();
            if run.is_empty() {
                break;
            }
            runs.push(run);
        }
        let prefix = format!("{cluster}/");
        let runs: Vec<Run> = runs
            .into_par_iter()
            .map(|run| render_run(&run, &prefix, whole))
            .collect();
        add_cluster(
            &mut files,
            (&cluster, &prefix),
            runs,
            &out.approvals,
            &|_, _| false,
        )?;
    }
    Ok(files.texts)
}

/// An object's YAML and its id (from one parse at most).
fn whole(m: &Manifest, _: &str) -> (Option<String>, String) {
    let (id, text) = m.object.sha_and_yaml(|_| true);
    (text, id.to_owned())
}

/// One cluster's files.
pub fn cluster_tree(cluster: &str, out: &ClusterOutput) -> Result<Tree, String> {
    use rayon::prelude::*;
    // Rendering is per run of objects and in parallel; the tree is assembled in object order.
    let runs: Vec<Run> = out
        .manifests
        .par_chunks(RUN)
        .map(|run| render_run(run, "", whole))
        .collect();
    let mut files = Files::default();
    add_cluster(&mut files, (cluster, ""), runs, &out.approvals, &|_, _| {
        false
    })?;
    Ok(files.texts)
}

/// A run of objects rendered: per object its file's path (with the cluster's prefix), its
/// text (`None`: not rendered) and the id of its content; and their lock entries, one after
/// the other (`ends`: where each ends).
struct Run {
    files: Vec<(String, Option<String>, String)>,
    lock: String,
    ends: Vec<usize>,
}

/// Render a run of objects: each object's path (`prefix` and [`object_path`]) and what
/// `render(object, path)` makes of it (its text, when rendered, and its id), and its lock entry.
fn render_run(
    run: &[Manifest],
    prefix: &str,
    render: impl Fn(&Manifest, &str) -> (Option<String>, String),
) -> Run {
    let mut files = Vec::with_capacity(run.len());
    let mut lock = String::with_capacity(run.len() * 480);
    let mut ends = Vec::with_capacity(run.len());
    for m in run {
        let mut path = String::with_capacity(prefix.len() + 64);
        path.push_str(prefix);
        push_object_path(&m.key, &mut path);
        let (text, id) = render(m, &path);
        push_lock_entry(&lock_entry(m, &path[prefix.len()..], &id), &mut lock);
        ends.push(lock.len());
        files.push((path, text, id));
    }
    Run { files, lock, ends }
}

/// The name of a lock file: a cluster's (`<cluster>/plinth.lock.json`, listing its parts) and
/// each part's (`<cluster>/<dir>/plinth.lock.json`, listing the objects written in `<dir>`).
pub const LOCK_FILE: &str = "plinth.lock.json";

/// The version of the lock files written (1: one lock file listing every object).
pub const LOCK_VERSION: u32 = 2;

/// A cluster's lock parts: per directory of its objects (a namespace, or `_cluster`), the
/// part's path (`<dir>/plinth.lock.json`), text and sha256. `files` are the objects' paths
/// (with `prefix`) in object (key) order and `locks` their runs' entries, in the same order
/// (each run's text and where each of its entries ends): a part lists its entries in that
/// order.
fn lock_parts(
    cluster: &str,
    prefix: &str,
    files: &[(String, String)],
    locks: &[(String, Vec<usize>)],
) -> Result<Vec<(String, String, String)>, String> {
    use rayon::prelude::*;
    let mut by_dir: std::collections::HashMap<&str, Vec<&str>, foldhash::fast::RandomState> =
        Default::default();
    let mut paths = files.iter();
    for (lock, ends) in locks {
        let mut from = 0;
        for (&end, (path, _)) in ends.iter().zip(paths.by_ref()) {
            let rel = &path[prefix.len()..];
            let dir = rel.split_once('/').map_or(rel, |(d, _)| d);
            by_dir.entry(dir).or_default().push(&lock[from..end]);
            from = end;
        }
    }
    let mut by_dir: Vec<(&str, Vec<&str>)> = by_dir.into_iter().collect();
    by_dir.sort_unstable_by_key(|(dir, _)| *dir);
    by_dir
        .par_iter()
        .map(|(dir, entries)| {
            let text = part_text(cluster, dir, entries)?;
            let sha = crate::lower::sha256_hex(text.as_bytes());
            Ok((format!("{dir}/{LOCK_FILE}"), text, sha))
        })
        .collect()
}

/// Add a cluster's files from its rendered objects, in object order: the objects, the
/// kustomization, the lock parts and the lock file (which lists the parts and the approvals
/// of the cluster, when there are any: the agent judges deletions by them). Paths carry
/// `prefix`; a file `known` to hold its content already is not kept (only its id).
fn add_cluster(
    files: &mut Files,
    (cluster, prefix): (&str, &str),
    runs: Vec<Run>,
    approvals: &[Approval],
    known: &(dyn Fn(&str, &str) -> bool + Sync),
) -> Result<(), String> {
    let mut locks = Vec::with_capacity(runs.len());
    let mut ids: Vec<(String, String)> =
        Vec::with_capacity(runs.iter().map(|r| r.files.len()).sum::<usize>() + 2);
    for run in runs {
        for (path, text, id) in run.files {
            if let Some(text) = text {
                files.texts.insert(path.clone(), text);
            }
            ids.push((path, id));
        }
        locks.push((run.lock, run.ends));
    }
    let parts = lock_parts(cluster, prefix, &ids, &locks)?;
    drop(locks);
    use rayon::prelude::*;
    // In path order (the kustomization's), two objects of one file side by side.
    ids.par_sort_unstable_by(|a, b| a.0.cmp(&b.0));
    if let Some(w) = ids.windows(2).find(|w| w[0].0 == w[1].0) {
        let path = w[0].0.strip_prefix(prefix).unwrap_or(&w[0].0);
        return Err(format!(
            "two objects of cluster `{cluster}` map to the file `{path}`"
        ));
    }
    // The two aggregate files, each rendered and hashed at once with the other.
    let (kustomization, lock_text) = rayon::join(
        || {
            let text = kustomization_text(ids.iter().map(|(p, _)| &p[prefix.len()..]));
            let id = large_text_id(&text);
            (text, id)
        },
        || {
            let listed = parts.iter().map(|(p, _, sha)| (p.as_str(), sha.as_str()));
            top_text(cluster, listed, approvals).map(|text| {
                let id = large_text_id(&text);
                (text, id)
            })
        },
    );
    for (path, text, sha) in parts {
        let full = format!("{prefix}{path}");
        if !known(&full, &sha) {
            files.texts.insert(full.clone(), text);
        }
        ids.push((full, sha));
    }
    // Sorted but for the parts at the end: the map is built in one pass.
    let mut ids: BTreeMap<String, String> = ids.into_iter().collect();
    for (name, (text, id)) in [
        ("kustomization.yaml", kustomization),
        (LOCK_FILE, lock_text?),
    ] {
        let full = format!("{prefix}{name}");
        if !known(&full, &id) {
            files.texts.insert(full.clone(), text);
        }
        ids.insert(full, id);
    }
    if files.ids.is_empty() {
        files.ids = ids;
    } else {
        files.ids.extend(ids);
    }
    Ok(())
}

/// The id of an aggregate file's content (see [`Files`]): tens of megabytes for a large
/// platform, so hashed in pieces in parallel — the sha256 of the pieces' sha256s, each piece
/// a megabyte (a digest of the text all the same: the same text, the same id).
pub fn large_text_id(text: &str) -> String {
    use rayon::prelude::*;
    use sha2::Digest;
    const PIECE: usize = 1 << 20;
    let pieces: Vec<[u8; 32]> = text
        .as_bytes()
        .par_chunks(PIECE)
        .map(|p| sha2::Sha256::digest(p).into())
        .collect();
    let mut h = sha2::Sha256::new();
    h.update(u64::try_from(text.len()).unwrap_or(u64::MAX).to_le_bytes());
    for p in &pieces {
        h.update(p);
    }
    crate::output::hex(&h.finalize())
}

/// A cluster's `kustomization.yaml`: every object's file, in path order (`paths` sorted), as
/// [`to_yaml`] writes the document (written item by item: a hundred thousand of them).
fn kustomization_text<'a>(paths: impl ExactSizeIterator<Item = &'a str>) -> String {
    const HEAD: &str = "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\n";
    if paths.len() == 0 {
        return to_yaml(&json!({
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": [],
        }));
    }
    let mut text = String::with_capacity(HEAD.len() + 16 + paths.len() * 64);
    text.push_str(HEAD);
    text.push_str("resources:\n");
    for p in paths {
        crate::output::push_string_item(p, 2, &mut text);
    }
    text
}

/// A lock part's text: `serde_json`'s pretty form of a [`LockFile`] of `cluster`'s directory
/// `dir`, from its object entries already in that form ([`push_lock_entry`], rendered in
/// parallel with the objects: tens of megabytes for a large platform, in all).
fn part_text(cluster: &str, dir: &str, entries: &[&str]) -> Result<String, String> {
    let shell = part_shell(cluster, dir)?;
    if entries.is_empty() {
        return Ok(shell);
    }
    // The empty list's place (the quotes of a key cannot occur inside a JSON string).
    let Some(i) = shell.find(OBJECTS) else {
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
    text.push_str(&shell[i + OBJECTS.len()..]);
    Ok(text)
}

/// Where a lock part's shell ([`part_shell`]) takes its entries.
const OBJECTS: &str = "\"objects\": []";

/// A lock part of `cluster`'s directory `dir` without its entries.
fn part_shell(cluster: &str, dir: &str) -> Result<String, String> {
    let doc = LockFile {
        version: LOCK_VERSION,
        cluster,
        dir: Some(dir),
        parts: None,
        objects: Some(Vec::new()),
        approvals: &[],
    };
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    Ok(text + "\n")
}

/// A cluster's lock file: its parts (path and sha256 each, in path order) and its approvals.
fn top_text<'a>(
    cluster: &str,
    parts: impl Iterator<Item = (&'a str, &'a str)>,
    approvals: &[Approval],
) -> Result<String, String> {
    let doc = LockFile {
        version: LOCK_VERSION,
        cluster,
        dir: None,
        parts: Some(
            parts
                .map(|(path, sha256)| LockPart { path, sha256 })
                .collect(),
        ),
        objects: None,
        approvals,
    };
    let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
    Ok(text + "\n")
}

/// What [`splice_lock`] makes of a cluster's lock files.
#[derive(Debug)]
pub struct SplicedLock<'o> {
    /// The cluster's lock file (borrowed when no part changed).
    pub top: std::borrow::Cow<'o, str>,
    /// The parts that changed: path (`<dir>/plinth.lock.json`), text and sha256 each.
    pub parts: Vec<(String, String, String)>,
}

/// A cluster's lock files written for a revision holding the same object keys — its lock file
/// `top` and the parts `part(path)` reads — with the entries of the `changed` objects (each
/// with its content id) written anew: the lock files [`files`] renders for the objects they
/// list with those changed, when they are ones this module wrote for `cluster` and `approvals`
/// (and each part read is the one `top` lists, by its sha256). `None` when they are not or an
/// object is not listed (then the lock files are rendered whole). Each object's entry is found
/// by a binary search over its part's entries (in key order); only the parts holding a changed
/// entry are read.
pub fn splice_lock<'o>(
    top: &'o str,
    part: &dyn Fn(&str) -> Option<String>,
    cluster: &str,
    changed: &[(&Manifest, &str)],
    approvals: &[Approval],
) -> Option<SplicedLock<'o>> {
    let mut by_dir: BTreeMap<String, Vec<(&Manifest, &str)>> = BTreeMap::new();
    for &(m, id) in changed {
        let path = object_path(&m.key);
        let (dir, _) = path.split_once('/')?;
        by_dir.entry(dir.to_owned()).or_default().push((m, id));
    }
    // The lock file as written for this cluster and its approvals, its parts' list aside.
    let shell = top_text(cluster, std::iter::empty(), approvals).ok()?;
    let at = "\"parts\": []";
    let i = shell.find(at)?;
    let (head, tail) = (&shell[..i], &shell[i + at.len()..]);
    let list = top.strip_prefix(head)?.strip_suffix(tail)?;
    let mut edits: Vec<(usize, String)> = Vec::new();
    let mut parts = Vec::new();
    for (dir, objects) in &by_dir {
        let path = format!("{dir}/{LOCK_FILE}");
        // The part's line in the list, then its sha256 (a line break cannot occur in a JSON
        // string, so this is a part's entry).
        let mut needle = String::from("\"path\": ");
        push_json_string(&path, &mut needle);
        needle.push_str(",\n      \"sha256\": \"");
        let sha_at = list.find(&needle)? + needle.len();
        let listed = list.get(sha_at..sha_at + 64)?;
        let old = part(&path)?;
        if crate::lower::sha256_hex(old.as_bytes()) != listed {
            return None;
        }
        let shell = part_shell(cluster, dir).ok()?;
        if let std::borrow::Cow::Owned(new) = splice_entries(&old, &shell, objects)? {
            let sha = crate::lower::sha256_hex(new.as_bytes());
            edits.push((head.len() + sha_at, sha.clone()));
            parts.push((path, new, sha));
        }
    }
    let top = if edits.is_empty() {
        std::borrow::Cow::Borrowed(top)
    } else {
        let mut text = top.to_owned();
        for (at, sha) in &edits {
            text.replace_range(*at..*at + sha.len(), sha);
        }
        std::borrow::Cow::Owned(text)
    };
    Some(SplicedLock { top, parts })
}

/// A lock part `old` (whose shell is `shell`) with the entries of `changed` written anew;
/// borrowed when every entry is as it was. `None` when `old` is not of that shell or an object
/// is not listed.
fn splice_entries<'o>(
    old: &'o str,
    shell: &str,
    changed: &[(&Manifest, &str)],
) -> Option<std::borrow::Cow<'o, str>> {
    let i = shell.find(OBJECTS)?;
    let (head, tail) = (&shell[..i], &shell[i + OBJECTS.len()..]);
    let open = "\"objects\": [\n";
    let close = "\n  ]";
    let body = old
        .strip_prefix(head)?
        .strip_prefix(open)?
        .strip_suffix(tail)?
        .strip_suffix(close)?;
    let offset = head.len() + open.len();
    let mut edits: Vec<(usize, usize, String)> = Vec::with_capacity(changed.len());
    for (m, id) in changed {
        let (s, e) = find_lock_entry(body, &m.key)?;
        let path = object_path(&m.key);
        let mut entry = String::with_capacity(e - s);
        push_lock_entry(&lock_entry(m, &path, id), &mut entry);
        edits.push((offset + s, offset + e, entry));
    }
    edits.sort_unstable_by_key(|(s, ..)| *s);
    if edits.windows(2).any(|w| w[0].1 > w[1].0) {
        return None;
    }
    if edits.iter().all(|(s, e, entry)| old[*s..*e] == *entry) {
        return Some(std::borrow::Cow::Borrowed(old));
    }
    let mut text = String::with_capacity(old.len() + edits.len() * 64);
    let mut from = 0;
    for (s, e, entry) in &edits {
        text.push_str(&old[from..*s]);
        text.push_str(entry);
        from = *e;
    }
    text.push_str(&old[from..]);
    Some(std::borrow::Cow::Owned(text))
}

/// The byte range of the entry of `key` among a lock file's entries `body` (each starting
/// with a line `    {` and ending with a line `    }`, in key order).
fn find_lock_entry(body: &str, key: &ObjectKey) -> Option<(usize, usize)> {
    // An entry starts at a line that is `    {` (a JSON string holds no line break, and the
    // entries' own fields are indented further).
    let start_at = |from: usize| -> Option<usize> {
        if from == 0 {
            return body
                .starts_with("    {\n")
                .then_some(0)
                .or_else(|| start_at_after(body, 0));
        }
        start_at_after(body, from - 1)
    };
    let (mut lo, mut hi) = (0, body.len());
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let s = match start_at(mid) {
            Some(s) if s < hi => s,
            // No entry starts in `mid..hi`: the one sought is before `mid`, if anywhere.
            _ => {
                if mid == lo {
                    return None;
                }
                hi = mid;
                continue;
            }
        };
        let e = s + body[s..].find("\n    }")? + "\n    }".len();
        let entry = &body[s..e];
        let found = ObjectKey {
            api_version: lock_field(entry, "apiVersion")?,
            kind: lock_field(entry, "kind")?,
            namespace: lock_field(entry, "namespace"),
            name: lock_field(entry, "name")?,
        };
        match key.cmp(&found) {
            std::cmp::Ordering::Equal => return Some((s, e)),
            std::cmp::Ordering::Less => hi = s,
            std::cmp::Ordering::Greater => lo = s + 1,
        }
    }
    None
}

/// Where the next line `    {` after byte `from` of `body` starts.
fn start_at_after(body: &str, from: usize) -> Option<usize> {
    body.get(from..)?.find("\n    {\n").map(|k| from + k + 1)
}

/// A string field of an object's entry in the lock file (a line of its own, indented six).
fn lock_field(entry: &str, field: &str) -> Option<String> {
    let needle = format!("\n      \"{field}\": ");
    let at = entry.find(&needle)? + needle.len();
    let line = &entry[at..];
    let line = &line[..line.find('\n').unwrap_or(line.len())];
    serde_json::from_str(line.strip_suffix(',').unwrap_or(line)).ok()
}

/// Append an object's entry as the lock file's pretty form has it (at depth 2, four spaces):
/// what `serde_json::to_string_pretty` writes for a [`LockEntry`] in a [`LockFile`], written
/// directly (unit-tested against `serde_json`).
fn push_lock_entry(e: &LockEntry<'_>, out: &mut String) {
    use std::fmt::Write;
    out.push_str("    {\n      \"apiVersion\": ");
    push_json_string(e.api_version, out);
    out.push_str(",\n      \"kind\": ");
    push_json_string(e.kind, out);
    out.push_str(",\n      \"name\": ");
    push_json_string(e.name, out);
    out.push_str(",\n      \"path\": ");
    push_json_string(e.path, out);
    out.push_str(",\n      \"sha256\": ");
    push_json_string(e.sha256, out);
    out.push_str(",\n      \"source\": {\n        \"file\": ");
    push_json_string(e.source.file, out);
    // Writing into a string cannot fail.
    let _ = write!(out, ",\n        \"line\": {}", e.source.line);
    out.push_str(",\n        \"kind\": ");
    push_json_string(e.source.kind, out);
    out.push_str(",\n        \"name\": ");
    push_json_string(e.source.name, out);
    out.push_str("\n      }");
    if let Some(ns) = e.namespace {
        out.push_str(",\n      \"namespace\": ");
        push_json_string(ns, out);
    }
    out.push_str("\n    }");
}

/// `s` as a JSON string, as `serde_json` writes it: quoted, with `"`, `\\` and control
/// characters escaped (nothing else) — pushed as it is when it has none of them.
fn push_json_string(s: &str, out: &mut String) {
    if s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    }
}

fn lock_entry<'a>(m: &'a Manifest, path: &'a str, sha256: &'a str) -> LockEntry<'a> {
    LockEntry {
        api_version: &m.key.api_version,
        kind: &m.key.kind,
        name: &m.key.name,
        path,
        sha256,
        source: LockSource {
            file: &m.origin.file,
            line: m.origin.line,
            kind: m.origin.kind.as_str(),
            name: &m.origin.name,
        },
        namespace: m.key.namespace.as_deref(),
    }
}

/// An object's entry in `plinth.lock.json` (fields in the order written).
#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct LockEntry<'a> {
    api_version: &'a str,
    kind: &'a str,
    name: &'a str,
    path: &'a str,
    sha256: &'a str,
    source: LockSource<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<&'a str>,
}

#[derive(serde::Serialize)]
struct LockSource<'a> {
    file: &'a str,
    line: u32,
    kind: &'a str,
    name: &'a str,
}

/// A lock file ([`LOCK_FILE`]): a cluster's (its `parts` and `approvals`) or a part's (its
/// `dir` and `objects`).
#[derive(serde::Serialize)]
struct LockFile<'a> {
    version: u32,
    cluster: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    dir: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    parts: Option<Vec<LockPart<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    objects: Option<Vec<LockEntry<'a>>>,
    #[serde(skip_serializing_if = "<[Approval]>::is_empty")]
    approvals: &'a [Approval],
}

/// A part's entry in a cluster's lock file.
#[derive(serde::Serialize)]
struct LockPart<'a> {
    path: &'a str,
    sha256: &'a str,
}

/// One cluster's objects as a single YAML stream, in apply order.
pub fn stream(out: &ClusterOutput) -> String {
    use rayon::prelude::*;
    let mut ms: Vec<&Manifest> = out.manifests.iter().collect();
    ms.sort_by(|a, b| (Stage::of(&a.key), &a.key).cmp(&(Stage::of(&b.key), &b.key)));
    // Each object written on any core, the stream joined in apply order.
    let texts: Vec<String> = ms.par_iter().map(|m| m.object.yaml()).collect();
    let mut s = String::with_capacity(texts.iter().map(|t| t.len() + 4).sum());
    for t in texts {
        s.push_str("---\n");
        s.push_str(&t);
    }
    s
}

pub use crate::output::to_yaml;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse::yaml::{YamlLimits, parse_documents};
    use serde_json::Value;
    use std::sync::Arc;

    #[test]
    fn a_lock_part_is_the_pretty_form_of_the_whole_document() {
        // Strings JSON must escape (quotes, a newline, a backslash, a control character) and
        // some it must not (non-ASCII).
        let names: Vec<String> = (0..3).map(|i| format!("cm-{i}")).collect();
        let paths: Vec<String> = (0..3).map(|i| format!("x/configmap-cm-{i}.yaml")).collect();
        let sha = "ab".repeat(32);
        let entry = |i: usize, ns: Option<&'static str>| LockEntry {
            api_version: "v1",
            kind: "ConfigMap",
            name: &names[i],
            path: &paths[i],
            sha256: &sha,
            source: LockSource {
                file: "projects/a \"quoted\" file\\é.yaml",
                line: 3 + u32::try_from(i).expect("small"),
                kind: "Project",
                name: "a\nb\u{1}",
            },
            namespace: ns,
        };
        for n in [0, 1, 3] {
            for dir in ["x", "_cluster", "é \"q\""] {
                let texts: Vec<String> = (0..n)
                    .map(|i| {
                        let mut text = String::new();
                        push_lock_entry(&entry(i, (i % 2 == 0).then_some("x")), &mut text);
                        text
                    })
                    .collect();
                let mut want = serde_json::to_string_pretty(&LockFile {
                    version: LOCK_VERSION,
                    cluster: "prod",
                    dir: Some(dir),
                    parts: None,
                    objects: Some(
                        (0..n)
                            .map(|i| entry(i, (i % 2 == 0).then_some("x")))
                            .collect(),
                    ),
                    approvals: &[],
                })
                .expect("json");
                want.push('\n');
                let entries: Vec<&str> = texts.iter().map(String::as_str).collect();
                assert_eq!(part_text("prod", dir, &entries).expect("text"), want);
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn a_json_string_is_written_as_serde_json_writes_it(s in "\\PC*|[\\x00-\\x7f]*") {
            let mut out = String::new();
            push_json_string(&s, &mut out);
            proptest::prop_assert_eq!(out, serde_json::to_string(&s).expect("json"));
        }
    }

    #[test]
    fn the_kustomization_is_what_to_yaml_writes_of_the_whole_document() {
        let mut paths = [
            "_cluster/namespace-a.yaml",
            "a/configmap-yes.yaml",
            "a/configmap-x: y.yaml",
            "a/secret-#1.yaml",
            "b/config map-\"q\".yaml",
            "yes",
            "1.0",
            "é/ünïcode.yaml",
        ];
        paths.sort_unstable();
        for n in [0, 1, paths.len()] {
            let want = to_yaml(&json!({
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": paths[..n],
            }));
            assert_eq!(kustomization_text(paths[..n].iter().copied()), want);
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

    /// An aggregate file's id is a digest of its whole text: any byte changed (either side of
    /// a piece's edge, or the last) or added changes it; the same text has the same id.
    #[test]
    fn a_large_texts_id_covers_every_byte() {
        let text: String = (0..(3 << 20) + 17)
            .map(|i| char::from(b'a' + (i % 26) as u8))
            .collect();
        let id = large_text_id(&text);
        assert_eq!(id, large_text_id(&text.clone()));
        assert_eq!(id.len(), 64);
        let mut seen = std::collections::BTreeSet::from([id]);
        for at in [0, (1 << 20) - 1, 1 << 20, 2 << 20, text.len() - 1] {
            let mut bytes = text.clone().into_bytes();
            bytes[at] = b'!';
            let changed = String::from_utf8(bytes).expect("ascii");
            assert!(seen.insert(large_text_id(&changed)), "a change at {at}");
        }
        assert!(
            seen.insert(large_text_id(&format!("{text}a"))),
            "a byte more"
        );
        assert!(seen.insert(large_text_id("")));
        assert!(seen.insert(large_text_id("a")));
    }

    /// A cluster of `n` ConfigMaps in namespace `a` (in key order), and more in `extra`.
    fn cluster_of(n: usize, extra: &[(&str, &str)]) -> Lowered {
        cluster_in(n, extra, &[Some("a")])
    }

    /// A cluster of `n` config maps and the `extra` ones (API version and name), the `i`th in
    /// the namespace `namespaces[i % len]` (`None`: cluster-scoped), the extra ones in `a`.
    fn cluster_in(n: usize, extra: &[(&str, &str)], namespaces: &[Option<&str>]) -> Lowered {
        let origin = crate::output::Origin {
            file: Arc::from("projects/a.yaml"),
            line: 1,
            kind: crate::model::Kind::Project,
            name: "a".into(),
        };
        let object = |api: &str, name: &str, ns: Option<&str>| {
            let mut v = json!({"apiVersion": api, "kind": "ConfigMap", "metadata": {"name": name}});
            if let Some(ns) = ns {
                v["metadata"]["namespace"] = json!(ns);
            }
            Manifest {
                key: ObjectKey::of(&v),
                object: crate::output::Obj::from(v),
                origin: origin.clone(),
                hash: "h".into(),
            }
        };
        let mut manifests: Vec<Manifest> = (0..n)
            .map(|i| {
                object(
                    "v1",
                    &format!("cm-{i:04}"),
                    namespaces[i % namespaces.len()],
                )
            })
            .chain(extra.iter().map(|(api, name)| object(api, name, Some("a"))))
            .collect();
        manifests.sort_by(|a, b| a.key.cmp(&b.key));
        let out = ClusterOutput {
            manifests,
            approvals: Vec::new(),
        };
        Lowered {
            clusters: [("prod".to_owned(), out)].into(),
            platform_file: None,
            units: None,
        }
    }

    /// Objects rendered in runs make the files and the lock files rendering them one by one
    /// would: every object's file, a lock part per directory listing its objects in key order
    /// (with the sha256 of its text in the cluster's lock file, which lists the parts).
    #[test]
    fn objects_rendered_in_runs_are_every_file_and_the_lock_files() {
        let spread = [Some("a"), Some("b"), None, Some("a")];
        for n in [0, 1, 3, RUN - 1, RUN, RUN + 1, 2 * RUN + 7] {
            let lowered = cluster_in(n, &[], &spread);
            let rendered = files(&lowered, None, &|_, _| false).expect("renders");
            let objects = &lowered.clusters["prod"].manifests;
            let mut dirs: BTreeMap<String, Vec<&str>> = BTreeMap::new();
            for m in objects {
                let path = object_path(&m.key);
                let dir = path.split_once('/').expect("a directory").0.to_owned();
                dirs.entry(dir).or_default().push(&m.key.name);
                let path = format!("prod/{path}");
                assert_eq!(rendered.ids[&path], m.object.sha());
                assert_eq!(rendered.texts[&path], m.object.peek(to_yaml));
            }
            assert_eq!(
                rendered.ids.len(),
                n + dirs.len() + 2,
                "the objects, a part per directory, the kustomization, the lock file"
            );
            let top: Value =
                serde_json::from_str(&rendered.texts["prod/plinth.lock.json"]).expect("json");
            assert_eq!(top["version"], 2);
            let parts: Vec<(&str, &str)> = top["parts"]
                .as_array()
                .expect("a list")
                .iter()
                .map(|p| {
                    (
                        p["path"].as_str().expect("a path"),
                        p["sha256"].as_str().expect("a sha"),
                    )
                })
                .collect();
            let want: Vec<String> = dirs
                .keys()
                .map(|d| format!("{d}/plinth.lock.json"))
                .collect();
            assert_eq!(parts.iter().map(|(p, _)| *p).collect::<Vec<_>>(), want);
            for ((path, sha), (dir, names)) in parts.iter().zip(&dirs) {
                let text = &rendered.texts[&format!("prod/{path}")];
                assert_eq!(crate::lower::sha256_hex(text.as_bytes()), *sha);
                assert_eq!(rendered.ids[&format!("prod/{path}")], *sha);
                let part: Value = serde_json::from_str(text).expect("json");
                assert_eq!(part["dir"], dir.as_str());
                let listed: Vec<&str> = part["objects"]
                    .as_array()
                    .expect("a list")
                    .iter()
                    .map(|e| e["name"].as_str().expect("a name"))
                    .collect();
                assert_eq!(&listed, names, "{dir}: in key order");
            }
            // The same files consuming the output, and for the cluster alone.
            assert_eq!(
                into_tree(cluster_in(n, &[], &spread), None).expect("renders"),
                rendered.texts
            );
            let alone = cluster_tree("prod", &lowered.clusters["prod"]).expect("renders");
            let prefixed: Tree = alone
                .into_iter()
                .map(|(p, t)| (format!("prod/{p}"), t))
                .collect();
            assert_eq!(prefixed, rendered.texts);
            // Known files are not rendered, and still named with their ids.
            let known = files(&lowered, None, &|p, _| !p.ends_with(".json")).expect("renders");
            assert_eq!(known.texts.len(), 1 + dirs.len(), "only the lock files");
            assert_eq!(known.ids, rendered.ids);
        }
    }

    /// The objects of `out` at the places `pick`, each with its content id.
    fn picked<'o>(out: &'o ClusterOutput, pick: &[usize]) -> Vec<(&'o Manifest, &'o str)> {
        pick.iter()
            .map(|&i| (&out.manifests[i], out.manifests[i].object.sha()))
            .collect()
    }

    /// Lock files with some objects' entries spliced in are the lock files of the objects with
    /// those changed (content, source line), wherever they fall among the entries (first,
    /// last, side by side, in one part or several, cluster-scoped ones among them): the parts
    /// holding them rewritten, the others not read, the cluster's lock file listing the new
    /// parts. Lock files not of this cluster or its approvals, a part that is not the one the
    /// lock file lists, or an object they do not list, are no splice.
    #[test]
    fn spliced_lock_files_are_the_lock_files_of_the_objects_changed() {
        let extra = [("example.com/v1", "x-0"), ("apps/v1", "a-0"), ("v1", "zz")];
        let spread = [Some("a"), None, Some("b"), Some("b"), Some("c")];
        for n in [1, 2, 3, 17, RUN + 3] {
            let base = cluster_in(n, &extra, &spread);
            let total = n + extra.len();
            let old = files(&base, None, &|_, _| false).expect("renders").texts;
            let top = &old["prod/plinth.lock.json"];
            let read = std::sync::Mutex::new(Vec::new());
            let part = |p: &str| {
                read.lock().expect("lock").push(p.to_owned());
                old.get(&format!("prod/{p}")).cloned()
            };
            let picks: Vec<Vec<usize>> = vec![
                vec![0],
                vec![total - 1],
                vec![0, 1],
                (0..total).step_by(3).collect(),
                (0..total).collect(),
            ];
            for pick in picks {
                let mut head = cluster_in(n, &extra, &spread);
                let out = head.clusters.get_mut("prod").expect("prod");
                for &i in &pick {
                    let m = &mut out.manifests[i];
                    let mut v = m.object.peek(|v| v.clone());
                    v["data"] = json!({"changed": i});
                    m.object = crate::output::Obj::from(v);
                    m.origin.line = 40 + u32::try_from(i).expect("small");
                }
                let new = files(&head, None, &|_, _| false).expect("renders").texts;
                let changed = picked(&head.clusters["prod"], &pick);
                read.lock().expect("lock").clear();
                let spliced = splice_lock(top, &part, "prod", &changed, &[]).expect("spliced");
                assert!(
                    spliced.top == new["prod/plinth.lock.json"].as_str(),
                    "n = {n}, picked {pick:?}"
                );
                assert!(matches!(spliced.top, std::borrow::Cow::Owned(_)));
                let touched: std::collections::BTreeSet<String> = changed
                    .iter()
                    .map(|(m, _)| {
                        format!(
                            "{}/plinth.lock.json",
                            object_path(&m.key).split_once('/').expect("dir").0
                        )
                    })
                    .collect();
                let written: std::collections::BTreeSet<String> =
                    spliced.parts.iter().map(|(p, ..)| p.clone()).collect();
                assert_eq!(written, touched);
                let was_read: std::collections::BTreeSet<String> =
                    read.lock().expect("lock").iter().cloned().collect();
                assert_eq!(
                    was_read, touched,
                    "only the parts holding a changed entry are read"
                );
                for (path, text, sha) in &spliced.parts {
                    assert_eq!(text, &new[&format!("prod/{path}")]);
                    assert_eq!(sha, &new_sha(text));
                }
                // The old objects spliced into their own lock files: nothing to write.
                let same = picked(&base.clusters["prod"], &pick);
                let unchanged = splice_lock(top, &part, "prod", &same, &[]).expect("spliced");
                assert!(
                    matches!(unchanged.top, std::borrow::Cow::Borrowed(t) if t == top.as_str())
                );
                assert!(unchanged.parts.is_empty());
                assert!(splice_lock(top, &part, "other", &changed, &[]).is_none());
                let approvals = [Approval {
                    object: "Namespace/a".into(),
                    cluster: None,
                    reason: "moved".into(),
                    approver: None,
                    file: Arc::from("plinth.yaml"),
                    line: 3,
                }];
                assert!(splice_lock(top, &part, "prod", &changed, &approvals).is_none());
                // A part that is not the one listed (changed behind plinth's back).
                let tampered = |p: &str| part(p).map(|t| t.replacen("\"kind\"", "\"kind\" ", 1));
                assert!(splice_lock(top, &tampered, "prod", &changed, &[]).is_none());
            }
            let stranger = cluster_of(1, &[("v1", "not-listed")]);
            let m = stranger.clusters["prod"]
                .manifests
                .iter()
                .find(|m| m.key.name == "not-listed")
                .expect("one");
            assert!(splice_lock(top, &part, "prod", &[(m, m.object.sha())], &[]).is_none());
        }
    }

    fn new_sha(text: &str) -> String {
        crate::lower::sha256_hex(text.as_bytes())
    }

    /// Two objects whose files would be one (kinds differing in case, or an API group only)
    /// are refused, wherever they fall among the runs.
    #[test]
    fn two_objects_of_one_file_are_refused() {
        let lowered = cluster_of(2 * RUN, &[("example.com/v1", "cm-0700")]);
        let err = files(&lowered, None, &|_, _| false).expect_err("refused");
        assert_eq!(
            err,
            "two objects of cluster `prod` map to the file `a/configmap-cm-0700.yaml`"
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
