//! `plinth report`: the platform as one HTML page.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

use super::args::{LimitArgs, PolicyArgs};
use crate::check_source;
use crate::load::DirSource;

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

/// `plinth report`: check the repository, then write its page.
pub(super) fn report_page(args: ReportPageArgs, err: &mut dyn Write) -> anyhow::Result<u8> {
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
