//! The GitOps loop end to end: a platform repository built with `git`, its bare remote
//! fetched by the agent, the test API server as the cluster, a forge stand-in receiving
//! commit statuses.
//!
//! A commit is applied and turns green; a commit that fails `plinth check` turns red and
//! leaves the cluster untouched; a hand edit turns the applied commit red with the drift (and
//! green again once reverted, or healed); `git revert` restores the previous objects and the
//! audit shows both; a force-push is refused; an agent stopped mid-apply and restarted
//! converges; unsigned commits are refused when signatures are verified; the loop wakes on a
//! webhook, backs off on fetch errors, and shuts down on request.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::forge::{Forge, Received};
use common::git::Repo;
use common::*;
use kube_testserver::{Fault, TestServer};
use plinth::lower::ObjectKey;
use plinth_agent::audit::{self, Action as AuditAction};
use plinth_agent::drift::Mode;
use plinth_agent::gitops::{Agent, Config, Event, Probe, Refusal, Step};
use plinth_agent::metrics::Metrics;
use plinth_agent::report::Action;
use plinth_agent::signature::Verifier;
use plinth_agent::source::{Auth, Remote};
use plinth_agent::status::{GitHub, Poster, Retry, State, Token};
use serde_json::json;

/// The cluster, the repository, the forge.
struct Env {
    s: Arc<TestServer>,
    repo: Repo,
    forge: Forge,
    cache: tempfile::TempDir,
    token: tempfile::TempDir,
    _controllers: Controllers,
}

impl Env {
    async fn new() -> Env {
        let s = Arc::new(TestServer::start().await.unwrap());
        let controllers = Controllers::start(Arc::clone(&s), Duration::ZERO);
        let repo = Repo::new();
        let token = tempfile::tempdir().unwrap();
        std::fs::write(token.path().join("token"), "t0ken").unwrap();
        Env {
            s,
            repo,
            forge: Forge::start(),
            cache: tempfile::tempdir().unwrap(),
            token,
            _controllers: controllers,
        }
    }

    fn config(&self) -> Config {
        let remote = Remote {
            url: self.repo.file_url(),
            branch: "main".into(),
            auth: Auth::default(),
        };
        let mut cfg = Config::new(remote, self.cache.path().join("mirror"), "prod", "platform");
        cfg.interval = Duration::from_millis(200);
        cfg.backoff = Duration::from_millis(20);
        cfg.max_backoff = Duration::from_millis(80);
        cfg.min_wake_interval = Duration::from_millis(50);
        cfg.apply.prune = true;
        cfg.apply.health_timeout = Duration::from_secs(5);
        cfg.apply.poll = Duration::from_millis(25);
        cfg.target_url = Some("https://plinth.acme.example/{cluster}/{short}".into());
        cfg.shutdown_grace = Duration::from_secs(2);
        cfg
    }

    async fn agent_with(&self, cfg: Config) -> Agent {
        let sink = Arc::new(GitHub::new(
            &self.forge.url(),
            "acme/platform",
            Token(Some(self.token.path().join("token"))),
        ));
        let metrics = Arc::new(Metrics::new("prod"));
        let retry = Retry {
            attempts: 3,
            backoff: Duration::from_millis(10),
            max_backoff: Duration::from_millis(50),
        };
        let poster = Poster::spawn(sink, retry, Arc::clone(&metrics));
        let probe = Arc::new(Probe::new(Duration::from_secs(60)));
        Agent::new(cfg, cluster(&self.s, 2).await, poster, metrics, probe).unwrap()
    }

    async fn agent(&self) -> Agent {
        self.agent_with(self.config()).await
    }

    /// Write specs under `platform/` (the Platform document included) and push.
    fn publish(&self, specs: &[(String, String)], message: &str) -> String {
        self.repo.write("platform/plinth.yaml", PLATFORM);
        for (p, t) in specs {
            self.repo.write(&format!("platform/{p}"), t);
        }
        self.repo.publish(message)
    }

    /// Statuses posted for a commit, as (state, description).
    fn statuses(&self, sha: &str) -> Vec<(String, String)> {
        self.forge
            .received()
            .iter()
            .filter(|r| r.path.ends_with(sha))
            .map(|r: &Received| {
                (
                    r.body["state"].as_str().unwrap().to_owned(),
                    r.body["description"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    }

    fn quota_cpu(&self, ns: &str) -> Option<String> {
        live(&self.s, &key("v1", "ResourceQuota", Some(ns), "quota")).and_then(|q| {
            q["spec"]["hard"]["requests.cpu"]
                .as_str()
                .map(str::to_owned)
        })
    }

    fn ns(&self, name: &str) -> bool {
        live(&self.s, &key("v1", "Namespace", None, name)).is_some()
    }

    fn ledger(&self) -> audit::Ledger {
        audit::Ledger::from_configmap(
            &self
                .s
                .get("v1", "ConfigMap", Some("plinth-system"), "plinth-inventory")
                .unwrap(),
        )
    }
}

async fn settle_statuses(a: &Agent) {
    assert!(a.poster().flush(Duration::from_secs(10)).await);
}

fn applied(step: &Step) -> &plinth_agent::Report {
    assert!(
        matches!(step.event, Event::Applied { .. }),
        "{:?} {:?}",
        step.event,
        step.fetch_error
    );
    step.report.as_ref().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_is_applied_and_turns_green_with_an_audit_trail() {
    let env = Env::new().await;
    let sha = env.publish(
        &[project("er-capacity", Some("32"))],
        "er-capacity gets a home",
    );
    let mut agent = env.agent().await;
    let step = agent.step(true).await;
    let report = applied(&step);
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert!(env.ns("er-capacity"));
    assert_eq!(env.quota_cpu("er-capacity").as_deref(), Some("32"));
    settle_statuses(&agent).await;
    let n = report.count(Action::Create);
    assert_eq!(
        env.statuses(&sha),
        [
            (
                "pending".to_owned(),
                format!("applying {} ({n} objects)", &sha[..7])
            ),
            (
                "success".to_owned(),
                format!("applied {n} objects, healthy")
            ),
        ]
    );
    let posted = env.forge.received();
    assert_eq!(posted[0].body["context"], "plinth/prod");
    assert_eq!(
        posted[0].body["target_url"],
        format!("https://plinth.acme.example/prod/{}", &sha[..7])
    );

    // The audit trail: the inventory's history, Events, and the commit recorded.
    let ledger = env.ledger();
    assert_eq!(ledger.commit, sha);
    let e = ledger.history.last().unwrap();
    assert_eq!(e.action, AuditAction::Apply);
    assert_eq!(e.commit, sha);
    assert_eq!(e.author, "Dana Scully <dana@acme.example>");
    assert_eq!(e.subject, "er-capacity gets a home");
    assert_eq!(e.outcome, "success");
    assert!(
        e.objects.contains(&"+ Namespace er-capacity".to_owned()),
        "{:?}",
        e.objects
    );
    let events = env
        .s
        .list("events.k8s.io/v1", "Event", Some("plinth-system"));
    assert!(
        events
            .iter()
            .any(|ev| ev["reason"] == "Applied" && ev["regarding"]["name"] == "plinth-inventory"),
        "{events:?}"
    );

    // The next interval: nothing new, no writes, no new status.
    env.s.clear_requests();
    let step = agent.step(true).await;
    assert!(
        matches!(step.event, Event::Resynced { .. }),
        "{:?}",
        step.event
    );
    assert_eq!(step.report.as_ref().unwrap().exit_code(), 0);
    assert!(real_writes(&env.s).is_empty(), "{:?}", real_writes(&env.s));
    settle_statuses(&agent).await;
    assert_eq!(env.statuses(&sha).len(), 2, "no duplicate status");
    assert!(step.audit.is_empty());
    assert_eq!(agent.metrics().get("syncs/clean"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_fails_check_turns_red_and_leaves_the_cluster_alone() {
    let env = Env::new().await;
    let good = env.publish(&[project("er-capacity", Some("32"))], "good");
    let mut agent = env.agent().await;
    applied(&agent.step(true).await);
    let before: Vec<_> = env.s.list("v1", "ResourceQuota", None);

    // An unknown field in a spec.
    let (p, t) = project("icu", Some("8"));
    env.repo
        .write(&format!("platform/{p}"), &t.replace("owners:", "ownerz:"));
    let bad = env.repo.publish("icu, with a typo");
    env.s.clear_requests();
    let step = agent.step(true).await;
    match &step.event {
        Event::Refused {
            commit,
            refusal: Refusal::Check { summary, details },
        } => {
            assert_eq!(commit, &bad);
            assert!(summary.starts_with("plinth check failed: "), "{summary}");
            assert!(details.contains("platform/projects/icu.yaml:"), "{details}");
        }
        other => panic!("{other:?}"),
    }
    settle_statuses(&agent).await;
    let st = env.statuses(&bad);
    assert_eq!(st.len(), 1, "{st:?}");
    assert_eq!(st[0].0, "failure");
    assert!(
        st[0].1.contains("platform/projects/icu.yaml:"),
        "{}",
        st[0].1
    );
    // Untouched: nothing of plinth's was written (only the agent's own records).
    let writes: Vec<String> = real_writes(&env.s)
        .into_iter()
        .filter(|w| !w.contains("plinth-inventory") && !w.contains("/events"))
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
    assert!(!env.ns("icu"));
    assert_eq!(env.s.list("v1", "ResourceQuota", None), before);
    let last = env.ledger().history.last().cloned().unwrap();
    assert_eq!(last.action, AuditAction::Refuse);
    assert_eq!(last.commit, bad);
    assert_eq!(env.ledger().commit, good, "the applied commit stays");

    // Not looked at again; the fix is applied.
    let step = agent.step(true).await;
    assert!(
        matches!(step.event, Event::Resynced { .. }),
        "{:?}",
        step.event
    );
    env.repo.write(&format!("platform/{p}"), &t);
    let fixed = env.repo.publish("fix the typo");
    applied(&agent.step(true).await);
    assert!(env.ns("icu"));
    settle_statuses(&agent).await;
    assert_eq!(env.statuses(&fixed).last().unwrap().0, "success");
    assert_eq!(env.statuses(&bad).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hand_edit_turns_the_applied_commit_red_until_it_is_gone() {
    let env = Env::new().await;
    let sha = env.publish(&[project("er-capacity", Some("32"))], "quota 32");
    let mut agent = env.agent().await;
    applied(&agent.step(true).await);
    let quota = key("v1", "ResourceQuota", Some("er-capacity"), "quota");
    edit_as(
        &env.s,
        "kubectl-edit",
        &quota,
        json!({"spec": {"hard": {"requests.cpu": "48"}}}),
    )
    .await;

    let step = agent.step(true).await;
    assert!(matches!(step.event, Event::Resynced { .. }));
    let drift = "drift in 1 object (ResourceQuota er-capacity/quota: spec.hard.requests.cpu 32→48, changed by kubectl-edit)";
    assert_eq!(step.status.as_ref().unwrap().description, drift);
    assert_eq!(step.status.as_ref().unwrap().state, State::Failure);
    assert_eq!(
        env.quota_cpu("er-capacity").as_deref(),
        Some("48"),
        "detect leaves it"
    );
    let e = step
        .audit
        .iter()
        .find(|e| e.action == AuditAction::Drift)
        .unwrap();
    assert_eq!(e.outcome, "detected");
    assert_eq!(
        e.objects,
        [
            "! ResourceQuota er-capacity/quota: spec.hard.requests.cpu 32→48, changed by kubectl-edit"
        ]
    );
    // Found again at the next interval: no new status, no new audit entry.
    let again = agent.step(true).await;
    assert!(again.audit.is_empty(), "{:?}", again.audit);
    settle_statuses(&agent).await;
    let st = env.statuses(&sha);
    assert_eq!(
        st.iter().filter(|(s, _)| s == "failure").count(),
        1,
        "{st:?}"
    );
    assert_eq!(
        st.last().unwrap(),
        &("failure".to_owned(), drift.to_owned())
    );
    assert!(
        env.s
            .list("events.k8s.io/v1", "Event", Some("plinth-system"))
            .iter()
            .any(|ev| ev["reason"] == "DriftDetected" && ev["type"] == "Warning")
    );
    assert_eq!(agent.metrics().get("drifted"), 1);

    // Someone reverts the edit: green again.
    edit_as(
        &env.s,
        "kubectl-edit",
        &quota,
        json!({"spec": {"hard": {"requests.cpu": "32"}}}),
    )
    .await;
    let step = agent.step(true).await;
    assert_eq!(step.status.as_ref().unwrap().state, State::Success);
    assert!(
        step.audit
            .iter()
            .any(|e| e.action == AuditAction::Drift && e.outcome == "resolved")
    );
    settle_statuses(&agent).await;
    assert_eq!(env.statuses(&sha).last().unwrap().0, "success");

    // In heal mode the git value is put back, and the status says so.
    edit_as(
        &env.s,
        "kubectl-edit",
        &quota,
        json!({"spec": {"hard": {"requests.cpu": "64"}}}),
    )
    .await;
    let mut cfg = env.config();
    cfg.apply.drift.mode = Mode::Heal;
    let mut healer = env.agent_with(cfg).await;
    let step = healer.step(true).await;
    assert_eq!(env.quota_cpu("er-capacity").as_deref(), Some("32"));
    let st = step.status.unwrap();
    assert_eq!(st.state, State::Success);
    assert!(
        st.description
            .contains("healed drift in 1 object (ResourceQuota er-capacity/quota: spec.hard.requests.cpu 32→64"),
        "{}",
        st.description
    );
    assert!(step.audit.iter().any(|e| e.action == AuditAction::Heal));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn git_revert_restores_the_previous_state_and_nothing_fights_it() {
    let env = Env::new().await;
    let first = env.publish(
        &[
            project("er-capacity", Some("32")),
            project("lab", Some("4")),
            project("ops", Some("4")),
        ],
        "quota 32",
    );
    let mut agent = env.agent().await;
    applied(&agent.step(true).await);
    let v1: BTreeSet<ObjectKey> = env
        .s
        .list("v1", "ResourceQuota", None)
        .iter()
        .map(ObjectKey::of)
        .collect();
    let change = env.publish(
        &[
            project("er-capacity", Some("48")),
            project("lab", Some("4")),
            project("ops", Some("4")),
            project("icu", Some("8")),
            model("bed-forecast", "icu", "2.0.0"),
        ],
        "more quota, icu and its model",
    );
    let r = applied(&agent.step(true).await).clone();
    assert_eq!(r.exit_code(), 0, "{}", r.to_text());
    assert_eq!(env.quota_cpu("er-capacity").as_deref(), Some("48"));
    assert!(env.ns("icu"));

    // The plain revert deletes a namespace and lowers a quota: destructive, refused until the
    // revert approves them (the approvals travel in the same commit).
    env.repo.git(&["revert", "--no-edit", "HEAD"]);
    env.repo.push();
    let plain = env.repo.head();
    let step = agent.step(true).await;
    assert!(
        matches!(
            step.event,
            Event::Refused {
                refusal: Refusal::Plan { .. },
                ..
            }
        ),
        "{:?}",
        step.event
    );
    assert!(env.ns("icu"));
    env.repo.git(&["revert", "--no-edit", "HEAD"]);
    env.repo.git(&["revert", "--no-commit", &change]);
    env.repo.write(
        "platform/plinth.yaml",
        &platform_approving(&["Namespace/icu", "ResourceQuota/er-capacity/quota"]),
    );
    let revert = env
        .repo
        .commit("Revert \"more quota, icu and its model\"\n\nApproved: CHG-1");
    env.repo.push();
    assert_ne!(plain, revert);
    let step = agent.step(true).await;
    let r = applied(&step);
    assert_eq!(r.exit_code(), 0, "{}", r.to_text());
    assert_eq!(env.quota_cpu("er-capacity").as_deref(), Some("32"));
    assert!(!env.ns("icu"), "the revert's deletions were pruned");
    assert!(
        live(
            &env.s,
            &key("apps/v1", "Deployment", Some("icu"), "bed-forecast")
        )
        .is_none()
    );
    let now: BTreeSet<ObjectKey> = env
        .s
        .list("v1", "ResourceQuota", None)
        .iter()
        .map(ObjectKey::of)
        .collect();
    assert_eq!(now, v1);
    settle_statuses(&agent).await;
    assert_eq!(env.statuses(&revert).last().unwrap().0, "success");

    // The audit shows the change and its revert, who and when.
    let h = env.ledger().history;
    let commits: Vec<(&str, AuditAction)> =
        h.iter().map(|e| (e.commit.as_str(), e.action)).collect();
    assert!(commits.contains(&(first.as_str(), AuditAction::Apply)));
    assert!(commits.contains(&(change.as_str(), AuditAction::Apply)));
    assert!(commits.contains(&(revert.as_str(), AuditAction::Apply)));
    assert!(commits.contains(&(revert.as_str(), AuditAction::Prune)));
    let rev = h
        .iter()
        .find(|e| e.commit == revert && e.action == AuditAction::Apply)
        .unwrap();
    assert!(
        rev.subject
            .starts_with("Revert \"more quota, icu and its model\""),
        "{}",
        rev.subject
    );
    let text = audit::to_text(&h);
    assert!(text.contains("- Namespace icu"), "{text}");

    // The approvals are on the record with the apply.
    assert!(
        rev.objects
            .iter()
            .any(|l| l.starts_with("✅ delete Namespace icu: approved: CHG-1 retired — by dana")),
        "{:?}",
        rev.objects
    );

    // Nothing fights the revert: the next interval writes nothing.
    env.s.clear_requests();
    let step = agent.step(true).await;
    assert!(matches!(step.event, Event::Resynced { .. }));
    assert!(real_writes(&env.s).is_empty(), "{:?}", real_writes(&env.s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_changing_a_hand_edited_field_wins_and_other_edits_stay() {
    let env = Env::new().await;
    env.publish(&[project("er-capacity", Some("32"))], "quota 32");
    let mut agent = env.agent().await;
    applied(&agent.step(true).await);
    env.publish(&[project("er-capacity", Some("48"))], "quota 48");
    applied(&agent.step(true).await);
    assert_eq!(env.quota_cpu("er-capacity").as_deref(), Some("48"));

    // Someone raises the quota by hand, and edits a field git does not change.
    let quota = key("v1", "ResourceQuota", Some("er-capacity"), "quota");
    edit_as(
        &env.s,
        "kubectl-patch",
        &quota,
        json!({"spec": {"hard": {"requests.cpu": "64", "requests.memory": "96Gi"}}}),
    )
    .await;
    let step = agent.step(true).await;
    assert_eq!(step.status.as_ref().unwrap().state, State::Failure);

    // The revert changes `requests.cpu` back: git wins there, the other edit is still drift.
    // A restarted agent (nothing in memory) knows what the previous revision was too.
    drop(agent);
    env.repo.git(&["revert", "--no-commit", "HEAD"]);
    env.repo.write(
        "platform/plinth.yaml",
        &platform_approving(&["ResourceQuota/er-capacity/quota"]),
    );
    env.repo.commit("Revert \"quota 48\"");
    env.repo.push();
    let mut agent = env.agent().await;
    let step = agent.step(true).await;
    let r = applied(&step);
    assert_eq!(env.quota_cpu("er-capacity").as_deref(), Some("32"));
    let q = live(&env.s, &quota).unwrap();
    assert_eq!(
        q["spec"]["hard"]["requests.memory"], "96Gi",
        "detect leaves it"
    );
    let text = r.to_text();
    assert!(
        text.contains("spec.hard.requests.cpu 64→32, changed in git over an edit by kubectl-patch"),
        "{text}"
    );
    assert!(
        text.contains("spec.hard.requests.memory 64Gi→96Gi, changed by kubectl-patch"),
        "{text}"
    );
    // The audit records whose edit the commit overwrote.
    let e = step
        .audit
        .iter()
        .find(|e| e.action == AuditAction::Apply)
        .unwrap();
    assert!(
        e.objects.iter().any(|l| l
            == "  ResourceQuota er-capacity/quota: spec.hard.requests.cpu 64→32, changed in git over an edit by kubectl-patch"),
        "{:?}",
        e.objects
    );
    // And nothing fights it at the next interval: only the other edit is reported.
    env.s.clear_requests();
    let step = agent.step(true).await;
    assert!(real_writes(&env.s).is_empty(), "{:?}", real_writes(&env.s));
    assert_eq!(env.quota_cpu("er-capacity").as_deref(), Some("32"));
    let d = &step.status.as_ref().unwrap().description;
    assert!(
        d.contains("requests.memory") && !d.contains("requests.cpu"),
        "{d}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_force_push_is_refused_unless_allowed() {
    let env = Env::new().await;
    env.publish(&[project("er-capacity", Some("32"))], "a");
    let applied_sha = env.publish(&[project("icu", Some("8"))], "b");
    let mut agent = env.agent().await;
    applied(&agent.step(true).await);
    env.repo.git(&["reset", "-q", "--hard", "HEAD~1"]);
    env.repo
        .write("platform/projects/lab.yaml", &project("lab", None).1);
    // (The rewrite deletes icu's namespace: the plan wants that approved.)
    env.repo.write(
        "platform/plinth.yaml",
        &platform_approving(&["Namespace/icu"]),
    );
    let rewritten = env.repo.commit("history rewritten");
    env.repo.force_push();
    env.s.clear_requests();
    let step = agent.step(true).await;
    match &step.event {
        Event::Refused {
            commit,
            refusal: Refusal::NonFastForward { applied },
        } => {
            assert_eq!(commit, &rewritten);
            assert_eq!(applied, &applied_sha);
        }
        other => panic!("{other:?}"),
    }
    assert!(!env.ns("lab"));
    assert!(env.ns("icu"), "nothing was pruned");
    settle_statuses(&agent).await;
    let st = env.statuses(&rewritten);
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].0, "error");
    assert!(
        st[0].1.contains("not a descendant of the applied commit"),
        "{}",
        st[0].1
    );
    assert_eq!(agent.metrics().get("refusals/non-fast-forward"), 1);
    // Refused once, not at every interval.
    agent.step(true).await;
    settle_statuses(&agent).await;
    assert_eq!(env.statuses(&rewritten).len(), 1);

    // A restarted agent with an empty cache (the applied commit is nowhere in the fetched
    // history any more) refuses it too.
    let mut cfg = env.config();
    cfg.cache_dir = env.cache.path().join("fresh");
    let mut restarted = env.agent_with(cfg).await;
    let step = restarted.step(true).await;
    assert!(
        matches!(
            &step.event,
            Event::Refused {
                refusal: Refusal::NonFastForward { .. },
                ..
            }
        ),
        "{:?}",
        step.event
    );
    assert!(!env.ns("lab"));

    let mut cfg = env.config();
    cfg.allow_non_fast_forward = true;
    let mut allowed = env.agent_with(cfg).await;
    let step = allowed.step(true).await;
    assert!(
        matches!(step.event, Event::Applied { .. }),
        "{:?}",
        step.event
    );
    assert!(env.ns("lab"));
    assert!(!env.ns("icu"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_stopped_mid_apply_converges_after_a_restart() {
    let env = Env::new().await;
    env.publish(&[project("er-capacity", Some("32"))], "v1");
    let mut agent = env.agent().await;
    applied(&agent.step(true).await);
    let v2 = env.publish(
        &[
            project("er-capacity", Some("48")),
            project("icu", Some("8")),
            model("bed-forecast", "icu", "2.0.0"),
        ],
        "v2",
    );
    // The Deployment's apply hangs; the agent is dropped in the middle of it.
    env.s
        .faults()
        .arm(Fault::on("PATCH", "/deployments/bed-forecast").delay(Duration::from_secs(3)));
    let task = tokio::spawn(async move {
        let s = agent.step(true).await;
        (agent, s)
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    task.abort();
    assert!(task.await.is_err(), "stopped mid-apply");
    assert!(env.ns("icu"), "the earlier stages were applied");
    assert_ne!(env.ledger().commit, v2, "not recorded as applied");

    let mut restarted = env.agent().await;
    let step = restarted.step(true).await;
    let r = applied(&step);
    assert_eq!(r.exit_code(), 0, "{}", r.to_text());
    assert_eq!(env.ledger().commit, v2);
    assert!(
        live(
            &env.s,
            &key("apps/v1", "Deployment", Some("icu"), "bed-forecast")
        )
        .is_some()
    );
    assert_eq!(env.quota_cpu("er-capacity").as_deref(), Some("48"));
    // Everything the cluster holds of plinth's is in the inventory.
    let inv = inventory(&env.s).unwrap();
    for k in &inv.objects {
        assert!(
            live(&env.s, k).is_some(),
            "{k} in the inventory but not live"
        );
    }
    settle_statuses(&restarted).await;
    assert_eq!(env.statuses(&v2).last().unwrap().0, "success");
    // And it stays converged.
    env.s.clear_requests();
    restarted.step(true).await;
    assert!(real_writes(&env.s).is_empty(), "{:?}", real_writes(&env.s));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_commits_are_refused_when_signatures_are_verified() {
    let env = Env::new().await;
    let keys = tempfile::tempdir().unwrap();
    let key_path = keys.path().join("dana");
    let out = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "dana", "-f"])
        .arg(&key_path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let public = std::fs::read_to_string(key_path.with_extension("pub")).unwrap();
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(&allowed, format!("dana@acme.example {}", public.trim())).unwrap();
    let mut cfg = env.config();
    cfg.verifier = Some(Verifier::Ssh {
        allowed_signers: allowed,
    });
    let unsigned = env.publish(&[project("er-capacity", Some("32"))], "unsigned");
    let mut agent = env.agent_with(cfg).await;
    let step = agent.step(true).await;
    assert!(
        matches!(&step.event, Event::Refused { refusal: Refusal::Signature(why), .. } if why == "not signed"),
        "{:?}",
        step.event
    );
    assert!(!env.ns("er-capacity"));
    settle_statuses(&agent).await;
    assert_eq!(
        env.statuses(&unsigned),
        [("error".to_owned(), "refused: not signed".to_owned())]
    );

    env.repo.git(&["config", "gpg.format", "ssh"]);
    env.repo
        .git(&["config", "user.signingkey", key_path.to_str().unwrap()]);
    env.repo
        .git(&["commit", "-q", "--allow-empty", "-S", "-m", "signed"]);
    env.repo.push();
    let step = agent.step(true).await;
    applied(&step);
    assert!(env.ns("er-capacity"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_wakes_on_webhooks_backs_off_and_shuts_down() {
    let env = Env::new().await;
    let first = env.publish(&[project("er-capacity", Some("32"))], "first");
    let mut cfg = env.config();
    cfg.interval = Duration::from_secs(3600);
    let agent = env.agent_with(cfg).await;
    let wake = Arc::new(tokio::sync::Notify::new());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(agent.run(Arc::clone(&wake), rx));
    let success = |sha: &str| {
        env.statuses(sha)
            .last()
            .is_some_and(|(s, _)| s == "success")
    };
    let wait = |what: &dyn Fn() -> bool| {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !what() {
            assert!(std::time::Instant::now() < deadline, "timed out");
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait(&|| success(&first));
    // A push and its webhook: applied at once, not after the (hour-long) interval.
    let second = env.publish(&[project("icu", Some("8"))], "second");
    wake.notify_one();
    wait(&|| success(&second));
    assert!(env.ns("icu"));
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("shut down in time")
        .unwrap();

    // Fetch errors: reported, retried with a growing wait, never fatal.
    let mut cfg = env.config();
    cfg.remote.url = format!("git://127.0.0.1:{}/nothing.git", common::git::free_port());
    cfg.cache_dir = env.cache.path().join("other");
    let agent = env.agent_with(cfg).await;
    let metrics = Arc::clone(agent.metrics());
    let (stop, rx) = tokio::sync::watch::channel(false);
    let run = tokio::spawn(agent.run(Arc::new(tokio::sync::Notify::new()), rx));
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("shut down in time")
        .unwrap();
    let errors = metrics.get("errors/fetch");
    // Waits of 20, 40, 80, 80, … ms: a handful of attempts in 700 ms, not hundreds.
    assert!((3..=14).contains(&errors), "{errors} fetch attempts");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_installs_itself_and_never_prunes_its_own_namespace() {
    let env = Env::new().await;
    let with_agent = PLATFORM.replace(
        "  defaults:\n",
        "  agent:\n    enabled: true\n    image: registry.acme.example/plinth-agent:0.1.0\n    repo: https://git.acme.example/platform.git\n    path: platform\n  defaults:\n",
    );
    env.repo.write("platform/plinth.yaml", &with_agent);
    for name in ["er-capacity", "icu", "lab", "ops"] {
        let (p, t) = project(name, Some("8"));
        env.repo.write(&format!("platform/{p}"), &t);
    }
    env.repo.publish("install the agent");
    let mut agent = env.agent().await;
    let step = agent.step(true).await;
    let r = applied(&step);
    assert_eq!(r.exit_code(), 0, "{}", r.to_text());
    let dep = live(
        &env.s,
        &key(
            "apps/v1",
            "Deployment",
            Some("plinth-system"),
            "plinth-agent",
        ),
    )
    .unwrap();
    let args = dep["spec"]["template"]["spec"]["containers"][0]["args"].clone();
    assert!(
        args.as_array().unwrap().contains(&json!("--cluster=prod")),
        "{args}"
    );
    assert!(
        live(
            &env.s,
            &key(
                "rbac.authorization.k8s.io/v1",
                "ClusterRole",
                None,
                "plinth-agent"
            )
        )
        .is_some()
    );

    // Turned off without approval: removing the agent's installation is refused.
    env.repo.write(
        "platform/plinth.yaml",
        &with_agent.replace("enabled: true", "enabled: false"),
    );
    env.repo.publish("uninstall the agent");
    let step = agent.step(true).await;
    assert!(
        matches!(
            step.event,
            Event::Refused {
                refusal: Refusal::Plan { .. },
                ..
            }
        ),
        "{:?}",
        step.event
    );
    // Approved: the agent's objects go, its namespace (and the inventory in it) stays.
    let approvals: String = [
        "Namespace/plinth-system",
        "ServiceAccount/plinth-system/plinth-agent",
        "Deployment/plinth-system/plinth-agent",
        "Service/plinth-system/plinth-agent",
        "ClusterRole/plinth-agent",
        "ClusterRoleBinding/plinth-agent",
    ]
    .iter()
    .map(|o| format!("    - object: {o}\n      reason: CHG-7 the agent moves\n"))
    .collect();
    env.repo.write(
        "platform/plinth.yaml",
        &with_agent
            .replace("enabled: true", "enabled: false")
            .replacen("spec:\n", &format!("spec:\n  approvals:\n{approvals}"), 1),
    );
    env.repo.publish("uninstall the agent, approved");
    let step = agent.step(true).await;
    let r = applied(&step);
    assert_eq!(r.exit_code(), 0, "{}", r.to_text());
    assert!(
        live(
            &env.s,
            &key(
                "apps/v1",
                "Deployment",
                Some("plinth-system"),
                "plinth-agent"
            )
        )
        .is_none()
    );
    assert!(env.ns("plinth-system"), "{}", r.to_text());
    assert!(
        r.prune
            .iter()
            .any(|p| p.key.to_string() == "Namespace plinth-system"
                && p.action == plinth_agent::report::PruneAction::Holds)
    );
    assert!(inventory(&env.s).is_some());
    let actions: Vec<AuditAction> = env.ledger().history.iter().map(|e| e.action).collect();
    assert_eq!(
        actions,
        [
            AuditAction::Apply,
            AuditAction::Refuse,
            AuditAction::Apply,
            AuditAction::Prune,
            AuditAction::Hold
        ]
    );
}

/// Writes of plinth's objects since the last `clear_requests` (the agent's own records aside).
fn object_writes(env: &Env) -> Vec<String> {
    real_writes(&env.s)
        .into_iter()
        .filter(|w| !w.contains("plinth-inventory") && !w.contains("/events"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_refuses_what_the_plan_refuses_and_approvals_count_once() {
    let env = Env::new().await;
    let platform = |approving: &[&str]| platform_approving(approving);
    env.repo.write("platform/plinth.yaml", &platform(&[]));
    let write = |specs: &[(String, String)]| {
        for (p, t) in specs {
            env.repo.write(&format!("platform/{p}"), t);
        }
    };
    write(&[
        project("er-capacity", Some("32")),
        project("lab", Some("4")),
    ]);
    let first = env.repo.publish("er-capacity and lab");
    let mut agent = env.agent().await;
    applied(&agent.step(true).await);
    assert_eq!(env.quota_cpu("er-capacity").as_deref(), Some("32"));

    // An unapproved quota decrease: refused, the cluster untouched, a failure status naming
    // the object and the YAML that approves it.
    write(&[project("er-capacity", Some("24"))]);
    let lowered = env.repo.publish("er-capacity gives back 8 CPUs");
    env.s.clear_requests();
    let step = agent.step(true).await;
    let Event::Refused {
        refusal: Refusal::Plan { summary, details },
        ..
    } = &step.event
    else {
        panic!("{:?}", step.event)
    };
    assert!(
        summary.starts_with(
            "refused: 1 destructive change not approved: ResourceQuota er-capacity/quota"
        ),
        "{summary}"
    );
    assert!(
        summary.contains("{object: ResourceQuota/er-capacity/quota, cluster: prod"),
        "{summary}"
    );
    assert!(
        details.contains("`spec.hard[\"requests.cpu\"]` is lowered from 32 to 24")
            && details.contains(
                "approvals:\n  - object: ResourceQuota/er-capacity/quota\n    cluster: prod\n"
            ),
        "{details}"
    );
    assert!(object_writes(&env).is_empty(), "{:?}", object_writes(&env));
    assert_eq!(env.quota_cpu("er-capacity").as_deref(), Some("32"));
    settle_statuses(&agent).await;
    let st = env.statuses(&lowered);
    assert_eq!(st.len(), 1, "{st:?}");
    assert_eq!(st[0].0, "failure");
    assert!(
        st[0].1.contains("ResourceQuota er-capacity/quota"),
        "{}",
        st[0].1
    );
    assert_eq!(agent.metrics().get("refusals/plan"), 1);
    let refusal = env.ledger().history.last().cloned().unwrap();
    assert_eq!(refusal.action, AuditAction::Refuse);
    assert!(
        refusal
            .objects
            .iter()
            .any(|l| l == "  - object: ResourceQuota/er-capacity/quota"),
        "{:?}",
        refusal.objects
    );
    assert_eq!(env.ledger().commit, first, "the applied commit stays");

    // The same decrease with an approval added in the commit: applied, the approval on the
    // record.
    env.repo.write(
        "platform/plinth.yaml",
        &platform(&["ResourceQuota/er-capacity/quota"]),
    );
    let approved = env.repo.publish("approve: CHG-1");
    let step = agent.step(true).await;
    let r = applied(&step);
    assert_eq!(r.exit_code(), 0, "{}", r.to_text());
    assert_eq!(env.quota_cpu("er-capacity").as_deref(), Some("24"));
    let e = step
        .audit
        .iter()
        .find(|e| e.action == AuditAction::Apply)
        .unwrap();
    assert_eq!(e.commit, approved);
    assert!(
        e.objects.iter().any(|l| l.starts_with(
            "✅ update ResourceQuota er-capacity/quota: approved: CHG-1 retired — by dana"
        )),
        "{:?}",
        e.objects
    );

    // A second decrease with the old approval still in place: refused.
    write(&[project("er-capacity", Some("16"))]);
    let again = env.repo.publish("er-capacity gives back 8 more");
    let step = agent.step(true).await;
    assert!(
        matches!(
            step.event,
            Event::Refused {
                refusal: Refusal::Plan { .. },
                ..
            }
        ),
        "{:?}",
        step.event
    );
    assert_eq!(env.quota_cpu("er-capacity").as_deref(), Some("24"));
    settle_statuses(&agent).await;
    assert_eq!(env.statuses(&again)[0].0, "failure");

    // Re-pointing the agent needs approval too.
    let with_agent = |extra: &str, approving: &[&str]| {
        platform(approving).replace(
            "  defaults:\n",
            &format!("  agent:\n    enabled: true\n    image: registry.acme.example/plinth-agent:0.1.0\n    repo: https://git.acme.example/platform.git{extra}\n    path: platform\n  defaults:\n"),
        )
    };
    write(&[project("er-capacity", Some("24"))]);
    env.repo.write("platform/plinth.yaml", &with_agent("", &[]));
    env.repo.publish("undo, and install the agent");
    let r = applied(&agent.step(true).await).clone();
    assert_eq!(r.exit_code(), 0, "{}", r.to_text());
    env.repo.write(
        "platform/plinth.yaml",
        &with_agent(
            "\n    forge: gitea\n    forgeUrl: https://evil.example.net",
            &[],
        ),
    );
    let repoint = env.repo.publish("send statuses elsewhere");
    env.s.clear_requests();
    let step = agent.step(true).await;
    let Event::Refused {
        refusal: Refusal::Plan { summary, .. },
        ..
    } = &step.event
    else {
        panic!("{:?}", step.event)
    };
    assert!(
        summary.contains("Deployment plinth-system/plinth-agent"),
        "{summary}"
    );
    assert!(object_writes(&env).is_empty(), "{:?}", object_writes(&env));
    settle_statuses(&agent).await;
    assert_eq!(env.statuses(&repoint)[0].0, "failure");
    env.repo.write(
        "platform/plinth.yaml",
        &with_agent(
            "\n    forge: gitea\n    forgeUrl: https://gitea.acme.example",
            &["Deployment/plinth-system/plinth-agent"],
        ),
    );
    env.repo.publish("statuses to our Gitea, approved");
    let r = applied(&agent.step(true).await).clone();
    assert_eq!(r.exit_code(), 0, "{}", r.to_text());
    let dep = live(
        &env.s,
        &key(
            "apps/v1",
            "Deployment",
            Some("plinth-system"),
            "plinth-agent",
        ),
    )
    .unwrap();
    assert!(
        dep["spec"]["template"]["spec"]["containers"][0]["args"]
            .as_array()
            .unwrap()
            .contains(&json!("--forge-url=https://gitea.acme.example")),
        "{dep}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_loop_holds_a_namespace_with_data_plinth_does_not_own() {
    let env = Env::new().await;
    env.publish(
        &[
            project("er-capacity", Some("32")),
            project("lab", Some("4")),
        ],
        "two projects",
    );
    let mut agent = env.agent().await;
    applied(&agent.step(true).await);
    // Someone keeps a claim in lab, by hand.
    let client = client(&env.s).await;
    let pvcs: kube::Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        kube::Api::namespaced(client, "lab");
    let pvc = serde_json::from_value(json!({
        "metadata": {"name": "notebook-data"},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "5Gi"}}}
    }))
    .unwrap();
    pvcs.create(&Default::default(), &pvc).await.unwrap();

    // lab's spec goes, its deletion approved.
    env.repo.remove("platform/projects/lab.yaml");
    env.repo.write(
        "platform/plinth.yaml",
        &platform_approving(&["Namespace/lab"]),
    );
    let sha = env.repo.publish("retire lab");
    let step = agent.step(true).await;
    let r = applied(&step);
    assert_eq!(r.exit_code(), 0, "{}", r.to_text());
    assert!(env.ns("lab"), "held");
    assert!(
        live(
            &env.s,
            &key("v1", "PersistentVolumeClaim", Some("lab"), "notebook-data")
        )
        .is_some()
    );
    assert!(live(&env.s, &key("v1", "ResourceQuota", Some("lab"), "quota")).is_none());
    settle_statuses(&agent).await;
    let st = env.statuses(&sha);
    let last = &st.last().unwrap();
    assert_eq!(last.0, "success");
    assert!(
        last.1.contains("kept 1 namespace holding objects plinth does not own (Namespace lab: PersistentVolumeClaim lab/notebook-data)"),
        "{}",
        last.1
    );
    let hold = step
        .audit
        .iter()
        .find(|e| e.action == AuditAction::Hold)
        .unwrap();
    assert_eq!(
        hold.objects,
        ["= Namespace lab: holds PersistentVolumeClaim lab/notebook-data"]
    );
    assert_eq!(agent.metrics().get("held"), 1);
    assert!(
        agent
            .metrics()
            .render()
            .contains("plinth_agent_held_namespaces{cluster=\"prod\"} 1")
    );
    // Held at every interval, recorded once.
    let step = agent.step(true).await;
    assert!(step.audit.iter().all(|e| e.action != AuditAction::Hold));
    assert!(env.ns("lab"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_a_five_megabyte_subject_is_applied_and_recorded() {
    let env = Env::new().await;
    env.repo.write("platform/plinth.yaml", PLATFORM);
    let (p, t) = project("er-capacity", Some("32"));
    env.repo.write(&format!("platform/{p}"), &t);
    // Too long for an argument: the message from a file.
    let msg = env.cache.path().join("message");
    std::fs::write(&msg, "s".repeat(5 * 1024 * 1024)).unwrap();
    env.repo.git(&["add", "-A"]);
    env.repo.git(&["commit", "-q", "-F", msg.to_str().unwrap()]);
    env.repo.push();
    let sha = env.repo.head();
    let mut agent = env.agent().await;
    let step = agent.step(true).await;
    assert_eq!(applied(&step).exit_code(), 0);
    // The applied commit is recorded; the history entry is cut, the ConfigMap small.
    let cm = env
        .s
        .get("v1", "ConfigMap", Some("plinth-system"), "plinth-inventory")
        .unwrap();
    let size = serde_json::to_string(&cm).unwrap().len();
    assert!(size < 300 * 1024, "the inventory holds {size} bytes");
    let ledger = env.ledger();
    assert_eq!(ledger.commit, sha);
    let e = ledger.history.last().unwrap();
    assert_eq!(e.commit, sha);
    assert!(
        e.subject.ends_with("more characters)") && e.subject.len() < 300,
        "{}",
        &e.subject[..300.min(e.subject.len())]
    );
    settle_statuses(&agent).await;
    assert!(
        env.statuses(&sha)
            .iter()
            .all(|(_, d)| d.chars().count() <= 140)
    );
}
