//! What the shipped App templates do when applied (issue 14, finding 17), read from the built
//! objects: MLflow can write the bucket it is given (the official image has no cloud storage
//! client, mlflow/mlflow#8342), and an idle JupyterLab gives its GPU back instead of being
//! restarted by the kubelet (a StatefulSet restarts a container that exits, whatever its status).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{build, edit, files_under, named};
use serde_json::Value;

fn strs(v: &Value) -> Vec<&str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// MLflow with an artifact destination: its Deployment.
fn mlflow(destination: Option<&str>) -> Value {
    let mut files = files_under("tests/golden/build/app-mlflow/repo");
    if let Some(d) = destination {
        edit(
            &mut files,
            "apps/tracking.yaml",
            "  values:\n",
            &format!("  values:\n    artifactDestination: {d}\n"),
        );
    }
    let b = build(&files);
    named(&b.lowered, "Deployment", "tracking")
        .first()
        .copied()
        .cloned()
        .expect("the tracking Deployment")
}

#[test]
fn mlflow_can_write_its_bucket() {
    for (destination, client) in [
        ("s3://acme-mlflow/research", "boto3=="),
        ("gs://acme-mlflow/research", "google-cloud-storage=="),
        (
            "wasbs://mlflow@acme.blob.core.windows.net/research",
            "azure-storage-blob==",
        ),
    ] {
        let d = mlflow(Some(destination));
        let pod = &d["spec"]["template"]["spec"];
        let init = &pod["initContainers"][0];
        assert!(
            strs(&init["args"]).iter().any(|p| p.starts_with(client)),
            "{destination}: {init}"
        );
        assert!(strs(&init["command"]).contains(&"--target"));
        let server = &pod["containers"][0];
        assert!(
            strs(&server["args"])
                .contains(&format!("--artifacts-destination={destination}").as_str())
        );
        // The server imports what the init container installed.
        let path = server["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "PYTHONPATH")
            .map(|e| e["value"].as_str().unwrap().to_owned())
            .expect("PYTHONPATH");
        let mounted = |c: &Value| {
            c["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["mountPath"] == path.as_str())
        };
        assert!(mounted(init) && mounted(server), "{destination}");
    }
    // Artifacts on the volume need no client.
    let d = mlflow(Some("/mlflow/artifacts"));
    assert!(d["spec"]["template"]["spec"]["initContainers"].is_null());
}

#[test]
fn an_idle_notebook_releases_its_gpu() {
    let files = files_under("examples/repo");
    let b = build(&files);
    let sts = named(&b.lowered, "StatefulSet", "er-notebook")
        .first()
        .copied()
        .cloned()
        .expect("the notebook");
    let pod = &sts["spec"]["template"]["spec"];
    let gpu = pod["containers"][0]["resources"]["limits"]
        .as_object()
        .unwrap()
        .keys()
        .any(|k| k.starts_with("nvidia.com/"));
    assert!(gpu, "the example notebook holds a GPU");
    // plinth does not own `replicas`: scaling to zero is not drift a sync would undo.
    assert!(sts["spec"]["replicas"].is_null(), "{}", sts["spec"]);

    // The server stops when idle...
    let c = &pod["containers"][0];
    let args = strs(&c["args"]);
    assert!(
        args.iter()
            .any(|a| a.starts_with("--ServerApp.shutdown_no_activity_timeout="))
    );
    // ... and the launcher it runs under scales the StatefulSet to zero when it does.
    assert_eq!(args[..2], ["bash", "/usr/local/bin/plinth/launch.sh"]);
    let env = |name: &str| {
        c["env"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .map(|e| e["value"].as_str().unwrap().to_owned())
    };
    assert_eq!(env("PLINTH_STATEFULSET").as_deref(), Some("er-notebook"));
    let hooks = named(&b.lowered, "ConfigMap", "er-notebook-hooks")[0];
    let launch = hooks["data"]["launch.sh"].as_str().unwrap();
    assert!(launch.contains("start-notebook.py \"$@\"") && launch.contains("release.py"));
    let release = hooks["data"]["release.py"].as_str().unwrap();
    assert!(release.contains("/statefulsets/%s/scale") && release.contains("\"replicas\": 0"));

    // The pod's service account may scale exactly this StatefulSet, and nothing else.
    let role = named(&b.lowered, "Role", "er-notebook-idle")[0];
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": ["apps"], "resources": ["statefulsets/scale"], "resourceNames": ["er-notebook"], "verbs": ["get", "patch"]}])
    );
    let binding = named(&b.lowered, "RoleBinding", "er-notebook-idle")[0];
    assert_eq!(binding["roleRef"]["name"], "er-notebook-idle");
    assert_eq!(binding["subjects"][0]["name"], pod["serviceAccountName"]);
}
