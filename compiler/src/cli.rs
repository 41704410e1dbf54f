//! CLI: argument parsing, exit codes, and the only place that prints.
//!
//! Exit codes: 0 clean, 1 problems found in the input, 2 usage or system failure (the codes of
//! `plinth plan` follow `terraform plan -detailed-exitcode` and are documented there).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::diag::Diagnostic;
use crate::load::{DirSource, Limits};
use crate::render::{self, Paths};
use crate::{Options, check_source};

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
    /// Print the JSON Schema of a spec kind (or of any kind).
    Schema(SchemaArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The platform repository (a directory of YAML specs).
    #[arg(default_value = ".")]
    pub repo: PathBuf,
    #[command(flatten)]
    pub report: ReportArgs,
    #[command(flatten)]
    pub limits: LimitArgs,
}

/// How diagnostics are reported.
#[derive(Debug, Args, Clone)]
pub struct ReportArgs {
    /// Output format of diagnostics.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub format: Format,
    /// Treat warnings as errors.
    #[arg(long)]
    pub strict: bool,
    /// When to colour human output (`NO_COLOR` is honoured under `auto`).
    #[arg(long, value_enum, default_value_t = Color::Auto)]
    pub color: Color,
}

/// Limits against hostile repositories.
#[derive(Debug, Args, Clone)]
pub struct LimitArgs {
    /// Largest spec file read, in bytes.
    #[arg(long, default_value_t = Limits::default().max_file_size)]
    pub max_file_size: u64,
    /// Most platform files read.
    #[arg(long, default_value_t = Limits::default().max_files)]
    pub max_files: usize,
}

impl LimitArgs {
    fn options(&self) -> Options {
        Options {
            limits: Limits {
                max_file_size: self.max_file_size,
                max_files: self.max_files,
                ..Limits::default()
            },
            ..Options::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Messages with the offending source lines marked.
    Human,
    /// One line per diagnostic.
    Concise,
    /// A JSON document.
    Json,
    /// GitHub Actions workflow annotations.
    Github,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Kind (`Project`, `Dataset`, ...); every kind at once when absent.
    pub kind: Option<String>,
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let color_ok = stdout.is_terminal();
    match run(cli, &mut stdout.lock(), color_ok) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = writeln!(stderr.lock(), "error: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Run a parsed command, writing its data to `out`. Returns the exit code.
pub fn run(cli: Cli, out: &mut dyn Write, terminal: bool) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check(args) => check(args, out, terminal),
        Command::Schema(args) => schema(args, out),
    }
}

fn use_color(c: Color, terminal: bool) -> bool {
    match c {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => {
            terminal
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var("TERM").map_or(true, |t| t != "dumb")
        }
    }
}

fn check(args: CheckArgs, out: &mut dyn Write, terminal: bool) -> anyhow::Result<u8> {
    let opts = args.limits.options();
    let source = DirSource::new(&args.repo);
    let checked = check_source(&source, &opts)?;
    let paths = Paths::new(args.repo.to_string_lossy());
    let diags = checked.diagnostics.into_sorted();
    report(
        &diags,
        &checked.snapshot,
        &paths,
        &args.report,
        out,
        terminal,
    )?;
    Ok(exit_code(&diags, args.report.strict))
}

/// 1 when there are errors (or warnings under `--strict`), else 0.
pub fn exit_code(diags: &[Diagnostic], strict: bool) -> u8 {
    let failing = diags.iter().any(|d| match d.severity {
        crate::diag::Severity::Error => true,
        crate::diag::Severity::Warning => strict,
        crate::diag::Severity::Note => false,
    });
    u8::from(failing)
}

/// Write diagnostics in the chosen format.
pub fn report(
    diags: &[Diagnostic],
    snapshot: &crate::load::Snapshot,
    paths: &Paths,
    args: &ReportArgs,
    out: &mut dyn Write,
    terminal: bool,
) -> std::io::Result<()> {
    let text = match args.format {
        Format::Human => {
            let mut s = render::human(diags, snapshot, paths, use_color(args.color, terminal));
            let n = snapshot.files.len();
            let files = format!("{n} file{}", if n == 1 { "" } else { "s" });
            s.push_str(&if diags.is_empty() {
                format!("ok: {files}, no problems\n")
            } else {
                format!("{} in {files}\n", render::summary(diags))
            });
            s
        }
        Format::Concise => render::concise(diags, paths),
        Format::Json => render::json(diags, paths),
        Format::Github => render::github(diags, paths),
    };
    out.write_all(text.as_bytes())?;
    out.flush()
}

fn schema(args: SchemaArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let all = crate::schema::generate_all();
    let text = match &args.kind {
        None => all.get("plinth.schema.json").cloned().unwrap_or_default(),
        Some(k) => match crate::model::Kind::parse(k) {
            Some(kind) => crate::schema::committed(kind).to_owned(),
            None => anyhow::bail!(
                "unknown kind `{k}`; the kinds are {}",
                crate::model::Kind::ALL
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    out.write_all(text.as_bytes())?;
    Ok(0)
}
