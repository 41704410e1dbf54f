//! Helpers shared by the semantic test suites: repositories as file maps, built in memory.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

pub mod edits;

/// How many cases a property test over random edits runs: `default`, or
/// `PLINTH_PROPTEST_CASES` when set (deeper runs by hand, e.g. `PLINTH_PROPTEST_CASES=300 cargo
/// test -p plinth --test incremental`).
pub fn cases(default: u32) -> u32 {
    std::env::var("PLINTH_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

use std::collections::BTreeMap;
use std::path::Path;

use plinth::load::MemSource;
use plinth::lower::{Lowered, Manifest};
use plinth::specs::Specs;
use serde_json::Value;

/// The files under `dir` (relative to the workspace root), by path.
pub fn files_under(dir: &str) -> BTreeMap<String, String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(dir);
    let mut files = BTreeMap::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    files
}

/// The example platform's files.
pub fn example() -> BTreeMap<String, String> {
    files_under("examples/repo")
}

pub struct Built {
    pub specs: Specs,
    pub lowered: Lowered,
    pub diagnostics: Vec<plinth::diag::Diagnostic>,
}

/// A repository in memory.
pub fn source<T: AsRef<[u8]>>(files: &BTreeMap<String, T>) -> MemSource {
    let mut src = MemSource::new();
    for (p, t) in files {
        src = src.with(p, t.as_ref().to_vec());
    }
    src
}

fn run(files: &BTreeMap<String, String>) -> plinth::Built {
    plinth::build_source(&source(files), &plinth::Options::default()).unwrap()
}

/// Options that run plinth's default policy library.
pub fn with_default_policies() -> plinth::Options {
    plinth::Options {
        policies: Some(plinth::PolicyConfig {
            default_library: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Everything a build yields that a user sees: the output tree and the diagnostics.
pub fn outcome(b: &plinth::Built) -> (Option<BTreeMap<String, String>>, Vec<String>) {
    let tree = b
        .lowered
        .as_ref()
        .map(|l| plinth::emit::tree(l, None).expect("tree"));
    (tree, diagnostics(b))
}

/// A build's diagnostics, sorted, each as its debug text.
pub fn diagnostics(b: &plinth::Built) -> Vec<String> {
    b.checked
        .diagnostics
        .clone()
        .into_sorted()
        .into_iter()
        .map(|d| format!("{d:?}"))
        .collect()
}

/// Build; it must succeed without errors.
pub fn build(files: &BTreeMap<String, String>) -> Built {
    let built = run(files);
    let diagnostics: Vec<_> = built.checked.diagnostics.clone().into_sorted();
    let errors: Vec<String> = diagnostics
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{}: {}", d.code.id(), d.message))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    Built {
        specs: built.checked.specs,
        lowered: built.lowered.expect("lowered"),
        diagnostics,
    }
}

/// The build's errors (it must fail).
pub fn build_errors(files: &BTreeMap<String, String>) -> Vec<plinth::diag::Diagnostic> {
    let built = run(files);
    let errors: Vec<_> = built
        .checked
        .diagnostics
        .clone()
        .into_sorted()
        .into_iter()
        .filter(|d| d.is_error())
        .collect();
    assert!(!errors.is_empty(), "the build was expected to fail");
    errors
}

/// Replace `from` by `to` in a file; `from` must be there.
pub fn edit(files: &mut BTreeMap<String, String>, path: &str, from: &str, to: &str) {
    let text = files
        .get_mut(path)
        .unwrap_or_else(|| panic!("no file {path}"));
    assert!(text.contains(from), "{path} does not contain {from:?}");
    *text = text.replacen(from, to, 1);
}

/// Every object of every cluster.
pub fn all_objects(l: &Lowered) -> Vec<&Value> {
    l.clusters
        .values()
        .flat_map(|c| &c.manifests)
        .map(|m| &*m.object)
        .collect()
}

/// Objects of a kind named `name`, on any cluster.
pub fn named<'a>(l: &'a Lowered, kind: &str, name: &str) -> Vec<&'a Value> {
    all_objects(l)
        .into_iter()
        .filter(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .collect()
}

/// The objects of one cluster.
pub fn objects<'a>(l: &'a Lowered, cluster: &str) -> &'a [Manifest] {
    &l.clusters[cluster].manifests
}

/// The objects of one kind on one cluster.
pub fn of_kind<'a>(l: &'a Lowered, cluster: &str, kind: &str) -> Vec<&'a Value> {
    objects(l, cluster)
        .iter()
        .filter(|m| m.key.kind == kind)
        .map(|m| &*m.object)
        .collect()
}

/// One object by kind, namespace and name on one cluster.
pub fn find<'a>(
    l: &'a Lowered,
    cluster: &str,
    kind: &str,
    ns: Option<&str>,
    name: &str,
) -> Option<&'a Value> {
    objects(l, cluster)
        .iter()
        .find(|m| m.key.kind == kind && m.key.namespace.as_deref() == ns && m.key.name == name)
        .map(|m| &*m.object)
}

/// Which part of a unit's record [`damage_units`] damages.
#[derive(Clone, Copy, PartialEq)]
pub enum Part {
    Header,
    Body,
}

/// Damage one part of every unit in the unit packs in place (its first byte flipped: same size,
/// so only checksums can tell), found through the packs' indexes (a format line, then per
/// unit 64 bytes: key, offset, header length, header CRC, body length, body CRC, little-endian;
/// then a CRC-32); how many units.
pub fn damage_units(cache: &std::path::Path, part: Part) -> usize {
    let mut n = 0;
    for e in std::fs::read_dir(cache.join("units")).expect("units") {
        let idx = e.expect("e").path();
        if idx.extension().is_none_or(|x| x != "idx") {
            continue;
        }
        let pack = idx.with_extension("pack");
        let mut bytes = std::fs::read(&pack).expect("read");
        let index = std::fs::read(&idx).expect("index");
        let head = index.iter().position(|&b| b == b'\n').expect("format line") + 1;
        let records = &index[head..index.len() - 4];
        assert_eq!(records.len() % 64, 0, "whole records");
        for r in records.chunks_exact(64) {
            let at = |i: usize| u64::from_le_bytes(r[i..i + 8].try_into().expect("8 bytes"));
            let (offset, head, body) = (at(32), at(40), at(52));
            let at = match part {
                Part::Header => offset,
                Part::Body if body > 0 => offset + head,
                Part::Body => continue,
            };
            bytes[usize::try_from(at).expect("fits")] ^= 0x20;
            n += 1;
        }
        std::fs::write(&pack, bytes).expect("write");
    }
    n
}

/// `git args` in `dir`, without the machine's or the user's configuration and with a fixed
/// identity; its output, trimmed. Panics when git fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    git_with(
        dir,
        args,
        &[
            ("GIT_AUTHOR_NAME", "A"),
            ("GIT_AUTHOR_EMAIL", "a@example.org"),
            ("GIT_COMMITTER_NAME", "A"),
            ("GIT_COMMITTER_EMAIL", "a@example.org"),
        ],
    )
}

/// [`git`] with these environment variables instead of the fixed identity.
pub fn git_with(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = std::process::Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .envs(env.iter().copied())
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}
