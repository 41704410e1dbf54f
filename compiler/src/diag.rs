//! Diagnostics: the one value type for user mistakes.
//!
//! Every stage reports problems in the user's input as [`Diagnostic`]s and keeps going, so a
//! run shows all of them at once. A diagnostic has a stable [`Code`], a [`Severity`], a primary
//! [`Label`] (file, line, column, field path), optional related labels (the other side of a
//! duplicate, the capacity line of an over-allocated pool), a message and a hint. Rendering
//! lives in [`crate::render`]; nothing here prints.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// How bad a diagnostic is. `Error` fails a run; `Warning` fails it only under `--strict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Note,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "note",
        }
    }
}

/// A position in a source file: 1-based line, 1-based column counted in characters.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default,
)]
pub struct Pos {
    pub line: u32,
    pub column: u32,
}

impl Pos {
    pub fn new(line: u32, column: u32) -> Pos {
        Pos { line, column }
    }
}

/// A half-open range in one file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    /// Path relative to the platform repository root, `/`-separated.
    pub file: Arc<str>,
    pub start: Pos,
    pub end: Pos,
}

impl Span {
    pub fn new(file: Arc<str>, start: Pos, end: Pos) -> Span {
        Span { file, start, end }
    }

    /// A span covering a whole file, for problems that have no better place (size, encoding).
    pub fn file_start(file: Arc<str>) -> Span {
        Span {
            file,
            start: Pos::new(1, 1),
            end: Pos::new(1, 1),
        }
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.start.line, self.start.column)
    }
}

/// A place in the input a diagnostic points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Label {
    pub span: Span,
    /// Dotted field path inside the document, e.g. `spec.allocations[2].gpu`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What this place has to do with the problem (for related labels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Label {
    pub fn new(span: Span) -> Label {
        Label {
            span,
            field: None,
            note: None,
        }
    }
    pub fn field(mut self, field: impl Into<String>) -> Label {
        let f = field.into();
        self.field = if f.is_empty() { None } else { Some(f) };
        self
    }
    pub fn note(mut self, note: impl Into<String>) -> Label {
        self.note = Some(note.into());
        self
    }
}

macro_rules! codes {
    ($( $(#[$doc:meta])* $variant:ident = $id:literal, $slug:literal, $sev:ident; )*) => {
        /// Stable diagnostic codes. The id (`S002`) never changes meaning once released; the
        /// slug is the readable name used in documentation and JSON output.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum Code {
            $( $(#[$doc])* $variant, )*
        }

        impl Code {
            /// Every code, in declaration order (for documentation and tests).
            pub const ALL: &'static [Code] = &[$(Code::$variant),*];

            pub fn id(self) -> &'static str {
                match self { $(Code::$variant => $id,)* }
            }
            pub fn slug(self) -> &'static str {
                match self { $(Code::$variant => $slug,)* }
            }
            /// The severity this code is reported with.
            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$sev,)* }
            }
        }
    };
}

codes! {
    // --- loading (L) ---
    /// A file is larger than the configured limit.
    FileTooLarge = "L001", "file-too-large", Error;
    /// A symbolic link points outside the repository.
    SymlinkEscapes = "L002", "symlink-escapes-repo", Error;
    /// A file is not valid UTF-8.
    InvalidUtf8 = "L003", "invalid-utf8", Error;
    /// A file could not be read.
    UnreadableFile = "L004", "unreadable-file", Error;
    /// The repository holds more files than the configured limit.
    TooManyFiles = "L005", "too-many-files", Error;
    /// A YAML file holds no documents.
    EmptyFile = "L006", "empty-file", Error;
    /// A path component is not allowed (control characters, not UTF-8).
    BadPath = "L007", "bad-path", Error;
    /// Files below the directory depth limit are not read.
    TooDeep = "L008", "directory-too-deep", Error;
    /// A directory holding a `.plinth-output` marker is build output, not read.
    OutputSkipped = "L009", "output-directory-skipped", Note;

    // --- YAML (Y) ---
    /// The YAML scanner or parser rejected the text.
    YamlSyntax = "Y001", "yaml-syntax", Error;
    /// Alias expansion or node count exceeded its budget (billion laughs).
    YamlTooLarge = "Y002", "yaml-budget-exceeded", Error;
    /// Nesting deeper than the limit.
    YamlTooDeep = "Y003", "yaml-too-deep", Error;
    /// A mapping has the same key twice.
    DuplicateKey = "Y004", "duplicate-key", Error;
    /// An alias refers to an anchor that does not exist.
    UnknownAnchor = "Y005", "unknown-anchor", Error;
    /// A mapping key is not a scalar.
    ComplexKey = "Y006", "complex-key", Error;
    /// A value JSON cannot carry (NaN, infinity, an unsupported tag).
    UnsupportedValue = "Y007", "unsupported-value", Error;

    // --- document shape and schema (S) ---
    /// A document is not a mapping.
    NotAMapping = "S001", "document-not-a-mapping", Error;
    /// A field the schema does not know.
    UnknownField = "S002", "unknown-field", Error;
    /// A `kind` plinth does not know.
    UnknownKind = "S003", "unknown-kind", Error;
    /// An `apiVersion` other than `plinth.dev/v1alpha1`.
    WrongApiVersion = "S004", "wrong-api-version", Error;
    /// A required field is missing.
    MissingField = "S005", "missing-field", Error;
    /// A value of the wrong type.
    WrongType = "S006", "wrong-type", Error;
    /// A value outside what the schema allows (enum, pattern, range, length).
    InvalidValue = "S007", "invalid-value", Error;
    /// Mutually exclusive fields given together, or none of a required choice.
    InvalidChoice = "S008", "invalid-choice", Error;
    /// A quantity (`500m`, `16Gi`) that does not parse.
    InvalidQuantity = "S009", "invalid-quantity", Error;

    // --- semantics (E) ---
    /// Two objects of one kind share a name.
    DuplicateName = "E100", "duplicate-name", Error;
    /// No Platform document, or more than one.
    PlatformCount = "E101", "platform-count", Error;
    /// A name that is not a DNS-1123 label.
    InvalidName = "E102", "invalid-name", Error;
    /// A reference to a project that does not exist.
    UnknownProject = "E110", "unknown-project", Error;
    /// A reference to a dataset that does not exist.
    UnknownDataset = "E111", "unknown-dataset", Error;
    /// A reference to a GPU quota (pool) that does not exist.
    UnknownGpuQuota = "E112", "unknown-gpu-quota", Error;
    /// A reference to an instance type that does not exist.
    UnknownInstanceType = "E113", "unknown-instance-type", Error;
    /// A reference to an App template that does not exist.
    UnknownTemplate = "E114", "unknown-template", Error;
    /// A reference to a cluster the Platform does not declare.
    UnknownCluster = "E115", "unknown-cluster", Error;
    /// A project is given the same dataset, allocation or member twice.
    DuplicateEntry = "E116", "duplicate-entry", Error;
    /// An image or instance type a project may not use.
    NotAllowed = "E117", "not-allowed", Error;
    /// A reference to a Kueue priority class the pool does not offer.
    UnknownPriorityClass = "E118", "unknown-priority-class", Error;
    /// GPU allocations add up to more than the pool's capacity.
    GpuOvercommit = "E130", "gpu-overcommit", Error;
    /// A per-user quota above the project's quota.
    PerUserAboveProject = "E131", "per-user-above-project", Error;
    /// An instance type asks for more GPUs than one node has.
    InstanceTypeTooLarge = "E132", "instance-type-too-large", Error;
    /// A dataset version that is not an immutable revision.
    FloatingVersion = "E133", "floating-version", Error;
    /// Traffic weights that do not add up to 100.
    TrafficWeights = "E134", "traffic-weights", Error;
    /// A rollout needs more GPUs than its project is allocated.
    RolloutGpuExceeds = "E135", "rollout-gpu-exceeds-allocation", Error;
    /// More model rollouts than the project's deployment limit.
    TooManyDeployments = "E136", "too-many-deployments", Error;
    /// A model rollout in a project whose deployments are disabled.
    DeploymentsDisabled = "E137", "deployments-disabled", Error;
    /// A global dataset granted read-write.
    GlobalWritable = "E138", "global-dataset-writable", Error;
    /// A rollout strategy whose fields do not fit together.
    RolloutStrategy = "E139", "rollout-strategy", Error;
    /// A quantity that must be positive or within a bound is not.
    QuantityRange = "E140", "quantity-out-of-range", Error;
    /// A project not placed on any cluster, or a backend used but disabled.
    Placement = "E141", "placement", Error;
    /// An allocation's borrowing/lending limits that make no sense.
    AllocationLimits = "E142", "allocation-limits", Error;
    /// KServe pods in a `restricted` namespace, but the platform does not declare a
    /// restricted-compliant storage initializer (admission would refuse the pods).
    StorageInitializer = "E150", "storage-initializer-not-restricted", Error;
    /// A traffic strategy that needs routing (mirroring, weights) the platform does not have.
    TrafficRouting = "E151", "traffic-routing-unavailable", Error;
    /// A KServe rollout whose needs do not fit a deployment mode the platform supports.
    KserveMode = "E152", "kserve-deployment-mode", Error;
    /// A public endpoint without an ingress controller, TLS or authentication.
    EndpointExposure = "E153", "endpoint-exposure", Error;
    /// A Triton model repository Triton cannot read.
    TritonRepository = "E154", "triton-model-repository", Error;
    /// A dataset granted on a cluster that cannot mount it (an object store of another cloud:
    /// its CSI driver does not exist there).
    NotMountable = "E160", "dataset-not-mountable", Error;
    /// A cloud identity plinth must wire up lacks a cluster setting (the OIDC issuer of an AWS
    /// cluster for IRSA).
    IdentitySetup = "E161", "identity-setup", Error;
    /// A dataset grant or an App names a cluster its project does not live on.
    GrantCluster = "E162", "grant-cluster", Error;

    // --- policies (P) ---
    /// A `deny` or `violation` rule fired.
    PolicyDeny = "P001", "policy-deny", Error;
    /// A `warn` rule fired.
    PolicyWarn = "P002", "policy-warn", Warning;
    /// A policy file does not load (syntax, size).
    PolicyBroken = "P003", "policy-broken", Error;
    /// A rule failed or ran out of time while evaluating.
    PolicyFailed = "P004", "policy-failed", Error;

    // --- templates (T) ---
    /// A template does not parse.
    TemplateSyntax = "T001", "template-syntax", Error;
    /// A template failed while rendering (undefined variable, error raised, bad filter use).
    TemplateRender = "T002", "template-render", Error;
    /// A template ran out of fuel or produced too much output.
    TemplateBudget = "T003", "template-budget", Error;
    /// What a template rendered is not valid YAML or not valid Kubernetes objects.
    TemplateOutput = "T004", "template-output", Error;
    /// An App's values do not match the template's values schema.
    TemplateValues = "T005", "template-values", Error;

    // --- warnings (W) ---
    /// A dataset is declared but nobody can read it.
    UnusedDataset = "W001", "unused-dataset", Warning;
    /// A project without owners.
    NoOwners = "W002", "no-owners", Warning;
    /// A name with invisible or look-alike characters (zero-width, bidi controls, mixed
    /// scripts): it may not be who or what it seems.
    SuspiciousText = "W005", "suspicious-characters", Warning;
    /// A setting a cluster cannot enforce (too old a Kubernetes), or that would not do what
    /// it says (so it is not emitted).
    NotEnforced = "W004", "not-enforced", Warning;
    /// A global dataset that some of its projects' clusters cannot mount (an object store of
    /// another cloud): it is not mounted there.
    NotMountedEverywhere = "W015", "dataset-not-mounted-everywhere", Warning;

    // --- internal (I) ---
    /// plinth produced something it should not have; a bug.
    Internal = "I001", "internal-error", Error;
    /// More diagnostics than `--max-diagnostics` were found; the rest are counted, not shown.
    Omitted = "I002", "diagnostics-omitted", Note;
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let id = String::deserialize(d)?;
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.id() == id)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown diagnostic code `{id}`")))
    }
}

impl Serialize for Code {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.id())
    }
}

/// One user-facing problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub primary: Option<Label>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<Label>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with the code's default severity.
    pub fn new(code: Code, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
            primary: None,
            related: Vec::new(),
            hint: None,
        }
    }
    pub fn at(mut self, label: impl Into<Label>) -> Diagnostic {
        self.primary = Some(label.into());
        self
    }
    pub fn related(mut self, label: impl Into<Label>) -> Diagnostic {
        self.related.push(label.into());
        self
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }
    pub fn severity(mut self, severity: Severity) -> Diagnostic {
        self.severity = severity;
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// Sort key: file, position, code; diagnostics without a place come last.
    fn sort_key(&self) -> (u8, Option<&Span>, Code, &str) {
        match &self.primary {
            Some(l) => (0, Some(&l.span), self.code, &self.message),
            None => (1, None, self.code, &self.message),
        }
    }
}

/// An accumulator of diagnostics, kept in a deterministic order when reported.
#[derive(Debug, Default, Clone)]
pub struct Diagnostics {
    items: Vec<Diagnostic>,
}

impl Diagnostics {
    pub fn new() -> Diagnostics {
        Diagnostics::default()
    }
    pub fn push(&mut self, d: Diagnostic) {
        self.items.push(d);
    }
    pub fn extend(&mut self, other: impl IntoIterator<Item = Diagnostic>) {
        self.items.extend(other);
    }
    pub fn has_errors(&self) -> bool {
        self.items.iter().any(Diagnostic::is_error)
    }
    pub fn error_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count()
    }
    pub fn warning_count(&self) -> usize {
        self.items
            .iter()
            .filter(|d| d.severity == Severity::Warning)
            .count()
    }
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
    pub fn len(&self) -> usize {
        self.items.len()
    }
    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.items.iter()
    }
    /// Sorted by place and code, exact duplicates removed: the order every renderer uses.
    pub fn into_sorted(mut self) -> Vec<Diagnostic> {
        self.items.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        self.items.dedup();
        self.items
    }
}

impl IntoIterator for Diagnostics {
    type Item = Diagnostic;
    type IntoIter = std::vec::IntoIter<Diagnostic>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl Extend<Diagnostic> for Diagnostics {
    fn extend<T: IntoIterator<Item = Diagnostic>>(&mut self, iter: T) {
        self.items.extend(iter);
    }
}

/// The closest candidate to `word` by edit distance, for "did you mean" hints.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let word_l = word.to_ascii_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = levenshtein(&word_l, &c.to_ascii_lowercase());
        let limit = (word.chars().count().max(c.chars().count()) / 3).max(1);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_well_formed() {
        let mut ids: Vec<&str> = Code::ALL.iter().map(|c| c.id()).collect();
        let n = ids.len();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "duplicate diagnostic id");
        let mut slugs: Vec<&str> = Code::ALL.iter().map(|c| c.slug()).collect();
        slugs.sort();
        slugs.dedup();
        assert_eq!(slugs.len(), n, "duplicate diagnostic slug");
        for c in Code::ALL {
            assert_eq!(c.id().len(), 4, "{c:?}");
            assert!(
                c.slug()
                    .chars()
                    .all(|ch| ch.is_ascii_lowercase() || ch == '-' || ch.is_ascii_digit())
            );
        }
    }

    #[test]
    fn suggestions_pick_the_nearest_name() {
        assert_eq!(
            did_you_mean("membrs", ["members", "owners", "quota"]),
            Some("members")
        );
        assert_eq!(
            did_you_mean("Projct", ["Project", "Platform"]),
            Some("Project")
        );
        assert_eq!(did_you_mean("zzzzzz", ["members", "owners"]), None);
    }

    #[test]
    fn sorting_is_by_place_then_code() {
        let f: Arc<str> = Arc::from("b.yaml");
        let g: Arc<str> = Arc::from("a.yaml");
        let mut ds = Diagnostics::new();
        ds.push(
            Diagnostic::new(Code::UnknownField, "x").at(Label::new(Span::new(
                f.clone(),
                Pos::new(3, 1),
                Pos::new(3, 2),
            ))),
        );
        ds.push(Diagnostic::new(Code::PlatformCount, "no platform"));
        ds.push(
            Diagnostic::new(Code::UnknownField, "y").at(Label::new(Span::new(
                g,
                Pos::new(9, 1),
                Pos::new(9, 2),
            ))),
        );
        ds.push(
            Diagnostic::new(Code::UnknownField, "x").at(Label::new(Span::new(
                f,
                Pos::new(3, 1),
                Pos::new(3, 2),
            ))),
        );
        let sorted = ds.into_sorted();
        let msgs: Vec<&str> = sorted.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(msgs, ["y", "x", "no platform"]);
    }
}
