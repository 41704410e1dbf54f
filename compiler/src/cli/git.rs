//! Where the platform is in git, for `plan` and `log`.

use super::args::GitArgs;
use crate::load::Limits;

/// The repository and the platform's path inside it.
pub(super) fn open_git(g: &GitArgs) -> anyhow::Result<(crate::load::git::GitRepo, String)> {
    let cwd = std::env::current_dir()?;
    let start = g.repo.clone().unwrap_or_else(|| cwd.clone());
    let repo = crate::load::git::GitRepo::discover(&start).map_err(|e| {
        anyhow::anyhow!(
            "{e}; run plinth in a clone of the platform's repository, or name it with `--repo`"
        )
    })?;
    let path = match (&g.path, &g.repo) {
        (Some(p), _) => p.trim_matches('/').to_owned(),
        (None, Some(_)) => String::new(),
        (None, None) => repo.relative(&cwd).unwrap_or_default(),
    };
    Ok((repo, path))
}

/// The cache of the commands that compile git revisions (`plan`, `log`): `--cache-dir`, else
/// `plinth-cache` in the repository's git directory, none with `--no-cache`. Its unit store is
/// opened once for every compile of the run, and its store of blob contents (only blobs not
/// seen before are read from git) is returned beside it.
pub(super) fn git_cache(
    cache_dir: Option<&std::path::Path>,
    no_cache: bool,
    repo: &crate::load::git::GitRepo,
) -> (
    Option<crate::cache::Cache>,
    Option<std::sync::Arc<crate::cache::BlobPack>>,
) {
    if no_cache {
        return (None, None);
    }
    let dir = cache_dir.map_or_else(|| repo.git_dir().join("plinth-cache"), |d| d.to_path_buf());
    let cache = crate::cache::Cache::new(dir)
        .sharing_units()
        .reading_files()
        .reading_policies();
    let blobs = std::sync::Arc::new(cache.blobs());
    (Some(cache), Some(blobs))
}

/// When the platform directory holds no `plinth.yaml` but directories below it do, the
/// error that names them (plinth would otherwise read the whole tree as one platform, with
/// templates and files resolved against the wrong root).
pub(super) fn platform_below(source: &dyn crate::load::Source, path: &str) -> Option<String> {
    // The usual case without listing the tree (every file's size, 18,700 at scale): a
    // `plinth.yaml` at the root reads.
    if ["plinth.yaml", "plinth.yml"]
        .iter()
        .any(|f| source.read(f, 0).is_ok())
    {
        return None;
    }
    let entries = source.entries(&Limits::default()).ok()?;
    let mut found = Vec::new();
    for e in &entries {
        if let crate::load::Entry::File { path: p, .. } = e {
            match p.rsplit_once('/') {
                None if p == "plinth.yaml" || p == "plinth.yml" => return None,
                Some((dir, "plinth.yaml" | "plinth.yml")) => found.push(dir.to_owned()),
                _ => {}
            }
        }
    }
    let full = |dir: &str| {
        if path.is_empty() {
            dir.to_owned()
        } else {
            format!("{path}/{dir}")
        }
    };
    let here = if path.is_empty() {
        "the repository root".to_owned()
    } else {
        format!("`{path}`")
    };
    match found.as_slice() {
        [] => None,
        [one] => Some(format!(
            "{here} holds no `plinth.yaml`, but `{}/plinth.yaml` does: the platform is there; pass `--path {}`",
            full(one),
            full(one)
        )),
        many => Some(format!(
            "{here} holds no `plinth.yaml`, but several directories below it do ({}); choose the platform with `--path`",
            many.iter()
                .map(|d| format!("`{}`", full(d)))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}
