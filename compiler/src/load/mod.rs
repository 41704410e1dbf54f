//! Load: read a platform repository into an in-memory [`Snapshot`].
//!
//! This is the only stage that touches the file system (or, through another [`Source`], a git
//! object database). A source lists entries and reads bytes; [`load`] applies the rules every
//! source shares: which files belong to the platform, the size and count limits, UTF-8, and
//! refusing symbolic links that leave the repository. Problems with single files are
//! diagnostics (the rest of the repository still loads); a source that cannot be read at all is
//! a [`LoadError`].
//!
//! Which files belong to the platform is **one rule for every source** — a working tree
//! (`check`, `build`) and a git revision (`plan`, the agent) read the same files: hidden paths
//! are ignored, a directory holding a `.plinth-output` marker is build output (its files are
//! not read, and a note says so), and files below [`Limits::max_dir_depth`] directories are not
//! read (an error says so). Nothing is skipped silently.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub mod files;
pub mod git;

use crate::diag::{Code, Diagnostic, Diagnostics, Label, Pos, Span};

/// Limits that keep hostile repositories from exhausting memory or time.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest file read, in bytes.
    pub max_file_size: u64,
    /// Most files considered.
    pub max_files: usize,
    /// Deepest directory nesting walked.
    pub max_dir_depth: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_file_size: 8 * 1024 * 1024,
            max_files: 200_000,
            max_dir_depth: 32,
        }
    }
}

/// What a source found at a path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A regular file (possibly reached through a symlink that stays inside the repository).
    File { path: String, size: u64 },
    /// A symlink whose target lies outside the repository.
    EscapingSymlink {
        path: String,
        target: String,
        is_dir: bool,
    },
    /// A symlink whose target does not exist.
    BrokenSymlink { path: String, target: String },
    /// A name that is not valid UTF-8 or contains control characters.
    BadName { path: String },
    /// A directory whose files are not read, and why.
    Skipped { dir: String, why: Skip },
}

/// Why a directory's files are not read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// It holds a `.plinth-output` marker: `plinth build` wrote it.
    Output,
    /// It is nested deeper than [`Limits::max_dir_depth`].
    TooDeep,
}

/// The marker file `plinth build` writes into its output directory.
pub const OUTPUT_MARKER: &str = ".plinth-output";

/// System failures of a source: the repository itself cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The cause is part of the message, not a `source` (a chain would repeat it).
    #[error("cannot read repository `{path}`: {}", io_reason(error))]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("`{0}` is not a directory")]
    NotADirectory(PathBuf),
    #[error("{0}")]
    Other(String),
}

/// An I/O error in words (the platform's own are `it does not exist`, not `os error 2`).
fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "it does not exist".to_owned(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => e.to_string(),
    }
}

/// Where a platform repository comes from: a working tree, or (later) a git revision.
pub trait Source {
    /// Every entry under the platform root, hidden files and directories excluded.
    fn entries(&self, limits: &Limits) -> Result<Vec<Entry>, LoadError>;
    /// The bytes of a file listed by [`Source::entries`], at most `limit + 1` of them.
    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, std::io::Error>;
    /// [`Source::read`] of several files, in order (a source that can reads them in parallel).
    fn read_many(&self, paths: &[&str], limit: u64) -> Vec<Result<Vec<u8>, std::io::Error>> {
        paths.iter().map(|p| self.read(p, limit)).collect()
    }
    /// A short description for messages, e.g. the directory or `rev:path`.
    fn describe(&self) -> String;
}

/// File contents read before, by id (the cache's [`crate::cache::BlobPack`]): a git blob's
/// object id (git's own hash of its content, see [`git::GitSource::with_blobs`]) or a working
/// tree file's path and stamp ([`DirSource::with_texts`]). Two revisions of a platform share
/// nearly all their files, so a source that has them reads only the ones it has not seen; an
/// id changes with its content, so a content kept is never stale.
pub trait Blobs: Send + Sync {
    /// The content of blob `id` (at most `limit` bytes of it), when kept.
    fn blob(&self, id: &gix::oid, limit: usize) -> Option<Vec<u8>>;
    /// The size of blob `id`, when kept.
    fn size(&self, id: &gix::oid) -> Option<u64>;
    /// Keep the content of blob `id`, read from its source now.
    fn keep(&self, id: &gix::oid, bytes: &[u8]);
}

/// What kind of platform file a path is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FileRole {
    /// `*.yaml` / `*.yml` outside `templates/`: spec documents.
    Spec,
    /// Anything under `templates/`: App templates and their value schemas.
    Template,
    /// `*.rego` files: policies.
    Policy,
}

/// One file of a snapshot, valid UTF-8, BOM removed.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Relative to the platform root, `/`-separated.
    pub path: Arc<str>,
    pub role: FileRole,
    pub text: Arc<str>,
    /// The SHA-256 of `text`: what every cache key takes of the file.
    pub digest: [u8; 32],
}

impl SourceFile {
    /// A file of `text` (its digest computed).
    pub fn new(path: Arc<str>, role: FileRole, text: Arc<str>) -> SourceFile {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(text.as_bytes()).into();
        SourceFile {
            path,
            role,
            text,
            digest,
        }
    }
}

/// A platform repository in memory.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Sorted by path.
    pub files: Vec<SourceFile>,
}

impl Snapshot {
    pub fn get(&self, path: &str) -> Option<&SourceFile> {
        self.files
            .binary_search_by(|f| f.path.as_ref().cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }
    pub fn specs(&self) -> impl Iterator<Item = &SourceFile> {
        self.files.iter().filter(|f| f.role == FileRole::Spec)
    }
    pub fn with_role(&self, role: FileRole) -> impl Iterator<Item = &SourceFile> {
        self.files.iter().filter(move |f| f.role == role)
    }
}

/// Decide the role of a path, or `None` when plinth ignores the file.
pub fn classify(path: &str) -> Option<FileRole> {
    if path.starts_with("templates/") {
        return Some(FileRole::Template);
    }
    if path.ends_with(".yaml") || path.ends_with(".yml") {
        Some(FileRole::Spec)
    } else if path.ends_with(".rego") {
        Some(FileRole::Policy)
    } else {
        None
    }
}

/// Files of a snapshot (spec files and templates, by path) that differ from another
/// snapshot's: what a compile against a base asks of every spec and unit (a fast hasher: the
/// paths are the repository's own, looked up thousands of times).
pub type Changed = std::collections::HashSet<Arc<str>, foldhash::fast::RandomState>;

/// Read a source into a snapshot. File-level problems become diagnostics.
pub fn load(source: &dyn Source, limits: &Limits) -> Result<(Snapshot, Diagnostics), LoadError> {
    let mut diags = Diagnostics::new();
    let mut entries = source.entries(limits)?;
    entries.sort_by(|a, b| entry_path(a).cmp(entry_path(b)));
    let mut counted = 0usize;
    // The diagnostics so far and a file to read, in entry order.
    let mut steps: Vec<(Diagnostics, Option<ToRead>)> = Vec::with_capacity(entries.len());
    for entry in entries {
        match entry {
            Entry::Skipped { dir, why } => diags.push(skipped_dir(&dir, &why, limits)),
            Entry::BadName { path } => diags.push(
                Diagnostic::new(
                    Code::BadPath,
                    format!("file name `{path}` is not valid UTF-8 or has control characters"),
                )
                .at(Label::new(Span::file_start(Arc::from(path.as_str()))))
                .hint("rename the file using printable UTF-8 characters"),
            ),
            Entry::EscapingSymlink {
                path,
                target,
                is_dir,
            } => {
                // A directory link would bring in a whole foreign tree; a file link only matters
                // when plinth would read the file.
                if is_dir || classify(&path).is_some() {
                    diags.push(
                        Diagnostic::new(
                            Code::SymlinkEscapes,
                            format!("symbolic link `{path}` points outside the repository, to `{target}`"),
                        )
                        .at(Label::new(Span::file_start(Arc::from(path.as_str()))))
                        .hint("plinth only reads files inside the platform repository; copy the file in instead"),
                    )
                }
            }
            Entry::BrokenSymlink { path, target } => {
                if classify(&path).is_some() {
                    diags.push(
                        Diagnostic::new(
                            Code::UnreadableFile,
                            format!(
                                "symbolic link `{path}` points to `{target}`, which does not exist"
                            ),
                        )
                        .at(Label::new(Span::file_start(Arc::from(path.as_str()))))
                        .hint("remove the link or restore its target"),
                    )
                }
            }
            Entry::File { path, size } => {
                let Some(role) = classify(&path) else {
                    continue;
                };
                counted += 1;
                if counted > limits.max_files {
                    diags.push(
                        Diagnostic::new(
                            Code::TooManyFiles,
                            format!(
                                "the repository holds more than {} platform files",
                                limits.max_files
                            ),
                        )
                        .hint("raise the limit with `--max-files` if this is intended"),
                    );
                    break;
                }
                let file: Arc<str> = Arc::from(path.as_str());
                if size > limits.max_file_size {
                    diags.push(too_large(file, size, limits));
                    continue;
                }
                // Read below, all at once; its diagnostics keep this place.
                steps.push((std::mem::take(&mut diags), Some((path, file, role))));
            }
        }
    }
    steps.push((diags, None));
    let (mut files, diags) = read_steps(source, steps, limits);
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok((Snapshot { files }, diags))
}

/// A file [`load`] reads: its path, its name in spans, its role.
type ToRead = (String, Arc<str>, FileRole);

/// What reading one file gave: its text and digest, or why not.
enum FileRead {
    Text(Arc<str>, [u8; 32]),
    Failed(std::io::Error),
    TooLarge(u64),
    NotUtf8(Pos),
}

/// Read the files of `steps` (all at once, see [`Source::read_many`]) and decode and digest
/// them (in parallel), the diagnostics in step order.
fn read_steps(
    source: &dyn Source,
    steps: Vec<(Diagnostics, Option<ToRead>)>,
    limits: &Limits,
) -> (Vec<SourceFile>, Diagnostics) {
    use rayon::prelude::*;
    use sha2::Digest;
    let paths: Vec<&str> = steps
        .iter()
        .filter_map(|(_, f)| f.as_ref().map(|(p, ..)| p.as_str()))
        .collect();
    let mut files = Vec::with_capacity(paths.len());
    let read: Vec<FileRead> = source
        .read_many(&paths, limits.max_file_size)
        .into_par_iter()
        .map(|bytes| match bytes {
            Err(e) => FileRead::Failed(e),
            Ok(b) if b.len() as u64 > limits.max_file_size => FileRead::TooLarge(b.len() as u64),
            Ok(b) => match decode(&b) {
                Ok(text) => FileRead::Text(Arc::from(text), sha2::Sha256::digest(text).into()),
                Err(pos) => FileRead::NotUtf8(pos),
            },
        })
        .collect();
    let mut read = read.into_iter();
    let mut diags = Diagnostics::new();
    for (before, file) in steps {
        diags.extend(before);
        let Some((path, file, role)) = file else {
            continue;
        };
        match read.next() {
            Some(FileRead::Text(text, digest)) => files.push(SourceFile {
                path: file,
                role,
                text,
                digest,
            }),
            Some(FileRead::Failed(e)) => diags.push(
                Diagnostic::new(Code::UnreadableFile, format!("cannot read `{path}`: {e}"))
                    .at(Label::new(Span::file_start(file))),
            ),
            Some(FileRead::TooLarge(len)) => diags.push(too_large(file, len, limits)),
            Some(FileRead::NotUtf8(pos)) => diags.push(
                Diagnostic::new(Code::InvalidUtf8, format!("`{path}` is not valid UTF-8"))
                    .at(Label::new(Span::new(file, pos, pos)))
                    .hint("save the file as UTF-8"),
            ),
            None => {}
        }
    }
    (files, diags)
}

/// The warning for a directory the walk did not enter.
fn skipped_dir(dir: &str, why: &Skip, limits: &Limits) -> Diagnostic {
    match why {
                Skip::Output => Diagnostic::new(
                    Code::OutputSkipped,
                    format!("`{dir}` holds a `{OUTPUT_MARKER}` marker: it is plinth's build output, and its files are not read as specs"),
                )
                .at(Label::new(Span::file_start(Arc::from(dir))))
                .hint(format!("remove `{dir}{OUTPUT_MARKER}` if these files are specs")),
                Skip::TooDeep => Diagnostic::new(
                    Code::TooDeep,
                    format!(
                        "`{dir}` is nested deeper than {} directories: its files are not read",
                        limits.max_dir_depth
                    ),
                )
                .at(Label::new(Span::file_start(Arc::from(dir))))
                .hint("move the files up, or raise the limit with `--max-dir-depth`"),
    }
}

pub(crate) fn entry_path(e: &Entry) -> &str {
    match e {
        Entry::File { path, .. }
        | Entry::EscapingSymlink { path, .. }
        | Entry::BrokenSymlink { path, .. }
        | Entry::BadName { path } => path,
        Entry::Skipped { dir, .. } => dir,
    }
}

/// Apply the shared selection rule to the paths of a source that lists everything at once (a
/// git tree): files under an output directory or too deep become one [`Entry::Skipped`] per
/// directory. `paths` include hidden files (the marker is one); hidden paths are dropped.
pub fn select(paths: Vec<(String, Entry)>, limits: &Limits) -> Vec<Entry> {
    let markers: BTreeSet<String> = paths
        .iter()
        .filter_map(|(p, _)| {
            if p == OUTPUT_MARKER {
                Some(String::new())
            } else {
                p.strip_suffix(OUTPUT_MARKER)
                    .filter(|d| d.ends_with('/'))
                    .map(str::to_owned)
            }
        })
        .collect();
    let mut skipped: BTreeSet<(String, u8)> = BTreeSet::new();
    let mut out = Vec::new();
    for (p, entry) in paths {
        if p.split('/').any(|c| c.starts_with('.')) {
            continue;
        }
        if let Some(dir) = markers.iter().find(|d| p.starts_with(d.as_str())) {
            skipped.insert((dir.clone(), 0));
            continue;
        }
        if p.split('/').count() > limits.max_dir_depth {
            let parts: Vec<&str> = p.split('/').collect();
            let dir = parts[..limits.max_dir_depth].join("/") + "/";
            skipped.insert((dir, 1));
            continue;
        }
        out.push(entry);
    }
    out.extend(skipped.into_iter().map(|(dir, why)| Entry::Skipped {
        dir,
        why: if why == 0 {
            Skip::Output
        } else {
            Skip::TooDeep
        },
    }));
    out
}

fn too_large(file: Arc<str>, size: u64, limits: &Limits) -> Diagnostic {
    Diagnostic::new(
        Code::FileTooLarge,
        format!(
            "`{file}` is {} bytes, over the limit of {} bytes",
            size, limits.max_file_size
        ),
    )
    .at(Label::new(Span::file_start(file)))
    .hint("split the file, or raise the limit with `--max-file-size`")
}

/// Decode UTF-8, dropping a leading byte-order mark. On failure, the position of the first
/// invalid byte (column counted in characters).
pub fn decode(bytes: &[u8]) -> Result<&str, Pos> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => Ok(s),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            // Safe: `good` is exactly the valid prefix.
            let good = std::str::from_utf8(good).unwrap_or_default();
            let line = good.matches('\n').count() + 1;
            let col = good.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            Err(Pos::new(line as u32, col as u32))
        }
    }
}

/// A platform repository in a directory of the file system.
pub struct DirSource {
    root: PathBuf,
    /// File contents read before, by path and stamp (see [`DirSource::with_texts`]).
    texts: Option<Arc<dyn Blobs>>,
    /// Each regular file's stamp as the listing found it (only with `texts`).
    stamps: std::sync::Mutex<std::collections::HashMap<String, Stamp>>,
    /// How long before a read a file must have last changed for its content to be kept under
    /// its stamp.
    racy: std::time::Duration,
}

/// What a file's inode says of it: device, inode, size, modification and change times. Any
/// write, rename or `touch` changes the change time, which no user can set back; a content
/// kept under a stamp is the file's content while the stamp holds (as git's index trusts its
/// entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: m.dev(),
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        }
    }

    /// The stamp of `name` in the open directory `dir` (a link is not followed); the same as
    /// [`Stamp::of`] its metadata. (The stat fields' types differ between architectures, hence
    /// the conversions.)
    #[allow(clippy::useless_conversion)]
    fn at(dir: &rustix::fd::OwnedFd, name: &std::ffi::OsStr) -> std::io::Result<Stamp> {
        use rustix::fs::{AtFlags, statat};
        let st = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        Ok(Stamp {
            dev: st.st_dev.try_into().unwrap_or_default(),
            ino: st.st_ino.try_into().unwrap_or_default(),
            size: st.st_size.try_into().unwrap_or_default(),
            mtime: (
                st.st_mtime.try_into().unwrap_or_default(),
                st.st_mtime_nsec.try_into().unwrap_or_default(),
            ),
            ctime: (
                st.st_ctime.try_into().unwrap_or_default(),
                st.st_ctime_nsec.try_into().unwrap_or_default(),
            ),
        })
    }

    /// When the file last changed.
    fn changed(&self) -> std::time::SystemTime {
        let secs = u64::try_from(self.ctime.0).unwrap_or(0);
        let nanos = u32::try_from(self.ctime.1).unwrap_or(0);
        std::time::UNIX_EPOCH + std::time::Duration::new(secs, nanos)
    }

    /// The key of file `path`'s content under this stamp.
    fn key(&self, path: &str) -> Option<gix::ObjectId> {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(b"plinth-worktree-text-v1\0");
        h.update(path.as_bytes());
        h.update([0]);
        for n in [self.dev, self.ino, self.size] {
            h.update(n.to_le_bytes());
        }
        for n in [self.mtime.0, self.mtime.1, self.ctime.0, self.ctime.1] {
            h.update(n.to_le_bytes());
        }
        gix::ObjectId::try_from(&h.finalize()[..20]).ok()
    }
}

/// A file must have last changed this long before it is read for its content to be kept under
/// its stamp: a change within the same tick of the file system's clock would leave the stamp
/// as it was (the output index trusts its stamps by the same rule).
pub const RACY: std::time::Duration = std::time::Duration::from_secs(2);

impl DirSource {
    pub fn new(root: impl Into<PathBuf>) -> DirSource {
        DirSource {
            root: root.into(),
            texts: None,
            stamps: Default::default(),
            racy: RACY,
        }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Read a file from `texts` (if any) when its content was kept there under its path and
    /// current stamp, and keep there the content of each file read (when it last changed well
    /// before: [`RACY`]), so that a build of a tree where few files changed opens only those.
    pub fn with_texts<B: Blobs + 'static>(mut self, texts: Option<Arc<B>>) -> DirSource {
        self.texts = texts.map(|t| t as Arc<dyn Blobs>);
        self
    }

    /// [`DirSource::with_texts`] trusting stamps changed up to `racy` before the listing
    /// (tests).
    #[cfg(test)]
    fn racy(mut self, racy: std::time::Duration) -> DirSource {
        self.racy = racy;
        self
    }

    /// The stamp the listing found for `path`, when contents are kept and it had last changed
    /// well before ([`RACY`]).
    fn trusted_stamp(&self, path: &str) -> Option<Stamp> {
        self.stamps.lock().ok()?.get(path).copied()
    }
}

/// What a symbolic link at `abs` (`rel_path` in the repository) leads to: whether it is a
/// directory not visited yet, a file and its size; `None` when its target cannot be read; an
/// entry to report when it leaves the repository or its target does not exist.
fn follow(
    abs: &Path,
    canon_root: &Path,
    rel_path: String,
    visited: &mut BTreeSet<PathBuf>,
) -> Result<Option<(bool, bool, u64)>, Entry> {
    match std::fs::canonicalize(abs) {
        Ok(target) if target.starts_with(canon_root) => Ok(std::fs::metadata(&target)
            .ok()
            .map(|m| (m.is_dir() && visited.insert(target), m.is_file(), m.len()))),
        Ok(target) => Err(Entry::EscapingSymlink {
            path: rel_path,
            is_dir: std::fs::metadata(&target).is_ok_and(|m| m.is_dir()),
            target: target.display().to_string(),
        }),
        Err(_) => Err(Entry::BrokenSymlink {
            path: rel_path,
            target: std::fs::read_link(abs)
                .map(|t| t.display().to_string())
                .unwrap_or_default(),
        }),
    }
}

/// A file a walk found: where in its entries, its absolute path, and its directory (open, when
/// it could be opened).
type ToSize = (usize, PathBuf, Option<Arc<rustix::fd::OwnedFd>>);

/// The sizes of the files a walk found, one `stat` each (by name in its directory: the path
/// is not walked again for each), in parallel; and their stamps by path.
fn fill_sizes(
    entries: &mut [Entry],
    to_size: Vec<ToSize>,
) -> Result<Vec<(String, Stamp)>, LoadError> {
    use rayon::prelude::*;
    let stats: Vec<(usize, Stamp)> = to_size
        .into_par_iter()
        .map(|(at, abs, dir)| {
            let stamp = match (&dir, abs.file_name()) {
                (Some(dir), Some(name)) => Stamp::at(dir, name),
                _ => std::fs::symlink_metadata(&abs).map(|m| Stamp::of(&m)),
            };
            match stamp {
                Ok(s) => Ok((at, s)),
                Err(error) => Err(LoadError::Io { path: abs, error }),
            }
        })
        .collect::<Result<_, _>>()?;
    let mut stamps = Vec::with_capacity(stats.len());
    for (at, stamp) in stats {
        if let Entry::File { size, path } = &mut entries[at] {
            *size = stamp.size;
            stamps.push((path.clone(), stamp));
        }
    }
    Ok(stamps)
}

impl Source for DirSource {
    fn describe(&self) -> String {
        self.root.display().to_string()
    }

    fn entries(&self, limits: &Limits) -> Result<Vec<Entry>, LoadError> {
        let io = |error| LoadError::Io {
            path: self.root.clone(),
            error,
        };
        let meta = std::fs::metadata(&self.root).map_err(io)?;
        if !meta.is_dir() {
            return Err(LoadError::NotADirectory(self.root.clone()));
        }
        let canon_root = std::fs::canonicalize(&self.root).map_err(io)?;
        let mut out = Vec::new();
        let mut visited = BTreeSet::new();
        visited.insert(canon_root.clone());
        // (absolute dir, relative prefix, depth)
        let mut stack = vec![(self.root.clone(), String::new(), 0usize)];
        // Regular files found (where in `out`, absolute path, their directory): their sizes
        // are read at the end.
        let mut to_size: Vec<ToSize> = Vec::new();
        while let Some((dir, rel, depth)) = stack.pop() {
            let rd = std::fs::read_dir(&dir).map_err(|error| LoadError::Io {
                path: dir.clone(),
                error,
            })?;
            // Its files are looked at through it, not each by its whole path.
            let dir_fd = open_dir(&dir).map(Arc::new);
            let mut children = Vec::new();
            for ent in rd {
                let ent = ent.map_err(|error| LoadError::Io {
                    path: dir.clone(),
                    error,
                })?;
                // Each name taken once (not once per comparison of the sort).
                children.push((ent.file_name(), ent));
            }
            children.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (name, ent) in children {
                let Some(name) = name.to_str().map(str::to_owned) else {
                    out.push(Entry::BadName {
                        path: format!("{rel}{}", name.to_string_lossy()),
                    });
                    continue;
                };
                if name.starts_with('.') {
                    continue;
                }
                let rel_path = format!("{rel}{name}");
                if name.chars().any(char::is_control) {
                    out.push(Entry::BadName {
                        path: rel_path.escape_debug().to_string(),
                    });
                    continue;
                }
                let abs = ent.path();
                let ft = ent.file_type().map_err(|error| LoadError::Io {
                    path: abs.clone(),
                    error,
                })?;
                let (is_dir, is_file, size) = if ft.is_symlink() {
                    match follow(&abs, &canon_root, rel_path.clone(), &mut visited) {
                        Ok(Some(found)) => found,
                        Ok(None) => continue,
                        Err(entry) => {
                            out.push(entry);
                            continue;
                        }
                    }
                } else {
                    // A file's size is read below, for every file at once.
                    (ft.is_dir(), ft.is_file(), 0)
                };
                if is_dir {
                    // `plinth build` output (it holds a `.plinth-output` marker) is not input:
                    // the default `out/` may well sit inside the repository.
                    if abs.join(OUTPUT_MARKER).exists() {
                        out.push(Entry::Skipped {
                            dir: format!("{rel_path}/"),
                            why: Skip::Output,
                        });
                        continue;
                    }
                    if depth + 1 < limits.max_dir_depth {
                        stack.push((abs, format!("{rel_path}/"), depth + 1));
                    } else {
                        out.push(Entry::Skipped {
                            dir: format!("{rel_path}/"),
                            why: Skip::TooDeep,
                        });
                    }
                } else if is_file {
                    if !ft.is_symlink() {
                        to_size.push((out.len(), abs, dir_fd.clone()));
                    }
                    out.push(Entry::File {
                        path: rel_path,
                        size,
                    });
                }
                // Sockets, FIFOs and devices are never read: reading a FIFO would block.
            }
        }
        let stamps = fill_sizes(&mut out, to_size)?;
        if self.texts.is_some()
            && let Ok(mut kept) = self.stamps.lock()
        {
            // Only files that last changed well before now (so before they are read).
            let now = std::time::SystemTime::now();
            *kept = stamps
                .into_iter()
                .filter(|(_, s)| s.changed() + self.racy < now)
                .collect();
        }
        Ok(out)
    }

    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, std::io::Error> {
        let stamp = self.trusted_stamp(path);
        let key = stamp.and_then(|s| s.key(path));
        let cap = usize::try_from(limit)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        if let (Some(texts), Some(key)) = (&self.texts, &key)
            && let Some(text) = texts.blob(key, cap)
        {
            return Ok(text);
        }
        let f = std::fs::File::open(self.root.join(path))?;
        // Sized from the file (read to its end all the same: it may have grown), never past
        // the limit.
        let meta = f.metadata()?;
        let hint = meta.len().min(limit) as usize;
        let mut buf = Vec::with_capacity(hint + 1);
        (&f).take(limit + 1).read_to_end(&mut buf)?;
        // Kept only when the file is as listed, before and after the read, and whole.
        if let (Some(texts), Some(key), Some(stamp)) = (&self.texts, &key, stamp)
            && buf.len() as u64 <= limit
            && Stamp::of(&meta) == stamp
            && f.metadata().is_ok_and(|m| Stamp::of(&m) == stamp)
        {
            texts.keep(key, &buf);
        }
        Ok(buf)
    }

    fn read_many(&self, paths: &[&str], limit: u64) -> Vec<Result<Vec<u8>, std::io::Error>> {
        use rayon::prelude::*;
        paths.par_iter().map(|p| self.read(p, limit)).collect()
    }
}

/// A directory, open for looking at its files (`None` when it cannot be opened).
pub(crate) fn open_dir(dir: &Path) -> Option<rustix::fd::OwnedFd> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()
}

/// A source held in memory: for tests, generators and benchmarks.
#[derive(Debug, Clone, Default)]
pub struct MemSource {
    pub files: std::collections::BTreeMap<String, Vec<u8>>,
}

impl MemSource {
    pub fn new() -> MemSource {
        MemSource::default()
    }
    pub fn with(mut self, path: &str, text: impl Into<Vec<u8>>) -> MemSource {
        self.files.insert(path.to_owned(), text.into());
        self
    }
}

impl Source for MemSource {
    fn describe(&self) -> String {
        "<memory>".to_owned()
    }
    fn entries(&self, limits: &Limits) -> Result<Vec<Entry>, LoadError> {
        Ok(select(
            self.files
                .iter()
                .map(|(p, b)| {
                    (
                        p.clone(),
                        Entry::File {
                            path: p.clone(),
                            size: b.len() as u64,
                        },
                    )
                })
                .collect(),
            limits,
        ))
    }
    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, std::io::Error> {
        let b = self
            .files
            .get(path)
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
        Ok(b[..b.len().min(limit as usize + 1)].to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Contents kept by key, counting what was kept and what was served.
    #[derive(Default)]
    struct Kept {
        map: std::sync::Mutex<std::collections::HashMap<gix::ObjectId, Vec<u8>>>,
        kept: std::sync::atomic::AtomicUsize,
        served: std::sync::atomic::AtomicUsize,
    }

    impl Blobs for Kept {
        fn blob(&self, id: &gix::oid, limit: usize) -> Option<Vec<u8>> {
            let map = self.map.lock().ok()?;
            let data = map.get(id)?;
            self.served
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Some(data[..data.len().min(limit)].to_vec())
        }
        fn size(&self, id: &gix::oid) -> Option<u64> {
            Some(self.map.lock().ok()?.get(id)?.len() as u64)
        }
        fn keep(&self, id: &gix::oid, bytes: &[u8]) {
            self.kept.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if let Ok(mut m) = self.map.lock() {
                m.insert(id.to_owned(), bytes.to_vec());
            }
        }
    }

    #[test]
    #[allow(clippy::unwrap_used)]
    fn a_file_whose_stamp_holds_is_read_from_the_kept_texts_and_a_changed_one_from_disk() {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("projects")).unwrap();
        std::fs::write(root.join("plinth.yaml"), "kind: Platform\n").unwrap();
        std::fs::write(root.join("projects/b.yaml"), "kind: Project # b\n").unwrap();
        let kept = Arc::new(Kept::default());
        let read = |racy: std::time::Duration| -> Vec<(String, String)> {
            let src = DirSource::new(root)
                .with_texts(Some(kept.clone()))
                .racy(racy);
            let (snap, _) = load(&src, &Limits::default()).unwrap();
            snap.files
                .iter()
                .map(|f| (f.path.to_string(), f.text.to_string()))
                .collect()
        };
        let now = std::time::Duration::ZERO;
        let first = read(now);
        assert_eq!(first.len(), 2);
        assert_eq!((kept.kept.load(Relaxed), kept.served.load(Relaxed)), (2, 0));
        assert_eq!(read(now), first);
        assert_eq!((kept.kept.load(Relaxed), kept.served.load(Relaxed)), (2, 2));
        // The same size, other bytes: a new stamp, so read from the file (and kept anew).
        std::thread::sleep(std::time::Duration::from_millis(50));
        std::fs::write(root.join("projects/b.yaml"), "kind: Project # B\n").unwrap();
        let third = read(now);
        assert_eq!(
            third[1],
            ("projects/b.yaml".into(), "kind: Project # B\n".into())
        );
        assert_eq!((kept.kept.load(Relaxed), kept.served.load(Relaxed)), (3, 3));
        // A file changed within the racy window is neither kept nor served.
        std::fs::write(root.join("projects/b.yaml"), "kind: Project # c\n").unwrap();
        let fourth = read(RACY);
        assert_eq!(fourth[1].1, "kind: Project # c\n");
        assert_eq!(kept.kept.load(Relaxed), 3);
        assert_eq!(
            read(RACY)[1].1,
            "kind: Project # c\n",
            "read from the file again"
        );
        assert_eq!(kept.kept.load(Relaxed), 3);
    }

    #[test]
    fn decode_reports_the_first_bad_byte() {
        assert_eq!(decode(b"a: b\nc: \xff"), Err(Pos::new(2, 4)));
        assert_eq!(decode(b"\xEF\xBB\xBFkind: x"), Ok("kind: x"));
        let mut bytes = "é: \u{1F600}\n".as_bytes().to_vec();
        bytes.push(0xC3);
        assert_eq!(decode(&bytes).map_err(|p| p.line), Err(2));
    }

    #[test]
    fn classification() {
        assert_eq!(classify("projects/er.yaml"), Some(FileRole::Spec));
        assert_eq!(classify("a.yml"), Some(FileRole::Spec));
        assert_eq!(
            classify("templates/jupyter.yaml.j2"),
            Some(FileRole::Template)
        );
        assert_eq!(classify("templates/x.yaml"), Some(FileRole::Template));
        assert_eq!(classify("policies/gpu.rego"), Some(FileRole::Policy));
        assert_eq!(classify("README.md"), None);
    }

    #[test]
    fn memory_source_skips_hidden_paths_and_sorts() {
        let src = MemSource::new()
            .with("b.yaml", "x: 1")
            .with(".git/config.yaml", "x: 1")
            .with("a/.h/c.yaml", "")
            .with("a.yaml", "y: 2");
        let (snap, diags) = load(&src, &Limits::default()).expect("loads");
        assert!(diags.is_empty());
        let paths: Vec<&str> = snap.files.iter().map(|f| f.path.as_ref()).collect();
        assert_eq!(paths, ["a.yaml", "b.yaml"]);
    }

    #[test]
    fn oversized_and_invalid_files_are_diagnostics() {
        let limits = Limits {
            max_file_size: 8,
            ..Limits::default()
        };
        let src = MemSource::new()
            .with("big.yaml", "0123456789")
            .with("bad.yaml", b"a\xff".to_vec())
            .with("ok.yaml", "a: 1");
        let (snap, diags) = load(&src, &limits).expect("loads");
        assert_eq!(snap.files.len(), 1);
        let codes: Vec<Code> = diags.into_sorted().iter().map(|d| d.code).collect();
        assert_eq!(codes, [Code::InvalidUtf8, Code::FileTooLarge]);
    }
}
