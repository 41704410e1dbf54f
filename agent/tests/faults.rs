//! Fault injection at every stage of an apply: the inventory read and both inventory
//! writes, discovery, reading live objects, dry runs, each apply stage, health checks, prune
//! reads and deletes; as 5xx answers, slow answers past the client's timeout, dropped
//! connections and 409 conflicts. The agent retries nothing here (`retries: 0`), so every
//! fault reaches it; then a plain second run must converge: nothing lost (every object the
//! agent created is in the inventory at every moment), nothing wrongly deleted (desired and
//! foreign objects survive every run), and the end state is exactly the revision.
//!
//! Scenario: v1 = projects a, b, c; v2 = a's quota raised, b unchanged, c removed, d added
//! with a model served by a Deployment; a foreign ConfigMap (labelled as plinth's, but never
//! applied by it) lives in namespace a.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use kube_testserver::{Fault, TestServer};
use plinth::lower::ObjectKey;
use plinth_agent::report::Outcome;
use plinth_agent::sync::{self, Options};
use plinth_agent::{Cluster, Requests};
use serde_json::json;

fn v1() -> Tree {
    build(&[
        project("a", Some("4")),
        project("b", Some("4")),
        project("c", Some("4")),
    ])
}

fn v2() -> Tree {
    build_approving(
        &[
            project("a", Some("8")),
            project("b", Some("4")),
            project("d", Some("4")),
            model("los", "d", "1.0.0"),
        ],
        &["Namespace/c"],
    )
}

/// The agent's bound on one request, and a slow answer past it.
const TIMEOUT: Duration = Duration::from_millis(700);
const SLOW: Duration = Duration::from_millis(1200);

fn foreign() -> ObjectKey {
    key("v1", "ConfigMap", Some("a"), "notes")
}

/// A fresh connection, as each run of the binary has: no retries, a short request timeout.
async fn connect(s: &TestServer, retries: u32) -> Cluster {
    Cluster::new(
        client(s).await,
        Requests {
            retries,
            backoff: Duration::from_millis(10),
            timeout: TIMEOUT,
        },
    )
}

fn options() -> Options {
    Options {
        prune: true,
        ..opts()
    }
}

struct Scenario {
    s: Arc<TestServer>,
    v1: Tree,
    v2: Tree,
    _controllers: Option<Controllers>,
}

/// v1 applied, the foreign ConfigMap created, controllers running.
async fn scenario() -> Scenario {
    let mut sc = scenario_without_controllers().await;
    sc._controllers = Some(Controllers::start(Arc::clone(&sc.s), Duration::ZERO));
    sc
}

async fn scenario_without_controllers() -> Scenario {
    let s = Arc::new(TestServer::start().await.unwrap());
    let v1 = v1();
    let report = sync::apply(&connect(&s, 0).await, &v1.desired(), &options()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    let c = client(&s).await;
    let cms: kube::Api<k8s_openapi::api::core::v1::ConfigMap> = kube::Api::namespaced(c, "a");
    let cm = serde_json::from_value(json!({
        "metadata": {"name": "notes", "labels": {"app.kubernetes.io/managed-by": "plinth"}},
        "data": {"k": "v"}
    }))
    .unwrap();
    cms.create(&Default::default(), &cm).await.unwrap();
    Scenario {
        s,
        v1,
        v2: v2(),
        _controllers: None,
    }
}

impl Scenario {
    /// Nothing lost, nothing wrongly deleted.
    fn invariants(&self, when: &str) {
        let s = &self.s;
        assert!(
            live(s, &foreign()).is_some(),
            "{when}: the foreign ConfigMap was deleted"
        );
        let kept: BTreeSet<ObjectKey> = self
            .v1
            .keys()
            .intersection(&self.v2.keys())
            .cloned()
            .collect();
        for k in &kept {
            assert!(
                live(s, k).is_some(),
                "{when}: {k} (desired throughout) was deleted"
            );
        }
        let inv = inventory(s).unwrap();
        for k in self.v1.keys().union(&self.v2.keys()) {
            if live(s, k).is_some() {
                assert!(
                    inv.objects.contains(k),
                    "{when}: {k} exists but is not in the inventory"
                );
            }
        }
    }

    /// A run with `fault` armed, then a clean run that must converge.
    async fn fault_then_converge(&self, fault: Fault, expect_failure: bool) {
        let s = &self.s;
        s.faults().arm(fault.clone());
        let report = sync::apply(&connect(s, 0).await, &self.v2.desired(), &options()).await;
        assert!(
            s.faults().fired() > 0,
            "{fault:?} never fired:\n{}",
            report.to_text()
        );
        if expect_failure {
            assert_eq!(
                report.outcome(),
                Outcome::Failed,
                "{fault:?}:\n{}",
                report.to_text()
            );
        }
        s.faults().clear();
        if format!("{fault:?}").contains("Delay") {
            // Let the slowed request finish on the server side before looking.
            tokio::time::sleep(SLOW + Duration::from_millis(100)).await;
        }
        self.invariants(&format!("after {fault:?}"));
        self.converge(&format!("{fault:?}")).await;
    }

    async fn converge(&self, what: &str) {
        let s = &self.s;
        let report = sync::apply(&connect(s, 0).await, &self.v2.desired(), &options()).await;
        assert_eq!(
            report.exit_code(),
            0,
            "retry after {what}:\n{}",
            report.to_text()
        );
        self.invariants(&format!("retry after {what}"));
        let diff = sync::diff(&connect(s, 0).await, &self.v2.desired(), &options()).await;
        assert_eq!(
            diff.exit_code(),
            0,
            "diff after {what}:\n{}",
            diff.to_text()
        );
        for k in self.v1.keys().difference(&self.v2.keys()) {
            assert!(live(s, k).is_none(), "after {what}: {k} was not pruned");
        }
        let inv = inventory(s).unwrap();
        assert_eq!(inv.objects, self.v2.keys(), "after {what}");
        assert_eq!(inv.revision, self.v2.desired().revision, "after {what}");
        assert_eq!(
            live(s, &key("v1", "ResourceQuota", Some("a"), "quota")).unwrap()["spec"]["hard"]["requests.cpu"],
            "8"
        );
    }
}

/// Arm `fault` from another thread once `ready` holds (to hit a request that only comes
/// after others matching the same target).
fn arm_when(
    s: &Arc<TestServer>,
    ready: impl Fn(&TestServer) -> bool + Send + 'static,
    fault: Fault,
) -> std::thread::JoinHandle<()> {
    let s = Arc::clone(s);
    std::thread::spawn(move || {
        for _ in 0..2000 {
            if ready(&s) {
                s.faults().arm(fault);
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

macro_rules! fault_case {
    ($name:ident, $fault:expr, $fails:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            let sc = scenario().await;
            sc.fault_then_converge($fault, $fails).await;
        }
    };
}

// Reading the inventory.
fault_case!(
    inventory_read_500,
    Fault::on("GET", "/configmaps/plinth-inventory").status(500),
    true
);
fault_case!(
    inventory_read_dropped,
    Fault::on("GET", "/configmaps/plinth-inventory").drop_connection(),
    true
);
fault_case!(
    inventory_read_slow,
    Fault::on("GET", "/configmaps/plinth-inventory").delay(SLOW),
    true
);
// Recording intent (the first inventory write of the run).
fault_case!(
    inventory_intent_500,
    Fault::on("PATCH", "/configmaps/plinth-inventory").status(500),
    true
);
fault_case!(
    inventory_intent_conflict,
    Fault::on("PATCH", "/configmaps/plinth-inventory").conflict(),
    true
);
fault_case!(
    inventory_intent_slow,
    Fault::on("PATCH", "/configmaps/plinth-inventory").delay(SLOW),
    true
);
// Discovery of a group version.
fault_case!(
    discovery_500,
    Fault::on("GET", "/apis/networking.k8s.io/v1").status(500),
    true
);
fault_case!(
    discovery_dropped,
    Fault::on("GET", "/apis/apps/v1").drop_connection(),
    true
);
// Reading a live object; the dry run that compares it.
fault_case!(
    live_read_500,
    Fault::on("GET", "/namespaces/a/resourcequotas/quota").status(500),
    true
);
fault_case!(
    dry_run_dropped,
    Fault::on("PATCH", "dryRun=All").drop_connection(),
    true
);
fault_case!(
    dry_run_conflict,
    Fault::on("PATCH", "dryRun=All").conflict(),
    true
);
// Stage: namespaces.
fault_case!(
    namespace_create_500,
    Fault::on("PATCH", "/api/v1/namespaces/d?").status(500),
    true
);
fault_case!(
    namespace_create_slow,
    Fault::on("PATCH", "/api/v1/namespaces/d?").delay(SLOW),
    true
);
// Stage: RBAC, quotas, policies.
fault_case!(
    quota_update_500,
    Fault::on("PATCH", "/namespaces/a/resourcequotas/quota?&fieldManager").status(500),
    true
);
fault_case!(
    quota_update_conflict,
    Fault::on("PATCH", "/namespaces/a/resourcequotas/quota?&fieldManager").conflict(),
    true
);
fault_case!(
    quota_update_dropped,
    Fault::on("PATCH", "/namespaces/a/resourcequotas/quota?&fieldManager").drop_connection(),
    true
);
fault_case!(
    rolebinding_create_502,
    Fault::on("PATCH", "/namespaces/d/rolebindings/").status(502),
    true
);
// Stage: workloads.
fault_case!(
    deployment_create_dropped,
    Fault::on("PATCH", "/deployments/los?&fieldManager").drop_connection(),
    true
);
fault_case!(
    deployment_create_slow,
    Fault::on("PATCH", "/deployments/los?&fieldManager").delay(SLOW),
    true
);
fault_case!(
    service_create_500,
    Fault::on("PATCH", "/namespaces/d/services/los?&fieldManager").status(500),
    true
);
// Prune: reading a candidate; deleting one (a namespaced object, the namespace).
fault_case!(
    prune_read_500,
    Fault::on("GET", "/api/v1/namespaces/c/").status(500),
    true
);
fault_case!(
    prune_delete_500,
    Fault::on("DELETE", "/namespaces/c/serviceaccounts/workload").status(500),
    true
);
fault_case!(
    prune_delete_conflict,
    Fault::on("DELETE", "/namespaces/c/resourcequotas/quota").conflict(),
    true
);
fault_case!(
    prune_delete_namespace_dropped,
    Fault::on("DELETE", "/api/v1/namespaces/c").drop_connection(),
    true
);
fault_case!(
    prune_delete_namespace_slow,
    Fault::on("DELETE", "/api/v1/namespaces/c").delay(SLOW),
    true
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn final_inventory_write_500() {
    // A revision that only updates and removes: the inventory already lists everything it
    // needs, so the run's one inventory write is the last step, recording the revision.
    let mut sc = scenario().await;
    sc.v2 = build_approving(
        &[project("a", Some("8")), project("b", Some("4"))],
        &["Namespace/c"],
    );
    let s = &sc.s;
    s.faults()
        .arm(Fault::on("PATCH", "/configmaps/plinth-inventory").status(500));
    let report = sync::apply(&connect(s, 0).await, &sc.v2.desired(), &options()).await;
    assert_eq!(s.faults().fired(), 1, "{}", report.to_text());
    assert_eq!(report.outcome(), Outcome::Failed, "{}", report.to_text());
    assert!(
        report.failures[0].contains("recording the inventory of the revision"),
        "{:?}",
        report.failures
    );
    // c was pruned, but the inventory still lists it and the old revision.
    assert!(live(s, &key("v1", "Namespace", None, "c")).is_none());
    assert_eq!(inventory(s).unwrap().revision, sc.v1.desired().revision);
    sc.invariants("after a failed final inventory write");
    // The retry finds c gone and records the revision.
    sc.converge("a failed final inventory write").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reads_failing_while_waiting_are_tolerated() {
    let sc = scenario_without_controllers().await;
    let s = Arc::clone(&sc.s);
    // Once the Deployment exists (its first read and its create are done), fail the next
    // three reads of it: those are health checks. Its controller reports only after that.
    let armed = arm_when(
        &s,
        |s| s.get("apps/v1", "Deployment", Some("d"), "los").is_some(),
        Fault::on("GET", "/deployments/los").times(3).status(500),
    );
    let controller = {
        let s = Arc::clone(&s);
        std::thread::spawn(move || {
            while s.faults().fired() < 3 {
                std::thread::sleep(Duration::from_millis(5));
            }
            settle(&s);
        })
    };
    let report = sync::apply(&connect(&s, 0).await, &sc.v2.desired(), &options()).await;
    armed.join().unwrap();
    controller.join().unwrap();
    assert_eq!(s.faults().fired(), 3, "{}", report.to_text());
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    sc.invariants("after failing health reads");
    sc.converge("failing health reads").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transient_faults_are_retried_within_a_run() {
    let sc = scenario().await;
    let s = &sc.s;
    for f in [
        Fault::on("GET", "/configmaps/plinth-inventory").status(500),
        Fault::on("PATCH", "/configmaps/plinth-inventory").drop_connection(),
        Fault::on("PATCH", "dryRun=All").conflict(),
        Fault::on("PATCH", "/namespaces/a/resourcequotas/quota?&fieldManager").status(500),
        Fault::on("PATCH", "/deployments/los?&fieldManager").delay(SLOW),
        Fault::on("DELETE", "/api/v1/namespaces/c").drop_connection(),
    ] {
        s.faults().arm(f);
    }
    let report = sync::apply(&connect(s, 3).await, &sc.v2.desired(), &options()).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert_eq!(s.faults().fired(), 6);
    tokio::time::sleep(SLOW).await;
    sc.invariants("after retried faults");
    sc.converge("retried faults").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permanent_error_is_not_retried() {
    let sc = scenario().await;
    let s = &sc.s;
    s.faults().arm(
        Fault::on(
            "PATCH",
            "/namespaces/d/serviceaccounts/workload?&fieldManager",
        )
        .status(403),
    );
    s.clear_requests();
    let report = sync::apply(&connect(s, 3).await, &sc.v2.desired(), &options()).await;
    assert_eq!(report.exit_code(), 1, "{}", report.to_text());
    let tries = s
        .requests()
        .iter()
        .filter(|r| {
            r.method == "PATCH"
                && r.target
                    .contains("/namespaces/d/serviceaccounts/workload?&fieldManager")
        })
        .count();
    assert_eq!(tries, 1);
    let text = report.to_text();
    assert!(
        text.contains(
            "failed     ServiceAccount d/workload: apply ServiceAccount d/workload: 403 Forbidden"
        ),
        "{text}"
    );
    assert!(
        text.contains("skipped"),
        "later stages are not applied: {text}"
    );
    sc.invariants("after a permanent error");
    sc.converge("a permanent error").await;
}
