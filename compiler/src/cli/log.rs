//! `plinth log`: for each commit, the platform objects it changed.

use std::io::Write;

use clap::{Args, ValueEnum};

use super::args::GitArgs;
use super::git::{git_cache, open_git, platform_below};
use crate::render::{self, Paths};

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Stop at this revision (exclusive), or at commits older than this date (`YYYY-MM-DD`).
    #[arg(long)]
    pub since: Option<String>,
    /// Where the history ends.
    #[arg(long, default_value = "HEAD")]
    pub head: String,
    #[command(flatten)]
    pub git: GitArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub format: LogFormat,
    /// Where compiled revisions are cached (default: `plinth-cache` in the repository's git
    /// directory, shared with `plinth plan`; safe to delete).
    #[arg(long, env = "PLINTH_CACHE_DIR")]
    pub cache_dir: Option<std::path::PathBuf>,
    /// Compile every revision from scratch.
    #[arg(long)]
    pub no_cache: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

pub(super) fn log(args: LogArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<u8> {
    let (repo, path) = open_git(&args.git)?;
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let head = repo.resolve(&args.head)?;
    let is_date = args
        .since
        .as_deref()
        .is_some_and(|s| s.len() == 10 && s.as_bytes()[4] == b'-' && s.as_bytes()[7] == b'-');
    let since_rev = match &args.since {
        Some(s) if !is_date => Some(repo.resolve(s)?),
        _ => None,
    };
    let since_date = args.since.clone().filter(|_| is_date);
    if let Ok(src) = repo.source(head, &path)
        && let Some(m) = platform_below(&src, &path)
    {
        anyhow::bail!("{m}");
    }
    let commits = repo.between(since_rev, head)?;
    // Each commit a few files away from the one before: compiled through the cache, it
    // re-lowers what those files feed and reads only the blobs not seen.
    let (cache, blobs) = git_cache(args.cache_dir.as_deref(), args.no_cache, &repo);
    let mut revisions = Revisions {
        repo: &repo,
        path: &path,
        prefix: &prefix,
        cache: cache.as_ref(),
        blobs: blobs.clone(),
        compiled: Default::default(),
    };
    let (mut entries, cut) = walk(&mut revisions, &commits, since_date.as_deref())?;
    if let Some(b) = &blobs {
        // A cache that cannot be written only costs time.
        let _ = b.flush();
    }
    let cut_note = cut.as_ref().map(|c| {
        format!(
            "the history is cut at `{}` ({}, a shallow clone): what it and older commits changed is not known; \
             `git fetch --unshallow` fetches the rest",
            c.short, c.date
        )
    });
    // Commit subjects and authors are free text: no token survives them.
    for (c, _) in &mut entries {
        c.summary = crate::redact::text(&c.summary).into_owned();
        c.author = crate::redact::text(&c.author).into_owned();
    }
    match args.format {
        LogFormat::Text => {
            write_text(&entries, &prefix, out)?;
            if entries.is_empty() {
                writeln!(err, "no commit in range changed the platform")?;
            }
        }
        LogFormat::Json => write_json(&entries, &prefix, out)?,
    }
    if let Some(note) = &cut_note {
        writeln!(err, "note: {note}")?;
    }
    Ok(0)
}

/// A platform that does not compile at a commit: the first error, to say why.
type Compiled = Result<std::sync::Arc<crate::lower::Lowered>, String>;

/// A commit and what it changed (or why that is not known).
type Entry = (
    crate::load::git::CommitInfo,
    Result<crate::plan::Plan, String>,
);

/// The platform compiled at revisions of the history, each once.
struct Revisions<'a> {
    repo: &'a crate::load::git::GitRepo,
    path: &'a str,
    prefix: &'a str,
    /// plinth's cache and its blob store (`None` with `--no-cache`).
    cache: Option<&'a crate::cache::Cache>,
    blobs: Option<std::sync::Arc<crate::cache::BlobPack>>,
    /// The revisions compiled in this run and still needed.
    compiled: std::collections::BTreeMap<String, Compiled>,
}

impl Revisions<'_> {
    /// The platform at revision `id` (empty where it does not exist yet).
    fn compile(&mut self, id: &str) -> anyhow::Result<Compiled> {
        use crate::load::git::GitError;
        if let Some(l) = self.compiled.get(id) {
            return Ok(l.clone());
        }
        let oid = self.repo.resolve(id)?;
        let lowered = match self.repo.source(oid, self.path) {
            Ok(src) => {
                let opts = crate::Options::default();
                let built = match self.cache {
                    Some(cache) => {
                        crate::build_cached(&src.with_blobs(self.blobs.clone()), &opts, cache)?
                    }
                    None => crate::build_source(&src, &opts)?,
                };
                let diags = built.checked.diagnostics.into_sorted();
                match (built.lowered, diags.iter().find(|d| d.is_error())) {
                    (Some(l), None) => Ok(std::sync::Arc::new(l)),
                    (_, Some(d)) => Err(render::concise(
                        std::slice::from_ref(d),
                        &Paths::new(self.prefix),
                    )
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()),
                    (None, None) => Err("it does not lower".to_owned()),
                }
            }
            Err(GitError::MissingPath { .. }) => Ok(Default::default()),
            Err(e) => return Err(e.into()),
        };
        self.compiled.insert(id.to_owned(), lowered.clone());
        Ok(lowered)
    }

    /// Keep only revision `id` compiled (the next commit of the walk is usually it: a whole
    /// platform's objects per revision are not held for the whole history; one needed again
    /// is read back from the cache).
    fn keep_only(&mut self, id: Option<&str>) {
        self.compiled.retain(|k, _| Some(k.as_str()) == id);
    }
}

/// The commits that changed the platform, each against its first parent, and the commit where
/// a shallow clone cuts the history (the walk ends there).
fn walk(
    revisions: &mut Revisions<'_>,
    commits: &[crate::load::git::CommitInfo],
    since_date: Option<&str>,
) -> anyhow::Result<(Vec<Entry>, Option<crate::load::git::CommitInfo>)> {
    let mut cut: Option<crate::load::git::CommitInfo> = None;
    let mut entries = Vec::new();
    for c in commits {
        if since_date.is_some_and(|d| c.date.as_str() < d) {
            continue;
        }
        if c.parents.first().is_some_and(|p| !revisions.repo.has(p)) {
            cut = Some(c.clone());
            break;
        }
        let after = revisions.compile(&c.id)?;
        let before = match c.parents.first() {
            Some(p) => revisions.compile(p)?,
            None => Ok(Default::default()),
        };
        revisions.keep_only(c.parents.first().map(String::as_str));
        let (before, after) = match (before, after) {
            (Ok(b), Ok(a)) => (b, a),
            (_, Err(why)) | (Err(why), _) => {
                entries.push((c.clone(), Err(why)));
                continue;
            }
        };
        let opts = crate::plan::PlanOptions {
            allow_destructive: true,
            max_delete_share: 1.0,
            ..crate::plan::PlanOptions::default()
        };
        // Only the objects whose hashes differ are compared (the same plan as of the whole
        // revisions: `plan::prune`'s property test).
        let pruned = crate::plan::prune(
            &crate::plan::index_of(&before),
            &crate::plan::index_of(&after),
        );
        let (b, a) = (before.only(&pruned.wanted), after.only(&pruned.wanted));
        let p = crate::plan::plan_pruned_without_capacity(&b, &a, &pruned.totals, &opts);
        // The objects compared were read back whole (`only` shares their texts).
        before.texts_intact()?;
        after.texts_intact()?;
        if p.has_changes() {
            entries.push((c.clone(), Ok(p)));
        }
    }
    Ok((entries, cut))
}

/// `--format text`: a line per commit, then one per changed object.
fn write_text(entries: &[Entry], prefix: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    for (c, p) in entries {
        writeln!(
            out,
            "{} {} {} <{}>: {}",
            c.short, c.date, c.author, c.email, c.summary
        )?;
        match p {
            Err(why) => writeln!(
                out,
                "    (the platform does not compile at this commit or its parent: {})",
                crate::redact::text(why)
            )?,
            Ok(p) => {
                for ch in &p.changes {
                    let sym = match ch.action {
                        crate::plan::Action::Create => '+',
                        crate::plan::Action::Update => '~',
                        crate::plan::Action::Delete => '-',
                    };
                    writeln!(
                        out,
                        "    {sym} {} {} ({}{}:{})",
                        ch.cluster,
                        ch.key,
                        prefix,
                        ch.provenance.origin.file,
                        ch.provenance.origin.line
                    )?;
                }
            }
        }
    }
    Ok(())
}

/// `--format json`: a list of commits with their changes.
fn write_json(entries: &[Entry], prefix: &str, out: &mut dyn Write) -> anyhow::Result<()> {
    let v: Vec<serde_json::Value> = entries
        .iter()
        .map(|(c, p)| {
            serde_json::json!({
                "commit": c,
                "compiles": p.is_ok(),
                "error": p.as_ref().err().map(|why| crate::redact::text(why).into_owned()),
                "changes": p.as_ref().ok().map(|p| p.changes.iter().map(|ch| serde_json::json!({
                    "cluster": ch.cluster,
                    "apiVersion": ch.key.api_version,
                    "kind": ch.key.kind,
                    "namespace": ch.key.namespace,
                    "name": ch.key.name,
                    "action": ch.action.as_str(),
                    "source": format!("{prefix}{}:{}", ch.provenance.origin.file, ch.provenance.origin.line),
                })).collect::<Vec<_>>()).unwrap_or_default(),
            })
        })
        .collect();
    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    Ok(())
}
