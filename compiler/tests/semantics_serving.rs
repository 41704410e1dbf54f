//! Serving semantics of built output: what the model-serving objects *do* once applied, read
//! with the upstream rules they rely on (KServe 0.16+, Argo Rollouts 1.7+, Istio 1.22+,
//! ingress-nginx 1.x, Pod Security admission), on `examples/repo` and variants of it.
//!
//! Upstream facts these assertions rely on:
//! - KServe injects a `storage-initializer` init container whose security context comes only
//!   from `ClusterStorageContainer/default`, which has none upstream (kserve/kserve#5373);
//! - KServe's deployment mode is the `serving.kserve.io/deploymentMode` annotation
//!   (`Standard`/`Knative`); `Standard` has no canary traffic split and scales with an HPA on
//!   cpu/memory; Knative refuses node selectors and tolerations unless feature flags are on;
//! - Istio mirrors with `http[].mirror` + `mirrorPercentage`, splits with route weights;
//! - Argo's first revision of a Rollout goes to 100% and skips the steps; with
//!   `trafficRouting` the weights are exact, without it they follow replica counts;
//! - NVIDIA's Triton images declare no `USER` (uid 1000 is `triton-server`), and `tritonserver`
//!   needs `--model-repository`; readiness is `/v2/health/ready`;
//! - ingress-nginx enforces TLS and `auth-*` annotations only on an Ingress of its class.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;

use common::{build, build_errors, edit, example, find, objects, of_kind};
use plinth::diag::Code;
use serde_json::Value;

const PROD: &str = "prod-a";

/// Every container (init containers included) of a pod spec.
fn containers(pod: &Value) -> Vec<&Value> {
    let mut v: Vec<&Value> = Vec::new();
    for key in ["containers", "initContainers"] {
        if let Some(a) = pod[key].as_array() {
            v.extend(a.iter());
        }
    }
    v
}

/// Whether a pod passes the `restricted` Pod Security level (the checks plinth can see).
fn restricted_ok(pod: &Value, containers: &[&Value]) -> Result<(), String> {
    let psc = &pod["securityContext"];
    for c in containers {
        let sc = &c["securityContext"];
        if sc["allowPrivilegeEscalation"] != false {
            return Err(format!("{}: allowPrivilegeEscalation", c["name"]));
        }
        if !sc["capabilities"]["drop"]
            .as_array()
            .is_some_and(|d| d.iter().any(|x| x == "ALL"))
        {
            return Err(format!("{}: capabilities.drop ALL", c["name"]));
        }
        if psc["runAsNonRoot"] != true && sc["runAsNonRoot"] != true {
            return Err(format!("{}: runAsNonRoot", c["name"]));
        }
    }
    if psc["seccompProfile"]["type"] != "RuntimeDefault" {
        return Err("seccompProfile".to_owned());
    }
    Ok(())
}

fn codes(errors: &[plinth::diag::Diagnostic]) -> Vec<Code> {
    errors.iter().map(|d| d.code).collect()
}

fn ann<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v["metadata"]["annotations"][key].as_str()
}

// Finding 9 -------------------------------------------------------------------------------

#[test]
fn kserve_in_restricted_namespaces_is_refused_without_a_secured_storage_initializer() {
    let mut files = example();
    edit(
        &mut files,
        "plinth.yaml",
        "      restrictedStorageInitializer: true\n",
        "      restrictedStorageInitializer: false\n",
    );
    let errors = build_errors(&files);
    let e150: Vec<_> = errors
        .iter()
        .filter(|d| d.code == Code::StorageInitializer)
        .collect();
    // Both KServe rollouts of the example run in restricted namespaces.
    assert_eq!(e150.len(), 2, "{errors:#?}");
    for d in e150 {
        let p = d.primary.as_ref().expect("located");
        assert!(p.span.file.starts_with("models/"), "{p:?}");
    }
}

#[test]
fn every_model_pod_in_a_restricted_namespace_is_restricted_compliant() {
    let b = build(&example());
    let mut seen = 0;
    for m in objects(&b.lowered, PROD) {
        let (pod, cs): (&Value, Vec<&Value>) = match m.key.kind.as_str() {
            "Deployment" | "Rollout" => {
                let pod = &m.object["spec"]["template"]["spec"];
                (pod, containers(pod))
            }
            "InferenceService" => {
                let p = &m.object["spec"]["predictor"];
                let mut cs = containers(p);
                if p["model"].is_object() {
                    let mut model = p["model"].clone();
                    model["name"] = Value::from("kserve-container");
                    cs.push(Box::leak(Box::new(model)));
                }
                (p, cs)
            }
            _ => continue,
        };
        let ns = m.key.namespace.as_deref().unwrap_or_default();
        let level = b.specs.projects.get(ns).and_then(|p| p.spec.pod_security);
        if level.is_some_and(|l| l != plinth::model::PodSecurityLevel::Restricted) {
            continue;
        }
        if m.key.kind != "InferenceService" && ns == "plinth-system" {
            continue;
        }
        restricted_ok(pod, &cs).unwrap_or_else(|e| panic!("{}: {e}", m.key));
        seen += 1;
    }
    assert!(seen >= 6, "only {seen} model workloads checked");
    // The injected storage initializer is secured by the declared ClusterStorageContainer.
    assert!(
        b.specs
            .platform
            .as_ref()
            .unwrap()
            .spec
            .serving
            .kserve
            .restricted_storage_initializer
    );
}

// Finding 10 ------------------------------------------------------------------------------

#[test]
fn shadow_has_a_real_mirror() {
    let b = build(&example());
    assert!(b.diagnostics.is_empty(), "{:#?}", b.diagnostics);
    let vs = find(
        &b.lowered,
        PROD,
        "VirtualService",
        Some("er-capacity"),
        "er-arrivals-forecast",
    )
    .expect("the shadow rollout's VirtualService");
    let http = &vs["spec"]["http"][0];
    assert_eq!(
        vs["spec"]["hosts"][0],
        "er-arrivals-forecast-predictor.er-capacity.svc.cluster.local"
    );
    assert_eq!(
        http["route"][0]["destination"]["host"],
        vs["spec"]["hosts"][0]
    );
    assert_eq!(http["route"][0]["weight"], 100);
    assert_eq!(
        http["mirror"]["host"],
        "er-arrivals-forecast-shadow-predictor.er-capacity.svc.cluster.local"
    );
    assert_eq!(http["mirrorPercentage"]["value"], 50.0);
    // The mirror target exists and serves the candidate.
    let shadow = find(
        &b.lowered,
        PROD,
        "InferenceService",
        Some("er-capacity"),
        "er-arrivals-forecast-shadow",
    )
    .expect("shadow InferenceService");
    assert!(
        shadow["spec"]["predictor"]["model"]["storageUri"]
            .as_str()
            .unwrap()
            .contains("/v14/")
    );
}

#[test]
fn shadow_without_a_mesh_is_refused() {
    let mut files = example();
    edit(&mut files, "plinth.yaml", "    mesh: istio\n", "");
    let errors = build_errors(&files);
    let d = errors
        .iter()
        .find(|d| d.code == Code::TrafficRouting && d.message.contains("shadow"))
        .unwrap_or_else(|| panic!("{errors:#?}"));
    let p = d.primary.as_ref().unwrap();
    assert_eq!(p.span.file.as_ref(), "models/er-arrivals-forecast.yaml");
    assert_eq!(p.field.as_deref(), Some("spec.traffic.strategy"));
}

// Finding 11 ------------------------------------------------------------------------------

#[test]
fn kserve_canary_renders_both_versions_and_routes_the_promised_weight() {
    let b = build(&example());
    let l = &b.lowered;
    let stable = find(
        l,
        PROD,
        "InferenceService",
        Some("bed-management"),
        "bed-forecast",
    )
    .unwrap();
    let canary = find(
        l,
        PROD,
        "InferenceService",
        Some("bed-management"),
        "bed-forecast-canary",
    )
    .unwrap();
    assert!(
        stable["spec"]["predictor"]["model"]["storageUri"]
            .as_str()
            .unwrap()
            .ends_with("/v8/")
    );
    assert!(
        canary["spec"]["predictor"]["model"]["storageUri"]
            .as_str()
            .unwrap()
            .ends_with("/v9/")
    );
    for isvc in [stable, canary] {
        assert!(
            isvc["spec"]["predictor"]
                .get("canaryTrafficPercent")
                .is_none(),
            "no revision-history canary"
        );
    }
    let vs = find(
        l,
        PROD,
        "VirtualService",
        Some("bed-management"),
        "bed-forecast",
    )
    .unwrap();
    let route = vs["spec"]["http"][0]["route"].as_array().unwrap();
    let weights: BTreeMap<&str, u64> = route
        .iter()
        .map(|r| {
            (
                r["destination"]["host"].as_str().unwrap(),
                r["weight"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        weights["bed-forecast-predictor.bed-management.svc.cluster.local"],
        90
    );
    assert_eq!(
        weights["bed-forecast-canary-predictor.bed-management.svc.cluster.local"],
        10
    );
}

#[test]
fn argo_canary_has_traffic_routing_with_exact_weights() {
    let b = build(&example());
    let l = &b.lowered;
    let ro = find(l, PROD, "Rollout", Some("er-capacity"), "er-length-of-stay").unwrap();
    let c = &ro["spec"]["strategy"]["canary"];
    let vs_name = c["trafficRouting"]["istio"]["virtualService"]["name"]
        .as_str()
        .unwrap();
    let route_name = &c["trafficRouting"]["istio"]["virtualService"]["routes"][0];
    let vs = find(l, PROD, "VirtualService", Some("er-capacity"), vs_name)
        .expect("the routed VirtualService");
    let http = vs["spec"]["http"].as_array().unwrap();
    let route = http
        .iter()
        .find(|h| &h["name"] == route_name)
        .expect("named route");
    let hosts: Vec<&str> = route["route"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["destination"]["host"].as_str().unwrap())
        .collect();
    // Argo moves weight between exactly its stable and canary Services.
    assert_eq!(
        hosts,
        [
            format!(
                "{}.er-capacity.svc.cluster.local",
                c["stableService"].as_str().unwrap()
            ),
            format!(
                "{}.er-capacity.svc.cluster.local",
                c["canaryService"].as_str().unwrap()
            ),
        ]
    );
    assert_eq!(c["steps"][0]["setWeight"], 10);
}

#[test]
fn private_canary_without_a_mesh_is_refused() {
    let mut files = example();
    edit(&mut files, "plinth.yaml", "    mesh: istio\n", "");
    let errors = build_errors(&files);
    let files_hit: Vec<&str> = errors
        .iter()
        .filter(|d| d.code == Code::TrafficRouting && d.message.contains("canary"))
        .map(|d| d.primary.as_ref().unwrap().span.file.as_ref())
        .collect();
    assert!(
        files_hit.contains(&"models/bed-forecast.yaml"),
        "{errors:#?}"
    );
    assert!(
        files_hit.contains(&"models/er-length-of-stay.yaml"),
        "{errors:#?}"
    );
}

// Finding 12 ------------------------------------------------------------------------------

#[test]
fn triton_runs_as_its_user_with_a_repository_and_a_readiness_probe() {
    let b = build(&example());
    let mut seen = 0;
    for m in objects(&b.lowered, PROD) {
        if m.key.kind != "Deployment" || !m.key.name.starts_with("chest-xray-triage") {
            continue;
        }
        let pod = &m.object["spec"]["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsUser"], 1000, "{}", m.key);
        let c = &pod["containers"][0];
        let args: Vec<&str> = c["args"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let repo = args
            .iter()
            .find_map(|a| a.strip_prefix("--model-repository="))
            .unwrap_or_else(|| panic!("{}: no --model-repository", m.key));
        assert!(repo.starts_with("gs://"), "{repo}");
        let env_uri = c["env"][0]["value"].as_str().unwrap();
        assert_eq!(repo, env_uri, "the version's own repository");
        assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/v2/health/ready");
        assert_eq!(
            c["readinessProbe"]["httpGet"]["port"],
            c["ports"][0]["containerPort"]
        );
        seen += 1;
    }
    assert_eq!(seen, 2, "both versions of the blue-green Triton rollout");
}

// Finding 13 ------------------------------------------------------------------------------

#[test]
fn public_endpoints_have_tls_a_class_and_authentication() {
    let b = build(&example());
    // The model endpoints' Ingresses (Apps have their own templates).
    let ingresses: Vec<&Value> = objects(&b.lowered, PROD)
        .iter()
        .filter(|m| m.key.kind == "Ingress" && m.origin.kind == plinth::model::Kind::ModelRollout)
        .map(|m| &*m.object)
        .collect();
    assert!(!ingresses.is_empty());
    for ing in ingresses {
        let name = &ing["metadata"]["name"];
        assert_eq!(ing["spec"]["ingressClassName"], "nginx", "{name}");
        let host = ing["spec"]["rules"][0]["host"].as_str().unwrap();
        let tls = &ing["spec"]["tls"][0];
        assert!(
            tls["hosts"].as_array().unwrap().iter().any(|h| h == host),
            "{name}"
        );
        assert!(tls["secretName"].is_string(), "{name}");
        let auth = ["auth-tls-secret", "auth-type", "auth-url"]
            .iter()
            .any(|k| ann(ing, &format!("nginx.ingress.kubernetes.io/{k}")).is_some());
        assert!(auth, "{name}: no authentication");
        if let Some(ca) = ann(ing, "nginx.ingress.kubernetes.io/auth-tls-secret") {
            assert_eq!(
                ann(ing, "nginx.ingress.kubernetes.io/auth-tls-verify-client"),
                Some("on")
            );
            assert!(ca.contains('/'), "namespace/name");
        }
    }
}

#[test]
fn public_endpoints_without_auth_or_ingress_fail_the_build() {
    let mut files = example();
    edit(
        &mut files,
        "models/chest-xray-triage.yaml",
        "    auth:\n      clientCaSecret: pacs-gateway-ca\n",
        "",
    );
    let errors = build_errors(&files);
    assert!(
        codes(&errors).contains(&Code::EndpointExposure),
        "{errors:#?}"
    );

    let mut files = example();
    edit(
        &mut files,
        "plinth.yaml",
        "    ingress:\n      className: nginx\n      clusterIssuer: stbrigid-public-ca\n",
        "",
    );
    let errors = build_errors(&files);
    let d = errors
        .iter()
        .find(|d| d.code == Code::EndpointExposure)
        .unwrap_or_else(|| panic!("{errors:#?}"));
    assert_eq!(
        d.primary.as_ref().unwrap().span.file.as_ref(),
        "models/chest-xray-triage.yaml"
    );
}

// Finding 14 ------------------------------------------------------------------------------

#[test]
fn every_inference_service_has_a_mode_consistent_with_its_placement() {
    let b = build(&example());
    let pl = &b.specs.platform.as_ref().unwrap().spec.serving.kserve;
    let isvcs = of_kind(&b.lowered, PROD, "InferenceService");
    assert!(isvcs.len() >= 4);
    for isvc in isvcs {
        let mode = ann(isvc, "serving.kserve.io/deploymentMode").expect("deploymentMode set");
        let p = &isvc["spec"]["predictor"];
        let placed = p.get("nodeSelector").is_some() || p.get("tolerations").is_some();
        match mode {
            "Standard" => {
                if let Some(m) = p["scaleMetric"].as_str() {
                    assert!(["cpu", "memory"].contains(&m), "HPA metric {m}");
                }
                assert_ne!(p["minReplicas"], 0, "Standard mode cannot scale to zero");
            }
            "Knative" => assert!(!placed || pl.knative_node_placement),
            other => panic!("unknown mode {other}"),
        }
    }
}

#[test]
fn scale_to_zero_on_a_gpu_pool_needs_knative_and_its_placement_flags() {
    let mut files = example();
    edit(
        &mut files,
        "models/er-arrivals-forecast.yaml",
        "  replicas: 2\n",
        "  autoscaling:\n    min: 1\n    max: 2\n    metric: concurrency\n    target: 4\n    scaleToZero: true\n",
    );
    let errors = build_errors(&files);
    assert!(
        errors
            .iter()
            .any(|d| d.code == Code::KserveMode && d.message.contains("Knative Serving")),
        "{errors:#?}"
    );

    edit(
        &mut files,
        "plinth.yaml",
        "      restrictedStorageInitializer: true\n",
        "      restrictedStorageInitializer: true\n      knative: true\n",
    );
    let errors = build_errors(&files);
    assert!(
        errors
            .iter()
            .any(|d| d.code == Code::KserveMode && d.message.contains("podspec-tolerations")),
        "{errors:#?}"
    );
}
