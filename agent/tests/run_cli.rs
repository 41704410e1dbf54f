//! `plinth-agent run` and `plinth-agent history` as a user runs them: the binary configured
//! through environment variables, serving its endpoints, applying the branch, woken by a
//! webhook, logging JSON, stopping cleanly on SIGTERM; then the history it left in the
//! cluster.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Read as _;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::git::{Repo, free_port};
use common::*;
use kube_testserver::TestServer;

/// The agent process; killed if the test fails before it stops.
struct Agent(Option<Child>);

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(url: &str) -> Option<(u16, String)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new()
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let code = r.status().as_u16();
        Some((code, r.text().await.ok()?))
    })
}

fn post(url: &str, body: &str) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        reqwest::Client::new()
            .post(url)
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    })
}

#[test]
fn run_applies_the_branch_serves_endpoints_and_stops_on_sigterm() {
    let s = TestServer::start_blocking().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    s.write_kubeconfig(&kc).unwrap();
    let repo = Repo::new();
    repo.write("platform/plinth.yaml", PLATFORM);
    let (p, t) = project("er-capacity", Some("32"));
    repo.write(&format!("platform/{p}"), &t);
    let first = repo.publish("er-capacity");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();

    let child = Command::new(env!("CARGO_BIN_EXE_plinth-agent"))
        .arg("run")
        .env_remove("KUBECONFIG")
        .env_remove("PLINTH_LOG")
        .env("PLINTH_REPO", repo.file_url())
        .env("PLINTH_PATH", "platform")
        .env("PLINTH_CLUSTER", "prod")
        .env("PLINTH_KUBECONFIG", &kc)
        .env("PLINTH_INTERVAL", "1h")
        .env("PLINTH_LISTEN", format!("127.0.0.1:{port}"))
        // A relative cache path (repository discovery misread `../cache` before the mirror
        // made its path absolute).
        .current_dir(&work)
        .env("PLINTH_CACHE_DIR", "../cache")
        .env("PLINTH_PRUNE", "true")
        .env("PLINTH_LOG_FORMAT", "json")
        // No secret in this test: unsigned hooks must be allowed explicitly.
        .env("PLINTH_ALLOW_UNSIGNED_WEBHOOKS", "true")
        .env("PLINTH_MIN_WAKE_INTERVAL", "100ms")
        .args(["--health-timeout", "5s"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut agent = Agent(Some(child));

    wait_until("readiness", || {
        get(&format!("{base}/readyz")).is_some_and(|(c, _)| c == 200)
    });
    wait_until("the first commit", || {
        live(&s, &key("v1", "Namespace", None, "er-capacity")).is_some()
    });
    assert_eq!(get(&format!("{base}/healthz")).unwrap().0, 200);

    // A push and its webhook: applied long before the one-hour interval.
    let (p, t) = project("icu", Some("8"));
    repo.write(&format!("platform/{p}"), &t);
    let second = repo.publish("icu");
    assert_eq!(
        post(&format!("{base}/hooks/git"), r#"{"ref":"refs/heads/main"}"#),
        202
    );
    wait_until("the pushed commit", || {
        live(&s, &key("v1", "Namespace", None, "icu")).is_some()
    });
    wait_until("the metrics of the second commit", || {
        get(&format!("{base}/metrics")).is_some_and(|(_, m)| m.contains(&second))
    });
    let (_, metrics) = get(&format!("{base}/metrics")).unwrap();
    assert!(
        metrics.contains(&format!(
            "plinth_agent_last_applied_revision{{cluster=\"prod\",commit=\"{second}\""
        )),
        "{metrics}"
    );
    assert!(metrics.contains("plinth_agent_syncs_total{cluster=\"prod\",outcome=\"clean\"} 2"));

    // SIGTERM: a clean stop, exit code 0.
    let mut child = agent.0.take().unwrap();
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    // JSON logs, the audit among them.
    let audit: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "plinth_agent::audit")
        .collect();
    assert!(
        audit.iter().any(|v| v["action"] == "apply"
            && v["commit"] == first.as_str()
            && v["outcome"] == "success"),
        "{stderr}"
    );
    assert!(
        stderr.contains("signal received: shutting down"),
        "{stderr}"
    );
    assert!(
        stderr.contains("`--allow-unsigned-webhooks`: anyone who reaches the port"),
        "a warning at start-up: {stderr}"
    );

    // The history the agent left in the cluster.
    let out = Command::new(env!("CARGO_BIN_EXE_plinth-agent"))
        .args(["history", "--kubeconfig", kc.to_str().unwrap()])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with(' ')).collect();
    assert!(
        lines[0].contains(&second[..7]) && lines[0].contains("— icu"),
        "{text}"
    );
    assert!(
        lines[1].contains(&first[..7]) && lines[1].contains("apply   success"),
        "{text}"
    );
    assert!(text.contains("    + Namespace icu"), "{text}");
    let out = Command::new(env!("CARGO_BIN_EXE_plinth-agent"))
        .args([
            "history",
            "--kubeconfig",
            kc.to_str().unwrap(),
            "--format",
            "json",
            "--limit",
            "1",
        ])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["commit"], second.as_str());
    assert_eq!(v["entries"].as_array().unwrap().len(), 1);
    assert_eq!(v["entries"][0]["subject"], "icu");
}

#[test]
fn run_refuses_conflicting_options() {
    let out = Command::new(env!("CARGO_BIN_EXE_plinth-agent"))
        .args([
            "run",
            "--repo",
            "file:///nonexistent",
            "--cluster",
            "prod",
            "--kubeconfig",
            "/nonexistent",
            "--allowed-signers",
            "/x",
        ])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("take effect with `--verify-signatures`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_plinth-agent"))
        .args([
            "run",
            "--repo",
            "x",
            "--cluster",
            "prod",
            "--forge",
            "gitea",
        ])
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--forge-url"));
}
