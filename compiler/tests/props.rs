//! Property tests of the front end: random valid specs round-trip through the typed model, and
//! random input never panics.

use std::collections::BTreeMap;

use plinth::load::MemSource;
use plinth::model::dataset::{
    Access, AccessMode, DatasetSource, GitSource, NfsSource, S3Source, Sensitivity,
};
use plinth::model::gpu::{Allocation, GpuPool};
use plinth::model::project::{Member, ProjectQuota, Role};
use plinth::model::{DatasetSpec, GpuQuotaSpec, InstanceType, ProjectSpec, Quantity};
use plinth::parse::YamlLimits;
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9-]{0,20}[a-z0-9]"
}

fn quantity() -> impl Strategy<Value = Quantity> {
    (
        1u32..5000,
        prop::sample::select(vec!["", "m", "k", "Mi", "Gi", "Ti"]),
    )
        .prop_map(|(n, s)| Quantity(format!("{n}{s}")))
}

/// Free text, including characters YAML treats specially.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[ -~]{0,30}",
        Just("yes".to_owned()),
        Just("null".to_owned()),
        Just("0x1F".to_owned()),
        Just("- a: b".to_owned()),
        Just("é ü 雪 \u{1F600}".to_owned()),
        Just("line\nbreak\ttab".to_owned()),
    ]
}

fn project() -> impl Strategy<Value = ProjectSpec> {
    (
        prop::option::of(text()),
        prop::collection::vec("[a-z]{1,8}@example\\.org", 0..3),
        prop::collection::vec(
            (
                prop::bool::ANY,
                name(),
                prop::sample::select(vec![Role::Admin, Role::Edit, Role::View]),
            ),
            0..4,
        ),
        prop::option::of((
            prop::option::of(quantity()),
            prop::option::of(quantity()),
            prop::option::of(1u32..500),
        )),
        prop::collection::vec(name(), 0..3),
    )
        .prop_map(|(display_name, owners, members, quota, clusters)| {
            let mut p: ProjectSpec = serde_json::from_str("{}").expect("defaults");
            p.display_name = display_name;
            p.owners = owners;
            p.members = members
                .into_iter()
                .map(|(user, n, role)| Member {
                    user: user.then(|| n.clone()),
                    group: (!user).then_some(n),
                    role,
                })
                .collect();
            p.quota = quota.map(|(cpu, memory, pods)| ProjectQuota {
                cpu,
                memory,
                storage: None,
                pods,
            });
            p.clusters = clusters;
            p
        })
}

fn dataset() -> impl Strategy<Value = DatasetSpec> {
    let source = prop_oneof![
        ("[a-z0-9][a-z0-9.-]{1,30}[a-z0-9]", prop::option::of(text())).prop_map(
            |(bucket, prefix)| DatasetSource {
                s3: Some(S3Source {
                    bucket,
                    prefix,
                    region: None,
                    endpoint: None
                }),
                ..DatasetSource::default()
            }
        ),
        (name(), "/[a-z/]{1,20}").prop_map(|(server, path)| DatasetSource {
            nfs: Some(NfsSource { server, path }),
            ..DatasetSource::default()
        }),
        ("https://[a-z]{3,10}\\.org/[a-z]{1,8}\\.git", "[0-9a-f]{40}").prop_map(
            |(url, git_ref)| DatasetSource {
                git: Some(GitSource {
                    url,
                    git_ref,
                    secret_ref: None
                }),
                ..DatasetSource::default()
            }
        ),
    ];
    (
        source,
        prop::option::of("[A-Za-z0-9._]{1,32}"),
        prop::sample::select(vec![
            Sensitivity::Public,
            Sensitivity::Internal,
            Sensitivity::Confidential,
            Sensitivity::Pii,
        ]),
        prop::collection::vec((name(), prop::bool::ANY), 0..4),
        prop::bool::ANY,
    )
        .prop_map(|(source, version, sensitivity, access, global)| {
            let mut d: DatasetSpec =
                serde_json::from_value(serde_json::json!({"source": {"env": {"variables": {}}}}))
                    .expect("defaults");
            d.source = source;
            d.version = version;
            d.sensitivity = sensitivity;
            d.access = access
                .into_iter()
                .map(|(project, rw)| Access {
                    project,
                    mode: if rw {
                        AccessMode::ReadWrite
                    } else {
                        AccessMode::ReadOnly
                    },
                    clusters: Vec::new(),
                })
                .collect();
            d.global = global;
            d
        })
}

fn gpu_quota() -> impl Strategy<Value = GpuQuotaSpec> {
    (
        1u32..512,
        1u32..16,
        prop::collection::vec((name(), 0u32..16, quantity(), quantity()), 0..4),
        prop::collection::vec((name(), 0u32..64, prop::option::of(0u32..8)), 0..5),
        prop::option::of(name()),
        prop::collection::btree_map("[a-z./-]{1,20}", "[a-z0-9-]{0,10}", 0..3),
    )
        .prop_map(|(capacity, per_node, its, allocs, cohort, node_labels)| {
            let mut q: GpuQuotaSpec = serde_json::from_value(
                serde_json::json!({"pool": {"capacity": 1, "gpusPerNode": 1}}),
            )
            .expect("defaults");
            q.pool = GpuPool {
                node_labels,
                capacity,
                gpus_per_node: per_node,
                ..q.pool
            };
            q.instance_types = its
                .into_iter()
                .map(|(name, gpu, cpu, memory)| InstanceType {
                    name,
                    display_name: None,
                    gpu,
                    cpu,
                    memory,
                    cpu_limit: None,
                    memory_limit: None,
                    node_selector: BTreeMap::new(),
                    tolerations: Vec::new(),
                })
                .collect();
            q.allocations = allocs
                .into_iter()
                .map(|(project, gpu, borrowing_limit)| Allocation {
                    project,
                    gpu,
                    borrowing_limit,
                    lending_limit: None,
                    cpu: None,
                    memory: None,
                })
                .collect();
            q.cohort = cohort;
            q
        })
}

/// Serialise a document as YAML: JSON is YAML 1.2, and so is the indented block form the
/// emitter produces. Both must read back to the same value.
fn document(kind: &str, name: &str, spec: &impl serde::Serialize, block: bool) -> String {
    let v = serde_json::json!({
        "apiVersion": "plinth.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": name},
        "spec": spec,
    });
    if block {
        to_block_yaml(&v, 0)
    } else {
        serde_json::to_string_pretty(&v).expect("json")
    }
}

/// A minimal block-style YAML writer for the test (strings always double-quoted).
fn to_block_yaml(v: &serde_json::Value, indent: usize) -> String {
    use serde_json::Value;
    let pad = " ".repeat(indent);
    let scalar = |v: &Value| match v {
        Value::String(s) => serde_json::to_string(s).expect("string"),
        other => other.to_string(),
    };
    let mut out = String::new();
    match v {
        Value::Object(m) => {
            for (k, val) in m {
                let key = serde_json::to_string(k).expect("key");
                match val {
                    Value::Object(inner) if !inner.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n{}", to_block_yaml(val, indent + 2)))
                    }
                    Value::Array(items) if !items.is_empty() => {
                        out.push_str(&format!("{pad}{key}:\n{}", to_block_yaml(val, indent + 2)))
                    }
                    Value::Object(_) => out.push_str(&format!("{pad}{key}: {{}}\n")),
                    Value::Array(_) => out.push_str(&format!("{pad}{key}: []\n")),
                    other => out.push_str(&format!("{pad}{key}: {}\n", scalar(other))),
                }
            }
        }
        Value::Array(items) => {
            for item in items {
                let inner = to_block_yaml(item, indent + 2);
                match item {
                    Value::Object(m) if !m.is_empty() => out.push_str(&format!(
                        "{pad}- {}\n",
                        &inner.trim_start()[..inner.trim_start().len() - 1]
                    )),
                    Value::Array(a) if !a.is_empty() => out.push_str(&format!("{pad}-\n{inner}")),
                    Value::Object(_) => out.push_str(&format!("{pad}- {{}}\n")),
                    Value::Array(_) => out.push_str(&format!("{pad}- []\n")),
                    other => out.push_str(&format!("{pad}- {}\n", scalar(other))),
                }
            }
        }
        other => out.push_str(&format!("{pad}{}\n", scalar(other))),
    }
    out
}

fn resolve_one(text: &str) -> plinth::specs::Specs {
    let src = MemSource::new().with("spec.yaml", text.as_bytes().to_vec());
    let (snapshot, diags) =
        plinth::load::load(&src, &plinth::load::Limits::default()).expect("loads");
    assert!(diags.is_empty(), "{diags:?}");
    let (docs, diags) = plinth::parse::parse(&snapshot, YamlLimits::default());
    assert!(diags.is_empty(), "parse: {diags:?}\n{text}");
    let (specs, diags) = plinth::resolve::resolve(&docs);
    let bad: Vec<_> = diags
        .into_iter()
        .filter(|d| d.code != plinth::diag::Code::PlatformCount)
        .collect();
    assert!(bad.is_empty(), "resolve: {bad:?}\n{text}");
    specs
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn projects_round_trip(spec in project(), n in name(), block in prop::bool::ANY) {
        let specs = resolve_one(&document("Project", &n, &spec, block));
        prop_assert_eq!(&*specs.projects[&n].spec, &spec);
    }

    #[test]
    fn datasets_round_trip(spec in dataset(), n in name(), block in prop::bool::ANY) {
        let specs = resolve_one(&document("Dataset", &n, &spec, block));
        prop_assert_eq!(&*specs.datasets[&n].spec, &spec);
    }

    #[test]
    fn gpu_quotas_round_trip(spec in gpu_quota(), n in name(), block in prop::bool::ANY) {
        let specs = resolve_one(&document("GpuQuota", &n, &spec, block));
        prop_assert_eq!(&*specs.gpu_quotas[&n].spec, &spec);
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        front_end(&bytes);
    }

    #[test]
    fn random_yaml_tokens_never_panic(tokens in prop::collection::vec(prop::sample::select(vec![
        "a:", "b: ", "- ", "\n", "  ", "[", "]", "{", "}", ",", "&x ", "*x", "!!str ", "!t ", "'", "\"", "\t",
        "---\n", "...\n", "? ", "|\n", ">-\n", "# c\n", "kind: Project\n", "apiVersion: plinth.dev/v1alpha1\n",
        "metadata:\n  name: x\n", "spec:\n", "1", "1.5", "~", "\u{FEFF}", "\r\n", "é", "%YAML 1.2\n", "<<: *x\n",
    ]), 0..60)) {
        front_end(tokens.concat().as_bytes());
    }
}

/// Load, parse, resolve and check arbitrary bytes; only diagnostics may come out.
fn front_end(bytes: &[u8]) {
    let src = MemSource::new().with("x.yaml", bytes.to_vec());
    let checked =
        plinth::check_source(&src, &plinth::Options::default()).expect("memory source loads");
    for d in checked.diagnostics.iter() {
        assert!(!d.message.is_empty());
        if let Some(l) = &d.primary {
            assert!(l.span.start.line >= 1 && l.span.start.column >= 1, "{d:?}");
        }
    }
}
