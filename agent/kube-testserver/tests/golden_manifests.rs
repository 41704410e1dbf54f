//! Everything plinth builds is served: every manifest of the golden build outputs
//! (`tests/golden/build/*/expected/<cluster>/`) is server-side applied to a fresh server with
//! strict field validation and must be created; applying the same tree again must write
//! nothing (idempotence through defaulting, associative lists and managed fields).
//!
//! A kind plinth starts to emit must be added to `Registry::builtins` (or come from
//! `plinth::lower::crd::kinds`) for this to pass.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use common::Client;
use kube_testserver::TestServer;
use serde_json::Value;

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            yaml_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "yaml")
            && p.file_name().is_some_and(|n| n != "kustomization.yaml")
        {
            out.push(p);
        }
    }
}

fn manifests(dir: &Path) -> Vec<(PathBuf, Value)> {
    let mut files = Vec::new();
    yaml_files(dir, &mut files);
    let mut out = Vec::new();
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        let name: Arc<str> = Arc::from(f.display().to_string());
        let (docs, diags) = plinth::parse::yaml::parse_documents(&name, &text, Default::default());
        assert!(diags.is_empty(), "{}: {:?}", f.display(), diags);
        for d in docs {
            let v = d.root.to_json();
            if v.get("apiVersion").is_some() && v.get("kind").is_some() {
                out.push((f.clone(), v));
            }
        }
    }
    out
}

/// `/api/v1/namespaces/x/configmaps/c` for an object.
fn item_path(s: &TestServer, obj: &Value) -> Option<String> {
    let api_version = obj["apiVersion"].as_str()?;
    let kind = obj["kind"].as_str()?;
    let reg = s.registry();
    let info = reg.get(reg.by_kind(api_version, kind)?);
    let prefix = if info.group.is_empty() {
        format!("/api/{}", info.version)
    } else {
        format!("/apis/{}/{}", info.group, info.version)
    };
    let name = obj["metadata"]["name"].as_str()?;
    Some(if info.namespaced {
        let ns = obj["metadata"]["namespace"].as_str().unwrap_or("default");
        format!("{prefix}/namespaces/{ns}/{}/{name}", info.plural)
    } else {
        format!("{prefix}/{}/{name}", info.plural)
    })
}

#[test]
fn every_golden_manifest_applies_and_reapplies_as_a_no_op() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden/build");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .unwrap_or_else(|e| panic!("{}: {e}", root.display()))
        .filter_map(|e| e.ok().map(|e| e.path().join("expected")))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    assert!(
        !cases.is_empty(),
        "no golden build outputs under {}",
        root.display()
    );
    let mut applied = 0;
    let mut problems = Vec::new();
    for case in cases {
        let mut clusters: Vec<PathBuf> = std::fs::read_dir(&case)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        clusters.sort();
        for cluster in clusters {
            let mut objects = manifests(&cluster);
            // Namespaces first, as plinth's apply order does.
            objects.sort_by_key(|(_, o)| o["kind"] != "Namespace");
            let s = TestServer::start_blocking().unwrap();
            let c = Client::new(s.addr());
            let apply = |obj: &Value| -> (u16, String) {
                let Some(path) = item_path(&s, obj) else {
                    return (
                        0,
                        format!("{} {} is not served", obj["apiVersion"], obj["kind"]),
                    );
                };
                let r = c.apply(
                    &format!("{path}?fieldManager=plinth&fieldValidation=Strict"),
                    obj,
                );
                (r.status, String::from_utf8_lossy(&r.body).into_owned())
            };
            for (file, obj) in &objects {
                let (code, body) = apply(obj);
                if code != 201 {
                    problems.push(format!("{}: {code} {body}", file.display()));
                }
                applied += 1;
            }
            let writes = s.total_writes();
            for (file, obj) in &objects {
                let (code, body) = apply(obj);
                if code != 200 {
                    problems.push(format!("{} (again): {code} {body}", file.display()));
                }
            }
            if s.total_writes() != writes {
                problems.push(format!(
                    "{}: re-applying wrote {} times",
                    cluster.display(),
                    s.total_writes() - writes
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(applied > 100, "only {applied} manifests found");
}
