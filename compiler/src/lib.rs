//! plinth: a GitOps compiler for machine-learning platforms.
//!
//! The compiler is a pipeline, one module per stage:
//!
//! load → parse → resolve → check → lower → emit / plan
//!
//! - [`load`] reads a repository (working tree or git revision) into a [`load::Snapshot`];
//!   the only stage that touches the file system.
//! - [`parse`] turns YAML into documents whose every node has a span.
//! - [`resolve`] types documents into [`specs::Specs`], validated against [`schema`].
//! - [`check`] runs cross-object semantics.
//! - [`lower`] compiles specs into manifests per cluster; [`verify`] checks them against the
//!   Kubernetes and CRD schemas; [`emit`] lays them out as files.
//!
//! User mistakes are [`diag::Diagnostic`] values, accumulated across stages; `Result` errors
//! are for system failures only. Nothing in the library prints: [`render`] turns diagnostics
//! into text and the [`cli`] writes it.

pub mod cache;
pub mod capacity;
pub mod check;
pub mod cli;
pub mod conftest;
pub mod crd;
pub mod diag;
pub mod emit;
pub mod generate;
pub mod load;
pub mod lower;
pub mod model;
pub mod names;
pub mod options;
pub mod output;
pub mod parse;
pub mod plan;
pub mod policy;
pub mod redact;
pub mod render;
pub mod report;
pub mod resolve;
pub mod schema;
pub mod specs;
pub mod template;
pub mod verify;

use std::sync::Arc;

use diag::Diagnostics;
use load::{FileRole, LoadError, Snapshot, Source};
use parse::Document;
use policy::PolicyFile;
use specs::Specs;

pub use options::{Options, PolicyConfig, PolicyMemo, Progress};

/// A repository read, typed and checked.
#[derive(Debug)]
pub struct Checked {
    pub snapshot: Snapshot,
    pub docs: Vec<Arc<Document>>,
    pub specs: Specs,
    pub diagnostics: Diagnostics,
    /// The manifests, when everything before lowering was error-free.
    pub lowered: Option<lower::Lowered>,
    /// How long each stage took (reported with `PLINTH_TIMINGS=1`).
    pub timings: Vec<(&'static str, std::time::Duration)>,
    /// The manifests lowered against a base's units ([`Options::base`]) instead of
    /// [`Checked::lowered`]: only the units that differ from the base's.
    pub delta: Option<lower::delta::Delta>,
    /// The GPU capacity of the specs, when it was computed beside lowering (against a base's
    /// units); else it is computed when a cached revision keeps it.
    pub capacity: Option<capacity::Capacity>,
    /// What its policy evaluation found nothing in, when it found nothing
    /// ([`policy::Clean`]: kept with the revision for a later one compiled against it).
    pub policy_clean: Option<policy::Clean>,
    /// What the check found per spec (when there is a Platform), kept with the revision for a
    /// later one checked against it ([`check::record`]).
    pub check: Option<Arc<check::record::Record>>,
    /// Every project's policy-data digest ([`policy::ProjectDigests`]), when a revision
    /// compiled whole made them for its policies: kept with its revision.
    pub projects: Option<Vec<[u8; 32]>>,
}

/// Run load → parse → resolve → check (semantics, then the compiled output and policies).
pub fn check_source(source: &dyn Source, opts: &Options) -> Result<Checked, LoadError> {
    let t = std::time::Instant::now();
    opts.stage("loading");
    let (snapshot, diagnostics) = load::load(source, &opts.limits)?;
    let load_time = t.elapsed();
    let mut checked = check_snapshot(snapshot, diagnostics, opts);
    checked.timings.insert(0, ("load", load_time));
    Ok(checked)
}

/// Everything after loading.
pub fn check_snapshot(snapshot: Snapshot, mut diagnostics: Diagnostics, opts: &Options) -> Checked {
    let mut timings = Vec::new();
    let mut clock = std::time::Instant::now();
    let mut lap = |name: &'static str, timings: &mut Vec<(&'static str, std::time::Duration)>| {
        timings.push((name, clock.elapsed()));
        clock = std::time::Instant::now();
    };
    opts.stage("parsing");
    diagnostics.extend(no_spec_files(&snapshot));
    // Parsing and typing each file (what a cache kept of an unchanged file, else parsed).
    let files = opts.files.as_ref().map(|f| resolve::Files {
        store: f.store.as_ref(),
        salt: &f.salt,
    });
    let (docs, typed, d) = resolve::read(&snapshot, opts.yaml, files.as_ref());
    diagnostics.extend(d);
    lap("parse", &mut timings);
    opts.stage("validating");
    let (specs, d) = resolve::index(&docs, typed);
    diagnostics.extend(d);
    if let Some(files) = &opts.files {
        // Every file is read: what was kept and added is written back now, not held through
        // lowering and policies. (A memo that cannot be written only costs time.)
        files.store.finish();
    }
    lap("resolve", &mut timings);
    let (found, check_record, against) =
        check_specs(&specs, &snapshot, opts, diagnostics.has_errors());
    diagnostics.extend(found);
    lap(AgainstBase::check_lap(against.as_ref()), &mut timings);
    let mut lowered = None;
    let mut delta = None;
    let mut gpus = None;
    let mut policy_clean = None;
    if !diagnostics.has_errors()
        && let Some((d, (ds, clean), laps, c)) =
            check_delta(&snapshot, &docs, &specs, opts, against)
    {
        diagnostics.extend(ds);
        timings.extend(laps);
        delta = Some(d);
        gpus = Some(c);
        policy_clean = clean;
    } else if !diagnostics.has_errors() {
        opts.stage("lowering");
        // Lowering verifies every object it emits (per unit, so a reused unit is verified).
        let (l, d) = match &opts.units {
            Some(store) => {
                lower::lower_reusing(&specs, &snapshot, &store.salt, store.store.as_ref())
            }
            None => lower::lower(&specs, &snapshot),
        };
        diagnostics.extend(d);
        lap("lower", &mut timings);
        lowered = Some(l);
    } else if specs.platform.is_some() {
        // One run reports every stage: the specs that resolved are lowered too, for the
        // problems of their templates (a template's syntax, values, budget and output do not
        // depend on the specs that failed, which are not lowered). The result is not kept.
        // A problem at a place already reported (a template that does not exist) is not
        // reported twice.
        opts.stage("lowering");
        let reported: std::collections::BTreeSet<(std::sync::Arc<str>, diag::Pos)> = diagnostics
            .iter()
            .filter(|d| d.is_error())
            .filter_map(|d| d.primary.as_ref())
            .map(|l| (l.span.file.clone(), l.span.start))
            .collect();
        let (_, d) = lower::lower(&specs, &snapshot);
        diagnostics.extend(d.into_iter().filter(|d| {
            !d.primary
                .iter()
                .chain(&d.related)
                .any(|l| reported.contains(&(l.span.file.clone(), l.span.start)))
                && matches!(
                    d.code,
                    diag::Code::TemplateSyntax
                        | diag::Code::TemplateRender
                        | diag::Code::TemplateBudget
                        | diag::Code::TemplateOutput
                        | diag::Code::TemplateValues
                )
        }));
        lap("lower", &mut timings);
    }
    let mut projects = None;
    if let Some(cfg) = opts.policies.as_ref().filter(|_| delta.is_none()) {
        opts.stage("evaluating policies");
        let (found, clean, digests) =
            policies_whole(cfg, (&snapshot, &docs, &specs), &lowered, opts);
        diagnostics.extend(found);
        (policy_clean, projects) = (clean, digests);
        lap("policy", &mut timings);
    }
    Checked {
        snapshot,
        docs,
        specs,
        diagnostics,
        lowered,
        timings,
        delta,
        capacity: gpus,
        policy_clean,
        check: check_record.map(Arc::new),
        projects,
    }
}

/// The policies of a revision compiled whole; with every project's policy-data digest when it
/// compiled through a cache (made once, for the evaluation and the revision's entry).
fn policies_whole(
    cfg: &PolicyConfig,
    (snapshot, docs, specs): (&Snapshot, &[Arc<Document>], &Specs),
    lowered: &Option<lower::Lowered>,
    opts: &Options,
) -> (Diagnostics, Option<policy::Clean>, Option<Vec<[u8; 32]>>) {
    let files = policy_files(cfg, specs, snapshot);
    let digests = (opts.units.is_some() && lowered.is_some())
        .then(|| policy::ProjectDigests::of(specs, None));
    let (found, clean) = policy::evaluate_digested(
        &files,
        &cfg.options,
        (specs, docs, lowered.as_ref()),
        opts.policy_memo.as_ref().map(|m| &m.0),
        digests.as_ref(),
    );
    (
        found,
        clean,
        digests.map(policy::ProjectDigests::into_stored),
    )
}

/// The semantic check, with what it found per spec; against a base (a plan's head, the specs
/// without `errors`), what the base's check found stands for the rules an edit cannot reach,
/// and the head's revision is made once, for the check and lowering.
fn check_specs(
    specs: &Specs,
    snapshot: &Snapshot,
    opts: &Options,
    errors: bool,
) -> (
    Diagnostics,
    Option<check::record::Record>,
    Option<AgainstBase>,
) {
    let against = (!errors)
        .then(|| against_base(specs, snapshot, opts))
        .flatten();
    let base = against
        .as_ref()
        .and_then(|a| Some((a.check.as_deref()?, a.changed()?)));
    let (found, record, taken) = check::check_recorded(specs, snapshot, base);
    let against = against.map(|a| AgainstBase {
        checked: taken,
        ..a
    });
    (found, record, against)
}

/// A head compiled against a base: the head's revision and the files changed since the base's
/// (when the two have the same files), made once for the check and lowering, and what the
/// base's check found.
struct AgainstBase {
    since: lower::rekey::Since,
    /// The two have the same view graph.
    same_graph: bool,
    /// The check took the base's record where an edit cannot reach.
    checked: bool,
    check: Option<Arc<check::record::Record>>,
}

impl AgainstBase {
    /// The spec files changed since the base, when the two have the same files and view graph
    /// (what the check and the GPU capacity take the base's results by).
    fn changed(&self) -> Option<&load::Changed> {
        self.since.changed.as_ref().filter(|_| self.same_graph)
    }

    /// The check's name in the timings: whether it took the base's record.
    fn check_lap(against: Option<&AgainstBase>) -> &'static str {
        if against.is_some_and(|a| a.checked) {
            "check (against the base)"
        } else {
            "check"
        }
    }
}

/// [`AgainstBase`] when the options name a base that keeps its revision (waiting for it).
fn against_base(specs: &Specs, snapshot: &Snapshot, opts: &Options) -> Option<AgainstBase> {
    opts.units.as_ref()?;
    let base = opts.base.as_ref()?.wait()?;
    let keyed = base.keyed.as_ref()?;
    let since = lower::rekey::Since::of(specs, snapshot, &keyed.revision);
    Some(AgainstBase {
        same_graph: since.revision.graph == keyed.revision.graph,
        since,
        checked: false,
        check: base.check.clone(),
    })
}

/// Nothing to read is never a clean platform: it is the wrong directory.
fn no_spec_files(snapshot: &Snapshot) -> Option<diag::Diagnostic> {
    snapshot.with_role(load::FileRole::Spec).next().is_none().then(|| {
        diag::Diagnostic::new(
            diag::Code::PlatformCount,
            "the repository holds no spec files, so no `Platform`",
        )
        .hint("run plinth in the platform repository or name it (`plinth check PATH`); specs are `.yaml`/`.yml` files with `kind: Platform`, `Project`, …")
    })
}

/// Lowering and policies against a base's units ([`lower::delta`]): when the options name a
/// base and a unit store, and the base's units can stand for the ones not read (lowering and
/// the policy memo show it); `None` otherwise (then the whole revision is lowered).
#[allow(clippy::type_complexity)]
fn check_delta(
    snapshot: &Snapshot,
    docs: &[Arc<Document>],
    specs: &Specs,
    opts: &Options,
    against: Option<AgainstBase>,
) -> Option<(
    lower::delta::Delta,
    (Diagnostics, Option<policy::Clean>),
    Vec<(&'static str, std::time::Duration)>,
    capacity::Capacity,
)> {
    let units = opts.units.as_ref()?;
    let base = opts.base.as_ref()?.wait()?;
    let changed = against.as_ref().and_then(|a| a.changed().cloned());
    let since = against.map(|a| a.since);
    opts.stage("lowering");
    let t = std::time::Instant::now();
    // Beside: the GPU capacity (which the revision's entry keeps), one thread's walk of every
    // allocation, rollout and App; and the policies' engines with their data.
    let policies = opts
        .policies
        .as_ref()
        .map(|cfg| (cfg, policy_files(cfg, specs, snapshot)));
    // Two halves, so the core that finishes its part first takes up the other's.
    let (lowered, (capacity, (projects, engines))) = rayon::join(
        || {
            let store = units.store.as_ref();
            lower::delta::lower_delta(specs, snapshot, &units.salt, store, (&base, since))
        },
        || {
            let memo = opts.policy_memo.as_ref().map(|m| &m.0);
            rayon::join(
                || head_capacity(specs, opts, changed.as_ref()),
                || {
                    // Every project's policy data digested: the base's where an edit cannot
                    // reach; kept with the revision.
                    let kept = base.keyed.as_deref();
                    let kept = kept.and_then(|k| k.revision.projects.as_deref());
                    let projects = policy::ProjectDigests::of(specs, kept.zip(changed.as_ref()));
                    let engines = policies.as_ref().map(|(cfg, files)| {
                        let options = &cfg.options;
                        policy::Engines::new(files, options, (specs, docs), memo, Some(&projects))
                    });
                    (projects, engines)
                },
            )
        },
    );
    let (mut delta, mut diags) = lowered?;
    Arc::make_mut(&mut delta.revision).projects = Some(projects.into_stored());
    let lowered = t.elapsed();
    let t = std::time::Instant::now();
    let mut clean = None;
    if let (Some((cfg, files)), Some(engines)) = (&policies, engines) {
        opts.stage("evaluating policies");
        // What an evaluation found nothing in among the base's inputs is not looked up again:
        // its units and the documents of files changed neither since nor before it.
        let base_clean = base.policy_clean.as_deref();
        let changed: Option<load::Changed> =
            delta
                .changed
                .as_deref()
                .zip(base_clean)
                .map(|(changed, clean)| {
                    let unverified = clean.files.iter().map(|f| Arc::from(f.as_str()));
                    changed.iter().cloned().chain(unverified).collect()
                });
        let taken = base_clean.map(|clean| policy::Taken {
            clean: &clean.kinds,
            changed: changed.as_ref(),
            unverified: &clean.units,
        });
        let (found, c) = policy::evaluate_delta(
            files,
            &cfg.options,
            engines,
            specs,
            docs,
            &delta.fresh,
            &delta.opaque(),
            opts.policy_memo.as_ref().map(|m| &m.0),
            taken,
        )?;
        diags.extend(found);
        clean = c;
    }
    Some((
        delta,
        (diags, clean),
        [("lower (delta)", lowered), ("policy", t.elapsed())]
            .into_iter()
            .chain(capacity.1.map(|d| ("capacity (against the base)", d)))
            .collect(),
        capacity.0,
    ))
}

/// The head's GPU capacity: the base's where an edit cannot reach ([`capacity::Capacity::against`],
/// with how long that took; debug builds compute it whole as well), else computed whole.
fn head_capacity(
    specs: &Specs,
    opts: &Options,
    changed: Option<&load::Changed>,
) -> (capacity::Capacity, Option<std::time::Duration>) {
    let t = std::time::Instant::now();
    let base = opts.base.as_ref().and_then(options::BaseUnits::capacity);
    let taken = base
        .as_deref()
        .zip(changed)
        .and_then(|(b, c)| capacity::Capacity::against(specs, b, c));
    match taken {
        Some(taken) => {
            let took = t.elapsed();
            #[cfg(debug_assertions)]
            assert_eq!(taken, capacity::Capacity::of(specs), "capacity::against");
            (taken, Some(took))
        }
        None => (capacity::Capacity::of(specs), None),
    }
}

/// The policies of a run: the default library, the repository's policy directories, extras.
pub fn policy_files(cfg: &PolicyConfig, specs: &Specs, snapshot: &Snapshot) -> Vec<PolicyFile> {
    let settings = specs.platform.as_ref().map(|p| &p.spec.policies);
    let mut files = Vec::new();
    if cfg.default_library && settings.is_none_or(|s| s.default_library) {
        files.extend(policy::default_library());
    }
    let dirs: Vec<String> = settings
        .map(|s| {
            s.directories
                .iter()
                .map(|d| format!("{}/", d.trim_end_matches('/')))
                .collect()
        })
        .unwrap_or_default();
    files.extend(
        snapshot
            .with_role(FileRole::Policy)
            .filter(|f| {
                dirs.iter().any(|d| f.path.starts_with(d.as_str()))
                    && !f.path.ends_with("_test.rego")
            })
            .map(|f| PolicyFile {
                path: f.path.clone(),
                text: f.text.clone(),
            }),
    );
    files.extend(cfg.extra.iter().cloned());
    files
}

/// A repository compiled: its check, and the manifests when the check found no errors.
#[derive(Debug)]
pub struct Built {
    pub checked: Checked,
    /// `None` when errors stopped the build (the diagnostics say why).
    pub lowered: Option<lower::Lowered>,
    /// The revision to store in the cache, left to the caller ([`Options::defer_store`]).
    pub pending: Option<PendingStore>,
    /// The manifests lowered against a base's units ([`Checked::delta`]), when errors did not
    /// stop the build (`lowered` is then `None`).
    pub delta: Option<Box<lower::delta::Delta>>,
    /// The revision's key in the cache (built through one).
    pub key: Option<String>,
}

/// A compiled revision not yet stored in the cache ([`Options::defer_store`]): everything its
/// entry holds but the objects, which stay in [`Built::lowered`].
#[derive(Debug)]
pub struct PendingStore {
    key: String,
    platform_files: Vec<String>,
    diagnostics: Vec<diag::Diagnostic>,
    capacity: Option<Arc<capacity::Capacity>>,
    revision: Option<Arc<lower::rekey::Revision>>,
    policy_clean: Option<policy::Clean>,
    check: Option<Arc<check::record::Record>>,
}

impl PendingStore {
    /// What the entry of `checked` under `key` holds besides the objects (its GPU capacity
    /// and revision when it `compiled`; `revision` when lowering made it).
    fn of(
        checked: &mut Checked,
        key: &str,
        compiled: bool,
        revision: Option<Arc<lower::rekey::Revision>>,
    ) -> PendingStore {
        let mut platform_files: Vec<String> = checked
            .docs
            .iter()
            .filter(|d| d.kind() == Some("Platform"))
            .map(|d| d.file.to_string())
            .collect();
        platform_files.dedup();
        PendingStore {
            key: key.to_owned(),
            platform_files,
            diagnostics: checked.diagnostics.clone().into_sorted(),
            capacity: compiled.then(|| {
                Arc::new(
                    checked
                        .capacity
                        .take()
                        .unwrap_or_else(|| capacity::Capacity::of(&checked.specs)),
                )
            }),
            policy_clean: checked.policy_clean.take().filter(|_| compiled),
            check: checked.check.clone().filter(|_| compiled),
            revision: compiled.then(|| {
                let mut revision = revision.unwrap_or_else(|| {
                    Arc::new(lower::rekey::Revision::of(
                        &checked.specs,
                        &checked.snapshot,
                    ))
                });
                if revision.projects.is_none() {
                    // Kept for a later revision's policies, even when this one had none.
                    let made = checked.projects.take();
                    let made = made.unwrap_or_else(|| {
                        policy::ProjectDigests::of(&checked.specs, None).into_stored()
                    });
                    Arc::make_mut(&mut revision).projects = Some(made);
                }
                revision
            }),
        }
    }

    /// The GPU capacity of the revision (computed for its entry), shared.
    pub fn capacity(&self) -> Option<&Arc<capacity::Capacity>> {
        self.capacity.as_ref()
    }

    /// Store the revision: lowered against a base's units when `delta` is given (its
    /// [`Built::delta`]), else its objects are `lowered`.
    pub fn store_either(
        &self,
        cache: &cache::Cache,
        lowered: Option<&lower::Lowered>,
        delta: Option<&lower::delta::Delta>,
    ) -> std::io::Result<()> {
        match delta {
            Some(d) => self.store_delta(cache, d),
            None => self.store(cache, lowered),
        }
    }

    /// Store the revision lowered against a base's units (its [`Built::delta`]).
    pub fn store_delta(
        &self,
        cache: &cache::Cache,
        delta: &lower::delta::Delta,
    ) -> std::io::Result<()> {
        cache.store_delta(
            &self.key,
            &cache::EntryRef {
                platform_files: &self.platform_files,
                diagnostics: &self.diagnostics,
                lowered: None,
                capacity: self.capacity.as_deref(),
                revision: self.revision.as_deref(),
                policy_clean: self.policy_clean.as_ref(),
                check: self.check.as_deref(),
            },
            delta,
        )
    }

    /// Store the revision, whose objects are `lowered` (its [`Built::lowered`]).
    pub fn store(
        &self,
        cache: &cache::Cache,
        lowered: Option<&lower::Lowered>,
    ) -> std::io::Result<()> {
        cache.store(
            &self.key,
            &cache::EntryRef {
                platform_files: &self.platform_files,
                diagnostics: &self.diagnostics,
                lowered,
                capacity: self.capacity.as_deref(),
                revision: self.revision.as_deref(),
                policy_clean: self.policy_clean.as_ref(),
                check: self.check.as_deref(),
            },
        )
    }
}

/// Check, then lower and verify. Nothing is produced when any stage reports an error.
pub fn build_source(source: &dyn Source, opts: &Options) -> Result<Built, LoadError> {
    let mut checked = check_source(source, opts)?;
    let lowered = if checked.diagnostics.has_errors() {
        None
    } else {
        checked.lowered.take()
    };
    Ok(Built {
        checked,
        lowered,
        pending: None,
        delta: None,
        key: None,
    })
}

/// [`build_source`] through a cache: an unchanged repository (same bytes, options and plinth)
/// is not compiled again. The snapshot is always loaded (it is the key, and diagnostics show
/// its lines); on a hit, the Platform document is parsed again so callers can read it.
pub fn build_cached(
    source: &dyn Source,
    opts: &Options,
    cache: &cache::Cache,
) -> Result<Built, LoadError> {
    let t = std::time::Instant::now();
    let (snapshot, load_diags) = load::load(source, &opts.limits)?;
    Ok(build_loaded(snapshot, load_diags, opts, Some(cache), t))
}

/// Build a loaded snapshot (`load_diags`: what loading it reported), through `cache` when
/// given. `started`: when loading began, for the timings.
pub fn build_loaded(
    snapshot: Snapshot,
    load_diags: Diagnostics,
    opts: &Options,
    cache: Option<&cache::Cache>,
    started: std::time::Instant,
) -> Built {
    let retry = load_diags.clone();
    match build_or_index(snapshot, load_diags, opts, cache, started) {
        Compiled::Built(b) => b,
        Compiled::Cached { mut built, entry } => {
            if built.checked.diagnostics.has_errors() {
                return built;
            }
            match entry.lowered() {
                Some(l) => {
                    built.lowered = Some(l);
                    built
                }
                // The objects file is gone or damaged: compile (and store) again.
                None => build_fresh(built.checked.snapshot, retry, opts, cache, started, None),
            }
        }
    }
}

/// A compile, or a cached one whose objects have not been read (see [`cache::Entry`]).
#[derive(Debug)]
pub enum Compiled {
    Built(Built),
    /// `built.lowered` is `None`; the objects are in `entry`.
    Cached {
        built: Built,
        entry: Box<cache::Entry>,
    },
}

/// [`build_loaded`], except that a cache hit does not read the objects: a plan reads only the
/// ones that differ from the other side.
pub fn build_or_index(
    snapshot: Snapshot,
    load_diags: Diagnostics,
    opts: &Options,
    cache: Option<&cache::Cache>,
    started: std::time::Instant,
) -> Compiled {
    let t = started;
    let key = cache.map(|c| c.key(&snapshot, opts));
    if let Some(entry) = cache.zip(key.as_deref()).and_then(|(c, k)| c.load(k)) {
        // Only the files holding the Platform are parsed again (the same bytes as when the
        // entry was written: they are part of its key).
        let platform_files = Snapshot {
            files: snapshot
                .files
                .iter()
                .filter(|f| entry.platform_files.iter().any(|p| *p == *f.path))
                .cloned()
                .collect(),
        };
        let (docs, _) = parse::parse(&platform_files, opts.yaml);
        let platform_docs: Vec<Arc<Document>> = docs
            .into_iter()
            .filter(|d| d.kind() == Some("Platform"))
            .collect();
        let (specs, _) = resolve::resolve(&platform_docs);
        let mut diagnostics = Diagnostics::new();
        diagnostics.extend(entry.diagnostics.iter().cloned());
        let checked = Checked {
            snapshot,
            docs: platform_docs,
            specs,
            diagnostics,
            lowered: None,
            timings: vec![("cache hit", t.elapsed())],
            delta: None,
            capacity: None,
            policy_clean: None,
            check: None,
            projects: None,
        };
        let built = Built {
            checked,
            lowered: None,
            pending: None,
            delta: None,
            key: key.clone(),
        };
        return Compiled::Cached {
            built,
            entry: Box::new(entry),
        };
    }
    Compiled::Built(build_fresh(snapshot, load_diags, opts, cache, started, key))
}

/// A revision compiled against a base's units whose policy evaluation found nothing covers the
/// base's units it shares and the base's documents in files it did not change: kept beside the
/// base's entry ([`cache::Cache::keep_clean`]) for the next revision compiled against it
/// (unless the base's own evaluation covers it all).
fn keep_base_clean(cache: &cache::Cache, checked: &Checked, opts: &Options) {
    let (Some(delta), Some(kinds)) = (&checked.delta, &checked.policy_clean) else {
        return;
    };
    let Some(base) = opts.base.as_ref().and_then(options::BaseUnits::wait) else {
        return;
    };
    let (Some(key), Some(keyed), Some(changed)) = (&base.key, &base.keyed, &delta.changed) else {
        return;
    };
    if base
        .policy_clean
        .as_ref()
        .is_some_and(|c| c.units.is_empty() && c.files.is_empty() && c.kinds == *kinds)
    {
        return;
    }
    let shared: std::collections::HashSet<&str> = delta.keys().iter().map(String::as_str).collect();
    let clean = lower::delta::BaseClean {
        kinds: kinds.clone(),
        units: keyed
            .keys
            .iter()
            .filter(|k| !shared.contains(k.as_str()))
            .cloned()
            .collect(),
        files: changed.iter().map(|f| f.to_string()).collect(),
    };
    cache.keep_clean(key, &clean);
}

/// Compile (no whole-revision hit), reusing units and policy results of the cache, and store
/// the result under `key` (computed here when `None`).
fn build_fresh(
    snapshot: Snapshot,
    load_diags: Diagnostics,
    opts: &Options,
    cache: Option<&cache::Cache>,
    started: std::time::Instant,
    key: Option<String>,
) -> Built {
    let load_time = started.elapsed();
    let key = key.or_else(|| cache.map(|c| c.key(&snapshot, opts)));
    // A miss still reuses the units whose inputs did not change, and the policy results of
    // inputs that did not change (both memoised per input in the cache).
    // The unit store's index and the spec files' memo are read at once (each tens of
    // thousands of entries at scale).
    let opened = std::time::Instant::now();
    let (pack, file_memo) = match cache {
        Some(c) => {
            let (units, files) = rayon::join(
                || c.units_for_compile(),
                || opts.files.is_none().then(|| c.file_memo()),
            );
            (Some((units, c.unit_salt())), files)
        }
        None => (None, None),
    };
    let mut unit_opts;
    let opts = match (&pack, cache) {
        (Some((store, salt)), Some(c)) => {
            unit_opts = opts.clone();
            // A store the caller lends (a plan handing its base's units to its head, in
            // memory) is looked up first and offered every unit too; the cache's is behind it.
            let store: Arc<dyn lower::UnitStore> = match &opts.units {
                Some(lent) => Arc::new(lower::units::Layered {
                    first: lent.store.clone(),
                    then: store.clone(),
                }),
                None => store.clone(),
            };
            unit_opts.units = Some(options::Units {
                store,
                salt: salt.clone(),
            });
            if unit_opts.policy_memo.is_none() {
                unit_opts.policy_memo = Some(PolicyMemo(Arc::new(c.policy_memo())));
            }
            if let Some(memo) = file_memo {
                unit_opts.files = Some(options::Files {
                    store: Arc::new(memo),
                    salt: c.file_salt(),
                });
            }
            &unit_opts
        }
        _ => opts,
    };
    let opened = opened.elapsed();
    let mut checked = check_snapshot(snapshot, load_diags, opts);
    if let Some(c) = cache {
        keep_base_clean(c, &checked, opts);
    }
    checked.timings.insert(0, ("load", load_time));
    if pack.is_some() {
        checked.timings.insert(1, ("open cache", opened));
    }
    if let Some((store, _)) = &pack {
        // A cache that cannot be written only costs time.
        let flushed = std::time::Instant::now();
        let _ = store.flush();
        if let Some(c) = cache {
            c.units_stored();
        }
        checked.timings.push(("store units", flushed.elapsed()));
    }
    let (lowered, delta) = if checked.diagnostics.has_errors() {
        (None, None)
    } else {
        (checked.lowered.take(), checked.delta.take().map(Box::new))
    };
    let (Some(cache), Some(key)) = (cache, key) else {
        return Built {
            checked,
            lowered,
            pending: None,
            delta,
            key: None,
        };
    };
    let revision = delta.as_ref().map(|d| d.revision.clone());
    let pending = PendingStore::of(
        &mut checked,
        &key,
        lowered.is_some() || delta.is_some(),
        revision,
    );
    if opts.defer_store {
        return Built {
            checked,
            lowered,
            pending: Some(pending),
            delta,
            key: Some(key),
        };
    }
    // A cache that cannot be written only costs time.
    let stored = std::time::Instant::now();
    let _ = pending.store_either(cache, lowered.as_ref(), delta.as_deref());
    checked.timings.push(("store revision", stored.elapsed()));
    Built {
        checked,
        lowered,
        pending: None,
        delta,
        key: Some(key),
    }
}
