//! `examples/repo` is a realistic platform and must stay clean, warnings included.

use std::process::Command;

#[test]
fn example_repo_checks_clean() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(["check", "examples/repo", "--strict", "--format", "json"])
        .current_dir(root)
        .output()
        .expect("run plinth");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(
        v["diagnostics"].as_array().map(Vec::len),
        Some(0),
        "{stdout}"
    );
}

#[test]
fn example_repo_covers_the_hospital_story() {
    let src =
        plinth::load::DirSource::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/repo"));
    let checked = plinth::check_source(&src, &plinth::Options::default()).expect("loads");
    let s = &checked.specs;
    assert!(s.projects.len() >= 4);
    assert!(s.datasets.len() >= 5);
    assert!(s.gpu_quotas.len() >= 2);
    assert!(s.rollouts.len() >= 3);
    assert!(!s.apps.is_empty());
    assert_eq!(s.platform.as_ref().map(|p| p.spec.clusters.len()), Some(2));
    use plinth::model::rollout::Strategy;
    let strategies: Vec<Strategy> = s
        .rollouts
        .values()
        .filter_map(|r| r.spec.traffic.as_ref().map(|t| t.strategy))
        .collect();
    for want in [Strategy::Canary, Strategy::BlueGreen, Strategy::Shadow] {
        assert!(
            strategies.contains(&want),
            "no {want:?} rollout in the example"
        );
    }
}
