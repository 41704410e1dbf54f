//! Generate: synthetic platforms for benchmarks and tests, deterministic from a seed.
//!
//! `platform(n, seed)` writes N projects with datasets, GPU pools and allocations, and model
//! rollouts and apps in realistic ratios (per 100 projects: 50 datasets, 2 GPU pools with
//! allocations for 50 projects, 25 canary rollouts, 10 Streamlit apps).
//! `kustomize_tree(n, seed)` writes, from the same seed, a kustomize tree (a base plus one
//! overlay per tenant) producing the Namespace, ResourceQuota, LimitRange, RoleBinding and
//! NetworkPolicy objects plinth emits for each project, for a comparison on equal work.
//! Both return files by relative path; the CLI writes them.

use std::collections::BTreeMap;
use std::fmt::Write;

/// A small deterministic PRNG (SplitMix64): no dependency, same numbers everywhere.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// In `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// Files of a generated platform.
pub type Files = BTreeMap<String, String>;

const TEAMS: &[&str] = &[
    "er",
    "icu",
    "radiology",
    "oncology",
    "cardio",
    "neuro",
    "pharmacy",
    "lab",
    "ops",
    "finance",
    "surgery",
    "peds",
];
const WORDS: &[&str] = &[
    "forecast", "triage", "capacity", "imaging", "flow", "risk", "signals", "quality", "census",
    "staffing",
];

/// The per-tenant values both generators share.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub name: String,
    pub cpu: u64,
    pub memory_gi: u64,
    pub pods: u64,
    pub owners: Vec<String>,
    pub group: String,
}

/// The tenants of a seed: the same in the platform and the kustomize tree.
pub fn tenants(n: usize, seed: u64) -> Vec<Tenant> {
    let mut rng = Rng::new(seed);
    (0..n)
        .map(|i| {
            let team = rng.pick(TEAMS);
            let word = rng.pick(WORDS);
            let name = format!("{team}-{word}-{i:05}");
            Tenant {
                cpu: rng.range(4, 128),
                memory_gi: rng.range(16, 512),
                pods: rng.range(20, 400),
                owners: vec![
                    format!("owner{i}a@hospital.example"),
                    format!("owner{i}b@hospital.example"),
                ],
                group: format!("{team}-analysts"),
                name,
            }
        })
        .collect()
}

const PLATFORM: &str = "apiVersion: plinth.dev/v1alpha1
kind: Platform
metadata:
  name: synthetic
spec:
  clusters:
    - name: prod
      kubernetesVersion: \"1.32\"
      provider: aws
      region: eu-west-1
      production: true
      gpuPools: [POOLS]
  defaults:
    storageClass: gp3
  instanceTypes:
    - name: cpu-2
      cpu: 2
      memory: 8Gi
  identity:
    groupPrefix: \"oidc:\"
  serving:
    mesh: istio
    kserve:
      restrictedStorageInitializer: true
";

/// A synthetic platform of `n` projects.
pub fn platform(n: usize, seed: u64) -> Files {
    let mut files = Files::new();
    let ts = tenants(n, seed);
    let mut rng = Rng::new(seed ^ 0xD1B5_4A32_D192_ED03);
    let pools = (n / 50).max(2);
    let pool_names: Vec<String> = (0..pools).map(|p| format!("gpu-pool-{p:03}")).collect();
    files.insert(
        "plinth.yaml".to_owned(),
        PLATFORM.replace("POOLS", &pool_names.join(", ")),
    );
    // Allocations: half the projects, spread over pools, within capacity.
    let mut allocations: Vec<Vec<(String, u64)>> = vec![Vec::new(); pools];
    let mut with_gpu = BTreeMap::new();
    for (i, t) in ts.iter().enumerate() {
        if i % 2 == 0 {
            let pool = (i / 2) % pools;
            // A canary rollout runs two versions of one GPU each.
            let gpu = rng.range(2, 8);
            allocations[pool].push((t.name.clone(), gpu));
            with_gpu.insert(t.name.clone(), pool);
        }
    }
    for (p, name) in pool_names.iter().enumerate() {
        let capacity: u64 = allocations[p].iter().map(|(_, g)| g).sum::<u64>().max(8);
        let mut s = format!(
            "apiVersion: plinth.dev/v1alpha1\nkind: GpuQuota\nmetadata:\n  name: {name}\nspec:\n  pool:\n    resourceName: nvidia.com/gpu\n    capacity: {capacity}\n    gpusPerNode: 8\n    nodeLabels:\n      node.kubernetes.io/instance-type: p4d.24xlarge\n    taints:\n      - key: nvidia.com/gpu\n        effect: NoSchedule\n  cohort: hospital\n  instanceTypes:\n    - name: {name}-1\n      gpu: 1\n      cpu: \"8\"\n      memory: 64Gi\n  allocations:{}\n",
            if allocations[p].is_empty() { " []" } else { "" }
        );
        for (project, gpu) in &allocations[p] {
            let _ = write!(s, "    - project: {project}\n      gpu: {gpu}\n");
        }
        files.insert(format!("gpu/{name}.yaml"), s);
    }
    for (i, t) in ts.iter().enumerate() {
        let mut s = format!(
            "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: {}\nspec:\n  displayName: Project {i}\n  owners: [{}]\n  members:\n    - group: {}\n      role: edit\n  quota:\n    cpu: \"{}\"\n    memory: {}Gi\n    pods: {}\n  defaults:\n    cpu: 250m\n    memory: 512Mi\n",
            t.name,
            t.owners.join(", "),
            t.group,
            t.cpu,
            t.memory_gi,
            t.pods
        );
        if let Some(pool) = with_gpu.get(&t.name) {
            let _ = writeln!(s, "  instanceTypes: [{}-1]", pool_names[*pool]);
        }
        if i % 3 == 0 {
            s.push_str("  volumes:\n    shared:\n      capacity: 100Gi\n");
        }
        files.insert(format!("projects/{}.yaml", t.name), s);
    }
    // Datasets: one per two projects, read by its project and sometimes a neighbour.
    let mut mountable = BTreeMap::new();
    for i in (0..n).step_by(2) {
        let t = &ts[i];
        let name = format!("data-{i:05}");
        let kind = rng.range(0, 3);
        // Object storage and NFS can be mounted into an App; git and env data cannot.
        mountable.insert(i, kind <= 1);
        let source = match kind {
            0 => format!(
                "    s3:\n      bucket: hospital-data-{i:05}\n      region: eu-west-1\n  version: v{}\n",
                rng.range(1, 99)
            ),
            1 => format!(
                "    nfs:\n      server: nfs.hospital.example\n      path: /exports/{name}\n  version: snap-{}\n",
                rng.range(1, 999)
            ),
            2 => format!(
                "    git:\n      url: https://git.hospital.example/data/{name}.git\n      ref: {:040x}\n",
                rng.next_u64() as u128 * 7919
            ),
            _ => "    env:\n      variables:\n        REGION: emea\n".to_owned(),
        };
        let mut s = format!(
            "apiVersion: plinth.dev/v1alpha1\nkind: Dataset\nmetadata:\n  name: {name}\nspec:\n  source:\n{source}  sensitivity: internal\n  access:\n    - project: {}\n      mode: read-only\n",
            t.name
        );
        if i + 1 < n {
            // Storage can be shared read-write; git and env data are pinned, read-only.
            let mode = if kind <= 1 { "read-write" } else { "read-only" };
            let _ = write!(s, "    - project: {}\n      mode: {mode}\n", ts[i + 1].name);
        }
        files.insert(format!("datasets/{name}.yaml"), s);
    }
    rollouts(&mut files, &ts, &with_gpu, &pool_names);
    // Apps: a Streamlit dashboard for one project in ten, on the data it may read; rendered
    // from the example repository's template.
    let mut apps = false;
    for i in (5..n).step_by(10) {
        let t = &ts[i];
        let name = format!("dashboard-{i:05}");
        let mut s = format!(
            "apiVersion: plinth.dev/v1alpha1\nkind: App\nmetadata:\n  name: {name}\nspec:\n  project: {}\n  template: streamlit\n  instanceType: cpu-2\n  values:\n    image: registry.hospital.example/{}/dashboard:1.{}.0\n    replicas: {}\n",
            t.name,
            t.name,
            rng.range(0, 9),
            rng.range(1, 3),
        );
        if mountable.get(&(i - 1)) == Some(&true) {
            let _ = writeln!(s, "    datasets: [data-{:05}]", i - 1);
        }
        files.insert(format!("apps/{name}.yaml"), s);
        apps = true;
    }
    if apps {
        for (path, text) in TEMPLATES {
            files.insert((*path).to_owned(), (*text).to_owned());
        }
    }
    files
}

/// Rollouts: one per four projects, on GPU when the project has some (`with_gpu`: a project's
/// pool).
fn rollouts(
    files: &mut Files,
    ts: &[Tenant],
    with_gpu: &BTreeMap<String, usize>,
    pool_names: &[String],
) {
    for i in (0..ts.len()).step_by(4) {
        let t = &ts[i];
        let name = format!("model-{i:05}");
        let sizing = match with_gpu.get(&t.name) {
            Some(pool) => format!("  instanceType: {}-1\n  replicas: 1\n", pool_names[*pool]),
            None => "  resources:\n    cpu: \"2\"\n    memory: 4Gi\n  replicas: 2\n".to_owned(),
        };
        let s = format!(
            "apiVersion: plinth.dev/v1alpha1\nkind: ModelRollout\nmetadata:\n  name: {name}\nspec:\n  project: {}\n  model:\n    format: sklearn\n{sizing}  traffic:\n    strategy: canary\n    versions:\n      - name: v1\n        storageUri: s3://models/{name}/1\n        weight: 90\n      - name: v2\n        storageUri: s3://models/{name}/2\n        weight: 10\n",
            t.name
        );
        files.insert(format!("models/{name}.yaml"), s);
    }
}

/// The App template the generated Apps use, from the example repository.
const TEMPLATES: &[(&str, &str)] = &[
    (
        "templates/streamlit.yaml.j2",
        include_str!("../../examples/repo/templates/streamlit.yaml.j2"),
    ),
    (
        "templates/streamlit.schema.json",
        include_str!("../../examples/repo/templates/streamlit.schema.json"),
    ),
    (
        "templates/lib/security.j2",
        include_str!("../../examples/repo/templates/lib/security.j2"),
    ),
];

/// A projects-only platform: the same tenants as [`kustomize_tree`], for equal work.
pub fn projects_only(n: usize, seed: u64) -> Files {
    let mut files = Files::new();
    files.insert(
        "plinth.yaml".to_owned(),
        PLATFORM
            .replace("      gpuPools: [POOLS]\n", "")
            .replace("      production: true\n", ""),
    );
    for t in tenants(n, seed) {
        files.insert(
            format!("projects/{}.yaml", t.name),
            format!(
                "apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: {}\nspec:\n  owners: [{}]\n  members:\n    - group: {}\n      role: edit\n  quota:\n    cpu: \"{}\"\n    memory: {}Gi\n    pods: {}\n  defaults:\n    cpu: 250m\n    memory: 512Mi\n",
                t.name,
                t.owners.join(", "),
                t.group,
                t.cpu,
                t.memory_gi,
                t.pods
            ),
        );
    }
    files
}

/// A kustomize tree producing, per tenant, the Namespace, ResourceQuota, LimitRange,
/// RoleBindings and NetworkPolicy plinth emits for the same project.
pub fn kustomize_tree(n: usize, seed: u64) -> Files {
    let mut files = Files::new();
    files.insert(
        "base/kustomization.yaml".to_owned(),
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - namespace.yaml\n  - quota.yaml\n  - limitrange.yaml\n  - rolebinding-admin.yaml\n  - rolebinding-edit.yaml\n  - networkpolicy.yaml\nlabels:\n  - pairs:\n      app.kubernetes.io/managed-by: plinth\n".to_owned(),
    );
    files.insert(
        "base/namespace.yaml".to_owned(),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: tenant\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n    pod-security.kubernetes.io/audit: restricted\n    pod-security.kubernetes.io/warn: restricted\n".to_owned(),
    );
    files.insert(
        "base/quota.yaml".to_owned(),
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: quota\nspec:\n  hard:\n    requests.cpu: \"1\"\n    requests.memory: 1Gi\n    pods: \"1\"\n".to_owned(),
    );
    files.insert(
        "base/limitrange.yaml".to_owned(),
        "apiVersion: v1\nkind: LimitRange\nmetadata:\n  name: defaults\nspec:\n  limits:\n    - type: Container\n      defaultRequest:\n        cpu: 250m\n        memory: 512Mi\n".to_owned(),
    );
    for role in ["admin", "edit"] {
        files.insert(
            format!("base/rolebinding-{role}.yaml"),
            format!("apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata:\n  name: plinth-{role}\nroleRef:\n  apiGroup: rbac.authorization.k8s.io\n  kind: ClusterRole\n  name: {role}\nsubjects: []\n"),
        );
    }
    files.insert(
        "base/networkpolicy.yaml".to_owned(),
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: isolation\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n  ingress:\n    - from:\n        - podSelector: {}\n".to_owned(),
    );
    let mut root = String::from(
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n",
    );
    for t in tenants(n, seed) {
        let _ = writeln!(root, "  - tenants/{}", t.name);
        let subjects_admin: String = t
            .owners
            .iter()
            .map(|o| format!("          - apiGroup: rbac.authorization.k8s.io\n            kind: User\n            name: {o}\n"))
            .collect();
        files.insert(
            format!("tenants/{}/kustomization.yaml", t.name),
            format!(
                "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nnamespace: {n}\nresources:\n  - ../../base\nlabels:\n  - pairs:\n      plinth.dev/project: {n}\npatches:\n  - target:\n      kind: Namespace\n      name: tenant\n    patch: |-\n      - op: replace\n        path: /metadata/name\n        value: {n}\n  - target:\n      kind: ResourceQuota\n    patch: |-\n      - op: replace\n        path: /spec/hard\n        value:\n          requests.cpu: \"{cpu}\"\n          requests.memory: {mem}Gi\n          pods: \"{pods}\"\n  - target:\n      kind: RoleBinding\n      name: plinth-admin\n    patch: |-\n      - op: replace\n        path: /subjects\n        value:\n{subjects_admin}  - target:\n      kind: RoleBinding\n      name: plinth-edit\n    patch: |-\n      - op: replace\n        path: /subjects\n        value:\n          - apiGroup: rbac.authorization.k8s.io\n            kind: Group\n            name: \"oidc:{group}\"\n",
                n = t.name,
                cpu = t.cpu,
                mem = t.memory_gi,
                pods = t.pods,
                group = t.group,
            ),
        );
    }
    files.insert("kustomization.yaml".to_owned(), root);
    files
}

/// What the unit tests that compile a generated platform's files share.
#[cfg(test)]
pub(crate) mod testing {
    #![allow(clippy::unwrap_used)]

    pub(crate) use super::Files;

    /// The specs of `files`, every document typed.
    pub(crate) fn specs_of(files: &Files) -> crate::specs::Specs {
        let source = crate::load::MemSource {
            files: files
                .iter()
                .map(|(p, t)| (p.clone(), t.clone().into_bytes()))
                .collect(),
        };
        let checked = crate::check_source(&source, &crate::Options::default()).unwrap();
        assert!(checked.specs.broken.is_empty(), "every document typed");
        checked.specs
    }

    /// The first file under `dir` holding `needle`.
    pub(crate) fn file_with(files: &Files, dir: &str, needle: &str) -> String {
        files
            .iter()
            .find(|(p, t)| p.starts_with(dir) && t.contains(needle))
            .map(|(p, _)| p.clone())
            .unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generation_is_deterministic() {
        assert_eq!(platform(40, 7), platform(40, 7));
        assert_ne!(platform(40, 7), platform(40, 8));
        assert_eq!(kustomize_tree(10, 7), kustomize_tree(10, 7));
    }

    #[test]
    fn generated_platforms_check_clean() {
        for (n, seed) in [(1, 1), (17, 2), (120, 3)] {
            let mut src = crate::load::MemSource::new();
            for (p, t) in platform(n, seed) {
                src = src.with(&p, t);
            }
            let built = crate::build_source(&src, &crate::Options::default()).expect("loads");
            let errors: Vec<_> = built
                .checked
                .diagnostics
                .into_sorted()
                .into_iter()
                .filter(|d| d.is_error())
                .collect();
            assert!(errors.is_empty(), "n={n}: {errors:#?}");
            assert!(built.lowered.is_some());
        }
    }
}
