//! plinth: a GitOps compiler for machine-learning platforms.
//!
//! The compiler is a pipeline, one module per stage:
//!
//! load → parse → resolve → check → lower → emit / plan
//!
//! - [`load`] reads a repository (working tree or git revision) into a [`load::Snapshot`];
//!   the only stage that touches the file system.
//! - [`parse`] turns YAML into documents whose every node has a span.
//! - [`resolve`] types documents into [`model::Specs`], validated against [`schema`].
//! - [`check`] runs cross-object semantics.
//! - [`lower`] compiles specs into manifests per cluster; [`verify`] checks them against the
//!   Kubernetes and CRD schemas; [`emit`] lays them out as files.
//!
//! User mistakes are [`diag::Diagnostic`] values, accumulated across stages; `Result` errors
//! are for system failures only. Nothing in the library prints: [`render`] turns diagnostics
//! into text and the [`cli`] writes it.

pub mod check;
pub mod cli;
pub mod diag;
pub mod emit;
pub mod load;
pub mod lower;
pub mod model;
pub mod parse;
pub mod render;
pub mod resolve;
pub mod schema;
pub mod verify;

use diag::Diagnostics;
use load::{Limits, LoadError, Snapshot, Source};
use model::Specs;

/// Options of a compile.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub limits: Limits,
    pub yaml: parse::YamlLimits,
}

/// A repository read, typed and checked.
#[derive(Debug)]
pub struct Checked {
    pub snapshot: Snapshot,
    pub specs: Specs,
    pub diagnostics: Diagnostics,
}

/// Run load → parse → resolve → check over a source.
pub fn check_source(source: &dyn Source, opts: &Options) -> Result<Checked, LoadError> {
    let (snapshot, mut diagnostics) = load::load(source, &opts.limits)?;
    Ok(check_snapshot(snapshot, &mut diagnostics, opts)).map(|(snapshot, specs)| Checked {
        snapshot,
        specs,
        diagnostics,
    })
}

/// Parse, resolve and check a snapshot already loaded.
pub fn check_snapshot(
    snapshot: Snapshot,
    diagnostics: &mut Diagnostics,
    opts: &Options,
) -> (Snapshot, Specs) {
    let (docs, d) = parse::parse(&snapshot, opts.yaml);
    diagnostics.extend(d);
    let (specs, d) = resolve::resolve(&docs);
    diagnostics.extend(d);
    diagnostics.extend(check::check(&specs, &snapshot));
    (snapshot, specs)
}

/// A repository compiled: its check, and the manifests when the check found no errors.
#[derive(Debug)]
pub struct Built {
    pub checked: Checked,
    /// `None` when errors stopped the build (the diagnostics say why).
    pub lowered: Option<lower::Lowered>,
}

/// Check, then lower and verify. Nothing is produced when any stage reports an error.
pub fn build_source(source: &dyn Source, opts: &Options) -> Result<Built, LoadError> {
    let mut checked = check_source(source, opts)?;
    if checked.diagnostics.has_errors() {
        return Ok(Built {
            checked,
            lowered: None,
        });
    }
    let (lowered, d) = lower::lower(&checked.specs, &checked.snapshot);
    checked.diagnostics.extend(d);
    checked.diagnostics.extend(verify::verify(&lowered));
    let lowered = (!checked.diagnostics.has_errors()).then_some(lowered);
    Ok(Built { checked, lowered })
}
