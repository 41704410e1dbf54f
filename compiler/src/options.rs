//! The options of one compile: limits, which policies run, and a progress callback.

use std::sync::Arc;

use crate::load::Limits;
use crate::parse;
use crate::policy::{PolicyFile, PolicyOptions};

/// Options of a compile.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub limits: Limits,
    pub yaml: parse::YamlLimits,
    /// Policies to evaluate; `None` runs none.
    pub policies: Option<PolicyConfig>,
    /// Told the name of each stage as it starts (for a progress indicator).
    pub progress: Option<Progress>,
    /// Results of lowering units kept from earlier compiles (see `lower::units`).
    pub units: Option<Units>,
    /// Where results of policies are memoised per input between runs (`None`: evaluated
    /// afresh); a build through a cache uses the cache's.
    pub policy_memo: Option<PolicyMemo>,
    /// What reading each spec file gave, kept by a cache: an unchanged file is not parsed.
    pub files: Option<Files>,
    /// A compile through a cache leaves storing its revision to the caller
    /// ([`crate::Built::pending`]), who may do it beside other work.
    pub defer_store: bool,
    /// A base revision's units to lower against ([`crate::lower::delta`]; a plan's head):
    /// the units the base holds are not read when that can be shown to give the same result.
    pub base: Option<BaseUnits>,
}

/// The units of a base revision, arriving from another thread: a plan reads its cached base's
/// entry beside the head's compile, whose lowering waits for them ([`crate::lower::delta`]).
/// They are given through a [`BasePromise`], which gives `None` if dropped unkept, so a waiter
/// never waits for good.
#[derive(Clone, Default)]
pub struct BaseUnits(Arc<std::sync::OnceLock<Option<Given>>>);

/// What a [`BasePromise`] gives: the base's units and, when its entry keeps it, its GPU
/// capacity (which a head's is computed from where an edit cannot reach).
struct Given {
    units: Arc<crate::lower::delta::BaseUnits>,
    capacity: Option<Arc<crate::capacity::Capacity>>,
}

/// The giving side of a [`BaseUnits`].
pub struct BasePromise(BaseUnits);

impl BaseUnits {
    /// What gives the units.
    pub fn promise(&self) -> BasePromise {
        BasePromise(self.clone())
    }

    /// The base's units, once given (`None`: there are none to use).
    pub fn wait(&self) -> Option<Arc<crate::lower::delta::BaseUnits>> {
        self.0.wait().as_ref().map(|g| g.units.clone())
    }

    /// The base's GPU capacity, once its units are given (`None`: not known).
    pub fn capacity(&self) -> Option<Arc<crate::capacity::Capacity>> {
        self.0.wait().as_ref().and_then(|g| g.capacity.clone())
    }
}

impl BasePromise {
    /// Give the units (or `None`).
    pub fn keep(self, units: Option<crate::lower::delta::BaseUnits>) {
        self.keep_with(units, None);
    }

    /// Give the units (or `None`) with the base's GPU capacity.
    pub fn keep_with(
        self,
        units: Option<crate::lower::delta::BaseUnits>,
        capacity: Option<Arc<crate::capacity::Capacity>>,
    ) {
        let given = units.map(|units| Given {
            units: Arc::new(units),
            capacity,
        });
        let _ = (self.0).0.set(given);
    }
}

impl Drop for BasePromise {
    fn drop(&mut self) {
        let _ = (self.0).0.set(None);
    }
}

impl std::fmt::Debug for BaseUnits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BaseUnits")
    }
}

/// A store of unit results and the fingerprint of the plinth build that made them.
#[derive(Clone)]
pub struct Units {
    pub store: Arc<dyn crate::lower::UnitStore>,
    pub salt: String,
}

impl std::fmt::Debug for Units {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Units")
    }
}

/// A store of spec files' reads ([`crate::resolve::FileStore`]) and what its keys are salted
/// with.
#[derive(Clone)]
pub struct Files {
    pub store: Arc<dyn crate::resolve::FileStore>,
    pub salt: String,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Files")
    }
}

/// A policy result memo ([`crate::policy::Memo`]).
#[derive(Clone)]
pub struct PolicyMemo(pub Arc<dyn crate::policy::Memo>);

impl std::fmt::Debug for PolicyMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PolicyMemo")
    }
}

/// A callback told the name of each stage as it starts.
#[derive(Clone)]
pub struct Progress(pub Arc<dyn Fn(&'static str) + Send + Sync>);

impl std::fmt::Debug for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Progress")
    }
}

impl Options {
    pub(crate) fn stage(&self, name: &'static str) {
        if let Some(p) = &self.progress {
            (p.0)(name);
        }
    }
}

/// Which policies run, and how.
#[derive(Debug, Clone, Default)]
pub struct PolicyConfig {
    pub options: PolicyOptions,
    /// Run plinth's default library (unless the Platform turns it off).
    pub default_library: bool,
    /// Policies from outside the repository (`--policy DIR`).
    pub extra: Vec<PolicyFile>,
}
