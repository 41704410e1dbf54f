//! The real `kubectl` against the server: the interoperability recipe of the protocol note,
//! each step asserted as a real cluster behaves.
//!
//! kubectl is `$PLINTH_KUBECTL` or `/usr/lib/google-cloud-sdk/bin/kubectl.1.32`; a missing
//! kubectl fails the tests (they are never skipped).

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use kube_testserver::TestServer;
use serde_json::{Value, json};

const DEFAULT_KUBECTL: &str = "/usr/lib/google-cloud-sdk/bin/kubectl.1.32";
/// Longest any one kubectl call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

fn kubectl_bin() -> PathBuf {
    let bin = std::env::var_os("PLINTH_KUBECTL")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KUBECTL));
    assert!(
        bin.is_file(),
        "kubectl not found at `{}`: install the Google Cloud SDK kubectl or set PLINTH_KUBECTL",
        bin.display()
    );
    bin
}

/// A running kubectl, killed if the test fails before waiting for it.
struct Spawned(Option<std::process::Child>);

impl Spawned {
    fn take(mut self) -> std::process::Child {
        self.0.take().unwrap()
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// kubectl bound to one server, with a fresh cache directory per call.
struct Kubectl {
    bin: PathBuf,
    dir: tempfile::TempDir,
    calls: AtomicUsize,
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn ok(&self) -> &Run {
        assert_eq!(
            self.code, 0,
            "stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("{e}: {}", self.stdout))
    }
}

impl Kubectl {
    fn new(server: &TestServer) -> Kubectl {
        let dir = tempfile::tempdir().unwrap();
        server
            .write_kubeconfig(&dir.path().join("kubeconfig"))
            .unwrap();
        Kubectl {
            bin: kubectl_bin(),
            dir,
            calls: AtomicUsize::new(0),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn spawn(&self, args: &[&str]) -> Spawned {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        let cache = self.path(&format!("cache-{n}"));
        Command::new(&self.bin)
            .arg("--kubeconfig")
            .arg(self.path("kubeconfig"))
            .arg("--cache-dir")
            .arg(&cache)
            .args(args)
            .env_remove("KUBECONFIG")
            .env("HOME", self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map(|c| Spawned(Some(c)))
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", self.bin.display()))
    }

    fn finish(child: Spawned, args: &[&str]) -> Run {
        let mut child = child.take();
        let deadline = Instant::now() + CALL_TIMEOUT;
        loop {
            match child.try_wait().unwrap() {
                Some(_) => break,
                None if Instant::now() > deadline => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("kubectl {args:?} did not finish within {CALL_TIMEOUT:?}");
                }
                None => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let Output {
            status,
            stdout,
            stderr,
        } = child.wait_with_output().unwrap();
        Run {
            code: status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&stdout).into_owned(),
            stderr: String::from_utf8_lossy(&stderr).into_owned(),
        }
    }

    fn run(&self, args: &[&str]) -> Run {
        Kubectl::finish(self.spawn(args), args)
    }
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

const ALL: &str = r#"apiVersion: v1
kind: Namespace
metadata:
  name: x
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: c
  namespace: x
  labels:
    app: "y"
data:
  key: value
  other: "1"
---
apiVersion: v1
kind: ResourceQuota
metadata:
  name: q
  namespace: x
spec:
  hard:
    requests.cpu: "4"
---
apiVersion: kueue.x-k8s.io/v1beta2
kind: LocalQueue
metadata:
  name: lq
  namespace: x
spec:
  clusterQueue: cq
"#;

fn rvs(s: &TestServer) -> Vec<String> {
    [
        ("v1", "Namespace", None, "x"),
        ("v1", "ConfigMap", Some("x"), "c"),
        ("v1", "ResourceQuota", Some("x"), "q"),
        ("kueue.x-k8s.io/v1beta2", "LocalQueue", Some("x"), "lq"),
    ]
    .iter()
    .map(|(av, k, ns, n)| {
        s.get(av, k, *ns, n).unwrap()["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string()
    })
    .collect()
}

#[test]
fn server_side_apply_get_diff_conflicts() {
    let s = TestServer::start_blocking().unwrap();
    let k = Kubectl::new(&s);
    let all = k.file("all.yaml", ALL);

    // 1. apply prints `serverside-applied`; again, nothing is written.
    let r = k.run(&[
        "apply",
        "--server-side",
        "--field-manager=plinth",
        "-f",
        p(&all),
    ]);
    r.ok();
    assert_eq!(
        r.stdout,
        "namespace/x serverside-applied\nconfigmap/c serverside-applied\nresourcequota/q serverside-applied\nlocalqueue.kueue.x-k8s.io/lq serverside-applied\n"
    );
    let before = rvs(&s);
    let writes = s.total_writes();
    k.run(&[
        "apply",
        "--server-side",
        "--field-manager=plinth",
        "-f",
        p(&all),
    ])
    .ok();
    assert_eq!(rvs(&s), before);
    assert_eq!(s.total_writes(), writes);
    let cm = s.get("v1", "ConfigMap", Some("x"), "c").unwrap();
    assert_eq!(cm["metadata"]["managedFields"][0]["manager"], "plinth");
    assert_eq!(cm["metadata"]["managedFields"][0]["operation"], "Apply");

    // 2. get.
    let r = k.run(&["get", "ns"]);
    r.ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(
        lines[0].starts_with("NAME") && lines[0].contains("STATUS") && lines[0].contains("AGE"),
        "{}",
        r.stdout
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("x ") && l.contains("Active")),
        "{}",
        r.stdout
    );
    assert!(
        lines.iter().any(|l| l.starts_with("default ")),
        "{}",
        r.stdout
    );
    let r = k.run(&["get", "configmaps", "-n", "x", "-l", "app=y", "-o", "json"]);
    let list = r.ok().json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["metadata"]["name"], "c");
    assert_eq!(list["items"][0]["data"]["other"], "1");
    let r = k.run(&["get", "configmaps", "-n", "x", "-l", "app!=y", "-o", "name"]);
    assert!(!r.ok().stdout.contains("configmap/c"));
    let r = k.run(&["get", "localqueues", "-A"]);
    assert!(r.ok().stdout.contains("lq"), "{}", r.stdout);

    // 3. dry-run apply of a changed file: the removed key is gone in the answer only.
    let changed = k.file("changed.yaml", &ALL.replace("  other: \"1\"\n", ""));
    let r = k.run(&[
        "apply",
        "--server-side",
        "--field-manager=plinth",
        "--dry-run=server",
        "-f",
        p(&changed),
        "-o",
        "json",
        "--show-managed-fields",
    ]);
    let answer = r.ok().json();
    let items = answer["items"].as_array().unwrap();
    let cm_answer = items.iter().find(|i| i["kind"] == "ConfigMap").unwrap();
    assert_eq!(cm_answer["data"], json!({"key": "value"}));
    assert!(cm_answer["metadata"]["managedFields"].is_array());
    assert_eq!(cm_answer["metadata"]["resourceVersion"], before[1].as_str());
    assert_eq!(
        s.get("v1", "ConfigMap", Some("x"), "c").unwrap()["data"]["other"],
        "1"
    );
    assert_eq!(s.total_writes(), writes);

    // 4. diff: 1 on a change, 0 without.
    let r = k.run(&[
        "diff",
        "--server-side",
        "--field-manager=plinth",
        "-f",
        p(&changed),
    ]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("-  other: \"1\""), "{}", r.stdout);
    let r = k.run(&[
        "diff",
        "--server-side",
        "--field-manager=plinth",
        "-f",
        p(&all),
    ]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.stdout, "");

    // 5. an edit by someone else, then a conflict; --force-conflicts takes the field.
    let r = k.run(&[
        "patch",
        "cm",
        "c",
        "-n",
        "x",
        "--type=merge",
        "-p",
        r#"{"data":{"key":"edited","extra":"x"}}"#,
    ]);
    assert_eq!(r.ok().stdout, "configmap/c patched\n");
    let r = k.run(&[
        "apply",
        "--server-side",
        "--field-manager=plinth",
        "-f",
        p(&all),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(
            r#"Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .data.key"#
        ),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("--force-conflicts"), "{}", r.stderr);
    assert_eq!(
        s.get("v1", "ConfigMap", Some("x"), "c").unwrap()["data"]["key"],
        "edited"
    );
    let r = k.run(&[
        "apply",
        "--server-side",
        "--field-manager=plinth",
        "--force-conflicts",
        "-f",
        p(&all),
    ]);
    assert!(r.ok().stdout.contains("configmap/c serverside-applied"));
    let cm = s.get("v1", "ConfigMap", Some("x"), "c").unwrap();
    assert_eq!(
        cm["data"],
        json!({"key": "value", "other": "1", "extra": "x"})
    );
    let owners: Vec<(String, Value)> = cm["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap().to_string(),
                e["fieldsV1"].clone(),
            )
        })
        .collect();
    assert_eq!(
        owners,
        vec![
            (
                "plinth".to_string(),
                json!({"f:data": {"f:key": {}, "f:other": {}}, "f:metadata": {"f:labels": {"f:app": {}}}})
            ),
            (
                "kubectl-patch".to_string(),
                json!({"f:data": {"f:extra": {}}})
            ),
        ]
    );
}

#[test]
fn create_invalid_delete() {
    let s = TestServer::start_blocking().unwrap();
    let k = Kubectl::new(&s);
    // Typed generators (`kubectl create namespace x`) send protobuf, which is not served.
    let r = k.run(&["create", "namespace", "x"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("UnsupportedMediaType"), "{}", r.stderr);
    let ns = k.file(
        "ns.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n",
    );
    assert_eq!(
        k.run(&["create", "-f", p(&ns)]).ok().stdout,
        "namespace/x created\n"
    );
    let cm = k.file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: d\n  namespace: x\ndata:\n  a: \"1\"\n",
    );

    // 6. create twice; a bad name.
    let r = k.run(&["create", "-f", p(&cm)]);
    assert_eq!(r.ok().stdout, "configmap/d created\n");
    let created = s.get("v1", "ConfigMap", Some("x"), "d").unwrap();
    assert_eq!(
        created["metadata"]["managedFields"][0]["manager"],
        "kubectl-create"
    );
    let r = k.run(&["create", "-f", p(&cm)]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains(r#"Error from server (AlreadyExists): error when creating "#)
            && r.stderr.contains(r#"configmaps "d" already exists"#),
        "{}",
        r.stderr
    );
    let bad = k.file(
        "bad.yaml",
        &std::fs::read_to_string(&cm)
            .unwrap()
            .replace("name: d", "name: Bad_Name"),
    );
    let r = k.run(&["create", "-f", p(&bad)]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(r#"The ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of"#),
        "{}",
        r.stderr
    );
    let r = k.run(&["apply", "--server-side", "-f", p(&bad)]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(r#"The ConfigMap "Bad_Name" is invalid"#),
        "{}",
        r.stderr
    );

    // 7. delete: a dry run keeps the object; twice: NotFound the second time.
    let r = k.run(&["delete", "configmap", "d", "-n", "x", "--dry-run=server"]);
    assert!(
        r.ok().stdout.contains("deleted (server dry run)"),
        "{}",
        r.stdout
    );
    assert!(s.get("v1", "ConfigMap", Some("x"), "d").is_some());
    let r = k.run(&["delete", "configmap", "d", "-n", "x"]);
    assert_eq!(r.ok().stdout, "configmap \"d\" deleted\n");
    assert!(s.get("v1", "ConfigMap", Some("x"), "d").is_none());
    let r = k.run(&["delete", "configmap", "d", "-n", "x"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr
            .contains(r#"Error from server (NotFound): configmaps "d" not found"#),
        "{}",
        r.stderr
    );

    // A dry-run apply into a namespace that does not exist.
    let elsewhere = k.file(
        "elsewhere.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: e\n  namespace: nope\n",
    );
    let r = k.run(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        p(&elsewhere),
    ]);
    assert_eq!(r.code, 1);
    assert!(
        r.stderr.contains(r#"namespaces "nope" not found"#),
        "{}",
        r.stderr
    );
}

#[test]
fn delete_waits_on_a_watch_until_finalizers_go() {
    let s = TestServer::start_blocking().unwrap();
    let k = Kubectl::new(&s);
    let f = k.file(
        "f.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: f\n  namespace: x\n  finalizers: [\"example.com/hold\"]\n",
    );
    k.run(&[
        "apply",
        "--server-side",
        "--field-manager=plinth",
        "-f",
        p(&f),
    ])
    .ok();
    let args = ["delete", "configmap", "f", "-n", "x", "--timeout=30s"];
    let child = k.spawn(&args);
    // kubectl now waits on a watch for the object to go.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !s
        .requests()
        .iter()
        .any(|r| r.method == "GET" && r.target.contains("watch=true"))
    {
        assert!(
            Instant::now() < deadline,
            "kubectl never watched: {:?}",
            s.requests()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let held = s.get("v1", "ConfigMap", Some("x"), "f").unwrap();
    assert!(held["metadata"]["deletionTimestamp"].is_string());
    let r = k.run(&[
        "patch",
        "cm",
        "f",
        "-n",
        "x",
        "--type=merge",
        "-p",
        r#"{"metadata":{"finalizers":null}}"#,
    ]);
    r.ok();
    let r = Kubectl::finish(child, &args);
    assert_eq!(r.ok().stdout, "configmap \"f\" deleted\n");
    assert!(s.get("v1", "ConfigMap", Some("x"), "f").is_none());
}

#[test]
fn client_side_apply_and_strategic_patch() {
    let s = TestServer::start_blocking().unwrap();
    let k = Kubectl::new(&s);
    let d = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: default
spec:
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: main
        image: nginx:1.27
      - name: side
        image: busybox:1.36
"#;
    let file = k.file("d.yaml", d);
    let r = k.run(&["apply", "-f", p(&file)]);
    assert_eq!(r.ok().stdout, "deployment.apps/web created\n");
    let r = k.run(&["apply", "-f", p(&file)]);
    assert_eq!(r.ok().stdout, "deployment.apps/web unchanged\n");
    let file2 = k.file("d2.yaml", &d.replace("nginx:1.27", "nginx:1.28"));
    let r = k.run(&["apply", "-f", p(&file2)]);
    assert_eq!(r.ok().stdout, "deployment.apps/web configured\n");
    let live = s
        .get("apps/v1", "Deployment", Some("default"), "web")
        .unwrap();
    let cs = &live["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        (cs[0]["image"].as_str(), cs[1]["image"].as_str()),
        (Some("nginx:1.28"), Some("busybox:1.36"))
    );
    assert_eq!(live["metadata"]["generation"], 2);
    let r = k.run(&[
        "patch",
        "deployment",
        "web",
        "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"side","image":"busybox:1.37"}]}}}}"#,
    ]);
    r.ok();
    let live = s
        .get("apps/v1", "Deployment", Some("default"), "web")
        .unwrap();
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"][1]["image"],
        "busybox:1.37"
    );
    assert_eq!(
        live["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let r = k.run(&[
        "get",
        "deploy",
        "web",
        "-o",
        "jsonpath={.spec.revisionHistoryLimit}",
    ]);
    assert_eq!(r.ok().stdout, "10");
    let r = k.run(&["scale", "deployment", "web", "--replicas=3"]);
    assert_eq!(r.ok().stdout, "deployment.apps/web scaled\n");
    let live = s
        .get("apps/v1", "Deployment", Some("default"), "web")
        .unwrap();
    assert_eq!(live["spec"]["replicas"], 3);
    let scaler = live["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["subresource"] == "scale")
        .unwrap();
    // No fieldManager is sent: the manager is the user agent's program name.
    assert!(
        scaler["manager"].as_str().unwrap().starts_with("kubectl"),
        "{scaler}"
    );
    assert_eq!(scaler["fieldsV1"], json!({"f:spec": {"f:replicas": {}}}));
}
