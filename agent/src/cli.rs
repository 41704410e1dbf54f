//! Command-line arguments, and running a command into its output and exit code.
//!
//! `plinth-agent apply --once` and `plinth-agent diff`; results go to stdout (text or JSON),
//! logs to stderr. Exit codes: `0` clean (applied and healthy / no difference), `2` changes
//! (`diff`: differences; `apply`: drift detected and left in place), `1` failure or refusal.
//! `plinth-agent run` is the GitOps loop ([`crate::gitops`]) until SIGTERM or SIGINT (exit
//! `0`); `plinth-agent history` prints the audit history kept in the cluster.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio::sync::{Notify, watch};

use crate::cluster::{Cluster, Requests};
use crate::desired::Desired;
use crate::drift::{self, Mode};
use crate::error::Error;
use crate::gitops::{self, Agent, Probe};
use crate::metrics::Metrics;
use crate::prune::Budget;
use crate::server::{self, Endpoints};
use crate::signature::Verifier;
use crate::source::{Auth, Remote};
use crate::status::{self, Poster, StatusSink, Token};
use crate::sync::{self, Options};
use crate::{audit, duration, webhook};

#[derive(Debug, Parser)]
#[command(
    name = "plinth-agent",
    version,
    about = "Apply compiled plinth output to a cluster: staged server-side apply, prune, drift, health; or run the GitOps loop"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
    /// Log progress to stderr (`PLINTH_LOG` sets a filter, e.g. `plinth_agent=debug`).
    #[arg(short, long, global = true)]
    pub verbose: bool,
    /// Log lines as text or as one JSON object per line.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "PLINTH_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Apply `out/<cluster>/` to the cluster once.
    Apply(ApplyArgs),
    /// Show what `apply` would change against the live cluster (exit 0 none, 2 some, 1 error).
    Diff(CommonArgs),
    /// Track a branch of a git remote and apply every new commit (the GitOps loop).
    Run(Box<RunArgs>),
    /// Print the agent's audit history kept in the cluster (newest first).
    History(HistoryArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DriftMode {
    /// Report drift and leave it.
    Detect,
    /// Restore the desired values (server-side apply with force).
    Heal,
}

/// How to reach the cluster.
#[derive(Debug, Args)]
pub struct ConnArgs {
    /// The kubeconfig to use (default: `KUBECONFIG`, `~/.kube/config`, or in-cluster).
    #[arg(long, value_name = "FILE", env = "PLINTH_KUBECONFIG")]
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig.
    #[arg(long, env = "PLINTH_CONTEXT")]
    pub context: Option<String>,
    /// Bound on one API request.
    #[arg(long, default_value = "30s", value_parser = duration::parse, value_name = "DURATION")]
    pub request_timeout: Duration,
    /// Further attempts after a transient API failure (5xx, timeouts, dropped connections).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub retries: u32,
}

/// How objects are compared and written.
#[derive(Debug, Args)]
pub struct EngineArgs {
    /// Field manager name for server-side apply.
    #[arg(long, default_value = "plinth", value_name = "NAME")]
    pub field_manager: String,
    /// Field managers whose changes count as hand edits (prefixes; added to `kubectl`, `k9s`,
    /// `Mozilla`, `dashboard`, `kubernetes-dashboard`, `Lens`).
    #[arg(long = "hand-manager", value_name = "PREFIX")]
    pub hand_managers: Vec<String>,
    /// Field managers whose fields plinth takes back anyway (prefixes); others are left alone.
    #[arg(long = "take-from", value_name = "PREFIX")]
    pub take_from: Vec<String>,
    /// Objects handled at once within a stage.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
}

#[derive(Debug, Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// One cluster's output directory, `out/<cluster>`.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// What an apply does besides writing.
#[derive(Debug, Args)]
pub struct ApplyOptionArgs {
    /// Delete objects the agent applied before that are no longer desired.
    #[arg(long, env = "PLINTH_PRUNE")]
    pub prune: bool,
    /// What to do about fields changed by hand.
    #[arg(long, value_enum, default_value = "detect", env = "PLINTH_DRIFT")]
    pub drift: DriftMode,
    /// How long to wait for the objects written to become healthy.
    #[arg(long, default_value = "60s", value_parser = duration::parse, value_name = "DURATION")]
    pub health_timeout: Duration,
    /// How often to look again while waiting for health.
    #[arg(long, default_value = "2s", value_parser = duration::parse, value_name = "DURATION")]
    pub poll_interval: Duration,
    /// Delete at most N objects per revision (else pruning is refused).
    #[arg(long, value_name = "N")]
    pub delete_budget: Option<usize>,
    /// Delete at most this share of the applied objects per revision (0 to 1).
    #[arg(long, default_value_t = 0.5, value_name = "SHARE")]
    pub delete_budget_share: f64,
    /// Apply an empty or nearly empty render (refused by default: it is how a broken build looks).
    #[arg(long)]
    pub allow_empty: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Run once and exit: what `apply` always does (the flag is kept for scripts; the
    /// continuous loop is `plinth-agent run`).
    #[arg(long)]
    pub once: bool,
    /// With `--prune`: delete data (namespaces, volumes, buckets, CRDs) whose deletion the
    /// tree's approvals do not cover. An operator's decision for this one run; the GitOps loop
    /// has no such switch. A namespace holding objects plinth does not own is kept anyway.
    #[arg(long)]
    pub allow_destructive: bool,
    #[command(flatten)]
    pub apply: ApplyOptionArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ForgeKind {
    Github,
    Gitlab,
    Gitea,
    None,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The git remote: `https://…`, `http://…`, `git://…`, `ssh://…`, `git@host:path`,
    /// `file://…` or a local path.
    #[arg(long, value_name = "URL", env = "PLINTH_REPO")]
    pub repo: String,
    /// The branch to track.
    #[arg(long, value_name = "B", default_value = "main", env = "PLINTH_BRANCH")]
    pub branch: String,
    /// The platform's directory inside the repository.
    #[arg(long, value_name = "P", default_value = "", env = "PLINTH_PATH")]
    pub path: String,
    /// The plinth cluster this agent applies (a cluster of the Platform spec).
    #[arg(long, value_name = "NAME", env = "PLINTH_CLUSTER")]
    pub cluster: String,
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Time between syncs (a webhook triggers one at once).
    #[arg(long, default_value = "60s", value_parser = duration::parse, value_name = "DURATION", env = "PLINTH_INTERVAL")]
    pub interval: Duration,
    /// The forge that receives commit statuses and sends webhooks.
    #[arg(long, value_enum, default_value = "none", env = "PLINTH_FORGE")]
    pub forge: ForgeKind,
    /// The forge's API root (default `https://api.github.com`, `https://gitlab.com`; required
    /// for Gitea).
    #[arg(long, value_name = "URL", env = "PLINTH_FORGE_URL")]
    pub forge_url: Option<String>,
    /// The repository on the forge, `OWNER/NAME` (GitLab: the project path or id); default:
    /// the last two segments of `--repo`.
    #[arg(long, value_name = "OWNER/NAME", env = "PLINTH_FORGE_REPO")]
    pub forge_repo: Option<String>,
    /// A file holding the forge token (for statuses, and as the password of http(s) remotes).
    #[arg(long, value_name = "F", env = "PLINTH_TOKEN_FILE")]
    pub token_file: Option<PathBuf>,
    /// A file holding the token for the git remote, when it is not `--token-file`'s.
    #[arg(long, value_name = "F", env = "PLINTH_GIT_TOKEN_FILE")]
    pub git_token_file: Option<PathBuf>,
    /// The user name sent with the git token (default: `x-access-token` for GitHub,
    /// `oauth2` for GitLab, `plinth` otherwise).
    #[arg(long, value_name = "NAME", env = "PLINTH_GIT_USERNAME")]
    pub git_username: Option<String>,
    /// A private key file for ssh remotes.
    #[arg(long, value_name = "F", env = "PLINTH_SSH_KEY_FILE")]
    pub ssh_key_file: Option<PathBuf>,
    /// `known_hosts` for ssh remotes (without it, a host key is accepted the first time).
    #[arg(long, value_name = "F", env = "PLINTH_KNOWN_HOSTS_FILE")]
    pub known_hosts_file: Option<PathBuf>,
    /// A file holding the webhook secret (GitHub and Gitea HMAC key, GitLab token), read at
    /// each hook; while it is missing, hooks are refused. Without this option, hooks are
    /// refused unless `--allow-unsigned-webhooks`.
    #[arg(long, value_name = "F", env = "PLINTH_WEBHOOK_SECRET_FILE")]
    pub webhook_secret_file: Option<PathBuf>,
    /// Accept webhooks without a signature (no `--webhook-secret-file`): anyone who reaches
    /// the port can then trigger fetches (spaced by `--min-wake-interval`).
    #[arg(long, env = "PLINTH_ALLOW_UNSIGNED_WEBHOOKS")]
    pub allow_unsigned_webhooks: bool,
    /// Least time between two fetches triggered by webhooks (a flood of hooks costs one
    /// fetch per interval; a hook never shortens the backoff after failed fetches).
    #[arg(long, default_value = "10s", value_parser = duration::parse, value_name = "DURATION", env = "PLINTH_MIN_WAKE_INTERVAL")]
    pub min_wake_interval: Duration,
    /// Send tokens over plain `http://` to a remote or forge that is not on a loopback
    /// address (refused by default: use `https://`).
    #[arg(long, env = "PLINTH_ALLOW_INSECURE_HTTP")]
    pub allow_insecure_http: bool,
    /// Where `/metrics`, `/healthz`, `/readyz` and `/hooks/git` are served.
    #[arg(
        long,
        value_name = "ADDR",
        default_value = "127.0.0.1:8080",
        env = "PLINTH_LISTEN"
    )]
    pub listen: std::net::SocketAddr,
    /// Where the git mirror is kept: a directory of the agent's own (created `0700`; an
    /// existing one must be owned by the agent's user and closed to others). Default: a new
    /// private directory under the system's temp dir, removed at exit.
    #[arg(long, value_name = "DIR", env = "PLINTH_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// The link of commit statuses; `{sha}`, `{short}` and `{cluster}` are replaced.
    #[arg(long, value_name = "URL", env = "PLINTH_TARGET_URL")]
    pub target_url: Option<String>,
    /// Apply a commit that does not descend from the applied one (after a force-push).
    #[arg(long, env = "PLINTH_ALLOW_NON_FAST_FORWARD")]
    pub allow_non_fast_forward: bool,
    /// Refuse commits not signed by a trusted key (`--allowed-signers` or `--gpg-keyring`).
    #[arg(long, env = "PLINTH_VERIFY_SIGNATURES")]
    pub verify_signatures: bool,
    /// Trusted SSH keys, in git's allowed-signers format.
    #[arg(long, value_name = "F", env = "PLINTH_ALLOWED_SIGNERS")]
    pub allowed_signers: Option<PathBuf>,
    /// Trusted OpenPGP keys, a keyring file (`gpg --export KEYID > trusted.gpg`).
    #[arg(long, value_name = "F", env = "PLINTH_GPG_KEYRING")]
    pub gpg_keyring: Option<PathBuf>,
    /// Do not run plinth's default policy library when compiling (the repository's own
    /// policy directories still run).
    #[arg(long, env = "PLINTH_NO_DEFAULT_POLICIES")]
    pub no_default_policies: bool,
    /// Longest wait between fetch retries after failures.
    #[arg(long, default_value = "5m", value_parser = duration::parse, value_name = "DURATION")]
    pub max_backoff: Duration,
    /// How long a shutdown lets a running sync finish before stopping it.
    #[arg(long, default_value = "30s", value_parser = duration::parse, value_name = "DURATION")]
    pub shutdown_grace: Duration,
    #[command(flatten)]
    pub apply: ApplyOptionArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Show at most N entries.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

fn options(e: &EngineArgs) -> Options {
    let mut policy = drift::Policy {
        fingerprint: plinth::redact::Key::from_env_value(
            std::env::var(plinth::redact::KEY_ENV).ok().as_deref(),
        ),
        ..drift::Policy::default()
    };
    policy.hand_managers.extend(e.hand_managers.iter().cloned());
    policy.take_from = e.take_from.clone();
    Options {
        manager: e.field_manager.clone(),
        drift: policy,
        concurrency: e.concurrency.max(1),
        ..Options::default()
    }
}

/// The engine's options with what an apply does besides writing.
fn apply_options(e: &EngineArgs, a: &ApplyOptionArgs) -> Result<Options, Error> {
    if !(0.0..=1.0).contains(&a.delete_budget_share) {
        return Err(Error::Usage(
            "`--delete-budget-share` must be between 0 and 1".into(),
        ));
    }
    let mut opts = options(e);
    opts.prune = a.prune;
    opts.drift.mode = match a.drift {
        DriftMode::Detect => Mode::Detect,
        DriftMode::Heal => Mode::Heal,
    };
    opts.health_timeout = a.health_timeout;
    opts.poll = a.poll_interval;
    opts.allow_empty = a.allow_empty;
    opts.budget = Budget {
        max_objects: a.delete_budget,
        max_share: a.delete_budget_share,
    };
    Ok(opts)
}

async fn connect(c: &ConnArgs) -> Result<Cluster, Error> {
    let requests = Requests {
        retries: c.retries,
        timeout: c.request_timeout,
        ..Requests::default()
    };
    Cluster::connect(c.kubeconfig.as_deref(), c.context.as_deref(), requests).await
}

/// What a command printed and its exit code.
#[derive(Debug)]
pub struct Output {
    pub stdout: String,
    pub code: u8,
}

/// Run a command.
pub async fn run(cli: Cli) -> Result<Output, Error> {
    let (format, report) = match &cli.command {
        Cmd::Apply(a) => {
            let mut opts = apply_options(&a.common.engine, &a.apply)?;
            opts.allow_destructive = a.allow_destructive;
            let desired = Desired::read(&a.common.dir)?;
            let cluster = connect(&a.common.conn).await?;
            (
                a.common.format,
                sync::apply(&cluster, &desired, &opts).await,
            )
        }
        Cmd::Diff(c) => {
            let desired = Desired::read(&c.dir)?;
            let cluster = connect(&c.conn).await?;
            (
                c.format,
                sync::diff(&cluster, &desired, &options(&c.engine)).await,
            )
        }
        Cmd::Run(r) => return run_loop(r).await,
        Cmd::History(h) => return history(h).await,
    };
    let stdout = match format {
        Format::Text => report.to_text(),
        Format::Json => report.to_json(),
    };
    Ok(Output {
        stdout,
        code: report.exit_code(),
    })
}

async fn history(h: &HistoryArgs) -> Result<Output, Error> {
    let cluster = connect(&h.conn).await?;
    let ledger = audit::read(&cluster)
        .await
        .map_err(|e| Error::Inventory(e.to_string()))?;
    let mut entries = ledger.history;
    if let Some(n) = h.limit {
        let extra = entries.len().saturating_sub(n);
        entries.drain(..extra);
    }
    let stdout = match h.format {
        Format::Text => audit::to_text(&entries),
        Format::Json => {
            let newest_first: Vec<_> = entries.iter().rev().collect();
            let mut s = serde_json::to_string_pretty(&serde_json::json!({
                "version": 1,
                "commit": ledger.commit,
                "entries": newest_first,
            }))
            .unwrap_or_default();
            s.push('\n');
            s
        }
    };
    Ok(Output { stdout, code: 0 })
}

/// The last two path segments of a remote URL: `https://host/acme/platform.git` →
/// `acme/platform`.
pub fn repo_slug(url: &str) -> Option<String> {
    let path = url
        .split_once("://")
        .map_or(url, |(_, rest)| rest.split_once('/').map_or("", |(_, p)| p));
    let path = path.rsplit_once(':').map_or(path, |(_, p)| p);
    let mut parts: Vec<&str> = path
        .trim_end_matches('/')
        .trim_end_matches(".git")
        .split('/')
        .filter(|p| !p.is_empty())
        .collect();
    let name = parts.pop()?;
    let owner = parts.pop()?;
    Some(format!("{owner}/{name}"))
}

/// The status sink and webhook flavour of the arguments.
fn forge(r: &RunArgs) -> Result<(Arc<dyn StatusSink>, webhook::Forge, String), Error> {
    let token = Token(r.token_file.clone());
    let repo = || {
        r.forge_repo
            .clone()
            .or_else(|| repo_slug(&r.repo))
            .ok_or_else(|| Error::Usage("pass `--forge-repo OWNER/NAME`".into()))
    };
    Ok(match r.forge {
        ForgeKind::Github => {
            let base = r.forge_url.as_deref().unwrap_or("https://api.github.com");
            (
                Arc::new(status::GitHub::new(base, &repo()?, token)),
                webhook::Forge::GitHub,
                "x-access-token".into(),
            )
        }
        ForgeKind::Gitlab => {
            let base = r.forge_url.as_deref().unwrap_or("https://gitlab.com");
            (
                Arc::new(status::GitLab::new(base, &repo()?, token)),
                webhook::Forge::GitLab,
                "oauth2".into(),
            )
        }
        ForgeKind::Gitea => {
            let base = r.forge_url.as_deref().ok_or_else(|| {
                Error::Usage("`--forge gitea` needs `--forge-url https://your.gitea`".into())
            })?;
            (
                Arc::new(status::Gitea::new(base, &repo()?, token)),
                webhook::Forge::Gitea,
                "plinth".into(),
            )
        }
        ForgeKind::None => (
            Arc::new(status::LogSink),
            webhook::Forge::None,
            "plinth".into(),
        ),
    })
}

/// The signature verifier `run` asks for, if any.
fn verifier(r: &RunArgs) -> Result<Option<Verifier>, Error> {
    Ok(
        match (r.verify_signatures, &r.allowed_signers, &r.gpg_keyring) {
            (false, None, None) => None,
            (false, _, _) => {
                return Err(Error::Usage(
                "`--allowed-signers` and `--gpg-keyring` take effect with `--verify-signatures`"
                    .into(),
            ));
            }
            (true, Some(a), None) => Some(Verifier::Ssh {
                allowed_signers: a.clone(),
            }),
            (true, None, Some(k)) => Some(Verifier::Gpg { keyring: k.clone() }),
            (true, _, _) => {
                return Err(Error::Usage(
                "`--verify-signatures` needs exactly one of `--allowed-signers FILE` and `--gpg-keyring FILE`"
                    .into(),
            ));
            }
        },
    )
}

/// Refuse tokens over `http://` (unless allowed) and a webhook secret with unsigned hooks;
/// warn about what weakens the loop.
fn check_transport(r: &RunArgs, git_token: bool) -> Result<(), Error> {
    crate::source::require_https(&r.repo, git_token, r.allow_insecure_http, "the remote")
        .map_err(Error::Usage)?;
    if r.forge != ForgeKind::None {
        let base = r.forge_url.as_deref().unwrap_or("https://");
        crate::source::require_https(base, true, r.allow_insecure_http, "the forge API")
            .map_err(Error::Usage)?;
    }
    if r.webhook_secret_file.is_some() && r.allow_unsigned_webhooks {
        return Err(Error::Usage(
            "`--allow-unsigned-webhooks` and `--webhook-secret-file` exclude each other: with a secret, hooks must be signed"
                .into(),
        ));
    }
    if r.allow_unsigned_webhooks {
        tracing::warn!(
            "`--allow-unsigned-webhooks`: anyone who reaches the port can trigger fetches; set `--webhook-secret-file` instead"
        );
    }
    if r.allow_insecure_http {
        tracing::warn!(
            "`--allow-insecure-http`: tokens may be sent in clear text to `http://` remotes and forges"
        );
    }
    if let Some(p) = &r.webhook_secret_file
        && crate::source::read_secret(p).is_err()
    {
        tracing::warn!(
            file = %p.display(),
            "the webhook secret file is unreadable: webhooks are refused until it exists"
        );
    }
    Ok(())
}

/// The loop's configuration, and the private cache directory to keep while it runs.
fn loop_config(
    r: &RunArgs,
    verifier: Option<Verifier>,
    git_token: Option<PathBuf>,
    username: String,
) -> Result<(gitops::Config, Option<tempfile::TempDir>), Error> {
    let remote = Remote {
        url: r.repo.clone(),
        branch: r.branch.clone(),
        auth: Auth {
            token_file: git_token,
            username: r.git_username.clone().unwrap_or(username),
            ssh_key_file: r.ssh_key_file.clone(),
            known_hosts_file: r.known_hosts_file.clone(),
        },
    };
    // Without `--cache-dir`: a fresh private directory (a random name, `0700`), kept while
    // the loop runs; never a predictable shared path.
    let (cache, private) = match &r.cache_dir {
        Some(d) => (d.clone(), None),
        None => {
            let t = tempfile::Builder::new()
                .prefix(&format!("plinth-agent-{}-", r.cluster))
                .tempdir()
                .map_err(|e| Error::Usage(format!("cannot create the git cache directory: {e}")))?;
            (t.path().join("mirror"), Some(t))
        }
    };
    let mut cfg = gitops::Config::new(remote, cache, &r.cluster, &r.path);
    cfg.interval = r.interval;
    cfg.min_wake_interval = r.min_wake_interval;
    cfg.max_backoff = r.max_backoff;
    cfg.allow_non_fast_forward = r.allow_non_fast_forward;
    cfg.verifier = verifier;
    cfg.apply = apply_options(&r.engine, &r.apply)?;
    cfg.target_url = r.target_url.clone();
    cfg.shutdown_grace = r.shutdown_grace;
    cfg.compile.policies = !r.no_default_policies;
    Ok((cfg, private))
}

/// `plinth-agent run`: the loop and its endpoints until SIGTERM or SIGINT.
async fn run_loop(r: &RunArgs) -> Result<Output, Error> {
    let verifier = verifier(r)?;
    let (sink, hook_forge, username) = forge(r)?;
    let git_token = r.git_token_file.clone().or_else(|| r.token_file.clone());
    check_transport(r, git_token.is_some())?;
    let secret = r.webhook_secret_file.clone();
    let (cfg, _private) = loop_config(r, verifier, git_token, username)?;
    let cluster = connect(&r.conn).await?;
    let metrics = Arc::new(Metrics::new(&r.cluster));
    let stale = r.interval * 3 + cfg.apply.health_timeout * 2 + Duration::from_secs(120);
    let probe = Arc::new(Probe::new(stale));
    let poster = Poster::spawn(sink, status::Retry::default(), Arc::clone(&metrics));
    let agent = Agent::new(
        cfg,
        cluster,
        poster,
        Arc::clone(&metrics),
        Arc::clone(&probe),
    )
    .map_err(|e| Error::Usage(e.to_string()))?;
    let wake = Arc::new(Notify::new());
    let (stop_tx, stop_rx) = watch::channel(false);
    let endpoints = Endpoints {
        metrics,
        probe,
        wake: Arc::clone(&wake),
        forge: hook_forge,
        secret,
        allow_unsigned: r.allow_unsigned_webhooks,
        deliveries: Arc::new(webhook::Deliveries::default()),
        branch: r.branch.clone(),
    };
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel();
    let server = tokio::spawn(server::serve(
        r.listen,
        endpoints,
        server::Limits::default(),
        stop_rx.clone(),
        bound_tx,
    ));
    match bound_rx.await {
        Ok(addr) => tracing::info!(%addr, "serving /metrics, /healthz, /readyz, /hooks/git"),
        Err(_) => {
            let e = match server.await {
                Ok(Err(e)) => e.to_string(),
                _ => "the server stopped".into(),
            };
            return Err(Error::Usage(format!(
                "cannot listen on `{}`: {e}",
                r.listen
            )));
        }
    }
    tracing::info!(
        repo = %crate::source::redact_url(&r.repo), branch = %r.branch, path = %r.path,
        cluster = %r.cluster, interval = %duration::show(r.interval), "starting the loop"
    );
    let signals = tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("signal received: shutting down");
        let _ = stop_tx.send(true);
    });
    agent.run(wake, stop_rx).await;
    signals.abort();
    let _ = server.await;
    Ok(Output {
        stdout: String::new(),
        code: 0,
    })
}

/// SIGTERM or SIGINT.
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        assert_eq!(
            repo_slug("https://github.com/acme/platform.git").as_deref(),
            Some("acme/platform")
        );
        assert_eq!(
            repo_slug("git@github.com:acme/platform.git").as_deref(),
            Some("acme/platform")
        );
        assert_eq!(
            repo_slug("https://gitlab.example/group/sub/platform").as_deref(),
            Some("sub/platform")
        );
        assert_eq!(
            repo_slug("file:///srv/git/platform.git").as_deref(),
            Some("git/platform")
        );
    }

    #[test]
    fn arguments_parse() {
        use clap::Parser as _;
        let cli = Cli::try_parse_from([
            "plinth-agent",
            "run",
            "--repo",
            "https://github.com/acme/platform.git",
            "--cluster",
            "prod",
            "--forge",
            "github",
            "--interval",
            "30s",
            "--prune",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let Cmd::Run(r) = cli.command else {
            panic!("not run")
        };
        assert_eq!(r.branch, "main");
        assert_eq!(r.interval, Duration::from_secs(30));
        assert!(r.apply.prune);
    }
}
