//! Git as a source: a platform repository at any revision, read straight from the object
//! database (no checkout), and the history facts plans and logs need (commits between two
//! revisions, which of them touched a file).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gix::ObjectId;
use gix::bstr::ByteSlice;

use super::{Blobs, Entry, Limits, LoadError, Source};

/// System failures reading git.
#[derive(Debug, thiserror::Error)]
pub enum GitError {
    #[error("`{0}` is not inside a git repository")]
    NotARepository(PathBuf),
    #[error("cannot resolve revision `{rev}`: {message}")]
    BadRevision { rev: String, message: String },
    #[error("`{path}` does not exist at revision `{rev}`")]
    MissingPath { rev: String, path: String },
    #[error("`{path}` at revision `{rev}` is not a directory")]
    NotATree { rev: String, path: String },
    #[error("git: {0}")]
    Other(String),
}

fn other(e: impl std::fmt::Display) -> GitError {
    GitError::Other(e.to_string())
}

/// A commit, as plans and logs show it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CommitInfo {
    pub id: String,
    pub short: String,
    pub author: String,
    pub email: String,
    /// Author time, seconds since the epoch.
    pub time: i64,
    /// `YYYY-MM-DD`.
    pub date: String,
    pub summary: String,
    pub parents: Vec<String>,
}

/// An open repository.
pub struct GitRepo {
    repo: gix::Repository,
}

impl std::fmt::Debug for GitRepo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GitRepo")
            .field("git_dir", &self.repo.git_dir())
            .finish()
    }
}

/// Bytes of objects a [`History`] keeps decoded.
const HISTORY_CACHE: usize = 32 << 20;

/// See [`GitRepo::history`].
pub struct History {
    repo: gix::Repository,
}

impl History {
    /// Whether a commit changed `path` relative to its first parent (or added it, for a root
    /// commit).
    pub fn touched(&self, commit: &CommitInfo, path: &str) -> Result<bool, GitError> {
        touched(&self.repo, commit, path)
    }
}

/// Whether `commit` changed `path` relative to its first parent: down the path one directory
/// at a time, stopping where both name the same object (nothing below it changed: most
/// commits are told apart at the top, without reading the large directories).
fn touched(repo: &gix::Repository, commit: &CommitInfo, path: &str) -> Result<bool, GitError> {
    let tree_of = |hex: &str| -> Result<ObjectId, GitError> {
        let id = ObjectId::from_hex(hex.as_bytes()).map_err(other)?;
        let c = repo
            .find_object(id)
            .map_err(other)?
            .try_into_commit()
            .map_err(other)?;
        Ok(c.tree_id().map_err(other)?.detach())
    };
    // The entry `name` of the tree `id` (`None`: no tree there, or no such entry).
    let entry = |id: Option<ObjectId>, name: &str| -> Result<Option<ObjectId>, GitError> {
        let Some(id) = id else {
            return Ok(None);
        };
        let Ok(tree) = repo.find_object(id).map_err(other)?.try_into_tree() else {
            return Ok(None);
        };
        Ok(tree.find_entry(name).map(|e| e.object_id()))
    };
    let mut here = Some(tree_of(&commit.id)?);
    let mut before = match commit.parents.first() {
        Some(p) => Some(tree_of(p)?),
        None => None,
    };
    for name in path.split('/').filter(|c| !c.is_empty()) {
        if here == before {
            return Ok(false);
        }
        here = entry(here, name)?;
        before = entry(before, name)?;
    }
    Ok(here != before)
}

impl GitRepo {
    /// The repository holding `dir` (which may be a subdirectory).
    pub fn discover(dir: &Path) -> Result<GitRepo, GitError> {
        let repo = gix::discover(dir).map_err(|_| GitError::NotARepository(dir.to_path_buf()))?;
        Ok(GitRepo { repo })
    }

    /// The repository at `dir` (no discovery upwards), reading neither the system's, the
    /// user's nor the environment's git configuration: for a mirror the caller owns.
    pub fn open_isolated(dir: &Path) -> Result<GitRepo, GitError> {
        let repo = gix::open_opts(dir, gix::open::Options::isolated())
            .map_err(|_| GitError::NotARepository(dir.to_path_buf()))?;
        Ok(GitRepo { repo })
    }

    /// The `.git` directory (where plinth keeps its plan cache).
    pub fn git_dir(&self) -> &Path {
        self.repo.git_dir()
    }

    /// The working tree's root, if the repository has one.
    pub fn workdir(&self) -> Option<&Path> {
        self.repo.workdir()
    }

    /// `dir` relative to the working tree root, `/`-separated (`""` for the root itself).
    pub fn relative(&self, dir: &Path) -> Option<String> {
        let root = std::fs::canonicalize(self.workdir()?).ok()?;
        let dir = std::fs::canonicalize(dir).ok()?;
        let rel = dir.strip_prefix(&root).ok()?;
        Some(
            rel.components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect::<Vec<_>>()
                .join("/"),
        )
    }

    /// The commits whose parents this shallow clone lacks (empty when the history is whole).
    pub fn shallow_boundary(&self) -> Vec<ObjectId> {
        match self.repo.shallow_commits() {
            Ok(Some(list)) => list.iter().copied().collect(),
            _ => Vec::new(),
        }
    }

    /// Whether the object database holds this object (a shallow clone lacks what lies beyond
    /// its boundary).
    pub fn has(&self, id: &str) -> bool {
        ObjectId::from_hex(id.as_bytes()).is_ok_and(|id| self.repo.has_object(id))
    }

    /// Why `rev` names no commit here, in the user's terms (the library's own message names
    /// its internals): a shallow clone, a remote branch not fetched, or a revision beyond the
    /// first commit.
    fn unknown_revision(&self, rev: &str) -> GitError {
        let boundary = self.shallow_boundary();
        let message = if !boundary.is_empty() {
            format!(
                "it is not in this shallow clone (its history is cut at {}); fetch the whole \
                 history: `fetch-depth: 0` with `actions/checkout`, `GIT_DEPTH: 0` in GitLab CI, \
                 or `git fetch --unshallow`",
                boundary
                    .iter()
                    .map(|id| format!("`{}`", &id.to_string()[..7]))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        } else if rev.contains(['~', '^']) {
            "it reaches beyond the repository's first commit, or names no commit; \
             `git log --oneline` lists the history"
                .to_owned()
        } else if let Some((remote, branch)) = rev.split_once('/')
            && self
                .repo
                .remote_names()
                .iter()
                .any(|r| **r == remote.as_bytes())
        {
            format!(
                "no such branch or tag in this clone; fetch it first (`git fetch {remote} {branch}`)"
            )
        } else {
            "no branch, tag or commit of this repository has that name; `git branch -a` and \
             `git log --oneline` list them"
                .to_owned()
        };
        GitError::BadRevision {
            rev: rev.to_owned(),
            message,
        }
    }

    /// Resolve any revision gix understands (`HEAD~1`, `main`, a sha, `v1.2^{commit}`).
    pub fn resolve(&self, rev: &str) -> Result<ObjectId, GitError> {
        let id = self
            .repo
            .rev_parse_single(rev)
            .map_err(|_| self.unknown_revision(rev))?;
        let commit =
            id.object()
                .map_err(other)?
                .peel_to_commit()
                .map_err(|e| GitError::BadRevision {
                    rev: rev.to_owned(),
                    message: e.to_string(),
                })?;
        Ok(commit.id)
    }

    /// Facts about a commit.
    pub fn commit(&self, id: ObjectId) -> Result<CommitInfo, GitError> {
        let c = self
            .repo
            .find_object(id)
            .map_err(other)?
            .try_into_commit()
            .map_err(other)?;
        let author = c.author().map_err(other)?;
        let time = author.time().map(|t| t.seconds).unwrap_or(0);
        let summary = c
            .message()
            .map_err(other)?
            .summary()
            .to_str_lossy()
            .into_owned();
        let hex = id.to_string();
        Ok(CommitInfo {
            short: hex[..7].to_owned(),
            id: hex,
            author: author.name.to_str_lossy().into_owned(),
            email: author.email.to_str_lossy().into_owned(),
            time,
            date: date_of(time),
            summary,
            parents: c.parent_ids().map(|p| p.to_string()).collect(),
        })
    }

    /// Commits reachable from `head` but not from `base`, newest first.
    pub fn between(
        &self,
        base: Option<ObjectId>,
        head: ObjectId,
    ) -> Result<Vec<CommitInfo>, GitError> {
        let walk = self
            .repo
            .rev_walk([head])
            .sorting(gix::revision::walk::Sorting::ByCommitTime(
                Default::default(),
            ));
        let walk = match base {
            Some(b) => walk.with_hidden([b]),
            None => walk,
        };
        let mut out = Vec::new();
        for info in walk.all().map_err(other)? {
            let info = info.map_err(other)?;
            out.push(self.commit(info.id)?);
        }
        Ok(out)
    }

    /// The blob id at `path` in a commit (`None` when absent).
    pub fn blob_at(&self, commit: ObjectId, path: &str) -> Result<Option<ObjectId>, GitError> {
        let c = self
            .repo
            .find_object(commit)
            .map_err(other)?
            .try_into_commit()
            .map_err(other)?;
        let tree = c.tree().map_err(other)?;
        Ok(tree
            .lookup_entry_by_path(path)
            .map_err(other)?
            .map(|e| e.object_id()))
    }

    /// A handle for asking which commits touched which paths, many times: its own handle on
    /// the repository, caching the objects it reads (a commit's trees are its child's parent's,
    /// and a platform's large directories are read for every commit touching them).
    pub fn history(&self) -> History {
        let mut repo = self.repo.clone();
        repo.object_cache_size_if_unset(HISTORY_CACHE);
        History { repo }
    }

    /// The id of the platform's tree at `path` (relative to the repository root) in a commit,
    /// without listing it (see [`GitSource::tree_id`]).
    pub fn tree_id(&self, commit: ObjectId, path: &str) -> Result<ObjectId, GitError> {
        self.platform_tree(commit, path).map(|t| t.id)
    }

    /// The tree at `path` in a commit.
    fn platform_tree(&self, commit: ObjectId, path: &str) -> Result<gix::Tree<'_>, GitError> {
        let rev = commit.to_string();
        let c = self
            .repo
            .find_object(commit)
            .map_err(other)?
            .try_into_commit()
            .map_err(other)?;
        let root = c.tree().map_err(other)?;
        let path = path.trim_matches('/');
        let tree = if path.is_empty() || path == "." {
            root
        } else {
            let entry = root
                .lookup_entry_by_path(path)
                .map_err(other)?
                .ok_or_else(|| GitError::MissingPath {
                    rev: rev.clone(),
                    path: path.to_owned(),
                })?;
            if !entry.mode().is_tree() {
                return Err(GitError::NotATree {
                    rev,
                    path: path.to_owned(),
                });
            }
            entry.object().map_err(other)?.into_tree()
        };
        Ok(tree)
    }

    /// The platform at `path` (relative to the repository root) in a commit.
    pub fn source(&self, commit: ObjectId, path: &str) -> Result<GitSource, GitError> {
        let rev = commit.to_string();
        let path = path.trim_matches('/');
        let tree = self.platform_tree(commit, path)?;
        let tree_id = tree.id;
        let mut files = BTreeMap::new();
        let mut links = BTreeMap::new();
        let mut markers = Vec::new();
        for e in tree.traverse().breadthfirst.files().map_err(other)? {
            let p = e.filepath.to_str_lossy().into_owned();
            let marker = p
                .strip_suffix(super::OUTPUT_MARKER)
                .is_some_and(|dir| dir.is_empty() || dir.ends_with('/'));
            if marker {
                markers.push(p);
                continue;
            }
            if p.split('/').any(|c| c.starts_with('.')) {
                continue;
            }
            if e.mode.is_link() {
                links.insert(p, e.oid);
            } else if e.mode.is_blob() {
                files.insert(p, e.oid);
            }
        }
        let mut entries = Vec::new();
        let mut aliases = BTreeMap::new();
        for (p, oid) in links {
            let target = self
                .repo
                .find_object(oid)
                .map_err(other)?
                .data
                .to_str_lossy()
                .into_owned();
            match resolve_link(&p, &target) {
                Some(t) if files.contains_key(&t) => {
                    aliases.insert(p, files[&t]);
                }
                Some(_) => entries.push(Entry::BrokenSymlink { path: p, target }),
                None => entries.push(Entry::EscapingSymlink {
                    path: p,
                    target,
                    is_dir: false,
                }),
            }
        }
        files.extend(aliases);
        Ok(GitSource {
            repo: self.repo.clone(),
            blobs: None,
            files,
            markers,
            refused: entries,
            describe: format!("{}:{path}", &rev[..7]),
            tree: tree_id,
        })
    }
}

/// A symlink's target inside the platform tree (`None` when it leaves it or is absolute).
fn resolve_link(link: &str, target: &str) -> Option<String> {
    if target.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = link.split('/').collect();
    parts.pop();
    for c in target.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            c => parts.push(c),
        }
    }
    Some(parts.join("/"))
}

/// `YYYY-MM-DD` of a UNIX time (UTC).
pub fn date_of(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}")
}

/// A platform tree at a revision.
pub struct GitSource {
    repo: gix::Repository,
    /// Blob contents read before (see [`GitSource::with_blobs`]).
    blobs: Option<std::sync::Arc<dyn Blobs>>,
    files: BTreeMap<String, ObjectId>,
    /// `.plinth-output` markers of the tree (output directories).
    markers: Vec<String>,
    refused: Vec<Entry>,
    describe: String,
    /// The id of the platform's tree: every byte below it.
    tree: ObjectId,
}

impl GitSource {
    /// The id of the platform's tree (git's hash of every file below it, names and modes
    /// included): equal ids, equal platforms.
    pub fn tree_id(&self) -> ObjectId {
        self.tree
    }

    /// Read blobs from `blobs` (if any) when it has them, and keep there the ones read from
    /// git.
    pub fn with_blobs<B: Blobs + 'static>(mut self, blobs: Option<std::sync::Arc<B>>) -> GitSource {
        self.blobs = blobs.map(|b| b as std::sync::Arc<dyn Blobs>);
        self
    }
}

/// The blob at `path` of `files`, at most `limit + 1` bytes of it: from `blobs` when kept
/// there, else read from git (and kept).
fn read_blob(
    repo: &gix::Repository,
    (files, blobs): (&BTreeMap<String, ObjectId>, Option<&dyn Blobs>),
    path: &str,
    limit: u64,
) -> Result<Vec<u8>, std::io::Error> {
    let oid = files
        .get(path)
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotFound))?;
    let limit = usize::try_from(limit)
        .unwrap_or(usize::MAX)
        .saturating_add(1);
    let cut = |data: &[u8]| data[..data.len().min(limit)].to_vec();
    if let Some(data) = blobs.and_then(|b| b.blob(oid, limit)) {
        return Ok(data);
    }
    let obj = repo.find_object(*oid).map_err(std::io::Error::other)?;
    if let Some(b) = blobs {
        b.keep(oid, &obj.data);
    }
    Ok(cut(&obj.data))
}

impl GitSource {
    /// `f` over `items` on every core, in order, each thread with its own handle on the
    /// repository (a handle is not shared between threads).
    fn in_parallel<T: Sync, R: Send>(
        &self,
        items: &[T],
        f: impl Fn(&gix::Repository, &T) -> R + Sync,
    ) -> Vec<R> {
        use rayon::prelude::*;
        // Enough per piece that a handle (its caches) is worth making.
        const PIECE: usize = 512;
        if items.len() <= PIECE {
            return items.iter().map(|x| f(&self.repo, x)).collect();
        }
        let shared = self.repo.clone().into_sync();
        items
            .par_chunks(PIECE)
            .flat_map_iter(|piece| {
                let repo = shared.to_thread_local();
                piece.iter().map(|x| f(&repo, x)).collect::<Vec<_>>()
            })
            .collect()
    }
}

impl Source for GitSource {
    fn entries(&self, limits: &Limits) -> Result<Vec<Entry>, LoadError> {
        // The same selection as a working tree (output directories, depth): `load::select`.
        let mut paths: Vec<(String, Entry)> = self
            .refused
            .iter()
            .map(|e| (super::entry_path(e).to_owned(), e.clone()))
            .collect();
        for m in &self.markers {
            paths.push((
                m.clone(),
                Entry::File {
                    path: m.clone(),
                    size: 0,
                },
            ));
        }
        let files: Vec<(&String, &ObjectId)> = self.files.iter().collect();
        let blobs = self.blobs.as_deref();
        let sizes = self.in_parallel(&files, |repo, (_, oid)| {
            blobs
                .and_then(|b| b.size(oid))
                .unwrap_or_else(|| repo.find_header(**oid).map(|h| h.size()).unwrap_or(0))
        });
        for ((p, _), size) in files.into_iter().zip(sizes) {
            paths.push((
                p.clone(),
                Entry::File {
                    path: p.clone(),
                    size,
                },
            ));
        }
        Ok(super::select(paths, limits))
    }

    fn read(&self, path: &str, limit: u64) -> Result<Vec<u8>, std::io::Error> {
        read_blob(
            &self.repo,
            (&self.files, self.blobs.as_deref()),
            path,
            limit,
        )
    }

    fn read_many(&self, paths: &[&str], limit: u64) -> Vec<Result<Vec<u8>, std::io::Error>> {
        let from = (&self.files, self.blobs.as_deref());
        self.in_parallel(paths, |repo, path| read_blob(repo, from, path, limit))
    }

    fn describe(&self) -> String {
        self.describe.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(date_of(0), "1970-01-01");
        assert_eq!(date_of(1_798_416_000), "2026-12-28");
        assert_eq!(date_of(951_782_400), "2000-02-29");
    }

    #[test]
    fn links() {
        assert_eq!(
            resolve_link("a/b.yaml", "c.yaml").as_deref(),
            Some("a/c.yaml")
        );
        assert_eq!(
            resolve_link("a/b.yaml", "../c.yaml").as_deref(),
            Some("c.yaml")
        );
        assert_eq!(resolve_link("b.yaml", "../c.yaml"), None);
        assert_eq!(resolve_link("b.yaml", "/etc/passwd"), None);
    }
}
