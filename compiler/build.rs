//! Embeds the default policy library (`policies/*.rego`, tests excluded) into the binary.

use std::fmt::Write;

fn main() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
    println!("cargo:rerun-if-changed={}", dir.display());
    // A library that cannot be read must stop the build: a binary without its default
    // policies would pass every platform silently.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the default policies in {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".rego") && !n.ends_with("_test.rego"))
        .collect();
    assert!(
        !names.is_empty(),
        "no default policies (`*.rego`) in {}",
        dir.display()
    );
    names.sort();
    let mut out = String::from("vec![\n");
    for n in &names {
        let path = dir.join(n);
        println!("cargo:rerun-if-changed={}", path.display());
        let _ = writeln!(
            out,
            "    ({n:?}, include_str!({:?})),",
            path.display().to_string()
        );
    }
    out.push(']');
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR"))
        .join("default_policies.rs");
    std::fs::write(dest, out).expect("write default_policies.rs");
}
