//! The caches are invisible from the command line: over random sequences of commits, `plinth
//! plan` through the repository's cache (bases found by their tree, heads lowered against the
//! base's units, heads planned again found by their tree, verdicts taken from earlier evaluations, git blobs and file reads kept, the
//! working tree's files kept by stamp) prints byte for byte what `plinth plan --no-cache`
//! prints, with the same exit code; and `plinth build --cache-dir` written over its own output
//! leaves exactly the tree a fresh build writes, with the same messages.
//!
//! The library's property tests (`incremental.rs`) compare compiles; this one runs the binary
//! as CI does, one cache kept across every step, so what one run leaves for the next (a head's
//! entry becoming the next plan's base, a base's clean verdicts, the output's index and
//! overlay) is exercised too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use proptest::prelude::*;

use common::edits::{Edit, apply, edit, project_names};

/// A policy of the repository's own (evaluated by regorus, memoised per input): `LIMIT`
/// becomes a step's number (an edit writing a small number of pods makes a project break it;
/// the warning reads every project through `data`).
const POLICY: &str = r#"package main

import rego.v1

deny contains msg if {
	input.kind == "Project"
	input.spec.quota.pods < LIMIT
	msg := sprintf("project %s asks for only %d pods", [input.metadata.name, input.spec.quota.pods])
}

warn contains msg if {
	input.kind == "ResourceQuota"
	count(data.plinth.projects) > 4
	msg := "more than four projects"
}
"#;

/// What one step of a sequence does before it is committed.
#[derive(Debug, Clone)]
enum Change {
    /// An edit of the platform's files.
    Edit(Edit),
    /// The repository's policy denies projects asking for fewer than this many pods.
    Policy(u32),
    /// The `file`-th file of the start is as it was at the start (or back, if deleted).
    Restore { file: usize },
    /// The pods of the `file`-th project file's quota (what the policy reads).
    Pods { file: usize, pods: u32 },
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        6 => edit().prop_map(Change::Edit),
        1 => prop_oneof![Just(0u32), Just(5), Just(151)].prop_map(Change::Policy),
        1 => (0..1000usize).prop_map(|file| Change::Restore { file }),
        2 => (0..1000usize, prop_oneof![Just(2u32), Just(60), Just(150)])
            .prop_map(|(file, pods)| Change::Pods { file, pods }),
    ]
}

/// One step: a change, planned against the start, the previous commit or the one before it
/// (`base`), from the working tree before it is committed (`uncommitted`) or from the commit.
#[derive(Debug, Clone)]
struct Step {
    change: Change,
    base: usize,
    uncommitted: bool,
}

fn step() -> impl Strategy<Value = Step> {
    (change(), 0..3usize, prop::bool::weighted(0.25)).prop_map(|(change, base, uncommitted)| Step {
        change,
        base,
        uncommitted,
    })
}

/// The example platform with the policy above, as files.
fn start() -> BTreeMap<String, String> {
    let mut files = common::example();
    let platform = files.get_mut("plinth.yaml").unwrap();
    let settings = "  policies:\n    defaultLibrary: true\n";
    assert!(
        platform.contains(settings),
        "the example's policy settings moved"
    );
    *platform = platform.replace(
        settings,
        "  policies:\n    defaultLibrary: true\n    directories: [policies]\n",
    );
    files.insert(
        "policies/limits.rego".to_owned(),
        POLICY.replace("LIMIT", "5"),
    );
    files
}

fn change_files(
    files: &mut BTreeMap<String, String>,
    first: &BTreeMap<String, String>,
    projects: &[String],
    c: &Change,
) {
    match c {
        Change::Edit(e) => apply(files, projects, e),
        Change::Policy(limit) => {
            files.insert(
                "policies/limits.rego".to_owned(),
                POLICY.replace("LIMIT", &limit.to_string()),
            );
        }
        Change::Restore { file } => {
            let paths: Vec<&String> = first.keys().collect();
            let p = paths[file % paths.len()];
            files.insert(p.clone(), first[p].clone());
        }
        Change::Pods { file, pods } => {
            let projects: Vec<&String> = files
                .iter()
                .filter(|(p, t)| p.ends_with(".yaml") && t.contains("\nkind: Project\n"))
                .map(|(p, _)| p)
                .collect();
            let Some(p) = projects
                .get(file % projects.len().max(1))
                .map(|p| (*p).clone())
            else {
                return;
            };
            let t = files.get_mut(&p).unwrap();
            if let Some(at) = t.find("    pods: ") {
                let from = at + "    pods: ".len();
                let end = t[from..].find('\n').map_or(t.len(), |e| from + e);
                t.replace_range(from..end, &pods.to_string());
            }
        }
    }
}

/// A repository holding the platform at its root, and directories for outputs.
struct Repo {
    dir: tempfile::TempDir,
    outputs: tempfile::TempDir,
    commits: Vec<String>,
}

impl Repo {
    fn new(files: &BTreeMap<String, String>) -> Repo {
        let mut r = Repo {
            dir: tempfile::tempdir().unwrap(),
            outputs: tempfile::tempdir().unwrap(),
            commits: Vec::new(),
        };
        r.git(&["init", "-q", "-b", "main"]);
        r.git(&["config", "commit.gpgsign", "false"]);
        r.write(files);
        r.commit("start");
        r
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn git(&self, args: &[&str]) -> String {
        common::git(self.path(), args)
    }

    /// The working tree holds exactly `files` (besides `.git`).
    fn write(&self, files: &BTreeMap<String, String>) {
        for e in std::fs::read_dir(self.path()).unwrap() {
            let p = e.unwrap().path();
            if p.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            if p.is_dir() {
                std::fs::remove_dir_all(&p).unwrap();
            } else {
                std::fs::remove_file(&p).unwrap();
            }
        }
        for (rel, text) in files {
            let p = self.path().join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, text).unwrap();
        }
    }

    fn commit(&mut self, message: &str) {
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "--allow-empty", "-m", message]);
        self.commits.push(self.git(&["rev-parse", "HEAD"]));
    }

    /// The last commit is undone (the working tree reset to the one before).
    fn undo(&mut self) {
        self.git(&["reset", "-q", "--hard", "HEAD~1"]);
        self.git(&["clean", "-qfd"]);
        self.commits.pop();
    }

    fn plinth(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_plinth"))
            .args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("PLINTH_FINGERPRINT_KEY", "plan-props")
            .env_remove("PLINTH_CACHE_DIR")
            .output()
            .expect("plinth runs")
    }

    fn output(&self, name: &str) -> PathBuf {
        self.outputs.path().join(name)
    }
}

/// Every file under `dir`, by path, with its bytes.
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A run's exit code, standard output and standard error (with `dir` named `OUT`).
fn said(o: &Output, dir: Option<&Path>) -> (Option<i32>, String, String) {
    let mut err = String::from_utf8_lossy(&o.stderr).into_owned();
    if let Some(d) = dir {
        err = err.replace(&d.display().to_string(), "OUT");
    }
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        err,
    )
}

/// `plan` through the repository's cache against `plan --no-cache`; `head`: a revision, or the
/// working tree.
fn plans_agree(r: &Repo, base: &str, head: Option<&str>, what: &str) -> Result<(), TestCaseError> {
    let mut args = vec!["plan", "--base", base, "--format", "json"];
    if let Some(h) = head {
        args.extend(["--head", h]);
    }
    let cached = r.plinth(&args);
    args.push("--no-cache");
    let fresh = r.plinth(&args);
    let (a, b) = (said(&cached, None), said(&fresh, None));
    prop_assert!(
        matches!(a.0, Some(0..=2)),
        "{what}: plan exited {:?}: {}",
        a.0,
        a.2
    );
    prop_assert_eq!(
        a,
        b,
        "{}: a plan through the cache differs from one without",
        what
    );
    Ok(())
}

/// `build` through a cache over its previous output against a fresh build; whether it built.
fn builds_agree(r: &Repo, n: usize, what: &str) -> Result<bool, TestCaseError> {
    let (kept, cache) = (r.output("out"), r.output("cache"));
    let fresh = r.output(&format!("fresh-{n}"));
    let over = r.plinth(&[
        "build",
        "--cache-dir",
        cache.to_str().unwrap(),
        "--out",
        kept.to_str().unwrap(),
    ]);
    let alone = r.plinth(&["build", "--out", fresh.to_str().unwrap()]);
    prop_assert_eq!(
        said(&over, Some(&kept)),
        said(&alone, Some(&fresh)),
        "{}: a build through the cache says otherwise than one without",
        what
    );
    let built = over.status.success();
    if built {
        prop_assert!(
            tree(&kept) == tree(&fresh),
            "{what}: a build over its output left another tree than a fresh build"
        );
    }
    let _ = std::fs::remove_dir_all(&fresh);
    Ok(built)
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::cases(6),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// After every step of a random sequence, plans and builds through the caches say what
    /// they say without them. A step that leaves the platform broken is compared too, then
    /// undone (so that the sequence goes on from a platform that compiles).
    #[test]
    fn plans_and_builds_through_the_caches_equal_plans_and_builds_without(
        steps in prop::collection::vec(step(), 3..9),
    ) {
        let first = start();
        let projects = project_names(&first);
        let mut files = first.clone();
        let mut r = Repo::new(&files);
        prop_assert!(builds_agree(&r, 0, "the start")?, "the start does not build");
        for (n, s) in steps.iter().enumerate() {
            let what = format!("step {n} ({s:?})");
            let before = files.clone();
            change_files(&mut files, &first, &projects, &s.change);
            r.write(&files);
            let base = r.commits[r.commits.len().saturating_sub(1 + s.base)].clone();
            if s.uncommitted {
                plans_agree(&r, &base, None, &format!("{what}, uncommitted"))?;
            }
            r.commit(&format!("step {n}"));
            plans_agree(&r, &base, Some("HEAD"), &what)?;
            // Planned again after its base moved: the head found by its tree.
            let start = r.commits[0].clone();
            if base != start {
                plans_agree(&r, &start, Some("HEAD"), &format!("{what}, against the start"))?;
            }
            if !builds_agree(&r, n + 1, &what)? {
                r.undo();
                files = before;
            }
        }
    }
}
