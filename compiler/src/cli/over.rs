//! A whole build written over the revision its output holds: when the output index names the
//! revision it was written for ([`OutIndex::revision`]), the output is as that build left it
//! ([`OutIndex::intact`]) and the cache still has the revision, the build is lowered against
//! its units ([`crate::lower::delta`]), and only the objects of the units that differ are
//! rendered (but those the replaced units held exactly), their lock entries written into the
//! lock files as they are ([`crate::emit::splice_lock`]) — the kustomization and every other
//! file stay as they are (the fresh units hold the keys the replaced ones held). Anything else
//! is written as before ([`super::build`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::out_dir::{OutIndex, update_in_place};
use crate::emit::Tree;
use crate::lower::delta::Delta;

/// The output's index, read beside the compile, and when the output is as the revision it
/// names left it, its lock files' texts (by path).
pub(super) struct Opened {
    pub index: OutIndex,
    pub locks: Option<BTreeMap<String, String>>,
    /// How long reading the index, showing the output intact and reading the revision's
    /// entry took (beside the compile).
    pub took: Vec<(&'static str, std::time::Duration)>,
}

/// Read the index of the output `target` kept in `cache`; with a `promise` (a whole build),
/// also show the output intact and give the revision's units to the compile waiting for them
/// (`None` when there is nothing to build over).
fn open(
    cache: &crate::cache::Cache,
    target: &Path,
    promise: Option<crate::options::BasePromise>,
) -> Opened {
    let mut took = Vec::new();
    // The revision's entry first (it opens the unit store, which the compile then shares);
    // its units are given once the index shows the output can be intact, before every file
    // is looked at (which takes a while at scale and nearly always holds: when it does not,
    // the build is compiled again, whole).
    let clock = std::time::Instant::now();
    let revision = promise
        .as_ref()
        .and_then(|_| OutIndex::peek_revision(cache.dir(), target));
    let entry = revision.as_deref().and_then(|r| cache.load(r));
    let capacity = entry.as_ref().and_then(|e| e.capacity.clone());
    let units = entry.and_then(|e| e.base_units());
    took.push(("base entry (beside)", clock.elapsed()));
    let clock = std::time::Instant::now();
    let index = OutIndex::open(Some(cache.dir()), target);
    took.push(("out index (beside)", clock.elapsed()));
    let locks = match (promise, units) {
        (Some(promise), Some(units)) if index.revision() == revision.as_deref() => {
            let clock = std::time::Instant::now();
            let locks = index.intact(|likely| promise.keep_with(likely.then_some(units), capacity));
            took.push(("out intact (beside)", clock.elapsed()));
            locks
        }
        _ => None,
    };
    if locks.is_none() {
        // Written as before: its files are compared with the recorded ones.
        index.decode_now();
    }
    Opened { index, locks, took }
}

/// [`open`] on a thread of its own, its work on a thread pool of its own: the global pool's
/// threads are the compile's, and a compile waiting on a task queued behind the output's
/// (tens of milliseconds each, at scale) would wait for both (measured at 10,000 projects:
/// 0.59 → 0.55 s the median `build1`).
pub(super) fn open_beside(
    cache: crate::cache::Cache,
    target: PathBuf,
    promise: Option<crate::options::BasePromise>,
) -> std::thread::JoinHandle<Opened> {
    std::thread::spawn(move || crate::cache::on_own_pool(|| open(&cache, &target, promise)))
}

/// What a build over its output writes: the changed files (objects rendered, lock files
/// spliced) and their content ids.
pub(super) struct Prepared {
    texts: Tree,
    ids: BTreeMap<String, String>,
    /// The build's objects and clusters (for the closing line).
    pub objects: usize,
    pub clusters: usize,
}

/// Render what `delta` changes in an output holding `locks` (the lock files of the revision
/// it was lowered against); `None` when a lock file cannot take its fresh entries (then the
/// build is compiled and written whole).
pub(super) fn prepare(
    delta: &Delta,
    locks: &BTreeMap<String, String>,
    target: &Path,
) -> Option<Prepared> {
    use rayon::prelude::*;
    let mut prepared = Prepared {
        texts: Tree::new(),
        ids: BTreeMap::new(),
        objects: delta
            .clusters
            .iter()
            .flat_map(|(_, units)| units.iter().map(|&(_, n, _)| n as usize))
            .sum(),
        clusters: delta.fresh.clusters.len(),
    };
    for (cluster, out) in &delta.fresh.clusters {
        // The objects the replaced units held exactly are in the output as they are.
        let unchanged = delta.unchanged.get(cluster);
        let manifests: Vec<&crate::lower::Manifest> = out
            .manifests
            .iter()
            .enumerate()
            .filter(|(i, _)| unchanged.is_none_or(|u| u.get(*i) != Some(&true)))
            .map(|(_, m)| m)
            .collect();
        if manifests.is_empty() {
            continue;
        }
        let rendered: Vec<(String, String, String)> = manifests
            .par_iter()
            .map(|m| {
                let path = format!("{cluster}/{}", crate::emit::object_path(&m.key));
                let (id, text) = m.object.sha_and_yaml(|_| true);
                (path, id.to_owned(), text.unwrap_or_default())
            })
            .collect();
        let lock = format!("{cluster}/plinth.lock.json");
        let changed: Vec<(&crate::lower::Manifest, &str)> = manifests
            .iter()
            .zip(&rendered)
            .map(|(m, (_, id, _))| (*m, id.as_str()))
            .collect();
        let old = locks.get(&lock)?;
        // The parts holding a changed entry are read (each checked against the sha256 the
        // lock file lists for it).
        let part = |p: &str| std::fs::read_to_string(target.join(cluster).join(p)).ok();
        let spliced = crate::emit::splice_lock(old, &part, cluster, &changed, &out.approvals)?;
        for (path, text, sha) in spliced.parts {
            let path = format!("{cluster}/{path}");
            prepared.ids.insert(path.clone(), sha);
            prepared.texts.insert(path, text);
        }
        // A lock file whose parts are as they were is left as it is.
        if let std::borrow::Cow::Owned(new) = spliced.top {
            prepared
                .ids
                .insert(lock.clone(), crate::emit::large_text_id(&new));
            prepared.texts.insert(lock, new);
        }
        for (path, id, text) in rendered {
            prepared.ids.insert(path.clone(), id);
            prepared.texts.insert(path, text);
        }
    }
    Some(prepared)
}

/// Write `prepared` into the output `target` (the files whose bytes differ, lock files last)
/// and record it in the index as the build of `revision`; the stages' timings are added.
pub(super) fn write(
    target: &Path,
    (prepared, index, locks): (Prepared, OutIndex, &BTreeMap<String, String>),
    revision: &str,
    timings: &mut Vec<(&'static str, std::time::Duration)>,
) -> anyhow::Result<PathBuf> {
    use rayon::prelude::*;
    let clock = std::time::Instant::now();
    // A lock file in `texts` differs from the one on disk (its text is known).
    let changed: Vec<String> = prepared
        .texts
        .par_iter()
        .filter(|(p, text)| {
            locks.contains_key(*p)
                || !std::fs::read(target.join(p)).is_ok_and(|b| b == text.as_bytes())
        })
        .map(|(p, _)| p.clone())
        .collect();
    update_in_place(target, &prepared.texts, &changed, &[]).map_err(|e| {
        anyhow::Error::new(e).context(format!("cannot update `{}`", target.display()))
    })?;
    timings.push(("update", clock.elapsed()));
    let clock = std::time::Instant::now();
    let entries: Vec<(&str, &str, &str)> = prepared
        .texts
        .iter()
        .filter_map(|(p, t)| Some((p.as_str(), prepared.ids.get(p)?.as_str(), t.as_str())))
        .collect();
    index.record_changed(&entries, revision);
    timings.push(("index", clock.elapsed()));
    Ok(target.to_path_buf())
}
