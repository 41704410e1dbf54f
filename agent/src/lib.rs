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
pub mod error;
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
pub use error::{Error, chain};
pub use report::Report;
pub use sync::Options;
