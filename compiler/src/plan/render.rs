//! Plan renderers: terminal, Markdown for a pull-request comment, and JSON
//! (`schemas/plan.schema.json`). Each returns a `String`; the CLI prints it.

use std::fmt::Write;

use serde_json::{Value, json};

use super::{Action, Change, Plan, Risk};

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
    let mut out = String::new();
    let (cr, up, de, un, _) = totals(p);
    let _ = writeln!(out, "plinth plan {} → {}", sides.base, sides.head);
    if !p.has_changes() {
        let _ = writeln!(out, "no changes ({un} objects unchanged)");
    }
    for (cluster, counts) in &p.counts {
        let _ = writeln!(
            out,
            "\ncluster {cluster}: {} to create, {} to change, {} to delete, {} unchanged{}",
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
        for c in p.changes.iter().filter(|c| &c.cluster == cluster) {
            let sym = symbol(c.action);
            let line = format!("  {sym} {}", c.key);
            let line = match c.action {
                Action::Create => paint("32", &line),
                Action::Update => paint("33", &line),
                Action::Delete => paint("31", &line),
            };
            let _ = write!(out, "{line}");
            if c.action == Action::Update {
                let _ = write!(out, "  {}", field_summary(c, 4));
            }
            let _ = writeln!(out);
            if c.risk != Risk::Safe {
                let tag = format!("{}: {}", c.risk.as_str(), c.reasons.join("; "));
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
                        paint("32", &format!("✅ {}", a.describe()))
                    );
                }
            }
            let _ = writeln!(out, "      from {}", provenance(c));
            if c.action == Action::Update {
                for l in c.diff.lines().skip(2) {
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
    let _ = writeln!(
        out,
        "\nplan: {cr} to create, {up} to change, {de} to delete"
    );
    for w in &p.warnings {
        let _ = writeln!(
            out,
            "{} {}:{}: {}\n  hint: {}",
            paint("1;33", "warning:"),
            w.file,
            w.line,
            w.message,
            w.hint
        );
    }
    for r in &p.refusals {
        let _ = writeln!(out, "{} {}", paint("1;31", "refused:"), r.message);
        let _ = writeln!(out, "  hint: {}", r.hint.replace('\n', "\n  "));
    }
    out
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn md_change(c: &Change) -> String {
    let mut s = String::new();
    let risk = match (c.risk, &c.approval) {
        (Risk::Safe, _) => String::new(),
        (Risk::Disruptive, _) => " ⚠️ disruptive".to_owned(),
        (Risk::Destructive, None) => " 🛑 **destructive, not approved**".to_owned(),
        (Risk::Destructive, Some(_)) => " ✅ destructive, approved".to_owned(),
    };
    let fields = if c.action == Action::Update {
        format!(" — {}", md_escape(&field_summary(c, 3)))
    } else {
        String::new()
    };
    let _ = writeln!(
        s,
        "<details><summary><code>{}</code> {}{}{} <sub>({})</sub></summary>\n",
        symbol(c.action),
        md_escape(&c.key.to_string()),
        fields,
        risk,
        md_escape(&provenance(c))
    );
    if !c.reasons.is_empty() {
        let _ = writeln!(
            s,
            "{}: {}\n",
            c.risk.as_str(),
            md_escape(&c.reasons.join("; "))
        );
    }
    if let Some(a) = &c.approval {
        let _ = writeln!(s, "✅ {}\n", md_escape(&a.describe()));
    }
    let fence = if c.diff.contains("```") {
        "````"
    } else {
        "```"
    };
    let _ = writeln!(s, "{fence}diff\n{}{fence}\n</details>\n", c.diff);
    s
}

/// Markdown for a pull-request comment: summary table first, details collapsed; capped below
/// GitHub's limit with a "truncated" line naming `full_plan` (where the whole plan is written).
pub fn markdown(p: &Plan, sides: &Sides, cap: Option<usize>, full_plan: &str) -> String {
    let mut head = String::new();
    let (cr, up, de, un, destr) = totals(p);
    let _ = writeln!(
        head,
        "### plinth plan: {cr} to create, {up} to change, {de} to delete\n"
    );
    let _ = writeln!(
        head,
        "`{}` → `{}`\n",
        md_escape(&sides.base),
        md_escape(&sides.head)
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
                md_escape(cluster),
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
    for r in &p.refusals {
        let _ = writeln!(head, "> 🛑 **refused**: {}", md_escape(&r.message));
        if r.object.is_none() {
            let _ = writeln!(head, "> hint: {}", md_escape(&r.hint));
        }
        let _ = writeln!(head);
    }
    let yaml = p.approval_yaml(None);
    if !yaml.is_empty() {
        let file = p.platform_file.as_deref().map_or_else(
            || "the Platform".to_owned(),
            |f| format!("`{}`", md_escape(f)),
        );
        let _ = writeln!(
            head,
            "To approve, add under `spec:` of {file} **in this pull request** (an approval counts once; remove it in a later change):\n\n```yaml\n{yaml}```\n"
        );
    }
    let approved: Vec<&Change> = p.changes.iter().filter(|c| c.approval.is_some()).collect();
    if !approved.is_empty() {
        let _ = writeln!(head, "Approved destructive changes:\n");
        for c in approved {
            if let Some(a) = &c.approval {
                let _ = writeln!(
                    head,
                    "- ✅ `{}` {} in `{}`: {}",
                    c.action.as_str(),
                    md_escape(&c.key.to_string()),
                    md_escape(&c.cluster),
                    md_escape(&a.describe())
                );
            }
        }
        let _ = writeln!(head);
    }
    for w in &p.warnings {
        let _ = writeln!(
            head,
            "> ⚠️ **warning** ({}:{}): {} — {}\n",
            md_escape(&w.file),
            w.line,
            md_escape(&w.message),
            md_escape(&w.hint)
        );
    }
    let mut body = String::new();
    let total = p.changes.len();
    let mut current = String::new();
    for (i, c) in p.changes.iter().enumerate() {
        let mut piece = String::new();
        if current != c.cluster {
            let _ = writeln!(piece, "#### {}\n", md_escape(&c.cluster));
        }
        piece.push_str(&md_change(c));
        let footer_room = 300;
        if let Some(limit) = cap
            && head.len() + body.len() + piece.len() + footer_room > limit
        {
            let _ = writeln!(
                body,
                "\n**truncated, {} more change{}** — the full plan is in `{}`.",
                total - i,
                if total - i == 1 { "" } else { "s" },
                md_escape(full_plan)
            );
            break;
        }
        current = c.cluster.clone();
        body.push_str(&piece);
    }
    head + &body
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
    });
    let mut s = serde_json::to_string_pretty(&v).unwrap_or_default();
    s.push('\n');
    s
}
