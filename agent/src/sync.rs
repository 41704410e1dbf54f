//! The loop, run once: inventory → guards → staged apply → health → prune → inventory.
//!
//! 1. Read the inventory; refuse an inventory of another plinth cluster, an empty or nearly
//!    empty render ([`prune::check_render`]), and — with `--prune` — a revision that would
//!    delete data (a namespace, volume, bucket, CRD) without approval ([`prune::approval`]):
//!    nothing is written then.
//! 2. Record desired ∪ inventory before writing anything else, so every object the run may
//!    create is tracked even if the run dies half-way.
//! 3. Apply stage by stage ([`plinth::emit::Stage`]). Per object: get the live object; a
//!    missing one is created; an existing one is dry-run applied with force and compared
//!    ([`drift::compare`]), and written only when something must change — an unchanged object
//!    costs a get and a dry run, never a write. A failure stops the stages after it.
//!    Namespaces (and CRDs) are waited for before the stage after them.
//! 4. Wait until every object written, or found unhealthy, is healthy ([`health`]), up to the
//!    health timeout.
//! 5. Only after all of that succeeded, and with `--prune`: delete inventory objects no longer
//!    desired, within the guards ([`prune`]), in reverse stage order. A namespace that holds
//!    objects plinth does not own is held, not deleted ([`prune::unowned`]).
//! 6. Record the inventory of the revision: what is desired, plus every candidate not deleted
//!    (pruning off, refused, failed, or kept by `plinth.dev/prune: disabled` or a missing label).
//!
//! Every step is idempotent: a run that failed anywhere is repaired by running again.
//! [`diff`] runs steps 1 and 3 as dry runs and reports what [`apply`] would do.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use plinth::emit::Stage;
use plinth::lower::ObjectKey;
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument as _;

use crate::cluster::{ApiError, Cluster, Deleted, Write};
use crate::desired::{Desired, DesiredObject};
use crate::drift::{self, Mode};
use crate::health::{self, Health};
use crate::inventory::{self, Inventory};
use crate::prune::{self, Verdict};
use crate::report::{Action, Command, ObjectReport, PruneAction, PruneReport, Report};

/// How a run behaves.
#[derive(Debug, Clone)]
pub struct Options {
    /// Field manager for server-side apply.
    pub manager: String,
    /// Delete inventory objects that are no longer desired.
    pub prune: bool,
    pub drift: drift::Policy,
    pub budget: prune::Budget,
    /// Apply an empty or nearly empty render anyway.
    pub allow_empty: bool,
    /// Delete data (namespaces, volumes, buckets, CRDs) without an approval in the revision
    /// (`plinth-agent apply --once --allow-destructive`; never set by the GitOps loop).
    pub allow_destructive: bool,
    /// How long to wait for health (and for namespaces between stages).
    pub health_timeout: Duration,
    /// How often to look again while waiting.
    pub poll: Duration,
    /// Objects handled at once within a stage.
    pub concurrency: usize,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            manager: "plinth".into(),
            prune: false,
            drift: drift::Policy::default(),
            budget: prune::Budget::default(),
            allow_empty: false,
            allow_destructive: false,
            health_timeout: Duration::from_secs(60),
            poll: Duration::from_secs(2),
            concurrency: 4,
        }
    }
}

/// The inventory as stored, and its parsed form.
async fn read_inventory(
    cluster: &Cluster,
    desired: &Desired,
    report: &mut Report,
) -> Option<(Option<Value>, Inventory)> {
    let live = match cluster.get(&inventory::key()).await {
        Ok(v) => v,
        Err(e) => {
            report.failures.push(format!("reading the inventory: {e}"));
            return None;
        }
    };
    let inv = match &live {
        Some(cm) => match Inventory::from_configmap(cm) {
            Ok(i) => i,
            Err(e) => {
                report.failures.push(e.to_string());
                return None;
            }
        },
        None => Inventory::new(&desired.cluster),
    };
    if !inv.cluster.is_empty() && inv.cluster != desired.cluster {
        report.failures.push(format!(
            "refused: the cluster's inventory belongs to plinth cluster `{}`, and this tree is for `{}`; check `--kubeconfig` and `--dir`",
            inv.cluster, desired.cluster
        ));
        return None;
    }
    report.previous_revision = inv.revision.clone();
    Some((live, inv))
}

/// One run of the engine: what it works from, and the report it fills in.
struct Run<'a> {
    cluster: &'a Cluster,
    desired: &'a Desired,
    opts: &'a Options,
    desired_keys: BTreeSet<ObjectKey>,
    /// The inventory ConfigMap as stored (`None`: there is none yet).
    live_inv: Option<Value>,
    /// What the inventory listed before the run.
    old: Inventory,
    /// The empty-render guard's verdict.
    render: Result<(), String>,
    report: Report,
}

/// A step ended the run; the report says why.
struct Stopped;

/// What a step of [`Run`] gives the steps after it, or [`Stopped`].
type Step<T = ()> = Result<T, Stopped>;

/// Apply `desired` to the cluster once.
pub async fn apply(cluster: &Cluster, desired: &Desired, opts: &Options) -> Report {
    match Run::start(Command::Apply, cluster, desired, opts).await {
        Ok(mut run) => {
            // A step that stops the run has said why in the report.
            let _ = run.reconcile().await;
            run.report
        }
        Err(report) => report,
    }
}

/// What [`apply`] would do, without writing anything.
pub async fn diff(cluster: &Cluster, desired: &Desired, opts: &Options) -> Report {
    match Run::start(Command::Diff, cluster, desired, opts).await {
        Ok(mut run) => {
            run.diff().await;
            run.report
        }
        Err(report) => report,
    }
}

impl<'a> Run<'a> {
    /// Read the inventory and judge the render. `Err`: the inventory could not be read, or
    /// belongs to another cluster (the report says why).
    async fn start(
        command: Command,
        cluster: &'a Cluster,
        desired: &'a Desired,
        opts: &'a Options,
    ) -> Result<Run<'a>, Report> {
        let mut report = Report::new(
            command,
            &desired.cluster,
            &desired.revision,
            opts.drift.mode,
        );
        let Some((live_inv, old)) = read_inventory(cluster, desired, &mut report).await else {
            return Err(report);
        };
        let render =
            prune::check_render(desired.objects.len(), old.objects.len(), opts.allow_empty);
        Ok(Run {
            cluster,
            desired,
            opts,
            desired_keys: desired.objects.iter().map(|o| o.key.clone()).collect(),
            live_inv,
            old,
            render,
            report,
        })
    }

    /// guard → record intent → apply stages → await health → prune → record.
    async fn reconcile(&mut self) -> Step {
        self.guard().await?;
        let pending = self.record_intent().await?;
        self.apply_stages().await?;
        self.await_health().await?;
        let keep = self.prune().await?;
        self.record(&pending, &keep).await;
        Ok(())
    }

    /// Refuse an empty render and, with `--prune`, deleting data without approval (the plan
    /// refuses it too): the run stops before anything is written.
    async fn guard(&mut self) -> Step {
        if let Err(why) = &self.render {
            self.report.failures.push(format!(
                "refused: {why}; nothing was applied (`--allow-empty` applies it anyway)"
            ));
            return Err(Stopped);
        }
        if self.opts.prune
            && !data_deletions_approved(
                self.cluster,
                self.desired,
                &self.old,
                &self.desired_keys,
                self.opts,
                &mut self.report,
            )
            .await
        {
            return Err(Stopped);
        }
        Ok(())
    }

    /// Record desired ∪ inventory before creating anything; the inventory recorded.
    async fn record_intent(&mut self) -> Step<Inventory> {
        let pending = self.old.with(&self.desired_keys);
        let first = self.live_inv.is_none();
        if (first || pending != self.old)
            && let Err(e) = write_inventory(self.cluster, &pending, first, self.opts).await
        {
            self.report
                .failures
                .push(format!("recording the inventory: {e}"));
            return Err(Stopped);
        }
        Ok(pending)
    }

    /// Apply stage by stage; after a stage that failed, the objects of later stages are
    /// reported skipped.
    async fn apply_stages(&mut self) -> Step {
        let desired = self.desired;
        let mut stages: BTreeMap<Stage, Vec<&DesiredObject>> = BTreeMap::new();
        for o in &desired.objects {
            stages.entry(o.stage).or_default().push(o);
        }
        let mut stopped = false;
        for (stage, objects) in stages {
            if stopped {
                self.report.objects.extend(
                    objects.into_iter().map(|o| {
                        ObjectReport::new(o.key.clone(), o.source.clone(), Action::Skipped)
                    }),
                );
                continue;
            }
            stopped = self.apply_stage(stage, &objects).await.is_err();
        }
        if stopped { Err(Stopped) } else { Ok(()) }
    }

    /// Bring the objects of one stage to their desired state; CRDs and namespaces written are
    /// waited for, since what the next stages need must be there first.
    async fn apply_stage(&mut self, stage: Stage, objects: &[&DesiredObject]) -> Step {
        let work: Vec<_> = objects
            .iter()
            .map(|o| sync_object(self.cluster, o, self.opts))
            .collect();
        let results: Vec<ObjectReport> = futures::stream::iter(work)
            .buffered(self.opts.concurrency.max(1))
            .collect()
            .instrument(tracing::info_span!("stage", ?stage))
            .await;
        let failed = results.iter().any(|r| r.action == Action::Failed);
        let base = self.report.objects.len();
        let touched: Vec<usize> = results
            .iter()
            .enumerate()
            .filter(|(_, r)| {
                matches!(
                    r.action,
                    Action::Create | Action::Update | Action::Heal | Action::Provenance
                )
            })
            .map(|(i, _)| base + i)
            .collect();
        self.report.objects.extend(results);
        if failed {
            return Err(Stopped);
        }
        if !matches!(stage, Stage::Crds | Stage::Namespaces) || touched.is_empty() {
            return Ok(());
        }
        let deadline = Instant::now() + self.opts.health_timeout;
        wait_healthy(
            self.cluster,
            &mut self.report,
            &touched,
            deadline,
            self.opts,
        )
        .await;
        let ready = touched.iter().all(|&i| is_healthy(&self.report.objects[i]));
        if !ready {
            self.report.failures.push(format!(
                "{} not ready within {}; later stages were not applied",
                if stage == Stage::Crds {
                    "custom resource definitions"
                } else {
                    "namespaces"
                },
                crate::duration::show(self.opts.health_timeout)
            ));
        }
        if stage == Stage::Crds {
            self.cluster.forget_discovery();
        }
        if ready { Ok(()) } else { Err(Stopped) }
    }

    /// Wait until everything written, and anything found unhealthy, is healthy.
    async fn await_health(&mut self) -> Step {
        let waiting: Vec<usize> = (0..self.report.objects.len())
            .filter(|&i| !is_healthy(&self.report.objects[i]))
            .collect();
        let deadline = Instant::now() + self.opts.health_timeout;
        wait_healthy(
            self.cluster,
            &mut self.report,
            &waiting,
            deadline,
            self.opts,
        )
        .await;
        let unhealthy = waiting
            .iter()
            .filter(|&&i| !is_healthy(&self.report.objects[i]))
            .count();
        if unhealthy > 0 {
            self.report.failures.push(format!(
                "{unhealthy} objects not healthy within {}; nothing was pruned",
                crate::duration::show(self.opts.health_timeout)
            ));
            return Err(Stopped);
        }
        Ok(())
    }

    /// With `--prune`, delete the candidates within the guards; without, report them
    /// pending. What stays in the inventory.
    async fn prune(&mut self) -> Step<BTreeSet<ObjectKey>> {
        let candidates = self.old.candidates(&self.desired_keys);
        let mut keep: BTreeSet<ObjectKey> = BTreeSet::new();
        if self.opts.prune {
            let scope = Scope {
                desired: self.desired,
                desired_keys: &self.desired_keys,
                old: &self.old,
            };
            prune(
                self.cluster,
                &candidates,
                &scope,
                self.opts,
                &mut self.report,
                &mut keep,
            )
            .await;
        } else {
            for k in &candidates {
                keep.insert(k.clone());
                self.report
                    .prune
                    .push(PruneReport::new(k.clone(), PruneAction::Pending));
            }
        }
        if self.report.failed() {
            return Err(Stopped);
        }
        Ok(keep)
    }

    /// Record the inventory of the revision: what is desired and what was kept.
    async fn record(&mut self, pending: &Inventory, keep: &BTreeSet<ObjectKey>) {
        // Approvals spent on deletions that did not happen yet (a namespace held) keep counting.
        let approved: BTreeSet<ObjectKey> = self
            .report
            .prune
            .iter()
            .filter(|p| {
                keep.contains(&p.key)
                    && p.approval.is_some()
                    && plinth::plan::destructive_to_delete(&p.key).is_some()
            })
            .map(|p| p.key.clone())
            .collect();
        let done = Inventory {
            cluster: self.desired.cluster.clone(),
            revision: self.desired.revision.clone(),
            objects: self.desired_keys.union(keep).cloned().collect(),
            approvals: self.desired.approvals.clone(),
            approved,
        };
        if done != *pending
            && let Err(e) = write_inventory(self.cluster, &done, false, self.opts).await
        {
            self.report
                .failures
                .push(format!("recording the inventory of the revision: {e}"));
        }
    }

    /// Observe every object as an apply with `--drift heal` would, and judge the candidates
    /// as pruning would.
    async fn diff(&mut self) {
        if let Err(why) = &self.render {
            self.report
                .failures
                .push(format!("an apply would be refused: {why}"));
        }
        let heal = drift::Policy {
            mode: Mode::Heal,
            ..self.opts.drift.clone()
        };
        let work: Vec<_> = self
            .desired
            .objects
            .iter()
            .map(|o| diff_object(self.cluster, o, self.opts, &heal))
            .collect();
        self.report.objects = futures::stream::iter(work)
            .buffered(self.opts.concurrency.max(1))
            .collect()
            .await;
        self.diff_prune().await;
    }

    /// What pruning would do with the candidates.
    async fn diff_prune(&mut self) {
        let candidates = self.old.candidates(&self.desired_keys);
        let scope = Scope {
            desired: self.desired,
            desired_keys: &self.desired_keys,
            old: &self.old,
        };
        let verdicts = judge(self.cluster, &candidates, &scope, &mut self.report).await;
        for (k, v) in verdicts {
            let action = match v {
                Verdict::Delete { .. } => PruneAction::Delete,
                ref other => kept_action(other),
            };
            let mut r = with_holds(PruneReport::new(k.clone(), action), &v);
            if action == PruneAction::Delete && plinth::plan::destructive_to_delete(&k).is_some() {
                r.approval = prune::approval(
                    &self.desired.cluster,
                    &k,
                    &self.desired.approvals,
                    &self.old.approvals,
                    &self.old.approved,
                    self.opts.allow_destructive,
                );
                if r.approval.is_none() {
                    self.report.unapproved.push(k.clone());
                }
            }
            self.report.prune.push(r);
        }
    }
}

/// What writing an existing object amounts to: an update of its content, a heal of drift, or
/// only new provenance annotations (its spec moved: the plan shows no change).
fn action_of(cmp: &drift::Comparison, healed: bool) -> Action {
    let content = cmp.hash_changed
        || cmp.ownership_changed
        || cmp.updates().any(|d| !drift::is_provenance(&d.path));
    if content {
        Action::Update
    } else if !healed && cmp.updates().next().is_some() {
        Action::Provenance
    } else {
        Action::Heal
    }
}

fn is_healthy(o: &ObjectReport) -> bool {
    o.health.as_ref().is_none_or(Health::is_healthy)
}

async fn write_inventory(
    cluster: &Cluster,
    inv: &Inventory,
    first: bool,
    opts: &Options,
) -> Result<(), ApiError> {
    if first {
        let ns = inventory::namespace_key();
        if cluster.get(&ns).await?.is_none() {
            let body = serde_json::json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": inventory::NAMESPACE,
                             "labels": {inventory::AGENT_LABEL.0: inventory::AGENT_LABEL.1}},
            });
            cluster
                .apply(&ns, &body, &opts.manager, Write::Force)
                .await?;
        }
    }
    cluster
        .apply(
            &inventory::key(),
            &inv.to_configmap(),
            &opts.manager,
            Write::Force,
        )
        .await?;
    Ok(())
}

/// What the cluster holds for a desired object, and what bringing it to its desired state
/// takes.
struct Observed {
    live: Value,
    cmp: drift::Comparison,
    plan: drift::ApplyPlan,
}

/// Get the live object (`None`: missing) and dry-run apply the desired one with force; compare
/// them under `policy`. For an apply, a held namespace desired again is released first (its
/// label and annotation go with their manager), so the dry run sees it released.
async fn observe(
    cluster: &Cluster,
    o: &DesiredObject,
    opts: &Options,
    policy: &drift::Policy,
    command: Command,
) -> Result<Option<Observed>, ApiError> {
    let Some(live) = cluster.get(&o.key).await? else {
        return Ok(None);
    };
    if command == Command::Apply
        && prune::is_namespace(&o.key)
        && live
            .pointer("/metadata/labels")
            .and_then(|l| l.get(prune::HELD_LABEL))
            .is_some()
    {
        let body = serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": o.key.name},
        });
        cluster
            .apply(&o.key, &body, prune::HOLD_MANAGER, Write::Force)
            .await?;
    }
    let merged = cluster
        .apply(&o.key, &o.object, &opts.manager, Write::DryRun)
        .await?;
    let cmp = drift::compare_revisions(
        &live,
        &merged,
        o.previous.as_ref().map(|p| (p, &o.object)),
        &o.hash,
        &opts.manager,
        policy,
    );
    let plan = drift::plan(&o.object, &live, &cmp, policy);
    Ok(Some(Observed { live, cmp, plan }))
}

/// Bring one object to its desired state.
async fn sync_object(cluster: &Cluster, o: &DesiredObject, opts: &Options) -> ObjectReport {
    let mut r = ObjectReport::new(o.key.clone(), o.source.clone(), Action::Unchanged);
    if let Err(e) = write_object(cluster, o, opts, &mut r).await {
        tracing::warn!(object = %o.key, error = %e, "failed");
        r.action = Action::Failed;
        r.error = Some(e);
    }
    r
}

/// Create a missing object; write an existing one only when something must change.
async fn write_object(
    cluster: &Cluster,
    o: &DesiredObject,
    opts: &Options,
    r: &mut ObjectReport,
) -> Result<(), ApiError> {
    let Some(Observed { live, cmp, plan }) =
        observe(cluster, o, opts, &opts.drift, Command::Apply).await?
    else {
        let created = cluster
            .apply(&o.key, &o.object, &opts.manager, Write::Apply)
            .await?;
        r.action = Action::Create;
        r.health = Some(health::of(&created));
        tracing::info!(object = %o.key, "created");
        return Ok(());
    };
    r.diffs = cmp.diffs.clone();
    r.extras = cmp.extras.clone();
    if !plan.needed {
        r.health = Some(health::of(&live));
        return Ok(());
    }
    let applied = cluster
        .apply(&o.key, &plan.body, &opts.manager, Write::forced(plan.force))
        .await?;
    r.healed = opts.drift.mode == Mode::Heal && cmp.drift().next().is_some();
    r.action = action_of(&cmp, r.healed);
    r.health = Some(health::of(&applied));
    tracing::info!(object = %o.key, action = ?r.action, force = plan.force, "applied");
    Ok(())
}

/// Poll the objects at `indices` until they are healthy, one of them is degraded for good,
/// or `deadline` passes; their reports get the last health seen.
async fn wait_healthy(
    cluster: &Cluster,
    report: &mut Report,
    indices: &[usize],
    deadline: Instant,
    opts: &Options,
) {
    let mut waiting: Vec<usize> = indices
        .iter()
        .copied()
        .filter(|&i| !is_healthy(&report.objects[i]))
        .collect();
    while !waiting.is_empty() {
        if waiting
            .iter()
            .all(|&i| matches!(report.objects[i].health, Some(Health::Degraded(_))))
        {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        tokio::time::sleep(opts.poll.min(deadline - now)).await;
        let keys: Vec<ObjectKey> = waiting
            .iter()
            .map(|&i| report.objects[i].key.clone())
            .collect();
        let work: Vec<_> = keys.iter().map(|k| cluster.get(k)).collect();
        let seen: Vec<Result<Option<Value>, ApiError>> = futures::stream::iter(work)
            .buffered(opts.concurrency.max(1))
            .collect()
            .await;
        for (&i, got) in waiting.iter().zip(seen) {
            match got {
                Ok(Some(live)) => report.objects[i].health = Some(health::of(&live)),
                Ok(None) => {
                    report.objects[i].health = Some(Health::Progressing("not found".into()));
                }
                Err(e) => tracing::warn!(error = %e, "health check failed; trying again"),
            }
        }
        waiting.retain(|&i| !is_healthy(&report.objects[i]));
    }
}

/// What pruning judges candidates against.
struct Scope<'a> {
    desired: &'a Desired,
    desired_keys: &'a BTreeSet<ObjectKey>,
    old: &'a Inventory,
}

/// Refuse (`false`, the report saying why and what approves it) when a candidate whose deletion
/// loses data would be deleted without approval.
async fn data_deletions_approved(
    cluster: &Cluster,
    desired: &Desired,
    old: &Inventory,
    desired_keys: &BTreeSet<ObjectKey>,
    opts: &Options,
    report: &mut Report,
) -> bool {
    let mut unapproved = Vec::new();
    for k in old.candidates(desired_keys) {
        if prune::approval(
            &desired.cluster,
            &k,
            &desired.approvals,
            &old.approvals,
            &old.approved,
            opts.allow_destructive,
        )
        .is_some()
        {
            continue;
        }
        match cluster.get(&k).await {
            // Only what would really be deleted needs approval.
            Ok(live) => {
                if matches!(prune::verdict(live.as_ref()), Verdict::Delete { .. }) {
                    unapproved.push(k);
                }
            }
            Err(e) => {
                report.failures.push(format!(
                    "refused to prune: reading {k}: {e}; nothing was applied"
                ));
                return false;
            }
        }
    }
    if unapproved.is_empty() {
        return true;
    }
    let names: Vec<String> = unapproved.iter().map(ToString::to_string).collect();
    let yaml =
        plinth::plan::approvals_yaml(unapproved.iter().map(|k| (desired.cluster.as_str(), k)));
    report.failures.push(format!(
        "refused: deleting {} loses data and is not approved; nothing was applied\nhint: approve it in the revision that deletes it: add under `spec:` of the Platform\n{}",
        names.join(", "),
        yaml.trim_end()
            .lines()
            .map(|l| format!("  {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    ));
    report.unapproved = unapproved;
    false
}

/// Judge the candidates against the live cluster: gone, not ours, disabled, held (a namespace
/// holding kept candidates or objects plinth does not own), or to delete (with what approved
/// the deletion of data). A candidate that cannot be read, or a namespace whose content cannot
/// be listed, is reported failed.
async fn judge(
    cluster: &Cluster,
    candidates: &[ObjectKey],
    scope: &Scope<'_>,
    report: &mut Report,
) -> Vec<(ObjectKey, Verdict)> {
    let mut keys = candidates.to_vec();
    prune::order(&mut keys);
    let mut verdicts = Vec::new();
    for k in &keys {
        match cluster.get(k).await {
            Ok(live) => verdicts.push((k.clone(), prune::verdict(live.as_ref()))),
            Err(e) => report.prune.push(PruneReport::failed(k.clone(), e)),
        }
    }
    prune::hold_namespaces(&mut verdicts);
    let owned: BTreeSet<ObjectKey> = scope
        .old
        .objects
        .union(scope.desired_keys)
        .cloned()
        .collect();
    for (k, v) in &mut verdicts {
        if !(prune::is_namespace(k) && matches!(v, Verdict::Delete { .. })) {
            continue;
        }
        match cluster.namespace_contents(&k.name).await {
            Ok(listed) => {
                let objects = prune::unowned(&listed, &owned);
                if !objects.is_empty() {
                    tracing::warn!(namespace = %k.name, holds = ?objects, "namespace held: it holds objects plinth does not own");
                    *v = Verdict::Holds { objects };
                }
            }
            Err(e) => {
                // What cannot be seen is never deleted.
                report.prune.push(PruneReport::failed(k.clone(), e));
                *v = Verdict::Gone;
            }
        }
    }
    verdicts.retain(|(k, _)| !report.prune.iter().any(|p| &p.key == k));
    verdicts
}

/// Label and annotate a held namespace (its own field manager), so people see why it stays.
async fn mark_held(cluster: &Cluster, key: &ObjectKey, objects: &[String]) {
    let shown: Vec<&str> = objects.iter().take(20).map(String::as_str).collect();
    let mut text = shown.join(", ");
    if objects.len() > shown.len() {
        text.push_str(&format!(", … {} more", objects.len() - shown.len()));
    }
    let body = serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {
            "name": key.name,
            "labels": {prune::HELD_LABEL: "true"},
            "annotations": {prune::HELD_ANNOTATION: text},
        },
    });
    if let Err(e) = cluster
        .apply(key, &body, prune::HOLD_MANAGER, Write::Force)
        .await
    {
        tracing::warn!(namespace = %key.name, error = %e, "labelling the held namespace failed");
    }
}

/// Delete what is in the inventory and no longer desired, within the guards. `keep` gets
/// what stays in the inventory.
async fn prune(
    cluster: &Cluster,
    candidates: &[ObjectKey],
    scope: &Scope<'_>,
    opts: &Options,
    report: &mut Report,
    keep: &mut BTreeSet<ObjectKey>,
) {
    let verdicts = judge(cluster, candidates, scope, report).await;
    for p in &report.prune {
        keep.insert(p.key.clone());
    }
    let deletions = verdicts
        .iter()
        .filter(|(_, v)| matches!(v, Verdict::Delete { .. }))
        .count();
    if let Err(why) = opts.budget.check(deletions, scope.old.objects.len()) {
        report.failures.push(format!(
            "refused to prune: {why}; nothing was deleted (raise `--delete-budget` to allow it)"
        ));
        for (k, v) in verdicts {
            keep.insert(k.clone());
            let action = match v {
                Verdict::Delete { .. } => PruneAction::Pending,
                ref other => kept_action(other),
            };
            report
                .prune
                .push(with_holds(PruneReport::new(k, action), &v));
        }
        return;
    }
    if report.prune.iter().any(|p| p.action == PruneAction::Failed) {
        // A candidate could not be read: delete nothing this time.
        for (k, _) in verdicts {
            keep.insert(k.clone());
            report.prune.push(PruneReport::new(k, PruneAction::Pending));
        }
        return;
    }
    for (k, v) in verdicts {
        // What approves the deletion of data (checked before the run; recorded here).
        let approval = prune::approval(
            &scope.desired.cluster,
            &k,
            &scope.desired.approvals,
            &scope.old.approvals,
            &scope.old.approved,
            opts.allow_destructive,
        )
        .filter(|_| plinth::plan::destructive_to_delete(&k).is_some());
        let mut r = match &v {
            Verdict::Delete { uid } => {
                if plinth::plan::destructive_to_delete(&k).is_some() && approval.is_none() {
                    // Cannot happen after the check before the run; never delete unapproved data.
                    keep.insert(k.clone());
                    PruneReport::new(k.clone(), PruneAction::Pending)
                } else {
                    match cluster.delete(&k, uid.as_deref()).await {
                        Ok(Deleted::Deleted) => {
                            tracing::info!(object = %k, "pruned");
                            PruneReport::new(k.clone(), PruneAction::Delete)
                        }
                        Ok(Deleted::Gone) => PruneReport::new(k.clone(), PruneAction::Gone),
                        Err(e) => {
                            keep.insert(k.clone());
                            PruneReport::failed(k.clone(), e)
                        }
                    }
                }
            }
            Verdict::Gone => PruneReport::new(k.clone(), PruneAction::Gone),
            other => {
                keep.insert(k.clone());
                if let Verdict::Holds { objects } = other {
                    mark_held(cluster, &k, objects).await;
                }
                with_holds(PruneReport::new(k.clone(), kept_action(other)), other)
            }
        };
        r.approval = approval;
        report.prune.push(r);
    }
}

fn with_holds(mut r: PruneReport, v: &Verdict) -> PruneReport {
    if let Verdict::Holds { objects } = v {
        r.holds = objects.clone();
    }
    r
}

/// How a candidate that is not deleted shows in a report.
fn kept_action(v: &Verdict) -> PruneAction {
    match v {
        Verdict::Delete { .. } => PruneAction::Pending,
        Verdict::Gone => PruneAction::Gone,
        Verdict::Disabled => PruneAction::KeptDisabled,
        Verdict::NotOurs => PruneAction::NotOurs,
        Verdict::Holds { .. } => PruneAction::Holds,
    }
}

/// What an apply with `heal` would do to one object.
async fn diff_object(
    cluster: &Cluster,
    o: &DesiredObject,
    opts: &Options,
    heal: &drift::Policy,
) -> ObjectReport {
    let mut r = ObjectReport::new(o.key.clone(), o.source.clone(), Action::Unchanged);
    match observe(cluster, o, opts, heal, Command::Diff).await {
        Ok(None) => r.action = Action::Create,
        Ok(Some(Observed { live, cmp, plan })) => {
            r.healed = cmp.drift().next().is_some();
            r.action = if plan.needed {
                action_of(&cmp, r.healed)
            } else {
                Action::Unchanged
            };
            r.diffs = cmp.diffs;
            r.extras = cmp.extras;
            r.health = Some(health::of(&live));
        }
        Err(e) => {
            r.action = Action::Failed;
            r.error = Some(e);
        }
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The loop will run on spawned tasks: its futures must be `Send`.
    #[test]
    fn runs_are_send() {
        fn send<T: Send>(_: &T) {}
        fn check(c: &Cluster, d: &Desired, o: &Options) {
            send(&apply(c, d, o));
            send(&diff(c, d, o));
        }
        let _ = check;
    }
}
