//! The README's walkthrough "Try it with the test API server and kubectl", run as written:
//! every command of its `sh` block, in order, each with the exit code its comment names (`#
//! exit N`; 0 otherwise), so the walkthrough a newcomer follows ends green.
//!
//! `cargo run … -p kube-testserver -- ARGS &` starts the test server in this process with the
//! same arguments; `cargo run … -p plinth-agent -- ARGS` runs this crate's binary; `$K` is
//! kubectl (`$PLINTH_KUBECTL` or `/usr/lib/google-cloud-sdk/bin/kubectl.1.32`; a missing
//! kubectl fails the test). `out/prod-a` is built from `examples/repo` first, as in the quick
//! start; `/tmp/kc` is a file of the test's own directory.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn kubectl_bin() -> PathBuf {
    let bin = std::env::var_os("PLINTH_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/google-cloud-sdk/bin/kubectl.1.32"));
    assert!(
        bin.is_file(),
        "kubectl not found at `{}`: install the Google Cloud SDK kubectl or set PLINTH_KUBECTL",
        bin.display()
    );
    bin
}

/// The `sh` block below `heading`.
fn block(readme: &str, heading: &str) -> Vec<String> {
    let at = readme
        .find(heading)
        .unwrap_or_else(|| panic!("no {heading:?}"));
    let rest = &readme[at..];
    let start = rest.find("```sh\n").expect("an sh block") + "```sh\n".len();
    let end = rest[start..].find("```").expect("its end");
    rest[start..start + end]
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A command line split like a shell would (quotes, `$(…)` and `#` comments): the words, and
/// the comment.
fn words(line: &str) -> (Vec<String>, String) {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut has = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                has = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '"' => {
                has = true;
                for c in chars.by_ref() {
                    if c == '"' {
                        break;
                    }
                    cur.push(c);
                }
            }
            '#' if !has => {
                let comment: String = chars.collect();
                return (out, comment.trim().to_owned());
            }
            c if c.is_whitespace() => {
                if has {
                    out.push(std::mem::take(&mut cur));
                    has = false;
                }
            }
            c => {
                has = true;
                cur.push(c);
            }
        }
    }
    if has {
        out.push(cur);
    }
    (out, String::new())
}

#[test]
fn the_test_server_walkthrough_runs_as_written_and_ends_green() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let lines = block(&readme, "### Try it with the test API server and kubectl");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let kc = dir.join("kc");
    // The quick start's `plinth build examples/repo`, into the test's directory.
    let repo = root().join("examples/repo");
    let cli = <plinth::cli::Cli as clap::Parser>::parse_from([
        "plinth",
        "build",
        &repo.to_string_lossy(),
        "--out",
        &dir.join("out").to_string_lossy(),
    ]);
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let code = plinth::cli::run(cli, &mut o, &mut e, plinth::cli::Terminal::default()).unwrap();
    assert_eq!(code, 0, "{}", String::from_utf8_lossy(&e));
    let mut server = None;
    let mut k: Vec<String> = Vec::new();
    let mut ran = 0;
    for line in &lines {
        let line = line.replace("/tmp/kc", &kc.to_string_lossy());
        let (w, comment) = words(&line);
        if w.is_empty() {
            continue;
        }
        let want: i32 = comment
            .strip_prefix("exit ")
            .and_then(|r| r.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let (program, args): (PathBuf, Vec<String>) = if w[0] == "cargo" {
            let sep = w
                .iter()
                .position(|x| x == "--")
                .expect("`--` before the arguments");
            let package = &w[w.iter().position(|x| x == "-p").expect("-p") + 1];
            assert!(
                w.contains(&"--release".to_owned()),
                "one build profile throughout: {line}"
            );
            let args: Vec<String> = w[sep + 1..].iter().filter(|a| *a != "&").cloned().collect();
            match package.as_str() {
                "kube-testserver" => {
                    assert!(w.last().is_some_and(|l| l == "&"), "{line}");
                    assert!(
                        args.contains(&"--simulate-controllers".to_owned()),
                        "the walkthrough ends green only with simulated controllers: {line}"
                    );
                    let s = kube_testserver::TestServer::builder()
                        .simulate_controllers(true)
                        .start_blocking()
                        .unwrap();
                    let at = args.iter().position(|a| a == "--kubeconfig").unwrap();
                    s.write_kubeconfig(Path::new(&args[at + 1])).unwrap();
                    server = Some(s);
                    ran += 1;
                    continue;
                }
                "plinth-agent" => (PathBuf::from(env!("CARGO_BIN_EXE_plinth-agent")), args),
                other => panic!("a command of another package: {other}"),
            }
        } else if let Some(value) = w[0].strip_prefix("K=") {
            let (kw, _) = words(value);
            assert_eq!(kw[0], "kubectl", "{line}");
            k = kw[1..]
                .iter()
                .map(|a| {
                    if a.starts_with("$(mktemp") {
                        dir.join("kubectl-cache").to_string_lossy().into_owned()
                    } else {
                        a.clone()
                    }
                })
                .collect();
            // `--cache-dir $(mktemp -d)` splits into two words.
            k.retain(|a| a != "-d)");
            continue;
        } else if w[0] == "$K" {
            let mut args = k.clone();
            args.extend(w[1..].iter().cloned());
            (kubectl_bin(), args)
        } else {
            panic!("a command the test does not know: {line}");
        };
        let out = Command::new(&program)
            .args(&args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(want),
            "`{line}`:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        ran += 1;
    }
    assert!(server.is_some(), "the walkthrough starts the test server");
    assert!(ran >= 8, "commands run: {ran}");
}
