//! `plinth build` as a whole: deterministic output (a property over random valid platforms),
//! and the CLI's promises about the output directory.
//!
//! Determinism: the same documents laid out differently — shuffled inside multi-document
//! files, or split across other files — must build to the same `emit::tree`. The only
//! differences allowed are provenance: `plinth.dev/source` (`file:line`) and, in
//! `plinth.lock.json`, each object's `source` and `sha256` (a hash of the object, annotation
//! included). The test does not mask them: it knows where each document lands in each layout,
//! rewrites the first tree's provenance to the second layout's places (recomputing the lock
//! hashes), and then requires byte-identical trees.
//!
//! CLI: a failed build writes nothing and leaves the previous output as it was; a successful
//! build replaces the output whole (stale files disappear); an output directory plinth did not
//! write is refused (exit 2) and left alone; `--format stream` prints the same objects as the
//! tree, in apply order.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use plinth::emit::{Tree, to_yaml};
use plinth::load::MemSource;
use plinth::lower::{canonical_json, sha256_hex};
use plinth::parse::yaml::{YamlLimits, parse_documents};
use proptest::prelude::*;
use serde_json::{Value, json};

const WORKSPACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/..");

// ---------------------------------------------------------------------------------------------
// Random valid platforms.

#[derive(Debug, Clone)]
struct Gen {
    clusters: Vec<(String, &'static str, u32, Vec<bool>)>,
    pools: Vec<PoolGen>,
    projects: Vec<ProjectGen>,
    datasets: Vec<(u8, Vec<bool>, bool)>,
    rollouts: Vec<(usize, u8, bool)>,
}

#[derive(Debug, Clone)]
struct PoolGen {
    resource: &'static str,
    capacity: u32,
    cohort: bool,
    per_user: bool,
    /// Per project: GPUs (0 = none), lending, borrowing.
    allocations: Vec<(u32, bool, bool)>,
    priority_classes: u8,
    taint: bool,
}

#[derive(Debug, Clone)]
struct ProjectGen {
    owners: u8,
    user_members: u8,
    groups: u8,
    quota: bool,
    defaults: bool,
    shared: bool,
    isolation: bool,
    allow_from_prev: bool,
    clusters: Vec<bool>,
    per_user_cpu: bool,
}

fn platform() -> impl Strategy<Value = Gen> {
    let cluster = (
        prop::sample::select(vec!["aws", "gcp", "azure", "onPrem"]),
        30u32..=32,
        prop::collection::vec(any::<bool>(), 2),
    );
    let pool = (
        prop::sample::select(vec![
            "nvidia.com/gpu",
            "nvidia.com/mig-1g.10gb",
            "amd.com/gpu",
        ]),
        prop::sample::select(vec![16u32, 24, 32]),
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec((0u32..=4, any::<bool>(), any::<bool>()), 4),
        0u8..=2,
        any::<bool>(),
    )
        .prop_map(
            |(resource, capacity, cohort, per_user, allocations, priority_classes, taint)| {
                PoolGen {
                    resource,
                    capacity,
                    cohort,
                    per_user,
                    allocations,
                    priority_classes,
                    taint,
                }
            },
        );
    let project = (
        (1u8..=2, 0u8..=2, 0u8..=2),
        (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()),
        any::<bool>(),
        prop::collection::vec(any::<bool>(), 2),
        any::<bool>(),
    )
        .prop_map(
            |(
                (owners, user_members, groups),
                (quota, defaults, shared, isolation),
                allow_from_prev,
                clusters,
                per_user_cpu,
            )| ProjectGen {
                owners,
                user_members,
                groups,
                quota,
                defaults,
                shared,
                isolation,
                allow_from_prev,
                clusters,
                per_user_cpu,
            },
        );
    (
        prop::collection::vec(cluster, 1..=2),
        prop::collection::vec(pool, 0..=2),
        prop::collection::vec(project, 1..=4),
        prop::collection::vec(
            (
                0u8..5,
                prop::collection::vec(any::<bool>(), 4),
                any::<bool>(),
            ),
            0..=3,
        ),
        prop::collection::vec((0usize..4, 0u8..3, any::<bool>()), 0..=2),
    )
        .prop_map(|(clusters, pools, projects, datasets, rollouts)| Gen {
            clusters: clusters
                .into_iter()
                .enumerate()
                .map(|(i, (p, v, pools))| (format!("c{i}"), p, v, pools))
                .collect(),
            pools,
            projects,
            datasets,
            rollouts,
        })
}

fn doc(kind: &str, name: &str, spec: Value) -> Value {
    json!({"apiVersion": "plinth.dev/v1alpha1", "kind": kind, "metadata": {"name": name}, "spec": spec})
}

/// The documents of a platform, by group (`platform`, `projects`, `gpu`, `datasets`,
/// `models`), each in a canonical order.
fn documents(g: &Gen) -> Vec<(&'static str, Value)> {
    let cluster_names: Vec<String> = g.clusters.iter().map(|c| c.0.clone()).collect();
    let pool_name = |i: usize| format!("pool-{i}");
    let project_name = |i: usize| format!("team-{i}");
    let mut docs = Vec::new();

    let clusters: Vec<Value> = g
        .clusters
        .iter()
        .map(|(name, provider, minor, on)| {
            let pools: Vec<String> = (0..g.pools.len())
                .filter(|i| on[*i])
                .map(pool_name)
                .collect();
            json!({"name": name, "kubernetesVersion": format!("1.{minor}"), "provider": provider, "gpuPools": pools})
        })
        .collect();
    docs.push((
        "platform",
        doc(
            "Platform",
            "acme",
            json!({
                "clusters": clusters,
                "defaults": {"storageClass": "standard"},
                "identity": {"groupPrefix": "oidc:"},
                "instanceTypes": [{"name": "cpu-2", "cpu": "2", "memory": "8Gi"}],
                "serving": {"mesh": "istio", "kserve": {"restrictedStorageInitializer": true}},
            }),
        ),
    ));

    // GPUs each project holds (for per-user limits).
    let mut allocated = vec![0u32; g.projects.len()];
    for pool in &g.pools {
        for (i, a) in pool.allocations.iter().enumerate().take(g.projects.len()) {
            allocated[i] += a.0;
        }
    }
    for (i, p) in g.projects.iter().enumerate() {
        let mut spec = json!({
            "owners": (0..p.owners).map(|k| format!("owner{k}.{i}@acme.example")).collect::<Vec<_>>(),
            "members": (0..p.user_members).map(|k| json!({"user": format!("user{k}.{i}@acme.example"), "role": (["edit", "view"][k as usize % 2])}))
                .chain((0..p.groups).map(|k| json!({"group": format!("group-{k}"), "role": (["view", "admin"][k as usize % 2])})))
                .collect::<Vec<_>>(),
            "network": {"isolation": p.isolation},
        });
        if p.quota {
            spec["quota"] = json!({"cpu": "16", "memory": "64Gi", "storage": "1Ti", "pods": 100});
        }
        if p.per_user_cpu || allocated[i] > 0 {
            let mut pu = json!({});
            if p.per_user_cpu {
                pu["cpu"] = json!("4");
            }
            if allocated[i] > 0 {
                pu["gpu"] = json!(1);
            }
            spec["perUserQuota"] = pu;
        }
        if p.defaults {
            spec["defaults"] =
                json!({"cpu": "250m", "memory": "512Mi", "cpuLimit": "1", "memoryLimit": "1Gi"});
        }
        if p.shared {
            spec["volumes"] = json!({"shared": {"capacity": "100Gi"}});
        }
        if p.allow_from_prev && i > 0 {
            spec["network"]["allowFrom"] =
                json!([{"project": project_name(i - 1)}, {"cidr": "10.0.0.0/8"}]);
        }
        let on: Vec<&String> = cluster_names
            .iter()
            .enumerate()
            .filter(|(c, _)| p.clusters[*c])
            .map(|(_, n)| n)
            .collect();
        if !on.is_empty() {
            spec["clusters"] = json!(on);
        }
        docs.push(("projects", doc("Project", &project_name(i), spec)));
    }

    for (k, pool) in g.pools.iter().enumerate() {
        let allocations: Vec<Value> = pool
            .allocations
            .iter()
            .take(g.projects.len())
            .enumerate()
            .filter(|(_, a)| a.0 > 0)
            .map(|(i, (gpu, lend, borrow))| {
                let mut a = json!({"project": project_name(i), "gpu": gpu});
                if *lend {
                    a["lendingLimit"] = json!(gpu / 2);
                }
                if *borrow && pool.cohort {
                    a["borrowingLimit"] = json!(2);
                }
                a
            })
            .collect();
        let mut spec = json!({
            "pool": {"resourceName": pool.resource, "capacity": pool.capacity, "gpusPerNode": 8},
            "instanceTypes": [{"name": format!("gpu-{k}-1"), "gpu": 1, "cpu": "4", "memory": "32Gi"}],
            "allocations": allocations,
            "priorityClasses": (0..pool.priority_classes).map(|n| json!({"name": format!("prio-{k}-{n}"), "value": 100 * i32::from(n)})).collect::<Vec<_>>(),
        });
        if pool.cohort {
            spec["cohort"] = json!("shared-gpus");
        }
        if pool.per_user {
            spec["perUserGpu"] = json!(1);
        }
        if pool.taint {
            spec["pool"]["taints"] =
                json!([{"key": "gpu", "value": "true", "effect": "NoSchedule"}]);
            spec["pool"]["nodeLabels"] = json!({"acme.example/pool": pool_name(k)});
        }
        docs.push(("gpu", doc("GpuQuota", &pool_name(k), spec)));
    }

    for (k, (source, access, global)) in g.datasets.iter().enumerate() {
        let (source, version) = match source {
            0 => (
                json!({"s3": {"bucket": format!("acme-data-{k}"), "region": "eu-west-1"}}),
                Some("v7"),
            ),
            1 => (
                json!({"nfs": {"server": "filer.acme.example", "path": format!("/exports/d{k}")}}),
                Some("snap-1"),
            ),
            2 => (
                json!({"git": {"url": "https://git.acme.example/d.git", "ref": "38f62667ec93ab6bde624723d712da0884d8dc9f"}}),
                None,
            ),
            3 => (
                json!({"env": {"variables": {"A": "1", "B": "yes"}}}),
                Some("1"),
            ),
            _ => (json!({"pv": {"size": "10Gi"}}), Some("1")),
        };
        // S3 mounts on AWS clusters only: its grants name the project's AWS clusters, and a
        // project with none gets no grant.
        let s3 = source.get("s3").is_some();
        let aws_clusters = |i: usize| -> Vec<String> {
            let p = &g.projects[i];
            let any = p.clusters.iter().any(|on| *on);
            g.clusters
                .iter()
                .enumerate()
                .filter(|(c, cl)| (!any || p.clusters[*c]) && cl.1 == "aws")
                .map(|(_, cl)| cl.0.clone())
                .collect()
        };
        let grants: Vec<Value> = access
            .iter()
            .take(g.projects.len())
            .enumerate()
            .filter(|(_, on)| **on)
            .filter_map(|(i, _)| {
                if !s3 {
                    return Some(json!({"project": project_name(i), "mode": "read-only"}));
                }
                let on = aws_clusters(i);
                (!on.is_empty()).then(
                    || json!({"project": project_name(i), "mode": "read-only", "clusters": on}),
                )
            })
            .collect();
        let mut spec = json!({"source": source, "access": grants});
        if let Some(v) = version {
            spec["version"] = json!(v);
        }
        if *global || grants.is_empty() {
            spec["global"] = json!(true);
        }
        docs.push(("datasets", doc("Dataset", &format!("data-{k}"), spec)));
    }

    for (k, (project, strategy, autoscale)) in g.rollouts.iter().enumerate() {
        let project = project % g.projects.len();
        let versions = |w: [u32; 2]| {
            json!([
                {"name": "v1", "storageUri": format!("s3://acme-models/m{k}/1"), "weight": w[0]},
                {"name": "v2", "storageUri": format!("s3://acme-models/m{k}/2"), "weight": w[1]},
            ])
        };
        let mut spec = json!({
            "project": project_name(project),
            "model": {"format": "sklearn"},
            "instanceType": "cpu-2",
        });
        match strategy {
            0 => spec["model"]["storageUri"] = json!(format!("s3://acme-models/m{k}/1")),
            1 => spec["traffic"] = json!({"strategy": "canary", "versions": versions([80, 20])}),
            _ => {
                spec["traffic"] = json!({"strategy": "shadow", "versions": versions([100, 0]), "mirrorPercent": 10})
            }
        }
        if *autoscale {
            spec["autoscaling"] = json!({"min": 1, "max": 3, "target": 60});
        } else {
            spec["replicas"] = json!(2);
        }
        docs.push(("models", doc("ModelRollout", &format!("model-{k}"), spec)));
    }
    docs
}

// ---------------------------------------------------------------------------------------------
// Layouts: which file holds which documents, in which order.

/// Files by path, each a list of document indices.
type Layout = BTreeMap<String, Vec<usize>>;

/// Where each document landed: file, line of its first node, number of lines.
type Places = BTreeMap<usize, (String, u32, u32)>;

fn render(layout: &Layout, texts: &[String]) -> (MemSource, Places) {
    let mut src = MemSource::new();
    let mut places = Places::new();
    for (path, ids) in layout {
        let mut text = format!("# {path}\n");
        let mut line = 2u32;
        for &id in ids {
            text.push_str("---\n");
            let n = texts[id].lines().count() as u32;
            places.insert(id, (path.clone(), line + 1, n));
            text.push_str(&texts[id]);
            line += 1 + n;
        }
        src = src.with(path, text);
    }
    (src, places)
}

fn build_tree(src: &MemSource) -> Result<Tree, String> {
    let built =
        plinth::build_source(src, &plinth::Options::default()).map_err(|e| e.to_string())?;
    let Some(lowered) = built.lowered else {
        let diags: Vec<String> = built
            .checked
            .diagnostics
            .into_sorted()
            .into_iter()
            .map(|d| format!("{:?} {}", d.code, d.message))
            .collect();
        return Err(format!("the build stopped:\n{}", diags.join("\n")));
    };
    plinth::emit::tree(&lowered, None)
}

fn parse_one(path: &str, text: &str) -> Value {
    let (docs, diags) = parse_documents(&Arc::from(path), text, YamlLimits::default());
    assert!(diags.is_empty(), "{path}: {diags:?}");
    assert_eq!(docs.len(), 1, "{path}: one document per file");
    docs[0].root.to_json()
}

/// The tree `tree` (built from layout `from`) would be if built from layout `to`: provenance
/// moved from each document's place in `from` to its place in `to`. Also checks that the
/// lock's hashes are the hashes of the written objects.
fn relocate(tree: &Tree, from: &Places, to: &Places) -> Tree {
    let move_place = |file: &str, line: u32| -> (String, u32) {
        let (id, (_, start, _)) = from
            .iter()
            .find(|(_, (f, s, n))| f == file && (*s..*s + *n).contains(&line))
            .unwrap_or_else(|| panic!("no document at {file}:{line}"));
        let (to_file, to_start, _) = &to[id];
        (to_file.clone(), to_start + (line - start))
    };
    let mut out = Tree::new();
    let mut objects: BTreeMap<String, Value> = BTreeMap::new();
    for (path, text) in tree {
        if !path.ends_with(".yaml") || path.ends_with("/kustomization.yaml") {
            continue;
        }
        let mut v = parse_one(path, text);
        assert_eq!(
            &to_yaml(&v),
            text,
            "{path}: the YAML does not read back as written"
        );
        let source = v["metadata"]["annotations"]["plinth.dev/source"]
            .as_str()
            .unwrap_or_else(|| panic!("{path}: no plinth.dev/source"))
            .to_owned();
        let (file, line) = source.rsplit_once(':').expect("file:line");
        let (nf, nl) = move_place(file, line.parse().expect("line"));
        v["metadata"]["annotations"]["plinth.dev/source"] = json!(format!("{nf}:{nl}"));
        out.insert(path.clone(), to_yaml(&v));
        objects.insert(path.clone(), v);
    }
    // The lock parts (`<cluster>/<dir>/plinth.lock.json`) first, then the clusters' lock files
    // listing them by their sha256.
    let part = |path: &str| path.matches('/').count() == 2;
    for (path, text) in tree {
        if path.ends_with("/kustomization.yaml") {
            out.insert(path.clone(), text.clone());
        } else if path.ends_with("/plinth.lock.json") && part(path) {
            let cluster = path.split_once('/').expect("a cluster").0;
            let mut lock: Value = serde_json::from_str(text).expect("lock is JSON");
            for o in lock["objects"].as_array_mut().expect("objects") {
                let file_path = format!("{cluster}/{}", o["path"].as_str().expect("path"));
                // The hash is the written object's.
                let written = parse_one(&file_path, &tree[&file_path]);
                assert_eq!(
                    o["sha256"].as_str(),
                    Some(sha256_hex(canonical_json(&written).as_bytes()).as_str()),
                    "{file_path}: lock hash is not the hash of the file's object"
                );
                let (nf, nl) = move_place(
                    o["source"]["file"].as_str().expect("file"),
                    o["source"]["line"].as_u64().expect("line") as u32,
                );
                o["source"]["file"] = json!(nf);
                o["source"]["line"] = json!(nl);
                o["sha256"] = json!(sha256_hex(canonical_json(&objects[&file_path]).as_bytes()));
            }
            let mut s = serde_json::to_string_pretty(&lock).expect("json");
            s.push('\n');
            out.insert(path.clone(), s);
        }
    }
    for (path, text) in tree {
        if let Some(cluster) = path
            .strip_suffix("/plinth.lock.json")
            .filter(|_| !part(path))
        {
            let mut lock: Value = serde_json::from_str(text).expect("lock is JSON");
            for p in lock["parts"].as_array_mut().expect("parts") {
                let part_path = format!("{cluster}/{}", p["path"].as_str().expect("path"));
                assert_eq!(
                    p["sha256"].as_str(),
                    Some(sha256_hex(tree[&part_path].as_bytes()).as_str()),
                    "{part_path}: the lock file's sha256 is not the part's"
                );
                p["sha256"] = json!(sha256_hex(out[&part_path].as_bytes()));
            }
            let mut s = serde_json::to_string_pretty(&lock).expect("json");
            s.push('\n');
            out.insert(path.clone(), s);
        }
    }
    assert_eq!(out.len(), tree.len(), "every file accounted for");
    out
}

fn first_difference(a: &Tree, b: &Tree) -> String {
    for (p, t) in a {
        match b.get(p) {
            None => return format!("only in the first: {p}"),
            Some(u) if u != t => {
                let line = t
                    .lines()
                    .zip(u.lines())
                    .find(|(x, y)| x != y)
                    .map(|(x, y)| format!("\n  - {x}\n  + {y}"))
                    .unwrap_or_default();
                return format!("{p} differs{line}");
            }
            _ => {}
        }
    }
    b.keys()
        .find(|p| !a.contains_key(*p))
        .map(|p| format!("only in the second: {p}"))
        .unwrap_or_default()
}

const GROUPS: [&str; 5] = ["platform", "projects", "gpu", "datasets", "models"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn build_is_deterministic_across_layouts(
        g in platform(),
        order in prop::collection::vec(any::<u32>(), 16),
        split in prop::collection::vec(0usize..3, 16),
    ) {
        let docs = documents(&g);
        let texts: Vec<String> = docs.iter().map(|(_, v)| to_yaml(v)).collect();

        // Canonical: one file per group, documents in generation order.
        let mut canonical = Layout::new();
        for (i, (group, _)) in docs.iter().enumerate() {
            canonical.entry(format!("{group}.yaml")).or_default().push(i);
        }
        // Same files, documents shuffled inside each.
        let mut shuffled = canonical.clone();
        for ids in shuffled.values_mut() {
            ids.sort_by_key(|id| (order[*id % order.len()], *id));
            ids.reverse();
        }
        // Other files: each document in one of three files whose names sort differently from
        // the groups, in shuffled order.
        let mut resplit = Layout::new();
        let mut ids: Vec<usize> = (0..docs.len()).collect();
        ids.sort_by_key(|id| (order[(*id * 7 + 3) % order.len()], *id));
        for id in ids {
            let file = match split[id % split.len()] {
                0 => "z/all.yml".to_owned(),
                1 => "a-specs.yaml".to_owned(),
                _ => format!("m/{}/{}.yaml", GROUPS.iter().position(|g| *g == docs[id].0).unwrap_or(0), id % 2),
            };
            resplit.entry(file).or_default().push(id);
        }

        let (src_a, places_a) = render(&canonical, &texts);
        let tree_a = build_tree(&src_a).map_err(TestCaseError::fail)?;
        prop_assert!(tree_a.keys().any(|p| p.ends_with("plinth.lock.json")));

        // The same input twice: the same bytes.
        let again = build_tree(&src_a).map_err(TestCaseError::fail)?;
        prop_assert!(tree_a == again, "two builds of one input differ: {}", first_difference(&tree_a, &again));

        for (label, layout) in [("shuffled", &shuffled), ("re-split", &resplit)] {
            let (src, places) = render(layout, &texts);
            let tree = build_tree(&src).map_err(TestCaseError::fail)?;
            let want = relocate(&tree_a, &places_a, &places);
            prop_assert!(
                want == tree,
                "{label} layout builds differently: {}",
                first_difference(&want, &tree)
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The CLI and the output directory.

fn plinth(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .output()
        .expect("run plinth")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy_tree(&e.path(), &dst);
        } else {
            fs::copy(e.path(), &dst).expect("copy");
        }
    }
}

/// Every file and directory under `dir` (markers included), with file contents.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd {
            let p = e.expect("entry").path();
            let rel = p.strip_prefix(dir).expect("under").to_path_buf();
            if p.is_dir() {
                out.insert(rel, None);
                stack.push(p);
            } else {
                out.insert(rel, Some(fs::read(&p).expect("read")));
            }
        }
    }
    out
}

/// A scratch directory holding a copy of the example platform as `repo/`.
fn scratch_with_example() -> tempfile::TempDir {
    let t = tempfile::tempdir().expect("tempdir");
    copy_tree(
        &Path::new(WORKSPACE).join("examples/repo"),
        &t.path().join("repo"),
    );
    t
}

/// Names in `dir` that are not `keep`: leftovers of an interrupted replacement.
fn leftovers(dir: &Path, keep: &[&str]) -> Vec<String> {
    fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| !keep.contains(&n.as_str()))
        .collect()
}

const BROKEN: &str = "apiVersion: plinth.dev/v1alpha1
kind: GpuQuota
metadata:
  name: t4
spec:
  pool: {capacity: 4, gpusPerNode: 4}
  allocations:
    - {project: no-such-project, gpu: 2}
";

#[test]
fn failed_build_writes_nothing_and_keeps_the_previous_output() {
    let t = scratch_with_example();
    let o = plinth(t.path(), &["build", "repo", "--out", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = snapshot(&t.path().join("out"));
    assert!(before.keys().any(|p| p.ends_with("plinth.lock.json")));

    fs::write(t.path().join("repo/gpu/t4.yaml"), BROKEN).expect("write");
    for args in [
        &["build", "repo", "--out", "out"][..],
        &["build", "repo", "--out", "out", "--cluster", "prod-a"][..],
        &[
            "build",
            "repo",
            "--out",
            "out",
            "--format",
            "stream",
            "--cluster",
            "prod-a",
        ][..],
    ] {
        let o = plinth(t.path(), args);
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("no-such-project"), "{}", stderr(&o));
        assert!(stderr(&o).contains("nothing was written"), "{}", stderr(&o));
        assert!(
            o.stdout.is_empty(),
            "{args:?}: printed {} bytes",
            o.stdout.len()
        );
        assert!(
            snapshot(&t.path().join("out")) == before,
            "{args:?}: out/ changed"
        );
        assert_eq!(leftovers(t.path(), &["repo", "out"]), Vec::<String>::new());
    }
    // Into a fresh directory: not even created.
    let o = plinth(t.path(), &["build", "repo", "--out", "fresh"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(!t.path().join("fresh").exists());
}

#[test]
fn an_unchanged_build_writes_nothing_and_a_tampered_output_is_rewritten() {
    unchanged_and_tampered(&[]);
}

/// The same through a cache directory, whose output index vouches for the files it recorded
/// (so they are neither rendered nor read): a file changed behind its back — even with the
/// same size and its modification time set back — is found by its change time and rewritten.
#[test]
fn the_output_index_never_vouches_for_a_tampered_file() {
    unchanged_and_tampered(&["--cache-dir", "cache"]);
}

fn unchanged_and_tampered(extra: &[&str]) {
    use std::os::unix::fs::MetadataExt;
    let t = scratch_with_example();
    let build = |t: &Path| {
        let args: Vec<&str> = ["build", "repo", "--out", "out"]
            .iter()
            .chain(extra)
            .copied()
            .collect();
        let o = plinth(t, &args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    };
    build(t.path());
    let out = t.path().join("out");
    let file = out.join("prod-a/_cluster/namespace-bed-management.yaml");
    let inode = |p: &Path| fs::metadata(p).expect("stat").ino();
    let (dir_before, file_before) = (inode(&out.join("prod-a")), inode(&file));
    let first = snapshot(&out);

    // The same input again: the very same files stay (nothing was replaced).
    build(t.path());
    assert_eq!(inode(&out.join("prod-a")), dir_before);
    assert_eq!(inode(&file), file_before);
    assert!(snapshot(&out) == first);
    if !extra.is_empty() {
        // An index trusts only files that changed well before it was written: past that,
        // one more build leaves an index that vouches for every file.
        std::thread::sleep(std::time::Duration::from_millis(2100));
        build(t.path());
        let index = fs::read_dir(t.path().join("cache/outputs"))
            .expect("an output index")
            .count();
        assert_eq!(index, 1, "one output directory, one index");
    }

    // A changed byte, the same with its time set back, an extra file, a missing file: each
    // is repaired by a rebuild.
    type Tamper = fn(&Path);
    let tampering: [Tamper; 4] = [
        |out| {
            let f = out.join("prod-a/_cluster/namespace-bed-management.yaml");
            let text = fs::read_to_string(&f).expect("read");
            fs::write(&f, text.replace("bed-management", "bed-managemenT")).expect("write");
        },
        |out| {
            let f = out.join("prod-a/_cluster/namespace-bed-management.yaml");
            let was = fs::metadata(&f).expect("stat").modified().expect("mtime");
            let text = fs::read_to_string(&f).expect("read");
            fs::write(&f, text.replace("bed-management", "bed-managemenX")).expect("write");
            fs::File::options()
                .append(true)
                .open(&f)
                .expect("open")
                .set_modified(was)
                .expect("touch");
        },
        |out| fs::write(out.join("prod-a/extra.yaml"), "x: 1\n").expect("write"),
        |out| fs::remove_file(out.join("research-b/plinth.lock.json")).expect("rm"),
    ];
    for tamper in tampering {
        tamper(&out);
        assert!(snapshot(&out) != first);
        build(t.path());
        assert!(snapshot(&out) == first, "the rebuild restores the output");
    }
}

/// A one-spec change rewrites the files it changes and nothing else (the others keep their
/// inodes); the result is the same as a fresh build, with nothing left beside the files.
#[test]
fn a_small_change_rewrites_only_the_files_it_changes() {
    small_change(&[]);
}

/// The same through a cache directory (its units, policy results and output index).
#[test]
fn a_small_change_through_the_cache_rewrites_only_the_files_it_changes() {
    small_change(&["--cache-dir", "cache"]);
}

fn small_change(extra: &[&str]) {
    use std::os::unix::fs::MetadataExt;
    let t = scratch_with_example();
    let args: Vec<&str> = ["build", "repo", "--out", "out"]
        .iter()
        .chain(extra)
        .copied()
        .collect();
    let o = plinth(t.path(), &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = t.path().join("out");
    let inodes = |d: &Path| -> BTreeMap<PathBuf, u64> {
        snapshot(d)
            .into_iter()
            .filter(|(_, b)| b.is_some())
            .map(|(p, _)| {
                let ino = fs::metadata(d.join(&p)).expect("stat").ino();
                (p, ino)
            })
            .collect()
    };
    let (before, before_inodes) = (snapshot(&out), inodes(&out));
    let p = t.path().join("repo/projects/er-capacity.yaml");
    let text = fs::read_to_string(&p).expect("read");
    fs::write(&p, text.replacen("cpu: 96", "cpu: 97", 1)).expect("write");
    let o = plinth(t.path(), &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = plinth(t.path(), &["build", "repo", "--out", "fresh"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let after = snapshot(&out);
    assert!(
        after == snapshot(&t.path().join("fresh")),
        "differs from a fresh build"
    );
    let after_inodes = inodes(&out);
    let changed: Vec<&PathBuf> = after
        .iter()
        .filter(|(p, b)| before.get(*p) != Some(b))
        .map(|(p, _)| p)
        .collect();
    // The objects the quota decides, the lock parts of their directories and the cluster's
    // lock file listing those parts.
    let objects: Vec<&PathBuf> = changed
        .iter()
        .copied()
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    let mut locks: BTreeSet<PathBuf> = objects
        .iter()
        .map(|p| p.with_file_name("plinth.lock.json"))
        .collect();
    locks.extend(
        objects
            .iter()
            .filter_map(|p| Some(p.parent()?.with_file_name("plinth.lock.json"))),
    );
    assert!(
        !objects.is_empty()
            && objects.len() <= 3
            && changed.len() == objects.len() + locks.len()
            && locks.iter().all(|l| changed.contains(&l)),
        "a quota change changes its ResourceQuota, ClusterQueue and Cohort and their lock files: {changed:?}"
    );
    for (p, ino) in &after_inodes {
        if changed.contains(&p) {
            assert_ne!(
                before_inodes.get(p),
                Some(ino),
                "{} was not rewritten",
                p.display()
            );
        } else {
            assert_eq!(
                before_inodes.get(p),
                Some(ino),
                "{} was rewritten though unchanged",
                p.display()
            );
        }
    }
    let expected: &[&str] = if extra.is_empty() {
        &["repo", "out", "fresh"]
    } else {
        &["repo", "out", "fresh", "cache"]
    };
    assert_eq!(leftovers(t.path(), expected), Vec::<String>::new());
    assert!(
        !after
            .keys()
            .any(|p| p.to_string_lossy().contains(".plinth-new-")),
        "temporary files left in the output"
    );
}

#[test]
fn successful_build_replaces_the_output_whole() {
    let t = scratch_with_example();
    let o = plinth(t.path(), &["build", "repo", "--out", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = t.path().join("out");
    assert!(
        out.join("prod-a/_cluster/namespace-bed-management.yaml")
            .is_file()
    );
    // Stale files everywhere, and a project removed from the platform.
    fs::write(out.join("prod-a/stale.yaml"), "stale").expect("write");
    fs::create_dir_all(out.join("gone-cluster")).expect("mkdir");
    fs::write(out.join("gone-cluster/x.yaml"), "stale").expect("write");
    fs::write(out.join("notes.txt"), "stale").expect("write");
    fs::remove_file(t.path().join("repo/models/bed-forecast.yaml")).expect("rm");
    fs::remove_file(t.path().join("repo/projects/bed-management.yaml")).expect("rm");
    for f in [
        "gpu/a100.yaml",
        "gpu/a100-mig.yaml",
        "datasets/admissions.yaml",
        "datasets/bed-census.yaml",
        "datasets/ed-forecasts.yaml",
        "projects/er-capacity.yaml",
        "datasets/hospital-calendar.yaml",
        "models/er-arrivals-forecast.yaml",
    ] {
        let p = t.path().join("repo").join(f);
        let text = fs::read_to_string(&p).expect("read");
        let kept: String = drop_bed_management(&text);
        fs::write(&p, kept).expect("write");
    }
    let o = plinth(t.path(), &["build", "repo", "--out", "out"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = plinth(t.path(), &["build", "repo", "--out", "fresh"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let (replaced, fresh) = (snapshot(&out), snapshot(&t.path().join("fresh")));
    assert!(
        replaced == fresh,
        "the replaced output differs from a fresh build: {:?}",
        replaced
            .keys()
            .collect::<BTreeSet<_>>()
            .symmetric_difference(&fresh.keys().collect())
            .collect::<Vec<_>>()
    );
    assert!(!out.join("prod-a/stale.yaml").exists());
    assert!(!out.join("gone-cluster").exists());
    assert!(!out.join("prod-a/bed-management").exists());
    assert_eq!(
        leftovers(t.path(), &["repo", "out", "fresh"]),
        Vec::<String>::new()
    );
}

/// The example without project `bed-management`: its allocations, grants and endpoint
/// permissions removed (line-based, as the example's YAML is regular).
fn drop_bed_management(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let l = lines[i];
        if l.trim_start().starts_with("- project: bed-management") {
            // Skip the list entry and its continuation lines.
            let indent = l.len() - l.trim_start().len();
            i += 1;
            while i < lines.len()
                && lines[i].len() - lines[i].trim_start().len() > indent
                && !lines[i].trim().is_empty()
            {
                i += 1;
            }
            continue;
        }
        out.push(l.replace("allowProjects: [bed-management]", "allowProjects: []"));
        i += 1;
    }
    out.join("\n") + "\n"
}

#[test]
fn refuses_an_output_directory_plinth_did_not_write() {
    let t = scratch_with_example();
    let mine = t.path().join("mine");
    fs::create_dir_all(mine.join("docs")).expect("mkdir");
    fs::write(mine.join("notes.txt"), "precious").expect("write");
    fs::write(mine.join("docs/a.md"), "precious too").expect("write");
    let before = snapshot(&mine);
    for args in [
        &["build", "repo", "--out", "mine"][..],
        &["build", "repo", "--out", "mine", "--cluster", "prod-a"][..],
    ] {
        let o = plinth(t.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("refusing"), "{}", stderr(&o));
        assert!(
            snapshot(&mine) == before,
            "{args:?}: the directory was touched"
        );
        assert_eq!(leftovers(t.path(), &["repo", "mine"]), Vec::<String>::new());
    }
    // An empty directory is fine, and is marked as plinth's.
    fs::create_dir_all(t.path().join("empty")).expect("mkdir");
    let o = plinth(t.path(), &["build", "repo", "--out", "empty"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(t.path().join("empty/.plinth-output").is_file());
}

#[test]
fn one_cluster_build_replaces_only_that_cluster() {
    let t = scratch_with_example();
    for c in ["prod-a", "research-b"] {
        let o = plinth(t.path(), &["build", "repo", "--out", "out", "--cluster", c]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
    let out = t.path().join("out");
    // Cluster by cluster gives the files of a whole build.
    assert_eq!(
        plinth(t.path(), &["build", "repo", "--out", "whole"])
            .status
            .code(),
        Some(0)
    );
    let files = |d: &Path| -> BTreeMap<PathBuf, Option<Vec<u8>>> {
        snapshot(d)
            .into_iter()
            .filter(|(p, _)| !p.ends_with(".plinth-output"))
            .collect()
    };
    assert!(
        files(&out) == files(&t.path().join("whole")),
        "cluster builds differ from a whole build"
    );
    fs::write(out.join("prod-a/stale.yaml"), "stale").expect("write");
    fs::write(out.join("research-b/kept.yaml"), "kept").expect("write");
    let research = snapshot(&out.join("research-b"));
    let o = plinth(
        t.path(),
        &["build", "repo", "--out", "out", "--cluster", "prod-a"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!out.join("prod-a/stale.yaml").exists());
    assert!(out.join("prod-a/plinth.lock.json").is_file());
    assert!(
        snapshot(&out.join("research-b")) == research,
        "research-b was touched"
    );
    assert_eq!(
        leftovers(&out, &[".plinth-output", "prod-a", "research-b"]),
        Vec::<String>::new()
    );
    // Unknown cluster: a usage error, nothing written.
    let before = snapshot(&out);
    let o = plinth(
        t.path(),
        &["build", "repo", "--out", "out", "--cluster", "nope"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("unknown cluster"), "{}", stderr(&o));
    assert!(snapshot(&out) == before);
}

/// A one-cluster build into the output of a whole build replaces that cluster's directory
/// (the whole build's marker sits in `out/`).
#[test]
fn one_cluster_build_after_a_whole_build() {
    let t = scratch_with_example();
    assert_eq!(
        plinth(t.path(), &["build", "repo", "--out", "out"])
            .status
            .code(),
        Some(0)
    );
    fs::write(t.path().join("out/prod-a/stale.yaml"), "stale").expect("write");
    let o = plinth(
        t.path(),
        &["build", "repo", "--out", "out", "--cluster", "prod-a"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!t.path().join("out/prod-a/stale.yaml").exists());
}

/// `plinth build` with its defaults (repository `.`, output `out`) writes `out/` inside the
/// repository; the next runs must not read it back as specs.
#[test]
fn default_output_inside_the_repository_rebuilds() {
    let t = scratch_with_example();
    let repo = t.path().join("repo");
    for run in 1..=2 {
        let o = plinth(&repo, &["build", "--no-default-policies"]);
        assert_eq!(o.status.code(), Some(0), "run {run}: {}", stderr(&o));
    }
    let o = plinth(&repo, &["check", "--no-default-policies"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "check after build: {}",
        String::from_utf8_lossy(&o.stdout)
    );
}

/// The object files a cluster's output directory `dir` lists in its lock parts (each part
/// checked against the sha256 its lock file lists).
fn locked_paths(dir: &Path) -> Vec<String> {
    let read = |p: &str| fs::read_to_string(dir.join(p)).expect("a lock file");
    let top: Value = serde_json::from_str(&read("plinth.lock.json")).expect("json");
    let mut paths = Vec::new();
    for part in top["parts"].as_array().expect("parts") {
        let text = read(part["path"].as_str().expect("path"));
        assert_eq!(
            part["sha256"].as_str(),
            Some(sha256_hex(text.as_bytes()).as_str())
        );
        let part: Value = serde_json::from_str(&text).expect("json");
        for o in part["objects"].as_array().expect("objects") {
            paths.push(o["path"].as_str().expect("path").to_owned());
        }
    }
    paths
}

fn objects_of_stream(text: &str) -> Vec<Value> {
    let (docs, diags) = parse_documents(&Arc::from("stream"), text, YamlLimits::default());
    assert!(diags.is_empty(), "{diags:?}");
    docs.into_iter().map(|d| d.root.to_json()).collect()
}

#[test]
fn stream_prints_the_tree_objects_in_apply_order() {
    let t = scratch_with_example();
    let o = plinth(
        t.path(),
        &["build", "repo", "--format", "stream", "--cluster", "prod-a"],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!t.path().join("out").exists(), "--format stream wrote out/");
    let text = String::from_utf8(o.stdout).expect("utf-8");
    assert!(text.starts_with("---\n"));
    let stream = objects_of_stream(&text);

    assert_eq!(
        plinth(t.path(), &["build", "repo", "--out", "out"])
            .status
            .code(),
        Some(0)
    );
    let dir = t.path().join("out/prod-a");
    let mut from_tree: BTreeMap<String, Value> = BTreeMap::new();
    for path in locked_paths(&dir) {
        let v = objects_of_stream(&fs::read_to_string(dir.join(path)).expect("file"));
        from_tree.insert(canonical_json(&v[0]), v[0].clone());
    }
    let from_stream: BTreeMap<String, Value> = stream
        .iter()
        .map(|v| (canonical_json(v), v.clone()))
        .collect();
    assert_eq!(stream.len(), from_stream.len(), "an object printed twice");
    assert_eq!(from_stream.len(), from_tree.len(), "object counts differ");
    assert!(
        from_stream == from_tree,
        "the stream's objects are not the tree's"
    );

    // Apply order: a namespace before anything in it; a ClusterQueue before the LocalQueues
    // pointing at it; every namespaced object after every cluster-scoped non-workload.
    let pos = |kind: &str, ns: Option<&str>, name: &str| {
        stream.iter().position(|v| {
            v["kind"] == kind
                && v["metadata"]["name"] == name
                && v["metadata"]["namespace"].as_str() == ns
        })
    };
    for (i, v) in stream.iter().enumerate() {
        if let Some(ns) = v["metadata"]["namespace"].as_str() {
            let at = pos("Namespace", None, ns)
                .unwrap_or_else(|| panic!("namespace {ns} not in the stream"));
            assert!(
                at < i,
                "{} {ns}/{} comes before its namespace",
                v["kind"],
                v["metadata"]["name"]
            );
        }
        if v["kind"] == "LocalQueue" {
            let cq = v["spec"]["clusterQueue"].as_str().expect("clusterQueue");
            let at = pos("ClusterQueue", None, cq).expect("ClusterQueue in the stream");
            assert!(at < i, "LocalQueue before its ClusterQueue {cq}");
        }
    }

    // Several clusters and no `--cluster`: a usage error.
    let o = plinth(t.path(), &["build", "repo", "--format", "stream"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
}

// ---------------------------------------------------------------------------------------------
// Platforms at the edges of the rules: each compiles to objects a cluster accepts, or is
// refused with a located user error (never an internal one).

const PLATFORM_1_32: &str = "apiVersion: plinth.dev/v1alpha1
kind: Platform
metadata:
  name: acme
spec:
  clusters:
    - name: prod
      kubernetesVersion: \"1.32\"
      provider: aws
      gpuPools: [POOLS]
";

fn project_doc(name: &str) -> String {
    format!(
        "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: {name}\nspec:\n  owners: [a@acme.example, b@acme.example]\n"
    )
}

fn pool_doc(name: &str, project: &str) -> String {
    format!(
        "apiVersion: plinth.dev/v1alpha1\nkind: GpuQuota\nmetadata:\n  name: {name}\nspec:\n  pool: {{capacity: 8, gpusPerNode: 8}}\n  allocations: [{{project: {project}, gpu: 1}}]\n"
    )
}

/// The build's errors as `code message`.
fn build_errors(src: &MemSource) -> Vec<String> {
    let built = plinth::build_source(src, &plinth::Options::default()).expect("loads");
    built
        .checked
        .diagnostics
        .into_sorted()
        .into_iter()
        .filter(|d| d.is_error())
        .map(|d| format!("{} {}", d.code.id(), d.message))
        .collect()
}

/// Queue names of different allocations never collide: project `a` in pool `b-c` and project
/// `a-b` in pool `c` would both be `a-b-c` with a dash; plinth joins them with a dot.
#[test]
fn queue_names_of_different_allocations_do_not_collide() {
    let src = MemSource::new()
        .with("plinth.yaml", PLATFORM_1_32.replace("POOLS", "b-c, c"))
        .with(
            "p.yaml",
            format!("{}---\n{}", project_doc("a"), project_doc("a-b")),
        )
        .with(
            "q.yaml",
            format!("{}---\n{}", pool_doc("b-c", "a"), pool_doc("c", "a-b")),
        );
    assert_eq!(build_errors(&src), Vec::<String>::new());
}

/// A GpuQuota named `default` would give each project a LocalQueue `default`, the name of the
/// project's default LocalQueue: the name is reserved, refused at the pool's name.
#[test]
fn a_pool_named_default_is_refused_at_its_name() {
    let src = MemSource::new()
        .with("plinth.yaml", PLATFORM_1_32.replace("POOLS", "default"))
        .with("p.yaml", project_doc("team"))
        .with("q.yaml", pool_doc("default", "team"));
    let errors = build_errors(&src);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].starts_with("E102"), "{errors:#?}");
    let checked = plinth::check_source(&src, &plinth::Options::default()).expect("loads");
    let d = checked
        .diagnostics
        .into_sorted()
        .into_iter()
        .find(|d| d.code.id() == "E102")
        .expect("E102");
    let at = d.primary.expect("located");
    assert_eq!(
        (at.span.file.as_ref(), at.field.as_deref()),
        ("q.yaml", Some("metadata.name"))
    );
}

/// Project and pool names are DNS labels of up to 63 characters each; their queue names and the
/// namespace label `plinth.dev/queue` (a label value, at most 63) must still be valid.
#[test]
fn long_project_and_pool_names_build() {
    let project = "radiology-imaging-research-and-development";
    let pool = "nvidia-a100-80gb-sxm4-mig-slices";
    let src = MemSource::new()
        .with("plinth.yaml", PLATFORM_1_32.replace("POOLS", pool))
        .with("p.yaml", project_doc(project))
        .with("q.yaml", pool_doc(pool, project));
    let errors = build_errors(&src);
    assert!(
        errors.iter().all(|e| !e.starts_with("I001")),
        "internal errors on a valid platform: {errors:#?}"
    );
}

/// `admissionregistration.k8s.io/v1` ValidatingAdmissionPolicy is served from Kubernetes 1.30;
/// a per-user quota on a 1.28 cluster must not compile to objects that cluster does not know.
#[test]
fn per_user_policy_respects_the_cluster_version() {
    let src = MemSource::new()
        .with(
            "plinth.yaml",
            PLATFORM_1_32
                .replace("\"1.32\"", "\"1.28\"")
                .replace("      gpuPools: [POOLS]\n", ""),
        )
        .with(
            "p.yaml",
            format!("{}  perUserQuota: {{cpu: \"4\"}}\n", project_doc("team")),
        );
    let built = plinth::build_source(&src, &plinth::Options::default()).expect("loads");
    let Some(lowered) = built.lowered else {
        // Refusing with a located, non-internal error is a fix too.
        let diags = built.checked.diagnostics.into_sorted();
        assert!(
            diags.iter().any(|d| d.is_error() && d.code.id() != "I001"),
            "{diags:#?}"
        );
        return;
    };
    let v1: Vec<String> = lowered.clusters["prod"]
        .manifests
        .iter()
        .filter(|m| m.key.api_version == "admissionregistration.k8s.io/v1")
        .map(|m| m.key.to_string())
        .collect();
    assert!(v1.is_empty(), "served from 1.30 only: {v1:?}");
}

/// A spec label value Kubernetes refuses (`Jane Doe`) is one user error at the label, not an
/// internal error on every generated object.
#[test]
fn invalid_spec_labels_are_user_errors() {
    let src = MemSource::new()
        .with(
            "plinth.yaml",
            PLATFORM_1_32.replace("      gpuPools: [POOLS]\n", ""),
        )
        .with(
            "p.yaml",
            project_doc("team").replace(
                "  name: team\n",
                "  name: team\n  labels:\n    acme.example/owner: Jane Doe\n",
            ),
        );
    let errors = build_errors(&src);
    assert!(!errors.is_empty(), "an invalid label value must be refused");
    assert!(
        errors.iter().all(|e| !e.starts_with("I001")),
        "reported as internal errors: {errors:#?}"
    );
}

/// A build through a cache stores its revision (beside the writing of the output): the next
/// build of the same files is a whole-revision hit, with the same output; a build that stops
/// on errors stores its diagnostics too, and the hit stops the same way, writing nothing.
#[test]
fn a_build_through_a_cache_stores_its_revision_whether_it_succeeds_or_not() {
    let t = scratch_with_example();
    let build = |dir: &Path| {
        let o = Command::new(env!("CARGO_BIN_EXE_plinth"))
            .current_dir(dir)
            .args(["build", "repo", "--out", "out", "--cache-dir", "cache"])
            .env("PLINTH_TIMINGS", "1")
            .env("NO_COLOR", "1")
            .output()
            .expect("run plinth");
        let hit = stderr(&o).contains("timing cache hit");
        (o, hit)
    };
    let (first, hit) = build(t.path());
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(!hit, "a fresh cache has nothing to hit");
    assert!(
        stderr(&first).contains("store revision"),
        "{}",
        stderr(&first)
    );
    let out = snapshot(&t.path().join("out"));
    let (again, hit) = build(t.path());
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(hit, "the revision was stored: {}", stderr(&again));
    assert!(snapshot(&t.path().join("out")) == out);

    fs::write(t.path().join("repo/gpu/t4.yaml"), BROKEN).expect("write");
    for expect_hit in [false, true] {
        let (o, hit) = build(t.path());
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert_eq!(hit, expect_hit, "{}", stderr(&o));
        assert!(stderr(&o).contains("no-such-project"), "{}", stderr(&o));
        assert!(stderr(&o).contains("nothing was written"), "{}", stderr(&o));
        assert!(snapshot(&t.path().join("out")) == out, "out/ changed");
    }
}

/// Once the output index is trusted, it vouches for whole directories (their entries did not
/// change) and those are not read: a directory whose project is removed still loses every
/// file, and stray files and directories a user added are still found and removed — the
/// output is a fresh build's each time.
#[test]
fn a_trusted_output_index_misses_no_file_to_remove() {
    let t = scratch_with_example();
    let extra = t.path().join("repo/projects/ward-flow.yaml");
    let text = fs::read_to_string(t.path().join("repo/projects/bed-management.yaml"))
        .expect("read")
        .replacen("    gpu: 2\n", "", 1)
        .replace("bed-management", "ward-flow");
    fs::write(&extra, text).expect("write");
    let args = ["build", "repo", "--out", "out", "--cache-dir", "cache"];
    let build = |t: &Path| {
        let o = plinth(t, &args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    };
    let fresh = |t: &Path| {
        let _ = fs::remove_dir_all(t.join("fresh"));
        let o = plinth(t, &["build", "repo", "--out", "fresh"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        snapshot(&t.join("fresh"))
    };
    build(t.path());
    let out = t.path().join("out");
    assert!(out.join("prod-a/ward-flow").is_dir());
    // Past the index's distrust of fresh changes, one more build leaves a trusted index.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    build(t.path());

    fs::remove_file(&extra).expect("rm");
    build(t.path());
    assert!(
        !out.join("prod-a/ward-flow").exists(),
        "its namespace is gone"
    );
    assert!(
        snapshot(&out) == fresh(t.path()),
        "the same as a fresh build"
    );

    std::thread::sleep(std::time::Duration::from_millis(2100));
    build(t.path());
    type Stray = fn(&Path);
    let strays: [Stray; 3] = [
        |out| fs::write(out.join("prod-a/bed-management/stray.yaml"), "x: 1\n").expect("write"),
        |out| {
            fs::create_dir_all(out.join("prod-a/bed-management/sub")).expect("mkdir");
            fs::write(out.join("prod-a/bed-management/sub/stray.yaml"), "x: 1\n").expect("write");
        },
        |out| {
            fs::create_dir_all(out.join("prod-a/new-dir/deeper")).expect("mkdir");
            fs::write(out.join("prod-a/new-dir/deeper/stray.yaml"), "x: 1\n").expect("write");
        },
    ];
    let want = fresh(t.path());
    for stray in strays {
        stray(&out);
        build(t.path());
        assert!(snapshot(&out) == want, "the stray file is removed");
    }
}

/// An object's text kept in the cache is read when the object is written: one damaged there
/// (in place, after it was kept) fails the build with a system error and writes nothing; the
/// next build lowers the damaged units again and writes what a build without a cache writes.
#[test]
fn a_text_damaged_in_the_cache_fails_the_build_and_writes_nothing() {
    let t = scratch_with_example();
    let args = ["build", "repo", "--out", "out", "--cache-dir", "cache"];
    let o = plinth(t.path(), &args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let damaged = common::damage_units(&t.path().join("cache"), common::Part::Body);
    assert!(damaged > 0);
    // Into another directory: every object is rendered, so every text is read.
    let other = ["build", "repo", "--out", "other", "--cache-dir", "cache"];
    let o = plinth(t.path(), &other);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("could not be read back from the cache's unit store"),
        "{}",
        stderr(&o)
    );
    assert!(!t.path().join("other").exists(), "nothing written");
    let o = plinth(t.path(), &other);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = plinth(t.path(), &["build", "repo", "--out", "fresh"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(snapshot(&t.path().join("other")) == snapshot(&t.path().join("fresh")));
}

/// A build through a cache keeps the spec files it read under their path and stamp, and reads
/// a file again only when its stamp changed: a file edited in place to other bytes of the same
/// size is built as edited, and the output is a fresh build's each time.
#[test]
fn files_kept_by_their_stamp_are_read_again_once_changed() {
    let t = scratch_with_example();
    let args = ["build", "repo", "--out", "out", "--cache-dir", "cache"];
    let build = |t: &Path| {
        let o = plinth(t, &args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        snapshot(&t.join("out"))
    };
    let fresh = |t: &Path| {
        let _ = fs::remove_dir_all(t.join("fresh"));
        let o = plinth(t, &["build", "repo", "--out", "fresh"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        snapshot(&t.join("fresh"))
    };
    // Files are kept once they last changed well before they are read.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    build(t.path());
    let kept = t.path().join("cache/blobs/worktree");
    let size = fs::metadata(&kept).expect("the files read are kept").len();
    assert!(size > 1000, "{size}");
    assert!(build(t.path()) == fresh(t.path()));
    let er = t.path().join("repo/projects/er-capacity.yaml");
    let text = fs::read_to_string(&er).expect("read");
    let edited = text.replacen("pods: 1", "pods: 2", 1);
    assert!(
        edited != text && edited.len() == text.len(),
        "example changed"
    );
    fs::write(&er, &edited).expect("write");
    let out = build(t.path());
    assert!(out == fresh(t.path()), "built as edited");
    // Again once the edit is old enough to be kept: read from what was kept, the same.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert!(build(t.path()) == out);
    assert!(build(t.path()) == out);
    assert!(fs::metadata(&kept).expect("kept").len() > size);
}

/// Where two output trees (as [`snapshot`] reads them) differ first, for a failure message.
fn first_file_difference(
    a: &BTreeMap<PathBuf, Option<Vec<u8>>>,
    b: &BTreeMap<PathBuf, Option<Vec<u8>>>,
) -> String {
    a.iter()
        .find(|(p, x)| b.get(*p) != Some(x))
        .map(|(p, _)| format!("{} differs or is missing", p.display()))
        .or_else(|| {
            b.keys()
                .find(|p| !a.contains_key(*p))
                .map(|p| format!("{} is extra", p.display()))
        })
        .unwrap_or_default()
}

/// A whole build through a cache, of a change to the revision its output holds, is lowered
/// against that revision's units and writes only what the fresh units change (`lower
/// (delta)` in its timings) — and its output is a fresh build's, whatever happened to the
/// output in between: files written just before (not yet vouched for by their stamps), an
/// object's file changed or removed behind plinth's back, an extra file, a lock file changed.
/// After any of those the build is written as before, and the next one is a delta again.
#[test]
fn a_build_over_its_output_writes_what_a_fresh_build_would() {
    let t = scratch_with_example();
    let out = t.path().join("out");
    let build = |delta: Option<bool>, why: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_plinth"))
            .args(["build", "repo", "--out", "out", "--cache-dir", "cache"])
            .current_dir(t.path())
            .env("NO_COLOR", "1")
            .env("PLINTH_TIMINGS", "1")
            .output()
            .expect("run plinth");
        assert_eq!(o.status.code(), Some(0), "{why}: {}", stderr(&o));
        if let Some(delta) = delta {
            assert_eq!(
                stderr(&o).contains("lower (delta)"),
                delta,
                "{why}: {}",
                stderr(&o)
            );
        }
        let fresh = t.path().join("fresh");
        let _ = fs::remove_dir_all(&fresh);
        let o = plinth(t.path(), &["build", "repo", "--out", "fresh"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let (built, fresh) = (snapshot(&out), snapshot(&fresh));
        assert!(
            built == fresh,
            "{why}: {}",
            first_file_difference(&built, &fresh)
        );
    };
    let mut n = 96;
    let mut edit = |file: &str| {
        let p = t.path().join("repo/projects").join(file);
        let text = fs::read_to_string(&p).expect("read");
        let at = text.find("cpu: ").expect("a cpu quota") + "cpu: ".len();
        let end = at + text[at..].find('\n').expect("a line");
        n += 1;
        fs::write(&p, format!("{}{n}{}", &text[..at], &text[end..])).expect("write");
    };
    build(Some(false), "the first build");
    // At once: the files just written cannot be vouched for by their stamps yet (the build is
    // then written as without the index, unless the machine took seconds).
    edit("er-capacity.yaml");
    build(
        None,
        "a quota changed right after a whole output was written",
    );
    // Stamps are trusted once well older than the index: one more build records them so.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    build(Some(false), "unchanged");
    edit("er-capacity.yaml");
    build(Some(true), "a quota changed");
    // Right after: the files just written are compared with their recorded texts.
    edit("er-capacity.yaml");
    build(Some(true), "the same quota again, at once");
    edit("radiology-imaging.yaml");
    build(Some(true), "another project's quota");
    type Tamper = fn(&Path);
    let tampering: [(&str, Tamper); 6] = [
        ("an object's file changed", |out| {
            let f = out.join("prod-a/_cluster/namespace-bed-management.yaml");
            let text = fs::read_to_string(&f).expect("read");
            fs::write(&f, text.replace("bed-management", "bed-managemenT")).expect("write");
        }),
        ("an object's file removed", |out| {
            fs::remove_file(out.join("prod-a/_cluster/namespace-bed-management.yaml")).expect("rm");
        }),
        ("an extra file", |out| {
            fs::write(out.join("prod-a/bed-management/extra.yaml"), "x: 1\n").expect("write");
        }),
        ("a lock part changed", |out| {
            let f = out.join("research-b/_cluster/plinth.lock.json");
            let text = fs::read_to_string(&f).expect("read");
            let changed = text.replacen("\"line\": ", "\"line\": 1", 1);
            assert_ne!(changed, text);
            fs::write(&f, changed).expect("write");
        }),
        ("a cluster's lock file changed", |out| {
            let f = out.join("research-b/plinth.lock.json");
            let text = fs::read_to_string(&f).expect("read");
            fs::write(&f, text.replacen("\"version\": 2", "\"version\":  2", 1)).expect("write");
        }),
        ("the kustomization changed", |out| {
            let f = out.join("prod-a/kustomization.yaml");
            let text = fs::read_to_string(&f).expect("read");
            fs::write(&f, format!("{text}# mine\n")).expect("write");
        }),
    ];
    for (what, tamper) in tampering {
        tamper(&out);
        edit("er-capacity.yaml");
        build(Some(false), what);
        edit("er-capacity.yaml");
        build(Some(true), &format!("the build after: {what}"));
    }
}
