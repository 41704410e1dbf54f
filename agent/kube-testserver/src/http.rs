//! The HTTP side: accepting connections (so that a fault can drop one), the request log,
//! fault injection, routing of Kubernetes API paths, and turning store answers into
//! responses (JSON, `Table`, chunked watch streams).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Request, Response, StatusCode, header};
use futures::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinSet;

use crate::discovery::{self, Format};
use crate::events;
use crate::faults::{FaultAction, Faults};
use crate::ops::{Answer, DeleteOpts, ListOpts, PatchKind, ScaleWrite, Validation, WriteOpts};
use crate::registry::Registry;
use crate::select::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{Event, EventType, Store};
use crate::time;

/// Largest request body accepted.
const MAX_BODY: usize = 32 << 20;

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub content_type: Option<String>,
    /// The answer's status; 0 when the connection was dropped by a fault.
    pub status: u16,
}

/// State shared by all connections.
#[derive(Debug)]
pub(crate) struct Shared {
    pub store: Mutex<Store>,
    pub registry: Arc<Registry>,
    pub faults: Faults,
    pub log: Mutex<Vec<RequestRecord>>,
    pub addr: SocketAddr,
}

impl Shared {
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, r: RequestRecord) {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(r);
    }
}

/// Accept connections until `shutdown` fires; then every connection (watches included)
/// is dropped.
pub(crate) async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve_conn(stream, Arc::clone(&shared)));
                }
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

async fn serve_conn(stream: TcpStream, shared: Arc<Shared>) {
    let kill = Arc::new(Notify::new());
    let svc_kill = Arc::clone(&kill);
    let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
        let shared = Arc::clone(&shared);
        let kill = Arc::clone(&svc_kill);
        async move { Ok::<_, Infallible>(handle(shared, kill, req).await) }
    });
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc);
    tokio::select! {
        _ = conn => {}
        () = kill.notified() => {}
    }
}

/// A parsed request.
struct Req {
    method: String,
    path: String,
    query: Vec<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
}

impl Req {
    fn q(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn header(&self, name: header::HeaderName) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn flag(&self, name: &str) -> bool {
        matches!(self.q(name), Some("true" | "1"))
    }
}

fn pct_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (pct_decode(k, true), pct_decode(v, true)),
            None => (pct_decode(p, true), String::new()),
        })
        .collect()
}

async fn handle(shared: Arc<Shared>, kill: Arc<Notify>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().as_str().to_string();
    let target = req
        .uri()
        .path_and_query()
        .map_or_else(|| "/".to_string(), |p| p.as_str().to_string());
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut record = RequestRecord {
        method: method.clone(),
        target: target.clone(),
        content_type,
        status: 0,
    };
    tracing::debug!("{method} {target}");
    let fault = shared.faults.take(&method, &target);
    match &fault {
        Some(FaultAction::Drop) => {
            shared.record(record);
            kill.notify_one();
            return std::future::pending().await;
        }
        Some(FaultAction::Delay(d)) => tokio::time::sleep(*d).await,
        _ => {}
    }
    let path = req.uri().path().to_string();
    let query = parse_query(req.uri().query().unwrap_or(""));
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(Body::new(body), MAX_BODY).await {
        Ok(b) => b,
        Err(e) => {
            let resp = error(&ApiError::bad_request(format!(
                "reading the request body: {e}"
            )));
            record.status = resp.status().as_u16();
            shared.record(record);
            return resp;
        }
    };
    let r = Req {
        method,
        path,
        query,
        headers: parts.headers,
        body,
    };
    let resp = match fault {
        Some(FaultAction::Status(code)) => error(&injected(code)),
        Some(FaultAction::Conflict) => error(&injected_conflict(&shared, &r)),
        _ => dispatch(&shared, &r),
    };
    record.status = resp.status().as_u16();
    shared.record(record);
    resp
}

fn injected(code: u16) -> ApiError {
    match code {
        429 => ApiError::new(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
        ),
        503 => ApiError::new(
            503,
            "ServiceUnavailable",
            "the server is currently unable to handle the request",
        ),
        504 => ApiError::new(
            504,
            "Timeout",
            "Timeout: request did not complete within the allotted timeout",
        ),
        401 => ApiError::new(401, "Unauthorized", "Unauthorized"),
        403 => ApiError::new(403, "Forbidden", "forbidden: injected fault"),
        404 => ApiError::path_not_found(),
        409 => ApiError::new(
            409,
            "Conflict",
            "Operation cannot be fulfilled: injected conflict",
        ),
        c => ApiError::new(
            c,
            "InternalError",
            "Internal error occurred: injected fault",
        ),
    }
}

fn injected_conflict(shared: &Shared, r: &Req) -> ApiError {
    if let Route::Resource {
        kind,
        name: Some(name),
        ..
    } = route(&shared.registry, &r.path)
    {
        return ApiError::stale(shared.registry.get(kind), &name);
    }
    injected(409)
}

fn response(code: u16, body: Bytes, content_type: &str) -> Response<Body> {
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        resp.headers_mut().insert(header::CONTENT_TYPE, v);
    }
    resp
}

fn json_with(code: u16, v: &Value, content_type: &str) -> Response<Body> {
    response(code, Bytes::from(v.to_string()), content_type)
}

fn json(code: u16, v: &Value) -> Response<Body> {
    json_with(code, v, "application/json")
}

fn error(e: &ApiError) -> Response<Body> {
    json(e.code, &e.to_json())
}

fn answer(a: Answer) -> Response<Body> {
    let mut resp = json(a.code, &a.body);
    for w in a.warnings {
        if let Ok(v) = HeaderValue::from_str(&format!("299 - {}", Value::String(w))) {
            resp.headers_mut().append(header::WARNING, v);
        }
    }
    resp
}

/// Where a path leads.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Route {
    Root,
    Version,
    Health,
    Api,
    Apis,
    Group(String),
    ResourceList(String, String),
    OpenApiRoot,
    OpenApiGv(String, String),
    Resource {
        kind: usize,
        namespace: Option<String>,
        name: Option<String>,
        sub: Option<String>,
        watch: bool,
    },
    NotFound,
}

fn route(registry: &Registry, path: &str) -> Route {
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| pct_decode(s, false))
        .collect();
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    match s.as_slice() {
        [] => Route::Root,
        ["version"] => Route::Version,
        ["healthz" | "livez" | "readyz", ..] => Route::Health,
        ["api"] => Route::Api,
        ["apis"] => Route::Apis,
        ["api", v] => Route::ResourceList(String::new(), (*v).to_string()),
        ["apis", g] => Route::Group((*g).to_string()),
        ["apis", g, v] => Route::ResourceList((*g).to_string(), (*v).to_string()),
        ["api", v, rest @ ..] => resource_route(registry, "", v, rest),
        ["apis", g, v, rest @ ..] => resource_route(registry, g, v, rest),
        ["openapi", "v3"] => Route::OpenApiRoot,
        ["openapi", "v3", "api", v] => Route::OpenApiGv(String::new(), (*v).to_string()),
        ["openapi", "v3", "apis", g, v] => Route::OpenApiGv((*g).to_string(), (*v).to_string()),
        _ => Route::NotFound,
    }
}

fn resource_route(registry: &Registry, group: &str, version: &str, rest: &[&str]) -> Route {
    let (watch, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let namespaced_here = |plural: &str| {
        registry
            .by_resource(group, version, plural)
            .is_some_and(|k| registry.get(k).namespaced)
    };
    let (namespace, rest): (Option<String>, Vec<String>) = match rest {
        ["namespaces", ns, plural, rest @ ..] if namespaced_here(plural) => {
            (Some((*ns).to_string()), rest_with(plural, rest))
        }
        _ => (None, rest.iter().map(|s| (*s).to_string()).collect()),
    };
    let Some(plural) = rest.first() else {
        return Route::NotFound;
    };
    let Some(kind) = registry.by_resource(group, version, plural) else {
        return Route::NotFound;
    };
    let name = rest.get(1).cloned();
    let sub = rest.get(2).cloned();
    if rest.len() > 3 {
        return Route::NotFound;
    }
    if let Some(sub) = &sub {
        let k = registry.get(kind);
        let served = match sub.as_str() {
            "status" => k.status_subresource,
            "scale" => k.scale_subresource,
            _ => false,
        };
        if !served {
            return Route::NotFound;
        }
    }
    if registry.get(kind).namespaced && namespace.is_none() && name.is_some() {
        return Route::NotFound;
    }
    Route::Resource {
        kind,
        namespace,
        name,
        sub,
        watch,
    }
}

fn rest_with(first: &str, rest: &[&str]) -> Vec<String> {
    let mut v = vec![first.to_string()];
    v.extend(rest.iter().map(|s| (*s).to_string()));
    v
}

fn dispatch(shared: &Shared, r: &Req) -> Response<Body> {
    let registry = &shared.registry;
    let rt = route(registry, &r.path);
    let get = r.method == "GET";
    match rt {
        Route::Root if get => json(
            200,
            &json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v3", "/readyz", "/version"]}),
        ),
        Route::Version if get => json(200, &discovery::version()),
        Route::Health if get => {
            response(200, Bytes::from_static(b"ok"), "text/plain; charset=utf-8")
        }
        Route::Api | Route::Apis if get => {
            let format = Format::from_accept(r.header(header::ACCEPT));
            let core = rt == Route::Api;
            let mut resp = match format {
                Format::Legacy if core => {
                    json(200, &discovery::api_versions(&shared.addr.to_string()))
                }
                Format::Legacy => json(200, &discovery::api_group_list(registry)),
                f => json_with(
                    200,
                    &discovery::aggregated(registry, core, f),
                    f.content_type(),
                ),
            };
            resp.headers_mut()
                .insert(header::VARY, HeaderValue::from_static("Accept"));
            resp
        }
        Route::Group(g) if get => match discovery::api_group(registry, &g) {
            Some(v) => json(200, &v),
            None => error(&ApiError::path_not_found()),
        },
        Route::ResourceList(g, v) if get => match discovery::api_resource_list(registry, &g, &v) {
            Some(v) => json(200, &v),
            None => error(&ApiError::path_not_found()),
        },
        Route::OpenApiRoot if get => json(200, &discovery::openapi_root(registry)),
        Route::OpenApiGv(g, v) if get => match discovery::openapi_gv(registry, &g, &v) {
            Some(v) => json(200, &v),
            None => error(&ApiError::path_not_found()),
        },
        Route::Resource {
            kind,
            namespace,
            name,
            sub,
            watch,
        } => match events::alias(registry, kind) {
            Some(core) => {
                let converted;
                let req = if r.body.iter().any(|b| !b.is_ascii_whitespace()) {
                    let mut v = match parse_body(&r.body) {
                        Ok(v) => v,
                        Err(e) => return error(&e),
                    };
                    events::to_core(&mut v);
                    converted = Req {
                        method: r.method.clone(),
                        path: r.path.clone(),
                        query: r.query.clone(),
                        headers: r.headers.clone(),
                        body: Bytes::from(v.to_string()),
                    };
                    &converted
                } else {
                    r
                };
                resource(
                    shared,
                    req,
                    core,
                    namespace.as_deref(),
                    name.as_deref(),
                    sub.as_deref(),
                    watch,
                    Some(events::from_core),
                )
            }
            None => resource(
                shared,
                r,
                kind,
                namespace.as_deref(),
                name.as_deref(),
                sub.as_deref(),
                watch,
                None,
            ),
        },
        Route::NotFound => error(&ApiError::path_not_found()),
        _ => error(&ApiError::method_not_allowed()),
    }
}

fn write_opts(r: &Req) -> Result<WriteOpts, ApiError> {
    let validation = match r.q("fieldValidation") {
        None | Some("") | Some("Warn") => Validation::Warn,
        Some("Strict") => Validation::Strict,
        Some("Ignore") => Validation::Ignore,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "fieldValidation: Unsupported value: \"{other}\": supported values: \"Ignore\", \"Strict\", \"Warn\""
            )));
        }
    };
    let dry_run = match r.q("dryRun") {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "dryRun: Unsupported value: \"{other}\": supported values: \"All\""
            )));
        }
    };
    let given = r.q("fieldManager").filter(|m| !m.is_empty());
    let manager = match given {
        Some(m) => m.to_string(),
        None => {
            let ua = r.header(header::USER_AGENT);
            let prog = ua.split('/').next().unwrap_or("").trim();
            if prog.is_empty() {
                "unknown".to_string()
            } else {
                prog.chars().take(128).collect()
            }
        }
    };
    Ok(WriteOpts {
        dry_run,
        manager,
        manager_given: given.is_some(),
        validation,
        force: r.flag("force"),
    })
}

fn list_opts(r: &Req) -> Result<ListOpts, ApiError> {
    Ok(ListOpts {
        labels: LabelSelector::parse(r.q("labelSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?,
        fields: FieldSelector::parse(r.q("fieldSelector").unwrap_or(""))
            .map_err(ApiError::bad_request)?,
        limit: r.q("limit").and_then(|l| l.parse().ok()),
        continue_token: r
            .q("continue")
            .filter(|c| !c.is_empty())
            .map(str::to_string),
    })
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type JSON): {e}"
        ))
    })
}

/// An apply body: JSON, or YAML.
fn parse_apply(body: &[u8]) -> Result<Value, ApiError> {
    if let Ok(v) = serde_json::from_slice::<Value>(body) {
        return Ok(v);
    }
    let text = std::str::from_utf8(body)
        .map_err(|_| ApiError::bad_request("error decoding YAML: invalid UTF-8"))?;
    let file: Arc<str> = Arc::from("request body");
    let (docs, diags) = plinth::parse::yaml::parse_documents(&file, text, Default::default());
    if let Some(d) = diags.first() {
        return Err(ApiError::bad_request(format!(
            "error decoding YAML: {}",
            d.message
        )));
    }
    match docs.as_slice() {
        [doc] => Ok(doc.root.to_json()),
        _ => Err(ApiError::bad_request(
            "error decoding YAML: the apply body must be one document",
        )),
    }
}

/// Content types read as JSON or YAML (protobuf is not supported).
fn is_json(ct: &str) -> bool {
    let base = ct.split(';').next().unwrap_or("").trim();
    matches!(base, "" | "application/json" | "application/yaml" | "*/*")
}

/// A POST or PUT body: JSON, or YAML.
fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    parse_apply(body)
}

fn patch_kind(ct: &str) -> Result<PatchKind, ApiError> {
    let base = ct.split(';').next().unwrap_or("").trim();
    Ok(match base {
        "application/merge-patch+json" => PatchKind::Merge,
        "application/json-patch+json" => PatchKind::Json,
        "application/strategic-merge-patch+json" => PatchKind::Strategic,
        "application/apply-patch+yaml" => PatchKind::Apply,
        other => {
            return Err(ApiError::unsupported_media_type(
                other,
                &[
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                    "application/strategic-merge-patch+json",
                ],
            ));
        }
    })
}

/// The `scale` subresource: GET, PUT, PATCH.
fn scale(
    shared: &Shared,
    r: &Req,
    kind: usize,
    ns: Option<&str>,
    n: &str,
) -> Result<Response<Body>, ApiError> {
    match r.method.as_str() {
        "GET" => Ok(json(200, &shared.store().get_scale(kind, ns, n)?)),
        "PUT" => {
            let body = parse_body(&r.body)?;
            let opts = write_opts(r)?;
            Ok(answer(shared.store().write_scale(
                kind,
                ns,
                n,
                ScaleWrite::Put(body),
                &opts,
            )?))
        }
        "PATCH" => {
            let how = patch_kind(r.header(header::CONTENT_TYPE))?;
            let body = parse_json(&r.body)?;
            let opts = write_opts(r)?;
            Ok(answer(shared.store().write_scale(
                kind,
                ns,
                n,
                ScaleWrite::Patch(how, body),
                &opts,
            )?))
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// A POST or PUT body must be JSON or YAML.
fn require_json(ct: &str) -> Result<(), ApiError> {
    if is_json(ct) {
        Ok(())
    } else {
        Err(ApiError::unsupported_media_type(
            ct,
            &["application/json", "application/yaml"],
        ))
    }
}

#[allow(clippy::too_many_arguments)]
fn resource(
    shared: &Shared,
    r: &Req,
    kind: usize,
    ns: Option<&str>,
    name: Option<&str>,
    sub: Option<&str>,
    watch_path: bool,
    convert: Option<fn(&mut Value)>,
) -> Response<Body> {
    let out = |mut v: Value| {
        if let Some(c) = convert {
            c(&mut v);
        }
        v
    };
    let out_answer = |mut a: Answer| {
        if let Some(c) = convert {
            c(&mut a.body);
        }
        a
    };
    let result = (|| -> Result<Response<Body>, ApiError> {
        let sub = sub.unwrap_or("");
        let ct = r.header(header::CONTENT_TYPE);
        if sub == "scale" {
            return scale(shared, r, kind, ns, name.unwrap_or(""));
        }
        match (r.method.as_str(), name) {
            ("GET", None) if watch_path || r.flag("watch") => {
                let opts = list_opts(r)?;
                Ok(watch(shared, r, kind, ns, opts, convert))
            }
            ("GET", Some(n)) if watch_path || r.flag("watch") => {
                let mut opts = list_opts(r)?;
                opts.fields = FieldSelector::parse(&format!("metadata.name={n}"))
                    .map_err(ApiError::bad_request)?;
                Ok(watch(shared, r, kind, ns, opts, convert))
            }
            ("GET", None) => {
                let opts = list_opts(r)?;
                let list = shared.store().list_objects(kind, ns, &opts)?;
                Ok(maybe_table(shared, r, kind, out(list), true))
            }
            ("GET", Some(n)) => {
                let obj = shared.store().get_object(kind, ns, n)?;
                Ok(maybe_table(shared, r, kind, out(obj), false))
            }
            ("POST", None) if sub.is_empty() => {
                require_json(ct)?;
                let body = parse_body(&r.body)?;
                let opts = write_opts(r)?;
                Ok(answer(out_answer(
                    shared.store().create(kind, ns, body, &opts)?,
                )))
            }
            ("PUT", Some(n)) => {
                require_json(ct)?;
                let body = parse_body(&r.body)?;
                let opts = write_opts(r)?;
                Ok(answer(out_answer(
                    shared.store().replace(kind, ns, n, body, &opts, sub)?,
                )))
            }
            ("PATCH", Some(n)) => {
                let how = patch_kind(ct)?;
                let body = if how == PatchKind::Apply {
                    parse_apply(&r.body)?
                } else {
                    parse_json(&r.body)?
                };
                let opts = write_opts(r)?;
                Ok(answer(out_answer(
                    shared.store().patch(kind, ns, n, how, body, &opts, sub)?,
                )))
            }
            ("DELETE", n) if sub.is_empty() => {
                let opts = delete_opts(r)?;
                let mut store = shared.store();
                match n {
                    Some(n) => Ok(answer(out_answer(store.delete(kind, ns, n, &opts)?))),
                    None => {
                        let list = list_opts(r)?;
                        Ok(answer(out_answer(
                            store.delete_collection(kind, ns, &list, &opts)?,
                        )))
                    }
                }
            }
            _ => Err(ApiError::method_not_allowed()),
        }
    })();
    result.unwrap_or_else(|e| error(&e))
}

fn delete_opts(r: &Req) -> Result<DeleteOpts, ApiError> {
    let mut opts = DeleteOpts {
        dry_run: r.q("dryRun") == Some("All"),
        propagation: r.q("propagationPolicy").map(str::to_string),
        ..DeleteOpts::default()
    };
    if r.body.iter().any(|b| !b.is_ascii_whitespace()) {
        let body = parse_json(&r.body)?;
        if let Some(Value::Array(d)) = body.get("dryRun") {
            opts.dry_run |= d.iter().any(|v| v == "All");
        }
        if let Some(p) = body.get("propagationPolicy").and_then(Value::as_str) {
            opts.propagation = Some(p.to_string());
        }
        if let Some(uid) = body.pointer("/preconditions/uid").and_then(Value::as_str) {
            opts.precondition_uid = Some(uid.to_string());
        }
        if let Some(rv) = body
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
        {
            opts.precondition_rv = Some(rv.to_string());
        }
    }
    if let Some(p) = &opts.propagation
        && !matches!(p.as_str(), "Background" | "Foreground" | "Orphan")
    {
        return Err(ApiError::bad_request(format!(
            "propagationPolicy: Unsupported value: \"{p}\": supported values: \"Foreground\", \"Background\", \"Orphan\""
        )));
    }
    Ok(opts)
}

/// Answer as a `meta.k8s.io/v1` `Table` when the client asks for one (kubectl's human
/// output), otherwise as is.
fn maybe_table(shared: &Shared, r: &Req, kind: usize, v: Value, is_list: bool) -> Response<Body> {
    let accept = r.header(header::ACCEPT);
    if !accept.split(',').next().unwrap_or("").contains("as=Table") {
        return json(200, &v);
    }
    let info = shared.registry.get(kind);
    let namespace_kind = info.group.is_empty() && info.kind == "Namespace";
    let include = r.q("includeObject").unwrap_or("Metadata");
    let objects: Vec<Value> = if is_list {
        v["items"].as_array().cloned().unwrap_or_default()
    } else {
        vec![v.clone()]
    };
    let now = time::now_unix();
    let mut columns = vec![
        json!({"name": "Name", "type": "string", "format": "name", "description": "Name must be unique within a namespace.", "priority": 0}),
    ];
    if namespace_kind {
        columns.push(json!({"name": "Status", "type": "string", "format": "", "description": "The status of the namespace", "priority": 0}));
    }
    columns.push(json!({"name": "Age", "type": "string", "format": "", "description": "CreationTimestamp is a timestamp representing the server time when this object was created.", "priority": 0}));
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| {
            let name = o.pointer("/metadata/name").cloned().unwrap_or(json!(""));
            let created = o
                .pointer("/metadata/creationTimestamp")
                .and_then(Value::as_str)
                .and_then(time::parse_rfc3339)
                .unwrap_or(now);
            let mut cells = vec![name];
            if namespace_kind {
                cells.push(o.pointer("/status/phase").cloned().unwrap_or(json!("")));
            }
            cells.push(json!(time::age(now - created)));
            let object = match include {
                "None" => Value::Null,
                "Object" => {
                    let mut full = o.clone();
                    if let Some(m) = full.as_object_mut() {
                        m.insert("apiVersion".into(), json!(info.api_version()));
                        m.insert("kind".into(), json!(info.kind));
                    }
                    full
                }
                _ => json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o.get("metadata").cloned().unwrap_or(json!({}))}),
            };
            json!({"cells": cells, "object": object})
        })
        .collect();
    let meta = if is_list {
        v.get("metadata").cloned().unwrap_or(json!({}))
    } else {
        json!({"resourceVersion": v.pointer("/metadata/resourceVersion").cloned().unwrap_or(json!(""))})
    };
    json(
        200,
        &json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta, "columnDefinitions": columns, "rows": rows}),
    )
}

fn event_line(etype: &str, object: &Value) -> Bytes {
    let mut s = json!({"type": etype, "object": object}).to_string();
    s.push('\n');
    Bytes::from(s)
}

/// Whether (and as what) a watcher with these selectors sees an event.
fn classify<'e>(
    e: &'e Event,
    kind: usize,
    ns: Option<&str>,
    opts: &ListOpts,
) -> Option<(EventType, &'e Value)> {
    if e.kind != kind || ns.is_some_and(|ns| e.namespace != ns) {
        return None;
    }
    let matches = |o: &Value| opts.labels.matches(o) && opts.fields.matches(o);
    let now = matches(&e.object);
    match e.etype {
        EventType::Added | EventType::Deleted => now.then_some((e.etype, &e.object)),
        EventType::Modified => {
            let before = e.prev.as_ref().is_some_and(matches);
            match (before, now) {
                (true, true) => Some((EventType::Modified, &e.object)),
                (false, true) => Some((EventType::Added, &e.object)),
                (true, false) => Some((EventType::Deleted, &e.object)),
                (false, false) => None,
            }
        }
    }
}

/// A chunked stream of newline-delimited watch events.
fn watch(
    shared: &Shared,
    r: &Req,
    kind: usize,
    ns: Option<&str>,
    opts: ListOpts,
    convert: Option<fn(&mut Value)>,
) -> Response<Body> {
    let line = move |etype: &str, o: &Value| {
        let mut o = o.clone();
        if let Some(c) = convert {
            c(&mut o);
        }
        event_line(etype, &o)
    };
    let send_initial = r.flag("sendInitialEvents");
    let since = match r.q("resourceVersion") {
        None | Some("" | "0") => None,
        Some(_) if send_initial => None,
        Some(v) => match v.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                return error(&ApiError::bad_request(format!(
                    "resourceVersion: Invalid value: \"{v}\": must be a non-negative integer"
                )));
            }
        },
    };
    let timeout = r
        .q("timeoutSeconds")
        .and_then(|t| t.parse::<u64>().ok())
        .unwrap_or(1800);
    let info = shared.registry.get(kind).clone();
    let (initial, rx, rv) = {
        let mut store = shared.store();
        let rv = store.resource_version();
        match store.watch(kind, ns, since) {
            Ok((initial, rx)) => (initial, rx, rv),
            Err(floor) => {
                let gone = ApiError::gone(format!(
                    "too old resource version: {} ({floor})",
                    since.unwrap_or(0)
                ));
                let line = event_line("ERROR", &gone.to_json());
                let mut resp = Response::new(Body::from_stream(futures::stream::iter([Ok::<
                    Bytes,
                    Infallible,
                >(
                    line
                )])));
                resp.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
                return resp;
            }
        }
    };
    let ns_owned = ns.map(str::to_string);
    let mut lines: Vec<Bytes> = initial
        .iter()
        .filter_map(|e| classify(e, kind, ns, &opts).map(|(t, o)| line(t.as_str(), o)))
        .collect();
    if send_initial {
        lines.push(line(
            "BOOKMARK",
            &json!({
                "kind": info.kind,
                "apiVersion": info.api_version(),
                "metadata": {
                    "resourceVersion": rv.to_string(),
                    "annotations": {"k8s.io/initial-events-end": "true"}
                }
            }),
        ));
    }
    let live =
        futures::stream::unfold((rx, opts, ns_owned), move |(mut rx, opts, ns)| async move {
            loop {
                let e = rx.recv().await?;
                if let Some((t, o)) = classify(&e, kind, ns.as_deref(), &opts) {
                    let l = line(t.as_str(), o);
                    return Some((l, (rx, opts, ns)));
                }
            }
        });
    let stream = futures::stream::iter(lines)
        .chain(live)
        .take_until(tokio::time::sleep(Duration::from_secs(timeout)))
        .map(Ok::<Bytes, Infallible>);
    let mut resp = Response::new(Body::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        let r = Registry::plinth();
        let cm = r.by_kind("v1", "ConfigMap").expect("cm");
        let ns = r.by_kind("v1", "Namespace").expect("ns");
        assert_eq!(
            route(&r, "/api/v1/namespaces/x/configmaps/c"),
            Route::Resource {
                kind: cm,
                namespace: Some("x".into()),
                name: Some("c".into()),
                sub: None,
                watch: false
            }
        );
        assert_eq!(
            route(&r, "/api/v1/namespaces/x"),
            Route::Resource {
                kind: ns,
                namespace: None,
                name: Some("x".into()),
                sub: None,
                watch: false
            }
        );
        assert_eq!(
            route(&r, "/api/v1/namespaces/x/status"),
            Route::Resource {
                kind: ns,
                namespace: None,
                name: Some("x".into()),
                sub: Some("status".into()),
                watch: false
            }
        );
        assert_eq!(
            route(&r, "/api/v1/configmaps"),
            Route::Resource {
                kind: cm,
                namespace: None,
                name: None,
                sub: None,
                watch: false
            }
        );
        assert_eq!(route(&r, "/api/v1/configmaps/c"), Route::NotFound);
        assert_eq!(
            route(&r, "/api/v1/namespaces/x/configmaps/c/status"),
            Route::NotFound
        );
        let lq = r
            .by_kind("kueue.x-k8s.io/v1beta2", "LocalQueue")
            .expect("lq");
        assert_eq!(
            route(
                &r,
                "/apis/kueue.x-k8s.io/v1beta2/watch/namespaces/x/localqueues"
            ),
            Route::Resource {
                kind: lq,
                namespace: Some("x".into()),
                name: None,
                sub: None,
                watch: true
            }
        );
        assert_eq!(pct_decode("app%3Dy+z", true), "app=y z");
        assert_eq!(pct_decode("100%", true), "100%");
    }
}
