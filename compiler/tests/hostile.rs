//! Hostile inputs at full size, run through the real binary under an address-space limit
//! (`ulimit -v`): the run must end with its located diagnostic and exit code, within the
//! memory bound — a bound, not a timed assertion. Smaller variants of each attack are golden
//! cases under `tests/golden/check/`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::path::Path;
use std::process::Command;

/// Address space the binary may map (a debug build with its threads maps a few hundred MiB
/// before doing anything).
const ADDRESS_SPACE_KIB: u64 = 1536 * 1024;

const PLATFORM: &str = "apiVersion: plinth.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: acme\nspec:\n  clusters:\n    - name: prod\n      kubernetesVersion: \"1.32\"\n      provider: aws\n";

/// Run `plinth <args>` in `dir` under the address-space limit: (exit code, stdout, stderr).
fn plinth_bounded(dir: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let bin = env!("CARGO_BIN_EXE_plinth");
    let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v {ADDRESS_SPACE_KIB} && exec '{bin}' {}",
            quoted.join(" ")
        ))
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("sh runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn repo(files: &[(&str, String)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (p, t) in files {
        let path = dir.path().join(p);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, t).unwrap();
    }
    dir
}

/// A 1 MiB scalar aliased `n` times under `labels:`.
fn long_scalar_bomb(n: usize) -> String {
    let s = "x".repeat(1024 * 1024);
    let mut doc = format!(
        "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: bomb\nspec:\n  owners: [ada@acme.example]\n  description: &s \"{s}\"\n  labels:\n"
    );
    for i in 0..n {
        doc.push_str(&format!("    k{i}: *s\n"));
    }
    doc
}

#[test]
fn a_long_scalar_aliased_thousands_of_times_is_refused_in_bounded_memory() {
    for n in [1_000, 2_500] {
        let dir = repo(&[
            ("plinth.yaml", PLATFORM.to_owned()),
            ("projects/bomb.yaml", long_scalar_bomb(n)),
        ]);
        for cmd in ["check", "build"] {
            let mut args = vec![cmd, "."];
            if cmd == "build" {
                args.extend(["--out", "out"]);
            }
            let (code, out, err) = plinth_bounded(dir.path(), &args);
            assert_eq!(code, Some(1), "{cmd} with {n} aliases: {out}{err}");
            assert!(
                out.contains("error[Y002]") || err.contains("error[Y002]"),
                "{cmd}: {out}{err}"
            );
            assert!(!dir.path().join("out").exists(), "nothing is written");
        }
    }
}

#[test]
fn a_template_whose_output_aliases_a_long_scalar_is_refused_in_bounded_memory() {
    // The output stays under the render cap (1 MiB); its aliases would expand it 1,000 times.
    let s = "y".repeat(900 * 1024);
    let mut tmpl = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: wide\ndata:\n  a: &s \"{s}\"\n"
    );
    tmpl.push_str("{% for i in range(1000) %}\n  k{{ i }}: *s\n{% endfor %}\n");
    let dir = repo(&[
        ("plinth.yaml", PLATFORM.to_owned()),
        (
            "project.yaml",
            "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: ml\nspec:\n  owners: [ada@acme.example]\n".to_owned(),
        ),
        (
            "apps/wide.yaml",
            "apiVersion: plinth.dev/v1alpha1\nkind: App\nmetadata:\n  name: wide\nspec:\n  project: ml\n  template: wide\n".to_owned(),
        ),
        ("templates/wide.yaml.j2", tmpl),
    ]);
    let (code, out, err) = plinth_bounded(dir.path(), &["check", "."]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(
        out.contains("error[T004]") && out.contains("aliases add more than"),
        "{out}{err}"
    );
}

#[test]
fn a_flood_of_bad_files_prints_a_bounded_report_with_a_count() {
    let mut files = vec![("plinth.yaml", PLATFORM.to_owned())];
    let names: Vec<String> = (0..1_200).map(|i| format!("bad/f{i:05}.yaml")).collect();
    for (i, n) in names.iter().enumerate() {
        files.push((
            n.as_str(),
            format!("apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: p{i}\nspec:\n  ownerz: []\n"),
        ));
    }
    let dir = repo(&files);
    for format in ["human", "json"] {
        let (code, out, err) = plinth_bounded(dir.path(), &["check", ".", "--format", format]);
        assert_eq!(code, Some(1), "{err}");
        assert!(out.len() < 512 * 1024, "{format}: {} bytes", out.len());
        match format {
            "json" => {
                let v: serde_json::Value = serde_json::from_str(&out).unwrap();
                assert_eq!(v["diagnostics"].as_array().unwrap().len(), 500);
                assert_eq!(v["summary"]["errors"], 1_200, "totals count everything");
                assert_eq!(v["summary"]["omitted"], 1_900);
            }
            _ => assert!(out.contains("more diagnostics not shown"), "{format}"),
        }
    }
    let (_, out, _) = plinth_bounded(dir.path(), &["check", ".", "--max-diagnostics", "0"]);
    assert!(!out.contains("not shown"));
}
