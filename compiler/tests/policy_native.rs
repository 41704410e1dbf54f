//! The default library evaluated natively (`policy/native.rs`) gives what regorus gives for the
//! Rego text, rule by rule: on every spec document and compiled object of the example, the
//! golden cases and generated platforms (where it must decide every rule itself), and on those
//! inputs and their `data` mutated at random where the rules read (wrong types, missing
//! fields, other kinds), where it may leave a rule to regorus but never answer differently.

mod common;

use std::collections::BTreeMap;

use plinth::generate::Rng;
use plinth::policy::{Compared, LibraryCheck};
use serde_json::{Value, json};

/// A compiled platform's policy inputs (every spec document, every object) and its
/// `data.plinth`.
struct Corpus {
    name: String,
    inputs: Vec<Value>,
    view: Value,
}

fn corpora() -> Vec<Corpus> {
    let mut platforms: Vec<(String, BTreeMap<String, String>)> =
        vec![("example".to_owned(), common::example())];
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/build");
    let mut cases: Vec<String> = std::fs::read_dir(&root)
        .expect("tests/golden/build")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|c| root.join(c).join("repo").is_dir())
        .collect();
    cases.sort();
    for case in cases {
        let files = common::files_under(&format!("tests/golden/build/{case}/repo"));
        platforms.push((case, files));
    }
    for seed in [1, 2] {
        let files = plinth::generate::platform(30, seed);
        platforms.push((format!("generated-{seed}"), files.into_iter().collect()));
    }
    platforms
        .into_iter()
        .filter_map(|(name, files)| {
            let built = plinth::build_source(&common::source(&files), &plinth::Options::default())
                .expect("build");
            let lowered = built.lowered.as_ref()?;
            let checked = &built.checked;
            let view = plinth::policy::platform_data(&checked.specs, &checked.docs, Some(lowered));
            let mut inputs: Vec<Value> = checked.docs.iter().map(|d| d.root().to_json()).collect();
            inputs.extend(common::all_objects(lowered).into_iter().cloned());
            Some(Corpus { name, inputs, view })
        })
        .collect()
}

fn add(total: &mut Compared, c: Compared) {
    total.decided += c.decided;
    total.deferred += c.deferred;
    total.found += c.found;
}

#[test]
fn native_rules_decide_every_input_plinth_makes_as_regorus_does() {
    let corpora = corpora();
    assert!(corpora.len() >= 10, "{}", corpora.len());
    let mut total = Compared::default();
    for corpus in &corpora {
        let mut check = LibraryCheck::new(&corpus.view);
        for input in &corpus.inputs {
            let c = check
                .compare(input)
                .unwrap_or_else(|e| panic!("{}: {e}\ninput: {input}", corpus.name));
            assert_eq!(
                c.deferred, 0,
                "{}: a rule was left to regorus on an input plinth made: {input}",
                corpus.name
            );
            add(&mut total, c);
        }
    }
    eprintln!("made: {total:?}");
    // The corpus holds findings, so equal values are not all empty sets.
    assert!(total.found >= 20, "{total:?}");
    assert!(total.decided > 10_000, "{total:?}");
}

/// Values a mutation writes: every JSON type, and the strings the rules compare with.
fn value(rng: &mut Rng, depth: u32) -> Value {
    const STRINGS: &[&str] = &[
        "",
        "pii",
        "confidential",
        "public",
        "internal",
        "Delete",
        "Retain",
        "read-write",
        "read-only",
        "prod",
        "dev",
        "team-a",
        "nginx",
        "nginx:latest",
        "registry.example.org/m:1",
        "registry.example.org/",
        "ghcr.io/x/y@sha256:abc",
        "ghcr.io/x/y@digest",
        "localhost:5000/a",
        "host:5000/img",
        "1",
        "none",
        "2Gi",
        "Project",
        "Dataset",
        "Deployment",
        "InferenceService",
        "plinth.dev/v1alpha1",
        "s3.aws.upbound.io/v1beta1",
        "nvidia-a100",
        "é",
    ];
    match rng.range(0, if depth > 2 { 9 } else { 13 }) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(false),
        3 => json!(*rng.pick(&[0, 1, 2, -1, 3, 16, 17, 100, 1000])),
        4 => json!(*rng.pick(&[1.5, 2.0, -0.5, 1e20])),
        5..=9 => json!(*rng.pick(STRINGS)),
        10 => Value::Array(
            (0..rng.range(0, 3))
                .map(|_| value(rng, depth + 1))
                .collect(),
        ),
        11 => {
            let keys = [
                "url",
                "urlForGpu",
                "name",
                "image",
                "mode",
                "project",
                "clusters",
                "model",
                "gpu",
            ];
            Value::Object(
                (0..rng.range(0, 3))
                    .map(|_| ((*rng.pick(&keys)).to_owned(), value(rng, depth + 1)))
                    .collect(),
            )
        }
        _ => json!({"name": value(rng, depth + 1), "image": value(rng, depth + 1),
            "securityContext": {"privileged": value(rng, depth + 1), "runAsNonRoot": value(rng, depth + 1)},
            "resources": {"requests": {"cpu": value(rng, depth + 1), "nvidia.com/gpu": value(rng, depth + 1)},
                          "limits": {"nvidia.com/gpu": value(rng, depth + 1)}}}),
    }
}

/// Paths the rules read (`[n]` an element of a list), per kind of input.
fn hot_paths(kind: &str) -> &'static [&'static str] {
    match kind {
        "Dataset" => &[
            "spec.provision",
            "spec.provision.encryption.enabled",
            "spec.provision.encryption.kmsKey",
            "spec.provision.createBucket",
            "spec.provision.deletionPolicy",
            "spec.sensitivity",
            "spec.global",
            "spec.retention",
            "spec.access",
            "spec.access.[0]",
            "spec.access.[0].mode",
            "spec.access.[0].project",
            "spec.access.[0].clusters",
            "spec.access.[1].clusters.[0]",
        ],
        "Project" => &[
            "spec",
            "spec.network.isolation",
            "spec.owners",
            "spec.owners.[0]",
            "spec.images",
            "spec.images.[0]",
            "spec.images.[0].url",
            "spec.images.[0].urlForGpu",
            "metadata.annotations.plinth.dev/gpu-cap-approval",
        ],
        "Platform" => &[
            "spec.defaults.networkIsolation",
            "spec.images",
            "spec.images.[0].url",
        ],
        "ModelRollout" => &[
            "spec.project",
            "spec.traffic",
            "spec.model.image",
            "spec.model",
        ],
        "Bucket" | "Account" | "Container" => &[
            "spec.deletionPolicy",
            "metadata.annotations.plinth.dev/sensitivity",
        ],
        "InferenceService" => &[
            "spec.predictor",
            "spec.predictor.model",
            "spec.predictor.model.image",
            "spec.predictor.model.name",
            "spec.predictor.model.resources.requests.nvidia.com/gpu",
            "spec.predictor.model.resources.limits.nvidia.com/gpu",
            "spec.predictor.containers",
            "spec.predictor.containers.[0]",
            "spec.predictor.hostNetwork",
        ],
        _ => &[
            "spec.template.spec",
            "spec.template.spec.containers",
            "spec.template.spec.containers.[0]",
            "spec.template.spec.containers.[0].name",
            "spec.template.spec.containers.[0].image",
            "spec.template.spec.containers.[0].securityContext.privileged",
            "spec.template.spec.containers.[0].securityContext.allowPrivilegeEscalation",
            "spec.template.spec.containers.[0].securityContext.runAsNonRoot",
            "spec.template.spec.containers.[0].resources",
            "spec.template.spec.containers.[0].resources.requests",
            "spec.template.spec.containers.[0].resources.requests.cpu",
            "spec.template.spec.containers.[0].resources.requests.nvidia.com/gpu",
            "spec.template.spec.containers.[0].resources.limits",
            "spec.template.spec.containers.[0].resources.limits.nvidia.com/gpu",
            "spec.template.spec.initContainers",
            "spec.template.spec.securityContext.runAsNonRoot",
            "spec.template.spec.hostPID",
            "spec.jobTemplate.spec.template.spec.containers",
            "spec.containers",
        ],
    }
}

/// The segments of a hot path: keys, `[n]` for elements. Keys with dots (label and
/// resource names) are kept whole.
fn segments(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for part in path.split('.') {
        let joined = out.last().is_some_and(|l| {
            l.ends_with("plinth")
                || l.ends_with("nvidia")
                || l.ends_with("plinth.dev/gpu-cap-approval")
        });
        match out.last_mut() {
            Some(last) if joined && !part.starts_with('[') => {
                last.push('.');
                last.push_str(part);
            }
            _ => out.push(part.to_owned()),
        }
    }
    out
}

/// Remove what is at `path` in `doc`, if anything.
fn remove(doc: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut at = doc;
    for seg in parents {
        let next = match seg.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            Some(n) => at.get_mut(n.parse::<usize>().expect("index")),
            None => at.get_mut(seg.as_str()),
        };
        match next {
            Some(n) => at = n,
            None => return,
        }
    }
    match (at, last.strip_prefix('[').and_then(|s| s.strip_suffix(']'))) {
        (Value::Array(a), Some(n)) if n.parse::<usize>().expect("index") < a.len() => {
            a.remove(n.parse::<usize>().expect("index"));
        }
        (Value::Object(m), None) => {
            m.remove(last.as_str());
        }
        _ => {}
    }
}

/// Where a container sits in an input of `kind` (its first container, or a KServe model).
fn container_path(kind: &str) -> &'static str {
    match kind {
        "InferenceService" => "spec.predictor.model",
        "Pod" => "spec.containers.[0]",
        "CronJob" => "spec.jobTemplate.spec.template.spec.containers.[0]",
        _ => "spec.template.spec.containers.[0]",
    }
}

/// A GPU request and limit written together (equal, equal but typed otherwise, different,
/// or one missing): where `deny_gpu_requests_differ` decides.
fn gpu_pair(doc: &mut Value, kind: &str, rng: &mut Rng) {
    let c = container_path(kind);
    let pool = [
        json!(1),
        json!(2),
        json!(2.0),
        json!("1"),
        json!("2"),
        json!("none"),
        Value::Null,
    ];
    for part in ["requests", "limits"] {
        let path = segments(&format!("{c}.resources.{part}.nvidia.com/gpu"));
        match rng.pick(&pool) {
            Value::Null if rng.chance(70) => remove(doc, &path),
            v => set(doc, &path, v.clone()),
        }
    }
}

/// A PII dataset granted to a project on some clusters: where the PII rules decide.
fn pii_grant(doc: &mut Value, projects: &[String], rng: &mut Rng) {
    set(doc, &segments("spec.sensitivity"), json!("pii"));
    let clusters = [
        json!([]),
        json!(["prod"]),
        json!(["dev"]),
        json!(["prod", "dev", "lab"]),
        json!(null),
    ];
    let mut grant = json!({
        "project": if projects.is_empty() || rng.chance(20) { "missing" } else { rng.pick(projects) },
        "mode": rng.pick(&["read-only", "read-write"]),
    });
    if rng.chance(60) {
        grant["clusters"] = rng.pick(&clusters).clone();
    }
    let n = rng.range(0, 2) as usize;
    set(doc, &segments(&format!("spec.access.[{n}]")), grant);
}

/// Write `v` at `path` in `doc`, making the objects and lists on the way.
fn set(doc: &mut Value, path: &[String], v: Value) {
    let Some((first, rest)) = path.split_first() else {
        *doc = v;
        return;
    };
    let slot = match first.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(n) => {
            let n: usize = n.parse().expect("index");
            if !doc.is_array() {
                *doc = json!([]);
            }
            let a = doc.as_array_mut().expect("array");
            while a.len() <= n {
                a.push(json!({}));
            }
            &mut a[n]
        }
        None => {
            if !doc.is_object() {
                *doc = json!({});
            }
            doc.as_object_mut()
                .expect("object")
                .entry(first.clone())
                .or_insert(Value::Null)
        }
    };
    set(slot, rest, v);
}

/// A random node of `doc` replaced by a random value.
fn replace_any(doc: &mut Value, rng: &mut Rng) {
    let mut at = doc;
    loop {
        let children = match &*at {
            Value::Object(m) => m.len(),
            Value::Array(a) => a.len(),
            _ => 0,
        };
        if children == 0 || rng.chance(25) {
            break;
        }
        let i = rng.range(0, children as u64 - 1) as usize;
        at = match at {
            Value::Object(m) => m.values_mut().nth(i).expect("child"),
            Value::Array(a) => &mut a[i],
            _ => unreachable!(),
        };
    }
    *at = value(rng, 1);
}

fn mutate_input(input: &Value, projects: &[String], rng: &mut Rng) -> Value {
    let mut doc = input.clone();
    for _ in 0..rng.range(1, 4) {
        let kind = doc
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        match rng.range(0, 11) {
            0 => replace_any(&mut doc, rng),
            3 => {
                let path: &&str = rng.pick(hot_paths(&kind));
                remove(&mut doc, &segments(path));
            }
            4 if kind == "Dataset" => pii_grant(&mut doc, projects, rng),
            4 => gpu_pair(&mut doc, &kind, rng),
            1 => {
                let kinds = [
                    "Project",
                    "Dataset",
                    "Platform",
                    "ModelRollout",
                    "Bucket",
                    "Pod",
                    "CronJob",
                    "InferenceService",
                    "Deployment",
                    "Job",
                    "Service",
                ];
                set(&mut doc, &["kind".to_owned()], json!(*rng.pick(&kinds)));
            }
            2 => set(&mut doc, &segments("metadata.name"), value(rng, 1)),
            _ => {
                let path = *rng.pick(hot_paths(&kind));
                set(&mut doc, &segments(path), value(rng, 1));
            }
        }
    }
    doc
}

/// `data.plinth` with the parameters and some project's or cluster's resolved view changed.
fn mutate_view(view: &Value, rng: &mut Rng) -> Value {
    let mut view = view.clone();
    let projects: Vec<String> = view["resolved"]["projects"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let clusters: Vec<String> = view["resolved"]["clusters"]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    for _ in 0..rng.range(1, 3) {
        match rng.range(0, 6) {
            0 => view["parameters"]["maxGpusPerProject"] = value(rng, 2),
            1 => {
                view["parameters"]["gpuCapsByModel"] = if rng.chance(70) {
                    json!({"nvidia-a100": value(rng, 2), "nvidia-h100": *rng.pick(&[0, 1, 4])})
                } else {
                    value(rng, 1)
                }
            }
            2 => {
                view["parameters"]["allowedRegistries"] = if rng.chance(70) {
                    json!([*rng.pick(&["registry.example.org/", "ghcr.io/", "", "nginx"])])
                } else {
                    value(rng, 1)
                }
            }
            3 if !projects.is_empty() => {
                let p = rng.pick(&projects).clone();
                let field = *rng.pick(&["production", "gpuTotal", "allocations", "clusters"]);
                let v = match field {
                    "allocations" if rng.chance(60) => {
                        json!([{"model": "nvidia-a100", "gpu": value(rng, 2)}, {"model": "nvidia-a100", "gpu": 3}])
                    }
                    _ => value(rng, 1),
                };
                view["resolved"]["projects"][p.as_str()][field] = v;
            }
            4 if !clusters.is_empty() => {
                let c = rng.pick(&clusters).clone();
                view["resolved"]["clusters"][c.as_str()]["production"] = value(rng, 2);
            }
            _ => {}
        }
    }
    view
}

#[test]
fn native_rules_never_answer_otherwise_than_regorus_on_mutated_inputs_and_data() {
    let corpora = corpora();
    let mut rng = Rng::new(0x5eed);
    let mut total = Compared::default();
    for round in 0..120 {
        let corpus = &corpora[round % corpora.len()];
        let view = if round % 3 == 0 {
            corpus.view.clone()
        } else {
            mutate_view(&corpus.view, &mut rng)
        };
        let mut check = LibraryCheck::new(&view);
        let projects: Vec<String> = view["resolved"]["projects"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default();
        for _ in 0..40 {
            let input = mutate_input(rng.pick(&corpus.inputs), &projects, &mut rng);
            let c = check.compare(&input).unwrap_or_else(|e| {
                panic!(
                    "{} (round {round}): {e}\ninput: {input}\nparameters: {}",
                    corpus.name, view["parameters"]
                )
            });
            add(&mut total, c);
        }
    }
    eprintln!("mutated: {total:?}");
    // Mutations are mostly answered natively, and they make findings.
    assert!(
        total.decided > 4 * total.deferred,
        "natively decided too little: {total:?}"
    );
    assert!(total.found >= 100, "{total:?}");
}

/// Inputs at the edges of Rego's semantics, each compared (and, where named, with the
/// finding regorus makes of it).
#[test]
fn native_rules_agree_with_regorus_at_the_edges() {
    let corpus = corpora().into_iter().next().expect("the example");
    let mut check = LibraryCheck::new(&corpus.view);
    let deployment = |container: Value| {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
               "spec": {"template": {"spec": {"securityContext": {"runAsNonRoot": true}, "containers": [container]}}}})
    };
    let gpu = |request: Value, limit: Option<Value>| {
        let mut c = json!({"name": "c", "image": "r/i:1", "resources": {"requests": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": request}}});
        if let Some(l) = limit {
            c["resources"]["limits"] = json!({"nvidia.com/gpu": l});
        }
        deployment(c)
    };
    let cases: Vec<(Value, bool)> = vec![
        // Numbers equal across representations are equal in Rego.
        (gpu(json!(2), Some(json!(2.0))), false),
        (gpu(json!(2), Some(json!(2))), false),
        (gpu(json!("2"), Some(json!(2))), true),
        (gpu(json!("none"), None), false),
        (gpu(json!(1), None), true),
        // `null` is defined and not `false`.
        (
            json!({"apiVersion": "plinth.dev/v1alpha1", "kind": "Dataset", "metadata": {"name": "x"},
                "spec": {"provision": null, "sensitivity": "pii", "retention": null}}),
            false,
        ),
        (
            deployment(
                json!({"name": "c", "image": "r/i@digest", "resources": {"requests": {"cpu": "1", "memory": "1"}}}),
            ),
            false,
        ),
        (
            deployment(
                json!({"name": "c", "image": "r/i:latest", "resources": {"requests": {"cpu": null, "memory": false}}}),
            ),
            true,
        ),
        (
            deployment(json!({"image": "r/i:1", "securityContext": {"privileged": true}})),
            true,
        ),
    ];
    for (input, finds) in &cases {
        let c = check
            .compare(input)
            .unwrap_or_else(|e| panic!("{e}\ninput: {input}"));
        assert_eq!(c.deferred, 0, "{input}");
        assert_eq!(c.found > 0, *finds, "{input}: {c:?}");
    }
}

/// A whole evaluation (the native rules, the deferred ones handed to regorus, findings placed
/// and counted) reports exactly what regorus alone reports: on the example, and with the
/// Platform's parameters of the types the native rules decide and of those they leave to
/// regorus (a cap that is a string, a registry that is a number).
#[test]
fn evaluation_with_native_rules_reports_what_regorus_alone_reports() {
    let example = common::example();
    let with_parameters = |parameters: &str| {
        let mut files = example.clone();
        common::edit(
            &mut files,
            "plinth.yaml",
            "  policies:\n    defaultLibrary: true\n",
            &format!("  policies:\n    defaultLibrary: true\n    parameters: {parameters}\n"),
        );
        files
    };
    let cases = [
        ("as is", example.clone()),
        (
            "low caps",
            with_parameters(
                "{maxGpusPerProject: 1, gpuCapsByModel: {nvidia-a100: 0, nvidia-l4: 1}, allowedRegistries: [ghcr.io/]}",
            ),
        ),
        (
            "odd types",
            with_parameters(
                "{maxGpusPerProject: \"1\", gpuCapsByModel: [2], allowedRegistries: [ghcr.io/, 3]}",
            ),
        ),
        (
            "generated",
            plinth::generate::platform(30, 3).into_iter().collect(),
        ),
    ];
    let library = plinth::policy::default_library();
    let opts = plinth::policy::PolicyOptions {
        namespaces: Vec::new(),
        all_namespaces: true,
        ..Default::default()
    };
    let mut found = BTreeMap::new();
    for (name, files) in cases {
        let built = plinth::build_source(&common::source(&files), &plinth::Options::default())
            .expect("build");
        let lowered = built
            .lowered
            .as_ref()
            .unwrap_or_else(|| panic!("{name} builds"));
        let checked = &built.checked;
        let (specs, docs) = (&checked.specs, &checked.docs);
        let show = |d: plinth::diag::Diagnostics| -> Vec<String> {
            d.into_sorted()
                .into_iter()
                .map(|d| format!("{d:?}"))
                .collect()
        };
        let native =
            show(plinth::policy::evaluate(&library, &opts, specs, docs, Some(lowered), None).0);
        let regorus = show(plinth::policy::evaluate_by_regorus(
            &library,
            &opts,
            specs,
            docs,
            Some(lowered),
        ));
        assert_eq!(native, regorus, "{name}");
        found.insert(name, native.len());
    }
    // The low caps and the odd types make findings of their own.
    assert!(found["low caps"] > found["as is"], "{found:?}");
    assert!(found["odd types"] > found["as is"], "{found:?}");
}
