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
    &["specs"],
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
    &["options"],
    &["lib"],
    &["cache"],
    &["cli"],
    &["main"],
];

/// Modules that may do IO (files, processes, sockets).
const IO: &[&str] = &["load", "cache", "cli", "main"];

/// Violations that exist today, as `file: rule`. Remove an entry when you fix it.
const KNOWN: &[&str] = &[];

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

// ---------------------------------------------------------------------------------------------
// File-level dependency cycles.
//
// A file depends on another when its code names an item through a path that reaches the other
// file's module: `crate::lower::gpu::x`, `super::Ctx`, `self::a::b`, or `child::f()` for a
// module it declares. Declaring a child (`mod app;`) is structure, not a dependency; a
// parent that calls into its child and a child that uses its parent's items form a cycle.

/// Module path of a file (`lower/app.rs` → `["lower", "app"]`, `lower/mod.rs` → `["lower"]`,
/// `lib.rs`/`main.rs` → `[]`).
fn module_path(rel: &str) -> Vec<String> {
    let rel = rel.trim_end_matches(".rs");
    let mut parts: Vec<String> = rel.split('/').map(str::to_owned).collect();
    if matches!(
        parts.last().map(String::as_str),
        Some("mod" | "lib" | "main")
    ) {
        parts.pop();
    }
    parts
}

/// The child modules a file declares (`mod app;`, `pub(crate) mod names;`).
fn declared_children(code: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let l = line.trim();
        let l = l
            .strip_prefix("pub(crate) ")
            .or_else(|| l.strip_prefix("pub(super) "))
            .or_else(|| l.strip_prefix("pub "))
            .unwrap_or(l);
        if let Some(rest) = l.strip_prefix("mod ")
            && let Some(name) = rest.strip_suffix(';')
        {
            out.insert(name.trim().to_owned());
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Expands a use tree that starts at `rest` (just after a `root::`) into paths of segments:
/// `{a::{b, c}, d}` → `[a, b]`, `[a, c]`, `[d]`; `x::y::Z` → `[x, y, Z]`.
fn expand(rest: &str) -> Vec<Vec<String>> {
    fn tree(s: &[char], i: &mut usize) -> Vec<Vec<String>> {
        let mut prefix = Vec::new();
        loop {
            while *i < s.len() && s[*i].is_whitespace() {
                *i += 1;
            }
            if *i < s.len() && s[*i] == '{' {
                *i += 1;
                let mut out = Vec::new();
                loop {
                    while *i < s.len() && (s[*i].is_whitespace() || s[*i] == ',') {
                        *i += 1;
                    }
                    if *i >= s.len() || s[*i] == '}' {
                        *i += 1;
                        break;
                    }
                    for mut p in tree(s, i) {
                        let mut full = prefix.clone();
                        full.append(&mut p);
                        out.push(full);
                    }
                }
                return out;
            }
            let start = *i;
            while *i < s.len() && is_ident(s[*i]) {
                *i += 1;
            }
            if *i == start {
                return vec![prefix];
            }
            prefix.push(s[start..*i].iter().collect());
            if s.get(*i) == Some(&':') && s.get(*i + 1) == Some(&':') {
                *i += 2;
            } else {
                return vec![prefix];
            }
        }
    }
    let chars: Vec<char> = rest.chars().take(4000).collect();
    let mut i = 0;
    tree(&chars, &mut i)
}

/// Every module path a file's code reaches (absolute, from the crate root).
fn referenced_paths(me: &[String], code: &str, children: &BTreeSet<String>) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    let bytes: Vec<char> = code.chars().collect();
    let text: String = bytes.iter().collect();
    let mut idx = 0;
    while idx < bytes.len() {
        // The start of an identifier followed by `::`.
        if is_ident(bytes[idx])
            && (idx == 0 || !(is_ident(bytes[idx - 1]) || bytes[idx - 1] == ':'))
        {
            let start = idx;
            while idx < bytes.len() && is_ident(bytes[idx]) {
                idx += 1;
            }
            let word: String = bytes[start..idx].iter().collect();
            if bytes.get(idx) == Some(&':') && bytes.get(idx + 1) == Some(&':') {
                let byte_at = text
                    .char_indices()
                    .nth(idx + 2)
                    .map_or(text.len(), |(b, _)| b);
                let rest = &text[byte_at..];
                let base: Option<Vec<String>> = match word.as_str() {
                    "crate" => Some(Vec::new()),
                    "self" => Some(me.to_vec()),
                    "super" => Some(me[..me.len().saturating_sub(1)].to_vec()),
                    w if children.contains(w) => Some({
                        let mut v = me.to_vec();
                        v.push(w.to_owned());
                        v
                    }),
                    _ => None,
                };
                if let Some(base) = base {
                    for p in expand(rest) {
                        let mut base = base.clone();
                        // `super::super::x`
                        let mut segs = p.into_iter().peekable();
                        while segs.peek().map(String::as_str) == Some("super") {
                            segs.next();
                            base.pop();
                        }
                        base.extend(segs.filter(|s| s != "self"));
                        out.push(base);
                    }
                }
            }
        } else {
            idx += 1;
        }
    }
    out
}

/// Files of a crate as module path → relative file name.
fn crate_files(root: &Path) -> std::collections::BTreeMap<Vec<String>, String> {
    let mut all = Vec::new();
    files(root, &mut all);
    all.iter()
        .map(|p| {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (module_path(&rel), rel)
        })
        .filter(|(_, rel)| rel != "main.rs" && !rel.starts_with("bin/"))
        .collect()
}

/// The file-level dependency graph of a crate: file → files it uses.
fn file_graph(root: &Path) -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let files = crate_files(root);
    let mut graph = std::collections::BTreeMap::new();
    for (me, rel) in &files {
        let text = code(&std::fs::read_to_string(root.join(rel)).unwrap());
        let children = declared_children(&text);
        let mut deps = BTreeSet::new();
        for path in referenced_paths(me, &text, &children) {
            // The longest prefix of the path that is a file.
            let target = (0..=path.len()).rev().find_map(|n| files.get(&path[..n]));
            if let Some(t) = target
                && t != rel
            {
                deps.insert(t.clone());
            }
        }
        graph.insert(rel.clone(), deps);
    }
    graph
}

/// Strongly connected components with more than one file (Tarjan).
fn cycles(graph: &std::collections::BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct T<'g> {
        g: &'g std::collections::BTreeMap<String, BTreeSet<String>>,
        index: std::collections::BTreeMap<&'g str, usize>,
        low: std::collections::BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on: BTreeSet<&'g str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'g>(t: &mut T<'g>, v: &'g str) {
        t.index.insert(v, t.next);
        t.low.insert(v, t.next);
        t.next += 1;
        t.stack.push(v);
        t.on.insert(v);
        for w in t.g.get(v).into_iter().flatten() {
            let w = w.as_str();
            if !t.index.contains_key(w) {
                visit(t, w);
                let lw = t.low[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if t.on.contains(w) {
                let iw = t.index[w];
                let lv = t.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if t.low[v] == t.index[v] {
            let mut comp = Vec::new();
            loop {
                let w = t.stack.pop().unwrap();
                t.on.remove(w);
                comp.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                t.out.push(comp);
            }
        }
    }
    let mut t = T {
        g: graph,
        index: Default::default(),
        low: Default::default(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !t.index.contains_key(v.as_str()) {
            visit(&mut t, v);
        }
    }
    t.out.sort();
    t.out
}

/// Files in a dependency cycle today (issue 20), as `crate/file`. The list may only shrink.
const KNOWN_CYCLES: &[&str] = &[];

#[test]
fn no_file_depends_on_itself_through_others() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut report = String::new();
    let mut in_cycles = BTreeSet::new();
    for (name, root) in [
        ("compiler", manifest.join("src")),
        ("agent", manifest.join("../agent/src")),
    ] {
        let graph = file_graph(&root);
        for c in cycles(&graph) {
            report.push_str(&format!("in {name}:\n"));
            for f in &c {
                in_cycles.insert(format!("{name}/{f}"));
                let inside: Vec<_> = graph[f].iter().filter(|t| c.contains(t)).collect();
                report.push_str(&format!("  {f} uses {inside:?}\n"));
            }
        }
    }
    let known: BTreeSet<String> = KNOWN_CYCLES.iter().map(|s| (*s).to_owned()).collect();
    let new: Vec<_> = in_cycles.difference(&known).collect();
    let fixed: Vec<_> = known.difference(&in_cycles).collect();
    assert!(
        new.is_empty() && fixed.is_empty(),
        "files that depend on each other in a cycle (move what they share into a file both use):\n{report}\nnew: {new:?}\nlisted in KNOWN_CYCLES but no longer in a cycle (remove them): {fixed:?}"
    );
}

#[test]
fn the_file_graph_reader_resolves_paths_and_finds_cycles() {
    assert_eq!(module_path("lower/app.rs"), ["lower", "app"]);
    assert_eq!(module_path("lower/mod.rs"), ["lower"]);
    assert!(module_path("lib.rs").is_empty());
    let me = module_path("lower/app.rs");
    let children = declared_children("pub mod x;\nmod y;\nfn f() {}");
    assert_eq!(children.iter().collect::<Vec<_>>(), ["x", "y"]);
    let paths = referenced_paths(
        &me,
        "use super::{Ctx, gpu::{a, b}};\nlet v = crate::names::is_dns_label(x); y::f(); other::g();",
        &children,
    );
    assert!(paths.contains(&vec!["lower".into(), "Ctx".into()]));
    assert!(paths.contains(&vec!["lower".into(), "gpu".into(), "a".into()]));
    assert!(paths.contains(&vec!["names".into(), "is_dns_label".into()]));
    assert!(paths.contains(&vec!["lower".into(), "app".into(), "y".into(), "f".into()]));
    assert!(!paths.iter().any(|p| p.contains(&"other".to_owned())));
    let mut g = std::collections::BTreeMap::new();
    g.insert("a".to_owned(), BTreeSet::from(["b".to_owned()]));
    g.insert("b".to_owned(), BTreeSet::from(["c".to_owned()]));
    g.insert("c".to_owned(), BTreeSet::from(["a".to_owned()]));
    g.insert("d".to_owned(), BTreeSet::from(["a".to_owned()]));
    assert_eq!(
        cycles(&g),
        vec![vec!["a".to_owned(), "b".into(), "c".into()]]
    );
}

// ---------------------------------------------------------------------------------------------
// Function length.

/// Most lines a function outside tests may span (signature to closing brace).
const MAX_FN_LINES: usize = 120;

/// The code with comments dropped and string and character literals blanked (their braces
/// would miscount); line breaks are kept.
fn without_literals(code: &str) -> String {
    let c: Vec<char> = code.chars().collect();
    let mut out = String::with_capacity(code.len());
    let mut i = 0;
    while i < c.len() {
        if c[i] == '/' && c.get(i + 1) == Some(&'/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c[i] == '/' && c.get(i + 1) == Some(&'*') {
            i += 2;
            while i < c.len() && !(c[i] == '*' && c.get(i + 1) == Some(&'/')) {
                if c[i] == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            i += 2;
            continue;
        }
        // Raw strings: r"..." / r#"..."#.
        if c[i] == 'r' && (i == 0 || !is_ident(c[i - 1])) && matches!(c.get(i + 1), Some('"' | '#'))
        {
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if c.get(j) == Some(&'"') {
                j += 1;
                loop {
                    if j >= c.len() {
                        break;
                    }
                    if c[j] == '"' && (0..hashes).all(|k| c.get(j + 1 + k) == Some(&'#')) {
                        j += 1 + hashes;
                        break;
                    }
                    if c[j] == '\n' {
                        out.push('\n');
                    }
                    j += 1;
                }
                i = j;
                continue;
            }
        }
        if c[i] == '"' {
            let mut j = i + 1;
            while j < c.len() && c[j] != '"' {
                if c[j] == '\\' {
                    j += 1;
                }
                if c.get(j) == Some(&'\n') {
                    out.push('\n');
                }
                j += 1;
            }
            i = j + 1;
            out.push_str("\"\"");
            continue;
        }
        if c[i] == '\'' {
            // A char literal ('x', '\n', '\u{7b}'), not a lifetime ('a).
            let close = if c.get(i + 1) == Some(&'\\') {
                (i + 2..c.len().min(i + 12)).find(|&j| c[j] == '\'')
            } else if c.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            if let Some(j) = close {
                out.push_str("' '");
                i = j + 1;
                continue;
            }
        }
        out.push(c[i]);
        i += 1;
    }
    out
}

/// Functions of a file longer than [`MAX_FN_LINES`], as `name (lines)`.
fn long_functions(code: &str) -> Vec<String> {
    let code = without_literals(code);
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (n, line) in lines.iter().enumerate() {
        let t = line.trim_start();
        let Some(at) = t.find("fn ") else {
            continue;
        };
        let head = &t[..at];
        let is_fn = head.split_whitespace().all(|w| {
            w.starts_with("pub") || matches!(w, "const" | "async" | "unsafe" | "extern" | "\"C\"")
        });
        if !is_fn {
            continue;
        }
        let name: String = t[at + 3..].chars().take_while(|c| is_ident(*c)).collect();
        // From the signature to the brace that closes the body (a `;` first: no body).
        let mut depth = 0i64;
        let mut opened = false;
        let mut end = None;
        'scan: for (m, l) in lines.iter().enumerate().skip(n) {
            for ch in l.chars() {
                match ch {
                    ';' if !opened && depth == 0 => break 'scan,
                    '{' => {
                        depth += 1;
                        opened = true;
                    }
                    '}' => {
                        depth -= 1;
                        if opened && depth == 0 {
                            end = Some(m);
                            break 'scan;
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(e) = end {
            let len = e - n + 1;
            if len > MAX_FN_LINES {
                out.push(format!("{name} ({len} lines)"));
            }
        }
    }
    out
}

#[test]
fn no_function_outside_tests_is_longer_than_the_limit() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found = Vec::new();
    for (name, root) in [
        ("compiler", manifest.join("src")),
        ("agent", manifest.join("../agent/src")),
        (
            "kube-testserver",
            manifest.join("../agent/kube-testserver/src"),
        ),
    ] {
        let mut all = Vec::new();
        files(&root, &mut all);
        all.sort();
        for p in all {
            let raw = std::fs::read_to_string(&p).unwrap();
            let text = match raw.find("#[cfg(test)]") {
                Some(i) => &raw[..i],
                None => &raw,
            };
            let rel = p.strip_prefix(&root).unwrap().display().to_string();
            for f in long_functions(text) {
                found.push(format!("{name}/{rel}: {f}"));
            }
        }
    }
    assert!(
        found.is_empty(),
        "functions over {MAX_FN_LINES} lines (split them into named steps):\n{found:#?}"
    );
}

#[test]
fn the_function_measure_skips_literals_and_counts_bodies() {
    let body = "    let x = 1;\n".repeat(MAX_FN_LINES);
    let long =
        format!("pub fn long() {{\n{body}}}\nfn short() {{ let c = '{{'; let s = \"}}}}\"; }}\n");
    assert_eq!(
        long_functions(&long),
        [format!("long ({} lines)", MAX_FN_LINES + 2)]
    );
    assert!(long_functions("fn decl();\nfn f() { r#\"{\"# ; }\n").is_empty());
    assert_eq!(without_literals("a '{' b \"}\" c 'a"), "a ' ' b \"\" c 'a");
    assert_eq!(without_literals("x // \"{\ny /* } */ z"), "x \ny  z");
}
