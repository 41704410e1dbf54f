//! Check: cross-object semantics over the typed model.
//!
//! Each rule is a function from [`Specs`] to diagnostics, pointing at the offending field and,
//! where two places conflict, at the other one too.

pub mod reach;
pub mod record;
pub mod semantic;

use crate::diag::Diagnostics;
use crate::load::Snapshot;
use crate::specs::Specs;

use record::Record;

/// Every semantic rule. Without a Platform (none, or one its schema refused: reported
/// already), references to its clusters and instance types cannot be judged, so none is
/// reported as unknown.
pub fn check(specs: &Specs, snapshot: &Snapshot) -> Diagnostics {
    without_platform(specs, semantic::check(specs, snapshot))
}

/// [`check`], with what it found per spec when there is a Platform (kept with the revision);
/// against a `base` revision's record (its spec files that `changed`: see [`reach`]), only the
/// rules the edit can reach run (then `true`).
pub fn check_recorded(
    specs: &Specs,
    snapshot: &Snapshot,
    base: Option<(&Record, &crate::load::Changed)>,
) -> (Diagnostics, Option<Record>, bool) {
    if specs.platform.is_none() {
        return (check(specs, snapshot), None, false);
    }
    let against = base.and_then(|(record, changed)| {
        let found = semantic::check_against(specs, snapshot, record, changed)?;
        // Debug builds (every test) check it whole as well: a difference is an edge `reach`
        // missed.
        #[cfg(debug_assertions)]
        {
            let whole = semantic::check_recorded(specs, snapshot);
            assert_eq!(
                found.1, whole.1,
                "the check against the base differs from the whole check (check/reach.rs)"
            );
            assert!(
                found.0.iter().eq(whole.0.iter()),
                "the check's diagnostics differ in order"
            );
        }
        Some(found)
    });
    let taken = against.is_some();
    let (d, record) = against.unwrap_or_else(|| semantic::check_recorded(specs, snapshot));
    (d, Some(record), taken)
}

/// The diagnostics of the rules, without those judging references to the Platform's clusters
/// and instance types when there is none.
fn without_platform(specs: &Specs, all: Diagnostics) -> Diagnostics {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::semantic;

    type Files = BTreeMap<String, String>;

    fn checked(files: &Files) -> crate::Checked {
        let source = crate::load::MemSource {
            files: files
                .iter()
                .map(|(p, t)| (p.clone(), t.clone().into_bytes()))
                .collect(),
        };
        crate::check_source(&source, &crate::Options::default()).expect("loads")
    }

    /// The files of `head` whose bytes differ from `base`'s (the two have the same paths).
    fn changed(base: &Files, head: &Files) -> crate::load::Changed {
        assert!(base.keys().eq(head.keys()), "the same files");
        head.iter()
            .filter(|(p, t)| base[*p] != **t)
            .map(|(p, _)| Arc::from(p.as_str()))
            .collect()
    }

    /// The path of the first file under `dir` whose text holds `needle`, and the text.
    fn find(files: &Files, dir: &str, needle: &str) -> (String, String) {
        files
            .iter()
            .find(|(p, t)| p.starts_with(dir) && t.contains(needle))
            .map(|(p, t)| (p.clone(), t.clone()))
            .expect("a file")
    }

    /// The value of `key: value` on the first line of `text` holding `key: `.
    fn value<'t>(text: &'t str, key: &str) -> &'t str {
        let line = text
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key}: ")))
            .expect("the key");
        line.split_once(": ").expect("a value").1.trim()
    }

    /// Edits of the content of specs that other specs' rules read (each keeping every name,
    /// reference and file), applied one after the other; each changes what the check finds.
    fn edits(files: &Files) -> Vec<(&'static str, Files)> {
        let mut out = Vec::new();
        let mut now = files.clone();
        let mut step = |what: &'static str, now: &mut Files, path: String, text: String| {
            now.insert(path, text);
            out.push((what, now.clone()));
        };
        // A rollout's project no longer lists the rollout's instance type.
        let (_, rollout) = find(files, "models/", "instanceType: gpu-");
        let project = value(&rollout, "project").to_owned();
        let (path, text) = find(files, "projects/", &format!("name: {project}\n"));
        let listed = format!(
            "instanceTypes: [{}]",
            value(&text, "instanceTypes").trim_matches(['[', ']'])
        );
        step(
            "project instance types",
            &mut now,
            path.clone(),
            text.replace(&listed, "instanceTypes: [cpu-2]"),
        );
        // The project's lines move (the rollout's related label points into it).
        let moved = format!("# moved\n{}", now[&path]);
        step("project lines moved", &mut now, path.clone(), moved);
        // The project may serve no model.
        let closed = now[&path].replace("spec:\n", "spec:\n  deployments:\n    max: 0\n");
        step("project deployments", &mut now, path, closed);
        // A dataset takes the mount path of one with a smaller name sharing a project with it
        // (reported in its document), then its lines move.
        let (first, second) = mounted_pair(files);
        let first_name = value(&files[&first], "name").to_owned();
        let shared = now[&second].replace(
            "spec:\n",
            &format!("spec:\n  mount:\n    path: /datasets/{first_name}\n"),
        );
        step("dataset mount path", &mut now, second.clone(), shared);
        let moved = format!("# moved\n{}", now[&second]);
        step("dataset lines moved", &mut now, second, moved);
        // A rollout asks for more GPUs than its project's allocation.
        let (path, text) = find(&now, "models/", "instanceType: gpu-");
        let more = text.replace("replicas: 1\n", "replicas: 400\n");
        step("rollout replicas", &mut now, path, more);
        // An App mounts a dataset not granted to its project, then the dataset's lines move.
        let (path, text) = find(&now, "apps/", "datasets: [");
        let app_project = value(&text, "project").to_owned();
        let (foreign, foreign_text) = now
            .iter()
            .find(|(p, t)| {
                p.starts_with("datasets/")
                    && !t.contains(&format!("project: {app_project}\n"))
                    && !t.contains("global")
            })
            .map(|(p, t)| (p.clone(), t.clone()))
            .expect("a dataset not granted to the App's project");
        let foreign_name = value(&foreign_text, "name").to_owned();
        let listed = format!(
            "datasets: [{}]",
            value(&text, "datasets").trim_matches(['[', ']'])
        );
        let mounts = text.replace(&listed, &format!("datasets: [{foreign_name}]"));
        step("app datasets", &mut now, path, mounts);
        let moved = format!("# moved\n{foreign_text}");
        step("granted dataset lines moved", &mut now, foreign, moved);
        out
    }

    /// Two datasets mounted in pods (an object store or a volume), in name order, granted to
    /// one project.
    fn mounted_pair(files: &Files) -> (String, String) {
        let mut mounted = files
            .iter()
            .filter(|(p, t)| {
                p.starts_with("datasets/") && (t.contains("    s3:") || t.contains("    nfs:"))
            })
            .map(|(p, _)| p.clone());
        let first = mounted.next().expect("a mounted dataset");
        let second = mounted.next().expect("another");
        (first, second)
    }

    /// The generated platform, with a second mounted dataset granted to a project the first is.
    fn start() -> Files {
        let mut files: Files = crate::generate::platform(120, 2).into_iter().collect();
        let (first, second) = mounted_pair(&files);
        let project = value(&files[&first], "- project").to_owned();
        let granted = files[&second].replace(
            "  access:\n",
            &format!("  access:\n    - project: {project}\n      mode: read-only\n"),
        );
        files.insert(second, granted);
        files
    }

    /// A revision checked against its base's record, after edits of what other specs' rules
    /// read, finds what checking it whole finds, and keeps the same record; the base's
    /// diagnostics stand for the specs the edit does not reach.
    #[test]
    fn a_check_against_a_base_equals_the_whole_check() {
        let start = start();
        let mut base = start.clone();
        let mut base_checked = checked(&base);
        let mut record = semantic::check_recorded(&base_checked.specs, &base_checked.snapshot).1;
        for (what, head) in edits(&start) {
            let head_checked = checked(&head);
            assert_eq!(
                crate::lower::rekey::graph(&base_checked.specs),
                crate::lower::rekey::graph(&head_checked.specs),
                "{what}: the same view graph"
            );
            let changed = changed(&base, &head);
            let (specs, snapshot) = (&head_checked.specs, &head_checked.snapshot);
            let (found, against) = semantic::check_against(specs, snapshot, &record, &changed)
                .unwrap_or_else(|| panic!("{what}: taken"));
            let (whole_found, whole) = semantic::check_recorded(specs, snapshot);
            assert_ne!(
                whole, record,
                "{what}: the edit changes what the check finds"
            );
            assert_eq!(against, whole, "{what}");
            assert!(
                found.iter().eq(whole_found.iter()),
                "{what}: in the same order"
            );
            (base, base_checked, record) = (head, head_checked, whole);
        }
    }

    /// An edit of the Platform or of a pool reaches every rule: checked whole.
    #[test]
    fn a_platform_or_pool_edit_is_checked_whole() {
        let base: Files = crate::generate::platform(40, 1).into_iter().collect();
        let b = checked(&base);
        let record = semantic::check_recorded(&b.specs, &b.snapshot).1;
        for dir in ["plinth.yaml", "gpu/"] {
            let (path, text) = find(&base, dir, "\n");
            let mut head = base.clone();
            head.insert(path, format!("# moved\n{text}"));
            let h = checked(&head);
            let changed = changed(&base, &head);
            assert!(
                semantic::check_against(&h.specs, &h.snapshot, &record, &changed).is_none(),
                "{dir}"
            );
        }
    }
}
