//! Compiling the platform at a commit, in memory: the compiler library reads the tree straight
//! from the mirror's object database (no checkout), checks it like `plinth build` (schemas,
//! semantics, output verification, policies), and one cluster's output becomes the
//! [`Desired`] state the apply engine takes — the same objects and revision (lock hash) as
//! the tree `plinth build` writes — together with that cluster's compiled output, which the
//! loop hands to [`plinth::plan::plan`] to judge a commit against the one applied.

use gix::ObjectId;
use plinth::load::git::{GitError, GitRepo};

use crate::desired::Desired;

/// How to compile.
#[derive(Debug, Clone)]
pub struct CompileOptions {
    /// The plinth cluster whose output is applied.
    pub cluster: String,
    /// The platform's directory inside the repository (`""` for the root).
    pub path: String,
    /// Run plinth's default policy library and the repository's policies, as `plinth build`.
    pub policies: bool,
    /// Compile through plinth's cache in the mirror (`<git dir>/plinth-cache`, as `plinth
    /// plan` keeps it): a commit a few files away from one compiled before re-lowers only what
    /// those files feed, reads only the blobs it has not seen, and a commit compiled before
    /// (after a restart, or as the applied base of a plan) is read back, not compiled.
    pub cache: bool,
}

/// One cluster's compiled commit.
#[derive(Debug, Clone)]
pub struct Compilation {
    /// What the apply engine takes.
    pub desired: Desired,
    /// The compiled output of this cluster only (and the Platform's file): one side of a plan.
    pub lowered: plinth::lower::Lowered,
}

impl std::ops::Deref for Compilation {
    type Target = Desired;
    fn deref(&self) -> &Desired {
        &self.desired
    }
}

/// The outcome of compiling a commit.
#[derive(Debug, Clone)]
pub enum Compiled {
    /// The cluster's desired state.
    Ok(Box<Compilation>),
    /// The commit does not pass `plinth check` (or has no such platform or cluster): nothing
    /// may be applied from it.
    Rejected {
        /// One line for a commit status: the count and the first error.
        summary: String,
        /// Every error, one per line (`file:line:col: error[CODE] message`).
        details: String,
    },
}

/// Compile `commit`. `Err` is a system failure (the mirror is unreadable); a user mistake in
/// the commit is [`Compiled::Rejected`].
pub fn compile(
    repo: &GitRepo,
    commit: ObjectId,
    opts: &CompileOptions,
) -> Result<Compiled, String> {
    let path = opts.path.trim_matches('/');
    let prefix = if path.is_empty() || path == "." {
        String::new()
    } else {
        format!("{path}/")
    };
    let source = match repo.source(commit, path) {
        Ok(s) => s,
        Err(e @ (GitError::MissingPath { .. } | GitError::NotATree { .. })) => {
            let m = e.to_string();
            return Ok(Compiled::Rejected {
                summary: m.clone(),
                details: m,
            });
        }
        Err(e) => return Err(e.to_string()),
    };
    let mut options = plinth::Options::default();
    if opts.policies {
        options.policies = Some(plinth::PolicyConfig {
            default_library: true,
            ..plinth::PolicyConfig::default()
        });
    }
    let built = if opts.cache {
        let cache = plinth::cache::Cache::new(repo.git_dir().join("plinth-cache"));
        let blobs = std::sync::Arc::new(cache.blobs());
        let built = plinth::build_cached(&source.with_blobs(Some(blobs.clone())), &options, &cache);
        // A cache that cannot be written only costs time.
        let _ = blobs.flush();
        built
    } else {
        plinth::build_source(&source, &options)
    }
    .map_err(|e| e.to_string())?;
    // Policy read the objects it judged: its findings stand only on texts read back whole.
    if let Some(l) = &built.lowered {
        l.texts_intact().map_err(|e| e.to_string())?;
    }
    let diags = built.checked.diagnostics.clone().into_sorted();
    let errors: Vec<_> = diags.iter().filter(|d| d.is_error()).cloned().collect();
    let mut lowered = match built.lowered {
        Some(l) if errors.is_empty() => l,
        _ => {
            let paths = plinth::render::Paths::new(prefix);
            let details = plinth::render::concise(&errors, &paths);
            let first = details
                .lines()
                .next()
                .unwrap_or("the build stopped")
                .to_owned();
            let n = errors.len();
            return Ok(Compiled::Rejected {
                summary: format!(
                    "plinth check failed: {n} error{}; {first}",
                    if n == 1 { "" } else { "s" }
                ),
                details,
            });
        }
    };
    let Some(out) = lowered.clusters.remove(&opts.cluster) else {
        let known: Vec<String> = lowered.clusters.keys().map(|k| format!("`{k}`")).collect();
        let m = format!(
            "the platform has no cluster `{}` (its clusters: {})",
            opts.cluster,
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        );
        return Ok(Compiled::Rejected {
            summary: m.clone(),
            details: m,
        });
    };
    let desired = Desired::from_output(&opts.cluster, &out).map_err(|e| e.to_string())?;
    let lowered = plinth::lower::Lowered {
        clusters: [(opts.cluster.clone(), out)].into(),
        platform_file: lowered.platform_file,
        units: None,
    };
    // What is applied was read back whole.
    lowered.texts_intact().map_err(|e| e.to_string())?;
    Ok(Compiled::Ok(Box::new(Compilation { desired, lowered })))
}

/// Compile the platform at `commit` of a repository (for tests and tools).
pub fn compile_at(repo: &GitRepo, rev: &str, opts: &CompileOptions) -> Result<Compiled, String> {
    let id = repo.resolve(rev).map_err(|e| e.to_string())?;
    compile(repo, id, opts)
}
