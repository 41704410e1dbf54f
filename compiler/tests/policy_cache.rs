//! The policy result memo is invisible: a run that takes rule results from the memo reports
//! byte-identical diagnostics to a run that evaluates every rule, whatever changed between the
//! runs (a spec moved to other lines, a spec edited, another spec a platform-wide rule reads, a
//! policy's text), and a damaged memo is only a miss.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use plinth::cache::Cache;
use plinth::load::MemSource;
use plinth::policy::{Memo, Memoized, PolicyFile};

/// A user policy: one rule reading only `input`, one reading the whole platform.
const POLICY: &str = r#"package main

warn_project contains {"msg": msg, "location": {"field": "spec.owners"}} if {
	input.kind == "Project"
	msg := sprintf("project `%s` has %d owners", [input.metadata.name, count(input.spec.owners)])
}

warn_platform contains msg if {
	input.kind == "Project"
	n := count(data.plinth.specs.Project)
	msg := sprintf("project `%s` is one of %d projects", [input.metadata.name, n])
}

deny_image contains msg if {
	some c in input.spec.template.spec.containers
	endswith(c.image, ":never")
	msg := sprintf("container `%s` is never", [c.name])
}
"#;

/// The persistent memo, counting what it answered: every hit of an entry an earlier run kept
/// (not one put by this run: inputs of the same content within a run, or evaluated again after
/// another engine missed) and every put, and apart, the per-unit entries' hits and puts and
/// the per-rule lookups of objects.
struct Counting {
    inner: plinth::cache::PolicyMemo,
    /// What this run put: `(set, rule, input)`.
    put_here: std::sync::Mutex<std::collections::BTreeSet<(String, String, String)>>,
    hits: AtomicUsize,
    puts: AtomicUsize,
    unit_hits: AtomicUsize,
    unit_puts: AtomicUsize,
    rule_gets: AtomicUsize,
    /// Results held for the run only (decided natively).
    scratch_puts: AtomicUsize,
}

impl Counting {
    fn new(inner: plinth::cache::PolicyMemo) -> Counting {
        let zero = || AtomicUsize::new(0);
        Counting {
            inner,
            put_here: Default::default(),
            hits: zero(),
            puts: zero(),
            unit_hits: zero(),
            unit_puts: zero(),
            rule_gets: zero(),
            scratch_puts: zero(),
        }
    }

    fn count(n: &AtomicUsize) -> usize {
        n.load(Ordering::Relaxed)
    }

    /// Note an entry this run put (its later hits are not an earlier run's).
    fn note_put(&self, set: &str, rule: &str, input: &str) {
        self.put_here.lock().expect("lock").insert((
            set.to_owned(),
            rule.to_owned(),
            input.to_owned(),
        ));
    }
}

impl Memo for Counting {
    fn fingerprint(&self) -> &str {
        self.inner.fingerprint()
    }
    fn get(&self, set: &str, rule: &str, input: &str) -> Option<Memoized> {
        let r = self.inner.get(set, rule, input);
        let key = (set.to_owned(), rule.to_owned(), input.to_owned());
        if r.is_some() && !self.put_here.lock().expect("lock").contains(&key) {
            self.hits.fetch_add(1, Ordering::Relaxed);
        }
        if rule == "unit-bundle" {
            if r.is_some() {
                self.unit_hits.fetch_add(1, Ordering::Relaxed);
            }
        } else if input.starts_with("object:") {
            self.rule_gets.fetch_add(1, Ordering::Relaxed);
        }
        r
    }
    fn put(&self, set: &str, rule: &str, input: &str, result: Memoized) {
        self.puts.fetch_add(1, Ordering::Relaxed);
        self.note_put(set, rule, input);
        if rule == "unit-bundle" {
            self.unit_puts.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.put(set, rule, input, result);
    }
    fn put_scratch(&self, set: &str, rule: &str, input: &str, result: Memoized) {
        self.scratch_puts.fetch_add(1, Ordering::Relaxed);
        self.note_put(set, rule, input);
        self.inner.put_scratch(set, rule, input, result);
    }
    fn finish(&self, set: &str) {
        self.inner.finish(set);
    }
}

fn options(policy: &str) -> plinth::Options {
    plinth::Options {
        policies: Some(plinth::PolicyConfig {
            default_library: true,
            extra: vec![PolicyFile {
                path: "extra/main.rego".into(),
                text: policy.into(),
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Diagnostics of a check, sorted and printed with their spans, and (hits, puts) of the memo.
fn run(
    files: &BTreeMap<String, String>,
    policy: &str,
    cache: Option<&Cache>,
) -> (Vec<String>, usize, usize) {
    let mut s = MemSource::new();
    for (p, t) in files {
        s = s.with(p, t.as_bytes().to_vec());
    }
    let mut opts = options(policy);
    let counting = cache.map(|c| Arc::new(Counting::new(c.policy_memo())));
    if let Some(c) = &counting {
        opts.policy_memo = Some(plinth::PolicyMemo(c.clone()));
    }
    let checked = plinth::check_source(&s, &opts).expect("load");
    let diags = checked
        .diagnostics
        .into_sorted()
        .into_iter()
        .map(|d| format!("{d:?}"))
        .collect();
    let (hits, puts) = counting.map_or((0, 0), |c| {
        (
            c.hits.load(Ordering::Relaxed),
            c.puts.load(Ordering::Relaxed),
        )
    });
    (diags, hits, puts)
}

fn policy_diags(diags: &[String]) -> Vec<&String> {
    diags.iter().filter(|d| d.contains("Policy")).collect()
}

#[test]
fn warm_runs_report_what_cold_runs_report_through_edits_and_moves() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let mut files = common::example();

    let cold = run(&files, POLICY, None).0;
    assert!(
        cold.iter().any(|d| d.contains("project `er-capacity` has")),
        "the input-only rule fires: {:#?}",
        policy_diags(&cold)
    );
    assert!(cold.iter().any(|d| d.contains("is one of 4 projects")));
    // Inputs of the same content within one run share results.
    let (first, within_run, puts) = run(&files, POLICY, Some(&cache));
    assert_eq!(first, cold);
    assert!(puts > 0);
    assert_eq!(within_run, 0, "an empty memo has nothing of earlier runs");
    let (warm, hits, puts) = run(&files, POLICY, Some(&cache));
    assert_eq!(warm, cold);
    assert!(hits > within_run, "the memo is used");
    assert_eq!(
        puts, 0,
        "nothing changed, so every memoisable result was memoised"
    );

    // A spec moved to other lines: findings are reported at its new lines.
    let finding = |diags: &[String]| {
        diags
            .iter()
            .find(|d| d.contains("project `er-capacity` has"))
            .cloned()
            .expect("the finding on er-capacity")
    };
    let unmoved = finding(&cold);
    let path = "projects/er-capacity.yaml".to_owned();
    let moved = format!("# moved\n# down\n# three lines\n{}", files[&path]);
    files.insert(path.clone(), moved);
    let cold = run(&files, POLICY, None).0;
    let (warm, hits, _) = run(&files, POLICY, Some(&cache));
    assert!(hits > within_run);
    assert_eq!(warm, cold);
    assert_ne!(finding(&cold), unmoved, "the finding moved with its spec");

    // One spec edited: only its findings change.
    let before = cold;
    let text = files[&path].replace(
        "  owners:\n",
        "  owners:\n    - extra.owner@stbrigid.example\n",
    );
    assert_ne!(text, files[&path]);
    files.insert(path.clone(), text);
    let cold = run(&files, POLICY, None).0;
    let (warm, _, puts) = run(&files, POLICY, Some(&cache));
    assert_eq!(warm, cold);
    assert!(puts > 0, "the edited spec is evaluated again");
    let changed: Vec<&String> = cold.iter().filter(|d| !before.contains(d)).collect();
    assert!(!changed.is_empty());
    assert!(
        changed.iter().all(|d| d.contains("er-capacity")),
        "{changed:#?}"
    );

    // Another project added: the platform-wide rule's findings on unchanged projects change
    // (it is memoised keyed by the `data.plinth.specs.Project` it reads; a result memoised by
    // the input alone would still say 4).
    files.insert(
        "projects/zz-new.yaml".into(),
        files["projects/bed-management.yaml"].replace("name: bed-management", "name: zz-new"),
    );
    let cold = run(&files, POLICY, None).0;
    assert!(
        cold.iter().any(|d| d.contains("is one of 5 projects")),
        "{:#?}",
        policy_diags(&cold)
    );
    let (warm, hits, _) = run(&files, POLICY, Some(&cache));
    assert!(hits > within_run);
    assert_eq!(warm, cold);
    assert!(!warm.iter().any(|d| d.contains("is one of 4 projects")));
}

#[test]
fn a_corrupt_memo_is_a_miss_and_a_changed_policy_is_another_set() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let files = common::example();
    let cold = run(&files, POLICY, None).0;
    run(&files, POLICY, Some(&cache));
    let (_, warm_hits, warm_puts) = run(&files, POLICY, Some(&cache));
    assert_eq!(warm_puts, 0);
    let memo_dir = dir.path().join("policy");
    let written: Vec<std::path::PathBuf> = std::fs::read_dir(&memo_dir)
        .expect("policy/ written")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(
        written.len(),
        2,
        "one file per policy set: the library's and the user's"
    );
    for p in &written {
        // One entry damaged in the middle of the file: the whole file is not trusted.
        let text = std::fs::read_to_string(p).expect("read");
        let mut lines: Vec<&str> = text.lines().collect();
        assert!(lines.len() > 2, "a head and entries, a line each");
        let middle = lines.len() / 2;
        lines[middle] = "[\"x\", {\"value\": ";
        std::fs::write(p, lines.join("\n")).expect("write");
    }
    let (warm, hits, puts) = run(&files, POLICY, Some(&cache));
    assert_eq!(warm, cold);
    assert!(puts > 0, "a corrupt memo is a miss");
    assert!(hits < warm_hits);
    // ... and is written again whole.
    let (warm, hits, puts) = run(&files, POLICY, Some(&cache));
    assert_eq!(warm, cold);
    assert_eq!((hits, puts), (warm_hits, 0));

    // A changed policy text: its rules are evaluated again (the old messages are not reused).
    let edited = POLICY.replace("has %d owners", "counts %d owners");
    let cold = run(&files, &edited, None).0;
    assert!(cold.iter().any(|d| d.contains("` counts ")));
    let (warm, _, _) = run(&files, &edited, Some(&cache));
    assert_eq!(warm, cold);
    assert!(
        !warm
            .iter()
            .any(|d| d.contains("` has ") && d.contains("owners"))
    );
}

#[test]
fn a_cached_build_memoises_policy_results() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let files = common::example();
    let mut s = MemSource::new();
    for (p, t) in &files {
        s = s.with(p, t.as_bytes().to_vec());
    }
    let built = plinth::build_cached(&s, &options(POLICY), &cache).expect("build");
    assert!(!built.checked.diagnostics.has_errors());
    let memo_files = std::fs::read_dir(dir.path().join("policy"))
        .expect("policy/")
        .count();
    assert_eq!(memo_files, 2);
}

/// What the native rules decided is held for the run only: a cold build with the default
/// library alone keeps one entry per unit and per spec document (their bundles), not one per
/// object and rule; the next build replays them, evaluates the edited project's inputs again
/// and reports what a cold build reports.
#[test]
fn natively_decided_results_are_kept_only_in_bundles() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let mut files = common::example();
    let none = "package main\n";
    let build = |files: &BTreeMap<String, String>| {
        let mut opts = options(none);
        let memo = Arc::new(Counting::new(cache.policy_memo()));
        opts.policy_memo = Some(plinth::PolicyMemo(memo.clone()));
        let built = plinth::build_cached(&common::source(files), &opts, &cache).expect("build");
        let cold = plinth::build_source(&common::source(files), &options(none)).expect("build");
        assert_eq!(common::outcome(&built), common::outcome(&cold));
        (
            Counting::count(&memo.scratch_puts),
            Counting::count(&memo.puts),
        )
    };
    let keys = || -> Vec<String> {
        let mut keys = Vec::new();
        for e in std::fs::read_dir(dir.path().join("policy")).expect("policy/") {
            let text = std::fs::read_to_string(e.expect("entry").path()).expect("read");
            for line in text.lines().skip(1) {
                let v: serde_json::Value = serde_json::from_str(line).expect("a line");
                keys.push(v[0].as_str().expect("a key").to_owned());
            }
        }
        keys
    };
    let (scratch, puts) = build(&files);
    assert!(scratch > 100, "the native rules decided ({scratch})");
    let kept = keys();
    assert_eq!(kept.len(), puts, "what was put is kept");
    assert!(kept.len() > 10, "bundles are kept ({})", kept.len());
    assert!(
        kept.iter().all(|k| k.ends_with(" unit-bundle")),
        "only bundles are kept: {:?}",
        kept.iter().find(|k| !k.ends_with(" unit-bundle"))
    );
    let path = "projects/er-capacity.yaml".to_owned();
    let text = files[&path].replacen("pods: ", "pods: 1", 1);
    assert_ne!(text, files[&path]);
    files.insert(path, text);
    let (scratch, puts) = build(&files);
    assert!(
        scratch > 0 && puts > 0,
        "the edit is evaluated again: {scratch}, {puts}"
    );
    assert!(keys().iter().all(|k| k.ends_with(" unit-bundle")));
}

/// The policy set written last, read beside from when the cache is opened (as `build` and
/// `plan` open it), is the set read when the compile asks for it: the next build replays its
/// bundles; a guess that names another set (a newer file of another set) is dropped and the
/// set asked for is read as before.
#[test]
fn the_policy_set_read_beside_is_the_one_asked_for_or_dropped() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut files = common::example();
    let none = "package main\n";
    let build = |files: &BTreeMap<String, String>, cache: &Cache| {
        let mut opts = options(none);
        let memo = Arc::new(Counting::new(cache.policy_memo()));
        opts.policy_memo = Some(plinth::PolicyMemo(memo.clone()));
        let built = plinth::build_cached(&common::source(files), &opts, cache).expect("build");
        let cold = plinth::build_source(&common::source(files), &options(none)).expect("build");
        assert_eq!(common::outcome(&built), common::outcome(&cold));
        Counting::count(&memo.unit_hits)
    };
    assert_eq!(build(&files, &Cache::new(dir.path())), 0, "a cold cache");
    let edit = |files: &mut BTreeMap<String, String>| {
        let path = "projects/er-capacity.yaml".to_owned();
        let text = files[&path].replacen("pods: ", "pods: 1", 1);
        assert_ne!(text, files[&path]);
        files.insert(path, text);
    };
    edit(&mut files);
    let hits = build(&files, &Cache::new(dir.path()).reading_policies());
    assert!(hits > 10, "the set read beside replays the units ({hits})");
    // A newer file of another set: the guess is wrong, the set asked for is read.
    std::fs::write(dir.path().join("policy").join("decoy.json"), "{}\n").expect("write");
    edit(&mut files);
    let hits = build(&files, &Cache::new(dir.path()).reading_policies());
    assert!(hits > 10, "the set asked for is read ({hits})");
}

/// A run that adds a few results appends them to the set's log rather than writing its file
/// again; the next run reads file and log (no result is evaluated twice), and a damaged log
/// line is only a miss.
#[test]
fn a_few_new_results_are_appended_and_read_back() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let mut files = common::example();
    run(&files, POLICY, Some(&cache));
    let er = "projects/er-capacity.yaml".to_owned();
    let text = files[&er].replacen("pods: ", "pods: 1", 1);
    files.insert(er, text);
    let cold = run(&files, POLICY, None).0;
    let (warm, _, puts) = run(&files, POLICY, Some(&cache));
    assert_eq!(warm, cold);
    assert!(puts > 0, "the changed project's results are new");
    let logs = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(dir.path().join("policy"))
            .expect("policy/")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "log"))
            .collect()
    };
    assert!(!logs().is_empty(), "a few new results are appended");
    let (again, _, puts) = run(&files, POLICY, Some(&cache));
    assert_eq!(again, cold);
    assert_eq!(puts, 0, "the appended results are read back");
    for log in logs() {
        let mut f = std::fs::File::options()
            .append(true)
            .open(&log)
            .expect("open");
        std::io::Write::write_all(&mut f, b"[\"x\", {\"Value\": ").expect("write");
    }
    let (again, _, _) = run(&files, POLICY, Some(&cache));
    assert_eq!(again, cold, "a damaged line is skipped");
}

/// A compile through the cache keeps each unit's policy findings as one entry; the next compile
/// that reuses a unit replays them with one lookup instead of one per object and rule, and
/// reports exactly what a cold compile reports — through a project added and a project edited.
#[test]
fn reused_units_replay_their_policy_findings_whole() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let mut files = common::example();
    // A finding on objects, so that replayed entries carry findings.
    let policy = format!(
        "{POLICY}\nwarn_namespace contains msg if {{\n\tinput.kind == \"Namespace\"\n\tmsg := sprintf(\"namespace `%s`\", [input.metadata.name])\n}}\n"
    );
    let build = |files: &BTreeMap<String, String>| {
        let mut opts = options(&policy);
        let memo = Arc::new(Counting::new(cache.policy_memo()));
        opts.policy_memo = Some(plinth::PolicyMemo(memo.clone()));
        let built = plinth::build_cached(&common::source(files), &opts, &cache).expect("build");
        let cold = plinth::build_source(&common::source(files), &options(&policy)).expect("build");
        assert_eq!(
            common::outcome(&built),
            common::outcome(&cold),
            "cached equals cold"
        );
        assert!(
            common::outcome(&cold)
                .1
                .iter()
                .any(|d| d.contains("namespace `")),
            "the object rule fires"
        );
        (
            Counting::count(&memo.unit_hits),
            Counting::count(&memo.unit_puts),
            Counting::count(&memo.rule_gets),
        )
    };
    let (hits, puts, cold_gets) = build(&files);
    assert_eq!(hits, 0);
    assert!(puts > 10, "each unit's findings are kept ({puts})");
    // Another revision (a project more): the units it does not touch are replayed.
    files.insert(
        "projects/zz-new.yaml".into(),
        files["projects/bed-management.yaml"]
            .replace("name: bed-management", "name: zz-new")
            .replace("    memory: 128Gi\n    gpu: 2\n", "    memory: 128Gi\n"),
    );
    let (hits, puts, gets) = build(&files);
    assert!(hits > 10 && puts > 0, "replayed: {hits} hits, {puts} puts");
    assert!(
        gets * 3 < cold_gets,
        "few per-rule lookups are left ({gets} of {cold_gets})"
    );
    // One project edited: its units miss, the others are replayed.
    let path = "projects/er-capacity.yaml".to_owned();
    let text = files[&path].replacen("pods: ", "pods: 1", 1);
    assert_ne!(text, files[&path]);
    files.insert(path, text);
    let (hits2, puts, _) = build(&files);
    assert!(
        hits2 > 0 && hits2 < hits && puts > 0,
        "{hits2} hits, {puts} puts"
    );
}

/// An unchanged spec whose finding reads another project's entry in `data.plinth.resolved`
/// (a PII dataset granted to a project that moves off production): the warm run, which makes
/// only the entries its inputs left to evaluate name, reports what the cold run does.
#[test]
fn a_finding_on_another_projects_entry_follows_that_project() {
    let dir = tempfile::tempdir().expect("tmp");
    let cache = Cache::new(dir.path());
    let mut files = common::example();
    // No user rule: the default library alone, answered by the memo and natively.
    let none = "package main\n";
    let cold = run(&files, none, None).0;
    let outside = |diags: &[String]| {
        diags
            .iter()
            .any(|d| d.contains("granted to project `bed-management`") && d.contains("research-b"))
    };
    assert!(!outside(&cold), "{:#?}", policy_diags(&cold));
    assert_eq!(run(&files, none, Some(&cache)).0, cold);
    assert_eq!(run(&files, none, Some(&cache)).0, cold);
    let path = "projects/bed-management.yaml".to_owned();
    let moved = files[&path].replace("clusters: [prod-a]", "clusters: [research-b]");
    assert_ne!(moved, files[&path]);
    files.insert(path, moved);
    let cold = run(&files, none, None).0;
    assert!(outside(&cold), "{:#?}", policy_diags(&cold));
    let (warm, hits, _) = run(&files, none, Some(&cache));
    assert!(hits > 0, "the memo answered the unchanged inputs");
    assert_eq!(warm, cold);
}
