//! Check: cross-object semantics over the typed model.
//!
//! Each rule is a function from [`Specs`] to diagnostics, pointing at the offending field and,
//! where two places conflict, at the other one too.

pub mod semantic;

use crate::diag::Diagnostics;
use crate::load::Snapshot;
use crate::specs::Specs;

/// Every semantic rule. Without a Platform (none, or one its schema refused: reported
/// already), references to its clusters and instance types cannot be judged, so none is
/// reported as unknown.
pub fn check(specs: &Specs, snapshot: &Snapshot) -> Diagnostics {
    let all = semantic::check(specs, snapshot);
    if specs.platform.is_some() {
        return all;
    }
    let mut d = Diagnostics::new();
    d.extend(all.into_iter().filter(|x| {
        !matches!(
            x.code,
            crate::diag::Code::UnknownCluster | crate::diag::Code::UnknownInstanceType
        )
    }));
    d
}
