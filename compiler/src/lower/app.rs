//! App → the objects its template renders.
//!
//! An App names a template (`templates/<template>.yaml.j2`) and gives it `values`. For every
//! cluster its project lives on (those of `spec.clusters` when it names some), plinth:
//!
//! 1. checks the values against `templates/<template>.schema.json` when the template ships one
//!    (T005 at the App's `spec.values…` field, the schema keyword as related place), filling in
//!    the schema's defaults;
//! 2. renders the template in the sandbox of [`crate::template`] with the context below (T001
//!    syntax, T002 render errors, T003 budget);
//! 3. reads the output with plinth's own YAML reader and admits each document (T004):
//!    it must be a Kubernetes object (`apiVersion`, `kind`, `metadata.name`) of a kind in
//!    [`ALLOWED`] — namespaced kinds only — in the project's namespace (filled in when absent;
//!    another namespace is refused), and pass the rules of [`admit`];
//! 4. adds provenance and labels, verifies the object like every compiled object
//!    ([`crate::verify::verify_one`]; a failure is T004 at the template line), and hands it to
//!    the [`Sink`] (which adds `plinth.dev/source`, the App's file and line, and the hash).
//!    Policies then see it like any other manifest.
//!
//! Every diagnostic points at the template file and line that wrote the offending text (see
//! [`crate::template::Rendered::place`]) and carries the App's `spec.template` as a related
//! place.
//!
//! # Provenance
//! Each object gets `plinth.dev/source: <app file>:<line>` (by the Sink),
//! `plinth.dev/template: templates/<file>:<line>` — the template line that wrote the first line
//! of the object's document (an included template names itself; output of a macro names the
//! line calling it) — and the labels `app.kubernetes.io/managed-by: plinth`,
//! `plinth.dev/project` and `plinth.dev/app` (forced), plus the App's own `metadata.labels` and
//! `metadata.annotations` where the template set none of the same key.
//!
//! # The context
//! Global variables `app`, `project`, `instance`, `cluster` and `values` (see
//! [`context`]); helpers in [`crate::template`].

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};

use super::context::{Ctx, Sink, strip_nulls};
use crate::diag::{Code, Diagnostic, Label, Pos, Span};
use crate::model::dataset::{AccessMode, SourceKind};
use crate::model::project::ProjectSpec;
use crate::model::{AppSpec, Kind};
use crate::output::{Manifest, ObjectKey, Origin};
use crate::parse::{Document, FieldPath, Node, NodeValue, YamlLimits};
use crate::specs::Object;
use crate::template::{self, AppIdentity, Failure, Place, Rendered, ValuesCheck};

/// Annotation naming the template line an object was rendered from.
pub use crate::output::TEMPLATE_ANNOTATION;

/// The kinds a template may emit: all namespaced, none able to reach beyond the project's
/// namespace. Cluster-scoped kinds are never allowed: a ClusterRoleBinding or a webhook would
/// hand out rights over the whole cluster, a PersistentVolume could mount any storage and
/// bypass dataset grants, a Namespace or PriorityClass would escape the project's quota and
/// scheduling. Of the namespaced kinds, those that could widen access are left out too
/// (EndpointSlices pointing a Service anywhere, LocalQueues pointing at another project's
/// ClusterQueue, DaemonSets landing on every node, ResourceQuota and LimitRange, which are
/// the project's).
pub const ALLOWED: &[(&str, &str)] = &[
    ("v1", "ConfigMap"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "Pod"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("v1", "ServiceAccount"),
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("batch/v1", "CronJob"),
    ("batch/v1", "Job"),
    ("autoscaling/v2", "HorizontalPodAutoscaler"),
    ("policy/v1", "PodDisruptionBudget"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "NetworkPolicy"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
];

/// Built-in ClusterRoles a template's RoleBinding may grant inside the namespace (`admin`
/// could create further bindings, to anyone).
const BINDABLE_CLUSTER_ROLES: &[&str] = &["view", "edit"];

pub fn lower(cx: &Ctx<'_>, a: &Object<AppSpec>, sink: &mut Sink<'_>) {
    let Some(project) = cx.specs.projects.get(&a.spec.project) else {
        return;
    };
    if !a.spec.clusters.is_empty() && !a.spec.clusters.contains(&cx.cluster.name) {
        return;
    }
    let related = a
        .at("spec.template")
        .note(format!("rendering App `{}`", a.name()));
    // A dataset the project may not use is reported at the App's `values.datasets` entry by
    // the checks; rendering would only repeat it from inside the template.
    if let Some(Value::Array(wanted)) = a.spec.values.get("datasets") {
        let usable = crate::check::semantic::app_datasets(cx.specs, &a.spec.project);
        if wanted
            .iter()
            .any(|w| w.as_str().is_some_and(|w| !usable.contains(&w)))
        {
            return;
        }
    }

    let given = Value::Object(a.spec.values.clone().into_iter().collect());
    let values = match template::check_values_cached(
        &cx.index.templates,
        cx.snapshot,
        &a.spec.template,
        &given,
    ) {
        ValuesCheck::Ok(v) => v,
        ValuesCheck::Invalid {
            schema_file,
            schema_text,
            problems,
        } => {
            let schema_doc = schema_document(&schema_file, &schema_text);
            for p in problems {
                let mut path = FieldPath::parse("spec.values");
                path.0.extend(FieldPath::from_pointer(&p.pointer).0);
                let path = path.resolve_against(a.doc.root());
                let at = match &p.key {
                    Some(k) => a.doc.key_label(&path.clone().key(k.clone())),
                    None => a.label(&path).into(),
                };
                let mut d = Diagnostic::new(
                    Code::TemplateValues,
                    format!(
                        "values of App `{}` do not fit template `{}`: {}",
                        a.name(),
                        a.spec.template,
                        p.message
                    ),
                )
                .at(at);
                d = match &schema_doc {
                    Some(doc) => d.related(
                        doc.label(
                            &FieldPath::from_pointer(&p.schema_pointer).resolve_against(doc.root()),
                        )
                        .note("required by the template's values schema"),
                    ),
                    None => d.related(
                        Label::new(Span::file_start(schema_file.clone()))
                            .note("the template's values schema"),
                    ),
                };
                sink.report(d.hint(format!(
                    "`{schema_file}` says which values template `{}` takes",
                    a.spec.template
                )));
            }
            return;
        }
        ValuesCheck::BrokenSchema {
            schema_file,
            message,
            pos,
        } => {
            sink.report(
                Diagnostic::new(Code::TemplateValues, message)
                    .at(Label::new(Span::new(schema_file, pos, pos)))
                    .related(related)
                    .hint("a values schema is a JSON Schema (draft 2020-12) in `templates/<name>.schema.json`; remote `$ref`s are never fetched"),
            );
            return;
        }
    };

    let identity = AppIdentity {
        name: a.name().to_owned(),
        project: project.name().to_owned(),
        template: a.spec.template.clone(),
    };
    let globals = context(cx, a, project, values);
    let rendered =
        match template::render_cached(&cx.index.templates, cx.snapshot, &identity, &globals) {
            Ok(r) => r,
            Err(f) => {
                sink.report(failure(a, f, related));
                return;
            }
        };
    objects(cx, a, &identity, &rendered, related, sink);
}

fn failure(a: &Object<AppSpec>, f: Failure, related: impl Into<Label>) -> Diagnostic {
    let at = match &f.place {
        Some(p) => place_label(p),
        None => Label::new(Span::file_start(Arc::from(format!(
            "{}{}.yaml.j2",
            template::DIR,
            a.spec.template
        )))),
    };
    let mut d = Diagnostic::new(f.code, f.message).at(at).related(related);
    if let Some(h) = f.hint {
        d = d.hint(h);
    }
    d
}

fn place_label(p: &Place) -> Label {
    Label::new(Span::new(p.file.clone(), p.pos(), p.pos()))
}

/// The schema file as a document, for pointing at the keyword a value failed (JSON is YAML).
fn schema_document(file: &Arc<str>, text: &str) -> Option<Document> {
    let (docs, diags) = crate::parse::yaml::parse_documents(file, text, YamlLimits::default());
    if !diags.is_empty() {
        return None;
    }
    docs.into_iter().next().map(|d| {
        Document::new(
            file.clone(),
            0,
            d.root,
            false,
            <sha2::Sha256 as sha2::Digest>::digest(text.as_bytes()).into(),
        )
    })
}

// ---------------------------------------------------------------------------------------------
// Context

/// The template's global variables. Quantities are strings (`"4"`, `"24Gi"`); absent settings
/// are `none`. Documented in the README ("Write your own App template").
pub fn context(
    cx: &Ctx<'_>,
    a: &Object<AppSpec>,
    p: &Object<ProjectSpec>,
    values: Value,
) -> Map<String, Value> {
    let ns = p.name();
    let s = &p.spec;
    let q = |x: &Option<crate::model::Quantity>| x.as_ref().map(|q| q.as_str().to_owned());

    let mut queues = Map::new();
    if cx.platform.backends.kueue {
        for (pool, _) in cx.index.allocations.get(ns).into_iter().flatten() {
            if cx.has_pool(pool) {
                queues.insert((*pool).to_owned(), json!(pool));
            }
        }
    }
    let default_queue = (cx.platform.backends.kueue
        && super::rules::default_queue(cx, ns).is_some())
    .then_some("default");

    let provider = serde_json::to_value(cx.cluster.provider).unwrap_or(Value::Null);
    let identity = s.cloud_identity.as_ref().map(|id| {
        json!({
            "aws": id.aws.as_ref().map(|x| json!({"roleArn": x.role_arn})),
            "gcp": id.gcp.as_ref().map(|x| json!({"serviceAccount": x.service_account})),
            "azure": id.azure.as_ref().map(|x| json!({"clientId": x.client_id, "tenantId": x.tenant_id})),
        })
    });

    let images: Vec<Value> = cx
        .platform
        .images
        .iter()
        .chain(&s.images)
        .map(|i| {
            json!({
                "name": i.name,
                "url": i.url,
                "urlForGpu": i.url_for_gpu.as_ref().unwrap_or(&i.url),
                "pullSecret": i.pull_secret,
            })
        })
        .collect();

    let project = json!({
        "name": ns,
        "namespace": ns,
        "displayName": s.display_name.as_deref().unwrap_or(ns),
        "description": s.description,
        "serviceAccount": super::rules::WORKLOAD_SA,
        "queue": default_queue,
        "queues": queues,
        "quota": s.quota.as_ref().map(|x| json!({
            "cpu": q(&x.cpu), "memory": q(&x.memory), "storage": q(&x.storage), "pods": x.pods,
        })),
        "perUserQuota": s.per_user_quota.as_ref().map(|x| json!({
            "cpu": q(&x.cpu), "memory": q(&x.memory), "gpu": x.gpu,
        })),
        "podSecurity": s.pod_security.unwrap_or(cx.platform.defaults.pod_security).as_str(),
        "runAsUser": cx.platform.defaults.run_as_user,
        "runAsGroup": cx.platform.defaults.run_as_group,
        "datasets": datasets(cx, ns),
        "sharedVolume": s.volumes.shared.as_ref().map(|v| json!({
            "claim": "shared", "mountPath": v.mount_path,
        })),
        "cloudIdentity": identity,
        "images": images,
        "mlflow": s.mlflow.as_ref().map(|m| json!({
            "trackingUri": m.tracking_uri, "artifactUri": m.artifact_uri, "uiUrl": m.ui_url,
        })),
        "storageClass": cx.storage_class(None),
    });

    let mut globals = Map::new();
    globals.insert(
        "app".to_owned(),
        json!({
            "name": a.name(),
            "namespace": ns,
            "project": ns,
            "template": a.spec.template,
            "instanceType": a.spec.instance_type,
            "source": a.source(),
        }),
    );
    globals.insert("project".to_owned(), project);
    globals.insert(
        "instance".to_owned(),
        instance(
            cx,
            ns,
            a.spec.instance_type.as_deref(),
            a.spec.priority_class.as_deref(),
        ),
    );
    globals.insert(
        "cluster".to_owned(),
        json!({
            "name": cx.cluster.name,
            "provider": provider,
            "region": cx.cluster.region,
            "kubernetesVersion": cx.cluster.kubernetes_version,
            "production": cx.cluster.production,
        }),
    );
    globals.insert("values".to_owned(), values);
    globals
}

/// The datasets a project may use on this cluster (its grants, and global datasets read-only),
/// by name.
fn datasets(cx: &Ctx<'_>, project: &str) -> Vec<Value> {
    let mut out = Vec::new();
    // Only what is mounted on this cluster (an object store of another cloud is not).
    for (d, mode) in super::rules::mounted(cx, project) {
        let Some(kind) = d.spec.source.kind() else {
            continue;
        };
        let mount_path = super::rules::mount_path(d);
        let volume = matches!(
            kind,
            SourceKind::S3
                | SourceKind::Gcs
                | SourceKind::AzureBlob
                | SourceKind::Nfs
                | SourceKind::HostPath
                | SourceKind::Pv
        );
        let git_sync = (kind == SourceKind::Git).then(|| {
            let parent = match mount_path.trim_end_matches('/').rsplit_once('/') {
                Some((p, _)) if !p.is_empty() => p.to_owned(),
                _ => "/".to_owned(),
            };
            json!({
                "volumePath": parent,
                "secret": d.spec.source.git.as_ref().and_then(|g| g.secret_ref.clone()),
            })
        });
        out.push(json!({
            "name": d.name(),
            "claim": super::rules::claim_name(d.name()),
            "type": if volume { "volume" } else { "configMap" },
            "source": kind.as_str(),
            "mode": mode.as_str(),
            "readOnly": mode == AccessMode::ReadOnly,
            "mountPath": mount_path,
            "version": d.spec.pinned_version(),
            "sensitivity": d.spec.sensitivity.as_str(),
            "gitSync": git_sync,
        }));
    }
    out
}

/// The instance type, with the pool's placement merged in; `none` without one.
/// `priority_class`: the App's `spec.priorityClass` (the pool's default when `None`).
fn instance(
    cx: &Ctx<'_>,
    project: &str,
    name: Option<&str>,
    priority_class: Option<&str>,
) -> Value {
    let Some(name) = name else {
        return Value::Null;
    };
    let its = crate::check::semantic::instance_types(cx.specs);
    let Some((t, pool)) = its.get(name) else {
        return Value::Null;
    };
    let quota = pool.and_then(|p| cx.specs.gpu_quotas.get(p));
    let cpu_limit = t.cpu_limit.as_ref().unwrap_or(&t.cpu);
    let memory_limit = t.memory_limit.as_ref().unwrap_or(&t.memory);
    let mut requests = BTreeMap::from([
        ("cpu".to_owned(), t.cpu.to_string()),
        ("memory".to_owned(), t.memory.to_string()),
    ]);
    let mut limits = BTreeMap::from([
        ("cpu".to_owned(), cpu_limit.to_string()),
        ("memory".to_owned(), memory_limit.to_string()),
    ]);
    let mut resource = None;
    if let Some(quota) = quota {
        let p = &quota.spec.pool;
        resource = Some(p.resource_name.clone());
        if t.gpu > 0 {
            requests.insert(p.resource_name.clone(), t.gpu.to_string());
            limits.insert(p.resource_name.clone(), t.gpu.to_string());
        }
    }
    let (node_selector, tolerations) = super::rules::placement(quota.map(|q| &*q.spec), Some(t));
    let unique: Vec<Value> = tolerations
        .iter()
        .map(|t| serde_json::to_value(t).unwrap_or(Value::Null))
        .collect();
    // The one Kueue rule for every workload plinth sizes (rollouts, Apps).
    let labels = pool
        .filter(|_| t.gpu > 0)
        .map(|p| super::rules::queue_labels(cx, project, p, priority_class))
        .unwrap_or_default();
    let queue = labels.get(super::rules::QUEUE_LABEL).cloned();
    let pod_labels: Map<String, Value> = labels.into_iter().map(|(k, v)| (k, json!(v))).collect();
    json!({
        "name": t.name,
        "displayName": t.display_name.as_deref().unwrap_or(&t.name),
        "cpu": t.cpu.as_str(),
        "memory": t.memory.as_str(),
        "cpuLimit": cpu_limit.as_str(),
        "memoryLimit": memory_limit.as_str(),
        "gpu": t.gpu,
        "gpuResource": resource,
        "pool": pool,
        "resources": {"requests": requests, "limits": limits},
        "nodeSelector": node_selector,
        "tolerations": unique,
        "queue": queue,
        "labels": pod_labels,
    })
}

// ---------------------------------------------------------------------------------------------
// Output

/// Where a node of the output came from in the template.
fn place_of(r: &Rendered, pos: Pos) -> Option<Place> {
    r.place(r.offset(pos))
}

/// The label of a field of an output document: the template place that wrote it (the deepest
/// existing parent when the field is missing), with the field path.
fn field_label(r: &Rendered, root: &Node, path: &str, fallback: &Place) -> Label {
    let fp = FieldPath::parse(path);
    let w = root.walk(&fp);
    let pos = match (w.matched == fp.0.len(), w.key_span) {
        (true, _) if !matches!(w.node.value, NodeValue::Map(_) | NodeValue::Seq(_)) => {
            w.node.span.start
        }
        (_, Some(k)) => k.start,
        _ => w.node.span.start,
    };
    let place = place_of(r, pos).unwrap_or_else(|| fallback.clone());
    place_label(&place).field(path)
}

/// The rendered line at a position, for hints.
fn output_line(text: &str, line: u32) -> String {
    let l = text
        .lines()
        .nth(line.saturating_sub(1) as usize)
        .unwrap_or_default();
    if l.chars().count() > 80 {
        format!("{}…", l.chars().take(80).collect::<String>())
    } else {
        l.to_owned()
    }
}

fn objects(
    cx: &Ctx<'_>,
    a: &Object<AppSpec>,
    app: &AppIdentity,
    r: &Rendered,
    related: Label,
    sink: &mut Sink<'_>,
) {
    let main: Arc<str> = Arc::from(format!("{}{}.yaml.j2", template::DIR, a.spec.template));
    let main_place = Place {
        file: main.clone(),
        line: 1,
        column: 1,
    };
    let origin = Origin::of(Kind::App, a);
    let (docs, yaml_diags) =
        crate::parse::yaml::parse_documents(&main, &r.text, YamlLimits::default());
    for d in yaml_diags {
        let pos = d.primary.as_ref().map_or(Pos::new(1, 1), |l| l.span.start);
        let place = place_of(r, pos).unwrap_or_else(|| main_place.clone());
        sink.report(
            Diagnostic::new(
                Code::TemplateOutput,
                format!(
                    "the output of template `{}` is not valid YAML: {}",
                    a.spec.template,
                    d.message
                        .strip_prefix("invalid YAML: ")
                        .unwrap_or(&d.message)
                ),
            )
            .at(place_label(&place))
            .related(related.clone())
            .hint(format!(
                "rendered line {}: `{}`; plinth writes every value as one quoted YAML scalar, so build a whole scalar in one expression (`{{{{ app.name ~ \"-data\" }}}}`)",
                pos.line,
                output_line(&r.text, pos.line)
            )),
        );
    }
    let split = r.split_values(docs.iter().map(|d| &d.root));
    for place in &split {
        sink.report(
            Diagnostic::new(
                Code::TemplateOutput,
                format!(
                    "template `{}` writes a value into part of a YAML scalar, where its contents could change the structure of the output",
                    a.spec.template
                ),
            )
            .at(place_label(place))
            .related(related.clone())
            .hint("write the whole scalar in one expression, e.g. `name: {{ app.name ~ \"-data\" }}` or `- {{ \"--flag=\" ~ values.x }}`; plinth quotes every value it writes"),
        );
    }
    if !split.is_empty() {
        return;
    }
    for doc in docs.into_iter().filter(|d| !d.tainted) {
        one_object(cx, a, app, r, &related, &main_place, &origin, doc, sink);
    }
}

/// One document of a template's output: refused with located diagnostics, or admitted with
/// plinth's provenance and pushed.
#[allow(clippy::too_many_arguments)]
fn one_object(
    cx: &Ctx<'_>,
    a: &Object<AppSpec>,
    app: &AppIdentity,
    r: &Rendered,
    related: &Label,
    main_place: &Place,
    origin: &Origin,
    doc: crate::parse::yaml::YamlDoc,
    sink: &mut Sink<'_>,
) {
    let ns = a.spec.project.as_str();
    let root = &doc.root;
    let here = place_of(r, root.span.start).unwrap_or_else(|| main_place.clone());
    let report = |sink: &mut Sink<'_>, at: Label, message: String, hint: &str| {
        let mut d = Diagnostic::new(Code::TemplateOutput, message)
            .at(at)
            .related(related.clone());
        if !hint.is_empty() {
            d = d.hint(hint.to_owned());
        }
        sink.report(d);
    };
    let NodeValue::Map(_) = root.value else {
        report(
            sink,
            place_label(&here),
            format!(
                "document {} of the output of template `{}` is a {}, not a Kubernetes object",
                doc.index + 1,
                a.spec.template,
                root.type_name()
            ),
            "each `---`-separated document a template writes must be one object with `apiVersion`, `kind` and `metadata.name`",
        );
        return;
    };
    let mut v = root.to_json();
    let mut missing = Vec::new();
    for (path, ptr) in [
        ("apiVersion", "/apiVersion"),
        ("kind", "/kind"),
        ("metadata.name", "/metadata/name"),
    ] {
        if !v.pointer(ptr).is_some_and(Value::is_string) {
            missing.push(path);
        }
    }
    if !missing.is_empty() {
        report(
            sink,
            field_label(r, root, missing[0], &here),
            format!(
                "document {} of the output of template `{}` is not a Kubernetes object: `{}` is missing or not a string",
                doc.index + 1,
                a.spec.template,
                missing.join("`, `")
            ),
            "each `---`-separated document a template writes must be one object with `apiVersion`, `kind` and `metadata.name`",
        );
        return;
    }
    let key = ObjectKey::of(&v);
    let refusals = admit(&v, app, ns);
    if !refusals.is_empty() {
        for (path, message, hint) in refusals {
            report(
                sink,
                field_label(r, root, &path, &here),
                format!(
                    "template `{}` writes {}: {message}",
                    a.spec.template,
                    describe(&key)
                ),
                &hint,
            );
        }
        return;
    }

    if !provenance(a, ns, &here, &mut v) {
        return;
    }

    pod_identity(cx, ns, &mut v);

    // Verified like compiled output, but reported at the template.
    let key = ObjectKey::of(&v);
    let candidate = Manifest {
        key: key.clone(),
        object: v.into(),
        origin: origin.clone(),
        hash: String::new(),
    };
    if let Err(msg) = crate::verify::verify_one(&candidate) {
        let path = msg
            .split('`')
            .nth(1)
            .filter(|p| root.walk(&FieldPath::parse(p)).matched > 0)
            .unwrap_or("kind");
        report(
            sink,
            field_label(r, root, path, &here),
            format!(
                "template `{}` writes an invalid {}: {msg}",
                a.spec.template,
                describe(&key)
            ),
            "what a template writes is checked like plinth's own output: field names and types of the Kubernetes API, quantities as strings (quote them or use `| tojson`)",
        );
        return;
    }
    sink.push_value(origin, candidate.object.into_value());
}

/// Provenance, namespace and labels of a template's object; false when it has no `metadata`.
fn provenance(a: &Object<AppSpec>, ns: &str, here: &Place, v: &mut Value) -> bool {
    // Provenance, namespace and labels.
    strip_nulls(v);
    let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) else {
        return false;
    };
    meta.insert("namespace".to_owned(), json!(ns));
    let labels = meta
        .entry("labels")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(l) = labels.as_object_mut() {
        for (k, val) in &a.metadata.labels {
            l.entry(k.clone()).or_insert_with(|| json!(val));
        }
        l.insert(
            crate::output::MANAGED_BY.0.to_owned(),
            json!(crate::output::MANAGED_BY.1),
        );
        l.insert(crate::output::PROJECT_LABEL.to_owned(), json!(ns));
        l.insert(template::APP_LABEL.to_owned(), json!(a.name()));
        let mut sorted: Vec<(String, Value)> = std::mem::take(l).into_iter().collect();
        sorted.sort_by(|x, y| x.0.cmp(&y.0));
        l.extend(sorted);
    }
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(m) = annotations.as_object_mut() {
        for (k, val) in &a.metadata.annotations {
            m.entry(k.clone()).or_insert_with(|| json!(val));
        }
        m.insert(
            TEMPLATE_ANNOTATION.to_owned(),
            json!(format!("{}:{}", here.file, here.line)),
        );
    }
    true
}

/// The pod-level settings of the project's cloud identity and datasets (see
/// [`super::identity`]) on the pod template of a workload: the Azure workload identity label
/// when the pod runs as the `workload` ServiceAccount, the GKE Cloud Storage FUSE annotation
/// when it mounts a GCS dataset's claim. Keys the template set itself are kept.
fn pod_identity(cx: &Ctx<'_>, ns: &str, v: &mut Value) {
    let kind = v.get("kind").and_then(Value::as_str).unwrap_or_default();
    let Some(spec_path) = pod_spec_path(kind) else {
        return;
    };
    let spec_ptr = pointer(spec_path);
    let meta_ptr = match spec_path.strip_suffix("spec") {
        Some("") => "/metadata".to_owned(),
        Some(prefix) => pointer(&format!("{prefix}metadata")),
        None => return,
    };
    let Some(spec) = v.pointer(&spec_ptr) else {
        return;
    };
    let labels = if super::rules::runs_as_workload(spec) {
        super::rules::pod_labels(cx, ns)
    } else {
        BTreeMap::new()
    };
    let claims: Vec<&str> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|vol| vol.pointer("/persistentVolumeClaim/claimName")?.as_str())
        .collect();
    let annotations = super::rules::pod_annotations(cx, ns, claims.into_iter());
    if labels.is_empty() && annotations.is_empty() {
        return;
    }
    let Some(meta) = ensure_object(v, &meta_ptr) else {
        return;
    };
    for (field, extra) in [("labels", labels), ("annotations", annotations)] {
        if extra.is_empty() {
            continue;
        }
        if let Some(m) = meta
            .entry(field)
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
        {
            for (k, val) in extra {
                m.entry(k).or_insert(Value::String(val));
            }
        }
    }
}

/// The object at a JSON pointer, created (with its parents) when absent.
fn ensure_object<'v>(v: &'v mut Value, ptr: &str) -> Option<&'v mut Map<String, Value>> {
    let mut cur = v;
    for seg in ptr.split('/').skip(1) {
        cur = cur
            .as_object_mut()?
            .entry(seg)
            .or_insert_with(|| Value::Object(Map::new()));
    }
    cur.as_object_mut()
}

fn describe(key: &ObjectKey) -> String {
    format!("{} `{}`", key.kind, key.name)
}

// ---------------------------------------------------------------------------------------------
// Admission

/// Where the pod spec of a workload kind is.
fn pod_spec_path(kind: &str) -> Option<&'static str> {
    match kind {
        "Deployment" | "StatefulSet" | "Job" => Some("spec.template.spec"),
        "CronJob" => Some("spec.jobTemplate.spec.template.spec"),
        "Pod" => Some("spec"),
        _ => None,
    }
}

fn pointer(path: &str) -> String {
    let mut p = String::new();
    for seg in path.split('.') {
        p.push('/');
        p.push_str(seg);
    }
    p
}

/// Why an object may not be emitted: (field path, message, hint) for each rule it breaks.
pub fn admit(v: &Value, app: &AppIdentity, ns: &str) -> Vec<Refusal> {
    let mut out = Vec::new();
    let key = ObjectKey::of(v);
    if !admit_kind(&key, &mut out) {
        return out;
    }
    if let Some(other) = key.namespace.as_deref()
        && other != ns
    {
        out.push((
            "metadata.namespace".to_owned(),
            format!("namespace `{other}` is not the project's: an App's objects live in namespace `{ns}`"),
            "drop `metadata.namespace` (plinth sets it) or write `{{ app.namespace }}`".to_owned(),
        ));
    }
    if let Some(pod) = pod_spec_path(&key.kind) {
        admit_pod(v, pod, ns, &mut out);
    }
    if key.kind == "StatefulSet" {
        let templates = v
            .pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (i, t) in templates.iter().enumerate() {
            if let Some(spec) = t.get("spec") {
                out.extend(claim_spec(
                    spec,
                    &format!("spec.volumeClaimTemplates[{i}].spec"),
                    ns,
                ));
            }
        }
    }
    admit_annotations(v, &mut out);
    match key.kind.as_str() {
        "Service" => admit_service(v, &mut out),
        "RoleBinding" => admit_role_binding(v, ns, &mut out),
        "Role" => admit_role(v, &mut out),
        "NetworkPolicy" => admit_network_policy(v, app, &mut out),
        "PersistentVolumeClaim" => admit_claim(v, ns, &mut out),
        _ => {}
    }
    out
}

/// A refusal: (field path, message, hint).
type Refusal = (String, String, String);

/// The kinds a template may emit, with why another is refused.
fn admit_kind(key: &ObjectKey, out: &mut Vec<Refusal>) -> bool {
    let allowed = ALLOWED
        .iter()
        .any(|(av, k)| *av == key.api_version && *k == key.kind);
    if !allowed {
        let why = match key.kind.as_str() {
            "ClusterRole" | "ClusterRoleBinding" => {
                "cluster-wide RBAC would grant rights beyond the project's namespace"
            }
            "Namespace" => "a namespace would escape the project's quota, policies and isolation",
            "PersistentVolume" => {
                "a PersistentVolume can mount any storage and bypass the project's dataset grants"
            }
            "MutatingWebhookConfiguration" | "ValidatingWebhookConfiguration" => {
                "a webhook would see or change every object of the cluster"
            }
            "CustomResourceDefinition"
            | "StorageClass"
            | "PriorityClass"
            | "Node"
            | "ValidatingAdmissionPolicy"
            | "ValidatingAdmissionPolicyBinding" => {
                "cluster-scoped objects are the platform's, not an App's"
            }
            _ => "it is not a kind App templates may emit",
        };
        out.push((
            "kind".to_owned(),
            format!("`{}` `{}` is refused: {why}", key.api_version, key.kind),
            format!(
                "App templates may emit only namespaced objects of these kinds: {}",
                ALLOWED
                    .iter()
                    .map(|(_, k)| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ));
        return false;
    }
    true
}

/// Pods stay inside the project: no host namespaces or paths, no direct storage, no chosen
/// node, priority or taint escape.
fn admit_pod(v: &Value, pod: &str, ns: &str, out: &mut Vec<Refusal>) {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str);
    let arr = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let base = pointer(pod);
    for field in ["hostNetwork", "hostPID", "hostIPC"] {
        if v.pointer(&format!("{base}/{field}")) == Some(&Value::Bool(true)) {
            out.push((
                format!("{pod}.{field}"),
                format!("`{field}: true` would share the node's namespaces"),
                "App pods stay inside the project: no host namespaces, host paths or privileged containers".to_owned(),
            ));
        }
    }
    for (i, vol) in arr(&format!("{base}/volumes")).iter().enumerate() {
        if vol.get("hostPath").is_some() {
            out.push((
                format!("{pod}.volumes[{i}].hostPath"),
                "a `hostPath` volume would read or write the node's files".to_owned(),
                "mount the project's datasets and claims instead (`project.datasets`, `project.sharedVolume`)".to_owned(),
            ));
            continue;
        }
        let Some(map) = vol.as_object() else { continue };
        for source in map.keys().filter(|k| *k != "name") {
            if !VOLUME_SOURCES.contains(&source.as_str()) {
                out.push((
                    format!("{pod}.volumes[{i}].{source}"),
                    format!("an inline `{source}` volume reaches storage directly, around the project's claims and dataset grants"),
                    format!("mount the project's datasets and claims (`project.datasets`, `project.sharedVolume`); App pods may use these volume sources: {}", VOLUME_SOURCES.map(|v| format!("`{v}`")).join(", ")),
                ));
            }
        }
        if let Some(claim) = vol.pointer("/ephemeral/volumeClaimTemplate/spec") {
            out.extend(claim_spec(
                claim,
                &format!("{pod}.volumes[{i}].ephemeral.volumeClaimTemplate.spec"),
                ns,
            ));
        }
    }
    if let Some(pc) = s(&format!("{base}/priorityClassName")).filter(|p| p.starts_with("system-")) {
        out.push((
            format!("{pod}.priorityClassName"),
            format!("priority class `{pc}` is the cluster's own: it would preempt the system's pods and escape the project's queues"),
            "use the App's `spec.priorityClass` (the template's `instance.labels` carry it)".to_owned(),
        ));
    }
    if s(&format!("{base}/nodeName")).is_some() {
        out.push((
            format!("{pod}.nodeName"),
            "`nodeName` places the pod on a node directly, around the scheduler, taints and the project's queues".to_owned(),
            "use the instance type's `nodeSelector` and `tolerations` (`instance.nodeSelector`, `instance.tolerations`)".to_owned(),
        ));
    }
    for (i, t) in arr(&format!("{base}/tolerations")).iter().enumerate() {
        let key = t.get("key").and_then(Value::as_str).unwrap_or_default();
        if key.is_empty() && t.get("operator").and_then(Value::as_str) == Some("Exists") {
            out.push((
                format!("{pod}.tolerations[{i}]"),
                "a toleration without a key tolerates every taint: the pod could land on any node, GPU and control-plane nodes included".to_owned(),
                "tolerate the instance type's taints only (`instance.tolerations`)".to_owned(),
            ));
        } else if CONTROL_PLANE_TAINTS.contains(&key) {
            out.push((
                format!("{pod}.tolerations[{i}]"),
                format!("tolerating `{key}` would run the pod on a control-plane node"),
                "tolerate the instance type's taints only (`instance.tolerations`)".to_owned(),
            ));
        }
    }
    for field in [
        "securityContext.seccompProfile.type",
        "securityContext.appArmorProfile.type",
    ] {
        if s(&format!("{base}/{}", field.replace('.', "/"))) == Some("Unconfined") {
            out.push((
                format!("{pod}.{field}"),
                "an `Unconfined` profile lifts the runtime's system-call and access restrictions"
                    .to_owned(),
                "leave it out, or use `RuntimeDefault`".to_owned(),
            ));
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for (i, c) in arr(&format!("{base}/{list}")).iter().enumerate() {
            admit_container(c, &format!("{pod}.{list}[{i}]"), out);
        }
    }
}

/// A container's rights: not privileged, no capabilities beyond the safe list, no host ports,
/// no lifted profiles.
fn admit_container(c: &Value, at: &str, out: &mut Vec<Refusal>) {
    if c.pointer("/securityContext/privileged") == Some(&Value::Bool(true)) {
        out.push((
            format!("{at}.securityContext.privileged"),
            "a privileged container controls the node".to_owned(),
            "App pods stay inside the project: no host namespaces, host paths or privileged containers".to_owned(),
        ));
    }
    let added = c
        .pointer("/securityContext/capabilities/add")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for (j, cap) in added.iter().enumerate() {
        let name = cap.as_str().unwrap_or_default();
        let bare = name.strip_prefix("CAP_").unwrap_or(name);
        if !SAFE_CAPABILITIES.contains(&bare) {
            out.push((
                format!("{at}.securityContext.capabilities.add[{j}]"),
                format!(
                    "capability `{name}` is refused: App containers may add only {}",
                    SAFE_CAPABILITIES.map(|c| format!("`{c}`")).join(", ")
                ),
                "drop the capability; the `restricted` Pod Security level allows no other"
                    .to_owned(),
            ));
        }
    }
    for (j, port) in c
        .get("ports")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        if port
            .get("hostPort")
            .and_then(Value::as_u64)
            .is_some_and(|p| p != 0)
        {
            out.push((
                format!("{at}.ports[{j}].hostPort"),
                "a `hostPort` opens a port on the node's address, around the project's network policy".to_owned(),
                "leave `hostPort` out: a Service reaches the container port".to_owned(),
            ));
        }
    }
    for (field, bad, why) in [
        (
            "securityContext.procMount",
            "Unmasked",
            "an unmasked /proc exposes the node's kernel settings",
        ),
        (
            "securityContext.seccompProfile.type",
            "Unconfined",
            "an `Unconfined` profile lifts the runtime's system-call restrictions",
        ),
        (
            "securityContext.appArmorProfile.type",
            "Unconfined",
            "an `Unconfined` profile lifts the runtime's access restrictions",
        ),
    ] {
        if c.pointer(&pointer(field)).and_then(Value::as_str) == Some(bad) {
            out.push((
                format!("{at}.{field}"),
                why.to_owned(),
                "leave it out".to_owned(),
            ));
        }
    }
    if c.pointer("/securityContext/windowsOptions/hostProcess") == Some(&Value::Bool(true)) {
        out.push((
            format!("{at}.securityContext.windowsOptions.hostProcess"),
            "a host process container runs on the node itself".to_owned(),
            "App pods stay inside the project".to_owned(),
        ));
    }
}

/// No annotation hands configuration text to a shared controller.
fn admit_annotations(v: &Value, out: &mut Vec<Refusal>) {
    for (k, _) in v
        .pointer("/metadata/annotations")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        if k.to_ascii_lowercase().contains("snippet") {
            out.push((
            format!("metadata.annotations.{k}"),
            format!("annotation `{k}` hands configuration text to the ingress controller, which runs it for every tenant (ingress-nginx CVE-2021-25742)"),
            "use the controller's typed annotations, or ask the platform team for a setting".to_owned(),
        ));
        }
    }
}

/// Services stay inside the cluster.
fn admit_service(v: &Value, out: &mut Vec<Refusal>) {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str);
    let arr = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    if let Some(t @ ("NodePort" | "LoadBalancer")) = s("/spec/type") {
        out.push((
            "spec.type".to_owned(),
            format!("a `{t}` Service would expose the App outside the cluster, around the project's network isolation"),
            "use a ClusterIP Service, and an Ingress when the App must be reachable from outside".to_owned(),
        ));
    }
    if s("/spec/type") == Some("ExternalName") || s("/spec/externalName").is_some() {
        out.push((
            "spec.type".to_owned(),
            "an `ExternalName` Service makes a name in the project resolve to any host, which ingress controllers and meshes then proxy to".to_owned(),
            "use a ClusterIP Service; reach outside hosts by their own names".to_owned(),
        ));
    }
    if !arr("/spec/externalIPs").is_empty() {
        out.push((
            "spec.externalIPs".to_owned(),
            "`externalIPs` can intercept traffic to any address in the cluster".to_owned(),
            "use a ClusterIP Service".to_owned(),
        ));
    }
}

/// Bindings grant a Role, `view` or `edit` to the project's service accounts only.
fn admit_role_binding(v: &Value, ns: &str, out: &mut Vec<Refusal>) {
    let s = |p: &str| v.pointer(p).and_then(Value::as_str);
    let arr = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    let role = s("/roleRef/name").unwrap_or_default();
    match s("/roleRef/kind") {
        Some("Role") => {}
        Some("ClusterRole") if BINDABLE_CLUSTER_ROLES.contains(&role) => {}
        _ => out.push((
            "roleRef".to_owned(),
            format!("binding `{role}` is refused: a template's RoleBinding may grant a Role of the namespace or the built-in `view` or `edit`"),
            "write a Role with the rights the App needs".to_owned(),
        )),
    }
    for (i, sub) in arr("/subjects").iter().enumerate() {
        let kind = sub.get("kind").and_then(Value::as_str);
        let sub_ns = sub.get("namespace").and_then(Value::as_str);
        if kind != Some("ServiceAccount") || sub_ns.is_some_and(|n| n != ns) {
            out.push((
                format!("subjects[{i}]"),
                "a template's RoleBinding may only grant to service accounts of the project's namespace".to_owned(),
                "people get their rights from the Project's owners and members".to_owned(),
            ));
        }
    }
}

/// Roles name their rights and stay out of RBAC.
fn admit_role(v: &Value, out: &mut Vec<Refusal>) {
    let arr = |p: &str| {
        v.pointer(p)
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    for (i, rule) in arr("/rules").iter().enumerate() {
        let has = |field: &str, bad: &[&str]| {
            rule.get(field).and_then(Value::as_array).is_some_and(|xs| {
                xs.iter()
                    .any(|x| x.as_str().is_some_and(|x| bad.contains(&x)))
            })
        };
        if has("apiGroups", &["*", "rbac.authorization.k8s.io"])
            || has("resources", &["*"])
            || has("verbs", &["*", "bind", "escalate", "impersonate"])
        {
            out.push((
                format!("rules[{i}]"),
                "a template's Role may not use wildcards or reach RBAC (`*`, `rbac.authorization.k8s.io`, `bind`, `escalate`, `impersonate`): the App could grant itself more".to_owned(),
                "name the API groups, resources and verbs the App needs".to_owned(),
            ));
        }
    }
}

/// A template's NetworkPolicy selects only the App's pods.
fn admit_network_policy(v: &Value, app: &AppIdentity, out: &mut Vec<Refusal>) {
    let selects_app = v
        .pointer("/spec/podSelector/matchLabels/app.kubernetes.io~1instance")
        .and_then(Value::as_str)
        == Some(app.name.as_str());
    if !selects_app {
        out.push((
            "spec.podSelector".to_owned(),
            format!("a template's NetworkPolicy must select only the App's pods (`matchLabels` with `app.kubernetes.io/instance: {}`): policies add up, so a wider one would open the project", app.name),
            "write `podSelector: {matchLabels: {{ selector_labels() | tojson }}}`".to_owned(),
        ));
    }
}

/// Claims are provisioned in the project.
fn admit_claim(v: &Value, ns: &str, out: &mut Vec<Refusal>) {
    if let Some(spec) = v.get("spec") {
        out.extend(claim_spec(spec, "spec", ns));
    }
}

/// Volume sources an App's pods may use: storage the project already holds (claims), and
/// what lives in the pod or the namespace.
const VOLUME_SOURCES: [&str; 7] = [
    "emptyDir",
    "configMap",
    "secret",
    "persistentVolumeClaim",
    "projected",
    "downwardAPI",
    "ephemeral",
];

/// Capabilities the `restricted` Pod Security level lets a container add.
const SAFE_CAPABILITIES: [&str; 1] = ["NET_BIND_SERVICE"];

/// Taints that keep workloads off control-plane nodes.
const CONTROL_PLANE_TAINTS: [&str; 2] = [
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
];

/// The rules for a claim's spec, wherever it is written (a PVC, a StatefulSet's
/// `volumeClaimTemplates`, a generic ephemeral volume).
fn claim_spec(spec: &Value, at: &str, ns: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    if spec.get("volumeName").and_then(Value::as_str).is_some() {
        out.push((
            format!("{at}.volumeName"),
            "a claim may not bind a chosen PersistentVolume: that could reach another project's data".to_owned(),
            "let the claim be provisioned; mount datasets through `project.datasets`".to_owned(),
        ));
    }
    if spec
        .pointer("/dataSourceRef/namespace")
        .and_then(Value::as_str)
        .is_some_and(|n| n != ns)
    {
        out.push((
            format!("{at}.dataSourceRef.namespace"),
            "a claim may not be populated from another namespace".to_owned(),
            String::new(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::MemSource;

    const PLATFORM: &str = "apiVersion: plinth.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: acme\nspec:\n  clusters:\n    - {name: prod, kubernetesVersion: \"1.32\", provider: aws}\n";
    const PROJECT: &str = "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: ml\nspec:\n  owners: [ada@acme.example]\n";
    const APP: &str = "apiVersion: plinth.dev/v1alpha1\nkind: App\nmetadata:\n  name: web\nspec:\n  project: ml\n  template: t\n";

    fn build(template: &str) -> crate::Checked {
        let src = MemSource::new()
            .with("plinth.yaml", PLATFORM)
            .with("project.yaml", PROJECT)
            .with("apps/web.yaml", APP)
            .with("templates/t.yaml.j2", template);
        crate::check_source(&src, &crate::Options::default()).expect("loads")
    }

    fn identity() -> AppIdentity {
        AppIdentity {
            name: "web".into(),
            project: "ml".into(),
            template: "t".into(),
        }
    }

    fn refused(v: Value) -> Vec<String> {
        admit(&v, &identity(), "ml")
            .into_iter()
            .map(|(path, _, _)| path)
            .collect()
    }

    #[test]
    fn objects_carry_provenance_and_land_in_the_project() {
        let c = build(
            "# a comment\n{% set n = app.name %}\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ n }}\n  labels: {plinth.dev/project: other, team: a}\ndata: {a: \"1\"}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: {{ n }}\nspec:\n  selector: {{ selector_labels() | tojson }}\n  ports: [{port: 80}]\n",
        );
        assert!(
            !c.diagnostics.has_errors(),
            "{:?}",
            c.diagnostics.clone().into_sorted()
        );
        let lowered = c.lowered.expect("lowered");
        let out = &lowered.clusters["prod"];
        let cm = out
            .manifests
            .iter()
            .find(|m| m.key.kind == "ConfigMap" && m.key.name == "web")
            .expect("configmap");
        assert_eq!(cm.key.namespace.as_deref(), Some("ml"));
        let o = &cm.object;
        assert_eq!(
            o["metadata"]["annotations"]["plinth.dev/source"],
            "apps/web.yaml:1"
        );
        assert_eq!(
            o["metadata"]["annotations"][TEMPLATE_ANNOTATION],
            "templates/t.yaml.j2:3"
        );
        assert_eq!(o["metadata"]["labels"]["plinth.dev/project"], "ml");
        assert_eq!(o["metadata"]["labels"]["plinth.dev/app"], "web");
        assert_eq!(o["metadata"]["labels"]["team"], "a");
        assert_eq!(
            o["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "plinth"
        );
        let svc = out
            .manifests
            .iter()
            .find(|m| m.key.kind == "Service")
            .expect("service");
        assert_eq!(
            svc.object["metadata"]["annotations"][TEMPLATE_ANNOTATION],
            "templates/t.yaml.j2:10"
        );
    }

    #[test]
    fn an_empty_render_emits_nothing() {
        let c = build("# nothing yet\n");
        assert!(!c.diagnostics.has_errors());
        let lowered = c.lowered.expect("lowered");
        assert!(
            lowered.clusters["prod"]
                .manifests
                .iter()
                .all(|m| m.origin.kind != Kind::App)
        );
    }

    #[test]
    fn diagnostics_point_at_the_template_and_the_app() {
        let c =
            build("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  namespace: other\n");
        let ds = c.diagnostics.into_sorted();
        assert_eq!(ds.len(), 1, "{ds:?}");
        let d = &ds[0];
        assert_eq!(d.code, Code::TemplateOutput);
        let p = d.primary.as_ref().expect("primary");
        assert_eq!(
            (&*p.span.file, p.span.start.line, p.span.start.column),
            ("templates/t.yaml.j2", 5, 14)
        );
        assert_eq!(&*d.related[0].span.file, "apps/web.yaml");
    }

    #[test]
    fn only_namespaced_kinds_that_stay_in_the_project() {
        let obj = |api: &str, kind: &str| json!({"apiVersion": api, "kind": kind, "metadata": {"name": "x"}});
        for (api, kind) in [
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
            ("rbac.authorization.k8s.io/v1", "ClusterRole"),
            ("v1", "Namespace"),
            ("v1", "PersistentVolume"),
            (
                "admissionregistration.k8s.io/v1",
                "MutatingWebhookConfiguration",
            ),
            ("apps/v1", "DaemonSet"),
            ("discovery.k8s.io/v1", "EndpointSlice"),
            ("kueue.x-k8s.io/v1beta2", "LocalQueue"),
            ("v1", "ResourceQuota"),
        ] {
            assert_eq!(refused(obj(api, kind)), ["kind"], "{kind}");
        }
        for (api, kind) in ALLOWED {
            assert!(
                refused(obj(api, kind)).iter().all(|p| p != "kind"),
                "{kind}"
            );
        }
        let mut other = obj("v1", "ConfigMap");
        other["metadata"]["namespace"] = json!("kube-system");
        assert_eq!(refused(other), ["metadata.namespace"]);
        let mut same = obj("v1", "ConfigMap");
        same["metadata"]["namespace"] = json!("ml");
        assert!(refused(same).is_empty());
    }

    #[test]
    fn pods_stay_off_the_host() {
        let v = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
            "spec": {"template": {"spec": {
                "hostNetwork": true,
                "volumes": [{"name": "a", "emptyDir": {}}, {"name": "h", "hostPath": {"path": "/"}}],
                "containers": [{"name": "c", "image": "i:1", "securityContext": {"privileged": true}}]}}}});
        assert_eq!(
            refused(v),
            [
                "spec.template.spec.hostNetwork",
                "spec.template.spec.volumes[1].hostPath",
                "spec.template.spec.containers[0].securityContext.privileged"
            ]
        );
        let cron = json!({"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "x"},
            "spec": {"jobTemplate": {"spec": {"template": {"spec": {"hostPID": true, "containers": []}}}}}});
        assert_eq!(
            refused(cron),
            ["spec.jobTemplate.spec.template.spec.hostPID"]
        );
    }

    #[test]
    fn pods_use_only_the_projects_storage_nodes_and_rights() {
        let pod = |spec: Value| json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": spec});
        let c = |extra: Value| {
            let mut c = json!({"name": "c", "image": "i:1"});
            if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
                c.extend(extra.clone());
            }
            c
        };
        // What the shipped templates use is admitted.
        assert!(
            refused(pod(json!({
                "priorityClassName": "interactive",
                "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                "volumes": [
                    {"name": "a", "emptyDir": {}}, {"name": "b", "persistentVolumeClaim": {"claimName": "x"}},
                    {"name": "c", "configMap": {"name": "x"}}, {"name": "d", "projected": {"sources": []}},
                    {"name": "e", "ephemeral": {"volumeClaimTemplate": {"spec": {"accessModes": ["ReadWriteOnce"]}}}}],
                "containers": [c(json!({"ports": [{"containerPort": 80}],
                    "securityContext": {"capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}}}))]
            })))
            .is_empty()
        );
        assert_eq!(
            refused(pod(json!({
                "nodeName": "gpu-node-1",
                "priorityClassName": "system-node-critical",
                "tolerations": [{"operator": "Exists"}, {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"}],
                "volumes": [
                    {"name": "n", "nfs": {"server": "10.0.0.1", "path": "/exports/other-team"}},
                    {"name": "s", "csi": {"driver": "s3.csi.aws.com", "volumeAttributes": {"bucketName": "other"}}},
                    {"name": "e", "ephemeral": {"volumeClaimTemplate": {"spec": {"volumeName": "pv-of-another-team"}}}}],
                "initContainers": [c(json!({"securityContext": {"capabilities": {"add": ["SYS_ADMIN", "CAP_NET_RAW"]}}}))],
                "containers": [c(json!({"ports": [{"containerPort": 80, "hostPort": 80}],
                    "securityContext": {"procMount": "Unmasked", "seccompProfile": {"type": "Unconfined"}}}))]
            }))),
            [
                "spec.volumes[0].nfs",
                "spec.volumes[1].csi",
                "spec.volumes[2].ephemeral.volumeClaimTemplate.spec.volumeName",
                "spec.priorityClassName",
                "spec.nodeName",
                "spec.tolerations[0]",
                "spec.tolerations[1]",
                "spec.containers[0].ports[0].hostPort",
                "spec.containers[0].securityContext.procMount",
                "spec.containers[0].securityContext.seccompProfile.type",
                "spec.initContainers[0].securityContext.capabilities.add[0]",
                "spec.initContainers[0].securityContext.capabilities.add[1]",
            ]
        );
        let sts = json!({"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "x"},
            "spec": {"template": {"spec": {"containers": []}},
                "volumeClaimTemplates": [{"metadata": {"name": "ok"}, "spec": {}}, {"metadata": {"name": "bad"}, "spec": {"volumeName": "pv-1"}}]}});
        assert_eq!(
            refused(sts),
            ["spec.volumeClaimTemplates[1].spec.volumeName"]
        );
        let ing = json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "metadata": {"name": "x",
            "annotations": {"nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers x;", "nginx.org/server-snippets": "x", "nginx.ingress.kubernetes.io/proxy-body-size": "8m"}}});
        assert_eq!(
            refused(ing),
            [
                "metadata.annotations.nginx.ingress.kubernetes.io/configuration-snippet",
                "metadata.annotations.nginx.org/server-snippets"
            ]
        );
        let svc = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": {"type": "ExternalName", "externalName": "kubernetes.default.svc"}});
        assert_eq!(refused(svc), ["spec.type"]);
        let role = |rule: Value| json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "x"}, "rules": [rule]});
        assert_eq!(
            refused(role(
                json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]})
            )),
            ["rules[0]"]
        );
        assert_eq!(
            refused(role(
                json!({"apiGroups": ["apps"], "resources": ["*"], "verbs": ["get"]})
            )),
            ["rules[0]"]
        );
    }

    /// A StatefulSet's claim templates need no apiVersion or kind (the API server does not
    /// ask for them), and plinth's checks of the output accept them that way.
    #[test]
    fn statefulset_claim_templates_without_type_meta_are_valid() {
        let checked = build(
            "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db\nspec:\n  serviceName: db\n  selector:\n    matchLabels: {{ selector_labels() | tojson }}\n  template:\n    metadata:\n      labels: {{ selector_labels() | tojson }}\n    spec:\n      containers:\n        - {name: db, image: \"postgres:16\", volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]}\n  volumeClaimTemplates:\n    - metadata: {name: data}\n      spec:\n        accessModes: [ReadWriteOnce]\n        resources: {requests: {storage: 10Gi}}\n",
        );
        let errors: Vec<_> = checked
            .diagnostics
            .clone()
            .into_sorted()
            .into_iter()
            .filter(|d| d.is_error())
            .map(|d| d.message)
            .collect();
        assert!(errors.is_empty(), "{errors:#?}");
    }

    #[test]
    fn rbac_network_and_claims_stay_in_the_project() {
        let rb = |kind: &str, role: &str, subject: Value| {
            json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": "x"},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role}, "subjects": [subject]})
        };
        let sa = json!({"kind": "ServiceAccount", "name": "web"});
        assert!(refused(rb("Role", "reader", sa.clone())).is_empty());
        assert!(refused(rb("ClusterRole", "view", sa.clone())).is_empty());
        assert_eq!(refused(rb("ClusterRole", "admin", sa.clone())), ["roleRef"]);
        assert_eq!(refused(rb("ClusterRole", "cluster-admin", sa)), ["roleRef"]);
        assert_eq!(
            refused(rb(
                "Role",
                "reader",
                json!({"kind": "ServiceAccount", "name": "x", "namespace": "kube-system"})
            )),
            ["subjects[0]"]
        );
        assert_eq!(
            refused(rb(
                "Role",
                "reader",
                json!({"kind": "Group", "name": "system:authenticated", "apiGroup": "rbac.authorization.k8s.io"})
            )),
            ["subjects[0]"]
        );
        let role = |rule: Value| json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": "x"}, "rules": [rule]});
        assert!(
            refused(role(
                json!({"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]})
            ))
            .is_empty()
        );
        assert_eq!(
            refused(role(
                json!({"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["rolebindings"], "verbs": ["create"]})
            )),
            ["rules[0]"]
        );
        assert_eq!(
            refused(role(
                json!({"apiGroups": [""], "resources": ["serviceaccounts"], "verbs": ["impersonate"]})
            )),
            ["rules[0]"]
        );

        let np = |sel: Value| json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "x"}, "spec": {"podSelector": sel}});
        assert!(
            refused(np(
                json!({"matchLabels": {"app.kubernetes.io/instance": "web"}})
            ))
            .is_empty()
        );
        assert_eq!(refused(np(json!({}))), ["spec.podSelector"]);
        assert_eq!(
            refused(np(
                json!({"matchLabels": {"app.kubernetes.io/instance": "other"}})
            )),
            ["spec.podSelector"]
        );

        let svc = |spec: Value| json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": spec});
        assert!(refused(svc(json!({"type": "ClusterIP"}))).is_empty());
        assert_eq!(refused(svc(json!({"type": "LoadBalancer"}))), ["spec.type"]);
        assert_eq!(
            refused(svc(json!({"externalIPs": ["1.2.3.4"]}))),
            ["spec.externalIPs"]
        );

        let pvc = |spec: Value| json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "x"}, "spec": spec});
        assert_eq!(
            refused(pvc(json!({"volumeName": "dataset-a.other"}))),
            ["spec.volumeName"]
        );
        assert_eq!(
            refused(pvc(
                json!({"dataSourceRef": {"kind": "PersistentVolumeClaim", "name": "a", "namespace": "other"}})
            )),
            ["spec.dataSourceRef.namespace"]
        );
    }

    /// The golden build cases carry copies of the template library; they must not drift.
    #[test]
    fn golden_copies_of_the_template_library_match_it() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let library = root.join("examples/repo/templates");
        for case in [
            "app-jupyterlab",
            "app-streamlit",
            "app-mlflow",
            "app-label-studio",
        ] {
            let dir = root
                .join("tests/golden/build")
                .join(case)
                .join("repo/templates");
            let mut stack = vec![dir.clone()];
            let mut seen = 0;
            while let Some(d) = stack.pop() {
                for e in std::fs::read_dir(&d).expect("templates dir") {
                    let p = e.expect("entry").path();
                    if p.is_dir() {
                        stack.push(p);
                        continue;
                    }
                    let rel = p.strip_prefix(&dir).expect("inside");
                    let copy = std::fs::read_to_string(&p).expect("read copy");
                    let original =
                        std::fs::read_to_string(library.join(rel)).unwrap_or_else(|_| {
                            panic!("{case}: {} is not in the library", rel.display())
                        });
                    assert_eq!(
                        copy,
                        original,
                        "{case}: {} differs from examples/repo/templates",
                        rel.display()
                    );
                    seen += 1;
                }
            }
            assert!(seen >= 2, "{case}: no templates");
        }
    }
}
