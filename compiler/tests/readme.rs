//! The README's spec examples form a valid platform: they are checked like any repository.

use plinth::load::MemSource;

#[test]
fn readme_examples_check_clean() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README");
    let mut src = MemSource::new().with("templates/jupyterlab.yaml.j2", "# template\n");
    let mut n = 0;
    for block in readme.split("```yaml\n").skip(1) {
        let body = block.split("```").next().unwrap_or_default();
        if body.contains("apiVersion:") {
            n += 1;
            src = src.with(&format!("readme-{n}.yaml"), body);
        }
    }
    assert!(
        n >= 6,
        "expected an example of every kind in the README, found {n}"
    );
    let checked = plinth::check_source(&src, &plinth::Options::default()).expect("loads");
    let diags = checked.diagnostics.into_sorted();
    assert!(
        diags.is_empty(),
        "README examples have problems: {diags:#?}"
    );
    assert_eq!(checked.specs.len(), 6);
}
