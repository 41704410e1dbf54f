//! The `kube` client (what the agent uses) against the server: discovery (legacy and
//! aggregated), dynamic and typed apply/get/list/delete, errors, watch and the runtime
//! watcher, the events recorder.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, ObjectReference};
use kube::api::{
    Api, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
    WatchEvent, WatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::{Discovery, Scope};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Config};
use kube_testserver::TestServer;
use serde_json::json;

const LIMIT: Duration = Duration::from_secs(20);

async fn client(s: &TestServer) -> Client {
    let kc = Kubeconfig::from_yaml(&s.kubeconfig()).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

fn api_error(e: kube::Error) -> Box<kube::core::Status> {
    match e {
        kube::Error::Api(s) => s,
        other => panic!("not an API error: {other:?}"),
    }
}

async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(LIMIT, f)
        .await
        .expect("within the time limit")
}

#[tokio::test]
async fn discovery_finds_every_kind() {
    let s = TestServer::start().await.unwrap();
    let c = client(&s).await;
    for discovery in [
        Discovery::new(c.clone()).run().await.unwrap(),
        Discovery::new(c.clone()).run_aggregated().await.unwrap(),
    ] {
        for (api_version, kind, namespaced) in plinth::lower::crd::kinds() {
            let (group, version) = api_version.split_once('/').unwrap();
            let gvk = GroupVersionKind::gvk(group, version, kind);
            let (ar, caps) = discovery
                .resolve_gvk(&gvk)
                .unwrap_or_else(|| panic!("{api_version} {kind} not discovered"));
            assert_eq!(caps.scope == Scope::Namespaced, namespaced, "{kind}");
            assert_eq!(ar.plural, kube_testserver::registry::plural_of(kind));
        }
        let (ar, caps) = discovery
            .resolve_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"))
            .unwrap();
        assert_eq!(
            (ar.plural.as_str(), caps.scope),
            ("configmaps", Scope::Namespaced)
        );
        let (_, caps) = discovery
            .resolve_gvk(&GroupVersionKind::gvk("apps", "v1", "Deployment"))
            .unwrap();
        assert!(
            caps.subresources
                .iter()
                .any(|(r, _)| r.plural == "deployments/status" || r.plural == "status")
        );
        assert!(discovery.has_group("kueue.x-k8s.io"));
    }
}

#[tokio::test]
async fn dynamic_apply_get_list_delete() {
    let s = TestServer::start().await.unwrap();
    let c = client(&s).await;
    let discovery = Discovery::new(c.clone()).run_aggregated().await.unwrap();
    let (ns_ar, _) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "Namespace"))
        .unwrap();
    let (lq_ar, _) = discovery
        .resolve_gvk(&GroupVersionKind::gvk(
            "kueue.x-k8s.io",
            "v1beta2",
            "LocalQueue",
        ))
        .unwrap();
    let (cm_ar, _) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("", "v1", "ConfigMap"))
        .unwrap();
    let pp = PatchParams::apply("plinth");

    let nss: Api<DynamicObject> = Api::all_with(c.clone(), &ns_ar);
    let ns: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}),
    )
    .unwrap();
    bounded(nss.patch("x", &pp, &Patch::Apply(&ns)))
        .await
        .unwrap();

    let lqs: Api<DynamicObject> = Api::namespaced_with(c.clone(), "x", &lq_ar);
    let lq: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
        "metadata": {"name": "a100", "namespace": "x", "labels": {"app": "y"}},
        "spec": {"clusterQueue": "er-a100"}
    }))
    .unwrap();
    let created = lqs.patch("a100", &pp, &Patch::Apply(&lq)).await.unwrap();
    assert_eq!(created.data["spec"]["clusterQueue"], "er-a100");
    let rv = created.metadata.resource_version.clone().unwrap();
    let mf = created.metadata.managed_fields.clone().unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("plinth"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));
    // No-op.
    let again = lqs.patch("a100", &pp, &Patch::Apply(&lq)).await.unwrap();
    assert_eq!(
        again.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    // Dry run.
    let mut changed = lq.clone();
    changed.data["spec"]["clusterQueue"] = json!("other");
    let dry = lqs
        .patch("a100", &pp.clone().dry_run(), &Patch::Apply(&changed))
        .await
        .unwrap();
    assert_eq!(dry.data["spec"]["clusterQueue"], "other");
    assert_eq!(
        lqs.get("a100").await.unwrap().data["spec"]["clusterQueue"],
        "er-a100"
    );
    // Get, list with a selector.
    let got = lqs.get("a100").await.unwrap();
    assert_eq!(got.types.as_ref().unwrap().kind, "LocalQueue");
    let list = lqs
        .list(&ListParams::default().labels("app=y"))
        .await
        .unwrap();
    assert_eq!(list.items.len(), 1);
    assert!(
        lqs.list(&ListParams::default().labels("app=n"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(lqs.get_opt("missing").await.unwrap().is_none());
    // Conflict, then force.
    let other = PatchParams::apply("intruder");
    let err = api_error(
        lqs.patch("a100", &other, &Patch::Apply(&changed))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    assert!(
        err.message
            .contains("conflict with \"plinth\": .spec.clusterQueue"),
        "{}",
        err.message
    );
    lqs.patch("a100", &other.clone().force(), &Patch::Apply(&changed))
        .await
        .unwrap();
    // Errors: missing namespace; invalid name.
    let cms: Api<DynamicObject> = Api::namespaced_with(c.clone(), "nope", &cm_ar);
    let cm: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "nope"}}),
    )
    .unwrap();
    let err = api_error(cms.patch("c", &pp, &Patch::Apply(&cm)).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (404, "NotFound"));
    // Delete: a custom resource answers the object; a built-in a Status.
    let gone = lqs
        .delete("a100", &DeleteParams::background())
        .await
        .unwrap();
    assert!(gone.is_left());
    let err = api_error(
        lqs.delete("a100", &DeleteParams::default())
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 404);
    let cms: Api<DynamicObject> = Api::namespaced_with(c.clone(), "x", &cm_ar);
    let cm: DynamicObject = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "x"}}),
    )
    .unwrap();
    cms.patch("c", &pp, &Patch::Apply(&cm)).await.unwrap();
    let dry = cms
        .delete("c", &DeleteParams::default().dry_run())
        .await
        .unwrap();
    assert!(dry.is_right());
    assert!(cms.get_opt("c").await.unwrap().is_some());
    let gone = cms.delete("c", &DeleteParams::foreground()).await.unwrap();
    assert!(gone.is_right());
    assert!(s.get("v1", "ConfigMap", Some("x"), "c").is_none());
}

#[tokio::test]
async fn typed_objects() {
    let s = TestServer::start().await.unwrap();
    let c = client(&s).await;
    let nss: Api<Namespace> = Api::all(c.clone());
    let ns = nss.get("default").await.unwrap();
    assert_eq!(
        ns.metadata.labels.unwrap()["kubernetes.io/metadata.name"],
        "default"
    );
    assert!(nss.list(&ListParams::default()).await.unwrap().items.len() >= 4);
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("c".into());
    cm.data = Some([("k".to_string(), "v".to_string())].into());
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    assert_eq!(created.data.as_ref().unwrap()["k"], "v");
    let err = api_error(cms.create(&PostParams::default(), &cm).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (409, "AlreadyExists"));
    let patched = cms
        .patch(
            "c",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"k": "w"}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.data.unwrap()["k"], "w");
    let mut stale = created.clone();
    stale.data = Some([("k".to_string(), "stale".to_string())].into());
    let err = api_error(
        cms.replace("c", &PostParams::default(), &stale)
            .await
            .unwrap_err(),
    );
    assert_eq!(err.code, 409);
    let list = cms.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);

    let deploys: Api<Deployment> = Api::namespaced(c.clone(), "default");
    let d: Deployment = serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}}}
    }))
    .unwrap();
    let applied = deploys
        .patch("web", &PatchParams::apply("plinth"), &Patch::Apply(&d))
        .await
        .unwrap();
    assert_eq!(applied.spec.unwrap().revision_history_limit, Some(10));
    s.set_status(
        "apps/v1",
        "Deployment",
        Some("default"),
        "web",
        json!({"replicas": 1, "readyReplicas": 1}),
    )
    .unwrap();
    let st = deploys.get_status("web").await.unwrap();
    assert_eq!(st.status.unwrap().ready_replicas, Some(1));
    let scale = deploys.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(1));
}

#[tokio::test]
async fn watches() {
    let s = TestServer::start().await.unwrap();
    let c = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let list = cms.list(&ListParams::default()).await.unwrap();
    let rv = list.metadata.resource_version.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(10), &rv)
        .await
        .unwrap()
        .boxed();
    let pp = PatchParams::apply("plinth");
    let cm = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}, "data": {"k": v}});
    cms.patch("w", &pp, &Patch::Apply(cm("1"))).await.unwrap();
    cms.patch("w", &pp, &Patch::Apply(cm("2"))).await.unwrap();
    cms.delete("w", &DeleteParams::default()).await.unwrap();
    let mut kinds = Vec::new();
    while kinds.len() < 3 {
        match bounded(stream.try_next()).await.unwrap().unwrap() {
            WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o)
                if o.metadata.name.as_deref() != Some("w") => {}
            WatchEvent::Added(_) => kinds.push("added"),
            WatchEvent::Modified(_) => kinds.push("modified"),
            WatchEvent::Deleted(_) => kinds.push("deleted"),
            WatchEvent::Bookmark(_) => {}
            WatchEvent::Error(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(kinds, ["added", "modified", "deleted"]);

    // The runtime watcher: list then watch, and the streaming-list variant.
    for config in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        cms.patch(
            "pre",
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pre"}}),
            ),
        )
        .await
        .unwrap();
        let mut objects = watcher(cms.clone(), config).applied_objects().boxed();
        let first = bounded(objects.try_next()).await.unwrap().unwrap();
        assert_eq!(first.metadata.name.as_deref(), Some("pre"));
        cms.patch(
            "post",
            &pp,
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "post"}}),
            ),
        )
        .await
        .unwrap();
        let next = bounded(objects.try_next()).await.unwrap().unwrap();
        assert_eq!(next.metadata.name.as_deref(), Some("post"));
        cms.delete("pre", &DeleteParams::default()).await.unwrap();
        cms.delete("post", &DeleteParams::default()).await.unwrap();
    }
}

#[tokio::test]
async fn events_recorder() {
    let s = TestServer::start().await.unwrap();
    let c = client(&s).await;
    let reporter = kube::runtime::events::Reporter {
        controller: "plinth-agent".into(),
        instance: Some("test".into()),
    };
    let recorder = kube::runtime::events::Recorder::new(c.clone(), reporter);
    let target = ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Namespace".into()),
        name: Some("default".into()),
        ..ObjectReference::default()
    };
    let event = kube::runtime::events::Event {
        type_: kube::runtime::events::EventType::Normal,
        reason: "Synced".into(),
        note: Some("applied 3 objects".into()),
        action: "Sync".into(),
        secondary: None,
    };
    bounded(recorder.publish(&event, &target)).await.unwrap();
    bounded(recorder.publish(&event, &target)).await.unwrap();
    let events = s.list("events.k8s.io/v1", "Event", Some("default"));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["apiVersion"], "events.k8s.io/v1");
    assert_eq!(events[0]["reason"], "Synced");
    assert_eq!(events[0]["note"], "applied 3 objects");
    assert_eq!(events[0]["regarding"]["name"], "default");
    assert_eq!(events[0]["series"]["count"], 2);
    // The same event through the core API, as `kubectl get events` reads it.
    let core: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(c.clone(), "default");
    let list = core.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert_eq!(list.items[0].message.as_deref(), Some("applied 3 objects"));
    assert_eq!(
        list.items[0].involved_object.name.as_deref(),
        Some("default")
    );
    assert_eq!(
        list.items[0].reporting_component.as_deref(),
        Some("plinth-agent")
    );
    let typed: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(c.clone(), "default");
    let again = typed.list(&ListParams::default()).await.unwrap();
    assert_eq!(again.items[0].note.as_deref(), Some("applied 3 objects"));
}

#[tokio::test]
async fn faults_reach_the_client() {
    let s = TestServer::start().await.unwrap();
    let c = client(&s).await;
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    // kube 5 retries 429, 503 and 504 by itself (exponential backoff from 5 ms, up to 15
    // times); other failures reach the caller.
    s.clear_requests();
    s.faults().arm(
        kube_testserver::Fault::on("GET", "/configmaps")
            .times(2)
            .status(503),
    );
    assert!(cms.list(&ListParams::default()).await.is_ok());
    assert_eq!(
        s.requests()
            .iter()
            .filter(|r| r.target.contains("/configmaps"))
            .count(),
        3
    );
    s.faults()
        .arm(kube_testserver::Fault::on("GET", "/configmaps").status(500));
    let err = api_error(cms.list(&ListParams::default()).await.unwrap_err());
    assert_eq!((err.code, err.reason.as_str()), (500, "InternalError"));
    s.faults()
        .arm(kube_testserver::Fault::on("PATCH", "/configmaps/c").conflict());
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let err = api_error(
        cms.patch("c", &PatchParams::apply("plinth"), &Patch::Apply(&cm))
            .await
            .unwrap_err(),
    );
    assert_eq!((err.code, err.reason.as_str()), (409, "Conflict"));
    s.faults()
        .arm(kube_testserver::Fault::on("GET", "/configmaps").drop_connection());
    assert!(cms.list(&ListParams::default()).await.is_err());
    assert!(cms.list(&ListParams::default()).await.is_ok());
}
