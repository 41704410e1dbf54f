//! `plinth check`, and the diagnostics report every command that checks writes.

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::args::{Color, LimitArgs, PolicyArgs, use_color};
use crate::check_source;
use crate::diag::Diagnostic;
use crate::load::DirSource;
use crate::render::{self, Paths};

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

pub(super) fn check(args: CheckArgs, out: &mut dyn Write, terminal: bool) -> anyhow::Result<u8> {
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
    // Done with every document and object (freeing them one by one takes 0.1 s at 10,000
    // projects).
    let rest = (
        checked.snapshot,
        checked.docs,
        checked.specs,
        checked.lowered,
    );
    super::exit::done_with(rest);
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
