//! The agent against a hostile network, with loopback fakes: a git remote that redirects to
//! another origin, forges that redirect (all three sinks), a mirror whose git configuration
//! was tampered with, half-open and oversized requests, replayed and flooded webhooks; and the
//! property over a whole run of the binary: no log line, metric or status carries the token.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{HeaderMap, Response, Uri};
use common::forge::Forge;
use common::git::{GitHttp, Repo, base64, free_port};
use common::*;
use kube_testserver::TestServer;
use plinth_agent::gitops::Probe;
use plinth_agent::metrics::Metrics;
use plinth_agent::server::{self, Endpoints, Limits};
use plinth_agent::source::{Auth, Mirror, Remote};
use plinth_agent::status::{
    CommitStatus, GitHub, GitLab, Gitea, PostError, State, StatusSink, Token,
};
use plinth_agent::webhook::{self, Forge as HookForge};
use tokio::sync::Notify;

/// A distinctive token: found anywhere, it leaked.
const TOKEN: &str = "plinthtok-7f3a9c1e5b2d8046";

/// Answers every request with a redirect to `to` + the request's path and query, recording
/// the headers it was sent.
struct Redirector {
    url: String,
    seen: Arc<Mutex<Vec<HeaderMap>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Redirector {
    /// `to`: `None` redirects to this server itself, from `/old/…` to `/new/…` (same origin);
    /// requests under `/new/` are answered `201`.
    fn start(to: Option<String>, code: u16) -> Redirector {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let url = format!("http://{addr}");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let st = Arc::clone(&seen);
        let own = url.clone();
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap| {
            let st = Arc::clone(&st);
            let to = to.clone();
            let own = own.clone();
            async move {
                st.lock().unwrap().push(headers);
                let pq = uri.path_and_query().map_or("/", |p| p.as_str()).to_owned();
                if to.is_none() && pq.starts_with("/new/") {
                    return Response::builder()
                        .status(201)
                        .body(Body::from("{}"))
                        .unwrap();
                }
                let location = match &to {
                    Some(t) => format!("{t}{pq}"),
                    None => format!("{own}{}", pq.replacen("/old/", "/new/", 1)),
                };
                Response::builder()
                    .status(code)
                    .header("Location", location)
                    .body(Body::empty())
                    .unwrap()
            }
        });
        let (tx, thread) = serve(listener, app);
        Redirector {
            url,
            seen,
            stop: Some(tx),
            thread: Some(thread),
        }
    }
}

impl Drop for Redirector {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn token_file(dir: &std::path::Path) -> std::path::PathBuf {
    let p = dir.join("token");
    std::fs::write(&p, format!("{TOKEN}\n")).unwrap();
    p
}

fn basic() -> String {
    format!("Basic {}", base64(format!("plinth:{TOKEN}").as_bytes()))
}

fn platform_repo() -> Repo {
    let repo = Repo::new();
    repo.write("platform/plinth.yaml", PLATFORM);
    let (p, t) = project("er-capacity", Some("32"));
    repo.write(&format!("platform/{p}"), &t);
    repo.publish("er-capacity");
    repo
}

#[test]
fn a_remote_that_redirects_elsewhere_never_gets_the_token() {
    let repo = platform_repo();
    let dir = tempfile::tempdir().unwrap();
    let secret = token_file(dir.path());
    // The real remote wants the token; the one configured redirects to it (another port:
    // another origin).
    let real = GitHttp::start(&repo.remote_root(), Some(&format!("plinth:{TOKEN}")));
    let hop = Redirector::start(Some(format!("http://{}", real.addr)), 302);
    let remote = |url: String| Remote {
        url,
        branch: "main".into(),
        auth: Auth {
            token_file: Some(secret.clone()),
            username: "plinth".into(),
            ..Auth::default()
        },
    };
    let mirror = Mirror::open(&dir.path().join("mirror")).unwrap();
    let err = mirror
        .fetch(
            &remote(format!("{}/platform.git", hop.url)),
            &AtomicBool::new(false),
        )
        .unwrap_err();
    assert!(
        !hop.seen.lock().unwrap().is_empty(),
        "the redirecting remote was asked"
    );
    let seen = real.auth_seen.lock().unwrap().clone();
    assert!(
        !seen.is_empty(),
        "the redirect was followed to the other origin"
    );
    assert!(
        seen.iter().all(|a| a.as_deref() != Some(basic().as_str())),
        "the token went to the other origin: {seen:?}"
    );
    assert!(!err.to_string().contains(TOKEN), "{err}");

    // The control: asked directly, the same server gets the token and serves the fetch.
    mirror
        .fetch(&remote(real.url("platform.git")), &AtomicBool::new(false))
        .unwrap();
    assert!(
        real.auth_seen
            .lock()
            .unwrap()
            .iter()
            .any(|a| a.as_deref() == Some(basic().as_str()))
    );
}

fn status() -> CommitStatus {
    CommitStatus {
        sha: "1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d".into(),
        state: State::Success,
        context: "plinth/prod".into(),
        description: "applied".into(),
        target_url: None,
    }
}

#[tokio::test]
async fn forges_that_redirect_elsewhere_never_get_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token = || Token(Some(token_file(dir.path())));
    let elsewhere = Forge::start();
    for code in [301, 302, 307, 308] {
        let hop = Redirector::start(Some(elsewhere.url()), code);
        let sinks: Vec<Arc<dyn StatusSink>> = vec![
            Arc::new(GitHub::new(&hop.url, "acme/platform", token())),
            Arc::new(GitLab::new(&hop.url, "acme/platform", token())),
            Arc::new(Gitea::new(&hop.url, "acme/platform", token())),
        ];
        for sink in sinks {
            let err: PostError = sink.post(&status()).await.unwrap_err();
            assert!(!err.transient, "{}: {err}", sink.name());
            assert!(
                err.message.contains("not followed"),
                "{}: {err}",
                sink.name()
            );
            assert!(!err.message.contains(TOKEN));
        }
        assert_eq!(hop.seen.lock().unwrap().len(), 3, "each sink asked once");
    }
    assert!(
        elsewhere.received().is_empty(),
        "nothing reached the other origin: {:?}",
        elsewhere.received()
    );

    // A redirect within the forge's own origin is followed, the token with it.
    let moved = Redirector::start(None, 308);
    let sink = GitLab::new(&format!("{}/old", moved.url), "acme/platform", token());
    sink.post(&status()).await.unwrap();
    let seen = moved.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert_eq!(
        seen[1].get("private-token").and_then(|v| v.to_str().ok()),
        Some(TOKEN)
    );
}

#[test]
fn a_mirror_with_hostile_git_config_is_not_trusted() {
    let repo = platform_repo();
    let dir = tempfile::tempdir().unwrap();
    let good = GitHttp::start(&repo.remote_root(), None);
    let evil = Forge::start();
    let marker = dir.path().join("pwned");
    let script = dir.path().join("hostile.sh");
    std::fs::write(
        &script,
        format!("#!/bin/sh\ntouch '{}'\nexit 1\n", marker.display()),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let mirror_dir = dir.path().join("mirror");
    let plant = || {
        let config = format!(
            "[core]\n\tbare = true\n\tsshCommand = {script}\n\
             [url \"{evil}/\"]\n\tinsteadOf = http://{good}/\n\
             [protocol]\n\tallow = always\n",
            script = script.display(),
            evil = evil.url(),
            good = good.addr,
        );
        std::fs::write(mirror_dir.join("config"), config).unwrap();
        std::fs::create_dir_all(mirror_dir.join("hooks")).unwrap();
        std::fs::write(mirror_dir.join("hooks/post-checkout"), "#!/bin/sh\n").unwrap();
    };
    let m = Mirror::open(&mirror_dir).unwrap();
    plant();
    // Opened again (a restart) and fetched, with the configuration planted in between.
    let m2 = Mirror::open(&mirror_dir).unwrap();
    assert!(!mirror_dir.join("hooks").exists(), "hooks are removed");
    plant();
    let remote = |url: String| Remote {
        url,
        branch: "main".into(),
        auth: Auth::default(),
    };
    m2.fetch(&remote(good.url("platform.git")), &AtomicBool::new(false))
        .unwrap();
    assert!(
        evil.received().is_empty(),
        "`insteadOf` from the mirror's config was honoured"
    );
    plant();
    let err = m
        .fetch(
            &remote(format!("ssh://127.0.0.1:{}/x.git", free_port())),
            &AtomicBool::new(false),
        )
        .unwrap_err();
    assert!(
        !marker.exists(),
        "`core.sshCommand` from the mirror's config ran ({err})"
    );
    let config = std::fs::read_to_string(mirror_dir.join("config")).unwrap();
    assert!(!config.contains("sshCommand"), "{config}");
}

async fn endpoint(
    limits: Limits,
    allow_unsigned: bool,
) -> (String, Arc<Notify>, tokio::sync::watch::Sender<bool>) {
    let wake = Arc::new(Notify::new());
    let e = Endpoints {
        metrics: Arc::new(Metrics::new("prod")),
        probe: Arc::new(Probe::new(Duration::from_secs(60))),
        wake: Arc::clone(&wake),
        forge: HookForge::None,
        secret: None,
        allow_unsigned,
        deliveries: Arc::new(webhook::Deliveries::default()),
        branch: "main".into(),
    };
    let (stop, rx) = tokio::sync::watch::channel(false);
    let (tx, bound) = tokio::sync::oneshot::channel();
    tokio::spawn(server::serve(
        "127.0.0.1:0".parse().unwrap(),
        e,
        limits,
        rx,
        tx,
    ));
    (bound.await.unwrap().to_string(), wake, stop)
}

/// Read what the server sends until it closes (or `within` passes: then `None`).
fn read_to_close(s: &mut TcpStream, within: Duration) -> Option<String> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    match s.read_to_end(&mut out) {
        Ok(_) => Some(String::from_utf8_lossy(&out).into_owned()),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
            Some(String::from_utf8_lossy(&out).into_owned())
        }
        Err(_) => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_many_and_oversized_clients_are_cut_off() {
    let limits = Limits {
        max_connections: 4,
        header_timeout: Duration::from_millis(400),
        request_timeout: Duration::from_secs(2),
        ..Limits::default()
    };
    let (addr, _wake, stop) = endpoint(limits, true).await;
    let addr2 = addr.clone();
    tokio::task::spawn_blocking(move || {
        let addr = addr2;
        // Clients that never finish their headers take every slot...
        let mut slow: Vec<TcpStream> = (0..4)
            .map(|_| {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.write_all(b"GET /healthz HTTP/1.1\r\nHost: agent\r\nX-Slow: ")
                    .unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        // ...so one more is told at once, and closed.
        let t0 = Instant::now();
        let mut extra = TcpStream::connect(&addr).unwrap();
        let answer = read_to_close(&mut extra, Duration::from_secs(2)).expect("closed");
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
        assert!(t0.elapsed() < Duration::from_secs(1));
        // The slow ones are dropped after the header timeout.
        for s in &mut slow {
            assert!(
                read_to_close(s, Duration::from_secs(3)).is_some(),
                "a half-open connection stayed open"
            );
        }
        // Headers larger than the buffer: refused, not buffered.
        let mut big = TcpStream::connect(&addr).unwrap();
        let header = format!(
            "GET /healthz HTTP/1.1\r\nHost: agent\r\nX-Big: {}\r\n\r\n",
            "a".repeat(64 * 1024)
        );
        let _ = big.write_all(header.as_bytes());
        let answer = read_to_close(&mut big, Duration::from_secs(3)).expect("closed");
        assert!(!answer.starts_with("HTTP/1.1 200"), "{answer:?}");
    })
    .await
    .unwrap();
    // The server is still there for everyone else.
    let c = reqwest::Client::new();
    let r = c
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A body over the limit.
    let r = c
        .post(format!("http://{addr}/hooks/git"))
        .body(vec![b' '; 2 * 1024 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    let _ = stop.send(true);
}

#[tokio::test]
async fn replayed_deliveries_are_ignored() {
    let (addr, wake, stop) = endpoint(Limits::default(), true).await;
    let c = reqwest::Client::new();
    let hook = |id: &str| {
        c.post(format!("http://{addr}/hooks/git"))
            .header("X-GitHub-Delivery", id)
            .body(r#"{"ref":"refs/heads/main"}"#)
            .send()
    };
    let woken = || tokio::time::timeout(Duration::from_millis(300), wake.notified());
    assert_eq!(hook("d-1").await.unwrap().status(), 202);
    assert!(woken().await.is_ok());
    for _ in 0..3 {
        let r = hook("d-1").await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("received before"));
    }
    assert!(woken().await.is_err(), "a replay woke the loop");
    assert_eq!(hook("d-2").await.unwrap().status(), 202);
    assert!(woken().await.is_ok());
    let _ = stop.send(true);
}

/// The agent process, its stderr read as it comes (a full pipe would block the agent);
/// killed if the test fails before it stops.
struct AgentProc(Option<Child>, Arc<Mutex<String>>);

impl AgentProc {
    fn spawn(mut cmd: Command) -> AgentProc {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let mut err = child.stderr.take().unwrap();
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        AgentProc(Some(child), log)
    }

    fn log(&self) -> String {
        self.1.lock().unwrap().clone()
    }

    /// Stop the agent and fail with its log.
    fn fail(&mut self, what: &str) -> ! {
        let mut c = self.0.take().unwrap();
        let _ = c.kill();
        let _ = c.wait();
        std::thread::sleep(Duration::from_millis(100));
        panic!("{what}\n{}", self.log());
    }
}

impl Drop for AgentProc {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_until(agent: &mut AgentProc, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        let exited = agent
            .0
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_some());
        if exited || Instant::now() > deadline {
            agent.fail(&format!("timed out waiting for {what}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A GET from a thread without a runtime.
fn get(url: &str) -> Option<String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    rt.block_on(async {
        reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?
            .text()
            .await
            .ok()
    })
}

/// `plinth_agent_fetch_duration_seconds_count`.
fn fetches(metrics: &str) -> u64 {
    metrics
        .lines()
        .find(|l| l.starts_with("plinth_agent_fetch_duration_seconds_count"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_flooded_agent_keeps_its_pace_and_its_token() {
    let s = TestServer::start_blocking().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    s.write_kubeconfig(&kc).unwrap();
    let repo = platform_repo();
    let secret = token_file(dir.path());
    let hook_secret = dir.path().join("webhook-secret");
    std::fs::write(&hook_secret, "hooks3cret\n").unwrap();
    let git = GitHttp::start(&repo.remote_root(), Some(&format!("{TOKEN}:{TOKEN}")));
    // The forge API redirects to another origin: statuses fail, and the token stays home.
    let elsewhere = Forge::start();
    let forge = Redirector::start(Some(elsewhere.url()), 307);
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_plinth-agent"));
    cmd.arg("run")
        .env_remove("KUBECONFIG")
        .env_remove("PLINTH_LOG")
        // The token in the URL, as a user name and as a password: never to be logged.
        .env(
            "PLINTH_REPO",
            format!("http://{TOKEN}:{TOKEN}@{}/platform.git", git.addr),
        )
        .env("PLINTH_PATH", "platform")
        .env("PLINTH_CLUSTER", "prod")
        .env("PLINTH_KUBECONFIG", &kc)
        .env("PLINTH_INTERVAL", "1h")
        .env("PLINTH_MIN_WAKE_INTERVAL", "1s")
        .env("PLINTH_LISTEN", format!("127.0.0.1:{port}"))
        .env("PLINTH_CACHE_DIR", dir.path().join("cache"))
        .env("PLINTH_FORGE", "github")
        .env("PLINTH_FORGE_URL", &forge.url)
        .env("PLINTH_FORGE_REPO", "acme/platform")
        .env("PLINTH_TOKEN_FILE", &secret)
        .env("PLINTH_WEBHOOK_SECRET_FILE", &hook_secret)
        .args(["--health-timeout", "5s", "-v"]);
    let mut agent = AgentProc::spawn(cmd);
    wait_until(&mut agent, "the first commit", || {
        live(&s, &key("v1", "Namespace", None, "er-capacity")).is_some()
    });
    let before = fetches(&get(&format!("{base}/metrics")).unwrap());
    assert_eq!(before, 1);

    // A push, then a flood of signed hooks, each a new delivery; and replays of one.
    let (p, t) = project("icu", Some("8"));
    repo.write(&format!("platform/{p}"), &t);
    repo.publish("icu");
    let body = r#"{"ref":"refs/heads/main"}"#;
    let sig = format!("sha256={}", webhook::sign(b"hooks3cret", body.as_bytes()));
    let t0 = Instant::now();
    let codes: Vec<Vec<u16>> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..4)
            .map(|w| {
                let (sig, url) = (sig.clone(), format!("{base}/hooks/git"));
                sc.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .unwrap();
                    rt.block_on(async {
                        let c = reqwest::Client::new();
                        let mut codes = Vec::new();
                        for i in 0..250 {
                            let id = if i % 50 == 0 {
                                "replayed".to_owned()
                            } else {
                                format!("d-{w}-{i}")
                            };
                            let r = c
                                .post(&url)
                                .header("X-Hub-Signature-256", &sig)
                                .header("X-GitHub-Delivery", id)
                                .body(body)
                                .send()
                                .await
                                .unwrap();
                            codes.push(r.status().as_u16());
                        }
                        codes
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let flood = t0.elapsed();
    let all: Vec<u16> = codes.concat();
    assert_eq!(all.iter().filter(|c| **c == 202).count(), 1000 - 20 + 1);
    assert_eq!(all.iter().filter(|c| **c == 200).count(), 19, "replays");
    wait_until(&mut agent, "the pushed commit", || {
        live(&s, &key("v1", "Namespace", None, "icu")).is_some()
    });
    std::thread::sleep(Duration::from_millis(1500));
    let metrics = get(&format!("{base}/metrics")).unwrap();
    let n = fetches(&metrics);
    // One fetch per second of flood at most (plus the one pending), not one per hook.
    let bound = 1 + flood.as_secs() + 3;
    assert!(
        (2..=bound).contains(&n),
        "{n} fetches for a flood of {flood:?}"
    );
    assert!(!metrics.contains(TOKEN), "{metrics}");
    assert!(
        metrics.contains("plinth_agent_webhooks_total{cluster=\"prod\",result=\"duplicate\"} 19"),
        "{metrics}"
    );
    // Unsigned: refused.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let code = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{base}/hooks/git"))
            .body(body)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(code, 401);

    let mut child = agent.0.take().unwrap();
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(200));
    let stderr = agent.log();
    assert!(stderr.contains("starting the loop"), "{stderr}");
    assert!(stderr.contains("not followed"), "{stderr}");
    assert!(
        !stderr.contains(TOKEN),
        "the token is in the log:\n{stderr}"
    );
    assert!(
        elsewhere.received().is_empty(),
        "a status went to another origin"
    );
    // The control: the remote did get the token (so it was in play all along).
    assert!(git.auth_seen.lock().unwrap().iter().any(|a| a.as_deref()
        == Some(format!("Basic {}", base64(format!("{TOKEN}:{TOKEN}").as_bytes())).as_str())));
}

#[test]
fn tokens_are_not_sent_over_plain_http_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = token_file(dir.path());
    let run = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_plinth-agent"))
            .args(["run", "--cluster", "prod", "--kubeconfig", "/nonexistent"])
            .args(extra)
            .env_remove("KUBECONFIG")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let token = secret.to_str().unwrap();
    let (code, err) = run(&[
        "--repo",
        "http://git.acme.example/a/b.git",
        "--token-file",
        token,
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains(
            "the remote `http://git.acme.example/a/b.git` would receive the token in clear text"
        ),
        "{err}"
    );
    let (code, err) = run(&[
        "--repo",
        &format!("http://x:{TOKEN}@git.acme.example/a/b.git"),
    ]);
    assert_eq!(code, Some(1));
    assert!(err.contains("clear text") && !err.contains(TOKEN), "{err}");
    let (code, err) = run(&[
        "--repo",
        "https://git.acme.example/a/b.git",
        "--forge",
        "gitlab",
        "--forge-url",
        "http://gitlab.acme.example",
        "--token-file",
        token,
    ]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("the forge API `http://gitlab.acme.example`"),
        "{err}"
    );
    // Allowed: past that check (and failing on the kubeconfig instead).
    let (code, err) = run(&[
        "--repo",
        "http://git.acme.example/a/b.git",
        "--token-file",
        token,
        "--allow-insecure-http",
    ]);
    assert_eq!(code, Some(1));
    assert!(!err.contains("would receive the token"), "{err}");
    // Without a token, plain http is fine; so is a loopback address with one.
    let (_, err) = run(&["--repo", "http://git.acme.example/a/b.git"]);
    assert!(!err.contains("would receive the token"), "{err}");
    let (_, err) = run(&[
        "--repo",
        "http://127.0.0.1:9/a/b.git",
        "--token-file",
        token,
    ]);
    assert!(!err.contains("would receive the token"), "{err}");
}
