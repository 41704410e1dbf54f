//! Golden cases for `plinth build`: `tests/golden/build/<case>/`.
//!
//! Each case holds the input platform repository and `expected/`: the exact `out/` tree the
//! build writes (every cluster directory with its YAML files, `kustomization.yaml` and
//! `plinth.lock.json`; the `.plinth-output` marker files are left out). The real binary runs
//! `plinth build repo --out <scratch>/out` and the written tree is compared byte for byte: a
//! missing, extra or different file fails the case, with the first differing lines shown.
//!
//! The input is one of:
//! - `repo/`: a directory, copied into a scratch directory before the build;
//! - `source`: a file holding one path, relative to the case directory, of a repository
//!   kept elsewhere in the workspace (the `example` case points at `../../../../examples/repo`,
//!   so the example platform is covered without a copy). That repository is built in place
//!   (the build only reads it; output goes to the scratch directory).
//!
//! The build runs as a user runs it, plinth's default policy library included: a case must
//! pass its rules (warnings are fine; they do not change the output).
//!
//! Besides the bytes, every case must build with exit code 0, and each cluster's
//! `kustomization.yaml` must list exactly the object files of its directory, its
//! `plinth.lock.json` exactly the lock parts (`<dir>/plinth.lock.json`, by their sha256) and
//! the parts exactly those object files, each its own directory's.
//!
//! Regenerate after a reviewed change: `PLINTH_UPDATE_GOLDEN=1 cargo test --test golden_build`
//! (rewrites `expected/` whole, so files of objects no longer generated are removed).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const MARKER: &str = ".plinth-output";

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/build")
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    let mut entries: Vec<_> = fs::read_dir(from)
        .expect("read_dir")
        .map(|e| e.expect("entry"))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let ft = e.file_type().expect("file type");
        let dst = to.join(e.file_name());
        if ft.is_symlink() {
            let target = fs::read_link(e.path()).expect("read_link");
            std::os::unix::fs::symlink(target, &dst).expect("symlink");
        } else if ft.is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            fs::copy(e.path(), &dst).expect("copy");
        }
    }
}

/// Every file under `dir` by `/`-separated relative path, marker files excluded.
fn read_tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, Vec<u8>>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd {
            let e = e.expect("entry");
            let p = e.path();
            if e.file_type().expect("file type").is_dir() {
                walk(root, &p, out);
            } else if e.file_name() != MARKER {
                let rel = p
                    .strip_prefix(root)
                    .expect("under root")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, fs::read(&p).expect("read"));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The first lines where two texts part, with a little context.
fn first_lines_diff(expected: &[u8], actual: &[u8]) -> String {
    let e = String::from_utf8_lossy(expected);
    let a = String::from_utf8_lossy(actual);
    let el: Vec<&str> = e.lines().collect();
    let al: Vec<&str> = a.lines().collect();
    let first = el
        .iter()
        .zip(&al)
        .position(|(x, y)| x != y)
        .unwrap_or(el.len().min(al.len()));
    let from = first.saturating_sub(2);
    let mut s = format!(
        "first difference at line {} (- expected, + written)\n",
        first + 1
    );
    for (i, l) in el.iter().enumerate().skip(from).take(8) {
        s.push_str(&format!("  -{:>4} {l}\n", i + 1));
    }
    for (i, l) in al.iter().enumerate().skip(from).take(8) {
        s.push_str(&format!("  +{:>4} {l}\n", i + 1));
    }
    if el.len() != al.len() {
        s.push_str(&format!(
            "  ({} lines expected, {} written)\n",
            el.len(),
            al.len()
        ));
    }
    s
}

/// Where a case's repository is, preparing a scratch copy when it has its own.
fn case_repo(case: &Path, scratch: &Path) -> Result<PathBuf, String> {
    let own = case.join("repo");
    let pointer = case.join("source");
    match (own.is_dir(), pointer.is_file()) {
        (true, false) => {
            let repo = scratch.join("repo");
            copy_tree(&own, &repo);
            Ok(repo)
        }
        (false, true) => {
            let rel = fs::read_to_string(&pointer).map_err(|e| e.to_string())?;
            let target = case.join(rel.trim());
            if !target.is_dir() {
                return Err(format!(
                    "`source` names `{}`, which is not a directory",
                    target.display()
                ));
            }
            Ok(target)
        }
        (true, true) => Err("has both `repo/` and `source`; keep one".to_owned()),
        (false, false) => Err("has neither `repo/` nor `source`".to_owned()),
    }
}

/// Promises every output tree keeps, whatever its bytes: the kustomization and the lock
/// parts of each cluster list exactly that cluster's object files, and its lock file exactly
/// its parts.
fn structural(tree: &BTreeMap<String, Vec<u8>>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut clusters: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for path in tree.keys() {
        let Some((cluster, rest)) = path.split_once('/') else {
            problems.push(format!("`{path}` is not inside a cluster directory"));
            continue;
        };
        let files = clusters.entry(cluster).or_default();
        if rest != "kustomization.yaml" && !rest.ends_with("plinth.lock.json") {
            files.insert(rest);
        }
    }
    if clusters.is_empty() {
        problems.push("no cluster directory was written".to_owned());
    }
    for (cluster, files) in &clusters {
        let Some(k) = tree.get(&format!("{cluster}/kustomization.yaml")) else {
            problems.push(format!("{cluster}: no kustomization.yaml"));
            continue;
        };
        let k = String::from_utf8_lossy(k);
        let listed: BTreeSet<&str> = k.lines().filter_map(|l| l.strip_prefix("  - ")).collect();
        if listed != *files {
            problems.push(format!(
                "{cluster}: kustomization.yaml lists {listed:?} but the directory holds {files:?}"
            ));
        }
        let Some(lock) = tree.get(&format!("{cluster}/plinth.lock.json")) else {
            problems.push(format!("{cluster}: no plinth.lock.json"));
            continue;
        };
        let lock: serde_json::Value = match serde_json::from_slice(lock) {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{cluster}: plinth.lock.json is not JSON: {e}"));
                continue;
            }
        };
        if lock["cluster"] != *cluster {
            problems.push(format!("{cluster}: lock names cluster {}", lock["cluster"]));
        }
        let parts: BTreeSet<&str> = tree
            .keys()
            .filter_map(|p| p.strip_prefix(&format!("{cluster}/")))
            .filter(|p| p.matches('/').count() == 1 && p.ends_with("/plinth.lock.json"))
            .collect();
        let listed: BTreeMap<&str, &str> = lock["parts"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| Some((p["path"].as_str()?, p["sha256"].as_str()?)))
                    .collect()
            })
            .unwrap_or_default();
        if listed.keys().copied().collect::<BTreeSet<_>>() != parts {
            problems.push(format!(
                "{cluster}: plinth.lock.json lists the parts {listed:?} but the directory holds {parts:?}"
            ));
        }
        let mut locked = BTreeSet::new();
        for (part, sha) in listed {
            let Some(text) = tree.get(&format!("{cluster}/{part}")) else {
                continue;
            };
            if plinth::lower::sha256_hex(text) != sha {
                problems.push(format!(
                    "{cluster}: {part} is not the sha256 its lock file lists"
                ));
            }
            let part_lock: serde_json::Value = serde_json::from_slice(text).unwrap_or_default();
            let dir = part.trim_end_matches("/plinth.lock.json");
            for path in part_lock["objects"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|o| o["path"].as_str())
            {
                if path.split_once('/').map(|(d, _)| d) != Some(dir) {
                    problems.push(format!(
                        "{cluster}: {part} lists `{path}`, outside its directory"
                    ));
                }
                locked.insert(path.to_owned());
            }
        }
        let files_owned: BTreeSet<String> = files.iter().map(|f| (*f).to_owned()).collect();
        if locked != files_owned {
            problems.push(format!(
                "{cluster}: the lock parts list {locked:?} but the directory holds {files:?}"
            ));
        }
    }
    problems
}

fn run_case(case: &Path, update: bool) -> Result<(), String> {
    let scratch = tempfile::tempdir().map_err(|e| e.to_string())?;
    let repo = case_repo(case, scratch.path())?;
    let out_dir = scratch.path().join("out");
    let out = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .arg("build")
        .arg(&repo)
        .arg("--out")
        .arg(&out_dir)
        .arg("--color")
        .arg("never")
        .current_dir(scratch.path())
        .env("NO_COLOR", "1")
        .output()
        .map_err(|e| format!("cannot run plinth: {e}"))?;
    if out.status.code() != Some(0) {
        return Err(format!(
            "`plinth build` exited with {:?}\n{}{}",
            out.status.code(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let actual = read_tree(&out_dir);
    let mut problems = structural(&actual);

    let expected_dir = case.join("expected");
    if update {
        if expected_dir.exists() {
            fs::remove_dir_all(&expected_dir).map_err(|e| e.to_string())?;
        }
        for (path, bytes) in &actual {
            let p = expected_dir.join(path);
            fs::create_dir_all(p.parent().expect("parent")).map_err(|e| e.to_string())?;
            fs::write(&p, bytes).map_err(|e| e.to_string())?;
        }
    } else {
        let expected = read_tree(&expected_dir);
        if expected.is_empty() {
            problems.push("no `expected/` files (run with PLINTH_UPDATE_GOLDEN=1)".to_owned());
        }
        for (path, want) in &expected {
            match actual.get(path) {
                None => problems.push(format!("missing: {path}")),
                Some(got) if got != want => problems.push(format!(
                    "different: {path}\n{}",
                    first_lines_diff(want, got)
                )),
                Some(_) => {}
            }
        }
        for path in actual.keys().filter(|p| !expected.contains_key(*p)) {
            problems.push(format!("extra: {path}"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

#[test]
fn golden_build_cases() {
    let update = std::env::var_os("PLINTH_UPDATE_GOLDEN").is_some();
    let mut cases: Vec<PathBuf> = fs::read_dir(golden_root())
        .expect("tests/golden/build exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no golden build cases found");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if let Err(e) = run_case(case, update) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} golden build case(s) failed (PLINTH_UPDATE_GOLDEN=1 to accept reviewed changes):\n\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n\n")
    );
}

/// The cases the suite promises; a renamed or deleted case must be a deliberate change here.
#[test]
fn golden_build_cases_cover_every_kind() {
    let want = [
        "project-minimal",
        "project-full",
        "gpu-pool",
        "gpu-per-user",
        "dataset-s3",
        "dataset-gcs",
        "dataset-azure",
        "dataset-nfs",
        "dataset-git",
        "dataset-env",
        "dataset-pv",
        "dataset-hostpath",
        "dataset-lakefs",
        "dataset-dvc",
        "rollout-kserve-canary",
        "rollout-kserve-single",
        "rollout-deployment-bluegreen",
        "rollout-shadow",
        "rollout-argo-steps",
        "multi-cluster",
        "app-jupyterlab",
        "app-streamlit",
        "app-mlflow",
        "app-label-studio",
        "example",
    ];
    let root = golden_root();
    let missing: Vec<&str> = want
        .iter()
        .copied()
        .filter(|c| !root.join(c).join("repo").is_dir() && !root.join(c).join("source").is_file())
        .collect();
    assert!(
        missing.is_empty(),
        "golden build cases missing: {missing:?}"
    );
}
