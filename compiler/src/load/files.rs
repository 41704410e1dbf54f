//! Plain files named on the command line — the inputs of `plinth policy eval` and `--data`,
//! which are not a platform repository: directories walked recursively and in order, files
//! read as text within a size bound.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Files under `dir`, recursively, sorted, whose extension is one of `extensions`.
pub fn files_under(dir: &Path, extensions: &[&str]) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    walk(dir, extensions, &mut out)?;
    Ok(out)
}

fn walk(dir: &Path, extensions: &[&str], out: &mut Vec<PathBuf>) -> io::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, extensions, out)?;
        } else if has_extension(&path, extensions) {
            out.push(path);
        }
    }
    Ok(())
}

/// Whether `path` ends in one of `extensions`.
pub fn has_extension(path: &Path, extensions: &[&str]) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| extensions.contains(&e))
}

/// Whether `path` is a directory (following symlinks).
pub fn is_dir(path: &Path) -> bool {
    path.is_dir()
}

/// Whether anything exists at `path`.
pub fn exists(path: &Path) -> bool {
    path.exists()
}

/// A UTF-8 text file of at most `max` bytes (a larger one is an error, read no further).
pub fn read_text(path: &Path, max: u64) -> io::Result<String> {
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(max + 1).read_to_string(&mut text)?;
    if text.len() as u64 > max {
        return Err(io::Error::other(format!(
            "larger than {max} bytes, the most a file may hold"
        )));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_found_in_order_and_read_within_a_bound() {
        let dir = tempfile::tempdir().expect("tmp");
        let root = dir.path();
        std::fs::create_dir_all(root.join("b/c")).expect("mkdir");
        for (p, t) in [
            ("b/c/x.yaml", "x: 1"),
            ("a.json", "{}"),
            ("b/skip.txt", "no"),
        ] {
            std::fs::write(root.join(p), t).expect("write");
        }
        let found = files_under(root, &["yaml", "json"]).expect("walk");
        let rel: Vec<String> = found
            .iter()
            .map(|p| {
                p.strip_prefix(root)
                    .expect("under")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(rel, ["a.json", "b/c/x.yaml"]);
        assert_eq!(
            read_text(&root.join("b/c/x.yaml"), 4).expect("fits"),
            "x: 1"
        );
        let e = read_text(&root.join("b/c/x.yaml"), 3).expect_err("too large");
        assert!(e.to_string().contains("larger than 3 bytes"), "{e}");
    }
}
