//! The agent's HTTP endpoints (axum):
//!
//! - `GET /metrics`: Prometheus text format ([`crate::metrics`]);
//! - `GET /healthz`: `200` while the loop is alive (it moved within its stale bound), `503`
//!   after;
//! - `GET /readyz`: `200` once the first step reached the remote and the cluster, `503` before;
//! - `POST /hooks/git`: a forge's push webhook, signature checked ([`crate::webhook`]); a push
//!   to the tracked branch wakes the loop (`202`), other refs are ignored (`202`), pings
//!   answered (`200`), bad or missing signatures refused (`401`), and every hook refused when
//!   a webhook secret file is configured but missing or empty. Bodies over 1 MiB are refused.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::sync::{Notify, watch};

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
    pub branch: String,
}

impl std::fmt::Debug for Endpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoints")
            .field("forge", &self.forge)
            .field("branch", &self.branch)
            .finish_non_exhaustive()
    }
}

pub fn router(e: Endpoints) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/hooks/git", post(hook))
        .layer(DefaultBodyLimit::max(1024 * 1024))
        .with_state(e)
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
    if let Some(file) = &e.secret {
        let secret = match crate::source::read_secret(file) {
            Ok(s) if !s.is_empty() => s,
            Ok(_) | Err(_) => {
                tracing::warn!(file = %file.display(), "webhook refused: the webhook secret is unavailable");
                return (
                    StatusCode::UNAUTHORIZED,
                    "refused: the agent has no webhook secret\n".to_owned(),
                );
            }
        };
        if let Err(why) = webhook::verify(e.forge, secret.as_bytes(), &pairs, &body) {
            tracing::warn!(%why, "webhook refused");
            return (StatusCode::UNAUTHORIZED, format!("refused: {why}\n"));
        }
    }
    match webhook::classify(&pairs, &body, &e.branch) {
        Hook::Ping => (StatusCode::OK, "pong\n".to_owned()),
        Hook::Push => {
            tracing::info!("webhook: push to the tracked branch");
            e.wake.notify_one();
            (StatusCode::ACCEPTED, "fetching\n".to_owned())
        }
        Hook::Other(r) => (
            StatusCode::ACCEPTED,
            format!("ignored: `{r}` is not the tracked branch `{}`\n", e.branch),
        ),
    }
}

/// Serve on `addr` until `shutdown` turns true. Returns the bound address through `bound`.
pub async fn serve(
    addr: SocketAddr,
    e: Endpoints,
    mut shutdown: watch::Receiver<bool>,
    bound: tokio::sync::oneshot::Sender<SocketAddr>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let _ = bound.send(listener.local_addr()?);
    axum::serve(listener, router(e))
        .with_graceful_shutdown(async move {
            while !*shutdown.borrow_and_update() {
                if shutdown.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        })
        .await
}
