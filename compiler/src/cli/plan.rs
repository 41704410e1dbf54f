//! `plinth plan`: compile two revisions, compare them, and attach the commits behind each
//! change.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::args::{Color, GitArgs, PolicyArgs, use_color};
use super::git::{git_cache, open_git, platform_below};
use crate::load::DirSource;
use crate::render::{self, Paths};

#[derive(Debug, Clone, Args)]
pub struct PlanArgs {
    /// The revision the change starts from (what is deployed), e.g. `origin/main`.
    #[arg(long)]
    pub base: String,
    /// Where compiled revisions are cached (default: `plinth-cache` in the repository's git
    /// directory; safe to delete).
    #[arg(long, env = "PLINTH_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Compile both sides from scratch.
    #[arg(long)]
    pub no_cache: bool,
    /// The revision with the change; the working tree (uncommitted changes included) when absent.
    #[arg(long)]
    pub head: Option<String>,
    #[command(flatten)]
    pub git: GitArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Terminal)]
    pub format: PlanFormat,
    /// Also write the whole plan (never truncated) to this file, in the chosen format.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// With `--format markdown`: write the plan as pull-request comments `DIR/page-1.md` …
    /// `page-N.md`, each below GitHub's limit (other `page-*.md` files in DIR are removed).
    #[arg(long, value_name = "DIR")]
    pub pages: Option<PathBuf>,
    /// Allow every destructive change.
    #[arg(long)]
    pub allow_destructive: bool,
    /// Refuse a head that deletes more than this share (0–1) of a cluster's objects.
    #[arg(long, default_value_t = 0.5)]
    pub max_delete_share: f64,
    /// When to colour terminal output (`NO_COLOR` is honoured under `auto`).
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    #[command(flatten)]
    pub policies: PolicyArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Terminal,
    /// For a pull-request comment: capped below GitHub's limit.
    Markdown,
    /// `schemas/plan.schema.json`.
    Json,
}

/// A compiled side of a plan (its approvals travel in the lowered output).
struct Side {
    objects: Objects,
    /// Its GPU capacity, for the capacity section (shared with the entry to be stored).
    capacity: Option<std::sync::Arc<crate::capacity::Capacity>>,
    /// How long its stages took (`PLINTH_TIMINGS=1`).
    timings: Vec<(&'static str, std::time::Duration)>,
    /// Its revision, compiled now and not stored yet ([`crate::Options::defer_store`]).
    pending: Option<crate::PendingStore>,
}

impl Side {
    /// The side of a revision without the platform (a base from before it existed).
    fn empty() -> Side {
        Side {
            objects: Objects::Compiled(Default::default()),
            capacity: None,
            timings: Vec::new(),
            pending: None,
        }
    }
}

/// Objects of a cached revision that cannot be read back (the cache directory was damaged).
#[derive(Debug, thiserror::Error)]
#[error("the plan cache holds objects it cannot read back (delete it, or pass `--no-cache`)")]
struct DamagedCache;

/// A side's objects: compiled now, or in the cache (read when they differ from the other side).
enum Objects {
    Compiled(crate::lower::Lowered),
    Cached(Box<crate::cache::Entry>),
    /// Compiled against the base's units: only the units that differ are here
    /// ([`crate::lower::delta`]).
    Delta(Box<crate::lower::delta::Delta>),
}

impl Objects {
    /// Its units as a plan compares them (`None` when its objects did not come from the unit
    /// store).
    fn summary(&self) -> Option<crate::plan::UnitSummary<'_>> {
        match self {
            Objects::Compiled(l) => crate::plan::UnitSummary::of(l),
            Objects::Cached(e) => e.summary(),
            Objects::Delta(d) => crate::plan::UnitSummary::named(
                d.keys(),
                d.clusters.iter().map(|(n, u)| (n.as_str(), &u[..])),
            ),
        }
    }

    /// The index of its objects outside the `shared` units, and those objects (a compiled
    /// side's own, a cached side's read from the unit store).
    fn outside(
        &self,
        shared: &crate::plan::Shared<'_>,
    ) -> Option<(
        crate::output::LoweredIndex,
        std::borrow::Cow<'_, crate::lower::Lowered>,
    )> {
        match self {
            Objects::Compiled(l) => Some((
                crate::plan::index_outside(l, shared)?,
                std::borrow::Cow::Borrowed(l),
            )),
            // Its objects are those of the units that differ from the base's (the others are
            // shared, as their keys are the base's).
            Objects::Delta(d) => Some((
                crate::plan::index_outside(&d.fresh, shared)?,
                std::borrow::Cow::Borrowed(&d.fresh),
            )),
            Objects::Cached(e) => {
                let rest = e.outside(shared)?;
                Some((crate::plan::index_of(&rest), std::borrow::Cow::Owned(rest)))
            }
        }
    }

    /// Its index; an error when a cached side's cannot be read back.
    fn index(&self) -> anyhow::Result<std::borrow::Cow<'_, crate::output::LoweredIndex>> {
        match self {
            Objects::Compiled(l) => Ok(std::borrow::Cow::Owned(crate::plan::index_of(l))),
            Objects::Cached(e) => e
                .index()
                .map(std::borrow::Cow::Borrowed)
                .ok_or_else(|| anyhow::Error::new(DamagedCache)),
            // Compared by units only: a base whose units cannot be read is planned again
            // without the cache.
            Objects::Delta(_) => Err(anyhow::Error::new(DamagedCache)),
        }
    }

    /// The objects of `keep`; an error when a cached side's objects cannot be read.
    fn only(
        &self,
        keep: &std::collections::BTreeMap<
            String,
            std::collections::BTreeSet<crate::output::ObjectKey>,
        >,
    ) -> anyhow::Result<crate::lower::Lowered> {
        match self {
            Objects::Compiled(l) => Ok(l.only(keep)),
            Objects::Cached(e) => e
                .lowered_only(keep)
                .ok_or_else(|| anyhow::Error::new(DamagedCache)),
            Objects::Delta(_) => Err(anyhow::Error::new(DamagedCache)),
        }
    }
}

/// A revision read into memory: its snapshot, what loading reported, and how long loading
/// took.
type Loaded = (
    crate::load::Snapshot,
    crate::diag::Diagnostics,
    std::time::Duration,
);

/// Read a source (in this thread: git handles stay here) for [`compile_side`].
fn load_side(source: &dyn crate::load::Source, opts: &crate::Options) -> anyhow::Result<Loaded> {
    let started = std::time::Instant::now();
    let (snapshot, diags) = crate::load::load(source, &opts.limits)?;
    Ok((snapshot, diags, started.elapsed()))
}

/// [`compile_both`] of a base compiled before: its entry is read beside the head's load and
/// compile (and when it will not do, the base is read from git and compiled after all).
fn with_cached_base(
    compile: Compile<'_>,
    base: (CachedBase, &GitSide, &crate::Options, &str),
    head: (Loaded, &crate::Options, &str),
    err: &mut dyn Write,
) -> anyhow::Result<Option<(Side, Side)>> {
    let Compile {
        cache,
        prefix,
        color,
    } = compile;
    let (read, base_git, base_opts, base_what) = base;
    let (head_src, head_opts, head_what) = head;
    let (mut base_err, mut head_err) = (Vec::new(), Vec::new());
    // The head is lowered against the base's units, given when its entry is read.
    let head_opts = &crate::Options {
        base: Some(read.units),
        ..head_opts.clone()
    };
    let head = compile_side(
        head_src,
        head_opts,
        cache,
        head_what,
        prefix,
        &mut head_err,
        color,
    );
    let base = cached_or_compiled(
        read.side,
        base_git,
        compile,
        (base_opts, base_what),
        &mut base_err,
    )?;
    both_sides((base, &base_err), (head, &head_err), err)
}

/// A base found by its tree: its entry as read beside (`side`), else read from git and
/// compiled after all. `None` when it does not compile (its diagnostics in `err`).
fn cached_or_compiled(
    side: std::thread::JoinHandle<Option<Side>>,
    git: &GitSide<'_>,
    compile: Compile<'_>,
    (opts, what): (&crate::Options, &str),
    err: &mut Vec<u8>,
) -> anyhow::Result<Option<Side>> {
    if let Some(b) = side.join().ok().flatten() {
        return Ok(Some(b));
    }
    compiled_alone(git.load(compile.cache, opts)?, compile, (opts, what), err)
}

/// The base's side when the head's was found by its tree (nothing to share with the head).
fn base_alone(
    compile: Compile<'_>,
    (input, opts, what): (BaseInput<'_>, &crate::Options, &str),
    err: &mut Vec<u8>,
) -> anyhow::Result<Option<Side>> {
    match input {
        BaseInput::Cached { read, base } => {
            cached_or_compiled(read.side, base, compile, (opts, what), err)
        }
        BaseInput::Loaded(loaded) => compiled_alone(loaded, compile, (opts, what), err),
    }
}

/// A side read from git, compiled on its own (`None` read: no platform there, an empty side).
fn compiled_alone(
    loaded: Option<Loaded>,
    compile: Compile<'_>,
    (opts, what): (&crate::Options, &str),
    err: &mut Vec<u8>,
) -> anyhow::Result<Option<Side>> {
    match loaded {
        Some(src) => compile_side(
            src,
            opts,
            compile.cache,
            what,
            compile.prefix,
            err,
            compile.color,
        ),
        None => Ok(Some(Side::empty())),
    }
}

/// The blob packs (git's blobs, the working tree's texts) written beside the compile, waited
/// for before the plan ends (a pack that cannot be written only costs time).
fn flush_beside(
    blobs: Option<std::sync::Arc<crate::cache::BlobPack>>,
    texts: Option<std::sync::Arc<crate::cache::BlobPack>>,
) -> std::thread::JoinHandle<Vec<std::io::Result<()>>> {
    let packs: Vec<_> = blobs.into_iter().chain(texts).collect();
    std::thread::spawn(move || packs.iter().map(|p| p.flush()).collect::<Vec<_>>())
}

/// Both sides compiled, or `None` with the diagnostics of the first side that did not compile
/// printed (`*_err`: each side's printed diagnostics).
fn both_sides(
    (base, base_err): (Option<Side>, &[u8]),
    (head, head_err): (anyhow::Result<Option<Side>>, &[u8]),
    err: &mut dyn Write,
) -> anyhow::Result<Option<(Side, Side)>> {
    let Some(base) = base else {
        err.write_all(base_err)?;
        return Ok(None);
    };
    let Some(head) = head? else {
        err.write_all(head_err)?;
        return Ok(None);
    };
    Ok(Some((base, head)))
}

/// A base compiled before, found by its tree ([`crate::cache::Cache::alias`]) without reading
/// its files: only an entry without errors that holds its index and its GPU capacity (anything
/// else is compiled as usual, its diagnostics printed from its files).
fn cached_side(cache: &crate::cache::Cache, key: &str) -> Option<Side> {
    let started = std::time::Instant::now();
    let mut entry = cache.load(key)?;
    let whole = entry.compiled()
        && entry.capacity.is_some()
        && !entry
            .diagnostics
            .iter()
            .any(crate::diag::Diagnostic::is_error);
    whole.then(|| Side {
        capacity: entry.capacity.take(),
        objects: Objects::Cached(Box::new(entry)),
        timings: vec![("cache hit (by tree)", started.elapsed())],
        pending: None,
    })
}

/// Compile a revision for planning. `None` with diagnostics printed when it does not compile.
fn compile_side(
    loaded: Loaded,
    opts: &crate::Options,
    cache: Option<&crate::cache::Cache>,
    what: &str,
    prefix: &str,
    err: &mut dyn Write,
    color: bool,
) -> anyhow::Result<Option<Side>> {
    let (snapshot, load_diags, load_time) = loaded;
    // Its loading counted as if it had just ended (a side compiled after the other waited).
    let now = std::time::Instant::now();
    let started = now.checked_sub(load_time).unwrap_or(now);
    let (mut built, entry) = match crate::build_or_index(snapshot, load_diags, opts, cache, started)
    {
        crate::Compiled::Built(b) => (b, None),
        crate::Compiled::Cached { built, entry } => (built, Some(entry)),
    };
    // Policy read the objects it judged: its findings stand only on texts read back whole.
    if let Some(l) = &built.lowered {
        l.texts_intact()?;
    }
    if let Some(d) = &built.delta {
        d.fresh.texts_intact()?;
    }
    let diags = built.checked.diagnostics.clone().into_sorted();
    let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).cloned().collect();
    let objects = match (entry, built.lowered, built.delta) {
        (Some(e), ..) if e.compiled() => Some(Objects::Cached(e)),
        (_, Some(l), _) => Some(Objects::Compiled(l)),
        (.., Some(d)) => Some(Objects::Delta(d)),
        _ => None,
    };
    let Some(mut objects) = objects.filter(|_| errors.is_empty()) else {
        if let (Some(c), Some(pending)) = (cache, built.pending.take()) {
            // Kept too (its diagnostics: the next plan of it reports them without compiling).
            let _ = pending.store(c, None);
        }
        writeln!(err, "error: {what} does not compile:")?;
        err.write_all(
            render::human(&errors, &built.checked.snapshot, &Paths::new(prefix), color).as_bytes(),
        )?;
        return Ok(None);
    };
    // A cache hit keeps the capacity it computed (an entry of an older plinth may not: its
    // specs are read again).
    let capacity = match &mut objects {
        Objects::Cached(e) => e.capacity.take().unwrap_or_else(|| {
            std::sync::Arc::new(crate::capacity::Capacity::of(&crate::capacity::specs_of(
                &built.checked.snapshot,
                opts.yaml,
            )))
        }),
        // Computed for the revision's entry when it is to be stored (and shared with it).
        Objects::Compiled(_) | Objects::Delta(_) => {
            match built.pending.as_ref().and_then(|p| p.capacity()) {
                Some(c) => c.clone(),
                None => std::sync::Arc::new(crate::capacity::Capacity::of(&built.checked.specs)),
            }
        }
    };
    let timings = std::mem::take(&mut built.checked.timings);
    let pending = built.pending.take();
    // Done with the specs and documents of a whole platform.
    super::exit::done_with(built.checked);
    Ok(Some(Side {
        objects,
        capacity: Some(capacity),
        timings,
        pending,
    }))
}

pub(super) fn plan(
    args: PlanArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    terminal: bool,
) -> anyhow::Result<u8> {
    if args.pages.is_some() && args.format != PlanFormat::Markdown {
        anyhow::bail!("`--pages` writes Markdown comments: add `--format markdown`");
    }
    let (repo, path) = open_git(&args.git)?;
    let prefix = if path.is_empty() {
        String::new()
    } else {
        format!("{path}/")
    };
    let color = use_color(args.color, terminal);
    let (cache, blobs) = git_cache(args.cache_dir.as_deref(), args.no_cache, &repo);
    let base_id = repo.resolve(&args.base)?;
    let base_info = repo.commit(base_id)?;
    let base_opts = crate::Options::default();
    let head_opts = crate::Options {
        policies: Some(args.policies.config()?),
        // Stored beside the comparison (see below).
        defer_store: true,
        ..crate::Options::default()
    };
    // The base as deployed (empty where the platform did not exist yet); one compiled before is
    // found by its tree, without reading its files.
    let base_git = GitSide::of(
        &repo,
        (base_id, &path),
        (cache.as_ref(), blobs.clone()),
        &base_opts,
    )?;
    let base_input = match base_git.cached_key(cache.as_ref()) {
        Some(key) => BaseInput::Cached {
            read: CachedBase::read(cache.clone(), key),
            base: &base_git,
        },
        None => BaseInput::Loaded(base_git.load(cache.as_ref(), &base_opts)?),
    };
    let base_what = format!("base `{}`", args.base);
    let compile = Compile {
        cache: cache.as_ref(),
        prefix: &prefix,
        color,
    };
    let base = (base_input, &base_opts, base_what.as_str());
    let (sides, head_rev, kept) = match HeadAt::of(&repo, &args, &path, &cache, &head_opts)? {
        // A commit planned before (a pull request planned again after its base moved): its
        // compile found by its tree, its files not listed or read.
        HeadAt::Cached(head, rev) => {
            let mut base_err = Vec::new();
            let base = base_alone(compile, base, &mut base_err)?;
            let sides = both_sides((base, &base_err), (Ok(Some(head)), &[]), err)?;
            (sides, rev, flush_beside(blobs, None))
        }
        HeadAt::Read(head_git) => {
            let kept_in = (cache.as_ref(), blobs.clone());
            let head_rev = head_source(&repo, args.head.as_deref(), &path, kept_in)?;
            if let Some(m) = platform_below(&*head_rev.source, &path) {
                anyhow::bail!("{m}");
            }
            let head_src = load_side(&*head_rev.source, &head_opts)?;
            if let (Some(c), Some(k)) = (&cache, head_git.and_then(|g| g.tree_key)) {
                // For the next plan of this commit.
                c.set_alias(&k, &c.key(&head_src.0, &head_opts));
            }
            let kept = flush_beside(blobs, head_rev.texts.clone());
            let head = (head_src, &head_opts, head_rev.what.as_str());
            let sides = compile_both(compile, base, head, err)?;
            (sides, head_rev.into(), kept)
        }
    };
    let Some((base, head)) = sides else {
        return Ok(1);
    };
    let compared = std::time::Instant::now();
    let (head, stored) = store_beside(cache.as_ref(), head);
    let mut p = match compare(&args, &base, &head) {
        Ok(p) => p,
        Err(e) if e.is::<DamagedCache>() && !args.no_cache => {
            // Objects that cannot be read back cost a compile, not the plan.
            writeln!(err, "warning: {e}; planning again without it")?;
            drop((base, head));
            if let Some(s) = stored {
                let _ = s.join();
            }
            let again = PlanArgs {
                no_cache: true,
                ..args.clone()
            };
            return plan(again, out, err, terminal);
        }
        Err(e) => return Err(e),
    };
    timings(&base, &head, compared.elapsed(), err)?;
    // The compiled sides are done with (a hundred thousand objects take a while to free).
    super::exit::done_with((base, head));
    // History: which commits between base and head touched each change's spec file (and
    // each approval's file).
    p.prefix_files(&prefix);
    attach_history(&mut p, &repo, base_id, head_rev.id, err)?;
    let sides = crate::plan::render::Sides {
        base: format!("{} ({})", args.base, base_info.short),
        head: head_rev.label,
    };
    write_plan(&args, &p, &sides, color, out, err)?;
    let _ = kept.join();
    if let Some(s) = stored {
        let _ = s.join();
    }
    Ok(exit_code(&p))
}

/// A plan's exit code: 1 refused, 2 changes, 0 none.
fn exit_code(p: &crate::plan::Plan) -> u8 {
    if p.is_refused() {
        1
    } else if p.has_changes() {
        2
    } else {
        0
    }
}

/// With `PLINTH_TIMINGS` set, how long each stage of each side and the comparison took.
fn timings(
    base: &Side,
    head: &Side,
    compare: std::time::Duration,
    err: &mut dyn Write,
) -> std::io::Result<()> {
    if std::env::var_os("PLINTH_TIMINGS").is_none() {
        return Ok(());
    }
    let compare = [("compare", compare)];
    let all = [
        ("base", &base.timings[..]),
        ("head", &head.timings[..]),
        ("plan", &compare[..]),
    ];
    for (side, timings) in all {
        for (stage, d) in timings {
            writeln!(
                err,
                "timing {side} {stage:>8}: {:>8.1} ms",
                d.as_secs_f64() * 1000.0
            )?;
        }
    }
    Ok(())
}

/// Where a plan's head comes from.
enum HeadAt<'r> {
    /// A commit compiled before, found by its tree ([`cached_side`]).
    Cached(Side, HeadRev),
    /// Read from its files: a commit (with its tree, when there is a cache) or the working
    /// tree.
    Read(Option<GitSide<'r>>),
}

impl<'r> HeadAt<'r> {
    fn of(
        repo: &'r crate::load::git::GitRepo,
        args: &PlanArgs,
        path: &str,
        cache: &Option<crate::cache::Cache>,
        opts: &crate::Options,
    ) -> anyhow::Result<HeadAt<'r>> {
        let (Some(rev), Some(c)) = (args.head.as_deref(), cache) else {
            return Ok(HeadAt::Read(None));
        };
        let id = repo.resolve(rev)?;
        let git = GitSide::of(repo, (id, path), (Some(c), None), opts)?;
        Ok(
            match git.cached_key(Some(c)).and_then(|k| cached_side(c, &k)) {
                Some(side) => HeadAt::Cached(
                    side,
                    HeadRev {
                        id,
                        label: commit_label(rev, id),
                    },
                ),
                None => HeadAt::Read(Some(git)),
            },
        )
    }
}

/// A commit as a plan names it: the revision given and its short id.
fn commit_label(rev: &str, id: gix::ObjectId) -> String {
    format!("{rev} ({})", &id.to_string()[..7])
}

/// The head's commit (where the history ends) and how the plan names it.
struct HeadRev {
    id: gix::ObjectId,
    label: String,
}

impl From<HeadSource> for HeadRev {
    fn from(h: HeadSource) -> HeadRev {
        HeadRev {
            id: h.id,
            label: h.label,
        }
    }
}

/// The head side of a plan before it is read.
struct HeadSource {
    source: Box<dyn crate::load::Source>,
    /// How errors name it.
    what: String,
    /// How the plan names it.
    label: String,
    /// The commit history ends at.
    id: gix::ObjectId,
    /// The working tree's files kept by stamp (read through the cache).
    texts: Option<std::sync::Arc<crate::cache::BlobPack>>,
}

/// `--head` at its revision, or the working tree (uncommitted changes included).
fn head_source(
    repo: &crate::load::git::GitRepo,
    head: Option<&str>,
    path: &str,
    (cache, blobs): (
        Option<&crate::cache::Cache>,
        Option<std::sync::Arc<crate::cache::BlobPack>>,
    ),
) -> anyhow::Result<HeadSource> {
    use crate::load::git::GitError;
    Ok(match head {
        Some(rev) => {
            let id = repo.resolve(rev)?;
            let src = repo.source(id, path).map_err(|e| match e {
                GitError::MissingPath { .. } => anyhow::anyhow!(
                    "{e}; `--path` names the platform directory relative to the repository root"
                ),
                e => e.into(),
            })?;
            let src = src.with_blobs(blobs);
            HeadSource {
                source: Box::new(src),
                what: format!("head `{rev}`"),
                label: commit_label(rev, id),
                id,
                texts: None,
            }
        }
        None => {
            let root = repo.workdir().ok_or_else(|| {
                anyhow::anyhow!("the repository has no working tree; pass `--head`")
            })?;
            if !root.join(path).is_dir() {
                anyhow::bail!(
                    "`{path}` is not a directory of the working tree; `--path` names the platform directory relative to the repository root"
                );
            }
            // Through the cache, files whose stamp is unchanged are not read again.
            let texts = cache.map(|c| std::sync::Arc::new(c.worktree_texts()));
            let source = DirSource::new(root.join(path)).with_texts(texts.clone());
            HeadSource {
                source: Box::new(source),
                what: "the working tree".to_owned(),
                label: "working tree".to_owned(),
                id: repo.resolve("HEAD")?,
                texts,
            }
        }
    })
}

/// What both sides compile with.
#[derive(Clone, Copy)]
struct Compile<'a> {
    cache: Option<&'a crate::cache::Cache>,
    prefix: &'a str,
    color: bool,
}

/// The base side before it is compiled.
enum BaseInput<'a> {
    /// Read from git (`None`: no platform at the base).
    Loaded(Option<Loaded>),
    /// Compiled before: its entry (found by its tree) being read, and where to read it from
    /// when that entry will not do.
    Cached {
        read: CachedBase,
        base: &'a GitSide<'a>,
    },
}

/// A cached base's entry, read on a thread of its own from the moment its key is known —
/// beside the head's load (one core's work) and compile — and its units, given to the head's
/// compile once read.
struct CachedBase {
    side: std::thread::JoinHandle<Option<Side>>,
    units: crate::options::BaseUnits,
}

impl CachedBase {
    fn read(cache: Option<crate::cache::Cache>, key: String) -> CachedBase {
        let units = crate::options::BaseUnits::default();
        let promise = units.promise();
        let side = std::thread::spawn(move || {
            let side = cache.as_ref().and_then(|c| cached_side(c, &key));
            // The capacity as the side keeps it (taken from the entry).
            let (units, capacity) = match &side {
                Some(Side {
                    objects: Objects::Cached(e),
                    capacity,
                    ..
                }) => (e.base_units(), capacity.clone()),
                _ => (None, None),
            };
            promise.keep_with(units, capacity);
            side
        });
        CachedBase { side, units }
    }
}

/// A side's platform at a commit: listed and read only when its compile is not cached.
struct GitSide<'r> {
    repo: &'r crate::load::git::GitRepo,
    id: gix::ObjectId,
    path: String,
    /// The platform's tree; `None`: the platform does not exist at that commit.
    tree: Option<gix::ObjectId>,
    /// The key of its tree in the cache ([`crate::cache::Cache::tree_key`]).
    tree_key: Option<String>,
    /// Blob contents read before.
    blobs: Option<std::sync::Arc<crate::cache::BlobPack>>,
}

impl<'r> GitSide<'r> {
    fn of(
        repo: &'r crate::load::git::GitRepo,
        (id, path): (gix::ObjectId, &str),
        (cache, blobs): (
            Option<&crate::cache::Cache>,
            Option<std::sync::Arc<crate::cache::BlobPack>>,
        ),
        opts: &crate::Options,
    ) -> anyhow::Result<GitSide<'r>> {
        let tree = match repo.tree_id(id, path) {
            Ok(tree) => Some(tree),
            Err(crate::load::git::GitError::MissingPath { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let tree_key = cache
            .zip(tree)
            .map(|(c, t)| c.tree_key(&t.to_string(), opts));
        Ok(GitSide {
            repo,
            id,
            path: path.to_owned(),
            tree,
            tree_key,
            blobs,
        })
    }

    /// The key of its compile, when the cache holds one recorded for its tree.
    fn cached_key(&self, cache: Option<&crate::cache::Cache>) -> Option<String> {
        let cache = cache?;
        let key = cache.alias(self.tree_key.as_deref()?)?;
        cache.holds(&key).then_some(key)
    }

    /// Its files, read from git (in this thread: git handles stay here), its tree's alias
    /// recorded for the next plan.
    fn load(
        &self,
        cache: Option<&crate::cache::Cache>,
        opts: &crate::Options,
    ) -> anyhow::Result<Option<Loaded>> {
        if self.tree.is_none() {
            return Ok(None);
        }
        let src = self
            .repo
            .source(self.id, &self.path)?
            .with_blobs(self.blobs.clone());
        let loaded = load_side(&src, opts)?;
        if let (Some(c), Some(k)) = (cache, &self.tree_key) {
            c.set_alias(k, &c.key(&loaded.0, opts));
        }
        Ok(Some(loaded))
    }
}

/// Compile both sides: at once when the base's result is cached (each side is then mostly
/// single-threaded), else the base first, so that the head, a few files away from it, reuses
/// the units the base lowered (half the work and half the memory of two cold compiles) — from
/// the cache, or without one from a store in memory whose objects both sides share. `None`
/// when one does not compile, its diagnostics written to `err`; a base where the platform does
/// not exist yet is empty.
/// A base compiled before (found by its tree) is read beside the head: [`with_cached_base`].
fn compile_both(
    compile: Compile<'_>,
    base: (BaseInput<'_>, &crate::Options, &str),
    head: (Loaded, &crate::Options, &str),
    err: &mut dyn Write,
) -> anyhow::Result<Option<(Side, Side)>> {
    let Compile {
        cache,
        prefix,
        color,
    } = compile;
    let (base_input, base_opts, base_what) = base;
    let (head_src, head_opts, head_what) = head;
    let (mut base_err, mut head_err) = (Vec::new(), Vec::new());
    let base_src = match base_input {
        BaseInput::Loaded(loaded) => loaded,
        BaseInput::Cached { read, base } => {
            return with_cached_base(
                compile,
                (read, base, base_opts, base_what),
                (head_src, head_opts, head_what),
                err,
            );
        }
    };
    let base_first = cache.is_none()
        || cache
            .zip(base_src.as_ref())
            .is_some_and(|(c, (snapshot, ..))| !c.holds(&c.key(snapshot, base_opts)));
    // Compiled one after the other, the sides share their units in memory (with a cache, in
    // front of its unit store: the head takes the base's units without reading them back).
    let shared;
    let (base_opts, head_opts) = if base_first {
        let units = Some(crate::options::Units {
            store: std::sync::Arc::new(crate::lower::units::MemStore::default()),
            salt: cache.map_or_else(|| crate::cache::fingerprint().to_owned(), |c| c.unit_salt()),
        });
        shared = (
            crate::Options {
                units: units.clone(),
                ..base_opts.clone()
            },
            crate::Options {
                units,
                ..head_opts.clone()
            },
        );
        (&shared.0, &shared.1)
    } else {
        (base_opts, head_opts)
    };
    let compile_base = |out: &mut Vec<u8>| match base_src {
        Some(src) => {
            compile_side(src, base_opts, cache, base_what, prefix, out, color).map(|s| s.map(Some))
        }
        None => Ok(Some(None)),
    };
    let compile_head =
        |out: &mut Vec<u8>| compile_side(head_src, head_opts, cache, head_what, prefix, out, color);
    let (base, head) = if base_first {
        (compile_base(&mut base_err), compile_head(&mut head_err))
    } else {
        std::thread::scope(|scope| {
            let out = &mut base_err;
            let base = scope.spawn(move || compile_base(out));
            let head = compile_head(&mut head_err);
            let base = base
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("compiling the base panicked")));
            (base, head)
        })
    };
    // A base that is not there (`Some(None)`) is empty.
    let base = base?.map(|b| b.unwrap_or_else(Side::empty));
    both_sides((base, &base_err), (head, &head_err), err)
}

/// The head's revision (compiled now, not stored yet) stored in the cache on a thread of its
/// own, beside the comparison and the rest of the plan (whose second core is otherwise idle);
/// the plan waits for it before it ends (an entry is written beside and renamed into place, so
/// one cut short is never read).
fn store_beside(
    cache: Option<&crate::cache::Cache>,
    mut head: Side,
) -> (std::sync::Arc<Side>, Option<std::thread::JoinHandle<()>>) {
    let pending = head.pending.take();
    let head = std::sync::Arc::new(head);
    let stored = cache.cloned().zip(pending).map(|(c, pending)| {
        let head = head.clone();
        std::thread::spawn(move || {
            // A cache that cannot be written only costs time.
            let _ = match &head.objects {
                Objects::Compiled(l) => pending.store(&c, Some(l)),
                Objects::Delta(d) => pending.store_delta(&c, d),
                Objects::Cached(_) => Ok(()),
            };
        })
    });
    (head, stored)
}

/// The plan from base to head, with the GPU capacity section when the head's specs are known.
/// Only the objects whose hashes differ are read: sides whose objects are in the unit store
/// (cached, or compiled now through the cache) are compared by their units first (the objects
/// of the units both share are not read or indexed), others by their whole indexes.
fn compare(args: &PlanArgs, base: &Side, head: &Side) -> anyhow::Result<crate::plan::Plan> {
    let opts = crate::plan::PlanOptions {
        allow_destructive: args.allow_destructive,
        max_delete_share: args.max_delete_share,
        fingerprint: crate::redact::Key::from_env_value(
            std::env::var(crate::redact::KEY_ENV).ok().as_deref(),
        ),
    };
    let (b, h, pruned) = match by_units(base, head) {
        Some(found) => found,
        None => {
            let (bi, hi) = (base.objects.index()?, head.objects.index()?);
            let pruned = crate::plan::prune(&bi, &hi);
            (
                base.objects.only(&pruned.wanted)?,
                head.objects.only(&pruned.wanted)?,
                pruned,
            )
        }
    };
    let plan = match head.capacity.as_deref() {
        Some(after) => {
            let none = crate::capacity::Capacity::default();
            let before = base.capacity.as_deref().unwrap_or(&none);
            crate::plan::plan_pruned(&b, &h, &pruned.totals, (before, after), &opts)
        }
        None => crate::plan::plan_pruned_without_capacity(&b, &h, &pruned.totals, &opts),
    };
    // The objects compared were read back whole.
    b.texts_intact()?;
    h.texts_intact()?;
    Ok(plan)
}

/// Both sides restricted to what differs, found by comparing units first
/// ([`crate::plan::prune_units`]): sides whose objects came from the unit store (cached, or
/// compiled now through the cache). `None` when a side's did not (or a unit cannot be read back).
fn by_units(
    base: &Side,
    head: &Side,
) -> Option<(
    crate::lower::Lowered,
    crate::lower::Lowered,
    crate::plan::Pruned,
)> {
    let (bs, hs) = (base.objects.summary()?, head.objects.summary()?);
    let shared = crate::plan::shared_units(&bs, &hs);
    let (base_index, base_rest) = base.objects.outside(&shared)?;
    let (head_index, head_rest) = head.objects.outside(&shared)?;
    let pruned = crate::plan::prune_units(&bs, &base_index, &hs, &head_index, &shared);
    let b = base_rest.only(&pruned.wanted);
    let h = head_rest.only(&pruned.wanted);
    Some((b, h, pruned))
}

/// Attach to each change (and approval) the commits between base and head that touched its
/// file, warning when a shallow clone cuts that history.
fn attach_history(
    p: &mut crate::plan::Plan,
    repo: &crate::load::git::GitRepo,
    base_id: gix::ObjectId,
    head_id: gix::ObjectId,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let commits = repo.between(Some(base_id), head_id)?;
    let boundary = repo.shallow_boundary();
    if let Some(cut) = commits.iter().find(|c| boundary.iter().any(|b| *b == c.id)) {
        writeln!(
            err,
            "warning: the history between base and head is cut at `{}` (a shallow clone): the commits \
             listed for each change may be incomplete; fetch the whole history (`fetch-depth: 0` with \
             `actions/checkout`, `GIT_DEPTH: 0` in GitLab CI, or `git fetch --unshallow`)",
            cut.short
        )?;
    }
    let history = repo.history();
    p.attach_history(
        |file| -> anyhow::Result<Vec<crate::load::git::CommitInfo>> {
            let mut list = Vec::new();
            for k in &commits {
                if history.touched(k, file)? {
                    list.push(k.clone());
                }
            }
            Ok(list)
        },
    )?;
    Ok(())
}

/// Print the plan in `--format`, and write `--output` and `--pages`.
fn write_plan(
    args: &PlanArgs,
    p: &crate::plan::Plan,
    sides: &crate::plan::render::Sides,
    color: bool,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<()> {
    let full_name = args
        .output
        .as_ref()
        .map_or_else(|| "plinth-plan.md".to_owned(), |o| o.display().to_string());
    let (shown, full) = match args.format {
        PlanFormat::Terminal => {
            let t = crate::plan::render::terminal(p, sides, color);
            (t, crate::plan::render::terminal(p, sides, false))
        }
        PlanFormat::Markdown => (
            crate::plan::render::markdown(
                p,
                sides,
                Some(crate::plan::render::COMMENT_LIMIT),
                &full_name,
            ),
            crate::plan::render::markdown(p, sides, None, &full_name),
        ),
        PlanFormat::Json => {
            let j = crate::plan::render::json(p, sides);
            (j.clone(), j)
        }
    };
    out.write_all(shown.as_bytes())?;
    if let Some(file) = &args.output {
        std::fs::write(file, full)?;
    }
    if let Some(dir) = &args.pages {
        let pages = crate::plan::render::markdown_pages(
            p,
            sides,
            crate::plan::render::COMMENT_LIMIT,
            &full_name,
        );
        write_pages(dir, &pages)?;
        writeln!(
            err,
            "wrote {} page{} to `{}`",
            pages.len(),
            if pages.len() == 1 { "" } else { "s" },
            dir.display()
        )?;
    }
    Ok(())
}

/// Write `page-1.md` … `page-N.md` into `dir`, removing the `page-*.md` of an earlier run.
fn write_pages(dir: &std::path::Path, pages: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_prefix("page-")
            .and_then(|r| r.strip_suffix(".md"))
            && n.parse::<usize>().is_ok_and(|n| n == 0 || n > pages.len())
        {
            std::fs::remove_file(e.path())?;
        }
    }
    for (i, page) in pages.iter().enumerate() {
        std::fs::write(dir.join(format!("page-{}.md", i + 1)), page)?;
    }
    Ok(())
}
