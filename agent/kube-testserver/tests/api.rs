//! The server over HTTP: discovery, server-side apply, managed fields, dry run, selectors,
//! watch, faults, errors, defaulting, finalizers.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use common::Client;
use kube_testserver::{Fault, TestServer};
use serde_json::{Value, json};

const NS: &str = "/api/v1/namespaces";
const CMS: &str = "/api/v1/namespaces/x/configmaps";

fn server() -> (TestServer, Client) {
    let s = TestServer::start_blocking().expect("server");
    let c = Client::new(s.addr());
    (s, c)
}

/// A server with namespace `x`.
fn server_x() -> (TestServer, Client) {
    let (s, c) = server();
    let r = c.apply(
        &format!("{NS}/x?fieldManager=plinth"),
        &json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    (s, c)
}

fn cm(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "x"}, "data": data})
}

fn managers(obj: &Value) -> Vec<(String, Value)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_string(),
                e["fieldsV1"].clone(),
            )
        })
        .collect()
}

fn fields_of(obj: &Value, manager: &str) -> Option<Value> {
    managers(obj)
        .into_iter()
        .find(|(m, _)| m == manager)
        .map(|(_, f)| f)
}

fn rv(obj: &Value) -> String {
    obj["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn discovery_documents() {
    let (_s, c) = server();
    let kubectl_accept = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
    let r = c.get_accept("/api", kubectl_accept);
    assert_eq!(
        r.header("content-type"),
        Some("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
    );
    let core = r.json();
    assert_eq!(core["kind"], "APIGroupDiscoveryList");
    assert_eq!(core["items"][0]["metadata"]["name"], "");
    let resources = core["items"][0]["versions"][0]["resources"]
        .as_array()
        .unwrap();
    let cm = resources
        .iter()
        .find(|r| r["resource"] == "configmaps")
        .unwrap();
    assert_eq!(cm["scope"], "Namespaced");
    assert_eq!(cm["responseKind"]["kind"], "ConfigMap");
    assert_eq!(cm["shortNames"], json!(["cm"]));

    let r = c.get_accept(
        "/apis",
        "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json",
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList")
    );
    let r = c.get_accept("/apis", kubectl_accept);
    let groups = r.json();
    let kueue = groups["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["metadata"]["name"] == "kueue.x-k8s.io")
        .unwrap();
    assert_eq!(kueue["versions"][0]["version"], "v1beta2");
    let lq = kueue["versions"][0]["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["resource"] == "localqueues")
        .unwrap();
    assert_eq!(lq["scope"], "Namespaced");

    // Plain JSON: legacy documents.
    let r = c.get("/apis");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let list = r.json();
    assert_eq!(list["kind"], "APIGroupList");
    assert!(
        list["groups"]
            .as_array()
            .unwrap()
            .iter()
            .all(|g| !g["versions"].as_array().unwrap().is_empty())
    );
    assert_eq!(c.get("/api").json()["versions"], json!(["v1"]));
    let v1 = c.get("/api/v1").json();
    assert_eq!(v1["kind"], "APIResourceList");
    let ns = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "namespaces")
        .unwrap();
    assert_eq!(ns["namespaced"], false);
    assert_eq!(ns["singularName"], "namespace");
    assert!(
        v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "namespaces/status")
    );
    let apps = c.get("/apis/apps/v1").json();
    assert_eq!(apps["groupVersion"], "apps/v1");
    assert_eq!(c.get("/apis/apps").json()["kind"], "APIGroup");
    assert_eq!(c.get("/version").json()["minor"], "32");
    assert_eq!(c.get("/apis/nope/v1").status, 404);

    // OpenAPI v3: what kubectl needs for server-side field validation.
    let root = c.get("/openapi/v3").json();
    let url = root["paths"]["apis/kueue.x-k8s.io/v1beta2"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(url.starts_with("/openapi/v3/apis/kueue.x-k8s.io/v1beta2?hash="));
    let doc = c.get(&url).json();
    let patch = &doc["paths"]["/apis/kueue.x-k8s.io/v1beta2/namespaces/{namespace}/localqueues/{name}"]
        ["patch"];
    assert_eq!(
        patch["x-kubernetes-group-version-kind"]["kind"],
        "LocalQueue"
    );
    assert!(
        patch["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "fieldValidation" && p["in"] == "query")
    );
}

#[test]
fn server_side_apply_ownership() {
    let (s, c) = server_x();
    let a = format!("{CMS}/c?fieldManager=a");
    let b = format!("{CMS}/c?fieldManager=b");
    let r = c.apply(&a, &cm("c", json!({"x": "1", "y": "2"})));
    assert_eq!(r.status, 201);

    // Equal value: shared ownership, no conflict, no change to the object.
    let before = rv(&r.json());
    let r = c.apply(&b, &cm("c", json!({"x": "1"})));
    assert_eq!(r.status, 200);
    let o = r.json();
    assert_eq!(
        fields_of(&o, "a").unwrap(),
        json!({"f:data": {"f:x": {}, "f:y": {}}})
    );
    assert_eq!(fields_of(&o, "b").unwrap(), json!({"f:data": {"f:x": {}}}));
    assert_eq!(o["data"], json!({"x": "1", "y": "2"}));
    assert_ne!(rv(&o), before, "managed fields changed: a write");

    // Different value: conflict.
    let r = c.apply(&b, &cm("c", json!({"x": "9"})));
    assert_eq!(r.status, 409);
    let st = r.json();
    assert_eq!(st["kind"], "Status");
    assert_eq!(st["status"], "Failure");
    assert_eq!(st["code"], 409);
    assert_eq!(st["reason"], "Conflict");
    assert_eq!(
        st["message"],
        "Apply failed with 1 conflict: conflict with \"a\": .data.x"
    );
    assert_eq!(
        st["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"a\"", "field": ".data.x"}])
    );
    assert_eq!(
        s.get("v1", "ConfigMap", Some("x"), "c").unwrap()["data"]["x"],
        "1"
    );

    // Two conflicting fields with an Update manager: the multi-line message.
    let r = c.merge_patch(
        &format!("{CMS}/c?fieldManager=editor"),
        &json!({"data": {"x": "e", "y": "e"}}),
    );
    assert_eq!(r.status, 200);
    let o = r.json();
    assert_eq!(
        fields_of(&o, "editor").unwrap(),
        json!({"f:data": {"f:x": {}, "f:y": {}}})
    );
    assert_eq!(fields_of(&o, "b"), None, "b lost its only field");
    let r = c.apply(&a, &cm("c", json!({"x": "1", "y": "2"})));
    assert_eq!(r.status, 409);
    assert_eq!(
        r.json()["message"],
        "Apply failed with 2 conflicts: conflicts with \"editor\" using v1:\n- .data.x\n- .data.y"
    );

    // Force moves ownership.
    let r = c.apply(
        &format!("{a}&force=true"),
        &cm("c", json!({"x": "1", "y": "2"})),
    );
    assert_eq!(r.status, 200);
    let o = r.json();
    assert_eq!(fields_of(&o, "editor"), None);
    assert_eq!(
        fields_of(&o, "a").unwrap(),
        json!({"f:data": {"f:x": {}, "f:y": {}}})
    );

    // b shares x again; a stops applying x and y: y is removed, x stays (b owns it).
    c.apply(&b, &cm("c", json!({"x": "1"})));
    let r = c.apply(&a, &cm("c", json!({"z": "3"})));
    assert_eq!(r.status, 200);
    let o = r.json();
    assert_eq!(o["data"], json!({"x": "1", "z": "3"}));
    assert_eq!(fields_of(&o, "a").unwrap(), json!({"f:data": {"f:z": {}}}));

    // Labels: a field nobody applies any more disappears, and so does the emptied map.
    c.apply(&a, &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"l": "1"}}, "data": {"z": "3"}}));
    let r = c.apply(&a, &cm("c", json!({"z": "3"})));
    assert!(r.json()["metadata"].get("labels").is_none());
}

#[test]
fn managed_fields_shape() {
    let (_s, c) = server_x();
    let r = c.post(
        &format!("{CMS}?fieldManager=creator"),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": {"app": "y"}}, "data": {"k": "v"}}),
    );
    assert_eq!(r.status, 201);
    let o = r.json();
    let entries = o["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e["manager"], "creator");
    assert_eq!(e["operation"], "Update");
    assert_eq!(e["apiVersion"], "v1");
    assert_eq!(e["fieldsType"], "FieldsV1");
    let t = e["time"].as_str().unwrap();
    assert!(
        t.len() == 20 && t.ends_with('Z') && t.as_bytes()[10] == b'T',
        "{t}"
    );
    assert_eq!(
        e["fieldsV1"],
        json!({"f:data": {".": {}, "f:k": {}}, "f:metadata": {"f:labels": {".": {}, "f:app": {}}}})
    );
    // Object metadata.
    let m = &o["metadata"];
    assert!(m["uid"].as_str().is_some_and(|u| u.len() == 36));
    assert!(m["resourceVersion"].is_string());
    assert!(m["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(m["generation"], 1);

    // Apply entries come first; associative lists use k: keys; sets use v: values.
    let r = c.apply(
        &format!("{CMS}/c?fieldManager=applier"),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "finalizers": ["example.com/f"]}, "data": {"k": "v"}}),
    );
    let o = r.json();
    let entries = o["metadata"]["managedFields"].as_array().unwrap();
    assert_eq!(entries[0]["manager"], "applier");
    assert_eq!(entries[0]["operation"], "Apply");
    assert_eq!(
        entries[0]["fieldsV1"],
        json!({"f:data": {"f:k": {}}, "f:metadata": {"f:finalizers": {"v:\"example.com/f\"": {}}}})
    );
    let r = c.apply(
        "/apis/apps/v1/namespaces/x/deployments/d?fieldManager=applier",
        &json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}},
                "spec": {"containers": [{"name": "main", "image": "nginx:1.27", "ports": [{"containerPort": 80}]}]}}}}),
    );
    assert_eq!(r.status, 201);
    let f = fields_of(&r.json(), "applier").unwrap();
    assert_eq!(
        f["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"main\"}"],
        json!({".": {}, "f:image": {}, "f:name": {}, "f:ports": {"k:{\"containerPort\":80,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}}})
    );
}

#[test]
fn no_op_apply_writes_nothing() {
    let (s, c) = server_x();
    let path = format!("{CMS}/c?fieldManager=plinth");
    let first = c.apply(&path, &cm("c", json!({"k": "v"}))).json();
    let writes = s.total_writes();
    let mut w = c.watch(&format!("{CMS}?watch=true&resourceVersion={}", rv(&first)));
    std::thread::sleep(Duration::from_millis(1100));
    let again = c.apply(&path, &cm("c", json!({"k": "v"})));
    assert_eq!(again.status, 200);
    let again = again.json();
    assert_eq!(rv(&again), rv(&first));
    assert_eq!(
        again["metadata"]["managedFields"][0]["time"],
        first["metadata"]["managedFields"][0]["time"]
    );
    assert_eq!(s.total_writes(), writes);
    assert_eq!(s.writes("v1", "ConfigMap", Some("x"), "c"), 1);
    assert!(
        w.next(Duration::from_millis(300)).is_none(),
        "no event for a no-op"
    );
    // A PUT or merge patch that changes nothing writes nothing either.
    let r = c.merge_patch(&format!("{CMS}/c"), &json!({"data": {"k": "v"}}));
    assert_eq!(rv(&r.json()), rv(&first));
    assert_eq!(s.total_writes(), writes);
}

#[test]
fn dry_run_persists_nothing() {
    let (s, c) = server_x();
    let writes = s.total_writes();
    // Apply that would create.
    let r = c.apply(
        &format!("{CMS}/c?fieldManager=plinth&dryRun=All"),
        &cm("c", json!({"k": "v"})),
    );
    assert_eq!(r.status, 201);
    let o = r.json();
    assert_eq!(o["data"]["k"], "v");
    assert!(o["metadata"].get("uid").is_none() && o["metadata"].get("resourceVersion").is_none());
    assert!(o["metadata"]["creationTimestamp"].is_string());
    assert!(s.get("v1", "ConfigMap", Some("x"), "c").is_none());
    // POST.
    let r = c.post(&format!("{CMS}?dryRun=All"), &cm("c", json!({"k": "v"})));
    assert_eq!(r.status, 201);
    assert!(s.get("v1", "ConfigMap", Some("x"), "c").is_none());
    assert_eq!(s.total_writes(), writes);

    // Apply that would update: the old resourceVersion, the new content.
    let live = c
        .apply(
            &format!("{CMS}/c?fieldManager=plinth"),
            &cm("c", json!({"k": "v", "gone": "1"})),
        )
        .json();
    let writes = s.total_writes();
    let r = c.apply(
        &format!("{CMS}/c?fieldManager=plinth&dryRun=All"),
        &cm("c", json!({"k": "w"})),
    );
    assert_eq!(r.status, 200);
    let o = r.json();
    assert_eq!(o["data"], json!({"k": "w"}));
    assert_eq!(rv(&o), rv(&live));
    // Conflicts are checked on dry run too.
    let r = c.apply(
        &format!("{CMS}/c?fieldManager=other&dryRun=All"),
        &cm("c", json!({"k": "z"})),
    );
    assert_eq!(r.status, 409);
    // PUT, merge patch, delete.
    let mut put = live.clone();
    put["data"]["k"] = json!("put");
    assert_eq!(
        c.put(&format!("{CMS}/c?dryRun=All"), &put).json()["data"]["k"],
        "put"
    );
    assert_eq!(
        c.merge_patch(&format!("{CMS}/c?dryRun=All"), &json!({"data": {"k": "p"}}))
            .json()["data"]["k"],
        "p"
    );
    let r = c.delete(
        &format!("{CMS}/c"),
        &json!({"dryRun": ["All"], "propagationPolicy": "Background"}),
    );
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["status"], "Success");
    assert_eq!(
        s.get("v1", "ConfigMap", Some("x"), "c").unwrap()["data"],
        json!({"k": "v", "gone": "1"})
    );
    assert_eq!(s.total_writes(), writes);
    // A dry-run apply inside a namespace that does not exist: 404.
    let r = c.apply(
        "/api/v1/namespaces/nope/configmaps/c?fieldManager=plinth&dryRun=All",
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "nope"}}),
    );
    assert_eq!(r.status, 404);
    assert_eq!(r.json()["message"], "namespaces \"nope\" not found");
}

#[test]
fn lists_and_selectors() {
    let (_s, c) = server_x();
    for (name, labels) in [
        ("a", json!({"app": "y", "tier": "web"})),
        ("b", json!({"app": "y"})),
        ("c", json!({"app": "z", "tier": "db"})),
    ] {
        let r = c.post(
            CMS,
            &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels}}),
        );
        assert_eq!(r.status, 201);
    }
    let names = |sel: &str| -> Vec<String> {
        let list = c.get(&format!("{CMS}?labelSelector={sel}")).json();
        assert_eq!(list["kind"], "ConfigMapList");
        assert_eq!(list["apiVersion"], "v1");
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names("app%3Dy"), ["a", "b"]);
    assert_eq!(names("app%3D%3Dy"), ["a", "b"]);
    assert_eq!(names("app!%3Dy"), ["c"]);
    assert_eq!(names("tier+in+(web,db)"), ["a", "c"]);
    assert_eq!(names("tier%20notin%20(web)"), ["b", "c"]);
    assert_eq!(names("tier"), ["a", "c"]);
    assert_eq!(names("!tier"), ["b"]);
    assert_eq!(names("app%3Dy,tier"), ["a"]);
    assert_eq!(names("app%3Dnone"), Vec::<String>::new());
    assert_eq!(
        c.get(&format!("{CMS}?labelSelector=tier+in+web")).status,
        400
    );
    // Field selector and typed-list items without a type.
    let list = c
        .get(&format!("{CMS}?fieldSelector=metadata.name%3Db"))
        .json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert!(list["items"][0].get("kind").is_none());
    // Paging.
    let page = c.get(&format!("{CMS}?limit=2")).json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert_eq!(page["metadata"]["remainingItemCount"], 1);
    let cont = page["metadata"]["continue"].as_str().unwrap();
    let rest = c.get(&format!("{CMS}?limit=2&continue={cont}")).json();
    assert_eq!(rest["items"][0]["metadata"]["name"], "c");
    assert!(rest["metadata"].get("continue").is_none());
    // Empty lists still carry `items`; all-namespace lists; a missing namespace lists empty.
    let empty = c.get("/api/v1/namespaces/nope/configmaps").json();
    assert_eq!(empty["items"], json!([]));
    assert_eq!(
        c.get("/api/v1/configmaps").json()["items"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    // Custom resource lists carry apiVersion and kind per item.
    c.apply(
        "/apis/kueue.x-k8s.io/v1beta2/namespaces/x/localqueues/q?fieldManager=plinth",
        &json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue", "metadata": {"name": "q"}, "spec": {"clusterQueue": "cq"}}),
    );
    let lqs = c
        .get("/apis/kueue.x-k8s.io/v1beta2/namespaces/x/localqueues")
        .json();
    assert_eq!(lqs["kind"], "LocalQueueList");
    assert_eq!(lqs["items"][0]["kind"], "LocalQueue");
}

#[test]
fn watch_events() {
    let (_s, c) = server_x();
    let start = c.get(CMS).json()["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let mut all = c.watch(&format!("{CMS}?watch=true&resourceVersion={start}"));
    assert_eq!(all.status, 200);
    let mut one = c.watch(&format!(
        "{CMS}?watch=true&fieldSelector=metadata.name%3Db&resourceVersion={start}"
    ));
    let mut labelled = c.watch(&format!(
        "{CMS}?watch=1&labelSelector=app%3Dy&resourceVersion={start}"
    ));
    let t = Duration::from_secs(5);
    c.apply(
        &format!("{CMS}/a?fieldManager=m"),
        &cm("a", json!({"k": "1"})),
    );
    c.apply(
        &format!("{CMS}/b?fieldManager=m"),
        &cm("b", json!({"k": "1"})),
    );
    c.merge_patch(
        &format!("{CMS}/b"),
        &json!({"metadata": {"labels": {"app": "y"}}}),
    );
    c.merge_patch(
        &format!("{CMS}/b"),
        &json!({"metadata": {"labels": {"app": "n"}}}),
    );
    c.delete(
        &format!("{CMS}/b"),
        &json!({"propagationPolicy": "Background"}),
    );
    let brief = |t: &str, n: &str| Some((t.to_string(), n.to_string()));
    assert_eq!(all.next_brief(t), brief("ADDED", "a"));
    assert_eq!(all.next_brief(t), brief("ADDED", "b"));
    assert_eq!(all.next_brief(t), brief("MODIFIED", "b"));
    assert_eq!(all.next_brief(t), brief("MODIFIED", "b"));
    let deleted = all.next(t).unwrap();
    assert_eq!(deleted["type"], "DELETED");
    assert_eq!(deleted["object"]["kind"], "ConfigMap");
    assert_eq!(one.next_brief(t), brief("ADDED", "b"));
    assert_eq!(one.next_brief(t), brief("MODIFIED", "b"));
    assert_eq!(one.next_brief(t), brief("MODIFIED", "b"));
    assert_eq!(one.next_brief(t), brief("DELETED", "b"));
    assert!(one.next(Duration::from_millis(200)).is_none());
    // Entering and leaving a label selection.
    assert_eq!(labelled.next_brief(t), brief("ADDED", "b"));
    assert_eq!(labelled.next_brief(t), brief("DELETED", "b"));
    // From resourceVersion 0: the current state first.
    let mut from_zero = c.watch(&format!("{CMS}?watch=true&resourceVersion=0"));
    assert_eq!(from_zero.next_brief(t), brief("ADDED", "a"));
    // Streaming list: the state, then a bookmark.
    let mut streaming = c.watch(&format!(
        "{CMS}?watch=true&sendInitialEvents=true&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=true"
    ));
    assert_eq!(streaming.next_brief(t), brief("ADDED", "a"));
    let bookmark = streaming.next(t).unwrap();
    assert_eq!(bookmark["type"], "BOOKMARK");
    assert_eq!(
        bookmark["object"]["metadata"]["annotations"]["k8s.io/initial-events-end"],
        "true"
    );
    // Watch on a custom resource collection across namespaces, and timeoutSeconds ends it.
    let mut crs = c.watch("/apis/kueue.x-k8s.io/v1beta2/localqueues?watch=true&timeoutSeconds=1");
    c.apply(
        "/apis/kueue.x-k8s.io/v1beta2/namespaces/x/localqueues/q?fieldManager=plinth",
        &json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue", "metadata": {"name": "q"}, "spec": {"clusterQueue": "cq"}}),
    );
    assert_eq!(crs.next_brief(t), brief("ADDED", "q"));
    let started = Instant::now();
    assert!(crs.next(Duration::from_secs(5)).is_none());
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "timeoutSeconds ends the stream"
    );
}

#[test]
fn faults_fire_then_disarm() {
    let (s, c) = server_x();
    let path = format!("{CMS}/c");
    s.faults()
        .arm(Fault::on("GET", "/configmaps/c").times(2).status(503));
    for _ in 0..2 {
        let r = c.get(&path);
        assert_eq!(r.status, 503);
        let st = r.json();
        assert_eq!(
            (st["reason"].as_str(), st["code"].as_u64()),
            (Some("ServiceUnavailable"), Some(503))
        );
    }
    assert_eq!(c.get(&path).status, 404, "disarmed after two");
    s.faults().arm(Fault::any("/configmaps/c").status(500));
    assert_eq!(
        c.apply(&format!("{path}?fieldManager=m"), &cm("c", json!({})))
            .status,
        500
    );
    assert!(
        s.get("v1", "ConfigMap", Some("x"), "c").is_none(),
        "a failed request does nothing"
    );

    s.faults()
        .arm(Fault::on("GET", "/configmaps").delay(Duration::from_millis(400)));
    let t = Instant::now();
    assert_eq!(c.get(CMS).status, 200);
    assert!(t.elapsed() >= Duration::from_millis(400));

    s.faults()
        .arm(Fault::on("PATCH", "/configmaps/c").drop_connection());
    let dropped = c.try_request(
        "PATCH",
        &format!("{path}?fieldManager=m"),
        &[("Content-Type", "application/apply-patch+yaml")],
        cm("c", json!({})).to_string().as_bytes(),
    );
    assert!(dropped.is_err(), "connection closed without an answer");
    assert!(s.get("v1", "ConfigMap", Some("x"), "c").is_none());

    s.faults()
        .arm(Fault::on("PATCH", "/configmaps/c").conflict());
    let r = c.apply(&format!("{path}?fieldManager=m"), &cm("c", json!({})));
    assert_eq!(r.status, 409);
    assert_eq!(r.json()["reason"], "Conflict");
    assert!(
        r.json()["message"]
            .as_str()
            .unwrap()
            .starts_with("Operation cannot be fulfilled on configmaps \"c\"")
    );
    assert_eq!(
        c.apply(&format!("{path}?fieldManager=m"), &cm("c", json!({})))
            .status,
        201
    );
    assert_eq!(s.faults().fired(), 6);
    assert_eq!(s.faults().remaining(), 0);
    let log = s.requests();
    assert!(log.iter().any(|r| r.method == "PATCH" && r.status == 0));
}

#[test]
fn errors_are_status_objects() {
    let (_s, c) = server_x();
    let st = |r: common::Resp| -> (u16, Value) {
        let v = r.json();
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["status"], "Failure");
        assert_eq!(v["code"], r.status);
        (r.status, v)
    };
    let (code, v) = st(c.get(&format!("{CMS}/none")));
    assert_eq!(
        (code, v["reason"].as_str(), v["message"].as_str()),
        (404, Some("NotFound"), Some("configmaps \"none\" not found"))
    );
    assert_eq!(v["details"], json!({"name": "none", "kind": "configmaps"}));
    let (code, v) = st(c.get("/apis/apps/v1/namespaces/x/deployments/none"));
    assert_eq!(
        (code, v["message"].as_str()),
        (404, Some("deployments.apps \"none\" not found"))
    );
    // Creating in a missing namespace.
    let (code, v) = st(c.post(
        "/api/v1/namespaces/nope/configmaps",
        &json!({"metadata": {"name": "c"}}),
    ));
    assert_eq!(
        (code, v["message"].as_str()),
        (404, Some("namespaces \"nope\" not found"))
    );
    // AlreadyExists.
    c.post(CMS, &cm("c", json!({})));
    let (code, v) = st(c.post(CMS, &cm("c", json!({}))));
    assert_eq!(
        (code, v["reason"].as_str(), v["message"].as_str()),
        (
            409,
            Some("AlreadyExists"),
            Some("configmaps \"c\" already exists")
        )
    );
    // Invalid name.
    let (code, v) = st(c.post(CMS, &cm("Bad_Name", json!({}))));
    assert_eq!((code, v["reason"].as_str()), (422, Some("Invalid")));
    assert!(v["message"].as_str().unwrap().starts_with("ConfigMap \"Bad_Name\" is invalid: metadata.name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 subdomain must consist of"));
    assert_eq!(v["details"]["kind"], "ConfigMap");
    assert_eq!(v["details"]["causes"][0]["field"], "metadata.name");
    assert_eq!(v["details"]["causes"][0]["reason"], "FieldValueInvalid");
    // Apply: wrong version, managedFields, unknown field, no field manager.
    let (code, v) = st(c.apply(
        &format!("{CMS}/c?fieldManager=m"),
        &json!({"apiVersion": "v2", "kind": "ConfigMap", "metadata": {"name": "c"}}),
    ));
    assert_eq!(code, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("Incorrect version specified in apply patch")
    );
    let (code, v) = st(c.apply(
        &format!("{CMS}/c?fieldManager=m"),
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "c"}}),
    ));
    assert_eq!(code, 400);
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("Incorrect version specified in apply patch")
    );
    let (code, v) = st(c.apply(&format!("{CMS}/c?fieldManager=m"), &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "managedFields": [{"manager": "x"}]}})));
    assert_eq!(
        (code, v["message"].as_str()),
        (400, Some("metadata.managedFields must be nil"))
    );
    let (code, v) = st(c.apply(&format!("{CMS}/c?fieldManager=m"), &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "spec": {"x": 1}})));
    assert_eq!(
        (code, v["message"].as_str()),
        (
            500,
            Some(
                "failed to create typed patch object (/v1, Kind=ConfigMap): .spec: field not declared in schema"
            )
        )
    );
    let (code, _) = st(c.apply(&format!("{CMS}/c"), &cm("c", json!({}))));
    assert_eq!(code, 422);
    // Name mismatch.
    let (code, _) = st(c.apply(&format!("{CMS}/c?fieldManager=m"), &cm("d", json!({}))));
    assert_eq!(code, 400);
    // Strict and Warn field validation on create.
    let body =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "s"}, "dta": {}});
    let (code, v) = st(c.post(&format!("{CMS}?fieldValidation=Strict"), &body));
    assert_eq!(
        (code, v["message"].as_str()),
        (400, Some("strict decoding error: unknown field \"dta\""))
    );
    let r = c.post(CMS, &body);
    assert_eq!(r.status, 201);
    assert_eq!(
        r.header("warning"),
        Some("299 - \"unknown field \\\"dta\\\"\"")
    );
    assert!(r.json().get("dta").is_none());
    // Stale resourceVersion on PUT.
    let mut live = c.get(&format!("{CMS}/c")).json();
    live["metadata"]["resourceVersion"] = json!("1");
    let (code, v) = st(c.put(&format!("{CMS}/c"), &live));
    assert_eq!((code, v["reason"].as_str()), (409, Some("Conflict")));
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("the object has been modified")
    );
    // Unsupported media type, unknown paths.
    let (code, _) = st(c.patch(
        &format!("{CMS}/c"),
        "application/vnd.kubernetes.protobuf",
        b"x",
    ));
    assert_eq!(code, 415);
    let (code, _) = st(c.get("/apis/example.org/v1/things"));
    assert_eq!(code, 404);
    // Strategic merge patch is for built-in kinds only.
    let (code, _) = st(c.patch(
        "/apis/kueue.x-k8s.io/v1beta2/localqueues/q",
        "application/strategic-merge-patch+json",
        b"{}",
    ));
    assert!(code == 415 || code == 404);
}

#[test]
fn defaulted_fields_are_not_owned() {
    let (_s, c) = server_x();
    let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}},
            "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}}}});
    let path = "/apis/apps/v1/namespaces/x/deployments/d?fieldManager=plinth";
    let o = c.apply(path, &deploy).json();
    assert_eq!(o["spec"]["revisionHistoryLimit"], 10);
    assert_eq!(o["spec"]["replicas"], 1);
    assert_eq!(
        o["spec"]["strategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
    );
    assert_eq!(
        o["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    let f = fields_of(&o, "plinth").unwrap();
    assert!(f["f:spec"].get("f:revisionHistoryLimit").is_none());
    assert!(f["f:spec"].get("f:strategy").is_none());
    assert!(f["f:spec"].get("f:replicas").is_none());
    // Re-apply: no-op. Applying a defaulted field: no conflict, now owned.
    assert_eq!(rv(&c.apply(path, &deploy).json()), rv(&o));
    let mut three = deploy.clone();
    three["spec"]["replicas"] = json!(3);
    let o2 = c.apply(path, &three).json();
    assert_eq!(o2["spec"]["replicas"], 3);
    assert_eq!(o2["metadata"]["generation"], 2);
    assert!(
        fields_of(&o2, "plinth").unwrap()["f:spec"]
            .get("f:replicas")
            .is_some()
    );
    // Leaving it out again: removed, then defaulted.
    assert_eq!(c.apply(path, &deploy).json()["spec"]["replicas"], 1);

    let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}, "spec": {"selector": {"app": "d"}, "ports": [{"port": 80}]}});
    let path = "/api/v1/namespaces/x/services/s?fieldManager=plinth";
    let o = c.apply(path, &svc).json();
    let ip = o["spec"]["clusterIP"].as_str().unwrap().to_string();
    assert!(ip.starts_with("10.96."));
    assert_eq!(o["spec"]["clusterIPs"], json!([ip]));
    assert_eq!(o["spec"]["type"], "ClusterIP");
    assert_eq!(
        o["spec"]["ports"][0],
        json!({"port": 80, "protocol": "TCP", "targetPort": 80})
    );
    let f = fields_of(&o, "plinth").unwrap();
    assert!(f["f:spec"].get("f:clusterIP").is_none());
    assert_eq!(
        f["f:spec"]["f:ports"],
        json!({"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:port": {}}})
    );
    assert_eq!(
        rv(&c.apply(path, &svc).json()),
        rv(&o),
        "clusterIP kept, no-op"
    );
    // Namespaces.
    let ns = c.get("/api/v1/namespaces/x").json();
    assert_eq!(ns["metadata"]["labels"]["kubernetes.io/metadata.name"], "x");
    assert_eq!(ns["spec"]["finalizers"], json!(["kubernetes"]));
    assert_eq!(ns["status"]["phase"], "Active");
    assert!(
        fields_of(&ns, "plinth").is_none(),
        "nothing applied but the name"
    );
}

#[test]
fn finalizers_cascades_and_status() {
    let (s, c) = server_x();
    let o = c.apply(
        &format!("{CMS}/f?fieldManager=m"),
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "f", "finalizers": ["example.com/hold"]}}),
    ).json();
    let mut w = c.watch(&format!("{CMS}?watch=true&resourceVersion={}", rv(&o)));
    let r = c.delete(
        &format!("{CMS}/f"),
        &json!({"propagationPolicy": "Background"}),
    );
    assert_eq!(r.status, 200);
    assert!(r.json()["metadata"]["deletionTimestamp"].is_string());
    assert!(s.get("v1", "ConfigMap", Some("x"), "f").is_some());
    let t = Duration::from_secs(5);
    assert_eq!(w.next_brief(t).unwrap().0, "MODIFIED");
    c.merge_patch(
        &format!("{CMS}/f"),
        &json!({"metadata": {"finalizers": null}}),
    );
    assert_eq!(w.next_brief(t).unwrap().0, "DELETED");
    assert!(s.get("v1", "ConfigMap", Some("x"), "f").is_none());

    // ownerReferences: dependents go with their owner (unless orphaned).
    let owner = c.post(CMS, &cm("owner", json!({}))).json();
    let uid = owner["metadata"]["uid"].as_str().unwrap();
    for name in ["dep1", "dep2"] {
        c.post(CMS, &json!({"metadata": {"name": name, "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": uid}]}}));
    }
    c.delete(
        &format!("{CMS}/owner"),
        &json!({"propagationPolicy": "Background"}),
    );
    assert!(s.get("v1", "ConfigMap", Some("x"), "dep1").is_none());
    // Custom resources answer the deleted object.
    c.apply(
        "/apis/kueue.x-k8s.io/v1beta2/namespaces/x/localqueues/q?fieldManager=plinth",
        &json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue", "metadata": {"name": "q"}, "spec": {"clusterQueue": "cq"}}),
    );
    let r = c.delete(
        "/apis/kueue.x-k8s.io/v1beta2/namespaces/x/localqueues/q",
        &json!({}),
    );
    assert_eq!(r.json()["kind"], "LocalQueue");

    // Status subresource: the main resource ignores status, /status changes only status.
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}},
            "spec": {"containers": [{"name": "main", "image": "nginx:1.27"}]}}}, "status": {"replicas": 5}});
    let o = c
        .apply(
            "/apis/apps/v1/namespaces/x/deployments/d?fieldManager=plinth",
            &d,
        )
        .json();
    assert!(o.get("status").is_none());
    let mut st = o.clone();
    st["status"] = json!({"replicas": 1, "readyReplicas": 1});
    st["spec"]["replicas"] = json!(7);
    let o = c
        .put(
            "/apis/apps/v1/namespaces/x/deployments/d/status?fieldManager=controller",
            &st,
        )
        .json();
    assert_eq!(o["status"]["readyReplicas"], 1);
    assert_eq!(o["spec"]["replicas"], 1);
    let e = o["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["manager"] == "controller")
        .unwrap()
        .clone();
    assert_eq!(e["subresource"], "status");
    // Test hook: a controller-like status write.
    let o = s
        .set_status(
            "apps/v1",
            "Deployment",
            Some("x"),
            "d",
            json!({"availableReplicas": 1}),
        )
        .unwrap();
    assert_eq!(o["status"], json!({"availableReplicas": 1}));

    // Deleting a namespace removes what is in it.
    let r = c.delete(
        "/api/v1/namespaces/x",
        &json!({"propagationPolicy": "Background"}),
    );
    assert_eq!(r.json()["status"], "Success");
    assert!(s.list("apps/v1", "Deployment", None).is_empty());
    assert!(s.list("v1", "ConfigMap", Some("x")).is_empty());
}

#[test]
fn other_write_paths() {
    let (s, c) = server_x();
    // A YAML apply body.
    let yaml = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata:\n  k: \"v\"\n";
    let r = c.patch(
        &format!("{CMS}/y?fieldManager=m"),
        "application/apply-patch+yaml",
        yaml.as_bytes(),
    );
    assert_eq!(r.status, 201, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.json()["data"]["k"], "v");
    // JSON patch.
    let r = c.patch(
        &format!("{CMS}/y"),
        "application/json-patch+json",
        br#"[{"op":"add","path":"/data/j","value":"1"}]"#,
    );
    assert_eq!(r.json()["data"], json!({"k": "v", "j": "1"}));
    // Strategic merge patch merges containers by name.
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"selector": {"matchLabels": {"app": "d"}}, "template": {"metadata": {"labels": {"app": "d"}},
            "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}}}});
    c.post("/apis/apps/v1/namespaces/x/deployments", &d);
    let r = c.patch(
        "/apis/apps/v1/namespaces/x/deployments/d",
        "application/strategic-merge-patch+json",
        br#"{"spec":{"template":{"spec":{"containers":[{"name":"b","image":"b:2"}]}}}}"#,
    );
    let cs = r.json()["spec"]["template"]["spec"]["containers"].clone();
    assert_eq!(
        (cs[0]["image"].as_str(), cs[1]["image"].as_str()),
        (Some("a:1"), Some("b:2"))
    );
    // PUT with the current resourceVersion; generateName.
    let mut live = c.get(&format!("{CMS}/y")).json();
    live["data"] = json!({"only": "this"});
    let r = c.put(&format!("{CMS}/y?fieldManager=putter"), &live);
    assert_eq!(r.status, 200);
    let o = r.json();
    assert_eq!(o["data"], json!({"only": "this"}));
    assert_eq!(
        fields_of(&o, "putter").unwrap(),
        json!({"f:data": {"f:only": {}}})
    );
    assert_eq!(fields_of(&o, "m"), None, "m's fields were all replaced");
    let r = c.post(CMS, &json!({"metadata": {"generateName": "gen-"}}));
    assert!(
        r.json()["metadata"]["name"]
            .as_str()
            .unwrap()
            .starts_with("gen-")
    );
    // Delete collection with a selector.
    c.post(
        CMS,
        &json!({"metadata": {"name": "l1", "labels": {"del": "yes"}}}),
    );
    c.post(
        CMS,
        &json!({"metadata": {"name": "l2", "labels": {"del": "yes"}}}),
    );
    let r = c.request(
        "DELETE",
        &format!("{CMS}?labelSelector=del%3Dyes"),
        &[],
        b"",
    );
    assert_eq!(r.json()["items"].as_array().unwrap().len(), 2);
    assert!(s.get("v1", "ConfigMap", Some("x"), "l1").is_none());
    // Cluster-scoped custom resource.
    let r = c.apply(
        "/apis/kueue.x-k8s.io/v1beta2/clusterqueues/cq?fieldManager=plinth",
        &json!({"apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue", "metadata": {"name": "cq"}, "spec": {"cohortName": "all"}}),
    );
    assert_eq!(r.status, 201);
    assert!(r.json()["metadata"].get("namespace").is_none());
    // Health.
    assert_eq!(c.get("/readyz").body, b"ok");
}

#[test]
fn watch_from_a_compacted_resource_version_is_gone() {
    let s = TestServer::builder()
        .watch_history(2)
        .start_blocking()
        .unwrap();
    let c = Client::new(s.addr());
    let start = rv(&c.post(NS, &json!({"metadata": {"name": "x"}})).json());
    for name in ["a", "b", "c"] {
        c.post(CMS, &cm(name, json!({})));
    }
    let mut w = c.watch(&format!("{CMS}?watch=true&resourceVersion={start}"));
    assert_eq!(w.status, 200);
    let e = w.next(Duration::from_secs(5)).unwrap();
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    // Recent enough: replayed.
    let list = c.get(CMS).json();
    let mut w = c.watch(&format!(
        "{CMS}?watch=true&resourceVersion={}",
        list["metadata"]["resourceVersion"].as_str().unwrap()
    ));
    c.post(CMS, &cm("d", json!({})));
    assert_eq!(
        w.next_brief(Duration::from_secs(5)),
        Some(("ADDED".into(), "d".into()))
    );
}
