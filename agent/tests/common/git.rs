//! Git fixtures: repositories built with the `git` CLI, a bare remote, the real `git daemon`
//! and `git http-backend` (behind a small CGI server) on 127.0.0.1. Every process started
//! here is killed when its handle is dropped.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Method, Response, StatusCode, Uri};

/// `git` with no global or system configuration and a fixed identity.
pub fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    c.current_dir(dir)
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE");
    c
}

/// Run git; panic with its output when it fails.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = git_cmd(dir).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A working repository whose `origin` is a bare repository, both in a temp dir.
pub struct Repo {
    dir: tempfile::TempDir,
    /// The working tree.
    pub work: PathBuf,
    /// The bare remote (`origin`).
    pub bare: PathBuf,
}

impl Repo {
    pub fn new() -> Repo {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let bare = dir.path().join("remote/platform.git");
        std::fs::create_dir_all(&work).unwrap();
        std::fs::create_dir_all(&bare).unwrap();
        git(&bare, &["init", "--bare", "-q", "-b", "main"]);
        git(&work, &["init", "-q", "-b", "main"]);
        for (k, v) in [
            ("user.name", "Dana Scully"),
            ("user.email", "dana@acme.example"),
            ("commit.gpgsign", "false"),
        ] {
            git(&work, &["config", k, v]);
        }
        git(&work, &["remote", "add", "origin", bare.to_str().unwrap()]);
        Repo { dir, work, bare }
    }

    /// The directory holding the bare remote (a `--base-path` for daemons).
    pub fn remote_root(&self) -> PathBuf {
        self.dir.path().join("remote")
    }

    /// `file://…` of the bare remote.
    pub fn file_url(&self) -> String {
        format!("file://{}", self.bare.display())
    }

    pub fn write(&self, rel: &str, text: &str) {
        let p = self.work.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    pub fn read(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.work.join(rel)).ok()
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.work.join(rel)).unwrap();
    }

    pub fn rename(&self, from: &str, to: &str) {
        let t = self.work.join(to);
        std::fs::create_dir_all(t.parent().unwrap()).unwrap();
        std::fs::rename(self.work.join(from), t).unwrap();
    }

    /// Commit everything as the configured author; returns the commit id.
    pub fn commit(&self, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        git(
            &self.work,
            &["commit", "-q", "--allow-empty", "-m", message],
        );
        self.head()
    }

    /// Commit as someone else.
    pub fn commit_as(&self, who: &str, email: &str, message: &str) -> String {
        git(&self.work, &["add", "-A"]);
        let out = git_cmd(&self.work)
            .args(["commit", "-q", "--allow-empty", "-m", message])
            .env("GIT_AUTHOR_NAME", who)
            .env("GIT_AUTHOR_EMAIL", email)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        self.head()
    }

    pub fn head(&self) -> String {
        git(&self.work, &["rev-parse", "HEAD"])
    }

    pub fn push(&self) {
        git(
            &self.work,
            &["push", "-q", "origin", "HEAD:refs/heads/main"],
        );
    }

    pub fn force_push(&self) {
        git(
            &self.work,
            &["push", "-q", "-f", "origin", "HEAD:refs/heads/main"],
        );
    }

    pub fn git(&self, args: &[&str]) -> String {
        git(&self.work, args)
    }

    /// Commit and push; returns the commit id.
    pub fn publish(&self, message: &str) -> String {
        let id = self.commit(message);
        self.push();
        id
    }
}

/// A free port on 127.0.0.1 (bound then released).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the daemon exited: {status}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("nothing listens on port {port}");
}

/// The real `git daemon`, serving a directory on 127.0.0.1; killed on drop.
pub struct GitDaemon {
    child: Child,
    pub port: u16,
}

impl GitDaemon {
    pub fn start(base: &Path) -> GitDaemon {
        for _ in 0..5 {
            let port = free_port();
            // `git-daemon` itself, not `git daemon`: killing the `git` wrapper would leave
            // the daemon running.
            let exec_path = git(base, &["--exec-path"]);
            let mut child = Command::new(Path::new(&exec_path).join("git-daemon"))
                .current_dir(base)
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .args([
                    "--reuseaddr",
                    "--export-all",
                    "--listen=127.0.0.1",
                    &format!("--port={port}"),
                    &format!("--base-path={}", base.display()),
                    "--max-connections=8",
                    "--timeout=30",
                    "--init-timeout=10",
                ])
                .arg(base)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(50));
            if matches!(child.try_wait(), Ok(Some(_))) {
                continue; // the port was taken in between: try another
            }
            wait_for_port(port, &mut child);
            return GitDaemon { child, port };
        }
        panic!("cannot start git daemon");
    }

    /// `git://127.0.0.1:PORT/<rel>`.
    pub fn url(&self, rel: &str) -> String {
        format!("git://127.0.0.1:{}/{rel}", self.port)
    }
}

impl Drop for GitDaemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (for Basic auth).
pub fn base64(input: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `git http-backend` behind a small HTTP server on 127.0.0.1 (CGI: one process per
/// request); optionally requiring Basic auth. Stops on drop.
pub struct GitHttp {
    pub addr: SocketAddr,
    /// `Authorization` headers seen, in order.
    pub auth_seen: Arc<Mutex<Vec<Option<String>>>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Clone)]
struct HttpState {
    root: PathBuf,
    /// `user:password` required, if any.
    credentials: Option<String>,
    auth_seen: Arc<Mutex<Vec<Option<String>>>>,
}

async fn cgi(
    axum::extract::State(st): axum::extract::State<HttpState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response<Body> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    st.auth_seen.lock().unwrap().push(auth.clone());
    if let Some(c) = &st.credentials
        && auth.as_deref() != Some(&format!("Basic {}", base64(c.as_bytes())))
    {
        return Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("WWW-Authenticate", "Basic realm=\"git\"")
            .body(Body::from("authentication required\n"))
            .unwrap();
    }
    let root = st.root.clone();
    let out = tokio::task::spawn_blocking(move || {
        let mut cmd = git_cmd(&root);
        cmd.arg("http-backend")
            .env("GIT_PROJECT_ROOT", &root)
            .env("GIT_HTTP_EXPORT_ALL", "1")
            .env("REQUEST_METHOD", method.as_str())
            .env("PATH_INFO", uri.path())
            .env("QUERY_STRING", uri.query().unwrap_or(""))
            .env("REMOTE_ADDR", "127.0.0.1")
            .env("CONTENT_LENGTH", body.len().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        for (h, env) in [
            ("content-type", "CONTENT_TYPE"),
            ("git-protocol", "GIT_PROTOCOL"),
            ("content-encoding", "HTTP_CONTENT_ENCODING"),
        ] {
            if let Some(v) = headers.get(h).and_then(|v| v.to_str().ok()) {
                cmd.env(env, v);
            }
        }
        let mut child = cmd.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(&body);
        });
        let mut out = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
        let _ = writer.join();
        let _ = child.wait();
        out
    })
    .await
    .unwrap();
    // CGI: headers, a blank line, the body.
    let split = out
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| out.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((end, sep)) = split else {
        return Response::builder()
            .status(StatusCode::BAD_GATEWAY)
            .body(Body::from("bad CGI output"))
            .unwrap();
    };
    let head = String::from_utf8_lossy(&out[..end]).into_owned();
    let mut resp = Response::builder();
    for line in head.lines() {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        if k.eq_ignore_ascii_case("status") {
            let code: u16 = v.trim().split(' ').next().unwrap().parse().unwrap();
            resp = resp.status(code);
        } else {
            resp = resp.header(k.trim(), v.trim());
        }
    }
    resp.body(Body::from(out[end + sep..].to_vec())).unwrap()
}

impl GitHttp {
    /// Serve the repositories under `root` at `http://ADDR/<rel>`.
    pub fn start(root: &Path, credentials: Option<&str>) -> GitHttp {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let auth_seen = Arc::new(Mutex::new(Vec::new()));
        let state = HttpState {
            root: root.to_path_buf(),
            credentials: credentials.map(str::to_owned),
            auth_seen: Arc::clone(&auth_seen),
        };
        let (tx, thread) = super::serve(
            listener,
            axum::Router::new().fallback(cgi).with_state(state),
        );
        GitHttp {
            addr,
            auth_seen,
            stop: Some(tx),
            thread: Some(thread),
        }
    }

    pub fn url(&self, rel: &str) -> String {
        format!("http://{}/{rel}", self.addr)
    }
}

impl Drop for GitHttp {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
