//! Cache: compiled results keyed by the content of everything that went into them.
//!
//! A key is the sha256 of: the cache format, plinth's version and a fingerprint of what is
//! built into it (its source code, spec schemas, CRD schemas, the default policy library), the options of the
//! compile, every file of the snapshot (path and bytes, policies and templates included) and
//! the extra policies. Any change to any of them is a different key, so an entry is never
//! stale; entries are written atomically and a corrupt or unreadable one is a miss. Deleting
//! the directory is always safe.
//!
//! Policy results are also memoised per input ([`PolicyMemo`], under `policy/`): a changed
//! revision re-evaluates policies only on the inputs that changed.
//!
//! An entry holds the diagnostics of a compile, the files holding the Platform document (the
//! only spec callers read after a cached build; only those files are parsed again) and the index
//! of its objects (key, content hash); the objects themselves are in the unit store
//! ([`UnitPack`], under `units/`), where the entry says which unit holds each, so a plan that
//! compares two indexes loads only the objects that differ, and a revision costs its index, not
//! a copy of its objects. A compaction of the unit store keeps the units of every revision kept.

mod against;
mod blobs;
mod index;
mod memo;
mod record;
pub use blobs::BlobPack;
use index::Place;
use memo::{Finished, MemoFile};
pub(crate) use memo::{on_own_pool, parse_body, parse_lines};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::diag::Diagnostic;
use crate::load::Snapshot;
use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::lower::delta::BaseClean;
use crate::lower::rekey::Revision;
use crate::lower::{Lowered, sha256_hex};
use crate::options::{Options, PolicyConfig};
use crate::output::{ClusterOutput, LoweredIndex, Manifest, ObjectKey, UnitRefs};
use crate::policy::{Memo, Memoized};

/// Compiled revisions kept (the ones used last; each holds the index of a platform's objects).
pub const REVISIONS_KEPT: usize = 16;

/// Bumped when the entry format changes.
const FORMAT: &str = "plinth-cache-v9";

/// A cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
    /// Mixed into every key; tests use it to stand for another plinth build.
    salt: String,
    /// The unit store, opened once for every compile through this value and its clones
    /// ([`Cache::sharing_units`]); `None`: opened by each compile.
    shared: Option<Arc<SharedUnits>>,
    /// The spec files' memo being read on a thread of its own ([`Cache::reading_files`]),
    /// taken by the first compile that asks for it.
    files: Option<Arc<Beside<MemoFile<crate::resolve::FileRead>>>>,
    /// The policy set used last being read on a thread of its own ([`Cache::reading_policies`]).
    policies: Option<Arc<Beside<SetRead>>>,
    /// The whole entries read through this value and its clones, by key: what an entry written
    /// against one of them takes from it (read once, when both are read at once).
    read: Arc<Mutex<HashMap<String, Arc<WholeCell>>>>,
}

/// A whole entry being read or read (`None`: absent, damaged, or written against another).
type WholeCell = OnceLock<Option<Arc<Loaded>>>;

/// What a thread of its own is reading from when the cache was opened
/// ([`Cache::reading_files`], [`Cache::reading_policies`]), taken by the first compile that
/// asks for it.
struct Beside<T>(Mutex<Option<std::thread::JoinHandle<T>>>);

impl<T: Send + 'static> Beside<T> {
    /// `read` started on a thread named `name` (`None` inside when none can be started: the
    /// compile reads for itself).
    fn spawn(name: &str, read: impl FnOnce() -> T + Send + 'static) -> Arc<Beside<T>> {
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(read)
            .ok();
        Arc::new(Beside(Mutex::new(thread)))
    }

    /// What was read, waited for; `None` once taken (or when the thread failed).
    fn take(&self) -> Option<T> {
        let thread = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()?;
        thread.join().ok()
    }
}

impl<T> std::fmt::Debug for Beside<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Beside")
    }
}

/// A policy set's name and memo, as read beside.
type SetRead = Option<(String, MemoFile<Memoized>)>;

/// A unit store opened once, for the compiles of one command ([`Cache::sharing_units`]).
#[derive(Default)]
struct SharedUnits(Mutex<Option<Arc<UnitPack>>>);

impl std::fmt::Debug for SharedUnits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedUnits")
    }
}

/// What a cached compile produced: its diagnostics, its GPU capacity and its units — per
/// cluster, which units of the unit store hold its objects and how many each holds — from
/// which its objects are read when asked for (a cluster's objects are its units' objects in
/// key order: a stored compile had no errors, so no object was dropped as a duplicate). A plan
/// compares the units of two revisions and reads only the units that differ.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The files holding Platform documents.
    pub platform_files: Vec<String>,
    pub diagnostics: Vec<Diagnostic>,
    /// The GPU capacity of its specs (what a plan compares), when it compiled.
    pub capacity: Option<Arc<crate::capacity::Capacity>>,
    /// Its clusters and their units; `None` when errors stopped the compile.
    clusters: Option<Arc<Clusters>>,
    /// The units holding the objects, by number.
    unit_keys: Arc<[String]>,
    /// Per unit, the kinds of its objects (entries of an older plinth: `None`).
    kinds: Option<Arc<UnitKinds>>,
    /// The units whose output holds diagnostics (entries of an older plinth: `None`).
    noisy: Option<Vec<u32>>,
    /// What another compile needs to take its units' keys ([`crate::lower::rekey`]; entries
    /// of an older plinth: `None`).
    revision: Option<Arc<Revision>>,
    /// What a policy evaluation found nothing in among its units and documents: its own
    /// (covering all of them), else one a later revision compiled against it left
    /// ([`Cache::keep_clean`]).
    policy_clean: Option<Arc<BaseClean>>,
    /// What its check found, per spec ([`crate::check::record`]; entries of an older plinth:
    /// `None`).
    check: Option<Arc<crate::check::record::Record>>,
    /// Its key.
    key: String,
    /// Its index, made when first asked for (it reads every unit).
    index: std::sync::OnceLock<Option<LoweredIndex>>,
    /// The unit store of the cache (opened with the entry: every unit it refers to is there).
    pack: Arc<UnitPack>,
}

/// The stored form of an [`Entry`]: one JSON line.
#[derive(Debug, Deserialize)]
struct Head {
    format: String,
    platform_files: Vec<String>,
    diagnostics: Vec<Diagnostic>,
    capacity: Option<crate::capacity::Capacity>,
    /// The units holding the objects, by number.
    units: Vec<String>,
    /// `None` when errors stopped the compile.
    clusters: Option<Clusters>,
    #[serde(default)]
    kinds: Option<UnitKinds>,
    /// The units whose output holds diagnostics, by number.
    #[serde(default)]
    noisy: Option<Vec<u32>>,
    #[serde(default)]
    revision: Option<RevisionHead>,
    #[serde(default)]
    policy_clean: Option<crate::policy::Clean>,
    #[serde(default)]
    check: Option<crate::check::record::Record>,
    /// Written against another entry ([`against`]): its capacity, clusters and kinds are the
    /// other's when `None`, its units and file digests the other's but where they differ.
    #[serde(default)]
    against: Option<against::Against>,
}

/// An entry as read, whole (one written against another is read with the other).
#[derive(Debug)]
struct Loaded {
    platform_files: Vec<String>,
    diagnostics: Vec<Diagnostic>,
    capacity: Option<Arc<crate::capacity::Capacity>>,
    clusters: Option<Arc<Clusters>>,
    units: Arc<[String]>,
    kinds: Option<Arc<UnitKinds>>,
    noisy: Option<Vec<u32>>,
    revision: Option<Arc<Revision>>,
    policy_clean: Option<crate::policy::Clean>,
    check: Option<Arc<crate::check::record::Record>>,
    /// The key of the entry it was written against (not one another may be written against).
    against: Option<String>,
}

impl Loaded {
    /// An entry written whole.
    fn whole(head: Head) -> Loaded {
        Loaded {
            platform_files: head.platform_files,
            diagnostics: head.diagnostics,
            capacity: head.capacity.map(Arc::new),
            clusters: head.clusters.map(Arc::new),
            units: head.units.into(),
            kinds: head.kinds.map(Arc::new),
            noisy: head.noisy,
            revision: head
                .revision
                .as_ref()
                .and_then(RevisionHead::read)
                .map(Arc::new),
            policy_clean: head.policy_clean,
            check: head.check.map(Arc::new),
            against: None,
        }
    }

    /// Whether an entry may be written against it ([`against`]): it is whole and has all an
    /// entry written against it takes.
    fn usable(&self) -> bool {
        self.against.is_none()
            && self.capacity.is_some()
            && self.clusters.is_some()
            && self.kinds.is_some()
            && self.revision.is_some()
    }

    /// The entry `head`, written `against` this one, as a whole one; `None` when this is not
    /// one it can have been written against, or `head` does not fit it (a damaged entry is a
    /// miss).
    fn resolve(&self, head: Head, against: against::Against) -> Option<Loaded> {
        if !self.usable() {
            return None;
        }
        let written = head.revision.as_ref()?;
        let base = self.revision.as_deref()?;
        let projects = match against.projects {
            Some(_) => Some(against.projects(base.projects.as_deref())?),
            None => written.projects().ok()?,
        };
        let revision = Revision {
            graph: index::key_bytes(&written.graph)?,
            paths: index::key_bytes(&written.paths)?,
            digests: against.digests(&base.digests)?,
            projects,
        };
        Some(Loaded {
            platform_files: head.platform_files,
            diagnostics: head.diagnostics,
            capacity: head
                .capacity
                .map(Arc::new)
                .or_else(|| self.capacity.clone()),
            clusters: head
                .clusters
                .map(Arc::new)
                .or_else(|| self.clusters.clone()),
            units: against.units(&self.units)?.into(),
            kinds: head.kinds.map(Arc::new).or_else(|| self.kinds.clone()),
            noisy: head.noisy,
            revision: Some(Arc::new(revision)),
            policy_clean: head.policy_clean,
            check: head.check.map(Arc::new),
            against: Some(against.key),
        })
    }

    /// What to write of an entry against this one (whose key is `key`): its
    /// [`against::Against`], and whether its capacity, clusters and kinds are this one's (then
    /// not written). `None` when this is not one to write against.
    fn diff(
        &self,
        key: &str,
        (units, revision): (&[String], &Revision),
        (capacity, clusters, kinds): (
            Option<&crate::capacity::Capacity>,
            &ClustersRef<'_>,
            &UnitKinds,
        ),
    ) -> Option<(against::Against, [bool; 3])> {
        if !self.usable() {
            return None;
        }
        let base = self.revision.as_deref()?;
        let against = against::Against::of(
            key,
            (&self.units, units),
            (&base.digests, &revision.digests),
            (base.projects.as_deref(), revision.projects.as_deref()),
        )?;
        let same = [
            capacity.is_some() && capacity == self.capacity.as_deref(),
            self.clusters
                .as_deref()
                .is_some_and(|b| b.same_as(clusters)),
            self.kinds.as_deref() == Some(kinds),
        ];
        Some((against, same))
    }
}

/// A [`Revision`] as an entry holds it: each digest in hex, the files' digests one after the
/// other.
#[derive(Debug, Serialize, Deserialize)]
struct RevisionHead {
    graph: String,
    paths: String,
    digests: String,
    /// Every project's policy-data digest, when made (hex, in name order).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    projects: String,
}

impl RevisionHead {
    fn of(r: &Revision) -> RevisionHead {
        RevisionHead {
            graph: crate::output::hex(&r.graph),
            paths: crate::output::hex(&r.paths),
            digests: crate::output::hex(r.digests.as_flattened()),
            projects: r
                .projects
                .as_ref()
                .map(|p| crate::output::hex(p.as_flattened()))
                .unwrap_or_default(),
        }
    }

    /// `None` when a digest is not 64 hex digits.
    fn read(&self) -> Option<Revision> {
        Some(Revision {
            graph: index::key_bytes(&self.graph)?,
            paths: index::key_bytes(&self.paths)?,
            digests: unhex_all(&self.digests)?,
            projects: self.projects().ok()?,
        })
    }

    /// Its projects' digests (`Ok(None)`: none written; `Err`: damaged).
    fn projects(&self) -> Result<Option<Vec<[u8; 32]>>, ()> {
        if self.projects.is_empty() {
            return Ok(None);
        }
        unhex_all(&self.projects).map(Some).ok_or(())
    }
}

/// Digests written one after another in hex; `None` when one is not 64 hex digits.
fn unhex_all(hex: &str) -> Option<Vec<[u8; 32]>> {
    let hex = hex.as_bytes();
    if !hex.len().is_multiple_of(64) {
        return None;
    }
    hex.chunks_exact(64).map(unhex32).collect()
}

/// 64 hex digits as 32 bytes, by a table (tens of thousands per entry at scale).
fn unhex32(hex: &[u8]) -> Option<[u8; 32]> {
    const BAD: u8 = 0xff;
    const TABLE: [u8; 256] = {
        let mut t = [BAD; 256];
        let mut i = 0;
        while i < 10 {
            t[b'0' as usize + i] = i as u8;
            i += 1;
        }
        let mut i = 0;
        while i < 6 {
            t[b'a' as usize + i] = 10 + i as u8;
            t[b'A' as usize + i] = 10 + i as u8;
            i += 1;
        }
        t
    };
    let mut out = [0u8; 32];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let (hi, lo) = (TABLE[usize::from(pair[0])], TABLE[usize::from(pair[1])]);
        bad |= (hi | lo) & 0xf0;
        *o = hi << 4 | lo;
    }
    (hex.len() == 64 && bad == 0).then_some(out)
}

/// Per unit (by number), the kinds of its objects: the kinds' names, and per unit the numbers
/// of its kinds (sorted) — what a plan's head needs of a unit it does not read
/// ([`crate::lower::delta`]).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct UnitKinds {
    names: Vec<String>,
    /// Shared by the units with the same list.
    units: Vec<Arc<[u32]>>,
}

impl UnitKinds {
    /// From each unit's kinds (sorted, each once; numbered once per distinct list).
    fn of<K: AsRef<[String]>>(per_unit: &[K]) -> UnitKinds {
        // The units of a kind of spec mostly share one list (the same slice): each slice is
        // looked at once by where it is, then numbered once per distinct content.
        let mut at: HashMap<(usize, usize), usize, foldhash::fast::RandomState> =
            HashMap::default();
        let mut slices: Vec<&[String]> = Vec::new();
        let slice_of: Vec<usize> = per_unit
            .iter()
            .map(|ks| {
                let ks = ks.as_ref();
                *at.entry((ks.as_ptr() as usize, ks.len()))
                    .or_insert_with(|| {
                        slices.push(ks);
                        slices.len() - 1
                    })
            })
            .collect();
        let names: Vec<String> = slices
            .iter()
            .copied()
            .flatten()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .cloned()
            .collect();
        let number = |k: &String| {
            names
                .binary_search(k)
                .ok()
                .and_then(|i| u32::try_from(i).ok())
                .unwrap_or(u32::MAX)
        };
        let mut by_content: BTreeMap<&[String], Arc<[u32]>> = BTreeMap::new();
        let numbered: Vec<Arc<[u32]>> = slices
            .iter()
            .map(|&ks| {
                by_content
                    .entry(ks)
                    .or_insert_with(|| ks.iter().map(number).collect())
                    .clone()
            })
            .collect();
        let units = slice_of.iter().map(|&i| numbered[i].clone()).collect();
        UnitKinds { names, units }
    }

    /// Every unit's kinds, a list shared by the units that have the same (`None`: a kind's
    /// number is not there).
    fn per_unit(&self) -> Option<Vec<crate::lower::delta::Kinds>> {
        let mut shared: HashMap<&[u32], crate::lower::delta::Kinds> = HashMap::new();
        self.units
            .iter()
            .map(|numbers| {
                if let Some(k) = shared.get(&numbers[..]) {
                    return Some(k.clone());
                }
                let kinds: crate::lower::delta::Kinds = numbers
                    .iter()
                    .map(|&k| self.names.get(usize::try_from(k).ok()?).cloned())
                    .collect::<Option<Vec<String>>>()?
                    .into();
                shared.insert(numbers, kinds.clone());
                Some(kinds)
            })
            .collect()
    }
}

/// A revision's clusters: the file holding the Platform, and per cluster its name, its
/// approvals and its units (`[unit number, objects, one carries an approval annotation]`).
#[derive(Debug, Clone, Deserialize)]
struct Clusters {
    platform_file: Option<Arc<str>>,
    clusters: Vec<ClusterHead>,
}

/// One cluster of [`Clusters`].
type ClusterHead = (String, Vec<crate::output::Approval>, Vec<(u32, u32, bool)>);

/// A [`Head`] to write, borrowed.
#[derive(Serialize)]
struct HeadRef<'a> {
    format: &'static str,
    platform_files: &'a [String],
    diagnostics: &'a [Diagnostic],
    capacity: Option<&'a crate::capacity::Capacity>,
    units: &'a [String],
    clusters: Option<ClustersRef<'a>>,
    kinds: Option<&'a UnitKinds>,
    noisy: &'a [u32],
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<RevisionHead>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_clean: Option<&'a crate::policy::Clean>,
    #[serde(skip_serializing_if = "Option::is_none")]
    check: Option<&'a crate::check::record::Record>,
    #[serde(skip_serializing_if = "Option::is_none")]
    against: Option<&'a against::Against>,
}

impl Clusters {
    /// Whether clusters to write are these.
    fn same_as(&self, written: &ClustersRef<'_>) -> bool {
        self.platform_file.as_ref() == written.platform_file
            && self.clusters.len() == written.clusters.len()
            && self
                .clusters
                .iter()
                .zip(&written.clusters)
                .all(|((n, a, u), (wn, wa, wu))| n == wn && a[..] == **wa && u == wu)
    }
}

/// A [`Clusters`] to write, borrowed.
#[derive(Serialize)]
struct ClustersRef<'a> {
    platform_file: Option<&'a Arc<str>>,
    clusters: Vec<ClusterHeadRef<'a>>,
}

/// A [`ClusterHead`] to write, borrowed.
type ClusterHeadRef<'a> = (
    &'a str,
    &'a [crate::output::Approval],
    Vec<(u32, u32, bool)>,
);

/// An entry to store, borrowed from the compile that produced it.
#[derive(Debug)]
pub struct EntryRef<'a> {
    pub platform_files: &'a [String],
    pub diagnostics: &'a [Diagnostic],
    pub lowered: Option<&'a Lowered>,
    pub capacity: Option<&'a crate::capacity::Capacity>,
    /// What another compile needs to take its units' keys (a compile that lowered).
    pub revision: Option<&'a Revision>,
    /// What its policy evaluation found nothing in, when it found nothing.
    pub policy_clean: Option<&'a crate::policy::Clean>,
    /// What its check found, per spec.
    pub check: Option<&'a crate::check::record::Record>,
}

impl Entry {
    /// Whether it compiled (errors did not stop it): it has objects.
    pub fn compiled(&self) -> bool {
        self.clusters.is_some()
    }

    /// The index of its objects (made from its units when first asked for); `None` when errors
    /// stopped the compile or a unit cannot be read back.
    pub fn index(&self) -> Option<&LoweredIndex> {
        self.index
            .get_or_init(|| Some(crate::plan::index_of(&self.lowered()?)))
            .as_ref()
    }

    /// Its units as a plan compares them; `None` when errors stopped the compile.
    pub fn summary(&self) -> Option<crate::plan::UnitSummary<'_>> {
        let head = self.clusters.as_ref()?;
        let clusters = head.clusters.iter().map(|(n, _, u)| (n.as_str(), &u[..]));
        crate::plan::UnitSummary::named(&self.unit_keys, clusters)
    }

    /// What a plan's head lowered against it needs of its units
    /// ([`crate::lower::delta`]); `None` when it has errors, did not compile, or does not list
    /// its units' kinds and which units had diagnostics (an entry of an older plinth).
    pub fn base_units(&self) -> Option<crate::lower::delta::BaseUnits> {
        if self.diagnostics.iter().any(Diagnostic::is_error) {
            return None;
        }
        let head = self.clusters.as_ref()?;
        let kinds = self.kinds.as_ref()?.per_unit()?;
        let noisy = self.noisy.as_ref()?;
        let mut out = crate::lower::delta::BaseUnits::default();
        for (name, _, units) in &head.clusters {
            let units = units
                .iter()
                .map(|&(u, n, approve)| {
                    let u = usize::try_from(u).ok()?;
                    Some(crate::lower::delta::BaseUnit {
                        key: self.unit_keys.get(u)?.clone(),
                        objects: n,
                        approve,
                        noisy: noisy.binary_search(&u32::try_from(u).ok()?).is_ok(),
                        kinds: kinds.get(u)?.clone(),
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            out.clusters.insert(name.clone(), units);
        }
        out.policy_clean = self.policy_clean.clone();
        out.check = self.check.clone();
        out.key = Some(self.key.clone());
        out.keyed = self.revision.clone().map(|revision| {
            Arc::new(crate::lower::rekey::Keyed {
                revision,
                keys: self.unit_keys.clone(),
            })
        });
        Some(out)
    }

    /// Every object, as compiled; `None` when a unit holding some is gone or damaged.
    pub fn lowered(&self) -> Option<Lowered> {
        self.outside(&BTreeMap::new())
    }

    /// Only the objects of `keep` (per cluster), with every cluster's approvals.
    pub fn lowered_only(&self, keep: &BTreeMap<String, BTreeSet<ObjectKey>>) -> Option<Lowered> {
        Some(self.lowered()?.only(keep))
    }

    /// The objects of its units outside `shared` (per cluster, in key order, with every
    /// cluster's approvals), read from the unit store in parallel; `None` when a unit is gone
    /// or damaged, holds other than as many objects as the entry says, or two units hold one
    /// key.
    pub fn outside(&self, shared: &crate::plan::Shared<'_>) -> Option<Lowered> {
        use rayon::prelude::*;
        let head = self.clusters.as_ref()?;
        let none = crate::plan::UnitSet::default();
        let mut wanted: Vec<(usize, u32, u32)> = Vec::new();
        for (c, (name, _, units)) in head.clusters.iter().enumerate() {
            let shared = shared.get(name).unwrap_or(&none);
            for &(u, n, _) in units {
                if !shared.contains(self.unit_keys.get(usize::try_from(u).ok()?)?.as_str()) {
                    wanted.push((c, u, n));
                }
            }
        }
        let read: Vec<(usize, Vec<Manifest>)> = wanted
            .par_iter()
            .map(|&(c, u, n)| {
                let key = self.unit_keys.get(usize::try_from(u).ok()?)?;
                let out = crate::lower::UnitStore::get(&*self.pack, key)?;
                (out.objects.len() == usize::try_from(n).ok()?).then_some((c, out.objects))
            })
            .collect::<Option<_>>()?;
        let mut per_cluster: Vec<Vec<Manifest>> = vec![Vec::new(); head.clusters.len()];
        for (c, objects) in read {
            per_cluster.get_mut(c)?.extend(objects);
        }
        let mut lowered = Lowered {
            clusters: BTreeMap::new(),
            platform_file: head.platform_file.clone(),
            units: None,
        };
        for ((name, approvals, _), mut manifests) in head.clusters.iter().zip(per_cluster) {
            manifests.par_sort_unstable_by(|a, b| a.key.cmp(&b.key));
            if manifests.windows(2).any(|w| w[0].key == w[1].key) {
                return None;
            }
            let out = ClusterOutput {
                manifests,
                approvals: approvals.clone(),
            };
            lowered.clusters.insert(name.clone(), out);
        }
        Some(lowered)
    }
}

/// What identifies this build of plinth beyond its version number: everything compiled in
/// that changes results.
pub fn fingerprint() -> &'static str {
    static CELL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CELL.get_or_init(|| {
        let mut h = Sha256::new();
        h.update(env!("CARGO_PKG_VERSION"));
        // Another build with other code but the same version never shares results.
        h.update(env!("PLINTH_SOURCE_HASH"));
        for kind in crate::model::Kind::ALL {
            h.update(crate::schema::committed(kind));
        }
        // The CRD schemas objects are verified against, as committed (equal to the ones
        // generated from their types: test `crd_schemas_match_types`).
        for (name, text) in crate::crd::COMMITTED {
            h.update(name);
            h.update(text);
        }
        for f in crate::policy::default_library() {
            h.update(f.path.as_bytes());
            h.update(f.text.as_bytes());
        }
        sha256_hex(&h.finalize())
    })
}

impl Cache {
    pub fn new(dir: impl Into<PathBuf>) -> Cache {
        Cache {
            dir: dir.into(),
            salt: String::new(),
            shared: None,
            files: None,
            policies: None,
            read: Arc::default(),
        }
    }

    /// This cache with the policy set written last (the one a compile of the same repository
    /// with the same plinth asks for: 5.6 MB at 10,000 projects) read from now on, on a thread
    /// of its own; the first compile that asks for that set takes it (one asking for another
    /// set reads its own, and what was read is dropped).
    pub fn reading_policies(mut self) -> Cache {
        let dir = self.dir.join("policy");
        self.policies = Some(Beside::spawn("policy memo", move || {
            let set = last_policy_set(&dir)?;
            let memo = MemoFile::read_apart(dir.join(format!("{set}.json")), POLICY_FORMAT);
            Some((set, memo))
        }));
        self
    }

    /// This cache with the spec files' memo (12 MB at 10,000 projects) read from now on, on a
    /// thread of its own, while the command lists and reads the revision to compile; the
    /// first compile through it takes what was read (the ones after read the file again, as
    /// it may have been written since).
    pub fn reading_files(mut self) -> Cache {
        let path = self.files_path();
        self.files = Some(Beside::spawn("file memo", move || {
            MemoFile::read_apart(path, FILES_FORMAT)
        }));
        self
    }

    /// This cache with one unit store for the compiles through it (and its clones) until one
    /// of them adds units: a plan whose base is cached opens the store (its index: tens of
    /// thousands of lines at scale) once for both sides, not once per side. A compile that
    /// stored units lets the next one open the store again, so it sees them.
    pub fn sharing_units(mut self) -> Cache {
        self.shared = Some(Arc::default());
        self
    }

    /// The unit store for a compile: the shared one ([`Cache::sharing_units`]), else opened
    /// now. The store is opened without holding the lock: opening reads its index on every
    /// core, and a thread of that pool waiting for the lock (a compile on the pool asking for
    /// the store while another thread opens it) would leave the opening waiting for it — a
    /// deadlock of both sides of a plan. Two threads asking at once may both open it; the
    /// first kept is shared.
    pub(crate) fn units_for_compile(&self) -> Arc<UnitPack> {
        let Some(s) = &self.shared else {
            return Arc::new(self.units());
        };
        let lock = || s.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(open) = lock().clone() {
            return open;
        }
        let opened = Arc::new(self.units());
        lock().get_or_insert(opened).clone()
    }

    /// Units were stored: the next compile opens the store again (see
    /// [`Cache::sharing_units`]).
    pub(crate) fn units_stored(&self) {
        if let Some(s) = &self.shared {
            *s.0.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
    }

    /// A cache whose keys also depend on `salt` (to simulate another plinth version).
    pub fn with_salt(mut self, salt: impl Into<String>) -> Cache {
        self.salt = salt.into();
        self
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of compiling `snapshot` with `opts`.
    pub fn key(&self, snapshot: &Snapshot, opts: &Options) -> String {
        self.keyed(opts, &mut |field| {
            // A file by its text's digest (read once, in parallel, when it was loaded).
            for f in &snapshot.files {
                field(f.path.as_bytes());
                field(&f.digest);
            }
        })
    }

    /// The key under which the compile of a git tree with `opts` is found ([`Cache::alias`]):
    /// a tree id covers every byte below it, as [`Cache::key`] covers the loaded files, and
    /// loading is a function of the tree and the options.
    pub fn tree_key(&self, tree: &str, opts: &Options) -> String {
        self.keyed(opts, &mut |field| {
            field(b"git tree");
            field(tree.as_bytes());
        })
    }

    /// A key: the formats, plinth, the salt and the options, then what `input` gives, each
    /// field length-prefixed (so field boundaries cannot shift).
    fn keyed(&self, opts: &Options, input: &mut dyn FnMut(Fields<'_>)) -> String {
        let mut h = Sha256::new();
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_le_bytes());
            h.update(bytes);
        };
        field(FORMAT.as_bytes());
        field(fingerprint().as_bytes());
        field(self.salt.as_bytes());
        field(format!("{:?}|{:?}", opts.limits, opts.yaml).as_bytes());
        match &opts.policies {
            None => field(b"no policies"),
            Some(PolicyConfig {
                options,
                default_library,
                extra,
            }) => {
                field(format!("{:?}|{default_library}", options).as_bytes());
                for f in extra {
                    field(f.path.as_bytes());
                    field(f.text.as_bytes());
                }
            }
        }
        input(&mut field);
        sha256_hex(&h.finalize())
    }

    /// The key ([`Cache::key`]) of the compile a tree key ([`Cache::tree_key`]) was recorded
    /// for, when one was: a plan whose base is cached then need not read the base's files.
    pub fn alias(&self, tree_key: &str) -> Option<String> {
        let text = std::fs::read_to_string(self.alias_path(tree_key)?).ok()?;
        let key = text.trim();
        is_key(key).then(|| key.to_owned())
    }

    /// Record that `tree_key` compiles to `key` (written beside and renamed in; the
    /// [`ALIASES_KEPT`] recorded last are kept). One that cannot be written only costs time.
    pub fn set_alias(&self, tree_key: &str, key: &str) {
        let Some(path) = self.alias_path(tree_key) else {
            return;
        };
        if self.alias(tree_key).as_deref() == Some(key) {
            return;
        }
        let dir = self.dir.join("trees");
        let tmp = dir.join(format!(".{tree_key}.{}.tmp", std::process::id()));
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(&tmp, key))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
            return;
        }
        let mut all: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if all.len() > ALIASES_KEPT {
            all.sort();
            let excess = all.len() - ALIASES_KEPT;
            for (_, p) in all.into_iter().take(excess) {
                let _ = std::fs::remove_file(p);
            }
        }
    }

    fn alias_path(&self, tree_key: &str) -> Option<PathBuf> {
        is_key(tree_key).then(|| self.dir.join("trees").join(tree_key))
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    /// Whether an entry for `key` is stored (it may still prove unreadable when loaded).
    pub fn holds(&self, key: &str) -> bool {
        self.path(key).exists()
    }

    /// The entry for a key (its index; objects are read when asked for); `None` when absent or
    /// unreadable, or when written against an entry that is.
    pub fn load(&self, key: &str) -> Option<Entry> {
        let loaded = self.loaded(key)?;
        // Its objects are in the unit store: a unit gone from it (compacted away, damaged
        // index) is a miss.
        let pack = self.units_for_compile();
        if loaded.clusters.is_some() && !pack.holds_all(loaded.units.iter().map(String::as_str)) {
            return None;
        }
        // Used now: the last to be evicted (see `evict`), with the entry it was written against.
        for k in std::iter::once(key).chain(loaded.against.as_deref()) {
            if let Ok(f) = std::fs::File::options().append(true).open(self.path(k)) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
        }
        Some(Entry {
            platform_files: loaded.platform_files.clone(),
            diagnostics: loaded.diagnostics.clone(),
            capacity: loaded.capacity.clone(),
            clusters: loaded.clusters.clone(),
            unit_keys: loaded.units.clone(),
            kinds: loaded.kinds.clone(),
            noisy: loaded.noisy.clone(),
            revision: loaded.revision.clone(),
            policy_clean: match &loaded.policy_clean {
                Some(kinds) => Some(Arc::new(BaseClean {
                    kinds: kinds.clone(),
                    ..BaseClean::default()
                })),
                None => self.kept_clean(key).map(Arc::new),
            },
            check: loaded.check.clone(),
            key: key.to_owned(),
            index: std::sync::OnceLock::new(),
            pack,
        })
    }

    /// The entry of `key`, read now and whole (one written against another, with the other);
    /// kept for an entry written against it, read meanwhile or later.
    fn loaded(&self, key: &str) -> Option<Arc<Loaded>> {
        let cell: Arc<WholeCell> = Arc::default();
        self.registered().insert(key.to_owned(), cell.clone());
        let mut written_against = None;
        let whole = cell
            .get_or_init(|| match self.read_head(key)? {
                head if head.against.is_none() => Some(Arc::new(Loaded::whole(head))),
                head => {
                    written_against = Some(head);
                    None
                }
            })
            .clone();
        if whole.is_none() {
            self.forget(key, &cell);
        }
        if let Some(whole) = whole {
            return Some(whole);
        }
        let mut head = written_against?;
        let against = head.against.take()?;
        let base = self.whole(&against.key)?;
        base.resolve(head, against).map(Arc::new)
    }

    /// The whole entry of `key`, as read before when it was (or is being read: then waited for;
    /// the reading of a whole entry waits for nothing), else read now; `None` when it is absent,
    /// damaged or written against another.
    fn whole(&self, key: &str) -> Option<Arc<Loaded>> {
        if !is_key(key) {
            return None;
        }
        let cell = self.registered().entry(key.to_owned()).or_default().clone();
        let whole = cell
            .get_or_init(|| {
                let head = self.read_head(key)?;
                head.against
                    .is_none()
                    .then(|| Arc::new(Loaded::whole(head)))
            })
            .clone();
        if whole.is_none() {
            self.forget(key, &cell);
        }
        whole
    }

    /// The stored form of the entry of `key`, when it is there and of this format.
    fn read_head(&self, key: &str) -> Option<Head> {
        let bytes = std::fs::read(self.path(key)).ok()?;
        let head: Head = serde_json::from_slice(&bytes).ok()?;
        (head.format == FORMAT).then_some(head)
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<WholeCell>>> {
        self.read.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// [`Cache::registry`] with room for one more entry: a value kept for long (a library
    /// user's) holds at most [`REVISIONS_KEPT`] entries read, not every one it ever read
    /// (forgetting them only costs a read).
    fn registered(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<WholeCell>>> {
        let mut registry = self.registry();
        if registry.len() >= REVISIONS_KEPT {
            registry.clear();
        }
        registry
    }

    /// Read again when next asked for (it was not there, or not whole).
    fn forget(&self, key: &str, cell: &Arc<WholeCell>) {
        let mut registry = self.registry();
        if registry.get(key).is_some_and(|c| Arc::ptr_eq(c, cell)) {
            registry.remove(key);
        }
    }

    /// Store an entry: its units (which the unit store holds: they are flushed first), and
    /// beside it the list of those units (read by a compaction of the unit store, which keeps
    /// them). Each file is written beside and renamed into place, the list first. A compile
    /// whose objects are not all in the unit store (`lowered.units` is `None`) is not stored.
    pub fn store(&self, key: &str, entry: &EntryRef<'_>) -> std::io::Result<()> {
        if entry.lowered.is_some_and(Lowered::texts_lost) {
            return Err(std::io::Error::other(
                "an object's text could not be read back from the unit store",
            ));
        }
        let no_units = UnitRefs::default();
        let units = match entry.lowered {
            Some(l) => l
                .units
                .as_deref()
                .ok_or_else(|| std::io::Error::other("the objects are not in the unit store"))?,
            None => &no_units,
        };
        let (clusters, kinds) = match entry.lowered {
            Some(l) => {
                // Per unit, the kinds of the objects it holds here.
                let mut per_unit: Vec<BTreeSet<&str>> = vec![BTreeSet::new(); units.keys.len()];
                let clusters = l
                    .clusters
                    .iter()
                    .map(|(name, c)| {
                        let places = units.places.get(name);
                        let per = places
                            .and_then(|p| crate::plan::cluster_units(c, p))
                            .ok_or_else(|| std::io::Error::other("objects without places"))?;
                        for (m, &(u, _)) in c.manifests.iter().zip(places.into_iter().flatten()) {
                            if let Some(k) = per_unit.get_mut(u as usize) {
                                k.insert(&m.key.kind);
                            }
                        }
                        Ok((name.as_str(), &c.approvals[..], per))
                    })
                    .collect::<std::io::Result<_>>()?;
                let per_unit: Vec<Vec<String>> = per_unit
                    .into_iter()
                    .map(|k| k.into_iter().map(str::to_owned).collect())
                    .collect();
                let clusters = ClustersRef {
                    platform_file: l.platform_file.as_ref(),
                    clusters,
                };
                (Some(clusters), Some(UnitKinds::of(&per_unit)))
            }
            None => (None, None),
        };
        let noisy = (&units.keys[..], &units.noisy[..]);
        self.write_entry(key, entry, noisy, clusters, kinds.as_ref(), None)
    }

    /// Store the entry of a revision lowered against another's units
    /// ([`crate::lower::delta`]): its units are the fresh ones and the opaque ones, which the
    /// unit store holds already.
    pub fn store_delta(
        &self,
        key: &str,
        entry: &EntryRef<'_>,
        delta: &crate::lower::delta::Delta,
    ) -> std::io::Result<()> {
        if delta.fresh.texts_lost() {
            return Err(std::io::Error::other(
                "an object's text could not be read back from the unit store",
            ));
        }
        let approvals = |name: &str| {
            delta
                .fresh
                .clusters
                .get(name)
                .map_or(&[][..], |c| &c.approvals[..])
        };
        let clusters = ClustersRef {
            platform_file: delta.fresh.platform_file.as_ref(),
            clusters: delta
                .clusters
                .iter()
                .map(|(name, units)| (name.as_str(), approvals(name), units.clone()))
                .collect(),
        };
        let kinds = UnitKinds::of(&delta.kinds);
        let noisy = delta
            .fresh
            .units
            .as_deref()
            .map_or(&[][..], |r| &r.noisy[..]);
        let units = (delta.keys(), noisy);
        // Written against the base's entry when this process read it whole ([`against`]).
        let against = delta.base.as_deref();
        self.write_entry(key, entry, units, Some(clusters), Some(&kinds), against)
    }

    /// Write an entry and the list of its units (`units`: their keys, and the units whose
    /// output holds diagnostics) — against the entry of `against` when this value read that
    /// one whole ([`against`]: then the list names only the units that one does not have
    /// where this one has them, as that one's list names the rest).
    fn write_entry(
        &self,
        key: &str,
        entry: &EntryRef<'_>,
        (units, noisy): (&[String], &[u32]),
        clusters: Option<ClustersRef<'_>>,
        kinds: Option<&UnitKinds>,
        against: Option<&str>,
    ) -> std::io::Result<()> {
        let path = self.path(key);
        let dir = path.parent().unwrap_or(&self.dir);
        std::fs::create_dir_all(dir)?;
        let base = against
            .filter(|k| *k != key)
            .and_then(|k| Some((k, self.read_before(k)?)));
        let diff = match (&base, entry.revision, &clusters, kinds) {
            (Some((k, b)), Some(r), Some(c), Some(kinds)) => {
                b.diff(k, (units, r), (entry.capacity, c, kinds))
            }
            _ => None,
        };
        let list = dir.join(format!(".{key}.{}.units.tmp", std::process::id()));
        match &diff {
            Some((a, _)) => {
                let changed: Vec<&str> = a.changed_units.iter().map(|(_, k)| k.as_str()).collect();
                std::fs::write(&list, changed.join("\n"))?;
            }
            None => std::fs::write(&list, units.join("\n"))?,
        }
        std::fs::rename(&list, path.with_extension("units"))?;
        let [same_capacity, same_clusters, same_kinds] = diff.as_ref().map_or([false; 3], |d| d.1);
        let head = HeadRef {
            format: FORMAT,
            platform_files: entry.platform_files,
            diagnostics: entry.diagnostics,
            capacity: entry.capacity.filter(|_| !same_capacity),
            units: if diff.is_some() { &[] } else { units },
            clusters: clusters.filter(|_| !same_clusters),
            kinds: kinds.filter(|_| !same_kinds),
            noisy,
            revision: entry.revision.map(|r| match &diff {
                // The digests are the base's but where the entry says.
                Some((a, _)) => RevisionHead {
                    graph: crate::output::hex(&r.graph),
                    paths: crate::output::hex(&r.paths),
                    digests: String::new(),
                    projects: match (&a.projects, &r.projects) {
                        (None, Some(p)) => crate::output::hex(p.as_flattened()),
                        _ => String::new(),
                    },
                },
                None => RevisionHead::of(r),
            }),
            policy_clean: entry.policy_clean,
            check: entry.check,
            against: diff.as_ref().map(|d| &d.0),
        };
        let tmp = dir.join(format!(".{key}.{}.tmp", std::process::id()));
        std::fs::write(
            &tmp,
            serde_json::to_vec(&head).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&tmp, &path)?;
        self.evict();
        Ok(())
    }

    /// The whole entry of `key` as this value (or a clone) read it, without reading it now.
    fn read_before(&self, key: &str) -> Option<Arc<Loaded>> {
        let cell = self.registry().get(key)?.clone();
        cell.get().cloned().flatten()
    }

    /// Keep beside the entry of `key` what a policy evaluation found nothing in among its
    /// units and documents (a revision compiled against it, clean: see
    /// [`crate::lower::delta::BaseClean`]). Only beside an entry that is there and has none
    /// of its own; one that cannot be written only costs time.
    pub fn keep_clean(&self, key: &str, clean: &BaseClean) {
        let path = self.path(key);
        if !is_key(key) || !path.exists() {
            return;
        }
        let Some(dir) = path.parent() else {
            return;
        };
        let tmp = dir.join(format!(".{key}.{}.clean.tmp", std::process::id()));
        let written = serde_json::to_vec(clean)
            .map_err(std::io::Error::other)
            .and_then(|bytes| std::fs::write(&tmp, bytes))
            .and_then(|()| std::fs::rename(&tmp, path.with_extension("clean")));
        if written.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }

    /// What [`Cache::keep_clean`] kept beside the entry of `key`.
    fn kept_clean(&self, key: &str) -> Option<BaseClean> {
        let bytes = std::fs::read(self.path(key).with_extension("clean")).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Keep the [`REVISIONS_KEPT`] entries used last: older ones are deleted (the index
    /// first, so a half-deleted entry is a miss).
    fn evict(&self) {
        let mut entries: Vec<(std::time::SystemTime, PathBuf)> = revision_files(&self.dir, "json")
            .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
            .collect();
        if entries.len() <= REVISIONS_KEPT {
            return;
        }
        entries.sort();
        let excess = entries.len() - REVISIONS_KEPT;
        for (_, p) in entries.into_iter().take(excess) {
            let _ = std::fs::remove_file(&p);
            let _ = std::fs::remove_file(p.with_extension("units"));
            let _ = std::fs::remove_file(p.with_extension("clean"));
        }
    }
}

/// The files of the cache's revision entries (`<dir>/<k>/<key>.<extension>`) with this
/// extension.
fn revision_files(dir: &Path, extension: &'static str) -> impl Iterator<Item = PathBuf> {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|d| d.file_name().len() == 2)
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .map(|e| e.path())
        .filter(move |p| p.extension().is_some_and(|x| x == extension))
}

/// Results of lowering units ([`crate::lower::units`]), kept between compiles in
/// `<cache>/units/`: packs of serialised unit outputs, each with an index of key → place.
///
/// A compile looks units up by key (content-addressed: a key covers every byte a unit read, so
/// an entry is never stale) and offers the ones it lowered; [`UnitPack::flush`] writes those
/// as one new pack. Packs are written beside and renamed into place, the index last, so a pack
/// is visible only when complete; an unreadable or corrupt entry is a miss. When there are more
/// than [`MAX_PACKS`] packs, the next flush writes the live units of all but the largest pack
/// into its own and deletes those packs ([`UnitPack::to_merge`]), so the directory holds about
/// what the kept revisions use. A pack's index lists where each unit's record is, in key
/// order, and is searched in place ([`index`]).
///
/// A unit is read by its header ([`record`]); its objects' texts (the body) are read when one
/// of them is, from the pack held open since the store was opened. A header that does not
/// match its checksum is a miss; a body that does not is found only when read: its objects
/// read as `null` and say so ([`crate::output::Body`]), every consumer refuses to act on them
/// ([`crate::lower::Lowered::texts_intact`]), and the pack's index is removed so that the next
/// compile lowers those units again.
pub struct UnitPack {
    dir: PathBuf,
    /// Each pack's index, newest first (a key found in two packs is read from the newer);
    /// a [`Place`]'s `pack` is a position here.
    indexes: Vec<index::PackIndex>,
    /// Each pack's path and the pack, open (`None` when it could not be opened).
    packs: Vec<(PathBuf, Option<Arc<OpenPack>>)>,
    fresh: std::sync::Mutex<Vec<(String, record::Encoded)>>,
    used: std::sync::Mutex<Vec<String>>,
}

/// Whether `s` has the form of a key ([`Cache::key`], [`Cache::tree_key`]): a sha256 in hex
/// (so a key read from a file names nothing outside the cache).
fn is_key(s: &str) -> bool {
    index::key_bytes(s).is_some()
}

/// Where a key's input fields are fed ([`Cache::keyed`]).
type Fields<'a> = &'a mut dyn FnMut(&[u8]);

/// Tree aliases kept ([`Cache::set_alias`]).
pub const ALIASES_KEPT: usize = 256;

/// Packs kept before a flush compacts them (see [`UnitPack::to_merge`]).
pub const MAX_PACKS: usize = 8;

impl Cache {
    /// The unit store of this cache (its packs' indexes read now).
    pub fn units(&self) -> UnitPack {
        UnitPack::open(self.dir.join("units"))
    }

    /// What unit keys are salted with: this build of plinth (and a test's salt).
    pub fn unit_salt(&self) -> String {
        format!("{}|{}", fingerprint(), self.salt)
    }
}

impl std::fmt::Debug for UnitPack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UnitPack")
            .field("dir", &self.dir)
            .field("units", &self.len())
            .finish_non_exhaustive()
    }
}

impl UnitPack {
    fn open(dir: PathBuf) -> UnitPack {
        let mut idx: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "idx"))
            .map(|p| {
                let t = std::fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .unwrap_or(std::time::UNIX_EPOCH);
                (t, p)
            })
            .collect();
        // Newest first: a key found in two packs is read from the newer.
        idx.sort_by(|a, b| b.cmp(a));
        let mut indexes = Vec::new();
        let mut packs = Vec::new();
        for (_, p) in idx {
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            // Opened now: a pack another compile compacts away later stays readable here.
            let file = std::fs::File::open(p.with_extension("pack"))
                .ok()
                .map(|file| {
                    Arc::new(OpenPack {
                        file,
                        index: p.clone(),
                    })
                });
            // Every record within the pack (a damaged index could name any length: a read
            // never allocates more than the pack holds).
            let size = file
                .as_ref()
                .and_then(|f| f.file.metadata().ok())
                .map(|m| m.len());
            let Some(index) = index::PackIndex::decode(bytes, size) else {
                // Not an index of this format (an older plinth's, or damaged): its pack is
                // never read, so neither is kept.
                let _ = std::fs::remove_file(&p);
                let _ = std::fs::remove_file(p.with_extension("pack"));
                continue;
            };
            packs.push((p.with_extension("pack"), file));
            indexes.push(index);
        }
        UnitPack {
            dir,
            indexes,
            packs,
            fresh: Default::default(),
            used: Default::default(),
        }
    }

    /// Where the unit `key` is: in the newest pack listing it.
    fn place(&self, key: &str) -> Option<Place> {
        let key = index::key_bytes(key)?;
        self.indexes.iter().enumerate().find_map(|(pack, index)| {
            Some(Place {
                pack,
                ..index.find(&key)?
            })
        })
    }

    /// A unit's record, header and body, checked against their checksums (for a compaction
    /// copying it).
    fn read(&self, key: &str) -> Option<(Vec<u8>, Place)> {
        use std::os::unix::fs::FileExt;
        let place = self.place(key)?;
        let pack = self.packs.get(place.pack)?.1.as_ref()?;
        let mut buf = vec![0; usize::try_from(place.len()).ok()?];
        pack.file.read_exact_at(&mut buf, place.offset).ok()?;
        let (head, body) = buf.split_at(usize::try_from(place.head).ok()?);
        (crc32fast::hash(head) == place.head_crc && crc32fast::hash(body) == place.body_crc)
            .then_some((buf, place))
    }

    /// `f` of the header of a unit and the place of its record, the header read into this
    /// thread's buffer (one allocation per thread, not a fresh zeroed one per unit); `None`
    /// when it does not match its checksum.
    fn read_head<R>(
        &self,
        key: &str,
        f: impl FnOnce(&[u8], &Place, &Arc<OpenPack>) -> R,
    ) -> Option<R> {
        // Positioned reads: threads read one pack at once.
        use std::os::unix::fs::FileExt;
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let place = self.place(key)?;
        let pack = self.packs.get(place.pack)?.1.as_ref()?;
        let len = usize::try_from(place.head).ok()?;
        // A buffer grown for a large unit is not kept (threads live as long as the process).
        const KEPT: usize = 1 << 20;
        // Taken out while in use, not borrowed (as the memo's key buffer, see `PolicyMemo`).
        let mut buf = BUF.take();
        buf.resize(len, 0);
        let out = pack
            .file
            .read_exact_at(&mut buf, place.offset)
            .ok()
            .and_then(|()| {
                (crc32fast::hash(&buf) == place.head_crc).then(|| f(&buf, &place, pack))
            });
        if buf.capacity() <= KEPT {
            BUF.set(buf);
        }
        out
    }

    /// Whether the unit `key` is held (in the packs read when opening, or offered since).
    pub fn holds(&self, key: &str) -> bool {
        self.place(key).is_some()
            || self
                .fresh
                .lock()
                .is_ok_and(|f| f.iter().any(|(k, _)| k == key))
    }

    /// Whether every unit of `keys` is held ([`UnitPack::holds`]). The packs are tried from the
    /// one that held the unit before: an entry's units sit in a few packs, so most are found in
    /// the first tried rather than after every newer pack's index is searched.
    pub fn holds_all<'k>(&self, keys: impl IntoIterator<Item = &'k str>) -> bool {
        let n = self.indexes.len();
        let mut first = 0;
        keys.into_iter().all(|k| {
            let found = index::key_bytes(k).and_then(|key| {
                (0..n)
                    .map(|i| (first + i) % n)
                    .find(|&i| self.indexes[i].find(&key).is_some())
            });
            match found {
                Some(i) => {
                    first = i;
                    true
                }
                None => self.holds(k),
            }
        })
    }

    /// Units held (in the packs read when opening; a unit in two packs counted once).
    pub fn len(&self) -> usize {
        let mut keys: Vec<&[u8]> = self.indexes.iter().flat_map(|i| i.keys()).collect();
        keys.sort_unstable();
        keys.dedup();
        keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indexes.iter().all(|i| i.len() == 0)
    }

    /// Units offered since opening.
    pub fn fresh_count(&self) -> usize {
        self.fresh.lock().map_or(0, |f| f.len())
    }

    /// Write the units offered since opening as a new pack (compacting when there are many).
    /// Nothing is written when nothing was offered.
    pub fn flush(&self) -> std::io::Result<()> {
        let fresh = std::mem::take(
            &mut *self
                .fresh
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if fresh.is_empty() {
            return Ok(());
        }
        // Which packs this flush merges into its own (their live units copied, the packs
        // removed): none until there are many.
        let merged = if self.packs.len() >= MAX_PACKS {
            self.to_merge()
        } else {
            Vec::new()
        };
        std::fs::create_dir_all(&self.dir)?;
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let name = format!("{stamp:032}-{}", std::process::id());
        let pack = self.dir.join(format!("{name}.pack"));
        let tmp = self.dir.join(format!(".{name}.pack.tmp"));
        let mut entries: Vec<(String, Place)> = Vec::new();
        {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp)?);
            let mut offset = 0u64;
            let mut write = |key: &str, bytes: &[u8], head: usize, entries: &mut Vec<_>| {
                f.write_all(bytes)?;
                let (h, b) = bytes.split_at(head.min(bytes.len()));
                let place = Place {
                    pack: 0,
                    offset,
                    head: h.len() as u64,
                    head_crc: crc32fast::hash(h),
                    body: b.len() as u64,
                    body_crc: crc32fast::hash(b),
                };
                entries.push((key.to_owned(), place));
                offset += bytes.len() as u64;
                std::io::Result::Ok(())
            };
            for (key, e) in &fresh {
                write(key, &e.bytes, e.head, &mut entries)?;
            }
            let fresh: BTreeSet<&str> = fresh.iter().map(|(k, _)| k.as_str()).collect();
            for key in merged.iter().flat_map(|(_, live)| live) {
                if !fresh.contains(key.as_str())
                    && let Some((bytes, place)) = self.read(key)
                {
                    let head = usize::try_from(place.head).unwrap_or(usize::MAX);
                    write(key, &bytes, head, &mut entries)?;
                }
            }
            f.flush()?;
        }
        std::fs::rename(&tmp, &pack)?;
        let idx_tmp = self.dir.join(format!(".{name}.idx.tmp"));
        std::fs::write(&idx_tmp, index::encode(&entries))?;
        std::fs::rename(&idx_tmp, pack.with_extension("idx"))?;
        for (old, _) in &merged {
            // The index first: a pack without one is never read.
            let _ = std::fs::remove_file(old.with_extension("idx"));
            let _ = std::fs::remove_file(old);
        }
        Ok(())
    }

    /// The packs a compaction merges, each with its live units (the units this compile used
    /// and those of the revisions kept in the cache, whose objects are there): all but the
    /// largest, unless that one is mostly dead too — the large pack a cold compile wrote is
    /// not copied again every few compiles while its units are in use.
    fn to_merge(&self) -> Vec<(&PathBuf, Vec<String>)> {
        let used: Vec<String> = self.used.lock().map(|u| u.clone()).unwrap_or_default();
        // The revisions' lists name mostly the same units (hundreds of thousands of lines at
        // scale): each key is looked up once, borrowed from the lists, not collected first.
        let pinned = self.pinned();
        let keys = used
            .iter()
            .map(String::as_str)
            .chain(pinned.iter().flat_map(|t| t.lines()));
        let mut seen: std::collections::HashSet<&str, foldhash::fast::RandomState> =
            Default::default();
        let n = self.packs.len();
        let mut live: Vec<Vec<String>> = vec![Vec::new(); n];
        let mut live_bytes = vec![0u64; n];
        for key in keys {
            // Each distinct key looked up once (a lookup searches every pack's index).
            if seen.insert(key)
                && let Some(place) = self.place(key)
            {
                live_bytes[place.pack] += place.len();
                live[place.pack].push(key.to_owned());
            }
        }
        // In key order (the packs written are the same whatever the order of the reads).
        for l in &mut live {
            l.sort_unstable();
        }
        let sizes: Vec<u64> = self
            .packs
            .iter()
            .map(|(_, f)| {
                f.as_ref()
                    .and_then(|f| f.file.metadata().ok())
                    .map_or(0, |m| m.len())
            })
            .collect();
        // The largest pack is kept when it is mostly live; every other one is merged.
        let largest = (0..n)
            .max_by_key(|&p| sizes[p])
            .filter(|&p| live_bytes[p] * 2 >= sizes[p]);
        let merge: Vec<bool> = (0..n).map(|p| Some(p) != largest).collect();
        self.packs
            .iter()
            .zip(live)
            .zip(merge)
            .filter(|(_, m)| *m)
            .map(|(((path, _), live), _)| (path, live))
            .collect()
    }
}

/// Bumped when the file memo's format changes.
const FILES_FORMAT: &str = "plinth-file-memo-v2";

/// What reading each spec file gave ([`crate::resolve::FileStore`]): a [`MemoFile`] in
/// `<cache dir>/files/reads.json`, read when the memo is made.
pub struct FileMemo {
    memo: std::sync::RwLock<Option<MemoFile<crate::resolve::FileRead>>>,
}

impl Cache {
    /// The file memo kept in this cache.
    pub fn file_memo(&self) -> FileMemo {
        let beside = self.files.as_ref().and_then(|f| f.take());
        let memo = beside.unwrap_or_else(|| MemoFile::read(self.files_path(), FILES_FORMAT));
        FileMemo {
            memo: std::sync::RwLock::new(Some(memo)),
        }
    }

    fn files_path(&self) -> PathBuf {
        self.dir.join("files").join("reads.json")
    }

    /// What file memo keys are salted with: this build of plinth (and a test's salt).
    pub fn file_salt(&self) -> String {
        self.unit_salt()
    }
}

impl crate::resolve::FileStore for FileMemo {
    fn get(
        &self,
        key: &str,
        f: &mut dyn FnMut(crate::resolve::FileReadRef<'_>, Option<&crate::resolve::StoreText>),
    ) {
        let memo = self.memo.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = memo.as_ref() {
            // A stored read is parsed borrowing its documents' JSON from the memo's text.
            m.with_text(key, |v| {
                match v {
                    Ok((text, whole)) => f(serde_json::from_slice(text).ok()?, Some(whole)),
                    Err(added) => f(added.borrowed(), None),
                }
                Some(())
            });
        }
    }

    fn put(&self, key: &str, read: crate::resolve::FileRead) {
        let memo = self.memo.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(m) = memo.as_ref() {
            m.put(key.to_owned(), read);
        }
    }

    fn finish(&self) {
        let memo = self
            .memo
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(m) = memo {
            m.finish();
        }
    }
}

/// Bumped when the policy memo's format changes.
const POLICY_FORMAT: &str = "plinth-policy-memo-v3";

/// Most policy memo files kept (one per policy set; the least recently written go first).
const POLICY_FILES_KEPT: usize = 8;

/// Results of policy rules per input (a [`Memo`]), persisted under `<cache dir>/policy/`: per
/// policy-set hash a file of JSON lines (a head, then an entry per line), written atomically,
/// and a log of the entries added since (one JSON line each, appended at the end of a run). A run that adds a few entries appends them; one
/// that leaves many stored entries unused, or finds the log long, writes the file again with
/// only the entries it used and empties the log (bounded growth). A corrupt or unreadable file or
/// line is a miss.
pub struct PolicyMemo {
    dir: PathBuf,
    fingerprint: String,
    /// The sets used in this run (one or two), each read when first asked for. Looked up under
    /// a shared lock, without a reference count touched per lookup.
    sets: std::sync::RwLock<Vec<(String, MemoFile<Memoized>)>>,
    /// The set read beside from when the cache was opened, if any.
    beside: Option<Arc<Beside<SetRead>>>,
}

impl Cache {
    /// The blob contents of git revisions kept in this cache (read from now on, on a thread
    /// of its own: the first look waits for it).
    pub fn blobs(&self) -> BlobPack {
        BlobPack::open_beside(self.dir.join("blobs").join("pack"))
    }

    /// The contents of working-tree files read before, by path and stamp
    /// ([`crate::load::DirSource::with_texts`]; read as [`Cache::blobs`]).
    pub fn worktree_texts(&self) -> BlobPack {
        BlobPack::open_beside(self.dir.join("blobs").join("worktree"))
    }

    /// The policy result memo kept in this cache.
    pub fn policy_memo(&self) -> PolicyMemo {
        PolicyMemo {
            dir: self.dir.join("policy"),
            fingerprint: format!("{}|{}|{}", POLICY_FORMAT, fingerprint(), self.salt),
            sets: std::sync::RwLock::new(Vec::new()),
            beside: self.policies.clone(),
        }
    }
}

/// The policy set in `dir` whose file or log was written last.
fn last_policy_set(dir: &Path) -> Option<String> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| {
            let path = e.path();
            let ext = path.extension()?.to_str()?;
            if ext != "json" && ext != "log" {
                return None;
            }
            let set = path.file_stem()?.to_str()?.to_owned();
            Some((e.metadata().ok()?.modified().ok()?, set))
        })
        .max()
        .map(|(_, set)| set)
}

impl PolicyMemo {
    /// What [`Cache::reading_policies`] read, when it is `set` (taken once: the first set
    /// asked for takes it or drops it).
    fn read_beside(&self, set: &str) -> Option<MemoFile<Memoized>> {
        let (name, memo) = self.beside.as_ref()?.take()??;
        (name == set).then_some(memo)
    }

    fn path(&self, set: &str) -> PathBuf {
        self.dir.join(format!("{set}.json"))
    }

    /// `f` of the set (read when first asked for).
    fn with_set<R>(&self, set: &str, f: impl FnOnce(&MemoFile<Memoized>) -> R) -> R {
        {
            let sets = self.sets.read().unwrap_or_else(PoisonError::into_inner);
            if let Some((_, s)) = sets.iter().find(|(n, _)| n == set) {
                return f(s);
            }
        }
        // Read with no lock held: reading works on every core, and a rayon thread that holds
        // a lock while waiting for its pieces may be handed another task that asks for it.
        // (Two threads may read a set at once; the first one kept wins.)
        let read = self
            .read_beside(set)
            .unwrap_or_else(|| MemoFile::read(self.path(set), POLICY_FORMAT));
        let mut sets = self.sets.write().unwrap_or_else(PoisonError::into_inner);
        if !sets.iter().any(|(n, _)| n == set) {
            sets.push((set.to_owned(), read));
        }
        drop(sets);
        self.with_set(set, f)
    }

    /// Only the most recently written policy sets are kept.
    fn prune(&self) -> std::io::Result<()> {
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
            .collect();
        files.sort();
        let excess = files.len().saturating_sub(POLICY_FILES_KEPT);
        for (_, p) in files.into_iter().take(excess) {
            let _ = std::fs::remove_file(p.with_extension("log"));
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }
}

thread_local! {
    /// The memo key being looked up (one buffer per thread, not one allocation per lookup).
    static MEMO_KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// The body of a unit in a pack (held open: a pack compacted away since stays readable), read
/// when one of its objects is ([`crate::output::Body`]).
struct StoredBody {
    pack: Arc<OpenPack>,
    offset: u64,
    len: u64,
    crc: u32,
}

/// A pack held open, and its index: removed when a body does not read back as written, so
/// that the pack is not read again (its units are lowered again and kept anew).
struct OpenPack {
    file: std::fs::File,
    index: PathBuf,
}

impl crate::output::BodySource for StoredBody {
    fn read(&self) -> Option<String> {
        use std::os::unix::fs::FileExt;
        let read = || {
            let mut buf = vec![0; usize::try_from(self.len).ok()?];
            self.pack.file.read_exact_at(&mut buf, self.offset).ok()?;
            (crc32fast::hash(&buf) == self.crc).then_some(())?;
            String::from_utf8(buf).ok()
        };
        let text = read();
        if text.is_none() {
            let _ = std::fs::remove_file(&self.pack.index);
        }
        text
    }
}

impl UnitPack {
    /// The lists of the units the cache's revisions refer to (their `.units` files, beside
    /// the unit store's directory; a key per line).
    fn pinned(&self) -> Vec<String> {
        let Some(cache) = self.dir.parent() else {
            return Vec::new();
        };
        revision_files(cache, "units")
            .filter_map(|p| std::fs::read_to_string(p).ok())
            .collect()
    }
}

impl crate::lower::UnitStore for UnitPack {
    fn get(&self, key: &str) -> Option<crate::lower::units::UnitOutput> {
        let out = self.read_head(key, |head, place, pack| {
            record::decode(head, place.body, |approves| {
                let source = StoredBody {
                    pack: pack.clone(),
                    offset: place.offset + place.head,
                    len: place.body,
                    crc: place.body_crc,
                };
                crate::output::Body::stored(Box::new(source), approves)
            })
        })??;
        if let Ok(mut u) = self.used.lock() {
            u.push(key.to_owned());
        }
        Some(out)
    }

    fn put(&self, key: &str, out: &crate::lower::units::UnitOutput) {
        // A unit that cannot be serialised is only not kept.
        // A unit read from the store whose text could not be read is not kept again.
        if !out.objects.iter().any(|m| m.object.text_lost())
            && let Some(e) = record::encode(out)
            && let Ok(mut f) = self.fresh.lock()
        {
            f.push((key.to_owned(), e));
        }
    }
}

impl Memo for PolicyMemo {
    fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    fn prefetch(&self, set: &str) {
        self.with_set(set, |_| ());
    }

    fn get(&self, set: &str, rule: &str, input: &str) -> Option<Memoized> {
        let mut out = None;
        self.visit(set, rule, input, &mut |m| out = Some(m.clone()));
        out
    }

    fn visit(&self, set: &str, rule: &str, input: &str, f: &mut dyn FnMut(&Memoized)) {
        // The buffer is taken out while in use, not borrowed: reading a set runs on every
        // core, and this thread may be handed another lookup while it waits (a borrow held
        // across that would panic; a lookup that finds the buffer taken makes its own).
        let mut key = MEMO_KEY.take();
        key.clear();
        key.push_str(input);
        key.push(' ');
        key.push_str(rule);
        self.with_set(set, |s| s.with(&key, |m| f(m)));
        MEMO_KEY.set(key);
    }

    fn put(&self, set: &str, rule: &str, input: &str, result: Memoized) {
        self.with_set(set, |s| s.put(format!("{input} {rule}"), result));
    }

    fn put_scratch(&self, set: &str, rule: &str, input: &str, result: Memoized) {
        self.with_set(set, |s| s.put_scratch(format!("{input} {rule}"), result));
    }

    fn finish(&self, set: &str) {
        // Every lookup is over: the set is taken out and written back.
        let s = {
            let mut sets = self.sets.write().unwrap_or_else(PoisonError::into_inner);
            let Some(i) = sets.iter().position(|(n, _)| n == set) else {
                return;
            };
            sets.swap_remove(i).1
        };
        if s.finish() == Finished::Written {
            let _ = self.prune();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capacity::Capacity;
    use crate::lower::UnitStore as _;
    use crate::lower::units::UnitOutput;

    /// A revision's digests read back as written; a digit that is not hex, or a digest cut
    /// short, is not read (the entry is then compiled against unviewed).
    #[test]
    fn a_revision_reads_back_and_a_damaged_one_does_not() {
        let r = Revision {
            graph: [7; 32],
            paths: [0xa5; 32],
            digests: (0..=255u8).map(|b| [b; 32]).collect(),
            projects: Some((0..9u8).map(|b| [b ^ 0x5a; 32]).collect()),
        };
        let head = RevisionHead::of(&r);
        assert_eq!(head.read(), Some(r.clone()));
        let without = Revision {
            projects: None,
            ..r
        };
        assert_eq!(RevisionHead::of(&without).read(), Some(without.clone()));
        let mut bad = RevisionHead::of(&Revision {
            projects: Some(vec![[4; 32]; 2]),
            ..without
        });
        bad.projects.pop();
        assert_eq!(bad.read(), None, "a project's digest cut short");
        for (at, by) in [(5, "g"), (130, "G"), (64 * 3 + 1, " ")] {
            let mut bad = RevisionHead::of(&Revision {
                graph: [1; 32],
                paths: [2; 32],
                digests: vec![[3; 32]; 4],
                projects: None,
            });
            bad.digests.replace_range(at..=at, by);
            assert_eq!(bad.read(), None, "a `{by}` at {at}");
        }
        let mut short = RevisionHead::of(&Revision {
            graph: [1; 32],
            paths: [2; 32],
            digests: vec![[3; 32]; 2],
            projects: None,
        });
        short.digests.pop();
        assert_eq!(short.read(), None);
    }

    /// The policy set written last is the one read beside; the first set asked for takes it
    /// when it is that set (the files may be gone by then: it was read) and drops it when not.
    #[test]
    fn the_policy_set_written_last_is_read_beside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written = |set: &str, at: u64| {
            let memo = Cache::new(dir.path()).policy_memo();
            memo.put(set, "r", "i", Memoized::Excepted(1));
            memo.finish(set);
            let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(at);
            let f = std::fs::File::options()
                .write(true)
                .open(dir.path().join("policy").join(format!("{set}.json")))
                .expect("written");
            f.set_modified(when).expect("stamp");
        };
        written("older", 1_000_000);
        written("newer", 2_000_000);
        assert_eq!(
            last_policy_set(&dir.path().join("policy")).as_deref(),
            Some("newer")
        );
        // Read beside, waited for, then the files removed: a lookup is answered by the read.
        let cache = Cache::new(dir.path()).reading_policies();
        let beside = cache.policies.clone().expect("reading");
        let lock = || beside.0.lock().unwrap_or_else(PoisonError::into_inner);
        let read = lock().take().expect("a thread").join().expect("joined");
        assert_eq!(read.as_ref().map(|(set, _)| set.as_str()), Some("newer"));
        std::fs::remove_dir_all(dir.path().join("policy")).expect("removed");
        *lock() = Some(std::thread::spawn(move || read));
        let memo = cache.policy_memo();
        assert_eq!(
            memo.get("newer", "r", "i"),
            Some(Memoized::Excepted(1)),
            "answered by the set read beside"
        );
        // Taken once: another memo of the same cache reads the (now missing) file.
        assert_eq!(cache.policy_memo().get("newer", "r", "i"), None);
        // A guess that is not the set asked for is dropped.
        written("newer", 3_000_000);
        written("other", 4_000_000);
        let cache = Cache::new(dir.path()).reading_policies();
        let memo = cache.policy_memo();
        assert_eq!(memo.get("newer", "r", "i"), Some(Memoized::Excepted(1)));
        assert!(
            lock_taken(&cache),
            "the guess (`other`) was taken and dropped"
        );
    }

    /// Whether the set read beside was taken.
    fn lock_taken(cache: &Cache) -> bool {
        cache
            .policies
            .as_ref()
            .is_some_and(|b| b.0.lock().unwrap_or_else(PoisonError::into_inner).is_none())
    }

    /// The (first) file of the unit store in cache directory `dir` with extension `ext`.
    fn unit_file(dir: &Path, ext: &str) -> PathBuf {
        std::fs::read_dir(dir.join("units"))
            .expect("units")
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|x| x == ext))
            .expect("a unit store file")
    }

    /// A unit read from the store is its header: its objects' texts are read when one is
    /// read (whether one carries the approval annotation is known without), once for the
    /// unit; a text damaged after the store was opened reads as `null`, is reported lost and
    /// drops the pack from the store.
    #[test]
    fn a_units_texts_are_read_when_first_read_and_a_damaged_one_is_lost() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(dir.path());
        let units = cache.units();
        let (plain, approving) = (record::sample(false), record::sample(true));
        let (a, b) = ("a".repeat(64), "b".repeat(64));
        units.put(&a, &plain);
        units.put(&b, &approving);
        units.flush().expect("flush");
        let units = cache.units();
        let read = units.get(&a).expect("held");
        let body = |o: &UnitOutput| o.objects[0].object.shared_body().expect("shared") as *const _;
        let is_read = |o: &UnitOutput| o.objects[0].object.shared_body().expect("text").is_read();
        assert!(std::ptr::eq(
            body(&read),
            read.objects[1].object.shared_body().expect("t")
        ));
        assert!(!is_read(&read));
        assert!(
            !read.objects[1]
                .object
                .may_hold(crate::output::APPROVE_ANNOTATION)
        );
        assert!(!is_read(&read), "answered from the header");
        assert_eq!(read.objects[0].object.sha(), plain.objects[0].object.sha());
        assert!(!is_read(&read), "the hash is in the header");
        assert_eq!(*read.objects[1].object, *plain.objects[1].object);
        assert!(is_read(&read));
        let other = units.get(&b).expect("held");
        assert!(
            other.objects[1]
                .object
                .may_hold(crate::output::APPROVE_ANNOTATION)
        );
        // Damaged in place after the store was opened.
        let damaged = units.get(&b).expect("held");
        let pack = unit_file(dir.path(), "pack");
        let mut bytes = std::fs::read(&pack).expect("read");
        let last = bytes.len() - 2;
        bytes[last] ^= 0x20;
        std::fs::write(&pack, bytes).expect("write");
        assert_eq!(*damaged.objects[1].object, serde_json::Value::Null);
        assert!(damaged.objects[0].object.text_lost());
        assert!(!read.objects[0].object.text_lost(), "read before");
        assert!(
            !pack.with_extension("idx").exists(),
            "the pack is no longer read"
        );
        assert!(cache.units().get(&a).is_none());
    }

    /// An index naming a record past its pack's end (a damaged length) is not read: its
    /// pack is dropped, and no read allocates what the pack does not hold.
    #[test]
    fn an_index_naming_more_than_its_pack_holds_is_dropped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(dir.path());
        let units = cache.units();
        let key = "a".repeat(64);
        units.put(&key, &record::sample(false));
        units.flush().expect("flush");
        assert!(cache.units().get(&key).is_some());
        let idx = unit_file(dir.path(), "idx");
        let size = std::fs::metadata(idx.with_extension("pack"))
            .expect("pack")
            .len();
        let index = index::PackIndex::decode(std::fs::read(&idx).expect("index"), Some(size))
            .expect("reads");
        let mut place = index
            .find(&index::key_bytes(&key).expect("key"))
            .expect("listed");
        // A well-formed index (its checksum right) whose record's body runs past the pack.
        place.body = 1 << 40;
        std::fs::write(&idx, index::encode(&[(key.clone(), place)])).expect("write");
        assert!(cache.units().get(&key).is_none());
        assert!(!idx.exists() && !idx.with_extension("pack").exists());
    }

    /// Whether a list of units is held, asked at once, is what asking for each says: units
    /// spread over several packs (in any order), one offered since opening, one in none.
    #[test]
    fn units_held_at_once_are_the_units_held_one_by_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(dir.path());
        let key = |c: char| c.to_string().repeat(64);
        for pack in ["ab", "cd", "e"] {
            let units = cache.units();
            for c in pack.chars() {
                units.put(&key(c), &record::sample(false));
            }
            units.flush().expect("flush");
        }
        let units = cache.units();
        units.put(&key('f'), &record::sample(false));
        let lists: Vec<Vec<String>> = vec![
            vec![],
            "abcdef".chars().map(key).collect(),
            "fedcba".chars().map(key).collect(),
            "aecbdf".chars().map(key).collect(),
            "abc9".chars().map(key).collect(),
            "9".chars().map(key).collect(),
            vec!["not a key".to_owned()],
        ];
        for list in &lists {
            let one_by_one = list.iter().all(|k| units.holds(k));
            assert_eq!(
                units.holds_all(list.iter().map(String::as_str)),
                one_by_one,
                "{list:?}"
            );
        }
        assert!(units.holds_all(lists[1].iter().map(String::as_str)));
        assert!(!units.holds_all(lists[4].iter().map(String::as_str)));
    }

    #[test]
    fn a_sharing_cache_opens_its_unit_store_once_until_units_are_stored() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shared = Cache::new(dir.path()).sharing_units();
        let clone = shared.clone();
        let first = shared.units_for_compile();
        assert!(
            Arc::ptr_eq(&first, &clone.units_for_compile()),
            "one store for both sides"
        );
        clone.units_stored();
        let after = shared.units_for_compile();
        assert!(
            !Arc::ptr_eq(&first, &after),
            "opened again once units were stored"
        );
        assert!(Arc::ptr_eq(&after, &shared.units_for_compile()));
        let own = Cache::new(dir.path());
        assert!(!Arc::ptr_eq(
            &own.units_for_compile(),
            &own.units_for_compile()
        ));
    }

    /// An entry's parts: its units (held by the unit store), capacity, clusters and revision.
    struct Parts {
        units: Vec<String>,
        capacity: Capacity,
        clusters: Vec<(String, Vec<crate::lower::delta::Listed>)>,
        kinds: UnitKinds,
        revision: Revision,
    }

    impl Parts {
        fn write(&self, cache: &Cache, key: &str, against: Option<&str>) {
            let entry = EntryRef {
                platform_files: &["platform.yaml".to_owned()],
                diagnostics: &[],
                lowered: None,
                capacity: Some(&self.capacity),
                revision: Some(&self.revision),
                policy_clean: None,
                check: None,
            };
            let file: Arc<str> = Arc::from("platform.yaml");
            let clusters = ClustersRef {
                platform_file: Some(&file),
                clusters: self
                    .clusters
                    .iter()
                    .map(|(n, u)| (n.as_str(), &[][..], u.clone()))
                    .collect(),
            };
            cache
                .write_entry(
                    key,
                    &entry,
                    (&self.units, &[1]),
                    Some(clusters),
                    Some(&self.kinds),
                    against,
                )
                .expect("written");
        }
    }

    fn key(c: char) -> String {
        c.to_string().repeat(64)
    }

    /// What a plan compares and keys against, of an entry read back.
    fn read_back(cache: &Cache, key: &str) -> Option<String> {
        let e = cache.load(key)?;
        Some(format!(
            "{:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
            e.platform_files,
            e.diagnostics,
            e.capacity,
            e.clusters,
            e.unit_keys,
            e.kinds,
            e.noisy,
            e.revision
        ))
    }

    /// The entries a cache value keeps after reading them (for entries written against them) are
    /// bounded: reading more than [`REVISIONS_KEPT`] keeps no more than that.
    #[test]
    fn the_entries_kept_after_reading_are_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(dir.path());
        let parts = Parts {
            units: Vec::new(),
            capacity: Capacity::default(),
            clusters: Vec::new(),
            kinds: UnitKinds::default(),
            revision: Revision {
                graph: [1; 32],
                paths: [2; 32],
                digests: Vec::new(),
                projects: None,
            },
        };
        let mut most = 0;
        for i in 0..(REVISIONS_KEPT * 2 + 3) {
            let key = format!("{i:064x}");
            parts.write(&cache, &key, None);
            assert!(cache.whole(&key).is_some(), "read whole");
            most = most.max(cache.registry().len());
        }
        assert_eq!(most, REVISIONS_KEPT);
    }

    /// An entry written against one this process read is read back as the same entry written
    /// whole (by a process that read neither), holds only what differs, and is a miss once the
    /// other is gone; one is never written against an entry itself written against another, nor
    /// against one not read.
    #[test]
    fn an_entry_written_against_another_reads_back_as_written_whole() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cache = Cache::new(dir.path());
        let store = cache.units();
        for k in "abcdefgh".chars() {
            store.put(&key(k), &record::sample(false));
        }
        store.flush().expect("flush");
        let mut capacity = Capacity::default();
        capacity.clusters.insert("prod".into(), Default::default());
        let base = Parts {
            units: ["a", "b", "c"]
                .iter()
                .map(|k| key(k.chars().next().unwrap_or('a')))
                .collect(),
            capacity,
            clusters: vec![(
                "prod".into(),
                vec![(0, 2, false), (1, 2, false), (2, 2, false)],
            )],
            kinds: UnitKinds::of(&vec![vec!["Namespace".to_owned()]; 3]),
            revision: Revision {
                graph: [1; 32],
                paths: [2; 32],
                digests: (0..40u8).map(|b| [b; 32]).collect(),
                projects: Some((0..30u8).map(|b| [b | 0x80; 32]).collect()),
            },
        };
        let (k_base, k_head, k_whole) = (key('1'), key('2'), key('3'));
        base.write(&cache, &k_base, None);
        let mut head = Parts {
            units: [key('a'), key('d'), key('c'), key('e')].to_vec(),
            ..base
        };
        head.revision.digests[7] = [0xee; 32];
        head.revision.digests.push([0xff; 32]);
        if let Some(p) = head.revision.projects.as_mut() {
            p[3] = [0xdd; 32];
        }
        // Not read by this process: written whole.
        head.write(&cache, &k_head, Some(&k_base));
        let whole_size = std::fs::metadata(cache.path(&k_head))
            .expect("written")
            .len();
        assert!(read_back(&cache, &k_base).is_some());
        head.write(&cache, &k_head, Some(&k_base));
        let text = std::fs::read_to_string(cache.path(&k_head)).expect("written");
        assert!(text.contains("\"against\""), "{text}");
        assert!(
            (text.len() as u64) < whole_size / 2,
            "{} of {whole_size}",
            text.len()
        );
        let pinned = std::fs::read_to_string(cache.path(&k_head).with_extension("units"));
        assert_eq!(pinned.expect("list"), format!("{}\n{}", key('d'), key('e')));
        head.write(&cache, &k_whole, None);
        let fresh = Cache::new(dir.path());
        let got = read_back(&fresh, &k_head);
        assert!(got.is_some());
        assert_eq!(got, read_back(&fresh, &k_whole));
        // Changed capacity and clusters are written, and read back.
        let mut other = Parts {
            clusters: vec![("prod".into(), vec![(0, 2, false), (2, 2, true)])],
            ..head
        };
        other
            .capacity
            .clusters
            .insert("dev".into(), Default::default());
        // A head without its projects' digests (none written) beside a base with them.
        other.revision.projects = None;
        let (k_other, k_other_whole) = (key('4'), key('5'));
        other.write(&cache, &k_other, Some(&k_base));
        other.write(&cache, &k_other_whole, None);
        let fresh = Cache::new(dir.path());
        assert!(
            std::fs::read_to_string(cache.path(&k_other))
                .expect("w")
                .contains("against")
        );
        assert_eq!(
            read_back(&fresh, &k_other),
            read_back(&fresh, &k_other_whole)
        );
        // Never against an entry written against another.
        assert!(read_back(&cache, &k_head).is_some());
        other.write(&cache, &k_other, Some(&k_head));
        let text = std::fs::read_to_string(cache.path(&k_other)).expect("written");
        assert!(!text.contains("against"), "{text}");
        // The entry written against is gone: a miss.
        std::fs::remove_file(cache.path(&k_base)).expect("removed");
        assert_eq!(read_back(&Cache::new(dir.path()), &k_head), None);
        // A damaged reference is a miss, not a panic.
        let damaged = std::fs::read_to_string(cache.path(&k_head))
            .expect("read")
            .replace(&k_base, "../x");
        std::fs::write(cache.path(&k_head), damaged).expect("write");
        assert_eq!(read_back(&Cache::new(dir.path()), &k_head), None);
    }
}
