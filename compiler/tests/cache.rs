//! The build cache is invisible: cached and uncached builds are byte-identical whatever
//! changes between builds (a spec's content, a rename, a deletion, a policy, plinth itself),
//! and a damaged cache is only a miss.

mod common;

use std::collections::BTreeMap;

use plinth::cache::Cache;

/// The example platform's files, as bytes.
fn example() -> BTreeMap<String, Vec<u8>> {
    common::example()
        .into_iter()
        .map(|(p, t)| (p, t.into_bytes()))
        .collect()
}

use common::{Part, damage_units, outcome, source, with_default_policies as options};

fn hit(b: &plinth::Built) -> bool {
    b.checked.timings.iter().any(|(s, _)| *s == "cache hit")
}

#[test]
fn cached_and_uncached_builds_are_identical_through_every_kind_of_change() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let opts = options();
    let mut files = example();
    let mut states: Vec<(String, BTreeMap<String, Vec<u8>>)> =
        vec![("example".into(), files.clone())];

    // Content: one project's quota.
    let er = "projects/er-capacity.yaml".to_owned();
    let text = String::from_utf8(files[&er].clone()).expect("utf-8");
    assert!(text.contains("pods:"), "example changed");
    files.insert(
        er.clone(),
        text.replacen("pods: ", "pods: 1", 1).into_bytes(),
    );
    states.push(("content".into(), files.clone()));
    // Rename a spec file (only provenance changes).
    let body = files.remove(&er).expect("present");
    files.insert("projects/er.yaml".into(), body);
    states.push(("rename".into(), files.clone()));
    // Delete a spec (an App).
    let app = files
        .keys()
        .find(|k| k.starts_with("apps/"))
        .cloned()
        .expect("an app");
    files.remove(&app);
    states.push(("delete".into(), files.clone()));
    // A template change (an App's output).
    let tpl = files
        .keys()
        .find(|k| k.ends_with(".yaml.j2"))
        .cloned()
        .expect("a template");
    let mut t = files[&tpl].clone();
    t.extend_from_slice(b"\n");
    files.insert(tpl, t);
    states.push(("template".into(), files.clone()));
    // Back to the original bytes: the first entry serves again.
    states.push(("original again".into(), example()));

    for (name, state) in &states {
        let uncached = plinth::build_source(&source(state), &opts).expect("builds");
        let first = plinth::build_cached(&source(state), &opts, &cache).expect("builds");
        let second = plinth::build_cached(&source(state), &opts, &cache).expect("builds");
        assert!(
            hit(&second),
            "{name}: the second build of the same bytes is a hit"
        );
        assert_eq!(
            outcome(&uncached),
            outcome(&first),
            "{name}: first cached build differs"
        );
        assert_eq!(
            outcome(&uncached),
            outcome(&second),
            "{name}: cache hit differs"
        );
        assert!(uncached.lowered.is_some(), "{name}: the example builds");
        // Callers read the Platform after a build (plan reads its approvals).
        assert_eq!(
            second
                .checked
                .specs
                .platform
                .as_ref()
                .map(|p| p.spec.clone()),
            uncached
                .checked
                .specs
                .platform
                .as_ref()
                .map(|p| p.spec.clone()),
            "{name}"
        );
    }
    assert!(
        hit(&plinth::build_cached(&source(&states[0].1), &opts, &cache).expect("b")),
        "original bytes hit again"
    );
}

#[test]
fn a_policy_change_is_a_miss() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let files = example();
    let mut opts = options();
    let a = plinth::build_cached(&source(&files), &opts, &cache).expect("b");
    assert!(!hit(&a));
    // A new policy that fires: the cached result would hide its finding.
    let extra = plinth::policy::PolicyFile {
        path: "/policies/extra.rego".into(),
        text: "package main\n\nwarn_ns contains msg if {\n\tinput.kind == \"Namespace\"\n\tmsg := \"seen\"\n}\n".into(),
    };
    if let Some(p) = &mut opts.policies {
        p.extra.push(extra);
    }
    let b = plinth::build_cached(&source(&files), &opts, &cache).expect("b");
    assert!(!hit(&b), "a new policy is a new key");
    let uncached = plinth::build_source(&source(&files), &opts).expect("b");
    assert_eq!(outcome(&b), outcome(&uncached));
    assert!(outcome(&b).1.iter().any(|d| d.contains("seen")));
    // Turning the default library off is a change of options too.
    let mut off = options();
    if let Some(p) = &mut off.policies {
        p.default_library = false;
    }
    assert!(!hit(
        &plinth::build_cached(&source(&files), &off, &cache).expect("b")
    ));
}

#[test]
fn another_plinth_never_reads_this_ones_entries() {
    let dir = tempfile::tempdir().expect("tmp");
    let files = example();
    let opts = options();
    let this = Cache::new(dir.path());
    plinth::build_cached(&source(&files), &opts, &this).expect("b");
    assert!(hit(
        &plinth::build_cached(&source(&files), &opts, &this).expect("b")
    ));
    // A different plinth (another version, other schemas or policies built in) has another
    // fingerprint: the same directory holds nothing for it.
    let other = Cache::new(dir.path()).with_salt("plinth 9.9.9 with other schemas");
    let b = plinth::build_cached(&source(&files), &opts, &other).expect("b");
    assert!(!hit(&b));
    assert_ne!(
        this.key(&b.checked.snapshot, &opts),
        other.key(&b.checked.snapshot, &opts)
    );
}

#[test]
fn a_damaged_cache_is_only_a_miss() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let files = example();
    let opts = options();
    let first = plinth::build_cached(&source(&files), &opts, &cache).expect("b");
    // Truncate every entry.
    let mut n = 0;
    for sub in std::fs::read_dir(dir.path()).expect("dir") {
        for e in std::fs::read_dir(sub.expect("sub").path()).expect("dir") {
            let p = e.expect("e").path();
            let len = std::fs::metadata(&p).expect("meta").len();
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .expect("open")
                .set_len(len / 2)
                .expect("truncate");
            n += 1;
        }
    }
    assert!(n >= 1);
    let again = plinth::build_cached(&source(&files), &opts, &cache).expect("b");
    assert!(!hit(&again));
    assert_eq!(outcome(&first), outcome(&again));
    // It was rewritten whole.
    assert!(hit(
        &plinth::build_cached(&source(&files), &opts, &cache).expect("b")
    ));
}

/// A revision's objects live in the unit store: objects damaged there in place are found when
/// read, and the build compiles again instead of using them.
#[test]
fn damaged_objects_are_compiled_again() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let files = example();
    let opts = options();
    let first = plinth::build_cached(&source(&files), &opts, &cache).expect("b");
    assert!(
        damage_units(dir.path(), Part::Header) >= 1,
        "the objects are in unit packs"
    );
    let again = plinth::build_cached(&source(&files), &opts, &cache).expect("b");
    assert!(!hit(&again), "damaged objects are not used");
    assert_eq!(outcome(&first), outcome(&again));
}

/// A revision is its index and references into the unit store: the unit store's compaction
/// (every few compiles it keeps only what is used) keeps the units of the revisions kept, so
/// an older revision whose units no later compile used is still a hit, objects and all; and it
/// merges the small packs without copying the large live one again.
#[test]
fn compacting_the_unit_store_keeps_the_units_of_kept_revisions() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let opts = options();
    let old = example();
    let cold = plinth::build_source(&source(&old), &opts).expect("b");
    plinth::build_cached(&source(&old), &opts, &cache).expect("b");
    let pack_files = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.path().join("units"))
            .expect("units")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "pack"))
            .collect()
    };
    let first = pack_files();
    assert_eq!(first.len(), 1, "a cold compile writes one pack");
    // Later revisions: one project changed each time (the old revision's units of it are
    // used by no later compile; each compile offers new ones and flushes a pack).
    let mut files = old.clone();
    let er = "projects/er-capacity.yaml";
    let text = String::from_utf8(old[er].clone()).expect("utf-8");
    assert!(text.contains("pods: "), "example changed");
    for i in 0..plinth::cache::MAX_PACKS + 2 {
        let changed = text.replacen("pods: ", &format!("pods: {}", i + 1), 1);
        files.insert(er.to_owned(), changed.into_bytes());
        let b = plinth::build_cached(&source(&files), &opts, &cache).expect("b");
        assert!(b.lowered.is_some(), "{:?}", outcome(&b).1);
    }
    let packs = pack_files();
    assert!(
        packs.len() < plinth::cache::MAX_PACKS,
        "the unit store was compacted ({} packs)",
        packs.len()
    );
    // The small packs of the one-file compiles were merged; the large one of the cold compile,
    // whose units are live, was not copied again.
    assert!(
        packs.contains(&first[0]),
        "the cold compile's pack is kept as it is"
    );
    let again = plinth::build_cached(&source(&old), &opts, &cache).expect("b");
    assert!(hit(&again), "the old revision is still whole");
    assert_eq!(outcome(&again), outcome(&cold));
}

#[test]
fn errors_are_cached_too_and_build_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let mut files = example();
    let er = "projects/er-capacity.yaml".to_owned();
    let text = String::from_utf8(files[&er].clone()).expect("utf-8");
    files.insert(
        er,
        text.replacen("spec:", "spec:\n  bogusField: 1", 1)
            .into_bytes(),
    );
    let opts = options();
    let a = plinth::build_cached(&source(&files), &opts, &cache).expect("b");
    let b = plinth::build_cached(&source(&files), &opts, &cache).expect("b");
    assert!(hit(&b));
    assert!(a.lowered.is_none() && b.lowered.is_none());
    assert_eq!(outcome(&a), outcome(&b));
    assert!(outcome(&b).1.iter().any(|d| d.contains("bogusField")));
}

/// Compiled revisions are bounded: past `REVISIONS_KEPT`, the ones used longest ago go, and
/// the one just used stays a hit.
#[test]
fn old_revisions_are_evicted() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let opts = options();
    let mut files = example();
    let first = plinth::build_cached(&source(&files), &opts, &cache).expect("b");
    assert!(!hit(&first));
    let entries = || {
        std::fs::read_dir(dir.path())
            .expect("dir")
            .flatten()
            .filter(|d| d.file_name().len() == 2)
            .flat_map(|d| std::fs::read_dir(d.path()).expect("sub").flatten())
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count()
    };
    for i in 0..plinth::cache::REVISIONS_KEPT + 3 {
        // Another revision: a comment more.
        files.insert(format!("notes/n{i}.yaml"), b"# nothing\n".to_vec());
        // The first revision is used again halfway: it is not the oldest any more.
        if i == plinth::cache::REVISIONS_KEPT / 2 {
            let again = plinth::build_cached(&source(&example()), &opts, &cache).expect("b");
            assert!(hit(&again), "still kept");
        }
        plinth::build_cached(&source(&files), &opts, &cache).expect("b");
    }
    assert_eq!(entries(), plinth::cache::REVISIONS_KEPT);
    let again = plinth::build_cached(&source(&files), &opts, &cache).expect("b");
    assert!(hit(&again), "the last revision is kept");
    let first_again = plinth::build_cached(&source(&example()), &opts, &cache).expect("b");
    assert!(hit(&first_again), "a revision used recently is kept");
}

/// A cache filled by a compile of the example whose units then had `part` damaged in place,
/// and the example changed so that the whole-revision entry is not a hit but nearly every
/// unit is reused (a comment added to one project's file).
fn damaged(part: Part) -> (tempfile::TempDir, Cache, BTreeMap<String, Vec<u8>>) {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let mut files = example();
    plinth::build_cached(&source(&files), &options(), &cache).expect("b");
    assert!(
        damage_units(dir.path(), part) >= 1,
        "the units are in packs"
    );
    files
        .get_mut("projects/er-capacity.yaml")
        .expect("example changed")
        .extend_from_slice(b"# a comment\n");
    (dir, cache, files)
}

/// Unit results whose header is damaged in place (same size, so only their checksums can tell)
/// are misses: the next compile lowers those units again and equals a cold compile.
#[test]
fn damaged_units_are_lowered_again() {
    let (_dir, cache, files) = damaged(Part::Header);
    let opts = options();
    let warm = plinth::build_cached(&source(&files), &opts, &cache).expect("b");
    assert!(!hit(&warm));
    let cold = plinth::build_source(&source(&files), &opts).expect("b");
    assert!(cold.lowered.is_some(), "the example compiles");
    assert_eq!(outcome(&warm), outcome(&cold));
}

/// A unit's objects' texts are read from the store only when one is read: a text damaged
/// there is found then. It reads as `null` and the compile says so (`texts_lost`, the error
/// every consumer checks before acting); the pack is no longer read, so the next compile
/// lowers those units again and equals a cold compile.
#[test]
fn a_damaged_text_is_lost_when_read_and_lowered_again_after() {
    let (dir, cache, files) = damaged(Part::Body);
    let opts = options();
    let packs: Vec<std::path::PathBuf> = std::fs::read_dir(dir.path().join("units"))
        .expect("units")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "idx"))
        .collect();
    let cold = plinth::build_source(&source(&files), &opts).expect("b");
    let warm = plinth::build_cached(&source(&files), &opts, &cache).expect("b");
    let lowered = warm.lowered.as_ref().expect("compiled");
    // Reading the objects finds the damage.
    assert_ne!(outcome(&warm), outcome(&cold));
    assert!(lowered.texts_lost());
    assert!(lowered.texts_intact().is_err());
    assert!(
        packs.iter().all(|p| !p.exists()),
        "the damaged pack is no longer read"
    );
    let again = plinth::build_cached(&source(&files), &opts, &cache).expect("b");
    assert_eq!(outcome(&again), outcome(&cold));
    assert!(again.lowered.as_ref().is_some_and(|l| !l.texts_lost()));
}

/// A stored revision is its units: loaded, it lists them with how many objects each holds (what
/// a plan compares), and its objects read back from them are the compile's.
#[test]
fn a_revision_is_its_units() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let opts = options();
    let files = example();
    let built = plinth::build_cached(&source(&files), &opts, &cache).expect("b");
    let lowered = built.lowered.as_ref().expect("compiled");
    let key = cache.key(&built.checked.snapshot, &opts);
    let entry = cache.load(&key).expect("stored");
    let summary = entry.summary().expect("compiled");
    assert_eq!(
        Some(&summary),
        plinth::plan::UnitSummary::of(lowered).as_ref()
    );
    let objects: usize = summary.clusters.values().map(|c| c.objects).sum();
    assert_eq!(objects, lowered.object_count());
    let show = |l: &plinth::lower::Lowered| serde_json::to_string(l).expect("json");
    assert_eq!(show(&entry.lowered().expect("reads back")), show(lowered));
    assert_eq!(entry.index(), Some(&plinth::plan::index_of(lowered)));
    // With every unit shared, nothing is read.
    let all: plinth::plan::Shared = summary
        .clusters
        .iter()
        .map(|(c, u)| (c.clone(), u.units.keys().cloned().collect()))
        .collect();
    assert_eq!(entry.outside(&all).expect("reads").object_count(), 0);
}
