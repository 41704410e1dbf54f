//! Custom resources plinth emits against the upstream CRDs (Kueue, KServe, Argo Rollouts,
//! Crossplane providers), not against plinth's own schemas in `schemas/crds/`.
//!
//! The upstream schemas are test data outside the project: `shared/crds/` next to the
//! workspace (`<group>_<version>_<Kind>.json`, the `openAPIV3Schema` of one served version as
//! draft-07 JSON Schema; see its README). They are read in place, never copied.
//!
//! Strict mode: CRD schemas do not forbid unknown fields (the API server prunes them
//! silently), so a misspelt field would pass. Before compiling, every object schema with
//! `properties` and without `x-kubernetes-preserve-unknown-fields: true` gets
//! `additionalProperties: false` (unless it sets `additionalProperties` itself). Branches of
//! `allOf`/`anyOf`/`oneOf`/`not` are left alone: in a structural schema they only restate
//! fields declared outside them, and closing them would refuse the siblings they omit.
//!
//! Besides the schema, every emitted apiVersion must be served upstream and not deprecated
//! (the README's table; the deprecated versions are encoded below and cross-checked against
//! it), and the object's scope (namespaced or not) must match the CRD's.
//!
//! Inputs: the example platform (`examples/repo`) and every golden build case with its own
//! `repo/` (`tests/golden/build/`), so each kind and strategy is covered.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use plinth::load::DirSource;
use plinth::lower::{Lowered, ObjectKey};
use serde_json::{Value, json};

const CRD_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/crds");
const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

/// Served but deprecated versions, from the "Files" table of `shared/crds/README.md`
/// ("served, deprecated"). Emitting any of them is a failure.
const DEPRECATED: &[(&str, &str)] = &[
    ("kueue.x-k8s.io/v1beta1", "ResourceFlavor"),
    ("kueue.x-k8s.io/v1beta1", "ClusterQueue"),
    ("kueue.x-k8s.io/v1beta1", "LocalQueue"),
    ("kueue.x-k8s.io/v1beta1", "WorkloadPriorityClass"),
    ("kueue.x-k8s.io/v1beta1", "Cohort"),
    ("s3.aws.upbound.io/v1beta1", "Bucket"),
    ("s3.aws.upbound.io/v1beta1", "BucketVersioning"),
    (
        "s3.aws.upbound.io/v1beta1",
        "BucketServerSideEncryptionConfiguration",
    ),
    ("storage.azure.upbound.io/v1beta1", "Account"),
];

/// Kinds plinth emits whose upstream CRD is not among the shared schemas yet: apiVersion, kind,
/// whether namespaced, and the upstream file (served storage version) the emitted objects were
/// validated against by hand, strict mode included. Only the scope is checked here; once the
/// schema is added to `shared/crds/`, [`not_in_shared_are_really_missing`] fails and the entry
/// must go, so the full check applies.
const NOT_IN_SHARED: &[(&str, &str, bool, &str)] = &[(
    "cloudplatform.gcp.upbound.io/v1beta2",
    "ServiceAccountIAMMember",
    false,
    "crossplane-contrib/provider-upjet-gcp@8da2207a5a21 package/crds/cloudplatform.gcp.upbound.io_serviceaccountiammembers.yaml",
)];

fn not_in_shared(api_version: &str, kind: &str) -> Option<bool> {
    NOT_IN_SHARED
        .iter()
        .find(|(a, k, _, _)| *a == api_version && *k == kind)
        .map(|(_, _, namespaced, _)| *namespaced)
}

/// Kinds plinth emits for which `shared/crds/` holds no upstream schema (Istio ships its
/// CRDs with schemas generated from protobuf, not part of the test data). They are checked
/// against plinth's own schema (`schemas/crds/`, written from Istio's API reference) instead,
/// and reported as such; the list is kept short on purpose.
const NO_UPSTREAM_SCHEMA: &[(&str, &str)] = &[("networking.istio.io/v1", "VirtualService")];

/// plinth's own schema of a kind (`schemas/crds/`), for [`NO_UPSTREAM_SCHEMA`].
fn own_validator(api_version: &str, kind: &str) -> jsonschema::Validator {
    let path = Path::new(WORKSPACE)
        .join("schemas/crds")
        .join(schema_file(api_version, kind));
    let text = std::fs::read_to_string(&path).expect("own schema");
    let schema: Value = serde_json::from_str(&text).expect("json");
    jsonschema::validator_for(&schema).expect("compiles")
}

/// API groups of the Kubernetes API itself (checked by `builtin_conformance.rs`).
const BUILTIN_GROUPS: &[&str] = &[
    "",
    "apps",
    "batch",
    "autoscaling",
    "policy",
    "rbac.authorization.k8s.io",
    "networking.k8s.io",
    "admissionregistration.k8s.io",
    "apiextensions.k8s.io",
    "storage.k8s.io",
    "scheduling.k8s.io",
    "coordination.k8s.io",
    "discovery.k8s.io",
];

fn is_builtin(key: &ObjectKey) -> bool {
    BUILTIN_GROUPS.contains(&key.group())
}

fn crd_dir() -> PathBuf {
    let d = PathBuf::from(CRD_DIR);
    assert!(
        d.join("README.md").is_file(),
        "the upstream CRD schemas are missing: expected them in `{}` (shared test data next to the workspace)",
        d.display()
    );
    d
}

fn schema_file(api_version: &str, kind: &str) -> String {
    format!("{}_{kind}.json", api_version.replace('/', "_"))
}

/// One row of the README's file table.
#[derive(Debug, Clone)]
struct Row {
    namespaced: bool,
    deprecated: bool,
}

/// The README's "Files" table by (apiVersion, kind).
fn readme_table() -> BTreeMap<(String, String), Row> {
    let text = std::fs::read_to_string(crd_dir().join("README.md")).expect("README");
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let cells: Vec<&str> = line
            .split('|')
            .map(|c| c.trim().trim_matches('`'))
            .collect();
        // | file | apiVersion | kind | scope | this version | ...
        if cells.len() < 6 || !cells[1].ends_with(".json") {
            continue;
        }
        let (api_version, kind, scope, status) = (cells[2], cells[3], cells[4], cells[5]);
        assert_eq!(
            cells[1],
            schema_file(api_version, kind),
            "README row names a file that does not follow `<group>_<version>_<Kind>.json`"
        );
        rows.insert(
            (api_version.to_owned(), kind.to_owned()),
            Row {
                namespaced: match scope {
                    "Namespaced" => true,
                    "Cluster" => false,
                    other => panic!("README: unknown scope `{other}` for {api_version} {kind}"),
                },
                deprecated: status.contains("deprecated"),
            },
        );
    }
    rows
}

/// Close every structural object schema: see the module documentation.
fn strictify(schema: &mut Value) {
    let Value::Object(m) = schema else { return };
    let preserve = m.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    if m.get("properties").is_some_and(Value::is_object)
        && !preserve
        && !m.contains_key("additionalProperties")
    {
        m.insert("additionalProperties".to_owned(), Value::Bool(false));
    }
    for key in ["properties", "patternProperties", "definitions", "$defs"] {
        if let Some(Value::Object(children)) = m.get_mut(key) {
            children.values_mut().for_each(strictify);
        }
    }
    for key in ["additionalProperties", "items", "additionalItems"] {
        match m.get_mut(key) {
            Some(Value::Array(a)) => a.iter_mut().for_each(strictify),
            Some(v @ Value::Object(_)) => strictify(v),
            _ => {}
        }
    }
}

/// Compiled strict validators, by schema file; `None` when no upstream schema exists.
struct Validators {
    dir: PathBuf,
    cache: BTreeMap<String, Option<jsonschema::Validator>>,
}

impl Validators {
    fn new() -> Validators {
        Validators {
            dir: crd_dir(),
            cache: BTreeMap::new(),
        }
    }

    fn get(&mut self, api_version: &str, kind: &str) -> Option<&jsonschema::Validator> {
        let file = schema_file(api_version, kind);
        let dir = self.dir.clone();
        self.cache
            .entry(file.clone())
            .or_insert_with(|| {
                let path = dir.join(&file);
                let text = std::fs::read_to_string(&path).ok()?;
                let mut schema: Value =
                    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{file}: not JSON: {e}"));
                strictify(&mut schema);
                Some(
                    jsonschema::draft7::new(&schema)
                        .unwrap_or_else(|e| panic!("{file}: does not compile: {e}")),
                )
            })
            .as_ref()
    }
}

/// Every problem of one build's custom resources, and the kinds seen.
fn check_lowered(
    label: &str,
    lowered: &Lowered,
    table: &BTreeMap<(String, String), Row>,
    validators: &mut Validators,
    seen: &mut BTreeSet<(String, String)>,
) -> Vec<String> {
    let mut violations = Vec::new();
    for (cluster, out) in &lowered.clusters {
        for m in &out.manifests {
            let key = &m.key;
            if is_builtin(key) {
                continue;
            }
            let at = format!(
                "{label}: {cluster}: {key} ({} {})",
                key.api_version, key.kind
            );
            let id = (key.api_version.clone(), key.kind.clone());
            seen.insert(id.clone());
            if NO_UPSTREAM_SCHEMA.contains(&(key.api_version.as_str(), key.kind.as_str())) {
                assert!(
                    !table.contains_key(&id),
                    "{id:?} has an upstream schema now"
                );
                let v = own_validator(&key.api_version, &key.kind);
                for e in v.iter_errors(&m.object) {
                    violations.push(format!(
                        "{at}: at `{}` (plinth's schema): {e}",
                        e.instance_path()
                    ));
                }
                continue;
            }
            let Some(row) = table.get(&id) else {
                if let Some(namespaced) = not_in_shared(&key.api_version, &key.kind) {
                    if namespaced != key.namespace.is_some() {
                        violations.push(format!("{at}: wrong scope"));
                    }
                    continue;
                }
                violations.push(format!(
                    "{at}: no upstream CRD serves this apiVersion and kind (no `{}` in shared/crds)",
                    schema_file(&key.api_version, &key.kind)
                ));
                continue;
            };
            if row.deprecated || DEPRECATED.contains(&(key.api_version.as_str(), key.kind.as_str()))
            {
                violations.push(format!("{at}: the version is deprecated upstream"));
            }
            if row.namespaced != key.namespace.is_some() {
                violations.push(format!(
                    "{at}: the CRD is {} but the object {}",
                    if row.namespaced {
                        "namespaced"
                    } else {
                        "cluster-scoped"
                    },
                    if key.namespace.is_some() {
                        "has a namespace"
                    } else {
                        "has none"
                    }
                ));
            }
            let Some(v) = validators.get(&key.api_version, &key.kind) else {
                violations.push(format!("{at}: schema file missing"));
                continue;
            };
            for e in v.iter_errors(&m.object) {
                violations.push(format!("{at}: at `{}`: {e}", e.instance_path()));
            }
        }
    }
    violations
}

fn build(repo: &Path) -> Lowered {
    let built = plinth::build_source(&DirSource::new(repo), &plinth::Options::default())
        .unwrap_or_else(|e| panic!("{}: cannot load: {e}", repo.display()));
    match built.lowered {
        Some(l) => l,
        None => panic!(
            "{}: the build stopped: {:#?}",
            repo.display(),
            built.checked.diagnostics.into_sorted()
        ),
    }
}

#[test]
fn readme_deprecations_match_the_encoded_list() {
    let table = readme_table();
    assert!(
        table.len() >= 40,
        "README table not read: {} rows",
        table.len()
    );
    let from_readme: BTreeSet<(String, String)> = table
        .iter()
        .filter(|(_, r)| r.deprecated)
        .map(|(k, _)| k.clone())
        .collect();
    let encoded: BTreeSet<(String, String)> = DEPRECATED
        .iter()
        .map(|(a, k)| ((*a).to_owned(), (*k).to_owned()))
        .collect();
    assert_eq!(
        from_readme, encoded,
        "DEPRECATED is out of step with the README"
    );
    // Every schema file is in the table, and the other way round.
    let files: BTreeSet<String> = std::fs::read_dir(crd_dir())
        .expect("crd dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    let listed: BTreeSet<String> = table.keys().map(|(a, k)| schema_file(a, k)).collect();
    assert_eq!(files, listed, "README table and schema files differ");
}

#[test]
fn every_kind_plinth_registers_is_served_and_current() {
    let table = readme_table();
    let mut problems = Vec::new();
    for (api_version, kind, namespaced) in plinth::lower::crd::kinds() {
        if NO_UPSTREAM_SCHEMA.contains(&(api_version, kind)) {
            continue;
        }
        match table.get(&(api_version.to_owned(), kind.to_owned())) {
            None if not_in_shared(api_version, kind) == Some(namespaced) => {}
            None => problems.push(format!("{api_version} {kind}: not served upstream")),
            Some(row) => {
                if row.deprecated {
                    problems.push(format!("{api_version} {kind}: deprecated upstream"));
                }
                if row.namespaced != namespaced {
                    problems.push(format!(
                        "{api_version} {kind}: plinth says namespaced={namespaced}, the CRD says {}",
                        row.namespaced
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn not_in_shared_are_really_missing() {
    let table = readme_table();
    for (api_version, kind, _, upstream) in NOT_IN_SHARED {
        assert!(
            !table.contains_key(&((*api_version).to_owned(), (*kind).to_owned()))
                && !crd_dir().join(schema_file(api_version, kind)).exists(),
            "{api_version} {kind} is in shared/crds now (from {upstream}): remove it from NOT_IN_SHARED"
        );
    }
}

#[test]
fn emitted_custom_resources_match_the_upstream_crds() {
    let table = readme_table();
    let mut validators = Validators::new();
    let mut seen = BTreeSet::new();
    let mut violations = Vec::new();

    let example = Path::new(WORKSPACE).join("examples/repo");
    violations.extend(check_lowered(
        "examples/repo",
        &build(&example),
        &table,
        &mut validators,
        &mut seen,
    ));

    let golden = Path::new(WORKSPACE).join("tests/golden/build");
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&golden)
        .expect("tests/golden/build")
        .map(|e| e.expect("entry").path().join("repo"))
        .filter(|p| p.is_dir())
        .collect();
    cases.sort();
    for repo in &cases {
        let label = repo
            .parent()
            .and_then(|p| p.file_name())
            .map(|n| format!("golden/{}", n.to_string_lossy()))
            .unwrap_or_default();
        violations.extend(check_lowered(
            &label,
            &build(repo),
            &table,
            &mut validators,
            &mut seen,
        ));
    }

    // The kinds without an upstream schema were emitted and checked against plinth's.
    for (api_version, kind) in NO_UPSTREAM_SCHEMA {
        assert!(
            seen.contains(&((*api_version).to_owned(), (*kind).to_owned())),
            "no {kind} was emitted"
        );
    }
    // Not vacuous: the Kueue kinds of the GPU pools are there at least.
    for kind in [
        "ResourceFlavor",
        "ClusterQueue",
        "LocalQueue",
        "Cohort",
        "WorkloadPriorityClass",
    ] {
        assert!(
            seen.contains(&("kueue.x-k8s.io/v1beta2".to_owned(), kind.to_owned())),
            "no Kueue {kind} was emitted; kinds seen: {seen:?}"
        );
    }
    assert!(
        violations.is_empty(),
        "{} violation(s) of the upstream CRDs:\n{}",
        violations.len(),
        violations.join("\n")
    );
}

#[test]
fn strict_mode_refuses_unknown_fields() {
    let mut validators = Validators::new();
    let v = validators
        .get("kueue.x-k8s.io/v1beta2", "LocalQueue")
        .expect("LocalQueue schema");
    let ok = json!({
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "LocalQueue",
        "metadata": {"name": "a100", "namespace": "er"},
        "spec": {"clusterQueue": "er-a100"}
    });
    assert!(v.is_valid(&ok), "a plain LocalQueue must pass");
    let mut bogus = ok.clone();
    bogus["spec"]["bogus"] = json!(true);
    let errors: Vec<String> = v
        .iter_errors(&bogus)
        .map(|e| format!("{} {e}", e.instance_path()))
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.starts_with("/spec ") && e.contains("bogus")),
        "spec.bogus must be refused: {errors:?}"
    );
    // The upstream schema alone would have accepted it: the rewrite is what catches it.
    let text = std::fs::read_to_string(crd_dir().join("kueue.x-k8s.io_v1beta2_LocalQueue.json"))
        .expect("schema");
    let lenient = jsonschema::draft7::new(&serde_json::from_str::<Value>(&text).expect("json"))
        .expect("compiles");
    assert!(lenient.is_valid(&bogus));
    // A wrong apiVersion and a top-level unknown field are refused too.
    let mut wrong = ok.clone();
    wrong["apiVersion"] = json!("kueue.x-k8s.io/v1beta1");
    assert!(!v.is_valid(&wrong));
    let mut top = ok.clone();
    top["spce"] = json!({});
    assert!(!v.is_valid(&top));

    // Deep inside a list: a misspelt quota field of a ClusterQueue.
    let cq = validators
        .get("kueue.x-k8s.io/v1beta2", "ClusterQueue")
        .expect("ClusterQueue schema");
    let mut q = json!({
        "apiVersion": "kueue.x-k8s.io/v1beta2", "kind": "ClusterQueue",
        "metadata": {"name": "er-a100"},
        "spec": {"resourceGroups": [{"coveredResources": ["nvidia.com/gpu"], "flavors": [
            {"name": "a100", "resources": [{"name": "nvidia.com/gpu", "nominalQuota": "8"}]}
        ]}]}
    });
    assert!(
        cq.is_valid(&q),
        "{:?}",
        cq.iter_errors(&q)
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    );
    q["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuta"] = json!("8");
    let paths: Vec<String> = cq
        .iter_errors(&q)
        .map(|e| e.instance_path().to_string())
        .collect();
    assert!(
        paths.contains(&"/spec/resourceGroups/0/flavors/0/resources/0".to_owned()),
        "{paths:?}"
    );
}

#[test]
fn strict_mode_keeps_preserved_and_junctor_schemas_open() {
    let mut s = json!({
        "type": "object",
        "properties": {
            "open": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {"a": {}}},
            "map": {"type": "object", "additionalProperties": {"type": "string"}},
            "closed": {"type": "object", "properties": {"a": {"type": "string"}},
                       "anyOf": [{"properties": {"a": {"minLength": 1}}}]},
            "list": {"type": "array", "items": {"type": "object", "properties": {"x": {}}}}
        }
    });
    strictify(&mut s);
    let v = jsonschema::draft7::new(&s).expect("compiles");
    assert!(
        v.is_valid(&json!({"open": {"a": 1, "b": 2}, "map": {"k": "v"}, "closed": {"a": "x"}}))
    );
    assert!(!v.is_valid(&json!({"closed": {"a": "x", "b": 1}})));
    assert!(!v.is_valid(&json!({"list": [{"x": 1, "y": 2}]})));
    assert!(!v.is_valid(&json!({"unknown": 1})));
    assert!(!v.is_valid(&json!({"map": {"k": 1}})));
}
