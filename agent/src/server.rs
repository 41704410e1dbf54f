//! The agent's HTTP endpoints (axum):
//!
//! - `GET /metrics`: Prometheus text format ([`crate::metrics`]);
//! - `GET /healthz`: `200` while the loop is alive (it moved within its stale bound), `503`
//!   after;
//! - `GET /readyz`: `200` once the first step reached the remote and the cluster, `503` before;
//! - `POST /hooks/git`: a forge's push webhook, signature checked ([`crate::webhook`]); a push
//!   to the tracked branch wakes the loop (`202`), other refs are ignored (`202`), pings
//!   answered (`200`), bad or missing signatures refused (`401`), and every hook refused when
//!   a webhook secret file is configured but missing or empty. Without a secret file, hooks
//!   are refused unless `--allow-unsigned-webhooks`. A delivery seen before (its ID, within an
//!   hour) is answered `200` and ignored. Bodies over 1 MiB are refused (`413`).
//!
//! Limits against slow or many clients ([`Limits`]): request headers must arrive within a
//! timeout and fit a buffer, a request must be answered within a timeout (`408`), connections
//! are not kept alive, and past the connection cap a new connection is answered `503` and
//! closed at once.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::{Notify, Semaphore, watch};

use crate::gitops::Probe;
use crate::metrics::Metrics;
use crate::webhook::{self, Forge, Hook};

/// What the endpoints need.
#[derive(Clone)]
pub struct Endpoints {
    pub metrics: Arc<Metrics>,
    pub probe: Arc<Probe>,
    /// Woken by a push to the tracked branch.
    pub wake: Arc<Notify>,
    pub forge: Forge,
    /// A file holding the webhook secret, read at each hook (a rotated secret takes effect at
    /// once; a missing file refuses every hook). `None` accepts unsigned hooks: they only
    /// trigger a fetch.
    pub secret: Option<PathBuf>,
    /// Without a secret: accept unsigned hooks (else they are refused).
    pub allow_unsigned: bool,
    /// Delivery IDs seen (replays are ignored).
    pub deliveries: Arc<webhook::Deliveries>,
    pub branch: String,
}

/// What the server allows a client.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more are answered `503` and closed.
    pub max_connections: usize,
    /// Time for a client to send its request headers.
    pub header_timeout: Duration,
    /// Time to read the body and answer.
    pub request_timeout: Duration,
    /// Bytes of request headers (and of hyper's read buffer).
    pub max_header_bytes: usize,
    /// Bytes of a request body.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 128,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_header_bytes: 16 * 1024,
            max_body_bytes: 1024 * 1024,
        }
    }
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("forge", &self.forge)
            .field("branch", &self.branch)
            .finish_non_exhaustive()
    }
}

pub fn router(e: Endpoints, limits: Limits) -> Router {
    let timeout = limits.request_timeout;
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/hooks/git", post(hook))
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(middleware::from_fn(move |req: Request, next: Next| {
            answer_within(timeout, req, next)
        }))
        .with_state(e)
}

/// `408` when reading the body and answering take longer than `timeout`.
async fn answer_within(timeout: Duration, req: Request, next: Next) -> Response {
    match tokio::time::timeout(timeout, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (StatusCode::REQUEST_TIMEOUT, "request timed out\n").into_response(),
    }
}

async fn metrics(State(e): State<Endpoints>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        e.metrics.render(),
    )
}

async fn healthz(State(e): State<Endpoints>) -> impl IntoResponse {
    if e.probe.is_alive() {
        (StatusCode::OK, "ok\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "the sync loop is stuck\n")
    }
}

async fn readyz(State(e): State<Endpoints>) -> impl IntoResponse {
    if e.probe.is_ready() {
        (StatusCode::OK, "ready\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the first sync has not reached the remote and the cluster yet\n",
        )
    }
}

async fn hook(State(e): State<Endpoints>, headers: HeaderMap, body: Bytes) -> impl IntoResponse {
    let pairs: Vec<(String, String)> = headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    let Some(file) = &e.secret else {
        if !e.allow_unsigned {
            e.metrics.webhook("refused");
            tracing::debug!("webhook refused: no webhook secret is configured");
            return (
                StatusCode::UNAUTHORIZED,
                "refused: the agent has no webhook secret (`--webhook-secret-file`); unsigned hooks need `--allow-unsigned-webhooks`\n".to_owned(),
            );
        }
        return accept(&e, &pairs, &body);
    };
    {
        let secret = match crate::source::read_secret(file) {
            Ok(s) if !s.is_empty() => s,
            Ok(_) | Err(_) => {
                e.metrics.webhook("refused");
                tracing::warn!(file = %file.display(), "webhook refused: the webhook secret is unavailable");
                return (
                    StatusCode::UNAUTHORIZED,
                    "refused: the agent has no webhook secret\n".to_owned(),
                );
            }
        };
        if let Err(why) = webhook::verify(e.forge, secret.as_bytes(), &pairs, &body) {
            // Debug only: anyone can send these, and a flood must not flood the log too
            // (`plinth_agent_webhooks_total{result="refused"}` counts them).
            e.metrics.webhook("refused");
            tracing::debug!(%why, "webhook refused");
            return (StatusCode::UNAUTHORIZED, format!("refused: {why}\n"));
        }
    }
    accept(&e, &pairs, &body)
}

/// A hook that passed the signature check: ignored when its delivery was seen before, else
/// classified.
fn accept(e: &Endpoints, pairs: &[(String, String)], body: &[u8]) -> (StatusCode, String) {
    if let Some(id) = webhook::delivery_id(pairs)
        && !e.deliveries.first(&id, Instant::now())
    {
        e.metrics.webhook("duplicate");
        tracing::debug!(delivery = %id, "webhook: a delivery seen before; ignored");
        return (
            StatusCode::OK,
            "ignored: this delivery was received before\n".to_owned(),
        );
    }
    match webhook::classify(pairs, body, &e.branch) {
        Hook::Ping => {
            e.metrics.webhook("ignored");
            (StatusCode::OK, "pong\n".to_owned())
        }
        Hook::Push => {
            // The loop logs when it is woken (once per coalesced wake).
            e.metrics.webhook("wake");
            tracing::debug!("webhook: push to the tracked branch");
            e.wake.notify_one();
            (StatusCode::ACCEPTED, "fetching\n".to_owned())
        }
        Hook::Other(r) => {
            e.metrics.webhook("ignored");
            (
                StatusCode::ACCEPTED,
                format!("ignored: `{r}` is not the tracked branch `{}`\n", e.branch),
            )
        }
    }
}

/// Serve on `addr` until `shutdown` turns true. Returns the bound address through `bound`.
pub async fn serve(
    addr: SocketAddr,
    e: Endpoints,
    limits: Limits,
    mut shutdown: watch::Receiver<bool>,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let _ = bound.send(listener.local_addr()?);
    let app = router(e, limits);
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let (mut stream, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(err) => {
                    // Out of file descriptors and the like: wait a little, go on.
                    tracing::warn!(error = %err, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = wait_true(&mut shutdown) => break,
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            // Past the cap: say so and close, without reading anything.
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(1), async {
                    let _ = stream
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\nretry-after: 1\r\ncontent-length: 0\r\n\r\n")
                        .await;
                    let _ = stream.shutdown().await;
                })
                .await;
            });
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .max_buf_size(limits.max_header_bytes.max(8192))
                .keep_alive(false);
            let conn = http.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            // A last bound, whatever the client does.
            let whole = limits.header_timeout + limits.request_timeout + Duration::from_secs(5);
            let _ = tokio::time::timeout(whole, conn).await;
            drop(permit);
        });
    }
    // Let the connections being served finish (briefly).
    let all = u32::try_from(limits.max_connections.max(1)).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(Duration::from_secs(5), slots.acquire_many(all)).await;
    Ok(())
}

async fn wait_true(rx: &mut watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
