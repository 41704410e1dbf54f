//! YAML text to [`Node`] trees, with limits against hostile input.
//!
//! Built on the `saphyr-parser` event stream rather than a DOM crate so that every node keeps
//! its span, duplicate keys are caught with both positions, and alias expansion (in nodes *and*
//! in bytes of text), node count and nesting depth are bounded while building (a
//! billion-laughs document, a long scalar aliased a thousand times or 10,000 nested lists ends
//! in a diagnostic, not in memory exhaustion or a stack overflow). Scalars are resolved
//! with the YAML 1.2 core schema, as Kubernetes' own YAML 1.2 readers do.

use std::collections::HashMap;
use std::sync::Arc;

use saphyr_parser::{Event, Parser, ScalarStyle, Span as YSpan, Tag};

use super::node::{Entry, Node, NodeSpan, NodeValue};
use crate::diag::{Code, Diagnostic, Label, Pos, Span};

/// Bounds on what one file may expand into.
#[derive(Debug, Clone, Copy)]
pub struct YamlLimits {
    /// Deepest nesting of lists and mappings.
    pub max_depth: usize,
    /// Most nodes in one file, counting every node an alias expands to.
    pub max_nodes: usize,
    /// Most bytes of text (keys and scalars) aliases may add to a file beyond its own length:
    /// what the file expands to stays within its length plus this.
    pub max_alias_bytes: usize,
}

impl Default for YamlLimits {
    fn default() -> YamlLimits {
        YamlLimits {
            max_depth: 64,
            max_nodes: 1_000_000,
            max_alias_bytes: 1024 * 1024,
        }
    }
}

/// One YAML document of a file.
#[derive(Debug, Clone)]
pub struct YamlDoc {
    /// 0-based position of the document in its file (empty documents are counted too).
    pub index: usize,
    pub root: Node,
    /// A problem was reported inside the document (a duplicate key, an unsupported tag or
    /// value): its tree is not what the author wrote, so later stages must not read it.
    pub tainted: bool,
}

/// Parse every document of a file. Documents before a syntax error are kept; the error and
/// anything after it become a diagnostic.
pub fn parse_documents(
    file: &Arc<str>,
    text: &str,
    limits: YamlLimits,
) -> (Vec<YamlDoc>, Vec<Diagnostic>) {
    let mut b = Builder {
        file,
        limits,
        diags: Vec::new(),
        nodes: 0,
        bytes: 0,
        max_bytes: text.len().saturating_add(limits.max_alias_bytes),
        anchors: HashMap::new(),
        stack: Vec::new(),
    };
    let mut docs = Vec::new();
    let mut parser = Parser::new_from_str(text);
    let mut doc_index = 0usize;
    let mut current: Option<Node> = None;
    let mut diags_at_start = 0usize;
    while let Some(ev) = parser.next_event() {
        let (ev, span) = match ev {
            Ok(x) => x,
            Err(e) => {
                let m = e.marker();
                let pos = Pos::new(m.line() as u32, m.col() as u32 + 1);
                let at = Label::new(Span::new(file.clone(), pos, pos));
                b.diags.push(if e.info().contains("recursion limit") {
                    // The scanner's own bound on flow nesting, met while it reads ahead.
                    Diagnostic::new(Code::YamlTooDeep, "nesting too deep: the YAML reader gives up here")
                        .at(at)
                        .hint(format!("plinth accepts at most {} levels of nesting; the file is probably generated or hostile", limits.max_depth))
                } else if e.info().contains("unknown anchor") {
                    Diagnostic::new(Code::UnknownAnchor, "alias refers to an anchor that is not defined")
                        .at(at)
                        .hint("define the anchor with `&name` before using `*name`")
                } else {
                    Diagnostic::new(Code::YamlSyntax, format!("invalid YAML: {}", e.info()))
                        .at(at)
                        .hint(syntax_hint(e.info()))
                });
                break;
            }
        };
        match ev {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => {}
            Event::DocumentStart(_) => {
                b.stack.clear();
                b.anchors.clear();
                current = None;
                diags_at_start = b.diags.len();
            }
            Event::DocumentEnd => {
                // An empty document (`---` alone, or only comments) resolves to a null root.
                if let Some(root) = current.take()
                    && root.value != NodeValue::Null
                {
                    docs.push(YamlDoc {
                        index: doc_index,
                        root,
                        tainted: b.diags.len() > diags_at_start,
                    });
                }
                doc_index += 1;
            }
            ev => match b.event(ev, span) {
                Ok(Some(done)) => current = Some(done),
                Ok(None) => {}
                Err(d) => {
                    b.diags.push(*d);
                    // Depth or budget errors make the rest of the file untrustworthy to walk;
                    // stop here rather than scanning megabytes of nested brackets.
                    break;
                }
            },
        }
    }
    (docs, b.diags)
}

fn too_deep(max: usize, at: Label) -> Diagnostic {
    Diagnostic::new(
        Code::YamlTooDeep,
        format!("nesting deeper than {max} levels"),
    )
    .at(at)
    .hint("plinth specs are never this deep; the file is probably generated or hostile")
}

fn syntax_hint(info: &str) -> &'static str {
    if info.contains("quoted scalar") {
        "a quoted value may be missing its closing quote"
    } else if info.contains("tab") {
        "YAML indentation must use spaces, not tabs"
    } else if info.contains("mapping values are not allowed") {
        "a value holding `: ` must be quoted, or the line is indented wrongly"
    } else if info.contains("did not find expected key") || info.contains("block") {
        "check the indentation of this line against the lines above"
    } else {
        "fix the YAML syntax at this position"
    }
}

/// Entries of a mapping up to which a duplicate key is found by searching them.
const SMALL_MAP: usize = 16;

enum Frame {
    Seq {
        anchor: usize,
        start: Pos,
        items: Vec<Node>,
    },
    Map {
        anchor: usize,
        start: Pos,
        entries: Vec<Entry>,
        seen: HashMap<String, NodeSpan>,
        pending_key: Option<(String, NodeSpan)>,
        skip_value: bool,
    },
}

struct Builder<'a> {
    file: &'a Arc<str>,
    limits: YamlLimits,
    diags: Vec<Diagnostic>,
    nodes: usize,
    /// Bytes of keys and scalars built so far, aliases expanded.
    bytes: usize,
    max_bytes: usize,
    /// anchor id → (node, its node count, its bytes)
    anchors: HashMap<usize, (Node, usize, usize)>,
    stack: Vec<Frame>,
}

type Step = Result<Option<Node>, Box<Diagnostic>>;

fn pos(m: saphyr_parser::Marker) -> Pos {
    Pos::new(m.line() as u32, m.col() as u32 + 1)
}

fn node_span(s: YSpan) -> NodeSpan {
    NodeSpan {
        start: pos(s.start),
        end: pos(s.end),
    }
}

/// Nodes and bytes of text (keys and scalars) in a tree.
fn size(n: &Node) -> (usize, usize) {
    match &n.value {
        NodeValue::Seq(items) => items
            .iter()
            .map(size)
            .fold((1, 0), |a, b| (a.0 + b.0, a.1 + b.1)),
        NodeValue::Map(es) => es.iter().fold((1, 0), |a, e| {
            let (n, b) = size(&e.value);
            (a.0 + n, a.1 + b + e.key.len())
        }),
        NodeValue::Str(s) => (1, s.len()),
        _ => (1, 8),
    }
}

impl Builder<'_> {
    fn span(&self, s: NodeSpan) -> Span {
        Span::new(self.file.clone(), s.start, s.end)
    }

    fn budget(&mut self, n: usize, bytes: usize, at: NodeSpan) -> Result<(), Box<Diagnostic>> {
        self.nodes += n;
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > self.max_bytes {
            return Err(Box::new(
                Diagnostic::new(
                    Code::YamlTooLarge,
                    format!(
                        "the document expands to more than {} bytes of text: aliases add more than {} bytes to the file",
                        self.max_bytes, self.limits.max_alias_bytes
                    ),
                )
                .at(Label::new(self.span(at)))
                .hint("an alias repeats everything its anchor holds; write the values out, or repeat less"),
            ));
        }
        if self.nodes > self.limits.max_nodes {
            return Err(Box::new(
                Diagnostic::new(
                    Code::YamlTooLarge,
                    format!("the document expands to more than {} nodes", self.limits.max_nodes),
                )
                .at(Label::new(self.span(at)))
                .hint("aliases that expand exponentially (a \"billion laughs\" document) are refused; write the values out"),
            ));
        }
        Ok(())
    }

    fn event(&mut self, ev: Event<'_>, span: YSpan) -> Step {
        let sp = node_span(span);
        match ev {
            Event::Scalar(text, style, anchor, tag) => {
                self.budget(1, text.len(), sp)?;
                let value = self.scalar(&text, style, tag.as_deref(), sp);
                let node = Node { value, span: sp };
                if anchor > 0 {
                    self.anchors.insert(anchor, (node.clone(), 1, text.len()));
                }
                self.push(node, true)
            }
            Event::Alias(id) => {
                let Some(&(_, nodes, bytes)) = self.anchors.get(&id) else {
                    return Err(Box::new(
                        Diagnostic::new(
                            Code::UnknownAnchor,
                            "alias refers to an anchor that is not defined",
                        )
                        .at(Label::new(self.span(sp)))
                        .hint("define the anchor with `&name` before using `*name`"),
                    ));
                };
                // Charge before copying: a refused alias costs nothing.
                self.budget(nodes, bytes, sp)?;
                let node = self.anchors[&id].0.clone();
                self.push(node, false)
            }
            Event::SequenceStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "seq", sp);
                self.budget(1, 0, sp)?;
                self.open(
                    Frame::Seq {
                        anchor,
                        start: sp.start,
                        items: Vec::new(),
                    },
                    sp,
                )
            }
            Event::MappingStart(anchor, tag) => {
                self.check_collection_tag(tag.as_deref(), "map", sp);
                self.budget(1, 0, sp)?;
                self.open(
                    Frame::Map {
                        anchor,
                        start: sp.start,
                        entries: Vec::new(),
                        seen: HashMap::new(),
                        pending_key: None,
                        skip_value: false,
                    },
                    sp,
                )
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let Some(frame) = self.stack.pop() else {
                    return Ok(None);
                };
                let (anchor, node) = match frame {
                    Frame::Seq {
                        anchor,
                        start,
                        items,
                    } => (
                        anchor,
                        Node {
                            value: NodeValue::Seq(items),
                            span: NodeSpan { start, end: sp.end },
                        },
                    ),
                    Frame::Map {
                        anchor,
                        start,
                        entries,
                        ..
                    } => (
                        anchor,
                        Node {
                            value: NodeValue::Map(entries),
                            span: NodeSpan { start, end: sp.end },
                        },
                    ),
                };
                if anchor > 0 {
                    let (nodes, bytes) = size(&node);
                    self.anchors.insert(anchor, (node.clone(), nodes, bytes));
                }
                self.push(node, false)
            }
            _ => Ok(None),
        }
    }

    fn open(&mut self, frame: Frame, sp: NodeSpan) -> Step {
        if self.stack.len() >= self.limits.max_depth {
            return Err(Box::new(too_deep(
                self.limits.max_depth,
                Label::new(self.span(sp)),
            )));
        }
        self.stack.push(frame);
        Ok(None)
    }

    /// Hand a finished node to its parent; at the top level it is the document root.
    fn push(&mut self, node: Node, is_scalar: bool) -> Step {
        let file = self.file.clone();
        match self.stack.last_mut() {
            None => Ok(Some(node)),
            Some(Frame::Seq { items, .. }) => {
                items.push(node);
                Ok(None)
            }
            Some(Frame::Map {
                entries,
                seen,
                pending_key,
                skip_value,
                ..
            }) => {
                match pending_key.take() {
                    None => {
                        // This node is a key.
                        let key = match (&node.value, is_scalar) {
                            (NodeValue::Str(s), _) => Some(s.clone()),
                            (NodeValue::Int(i), true) => Some(i.to_string()),
                            (NodeValue::Bool(b), true) => Some(b.to_string()),
                            (NodeValue::Null, true) => Some("null".to_owned()),
                            (NodeValue::Float(f), true) => Some(f.to_string()),
                            _ => None,
                        };
                        match key {
                            Some(k) => {
                                *skip_value = false;
                                // A small mapping (most of them) is searched; a large one
                                // keeps its keys in a map, made when it grows large.
                                let first = if entries.len() < SMALL_MAP {
                                    entries.iter().find(|e| e.key == k).map(|e| e.key_span)
                                } else {
                                    if seen.is_empty() {
                                        seen.extend(
                                            entries.iter().map(|e| (e.key.clone(), e.key_span)),
                                        );
                                    }
                                    seen.get(&k).copied()
                                };
                                if let Some(first) = first {
                                    self.diags.push(
                                        Diagnostic::new(
                                            Code::DuplicateKey,
                                            format!("duplicate key `{k}`"),
                                        )
                                        .at(Label::new(Span::new(
                                            file.clone(),
                                            node.span.start,
                                            node.span.end,
                                        )))
                                        .related(
                                            Label::new(Span::new(file, first.start, first.end))
                                                .note("first defined here"),
                                        )
                                        .hint(
                                            "a mapping may hold each key once; remove one of them",
                                        ),
                                    );
                                    *skip_value = true;
                                } else if !seen.is_empty() {
                                    seen.insert(k.clone(), node.span);
                                }
                                *pending_key = Some((k, node.span));
                            }
                            None => {
                                self.diags.push(
                                    Diagnostic::new(
                                        Code::ComplexKey,
                                        "mapping keys must be plain scalars",
                                    )
                                    .at(Label::new(Span::new(file, node.span.start, node.span.end)))
                                    .hint("use a string key"),
                                );
                                *pending_key = Some((String::new(), node.span));
                                *skip_value = true;
                            }
                        }
                    }
                    Some((key, key_span)) => {
                        if !*skip_value {
                            entries.push(Entry {
                                key,
                                key_span,
                                value: node,
                            });
                        }
                        *skip_value = false;
                    }
                }
                Ok(None)
            }
        }
    }

    fn check_collection_tag(&mut self, tag: Option<&Tag>, expected: &str, sp: NodeSpan) {
        if let Some(t) = tag
            && !(t.is_yaml_core_schema() && t.suffix == expected)
        {
            self.unsupported_tag(t, sp);
        }
    }

    fn unsupported_tag(&mut self, t: &Tag, sp: NodeSpan) {
        let d = Diagnostic::new(
            Code::UnsupportedValue,
            format!("unsupported YAML tag `{t}`"),
        )
        .at(Label::new(self.span(sp)))
        .hint("plinth specs use plain YAML values; remove the tag");
        self.diags.push(d);
    }

    fn scalar(
        &mut self,
        text: &str,
        style: ScalarStyle,
        tag: Option<&Tag>,
        sp: NodeSpan,
    ) -> NodeValue {
        if let Some(t) = tag {
            if t.is_yaml_core_schema() {
                return match t.suffix.as_str() {
                    "str" => NodeValue::Str(text.to_owned()),
                    "null" => NodeValue::Null,
                    "bool" => match resolve_plain(text) {
                        v @ NodeValue::Bool(_) => v,
                        _ => self.bad_tagged(text, "bool", sp),
                    },
                    "int" => match resolve_plain(text) {
                        v @ NodeValue::Int(_) => v,
                        _ => self.bad_tagged(text, "int", sp),
                    },
                    "float" => match resolve_plain(text) {
                        NodeValue::Int(i) => self.finite(i as f64, sp),
                        NodeValue::Float(f) => self.finite(f, sp),
                        _ => self.bad_tagged(text, "float", sp),
                    },
                    _ => {
                        self.unsupported_tag(t, sp);
                        NodeValue::Str(text.to_owned())
                    }
                };
            }
            if !(t.handle == "!" && t.suffix.is_empty()) {
                self.unsupported_tag(t, sp);
            }
            return NodeValue::Str(text.to_owned());
        }
        if style != ScalarStyle::Plain {
            return NodeValue::Str(text.to_owned());
        }
        match resolve_plain(text) {
            NodeValue::Float(f) => self.finite(f, sp),
            v => v,
        }
    }

    fn finite(&mut self, f: f64, sp: NodeSpan) -> NodeValue {
        if f.is_finite() {
            NodeValue::Float(f)
        } else {
            self.diags.push(
                Diagnostic::new(
                    Code::UnsupportedValue,
                    "infinite and NaN numbers are not supported",
                )
                .at(Label::new(self.span(sp)))
                .hint("quote the value if it is meant as text"),
            );
            NodeValue::Null
        }
    }

    fn bad_tagged(&mut self, text: &str, tag: &str, sp: NodeSpan) -> NodeValue {
        self.diags.push(
            Diagnostic::new(
                Code::UnsupportedValue,
                format!("`{text}` is not a valid `!!{tag}`"),
            )
            .at(Label::new(self.span(sp))),
        );
        NodeValue::Str(text.to_owned())
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
pub fn resolve_plain(text: &str) -> NodeValue {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return NodeValue::Null,
        "true" | "True" | "TRUE" => return NodeValue::Bool(true),
        "false" | "False" | "FALSE" => return NodeValue::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return NodeValue::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return NodeValue::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return NodeValue::Float(f64::NAN),
        _ => {}
    }
    let bytes = text.as_bytes();
    let (sign, digits) = match bytes[0] {
        b'-' => (-1i64, &text[1..]),
        b'+' => (1, &text[1..]),
        _ => (1, text),
    };
    if let Some(oct) = text.strip_prefix("0o")
        && !oct.is_empty()
        && oct.bytes().all(|b| (b'0'..=b'7').contains(&b))
    {
        return i64::from_str_radix(oct, 8)
            .map_or_else(|_| NodeValue::Str(text.to_owned()), NodeValue::Int);
    }
    if let Some(hex) = text.strip_prefix("0x")
        && !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
    {
        return i64::from_str_radix(hex, 16)
            .map_or_else(|_| NodeValue::Str(text.to_owned()), NodeValue::Int);
    }
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return match digits.parse::<i64>() {
            Ok(i) => NodeValue::Int(sign * i),
            Err(_) => text
                .parse::<f64>()
                .map_or_else(|_| NodeValue::Str(text.to_owned()), NodeValue::Float),
        };
    }
    if is_core_float(digits)
        && let Ok(f) = text.parse::<f64>()
    {
        return NodeValue::Float(f);
    }
    NodeValue::Str(text.to_owned())
}

/// `[0-9]*(\.[0-9]*)?([eE][-+]?[0-9]+)?` with at least one digit before the exponent.
fn is_core_float(s: &str) -> bool {
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let (int, frac) = match mant.find('.') {
        Some(i) => (&mant[..i], Some(&mant[i + 1..])),
        None => (mant, None),
    };
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if !digits(int) || !frac.is_none_or(digits) {
        return false;
    }
    if int.is_empty() && frac.is_none_or(str::is_empty) {
        return false;
    }
    if frac.is_none() && exp.is_none() {
        return false;
    }
    match exp {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['+', '-']).unwrap_or(e);
            !e.is_empty() && digits(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<YamlDoc>, Vec<Diagnostic>) {
        parse_documents(&Arc::from("t.yaml"), text, YamlLimits::default())
    }

    #[test]
    fn core_schema_scalars() {
        assert_eq!(resolve_plain("12"), NodeValue::Int(12));
        assert_eq!(resolve_plain("-3"), NodeValue::Int(-3));
        assert_eq!(resolve_plain("0x1F"), NodeValue::Int(31));
        assert_eq!(resolve_plain("0o17"), NodeValue::Int(15));
        assert_eq!(resolve_plain("1.5"), NodeValue::Float(1.5));
        assert_eq!(resolve_plain("1e3"), NodeValue::Float(1000.0));
        assert_eq!(resolve_plain("true"), NodeValue::Bool(true));
        assert_eq!(resolve_plain("~"), NodeValue::Null);
        // YAML 1.1 booleans are strings in 1.2.
        assert_eq!(resolve_plain("yes"), NodeValue::Str("yes".into()));
        assert_eq!(resolve_plain("16Gi"), NodeValue::Str("16Gi".into()));
        assert_eq!(resolve_plain("500m"), NodeValue::Str("500m".into()));
        assert_eq!(resolve_plain("1.32"), NodeValue::Float(1.32));
        assert_eq!(resolve_plain("."), NodeValue::Str(".".into()));
        assert_eq!(resolve_plain("e3"), NodeValue::Str("e3".into()));
        assert_eq!(resolve_plain("-"), NodeValue::Str("-".into()));
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let (docs, diags) = parse("a: 1\nb:\n  c: hello\n");
        assert!(diags.is_empty(), "{diags:?}");
        let root = &docs[0].root;
        let b = root.get("b").expect("b");
        assert_eq!(b.key_span.start, Pos::new(2, 1));
        let c = b.value.get("c").expect("c");
        assert_eq!(c.key_span.start, Pos::new(3, 3));
        assert_eq!(c.value.span.start, Pos::new(3, 6));
        assert_eq!(c.value.as_str(), Some("hello"));
    }

    #[test]
    fn several_documents_and_empty_ones() {
        let (docs, diags) = parse("---\na: 1\n---\n---\nb: 2\n");
        assert!(diags.is_empty());
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[0].index, 0);
        assert_eq!(docs[1].index, 2);
    }

    #[test]
    fn duplicate_keys_name_both_places() {
        let (_, diags) = parse("a: 1\nb: 2\na: 3\n");
        assert_eq!(diags.len(), 1);
        let d = &diags[0];
        assert_eq!(d.code, Code::DuplicateKey);
        assert_eq!(
            d.primary.as_ref().map(|l| l.span.start),
            Some(Pos::new(3, 1))
        );
        assert_eq!(d.related[0].span.start, Pos::new(1, 1));
    }

    /// Small mappings are searched for a duplicate, large ones keep a map of their keys (from
    /// the entry that makes them large): both find every duplicate, at its first place.
    #[test]
    fn duplicate_keys_are_found_in_small_and_large_mappings() {
        let mut text = String::new();
        let mut lines = Vec::new();
        for i in 0..40 {
            lines.push(format!("k{i}: {i}"));
        }
        // Line numbers (from 1) of the duplicates, and of the keys they repeat.
        lines.insert(10, "k3: dup".to_owned());
        lines.insert(17, "k15: dup".to_owned());
        lines.insert(30, "k5: dup".to_owned());
        lines.push("k35: dup".to_owned());
        for l in &lines {
            text.push_str(l);
            text.push('\n');
        }
        let (docs, diags) = parse(&text);
        let at = |d: &Diagnostic| {
            (
                d.primary.as_ref().map(|l| l.span.start.line),
                d.related[0].span.start.line,
            )
        };
        let found: Vec<(Option<u32>, u32)> = diags.iter().map(at).collect();
        assert_eq!(
            found,
            vec![(Some(11), 4), (Some(18), 17), (Some(31), 6), (Some(44), 39)]
        );
        assert!(diags.iter().all(|d| d.code == Code::DuplicateKey));
        let root = docs[0].root.as_map().expect("a mapping");
        assert_eq!(root.len(), 40, "each key once");
        assert!(
            root.iter()
                .all(|e| !matches!(&e.value.value, NodeValue::Str(s) if s == "dup"))
        );
    }

    #[test]
    fn billion_laughs_is_refused() {
        let mut text = String::from(
            "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
        );
        for i in 1..10 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
            ));
        }
        let (docs, diags) = parse(&text);
        assert!(docs.is_empty());
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].code, Code::YamlTooLarge);
    }

    #[test]
    fn deep_nesting_is_refused() {
        let text = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
        let (docs, diags) = parse(&text);
        assert!(docs.is_empty());
        assert_eq!(diags[0].code, Code::YamlTooDeep);
        let block: String = (0..10_000)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect();
        let (_, diags) = parse(&block);
        assert_eq!(diags[0].code, Code::YamlTooDeep, "{:?}", diags[0]);
    }

    #[test]
    fn syntax_errors_are_located() {
        let (_, diags) = parse("a: 1\nb:\n\t- c\n");
        assert_eq!(diags[0].code, Code::YamlSyntax);
        assert_eq!(
            diags[0].primary.as_ref().map(|l| l.span.start.line),
            Some(3)
        );
    }

    #[test]
    fn aliases_expand_and_tags_resolve() {
        let (docs, diags) = parse("x: &v {a: 1}\ny: *v\nz: !!str 12\n");
        assert!(diags.is_empty(), "{diags:?}");
        let j = docs[0].root.to_json();
        assert_eq!(j["y"]["a"], 1);
        assert_eq!(j["z"], "12");
        let (_, diags) = parse("x: !Ref foo\n");
        assert_eq!(diags[0].code, Code::UnsupportedValue);
    }

    #[test]
    fn crlf_keeps_lines_right() {
        let (docs, _) = parse("a: 1\r\nb: 2\r\n");
        assert_eq!(
            docs[0].root.get("b").map(|e| e.key_span.start),
            Some(Pos::new(2, 1))
        );
    }
}
