//! The `plinth-agent` binary against the test server: `apply --once`, `diff`, exit codes,
//! results on stdout and logs on stderr, JSON output, usage errors.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output};

use common::*;
use kube_testserver::TestServer;
use serde_json::{Value, json};

fn agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plinth-agent"))
        .args(args)
        .env_remove("KUBECONFIG")
        .env_remove("PLINTH_LOG")
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn apply_once_then_diff_with_exit_codes() {
    let s = TestServer::start_blocking().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    s.write_kubeconfig(&kc).unwrap();
    let kc = kc.to_str().unwrap();
    let tree = build(&[project("er-capacity", Some("32"))]);
    let out = tree.path.to_str().unwrap();

    let first = agent(&[
        "apply",
        "--once",
        "--kubeconfig",
        kc,
        "--dir",
        out,
        "--health-timeout",
        "5s",
        "-v",
    ]);
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}{}",
        text(&first.stdout),
        text(&first.stderr)
    );
    let stdout = text(&first.stdout);
    assert!(
        stdout.contains("created    Namespace er-capacity"),
        "{stdout}"
    );
    assert!(stdout.contains("created: synced"), "{stdout}");
    assert!(
        !text(&first.stderr).contains("created    "),
        "results go to stdout only"
    );
    assert!(text(&first.stderr).contains("INFO"), "-v logs to stderr");

    let again = agent(&["apply", "--once", "--kubeconfig", kc, "--dir", out]);
    assert_eq!(again.status.code(), Some(0));
    assert!(
        text(&again.stdout).contains("unchanged: synced"),
        "{}",
        text(&again.stdout)
    );

    let diff = agent(&["diff", "--kubeconfig", kc, "--dir", out]);
    assert_eq!(diff.status.code(), Some(0), "{}", text(&diff.stdout));
    assert!(text(&diff.stdout).contains("no differences"));

    s.modify("v1", "ResourceQuota", Some("er-capacity"), "quota", |o| {
        o["spec"]["hard"]["requests.cpu"] = json!("48");
    });
    let diff = agent(&["diff", "--kubeconfig", kc, "--dir", out, "--format", "json"]);
    assert_eq!(diff.status.code(), Some(2), "{}", text(&diff.stderr));
    let report: Value = serde_json::from_slice(&diff.stdout).unwrap();
    assert_eq!(report["outcome"], "changes");
    let quota = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["key"]["kind"] == "ResourceQuota")
        .unwrap();
    assert_eq!(quota["action"], "heal");
    assert_eq!(quota["diffs"][0]["path"], "spec.hard.requests.cpu");
    assert_eq!(quota["diffs"][0]["class"], "outOfBand");

    let detect = agent(&[
        "apply",
        "--once",
        "--kubeconfig",
        kc,
        "--dir",
        out,
        "--drift",
        "detect",
    ]);
    assert_eq!(detect.status.code(), Some(2), "{}", text(&detect.stdout));
    let heal = agent(&[
        "apply",
        "--once",
        "--kubeconfig",
        kc,
        "--dir",
        out,
        "--drift",
        "heal",
    ]);
    assert_eq!(heal.status.code(), Some(0), "{}", text(&heal.stdout));
    assert!(
        text(&heal.stdout)
            .contains("healed     ResourceQuota er-capacity/quota: spec.hard.requests.cpu 48 (live) → 32 (desired)"),
        "{}",
        text(&heal.stdout)
    );
    assert_eq!(
        agent(&["diff", "--kubeconfig", kc, "--dir", out])
            .status
            .code(),
        Some(0)
    );
}

#[test]
fn usage_and_system_errors_exit_1() {
    let s = TestServer::start_blocking().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    s.write_kubeconfig(&kc).unwrap();
    let kc = kc.to_str().unwrap();
    let tree = build(&[project("er", None)]);
    let out = tree.path.to_str().unwrap();

    // `apply` runs once without being told (against a cluster of its own: this test checks
    // below that nothing was written to `s`).
    let s2 = TestServer::start_blocking().unwrap();
    let kc2 = dir.path().join("kubeconfig2");
    s2.write_kubeconfig(&kc2).unwrap();
    let no_once = agent(&[
        "apply",
        "--kubeconfig",
        kc2.to_str().unwrap(),
        "--dir",
        out,
        "--health-timeout",
        "5s",
    ]);
    assert_eq!(no_once.status.code(), Some(0), "{}", text(&no_once.stderr));

    let missing = agent(&["diff", "--kubeconfig", kc, "--dir", "/nonexistent/out/prod"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing.stderr).contains("cannot read `/nonexistent/out/prod/plinth.lock.json`"),
        "{}",
        text(&missing.stderr)
    );

    let bad_flag = agent(&["apply", "--once", "--dir", out, "--health-timeout", "soon"]);
    assert_eq!(bad_flag.status.code(), Some(1));

    let no_cluster = agent(&[
        "apply",
        "--once",
        "--kubeconfig",
        "/nonexistent/kubeconfig",
        "--dir",
        out,
    ]);
    assert_eq!(no_cluster.status.code(), Some(1));
    assert!(
        text(&no_cluster.stderr).contains("kubeconfig"),
        "{}",
        text(&no_cluster.stderr)
    );

    let help = agent(&["apply", "--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help.stdout).contains("--delete-budget"));
    assert_eq!(
        s.total_writes(),
        4,
        "nothing was written (only the default namespaces exist)"
    );
}

/// The Deployment `plinth build` emits for the agent (the reviewed golden case) runs
/// arguments this binary takes: the two crates cannot drift apart silently.
#[test]
fn the_install_manifests_run_arguments_the_agent_takes() {
    use clap::Parser as _;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../tests/golden/build/agent-install/expected/prod/plinth-system/deployment-plinth-agent.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let (docs, diags) =
        plinth::parse::yaml::parse_documents(&"deployment.yaml".into(), &text, Default::default());
    assert!(diags.is_empty(), "{diags:?}");
    let dep = docs[0].root.to_json();
    let container = &dep["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(args[0], "run");
    let cli = plinth_agent::cli::Cli::try_parse_from(
        std::iter::once("plinth-agent".to_owned()).chain(args.iter().cloned()),
    )
    .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    let plinth_agent::cli::Cmd::Run(run) = cli.command else {
        panic!("not `run`")
    };
    assert_eq!(run.cluster, "prod");
    assert!(run.apply.prune);
    // The safe flags: signed hooks only, no clear-text tokens, a mirror directory of its own
    // (below the volume, whose root the kubelet owns).
    assert!(run.webhook_secret_file.is_some());
    assert!(!run.allow_unsigned_webhooks && !run.allow_insecure_http);
    assert_eq!(
        run.cache_dir.as_deref(),
        Some(std::path::Path::new("/var/cache/plinth/mirror"))
    );
    // The files it names are where the Deployment mounts them.
    let mounts: Vec<&str> = container["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["mountPath"].as_str().unwrap())
        .collect();
    for flag in ["--token-file=", "--webhook-secret-file=", "--cache-dir="] {
        let value = args.iter().find_map(|a| a.strip_prefix(flag)).unwrap();
        assert!(
            mounts.iter().any(|m| value.starts_with(m)),
            "{flag}{value} is not under a mount: {mounts:?}"
        );
    }
}

/// What a new user reads: a hint for `--dir out`, each cause once, an unreachable server named
/// (without `kube_client`'s own ERROR lines), no summary line that is only `: failed`.
#[test]
fn messages_a_new_user_reads() {
    let tree = build(&[project("er", None)]);
    let out = tree.path.parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let kc = dir.path().join("kubeconfig");
    std::fs::write(
        &kc,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: \"https://127.0.0.1:1\"}}]\n\
         users: [{name: u, user: {token: x}}]\ncontexts: [{name: c, context: {cluster: c, user: u}}]\n\
         current-context: c\n",
    )
    .unwrap();
    let kc = kc.to_str().unwrap();
    let whole = agent(&["apply", "--kubeconfig", kc, "--dir", out.to_str().unwrap()]);
    assert_eq!(whole.status.code(), Some(1));
    assert!(
        text(&whole.stderr).contains(&format!(
            "holds one directory per cluster (`prod`): pass `--dir {}`",
            out.join("prod").display()
        )),
        "{}",
        text(&whole.stderr)
    );
    let missing = agent(&["apply", "--kubeconfig", kc, "--dir", "/nonexistent/x"]);
    let err = text(&missing.stderr);
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "each cause once: {err}"
    );
    let unreachable = agent(&[
        "apply",
        "--kubeconfig",
        kc,
        "--dir",
        tree.path.to_str().unwrap(),
        "--retries",
        "0",
        "--request-timeout",
        "2s",
    ]);
    assert_eq!(unreachable.status.code(), Some(1));
    let (stdout, stderr) = (text(&unreachable.stdout), text(&unreachable.stderr));
    assert!(
        stdout.contains("API server `https://127.0.0.1:1/`"),
        "{stdout}"
    );
    assert!(!stderr.contains("kube_client"), "{stderr}");
    assert!(
        stdout.lines().all(|l| !l.starts_with(": ")),
        "a summary line without counts: {stdout}"
    );
    assert!(
        stdout.contains("(applied before this run: none)"),
        "{stdout}"
    );
}
