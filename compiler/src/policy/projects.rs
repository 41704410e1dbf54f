//! Every project's entry of the policies' `data.plinth.resolved.projects` (placement,
//! allocations, datasets, members, rollouts), and its digests ([`ProjectDigests`]): what
//! the memo's names take of the whole map, kept with a revision so that a revision compiled
//! against it digests again only the entries an edit reaches.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::output::hex;
use crate::specs::Specs;

/// What refers to each project, gathered in one pass over the specs (not once per project).
#[derive(Default)]
pub(super) struct ByProject<'s> {
    /// Project → its allocations, in pool order: (pool, allocation).
    allocations: ProjectMap<'s, (&'s GpuQuotaObject, &'s crate::model::gpu::Allocation)>,
    /// Project → the datasets granted to it, in dataset order, with the mode of its first grant.
    datasets: ProjectMap<'s, (&'s DatasetObject, &'s str)>,
    /// The global datasets, read-only to every project, in dataset order.
    global: Vec<&'s DatasetObject>,
    rollouts: ProjectMap<'s, &'s str>,
}

type GpuQuotaObject = crate::specs::Object<crate::model::GpuQuotaSpec>;
type DatasetObject = crate::specs::Object<crate::model::DatasetSpec>;
/// Per project, what refers to it (references only: each project's entry is built once, by
/// [`project_data`], not built here and copied there).
type ProjectMap<'s, T> = std::collections::HashMap<&'s str, Vec<T>, foldhash::fast::RandomState>;

impl<'s> ByProject<'s> {
    pub(super) fn of(specs: &'s Specs) -> ByProject<'s> {
        ByProject::of_only(specs, None)
    }

    /// [`ByProject::of`] for the entries of the projects `only` names (every project when
    /// `None`; the global datasets in any case).
    fn of_only(specs: &'s Specs, only: Option<&BTreeSet<&str>>) -> ByProject<'s> {
        let wanted = |project: &str| only.is_none_or(|o| o.contains(project));
        let mut by = ByProject::default();
        for q in specs.gpu_quotas.values() {
            for a in q.spec.allocations.iter().filter(|a| wanted(&a.project)) {
                by.allocations
                    .entry(a.project.as_str())
                    .or_default()
                    .push((q, a));
            }
        }
        for r in specs.rollouts.values().filter(|r| wanted(&r.spec.project)) {
            by.rollouts
                .entry(r.spec.project.as_str())
                .or_default()
                .push(r.name());
        }
        for d in specs.datasets.values() {
            let mut seen = BTreeSet::new();
            // A project's first grant decides its mode.
            for a in d
                .spec
                .access
                .iter()
                .filter(|a| seen.insert(a.project.as_str()))
                .filter(|a| wanted(&a.project))
            {
                by.datasets
                    .entry(a.project.as_str())
                    .or_default()
                    .push((d, a.mode.as_str()));
            }
            if d.spec.global {
                by.global.push(d);
            }
        }
        by
    }

    /// A project's allocations, in pool order.
    fn allocations(&self, name: &str) -> Vec<EntryAllocation<'s>> {
        let of = self.allocations.get(name).map_or(&[][..], Vec::as_slice);
        of.iter()
            .map(|(q, a)| EntryAllocation {
                pool: q.name(),
                resource_name: &q.spec.pool.resource_name,
                model: q.spec.pool.model.as_deref(),
                gpu: a.gpu,
                borrowing_limit: a.borrowing_limit,
            })
            .collect()
    }

    /// The datasets a project may read, in dataset order: with its grant's mode, else
    /// read-only when the dataset is global.
    fn datasets(&self, name: &str) -> Vec<EntryDataset<'s>> {
        let entry = |d: &'s DatasetObject, mode: &'s str| EntryDataset {
            name: d.name(),
            mode,
            sensitivity: d.spec.sensitivity.as_str(),
            global: d.spec.global,
        };
        let granted = self.datasets.get(name).map_or(&[][..], Vec::as_slice);
        let (mut g, mut o) = (granted.iter().peekable(), self.global.iter().peekable());
        let mut out = Vec::with_capacity(granted.len() + self.global.len());
        loop {
            match (g.peek(), o.peek()) {
                (Some(a), Some(b)) if a.0.name() == b.name() => {
                    out.push(entry(a.0, a.1));
                    g.next();
                    o.next();
                }
                (Some(a), Some(b)) if a.0.name() < b.name() => {
                    out.extend(g.next().map(|&(d, mode)| entry(d, mode)));
                }
                (Some(_), Some(_)) | (None, Some(_)) => {
                    out.extend(o.next().map(|&d| entry(d, "read-only")));
                }
                (Some(_), None) => out.extend(g.next().map(|&(d, mode)| entry(d, mode))),
                (None, None) => return out,
            }
        }
    }
}

/// A project's entry in `data.plinth.resolved.projects`: placement, allocations, datasets,
/// members and rollouts.
fn project_data(
    specs: &Specs,
    by: &ByProject<'_>,
    name: &str,
    p: &crate::specs::Object<crate::model::ProjectSpec>,
) -> Value {
    serde_json::to_value(Entry::of(specs, by, name, p)).unwrap_or(Value::Null)
}

/// A project's entry ([`project_data`]) borrowed from the specs: serialised as the entry's
/// value is (it is made from this), so the digest of every entry is had without building them.
#[derive(serde::Serialize)]
struct Entry<'s> {
    clusters: Vec<&'s str>,
    production: bool,
    allocations: Vec<EntryAllocation<'s>>,
    #[serde(rename = "gpuTotal")]
    gpu_total: u64,
    datasets: Vec<EntryDataset<'s>>,
    members: Vec<EntryMember<'s>>,
    rollouts: Vec<&'s str>,
}

#[derive(serde::Serialize)]
struct EntryAllocation<'s> {
    pool: &'s str,
    #[serde(rename = "resourceName")]
    resource_name: &'s str,
    model: Option<&'s str>,
    gpu: u32,
    #[serde(rename = "borrowingLimit")]
    borrowing_limit: Option<u32>,
}

#[derive(serde::Serialize)]
struct EntryDataset<'s> {
    name: &'s str,
    mode: &'s str,
    sensitivity: &'s str,
    global: bool,
}

#[derive(serde::Serialize)]
#[serde(untagged)]
enum EntryMember<'s> {
    User {
        user: &'s str,
        role: &'s str,
    },
    Group {
        group: Option<&'s str>,
        role: &'s str,
    },
}

impl<'s> Entry<'s> {
    fn of(
        specs: &'s Specs,
        by: &ByProject<'s>,
        name: &str,
        p: &'s crate::specs::Object<crate::model::ProjectSpec>,
    ) -> Entry<'s> {
        let clusters = crate::lower::Ctx::placement(specs, &p.spec);
        let allocations = by.allocations(name);
        let members: Vec<EntryMember<'s>> = p
            .spec
            .owners
            .iter()
            .map(|o| EntryMember::User {
                user: o,
                role: "admin",
            })
            .chain(p.spec.members.iter().map(|m| match (&m.user, &m.group) {
                (Some(u), _) => EntryMember::User {
                    user: u,
                    role: m.role.as_str(),
                },
                (None, g) => EntryMember::Group {
                    group: g.as_deref(),
                    role: m.role.as_str(),
                },
            }))
            .collect();
        let production = specs.platform.as_ref().is_some_and(|pl| {
            pl.spec
                .clusters
                .iter()
                .any(|c| c.production && clusters.contains(&c.name.as_str()))
        });
        // Whole GPUs only: MIG slices are not comparable with devices.
        let gpu_total = allocations
            .iter()
            .filter(|a| a.resource_name.ends_with("/gpu"))
            .map(|a| u64::from(a.gpu))
            .sum::<u64>();
        Entry {
            clusters,
            production,
            allocations,
            gpu_total,
            datasets: by.datasets(name),
            members,
            rollouts: by.rollouts.get(name).cloned().unwrap_or_default(),
        }
    }
}

/// Where every project's entry is in `data`.
pub(super) const PROJECTS: [&str; 3] = ["plinth", "resolved", "projects"];

/// The entries of the projects `only` names (every project when `None`), in name order.
pub(super) fn project_entries(
    specs: &Specs,
    by: &ByProject<'_>,
    only: Option<&BTreeSet<String>>,
) -> serde_json::Map<String, Value> {
    use rayon::prelude::*;
    // Each project's entry on its own (ten thousand of them), collected in name order.
    let entries: Vec<(String, Value)> = specs
        .projects
        .par_iter()
        .filter(|(name, _)| only.is_none_or(|o| o.contains(name.as_str())))
        .map(|(name, p)| (name.clone(), project_data(specs, by, name, p)))
        .collect();
    entries.into_iter().collect()
}

/// The digest of every project's entry, in name order ([`ProjectDigests::of`]): the SHA-256 of
/// the entry as `serde_json` writes it. The memo's names take the whole map's
/// ([`ProjectDigests::whole`]), which a revision compiled against this one makes again from
/// these but for the entries an edit reaches.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProjectDigests(Vec<[u8; 32]>);

impl ProjectDigests {
    /// As stored: in the projects' name order.
    pub fn into_stored(self) -> Vec<[u8; 32]> {
        self.0
    }

    /// Every project's entry of `specs` digested; against `base` — the digests of a revision
    /// with the same view graph ([`crate::lower::rekey::graph`]), `changed` the spec files
    /// that differ from its — only the entries an edit reaches ([`reached`]), the others the
    /// base's (and only what refers to those gathered). Debug builds digest every entry as
    /// well and panic on a difference.
    pub fn of(specs: &Specs, base: Option<Base<'_>>) -> ProjectDigests {
        let taken = base
            .filter(|(b, _)| b.len() == specs.projects.len())
            .and_then(|(b, changed)| Some((b, reached(specs, changed)?)));
        let Some((base, reached)) = taken else {
            return ProjectDigests::with(specs, &ByProject::of(specs));
        };
        let by = ByProject::of_only(specs, Some(&reached));
        let made = ProjectDigests(
            specs
                .projects
                .iter()
                .zip(base)
                .map(|((name, p), was)| match reached.contains(name.as_str()) {
                    true => entry_digest(specs, &by, name, p),
                    false => *was,
                })
                .collect(),
        );
        #[cfg(debug_assertions)]
        assert_eq!(
            made,
            ProjectDigests::with(specs, &ByProject::of(specs)),
            "project digests"
        );
        made
    }

    /// Every project's entry digested, from what refers to each (`by`, of every project).
    pub(super) fn with(specs: &Specs, by: &ByProject<'_>) -> ProjectDigests {
        use rayon::prelude::*;
        let projects: Vec<(&String, &ProjectObject)> = specs.projects.iter().collect();
        ProjectDigests(
            projects
                .par_iter()
                .map(|(name, p)| entry_digest(specs, by, name, p))
                .collect(),
        )
    }

    /// The digest of the whole map, [`ProjectDigests::whole_of`] its names and these.
    pub(super) fn whole(&self, specs: &Specs) -> String {
        whole_of(specs.projects.keys().map(String::as_str).zip(&self.0))
    }
}

type ProjectObject = crate::specs::Object<crate::model::ProjectSpec>;

/// A base's digests (in its projects' name order) and the spec files changed since it.
pub type Base<'a> = (&'a [[u8; 32]], &'a crate::load::Changed);

/// The SHA-256 of a project's entry as `serde_json` writes it.
fn entry_digest(specs: &Specs, by: &ByProject<'_>, name: &str, p: &ProjectObject) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let _ = serde_json::to_writer(HashWriter(&mut h), &Entry::of(specs, by, name, p));
    h.finalize().into()
}

/// The digest of a map of entries by their names and digests, in name order: the SHA-256 of
/// each name, a NUL and its entry's digest (a name holds no NUL, a digest is 32 bytes).
fn whole_of<'a>(entries: impl Iterator<Item = (&'a str, &'a [u8; 32])>) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (name, digest) in entries {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(digest);
    }
    hex(&h.finalize())
}

/// The digest [`ProjectDigests::whole`] gives of the entries `map` holds (the data made with
/// every project's entry, in name order), when it is a map.
pub(super) fn whole_of_map(map: &Value) -> Option<String> {
    use sha2::Digest;
    let map = map.as_object()?;
    let digests: Vec<[u8; 32]> = map
        .values()
        .map(|v| {
            let mut h = sha2::Sha256::new();
            let _ = serde_json::to_writer(HashWriter(&mut h), v);
            h.finalize().into()
        })
        .collect();
    Some(whole_of(map.keys().map(String::as_str).zip(&digests)))
}

/// The projects whose entry an edit of the `changed` spec files can change, for a revision
/// with the same view graph as the one it is compared with (so no spec was added, removed or
/// renamed, no grant or allocation moved to another project, no dataset made global or not):
/// a changed project's own; a changed pool's allocated projects (an allocation's fields); a
/// changed dataset's granted projects (its sensitivity); a changed rollout's project. `None`
/// — every entry — when the Platform (placement, production) or a global dataset changed.
fn reached<'s>(specs: &'s Specs, changed: &crate::load::Changed) -> Option<BTreeSet<&'s str>> {
    if specs
        .platform
        .as_ref()
        .is_some_and(|p| p.in_changed(changed))
    {
        return None;
    }
    let mut reached: BTreeSet<&str> =
        crate::specs::changed_names(&specs.projects, changed).collect();
    for q in specs.gpu_quotas.values().filter(|q| q.in_changed(changed)) {
        reached.extend(q.spec.allocations.iter().map(|a| a.project.as_str()));
    }
    for d in specs.datasets.values().filter(|d| d.in_changed(changed)) {
        if d.spec.global {
            return None;
        }
        reached.extend(d.spec.access.iter().map(|a| a.project.as_str()));
    }
    for r in specs.rollouts.values().filter(|r| r.in_changed(changed)) {
        reached.insert(r.spec.project.as_str());
    }
    Some(reached)
}

/// Writes into a hash.
pub(super) struct HashWriter<'h>(pub(super) &'h mut sha2::Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(self.0, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    use crate::generate::testing::{Files, file_with, specs_of};

    /// After edits of what projects' entries read (keeping every name, reference and file), the
    /// digests made against the base's equal the digests made whole, each edit reaching fewer
    /// than every entry; an edit of the Platform or of a global dataset reaches every entry.
    #[test]
    fn digests_against_a_base_equal_the_whole_ones() {
        let mut files: Files = crate::generate::platform(120, 2).into_iter().collect();
        // Whether a dataset is global is in the view graph: one is from the start.
        let global = file_with(&files, "datasets/", "sensitivity: internal");
        let text = files[&global].replace("spec:\n", "spec:\n  global: true\n");
        files.insert(global.clone(), text);
        let mut base = ProjectDigests::of(&specs_of(&files), None).into_stored();
        let project = file_with(&files, "projects/", "role: edit");
        let dataset = files
            .iter()
            .find(|(p, t)| p.starts_with("datasets/") && **p != global && t.contains("- project:"))
            .map(|(p, _)| p.clone())
            .unwrap();
        let pool = file_with(&files, "gpu/", "- project: ");
        let edits: [(&str, &str, &str, &str); 4] = [
            ("a member's role", &project, "role: edit", "role: view"),
            (
                "a dataset's sensitivity",
                &dataset,
                "sensitivity: internal",
                "sensitivity: pii",
            ),
            (
                "a pool's resource",
                &pool,
                "resourceName: nvidia.com/gpu",
                "resourceName: nvidia.com/mig-1g.10gb",
            ),
            (
                "lines moved",
                &project,
                "apiVersion:",
                "# moved\napiVersion:",
            ),
        ];
        for (what, path, from, to) in edits {
            assert!(files[path].contains(from), "{what}");
            let text = files[path].replacen(from, to, 1);
            files.insert(path.to_owned(), text);
            let specs = specs_of(&files);
            let changed = crate::load::Changed::from_iter([std::sync::Arc::from(path)]);
            let whole = ProjectDigests::of(&specs, None).into_stored();
            if what != "lines moved" {
                assert_ne!(whole, base, "{what}: the edit changes an entry");
            }
            let reached = reached(&specs, &changed).expect("some entries");
            assert!(reached.len() < specs.projects.len(), "{what}");
            // Made against the base (debug builds also compare with the whole inside).
            let taken = ProjectDigests::of(&specs, Some((&base, &changed)));
            assert_eq!(taken.into_stored(), whole, "{what}");
            base = whole;
        }
        let platform = file_with(&files, "plinth.yaml", "kind: Platform");
        for path in [platform, global] {
            let mut edited = files.clone();
            edited.insert(path.clone(), format!("# moved\n{}", files[&path]));
            let changed = crate::load::Changed::from_iter([std::sync::Arc::from(path.as_str())]);
            assert!(reached(&specs_of(&edited), &changed).is_none(), "{path}");
        }
    }
}
