//! `plinth policy test` and `plinth policy eval`: conftest's `verify` and `test`.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use crate::diag::Diagnostic;
use crate::load::{DirSource, Limits};
use crate::render::{self, Paths};

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

/// The `.rego` files of a directory (tests only when asked), shown by their path.
pub(super) fn read_policy_dir(
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

/// `plinth policy test`: `conftest verify`. Policies or data that cannot be read exit 1, as
/// with conftest.
pub(super) fn policy_test(
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
pub(super) fn policy_eval(
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
