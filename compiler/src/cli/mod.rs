//! CLI: argument parsing, exit codes, and the only place that prints. One file per command
//! (`check`, `build`, `plan`, `log`, `policy`, `report`, `schema`, `generate`), the arguments they
//! share (`args`), the atomic writer of `out/` (`out_dir`), the build's progress line
//! (`progress`) and the git lookups of `plan` and `log` (`git`).
//!
//! Exit codes: 0 clean, 1 problems found in the input, 2 usage or system failure; `plinth plan`
//! follows `terraform plan -detailed-exitcode` (0 no changes, 2 changes, 1 every error, usage
//! errors included: [`failure_code`]). A closed stdout (`| head`) ends a command quietly.

mod args;
mod build;
mod check;
mod exit;
mod generate;
mod git;
mod log;
mod out_dir;
mod over;
mod plan;
mod policy;
mod progress;
mod report;
mod schema;

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub use args::{Color, GitArgs, LimitArgs, PolicyArgs};
pub use build::{BuildArgs, BuildFormat};
pub use check::{CheckArgs, Format, ReportArgs, exit_code, report};
pub use generate::GenerateArgs;
pub use log::{LogArgs, LogFormat};
pub use plan::{PlanArgs, PlanFormat};
pub use policy::{EvalFormat, PolicyCommand, PolicyEvalArgs, PolicyTestArgs};
pub use report::ReportPageArgs;
pub use schema::SchemaArgs;

#[derive(Debug, Parser)]
#[command(
    name = "plinth",
    version,
    about = "GitOps compiler for machine-learning platforms",
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate a platform repository: YAML, schemas and cross-object rules.
    Check(CheckArgs),
    /// Check, then compile the specs into Kubernetes and cloud manifests per cluster.
    Build(BuildArgs),
    /// Print the JSON Schema of a spec kind (or of any kind).
    Schema(SchemaArgs),
    /// Work with Rego policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Compile two git revisions and show what would change (exit 0 none, 2 changes, 1 error).
    Plan(PlanArgs),
    /// For each commit, the platform objects it changed.
    Log(LogArgs),
    /// Write the platform as one self-contained HTML page: GPU pools, projects, datasets,
    /// rollouts and what `check` reports (exit 1 when the check has errors; the page is
    /// written anyway).
    Report(ReportPageArgs),
    /// Write a synthetic platform (and an equivalent kustomize tree) for benchmarks.
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    crate::policy::without_huge_pages();
    exit::exits_after();
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            // `plan`'s 2 means "changes": its usage errors are errors like any other.
            let is_plan = std::env::args_os().nth(1).is_some_and(|a| a == "plan");
            return if !e.use_stderr() {
                ExitCode::SUCCESS
            } else if is_plan {
                ExitCode::from(1)
            } else {
                ExitCode::from(2)
            };
        }
    };
    let failure = failure_code(&cli.command);
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let terminal = Terminal {
        stdout: stdout.is_terminal(),
        stderr: stderr.is_terminal(),
    };
    match run(cli, &mut stdout.lock(), &mut std::io::stderr(), terminal) {
        Ok(code) => ExitCode::from(code),
        // The reader went away (`plinth log | head`): nothing more to say. A plan's 0 would
        // claim "no changes", so an undelivered plan stays a failure.
        Err(e) if is_broken_pipe(&e) => ExitCode::from(if failure == 1 { 1 } else { 0 }),
        Err(e) => {
            let _ = writeln!(stderr.lock(), "error: {e:#}");
            ExitCode::from(failure)
        }
    }
}

/// Whether an error is a write to a closed pipe.
pub fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// The exit code of a command that fails: 2 (usage or system failure), except for `plan`,
/// whose 2 means "changes" (`terraform plan -detailed-exitcode`), so every error is 1.
pub fn failure_code(command: &Command) -> u8 {
    match command {
        Command::Plan(_) => 1,
        _ => 2,
    }
}

/// Whether the standard streams are terminals (for colour).
#[derive(Debug, Clone, Copy, Default)]
pub struct Terminal {
    pub stdout: bool,
    pub stderr: bool,
}

/// Run a parsed command, writing its data to `out` and its logs to `err`. Returns the exit
/// code.
pub fn run(
    cli: Cli,
    out: &mut dyn Write,
    err: &mut dyn Write,
    terminal: Terminal,
) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check(args) => check::check(args, out, terminal.stdout),
        Command::Build(args) => build::build(args, out, err, terminal.stderr),
        Command::Schema(args) => schema::schema(args, out),
        Command::Policy(PolicyCommand::Test(args)) => policy::policy_test(args, out, err),
        Command::Policy(PolicyCommand::Eval(args)) => policy::policy_eval(args, out, err),
        Command::Plan(args) => plan::plan(args, out, err, terminal.stdout),
        Command::Log(args) => log::log(args, out, err),
        Command::Report(args) => report::report_page(args, err),
        Command::Generate(args) => generate::generate(args, err),
    }
}
