//! plinth-agent: applies one cluster's compiled plinth output (`out/<cluster>/`) to the
//! cluster, prunes what it applied before and no longer desires, tells drift apart from
//! defaulting and from other controllers' fields, and waits for health.
//!
//! Small pure pieces around one idempotent loop ([`sync`]):
//!
//! - [`desired`]: the compiled tree read back and checked against its lock file;
//! - [`fields`]: field paths, `managedFields` sets, objects flattened into leaves;
//! - [`drift`]: live against desired, each differing field classified, and what to apply;
//! - [`health`]: health per kind from a live object's status;
//! - [`inventory`]: what the agent applied, kept in the cluster;
//! - [`prune`]: which inventory objects may go, and the guards;
//! - [`cluster`]: the only module that talks to the API server (`kube`), with retries;
//! - [`sync`]: the loop, for `apply` and `diff`; [`report`]: what a run did, as text or JSON;
//! - [`cli`]: arguments and exit codes (the binary's `main` is a few lines).
//!
//! The GitOps loop around it ([`gitops`], `plinth-agent run`):
//!
//! - [`source`]: the git remote, mirrored with `gix` (fetch, ancestry, signatures' bytes);
//! - [`signature`]: commit signature verification (SSH allowed signers, OpenPGP keyring);
//! - [`compile`]: the platform at a commit compiled in memory into [`Desired`];
//! - [`status`]: commit statuses for GitHub, GitLab and Gitea, posted in the background;
//! - [`audit`]: the audit trail (log lines, Events, history in the inventory);
//! - [`metrics`], [`server`] (`/metrics`, `/healthz`, `/readyz`, `/hooks/git`), [`webhook`].
//!
//! Errors are typed ([`Error`], [`cluster::ApiError`]); what happened to each object is data in
//! the [`report::Report`], not an error.

pub mod audit;
pub mod cli;
pub mod cluster;
pub mod compile;
pub mod desired;
pub mod drift;
pub mod duration;
pub mod fields;
pub mod gitops;
pub mod health;
pub mod inventory;
pub mod metrics;
pub mod prune;
pub mod report;
pub mod server;
pub mod signature;
pub mod source;
pub mod status;
pub mod sync;
pub mod webhook;

pub use cluster::{ApiError, Cluster, Requests};
pub use desired::Desired;
pub use report::Report;
pub use sync::Options;

/// Failures that stop the agent before or outside a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file of the output tree could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The output tree is not a complete plinth build.
    #[error("{0}")]
    Tree(String),
    /// The inventory ConfigMap is unreadable.
    #[error("the inventory is unreadable: {0}")]
    Inventory(String),
    /// No usable kubeconfig.
    #[error("kubeconfig: {0}")]
    Config(String),
    /// Arguments that do not go together.
    #[error("{0}")]
    Usage(String),
}

/// An error with its causes, `: `-separated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
