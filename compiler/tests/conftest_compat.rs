//! conftest compatibility through the real `plinth` binary: the audit's failures (a user
//! `package main` policy next to the default library; an undefined complete `violation` rule),
//! and `plinth policy eval` / `policy test` against conftest's documented behaviour: rule
//! names, findings as strings or objects, exceptions and their counts, `--data`, namespaces,
//! `--combine`, standard input, `--fail-on-warn`, and the result line.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

fn plinth_in(args: &[&str], dir: &Path, stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run plinth");
    let mut pipe = child.stdin.take().expect("stdin");
    pipe.write_all(stdin.unwrap_or("").as_bytes())
        .expect("write stdin");
    drop(pipe);
    let out = child.wait_with_output().expect("wait");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn plinth(args: &[&str], dir: &Path) -> (i32, String, String) {
    plinth_in(args, dir, None)
}

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// The last non-empty line: conftest's totals.
fn totals(out: &str) -> &str {
    out.lines().rev().find(|l| !l.is_empty()).unwrap_or("")
}

/// conftest's Kubernetes example, in the same shape: helpers in `package kubernetes`, a rule
/// named `name`, a complete `violation` rule, `deny` and `warn` sets.
const K8S_POLICY: &str = r#"package main

import data.kubernetes

name := input.metadata.name

deny contains msg if {
	kubernetes.is_deployment
	not input.spec.template.spec.securityContext.runAsNonRoot
	msg := sprintf("Containers must not run as root in Deployment %s", [name])
}

violation := [{"msg": msg, "details": {}}] if {
	kubernetes.is_deployment
	msg := sprintf("Found deployment %s but deployments are not allowed", [name])
}

warn contains msg if {
	kubernetes.is_service
	msg := sprintf("Found service %s but services are not allowed", [name])
}
"#;

const K8S_LIB: &str = r#"package kubernetes

is_service if input.kind == "Service"

is_deployment if input.kind == "Deployment"
"#;

const DEPLOYMENT: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: hello\nspec:\n  template:\n    spec:\n      containers:\n        - name: c\n          image: nginx\n";
const SERVICE: &str =
    "apiVersion: v1\nkind: Service\nmetadata:\n  name: hello\nspec:\n  type: ClusterIP\n";

fn k8s_fixture() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tmp");
    write(tmp.path(), "policy/main.rego", K8S_POLICY);
    write(tmp.path(), "policy/kubernetes.rego", K8S_LIB);
    write(tmp.path(), "deployment.yaml", DEPLOYMENT);
    write(tmp.path(), "service.yaml", SERVICE);
    tmp
}

/// A Platform with one single-owner Project, and a Deployment so workload rules of the default
/// library (`gpu_limits`: `some name, request in …`) are evaluated.
fn platform_repo(dir: &Path) {
    write(
        dir,
        "plinth.yaml",
        "apiVersion: plinth.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: p\nspec:\n  clusters:\n    - name: c\n      kubernetesVersion: \"1.32\"\n      provider: aws\n",
    );
    write(
        dir,
        "projects.yaml",
        "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: team-a\nspec:\n  owners: [a@x.org]\n",
    );
}

fn check_json(args: &[&str], dir: &Path) -> (i32, Vec<String>) {
    let mut all = vec!["check", "repo", "--format", "json"];
    all.extend_from_slice(args);
    let (code, out, err) = plinth(&all, dir);
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let mut msgs: Vec<String> = v["diagnostics"]
        .as_array()
        .expect("array")
        .iter()
        .map(|d| {
            format!(
                "{}:{}",
                d["code"].as_str().unwrap_or(""),
                d["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    msgs.sort();
    (code, msgs)
}

#[test]
fn a_user_main_policy_runs_next_to_the_default_library() {
    // The audit: with the default library on, a user `package main` with `name :=` made every
    // evaluation fail with P004 against the library's own `gpu_limits.rego`.
    let tmp = k8s_fixture();
    platform_repo(&tmp.path().join("repo"));
    write(
        tmp.path(),
        "pol/main.rego",
        &K8S_POLICY.replace(
            "warn contains msg if {\n\tkubernetes.is_service",
            "warn contains msg if {\n\tinput.kind == \"Project\"",
        ),
    );
    write(tmp.path(), "pol/kubernetes.rego", K8S_LIB);
    let (code, msgs) = check_json(&["--policy", "pol"], tmp.path());
    assert_eq!(code, 0, "{msgs:?}");
    assert!(
        msgs.iter()
            .all(|m| !m.starts_with("P003") && !m.starts_with("P004")),
        "{msgs:?}"
    );
    // The library's finding and the user's, side by side.
    assert!(
        msgs.contains(&"P002:project `team-a` has fewer than two owners".to_owned()),
        "{msgs:?}"
    );
    assert!(
        msgs.contains(&"P002:Found service team-a but services are not allowed".to_owned()),
        "{msgs:?}"
    );
    // The user's `--namespace` selects the user's packages only: the library still runs.
    let (_, msgs) = check_json(&["--policy", "pol", "--namespace", "none"], tmp.path());
    assert_eq!(msgs, ["P002:project `team-a` has fewer than two owners"]);
}

#[test]
fn an_undefined_complete_violation_rule_is_no_finding() {
    // The audit: with `--no-default-policies`, `violation := [...] if { … }`, undefined for
    // everything but Deployments, was reported as `<undefined>` on every input.
    let tmp = k8s_fixture();
    platform_repo(&tmp.path().join("repo"));
    let (code, msgs) = check_json(&["--no-default-policies", "--policy", "policy"], tmp.path());
    assert_eq!(code, 0, "{msgs:?}");
    assert!(msgs.is_empty(), "{msgs:?}");
    // Over plain documents: the Service passes `violation` (undefined) and `deny` (empty).
    let (code, out, err) = plinth(&["policy", "eval", "service.yaml"], tmp.path());
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "WARN - service.yaml - main - Found service hello but services are not allowed\n\n3 tests, 2 passed, 1 warning, 0 failures, 0 exceptions\n"
    );
}

#[test]
fn eval_reports_findings_and_counts_as_conftest_test() {
    let tmp = k8s_fixture();
    let (code, out, err) = plinth(&["policy", "eval", "deployment.yaml"], tmp.path());
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        out,
        "FAIL - deployment.yaml - main - Containers must not run as root in Deployment hello\n\
         FAIL - deployment.yaml - main - Found deployment hello but deployments are not allowed\n\
         \n3 tests, 1 passed, 0 warnings, 2 failures, 0 exceptions\n"
    );
    // Multi-document YAML: each document is evaluated; the results stay under the file.
    write(
        tmp.path(),
        "both.yaml",
        &format!("{DEPLOYMENT}---\n{SERVICE}"),
    );
    let (code, out, _) = plinth(&["policy", "eval", "both.yaml"], tmp.path());
    assert_eq!(code, 1);
    assert_eq!(
        totals(&out),
        "6 tests, 3 passed, 1 warning, 2 failures, 0 exceptions"
    );
    // A directory: its YAML and JSON files.
    write(
        tmp.path(),
        "dir/svc.json",
        r#"{"kind": "Service", "metadata": {"name": "j"}}"#,
    );
    write(tmp.path(), "dir/notes.txt", "not a document");
    let (code, out, _) = plinth(&["policy", "eval", "dir"], tmp.path());
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with("WARN - dir/svc.json - main - Found service j"),
        "{out}"
    );
    // JSON output, conftest's shape.
    let (_, out, _) = plinth(
        &["policy", "eval", "deployment.yaml", "--format", "json"],
        tmp.path(),
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v[0]["filename"], "deployment.yaml");
    assert_eq!(v[0]["namespace"], "main");
    assert_eq!(v[0]["successes"], 1);
    assert_eq!(v[0]["failures"].as_array().map(Vec::len), Some(2));
    assert_eq!(
        v[0]["failures"][1]["metadata"]["details"],
        serde_json::json!({})
    );
    assert_eq!(
        v[0]["failures"][1]["metadata"]["query"],
        "data.main.violation"
    );
    assert!(v[0].get("warnings").is_none(), "{out}");
}

#[test]
fn warnings_pass_unless_fail_on_warn() {
    let tmp = k8s_fixture();
    let run = |args: &[&str]| plinth(args, tmp.path()).0;
    assert_eq!(run(&["policy", "eval", "service.yaml"]), 0);
    assert_eq!(
        run(&["policy", "eval", "--fail-on-warn", "service.yaml"]),
        1
    );
    // conftest: with `--fail-on-warn`, failures exit 2.
    assert_eq!(
        run(&["policy", "eval", "--fail-on-warn", "deployment.yaml"]),
        2
    );
    assert_eq!(run(&["policy", "eval", "--no-fail", "deployment.yaml"]), 0);
}

#[test]
fn standard_input_is_read_as_yaml() {
    let tmp = k8s_fixture();
    let (code, out, err) = plinth_in(&["policy", "eval", "-"], tmp.path(), Some(SERVICE));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        out,
        "WARN - - main - Found service hello but services are not allowed\n\n3 tests, 2 passed, 1 warning, 0 failures, 0 exceptions\n"
    );
}

#[test]
fn exceptions_exempt_an_input_and_are_counted() {
    // conftest's `examples/exceptions`: two Deployments, one excepted from `run_as_root`.
    let tmp = tempfile::tempdir().expect("tmp");
    write(
        tmp.path(),
        "policy/policy.rego",
        "package main\n\nis_deployment if input.kind == \"Deployment\"\n\ndeny_run_as_root contains msg if {\n\tis_deployment\n\tnot input.spec.template.spec.securityContext.runAsNonRoot\n\tmsg := sprintf(\"Containers must not run as root in Deployment %s\", [input.metadata.name])\n}\n",
    );
    write(
        tmp.path(),
        "policy/exception.rego",
        "package main\n\nexception contains rules if {\n\tinput.kind == \"Deployment\"\n\tinput.metadata.name == \"can-run-as-root\"\n\trules := [\"run_as_root\"]\n}\n",
    );
    write(
        tmp.path(),
        "deployments.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: cannot-run-as-root\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: can-run-as-root\n",
    );
    let (code, out, err) = plinth(&["policy", "eval", "deployments.yaml"], tmp.path());
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        out,
        "FAIL - deployments.yaml - main - Containers must not run as root in Deployment cannot-run-as-root\n\
         EXCP - deployments.yaml - main - data.main.exception[_][_] == \"run_as_root\"\n\
         \n2 tests, 0 passed, 0 warnings, 1 failure, 1 exception\n"
    );
    let (_, out, _) = plinth(
        &[
            "policy",
            "eval",
            "--suppress-exceptions",
            "deployments.yaml",
        ],
        tmp.path(),
    );
    assert!(!out.contains("EXCP"), "{out}");
    assert_eq!(
        totals(&out),
        "2 tests, 0 passed, 0 warnings, 1 failure, 1 exception"
    );
}

#[test]
fn data_files_are_merged_into_data_under_their_directories() {
    // conftest's `examples/data`, plus a nested directory (placed under its name).
    let tmp = tempfile::tempdir().expect("tmp");
    write(
        tmp.path(),
        "policy/base.rego",
        "package main\n\nimport data.services\n\ndeny contains msg if {\n\tinput.kind == \"Service\"\n\tsome p in input.spec.ports\n\tp.port in services.ports\n\tmsg := sprintf(\"Cannot expose port %v (%s)\", [p.port, data.extra.owner])\n}\n",
    );
    write(
        tmp.path(),
        "exclusions/services.yaml",
        "services:\n  ports:\n    - 22\n    - 21\n",
    );
    write(
        tmp.path(),
        "exclusions/extra/owner.json",
        r#"{"owner": "sre"}"#,
    );
    write(tmp.path(), "exclusions/README.md", "skipped");
    write(
        tmp.path(),
        "service.yaml",
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  ports:\n    - port: 22\n",
    );
    let (code, out, err) = plinth(
        &["policy", "eval", "-d", "exclusions", "service.yaml"],
        tmp.path(),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("FAIL - service.yaml - main - Cannot expose port 22 (sre)"),
        "{out}{err}"
    );
    // Without the data the rule finds nothing.
    let (code, out, _) = plinth(&["policy", "eval", "service.yaml"], tmp.path());
    assert_eq!(code, 0, "{out}");
    // `policy test` gets the data too (conftest verify `-d`).
    write(
        tmp.path(),
        "policy/base_test.rego",
        "package main\n\ntest_denied if {\n\tcount(deny) == 1 with input as {\"kind\": \"Service\", \"spec\": {\"ports\": [{\"port\": 21}]}}\n}\n",
    );
    let (code, out, _) = plinth(
        &["policy", "test", "policy", "-d", "exclusions"],
        tmp.path(),
    );
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("1 test, 1 passed, 0 warnings, 0 failures, 0 exceptions"),
        "{out}"
    );
    let (code, _, _) = plinth(&["policy", "test", "policy"], tmp.path());
    assert_eq!(code, 1, "without the data the test fails");
    // conftest verify's spelling.
    let (code, out, _) = plinth(
        &["policy", "test", "-p", "policy", "-d", "exclusions"],
        tmp.path(),
    );
    assert_eq!(code, 0, "{out}");
    // Inside `check`: `--data` is merged beside `data.plinth`.
    platform_repo(&tmp.path().join("repo"));
    write(
        tmp.path(),
        "pol/owners.rego",
        "package main\n\ndeny contains msg if {\n\tinput.kind == \"Project\"\n\tsome o in input.spec.owners\n\tnot o in data.people.allowed\n\tmsg := sprintf(\"owner %s is not allowed\", [o])\n}\n",
    );
    write(
        tmp.path(),
        "people/people.yaml",
        "people:\n  allowed: [b@x.org]\n",
    );
    let (code, msgs) = check_json(
        &[
            "--no-default-policies",
            "--policy",
            "pol",
            "--data",
            "people",
        ],
        tmp.path(),
    );
    assert_eq!(code, 1);
    assert_eq!(msgs, ["P001:owner a@x.org is not allowed"]);
    // Data may not replace plinth's own view.
    write(tmp.path(), "bad/p.yaml", "plinth:\n  x: 1\n");
    let (code, msgs) = check_json(
        &["--no-default-policies", "--policy", "pol", "--data", "bad"],
        tmp.path(),
    );
    assert_eq!(code, 1);
    assert!(msgs.iter().any(|m| m.starts_with("P004:")), "{msgs:?}");
}

#[test]
fn namespaces_select_packages_literally_by_glob_or_all() {
    let tmp = k8s_fixture();
    write(
        tmp.path(),
        "policy/other.rego",
        "package main.gke\n\ndeny contains \"gke\" if input.kind == \"Deployment\"\n",
    );
    let run = |args: &[&str]| {
        let mut all = vec!["policy", "eval", "deployment.yaml"];
        all.extend_from_slice(args);
        let (code, out, _) = plinth(&all, tmp.path());
        (code, totals(&out).to_owned(), out)
    };
    // `main` only: `main.gke` is another package.
    let (_, t, _) = run(&[]);
    assert_eq!(t, "3 tests, 1 passed, 0 warnings, 2 failures, 0 exceptions");
    let (code, t, out) = run(&["--namespace", "main.gke"]);
    assert_eq!(code, 1);
    assert_eq!(t, "1 test, 0 passed, 0 warnings, 1 failure, 0 exceptions");
    assert!(
        out.contains("FAIL - deployment.yaml - main.gke - gke"),
        "{out}"
    );
    let (_, t, _) = run(&["--namespace", "main*"]);
    assert_eq!(t, "4 tests, 1 passed, 0 warnings, 3 failures, 0 exceptions");
    let (_, t, _) = run(&["--all-namespaces"]);
    assert_eq!(t, "4 tests, 1 passed, 0 warnings, 3 failures, 0 exceptions");
    // A namespace with no policies: nothing to fail.
    let (code, t, _) = run(&["--namespace", "notpresent"]);
    assert_eq!(code, 0);
    assert_eq!(t, "0 tests, 0 passed, 0 warnings, 0 failures, 0 exceptions");
}

#[test]
fn combine_evaluates_every_document_at_once() {
    // conftest's `examples/combine`: a team names users; one of them is missing.
    let tmp = tempfile::tempdir().expect("tmp");
    write(
        tmp.path(),
        "policy/combine.rego",
        r#"package main

deny contains msg if {
	users := {u.contents.metadata.email | some u in input; u.contents.kind == "user"}
	some t in input
	t.contents.kind == "team"
	some m in t.contents.spec.member
	not m in users
	msg := sprintf("%s names missing user %s", [t.path, m])
}

deny contains msg if {
	count(input) > 3
	msg := "more than three documents"
}
"#,
    );
    write(
        tmp.path(),
        "team.yaml",
        "kind: team\nmetadata:\n  name: t\nspec:\n  member: [jane@x.org, john@x.org]\n",
    );
    write(
        tmp.path(),
        "users.yaml",
        "kind: user\nmetadata:\n  email: john@x.org\n---\nkind: user\nmetadata:\n  email: jan@x.org\n",
    );
    let (code, out, err) = plinth(
        &["policy", "eval", "--combine", "team.yaml", "users.yaml"],
        tmp.path(),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        out,
        "FAIL - Combined - main - team.yaml names missing user jane@x.org\n\n2 tests, 1 passed, 0 warnings, 1 failure, 0 exceptions\n"
    );
    // Without `--combine`, each document alone.
    let (_, out, _) = plinth(&["policy", "eval", "team.yaml", "users.yaml"], tmp.path());
    assert_eq!(
        totals(&out),
        "6 tests, 6 passed, 0 warnings, 0 failures, 0 exceptions",
        "a single document is not a list: `some t in input` iterates its values"
    );
}

#[test]
fn findings_follow_conftests_rules() {
    let tmp = tempfile::tempdir().expect("tmp");
    write(
        tmp.path(),
        "policy/p.rego",
        r#"package main

# A complete rule that is not a collection is no finding (conftest reads sets and arrays).
deny_string := "ignored"

# An empty message passes; a number is ignored.
deny_mixed contains x if some x in ["", 3, "real"]

# Not conftest's names: never evaluated.
deny__double contains "no"
denyall contains "no"

# `data.conftest.file`, as conftest provides it.
warn_file contains msg if {
	msg := sprintf("file %s", [data.conftest.file.name])
}
"#,
    );
    write(tmp.path(), "doc.yaml", "a: 1\n");
    let (code, out, err) = plinth(&["policy", "eval", "doc.yaml"], tmp.path());
    assert_eq!(code, 1, "{out}{err}");
    assert_eq!(
        out,
        "WARN - doc.yaml - main - file doc.yaml\nFAIL - doc.yaml - main - real\n\n4 tests, 2 passed, 1 warning, 1 failure, 0 exceptions\n"
    );
    // `deny if` (a boolean) is refused, as conftest refuses it; an object without `msg` fails.
    write(
        tmp.path(),
        "bad/p.rego",
        "package main\n\ndeny if input.a == 1\n\nwarn contains {\"text\": \"no msg\"}\n",
    );
    let (code, out, err) = plinth(&["policy", "eval", "-p", "bad", "doc.yaml"], tmp.path());
    assert_eq!(code, 1);
    // A rule that fails is never counted as passing.
    assert_eq!(
        totals(&out),
        "0 tests, 0 passed, 0 warnings, 0 failures, 0 exceptions"
    );
    assert!(
        err.contains("error[P003]") && err.contains("without `contains`"),
        "{err}"
    );
    assert!(
        err.contains("error[P004]") && err.contains("without a string `msg`"),
        "{err}"
    );
    // No policies at all is an error, as with conftest.
    let (code, _, err) = plinth(&["policy", "eval", "-p", "none", "doc.yaml"], tmp.path());
    assert_eq!(code, 1);
    assert!(err.contains("no policy directory or file"), "{err}");
}

#[test]
fn conftest_command_line_details() {
    let tmp = k8s_fixture();
    // An explicit empty file name is skipped.
    let (code, out, err) = plinth(&["policy", "eval", "service.yaml", ""], tmp.path());
    assert_eq!(code, 0, "{out}{err}");
    // `--quiet`: nothing on a pass, everything on a failure.
    let (code, out, _) = plinth(&["policy", "eval", "--quiet", "service.yaml"], tmp.path());
    assert_eq!((code, out.as_str()), (0, ""));
    let (code, out, _) = plinth(
        &["policy", "eval", "--quiet", "deployment.yaml"],
        tmp.path(),
    );
    assert_eq!(code, 1);
    assert!(out.contains("2 failures"), "{out}");
    // `--parser json` whatever the extension; `print` output as conftest's `PRNT` lines.
    write(
        tmp.path(),
        "printing/p.rego",
        "package main\n\ndeny contains msg if {\n\tprint(input.metadata.name)\n\tmsg := \"printed\"\n}\n",
    );
    write(
        tmp.path(),
        "doc.txt",
        r#"{"metadata": {"name": "from-json"}}"#,
    );
    let (code, out, err) = plinth(
        &[
            "policy", "eval", "-p", "printing", "--parser", "json", "doc.txt",
        ],
        tmp.path(),
    );
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.starts_with("PRNT   printing/p.rego:4: from-json\n\nFAIL - doc.txt - main - printed\n"),
        "{out}"
    );
    // conftest verify: a namespace filter that matches nothing is 0 tests and a pass; no
    // policies at all exits 1.
    write(
        tmp.path(),
        "policy/main_test.rego",
        "package main\n\ntest_service_warns if {\n\tcount(warn) == 1 with input as {\"kind\": \"Service\", \"metadata\": {\"name\": \"s\"}}\n}\n",
    );
    let (code, out, _) = plinth(&["policy", "test", "-p", "policy"], tmp.path());
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("1 test, 1 passed"), "{out}");
    let (code, out, _) = plinth(
        &[
            "policy",
            "test",
            "-p",
            "policy",
            "--namespace",
            "doesnotexist",
        ],
        tmp.path(),
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 tests, 0 passed"), "{out}");
    let (code, _, err) = plinth(&["policy", "test", "-p", "missing"], tmp.path());
    assert_eq!(code, 1, "{err}");
}
