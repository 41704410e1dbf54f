//! Semantic rules.
use crate::diag::Diagnostics;
use crate::load::Snapshot;
use crate::model::Specs;

pub fn check(_specs: &Specs, _snapshot: &Snapshot) -> Diagnostics {
    Diagnostics::new()
}
