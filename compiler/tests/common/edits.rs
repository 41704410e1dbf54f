//! Random edits of a platform's files, for the property tests that compare incremental work
//! with work from scratch.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::source;

/// One edit of a platform's files.
#[derive(Debug, Clone)]
pub enum Edit {
    /// A comment line at the top of a file: every line after it moves.
    Shift { file: usize },
    /// The file is deleted.
    Delete { file: usize },
    /// The `n`-th integer of a file becomes `value`.
    Number { file: usize, n: usize, value: u32 },
    /// The `n`-th mention of one project's name in a file names another project.
    Rename { file: usize, n: usize, to: usize },
    /// A copy of a spec file with its first `name:` changed (a new spec of that kind).
    Copy { file: usize },
    /// The `n`-th line of a file is removed (a field, a list item — a grant, an allocation, a
    /// cluster — or a line whose loss breaks the document).
    DropLine { file: usize, n: usize },
    /// The `n`-th line of a file is written twice (a list item added again, a key repeated).
    DupLine { file: usize, n: usize },
    /// A spec file's documents moved to the end of another spec file (same specs, other file).
    Move { file: usize, into: usize },
}

pub fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0..1000usize).prop_map(|file| Edit::Shift { file }),
        (0..1000usize).prop_map(|file| Edit::Delete { file }),
        (0..1000usize, 0..12usize, 0..9u32).prop_map(|(file, n, value)| Edit::Number {
            file,
            n,
            value
        }),
        (0..1000usize, 0..6usize, 0..50usize).prop_map(|(file, n, to)| Edit::Rename {
            file,
            n,
            to
        }),
        (0..1000usize).prop_map(|file| Edit::Copy { file }),
        (0..1000usize, 0..40usize).prop_map(|(file, n)| Edit::DropLine { file, n }),
        (0..1000usize, 0..40usize).prop_map(|(file, n)| Edit::DupLine { file, n }),
        (0..1000usize, 0..1000usize).prop_map(|(file, into)| Edit::Move { file, into }),
    ]
}

pub fn project_names(files: &BTreeMap<String, String>) -> Vec<String> {
    let checked = plinth::check_source(&source(files), &plinth::Options::default()).unwrap();
    checked.specs.projects.keys().cloned().collect()
}

pub fn apply(files: &mut BTreeMap<String, String>, projects: &[String], e: &Edit) {
    let paths: Vec<String> = files
        .keys()
        .filter(|p| p.ends_with(".yaml") || p.ends_with(".yml") || p.starts_with("templates/"))
        .cloned()
        .collect();
    if paths.is_empty() {
        return;
    }
    let pick = |i: usize| paths[i % paths.len()].clone();
    match *e {
        Edit::Shift { file } => {
            let p = pick(file);
            let t = files.get_mut(&p).unwrap();
            let comment = if p.starts_with("templates/") {
                "{# moved #}\n"
            } else {
                "# moved\n"
            };
            t.insert_str(0, comment);
        }
        Edit::Delete { file } => {
            files.remove(&pick(file));
        }
        Edit::Number { file, n, value } => {
            let p = pick(file);
            let t = files.get_mut(&p).unwrap();
            let mut starts = Vec::new();
            let b = t.as_bytes();
            let mut i = 0;
            while i < b.len() {
                if b[i].is_ascii_digit()
                    && (i == 0 || !b[i - 1].is_ascii_alphanumeric() && b[i - 1] != b'-')
                {
                    let s = i;
                    while i < b.len() && b[i].is_ascii_digit() {
                        i += 1;
                    }
                    if i == b.len()
                        || !(b[i].is_ascii_alphanumeric() || b[i] == b'-' || b[i] == b'.')
                    {
                        starts.push((s, i));
                    }
                } else {
                    i += 1;
                }
            }
            if let Some(&(s, end)) = starts.get(n % starts.len().max(1)) {
                t.replace_range(s..end, &value.to_string());
            }
        }
        Edit::Rename { file, n, to } => {
            if projects.len() < 2 {
                return;
            }
            let p = pick(file);
            let t = files.get_mut(&p).unwrap();
            let mentions: Vec<(usize, &String)> = projects
                .iter()
                .flat_map(|name| t.match_indices(name.as_str()).map(move |(i, _)| (i, name)))
                .collect();
            if mentions.is_empty() {
                return;
            }
            let (at, from) = mentions[n % mentions.len()];
            let to = &projects[to % projects.len()];
            let (at, len) = (at, from.len());
            t.replace_range(at..at + len, to);
        }
        Edit::Copy { file } => {
            let p = pick(file);
            if p.starts_with("templates/") {
                return;
            }
            let t = files[&p].clone();
            let Some(i) = t.find("  name: ") else {
                return;
            };
            let mut copy = t.clone();
            copy.insert_str(i + "  name: ".len(), "copy-");
            files.insert(p.replace(".yaml", "-copy.yaml"), copy);
        }
        Edit::DropLine { file, n } | Edit::DupLine { file, n } => {
            let p = pick(file);
            let t = files.get_mut(&p).unwrap();
            let lines: Vec<&str> = t.split_inclusive('\n').collect();
            if lines.is_empty() {
                return;
            }
            let at = n % lines.len();
            let mut out = String::with_capacity(t.len() + lines[at].len() + 1);
            for (i, line) in lines.iter().enumerate() {
                if i != at || matches!(e, Edit::DupLine { .. }) {
                    out.push_str(line);
                }
                if i == at && matches!(e, Edit::DupLine { .. }) {
                    if !line.ends_with('\n') {
                        out.push('\n');
                    }
                    out.push_str(line);
                }
            }
            *t = out;
        }
        Edit::Move { file, into } => {
            let specs: Vec<&String> = paths
                .iter()
                .filter(|p| !p.starts_with("templates/"))
                .collect();
            if specs.len() < 2 {
                return;
            }
            let from = specs[file % specs.len()].clone();
            let to = specs[into % specs.len()].clone();
            if from == to {
                return;
            }
            let moved = files.remove(&from).unwrap();
            let t = files.get_mut(&to).unwrap();
            if !t.ends_with('\n') {
                t.push('\n');
            }
            t.push_str("---\n");
            t.push_str(&moved);
        }
    }
}
