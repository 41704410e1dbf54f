//! The `out/<cluster>/` directories are valid kustomizations: the real `kubectl kustomize`
//! renders each one to exactly the objects plinth wrote, no more, no fewer, none changed
//! (compared as JSON values keyed by apiVersion, kind, namespace and name). Checked on a fresh
//! build of the example platform and on every committed golden build output.
//!
//! kubectl is `$PLINTH_KUBECTL` when set, else `/usr/lib/google-cloud-sdk/bin/kubectl.1.32`,
//! else `kubectl` on the `PATH`. Without any of them the test fails (it does not skip): CI
//! machines have it, and a skipped test would hide a broken kustomization.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use plinth::parse::yaml::{YamlLimits, parse_documents};
use serde_json::Value;

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
const KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";

fn kubectl() -> PathBuf {
    let candidates: Vec<PathBuf> = std::env::var_os("PLINTH_KUBECTL")
        .map(PathBuf::from)
        .into_iter()
        .chain([PathBuf::from(KUBECTL), PathBuf::from("kubectl")])
        .collect();
    for c in &candidates {
        let works = Command::new(c)
            .args(["version", "--client"])
            .output()
            .is_ok_and(|o| o.status.success());
        if works {
            return c.clone();
        }
    }
    panic!(
        "kubectl not found (tried {candidates:?}); install kubectl (1.32) or point PLINTH_KUBECTL at it — \
         this test needs the real `kubectl kustomize` and does not skip"
    );
}

/// Objects of a YAML stream or file by (apiVersion, kind, namespace, name).
type Objects = BTreeMap<(String, String, String, String), Value>;

fn key_of(v: &Value) -> (String, String, String, String) {
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    (
        s("/apiVersion"),
        s("/kind"),
        s("/metadata/namespace"),
        s("/metadata/name"),
    )
}

fn parse_stream(name: &str, text: &str, into: &mut Objects) -> Vec<String> {
    let (docs, diags) = parse_documents(&Arc::from(name), text, YamlLimits::default());
    let mut problems: Vec<String> = diags
        .iter()
        .map(|d| format!("{name}: YAML: {}", d.message))
        .collect();
    for d in docs {
        let v = d.root.to_json();
        if v.is_null() {
            continue;
        }
        let k = key_of(&v);
        if into.insert(k.clone(), v).is_some() {
            problems.push(format!("{name}: {k:?} appears twice"));
        }
    }
    problems
}

fn build_example(out: &Path) {
    let o = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .arg("build")
        .arg(Path::new(WORKSPACE).join("examples/repo"))
        .arg("--out")
        .arg(out)
        .env("NO_COLOR", "1")
        .output()
        .expect("run plinth");
    assert_eq!(
        o.status.code(),
        Some(0),
        "plinth build failed:\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn kubectl_kustomize_renders_exactly_the_written_objects() {
    let kubectl = kubectl();
    let scratch = tempfile::tempdir().expect("tempdir");
    let out = scratch.path().join("out");
    build_example(&out);

    let mut clusters: Vec<PathBuf> = std::fs::read_dir(&out)
        .expect("out")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    clusters.sort();
    assert_eq!(
        clusters.len(),
        2,
        "the example has two clusters: {clusters:?}"
    );

    let mut problems = Vec::new();
    for dir in &clusters {
        problems.extend(compare_cluster(&kubectl, dir, "example"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Render one cluster directory with kustomize and compare with its files.
fn compare_cluster(kubectl: &Path, dir: &Path, label: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let cluster = format!(
        "{label}/{}",
        dir.file_name().expect("name").to_string_lossy()
    );
    // What plinth wrote: every YAML file but the kustomization.
    let mut written = Objects::new();
    let mut files = 0;
    for entry in walk(dir) {
        let rel = entry
            .strip_prefix(dir)
            .expect("under")
            .to_string_lossy()
            .into_owned();
        if !rel.ends_with(".yaml") || rel == "kustomization.yaml" {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(&entry).expect("read");
        let mut one = Objects::new();
        problems.extend(parse_stream(&rel, &text, &mut one));
        if one.len() != 1 {
            problems.push(format!(
                "{cluster}/{rel}: {} objects in one file",
                one.len()
            ));
        }
        written.extend(one);
    }
    if files == 0 {
        problems.push(format!("{cluster}: no object files"));
    }
    if written.len() != files {
        problems.push(format!(
            "{cluster}: {} objects in {files} files",
            written.len()
        ));
    }

    // What kustomize renders.
    let o = Command::new(kubectl)
        .arg("kustomize")
        .arg(dir)
        .output()
        .expect("run kubectl");
    if !o.status.success() {
        problems.push(format!(
            "{cluster}: kubectl kustomize failed: {}",
            String::from_utf8_lossy(&o.stderr)
        ));
        return problems;
    }
    let mut rendered = Objects::new();
    problems.extend(parse_stream(
        &format!("kustomize {cluster}"),
        &String::from_utf8_lossy(&o.stdout),
        &mut rendered,
    ));

    for (k, v) in &written {
        match rendered.get(k) {
            None => problems.push(format!("{cluster}: {k:?} written but not rendered")),
            Some(r) if plinth::lower::canonical_json(r) != plinth::lower::canonical_json(v) => {
                problems.push(format!(
                    "{cluster}: {k:?} changed by kustomize:\n  written  {}\n  rendered {}",
                    plinth::lower::canonical_json(v),
                    plinth::lower::canonical_json(r)
                ))
            }
            Some(_) => {}
        }
    }
    for k in rendered.keys().filter(|k| !written.contains_key(*k)) {
        problems.push(format!("{cluster}: {k:?} rendered but not written"));
    }
    problems
}

/// The committed golden outputs (`tests/golden/build/*/expected/<cluster>/`) are valid
/// kustomizations too: every kind, strategy and source type goes through kustomize's YAML
/// reader once.
#[test]
fn kubectl_kustomize_renders_every_golden_output() {
    let kubectl = kubectl();
    let root = Path::new(WORKSPACE).join("tests/golden/build");
    let mut problems = Vec::new();
    let mut dirs = 0;
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/golden/build")
        .map(|e| e.expect("entry").path())
        .collect();
    cases.sort();
    for case in cases {
        let expected = case.join("expected");
        let Ok(rd) = std::fs::read_dir(&expected) else {
            continue;
        };
        let mut clusters: Vec<PathBuf> = rd
            .map(|e| e.expect("entry").path())
            .filter(|p| p.is_dir())
            .collect();
        clusters.sort();
        let label = case
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        for dir in clusters {
            dirs += 1;
            problems.extend(compare_cluster(&kubectl, &dir, &label));
        }
    }
    assert!(
        dirs >= 20,
        "golden outputs not found under {}",
        root.display()
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The comparison is not vacuous: a file the kustomization does not list, and an object
/// kustomize changes (here through `commonLabels`), are both reported.
#[test]
fn comparison_reports_unlisted_and_changed_objects() {
    let kubectl = kubectl();
    let t = tempfile::tempdir().expect("tempdir");
    let dir = t.path().join("c");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(
        dir.join("kustomization.yaml"),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\ncommonLabels:\n  extra: label\nresources:\n  - a.yaml\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("a.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  namespace: n\ndata:\n  x: \"1\"\n",
    )
    .expect("write");
    std::fs::write(
        dir.join("b.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: b\n  namespace: n\n",
    )
    .expect("write");
    let problems = compare_cluster(&kubectl, &dir, "test");
    assert!(
        problems
            .iter()
            .any(|p| p.contains("\"b\"") && p.contains("written but not rendered")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("\"a\"") && p.contains("changed by kustomize")),
        "{problems:?}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
