//! The GitOps loop: fetch → guard → compile → apply → status and audit, at an interval and on
//! webhooks, until shut down.
//!
//! One [`Agent::step`]:
//!
//! 1. On the first step, read the commit last applied from the inventory ConfigMap (so a
//!    restarted agent knows where it stands).
//! 2. Fetch the branch ([`source::Mirror::fetch`], on a blocking thread). A failed fetch is
//!    reported (log, metric) and retried with capped exponential backoff; the cluster is still
//!    checked for drift against the last applied commit.
//! 3. A new head is guarded: it must descend from the applied commit (else refused: a
//!    force-push, unless `allow_non_fast_forward`), carry a trusted signature when
//!    verification is on, compile (`plinth check` and build, in memory), and pass the plan:
//!    [`plinth::plan::plan`] from the applied commit to the head — the very function `plinth
//!    plan` runs on the pull request — must refuse nothing in this cluster (a destructive change
//!    without an approval added since the applied commit, a mass deletion). A refused or
//!    rejected commit gets an `error` / `failure` status (naming the objects and the YAML that
//!    approves them) and an audit entry, and the cluster is not touched; it is not looked at
//!    again until the branch moves. A later commit that fixes or approves it is planned
//!    against the applied commit again, and applied.
//! 4. The new commit is applied by the apply engine ([`sync::apply`]) with a `pending` status
//!    first and `success` / `failure` after; the commit is recorded in the inventory.
//! 5. Without a new commit, the applied commit is applied again: an unchanged cluster costs
//!    reads and dry runs, no writes; drift becomes a `failure` status on the applied commit
//!    (and a `success` again once it is gone or healed).
//!
//! Statuses are posted in the background and de-duplicated ([`status::Poster`]); audit
//! entries go to the log, to Events and to the inventory's history ([`audit`]). Nothing in a
//! step panics or ends the loop: every failure is a value in the [`Step`].

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gix::ObjectId;
use plinth::load::git::CommitInfo;
use tokio::sync::{Notify, watch};

use crate::audit::{self, Audit, Entry, Ledger};
use crate::cluster::Cluster;
use crate::compile::{self, Compilation, CompileOptions, Compiled};
use crate::metrics::{Failed, Metrics};
use crate::report::{Action, PruneAction, Report};
use crate::signature::{self, Verdict, Verifier};
use crate::source::{Mirror, Remote, SourceError};
use crate::status::{CommitStatus, Poster, State};
use crate::sync::{self, Options};

/// How the loop runs.
#[derive(Debug, Clone)]
pub struct Config {
    pub remote: Remote,
    /// Where the bare mirror lives.
    pub cache_dir: PathBuf,
    pub compile: CompileOptions,
    /// Time between syncs.
    pub interval: Duration,
    /// First wait after a failed fetch; doubled each time up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// Least time between the starts of two fetches when a webhook wakes the loop: webhooks
    /// are coalesced (one fetch running, one pending) and never shorten a backoff.
    pub min_wake_interval: Duration,
    /// Apply a head that does not descend from the applied commit (a force-push).
    pub allow_non_fast_forward: bool,
    /// Verify the signature of every commit before applying it.
    pub verifier: Option<Verifier>,
    /// The apply engine's options.
    pub apply: Options,
    /// Link of commit statuses; `{sha}`, `{short}` and `{cluster}` are replaced.
    pub target_url: Option<String>,
    /// How long a shutdown waits for a running step before dropping it.
    pub shutdown_grace: Duration,
}

impl Config {
    /// Defaults for everything but the remote, the cache and the cluster.
    pub fn new(remote: Remote, cache_dir: PathBuf, cluster: &str, path: &str) -> Config {
        Config {
            remote,
            cache_dir,
            compile: CompileOptions {
                cluster: cluster.to_owned(),
                path: path.to_owned(),
                policies: true,
                cache: true,
            },
            interval: Duration::from_secs(60),
            backoff: Duration::from_secs(2),
            max_backoff: Duration::from_secs(300),
            min_wake_interval: Duration::from_secs(10),
            allow_non_fast_forward: false,
            verifier: None,
            apply: Options::default(),
            target_url: None,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// Why a commit was not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Not a descendant of the applied commit.
    NonFastForward { applied: String },
    /// Unsigned, or not signed by a trusted key.
    Signature(String),
    /// Does not build (`plinth check` errors, no such platform path or cluster).
    Check { summary: String, details: String },
    /// The plan from the applied commit refuses it: destructive changes without approval, a
    /// mass deletion, or an applied commit that can no longer be planned against.
    Plan { summary: String, details: String },
}

impl Refusal {
    fn reason(&self) -> &'static str {
        match self {
            Refusal::NonFastForward { .. } => "non-fast-forward",
            Refusal::Signature(_) => "signature",
            Refusal::Check { .. } => "check",
            Refusal::Plan { .. } => "plan",
        }
    }

    fn details(&self) -> Option<&str> {
        match self {
            Refusal::Check { details, .. } | Refusal::Plan { details, .. } => Some(details),
            _ => None,
        }
    }

    fn message(&self) -> String {
        match self {
            Refusal::NonFastForward { applied } => format!(
                "refused: not a descendant of the applied commit {} (history rewritten?); `--allow-non-fast-forward` applies it",
                &applied[..applied.len().min(7)]
            ),
            Refusal::Signature(why) => format!("refused: {why}"),
            Refusal::Check { summary, .. } | Refusal::Plan { summary, .. } => summary.clone(),
        }
    }
}

/// What one step did.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Nothing to apply yet (no commit fetched, nothing applied before).
    Idle,
    /// A new commit was applied (see the report for how it went).
    Applied { commit: String },
    /// The applied commit was applied again (drift check, or a retry after a failure).
    Resynced { commit: String },
    /// A new commit was refused or rejected; the cluster was not touched.
    Refused { commit: String, refusal: Refusal },
    /// The step could not run (the cluster or the mirror is unusable).
    Failed { message: String },
}

/// The outcome of [`Agent::step`].
#[derive(Debug, Clone)]
pub struct Step {
    /// The branch head after fetching (or as last fetched, when the fetch failed).
    pub head: Option<String>,
    pub fetch_error: Option<SourceError>,
    pub event: Event,
    /// The apply engine's report, when it ran.
    pub report: Option<Report>,
    /// The commit status this step decided (posted unless a duplicate).
    pub status: Option<CommitStatus>,
    /// Audit entries recorded.
    pub audit: Vec<Entry>,
}

/// The commit whose state the cluster is in.
#[derive(Debug, Clone)]
struct Applied {
    id: ObjectId,
    info: CommitInfo,
    /// Compiled lazily after a restart.
    compiled: Option<Arc<Compilation>>,
    /// The state and description last decided for it.
    last: Option<(State, String)>,
    /// The drift last reported (one line per drifted field), to record only changes.
    drift: Vec<String>,
    /// The held namespaces last reported (one line each), to record only changes.
    held: Vec<String>,
}

/// A new commit that passed every guard.
struct Accepted {
    info: CommitInfo,
    head: Arc<Compilation>,
    /// The applied commit, compiled (`None`: nothing applied yet).
    base: Option<Arc<Compilation>>,
    /// Its approved destructive changes, one line each, for the audit.
    approved: Vec<String>,
}

/// The loop's state between steps.
#[derive(Debug, Default)]
struct Memory {
    loaded: bool,
    ledger: Ledger,
    applied: Option<Applied>,
    /// The last head refused or rejected (not looked at again).
    refused: Option<ObjectId>,
    fetch_failures: u32,
}

/// Liveness and readiness, shared with the HTTP endpoints.
#[derive(Debug)]
pub struct Probe {
    ready: AtomicBool,
    heartbeat: std::sync::Mutex<Instant>,
    /// A loop silent for longer than this is not alive.
    pub stale_after: Duration,
}

impl Probe {
    pub fn new(stale_after: Duration) -> Probe {
        Probe {
            ready: AtomicBool::new(false),
            heartbeat: std::sync::Mutex::new(Instant::now()),
            stale_after,
        }
    }
    pub fn beat(&self) {
        *self
            .heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Instant::now();
    }
    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Relaxed);
    }
    /// Ready: the first step reached the remote and the cluster.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }
    /// Alive: the loop moved recently.
    pub fn is_alive(&self) -> bool {
        self.heartbeat
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .elapsed()
            <= self.stale_after
    }
}

/// The agent: one cluster, one branch.
pub struct Agent {
    cfg: Config,
    cluster: Cluster,
    mirror: Mirror,
    poster: Poster,
    audit: Audit,
    metrics: Arc<Metrics>,
    probe: Arc<Probe>,
    interrupt: Arc<AtomicBool>,
    mem: Memory,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("remote", &self.cfg.remote.display_url())
            .field("branch", &self.cfg.remote.branch)
            .finish_non_exhaustive()
    }
}

fn blocking_err(e: tokio::task::JoinError) -> String {
    format!("a blocking task failed: {e}")
}

fn short(id: &str) -> &str {
    &id[..id.len().min(7)]
}

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

impl Agent {
    pub fn new(
        cfg: Config,
        cluster: Cluster,
        poster: Poster,
        metrics: Arc<Metrics>,
        probe: Arc<Probe>,
    ) -> Result<Agent, SourceError> {
        let mirror = Mirror::open(&cfg.cache_dir)?;
        let audit = Audit::new(&cluster);
        Ok(Agent {
            cfg,
            cluster,
            mirror,
            poster,
            audit,
            metrics,
            probe,
            interrupt: Arc::new(AtomicBool::new(false)),
            mem: Memory::default(),
        })
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    pub fn poster(&self) -> &Poster {
        &self.poster
    }

    fn context(&self) -> String {
        format!("plinth/{}", self.cfg.compile.cluster)
    }

    fn status(&self, sha: &str, state: State, description: String) -> CommitStatus {
        let target_url = self.cfg.target_url.as_ref().map(|u| {
            u.replace("{sha}", sha)
                .replace("{short}", short(sha))
                .replace("{cluster}", &self.cfg.compile.cluster)
        });
        CommitStatus {
            sha: sha.to_owned(),
            state,
            context: self.context(),
            description,
            target_url,
        }
    }

    fn entry(
        &self,
        action: audit::Action,
        info: &CommitInfo,
        outcome: &str,
        message: String,
    ) -> Entry {
        Entry {
            time: audit::now(),
            cluster: self.cfg.compile.cluster.clone(),
            action,
            commit: info.id.clone(),
            author: format!("{} <{}>", info.author, info.email),
            subject: info.summary.clone(),
            objects: Vec::new(),
            outcome: outcome.to_owned(),
            message,
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Mirror) -> T + Send + 'static,
    ) -> Result<T, String> {
        let m = self.mirror.clone();
        tokio::task::spawn_blocking(move || f(m))
            .await
            .map_err(blocking_err)
    }

    /// One pass of the loop. `resync`: apply the applied commit again when no new commit
    /// came (drift detection); the run loop skips that when retrying a fetch early.
    pub async fn step(&mut self, resync: bool) -> Step {
        let mut step = Step {
            head: None,
            fetch_error: None,
            event: Event::Idle,
            report: None,
            status: None,
            audit: Vec::new(),
        };
        self.probe.beat();
        if !self.mem.loaded {
            match audit::read(&self.cluster).await {
                Ok(l) => {
                    self.mem.ledger = l;
                    self.mem.loaded = true;
                }
                Err(e) => {
                    self.metrics.error(Failed::Apply);
                    step.event = Event::Failed {
                        message: format!("reading the inventory: {e}"),
                    };
                    return step;
                }
            }
        }

        // Fetch.
        let remote = self.cfg.remote.clone();
        let interrupt = Arc::clone(&self.interrupt);
        let started = Instant::now();
        let fetched = self
            .blocking(move |m| m.fetch(&remote, &interrupt))
            .await
            .unwrap_or_else(|e| Err(SourceError::Git(e)));
        self.metrics.fetched(started.elapsed());
        let head = match fetched {
            Ok(id) => {
                self.mem.fetch_failures = 0;
                Some(id)
            }
            Err(e) => {
                self.mem.fetch_failures += 1;
                self.metrics.error(Failed::Fetch);
                tracing::warn!(error = %e, failures = self.mem.fetch_failures, "fetch failed");
                step.fetch_error = Some(e);
                let remote = self.cfg.remote.clone();
                self.blocking(move |m| m.head(&remote))
                    .await
                    .ok()
                    .and_then(Result::ok)
                    .flatten()
            }
        };
        step.head = head.map(|h| h.to_string());
        self.probe.beat();

        // After a restart: the commit the inventory says was applied.
        if self.mem.applied.is_none() && !self.mem.ledger.commit.is_empty() {
            let recorded = self.mem.ledger.commit.clone();
            if let Ok(id) = ObjectId::from_hex(recorded.as_bytes()) {
                let info = self.blocking(move |m| m.commit(id)).await;
                match info {
                    Ok(Ok(info)) => {
                        self.mem.applied = Some(Applied {
                            id,
                            info,
                            compiled: None,
                            last: None,
                            drift: Vec::new(),
                            held: Vec::new(),
                        });
                    }
                    _ => tracing::warn!(
                        commit = %recorded,
                        "the commit the inventory records is not in the fetched history"
                    ),
                }
            }
        }
        if step.fetch_error.is_none() && self.mem.loaded {
            self.probe.set_ready();
        }

        // What the cluster runs: the applied commit, or the one the inventory records even
        // when the fetched history no longer holds it (a force-push seen after a restart
        // with an empty cache is still refused).
        let applied_id = self
            .mem
            .applied
            .as_ref()
            .map(|a| a.id)
            .or_else(|| ObjectId::from_hex(self.mem.ledger.commit.as_bytes()).ok());
        let new_head = head.filter(|h| Some(*h) != applied_id && Some(*h) != self.mem.refused);
        if let Some(h) = new_head {
            match self.consider(h, applied_id).await {
                Ok(Ok(accepted)) => {
                    self.apply_new(h, accepted, &mut step).await;
                    return step;
                }
                Ok(Err((info, refusal))) => {
                    self.refuse(h, &info, refusal, &mut step).await;
                    // The cluster is still checked against what is applied.
                }
                Err(message) => {
                    self.metrics.error(Failed::Compile);
                    tracing::error!(commit = %h, error = %message, "cannot evaluate the commit");
                    step.event = Event::Failed { message };
                    return step;
                }
            }
        }
        if resync && self.mem.applied.is_some() {
            self.resync(&mut step).await;
        }
        step
    }

    /// Guard, compile and plan a new head: `Ok(Ok)` to apply, `Ok(Err)` refused, `Err` a
    /// system failure.
    async fn consider(
        &self,
        head: ObjectId,
        applied: Option<ObjectId>,
    ) -> Result<Result<Accepted, (CommitInfo, Refusal)>, String> {
        let allow_nff = self.cfg.allow_non_fast_forward;
        let verifier = self.cfg.verifier.clone();
        let opts = self.cfg.compile.clone();
        let known_base = self
            .mem
            .applied
            .as_ref()
            .filter(|a| Some(a.id) == applied)
            .and_then(|a| a.compiled.clone());
        let plan_opts = plinth::plan::PlanOptions {
            allow_destructive: false,
            max_delete_share: self.cfg.apply.budget.max_share,
            fingerprint: plinth::redact::Key::from_env_value(
                std::env::var(plinth::redact::KEY_ENV).ok().as_deref(),
            ),
        };
        self.blocking(move |m| {
            let info = m.commit(head).map_err(|e| e.to_string())?;
            if let Some(a) = applied
                && !allow_nff
                && !m.descends_from(head, a).map_err(|e| e.to_string())?
            {
                return Ok(Err((
                    info,
                    Refusal::NonFastForward {
                        applied: a.to_string(),
                    },
                )));
            }
            if let Some(v) = &verifier {
                let sig = m.signature(head).map_err(|e| e.to_string())?;
                match signature::verify(v, sig.as_ref().map(|s| (&s.signature[..], &s.payload[..])))
                {
                    Verdict::Trusted { signer } => {
                        tracing::info!(commit = %head, %signer, "signature verified");
                    }
                    other => return Ok(Err((info, Refusal::Signature(other.to_string())))),
                }
            }
            let repo = m.plinth_repo().map_err(|e| e.to_string())?;
            let compiled = match compile::compile(&repo, head, &opts)? {
                Compiled::Ok(c) => Arc::new(*c),
                Compiled::Rejected { summary, details } => {
                    return Ok(Err((info, Refusal::Check { summary, details })));
                }
            };
            // The side the plan starts from: the applied commit as this agent compiles it.
            let base = match (known_base, applied) {
                (Some(b), _) => Some(b),
                (None, None) => None,
                (None, Some(a)) => match m.commit(a) {
                    Err(e) if allow_nff => {
                        tracing::warn!(commit = %a, error = %e, "the applied commit is not in the fetched history; planning against an empty base (pruning still refuses unapproved data deletions)");
                        None
                    }
                    Err(e) => return Err(e.to_string()),
                    Ok(_) => match compile::compile(&repo, a, &opts)? {
                        Compiled::Ok(c) => Some(Arc::new(*c)),
                        Compiled::Rejected { summary, .. } => {
                            let m = format!(
                                "refused: the applied commit {} no longer compiles with this agent ({summary}), so no plan can show what this commit changes",
                                short(&a.to_string())
                            );
                            return Ok(Err((
                                info,
                                Refusal::Plan {
                                    details: format!("{m}\nhint: apply this commit once by hand (`plinth build`, then `plinth-agent apply --once`) after reviewing `plinth plan`; the loop plans against it afterwards"),
                                    summary: m,
                                },
                            )));
                        }
                    },
                },
            };
            let empty = plinth::lower::Lowered::default();
            let p = plinth::plan::plan(
                base.as_ref().map_or(&empty, |b| &b.lowered),
                &compiled.lowered,
                &plan_opts,
            );
            for w in &p.warnings {
                tracing::warn!(commit = %head, file = %w.file, line = w.line, hint = %w.hint, "{}", w.message);
            }
            let refusals: Vec<&plinth::plan::Refusal> = p.refusals_of(&opts.cluster).collect();
            if !refusals.is_empty() {
                return Ok(Err((info, plan_refusal(&refusals, p.platform_file.as_deref()))));
            }
            let approved = p
                .changes
                .iter()
                .filter(|c| c.cluster == opts.cluster)
                .filter_map(|c| {
                    c.approval
                        .as_ref()
                        .map(|a| format!("✅ {} {}: {}", c.action.as_str(), c.key, a.describe()))
                })
                .collect();
            Ok(Ok(Accepted {
                info,
                head: compiled,
                base,
                approved,
            }))
        })
        .await?
    }

    async fn refuse(
        &mut self,
        head: ObjectId,
        info: &CommitInfo,
        refusal: Refusal,
        step: &mut Step,
    ) {
        let sha = head.to_string();
        self.metrics.refusal(refusal.reason());
        let message = refusal.message();
        tracing::warn!(commit = %sha, reason = refusal.reason(), %message, "commit refused");
        if let Some(details) = refusal.details() {
            tracing::warn!(commit = %sha, "{details}");
        }
        let state = match refusal {
            Refusal::Check { .. } | Refusal::Plan { .. } => State::Failure,
            _ => State::Error,
        };
        let status = self.status(&sha, state, message.clone());
        self.poster.post(status.clone());
        step.status = Some(status);
        let mut e = self.entry(audit::Action::Refuse, info, "refused", message);
        if let Some(details) = refusal.details() {
            e.objects = audit::cap(details.lines().map(str::to_owned).collect());
        }
        self.mem.refused = Some(head);
        step.event = Event::Refused {
            commit: sha,
            refusal,
        };
        self.record(vec![e], None, step).await;
    }

    async fn apply_new(&mut self, head: ObjectId, accepted: Accepted, step: &mut Step) {
        let Accepted {
            info,
            head: compiled,
            base,
            approved,
        } = accepted;
        let sha = head.to_string();
        self.poster.post(self.status(
            &sha,
            State::Pending,
            format!(
                "applying {} ({})",
                short(&sha),
                plural(compiled.desired.objects.len(), "object")
            ),
        ));
        // What the previous revision compiled to: a field this commit changes is applied even
        // where a person changed it in the cluster (a revert is never fought by the edit).
        let to_apply = match &base {
            Some(p) => Arc::new(compiled.desired.after(&p.desired)),
            None => Arc::new(compiled.desired.clone()),
        };
        let started = Instant::now();
        let report = sync::apply(&self.cluster, &to_apply, &self.cfg.apply).await;
        drop(to_apply);
        self.metrics.sync(outcome_name(&report), started.elapsed());
        let (state, description) = describe(&report, true);
        let status = self.status(&sha, state, description.clone());
        self.poster.post(status.clone());
        step.status = Some(status);
        let mut applied = Applied {
            id: head,
            info,
            compiled: Some(compiled),
            last: Some((state, description)),
            drift: Vec::new(),
            held: Vec::new(),
        };
        let mut entries = self.entries(&report, &mut applied, true);
        if !approved.is_empty()
            && let Some(e) = entries
                .iter_mut()
                .find(|e| e.action == audit::Action::Apply)
        {
            // Approved destructive changes, with their reason and approver, on the record.
            let mut objects = approved;
            objects.extend(std::mem::take(&mut e.objects));
            e.objects = audit::cap(objects);
        }
        self.count(&report, &applied);
        self.mem.applied = Some(applied);
        self.mem.refused = None;
        step.event = Event::Applied {
            commit: sha.clone(),
        };
        self.record(entries, Some(sha), step).await;
        step.report = Some(report);
    }

    /// Compile a commit of the mirror (on a blocking thread).
    async fn compile_commit(&self, id: ObjectId) -> Result<Compiled, String> {
        let opts = self.cfg.compile.clone();
        self.blocking(move |m| {
            let repo = m.plinth_repo().map_err(|e| e.to_string())?;
            compile::compile(&repo, id, &opts)
        })
        .await
        .and_then(|r| r)
    }

    async fn resync(&mut self, step: &mut Step) {
        let Some(mut applied) = self.mem.applied.take() else {
            return;
        };
        let sha = applied.id.to_string();
        if applied.compiled.is_none() {
            match self.compile_commit(applied.id).await {
                Ok(Compiled::Ok(d)) => applied.compiled = Some(Arc::new(*d)),
                Ok(Compiled::Rejected { summary, .. }) => {
                    // Cannot happen for a commit that was applied, unless the agent changed.
                    step.event = Event::Failed {
                        message: format!(
                            "the applied commit {} no longer builds: {summary}",
                            short(&sha)
                        ),
                    };
                    self.mem.applied = Some(applied);
                    return;
                }
                Err(message) => {
                    self.metrics.error(Failed::Compile);
                    step.event = Event::Failed { message };
                    self.mem.applied = Some(applied);
                    return;
                }
            }
        }
        let Some(compiled) = applied.compiled.clone() else {
            self.mem.applied = Some(applied);
            return;
        };
        let started = Instant::now();
        let report = sync::apply(&self.cluster, &compiled.desired, &self.cfg.apply).await;
        self.metrics.sync(outcome_name(&report), started.elapsed());
        let (mut state, mut description) = describe(&report, false);
        if state == State::Success
            && let Some((State::Success, d)) = &applied.last
        {
            // Still as it was: keep the description (no new status).
            state = State::Success;
            description = d.clone();
        }
        let status = self.status(&sha, state, description.clone());
        self.poster.post(status.clone());
        // A refusal in the same step keeps its event and status in the step.
        if step.status.is_none() {
            step.status = Some(status);
        }
        applied.last = Some((state, description));
        let entries = self.entries(&report, &mut applied, false);
        self.count(&report, &applied);
        self.mem.applied = Some(applied);
        if step.event == Event::Idle {
            step.event = Event::Resynced { commit: sha };
        }
        self.record(entries, None, step).await;
        step.report = Some(report);
    }

    fn count(&self, report: &Report, applied: &Applied) {
        self.metrics.objects("create", report.count(Action::Create));
        self.metrics.objects("update", report.count(Action::Update));
        self.metrics.objects("heal", report.count(Action::Heal));
        self.metrics.pruned(
            report
                .prune
                .iter()
                .filter(|p| p.action == PruneAction::Delete)
                .count(),
        );
        if !report.failed() {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.metrics
                .applied_revision(&applied.id.to_string(), &report.revision, secs);
        } else {
            self.metrics.error(Failed::Apply);
        }
    }

    /// Audit entries for a run of the apply engine.
    fn entries(&self, report: &Report, applied: &mut Applied, new_commit: bool) -> Vec<Entry> {
        let info = applied.info.clone();
        let failed = report.failed();
        let mut out = Vec::new();
        out.extend(self.apply_entry(report, applied, &info, new_commit));
        out.extend(self.prune_entry(report, &info));
        out.extend(self.heal_entry(report, &info));
        if !failed {
            out.extend(self.hold_entry(report, applied, &info));
        }
        if !failed || report.objects.iter().any(|o| o.drift_left()) {
            out.extend(self.drift_entry(report, applied, &info));
        }
        out
    }

    /// What the run wrote: for a new commit, anything written, or a failure (a failed
    /// re-check of an unchanged commit is recorded once per distinct failure).
    fn apply_entry(
        &self,
        report: &Report,
        applied: &Applied,
        info: &CommitInfo,
        new_commit: bool,
    ) -> Option<Entry> {
        let written = written_lines(report);
        let failed = report.failed();
        if !(new_commit || !written.is_empty() || failed) {
            return None;
        }
        let (_, description) = describe(report, new_commit);
        let outcome = if failed { "failure" } else { "success" };
        let mut e = self.entry(audit::Action::Apply, info, outcome, description);
        e.objects = audit::cap(written);
        let repeat = !new_commit
            && failed
            && applied
                .last
                .as_ref()
                .is_some_and(|(s, _)| *s == State::Failure)
            && self.mem.ledger.history.last().is_some_and(|l| {
                l.commit == e.commit && l.message == e.message && l.action == e.action
            });
        (!repeat).then_some(e)
    }

    /// What pruning deleted, or failed to.
    fn prune_entry(&self, report: &Report, info: &CommitInfo) -> Option<Entry> {
        let pruned = pruned_lines(report);
        if pruned.is_empty() {
            return None;
        }
        let deleted = pruned.iter().filter(|l| l.starts_with('-')).count();
        let failed = pruned.len() - deleted;
        let mut e = self.entry(
            audit::Action::Prune,
            info,
            if failed > 0 { "failure" } else { "success" },
            format!("pruned {}", plural(deleted, "object")),
        );
        e.objects = audit::cap(pruned);
        Some(e)
    }

    /// The drift the run restored.
    fn heal_entry(&self, report: &Report, info: &CommitInfo) -> Option<Entry> {
        let healed: Vec<String> = report
            .objects
            .iter()
            .filter(|o| o.healed)
            .flat_map(|o| {
                o.diffs
                    .iter()
                    .filter(|d| d.class.is_drift())
                    .map(move |d| format!("* {}: {}", o.key, d.restored()))
            })
            .collect();
        if healed.is_empty() {
            return None;
        }
        let n = report.objects.iter().filter(|o| o.healed).count();
        let mut e = self.entry(
            audit::Action::Heal,
            info,
            "healed",
            format!("healed drift in {}", plural(n, "object")),
        );
        e.objects = audit::cap(healed);
        Some(e)
    }

    /// Namespaces held, when they changed since the last run (of a run that did not fail).
    fn hold_entry(
        &self,
        report: &Report,
        applied: &mut Applied,
        info: &CommitInfo,
    ) -> Option<Entry> {
        let held = held_lines(report);
        if held == applied.held {
            return None;
        }
        self.metrics.held(report.held().count());
        let mut entry = None;
        if !held.is_empty() {
            let n = report.held().count();
            let mut e = self.entry(
                audit::Action::Hold,
                info,
                "held",
                format!(
                    "kept {} instead of pruning: {} objects plinth does not own",
                    plural(n, "namespace"),
                    if n == 1 { "it holds" } else { "they hold" }
                ),
            );
            e.objects = audit::cap(held.clone());
            entry = Some(e);
        }
        applied.held = held;
        entry
    }

    /// Drift left in place, when it changed since the last run.
    fn drift_entry(
        &self,
        report: &Report,
        applied: &mut Applied,
        info: &CommitInfo,
    ) -> Option<Entry> {
        let drift = drift_lines(report);
        if drift == applied.drift {
            self.metrics.drift(n_drifted(report), false);
            return None;
        }
        let n = report.objects.iter().filter(|o| o.drift_left()).count();
        let e = if drift.is_empty() {
            self.entry(
                audit::Action::Drift,
                info,
                "resolved",
                "no drift left".into(),
            )
        } else {
            let mut e = self.entry(
                audit::Action::Drift,
                info,
                "detected",
                format!("drift in {}", plural(n, "object")),
            );
            e.objects = audit::cap(drift.clone());
            e
        };
        self.metrics.drift(n, !drift.is_empty());
        applied.drift = drift;
        Some(e)
    }

    /// Publish entries and write them (and the applied commit) to the inventory.
    async fn record(&mut self, entries: Vec<Entry>, commit: Option<String>, step: &mut Step) {
        for e in &entries {
            if !self.audit.publish(e).await {
                self.metrics.error(Failed::Audit);
            }
        }
        if entries.is_empty() && commit.is_none() {
            return;
        }
        let mut ledger = self.mem.ledger.clone();
        if let Some(c) = commit {
            ledger.commit = c;
        }
        ledger.push(&entries);
        match audit::write(&self.cluster, &ledger).await {
            Ok(()) => self.mem.ledger = ledger,
            Err(e) => {
                self.metrics.error(Failed::Audit);
                tracing::warn!(error = %e, "recording the history in the inventory failed");
                // Keep it in memory: the next write carries it.
                self.mem.ledger = ledger;
            }
        }
        step.audit.extend(entries);
    }

    /// Run until `shutdown` turns true: a step, then wait for the interval, a webhook
    /// (`wake`) or shutdown. A step running at shutdown gets `shutdown_grace` to finish
    /// (fetches are interrupted), then is dropped: every step is idempotent and the
    /// inventory records intent before writing, so the next start converges.
    pub async fn run(mut self, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        let mut last_sync: Option<Instant> = None;
        loop {
            if *shutdown.borrow() {
                break;
            }
            let resync = last_sync
                .is_none_or(|t| t.elapsed() + Duration::from_millis(50) >= self.cfg.interval);
            let interrupt = Arc::clone(&self.interrupt);
            let grace = self.cfg.shutdown_grace;
            let started = Instant::now();
            let outcome = {
                let fut = self.step(resync);
                tokio::pin!(fut);
                tokio::select! {
                    s = &mut fut => Some(s),
                    () = wait_true(&mut shutdown) => {
                        tracing::info!("shutting down: finishing the current step");
                        interrupt.store(true, Ordering::Relaxed);
                        match tokio::time::timeout(grace, &mut fut).await {
                            Ok(s) => Some(s),
                            Err(_) => {
                                tracing::warn!("the current step did not finish in time; stopped it (the next start repairs it)");
                                None
                            }
                        }
                    }
                }
            };
            let Some(step) = outcome else { break };
            if step.report.is_some() || resync {
                last_sync = Some(Instant::now());
            }
            let delay = if step.fetch_error.is_some() {
                let exp = self
                    .cfg
                    .backoff
                    .saturating_mul(1u32 << self.mem.fetch_failures.saturating_sub(1).min(16));
                exp.min(self.cfg.max_backoff)
            } else {
                self.cfg.interval
            };
            tracing::debug!(delay = %crate::duration::show(delay), "waiting");
            let until = tokio::time::Instant::now() + delay;
            tokio::select! {
                () = tokio::time::sleep_until(until) => {}
                () = wake.notified() => {
                    // A push: look at the new commit soon, not the cluster again; but not
                    // before the backoff after a failed fetch is over, nor sooner than the
                    // least spacing of fetches (a flood of hooks costs one fetch each time).
                    let not_before = if step.fetch_error.is_some() {
                        until
                    } else {
                        tokio::time::Instant::from_std(started + self.cfg.min_wake_interval)
                    };
                    if not_before > tokio::time::Instant::now() {
                        tracing::info!(
                            wait = %crate::duration::show(not_before - tokio::time::Instant::now()),
                            "woken by a webhook; fetching after the least spacing or backoff"
                        );
                        tokio::select! {
                            () = tokio::time::sleep_until(not_before) => {}
                            () = wait_true(&mut shutdown) => break,
                        }
                    } else {
                        tracing::info!("woken by a webhook");
                    }
                }
                () = wait_true(&mut shutdown) => break,
            }
        }
        tracing::info!("flushing commit statuses");
        let _ = self.poster.flush(Duration::from_secs(5)).await;
        tracing::info!("stopped");
    }
}

/// The refusal of a commit whose plan refuses something in this cluster: a one-line summary
/// for the commit status (the objects, then the `spec.approvals` entries that approve them in
/// flow YAML) and the details for the log and the audit (every refusal with its hint).
fn plan_refusal(refusals: &[&plinth::plan::Refusal], platform_file: Option<&str>) -> Refusal {
    let objects: Vec<&plinth::plan::Refusal> = refusals
        .iter()
        .copied()
        .filter(|r| r.object.is_some())
        .collect();
    let summary = if let Some(whole) = refusals.iter().find(|r| r.object.is_none()) {
        format!("refused: {}", whole.message)
    } else {
        let keys: Vec<String> = objects
            .iter()
            .filter_map(|r| r.object.as_ref().map(ToString::to_string))
            .collect();
        let mut names = keys.iter().take(2).cloned().collect::<Vec<_>>().join(", ");
        if keys.len() > 2 {
            names.push_str(&format!(", +{} more", keys.len() - 2));
        }
        let flow: Vec<String> = objects
            .iter()
            .filter_map(|r| {
                r.object.as_ref().map(|k| {
                    format!(
                        "{{object: {}, cluster: {}, reason: \"…\"}}",
                        plinth::lower::Approval::object_id(k),
                        r.cluster
                    )
                })
            })
            .collect();
        format!(
            "refused: {} not approved: {names}; approve by adding to spec.approvals: [{}]",
            plural(keys.len(), "destructive change"),
            flow.join(", ")
        )
    };
    let mut details = String::new();
    for r in refusals {
        details.push_str(&format!(
            "{}\n  hint: {}\n",
            r.message,
            r.hint.replace('\n', "\n  ")
        ));
    }
    let yaml = plinth::plan::approval_yaml(refusals.iter().copied());
    if !yaml.is_empty() {
        details.push_str(&format!(
            "to approve, add under `spec:` of {} in a new commit:\n{yaml}",
            platform_file.map_or_else(|| "the Platform".to_owned(), |f| format!("`{f}`"))
        ));
    }
    Refusal::Plan { summary, details }
}

/// Resolves once the watched flag is true (or its sender is gone).
async fn wait_true(rx: &mut watch::Receiver<bool>) {
    loop {
        if *rx.borrow_and_update() {
            return;
        }
        if rx.changed().await.is_err() {
            // No one can ask for a shutdown any more: wait forever.
            std::future::pending::<()>().await;
        }
    }
}

/// The audit lines of what a run wrote: `+` created, `~` updated, `x` failed, and under them
/// the hand edits the commit overwrote.
fn written_lines(report: &Report) -> Vec<String> {
    report
        .objects
        .iter()
        .flat_map(|o| {
            let line = match o.action {
                Action::Create => Some(format!("+ {}", o.key)),
                Action::Update => Some(format!("~ {}", o.key)),
                Action::Failed => Some(format!(
                    "x {}: {}",
                    o.key,
                    o.error
                        .as_ref()
                        .map_or_else(String::new, ToString::to_string)
                )),
                _ => None,
            };
            // Hand edits this commit overwrote, for the record.
            let reclaimed = o
                .diffs
                .iter()
                .filter(|d| matches!(d.class, crate::drift::Class::Reclaimed { .. }))
                .map(move |d| format!("  {}: {d}", o.key));
            line.into_iter().chain(reclaimed)
        })
        .collect()
}

/// The audit lines of pruning: `-` deleted, `x` failed.
fn pruned_lines(report: &Report) -> Vec<String> {
    report
        .prune
        .iter()
        .filter(|p| matches!(p.action, PruneAction::Delete | PruneAction::Failed))
        .map(|p| match p.action {
            PruneAction::Failed => format!(
                "x {}: {}",
                p.key,
                p.error
                    .as_ref()
                    .map_or_else(String::new, ToString::to_string)
            ),
            _ => format!("- {}", p.key),
        })
        .collect()
}

/// One line per held namespace: `Namespace x: holds A, B`.
fn held_lines(report: &Report) -> Vec<String> {
    report
        .held()
        .map(|p| format!("= {}: holds {}", p.key, p.holds.join(", ")))
        .collect()
}

fn n_drifted(report: &Report) -> usize {
    report.objects.iter().filter(|o| o.drift_left()).count()
}

/// One line per drifted field left in place.
fn drift_lines(report: &Report) -> Vec<String> {
    report
        .objects
        .iter()
        .filter(|o| o.drift_left())
        .flat_map(|o| {
            o.diffs
                .iter()
                .filter(|d| d.class.is_drift())
                .map(move |d| format!("! {}: {d}", o.key))
        })
        .collect()
}

fn outcome_name(report: &Report) -> &'static str {
    match report.outcome() {
        crate::report::Outcome::Clean => "clean",
        crate::report::Outcome::Changes => "changes",
        crate::report::Outcome::Failed => "failed",
    }
}

/// The status of a run: state and a one-line description.
pub fn describe(report: &Report, new_commit: bool) -> (State, String) {
    if report.failed() {
        let why = report
            .failures
            .first()
            .cloned()
            .or_else(|| {
                report
                    .objects
                    .iter()
                    .find(|o| o.action == Action::Failed)
                    .map(|o| {
                        format!(
                            "{}: {}",
                            o.key,
                            o.error
                                .as_ref()
                                .map_or_else(String::new, |e| e.message.clone())
                        )
                    })
            })
            .or_else(|| {
                report
                    .prune
                    .iter()
                    .find(|p| p.action == PruneAction::Failed)
                    .map(|p| format!("pruning {}", p.key))
            })
            .unwrap_or_else(|| "see the agent's log".into());
        return (State::Failure, format!("apply failed: {why}"));
    }
    let drifted: Vec<_> = report.objects.iter().filter(|o| o.drift_left()).collect();
    if let Some(first) = drifted.first() {
        let diffs: Vec<String> = first
            .diffs
            .iter()
            .filter(|d| d.class.is_drift())
            .map(ToString::to_string)
            .collect();
        let mut detail = format!("{}: {}", first.key, diffs.join("; "));
        if drifted.len() > 1 {
            detail.push_str(&format!("; +{} more", drifted.len() - 1));
        }
        return (
            State::Failure,
            format!("drift in {} ({detail})", plural(drifted.len(), "object")),
        );
    }
    let written = report.count(Action::Create) + report.count(Action::Update);
    let pruned = report
        .prune
        .iter()
        .filter(|p| p.action == PruneAction::Delete)
        .count();
    let healed: Vec<_> = report.objects.iter().filter(|o| o.healed).collect();
    let mut parts = Vec::new();
    if written > 0 {
        parts.push(format!("applied {}", plural(written, "object")));
    }
    if pruned > 0 {
        parts.push(format!("pruned {pruned}"));
    }
    if let Some(first) = healed.first() {
        let d = first
            .diffs
            .iter()
            .find(|d| d.class.is_drift())
            .map_or_else(String::new, |d| format!(": {d}"));
        parts.push(format!(
            "healed drift in {} ({}{d})",
            plural(healed.len(), "object"),
            first.key
        ));
    }
    let held: Vec<_> = report.held().collect();
    if let Some(first) = held.first() {
        parts.push(format!(
            "kept {} holding objects plinth does not own ({}: {})",
            plural(held.len(), "namespace"),
            first.key,
            first.holds.join(", ")
        ));
    }
    let total = report.objects.len();
    let text = if parts.is_empty() {
        if new_commit {
            format!(
                "no changes for this cluster; {} healthy",
                plural(total, "object")
            )
        } else {
            format!("in sync: {} healthy", plural(total, "object"))
        }
    } else {
        format!("{}, healthy", parts.join(", "))
    };
    (State::Success, text)
}
