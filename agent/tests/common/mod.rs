//! Test fixtures: small platforms compiled with the plinth library into a temporary
//! `out/prod/` tree, a test API server, a simulated controller, and checks on the store.

#![allow(dead_code, clippy::unwrap_used)]

pub mod forge;
pub mod git;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use kube::{Client, Config};
use kube_testserver::TestServer;
use plinth::lower::ObjectKey;
use plinth_agent::inventory::Inventory;
use plinth_agent::{Cluster, Desired, Options, Requests};
use serde_json::{Value, json};

pub const PLATFORM: &str = r#"apiVersion: plinth.dev/v1alpha1
kind: Platform
metadata:
  name: acme
spec:
  clusters:
    - name: prod
      kubernetesVersion: "1.32"
      provider: onPrem
  defaults:
    storageClass: standard
  instanceTypes:
    - name: cpu-2
      cpu: 2
      memory: 8Gi
"#;

/// A project: namespace, quota (`cpu`, when given), RBAC, network policy, service account.
pub fn project(name: &str, cpu: Option<&str>) -> (String, String) {
    let quota = cpu.map_or_else(String::new, |c| {
        format!("  quota: {{cpu: \"{c}\", memory: 64Gi}}\n")
    });
    (
        format!("projects/{name}.yaml"),
        format!(
            "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: {name}\nspec:\n  owners: [dana@acme.example]\n{quota}  deployments: {{enabled: true, max: 3}}\n"
        ),
    )
}

/// A project with a shared volume (a PVC to bind).
pub fn project_with_volume(name: &str) -> (String, String) {
    (
        format!("projects/{name}.yaml"),
        format!(
            "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: {name}\nspec:\n  owners: [dana@acme.example]\n  quota: {{cpu: \"32\", memory: 64Gi}}\n  deployments: {{enabled: true, max: 3}}\n  volumes:\n    shared: {{capacity: 10Gi}}\n"
        ),
    )
}

/// A model served by a Deployment (plus a Service and a NetworkPolicy).
pub fn model(name: &str, project: &str, image_tag: &str) -> (String, String) {
    (
        format!("models/{name}.yaml"),
        format!(
            "apiVersion: plinth.dev/v1alpha1\nkind: ModelRollout\nmetadata:\n  name: {name}\nspec:\n  project: {project}\n  runtime: deployment\n  model:\n    format: sklearn\n    image: registry.acme.example/{name}:{image_tag}\n    port: 8080\n    storageUri: s3://models/{name}/v1/\n  instanceType: cpu-2\n  replicas: 2\n"
        ),
    )
}

/// A compiled cluster tree on disk.
pub struct Tree {
    _dir: tempfile::TempDir,
    pub path: PathBuf,
}

impl Tree {
    pub fn desired(&self) -> Desired {
        Desired::read(&self.path).unwrap()
    }
    pub fn keys(&self) -> BTreeSet<ObjectKey> {
        self.desired().objects.into_iter().map(|o| o.key).collect()
    }
}

/// The Platform document with `spec.approvals` entries for `objects` (`Kind/[ns/]name`).
pub fn platform_approving(objects: &[&str]) -> String {
    if objects.is_empty() {
        return PLATFORM.to_owned();
    }
    let entries: String = objects
        .iter()
        .map(|o| format!("    - object: {o}\n      reason: CHG-1 retired\n      approver: dana\n"))
        .collect();
    PLATFORM.replacen("spec:\n", &format!("spec:\n  approvals:\n{entries}"), 1)
}

/// Compile a platform (the Platform document plus `specs`) and write `out/prod/`.
pub fn build(specs: &[(String, String)]) -> Tree {
    build_approving(specs, &[])
}

/// [`build`] with a Platform approving the deletion of `objects` (`Kind/[ns/]name`).
pub fn build_approving(specs: &[(String, String)], objects: &[&str]) -> Tree {
    let platform = platform_approving(objects);
    let mut src = plinth::load::MemSource::new().with("plinth.yaml", platform.as_str());
    for (path, text) in specs {
        src = src.with(path, text.as_str());
    }
    let built = plinth::build_source(&src, &plinth::Options::default()).unwrap();
    let lowered = built.lowered.unwrap_or_else(|| {
        let d: Vec<String> = built
            .checked
            .diagnostics
            .iter()
            .map(|d| d.message.clone())
            .collect();
        panic!("the test platform does not build: {d:?}")
    });
    let files = plinth::emit::tree(&lowered, Some("prod")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // An empty platform still gets its (empty) tree.
    std::fs::create_dir_all(dir.path().join("prod")).unwrap();
    if files.is_empty() {
        std::fs::write(
            dir.path().join("prod/plinth.lock.json"),
            "{\"version\": 1, \"cluster\": \"prod\", \"objects\": []}\n",
        )
        .unwrap();
    }
    for (rel, text) in files {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    Tree {
        path: dir.path().join("prod"),
        _dir: dir,
    }
}

pub async fn client(s: &TestServer) -> Client {
    let kc = Kubeconfig::from_yaml(&s.kubeconfig()).unwrap();
    let config = Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
        .await
        .unwrap();
    Client::try_from(config).unwrap()
}

/// The agent's view of the server: `retries` further attempts, short backoff and timeout.
pub async fn cluster(s: &TestServer, retries: u32) -> Cluster {
    Cluster::new(
        client(s).await,
        Requests {
            retries,
            backoff: Duration::from_millis(10),
            timeout: Duration::from_secs(2),
        },
    )
}

/// Options with short waits, for tests.
pub fn opts() -> Options {
    Options {
        health_timeout: Duration::from_secs(5),
        poll: Duration::from_millis(25),
        ..Options::default()
    }
}

/// Play the controllers once: roll out every Deployment, bind every PV and PVC, make every
/// StatefulSet and InferenceService ready and every Rollout healthy. Writes only what changes.
pub fn settle(s: &TestServer) {
    for d in s.list("apps/v1", "Deployment", None) {
        let r = d
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let g = d
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let status = json!({"observedGeneration": g, "replicas": r, "updatedReplicas": r,
                            "readyReplicas": r, "availableReplicas": r});
        set_status_of(s, &d, status);
    }
    for sts in s.list("apps/v1", "StatefulSet", None) {
        let r = sts
            .pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let g = sts
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let status = json!({"observedGeneration": g, "replicas": r, "updatedReplicas": r,
                            "readyReplicas": r, "availableReplicas": r});
        set_status_of(s, &sts, status);
    }
    for pv in s.list("v1", "PersistentVolume", None) {
        set_status_of(s, &pv, json!({"phase": "Bound"}));
    }
    for pvc in s.list("v1", "PersistentVolumeClaim", None) {
        set_status_of(s, &pvc, json!({"phase": "Bound"}));
    }
    for isvc in s.list("serving.kserve.io/v1beta1", "InferenceService", None) {
        let g = isvc
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        set_status_of(
            s,
            &isvc,
            json!({"observedGeneration": g, "conditions": [{"type": "Ready", "status": "True"}]}),
        );
    }
    for ro in s.list("argoproj.io/v1alpha1", "Rollout", None) {
        let g = ro
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        set_status_of(s, &ro, json!({"observedGeneration": g, "phase": "Healthy"}));
    }
}

fn set_status_of(s: &TestServer, obj: &Value, status: Value) {
    if obj.get("status") == Some(&status) {
        return;
    }
    let key = ObjectKey::of(obj);
    s.set_status(
        &key.api_version,
        &key.kind,
        key.namespace.as_deref(),
        &key.name,
        status,
    );
}

/// Controllers in the background: [`settle`] every 20 ms after `delay`, until dropped.
pub struct Controllers {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Controllers {
    pub fn start(s: Arc<TestServer>, delay: Duration) -> Controllers {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(delay);
            while !flag.load(Ordering::Relaxed) {
                settle(&s);
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Controllers {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Controllers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The live object of a key.
pub fn live(s: &TestServer, k: &ObjectKey) -> Option<Value> {
    s.get(&k.api_version, &k.kind, k.namespace.as_deref(), &k.name)
}

pub fn key(api_version: &str, kind: &str, ns: Option<&str>, name: &str) -> ObjectKey {
    ObjectKey {
        api_version: api_version.into(),
        kind: kind.into(),
        namespace: ns.map(Into::into),
        name: name.into(),
    }
}

/// The inventory stored in the server.
pub fn inventory(s: &TestServer) -> Option<Inventory> {
    s.get("v1", "ConfigMap", Some("plinth-system"), "plinth-inventory")
        .map(|cm| Inventory::from_configmap(&cm).unwrap())
}

/// A write through the API by another field manager (`kubectl-edit`, a controller, ...):
/// a merge patch, recorded as that manager's `Update`.
pub async fn edit_as(s: &TestServer, manager: &str, k: &ObjectKey, patch: Value) {
    let c = client(s).await;
    let (group, version) = k
        .api_version
        .rsplit_once('/')
        .unwrap_or(("", &k.api_version));
    let ar = ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: k.api_version.clone(),
        kind: k.kind.clone(),
        plural: kube_testserver::registry::plural_of(&k.kind),
    };
    let api: Api<DynamicObject> = match &k.namespace {
        Some(ns) => Api::namespaced_with(c, ns, &ar),
        None => Api::all_with(c, &ar),
    };
    let pp = PatchParams {
        field_manager: Some(manager.into()),
        ..PatchParams::default()
    };
    api.patch(&k.name, &pp, &Patch::Merge(patch)).await.unwrap();
}

/// Writes that were not dry runs, as `METHOD target`.
pub fn real_writes(s: &TestServer) -> Vec<String> {
    s.requests()
        .into_iter()
        .filter(|r| r.method != "GET" && !r.target.contains("dryRun=All"))
        .map(|r| format!("{} {}", r.method, r.target))
        .collect()
}

/// Serve `app` on `listener` from a thread of its own until the sender is used or dropped.
pub fn serve(
    listener: std::net::TcpListener,
    app: axum::Router,
) -> (
    tokio::sync::oneshot::Sender<()>,
    std::thread::JoinHandle<()>,
) {
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
    });
    (tx, thread)
}
