//! Template: the sandbox App templates render in.
//!
//! App templates are minijinja templates in the platform repository (`templates/<name>.yaml.j2`).
//! They are rendered with nothing but what plinth hands them:
//!
//! - **Files**: only other files of the snapshot under `templates/` can be `{% include %}`d,
//!   `{% import %}`ed or `{% extends %}`ed, by their path relative to `templates/`
//!   (`lib/pod.yaml.j2`). The loader reads the in-memory [`Snapshot`], never the disk; an
//!   absolute path, a `..` or a hidden segment is refused before any lookup.
//! - **No environment, network or clock**: minijinja has none of them unless a host adds them,
//!   and plinth adds none (no `env`, no `now()`, no `urlencode`, no random source); the
//!   built-in `debug()` global is removed. A render is a pure function of the snapshot and the
//!   specs, like the rest of lowering.
//! - **Bounded work**: minijinja's fuel ([`FUEL`] per render: every instruction, every byte
//!   produced and every item visited costs fuel), its recursion limit, and its cap on `range()`
//!   (100,000 items) end runaway loops and recursion; the output is capped at [`MAX_OUTPUT`]
//!   bytes while it is written.
//! - **Strict**: an undefined variable or attribute is an error (`UndefinedBehavior::Strict`;
//!   `is defined` and `default(...)` still work). `trim_blocks` and `lstrip_blocks` are on, so
//!   a line holding only a `{% ... %}` tag leaves no blank line behind.
//! - **Values are data**: every `{{ expression }}` is written as one YAML node on one line
//!   (plinth's formatter, [`yaml_scalar`]): no string can end its scalar, add a key or start
//!   a document. Text plinth built from escaped parts (macro calls, `{% set %}` blocks,
//!   `to_yaml`, `tojson`) is marked safe and written as is; `safe` and `escape` are removed.
//!   A value written into *part* of a scalar is found after the render
//!   ([`Rendered::split_values`]) and refused by lowering.
//!
//! Rendering happens twice: once into a writer that stops at [`MAX_OUTPUT`] bytes, then, when
//! that succeeded, again with minijinja's output spans, which attribute every byte of the output
//! to the template (file, line, column) that wrote it ([`Rendered::place`]). The renders are
//! deterministic, so both give the same text. Output written by a macro, a `{% call %}` or a
//! `{% filter %}` block is attributed to the expression that wrote it (the macro call), not to
//! the macro body; output of an expression that spans lines (`{{ x | to_yaml }}`) is
//! attributed to the expression.
//!
//! Values: a template may ship `templates/<name>.schema.json` (JSON Schema, draft 2020-12,
//! offline: no `$ref` is ever fetched); [`check_values`] validates an App's `values` against
//! it and fills in the `default`s of `properties` (recursively, through nested objects).

use std::collections::BTreeMap;
use std::io;
use std::ops::Range;
use std::sync::Arc;

use minijinja::value::Serde;
use minijinja::{Environment, Error, ErrorKind, OutputSpanKind, UndefinedBehavior, Value};
use serde_json::Value as Json;

use crate::diag::{Code, Pos};
use crate::load::{FileRole, Snapshot};

/// Fuel for one render: roughly this many instructions, or 64 times as many bytes of data.
/// The shipped templates use under 0.2% of it (the JupyterLab one some 1,400).
pub const FUEL: u64 = 1_000_000;
/// Most bytes one render may write.
pub const MAX_OUTPUT: usize = 1024 * 1024;
/// Where templates live in the platform repository.
pub const DIR: &str = "templates/";

/// The App being rendered, for the helpers that name and label its objects.
#[derive(Debug, Clone)]
pub struct AppIdentity {
    pub name: String,
    pub project: String,
    pub template: String,
}

/// A place in a template file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Path in the repository (`templates/jupyterlab.yaml.j2`).
    pub file: Arc<str>,
    pub line: u32,
    pub column: u32,
}

impl Place {
    pub fn pos(&self) -> Pos {
        Pos::new(self.line, self.column)
    }
}

/// Why a render failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// T001 (syntax), T002 (render), T003 (budget).
    pub code: Code,
    pub message: String,
    pub place: Option<Place>,
    pub hint: Option<String>,
}

/// One stretch of output and the template source that wrote it.
#[derive(Debug, Clone)]
struct OutSpan {
    out: Range<usize>,
    /// Template name (relative to `templates/`).
    name: Arc<str>,
    source_start: usize,
    raw: bool,
}

/// A successful render: the text and where each part of it came from.
#[derive(Debug, Clone)]
pub struct Rendered {
    pub text: String,
    spans: Vec<OutSpan>,
    sources: Arc<BTreeMap<String, Arc<str>>>,
    /// Fuel the render consumed.
    pub fuel_used: u64,
}

impl Rendered {
    /// The template place that wrote the output byte at `offset` (the nearest written byte
    /// before it when `offset` falls between spans, e.g. on a newline a tag left behind).
    pub fn place(&self, offset: usize) -> Option<Place> {
        let i = self
            .spans
            .partition_point(|s| s.out.start <= offset)
            .checked_sub(1)?;
        let s = &self.spans[i];
        let source = self.sources.get(&*s.name)?;
        let at = if s.raw {
            s.source_start + (offset.min(s.out.end.saturating_sub(1)) - s.out.start)
        } else {
            s.source_start
        };
        let (line, column) = line_col(source, at);
        Some(Place {
            file: Arc::from(format!("{DIR}{}", s.name)),
            line,
            column,
        })
    }

    /// Where a template wrote a value into part of a YAML scalar instead of as a whole one
    /// (`name: {{ app.name }}-data`, `- --flag={{ values.x }}`): the places of the
    /// expressions whose output (a quoted string or a flow collection) is neither exactly one
    /// node or key of `docs` (the parsed output) nor inside a block scalar or a comment.
    /// Inside another scalar a value's quotes are just characters, and `: `, ` #` or a flow
    /// indicator in it would end the scalar: the template must build the whole scalar in one
    /// expression (`{{ app.name ~ "-data" }}`).
    pub fn split_values<'a>(
        &self,
        docs: impl IntoIterator<Item = &'a crate::parse::Node>,
    ) -> Vec<Place> {
        use crate::parse::NodeValue;
        // Every node and key: (start, end, what) in output positions.
        #[derive(Clone, Copy, PartialEq)]
        enum What {
            Collection,
            Scalar,
            BlockScalar,
        }
        fn collect(
            n: &crate::parse::Node,
            text: &str,
            lines: &Lines,
            out: &mut Vec<(Pos, Pos, What)>,
        ) {
            match &n.value {
                NodeValue::Seq(items) => {
                    out.push((n.span.start, n.span.end, What::Collection));
                    for i in items {
                        collect(i, text, lines, out);
                    }
                }
                NodeValue::Map(entries) => {
                    out.push((n.span.start, n.span.end, What::Collection));
                    for e in entries {
                        out.push((e.key_span.start, e.key_span.end, What::Scalar));
                        collect(&e.value, text, lines, out);
                    }
                }
                _ => {
                    let at = lines.offset_of(text, n.span.start);
                    let what = if block_scalar_at(text, at) {
                        What::BlockScalar
                    } else {
                        What::Scalar
                    };
                    out.push((n.span.start, n.span.end, what));
                }
            }
        }
        let lines = Lines::new(&self.text);
        let mut nodes = Vec::new();
        for d in docs {
            collect(d, &self.text, &lines, &mut nodes);
        }
        let mut bad = Vec::new();
        for s in self.spans.iter().filter(|s| !s.raw) {
            let Some(written) = self.text.get(s.out.clone()) else {
                continue;
            };
            if !written.starts_with(['"', '{', '[']) {
                continue;
            }
            let (sl, sc) = lines.line_col(&self.text, s.out.start);
            let (el, ec) = lines.line_col(&self.text, s.out.end);
            let (start, end) = (Pos::new(sl, sc), Pos::new(el, ec));
            if nodes.iter().any(|&(a, b, _)| a == start && b == end) {
                continue;
            }
            // The scalars that hold the value's first character; none when it is in a
            // comment.
            let inside = nodes
                .iter()
                .filter(|&&(a, b, what)| what != What::Collection && a <= start && start < b)
                .collect::<Vec<_>>();
            if inside.is_empty() || inside.iter().any(|&&(_, _, w)| w == What::BlockScalar) {
                continue;
            }
            if let Some(p) = self.place(s.out.start) {
                bad.push(p);
            }
        }
        bad
    }

    /// The byte offset of a 1-based line and character column of the output.
    pub fn offset(&self, pos: Pos) -> usize {
        offset_of(&self.text, pos)
    }
}

/// Whether the scalar whose content starts at byte `at` is a block scalar: its content
/// begins a line, and the line before it (comment removed) ends with a block header (`|`,
/// `>-`, `|2+`, ...).
fn block_scalar_at(text: &str, at: usize) -> bool {
    let Some(before) = text.get(..at) else {
        return false;
    };
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    if !before[line_start..].chars().all(|c| c == ' ') {
        return false;
    }
    let Some(header) = before[..line_start]
        .trim_end()
        .rsplit('\n')
        .next()
        .map(|l| l.split(" #").next().unwrap_or(l).trim_end())
    else {
        return false;
    };
    header
        .trim_end_matches(|c: char| c == '-' || c == '+' || c.is_ascii_digit())
        .ends_with(['|', '>'])
}

/// 1-based line and character column of a byte offset.
fn line_col(text: &str, offset: usize) -> (u32, u32) {
    Lines::new(text).line_col(text, offset)
}

fn floor_char_boundary(s: &str, mut i: usize) -> usize {
    while i > 0 && !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Where a text's lines start: [`line_col`] and [`offset_of`] of many places of one text
/// without scanning it from its start each time (a template's output is read at every node).
struct Lines {
    /// The byte offset of every `\n`.
    newlines: Vec<usize>,
}

impl Lines {
    fn new(text: &str) -> Lines {
        Lines {
            newlines: text
                .bytes()
                .enumerate()
                .filter_map(|(i, b)| (b == b'\n').then_some(i))
                .collect(),
        }
    }

    /// [`line_col`] in `text` (the text this was made of).
    fn line_col(&self, text: &str, offset: usize) -> (u32, u32) {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let before = self.newlines.partition_point(|&nl| nl < offset);
        let line_start = before.checked_sub(1).map_or(0, |i| self.newlines[i] + 1);
        let column = text[line_start..offset].chars().count() + 1;
        (
            u32::try_from(before + 1).unwrap_or(u32::MAX),
            u32::try_from(column).unwrap_or(u32::MAX),
        )
    }

    /// [`offset_of`] in `text` (the text this was made of).
    fn offset_of(&self, text: &str, pos: Pos) -> usize {
        let line = pos.line as usize;
        let start = match line {
            0 => return text.len(),
            1 => 0,
            _ => match self.newlines.get(line - 2) {
                Some(&nl) => nl + 1,
                None => return text.len(),
            },
        };
        if start >= text.len() {
            return text.len();
        }
        let end = self.newlines.get(line - 1).map_or(text.len(), |&nl| nl + 1);
        let l = &text[start..end];
        let col = (pos.column.max(1) - 1) as usize;
        start
            + l.char_indices()
                .nth(col)
                .map_or(l.trim_end_matches('\n').len(), |(b, _)| b)
    }
}

/// Byte offset of a 1-based line and character column (the end of the text past its last
/// line; the end of the line past its last character).
pub fn offset_of(text: &str, pos: Pos) -> usize {
    Lines::new(text).offset_of(text, pos)
}

/// The path of a template file relative to `templates/`, when a template may load it: `/`
/// separated segments of letters, digits, `.`, `_` and `-`, none empty or starting with `.`.
pub fn loadable_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('/').all(|seg| {
            !seg.is_empty()
                && !seg.starts_with('.')
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
}

/// Every file under `templates/`, by its name relative to it.
fn template_sources(snapshot: &Snapshot) -> BTreeMap<String, Arc<str>> {
    // Files are sorted by path: the templates are one run of them.
    let start = snapshot.files.partition_point(|f| *f.path < *DIR);
    snapshot.files[start..]
        .iter()
        .take_while(|f| f.path.starts_with(DIR))
        .filter(|f| f.role == FileRole::Template)
        .filter_map(|f| {
            f.path
                .strip_prefix(DIR)
                .map(|rel| (rel.to_owned(), f.text.clone()))
        })
        .collect()
}

/// A writer that refuses to grow past a limit.
struct Bounded {
    buf: Vec<u8>,
    max: usize,
    overflow: bool,
}

impl io::Write for Bounded {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        if self.buf.len() + b.len() > self.max {
            self.overflow = true;
            return Err(io::Error::other("output limit reached"));
        }
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The sandboxed environment of one App's render: the base ([`base_environment`], its
/// compiled templates shared), with the App's globals and its labelling helpers. The globals
/// are the context's fixed names (`app`, `project`, `instance`, `cluster`, `values`), none of
/// them a helper's.
fn app_environment(
    base: &Environment<'static>,
    app: &AppIdentity,
    context: &serde_json::Map<String, Json>,
) -> Environment<'static> {
    let mut env = base.clone();
    for (k, v) in context {
        env.add_global(k.clone(), Value::from(Serde(v)));
    }
    env.add_function("labels", with_component(standard_labels(app)));
    env.add_function("selector_labels", with_component(selector_labels(app)));
    env
}

/// A labelling helper: `labels`, with the `component` label when one is given.
fn with_component(
    labels: BTreeMap<String, String>,
) -> impl Fn(Option<String>) -> Value + Send + Sync + 'static {
    move |component: Option<String>| {
        let mut l = labels.clone();
        if let Some(c) = component {
            l.insert(COMPONENT.to_owned(), c);
        }
        Value::from(Serde(l))
    }
}

/// The sandboxed environment every render starts from: loader over the snapshot's templates,
/// helpers, limits — and every template compiled, once per compile instead of once per App
/// (a template that does not compile is not kept: a render that loads it fails as it
/// would have). Should compiling one panic, nothing is compiled ahead: each render then
/// compiles what it loads, and only the renders loading that template fail.
fn base_environment(sources: Sources) -> Environment<'static> {
    let names: Vec<String> = sources
        .keys()
        .filter(|n| n.ends_with(".j2"))
        .cloned()
        .collect();
    let compiled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let env = environment(sources.clone());
        for name in &names {
            let _ = env.get_template(name);
        }
        env
    }));
    compiled.unwrap_or_else(|_| environment(sources))
}

/// The sandboxed environment: loader over the snapshot, helpers, limits.
fn environment(sources: Sources) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // Every template is rendered with plinth's YAML escaping: an expression's value is
    // written as one YAML scalar or flow collection (see [`yaml_formatter`]); output plinth
    // built from escaped parts (macro calls, `{% set %}` blocks, `to_yaml`, `tojson`) is safe
    // and written as it is. The mode is named for minijinja's bookkeeping only: the formatter
    // escapes whatever mode a `{% autoescape %}` block asks for.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::Custom("yaml".into()));
    env.set_formatter(yaml_formatter);
    env.set_fuel(Some(FUEL));
    env.set_debug(false);
    if let Ok(syntax) = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
    {
        env.set_syntax(syntax);
    }
    env.remove_global("debug");
    env.set_loader(move |name: &str| {
        if !loadable_name(name) {
            return Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("`{name}` cannot be loaded: templates may only include files under `templates/`, named by their path relative to it"),
            ));
        }
        Ok(sources.get(name).map(|text| text.to_string()))
    });

    env.add_function("dns_label", dns_label_fn);
    env.add_filter("dns_label", dns_label_fn);
    env.add_function("fail", |msg: String| -> Result<Value, Error> {
        Err(Error::new(ErrorKind::InvalidOperation, msg))
    });
    env.add_filter("to_yaml", to_yaml_filter);
    // Nothing a template calls may turn a value into unescaped text.
    for name in ["safe", "escape", "e"] {
        env.add_filter(name, move |_: Value| -> Result<Value, Error> {
            Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("the `{name}` filter is not available: plinth writes every value as a quoted YAML scalar, and only its own filters (`to_yaml`, `tojson`) write YAML text"),
            ))
        });
    }
    // Built-ins that serialise or join a whole value: charged like `to_yaml` first.
    env.add_filter(
        "tojson",
        |state: &minijinja::State, v: Value| -> Result<Value, Error> {
            charge(state, &v)?;
            json_text(&v).map(Value::from_safe_string)
        },
    );
    env.add_filter(
        "join",
        |state: &minijinja::State, v: Value, sep: Option<String>| -> Result<String, Error> {
            charge(state, &v)?;
            let sep = sep.unwrap_or_default();
            let mut out = String::new();
            for (i, item) in v.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(&sep);
                }
                out.push_str(&item.to_string());
                if out.len() > MAX_OUTPUT {
                    return Err(Error::new(
                        ErrorKind::OutOfFuel,
                        "output budget: the joined text is too large",
                    ));
                }
            }
            Ok(out)
        },
    );
    env.add_filter("bytes", |q: String| -> Result<Value, Error> {
        let n = quantity(&q)?;
        Ok(Value::from(n.div_euclid(1_000_000_000)))
    });
    env.add_filter("seconds", |d: String| -> Result<Value, Error> {
        crate::model::Duration(d.trim().to_owned())
            .seconds()
            .map(Value::from)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidOperation,
                    format!("`{d}` is not a duration such as `90s`, `30m`, `2h` or `7d`"),
                )
            })
    });
    env.add_filter("millicores", |q: String| -> Result<Value, Error> {
        let n = quantity(&q)?;
        Ok(Value::from((n + 999_999).div_euclid(1_000_000)))
    });
    env
}

/// `app.kubernetes.io/component`.
const COMPONENT: &str = "app.kubernetes.io/component";

/// The labels plinth puts on an App's objects (and templates on their pods).
pub fn standard_labels(app: &AppIdentity) -> BTreeMap<String, String> {
    let mut l = selector_labels(app);
    l.insert(
        crate::output::MANAGED_BY.0.to_owned(),
        crate::output::MANAGED_BY.1.to_owned(),
    );
    l.insert(crate::output::PROJECT_LABEL.to_owned(), app.project.clone());
    l.insert(APP_LABEL.to_owned(), app.name.clone());
    l
}

/// Label naming the App an object belongs to.
pub const APP_LABEL: &str = "plinth.dev/app";

/// The stable labels selecting an App's pods.
pub fn selector_labels(app: &AppIdentity) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".to_owned(), app.template.clone()),
        ("app.kubernetes.io/instance".to_owned(), app.name.clone()),
    ])
}

fn quantity(q: &str) -> Result<i128, Error> {
    crate::model::quantity::parse_nanos(q.trim()).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("`{q}` is not a Kubernetes quantity"),
        )
    })
}

fn dns_label_fn(s: String) -> Result<String, Error> {
    dns_label(&s).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("dns_label: `{s}` has no letters or digits to make a name of"),
        )
    })
}

/// A DNS-1123 label made of any string: lowercase, runs of other characters become one `-`,
/// trimmed; longer than 63 characters, cut to 52 and suffixed with a hash of the whole so
/// different inputs stay different. `None` when nothing alphanumeric is left.
pub fn dns_label(s: &str) -> Option<String> {
    let mut out = String::new();
    for c in s.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            out.push(c);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-').to_owned();
    if out.is_empty() {
        return None;
    }
    if out.len() <= 63 {
        return Some(out);
    }
    let hash = &crate::output::sha256_hex(s.as_bytes())[..10];
    Some(format!("{}-{hash}", out[..52].trim_end_matches('-')))
}

/// Charge a render for walking `v` (every item, shared ones as often as they appear) before a
/// filter serialises it: one unit of fuel per item and one per 64 bytes of text, and no more
/// text than a render may write ([`MAX_OUTPUT`]). The walk stops as soon as either is spent, so
/// a list doubled twenty times costs what the render has left, not memory and minutes.
fn charge(state: &minijinja::State, v: &Value) -> Result<(), Error> {
    struct Walk {
        fuel: u64,
        bytes: u64,
        fuel_left: u64,
    }
    fn spent(what: &str) -> Error {
        Error::new(
            ErrorKind::OutOfFuel,
            format!("{what}: the value is too large to write out"),
        )
    }
    fn walk(w: &mut Walk, v: &Value, depth: usize) -> Result<(), Error> {
        w.fuel += 1;
        if let Some(s) = v.as_str() {
            w.bytes += s.len() as u64;
            w.fuel += s.len() as u64 / 64;
        }
        if w.fuel > w.fuel_left {
            return Err(spent("out of fuel"));
        }
        if w.bytes > MAX_OUTPUT as u64 {
            return Err(spent("output budget"));
        }
        if depth > 256 {
            return Err(spent("nesting"));
        }
        match v.kind() {
            minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Iterable => {
                for item in v.try_iter()? {
                    walk(w, &item, depth + 1)?;
                }
            }
            minijinja::value::ValueKind::Map => {
                for key in v.try_iter()? {
                    walk(w, &key, depth + 1)?;
                    let item = v.get_item(&key)?;
                    walk(w, &item, depth + 1)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
    let fuel_left = state.fuel_levels().map_or(FUEL, |(_, left)| left);
    let mut w = Walk {
        fuel: 0,
        bytes: 0,
        fuel_left,
    };
    walk(&mut w, v, 0)?;
    state.consume_fuel(w.fuel)
}

/// How every `{{ expression }}` is written: a value plinth built as YAML text (safe) as it is,
/// any other value as one YAML node on one line — a string double-quoted with every line
/// break, control, bidi-breaking and byte-order character escaped, a list or map as JSON (a
/// YAML flow collection), a number, boolean or none as its plain scalar. Nothing a string
/// holds can end its scalar, so no value can add a key, a list item or an object to the
/// output; where a template writes a value into the middle of another scalar the result is
/// refused after the render ([`Rendered::whole_values`]).
fn yaml_formatter(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    v: &Value,
) -> Result<(), Error> {
    if let Some(s) = v.as_str().filter(|_| v.is_safe()) {
        return out.write_str(s).map_err(Error::from);
    }
    if matches!(
        v.kind(),
        minijinja::value::ValueKind::Seq
            | minijinja::value::ValueKind::Map
            | minijinja::value::ValueKind::Iterable
    ) {
        charge(state, v)?;
    }
    let text = yaml_scalar(v)?;
    out.write_str(&text).map_err(Error::from)
}

/// A value as one YAML node on one line (see [`yaml_formatter`]).
pub fn yaml_scalar(v: &Value) -> Result<String, Error> {
    use minijinja::value::ValueKind;
    match v.kind() {
        ValueKind::Undefined | ValueKind::None => Ok("null".to_owned()),
        ValueKind::Bool => Ok(if v.is_true() { "true" } else { "false" }.to_owned()),
        ValueKind::Number => {
            let s = v.to_string();
            Ok(match s.as_str() {
                "inf" => ".inf".to_owned(),
                "-inf" => "-.inf".to_owned(),
                "nan" | "NaN" | "-nan" | "-NaN" => ".nan".to_owned(),
                _ => s,
            })
        }
        ValueKind::String => Ok(quote(v.as_str().unwrap_or_default())),
        ValueKind::Seq | ValueKind::Map | ValueKind::Iterable => json_text(v),
        other => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("a {other} cannot be written into YAML"),
        )),
    }
}

/// Characters a YAML double-quoted scalar must not hold raw: line breaks (YAML counts NEL,
/// LS and PS as breaks), other controls, and the byte-order mark.
fn must_escape(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}' | '\u{feff}')
}

/// `s` as a YAML double-quoted scalar (also a JSON string).
pub fn quote(s: &str) -> String {
    let mut o = String::with_capacity(s.len() + 2);
    o.push('"');
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if must_escape(c) => {
                use std::fmt::Write as _;
                let _ = write!(o, "\\u{:04x}", u32::from(c));
            }
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

/// A value as JSON on one line, with the characters YAML reads as breaks escaped too.
fn json_text(v: &Value) -> Result<String, Error> {
    let json = serde_json::to_string(v).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot serialise the value: {e}"),
        )
    })?;
    if !json.chars().any(must_escape) {
        return Ok(json);
    }
    // Outside strings JSON holds no such characters, so escaping them anywhere is exact.
    let mut o = String::with_capacity(json.len() + 16);
    for c in json.chars() {
        if must_escape(c) {
            use std::fmt::Write as _;
            let _ = write!(o, "\\u{:04x}", u32::from(c));
        } else {
            o.push(c);
        }
    }
    Ok(o)
}

fn to_yaml_filter(state: &minijinja::State, v: Value) -> Result<Value, Error> {
    charge(state, &v)?;
    let json = serde_json::to_value(&v).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("to_yaml: cannot serialise the value: {e}"),
        )
    })?;
    Ok(Value::from_safe_string(match &json {
        Json::Object(m) if m.is_empty() => "{}".to_owned(),
        Json::Array(a) if a.is_empty() => "[]".to_owned(),
        _ => crate::output::to_yaml(&json)
            .trim_end_matches('\n')
            .to_owned(),
    }))
}

/// Stack for rendering one template: minijinja recurses on the native stack (up to its
/// recursion limit), which a worker thread's default 2 MiB does not always hold — in debug
/// builds a deeply recursive template overflowed it and aborted the process.
const RENDER_STACK: usize = 64 * 1024 * 1024;

/// Render `templates/<template>.yaml.j2` for an App. `context` holds the template's global
/// variables (`app`, `project`, `instance`, `cluster`, `values`). Runs on a stack of its own
/// ([`RENDER_STACK`], mapped for the call by `stacker`, whatever thread calls it): not on a
/// thread of its own, whose start and join cost more than most renders (a lowering worker
/// waiting on it did nothing else meanwhile: 0.6 s of a cold check at 10,000 projects ran on
/// half a core).
pub fn render(
    snapshot: &Snapshot,
    app: &AppIdentity,
    context: &serde_json::Map<String, Json>,
) -> Result<Rendered, Failure> {
    render_cached(&TemplateCache::default(), snapshot, app, context)
}

/// [`render`], the templates compiled once per `cache` (one compile's: its snapshot is always
/// `snapshot`).
pub fn render_cached(
    cache: &TemplateCache,
    snapshot: &Snapshot,
    app: &AppIdentity,
    context: &serde_json::Map<String, Json>,
) -> Result<Rendered, Failure> {
    stacker::maybe_grow(RENDER_STACK, RENDER_STACK, || {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let (base, sources) = cache.environment(snapshot);
            render_here(app_environment(base, app, context), sources, app)
        }))
        .unwrap_or_else(|_| {
            Err(Failure {
                code: Code::Internal,
                message: "rendering the template panicked".to_owned(),
                place: None,
                hint: None,
            })
        })
    })
}

fn render_here(
    env: Environment<'static>,
    sources: &Sources,
    app: &AppIdentity,
) -> Result<Rendered, Failure> {
    let main = format!("{}.yaml.j2", app.template);
    let fail = |e: &Error| failure(e, sources, &app.template);

    let tmpl = env.get_template(&main).map_err(|e| fail(&e))?;
    // First pass: bounded output.
    let mut w = Bounded {
        buf: Vec::new(),
        max: MAX_OUTPUT,
        overflow: false,
    };
    let first = tmpl.render_captured_to((), &mut w);
    if w.overflow {
        // Where the limit was crossed: render again with spans (bounded by fuel alone, which
        // caps it at some 64 MiB) and find the source that wrote the byte past the limit.
        let place = match tmpl.render_with_spans(()) {
            Ok((text, spans)) => {
                let r = Rendered {
                    text,
                    spans: out_spans(spans),
                    sources: sources.clone(),
                    fuel_used: 0,
                };
                r.place(MAX_OUTPUT)
            }
            Err(e) => fail(&e).place,
        };
        return Err(Failure {
            code: Code::TemplateBudget,
            message: format!(
                "template `{}` writes more than {} KiB of output",
                app.template,
                MAX_OUTPUT / 1024
            ),
            place: place.or_else(|| Some(locate(&main_place(&main), sources))),
            hint: Some("an App's objects fit in far less; look for a loop that runs too often or a value repeated".to_owned()),
        });
    }
    let captured = first.map_err(|e| fail(&e))?;
    let fuel_used = captured.state().fuel_levels().map_or(0, |(used, _)| used);
    // Second pass: the same text, with the spans of the source that wrote it.
    let (text, spans) = tmpl.render_with_spans(()).map_err(|e| fail(&e))?;
    Ok(Rendered {
        text,
        spans: out_spans(spans),
        sources: sources.clone(),
        fuel_used,
    })
}

fn out_spans(spans: Vec<minijinja::OutputSpan>) -> Vec<OutSpan> {
    spans
        .into_iter()
        .map(|s| OutSpan {
            out: s.output_range(),
            name: Arc::from(s.name()),
            source_start: s.source_range().start,
            raw: s.kind() == OutputSpanKind::Raw,
        })
        .collect()
}

/// Where a minijinja error happened: template name, line and byte range.
#[derive(Debug, Clone)]
struct ErrPlace {
    name: String,
    line: u32,
    range: Option<Range<usize>>,
}

fn main_place(main: &str) -> ErrPlace {
    ErrPlace {
        name: main.to_owned(),
        line: 1,
        range: None,
    }
}

/// The innermost minijinja error of a chain (an error inside an include is wrapped by the
/// include's) and the innermost place known.
fn innermost(e: &Error) -> (&Error, Option<ErrPlace>) {
    let mut cur = e;
    let mut place = None;
    loop {
        if let (Some(name), Some(line)) = (cur.name(), cur.line()) {
            place = Some(ErrPlace {
                name: name.to_owned(),
                line: u32::try_from(line).unwrap_or(u32::MAX),
                range: cur.range(),
            });
        }
        match std::error::Error::source(cur).and_then(|s| s.downcast_ref::<Error>()) {
            Some(inner) => cur = inner,
            None => return (cur, place),
        }
    }
}

fn locate(p: &ErrPlace, sources: &BTreeMap<String, Arc<str>>) -> Place {
    let column = match (&p.range, sources.get(&p.name)) {
        (Some(r), Some(src)) => {
            let (line, col) = line_col(src, r.start);
            if line == p.line { col } else { 1 }
        }
        _ => 1,
    };
    Place {
        file: Arc::from(format!("{DIR}{}", p.name)),
        line: p.line.max(1),
        column,
    }
}

/// A minijinja error as a failure: syntax (T001), budget (T003) or render (T002).
fn failure(e: &Error, sources: &BTreeMap<String, Arc<str>>, template: &str) -> Failure {
    let (inner, err_place) = innermost(e);
    let place = err_place.as_ref().map(|p| locate(p, sources));
    // The failing expression, for messages that name nothing.
    let snippet = err_place
        .as_ref()
        .and_then(|p| Some((p.range.clone()?, sources.get(&p.name)?)))
        .and_then(|(r, src)| src.get(r))
        .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|s| !s.is_empty() && s.chars().count() <= 80);
    let detail = inner.detail().unwrap_or_default().to_owned();
    let what = if detail.is_empty() {
        inner.kind().to_string()
    } else {
        detail.clone()
    };
    let (code, message, hint) = match inner.kind() {
        ErrorKind::SyntaxError => (
            Code::TemplateSyntax,
            format!("template syntax error: {what}"),
            Some("see https://docs.rs/minijinja/latest/minijinja/syntax/ for the template language".to_owned()),
        ),
        ErrorKind::OutOfFuel => (
            Code::TemplateBudget,
            format!("template `{template}` ran out of fuel ({FUEL} units) while rendering"),
            Some("templates get a fixed budget of work; a loop or recursion here does not end, or runs far too often".to_owned()),
        ),
        ErrorKind::InvalidOperation if detail == "recursion limit exceeded" => (
            Code::TemplateBudget,
            "template recursion goes too deep".to_owned(),
            Some("a macro or include calls itself without end".to_owned()),
        ),
        ErrorKind::InvalidOperation if detail == "range has too many elements" => (
            Code::TemplateBudget,
            "`range()` is asked for more than 100000 items".to_owned(),
            Some("templates get a fixed budget of work; loop over the values you have instead".to_owned()),
        ),
        ErrorKind::UndefinedError => (
            Code::TemplateRender,
            match (&snippet, detail.is_empty()) {
                (_, false) => format!("template refers to something undefined: {detail}"),
                (Some(expr), true) => {
                    format!("template refers to something undefined in `{expr}`")
                }
                (None, true) => "template refers to something undefined".to_owned(),
            },
            Some("templates see only `app`, `project`, `instance`, `cluster`, `values` and plinth's helpers; test optional values with `is defined` or `| default(...)`".to_owned()),
        ),
        kind @ (ErrorKind::UnknownFunction | ErrorKind::UnknownFilter | ErrorKind::UnknownTest) => (
            Code::TemplateRender,
            match detail.strip_suffix(" is unknown") {
                Some(name) => {
                    let name = name.rsplit(' ').next().unwrap_or(name);
                    format!("template uses {kind} `{name}`, which the sandbox does not have")
                }
                None => format!("template uses {kind}: {what}"),
            },
            Some("the sandbox has minijinja's built-ins plus `labels`, `selector_labels`, `dns_label`, `fail`, `to_yaml`, `bytes`, `millicores` and `seconds`; no clock, environment or file access".to_owned()),
        ),
        ErrorKind::TemplateNotFound => (
            Code::TemplateRender,
            match (detail.find('\''), detail.rfind('\'')) {
                (Some(a), Some(b)) if b > a => format!(
                    "template includes `{DIR}{}`, which does not exist",
                    &detail[a + 1..b]
                ),
                _ => format!("template includes a template that does not exist: {what}"),
            },
            Some("templates may only include other files under `templates/`, named by their path relative to it".to_owned()),
        ),
        ErrorKind::InvalidOperation if detail.contains("cannot be loaded") => (
            Code::TemplateRender,
            format!("template include refused: {what}"),
            Some("templates run in a sandbox: no file system beyond `templates/`".to_owned()),
        ),
        kind => (
            Code::TemplateRender,
            if detail.is_empty() {
                format!("template failed to render: {kind}")
            } else {
                format!("template failed to render: {kind}: {detail}")
            },
            None,
        ),
    };
    Failure {
        code,
        message,
        place,
        hint,
    }
}

// ---------------------------------------------------------------------------------------------
// Values

/// A value that does not fit the template's schema.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueProblem {
    /// JSON pointer into `values`.
    pub pointer: String,
    /// For a key that is not allowed: the key.
    pub key: Option<String>,
    pub message: String,
    /// The schema keyword that failed, as a JSON pointer into the schema.
    pub schema_pointer: String,
}

/// What checking values against a template's schema found.
#[derive(Debug, Clone)]
pub enum ValuesCheck {
    /// No schema, or the values fit; defaults filled in.
    Ok(Json),
    /// The values do not fit.
    Invalid {
        schema_file: Arc<str>,
        schema_text: Arc<str>,
        problems: Vec<ValueProblem>,
    },
    /// The schema itself is broken (not JSON, not a schema).
    BrokenSchema {
        schema_file: Arc<str>,
        message: String,
        pos: Pos,
    },
}

/// What one compile's renders share: each template's values schema, compiled once and
/// shared by every App of the template, and the environment with every template of the
/// snapshot compiled ([`base_environment`]), of which each render takes a copy.
#[derive(Default)]
pub struct TemplateCache {
    /// Per template name, its values schema.
    schemas: std::sync::Mutex<BTreeMap<String, Arc<ValuesSchema>>>,
    /// The base environment and the sources it loads from.
    environment: std::sync::OnceLock<(Environment<'static>, Sources)>,
}

/// The templates' sources, by name (their path below [`DIR`]).
type Sources = Arc<BTreeMap<String, Arc<str>>>;

impl std::fmt::Debug for TemplateCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TemplateCache")
    }
}

/// A template's values schema, ready to check values.
enum ValuesSchema {
    /// The template has no schema.
    None,
    /// The schema is not JSON or not a JSON Schema: [`ValuesCheck::BrokenSchema`].
    Broken(ValuesCheck),
    Ready {
        file: Arc<str>,
        text: Arc<str>,
        schema: Json,
        validator: jsonschema::Validator,
    },
}

impl TemplateCache {
    /// The environment every render of `snapshot` starts from, and the templates' sources.
    /// The cache is one compile's: its snapshot is always the same.
    fn environment(&self, snapshot: &Snapshot) -> &(Environment<'static>, Sources) {
        self.environment.get_or_init(|| {
            let sources = Arc::new(template_sources(snapshot));
            (base_environment(sources.clone()), sources)
        })
    }

    fn get(&self, snapshot: &Snapshot, template: &str) -> Arc<ValuesSchema> {
        let mut map = self
            .schemas
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(
            map.entry(template.to_owned())
                .or_insert_with(|| Arc::new(compile_values_schema(snapshot, template))),
        )
    }
}

/// Validate an App's values against `templates/<template>.schema.json`, when it exists.
pub fn check_values(snapshot: &Snapshot, template: &str, values: &Json) -> ValuesCheck {
    check_values_cached(&TemplateCache::default(), snapshot, template, values)
}

/// [`check_values`], compiling each template's schema once per `cache`.
pub fn check_values_cached(
    cache: &TemplateCache,
    snapshot: &Snapshot,
    template: &str,
    values: &Json,
) -> ValuesCheck {
    let compiled = cache.get(snapshot, template);
    let (file, text, schema, validator) = match &*compiled {
        ValuesSchema::None => return ValuesCheck::Ok(values.clone()),
        ValuesSchema::Broken(b) => return b.clone(),
        ValuesSchema::Ready {
            file,
            text,
            schema,
            validator,
        } => (file, text, schema, validator),
    };
    let mut problems: Vec<ValueProblem> = Vec::new();
    for err in validator.iter_errors(values) {
        let pointer = err.instance_path().as_str().to_owned();
        let schema_pointer = err.schema_path().as_str().to_owned();
        match err.kind() {
            jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                for k in unexpected {
                    problems.push(ValueProblem {
                        pointer: pointer.clone(),
                        key: Some(k.clone()),
                        message: format!("`{k}` is not a value this template takes"),
                        schema_pointer: schema_pointer.clone(),
                    });
                }
            }
            _ => problems.push(ValueProblem {
                pointer,
                key: None,
                message: err.to_string(),
                schema_pointer,
            }),
        }
    }
    if !problems.is_empty() {
        return ValuesCheck::Invalid {
            schema_file: file.clone(),
            schema_text: text.clone(),
            problems,
        };
    }
    let mut filled = values.clone();
    fill_defaults(schema, &mut filled, 0);
    ValuesCheck::Ok(filled)
}

fn compile_values_schema(snapshot: &Snapshot, template: &str) -> ValuesSchema {
    let path = format!("{DIR}{template}.schema.json");
    let Some(file) = snapshot.get(&path) else {
        return ValuesSchema::None;
    };
    let schema: Json = match serde_json::from_str(&file.text) {
        Ok(s) => s,
        Err(e) => {
            return ValuesSchema::Broken(ValuesCheck::BrokenSchema {
                schema_file: file.path.clone(),
                message: format!("`{path}` is not JSON: {e}"),
                pos: Pos::new(
                    u32::try_from(e.line()).unwrap_or(1).max(1),
                    u32::try_from(e.column()).unwrap_or(1).max(1),
                ),
            });
        }
    };
    let validator = match jsonschema::draft202012::options().offline().build(&schema) {
        Ok(v) => v,
        Err(e) => {
            return ValuesSchema::Broken(ValuesCheck::BrokenSchema {
                schema_file: file.path.clone(),
                message: format!("`{path}` is not a valid JSON Schema: {e}"),
                pos: Pos::new(1, 1),
            });
        }
    };
    ValuesSchema::Ready {
        file: file.path.clone(),
        text: file.text.clone(),
        schema,
        validator,
    }
}

/// Insert the `default` of every property the value lacks, through nested `properties`.
fn fill_defaults(schema: &Json, value: &mut Json, depth: usize) {
    if depth > 32 {
        return;
    }
    let (Some(props), Some(obj)) = (
        schema.get("properties").and_then(Json::as_object),
        value.as_object_mut(),
    ) else {
        return;
    };
    for (k, sub) in props {
        if !obj.contains_key(k)
            && let Some(d) = sub.get("default")
        {
            obj.insert(k.clone(), d.clone());
        }
        if let Some(v) = obj.get_mut(k) {
            fill_defaults(sub, v, depth + 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::{Limits, MemSource, load};
    use serde_json::json;

    fn snapshot(files: &[(&str, &str)]) -> Snapshot {
        let mut src = MemSource::new();
        for (p, t) in files {
            src = src.with(p, *t);
        }
        load(&src, &Limits::default()).expect("loads").0
    }

    fn app() -> AppIdentity {
        AppIdentity {
            name: "nb".into(),
            project: "er".into(),
            template: "t".into(),
        }
    }

    fn ctx() -> serde_json::Map<String, Json> {
        json!({"values": {"n": 3}, "app": {"name": "nb"}})
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    fn run(files: &[(&str, &str)]) -> Result<Rendered, Failure> {
        render(&snapshot(files), &app(), &ctx())
    }

    fn fails(files: &[(&str, &str)]) -> Failure {
        match run(files) {
            Ok(r) => panic!("rendered: {:?}", r.text),
            Err(f) => f,
        }
    }

    #[test]
    fn renders_with_globals_and_helpers() {
        let r = run(&[(
            "templates/t.yaml.j2",
            "name: {{ dns_label('My App_' ~ app.name) }}\n{% if values.n > 2 %}\nn: {{ values.n }}\n{% endif %}\nlabels:\n  {{ labels('web') | to_yaml | indent(2) }}\nmem: {{ '1Gi' | bytes }}\ncpu: {{ '250m' | millicores }}\nidle: {{ '2h' | seconds }}\n",
        )])
        .expect("renders");
        assert_eq!(
            r.text,
            "name: \"my-app-nb\"\nn: 3\nlabels:\n  app.kubernetes.io/component: web\n  app.kubernetes.io/instance: nb\n  app.kubernetes.io/managed-by: plinth\n  app.kubernetes.io/name: t\n  plinth.dev/app: nb\n  plinth.dev/project: er\nmem: 1073741824\ncpu: 250\nidle: 7200"
        );
        assert!(r.fuel_used > 0 && r.fuel_used < FUEL / 10);
    }

    #[test]
    fn renders_sharing_compiled_templates_are_each_apps_own() {
        // One compile's renders share the compiled templates (and includes): each App's
        // globals and labels are still its own, the text and places as a render of its own
        // gives, and a template that does not compile fails every render.
        let snap = snapshot(&[
            (
                "templates/t.yaml.j2",
                "{% import 'lib/m.j2' as m %}name: {{ app.name }}\nlabels:\n  {{ labels() | to_yaml | indent(2) }}\nn: {{ m.twice(values.n) }}\n",
            ),
            (
                "templates/lib/m.j2",
                "{% macro twice(n) %}{{ n * 2 }}{% endmacro %}",
            ),
            ("templates/broken.yaml.j2", "a: {{ values.n "),
        ]);
        let cache = TemplateCache::default();
        let apps = [("nb", "er", 3), ("lab", "icu", 5), ("nb", "er", 3)];
        let mut texts = Vec::new();
        for (name, project, n) in apps {
            let app = AppIdentity {
                name: name.into(),
                project: project.into(),
                template: "t".into(),
            };
            let ctx = json!({"values": {"n": n}, "app": {"name": name}})
                .as_object()
                .cloned()
                .unwrap_or_default();
            let shared = render_cached(&cache, &snap, &app, &ctx).expect("renders");
            let own = render(&snap, &app, &ctx).expect("renders");
            assert_eq!(shared.text, own.text);
            assert_eq!(shared.fuel_used, own.fuel_used);
            assert_eq!(
                shared.place(shared.text.len() - 1),
                own.place(own.text.len() - 1)
            );
            assert!(
                shared
                    .text
                    .contains(&format!("plinth.dev/project: {project}"))
            );
            assert!(shared.text.contains(&format!("n: {}", n * 2)));
            texts.push(shared.text);
        }
        assert_ne!(texts[0], texts[1]);
        assert_eq!(texts[0], texts[2]);
        let broken = AppIdentity {
            template: "broken".into(),
            ..app()
        };
        for _ in 0..2 {
            let f = render_cached(&cache, &snap, &broken, &ctx()).expect_err("does not compile");
            assert_eq!(f.code, Code::TemplateSyntax, "{}", f.message);
        }
    }

    fn split(text: &str) -> Vec<(u32, u32)> {
        let r = run(&[("templates/t.yaml.j2", text)]).expect("renders");
        let file: Arc<str> = Arc::from("out.yaml");
        let (docs, diags) = crate::parse::yaml::parse_documents(
            &file,
            &r.text,
            crate::parse::YamlLimits::default(),
        );
        assert!(diags.is_empty(), "{}: {diags:?}", r.text);
        r.split_values(docs.iter().map(|d| &d.root))
            .into_iter()
            .map(|p| (p.line, p.column))
            .collect()
    }

    #[test]
    fn every_value_is_written_as_one_yaml_node() {
        let r = run(&[(
            "templates/t.yaml.j2",
            "a: {{ '<a & \"b\">' }}\nb: {{ 'x\\n---\\nkind: RoleBinding' }}\nc: {{ values.n }}\nd: {{ none }}\ne: {{ [1, 'x'] }}\nf: {{ {'k': 'v\\u2028'} }}\ng: {{ true }}\nh: {{ '\\u0085\\t\\\\' }}\n",
        )])
        .expect("renders");
        assert_eq!(
            r.text,
            "a: \"<a & \\\"b\\\">\"\nb: \"x\\n---\\nkind: RoleBinding\"\nc: 3\nd: null\ne: [1,\"x\"]\nf: {\"k\":\"v\\u2028\"}\ng: true\nh: \"\\u0085\\t\\\\\""
        );
        // Macros and blocks built from escaped parts are written as they are.
        let r = run(&[(
            "templates/t.yaml.j2",
            "{% macro m(v) %}{k: {{ v }}}{% endmacro %}{% set b %}x: {{ 'a: b' }}{% endset %}m: {{ m('a\\nb') }}\n{{ b }}\nl:\n  {{ {'a': 'b: c'} | to_yaml | indent(2) }}\n",
        )])
        .expect("renders");
        assert_eq!(r.text, "m: {k: \"a\\nb\"}\nx: \"a: b\"\nl:\n  a: \"b: c\"");
    }

    #[test]
    fn no_filter_or_block_unescapes_a_value() {
        for t in [
            "x: {{ values.s | safe }}",
            "x: {{ values.s | e }}",
            "x: {{ values.s | escape }}",
        ] {
            let f = fails(&[("templates/t.yaml.j2", t)]);
            assert_eq!(f.code, Code::TemplateRender, "{t}");
        }
        let r = run(&[(
            "templates/t.yaml.j2",
            "{% autoescape false %}x: {{ 'a\\nb' }}{% endautoescape %}\n{% autoescape 'html' %}y: {{ 'c\\nd' }}{% endautoescape %}",
        )])
        .expect("renders");
        assert_eq!(r.text, "x: \"a\\nb\"y: \"c\\nd\"");
    }

    #[test]
    fn values_written_into_part_of_a_scalar_are_found() {
        // Whole nodes, keys, block scalars and comments are fine.
        assert_eq!(
            split(
                "a: {{ 'x' }}\n{{ 'k' }}: 1\nb: {{ [1] }}\nc: {x: {{ 'y' }}}\nd: |\n  run --url {{ 'u' }}\n# {{ 'c' }}\ne:\n  - {{ 'i' }}\n"
            ),
            vec![]
        );
        // Inside a plain scalar, block or flow, or a key.
        assert_eq!(split("name: pre-{{ 'x' }}\n"), vec![(1, 14)]);
        assert_eq!(split("args:\n  - --flag={{ 'a: b' }}\n"), vec![(2, 15)]);
        assert_eq!(split("l: {app: pre-{{ 'a, b: c' }}}\n"), vec![(1, 17)]);
        assert_eq!(split("pre-{{ 'k' }}: v\n"), vec![(1, 8)]);
    }

    #[test]
    fn spans_map_output_back_to_template_lines() {
        let r = run(&[
            (
                "templates/t.yaml.j2",
                "{% macro m() %}\nhello\n{% endmacro %}\n---\nkind: {{ 'Pod' }}\nx: {{ m() }}\n{% include 'lib/inc.j2' %}\n",
            ),
            ("templates/lib/inc.j2", "---\ny: 2\n"),
        ])
        .expect("renders");
        let at = |needle: &str| {
            let off = r.text.find(needle).expect(needle);
            let p = r.place(off).expect("placed");
            (p.file.to_string(), p.line, p.column)
        };
        assert_eq!(at("kind"), ("templates/t.yaml.j2".into(), 5, 1));
        assert_eq!(at("Pod"), ("templates/t.yaml.j2".into(), 5, 10));
        // Macro output is attributed to the call.
        assert_eq!(at("hello"), ("templates/t.yaml.j2".into(), 6, 7));
        assert_eq!(at("y: 2"), ("templates/lib/inc.j2".into(), 2, 1));
    }

    #[test]
    fn includes_only_reach_templates_in_the_snapshot() {
        for bad in [
            "/etc/passwd",
            "../plinth.yaml",
            "./t.yaml.j2",
            "a//b",
            ".hidden",
        ] {
            let f = fails(&[(
                "templates/t.yaml.j2",
                &format!("a: 1\n{{% include '{bad}' %}}\n"),
            )]);
            assert_eq!(f.code, Code::TemplateRender, "{bad}");
            assert!(f.message.contains("refused"), "{bad}: {}", f.message);
            let p = f.place.expect("located");
            assert_eq!((&*p.file, p.line), ("templates/t.yaml.j2", 2), "{bad}");
        }
        let f = fails(&[("templates/t.yaml.j2", "{% include 'missing.j2' %}")]);
        assert!(
            f.message
                .contains("`templates/missing.j2`, which does not exist"),
            "{}",
            f.message
        );
        // A file outside `templates/` is not in reach even when it exists in the snapshot.
        let f = fails(&[
            ("templates/t.yaml.j2", "{% include 'plinth.yaml' %}"),
            ("plinth.yaml", "kind: Platform\n"),
        ]);
        assert!(f.message.contains("does not exist"), "{}", f.message);
    }

    #[test]
    fn nothing_of_the_host_is_reachable() {
        for (src, code) in [
            ("{{ env.HOME }}", Code::TemplateRender),
            ("{{ now() }}", Code::TemplateRender),
            ("{{ debug() }}", Code::TemplateRender),
            ("{{ 'a' | urlencode }}", Code::TemplateRender),
            ("{{ values.missing }}", Code::TemplateRender),
        ] {
            let f = fails(&[("templates/t.yaml.j2", src)]);
            assert_eq!(f.code, code, "{src}: {}", f.message);
        }
    }

    #[test]
    fn budgets_end_hostile_templates() {
        for src in [
            "{% for i in range(1000000000) %}x{% endfor %}",
            "{% for i in range(100000) %}{% for j in range(100000) %}{{ i }}{% endfor %}{% endfor %}",
            "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
            "{{ 'x' * 100000000000 }}",
        ] {
            let f = fails(&[("templates/t.yaml.j2", src)]);
            assert_eq!(f.code, Code::TemplateBudget, "{src}: {}", f.message);
            assert!(f.place.is_some(), "{src}");
        }
        let f = fails(&[("templates/t.yaml.j2", "{{ 'x' * 2000000 }}")]);
        assert_eq!(f.code, Code::TemplateBudget);
        assert!(f.message.contains("more than 1024 KiB"), "{}", f.message);
    }

    #[test]
    fn syntax_errors_carry_the_line() {
        let f = fails(&[("templates/t.yaml.j2", "a: 1\nb: {{ x \n")]);
        assert_eq!(f.code, Code::TemplateSyntax);
        assert_eq!(f.place.map(|p| p.line), Some(2));
        let f = fails(&[
            ("templates/t.yaml.j2", "a: 1\n{% include 'lib/x.j2' %}\n"),
            ("templates/lib/x.j2", "\n\n{% if %}\n"),
        ]);
        assert_eq!(f.code, Code::TemplateSyntax);
        let p = f.place.expect("located");
        assert_eq!((&*p.file, p.line), ("templates/lib/x.j2", 3));
    }

    #[test]
    fn errors_in_includes_point_into_the_include() {
        let f = fails(&[
            ("templates/t.yaml.j2", "a: 1\n{% include 'lib/x.j2' %}\n"),
            ("templates/lib/x.j2", "b: 2\nc: {{ nope }}\n"),
        ]);
        assert_eq!(f.code, Code::TemplateRender);
        let p = f.place.expect("located");
        assert_eq!((&*p.file, p.line, p.column), ("templates/lib/x.j2", 2, 7));
    }

    #[test]
    fn fail_raises_a_render_error() {
        let f = fails(&[(
            "templates/t.yaml.j2",
            "{{ fail('dataset `x` is not granted') }}",
        )]);
        assert_eq!(f.code, Code::TemplateRender);
        assert!(
            f.message.contains("dataset `x` is not granted"),
            "{}",
            f.message
        );
    }

    #[test]
    fn dns_labels() {
        assert_eq!(dns_label("Er Notebook_2").as_deref(), Some("er-notebook-2"));
        assert_eq!(dns_label("--x--").as_deref(), Some("x"));
        assert_eq!(dns_label("___"), None);
        let long = dns_label(&"a".repeat(100)).expect("label");
        assert_eq!(long.len(), 63);
        assert!(crate::names::is_dns_label(&long));
        assert_ne!(long, dns_label(&"a".repeat(101)).expect("label"));
    }

    #[test]
    fn values_are_checked_and_defaulted() {
        let schema = r#"{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "additionalProperties": false,
  "properties": {
    "size": {"type": "integer", "maximum": 10, "default": 1},
    "nested": {"type": "object", "properties": {"a": {"type": "string", "default": "x"}}, "default": {}}
  }
}"#;
        let snap = snapshot(&[
            ("templates/t.yaml.j2", ""),
            ("templates/t.schema.json", schema),
        ]);
        match check_values(&snap, "t", &json!({})) {
            ValuesCheck::Ok(v) => assert_eq!(v, json!({"size": 1, "nested": {"a": "x"}})),
            other => panic!("{other:?}"),
        }
        match check_values(&snap, "t", &json!({"size": 11, "colour": "red"})) {
            ValuesCheck::Invalid { problems, .. } => {
                assert_eq!(problems.len(), 2, "{problems:?}");
                assert!(problems.iter().any(|p| p.pointer == "/size"
                    && p.schema_pointer == "/properties/size/maximum"
                    && p.message.contains("maximum")));
                assert!(problems.iter().any(|p| p.key.as_deref() == Some("colour")));
            }
            other => panic!("{other:?}"),
        }
        // No schema: anything goes.
        let snap = snapshot(&[("templates/t.yaml.j2", "")]);
        assert!(matches!(
            check_values(&snap, "t", &json!({"x": 1})),
            ValuesCheck::Ok(_)
        ));
        // A schema that is not JSON, or refers to the network.
        let snap = snapshot(&[
            ("templates/t.yaml.j2", ""),
            ("templates/t.schema.json", "{\n  \"type\": \n}"),
        ]);
        match check_values(&snap, "t", &json!({})) {
            ValuesCheck::BrokenSchema { pos, .. } => assert_eq!(pos.line, 3),
            other => panic!("{other:?}"),
        }
        let snap = snapshot(&[
            ("templates/t.yaml.j2", ""),
            (
                "templates/t.schema.json",
                r#"{"$ref": "https://example.com/s.json"}"#,
            ),
        ]);
        assert!(matches!(
            check_values(&snap, "t", &json!({})),
            ValuesCheck::BrokenSchema { .. }
        ));
    }

    /// The line and column of an offset, by scanning the text before it.
    fn line_col_by_scan(text: &str, offset: usize) -> (u32, u32) {
        let offset = floor_char_boundary(text, offset.min(text.len()));
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = text[line_start..offset].chars().count() + 1;
        (line as u32, column as u32)
    }

    /// The offset of a line and column, by walking the lines before it.
    fn offset_by_scan(text: &str, pos: Pos) -> usize {
        let mut offset = 0usize;
        for (i, l) in text.split_inclusive('\n').enumerate() {
            if i + 1 == pos.line as usize {
                let col = (pos.column.max(1) - 1) as usize;
                return offset
                    + l.char_indices()
                        .nth(col)
                        .map_or(l.trim_end_matches('\n').len(), |(b, _)| b);
            }
            offset += l.len();
        }
        text.len()
    }

    #[test]
    fn line_index_answers_as_the_scans_do() {
        let texts = [
            "",
            "\n",
            "a",
            "ab\ncé\nx",
            "ab\ncé\nx\n",
            "\n\né€𝄞\n\nlast",
            "k: \"v\"\n- [1, 2]\n  # c\n",
        ];
        for text in texts {
            let lines = Lines::new(text);
            for offset in 0..=text.len() + 2 {
                assert_eq!(
                    lines.line_col(text, offset),
                    line_col_by_scan(text, offset),
                    "{text:?} at {offset}"
                );
            }
            for line in 0..8 {
                for column in 0..8 {
                    let pos = Pos::new(line, column);
                    assert_eq!(
                        lines.offset_of(text, pos),
                        offset_by_scan(text, pos),
                        "{text:?} at {line}:{column}"
                    );
                }
            }
        }
    }

    #[test]
    fn offsets_and_places_round_trip() {
        let text = "ab\ncé\nx";
        assert_eq!(offset_of(text, Pos::new(2, 2)), 4);
        assert_eq!(line_col(text, 4), (2, 2));
        assert_eq!(offset_of(text, Pos::new(3, 1)), text.len() - 1);
        assert_eq!(offset_of(text, Pos::new(9, 1)), text.len());
    }
}
