//! Embeds the default policy library (`policies/*.rego`, tests excluded) into the binary, and
//! a hash of the compiler's sources (`PLINTH_SOURCE_HASH`): part of every cache key, so results
//! of one build of plinth are never read by another with other code and the same version.

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
    committed_crds();
    source_hash();
}

/// The committed CRD schemas (`schemas/crds/*.json`, equal to the ones generated from their
/// types: test `crd_schemas_match_types`), embedded for the cache's fingerprint: hashing them
/// costs nothing at run time, generating them a few milliseconds per command.
fn committed_crds() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../schemas/crds");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the CRD schemas in {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| n.ends_with(".json"))
        .collect();
    names.sort();
    let mut out = String::from("&[\n");
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
    let dest =
        std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("committed_crds.rs");
    std::fs::write(dest, out).expect("write committed_crds.rs");
}

/// FNV-1a (64 bits) of every file under `src/` (paths and bytes, in path order).
fn source_hash() {
    fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let p = e.expect("entry").path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    println!("cargo:rerun-if-changed={}", src.display());
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for f in files {
        let rel = f.strip_prefix(root).expect("under the crate");
        eat(rel.to_string_lossy().as_bytes());
        eat(&std::fs::read(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display())));
    }
    println!("cargo:rustc-env=PLINTH_SOURCE_HASH={h:016x}");
}
