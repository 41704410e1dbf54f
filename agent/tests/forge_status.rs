//! Commit statuses against a local forge stand-in: each forge's documented API (method,
//! path, auth header, JSON body, state names, description limits), retries of 5xx answers,
//! no retry of a refusal, no duplicate posts, a newer status superseding one being retried;
//! and the HTTP endpoints: webhooks with each forge's signature, `/metrics`, `/healthz`,
//! `/readyz`.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::forge::Forge;
use plinth_agent::gitops::Probe;
use plinth_agent::metrics::Metrics;
use plinth_agent::server::{self, Endpoints};
use plinth_agent::status::{
    CommitStatus, GitHub, GitLab, Gitea, Poster, Retry, State, StatusSink, Token,
};
use plinth_agent::webhook::{self, Forge as HookForge};
use serde_json::json;
use tokio::sync::Notify;

const SHA: &str = "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d";

fn token() -> (tempfile::TempDir, Token) {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("token");
    std::fs::write(&p, "t0ken\n").unwrap();
    (dir, Token(Some(p)))
}

fn status(state: State, description: &str) -> CommitStatus {
    CommitStatus {
        sha: SHA.into(),
        state,
        context: "plinth/prod-a".into(),
        description: description.into(),
        target_url: Some("https://plinth.acme.example/prod-a/1a2b3c4".into()),
    }
}

fn fast() -> Retry {
    Retry {
        attempts: 4,
        backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(100),
    }
}

async fn post_all(sink: Arc<dyn StatusSink>, statuses: Vec<CommitStatus>) -> Arc<Metrics> {
    let metrics = Arc::new(Metrics::new("prod-a"));
    let p = Poster::spawn(sink, fast(), Arc::clone(&metrics));
    for s in statuses {
        p.post(s);
        // Let each be posted before the next (no coalescing in these tests).
        assert!(p.flush(Duration::from_secs(10)).await);
    }
    metrics
}

#[tokio::test]
async fn github_statuses_follow_the_api() {
    let forge = Forge::start();
    let (_d, t) = token();
    let sink = Arc::new(GitHub::new(&forge.url(), "acme/platform", t));
    let long = format!("drift in 1 object ({})", "x".repeat(200));
    post_all(
        sink,
        vec![
            status(State::Pending, "applying 1a2b3c4 (14 objects)"),
            status(State::Success, "applied 14 objects, healthy"),
            status(State::Failure, &long),
        ],
    )
    .await;
    let got = forge.received();
    assert_eq!(got.len(), 3);
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, format!("/repos/acme/platform/statuses/{SHA}"));
        assert_eq!(r.header("authorization"), Some("Bearer t0ken"));
        assert_eq!(r.header("accept"), Some("application/vnd.github+json"));
        assert_eq!(r.header("x-github-api-version"), Some("2022-11-28"));
        assert!(r.header("user-agent").unwrap().starts_with("plinth-agent/"));
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.body["context"], "plinth/prod-a");
        assert_eq!(
            r.body["target_url"],
            "https://plinth.acme.example/prod-a/1a2b3c4"
        );
    }
    assert_eq!(
        got[0].body,
        json!({"state": "pending", "context": "plinth/prod-a",
               "description": "applying 1a2b3c4 (14 objects)",
               "target_url": "https://plinth.acme.example/prod-a/1a2b3c4"})
    );
    assert_eq!(got[1].body["state"], "success");
    assert_eq!(got[2].body["state"], "failure");
    let d = got[2].body["description"].as_str().unwrap();
    assert_eq!(d.chars().count(), 140, "GitHub's limit");
    assert!(d.ends_with('…'));
}

#[tokio::test]
async fn gitlab_statuses_follow_the_api() {
    let forge = Forge::start();
    let (_d, t) = token();
    let sink = Arc::new(GitLab::new(&forge.url(), "acme/platform", t));
    let long = "y".repeat(400);
    post_all(
        sink,
        vec![
            status(State::Pending, "applying"),
            status(State::Success, "applied"),
            status(State::Failure, &long),
            status(State::Error, "refused: not a descendant"),
        ],
    )
    .await;
    let got = forge.received();
    assert_eq!(got.len(), 4);
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.path,
            format!("/api/v4/projects/acme%2Fplatform/statuses/{SHA}")
        );
        assert_eq!(r.header("private-token"), Some("t0ken"));
        assert_eq!(r.header("authorization"), None);
        assert_eq!(r.body["name"], "plinth/prod-a");
        assert!(r.body.get("context").is_none());
    }
    let states: Vec<&str> = got
        .iter()
        .map(|r| r.body["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["running", "success", "failed", "failed"]);
    assert_eq!(
        got[2].body["description"].as_str().unwrap().chars().count(),
        255
    );
}

#[tokio::test]
async fn gitea_statuses_follow_the_api() {
    let forge = Forge::start();
    let (_d, t) = token();
    let sink = Arc::new(Gitea::new(
        &format!("{}/", forge.url()),
        "acme/platform.git",
        t,
    ));
    post_all(
        sink,
        vec![
            status(State::Pending, "applying"),
            status(State::Error, "refused"),
        ],
    )
    .await;
    let got = forge.received();
    assert_eq!(got.len(), 2);
    for r in &got {
        assert_eq!(r.method, "POST");
        assert_eq!(
            r.path,
            format!("/api/v1/repos/acme/platform/statuses/{SHA}")
        );
        assert_eq!(r.header("authorization"), Some("token t0ken"));
        assert_eq!(r.body["context"], "plinth/prod-a");
    }
    assert_eq!(got[0].body["state"], "pending");
    assert_eq!(got[1].body["state"], "error");
}

#[tokio::test]
async fn errors_are_retried_and_duplicates_never_posted() {
    let forge = Forge::start();
    let (_d, t) = token();
    let sink = Arc::new(GitHub::new(&forge.url(), "acme/platform", t));
    forge.script(&[500, 503]);
    let metrics = Arc::new(Metrics::new("prod-a"));
    let p = Poster::spawn(sink, fast(), Arc::clone(&metrics));
    p.post(status(State::Success, "applied 3 objects, healthy"));
    assert!(p.flush(Duration::from_secs(10)).await);
    let got = forge.received();
    let codes: Vec<u16> = got.iter().map(|r| r.answered).collect();
    assert_eq!(codes, [500, 503, 201], "retried until it went through");
    assert!(got.iter().all(|r| r.body == got[0].body));

    // The same status again (the next interval found nothing new): not posted.
    p.post(status(State::Success, "applied 3 objects, healthy"));
    p.post(status(State::Success, "applied 3 objects, healthy"));
    assert!(p.flush(Duration::from_secs(10)).await);
    assert_eq!(forge.received().len(), 3);

    // A refusal (422) is not retried; the poster goes on with the next status.
    forge.script(&[422]);
    p.post(status(State::Failure, "drift in 1 object"));
    assert!(p.flush(Duration::from_secs(10)).await);
    p.post(status(State::Success, "in sync: 3 objects healthy"));
    assert!(p.flush(Duration::from_secs(10)).await);
    let codes: Vec<u16> = forge.received().iter().map(|r| r.answered).collect();
    assert_eq!(codes, [500, 503, 201, 422, 201]);
    let text = metrics.render();
    assert!(
        text.contains("plinth_agent_status_posts_total{cluster=\"prod-a\",state=\"success\",result=\"retry\"} 2"),
        "{text}"
    );
    assert!(
        text.contains("state=\"failure\",result=\"failed\"} 1"),
        "{text}"
    );
}

#[tokio::test]
async fn a_newer_status_supersedes_one_being_retried() {
    let forge = Forge::start();
    let (_d, t) = token();
    let sink = Arc::new(GitHub::new(&forge.url(), "acme/platform", t));
    forge.script(&[500]);
    let retry = Retry {
        attempts: 6,
        backoff: Duration::from_millis(300),
        max_backoff: Duration::from_millis(300),
    };
    let p = Poster::spawn(sink, retry, Arc::new(Metrics::new("prod-a")));
    p.post(status(State::Pending, "applying"));
    while forge.received().is_empty() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    p.post(status(State::Success, "applied"));
    assert!(p.flush(Duration::from_secs(10)).await);
    let states: Vec<String> = forge
        .received()
        .iter()
        .map(|r| r.body["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        states,
        ["pending", "success"],
        "the stale pending is not retried"
    );
}

#[tokio::test]
async fn posting_never_waits_for_the_forge() {
    // A forge that does not answer at all (nothing listens): posting returns at once.
    let port = common::git::free_port();
    let (_d, t) = token();
    let sink = Arc::new(GitHub::new(&format!("http://127.0.0.1:{port}"), "a/b", t));
    let p = Poster::spawn(sink, fast(), Arc::new(Metrics::new("x")));
    let t0 = std::time::Instant::now();
    for i in 0..100 {
        p.post(status(State::Pending, &format!("applying {i}")));
    }
    assert!(t0.elapsed() < Duration::from_millis(100));
}

struct Endpoint {
    url: String,
    wake: Arc<Notify>,
    probe: Arc<Probe>,
    stop: tokio::sync::watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn endpoints(forge: HookForge, secret: Option<&str>) -> Endpoint {
    endpoints_with(forge, secret, false).await
}

async fn endpoints_with(forge: HookForge, secret: Option<&str>, allow_unsigned: bool) -> Endpoint {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("webhook-secret");
    if let Some(s) = secret {
        std::fs::write(&file, format!("{s}\n")).unwrap();
    }
    let file = secret.map(|_| file);
    let wake = Arc::new(Notify::new());
    let probe = Arc::new(Probe::new(Duration::from_secs(60)));
    let metrics = Arc::new(Metrics::new("prod-a"));
    metrics.applied_revision(SHA, "abc123", 1.0);
    let e = Endpoints {
        metrics,
        probe: Arc::clone(&probe),
        wake: Arc::clone(&wake),
        forge,
        secret: file,
        allow_unsigned,
        deliveries: Arc::new(webhook::Deliveries::default()),
        branch: "main".into(),
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    let (tx, bound) = tokio::sync::oneshot::channel();
    tokio::spawn(server::serve(
        "127.0.0.1:0".parse().unwrap(),
        e,
        server::Limits::default(),
        rx,
        tx,
    ));
    let addr = bound.await.unwrap();
    Endpoint {
        url: format!("http://{addr}"),
        wake,
        probe,
        stop,
        _dir: dir,
    }
}

async fn woken(n: &Notify) -> bool {
    tokio::time::timeout(Duration::from_millis(500), n.notified())
        .await
        .is_ok()
}

#[tokio::test]
async fn webhooks_are_verified_per_forge() {
    let c = reqwest::Client::new();
    let body = r#"{"ref":"refs/heads/main","after":"1a2b3c4"}"#;
    let sig = webhook::sign(b"hooks3cret", body.as_bytes());

    let gh = endpoints(HookForge::GitHub, Some("hooks3cret")).await;
    let hook = format!("{}/hooks/git", gh.url);
    let r = c
        .post(&hook)
        .header("X-Hub-Signature-256", format!("sha256={sig}"))
        .header("X-GitHub-Event", "push")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(woken(&gh.wake).await, "a push wakes the loop");
    let r = c
        .post(&hook)
        .header("X-Hub-Signature-256", format!("sha256={sig}"))
        .body(body.replace("main", "evil"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the body does not match the signature");
    let r = c.post(&hook).body(body).send().await.unwrap();
    assert_eq!(r.status(), 401, "unsigned");
    assert!(!woken(&gh.wake).await);
    let other = r#"{"ref":"refs/heads/dev"}"#;
    let r = c
        .post(&hook)
        .header(
            "X-Hub-Signature-256",
            format!("sha256={}", webhook::sign(b"hooks3cret", other.as_bytes())),
        )
        .body(other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(r.text().await.unwrap().contains("ignored"));
    assert!(
        !woken(&gh.wake).await,
        "another branch does not wake the loop"
    );
    let r = c
        .post(&hook)
        .header(
            "X-Hub-Signature-256",
            format!("sha256={}", webhook::sign(b"hooks3cret", b"{}")),
        )
        .header("X-GitHub-Event", "ping")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let gl = endpoints(HookForge::GitLab, Some("hooks3cret")).await;
    let r = c
        .post(format!("{}/hooks/git", gl.url))
        .header("X-Gitlab-Token", "hooks3cret")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(woken(&gl.wake).await);
    let r = c
        .post(format!("{}/hooks/git", gl.url))
        .header("X-Gitlab-Token", "guess")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    let gt = endpoints(HookForge::Gitea, Some("hooks3cret")).await;
    let r = c
        .post(format!("{}/hooks/git", gt.url))
        .header("X-Gitea-Signature", &sig)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(woken(&gt.wake).await);

    // A configured secret whose file is gone: every hook refused.
    let gone = endpoints(HookForge::GitHub, Some("hooks3cret")).await;
    std::fs::remove_file(gone._dir.path().join("webhook-secret")).unwrap();
    let r = c
        .post(format!("{}/hooks/git", gone.url))
        .header("X-Hub-Signature-256", format!("sha256={sig}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(!woken(&gone.wake).await);

    // Without a secret, unsigned hooks are refused...
    let closed = endpoints(HookForge::None, None).await;
    let r = c
        .post(format!("{}/hooks/git", closed.url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(
        r.text()
            .await
            .unwrap()
            .contains("`--allow-unsigned-webhooks`")
    );
    assert!(!woken(&closed.wake).await);
    // ... unless allowed: then a hook only triggers a fetch.
    let open = endpoints_with(HookForge::None, None, true).await;
    let r = c
        .post(format!("{}/hooks/git", open.url))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(woken(&open.wake).await);
    for e in [gh, gl, gt, gone, closed, open] {
        let _ = e.stop.send(true);
    }
}

#[tokio::test]
async fn metrics_and_probes() {
    let c = reqwest::Client::new();
    let e = endpoints(HookForge::None, None).await;
    let r = c.get(format!("{}/readyz", e.url)).send().await.unwrap();
    assert_eq!(r.status(), 503, "not ready before the first sync");
    e.probe.set_ready();
    let r = c.get(format!("{}/readyz", e.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(format!("{}/healthz", e.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let r = c.get(format!("{}/metrics", e.url)).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(text.contains(&format!(
        "plinth_agent_last_applied_revision{{cluster=\"prod-a\",commit=\"{SHA}\",revision=\"abc123\"}} 1"
    )));
    assert!(text.contains("# TYPE plinth_agent_sync_duration_seconds histogram"));
    let stale = Probe::new(Duration::ZERO);
    std::thread::sleep(Duration::from_millis(5));
    assert!(!stale.is_alive());
    let _ = e.stop.send(true);
}
