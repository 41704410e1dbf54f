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
    /// Check, then compile the specs into Kubernetes and cloud manifests per cluster.
    Build(BuildArgs),
    /// Print the JSON Schema of a spec kind (or of any kind).
    Schema(SchemaArgs),
    /// Work with Rego policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Run the `test_` rules of a policy directory (like `opa test` / `conftest verify`).
    Test(PolicyTestArgs),
}

#[derive(Debug, Args)]
pub struct PolicyTestArgs {
    /// Directory of `.rego` files (tests included).
    #[arg(default_value = "policies")]
    pub dir: PathBuf,
    /// Parse policies as Rego v0.
    #[arg(long)]
    pub rego_v0: bool,
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
    /// Longest one rule may run on one input, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub policy_timeout_ms: u64,
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
                memory: self.policy_memory_mb * 1024 * 1024,
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
            return if e.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let terminal = Terminal {
        stdout: stdout.is_terminal(),
        stderr: stderr.is_terminal(),
    };
    match run(cli, &mut stdout.lock(), &mut stderr.lock(), terminal) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let _ = writeln!(stderr.lock(), "error: {e:#}");
            ExitCode::from(2)
        }
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
        Command::Policy(PolicyCommand::Test(args)) => policy_test(args, out),
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
        Format::Sarif => render::sarif(diags, paths),
        Format::Junit => render::junit(diags, paths),
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
    let opts = args.limits.options();
    let source = DirSource::new(&args.repo);
    let built = crate::build_source(&source, &opts)?;
    let paths = Paths::new(args.repo.to_string_lossy());
    let diags = built.checked.diagnostics.clone().into_sorted();
    let report_args = ReportArgs {
        format: Format::Human,
        strict: args.strict,
        color: args.color,
    };
    let code = exit_code(&diags, args.strict);
    if !diags.is_empty() {
        let text = render::human(
            &diags,
            &built.checked.snapshot,
            &paths,
            use_color(args.color, terminal),
        );
        err.write_all(text.as_bytes())?;
        writeln!(err, "{}", render::summary(&diags))?;
    }
    let _ = report_args;
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
            let tree =
                crate::emit::tree(&lowered, args.cluster.as_deref()).map_err(anyhow::Error::msg)?;
            let target = match &args.cluster {
                Some(c) => {
                    let prefix = format!("{c}/");
                    let sub: crate::emit::Tree = tree
                        .into_iter()
                        .filter_map(|(p, t)| p.strip_prefix(&prefix).map(|r| (r.to_owned(), t)))
                        .collect();
                    std::fs::create_dir_all(&args.out)?;
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
            writeln!(
                err,
                "wrote {} objects for {} to `{}`",
                lowered
                    .clusters
                    .iter()
                    .filter(|(c, _)| args.cluster.as_ref().is_none_or(|x| x == *c))
                    .map(|(_, o)| o.manifests.len())
                    .sum::<usize>(),
                match &args.cluster {
                    Some(c) => format!("cluster `{c}`"),
                    None => format!("{} cluster(s)", lowered.clusters.len()),
                },
                target.display()
            )?;
        }
    }
    Ok(0)
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
    }
    let parent = target
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(parent)?;
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
        for (path, text) in tree {
            let p = tmp.join(path);
            if let Some(d) = p.parent()
                && dirs.insert(d.to_path_buf())
            {
                std::fs::create_dir_all(d)?;
            }
            std::fs::write(p, text)?;
        }
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

fn policy_test(args: PolicyTestArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let files = read_policy_dir(&args.dir, true)?;
    if files.is_empty() {
        anyhow::bail!("no `.rego` files in `{}`", args.dir.display());
    }
    let opts = crate::policy::PolicyOptions {
        rego_v0: args.rego_v0,
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
    let failed = results.iter().filter(|r| !r.passed).count();
    for r in &results {
        if !r.passed || args.verbose {
            let status = if r.passed { "PASS" } else { "FAIL" };
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
    writeln!(
        out,
        "{} passed, {failed} failed, {} tests",
        results.len() - failed,
        results.len()
    )?;
    Ok(u8::from(
        failed > 0 || !diags.is_empty() || results.is_empty(),
    ))
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
