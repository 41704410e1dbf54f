//! Arguments several commands share: policies, input limits, colour and where the platform
//! is in git.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::policy::read_policy_dir;
use crate::Options;
use crate::load::Limits;

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
    pub(super) fn config(&self) -> anyhow::Result<crate::PolicyConfig> {
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
    pub(super) fn options(&self) -> Options {
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
pub enum Color {
    Auto,
    Always,
    Never,
}

/// Whether to colour output: `--color`, else a terminal without `NO_COLOR` or `TERM=dumb`.
pub(crate) fn use_color(c: Color, terminal: bool) -> bool {
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
