//! Pruning by inventory: what is deleted when a spec goes, and every guard: empty renders,
//! the deletion budget, `plinth.dev/prune: disabled`, objects plinth did not create, an
//! inventory of another cluster.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use kube_testserver::TestServer;
use plinth_agent::report::{Action, PruneAction};
use plinth_agent::sync::{self, Options};
use serde_json::json;

fn pruning() -> Options {
    Options {
        prune: true,
        ..opts()
    }
}

#[tokio::test]
async fn objects_of_a_removed_spec_are_pruned_and_only_with_prune() {
    let s = TestServer::start().await.unwrap();
    let c = cluster(&s, 0).await;
    let v1 = build(&[
        project("er-capacity", Some("32")),
        project("radiology", Some("8")),
    ]);
    assert_eq!(
        sync::apply(&c, &v1.desired(), &pruning()).await.exit_code(),
        0
    );
    let v2 = build(&[project("er-capacity", Some("32"))]);
    let gone: Vec<_> = v1.keys().difference(&v2.keys()).cloned().collect();
    assert!(gone.len() >= 4, "{gone:?}");

    // Without `--prune`: reported, kept, still in the inventory.
    let report = sync::apply(&c, &v2.desired(), &opts()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert!(
        report
            .prune
            .iter()
            .all(|p| p.action == PruneAction::Pending)
    );
    assert_eq!(report.prune.len(), gone.len());
    assert!(gone.iter().all(|k| live(&s, k).is_some()));
    let inv = inventory(&s).unwrap();
    assert_eq!(inv.revision, v2.desired().revision);
    assert!(gone.iter().all(|k| inv.objects.contains(k)));
    assert!(
        report
            .to_text()
            .contains("orphan     Namespace radiology (no longer desired; `--prune` deletes it)"),
        "{}",
        report.to_text()
    );

    // With `--prune` (the share budget raised: half the objects go).
    let mut o = pruning();
    o.budget.max_share = 1.0;
    let report = sync::apply(&c, &v2.desired(), &o).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert_eq!(report.count(Action::Unchanged), v2.desired().objects.len());
    assert!(
        report
            .prune
            .iter()
            .all(|p| matches!(p.action, PruneAction::Delete | PruneAction::Gone))
    );
    assert!(gone.iter().all(|k| live(&s, k).is_none()));
    assert_eq!(inventory(&s).unwrap().objects, v2.keys());
    assert!(v2.keys().iter().all(|k| live(&s, k).is_some()));
    // Namespaced objects were deleted before their namespace.
    let deletes: Vec<String> = real_writes(&s)
        .into_iter()
        .filter(|w| w.starts_with("DELETE"))
        .collect();
    assert!(
        deletes
            .last()
            .unwrap()
            .contains("/api/v1/namespaces/radiology"),
        "{deletes:#?}"
    );
    // Nothing left to do.
    let again = sync::apply(&c, &v2.desired(), &pruning()).await;
    assert!(again.prune.is_empty());
}

#[tokio::test]
async fn an_empty_render_is_refused() {
    let s = TestServer::start().await.unwrap();
    let c = cluster(&s, 0).await;
    let v1 = build(&[project("er-capacity", Some("32"))]);
    assert_eq!(
        sync::apply(&c, &v1.desired(), &pruning()).await.exit_code(),
        0
    );
    let empty = build(&[]);
    assert!(empty.desired().objects.is_empty());
    let writes = s.total_writes();
    let report = sync::apply(&c, &empty.desired(), &pruning()).await;
    assert_eq!(report.exit_code(), 1);
    assert!(
        report.failures[0].contains("refused: the render is empty"),
        "{:?}",
        report.failures
    );
    assert_eq!(s.total_writes(), writes);
    assert!(v1.keys().iter().all(|k| live(&s, k).is_some()));
    // `--allow-empty` passes this guard, and the deletion budget still refuses to delete all.
    let mut o = pruning();
    o.allow_empty = true;
    let report = sync::apply(&c, &empty.desired(), &o).await;
    assert_eq!(report.exit_code(), 1);
    assert!(
        report.failures[0].contains("refused to prune"),
        "{:?}",
        report.failures
    );
    assert!(v1.keys().iter().all(|k| live(&s, k).is_some()));
    assert_eq!(inventory(&s).unwrap().objects, v1.keys());
}

#[tokio::test]
async fn deletions_over_budget_are_refused_whole() {
    let s = TestServer::start().await.unwrap();
    let c = cluster(&s, 0).await;
    let v1 = build(&[
        project("a", Some("4")),
        project("b", Some("4")),
        project("c", Some("4")),
    ]);
    assert_eq!(
        sync::apply(&c, &v1.desired(), &pruning()).await.exit_code(),
        0
    );
    // Two of three projects go: two thirds of the objects, over the default 50%.
    let v2 = build(&[project("a", Some("4"))]);
    let report = sync::apply(&c, &v2.desired(), &pruning()).await;
    assert_eq!(report.exit_code(), 1);
    assert!(
        report.failures[0].contains("over the budget of 50%"),
        "{:?}",
        report.failures
    );
    assert!(v1.keys().iter().all(|k| live(&s, k).is_some()));
    assert_eq!(inventory(&s).unwrap().objects, v1.keys());

    // A count budget: one project's objects are more than 3.
    let v3 = build(&[project("a", Some("4")), project("b", Some("4"))]);
    let mut o = pruning();
    o.budget.max_objects = Some(3);
    let report = sync::apply(&c, &v3.desired(), &o).await;
    assert_eq!(report.exit_code(), 1);
    assert!(
        report.failures[0].contains("over the budget of 3 per revision"),
        "{:?}",
        report.failures
    );
    assert!(v1.keys().iter().all(|k| live(&s, k).is_some()));

    // Within budget: deleted.
    o.budget.max_objects = Some(10);
    let report = sync::apply(&c, &v3.desired(), &o).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert!(live(&s, &key("v1", "Namespace", None, "c")).is_none());
    assert_eq!(inventory(&s).unwrap().objects, v3.keys());
}

#[tokio::test]
async fn prune_disabled_objects_are_kept_until_the_annotation_goes() {
    let s = TestServer::start().await.unwrap();
    let c = cluster(&s, 0).await;
    let v1 = build(&[project("er-capacity", Some("32"))]);
    assert_eq!(
        sync::apply(&c, &v1.desired(), &pruning()).await.exit_code(),
        0
    );
    let quota = key("v1", "ResourceQuota", Some("er-capacity"), "quota");
    edit_as(
        &s,
        "kubectl-annotate",
        &quota,
        json!({"metadata": {"annotations": {"plinth.dev/prune": "disabled"}}}),
    )
    .await;
    // The project loses its quota (and the LimitRange that came with it).
    let v2 = build(&[project("er-capacity", None)]);
    assert!(!v2.keys().contains(&quota));
    let report = sync::apply(&c, &v2.desired(), &pruning()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    let kept: Vec<_> = report
        .prune
        .iter()
        .filter(|p| p.action == PruneAction::KeptDisabled)
        .collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].key, quota);
    assert!(live(&s, &quota).is_some());
    // Still tracked: kept on every run while annotated, deleted once the annotation goes.
    assert!(inventory(&s).unwrap().objects.contains(&quota));
    assert!(
        report
            .to_text()
            .contains("kept       ResourceQuota er-capacity/quota (`plinth.dev/prune: disabled`)"),
        "{}",
        report.to_text()
    );
    let again = sync::apply(&c, &v2.desired(), &pruning()).await;
    assert_eq!(again.exit_code(), 0, "{}", again.to_text());
    assert_eq!(again.prune.len(), 1);
    assert_eq!(again.prune[0].action, PruneAction::KeptDisabled);
    assert!(live(&s, &quota).is_some());
    edit_as(
        &s,
        "kubectl-annotate",
        &quota,
        json!({"metadata": {"annotations": {"plinth.dev/prune": null}}}),
    )
    .await;
    let report = sync::apply(&c, &v2.desired(), &pruning()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert!(live(&s, &quota).is_none());
    assert_eq!(inventory(&s).unwrap().objects, v2.keys());
}

#[tokio::test]
async fn a_namespace_holding_a_kept_object_is_kept() {
    let s = TestServer::start().await.unwrap();
    let c = cluster(&s, 0).await;
    let v1 = build(&[
        project("a", Some("4")),
        project("b", Some("4")),
        project("c", Some("4")),
    ]);
    assert_eq!(
        sync::apply(&c, &v1.desired(), &pruning()).await.exit_code(),
        0
    );
    let sa = key("v1", "ServiceAccount", Some("c"), "workload");
    edit_as(
        &s,
        "kubectl-annotate",
        &sa,
        json!({"metadata": {"annotations": {"plinth.dev/prune": "disabled"}}}),
    )
    .await;
    let v2 = build(&[project("a", Some("4")), project("b", Some("4"))]);
    for _ in 0..2 {
        let report = sync::apply(&c, &v2.desired(), &pruning()).await;
        assert_eq!(report.exit_code(), 0, "{}", report.to_text());
        let ns = report
            .prune
            .iter()
            .find(|p| p.key.kind == "Namespace")
            .unwrap();
        assert_eq!(ns.action, PruneAction::Holds);
        assert!(
            report
                .to_text()
                .contains("kept       Namespace c (holds objects that are kept"),
            "{}",
            report.to_text()
        );
        assert!(live(&s, &sa).is_some());
        assert!(live(&s, &key("v1", "Namespace", None, "c")).is_some());
        assert!(live(&s, &key("v1", "ResourceQuota", Some("c"), "quota")).is_none());
    }
}

#[tokio::test]
async fn objects_plinth_did_not_create_are_never_deleted() {
    let s = TestServer::start().await.unwrap();
    let c = cluster(&s, 0).await;
    let v1 = build(&[project("er-capacity", Some("32"))]);
    assert_eq!(
        sync::apply(&c, &v1.desired(), &pruning()).await.exit_code(),
        0
    );
    // Someone else's ConfigMap, even wearing plinth's label, is not in the inventory.
    let foreign = key("v1", "ConfigMap", Some("er-capacity"), "notes");
    let client = client(&s).await;
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> =
        kube::Api::namespaced(client, "er-capacity");
    let cm: k8s_openapi::api::core::v1::ConfigMap = serde_json::from_value(json!({
        "metadata": {"name": "notes", "labels": {"app.kubernetes.io/managed-by": "plinth"}},
        "data": {"k": "v"}
    }))
    .unwrap();
    cms.create(&Default::default(), &cm).await.unwrap();
    // An object of the inventory whose label someone removed.
    let quota = key("v1", "ResourceQuota", Some("er-capacity"), "quota");
    edit_as(
        &s,
        "kubectl-label",
        &quota,
        json!({"metadata": {"labels": {"app.kubernetes.io/managed-by": null}}}),
    )
    .await;

    let v2 = build(&[project("er-capacity", None)]);
    let report = sync::apply(&c, &v2.desired(), &pruning()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert!(live(&s, &foreign).is_some());
    assert!(report.prune.iter().all(|p| p.key != foreign));
    assert!(live(&s, &quota).is_some());
    let q = report.prune.iter().find(|p| p.key == quota).unwrap();
    assert_eq!(q.action, PruneAction::NotOurs);
    // The LimitRange that went with the quota was plinth's: deleted.
    assert!(
        live(
            &s,
            &key("v1", "LimitRange", Some("er-capacity"), "defaults")
        )
        .is_none()
    );
    let inv = inventory(&s).unwrap();
    assert!(inv.objects.contains(&quota));
    assert!(!inv.objects.contains(&foreign));
}

#[tokio::test]
async fn an_inventory_of_another_cluster_is_refused() {
    let s = TestServer::start().await.unwrap();
    let c = cluster(&s, 0).await;
    let v1 = build(&[project("er-capacity", Some("32"))]);
    assert_eq!(
        sync::apply(&c, &v1.desired(), &pruning()).await.exit_code(),
        0
    );
    let mut other = v1.desired();
    other.cluster = "research".into();
    let writes = s.total_writes();
    let report = sync::apply(&c, &other, &pruning()).await;
    assert_eq!(report.exit_code(), 1);
    assert!(
        report.failures[0].contains("belongs to plinth cluster `prod`"),
        "{:?}",
        report.failures
    );
    assert_eq!(s.total_writes(), writes);
}
