//! The CLI's rough edges: each error names what is wrong once, in words, with the path; a
//! closed pipe ends quietly; kinds are case-insensitive; the examples' `$schema` lines resolve
//! outside this repository.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn plinth(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("plinth runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_missing_repository_is_named_once_in_words() {
    let tmp = tempfile::tempdir().expect("tmp");
    for cmd in ["check", "build"] {
        let o = plinth(tmp.path(), &[cmd, "nonexist"]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{cmd}: {err}");
        assert_eq!(
            err.trim_end(),
            "error: cannot read repository `nonexist`: it does not exist",
            "{cmd}"
        );
    }
}

#[test]
fn out_on_a_file_names_the_path() {
    let tmp = tempfile::tempdir().expect("tmp");
    std::fs::write(tmp.path().join("afile"), "x").expect("write");
    let repo = root().join("examples/repo");
    let repo = repo.to_str().expect("utf-8");
    for (args, want) in [
        (
            vec!["build", repo, "--out", "afile"],
            "`afile`: it is a file",
        ),
        (
            vec!["build", repo, "--out", "afile", "--cluster", "prod-a"],
            "`afile`: it is a file",
        ),
        (
            vec!["build", repo, "--out", "afile/out"],
            "`afile` is a file, not a directory",
        ),
    ] {
        let o = plinth(tmp.path(), &args);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert!(!err.contains("os error"), "{args:?}: {err}");
    }
    assert_eq!(
        std::fs::read_to_string(tmp.path().join("afile")).expect("read"),
        "x",
        "the file is left alone"
    );
}

#[test]
fn policy_test_on_a_missing_directory_says_so() {
    let tmp = tempfile::tempdir().expect("tmp");
    let o = plinth(tmp.path(), &["policy", "test", "nonexist"]);
    let err = stderr(&o);
    // `policy test` exits as `conftest verify` does: 1 when the policies cannot be read.
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        "error: the policy directory `nonexist` does not exist"
    );
}

/// `plinth … | head`: the reader leaves early; plinth ends quietly, with 0.
#[test]
fn a_closed_pipe_ends_quietly() {
    let repo = root().join("examples/repo");
    let mut child = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(["build", "--format", "stream", "--cluster", "prod-a"])
        .arg(&repo)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("plinth runs");
    let mut stdout = child.stdout.take().expect("stdout");
    // Far less than the stream (and than a pipe's buffer): plinth is still writing.
    let mut first = [0u8; 16];
    stdout.read_exact(&mut first).expect("read");
    assert_eq!(&first[..4], b"---\n");
    drop(stdout);
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("read");
    let status = child.wait().expect("wait");
    assert_eq!(status.code(), Some(0), "{err}");
    assert_eq!(err, "", "nothing said about the closed pipe");
}

#[test]
fn schema_kinds_are_case_insensitive() {
    let dir = root();
    let want = plinth(&dir, &["schema", "Project"]);
    assert_eq!(want.status.code(), Some(0));
    for k in ["project", "PROJECT"] {
        let o = plinth(&dir, &["schema", k]);
        assert_eq!(o.status.code(), Some(0), "{k}: {}", stderr(&o));
        assert_eq!(o.stdout, want.stdout, "{k}");
    }
    let o = plinth(&dir, &["schema", "gpuquota"]);
    assert_eq!(o.stdout, plinth(&dir, &["schema", "GpuQuota"]).stdout);
    let o = plinth(&dir, &["schema", "projects"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown kind `projects`"));
}

/// Copied into another repository, an example spec's `$schema` line still names its schema:
/// an absolute URL to a file that exists in `schemas/`.
#[test]
fn example_schema_lines_resolve_outside_this_repository() {
    const BASE: &str = "https://raw.githubusercontent.com/plinth-dev/plinth/main/";
    let mut n = 0;
    let mut stack = vec![root().join("examples/repo")];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            if p.extension().is_none_or(|x| x != "yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&p).expect("read");
            for line in text.lines().filter(|l| l.contains("$schema=")) {
                n += 1;
                let url = line.split("$schema=").nth(1).unwrap_or_default().trim();
                let file = url
                    .strip_prefix(BASE)
                    .unwrap_or_else(|| panic!("{}: not a URL under {BASE}: {url}", p.display()));
                assert!(
                    file.starts_with("schemas/") && root().join(file).is_file(),
                    "{}: {url} names no schema",
                    p.display()
                );
                let kind = text
                    .lines()
                    .find_map(|l| l.strip_prefix("kind: "))
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                assert_eq!(
                    file,
                    format!("schemas/{kind}.schema.json"),
                    "{}",
                    p.display()
                );
            }
        }
    }
    assert!(n >= 20, "example specs with a `$schema` line: {n}");
}
