//! Health: an apply waits for what it wrote to become healthy (the test server has no
//! controllers: a background thread plays them), fails at the timeout, fails fast on a
//! degraded object, keeps checking objects still unhealthy from an earlier run, and never
//! prunes after a failed wait.

#![allow(clippy::unwrap_used)]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use kube_testserver::TestServer;
use plinth_agent::health::Health;
use plinth_agent::report::PruneAction;
use plinth_agent::sync::{self, Options};
use serde_json::json;

fn short(timeout_ms: u64) -> Options {
    Options {
        health_timeout: Duration::from_millis(timeout_ms),
        ..opts()
    }
}

fn workloads() -> Tree {
    build(&[project_with_volume("er"), model("los", "er", "2.3.0")])
}

#[tokio::test]
async fn an_apply_waits_until_what_it_wrote_is_healthy() {
    let s = Arc::new(TestServer::start().await.unwrap());
    let c = cluster(&s, 0).await;
    let tree = workloads();
    let _controllers = Controllers::start(Arc::clone(&s), Duration::from_millis(400));
    let started = Instant::now();
    let report = sync::apply(&c, &tree.desired(), &short(10_000)).await;
    let took = started.elapsed();
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert!(
        took >= Duration::from_millis(400),
        "returned after {took:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        report
            .objects
            .iter()
            .all(|o| o.health == Some(Health::Healthy)),
        "{}",
        report.to_text()
    );
    assert_eq!(inventory(&s).unwrap().revision, tree.desired().revision);
}

#[tokio::test]
async fn an_apply_fails_when_health_times_out_and_prunes_nothing() {
    let s = TestServer::start().await.unwrap();
    let c = cluster(&s, 0).await;
    let v1 = build(&[
        project("er", Some("8")),
        project("old", Some("4")),
        project("older", Some("4")),
    ]);
    assert_eq!(sync::apply(&c, &v1.desired(), &opts()).await.exit_code(), 0);
    // v2 adds a PVC and a Deployment that no controller will ever report on, and drops
    // `older` (a prune candidate).
    let v2 = build_approving(
        &[
            project_with_volume("er"),
            model("los", "er", "2.3.0"),
            project("old", Some("4")),
        ],
        &["Namespace/older"],
    );
    let mut o = short(300);
    o.prune = true;
    let started = Instant::now();
    let report = sync::apply(&c, &v2.desired(), &o).await;
    assert!(started.elapsed() < Duration::from_secs(3));
    assert_eq!(report.exit_code(), 1);
    assert!(
        report.failures[0].contains("2 objects not healthy within 300ms; nothing was pruned"),
        "{:?}",
        report.failures
    );
    let text = report.to_text();
    assert!(
        text.contains("unhealthy  PersistentVolumeClaim er/shared: progressing: phase Pending"),
        "{text}"
    );
    assert!(
        text.contains("unhealthy  Deployment er/los: progressing: generation 1 not yet observed"),
        "{text}"
    );
    assert!(report.prune.is_empty());
    assert!(live(&s, &key("v1", "Namespace", None, "older")).is_some());
    // The revision is not recorded as applied.
    assert_eq!(inventory(&s).unwrap().revision, v1.desired().revision);

    // Nothing changed since, but the objects are still unhealthy: the next run fails too.
    let report = sync::apply(&c, &v2.desired(), &o).await;
    assert_eq!(report.exit_code(), 1, "{}", report.to_text());

    // Once the controllers catch up, the same tree converges and prunes.
    settle(&s);
    let report = sync::apply(&c, &v2.desired(), &o).await;
    assert_eq!(report.exit_code(), 0, "{}", report.to_text());
    assert!(report.prune.iter().any(|p| p.action == PruneAction::Delete));
    assert!(live(&s, &key("v1", "Namespace", None, "older")).is_none());
    assert_eq!(inventory(&s).unwrap().revision, v2.desired().revision);
}

#[tokio::test]
async fn a_degraded_object_fails_without_waiting_out_the_timeout() {
    let s = TestServer::start().await.unwrap();
    let c = cluster(&s, 0).await;
    let tree = build(&[project("er", Some("8")), model("los", "er", "2.3.0")]);
    // A first attempt creates the Deployment; its controller then gives up.
    assert_eq!(
        sync::apply(&c, &tree.desired(), &short(100))
            .await
            .exit_code(),
        1
    );
    s.set_status(
        "apps/v1",
        "Deployment",
        Some("er"),
        "los",
        json!({"observedGeneration": 1, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 0,
               "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                               "message": "ReplicaSet \"los-1\" has timed out progressing"}]}),
    );
    let started = Instant::now();
    let report = sync::apply(&c, &tree.desired(), &short(20_000)).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(report.exit_code(), 1);
    assert!(
        report
            .to_text()
            .contains("unhealthy  Deployment er/los: degraded: progress deadline exceeded"),
        "{}",
        report.to_text()
    );
}
