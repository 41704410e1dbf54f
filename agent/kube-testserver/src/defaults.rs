//! Built-in defaulting: the fields the apiserver fills in when a client leaves them out.
//!
//! Defaulted fields are part of the stored object but not of an applier's managed fields,
//! which is what drift detection must tell apart from a real change. A subset of upstream:
//! - Namespace: label `kubernetes.io/metadata.name`, `spec.finalizers: [kubernetes]`,
//!   `status.phase: Active`;
//! - Service: `type`, `sessionAffinity`, an allocated `clusterIP`/`clusterIPs` (kept across
//!   updates), `ipFamilies`, `ipFamilyPolicy`, `internalTrafficPolicy`, ports' `protocol` and
//!   `targetPort`;
//! - Deployment: `replicas`, `revisionHistoryLimit`, `progressDeadlineSeconds`, `strategy`, and
//!   the pod template's `restartPolicy`, `terminationGracePeriodSeconds`, `dnsPolicy`,
//!   `schedulerName`, `securityContext` and per container `imagePullPolicy`,
//!   `terminationMessagePath`, `terminationMessagePolicy`, ports' `protocol`;
//! - StatefulSet: `replicas`, `revisionHistoryLimit`, `podManagementPolicy`, `updateStrategy`,
//!   `persistentVolumeClaimRetentionPolicy` and the pod template's defaults; Job: `backoffLimit`,
//!   `completionMode`, `suspend`, `completions`, `parallelism`; CronJob: `concurrencyPolicy`,
//!   `suspend`, the history limits and its job template's defaults; Pod: the pod defaults and
//!   `status.phase: Pending`;
//! - Secret: `type: Opaque`; PersistentVolumeClaim: `volumeMode`, `status.phase: Pending`;
//!   PersistentVolume: `persistentVolumeReclaimPolicy`, `volumeMode`.

use serde_json::{Map, Value, json};

use crate::registry::KindInfo;

/// Set `key` in `m` unless present.
fn default(m: &mut Map<String, Value>, key: &str, v: Value) {
    if !m.contains_key(key) || m.get(key).is_some_and(Value::is_null) {
        m.insert(key.to_string(), v);
    }
}

fn object<'v>(m: &'v mut Map<String, Value>, key: &str) -> Option<&'v mut Map<String, Value>> {
    if !m.contains_key(key) {
        m.insert(key.to_string(), Value::Object(Map::new()));
    }
    m.get_mut(key).and_then(Value::as_object_mut)
}

/// Fill in defaults. `live` is the stored object on updates (allocated values are kept);
/// `allocate_ip` hands out a cluster IP.
pub fn apply(
    kind: &KindInfo,
    obj: &mut Value,
    live: Option<&Value>,
    allocate_ip: &mut dyn FnMut() -> String,
) {
    if !kind.builtin {
        return;
    }
    let name = obj
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    match (kind.group.as_str(), kind.kind.as_str()) {
        ("", "Namespace") => namespace(root, &name),
        ("", "Service") => {
            if let Some(spec) = object(root, "spec") {
                service(spec, live, allocate_ip);
            }
        }
        ("apps", "Deployment") => {
            if let Some(spec) = object(root, "spec") {
                deployment(spec);
            }
        }
        ("apps", "StatefulSet") => {
            if let Some(spec) = object(root, "spec") {
                stateful_set(spec);
            }
        }
        ("batch", "Job") => {
            let Some(spec) = object(root, "spec") else {
                return;
            };
            job_spec(spec);
        }
        ("batch", "CronJob") => {
            if let Some(spec) = object(root, "spec") {
                cron_job(spec);
            }
        }
        ("", "Pod") => {
            if let Some(spec) = object(root, "spec") {
                pod_spec(spec);
            }
            if let Some(status) = object(root, "status") {
                default(status, "phase", json!("Pending"));
            }
        }
        ("", "Secret") => default(root, "type", json!("Opaque")),
        ("", "PersistentVolumeClaim") => {
            if let Some(spec) = object(root, "spec") {
                default(spec, "volumeMode", json!("Filesystem"));
            }
            if let Some(status) = object(root, "status") {
                default(status, "phase", json!("Pending"));
            }
        }
        ("", "PersistentVolume") => {
            if let Some(spec) = object(root, "spec") {
                default(spec, "persistentVolumeReclaimPolicy", json!("Retain"));
                default(spec, "volumeMode", json!("Filesystem"));
            }
        }
        _ => {}
    }
}

/// Namespace: the name label, the `kubernetes` finalizer, phase `Active`.
fn namespace(root: &mut Map<String, Value>, name: &str) {
    if let Some(meta) = object(root, "metadata")
        && let Some(labels) = object(meta, "labels")
    {
        labels.insert("kubernetes.io/metadata.name".into(), json!(name));
    }
    if let Some(spec) = object(root, "spec") {
        default(spec, "finalizers", json!(["kubernetes"]));
    }
    if let Some(status) = object(root, "status") {
        default(status, "phase", json!("Active"));
    }
}

/// Service: type, session affinity, a cluster IP (the live one kept), families, ports.
fn service(
    spec: &mut Map<String, Value>,
    live: Option<&Value>,
    allocate_ip: &mut dyn FnMut() -> String,
) {
    default(spec, "type", json!("ClusterIP"));
    default(spec, "sessionAffinity", json!("None"));
    let external = spec.get("type").and_then(Value::as_str) == Some("ExternalName");
    if !external {
        let live_ip = live
            .and_then(|l| l.pointer("/spec/clusterIP"))
            .cloned()
            .filter(|v| v.as_str().is_some_and(|s| !s.is_empty()));
        if !spec.contains_key("clusterIP") {
            let ip = live_ip.unwrap_or_else(|| json!(allocate_ip()));
            spec.insert("clusterIP".into(), ip);
        }
        if !spec.contains_key("clusterIPs") {
            let ip = spec.get("clusterIP").cloned().unwrap_or(Value::Null);
            spec.insert("clusterIPs".into(), json!([ip]));
        }
        default(spec, "ipFamilies", json!(["IPv4"]));
        default(spec, "ipFamilyPolicy", json!("SingleStack"));
        default(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if let Some(Value::Array(ports)) = spec.get_mut("ports") {
        for p in ports.iter_mut().filter_map(Value::as_object_mut) {
            default(p, "protocol", json!("TCP"));
            if let Some(port) = p.get("port").cloned() {
                default(p, "targetPort", port);
            }
        }
    }
}

/// Deployment: replicas, history, progress deadline, strategy, pod template.
fn deployment(spec: &mut Map<String, Value>) {
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "progressDeadlineSeconds", json!(600));
    if let Some(strategy) = object(spec, "strategy") {
        default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = object(strategy, "rollingUpdate")
        {
            default(ru, "maxUnavailable", json!("25%"));
            default(ru, "maxSurge", json!("25%"));
        }
    }
    if let Some(template) = object(spec, "template")
        && let Some(pod) = object(template, "spec")
    {
        pod_spec(pod);
    }
}

/// StatefulSet: replicas, history, pod management, update strategy, PVC retention, pod template.
fn stateful_set(spec: &mut Map<String, Value>) {
    default(spec, "replicas", json!(1));
    default(spec, "revisionHistoryLimit", json!(10));
    default(spec, "podManagementPolicy", json!("OrderedReady"));
    if let Some(strategy) = object(spec, "updateStrategy") {
        default(strategy, "type", json!("RollingUpdate"));
        if strategy.get("type").and_then(Value::as_str) == Some("RollingUpdate")
            && let Some(ru) = object(strategy, "rollingUpdate")
        {
            default(ru, "partition", json!(0));
        }
    }
    if let Some(policy) = object(spec, "persistentVolumeClaimRetentionPolicy") {
        default(policy, "whenDeleted", json!("Retain"));
        default(policy, "whenScaled", json!("Retain"));
    }
    if let Some(template) = object(spec, "template")
        && let Some(pod) = object(template, "spec")
    {
        pod_spec(pod);
    }
}

/// CronJob: concurrency, suspend, history limits, job template.
fn cron_job(spec: &mut Map<String, Value>) {
    default(spec, "concurrencyPolicy", json!("Allow"));
    default(spec, "suspend", json!(false));
    default(spec, "successfulJobsHistoryLimit", json!(3));
    default(spec, "failedJobsHistoryLimit", json!(1));
    if let Some(jt) = object(spec, "jobTemplate")
        && let Some(js) = object(jt, "spec")
    {
        job_spec(js);
    }
}

fn job_spec(spec: &mut Map<String, Value>) {
    default(spec, "backoffLimit", json!(6));
    default(spec, "completionMode", json!("NonIndexed"));
    default(spec, "suspend", json!(false));
    if !spec.contains_key("completions") && !spec.contains_key("parallelism") {
        spec.insert("completions".into(), json!(1));
    }
    default(spec, "parallelism", json!(1));
    if let Some(template) = object(spec, "template")
        && let Some(pod) = object(template, "spec")
    {
        pod_spec(pod);
    }
}

fn pod_spec(pod: &mut Map<String, Value>) {
    default(pod, "restartPolicy", json!("Always"));
    default(pod, "terminationGracePeriodSeconds", json!(30));
    default(pod, "dnsPolicy", json!("ClusterFirst"));
    default(pod, "schedulerName", json!("default-scheduler"));
    default(pod, "securityContext", json!({}));
    for list in ["containers", "initContainers"] {
        let Some(Value::Array(containers)) = pod.get_mut(list) else {
            continue;
        };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            let latest = c.get("image").and_then(Value::as_str).is_some_and(|i| {
                let tail = i.rsplit('/').next().unwrap_or(i);
                !tail.contains(':') || tail.ends_with(":latest")
            }) && !c
                .get("image")
                .and_then(Value::as_str)
                .is_some_and(|i| i.contains('@'));
            default(
                c,
                "imagePullPolicy",
                json!(if latest { "Always" } else { "IfNotPresent" }),
            );
            default(c, "terminationMessagePath", json!("/dev/termination-log"));
            default(c, "terminationMessagePolicy", json!("File"));
            default(c, "resources", json!({}));
            if let Some(Value::Array(ports)) = c.get_mut("ports") {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    default(p, "protocol", json!("TCP"));
                }
            }
        }
    }
}
