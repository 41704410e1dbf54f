//! The Platform: clusters, instance types and priority classes, defaults.

use super::*;

impl<'a> Cx<'a> {
    pub(super) fn platform(&self, d: &mut Diagnostics) {
        let Some(pl) = &self.specs.platform else {
            return;
        };
        let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, c) in pl.spec.clusters.iter().enumerate() {
            let at = pl.at_item("spec.clusters", i, ".name");
            if !is_dns_label(&c.name) {
                d.push(invalid_name("cluster name", &c.name, at.clone()));
            }
            if let Some(first) = seen.insert(&c.name, i) {
                d.push(
                    Diagnostic::new(
                        Code::DuplicateEntry,
                        format!("cluster `{}` is declared twice", c.name),
                    )
                    .at(at)
                    .related(
                        pl.at(&format!("spec.clusters[{first}].name"))
                            .note("first declared here"),
                    ),
                );
            }
            for (j, pool) in c.gpu_pools.iter().enumerate() {
                if !self.specs.gpu_quotas.contains_key(pool)
                    && !self.specs.is_broken(Kind::GpuQuota, pool)
                {
                    d.push(unknown(
                        Code::UnknownGpuQuota,
                        "GPU pool",
                        pool,
                        pl.at(&format!("spec.clusters[{i}].gpuPools[{j}]")),
                        self.specs.gpu_quotas.keys().map(String::as_str),
                    ));
                }
            }
        }
        for (i, a) in pl.spec.approvals.iter().enumerate() {
            if let Some(c) = &a.cluster
                && !seen.contains_key(c.as_str())
            {
                d.push(unknown(
                    Code::UnknownCluster,
                    "cluster",
                    c,
                    pl.at(&format!("spec.approvals[{i}].cluster")),
                    seen.keys().copied(),
                ));
            }
        }
        for (i, c) in pl.spec.defaults.clusters.iter().enumerate() {
            if !seen.contains_key(c.as_str()) {
                d.push(unknown(
                    Code::UnknownCluster,
                    "cluster",
                    c,
                    pl.at(&format!("spec.defaults.clusters[{i}]")),
                    seen.keys().copied(),
                ));
            }
        }
        for (i, it) in pl.spec.instance_types.iter().enumerate() {
            if it.gpu > 0 {
                d.push(
                    Diagnostic::new(
                        Code::NotAllowed,
                        format!("instance type `{}` asks for GPUs but is declared on the Platform", it.name),
                    )
                    .at(pl.at(&format!("spec.instanceTypes[{i}].gpu")))
                    .hint("declare GPU instance types in the `GpuQuota` of their pool, so quotas and queues cover them"),
                );
            }
        }
        image_names(pl, "spec.images", &pl.spec.images, d);
    }

    /// Instance type names are global: the Platform's and every pool's.
    pub(super) fn instance_type_names(&self, d: &mut Diagnostics) {
        let mut seen: BTreeMap<&str, crate::specs::At> = BTreeMap::new();
        let mut visit = |name: &'a str, at: crate::specs::At, d: &mut Diagnostics| {
            if !is_dns_label(name) {
                d.push(invalid_name("instance type name", name, at.clone()));
            }
            match seen.get(name) {
                Some(first) => d.push(
                    Diagnostic::new(
                        Code::DuplicateName,
                        format!("instance type `{name}` is defined twice"),
                    )
                    .at(at)
                    .related(first.clone().note("first defined here"))
                    .hint("instance type names are unique across the Platform and every GpuQuota"),
                ),
                None => {
                    seen.insert(name, at);
                }
            }
        };
        if let Some(p) = &self.specs.platform {
            for (i, it) in p.spec.instance_types.iter().enumerate() {
                visit(&it.name, p.at(&format!("spec.instanceTypes[{i}].name")), d);
            }
        }
        for q in self.specs.gpu_quotas.values() {
            for (i, it) in q.spec.instance_types.iter().enumerate() {
                visit(&it.name, q.at(&format!("spec.instanceTypes[{i}].name")), d);
            }
        }
    }

    /// Kueue WorkloadPriorityClasses are cluster-scoped: names are unique across pools.
    pub(super) fn priority_class_names(&self, d: &mut Diagnostics) {
        let mut seen: BTreeMap<&str, crate::specs::At> = BTreeMap::new();
        for q in self.specs.gpu_quotas.values() {
            for (i, pc) in q.spec.priority_classes.iter().enumerate() {
                let at = q.at_item("spec.priorityClasses", i, ".name");
                if !is_dns_label(&pc.name) {
                    d.push(invalid_name("priority class name", &pc.name, at.clone()));
                }
                match seen.get(pc.name.as_str()) {
                    Some(first) => d.push(
                        Diagnostic::new(Code::DuplicateName, format!("priority class `{}` is defined twice", pc.name))
                            .at(at)
                            .related(first.clone().note("first defined here"))
                            .hint("priority classes are cluster-wide; names are unique across every GpuQuota"),
                    ),
                    None => {
                        seen.insert(&pc.name, at);
                    }
                }
            }
        }
    }
}
