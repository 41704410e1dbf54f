//! A Kubernetes API server for tests.
//!
//! No kube-apiserver can run where plinth is built and tested, so the agent's integration
//! tests talk to this in-process server instead. It is faithful where clients notice (the real
//! `kubectl` and the `kube` crate are its acceptance tests): discovery (legacy and aggregated),
//! OpenAPI v3 stubs for `kubectl apply` validation, CRUD with label and field selectors,
//! server-side apply with managed fields, conflicts and pruning, merge/JSON/strategic patch,
//! dry run, field validation, built-in defaulting, finalizers and cascading deletion, watch
//! streams, and `Status` errors. Tests can inject faults and inspect the store.
//!
//! Layout: [`registry`] (the kinds and what the server knows of their schemas),
//! [`discovery`] (discovery and OpenAPI documents), `http` (connections, routing, faults,
//! `Table` answers, watch streams), [`ops`] (what each request does), [`store`] (objects,
//! resourceVersions, events, watchers), [`ssa`], [`fieldset`] and [`managed`] (server-side
//! apply and managed fields), [`patch`], [`defaults`], [`validate`], [`select`], [`status`],
//! [`events`] (`events.k8s.io/v1` as a view of core events), [`faults`].
//!
//! Deliberately absent (a test that needs one of these needs a real cluster): protobuf
//! bodies (kubectl's typed generators such as `kubectl create namespace x` get 415),
//! `/openapi/v2` (kubectl 1.27/1.28 need `--validate=false`), schemas (unknown fields are found
//! at the top level and in `metadata` only; values are not type-checked; custom resources'
//! lists are atomic), admission and RBAC, controllers (nothing creates pods or fills status:
//! tests use [`TestServer::set_status`] or the `status` subresource, or opt into [`simulate`]d
//! controllers that report workloads settled), CRD registration at run
//! time, periodic watch bookmarks, and a `Terminating` phase (a deleted namespace and its
//! contents, and dependents found by `ownerReferences`, go at once).
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! let server = kube_testserver::TestServer::start().await?;
//! server.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"))?;
//! println!("{}", server.url());
//! # Ok(()) }
//! ```

pub mod defaults;
pub mod discovery;
pub mod events;
pub mod faults;
pub mod fieldset;
mod http;
pub mod managed;
pub mod ops;
pub mod patch;
pub mod registry;
pub mod select;
pub mod simulate;
pub mod ssa;
pub mod status;
pub mod store;
pub mod time;
pub mod validate;

use std::net::{Ipv4Addr, SocketAddr, TcpListener as StdListener};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use serde_json::{Value, json};
use tokio::sync::oneshot;

pub use faults::{Fault, FaultAction, Faults};
pub use http::RequestRecord;
pub use registry::{KindInfo, Registry};
pub use store::{ObjKey, Store};

use crate::http::Shared;
use crate::ops::WriteOpts;

/// How to start a [`TestServer`].
#[derive(Debug, Clone)]
pub struct Builder {
    registry: Registry,
    port: u16,
    default_namespaces: bool,
    history: usize,
    simulate: bool,
}

impl Default for Builder {
    fn default() -> Builder {
        Builder {
            registry: Registry::plinth(),
            port: 0,
            default_namespaces: true,
            history: store::DEFAULT_HISTORY,
            simulate: false,
        }
    }
}

impl Builder {
    pub fn new() -> Builder {
        Builder::default()
    }

    /// The kinds to serve (default: [`Registry::plinth`]).
    pub fn registry(mut self, registry: Registry) -> Builder {
        self.registry = registry;
        self
    }

    /// Port on 127.0.0.1 (default 0: any free port).
    pub fn port(mut self, port: u16) -> Builder {
        self.port = port;
        self
    }

    /// Whether `default`, `kube-system`, `kube-public` and `kube-node-lease` exist from the
    /// start, as in a real cluster (default: yes).
    pub fn default_namespaces(mut self, yes: bool) -> Builder {
        self.default_namespaces = yes;
        self
    }

    /// How many events watches can resume from (default 10,000); a watch from an older
    /// resourceVersion gets `410 Gone`, as after etcd compaction.
    pub fn watch_history(mut self, events: usize) -> Builder {
        self.history = events;
        self
    }

    /// Run [`simulate`]d controllers (default: no): claims bind and workloads report
    /// themselves rolled out and ready shortly after each write.
    pub fn simulate_controllers(mut self, yes: bool) -> Builder {
        self.simulate = yes;
        self
    }

    /// Bind and serve on a thread of its own (so tests that block, e.g. on a `kubectl`
    /// child process, cannot starve it). Returns once the port is bound.
    pub fn start_blocking(self) -> std::io::Result<TestServer> {
        let listener = StdListener::bind((Ipv4Addr::LOCALHOST, self.port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let registry = Arc::new(self.registry);
        let mut store = Store::new(Arc::clone(&registry));
        if self.default_namespaces
            && let Some(ns) = registry.by_kind("v1", "Namespace")
        {
            for name in ["default", "kube-node-lease", "kube-public", "kube-system"] {
                let opts = WriteOpts {
                    manager: "kube-apiserver".into(),
                    manager_given: true,
                    ..WriteOpts::default()
                };
                let body =
                    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
                store
                    .create(ns, None, body, &opts)
                    .map_err(|e| std::io::Error::other(e.message))?;
            }
        }
        store.set_history_limit(self.history);
        let shared = Arc::new(Shared {
            store: Mutex::new(store),
            registry,
            faults: Faults::default(),
            log: Mutex::new(Vec::new()),
            addr,
        });
        let (tx, rx) = oneshot::channel();
        let serve_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("kube-testserver-{}", addr.port()))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        tracing::error!("cannot start the test server runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => http::serve(l, serve_shared, rx).await,
                        Err(e) => tracing::error!("cannot listen: {e}"),
                    }
                });
            })?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let controllers = if self.simulate {
            let (shared, stop) = (Arc::clone(&shared), Arc::clone(&stop));
            Some(
                std::thread::Builder::new()
                    .name(format!("kube-testserver-controllers-{}", addr.port()))
                    .spawn(move || {
                        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                            simulate::reconcile(&mut shared.store());
                            std::thread::sleep(std::time::Duration::from_millis(100));
                        }
                    })?,
            )
        } else {
            None
        };
        Ok(TestServer {
            addr,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
            controllers,
            stop,
        })
    }

    /// [`Builder::start_blocking`], for async callers.
    pub async fn start(self) -> std::io::Result<TestServer> {
        self.start_blocking()
    }
}

/// A running server; stops (closing every connection, watches included) when dropped.
#[derive(Debug)]
pub struct TestServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// The simulated controllers' thread, and its stop flag.
    controllers: Option<JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

impl TestServer {
    /// A server with the kinds plinth emits, on a free port.
    pub async fn start() -> std::io::Result<TestServer> {
        Builder::new().start().await
    }

    /// [`TestServer::start`] without async.
    pub fn start_blocking() -> std::io::Result<TestServer> {
        Builder::new().start_blocking()
    }

    pub fn builder() -> Builder {
        Builder::new()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A kubeconfig for this server (`user: {}`, namespace `default`).
    pub fn kubeconfig(&self) -> String {
        format!(
            "apiVersion: v1
kind: Config
clusters:
- name: testserver
  cluster:
    server: {}
contexts:
- name: testserver
  context:
    cluster: testserver
    user: testserver
    namespace: default
current-context: testserver
users:
- name: testserver
  user: {{}}
",
            self.url()
        )
    }

    /// Write [`TestServer::kubeconfig`] to `path`.
    pub fn write_kubeconfig(&self, path: &Path) -> std::io::Result<()> {
        std::fs::write(path, self.kubeconfig())
    }

    /// Fault rules for coming requests.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    pub fn registry(&self) -> &Registry {
        &self.shared.registry
    }

    /// The store, locked: requests wait while the guard lives.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.shared.store()
    }

    /// The stored kind for `apiVersion`/`kind`, and whether answers are converted from core
    /// `Event` form (`events.k8s.io/v1`).
    fn kind_of(&self, api_version: &str, kind: &str) -> Option<(usize, bool)> {
        let reg = &self.shared.registry;
        let k = reg.by_kind(api_version, kind)?;
        Some(match events::alias(reg, k) {
            Some(core) => (core, true),
            None => (k, false),
        })
    }

    fn key(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<ObjKey> {
        let (k, _) = self.kind_of(api_version, kind)?;
        Some(self.store().key(k, namespace, name))
    }

    /// An object as a GET would answer it.
    pub fn get(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Option<Value> {
        let (_, convert) = self.kind_of(api_version, kind)?;
        let key = self.key(api_version, kind, namespace, name)?;
        let store = self.store();
        let mut v = store.objects.get(&key).map(|s| store.render(s))?;
        if convert {
            events::from_core(&mut v);
        }
        Some(v)
    }

    /// Objects of a kind, in one namespace or all, sorted by namespace and name.
    pub fn list(&self, api_version: &str, kind: &str, namespace: Option<&str>) -> Vec<Value> {
        let Some((k, convert)) = self.kind_of(api_version, kind) else {
            return Vec::new();
        };
        let store = self.store();
        store
            .select(k, namespace, &ops::ListOpts::default())
            .into_iter()
            .map(|(_, mut v)| {
                if convert {
                    events::from_core(&mut v);
                }
                v
            })
            .collect()
    }

    /// Persisted writes (create, update, delete) of one object so far.
    pub fn writes(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> u64 {
        self.key(api_version, kind, namespace, name)
            .map_or(0, |k| self.store().writes(&k))
    }

    /// Persisted writes of all objects so far.
    pub fn total_writes(&self) -> u64 {
        self.store().total_writes()
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.store().resource_version()
    }

    /// Change a stored object as a controller would (no managed-fields entry): e.g. set a
    /// Deployment's status. Watchers see `MODIFIED`. `None` if there is no such object.
    pub fn modify(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        f: impl FnOnce(&mut Value),
    ) -> Option<Value> {
        let key = self.key(api_version, kind, namespace, name)?;
        self.store().modify(&key, f)
    }

    /// Replace an object's `status` (see [`TestServer::modify`]).
    pub fn set_status(
        &self,
        api_version: &str,
        kind: &str,
        namespace: Option<&str>,
        name: &str,
        status: Value,
    ) -> Option<Value> {
        self.modify(api_version, kind, namespace, name, |o| {
            if let Some(m) = o.as_object_mut() {
                m.insert("status".into(), status);
            }
        })
    }

    /// Every request received so far, in order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Forget the requests received so far.
    pub fn clear_requests(&self) {
        self.shared
            .log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Stop now (dropping does the same).
    pub fn stop(mut self) {
        self.shutdown_now();
    }

    fn shutdown_now(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.controllers.take() {
            let _ = t.join();
        }
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown_now();
    }
}
