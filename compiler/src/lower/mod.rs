//! Lower: typed specs into Kubernetes and cloud manifests, per cluster.
//!
//! Pure and deterministic: the same [`Specs`] always give the same [`Lowered`] output. Built-in
//! kinds are constructed with `k8s-openapi` types, custom resources with the typed structs of
//! [`crd`]. Every object carries provenance: the `app.kubernetes.io/managed-by: plinth` and
//! `plinth.dev/project` labels, and the `plinth.dev/source` (spec file:line) and
//! `plinth.dev/spec-hash` annotations (see [`spec_hash`]).
//!
//! One submodule per spec kind; [`lower`] runs them for every cluster each object lives on.
//! What they all read is in `context` ([`Ctx`], [`Index`], [`Sink`]); the rules one kind
//! applies to another's objects (queue labels, placement, pod identity, dataset mounts) are in
//! `rules`. A kind file never uses another kind file (except `project` calling
//! `identity::lower`).

pub mod agent;
pub mod app;
mod context;
pub use crate::crd;
pub mod dataset;
pub mod delta;
pub mod gpu;
pub mod identity;
pub mod project;
pub mod rekey;
pub mod rollout;
pub(crate) mod rules;
pub mod units;

pub use context::{Ctx, Index, Sink};

use crate::diag::Diagnostics;
use crate::load::Snapshot;
use crate::specs::Specs;

pub use crate::output::*;

/// Lower every spec for every cluster. Requires a checked, error-free [`Specs`]. The
/// diagnostics include the verification of every emitted object ([`crate::verify`]).
///
/// In debug builds (every test), each compile is also lowered with every unit reading the whole
/// platform, and a difference panics: a rule that reads a spec outside its unit's view would
/// make that unit's cache key incomplete ([`units`]), so the whole test suite guards the views.
pub fn lower(specs: &Specs, snapshot: &Snapshot) -> (Lowered, Diagnostics) {
    let out = lower_units(specs, snapshot, None, &NoStore);
    #[cfg(debug_assertions)]
    units::assert_views_complete(specs, snapshot, &out);
    out
}

pub use units::{NoStore, UnitStore};

/// [`lower`], reusing the results of units whose key `store` holds (`salt`: plinth's build
/// fingerprint, part of every key). Units are lowered in parallel, each against its own view;
/// their outputs are merged in unit order, so the result (duplicates reported included) does
/// not depend on scheduling or on which units came from the store.
pub fn lower_reusing(
    specs: &Specs,
    snapshot: &Snapshot,
    salt: &str,
    store: &dyn UnitStore,
) -> (Lowered, Diagnostics) {
    lower_units(specs, snapshot, Some(salt), store)
}

/// Lower every unit (keyed when `salt` is given, for `store`; a compile without a store does
/// not hash its files).
fn lower_units(
    specs: &Specs,
    snapshot: &Snapshot,
    salt: Option<&str>,
    store: &dyn UnitStore,
) -> (Lowered, Diagnostics) {
    use rayon::prelude::*;
    let jobs = units::jobs(specs, snapshot, salt);
    let templates = std::sync::Arc::new(crate::template::TemplateCache::default());
    // Units differ in cost (an App renders a template): pieces of a few units each keep both
    // cores busy to the end, where halves of halves left one core with the last costly run.
    let parts: Vec<(&units::Job<'_>, units::UnitOutput)> = jobs
        .par_iter()
        .with_max_len(8)
        .map(|j| {
            let out = store.get(&j.key).unwrap_or_else(|| {
                let out = units::run(j, specs, snapshot, &templates);
                store.put(&j.key, &out);
                out
            });
            (j, out)
        })
        .collect();
    units::assemble(specs, snapshot, parts, salt.map(|s| (store, s)))
}
