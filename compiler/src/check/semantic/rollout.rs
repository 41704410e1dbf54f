//! Model rollouts: references, sizing, traffic strategies and the serving infrastructure they need.

use super::*;
use crate::model::platform::Mesh;
use crate::model::rollout::{EndpointAccess, ModelFormat, ScaleMetric};

/// The strategy of a two-version traffic split, the one serving has to route.
fn two_version_strategy(s: &crate::model::ModelRolloutSpec) -> Option<Strategy> {
    s.traffic
        .as_ref()
        .filter(|t| t.versions.len() == 2)
        .map(|t| t.strategy)
}

/// The rollout's storage URIs, each with its field.
fn storage_uris(s: &crate::model::ModelRolloutSpec) -> Vec<(&str, String)> {
    match &s.traffic {
        Some(t) => t
            .versions
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    v.storage_uri.as_str(),
                    format!("spec.traffic.versions[{i}].storageUri"),
                )
            })
            .collect(),
        None => s
            .model
            .storage_uri
            .iter()
            .map(|u| (u.as_str(), "spec.model.storageUri".to_owned()))
            .collect(),
    }
}

impl<'a> Cx<'a> {
    pub(super) fn rollout(
        &self,
        r: &'a Object<crate::model::ModelRolloutSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &r.spec;
        let project = self.specs.projects.get(&s.project);
        if project.is_none() {
            self.project_ref(&s.project, r.at("spec.project"), d);
        }
        self.sizing(r, project, d);
        self.gpu_resources_pool(r, d);
        self.replicas_or_autoscaling(r, d);
        self.autoscaling_range(r, d);
        self.model_image(r, d);
        self.rollout_placement(r, d);
        self.storage_uri_or_traffic(r, d);
        self.endpoint(r, d);
        self.serving(r, project, d);
        self.deployment_limits(r, d);
    }

    /// `InvalidChoice`: an instance type or resources, and references to the instance type and priority class.
    fn sizing(
        &self,
        r: &'a Object<crate::model::ModelRolloutSpec>,
        project: Option<&'a Object<crate::model::ProjectSpec>>,
        d: &mut Diagnostics,
    ) {
        let s = &r.spec;
        match (&s.instance_type, &s.resources) {
            (None, None) => d.push(
                Diagnostic::new(
                    Code::InvalidChoice,
                    "a model rollout needs an `instanceType` or `resources`",
                )
                .at(r.at("spec"))
                .hint("name an instance type the project may use"),
            ),
            (Some(_), Some(_)) => d.push(
                Diagnostic::new(
                    Code::InvalidChoice,
                    "`instanceType` and `resources` are mutually exclusive",
                )
                .at(r.at("spec.resources"))
                .hint("keep one of the two"),
            ),
            _ => {}
        }
        if let Some(it) = &s.instance_type {
            self.instance_type_use(it, project, r.at("spec.instanceType"), d);
        }
        if let Some(pc) = &s.priority_class {
            let pool = match (&s.instance_type, &s.resources) {
                (Some(it), _) => self.its().get(it.as_str()).and_then(|(_, p)| *p),
                (None, Some(res)) if res.gpu > 0 => s.gpu_quota.as_deref(),
                _ => None,
            };
            self.priority_class_ref(r, pc, pool, d);
        }
    }

    /// `UnknownGpuQuota`: explicit GPU resources name a pool the project is allocated.
    fn gpu_resources_pool(
        &self,
        r: &'a Object<crate::model::ModelRolloutSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &r.spec;
        if let Some(res) = &s.resources
            && res.gpu > 0
        {
            match &s.gpu_quota {
                None => d.push(
                    Diagnostic::new(
                        Code::UnknownGpuQuota,
                        "`resources.gpu` needs a `gpuQuota` naming the pool",
                    )
                    .at(r.at("spec.resources.gpu"))
                    .hint("add `gpuQuota: <pool>`, or use a GPU instance type"),
                ),
                Some(q)
                    if !self.specs.gpu_quotas.contains_key(q)
                        && !self.specs.is_broken(Kind::GpuQuota, q) =>
                {
                    d.push(unknown(
                        Code::UnknownGpuQuota,
                        "GPU quota",
                        q,
                        r.at("spec.gpuQuota"),
                        self.specs.gpu_quotas.keys().map(String::as_str),
                    ))
                }
                _ => {}
            }
        }
    }

    /// `InvalidChoice`: fixed replicas or autoscaling, not both.
    fn replicas_or_autoscaling(
        &self,
        r: &'a Object<crate::model::ModelRolloutSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &r.spec;
        if s.replicas.is_some() && s.autoscaling.is_some() {
            d.push(
                Diagnostic::new(
                    Code::InvalidChoice,
                    "`replicas` and `autoscaling` are mutually exclusive",
                )
                .at(r.at("spec.autoscaling"))
                .hint("use `autoscaling.min`/`max` instead of `replicas`"),
            );
        }
    }

    /// `QuantityRange`, `RolloutStrategy`: autoscaling bounds are ordered and fit the traffic strategy.
    fn autoscaling_range(
        &self,
        r: &'a Object<crate::model::ModelRolloutSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &r.spec;
        if let Some(a) = &s.autoscaling {
            if a.min > a.max {
                d.push(
                    Diagnostic::new(
                        Code::QuantityRange,
                        format!("autoscaling `min` {} is above `max` {}", a.min, a.max),
                    )
                    .at(r.at("spec.autoscaling.min"))
                    .related(r.at("spec.autoscaling.max").note("max")),
                );
            }
            if a.scale_to_zero && s.runtime == Runtime::Deployment {
                d.push(
                    Diagnostic::new(
                        Code::RolloutStrategy,
                        "`scaleToZero` needs `runtime: kserve`",
                    )
                    .at(r.at("spec.autoscaling.scaleToZero"))
                    .hint(
                        "a plain Deployment cannot scale to zero on demand; use KServe serverless",
                    ),
                );
            }
        }
    }

    /// `MissingField`: a `deployment` runtime names its image.
    fn model_image(&self, r: &'a Object<crate::model::ModelRolloutSpec>, d: &mut Diagnostics) {
        let s = &r.spec;
        if s.runtime == Runtime::Deployment && s.model.image.is_none() {
            d.push(
                Diagnostic::new(
                    Code::MissingField,
                    "`runtime: deployment` needs `model.image`",
                )
                .at(r.at("spec.model"))
                .hint("name the serving image, e.g. `registry.example.org/serving/xgboost:2.1`"),
            );
        }
    }

    /// `Placement`: the rollout's project lives on a cluster that can serve it.
    fn rollout_placement(
        &self,
        r: &'a Object<crate::model::ModelRolloutSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &r.spec;
        if let Some(pl) = &self.specs.platform
            && s.runtime == Runtime::Kserve
            && !pl.spec.backends.kserve
        {
            d.push(
                Diagnostic::new(
                    Code::Placement,
                    "`runtime: kserve` but the KServe backend is disabled",
                )
                .at(r.at("spec.runtime"))
                .related(pl.at("spec.backends.kserve").note("disabled here"))
                .hint("use `runtime: deployment`, or enable the backend"),
            );
        }
    }

    /// `MissingField`, `InvalidChoice`: a storage URI or a traffic split, and the split's own rules.
    fn storage_uri_or_traffic(
        &self,
        r: &'a Object<crate::model::ModelRolloutSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &r.spec;
        match (&s.traffic, &s.model.storage_uri) {
            (None, None) => d.push(
                Diagnostic::new(Code::MissingField, "missing `model.storageUri`")
                    .at(r.at("spec.model"))
                    .hint("say where the model is, or list versions under `traffic.versions`"),
            ),
            (Some(_), Some(_)) => d.push(
                Diagnostic::new(
                    Code::InvalidChoice,
                    "`model.storageUri` and `traffic.versions` are mutually exclusive",
                )
                .at(r.at("spec.model.storageUri"))
                .hint("with `traffic`, each version carries its own `storageUri`"),
            ),
            _ => {}
        }
        if let Some(t) = &s.traffic {
            self.traffic(r, t, d);
        }
    }

    /// `UnknownProject`, `MissingField`: the endpoint's allowed projects exist and a public endpoint has what it needs.
    fn endpoint(&self, r: &'a Object<crate::model::ModelRolloutSpec>, d: &mut Diagnostics) {
        let s = &r.spec;
        for (i, other) in s.endpoint.allow_projects.iter().enumerate() {
            self.project_ref(other, r.at_item("spec.endpoint.allowProjects", i, ""), d);
        }
        if s.endpoint.access == crate::model::rollout::EndpointAccess::Public
            && s.endpoint.host.is_none()
        {
            d.push(
                Diagnostic::new(
                    Code::MissingField,
                    "a public endpoint needs `endpoint.host`",
                )
                .at(r.at("spec.endpoint.access"))
                .hint("give the external host name, e.g. `bed-forecast.models.example.org`"),
            );
        }
    }

    /// `DeploymentsDisabled`, `TooManyDeployments`: the project allows this many model deployments.
    fn deployment_limits(
        &self,
        r: &'a Object<crate::model::ModelRolloutSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &r.spec;
        let project = self.specs.projects.get(&s.project);
        if let Some(p) = project {
            if !p.spec.deployments.enabled {
                d.push(
                    Diagnostic::new(
                        Code::DeploymentsDisabled,
                        format!("project `{}` may not serve models", p.name()),
                    )
                    .at(r.at("spec.project"))
                    .related(
                        p.at("spec.deployments.enabled")
                            .note("deployments disabled here"),
                    )
                    .hint("enable `deployments` in the project, or move the rollout"),
                );
            } else {
                let mine: &[&str] = self
                    .rollouts_by_project()
                    .get(s.project.as_str())
                    .map_or(&[], Vec::as_slice);
                let max = p.spec.deployments.max as usize;
                if mine.len() > max
                    && mine
                        .iter()
                        .position(|n| *n == r.name())
                        .is_some_and(|i| i >= max)
                {
                    let limit_at = if p
                        .doc
                        .root()
                        .walk(&crate::parse::FieldPath::parse("spec.deployments.max"))
                        .matched
                        == 3
                    {
                        p.at("spec.deployments.max")
                    } else {
                        p.at("metadata.name")
                    };
                    d.push(
                        Diagnostic::new(
                            Code::TooManyDeployments,
                            format!(
                                "project `{}` has {} model rollouts, over its limit of {max}",
                                p.name(),
                                mine.len()
                            ),
                        )
                        .at(r.at("metadata.name"))
                        .related(limit_at.note("deployment limit"))
                        .hint("raise `deployments.max` in the project, or retire a rollout"),
                    );
                }
            }
        }
    }

    pub(super) fn traffic(
        &self,
        r: &Object<crate::model::ModelRolloutSpec>,
        t: &crate::model::rollout::Traffic,
        d: &mut Diagnostics,
    ) {
        let s = &r.spec;
        self.traffic_weights(r, t, d);
        self.duplicate_version(r, t, d);
        let strategy = t.strategy.as_str();
        let problem = |msg: String, at: crate::specs::At, hint: &str| {
            Diagnostic::new(Code::RolloutStrategy, msg)
                .at(at)
                .hint(hint.to_owned())
        };
        if t.versions.len() != 2 {
            d.push(problem(
                format!("a `{strategy}` rollout needs two versions, the stable one and the candidate, found {}", t.versions.len()),
                r.at("spec.traffic.versions"),
                "list the serving version first and the new one second; drop `traffic` to serve one version",
            ));
        } else if matches!(t.strategy, Strategy::BlueGreen | Strategy::Shadow)
            && (t.versions[0].weight != 100 || t.versions[1].weight != 0)
        {
            d.push(problem(
                format!("a `{strategy}` rollout sends all live traffic to the first version: weights must be 100 and 0"),
                r.at("spec.traffic.versions[1].weight"),
                if t.strategy == Strategy::Shadow {
                    "the candidate gets a copy of the traffic (`mirrorPercent`), not a share of it"
                } else {
                    "promote the candidate by swapping the versions' order in a new commit"
                },
            ));
        }
        if t.strategy == Strategy::Shadow && t.mirror_percent.is_none() {
            d.push(problem(
                "a `shadow` rollout needs `mirrorPercent`".to_owned(),
                r.at("spec.traffic"),
                "say what share of live requests is copied to the candidate, e.g. `mirrorPercent: 100`",
            ));
        }
        if t.strategy != Strategy::Shadow && t.mirror_percent.is_some() {
            d.push(problem(
                "`mirrorPercent` applies to `shadow` rollouts only".to_owned(),
                r.at("spec.traffic.mirrorPercent"),
                "remove it, or use `strategy: shadow`",
            ));
        }
        if t.auto_promote && t.strategy != Strategy::BlueGreen {
            d.push(problem(
                "`autoPromote` applies to `blueGreen` rollouts only".to_owned(),
                r.at("spec.traffic.autoPromote"),
                "remove it",
            ));
        }
        if !t.steps.is_empty() || t.analysis.is_some() {
            let field = if t.steps.is_empty() {
                "spec.traffic.analysis"
            } else {
                "spec.traffic.steps"
            };
            if s.runtime != Runtime::Deployment {
                d.push(problem(
                    "rollout `steps` and `analysis` need `runtime: deployment` (Argo Rollouts)".to_owned(),
                    r.at(field),
                    "KServe moves traffic by the candidate's weight alone; use `runtime: deployment` for stepped rollouts",
                ));
            } else if t.strategy != Strategy::Canary && !t.steps.is_empty() {
                d.push(problem(
                    format!("`steps` apply to `canary` rollouts, not `{strategy}`"),
                    r.at("spec.traffic.steps"),
                    "remove the steps, or use `strategy: canary`",
                ));
            }
            if let Some(pl) = &self.specs.platform
                && s.runtime == Runtime::Deployment
                && !pl.spec.backends.argo_rollouts
            {
                d.push(
                    Diagnostic::new(
                        Code::Placement,
                        "rollout `steps` need Argo Rollouts, but that backend is disabled",
                    )
                    .at(r.at(field))
                    .related(pl.at("spec.backends.argoRollouts").note("disabled here")),
                );
            }
        }
        for (i, step) in t.steps.iter().enumerate() {
            if step.analysis.is_some() && t.analysis.is_none() {
                d.push(problem(
                    "an `analysis` step needs `traffic.analysis`".to_owned(),
                    r.at(&format!("spec.traffic.steps[{i}].analysis")),
                    "describe the Prometheus query and success condition under `traffic.analysis`",
                ));
            }
        }
    }

    /// `TrafficWeights`: the versions' weights add up to 100.
    fn traffic_weights(
        &self,
        r: &Object<crate::model::ModelRolloutSpec>,
        t: &crate::model::rollout::Traffic,
        d: &mut Diagnostics,
    ) {
        let sum: u64 = t.versions.iter().map(|v| u64::from(v.weight)).sum();
        if sum != 100 {
            let mut diag = Diagnostic::new(
                Code::TrafficWeights,
                format!("traffic weights add up to {sum}, not 100"),
            )
            .at(r.at("spec.traffic.versions"));
            for (i, v) in t.versions.iter().enumerate() {
                diag = diag.related(
                    r.at(&format!("spec.traffic.versions[{i}].weight"))
                        .note(format!("`{}`: {}", v.name, v.weight)),
                );
            }
            d.push(diag.hint("weights are percentages of live traffic; make them add up to 100"));
        }
    }

    /// `DuplicateEntry`: each version is named once.
    fn duplicate_version(
        &self,
        r: &Object<crate::model::ModelRolloutSpec>,
        t: &crate::model::rollout::Traffic,
        d: &mut Diagnostics,
    ) {
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, v) in t.versions.iter().enumerate() {
            let at = r.at_item("spec.traffic.versions", i, ".name");
            if !is_dns_label(&v.name) {
                d.push(invalid_name("version name", &v.name, at.clone()));
            }
            if let Some(first) = names.insert(&v.name, i) {
                d.push(
                    Diagnostic::new(
                        Code::DuplicateEntry,
                        format!("version `{}` is listed twice", v.name),
                    )
                    .at(at)
                    .related(
                        r.at(&format!("spec.traffic.versions[{first}].name"))
                            .note("first listed here"),
                    ),
                );
            }
        }
    }

    /// What a rollout needs of the serving infrastructure the Platform declares
    /// (`spec.serving`): a restricted-compliant KServe storage initializer, a deployment mode,
    /// a mesh or ingress controller to route traffic, TLS and authentication for public
    /// endpoints, and a model repository Triton can read.
    pub(super) fn serving(
        &self,
        r: &'a Object<crate::model::ModelRolloutSpec>,
        project: Option<&'a Object<crate::model::ProjectSpec>>,
        d: &mut Diagnostics,
    ) {
        let Some(pl) = &self.specs.platform else {
            return;
        };
        self.storage_initializer(r, project, pl, d);
        self.kserve_deployment_mode(r, pl, d);
        self.routing_needs_mesh(r, pl, d);
        self.public_endpoint(r, pl, d);
        self.triton_repository(r, d);
    }

    /// `StorageInitializer`: KServe's storage initializer under `restricted` (kserve/kserve#5373).
    fn storage_initializer(
        &self,
        r: &'a Object<crate::model::ModelRolloutSpec>,
        project: Option<&'a Object<crate::model::ProjectSpec>>,
        pl: &Object<crate::model::PlatformSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &r.spec;
        let sv = &pl.spec.serving;
        let kserve = s.runtime == Runtime::Kserve;
        let uris = storage_uris(s);
        let (level, level_at) = match project.and_then(|p| p.spec.pod_security.map(|l| (l, p))) {
            Some((l, p)) => (l, p.at("spec.podSecurity")),
            None => (
                pl.spec.defaults.pod_security,
                pl.at("spec.defaults.podSecurity"),
            ),
        };
        if kserve
            && level == crate::model::PodSecurityLevel::Restricted
            && !sv.kserve.restricted_storage_initializer
            && uris.iter().any(|(u, _)| !u.starts_with("pvc://"))
        {
            d.push(
                Diagnostic::new(
                    Code::StorageInitializer,
                    "KServe injects a `storage-initializer` container without a security context, which the `restricted` Pod Security level refuses",
                )
                .at(r.at("spec.runtime"))
                .related(level_at.note("`restricted` here"))
                .hint("patch `ClusterStorageContainer/default` with a restricted security context (no privilege escalation, all capabilities dropped, `runAsNonRoot`, `runAsUser: 1000`, `RuntimeDefault` seccomp; kserve/kserve#5373) and declare it with `serving.kserve.restrictedStorageInitializer: true`, or use `runtime: deployment`"),
            );
        }
    }

    /// KServe's deployment mode: `Knative` for scale-to-zero needs Knative, `Standard` otherwise.
    fn kserve_deployment_mode(
        &self,
        r: &'a Object<crate::model::ModelRolloutSpec>,
        pl: &Object<crate::model::PlatformSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &r.spec;
        let sv = &pl.spec.serving;
        let kserve = s.runtime == Runtime::Kserve;
        let public = s.endpoint.access == EndpointAccess::Public;
        let strategy = two_version_strategy(s);
        // KServe deployment mode: `Knative` for scale-to-zero, `Standard` otherwise.
        let knative = s.autoscaling.as_ref().is_some_and(|a| a.scale_to_zero);
        if kserve && knative {
            let at = r.at("spec.autoscaling.scaleToZero");
            let mode = |msg: String, at: crate::specs::At, hint: &str| {
                Diagnostic::new(Code::KserveMode, msg)
                    .at(at)
                    .hint(hint.to_owned())
            };
            if !sv.kserve.knative {
                d.push(mode(
                    "`scaleToZero` needs KServe's `Knative` deployment mode, and the platform does not declare Knative Serving".to_owned(),
                    at.clone(),
                    "install Knative Serving and set `serving.kserve.knative: true` on the Platform, or drop `scaleToZero`",
                ));
            } else if self.has_node_placement(s) && !sv.kserve.knative_node_placement {
                let place = if s.instance_type.is_some() {
                    "spec.instanceType"
                } else {
                    "spec.gpuQuota"
                };
                d.push(mode(
                    "in `Knative` mode (`scaleToZero`) the pods' node selector and tolerations are refused unless Knative's `kubernetes.podspec-nodeselector` and `kubernetes.podspec-tolerations` features are enabled".to_owned(),
                    r.at(place),
                    "enable both in Knative's `config-features` and set `serving.kserve.knativeNodePlacement: true`, or drop `scaleToZero`",
                ));
            }
            if let Some(st @ (Strategy::Canary | Strategy::Shadow)) = strategy {
                d.push(mode(
                    format!("a `{}` KServe rollout is routed between two InferenceServices in `Standard` mode; `scaleToZero` needs `Knative` mode", st.as_str()),
                    at.clone(),
                    "drop `scaleToZero` while the rollout runs",
                ));
            }
            if public {
                d.push(mode(
                    "a public KServe endpoint is served through plinth's Ingress in `Standard` mode; `scaleToZero` needs `Knative` mode".to_owned(),
                    at.clone(),
                    "drop `scaleToZero`, or make the endpoint private",
                ));
            }
            if let Some(a) = &s.autoscaling
                && matches!(a.metric, ScaleMetric::Cpu | ScaleMetric::Memory)
            {
                d.push(mode(
                    format!(
                        "Knative scales on `concurrency` or `rps`, not `{}`",
                        a.metric.as_str()
                    ),
                    r.at("spec.autoscaling.metric"),
                    "use `metric: concurrency` or `metric: rps` with `scaleToZero`",
                ));
            }
        } else if kserve
            && let Some(a) = &s.autoscaling
            && matches!(a.metric, ScaleMetric::Rps | ScaleMetric::Concurrency)
        {
            d.push(
                Diagnostic::new(
                    Code::KserveMode,
                    format!("KServe's `Standard` mode scales with a HorizontalPodAutoscaler on `cpu` or `memory`, not `{}`", a.metric.as_str()),
                )
                .at(r.at("spec.autoscaling.metric"))
                .hint("use `metric: cpu` or `metric: memory`; request-based scaling needs `scaleToZero` (Knative mode)"),
            );
        }
    }

    /// Mirroring and weights need a mesh or the ingress controller.
    fn routing_needs_mesh(
        &self,
        r: &'a Object<crate::model::ModelRolloutSpec>,
        pl: &Object<crate::model::PlatformSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &r.spec;
        let sv = &pl.spec.serving;
        let public = s.endpoint.access == EndpointAccess::Public;
        let strategy = two_version_strategy(s);
        // Routing: mirroring and weights need a mesh or the ingress controller.
        let no_mesh = sv.mesh == Mesh::None;
        match strategy {
            Some(Strategy::Shadow) => {
                if no_mesh {
                    d.push(
                        Diagnostic::new(
                            Code::TrafficRouting,
                            "`shadow` copies requests with the service mesh (an Istio VirtualService `mirror`), but the platform declares no mesh: the candidate would get nothing",
                        )
                        .at(r.at("spec.traffic.strategy"))
                        .related(pl.at("spec.serving").note("no `mesh` declared"))
                        .hint("set `serving.mesh: istio` if the clusters run Istio, or use `blueGreen` to run the candidate beside the stable version"),
                    );
                }
                if public {
                    d.push(
                        Diagnostic::new(
                            Code::TrafficRouting,
                            "requests through the ingress controller bypass the mesh, so a public `shadow` endpoint would not mirror them",
                        )
                        .at(r.at("spec.endpoint.access"))
                        .hint("mirror a private endpoint (callers in the mesh), or use `blueGreen`"),
                    );
                }
            }
            Some(Strategy::Canary) if !public && no_mesh => d.push(
                Diagnostic::new(
                    Code::TrafficRouting,
                    "a private `canary` needs weighted routing, and the platform declares no mesh: split by replicas, the candidate's share would be anything from 1/n to half",
                )
                .at(r.at("spec.traffic.strategy"))
                .related(pl.at("spec.serving").note("no `mesh` declared"))
                .hint("set `serving.mesh: istio` if the clusters run Istio, or make the endpoint public (weighted by ingress-nginx)"),
            ),
            _ => {}
        }
    }

    /// Public endpoints need an ingress controller, TLS and authentication; private ones none of their fields.
    fn public_endpoint(
        &self,
        r: &'a Object<crate::model::ModelRolloutSpec>,
        pl: &Object<crate::model::PlatformSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &r.spec;
        let sv = &pl.spec.serving;
        let public = s.endpoint.access == EndpointAccess::Public;
        // Public endpoints: ingress controller, TLS, authentication.
        let e = &s.endpoint;
        if public {
            match &sv.ingress {
                None => d.push(
                    Diagnostic::new(
                        Code::EndpointExposure,
                        "a public endpoint needs an ingress controller, and the platform declares none",
                    )
                    .at(r.at("spec.endpoint.access"))
                    .related(pl.at("spec.serving").note("no `ingress` declared"))
                    .hint("declare the ingress-nginx controller with `serving.ingress.className`, or make the endpoint private"),
                ),
                Some(ing) if e.tls_secret.is_none() && ing.cluster_issuer.is_none() => d.push(
                    Diagnostic::new(
                        Code::EndpointExposure,
                        "a public endpoint needs TLS: no `endpoint.tlsSecret`, and the platform has no `serving.ingress.clusterIssuer`",
                    )
                    .at(r.at("spec.endpoint.access"))
                    .hint("name the certificate's Secret in `endpoint.tlsSecret`, or declare a cert-manager ClusterIssuer"),
                ),
                _ => {}
            }
            if e.auth.is_none() {
                d.push(
                    Diagnostic::new(
                        Code::EndpointExposure,
                        "a public endpoint needs authentication (`endpoint.auth`)",
                    )
                    .at(r.at("spec.endpoint.access"))
                    .hint("require client certificates (`clientCaSecret`), basic authentication (`basicAuthSecret`) or an external check (`url`)"),
                );
            }
        } else {
            for (field, set) in [
                ("auth", e.auth.is_some()),
                ("tlsSecret", e.tls_secret.is_some()),
            ] {
                if set {
                    d.push(
                        Diagnostic::new(
                            Code::EndpointExposure,
                            format!("`endpoint.{field}` applies to public endpoints; a private endpoint is guarded by its NetworkPolicy"),
                        )
                        .at(r.at(&format!("spec.endpoint.{field}")))
                        .hint("remove it, or make the endpoint public"),
                    );
                }
            }
        }
    }

    /// Triton reads its model repository itself.
    fn triton_repository(
        &self,
        r: &'a Object<crate::model::ModelRolloutSpec>,
        d: &mut Diagnostics,
    ) {
        let s = &r.spec;
        let uris = storage_uris(s);
        if s.runtime == Runtime::Deployment && s.model.format == ModelFormat::Triton {
            for (uri, field) in &uris {
                if !(uri.starts_with("s3://") || uri.starts_with("gs://")) {
                    let scheme = uri.split("://").next().unwrap_or(uri);
                    d.push(
                        Diagnostic::new(
                            Code::TritonRepository,
                            format!("Triton reads its model repository from `s3://` or `gs://`, not `{scheme}`"),
                        )
                        .at(r.at(field))
                        .hint("copy the model repository to a bucket, or serve it with `runtime: kserve` (its storage initializer downloads it)"),
                    );
                }
            }
        }
    }

    /// Whether the rollout's pods get a node selector or tolerations (a GPU pool's labels and
    /// taints, an instance type's node selector and tolerations).
    pub(super) fn has_node_placement(&self, s: &crate::model::ModelRolloutSpec) -> bool {
        let pool = |name: Option<&str>| {
            name.and_then(|n| self.specs.gpu_quotas.get(n))
                .is_some_and(|q| {
                    !q.spec.pool.node_labels.is_empty() || !q.spec.pool.taints.is_empty()
                })
        };
        match (&s.instance_type, &s.resources) {
            (Some(it), _) => self.its().get(it.as_str()).is_some_and(|(t, p)| {
                !t.node_selector.is_empty() || !t.tolerations.is_empty() || pool(*p)
            }),
            (None, Some(res)) => res.gpu > 0 && pool(s.gpu_quota.as_deref()),
            _ => false,
        }
    }
}
