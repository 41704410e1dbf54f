//! Lower: typed specs into Kubernetes and cloud manifests, per cluster.
//!
//! Pure and deterministic: the same [`Specs`] always give the same [`Lowered`] output. Built-in
//! kinds are constructed with `k8s-openapi` types, custom resources with the typed structs of
//! [`crd`]. Every object carries provenance: the `app.kubernetes.io/managed-by: plinth` and
//! `plinth.dev/project` labels, and the `plinth.dev/source` (spec file:line) and
//! `plinth.dev/spec-hash` annotations (see [`spec_hash`]).
//!
//! One submodule per spec kind; [`lower`] runs them for every cluster each object lives on.
//! What they all read is in `context` ([`Ctx`], [`Index`], [`Sink`]); the rules one kind
//! applies to another's objects (queue labels, placement, pod identity, dataset mounts) are in
//! `rules`. A kind file never uses another kind file (except `project` calling
//! `identity::lower`).

pub mod agent;
pub mod app;
mod context;
pub use crate::crd;
pub mod dataset;
pub mod gpu;
pub mod identity;
pub mod project;
pub mod rollout;
pub(crate) mod rules;

pub use context::{Ctx, Index, Sink};

use std::collections::BTreeMap;

use serde_json::Value;

use crate::diag::Diagnostics;
use crate::load::Snapshot;
use crate::model::PlatformSpec;
use crate::model::platform::Cluster;
use crate::specs::{Object, Specs};
use context::duplicate_object;

pub use crate::output::*;

/// One spec to lower on one cluster.
enum Unit<'a> {
    Project(&'a Object<crate::model::ProjectSpec>),
    GpuQuota(&'a Object<crate::model::GpuQuotaSpec>),
    Dataset(&'a Object<crate::model::DatasetSpec>),
    Rollout(&'a Object<crate::model::ModelRolloutSpec>),
    App(&'a Object<crate::model::AppSpec>),
    /// The Platform's `spec.agent`: the agent's install manifests.
    /// Platform-wide objects of a cluster (the CPU ResourceFlavor of default queues).
    Platform(&'a Object<PlatformSpec>),
}

/// Lower every spec for every cluster. Requires a checked, error-free [`Specs`].
///
/// Specs are lowered in parallel, each into its own sink; their objects are then merged in
/// spec order, so the result (duplicates reported included) does not depend on scheduling.
pub fn lower(specs: &Specs, snapshot: &Snapshot) -> (Lowered, Diagnostics) {
    use rayon::prelude::*;
    let mut diags = Diagnostics::new();
    let mut lowered = Lowered::default();
    let Some(platform) = &specs.platform else {
        return (lowered, diags);
    };
    let index = Index::new(specs);
    lowered.platform_file = Some(platform.doc.file.clone());
    for cluster in &platform.spec.clusters {
        let cx = Ctx {
            specs,
            platform: &platform.spec,
            cluster,
            snapshot,
            index: &index,
        };
        let units = units(&cx, specs, platform);
        let parts: Vec<(BTreeMap<ObjectKey, Manifest>, Diagnostics)> = units
            .par_iter()
            .map(|u| {
                let mut out = BTreeMap::new();
                let mut d = Diagnostics::new();
                let mut sink = Sink {
                    cluster: &cluster.name,
                    out: &mut out,
                    diags: &mut d,
                };
                match u {
                    Unit::Project(p) => project::lower(&cx, p, &mut sink),
                    Unit::GpuQuota(q) => gpu::lower(&cx, q, &mut sink),
                    Unit::Dataset(ds) => dataset::lower(&cx, ds, &mut sink),
                    Unit::Rollout(r) => rollout::lower(&cx, r, &mut sink),
                    Unit::App(a) => app::lower(&cx, a, &mut sink),
                    Unit::Platform(p) => gpu::lower_platform(&cx, p, &mut sink),
                }
                (out, d)
            })
            .collect();
        let mut objects: BTreeMap<ObjectKey, Manifest> = BTreeMap::new();
        let mut parts = parts;
        // The agent last: its ClusterRole is derived from what the others emit.
        if platform.spec.agent.as_ref().is_some_and(|a| a.enabled) {
            let emitted: Vec<&Value> = parts
                .iter()
                .flat_map(|(part, _)| part.values().map(|m| &m.object))
                .collect();
            let mut out = BTreeMap::new();
            let mut d = Diagnostics::new();
            let mut sink = Sink {
                cluster: &cluster.name,
                out: &mut out,
                diags: &mut d,
            };
            agent::lower(&cx, platform, &emitted, &mut sink);
            parts.push((out, d));
        }
        for (part, d) in parts {
            diags.extend(d);
            for (key, m) in part {
                if let Some(first) = objects.get(&key) {
                    diags.push(duplicate_object(
                        &cluster.name,
                        &key,
                        &first.origin,
                        &m.origin,
                    ));
                } else {
                    objects.insert(key, m);
                }
            }
        }
        let approvals = approvals(platform, cluster);
        lowered.clusters.insert(
            cluster.name.clone(),
            ClusterOutput {
                manifests: objects.into_values().collect(),
                approvals,
            },
        );
    }
    (lowered, diags)
}

/// What a cluster lowers: the projects, pools, rollouts and apps it hosts, every dataset, and
/// the platform.
fn units<'s>(cx: &Ctx<'_>, specs: &'s Specs, platform: &'s Object<PlatformSpec>) -> Vec<Unit<'s>> {
    let mut units: Vec<Unit<'_>> = Vec::new();
    units.extend(
        specs
            .projects
            .values()
            .filter(|p| cx.hosts(p.name()))
            .map(Unit::Project),
    );
    units.extend(
        specs
            .gpu_quotas
            .values()
            .filter(|q| cx.has_pool(q.name()))
            .map(Unit::GpuQuota),
    );
    units.extend(specs.datasets.values().map(Unit::Dataset));
    units.extend(
        specs
            .rollouts
            .values()
            .filter(|r| cx.hosts(&r.spec.project))
            .map(Unit::Rollout),
    );
    units.extend(
        specs
            .apps
            .values()
            .filter(|a| cx.hosts(&a.spec.project))
            .map(Unit::App),
    );
    units.push(Unit::Platform(platform));
    units
}

/// The Platform's approval entries that apply to a cluster, with where each is written.
fn approvals(platform: &Object<PlatformSpec>, cluster: &Cluster) -> Vec<Approval> {
    platform
        .spec
        .approvals
        .iter()
        .enumerate()
        .filter(|(_, a)| a.cluster.as_ref().is_none_or(|c| *c == cluster.name))
        .map(|(i, a)| Approval {
            object: a.object.clone(),
            cluster: a.cluster.clone(),
            reason: a.reason.clone(),
            approver: a.approver.clone(),
            file: platform.doc.file.clone(),
            line: platform.at(&format!("spec.approvals[{i}]")).span.start.line,
        })
        .collect()
}
