//! CLI: argument parsing, exit codes, and the only place that prints.
//!
//! Exit codes: 0 clean, 1 problems found in the input, 2 usage or system failure; `plinth plan`
//! follows `terraform plan -detailed-exitcode` (0 no changes, 2 changes, 1 every error, usage
//! errors included: [`failure_code`]). A closed stdout (`| head`) ends a command quietly.

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

#[derive(Debug, Args)]
pub struct ReportPageArgs {
    /// The platform repository (a directory of YAML specs).
    #[arg(default_value = ".")]
    pub repo: PathBuf,
    /// The HTML file to write.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub policies: PolicyArgs,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Number of projects (tenants).
    #[arg(long)]
    pub projects: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Where to write the platform repository.
    #[arg(long)]
    pub out: PathBuf,
    /// Projects only (the equal-work counterpart of `--kustomize`).
    #[arg(long)]
    pub projects_only: bool,
    /// Also write the equivalent kustomize tree here.
    #[arg(long)]
    pub kustomize: Option<PathBuf>,
}

/// Where the platform is in git.
#[derive(Debug, Args, Clone)]
pub struct GitArgs {
    /// The git repository (default: the one holding the current directory).
    #[arg(long)]
    pub repo: Option<PathBuf>,
    /// The platform directory inside the repository (default: the current directory's place
    /// in it, or its root when `--repo` is given).
    #[arg(long)]
    pub path: Option<String>,
}

#[derive(Debug, Args)]
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Run the `test_` rules of a policy directory (like `opa test` / `conftest verify`).
    Test(PolicyTestArgs),
    /// Evaluate policies over YAML/JSON documents, as `conftest test` does (exit 0 pass,
    /// 1 failures; with `--fail-on-warn` 1 warnings, 2 failures).
    Eval(PolicyEvalArgs),
}

#[derive(Debug, Args)]
pub struct PolicyEvalArgs {
    /// Files or directories (their `.yaml`, `.yml` and `.json` files) to evaluate; `-` reads
    /// standard input.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<String>,
    /// A directory or file of Rego policies (repeatable).
    #[arg(
        short = 'p',
        long = "policy",
        value_name = "PATH",
        default_value = "policy"
    )]
    pub policy: Vec<PathBuf>,
    /// YAML/JSON documents merged into `data` (a directory or file; repeatable).
    #[arg(short = 'd', long = "data", value_name = "PATH")]
    pub data: Vec<PathBuf>,
    /// Package whose rules are evaluated (repeatable; globs `*`, `?`, `[…]`).
    #[arg(
        short = 'n',
        long = "namespace",
        value_name = "PACKAGE",
        default_value = "main"
    )]
    pub namespace: Vec<String>,
    /// Evaluate the rules of every package.
    #[arg(long)]
    pub all_namespaces: bool,
    /// Evaluate all documents at once, as one list of `{"path", "contents"}`.
    #[arg(long)]
    pub combine: bool,
    /// Warnings fail too (exit 1; failures exit 2), as with conftest.
    #[arg(long)]
    pub fail_on_warn: bool,
    /// Exit 0 even when policies fail.
    #[arg(long)]
    pub no_fail: bool,
    /// Do not print exceptions (they are still counted).
    #[arg(long)]
    pub suppress_exceptions: bool,
    /// Print nothing when the exit code is 0.
    #[arg(long)]
    pub quiet: bool,
    /// Read every file as this format, whatever its extension.
    #[arg(long, value_enum)]
    pub parser: Option<crate::conftest::Parser>,
    /// Accepted for conftest's command lines (the output has no colour).
    #[arg(long, hide = true)]
    pub no_color: bool,
    /// Output format.
    #[arg(short = 'o', long = "format", alias = "output", value_enum, default_value_t = EvalFormat::Standard)]
    pub format: EvalFormat,
    /// Parse policies as Rego v0 (`deny[msg] { … }`).
    #[arg(long)]
    pub rego_v0: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EvalFormat {
    /// conftest's `FAIL - file - namespace - message` lines and totals.
    Standard,
    /// conftest's JSON.
    Json,
}

#[derive(Debug, Args)]
pub struct PolicyTestArgs {
    /// Directory of `.rego` files (tests included).
    #[arg(default_value = "policies")]
    pub dir: PathBuf,
    /// Policy directories or files instead of DIR, as `conftest verify -p` (repeatable).
    #[arg(short = 'p', long = "policy", value_name = "PATH")]
    pub policy: Vec<PathBuf>,
    /// Parse policies as Rego v0.
    #[arg(long)]
    pub rego_v0: bool,
    /// YAML/JSON documents merged into `data` (a directory or file; repeatable).
    #[arg(short = 'd', long = "data", value_name = "PATH")]
    pub data: Vec<PathBuf>,
    /// Only run the tests of these packages (repeatable; globs `*`, `?`, `[…]`).
    #[arg(short = 'n', long = "namespace", value_name = "PACKAGE")]
    pub namespace: Vec<String>,
    /// Print passing tests too.
    #[arg(short, long)]
    pub verbose: bool,
}

/// Which policies run.
#[derive(Debug, Args, Clone)]
pub struct PolicyArgs {
    /// Another directory of Rego policies (repeatable).
    #[arg(long = "policy", value_name = "DIR")]
    pub policy: Vec<PathBuf>,
    /// Package whose rules are evaluated (repeatable; default `main`).
    #[arg(long = "namespace", value_name = "PACKAGE")]
    pub namespace: Vec<String>,
    /// Evaluate the rules of every package.
    #[arg(long)]
    pub all_namespaces: bool,
    /// Parse policies as Rego v0 (`deny[msg] { … }`).
    #[arg(long)]
    pub rego_v0: bool,
    /// Do not run plinth's default policy library.
    #[arg(long)]
    pub no_default_policies: bool,
    /// YAML/JSON documents merged into the policies' `data`, as conftest's `--data` (a
    /// directory or file; repeatable).
    #[arg(long = "data", value_name = "PATH")]
    pub data: Vec<PathBuf>,
    /// Longest one rule may run on one input, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub policy_timeout_ms: u64,
    /// Longest all policy evaluations of the run may take together, in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    pub policy_budget_ms: u64,
    /// Most memory one rule may use on one input, in MiB.
    #[arg(long, default_value_t = 512)]
    pub policy_memory_mb: u64,
}

impl PolicyArgs {
    fn config(&self) -> anyhow::Result<crate::PolicyConfig> {
        let mut extra = Vec::new();
        for dir in &self.policy {
            extra.extend(read_policy_dir(dir, false)?);
        }
        Ok(crate::PolicyConfig {
            options: crate::policy::PolicyOptions {
                namespaces: if self.namespace.is_empty() {
                    vec!["main".to_owned()]
                } else {
                    self.namespace.clone()
                },
                all_namespaces: self.all_namespaces,
                rego_v0: self.rego_v0,
                timeout: std::time::Duration::from_millis(self.policy_timeout_ms),
                budget: std::time::Duration::from_millis(self.policy_budget_ms),
                memory: self.policy_memory_mb * 1024 * 1024,
                data: crate::conftest::read_data(&self.data)?,
            },
            default_library: !self.no_default_policies,
            extra,
        })
    }
}

/// The `.rego` files of a directory (tests only when asked), shown by their path.
fn read_policy_dir(
    dir: &std::path::Path,
    with_tests: bool,
) -> anyhow::Result<Vec<crate::policy::PolicyFile>> {
    if !dir.is_dir() {
        anyhow::bail!(
            "the policy directory `{}` {}",
            dir.display(),
            if dir.exists() {
                "is not a directory"
            } else {
                "does not exist"
            }
        );
    }
    let source = DirSource::new(dir);
    let (snapshot, diags) = crate::load::load(&source, &Limits::default())?;
    if let Some(d) = diags.iter().find(|d| d.is_error()) {
        anyhow::bail!("cannot read policies in `{}`: {}", dir.display(), d.message);
    }
    // Shown by absolute path: these files are not in the platform repository.
    let prefix = Paths::new(
        std::fs::canonicalize(dir)
            .unwrap_or_else(|_| dir.to_path_buf())
            .to_string_lossy(),
    );
    Ok(snapshot
        .with_role(crate::load::FileRole::Policy)
        .filter(|f| with_tests || !f.path.ends_with("_test.rego"))
        .map(|f| crate::policy::PolicyFile {
            path: std::sync::Arc::from(prefix.show(&f.path)),
            text: f.text.clone(),
        })
        .collect())
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
    #[command(flatten)]
    pub policies: PolicyArgs,
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
    /// Show at most this many diagnostics (the rest are counted in a summary line); 0 shows
    /// them all.
    #[arg(long, default_value_t = 500, value_name = "N")]
    pub max_diagnostics: usize,
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
    /// Deepest directory nesting read (deeper files are an error, not skipped silently).
    #[arg(long, default_value_t = Limits::default().max_dir_depth)]
    pub max_dir_depth: usize,
}

impl LimitArgs {
    fn options(&self) -> Options {
        Options {
            limits: Limits {
                max_file_size: self.max_file_size,
                max_files: self.max_files,
                max_dir_depth: self.max_dir_depth,
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
    /// SARIF 2.1.0, for code-scanning upload.
    Sarif,
    /// JUnit XML, one test case per diagnostic.
    Junit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

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
        Command::Check(args) => check(args, out, terminal.stdout),
        Command::Build(args) => build(args, out, err, terminal.stderr),
        Command::Schema(args) => schema(args, out),
        Command::Policy(PolicyCommand::Test(args)) => policy_test(args, out, err),
        Command::Policy(PolicyCommand::Eval(args)) => policy_eval(args, out, err),
        Command::Plan(args) => plan(args, out, err, terminal.stdout),
        Command::Log(args) => log(args, out, err),
        Command::Report(args) => report_page(args, err),
        Command::Generate(args) => generate(args, err),
    }
}

/// `plinth report`: check the repository, then write its page.
fn report_page(args: ReportPageArgs, err: &mut dyn Write) -> anyhow::Result<u8> {
    let mut opts = args.limits.options();
    opts.policies = Some(args.policies.config()?);
    let checked = check_source(&DirSource::new(&args.repo), &opts)?;
    let diags = checked.diagnostics.into_sorted();
    let capacity = crate::capacity::Capacity::of(&checked.specs);
    let page = crate::report::html(&checked.specs, &capacity, &diags);
    std::fs::write(&args.out, page)
        .map_err(|e| anyhow::anyhow!("cannot write `{}`: {e}", args.out.display()))?;
    let errors = diags.iter().filter(|d| d.is_error()).count();
    writeln!(
        err,
        "wrote {}{}",
        args.out.display(),
        if errors > 0 {
            format!(" ({errors} errors: run `plinth check`)")
        } else {
            String::new()
        }
    )?;
    Ok(u8::from(errors > 0))
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
    let mut opts = args.limits.options();
    opts.policies = Some(args.policies.config()?);
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

/// Write diagnostics in the chosen format: at most `--max-diagnostics` of them (sorted, so the
/// first files' come first), then a line counting the rest; totals and the exit code always
/// count them all.
pub fn report(
    diags: &[Diagnostic],
    snapshot: &crate::load::Snapshot,
    paths: &Paths,
    args: &ReportArgs,
    out: &mut dyn Write,
    terminal: bool,
) -> std::io::Result<()> {
    let cap = if args.max_diagnostics == 0 {
        diags.len()
    } else {
        args.max_diagnostics.min(diags.len())
    };
    let (shown, rest) = diags.split_at(cap);
    let omitted = (!rest.is_empty()).then(|| {
        format!(
            "{} more diagnostic{} not shown ({}); `--max-diagnostics 0` shows them all",
            rest.len(),
            if rest.len() == 1 { "" } else { "s" },
            render::summary(rest)
        )
    });
    // Formats for tools carry the count as a note of their own.
    let mut with_note: Vec<Diagnostic>;
    let for_tools: &[Diagnostic] = match &omitted {
        Some(m) => {
            with_note = shown.to_vec();
            with_note.push(Diagnostic::new(crate::diag::Code::Omitted, m.clone()));
            &with_note
        }
        None => shown,
    };
    let text = match args.format {
        Format::Human => {
            let mut s = render::human(shown, snapshot, paths, use_color(args.color, terminal));
            if let Some(m) = &omitted {
                s.push_str(&format!("… {m}\n"));
            }
            let n = snapshot.files.len();
            let files = format!("{n} file{}", if n == 1 { "" } else { "s" });
            s.push_str(&if diags.is_empty() {
                format!("ok: {files}, no problems\n")
            } else {
                format!("{} in {files}\n", render::summary(diags))
            });
            s
        }
        Format::Concise => {
            let mut s = render::concise(shown, paths);
            if let Some(m) = &omitted {
                s.push_str(&format!("… {m}\n"));
            }
            s
        }
        Format::Json => {
            let mut v: serde_json::Value =
                serde_json::from_str(&render::json(shown, paths)).unwrap_or_default();
            let count =
                |sev: crate::diag::Severity| diags.iter().filter(|d| d.severity == sev).count();
            v["summary"]["errors"] = count(crate::diag::Severity::Error).into();
            v["summary"]["warnings"] = count(crate::diag::Severity::Warning).into();
            if !rest.is_empty() {
                v["summary"]["omitted"] = rest.len().into();
            }
            let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
            s.push('\n');
            s
        }
        Format::Github => render::github(for_tools, paths),
        Format::Sarif => render::sarif(for_tools, paths),
        Format::Junit => render::junit(for_tools, paths),
    };
    out.write_all(text.as_bytes())?;
    out.flush()
}

fn build(
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
    let source = DirSource::new(&args.repo);
    let built = match &args.cache_dir {
        Some(dir) => crate::build_cached(&source, &opts, &crate::cache::Cache::new(dir))?,
        None => crate::build_source(&source, &opts)?,
    };
    // Diagnostics go to stderr too: stop the progress line before them.
    let spinner = spinner.filter(|_| built.checked.diagnostics.is_empty());
    let timings_on = std::env::var_os("PLINTH_TIMINGS").is_some();
    let write_clock = std::time::Instant::now();
    let paths = Paths::new(args.repo.to_string_lossy());
    let diags = built.checked.diagnostics.clone().into_sorted();
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
            &built.checked.snapshot,
            &paths,
            &report_args,
            err,
            terminal,
        )?;
    }
    let Some(lowered) = built.lowered.filter(|_| code == 0) else {
        writeln!(err, "error: build stopped; nothing was written")?;
        return Ok(1);
    };
    if let Some(c) = &args.cluster
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
    match args.format {
        BuildFormat::Stream => {
            let cluster = match (&args.cluster, lowered.clusters.len()) {
                (Some(c), _) => c.clone(),
                (None, 1) => lowered.clusters.keys().next().cloned().unwrap_or_default(),
                (None, _) => anyhow::bail!(
                    "the platform has several clusters; choose one with `--cluster` for `--format stream`"
                ),
            };
            out.write_all(crate::emit::stream(&lowered.clusters[&cluster]).as_bytes())?;
            out.flush()?;
        }
        BuildFormat::Tree => {
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
            let timings = built.checked.timings.clone();
            drop(built.checked);
            let written = lowered
                .clusters
                .iter()
                .filter(|(c, _)| args.cluster.as_ref().is_none_or(|x| x == *c))
                .map(|(_, o)| o.manifests.len())
                .sum::<usize>();
            let n_clusters = lowered.clusters.len();
            let tree = crate::emit::into_tree(lowered, args.cluster.as_deref())
                .map_err(anyhow::Error::msg)?;
            let target = match &args.cluster {
                Some(c) => {
                    let prefix = format!("{c}/");
                    let sub: crate::emit::Tree = tree
                        .into_iter()
                        .filter_map(|(p, t)| p.strip_prefix(&prefix).map(|r| (r.to_owned(), t)))
                        .collect();
                    std::fs::create_dir_all(&args.out).map_err(|e| {
                        anyhow::Error::new(e)
                            .context(format!("cannot create `{}`", args.out.display()))
                    })?;
                    mark(&args.out)?;
                    let target = args.out.join(c);
                    replace_dir(&target, &sub)?;
                    target
                }
                None => {
                    replace_dir(&args.out, &tree)?;
                    args.out.clone()
                }
            };
            if timings_on {
                for (stage, d) in &timings {
                    writeln!(
                        err,
                        "timing {stage:>8}: {:>8.1} ms",
                        d.as_secs_f64() * 1000.0
                    )?;
                }
                writeln!(
                    err,
                    "timing {:>8}: {:>8.1} ms",
                    "write",
                    write_clock.elapsed().as_secs_f64() * 1000.0
                )?;
            }
            drop(spinner);
            writeln!(
                err,
                "wrote {written} objects for {} to `{}`",
                match &args.cluster {
                    Some(c) => format!("cluster `{c}`"),
                    None => format!("{n_clusters} cluster(s)"),
                },
                target.display()
            )?;
        }
    }
    Ok(0)
}

/// A progress line on stderr for builds that take more than a moment (terminals only): the
/// current stage and the time so far, erased when the build is done.
struct Spinner {
    stage: std::sync::Arc<std::sync::Mutex<&'static str>>,
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Spinner {
    fn start() -> Spinner {
        use std::sync::atomic::Ordering;
        let stage = std::sync::Arc::new(std::sync::Mutex::new("starting"));
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (s, d) = (stage.clone(), done.clone());
        let thread = std::thread::spawn(move || {
            let started = std::time::Instant::now();
            let mut shown = false;
            let frames = ['|', '/', '-', '\\'];
            let mut i = 0;
            while !d.load(Ordering::Relaxed) {
                std::thread::sleep(std::time::Duration::from_millis(100));
                if started.elapsed() < std::time::Duration::from_millis(800)
                    || d.load(Ordering::Relaxed)
                {
                    continue;
                }
                let name = *s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                eprint!(
                    "\r\x1b[K{} plinth: {name} ({:.1} s)",
                    frames[i % 4],
                    started.elapsed().as_secs_f64()
                );
                i += 1;
                shown = true;
            }
            if shown {
                eprint!("\r\x1b[K");
            }
        });
        Spinner {
            stage,
            done,
            thread: Some(thread),
        }
    }

    fn progress(&self) -> crate::Progress {
        let stage = self.stage.clone();
        crate::Progress(std::sync::Arc::new(move |name| {
            *stage
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = name;
        }))
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Marks a directory as plinth's output, so it may be replaced later.
const MARKER: &str = ".plinth-output";

fn mark(dir: &std::path::Path) -> std::io::Result<()> {
    let m = dir.join(MARKER);
    if !m.exists() {
        if std::fs::read_dir(dir)?.next().is_some() {
            return Err(std::io::Error::other(format!(
                "refusing to write into `{}`: it exists, is not empty and was not written by plinth",
                dir.display()
            )));
        }
        std::fs::write(
            m,
            "written by plinth build; the directory is replaced whole on every build\n",
        )?;
    }
    Ok(())
}

/// Whether `dir` holds exactly the files of `tree` (and the marker), with the same bytes.
fn holds_exactly(dir: &std::path::Path, tree: &crate::emit::Tree) -> bool {
    fn walk(dir: &std::path::Path, rel: &str, out: &mut Vec<String>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let e = e?;
            let kind = e.file_type()?;
            let name = e
                .file_name()
                .into_string()
                .map_err(|_| std::io::Error::other("a file name that is not UTF-8"))?;
            let path = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if kind.is_dir() {
                walk(&e.path(), &path, out)?;
            } else if kind.is_file() {
                out.push(path);
            } else {
                return Err(std::io::Error::other("not a regular file"));
            }
        }
        Ok(())
    }
    use rayon::prelude::*;
    let mut found = Vec::with_capacity(tree.len() + 1);
    if walk(dir, "", &mut found).is_err() {
        return false;
    }
    found.retain(|p| p != MARKER);
    found.sort_unstable();
    found.len() == tree.len()
        && found.iter().zip(tree.keys()).all(|(a, b)| a == b)
        && tree.par_iter().all(|(path, text)| {
            std::fs::read(dir.join(path)).is_ok_and(|bytes| bytes == text.as_bytes())
        })
}

/// Replace `target` with exactly the files of `tree`: written to a sibling directory first,
/// then swapped in by renames, so a failed build leaves the previous output untouched.
fn replace_dir(target: &std::path::Path, tree: &crate::emit::Tree) -> anyhow::Result<()> {
    if target.exists() {
        // A cluster directory of a whole build is plinth's through the marker of its parent.
        let parent_marked = target.parent().is_some_and(|p| p.join(MARKER).exists());
        let is_ours = target.join(MARKER).exists() || parent_marked;
        let empty = std::fs::read_dir(target)?.next().is_none();
        if !is_ours && !empty {
            anyhow::bail!(
                "refusing to replace `{}`: it is not empty and was not written by plinth (no `{MARKER}` file)",
                target.display()
            );
        }
        if is_ours && holds_exactly(target, tree) {
            // Nothing to write: the files stay as they are (and keep their times).
            return Ok(());
        }
    }
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if let Some(file) = parent.ancestors().find(|a| a.is_file()) {
        anyhow::bail!(
            "cannot write the output to `{}`: `{}` is a file, not a directory",
            target.display(),
            file.display()
        );
    }
    std::fs::create_dir_all(parent).map_err(|e| {
        anyhow::Error::new(e).context(format!("cannot create `{}`", parent.display()))
    })?;
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out".to_owned());
    let tmp = parent.join(format!(".{name}.plinth-new-{}", std::process::id()));
    let old = parent.join(format!(".{name}.plinth-old-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        std::fs::write(
            tmp.join(MARKER),
            "written by plinth build; the directory is replaced whole on every build\n",
        )?;
        let mut dirs = std::collections::BTreeSet::new();
        for path in tree.keys() {
            if let Some(d) = tmp.join(path).parent() {
                dirs.insert(d.to_path_buf());
            }
        }
        for d in &dirs {
            std::fs::create_dir_all(d)?;
        }
        // Many small files: write them from every core.
        use rayon::prelude::*;
        tree.par_iter()
            .try_for_each(|(path, text)| std::fs::write(tmp.join(path), text))?;
        Ok(())
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(anyhow::Error::new(e).context(format!("cannot write `{}`", tmp.display())));
    }
    if target.exists() {
        std::fs::rename(target, &old)?;
    }
    if let Err(e) = std::fs::rename(&tmp, target) {
        let _ = std::fs::rename(&old, target);
        let _ = std::fs::remove_dir_all(&tmp);
        return Err(anyhow::Error::new(e).context(format!(
            "cannot move the new output to `{}`",
            target.display()
        )));
    }
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    Ok(())
}

/// `plinth policy test`: `conftest verify`. Policies or data that cannot be read exit 1, as
/// with conftest.
fn policy_test(
    args: PolicyTestArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<u8> {
    let prepared = (|| -> anyhow::Result<_> {
        let files = if args.policy.is_empty() {
            read_policy_dir(&args.dir, true)?
        } else {
            read_policies(&args.policy)?
        };
        if files.is_empty() {
            anyhow::bail!("no `.rego` files in `{}`", args.dir.display());
        }
        Ok((files, crate::conftest::read_data(&args.data)?))
    })();
    let (files, data) = match prepared {
        Ok(x) => x,
        Err(e) => {
            writeln!(err, "error: {e:#}")?;
            return Ok(1);
        }
    };
    let opts = crate::policy::PolicyOptions {
        rego_v0: args.rego_v0,
        all_namespaces: args.namespace.is_empty(),
        namespaces: args.namespace.clone(),
        data,
        ..Default::default()
    };
    let mut diags = crate::diag::Diagnostics::new();
    let results = crate::policy::run_tests(&files, &opts, &mut diags);
    let diags = diags.into_sorted();
    for d in &diags {
        writeln!(
            out,
            "{}",
            render::concise(std::slice::from_ref(d), &Paths::default()).trim_end()
        )?;
    }
    let failed = results.iter().filter(|r| !r.passed && !r.skipped).count();
    let skipped = results.iter().filter(|r| r.skipped).count();
    for r in &results {
        if !r.passed || args.verbose {
            let status = match (r.passed, r.skipped) {
                (true, _) => "PASS",
                (_, true) => "SKIP",
                _ => "FAIL",
            };
            write!(
                out,
                "{status} {}:{} data.{}.{}",
                r.file, r.line, r.package, r.name
            )?;
            match &r.detail {
                Some(d) => writeln!(out, ": {d}")?,
                None => writeln!(out)?,
            }
        }
    }
    // conftest verify's totals.
    let totals = crate::conftest::Totals {
        tests: results.len(),
        passed: results.len() - failed - skipped,
        warnings: 0,
        failures: failed,
        exceptions: 0,
    };
    writeln!(out, "{}, {skipped} skipped", totals.line())?;
    // No test at all fails (a policy directory without tests is a mistake), unless
    // `--namespace` filtered them out, which conftest reports as 0 tests and a pass.
    Ok(u8::from(
        failed > 0 || !diags.is_empty() || (results.is_empty() && args.namespace.is_empty()),
    ))
}

/// The `.rego` files of policy directories and files (tests included, as conftest loads them).
fn read_policies(paths: &[PathBuf]) -> anyhow::Result<Vec<crate::policy::PolicyFile>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_file() {
            let text = std::fs::read_to_string(p)
                .map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", p.display()))?;
            files.push(crate::policy::PolicyFile {
                path: std::sync::Arc::from(p.display().to_string()),
                text: std::sync::Arc::from(text),
            });
        } else if p.is_dir() {
            // Shown under the path as given, as conftest shows them.
            let canonical = std::fs::canonicalize(p).unwrap_or_else(|_| p.clone());
            files.extend(read_policy_dir(p, true)?.into_iter().map(|mut f| {
                if let Ok(rest) = std::path::Path::new(&*f.path).strip_prefix(&canonical) {
                    f.path = std::sync::Arc::from(p.join(rest).display().to_string());
                }
                f
            }));
        } else {
            anyhow::bail!("no policy directory or file `{}`", p.display());
        }
    }
    if files.is_empty() {
        let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
        anyhow::bail!("no policies found in {}", shown.join(", "));
    }
    Ok(files)
}

/// `plinth policy eval`: `conftest test`. Exit codes are conftest's: 0 pass, 1 failures (or a
/// policy, input or data that cannot be used); with `--fail-on-warn`, 1 warnings, 2 failures.
fn policy_eval(
    args: PolicyEvalArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> anyhow::Result<u8> {
    let prepared = (|| -> anyhow::Result<_> {
        let files = read_policies(&args.policy)?;
        let data = crate::conftest::read_data(&args.data)?;
        let paths: Vec<PathBuf> = args.files.iter().map(PathBuf::from).collect();
        let inputs =
            crate::conftest::read_inputs(&paths, args.parser, &mut std::io::stdin().lock())?;
        Ok((files, data, inputs))
    })();
    let (files, data, inputs) = match prepared {
        Ok(x) => x,
        Err(e) => {
            writeln!(err, "error: {e:#}")?;
            return Ok(1);
        }
    };
    let opts = crate::policy::PolicyOptions {
        namespaces: args.namespace.clone(),
        all_namespaces: args.all_namespaces,
        rego_v0: args.rego_v0,
        data,
        ..Default::default()
    };
    let (results, diags) = crate::conftest::evaluate(&files, &opts, &inputs, args.combine);
    let diags = diags.into_sorted();
    for d in &diags {
        writeln!(
            err,
            "{}",
            render::concise(std::slice::from_ref(d), &Paths::default()).trim_end()
        )?;
    }
    let totals = crate::conftest::Totals::of(&results);
    let code = if args.no_fail {
        0
    } else if args.fail_on_warn {
        if totals.failures > 0 {
            2
        } else {
            u8::from(totals.warnings > 0)
        }
    } else {
        u8::from(totals.failures > 0)
    };
    // A policy that does not load or fails is never a pass.
    let code = if diags.iter().any(Diagnostic::is_error) {
        code.max(1)
    } else {
        code
    };
    if args.quiet && code == 0 {
        return Ok(0);
    }
    match args.format {
        EvalFormat::Standard => write!(
            out,
            "{}",
            crate::conftest::render_standard(&results, args.suppress_exceptions)
        )?,
        EvalFormat::Json => write!(out, "{}", crate::conftest::render_json(&results))?,
    }
    Ok(code)
}

/// The repository and the platform's path inside it.
fn open_git(g: &GitArgs) -> anyhow::Result<(crate::load::git::GitRepo, String)> {
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

/// When the platform directory holds no `plinth.yaml` but directories below it do, the
/// error that names them (plinth would otherwise read the whole tree as one platform, with
/// templates and files resolved against the wrong root).
fn platform_below(source: &dyn crate::load::Source, path: &str) -> Option<String> {
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

/// A compiled side of a plan (its approvals travel in the lowered output).
struct Side {
    lowered: crate::lower::Lowered,
    /// Its specs, for the GPU capacity section.
    specs: Option<crate::model::Specs>,
}

/// A revision read into memory: its snapshot, what loading reported, and when loading began.
type Loaded = (
    crate::load::Snapshot,
    crate::diag::Diagnostics,
    std::time::Instant,
);

/// Read a source (in this thread: git handles stay here) for [`compile_side`].
fn load_side(source: &dyn crate::load::Source, opts: &crate::Options) -> anyhow::Result<Loaded> {
    let started = std::time::Instant::now();
    let (snapshot, diags) = crate::load::load(source, &opts.limits)?;
    Ok((snapshot, diags, started))
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
    let (snapshot, load_diags, started) = loaded;
    let built = crate::build_loaded(snapshot, load_diags, opts, cache, started);
    let diags = built.checked.diagnostics.clone().into_sorted();
    let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).cloned().collect();
    if !errors.is_empty() || built.lowered.is_none() {
        writeln!(err, "error: {what} does not compile:")?;
        err.write_all(
            render::human(&errors, &built.checked.snapshot, &Paths::new(prefix), color).as_bytes(),
        )?;
        return Ok(None);
    }
    // A cache hit keeps only the Platform's specs: read the others again for the capacity.
    let cached = built.checked.timings.first().map(|t| t.0) == Some("cache hit");
    let specs = if cached {
        crate::capacity::specs_of(&built.checked.snapshot, opts.yaml)
    } else {
        built.checked.specs
    };
    Ok(built.lowered.map(|lowered| Side {
        lowered,
        specs: Some(specs),
    }))
}

fn plan(
    args: PlanArgs,
    out: &mut dyn Write,
    err: &mut dyn Write,
    terminal: bool,
) -> anyhow::Result<u8> {
    use crate::load::git::GitError;
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
    let cache = if args.no_cache {
        None
    } else {
        Some(crate::cache::Cache::new(
            args.cache_dir
                .clone()
                .unwrap_or_else(|| repo.git_dir().join("plinth-cache")),
        ))
    };
    let base_id = repo.resolve(&args.base)?;
    let base_info = repo.commit(base_id)?;
    let base_opts = crate::Options::default();
    let head_opts = crate::Options {
        policies: Some(args.policies.config()?),
        ..crate::Options::default()
    };
    // The base as deployed: a revision where the platform did not exist yet is empty.
    let base_src = match repo.source(base_id, &path) {
        Ok(src) => Some(load_side(&src, &base_opts)?),
        Err(GitError::MissingPath { .. }) => None,
        Err(e) => return Err(e.into()),
    };
    let base_what = format!("base `{}`", args.base);
    let (head_src, head_what, head_label, head_id): (Box<dyn crate::load::Source>, _, _, _) =
        match &args.head {
            Some(rev) => {
                let id = repo.resolve(rev)?;
                let src = repo.source(id, &path).map_err(|e| match e {
                    GitError::MissingPath { .. } => anyhow::anyhow!(
                        "{e}; `--path` names the platform directory relative to the repository root"
                    ),
                    e => e.into(),
                })?;
                (
                    Box::new(src),
                    format!("head `{rev}`"),
                    format!("{rev} ({})", &id.to_string()[..7]),
                    id,
                )
            }
            None => {
                let root = repo.workdir().ok_or_else(|| {
                    anyhow::anyhow!("the repository has no working tree; pass `--head`")
                })?;
                if !root.join(&path).is_dir() {
                    anyhow::bail!(
                        "`{path}` is not a directory of the working tree; `--path` names the platform directory relative to the repository root"
                    );
                }
                (
                    Box::new(DirSource::new(root.join(&path))),
                    "the working tree".to_owned(),
                    "working tree".to_owned(),
                    repo.resolve("HEAD")?,
                )
            }
        };
    if let Some(m) = platform_below(&*head_src, &path) {
        anyhow::bail!("{m}");
    }
    let head_src = load_side(&*head_src, &head_opts)?;
    // Both sides compile at once (each mostly single-threaded when its result is cached).
    let (mut base_err, mut head_err) = (Vec::new(), Vec::new());
    let (base, head) = std::thread::scope(|scope| {
        let (cache, prefix, opts, what, out) = (
            cache.as_ref(),
            &prefix,
            &base_opts,
            &base_what,
            &mut base_err,
        );
        let base = scope.spawn(move || match base_src {
            Some(src) => {
                compile_side(src, opts, cache, what, prefix, out, color).map(|s| s.map(Some))
            }
            None => Ok(Some(None)),
        });
        let head = compile_side(
            head_src,
            &head_opts,
            cache,
            &head_what,
            prefix,
            &mut head_err,
            color,
        );
        let base = base
            .join()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("compiling the base panicked")));
        (base, head)
    });
    let base = match base? {
        Some(Some(s)) => s,
        Some(None) => Side {
            lowered: Default::default(),
            specs: None,
        },
        None => {
            err.write_all(&base_err)?;
            return Ok(1);
        }
    };
    let Some(head) = head? else {
        err.write_all(&head_err)?;
        return Ok(1);
    };
    let opts = crate::plan::PlanOptions {
        allow_destructive: args.allow_destructive,
        max_delete_share: args.max_delete_share,
        fingerprint: crate::redact::Key::from_env_value(
            std::env::var(crate::redact::KEY_ENV).ok().as_deref(),
        ),
    };
    let mut p = match &head.specs {
        Some(specs) => crate::plan::plan_with_capacity(
            &base.lowered,
            &head.lowered,
            base.specs.as_ref(),
            specs,
            &opts,
        ),
        None => crate::plan::plan(&base.lowered, &head.lowered, &opts),
    };
    // History: which commits between base and head touched each change's spec file (and
    // each approval's file).
    p.prefix_files(&prefix);
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
    p.attach_history(
        |file| -> anyhow::Result<Vec<crate::load::git::CommitInfo>> {
            let mut list = Vec::new();
            for k in &commits {
                if repo.touched(k, file)? {
                    list.push(k.clone());
                }
            }
            Ok(list)
        },
    )?;
    let sides = crate::plan::render::Sides {
        base: format!("{} ({})", args.base, base_info.short),
        head: head_label,
    };
    let full_name = args
        .output
        .as_ref()
        .map_or_else(|| "plinth-plan.md".to_owned(), |o| o.display().to_string());
    let (shown, full) = match args.format {
        PlanFormat::Terminal => {
            let t = crate::plan::render::terminal(&p, &sides, color);
            (t, crate::plan::render::terminal(&p, &sides, false))
        }
        PlanFormat::Markdown => (
            crate::plan::render::markdown(
                &p,
                &sides,
                Some(crate::plan::render::COMMENT_LIMIT),
                &full_name,
            ),
            crate::plan::render::markdown(&p, &sides, None, &full_name),
        ),
        PlanFormat::Json => {
            let j = crate::plan::render::json(&p, &sides);
            (j.clone(), j)
        }
    };
    out.write_all(shown.as_bytes())?;
    if let Some(file) = &args.output {
        std::fs::write(file, full)?;
    }
    if let Some(dir) = &args.pages {
        let pages = crate::plan::render::markdown_pages(
            &p,
            &sides,
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
    Ok(if p.is_refused() {
        1
    } else if p.has_changes() {
        2
    } else {
        0
    })
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

fn log(args: LogArgs, out: &mut dyn Write, err: &mut dyn Write) -> anyhow::Result<u8> {
    use crate::load::git::GitError;
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
    // A platform that does not compile at a commit: the first error, to say why.
    type Compiled = Result<crate::lower::Lowered, String>;
    let mut cache: std::collections::BTreeMap<String, Compiled> = Default::default();
    let mut compile = |id: &str| -> anyhow::Result<Compiled> {
        if let Some(l) = cache.get(id) {
            return Ok(l.clone());
        }
        let oid = repo.resolve(id)?;
        let lowered = match repo.source(oid, &path) {
            Ok(src) => {
                let built = crate::build_source(&src, &crate::Options::default())?;
                let diags = built.checked.diagnostics.into_sorted();
                match (built.lowered, diags.iter().find(|d| d.is_error())) {
                    (Some(l), None) => Ok(l),
                    (_, Some(d)) => Err(render::concise(
                        std::slice::from_ref(d),
                        &Paths::new(prefix.as_str()),
                    )
                    .lines()
                    .next()
                    .unwrap_or_default()
                    .to_owned()),
                    (None, None) => Err("it does not lower".to_owned()),
                }
            }
            Err(GitError::MissingPath { .. }) => Ok(crate::lower::Lowered::default()),
            Err(e) => return Err(e.into()),
        };
        cache.insert(id.to_owned(), lowered.clone());
        Ok(lowered)
    };
    // In a shallow clone the walk ends at commits whose parents are not here.
    let mut cut: Option<crate::load::git::CommitInfo> = None;
    let mut entries = Vec::new();
    for c in &commits {
        if since_date.as_ref().is_some_and(|d| c.date < *d) {
            continue;
        }
        if c.parents.first().is_some_and(|p| !repo.has(p)) {
            cut = Some(c.clone());
            break;
        }
        let after = compile(&c.id)?;
        let before = match c.parents.first() {
            Some(p) => compile(p)?,
            None => Ok(crate::lower::Lowered::default()),
        };
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
        let p = crate::plan::plan(&before, &after, &opts);
        if p.has_changes() {
            entries.push((c.clone(), Ok(p)));
        }
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
            for (c, p) in &entries {
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
            if entries.is_empty() {
                writeln!(err, "no commit in range changed the platform")?;
            }
            if let Some(note) = &cut_note {
                writeln!(err, "note: {note}")?;
            }
        }
        LogFormat::Json => {
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
            if let Some(note) = &cut_note {
                writeln!(err, "note: {note}")?;
            }
        }
    }
    Ok(0)
}

fn generate(args: GenerateArgs, err: &mut dyn Write) -> anyhow::Result<u8> {
    let write_all =
        |dir: &std::path::Path, files: crate::generate::Files| -> anyhow::Result<usize> {
            if dir.exists() {
                anyhow::bail!("`{}` exists; choose a new directory", dir.display());
            }
            let n = files.len();
            for (path, text) in files {
                let p = dir.join(path);
                if let Some(parent) = p.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(p, text)?;
            }
            Ok(n)
        };
    let files = if args.projects_only {
        crate::generate::projects_only(args.projects, args.seed)
    } else {
        crate::generate::platform(args.projects, args.seed)
    };
    let n = write_all(&args.out, files)?;
    writeln!(err, "wrote {n} spec files to `{}`", args.out.display())?;
    if let Some(k) = &args.kustomize {
        let n = write_all(k, crate::generate::kustomize_tree(args.projects, args.seed))?;
        writeln!(err, "wrote {n} kustomize files to `{}`", k.display())?;
    }
    Ok(0)
}

fn schema(args: SchemaArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let all = crate::schema::generate_all();
    let text = match &args.kind {
        None => all.get("plinth.schema.json").cloned().unwrap_or_default(),
        Some(k) => match crate::model::Kind::ALL
            .into_iter()
            .find(|kind| kind.as_str().eq_ignore_ascii_case(k))
        {
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
