//! Staged server-side apply: a first apply, a re-apply that writes nothing, an update, the
//! inventory it records, and a real golden build output.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use kube_testserver::TestServer;
use plinth::emit::Stage;
use plinth_agent::report::Action;
use plinth_agent::sync;

#[tokio::test]
async fn first_apply_creates_everything_in_stage_order() {
    let s = TestServer::start().await.unwrap();
    let tree = build(&[
        project("er-capacity", Some("32")),
        project("radiology", None),
    ]);
    let desired = tree.desired();
    let c = cluster(&s, 0).await;
    let report = sync::apply(&c, &desired, &opts()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert_eq!(report.count(Action::Create), desired.objects.len());
    for o in &desired.objects {
        let live = live(&s, &o.key).unwrap_or_else(|| panic!("{} missing", o.key));
        assert_eq!(
            live["metadata"]["annotations"]["plinth.dev/spec-hash"],
            o.hash.as_str()
        );
        let mf = live["metadata"]["managedFields"].as_array().unwrap();
        assert!(
            mf.iter()
                .any(|m| m["manager"] == "plinth" && m["operation"] == "Apply")
        );
    }
    // Stage order: every namespace was written before any namespaced object.
    let writes = real_writes(&s);
    let first_namespaced = writes
        .iter()
        .position(|w| {
            w.contains("/namespaces/er-capacity/") || w.contains("/namespaces/radiology/")
        })
        .unwrap();
    let last_namespace = writes
        .iter()
        .rposition(|w| {
            w.contains("/api/v1/namespaces/er-capacity?")
                || w.contains("/api/v1/namespaces/radiology?")
        })
        .unwrap();
    assert!(last_namespace < first_namespaced, "{writes:#?}");
    assert!(desired.objects.windows(2).all(|w| w[0].stage <= w[1].stage));
    assert!(desired.objects.iter().any(|o| o.stage == Stage::Policy));
    // The inventory records the revision and every object.
    let inv = inventory(&s).unwrap();
    assert_eq!(inv.cluster, "prod");
    assert_eq!(inv.revision, desired.revision);
    assert_eq!(inv.objects, tree.keys());
    let text = report.to_text();
    assert!(text.contains("created    Namespace er-capacity"), "{text}");
    assert!(text.contains(": synced"), "{text}");
}

#[tokio::test]
async fn reapplying_an_unchanged_tree_writes_nothing() {
    let s = Arc::new(TestServer::start().await.unwrap());
    let tree = build(&[
        project_with_volume("er-capacity"),
        model("los", "er-capacity", "2.3.0"),
        project("radiology", Some("8")),
    ]);
    let desired = tree.desired();
    let c = cluster(&s, 0).await;
    let _controllers = Controllers::start(Arc::clone(&s), Duration::ZERO);
    let first = sync::apply(&c, &desired, &opts()).await;
    assert_eq!(first.exit_code(), 0, "{}", first.to_text());
    // Let the simulated controllers finish their status writes.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let writes = s.total_writes();
    s.clear_requests();
    let again = sync::apply(&c, &desired, &opts()).await;
    assert_eq!(again.exit_code(), 0, "{}", again.to_text());
    assert_eq!(
        again.count(Action::Unchanged),
        desired.objects.len(),
        "{}",
        again.to_text()
    );
    assert_eq!(s.total_writes(), writes, "{:#?}", real_writes(&s));
    assert!(real_writes(&s).is_empty(), "{:#?}", real_writes(&s));
    // The dry runs were the only PATCHes.
    assert!(s.requests().iter().any(|r| r.target.contains("dryRun=All")));
}

#[tokio::test]
async fn an_update_writes_only_what_changed() {
    let s = TestServer::start().await.unwrap();
    let c = cluster(&s, 0).await;
    let v1 = build(&[
        project("er-capacity", Some("32")),
        project("radiology", None),
    ]);
    assert_eq!(sync::apply(&c, &v1.desired(), &opts()).await.exit_code(), 0);
    let quota = key("v1", "ResourceQuota", Some("er-capacity"), "quota");
    let before = s.writes("v1", "ResourceQuota", Some("er-capacity"), "quota");

    let v2 = build(&[
        project("er-capacity", Some("48")),
        project("radiology", None),
    ]);
    s.clear_requests();
    let report = sync::apply(&c, &v2.desired(), &opts()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    let updated: Vec<String> = report
        .objects
        .iter()
        .filter(|o| o.action == Action::Update)
        .map(|o| o.key.to_string())
        .collect();
    assert_eq!(updated, ["ResourceQuota er-capacity/quota"]);
    assert_eq!(
        live(&s, &quota).unwrap()["spec"]["hard"]["requests.cpu"],
        "48"
    );
    assert_eq!(
        s.writes("v1", "ResourceQuota", Some("er-capacity"), "quota"),
        before + 1
    );
    // The quota, then the inventory's new revision: nothing else.
    let writes = real_writes(&s);
    assert_eq!(writes.len(), 2, "{writes:#?}");
    assert!(writes[0].contains("/resourcequotas/quota"));
    assert!(writes[1].contains("/configmaps/plinth-inventory"));
    assert_eq!(inventory(&s).unwrap().revision, v2.desired().revision);
    let text = report.to_text();
    assert!(
        text.contains("updated    ResourceQuota er-capacity/quota"),
        "{text}"
    );
    assert!(text.contains("spec.hard.requests.cpu 32→48"), "{text}");
}

#[tokio::test]
async fn a_golden_build_output_applies_becomes_healthy_and_reapplies_as_a_no_op() {
    let dir =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/build/example/expected/prod-a");
    let desired = plinth_agent::Desired::read(&dir).unwrap();
    assert!(desired.objects.len() > 20);
    let s = Arc::new(TestServer::start().await.unwrap());
    let c = cluster(&s, 0).await;
    let _controllers = Controllers::start(Arc::clone(&s), Duration::ZERO);
    let first = sync::apply(&c, &desired, &opts()).await;
    assert_eq!(first.exit_code(), 0, "{}", first.to_text());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let writes = s.total_writes();
    let again = sync::apply(&c, &desired, &opts()).await;
    assert_eq!(again.exit_code(), 0, "{}", again.to_text());
    assert_eq!(s.total_writes(), writes);
}
