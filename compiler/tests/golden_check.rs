//! Golden cases for `plinth check`: `tests/golden/check/<case>/`.
//!
//! Each case holds `repo/` (the input platform repository), an optional `setup` file, and
//! `expected.out`: the exit code on its first line (`exit: N`) followed by the exact human
//! output of `plinth check repo --color never`. The real binary runs in a scratch copy of the
//! case, so paths, exit codes and output are checked end to end.
//!
//! `setup` lines prepare what cannot be committed:
//! - `symlink <path> <target>`: a symbolic link inside the scratch repo;
//! - `bigfile <path> <bytes>`: a file of that size (a YAML comment line repeated).
//!
//! Policies: a case runs with `--no-default-policies` unless it has an `args` file, whose
//! whitespace-separated words replace that flag (an empty `args` runs the default library).
//!
//! Cases whose name starts with `ok-` must pass; every other case must exit 1 and every
//! diagnostic it reports (bar a missing `Platform`) must carry a file, line and column.
//!
//! Regenerate after a reviewed change: `PLINTH_UPDATE_GOLDEN=1 cargo test --test golden_check`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn golden_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/check")
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

fn apply_setup(case: &Path, repo: &Path) {
    let Ok(text) = fs::read_to_string(case.join("setup")) else {
        return;
    };
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["symlink", path, target] => {
                let p = repo.join(path);
                fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                std::os::unix::fs::symlink(target, p).expect("symlink");
            }
            ["bigfile", path, bytes] => {
                let n: usize = bytes.parse().expect("size");
                let p = repo.join(path);
                fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
                let line = "# padding padding padding padding padding padding padding padding\n";
                let mut f = std::io::BufWriter::new(fs::File::create(&p).expect("create"));
                let mut written = 0;
                while written < n {
                    let chunk = &line.as_bytes()[..line.len().min(n - written)];
                    std::io::Write::write_all(&mut f, chunk).expect("write");
                    written += chunk.len();
                }
            }
            _ => panic!("{}: bad setup line `{line}`", case.display()),
        }
    }
}

fn run(dir: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run plinth");
    let code = out.status.code().unwrap_or(-1);
    (code, String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn golden_check_cases() {
    let update = std::env::var_os("PLINTH_UPDATE_GOLDEN").is_some();
    let mut cases: Vec<PathBuf> = fs::read_dir(golden_root())
        .expect("tests/golden/check exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("repo").is_dir())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no golden cases found");
    let mut failures = Vec::new();
    for case in &cases {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let scratch = tempfile::tempdir().expect("tempdir");
        let repo = scratch.path().join("repo");
        copy_tree(&case.join("repo"), &repo);
        apply_setup(case, &repo);

        let extra: Vec<String> = match fs::read_to_string(case.join("args")) {
            Ok(a) => a.split_whitespace().map(str::to_owned).collect(),
            Err(_) => vec!["--no-default-policies".to_owned()],
        };
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let human_args = [&["check", "repo", "--color", "never"][..], &extra].concat();
        let (code, human) = run(scratch.path(), &human_args);
        let actual = format!("exit: {code}\n{human}");
        let expected_path = case.join("expected.out");
        if update {
            fs::write(&expected_path, &actual).expect("write expected.out");
        } else {
            let expected = fs::read_to_string(&expected_path).unwrap_or_default();
            if expected != actual {
                failures.push(format!(
                    "{name}: output differs\n--- expected\n{expected}\n--- actual\n{actual}"
                ));
            }
        }

        // Structural promises, independent of the expected text.
        let json_args = [&["check", "repo", "--format", "json"][..], &extra].concat();
        let (json_code, json) = run(scratch.path(), &json_args);
        assert_eq!(json_code, code, "{name}: exit code depends on the format");
        let v: serde_json::Value =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{name}: bad JSON: {e}\n{json}"));
        let diags = v["diagnostics"].as_array().cloned().unwrap_or_default();
        if name.starts_with("ok-") {
            if code != 0 {
                failures.push(format!("{name}: expected exit 0, got {code}"));
            }
        } else {
            if code != 1 {
                failures.push(format!("{name}: a bad-input case must exit 1, got {code}"));
            }
            if diags.is_empty() {
                failures.push(format!("{name}: no diagnostics reported"));
            }
            for d in &diags {
                let located = d["location"]["file"].is_string()
                    && d["location"]["line"].as_u64().is_some_and(|l| l >= 1)
                    && d["location"]["column"].as_u64().is_some_and(|c| c >= 1);
                if !located && d["code"] != "E101" {
                    failures.push(format!("{name}: diagnostic without a location: {d}"));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden case(s) failed (PLINTH_UPDATE_GOLDEN=1 to accept reviewed changes):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
