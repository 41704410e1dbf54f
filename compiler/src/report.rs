//! `plinth report`: the platform on one self-contained HTML page — per cluster, its GPU pools
//! (capacity against allocations, SVG bars), projects (quotas, GPU guarantees, people),
//! datasets and who consumes them, model rollouts and their traffic split; then what `check`
//! reported.
//!
//! Pure: specs, their [`Capacity`] and diagnostics in, a `String` out (the CLI writes it).
//! The page holds its CSS and SVG inline and loads nothing (no script, font or image from
//! anywhere), so it works offline and prints; every piece of user text goes through [`esc`].
//! No timestamp: the same repository gives the same bytes.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::capacity::{Capacity, Pool, WorkloadKind};
use crate::diag::{Diagnostic, Severity};
use crate::specs::Specs;

/// Text for HTML content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Colours of projects (by their order among all projects) and of traffic versions.
const PALETTE: [&str; 8] = [
    "#2563eb", "#059669", "#d97706", "#7c3aed", "#db2777", "#0891b2", "#65a30d", "#dc2626",
];

const CSS: &str = r#"
:root { --ink:#1f2937; --muted:#6b7280; --line:#e5e7eb; --bg:#f8fafc; --card:#ffffff; --accent:#1d4ed8; }
* { box-sizing: border-box; }
body { margin:0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; color:var(--ink); background:var(--bg); }
header { background:#0f172a; color:#f8fafc; padding:28px 40px 22px; }
header h1 { margin:0 0 4px; font-size:26px; font-weight:650; letter-spacing:-0.01em; }
header p { margin:0; color:#cbd5e1; }
header code { background:#334155; color:#f8fafc; }
main { padding:24px 40px 40px; max-width:1400px; }
.tiles { display:flex; flex-wrap:wrap; gap:12px; margin:18px 0 0; }
.tile { background:#1e293b; border-radius:10px; padding:10px 16px; min-width:120px; }
.tile b { display:block; font-size:24px; font-weight:700; color:#fff; }
.tile span { color:#94a3b8; font-size:12px; text-transform:uppercase; letter-spacing:.06em; }
section.cluster { margin:28px 0 36px; }
h2 { font-size:22px; margin:0 0 4px; }
h2 .meta { font-size:13px; font-weight:400; color:var(--muted); margin-left:10px; }
h3 { font-size:15px; text-transform:uppercase; letter-spacing:.06em; color:var(--muted); margin:22px 0 10px; }
.badge { display:inline-block; border-radius:999px; padding:1px 9px; font-size:12px; font-weight:600; background:#e0e7ff; color:#3730a3; margin-right:4px; }
.badge.prod { background:#fee2e2; color:#991b1b; }
.badge.ro { background:#dcfce7; color:#166534; }
.badge.rw { background:#fef3c7; color:#92400e; }
.badge.warn { background:#fef3c7; color:#92400e; }
.badge.err { background:#fee2e2; color:#991b1b; }
.cards { display:grid; grid-template-columns:1fr; gap:16px; }
.pool { display:grid; grid-template-columns:470px minmax(0, 1fr); gap:8px 28px; align-items:start; }
.card { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:16px 18px; break-inside:avoid; page-break-inside:avoid; }
.card h4 { margin:0; font-size:16px; }
.card .sub { color:var(--muted); font-size:12px; margin-bottom:10px; }
.figures { display:flex; gap:18px; margin:6px 0 10px; }
.figures div { font-size:12px; color:var(--muted); }
.figures b { display:block; font-size:20px; color:var(--ink); }
table { border-collapse:collapse; width:100%; background:var(--card); border:1px solid var(--line); border-radius:12px; overflow:hidden; }
th, td { text-align:left; padding:7px 10px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#f1f5f9; font-size:12px; text-transform:uppercase; letter-spacing:.04em; color:var(--muted); }
td.n, th.n { text-align:right; font-variant-numeric:tabular-nums; }
.card table { border:none; font-size:13px; }
.card th, .card td { padding:6px 6px; }
.card th { text-transform:none; font-size:12px; letter-spacing:0; }
td code { white-space:nowrap; }
.legend { display:flex; flex-wrap:wrap; gap:4px 14px; font-size:12px; color:var(--muted); margin-top:6px; }
.sw { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:5px; vertical-align:middle; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size:12.5px; background:#f1f5f9; padding:0 4px; border-radius:4px; }
.muted { color:var(--muted); }
ul.diags { list-style:none; padding:0; margin:0; }
ul.diags li { background:var(--card); border:1px solid var(--line); border-radius:10px; padding:8px 12px; margin-bottom:6px; }
footer { color:var(--muted); font-size:12px; padding:0 40px 30px; }
@media print {
  body { background:#fff; }
  header { background:#fff; color:var(--ink); border-bottom:2px solid var(--ink); }
  header p, .tile span { color:var(--muted); }
  .tile { background:#f1f5f9; } .tile b { color:var(--ink); }
  section.cluster { page-break-before:always; }
  section.cluster:first-of-type { page-break-before:auto; }
  .pool { grid-template-columns:440px minmax(0, 1fr); }
}
@page { size: A4 landscape; margin: 12mm; }
"#;

fn colour(projects: &BTreeMap<&str, usize>, project: &str) -> &'static str {
    PALETTE[projects.get(project).copied().unwrap_or(0) % PALETTE.len()]
}

/// A pool's capacity as one bar: each project's guarantee, then the spare; a red tick at the
/// capacity when allocations exceed it.
fn pool_bar(p: &Pool, colours: &BTreeMap<&str, usize>) -> String {
    let (w, h) = (460.0_f64, 26.0_f64);
    let total = f64::from(p.capacity.max(p.allocated).max(1));
    let scale = w / total;
    let mut s = format!(
        r#"<svg class="bar" width="{w}" height="{}" viewBox="0 0 {w} {}" role="img" aria-label="allocation of the pool's capacity">"#,
        h + 18.0,
        h + 18.0
    );
    let _ = write!(
        s,
        r##"<rect x="0" y="0" width="{:.1}" height="{h}" rx="5" fill="#e5e7eb"/>"##,
        f64::from(p.capacity) * scale
    );
    let mut x = 0.0;
    for (name, share) in p.projects.iter().filter(|(_, s)| s.guaranteed > 0) {
        let sw = f64::from(share.guaranteed) * scale;
        let _ = write!(
            s,
            r##"<rect x="{x:.1}" y="0" width="{sw:.1}" height="{h}" fill="{}" stroke="#fff" stroke-width="1"><title>{}: {} guaranteed</title></rect>"##,
            colour(colours, name),
            esc(name),
            share.guaranteed
        );
        if sw > 26.0 {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="17" font-size="12" fill="#fff" text-anchor="middle">{}</text>"##,
                x + sw / 2.0,
                share.guaranteed
            );
        }
        x += sw;
    }
    if p.spare > 0 {
        let _ = write!(
            s,
            r##"<text x="{:.1}" y="17" font-size="12" fill="#374151" text-anchor="middle">{} spare</text>"##,
            x + f64::from(p.spare) * scale / 2.0,
            p.spare
        );
    }
    if p.allocated > p.capacity {
        let cx = f64::from(p.capacity) * scale;
        let _ = write!(
            s,
            r##"<line x1="{cx:.1}" y1="-2" x2="{cx:.1}" y2="{}" stroke="#dc2626" stroke-width="2"/>"##,
            h + 2.0
        );
    }
    let _ = write!(
        s,
        r##"<text x="0" y="{}" font-size="11" fill="#6b7280">0</text><text x="{:.1}" y="{}" font-size="11" fill="#6b7280" text-anchor="end">{} of {}</text></svg>"##,
        h + 14.0,
        f64::from(p.capacity) * scale,
        h + 14.0,
        p.allocated,
        p.capacity
    );
    s
}

/// One project's share: guaranteed (solid), reachable by borrowing (pale), standing demand (a
/// dark tick).
fn share_bar(g: u32, max: u32, demand: u32, top: u32, fill: &str) -> String {
    let w = 130.0_f64;
    let scale = w / f64::from(top.max(1));
    let mut s = format!(
        r#"<svg width="{}" height="16" viewBox="0 0 {} 16" role="img" aria-label="guaranteed {g}, reachable {max}, demand {demand}">"#,
        w + 4.0,
        w + 4.0
    );
    let _ = write!(
        s,
        r#"<rect x="0" y="3" width="{:.1}" height="10" rx="2" fill="{fill}" fill-opacity="0.25"/><rect x="0" y="3" width="{:.1}" height="10" rx="2" fill="{fill}"/>"#,
        f64::from(max) * scale,
        f64::from(g) * scale
    );
    if demand > 0 {
        let dx = (f64::from(demand) * scale).min(w + 2.0);
        let _ = write!(
            s,
            r##"<line x1="{dx:.1}" y1="0" x2="{dx:.1}" y2="16" stroke="#111827" stroke-width="2.5"/>"##
        );
    }
    s.push_str("</svg>");
    s
}

/// A rollout's traffic split as one bar.
fn traffic_bar(versions: &[(String, u32)]) -> String {
    let w = 220.0_f64;
    let mut s = format!(
        r#"<svg width="{w}" height="18" viewBox="0 0 {w} 18" role="img" aria-label="traffic split">"#
    );
    let mut x = 0.0;
    for (i, (name, weight)) in versions.iter().enumerate() {
        let vw = w * f64::from(*weight) / 100.0;
        if vw > 0.0 {
            let _ = write!(
                s,
                r#"<rect x="{x:.1}" y="1" width="{vw:.1}" height="16" fill="{}"><title>{}: {weight}%</title></rect>"#,
                PALETTE[(i + 5) % PALETTE.len()],
                esc(name)
            );
            if vw > 60.0 {
                let _ = write!(
                    s,
                    r##"<text x="{:.1}" y="13" font-size="11" fill="#fff" text-anchor="middle">{} {weight}%</text>"##,
                    x + vw / 2.0,
                    esc(name)
                );
            }
        }
        x += vw;
    }
    s.push_str("</svg>");
    s
}

fn join_code(items: &[String]) -> String {
    if items.is_empty() {
        return r#"<span class="muted">—</span>"#.to_owned();
    }
    items
        .iter()
        .map(|i| format!("<code>{}</code>", esc(i)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The report page.
pub fn html(specs: &Specs, capacity: &Capacity, diagnostics: &[Diagnostic]) -> String {
    let colours: BTreeMap<&str, usize> = specs
        .projects
        .keys()
        .enumerate()
        .map(|(i, p)| (p.as_str(), i))
        .collect();
    let platform = specs.platform.as_ref();
    let title = platform
        .map(|p| {
            p.spec
                .display_name
                .clone()
                .unwrap_or_else(|| p.name().to_owned())
        })
        .unwrap_or_else(|| "plinth platform".to_owned());
    let mut s = String::new();
    let _ = write!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">\n<title>{} — platform report</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(&title)
    );
    header(&mut s, specs, capacity, diagnostics, &title);
    let clusters = platform.map(|p| p.spec.clusters.as_slice()).unwrap_or(&[]);
    for cluster in clusters {
        let cx = ClusterCx {
            specs,
            capacity,
            cluster,
            colours: &colours,
        };
        cluster_head(&mut s, &cx);
        pools_section(&mut s, &cx);
        projects_section(&mut s, &cx);
        datasets_section(&mut s, &cx);
        rollouts_section(&mut s, &cx);
        s.push_str("</section>\n");
    }
    check_section(&mut s, diagnostics);
    s
}

/// What one cluster's sections read.
#[derive(Clone, Copy)]
struct ClusterCx<'a> {
    specs: &'a Specs,
    capacity: &'a Capacity,
    cluster: &'a crate::model::platform::Cluster,
    colours: &'a BTreeMap<&'a str, usize>,
}

impl ClusterCx<'_> {
    /// Whether a project lives on this cluster.
    fn hosts(&self, project: &str) -> bool {
        self.specs.projects.get(project).is_some_and(|p| {
            crate::lower::Ctx::placement(self.specs, &p.spec).contains(&self.cluster.name.as_str())
        })
    }
}

/// The page's header: title and the platform's totals.
fn header(
    s: &mut String,
    specs: &Specs,
    capacity: &Capacity,
    diagnostics: &[Diagnostic],
    title: &str,
) {
    let platform = specs.platform.as_ref();
    let (mut gpus, mut guaranteed) = (0u64, 0u64);
    for pools in capacity.clusters.values() {
        for p in pools.values() {
            gpus += u64::from(p.capacity);
            guaranteed += u64::from(p.allocated);
        }
    }
    let warnings = diagnostics
        .iter()
        .filter(|d| d.severity != Severity::Note)
        .count();
    let _ = write!(
        s,
        "<header>\n<h1>{}</h1>\n<p>Platform report{} — {} clusters, generated by plinth {} from the platform repository.</p>\n<div class=\"tiles\">",
        esc(title),
        platform.map_or_else(String::new, |p| format!(
            " of <code>{}</code>",
            esc(p.name())
        )),
        capacity.clusters.len(),
        env!("CARGO_PKG_VERSION")
    );
    for (n, label) in [
        (specs.projects.len() as u64, "projects"),
        (gpus, "GPUs"),
        (guaranteed, "GPUs guaranteed"),
        (specs.datasets.len() as u64, "datasets"),
        (specs.rollouts.len() as u64, "model rollouts"),
        (specs.apps.len() as u64, "apps"),
        (warnings as u64, "check findings"),
    ] {
        let _ = write!(
            s,
            "<div class=\"tile\"><b>{n}</b><span>{label}</span></div>"
        );
    }
    s.push_str("</div>\n</header>\n<main>\n");
}

/// A cluster's heading.
fn cluster_head(s: &mut String, cx: &ClusterCx<'_>) {
    let ClusterCx { cluster, .. } = *cx;
    let _ = write!(
        s,
        "<section class=\"cluster\" id=\"cluster-{}\">\n<h2>Cluster <code>{}</code><span class=\"meta\">{}{} · Kubernetes {}</span> {}</h2>\n",
        esc(&cluster.name),
        esc(&cluster.name),
        esc(&format!("{:?}", cluster.provider).to_lowercase()),
        cluster
            .region
            .as_ref()
            .map_or_else(String::new, |r| format!(" {}", esc(r))),
        esc(&cluster.kubernetes_version),
        if cluster.production {
            "<span class=\"badge prod\">production</span>"
        } else {
            ""
        }
    );
}

/// GPU pools: capacity against allocations, and each project's figures.
fn pools_section(s: &mut String, cx: &ClusterCx<'_>) {
    let ClusterCx {
        capacity,
        cluster,
        colours,
        ..
    } = *cx;
    let pools = capacity.clusters.get(&cluster.name);
    if let Some(pools) = pools.filter(|p| !p.is_empty()) {
        s.push_str("<h3>GPU pools</h3>\n<div class=\"cards\">\n");
        for (name, p) in pools {
            let _ = write!(
                s,
                "<div class=\"card pool\" data-pool=\"{}\">\n<div class=\"left\"><h4>{} <code>{}</code></h4>\n<div class=\"sub\">{}{}{}</div>\n",
                esc(name),
                esc(p.display_name.as_deref().unwrap_or(name)),
                esc(name),
                esc(&p.resource),
                p.model
                    .as_ref()
                    .map_or_else(String::new, |m| format!(" · {}", esc(m))),
                p.cohort.as_ref().map_or_else(String::new, |c| format!(
                    " · cohort <code>{}</code>",
                    esc(c)
                ))
            );
            let demand: u32 = p.projects.values().map(|x| x.demand).sum();
            let _ = writeln!(
                s,
                "<div class=\"figures\"><div><b class=\"capacity\">{}</b>capacity</div><div><b class=\"allocated\">{}</b>guaranteed</div><div><b>{}</b>spare</div><div><b>{}</b>standing demand</div></div>",
                p.capacity, p.allocated, p.spare, demand
            );
            if p.allocated > p.capacity {
                let _ = write!(
                    s,
                    "<p><span class=\"badge err\">overcommitted</span> {} GPUs guaranteed of {}</p>",
                    p.allocated, p.capacity
                );
            }
            s.push_str(&pool_bar(p, colours));
            s.push_str("<div class=\"legend\">");
            for (project, share) in p.projects.iter().filter(|(_, x)| x.guaranteed > 0) {
                let _ = write!(
                    s,
                    "<span><i class=\"sw\" style=\"background:{}\"></i>{} {}</span>",
                    colour(colours, project),
                    esc(project),
                    share.guaranteed
                );
            }
            s.push_str("<span><i class=\"sw\" style=\"background:#e5e7eb\"></i>spare</span></div>\n</div>\n<div class=\"right\">");
            s.push_str("<table>\n<tr><th>project</th><th class=\"n\">guaranteed</th><th class=\"n\">lendable</th><th class=\"n\">max</th><th class=\"n\">per user</th><th class=\"n\">demand</th><th></th></tr>\n");
            let top = p
                .projects
                .values()
                .map(|x| x.max.max(x.demand))
                .max()
                .unwrap_or(1);
            for (project, share) in &p.projects {
                let workloads: Vec<String> = share
                    .workloads
                    .iter()
                    .map(|w| format!("{} {} ({})", w.kind.noun(), w.name, w.gpus))
                    .collect();
                let _ = writeln!(
                    s,
                    "<tr><td><code>{}</code>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\" title=\"{}\">{}</td><td>{}</td></tr>",
                    esc(project),
                    if share.demand > share.guaranteed {
                        " <span class=\"badge warn\">borrows</span>"
                    } else {
                        ""
                    },
                    share.guaranteed,
                    share.lendable,
                    share.max,
                    share
                        .per_user
                        .map_or_else(|| "—".to_owned(), |u| u.to_string()),
                    esc(&workloads.join(", ")),
                    share.demand,
                    share_bar(
                        share.guaranteed,
                        share.max,
                        share.demand,
                        top,
                        colour(colours, project)
                    )
                );
            }
            s.push_str("</table>\n<div class=\"legend\"><span>solid: guaranteed</span><span>pale / max: reachable by borrowing</span><span>tick: standing demand (rollouts, apps)</span></div>\n</div>\n</div>\n");
        }
        s.push_str("</div>\n");
    }
}

/// Projects on the cluster: quotas, GPU guarantees, people.
fn projects_section(s: &mut String, cx: &ClusterCx<'_>) {
    let ClusterCx { specs, colours, .. } = *cx;
    let pools = cx.capacity.clusters.get(&cx.cluster.name);
    let hosts = |project: &str| cx.hosts(project);
    let projects: Vec<_> = specs
        .projects
        .values()
        .filter(|p| hosts(p.name()))
        .collect();
    if !projects.is_empty() {
        s.push_str("<h3>Projects</h3>\n<table class=\"projects\">\n<tr><th>project</th><th>quota</th><th>GPU guarantees</th><th>owners</th><th>members</th></tr>\n");
        for p in projects {
            let q = p.spec.quota.as_ref();
            let mut quota = Vec::new();
            if let Some(q) = q {
                if let Some(c) = &q.cpu {
                    quota.push(format!("{} CPU", c.as_str()));
                }
                if let Some(m) = &q.memory {
                    quota.push(format!("{} memory", m.as_str()));
                }
                if let Some(st) = &q.storage {
                    quota.push(format!("{} storage", st.as_str()));
                }
                if let Some(n) = q.pods {
                    quota.push(format!("{n} pods"));
                }
            }
            let gpus: Vec<String> = pools
                .into_iter()
                .flatten()
                .filter_map(|(pool, x)| {
                    x.projects
                        .get(p.name())
                        .filter(|sh| sh.allocated)
                        .map(|sh| format!("{pool}: {} (max {})", sh.guaranteed, sh.max))
                })
                .collect();
            let members: Vec<String> = p
                .spec
                .members
                .iter()
                .map(|m| {
                    let who = m
                        .user
                        .clone()
                        .or_else(|| m.group.as_ref().map(|g| format!("group {g}")))
                        .unwrap_or_default();
                    format!("{who} ({})", m.role.as_str())
                })
                .collect();
            let _ = writeln!(
                s,
                "<tr><td><i class=\"sw\" style=\"background:{}\"></i><code>{}</code><br><span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                colour(colours, p.name()),
                esc(p.name()),
                esc(p.spec.display_name.as_deref().unwrap_or("")),
                if quota.is_empty() {
                    "<span class=\"muted\">none</span>".to_owned()
                } else {
                    esc(&quota.join(" · "))
                },
                join_code(&gpus),
                join_code(&p.spec.owners),
                join_code(&members)
            );
        }
        s.push_str("</table>\n");
    }
}

/// Datasets and their consumers on the cluster.
fn datasets_section(s: &mut String, cx: &ClusterCx<'_>) {
    let ClusterCx { specs, cluster, .. } = *cx;
    let hosts = |project: &str| cx.hosts(project);
    let mut rows = String::new();
    for (name, d) in &specs.datasets {
        let mut consumers: Vec<String> = d
            .spec
            .access
            .iter()
            .filter(|a| hosts(&a.project))
            .filter(|a| a.clusters.is_empty() || a.clusters.contains(&cluster.name))
            .map(|a| {
                let (class, mode) = match a.mode {
                    crate::model::dataset::AccessMode::ReadOnly => ("ro", "read-only"),
                    crate::model::dataset::AccessMode::ReadWrite => ("rw", "read-write"),
                };
                format!(
                    "<code>{}</code> <span class=\"badge {class}\">{mode}</span>",
                    esc(&a.project)
                )
            })
            .collect();
        if d.spec.global {
            consumers.push("every project <span class=\"badge ro\">read-only</span>".to_owned());
        }
        if consumers.is_empty() {
            continue;
        }
        let source = serde_json::to_value(&d.spec.source)
            .ok()
            .and_then(|v| v.as_object().and_then(|o| o.keys().next().cloned()))
            .unwrap_or_default();
        let _ = writeln!(
            rows,
            "<tr><td><code>{}</code><br><span class=\"muted\">{}</span></td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(name),
            esc(d.spec.display_name.as_deref().unwrap_or("")),
            esc(&source),
            esc(d.spec.sensitivity.as_str()),
            consumers.join("<br>")
        );
    }
    if !rows.is_empty() {
        let _ = write!(
            s,
            "<h3>Datasets</h3>\n<table class=\"datasets\">\n<tr><th>dataset</th><th>source</th><th>sensitivity</th><th>consumers</th></tr>\n{rows}</table>\n"
        );
    }
}

/// Model rollouts on the cluster, with their traffic split.
fn rollouts_section(s: &mut String, cx: &ClusterCx<'_>) {
    let ClusterCx { specs, .. } = *cx;
    let pools = cx.capacity.clusters.get(&cx.cluster.name);
    let hosts = |project: &str| cx.hosts(project);
    let mut rows = String::new();
    for (name, r) in &specs.rollouts {
        if !hosts(&r.spec.project) {
            continue;
        }
        let versions: Vec<(String, u32)> = match &r.spec.traffic {
            Some(t) => t
                .versions
                .iter()
                .map(|v| (v.name.clone(), v.weight))
                .collect(),
            None => vec![(
                r.spec
                    .model
                    .version
                    .clone()
                    .unwrap_or_else(|| "current".to_owned()),
                100,
            )],
        };
        let split: Vec<String> = versions.iter().map(|(v, w)| format!("{v} {w}%")).collect();
        let gpu = pools.into_iter().flatten().find_map(|(pool, p)| {
            p.projects.get(&r.spec.project).and_then(|sh| {
                sh.workloads
                    .iter()
                    .find(|w| w.kind == WorkloadKind::ModelRollout && &w.name == name)
                    .map(|w| format!("{} × {pool}", w.gpus))
            })
        });
        let _ = writeln!(
            rows,
            "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td>{}<br><span class=\"muted\">{}</span></td><td>{}</td></tr>",
            esc(name),
            esc(&r.spec.project),
            esc(&format!("{:?}", r.spec.runtime).to_lowercase()),
            esc(r
                .spec
                .traffic
                .as_ref()
                .map_or("single", |t| t.strategy.as_str())),
            r.spec.max_replicas(),
            traffic_bar(&versions),
            esc(&split.join(" · ")),
            gpu.map_or_else(
                || "<span class=\"muted\">CPU</span>".to_owned(),
                |g| esc(&g)
            )
        );
    }
    if !rows.is_empty() {
        let _ = write!(
            s,
            "<h3>Model rollouts</h3>\n<table class=\"rollouts\">\n<tr><th>rollout</th><th>project</th><th>runtime</th><th>strategy</th><th class=\"n\">replicas</th><th>traffic</th><th>GPUs</th></tr>\n{rows}</table>\n"
        );
    }
}

/// What `check` reported.
fn check_section(s: &mut String, diagnostics: &[Diagnostic]) {
    s.push_str("<section class=\"checks\">\n<h2>Check</h2>\n");
    let shown: Vec<&Diagnostic> = diagnostics
        .iter()
        .filter(|d| d.severity != Severity::Note)
        .collect();
    if shown.is_empty() {
        s.push_str("<p>No errors or warnings.</p>\n");
    } else {
        s.push_str("<ul class=\"diags\">\n");
        for d in shown {
            let at = d.primary.as_ref().map_or_else(String::new, |l| {
                format!(" <code>{}:{}</code>", esc(&l.span.file), l.span.start.line)
            });
            let _ = writeln!(
                s,
                "<li><span class=\"badge {}\">{} {}</span>{at} {}{}</li>",
                if d.severity == Severity::Error {
                    "err"
                } else {
                    "warn"
                },
                esc(d.severity.as_str()),
                esc(d.code.id()),
                esc(&d.message),
                d.hint.as_ref().map_or_else(String::new, |h| format!(
                    "<br><span class=\"muted\">hint: {}</span>",
                    esc(h)
                ))
            );
        }
        s.push_str("</ul>\n");
    }
    s.push_str("</section>\n</main>\n<footer>Figures per cluster: a project's GPU allocation applies in every cluster it lives on. Guaranteed is the Kueue nominal quota; max is what it can reach by borrowing within its cohort's limits; demand is what its model rollouts (GPUs × replicas × versions) and apps declare.</footer>\n</body>\n</html>\n");
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn user_text_cannot_become_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        let bar = traffic_bar(&[("<img src=x>".to_owned(), 100)]);
        assert!(!bar.contains("<img"), "{bar}");
    }
}
