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
                .files
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
const INDEX_FORMAT: &str = "plinth-out-index-v2";

/// Entries changed less than this before the index was written are not trusted (a file's
/// change time has a coarse clock: a later write within the same tick would not change it).
const RACY: std::time::Duration = crate::load::RACY;

/// Stale entries an index may keep without being written again (see [`OutIndex::record`]).
const LAZY: usize = 64;

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
    files: Stamps,
    /// Directories (by relative path, `""` the top) whose entries were exactly the recorded
    /// files and directories when stamped (id empty; see [`OutIndex::vouches_dir`]).
    dirs: Stamps,
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

/// The file of an index: a header line — its format and the directory it describes, as a
/// JSON array — then a line per file, `path\tid\tlen\tino\tctime-seconds\tctime-nanoseconds`
/// (read in parallel: a hundred thousand lines at scale). A path holding a tab or a line break
/// (which no object's file has) is left out: that file is compared by content.
struct IndexFile {
    format: String,
    dir: String,
    files: Stamps,
    /// Lines whose path ends with `/` (`/` alone: the top).
    dirs: Stamps,
}

impl IndexFile {
    fn encode(&self) -> Vec<u8> {
        use std::io::Write;
        let mut out = serde_json::to_vec(&(&self.format, &self.dir)).unwrap_or_default();
        out.push(b'\n');
        let dirs = self.dirs.iter().map(|(d, s)| (format!("{d}/"), s));
        for (path, s) in self.files.iter().map(|(p, s)| (p.clone(), s)).chain(dirs) {
            if path.contains(['\t', '\n']) {
                continue;
            }
            // Writing into a vector cannot fail.
            let _ = writeln!(
                out,
                "{path}\t{}\t{}\t{}\t{}\t{}",
                s.id, s.len, s.ino, s.ctime.0, s.ctime.1
            );
        }
        out
    }

    /// The index in `bytes`; `None` when they are not one (all or nothing: a damaged index
    /// only costs time).
    fn decode(bytes: &[u8]) -> Option<IndexFile> {
        let (head, parsed) = crate::cache::parse_lines(bytes, Stamp::parse_line)?;
        let (format, dir): (String, String) = serde_json::from_str(head).ok()?;
        let mut files = Stamps::with_capacity_and_hasher(parsed.len(), Default::default());
        let mut dirs = Stamps::default();
        for (path, stamp) in parsed {
            match path.strip_suffix('/') {
                Some(d) => dirs.insert(d.to_owned(), stamp),
                None => files.insert(path, stamp),
            };
        }
        Some(IndexFile {
            format,
            dir,
            files,
            dirs,
        })
    }
}

/// Files and their stamps: a hundred thousand paths looked up one by one (a fast hasher; the
/// index is this user's own file).
type Stamps = std::collections::HashMap<String, Stamp, foldhash::fast::RandomState>;

impl Stamp {
    /// A file's line of an index file ([`IndexFile`]).
    fn parse_line(line: &str) -> Option<(String, Stamp)> {
        let mut f = line.split('\t');
        let mut next = || f.next();
        let path = next()?.to_owned();
        let id = next()?.to_owned();
        let stamp = Stamp {
            id,
            len: next()?.parse().ok()?,
            ino: next()?.parse().ok()?,
            ctime: (next()?.parse().ok()?, next()?.parse().ok()?),
        };
        // Paths inside the output only (an index names what a build may remove): no absolute
        // path, no `..` or `.` and no empty component; `/` alone is the output's own directory.
        let inner = path.strip_suffix('/').unwrap_or(&path);
        let inside = (inner.is_empty() && path == "/")
            || inner.split('/').all(|c| !matches!(c, "" | "." | ".."));
        (inside && next().is_none()).then_some((path, stamp))
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

    /// When the file last changed.
    fn changed(&self) -> std::time::SystemTime {
        let secs = u64::try_from(self.ctime.0).unwrap_or(0);
        let nanos = u32::try_from(self.ctime.1).unwrap_or(0);
        std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos)
    }
}

impl OutIndex {
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
        let name = crate::output::sha256_hex(abs.to_string_lossy().as_bytes());
        let path = cache.join("outputs").join(format!("{name}.index"));
        let format = format!("{INDEX_FORMAT}|{}", crate::cache::fingerprint());
        let read = std::fs::read(&path)
            .ok()
            .and_then(|b| IndexFile::decode(&b))
            .filter(|f| f.format == format && f.dir == abs.to_string_lossy());
        let written = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
        let (files, dirs) = read.map(|f| (f.files, f.dirs)).unwrap_or_default();
        OutIndex {
            path: Some(path),
            dir: dir.to_path_buf(),
            files,
            dirs,
            written,
            root,
            asked: Default::default(),
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

    /// Whether an entry was recorded well after its file last changed (see [`RACY`]).
    fn trusted(&self, stamp: &Stamp) -> bool {
        self.written.is_some_and(|w| stamp.changed() + RACY < w)
    }

    /// Whether the file `path` still holds what its trusted entry `stamp` recorded.
    fn vouches(&self, path: &str, stamp: &Stamp) -> bool {
        self.trusted(stamp) && self.stamp(&stamp.id, path).as_ref() == Some(stamp)
    }

    /// Whether the directory `rel` holds what was recorded (its files in the index and its
    /// recorded subdirectories, the marker at the top), without reading it: its trusted
    /// stamp is unchanged — adding, removing or renaming an entry changes a directory's
    /// change time, which no user can set back. (What a file holds is its own stamp's
    /// business.)
    fn vouches_dir(&self, rel: &str) -> bool {
        self.dirs.get(rel).is_some_and(|stamp| {
            self.trusted(stamp)
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
        self.files
            .get(path)
            .is_some_and(|stamp| stamp.id != id && self.vouches(path, stamp))
    }

    /// Whether the file `path` (relative to the directory) is known to hold content `id`.
    pub(super) fn known(&self, path: &str, id: &str) -> bool {
        let recorded = self.files.get(path);
        if recorded.is_some() {
            self.asked
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        recorded.is_some_and(|stamp| stamp.id == id && self.vouches(path, stamp))
    }

    /// Whether every recorded file was asked about by [`OutIndex::known`] (once each: every
    /// file of a build is), so none of them is to be removed.
    fn all_asked(&self) -> bool {
        self.asked.load(std::sync::atomic::Ordering::Relaxed) == self.files.len()
    }

    /// Record what the directory holds now (`ids`: every file and its content id) and keep
    /// the index. Unchanged entries are kept as they are; new or changed files are stamped
    /// now. An index that cannot be written only costs time.
    /// `rendered`: the files rendered in this run — every other one is a file
    /// [`OutIndex::known`] vouched for (not stamped again); `None`: none was vouched for.
    pub(super) fn record(
        mut self,
        ids: &std::collections::BTreeMap<String, String>,
        rendered: Option<&crate::emit::Tree>,
    ) {
        use rayon::prelude::*;
        let Some(path) = self.path.take() else {
            return;
        };
        let old = std::mem::take(&mut self.files);
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
                    Some(s) => was != Some(s) || !self.trusted(s),
                    None => was.is_some(),
                });
            }
            stale += old.len().saturating_sub(recorded);
            if stale <= LAZY.max(ids.len() / 100) {
                // A hundred thousand entries are freed on a thread nothing waits for.
                std::thread::spawn(move || drop((old, self)));
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
                    return (None, true, !self.trusted(s));
                }
                let stamp = self.stamp(id, p);
                let stale = match &stamp {
                    Some(s) => was != Some(s) || !self.trusted(s),
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
        if !old.is_empty() && stale <= LAZY.max(ids.len() / 100) {
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
        let abs = std::path::absolute(&self.dir).unwrap_or_else(|_| self.dir.clone());
        let file = IndexFile {
            format: format!("{INDEX_FORMAT}|{}", crate::cache::fingerprint()),
            dir: abs.to_string_lossy().into_owned(),
            files,
            dirs,
        };
        let _ = write_index(&path, &file);
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
        // Per directory, the names it should hold.
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

/// Write an index beside and rename it into place.
fn write_index(path: &std::path::Path, file: &IndexFile) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir)?;
    let tmp = path.with_extension(format!("index.{}.tmp", std::process::id()));
    std::fs::write(&tmp, file.encode())?;
    std::fs::rename(&tmp, path)?;
    // The index of plinth before this format (a JSON document) is not read any more.
    let _ = std::fs::remove_file(path.with_extension("json"));
    Ok(())
}

/// A directory, open for looking at its files (`None` when it cannot be opened).
fn open_dir(dir: &std::path::Path) -> Option<rustix::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
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
        let file = IndexFile {
            format: "f|1".to_owned(),
            dir: "/out\twith\nodd \"names\"".to_owned(),
            files: files.clone(),
            dirs: dirs.clone(),
        };
        let bytes = file.encode();
        let back = IndexFile::decode(&bytes).expect("decodes");
        assert_eq!(back.format, file.format);
        assert_eq!(back.dir, file.dir);
        assert_eq!(back.files, files);
        assert_eq!(back.dirs, dirs);
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
            files: Stamps::default(),
            dirs: Stamps::default(),
        };
        assert!(IndexFile::decode(&empty.encode()).is_some_and(|f| f.files.is_empty()));
    }
}
