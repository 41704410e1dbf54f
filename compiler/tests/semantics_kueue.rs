//! Kueue and quota semantics of built output: what the objects *do* when applied, read with
//! Kueue's rules (`kueue.x-k8s.io/v1beta2`, Kueue 0.15+) and Kubernetes' admission rules — not
//! just whether they validate. Run on `examples/repo` and on variants of it.
//!
//! Kueue facts these assertions rely on (read in Kueue's source and docs):
//! - every job without a queue label goes to the namespace's LocalQueue `default` when one
//!   exists (`jobframework.ApplyDefaultLocalQueue`);
//! - priority comes from the `kueue.x-k8s.io/priority-class` label; the Deployment webhook
//!   copies it (and the queue label) to the pod template; without it, priority is 0;
//! - a Cohort's `nominalQuota` is shared **on top of** its ClusterQueues' quotas;
//! - a missing `borrowingLimit` means no limit;
//! - `reclaimWithinCohort` reclaims only nominal quota lent out; `borrowWithinCohort` lets a
//!   borrowing workload preempt lower-priority ones elsewhere in the cohort.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};

mod common;

use common::{Built, build, build_errors, edit, example, find, objects, of_kind};
use plinth::lower::Lowered;
use plinth::specs::Specs;
use serde_json::Value;

fn clusters(l: &Lowered) -> Vec<String> {
    l.clusters.keys().cloned().collect()
}

fn num(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap(),
        Value::Number(n) => n.as_u64().unwrap(),
        other => panic!("not a count: {other}"),
    }
}

/// (flavor, resource) → nominal quota of a ClusterQueue or Cohort.
fn nominal(obj: &Value) -> BTreeMap<(String, String), (u64, Option<u64>)> {
    let mut out = BTreeMap::new();
    for g in obj["spec"]["resourceGroups"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for f in g["flavors"].as_array().unwrap() {
            for r in f["resources"].as_array().unwrap() {
                let name = r["name"].as_str().unwrap().to_owned();
                if name == "cpu" || name == "memory" {
                    continue;
                }
                out.insert(
                    (f["name"].as_str().unwrap().to_owned(), name),
                    (num(&r["nominalQuota"]), r.get("borrowingLimit").map(num)),
                );
            }
        }
    }
    out
}

/// Does the project live on the cluster (as the spec says)?
fn hosts(specs: &Specs, cluster: &str, project: &str) -> bool {
    let p = &specs.projects[project];
    let pl = &specs.platform.as_ref().unwrap().spec;
    let placed: Vec<&str> = if !p.spec.clusters.is_empty() {
        p.spec.clusters.iter().map(String::as_str).collect()
    } else if !pl.defaults.clusters.is_empty() {
        pl.defaults.clusters.iter().map(String::as_str).collect()
    } else {
        pl.clusters.iter().map(|c| c.name.as_str()).collect()
    };
    placed.contains(&cluster)
}

fn pools_on(specs: &Specs, cluster: &str) -> Vec<String> {
    specs
        .platform
        .as_ref()
        .unwrap()
        .spec
        .clusters
        .iter()
        .find(|c| c.name == cluster)
        .map(|c| c.gpu_pools.clone())
        .unwrap_or_default()
}

/// Queue and priority labels of every object plinth queues: (object, its queue labels).
fn queued(l: &Lowered, cluster: &str) -> Vec<(String, BTreeMap<String, String>)> {
    let mut out = Vec::new();
    for m in objects(l, cluster) {
        for at in [
            "/metadata/labels",
            "/spec/template/metadata/labels",
            "/spec/predictor/labels",
        ] {
            if let Some(labels) = m.object.pointer(at).and_then(Value::as_object)
                && labels.contains_key("kueue.x-k8s.io/queue-name")
            {
                out.push((
                    format!("{} {at}", m.key),
                    labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect(),
                ));
            }
        }
    }
    out
}

// --- 1 -----------------------------------------------------------------------------------------

#[test]
fn the_default_queue_never_leads_to_gpu_flavors() {
    let b = build(&example());
    let mut seen = 0;
    for c in clusters(&b.lowered) {
        let gpu_resources: BTreeSet<String> = b
            .specs
            .gpu_quotas
            .values()
            .map(|q| q.spec.pool.resource_name.clone())
            .collect();
        for lq in of_kind(&b.lowered, &c, "LocalQueue") {
            if lq["metadata"]["name"] != "default" {
                continue;
            }
            seen += 1;
            let cq_name = lq["spec"]["clusterQueue"].as_str().unwrap();
            let cq = find(&b.lowered, &c, "ClusterQueue", None, cq_name)
                .unwrap_or_else(|| panic!("{c}: no ClusterQueue `{cq_name}`"));
            assert!(cq["spec"].get("cohortName").is_none(), "{cq}");
            for g in cq["spec"]["resourceGroups"].as_array().unwrap() {
                for r in g["coveredResources"].as_array().unwrap() {
                    assert!(
                        !gpu_resources.contains(r.as_str().unwrap()),
                        "{c}: the default queue covers {r}"
                    );
                }
                for f in g["flavors"].as_array().unwrap() {
                    let flavor = find(
                        &b.lowered,
                        &c,
                        "ResourceFlavor",
                        None,
                        f["name"].as_str().unwrap(),
                    )
                    .expect("the flavor exists");
                    // No GPU node labels, no GPU tolerations: CPU work stays off GPU nodes.
                    for field in ["nodeLabels", "nodeTaints", "tolerations"] {
                        assert!(
                            flavor["spec"].get(field).is_none_or(|v| v
                                .as_array()
                                .map_or_else(|| v.as_object().unwrap().is_empty(), Vec::is_empty)),
                            "{c}: flavor {} has {field}",
                            f["name"]
                        );
                    }
                }
            }
        }
    }
    assert!(seen >= 3, "the example has default queues");
}

// --- 2 -----------------------------------------------------------------------------------------

#[test]
fn every_queued_workload_has_a_priority_class_of_its_pool() {
    let b = build(&example());
    let mut total = 0;
    let mut values: BTreeSet<i64> = BTreeSet::new();
    for c in clusters(&b.lowered) {
        let classes: BTreeMap<String, i64> = of_kind(&b.lowered, &c, "WorkloadPriorityClass")
            .into_iter()
            .map(|w| {
                (
                    w["metadata"]["name"].as_str().unwrap().to_owned(),
                    w["value"].as_i64().unwrap(),
                )
            })
            .collect();
        for (what, labels) in queued(&b.lowered, &c) {
            total += 1;
            let queue = &labels["kueue.x-k8s.io/queue-name"];
            let pc = labels
                .get("kueue.x-k8s.io/priority-class")
                .unwrap_or_else(|| panic!("{c}: {what} is queued without a priority class"));
            let value = classes
                .get(pc)
                .unwrap_or_else(|| panic!("{c}: {what}: no WorkloadPriorityClass `{pc}`"));
            values.insert(*value);
            // The class is one of the pool's (the queue is named after the pool, or is a user's).
            let pool = b
                .specs
                .gpu_quotas
                .values()
                .find(|q| queue == q.name() || queue.starts_with(&format!("{}-u-", q.name())))
                .unwrap_or_else(|| panic!("{what}: queue {queue} of no pool"));
            assert!(
                pool.spec.priority_classes.iter().any(|p| &p.name == pc),
                "{what}: class {pc} is not of pool {}",
                pool.name()
            );
        }
    }
    assert!(total >= 4, "the example queues workloads");
    // Clinical serving and interactive work outrank the pools' defaults.
    assert!(values.len() >= 2, "{values:?}");
    // The model in clinical use carries the highest class of its pool.
    let isvc = find(
        &b.lowered,
        "prod-a",
        "InferenceService",
        Some("er-capacity"),
        "er-arrivals-forecast",
    )
    .unwrap();
    assert_eq!(
        isvc["spec"]["predictor"]["labels"]["kueue.x-k8s.io/priority-class"],
        "clinical-serving"
    );
}

#[test]
fn a_priority_class_a_pool_does_not_offer_is_an_error() {
    let mut f = example();
    edit(
        &mut f,
        "models/er-arrivals-forecast.yaml",
        "priorityClass: clinical-serving",
        "priorityClass: clinical-servinq",
    );
    let errors = build_errors(&f);
    assert!(
        errors.iter().any(|d| d.code.id() == "E118"
            && d.message.contains("clinical-servinq")
            && d.hint
                .as_deref()
                .is_some_and(|h| h.contains("clinical-serving"))),
        "{errors:#?}"
    );
    // A pool's default must be one of its classes.
    let mut f = example();
    edit(
        &mut f,
        "gpu/a100.yaml",
        "defaultPriorityClass: research",
        "defaultPriorityClass: nope",
    );
    assert!(build_errors(&f).iter().any(|d| d.code.id() == "E118"));
}

// --- 3 and 4 -------------------------------------------------------------------------------------

/// Per cluster and pool: what the queues promise, what the pool's Cohort holds, and the
/// capacity there.
fn pool_books(b: &Built, cluster: &str, pool: &str) -> (u64, u64, u64) {
    let q = &b.specs.gpu_quotas[pool];
    let key = (pool.to_owned(), q.spec.pool.resource_name.clone());
    let capacity = u64::from(q.spec.capacity_in(cluster));
    let mut promised = 0;
    let mut cohort_spare = 0;
    for kind in ["ClusterQueue", "Cohort"] {
        for o in of_kind(&b.lowered, cluster, kind) {
            let name = o["metadata"]["name"].as_str().unwrap();
            if let Some((n, _)) = nominal(o).get(&key) {
                if kind == "Cohort" && Some(name) == q.spec.cohort.as_deref() {
                    cohort_spare += n;
                } else {
                    promised += n;
                }
            }
        }
    }
    (promised, cohort_spare, capacity)
}

#[test]
fn each_cluster_promises_at_most_its_capacity_and_the_spare_is_the_cohorts() {
    let b = build(&example());
    let mut spares = 0;
    for c in clusters(&b.lowered) {
        for pool in pools_on(&b.specs, &c) {
            let (promised, spare, capacity) = pool_books(&b, &c, &pool);
            let q = &b.specs.gpu_quotas[&pool];
            let allocated: u64 = q
                .spec
                .allocations
                .iter()
                .filter(|a| hosts(&b.specs, &c, &a.project))
                .map(|a| u64::from(a.gpu))
                .sum();
            assert_eq!(
                promised, allocated,
                "{c}/{pool}: queues hold the allocations here"
            );
            assert!(
                promised <= capacity,
                "{c}/{pool}: {promised} promised of {capacity}"
            );
            if q.spec.cohort.is_some() {
                // The Cohort holds exactly the rest, so borrowing can reach it.
                assert_eq!(spare, capacity - promised, "{c}/{pool}");
                spares += spare;
            }
        }
    }
    assert!(spares > 0, "the example has spare GPUs to borrow");
}

#[test]
fn capacity_is_per_cluster_and_allocations_are_checked_per_cluster() {
    // radiology-imaging lives in both clusters; research-b has 28 slices. 29 there is over,
    // although the pool has more in prod-a.
    let mut f = example();
    edit(
        &mut f,
        "gpu/a100-mig.yaml",
        "    capacity: 28\n",
        "    capacity: 20\n",
    );
    let errors = build_errors(&f);
    let e = errors
        .iter()
        .find(|d| d.code.id() == "E130")
        .unwrap_or_else(|| panic!("{errors:#?}"));
    assert!(
        e.message.contains("in cluster `research-b`"),
        "{}",
        e.message
    );
    assert!(
        !errors.iter().any(|d| d.message.contains("`prod-a`")),
        "{errors:#?}"
    );
    // A capacity for a cluster without the pool is an error.
    let mut f = example();
    edit(
        &mut f,
        "gpu/a100.yaml",
        "    capacity: 32\n",
        "    capacity: 32\n    capacityByCluster:\n      research-b: 8\n",
    );
    let errors = build_errors(&f);
    assert!(
        errors
            .iter()
            .any(|d| d.code.id() == "E115" && d.message.contains("research-b")),
        "{errors:#?}"
    );
}

// --- 5 -----------------------------------------------------------------------------------------

#[test]
fn the_gpu_backstop_allows_what_kueue_may_admit() {
    let mut f = example();
    // bed-management borrows without a limit on the whole-GPU pool.
    edit(
        &mut f,
        "gpu/a100.yaml",
        "      gpu: 4\n      borrowingLimit: 4\n",
        "      gpu: 4\n",
    );
    let b = build(&f);
    for c in clusters(&b.lowered) {
        for rq in of_kind(&b.lowered, &c, "ResourceQuota") {
            let name = rq["metadata"]["name"].as_str().unwrap();
            let Some(resource) = name.strip_prefix("gpu-") else {
                continue;
            };
            let ns = rq["metadata"]["namespace"].as_str().unwrap();
            let hard = num(rq["spec"]["hard"]
                .as_object()
                .unwrap()
                .values()
                .next()
                .unwrap());
            // The most Kueue may admit for the project on pools of this resource.
            let mut most = 0;
            for pool in pools_on(&b.specs, &c) {
                let q = &b.specs.gpu_quotas[&pool];
                let slug: String = q
                    .spec
                    .pool
                    .resource_name
                    .chars()
                    .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '-' })
                    .collect();
                if slug != resource {
                    continue;
                }
                for a in q.spec.allocations.iter().filter(|a| a.project == ns) {
                    let cap = u64::from(q.spec.capacity_in(&c));
                    let borrow = match (&q.spec.cohort, a.borrowing_limit) {
                        (None, _) => 0,
                        (Some(_), Some(l)) => u64::from(l),
                        (Some(_), None) => cap,
                    };
                    most += (u64::from(a.gpu) + borrow).min(cap);
                }
            }
            assert!(
                hard >= most,
                "{c}: {ns}/{name} allows {hard}, Kueue may admit {most}"
            );
            if ns == "bed-management" && resource == "nvidia-com-gpu" {
                assert_eq!(hard, 32, "unlimited borrowing: up to the pool's capacity");
            }
        }
    }
}

// --- 6 -----------------------------------------------------------------------------------------

#[test]
fn per_user_queues_match_the_admission_cap_preempt_by_priority_and_belong_to_their_user() {
    let mut f = example();
    // A view-only user member gets no queue.
    edit(
        &mut f,
        "projects/radiology-imaging.yaml",
        "  members:\n",
        "  members:\n    - user: auditor@stbrigid.example\n      role: view\n",
    );
    let b = build(&f);
    let mut per_user = 0;
    for c in clusters(&b.lowered) {
        for cq in of_kind(&b.lowered, &c, "ClusterQueue") {
            let name = cq["metadata"]["name"].as_str().unwrap();
            if cq["spec"]["cohortName"].as_str().is_none() {
                continue;
            }
            let quotas = nominal(cq);
            if !quotas.values().all(|(n, _)| *n == 0) {
                continue;
            }
            // A queue with no quota of its own under a project cohort: it only borrows, so
            // priority preemption among its siblings needs borrowWithinCohort.
            let reclaim = cq["spec"]["preemption"]["reclaimWithinCohort"]
                .as_str()
                .unwrap();
            if reclaim != "Never" {
                assert_eq!(
                    cq["spec"]["preemption"]["borrowWithinCohort"]["policy"], "LowerPriority",
                    "{c}: {name}"
                );
            }
            let Some(user) = cq["metadata"]["annotations"]["plinth.dev/user"].as_str() else {
                continue;
            };
            per_user += 1;
            assert_ne!(
                user, "auditor@stbrigid.example",
                "a view-only member got a queue"
            );
            let ns = cq["spec"]["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
                .as_str()
                .unwrap();
            // The same limit in the queue and in the namespace's container cap.
            let (_, (_, limit)) = quotas.iter().next().unwrap();
            let (flavor, resource) = quotas.keys().next().unwrap();
            let vap = find(
                &b.lowered,
                &c,
                "ValidatingAdmissionPolicy",
                None,
                &format!("plinth-container-cap-{ns}"),
            )
            .unwrap_or_else(|| panic!("{c}: no container cap for {ns}"));
            let check = vap["spec"]["validations"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| {
                    v["expression"]
                        .as_str()
                        .unwrap()
                        .contains(&format!("'{resource}'"))
                })
                .unwrap_or_else(|| panic!("{c}: {ns}: no cap on {resource}"));
            assert!(
                check["expression"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("quantity('{}')", limit.unwrap())),
                "{c}: {name} ({flavor}) borrows at most {limit:?}, the cap says {}",
                check["expression"]
            );
            // The user's LocalQueue is labelled with the user's id, and only that user may
            // name it.
            let lq = of_kind(&b.lowered, &c, "LocalQueue")
                .into_iter()
                .find(|lq| lq["spec"]["clusterQueue"] == name)
                .unwrap();
            assert!(lq["metadata"]["labels"]["plinth.dev/user-id"].is_string());
            let policy = find(
                &b.lowered,
                &c,
                "ValidatingAdmissionPolicy",
                None,
                &format!("plinth-user-queues-{ns}"),
            )
            .unwrap();
            let owners = policy["spec"]["variables"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == "owners")
                .unwrap()["expression"]
                .as_str()
                .unwrap()
                .to_owned();
            let lq_name = lq["metadata"]["name"].as_str().unwrap();
            assert!(
                owners.contains(&format!("'{lq_name}': '")) && owners.contains(user),
                "{owners}"
            );
            assert!(!owners.contains("auditor@"), "{owners}");
        }
    }
    assert!(per_user >= 6, "the example has per-user queues: {per_user}");
}

// --- 7 -----------------------------------------------------------------------------------------

/// Kubernetes' LimitRanger then validation, for one container: is it admitted?
fn limit_ranger_admits(limit_range: &Value, requests: &BTreeMap<&str, f64>) -> bool {
    let item = &limit_range["spec"]["limits"][0];
    let parse = |v: &Value| -> f64 {
        let s = v.as_str().unwrap();
        let (n, mult) = if let Some(x) = s.strip_suffix("Gi") {
            (x, 1024.0 * 1024.0 * 1024.0)
        } else if let Some(x) = s.strip_suffix("Mi") {
            (x, 1024.0 * 1024.0)
        } else if let Some(x) = s.strip_suffix('m') {
            (x, 0.001)
        } else {
            (s, 1.0)
        };
        n.parse::<f64>().unwrap() * mult
    };
    for (resource, request) in requests {
        // The container sets a request and no limit: the default limit, if any, applies.
        if let Some(default) = item["default"].get(*resource)
            && *request > parse(default)
        {
            return false;
        }
    }
    true
}

#[test]
fn containers_are_capped_on_every_workload_kind_and_never_rejected_by_default_limits() {
    let b = build(&example());
    let mut ranges = 0;
    for c in clusters(&b.lowered) {
        for lr in of_kind(&b.lowered, &c, "LimitRange") {
            ranges += 1;
            // A container asking for a whole node's CPU and memory without a limit.
            let big = BTreeMap::from([("cpu", 92.0), ("memory", 1000.0 * 1024.0_f64.powi(3))]);
            assert!(limit_ranger_admits(lr, &big), "{c}: {lr}");
        }
        for vap in of_kind(&b.lowered, &c, "ValidatingAdmissionPolicy") {
            let name = vap["metadata"]["name"].as_str().unwrap();
            assert!(
                !name.contains("per-user"),
                "{c}: {name}: a per-container cap is not per user"
            );
            let rules = vap["spec"]["matchConstraints"]["resourceRules"]
                .as_array()
                .unwrap();
            let resources: BTreeSet<&str> = rules
                .iter()
                .flat_map(|r| r["resources"].as_array().unwrap())
                .map(|r| r.as_str().unwrap())
                .collect();
            for want in [
                "pods",
                "deployments",
                "statefulsets",
                "jobs",
                "cronjobs",
                "replicasets",
            ] {
                assert!(resources.contains(want), "{c}: {name} misses {want}");
            }
            for r in rules {
                let ops: Vec<&str> = r["operations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o.as_str().unwrap())
                    .collect();
                assert_eq!(ops, ["CREATE", "UPDATE"], "{c}: {name}");
            }
        }
    }
    assert!(ranges >= 4);
    // A default limit in the spec is not applied, and says so where it is written.
    let mut f = example();
    edit(
        &mut f,
        "projects/er-capacity.yaml",
        "  defaults:\n    cpu: 500m\n",
        "  defaults:\n    cpu: 500m\n    cpuLimit: 2\n",
    );
    let b = build(&f);
    let w = b
        .diagnostics
        .iter()
        .find(|d| d.code.id() == "W004" && d.message.contains("defaults.cpuLimit"))
        .unwrap_or_else(|| panic!("{:#?}", b.diagnostics));
    assert!(
        w.primary
            .as_ref()
            .unwrap()
            .span
            .file
            .contains("er-capacity"),
        "{w:?}"
    );
    let lr = find(
        &b.lowered,
        "prod-a",
        "LimitRange",
        Some("er-capacity"),
        "defaults",
    )
    .unwrap();
    assert!(lr["spec"]["limits"][0].get("default").is_none(), "{lr}");
}

// --- 8 -----------------------------------------------------------------------------------------

#[test]
fn namespaces_name_the_local_queues_pods_use() {
    let b = build(&example());
    let mut named = 0;
    for c in clusters(&b.lowered) {
        for ns in of_kind(&b.lowered, &c, "Namespace") {
            let name = ns["metadata"]["name"].as_str().unwrap();
            let cluster_queues: BTreeSet<&str> = of_kind(&b.lowered, &c, "ClusterQueue")
                .into_iter()
                .map(|q| q["metadata"]["name"].as_str().unwrap())
                .collect();
            for (k, v) in ns["metadata"]["labels"].as_object().unwrap() {
                assert!(
                    !(k.contains("queue") && cluster_queues.contains(v.as_str().unwrap())),
                    "{c}: namespace {name} label {k} names a ClusterQueue"
                );
            }
            if let Some(list) = ns["metadata"]["annotations"]["plinth.dev/gpu-queues"].as_str() {
                for q in list.split(',') {
                    named += 1;
                    assert!(
                        find(&b.lowered, &c, "LocalQueue", Some(name), q).is_some(),
                        "{c}: namespace {name} names LocalQueue {q}, which it does not have"
                    );
                }
            }
        }
    }
    assert!(named >= 4);
}
