//! Pruning by inventory: what is deleted when a spec goes, and every guard: empty renders,
//! the deletion budget, `plinth.dev/prune: disabled`, objects plinth did not create, an
//! inventory of another cluster.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use kube_testserver::TestServer;
use plinth::lower::ObjectKey;
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

    // With `--prune` (the share budget raised: half the objects go), but without approving the
    // namespace's deletion: refused whole, nothing written.
    let mut o = pruning();
    o.budget.max_share = 1.0;
    let writes = s.total_writes();
    let report = sync::apply(&c, &v2.desired(), &o).await;
    assert_eq!(report.exit_code(), 1, "{}", report.to_text());
    assert_eq!(s.total_writes(), writes, "{}", report.to_text());
    assert_eq!(
        report.unapproved,
        [key("v1", "Namespace", None, "radiology")]
    );
    assert!(
        report.failures[0]
            .contains("refused: deleting Namespace radiology loses data and is not approved")
            && report.failures[0].contains("- object: Namespace/radiology\n      cluster: prod"),
        "{}",
        report.failures[0]
    );
    assert!(gone.iter().all(|k| live(&s, k).is_some()));

    // The revision that deletes it approves it.
    let v2 = build_approving(
        &[project("er-capacity", Some("32"))],
        &["Namespace/radiology"],
    );
    let report = sync::apply(&c, &v2.desired(), &o).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    let ns = report
        .prune
        .iter()
        .find(|p| p.key.kind == "Namespace")
        .unwrap();
    assert!(
        ns.approval
            .as_deref()
            .is_some_and(|a| a.contains("CHG-1 retired — by dana")),
        "{ns:?}"
    );
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
    // `--allow-empty` passes this guard (and `--allow-destructive` the approvals), and the
    // deletion budget still refuses to delete all.
    let mut o = pruning();
    o.allow_empty = true;
    o.allow_destructive = true;
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
    let v2 = build_approving(&[project("a", Some("4"))], &["Namespace/b", "Namespace/c"]);
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
    let v3 = build_approving(
        &[project("a", Some("4")), project("b", Some("4"))],
        &["Namespace/c"],
    );
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
    let v2 = build_approving(
        &[project("a", Some("4")), project("b", Some("4"))],
        &["Namespace/c"],
    );
    for _ in 0..2 {
        let report = sync::apply(&c, &v2.desired(), &pruning()).await;
        assert_eq!(report.exit_code(), 0, "{}", report.to_text());
        let ns = report
            .prune
            .iter()
            .find(|p| p.key.kind == "Namespace")
            .unwrap();
        assert_eq!(ns.action, PruneAction::Holds);
        assert_eq!(ns.holds, ["ServiceAccount c/workload"]);
        assert!(
            report
                .to_text()
                .contains("held       Namespace c (holds 1 object that plinth does not delete: ServiceAccount c/workload"),
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

/// Create an object by hand, as a user with `kubectl apply` would.
async fn create_by_hand(s: &TestServer, obj: serde_json::Value) {
    let client = client(s).await;
    let key = plinth::lower::ObjectKey::of(&obj);
    let (group, version) = key
        .api_version
        .rsplit_once('/')
        .unwrap_or(("", &key.api_version));
    let ar = kube::discovery::ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(
        group, version, &key.kind,
    ));
    let api: kube::Api<kube::api::DynamicObject> =
        kube::Api::namespaced_with(client, key.namespace.as_deref().unwrap(), &ar);
    let o: kube::api::DynamicObject = serde_json::from_value(obj).unwrap();
    api.create(&Default::default(), &o).await.unwrap();
}

#[tokio::test]
async fn a_namespace_holding_data_plinth_does_not_own_is_held_never_deleted() {
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
    // A user keeps data in c: a claim made by hand, and a pod of their own.
    create_by_hand(
        &s,
        json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
               "metadata": {"name": "scratch", "namespace": "c"},
               "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}),
    )
    .await;
    let pvc = key("v1", "PersistentVolumeClaim", Some("c"), "scratch");
    let ns = key("v1", "Namespace", None, "c");
    // c's spec goes, its deletion approved: everything plinth made in c is deleted, the
    // namespace is held.
    let v2 = build_approving(
        &[project("a", Some("4")), project("b", Some("4"))],
        &["Namespace/c"],
    );
    let report = sync::apply(&c, &v2.desired(), &pruning()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    let held: Vec<_> = report.held().collect();
    assert_eq!(held.len(), 1, "{}", report.to_text());
    assert_eq!(held[0].key, ns);
    assert_eq!(held[0].holds, ["PersistentVolumeClaim c/scratch"]);
    assert!(live(&s, &pvc).is_some(), "the user's data survives");
    let live_ns = live(&s, &ns).unwrap();
    assert!(live_ns.pointer("/metadata/deletionTimestamp").is_none());
    assert_eq!(live_ns["metadata"]["labels"]["plinth.dev/held"], "true");
    assert_eq!(
        live_ns["metadata"]["annotations"]["plinth.dev/held-objects"],
        "PersistentVolumeClaim c/scratch"
    );
    assert!(live(&s, &key("v1", "ResourceQuota", Some("c"), "quota")).is_none());
    let text = report.to_text();
    assert!(
        text.contains("held       Namespace c (holds 1 object that plinth does not delete: PersistentVolumeClaim c/scratch"),
        "{text}"
    );
    let json: serde_json::Value = serde_json::from_str(&report.to_json()).unwrap();
    let j = json["prune"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"]["kind"] == "Namespace")
        .unwrap()
        .clone();
    assert_eq!(j["action"], "holds");
    assert_eq!(j["holds"][0], "PersistentVolumeClaim c/scratch");
    // Still tracked, its approval still counting: the next runs hold it again.
    let inv = inventory(&s).unwrap();
    assert!(inv.objects.contains(&ns));
    assert!(inv.approved.contains(&ns));
    let again = sync::apply(&c, &v2.desired(), &pruning()).await;
    assert_eq!(again.exit_code(), 0, "{}", again.to_text());
    assert_eq!(again.held().count(), 1);
    assert!(live(&s, &pvc).is_some());

    // `diff` says the same without writing.
    let writes = s.total_writes();
    let d = sync::diff(&c, &v2.desired(), &opts()).await;
    assert_eq!(s.total_writes(), writes);
    assert_eq!(d.held().count(), 1, "{}", d.to_text());

    // Once the user's data is gone, a run deletes the namespace (the approval was spent on it).
    let pvcs: kube::Api<k8s_openapi::api::core::v1::PersistentVolumeClaim> =
        kube::Api::namespaced(client(&s).await, "c");
    pvcs.delete("scratch", &Default::default()).await.unwrap();
    assert!(live(&s, &pvc).is_none());
    let report = sync::apply(&c, &v2.desired(), &pruning()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert!(
        report
            .prune
            .iter()
            .any(|p| p.key == ns && p.action == PruneAction::Delete),
        "{}",
        report.to_text()
    );
    let inv = inventory(&s).unwrap();
    assert!(!inv.objects.contains(&ns));
    assert!(inv.approved.is_empty());
}

#[tokio::test]
async fn deleting_a_volume_needs_an_approval_that_counts_once() {
    let s = TestServer::start().await.unwrap();
    let c = cluster(&s, 0).await;
    let with = |shared: bool| {
        let mut specs = vec![project("a", Some("4"))];
        specs.push(if shared {
            project_with_volume("b")
        } else {
            project("b", Some("32"))
        });
        specs
    };
    let v1 = build(&with(true));
    let settle_all = || settle(&s);
    let mut o = pruning();
    o.health_timeout = std::time::Duration::from_millis(300);
    let r = sync::apply(&c, &v1.desired(), &o).await;
    if r.exit_code() != 0 {
        settle_all();
        assert_eq!(sync::apply(&c, &v1.desired(), &o).await.exit_code(), 0);
    }
    let claims: Vec<ObjectKey> = v1
        .keys()
        .into_iter()
        .filter(|k| k.kind == "PersistentVolumeClaim")
        .collect();
    assert!(!claims.is_empty());
    let ids: Vec<String> = claims
        .iter()
        .map(plinth::lower::Approval::object_id)
        .collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();

    // Unapproved: refused whole, nothing written.
    let v2 = build(&with(false));
    let writes = s.total_writes();
    let report = sync::apply(&c, &v2.desired(), &o).await;
    assert_eq!(report.exit_code(), 1, "{}", report.to_text());
    assert_eq!(s.total_writes(), writes);
    assert_eq!(report.unapproved, claims);
    assert!(claims.iter().all(|k| live(&s, k).is_some()));

    // Approved in the revision that deletes them: deleted.
    let v2 = build_approving(&with(false), &ids);
    let report = sync::apply(&c, &v2.desired(), &o).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert!(claims.iter().all(|k| live(&s, k).is_none()));
    assert_eq!(inventory(&s).unwrap().approvals.len(), ids.len());

    // The volume comes back with the approval left in place; deleting it again needs a new one.
    let v3 = build_approving(&with(true), &ids);
    let r = sync::apply(&c, &v3.desired(), &o).await;
    if r.exit_code() != 0 {
        settle_all();
        assert_eq!(sync::apply(&c, &v3.desired(), &o).await.exit_code(), 0);
    }
    let v4 = build_approving(&with(false), &ids);
    let report = sync::apply(&c, &v4.desired(), &o).await;
    assert_eq!(
        report.exit_code(),
        1,
        "a stale approval approves nothing: {}",
        report.to_text()
    );
    assert!(claims.iter().all(|k| live(&s, k).is_some()));
    // An operator's `--allow-destructive` (apply --once) decides for this one run.
    o.allow_destructive = true;
    let report = sync::apply(&c, &v4.desired(), &o).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert!(claims.iter().all(|k| live(&s, k).is_none()));
}
