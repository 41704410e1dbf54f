//! `plinth generate` (hidden): synthetic platforms for benchmarks.

use std::io::Write;
use std::path::PathBuf;

use clap::Args;

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

pub(super) fn generate(args: GenerateArgs, err: &mut dyn Write) -> anyhow::Result<u8> {
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
