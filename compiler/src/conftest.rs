//! conftest's front end: what `plinth policy eval` reads and reports.
//!
//! It reads documents and `--data` the way `conftest test` does (multi-document YAML split on
//! `---` lines, a file that holds a list evaluated item by item, `--combine` into one list of
//! `{"path", "contents"}`, data files merged into `data` under their directories' names),
//! evaluates them with the policy engine ([`crate::policy::Engine`], conftest's rule
//! semantics) and reports conftest's results: per file and namespace, the findings and the
//! counts "N tests, N passed, N warnings, N failures, N exceptions".

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value, json};

use crate::diag::{Diagnostics, Label, Span};
use crate::load::files;
use crate::parse::YamlLimits;
use crate::policy::{Engine, Finding, PolicyFile, PolicyOptions, namespace_matches};

/// A document or data file that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("cannot read `{path}`: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("`{path}` is not valid YAML: {message}")]
    Yaml { path: String, message: String },
    #[error("`{path}` is not valid JSON: {source}")]
    Json {
        path: String,
        source: serde_json::Error,
    },
    #[error("data file `{path}` must hold a mapping at its top")]
    DataNotObject { path: String },
    #[error("data file `{path}` sets `{key}`, which another data file set already")]
    DataConflict { path: String, key: String },
    #[error("no files found")]
    NoFiles,
}

/// How to read documents (`--parser`); by default, by extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Parser {
    Yaml,
    Json,
}

/// The extensions `plinth policy eval` reads in directories, and `--data` reads at all.
const EXTENSIONS: [&str; 3] = ["yaml", "yml", "json"];

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> InputError + '_ {
    move |source| InputError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Files of a directory, recursively, sorted, with one of [`EXTENSIONS`].
fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), InputError> {
    out.extend(files::files_under(dir, &EXTENSIONS).map_err(io(dir))?);
    Ok(())
}

fn has_extension(path: &Path) -> bool {
    files::has_extension(path, &EXTENSIONS)
}

/// The text of an input file, within the loader's size bound.
fn read(path: &Path) -> Result<String, InputError> {
    files::read_text(path, crate::load::Limits::default().max_file_size).map_err(io(path))
}

/// One YAML document as JSON (`null` when empty); the first, if the text holds several.
fn yaml_document(path: &str, text: &str) -> Result<Value, InputError> {
    let file: Arc<str> = Arc::from(path);
    let (docs, diags) = crate::parse::yaml::parse_documents(&file, text, YamlLimits::default());
    if let Some(d) = diags.iter().find(|d| d.is_error()) {
        return Err(InputError::Yaml {
            path: path.to_owned(),
            message: d.message.clone(),
        });
    }
    Ok(docs.first().map_or(Value::Null, |d| d.root.to_json()))
}

/// A YAML file as conftest reads it: split on `---` lines (a file starting with a `%`
/// directive keeps it with its first document); several documents are a list.
pub fn parse_yaml(path: &str, text: &str) -> Result<Value, InputError> {
    let linebreak = if text.contains("\r\n") { "\r\n" } else { "\n" };
    let separator = format!("{linebreak}---{linebreak}");
    let mut parts: Vec<String> = text.split(separator.as_str()).map(str::to_owned).collect();
    if text.starts_with('%') && parts.len() > 2 {
        let second = parts.remove(1);
        parts[0] = format!("{}{separator}{second}", parts[0]);
    }
    if text.starts_with('%') && parts.len() <= 2 || parts.len() <= 1 {
        return yaml_document(path, text);
    }
    parts
        .iter()
        .map(|p| yaml_document(path, p))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

/// A file by `parser`, else by its extension: `.json` as JSON, anything else as YAML.
fn parse_file(path: &Path, text: &str, parser: Option<Parser>) -> Result<Value, InputError> {
    let shown = path.display().to_string();
    let json = match parser {
        Some(p) => p == Parser::Json,
        None => path.extension().is_some_and(|e| e == "json"),
    };
    if json {
        serde_json::from_str(text).map_err(|source| InputError::Json {
            path: shown,
            source,
        })
    } else {
        parse_yaml(&shown, text)
    }
}

/// The documents to evaluate, per file, as conftest reads them: files, directories (their
/// `.yaml`/`.yml`/`.json` files, recursively) and `-` (standard input, YAML unless `parser`
/// says JSON). Empty names are skipped.
pub fn read_inputs(
    args: &[PathBuf],
    parser: Option<Parser>,
    stdin: &mut dyn std::io::Read,
) -> Result<Vec<(String, Value)>, InputError> {
    let mut files = Vec::new();
    let mut out = Vec::new();
    for arg in args {
        if arg.as_os_str().is_empty() {
            continue;
        }
        if arg.as_os_str() == "-" {
            files.push(None);
        } else if files::is_dir(arg) {
            let mut found = Vec::new();
            walk(arg, &mut found)?;
            files.extend(found.into_iter().map(Some));
        } else {
            files.push(Some(arg.clone()));
        }
    }
    if files.is_empty() {
        return Err(InputError::NoFiles);
    }
    for file in files {
        match file {
            None => {
                let mut text = String::new();
                stdin
                    .read_to_string(&mut text)
                    .map_err(io(Path::new("-")))?;
                out.push((
                    "-".to_owned(),
                    parse_file(Path::new("-"), &text, Some(parser.unwrap_or(Parser::Yaml)))?,
                ));
            }
            Some(path) => {
                let text = read(&path)?;
                out.push((
                    path.display().to_string(),
                    parse_file(&path, &text, parser)?,
                ));
            }
        }
    }
    Ok(out)
}

/// Merge `doc` into `into` (objects deeply); a value set twice is a conflict.
fn merge(
    into: &mut Map<String, Value>,
    doc: Map<String, Value>,
    path: &Path,
) -> Result<(), InputError> {
    for (k, v) in doc {
        match (into.get_mut(&k), v) {
            (None, v) => {
                into.insert(k, v);
            }
            (Some(Value::Object(a)), Value::Object(b)) => merge(a, b, path)?,
            (Some(_), _) => {
                return Err(InputError::DataConflict {
                    path: path.display().to_string(),
                    key: k,
                });
            }
        }
    }
    Ok(())
}

/// `--data` as conftest (OPA's loader) reads it: YAML and JSON files (others are skipped),
/// directories recursively, a file in a subdirectory placed under the subdirectories' names
/// (`-d dir` with `dir/a/b/x.yaml` gives `data.a.b`); everything merged into one object.
pub fn read_data(paths: &[PathBuf]) -> Result<Option<Value>, InputError> {
    if paths.is_empty() {
        return Ok(None);
    }
    let mut data = Map::new();
    for root in paths {
        let mut files = Vec::new();
        if files::is_dir(root) {
            walk(root, &mut files)?;
        } else if has_extension(root) {
            files.push(root.clone());
        } else if !files::exists(root) {
            return Err(io(root)(std::io::Error::from(std::io::ErrorKind::NotFound)));
        }
        for file in files {
            let text = read(&file)?;
            let shown = file.display().to_string();
            let value = if file.extension().is_some_and(|e| e == "json") {
                serde_json::from_str(&text).map_err(|source| InputError::Json {
                    path: shown.clone(),
                    source,
                })?
            } else {
                yaml_document(&shown, &text)?
            };
            let prefix: Vec<String> = file
                .parent()
                .and_then(|p| p.strip_prefix(root).ok())
                .map(|p| {
                    p.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            let placed = prefix.iter().rev().fold(value, |v, k| {
                Value::Object(Map::from_iter([(k.clone(), v)]))
            });
            let Value::Object(obj) = placed else {
                return Err(InputError::DataNotObject { path: shown });
            };
            merge(&mut data, obj, &file)?;
        }
    }
    Ok(Some(Value::Object(data)))
}

/// The result of one file (or `Combined`) in one namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckResult {
    pub filename: String,
    pub namespace: String,
    pub successes: usize,
    pub warnings: Vec<Finding>,
    pub failures: Vec<Finding>,
    /// The exception queries that matched.
    pub exceptions: Vec<String>,
    /// What `print` wrote while evaluating it: `file:line: message`.
    pub prints: Vec<String>,
}

/// conftest's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    pub tests: usize,
    pub passed: usize,
    pub warnings: usize,
    pub failures: usize,
    pub exceptions: usize,
}

impl Totals {
    pub fn of(results: &[CheckResult]) -> Totals {
        let mut t = Totals::default();
        for r in results {
            t.passed += r.successes;
            t.warnings += r.warnings.len();
            t.failures += r.failures.len();
            t.exceptions += r.exceptions.len();
        }
        t.tests = t.passed + t.warnings + t.failures + t.exceptions;
        t
    }

    /// "N tests, N passed, N warnings, N failures, N exceptions", as conftest prints it.
    pub fn line(&self) -> String {
        let s = |n: usize| if n == 1 { "" } else { "s" };
        format!(
            "{} test{}, {} passed, {} warning{}, {} failure{}, {} exception{}",
            self.tests,
            s(self.tests),
            self.passed,
            self.warnings,
            s(self.warnings),
            self.failures,
            s(self.failures),
            self.exceptions,
            s(self.exceptions)
        )
    }
}

/// `conftest test`: evaluate the policies' selected namespaces over each file's documents (a
/// file holding a list, such as multi-document YAML, is evaluated item by item), or over all
/// of them at once with `combine`. Results are per namespace, then per file.
pub fn evaluate(
    files: &[PolicyFile],
    opts: &PolicyOptions,
    inputs: &[(String, Value)],
    combine: bool,
) -> (Vec<CheckResult>, Diagnostics) {
    let mut diags = Diagnostics::new();
    let mut engine = Engine::new(files, opts, &mut diags).exact();
    engine.gather_prints();
    let namespaces: Vec<String> = if opts.all_namespaces {
        engine.packages().iter().cloned().collect()
    } else if opts.namespaces.iter().any(|p| p.contains(['*', '?', '['])) {
        engine
            .packages()
            .iter()
            .filter(|p| namespace_matches(p, &opts.namespaces))
            .cloned()
            .collect()
    } else {
        let mut seen = std::collections::BTreeSet::new();
        opts.namespaces
            .iter()
            .filter(|n| seen.insert(n.as_str()))
            .cloned()
            .collect()
    };
    let units: Vec<(String, Value)> = if combine {
        let mut all: Vec<(String, Value)> = Vec::new();
        for (path, value) in inputs {
            match value {
                Value::Array(items) => {
                    all.extend(items.iter().map(|v| (path.clone(), v.clone())));
                }
                v => all.push((path.clone(), v.clone())),
            }
        }
        all.sort_by(|a, b| a.0.cmp(&b.0));
        let combined = all
            .into_iter()
            .map(|(path, contents)| json!({"path": path, "contents": contents}))
            .collect();
        vec![("Combined".to_owned(), Value::Array(combined))]
    } else {
        inputs.to_vec()
    };
    let cwd = std::env::current_dir().unwrap_or_default();
    // Per file, per namespace.
    let mut by_unit: Vec<BTreeMap<String, CheckResult>> = Vec::new();
    let _budget = crate::policy::MemoryBudget::new(opts.memory);
    for (name, value) in &units {
        let abs = cwd.join(name);
        engine.set_data(
            opts.data.as_ref(),
            json!({"conftest": {"file": {
                "name": abs.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
                "dir": abs.parent().map(|p| p.display().to_string()).unwrap_or_default(),
            }}}),
            &mut diags,
        );
        let file: Arc<str> = Arc::from(name.as_str());
        let place = |_: Option<&Value>| Label::new(Span::file_start(file.clone()));
        let subs: Vec<&Value> = match value {
            Value::Array(items) if !combine => items.iter().collect(),
            v => vec![v],
        };
        let mut results: BTreeMap<String, CheckResult> = namespaces
            .iter()
            .map(|ns| {
                (
                    ns.clone(),
                    CheckResult {
                        filename: name.clone(),
                        namespace: ns.clone(),
                        successes: 0,
                        warnings: Vec::new(),
                        failures: Vec::new(),
                        exceptions: Vec::new(),
                        prints: Vec::new(),
                    },
                )
            })
            .collect();
        let mut prints = Vec::new();
        for sub in subs {
            let outcomes = engine.eval_input(sub, &place, &mut diags);
            prints.extend(engine.take_prints());
            for outcome in outcomes {
                if let Some(r) = results.get_mut(&outcome.namespace) {
                    r.successes += outcome.successes;
                    r.warnings.extend(outcome.warnings);
                    r.failures.extend(outcome.failures);
                    r.exceptions.extend(outcome.exceptions);
                }
            }
        }
        // conftest keeps prints with their queries; they are shown first, in evaluation order.
        if let Some(first) = results.values_mut().next() {
            first.prints = prints;
        }
        by_unit.push(results);
    }
    let mut out = Vec::new();
    for ns in &namespaces {
        for unit in &mut by_unit {
            if let Some(r) = unit.remove(ns) {
                out.push(r);
            }
        }
    }
    (out, diags)
}

/// conftest's standard output: `WARN`/`FAIL`/`EXCP - <file> - <namespace> - <message>` lines,
/// a blank line and the totals.
pub fn render_standard(results: &[CheckResult], suppress_exceptions: bool) -> String {
    let mut s = String::new();
    for p in results.iter().flat_map(|r| &r.prints) {
        s += &format!("PRNT   {p}\n\n");
    }
    for r in results {
        let file = if r.filename == "-" {
            "-".to_owned()
        } else {
            format!("- {}", r.filename)
        };
        let ns = format!("- {} -", r.namespace);
        for w in &r.warnings {
            s += &format!("WARN {file} {ns} {}\n", w.msg);
        }
        for f in &r.failures {
            s += &format!("FAIL {file} {ns} {}\n", f.msg);
        }
        if !suppress_exceptions {
            for e in &r.exceptions {
                s += &format!("EXCP {file} {ns} {e}\n");
            }
        }
    }
    s += "\n";
    s += &Totals::of(results).line();
    s += "\n";
    s
}

/// A finding as conftest's JSON shows it: `msg`, `loc` (from `_loc`), and every other field
/// of the finding, with the rule's query, in `metadata`.
fn finding_json(f: &Finding) -> Value {
    let mut out = Map::new();
    out.insert("msg".into(), Value::String(f.msg.clone()));
    let mut metadata = Map::new();
    if let Value::Object(o) = &f.value {
        for (k, v) in o {
            match k.as_str() {
                "msg" => {}
                "_loc" => {
                    let mut loc = Map::new();
                    if let Some(file) = v.get("file").and_then(Value::as_str) {
                        loc.insert("file".into(), Value::String(file.to_owned()));
                    }
                    if let Some(line) = v.get("line").filter(|l| l.is_number()) {
                        loc.insert("line".into(), line.clone());
                    }
                    if !loc.is_empty() {
                        out.insert("loc".into(), Value::Object(loc));
                    }
                }
                _ => {
                    metadata.insert(k.clone(), v.clone());
                }
            }
        }
    }
    metadata.insert("query".into(), Value::String(f.query.clone()));
    out.insert("metadata".into(), Value::Object(metadata));
    Value::Object(out)
}

/// conftest's JSON output (`--output json`): one object per file and namespace.
pub fn render_json(results: &[CheckResult]) -> String {
    let items: Vec<Value> = results
        .iter()
        .map(|r| {
            let mut o = Map::new();
            let name = if r.filename == "-" { "" } else { &r.filename };
            o.insert("filename".into(), Value::String(name.to_owned()));
            o.insert("namespace".into(), Value::String(r.namespace.clone()));
            o.insert("successes".into(), Value::from(r.successes));
            if !r.warnings.is_empty() {
                o.insert(
                    "warnings".into(),
                    r.warnings.iter().map(finding_json).collect(),
                );
            }
            if !r.failures.is_empty() {
                o.insert(
                    "failures".into(),
                    r.failures.iter().map(finding_json).collect(),
                );
            }
            if !r.exceptions.is_empty() {
                o.insert(
                    "exceptions".into(),
                    r.exceptions.iter().map(|e| json!({"msg": e})).collect(),
                );
            }
            Value::Object(o)
        })
        .collect();
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    let _ = serde::Serialize::serialize(&Value::Array(items), &mut ser);
    String::from_utf8_lossy(&buf).into_owned() + "\n"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_is_split_as_conftest_splits_it() {
        let one = parse_yaml("x", "a: 1\n").expect("yaml");
        assert_eq!(one, json!({"a": 1}));
        let two = parse_yaml("x", "a: 1\n---\nb: 2\n").expect("yaml");
        assert_eq!(two, json!([{"a": 1}, {"b": 2}]));
        // A leading separator is not a split; an empty document is `null`.
        let lead = parse_yaml("x", "---\na: 1\n---\nb: 2").expect("yaml");
        assert_eq!(lead, json!([{"a": 1}, {"b": 2}]));
        let empty = parse_yaml("x", "a: 1\n---\n\n---\nb: 2").expect("yaml");
        assert_eq!(empty, json!([{"a": 1}, null, {"b": 2}]));
        let crlf = parse_yaml("x", "a: 1\r\n---\r\nb: 2\r\n").expect("yaml");
        assert_eq!(crlf, json!([{"a": 1}, {"b": 2}]));
        assert!(parse_yaml("x", "a: [\n").is_err());
    }

    #[test]
    fn totals_line_is_conftests() {
        let t = Totals {
            tests: 1,
            passed: 0,
            warnings: 0,
            failures: 1,
            exceptions: 0,
        };
        assert_eq!(
            t.line(),
            "1 test, 0 passed, 0 warnings, 1 failure, 0 exceptions"
        );
    }
}
