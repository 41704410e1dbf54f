//! The cluster, through the `kube` client: resolving kinds (discovery of just the group
//! versions needed), get, server-side apply (real or dry run), delete; transient failures
//! retried a bounded number of times.
//!
//! The only module that talks to the API server. Errors become [`ApiError`] values that say
//! what was attempted on which object and whether trying again may help.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::GroupVersion;
use kube::discovery::{ApiCapabilities, ApiResource, Scope};
use kube::{Client, Config};
use plinth::lower::ObjectKey;
use serde::Serialize;
use serde_json::Value;

use crate::error::{Error, chain};

/// A failed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{op} {key}: {message}")]
pub struct ApiError {
    /// What was attempted: `get`, `apply`, `dry-run apply`, `delete`, `discover`.
    pub op: &'static str,
    /// The object (or group version) concerned.
    pub key: String,
    /// HTTP status of an API answer; `None` when there was no answer (connection, timeout).
    pub code: Option<u16>,
    pub reason: String,
    pub message: String,
    /// Fields another manager owns, for a server-side apply conflict.
    pub conflicts: Vec<String>,
    /// Whether trying again may help (5xx, 429, a stale-object conflict, no answer).
    pub transient: bool,
}

impl ApiError {
    fn new(op: &'static str, key: &str, e: kube::Error) -> ApiError {
        match e {
            kube::Error::Api(s) => {
                let conflicts: Vec<String> = s
                    .details
                    .as_ref()
                    .map(|d| {
                        d.causes
                            .iter()
                            .filter(|c| c.reason == "FieldManagerConflict")
                            .map(|c| format!("{} ({})", c.field, c.message))
                            .collect()
                    })
                    .unwrap_or_default();
                let transient = s.code >= 500
                    || s.code == 429
                    || (s.code == 409
                        && conflicts.is_empty()
                        && s.reason == "Conflict"
                        && !s.message.contains("Precondition failed"));
                ApiError {
                    op,
                    key: key.into(),
                    code: Some(s.code),
                    reason: s.reason.clone(),
                    message: format!("{} {}: {}", s.code, s.reason, s.message),
                    conflicts,
                    transient,
                }
            }
            other => {
                let transient = matches!(
                    other,
                    kube::Error::HyperError(_)
                        | kube::Error::Service(_)
                        | kube::Error::ReadEvents(_)
                        | kube::Error::SerdeError(_)
                );
                ApiError {
                    op,
                    key: key.into(),
                    code: None,
                    reason: String::new(),
                    message: chain(&other),
                    conflicts: Vec::new(),
                    transient,
                }
            }
        }
    }

    fn timeout(op: &'static str, key: &str, after: Duration) -> ApiError {
        ApiError {
            op,
            key: key.into(),
            code: None,
            reason: "Timeout".into(),
            message: format!("no answer within {}", crate::duration::show(after)),
            conflicts: Vec::new(),
            transient: true,
        }
    }

    pub fn is_not_found(&self) -> bool {
        self.code == Some(404)
    }
}

/// How requests are retried and bounded.
#[derive(Debug, Clone, Copy)]
pub struct Requests {
    /// Further attempts after a transient failure.
    pub retries: u32,
    /// Wait before the first retry; doubled each time.
    pub backoff: Duration,
    /// Bound on one request, answer included.
    pub timeout: Duration,
}

impl Default for Requests {
    fn default() -> Requests {
        Requests {
            retries: 3,
            backoff: Duration::from_millis(200),
            timeout: Duration::from_secs(30),
        }
    }
}

type Resources = Arc<Vec<(ApiResource, ApiCapabilities)>>;

/// How [`Cluster::apply`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Write {
    /// Apply; a conflict with another field manager fails.
    Apply,
    /// Apply, taking over fields another manager owns.
    Force,
    /// A forced apply the server only simulates: the object as it would be.
    DryRun,
}

impl Write {
    /// [`Write::Force`] when `force`, else [`Write::Apply`].
    pub fn forced(force: bool) -> Write {
        if force { Write::Force } else { Write::Apply }
    }
}

/// A cluster to apply to.
#[derive(Clone)]
pub struct Cluster {
    client: Client,
    requests: Requests,
    /// Resources served per group version, as discovered.
    resources: Arc<Mutex<HashMap<String, Resources>>>,
    /// The API server's URL (userinfo redacted), named in errors that never reached it.
    server: Option<String>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

/// What a delete found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deleted {
    Deleted,
    /// It was gone already.
    Gone,
}

impl Cluster {
    /// Connect with a kubeconfig file (or the usual inference: `KUBECONFIG`, `~/.kube/config`,
    /// in-cluster), optionally a context of it.
    pub async fn connect(
        kubeconfig: Option<&Path>,
        context: Option<&str>,
        requests: Requests,
    ) -> Result<Cluster, Error> {
        let opts = KubeConfigOptions {
            context: context.map(str::to_owned),
            ..KubeConfigOptions::default()
        };
        let mut config = match kubeconfig {
            Some(p) => {
                let kc = Kubeconfig::read_from(p).map_err(|e| {
                    Error::Config(format!("cannot read `{}`: {}", p.display(), chain(&e)))
                })?;
                Config::from_custom_kubeconfig(kc, &opts)
                    .await
                    .map_err(|e| Error::Config(chain(&e)))?
            }
            None => match context {
                Some(_) => Config::from_kubeconfig(&opts)
                    .await
                    .map_err(|e| Error::Config(chain(&e)))?,
                None => Config::infer()
                    .await
                    .map_err(|e| Error::Config(chain(&e)))?,
            },
        };
        config.connect_timeout = Some(requests.timeout);
        config.read_timeout = Some(requests.timeout);
        config.write_timeout = Some(requests.timeout);
        let server = crate::source::redact_url(&config.cluster_url.to_string());
        let client = Client::try_from(config).map_err(|e| Error::Config(chain(&e)))?;
        let mut c = Cluster::new(client, requests);
        c.server = Some(server);
        Ok(c)
    }

    pub fn new(client: Client, requests: Requests) -> Cluster {
        Cluster {
            client,
            requests,
            resources: Arc::default(),
            server: None,
        }
    }

    /// The `kube` client (for the event recorder).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Forget discovered resources (after CRDs were applied).
    pub fn forget_discovery(&self) {
        self.resources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    /// Run `f` until it succeeds, fails for good, or retries run out; each attempt bounded
    /// in time.
    async fn retry<T, F, Fut>(&self, op: &'static str, key: &str, f: F) -> Result<T, ApiError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<T, kube::Error>>,
    {
        let mut delay = self.requests.backoff;
        let mut attempt = 0;
        loop {
            let result = match tokio::time::timeout(self.requests.timeout, f()).await {
                Ok(r) => r.map_err(|e| ApiError::new(op, key, e)),
                Err(_) => Err(ApiError::timeout(op, key, self.requests.timeout)),
            };
            match result {
                Err(e) if e.transient && attempt < self.requests.retries => {
                    tracing::warn!(error = %e, attempt, "retrying");
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                    attempt += 1;
                }
                Err(mut e) if e.code.is_none() => {
                    // No answer at all: say where it was asked.
                    if let Some(s) = &self.server {
                        e.message = format!("{} (API server `{s}`)", e.message);
                    }
                    return Err(e);
                }
                other => return other,
            }
        }
    }

    /// The served resources of a group version.
    async fn group_version(&self, api_version: &str) -> Result<Resources, ApiError> {
        if let Some(r) = self
            .resources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(api_version)
        {
            return Ok(Arc::clone(r));
        }
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gv = GroupVersion::gv(group, version);
        let found = self
            .retry("discover", api_version, || {
                kube::discovery::pinned_group(&self.client, &gv)
            })
            .await?;
        let resources: Resources = Arc::new(found.versioned_resources(version));
        self.resources
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(api_version.to_owned(), Arc::clone(&resources));
        Ok(resources)
    }

    /// The API for an object's kind, scoped to its namespace.
    async fn api(&self, key: &ObjectKey) -> Result<Api<DynamicObject>, ApiError> {
        let resources = self.group_version(&key.api_version).await.map_err(|e| {
            if e.is_not_found() {
                ApiError {
                    message: format!("`{}` is not served by the cluster", key.api_version),
                    transient: false,
                    ..e
                }
            } else {
                e
            }
        })?;
        let Some((ar, caps)) = resources.iter().find(|(ar, _)| ar.kind == key.kind) else {
            return Err(ApiError {
                op: "discover",
                key: key.to_string(),
                code: None,
                reason: "NotServed".into(),
                message: format!(
                    "kind `{}` is not served by the cluster under `{}`",
                    key.kind, key.api_version
                ),
                conflicts: Vec::new(),
                transient: false,
            });
        };
        Ok(match (&caps.scope, &key.namespace) {
            (Scope::Namespaced, Some(ns)) => Api::namespaced_with(self.client.clone(), ns, ar),
            (Scope::Namespaced, None) => Api::default_namespaced_with(self.client.clone(), ar),
            (Scope::Cluster, _) => Api::all_with(self.client.clone(), ar),
        })
    }

    /// The live object, or `None`.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Value>, ApiError> {
        let api = self.api(key).await?;
        let name = key.to_string();
        let obj = self.retry("get", &name, || api.get_opt(&key.name)).await?;
        obj.map(|o| to_value("get", &name, &o)).transpose()
    }

    /// Server-side apply `body` as `manager`, as `how` says.
    pub async fn apply(
        &self,
        key: &ObjectKey,
        body: &Value,
        manager: &str,
        how: Write,
    ) -> Result<Value, ApiError> {
        let api = self.api(key).await?;
        let mut pp = PatchParams::apply(manager);
        pp.force = how != Write::Apply;
        pp.dry_run = how == Write::DryRun;
        let op = if pp.dry_run { "dry-run apply" } else { "apply" };
        let name = key.to_string();
        let patch = Patch::Apply(body);
        let obj = self
            .retry(op, &name, || api.patch(&key.name, &pp, &patch))
            .await?;
        to_value(op, &name, &obj)
    }

    /// Every object in namespace `ns`, of every namespaced kind the cluster serves and lists
    /// (each group at its preferred version; Events left out): what deleting the namespace
    /// would delete. One discovery and one list per kind: for the rare namespace deletion.
    pub async fn namespace_contents(&self, ns: &str) -> Result<Vec<Value>, ApiError> {
        let discovery = self
            .retry("discover", "all groups", || {
                kube::discovery::Discovery::new(self.client.clone()).run()
            })
            .await?;
        let mut out = Vec::new();
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                if caps.scope != Scope::Namespaced
                    || !caps.supports_operation(kube::discovery::verbs::LIST)
                    || ar.kind == "Event"
                    || ar.plural.contains('/')
                {
                    continue;
                }
                let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), ns, &ar);
                let what = format!("{} in namespace {ns}", ar.plural);
                let lp = ListParams::default();
                let list = self.retry("list", &what, || api.list(&lp)).await?;
                for o in list.items {
                    let mut v = to_value("list", &what, &o)?;
                    // Items of a list carry no type: give them theirs.
                    v["apiVersion"] = Value::String(ar.api_version.clone());
                    v["kind"] = Value::String(ar.kind.clone());
                    out.push(v);
                }
            }
        }
        Ok(out)
    }

    /// Delete in the background, only if the object still has `uid` (when given).
    pub async fn delete(&self, key: &ObjectKey, uid: Option<&str>) -> Result<Deleted, ApiError> {
        let api = self.api(key).await?;
        let mut dp = DeleteParams::background();
        if let Some(uid) = uid {
            dp = dp.preconditions(Preconditions {
                uid: Some(uid.to_owned()),
                resource_version: None,
            });
        }
        let name = key.to_string();
        match self
            .retry("delete", &name, || api.delete(&key.name, &dp))
            .await
        {
            Ok(_) => Ok(Deleted::Deleted),
            Err(e) if e.is_not_found() => Ok(Deleted::Gone),
            Err(e) => Err(e),
        }
    }
}

fn to_value(op: &'static str, key: &str, o: &DynamicObject) -> Result<Value, ApiError> {
    serde_json::to_value(o).map_err(|e| ApiError {
        op,
        key: key.into(),
        code: None,
        reason: String::new(),
        message: format!("unreadable answer: {e}"),
        conflicts: Vec::new(),
        transient: false,
    })
}
