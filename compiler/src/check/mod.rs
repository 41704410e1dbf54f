//! Check: cross-object semantics over the typed model.
//!
//! Each rule is a function from [`Specs`] to diagnostics, pointing at the offending field and,
//! where two places conflict, at the other one too.

pub mod semantic;

use crate::diag::Diagnostics;
use crate::load::Snapshot;
use crate::model::Specs;

/// Every semantic rule.
pub fn check(specs: &Specs, snapshot: &Snapshot) -> Diagnostics {
    semantic::check(specs, snapshot)
}
