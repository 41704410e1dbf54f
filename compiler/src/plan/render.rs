//! Plan renderers: terminal, Markdown for a pull-request comment, and JSON
//! (`schemas/plan.schema.json`). Each returns a `String`; the CLI prints it.

use std::fmt::Write;

use serde_json::{Value, json};

use super::{Action, Change, Plan, Risk, md};

/// What was compared, for headers.
#[derive(Debug, Clone, Default)]
pub struct Sides {
    /// `main` (`1a2b3c4`).
    pub base: String,
    /// `HEAD` (`5d6e7f8`), or `working tree`.
    pub head: String,
}

/// GitHub refuses comments over 65,536 characters; stay clearly below.
pub const COMMENT_LIMIT: usize = 65_000;

fn symbol(a: Action) -> &'static str {
    match a {
        Action::Create => "+",
        Action::Update => "~",
        Action::Delete => "-",
    }
}

fn totals(p: &Plan) -> (usize, usize, usize, usize, usize) {
    p.counts.values().fold((0, 0, 0, 0, 0), |t, c| {
        (
            t.0 + c.create,
            t.1 + c.update,
            t.2 + c.delete,
            t.3 + c.unchanged,
            t.4 + c.destructive,
        )
    })
}

/// `gpu/a100.yaml:45 (1a2b3c4 by Dana Smith, 2026-11-28)`.
fn provenance(c: &Change) -> String {
    let o = &c.provenance.origin;
    let mut s = format!("{}:{}", o.file, o.line);
    let commits: Vec<String> = c
        .provenance
        .commits
        .iter()
        .take(3)
        .map(|k| format!("{} by {}, {}", k.short, k.author, k.date))
        .collect();
    if !commits.is_empty() {
        s.push_str(&format!(
            " ({}{})",
            commits.join("; "),
            if c.provenance.commits.len() > 3 {
                "; …"
            } else {
                ""
            }
        ));
    }
    s
}

/// The most telling field changes of an update, `path a→b`.
fn field_summary(c: &Change, max: usize) -> String {
    let parts: Vec<String> = c
        .fields
        .iter()
        .take(max)
        .map(|f| {
            let leaf = &f.leaf;
            match (&f.before, &f.after) {
                (Some(b), Some(a))
                    if b.starts_with(crate::redact::MARK) && a.starts_with(crate::redact::MARK) =>
                {
                    format!("{leaf} changed (redacted)")
                }
                (Some(b), Some(a)) => format!("{leaf} {b}→{a}"),
                (None, Some(a)) => format!("{leaf} +{a}"),
                (Some(b), None) => format!("{leaf} -{b}"),
                (None, None) => leaf.to_owned(),
            }
        })
        .collect();
    let more = c.fields.len().saturating_sub(max);
    let mut s = parts.join(", ");
    if more > 0 {
        s.push_str(&format!(", +{more} more"));
    }
    s
}

/// For a terminal: a summary per cluster, then each change with its diff.
pub fn terminal(p: &Plan, sides: &Sides, color: bool) -> String {
    let paint = |code: &str, s: &str| {
        if color {
            format!("\u{1b}[{code}m{s}\u{1b}[0m")
        } else {
            s.to_owned()
        }
    };
    // User text on one line, without control characters (no escape sequences reach the
    // terminal but plinth's own colours).
    let clean = |s: &str| md::one_line(s, usize::MAX).into_owned();
    let groups = p.groups(super::GROUP_MIN);
    let mut out = String::new();
    let (cr, up, de, un, _) = totals(p);
    let _ = writeln!(out, "plinth plan {} → {}", sides.base, sides.head);
    if !p.has_changes() {
        let _ = writeln!(out, "no changes ({un} objects unchanged)");
    }
    for (cluster, counts) in &p.counts {
        let _ = writeln!(
            out,
            "\ncluster {}: {} to create, {} to change, {} to delete, {} unchanged{}",
            clean(cluster),
            counts.create,
            counts.update,
            counts.delete,
            counts.unchanged,
            if counts.destructive > 0 {
                format!(" ({} destructive)", counts.destructive)
            } else {
                String::new()
            }
        );
        for g in groups.iter().filter(|g| &g.cluster == cluster) {
            let values = match (&g.before, &g.after) {
                (Some(b), Some(a)) if g.same => format!(" ({} → {})", clean(b), clean(a)),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "  = {} {} objects: {} changed{values}",
                g.objects,
                clean(&g.kind),
                clean(&g.path)
            );
        }
        for c in p.changes.iter().filter(|c| &c.cluster == cluster) {
            let sym = symbol(c.action);
            let line = format!("  {sym} {}", clean(&c.key.to_string()));
            let line = match c.action {
                Action::Create => paint("32", &line),
                Action::Update => paint("33", &line),
                Action::Delete => paint("31", &line),
            };
            let _ = write!(out, "{line}");
            if c.action == Action::Update {
                let _ = write!(out, "  {}", clean(&field_summary(c, 4)));
            }
            let _ = writeln!(out);
            if c.risk != Risk::Safe {
                let tag = format!("{}: {}", c.risk.as_str(), clean(&c.reasons.join("; ")));
                let _ = writeln!(
                    out,
                    "      {}",
                    if c.risk == Risk::Destructive {
                        paint("1;31", &tag)
                    } else {
                        paint("35", &tag)
                    }
                );
                if let Some(a) = &c.approval {
                    let _ = writeln!(
                        out,
                        "      {}",
                        paint("32", &format!("✅ {}", clean(&a.describe())))
                    );
                }
            }
            let _ = writeln!(out, "      from {}", clean(&provenance(c)));
            if c.action == Action::Update {
                for l in c.diff.lines().skip(2) {
                    let l = &clean(l);
                    let l2 = match l.chars().next() {
                        Some('+') => paint("32", l),
                        Some('-') => paint("31", l),
                        Some('@') => paint("36", l),
                        _ => l.to_owned(),
                    };
                    let _ = writeln!(out, "      {l2}");
                }
            }
        }
    }
    if let Some(d) = &p.capacity {
        out.push_str(&terminal_capacity(d, &clean, &paint));
    }
    let _ = writeln!(
        out,
        "\nplan: {cr} to create, {up} to change, {de} to delete"
    );
    for w in &p.warnings {
        let _ = writeln!(
            out,
            "{} {}:{}: {}\n  hint: {}",
            paint("1;33", "warning:"),
            clean(&w.file),
            w.line,
            clean(&w.message),
            clean(&w.hint)
        );
    }
    for r in &p.refusals {
        let _ = writeln!(out, "{} {}", paint("1;31", "refused:"), clean(&r.message));
        let hint: Vec<String> = r.hint.lines().map(clean).collect();
        let _ = writeln!(out, "  hint: {}", hint.join("\n  "));
    }
    out
}

/// The GPU capacity section for a terminal.
fn terminal_capacity(
    d: &crate::capacity::Diff,
    clean: &dyn Fn(&str) -> String,
    paint: &dyn Fn(&str, &str) -> String,
) -> String {
    let mut out = String::from("\nGPU capacity:\n");
    for pool in &d.pools {
        let _ = writeln!(
            out,
            "  {} in {} ({}): capacity {}, guaranteed {}, spare {}",
            clean(&pool.pool),
            clean(&pool.cluster),
            clean(&pool.resource),
            pool.capacity.text(),
            pool.allocated.text(),
            pool.spare.text()
        );
        for s in &pool.projects {
            let _ = writeln!(
                out,
                "    {}: guaranteed {}, borrowable max {}, demand {}{}",
                clean(&s.project),
                s.guaranteed.text(),
                s.max.text(),
                s.demand.text(),
                if s.per_user.before.is_some() || s.per_user.after.is_some() {
                    format!(", per user {}", s.per_user.text())
                } else {
                    String::new()
                }
            );
        }
    }
    for f in &d.findings {
        let (tag, code) = match f.severity {
            crate::capacity::Severity::Destructive => ("destructive:", "1;31"),
            crate::capacity::Severity::Warning => ("warning:", "1;33"),
        };
        let _ = writeln!(out, "  {} {}", paint(code, tag), clean(&f.message));
    }
    out
}

/// The "GPU capacity" section of a Markdown plan: findings, then per pool a table of the
/// projects whose figures change and a Mermaid chart of every allocation before and after.
fn md_capacity(d: &crate::capacity::Diff) -> String {
    use crate::capacity::Severity;
    let mut s = String::from("#### GPU capacity\n\n");
    for f in &d.findings {
        match f.severity {
            Severity::Destructive => {
                let _ = write!(
                    s,
                    "> 🛑 **serving loses its guarantee**: {}",
                    md::prose(&f.message)
                );
                if let Some(o) = &f.object {
                    let _ = write!(
                        s,
                        " — destructive: approve the change of {} in {}",
                        md::code(o),
                        md::code(&f.cluster)
                    );
                }
                s.push_str("\n\n");
            }
            Severity::Warning => {
                let _ = writeln!(s, "> ⚠️ {}\n", md::prose(&f.message));
            }
        }
    }
    for pool in &d.pools {
        let _ = writeln!(
            s,
            "**{} in {}** ({}): capacity {}, guaranteed {}, spare {}\n",
            md::code(&pool.pool),
            md::code(&pool.cluster),
            md::code(&pool.resource),
            pool.capacity.text(),
            pool.allocated.text(),
            pool.spare.text()
        );
        if !pool.projects.is_empty() {
            s.push_str("| project | guaranteed | lendable | borrowable max | per user | demand |\n|---|---:|---:|---:|---:|---:|\n");
            for p in &pool.projects {
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} |",
                    md::code_cell(&p.project),
                    p.guaranteed.text(),
                    p.lendable.text(),
                    p.max.text(),
                    p.per_user.text(),
                    p.demand.text()
                );
            }
            s.push('\n');
        }
        if !pool.guaranteed.is_empty() {
            let mut names: Vec<String> = pool
                .guaranteed
                .keys()
                .map(|k| format!("\"{}\"", md::mermaid_text(k)))
                .collect();
            names.push("\"(spare)\"".to_owned());
            let side = |f: fn(&crate::capacity::Figure) -> Option<u32>| -> Vec<u32> {
                let mut v: Vec<u32> = pool
                    .guaranteed
                    .values()
                    .map(|g| f(g).unwrap_or(0))
                    .collect();
                v.push(f(&pool.spare).unwrap_or(0));
                v
            };
            let (before, after) = (side(|f| f.before), side(|f| f.after));
            let top = [
                pool.capacity.before,
                pool.capacity.after,
                pool.allocated.before,
                pool.allocated.after,
            ]
            .into_iter()
            .flatten()
            .max()
            .unwrap_or(0)
            .max(1);
            let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
            let chart = format!(
                "xychart-beta\n    title \"{} in {}: guaranteed GPUs (bars: after, line: before)\"\n    x-axis [{}]\n    y-axis \"GPUs\" 0 --> {top}\n    bar [{}]\n    line [{}]\n",
                md::mermaid_text(&pool.pool),
                md::mermaid_text(&pool.cluster),
                names.join(", "),
                list(&after),
                list(&before)
            );
            s.push_str(&md::fenced("mermaid", &chart));
            s.push('\n');
        }
    }
    s
}

/// One line about an approval, every user part in code: `approved: \`reason\` — by \`who\`
/// — via …`.
fn md_approval(a: &super::Approved) -> String {
    let mut s = format!("approved: {}", md::code(&a.reason));
    if let Some(w) = a.who() {
        let _ = write!(s, " — by {}", md::code(&w));
    }
    let at = a
        .file
        .as_ref()
        .map(|f| format!(" ({})", md::code(&format!("{f}:{}", a.line))))
        .unwrap_or_default();
    let _ = write!(
        s,
        " — {}",
        match a.via {
            super::Via::Flag => "`--allow-destructive`".to_owned(),
            super::Via::Entry => format!("`spec.approvals` entry{at}"),
            super::Via::Annotation => format!("`{}`{at}", super::APPROVE_ANNOTATION),
        }
    );
    if let Some(c) = a.commits.first() {
        let _ = write!(s, ", added in {}", md::code(&c.short));
    }
    s
}

/// Most reasons shown for one change.
const MAX_REASONS: usize = 20;

/// One change as a collapsed `<details>`; the diff cut to `diff_budget` bytes when given
/// (with a pointer to `full_plan`).
fn md_change(c: &Change, diff_budget: Option<usize>, full_plan: &str) -> String {
    let mut s = String::new();
    let risk = match (c.risk, &c.approval) {
        (Risk::Safe, _) => String::new(),
        (Risk::Disruptive, _) => " ⚠️ disruptive".to_owned(),
        (Risk::Destructive, None) => " 🛑 <b>destructive, not approved</b>".to_owned(),
        (Risk::Destructive, Some(_)) => " ✅ destructive, approved".to_owned(),
    };
    let fields = if c.action == Action::Update {
        format!(" — {}", md::html_code(&field_summary(c, 3)))
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "<details><summary><code>{}</code> {}{}{} <sub>{}</sub></summary>\n",
        symbol(c.action),
        md::html_code(&c.key.to_string()),
        fields,
        risk,
        md::html_code(&provenance(c))
    );
    if !c.reasons.is_empty() {
        let mut reasons: Vec<String> = c
            .reasons
            .iter()
            .take(MAX_REASONS)
            .map(|r| md::code(r))
            .collect();
        if c.reasons.len() > MAX_REASONS {
            reasons.push(format!("and {} more", c.reasons.len() - MAX_REASONS));
        }
        let _ = writeln!(s, "{}: {}\n", c.risk.as_str(), reasons.join("; "));
    }
    if let Some(a) = &c.approval {
        let _ = writeln!(s, "✅ {}\n", md_approval(a));
    }
    match diff_budget {
        Some(budget) if c.diff.len() > budget => {
            let mut kept = String::new();
            let mut lines = c.diff.split_inclusive('\n');
            for l in lines.by_ref() {
                if kept.len() + l.len() > budget {
                    break;
                }
                kept.push_str(l);
            }
            let more = c.diff[kept.len()..].lines().count();
            s.push_str(&md::fenced("diff", &kept));
            let _ = writeln!(
                s,
                "\n*diff trimmed: {more} more line{} in the full plan, {}*\n",
                if more == 1 { "" } else { "s" },
                md::code(full_plan)
            );
        }
        _ => s.push_str(&md::fenced("diff", &c.diff)),
    }
    s.push_str("</details>\n\n");
    s
}

/// A piece of a Markdown plan that goes whole onto one page.
struct Block<'a> {
    /// The cluster whose heading must precede it (changes).
    cluster: Option<&'a str>,
    text: String,
    /// The block cut to at most that many bytes, when it may be larger than a page.
    trim: Option<Box<dyn Fn(usize) -> String + 'a>>,
}

impl<'a> Block<'a> {
    fn text(text: String) -> Block<'a> {
        Block {
            cluster: None,
            text,
            trim: None,
        }
    }
}

/// The approval YAML block, with at most `budget` bytes of YAML (whole entries).
fn approval_block(p: &Plan, yaml: &str, budget: Option<usize>, full_plan: &str) -> String {
    let file = p
        .platform_file
        .as_deref()
        .map_or_else(|| "the Platform".to_owned(), md::code);
    let mut s = format!(
        "To approve, add under `spec:` of {file} **in this pull request** (an approval counts once; remove it in a later change):\n\n"
    );
    match budget {
        Some(b) if yaml.len() > b => {
            let mut kept = String::new();
            let mut entry = String::new();
            let mut shown = 0usize;
            let total = yaml.lines().filter(|l| l.starts_with("  - ")).count();
            for l in yaml.split_inclusive('\n') {
                if l.starts_with("  - ") {
                    if kept.len() + entry.len() > b {
                        entry.clear();
                        break;
                    }
                    if !entry.is_empty() {
                        shown += 1;
                    }
                    kept.push_str(&entry);
                    entry.clear();
                }
                entry.push_str(l);
            }
            if !entry.is_empty() && kept.len() + entry.len() <= b {
                shown += 1;
                kept.push_str(&entry);
            }
            s.push_str(&md::fenced("yaml", &kept));
            let _ = writeln!(
                s,
                "\n*{} more entr{} in the full plan, {}*\n",
                total - shown,
                if total - shown == 1 { "y" } else { "ies" },
                md::code(full_plan)
            );
        }
        _ => {
            s.push_str(&md::fenced("yaml", yaml));
            s.push('\n');
        }
    }
    s
}

/// `**300** \`Namespace\` objects in \`prod\`: \`path\` changed (\`a\` → \`b\`)`.
fn group_line(g: &super::Group) -> String {
    let values = match (&g.before, &g.after) {
        _ if !g.same => String::new(),
        (Some(b), Some(a)) => format!(" ({} → {})", md::code(b), md::code(a)),
        (None, Some(a)) => format!(" (added: {})", md::code(a)),
        (Some(b), None) => format!(" (removed: {})", md::code(b)),
        (None, None) => String::new(),
    };
    format!(
        "- **{}** {} objects in {}: {} changed{values}\n",
        g.objects,
        md::code(&g.kind),
        md::code(&g.cluster),
        md::code(&g.path)
    )
}

/// The blocks of a Markdown plan after its summary, in order.
fn md_blocks<'a>(p: &'a Plan, full_plan: &'a str) -> Vec<Block<'a>> {
    let mut blocks = Vec::new();
    if let Some(d) = &p.capacity {
        blocks.push(Block::text(md_capacity(d)));
    }
    for r in &p.refusals {
        let change = r.object.as_ref().and_then(|k| {
            p.changes
                .iter()
                .find(|c| c.cluster == r.cluster && &c.key == k)
        });
        let mut s = match change {
            Some(c) => format!(
                "> 🛑 **refused**: destructive `{}` of {} in cluster {} is not approved: {}\n",
                c.action.as_str(),
                md::code(&c.key.to_string()),
                md::code(&c.cluster),
                c.reasons
                    .iter()
                    .take(MAX_REASONS)
                    .map(|x| md::code(x))
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            None => format!("> 🛑 **refused**: {}\n", md::prose(&r.message)),
        };
        if r.object.is_none() {
            let _ = writeln!(s, "> hint: {}", md::prose(&r.hint));
        }
        s.push('\n');
        blocks.push(Block::text(s));
    }
    let yaml = p.approval_yaml(None);
    if !yaml.is_empty() {
        let yaml2 = yaml.clone();
        blocks.push(Block {
            cluster: None,
            text: approval_block(p, &yaml, None, full_plan),
            trim: Some(Box::new(move |b| {
                approval_block(p, &yaml2, Some(b.saturating_sub(600)), full_plan)
            })),
        });
    }
    let approved: Vec<&Change> = p.changes.iter().filter(|c| c.approval.is_some()).collect();
    if !approved.is_empty() {
        blocks.push(Block::text("Approved destructive changes:\n\n".to_owned()));
        for c in approved {
            if let Some(a) = &c.approval {
                blocks.push(Block::text(format!(
                    "- ✅ `{}` {} in {}: {}\n\n",
                    c.action.as_str(),
                    md::code(&c.key.to_string()),
                    md::code(&c.cluster),
                    md_approval(a)
                )));
            }
        }
    }
    for w in &p.warnings {
        blocks.push(Block::text(format!(
            "> ⚠️ **warning** ({}): {} — {}\n\n",
            md::code(&format!("{}:{}", w.file, w.line)),
            md::prose(&w.message),
            md::prose(&w.hint)
        )));
    }
    let groups = p.groups(super::GROUP_MIN);
    if !groups.is_empty() {
        blocks.push(Block::text(
            "Mass changes (the same field change across many objects; each object is listed below):\n\n"
                .to_owned(),
        ));
        for g in &groups {
            blocks.push(Block::text(group_line(g)));
        }
        blocks.push(Block::text("\n".to_owned()));
    }
    for c in &p.changes {
        blocks.push(Block {
            cluster: Some(&c.cluster),
            text: md_change(c, None, full_plan),
            trim: Some(Box::new(move |b| {
                // Room for the rest of the block: its summary line, reasons and approval.
                let frame = md_change(c, Some(0), full_plan).len();
                md_change(c, Some(b.saturating_sub(frame + 16)), full_plan)
            })),
        });
    }
    blocks
}

/// The summary: counts per cluster (the first page's title is added by the caller).
fn md_summary(p: &Plan, sides: &Sides) -> String {
    let mut head = String::new();
    let (_, _, _, un, destr) = totals(p);
    let _ = writeln!(
        head,
        "{} → {}\n",
        md::code(&sides.base),
        md::code(&sides.head)
    );
    if p.has_changes() || destr > 0 {
        let _ = writeln!(
            head,
            "| cluster | create | change | delete | unchanged | destructive |\n|---|---:|---:|---:|---:|---:|"
        );
        for (cluster, c) in &p.counts {
            let _ = writeln!(
                head,
                "| {} | {} | {} | {} | {} | {} |",
                md::code_cell(cluster),
                c.create,
                c.update,
                c.delete,
                c.unchanged,
                c.destructive
            );
        }
        let _ = writeln!(head);
    } else {
        let _ = writeln!(head, "No changes: {un} objects are up to date.\n");
    }
    head
}

fn md_title(p: &Plan, part: Option<(usize, usize)>) -> String {
    let (cr, up, de, _, _) = totals(p);
    let part = part.map_or_else(String::new, |(i, n)| format!(" — part {i}/{n}"));
    format!("### plinth plan: {cr} to create, {up} to change, {de} to delete{part}\n\n")
}

fn cluster_heading(c: &str) -> String {
    format!("#### cluster {}\n\n", md::code(c))
}

/// Room kept on every page for its title and footer.
const PAGE_FRAME: usize = 1_500;

/// A Markdown plan cut into pages of at most `limit` bytes (so characters) each: the summary
/// on page 1, `part i/N` in every page's title, each change whole on exactly one page (a
/// change too large for a page has its diff trimmed, with a pointer to `full_plan`).
pub fn markdown_pages(p: &Plan, sides: &Sides, limit: usize, full_plan: &str) -> Vec<String> {
    let summary = md_summary(p, sides);
    let budget = limit.saturating_sub(PAGE_FRAME).max(4_000);
    let mut bodies: Vec<String> = vec![summary];
    let mut fresh = true; // nothing but the page's frame yet
    let mut cluster: Option<&str> = None;
    for b in md_blocks(p, full_plan) {
        let heading = |cluster: Option<&str>| match b.cluster {
            Some(c) if cluster != Some(c) => cluster_heading(c),
            _ => String::new(),
        };
        let mut h = heading(cluster);
        let used = bodies.last().map_or(0, String::len);
        if !fresh && used + h.len() + b.text.len() > budget {
            bodies.push(String::new());
            cluster = None;
            h = heading(None);
        }
        let used = bodies.last().map_or(0, String::len);
        let room = budget.saturating_sub(used + h.len());
        let text = match &b.trim {
            Some(trim) if b.text.len() > room => trim(room),
            _ => b.text,
        };
        if let Some(page) = bodies.last_mut() {
            page.push_str(&h);
            page.push_str(&text);
        }
        fresh = false;
        if b.cluster.is_some() {
            cluster = b.cluster;
        }
    }
    let n = bodies.len();
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, body)| {
            let title = if i == 0 {
                md_title(p, Some((1, n)))
            } else {
                format!(
                    "### plinth plan — part {}/{n} (continued)\n\n{} → {}\n\n",
                    i + 1,
                    md::code(&sides.base),
                    md::code(&sides.head)
                )
            };
            let footer = if i + 1 < n {
                format!("\n*continued in part {}/{n}*\n", i + 2)
            } else {
                String::new()
            };
            format!("{title}{body}{footer}")
        })
        .collect()
}

/// Markdown for a pull-request comment: summary table first, mass changes grouped, details
/// collapsed. With a `cap`, the first page of [`markdown_pages`] and a line saying how many
/// more there are; without, the whole plan in one document.
pub fn markdown(p: &Plan, sides: &Sides, cap: Option<usize>, full_plan: &str) -> String {
    match cap {
        Some(limit) => {
            let pages = markdown_pages(p, sides, limit, full_plan);
            let n = pages.len();
            if n == 1 {
                return markdown(p, sides, None, full_plan);
            }
            let mut first = pages.into_iter().next().unwrap_or_default();
            if n > 1 {
                if let Some(at) = first.rfind("\n*continued in part") {
                    first.truncate(at);
                }
                let _ = writeln!(
                    first,
                    "\n**{} more page{}**: `plinth plan --format markdown --pages DIR` writes every page; the full plan is in {}.",
                    n - 1,
                    if n == 2 { "" } else { "s" },
                    md::code(full_plan)
                );
            }
            first
        }
        None => {
            let mut s = md_title(p, None);
            s.push_str(&md_summary(p, sides));
            let mut cluster: Option<&str> = None;
            for b in md_blocks(p, full_plan) {
                if let Some(c) = b.cluster
                    && cluster != Some(c)
                {
                    s.push_str(&cluster_heading(c));
                    cluster = Some(c);
                }
                s.push_str(&b.text);
            }
            s
        }
    }
}

fn commit_json(k: &crate::load::git::CommitInfo) -> Value {
    json!({
        "id": k.id, "short": k.short, "author": k.author, "email": k.email, "date": k.date, "summary": k.summary,
    })
}

fn approval_json(a: &super::Approved) -> Value {
    let mut v = json!({
        "via": a.via.as_str(),
        "reason": a.reason,
        "commits": a.commits.iter().map(commit_json).collect::<Vec<_>>(),
    });
    if let Some(who) = a.who() {
        v["approver"] = json!(who);
    }
    if let Some(f) = &a.file {
        v["source"] = json!({"file": f.as_ref(), "line": a.line});
    }
    v
}

/// The stable JSON document (`schemas/plan.schema.json`).
pub fn json(p: &Plan, sides: &Sides) -> String {
    let (cr, up, de, un, destr) = totals(p);
    let changes: Vec<Value> = p
        .changes
        .iter()
        .map(|c| {
            let o = &c.provenance.origin;
            let mut v = json!({
                "cluster": c.cluster,
                "apiVersion": c.key.api_version,
                "kind": c.key.kind,
                "name": c.key.name,
                "action": c.action.as_str(),
                "risk": c.risk.as_str(),
                "reasons": c.reasons,
                "source": { "file": o.file.as_ref(), "line": o.line, "kind": o.kind.as_str(), "name": o.name },
                "commits": c.provenance.commits.iter().map(commit_json).collect::<Vec<_>>(),
                "fields": c.fields.iter().map(|f| {
                    let mut x = json!({ "path": f.path });
                    if let Some(b) = &f.before { x["before"] = json!(b); }
                    if let Some(a) = &f.after { x["after"] = json!(a); }
                    x
                }).collect::<Vec<_>>(),
                "diff": c.diff,
            });
            if let Some(ns) = &c.key.namespace {
                v["namespace"] = json!(ns);
            }
            if let Some(a) = &c.approval {
                v["approval"] = approval_json(a);
            }
            v
        })
        .collect();
    let clusters: serde_json::Map<String, Value> = p
        .counts
        .iter()
        .map(|(k, c)| {
            (
                k.clone(),
                json!({"create": c.create, "update": c.update, "delete": c.delete, "unchanged": c.unchanged, "destructive": c.destructive}),
            )
        })
        .collect();
    let refusals: Vec<Value> = p
        .refusals
        .iter()
        .map(|r| {
            let mut v = json!({"cluster": r.cluster, "message": r.message, "hint": r.hint});
            if let Some(k) = &r.object {
                v["object"] = json!({"apiVersion": k.api_version, "kind": k.kind, "name": k.name});
                if let Some(ns) = &k.namespace {
                    v["object"]["namespace"] = json!(ns);
                }
            }
            if let Some(a) = r.action {
                v["action"] = json!(a.as_str());
            }
            v
        })
        .collect();
    let warnings: Vec<Value> = p
        .warnings
        .iter()
        .map(|w| json!({"file": w.file.as_ref(), "line": w.line, "message": w.message, "hint": w.hint}))
        .collect();
    let v = json!({
        "version": 2,
        "base": sides.base,
        "head": sides.head,
        "summary": {
            "create": cr, "update": up, "delete": de, "unchanged": un, "destructive": destr,
            "refused": p.is_refused(),
        },
        "clusters": clusters,
        "changes": changes,
        "refusals": refusals,
        "approvalYaml": p.approval_yaml(None),
        "warnings": warnings,
        "groups": p.groups(super::GROUP_MIN),
    });
    let mut v = v;
    if let Some(d) = &p.capacity {
        v["capacity"] = serde_json::to_value(d).unwrap_or(Value::Null);
    }
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::lower::{ObjectKey, Origin};
    use crate::plan::{Counts, FieldChange, Provenance};

    fn change(i: usize, diff_lines: usize) -> Change {
        let mut diff = String::from("--- base\n+++ head\n@@ -1,3 +1,3 @@\n");
        for l in 0..diff_lines {
            diff.push_str(&format!("-    plinth.dev/display-name: team {i} line {l}\n+    plinth.dev/display-name: Team {i} line {l}\n"));
        }
        Change {
            cluster: if i.is_multiple_of(2) {
                "prod-a"
            } else {
                "prod-b"
            }
            .to_owned(),
            key: ObjectKey {
                api_version: "v1".into(),
                kind: "Namespace".into(),
                namespace: None,
                name: format!("team-{i:05}"),
            },
            action: Action::Update,
            risk: Risk::Safe,
            reasons: Vec::new(),
            approval: None,
            diff,
            provenance: Provenance {
                origin: Origin {
                    file: format!("projects/team-{i:05}.yaml").into(),
                    line: 1,
                    kind: crate::model::Kind::Project,
                    name: format!("team-{i:05}").into(),
                },
                commits: Vec::new(),
            },
            fields: vec![FieldChange {
                path: "metadata.annotations[\"plinth.dev/display-name\"]".into(),
                leaf: "plinth.dev/display-name".into(),
                before: Some("old".into()),
                after: Some("new".into()),
            }],
        }
    }

    fn plan_of(changes: Vec<Change>) -> Plan {
        let mut p = Plan::default();
        for c in &changes {
            let e: &mut Counts = p.counts.entry(c.cluster.clone()).or_default();
            e.update += 1;
        }
        p.changes = changes;
        p.changes
            .sort_by(|a, b| (&a.cluster, a.action, &a.key).cmp(&(&b.cluster, b.action, &b.key)));
        p
    }

    fn sides() -> Sides {
        Sides {
            base: "main (1a2b3c4)".into(),
            head: "HEAD (5d6e7f8)".into(),
        }
    }

    /// Every page under the limit, `part i/N` on each, the summary on page 1 only, every
    /// object in exactly one page.
    fn check_pages(p: &Plan, pages: &[String]) {
        let n = pages.len();
        for (i, page) in pages.iter().enumerate() {
            assert!(
                page.chars().count() < 65_536,
                "page {}: {}",
                i + 1,
                page.len()
            );
            assert!(
                page.lines()
                    .next()
                    .unwrap()
                    .contains(&format!("part {}/{n}", i + 1)),
                "page {}",
                i + 1
            );
            assert_eq!(
                page.contains("| cluster | create |"),
                i == 0,
                "page {}",
                i + 1
            );
        }
        // The object each `<details>` is about, over all pages.
        let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
        for page in pages {
            for line in page.lines().filter(|l| l.starts_with("<details><summary>")) {
                let key = line
                    .split("</code> <code>")
                    .nth(1)
                    .and_then(|r| r.split("</code>").next())
                    .unwrap();
                *seen.entry(key.to_owned()).or_default() += 1;
            }
        }
        assert_eq!(seen.len(), p.changes.len());
        for c in &p.changes {
            let key = md::html_escape(&c.key.to_string());
            assert_eq!(seen.get(&key), Some(&1), "{key}");
        }
    }

    #[test]
    fn pages_at_400_and_5000_objects() {
        for n in [400, 5_000] {
            let p = plan_of((0..n).map(|i| change(i, 2)).collect());
            let pages = markdown_pages(&p, &sides(), COMMENT_LIMIT, "plan.json");
            assert!(pages.len() > 1, "{n}: one page");
            check_pages(&p, &pages);
            // Mass change grouped once, on the first page, above the details.
            let first = &pages[0];
            let g = first.find("objects in `prod-a`").expect("group line");
            assert!(g < first.find("<details>").unwrap_or(first.len()));
            assert!(first.contains(&format!("- **{}** `Namespace` objects in `prod-a`", n / 2)));
            // The capped single comment is page 1 and says how many pages follow.
            let one = markdown(&p, &sides(), Some(COMMENT_LIMIT), "plan.json");
            assert!(one.chars().count() < 65_536);
            assert!(
                one.contains(&format!("**{} more page", pages.len() - 1)),
                "{n}"
            );
            // Without a cap: everything, once.
            let all = markdown(&p, &sides(), None, "plan.json");
            assert_eq!(all.matches("<details>").count(), n);
        }
    }

    #[test]
    fn an_object_larger_than_a_page_is_trimmed_with_a_pointer() {
        let mut changes: Vec<Change> = (0..50).map(|i| change(i, 2)).collect();
        changes.push(change(7_777, 3_000)); // ~300 kB of diff
        let p = plan_of(changes);
        let pages = markdown_pages(&p, &sides(), COMMENT_LIMIT, "plan.json");
        check_pages(&p, &pages);
        let big = pages
            .iter()
            .find(|pg| pg.contains("team-07777"))
            .expect("on a page");
        assert!(big.contains("*diff trimmed: "), "no trim note");
        assert!(big.contains("in the full plan, `plan.json`"));
        // The trimmed diff is still a closed fence: the page parses into whole blocks.
        assert_eq!(
            big.matches("```diff").count(),
            big.matches("</details>").count()
        );
    }

    #[test]
    fn a_small_plan_is_one_page() {
        let p = plan_of((0..3).map(|i| change(i, 1)).collect());
        let pages = markdown_pages(&p, &sides(), COMMENT_LIMIT, "plan.json");
        assert_eq!(pages.len(), 1);
        check_pages(&p, &pages);
        assert!(
            !pages[0].contains("Mass changes"),
            "3 objects are no mass change"
        );
        assert_eq!(
            markdown(&p, &sides(), Some(COMMENT_LIMIT), "x"),
            markdown(&p, &sides(), None, "x")
        );
    }

    #[test]
    fn the_terminal_gets_no_escape_sequences_from_user_text_and_sees_groups() {
        let mut changes: Vec<Change> = (0..10).map(|i| change(i, 1)).collect();
        changes[0].fields[0].after = Some("\u{1b}[2J\u{1b}]0;owned\u{7}".into());
        changes[0].diff.push_str("+    x: \u{1b}[31mred\n");
        let p = plan_of(changes);
        let t = terminal(&p, &sides(), false);
        assert!(!t.contains('\u{1b}') && !t.contains('\u{7}'), "{t:?}");
        assert!(t.contains("  = 5 Namespace objects: metadata.annotations[\"plinth.dev/display-name\"] changed (old → new)"), "{t}");
    }

    #[test]
    fn the_capacity_section_keeps_names_out_of_markdown_and_mermaid_structure() {
        use crate::capacity::{Diff, Figure, Finding, PoolDiff, Severity, ShareDiff};
        let name = "x\"]\n%%{init: {'theme':'dark'}}%%\n`@team <b>";
        let f = |b: u32, a: u32| Figure {
            before: Some(b),
            after: Some(a),
        };
        let mut p = plan_of(vec![change(0, 1)]);
        p.capacity = Some(Diff {
            pools: vec![PoolDiff {
                cluster: "prod-a".into(),
                pool: "a100".into(),
                resource: "nvidia.com/gpu".into(),
                capacity: f(32, 32),
                allocated: f(28, 28),
                spare: f(4, 4),
                projects: vec![ShareDiff {
                    project: name.into(),
                    guaranteed: f(16, 14),
                    ..ShareDiff::default()
                }],
                guaranteed: [(name.to_owned(), f(16, 14))].into(),
            }],
            findings: vec![Finding {
                severity: Severity::Destructive,
                cluster: "prod-a".into(),
                pool: "a100".into(),
                project: Some(name.into()),
                rollouts: vec!["r".into()],
                apps: Vec::new(),
                message: format!("rollout `r` needs 4 GPUs but `{name}` is guaranteed 2"),
                object: Some("ClusterQueue/x.a100".into()),
            }],
        });
        let md = markdown(&p, &sides(), None, "plan.json");
        let chart = md
            .split("```mermaid\n")
            .nth(1)
            .and_then(|c| c.split("```").next())
            .unwrap();
        assert!(!chart.contains("%%") && !chart.contains('`'), "{chart}");
        assert!(
            chart.contains("x-axis [\"x______init_ __theme___dark________team …\", \"(spare)\"]"),
            "{chart}"
        );
        assert!(
            chart.contains("bar [14, 4]") && chart.contains("line [16, 4]"),
            "{chart}"
        );
        assert!(md.contains("| 16 → 14 |"), "{md}");
        // In the table the name is a code span; in the finding, escaped prose.
        assert!(
            md.contains("| ``x\"]↵%%{init: {'theme':'dark'}}%%↵`@team <b>`` | 16 → 14 |"),
            "{md}"
        );
        assert!(md.contains("@\u{2060}team &lt;b&gt;"), "{md}");
        assert!(md.contains("approve the change of `ClusterQueue/x.a100` in `prod-a`"));
        let t = terminal(&p, &sides(), false);
        assert!(t.contains("GPU capacity:\n  a100 in prod-a (nvidia.com/gpu): capacity 32, guaranteed 28, spare 4\n"), "{t}");
        assert!(t.contains("guaranteed 16 → 14"), "{t}");
        assert!(t.contains("  destructive: rollout `r` needs 4 GPUs"), "{t}");
    }

    #[test]
    fn groups_need_the_same_field_in_enough_objects() {
        let mut changes: Vec<Change> = (0..10).map(|i| change(i, 1)).collect();
        changes[0].fields[0].after = Some("different".into());
        let p = plan_of(changes);
        let g = p.groups(crate::plan::GROUP_MIN);
        assert_eq!(g.len(), 2, "{g:?}");
        let a = g.iter().find(|g| g.cluster == "prod-a").unwrap();
        assert_eq!((a.objects, a.same, a.after.as_deref()), (5, false, None));
        let b = g.iter().find(|g| g.cluster == "prod-b").unwrap();
        assert_eq!(
            (b.objects, b.same, b.after.as_deref()),
            (5, true, Some("new"))
        );
        assert!(p.groups(6).is_empty());
    }
}
