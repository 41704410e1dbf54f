//! Incremental compilation is invisible: a compile that reuses the units of earlier compiles
//! (`plinth::lower::units`) gives byte-identical output and diagnostics to a cold one, over
//! random sequences of edits; and every unit reads only its view (lowering it against the whole
//! platform gives the same objects), so a unit's key covers everything its result depends on.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use plinth::cache::Cache;
use proptest::prelude::*;

use common::edits::{Edit, apply, edit, project_names};
use common::{outcome, source, with_default_policies as options};

/// The platforms the tests start from: the example, every golden build case, and generated
/// platforms (many projects, pools sharing a cohort, Apps, rollouts, datasets).
fn platforms() -> Vec<(String, BTreeMap<String, String>)> {
    let mut out = vec![("example".to_owned(), common::example())];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/build");
    let mut cases: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    for case in cases {
        if !root.join(&case).join("repo").is_dir() {
            continue;
        }
        out.push((
            case.clone(),
            common::files_under(&format!("tests/golden/build/{case}/repo")),
        ));
    }
    for seed in [1, 2] {
        let files = plinth::generate::platform(120, seed);
        out.push((format!("generated-{seed}"), files.into_iter().collect()));
    }
    out
}

#[test]
fn every_unit_reads_only_its_view() {
    let mut compared = 0;
    for (name, files) in platforms() {
        let checked = plinth::check_source(&source(&files), &plinth::Options::default()).unwrap();
        if checked.diagnostics.has_errors() {
            continue;
        }
        let (viewed, d1) = plinth::lower::lower(&checked.specs, &checked.snapshot);
        let (whole, d2) =
            plinth::lower::units::lower_unrestricted(&checked.specs, &checked.snapshot);
        let show = |l: &plinth::lower::Lowered| serde_json::to_string_pretty(l).unwrap();
        let (a, b) = (show(&viewed), show(&whole));
        if a != b {
            let diff = similar::TextDiff::from_lines(&b, &a);
            let shown: String = diff
                .unified_diff()
                .context_radius(3)
                .to_string()
                .lines()
                .take(80)
                .collect::<Vec<_>>()
                .join("\n");
            panic!(
                "{name}: a unit read a spec outside its view (whole platform → views):\n{shown}"
            );
        }
        let show_d = |d: plinth::diag::Diagnostics| format!("{:?}", d.into_sorted());
        assert_eq!(show_d(d1), show_d(d2), "{name}: diagnostics differ");
        compared += 1;
    }
    assert!(compared >= 20, "only {compared} platforms compiled cleanly");
}

fn start(which: usize) -> BTreeMap<String, String> {
    match which {
        0 => common::example(),
        1 => plinth::generate::platform(40, 3).into_iter().collect(),
        2 => common::files_under("tests/golden/build/multi-cluster/repo"),
        // The agent's install manifests derive from every RBAC object emitted.
        _ => common::files_under("tests/golden/build/agent-install/repo"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::cases(24),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// After every edit of a random sequence, a compile through the cache (which reuses the
    /// units of every earlier compile of the sequence) equals a cold compile.
    #[test]
    fn incremental_equals_cold_over_random_edits(which in 0..4usize, edits in prop::collection::vec(edit(), 1..5)) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let mut files = start(which);
        let projects = project_names(&files);
        let opts = options();
        // The first compile fills the cache.
        plinth::build_cached(&source(&files), &opts, &cache).unwrap();
        for e in &edits {
            apply(&mut files, &projects, e);
            let src = source(&files);
            let warm = plinth::build_cached(&src, &opts, &cache).unwrap();
            let cold = plinth::build_source(&src, &opts).unwrap();
            prop_assert_eq!(outcome(&warm), outcome(&cold), "after {:?}", e);
        }
    }
}

#[test]
fn an_edit_relowers_only_the_units_that_read_it() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let mut files: BTreeMap<String, String> =
        plinth::generate::platform(60, 1).into_iter().collect();
    let opts = plinth::Options::default();
    plinth::build_cached(&source(&files), &opts, &cache).unwrap();
    let cold_units = cache.units().len();
    assert!(
        cold_units > 60,
        "a cold compile keeps every unit ({cold_units})"
    );
    // One project file changes (its quota): only that project's unit is lowered again.
    let project = files
        .keys()
        .find(|p| p.starts_with("projects/"))
        .cloned()
        .unwrap();
    let text = files[&project].replacen("spec:", "spec:\n  # reviewed", 1);
    files.insert(project.clone(), text);
    let before = cache.units().len();
    let built = plinth::build_cached(&source(&files), &opts, &cache).unwrap();
    assert!(built.lowered.is_some());
    let fresh = cache.units().len() - before;
    // Its project, the pools of its cohort, the datasets granting to it, and the units that
    // read everything (the Platform's objects, global datasets): a handful of over a hundred.
    assert!(
        (1..=8).contains(&fresh),
        "a one-project edit lowered {fresh} of {cold_units} units again"
    );
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::cases(24),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// A head compiled against its cached base's units — the units the base holds not read,
    /// when that can be shown to change nothing, else compiled whole — gives what a whole
    /// compile gives: the same diagnostics, and an entry in the cache with the same objects,
    /// the same units and the same account of them for a later head.
    #[test]
    fn a_head_compiled_against_its_base_equals_a_whole_compile(
        which in 0..4usize,
        edits in prop::collection::vec(local_edit(), 1..3),
    ) {
        let (dir, whole_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let cache = Cache::new(dir.path());
        let mut files = start(which);
        let projects = project_names(&files);
        let base = base_units(&files, &cache);
        for e in &edits {
            apply(&mut files, &projects, e);
        }
        let against = compiled_against(&files, base, &cache);
        let whole = compiled_against(&files, None, &Cache::new(whole_dir.path()));
        prop_assert!(whole.2.is_none());
        prop_assert_eq!(against.0, whole.0);
        prop_assert_eq!(against.1, whole.1);
    }

    /// A plan compares units before objects: the objects of the units both revisions share
    /// are left out unread, and the rest pruned as before — which is the prune of the whole
    /// indexes, for every compile without errors.
    #[test]
    fn pruning_by_units_equals_pruning_the_whole_indexes(
        which in 0..4usize,
        edits in prop::collection::vec(edit(), 1..4),
    ) {
        let mut files = start(which);
        let projects = project_names(&files);
        let store = Recording::default();
        let Some(base) = store.compile(&files) else {
            return Ok(());
        };
        for e in &edits {
            apply(&mut files, &projects, e);
        }
        let Some(head) = store.compile(&files) else {
            return Ok(());
        };
        let (bs, hs) = (
            plinth::plan::UnitSummary::of(&base).unwrap(),
            plinth::plan::UnitSummary::of(&head).unwrap(),
        );
        let shared = plinth::plan::shared_units(&bs, &hs);
        let by_units = plinth::plan::prune_units(
            &bs,
            &plinth::plan::index_outside(&base, &shared).unwrap(),
            &hs,
            &plinth::plan::index_outside(&head, &shared).unwrap(),
            &shared,
        );
        let whole = plinth::plan::prune(
            &plinth::plan::index_of(&base),
            &plinth::plan::index_of(&head),
        );
        prop_assert_eq!(by_units, whole);
    }

    /// A plan read from the two revisions' indexes (loading only the objects that differ) is
    /// the plan of the whole revisions: changes, counts, refusals, warnings and capacity.
    #[test]
    fn a_plan_from_indexes_equals_the_plan_of_whole_revisions(
        which in 0..3usize,
        edits in prop::collection::vec(edit(), 1..4),
        max_delete_share in prop::sample::select(vec![0.01, 0.5, 1.0]),
    ) {
        let mut files = start(which);
        let projects = project_names(&files);
        let base = plinth::build_source(&source(&files), &plinth::Options::default()).unwrap();
        for e in &edits {
            apply(&mut files, &projects, e);
        }
        let head = plinth::build_source(&source(&files), &plinth::Options::default()).unwrap();
        let (Some(bl), Some(hl)) = (&base.lowered, &head.lowered) else {
            return Ok(());
        };
        let opts = plinth::plan::PlanOptions {
            max_delete_share,
            fingerprint: plinth::redact::Key::from_env_value(Some("test-key")),
            ..Default::default()
        };
        let (bs, hs) = (&base.checked.specs, &head.checked.specs);
        let whole = plinth::plan::plan_with_capacity(bl, hl, Some(bs), hs, &opts);
        let pruned = plinth::plan::prune(&plinth::plan::index_of(bl), &plinth::plan::index_of(hl));
        let loaded: usize = pruned.wanted.values().map(|w| w.len()).sum();
        let (b, h) = (bl.only(&pruned.wanted), hl.only(&pruned.wanted));
        let capacity = (
            plinth::capacity::Capacity::of(bs),
            plinth::capacity::Capacity::of(hs),
        );
        let from_index = plinth::plan::plan_pruned(
            &b,
            &h,
            &pruned.totals,
            (&capacity.0, &capacity.1),
            &opts,
        );
        prop_assert_eq!(format!("{whole:?}"), format!("{from_index:?}"));
        prop_assert!(loaded <= bl.object_count() + hl.object_count());
    }
}

#[test]
fn a_plan_from_indexes_loads_only_what_differs() {
    let files: BTreeMap<String, String> = plinth::generate::platform(60, 1).into_iter().collect();
    let base = plinth::build_source(&source(&files), &plinth::Options::default()).unwrap();
    let mut edited = files.clone();
    let project = edited
        .keys()
        .find(|p| p.starts_with("projects/"))
        .cloned()
        .unwrap();
    let text = edited[&project].replacen("pods: ", "pods: 1", 1);
    edited.insert(project, text);
    let head = plinth::build_source(&source(&edited), &plinth::Options::default()).unwrap();
    let (bl, hl) = (base.lowered.unwrap(), head.lowered.unwrap());
    let pruned = plinth::plan::prune(&plinth::plan::index_of(&bl), &plinth::plan::index_of(&hl));
    let wanted: usize = pruned.wanted.values().map(|w| w.len()).sum();
    let unchanged: usize = pruned.totals.unchanged.values().sum();
    assert!(
        (1..=3).contains(&wanted),
        "one quota changed: {wanted} objects loaded"
    );
    assert_eq!(unchanged + wanted, hl.object_count());
}

/// A spec file whose bytes did not change is typed from what the cache kept of reading it: its
/// documents are parsed again only when something reads their trees (a diagnostic's place, a
/// unit lowered again, a policy evaluated again), and the compile is the cold one, diagnostics
/// on unchanged files included.
#[test]
fn an_unchanged_file_is_not_parsed_again() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let mut files: BTreeMap<String, String> =
        plinth::generate::platform(60, 1).into_iter().collect();
    let projects: Vec<String> = files
        .keys()
        .filter(|p| p.starts_with("projects/"))
        .cloned()
        .collect();
    // A warning on a file that does not change: a display name with an invisible character.
    let warned = projects[0].clone();
    let text = files[&warned].replacen("displayName: ", "displayName: x\u{200B}", 1);
    assert_ne!(
        text, files[&warned],
        "the generated project has a display name"
    );
    files.insert(warned.clone(), text);
    let opts = options();
    plinth::build_cached(&source(&files), &opts, &cache).unwrap();
    // Another project changes.
    let edited = projects[1].clone();
    let text = files[&edited].replacen("spec:", "spec:\n  # reviewed", 1);
    files.insert(edited.clone(), text);
    // The memo read on a thread of its own from when the cache is opened (as `build` and
    // `plan` open it) is the memo read when the compile asks for it; a second compile through
    // the same cache reads it again.
    let reading = Cache::new(dir.path()).reading_files();
    let warm = plinth::build_cached(&source(&files), &opts, &reading).unwrap();
    let cold = plinth::build_source(&source(&files), &opts).unwrap();
    assert_eq!(outcome(&warm), outcome(&cold));
    let mut next = files.clone();
    let other = projects[2].clone();
    let text = next[&other].replacen("spec:", "spec:\n  # reviewed", 1);
    next.insert(other, text);
    let again = plinth::build_cached(&source(&next), &opts, &reading).unwrap();
    let cold_next = plinth::build_source(&source(&next), &opts).unwrap();
    assert_eq!(outcome(&again), outcome(&cold_next));
    assert!(
        again.checked.docs.iter().filter(|d| d.is_parsed()).count() * 10
            <= again.checked.docs.len()
    );
    assert!(
        warm.checked
            .diagnostics
            .iter()
            .any(|d| d.primary.as_ref().is_some_and(|l| *l.span.file == *warned)),
        "the unchanged file's warning is reported where it is"
    );
    let docs = &warm.checked.docs;
    let parsed: Vec<&str> = docs
        .iter()
        .filter(|d| d.is_parsed())
        .map(|d| &*d.file)
        .collect();
    assert!(parsed.contains(&edited.as_str()), "{parsed:?}");
    assert!(parsed.contains(&warned.as_str()), "{parsed:?}");
    assert!(
        parsed.len() * 10 <= docs.len(),
        "{} of {} documents parsed: {parsed:?}",
        parsed.len(),
        docs.len()
    );
}

/// What the cache kept of reading a file is checked against the file: an entry that does not
/// type again, or types as another spec, is read from the file instead.
#[test]
fn a_damaged_file_read_is_read_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let files: BTreeMap<String, String> = plinth::generate::platform(30, 2).into_iter().collect();
    let opts = options();
    plinth::build_cached(&source(&files), &opts, &cache).unwrap();
    let memo = dir.path().join("files").join("reads.json");
    let text = std::fs::read_to_string(&memo).unwrap();
    let mut damaged = 0;
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let Some(at) = line.find("\"typed\":{").filter(|_| i > 0) else {
                return line.to_owned();
            };
            damaged += 1;
            // The document's JSON is embedded as it is (after its kind and name as read).
            let (read, typed) = line.split_at(at);
            let new = match i % 4 {
                // JSON, but not of a spec any more.
                0 => {
                    read.to_owned()
                        + &typed.replacen("{\"apiVersion\"", "{\"apiVersion\":1,\"a\"", 1)
                }
                // Another kind's.
                1 => read.to_owned() + &typed.replacen("\"kind\":\"", "\"kind\":\"X", 1),
                // Another spec's name.
                2 => read.to_owned() + &typed.replacen("\"name\":\"", "\"name\":\"x", 1),
                // A name typing refuses, everywhere in the entry.
                _ => {
                    let at = line.find("\"name\":\"").expect("a name") + "\"name\":\"".len();
                    let name = &line[at..at + line[at..].find('"').expect("end")];
                    line.replace(name, &format!("{}_X", name.to_uppercase()))
                }
            };
            assert_ne!(new, line, "damaged");
            new
        })
        .collect();
    assert!(damaged > 30, "{damaged} entries damaged");
    std::fs::write(&memo, lines.join("\n") + "\n").unwrap();
    // A new revision (not the cached one), so the files are read.
    let mut edited = files.clone();
    let first = edited
        .keys()
        .find(|p| p.starts_with("projects/"))
        .cloned()
        .unwrap();
    let text = edited[&first].replacen("spec:", "spec:\n  # reviewed", 1);
    edited.insert(first, text);
    let warm = plinth::build_cached(&source(&edited), &opts, &cache).unwrap();
    let cold = plinth::build_source(&source(&edited), &opts).unwrap();
    assert_eq!(outcome(&warm), outcome(&cold));
}

/// A unit store in memory that records what each compile lowered.
#[derive(Default)]
struct Recording {
    units: std::sync::Mutex<std::collections::HashMap<String, plinth::lower::units::UnitOutput>>,
    put: std::sync::Mutex<Vec<plinth::lower::Manifest>>,
}

impl Recording {
    /// Check and lower `files` through this store; `None` when either reports an error.
    fn compile(&self, files: &BTreeMap<String, String>) -> Option<plinth::lower::Lowered> {
        let checked = plinth::check_source(&source(files), &plinth::Options::default()).unwrap();
        let (lowered, d) =
            plinth::lower::lower_reusing(&checked.specs, &checked.snapshot, "test", self);
        (!checked.diagnostics.has_errors() && !d.has_errors()).then_some(lowered)
    }
}

impl plinth::lower::UnitStore for Recording {
    fn get(&self, key: &str) -> Option<plinth::lower::units::UnitOutput> {
        self.units.lock().unwrap().get(key).cloned()
    }
    fn put(&self, key: &str, out: &plinth::lower::units::UnitOutput) {
        self.put.lock().unwrap().extend(out.objects.iter().cloned());
        self.units
            .lock()
            .unwrap()
            .insert(key.to_owned(), out.clone());
    }
}

/// A project's GPU backstops are lowered with the project: an edit of one project lowers no
/// other project's backstop (they were one unit per GPU resource, every project's backstop
/// lowered again for any project's change).
#[test]
fn a_project_edit_lowers_no_other_projects_backstop() {
    let mut files: BTreeMap<String, String> =
        plinth::generate::platform(60, 1).into_iter().collect();
    let store = Recording::default();
    let compile = |files: &BTreeMap<String, String>| {
        assert!(store.compile(files).is_some(), "compiles");
    };
    let is_backstop = |m: &plinth::lower::Manifest| {
        m.key.kind == "ResourceQuota" && m.key.name.starts_with("gpu-")
    };
    compile(&files);
    let cold: Vec<String> = std::mem::take(&mut *store.put.lock().unwrap())
        .iter()
        .filter(|m| is_backstop(m))
        .filter_map(|m| m.key.namespace.clone())
        .collect();
    assert!(cold.len() > 10, "{} backstops", cold.len());
    // A project with a backstop changes (a comment: every unit that reads it is lowered again).
    let edited = cold[cold.len() / 2].clone();
    let path = files
        .iter()
        .find(|(p, t)| p.starts_with("projects/") && t.contains(&format!("name: {edited}\n")))
        .map(|(p, _)| p.clone())
        .unwrap();
    let text = files[&path].replacen("spec:", "spec:\n  # reviewed", 1);
    files.insert(path, text);
    compile(&files);
    let put = std::mem::take(&mut *store.put.lock().unwrap());
    assert!(!put.is_empty(), "the edited project is lowered again");
    let others: Vec<String> = put
        .iter()
        .filter(|m| is_backstop(m) && m.key.namespace.as_deref() != Some(edited.as_str()))
        .map(|m| m.key.to_string())
        .collect();
    assert!(others.is_empty(), "{others:?}");
    assert!(
        put.iter()
            .any(|m| is_backstop(m) && m.key.namespace.as_deref() == Some(edited.as_str())),
        "the edited project's backstop is lowered with it"
    );
}

/// A one-project edit leaves every unit but the few that read the project shared between the
/// two revisions, so a plan indexes only their objects.
#[test]
fn a_one_project_edit_shares_all_units_but_a_few() {
    let mut files: BTreeMap<String, String> =
        plinth::generate::platform(60, 1).into_iter().collect();
    let store = Recording::default();
    let compile = |files: &BTreeMap<String, String>| store.compile(files).expect("compiles");
    // Another project's objects carry an approval: a plan reads them even when unchanged.
    let projects: Vec<String> = files
        .keys()
        .filter(|p| p.starts_with("projects/"))
        .cloned()
        .collect();
    let approved = files[&projects[1]].replacen(
        "metadata:\n",
        "metadata:\n  annotations:\n    plinth.dev/approve-destructive: CHG-1 moved\n",
        1,
    );
    files.insert(projects[1].clone(), approved);
    let base = compile(&files);
    let text = files[&projects[0]].replacen("spec:", "spec:\n  # reviewed", 1);
    files.insert(projects[0].clone(), text);
    let head = compile(&files);
    let (bs, hs) = (
        plinth::plan::UnitSummary::of(&base).unwrap(),
        plinth::plan::UnitSummary::of(&head).unwrap(),
    );
    let shared = plinth::plan::shared_units(&bs, &hs);
    let rest = plinth::plan::index_outside(&head, &shared).unwrap();
    let indexed: usize = rest.clusters.values().map(|c| c.objects.len()).sum();
    let units: usize = bs.clusters.values().map(|c| c.units.len()).sum();
    let shared_count: usize = shared.values().map(|s| s.len()).sum();
    assert!(
        units - shared_count <= 8,
        "{shared_count} of {units} units shared"
    );
    assert!(
        indexed * 5 < head.object_count(),
        "{indexed} of {} objects indexed",
        head.object_count()
    );
    assert!(
        rest.clusters
            .values()
            .flat_map(|c| &c.objects)
            .any(|o| o.approve),
        "the approved project's objects are indexed"
    );
    let whole = plinth::plan::prune(
        &plinth::plan::index_of(&base),
        &plinth::plan::index_of(&head),
    );
    let base_rest = plinth::plan::index_outside(&base, &shared).unwrap();
    let by_units = plinth::plan::prune_units(&bs, &base_rest, &hs, &rest, &shared);
    assert_eq!(by_units, whole);
}

/// What a revision compiled against a base's units (`plinth::lower::delta`) leaves, to compare
/// with a whole compile: its diagnostics (sorted), its entry in the cache read back — the
/// objects (as the tree emitted from them), the units as a plan compares them, and what a later
/// head needs of its units — and, when the delta was taken, how many units took the base's
/// key without being viewed (`plinth::lower::rekey`).
fn compiled_against(
    files: &BTreeMap<String, String>,
    base: Option<plinth::lower::delta::BaseUnits>,
    cache: &Cache,
) -> Compiled {
    // With the base's GPU capacity, as a plan gives it (a head's is computed from it).
    let capacity = base
        .as_ref()
        .and_then(|b| b.key.as_deref())
        .and_then(|k| cache.load(k))
        .and_then(|e| e.capacity.clone());
    let given = plinth::options::BaseUnits::default();
    given.promise().keep_with(base, capacity);
    let opts = plinth::Options {
        base: Some(given),
        defer_store: true,
        ..options()
    };
    let src = source(files);
    let built = plinth::build_cached(&src, &opts, cache).unwrap();
    let diags = common::diagnostics(&built);
    let delta = built.delta.as_ref().map(|d| d.keys_taken);
    let key = cache.key(&built.checked.snapshot, &opts);
    if let Some(pending) = &built.pending {
        pending
            .store_either(cache, built.lowered.as_ref(), built.delta.as_deref())
            .unwrap();
    }
    let entry = cache.load(&key).filter(|e| e.compiled()).map(|e| {
        let tree = plinth::emit::tree(&e.lowered().expect("objects read back"), None).unwrap();
        (tree, e.summary().map(|s| s.sorted()), e.base_units())
    });
    (diags, entry, delta)
}

/// What [`compiled_against`] gives: diagnostics, the entry read back, how many keys were taken.
type Compiled = (
    Vec<String>,
    Option<(
        BTreeMap<String, String>,
        Option<plinth::plan::SortedUnits>,
        Option<plinth::lower::delta::BaseUnits>,
    )>,
    Option<usize>,
);

/// `head` compiled against `base` through `cache`, and whole through a cache of its own (what
/// the first must equal).
fn against_and_whole(
    head: &BTreeMap<String, String>,
    base: &plinth::lower::delta::BaseUnits,
    cache: &Cache,
) -> (Compiled, Compiled) {
    let whole_dir = tempfile::tempdir().unwrap();
    let against = compiled_against(head, Some(base.clone()), cache);
    let whole = compiled_against(head, None, &Cache::new(whole_dir.path()));
    (against, whole)
}

/// A compile against a base gave what the whole compile gave: diagnostics and entry.
fn assert_alike(what: &str, against: &Compiled, whole: &Compiled) {
    assert_eq!(against.0, whole.0, "{what}: diagnostics");
    assert_eq!(against.1, whole.1, "{what}: the entry");
}

/// An edit, most often one that keeps every object's key (a number, lines moved): what a head
/// compiled against its base's units can take without compiling whole.
fn local_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        3 => (0..1000usize, 0..12usize, 0..9u32).prop_map(|(file, n, value)| Edit::Number {
            file,
            n,
            value
        }),
        1 => (0..1000usize).prop_map(|file| Edit::Shift { file }),
        1 => edit(),
    ]
}

/// The units a cached base offers a head, after compiling it through `cache`.
fn base_units(
    files: &BTreeMap<String, String>,
    cache: &Cache,
) -> Option<plinth::lower::delta::BaseUnits> {
    let (_, entry, _) = compiled_against(files, None, cache);
    entry.and_then(|(.., units)| units)
}

/// A one-project edit (a number of its quota, a member group) is compiled against the base's
/// units, the others not read; a new project (objects the base has not) is compiled whole. All
/// equal a whole compile.
#[test]
fn a_one_project_edit_is_compiled_against_the_base_and_a_new_project_is_not() {
    let files: BTreeMap<String, String> = plinth::generate::platform(30, 2).into_iter().collect();
    let project = files
        .keys()
        .find(|p| p.starts_with("projects/"))
        .cloned()
        .expect("a project");
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let base = base_units(&files, &cache).expect("the base offers its units");
    let edited = {
        let mut f = files.clone();
        let text = f[&project].replacen("pods: ", "pods: 1", 1);
        assert_ne!(text, f[&project], "the edit changes the file");
        f.insert(project.clone(), text);
        f
    };
    let added = {
        let mut f = files.clone();
        let text = f[&project].replacen("name: ", "name: added-", 1);
        f.insert(format!("{project}.added.yaml"), text);
        f
    };
    // Its RBAC objects change (no agent here to read them).
    let member = {
        let mut f = files.clone();
        let text = f[&project].replacen("group: ", "group: leads-", 1);
        assert_ne!(text, f[&project], "the edit changes the file");
        f.insert(project.clone(), text);
        f
    };
    for (what, head, delta) in [
        ("one project edited", &edited, true),
        ("a project added", &added, false),
        ("a member group renamed", &member, true),
    ] {
        let (against, whole) = against_and_whole(head, &base, &cache);
        assert_eq!(
            against.2.is_some(),
            delta,
            "{what}: compiled against the base"
        );
        assert!(against.1.is_some(), "{what}: compiles");
        assert_alike(what, &against, &whole);
    }
}

/// Between revisions whose specs refer to each other alike, a head takes the base's key for
/// every unit whose view holds no changed file (`plinth::lower::rekey`): a one-project edit
/// views the few units that can read that project; an edit of the references (a dataset's
/// grants in another order) views every unit. Both equal a whole compile (and debug builds, as this
/// test runs, key every unit besides and compare).
#[test]
fn a_one_file_edit_views_only_the_units_that_can_read_it() {
    let files: BTreeMap<String, String> = plinth::generate::platform(30, 2).into_iter().collect();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let base = base_units(&files, &cache).expect("the base offers its units");
    let units = base
        .keyed
        .as_ref()
        .expect("the entry keeps its keys")
        .keys
        .len();
    let project = files
        .keys()
        .find(|p| p.starts_with("projects/"))
        .cloned()
        .expect("a project");
    // A dataset granting two projects: its grants swapped refer to the same specs in
    // another order (which the graph covers), with the same objects.
    let (dataset, first, second) = files
        .iter()
        .filter(|(p, _)| p.starts_with("datasets/"))
        .find_map(|(p, t)| {
            let mut granted = t
                .split("- project: ")
                .skip(1)
                .filter_map(|r| r.lines().next());
            let (a, b) = (granted.next()?, granted.next()?);
            (a != b).then(|| (p.clone(), a.to_owned(), b.to_owned()))
        })
        .expect("a dataset granting two projects");
    let edit = |path: &str, from: &str, to: &str| {
        let mut f = files.clone();
        let text = f[path].replacen(from, to, 1);
        assert_ne!(text, f[path], "the edit changes {path}");
        f.insert(path.to_owned(), text);
        f
    };
    let number = edit(&project, "pods: ", "pods: 1");
    let swapped = {
        let (a, b) = (
            format!("- project: {first}\n"),
            format!("- project: {second}\n"),
        );
        let text = files[&dataset]
            .replacen(&a, "@A@", 1)
            .replacen(&b, &a, 1)
            .replacen("@A@", &b, 1);
        assert_ne!(text, files[&dataset], "the grants are swapped");
        let mut f = files.clone();
        f.insert(dataset.clone(), text);
        f
    };
    for (what, head, few) in [("a number", &number, true), ("grants", &swapped, false)] {
        let (against, whole) = against_and_whole(head, &base, &cache);
        let taken = against.2.expect("compiled against the base");
        if few {
            assert!(
                taken > 0 && units - taken <= 12,
                "{what}: {taken} of {units} keys taken"
            );
        } else {
            assert_eq!(taken, 0, "{what}: every unit viewed");
        }
        assert_alike(what, &against, &whole);
    }
}

/// A base whose policy evaluation found nothing keeps what it found nothing in (per kind, the
/// digest of the rules that apply); a head compiled against it takes that for the units it
/// does not read and the documents of files that did not change, without looking them up: with
/// the policy memo gone, a one-project edit is still compiled against the base, and reports
/// what a whole compile reports. A base with a finding keeps nothing of the kind.
#[test]
fn a_clean_base_answers_for_what_an_edit_did_not_touch() {
    let files: BTreeMap<String, String> = plinth::generate::platform(30, 2).into_iter().collect();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let base = base_units(&files, &cache).expect("the base offers its units");
    let clean = base.policy_clean.as_ref().expect("the base found nothing");
    assert!(
        clean.units.is_empty() && clean.files.is_empty(),
        "its own: it covers all"
    );
    assert!(
        clean.kinds.contains_key("Project") && clean.kinds.contains_key("Namespace"),
        "its spec documents' kinds and its objects': {clean:?}"
    );
    let project = files
        .keys()
        .find(|p| p.starts_with("projects/"))
        .cloned()
        .expect("a project");
    let mut head = files.clone();
    let text = head[&project].replacen("pods: ", "pods: 1", 1);
    assert_ne!(text, head[&project], "the edit changes the file");
    head.insert(project.clone(), text);
    std::fs::remove_dir_all(dir.path().join("policy")).expect("the policy memo is there");
    let (against, whole) = against_and_whole(&head, &base, &cache);
    assert!(
        against.2.is_some(),
        "compiled against the base without the memo"
    );
    assert_alike("the edit", &against, &whole);
    // A single owner is a finding of the default library: on an edited file it is found
    // against the clean base as by a whole compile, and a base with it keeps nothing.
    let single = {
        let mut f = files.clone();
        let text = f[&project].clone();
        let line = text
            .lines()
            .find(|l| l.starts_with("  owners: ["))
            .expect("a list of owners");
        let first = line["  owners: [".len()..]
            .split(',')
            .next()
            .expect("an owner");
        let first = first.trim_end_matches(']');
        f.insert(
            project.clone(),
            text.replacen(line, &format!("  owners: [{first}]"), 1),
        );
        f
    };
    let (against, whole) = against_and_whole(&single, &base, &cache);
    assert!(
        whole.0.iter().any(|d| d.contains("fewer than two owners")),
        "a finding: {:?}",
        whole.0
    );
    assert!(against.2.is_some(), "compiled against the base");
    assert_alike("the edit", &against, &whole);
    let units = whole
        .1
        .and_then(|(.., u)| u)
        .expect("the entry offers its units");
    assert!(
        units.policy_clean.is_none(),
        "a base with a finding keeps nothing"
    );
}

/// The units a base compiled without policies (as a plan's is) offers a head, after compiling
/// it through `cache`.
fn base_without_policies(
    files: &BTreeMap<String, String>,
    cache: &Cache,
) -> Option<plinth::lower::delta::BaseUnits> {
    let plain = plinth::Options {
        defer_store: true,
        ..plinth::Options::default()
    };
    let built = plinth::build_cached(&source(files), &plain, cache).unwrap();
    let key = cache.key(&built.checked.snapshot, &plain);
    built
        .pending
        .as_ref()?
        .store_either(cache, built.lowered.as_ref(), built.delta.as_deref())
        .ok()?;
    cache.load(&key)?.base_units()
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: common::cases(12),
        failure_persistence: None,
        .. ProptestConfig::default()
    })]

    /// Heads compiled one after another against a base compiled without policies (a plan's),
    /// each clean one leaving beside the base what its evaluation covers for the next, each
    /// equal to a whole compile: diagnostics and entry.
    #[test]
    fn heads_against_a_base_without_policies_equal_whole_compiles(
        which in 0..4usize,
        edits in prop::collection::vec(local_edit(), 2..5),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path());
        let files = start(which);
        let projects = project_names(&files);
        let Some(base) = base_without_policies(&files, &cache) else {
            return Ok(());
        };
        let key = base.key.clone().expect("the base's key");
        for e in &edits {
            let mut head = files.clone();
            apply(&mut head, &projects, e);
            // What the heads before left is read with the base's entry.
            let base = cache.load(&key).and_then(|e| e.base_units()).unwrap_or_else(|| base.clone());
            let (against, whole) = against_and_whole(&head, &base, &cache);
            prop_assert_eq!(&against.0, &whole.0, "after {:?}", e);
            prop_assert_eq!(&against.1, &whole.1, "after {:?}", e);
        }
    }
}

/// A plan's base is compiled without policies and keeps no verdicts of its own. A head compiled
/// against it whose evaluation finds nothing leaves beside the base's entry what it covers:
/// the base's units it shares and the documents of the files it did not change. The next head
/// takes that: with the policy memo gone, another edit of the same file is still compiled
/// against the base, and reports what a whole compile reports; an edit of another file is not
/// (the base's units of the first file, which the first head did not share, must be looked up).
#[test]
fn a_clean_head_answers_for_its_base_the_next_time() {
    let files: BTreeMap<String, String> = plinth::generate::platform(30, 2).into_iter().collect();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let base = base_without_policies(&files, &cache).expect("the base offers its units");
    assert!(
        base.policy_clean.is_none(),
        "a base without policies keeps no verdicts"
    );
    let mut projects = files.keys().filter(|p| p.starts_with("projects/")).cloned();
    let (first, second) = (projects.next().unwrap(), projects.next().unwrap());
    let edit = |path: &str, pods: &str| {
        let mut f = files.clone();
        let text = f[path].replacen("pods: ", &format!("pods: {pods}"), 1);
        assert_ne!(text, f[path], "the edit changes {path}");
        f.insert(path.to_owned(), text);
        f
    };
    // The first head is compiled whole (the memo holds no verdict on the base's units) and
    // fills the memo; the next looks the base's units up there and leaves what it covers.
    let against = compiled_against(&edit(&first, "1"), Some(base.clone()), &cache);
    assert!(against.2.is_none(), "the first head is compiled whole");
    let against = compiled_against(&edit(&first, "3"), Some(base.clone()), &cache);
    assert!(
        against.2.is_some(),
        "the next head is compiled against the base"
    );
    let base_key = base.key.clone().expect("the base's key");
    let kept = cache
        .load(&base_key)
        .and_then(|e| e.base_units())
        .and_then(|u| u.policy_clean)
        .expect("the first head left what it covers");
    assert_eq!(kept.files.iter().collect::<Vec<_>>(), [&first]);
    assert!(
        !kept.units.is_empty() && kept.units.len() <= 12,
        "{:?}",
        kept.units
    );
    let base = cache.load(&base_key).and_then(|e| e.base_units()).unwrap();
    std::fs::remove_dir_all(dir.path().join("policy")).expect("the policy memo is there");
    for (what, path, taken) in [
        ("the same file", &first, true),
        ("another file", &second, false),
    ] {
        let head = edit(path, "2");
        let (against, whole) = against_and_whole(&head, &base, &cache);
        assert_eq!(
            against.2.is_some(),
            taken,
            "{what}: compiled against the base"
        );
        assert_alike(what, &against, &whole);
        std::fs::remove_dir_all(dir.path().join("policy")).ok();
    }
}

/// Where the Platform installs the agent (whose ClusterRole is made from every RBAC object
/// emitted), a change to an RBAC object compiles the head whole; another edit is compiled
/// against the base's units. Both equal a whole compile.
#[test]
fn with_the_agent_a_changed_rbac_object_compiles_the_head_whole() {
    let mut files = common::files_under("tests/golden/build/agent-install/repo");
    files.insert(
        "projects/beds.yaml".to_owned(),
        "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: beds\nspec:\n  owners: [ada@acme.example]\n  members:\n    - group: bed-analysts\n      role: edit\n  quota:\n    pods: 10\n".to_owned(),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::new(dir.path());
    let base = base_units(&files, &cache).expect("the base offers its units");
    let edit = |from: &str, to: &str| {
        let mut f = files.clone();
        let text = f["projects/beds.yaml"].replacen(from, to, 1);
        f.insert("projects/beds.yaml".to_owned(), text);
        f
    };
    for (what, head, delta) in [
        ("a quota edited", edit("pods: 10", "pods: 11"), true),
        (
            "a member group renamed",
            edit("group: bed-analysts", "group: bed-leads"),
            false,
        ),
    ] {
        let (against, whole) = against_and_whole(&head, &base, &cache);
        assert_eq!(
            against.2.is_some(),
            delta,
            "{what}: compiled against the base"
        );
        assert!(against.1.is_some(), "{what}: compiles");
        assert_alike(what, &against, &whole);
    }
}
