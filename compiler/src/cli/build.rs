//! `plinth build`: check, compile, then write `out/` (or stream one cluster).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::args::{Color, LimitArgs, PolicyArgs};
use super::check::{Format, ReportArgs, exit_code, report};
use super::out_dir::{OutIndex, Update, mark, replace_dir, update_dir};
use super::over;
use super::progress::Spinner;
use crate::load::DirSource;
use crate::render::Paths;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The platform repository (a directory of YAML specs).
    #[arg(default_value = ".")]
    pub repo: PathBuf,
    /// Reuse results of identical earlier builds from this directory (safe to delete).
    #[arg(long, env = "PLINTH_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Output directory; `<out>/<cluster>/` per cluster. Replaced whole on success.
    #[arg(long, default_value = "out")]
    pub out: PathBuf,
    /// Build one cluster only (its directory alone is replaced).
    #[arg(long)]
    pub cluster: Option<String>,
    /// `tree` writes the output directory; `stream` prints one cluster's objects as one YAML
    /// stream to stdout (for `kubectl apply -f -`).
    #[arg(long, value_enum, default_value_t = BuildFormat::Tree)]
    pub format: BuildFormat,
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
    /// When to colour diagnostics (`NO_COLOR` is honoured under `auto`).
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub policies: PolicyArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BuildFormat {
    Tree,
    Stream,
}

pub(super) fn build(
    args: BuildArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    terminal: bool,
) -> anyhow::Result<u8> {
    let mut opts = args.limits.options();
    opts.policies = Some(args.policies.config()?);
    let spinner = terminal.then(Spinner::start);
    if let Some(s) = &spinner {
        opts.progress = Some(s.progress());
    }
    let cache = args.cache_dir.as_ref().map(|d| {
        crate::cache::Cache::new(d)
            .sharing_units()
            .reading_files()
            .reading_policies()
    });
    // A whole build through a cache is lowered against the revision its output holds, when
    // the output is as that build left it (shown beside the compile: see `over`).
    let base = (cache.is_some() && args.format == BuildFormat::Tree && args.cluster.is_none())
        .then(crate::options::BaseUnits::default);
    let promise = base.as_ref().map(crate::options::BaseUnits::promise);
    opts.base = base;
    // The output's index is read beside the compile (a hundred thousand entries at scale).
    let opening = match (&cache, args.format) {
        (Some(c), BuildFormat::Tree) => {
            let (c, target) = (c.clone(), target_path(&args));
            Some(over::open_beside(c, target, promise))
        }
        _ => {
            drop(promise);
            None
        }
    };
    // Through a cache, files whose stamp is unchanged are not read again.
    let texts = cache
        .as_ref()
        .map(|c| std::sync::Arc::new(c.worktree_texts()));
    let source = DirSource::new(&args.repo).with_texts(texts.clone());
    // The revision is stored in the cache beside the writing of the output (both take a
    // while at scale; they share nothing).
    opts.defer_store = cache.is_some();
    let compile = |opts: &crate::Options| match &cache {
        Some(c) => crate::build_cached(&source, opts, c),
        None => crate::build_source(&source, opts),
    };
    let mut built = compile(&opts)?;
    let mut index = opening.map(Opening::Reading);
    let mut over = None;
    if let Some(delta) = built.delta.take() {
        let opened = index.take().and_then(Opening::opened);
        if let Some(o) = &opened {
            built.checked.timings.extend(o.took.iter().copied());
        }
        let rendering = std::time::Instant::now();
        let prepared = opened
            .as_ref()
            .and_then(|o| over::prepare(&delta, o.locks.as_ref()?, &target_path(&args)));
        built.checked.timings.push(("render", rendering.elapsed()));
        match (prepared, opened, built.key.clone()) {
            (Some(p), Some(o), Some(key)) => {
                over = Some((std::sync::Arc::new(*delta), p, o, key));
            }
            (_, opened, _) => {
                // The output is not as the base revision left it, or its lock files cannot
                // take the fresh units' entries: compiled whole.
                opts.base = None;
                built = compile(&opts)?;
                index = opened.map(|o| Opening::Open(Box::new(o.index)));
            }
        }
    }
    // Kept beside the writing, waited for before the end (a store that cannot be written
    // only costs time).
    let kept = texts.map(|t| std::thread::spawn(move || t.flush()));
    let pending = built.pending.take();
    let key = built.key.take();
    let lowered = built.lowered.take().map(std::sync::Arc::new);
    let delta = over.as_ref().map(|(d, ..)| d.clone());
    std::thread::scope(|scope| {
        let storing = cache.as_ref().zip(pending.as_ref()).map(|(c, p)| {
            let (lowered, delta) = (lowered.clone(), delta.clone());
            scope.spawn(move || {
                let started = std::time::Instant::now();
                // A cache that cannot be written only costs time.
                let _ = p.store_either(c, lowered.as_deref(), delta.as_deref());
                started.elapsed()
            })
        });
        let code = finish(
            &args,
            Compiled {
                checked: built.checked,
                lowered,
                over,
                key,
            },
            (spinner, index),
            (&mut *out, &mut *err, terminal),
        );
        if let Some(took) = storing.and_then(|t| t.join().ok())
            && std::env::var_os("PLINTH_TIMINGS").is_some()
        {
            writeln!(
                err,
                "timing {:>8}: {:>8.1} ms (beside the writing)",
                "store revision",
                took.as_secs_f64() * 1000.0
            )?;
        }
        if let Some(k) = kept {
            let _ = k.join();
        }
        code
    })
}

/// The output's index: being read beside the compile, or read.
enum Opening {
    Reading(std::thread::JoinHandle<over::Opened>),
    Open(Box<OutIndex>),
}

impl Opening {
    /// What the reading found (`None`: the thread failed).
    fn opened(self) -> Option<over::Opened> {
        match self {
            Opening::Reading(t) => t.join().ok(),
            Opening::Open(index) => Some(over::Opened {
                index: *index,
                locks: None,
                took: Vec::new(),
            }),
        }
    }
}

/// A compiled build: its objects whole, or its fresh objects written over its output.
struct Compiled {
    checked: crate::Checked,
    /// Shared with the thread storing the revision in the cache, if any.
    lowered: Option<std::sync::Arc<crate::lower::Lowered>>,
    /// Written over the output: the revision's key with them.
    over: Option<(
        std::sync::Arc<crate::lower::delta::Delta>,
        over::Prepared,
        over::Opened,
        String,
    )>,
    /// The revision's key in the cache.
    key: Option<String>,
}

/// Report a compiled build and write its output: the exit code.
fn finish(
    args: &BuildArgs,
    compiled: Compiled,
    (spinner, index): (Option<Spinner>, Option<Opening>),
    (out, err, terminal): (&mut dyn Write, &mut dyn Write, bool),
) -> anyhow::Result<u8> {
    let Compiled {
        checked,
        lowered,
        over,
        key,
    } = compiled;
    // Diagnostics go to stderr too: stop the progress line before them.
    let spinner = spinner.filter(|_| checked.diagnostics.is_empty());
    let write_clock = std::time::Instant::now();
    // Policy read the objects it judged: its findings stand only on texts read back whole.
    if let Some(l) = &lowered {
        l.texts_intact()?;
    }
    if let Some((d, ..)) = &over {
        d.fresh.texts_intact()?;
    }
    let code = report_diagnostics(args, &checked, err, terminal)?;
    if code == 0
        && let Some((_, prepared, opened, key)) = over
    {
        let mut stages = checked.timings.clone();
        // Done with the specs and documents of a whole platform (one thread's 20 ms to free at
        // 10,000 projects).
        super::exit::done_with(checked);
        if let Some(s) = &spinner {
            (s.progress().0)("writing");
        }
        let (objects, clusters) = (prepared.objects, prepared.clusters);
        let locks = opened.locks.unwrap_or_default();
        let target = over::write(
            &args.out,
            (prepared, opened.index, &locks),
            &key,
            &mut stages,
        )?;
        // Done with the lock files' text (tens of megabytes at scale).
        super::exit::done_with(locks);
        timings(&stages, err)?;
        written_line(err, write_clock, (objects, clusters), args, &target)?;
        drop(spinner);
        return Ok(0);
    }
    let Some(lowered) = lowered.filter(|_| code == 0) else {
        timings(&checked.timings, err)?;
        writeln!(err, "error: build stopped; nothing was written")?;
        return Ok(1);
    };
    known_cluster(args.cluster.as_deref(), &lowered)?;
    match args.format {
        BuildFormat::Stream => stream(args.cluster.as_deref(), &lowered, out)?,
        BuildFormat::Tree => {
            let tree = Written {
                checked,
                lowered,
                spinner,
                index,
                key,
                write_clock,
            };
            write_tree(args, tree, err)?;
        }
    }
    Ok(0)
}

/// The closing lines: with `PLINTH_TIMINGS`, how long writing took; what was written where.
fn written_line(
    err: &mut dyn Write,
    write_clock: std::time::Instant,
    (written, n_clusters): (usize, usize),
    args: &BuildArgs,
    target: &std::path::Path,
) -> anyhow::Result<()> {
    if std::env::var_os("PLINTH_TIMINGS").is_some() {
        writeln!(
            err,
            "timing {:>8}: {:>8.1} ms",
            "write",
            write_clock.elapsed().as_secs_f64() * 1000.0
        )?;
    }
    writeln!(
        err,
        "wrote {written} objects for {} to `{}`",
        match &args.cluster {
            Some(c) => format!("cluster `{c}`"),
            None => format!("{n_clusters} cluster(s)"),
        },
        target.display()
    )?;
    Ok(())
}

/// With `PLINTH_TIMINGS` set, how long each stage took (on stderr).
fn timings(stages: &[(&str, std::time::Duration)], err: &mut dyn Write) -> std::io::Result<()> {
    if std::env::var_os("PLINTH_TIMINGS").is_some() {
        for (stage, d) in stages {
            writeln!(
                err,
                "timing {stage:>8}: {:>8.1} ms",
                d.as_secs_f64() * 1000.0
            )?;
        }
    }
    Ok(())
}

/// Report the build's diagnostics (if any) on stderr; the exit code they call for.
fn report_diagnostics(
    args: &BuildArgs,
    checked: &crate::Checked,
    err: &mut dyn Write,
    terminal: bool,
) -> anyhow::Result<u8> {
    let paths = Paths::new(args.repo.to_string_lossy());
    let diags = checked.diagnostics.clone().into_sorted();
    let report_args = ReportArgs {
        format: Format::Human,
        strict: args.strict,
        color: args.color,
        max_diagnostics: 500,
    };
    let code = exit_code(&diags, args.strict);
    if !diags.is_empty() {
        report(
            &diags,
            &checked.snapshot,
            &paths,
            &report_args,
            err,
            terminal,
        )?;
    }
    Ok(code)
}

/// `--cluster` must name one of the platform's clusters.
fn known_cluster(cluster: Option<&str>, lowered: &crate::lower::Lowered) -> anyhow::Result<()> {
    if let Some(c) = cluster
        && !lowered.clusters.contains_key(c)
    {
        anyhow::bail!(
            "unknown cluster `{c}`; the platform's clusters are {}",
            lowered
                .clusters
                .keys()
                .map(|k| format!("`{k}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}

/// `--format stream`: one cluster's objects as one YAML stream.
fn stream(
    cluster: Option<&str>,
    lowered: &crate::lower::Lowered,
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let cluster = match (cluster, lowered.clusters.len()) {
        (Some(c), _) => c.to_owned(),
        (None, 1) => lowered.clusters.keys().next().cloned().unwrap_or_default(),
        (None, _) => anyhow::bail!(
            "the platform has several clusters; choose one with `--cluster` for `--format stream`"
        ),
    };
    let text = crate::emit::stream(&lowered.clusters[&cluster]);
    lowered.texts_intact()?;
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// What a successful build hands to the tree writer.
struct Written {
    checked: crate::Checked,
    /// Shared with the thread storing the revision in the cache, if any.
    lowered: std::sync::Arc<crate::lower::Lowered>,
    spinner: Option<Spinner>,
    /// The output's index, being read (with a cache).
    index: Option<Opening>,
    /// The revision's key in the cache.
    key: Option<String>,
    /// When writing began (for `PLINTH_TIMINGS`).
    write_clock: std::time::Instant,
}

/// `--format tree`: replace `--out` (or its cluster directory) with the build's files.
fn write_tree(args: &BuildArgs, built: Written, err: &mut dyn Write) -> anyhow::Result<()> {
    let Written {
        checked,
        lowered,
        spinner,
        index,
        key,
        write_clock,
    } = built;
    if args.out.exists() && !args.out.is_dir() {
        anyhow::bail!(
            "cannot write the output to `{}`: it is a file; `--out` names a directory (created when missing)",
            args.out.display()
        );
    }
    if let Some(s) = &spinner {
        (s.progress().0)("writing");
    }
    // What is left to do needs neither the specs nor the objects once rendered: free
    // them as the tree is made (the peak memory of a large build is here).
    let mut stages = checked.timings.clone();
    drop(checked);
    let written = lowered
        .clusters
        .iter()
        .filter(|(c, _)| args.cluster.as_ref().is_none_or(|x| x == *c))
        .map(|(_, o)| o.manifests.len())
        .sum::<usize>();
    let n_clusters = lowered.clusters.len();
    let target = match &args.cache_dir {
        // With a cache, what was written last is known: only what changed is rendered.
        Some(cache) => {
            // The index names the revision a whole build wrote.
            let revision = key.as_deref().filter(|_| args.cluster.is_none());
            let target = write_indexed(args, (cache, index, revision), &lowered, &mut stages)?;
            // Done with the objects (freeing a hundred thousand one by one takes 50 ms at
            // 10,000 projects).
            super::exit::done_with(lowered);
            target
        }
        None => {
            // Nothing else holds the objects without a cache: each is freed once rendered.
            let tree = match std::sync::Arc::try_unwrap(lowered) {
                Ok(lowered) => crate::emit::into_tree(lowered, args.cluster.as_deref()),
                Err(shared) => crate::emit::tree(&shared, args.cluster.as_deref()),
            }
            .map_err(anyhow::Error::msg)?;
            replace_output(args, tree)?
        }
    };
    timings(&stages, err)?;
    written_line(err, write_clock, (written, n_clusters), args, &target)?;
    drop(spinner);
    Ok(())
}

/// The directory a build writes: `--out`, or with `--cluster` its directory.
fn target_path(args: &BuildArgs) -> PathBuf {
    match &args.cluster {
        Some(c) => args.out.join(c),
        None => args.out.clone(),
    }
}

/// [`target_path`], made ready: with `--cluster`, in a marked `--out` (created when missing).
fn target_dir(args: &BuildArgs) -> anyhow::Result<PathBuf> {
    if args.cluster.is_some() {
        std::fs::create_dir_all(&args.out).map_err(|e| {
            anyhow::Error::new(e).context(format!("cannot create `{}`", args.out.display()))
        })?;
        mark(&args.out)?;
    }
    Ok(target_path(args))
}

/// The tree's paths relative to the directory written (without `<cluster>/` under
/// `--cluster`).
fn relative(args: &BuildArgs, files: crate::emit::Files) -> crate::emit::Files {
    let Some(c) = &args.cluster else {
        return files;
    };
    let prefix = format!("{c}/");
    let strip = |p: String| p.strip_prefix(&prefix).map(str::to_owned);
    crate::emit::Files {
        texts: files
            .texts
            .into_iter()
            .filter_map(|(p, t)| Some((strip(p)?, t)))
            .collect(),
        ids: files
            .ids
            .into_iter()
            .filter_map(|(p, i)| Some((strip(p)?, i)))
            .collect(),
        differ: files.differ.into_iter().filter_map(strip).collect(),
    }
}

/// Write through the output index kept in `cache` ([`OutIndex`]; `opened`: being read since
/// the build began): objects whose file is known to hold them are not rendered; the rest is
/// compared and written as by [`replace_output`].
fn write_indexed(
    args: &BuildArgs,
    (cache, opened, revision): (&std::path::Path, Option<Opening>, Option<&str>),
    lowered: &crate::lower::Lowered,
    timings: &mut Vec<(&'static str, std::time::Duration)>,
) -> anyhow::Result<PathBuf> {
    let mut clock = std::time::Instant::now();
    let mut lap = |name: &'static str, timings: &mut Vec<(&'static str, std::time::Duration)>| {
        timings.push((name, clock.elapsed()));
        clock = std::time::Instant::now();
    };
    let target = target_dir(args)?;
    // The directory itself is opened now (it may have been made or replaced meanwhile).
    let index = match opened.and_then(Opening::opened) {
        Some(o) => o.index.reopened(),
        None => OutIndex::open(Some(cache), &target),
    };
    // Before the objects are rendered on the thread pool, which asks the index about each.
    index.decode_now();
    let prefix = args.cluster.as_ref().map(|c| format!("{c}/"));
    let known = |p: &str, id: &str| {
        let rel = prefix.as_deref().map_or(Some(p), |x| p.strip_prefix(x));
        rel.is_some_and(|r| index.known(r, id))
    };
    let files =
        crate::emit::files(lowered, args.cluster.as_deref(), &known).map_err(anyhow::Error::msg)?;
    lowered.texts_intact()?;
    let mut files = relative(args, files);
    // The lock files change with any object: their recorded content says so without a read.
    files.differ = files
        .texts
        .keys()
        .filter(|p| p.ends_with(".json") || p.ends_with("kustomization.yaml"))
        .filter(|p| index.differs(p, &files.ids[p.as_str()]))
        .cloned()
        .collect();
    lap("render", timings);
    if update_dir(&target, &files, Some(&index))? == Update::Whole {
        // Too much changed to update in place: render everything and write it whole.
        let all = crate::emit::files(lowered, args.cluster.as_deref(), &|_, _| false)
            .map_err(anyhow::Error::msg)?;
        lowered.texts_intact()?;
        let files = relative(args, all);
        update_dir(&target, &files, Some(&index))?;
        lap("update", timings);
        // Written anew: nothing was vouched for.
        index.record(&files.ids, None, revision);
        lap("index", timings);
        return Ok(target);
    }
    lap("update", timings);
    // What the index vouched for is what was not rendered.
    index.record(&files.ids, Some(&files.texts), revision);
    lap("index", timings);
    Ok(target)
}

/// Swap the tree in: the whole of `--out`, or with `--cluster` its directory alone (in a
/// marked `--out`). Returns the directory written.
fn replace_output(args: &BuildArgs, tree: crate::emit::Tree) -> anyhow::Result<PathBuf> {
    let target = target_dir(args)?;
    let tree = match &args.cluster {
        Some(c) => {
            let prefix = format!("{c}/");
            tree.into_iter()
                .filter_map(|(p, t)| p.strip_prefix(&prefix).map(|r| (r.to_owned(), t)))
                .collect()
        }
        None => tree,
    };
    replace_dir(&target, tree)?;
    Ok(target)
}
