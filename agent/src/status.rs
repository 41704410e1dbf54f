//! Commit statuses: what the agent tells the forge about each commit it handles, as context
//! `plinth/<cluster>` — `pending` while applying, then `success` (applied and healthy),
//! `failure` (the commit does not build, the apply failed or drift was found), or `error`
//! (refused: history rewritten, signature not trusted; or the agent could not do its job).
//!
//! [`StatusSink`] is one forge's API: [`GitHub`] (`POST /repos/{owner}/{repo}/statuses/{sha}`,
//! `Authorization: Bearer`), [`GitLab`] (`POST /api/v4/projects/{id}/statuses/{sha}`,
//! `PRIVATE-TOKEN`; states `pending`, `running`, `success`, `failed`, `canceled`), [`Gitea`]
//! (`POST /api/v1/repos/{owner}/{repo}/statuses/{sha}`, `Authorization: token …`), and
//! [`LogSink`] for clusters without a forge. Descriptions are cut to each forge's limit
//! (GitHub 140 characters, GitLab and Gitea 255).
//!
//! [`Poster`] runs a sink on a task of its own, so posting never blocks applying: statuses
//! are queued, a newer status for the same commit replaces a queued older one, a status equal
//! to the last one posted for that commit is not posted again, and failures that may pass
//! (no answer, 429, 5xx) are retried with capped exponential backoff. A status the forge
//! refuses for good (4xx) is logged and dropped.

use std::collections::VecDeque;
use std::future::Future;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// A commit status state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum State {
    Pending,
    Success,
    Failure,
    Error,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Success => "success",
            State::Failure => "failure",
            State::Error => "error",
        }
    }
}

/// One status for one commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CommitStatus {
    pub sha: String,
    pub state: State,
    /// `plinth/<cluster>`.
    pub context: String,
    pub description: String,
    pub target_url: Option<String>,
}

/// Why a post failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostError {
    pub message: String,
    /// Trying again may help (no answer, 429, 5xx).
    pub transient: bool,
}

impl std::fmt::Display for PostError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub type PostFuture<'a> = Pin<Box<dyn Future<Output = Result<(), PostError>> + Send + 'a>>;

/// One forge's commit status API.
pub trait StatusSink: Send + Sync {
    /// `github`, `gitlab`, `gitea`, `log`.
    fn name(&self) -> &'static str;
    /// Longest description the forge takes, in characters.
    fn description_limit(&self) -> usize;
    fn post<'a>(&'a self, status: &'a CommitStatus) -> PostFuture<'a>;
}

/// Cut `s` to `limit` characters, ending in `…` when cut.
pub fn truncate(s: &str, limit: usize) -> String {
    if s.chars().count() <= limit {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(limit.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// A token read from a file at each post, so a rotated secret takes effect at once.
#[derive(Debug, Clone)]
pub struct Token(pub Option<PathBuf>);

impl Token {
    fn read(&self) -> Result<String, PostError> {
        match &self.0 {
            Some(p) => crate::source::read_secret(p).map_err(|e| PostError {
                message: e.to_string(),
                transient: true,
            }),
            None => Err(PostError {
                message: "no token: pass `--token-file`".into(),
                transient: false,
            }),
        }
    }
}

/// The HTTP side the forges share.
#[derive(Debug, Clone)]
struct Http {
    client: reqwest::Client,
    base: String,
    token: Token,
}

impl Http {
    fn new(base: &str, token: Token) -> Http {
        // Redirects are followed within the forge's own origin only: a redirect elsewhere is
        // answered as it is (and fails the post), so no token header ever leaves the origin,
        // whatever its name (`Authorization`, `PRIVATE-TOKEN`).
        let home = crate::source::Origin::of(base);
        let policy = reqwest::redirect::Policy::custom(move |attempt| {
            let next = crate::source::Origin::of(attempt.url().as_str());
            if attempt.previous().len() > 5 || home.is_none() || next != home {
                attempt.stop()
            } else {
                attempt.follow()
            }
        });
        let client = reqwest::Client::builder()
            .redirect(policy)
            .timeout(Duration::from_secs(15))
            .user_agent(concat!("plinth-agent/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Http {
            client,
            base: base.trim_end_matches('/').to_owned(),
            token,
        }
    }

    async fn send(&self, req: reqwest::RequestBuilder, token: &str) -> Result<(), PostError> {
        let mut secrets = crate::source::url_secrets(&self.base);
        secrets.push(token.to_owned());
        let scrub = |m: &str| crate::source::scrub(m, &secrets);
        let resp = req.send().await.map_err(|e| PostError {
            message: scrub(&crate::error::chain(&e)),
            transient: true,
        })?;
        let code = resp.status();
        if code.is_success() {
            return Ok(());
        }
        if code.is_redirection() {
            let to = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            return Err(PostError {
                message: scrub(&format!(
                    "{code}: the forge redirects to `{}`, outside `{}`: not followed (the token is only sent to the configured forge; fix `--forge-url`)",
                    crate::source::redact_url(to),
                    crate::source::redact_url(&self.base)
                )),
                transient: false,
            });
        }
        let body = resp.text().await.unwrap_or_default();
        Err(PostError {
            message: scrub(&format!("{code}: {}", truncate(body.trim(), 300))),
            transient: code.is_server_error() || code.as_u16() == 429 || code.as_u16() == 408,
        })
    }
}

fn split_repo(repo: &str) -> (String, String) {
    match repo.split_once('/') {
        Some((o, n)) => (o.to_owned(), n.trim_end_matches(".git").to_owned()),
        None => (String::new(), repo.to_owned()),
    }
}

/// What tells apart the forges whose status API is GitHub's (`/repos/{owner}/{repo}/statuses/{sha}`,
/// body `state`, `context`, `description`, `target_url`): GitHub and Gitea.
pub trait Dialect: std::fmt::Debug + Clone + Send + Sync + 'static {
    /// The sink's name: `github`, `gitea`.
    const NAME: &'static str;
    /// Longest description the forge takes, in characters.
    const DESCRIPTION_LIMIT: usize;
    /// The API path between the base and `/repos/…`.
    const PREFIX: &'static str;
    /// The request with the forge's authentication and headers.
    fn authorise(req: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder;
}

/// GitHub (and GitHub Enterprise: base `https://HOST/api/v3`): `Authorization: Bearer`.
#[derive(Debug, Clone)]
pub struct GitHubApi;

impl Dialect for GitHubApi {
    const NAME: &'static str = "github";
    const DESCRIPTION_LIMIT: usize = 140;
    const PREFIX: &'static str = "";
    fn authorise(req: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder {
        req.bearer_auth(token)
            .header("Accept", "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
    }
}

/// Gitea and Forgejo (base `https://gitea.example`): `Authorization: token …`.
#[derive(Debug, Clone)]
pub struct GiteaApi;

impl Dialect for GiteaApi {
    const NAME: &'static str = "gitea";
    const DESCRIPTION_LIMIT: usize = 255;
    const PREFIX: &'static str = "/api/v1";
    fn authorise(req: reqwest::RequestBuilder, token: &str) -> reqwest::RequestBuilder {
        req.header("Authorization", format!("token {token}"))
    }
}

/// The status API of one repository on a forge of dialect `D`.
#[derive(Debug, Clone)]
pub struct RepoStatuses<D> {
    http: Http,
    owner: String,
    repo: String,
    dialect: PhantomData<D>,
}

/// GitHub's commit statuses.
pub type GitHub = RepoStatuses<GitHubApi>;
/// Gitea's (and Forgejo's) commit statuses.
pub type Gitea = RepoStatuses<GiteaApi>;

impl<D: Dialect> RepoStatuses<D> {
    /// `base` is the API root (`https://api.github.com`, `https://gitea.example`); `repo` is
    /// `owner/name`.
    pub fn new(base: &str, repo: &str, token: Token) -> RepoStatuses<D> {
        let (owner, repo) = split_repo(repo);
        RepoStatuses {
            http: Http::new(base, token),
            owner,
            repo,
            dialect: PhantomData,
        }
    }
}

impl<D: Dialect> StatusSink for RepoStatuses<D> {
    fn name(&self) -> &'static str {
        D::NAME
    }
    fn description_limit(&self) -> usize {
        D::DESCRIPTION_LIMIT
    }
    fn post<'a>(&'a self, s: &'a CommitStatus) -> PostFuture<'a> {
        Box::pin(async move {
            let token = self.http.token.read()?;
            let url = format!(
                "{}{}/repos/{}/{}/statuses/{}",
                self.http.base,
                D::PREFIX,
                self.owner,
                self.repo,
                s.sha
            );
            let mut body = json!({
                "state": s.state.as_str(),
                "context": s.context,
                "description": truncate(&s.description, D::DESCRIPTION_LIMIT),
            });
            if let Some(u) = &s.target_url {
                body["target_url"] = json!(u);
            }
            let req = D::authorise(self.http.client.post(url), &token).json(&body);
            self.http.send(req, &token).await
        })
    }
}

/// GitLab (base `https://gitlab.com` or a self-managed instance).
#[derive(Debug, Clone)]
pub struct GitLab {
    http: Http,
    /// The project id, or its `namespace/name` path (URL-encoded when sent).
    project: String,
}

impl GitLab {
    pub fn new(base: &str, project: &str, token: Token) -> GitLab {
        GitLab {
            http: Http::new(base, token),
            project: project.to_owned(),
        }
    }

    /// GitLab's state names.
    pub fn state(s: State) -> &'static str {
        match s {
            State::Pending => "running",
            State::Success => "success",
            State::Failure | State::Error => "failed",
        }
    }
}

/// Percent-encode everything but unreserved characters (a path segment).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl StatusSink for GitLab {
    fn name(&self) -> &'static str {
        "gitlab"
    }
    fn description_limit(&self) -> usize {
        255
    }
    fn post<'a>(&'a self, s: &'a CommitStatus) -> PostFuture<'a> {
        Box::pin(async move {
            let token = self.http.token.read()?;
            let url = format!(
                "{}/api/v4/projects/{}/statuses/{}",
                self.http.base,
                encode_segment(&self.project),
                s.sha
            );
            let mut body = json!({
                "state": GitLab::state(s.state),
                "name": s.context,
                "description": truncate(&s.description, 255),
            });
            if let Some(u) = &s.target_url {
                body["target_url"] = json!(u);
            }
            let req = self
                .http
                .client
                .post(url)
                .header("PRIVATE-TOKEN", &token)
                .json(&body);
            self.http.send(req, &token).await
        })
    }
}

/// No forge: statuses go to the log only.
#[derive(Debug, Clone, Default)]
pub struct LogSink;

impl StatusSink for LogSink {
    fn name(&self) -> &'static str {
        "log"
    }
    fn description_limit(&self) -> usize {
        1024
    }
    fn post<'a>(&'a self, _: &'a CommitStatus) -> PostFuture<'a> {
        // The poster logs every status it posts (`forge="log"`): nothing more to do.
        Box::pin(async { Ok(()) })
    }
}

/// How posts are retried.
#[derive(Debug, Clone, Copy)]
pub struct Retry {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// Wait before the first retry; doubled each time up to `max_backoff`.
    pub backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for Retry {
    fn default() -> Retry {
        Retry {
            attempts: 6,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        }
    }
}

enum Msg {
    Post(CommitStatus),
    Flush(oneshot::Sender<()>),
}

/// Posts statuses in the background; cheap to clone.
#[derive(Clone)]
pub struct Poster {
    tx: mpsc::UnboundedSender<Msg>,
    limit: usize,
}

impl std::fmt::Debug for Poster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Poster").finish_non_exhaustive()
    }
}

/// How many commits' last statuses are remembered for de-duplication.
const REMEMBERED: usize = 64;

impl Poster {
    /// Start posting through `sink` on a task of the current runtime.
    pub fn spawn(sink: Arc<dyn StatusSink>, retry: Retry, metrics: Arc<Metrics>) -> Poster {
        let (tx, rx) = mpsc::unbounded_channel();
        let limit = sink.description_limit();
        tokio::spawn(worker(sink, retry, metrics, rx));
        Poster { tx, limit }
    }

    /// Queue a status (its description cut to the forge's limit). Never waits.
    pub fn post(&self, mut status: CommitStatus) {
        status.description = truncate(&status.description, self.limit);
        let _ = self.tx.send(Msg::Post(status));
    }

    /// Wait until everything queued so far was posted or given up, at most `timeout`.
    pub async fn flush(&self, timeout: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_err() {
            return false;
        }
        tokio::time::timeout(timeout, rx)
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

async fn worker(
    sink: Arc<dyn StatusSink>,
    retry: Retry,
    metrics: Arc<Metrics>,
    mut rx: mpsc::UnboundedReceiver<Msg>,
) {
    // Last posted (sha, state, description), newest last.
    let mut posted: VecDeque<CommitStatus> = VecDeque::new();
    let mut queue: VecDeque<CommitStatus> = VecDeque::new();
    let mut flushes: Vec<oneshot::Sender<()>> = Vec::new();
    let enqueue = |queue: &mut VecDeque<CommitStatus>, s: CommitStatus| {
        // A newer status for a commit replaces one still waiting.
        queue.retain(|q| !(q.sha == s.sha && q.context == s.context));
        queue.push_back(s);
    };
    loop {
        if queue.is_empty() {
            for f in flushes.drain(..) {
                let _ = f.send(());
            }
            match rx.recv().await {
                Some(Msg::Post(s)) => enqueue(&mut queue, s),
                Some(Msg::Flush(f)) => flushes.push(f),
                None => return,
            }
        }
        while let Ok(m) = rx.try_recv() {
            match m {
                Msg::Post(s) => enqueue(&mut queue, s),
                Msg::Flush(f) => flushes.push(f),
            }
        }
        let Some(s) = queue.pop_front() else {
            continue;
        };
        let same = |p: &CommitStatus| p.sha == s.sha && p.context == s.context;
        if posted.iter().rev().find(|p| same(p)) == Some(&s) {
            tracing::debug!(sha = %s.sha, state = s.state.as_str(), "status already posted");
            continue;
        }
        let mut delay = retry.backoff;
        let mut attempt = 1;
        loop {
            match sink.post(&s).await {
                Ok(()) => {
                    metrics.status_posted(s.state.as_str(), "ok");
                    tracing::info!(
                        forge = sink.name(), sha = %s.sha, state = s.state.as_str(),
                        description = %s.description, "posted commit status"
                    );
                    posted.retain(|p| !same(p));
                    posted.push_back(s.clone());
                    while posted.len() > REMEMBERED {
                        posted.pop_front();
                    }
                    break;
                }
                Err(e) if e.transient && attempt < retry.attempts => {
                    metrics.status_posted(s.state.as_str(), "retry");
                    tracing::warn!(
                        forge = sink.name(), sha = %s.sha, error = %e, attempt,
                        "posting the commit status failed; retrying"
                    );
                    // Wait, but let a newer status for this commit take over.
                    let sleep = tokio::time::sleep(delay);
                    tokio::pin!(sleep);
                    let mut superseded = false;
                    loop {
                        tokio::select! {
                            () = &mut sleep => break,
                            m = rx.recv() => match m {
                                Some(Msg::Post(n)) => {
                                    superseded |= n.sha == s.sha && n.context == s.context;
                                    enqueue(&mut queue, n);
                                }
                                Some(Msg::Flush(f)) => flushes.push(f),
                                None => break,
                            },
                        }
                    }
                    if superseded {
                        break;
                    }
                    delay = (delay * 2).min(retry.max_backoff);
                    attempt += 1;
                }
                Err(e) => {
                    metrics.status_posted(s.state.as_str(), "failed");
                    tracing::error!(
                        forge = sink.name(), sha = %s.sha, error = %e,
                        "the forge refused the commit status; giving up on it"
                    );
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_fit_the_forge() {
        assert_eq!(truncate("short", 140), "short");
        let long = "x".repeat(200);
        let t = truncate(&long, 140);
        assert_eq!(t.chars().count(), 140);
        assert!(t.ends_with('…'));
        assert_eq!(encode_segment("acme/platform"), "acme%2Fplatform");
        assert_eq!(GitLab::state(State::Failure), "failed");
        assert_eq!(GitLab::state(State::Pending), "running");
    }
}
