//! The output directory: written only when it is plinth's, and never left half-written by a
//! failed write. A fresh or mostly changed output is written beside and swapped in whole; an
//! output that differs in a few files (an incremental build) gets only those: the new files are
//! written beside their targets first (a failure removes them and leaves the output as it was),
//! then renamed into place, the lock files last, and the files the build no longer has are
//! deleted.

use crate::load::open_dir;

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

/// How `dir` differs from `files`: the rendered paths whose file is missing or has other bytes,
/// and the files of `dir` that `files` does not have (the marker aside). `None` when the
/// directory cannot be read as a plain tree of files. A directory the output `index` vouches
/// for is not read: its files are the ones recorded there ([`OutIndex::vouches_dir`]).
fn differences(
    dir: &std::path::Path,
    files: &crate::emit::Files,
    index: Option<&OutIndex>,
) -> Option<(Vec<String>, Vec<String>)> {
    use rayon::prelude::*;
    let tree = &files.texts;
    let subdirs = index.map(OutIndex::subdirs).unwrap_or_default();
    let walked = walk(dir, "", index.zip(Some(&subdirs))).ok()?;
    let mut found = walked.files;
    found.retain(|p| p != MARKER);
    // A file not rendered is known to be on disk as it should be (see `OutIndex`).
    let mut removed: Vec<String> = found
        .into_par_iter()
        .filter(|p| !files.ids.contains_key(p))
        .collect();
    if let Some(index) = index.filter(|i| !walked.vouched.is_empty() && !i.all_asked()) {
        // In a directory not read, the files recorded there are its files (none to remove
        // when the build has every recorded file).
        let vouched: std::collections::HashSet<&str> =
            walked.vouched.iter().map(String::as_str).collect();
        removed.par_extend(
            index
                .files()
                .par_iter()
                .map(|(p, _)| p)
                .filter(|p| vouched.contains(parent(p)) && !files.ids.contains_key(*p))
                .cloned(),
        );
    }
    let changed: Vec<String> = tree
        .par_iter()
        .filter(|(path, text)| {
            files.differ.contains(*path)
                || !std::fs::read(dir.join(path)).is_ok_and(|bytes| bytes == text.as_bytes())
        })
        .map(|(path, _)| path.clone())
        .collect();
    Some((changed, removed))
}

/// The directory holding `path` (relative; `""` for the top).
fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(d, _)| d)
}

/// What [`walk`] found: the files of the directories it read, and the directories it did not
/// read because the index vouched for them.
#[derive(Default)]
struct Walked {
    files: Vec<String>,
    vouched: Vec<String>,
}

/// The files below `dir` (paths relative to the walk's root, `rel` being `dir`'s);
/// subdirectories are walked in parallel. With an index (and its directories by parent), a
/// directory it vouches for is not read: its subdirectories are the recorded ones.
fn walk(
    dir: &std::path::Path,
    rel: &str,
    index: Option<(&OutIndex, &std::collections::HashMap<&str, Vec<&str>>)>,
) -> std::io::Result<Walked> {
    use rayon::prelude::*;
    let join = |name: &str| {
        if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        }
    };
    let mut walked = Walked::default();
    let mut dirs = Vec::new();
    match index {
        Some((ix, subdirs)) if ix.vouches_dir(rel) => {
            walked.vouched.push(rel.to_owned());
            for name in subdirs.get(rel).into_iter().flatten() {
                dirs.push((dir.join(name), join(name)));
            }
        }
        _ => {
            for e in std::fs::read_dir(dir)? {
                let e = e?;
                let kind = e.file_type()?;
                let name = e
                    .file_name()
                    .into_string()
                    .map_err(|_| std::io::Error::other("a file name that is not UTF-8"))?;
                let path = join(&name);
                if kind.is_dir() {
                    dirs.push((e.path(), path));
                } else if kind.is_file() {
                    walked.files.push(path);
                } else {
                    return Err(std::io::Error::other("not a regular file"));
                }
            }
        }
    }
    let below: Vec<Walked> = dirs
        .par_iter()
        .map(|(d, r)| walk(d, r, index))
        .collect::<std::io::Result<_>>()?;
    for b in below {
        walked.files.extend(b.files);
        walked.vouched.extend(b.vouched);
    }
    Ok(walked)
}

/// Write `changed` files of `tree` into `target` and delete `removed` ones: every new file is
/// written beside its target first (on failure they are removed and `target` is as it was),
/// then renamed into place, lock files last (a cluster's after its parts).
pub(super) fn update_in_place(
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
    // A lock file after what it lists: a cluster's after its parts.
    let (mut locks, objects): (Vec<&String>, Vec<&String>) = changed
        .iter()
        .partition(|p| split_path(p).1 == crate::emit::LOCK_FILE);
    locks.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
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
pub(super) fn replace_dir(target: &std::path::Path, tree: crate::emit::Tree) -> anyhow::Result<()> {
    let files = crate::emit::Files {
        ids: tree.keys().map(|p| (p.clone(), String::new())).collect(),
        texts: tree,
        differ: Default::default(),
    };
    // Every file is rendered: the update writes the whole tree itself when it must.
    update_dir(target, &files, None).map(|_| ())
}

/// What [`update_dir`] did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Update {
    /// `target` holds exactly the files.
    Done,
    /// Nothing was written: too much changed for an update in place, so the whole tree is to
    /// be written ([`write_whole`]), files not rendered included.
    Whole,
}

/// Bring `target` to exactly `files` when it is plinth's output and only a few files differ
/// (the files not rendered are known to be on disk already); otherwise write nothing and say
/// the whole tree is to be written.
pub(super) fn update_dir(
    target: &std::path::Path,
    files: &crate::emit::Files,
    index: Option<&OutIndex>,
) -> anyhow::Result<Update> {
    let tree = &files.texts;
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
        if is_ours && let Some((changed, removed)) = differences(target, files, index) {
            // Nothing to write: the files stay as they are (and keep their times). A few
            // changes are written in place; many, by writing the whole tree beside.
            if changed.is_empty() && removed.is_empty() {
                return Ok(Update::Done);
            }
            if (changed.len() + removed.len()) * 4 <= files.ids.len() {
                update_in_place(target, tree, &changed, &removed).map_err(|e| {
                    anyhow::Error::new(e).context(format!("cannot update `{}`", target.display()))
                })?;
                return Ok(Update::Done);
            }
        }
    }
    if files.texts.len() < files.ids.len() {
        return Ok(Update::Whole);
    }
    write_whole(target, tree)?;
    Ok(Update::Done)
}

/// Write `tree` beside `target` and swap it in.
fn write_whole(target: &std::path::Path, tree: &crate::emit::Tree) -> anyhow::Result<()> {
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

/// Bumped when the output index's format changes.
const INDEX_FORMAT: &str = "plinth-out-index-v3";

/// Entries changed less than this before the index was written are not trusted (a file's
/// change time has a coarse clock: a later write within the same tick would not change it).
const RACY: std::time::Duration = crate::load::RACY;

/// Stale entries an index may keep without being written again (see [`OutIndex::record`]).
const LAZY: usize = 64;

/// Entries an overlay holds before the index is written whole again (or a twentieth of the
/// index, when more).
const OVERLAY: usize = 4096;

/// What plinth last wrote into an output directory, so an incremental build renders and reads
/// only what changed: per file, the id of its content (see [`crate::emit::Files`]) and the
/// file's size, inode and change time when it was written. An entry vouches for a file only
/// while those are unchanged — any write, rename or `touch` of the file changes its change
/// time, which no user can set back — and only when it was recorded well after the file
/// changed (see [`RACY`]); otherwise the file is rendered and compared as without an index.
/// Directories are stamped the same way when the index is written, and only when they held
/// exactly the recorded files: while a directory's stamp holds, its entries are unchanged and
/// it is not read to find files to remove (a file added, removed or renamed in it changes it).
/// Kept in the cache directory (`outputs/`, one file per output directory); losing it only
/// costs time.
#[derive(Debug, Default)]
pub(super) struct OutIndex {
    /// Where the index is kept; `None`: no cache directory, nothing kept.
    path: Option<std::path::PathBuf>,
    /// The directory it describes.
    dir: std::path::PathBuf,
    /// The index file as read (its files' lines decoded when asked).
    read: IndexText,
    /// Its files and text digests, decoded ([`OutIndex::files`]) with the overlay applied.
    decoded: std::sync::OnceLock<(Stamps, Texts)>,
    /// How many files' lines it has, once counted.
    lines: std::sync::OnceLock<usize>,
    /// Directories (by relative path, `""` the top) whose entries were exactly the recorded
    /// files and directories when stamped (id empty; see [`OutIndex::vouches_dir`]).
    dirs: Stamps,
    /// The revision whose whole build the recorded files are (see [`OutIndex::revision`]).
    revision: Option<String>,
    /// What its overlay changed (applied to the fields above and to the files decoded), and
    /// when it was written (its entries' stamps are trusted from then).
    overlay: Overlay,
    overlay_written: Option<std::time::SystemTime>,
    /// When the index was written.
    written: Option<std::time::SystemTime>,
    /// The directory, open (files are looked at relative to it: no path walked from the root
    /// per file). `None` when it does not exist.
    root: Option<rustix::fd::OwnedFd>,
    /// How many recorded files [`OutIndex::known`] was asked about.
    asked: std::sync::atomic::AtomicUsize,
}

/// A file as recorded: its content id, size, inode and change time (seconds, nanoseconds).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    id: String,
    len: u64,
    ino: u64,
    ctime: (i64, i64),
}

/// The file of an index: a header line — its format, the directory it describes and the
/// revision written, as a JSON array — then a line per file,
/// `path\tid\tlen\tino\tctime-seconds\tctime-nanoseconds[\ttext-sha256]`
/// (read in parallel: a hundred thousand lines at scale). A path holding a tab or a line break
/// (which no object's file has) is left out: that file is compared by content.
struct IndexFile {
    format: String,
    dir: String,
    /// The cache key of the revision whose build wrote the files recorded (a whole build's:
    /// see [`OutIndex::revision`]).
    revision: Option<String>,
    /// Names this writing of the index: an overlay applies to the index of its generation.
    generation: String,
    files: Stamps,
    /// Lines whose path ends with `/` (`/` alone: the top).
    dirs: Stamps,
    /// The sha256 of some files' text (a seventh field): files written just before the index,
    /// whose stamps it cannot trust yet, are compared with it instead of their object.
    texts: Texts,
}

impl IndexFile {
    fn encode(&self) -> Vec<u8> {
        let head = (&self.format, &self.dir, &self.revision, &self.generation);
        let mut out = serde_json::to_vec(&head).unwrap_or_default();
        out.push(b'\n');
        for (d, s) in &self.dirs {
            push_line(&mut out, &format!("{d}/"), s, None);
        }
        lines(&mut out, &self.files, &self.texts);
        out
    }

    /// The index in `bytes`; `None` when they are not one (all or nothing: a damaged index
    /// only costs time).
    #[cfg(test)]
    fn decode(bytes: &[u8]) -> Option<IndexFile> {
        let read = IndexText::read(bytes.to_vec())?;
        let (files, texts) = read.files()?;
        Some(IndexFile {
            format: read.format,
            dir: read.dir,
            revision: read.revision,
            generation: read.generation,
            files,
            dirs: read.dirs,
            texts,
        })
    }
}

/// An index file as read ([`IndexFile`]): its head and directories decoded, its files' lines
/// kept as text (a hundred thousand at scale), decoded when asked ([`IndexText::files`]) or
/// walked as they are ([`OutIndex::intact`]).
#[derive(Debug, Default)]
struct IndexText {
    format: String,
    dir: String,
    revision: Option<String>,
    generation: String,
    dirs: Stamps,
    text: String,
    /// Where the files' lines begin.
    files_at: usize,
}

impl IndexText {
    /// The index in `bytes` (its head and directories read); `None` when they are not one.
    fn read(bytes: Vec<u8>) -> Option<IndexText> {
        let text = String::from_utf8(bytes).ok()?;
        if !text.ends_with('\n') {
            return None;
        }
        let (head, _) = text.split_once('\n')?;
        let (format, dir, revision, generation): (String, String, Option<String>, String) =
            serde_json::from_str(head).ok()?;
        let mut at = head.len() + 1;
        let mut dirs = Stamps::default();
        // The directories come first, each a line whose path ends with `/`.
        while let Some(line) = text[at..].split_terminator('\n').next() {
            let Some(d) = Line::parse(line)
                .filter(|l| l.path.ends_with('/'))
                .and_then(|_| Stamp::parse_line(line))
            else {
                break;
            };
            let (path, stamp, _) = d;
            dirs.insert(path[..path.len() - 1].to_owned(), stamp);
            at += line.len() + 1;
        }
        Some(IndexText {
            format,
            dir,
            revision,
            generation,
            dirs,
            text,
            files_at: at,
        })
    }

    /// The files' lines.
    fn body(&self) -> &str {
        &self.text[self.files_at..]
    }

    /// The files' lines decoded: stamps and text digests; `None` when one is not a line of an
    /// index (a damaged index only costs time).
    fn files(&self) -> Option<(Stamps, Texts)> {
        let parsed = crate::cache::parse_body(self.body(), |l| {
            Stamp::parse_line(l).filter(|(p, ..)| !p.ends_with('/'))
        })?;
        let mut files = Stamps::with_capacity_and_hasher(parsed.len(), Default::default());
        let mut texts = Texts::default();
        for (path, stamp, text) in parsed {
            if let Some(t) = text {
                texts.insert(path.clone(), t);
            }
            files.insert(path, stamp);
        }
        Some((files, texts))
    }
}

/// A few entries changed since the index of `generation` was written, kept beside it (so a
/// small change does not write a hundred thousand lines again): a header line — its format,
/// the index's generation, the revision now recorded, the directories no longer vouched for
/// and the files gone, as a JSON array — then the changed files' lines as in the index.
#[derive(Debug, Default)]
struct Overlay {
    format: String,
    generation: String,
    revision: Option<String>,
    dirs: Vec<String>,
    gone: Vec<String>,
    files: Stamps,
    texts: Texts,
}

impl Overlay {
    fn encode(&self) -> Vec<u8> {
        let head = (
            &self.format,
            &self.generation,
            &self.revision,
            &self.dirs,
            &self.gone,
        );
        let mut out = serde_json::to_vec(&head).unwrap_or_default();
        out.push(b'\n');
        lines(&mut out, &self.files, &self.texts);
        out
    }

    /// The overlay in `bytes`; `None` when they are not one.
    fn decode(bytes: &[u8]) -> Option<Overlay> {
        let (head, parsed) = crate::cache::parse_lines(bytes, Stamp::parse_line)?;
        #[allow(clippy::type_complexity)]
        let (format, generation, revision, dirs, gone): (
            String,
            String,
            Option<String>,
            Vec<String>,
            Vec<String>,
        ) = serde_json::from_str(head).ok()?;
        let mut overlay = Overlay {
            format,
            generation,
            revision,
            dirs,
            gone,
            ..Overlay::default()
        };
        for (path, stamp, text) in parsed {
            if path.ends_with('/') {
                return None;
            }
            if let Some(t) = text {
                overlay.texts.insert(path.clone(), t);
            }
            overlay.files.insert(path, stamp);
        }
        Some(overlay)
    }
}

/// Append a line per file of `files` (see [`IndexFile`]), by directory and name (the files of
/// a directory side by side).
fn lines(out: &mut Vec<u8>, files: &Stamps, texts: &Texts) {
    let mut sorted: Vec<(&String, &Stamp)> = files.iter().collect();
    sorted.sort_unstable_by(|a, b| split_path(a.0).cmp(&split_path(b.0)));
    for (path, s) in sorted {
        push_line(out, path, s, texts.get(path).map(String::as_str));
    }
}

/// Append the line of `path` (see [`IndexFile`]); none when the path would break it (a tab
/// or a line break, which no object's file has: that file is compared by content).
fn push_line(out: &mut Vec<u8>, path: &str, s: &Stamp, text: Option<&str>) {
    use std::io::Write;
    if path.contains(['\t', '\n']) {
        return;
    }
    // Writing into a vector cannot fail.
    let _ = write!(
        out,
        "{path}\t{}\t{}\t{}\t{}\t{}",
        s.id, s.len, s.ino, s.ctime.0, s.ctime.1
    );
    if let Some(t) = text {
        let _ = write!(out, "\t{t}");
    }
    out.push(b'\n');
}

/// A line of an index file as it is written (nothing copied): what [`OutIndex::intact`] walks.
#[derive(Debug, Clone, Copy)]
struct Line<'t> {
    path: &'t str,
    /// Where the file's name starts in `path` (after its directory's `/`).
    name_at: usize,
    id: &'t str,
    len: u64,
    ino: u64,
    ctime: (i64, i64),
    text: Option<&'t str>,
}

impl<'t> Line<'t> {
    /// A line of an index file ([`IndexFile`]); `None` when it is not one.
    fn parse(line: &'t str) -> Option<Line<'t>> {
        let mut f = line.split('\t');
        let mut next = || f.next();
        let path = next()?;
        let id = next()?;
        let parsed = Line {
            path,
            name_at: name_at(path),
            id,
            len: next()?.parse().ok()?,
            ino: next()?.parse().ok()?,
            ctime: (next()?.parse().ok()?, next()?.parse().ok()?),
            text: next(),
        };
        // Paths inside the output only (an index names what a build may remove): no absolute
        // path, no `..` or `.` and no empty component; `/` alone is the output's own directory.
        let inner = path.strip_suffix('/').unwrap_or(path);
        let inside = (inner.is_empty() && path == "/")
            || inner.split('/').all(|c| !matches!(c, "" | "." | ".."));
        // A text digest is a sha256 in hex.
        let digest = parsed
            .text
            .is_none_or(|t| t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()));
        (inside && digest && next().is_none()).then_some(parsed)
    }

    /// Its directory and its name ([`split_path`] of its path).
    fn split(&self) -> (&'t str, &'t str) {
        let (dir, name) = self.path.split_at(self.name_at);
        (dir.strip_suffix('/').unwrap_or(dir), name)
    }

    /// Whether `st` is what this line recorded.
    fn same_as(&self, st: &rustix::fs::Stat) -> bool {
        let s = Stamp {
            id: String::new(),
            len: self.len,
            ino: self.ino,
            ctime: self.ctime,
        };
        s.same_as(st, true)
    }
}

/// Files and their stamps: a hundred thousand paths looked up one by one (a fast hasher; the
/// index is this user's own file).
type Stamps = std::collections::HashMap<String, Stamp, foldhash::fast::RandomState>;

/// Files and the sha256 of their text.
type Texts = std::collections::HashMap<String, String, foldhash::fast::RandomState>;

impl Stamp {
    /// A file's line of an index file ([`IndexFile`]).
    fn parse_line(line: &str) -> Option<(String, Stamp, Option<String>)> {
        let l = Line::parse(line)?;
        let stamp = Stamp {
            id: l.id.to_owned(),
            len: l.len,
            ino: l.ino,
            ctime: l.ctime,
        };
        Some((l.path.to_owned(), stamp, l.text.map(str::to_owned)))
    }

    /// The stamp of the regular file `path` below the open directory `root`.
    fn of(id: &str, root: &rustix::fd::OwnedFd, path: &str) -> Option<Stamp> {
        Stamp::at(root, path, rustix::fs::FileType::RegularFile).map(|(len, mut s)| {
            s.id = id.to_owned();
            s.len = len;
            s
        })
    }

    /// The stamp of the directory `rel` below the open directory `root` (`""`: `root`); its
    /// size is left out (the change time covers its entries).
    fn of_dir(root: &rustix::fd::OwnedFd, rel: &str) -> Option<Stamp> {
        let path = if rel.is_empty() { "." } else { rel };
        Stamp::at(root, path, rustix::fs::FileType::Directory).map(|(_, s)| s)
    }

    /// The size of `path` below `root` and its stamp without id or size, when it is of type
    /// `kind` (a link is not followed). (The stat fields' types differ between architectures,
    /// hence the conversions.)
    #[allow(clippy::useless_conversion)]
    fn at(
        root: &rustix::fd::OwnedFd,
        path: &str,
        kind: rustix::fs::FileType,
    ) -> Option<(u64, Stamp)> {
        use rustix::fs::{AtFlags, FileType, statat};
        let st = statat(root, path, AtFlags::SYMLINK_NOFOLLOW).ok()?;
        (FileType::from_raw_mode(st.st_mode) == kind).then(|| {
            let stamp = Stamp {
                id: String::new(),
                len: 0,
                ino: st.st_ino.try_into().unwrap_or_default(),
                ctime: (
                    st.st_ctime.try_into().unwrap_or_default(),
                    st.st_ctime_nsec.try_into().unwrap_or_default(),
                ),
            };
            (st.st_size.try_into().unwrap_or_default(), stamp)
        })
    }

    /// Whether `st` is what this stamp recorded (its size too, for a file).
    #[allow(clippy::useless_conversion)]
    fn same_as(&self, st: &rustix::fs::Stat, file: bool) -> bool {
        let ino: u64 = st.st_ino.try_into().unwrap_or_default();
        let ctime: (i64, i64) = (
            st.st_ctime.try_into().unwrap_or_default(),
            st.st_ctime_nsec.try_into().unwrap_or_default(),
        );
        let len: u64 = st.st_size.try_into().unwrap_or_default();
        ino == self.ino && ctime == self.ctime && (!file || len == self.len)
    }

    /// When the file last changed.
    fn changed(&self) -> std::time::SystemTime {
        changed_at(self.ctime)
    }
}

/// A change time (seconds, nanoseconds) as a time.
fn changed_at(ctime: (i64, i64)) -> std::time::SystemTime {
    let secs = u64::try_from(ctime.0).unwrap_or(0);
    let nanos = u32::try_from(ctime.1).unwrap_or(0);
    std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos)
}

/// Where the index of the output `dir` is kept in `cache`, and the format it is read in.
fn index_path(cache: &std::path::Path, dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let name = crate::output::sha256_hex(abs.to_string_lossy().as_bytes());
    let path = cache.join("outputs").join(format!("{name}.index"));
    (
        path,
        format!("{INDEX_FORMAT}|{}", crate::cache::fingerprint()),
    )
}

impl OutIndex {
    /// The revision the index of `dir` kept in `cache` names ([`OutIndex::revision`]), from its
    /// first line and its overlay alone (the index is tens of megabytes at scale); what
    /// [`OutIndex::open`] will find unless a build writes the index meanwhile.
    pub(super) fn peek_revision(cache: &std::path::Path, dir: &std::path::Path) -> Option<String> {
        use std::io::{BufRead, Read};
        let (path, format) = index_path(cache, dir);
        let mut head = String::new();
        std::io::BufReader::new(std::fs::File::open(&path).ok()?.take(1 << 16))
            .read_line(&mut head)
            .ok()?;
        let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let (f, d, revision, generation): (String, String, Option<String>, String) =
            serde_json::from_str(head.trim_end()).ok()?;
        if f != format || d != abs.to_string_lossy() {
            return None;
        }
        let overlay = std::fs::read(path.with_extension("overlay"))
            .ok()
            .and_then(|b| Overlay::decode(&b))
            .filter(|o| o.format == format && o.generation == generation);
        match overlay {
            Some(o) => o.revision,
            None => revision,
        }
    }

    /// The index of `dir` kept in `cache` (empty when there is none, or it cannot be read).
    pub(super) fn open(cache: Option<&std::path::Path>, dir: &std::path::Path) -> OutIndex {
        let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        let root = open_dir(dir);
        let Some(cache) = cache else {
            return OutIndex {
                dir: dir.to_path_buf(),
                root,
                ..OutIndex::default()
            };
        };
        let (path, format) = index_path(cache, dir);
        let read = std::fs::read(&path)
            .ok()
            .and_then(IndexText::read)
            .filter(|f| f.format == format && f.dir == abs.to_string_lossy());
        let written = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let Some(mut read) = read else {
            return OutIndex {
                path: Some(path),
                dir: dir.to_path_buf(),
                root,
                ..OutIndex::default()
            };
        };
        let mut index = OutIndex {
            dir: dir.to_path_buf(),
            dirs: std::mem::take(&mut read.dirs),
            revision: read.revision.clone(),
            read,
            written,
            root,
            ..OutIndex::default()
        };
        // The overlay of this index's generation, if any, changes some entries.
        let overlay_path = path.with_extension("overlay");
        let overlay = std::fs::read(&overlay_path)
            .ok()
            .and_then(|b| Overlay::decode(&b))
            .filter(|o| o.format == format && o.generation == index.read.generation);
        if let Some(o) = overlay {
            index.overlay_written = std::fs::metadata(&overlay_path)
                .and_then(|m| m.modified())
                .ok();
            index.apply(o);
        }
        index.path = Some(path);
        index
    }

    /// Apply an overlay read beside the index (and keep it, for the files when decoded and to
    /// write it again with more).
    fn apply(&mut self, o: Overlay) {
        for d in &o.dirs {
            self.dirs.remove(d);
        }
        self.revision.clone_from(&o.revision);
        self.overlay = o;
    }

    /// Decode the recorded files now (beside the compile, for a build that compares its files
    /// with them; not on the thread pool, where threads would wait for the decoding).
    pub(super) fn decode_now(&self) {
        let _ = self.decoded();
    }

    /// The recorded files (decoded from the index when first asked, the overlay applied).
    fn files(&self) -> &Stamps {
        &self.decoded().0
    }

    fn decoded(&self) -> &(Stamps, Texts) {
        self.decoded.get_or_init(|| self.decode())
    }

    /// The recorded files and text digests, owned (decoded now unless they were).
    fn take_decoded(&mut self) -> (Stamps, Texts) {
        self.decoded.take().unwrap_or_else(|| self.decode())
    }

    /// The index's files with the overlay applied (none when a line is damaged).
    fn decode(&self) -> (Stamps, Texts) {
        let (mut files, mut texts) = self.read.files().unwrap_or_default();
        let o = &self.overlay;
        for g in &o.gone {
            files.remove(g);
            texts.remove(g);
        }
        for (p, stamp) in &o.files {
            files.insert(p.clone(), stamp.clone());
            match o.texts.get(p) {
                Some(t) => texts.insert(p.clone(), t.clone()),
                None => texts.remove(p),
            };
        }
        (files, texts)
    }

    /// How many files the index records (without decoding them).
    fn count(&self) -> usize {
        match (self.decoded.get(), self.lines.get()) {
            (Some((files, _)), _) => files.len(),
            (None, Some(n)) => *n,
            (None, None) => self.read.body().bytes().filter(|&b| b == b'\n').count(),
        }
    }

    /// The index with its directory opened again (as it is now: read earlier, the index may
    /// have been opened before the directory was made or replaced).
    pub(super) fn reopened(mut self) -> OutIndex {
        self.root = open_dir(&self.dir);
        self
    }

    /// The stamp of a file of the directory now.
    fn stamp(&self, id: &str, path: &str) -> Option<Stamp> {
        Stamp::of(id, self.root.as_ref()?, path)
    }

    /// Whether the entry of `path` was recorded well after its file last changed (see
    /// [`RACY`]): an entry of the overlay when the overlay was written, else when the index
    /// was.
    fn trusted(&self, path: &str, stamp: &Stamp) -> bool {
        let written = if self.overlay.files.contains_key(path) {
            self.overlay_written
        } else {
            self.written
        };
        written.is_some_and(|w| stamp.changed() + RACY < w)
    }

    /// Whether the file `path` still holds what its trusted entry `stamp` recorded.
    fn vouches(&self, path: &str, stamp: &Stamp) -> bool {
        self.trusted(path, stamp) && self.stamp(&stamp.id, path).as_ref() == Some(stamp)
    }

    /// Whether the directory `rel` holds what was recorded (its files in the index and its
    /// recorded subdirectories, the marker at the top), without reading it: its trusted
    /// stamp is unchanged — adding, removing or renaming an entry changes a directory's
    /// change time, which no user can set back. (What a file holds is its own stamp's
    /// business.)
    fn vouches_dir(&self, rel: &str) -> bool {
        self.dirs.get(rel).is_some_and(|stamp| {
            self.written.is_some_and(|w| stamp.changed() + RACY < w)
                && self
                    .root
                    .as_ref()
                    .and_then(|r| Stamp::of_dir(r, rel))
                    .as_ref()
                    == Some(stamp)
        })
    }

    /// The recorded directories by parent (their names).
    fn subdirs(&self) -> std::collections::HashMap<&str, Vec<&str>> {
        let mut by_parent: std::collections::HashMap<&str, Vec<&str>> = Default::default();
        for d in self.dirs.keys().filter(|d| !d.is_empty()) {
            let (parent, name) = d.rsplit_once('/').unwrap_or(("", d.as_str()));
            by_parent.entry(parent).or_default().push(name);
        }
        by_parent
    }

    /// Whether the file `path` is known to hold content other than `id` (so need not be read
    /// to be compared).
    pub(super) fn differs(&self, path: &str, id: &str) -> bool {
        self.files()
            .get(path)
            .is_some_and(|stamp| stamp.id != id && self.vouches(path, stamp))
    }

    /// Whether the file `path` (relative to the directory) is known to hold content `id`.
    pub(super) fn known(&self, path: &str, id: &str) -> bool {
        let recorded = self.files().get(path);
        if recorded.is_some() {
            self.asked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        recorded.is_some_and(|stamp| stamp.id == id && self.vouches(path, stamp))
    }

    /// Whether every recorded file was asked about by [`OutIndex::known`] (once each: every
    /// file of a build is), so none of them is to be removed.
    fn all_asked(&self) -> bool {
        self.asked.load(std::sync::atomic::Ordering::Relaxed) == self.files().len()
    }

    /// Record what the directory holds now (`ids`: every file and its content id) and keep
    /// the index. Unchanged entries are kept as they are; new or changed files are stamped
    /// now. An index that cannot be written only costs time.
    /// `rendered`: the files rendered in this run — every other one is a file
    /// [`OutIndex::known`] vouched for (not stamped again); `None`: none was vouched for.
    /// `revision`: the revision built, when the build wrote the whole output (not one
    /// cluster); an index naming another one is written again.
    pub(super) fn record(
        mut self,
        ids: &std::collections::BTreeMap<String, String>,
        rendered: Option<&crate::emit::Tree>,
        revision: Option<&str>,
    ) {
        use rayon::prelude::*;
        let Some(path) = self.path.take() else {
            return;
        };
        let (old, old_texts) = self.take_decoded();
        // Opened again: a directory written whole was swapped in under the same name.
        self.root = open_dir(&self.dir);
        let vouched = |p: &str| rendered.is_some_and(|r| !r.contains_key(p));
        // Few files rendered (a small change): their entries alone decide whether the index
        // is written again (a file vouched for is recorded, trusted and unchanged).
        if let Some(rendered) = rendered.filter(|_| !old.is_empty()) {
            let mut recorded = ids.len().saturating_sub(rendered.len());
            let mut stale = 0;
            for p in rendered.keys() {
                let was = old.get(p.as_str());
                recorded += usize::from(was.is_some());
                let stamp = ids.get(p).and_then(|id| self.stamp(id, p));
                stale += usize::from(match &stamp {
                    Some(s) => was != Some(s) || !self.trusted(p, s),
                    None => was.is_some(),
                });
            }
            stale += old.len().saturating_sub(recorded);
            if stale <= LAZY.max(ids.len() / 100) {
                if revision == self.revision.as_deref() {
                    // A hundred thousand entries are freed on a thread nothing waits for.
                    std::thread::spawn(move || drop((old, self)));
                } else {
                    // Another revision: its few files are recorded in the index kept.
                    let changed: Vec<(&str, &str, &str)> = rendered
                        .iter()
                        .filter_map(|(p, t)| Some((p.as_str(), ids.get(p)?.as_str(), t.as_str())))
                        .collect();
                    let gone: Vec<String> = old
                        .keys()
                        .filter(|p| !ids.contains_key(p.as_str()))
                        .cloned()
                        .collect();
                    self.patch(path, Some((old, old_texts)), (&changed, &gone), revision);
                }
                return;
            }
        }
        // Per file: `None` when its recorded stamp is kept, else its stamp now (`Some(None)`:
        // the file is gone); whether it was recorded; whether its entry is stale (new,
        // changed or not yet trusted).
        let now: Vec<(Option<Option<Stamp>>, bool, bool)> = ids
            .par_iter()
            .map(|(p, id)| {
                let was = old.get(p.as_str());
                if let Some(s) = was.filter(|s| s.id == *id && vouched(p)) {
                    return (None, true, !self.trusted(p, s));
                }
                let stamp = self.stamp(id, p);
                let stale = match &stamp {
                    Some(s) => was != Some(s) || !self.trusted(p, s),
                    None => was.is_some(),
                };
                (Some(stamp), was.is_some(), stale)
            })
            .collect();
        let recorded = now.iter().filter(|(_, was, _)| *was).count();
        let stale = now.iter().filter(|(.., stale)| *stale).count() + (old.len() - recorded);
        // Only a few entries are new, changed or not yet trusted: the index is not written
        // again (those files are compared by content next time, which costs less than writing
        // the index). Many are: it is, and so trusted from now on.
        if !old.is_empty()
            && stale <= LAZY.max(ids.len() / 100)
            && revision == self.revision.as_deref()
        {
            return;
        }
        let files: Stamps = ids
            .iter()
            .zip(now)
            .filter_map(|((p, _), (stamp, ..))| {
                let stamp = match stamp {
                    None => old.get(p.as_str()).cloned(),
                    Some(s) => s,
                }?;
                Some((p.clone(), stamp))
            })
            .collect();
        let dirs = self.stamp_dirs(&files);
        // Files written just now, when few, are recorded with their text's digest (their
        // stamps are trusted only later).
        let texts: Texts = rendered
            .filter(|r| r.len() <= LAZY)
            .into_iter()
            .flatten()
            .filter(|(p, _)| !aggregate(p))
            .filter(|(p, _)| files.get(p.as_str()).is_some_and(|s| !self.trusted_now(s)))
            .map(|(p, t)| (p.clone(), crate::output::sha256_hex(t.as_bytes())))
            .collect();
        self.write_whole(&path, revision, (files, dirs, texts));
    }

    /// Write the index of this directory at `path` whole, as the build of `revision`, a new
    /// generation (an index that cannot be written only costs time).
    fn write_whole(
        &self,
        path: &std::path::Path,
        revision: Option<&str>,
        (files, dirs, texts): (Stamps, Stamps, Texts),
    ) {
        let abs = std::path::absolute(&self.dir).unwrap_or_else(|_| self.dir.clone());
        let file = IndexFile {
            format: format!("{INDEX_FORMAT}|{}", crate::cache::fingerprint()),
            dir: abs.to_string_lossy().into_owned(),
            revision: revision.map(str::to_owned),
            generation: new_generation(),
            files,
            dirs,
            texts,
        };
        let _ = write_index(path, &file);
    }

    /// Whether an entry stamped now would be trusted by an index written now.
    fn trusted_now(&self, stamp: &Stamp) -> bool {
        stamp.changed() + RACY < std::time::SystemTime::now()
    }

    /// The revision whose whole build the recorded files are, when the index was written by
    /// one (see [`OutIndex::intact`]).
    pub(super) fn revision(&self) -> Option<&str> {
        self.revision.as_deref()
    }

    /// Whether the directory holds exactly the recorded files, each with its recorded content
    /// (a revision's whole build, when the index names one) — read as little as that can be
    /// shown: a file whose stamp the index vouches for is not read, nor a directory whose
    /// stamp it vouches for; the few others (written just before the index) are read and
    /// compared with their recorded text digest (an aggregate file with its id), and the
    /// directories not vouched for are listed. Gives the text of each cluster's lock file
    /// (by path); `None` when anything differs, cannot be read, or too many files would have
    /// to be (then the build writes as without it). `likely` is told first (from the index
    /// alone, before any file is looked at) whether it can be.
    pub(super) fn intact(
        &self,
        likely: impl FnOnce(bool),
    ) -> Option<std::collections::BTreeMap<String, String>> {
        let mut likely = Some(likely);
        let mut tell = |v: bool| {
            if let Some(f) = likely.take() {
                f(v);
            }
        };
        let intact = self.intact_told(&mut tell);
        tell(false);
        intact
    }

    /// [`OutIndex::intact`], telling `likely` once the index is read.
    fn intact_told(
        &self,
        likely: &mut dyn FnMut(bool),
    ) -> Option<std::collections::BTreeMap<String, String>> {
        use rayon::prelude::*;
        use std::collections::{BTreeSet, HashMap, HashSet};
        let root = self.root.as_ref()?;
        self.revision.as_ref()?;
        Stamp::at(root, MARKER, rustix::fs::FileType::RegularFile)?;
        // The recorded files as their lines say (not decoded; the overlay's in place of the
        // index's), by directory: each directory is opened once, its files looked at from
        // there.
        let o = &self.overlay;
        let mut lines: Vec<Line<'_>> = crate::cache::parse_body(self.read.body(), |l| {
            Line::parse(l).filter(|l| !l.path.ends_with('/'))
        })?;
        let _ = self.lines.set(lines.len());
        if !o.files.is_empty() || !o.gone.is_empty() {
            let gone: HashSet<&str> = o.gone.iter().map(String::as_str).collect();
            lines.retain(|l| !o.files.contains_key(l.path) && !gone.contains(l.path));
        }
        // Written by directory and name; sorted so when not.
        if !lines.is_sorted_by(|a, b| a.split() <= b.split()) {
            lines.par_sort_unstable_by(|a, b| a.split().cmp(&b.split()));
        }
        type Here<'l, 't> = (&'l [Line<'t>], Vec<Line<'t>>);
        type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
        let mut files: Map<&str, Here<'_, '_>> = Map::default();
        let mut from = 0;
        for i in 1..=lines.len() {
            let dir = lines[from].split().0;
            if lines.get(i).is_none_or(|l| l.split().0 != dir) {
                files.insert(dir, (&lines[from..i], Vec::new()));
                from = i;
            }
        }
        // The overlay's files, beside their directory's.
        for (p, s) in &o.files {
            let text = o.texts.get(p).map(String::as_str);
            let (len, ino, ctime) = (s.len, s.ino, s.ctime);
            let line = Line {
                path: p,
                name_at: name_at(p),
                id: &s.id,
                len,
                ino,
                ctime,
                text,
            };
            files.entry(split_path(p).0).or_default().1.push(line);
        }
        // Entries recorded too soon after their file changed are read: past a few, the output is
        // written as without the index (as right after a whole output was written).
        let budget = LAZY.max(lines.len() / 100);
        let unsure = lines
            .iter()
            .filter(|l| !trusted(l.ctime, self.written))
            .count()
            + o.files
                .values()
                .filter(|s| !trusted(s.ctime, self.overlay_written))
                .count();
        if files.is_empty() || unsure > budget {
            return None;
        }
        likely(true);
        // Every directory on the way, with its subdirectories' names.
        let mut subdirs: Map<&str, BTreeSet<&str>> =
            Map::with_capacity_and_hasher(files.len() + 16, Default::default());
        subdirs.entry("").or_default();
        for dir in files.keys() {
            let mut d = *dir;
            while !d.is_empty() {
                subdirs.entry(d).or_default();
                let (parent, name) = split_path(d);
                if !subdirs.entry(parent).or_default().insert(name) {
                    break;
                }
                d = parent;
            }
        }
        let read = std::sync::atomic::AtomicUsize::new(0);
        let none: Here<'_, '_> = (&[], Vec::new());
        let locks: Vec<Vec<(String, String)>> = subdirs
            .par_iter()
            .map(|(dir, below)| {
                let (here, overlaid) = files.get(dir).unwrap_or(&none);
                let here = (*here, &overlaid[..]);
                self.dir_intact(root, (dir, here, below), (&read, budget))
            })
            .collect::<Option<_>>()?;
        Some(locks.into_iter().flatten().collect())
    }

    /// [`OutIndex::intact`] of one directory `dir` below `root`, holding the recorded files
    /// `here` (the index's, and the overlay's) and the subdirectories `below`: the texts of
    /// the lock files among them. `read` counts the files read for want of a stamp vouching
    /// for them, up to `budget`.
    #[allow(clippy::type_complexity)]
    fn dir_intact(
        &self,
        root: &rustix::fd::OwnedFd,
        (dir, here, below): (
            &str,
            (&[Line<'_>], &[Line<'_>]),
            &std::collections::BTreeSet<&str>,
        ),
        (read, budget): (&std::sync::atomic::AtomicUsize, usize),
    ) -> Option<Vec<(String, String)>> {
        use rustix::fs::{AtFlags, FileType, Mode, OFlags};
        use std::sync::atomic::Ordering;
        let opened;
        let fd = if dir.is_empty() {
            root
        } else {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
            opened = rustix::fs::openat(root, dir, flags, Mode::empty()).ok()?;
            &opened
        };
        // The directory: its trusted stamp unchanged, else it is listed.
        let st = rustix::fs::fstat(fd).ok()?;
        let vouched = self
            .dirs
            .get(dir)
            .is_some_and(|r| trusted(r.ctime, self.written) && r.same_as(&st, false));
        if !vouched {
            let names: std::collections::BTreeSet<&str> = here
                .0
                .iter()
                .chain(here.1)
                .map(|l| l.split().1)
                .chain(below.iter().copied())
                .collect();
            if !self.holds_exactly(dir, &names) {
                return None;
            }
        }
        // A cluster's kustomization and lock file are compared by their id (a text digest).
        let aggregate = !dir.is_empty() && !dir.contains('/');
        let mut locks = Vec::new();
        let index = here.0.iter().map(|l| (l, self.written));
        for (line, written) in index.chain(here.1.iter().map(|l| (l, self.overlay_written))) {
            let (p, name) = (line.path, line.split().1);
            let lock = aggregate && name == "plinth.lock.json";
            let now = rustix::fs::statat(fd, name, AtFlags::SYMLINK_NOFOLLOW).ok();
            let vouched = trusted(line.ctime, written)
                && now.as_ref().is_some_and(|st| {
                    FileType::from_raw_mode(st.st_mode) == FileType::RegularFile && line.same_as(st)
                });
            if vouched && !lock {
                continue;
            }
            if !vouched && read.fetch_add(1, Ordering::Relaxed) >= budget {
                return None;
            }
            let text = std::fs::read_to_string(self.dir.join(p)).ok()?;
            let same = vouched
                || if aggregate {
                    crate::emit::large_text_id(&text) == line.id
                } else {
                    line.text
                        .is_some_and(|t| t == crate::output::sha256_hex(text.as_bytes()))
                };
            if !same {
                return None;
            }
            if lock {
                locks.push((p.to_owned(), text));
            }
        }
        Some(locks)
    }

    /// Whether the directory `dir` holds exactly `names` (the marker aside at the top).
    fn holds_exactly(&self, dir: &str, names: &std::collections::BTreeSet<&str>) -> bool {
        let Ok(entries) = std::fs::read_dir(self.dir.join(dir)) else {
            return false;
        };
        let mut held = std::collections::BTreeSet::new();
        for e in entries {
            let Some(name) = e.ok().and_then(|e| e.file_name().into_string().ok()) else {
                return false;
            };
            if !(dir.is_empty() && name == MARKER) {
                held.insert(name);
            }
        }
        held.len() == names.len() && held.iter().zip(names).all(|(a, b)| a == b)
    }

    /// Record the whole build of `revision` written over the revision the index recorded
    /// ([`OutIndex::intact`]) by changing the `changed` files (path, content id, text).
    pub(super) fn record_changed(mut self, changed: &[(&str, &str, &str)], revision: &str) {
        let Some(path) = self.path.take() else {
            return;
        };
        self.patch(path, None, (changed, &[]), Some(revision));
    }

    /// Keep the index `files` with a few entries changed: the `changed` files (path, id, text)
    /// stamped now, with their text's digest, the `gone` ones left out, the directories on the
    /// way to either no longer vouched for (they are listed next time), and `revision`
    /// recorded. An index that cannot be written only costs time.
    fn patch(
        mut self,
        path: std::path::PathBuf,
        decoded: Option<(Stamps, Texts)>,
        (changed, gone): (&[(&str, &str, &str)], &[String]),
        revision: Option<&str>,
    ) {
        let mut dirs = std::mem::take(&mut self.dirs);
        let mut overlay = std::mem::take(&mut self.overlay);
        let mut unvouched: std::collections::BTreeSet<String> =
            std::mem::take(&mut overlay.dirs).into_iter().collect();
        let touched = changed
            .iter()
            .map(|(p, ..)| *p)
            .chain(gone.iter().map(String::as_str));
        for p in touched {
            overlay.files.remove(p);
            overlay.texts.remove(p);
            let mut at = p;
            while let Some((dir, _)) = at.rsplit_once('/') {
                dirs.remove(dir);
                unvouched.insert(dir.to_owned());
                at = dir;
            }
            dirs.remove("");
            unvouched.insert(String::new());
        }
        overlay
            .gone
            .retain(|g| !changed.iter().any(|(p, ..)| p == g));
        overlay.gone.extend(gone.iter().cloned());
        // An aggregate's id is its text's digest already (and it is tens of megabytes).
        let stamped: Vec<(&str, Stamp, Option<String>)> = changed
            .iter()
            .filter_map(|(p, id, text)| {
                let stamp = self.stamp(id, p)?;
                let sha = (!aggregate(p)).then(|| crate::output::sha256_hex(text.as_bytes()));
                Some((*p, stamp, sha))
            })
            .collect();
        for (p, stamp, sha) in &stamped {
            overlay.files.insert((*p).to_owned(), stamp.clone());
            if let Some(sha) = sha {
                overlay.texts.insert((*p).to_owned(), sha.clone());
            }
        }
        let format = format!("{INDEX_FORMAT}|{}", crate::cache::fingerprint());
        // An overlay grown large is folded into the index written whole.
        let recorded = decoded
            .as_ref()
            .map_or_else(|| self.count(), |(f, _)| f.len());
        let small = overlay.files.len() + overlay.gone.len() + unvouched.len()
            <= OVERLAY.max(recorded / 20);
        if !self.read.generation.is_empty() && small {
            overlay.format = format;
            overlay.generation = std::mem::take(&mut self.read.generation);
            overlay.revision = revision.map(str::to_owned);
            overlay.dirs = unvouched.into_iter().collect();
            let _ = write_beside(&path.with_extension("overlay"), &overlay.encode());
            // A hundred thousand entries are freed on a thread nothing waits for.
            std::thread::spawn(move || drop((decoded, dirs, self)));
            return;
        }
        let (mut files, mut texts) = decoded.unwrap_or_else(|| self.take_decoded());
        for p in changed
            .iter()
            .map(|(p, ..)| *p)
            .chain(gone.iter().map(String::as_str))
        {
            files.remove(p);
            texts.remove(p);
        }
        for (p, stamp, sha) in stamped {
            files.insert(p.to_owned(), stamp);
            if let Some(sha) = sha {
                texts.insert(p.to_owned(), sha);
            }
        }
        self.write_whole(&path, revision, (files, dirs, texts));
    }

    /// The stamps of the directories that hold exactly `files` (and the directories on their
    /// way; the marker aside at the top): each is read between two looks at its stamp, and
    /// stamped only when both agree and it holds nothing else and misses nothing (a file a
    /// user added since plinth wrote, or one not stamped, leaves its directory to be read
    /// next time).
    fn stamp_dirs(&self, files: &Stamps) -> Stamps {
        use rayon::prelude::*;
        let Some(root) = &self.root else {
            return Stamps::default();
        };
        expected_names(files)
            .par_iter()
            .filter_map(|(dir, names)| {
                let before = Stamp::of_dir(root, dir)?;
                let mut held = std::collections::BTreeSet::new();
                for e in std::fs::read_dir(self.dir.join(dir)).ok()? {
                    let name = e.ok()?.file_name().into_string().ok()?;
                    if !(dir.is_empty() && name == MARKER) {
                        held.insert(name);
                    }
                }
                let same = held.len() == names.len() && held.iter().zip(names).all(|(a, b)| a == b);
                (same && Stamp::of_dir(root, dir).as_ref() == Some(&before))
                    .then(|| ((*dir).to_owned(), before))
            })
            .collect()
    }
}

/// Whether an entry changed at `ctime` was recorded well after that, by an index (or overlay)
/// `written` then (see [`RACY`]).
fn trusted(ctime: (i64, i64), written: Option<std::time::SystemTime>) -> bool {
    written.is_some_and(|w| changed_at(ctime) + RACY < w)
}

/// Whether `path` is a cluster's kustomization or lock file (`<cluster>/<file>`; objects are
/// a level down), whose content id is a digest of its text.
fn aggregate(path: &str) -> bool {
    let dir = split_path(path).0;
    !dir.is_empty() && !dir.contains('/')
}

/// A file's directory and name (`""` for a file at the top).
fn split_path(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// Where the name starts in `path` ([`split_path`]'s second part).
fn name_at(path: &str) -> usize {
    path.rfind('/').map_or(0, |i| i + 1)
}

/// Per directory of `files` (and on their way, `""` the top), the names it should hold.
fn expected_names(
    files: &Stamps,
) -> std::collections::HashMap<&str, std::collections::BTreeSet<&str>> {
    let mut expected: std::collections::HashMap<&str, std::collections::BTreeSet<&str>> =
        std::collections::HashMap::new();
    expected.entry("").or_default();
    for p in files.keys() {
        let mut path = p.as_str();
        loop {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
            let new = expected.entry(dir).or_default().insert(name);
            // A directory already named in its parent has its way recorded.
            if dir.is_empty() || (!new && path != p.as_str()) {
                break;
            }
            path = dir;
        }
    }
    expected
}

/// A name for an index written now (no two alike: the time, the process and a count).
fn new_generation() -> String {
    static COUNT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let n = COUNT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!(
        "{}.{}-{}-{n}",
        now.as_secs(),
        now.subsec_nanos(),
        std::process::id()
    )
}

/// Write `bytes` beside `path` and rename them into place.
fn write_beside(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Write an index beside and rename it into place (its overlay, of an older generation, is
/// removed: it would not apply).
fn write_index(path: &std::path::Path, file: &IndexFile) -> std::io::Result<()> {
    write_beside(path, &file.encode())?;
    let _ = std::fs::remove_file(path.with_extension("overlay"));
    // The index of plinth before this format (a JSON document) is not read any more.
    let _ = std::fs::remove_file(path.with_extension("json"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(id: &str, n: u64) -> Stamp {
        Stamp {
            id: id.to_owned(),
            len: n,
            ino: n * 7,
            ctime: (1_700_000_000 + i64::try_from(n).unwrap_or(0), -3),
        }
    }

    #[test]
    fn an_index_file_reads_back_as_written_and_a_damaged_one_not_at_all() {
        let files: Stamps = (0..1000u64)
            .map(|n| {
                (
                    format!("c/ns-{n}/Role-r{n}.yaml"),
                    stamp(&format!("{n:064x}"), n),
                )
            })
            .chain([("ünïcode dir/x.yaml".to_owned(), stamp("a", 1))])
            .collect();
        let dirs: Stamps = ["", "c", "c/ns-1", "ünïcode dir"]
            .into_iter()
            .map(|d| (d.to_owned(), stamp("", 9)))
            .collect();
        let texts: Texts = [("c/ns-3/Role-r3.yaml".to_owned(), "ab".repeat(32))]
            .into_iter()
            .collect();
        let file = IndexFile {
            format: "f|1".to_owned(),
            dir: "/out\twith\nodd \"names\"".to_owned(),
            revision: Some("r\t1".to_owned()),
            generation: "g".to_owned(),
            files: files.clone(),
            dirs: dirs.clone(),
            texts: texts.clone(),
        };
        let bytes = file.encode();
        let back = IndexFile::decode(&bytes).expect("decodes");
        assert_eq!(back.format, file.format);
        assert_eq!(back.dir, file.dir);
        assert_eq!(back.revision, file.revision);
        assert_eq!(back.files, files);
        assert_eq!(back.dirs, dirs);
        assert_eq!(back.texts, texts);
        // A path that would break its line is left out, the rest kept.
        let mut odd = files.clone();
        odd.insert("a\tb.yaml".to_owned(), stamp("b", 2));
        odd.insert("a\nb.yaml".to_owned(), stamp("b", 3));
        let with_odd = IndexFile {
            files: odd,
            ..IndexFile::decode(&bytes).expect("decodes")
        };
        assert_eq!(
            IndexFile::decode(&with_odd.encode())
                .expect("decodes")
                .files,
            files
        );
        // Damage anywhere is no index: a cut line, a field more, a number that is not one.
        let text = String::from_utf8(bytes.clone()).expect("text");
        for cut in [1, 5, 40] {
            assert!(IndexFile::decode(&bytes[..bytes.len() - cut]).is_none());
        }
        let extra = text.replacen(".yaml\t", ".yaml\tx\t", 1);
        assert!(IndexFile::decode(extra.as_bytes()).is_none());
        let nan = text.replacen("\t7\t", "\tseven\t", 1);
        assert_ne!(nan, text);
        assert!(IndexFile::decode(nan.as_bytes()).is_none());
        assert!(IndexFile::decode(b"not an index").is_none());
        // A path that leaves the output (a hand-made or poisoned cache) is no index either: the
        // index says which files a build may remove.
        for outside in [
            "../x.yaml",
            "c/../../x.yaml",
            "/etc/x",
            "c//x.yaml",
            "./x",
            "../",
        ] {
            let line = format!("{outside}\t{}\t1\t7\t1700000001\t-3\n", "0".repeat(64));
            let hostile = format!("{text}{line}");
            assert!(IndexFile::decode(hostile.as_bytes()).is_none(), "{outside}");
        }
        assert!(IndexFile::decode(&[0xff, b'\n']).is_none());
        // An empty index is one.
        let empty = IndexFile {
            format: "f".to_owned(),
            dir: "d".to_owned(),
            revision: None,
            generation: String::new(),
            files: Stamps::default(),
            dirs: Stamps::default(),
            texts: Texts::default(),
        };
        assert!(IndexFile::decode(&empty.encode()).is_some_and(|f| f.files.is_empty()));
        // The directories first, then the files by directory and name (the files of one
        // directory side by side, as `OutIndex::intact` walks them).
        let text = String::from_utf8(file.encode()).expect("text");
        let paths: Vec<&str> = text
            .lines()
            .skip(1)
            .filter_map(|l| l.split('\t').next())
            .collect();
        let first_file = paths.iter().position(|p| !p.ends_with('/')).expect("files");
        assert!(paths[first_file..].iter().all(|p| !p.ends_with('/')));
        let keys: Vec<(&str, &str)> = paths[first_file..].iter().map(|p| split_path(p)).collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(keys.len(), files.len());
    }

    /// An overlay reads back as written, and a damaged one not at all.
    #[test]
    fn an_overlay_reads_back_as_written() {
        let overlay = Overlay {
            format: "f|1".to_owned(),
            generation: "g-1".to_owned(),
            revision: Some("r".to_owned()),
            dirs: vec![String::new(), "c".to_owned()],
            gone: vec!["c/ns/x.yaml".to_owned()],
            files: [("c/ns/y.yaml".to_owned(), stamp(&"0".repeat(64), 3))]
                .into_iter()
                .collect(),
            texts: [("c/ns/y.yaml".to_owned(), "cd".repeat(32))]
                .into_iter()
                .collect(),
        };
        let bytes = overlay.encode();
        let back = Overlay::decode(&bytes).expect("decodes");
        assert_eq!(
            (
                &back.format,
                &back.generation,
                &back.revision,
                &back.dirs,
                &back.gone
            ),
            (
                &overlay.format,
                &overlay.generation,
                &overlay.revision,
                &overlay.dirs,
                &overlay.gone
            )
        );
        assert_eq!((&back.files, &back.texts), (&overlay.files, &overlay.texts));
        assert!(Overlay::decode(&bytes[..bytes.len() - 2]).is_none());
        let text = String::from_utf8(bytes).expect("text");
        assert!(Overlay::decode(text.replace("cdcd", "zzzz").as_bytes()).is_none());
    }
}
