//! Plan fidelity: what the agent applies is what `plinth plan` shows — and nothing the plan
//! refuses.
//!
//! A synthetic platform (`plinth::generate::platform(6, seed)`) goes through a seeded random
//! sequence of 100 commits — quota edits up and down, display-name edits, projects added and
//! deleted, spec files renamed and shifted by a line (provenance only: no change), reverts,
//! approvals added for what the last plan refused (and left in place afterwards, or cleared),
//! and now and then a commit that does not build (refused, then reverted). After every commit
//! the agent takes one step. When `plinth::plan::plan` from the commit the agent applied before
//! to the new one refuses something in the cluster (a destructive change without an approval
//! added since), the agent must refuse the commit and write nothing; otherwise the objects it
//! created, updated and pruned must be exactly the plan's creates, updates and deletes, key for
//! key.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::git::Repo;
use common::*;
use kube_testserver::TestServer;
use plinth::generate::Rng;
use plinth::load::git::GitRepo;
use plinth::lower::{Lowered, ObjectKey};
use plinth::plan::{self, PlanOptions};
use plinth_agent::gitops::{Agent, Config, Event, Probe, Refusal};
use plinth_agent::metrics::Metrics;
use plinth_agent::report::{Action, PruneAction};
use plinth_agent::source::{Auth, Remote};
use plinth_agent::status::{LogSink, Poster, Retry};

const COMMITS: usize = 100;
const SEED: u64 = 20_261_120;

/// Creates, updates and deletes by key.
#[derive(Debug, Default, PartialEq, Eq)]
struct Changes {
    create: BTreeSet<ObjectKey>,
    update: BTreeSet<ObjectKey>,
    delete: BTreeSet<ObjectKey>,
}

impl Changes {
    fn len(&self) -> usize {
        self.create.len() + self.update.len() + self.delete.len()
    }
}

/// The platform at a commit, compiled by the test itself; `None` when it does not build.
fn try_compile(
    repo: &GitRepo,
    sha: &str,
    cache: &mut BTreeMap<String, Lowered>,
) -> Option<Lowered> {
    if let Some(l) = cache.get(sha) {
        return Some(l.clone());
    }
    let id = repo.resolve(sha).unwrap();
    let src = repo.source(id, "platform").unwrap();
    let built = plinth::build_source(&src, &plinth::Options::default()).unwrap();
    let lowered = built.lowered?;
    cache.insert(sha.to_owned(), lowered.clone());
    Some(lowered)
}

fn compile(repo: &GitRepo, sha: &str, cache: &mut BTreeMap<String, Lowered>) -> Lowered {
    try_compile(repo, sha, cache).unwrap_or_else(|| panic!("commit {sha} does not build"))
}

/// The plan the agent must follow (its delete budget is the plan's mass-deletion share).
fn plan_of(base: &Lowered, head: &Lowered) -> plan::Plan {
    plan::plan(base, head, &PlanOptions::default())
}

fn planned(base: &Lowered, head: &Lowered) -> Changes {
    let p = plan_of(base, head);
    let mut c = Changes::default();
    for ch in p.changes.into_iter().filter(|c| c.cluster == "prod") {
        match ch.action {
            plan::Action::Create => c.create.insert(ch.key),
            plan::Action::Update => c.update.insert(ch.key),
            plan::Action::Delete => c.delete.insert(ch.key),
        };
    }
    c
}

fn applied(report: &plinth_agent::Report) -> Changes {
    let mut c = Changes::default();
    for o in &report.objects {
        match o.action {
            Action::Create => {
                c.create.insert(o.key.clone());
            }
            Action::Update => {
                c.update.insert(o.key.clone());
            }
            _ => {}
        }
    }
    for p in &report.prune {
        if p.action == PruneAction::Delete {
            c.delete.insert(p.key.clone());
        }
    }
    c
}

/// Add `spec.approvals` entries (YAML list items from `plinth::plan::approvals_yaml`) to the
/// platform's Platform document.
fn add_approvals(repo: &Repo, yaml: &str) {
    let path = "platform/plinth.yaml";
    let text = repo.read(path).unwrap();
    let items: String = yaml.lines().skip(1).map(|l| format!("  {l}\n")).collect();
    let text = if text.contains("\n  approvals:\n") {
        text.replacen("\n  approvals:\n", &format!("\n  approvals:\n{items}"), 1)
    } else {
        text.replacen("\nspec:\n", &format!("\nspec:\n  approvals:\n{items}"), 1)
    };
    repo.write(path, &text);
}

/// Remove every approval from the Platform document (`false`: there was none).
fn clear_approvals(repo: &Repo) -> bool {
    let path = "platform/plinth.yaml";
    let text = repo.read(path).unwrap();
    let mut out = String::new();
    let mut inside = false;
    let mut found = false;
    for line in text.split_inclusive('\n') {
        if line == "  approvals:\n" {
            inside = true;
            found = true;
            continue;
        }
        if inside && line.starts_with("    ") {
            continue;
        }
        inside = false;
        out.push_str(line);
    }
    if found {
        repo.write(path, &out);
    }
    found
}

/// The edits of the random walk.
struct Walk {
    rng: Rng,
    /// The number of the next project added (`extra-NNN`; the generated projects are
    /// referenced by other specs and never deleted).
    next: usize,
}

fn replace_number(text: &str, prefix: &str, suffix: &str, value: u64) -> Option<String> {
    let start = text.find(prefix)? + prefix.len();
    let end = start + text[start..].find(suffix)?;
    Some(format!("{}{value}{}", &text[..start], &text[end..]))
}

impl Walk {
    fn files(repo: &Repo, dir: &str) -> Vec<String> {
        let mut out = Vec::new();
        for sub in ["projects", "datasets", "models", "gpu", "teams"] {
            let d = repo.work.join(dir).join(sub);
            if let Ok(rd) = std::fs::read_dir(&d) {
                for e in rd.flatten() {
                    out.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
        out.sort();
        out
    }

    /// One edit of the working tree; returns what it was.
    fn edit(&mut self, repo: &Repo) -> String {
        let files = Walk::files(repo, "platform");
        let projects: Vec<&String> = files
            .iter()
            .filter(|f| {
                repo.read(&format!("platform/{f}"))
                    .unwrap()
                    .contains("kind: Project")
            })
            .collect();
        let roll = self.rng.range(0, 99);
        match roll {
            0..=29 => {
                let f = (*self.rng.pick(&projects)).clone();
                let path = format!("platform/{f}");
                let text = repo.read(&path).unwrap();
                let new = match self.rng.range(0, 2) {
                    0 => {
                        replace_number(&text, "quota:\n    cpu: \"", "\"", self.rng.range(16, 128))
                    }
                    1 => replace_number(&text, "    memory: ", "Gi", self.rng.range(64, 512)),
                    _ => replace_number(&text, "    pods: ", "\n", self.rng.range(50, 400)),
                };
                match new {
                    Some(t) => {
                        repo.write(&path, &t);
                        format!("quota of {f}")
                    }
                    None => "nothing".into(),
                }
            }
            30..=39 => {
                let f = (*self.rng.pick(&projects)).clone();
                let path = format!("platform/{f}");
                let text = repo.read(&path).unwrap();
                match text.find("  displayName: ") {
                    Some(i) => {
                        let end = i + text[i..].find('\n').unwrap();
                        let t = format!(
                            "{}  displayName: Team {}{}",
                            &text[..i],
                            self.rng.range(1, 999),
                            &text[end..]
                        );
                        repo.write(&path, &t);
                        format!("display name of {f}")
                    }
                    None => "nothing".into(),
                }
            }
            40..=54 => {
                let name = format!("extra-{:03}", self.next);
                self.next += 1;
                let cpu = self.rng.range(4, 64).to_string();
                let (p, t) = project(&name, Some(&cpu));
                repo.write(&format!("platform/{p}"), &t);
                format!("add {name}")
            }
            55..=64 if files.iter().any(|f| f.contains("/extra-")) => {
                // Projects the walk added (reverts may have brought back or taken away some).
                let added: Vec<&String> = files.iter().filter(|f| f.contains("/extra-")).collect();
                let f = (*self.rng.pick(&added)).clone();
                repo.remove(&format!("platform/{f}"));
                format!("delete {f}")
            }
            65..=74 => {
                let f = self.rng.pick(&files).clone();
                let (dir, name) = f.split_once('/').unwrap();
                let to = if dir == "teams" {
                    format!("projects/{name}")
                } else {
                    format!("teams/{name}")
                };
                if files.contains(&to) {
                    return "nothing".into();
                }
                repo.rename(&format!("platform/{f}"), &format!("platform/{to}"));
                format!("rename {f} to {to}")
            }
            _ => {
                let f = self.rng.pick(&files).clone();
                let path = format!("platform/{f}");
                let text = repo.read(&path).unwrap();
                repo.write(
                    &path,
                    &format!("# note {}\n{text}", self.rng.range(0, 9999)),
                );
                format!("shift {f} by a line")
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_applies_exactly_what_the_plan_shows() {
    let started = Instant::now();
    let s = Arc::new(TestServer::start().await.unwrap());
    let _controllers = Controllers::start(Arc::clone(&s), Duration::ZERO);
    let repo = Repo::new();
    for (path, text) in plinth::generate::platform(6, SEED) {
        repo.write(&format!("platform/{path}"), &text);
    }
    let mut last_applied = repo.publish("the generated platform");

    let cache = tempfile::tempdir().unwrap();
    let remote = Remote {
        url: repo.file_url(),
        branch: "main".into(),
        auth: Auth::default(),
    };
    let mut cfg = Config::new(remote, cache.path().to_path_buf(), "prod", "platform");
    cfg.compile.policies = false;
    cfg.apply.prune = true;
    cfg.apply.health_timeout = Duration::from_secs(10);
    cfg.apply.poll = Duration::from_millis(20);
    cfg.apply.concurrency = 8;
    let metrics = Arc::new(Metrics::new("prod"));
    let poster = Poster::spawn(Arc::new(LogSink), Retry::default(), Arc::clone(&metrics));
    let probe = Arc::new(Probe::new(Duration::from_secs(600)));
    let mut agent = Agent::new(cfg, cluster(&s, 2).await, poster, metrics, probe).unwrap();

    let git_repo = GitRepo::discover(&repo.work).unwrap();
    let mut lowered: BTreeMap<String, Lowered> = BTreeMap::new();
    let empty = Lowered::default();

    // The first commit: everything is created.
    let step = agent.step(true).await;
    assert!(
        matches!(step.event, Event::Applied { .. }),
        "{:?}",
        step.event
    );
    let report = step.report.unwrap();
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    let head = compile(&git_repo, &last_applied, &mut lowered);
    assert_eq!(applied(&report), planned(&empty, &head));

    let mut walk = Walk {
        rng: Rng::new(SEED),
        next: 0,
    };
    let mut pending_fix = false;
    let mut kinds: BTreeMap<&str, usize> = BTreeMap::new();
    let mut total_changes = 0;
    let mut refused_by_plan = 0;
    // What the last plan refused: the walk approves it now and then.
    let mut to_approve = String::new();
    let mut step_time = Duration::ZERO;
    for i in 0..COMMITS {
        let what: String;
        if pending_fix {
            repo.git(&["revert", "--no-edit", "HEAD"]);
            what = "revert the broken commit".into();
            *kinds.entry("revert").or_default() += 1;
        } else {
            let roll = walk.rng.range(0, 99);
            if roll < 12 {
                let depth = walk.rng.range(0, 2);
                let target = format!("HEAD~{depth}");
                let ok = common::git::git_cmd(&repo.work)
                    .args(["revert", "--no-edit", &target])
                    .output()
                    .unwrap()
                    .status
                    .success();
                if !ok {
                    let _ = common::git::git_cmd(&repo.work)
                        .args(["revert", "--abort"])
                        .output();
                    repo.git(&["revert", "--no-edit", "HEAD"]);
                }
                what = format!("revert {}", if ok { target } else { "HEAD".into() });
                *kinds.entry("revert").or_default() += 1;
            } else if roll < 30 && !to_approve.is_empty() {
                // Approve what the plan refused (the entries stay in place afterwards).
                add_approvals(&repo, &to_approve);
                repo.commit("approve the refused changes");
                what = "approve".into();
                *kinds.entry("approve").or_default() += 1;
            } else if roll < 33 && clear_approvals(&repo) {
                repo.commit("clear the approvals");
                what = "clear approvals".into();
                *kinds.entry("clear").or_default() += 1;
            } else if roll < 38 {
                let files = Walk::files(&repo, "platform");
                let f = walk.rng.pick(&files).clone();
                let path = format!("platform/{f}");
                let text = repo.read(&path).unwrap();
                repo.write(&path, &text.replace("spec:\n", "spec:\n  bogus: 1\n"));
                repo.commit("a commit that does not build");
                what = format!("break {f}");
                *kinds.entry("broken").or_default() += 1;
            } else {
                let ops = walk.rng.range(1, 3);
                let done: Vec<String> = (0..ops).map(|_| walk.edit(&repo)).collect();
                for d in &done {
                    let k = d.split(' ').next().unwrap();
                    *kinds
                        .entry(match k {
                            "quota" | "display" => "edit",
                            "add" => "add",
                            "delete" => "delete",
                            "rename" => "rename",
                            "shift" => "shift",
                            _ => "nothing",
                        })
                        .or_default() += 1;
                }
                repo.commit(&done.join(", "));
                what = done.join(", ");
            }
        }
        repo.push();
        let sha = repo.head();
        let t = Instant::now();
        let step = agent.step(true).await;
        step_time += t.elapsed();
        // Whether the commit builds, as the test's own compile says (a revert can bring a
        // broken commit back).
        let expect_refusal = try_compile(&git_repo, &sha, &mut lowered).is_none();
        pending_fix = expect_refusal;
        if expect_refusal {
            assert!(
                matches!(
                    &step.event,
                    Event::Refused {
                        refusal: Refusal::Check { .. },
                        ..
                    }
                ),
                "commit {i} ({what}): {:?}",
                step.event
            );
            continue;
        }
        let base = compile(&git_repo, &last_applied, &mut lowered);
        let head = compile(&git_repo, &sha, &mut lowered);
        let p = plan_of(&base, &head);
        if p.refusals_of("prod").next().is_some() {
            // The plan refuses: so does the agent, and the cluster is untouched.
            assert!(
                matches!(
                    &step.event,
                    Event::Refused {
                        refusal: Refusal::Plan { .. },
                        ..
                    }
                ),
                "commit {i} ({what}): the plan refuses {:?}, the agent did {:?}",
                p.refusals,
                step.event
            );
            // (The step still checks the cluster against the applied commit: no change.)
            if let Some(r) = &step.report {
                assert_eq!(applied(r), Changes::default(), "commit {i} ({what})");
            }
            to_approve = p.approval_yaml(Some("prod"));
            refused_by_plan += 1;
            *kinds.entry("refused").or_default() += 1;
            continue;
        }
        match &step.event {
            Event::Applied { commit } => assert_eq!(commit, &sha),
            // A revert of the broken commit gives back the tree already applied... as a new
            // commit all the same.
            other => panic!("commit {i} ({what}): {other:?}"),
        }
        to_approve.clear();
        let report = step.report.as_ref().unwrap();
        assert_eq!(
            report.exit_code(),
            0,
            "commit {i} ({what}):\n{}",
            report.to_text()
        );
        let want = planned(&base, &head);
        let got = applied(report);
        assert_eq!(
            got, want,
            "commit {i} ({what}): the agent applied something else than the plan"
        );
        total_changes += want.len();
        last_applied = sha;
    }
    eprintln!(
        "{COMMITS} commits ({kinds:?}), {refused_by_plan} refused by the plan, {total_changes} object changes, in {:.1}s ({:.1}s in the agent), {} objects at the end",
        started.elapsed().as_secs_f64(),
        step_time.as_secs_f64(),
        lowered.get(&last_applied).map_or(0, Lowered::object_count)
    );
    assert!(
        total_changes > 100,
        "the walk changed too little: {total_changes}"
    );
    for k in [
        "edit", "add", "delete", "rename", "shift", "revert", "broken", "approve", "refused",
    ] {
        assert!(
            kinds.get(k).copied().unwrap_or(0) > 0,
            "no `{k}` in the walk: {kinds:?}"
        );
    }
}
