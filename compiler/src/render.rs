//! Render: diagnostics as text for people (`human`, `concise`) and machines (`json`,
//! `github` workflow annotations).
//!
//! One diagnostic model, many renderers; each returns a `String` and the CLI writes it.
//! Paths are shown as `prefix` + the file's path inside the platform repository, so output
//! run from a parent directory (CI in a monorepo) still names files the reader can open.

use std::collections::BTreeMap;

use annotate_snippets::renderer::DecorStyle;
use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde_json::json;

use crate::diag::{Diagnostic, Label, Pos, Severity};
use crate::load::Snapshot;

/// How to show file paths.
#[derive(Debug, Clone, Default)]
pub struct Paths {
    /// Prepended to every path, e.g. `examples/repo/`; empty for none.
    pub prefix: String,
}

impl Paths {
    pub fn new(prefix: impl Into<String>) -> Paths {
        let mut prefix = prefix.into();
        if prefix == "." || prefix == "./" {
            prefix.clear();
        }
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Paths { prefix }
    }
    /// A file of the repository as the reader should see it. Files outside the repository
    /// (absolute paths, `<plinth>/…` for the built-in policies) are shown as they are.
    pub fn show(&self, file: &str) -> String {
        if file.starts_with('/') || file.starts_with('<') {
            file.to_owned()
        } else {
            format!("{}{file}", self.prefix)
        }
    }
}

/// One line summary: `2 errors, 1 warning`.
pub fn summary(diags: &[Diagnostic]) -> String {
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    format!(
        "{}, {}",
        plural(errors, "error"),
        plural(warnings, "warning")
    )
}

fn level(s: Severity) -> Level<'static> {
    match s {
        Severity::Error => Level::ERROR,
        Severity::Warning => Level::WARNING,
        Severity::Note => Level::NOTE,
    }
}

/// Byte offset of a position (1-based line, 1-based char column) inside `text`, clamped to it.
fn offset(text: &str, line_starts: &[usize], p: Pos) -> usize {
    let line = (p.line.max(1) as usize - 1).min(line_starts.len().saturating_sub(1));
    let start = line_starts.get(line).copied().unwrap_or(0);
    let line_end = text[start..].find('\n').map_or(text.len(), |i| start + i);
    let line_text = text[start..line_end].trim_end_matches('\r');
    let col = p.column.max(1) as usize - 1;
    start
        + line_text
            .char_indices()
            .nth(col)
            .map_or(line_text.len(), |(i, _)| i)
}

fn line_starts(text: &str) -> Vec<usize> {
    std::iter::once(0)
        .chain(text.match_indices('\n').map(|(i, _)| i + 1))
        .collect()
}

/// A window of a file's text covering some lines, and where it starts.
struct Window<'a> {
    text: &'a str,
    first_line: usize,
    base: usize,
}

fn window<'a>(text: &'a str, starts: &[usize], lo: u32, hi: u32) -> Window<'a> {
    let lo = (lo.max(1) as usize).min(starts.len());
    let hi = (hi.max(1) as usize).min(starts.len());
    let base = starts[lo - 1];
    let end = starts.get(hi).copied().unwrap_or(text.len());
    Window {
        text: &text[base..end],
        first_line: lo,
        base,
    }
}

/// Full, human-readable rendering with the offending lines shown and marked.
pub fn human(diags: &[Diagnostic], snapshot: &Snapshot, paths: &Paths, color: bool) -> String {
    let renderer = if color {
        Renderer::styled().decor_style(DecorStyle::Unicode)
    } else {
        Renderer::plain().decor_style(DecorStyle::Ascii)
    };
    let mut out = String::new();
    let mut cache: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for d in diags {
        let title_text = d.message.clone();
        let mut group =
            Group::with_title(level(d.severity).primary_title(title_text).id(d.code.id()));
        // Labels by file, primary first.
        let mut labels: Vec<(&Label, bool)> = Vec::new();
        if let Some(p) = &d.primary {
            labels.push((p, true));
        }
        labels.extend(d.related.iter().map(|l| (l, false)));
        let mut files: Vec<&str> = Vec::new();
        for (l, _) in &labels {
            if !files.contains(&l.span.file.as_ref()) {
                files.push(&l.span.file);
            }
        }
        let mut missing_source = Vec::new();
        for file in files {
            let here: Vec<&(&Label, bool)> = labels
                .iter()
                .filter(|(l, _)| l.span.file.as_ref() == file)
                .collect();
            let Some(src) = snapshot.get(file) else {
                missing_source.extend(here.iter().map(|(l, _)| *l));
                continue;
            };
            let text: &str = &src.text;
            let starts = cache.entry(file).or_insert_with(|| line_starts(text));
            let lo = here
                .iter()
                .map(|(l, _)| l.span.start.line)
                .min()
                .unwrap_or(1);
            let hi = here
                .iter()
                .map(|(l, _)| l.span.end.line.max(l.span.start.line))
                .max()
                .unwrap_or(1);
            let w = window(text, starts, lo, hi);
            let mut snippet = Snippet::source(w.text)
                .line_start(w.first_line)
                .path(paths.show(file))
                .fold(true);
            for (l, primary) in here {
                let s = offset(text, starts, l.span.start) - w.base;
                let mut e = offset(text, starts, l.span.end) - w.base;
                if l.span.end.line != l.span.start.line || e <= s {
                    // Mark to the end of the first line only; multi-line nodes read better so.
                    let line_end = w.text[s..]
                        .find(['\n', '\r'])
                        .map_or(w.text.len(), |i| s + i);
                    e = if e <= s || e > line_end { line_end } else { e };
                }
                let text_label = match (&l.note, &l.field, primary) {
                    (Some(n), _, _) => n.clone(),
                    (None, Some(f), true) => f.clone(),
                    _ => String::new(),
                };
                let kind = if *primary {
                    AnnotationKind::Primary
                } else {
                    AnnotationKind::Context
                };
                let ann = kind.span(s..e.max(s));
                snippet = snippet.annotation(if text_label.is_empty() {
                    ann
                } else {
                    ann.label(text_label)
                });
            }
            group = group.element(snippet);
        }
        let mut notes: Vec<String> = Vec::new();
        for l in missing_source {
            let place = format!(
                "{}:{}:{}",
                paths.show(&l.span.file),
                l.span.start.line,
                l.span.start.column
            );
            notes.push(match &l.note {
                Some(n) => format!("{n}: {place}"),
                None => format!("at {place}"),
            });
        }
        for n in notes {
            group = group.element(Level::NOTE.message(n));
        }
        if let Some(h) = &d.hint {
            group = group.element(Level::HELP.message(h.clone()));
        }
        out.push_str(&renderer.render(&[group]));
        out.push_str("\n\n");
    }
    out
}

/// One line per diagnostic: `path:line:col: error[E130] message (field)`.
pub fn concise(diags: &[Diagnostic], paths: &Paths) -> String {
    let mut out = String::new();
    for d in diags {
        let place = d.primary.as_ref().map_or_else(String::new, |l| {
            format!(
                "{}:{}:{}: ",
                paths.show(&l.span.file),
                l.span.start.line,
                l.span.start.column
            )
        });
        let field = d
            .primary
            .as_ref()
            .and_then(|l| l.field.as_ref())
            .map_or_else(String::new, |f| format!(" [{f}]"));
        out.push_str(&format!(
            "{place}{}[{}] {}{field}\n",
            d.severity.as_str(),
            d.code.id(),
            d.message
        ));
        for r in &d.related {
            out.push_str(&format!(
                "  {}:{}:{}: {}\n",
                paths.show(&r.span.file),
                r.span.start.line,
                r.span.start.column,
                r.note.as_deref().unwrap_or("related")
            ));
        }
        if let Some(h) = &d.hint {
            out.push_str(&format!("  hint: {h}\n"));
        }
    }
    out
}

/// Stable JSON: `{"version": 1, "summary": {...}, "diagnostics": [...]}`.
pub fn json(diags: &[Diagnostic], paths: &Paths) -> String {
    let items: Vec<serde_json::Value> = diags
        .iter()
        .map(|d| {
            let label = |l: &Label| {
                json!({
                    "file": paths.show(&l.span.file),
                    "line": l.span.start.line,
                    "column": l.span.start.column,
                    "endLine": l.span.end.line,
                    "endColumn": l.span.end.column,
                    "field": l.field,
                    "note": l.note,
                })
            };
            json!({
                "code": d.code.id(),
                "name": d.code.slug(),
                "severity": d.severity.as_str(),
                "message": d.message,
                "location": d.primary.as_ref().map(label),
                "related": d.related.iter().map(label).collect::<Vec<_>>(),
                "hint": d.hint,
            })
        })
        .collect();
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diags
        .iter()
        .filter(|d| d.severity == Severity::Warning)
        .count();
    let v = json!({
        "version": 1,
        "summary": { "errors": errors, "warnings": warnings },
        "diagnostics": items,
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

/// GitHub Actions workflow commands (`::error file=...,line=...::message`), one per line.
pub fn github(diags: &[Diagnostic], paths: &Paths) -> String {
    fn esc_data(s: &str) -> String {
        s.replace('%', "%25")
            .replace('\r', "%0D")
            .replace('\n', "%0A")
    }
    fn esc_prop(s: &str) -> String {
        esc_data(s).replace(':', "%3A").replace(',', "%2C")
    }
    let mut out = String::new();
    for d in diags {
        let cmd = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Note => "notice",
        };
        let mut props = vec![format!(
            "title={}",
            esc_prop(&format!("{} {}", d.code.id(), d.code.slug()))
        )];
        if let Some(l) = &d.primary {
            props.insert(0, format!("file={}", esc_prop(&paths.show(&l.span.file))));
            props.insert(1, format!("line={}", l.span.start.line));
            props.insert(2, format!("col={}", l.span.start.column));
            if l.span.end.line >= l.span.start.line {
                props.insert(3, format!("endLine={}", l.span.end.line));
            }
        }
        let mut msg = d.message.clone();
        if let Some(f) = d.primary.as_ref().and_then(|l| l.field.as_ref()) {
            msg.push_str(&format!(" (`{f}`)"));
        }
        for r in &d.related {
            msg.push_str(&format!(
                "\n{}: {}:{}:{}",
                r.note.as_deref().unwrap_or("see"),
                paths.show(&r.span.file),
                r.span.start.line,
                r.span.start.column
            ));
        }
        if let Some(h) = &d.hint {
            msg.push_str(&format!("\nhint: {h}"));
        }
        out.push_str(&format!(
            "::{cmd} {}::{}\n",
            props.join(","),
            esc_data(&msg)
        ));
    }
    out
}

/// SARIF 2.1.0 (`sarif-schema-2.1.0.json`), for GitHub code scanning and other SARIF viewers.
pub fn sarif(diags: &[Diagnostic], paths: &Paths) -> String {
    let mut codes: Vec<crate::diag::Code> = diags.iter().map(|d| d.code).collect();
    codes.sort();
    codes.dedup();
    let level = |s: Severity| match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Note => "note",
    };
    let rules: Vec<serde_json::Value> = codes
        .iter()
        .map(|c| {
            json!({
                "id": c.id(),
                "name": c.slug(),
                "shortDescription": { "text": c.slug().replace('-', " ") },
                "defaultConfiguration": { "level": level(c.severity()) },
            })
        })
        .collect();
    let location = |l: &Label| {
        json!({
            "physicalLocation": {
                "artifactLocation": { "uri": paths.show(&l.span.file) },
                "region": {
                    "startLine": l.span.start.line.max(1),
                    "startColumn": l.span.start.column.max(1),
                    "endLine": l.span.end.line.max(l.span.start.line).max(1),
                    "endColumn": l.span.end.column.max(1),
                }
            }
        })
    };
    let results: Vec<serde_json::Value> = diags
        .iter()
        .map(|d| {
            let mut text = d.message.clone();
            if let Some(h) = &d.hint {
                text.push_str(&format!("\nhint: {h}"));
            }
            let mut r = json!({
                "ruleId": d.code.id(),
                "ruleIndex": codes.iter().position(|c| *c == d.code).unwrap_or(0),
                "level": level(d.severity),
                "message": { "text": text },
            });
            if let Some(p) = &d.primary {
                r["locations"] = json!([location(p)]);
                if let Some(f) = &p.field {
                    r["properties"] = json!({ "field": f });
                }
            }
            if !d.related.is_empty() {
                r["relatedLocations"] = serde_json::Value::Array(
                    d.related
                        .iter()
                        .enumerate()
                        .map(|(i, l)| {
                            let mut loc = location(l);
                            loc["id"] = json!(i + 1);
                            loc["message"] = json!({ "text": l.note.clone().unwrap_or_else(|| "related".to_owned()) });
                            loc
                        })
                        .collect(),
                );
            }
            r
        })
        .collect();
    let v = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": { "driver": {
                "name": "plinth",
                "version": env!("CARGO_PKG_VERSION"),
                "informationUri": "https://github.com/plinth-dev/plinth",
                "rules": rules,
            }},
            "results": results,
        }],
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// JUnit XML: one test case per diagnostic (errors fail; warnings pass with their text as
/// output), or one passing case when there is nothing to report.
pub fn junit(diags: &[Diagnostic], paths: &Paths) -> String {
    let failures = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let tests = diags.len().max(1);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&format!(
        "<testsuites name=\"plinth\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\">\n"
    ));
    out.push_str(&format!("  <testsuite name=\"plinth\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"0\">\n"));
    if diags.is_empty() {
        out.push_str("    <testcase classname=\"plinth\" name=\"no problems\"/>\n");
    }
    for d in diags {
        let (class, place) = match &d.primary {
            Some(l) => (
                paths.show(&l.span.file),
                format!(
                    "{}:{}:{}",
                    paths.show(&l.span.file),
                    l.span.start.line,
                    l.span.start.column
                ),
            ),
            None => ("plinth".to_owned(), "plinth".to_owned()),
        };
        let name = format!("{} {} at {place}", d.code.id(), d.code.slug());
        let mut body = concise(std::slice::from_ref(d), paths);
        body.truncate(body.trim_end().len());
        out.push_str(&format!(
            "    <testcase classname=\"{}\" name=\"{}\">\n",
            xml_escape(&class),
            xml_escape(&name)
        ));
        match d.severity {
            Severity::Error => out.push_str(&format!(
                "      <failure message=\"{}\" type=\"{}\">{}</failure>\n",
                xml_escape(&d.message),
                d.code.slug(),
                xml_escape(&body)
            )),
            _ => out.push_str(&format!(
                "      <system-out>{}</system-out>\n",
                xml_escape(&body)
            )),
        }
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diag::{Code, Span};
    use crate::load::{FileRole, SourceFile};
    use std::sync::Arc;

    fn snapshot() -> Snapshot {
        Snapshot {
            files: vec![SourceFile::new(
                Arc::from("gpu/a100.yaml"),
                FileRole::Spec,
                Arc::from(
                    "kind: GpuQuota\nspec:\n  pool:\n    capacity: 8\n  allocations:\n    - project: er\n      gpu: 10\n",
                ),
            )],
        }
    }

    fn diag() -> Diagnostic {
        let f: Arc<str> = Arc::from("gpu/a100.yaml");
        Diagnostic::new(
            Code::GpuOvercommit,
            "allocations add up to 10 GPUs, over its capacity of 8",
        )
        .at(
            Label::new(Span::new(f.clone(), Pos::new(7, 12), Pos::new(7, 14)))
                .field("spec.allocations[0].gpu"),
        )
        .related(Label::new(Span::new(f, Pos::new(4, 15), Pos::new(4, 16))).note("pool capacity"))
        .hint("lower it")
    }

    #[test]
    fn human_output_marks_both_places_without_colour() {
        let out = human(&[diag()], &snapshot(), &Paths::new("repo"), false);
        assert!(
            out.contains("error[E130]: allocations add up to 10 GPUs"),
            "{out}"
        );
        assert!(out.contains("repo/gpu/a100.yaml:7:12"), "{out}");
        assert!(out.contains("capacity: 8"), "{out}");
        assert!(out.contains("pool capacity"), "{out}");
        assert!(out.contains("spec.allocations[0].gpu"), "{out}");
        assert!(out.contains("help: lower it"), "{out}");
        assert!(!out.contains('\u{1b}'), "no escape codes without colour");
    }

    #[test]
    fn github_annotations_escape_and_locate() {
        let out = github(&[diag()], &Paths::new(""));
        assert_eq!(
            out,
            "::error file=gpu/a100.yaml,line=7,col=12,endLine=7,title=E130 gpu-overcommit::allocations add up to 10 GPUs, over its capacity of 8 (`spec.allocations[0].gpu`)%0Apool capacity: gpu/a100.yaml:4:15%0Ahint: lower it\n"
        );
    }

    #[test]
    fn json_is_parseable_and_complete() {
        let v: serde_json::Value =
            serde_json::from_str(&json(&[diag()], &Paths::new(""))).expect("json");
        assert_eq!(v["summary"]["errors"], 1);
        assert_eq!(v["diagnostics"][0]["code"], "E130");
        assert_eq!(v["diagnostics"][0]["location"]["line"], 7);
        assert_eq!(v["diagnostics"][0]["related"][0]["note"], "pool capacity");
    }

    #[test]
    fn offsets_handle_crlf_and_unicode() {
        let t = "a: é\r\nbb: x\r\n";
        let s = line_starts(t);
        assert_eq!(&t[offset(t, &s, Pos::new(2, 5))..], "x\r\n");
        assert_eq!(
            &t[offset(t, &s, Pos::new(1, 4))..offset(t, &s, Pos::new(1, 5))],
            "é"
        );
        assert!(offset(t, &s, Pos::new(99, 99)) <= t.len());
    }
}
