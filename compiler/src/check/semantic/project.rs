//! Projects: names, owners and members, quotas, placement, images, network isolation.

use super::*;

impl<'a> Cx<'a> {
    pub(super) fn project(&self, p: &'a Object<crate::model::ProjectSpec>, d: &mut Diagnostics) {
        let s = &p.spec;
        self.suspicious_identities(p, d);
        self.unknown_cluster(p, d);
        self.duplicate_member(p, d);
        self.no_owners(p, d);
        self.per_user_above_project(p, d);
        self.zero_quota(p, d);
        self.default_request_above_limit(p, d);
        self.unknown_instance_type(p, d);
        image_names(p, "spec.images", &s.images, d);
        self.network_allow_from(p, d);
        self.zero_shared_volume(p, d);
    }

    /// Identities and names a reviewer reads: no invisible or look-alike characters.
    fn suspicious_identities(&self, p: &'a Object<crate::model::ProjectSpec>, d: &mut Diagnostics) {
        let s = &p.spec;
        for (i, o) in s.owners.iter().enumerate() {
            suspicious(o, "owner", p.at_item("spec.owners", i, ""), d);
        }
        for (i, m) in s.members.iter().enumerate() {
            if let Some(u) = &m.user {
                suspicious(u, "user", p.at_item("spec.members", i, ".user"), d);
            }
            if let Some(g) = &m.group {
                suspicious(g, "group", p.at_item("spec.members", i, ".group"), d);
            }
        }
        if let Some(n) = &s.display_name {
            suspicious(n, "display name", p.at("spec.displayName"), d);
        }
    }

    /// `UnknownCluster`: the project is placed on declared clusters.
    fn unknown_cluster(&self, p: &'a Object<crate::model::ProjectSpec>, d: &mut Diagnostics) {
        let s = &p.spec;
        let clusters = self.clusters();
        for (i, c) in s.clusters.iter().enumerate() {
            if self.specs.platform.is_some() && !clusters.contains(&c.as_str()) {
                d.push(unknown(
                    Code::UnknownCluster,
                    "cluster",
                    c,
                    p.at(&format!("spec.clusters[{i}]")),
                    clusters.iter().copied(),
                ));
            }
        }
    }

    /// `InvalidChoice`, `DuplicateEntry`: each member is a user or a group, with one role.
    fn duplicate_member(&self, p: &'a Object<crate::model::ProjectSpec>, d: &mut Diagnostics) {
        let s = &p.spec;
        let mut members: BTreeMap<(bool, &str), usize> = BTreeMap::new();
        for (i, m) in s.members.iter().enumerate() {
            let at = p.at_item("spec.members", i, "");
            let who = match (&m.user, &m.group) {
                (Some(u), None) => (true, u.as_str()),
                (None, Some(g)) => (false, g.as_str()),
                _ => {
                    d.push(
                        Diagnostic::new(
                            Code::InvalidChoice,
                            "a member has exactly one of `user` and `group`",
                        )
                        .at(at)
                        .hint("write one member entry per user or group"),
                    );
                    continue;
                }
            };
            if let Some(first) = members.insert(who, i) {
                d.push(
                    Diagnostic::new(
                        Code::DuplicateEntry,
                        format!("member `{}` is listed twice", who.1),
                    )
                    .at(p.at(&format!("spec.members[{i}]")))
                    .related(
                        p.at(&format!("spec.members[{first}]"))
                            .note("first listed here"),
                    )
                    .hint("give each user or group one role"),
                );
            }
        }
    }

    /// `NoOwners`: someone administers the project.
    fn no_owners(&self, p: &'a Object<crate::model::ProjectSpec>, d: &mut Diagnostics) {
        let s = &p.spec;
        if s.owners.is_empty()
            && !s
                .members
                .iter()
                .any(|m| m.role == crate::model::project::Role::Admin)
        {
            d.push(
                Diagnostic::new(
                    Code::NoOwners,
                    format!("project `{}` has no owners", p.name()),
                )
                .at(p.at("metadata.name"))
                .hint(
                    "add `owners:` so someone can administer the project and approve its changes",
                ),
            );
        }
    }

    /// `PerUserAboveProject`: per-user quota fits within the project's quota and GPU allocations.
    fn per_user_above_project(
        &self,
        p: &'a Object<crate::model::ProjectSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &p.spec;
        if let (Some(pu), q) = (&s.per_user_quota, &s.quota) {
            for (field, user, project) in [
                ("cpu", &pu.cpu, q.as_ref().and_then(|q| q.cpu.as_ref())),
                (
                    "memory",
                    &pu.memory,
                    q.as_ref().and_then(|q| q.memory.as_ref()),
                ),
            ] {
                if let (Some(u), Some(pq)) = (user, project)
                    && nanos(u) > nanos(pq)
                {
                    d.push(
                        Diagnostic::new(
                            Code::PerUserAboveProject,
                            format!("per-user {field} quota `{u}` is above the project's {field} quota `{pq}`"),
                        )
                        .at(p.at(&format!("spec.perUserQuota.{field}")))
                        .related(p.at(&format!("spec.quota.{field}")).note("project quota"))
                        .hint(format!("lower `perUserQuota.{field}` to at most `{pq}`")),
                    );
                }
            }
            if let Some(g) = pu.gpu {
                let allocations: Vec<(Label, u32)> = self
                    .specs
                    .gpu_quotas
                    .values()
                    .flat_map(|q| {
                        q.spec
                            .allocations
                            .iter()
                            .enumerate()
                            .filter(|(_, a)| a.project == p.name())
                            .map(move |(i, a)| {
                                (
                                    q.at(&format!("spec.allocations[{i}].gpu"))
                                        .note(format!("allocation in pool `{}`", q.name())),
                                    a.gpu,
                                )
                            })
                    })
                    .collect();
                let total: u64 = allocations.iter().map(|(_, n)| u64::from(*n)).sum();
                if u64::from(g) > total {
                    let mut diag = Diagnostic::new(
                        Code::PerUserAboveProject,
                        format!("per-user GPU quota {g} is above the {total} GPU(s) the project is allocated"),
                    )
                    .at(p.at("spec.perUserQuota.gpu"));
                    for (l, _) in allocations {
                        diag = diag.related(l);
                    }
                    d.push(diag.hint("raise the project's allocation in a `GpuQuota`, or lower `perUserQuota.gpu`"));
                }
            }
        }
    }

    /// `QuantityRange`: the project's CPU and memory quota are not zero.
    fn zero_quota(&self, p: &'a Object<crate::model::ProjectSpec>, d: &mut Diagnostics) {
        let s = &p.spec;
        for (field, q) in [
            (
                "spec.quota.cpu",
                s.quota.as_ref().and_then(|q| q.cpu.as_ref()),
            ),
            (
                "spec.quota.memory",
                s.quota.as_ref().and_then(|q| q.memory.as_ref()),
            ),
        ] {
            if let Some(q) = q
                && nanos(q) == 0
            {
                d.push(
                    Diagnostic::new(
                        Code::QuantityRange,
                        format!("`{field}` is zero: no pod could start"),
                    )
                    .at(p.at(field))
                    .hint("give the project some quota, or remove the field for no limit"),
                );
            }
        }
    }

    /// `QuantityRange`: default requests do not exceed default limits.
    fn default_request_above_limit(
        &self,
        p: &'a Object<crate::model::ProjectSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &p.spec;
        if let Some(def) = &s.defaults {
            for (req, lim, name) in [
                (&def.cpu, &def.cpu_limit, "cpu"),
                (&def.memory, &def.memory_limit, "memory"),
            ] {
                if let (Some(r), Some(l)) = (req, lim)
                    && nanos(r) > nanos(l)
                {
                    d.push(
                        Diagnostic::new(
                            Code::QuantityRange,
                            format!(
                                "default {name} request `{r}` is above the default limit `{l}`"
                            ),
                        )
                        .at(p.at(&format!("spec.defaults.{name}")))
                        .related(
                            p.at(&format!("spec.defaults.{name}Limit"))
                                .note("default limit"),
                        ),
                    );
                }
            }
        }
    }

    /// `UnknownInstanceType`: the project's instance types exist.
    fn unknown_instance_type(&self, p: &'a Object<crate::model::ProjectSpec>, d: &mut Diagnostics) {
        let s = &p.spec;
        for (i, name) in s.instance_types.iter().enumerate() {
            if !self.its().contains_key(name.as_str()) && !self.instance_types_incomplete() {
                d.push(unknown(
                    Code::UnknownInstanceType,
                    "instance type",
                    name,
                    p.at(&format!("spec.instanceTypes[{i}]")),
                    self.its().keys().copied(),
                ));
            }
        }
    }

    /// `UnknownProject`, `InvalidName`, `InvalidValue`: `allowFrom` names projects, namespaces and CIDR blocks that exist and parse.
    fn network_allow_from(&self, p: &'a Object<crate::model::ProjectSpec>, d: &mut Diagnostics) {
        let s = &p.spec;
        for (i, a) in s.network.allow_from.iter().enumerate() {
            if let Some(other) = &a.project {
                self.project_ref(other, p.at_item("spec.network.allowFrom", i, ".project"), d);
            }
            if let Some(ns) = &a.namespace
                && !is_dns_label(ns)
            {
                d.push(invalid_name(
                    "namespace",
                    ns,
                    p.at(&format!("spec.network.allowFrom[{i}].namespace")),
                ));
            }
            if let Some(c) = &a.cidr
                && !is_cidr(c)
            {
                d.push(
                    Diagnostic::new(
                        Code::InvalidValue,
                        format!("`{c}` is not an IP block in CIDR notation"),
                    )
                    .at(p.at(&format!("spec.network.allowFrom[{i}].cidr")))
                    .hint("write an address and a prefix length, e.g. `10.20.0.0/16`"),
                );
            }
        }
    }

    /// `QuantityRange`: the shared volume has a capacity.
    fn zero_shared_volume(&self, p: &'a Object<crate::model::ProjectSpec>, d: &mut Diagnostics) {
        let s = &p.spec;
        if let Some(sv) = &s.volumes.shared
            && nanos(&sv.capacity) == 0
        {
            d.push(
                Diagnostic::new(Code::QuantityRange, "the shared volume's capacity is zero")
                    .at(p.at("spec.volumes.shared.capacity")),
            );
        }
    }
}
