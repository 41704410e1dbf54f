//! GPU pools: capacity per cluster, allocations, borrowing and lending, per-user caps, and whether the rollouts fit their projects' allocations.

use super::*;

impl<'a> Cx<'a> {
    pub(super) fn gpu_quota(&self, q: &'a Object<crate::model::GpuQuotaSpec>, d: &mut Diagnostics) {
        self.reserved_pool_name(q, d);
        self.instance_types_fit_node(q, d);
        self.gpus_per_node_in_range(q, d);
        // Allocations, per cluster: a project's allocation applies in every cluster it lives
        // on that has the pool, and must fit that cluster's capacity.
        let pool_clusters = self.pool_clusters(q);
        self.capacity_by_cluster_known(q, &pool_clusters, d);
        self.gpu_overcommit(q, &pool_clusters, d);
        self.default_priority_class_known(q, d);
        self.reclaim_needs_priorities(q, d);
        self.allocations(q, d);
        self.cohort_name(q, d);
    }

    /// The clusters that have this pool (their `gpuPools` name it).
    fn pool_clusters(&self, q: &Object<crate::model::GpuQuotaSpec>) -> Vec<&'a str> {
        self.specs
            .platform
            .as_ref()
            .map(|pl| {
                pl.spec
                    .clusters
                    .iter()
                    .filter(|c| c.gpu_pools.iter().any(|g| g == q.name()))
                    .map(|c| c.name.as_str())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `UnknownPriorityClass`: the default priority class is one of the pool's.
    fn default_priority_class_known(
        &self,
        q: &'a Object<crate::model::GpuQuotaSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &q.spec;
        if let Some(def) = &s.default_priority_class
            && !s.priority_classes.iter().any(|c| &c.name == def)
        {
            d.push(unknown(
                Code::UnknownPriorityClass,
                "priority class",
                def,
                q.at("spec.defaultPriorityClass"),
                s.priority_classes.iter().map(|c| c.name.as_str()),
            ));
        }
    }

    /// `NotEnforced`: reclaiming from lower priorities needs priority classes.
    fn reclaim_needs_priorities(
        &self,
        q: &'a Object<crate::model::GpuQuotaSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &q.spec;
        if s.priority_classes.is_empty()
            && s.cohort.is_some()
            && s.preemption.reclaim_within_cohort == crate::model::gpu::ReclaimPolicy::LowerPriority
        {
            d.push(
                Diagnostic::new(
                    Code::NotEnforced,
                    format!(
                        "pool `{}` reclaims lent GPUs only from lower-priority workloads, but declares no priority classes: every workload has priority 0, so nothing is ever reclaimed",
                        q.name()
                    ),
                )
                .at(q.at("spec.preemption.reclaimWithinCohort"))
                .hint("declare `priorityClasses` (and a `defaultPriorityClass`), or use `reclaimWithinCohort: Any`"),
            );
        }
    }

    /// `DuplicateEntry`, `AllocationLimits`, `PerUserAboveProject`: each allocation names a project once, within its limits.
    fn allocations(&self, q: &'a Object<crate::model::GpuQuotaSpec>, d: &mut Diagnostics) {
        let s = &q.spec;
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, a) in s.allocations.iter().enumerate() {
            let at = q.at_item("spec.allocations", i, ".project");
            self.project_ref(&a.project, at.clone(), d);
            if let Some(first) = seen.insert(&a.project, i) {
                d.push(
                    Diagnostic::new(
                        Code::DuplicateEntry,
                        format!(
                            "project `{}` has two allocations in pool `{}`",
                            a.project,
                            q.name()
                        ),
                    )
                    .at(at)
                    .related(
                        q.at(&format!("spec.allocations[{first}].project"))
                            .note("first allocation here"),
                    )
                    .hint("merge them into one allocation"),
                );
            }
            if let Some(l) = a.lending_limit
                && l > a.gpu
            {
                d.push(
                    Diagnostic::new(
                        Code::AllocationLimits,
                        format!(
                            "lending limit {l} is above the allocation of {} GPUs",
                            a.gpu
                        ),
                    )
                    .at(q.at(&format!("spec.allocations[{i}].lendingLimit")))
                    .hint("a project can lend at most what it is allocated"),
                );
            }
            if a.borrowing_limit.is_some() && s.cohort.is_none() {
                d.push(
                    Diagnostic::new(
                        Code::AllocationLimits,
                        "a borrowing limit needs a cohort to borrow from",
                    )
                    .at(q.at(&format!("spec.allocations[{i}].borrowingLimit")))
                    .hint("set `cohort:` on the GpuQuota, or remove `borrowingLimit`"),
                );
            }
            if let Some(pu) = s.per_user_gpu
                && pu > a.gpu
            {
                d.push(
                    Diagnostic::new(
                        Code::PerUserAboveProject,
                        format!(
                            "per-user GPU limit {pu} is above project `{}`'s allocation of {} GPUs",
                            a.project, a.gpu
                        ),
                    )
                    .at(q.at("spec.perUserGpu"))
                    .related(
                        q.at(&format!("spec.allocations[{i}].gpu"))
                            .note("the project's allocation"),
                    )
                    .hint("lower `perUserGpu` or raise the allocation"),
                );
            }
        }
    }

    /// `InvalidName`: the cohort is a DNS label.
    fn cohort_name(&self, q: &'a Object<crate::model::GpuQuotaSpec>, d: &mut Diagnostics) {
        let s = &q.spec;
        if let Some(c) = &s.cohort
            && !is_dns_label(c)
        {
            d.push(invalid_name("cohort", c, q.at("spec.cohort")));
        }
    }

    /// `InvalidName`: a pool may not take a name plinth reserves.
    fn reserved_pool_name(&self, q: &'a Object<crate::model::GpuQuotaSpec>, d: &mut Diagnostics) {
        if crate::model::gpu::RESERVED_POOL_NAMES.contains(&q.name()) {
            d.push(
                Diagnostic::new(Code::InvalidName, format!("a GPU quota may not be called `{}`", q.name()))
                    .at(q.at("metadata.name"))
                    .hint("`default` is each project's default Kueue queue and `plinth-cpu` the flavor of CPU work; pick another name, e.g. `a100`"),
            );
        }
    }

    /// `InstanceTypeTooLarge`, `NotAllowed`: each instance type fits a node and has GPUs.
    fn instance_types_fit_node(
        &self,
        q: &'a Object<crate::model::GpuQuotaSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &q.spec;
        for (i, it) in s.instance_types.iter().enumerate() {
            if it.gpu > s.pool.gpus_per_node {
                d.push(
                    Diagnostic::new(
                        Code::InstanceTypeTooLarge,
                        format!(
                            "instance type `{}` asks for {} GPUs but a node of pool `{}` has {}",
                            it.name,
                            it.gpu,
                            q.name(),
                            s.pool.gpus_per_node
                        ),
                    )
                    .at(q.at(&format!("spec.instanceTypes[{i}].gpu")))
                    .related(q.at("spec.pool.gpusPerNode").note("GPUs per node"))
                    .hint("pods cannot span nodes; lower `gpu` or use a larger node pool"),
                );
            }
            if it.gpu == 0 {
                d.push(
                    Diagnostic::new(
                        Code::NotAllowed,
                        format!(
                            "instance type `{}` of GPU pool `{}` has no GPUs",
                            it.name,
                            q.name()
                        ),
                    )
                    .at(q.at(&format!("spec.instanceTypes[{i}].gpu")))
                    .hint("declare CPU-only instance types on the Platform (`spec.instanceTypes`)"),
                );
            }
        }
    }

    /// `QuantityRange`: a node holds no more GPUs than the pool.
    fn gpus_per_node_in_range(
        &self,
        q: &'a Object<crate::model::GpuQuotaSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &q.spec;
        if s.pool.gpus_per_node > s.pool.capacity {
            d.push(
                Diagnostic::new(
                    Code::QuantityRange,
                    format!(
                        "pool `{}` has {} GPUs per node but only {} in total",
                        q.name(),
                        s.pool.gpus_per_node,
                        s.pool.capacity
                    ),
                )
                .at(q.at("spec.pool.gpusPerNode"))
                .related(q.at("spec.pool.capacity").note("capacity")),
            );
        }
    }

    /// `UnknownCluster`: `capacityByCluster` names only clusters with this pool.
    fn capacity_by_cluster_known(
        &self,
        q: &'a Object<crate::model::GpuQuotaSpec>,
        pool_clusters: &[&str],
        d: &mut Diagnostics,
    ) {
        let s = &q.spec;
        for c in s.pool.capacity_by_cluster.keys() {
            if !pool_clusters.contains(&c.as_str()) {
                d.push(
                    Diagnostic::new(
                        Code::UnknownCluster,
                        format!("cluster `{c}` does not have pool `{}`", q.name()),
                    )
                    .at(q.at(&format!("spec.pool.capacityByCluster.{c}")))
                    .hint(format!(
                        "the clusters with this pool (their `gpuPools` name it) are {}",
                        if pool_clusters.is_empty() {
                            "none".to_owned()
                        } else {
                            pool_clusters
                                .iter()
                                .map(|c| format!("`{c}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    )),
                );
            }
        }
    }

    /// `GpuOvercommit`: per cluster, allocations fit the capacity there (unless overcommit is allowed).
    fn gpu_overcommit(
        &self,
        q: &'a Object<crate::model::GpuQuotaSpec>,
        pool_clusters: &[&str],
        d: &mut Diagnostics,
    ) {
        let s = &q.spec;
        if !s.allow_overcommit {
            for cluster in pool_clusters {
                let capacity = u64::from(s.capacity_in(cluster));
                let here = |a: &crate::model::gpu::Allocation| {
                    self.specs
                        .projects
                        .get(&a.project)
                        .is_some_and(|p| self.specs.placement_iter(&p.spec).any(|c| c == *cluster))
                };
                let sum: u64 = s
                    .allocations
                    .iter()
                    .filter(|a| here(a))
                    .map(|a| u64::from(a.gpu))
                    .sum();
                if sum <= capacity {
                    continue;
                }
                // Which allocation was raised is not known without the previous revision, so
                // none is blamed: the capacity is the place, every allocation counted here is
                // marked beside it.
                let cap_at = if s.pool.capacity_by_cluster.contains_key(*cluster) {
                    format!("spec.pool.capacityByCluster.{cluster}")
                } else {
                    "spec.pool.capacity".to_owned()
                };
                let mut diag = Diagnostic::new(
                    Code::GpuOvercommit,
                    format!(
                        "allocations in pool `{}` add up to {sum} GPUs in cluster `{cluster}`, over its capacity there of {capacity} (by {})",
                        q.name(),
                        sum - capacity
                    ),
                )
                .at(q.at(&cap_at));
                for (i, a) in s.allocations.iter().enumerate().filter(|(_, a)| here(a)) {
                    diag = diag.related(
                        q.at(&format!("spec.allocations[{i}].gpu"))
                            .note(format!("`{}`: {} GPU(s)", a.project, a.gpu)),
                    );
                }
                d.push(diag.hint(format!(
                    "capacity is per cluster and a project's allocation applies in every cluster it lives on; lower the allocations marked by {} GPU(s) in total, raise the capacity (`capacityByCluster`), or set `allowOvercommit: true`",
                    sum - capacity
                )));
            }
        }
    }

    /// GPUs each project's rollouts need per pool, against the project's allocation there, and
    /// the pool's presence on the clusters the project lives on.
    pub(super) fn rollout_capacity(&self, d: &mut Diagnostics) {
        // (project, pool) -> running total
        let mut need: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for r in self.specs.rollouts.values() {
            let s = &r.spec;
            let (gpu, pool, field) = match (&s.instance_type, &s.resources) {
                (Some(it), None) => match self.its().get(it.as_str()) {
                    Some((t, Some(pool))) => (t.gpu, *pool, "spec.instanceType"),
                    _ => continue,
                },
                (None, Some(res)) if res.gpu > 0 => match &s.gpu_quota {
                    Some(q) if self.specs.gpu_quotas.contains_key(q) => {
                        (res.gpu, q.as_str(), "spec.resources.gpu")
                    }
                    _ => continue,
                },
                _ => continue,
            };
            if gpu == 0 {
                continue;
            }
            let Some(project) = self.specs.projects.get(&s.project) else {
                continue;
            };
            let versions = s.traffic.as_ref().map_or(1, |t| t.versions.len().max(1)) as u64;
            let this = u64::from(gpu) * u64::from(s.max_replicas()) * versions;
            let total = need.entry((s.project.as_str(), pool)).or_default();
            *total += this;
            let quota = &self.specs.gpu_quotas[pool];
            let alloc = quota
                .spec
                .allocations
                .iter()
                .enumerate()
                .find(|(_, a)| a.project == s.project);
            let allowed = alloc.map_or(0, |(_, a)| u64::from(a.gpu));
            if *total > allowed && *total - this <= allowed {
                let mut diag = Diagnostic::new(
                    Code::RolloutGpuExceeds,
                    format!(
                        "model rollouts of project `{}` need {} GPUs of pool `{pool}`, but the project is allocated {allowed}",
                        s.project, *total
                    ),
                )
                .at(r.at(field));
                diag = match alloc {
                    Some((i, _)) => diag.related(
                        quota
                            .at(&format!("spec.allocations[{i}].gpu"))
                            .note("the project's allocation"),
                    ),
                    None => diag,
                };
                d.push(diag.hint(format!(
                    "this rollout needs {gpu} GPU(s) × {} replica(s) × {versions} version(s); raise the allocation or lower the replicas",
                    s.max_replicas()
                )));
            }
            // The pool must exist on each cluster the project lives on.
            if let Some(pl) = &self.specs.platform {
                for c in self.specs.placement_iter(&project.spec) {
                    if let Some((ci, cluster)) = pl
                        .spec
                        .clusters
                        .iter()
                        .enumerate()
                        .find(|(_, x)| x.name == c)
                        && !cluster.gpu_pools.iter().any(|p| p == pool)
                    {
                        d.push(
                            Diagnostic::new(
                                Code::Placement,
                                format!("GPU pool `{pool}` is not present on cluster `{c}`, where project `{}` lives", s.project),
                            )
                            .at(r.at(field))
                            .related(pl.at(&format!("spec.clusters[{ci}].gpuPools")).note("the cluster's GPU pools"))
                            .hint("add the pool to the cluster's `gpuPools`, or limit the project's `clusters`"),
                        );
                    }
                }
            }
        }
    }
}
