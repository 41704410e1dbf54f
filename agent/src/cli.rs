//! Command-line arguments, and running a command into its output and exit code.
//!
//! `plinth-agent apply --once` and `plinth-agent diff`; results go to stdout (text or JSON),
//! logs to stderr. Exit codes: `0` clean (applied and healthy / no difference), `2` changes
//! (`diff`: differences; `apply`: drift detected and left in place), `1` failure or refusal.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cluster::{Cluster, Requests};
use crate::desired::Desired;
use crate::drift::{self, Mode};
use crate::prune::Budget;
use crate::sync::{self, Options};
use crate::{Error, duration};

#[derive(Debug, Parser)]
#[command(
    name = "plinth-agent",
    version,
    about = "Apply compiled plinth output to a cluster: staged server-side apply, prune, drift, health"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
    /// Log progress to stderr (`PLINTH_LOG` sets a filter, e.g. `plinth_agent=debug`).
    #[arg(short, long, global = true)]
    pub verbose: bool,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Apply `out/<cluster>/` to the cluster once.
    Apply(ApplyArgs),
    /// Show what `apply` would change against the live cluster (exit 0 none, 2 some, 1 error).
    Diff(CommonArgs),
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

#[derive(Debug, Args)]
pub struct CommonArgs {
    /// The kubeconfig to use (default: `KUBECONFIG`, `~/.kube/config`, or in-cluster).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// A context of the kubeconfig.
    #[arg(long)]
    pub context: Option<String>,
    /// One cluster's output directory, `out/<cluster>`.
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
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
    /// Bound on one API request.
    #[arg(long, default_value = "30s", value_parser = duration::parse, value_name = "DURATION")]
    pub request_timeout: Duration,
    /// Further attempts after a transient API failure (5xx, timeouts, dropped connections).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub retries: u32,
    /// Objects handled at once within a stage.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub concurrency: usize,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Run once and exit (the continuous loop comes with the git source).
    #[arg(long)]
    pub once: bool,
    /// Delete objects the agent applied before that are no longer desired.
    #[arg(long)]
    pub prune: bool,
    /// What to do about fields changed by hand.
    #[arg(long, value_enum, default_value = "detect")]
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

fn options(c: &CommonArgs) -> Options {
    let mut policy = drift::Policy::default();
    policy.hand_managers.extend(c.hand_managers.iter().cloned());
    policy.take_from = c.take_from.clone();
    Options {
        manager: c.field_manager.clone(),
        drift: policy,
        concurrency: c.concurrency.max(1),
        ..Options::default()
    }
}

async fn connect(c: &CommonArgs) -> Result<Cluster, Error> {
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
    let (common, report) = match &cli.command {
        Cmd::Apply(a) => {
            if !a.once {
                return Err(Error::Usage(
                    "the continuous loop is not available yet; run `plinth-agent apply --once`"
                        .into(),
                ));
            }
            if !(0.0..=1.0).contains(&a.delete_budget_share) {
                return Err(Error::Usage(
                    "`--delete-budget-share` must be between 0 and 1".into(),
                ));
            }
            let desired = Desired::read(&a.common.dir)?;
            let mut opts = options(&a.common);
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
            let cluster = connect(&a.common).await?;
            (&a.common, sync::apply(&cluster, &desired, &opts).await)
        }
        Cmd::Diff(c) => {
            let desired = Desired::read(&c.dir)?;
            let cluster = connect(c).await?;
            (c, sync::diff(&cluster, &desired, &options(c)).await)
        }
    };
    let stdout = match common.format {
        Format::Text => report.to_text(),
        Format::Json => report.to_json(),
    };
    Ok(Output {
        stdout,
        code: report.exit_code(),
    })
}
