//! ModelRollout → KServe InferenceService, or Deployment + Service + HPA (+ Argo Rollout and
//! AnalysisTemplate), and the endpoint's NetworkPolicy (and Ingress).
//!
//! Everything lands in the project's namespace. Objects that run a model (InferenceService, Deployment, Rollout) carry
//! `plinth.dev/model-version` (the version it serves; the candidate for objects shared by both
//! versions), `plinth.dev/strategy` (with `traffic`) and `plinth.dev/update-message` (when
//! set) annotations, so the plan and the audit trail say what a change rolls out and why.
//!
//! # Pods
//! Sizing comes from the instance type (CPU and memory requests, limits from `cpuLimit` /
//! `memoryLimit` or the requests) or from `resources` (limits equal requests). GPUs are asked
//! for with the pool's `resourceName`, requests equal to limits. The pool's node labels and the
//! instance type's node selector are merged into the node selector; the pool's taints and the
//! instance type's tolerations become tolerations. With a GPU and the Kueue backend, pods (and
//! Deployments, for Kueue's Deployment integration) carry `kueue.x-k8s.io/queue-name: <pool>`,
//! the project's LocalQueue for that pool (see [`super::gpu`]). Pods run as the project's `workload` service account, and under the
//! `restricted` Pod Security level they get the security context that level requires (non-root,
//! no privilege escalation, all capabilities dropped, the runtime's seccomp profile). Pods are
//! labelled `plinth.dev/model: <name>` and `plinth.dev/model-version: <version>`.
//!
//! # Serving infrastructure
//! What the clusters run is the Platform's `spec.serving` (mesh, ingress-nginx, KServe
//! modes); the checks (E150-E154) refuse a rollout that needs what is not declared, so this
//! module only emits routing that works. Targets: KServe 0.16+ (checked against 0.20), Argo
//! Rollouts 1.7+, Istio 1.22+ (`networking.istio.io/v1`), ingress-nginx 1.x.
//!
//! # `runtime: kserve`
//! One InferenceService per running version; its predictor names the model format (the
//! ServingRuntime is picked by it), the storage URI, resources, replicas (`minReplicas`/
//! `maxReplicas`, `0` with `scaleToZero`) and the scale metric and target. Every
//! InferenceService carries `serving.kserve.io/deploymentMode`: `Knative` with `scaleToZero`,
//! `Standard` otherwise, and is `cluster-local` (a public endpoint is plinth's Ingress in front
//! of `<name>-predictor`, KServe's Service). `model.image` overrides the runtime's image; with
//! `format: custom` and an image, the predictor is a custom container (`kserve-container`, the
//! storage URI in `STORAGE_URI`, which KServe's storage initializer downloads).
//! - **canary**: `<name>` serves the stable version and `<name>-canary` the candidate, both
//!   explicitly (KServe's `canaryTrafficPercent` keeps the stable version in the revision
//!   history, which a new cluster lacks: the candidate would take everything). The weight is
//!   routed: VirtualService `<name>` on `<name>-predictor`'s host (private), or an ingress-nginx
//!   canary Ingress `<name>-canary` (public).
//! - **blueGreen**: the active version is `<name>`; the candidate runs beside it as
//!   `<name>-preview`, with the same size, for validation. Promotion is a commit that swaps the
//!   versions. With `autoPromote`, there is no preview: `<name>` rolls out the candidate, and
//!   its pods take over once ready (the stable version is annotated `plinth.dev/stable-*`).
//! - **shadow**: `<name>` serves the primary; `<name>-shadow` the candidate, at `mirrorPercent`
//!   of fixed replicas; VirtualService `<name>` mirrors `mirrorPercent` of `<name>-predictor`'s
//!   requests onto `<name>-shadow-predictor` (answers discarded).
//!
//! # `runtime: deployment`
//! One Deployment per version, `<name>-<version>` (without `traffic`, `<name>-<model.version>`,
//! or `<name>` when there is no version), running `model.image` with `STORAGE_URI`,
//! `MODEL_VERSION` and `model.env`, the model port as `http`, and a TCP readiness probe on it.
//! Triton (`format: triton`) runs `tritonserver --model-repository=<storageUri>
//! --http-port=<port>` as uid/gid 1000 (`triton-server`; its images declare no `USER`), with
//! readiness on `/v2/health/ready` and liveness on `/v2/health/live`. The name depends on the
//! version only, so promoting a candidate and then dropping `traffic` keeps its Deployment.
//! Service `<name>` (port 80 → the model port) is the endpoint:
//! - **canary**: it selects the stable version (callers outside the mesh); Services
//!   `<name>-stable` and `<name>-canary` select each side, and the weight is routed as for
//!   KServe (VirtualService `<name>` on `<name>`'s host, or the canary Ingress). Replicas are
//!   split by weight (at least one per version with a weight), for capacity.
//! - **blueGreen**: it selects the active version; Service `<name>-preview` selects the
//!   candidate. Both run at full size.
//! - **shadow**: it selects the primary version; Service `<name>-shadow` selects the candidate,
//!   which runs `mirrorPercent` of the replicas; VirtualService `<name>` mirrors onto it.
//!
//! With `autoscaling`, each Deployment gets a HorizontalPodAutoscaler (`autoscaling/v2`):
//! `cpu`/`memory` as resource utilisation, `rps`/`concurrency` as the pods metrics
//! `requests_per_second`/`concurrent_requests`, which a custom-metrics adapter must serve.
//!
//! With `traffic.steps` or `traffic.analysis` (or `blueGreen` with `autoPromote`) and the Argo
//! Rollouts backend, an Argo Rollout `<name>` replaces the Deployments: its pod template is the
//! candidate's, and Argo keeps the stable ReplicaSet. Canary: the spec's steps (`setWeight`,
//! `pause`, `analysis`), Services `<name>-stable` and `<name>-canary` that Argo points at each
//! side, `<name>` over both, and `trafficRouting` for exact weights: `istio` with
//! VirtualService `<name>` (route `primary`, starting on the stable side) for a private
//! endpoint, `nginx` with `stableIngress: <name>` for a public one. Argo promotes a new Rollout
//! at once (no stable revision yet): `plinth plan` flags its creation. With an analysis but no
//! steps, the steps are the candidate's weight, then the analysis. Blue-green:
//! `activeService: <name>`, `previewService: <name>-preview`, `autoPromotionEnabled` from
//! `autoPromote`, and the analysis as the pre-promotion analysis. AnalysisTemplate `<name>`
//! holds the Prometheus metric, with arguments `service` and `namespace`; an analysis step with
//! its own `count` uses AnalysisTemplate `<name>-count-<n>` (parameterised counts do not work in
//! inline analyses upstream). A shadow rollout's analysis is emitted as a template for the
//! shadow Service, to be run by hand.
//!
//! # Endpoint
//! NetworkPolicy `<name>-endpoint` admits the model's pods' callers: the project's own
//! namespace and the `allowProjects` namespaces; public endpoints also the ingress controller's
//! namespace (`serving.ingress.namespace`). For deployments it opens the model port only. In
//! `Knative` mode KServe pods are reached through the activator and the gateways, so the policy
//! also admits `knative-serving` and `istio-system`; KServe policies do not restrict ports.
//! NetworkPolicies add up: a project whose isolation policy admits more keeps admitting it. A
//! public endpoint gets Ingress `<name>` for its host: `ingressClassName` of the platform's
//! ingress-nginx, TLS (`endpoint.tlsSecret`, or `<name>-tls` issued by the platform's
//! cert-manager ClusterIssuer) and the endpoint's authentication as ingress-nginx annotations
//! (`auth-tls-*` for client certificates, `auth-type: basic`, or `auth-url`).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2 as hpa;
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, HTTPGetAction, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecurityContext, Service,
    ServicePort, ServiceSpec, TCPSocketAction, Toleration,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, NetworkPolicy, NetworkPolicyIngressRule,
    NetworkPolicyPeer, NetworkPolicyPort, NetworkPolicySpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity as KQuantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::context::{Ctx, Sink};
use super::rules::{QUEUE_LABEL, WORKLOAD_SA};
use crate::crd::{self, argo, istio, kserve};
use crate::model::common::PodSecurityLevel;
use crate::model::platform::{Mesh, Serving};
use crate::model::quantity::Duration;
use crate::model::rollout::{
    Analysis, EndpointAccess, ModelFormat, Runtime, ScaleMetric, Strategy, Traffic,
};
use crate::model::{Kind, ModelRolloutSpec};
use crate::names::is_dns_label;
use crate::output::{Origin, PROJECT_LABEL};
use crate::specs::Object;

/// Pod label naming the rollout.
pub const MODEL_LABEL: &str = "plinth.dev/model";
/// Pod label naming the version; also the annotation on every generated object.
pub const VERSION_KEY: &str = "plinth.dev/model-version";
/// Annotation holding `spec.updateMessage`.
pub const UPDATE_MESSAGE_ANNOTATION: &str = "plinth.dev/update-message";
/// Annotation naming the traffic strategy.
pub const STRATEGY_ANNOTATION: &str = "plinth.dev/strategy";
/// The version KServe or Argo keep serving while the candidate rolls out.
pub const STABLE_VERSION_ANNOTATION: &str = "plinth.dev/stable-version";
pub const STABLE_URI_ANNOTATION: &str = "plinth.dev/stable-storage-uri";
/// KServe's visibility label.
pub const VISIBILITY_LABEL: &str = "networking.kserve.io/visibility";
/// KServe's deployment mode annotation (`Standard` or `Knative`, KServe 0.16+).
pub const DEPLOYMENT_MODE_ANNOTATION: &str = "serving.kserve.io/deploymentMode";
/// ingress-nginx annotations.
pub const NGINX: &str = "nginx.ingress.kubernetes.io";
/// cert-manager's annotation naming the issuer of an Ingress' certificate.
pub const CLUSTER_ISSUER_ANNOTATION: &str = "cert-manager.io/cluster-issuer";
/// The uid of the `triton-server` user of NVIDIA's Triton images (which declare no `USER`).
pub const TRITON_UID: i64 = 1000;
/// The Istio route Argo Rollouts sets the weights of.
pub const PRIMARY_ROUTE: &str = "primary";
/// Namespaces KServe's serverless data plane forwards requests from (Knative's activator, the
/// Istio gateways).
pub const KSERVE_DATA_PLANE: [&str; 2] = ["istio-system", "knative-serving"];
const NAMESPACE_LABEL: &str = "kubernetes.io/metadata.name";
const DEFAULT_INGRESS_NAMESPACE: &str = "ingress-nginx";
const CONTAINER: &str = "model";
const KSERVE_CONTAINER: &str = "kserve-container";
const SERVICE_PORT: i32 = 80;
const PORT_NAME: &str = "http";
const METRIC_NAME: &str = "success";

pub fn lower(cx: &Ctx<'_>, r: &Object<ModelRolloutSpec>, sink: &mut Sink<'_>) {
    let l = Lowering::new(cx, r);
    match r.spec.runtime {
        Runtime::Kserve => l.kserve(sink),
        Runtime::Deployment => l.deployment(sink),
    }
    l.endpoint(sink);
}

/// One served version.
struct Version<'a> {
    /// The version's name: a traffic version, or `model.version`.
    name: Option<&'a str>,
    storage_uri: &'a str,
    weight: u32,
    origin: Origin,
}

impl Version<'_> {
    /// The name when it can be part of object names and label values.
    fn slug(&self) -> Option<&str> {
        self.name.filter(|n| is_dns_label(n))
    }
}

/// Replicas of one workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scale {
    Fixed(u32),
    Auto { min: u32, max: u32 },
}

/// Requests, limits and placement of the model's pods.
struct Sizing {
    resources: ResourceRequirements,
    node_selector: BTreeMap<String, String>,
    tolerations: Vec<Toleration>,
    /// The Kueue LocalQueue (named after the pool) when a GPU pool is used.
    queue: Option<String>,
    /// Its Kueue priority class (`spec.priorityClass`, else the pool's default).
    priority_class: Option<String>,
}

struct Lowering<'a> {
    cx: &'a Ctx<'a>,
    r: &'a Object<ModelRolloutSpec>,
    s: &'a ModelRolloutSpec,
    name: &'a str,
    ns: &'a str,
    origin: Origin,
    traffic: Option<&'a Traffic>,
    /// The stable version first, the candidate last (one entry without `traffic`).
    versions: Vec<Version<'a>>,
    sizing: Sizing,
    restricted: bool,
    serving: &'a Serving,
    /// KServe's `Knative` deployment mode (scale to zero); `Standard` otherwise.
    knative: bool,
}

impl<'a> Lowering<'a> {
    fn new(cx: &'a Ctx<'a>, r: &'a Object<ModelRolloutSpec>) -> Lowering<'a> {
        let s = &r.spec;
        let origin = Origin::of(Kind::ModelRollout, r);
        let versions = match &s.traffic {
            Some(t) if !t.versions.is_empty() => t
                .versions
                .iter()
                .enumerate()
                .map(|(i, v)| Version {
                    name: Some(v.name.as_str()),
                    storage_uri: &v.storage_uri,
                    weight: v.weight,
                    origin: Origin::at(
                        Kind::ModelRollout,
                        r,
                        &format!("spec.traffic.versions[{i}]"),
                    ),
                })
                .collect(),
            _ => vec![Version {
                name: s.model.version.as_deref(),
                storage_uri: s.model.storage_uri.as_deref().unwrap_or_default(),
                weight: 100,
                origin: origin.clone(),
            }],
        };
        let level = cx
            .specs
            .projects
            .get(&s.project)
            .and_then(|p| p.spec.pod_security)
            .unwrap_or(cx.platform.defaults.pod_security);
        Lowering {
            cx,
            r,
            s,
            name: r.name(),
            ns: &s.project,
            origin,
            traffic: s.traffic.as_ref(),
            versions,
            sizing: sizing(cx, s),
            restricted: level == PodSecurityLevel::Restricted,
            serving: &cx.platform.serving,
            knative: s.autoscaling.as_ref().is_some_and(|a| a.scale_to_zero),
        }
    }

    fn strategy(&self) -> Option<Strategy> {
        self.traffic.map(|t| t.strategy)
    }

    fn stable(&self) -> &Version<'a> {
        &self.versions[0]
    }

    fn candidate(&self) -> &Version<'a> {
        &self.versions[self.versions.len() - 1]
    }

    fn at(&self, path: &str) -> Origin {
        Origin::at(Kind::ModelRollout, self.r, path)
    }

    /// Provenance of objects shaped by `traffic`.
    fn traffic_origin(&self) -> Origin {
        if self.traffic.is_some() {
            self.at("spec.traffic")
        } else {
            self.origin.clone()
        }
    }

    /// Metadata with plinth's labels and the rollout annotations; `version` is the version the
    /// object serves.
    fn meta(&self, name: &str, version: Option<&str>) -> ObjectMeta {
        let mut m = self.cx.meta(name, Some(self.ns), Some(self.ns), self.r);
        let a = m.annotations.get_or_insert_with(BTreeMap::new);
        if let Some(v) = version {
            a.insert(VERSION_KEY.to_owned(), v.to_owned());
        }
        if let Some(msg) = &self.s.update_message {
            a.insert(UPDATE_MESSAGE_ANNOTATION.to_owned(), msg.clone());
        }
        if let Some(st) = self.strategy() {
            a.insert(STRATEGY_ANNOTATION.to_owned(), st.as_str().to_owned());
        }
        if a.is_empty() {
            m.annotations = None;
        }
        m
    }

    /// Metadata of objects that only support the served versions (Services, autoscalers,
    /// policies, analysis templates): no version or update annotations, so a new model
    /// version changes the objects that run it and nothing else.
    fn support_meta(&self, name: &str) -> ObjectMeta {
        self.cx.meta(name, Some(self.ns), Some(self.ns), self.r)
    }

    fn annotate(m: &mut ObjectMeta, extra: BTreeMap<String, String>) {
        if !extra.is_empty() {
            m.annotations
                .get_or_insert_with(BTreeMap::new)
                .extend(extra);
        }
    }

    /// `plinth.dev/stable-*` for objects whose controller keeps the stable version.
    fn stable_annotations(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        if self.versions.len() > 1 {
            let st = self.stable();
            if let Some(n) = st.name {
                a.insert(STABLE_VERSION_ANNOTATION.to_owned(), n.to_owned());
            }
            a.insert(STABLE_URI_ANNOTATION.to_owned(), st.storage_uri.to_owned());
        }
        a
    }

    fn public(&self) -> bool {
        self.s.endpoint.access == EndpointAccess::Public
    }

    fn two(&self) -> bool {
        self.versions.len() > 1
    }

    /// A Service's name inside the mesh.
    fn host(&self, service: &str) -> String {
        format!("{service}.{}.svc.cluster.local", self.ns)
    }

    fn triton(&self) -> bool {
        self.s.model.format == ModelFormat::Triton
    }

    /// Replicas of one version before any split.
    fn base_scale(&self) -> Scale {
        match (&self.s.autoscaling, self.s.replicas) {
            (Some(a), _) => Scale::Auto {
                min: a.min,
                max: a.max,
            },
            (None, Some(n)) => Scale::Fixed(n),
            (None, None) => Scale::Fixed(1),
        }
    }

    /// Replicas of a shadow candidate: the mirrored share of fixed replicas (at least one).
    fn shadow_scale(&self) -> Scale {
        let percent = self.traffic.and_then(|t| t.mirror_percent).unwrap_or(100);
        match self.base_scale() {
            Scale::Fixed(n) => Scale::Fixed((n * percent).div_ceil(100).max(1)),
            auto => auto,
        }
    }

    fn pod_labels(&self, v: &Version<'_>) -> BTreeMap<String, String> {
        let mut l = self.selector(v);
        l.insert(PROJECT_LABEL.to_owned(), self.ns.to_owned());
        if let Some(q) = &self.sizing.queue {
            l.insert(QUEUE_LABEL.to_owned(), q.clone());
        }
        if let Some(pc) = &self.sizing.priority_class {
            l.insert(super::rules::PRIORITY_LABEL.to_owned(), pc.clone());
        }
        // Pods run as the `workload` ServiceAccount: its identity's pod labels.
        l.extend(super::rules::pod_labels(self.cx, self.ns));
        l
    }

    /// Labels selecting one version's pods (all versions' when it has no usable name).
    fn selector(&self, v: &Version<'_>) -> BTreeMap<String, String> {
        let mut l = self.model_selector();
        if let Some(n) = v.slug() {
            l.insert(VERSION_KEY.to_owned(), n.to_owned());
        }
        l
    }

    /// Labels selecting every version's pods.
    fn model_selector(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(MODEL_LABEL.to_owned(), self.name.to_owned())])
    }

    /// The pod's security context: `restricted`'s requirements, and Triton's user (its images
    /// declare no `USER`, so `runAsNonRoot` alone cannot be verified and the pod would not start).
    fn pod_security(&self) -> Option<PodSecurityContext> {
        let triton = self.triton().then_some(TRITON_UID);
        if !self.restricted && triton.is_none() {
            return None;
        }
        Some(PodSecurityContext {
            run_as_non_root: self.restricted.then_some(true),
            run_as_user: triton,
            run_as_group: triton,
            seccomp_profile: self.restricted.then(|| SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..PodSecurityContext::default()
        })
    }

    fn container_security(&self) -> Option<SecurityContext> {
        self.restricted.then(|| SecurityContext {
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            ..SecurityContext::default()
        })
    }

    fn env(&self, v: &Version<'_>, with_version: bool) -> Vec<EnvVar> {
        let var = |name: &str, value: &str| EnvVar {
            name: name.to_owned(),
            value: Some(value.to_owned()),
            value_from: None,
        };
        let mut env = vec![var("STORAGE_URI", v.storage_uri)];
        if with_version && let Some(n) = v.name {
            env.push(var("MODEL_VERSION", n));
        }
        for (k, val) in &self.s.model.env {
            if !env.iter().any(|e| &e.name == k) {
                env.push(var(k, val));
            }
        }
        env
    }

    fn port(&self) -> i32 {
        i32::from(self.s.model.port)
    }

    // ---------------------------------------------------------------------------------------
    // KServe

    /// KServe's Service in front of an InferenceService's predictor (`Standard` mode).
    fn predictor_service(isvc: &str) -> String {
        format!("{isvc}-predictor")
    }

    fn kserve(&self, sink: &mut Sink<'_>) {
        let name = self.name;
        let base = self.base_scale();
        let none = BTreeMap::new;
        let endpoint = Self::predictor_service(name);
        let mut ingress_done = false;
        match self.traffic {
            None => self.isvc(sink, name, self.stable(), base, true, none()),
            Some(t) => match t.strategy {
                Strategy::Canary if self.two() => {
                    // Both versions explicitly: KServe's own canary keeps the stable version
                    // in the revision history of the cluster, which a new cluster lacks.
                    let canary = child(name, "canary");
                    self.isvc(sink, name, self.stable(), base, true, none());
                    self.isvc(sink, &canary, self.candidate(), base, false, none());
                    self.weighted(
                        sink,
                        &endpoint,
                        &endpoint,
                        &Self::predictor_service(&canary),
                        SERVICE_PORT,
                    );
                    ingress_done = true;
                }
                Strategy::Canary => self.isvc(sink, name, self.stable(), base, true, none()),
                Strategy::BlueGreen if t.auto_promote => {
                    let c = self.candidate();
                    self.isvc(sink, name, c, base, true, self.stable_annotations());
                }
                Strategy::BlueGreen => {
                    self.isvc(sink, name, self.stable(), base, true, none());
                    if self.two() {
                        let preview = child(name, "preview");
                        self.isvc(sink, &preview, self.candidate(), base, false, none());
                    }
                }
                Strategy::Shadow => {
                    self.isvc(sink, name, self.stable(), base, true, none());
                    if self.two() {
                        let shadow = child(name, "shadow");
                        self.isvc(
                            sink,
                            &shadow,
                            self.candidate(),
                            self.shadow_scale(),
                            false,
                            none(),
                        );
                        self.mirror(sink, &endpoint, &Self::predictor_service(&shadow));
                    }
                }
            },
        }
        if !ingress_done && self.public() {
            self.ingress(sink, self.name, &endpoint, BTreeMap::new());
        }
    }

    /// One InferenceService serving `v`. `primary`: the endpoint callers use (the others are
    /// cluster-local).
    #[allow(clippy::too_many_arguments)]
    fn isvc(
        &self,
        sink: &mut Sink<'_>,
        name: &str,
        v: &Version<'_>,
        scale: Scale,
        primary: bool,
        extra: BTreeMap<String, String>,
    ) {
        let s = self.s;
        let (min, max) = match scale {
            Scale::Fixed(n) => (n, n),
            Scale::Auto { min, max } => {
                let zero = s.autoscaling.as_ref().is_some_and(|a| a.scale_to_zero);
                (if zero { 0 } else { min }, max)
            }
        };
        let mut meta = self.meta(name, v.name);
        // KServe never exposes an InferenceService itself: a public endpoint is plinth's
        // Ingress (with TLS and authentication) in front of the predictor's Service.
        meta.labels
            .get_or_insert_with(BTreeMap::new)
            .insert(VISIBILITY_LABEL.to_owned(), "cluster-local".to_owned());
        let mut ann = extra;
        ann.insert(
            DEPLOYMENT_MODE_ANNOTATION.to_owned(),
            if self.knative { "Knative" } else { "Standard" }.to_owned(),
        );
        Self::annotate(&mut meta, ann);

        let resources = self.sizing.resources.clone();
        let (model, containers) = match (s.model.format, &s.model.image) {
            (ModelFormat::Custom, Some(image)) => (
                None,
                vec![Container {
                    name: KSERVE_CONTAINER.to_owned(),
                    image: Some(image.clone()),
                    env: Some(self.env(v, false)),
                    ports: Some(vec![ContainerPort {
                        container_port: self.port(),
                        protocol: Some("TCP".to_owned()),
                        ..ContainerPort::default()
                    }]),
                    resources: Some(resources),
                    security_context: self.container_security(),
                    ..Container::default()
                }],
            ),
            (format, image) => (
                Some(kserve::ModelSpec {
                    model_format: kserve::ModelFormat {
                        name: format.as_str().to_owned(),
                    },
                    storage_uri: v.storage_uri.to_owned(),
                    image: image.clone(),
                    env: s
                        .model
                        .env
                        .iter()
                        .map(|(k, val)| EnvVar {
                            name: k.clone(),
                            value: Some(val.clone()),
                            value_from: None,
                        })
                        .collect(),
                    resources,
                    security_context: self.container_security(),
                }),
                Vec::new(),
            ),
        };
        let auto = s.autoscaling.as_ref();
        let predictor = kserve::PredictorSpec {
            min_replicas: Some(min),
            max_replicas: Some(max),
            scale_metric: auto.map(|a| a.metric.as_str().to_owned()),
            scale_target: auto.map(|a| a.target),
            canary_traffic_percent: None,
            service_account_name: Some(WORKLOAD_SA.to_owned()),
            labels: self.pod_labels(v),
            node_selector: self.sizing.node_selector.clone(),
            tolerations: self.sizing.tolerations.clone(),
            security_context: self.pod_security(),
            model,
            containers,
        };
        let origin = if primary {
            self.traffic_origin()
        } else {
            v.origin.clone()
        };
        sink.push_value(
            &origin,
            crd::object(meta, &kserve::InferenceServiceSpec { predictor }),
        );
    }

    // ---------------------------------------------------------------------------------------
    // Deployments

    fn uses_argo(&self) -> bool {
        let Some(t) = self.traffic else {
            return false;
        };
        self.cx.platform.backends.argo_rollouts
            && self.versions.len() > 1
            && match t.strategy {
                Strategy::Canary => !t.steps.is_empty() || t.analysis.is_some(),
                Strategy::BlueGreen => t.analysis.is_some() || t.auto_promote,
                Strategy::Shadow => false,
            }
    }

    fn deployment(&self, sink: &mut Sink<'_>) {
        if self.uses_argo() {
            self.argo(sink);
        } else {
            self.deployments(sink);
        }
        if self.public() {
            // A canary's Ingress is the stable side's (ingress-nginx, or Argo, adds the
            // canary's); the others reach the endpoint Service.
            let backend = if self.strategy() == Some(Strategy::Canary) && self.two() {
                child(self.name, "stable")
            } else {
                self.name.to_owned()
            };
            self.ingress(sink, self.name, &backend, BTreeMap::new());
        }
    }

    fn pod_template(&self, v: &Version<'_>) -> PodTemplateSpec {
        let s = self.s;
        let port = self.port();
        let http_probe = |path: &str| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(path.to_owned()),
                port: IntOrString::Int(port),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(10),
            ..Probe::default()
        };
        let (command, args, readiness, liveness) = if self.triton() {
            // Triton loads the repository itself (it reads `s3://` and `gs://`) and says when
            // its models are loaded.
            (
                Some(vec!["tritonserver".to_owned()]),
                Some(vec![
                    format!("--model-repository={}", v.storage_uri),
                    format!("--http-port={port}"),
                ]),
                http_probe("/v2/health/ready"),
                Some(http_probe("/v2/health/live")),
            )
        } else {
            (
                None,
                None,
                Probe {
                    tcp_socket: Some(TCPSocketAction {
                        port: IntOrString::Int(port),
                        host: None,
                    }),
                    period_seconds: Some(10),
                    ..Probe::default()
                },
                None,
            )
        };
        let container = Container {
            name: CONTAINER.to_owned(),
            image: s.model.image.clone(),
            command,
            args,
            env: Some(self.env(v, true)),
            ports: Some(vec![ContainerPort {
                name: Some(PORT_NAME.to_owned()),
                container_port: port,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            }]),
            readiness_probe: Some(readiness),
            liveness_probe: liveness,
            resources: Some(self.sizing.resources.clone()),
            security_context: self.container_security(),
            ..Container::default()
        };
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(self.pod_labels(v)),
                ..ObjectMeta::default()
            }),
            spec: Some(PodSpec {
                containers: vec![container],
                service_account_name: Some(WORKLOAD_SA.to_owned()),
                node_selector: non_empty(self.sizing.node_selector.clone()),
                tolerations: (!self.sizing.tolerations.is_empty())
                    .then(|| self.sizing.tolerations.clone()),
                security_context: self.pod_security(),
                ..PodSpec::default()
            }),
        }
    }

    /// Name of a version's Deployment.
    fn deployment_name(&self, v: &Version<'_>) -> String {
        match v.slug() {
            Some(n) => child(self.name, n),
            None => self.name.to_owned(),
        }
    }

    /// Replicas of each version (same order as `versions`) for plain Deployments.
    fn version_scales(&self) -> Vec<Scale> {
        let base = match self.base_scale() {
            // A Deployment's autoscaler keeps at least one replica.
            Scale::Auto { min, max } => Scale::Auto {
                min: min.max(1),
                max: max.max(1),
            },
            fixed => fixed,
        };
        let n = self.versions.len();
        match self.strategy() {
            Some(Strategy::Canary) if n > 1 => {
                let w = self.candidate().weight;
                let (stable, cand) = match base {
                    Scale::Fixed(r) => {
                        let (a, b) = split(r, w);
                        (Scale::Fixed(a), Scale::Fixed(b))
                    }
                    Scale::Auto { min, max } => {
                        let (min_a, min_b) = split(min, w);
                        let (max_a, max_b) = split(max, w);
                        let side = |lo: u32, hi: u32| {
                            if hi == 0 {
                                Scale::Fixed(0)
                            } else {
                                Scale::Auto {
                                    min: lo.clamp(1, hi),
                                    max: hi,
                                }
                            }
                        };
                        (side(min_a, max_a), side(min_b, max_b))
                    }
                };
                let mut v = vec![stable; n - 1];
                v.push(cand);
                v
            }
            Some(Strategy::Shadow) if n > 1 => {
                let shadow = match self.shadow_scale() {
                    Scale::Auto { min, max } => Scale::Auto {
                        min: min.max(1),
                        max: max.max(1),
                    },
                    fixed => fixed,
                };
                let mut v = vec![base; n - 1];
                v.push(shadow);
                v
            }
            _ => vec![base; n],
        }
    }

    fn deployments(&self, sink: &mut Sink<'_>) {
        let scales = self.version_scales();
        for (v, scale) in self.versions.iter().zip(scales) {
            let name = self.deployment_name(v);
            let mut meta = self.meta(&name, v.name);
            if let Some(q) = &self.sizing.queue {
                // Kueue's Deployment integration reads the queue (and the priority class) from
                // the Deployment's labels and copies them to the pod template.
                let l = meta.labels.get_or_insert_with(BTreeMap::new);
                l.insert(QUEUE_LABEL.to_owned(), q.clone());
                if let Some(pc) = &self.sizing.priority_class {
                    l.insert(super::rules::PRIORITY_LABEL.to_owned(), pc.clone());
                }
            }
            sink.push(
                &v.origin,
                Deployment {
                    metadata: meta,
                    spec: Some(DeploymentSpec {
                        replicas: match scale {
                            Scale::Fixed(r) => Some(to_i32(r)),
                            Scale::Auto { .. } => None,
                        },
                        selector: LabelSelector {
                            match_labels: Some(self.selector(v)),
                            match_expressions: None,
                        },
                        template: self.pod_template(v),
                        ..DeploymentSpec::default()
                    }),
                    ..Deployment::default()
                },
            );
            if let Scale::Auto { min, max } = scale {
                self.hpa(sink, &name, "apps/v1", "Deployment", min, max);
            }
        }

        // Services.
        let name = self.name;
        let cand = self.candidate();
        let two = self.versions.len() > 1;
        match self.strategy() {
            Some(Strategy::BlueGreen) if two => {
                let preview = child(name, "preview");
                self.service(
                    sink,
                    name,
                    self.selector(self.stable()),
                    true,
                    BTreeMap::new(),
                );
                self.service(sink, &preview, self.selector(cand), false, BTreeMap::new());
            }
            Some(Strategy::Canary) if two => {
                let (stable_svc, canary_svc) = (child(name, "stable"), child(name, "canary"));
                // Callers outside the mesh reach the stable version; the mesh (or the
                // ingress) sends the candidate its weight.
                let stable_sel = self.selector(self.stable());
                self.service(sink, name, stable_sel.clone(), true, BTreeMap::new());
                self.service(sink, &stable_svc, stable_sel, false, BTreeMap::new());
                self.service(
                    sink,
                    &canary_svc,
                    self.selector(cand),
                    false,
                    BTreeMap::new(),
                );
                self.weighted(sink, name, &stable_svc, &canary_svc, SERVICE_PORT);
            }
            Some(Strategy::Shadow) if two => {
                let shadow = child(name, "shadow");
                self.service(
                    sink,
                    name,
                    self.selector(self.stable()),
                    true,
                    BTreeMap::new(),
                );
                self.service(sink, &shadow, self.selector(cand), false, BTreeMap::new());
                self.mirror(sink, name, &shadow);
                if let Some(a) = self.traffic.and_then(|t| t.analysis.as_ref())
                    && self.cx.platform.backends.argo_rollouts
                {
                    self.analysis_templates(sink, a, &shadow, &[]);
                }
            }
            _ => self.service(sink, name, self.model_selector(), true, BTreeMap::new()),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn hpa(
        &self,
        sink: &mut Sink<'_>,
        name: &str,
        api_version: &str,
        kind: &str,
        min: u32,
        max: u32,
    ) {
        let Some(a) = &self.s.autoscaling else {
            return;
        };
        let target = i32::try_from(a.target).unwrap_or(i32::MAX);
        let resource = |resource: &str| hpa::MetricSpec {
            type_: "Resource".to_owned(),
            resource: Some(hpa::ResourceMetricSource {
                name: resource.to_owned(),
                target: hpa::MetricTarget {
                    type_: "Utilization".to_owned(),
                    average_utilization: Some(target),
                    ..hpa::MetricTarget::default()
                },
            }),
            ..hpa::MetricSpec::default()
        };
        let pods = |metric: &str| hpa::MetricSpec {
            type_: "Pods".to_owned(),
            pods: Some(hpa::PodsMetricSource {
                metric: hpa::MetricIdentifier {
                    name: metric.to_owned(),
                    selector: None,
                },
                target: hpa::MetricTarget {
                    type_: "AverageValue".to_owned(),
                    average_value: Some(KQuantity(a.target.to_string())),
                    ..hpa::MetricTarget::default()
                },
            }),
            ..hpa::MetricSpec::default()
        };
        let metric = match a.metric {
            ScaleMetric::Cpu => resource("cpu"),
            ScaleMetric::Memory => resource("memory"),
            ScaleMetric::Rps => pods("requests_per_second"),
            ScaleMetric::Concurrency => pods("concurrent_requests"),
        };
        sink.push(
            &self.at("spec.autoscaling"),
            hpa::HorizontalPodAutoscaler {
                metadata: self.support_meta(name),
                spec: Some(hpa::HorizontalPodAutoscalerSpec {
                    scale_target_ref: hpa::CrossVersionObjectReference {
                        api_version: Some(api_version.to_owned()),
                        kind: kind.to_owned(),
                        name: name.to_owned(),
                    },
                    min_replicas: Some(to_i32(min)),
                    max_replicas: to_i32(max),
                    metrics: Some(vec![metric]),
                    behavior: None,
                }),
                ..hpa::HorizontalPodAutoscaler::default()
            },
        );
    }

    /// A Service on port 80 to the model port. `endpoint`: the Service callers use.
    fn service(
        &self,
        sink: &mut Sink<'_>,
        name: &str,
        selector: BTreeMap<String, String>,
        endpoint: bool,
        extra: BTreeMap<String, String>,
    ) {
        let mut meta = self.support_meta(name);
        let _ = endpoint;
        Self::annotate(&mut meta, extra);
        sink.push(
            &self.traffic_origin(),
            Service {
                metadata: meta,
                spec: Some(ServiceSpec {
                    selector: Some(selector),
                    ports: Some(vec![ServicePort {
                        name: Some(PORT_NAME.to_owned()),
                        port: SERVICE_PORT,
                        target_port: Some(IntOrString::Int(self.port())),
                        protocol: Some("TCP".to_owned()),
                        ..ServicePort::default()
                    }]),
                    ..ServiceSpec::default()
                }),
                ..Service::default()
            },
        );
    }

    /// Public endpoint Ingress `name` for the endpoint host, to `backend` port 80: the
    /// platform's IngressClass, TLS (the endpoint's Secret, or one cert-manager issues) and the
    /// endpoint's authentication, all enforced by ingress-nginx. `extra`: more annotations (a
    /// canary's weight).
    fn ingress(
        &self,
        sink: &mut Sink<'_>,
        name: &str,
        backend: &str,
        extra: BTreeMap<String, String>,
    ) {
        let e = &self.s.endpoint;
        let Some(host) = e.host.as_deref() else {
            return;
        };
        let settings = self.serving.ingress.as_ref();
        let mut ann = extra;
        let secret = match (
            &e.tls_secret,
            settings.and_then(|i| i.cluster_issuer.as_ref()),
        ) {
            (Some(secret), _) => secret.clone(),
            (None, Some(issuer)) => {
                ann.insert(CLUSTER_ISSUER_ANNOTATION.to_owned(), issuer.clone());
                child(self.name, "tls")
            }
            (None, None) => child(self.name, "tls"),
        };
        ann.insert(format!("{NGINX}/ssl-redirect"), "true".to_owned());
        if let Some(a) = &e.auth {
            if let Some(ca) = &a.client_ca_secret {
                ann.insert(
                    format!("{NGINX}/auth-tls-secret"),
                    format!("{}/{ca}", self.ns),
                );
                ann.insert(format!("{NGINX}/auth-tls-verify-client"), "on".to_owned());
                ann.insert(format!("{NGINX}/auth-tls-verify-depth"), "1".to_owned());
            } else if let Some(b) = &a.basic_auth_secret {
                ann.insert(format!("{NGINX}/auth-type"), "basic".to_owned());
                ann.insert(format!("{NGINX}/auth-secret"), b.clone());
                ann.insert(format!("{NGINX}/auth-realm"), self.name.to_owned());
            } else if let Some(u) = &a.url {
                ann.insert(format!("{NGINX}/auth-url"), u.clone());
            }
        }
        let mut meta = self.support_meta(name);
        Self::annotate(&mut meta, ann);
        sink.push(
            &self.at("spec.endpoint"),
            Ingress {
                metadata: meta,
                spec: Some(IngressSpec {
                    ingress_class_name: settings.map(|i| i.class_name.clone()),
                    tls: Some(vec![IngressTLS {
                        hosts: Some(vec![host.to_owned()]),
                        secret_name: Some(secret),
                    }]),
                    rules: Some(vec![IngressRule {
                        host: Some(host.to_owned()),
                        http: Some(HTTPIngressRuleValue {
                            paths: vec![HTTPIngressPath {
                                path: Some("/".to_owned()),
                                path_type: "Prefix".to_owned(),
                                backend: IngressBackend {
                                    service: Some(IngressServiceBackend {
                                        name: backend.to_owned(),
                                        port: Some(ServiceBackendPort {
                                            name: None,
                                            number: Some(SERVICE_PORT),
                                        }),
                                    }),
                                    resource: None,
                                },
                            }],
                        }),
                    }]),
                    ..IngressSpec::default()
                }),
                ..Ingress::default()
            },
        );
    }

    /// The candidate's weight, routed: for a public endpoint, Ingress `<name>` to the stable
    /// Service and an ingress-nginx canary Ingress `<name>-canary` with the weight; for a
    /// private one (with the mesh), VirtualService `<name>` on the endpoint Service's host.
    fn weighted(
        &self,
        sink: &mut Sink<'_>,
        endpoint: &str,
        stable_svc: &str,
        canary_svc: &str,
        port: i32,
    ) {
        let w = self.candidate().weight;
        if self.public() {
            self.ingress(sink, self.name, stable_svc, BTreeMap::new());
            let ann = BTreeMap::from([
                (format!("{NGINX}/canary"), "true".to_owned()),
                (format!("{NGINX}/canary-weight"), w.to_string()),
            ]);
            self.ingress(sink, &child(self.name, "canary"), canary_svc, ann);
        } else if self.serving.mesh == Mesh::Istio {
            self.virtual_service(sink, endpoint, stable_svc, canary_svc, port, w, None);
        }
    }

    /// VirtualService `<name>` mirroring `mirrorPercent` of the requests to `endpoint` onto
    /// `shadow` (with the mesh).
    fn mirror(&self, sink: &mut Sink<'_>, endpoint: &str, shadow: &str) {
        if self.serving.mesh != Mesh::Istio {
            return;
        }
        let percent = self.traffic.and_then(|t| t.mirror_percent).unwrap_or(100);
        self.virtual_service(
            sink,
            endpoint,
            endpoint,
            "",
            SERVICE_PORT,
            0,
            Some((shadow, percent)),
        );
    }

    /// VirtualService `<name>` for `endpoint`'s host: one route, `primary`, to `stable` (and
    /// `canary` with `weight` when it is named), optionally mirroring to a shadow.
    #[allow(clippy::too_many_arguments)]
    fn virtual_service(
        &self,
        sink: &mut Sink<'_>,
        endpoint: &str,
        stable: &str,
        canary: &str,
        port: i32,
        weight: u32,
        mirror: Option<(&str, u32)>,
    ) {
        let dest = |svc: &str| istio::Destination {
            host: self.host(svc),
            port: istio::PortSelector {
                number: u32::try_from(port).unwrap_or(80),
            },
        };
        let mut route = vec![istio::RouteDestination {
            destination: dest(stable),
            weight: 100 - weight.min(100),
        }];
        if !canary.is_empty() {
            route.push(istio::RouteDestination {
                destination: dest(canary),
                weight: weight.min(100),
            });
        }
        let spec = istio::VirtualServiceSpec {
            hosts: vec![self.host(endpoint)],
            http: vec![istio::HttpRoute {
                name: PRIMARY_ROUTE.to_owned(),
                route,
                mirror: mirror.map(|(m, _)| dest(m)),
                mirror_percentage: mirror.map(|(_, p)| istio::Percent { value: p }),
            }],
        };
        sink.push_value(
            &self.traffic_origin(),
            crd::object(self.support_meta(self.name), &spec),
        );
    }

    // ---------------------------------------------------------------------------------------
    // Argo Rollouts

    fn analysis_args(&self, service: &str) -> Vec<argo::AnalysisArg> {
        vec![
            argo::AnalysisArg {
                name: "service".to_owned(),
                value: service.to_owned(),
            },
            argo::AnalysisArg {
                name: "namespace".to_owned(),
                value: self.ns.to_owned(),
            },
        ]
    }

    fn argo(&self, sink: &mut Sink<'_>) {
        let Some(t) = self.traffic else {
            return;
        };
        let name = self.name;
        let cand = self.candidate();
        let all = self.model_selector();
        let strategy = match t.strategy {
            Strategy::BlueGreen => self.blue_green_strategy(sink, t),
            _ => self.canary_strategy(sink, t),
        };

        let scale = self.base_scale();
        let mut meta = self.meta(name, cand.name);
        Self::annotate(&mut meta, self.stable_annotations());
        let origin = if t.steps.is_empty() {
            self.traffic_origin()
        } else {
            self.at("spec.traffic.steps")
        };
        sink.push_value(
            &origin,
            crd::object(
                meta,
                &argo::RolloutSpec {
                    replicas: match scale {
                        Scale::Fixed(r) => Some(r),
                        Scale::Auto { .. } => None,
                    },
                    selector: LabelSelector {
                        match_labels: Some(all),
                        match_expressions: None,
                    },
                    template: self.pod_template(cand),
                    strategy,
                },
            ),
        );
        if let Scale::Auto { min, max } = scale {
            self.hpa(
                sink,
                name,
                <argo::RolloutSpec as crd::CrdSpec>::API_VERSION,
                "Rollout",
                min.max(1),
                max.max(1),
            );
        }
    }

    /// Blue-green: the active and preview Services, with the analysis before promotion.
    fn blue_green_strategy(&self, sink: &mut Sink<'_>, t: &Traffic) -> argo::RolloutStrategy {
        let name = self.name;
        let all = self.model_selector();
        let no_extra = BTreeMap::new;
        let analysis = t.analysis.as_ref();
        let preview = child(name, "preview");
        self.service(sink, name, all.clone(), true, no_extra());
        self.service(sink, &preview, all.clone(), false, no_extra());
        if let Some(a) = analysis {
            self.analysis_templates(sink, a, &preview, &[]);
        }
        argo::RolloutStrategy {
            blue_green: Some(argo::BlueGreenStrategy {
                active_service: name.to_owned(),
                preview_service: preview.clone(),
                auto_promotion_enabled: t.auto_promote,
                pre_promotion_analysis: analysis.map(|_| argo::RolloutAnalysis {
                    templates: vec![argo::AnalysisTemplateRef {
                        template_name: name.to_owned(),
                    }],
                    args: self.analysis_args(&preview),
                }),
            }),
            canary: None,
        }
    }

    /// Canary (and shadow): stable and canary Services, the steps with their analyses, and
    /// exact weights through the ingress controller or the mesh.
    fn canary_strategy(&self, sink: &mut Sink<'_>, t: &Traffic) -> argo::RolloutStrategy {
        let name = self.name;
        let cand = self.candidate();
        let all = self.model_selector();
        let no_extra = BTreeMap::new;
        let analysis = t.analysis.as_ref();
        let mut counts: Vec<u32> = Vec::new();
        let stable_svc = child(name, "stable");
        let canary_svc = child(name, "canary");
        self.service(sink, name, all.clone(), true, no_extra());
        self.service(sink, &stable_svc, all.clone(), false, no_extra());
        self.service(sink, &canary_svc, all.clone(), false, no_extra());
        let step_analysis = |count: Option<u32>, counts: &mut Vec<u32>| {
            let template_name = match (count, analysis) {
                (Some(n), Some(a)) if n != a.count => {
                    if !counts.contains(&n) {
                        counts.push(n);
                    }
                    count_template(name, n)
                }
                _ => name.to_owned(),
            };
            argo::RolloutAnalysis {
                templates: vec![argo::AnalysisTemplateRef { template_name }],
                args: self.analysis_args(&canary_svc),
            }
        };
        let mut steps: Vec<argo::CanaryStep> = Vec::new();
        if t.steps.is_empty() {
            steps.push(argo::CanaryStep {
                set_weight: Some(cand.weight),
                ..argo::CanaryStep::default()
            });
            if analysis.is_some() {
                steps.push(argo::CanaryStep {
                    analysis: Some(step_analysis(None, &mut counts)),
                    ..argo::CanaryStep::default()
                });
            }
        } else {
            for st in &t.steps {
                let mut step = argo::CanaryStep::default();
                if let Some(w) = st.set_weight {
                    step.set_weight = Some(w);
                } else if let Some(p) = &st.pause {
                    step.pause = Some(argo::Pause {
                        duration: p.duration.as_ref().map(go_duration),
                    });
                } else if let Some(a) = &st.analysis {
                    if analysis.is_none() {
                        continue;
                    }
                    step.analysis = Some(step_analysis(a.count, &mut counts));
                } else {
                    continue;
                }
                steps.push(step);
            }
        }
        if let Some(a) = analysis {
            self.analysis_templates(sink, a, &canary_svc, &counts);
        }
        // Exact weights: ingress-nginx for a public endpoint, the mesh for a private one.
        let traffic_routing = if self.public() {
            Some(argo::TrafficRouting {
                istio: None,
                nginx: Some(argo::NginxTrafficRouting {
                    stable_ingress: name.to_owned(),
                }),
            })
        } else if self.serving.mesh == Mesh::Istio {
            // Argo sets the weights; the VirtualService starts on the stable side.
            self.virtual_service(sink, name, &stable_svc, &canary_svc, SERVICE_PORT, 0, None);
            Some(argo::TrafficRouting {
                istio: Some(argo::IstioTrafficRouting {
                    virtual_service: argo::IstioVirtualService {
                        name: name.to_owned(),
                        routes: vec![PRIMARY_ROUTE.to_owned()],
                    },
                }),
                nginx: None,
            })
        } else {
            None
        };
        argo::RolloutStrategy {
            canary: Some(argo::CanaryStrategy {
                stable_service: stable_svc.clone(),
                canary_service: canary_svc.clone(),
                steps,
                traffic_routing,
            }),
            blue_green: None,
        }
    }

    /// AnalysisTemplate `<name>` (and `<name>-count-<n>` for steps with their own count).
    fn analysis_templates(&self, sink: &mut Sink<'_>, a: &Analysis, service: &str, counts: &[u32]) {
        let origin = self.at("spec.traffic.analysis");
        let mut all = vec![(self.name.to_owned(), a.count)];
        all.extend(counts.iter().map(|n| (count_template(self.name, *n), *n)));
        for (name, count) in all {
            let spec = argo::AnalysisTemplateSpec {
                args: vec![
                    argo::Argument {
                        name: "service".to_owned(),
                        value: Some(service.to_owned()),
                    },
                    argo::Argument {
                        name: "namespace".to_owned(),
                        value: Some(self.ns.to_owned()),
                    },
                ],
                metrics: vec![argo::Metric {
                    name: METRIC_NAME.to_owned(),
                    interval: go_duration(&a.interval),
                    count,
                    success_condition: a.success_condition.clone(),
                    failure_condition: a.failure_condition.clone(),
                    failure_limit: a.failure_limit,
                    provider: argo::MetricProvider {
                        prometheus: argo::PrometheusMetric {
                            address: a.prometheus.address.clone(),
                            query: a.prometheus.query.clone(),
                        },
                    },
                }],
            };
            sink.push_value(&origin, crd::object(self.support_meta(&name), &spec));
        }
    }

    // ---------------------------------------------------------------------------------------
    // Endpoint

    fn endpoint(&self, sink: &mut Sink<'_>) {
        let e = &self.s.endpoint;
        let namespace = |ns: &str| NetworkPolicyPeer {
            namespace_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([(
                    NAMESPACE_LABEL.to_owned(),
                    ns.to_owned(),
                )])),
                match_expressions: None,
            }),
            ..NetworkPolicyPeer::default()
        };
        // The project's own namespace.
        let mut from = vec![NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..NetworkPolicyPeer::default()
        }];
        let mut seen: Vec<&str> = vec![self.ns];
        let mut add = |ns: &'a str, from: &mut Vec<NetworkPolicyPeer>| {
            if !seen.contains(&ns) {
                seen.push(ns);
                from.push(namespace(ns));
            }
        };
        for p in &e.allow_projects {
            add(p, &mut from);
        }
        let ingress_ns = self
            .serving
            .ingress
            .as_ref()
            .map_or(DEFAULT_INGRESS_NAMESPACE, |i| i.namespace.as_str());
        if e.access == EndpointAccess::Public {
            add(ingress_ns, &mut from);
        }
        let kserve = self.s.runtime == Runtime::Kserve;
        if kserve && self.knative {
            for ns in KSERVE_DATA_PLANE {
                add(ns, &mut from);
            }
        }
        let ports = (!kserve).then(|| {
            vec![NetworkPolicyPort {
                port: Some(IntOrString::Int(self.port())),
                protocol: Some("TCP".to_owned()),
                end_port: None,
            }]
        });
        sink.push(
            &self.at("spec.endpoint"),
            NetworkPolicy {
                metadata: self.support_meta(&child(self.name, "endpoint")),
                spec: Some(NetworkPolicySpec {
                    pod_selector: Some(LabelSelector {
                        match_labels: Some(self.model_selector()),
                        match_expressions: None,
                    }),
                    policy_types: Some(vec!["Ingress".to_owned()]),
                    ingress: Some(vec![NetworkPolicyIngressRule {
                        from: Some(from),
                        ports,
                    }]),
                    egress: None,
                }),
            },
        );
    }
}

/// Requests, limits, node selector, tolerations and queue from the instance type or resources.
fn sizing(cx: &Ctx<'_>, s: &ModelRolloutSpec) -> Sizing {
    let its = crate::check::semantic::instance_types(cx.specs);
    let mut requests = BTreeMap::new();
    let mut limits = BTreeMap::new();
    let q = |x: &crate::model::Quantity| KQuantity(x.as_str().to_owned());
    let (gpu, pool, it) = match (&s.instance_type, &s.resources) {
        (Some(name), _) => match its.get(name.as_str()) {
            Some((t, pool)) => {
                requests.insert("cpu".to_owned(), q(&t.cpu));
                requests.insert("memory".to_owned(), q(&t.memory));
                limits.insert("cpu".to_owned(), q(t.cpu_limit.as_ref().unwrap_or(&t.cpu)));
                limits.insert(
                    "memory".to_owned(),
                    q(t.memory_limit.as_ref().unwrap_or(&t.memory)),
                );
                (t.gpu, *pool, Some(*t))
            }
            None => (0, None, None),
        },
        (None, Some(res)) => {
            requests.insert("cpu".to_owned(), q(&res.cpu));
            requests.insert("memory".to_owned(), q(&res.memory));
            limits = requests.clone();
            let pool = s.gpu_quota.as_deref().filter(|_| res.gpu > 0);
            (res.gpu, pool, None)
        }
        (None, None) => (0, None, None),
    };
    let quota = pool.and_then(|p| cx.specs.gpu_quotas.get(p));
    if let Some(quota) = quota
        && gpu > 0
    {
        let n = KQuantity(gpu.to_string());
        requests.insert(quota.spec.pool.resource_name.clone(), n.clone());
        limits.insert(quota.spec.pool.resource_name.clone(), n);
    }
    let (node_selector, unique) = super::rules::placement(quota.map(|q| &*q.spec), it);
    // The one Kueue rule for every workload plinth sizes (rollouts, Apps): see
    // `rules::queue_labels`.
    let labels = pool
        .filter(|_| gpu > 0)
        .map(|p| super::rules::queue_labels(cx, &s.project, p, s.priority_class.as_deref()))
        .unwrap_or_default();
    let queue = labels.get(QUEUE_LABEL).cloned();
    let priority_class = labels.get(super::rules::PRIORITY_LABEL).cloned();
    Sizing {
        resources: ResourceRequirements {
            requests: non_empty(requests),
            limits: non_empty(limits),
            claims: None,
        },
        node_selector,
        tolerations: unique,
        queue,
        priority_class,
    }
}

fn non_empty<K: Ord, V>(m: BTreeMap<K, V>) -> Option<BTreeMap<K, V>> {
    (!m.is_empty()).then_some(m)
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// `n` replicas split between the stable version and a candidate with `weight` percent:
/// proportional, at least one for a side with a weight (so both run when `n` is 1).
fn split(n: u32, weight: u32) -> (u32, u32) {
    match weight {
        _ if n == 0 => (0, 0),
        0 => (n, 0),
        w if w >= 100 => (0, n),
        w => {
            let cand = ((u64::from(n) * u64::from(w) + 50) / 100) as u32;
            let cand = cand.clamp(1, n.saturating_sub(1).max(1));
            (n.saturating_sub(cand).max(1), cand)
        }
    }
}

/// `<name>-<suffix>` as a DNS-1123 label: names over 63 characters are cut and end in a hash
/// of the full name, so they stay unique and stable.
fn child(name: &str, suffix: &str) -> String {
    let full = format!("{name}-{suffix}");
    if full.len() <= 63 {
        return full;
    }
    let hash = &crate::output::sha256_hex(full.as_bytes())[..8];
    let head = full[..54].trim_end_matches('-');
    format!("{head}-{hash}")
}

fn count_template(name: &str, count: u32) -> String {
    child(name, &format!("count-{count}"))
}

/// A plinth duration as a Go duration (`ms`, `s`, `m`, `h`): days, weeks and years in hours.
fn go_duration(d: &Duration) -> String {
    let s = d.0.as_str();
    if (s.ends_with('d') || s.ends_with('w') || s.ends_with('y'))
        && let Some(secs) = d.seconds()
    {
        return format!("{}h", secs / 3600);
    }
    s.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::MemSource;
    use crate::lower::{Lowered, Manifest};
    use serde_json::Value;

    const PLATFORM: &str = r#"
apiVersion: plinth.dev/v1alpha1
kind: Platform
metadata:
  name: test
spec:
  clusters:
    - name: prod
      kubernetesVersion: "1.32"
      provider: aws
      region: eu-west-1
      gpuPools: [a100]
  instanceTypes:
    - name: cpu-2
      cpu: 2
      memory: 8Gi
      cpuLimit: 3
  serving:
    mesh: istio
    ingress:
      className: nginx
      namespace: edge
      clusterIssuer: public-ca
    kserve:
      knative: true
      restrictedStorageInitializer: true
"#;

    const GPU: &str = r#"
apiVersion: plinth.dev/v1alpha1
kind: GpuQuota
metadata:
  name: a100
spec:
  pool:
    resourceName: nvidia.com/gpu
    nodeLabels:
      pool: a100
    taints:
      - key: nvidia.com/gpu
        value: present
        effect: NoSchedule
    capacity: 16
    gpusPerNode: 8
  instanceTypes:
    - name: a100-1
      gpu: 1
      cpu: 8
      memory: 64Gi
  allocations:
    - project: ml
      gpu: 8
"#;

    fn project(name: &str) -> String {
        format!(
            r#"
apiVersion: plinth.dev/v1alpha1
kind: Project
metadata:
  name: {name}
spec:
  owners: [dana@example.org]
  deployments:
    enabled: true
    max: 5
"#
        )
    }

    /// Run the front end and lowering over a repository with one extra rollout file.
    fn lower_with(rollout: &str) -> Lowered {
        let src = MemSource::new()
            .with("plinth.yaml", PLATFORM)
            .with("gpu/a100.yaml", GPU)
            .with("projects/ml.yaml", project("ml"))
            .with("projects/web.yaml", project("web"))
            .with("models/m.yaml", rollout);
        let checked = crate::check_source(&src, &crate::Options::default()).expect("loads");
        let diags = checked.diagnostics.into_sorted();
        assert!(
            !diags.iter().any(|d| d.is_error()),
            "the spec has errors: {diags:#?}"
        );
        let (lowered, d) = crate::lower::lower(&checked.specs, &checked.snapshot);
        assert!(d.is_empty(), "{d:#?}");
        let v = crate::verify::verify(&lowered);
        assert!(v.is_empty(), "{v:#?}");
        lowered
    }

    fn objects(l: &Lowered) -> &[Manifest] {
        &l.clusters["prod"].manifests
    }

    fn find<'l>(l: &'l Lowered, kind: &str, name: &str) -> &'l Value {
        objects(l)
            .iter()
            .find(|m| {
                m.key.kind == kind && m.key.name == name && m.key.namespace.as_deref() == Some("ml")
            })
            .map(|m| &m.object)
            .unwrap_or_else(|| panic!("no {kind} ml/{name} in {:?}", keys(l)))
    }

    /// `Kind name` of the rollout's objects, sorted.
    fn keys(l: &Lowered) -> Vec<String> {
        let mut k: Vec<String> = objects(l)
            .iter()
            .filter(|m| m.origin.kind == Kind::ModelRollout)
            .map(|m| format!("{} {}", m.key.kind, m.key.name))
            .collect();
        k.sort();
        k
    }

    fn rollout(body: &str) -> String {
        format!(
            "apiVersion: plinth.dev/v1alpha1\nkind: ModelRollout\nmetadata:\n  name: m\nspec:\n  project: ml\n{body}"
        )
    }

    #[test]
    fn kserve_canary_at_ten_percent() {
        let l = lower_with(&rollout(
            r#"
  runtime: kserve
  model:
    format: pytorch
  instanceType: a100-1
  replicas: 2
  traffic:
    strategy: canary
    versions:
      - name: v1
        storageUri: s3://models/m/v1/
        weight: 90
      - name: v2
        storageUri: s3://models/m/v2/
        weight: 10
  updateMessage: canary v2
"#,
        ));
        assert_eq!(
            keys(&l),
            [
                "InferenceService m",
                "InferenceService m-canary",
                "NetworkPolicy m-endpoint",
                "VirtualService m"
            ],
            "both versions explicitly, and the mesh splits the traffic"
        );
        let vs = find(&l, "VirtualService", "m");
        assert_eq!(vs["spec"]["hosts"][0], "m-predictor.ml.svc.cluster.local");
        let route = &vs["spec"]["http"][0]["route"];
        assert_eq!(
            route[0]["destination"]["host"],
            "m-predictor.ml.svc.cluster.local"
        );
        assert_eq!(route[0]["weight"], 90);
        assert_eq!(
            route[1]["destination"]["host"],
            "m-canary-predictor.ml.svc.cluster.local"
        );
        assert_eq!(route[1]["weight"], 10);
        assert_eq!(
            find(&l, "InferenceService", "m-canary")["spec"]["predictor"]["model"]["storageUri"],
            "s3://models/m/v2/"
        );
        let isvc = find(&l, "InferenceService", "m");
        let p = &isvc["spec"]["predictor"];
        assert!(p.get("canaryTrafficPercent").is_none());
        assert_eq!(p["model"]["storageUri"], "s3://models/m/v1/");
        assert_eq!(p["model"]["modelFormat"]["name"], "pytorch");
        assert_eq!(p["minReplicas"], 2);
        assert_eq!(p["maxReplicas"], 2);
        let res = &p["model"]["resources"];
        assert_eq!(res["requests"]["nvidia.com/gpu"], "1");
        assert_eq!(
            res["requests"]["nvidia.com/gpu"],
            res["limits"]["nvidia.com/gpu"]
        );
        assert_eq!(res["requests"]["cpu"], "8");
        assert_eq!(p["labels"][QUEUE_LABEL], "a100");
        assert_eq!(p["labels"][MODEL_LABEL], "m");
        assert_eq!(p["nodeSelector"]["pool"], "a100");
        assert_eq!(p["tolerations"][0]["key"], "nvidia.com/gpu");
        assert_eq!(p["serviceAccountName"], "workload");
        let ann = &isvc["metadata"]["annotations"];
        assert_eq!(ann[VERSION_KEY], "v1");
        assert_eq!(ann[STRATEGY_ANNOTATION], "canary");
        assert_eq!(ann[UPDATE_MESSAGE_ANNOTATION], "canary v2");
        assert_eq!(ann[DEPLOYMENT_MODE_ANNOTATION], "Standard");
        assert_eq!(
            isvc["metadata"]["labels"][VISIBILITY_LABEL],
            "cluster-local"
        );
        // Objects that run the model carry the rollout annotations; the ones that only support
        // it do not, so a new version changes nothing else in a plan.
        for m in objects(&l)
            .iter()
            .filter(|m| m.origin.kind == Kind::ModelRollout)
        {
            let a = &m.object["metadata"]["annotations"];
            if matches!(
                m.key.kind.as_str(),
                "InferenceService" | "Deployment" | "Rollout"
            ) {
                assert_eq!(a[STRATEGY_ANNOTATION], "canary", "{}", m.key);
                assert_eq!(a[UPDATE_MESSAGE_ANNOTATION], "canary v2", "{}", m.key);
                assert!(a[VERSION_KEY].is_string(), "{}", m.key);
            } else {
                assert!(a.get(VERSION_KEY).is_none(), "{}", m.key);
                assert!(a.get(UPDATE_MESSAGE_ANNOTATION).is_none(), "{}", m.key);
            }
        }
    }

    #[test]
    fn kserve_blue_green_and_shadow_run_the_candidate_beside() {
        let versions = r#"
    versions:
      - name: v1
        storageUri: s3://models/m/v1/
        weight: 100
      - name: v2
        storageUri: s3://models/m/v2/
        weight: 0
"#;
        let l = lower_with(&rollout(&format!(
            "  model:\n    format: sklearn\n  instanceType: cpu-2\n  endpoint:\n    access: public\n    host: m.example.org\n    auth:\n      url: https://auth.example.org/check\n  traffic:\n    strategy: blueGreen{versions}"
        )));
        assert_eq!(
            keys(&l),
            [
                "InferenceService m",
                "InferenceService m-preview",
                "Ingress m",
                "NetworkPolicy m-endpoint"
            ]
        );
        let ing = find(&l, "Ingress", "m");
        assert_eq!(
            ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
            "m-predictor"
        );
        let active = find(&l, "InferenceService", "m");
        assert_eq!(
            active["spec"]["predictor"]["model"]["storageUri"],
            "s3://models/m/v1/"
        );
        assert!(
            active["spec"]["predictor"]
                .get("canaryTrafficPercent")
                .is_none()
        );
        assert_eq!(
            active["metadata"]["labels"][VISIBILITY_LABEL], "cluster-local",
            "exposed by plinth's Ingress, not by KServe"
        );
        let preview = find(&l, "InferenceService", "m-preview");
        assert_eq!(
            preview["spec"]["predictor"]["model"]["storageUri"],
            "s3://models/m/v2/"
        );
        assert_eq!(
            preview["metadata"]["labels"][VISIBILITY_LABEL],
            "cluster-local"
        );
        // No GPU: no queue label, and the instance type's limit.
        assert!(
            active["spec"]["predictor"]["labels"]
                .get(QUEUE_LABEL)
                .is_none()
        );
        assert_eq!(
            active["spec"]["predictor"]["model"]["resources"]["limits"]["cpu"],
            "3"
        );

        let l = lower_with(&rollout(&format!(
            "  model:\n    format: sklearn\n  instanceType: cpu-2\n  replicas: 4\n  traffic:\n    strategy: shadow\n    mirrorPercent: 50{versions}"
        )));
        assert_eq!(
            keys(&l),
            [
                "InferenceService m",
                "InferenceService m-shadow",
                "NetworkPolicy m-endpoint",
                "VirtualService m"
            ]
        );
        let http = &find(&l, "VirtualService", "m")["spec"]["http"][0];
        assert_eq!(
            http["route"][0]["destination"]["host"],
            "m-predictor.ml.svc.cluster.local"
        );
        assert_eq!(http["route"][0]["weight"], 100);
        assert_eq!(
            http["mirror"]["host"],
            "m-shadow-predictor.ml.svc.cluster.local"
        );
        assert_eq!(http["mirrorPercentage"]["value"], 50.0);
        let primary = find(&l, "InferenceService", "m");
        assert_eq!(
            primary["spec"]["predictor"]["model"]["storageUri"],
            "s3://models/m/v1/"
        );
        let shadow = find(&l, "InferenceService", "m-shadow");
        assert_eq!(
            shadow["spec"]["predictor"]["model"]["storageUri"],
            "s3://models/m/v2/"
        );
        assert_eq!(
            shadow["spec"]["predictor"]["maxReplicas"], 2,
            "half the traffic"
        );
        assert_eq!(
            shadow["metadata"]["labels"][VISIBILITY_LABEL],
            "cluster-local"
        );
    }

    #[test]
    fn deployment_blue_green_has_active_and_preview_services() {
        let l = lower_with(&rollout(
            r#"
  runtime: deployment
  model:
    format: triton
    image: nvcr.io/nvidia/tritonserver:24.08-py3
    port: 8000
    env:
      LOG_LEVEL: info
  instanceType: a100-1
  replicas: 2
  traffic:
    strategy: blueGreen
    versions:
      - name: v4
        storageUri: gs://models/cxr/v4/
        weight: 100
      - name: v5
        storageUri: gs://models/cxr/v5/
        weight: 0
"#,
        ));
        assert_eq!(
            keys(&l),
            [
                "Deployment m-v4",
                "Deployment m-v5",
                "NetworkPolicy m-endpoint",
                "Service m",
                "Service m-preview"
            ]
        );
        for (dep, uri) in [
            ("m-v4", "gs://models/cxr/v4/"),
            ("m-v5", "gs://models/cxr/v5/"),
        ] {
            let d = find(&l, "Deployment", dep);
            assert_eq!(
                d["spec"]["replicas"], 2,
                "blue-green runs both at full size"
            );
            let pod = &d["spec"]["template"]["spec"];
            let c = &pod["containers"][0];
            assert_eq!(c["image"], "nvcr.io/nvidia/tritonserver:24.08-py3");
            assert_eq!(c["env"][0]["name"], "STORAGE_URI");
            assert_eq!(c["env"][0]["value"], uri);
            assert_eq!(c["env"][2]["name"], "LOG_LEVEL");
            assert_eq!(c["ports"][0]["containerPort"], 8000);
            assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/v2/health/ready");
            assert_eq!(c["readinessProbe"]["httpGet"]["port"], 8000);
            assert_eq!(c["command"][0], "tritonserver");
            assert_eq!(c["args"][0], format!("--model-repository={uri}"));
            assert_eq!(pod["securityContext"]["runAsUser"], TRITON_UID);
            assert_eq!(c["resources"]["limits"]["nvidia.com/gpu"], "1");
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
            assert_eq!(pod["serviceAccountName"], "workload");
            assert_eq!(
                d["spec"]["template"]["metadata"]["labels"][QUEUE_LABEL],
                "a100"
            );
        }
        let active = find(&l, "Service", "m");
        assert_eq!(active["spec"]["selector"][VERSION_KEY], "v4");
        assert_eq!(active["spec"]["ports"][0]["targetPort"], 8000);
        let preview = find(&l, "Service", "m-preview");
        assert_eq!(preview["spec"]["selector"][VERSION_KEY], "v5");
        assert_eq!(
            find(&l, "Deployment", "m-v5")["metadata"]["annotations"][STRATEGY_ANNOTATION],
            "blueGreen"
        );
    }

    #[test]
    fn deployment_shadow_serves_the_primary_only() {
        let l = lower_with(&rollout(
            r#"
  runtime: deployment
  model:
    format: sklearn
    image: registry.example.org/serve:1
  instanceType: cpu-2
  replicas: 4
  traffic:
    strategy: shadow
    mirrorPercent: 25
    versions:
      - name: v1
        storageUri: s3://models/m/v1/
        weight: 100
      - name: v2
        storageUri: s3://models/m/v2/
        weight: 0
"#,
        ));
        assert_eq!(
            keys(&l),
            [
                "Deployment m-v1",
                "Deployment m-v2",
                "NetworkPolicy m-endpoint",
                "Service m",
                "Service m-shadow",
                "VirtualService m"
            ]
        );
        let svc = find(&l, "Service", "m");
        assert_eq!(svc["spec"]["selector"][VERSION_KEY], "v1");
        let http = &find(&l, "VirtualService", "m")["spec"]["http"][0];
        assert_eq!(http["mirror"]["host"], "m-shadow.ml.svc.cluster.local");
        assert_eq!(http["mirrorPercentage"]["value"], 25.0);
        assert_eq!(
            find(&l, "Service", "m-shadow")["spec"]["selector"][VERSION_KEY],
            "v2"
        );
        assert_eq!(find(&l, "Deployment", "m-v1")["spec"]["replicas"], 4);
        assert_eq!(find(&l, "Deployment", "m-v2")["spec"]["replicas"], 1);
    }

    #[test]
    fn deployment_canary_splits_replicas_and_scales() {
        let l = lower_with(&rollout(
            r#"
  runtime: deployment
  model:
    format: sklearn
    image: registry.example.org/serve:1
  instanceType: cpu-2
  autoscaling:
    min: 2
    max: 10
    metric: rps
    target: 50
  traffic:
    strategy: canary
    versions:
      - name: v1
        storageUri: s3://models/m/v1/
        weight: 80
      - name: v2
        storageUri: s3://models/m/v2/
        weight: 20
"#,
        ));
        let hpa = find(&l, "HorizontalPodAutoscaler", "m-v1");
        assert_eq!(hpa["spec"]["minReplicas"], 1);
        assert_eq!(hpa["spec"]["maxReplicas"], 8);
        assert_eq!(
            hpa["spec"]["metrics"][0]["pods"]["metric"]["name"],
            "requests_per_second"
        );
        let hpa = find(&l, "HorizontalPodAutoscaler", "m-v2");
        assert_eq!(hpa["spec"]["maxReplicas"], 2);
        assert!(
            find(&l, "Deployment", "m-v2")["spec"]
                .get("replicas")
                .is_none()
        );
        let svc = find(&l, "Service", "m");
        assert_eq!(
            svc["spec"]["selector"][VERSION_KEY], "v1",
            "callers outside the mesh reach the stable version"
        );
        assert_eq!(
            find(&l, "Service", "m-canary")["spec"]["selector"][VERSION_KEY],
            "v2"
        );
        let route = &find(&l, "VirtualService", "m")["spec"]["http"][0]["route"];
        assert_eq!(
            route[0]["destination"]["host"],
            "m-stable.ml.svc.cluster.local"
        );
        assert_eq!(route[0]["weight"], 80);
        assert_eq!(
            route[1]["destination"]["host"],
            "m-canary.ml.svc.cluster.local"
        );
        assert_eq!(route[1]["weight"], 20);
    }

    #[test]
    fn stepped_canary_is_an_argo_rollout_with_analysis() {
        let l = lower_with(&rollout(
            r#"
  runtime: deployment
  model:
    format: sklearn
    image: registry.example.org/serve:1
  instanceType: cpu-2
  autoscaling:
    min: 2
    max: 6
    target: 70
  traffic:
    strategy: canary
    versions:
      - name: v21
        storageUri: s3://models/m/v21/
        weight: 90
      - name: v22
        storageUri: s3://models/m/v22/
        weight: 10
    steps:
      - setWeight: 10
      - pause:
          duration: 30m
      - analysis: {}
      - setWeight: 50
      - pause: {}
      - analysis:
          count: 10
      - pause:
          duration: 1d
    analysis:
      prometheus:
        address: http://prometheus.monitoring:9090
        query: sum(rate(x{service="{{args.service}}",namespace="{{args.namespace}}"}[5m]))
      successCondition: result[0] >= 0.99
      failureCondition: result[0] < 0.95
      failureLimit: 2
      interval: 1m
      count: 5
"#,
        ));
        assert_eq!(
            keys(&l),
            [
                "AnalysisTemplate m",
                "AnalysisTemplate m-count-10",
                "HorizontalPodAutoscaler m",
                "NetworkPolicy m-endpoint",
                "Rollout m",
                "Service m",
                "Service m-canary",
                "Service m-stable",
                "VirtualService m"
            ],
            "no Deployments"
        );
        let ro = find(&l, "Rollout", "m");
        let c = &ro["spec"]["strategy"]["canary"];
        assert_eq!(c["trafficRouting"]["istio"]["virtualService"]["name"], "m");
        assert_eq!(
            c["trafficRouting"]["istio"]["virtualService"]["routes"][0],
            PRIMARY_ROUTE
        );
        let route = &find(&l, "VirtualService", "m")["spec"]["http"][0];
        assert_eq!(route["name"], PRIMARY_ROUTE);
        assert_eq!(
            route["route"][0]["destination"]["host"],
            "m-stable.ml.svc.cluster.local"
        );
        assert_eq!(
            route["route"][1]["destination"]["host"],
            "m-canary.ml.svc.cluster.local"
        );
        assert_eq!(c["stableService"], "m-stable");
        assert_eq!(c["canaryService"], "m-canary");
        let steps = c["steps"].as_array().expect("steps");
        assert_eq!(steps.len(), 7);
        assert_eq!(steps[0]["setWeight"], 10);
        assert_eq!(steps[1]["pause"]["duration"], "30m");
        assert_eq!(steps[2]["analysis"]["templates"][0]["templateName"], "m");
        assert_eq!(steps[2]["analysis"]["args"][0]["value"], "m-canary");
        assert_eq!(steps[4]["pause"], serde_json::json!({}));
        assert_eq!(
            steps[5]["analysis"]["templates"][0]["templateName"],
            "m-count-10"
        );
        assert_eq!(steps[6]["pause"]["duration"], "24h");
        assert!(
            ro["spec"].get("replicas").is_none(),
            "the HPA owns replicas"
        );
        assert_eq!(
            ro["spec"]["template"]["spec"]["containers"][0]["env"][0]["value"],
            "s3://models/m/v22/"
        );
        assert_eq!(
            ro["metadata"]["annotations"][STABLE_VERSION_ANNOTATION],
            "v21"
        );
        let hpa = find(&l, "HorizontalPodAutoscaler", "m");
        assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Rollout");
        assert_eq!(
            hpa["spec"]["scaleTargetRef"]["apiVersion"],
            "argoproj.io/v1alpha1"
        );
        let at = find(&l, "AnalysisTemplate", "m");
        let metric = &at["spec"]["metrics"][0];
        assert_eq!(metric["count"], 5);
        assert_eq!(metric["interval"], "1m");
        assert_eq!(metric["failureLimit"], 2);
        assert_eq!(metric["successCondition"], "result[0] >= 0.99");
        assert_eq!(metric["failureCondition"], "result[0] < 0.95");
        assert_eq!(
            metric["provider"]["prometheus"]["address"],
            "http://prometheus.monitoring:9090"
        );
        assert_eq!(
            find(&l, "AnalysisTemplate", "m-count-10")["spec"]["metrics"][0]["count"],
            10
        );
    }

    #[test]
    fn private_and_public_endpoints() {
        let body = |access: &str| {
            rollout(&format!(
                r#"
  runtime: deployment
  model:
    format: sklearn
    image: registry.example.org/serve:1
    storageUri: s3://models/m/v1/
    version: v1
  instanceType: cpu-2
  endpoint:
    {access}
    allowProjects: [web]
"#
            ))
        };
        let l = lower_with(&body("access: private"));
        assert_eq!(
            keys(&l),
            ["Deployment m-v1", "NetworkPolicy m-endpoint", "Service m"],
            "no Ingress for a private endpoint"
        );
        let np = find(&l, "NetworkPolicy", "m-endpoint");
        assert_eq!(np["spec"]["podSelector"]["matchLabels"][MODEL_LABEL], "m");
        let rule = &np["spec"]["ingress"][0];
        let from = rule["from"].as_array().expect("peers");
        assert_eq!(from.len(), 2);
        assert_eq!(from[0]["podSelector"], serde_json::json!({}));
        assert_eq!(
            from[1]["namespaceSelector"]["matchLabels"][NAMESPACE_LABEL],
            "web"
        );
        assert_eq!(rule["ports"][0]["port"], 8080);

        let l = lower_with(&body(
            "access: public\n    host: m.example.org\n    auth:\n      basicAuthSecret: m-users",
        ));
        let np = find(&l, "NetworkPolicy", "m-endpoint");
        let from = np["spec"]["ingress"][0]["from"].as_array().expect("peers");
        assert_eq!(from.len(), 3);
        assert_eq!(
            from[2]["namespaceSelector"]["matchLabels"][NAMESPACE_LABEL],
            "edge"
        );
        let ing = find(&l, "Ingress", "m");
        assert_eq!(ing["spec"]["rules"][0]["host"], "m.example.org");
        assert_eq!(ing["spec"]["ingressClassName"], "nginx");
        assert_eq!(ing["spec"]["tls"][0]["hosts"][0], "m.example.org");
        assert_eq!(ing["spec"]["tls"][0]["secretName"], "m-tls");
        let ann = &ing["metadata"]["annotations"];
        assert_eq!(ann[CLUSTER_ISSUER_ANNOTATION], "public-ca");
        assert_eq!(ann["nginx.ingress.kubernetes.io/auth-type"], "basic");
        assert_eq!(ann["nginx.ingress.kubernetes.io/auth-secret"], "m-users");
        assert_eq!(
            ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"],
            "m"
        );
        // Without traffic the Deployment is named after the model version, so promoting a
        // candidate and dropping `traffic` keeps it.
        let d = find(&l, "Deployment", "m-v1");
        assert_eq!(d["metadata"]["annotations"][VERSION_KEY], "v1");
        assert!(
            d["metadata"]["annotations"]
                .get(STRATEGY_ANNOTATION)
                .is_none()
        );
    }

    #[test]
    fn kserve_private_policy_admits_the_data_plane() {
        let l = lower_with(&rollout(
            r#"
  model:
    format: xgboost
    storageUri: s3://models/m/v1/
  resources:
    cpu: 1
    memory: 2Gi
  autoscaling:
    min: 1
    max: 3
    metric: concurrency
    target: 4
    scaleToZero: true
"#,
        ));
        let isvc = find(&l, "InferenceService", "m");
        let p = &isvc["spec"]["predictor"];
        assert_eq!(p["minReplicas"], 0);
        assert_eq!(p["scaleMetric"], "concurrency");
        assert_eq!(p["scaleTarget"], 4);
        assert_eq!(p["model"]["resources"]["limits"]["memory"], "2Gi");
        assert_eq!(
            isvc["metadata"]["annotations"][DEPLOYMENT_MODE_ANNOTATION],
            "Knative"
        );
        let np = find(&l, "NetworkPolicy", "m-endpoint");
        let rule = &np["spec"]["ingress"][0];
        assert!(rule.get("ports").is_none());
        let names: Vec<&str> = rule["from"]
            .as_array()
            .expect("peers")
            .iter()
            .filter_map(|p| p["namespaceSelector"]["matchLabels"][NAMESPACE_LABEL].as_str())
            .collect();
        assert_eq!(names, KSERVE_DATA_PLANE);
    }

    #[test]
    fn helpers() {
        assert_eq!(split(2, 10), (1, 1));
        assert_eq!(split(10, 10), (9, 1));
        assert_eq!(split(10, 50), (5, 5));
        assert_eq!(split(1, 50), (1, 1));
        assert_eq!(split(4, 0), (4, 0));
        assert_eq!(split(4, 100), (0, 4));
        assert_eq!(split(0, 10), (0, 0));
        assert_eq!(go_duration(&Duration("2w".to_owned())), "336h");
        assert_eq!(go_duration(&Duration("90s".to_owned())), "90s");
        let long = "a".repeat(60);
        let c = child(&long, "preview");
        assert!(c.len() <= 63 && is_dns_label(&c), "{c}");
        assert_eq!(c, child(&long, "preview"));
        assert_ne!(c, child(&long, "shadow"));
    }
}
