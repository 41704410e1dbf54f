//! The output directory: written only when it is plinth's, and never left half-written by a
//! failed write. A fresh or mostly changed output is written beside and swapped in whole; an
//! output that differs in a few files (an incremental build) gets only those: the new files are
//! written beside their targets first (a failure removes them and leaves the output as it was),
//! then renamed into place, the lock files last, and the files the build no longer has are
//! deleted.

/// Marks a directory as plinth's output, so it may be replaced later.
const MARKER: &str = ".plinth-output";

pub(super) fn mark(dir: &std::path::Path) -> std::io::Result<()> {
    let m = dir.join(MARKER);
    if !m.exists() {
        if std::fs::read_dir(dir)?.next().is_some() {
            return Err(std::io::Error::other(format!(
                "refusing to write into `{}`: it exists, is not empty and was not written by plinth",
                dir.display()
            )));
        }
        std::fs::write(
            m,
            "written by plinth build; the directory is replaced whole on every build\n",
        )?;
    }
    Ok(())
}

/// How `dir` differs from `tree`: the paths of `tree` whose file is missing or has other
/// bytes, and the files of `dir` that `tree` does not have (the marker aside). `None` when the
/// directory cannot be read as a plain tree of files.
fn differences(
    dir: &std::path::Path,
    tree: &crate::emit::Tree,
) -> Option<(Vec<String>, Vec<String>)> {
    fn walk(dir: &std::path::Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let kind = e.file_type()?;
            let name = e
                .file_name()
                .into_string()
                .map_err(|_| std::io::Error::other("a file name that is not UTF-8"))?;
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if kind.is_dir() {
                walk(&e.path(), &path, out)?;
            } else if kind.is_file() {
                out.push(path);
            } else {
                return Err(std::io::Error::other("not a regular file"));
            }
        }
        Ok(())
    }
    use rayon::prelude::*;
    let mut found = Vec::with_capacity(tree.len() + 1);
    walk(dir, "", &mut found).ok()?;
    found.retain(|p| p != MARKER);
    let removed: Vec<String> = found
        .into_iter()
        .filter(|p| !tree.contains_key(p))
        .collect();
    let changed: Vec<String> = tree
        .par_iter()
        .filter(|(path, text)| {
            !std::fs::read(dir.join(path)).is_ok_and(|bytes| bytes == text.as_bytes())
        })
        .map(|(path, _)| path.clone())
        .collect();
    Some((changed, removed))
}

/// Write `changed` files of `tree` into `target` and delete `removed` ones: every new file is
/// written beside its target first (on failure they are removed and `target` is as it was),
/// then renamed into place, lock files last.
fn update_in_place(
    target: &std::path::Path,
    tree: &crate::emit::Tree,
    changed: &[String],
    removed: &[String],
) -> std::io::Result<()> {
    use rayon::prelude::*;
    let pid = std::process::id();
    let temp = |p: &str| target.join(format!("{p}.plinth-new-{pid}"));
    let written: std::io::Result<()> = changed.par_iter().try_for_each(|p| {
        let t = temp(p);
        if let Some(d) = t.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(&t, &tree[p])
    });
    if let Err(e) = written {
        for p in changed {
            let _ = std::fs::remove_file(temp(p));
        }
        return Err(e);
    }
    let (locks, objects): (Vec<&String>, Vec<&String>) = changed
        .iter()
        .partition(|p| p.ends_with("plinth.lock.json"));
    for p in objects.into_iter().chain(locks) {
        std::fs::rename(temp(p), target.join(p))?;
    }
    for p in removed {
        std::fs::remove_file(target.join(p))?;
        // Directories the deletion left empty go too (never `target` itself).
        let mut dir = target.join(p);
        while dir.pop() && dir != target {
            if std::fs::remove_dir(&dir).is_err() {
                break;
            }
        }
    }
    Ok(())
}

/// Replace `target` with exactly the files of `tree`: written to a sibling directory first,
/// then swapped in by renames, so a failed build leaves the previous output untouched.
pub(super) fn replace_dir(
    target: &std::path::Path,
    tree: &crate::emit::Tree,
) -> anyhow::Result<()> {
    if target.exists() {
        // A cluster directory of a whole build is plinth's through the marker of its parent.
        let parent_marked = target.parent().is_some_and(|p| p.join(MARKER).exists());
        let is_ours = target.join(MARKER).exists() || parent_marked;
        let empty = std::fs::read_dir(target)?.next().is_none();
        if !is_ours && !empty {
            anyhow::bail!(
                "refusing to replace `{}`: it is not empty and was not written by plinth (no `{MARKER}` file)",
                target.display()
            );
        }
        if is_ours && let Some((changed, removed)) = differences(target, tree) {
            // Nothing to write: the files stay as they are (and keep their times). A few
            // changes are written in place; many, by writing the whole tree beside.
            if changed.is_empty() && removed.is_empty() {
                return Ok(());
            }
            if (changed.len() + removed.len()) * 4 <= tree.len() {
                return update_in_place(target, tree, &changed, &removed).map_err(|e| {
                    anyhow::Error::new(e).context(format!("cannot update `{}`", target.display()))
                });
            }
        }
    }
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if let Some(file) = parent.ancestors().find(|a| a.is_file()) {
        anyhow::bail!(
            "cannot write the output to `{}`: `{}` is a file, not a directory",
            target.display(),
            file.display()
        );
    }
    std::fs::create_dir_all(parent).map_err(|e| {
        anyhow::Error::new(e).context(format!("cannot create `{}`", parent.display()))
    })?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_owned());
    let tmp = parent.join(format!(".{name}.plinth-new-{}", std::process::id()));
    let old = parent.join(format!(".{name}.plinth-old-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        std::fs::write(
            tmp.join(MARKER),
            "written by plinth build; the directory is replaced whole on every build\n",
        )?;
        let mut dirs = std::collections::BTreeSet::new();
        for path in tree.keys() {
            if let Some(d) = tmp.join(path).parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        for d in &dirs {
            std::fs::create_dir_all(d)?;
        }
        // Many small files: write them from every core.
        use rayon::prelude::*;
        tree.par_iter()
            .try_for_each(|(path, text)| std::fs::write(tmp.join(path), text))?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(anyhow::Error::new(e).context(format!("cannot write `{}`", tmp.display())));
    }
    if target.exists() {
        std::fs::rename(target, &old)?;
    }
    if let Err(e) = std::fs::rename(&tmp, target) {
        let _ = std::fs::rename(&old, target);
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(anyhow::Error::new(e).context(format!(
            "cannot move the new output to `{}`",
            target.display()
        )));
    }
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}
