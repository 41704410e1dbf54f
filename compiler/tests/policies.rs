//! Policies end to end: the shipped library's own tests, conftest compatibility over the
//! compiled example, exceptions and namespaces, limits, broken policies, and the SARIF and
//! JUnit outputs.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn plinth(args: &[&str], dir: &Path) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run plinth");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join(name), text).expect("write");
}

#[test]
fn shipped_policies_pass_their_own_tests() {
    let (code, out, err) = plinth(&["policy", "test", "policies", "--verbose"], &root());
    assert_eq!(code, 0, "{out}{err}");
    let passed = out.lines().filter(|l| l.starts_with("PASS ")).count();
    assert!(
        passed >= 24,
        "expected at least two tests for each of the 12+ policies, found {passed}\n{out}"
    );
    // Every policy file of the library has a test file.
    for entry in std::fs::read_dir(root().join("policies")).expect("policies/") {
        let name = entry
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name.ends_with(".rego") && !name.ends_with("_test.rego") && name != "lib.rego" {
            let test = name.replace(".rego", "_test.rego");
            assert!(
                root().join("policies").join(&test).exists(),
                "{name} has no {test}"
            );
        }
    }
}

#[test]
fn policy_test_reports_failures() {
    let tmp = tempfile::tempdir().expect("tmp");
    write(
        tmp.path(),
        "p.rego",
        "package main\n\ndeny contains \"no\" if input.bad\n",
    );
    write(
        tmp.path(),
        "p_test.rego",
        "package main\n\ntest_passes if {\n\tcount(deny) == 1 with input as {\"bad\": true}\n}\n\ntest_fails if {\n\tcount(deny) == 2 with input as {\"bad\": true}\n}\n\ntodo_test_later if false\n",
    );
    let (code, out, _) = plinth(&["policy", "test", "."], tmp.path());
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL") && out.contains("data.main.test_fails"),
        "{out}"
    );
    // conftest verify's totals; a `todo_test_` is skipped, not failed.
    assert!(
        out.contains("3 tests, 1 passed, 0 warnings, 1 failure, 0 exceptions, 1 skipped"),
        "{out}"
    );
}

/// Typical conftest policies for Kubernetes manifests, in the old (v0) syntax most existing
/// libraries use, run unchanged over plinth's compiled output.
const CONFTEST_V0: &str = r#"package main

deny[msg] {
  input.kind == "Namespace"
  not input.metadata.labels["pod-security.kubernetes.io/enforce"]
  msg := sprintf("namespace %s has no pod security label", [input.metadata.name])
}

deny[msg] {
  input.kind == "RoleBinding"
  input.roleRef.name == "cluster-admin"
  msg := sprintf("rolebinding %s grants cluster-admin", [input.metadata.name])
}

warn[msg] {
  input.kind == "PersistentVolumeClaim"
  not input.spec.storageClassName
  msg := sprintf("pvc %s/%s uses the default storage class", [input.metadata.namespace, input.metadata.name])
}

violation[{"msg": msg, "details": {"kind": input.kind}}] {
  input.kind == "ResourceQuota"
  not input.spec.hard.pods
  input.metadata.name == "quota"
  msg := sprintf("quota in %s does not limit pods", [input.metadata.namespace])
}

deny_team_label[msg] {
  input.kind == "Namespace"
  not input.metadata.labels["plinth.dev/project"]
  msg := sprintf("namespace %s has no owning project", [input.metadata.name])
}

exception[rules] {
  input.kind == "Namespace"
  input.metadata.name == "data-engineering"
  rules := ["team_label"]
}
"#;

#[test]
fn conftest_policies_run_unchanged_over_the_compiled_example() {
    let tmp = tempfile::tempdir().expect("tmp");
    let pol = tmp.path().join("conftest");
    write(&pol, "k8s.rego", CONFTEST_V0);
    // A rule that must fire on plinth's own output, to prove the policies see the manifests.
    write(
        &pol,
        "fires.rego",
        "package main\n\nwarn_namespaces[msg] {\n  input.kind == \"Namespace\"\n  msg := sprintf(\"saw namespace %s\", [input.metadata.name])\n}\n",
    );
    let repo = root().join("examples/repo");
    let args = [
        "check",
        repo.to_str().expect("utf-8"),
        "--no-default-policies",
        "--rego-v0",
        "--policy",
        pol.to_str().expect("utf-8"),
        "--format",
        "json",
    ];
    let (code, out, err) = plinth(&args, tmp.path());
    let v: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let msgs: Vec<&str> = v["diagnostics"]
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|d| d["message"].as_str())
        .collect();
    // plinth's namespaces carry pod security and project labels, and it never binds
    // cluster-admin: the deny rules stay silent, so the run passes.
    assert_eq!(code, 0, "{out}");
    assert!(
        !msgs
            .iter()
            .any(|m| m.contains("no pod security label") || m.contains("cluster-admin")),
        "{msgs:?}"
    );
    // The warn rule saw every namespace of both clusters.
    for ns in [
        "er-capacity",
        "radiology-imaging",
        "bed-management",
        "data-engineering",
    ] {
        assert!(
            msgs.contains(&format!("saw namespace {ns}").as_str()),
            "{ns}: {msgs:?}"
        );
    }
    // Findings on manifests point at the spec that produced them.
    let d = v["diagnostics"]
        .as_array()
        .expect("array")
        .iter()
        .find(|d| d["message"] == "saw namespace er-capacity")
        .expect("finding");
    assert_eq!(
        d["location"]["file"],
        format!("{}/projects/er-capacity.yaml", repo.display())
    );
    assert_eq!(d["severity"], "warning");
}

#[test]
fn conftest_conventions_deny_violation_warn_exceptions_and_namespaces() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    write(
        &repo,
        "plinth.yaml",
        "apiVersion: plinth.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: p\nspec:\n  clusters:\n    - name: c\n      kubernetesVersion: \"1.32\"\n      provider: aws\n",
    );
    write(
        &repo,
        "projects.yaml",
        "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: team-a\nspec:\n  owners: [a@x.org, b@x.org]\n---\napiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: team-b\nspec:\n  owners: [a@x.org, b@x.org]\n",
    );
    let pol = tmp.path().join("pol");
    write(
        &pol,
        "v1.rego",
        r#"package main

deny contains msg if {
	input.kind == "Project"
	msg := sprintf("bare deny on %s", [input.metadata.name])
}

violation contains {"msg": sprintf("object violation on %s", [input.metadata.name]), "details": {"x": 1}} if input.kind == "Project"

warn_naming contains msg if {
	input.kind == "Project"
	startswith(input.metadata.name, "team-")
	msg := sprintf("warn on %s", [input.metadata.name])
}

deny_b contains msg if {
	input.kind == "Project"
	msg := sprintf("suffix deny on %s", [input.metadata.name])
}

exception contains rules if {
	input.metadata.name == "team-b"
	rules := ["b"]
}
"#,
    );
    write(
        &pol,
        "other.rego",
        "package other\n\ndeny contains \"other package\" if input.kind == \"Platform\"\n",
    );
    let run = |extra: &[&str]| {
        let mut args = vec![
            "check",
            "repo",
            "--no-default-policies",
            "--policy",
            "pol",
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = plinth(&args, tmp.path());
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
    };
    let (code, msgs) = run(&[]);
    assert_eq!(code, 1);
    assert_eq!(
        msgs,
        [
            "P001:bare deny on team-a",
            "P001:bare deny on team-b",
            "P001:object violation on team-a",
            "P001:object violation on team-b",
            "P001:suffix deny on team-a",
            "P002:warn on team-a",
            "P002:warn on team-b",
        ],
        "team-b is excepted from `deny_b` only"
    );
    let (_, msgs) = run(&["--namespace", "other"]);
    assert_eq!(msgs, ["P001:other package"]);
    let (_, msgs) = run(&["--all-namespaces"]);
    assert_eq!(msgs.len(), 8, "{msgs:?}");
    // Warnings alone pass, unless --strict.
    let (code, _) = run(&["--namespace", "none"]);
    assert_eq!(code, 0);
}

#[test]
fn broken_and_runaway_policies_are_located_errors() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = root().join("tests/golden/check/ok-minimal/repo");
    let pol = tmp.path().join("pol");
    write(
        &pol,
        "broken.rego",
        "package main\n\ndeny contains msg if {\n  msg := \"unterminated\n}\n",
    );
    // One runs out of memory inside a builtin, the other out of time in a loop.
    write(
        &pol,
        "hungry.rego",
        "package main\n\ndeny_hungry contains \"hungry\" if {\n  count([x | some x in numbers.range(1, 100000000); x % 7 == 3]) > 0\n}\n",
    );
    write(
        &pol,
        "slow.rego",
        "package main\n\ndeny_slow contains \"slow\" if {\n  count([1 | some i in numbers.range(1, 4000); some j in numbers.range(1, 4000); i != j]) < 0\n}\n",
    );
    let args = [
        "check",
        repo.to_str().expect("utf-8"),
        "--no-default-policies",
        "--policy",
        pol.to_str().expect("utf-8"),
        "--policy-timeout-ms",
        "200",
        "--policy-memory-mb",
        "64",
        "--format",
        "json",
    ];
    let started = std::time::Instant::now();
    let (code, out, err) = plinth(&args, tmp.path());
    let _ = started;
    assert_eq!(code, 1, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let diags = v["diagnostics"].as_array().expect("array");
    let broken = diags
        .iter()
        .find(|d| d["code"] == "P003")
        .expect("broken policy reported");
    assert!(
        broken["location"]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("broken.rego")),
        "{broken}"
    );
    assert!(
        broken["location"]["line"].as_u64().is_some_and(|l| l >= 3),
        "{broken}"
    );
    let failed: Vec<&serde_json::Value> = diags.iter().filter(|d| d["code"] == "P004").collect();
    let hungry = failed
        .iter()
        .find(|d| {
            d["message"]
                .as_str()
                .is_some_and(|m| m.contains("deny_hungry"))
        })
        .expect("memory runaway reported");
    assert!(
        hungry["message"]
            .as_str()
            .is_some_and(|m| m.contains("memory")),
        "{hungry}"
    );
    assert!(
        hungry["location"]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("hungry.rego")),
        "{hungry}"
    );
    let slow = failed
        .iter()
        .find(|d| {
            d["message"]
                .as_str()
                .is_some_and(|m| m.contains("deny_slow"))
        })
        .expect("time runaway reported");
    assert!(
        slow["message"]
            .as_str()
            .is_some_and(|m| m.contains("longer than")),
        "{slow}"
    );
}

/// The SARIF 2.1.0 schema cannot be fetched on these machines (no registry ships it), so this
/// checks the output against the parts of the schema plinth uses, transcribed from the
/// OASIS SARIF 2.1.0 specification (sections 3.13–3.30), strictly.
const SARIF_SUBSET: &str = r##"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "type": "object",
  "required": ["version", "runs"],
  "additionalProperties": false,
  "properties": {
    "$schema": {"type": "string", "format": "uri"},
    "version": {"enum": ["2.1.0"]},
    "runs": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/run"}}
  },
  "definitions": {
    "message": {"type": "object", "required": ["text"], "additionalProperties": false, "properties": {"text": {"type": "string"}}},
    "run": {
      "type": "object", "required": ["tool"], "additionalProperties": false,
      "properties": {
        "tool": {"type": "object", "required": ["driver"], "additionalProperties": false, "properties": {"driver": {"$ref": "#/definitions/driver"}}},
        "results": {"type": "array", "items": {"$ref": "#/definitions/result"}}
      }
    },
    "driver": {
      "type": "object", "required": ["name"], "additionalProperties": false,
      "properties": {
        "name": {"type": "string"}, "version": {"type": "string"}, "informationUri": {"type": "string", "format": "uri"},
        "rules": {"type": "array", "items": {
          "type": "object", "required": ["id"], "additionalProperties": false,
          "properties": {
            "id": {"type": "string"}, "name": {"type": "string"},
            "shortDescription": {"$ref": "#/definitions/message"},
            "defaultConfiguration": {"type": "object", "additionalProperties": false, "properties": {"level": {"enum": ["none", "note", "warning", "error"]}}}
          }
        }}
      }
    },
    "result": {
      "type": "object", "required": ["message"], "additionalProperties": false,
      "properties": {
        "ruleId": {"type": "string"}, "ruleIndex": {"type": "integer", "minimum": -1},
        "level": {"enum": ["none", "note", "warning", "error"]},
        "message": {"$ref": "#/definitions/message"},
        "locations": {"type": "array", "items": {"$ref": "#/definitions/location"}},
        "relatedLocations": {"type": "array", "items": {"$ref": "#/definitions/location"}},
        "properties": {"type": "object"}
      }
    },
    "location": {
      "type": "object", "additionalProperties": false,
      "properties": {
        "id": {"type": "integer", "minimum": -1},
        "message": {"$ref": "#/definitions/message"},
        "physicalLocation": {
          "type": "object", "additionalProperties": false,
          "properties": {
            "artifactLocation": {"type": "object", "additionalProperties": false, "properties": {"uri": {"type": "string"}}},
            "region": {"type": "object", "additionalProperties": false, "properties": {
              "startLine": {"type": "integer", "minimum": 1}, "startColumn": {"type": "integer", "minimum": 1},
              "endLine": {"type": "integer", "minimum": 1}, "endColumn": {"type": "integer", "minimum": 1}
            }}
          }
        }
      }
    }
  }
}"##;

#[test]
fn sarif_and_junit_outputs_are_well_formed() {
    let case = root().join("tests/golden/check/bad-policy-example");
    let (code, out, err) = plinth(&["check", "repo", "--format", "sarif"], &case);
    assert_eq!(code, 1, "{err}");
    let sarif: serde_json::Value = serde_json::from_str(&out).expect("sarif is JSON");
    let schema: serde_json::Value = serde_json::from_str(SARIF_SUBSET).expect("schema");
    let validator = jsonschema::draft7::new(&schema).expect("schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&sarif)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let results = sarif["runs"][0]["results"].as_array().expect("results");
    assert!(
        results
            .iter()
            .any(|r| r["ruleId"] == "P001" && r["level"] == "error")
    );
    // Every result's ruleIndex points at its rule.
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .expect("rules");
    for r in results {
        let i = r["ruleIndex"].as_u64().expect("index") as usize;
        assert_eq!(rules[i]["id"], r["ruleId"]);
    }

    let (_, xml, _) = plinth(&["check", "repo", "--format", "junit"], &case);
    assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>"));
    let failures = xml.matches("<failure ").count();
    let errors = results.iter().filter(|r| r["level"] == "error").count();
    assert_eq!(failures, errors, "{xml}");
    assert!(xml.contains(&format!("failures=\"{errors}\"")));
    assert_eq!(
        xml.matches("<testcase ").count(),
        xml.matches("</testcase>").count()
    );
    assert_eq!(xml.matches("<testcase ").count(), results.len());
    // Balanced and escaped: no raw `<` inside attribute values.
    for line in xml.lines().filter(|l| l.contains("message=\"")) {
        let attr = line
            .split("message=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or_default();
        assert!(
            !attr.contains('<') && !attr.contains('&')
                || attr.contains("&amp;")
                || attr.contains("&lt;"),
            "{line}"
        );
    }
}

/// A platform of `n` small projects.
fn many_projects(dir: &Path, n: usize) {
    write(
        dir,
        "plinth.yaml",
        "apiVersion: plinth.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: acme\nspec:\n  clusters:\n    - name: prod\n      kubernetesVersion: \"1.32\"\n      provider: onPrem\n",
    );
    for i in 0..n {
        write(
            dir,
            &format!("p{i}.yaml"),
            &format!(
                "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: p{i}\nspec:\n  owners: [a@acme.example, b@acme.example]\n"
            ),
        );
    }
}

#[test]
fn a_runaway_rule_costs_one_timeout_and_a_run_has_a_total_budget() {
    let tmp = tempfile::tempdir().expect("tmp");
    let repo = tmp.path().join("repo");
    many_projects(&repo, 20);
    let pol = tmp.path().join("pol");
    write(
        &pol,
        "loop.rego",
        "package main\n\ndeny_loop contains \"loop\" if {\n  count([1 | some i in numbers.range(1, 4000); some j in numbers.range(1, 4000); i != j]) < 0\n}\n",
    );
    let run = |extra: &[&str]| {
        let mut args = vec![
            "check",
            repo.to_str().expect("utf-8"),
            "--no-default-policies",
            "--policy",
            pol.to_str().expect("utf-8"),
            "--format",
            "json",
        ];
        args.extend_from_slice(extra);
        let (code, out, err) = plinth(&args, tmp.path());
        assert_eq!(code, 1, "{out}{err}");
        let v: serde_json::Value = serde_json::from_str(&out).expect("json");
        v["diagnostics"].as_array().expect("array").clone()
    };
    // Every input would run the loop: it is stopped once and then skipped, not 20 times.
    let diags = run(&["--policy-timeout-ms", "100"]);
    let stopped: Vec<&serde_json::Value> = diags
        .iter()
        .filter(|d| {
            d["message"]
                .as_str()
                .is_some_and(|m| m.contains("deny_loop") && m.contains("was stopped"))
        })
        .collect();
    assert!(
        !stopped.is_empty() && stopped.len() <= 2,
        "one report per engine that met it first: {diags:#?}"
    );
    assert!(
        stopped[0]["location"]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("loop.rego")),
        "{:#}",
        stopped[0]
    );
    // A run whose budget is spent stops with a located error naming the rule.
    let diags = run(&["--policy-timeout-ms", "5000", "--policy-budget-ms", "1"]);
    let budget = diags
        .iter()
        .find(|d| {
            d["message"]
                .as_str()
                .is_some_and(|m| m.contains("longer than their budget"))
        })
        .unwrap_or_else(|| panic!("{diags:#?}"));
    assert!(
        budget["message"]
            .as_str()
            .is_some_and(|m| m.contains("rule `deny_loop`")),
        "{budget}"
    );
    assert!(
        budget["location"]["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("loop.rego")),
        "{budget}"
    );
}
