//! The layering ARCHITECTURE.md promises, read from the source: the compiler is a pipeline
//! (load → parse → model → resolve → check → lower → emit / plan), and a stage may use only
//! stages below it; the model knows nothing of YAML spans or diagnostics; only the loader, the
//! cache and the CLI touch the file system, processes or the network.
//!
//! The code has not caught up everywhere yet (issue 20): the violations that exist are listed
//! in [`KNOWN`], and the list may only shrink — the test fails on a new violation *and* on a
//! listed one that is gone, so whoever fixes one removes it here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Layers, lowest first: a module may use only the modules before it.
const LAYERS: &[&[&str]] = &[
    &["names"],
    &["diag"],
    &["load"],
    &["render"],
    &["parse"],
    &["model"],
    &["output"],
    &["crd"],
    &["schema"],
    &["resolve"],
    &["check"],
    &["verify"],
    &["template"],
    &["lower"],
    &["capacity"],
    &["emit"],
    &["redact"],
    &["policy"],
    &["conftest"],
    &["plan"],
    &["report"],
    &["generate"],
    &["lib"],
    &["cache"],
    &["cli"],
    &["main"],
];

/// Modules that may do IO (files, processes, sockets).
const IO: &[&str] = &["load", "cache", "cli", "main"];

/// Violations that exist today, as `file: rule`. Remove an entry when you fix it.
const KNOWN: &[&str] = &[
    "model/mod.rs: imports diag (model must not)",
    "model/mod.rs: imports parse (model must not)",
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`lower/app.rs` → `lower`, `lib.rs` → `lib`).
fn module_of(rel: &str) -> String {
    rel.split('/')
        .next()
        .unwrap()
        .trim_end_matches(".rs")
        .to_owned()
}

fn layer(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

/// The code of a file without its unit tests (`#[cfg(test)]` to the end) and comments.
fn code(text: &str) -> String {
    let text = match text.find("#[cfg(test)]") {
        Some(i) => &text[..i],
        None => text,
    };
    text.lines()
        .map(|l| match l.find("//") {
            Some(i) => &l[..i],
            None => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level names a file reaches through `crate::` (`crate::lower::Manifest`,
/// `use crate::{diag::Code, parse}` → `lower`, `diag`, `parse`).
fn crate_imports(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // A `use crate::{...}` group: its top-level names, split on commas outside braces.
            let mut depth = 0usize;
            let mut name = String::new();
            let mut at_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        if !name.is_empty() {
                            out.insert(std::mem::take(&mut name));
                        }
                        at_start = true;
                        continue;
                    }
                    _ => {}
                }
                if depth == 0 && at_start {
                    if c.is_alphanumeric() || c == '_' {
                        name.push(c);
                    } else if !name.is_empty() {
                        at_start = false;
                    }
                }
            }
            if !name.is_empty() {
                out.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

/// Every layering rule a file breaks.
fn violations() -> BTreeSet<String> {
    let root = src();
    let mut all = Vec::new();
    files(&root, &mut all);
    let modules: BTreeSet<String> = all
        .iter()
        .map(|p| module_of(&p.strip_prefix(&root).unwrap().to_string_lossy()))
        .collect();
    let mut out = BTreeSet::new();
    for path in &all {
        let rel = path
            .strip_prefix(&root)
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let me = module_of(&rel);
        let Some(my_layer) = layer(&me) else {
            out.insert(format!("{rel}: module `{me}` has no layer"));
            continue;
        };
        let text = code(&std::fs::read_to_string(path).unwrap());
        for name in crate_imports(&text) {
            // Items of the crate root (`crate::build_source`) are the `lib` layer.
            let target = if modules.contains(&name) {
                name.clone()
            } else {
                "lib".to_owned()
            };
            if target == me {
                continue;
            }
            let Some(their_layer) = layer(&target) else {
                continue;
            };
            if me == "model" && (target == "parse" || target == "diag") {
                out.insert(format!("{rel}: imports {target} (model must not)"));
                continue;
            }
            let shown = if target == "lib" {
                format!("{name} (lib")
            } else {
                target.clone()
            };
            let open = if target == "lib" { "" } else { " (" };
            let close = if target == "lib" { ", " } else { "" };
            if their_layer > my_layer {
                out.insert(format!("{rel}: imports {shown}{open}{close}layer above)"));
            } else if their_layer == my_layer {
                out.insert(format!("{rel}: imports {shown}{open}{close}same layer)"));
            }
        }
        let io = [
            "std::fs",
            "std::process",
            "fs::read",
            "fs::write",
            "File::",
            "Command::new",
            "TcpStream",
            "TcpListener",
            "UdpSocket",
        ];
        if !IO.contains(&me.as_str()) && io.iter().any(|x| text.contains(x)) {
            out.insert(format!("{rel}: does IO"));
        }
    }
    out
}

#[test]
fn the_pipeline_only_points_down() {
    let found = violations();
    let known: BTreeSet<String> = KNOWN.iter().map(|s| (*s).to_owned()).collect();
    let new: Vec<_> = found.difference(&known).collect();
    let fixed: Vec<_> = known.difference(&found).collect();
    assert!(
        new.is_empty() && fixed.is_empty(),
        "layering changed.\nnew violations (a stage importing one above it, model importing parse/diag, IO outside load/cache/cli):\n{new:#?}\nlisted in KNOWN but gone (remove them from the list):\n{fixed:#?}"
    );
}

#[test]
fn the_import_reader_sees_grouped_and_nested_uses() {
    let names = crate_imports(
        "use crate::{diag::{Code, Label}, parse, lower::Manifest};\nlet x = crate::emit::to_yaml(v);",
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        ["diag", "emit", "lower", "parse"]
    );
    assert_eq!(module_of("lower/app.rs"), "lower");
    assert_eq!(module_of("lib.rs"), "lib");
    assert!(
        code("use x;\n#[cfg(test)]\nmod tests { use crate::cli; }")
            .find("cli")
            .is_none()
    );
}
