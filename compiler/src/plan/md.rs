//! Markdown escaping by construction: every piece of user text (a value, a name, a reason,
//! an author, a path) reaches a pull-request comment through one of these functions, and
//! none of them lets it become Markdown or HTML structure.
//!
//! - [`code`] / [`code_cell`]: an inline code span whose fence is longer than any backtick
//!   run inside (GitHub processes no mention, link, image or emoji inside code);
//! - [`html_code`]: a `<code>` element inside a raw HTML line (`<summary>`), entity-escaped;
//! - [`fenced`]: a fenced code block whose fence is longer than any backtick run inside;
//! - [`prose`]: running text with every ASCII punctuation character backslash-escaped, and
//!   mentions and autolinks broken with a word joiner;
//! - [`mermaid_text`]: a label inside a ```` ```mermaid ```` block (the fence is [`fenced`]'s),
//!   reduced to characters that cannot end a Mermaid string or start a directive.
//!
//! All of them keep user text on one line (line breaks show as `↵`, other control and
//! bidirectional-override characters as `�`): a line break could end a paragraph, an HTML
//! block or a table row.

use std::borrow::Cow;
use std::fmt::Write;

/// U+2060 WORD JOINER: invisible, breaks `@mention`, `http://` and `www.` recognition.
const JOINER: char = '\u{2060}';

/// Longest user text shown in one span; longer text is cut with `…`.
pub const MAX_SPAN: usize = 1_000;

/// Whether a character would change the layout around it: control characters, bidi
/// overrides and isolates, line and paragraph separators.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{2028}' | '\u{2029}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// `s` on one line, at most `max` characters.
pub fn one_line(s: &str, max: usize) -> Cow<'_, str> {
    let long = s.chars().nth(max).is_some();
    if !long && !s.chars().any(unsafe_char) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len().min(max.saturating_mul(4)) + 4);
    for (i, c) in s.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        match c {
            '\n' => out.push('↵'),
            '\r' => {}
            '\t' => out.push(' '),
            c if unsafe_char(c) => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn longest_run(s: &str, ch: char) -> usize {
    let (mut best, mut cur) = (0, 0);
    for c in s.chars() {
        if c == ch {
            cur += 1;
            best = best.max(cur);
        } else {
            cur = 0;
        }
    }
    best
}

fn span(s: &str, cell: bool) -> String {
    let s = one_line(s, MAX_SPAN);
    if s.is_empty() {
        return "`\"\"`".to_owned();
    }
    let s: Cow<'_, str> = if cell && s.contains('|') {
        // A table cell ends at `|`, even inside code; `\|` is a literal pipe there.
        Cow::Owned(s.replace('|', "\\|"))
    } else {
        s
    };
    let fence = "`".repeat(longest_run(&s, '`') + 1);
    // CommonMark strips one space from each end when both ends have one; a backtick at an
    // end would join the fence.
    let pad = if s.starts_with('`')
        || s.ends_with('`')
        || (s.starts_with(' ') && s.ends_with(' ') && !s.trim().is_empty())
    {
        " "
    } else {
        ""
    };
    format!("{fence}{pad}{s}{pad}{fence}")
}

/// User text as an inline code span.
pub fn code(s: &str) -> String {
    span(s, false)
}

/// User text as an inline code span inside a table cell.
pub fn code_cell(s: &str) -> String {
    span(s, true)
}

/// User text as a `<code>` element inside raw HTML (a `<summary>` line).
pub fn html_code(s: &str) -> String {
    format!("<code>{}</code>", html_escape(&one_line(s, MAX_SPAN)))
}

/// HTML entities for what HTML could read as structure, backticks and `@` (a raw HTML line
/// is no Markdown: nothing else there is structure).
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '`' => out.push_str("&#96;"),
            '@' => out.push_str("&#64;"),
            c => out.push(c),
        }
    }
    out
}

/// A fenced code block holding `body` verbatim (control characters but line breaks and tabs
/// replaced), fenced longer than any backtick run inside.
pub fn fenced(info: &str, body: &str) -> String {
    let body: String = body
        .chars()
        .map(|c| match c {
            '\n' | '\t' => c,
            c if unsafe_char(c) => '\u{FFFD}',
            c => c,
        })
        .collect();
    let fence = "`".repeat((longest_run(&body, '`') + 1).max(3));
    let mut s = String::with_capacity(body.len() + 2 * fence.len() + info.len() + 3);
    let _ = write!(s, "{fence}{info}\n{body}");
    if !body.is_empty() && !body.ends_with('\n') {
        s.push('\n');
    }
    let _ = writeln!(s, "{fence}");
    s
}

/// User text as a quoted Mermaid label's content: letters, digits, space and `._/-` kept, any
/// other character `_` (no quote, bracket, `%%` directive or entity can form), at most 40
/// characters.
pub fn mermaid_text(s: &str) -> String {
    let mut out: String = s
        .chars()
        .take(40)
        .map(|c| {
            if c.is_alphanumeric() || matches!(c, ' ' | '.' | '_' | '/' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.chars().nth(40).is_some() {
        out.push('…');
    }
    out
}

/// Running text that may hold user text: read as plain text, whatever it holds.
pub fn prose(s: &str) -> String {
    let s = one_line(s, MAX_SPAN * 4);
    let mut out = String::with_capacity(s.len() + 16);
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '@' => {
                out.push('@');
                out.push(JOINER);
            }
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            ':' if chars.peek() == Some(&'/') => {
                out.push(JOINER);
                out.push_str("\\:");
            }
            '.' if out.to_ascii_lowercase().ends_with("www") => {
                out.push(JOINER);
                out.push_str("\\.");
            }
            c if c.is_ascii_punctuation() => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use proptest::prelude::*;
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};

    fn events(md: &str) -> Vec<Event<'_>> {
        Parser::new_ext(md, Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH).collect()
    }

    /// The paragraph `x <span> y` holds exactly one code span, whose content is the text.
    fn assert_one_span(s: &str) {
        let md = format!("x {} y\n", code(s));
        let ev = events(&md);
        let codes: Vec<&Event> = ev.iter().filter(|e| matches!(e, Event::Code(_))).collect();
        assert_eq!(codes.len(), 1, "{md:?}: {ev:?}");
        let expected = one_line(s, MAX_SPAN);
        let expected = if expected.is_empty() {
            "\"\"".into()
        } else {
            expected
        };
        assert_eq!(codes[0], &Event::Code(expected.as_ref().into()), "{md:?}");
        assert!(
            ev.iter().all(|e| matches!(
                e,
                Event::Start(Tag::Paragraph)
                    | Event::End(TagEnd::Paragraph)
                    | Event::Text(_)
                    | Event::Code(_)
            )),
            "{md:?}: {ev:?}"
        );
        let texts: String = ev
            .iter()
            .filter_map(|e| match e {
                Event::Text(t) => Some(t.as_ref()),
                _ => None,
            })
            .collect();
        assert_eq!(texts, "x  y", "{md:?}");
    }

    #[test]
    fn code_spans_hold_any_backticks_and_markup() {
        for s in [
            "`",
            "``",
            "a`b",
            "`a`",
            " a ",
            " `",
            "` ",
            "```\n# h\n```",
            "<b>x</b>",
            "[l](u)",
            "![i](u)",
            "@team/x",
            "| a |",
            "\n\n# heading",
            "a\r\nb",
            "\u{202E}evil",
            "",
            "   ",
            "\\",
            "*x*",
            "<!-- c -->",
        ] {
            assert_one_span(s);
        }
    }

    #[test]
    fn table_cells_keep_pipes_inside() {
        let md = format!("| a | b |\n|---|---|\n| {} | 1 |\n", code_cell("x | y `z`"));
        let ev = events(&md);
        let cells = ev
            .iter()
            .filter(|e| matches!(e, Event::Start(Tag::TableCell)))
            .count();
        assert_eq!(cells, 4, "{md}: {ev:?}");
        assert!(ev.contains(&Event::Code("x | y `z`".into())), "{ev:?}");
    }

    #[test]
    fn fences_hold_any_body() {
        for body in ["```\n# x\n```\n", "````", "~~~\n", "a\n\n\n<details>\n", ""] {
            let md = fenced("diff", body);
            let ev = events(&md);
            assert_eq!(
                ev.iter()
                    .filter(|e| matches!(e, Event::Start(Tag::CodeBlock(_))))
                    .count(),
                1,
                "{md:?}"
            );
            let inside: String = ev
                .iter()
                .filter_map(|e| match e {
                    Event::Text(t) => Some(t.as_ref()),
                    _ => None,
                })
                .collect();
            let want = if body.is_empty() || body.ends_with('\n') {
                body.to_owned()
            } else {
                format!("{body}\n")
            };
            assert_eq!(inside, want, "{md:?}");
        }
    }

    #[test]
    fn prose_is_plain_text() {
        let s = "# h\n\n![i](https://e.x/p.png) [l](u) <b>x</b> @acme/team a@b.co www.e.x `c` *e* 1. | x |";
        let md = format!("{}\n", prose(s));
        let ev = events(&md);
        assert!(
            ev.iter().all(|e| matches!(
                e,
                Event::Start(Tag::Paragraph) | Event::End(TagEnd::Paragraph) | Event::Text(_)
            )),
            "{md:?}: {ev:?}"
        );
        let t: String = ev
            .iter()
            .filter_map(|e| match e {
                Event::Text(t) => Some(t.to_string()),
                _ => None,
            })
            .collect();
        assert!(
            !t.contains("@a") && !t.contains("https:") && !t.contains("www."),
            "{t}"
        );
        assert_eq!(t.replace(JOINER, ""), s.replace('\n', "↵"));
    }

    #[test]
    fn html_code_is_inert() {
        let h = html_code("</code></summary>\n\n# x @team <img src=x> `");
        assert!(!h[6..h.len() - 7].contains('<') && !h.contains('@') && !h.contains('\n'));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn any_string_stays_in_its_code_span(s in "\\PC{0,40}|[`\\n <>@\\[\\]!|#*_-]{0,30}|.{0,30}") {
            assert_one_span(&s);
        }

        #[test]
        fn any_body_stays_in_its_fence(s in "[`~\\n a#<>]{0,60}") {
            let md = fenced("", &s);
            let blocks = events(&md)
                .iter()
                .filter(|e| matches!(e, Event::Start(Tag::CodeBlock(_))))
                .count();
            prop_assert_eq!(blocks, 1);
        }
    }
}
