//! Policy: Rego guardrails over specs and manifests, with conftest's conventions.
//!
//! Policies are Rego (v1 syntax by default, v0 on request) evaluated by `regorus`. As with
//! conftest, rules named `deny`, `violation` and `warn` (and `deny_<name>` … variants) in the
//! selected packages (`main` by default) are evaluated once per input, a rule's value is a
//! string or an object with `msg`, and `exception` rules exempt an input from named rules.
//!
//! Inputs are every spec document as written and every compiled manifest. Cross-object rules
//! read the whole platform from `data.plinth`: `specs` (kind → name → document), `manifests`
//! (cluster → objects), `resolved` (per project: clusters, production, allocations, whole-GPU
//! total, datasets, members, rollouts; per pool: capacity and allocated GPUs; per cluster:
//! production and provider) and `parameters` (the Platform's `policies.parameters`). A rule
//! evaluated on the Platform document runs exactly once, which is where platform-wide rules
//! belong; its findings may name another spec with a `location` object
//! (`{"kind", "name", "field"}`) to be reported there.
//!
//! Findings are diagnostics: `deny`/`violation` are errors (P001), `warn` warnings (P002).
//! A policy that does not parse (P003) or fails while evaluating (P004) is reported at its own
//! file and line. Each evaluation is bounded in time; inputs and policies are bounded in size.
//!
//! Results may be memoised per input between runs ([`Memo`]): a rule's result is keyed by the
//! policy set, the rule, the content of the input and of the `data` documents it reads, for
//! rules that read nothing else ([`pure_definitions`]); findings are rebuilt at the input's
//! current place, and failures are never memoised.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::diag::{Code, Diagnostic, Diagnostics, Label, Pos, Span};
use crate::lower::{Lowered, Origin};
use crate::model::Kind;
use crate::output::hex;
use crate::parse::{Document, FieldPath};
use crate::specs::Specs;

mod native;
mod projects;

pub use projects::ProjectDigests;
use projects::{ByProject, HashWriter, PROJECTS, project_entries};

/// A policy file.
#[derive(Debug, Clone)]
pub struct PolicyFile {
    /// Shown in diagnostics: `policies/gpu.rego`, `<plinth>/gpu_cap.rego`.
    pub path: Arc<str>,
    pub text: Arc<str>,
}

/// How policies are evaluated.
#[derive(Debug, Clone)]
pub struct PolicyOptions {
    /// Packages whose rules are evaluated (`main` by default).
    pub namespaces: Vec<String>,
    /// Evaluate every package.
    pub all_namespaces: bool,
    /// Parse policies as Rego v0.
    pub rego_v0: bool,
    /// Longest one evaluation may take.
    pub timeout: Duration,
    /// Longest all evaluations of one run may take together (every rule on every input).
    pub budget: Duration,
    /// Most memory one evaluation may add to the process, in bytes.
    pub memory: u64,
    /// Documents merged into `data` (conftest's `--data`): an object, `None` for none.
    pub data: Option<Value>,
}

impl Default for PolicyOptions {
    fn default() -> Self {
        PolicyOptions {
            namespaces: vec!["main".to_owned()],
            all_namespaces: false,
            rego_v0: false,
            timeout: Duration::from_secs(2),
            budget: Duration::from_secs(60),
            memory: 512 * 1024 * 1024,
            data: None,
        }
    }
}

/// What the evaluations of one run share: the deadline of the run's budget, and the rules that
/// failed (stopped by a limit): those are reported once and not evaluated again, so one looping
/// rule costs one timeout, not one per input.
#[derive(Debug)]
struct RunState {
    budget: Duration,
    deadline: std::time::Instant,
    /// The budget ran out (reported once).
    exhausted: std::sync::atomic::AtomicBool,
    /// `package.rule` of rules stopped by a limit.
    broken: std::sync::Mutex<BTreeSet<String>>,
}

/// Turns transparent huge pages off for this process; binaries call it first thing.
///
/// regorus installs mimalloc as the global allocator (for its memory limits). mimalloc
/// reserves its arena with `MADV_HUGEPAGE` and hands freed pages back to the kernel 10 ms
/// later, so memory reused across the pipeline's stages faults in — and the kernel zeroes — a
/// whole 2 MiB page at a time: a third of the CPU of a one-file build at 10,000 projects, and
/// 0.4 s of a cold `check` (docs/benchmarks.md). With 4 KiB pages the same reuse costs a
/// fraction. Failing (a kernel without the call) changes nothing but speed.
pub fn without_huge_pages() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = rustix::thread::disable_transparent_huge_pages(true);
}

/// Bytes the process has allocated (through regorus' accounting allocator).
fn allocated_bytes() -> u64 {
    regorus::flush_thread_memory_counters();
    let previous = regorus::global_memory_limit();
    regorus::set_global_memory_limit(Some(0));
    let usage = match regorus::check_global_memory_limit() {
        Err(regorus::LimitError::MemoryLimitExceeded { usage, .. }) => usage,
        _ => 0,
    };
    regorus::set_global_memory_limit(previous);
    usage
}

/// Bounds the memory of policy evaluation while alive: the process may grow by the budget.
///
/// regorus' limit is one global value, so budgets are shared: the first budget taken sets the
/// limit (usage then plus its bytes), budgets taken while it is alive join it, and the limit is
/// lifted when the last one is dropped. Measuring usage briefly sets the limit to zero, which
/// only happens while no budget is alive (every evaluation holds one), so it can never stop a
/// concurrent evaluation.
pub struct MemoryBudget;

/// Budgets alive.
static BUDGETS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

impl MemoryBudget {
    pub fn new(bytes: u64) -> MemoryBudget {
        let mut alive = BUDGETS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if *alive == 0 {
            regorus::set_global_memory_limit(Some(allocated_bytes().saturating_add(bytes)));
        }
        *alive += 1;
        MemoryBudget
    }
}

impl Drop for MemoryBudget {
    fn drop(&mut self) {
        let mut alive = BUDGETS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *alive = alive.saturating_sub(1);
        if *alive == 0 {
            regorus::set_global_memory_limit(None);
        }
    }
}

/// Largest policy file accepted.
const MAX_POLICY_BYTES: usize = 1024 * 1024;

/// How the default library's files are named (`<plinth>/gpu_cap.rego`).
const LIBRARY_PREFIX: &str = "<plinth>/";

/// The default library shipped with plinth (`policies/` of this repository), embedded.
pub fn default_library() -> Vec<PolicyFile> {
    include!(concat!(env!("OUT_DIR"), "/default_policies.rs"))
        .into_iter()
        .map(|(name, text): (&str, &str)| PolicyFile {
            path: Arc::from(format!("{LIBRARY_PREFIX}{name}")),
            text: Arc::from(text),
        })
        .collect()
}

/// The rule kinds of conftest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum RuleKind {
    Deny,
    Violation,
    Warn,
}

/// The kind of a rule conftest evaluates, by its name: `^(deny|violation)(_[a-zA-Z0-9]+)*$`
/// and `^warn(_[a-zA-Z0-9]+)*$`, exactly conftest's patterns.
fn rule_kind(name: &str) -> Option<RuleKind> {
    let (kind, rest) = [
        ("deny", RuleKind::Deny),
        ("violation", RuleKind::Violation),
        ("warn", RuleKind::Warn),
    ]
    .into_iter()
    .find_map(|(prefix, kind)| name.strip_prefix(prefix).map(|rest| (kind, rest)))?;
    if rest.is_empty() {
        return Some(kind);
    }
    let segments = rest.strip_prefix('_')?;
    segments
        .split('_')
        .all(|s| !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric()))
        .then_some(kind)
}

/// A rule to evaluate: `data.<package>.<name>`, and where it is written.
#[derive(Debug, Clone)]
struct Rule {
    package: String,
    name: String,
    kind: RuleKind,
    file: Arc<str>,
    line: u32,
    /// The `kind`s of input the rule can fire on, from literal guards in every one of its
    /// definitions (`input.kind == "Pod"`, `input.kind in {"Pod", "Job"}`); `None`: any.
    kinds: Option<BTreeSet<String>>,
}

impl Rule {
    /// The rule's name without its `deny_` / `warn_` / `violation_` prefix (empty for the bare
    /// rule): what `exception` rules name (conftest's `removeRulePrefix`).
    fn suffix(&self) -> &str {
        self.name.split_once('_').map_or("", |(_, s)| s)
    }
}

/// One finding of a rule: its message and, for an object, the object (`details`, `location`).
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    pub msg: String,
    /// The rule that produced it, as conftest queries it: `data.main.deny`.
    pub query: String,
    /// The finding as the rule wrote it (a string, or an object with `msg`).
    pub value: Value,
    rule: usize,
}

/// What one package's rules made of one input, counted as `conftest test` counts: every
/// definition of a `deny`/`violation`/`warn` rule is a test; one that yields nothing (an
/// empty set, or undefined) passes; a rule an `exception` names is an exception, however many
/// findings it has.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome {
    pub namespace: String,
    pub successes: usize,
    pub failures: Vec<Finding>,
    pub warnings: Vec<Finding>,
    /// One per exception that matched, as conftest reports it:
    /// `data.main.exception[_][_] == "run_as_root"`.
    pub exceptions: Vec<String>,
}

/// A rule's result on one input, as memoised: what [`collect`] needs to rebuild its findings at
/// the input's current place (never a span, which could go stale).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Memoized {
    /// `exception` rules exempted the rule this many times.
    Excepted(usize),
    /// The rule was undefined on the input.
    Undefined,
    /// The rule's value (well-formed: every finding a string or an object with a `msg`).
    Value(Value),
    /// The findings of every rule on the inputs of a unit or a document (see `Bundles`): one
    /// entry replays them all. Typed, not a `Value`: tens of thousands are read per run.
    Bundle(BundleEntry),
}

/// A [`Memoized::Bundle`]: the places of the inputs it covers (sorted), and per finding
/// `[place, engine, rule, the rule's value]` (usually none).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BundleEntry {
    positions: Vec<u32>,
    found: Vec<Value>,
}

/// Results of rules per input, kept between runs: keyed by the policy-set hash (every policy
/// file's path and text, the options and plinth's fingerprint), the rule (`package.name`) and
/// the hash of the input's content. Only rules that read nothing but `input` are memoised
/// (see [`pure_definitions`]); failures (P003, P004, a spent budget) never are.
pub trait Memo: Send + Sync {
    /// What identifies this build of plinth (mixed into the policy-set hash).
    fn fingerprint(&self) -> &str;
    fn get(&self, set: &str, rule: &str, input: &str) -> Option<Memoized>;
    /// `f` of the result kept for `rule` on `input`, when there is one, read in place (a
    /// memo that keeps its results may lend them instead of copying them).
    fn visit(&self, set: &str, rule: &str, input: &str, f: &mut dyn FnMut(&Memoized)) {
        if let Some(m) = self.get(set, rule, input) {
            f(&m);
        }
    }
    fn put(&self, set: &str, rule: &str, input: &str, result: Memoized);
    /// A result held for this run's lookups only (a persistent memo does not keep it): what
    /// the native rules decided, microseconds to decide again, needed in the run only to make
    /// the bundles of the units and documents that are kept.
    fn put_scratch(&self, set: &str, rule: &str, input: &str, result: Memoized) {
        self.put(set, rule, input, result);
    }
    /// The run of `set` is over (a persistent memo writes itself here).
    fn finish(&self, set: &str);
    /// `set` will be looked up soon (a persistent memo reads it now).
    fn prefetch(&self, _set: &str) {}
}

/// The content hash of an input (128 bits of the sha256 of its JSON).
fn input_hash(input: &Value) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    // Writing into the hasher cannot fail.
    let _ = serde_json::to_writer(HashWriter(&mut h), input);
    hex(&h.finalize()[..16])
}

/// A memo and the policy set it is used for.
#[derive(Clone)]
struct MemoUse {
    memo: Arc<dyn Memo>,
    set: Arc<str>,
}

/// Whether `files` are the embedded default library, exactly.
fn is_default_library(files: &[PolicyFile]) -> bool {
    let key = |f: &PolicyFile| (f.path.clone(), f.text.clone());
    let loaded: BTreeSet<_> = files.iter().map(key).collect();
    loaded == default_library().iter().map(key).collect()
}

/// The regorus engine of an [`Engine`]: made with its policies when loaded, or — for the
/// default library, which the native rules evaluate and which is known to load — when first
/// needed (a rule the native rules defer, an exception, `print`): reading the library is 2–3 ms
/// of every compile's CPU otherwise.
#[derive(Clone)]
struct Regorus {
    engine: Option<regorus::Engine>,
    /// What to make it of, when it is not made yet.
    files: Arc<[PolicyFile]>,
    opts: PolicyOptions,
    /// The one made of them, shared by this engine's copies (one per chunk of inputs): each
    /// copy that needs it takes a copy of it, as each took a copy of one made at once.
    made: Arc<std::sync::OnceLock<regorus::Engine>>,
}

/// A loaded set of policies, ready to evaluate many inputs.
#[derive(Clone)]
pub struct Engine {
    engine: Regorus,
    rules: Vec<Rule>,
    /// Definitions of `deny`/`violation`/`warn` rules per selected package (conftest's count of
    /// tests).
    definitions: BTreeMap<String, usize>,
    /// Packages with an `exception` rule.
    exception_packages: BTreeSet<String>,
    /// Every package loaded.
    packages: BTreeSet<String>,
    timeout: Duration,
    /// The limit of regorus' execution timer now: the timeout, or what is left of the run's
    /// budget when that is less ([`Engine::bound_by_budget`]).
    timer: Duration,
    /// Skip rules whose literal kind guards exclude an input (their findings cannot change;
    /// off where conftest's counts must be exact).
    prune: bool,
    /// Per input kind, the rules (indices, grouped by package) that can fire on it.
    by_kind: std::sync::Arc<std::sync::Mutex<BTreeMap<String, RuleGroups>>>,
    run: std::sync::Arc<RunState>,
    /// Per rule, whether its result depends on the input and fixed data paths alone (and so
    /// may be memoised).
    cacheable: Vec<bool>,
    /// Per memoisable rule, the data paths it reads.
    reads: Vec<Option<BTreeSet<Vec<String>>>>,
    /// Per rule, its name in the memo: `package.name`, with the hash of the data it reads.
    memo_ids: Vec<String>,
    /// Hash of the loaded files and the options (the policy set, before plinth's fingerprint).
    files_hash: String,
    memo: Option<MemoUse>,
    /// `data` named for the memo but not yet given to regorus ([`Engine::hand_over`]): a run
    /// whose every result is memoised or decided natively never converts it.
    pending: Option<Arc<Value>>,
    /// Answer from the memo and [`native`] only: a rule they do not answer stops the input,
    /// counted in `misses` (the input is evaluated again once the data is handed over).
    memo_only: bool,
    misses: usize,
    /// The rules' values come from [`native`] where it decides them (the default library,
    /// loaded exactly as embedded), from regorus where it defers.
    native: bool,
    /// The `data` the rules read, as JSON (for [`native`]).
    data_json: Option<Arc<Value>>,
    /// The data holds only some projects' entries ([`Projects::None`], then
    /// [`Engine::add_projects`]): [`native`] defers where it reads one it lacks, and the data
    /// is not given to regorus.
    projects_partial: bool,
}

/// The parts of `data` at `paths` (each a path of keys from its root), at the same places:
/// moved out of `data` (the rest of it is dropped).
fn only_paths<'p>(mut data: Value, paths: impl IntoIterator<Item = &'p Vec<String>>) -> Value {
    let mut paths: Vec<&Vec<String>> = paths.into_iter().collect();
    paths.sort();
    if paths.iter().any(|p| p.is_empty()) {
        return data;
    }
    let mut out = serde_json::Map::new();
    let mut taken: Vec<&Vec<String>> = Vec::new();
    for path in paths {
        // A path below one already taken is in it (and was moved with it).
        if taken.iter().any(|t| path.starts_with(t)) {
            continue;
        }
        let Some(v) = path.iter().try_fold(&mut data, |v, seg| v.get_mut(seg)) else {
            continue;
        };
        insert_at(&mut out, path, v.take());
        taken.push(path);
    }
    Value::Object(out)
}

/// `{"plinth": view}`, by moving `view` (`json!` would copy all of it).
fn plinth_data(view: Value) -> Value {
    Value::Object(std::iter::once(("plinth".to_owned(), view)).collect())
}

/// Put `v` at `path` below `map`, making the objects on the way.
fn insert_at(map: &mut serde_json::Map<String, Value>, path: &[String], v: Value) {
    match path {
        [] => {}
        [last] => {
            map.insert(last.clone(), v);
        }
        [first, rest @ ..] => {
            let next = map
                .entry(first.clone())
                .or_insert_with(|| Value::Object(serde_json::Map::new()));
            if let Value::Object(m) = next {
                insert_at(m, rest, v);
            }
        }
    }
}

/// One input being evaluated: its content hash (when a memo is used) and whether the engine
/// has been given it.
struct InputState<'a> {
    input: InputRef<'a>,
    hash: Option<String>,
    set: bool,
    /// The input parsed from its text, for [`native`] rules (dropped with the state).
    parsed: Option<Value>,
}

impl InputState<'_> {
    /// The input as JSON, parsed from its text once when it is kept as text.
    fn json(&mut self) -> &Value {
        match self.input {
            InputRef::Object(o) if o.unparsed_text().is_some() => {
                self.parsed.get_or_insert_with(|| {
                    o.unparsed_text()
                        .and_then(|t| serde_json::from_str(t).ok())
                        .unwrap_or(Value::Null)
                })
            }
            other => other.get(),
        }
    }
}

/// An input: a value, or a compiled object (parsed only when a rule is evaluated on it, not
/// when every result comes from the memo).
#[derive(Clone, Copy)]
enum InputRef<'a> {
    Value(&'a Value),
    Object(&'a crate::output::Obj),
}

impl<'a> InputRef<'a> {
    fn get(&self) -> &'a Value {
        match self {
            InputRef::Value(v) => v,
            InputRef::Object(o) => o,
        }
    }
}

/// Rule indices grouped by package.
type RuleGroups = std::sync::Arc<Vec<Vec<usize>>>;

/// Parse an error position `file:line:col` out of a regorus message.
fn error_position(msg: &str, file: &str) -> Option<Pos> {
    let at = msg.find(&format!("{file}:"))? + file.len() + 1;
    let rest = &msg[at..];
    let mut parts = rest.split(|c: char| !c.is_ascii_digit());
    let line = parts.next()?.parse().ok()?;
    let col = parts.next().and_then(|c| c.parse().ok()).unwrap_or(1);
    Some(Pos::new(line, col))
}

fn policy_label(file: &Arc<str>, pos: Pos) -> Label {
    Label::new(Span::new(file.clone(), pos, pos))
}

/// Rule heads at the start of a line: `deny`, `warn_x`, `violation contains`, `deny[msg]`, with
/// whether the head is `name if` without `contains` (a boolean rule, which conftest refuses).
fn rule_heads(text: &str) -> Vec<(String, RuleKind, u32, bool)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let name_end = line
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(line.len());
        let (name, after) = line.split_at(name_end);
        let Some(kind) = rule_kind(name) else {
            continue;
        };
        let after = after.trim_start();
        let word = |w: &str| {
            after.strip_prefix(w).is_some_and(|r| {
                r.is_empty() || !r.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            })
        };
        let is_head = after.is_empty()
            || after.starts_with('[')
            || after.starts_with('=')
            || after.starts_with(":=")
            || after.starts_with('{')
            || word("contains")
            || word("if");
        if is_head {
            out.push((name.to_owned(), kind, i as u32 + 1, word("if")));
        }
    }
    out
}

/// Whether a package is selected by `--namespace` patterns: literally, or, when a pattern has
/// a glob character (`*`, `?`, `[`), by glob (`*` spans dots), as conftest selects.
pub fn namespace_matches(package: &str, patterns: &[String]) -> bool {
    if patterns.iter().any(|p| p.contains(['*', '?', '['])) {
        patterns
            .iter()
            .any(|p| glob_match(p.as_bytes(), package.as_bytes()))
    } else {
        patterns.iter().any(|p| p == package)
    }
}

/// `*`, `?` and `[…]` (ranges, `^`/`!` negation) over bytes, like Go's `path.Match` on names
/// without `/`.
fn glob_match(p: &[u8], s: &[u8]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some(b'*') => (0..=s.len()).any(|i| glob_match(&p[1..], &s[i..])),
        Some(b'?') => !s.is_empty() && glob_match(&p[1..], &s[1..]),
        Some(b'[') => {
            let Some(c) = s.first() else { return false };
            let Some(close) = p.iter().skip(2).position(|&b| b == b']').map(|i| i + 2) else {
                return false;
            };
            let mut class = &p[1..close];
            let negate = matches!(class.first(), Some(b'^' | b'!'));
            if negate {
                class = &class[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= (class[i]..=class[i + 2]).contains(c);
                    i += 3;
                } else {
                    hit |= class[i] == *c;
                    i += 1;
                }
            }
            hit != negate && glob_match(&p[close + 1..], &s[1..])
        }
        Some(&b) => s.first() == Some(&b) && glob_match(&p[1..], &s[1..]),
    }
}

/// The kinds a rule definition (its head at `head_line`) is guarded by: a body statement, or a
/// condition after `if` on the head line, that is exactly `input.kind == "X"` or
/// `input.kind in {"X", "Y"}`. `None` when there is no such guard (the rule may fire on any
/// input). Conservative: only these literal forms count.
fn guard_kinds(text: &str, head_line: u32) -> Option<BTreeSet<String>> {
    let lines: Vec<&str> = text.lines().collect();
    let head = *lines.get(head_line as usize - 1)?;
    let parse = |stmt: &str| -> Option<BTreeSet<String>> {
        let stmt = stmt.trim().trim_end_matches(';').trim();
        if let Some(lit) = stmt.strip_prefix("input.kind == ") {
            let lit = lit.trim();
            return (lit.len() >= 2
                && lit.starts_with('"')
                && lit.ends_with('"')
                && !lit[1..lit.len() - 1].contains('"'))
            .then(|| BTreeSet::from([lit[1..lit.len() - 1].to_owned()]));
        }
        let set = stmt.strip_prefix("input.kind in {")?.strip_suffix('}')?;
        let mut out = BTreeSet::new();
        for item in set.split(',') {
            let item = item.trim();
            if !(item.len() >= 2 && item.starts_with('"') && item.ends_with('"'))
                || item[1..item.len() - 1].contains('"')
            {
                return None;
            }
            out.insert(item[1..item.len() - 1].to_owned());
        }
        (!out.is_empty()).then_some(out)
    };
    // One-line rule: `deny contains msg if input.kind == "X"` (nothing after the guard).
    if !head.trim_end().ends_with('{') {
        return head.split_once(" if ").and_then(|(_, cond)| parse(cond));
    }
    // Block rule: statements until the closing `}` at the start of a line.
    for line in lines.iter().skip(head_line as usize) {
        if line.starts_with('}') {
            break;
        }
        if let Some(kinds) = parse(line) {
            return Some(kinds);
        }
    }
    None
}

fn package_of(text: &str) -> Option<String> {
    text.lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("package "))
        .map(|p| p.split_whitespace().next().unwrap_or_default().to_owned())
}

/// Which definitions of the loaded policies are pure functions of `input` and of documents
/// of `data` at fixed paths (`data.plinth.parameters`), with those paths: their value on an
/// input may be memoised keyed by the input and the content of those documents (see
/// [`Memo`]). Definitions left out depend on more.
///
/// A static, conservative reading of the text. Each package is cut into its top-level
/// definitions (a line at bracket depth 0 starting with a name); a definition is impure when
/// it mentions `data` other than a definition of a loaded package (`data.<pkg>.<name>`, or
/// `<alias>.<name>` through an `import data.<pkg>`) or a path `data.a.b…` that leads into no
/// package (read whole, however it is indexed after), calls a builtin whose result is not a
/// function of its arguments (`time.now_ns`, `http.send`, …), or uses a definition that is
/// impure; a reference to a whole package uses all its definitions. A package laid out in a
/// way this reading does not follow (a top-level line that continues an expression) is impure
/// as a whole.
fn pure_definitions(files: &[&PolicyFile]) -> BTreeMap<(String, String), BTreeSet<Vec<String>>> {
    let packages = read_packages(files);
    let deps = direct_uses(&packages);
    let impure = impure_definitions(&deps);
    pure_reads(&deps, &impure)
}

/// A package as [`pure_definitions`] reads it.
#[derive(Default)]
struct Package {
    /// Definition name → paths it mentions (`data.x.y`, `lib.images`, `floating`).
    defs: BTreeMap<String, Vec<Vec<String>>>,
    /// Import alias → the `data` path it names (without `data`).
    aliases: BTreeMap<String, Vec<String>>,
    /// Not read reliably: every definition is impure.
    opaque: bool,
}

/// Words that cannot start a definition: a top-level line starting with one continues an
/// expression.
const KEYWORDS: &[&str] = &[
    "else", "not", "some", "every", "with", "as", "in", "if", "contains", "input", "data", "true",
    "false", "null", "package", "import",
];

/// Builtins whose result is not a function of their arguments.
const IMPURE_BUILTINS: &[&str] = &[
    "time.now_ns",
    "rand.intn",
    "uuid.rfc4122",
    "uuid.parse",
    "http.send",
    "opa.runtime",
    "net.lookup_ip_addr",
    "trace",
];

/// A definition: its package and name.
type Def = (String, String);

/// The definitions one uses and the data paths it reads.
type Uses = (Vec<Def>, BTreeSet<Vec<String>>);

/// What a path refers to: a definition, every definition of a package, a document of `data`
/// that no package defines (read at a fixed path), or something local (a variable, a pure
/// builtin); something impure is `None` where a `Target` is expected.
enum Target {
    Def(String, String),
    Package(String),
    Data(Vec<String>),
    Local,
}

/// Cut every loaded file into its package's top-level definitions.
fn read_packages(files: &[&PolicyFile]) -> BTreeMap<String, Package> {
    let mut packages: BTreeMap<String, Package> = BTreeMap::new();
    for f in files {
        let Some(name) = package_of(&f.text) else {
            continue;
        };
        read_package(packages.entry(name).or_default(), &f.text);
    }
    packages
}

/// Add the definitions of one file's text, with the paths each mentions, to its package.
fn read_package(pkg: &mut Package, text: &str) {
    let mut depth = 0i32;
    let mut raw = false;
    let mut current: Option<String> = None;
    let mut last_line_end = String::new();
    for line in text.lines() {
        let code = code_of(line, &mut raw);
        let starts_at_top = depth == 0 && !raw;
        for c in code.chars() {
            match c {
                '(' | '[' | '{' => depth += 1,
                ')' | ']' | '}' => depth -= 1,
                _ => {}
            }
        }
        let trimmed = code.trim_end();
        if trimmed.trim().is_empty() {
            continue;
        }
        let paths = paths_of(&code);
        if starts_at_top && code.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_') {
            let first = paths.first().cloned().unwrap_or_default();
            let head = first.first().map(String::as_str).unwrap_or_default();
            if head == "package" {
                last_line_end = trimmed.to_owned();
                continue;
            }
            if head == "import" {
                if let Some((alias, path)) = import_alias(&code) {
                    pkg.aliases.insert(alias, path);
                }
                last_line_end = trimmed.to_owned();
                continue;
            }
            if continues_expression(head, &last_line_end) {
                pkg.opaque = true;
            } else {
                let name = if head == "default" {
                    paths.get(1).and_then(|p| p.first()).cloned()
                } else {
                    Some(head.to_owned())
                };
                let Some(name) = name else {
                    pkg.opaque = true;
                    continue;
                };
                pkg.defs.entry(name.clone()).or_default();
                current = Some(name);
            }
        }
        match &current {
            Some(name) => pkg.defs.entry(name.clone()).or_default().extend(paths),
            None => pkg.opaque = true,
        }
        last_line_end = trimmed.to_owned();
    }
    if depth != 0 || raw {
        pkg.opaque = true;
    }
}

/// A line without its comment and string contents (quotes kept, raw strings blanked);
/// `raw` carries whether a raw string is open across lines.
fn code_of(line: &str, raw: &mut bool) -> String {
    let mut code = String::new();
    let mut chars = line.chars().peekable();
    let mut in_str = false;
    while let Some(c) = chars.next() {
        if *raw {
            if c == '`' {
                *raw = false;
            }
            code.push(' ');
            continue;
        }
        if in_str {
            if c == '\\' {
                chars.next();
            } else if c == '"' {
                in_str = false;
                code.push('"');
            }
            continue;
        }
        match c {
            '#' => break,
            '"' => {
                in_str = true;
                code.push('"');
            }
            '`' => {
                *raw = true;
                code.push(' ');
            }
            _ => code.push(c),
        }
    }
    code
}

/// The alias and `data` path (without `data`) of an `import data.a.b [as c]` line.
fn import_alias(code: &str) -> Option<(String, Vec<String>)> {
    let words: Vec<&str> = code.split_whitespace().collect();
    let path = words.get(1)?;
    let segs: Vec<String> = path.split('.').map(str::to_owned).collect();
    if segs.first().map(String::as_str) != Some("data") {
        return None;
    }
    let alias = match (words.get(2), words.get(3)) {
        (Some(&"as"), Some(a)) => (*a).to_owned(),
        _ => segs.last().cloned().unwrap_or_default(),
    };
    Some((alias, segs[1..].to_vec()))
}

/// Whether a top-level line starting with `head` continues the expression of the line before
/// (which ended with `last_line_end`) rather than starting a definition.
fn continues_expression(head: &str, last_line_end: &str) -> bool {
    KEYWORDS.contains(&head)
        || last_line_end.ends_with(|c: char| "=,:|&+-*/<>!;".contains(c))
        || ["if", "contains", "else", "in", "not", "some", "with", "as"]
            .iter()
            .any(|k| {
                last_line_end
                    .rsplit(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .next()
                    == Some(k)
            })
}

/// What a path into `data` (without `data`) refers to.
fn resolve_data(packages: &BTreeMap<String, Package>, segs: &[String]) -> Option<Target> {
    // The longest loaded package the path starts with.
    let found = (1..=segs.len()).rev().find_map(|n| {
        let name = segs[..n].join(".");
        packages.contains_key(&name).then(|| (name, &segs[n..]))
    });
    let Some((pkg, rest)) = found else {
        // Plain data, unless the path leads into packages (`data.plinth_defaults`).
        let inside = |p: &str| {
            let parts: Vec<&str> = p.split('.').collect();
            parts.len() >= segs.len() && parts.iter().zip(segs).all(|(a, b)| a == b)
        };
        return (!segs.is_empty() && !packages.keys().any(|p| inside(p)))
            .then(|| Target::Data(segs.to_vec()));
    };
    match rest.first() {
        None => Some(Target::Package(pkg)),
        Some(def) if packages[&pkg].defs.contains_key(def) => Some(Target::Def(pkg, def.clone())),
        Some(_) => None,
    }
}

/// What a path mentioned in package `own` (read as `p`) refers to.
fn resolve(
    packages: &BTreeMap<String, Package>,
    own: &str,
    p: &Package,
    path: &[String],
) -> Option<Target> {
    let head = path.first().map(String::as_str).unwrap_or_default();
    if head == "data" {
        return resolve_data(packages, &path[1..]);
    }
    if let Some(target) = p.aliases.get(head) {
        let mut full = target.clone();
        full.extend(path[1..].iter().cloned());
        return resolve_data(packages, &full);
    }
    let dotted = path.iter().take(2).cloned().collect::<Vec<_>>().join(".");
    if IMPURE_BUILTINS.contains(&dotted.as_str()) || IMPURE_BUILTINS.contains(&head) {
        return None;
    }
    if p.defs.contains_key(head) {
        return Some(Target::Def(own.to_owned(), head.to_owned()));
    }
    Some(Target::Local)
}

/// Per definition: the definitions it uses and the data paths it reads; `None`: impure by
/// itself.
fn direct_uses(packages: &BTreeMap<String, Package>) -> BTreeMap<Def, Option<Uses>> {
    let mut deps: BTreeMap<Def, Option<Uses>> = BTreeMap::new();
    for (name, p) in packages {
        for (def, paths) in &p.defs {
            let mut out = Some((Vec::new(), BTreeSet::new()));
            if p.opaque {
                out = None;
            }
            for path in paths {
                let Some((list, reads)) = out.as_mut() else {
                    break;
                };
                match resolve(packages, name, p, path) {
                    None => out = None,
                    Some(Target::Local) => {}
                    Some(Target::Data(segs)) => {
                        reads.insert(segs);
                    }
                    Some(Target::Def(q, d)) => list.push((q, d)),
                    Some(Target::Package(q)) => {
                        if packages[&q].opaque {
                            out = None;
                        } else {
                            list.extend(packages[&q].defs.keys().map(|d| (q.clone(), d.clone())));
                        }
                    }
                }
            }
            deps.insert((name.clone(), def.clone()), out);
        }
    }
    deps
}

/// The impure definitions: by themselves, or through a definition they use (to a fixed
/// point).
fn impure_definitions(deps: &BTreeMap<Def, Option<Uses>>) -> BTreeSet<Def> {
    let mut impure: BTreeSet<Def> = deps
        .iter()
        .filter(|(_, d)| d.is_none())
        .map(|(k, _)| k.clone())
        .collect();
    loop {
        let more: Vec<Def> = deps
            .iter()
            .filter(|(k, _)| !impure.contains(*k))
            .filter(|(_, d)| {
                d.as_ref().is_some_and(|(d, _)| {
                    d.iter()
                        .any(|x| impure.contains(x) || !deps.contains_key(x))
                })
            })
            .map(|(k, _)| k.clone())
            .collect();
        if more.is_empty() {
            break;
        }
        impure.extend(more);
    }
    impure
}

/// Per pure definition, the data paths of every definition it reaches.
fn pure_reads(
    deps: &BTreeMap<Def, Option<Uses>>,
    impure: &BTreeSet<Def>,
) -> BTreeMap<Def, BTreeSet<Vec<String>>> {
    let mut out = BTreeMap::new();
    for key in deps.keys().filter(|k| !impure.contains(*k)) {
        let mut seen = BTreeSet::from([key.clone()]);
        let mut stack = vec![key.clone()];
        let mut reads = BTreeSet::new();
        while let Some(k) = stack.pop() {
            if let Some(Some((uses, r))) = deps.get(&k) {
                reads.extend(r.iter().cloned());
                for u in uses {
                    if seen.insert(u.clone()) {
                        stack.push(u.clone());
                    }
                }
            }
        }
        out.insert(key.clone(), reads);
    }
    out
}

/// The dotted paths of a line of code (comments and strings removed): `data.a.b`, `lib.x`,
/// `input.kind`, `count`. A path followed by `[` ends there.
fn paths_of(code: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let ident = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut out = Vec::new();
    let mut i = 0;
    let mut in_str = false;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'"' {
            in_str = !in_str;
            i += 1;
            continue;
        }
        if in_str
            || !(b.is_ascii_alphabetic() || b == b'_')
            || (i > 0 && (ident(bytes[i - 1]) || bytes[i - 1] == b'.'))
        {
            i += 1;
            continue;
        }
        let mut path = Vec::new();
        loop {
            let start = i;
            while i < bytes.len() && ident(bytes[i]) {
                i += 1;
            }
            path.push(code[start..i].to_owned());
            if i + 1 < bytes.len()
                && bytes[i] == b'.'
                && (bytes[i + 1].is_ascii_alphabetic() || bytes[i + 1] == b'_')
            {
                i += 1;
            } else {
                break;
            }
        }
        out.push(path);
    }
    out
}

/// A regorus engine set up for the options: the Rego version and the per-rule timer.
fn regorus_engine(opts: &PolicyOptions) -> regorus::Engine {
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(opts.rego_v0);
    engine.set_execution_timer_config(timer_config(opts.timeout));
    engine
}

/// regorus' execution timer at `limit`.
fn timer_config(limit: Duration) -> regorus::utils::limits::ExecutionTimerConfig {
    regorus::utils::limits::ExecutionTimerConfig {
        limit,
        // Reading the clock on every unit of work costs more than the work.
        check_interval: std::num::NonZeroU32::new(64).unwrap_or(std::num::NonZeroU32::MIN),
    }
}

/// What loading the policy files found.
#[derive(Default)]
struct Loaded<'f> {
    /// The rules of the selected packages, sorted by package and name.
    rules: Vec<Rule>,
    /// Definitions of rules per selected package.
    definitions: BTreeMap<String, usize>,
    /// Selected packages with an `exception` rule.
    exception_packages: BTreeSet<String>,
    /// Every package loaded.
    packages: BTreeSet<String>,
    /// The files that loaded.
    files: Vec<&'f PolicyFile>,
}

/// Add the files to the engine (those that do not load become diagnostics) and read the rules
/// of the selected packages.
fn load_files<'f>(
    mut engine: Option<&mut regorus::Engine>,
    files: &'f [PolicyFile],
    opts: &PolicyOptions,
    diags: &mut Diagnostics,
) -> Loaded<'f> {
    let mut loaded = Loaded::default();
    for f in files {
        // Without an engine: files known to load (added when the engine is made).
        if let Some(e) = engine.as_deref_mut()
            && !add_file(e, f, opts, diags)
        {
            continue;
        }
        loaded.files.push(f);
        let Some(package) = package_of(&f.text) else {
            continue;
        };
        loaded.packages.insert(package.clone());
        let selected = opts.all_namespaces || namespace_matches(&package, &opts.namespaces);
        if !selected {
            continue;
        }
        loaded.read_rules(f, &package, opts, diags);
        if f.text.lines().any(|l| l.starts_with("exception")) {
            loaded.exception_packages.insert(package);
        }
    }
    loaded
        .rules
        .sort_by(|a, b| (&a.package, &a.name).cmp(&(&b.package, &b.name)));
    loaded
}

/// Add one file to the engine; `false` (with a diagnostic) when it is too large or does not
/// load.
fn add_file(
    engine: &mut regorus::Engine,
    f: &PolicyFile,
    opts: &PolicyOptions,
    diags: &mut Diagnostics,
) -> bool {
    if f.text.len() > MAX_POLICY_BYTES {
        diags.push(
            Diagnostic::new(
                Code::PolicyBroken,
                format!(
                    "policy `{}` is larger than {MAX_POLICY_BYTES} bytes",
                    f.path
                ),
            )
            .at(policy_label(&f.path, Pos::new(1, 1))),
        );
        return false;
    }
    if let Err(e) = engine.add_policy(f.path.to_string(), f.text.to_string()) {
        let msg = e.to_string();
        let pos = error_position(&msg, &f.path).unwrap_or(Pos::new(1, 1));
        let first = msg
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("parse error")
            .trim()
            .to_owned();
        diags.push(
            Diagnostic::new(Code::PolicyBroken, format!("policy `{}` does not load: {first}", f.path))
                .at(policy_label(&f.path, pos))
                .hint(if opts.rego_v0 {
                    "the policy is read as Rego v0 (`--rego-v0`); check its syntax"
                } else {
                    "policies are read as Rego v1; for older policies (`deny[msg] { … }`) pass `--rego-v0`"
                }),
        );
        return false;
    }
    true
}

impl Loaded<'_> {
    /// Read the `deny`/`violation`/`warn` rules of a file of a selected package (definitions
    /// of a rule already seen widen the kinds it may fire on).
    fn read_rules(
        &mut self,
        f: &PolicyFile,
        package: &str,
        opts: &PolicyOptions,
        diags: &mut Diagnostics,
    ) {
        for (name, kind, line, boolean) in rule_heads(&f.text) {
            if boolean && !opts.rego_v0 {
                // conftest refuses these (open-policy-agent/opa#6509): `deny if …` is a
                // boolean, not a set of messages.
                diags.push(
                    Diagnostic::new(
                        Code::PolicyBroken,
                        format!("rule `{name}` uses `if` without `contains`, so its value is `true`, not a set of messages"),
                    )
                    .at(policy_label(&f.path, Pos::new(line, 1)))
                    .hint(format!("write `{name} contains msg if {{ … }}`; conftest refuses this form too")),
                );
                continue;
            }
            *self.definitions.entry(package.to_owned()).or_default() += 1;
            let kinds = guard_kinds(&f.text, line);
            if let Some(r) = self
                .rules
                .iter_mut()
                .find(|r| r.package == package && r.name == name)
            {
                // Another definition of the same rule: it may fire on the union of kinds.
                r.kinds = match (r.kinds.take(), kinds) {
                    (Some(mut a), Some(b)) => {
                        a.extend(b);
                        Some(a)
                    }
                    _ => None,
                };
            } else {
                self.rules.push(Rule {
                    package: package.to_owned(),
                    name,
                    kind,
                    file: f.path.clone(),
                    line,
                    kinds,
                });
            }
        }
    }

    /// Per rule, the data paths its result depends on (its exceptions' too); `None`: it
    /// depends on more.
    fn rule_reads(&self) -> Vec<Option<BTreeSet<Vec<String>>>> {
        let pure = pure_definitions(&self.files);
        let reads_of = |p: &str, n: &str| pure.get(&(p.to_owned(), n.to_owned()));
        self.rules
            .iter()
            .map(|r| {
                let mut reads = reads_of(&r.package, &r.name)?.clone();
                if self.exception_packages.contains(&r.package) {
                    reads.extend(reads_of(&r.package, "exception")?.iter().cloned());
                }
                Some(reads)
            })
            .collect()
    }
}

/// Hash of the policy files and the options that change what they yield.
fn policy_files_hash(files: &[PolicyFile], opts: &PolicyOptions) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    let mut field = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    for f in files {
        field(f.path.as_bytes());
        field(f.text.as_bytes());
    }
    field(
        format!(
            "{:?}|{}|{}",
            opts.namespaces, opts.all_namespaces, opts.rego_v0
        )
        .as_bytes(),
    );
    field(
        opts.data
            .as_ref()
            .map(Value::to_string)
            .unwrap_or_default()
            .as_bytes(),
    );
    hex(&h.finalize())
}

/// The rules of one package being evaluated on one input, and what they found so far.
struct PackageRun<'p> {
    pkg: &'p str,
    place: &'p dyn Fn(Option<&Value>) -> Label,
    out: Outcome,
    /// The package's `exception` value on the input and whether it evaluated without
    /// failing; evaluated on the first rule the memo does not answer.
    exceptions: Option<(Value, bool)>,
    /// Rules that failed or were not evaluated: never counted as passing.
    unevaluated: usize,
}

impl PackageRun<'_> {
    /// conftest's query for an exception of `rule`, one per exception found.
    fn exception_query(&self, rule: &Rule) -> String {
        format!("data.{}.exception[_][_] == {:?}", self.pkg, rule.suffix())
    }
}

impl Engine {
    /// Load policies. Files that do not parse become diagnostics; the rest still load.
    pub fn new(files: &[PolicyFile], opts: &PolicyOptions, diags: &mut Diagnostics) -> Engine {
        Engine::loaded(files, opts, diags, false)
    }

    /// Load policies known to load (the default library, checked by test), their regorus
    /// engine made when first needed ([`Regorus`]).
    fn deferred(files: &[PolicyFile], opts: &PolicyOptions, diags: &mut Diagnostics) -> Engine {
        Engine::loaded(files, opts, diags, true)
    }

    fn loaded(
        files: &[PolicyFile],
        opts: &PolicyOptions,
        diags: &mut Diagnostics,
        defer: bool,
    ) -> Engine {
        let mut engine = (!defer).then(|| regorus_engine(opts));
        let loaded = load_files(engine.as_mut(), files, opts, diags);
        let engine = Regorus {
            engine,
            files: if defer { files.into() } else { Arc::from([]) },
            opts: opts.clone(),
            made: Arc::default(),
        };
        let reads = loaded.rule_reads();
        let cacheable = reads.iter().map(Option::is_some).collect();
        let files_hash = policy_files_hash(files, opts);
        let Loaded {
            rules,
            definitions,
            exception_packages,
            packages,
            files: _,
        } = loaded;
        let mut built = Engine {
            engine,
            rules,
            definitions,
            exception_packages,
            packages,
            timeout: opts.timeout,
            timer: opts.timeout,
            prune: true,
            by_kind: Default::default(),
            run: std::sync::Arc::new(RunState {
                budget: opts.budget,
                deadline: std::time::Instant::now() + opts.budget,
                exhausted: std::sync::atomic::AtomicBool::new(false),
                broken: std::sync::Mutex::new(BTreeSet::new()),
            }),
            memo_ids: Vec::new(),
            cacheable,
            reads,
            files_hash,
            memo: None,
            pending: None,
            memo_only: false,
            misses: 0,
            native: false,
            data_json: None,
            projects_partial: false,
        };
        built.name_for_memo(&json!({}), None);
        built
    }

    /// Name every rule for the memo after the documents of `data` it reads; `projects`: the
    /// digest of every project's entry ([`ProjectDigests::whole`]) when `data` lacks them.
    fn name_for_memo(&mut self, data: &Value, projects: Option<&str>) {
        use rayon::prelude::*;
        // Each path read once, the paths digested in parallel (some are whole maps of the
        // platform: every project's placement).
        let paths: BTreeSet<&Vec<String>> = self.reads.iter().flatten().flatten().collect();
        let digests: BTreeMap<&Vec<String>, String> = paths
            .into_par_iter()
            .map(|path| {
                use sha2::Digest;
                let v = path.iter().try_fold(data, |v, seg| v.get(seg));
                if path.iter().eq(PROJECTS.iter()) {
                    // Every entry's digest, then the map's of them (what a revision keeps).
                    let whole = projects.map(str::to_owned);
                    if let Some(d) = whole.or_else(|| v.and_then(projects::whole_of_map)) {
                        return (path, d);
                    }
                }
                let mut h = sha2::Sha256::new();
                let _ = serde_json::to_writer(HashWriter(&mut h), &v);
                (path, hex(&h.finalize()))
            })
            .collect();
        self.memo_ids = self
            .rules
            .iter()
            .zip(&self.reads)
            .map(|(r, reads)| {
                let id = format!("{}.{}", r.package, r.name);
                match reads {
                    Some(reads) if !reads.is_empty() => {
                        use sha2::Digest;
                        let mut h = sha2::Sha256::new();
                        for path in reads {
                            let digest = &digests[path];
                            h.update(path.join(".").as_bytes());
                            h.update([0]);
                            h.update(digest.as_bytes());
                        }
                        format!("{id}@{}", hex(&h.finalize()[..16]))
                    }
                    _ => id,
                }
            })
            .collect();
    }

    /// Memoise the results of rules that read only `input` in `memo`; returns the policy-set
    /// hash.
    fn use_memo(&mut self, memo: Arc<dyn Memo>) -> Arc<str> {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(memo.fingerprint().as_bytes());
        h.update([0]);
        h.update(self.files_hash.as_bytes());
        let set: Arc<str> = Arc::from(hex(&h.finalize()));
        self.memo = Some(MemoUse {
            memo,
            set: set.clone(),
        });
        set
    }

    /// Evaluate every selected rule on every input, whatever its kind guards say (for
    /// conftest's exact counts).
    pub fn exact(mut self) -> Engine {
        self.prune = false;
        self.by_kind = Default::default();
        self
    }

    /// Gather the output of `print` (for [`Engine::take_prints`]) instead of writing it to
    /// standard error.
    pub fn gather_prints(&mut self) {
        self.regorus().set_gather_prints(true);
    }

    /// The output of `print` since the last call: `file:line: message`.
    pub fn take_prints(&mut self) -> Vec<String> {
        match self.engine.engine.as_mut() {
            Some(e) => e.take_prints().unwrap_or_default(),
            None => Vec::new(),
        }
    }

    /// Every package loaded, sorted.
    pub fn packages(&self) -> &BTreeSet<String> {
        &self.packages
    }

    /// Whether the run's budget is spent (the first to notice reports it, at `rule`).
    fn out_of_budget(&self, rule: &Rule, diags: &mut Diagnostics) -> bool {
        use std::sync::atomic::Ordering;
        if self.run.exhausted.load(Ordering::Relaxed) {
            return true;
        }
        if std::time::Instant::now() < self.run.deadline {
            return false;
        }
        self.spend_budget(rule, diags);
        true
    }

    /// The run's budget is spent: reported once (at `rule`), and nothing more is evaluated.
    fn spend_budget(&self, rule: &Rule, diags: &mut Diagnostics) {
        use std::sync::atomic::Ordering;
        if !self.run.exhausted.swap(true, Ordering::Relaxed) {
            diags.push(
                Diagnostic::new(
                    Code::PolicyFailed,
                    format!(
                        "policies took longer than their budget of {:?} for this run; evaluation stopped at rule `{}`, and the inputs left were not checked",
                        self.run.budget, rule.name
                    ),
                )
                .at(policy_label(&rule.file, Pos::new(rule.line, 1)))
                .hint("make the slow rules cheaper (a rule is evaluated once per input), or raise `--policy-budget-ms`; a run out of budget never passes"),
            );
        }
    }

    /// The rules that can fire on an input of `kind`, grouped by package (memoised).
    fn applicable(&self, kind: &str) -> std::sync::Arc<Vec<Vec<usize>>> {
        let mut memo = self
            .by_kind
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(g) = memo.get(kind) {
            return g.clone();
        }
        let mut groups: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, r) in self.rules.iter().enumerate() {
            if !self.prune || r.kinds.as_ref().is_none_or(|k| k.contains(kind)) {
                groups.entry(r.package.as_str()).or_default().push(i);
            }
        }
        let g = std::sync::Arc::new(groups.into_values().collect::<Vec<_>>());
        memo.insert(kind.to_owned(), g.clone());
        g
    }

    /// How many rules are evaluated per input.
    pub fn rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Set `data`: the `--data` documents with `extra` merged over them (`data.plinth`,
    /// `data.conftest`).
    pub fn set_data(&mut self, user: Option<&Value>, extra: Value, diags: &mut Diagnostics) {
        self.prepare_data(user, extra, diags, None);
        self.hand_over(diags);
    }

    /// Whether a rule reads into `data.plinth.resolved.projects` otherwise than as the whole
    /// map: through a path above it (all of `data.plinth`) or below it (one project's entry).
    fn reads_into_projects(&self) -> bool {
        self.reads.iter().flatten().flatten().any(|p| {
            let n = p.len().min(PROJECTS.len());
            p.len() != PROJECTS.len() && p.iter().take(n).eq(PROJECTS.iter().take(n))
        })
    }

    /// Add projects' entries to data prepared without them ([`Projects::None`]); `all`: they
    /// are every project's (the data is then what it is made whole, in the same order).
    fn add_projects(&mut self, entries: serde_json::Map<String, Value>, all: bool) {
        if !self.projects_partial {
            return;
        }
        let native = self.data_json.take().is_some();
        if let Some(data) = self.pending.take() {
            let mut data = Arc::unwrap_or_clone(data);
            let at = PROJECTS
                .iter()
                .try_fold(&mut data, |v, seg| v.get_mut(*seg));
            if let Some(Value::Object(map)) = at {
                if all {
                    *map = entries;
                } else {
                    map.extend(entries);
                }
            }
            let data = Arc::new(data);
            if native {
                self.data_json = Some(data.clone());
            }
            self.pending = Some(data);
        }
        self.projects_partial = !all;
    }

    /// [`Engine::set_data`] without giving the data to regorus yet (see
    /// [`Engine::hand_over`]): the rules are named for the memo after it.
    fn prepare_data(
        &mut self,
        user: Option<&Value>,
        extra: Value,
        diags: &mut Diagnostics,
        projects: Option<&str>,
    ) {
        if let Some(e) = self.engine.engine.as_mut() {
            e.clear_data();
        }
        let mut data = user.cloned().unwrap_or_else(|| json!({}));
        if let (Some(d), Value::Object(extra)) = (data.as_object_mut(), extra) {
            for (k, v) in extra {
                if k == "plinth" && d.contains_key("plinth") {
                    diags.push(
                        Diagnostic::new(
                            Code::PolicyFailed,
                            "the `--data` documents define `plinth`, which is plinth's view of the platform",
                        )
                        .hint("move that data under another top-level key"),
                    );
                }
                d.insert(k, v);
            }
        }
        self.name_for_memo(&data, projects);
        // When every rule's reads are known, the engine gets only what they read (the same
        // analysis the memo relies on): the whole platform is many times larger.
        let data = match self
            .reads
            .iter()
            .map(Option::as_ref)
            .collect::<Option<Vec<_>>>()
        {
            Some(reads) => only_paths(data, reads.into_iter().flatten()),
            None => data,
        };
        let data = Arc::new(data);
        if self.native {
            self.data_json = Some(data.clone());
        }
        self.pending = Some(data);
    }

    /// Give regorus the data prepared by [`Engine::prepare_data`] (once).
    fn hand_over(&mut self, diags: &mut Diagnostics) {
        if self.projects_partial {
            // Never so (every entry is added first): were it, the run fails rather than judge
            // the platform on part of its data.
            self.pending = None;
            diags.push(
                Diagnostic::new(
                    Code::PolicyFailed,
                    "policies were to read only some projects' entries of `data.plinth.resolved.projects`; nothing was evaluated on that data",
                )
                .hint("this is a bug in plinth, please report it; without a cache (no `--cache-dir`, or `plinth plan --no-cache`) the data is made whole"),
            );
            return;
        }
        let Some(data) = self.pending.take() else {
            return;
        };
        // Read from the JSON in place (no copy of it first).
        if let Err(e) = self.regorus().add_data(to_regorus(&data)) {
            diags.push(Diagnostic::new(
                Code::PolicyFailed,
                format!("cannot give policies their data: {e}"),
            ));
        }
    }

    /// Set `data.plinth` (the whole-platform view), over the `--data` documents.
    pub fn set_platform(&mut self, user: Option<&Value>, data: Value, diags: &mut Diagnostics) {
        self.set_data(user, plinth_data(data), diags);
    }

    /// Evaluate every selected rule on one input: per package with rules, what they found.
    /// `place` locates the input (with `None`) and an object finding's `location`.
    pub fn eval_input(
        &mut self,
        input: &Value,
        place: &dyn Fn(Option<&Value>) -> Label,
        diags: &mut Diagnostics,
    ) -> Vec<Outcome> {
        let kind = input
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        self.eval_input_known(InputRef::Value(input), kind, None, place, diags)
    }

    /// [`Engine::eval_input`] of an input whose content hash is known (a compiled object's
    /// `plinth.dev/spec-hash`: equal hashes, equal objects), so the memo need not hash it again.
    fn eval_input_known(
        &mut self,
        input: InputRef<'_>,
        kind: &str,
        known: Option<&str>,
        place: &dyn Fn(Option<&Value>) -> Label,
        diags: &mut Diagnostics,
    ) -> Vec<Outcome> {
        let groups = self.applicable(kind);
        if groups.is_empty()
            || self
                .run
                .exhausted
                .load(std::sync::atomic::Ordering::Relaxed)
        {
            // No rule can fire on this kind of input, or the budget is spent: nothing to
            // evaluate.
            return Vec::new();
        }
        // The input is given to the engine, and hashed, only when a rule needs it.
        let hash = self
            .memo
            .as_ref()
            .filter(|_| groups.iter().flatten().any(|&i| self.cacheable[i]))
            .map(|_| known.map_or_else(|| input_hash(input.get()), |h| format!("object:{h}")));
        let mut state = InputState {
            input,
            hash,
            set: false,
            parsed: None,
        };
        let mut out = Vec::new();
        for group in groups.iter() {
            let pkg = self.rules[group[0]].package.clone();
            out.push(self.eval_rules(&pkg, group, &mut state, place, diags));
        }
        out
    }

    /// Give the engine the input, once.
    fn give_input(&mut self, state: &mut InputState<'_>) {
        if !state.set {
            // Read from the JSON in place (no copy of it first).
            let input = match state.input {
                // An object kept as text is read as text (no `Value` made of it).
                InputRef::Object(o) if o.unparsed_text().is_some() => o
                    .unparsed_text()
                    .and_then(|t| regorus::Value::from_json_str(t).ok())
                    .unwrap_or(regorus::Value::Undefined),
                other => <regorus::Value as serde::Deserialize>::deserialize(other.get())
                    .unwrap_or(regorus::Value::Undefined),
            };
            self.regorus().set_input(input);
            state.set = true;
        }
    }

    /// The package's `exception` value on the input, and whether it was evaluated without
    /// failing.
    fn exceptions(&mut self, pkg: &str, state: &mut InputState<'_>) -> (Value, bool) {
        if !self.exception_packages.contains(pkg) {
            return (Value::Null, true);
        }
        self.give_input(state);
        match self.regorus().eval_rule(format!("data.{pkg}.exception")) {
            Ok(v) if v != regorus::Value::Undefined => {
                (serde_json::to_value(&v).unwrap_or(Value::Null), true)
            }
            Ok(_) => (Value::Null, true),
            Err(_) => (Value::Null, false),
        }
    }

    /// Memoise a rule's result on the input, when it may be; one [`native`] decided is kept for
    /// this run only ([`Memo::put_scratch`]: a cold compile at 10,000 projects had left 180,000
    /// such entries, 25 MB the next run read and dropped, beside the bundles that answer it).
    fn remember(&self, index: usize, state: &InputState<'_>, result: Memoized, native: bool) {
        // A verdict on an object whose text could not be read (it read as `null`) is never
        // kept: the compile fails (see `output::Body`).
        if matches!(state.input, InputRef::Object(o) if o.text_lost()) {
            return;
        }
        if let (Some(m), Some(hash), true) = (&self.memo, &state.hash, self.cacheable[index]) {
            if native {
                m.memo
                    .put_scratch(&m.set, &self.memo_ids[index], hash, result);
            } else {
                m.memo.put(&m.set, &self.memo_ids[index], hash, result);
            }
        }
    }

    /// Evaluate some rules of a package one at a time (a failing one is named), with the
    /// package's exceptions, as conftest does; results of rules that read only `input` come
    /// from the memo when it has them.
    fn eval_rules(
        &mut self,
        pkg: &str,
        rules: &[usize],
        state: &mut InputState<'_>,
        place: &dyn Fn(Option<&Value>) -> Label,
        diags: &mut Diagnostics,
    ) -> Outcome {
        let mut run = PackageRun {
            pkg,
            place,
            out: Outcome {
                namespace: pkg.to_owned(),
                ..Outcome::default()
            },
            exceptions: None,
            unevaluated: 0,
        };
        for &index in rules {
            if self.eval_rule(index, state, &mut run, diags).is_break() {
                run.unevaluated += rules.len();
                break;
            }
        }
        self.count_successes(run)
    }

    /// Evaluate one rule of the package on the input, or take its result from the memo;
    /// `Break` when the run's budget is spent.
    fn eval_rule(
        &mut self,
        index: usize,
        state: &mut InputState<'_>,
        run: &mut PackageRun<'_>,
        diags: &mut Diagnostics,
    ) -> ControlFlow<()> {
        let rule = self.rules[index].clone();
        let id = format!("{}.{}", rule.package, rule.name);
        if self.answer_from_memo(index, &id, state, run, diags) {
            return ControlFlow::Continue(());
        }
        let native = self.native_value(&rule, state);
        if native.is_none() && self.memo_only {
            self.misses += 1;
            return ControlFlow::Break(());
        }
        // conftest: `data.<pkg>.exception[_][_] == "<suffix>"`; each match is an
        // exception, and the rule's findings are not reported.
        if run.exceptions.is_none() {
            run.exceptions = Some(self.exceptions(run.pkg, state));
        }
        let (exception_value, exceptions_ok) =
            run.exceptions.clone().unwrap_or((Value::Null, false));
        let excepted = exception_matches(&exception_value, rule.suffix());
        if excepted > 0 {
            let query = run.exception_query(&rule);
            run.out
                .exceptions
                .extend(std::iter::repeat_n(query, excepted));
            if exceptions_ok {
                self.remember(index, state, Memoized::Excepted(excepted), false);
            }
            return ControlFlow::Continue(());
        }
        if self.is_broken(&id) {
            run.unevaluated += 1;
            return ControlFlow::Continue(());
        }
        if self.out_of_budget(&rule, diags) {
            return ControlFlow::Break(());
        }
        let started = std::time::Instant::now();
        let decided = native.is_some();
        let result = match native {
            Some(value) => Ok(Some(value)),
            None => {
                self.give_input(state);
                self.bound_by_budget();
                self.regorus()
                    .eval_rule(format!("data.{}.{}", rule.package, rule.name))
                    .map(|v| {
                        (v != regorus::Value::Undefined)
                            .then(|| serde_json::to_value(&v).unwrap_or(Value::Null))
                    })
            }
        };
        match result {
            // An undefined rule found nothing (counted as passing below).
            Ok(None) => {
                if exceptions_ok {
                    self.remember(index, state, Memoized::Undefined, decided);
                }
            }
            Ok(Some(value)) => {
                if !collect(&rule, index, &value, run.place, &mut run.out, diags) {
                    run.unevaluated += 1;
                } else if exceptions_ok {
                    self.remember(index, state, Memoized::Value(value), decided);
                }
            }
            Err(e) => {
                run.unevaluated += 1;
                let msg = first_line(&format!("{e:#}"));
                // Stopped by a timer set to what was left of the run's budget: the budget is
                // what ran out.
                let by_budget = self.timer < self.timeout
                    && (msg.contains("time limit") || msg.contains("TimeLimit"));
                if by_budget || self.out_of_budget(&rule, diags) {
                    self.spend_budget(&rule, diags);
                    return ControlFlow::Break(());
                }
                self.report_failure(&rule, &id, started, &msg, run.place, diags);
            }
        }
        ControlFlow::Continue(())
    }

    /// Bound the next evaluation by what is left of the run's budget when that is less than the
    /// timeout (a run's budget stops a running evaluation too, not only the next one).
    fn bound_by_budget(&mut self) {
        let left = self
            .run
            .deadline
            .saturating_duration_since(std::time::Instant::now());
        let limit = left.min(self.timeout).max(Duration::from_millis(1));
        if limit != self.timer {
            self.timer = limit;
            // (One made later starts with it.)
            if let Some(e) = self.engine.engine.as_mut() {
                e.set_execution_timer_config(timer_config(limit));
            }
        }
    }

    /// The rule's value on the input from [`native`], when this engine uses it and it decides.
    fn native_value(&self, rule: &Rule, state: &mut InputState<'_>) -> Option<Value> {
        if !self.native {
            return None;
        }
        let data = self.data_json.as_deref()?;
        let whole = !self.projects_partial;
        match native::eval(&rule.package, &rule.name, state.json(), data, whole) {
            native::Verdict::Value(v) => Some(v),
            native::Verdict::Defer => None,
        }
    }

    /// Evaluate the default library's rules natively ([`native`]) where they decide, when
    /// its files are exactly the embedded library (`embedded`: [`is_default_library`]).
    fn native_library(mut self, embedded: bool) -> Engine {
        self.native = embedded && library_digest(&default_library()) == native::WRITTEN_FOR;
        self
    }

    /// Its regorus engine, made now when it is not yet ([`Regorus`]): its files added (they
    /// load), its timer at the current limit.
    fn regorus(&mut self) -> &mut regorus::Engine {
        let Regorus {
            engine,
            files,
            opts,
            made,
        } = &mut self.engine;
        let timer = self.timer;
        engine.get_or_insert_with(|| {
            let mut e = made
                .get_or_init(|| {
                    let mut e = regorus_engine(opts);
                    for f in files.iter() {
                        let _ = e.add_policy(f.path.to_string(), f.text.to_string());
                    }
                    e
                })
                .clone();
            e.set_execution_timer_config(timer_config(timer));
            e
        })
    }

    /// Whether the rule named `id` was stopped on another input (and so is not evaluated).
    fn is_broken(&self, id: &str) -> bool {
        self.run
            .broken
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .contains(id)
    }

    /// Take the rule's result on the input from the memo, when it has one; whether it did.
    fn answer_from_memo(
        &self,
        index: usize,
        id: &str,
        state: &InputState<'_>,
        run: &mut PackageRun<'_>,
        diags: &mut Diagnostics,
    ) -> bool {
        let memoized = match (&self.memo, &state.hash) {
            (Some(m), Some(hash)) if self.cacheable[index] => {
                m.memo.get(&m.set, &self.memo_ids[index], hash)
            }
            _ => None,
        };
        let Some(memoized) = memoized else {
            return false;
        };
        let rule = &self.rules[index];
        match memoized {
            Memoized::Excepted(n) => {
                let query = run.exception_query(rule);
                run.out.exceptions.extend(std::iter::repeat_n(query, n));
            }
            _ if self.is_broken(id) => run.unevaluated += 1,
            Memoized::Undefined => {}
            Memoized::Value(value) => {
                if !collect(rule, index, &value, run.place, &mut run.out, diags) {
                    run.unevaluated += 1;
                }
            }
            // Not a rule's result (a memo whose keys collided would be a bug): evaluated.
            Memoized::Bundle(_) => return false,
        }
        true
    }

    /// Report a rule that failed on the input (`msg`); one stopped for time or memory is
    /// reported once, by the first input to stop it, and not evaluated again.
    fn report_failure(
        &self,
        rule: &Rule,
        id: &str,
        started: std::time::Instant,
        msg: &str,
        place: &dyn Fn(Option<&Value>) -> Label,
        diags: &mut Diagnostics,
    ) {
        let timed_out = started.elapsed() >= self.timeout
            || msg.contains("time limit")
            || msg.contains("TimeLimit");
        let out_of_memory = msg.contains("memory limit") || msg.contains("MemoryLimit");
        if (timed_out || out_of_memory)
            && !self
                .run
                .broken
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(id.to_owned())
        {
            // Another input found it first and reported it.
            return;
        }
        diags.push(
            Diagnostic::new(
                Code::PolicyFailed,
                if out_of_memory {
                    format!(
                        "rule `{}` used more memory than allowed and was stopped",
                        rule.name
                    )
                } else if timed_out {
                    format!(
                        "rule `{}` took longer than {:?} and was stopped; it is not evaluated on the other inputs",
                        rule.name, self.timeout
                    )
                } else {
                    format!("rule `{}` failed: {msg}", rule.name)
                },
            )
            .at(policy_label(&rule.file, Pos::new(rule.line, 1)))
            .related(place(None).note("while evaluating this input"))
            .hint("fix the policy; a failing rule is never taken as passing"),
        );
    }

    /// The package's outcome: every definition is a test; those that yielded no result
    /// passed.
    fn count_successes(&self, run: PackageRun<'_>) -> Outcome {
        let mut out = run.out;
        let results = out.failures.len()
            + out.warnings.len()
            + out.exceptions.len()
            + out.successes
            + run.unevaluated;
        let definitions = self.definitions.get(run.pkg).copied().unwrap_or(0);
        out.successes += definitions.saturating_sub(results);
        out
    }

    /// Evaluate an input and report its findings as diagnostics (`deny`/`violation` P001,
    /// `warn` P002) placed by `place`.
    fn report_input(
        &mut self,
        input: InputRef<'_>,
        kind: &str,
        known: Option<&str>,
        place: &dyn Fn(Option<&Value>) -> Label,
        diags: &mut Diagnostics,
    ) {
        for outcome in self.eval_input_known(input, kind, known, place, diags) {
            self.report_outcome(&outcome, place, diags);
        }
    }

    /// An outcome's findings as diagnostics (`deny`/`violation` P001, `warn` P002) placed by
    /// `place`.
    fn report_outcome(
        &self,
        outcome: &Outcome,
        place: &dyn Fn(Option<&Value>) -> Label,
        diags: &mut Diagnostics,
    ) {
        for (f, code) in outcome
            .failures
            .iter()
            .map(|f| (f, Code::PolicyDeny))
            .chain(outcome.warnings.iter().map(|f| (f, Code::PolicyWarn)))
        {
            let rule = &self.rules[f.rule];
            diags.push(
                Diagnostic::new(code, f.msg.clone())
                    .at(place(f.value.get("location")))
                    .related(
                        policy_label(&rule.file, Pos::new(rule.line, 1))
                            .note(format!("rule `{}`", rule.name)),
                    ),
            );
        }
    }
}

/// How many entries of an `exception` value (`exception[_][_]`) equal `name`.
fn exception_matches(v: &Value, name: &str) -> usize {
    let items = |v: &Value| -> Vec<Value> {
        match v {
            Value::Array(a) => a.clone(),
            Value::Object(o) => o.values().cloned().collect(),
            _ => Vec::new(),
        }
    };
    items(v)
        .iter()
        .flat_map(items)
        .filter(|x| x.as_str() == Some(name))
        .count()
}

/// Sort a rule's value into an outcome, as conftest does: only a set or array holds findings;
/// each is a string (its message) or an object with a string `msg`; an empty message, an empty
/// collection or any other value passes. `false` when a finding was malformed (reported).
fn collect(
    rule: &Rule,
    index: usize,
    value: &Value,
    place: &dyn Fn(Option<&Value>) -> Label,
    out: &mut Outcome,
    diags: &mut Diagnostics,
) -> bool {
    let items = match value {
        Value::Array(items) if !items.is_empty() => items,
        _ => {
            out.successes += 1;
            return true;
        }
    };
    let mut well_formed = true;
    for item in items {
        let msg = match item {
            Value::String(s) => s.clone(),
            Value::Object(o) => match o.get("msg") {
                Some(Value::String(s)) => s.clone(),
                _ => {
                    diags.push(
                        Diagnostic::new(
                            Code::PolicyFailed,
                            format!("rule `{}` returned an object without a string `msg`", rule.name),
                        )
                        .at(policy_label(&rule.file, Pos::new(rule.line, 1)))
                        .related(place(None).note("while evaluating this input"))
                        .hint("a finding is a string or an object `{\"msg\": …}`; conftest stops on this too"),
                    );
                    well_formed = false;
                    continue;
                }
            },
            // conftest ignores values of other types.
            _ => continue,
        };
        if msg.is_empty() {
            out.successes += 1;
            continue;
        }
        let finding = Finding {
            msg,
            query: format!("data.{}.{}", rule.package, rule.name),
            value: item.clone(),
            rule: index,
        };
        if rule.kind == RuleKind::Warn {
            out.warnings.push(finding);
        } else {
            out.failures.push(finding);
        }
    }
    well_formed
}

/// An error message on one line (regorus spreads them over several, with a source excerpt).
fn first_line(msg: &str) -> String {
    let one: Vec<&str> = msg
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('|'))
        .collect();
    let mut s = one.join(" ");
    if s.chars().count() > 300 {
        s = s.chars().take(300).collect::<String>() + "…";
    }
    if s.is_empty() {
        "unknown error".to_owned()
    } else {
        s
    }
}

/// The whole-platform view policies read as `data.plinth`.
pub fn platform_data(specs: &Specs, docs: &[Arc<Document>], lowered: Option<&Lowered>) -> Value {
    let by = ByProject::of(specs);
    platform_data_of(specs, docs, lowered, true, Projects::All(&by))
}

/// Which projects' entries a platform view holds ([`platform_data_of`]).
#[derive(Clone, Copy)]
enum Projects<'b, 's> {
    /// Every project's.
    All(&'b ByProject<'s>),
    /// None (the map is empty): the entries a run needs are added later
    /// ([`Engine::add_projects`]).
    None,
}

/// [`platform_data`], its `specs` (every document as JSON, the largest part) only when
/// `with_specs`.
fn platform_data_of(
    specs: &Specs,
    docs: &[Arc<Document>],
    lowered: Option<&Lowered>,
    with_specs: bool,
    projects: Projects<'_, '_>,
) -> Value {
    let mut by_kind: BTreeMap<&str, BTreeMap<String, Value>> = BTreeMap::new();
    for d in docs.iter().filter(|_| with_specs) {
        let j = d.root().to_json();
        if let (Some(k), Some(n)) = (j["kind"].as_str(), j["metadata"]["name"].as_str())
            && Kind::parse(k).is_some()
        {
            by_kind
                .entry(Kind::parse(k).map_or("", Kind::as_str))
                .or_default()
                .entry(n.to_owned())
                .or_insert(j);
        }
    }
    let manifests: BTreeMap<&str, Vec<&Value>> = lowered
        .map(|l| {
            l.clusters
                .iter()
                .map(|(c, o)| (c.as_str(), o.manifests.iter().map(|m| &*m.object).collect()))
                .collect()
        })
        .unwrap_or_default();
    let projects = match projects {
        Projects::All(by) => project_entries(specs, by, None),
        Projects::None => serde_json::Map::new(),
    };
    let pools: serde_json::Map<String, Value> = specs
        .gpu_quotas
        .iter()
        .map(|(n, q)| {
            let allocated: u64 = q.spec.allocations.iter().map(|a| u64::from(a.gpu)).sum();
            (
                n.clone(),
                json!({"capacity": q.spec.pool.capacity, "allocated": allocated, "resourceName": q.spec.pool.resource_name, "model": q.spec.pool.model}),
            )
        })
        .collect();
    let parameters = specs
        .platform
        .as_ref()
        .map_or(json!({}), |p| json!(p.spec.policies.parameters));
    let clusters: serde_json::Map<String, Value> = specs
        .platform
        .as_ref()
        .map(|p| {
            p.spec
                .clusters
                .iter()
                .map(|c| (c.name.clone(), json!({"production": c.production, "provider": c.provider, "region": c.region})))
                .collect()
        })
        .unwrap_or_default();
    // Built by moving, not through `json!` (which would copy every document once more).
    let specs_by_kind: serde_json::Map<String, Value> = by_kind
        .into_iter()
        .map(|(k, docs)| (k.to_owned(), Value::Object(docs.into_iter().collect())))
        .collect();
    let resolved: serde_json::Map<String, Value> = [
        ("projects".to_owned(), Value::Object(projects)),
        ("pools".to_owned(), Value::Object(pools)),
        ("clusters".to_owned(), Value::Object(clusters)),
    ]
    .into_iter()
    .collect();
    let manifests = serde_json::to_value(&manifests).unwrap_or_default();
    [
        ("specs".to_owned(), Value::Object(specs_by_kind)),
        ("manifests".to_owned(), manifests),
        ("resolved".to_owned(), Value::Object(resolved)),
        ("parameters".to_owned(), parameters),
    ]
    .into_iter()
    .collect::<serde_json::Map<String, Value>>()
    .into()
}

/// The engines with rules to evaluate: the default library's and the user's, each with its
/// `--data`.
fn engines<'o>(
    files: &[PolicyFile],
    opts: &'o PolicyOptions,
    diags: &mut Diagnostics,
) -> Vec<(Engine, Option<&'o Value>)> {
    // The default library is evaluated apart, in its own engine and packages
    // (`plinth_defaults.*`, every one selected), so no user policy can collide with it, and
    // `--namespace`, `--rego-v0` and `--data` are the user's policies' alone.
    let (library, user): (Vec<PolicyFile>, Vec<PolicyFile>) = files
        .iter()
        .cloned()
        .partition(|f| f.path.starts_with(LIBRARY_PREFIX));
    let library_opts = PolicyOptions {
        namespaces: Vec::new(),
        all_namespaces: true,
        rego_v0: false,
        data: None,
        ..opts.clone()
    };
    let mut engines: Vec<(Engine, Option<&Value>)> = Vec::new();
    if !library.is_empty() {
        // The embedded library loads (test `the_default_library_loads_as_deferred`): its
        // regorus engine is made only if a rule needs it.
        let embedded = is_default_library(&library);
        let engine = if embedded {
            Engine::deferred(&library, &library_opts, diags)
        } else {
            Engine::new(&library, &library_opts, diags)
        };
        let engine = engine.native_library(embedded);
        engines.push((engine, None));
    }
    if !user.is_empty() {
        engines.push((Engine::new(&user, opts, diags), opts.data.as_ref()));
    }
    engines.retain(|(e, _)| e.rule_count() > 0);
    engines
}

/// The engines with their `data` prepared (see [`Engine::prepare_data`]): the platform's view,
/// built with only the parts some rule may read.
fn with_data(
    engines: Vec<(Engine, Option<&Value>)>,
    files: &[PolicyFile],
    inputs: (&Specs, &[Arc<Document>], Option<&Lowered>),
    (by, memoised, projects): (&ByProject<'_>, bool, Option<&ProjectDigests>),
    data_diags: &mut Diagnostics,
) -> Vec<Engine> {
    let (specs, docs, lowered) = inputs;
    // The compiled manifests are large; give them to policies only when one refers to them.
    let wants_manifests = reads_manifests(files);
    // `data.plinth.specs` (every document) only when a rule may read it.
    let wants_specs = engines.iter().any(|(e, _)| {
        e.reads.iter().any(|r| {
            r.as_ref().is_none_or(|paths| {
                paths.iter().any(|p| {
                    let specs = ["plinth", "specs"];
                    let n = p.len().min(specs.len());
                    p.iter()
                        .take(n)
                        .map(String::as_str)
                        .eq(specs.iter().take(n).copied())
                })
            })
        })
    });
    // When no rule reads a project's entry but through the whole map (which the memo's names
    // cover by its digest, had without building the entries), the view is made without them:
    // the entries the inputs left to evaluate name are added once the memo has answered
    // what it could (every entry before regorus reads the data).
    // (Without a memo every input is evaluated: the view is made whole.)
    let partial = memoised && engines.iter().all(|(e, _)| !e.reads_into_projects());
    let digest = partial.then(|| match projects {
        Some(p) => p.whole(specs),
        None => ProjectDigests::with(specs, by).whole(specs),
    });
    let platform = platform_data_of(
        specs,
        docs,
        lowered.filter(|_| wants_manifests),
        wants_specs,
        if partial {
            Projects::None
        } else {
            Projects::All(by)
        },
    );
    let n = engines.len();
    let mut platform = Some(platform);
    engines
        .into_iter()
        .enumerate()
        .map(|(i, (mut e, data))| {
            // The last engine takes the platform's view, the others a copy.
            let view = if i + 1 == n {
                platform.take().unwrap_or_default()
            } else {
                platform.clone().unwrap_or_default()
            };
            e.prepare_data(data, plinth_data(view), data_diags, digest.as_deref());
            e.projects_partial = partial;
            e
        })
        .collect()
}

/// The projects that evaluating `inputs` may read the entries of (a Project's own, the
/// project a spec or an object belongs to, a dataset's grantees); `None` when there are many
/// inputs (every entry is made then).
fn projects_named(inputs: &[(usize, Input<'_>)]) -> Option<BTreeSet<String>> {
    const FEW: usize = 256;
    if inputs.len() > FEW {
        return None;
    }
    let mut names = BTreeSet::new();
    let mut add = |v: &Value| {
        let paths: [&[&str]; 3] = [
            &["metadata", "name"],
            &["spec", "project"],
            &["metadata", "labels", "plinth.dev/project"],
        ];
        for path in paths {
            if let Some(n) = crate::output::at(v, path).and_then(Value::as_str) {
                names.insert(n.to_owned());
            }
        }
        let access = crate::output::at(v, &["spec", "access"]).and_then(Value::as_array);
        for grant in access.into_iter().flatten() {
            if let Some(n) = grant.get("project").and_then(Value::as_str) {
                names.insert(n.to_owned());
            }
        }
    };
    for (_, input) in inputs {
        match input {
            Input::Doc(doc) => add(&doc.root().to_json()),
            Input::Manifest(_, m) => m.object.peek(&mut add),
        }
    }
    Some(names)
}

/// Add to engines whose view lacks the projects' entries ([`Projects::None`]) the entries
/// of the projects `only` names, or every entry.
fn add_projects(
    engines: &mut [Engine],
    specs: &Specs,
    by: &ByProject<'_>,
    only: Option<&BTreeSet<String>>,
) {
    if !engines.iter().any(|e| e.projects_partial) {
        return;
    }
    let entries = project_entries(specs, by, only);
    let partial: Vec<&mut Engine> = engines.iter_mut().filter(|e| e.projects_partial).collect();
    let n = partial.len();
    // The last engine takes the entries, the others a copy.
    let mut entries = Some(entries);
    for (i, e) in partial.into_iter().enumerate() {
        let these = if i + 1 == n {
            entries.take().unwrap_or_default()
        } else {
            entries.clone().unwrap_or_default()
        };
        e.add_projects(these, only.is_none());
    }
}

/// Whether a policy may read `data.plinth.manifests` (the word appears in its text).
fn reads_manifests(files: &[PolicyFile]) -> bool {
    files.iter().any(|f| f.text.contains("manifests"))
}

/// The regorus value of `v`: what deserialising it gives (tested), with the entries of large
/// objects (the platform's projects, at scale) converted on every core — the data is handed
/// over whenever one input is left to evaluate, and converting it was one thread's 45 ms at
/// 10,000 projects.
fn to_regorus(v: &Value) -> regorus::Value {
    use rayon::prelude::*;
    const LARGE: usize = 256;
    match v {
        Value::Object(m) if m.len() >= LARGE => {
            let entries: Vec<(&String, &Value)> = m.iter().collect();
            let map: BTreeMap<regorus::Value, regorus::Value> = entries
                .par_iter()
                .map(|(k, v)| (regorus::Value::from(k.as_str()), to_regorus(v)))
                .collect();
            regorus::Value::from(map)
        }
        Value::Object(m) if m.values().any(|v| matches!(v, Value::Object(_))) => {
            let map: BTreeMap<regorus::Value, regorus::Value> = m
                .iter()
                .map(|(k, v)| (regorus::Value::from(k.as_str()), to_regorus(v)))
                .collect();
            regorus::Value::from(map)
        }
        _ => deserialized(v),
    }
}

/// The regorus value of `v`, deserialised.
fn deserialized(v: &Value) -> regorus::Value {
    <regorus::Value as serde::Deserialize>::deserialize(v).unwrap_or(regorus::Value::Undefined)
}

/// What a policy evaluation through a memo found nothing in, when it found nothing at all:
/// per kind of input, the digest of the rules that apply to it (their memo names, covering
/// the `data` each reads, and the policy sets), every one of them memoised. A later compile
/// whose rules for a kind have the same digest finds nothing in an input of that kind the
/// evaluation read ([`Taken`]).
pub type Clean = BTreeMap<String, String>;

/// What a revision evaluated against a base may take from the base's evaluation: the base's
/// [`Clean`], and the spec files that differ from the base's (`None`: not known, so every
/// document is looked up). A unit not read (the base's) and a spec document of a file that did
/// not change are inputs the base read; when their kinds' rules are as they were, nothing is
/// found in them, without a lookup.
#[derive(Clone, Copy)]
pub struct Taken<'a> {
    pub clean: &'a Clean,
    pub changed: Option<&'a crate::load::Changed>,
    /// Units of the base (by key) the base's [`Clean`] does not cover: looked up.
    pub unverified: &'a BTreeSet<String>,
}

/// Evaluate policies over every spec document and every manifest; with what it found nothing
/// in ([`Clean`]), when it found nothing.
pub fn evaluate(
    files: &[PolicyFile],
    opts: &PolicyOptions,
    specs: &Specs,
    docs: &[Arc<Document>],
    lowered: Option<&Lowered>,
    memo: Option<&Arc<dyn Memo>>,
) -> (Diagnostics, Option<Clean>) {
    evaluate_digested(files, opts, (specs, docs, lowered), memo, None)
}

/// [`evaluate`], the digests of every project's entry made before (`projects`).
pub fn evaluate_digested(
    files: &[PolicyFile],
    opts: &PolicyOptions,
    (specs, docs, lowered): (&Specs, &[Arc<Document>], Option<&Lowered>),
    memo: Option<&Arc<dyn Memo>>,
    projects: Option<&ProjectDigests>,
) -> (Diagnostics, Option<Clean>) {
    let inputs = Inputs {
        specs,
        docs,
        lowered,
        opaque: None,
        taken: None,
        projects,
    };
    evaluate_with(files, opts, &inputs, memo, true)
}

/// [`evaluate`] of a revision lowered against another's units ([`crate::lower::delta`]): the
/// spec documents and the `fresh` objects are evaluated (or replayed) as by [`evaluate`], and
/// each `opaque` unit (key, kinds, number of objects) not read must be answered by its bundle
/// in the memo with no finding. `None` when one is not (or the policies read
/// `data.plinth.manifests`, which would miss the opaque objects): then evaluate the whole
/// revision.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_delta(
    files: &[PolicyFile],
    opts: &PolicyOptions,
    engines: Engines<'_>,
    specs: &Specs,
    docs: &[Arc<Document>],
    fresh: &Lowered,
    opaque: &[(&str, &[String], u32)],
    memo: Option<&Arc<dyn Memo>>,
    taken: Option<Taken<'_>>,
) -> Option<(Diagnostics, Option<Clean>)> {
    if reads_manifests(files) {
        return None;
    }
    let unanswered = std::sync::atomic::AtomicBool::new(false);
    let inputs = Inputs {
        specs,
        docs,
        lowered: Some(fresh),
        opaque: Some((opaque, &unanswered)),
        taken,
        projects: None,
    };
    let out = evaluate_prepared(engines.0, opts, &inputs, memo);
    (!unanswered.load(std::sync::atomic::Ordering::Relaxed)).then_some(out)
}

/// The engines of a run's policies with the data they read, made before what they judge is
/// lowered ([`evaluate_delta`]): parsing and analysing the policies (about 3 ms for the
/// default library, whatever the platform's size) and building the platform's data run
/// beside lowering. The run's budget counts from here. Policies that read
/// `data.plinth.manifests` are not evaluated against a delta, so the data is made without the
/// objects.
pub struct Engines<'s>(Prepared<'s>);

impl<'s> Engines<'s> {
    /// `projects`: the digests of every project's entry, when made before.
    pub fn new(
        files: &[PolicyFile],
        opts: &PolicyOptions,
        (specs, docs): (&'s Specs, &[Arc<Document>]),
        memo: Option<&Arc<dyn Memo>>,
        projects: Option<&ProjectDigests>,
    ) -> Engines<'s> {
        let mut diags = Diagnostics::new();
        let engines = engines(files, opts, &mut diags);
        let made = (specs, docs, None);
        Engines(prepare(engines, diags, files, made, (memo, projects)))
    }
}

/// [`evaluate`] with every rule evaluated by regorus (none by [`native`]): for the tests that
/// hold the two equal (`tests/policy_native.rs`).
#[doc(hidden)]
pub fn evaluate_by_regorus(
    files: &[PolicyFile],
    opts: &PolicyOptions,
    specs: &Specs,
    docs: &[Arc<Document>],
    lowered: Option<&Lowered>,
) -> Diagnostics {
    let inputs = Inputs {
        specs,
        docs,
        lowered,
        opaque: None,
        taken: None,
        projects: None,
    };
    evaluate_with(files, opts, &inputs, None, false).0
}

/// [`evaluate`], with the default library's native rules or without them.
fn evaluate_with(
    files: &[PolicyFile],
    opts: &PolicyOptions,
    inputs: &Inputs<'_>,
    memo: Option<&Arc<dyn Memo>>,
    native: bool,
) -> (Diagnostics, Option<Clean>) {
    let mut diags = Diagnostics::new();
    let mut engines = engines(files, opts, &mut diags);
    for (e, _) in &mut engines {
        e.native &= native;
    }
    evaluate_engines(engines, diags, files, opts, inputs, memo)
}

/// What policies are evaluated over: the specs, their documents, the compiled objects.
struct Inputs<'a> {
    specs: &'a Specs,
    docs: &'a [Arc<Document>],
    lowered: Option<&'a Lowered>,
    /// Units not read, each to be answered by the memo (set when one is not; see
    /// [`evaluate_delta`]).
    opaque: Option<Opaque<'a>>,
    /// What may be taken from a base's evaluation.
    taken: Option<Taken<'a>>,
    /// The digests of every project's entry, when made before.
    projects: Option<&'a ProjectDigests>,
}

/// Units not read ([`evaluate_delta`]): key, kinds and number of objects of each, and what is
/// set when one is not answered.
type Opaque<'a> = (
    &'a [(&'a str, &'a [String], u32)],
    &'a std::sync::atomic::AtomicBool,
);

fn evaluate_engines(
    engines: Vec<(Engine, Option<&Value>)>,
    diags: Diagnostics,
    files: &[PolicyFile],
    opts: &PolicyOptions,
    inputs: &Inputs<'_>,
    memo: Option<&Arc<dyn Memo>>,
) -> (Diagnostics, Option<Clean>) {
    let made = (inputs.specs, inputs.docs, inputs.lowered);
    let prepared = prepare(engines, diags, files, made, (memo, inputs.projects));
    evaluate_prepared(prepared, opts, inputs, memo)
}

/// Engines with the data their rules read, named in the memo: everything of an evaluation
/// that does not depend on the inputs it judges.
struct Prepared<'s> {
    engines: Vec<Engine>,
    diags: Diagnostics,
    /// What making the data found (the evaluation stops on an error).
    data_diags: Diagnostics,
    /// Each engine's policy set in the memo.
    sets: Vec<Arc<str>>,
    by: ByProject<'s>,
}

/// [`Prepared`] engines. `lowered` is read only when a policy reads `data.plinth.manifests`.
fn prepare<'s>(
    mut engines: Vec<(Engine, Option<&Value>)>,
    diags: Diagnostics,
    files: &[PolicyFile],
    (specs, docs, lowered): (&'s Specs, &[Arc<Document>], Option<&Lowered>),
    (memo, projects): (Option<&Arc<dyn Memo>>, Option<&ProjectDigests>),
) -> Prepared<'s> {
    if engines.is_empty() {
        // Nothing to evaluate: the specs are not walked.
        return Prepared {
            engines: Vec::new(),
            diags,
            data_diags: Diagnostics::new(),
            sets: Vec::new(),
            by: ByProject::default(),
        };
    }
    let by = ByProject::of(specs);
    let sets: Vec<Arc<str>> = match memo {
        Some(m) => engines
            .iter_mut()
            .map(|(e, _)| e.use_memo(m.clone()))
            .collect(),
        None => Vec::new(),
    };
    // The memo is read while the data is made.
    let mut data_diags = Diagnostics::new();
    let (engines, ()) = rayon::join(
        || {
            let by = (&by, memo.is_some(), projects);
            with_data(engines, files, (specs, docs, lowered), by, &mut data_diags)
        },
        || {
            if let Some(m) = memo {
                sets.iter().for_each(|set| m.prefetch(set));
            }
        },
    );
    Prepared {
        engines,
        diags,
        data_diags,
        sets,
        by,
    }
}

/// The evaluation of `inputs` by [`Prepared`] engines.
fn evaluate_prepared(
    prepared: Prepared<'_>,
    opts: &PolicyOptions,
    inputs: &Inputs<'_>,
    memo: Option<&Arc<dyn Memo>>,
) -> (Diagnostics, Option<Clean>) {
    let Inputs {
        specs,
        docs,
        lowered,
        opaque,
        taken,
        projects: _,
    } = *inputs;
    let Prepared {
        mut engines,
        mut diags,
        mut data_diags,
        sets,
        by,
    } = prepared;
    if engines.is_empty() {
        return (diags, None);
    }
    let (inputs, places) = inputs_of(docs, lowered);
    // Per kind of input, the digest of the rules that apply to it (now that the data they
    // read is named).
    let rules = RulesByKind::of(&sets, &engines, &inputs, opaque.map(|(u, _)| u));
    // Policies without their data would judge wrongly; units not read must be answered.
    if data_diags.has_errors() || !opaque_answered(opaque, memo, &sets, &rules, taken) {
        diags.extend(data_diags);
        return (diags, None);
    }
    let locate = |loc: &Value| locate_in(docs, loc);
    let all: Vec<Input<'_>> = inputs.iter().map(|(_, i)| *i).collect();
    // The spec documents a base's evaluation read and found nothing in: not looked up.
    let skipped = rules.taken_docs(&all, taken);
    let inputs: Vec<(usize, Input<'_>)> = inputs
        .into_iter()
        .filter(|(i, _)| !skipped.get(*i).copied().unwrap_or(false))
        .collect();
    // Units the memo answers whole are replayed in one lookup each.
    let bundles = memo.filter(|_| !sets.is_empty()).map(|m| {
        let refs = lowered.and_then(|l| l.units.as_deref());
        Bundles::new(m, (&sets, &engines, &rules), refs, &places, &all, &skipped)
    });
    let (mut done, inputs) = match &bundles {
        Some(b) => b.replay(&engines, &inputs, &locate),
        None => (Vec::new(), inputs),
    };
    // With a memo or rules evaluated natively, first every input the memo or the native rules
    // answer whole (regorus never needs the data when they answer all of them); then the
    // rest, with the data handed over.
    add_projects(&mut engines, specs, &by, projects_named(&inputs).as_ref());
    let (more, missed) = if memo.is_some() || engines.iter().any(|e| e.native) {
        for e in &mut engines {
            e.memo_only = true;
        }
        let out = evaluate_chunks(&engines, &inputs, &locate);
        for e in &mut engines {
            e.memo_only = false;
        }
        out
    } else {
        (Vec::new(), inputs)
    };
    done.extend(more);
    if !missed.is_empty() {
        add_projects(&mut engines, specs, &by, None);
        for e in &mut engines {
            e.hand_over(&mut data_diags);
        }
        if data_diags.has_errors() {
            diags.extend(data_diags);
            return (diags, None);
        }
        let _budget = MemoryBudget::new(opts.memory);
        done.extend(evaluate_chunks(&engines, &missed, &locate).0);
    }
    if let Some(b) = &bundles {
        b.record(&engines, &all);
    }
    // The findings in input order.
    done.sort_by_key(|(i, _)| *i);
    for (_, d) in done {
        diags.extend(d);
    }
    if let Some(m) = memo {
        for set in &sets {
            m.finish(set);
        }
    }
    let clean = (memo.is_some() && diags.is_empty() && !stopped(&engines))
        .then(|| rules.clean())
        .flatten();
    free_data(&mut engines);
    (diags, clean)
}

/// Where a finding that names another spec (`location`) is reported.
fn locate_in(docs: &[Arc<Document>], loc: &Value) -> Option<Label> {
    let kind = Kind::parse(loc.get("kind")?.as_str()?)?;
    let name = loc.get("name")?.as_str()?;
    let doc = docs
        .iter()
        .find(|d| d.kind() == Some(kind.as_str()) && d.name() == Some(name))?;
    let field = loc
        .get("field")
        .and_then(Value::as_str)
        .unwrap_or("metadata.name");
    Some(doc.label(&FieldPath::parse(field)))
}

/// Whether an engine ran out of its budget or a rule failed (what it found is then not all
/// there is).
fn stopped(engines: &[Engine]) -> bool {
    engines.iter().any(|e| {
        e.run.exhausted.load(std::sync::atomic::Ordering::Relaxed)
            || !e.run.broken.lock().is_ok_and(|b| b.is_empty())
    })
}

/// Per kind of input of an evaluation (its objects', its documents', its units' not read), the
/// digest of the rules that apply to it ([`rules_digest`]), and whether every one of them is
/// memoised.
struct RulesByKind {
    kinds: std::collections::HashMap<String, ([u8; 32], bool)>,
}

impl RulesByKind {
    fn of(
        sets: &[Arc<str>],
        engines: &[Engine],
        inputs: &[(usize, Input<'_>)],
        opaque: Option<&[(&str, &[String], u32)]>,
    ) -> RulesByKind {
        let mut names: BTreeSet<&str> = BTreeSet::new();
        for (_, input) in inputs {
            names.insert(match input {
                Input::Doc(d) => doc_kind(d),
                Input::Manifest(_, m) => &m.key.kind,
            });
        }
        let lists: BTreeSet<&[String]> = opaque.into_iter().flatten().map(|u| u.1).collect();
        names.extend(lists.into_iter().flatten().map(String::as_str));
        let kinds = names
            .into_iter()
            .map(|k| {
                let memoised = engines.iter().all(|e| {
                    e.applicable(k)
                        .iter()
                        .flatten()
                        .all(|&r| e.cacheable.get(r).copied().unwrap_or(false))
                });
                (k.to_owned(), (rules_digest(sets, engines, k), memoised))
            })
            .collect();
        RulesByKind { kinds }
    }

    fn digest(&self, kind: &str) -> Option<&[u8; 32]> {
        self.kinds.get(kind).map(|(d, _)| d)
    }

    /// The kinds whose rules are those `taken` found nothing with (each digest compared once,
    /// not once per input).
    fn taken_kinds(&self, taken: &Taken<'_>) -> std::collections::HashSet<&str> {
        self.kinds
            .iter()
            .filter(|(kind, (digest, memoised))| {
                *memoised
                    && taken
                        .clean
                        .get(kind.as_str())
                        .is_some_and(|was| hex(digest) == *was)
            })
            .map(|(kind, _)| kind.as_str())
            .collect()
    }

    /// Per input number, whether it is a spec document the base read and found nothing in: of
    /// a file that did not change, its kind's rules as they were.
    fn taken_docs(&self, all: &[Input<'_>], taken: Option<Taken<'_>>) -> Vec<bool> {
        let Some(
            taken @ Taken {
                changed: Some(changed),
                ..
            },
        ) = taken
        else {
            return Vec::new();
        };
        let kinds = self.taken_kinds(&taken);
        all.iter()
            .map(|input| match input {
                Input::Doc(d) => !changed.contains(&d.file) && kinds.contains(doc_kind(d)),
                Input::Manifest(..) => false,
            })
            .collect()
    }

    /// What the evaluation found nothing in ([`Clean`]): `None` when a rule of some kind is
    /// not memoised (it may find otherwise another time).
    fn clean(&self) -> Option<Clean> {
        self.kinds
            .iter()
            .map(|(k, (digest, memoised))| memoised.then(|| (k.clone(), hex(digest))))
            .collect()
    }
}

/// The engines' data (the platform's: hundreds of thousands of values at scale), freed on a
/// thread nothing waits for.
fn free_data(engines: &mut [Engine]) {
    let data: Vec<Arc<Value>> = engines
        .iter_mut()
        .flat_map(|e| [e.pending.take(), e.data_json.take()])
        .flatten()
        .collect();
    std::thread::spawn(move || drop(data));
}

/// Every input, numbered: the spec documents, then the compiled objects; and per input, the
/// unit holding it and its place there (objects of a compile that kept its units in a store).
#[allow(clippy::type_complexity)]
fn inputs_of<'i>(
    docs: &'i [Arc<Document>],
    lowered: Option<&'i Lowered>,
) -> (Vec<(usize, Input<'i>)>, Vec<Option<(u32, u32)>>) {
    let mut inputs: Vec<Input<'_>> = docs.iter().filter(|d| !d.tainted).map(Input::Doc).collect();
    let mut places: Vec<Option<(u32, u32)>> = vec![None; inputs.len()];
    if let Some(l) = lowered {
        for (cluster, out) in &l.clusters {
            let refs = l.units.as_ref().and_then(|u| u.places.get(cluster));
            for (i, m) in out.manifests.iter().enumerate() {
                inputs.push(Input::Manifest(cluster, m));
                places.push(refs.and_then(|r| r.get(i).copied()));
            }
        }
    }
    (inputs.into_iter().enumerate().collect(), places)
}

/// Findings per input (by its number), evaluated in chunks in parallel, one copy of the
/// engines per chunk; and the inputs not evaluated because an engine in memo-only mode missed.
#[allow(clippy::type_complexity)]
fn evaluate_chunks<'i>(
    engines: &[Engine],
    inputs: &[(usize, Input<'i>)],
    locate: &(dyn Fn(&Value) -> Option<Label> + Sync),
) -> (Vec<(usize, Diagnostics)>, Vec<(usize, Input<'i>)>) {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads().max(1);
    let chunk = inputs.len().div_ceil(threads * 4).max(64);
    let parts: Vec<(Vec<(usize, Diagnostics)>, Vec<(usize, Input<'i>)>)> = inputs
        .par_chunks(chunk)
        .map(|part| {
            let mut engines = engines.to_vec();
            let (mut done, mut missed) = (Vec::new(), Vec::new());
            for (i, input) in part {
                let before: usize = engines.iter().map(|e| e.misses).sum();
                let mut d = Diagnostics::new();
                evaluate_one(&mut engines, input, locate, &mut d);
                if engines.iter().map(|e| e.misses).sum::<usize>() == before {
                    done.push((*i, d));
                } else {
                    missed.push((*i, *input));
                }
            }
            (done, missed)
        })
        .collect();
    let mut done = Vec::with_capacity(inputs.len());
    let mut missed = Vec::new();
    for (d, m) in parts {
        done.extend(d);
        missed.extend(m);
    }
    (done, missed)
}

/// An input of policies: a spec document, or an object compiled for a cluster.
#[derive(Clone, Copy)]
enum Input<'a> {
    Doc(&'a Arc<Document>),
    Manifest(&'a str, &'a crate::lower::Manifest),
}

/// Evaluate every engine's rules on one input, reporting findings where `locate` places them
/// (a finding's `location`) or at the input's spec.
fn evaluate_one(
    engines: &mut [Engine],
    input: &Input<'_>,
    locate: &dyn Fn(&Value) -> Option<Label>,
    d: &mut Diagnostics,
) {
    let doc_json = match input {
        Input::Doc(doc) => Some(doc.root().to_json()),
        Input::Manifest(..) => None,
    };
    for engine in engines.iter_mut() {
        match input {
            Input::Doc(doc) => {
                let place = |loc: Option<&Value>| doc_place(doc, locate, loc);
                let json = doc_json.as_ref().unwrap_or(&Value::Null);
                let kind = json.get("kind").and_then(Value::as_str).unwrap_or_default();
                engine.report_input(InputRef::Value(json), kind, None, &place, d);
            }
            Input::Manifest(cluster, m) => {
                let place = |loc: Option<&Value>| manifest_place(cluster, m, locate, loc);
                engine.report_input(
                    InputRef::Object(&m.object),
                    &m.key.kind,
                    Some(&m.hash),
                    &place,
                    d,
                );
            }
        }
    }
}

/// Where a finding on an object is reported: at the spec that `loc` names (a finding's
/// `location`), else at the spec line that produced the object.
fn manifest_place(
    cluster: &str,
    m: &crate::lower::Manifest,
    locate: &dyn Fn(&Value) -> Option<Label>,
    loc: Option<&Value>,
) -> Label {
    loc.and_then(locate)
        .unwrap_or_else(|| origin_label(&m.origin))
        .note(format!("generates {} in cluster `{cluster}`", m.key))
}

/// Policy results per unit ([`crate::lower::units`]) and per spec document: when every rule
/// that applies to every object of a unit was answered (by evaluation or the memo), the
/// findings of the unit are kept as one memo entry, keyed by the unit's key (which covers its
/// objects' content) and by the memo names of the rules that apply to its objects' kinds
/// (which cover the `data` each reads: a change to data only rules of other kinds read leaves
/// the entry valid). A later compile that reuses the unit replays those findings with one
/// lookup instead of one per object and rule. An entry lists the places in the unit it covers:
/// an object it does not cover (one that was a duplicate of another unit's then) makes it a
/// miss. A spec document is a bundle of its own, keyed by its file's digest and its place in
/// the file ([`doc_digest`]) and the rules of its kind: one lookup, and no JSON made of it,
/// instead of its JSON, its hash and one lookup per rule. Replayed findings are placed anew
/// (a moved document is reported where it is now).
struct Bundles<'a> {
    memo: &'a Arc<dyn Memo>,
    set: Arc<str>,
    /// Per bundle (the units in the compile's unit order, then the documents), its inputs
    /// (input number, place in the bundle) and its entry's key in the memo.
    bundles: Vec<(Vec<(usize, u32)>, String)>,
    /// Bundles not replayed (by number; recorded after evaluation).
    missed: std::sync::Mutex<Vec<usize>>,
}

/// The memo's name of a bundle's entry (as its rule).
const BUNDLE: &str = "unit-bundle";

/// The digest of the rules that apply to inputs of a kind, in every engine: their memo names
/// (which cover the `data` each reads) and whether each is memoised.
fn rules_digest(sets: &[Arc<str>], engines: &[Engine], kind: &str) -> [u8; 32] {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for (set, e) in sets.iter().zip(engines) {
        h.update(set.as_bytes());
        h.update([0]);
        for &r in e.applicable(kind).iter().flatten() {
            h.update(e.memo_ids[r].as_bytes());
            h.update([u8::from(e.cacheable[r])]);
        }
        h.update([1]);
    }
    h.finalize().into()
}

/// The memo key of a unit's bundle: the unit's key and the digest of its objects' kinds' rules
/// ([`rules_suffix`]).
fn unit_bundle_key(unit: &str, rules: &str) -> String {
    format!("unit:{unit}:{rules}")
}

/// The part of a unit bundle's key naming its kinds' rules ([`rules_digest`] of each kind,
/// each once).
fn rules_suffix<'d>(digests: impl Iterator<Item = &'d [u8; 32]>) -> String {
    use sha2::Digest;
    let mut ks: Vec<&[u8; 32]> = digests.collect();
    ks.sort();
    ks.dedup();
    let mut h = sha2::Sha256::new();
    for k in ks {
        h.update(k);
    }
    hex(&h.finalize()[..16])
}

/// Whether every unit not read (key, kinds, number of objects) has its bundle in the memo,
/// covering all its objects, with no finding ([`evaluate_delta`]); when not, its flag is set.
fn opaque_answered(
    opaque: Option<Opaque<'_>>,
    memo: Option<&Arc<dyn Memo>>,
    sets: &[Arc<str>],
    rules: &RulesByKind,
    taken: Option<Taken<'_>>,
) -> bool {
    let Some((units, unanswered)) = opaque else {
        return true;
    };
    // The units a base's evaluation read and found nothing in need no lookup. (Whether a
    // unit's kinds are all taken is asked once per list: the units of a kind of spec share
    // theirs.)
    let same = taken.map(|t| (t, rules.taken_kinds(&t)));
    let mut lists: std::collections::HashMap<(usize, usize), bool, foldhash::fast::RandomState> =
        std::collections::HashMap::default();
    let units: Vec<(&str, &[String], u32)> = units
        .iter()
        .filter(|(key, kinds, _)| {
            !same.as_ref().is_some_and(|(t, same)| {
                !t.unverified.contains(*key)
                    && *lists
                        .entry((kinds.as_ptr() as usize, kinds.len()))
                        .or_insert_with(|| kinds.iter().all(|k| same.contains(k.as_str())))
            })
        })
        .copied()
        .collect();
    let answered = match memo {
        Some(m) => bundles_answer(m, sets, rules, &units),
        None => units.is_empty(),
    };
    if !answered {
        unanswered.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    answered
}

/// Whether each unit (key, kinds, number of objects) has its bundle in `memo`, covering all
/// its objects, with no finding.
fn bundles_answer(
    memo: &Arc<dyn Memo>,
    sets: &[Arc<str>],
    rules: &RulesByKind,
    units: &[(&str, &[String], u32)],
) -> bool {
    use rayon::prelude::*;
    // Per list of kinds (units of a kind of spec share theirs), its part of the key.
    let lists: BTreeSet<&[String]> = units.iter().map(|(_, kinds, _)| *kinds).collect();
    let suffixes: std::collections::HashMap<&[String], String> = lists
        .into_iter()
        .map(|kinds| {
            let ds = kinds.iter().filter_map(|k| rules.digest(k));
            (kinds, rules_suffix(ds))
        })
        .collect();
    let Some(set) = sets.first() else {
        return units.is_empty();
    };
    units.par_iter().all(|(unit, kinds, n)| {
        let Some(suffix) = suffixes.get(kinds) else {
            return false;
        };
        let key = unit_bundle_key(unit, suffix);
        let mut clean = false;
        memo.visit(set, BUNDLE, &key, &mut |m| {
            if let Memoized::Bundle(b) = m {
                clean = b.found.is_empty()
                    && b.positions.is_sorted()
                    && (0..*n).all(|at| b.positions.binary_search(&at).is_ok());
            }
        });
        clean
    })
}

/// A digest of a document's content: its file's text (read once when it was loaded) and its
/// place among the file's documents.
fn doc_digest(doc: &Document) -> String {
    format!("{}-{}", hex(&doc.digest[..16]), doc.index)
}

/// The kind of a spec document (empty when it has none).
fn doc_kind(doc: &Document) -> &str {
    doc.kind().unwrap_or_default()
}

/// Where a finding on a spec document is reported: at the spec that `loc` names (a finding's
/// `location`), else at the document's field `loc` names (its `kind` when none).
fn doc_place(
    doc: &Document,
    locate: &dyn Fn(&Value) -> Option<Label>,
    loc: Option<&Value>,
) -> Label {
    loc.and_then(locate).unwrap_or_else(|| {
        let field = loc
            .and_then(|l| l.get("field"))
            .and_then(Value::as_str)
            .unwrap_or("kind");
        doc.label(&FieldPath::parse(field))
    })
}

impl<'a> Bundles<'a> {
    /// The bundles of a compile: its units when its objects are in a unit store (`refs`, and
    /// per input its place there), and its spec documents.
    fn new(
        memo: &'a Arc<dyn Memo>,
        (sets, engines, rules): (&[Arc<str>], &[Engine], &RulesByKind),
        refs: Option<&crate::output::UnitRefs>,
        places: &[Option<(u32, u32)>],
        all: &[Input<'_>],
        skipped: &[bool],
    ) -> Bundles<'a> {
        use rayon::prelude::*;
        // Per kind of input, the digest of the rules that apply to it (in every engine): every
        // input's kind is among `rules`'.
        let digest_of = |kind: &str| -> [u8; 32] {
            rules
                .digest(kind)
                .copied()
                .unwrap_or_else(|| rules_digest(sets, engines, kind))
        };
        // Per unit (by its number in `refs`), its objects: input number, place in the unit and
        // the digest of the rules of its kind (a hundred thousand objects: no map by unit).
        let mut members: Vec<Vec<(usize, u32, [u8; 32])>> =
            vec![Vec::new(); refs.map_or(0, |r| r.keys.len())];
        for (i, p) in places.iter().enumerate() {
            let (Some((u, at)), Some(Input::Manifest(_, m))) = (p, all.get(i)) else {
                continue;
            };
            if let Some(ms) = usize::try_from(*u).ok().and_then(|u| members.get_mut(u)) {
                ms.push((i, *at, digest_of(&m.key.kind)));
            }
        }
        let mut bundles: Vec<(Vec<(usize, u32)>, String)> = Vec::new();
        if let Some(refs) = refs {
            bundles = members
                .par_iter()
                .zip(&refs.keys)
                .filter(|(ms, _)| !ms.is_empty())
                .map(|(ms, key)| {
                    let rules = rules_suffix(ms.iter().map(|(.., k)| k));
                    let memo_key = unit_bundle_key(key, &rules);
                    (ms.iter().map(|(i, at, _)| (*i, *at)).collect(), memo_key)
                })
                .collect();
        }
        for (i, input) in all.iter().enumerate() {
            if let Input::Doc(d) = input
                && !skipped.get(i).copied().unwrap_or(false)
            {
                let rules = digest_of(doc_kind(d));
                let key = format!("doc:{}:{}", doc_digest(d), hex(&rules[..16]));
                bundles.push((vec![(i, 0)], key));
            }
        }
        Bundles {
            memo,
            set: sets[0].clone(),
            bundles,
            missed: Default::default(),
        }
    }

    /// The findings of every input of the bundles answered whole, and the inputs left to
    /// evaluate.
    #[allow(clippy::type_complexity)]
    fn replay<'i>(
        &self,
        engines: &[Engine],
        inputs: &[(usize, Input<'i>)],
        locate: &(dyn Fn(&Value) -> Option<Label> + Sync),
    ) -> (Vec<(usize, Diagnostics)>, Vec<(usize, Input<'i>)>) {
        use rayon::prelude::*;
        let exhausted = engines
            .iter()
            .any(|e| e.run.exhausted.load(std::sync::atomic::Ordering::Relaxed));
        if exhausted {
            return (Vec::new(), inputs.to_vec());
        }
        let replayed: Vec<Vec<(usize, Diagnostics)>> = self
            .bundles
            .par_iter()
            .enumerate()
            .filter_map(|(b, (members, key))| {
                let out = self.replay_bundle(key, members, engines, inputs, locate);
                if out.is_none()
                    && let Ok(mut m) = self.missed.lock()
                {
                    m.push(b);
                }
                out
            })
            .collect();
        let done: Vec<(usize, Diagnostics)> = replayed.into_iter().flatten().collect();
        // Input numbers are below the count of inputs (a flag per number, not a set).
        let mut taken = vec![false; inputs.iter().map(|(i, _)| i + 1).max().unwrap_or(0)];
        for (i, _) in &done {
            if let Some(t) = taken.get_mut(*i) {
                *t = true;
            }
        }
        let rest = inputs
            .iter()
            .filter(|(i, _)| !taken.get(*i).copied().unwrap_or(false))
            .copied()
            .collect();
        (done, rest)
    }

    fn replay_bundle(
        &self,
        key: &str,
        members: &[(usize, u32)],
        engines: &[Engine],
        inputs: &[(usize, Input<'_>)],
        locate: &(dyn Fn(&Value) -> Option<Label> + Sync),
    ) -> Option<Vec<(usize, Diagnostics)>> {
        // Read where the memo keeps it (a unit's entry is not copied).
        let mut out = None;
        self.memo.visit(&self.set, BUNDLE, key, &mut |m| {
            if let Memoized::Bundle(b) = m {
                out = self.replay_entry(b, members, engines, inputs, locate);
            }
        });
        out
    }

    /// The findings of a bundle's `members` from its memo entry `v` (`None`: it does not
    /// cover them all, or is not what a bundle's entry is).
    fn replay_entry(
        &self,
        entry: &BundleEntry,
        members: &[(usize, u32)],
        engines: &[Engine],
        inputs: &[(usize, Input<'_>)],
        locate: &(dyn Fn(&Value) -> Option<Label> + Sync),
    ) -> Option<Vec<(usize, Diagnostics)>> {
        let covered = &entry.positions;
        if !covered.is_sorted()
            || !members
                .iter()
                .all(|(_, at)| covered.binary_search(at).is_ok())
        {
            return None;
        }
        let found = &entry.found;
        let mut out = Vec::with_capacity(members.len());
        for &(i, at) in members {
            let (_, input) = inputs.get(i)?;
            let place = |loc: Option<&Value>| match input {
                Input::Manifest(cluster, m) => manifest_place(cluster, m, locate, loc),
                Input::Doc(doc) => doc_place(doc, locate, loc),
            };
            let mut d = Diagnostics::new();
            for f in found {
                let f = f.as_array()?;
                if f.first()?.as_u64()? != u64::from(at) {
                    continue;
                }
                let e = engines.get(usize::try_from(f.get(1)?.as_u64()?).ok()?)?;
                let r = usize::try_from(f.get(2)?.as_u64()?).ok()?;
                let rule = e.rules.get(r)?;
                if e.is_broken(&format!("{}.{}", rule.package, rule.name)) {
                    continue;
                }
                let mut outcome = Outcome::default();
                if collect(rule, r, f.get(3)?, &place, &mut outcome, &mut d) {
                    e.report_outcome(&outcome, &place, &mut d);
                } else {
                    return None;
                }
            }
            out.push((i, d));
        }
        Some(out)
    }

    /// Keep the entry of every bundle not replayed whose inputs' rules all have a memoised
    /// result now.
    fn record(&self, engines: &[Engine], all: &[Input<'_>]) {
        use rayon::prelude::*;
        let stopped = engines.iter().any(|e| {
            e.run.exhausted.load(std::sync::atomic::Ordering::Relaxed)
                || !e.run.broken.lock().is_ok_and(|b| b.is_empty())
        });
        if stopped {
            return;
        }
        let missed = self.missed.lock().map(|m| m.clone()).unwrap_or_default();
        missed.par_iter().for_each(|&b| {
            if let Some((key, bundle)) = self.bundle_of(b, engines, all) {
                self.memo
                    .put(&self.set, BUNDLE, key, Memoized::Bundle(bundle));
            }
        });
    }

    /// A bundle's entry: the places it covers and, per input, the findings of each rule that
    /// found something (from the memo, which every rule that applies must have answered).
    fn bundle_of(
        &self,
        b: usize,
        engines: &[Engine],
        all: &[Input<'_>],
    ) -> Option<(&str, BundleEntry)> {
        let (members, key) = self.bundles.get(b)?;
        let mut positions: Vec<u32> = Vec::with_capacity(members.len());
        let mut found: Vec<Value> = Vec::new();
        for &(i, at) in members {
            // The input's memo key and kind, as its evaluation had them.
            let (hash, kind) = match all.get(i)? {
                Input::Manifest(_, m) if m.object.text_lost() => return None,
                Input::Manifest(_, m) => (format!("object:{}", m.hash), m.key.kind.as_str()),
                Input::Doc(doc) => (input_hash(&doc.root().to_json()), doc_kind(doc)),
            };
            positions.push(at);
            for (n, e) in engines.iter().enumerate() {
                let set = &e.memo.as_ref()?.set;
                for &r in e.applicable(kind).iter().flatten() {
                    if !e.cacheable[r] {
                        return None;
                    }
                    match self.memo.get(set, &e.memo_ids[r], &hash)? {
                        Memoized::Value(v) if v.as_array().is_some_and(|a| !a.is_empty()) => {
                            found.push(json!([at, n, r, v]));
                        }
                        _ => {}
                    }
                }
            }
        }
        positions.sort_unstable();
        Some((key, BundleEntry { positions, found }))
    }
}

/// The label of the spec line that produced an object.
fn origin_label(o: &Origin) -> Label {
    Label::new(Span::new(
        o.file.clone(),
        Pos::new(o.line, 1),
        Pos::new(o.line, 1),
    ))
}

/// Result of one `test_` rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestResult {
    pub file: Arc<str>,
    pub package: String,
    pub name: String,
    pub line: u32,
    pub passed: bool,
    /// A `todo_test_` rule: not run, counted as skipped (as `opa test` does).
    pub skipped: bool,
    /// Why it failed (an error, or "false").
    pub detail: Option<String>,
}

/// Run every `test_` rule (like `opa test` / `conftest verify`), with `opts.data` as `data`;
/// only tests of packages `opts.namespaces` selects are run unless `opts.all_namespaces`.
pub fn run_tests(
    files: &[PolicyFile],
    opts: &PolicyOptions,
    diags: &mut Diagnostics,
) -> Vec<TestResult> {
    let mut engine = regorus::Engine::new();
    engine.set_rego_v0(opts.rego_v0);
    engine.set_execution_timer_config(regorus::utils::limits::ExecutionTimerConfig {
        limit: opts.timeout,
        // Reading the clock on every unit of work costs more than the work.
        check_interval: std::num::NonZeroU32::new(64).unwrap_or(std::num::NonZeroU32::MIN),
    });
    let mut tests = Vec::new();
    for f in files {
        if let Err(e) = engine.add_policy(f.path.to_string(), f.text.to_string()) {
            let msg = e.to_string();
            let pos = error_position(&msg, &f.path).unwrap_or(Pos::new(1, 1));
            diags.push(
                Diagnostic::new(
                    Code::PolicyBroken,
                    format!(
                        "policy `{}` does not load: {}",
                        f.path,
                        msg.lines().next().unwrap_or_default()
                    ),
                )
                .at(policy_label(&f.path, pos)),
            );
            continue;
        }
        let Some(package) = package_of(&f.text) else {
            continue;
        };
        if !opts.all_namespaces && !namespace_matches(&package, &opts.namespaces) {
            continue;
        }
        for (i, line) in f.text.lines().enumerate() {
            for prefix in ["test_", "todo_test_"] {
                if let Some(rest) = line.strip_prefix(prefix) {
                    let end = rest
                        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    tests.push((
                        f.path.clone(),
                        package.clone(),
                        format!("{prefix}{}", &rest[..end]),
                        i as u32 + 1,
                    ));
                }
            }
        }
    }
    tests.dedup_by(|a, b| a.1 == b.1 && a.2 == b.2);
    if let Some(data) = &opts.data
        && let Err(e) = engine.add_data(regorus::Value::from(data.clone()))
    {
        diags.push(Diagnostic::new(
            Code::PolicyFailed,
            format!("cannot give policies their data: {e}"),
        ));
        return Vec::new();
    }
    let mut results = Vec::new();
    let _budget = MemoryBudget::new(opts.memory);
    for (file, package, name, line) in tests {
        if name.starts_with("todo_") {
            results.push(TestResult {
                file,
                package,
                name,
                line,
                passed: false,
                skipped: true,
                detail: None,
            });
            continue;
        }
        engine.set_input(regorus::Value::new_object());
        let (passed, detail) = match engine.eval_rule(format!("data.{package}.{name}")) {
            Ok(v) if v == regorus::Value::from(true) => (true, None),
            Ok(regorus::Value::Undefined) => (
                false,
                Some("undefined (a condition did not hold)".to_owned()),
            ),
            Ok(v) => (false, Some(format!("evaluated to {v}"))),
            Err(e) => (false, Some(first_line(&format!("{e:#}")))),
        };
        results.push(TestResult {
            file,
            package,
            name,
            line,
            passed,
            skipped: false,
            detail,
        });
    }
    results
}

/// The sha256 of policy files (path and text, in path order): which library [`native`] was
/// written for.
fn library_digest(files: &[PolicyFile]) -> String {
    use sha2::Digest;
    let mut sorted: Vec<&PolicyFile> = files.iter().collect();
    sorted.sort_by(|a, b| a.path.cmp(&b.path));
    let mut h = sha2::Sha256::new();
    for f in sorted {
        h.update(f.path.as_bytes());
        h.update([0]);
        h.update(f.text.as_bytes());
        h.update([0]);
    }
    hex(&h.finalize())
}

/// The default library's rules evaluated both ways on the same inputs, for the tests that keep
/// [`native`] equal to regorus (`tests/policy_native.rs`).
#[doc(hidden)]
pub struct LibraryCheck {
    engine: Engine,
    data: Arc<Value>,
}

/// What [`LibraryCheck::compare`] found on one input.
#[doc(hidden)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Compared {
    /// Rules [`native`] decided (each equal to regorus).
    pub decided: usize,
    /// Rules it left to regorus.
    pub deferred: usize,
    /// Rules with at least one finding (as regorus found them).
    pub found: usize,
}

impl LibraryCheck {
    /// The library with `view` as `data.plinth` (what [`platform_data`] makes).
    pub fn new(view: &Value) -> LibraryCheck {
        let library = default_library();
        let opts = PolicyOptions {
            namespaces: Vec::new(),
            all_namespaces: true,
            ..PolicyOptions::default()
        };
        let mut d = Diagnostics::new();
        let embedded = is_default_library(&library);
        let mut engine = Engine::new(&library, &opts, &mut d).native_library(embedded);
        assert!(engine.native, "the embedded library is evaluated natively");
        engine.prepare_data(None, plinth_data(view.clone()), &mut d, None);
        let data = engine.data_json.clone().unwrap_or_default();
        engine.hand_over(&mut d);
        assert!(d.is_empty(), "{d:?}");
        LibraryCheck { engine, data }
    }

    /// Every rule of the library on `input` (whatever its kind), natively and by regorus;
    /// an error describing the first rule whose native value differs from regorus' (or that
    /// was decided where regorus fails).
    pub fn compare(&mut self, input: &Value) -> Result<Compared, String> {
        let mut out = Compared::default();
        self.engine.regorus().set_input(deserialized(input));
        let rules = self.engine.rules.clone();
        for rule in &rules {
            let want = self
                .engine
                .regorus()
                .eval_rule(format!("data.{}.{}", rule.package, rule.name))
                .map(|v| serde_json::to_value(&v).unwrap_or(Value::Null))
                .map_err(|e| first_line(&format!("{e:#}")));
            if matches!(&want, Ok(Value::Array(a)) if !a.is_empty()) {
                out.found += 1;
            }
            match (
                native::eval(&rule.package, &rule.name, input, &self.data, true),
                want,
            ) {
                (native::Verdict::Defer, _) => out.deferred += 1,
                (native::Verdict::Value(got), Ok(want)) if got == want => out.decided += 1,
                (native::Verdict::Value(got), want) => {
                    return Err(format!(
                        "{}.{}: native {got}, regorus {want:?}",
                        rule.package, rule.name
                    ));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The embedded library loads without a diagnostic (so its regorus engine may be made when
    /// first needed), and loaded so it has the rules, definitions and packages it has loaded at
    /// once; its engine, made on demand, evaluates a rule as the one made at once does.
    #[test]
    fn the_default_library_loads_as_deferred() {
        let library = default_library();
        let opts = PolicyOptions {
            all_namespaces: true,
            ..PolicyOptions::default()
        };
        let mut d = Diagnostics::new();
        let mut now = Engine::new(&library, &opts, &mut d);
        assert!(d.is_empty(), "{d:?}");
        let mut later = Engine::deferred(&library, &opts, &mut d);
        assert!(d.is_empty(), "{d:?}");
        assert!(later.engine.engine.is_none(), "not made until needed");
        let rules = |e: &Engine| -> Vec<String> {
            e.rules
                .iter()
                .map(|r| format!("{}.{} {:?}", r.package, r.name, r.kind))
                .collect()
        };
        assert!(!now.rules.is_empty());
        assert_eq!(rules(&now), rules(&later));
        assert_eq!(now.definitions, later.definitions);
        assert_eq!(now.packages, later.packages);
        assert_eq!(now.exception_packages, later.exception_packages);
        let rule = now.rules[0].clone();
        let query = format!("data.{}.{}", rule.package, rule.name);
        let input = deserialized(&json!({"kind": "Namespace", "metadata": {"name": "x"}}));
        // A copy made before (one per chunk of inputs) shares what the first to need it made.
        let mut copy = later.clone();
        now.regorus().set_input(input.clone());
        later.regorus().set_input(input.clone());
        assert!(later.engine.engine.is_some());
        assert!(copy.engine.engine.is_none() && copy.engine.made.get().is_some());
        copy.regorus().set_input(input);
        let (a, b) = (
            now.regorus().eval_rule(query.clone()),
            later.regorus().eval_rule(query.clone()),
        );
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        let c = copy.regorus().eval_rule(query);
        assert_eq!(format!("{a:?}"), format!("{c:?}"));
        assert!(a.is_ok(), "{a:?}");
    }

    #[test]
    fn data_converted_on_every_core_is_what_deserialising_gives() {
        let projects: serde_json::Map<String, Value> = (0..600)
            .map(|i| {
                let v = json!({"clusters": ["prod", "dev"], "n": i, "x": 1.5, "neg": -3,
                    "big": u64::MAX, "nested": {"a": {}, "b": [], "c": null, "d": {"e": true}}});
                (format!("p{i}"), v)
            })
            .collect();
        let data = json!({"plinth": {"resolved": {"projects": projects, "clusters": {}}, "parameters": {}}, "x": 1});
        let want = deserialized(&data);
        assert!(want != regorus::Value::Undefined);
        assert!(to_regorus(&data) == want);
        for v in [
            json!({}),
            json!([]),
            json!(null),
            json!({"a": {}}),
            json!(3),
        ] {
            assert!(to_regorus(&v) == deserialized(&v), "{v}");
        }
    }

    #[test]
    fn the_projects_digest_is_the_digest_of_every_entry_made() {
        let mut platforms: Vec<Box<dyn crate::load::Source>> = [1, 2, 3]
            .into_iter()
            .map(|seed| {
                let mut src = crate::load::MemSource::new();
                for (path, text) in crate::generate::platform(40, seed) {
                    src = src.with(&path, text.into_bytes());
                }
                Box::new(src) as Box<dyn crate::load::Source>
            })
            .collect();
        let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/repo");
        platforms.push(Box::new(crate::load::DirSource::new(example)));
        let mut compared = 0;
        for src in platforms {
            let checked = crate::check_source(&*src, &crate::Options::default()).expect("loads");
            let by = ByProject::of(&checked.specs);
            let whole = platform_data(&checked.specs, &checked.docs, None);
            let projects = PROJECTS[1..].iter().try_fold(&whole, |v, seg| v.get(*seg));
            assert_eq!(
                ProjectDigests::with(&checked.specs, &by).whole(&checked.specs),
                projects::whole_of_map(projects.expect("made")).expect("a map")
            );
            compared += checked.specs.projects.len();
        }
        assert!(compared > 100, "{compared} projects");
    }

    #[test]
    fn a_view_of_some_projects_is_read_only_where_it_holds_the_entry() {
        let rollout = json!({"apiVersion": "plinth.dev/v1alpha1", "kind": "ModelRollout",
            "metadata": {"name": "m"}, "spec": {"project": "p"}});
        let grants = json!({"apiVersion": "plinth.dev/v1alpha1", "kind": "Dataset",
            "metadata": {"name": "d"}, "spec": {"sensitivity": "pii", "access": [{"project": "p", "mode": "read-only"}]}});
        let view = |projects: Value| {
            json!({"plinth": {"resolved": {"projects": projects,
                "clusters": {"dev": {"production": false}}}, "parameters": {}}})
        };
        let with = view(json!({"p": {"production": true, "clusters": ["dev"]}}));
        let without = view(json!({"q": {"production": true, "clusters": []}}));
        for (input, package, rule) in [
            (
                &rollout,
                "production_rollouts",
                "deny_production_rollout_strategy",
            ),
            (&grants, "pii_datasets", "deny_pii_outside_production"),
        ] {
            let package = format!("plinth_defaults.{package}");
            let eval = |data: &Value, whole| native::eval(&package, rule, input, data, whole);
            let found = eval(&with, true);
            assert!(
                matches!(&found, native::Verdict::Value(Value::Array(a)) if !a.is_empty()),
                "{rule}: {found:?}"
            );
            assert_eq!(eval(&with, false), found, "{rule}: the entry is there");
            assert_eq!(eval(&without, false), native::Verdict::Defer, "{rule}");
            assert_eq!(
                eval(&without, true),
                native::Verdict::Value(json!([])),
                "{rule}: no such project, no finding"
            );
        }
    }

    #[test]
    fn regorus_is_never_given_a_view_of_some_projects() {
        let mut d = Diagnostics::new();
        let file = PolicyFile {
            path: "p.rego".into(),
            text: "package main\ndeny contains 1 if data.plinth.resolved.projects.p".into(),
        };
        let mut engine = Engine::new(&[file], &PolicyOptions::default(), &mut d);
        let view = json!({"resolved": {"projects": {}}});
        engine.prepare_data(None, plinth_data(view), &mut d, None);
        engine.projects_partial = true;
        engine.hand_over(&mut d);
        let found: Vec<String> = d.iter().map(|d| d.message.clone()).collect();
        assert_eq!(
            found,
            [
                "policies were to read only some projects' entries of `data.plinth.resolved.projects`; nothing was evaluated on that data"
            ]
        );
        assert!(d.has_errors());
        assert!(engine.pending.is_none());
    }

    #[test]
    fn only_reads_of_the_whole_projects_map_leave_the_entries_out() {
        let opts = PolicyOptions {
            all_namespaces: true,
            ..PolicyOptions::default()
        };
        let mut d = Diagnostics::new();
        let library = Engine::new(&default_library(), &opts, &mut d);
        assert!(!library.reads_into_projects());
        let engine = |rego: &str| {
            let file = PolicyFile {
                path: "p.rego".into(),
                text: rego.into(),
            };
            Engine::new(&[file], &opts, &mut Diagnostics::new())
        };
        for (rego, into) in [
            (
                "package a\ndeny contains 1 if data.plinth.resolved.projects.x",
                true,
            ),
            ("package a\ndeny contains 1 if data.plinth.resolved", true),
            (
                "package a\ndeny contains 1 if count(data.plinth.resolved.projects) > 1",
                false,
            ),
            (
                "package a\ndeny contains 1 if data.plinth.parameters.x",
                false,
            ),
        ] {
            assert_eq!(engine(rego).reads_into_projects(), into, "{rego}");
        }
    }

    #[test]
    fn only_the_paths_rules_read_are_kept() {
        let data = json!({
            "plinth": {"parameters": {"a": 1, "b": [2]}, "resolved": {"projects": {"p": {}}, "pools": {"q": 1}}, "specs": {"Project": {}}},
            "other": {"x": 1}
        });
        let paths = |ps: &[&[&str]]| -> Vec<Vec<String>> {
            ps.iter()
                .map(|p| p.iter().map(|s| (*s).to_owned()).collect())
                .collect()
        };
        let read = paths(&[
            &["plinth", "parameters"],
            &["plinth", "parameters", "a"],
            &["plinth", "resolved", "projects"],
            &["missing", "x"],
        ]);
        assert_eq!(
            only_paths(data.clone(), &read),
            json!({"plinth": {"parameters": {"a": 1, "b": [2]}, "resolved": {"projects": {"p": {}}}}})
        );
        assert_eq!(
            only_paths(data.clone(), &paths(&[&[]])),
            data,
            "the root is everything"
        );
        assert_eq!(
            only_paths(data.clone(), &paths(&[])),
            json!({}),
            "nothing read, nothing kept"
        );
    }

    #[test]
    fn the_native_rules_are_written_for_the_embedded_library() {
        assert_eq!(
            library_digest(&default_library()),
            native::WRITTEN_FOR,
            "policies/*.rego changed: make the same change in policy/native.rs (its tests compare \
             it with regorus), then set `WRITTEN_FOR` to this digest; until then the library is \
             evaluated by regorus alone"
        );
    }

    #[test]
    fn the_embedded_library_is_every_policy_of_policies_dir() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .expect("policies/")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".rego") && !n.ends_with("_test.rego"))
            .map(|n| format!("<plinth>/{n}"))
            .collect();
        on_disk.sort();
        let embedded: Vec<String> = default_library()
            .iter()
            .map(|f| f.path.to_string())
            .collect();
        assert!(embedded.len() >= 12, "{embedded:?}");
        assert_eq!(embedded, on_disk);
    }

    /// The rules of an engine, by whether they may be memoised.
    fn cacheable_rules(files: &[PolicyFile], opts: &PolicyOptions) -> (Vec<String>, Vec<String>) {
        let mut d = Diagnostics::new();
        let e = Engine::new(files, opts, &mut d);
        assert!(d.is_empty(), "{d:?}");
        let (yes, no): (Vec<_>, Vec<_>) = e.rules.iter().zip(&e.cacheable).partition(|(_, c)| **c);
        let names = |v: Vec<(&Rule, &bool)>| v.into_iter().map(|(r, _)| r.name.clone()).collect();
        (names(yes), names(no))
    }

    #[test]
    fn default_rules_are_memoised_keyed_by_the_platform_data_they_read() {
        let opts = PolicyOptions {
            all_namespaces: true,
            ..PolicyOptions::default()
        };
        let (yes, no) = cacheable_rules(&default_library(), &opts);
        eprintln!("cacheable: {yes:?}\nnot: {no:?}");
        // Every default rule reads `input` and documents of `data.plinth` at fixed paths.
        assert!(no.is_empty(), "{no:?}");
        assert_eq!(yes.len(), 21);
        let mut d = Diagnostics::new();
        let e = Engine::new(&default_library(), &opts, &mut d);
        let reads = |name: &str| -> Vec<String> {
            let i = e.rules.iter().position(|r| r.name == name).expect("rule");
            e.reads[i].iter().flatten().map(|p| p.join(".")).collect()
        };
        // Through `lib.project_of`, or `data.plinth.parameters` directly.
        assert_eq!(
            reads("deny_gpu_cap"),
            ["plinth.parameters", "plinth.resolved.projects"]
        );
        assert_eq!(
            reads("deny_image_registry"),
            ["plinth.parameters.allowedRegistries"]
        );
        // Through `lib.images` / `lib.containers` only.
        for r in [
            "deny_latest_tag",
            "deny_gpu_requests_differ",
            "deny_privileged",
        ] {
            assert!(reads(r).is_empty(), "{r}: {:?}", reads(r));
        }
    }

    #[test]
    fn a_data_reference_anywhere_in_the_chain_makes_a_rule_uncacheable() {
        let f = |path: &str, text: &str| PolicyFile {
            path: path.into(),
            text: text.into(),
        };
        let files = vec![
            f(
                "lib.rego",
                "package lib\n\npure(x) := x.a\n\nimpure(x) := data.other.y[x]\n\nnow := time.now_ns()\n",
            ),
            f(
                "main.rego",
                "package main\n\nimport data.lib\nimport data.lib.impure as imp\n\ndeny_a contains m if {\n\tm := lib.pure(input)\n}\n\ndeny_b contains m if {\n\tm := helper(input)\n}\n\nhelper(x) := lib.impure(x)\n\ndeny_c contains m if {\n\tm := imp(input)\n}\n\ndeny_d contains m if {\n\tm := data.lib.pure(input)\n}\n\ndeny_e contains m if {\n\tm := sprintf(\"%v\", [lib.now])\n}\n\ndeny_f contains m if {\n\tsome m in data.main.helper2\n\tinput.x\n}\n\nhelper2 := data[\"x\"]\n\ndeny_g contains m if {\n\t# data.plinth is only a comment\n\tm := \"data.plinth\"\n}\n",
            ),
        ];
        let (yes, no) = cacheable_rules(&files, &PolicyOptions::default());
        // `deny_b` and `deny_c` read `data.other.y` (a fixed path) through helpers.
        assert_eq!(yes, ["deny_a", "deny_b", "deny_c", "deny_d", "deny_g"]);
        assert_eq!(no, ["deny_e", "deny_f"]);
        let mut d = Diagnostics::new();
        let mut e = Engine::new(&files, &PolicyOptions::default(), &mut d);
        let id = |e: &Engine, name: &str| {
            let i = e.rules.iter().position(|r| r.name == name).expect("rule");
            e.memo_ids[i].clone()
        };
        assert_eq!(id(&e, "deny_a"), "main.deny_a");
        let before = id(&e, "deny_b");
        assert_eq!(before[11..], id(&e, "deny_c")[11..], "same data, same hash");
        e.set_data(
            Some(&json!({"other": {"y": {"k": 1}}, "unread": 1})),
            json!({}),
            &mut d,
        );
        let after = id(&e, "deny_b");
        assert_ne!(before, after, "the memo key follows the data read");
        e.set_data(
            Some(&json!({"other": {"y": {"k": 1}}, "unread": 2})),
            json!({}),
            &mut d,
        );
        assert_eq!(
            id(&e, "deny_b"),
            after,
            "data not read does not change the key"
        );
        assert!(d.is_empty(), "{d:?}");
        // An exception reading all of `data` makes every rule of its package uncacheable.
        let mut with_exception = files.clone();
        with_exception.push(f(
            "exc.rego",
            "package main\n\nexception contains r if {\n\tsome k, _ in data\n\tr := k\n}\n",
        ));
        let (yes, _) = cacheable_rules(&with_exception, &PolicyOptions::default());
        assert!(yes.is_empty(), "{yes:?}");
        // A top-level line continuing an expression: the package is not read reliably.
        let odd = vec![f(
            "odd.rego",
            "package main\n\ndeny_x contains m if\ninput.a == data.q\n",
        )];
        let mut d = Diagnostics::new();
        let e = Engine::new(&odd, &PolicyOptions::default(), &mut d);
        assert!(e.cacheable.iter().all(|c| !c), "{d:?}");
    }

    #[test]
    fn guard_kinds_reads_only_literal_guards() {
        let text = "package main\n\ndeny_a contains m if {\n\tinput.kind == \"Pod\"\n\tm := 1\n}\n\ndeny_b contains m if {\n\tinput.kind in {\"A\", \"B\"}\n\tm := 1\n}\n\ndeny_c contains m if {\n\tnot input.kind == \"Pod\"\n\tm := 1\n}\n\ndeny_d contains \"x\" if input.kind == \"Job\"\n\ndeny_e contains m if {\n\tinput.kind in kinds\n\tm := 1\n}\n";
        let kinds = |line| guard_kinds(text, line).map(|k| k.into_iter().collect::<Vec<_>>());
        assert_eq!(kinds(3), Some(vec!["Pod".to_owned()]));
        assert_eq!(kinds(8), Some(vec!["A".to_owned(), "B".to_owned()]));
        assert_eq!(kinds(13), None, "a negated guard does not restrict");
        assert_eq!(kinds(18), Some(vec!["Job".to_owned()]));
        assert_eq!(kinds(20), None, "a set by reference does not restrict");
    }

    #[test]
    fn rules_run_only_on_kinds_they_can_fire_on_and_findings_do_not_change() {
        let files = vec![PolicyFile {
            path: "p.rego".into(),
            text: "package main\n\ndeny_pod contains \"pod\" if {\n\tinput.kind == \"Pod\"\n}\n\ndeny_pod contains \"any\" if {\n\tinput.bad\n}\n\ndeny_job contains \"job\" if input.kind == \"Job\"\n".into(),
        }];
        let mut d = Diagnostics::new();
        let mut e = Engine::new(&files, &PolicyOptions::default(), &mut d);
        assert!(d.is_empty());
        let by_name: BTreeMap<&str, Option<BTreeSet<String>>> = e
            .rules
            .iter()
            .map(|r| (r.name.as_str(), r.kinds.clone()))
            .collect();
        assert_eq!(
            by_name["deny_pod"], None,
            "two definitions, one unguarded: any kind"
        );
        assert_eq!(
            by_name["deny_job"],
            Some(BTreeSet::from(["Job".to_owned()]))
        );
        let place = |_: Option<&Value>| Label::new(Span::file_start("x".into()));
        let mut out = Diagnostics::new();
        e.report_input(
            InputRef::Value(&json!({"kind": "Service", "bad": true})),
            "Service",
            None,
            &place,
            &mut out,
        );
        e.report_input(
            InputRef::Value(&json!({"kind": "Job"})),
            "Job",
            None,
            &place,
            &mut out,
        );
        e.report_input(
            InputRef::Value(&json!({"kind": "Pod"})),
            "Pod",
            None,
            &place,
            &mut out,
        );
        let msgs: Vec<String> = out.into_sorted().into_iter().map(|d| d.message).collect();
        assert_eq!(msgs, ["any", "job", "pod"]);
    }

    #[test]
    fn rule_heads_follow_conftest_conventions() {
        let text = "package main\n\ndeny contains msg if {\n  true\n}\nwarn_latest[msg] {\n}\nviolation_x := 1\ndenyall := 1\ndeny_y if true\n";
        let heads: Vec<(String, u32)> = rule_heads(text)
            .into_iter()
            .map(|(n, _, l, _)| (n, l))
            .collect();
        assert_eq!(
            heads,
            vec![
                ("deny".into(), 3),
                ("warn_latest".into(), 6),
                ("violation_x".into(), 8),
                ("deny_y".into(), 10)
            ]
        );
        assert_eq!(
            package_of("# c\npackage kubernetes.admission\n"),
            Some("kubernetes.admission".into())
        );
        // conftest's patterns: `_` segments of letters and digits only.
        let names = "deny_ := 1\ndeny__x := 1\nwarn_a_b := 1\nwarnx := 1\nviolation_1 := 1\n";
        let heads: Vec<String> = rule_heads(names).into_iter().map(|h| h.0).collect();
        assert_eq!(heads, ["warn_a_b", "violation_1"]);
        let flags: Vec<bool> = rule_heads(text).into_iter().map(|h| h.3).collect();
        assert_eq!(
            flags,
            [false, false, false, true],
            "only `deny_y if` is boolean"
        );
    }

    #[test]
    fn namespaces_match_literally_or_by_glob() {
        let p = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        assert!(namespace_matches("main", &p(&["main"])));
        assert!(!namespace_matches("main.gke", &p(&["main"])));
        assert!(namespace_matches("main.gke", &p(&["main.*"])));
        assert!(namespace_matches("k8s.simple.deployment", &p(&["k8s.*"])));
        assert!(namespace_matches("commands", &p(&["c*"])));
        assert!(!namespace_matches("main", &p(&["c*"])));
        assert!(namespace_matches("main", &p(&["ma?n"])));
        assert!(namespace_matches("main", &p(&["[lm]ain"])));
        assert!(!namespace_matches("main", &p(&["[!m]ain"])));
    }

    #[test]
    fn error_positions_are_parsed() {
        assert_eq!(
            error_position(
                "error: policies/x.rego:12:5: expecting `}`",
                "policies/x.rego"
            ),
            Some(Pos::new(12, 5))
        );
        assert_eq!(error_position("nothing here", "a.rego"), None);
    }
}
