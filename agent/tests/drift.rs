//! Drift: a hand edit is detected (and left) or healed; a field another manager owns is left
//! alone; defaulted fields and controllers' own fields are not reported; `diff` shows it all.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use kube_testserver::TestServer;
use plinth_agent::drift::{Class, Mode};
use plinth_agent::report::{Action, Outcome};
use plinth_agent::sync::{self, Options};
use serde_json::json;

fn heal() -> Options {
    let mut o = opts();
    o.drift.mode = Mode::Heal;
    o
}

#[tokio::test]
async fn a_hand_edit_is_detected_then_healed() {
    let s = TestServer::start().await.unwrap();
    let c = cluster(&s, 0).await;
    let tree = build(&[project("er-capacity", Some("32"))]);
    let desired = tree.desired();
    assert_eq!(sync::apply(&c, &desired, &opts()).await.exit_code(), 0);
    let quota = key("v1", "ResourceQuota", Some("er-capacity"), "quota");
    edit_as(
        &s,
        "kubectl-edit",
        &quota,
        json!({"spec": {"hard": {"requests.cpu": "48"}}}),
    )
    .await;

    // detect: reported, left in place, nothing written.
    let writes = s.total_writes();
    let report = sync::apply(&c, &desired, &opts()).await;
    assert_eq!(report.outcome(), Outcome::Changes, "{}", report.to_text());
    assert_eq!(report.exit_code(), 2);
    assert_eq!(s.total_writes(), writes);
    let q = report.objects.iter().find(|o| o.key == quota).unwrap();
    assert_eq!(q.action, Action::Unchanged);
    assert_eq!(q.diffs.len(), 1);
    assert_eq!(
        q.diffs[0].class,
        Class::Hand {
            manager: "kubectl-edit".into()
        }
    );
    assert_eq!(q.diffs[0].path.to_string(), "spec.hard.requests.cpu");
    let text = report.to_text();
    assert!(
        text.contains("drift      ResourceQuota er-capacity/quota: spec.hard.requests.cpu 32→48, changed by kubectl-edit"),
        "{text}"
    );
    assert_eq!(
        live(&s, &quota).unwrap()["spec"]["hard"]["requests.cpu"],
        "48"
    );

    // diff agrees.
    let d = sync::diff(&c, &desired, &opts()).await;
    assert_eq!(d.exit_code(), 2, "{}", d.to_text());
    assert_eq!(
        d.objects.iter().find(|o| o.key == quota).unwrap().action,
        Action::Heal
    );

    // heal: forced back, ownership returns to plinth.
    let report = sync::apply(&c, &desired, &heal()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    let q = report.objects.iter().find(|o| o.key == quota).unwrap();
    assert_eq!(q.action, Action::Heal);
    assert!(q.healed);
    assert!(report.to_text().contains("healed     ResourceQuota er-capacity/quota: spec.hard.requests.cpu 48 (live) → 32 (desired), an edit by kubectl-edit undone"));
    let healed = live(&s, &quota).unwrap();
    assert_eq!(healed["spec"]["hard"]["requests.cpu"], "32");
    let owners: Vec<&str> = healed["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["fieldsV1"]
                .pointer("/f:spec/f:hard/f:requests.cpu")
                .is_some()
        })
        .map(|m| m["manager"].as_str().unwrap())
        .collect();
    assert_eq!(owners, ["plinth"]);
    assert_eq!(
        s.writes("v1", "ResourceQuota", Some("er-capacity"), "quota"),
        3
    );

    // Converged: no drift, no write.
    let writes = s.total_writes();
    let report = sync::apply(&c, &desired, &heal()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert_eq!(s.total_writes(), writes);
    assert_eq!(sync::diff(&c, &desired, &opts()).await.exit_code(), 0);
}

#[tokio::test]
async fn an_update_goes_through_while_drift_is_only_detected() {
    let s = TestServer::start().await.unwrap();
    let c = cluster(&s, 0).await;
    assert_eq!(
        sync::apply(&c, &build(&[project("er", Some("32"))]).desired(), &opts())
            .await
            .exit_code(),
        0
    );
    let quota = key("v1", "ResourceQuota", Some("er"), "quota");
    edit_as(
        &s,
        "kubectl-patch",
        &quota,
        json!({"spec": {"hard": {"requests.cpu": "48"}}}),
    )
    .await;
    // A new revision changes memory: applied; the hand-edited cpu is left (detect).
    let v2 = build(&[(
        "projects/er.yaml".into(),
        "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: er\nspec:\n  owners: [dana@acme.example]\n  quota: {cpu: \"32\", memory: 128Gi}\n  deployments: {enabled: true, max: 3}\n".into(),
    )]);
    let report = sync::apply(&c, &v2.desired(), &opts()).await;
    assert_eq!(report.exit_code(), 2, "{}", report.to_text());
    let q = report.objects.iter().find(|o| o.key == quota).unwrap();
    assert_eq!(q.action, Action::Update);
    let hard = &live(&s, &quota).unwrap()["spec"]["hard"];
    assert_eq!(hard["requests.memory"], "128Gi");
    assert_eq!(hard["requests.cpu"], "48");
    // Healing takes the cpu back.
    let report = sync::apply(&c, &v2.desired(), &heal()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert_eq!(
        live(&s, &quota).unwrap()["spec"]["hard"]["requests.cpu"],
        "32"
    );
}

#[tokio::test]
async fn a_field_owned_by_another_manager_is_left_alone() {
    let s = Arc::new(TestServer::start().await.unwrap());
    let c = cluster(&s, 0).await;
    let _controllers = Controllers::start(Arc::clone(&s), Duration::ZERO);
    let v1 = build(&[project("er", Some("32")), model("los", "er", "2.3.0")]);
    assert_eq!(sync::apply(&c, &v1.desired(), &opts()).await.exit_code(), 0);
    let deploy = key("apps/v1", "Deployment", Some("er"), "los");
    // An autoscaler takes `spec.replicas`.
    edit_as(
        &s,
        "horizontal-pod-autoscaler",
        &deploy,
        json!({"spec": {"replicas": 5}}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(100)).await;

    for o in [opts(), heal()] {
        let writes = s.total_writes();
        let report = sync::apply(&c, &v1.desired(), &o).await;
        assert_eq!(report.exit_code(), 0, "{}", report.to_text());
        let d = report.objects.iter().find(|r| r.key == deploy).unwrap();
        assert_eq!(d.action, Action::Unchanged);
        assert_eq!(
            d.diffs[0].class,
            Class::Other {
                manager: "horizontal-pod-autoscaler".into()
            }
        );
        assert!(report.to_text().contains(
            "left alone Deployment er/los: spec.replicas 2→5, owned by horizontal-pod-autoscaler (left alone)"
        ), "{}", report.to_text());
        assert_eq!(s.total_writes(), writes);
        assert_eq!(live(&s, &deploy).unwrap()["spec"]["replicas"], 5);
    }
    // A new image is applied without a conflict and without touching the replicas.
    let v2 = build(&[project("er", Some("32")), model("los", "er", "2.4.0")]);
    let report = sync::apply(&c, &v2.desired(), &heal()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    let live_d = live(&s, &deploy).unwrap();
    assert_eq!(live_d["spec"]["replicas"], 5);
    assert_eq!(
        live_d["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.acme.example/los:2.4.0"
    );
    // Unless configured to take it back.
    let mut take = heal();
    take.drift.take_from = vec!["horizontal-pod-autoscaler".into()];
    let report = sync::apply(&c, &v2.desired(), &take).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert_eq!(live(&s, &deploy).unwrap()["spec"]["replicas"], 2);
}

#[tokio::test]
async fn defaulted_and_controller_fields_are_not_reported() {
    let s = Arc::new(TestServer::start().await.unwrap());
    let c = cluster(&s, 0).await;
    let _controllers = Controllers::start(Arc::clone(&s), Duration::ZERO);
    let tree = build(&[project_with_volume("er"), model("los", "er", "2.3.0")]);
    let desired = tree.desired();
    assert_eq!(sync::apply(&c, &desired, &opts()).await.exit_code(), 0);
    let deploy = key("apps/v1", "Deployment", Some("er"), "los");
    let svc = key("v1", "Service", Some("er"), "los");
    // The server defaulted these; none is in the compiled objects.
    let d = live(&s, &deploy).unwrap();
    assert!(d["spec"].get("revisionHistoryLimit").is_some());
    assert!(d["spec"].get("strategy").is_some());
    assert!(live(&s, &svc).unwrap()["spec"].get("clusterIP").is_some());
    let ns = live(&s, &key("v1", "Namespace", None, "er")).unwrap();
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    // A controller annotates the Deployment (its own Update) and changes a default in place.
    edit_as(
        &s,
        "kube-controller-manager",
        &deploy,
        json!({"metadata": {"annotations": {"deployment.kubernetes.io/revision": "1"}}}),
    )
    .await;
    s.modify("apps/v1", "Deployment", Some("er"), "los", |o| {
        o["spec"]["progressDeadlineSeconds"] = json!(900);
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let writes = s.total_writes();
    let report = sync::apply(&c, &desired, &opts()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert!(
        report
            .objects
            .iter()
            .all(|o| o.diffs.is_empty() && o.extras.is_empty()),
        "{}",
        report.to_text()
    );
    assert_eq!(s.total_writes(), writes);
    let d = sync::diff(&c, &desired, &opts()).await;
    assert_eq!(d.exit_code(), 0, "{}", d.to_text());

    // A label someone adds by hand is listed, but it is not drift.
    edit_as(
        &s,
        "kubectl-label",
        &svc,
        json!({"metadata": {"labels": {"team": "er"}}}),
    )
    .await;
    let report = sync::apply(&c, &desired, &opts()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    let o = report.objects.iter().find(|o| o.key == svc).unwrap();
    assert_eq!(o.extras.len(), 1);
    assert_eq!(o.extras[0].manager, "kubectl-label");
    assert!(
        report
            .to_text()
            .contains("added      Service er/los: metadata.labels.team = er, by kubectl-label"),
        "{}",
        report.to_text()
    );
}

#[tokio::test]
async fn a_field_changed_without_a_manager_is_drift() {
    let s = TestServer::start().await.unwrap();
    let c = cluster(&s, 0).await;
    let tree = build(&[project("er", Some("32"))]);
    let desired = tree.desired();
    assert_eq!(sync::apply(&c, &desired, &opts()).await.exit_code(), 0);
    let quota = key("v1", "ResourceQuota", Some("er"), "quota");
    // Changed in place with no managed-fields entry (as a webhook or a direct store edit would).
    s.modify("v1", "ResourceQuota", Some("er"), "quota", |o| {
        o["spec"]["hard"]["requests.memory"] = json!("1Ti");
    });
    let writes = s.total_writes();
    let report = sync::apply(&c, &desired, &opts()).await;
    assert_eq!(report.exit_code(), 2, "{}", report.to_text());
    assert_eq!(
        s.total_writes(),
        writes,
        "detect leaves it, and keeps plinth's ownership"
    );
    let q = report.objects.iter().find(|o| o.key == quota).unwrap();
    assert_eq!(q.diffs[0].class, Class::OutOfBand);
    assert_eq!(
        live(&s, &quota).unwrap()["spec"]["hard"]["requests.memory"],
        "1Ti"
    );
    let report = sync::apply(&c, &desired, &heal()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert_eq!(
        live(&s, &quota).unwrap()["spec"]["hard"]["requests.memory"],
        "64Gi"
    );
}

#[tokio::test]
async fn diff_shows_creates_updates_and_prunes_without_writing() {
    let s = TestServer::start().await.unwrap();
    let c = cluster(&s, 0).await;
    let v1 = build(&[
        project("a", Some("4")),
        project("b", Some("4")),
        project("c", Some("4")),
    ]);
    // Nothing applied yet: everything to create.
    let d = sync::diff(&c, &v1.desired(), &opts()).await;
    assert_eq!(d.exit_code(), 2);
    assert_eq!(d.count(Action::Create), v1.desired().objects.len());
    assert_eq!(s.total_writes(), 4, "only the default namespaces exist");
    assert_eq!(sync::apply(&c, &v1.desired(), &opts()).await.exit_code(), 0);
    assert_eq!(sync::diff(&c, &v1.desired(), &opts()).await.exit_code(), 0);
    let v2 = build(&[project("a", Some("8")), project("b", Some("4"))]);
    let writes = s.total_writes();
    let d = sync::diff(&c, &v2.desired(), &opts()).await;
    assert_eq!(s.total_writes(), writes);
    assert_eq!(d.exit_code(), 2);
    let text = d.to_text();
    assert!(
        text.contains(
            "update     ResourceQuota a/quota\n               spec.hard.requests.cpu 4→8"
        ),
        "{text}"
    );
    assert!(
        text.contains("prune      Namespace c (loses data and is not approved"),
        "{text}"
    );
    assert!(text.contains("to prune: differences found"), "{text}");
    let json: serde_json::Value = serde_json::from_str(&d.to_json()).unwrap();
    assert_eq!(json["version"], 1);
    assert_eq!(json["outcome"], "changes");
}
