//! Delta: a revision lowered against a stored revision's units, reading only the units that
//! differ.
//!
//! A plan's head mostly shares its units with its base: the same key is the same result
//! ([`super::units`]). Lowering the head against the base's stored units (a revision compiled
//! without any diagnostic) leaves the units whose keys the base holds *opaque* — not read,
//! not merged: their counts, approval flags and kinds come from the base — and reads or
//! lowers the others (*fresh*), and reads the base's units that the head no longer has
//! (*removed*). What the opaque units contribute to the aggregates is the base's, which holds
//! only when it can be shown without them; else [`lower_delta`] gives `None` and the head is
//! compiled whole:
//!
//! - *No new duplicate.* The fresh units' object keys are the removed units' (as multisets):
//!   the base had no duplicate, so no fresh key meets an opaque unit's.
//! - *The agent's part is the base's* (when the Platform installs the agent). Its key reads the
//!   identity and content hash of every RBAC object, the kinds of the others and the Platform
//!   file: the fresh units carry the same RBAC objects (key and hash) and kinds as the removed
//!   ones, and an opaque unit's key covers the Platform file's bytes, so the base's agent unit
//!   is the head's.
//! - *No finding on an opaque unit.* Lowering diagnostics are a function of the unit's key: a
//!   unit whose output held any in the base is read (as is one whose object carries an
//!   approval annotation, which a plan reads even unchanged); policy findings are checked by
//!   the caller ([`Delta::opaque`]: each unit's
//!   policy bundle must be in the memo, covering all its objects, with no finding).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::rekey::{self, Keyed, Revision};
use super::units::{self, Job, UnitOutput, UnitStore};
use crate::diag::Diagnostics;
use crate::load::Snapshot;
use crate::output::{ClusterOutput, Lowered, Manifest, ObjectKey, UnitRefs};
use crate::specs::Specs;

/// What a stored revision holds of its units: per cluster, its units in unit order (those
/// holding objects).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BaseUnits {
    pub clusters: BTreeMap<String, Vec<BaseUnit>>,
    /// Every unit's key and what taking them needs ([`super::rekey`]), when the entry kept it.
    pub keyed: Option<Arc<Keyed>>,
    /// What a policy evaluation found nothing in among the base's units and documents, when
    /// one is known.
    pub policy_clean: Option<Arc<BaseClean>>,
    /// The base's key in the cache (where a later evaluation's verdicts on it are kept).
    pub key: Option<String>,
    /// What the base's check found, per spec, when the entry kept it.
    pub check: Option<Arc<crate::check::record::Record>>,
}

/// What a policy evaluation found nothing in among a revision's inputs: per kind of input the
/// digest of the rules that apply (`crate::policy::Clean`), and what it did not read — the
/// revision's units (by key) and spec files (by path) that it does not cover. Its own
/// evaluation covers all of it; a later revision compiled against it, clean, covers the units
/// it shares and the files it did not change.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BaseClean {
    pub kinds: BTreeMap<String, String>,
    pub units: std::collections::BTreeSet<String>,
    pub files: std::collections::BTreeSet<String>,
}

/// One unit of a [`BaseUnits`].
#[derive(Debug, Clone, PartialEq)]
pub struct BaseUnit {
    pub key: String,
    /// Its objects (every one kept: the revision had no duplicate).
    pub objects: u32,
    /// One of its objects carries an approval annotation.
    pub approve: bool,
    /// Its output holds diagnostics.
    pub noisy: bool,
    /// The kinds of its objects, sorted, each once.
    pub kinds: Kinds,
}

/// The kinds of a unit's objects, sorted, each once (shared: most units of a spec kind have the
/// same ones).
pub type Kinds = std::sync::Arc<[String]>;

/// A unit as a cluster's entry lists it: `[unit number, objects, one carries an approval
/// annotation]`.
pub type Listed = (u32, u32, bool);

/// A revision lowered against a base's units ([`lower_delta`]).
#[derive(Debug)]
pub struct Delta {
    /// The fresh units' objects, per cluster in key order (every cluster present, with its
    /// approvals); its unit references number every unit, opaque ones included.
    pub fresh: Lowered,
    /// Per cluster, its units holding objects in unit order.
    pub clusters: Vec<(String, Vec<Listed>)>,
    /// Per unit (by number), the kinds of its objects, sorted, each once.
    pub kinds: Vec<Kinds>,
    /// The opaque units, by number.
    pub opaque: Vec<u32>,
    /// Per cluster, per object of `fresh` (in its order): whether a replaced unit held it
    /// exactly — the same content (its `sha256`) and origin —, so that its file and lock entry
    /// in an output written for the base are as they are.
    pub unchanged: BTreeMap<String, Vec<bool>>,
    /// What the revision's entry keeps for the next compile keyed against it.
    pub revision: Arc<Revision>,
    /// How many units took the base's key without being viewed ([`super::rekey`]).
    pub keys_taken: usize,
    /// The spec files and templates that differ from the base's, when both have the same
    /// files (what a policy evaluation may take from the base: [`BaseUnits::policy_clean`]).
    pub changed: Option<Arc<rekey::Changed>>,
    /// The key of the base's entry in the cache, when it has one (this revision's entry may be
    /// written against it).
    pub base: Option<String>,
}

impl Delta {
    /// Every unit's key, by number.
    pub fn keys(&self) -> &[String] {
        self.fresh.units.as_deref().map_or(&[], |r| &r.keys[..])
    }

    /// The opaque units: key, kinds and number of objects.
    pub fn opaque(&self) -> Vec<(&str, &[String], u32)> {
        // By unit number (every unit is numbered: a list, not a map).
        let mut counts = vec![0u32; self.keys().len()];
        for &(u, n, _) in self.clusters.iter().flat_map(|(_, units)| units) {
            if let Some(c) = usize::try_from(u).ok().and_then(|u| counts.get_mut(u)) {
                *c = n;
            }
        }
        self.opaque
            .iter()
            .filter_map(|&u| {
                let i = usize::try_from(u).ok()?;
                Some((
                    self.keys().get(i)?.as_str(),
                    &self.kinds.get(i)?[..],
                    counts.get(i).copied().unwrap_or(0),
                ))
            })
            .collect()
    }
}

/// The kinds of some objects, sorted, each once.
pub fn kinds_of<'m>(objects: impl Iterator<Item = &'m Manifest>) -> Kinds {
    let mut kinds: Vec<String> = objects.map(|m| m.key.kind.clone()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    kinds.into()
}

/// What the duplicates and the agent's part (`agent`: the cluster has one) read of some units'
/// objects: each key, with the content hash of RBAC objects when there is an agent, sorted.
fn footprint<'m>(
    objects: impl Iterator<Item = &'m Manifest>,
    agent: bool,
) -> Vec<(&'m ObjectKey, &'m str)> {
    let mut out: Vec<(&ObjectKey, &str)> = objects
        .map(|m| {
            let hash = if agent && units::reads_content(&m.key) {
                m.hash.as_str()
            } else {
                ""
            };
            (&m.key, hash)
        })
        .collect();
    out.sort_unstable();
    out
}

/// Per object of `fresh`, whether `replaced` holds it exactly: an object of the same key, content
/// and origin.
fn held_exactly<'m>(fresh: &[Manifest], replaced: impl Iterator<Item = &'m Manifest>) -> Vec<bool> {
    let was: HashMap<&ObjectKey, &Manifest> = replaced.map(|m| (&m.key, m)).collect();
    fresh
        .iter()
        .map(|m| {
            was.get(&m.key)
                .is_some_and(|w| w.origin == m.origin && w.object.sha() == m.object.sha())
        })
        .collect()
}

/// Maps and sets of unit keys (hashes already: a fast hasher).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;
type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;

/// One cluster's units sorted out against the base's.
struct Sorted<'j, 'b> {
    /// Its jobs in unit order, each with the base's unit of the same key.
    jobs: Vec<(&'j Job<'j>, Option<&'b BaseUnit>)>,
    /// The base's units not opaque (read: what the fresh units replace).
    removed: Vec<&'b BaseUnit>,
    /// The base's agent unit.
    agent: Option<&'b BaseUnit>,
}

/// Each cluster's jobs sorted out against the base's units (`None`: the base lacks a cluster,
/// or its agent unit cannot stand for the head's).
fn sort_out<'j, 'b>(
    clusters: &[crate::model::platform::Cluster],
    agent_on: bool,
    jobs: &'j [Job<'j>],
    base: &'b BaseUnits,
) -> Option<Vec<Sorted<'j, 'b>>> {
    let mut by_cluster: BTreeMap<&str, Vec<&Job<'_>>> = BTreeMap::new();
    for j in jobs {
        by_cluster
            .entry(j.cluster.name.as_str())
            .or_default()
            .push(j);
    }
    let mut sorted: Vec<Sorted<'_, '_>> = Vec::new();
    for cluster in clusters {
        let units = base.clusters.get(&cluster.name)?;
        let (agent, units) = match units.split_last() {
            Some((last, rest)) if agent_on => (Some(last), rest),
            None if agent_on => return None,
            _ => (None, &units[..]),
        };
        let js = by_cluster.remove(cluster.name.as_str()).unwrap_or_default();
        // A unit whose object carries an approval annotation is read (a plan reads those
        // objects even when unchanged), as is one whose output held diagnostics.
        if agent.is_some_and(|a| a.approve || a.noisy || js.iter().any(|j| j.key == a.key)) {
            return None;
        }
        let by_key: FastMap<&str, &BaseUnit> = units
            .iter()
            .filter(|u| !u.approve && !u.noisy)
            .map(|u| (u.key.as_str(), u))
            .collect();
        let jobs: Vec<(&Job<'_>, Option<&BaseUnit>)> = js
            .into_iter()
            .map(|j| (j, by_key.get(j.key.as_str()).copied()))
            .collect();
        let opaque: FastSet<&str> = jobs
            .iter()
            .filter(|(_, b)| b.is_some())
            .map(|(j, _)| j.key.as_str())
            .collect();
        sorted.push(Sorted {
            jobs,
            removed: units
                .iter()
                .filter(|u| !opaque.contains(u.key.as_str()))
                .collect(),
            agent,
        });
    }
    // An opaque unit's key covers the Platform file (the agent part's settings).
    let opaque = sorted
        .iter()
        .flat_map(|s| &s.jobs)
        .any(|(_, b)| b.is_some());
    (by_cluster.is_empty() && opaque).then_some(sorted)
}

/// The fresh units' outputs (read from `store` or lowered and offered to it), in the order of
/// `sorted`, and per cluster the removed units' outputs (`None`: one is not in the store).
#[allow(clippy::type_complexity)]
fn read(
    sorted: &[Sorted<'_, '_>],
    specs: &Specs,
    snapshot: &Snapshot,
    store: &dyn UnitStore,
) -> Option<(Vec<UnitOutput>, Vec<Vec<UnitOutput>>)> {
    use rayon::prelude::*;
    let templates = Arc::new(crate::template::TemplateCache::default());
    let fresh_jobs: Vec<&Job<'_>> = sorted
        .iter()
        .flat_map(|s| s.jobs.iter().filter(|(_, b)| b.is_none()).map(|(j, _)| *j))
        .collect();
    let fresh = fresh_jobs
        .par_iter()
        .map(|j| {
            store.get(&j.key).unwrap_or_else(|| {
                let out = units::run(j, specs, snapshot, &templates);
                store.put(&j.key, &out);
                out
            })
        })
        .collect();
    let removed = sorted
        .par_iter()
        .map(|s| s.removed.iter().map(|u| store.get(&u.key)).collect())
        .collect::<Vec<Option<Vec<_>>>>()
        .into_iter()
        .collect::<Option<_>>()?;
    Some((fresh, removed))
}

/// Lower `specs` against `base` ([module documentation](self)); `None` when the base's units
/// cannot stand for the opaque ones (then compile whole). Fresh units are read from `store`
/// or lowered and offered to it, as by [`super::lower_reusing`]. `since`: the revision of
/// `specs` against the base's, when already made.
pub fn lower_delta(
    specs: &Specs,
    snapshot: &Snapshot,
    salt: &str,
    store: &dyn UnitStore,
    (base, since): (&BaseUnits, Option<rekey::Since>),
) -> Option<(Delta, Diagnostics)> {
    let platform = specs.platform.as_ref()?;
    let agent_on = platform.spec.agent.as_ref().is_some_and(|a| a.enabled);
    let (jobs, revision, keys_taken, changed) = keyed_jobs(specs, snapshot, salt, (base, since));
    let sorted = sort_out(&platform.spec.clusters, agent_on, &jobs, base)?;
    let (fresh, removed) = read(&sorted, specs, snapshot, store)?;
    let mut fresh = fresh.into_iter();
    let mut diags = Diagnostics::new();
    let mut refs = UnitRefs::default();
    let mut delta = Delta {
        fresh: Lowered {
            platform_file: Some(platform.doc.file.clone()),
            ..Lowered::default()
        },
        clusters: Vec::new(),
        kinds: Vec::new(),
        opaque: Vec::new(),
        unchanged: BTreeMap::new(),
        revision: Arc::new(revision),
        keys_taken,
        changed,
        base: base.key.clone(),
    };
    for ((s, removed), cluster) in sorted.iter().zip(removed).zip(&platform.spec.clusters) {
        let mut listed: Vec<(u32, u32, bool)> = Vec::new();
        let mut objects: Vec<(u32, UnitOutput)> = Vec::new();
        for (job, b) in &s.jobs {
            let u = u32::try_from(refs.keys.len()).ok()?;
            refs.keys.push(job.key.clone());
            match b {
                Some(b) => {
                    listed.push((u, b.objects, b.approve));
                    delta.kinds.push(b.kinds.clone());
                    delta.opaque.push(u);
                }
                None => {
                    let out = fresh.next()?;
                    if !out.diagnostics.is_empty() {
                        refs.noisy.push(u);
                    }
                    let n = u32::try_from(out.objects.len()).ok()?;
                    if n > 0 {
                        listed.push((u, n, out.objects.iter().any(Manifest::approves)));
                    }
                    delta.kinds.push(kinds_of(out.objects.iter()));
                    objects.push((u, out));
                }
            }
        }
        // The fresh units carry what the removed ones did: the same keys (so no duplicate)
        // and RBAC objects (so the agent's part is the base's).
        let was = footprint(removed.iter().flat_map(|o| &o.objects), agent_on);
        let is = footprint(objects.iter().flat_map(|(_, o)| &o.objects), agent_on);
        if was != is {
            return None;
        }
        if let Some(a) = s.agent {
            let u = u32::try_from(refs.keys.len()).ok()?;
            refs.keys.push(a.key.clone());
            listed.push((u, a.objects, a.approve));
            delta.kinds.push(a.kinds.clone());
            delta.opaque.push(u);
        }
        let mut placed: Vec<((u32, u32), Manifest)> = Vec::new();
        for (u, out) in objects {
            diags.extend(out.diagnostics);
            for (i, m) in out.objects.into_iter().enumerate() {
                placed.push(((u, u32::try_from(i).ok()?), m));
            }
        }
        placed.sort_by(|a, b| a.1.key.cmp(&b.1.key));
        let (places, manifests): (Vec<(u32, u32)>, Vec<Manifest>) = placed.into_iter().unzip();
        let unchanged = held_exactly(&manifests, removed.iter().flat_map(|o| &o.objects));
        delta.unchanged.insert(cluster.name.clone(), unchanged);
        refs.places.insert(cluster.name.clone(), places);
        delta.fresh.clusters.insert(
            cluster.name.clone(),
            ClusterOutput {
                manifests,
                approvals: units::approvals(platform, cluster),
            },
        );
        delta.clusters.push((cluster.name.clone(), listed));
    }
    delta.fresh.units = Some(Arc::new(refs));
    Some((delta, diags))
}

/// The units of `specs` with their keys: taken from the base's where its views are the same
/// ([`rekey`]), else each unit viewed and keyed. With the revision of `specs`, how many keys
/// were taken and the files that differ from the base's (when both have the same files).
fn keyed_jobs<'s>(
    specs: &'s Specs,
    snapshot: &Snapshot,
    salt: &'s str,
    (base, since): (&BaseUnits, Option<rekey::Since>),
) -> (Vec<Job<'s>>, Revision, usize, Option<Arc<rekey::Changed>>) {
    let Some(keyed) = &base.keyed else {
        let jobs = units::jobs(specs, snapshot, Some(salt));
        let revision = since.map_or_else(|| Revision::of(specs, snapshot), |s| s.revision);
        return (jobs, revision, 0, None);
    };
    let against = rekey::jobs_against(specs, snapshot, salt, keyed, since);
    let (revision, changed) = (against.revision, against.changed.map(Arc::new));
    let Some((jobs, taken)) = against.jobs else {
        let jobs = units::jobs(specs, snapshot, Some(salt));
        return (jobs, revision, 0, changed);
    };
    // Debug builds (every test) key every unit too: a key taken that differs is an edge
    // `rekey` missed.
    #[cfg(debug_assertions)]
    {
        let all = units::jobs(specs, snapshot, Some(salt));
        assert_eq!(jobs.len(), all.len(), "the units differ (lower/rekey.rs)");
        if let Some((taken, own)) = jobs.iter().zip(&all).find(|(a, b)| a.key != b.key) {
            panic!(
                "the key {} of {} taken from the base differs from its own {} (lower/rekey.rs)",
                taken.key,
                own.describe(),
                own.key
            );
        }
    }
    (jobs, revision, taken, changed)
}
