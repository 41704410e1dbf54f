//! One repository, two views: the working tree (`plinth check`, `build`) and a git revision
//! (`plinth plan`, the agent) select exactly the same files — output directories, hidden paths,
//! directories nested too deep, symbolic links — and report the same skipped directories.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::fs;
use std::path::Path;

use plinth::load::git::GitRepo;
use plinth::load::{DirSource, Limits, load};

fn write(dir: &Path, rel: &str, text: &str) {
    let p = dir.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

/// (files read, diagnostics as `code path`), sorted.
fn view(src: &dyn plinth::load::Source, limits: &Limits) -> (Vec<String>, Vec<String>) {
    let (snap, diags) = load(src, limits).unwrap();
    let files = snap.files.iter().map(|f| f.path.to_string()).collect();
    let diags = diags
        .into_sorted()
        .iter()
        .map(|d| {
            format!(
                "{} {}",
                d.code.id(),
                d.primary
                    .as_ref()
                    .map(|l| l.span.file.to_string())
                    .unwrap_or_default()
            )
        })
        .collect();
    (files, diags)
}

#[test]
fn the_working_tree_and_a_git_revision_read_the_same_files() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    common::git(d, &["init", "-q", "-b", "main"]);
    write(d, "plinth.yaml", "kind: Platform\n");
    write(d, "projects/a.yaml", "kind: Project\n");
    // A committed output marker: the directory is build output for both views.
    write(d, "projects/hidden-by-marker/.plinth-output", "");
    write(d, "projects/hidden-by-marker/b.yaml", "kind: Project\n");
    write(d, "out/.plinth-output", "");
    write(d, "out/prod/namespace-a.yaml", "kind: Namespace\n");
    // Hidden paths are never read.
    write(d, ".github/workflows/ci.yaml", "on: push\n");
    write(d, "projects/.draft.yaml", "kind: Project\n");
    // Deeper than the limit: an error in both views, never silent.
    let deep: String = (0..6).map(|i| format!("d{i}/")).collect();
    write(d, &format!("{deep}deep.yaml"), "kind: Project\n");
    write(d, "d0/d1/shallow.yaml", "kind: Project\n");
    // Links: inside the tree (read), outside it (refused).
    std::os::unix::fs::symlink("a.yaml", d.join("projects/link.yaml")).unwrap();
    std::os::unix::fs::symlink("/etc/hostname", d.join("projects/escape.yaml")).unwrap();
    write(d, "policies/p.rego", "package main\n");
    common::git(d, &["add", "-A", "-f"]);
    common::git(d, &["commit", "-q", "-m", "tree"]);

    let limits = Limits {
        max_dir_depth: 4,
        ..Limits::default()
    };
    let worktree = view(&DirSource::new(d), &limits);
    let repo = GitRepo::discover(d).unwrap();
    let head = repo.resolve("HEAD").unwrap();
    let revision = view(&repo.source(head, "").unwrap(), &limits);
    assert_eq!(worktree, revision, "the two views differ");

    let (files, diags) = worktree;
    assert_eq!(
        files,
        [
            "d0/d1/shallow.yaml",
            "plinth.yaml",
            "policies/p.rego",
            "projects/a.yaml",
            "projects/link.yaml"
        ]
    );
    assert!(diags.contains(&"L009 out/".to_owned()), "{diags:?}");
    assert!(
        diags.contains(&"L009 projects/hidden-by-marker/".to_owned()),
        "{diags:?}"
    );
    assert!(diags.contains(&"L008 d0/d1/d2/d3/".to_owned()), "{diags:?}");
    assert!(
        diags.contains(&"L002 projects/escape.yaml".to_owned()),
        "{diags:?}"
    );
}

/// Blob contents kept by an earlier read are read instead of git's (each blob once), the same
/// bytes; a revision sharing most files with it inflates only the ones it has not seen.
#[test]
fn a_revision_reads_the_blobs_kept_before_and_only_new_ones_from_git() {
    use plinth::load::Blobs;
    use std::sync::Arc;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    common::git(d, &["init", "-q", "-b", "main"]);
    write(d, "plinth.yaml", "kind: Platform\n");
    for i in 0..5 {
        write(
            d,
            &format!("projects/p{i}.yaml"),
            &format!("kind: Project # {i}\n"),
        );
    }
    // Two paths, one blob.
    write(d, "projects/same.yaml", "kind: Project # 0\n");
    common::git(d, &["add", "-A"]);
    common::git(d, &["commit", "-q", "-m", "one"]);
    write(d, "projects/p3.yaml", "kind: Project # changed\n");
    common::git(d, &["commit", "-q", "-am", "two"]);

    let cache = tempfile::tempdir().unwrap();
    let pack = || Arc::new(plinth::cache::Cache::new(cache.path()).blobs());
    let repo = GitRepo::discover(d).unwrap();
    let (one, two) = (
        repo.resolve("HEAD~1").unwrap(),
        repo.resolve("HEAD").unwrap(),
    );
    let limits = Limits::default();
    let texts = |src: &dyn plinth::load::Source| -> Vec<(String, String)> {
        let (snap, _) = load(src, &limits).unwrap();
        snap.files
            .iter()
            .map(|f| (f.path.to_string(), f.text.to_string()))
            .collect()
    };
    let plain = texts(&repo.source(one, "").unwrap());
    let first = pack();
    assert!(first.is_empty());
    let kept = texts(
        &repo
            .source(one, "")
            .unwrap()
            .with_blobs(Some(first.clone())),
    );
    assert_eq!(kept, plain);
    // Six blobs (two paths share one).
    assert_eq!(first.len(), 6);
    first.flush().unwrap();

    let second = pack();
    assert_eq!(second.len(), 6);
    let read = texts(
        &repo
            .source(two, "")
            .unwrap()
            .with_blobs(Some(second.clone())),
    );
    assert_eq!(read, texts(&repo.source(two, "").unwrap()));
    assert!(read.contains(&(
        "projects/p3.yaml".into(),
        "kind: Project # changed\n".into()
    )));
    // Only the changed file's blob was read from git.
    assert_eq!(second.len(), 7);
    let blob = repo.blob_at(two, "projects/p3.yaml").unwrap().unwrap();
    assert_eq!(
        second.blob(&blob, usize::MAX).unwrap(),
        b"kind: Project # changed\n"
    );
}

/// Which commits touched a path, asked of the history, is whether the path's object differs
/// between each commit and its first parent — through every kind of change: the file added,
/// edited, left alone while a neighbour or another directory changes, its directory replaced
/// by a file, removed, and added back (and for a root commit).
#[test]
fn the_commits_touching_a_path_are_those_changing_its_object() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    common::git(d, &["init", "-q", "-b", "main"]);
    let steps: [fn(&Path); 8] = [
        |d| write(d, "p/projects/a.yaml", "a: 1\n"),
        |d| write(d, "p/projects/a.yaml", "a: 2\n"),
        |d| write(d, "p/projects/b.yaml", "b: 1\n"),
        |d| write(d, "p/datasets/c.yaml", "c: 1\n"),
        |d| write(d, "q.yaml", "q: 1\n"),
        |d| fs::remove_dir_all(d.join("p/projects")).unwrap(),
        |d| write(d, "p/projects", "now a file\n"),
        |d| {
            fs::remove_file(d.join("p/projects")).unwrap();
            write(d, "p/projects/a.yaml", "a: 2\n");
        },
    ];
    for (i, step) in steps.iter().enumerate() {
        step(d);
        common::git(d, &["add", "-A"]);
        common::git(
            d,
            &["commit", "-q", "--allow-empty", "-m", &format!("step {i}")],
        );
    }
    let repo = GitRepo::discover(d).unwrap();
    let head = repo.resolve("HEAD").unwrap();
    let commits = repo.between(None, head).unwrap();
    assert_eq!(commits.len(), steps.len());
    let history = repo.history();
    let at = |rev: &str, path: &str| {
        let id = repo.resolve(rev).unwrap();
        repo.blob_at(id, path).unwrap()
    };
    for path in [
        "p/projects/a.yaml",
        "p/projects/b.yaml",
        "p/datasets/c.yaml",
        "p/projects",
        "q.yaml",
        "p",
    ] {
        let mut touching = 0;
        for c in &commits {
            let before = c.parents.first().and_then(|p| at(p, path));
            let changed = at(&c.id, path) != before;
            assert_eq!(
                history.touched(c, path).unwrap(),
                changed,
                "{path} at {}",
                c.summary
            );
            touching += usize::from(changed);
        }
        assert!(touching > 0, "{path}: some commit touches it");
    }
}
