//! The declared minimum Rust version is true: no locked dependency needs a newer one, and the
//! README and the CI templates say the same.

use std::path::Path;
use std::process::Command;

fn version(v: &str) -> Vec<u64> {
    v.split('.')
        .map(|p| p.parse().unwrap_or_else(|_| panic!("not a version: {v}")))
        .collect()
}

#[test]
fn declared_rust_version_covers_every_locked_dependency() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args(["metadata", "--format-version", "1", "--locked"])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata JSON");
    let members: Vec<&str> = meta["workspace_members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let packages = meta["packages"].as_array().expect("packages");
    let declared = packages
        .iter()
        .find(|p| p["name"] == "plinth")
        .and_then(|p| p["rust_version"].as_str())
        .expect("plinth declares a rust-version");
    let mut needs: Vec<(Vec<u64>, String)> = Vec::new();
    for p in packages {
        let id = p["id"].as_str().unwrap_or_default();
        let Some(rv) = p["rust_version"].as_str() else {
            continue;
        };
        if members.contains(&id) {
            assert_eq!(
                rv, declared,
                "{id}: every crate declares the workspace's version"
            );
            continue;
        }
        needs.push((
            version(rv),
            format!("{} {} ({rv})", p["name"], p["version"]),
        ));
    }
    assert!(needs.len() > 50, "dependencies read: {}", needs.len());
    let too_new: Vec<&String> = needs
        .iter()
        .filter(|(v, _)| *v > version(declared))
        .map(|(_, n)| n)
        .collect();
    assert!(
        too_new.is_empty(),
        "rust-version {declared} is older than these locked dependencies need: {too_new:?}"
    );
    let readme = std::fs::read_to_string(root.join("README.md")).expect("README");
    assert!(
        readme.contains(&format!("Rust {declared} or newer")),
        "the README's quick start names Rust {declared}"
    );
    for dockerfile in ["agent/Dockerfile", "compiler/Dockerfile"] {
        let text = std::fs::read_to_string(root.join(dockerfile)).expect("Dockerfile");
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix("ARG RUST_VERSION="))
            .unwrap_or_else(|| panic!("{dockerfile}: no `ARG RUST_VERSION=`"));
        assert!(
            version(v) >= version(declared),
            "{dockerfile}: Rust {v} is older than rust-version {declared}"
        );
    }
    for ci in [
        "examples/ci/gitlab-ci.yml",
        "examples/ci/github-actions.yml",
    ] {
        let text = std::fs::read_to_string(root.join(ci)).expect("template");
        for (i, _) in text.match_indices("rust:") {
            let tag: String = text[i + 5..]
                .chars()
                .take_while(|c| c.is_ascii_digit() || *c == '.')
                .collect();
            if !tag.is_empty() {
                assert!(
                    version(&tag) >= version(declared),
                    "{ci}: image rust:{tag} is older than rust-version {declared}"
                );
            }
        }
    }
}
