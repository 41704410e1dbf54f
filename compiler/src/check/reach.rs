//! Which rules of the check an edit can reach ([`Reach`]): the inverse of what each rule reads
//! beyond its own spec, for a revision checked against one whose check is known
//! ([`super::record::Record`]).
//!
//! It is asked only when the two revisions have the same files and the same view graph
//! ([`crate::lower::rekey::graph`]: every spec's name and file, a project's clusters, a
//! dataset's grants and whether it is global, a pool's allocations and instance-type names, a
//! rollout's and an App's project, pool and instance type, the Platform's bytes), and neither
//! has a document that did not type. So no spec was added, removed or renamed, no reference
//! changed, and a hint listing the names of a kind or the instance types lists the same. What
//! still changes is the content of the specs in the changed files, and where every line of
//! those files is; each rule's reads of another spec (the table of docs/benchmarks.md, "The
//! check's edges") then give who reads what changed:
//!
//! | changed | rules that read it |
//! |---|---|
//! | a Project | its own; the datasets granting it and every global dataset (the projects' placement and cloud identity); the pools allocating to it (placement, for overcommit); its rollouts and Apps (its instance types, pod security, deployments and where they are written) |
//! | a Dataset | its own; the datasets sharing its mount path (one reports in the other's document); every App (which datasets its project may mount) |
//! | a ModelRollout | its own; the rollouts of its project (how many it has); the GPU capacity rollouts ask for |
//! | an App | its own |
//! | the Platform or a GpuQuota | everything (not taken: the revision is checked whole) |
//!
//! And a spec whose diagnostics point into a changed file (a related label) is checked again,
//! for where the lines are now. A missed edge is a stale diagnostic: debug builds check every
//! revision checked this way whole as well and panic on a difference.

use std::collections::HashSet;

use super::record::Record;
use crate::diag::Diagnostic;
use crate::model::Kind;
use crate::specs::{Specs, changed_names};

/// The specs whose rules run again (by kind and name), and whether the rollouts' GPU capacity
/// is computed again; every other spec's diagnostics are the record's.
#[derive(Debug, Default)]
pub struct Reach<'s> {
    /// Asked of every spec (a fast hasher).
    specs: HashSet<(Kind, &'s str), foldhash::fast::RandomState>,
    pub capacity: bool,
}

impl<'s> Reach<'s> {
    /// Whether the rules of `kind`/`name` run again.
    pub fn has(&self, kind: Kind, name: &str) -> bool {
        self.specs.contains(&(kind, name))
    }

    fn add(&mut self, kind: Kind, name: &'s str) {
        self.specs.insert((kind, name));
    }
}

/// What an edit reaches, `changed` being the spec files that differ from the revision
/// `record` was made of; `None` when it changes what every rule reads (the Platform or a
/// pool): then the revision is checked whole.
pub fn of<'s>(
    specs: &'s Specs,
    record: &Record,
    changed: &crate::load::Changed,
) -> Option<Reach<'s>> {
    if specs
        .platform
        .as_ref()
        .is_some_and(|p| p.in_changed(changed))
        || specs.gpu_quotas.values().any(|q| q.in_changed(changed))
    {
        return None;
    }
    let mut reach = Reach::default();
    let projects: HashSet<&str> = changed_names(&specs.projects, changed).collect();
    let datasets: HashSet<&str> = changed_names(&specs.datasets, changed).collect();
    let rollouts: HashSet<&str> = changed_names(&specs.rollouts, changed).collect();
    let apps: HashSet<&str> = changed_names(&specs.apps, changed).collect();
    for p in &projects {
        reach.add(Kind::Project, p);
    }
    // Datasets: changed, granting a changed project, global while a project changed, or
    // sharing a changed dataset's mount path.
    let paths: HashSet<String> = datasets
        .iter()
        .filter_map(|n| specs.datasets.get(*n))
        .map(Specs::mount_path)
        .collect();
    for (name, d) in &specs.datasets {
        if datasets.contains(name.as_str())
            || (d.spec.global && !projects.is_empty())
            || d.spec
                .access
                .iter()
                .any(|g| projects.contains(g.project.as_str()))
            || (!paths.is_empty() && paths.contains(&Specs::mount_path(d)))
        {
            reach.add(Kind::Dataset, name);
        }
    }
    for (name, q) in &specs.gpu_quotas {
        if q.spec
            .allocations
            .iter()
            .any(|a| projects.contains(a.project.as_str()))
        {
            reach.add(Kind::GpuQuota, name);
        }
    }
    // Rollouts: changed, of a changed project, or of the project of a changed rollout.
    let rollout_projects: HashSet<&str> = rollouts
        .iter()
        .filter_map(|n| specs.rollouts.get(*n))
        .map(|r| r.spec.project.as_str())
        .collect();
    for (name, r) in &specs.rollouts {
        let project = r.spec.project.as_str();
        if rollouts.contains(name.as_str())
            || projects.contains(project)
            || rollout_projects.contains(project)
        {
            reach.add(Kind::ModelRollout, name);
        }
    }
    reach.capacity = !rollouts.is_empty();
    for (name, a) in &specs.apps {
        if apps.contains(name.as_str())
            || projects.contains(a.spec.project.as_str())
            || !datasets.is_empty()
        {
            reach.add(Kind::App, name);
        }
    }
    // Diagnostics pointing into a changed file: checked again for where its lines are now.
    let points_into = |d: &Diagnostic| {
        d.primary
            .iter()
            .chain(&d.related)
            .any(|l| changed.contains(&*l.span.file))
    };
    if record.whole.iter().any(points_into) {
        return None;
    }
    reach.capacity |= record.capacity.iter().any(points_into);
    for (kind, name, found) in &record.specs {
        if found.iter().any(points_into) {
            let name = spec_name(specs, *kind, name)?;
            reach.add(*kind, name);
        }
    }
    Some(reach)
}

/// The name of `kind`/`name` as `specs` holds it; `None` when it holds none (the record is
/// not of a revision with the same specs).
fn spec_name<'s>(specs: &'s Specs, kind: Kind, name: &str) -> Option<&'s str> {
    let found = match kind {
        Kind::Platform => None,
        Kind::Project => specs.projects.get_key_value(name).map(|(k, _)| k),
        Kind::Dataset => specs.datasets.get_key_value(name).map(|(k, _)| k),
        Kind::GpuQuota => specs.gpu_quotas.get_key_value(name).map(|(k, _)| k),
        Kind::ModelRollout => specs.rollouts.get_key_value(name).map(|(k, _)| k),
        Kind::App => specs.apps.get_key_value(name).map(|(k, _)| k),
    };
    found.map(String::as_str)
}
