//! Embeds the default policy library (`policies/*.rego`, tests excluded) and the committed CRD
//! schemas (`schemas/crds/*.json`) into the binary, and a hash of the compiler's sources (`PLINTH_SOURCE_HASH`): part of every cache key, so results
//! of one build of plinth are never read by another with other code and the same version.

use std::fmt::Write;

fn main() {
    // A library that cannot be read must stop the build: a binary without its default
    // policies would pass every platform silently.
    let policies = embed(
        "../policies",
        |n| n.ends_with(".rego") && !n.ends_with("_test.rego"),
        ("vec![", "default_policies.rs"),
    );
    assert!(
        policies > 0,
        "no default policies (`*.rego`) in ../policies"
    );
    // The committed CRD schemas (equal to the ones generated from their types: test
    // `crd_schemas_match_types`), for the cache's fingerprint: hashing them costs nothing at
    // run time, generating them a few milliseconds per command.
    embed(
        "../schemas/crds",
        |n| n.ends_with(".json"),
        ("&[", "committed_crds.rs"),
    );
    source_hash();
}

/// Write `OUT_DIR/<file>`: `open` and a list of `(file name, include_str!(path))` of the files
/// of `dir` (relative to the crate) that `keep` selects, by name; how many there are.
fn embed(dir: &str, keep: fn(&str) -> bool, (open, file): (&str, &str)) -> usize {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|n| keep(n))
        .collect();
    names.sort();
    let mut out = format!("{open}\n");
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
    let dest = std::path::Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join(file);
    std::fs::write(dest, out).unwrap_or_else(|e| panic!("write {file}: {e}"));
    names.len()
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
