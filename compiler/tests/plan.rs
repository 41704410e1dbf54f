//! `plinth plan` and `plinth log` against real git repositories made with the `git` CLI.
//!
//! Golden cases live in `tests/golden/plan/<case>/`: `base/` and `head/` are the platform at
//! two commits (written under the directory named by an optional `path` file), `expected.md`
//! the Markdown plan (first line `exit: N`) and `expected.json` the JSON plan; with a `from`
//! file naming a workspace directory (`examples/repo`), `base/` and `head/` hold only the
//! files that differ from it. Commits are
//! made with fixed authors and dates, so commit ids are stable. `PLINTH_UPDATE_GOLDEN=1`
//! rewrites the expected files.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A git repository in a temporary directory, committing with fixed dates.
struct Repo {
    dir: tempfile::TempDir,
    clock: u64,
}

impl Repo {
    fn new() -> Repo {
        let r = Repo {
            dir: tempfile::tempdir().expect("tmp"),
            clock: 1_764_000_000,
        };
        r.git(&["init", "-q", "-b", "main"]);
        r.git(&["config", "user.name", "Base Author"]);
        r.git(&["config", "user.email", "base@example.org"]);
        r.git(&["config", "commit.gpgsign", "false"]);
        r
    }
    fn path(&self) -> &Path {
        self.dir.path()
    }
    fn git(&self, args: &[&str]) -> String {
        let date = format!("{} +0000", self.clock);
        let dates = [
            ("GIT_AUTHOR_DATE", &date[..]),
            ("GIT_COMMITTER_DATE", &date[..]),
        ];
        common::git_with(self.path(), args, &dates)
    }
    /// Commit everything as `author`, a day after the previous commit.
    fn commit(&mut self, author: &str, message: &str) -> String {
        self.clock += 86_400;
        self.git(&["add", "-A"]);
        let local: String = author
            .to_lowercase()
            .replace(' ', ".")
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '.')
            .collect();
        let who = format!("{author} <{local}@example.org>");
        self.git(&[
            "commit",
            "-q",
            "--allow-empty",
            "-m",
            message,
            "--author",
            &who,
        ]);
        self.git(&["rev-parse", "HEAD"])
    }
    /// Make `dir` (inside the repository) hold exactly the files of `from`.
    fn replace(&self, dir: &str, from: &Path) {
        let target = self.path().join(dir);
        if target.exists() {
            fs::remove_dir_all(&target).expect("clear");
        }
        copy(from, &target);
    }
    fn plinth(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_plinth"))
            .args(args)
            .current_dir(self.path())
            .env("NO_COLOR", "1")
            .env("PLINTH_FINGERPRINT_KEY", "plan-tests")
            .output()
            .expect("plinth runs")
    }
}

fn copy(from: &Path, to: &Path) {
    fs::create_dir_all(to).expect("mkdir");
    for e in fs::read_dir(from).expect("read_dir") {
        let e = e.expect("entry");
        let dst = to.join(e.file_name());
        if e.file_type().expect("type").is_dir() {
            copy(&e.path(), &dst);
        } else {
            fs::copy(e.path(), dst).expect("copy");
        }
    }
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json_of(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}{}", text(o), String::from_utf8_lossy(&o.stderr)))
}

/// The JSON plan must follow `schemas/plan.schema.json`.
fn check_schema(v: &serde_json::Value) {
    let schema: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(root().join("schemas/plan.schema.json")).expect("schema"),
    )
    .expect("json");
    let validator = jsonschema::draft202012::new(&schema).expect("compiles");
    let errors: Vec<String> = validator
        .iter_errors(v)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "plan JSON does not follow its schema: {errors:#?}"
    );
}

#[test]
fn golden_plans() {
    let update = std::env::var_os("PLINTH_UPDATE_GOLDEN").is_some();
    let dir = root().join("tests/golden/plan");
    let mut cases: Vec<PathBuf> = fs::read_dir(&dir)
        .expect("tests/golden/plan")
        .map(|e| e.expect("e").path())
        .filter(|p| p.join("head").is_dir())
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "expected golden plan cases");
    let mut failures = Vec::new();
    for case in cases {
        let name = case
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        let path = fs::read_to_string(case.join("path"))
            .map(|p| p.trim().to_owned())
            .unwrap_or_default();
        // A case with a `from` file starts from that directory of the workspace (the example
        // platform): `base/` and `head/` hold only the files that differ from it.
        let staged = tempfile::tempdir().expect("tmp");
        let (base_dir, head_dir) =
            match fs::read_to_string(case.join("from")).map(|f| root().join(f.trim())) {
                Ok(from) => {
                    let (b, h) = (staged.path().join("base"), staged.path().join("head"));
                    copy(&from, &b);
                    if case.join("base").is_dir() {
                        copy(&case.join("base"), &b);
                    }
                    copy(&from, &h);
                    copy(&case.join("head"), &h);
                    (b, h)
                }
                Err(_) => (case.join("base"), case.join("head")),
            };
        let mut repo = Repo::new();
        fs::write(
            repo.path().join("README.md"),
            "a repository holding a platform\n",
        )
        .expect("write");
        if base_dir.is_dir() {
            repo.replace(
                if path.is_empty() {
                    "platform-tmp"
                } else {
                    &path
                },
                &base_dir,
            );
            if path.is_empty() {
                // The platform is the repository root: move the files up.
                for e in fs::read_dir(repo.path().join("platform-tmp")).expect("dir") {
                    let e = e.expect("e");
                    fs::rename(e.path(), repo.path().join(e.file_name())).expect("mv");
                }
                fs::remove_dir(repo.path().join("platform-tmp")).expect("rm");
            }
        }
        repo.commit("Base Author", "base platform");
        // Head: replace the platform files.
        let platform_dir = if path.is_empty() {
            repo.path().to_path_buf()
        } else {
            repo.path().join(&path)
        };
        if path.is_empty() {
            for e in fs::read_dir(&platform_dir).expect("dir") {
                let e = e.expect("e");
                let n = e.file_name();
                if n != ".git" && n != "README.md" {
                    if e.file_type().expect("t").is_dir() {
                        fs::remove_dir_all(e.path()).expect("rm");
                    } else {
                        fs::remove_file(e.path()).expect("rm");
                    }
                }
            }
            copy(&head_dir, &platform_dir);
        } else {
            repo.replace(&path, &head_dir);
        }
        let author = fs::read_to_string(case.join("author")).unwrap_or_default();
        let author = author.trim();
        repo.commit(
            if author.is_empty() {
                "Head Author"
            } else {
                author
            },
            &format!("change: {name}"),
        );
        let mut args = vec![
            "plan",
            "--base",
            "HEAD~1",
            "--head",
            "HEAD",
            "--no-default-policies",
        ];
        if !path.is_empty() {
            args.extend(["--path", path.as_str()]);
        }
        let extra = fs::read_to_string(case.join("args")).unwrap_or_default();
        args.extend(extra.split_whitespace());
        let md = repo.plinth(&[&args[..], &["--format", "markdown"]].concat());
        let js = repo.plinth(&[&args[..], &["--format", "json"]].concat());
        assert_eq!(
            md.status.code(),
            js.status.code(),
            "{name}: exit code depends on the format"
        );
        let md_text = format!(
            "exit: {}\n{}{}",
            md.status.code().unwrap_or(-1),
            text(&md),
            String::from_utf8_lossy(&md.stderr)
        );
        if js.status.code() != Some(1) || !js.stdout.is_empty() {
            check_schema(&json_of(&js));
        }
        assert_safe_markdown(&text(&md), &name);
        for (file, actual) in [("expected.md", md_text), ("expected.json", text(&js))] {
            let p = case.join(file);
            if update {
                fs::write(&p, &actual).expect("write");
            } else if fs::read_to_string(&p).unwrap_or_default() != actual {
                failures.push(format!("{name}/{file} differs:\n{actual}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// A plan comment parsed as GitHub would (CommonMark and its table, strikethrough and task
/// list extensions): user text never becomes a heading, a link, an image, an HTML element or
/// a mention outside code, and never a bare URL GitHub would link.
fn assert_safe_markdown(md: &str, what: &str) {
    use pulldown_cmark::{Event, Options, Parser, Tag, TagEnd};
    let opts = Options::ENABLE_TABLES
        | Options::ENABLE_STRIKETHROUGH
        | Options::ENABLE_TASKLISTS
        | Options::ENABLE_FOOTNOTES;
    let mut text = String::new();
    let mut heading: Option<String> = None;
    let mut in_block = false;
    let check_text = |t: &str| {
        let b = t.as_bytes();
        for (i, _) in t.match_indices('@') {
            let next = b.get(i + 1).copied().unwrap_or(b' ');
            assert!(
                !next.is_ascii_alphanumeric(),
                "{what}: a mention outside code: {t:?}\n{md}"
            );
        }
        for link in ["http://", "https://", "www."] {
            assert!(
                !t.to_lowercase().contains(link),
                "{what}: a bare link outside code: {t:?}"
            );
        }
    };
    for ev in Parser::new_ext(md, opts) {
        if !matches!(ev, Event::Text(_)) && !in_block {
            check_text(&text);
            text.clear();
        }
        match ev {
            Event::Start(Tag::Link { .. } | Tag::Image { .. }) => {
                panic!("{what}: a link or image: {ev:?}\n{md}")
            }
            Event::FootnoteReference(_) | Event::Start(Tag::FootnoteDefinition(_)) => {
                panic!("{what}: a footnote: {ev:?}")
            }
            Event::Start(Tag::Heading { .. }) => heading = Some(String::new()),
            Event::End(TagEnd::Heading(_)) => {
                let h = heading.take().unwrap_or_default();
                assert!(
                    h.starts_with("plinth plan")
                        || h.starts_with("cluster ")
                        || h == "GPU capacity",
                    "{what}: a heading plinth did not write: {h:?}\n{md}"
                );
            }
            Event::Start(Tag::CodeBlock(_)) => in_block = true,
            Event::End(TagEnd::CodeBlock) => in_block = false,
            Event::Text(t) => {
                if let Some(h) = &mut heading {
                    h.push_str(&t);
                }
                if !in_block {
                    text.push_str(&t);
                }
            }
            Event::Code(c) => {
                if let Some(h) = &mut heading {
                    h.push_str(&c);
                }
            }
            Event::Html(h) | Event::InlineHtml(h) => {
                let mut rest = h.to_string();
                while let Some(a) = rest.find("<code>") {
                    let b = rest[a..].find("</code>").map_or(rest.len(), |b| a + b + 7);
                    rest.replace_range(a..b, "");
                }
                for tag in rest.split('<').skip(1) {
                    let name: String = tag
                        .trim_start_matches('/')
                        .chars()
                        .take_while(char::is_ascii_alphanumeric)
                        .collect();
                    assert!(
                        ["details", "summary", "code", "sub", "b"].contains(&name.as_str()),
                        "{what}: HTML element `{name}` plinth did not write: {h:?}"
                    );
                }
                assert!(
                    !rest.contains('@') && !rest.contains("&#64;"),
                    "{what}: a mention in HTML outside code: {h:?}"
                );
            }
            _ => {}
        }
    }
    check_text(&text);
}

/// A repository holding `examples/repo` under `platform/`.
fn example_repo() -> Repo {
    let mut r = Repo::new();
    r.replace("platform", &root().join("examples/repo"));
    r.commit("Base Author", "initial platform");
    r
}

fn set_allocation(r: &Repo, project: &str, from: u32, to: u32) {
    let file = r.path().join("platform/gpu/a100-mig.yaml");
    let text = fs::read_to_string(&file).expect("read");
    let needle = format!("- project: {project}\n      gpu: {from}\n");
    assert!(
        text.contains(&needle),
        "example changed: no `{needle}` in gpu/a100-mig.yaml"
    );
    fs::write(
        &file,
        text.replace(&needle, &format!("- project: {project}\n      gpu: {to}\n")),
    )
    .expect("write");
}

fn plan_json(r: &Repo, base: &str, head: &str) -> (i32, serde_json::Value) {
    let o = r.plinth(&[
        "plan",
        "--base",
        base,
        "--head",
        head,
        "--path",
        "platform",
        "--format",
        "json",
        "--allow-destructive",
    ]);
    let v = json_of(&o);
    check_schema(&v);
    (o.status.code().unwrap_or(-1), v)
}

#[test]
fn changing_an_allocation_shows_queue_and_quota_changes_with_line_and_commit_and_revert_inverts_it()
{
    let mut r = example_repo();
    set_allocation(&r, "bed-management", 7, 9);
    let c = r.commit("Dana Smith", "bed-management: two more MIG slices");
    let o = r.plinth(&[
        "plan", "--base", "HEAD~1", "--head", "HEAD", "--path", "platform", "--format", "json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json_of(&o);
    check_schema(&v);
    let changes = v["changes"].as_array().expect("changes");
    let kinds: Vec<&str> = changes.iter().filter_map(|c| c["kind"].as_str()).collect();
    // With per-user GPU limits the allocation lives on the project's Kueue Cohort (see
    // lower/gpu.rs), and the pool's Cohort holds two slices less spare. (bed-management
    // borrows without a limit, so its GPU backstop is the pool's capacity either way.)
    let names: Vec<&str> = changes.iter().filter_map(|c| c["name"].as_str()).collect();
    assert_eq!(kinds, ["Cohort", "Cohort"], "{names:?}");
    assert!(names.contains(&"bed-management.a100-mig"), "{names:?}");
    assert!(names.contains(&"hospital-gpu-mig"), "{names:?}");
    for ch in changes {
        assert_eq!(ch["action"], "update");
        assert_eq!(ch["source"]["file"], "platform/gpu/a100-mig.yaml");
        if ch["name"] == "hospital-gpu-mig" {
            assert_eq!(
                ch["risk"], "disruptive",
                "less spare is no promise taken back"
            );
            continue;
        }
        let line = ch["source"]["line"].as_u64().expect("line");
        let spec = fs::read_to_string(r.path().join("platform/gpu/a100-mig.yaml")).expect("read");
        assert!(
            spec.lines()
                .nth(line as usize - 1)
                .is_some_and(|l| l.contains("project: bed-management")),
            "line {line}"
        );
        assert_eq!(ch["commits"][0]["id"], c.as_str());
        assert_eq!(ch["commits"][0]["author"], "Dana Smith");
    }
    assert!(changes.iter().any(|c| {
        c["fields"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["before"] == "7" && f["after"] == "9"))
    }));

    // The Markdown comment names the spec line and the commit.
    let md = text(&r.plinth(&[
        "plan", "--base", "HEAD~1", "--head", "HEAD", "--path", "platform", "--format", "markdown",
    ]));
    assert!(
        md.starts_with("### plinth plan: 0 to create, 2 to change, 0 to delete"),
        "{md}"
    );
    assert!(
        md.contains("platform/gpu/a100-mig.yaml:")
            && md.contains(&c[..7])
            && md.contains("Dana Smith"),
        "{md}"
    );

    // Revert: the plan is exactly the inverse.
    r.git(&["revert", "--no-edit", "HEAD"]);
    r.git(&[
        "commit",
        "--amend",
        "-q",
        "--no-edit",
        "--author",
        "Sam Lee <sam@example.org>",
    ]);
    let (code, back) = plan_json(&r, "HEAD~1", "HEAD");
    assert_eq!(code, 2);
    let (_, forward) = plan_json(&r, "HEAD~2", "HEAD~1");
    assert_eq!(signature(&back), inverse(&forward));
    assert!(back["changes"][0]["commits"][0]["author"] == "Sam Lee");
}

/// `(cluster, kind, namespace, name, action, [(path, before, after)])`, sorted.
type Sig = Vec<(
    String,
    String,
    String,
    String,
    String,
    Vec<(String, String, String)>,
)>;

fn signature(v: &serde_json::Value) -> Sig {
    let s = |x: &serde_json::Value| x.as_str().unwrap_or_default().to_owned();
    let mut out: Sig = v["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            let fields = c["fields"]
                .as_array()
                .expect("fields")
                .iter()
                .map(|f| (s(&f["path"]), s(&f["before"]), s(&f["after"])))
                .collect();
            (
                s(&c["cluster"]),
                s(&c["kind"]),
                s(&c["namespace"]),
                s(&c["name"]),
                s(&c["action"]),
                fields,
            )
        })
        .collect();
    out.sort();
    out
}

fn inverse(v: &serde_json::Value) -> Sig {
    let mut sig: Sig = signature(v)
        .into_iter()
        .map(|(c, k, ns, n, a, f)| {
            let a = match a.as_str() {
                "create" => "delete".to_owned(),
                "delete" => "create".to_owned(),
                other => other.to_owned(),
            };
            (
                c,
                k,
                ns,
                n,
                a,
                f.into_iter().map(|(p, b, af)| (p, af, b)).collect(),
            )
        })
        .collect();
    sig.sort();
    sig
}

#[test]
fn a_revision_against_itself_plans_nothing() {
    let r = example_repo();
    let o = r.plinth(&[
        "plan", "--base", "HEAD", "--head", "HEAD", "--path", "platform", "--format", "json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let v = json_of(&o);
    assert_eq!(v["changes"].as_array().map(Vec::len), Some(0));
    assert!(v["summary"]["unchanged"].as_u64().is_some_and(|n| n > 100));
    // The working tree equals HEAD too.
    let o = r.plinth(&[
        "plan", "--base", "HEAD", "--path", "platform", "--format", "json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(json_of(&o)["head"], "working tree");
}

#[test]
fn revert_of_a_mixed_commit_plans_the_exact_inverse() {
    let mut r = example_repo();
    let p = r.path().join("platform");
    // Edit, add, delete and rename in one commit.
    set_allocation(&r, "er-capacity", 14, 10);
    fs::remove_file(p.join("models/er-arrivals-forecast.yaml")).expect("rm");
    fs::rename(
        p.join("datasets/icd10-reference.yaml"),
        p.join("datasets/reference-icd10.yaml"),
    )
    .expect("mv");
    let ds = fs::read_to_string(p.join("datasets/hospital-calendar.yaml"))
        .expect("read")
        .replace("name: hospital-calendar", "name: hospital-calendar-v2");
    fs::write(p.join("datasets/hospital-calendar-v2.yaml"), ds).expect("write");
    r.commit("Dana Smith", "mixed change");
    r.git(&["revert", "--no-edit", "HEAD"]);
    let (code_f, forward) = plan_json(&r, "HEAD~2", "HEAD~1");
    let (code_b, back) = plan_json(&r, "HEAD~1", "HEAD");
    assert_eq!((code_f, code_b), (2, 2));
    let kinds: std::collections::BTreeSet<String> = signature(&forward)
        .iter()
        .map(|s| format!("{}:{}", s.4, s.1))
        .collect();
    assert!(
        kinds.contains("create:ConfigMap")
            && kinds.iter().any(|k| k.starts_with("delete:"))
            && kinds.iter().any(|k| k.starts_with("update:")),
        "{kinds:?}"
    );
    assert_eq!(signature(&back), inverse(&forward));
    // The renamed dataset file produced no change of its own.
    assert!(!forward["changes"].as_array().expect("c").iter().any(|c| {
        c["source"]["file"]
            .as_str()
            .is_some_and(|f| f.contains("icd10"))
    }));
}

#[test]
fn merges_plan_against_the_first_parent_and_name_branch_commits() {
    let mut r = example_repo();
    r.git(&["checkout", "-q", "-b", "feature"]);
    set_allocation(&r, "radiology-imaging", 21, 20);
    let feature = r.commit("Feature Dev", "radiology: one slice less");
    r.git(&["checkout", "-q", "main"]);
    let p = r.path().join("platform/projects/data-engineering.yaml");
    let t = fs::read_to_string(&p).expect("read");
    fs::write(
        &p,
        t.replace(
            "displayName: Clinical Data Engineering",
            "displayName: Clinical Data Engineering Team",
        ),
    )
    .expect("write");
    r.commit("Main Dev", "data-engineering: description");
    r.clock += 86_400;
    r.git(&["merge", "-q", "--no-ff", "--no-edit", "feature"]);
    let (_, v) = plan_json(&r, "HEAD~1", "HEAD");
    let changes = v["changes"].as_array().expect("changes");
    assert!(!changes.is_empty());
    assert!(
        changes
            .iter()
            .all(|c| c["source"]["file"] == "platform/gpu/a100-mig.yaml"),
        "{changes:#?}"
    );
    assert!(changes.iter().all(|c| {
        c["commits"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k["id"] == feature.as_str()))
    }));
    assert!(
        changes.iter().any(|c| c["risk"] == "destructive"),
        "lowering a quota is destructive"
    );
}

#[test]
fn uncommitted_changes_are_planned_against_a_revision() {
    let r = example_repo();
    set_allocation(&r, "bed-management", 7, 8);
    let o = r.plinth(&[
        "plan", "--base", "HEAD", "--path", "platform", "--format", "json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json_of(&o);
    assert_eq!(v["head"], "working tree");
    assert!(v["summary"]["update"].as_u64().is_some_and(|n| n >= 2));
    // Through the cache, the working tree's files are kept by stamp once they last changed
    // well before a plan reads them; an edit in place (the same size) is planned as edited.
    let json = [
        "plan", "--base", "HEAD", "--path", "platform", "--format", "json",
    ];
    std::thread::sleep(std::time::Duration::from_millis(2100));
    assert_eq!(json_of(&r.plinth(&json)), v);
    let kept = r.path().join(".git/plinth-cache/blobs/worktree");
    assert!(fs::metadata(&kept).expect("kept").len() > 1000);
    assert_eq!(json_of(&r.plinth(&json)), v, "read from what was kept");
    set_allocation(&r, "bed-management", 8, 9);
    let edited = json_of(&r.plinth(&json));
    let cold = json_of(&r.plinth(&[&json[..], &["--no-cache"]].concat()));
    assert_eq!(edited, cold);
    assert_ne!(edited, v, "planned as edited");
}

#[test]
fn destructive_changes_need_approval() {
    let mut r = example_repo();
    set_allocation(&r, "bed-management", 7, 5);
    r.commit("Dana Smith", "lower");
    let o = r.plinth(&[
        "plan", "--base", "HEAD~1", "--head", "HEAD", "--path", "platform", "--format", "json",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "unapproved destructive change fails the plan"
    );
    let v = json_of(&o);
    assert_eq!(v["summary"]["refused"], true);
    assert!(
        v["refusals"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("is lowered from 7 to 5")),
        "{v:#}"
    );
    // Approved by the spec that produces the objects.
    let file = r.path().join("platform/gpu/a100-mig.yaml");
    let t = fs::read_to_string(&file).expect("read");
    fs::write(&file, t.replacen("metadata:\n", "metadata:\n  annotations:\n    plinth.dev/approve-destructive: CHG-1234 capacity moved to research\n", 1)).expect("write");
    r.commit("Dana Smith", "approve");
    let o = r.plinth(&[
        "plan", "--base", "HEAD~2", "--head", "HEAD", "--path", "platform", "--format", "json",
    ]);
    let v = json_of(&o);
    assert_eq!(o.status.code(), Some(2), "{v:#}");
    let approved = v["changes"]
        .as_array()
        .expect("c")
        .iter()
        .filter(|c| c["risk"] == "destructive")
        .all(|c| {
            c["approval"]["reason"]
                .as_str()
                .is_some_and(|a| a.contains("CHG-1234"))
                && c["approval"]["via"] == "annotation"
        });
    assert!(approved, "{v:#}");
}

#[test]
fn deleting_a_project_is_destructive_unless_the_platform_approves_it() {
    let mut r = example_repo();
    let p = r.path().join("platform");
    // Remove data-engineering and everything that names it.
    fs::remove_file(p.join("projects/data-engineering.yaml")).expect("rm");
    for f in fs::read_dir(p.join("datasets")).expect("d") {
        let f = f.expect("f").path();
        let t = fs::read_to_string(&f).expect("read");
        let kept: Vec<&str> = t.lines().collect();
        let mut out = Vec::new();
        let mut skip = 0;
        for l in &kept {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            if l.trim() == "- project: data-engineering" {
                skip = 1;
                continue;
            }
            out.push(*l);
        }
        fs::write(&f, out.join("\n") + "\n").expect("write");
    }
    r.commit("Dana Smith", "retire data-engineering");
    let o = r.plinth(&[
        "plan", "--base", "HEAD~1", "--head", "HEAD", "--path", "platform", "--format", "json",
    ]);
    let v = json_of(&o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(v["refusals"].as_array().expect("r").iter().any(|m| {
        m["message"]
            .as_str()
            .is_some_and(|m| m.contains("Namespace data-engineering"))
    }));
    let ns = v["changes"]
        .as_array()
        .expect("c")
        .iter()
        .find(|c| c["kind"] == "Namespace")
        .expect("namespace deleted");
    assert_eq!(
        (ns["action"].as_str(), ns["risk"].as_str()),
        (Some("delete"), Some("destructive"))
    );
    // The Platform approves the deletion of the namespace (and its volume claims).
    let plat = p.join("plinth.yaml");
    let t = fs::read_to_string(&plat).expect("read");
    let approvals = "  approvals:\n    - object: Namespace/data-engineering\n      reason: CHG-77 team merged into er-capacity\n    - object: PersistentVolumeClaim/data-engineering/shared\n      reason: CHG-77\n";
    let t = t.replacen("spec:\n", &format!("spec:\n{approvals}"), 1);
    fs::write(&plat, t).expect("write");
    r.commit("Dana Smith", "approve");
    let o = r.plinth(&[
        "plan", "--base", "HEAD~2", "--head", "HEAD", "--path", "platform", "--format", "json",
    ]);
    let v = json_of(&o);
    let unapproved: Vec<String> = v["refusals"]
        .as_array()
        .expect("r")
        .iter()
        .filter_map(|m| m["message"].as_str().map(str::to_owned))
        .collect();
    assert!(
        unapproved
            .iter()
            .all(|m| !m.contains("Namespace data-engineering")),
        "{unapproved:#?}"
    );
}

#[test]
fn a_head_deleting_most_objects_is_refused_even_when_destruction_is_allowed() {
    let mut r = example_repo();
    let p = r.path().join("platform");
    for d in ["models", "datasets", "apps", "gpu"] {
        fs::remove_dir_all(p.join(d)).expect("rm");
    }
    for f in fs::read_dir(p.join("projects")).expect("p") {
        let f = f.expect("f").path();
        if !f.ends_with("data-engineering.yaml") {
            fs::remove_file(f).expect("rm");
        }
    }
    let t = fs::read_to_string(p.join("plinth.yaml")).expect("r");
    fs::write(
        p.join("plinth.yaml"),
        t.replace("gpuPools: [a100, a100-mig]", "gpuPools: []")
            .replace("gpuPools: [a100-mig]", "gpuPools: []"),
    )
    .expect("w");
    r.commit("Dana Smith", "oops");
    let o = r.plinth(&[
        "plan",
        "--base",
        "HEAD~1",
        "--head",
        "HEAD",
        "--path",
        "platform",
        "--format",
        "json",
        "--allow-destructive",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let v = json_of(&o);
    assert!(
        v["refusals"]
            .as_array()
            .expect("r")
            .iter()
            .any(|m| m["message"]
                .as_str()
                .is_some_and(|m| m.contains("more than the 50% allowed"))),
        "{v:#}"
    );
}

#[test]
fn sensitive_values_never_appear_in_any_output() {
    let mut r = example_repo();
    let file = r.path().join("platform/datasets/hospital-calendar.yaml");
    let t = fs::read_to_string(&file)
        .expect("read")
        .replace("sensitivity: internal", "sensitivity: confidential");
    fs::write(&file, &t).expect("write");
    r.commit("Dana Smith", "calendar is confidential");
    // Change one variable's value to a secret-looking string.
    let secret = "s3cr3t-Value-4711";
    let t2 = t.replacen(
        "      variables:\n",
        &format!("      variables:\n        PLINTH_TEST_SECRET: {secret}\n"),
        1,
    );
    assert_ne!(t, t2, "example changed: no variables block");
    fs::write(&file, t2).expect("write");
    r.commit("Dana Smith", "add a secret");
    for format in ["terminal", "markdown", "json"] {
        let o = r.plinth(&[
            "plan", "--base", "HEAD~1", "--head", "HEAD", "--path", "platform", "--format", format,
        ]);
        assert_eq!(
            o.status.code(),
            Some(2),
            "{format}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let out = text(&o);
        assert!(out.contains("redacted, hmac:"), "{format}: {out}");
        assert!(!out.contains(secret), "{format} leaks the value");
    }

    // Secrets outside Secrets: env values with secret names, tokens, URLs with a password.
    let app = r.path().join("platform/apps/er-dashboard.yaml");
    let a = fs::read_to_string(&app).expect("read");
    let leaks = [
        "plain-secret-4711",
        "ghp_0123456789abcdefghijABCDEFGHIJ012345",
        "pw-4711@",
        "AKIAIOSFODNN7EXAMPLE",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N",
    ];
    let a2 = a.replacen(
        "      REFRESH_SECONDS: 300\n",
        "      REFRESH_SECONDS: 300\n      API_TOKEN: plain-secret-4711\n      GH: ghp_0123456789abcdefghijABCDEFGHIJ012345\n      DATABASE_URL: postgres://app:pw-4711@db.internal/app\n      NOTES: \"key AKIAIOSFODNN7EXAMPLE jwt eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N\"\n",
        1,
    );
    assert_ne!(a, a2, "example changed: no REFRESH_SECONDS");
    fs::write(&app, a2).expect("write");
    r.commit("Dana Smith", "dashboard secrets");
    for format in ["terminal", "markdown", "json"] {
        let o = r.plinth(&[
            "plan", "--base", "HEAD~1", "--head", "HEAD", "--path", "platform", "--format", format,
        ]);
        assert_eq!(o.status.code(), Some(2), "{format}");
        let out = text(&o);
        assert!(out.contains("redacted, hmac:"), "{format}: {out}");
        for leak in leaks {
            assert!(!out.contains(leak), "{format} leaks {leak}: {out}");
        }
    }
    // The same key, the same fingerprints: runs compare; another key, other fingerprints.
    let run = |key: &str| {
        let o = Command::new(env!("CARGO_BIN_EXE_plinth"))
            .args([
                "plan", "--base", "HEAD~1", "--head", "HEAD", "--path", "platform", "--format",
                "json",
            ])
            .current_dir(r.path())
            .env("PLINTH_FINGERPRINT_KEY", key)
            .output()
            .expect("runs");
        text(&o)
    };
    assert_eq!(run("k1"), run("k1"));
    assert_ne!(run("k1"), run("k2"));
    // A token in a commit subject stays out of the log.
    let a3 = fs::read_to_string(&app).expect("read").replacen(
        "REFRESH_SECONDS: 300",
        "REFRESH_SECONDS: 301",
        1,
    );
    fs::write(&app, a3).expect("write");
    r.commit(
        "Dana Smith",
        "rotate: old key was ghp_0123456789abcdefghijABCDEFGHIJ012345",
    );
    for format in ["text", "json"] {
        let o = r.plinth(&[
            "log", "--since", "HEAD~4", "--path", "platform", "--format", format,
        ]);
        let out = text(&o);
        for leak in leaks.iter().chain([&secret]) {
            assert!(!out.contains(leak), "log {format} leaks {leak}");
        }
        assert!(out.contains("rotate: old key was (redacted)"), "{out}");
    }
}

#[test]
fn markdown_comments_are_capped_with_the_full_plan_in_a_file() {
    let mut r = Repo::new();
    let p = r.path().join("platform");
    fs::create_dir_all(p.join("projects")).expect("mkdir");
    fs::write(p.join("plinth.yaml"), "apiVersion: plinth.dev/v1alpha1\nkind: Platform\nmetadata:\n  name: big\nspec:\n  clusters:\n    - name: prod\n      kubernetesVersion: \"1.32\"\n      provider: aws\n").expect("w");
    r.commit("Base Author", "empty platform");
    for i in 0..400 {
        fs::write(
            p.join(format!("projects/team-{i:03}.yaml")),
            format!("apiVersion: plinth.dev/v1alpha1\nkind: Project\nmetadata:\n  name: team-{i:03}\nspec:\n  owners: [a{i}@example.org, b{i}@example.org]\n  quota: {{cpu: \"8\", memory: 32Gi}}\n  members:\n    - group: analysts-{i}\n      role: edit\n"),
        )
        .expect("w");
    }
    r.commit("Dana Smith", "400 teams");
    let full = r.path().join("plan-full.md");
    let o = r.plinth(&[
        "plan",
        "--base",
        "HEAD~1",
        "--head",
        "HEAD",
        "--path",
        "platform",
        "--format",
        "markdown",
        "--output",
        full.to_str().expect("utf-8"),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let comment = text(&o);
    assert!(
        comment.chars().count() < 65_536,
        "{} characters",
        comment.chars().count()
    );
    assert!(
        comment.starts_with("### plinth plan: 2800 to create"),
        "{}",
        &comment[..200.min(comment.len())]
    );
    let table = comment.find("| `prod` |").expect("summary table");
    let first_detail = comment.find("<details>").expect("details");
    assert!(table < first_detail, "summary table comes first");
    assert!(
        comment.contains(
            "more pages**: `plinth plan --format markdown --pages DIR` writes every page"
        ),
        "{}",
        &comment[comment.len() - 300..]
    );
    let whole = fs::read_to_string(full).expect("full plan written");
    assert!(whole.len() > comment.len());
    assert_eq!(whole.matches("<details>").count(), 2800);
    assert_safe_markdown(&whole, "full plan");

    // Paged: every page below the limit, `part i/N`, every object on exactly one page; stale
    // pages of an earlier, longer run are removed.
    let dir = r.path().join("pages");
    fs::create_dir_all(&dir).expect("mkdir");
    fs::write(dir.join("page-99.md"), "stale").expect("w");
    fs::write(dir.join("notes.txt"), "kept").expect("w");
    let o = r.plinth(&[
        "plan", "--base", "HEAD~1", "--head", "HEAD", "--path", "platform", "--format", "markdown",
        "--pages", "pages",
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut names: Vec<String> = fs::read_dir(&dir)
        .expect("dir")
        .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.contains(&"notes.txt".to_owned()) && !names.contains(&"page-99.md".to_owned()));
    let n = names.iter().filter(|f| f.starts_with("page-")).count();
    assert!(n > 1, "{names:?}");
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for i in 1..=n {
        let page = fs::read_to_string(dir.join(format!("page-{i}.md"))).expect("page");
        assert!(page.chars().count() < 65_536, "page {i}");
        assert!(
            page.lines()
                .next()
                .expect("title")
                .contains(&format!("part {i}/{n}")),
            "page {i}"
        );
        assert_eq!(page.contains("| cluster | create |"), i == 1);
        assert_safe_markdown(&page, &format!("page {i}"));
        for line in page.lines().filter(|l| l.starts_with("<details><summary>")) {
            let key = line.split("</code> <code>").nth(1).expect("key");
            *seen
                .entry(key.split("</code>").next().expect("k").to_owned())
                .or_default() += 1;
        }
    }
    assert_eq!(seen.len(), 2800);
    assert!(seen.values().all(|n| *n == 1));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("wrote {n} pages")));
    // `--pages` is Markdown only.
    let o = r.plinth(&[
        "plan", "--base", "HEAD~1", "--head", "HEAD", "--path", "platform", "--pages", "pages",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("add `--format markdown`"));
}

#[test]
fn the_markdown_check_catches_what_it_looks_for() {
    for bad in [
        "# ✅ Approved by someone\n",
        "### plinth plan\n\nhello @acme/security-team\n",
        "### plinth plan\n\n![x](https://evil.example/t.png)\n",
        "### plinth plan\n\n[x](https://evil.example)\n",
        "### plinth plan\n\n<img src=x>\n",
        "<details><summary>@acme/team</summary>\n",
        "### plinth plan\n\nsee www.evil.example\n",
    ] {
        let caught = std::panic::catch_unwind(|| assert_safe_markdown(bad, "probe")).is_err();
        assert!(caught, "not caught: {bad:?}");
    }
    assert_safe_markdown(
        "### plinth plan\n\n`@acme/team ![x](y)`\n\n<details><summary><code>&#64;x</code></summary>\n",
        "fine",
    );
}

#[test]
fn log_lists_each_commit_with_the_objects_it_changed() {
    let mut r = example_repo();
    set_allocation(&r, "bed-management", 7, 8);
    let c1 = r.commit("Dana Smith", "bed-management: one more slice");
    let file = r.path().join("platform/datasets/admissions.yaml");
    let t = fs::read_to_string(&file).expect("read");
    let t2 = t.replacen("mode: read-only", "mode: read-write", 1);
    fs::write(&file, t2).expect("write");
    let c2 = r.commit("Radiology Lead", "give write access");
    fs::write(r.path().join("README.md"), "notes\n").expect("w");
    r.commit("Someone", "docs only");
    let o = r.plinth(&["log", "--since", "HEAD~3", "--path", "platform"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = text(&o);
    let lines: Vec<&str> = out.lines().collect();
    let h2 = lines
        .iter()
        .position(|l| l.starts_with(&c2[..7]))
        .expect("second commit listed");
    let h1 = lines
        .iter()
        .position(|l| l.starts_with(&c1[..7]))
        .expect("first commit listed");
    assert!(h2 < h1, "newest first");
    assert!(lines[h2].contains("Radiology Lead") && lines[h2].contains("give write access"));
    assert!(
        lines[h2 + 1..h1]
            .iter()
            .any(|l| l.contains("PersistentVolume")
                && l.contains("platform/datasets/admissions.yaml:")),
        "{out}"
    );
    assert!(
        !out.contains("docs only"),
        "commits that change no object are left out"
    );
    let json = [
        "log",
        "--since",
        "2000-01-01",
        "--path",
        "platform",
        "--format",
        "json",
    ];
    let v = json_of(&r.plinth(&json));
    assert!(
        v.as_array().is_some_and(|a| a.len() >= 3),
        "the initial commit creates everything: {v:#}"
    );
    // Every revision is compiled through the cache (`.git/plinth-cache`, shared with `plan`):
    // the same log from scratch, through a cache being filled and through a warm one.
    let cold = r.plinth(&[&json[..], &["--no-cache"]].concat());
    let cache = r.path().join(".git/plinth-cache");
    assert!(cache.join("blobs/pack").is_file(), "{cache:?}");
    assert_eq!(json_of(&cold), v);
    assert_eq!(json_of(&r.plinth(&json)), v);
    fs::remove_dir_all(&cache).expect("rm");
    assert_eq!(json_of(&r.plinth(&json)), v, "filling an empty cache");
    assert!(cache.join("units").is_dir());
}

/// `plinth` run in `dir` (which need not be a repository).
fn plinth_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .expect("plinth runs")
}

/// A shallow clone (`--depth N`) of `r` in a new temporary directory.
fn shallow_clone(r: &Repo, depth: u32) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tmp");
    let url = format!("file://{}", r.path().display());
    common::git(
        dir.path(),
        &["clone", "-q", "--depth", &depth.to_string(), &url, "c"],
    );
    dir
}

/// Every way `plinth plan` can fail exits 1 (2 would read as "changes" in CI), with nothing
/// on stdout and a message saying what to do.
#[test]
fn every_plan_error_exits_1_with_an_actionable_message() {
    let mut r = example_repo();
    set_allocation(&r, "bed-management", 7, 8);
    r.commit("Dana Smith", "bed-management: one more slice");
    let outside = tempfile::tempdir().expect("tmp");
    let shallow = shallow_clone(&r, 1);
    let clone = shallow.path().join("c");
    let platform = r.path().join("platform");
    let cases: Vec<(&str, &Path, Vec<&str>, Vec<&str>)> = vec![
        (
            "unknown base",
            r.path(),
            vec!["--base", "nosuch", "--path", "platform"],
            vec!["`nosuch`", "git branch -a"],
        ),
        (
            "base beyond the history",
            r.path(),
            vec!["--base", "HEAD~9", "--path", "platform"],
            vec!["`HEAD~9`", "beyond the repository's first commit"],
        ),
        (
            "unknown head",
            &platform,
            vec!["--base", "HEAD~1", "--head", "nosuch"],
            vec!["`nosuch`"],
        ),
        (
            "shallow clone",
            &clone,
            vec!["--base", "HEAD~1", "--path", "platform"],
            vec!["shallow clone", "fetch-depth: 0", "git fetch --unshallow"],
        ),
        (
            "outside a git repository",
            outside.path(),
            vec!["--base", "HEAD~1"],
            vec!["not inside a git repository", "--repo"],
        ),
        (
            "unknown path in the working tree",
            r.path(),
            vec!["--base", "HEAD~1", "--path", "nope"],
            vec!["`nope` is not a directory", "--path"],
        ),
        (
            "unknown path at a revision",
            r.path(),
            vec!["--base", "HEAD~1", "--head", "HEAD", "--path", "nope"],
            vec!["`nope` does not exist", "--path"],
        ),
        (
            "platform in a subdirectory",
            r.path(),
            vec!["--base", "HEAD~1"],
            vec!["`platform/plinth.yaml`", "pass `--path platform`"],
        ),
        ("missing --base", r.path(), vec![], vec!["--base"]),
        (
            "--pages without markdown",
            &platform,
            vec!["--base", "HEAD~1", "--pages", "p"],
            vec!["--format markdown"],
        ),
    ];
    for (what, dir, args, wants) in cases {
        let mut all = vec!["plan"];
        all.extend(&args);
        let o = plinth_in(dir, &all);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(1), "{what}: {err}");
        assert!(o.stdout.is_empty(), "{what}: {}", text(&o));
        for w in wants {
            assert!(err.contains(w), "{what}: no {w:?} in {err}");
        }
        assert!(
            !err.contains("delegate"),
            "{what}: library internals: {err}"
        );
    }
    // The same repository planned properly: 2, changes.
    let o = plinth_in(&platform, &["plan", "--base", "HEAD~1"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// In a shallow clone `log` lists the commits it has and says where the history is cut.
#[test]
fn log_in_a_shallow_clone_lists_what_it_has_and_says_where_it_is_cut() {
    let mut r = example_repo();
    set_allocation(&r, "bed-management", 7, 8);
    let first = r.commit("Dana Smith", "bed-management: one more slice");
    set_allocation(&r, "bed-management", 8, 6);
    let second = r.commit("Dana Smith", "bed-management: two fewer");
    let shallow = shallow_clone(&r, 2);
    let o = plinth_in(&shallow.path().join("c"), &["log", "--path", "platform"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(0), "{err}");
    let out = text(&o);
    assert!(out.starts_with(&second[..7]), "{out}");
    assert!(!out.contains(&first[..7]), "{out}");
    assert!(
        err.contains(&format!("cut at `{}`", &first[..7])) && err.contains("git fetch --unshallow"),
        "{err}"
    );
    // From the repository root, the platform below is named.
    let o = plinth_in(r.path(), &["log"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("pass `--path platform`"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// A commit where the platform does not compile says why.
#[test]
fn log_says_why_a_commit_does_not_compile() {
    let mut r = example_repo();
    fs::write(r.path().join("platform/aaa.yaml"), "key: [unclosed\n").expect("write");
    let c = r.commit("Dana Smith", "broken YAML");
    let o = r.plinth(&["log", "--path", "platform", "--since", "HEAD~1"]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = text(&o);
    assert!(out.starts_with(&c[..7]), "{out}");
    assert!(
        out.contains("does not compile")
            && out.contains("platform/aaa.yaml:")
            && out.contains("error["),
        "{out}"
    );
}

/// The templates install a pinned, checksummed release (no compile per pull request), fetch
/// the whole history, fail on plan's 1, and plan against the merge base; GitHub's uses
/// current action majors, leaves forks' read-only tokens alone and asks for `actions: read`.
#[test]
fn ci_templates_pin_a_release_and_plan_against_the_merge_base() {
    for f in [
        "examples/ci/github-actions.yml",
        "examples/ci/gitlab-ci.yml",
    ] {
        let text = fs::read_to_string(root().join(f)).expect("template");
        let code: String = text
            .lines()
            .filter(|l| !l.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        for want in [
            "PLINTH_VERSION: 0.1.0",
            "PLINTH_SHA256:",
            "sha256sum -c -",
            "releases/download/v${PLINTH_VERSION}/",
        ] {
            assert!(code.contains(want), "{f}: no {want:?}");
        }
        assert!(
            !code.contains("cargo install"),
            "{f}: compiles plinth on every run"
        );
        assert!(
            code.contains("fetch-depth: 0") || code.contains("GIT_DEPTH: 0"),
            "{f}: shallow history"
        );
    }
    let gitlab = fs::read_to_string(root().join("examples/ci/gitlab-ci.yml")).expect("gitlab");
    assert!(gitlab.contains(r#"--base "$CI_MERGE_REQUEST_DIFF_BASE_SHA""#));
    assert!(!gitlab.contains("--base \"origin/$CI_MERGE_REQUEST_TARGET_BRANCH_NAME"));
    assert!(gitlab.contains(r#"test "$plan" != 1"#));
    assert!(
        gitlab.contains("--request PUT"),
        "notes are updated in place"
    );
    let github = fs::read_to_string(root().join("examples/ci/github-actions.yml")).expect("github");
    for want in [
        "actions/checkout@v5",
        "github/codeql-action/upload-sarif@v4",
        "actions/upload-artifact@v5",
        "actions/github-script@v8",
        "  actions: read",
        r#"if [ "$code" = 1 ]; then exit 1; fi"#,
        "GITHUB_STEP_SUMMARY",
    ] {
        assert!(github.contains(want), "github: no {want:?}");
    }
    assert_eq!(
        github
            .matches("github.event.pull_request.head.repo.full_name == github.repository")
            .count(),
        2,
        "no comment and no SARIF upload for forks"
    );
    assert!(github.contains("from forks get a read-only token"));
}

/// Both templates keep plinth's cache for the main branch and plan through it. Their warm step,
/// run on the main branch as written (the platform's path filled in), leaves the cache a pull
/// request's plan reads: the plan finds main's compile by its git tree and lowers only the
/// units its change touches (its timings say so), and it is the plan made without the cache,
/// byte for byte.
#[test]
fn ci_templates_plan_through_the_main_branch_cache() {
    for f in [
        "examples/ci/github-actions.yml",
        "examples/ci/gitlab-ci.yml",
    ] {
        let text = fs::read_to_string(root().join(f)).expect("template");
        // The pull request's plan (not the warm step's plan of main against itself).
        let plan = text
            .lines()
            .find(|l| l.contains("plinth plan --base") && !l.contains("--base HEAD --head HEAD"))
            .expect("plan line");
        assert!(plan.contains("--cache-dir .plinth-cache"), "{f}: {plan}");
        assert!(
            text.contains(
                "plinth plan --base HEAD --head HEAD --path \"$PLATFORM_PATH\" --cache-dir .plinth-cache"
            ),
            "{f}: nothing compiles main into the cache as a plan's base"
        );
        let line = text
            .lines()
            .find(|l| l.contains("plinth plan --base HEAD --head HEAD"))
            .expect("warm step");
        let command = line
            .trim()
            .trim_start_matches("- ")
            .trim_start_matches("run: ");
        let command = command.split(" > ").next().expect("command");
        let words: Vec<String> = command
            .split_whitespace()
            .skip(1)
            .map(|w| w.replace("\"$PLATFORM_PATH\"", "platform"))
            .collect();
        let mut r = example_repo();
        let warmed = plinth_in(
            r.path(),
            &words.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        assert_eq!(
            warmed.status.code(),
            Some(0),
            "{f}: {}",
            String::from_utf8_lossy(&warmed.stderr)
        );
        set_allocation(&r, "bed-management", 7, 9);
        r.commit("Dana Smith", "bed-management: two more MIG slices");
        let pr = plan_timed(&r, &["--cache-dir", ".plinth-cache"]);
        let timings = String::from_utf8_lossy(&pr.stderr);
        assert!(
            timings.contains("timing base cache hit (by tree)")
                && timings.contains("timing head lower (delta)"),
            "{f}: {timings}"
        );
        let fresh = plan_timed(&r, &["--no-cache"]);
        assert_eq!(
            pr.status.code(),
            Some(2),
            "{f}: {}",
            String::from_utf8_lossy(&pr.stderr)
        );
        assert_eq!(
            String::from_utf8_lossy(&pr.stdout),
            String::from_utf8_lossy(&fresh.stdout),
            "{f}"
        );
    }
    let github = fs::read_to_string(root().join("examples/ci/github-actions.yml")).expect("github");
    assert!(
        github.contains("actions/cache/save@v4") && github.contains("actions/cache/restore@v4")
    );
    assert!(github.contains(
        "key: plinth-${{ env.PLINTH_VERSION }}-${{ github.event.pull_request.base.sha }}"
    ));
}

#[test]
fn ci_templates_are_valid_yaml_and_run_check_and_plan() {
    for f in [
        "examples/ci/github-actions.yml",
        "examples/ci/gitlab-ci.yml",
    ] {
        let text = fs::read_to_string(root().join(f)).expect("template");
        let (docs, diags) = plinth::parse::yaml::parse_documents(
            &std::sync::Arc::from(f),
            &text,
            Default::default(),
        );
        assert!(diags.is_empty(), "{f}: {diags:#?}");
        assert_eq!(docs.len(), 1, "{f}");
        assert!(
            text.contains("plinth check")
                && text.contains("plinth plan")
                && text.contains("--format markdown"),
            "{f}"
        );
    }
}

#[test]
fn plans_reuse_compiled_revisions_from_the_cache_and_say_the_same() {
    let mut r = example_repo();
    set_allocation(&r, "bed-management", 7, 8);
    r.commit("Dana Smith", "one more slice");
    let args = [
        "plan", "--base", "HEAD~1", "--head", "HEAD", "--path", "platform", "--format", "json",
    ];
    let cold = r.plinth(&[&args[..], &["--no-cache"]].concat());
    let first = r.plinth(&args);
    let cache = r.path().join(".git/plinth-cache");
    assert!(cache.is_dir(), "the plan cache lives in the git directory");
    let entries = fs::read_dir(&cache).expect("cache").count();
    assert!(entries >= 1);
    let warm = r.plinth(&args);
    assert_eq!(text(&cold), text(&first));
    assert_eq!(text(&first), text(&warm));
    assert_eq!(warm.status.code(), Some(2));
    // Objects damaged in place (same size) are found when read: the plan is made again
    // without the cache, with a warning, and is the same plan.
    // (A revision's objects are in the unit store.)
    let mut damaged = 0;
    for e in fs::read_dir(cache.join("units")).expect("units") {
        let p = e.expect("entry").path();
        if p.extension().is_some_and(|x| x == "pack") {
            let mut bytes = fs::read(&p).expect("read");
            bytes.iter_mut().for_each(|b| {
                if *b == b'{' {
                    *b = b'[';
                }
            });
            fs::write(&p, bytes).expect("write");
            damaged += 1;
        }
    }
    assert!(damaged >= 1, "the objects are in unit packs");
    let again = r.plinth(&args);
    assert_eq!(text(&again), text(&cold));
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("planning again without it"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    // Blob contents are kept (each side's files are read from git only when not seen
    // before); damaged in place, they are read from git again: the same plan.
    let blobs = cache.join("blobs/pack");
    let mut bytes = fs::read(&blobs).expect("the blobs read are kept");
    let kinds = bytes.windows(4).filter(|w| w == b"kind").count();
    assert!(kinds > 10, "the platform's files are kept: {kinds}");
    for i in 0..bytes.len().saturating_sub(4) {
        if &bytes[i..i + 4] == b"kind" {
            bytes[i + 3] = b'D';
        }
    }
    fs::write(&blobs, &bytes).expect("write");
    let again = r.plinth(&args);
    assert_eq!(text(&again), text(&cold));
    assert_eq!(again.status.code(), Some(2));
    // Deleting the cache is always safe.
    fs::remove_dir_all(&cache).expect("rm");
    assert_eq!(text(&r.plinth(&args)), text(&cold));
}

/// A head compiled against a cached base has its entry written against the base's (only what
/// differs); planned again it is read with the base's and says the same; with the base's entry
/// gone it is not found by its tree, and the plan, made again, still says the same.
#[test]
fn a_head_entry_written_against_its_base_reads_back_and_needs_it() {
    let mut r = example_repo();
    set_allocation(&r, "bed-management", 7, 8);
    r.commit("Dana Smith", "one more slice");
    let plan = |base: &str, head: &str, extra: &[&str]| {
        let args = [
            "plan", "--base", base, "--head", head, "--path", "platform", "--format", "json",
        ];
        r.plinth(&[&args[..], extra].concat())
    };
    let cold = plan("HEAD~1", "HEAD", &["--no-cache"]);
    // The base alone first: its entry, whole, found by its tree by the next plan.
    assert_eq!(plan("HEAD~1", "HEAD~1", &[]).status.code(), Some(0));
    let cache = r.path().join(".git/plinth-cache");
    let entries = || -> Vec<(std::path::PathBuf, String)> {
        let mut all = Vec::new();
        for d in fs::read_dir(&cache).expect("cache").flatten() {
            let name = d.file_name().to_string_lossy().into_owned();
            if name.len() != 2 {
                continue;
            }
            for e in fs::read_dir(d.path()).expect("dir").flatten() {
                let p = e.path();
                if p.extension().is_some_and(|x| x == "json") {
                    all.push((p.clone(), fs::read_to_string(&p).expect("entry")));
                }
            }
        }
        all
    };
    assert!(entries().iter().all(|(_, t)| !t.contains("\"against\"")));
    let first = plan("HEAD~1", "HEAD", &[]);
    assert_eq!(text(&first), text(&cold));
    let all = entries();
    let (head_entry, head_text) = all
        .iter()
        .find(|(_, t)| t.contains("\"against\""))
        .expect("the head's entry is written against the base's");
    let whole = all
        .iter()
        .filter(|(p, _)| p != head_entry)
        .map(|(_, t)| t.len())
        .max()
        .expect("the base's entry");
    assert!(head_text.len() < whole, "{} of {whole}", head_text.len());
    // Both found by their trees: the head's entry read with the base's.
    let warm = plan("HEAD~1", "HEAD", &[]);
    assert_eq!(text(&warm), text(&cold));
    assert_eq!(warm.status.code(), Some(2));
    let timed = String::from_utf8_lossy(&plan_timed(&r, &[]).stderr).into_owned();
    assert!(timed.contains("head cache hit (by tree)"), "{timed}");
    // The base's entry gone: the head's is a miss; both compiled again, the same plan.
    let base_key = head_text
        .split("\"against\":{\"key\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the base's key");
    let base_entry = cache.join(&base_key[..2]).join(format!("{base_key}.json"));
    fs::remove_file(&base_entry).expect("the base's entry is where its key says");
    // (Found by its tree, the head's entry does not read without the base's; the base is
    // compiled and stored again, under the same key, and the head's then reads with it.)
    let again = plan_timed(&r, &[]);
    let timed = String::from_utf8_lossy(&again.stderr).into_owned();
    assert!(!timed.contains("head cache hit (by tree)"), "{timed}");
    assert!(timed.contains("base    lower"), "{timed}");
    assert!(base_entry.exists());
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(text(&plan("HEAD~1", "HEAD", &[])), text(&cold));
}

/// The JSON plan without `--allow-destructive`: approvals decide.
fn plan_strict(r: &Repo, base: &str, head: &str) -> (i32, serde_json::Value) {
    let o = r.plinth(&[
        "plan", "--base", base, "--head", head, "--path", "platform", "--format", "json",
    ]);
    let v = json_of(&o);
    check_schema(&v);
    (o.status.code().unwrap_or(-1), v)
}

/// Add `entries` (YAML list items, indented for `spec.approvals`) to the example's Platform.
fn add_approvals(r: &Repo, entries: &str) {
    let plat = r.path().join("platform/plinth.yaml");
    let t = fs::read_to_string(&plat).expect("read");
    let t = if t.contains("  approvals:\n") {
        t.replacen("  approvals:\n", &format!("  approvals:\n{entries}"), 1)
    } else {
        t.replacen("spec:\n", &format!("spec:\n  approvals:\n{entries}"), 1)
    };
    fs::write(&plat, t).expect("write");
}

fn refused_objects(v: &serde_json::Value) -> Vec<String> {
    v["refusals"]
        .as_array()
        .expect("refusals")
        .iter()
        .filter_map(|r| {
            let o = &r["object"];
            o["kind"].as_str().map(|k| {
                format!(
                    "{k}/{}{}",
                    o["namespace"]
                        .as_str()
                        .map(|n| format!("{n}/"))
                        .unwrap_or_default(),
                    o["name"].as_str().unwrap_or_default()
                )
            })
        })
        .collect()
}

#[test]
fn an_approval_counts_only_for_the_change_that_adds_it() {
    let mut r = example_repo();
    // First lowering, unapproved: refused, and the refusal says exactly what to add.
    set_allocation(&r, "bed-management", 7, 6);
    r.commit("Dana Smith", "lower bed-management to 6");
    let (code, v) = plan_strict(&r, "HEAD~1", "HEAD");
    assert_eq!(code, 1, "{v:#}");
    let refused = refused_objects(&v);
    assert!(!refused.is_empty(), "{v:#}");
    for (r_, obj) in v["refusals"].as_array().expect("r").iter().zip(&refused) {
        let hint = r_["hint"].as_str().expect("hint");
        assert!(
            hint.contains(&format!("- object: {obj}"))
                && hint.contains("cluster: prod-a")
                && hint.contains("plinth.yaml"),
            "{hint}"
        );
    }
    let yaml = v["approvalYaml"].as_str().expect("approvalYaml");
    assert!(yaml.starts_with("approvals:\n"), "{yaml}");
    // The snippet, pasted as it is (with a reason and an approver filled in), approves the
    // change: the entries it lists are exactly the refused objects.
    let entries: String = yaml
        .lines()
        .skip(1)
        .map(|l| {
            let l = l
                .replace("<why; a ticket>", "CHG-9 beds to research")
                .replace("<who reviewed it>", "@st-brigids/platform-leads");
            format!("  {l}\n")
        })
        .collect();
    add_approvals(&r, &entries);
    r.commit("Dana Smith", "approve the lowering");
    let (code, v) = plan_strict(&r, "HEAD~2", "HEAD");
    assert_eq!(code, 2, "approved: the plan passes\n{v:#}");
    let destructive: Vec<&serde_json::Value> = v["changes"]
        .as_array()
        .expect("c")
        .iter()
        .filter(|c| c["risk"] == "destructive")
        .collect();
    assert!(!destructive.is_empty());
    for c in &destructive {
        let a = &c["approval"];
        assert_eq!(a["via"], "entry", "{c:#}");
        assert_eq!(a["reason"], "CHG-9 beds to research");
        assert_eq!(a["approver"], "@st-brigids/platform-leads");
        assert_eq!(a["source"]["file"], "platform/plinth.yaml");
        assert!(
            a["commits"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k["summary"] == "approve the lowering")),
            "{a:#}"
        );
    }
    assert!(v["warnings"].as_array().expect("w").is_empty(), "{v:#}");
    // The Markdown shows them approved (✅, reason, approver), not 🛑.
    let md = text(&r.plinth(&[
        "plan", "--base", "HEAD~2", "--head", "HEAD", "--path", "platform", "--format", "markdown",
    ]));
    assert!(!md.contains("🛑"), "{md}");
    assert!(
        md.contains("✅") && md.contains("CHG-9 beds to research") && md.contains("platform-leads"),
        "{md}"
    );
    let term = text(&r.plinth(&[
        "plan", "--base", "HEAD~2", "--head", "HEAD", "--path", "platform",
    ]));
    assert!(
        term.contains("✅ approved: CHG-9 beds to research — by @st-brigids/platform-leads"),
        "{term}"
    );

    // A second lowering with the old approval still in place: refused, and the old entry is
    // reported as stale.
    set_allocation(&r, "bed-management", 6, 5);
    r.commit("Mallory", "lower again, riding on the old approval");
    let (code, v) = plan_strict(&r, "HEAD~1", "HEAD");
    assert_eq!(code, 1, "a merged approval approves nothing later\n{v:#}");
    assert_eq!(refused_objects(&v), refused, "{v:#}");
    let warnings = v["warnings"].as_array().expect("w");
    assert!(
        !warnings.is_empty()
            && warnings.iter().all(|w| {
                w["file"] == "platform/plinth.yaml"
                    && w["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("already present at the base"))
                    && w["hint"].as_str().is_some_and(|h| h.contains("remove"))
            }),
        "{v:#}"
    );
    // Changing the entry's reason is a new approval, reviewed in its own change.
    let plat = r.path().join("platform/plinth.yaml");
    let t = fs::read_to_string(&plat).expect("read");
    fs::write(
        &plat,
        t.replace("CHG-9 beds to research", "CHG-12 more beds to research"),
    )
    .expect("write");
    r.commit("Dana Smith", "approve the second lowering");
    let (code, v) = plan_strict(&r, "HEAD~2", "HEAD");
    assert_eq!(code, 2, "{v:#}");
}

#[test]
fn an_approval_annotation_left_on_a_spec_approves_nothing_later() {
    let mut r = example_repo();
    let file = r.path().join("platform/gpu/a100-mig.yaml");
    set_allocation(&r, "bed-management", 7, 6);
    let t = fs::read_to_string(&file).expect("read");
    fs::write(
        &file,
        t.replacen(
            "metadata:\n",
            "metadata:\n  annotations:\n    plinth.dev/approve-destructive: CHG-1 capacity moved\n",
            1,
        ),
    )
    .expect("write");
    r.commit("Dana Smith", "lower, approved");
    let (code, v) = plan_strict(&r, "HEAD~1", "HEAD");
    assert_eq!(code, 2, "{v:#}");
    set_allocation(&r, "bed-management", 6, 5);
    r.commit("Mallory", "lower again");
    let (code, v) = plan_strict(&r, "HEAD~1", "HEAD");
    assert_eq!(code, 1, "{v:#}");
    let w = v["warnings"].as_array().expect("w");
    assert!(
        w.iter().any(|w| w["file"] == "platform/gpu/a100-mig.yaml"
            && w["message"]
                .as_str()
                .is_some_and(|m| m.contains("plinth.dev/approve-destructive"))),
        "{v:#}"
    );
    // The refusal offers both ways to approve an update.
    let hint = v["refusals"][0]["hint"].as_str().expect("hint");
    assert!(
        hint.contains("spec.approvals") || hint.contains("approvals:"),
        "{hint}"
    );
    assert!(hint.contains("plinth.dev/approve-destructive"), "{hint}");
}

#[test]
fn an_approval_that_matches_nothing_is_a_warning() {
    let mut r = example_repo();
    add_approvals(
        &r,
        "    - object: Namespace/no-such-team\n      reason: CHG-3\n",
    );
    r.commit("Dana Smith", "approve a typo");
    let (code, v) = plan_strict(&r, "HEAD~1", "HEAD");
    assert_eq!(code, 0, "{v:#}");
    let w = v["warnings"].as_array().expect("w");
    assert!(
        w.iter().any(|w| w["message"]
            .as_str()
            .is_some_and(|m| m.contains("Namespace/no-such-team") && m.contains("matches no"))),
        "{v:#}"
    );
    // A cluster the platform does not have is an error of `plinth check`.
    add_approvals(
        &r,
        "    - object: Namespace/radiology\n      cluster: prod-b\n      reason: CHG-4\n",
    );
    let o = r.plinth(&["check", "platform"]);
    assert_eq!(o.status.code(), Some(1));
    let out = String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr);
    assert!(out.contains("cluster `prod-b` does not exist"), "{out}");
}

#[test]
fn re_pointing_the_agent_or_changing_its_rights_needs_approval() {
    let mut r = example_repo();
    let plat = r.path().join("platform/plinth.yaml");
    let t = fs::read_to_string(&plat).expect("read");
    let agent = "  agent:\n    enabled: true\n    image: registry.example.org/plinth-agent:0.1.0\n    repo: https://git.example.org/platform.git\n    forge: gitea\n    forgeUrl: https://git.example.org/api/v1\n    interval: 1m\n";
    fs::write(&plat, t.replacen("spec:\n", &format!("spec:\n{agent}"), 1)).expect("write");
    r.commit("Base Author", "install the agent");
    // Installing it is no destructive change.
    let (code, _) = plan_strict(&r, "HEAD~1", "HEAD");
    assert_eq!(code, 2);

    // The interval may change freely.
    let t = fs::read_to_string(&plat).expect("read");
    fs::write(&plat, t.replace("interval: 1m", "interval: 2m")).expect("write");
    r.commit("Dana Smith", "sync less often");
    let (code, v) = plan_strict(&r, "HEAD~1", "HEAD");
    assert_eq!(code, 2, "{v:#}");

    for (what, from, to) in [
        (
            "repository",
            "repo: https://git.example.org/platform.git",
            "repo: https://evil.example.net/platform.git",
        ),
        (
            "forge",
            "forgeUrl: https://git.example.org/api/v1",
            "forgeUrl: https://evil.example.net/api/v1",
        ),
        ("image", "plinth-agent:0.1.0", "plinth-agent:0.1.1"),
    ] {
        let before = fs::read_to_string(&plat).expect("read");
        fs::write(&plat, before.replace(from, to)).expect("write");
        r.commit("Mallory", &format!("re-point the agent's {what}"));
        let (code, v) = plan_strict(&r, "HEAD~1", "HEAD");
        assert_eq!(code, 1, "{what}: {v:#}");
        assert!(
            refused_objects(&v)
                .iter()
                .any(|o| o == "Deployment/plinth-system/plinth-agent"),
            "{what}: {v:#}"
        );
        let reasons = v["changes"]
            .as_array()
            .expect("c")
            .iter()
            .find(|c| c["kind"] == "Deployment" && c["name"] == "plinth-agent")
            .map(|c| c["reasons"].to_string())
            .unwrap_or_default();
        assert!(reasons.contains("re-pointed"), "{what}: {reasons}");
        fs::write(&plat, before).expect("restore");
        r.commit("Dana Smith", "undo");
    }
}

/// `plinth plan` of `HEAD~1` → `HEAD` as JSON, with `extra` arguments and its timings
/// (`PLINTH_TIMINGS`) on stderr.
fn plan_timed(r: &Repo, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args([
            "plan", "--base", "HEAD~1", "--head", "HEAD", "--path", "platform", "--format", "json",
        ])
        .args(extra)
        .current_dir(r.path())
        .env("NO_COLOR", "1")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("PLINTH_TIMINGS", "1")
        .output()
        .expect("plinth runs")
}

/// A pool's edit that raises a project's GPUs over the default library's cap changes that
/// project's policy data, not its file: planned against a cached base (the projects' policy-data
/// digests taken from the base's revision but for the entries the edit reaches), the project's
/// unchanged document is judged again and refused, as without the cache.
#[test]
fn a_pool_edit_judges_its_projects_again_against_a_cached_base() {
    let mut r = example_repo();
    let file = r.path().join("platform/gpu/a100.yaml");
    let spec = fs::read_to_string(&file).expect("read");
    let (radiology, er) = (
        "- project: radiology-imaging\n      gpu: 16\n",
        "- project: er-capacity\n      gpu: 8\n",
    );
    assert!(
        spec.contains(radiology) && spec.contains(er),
        "example changed: no allocations of 16 and 8 GPUs in gpu/a100.yaml"
    );
    let spec = spec
        .replace(radiology, "- project: radiology-imaging\n      gpu: 8\n")
        .replace(er, "- project: er-capacity\n      gpu: 18\n");
    fs::write(&file, spec).expect("write");
    r.commit("Dana Smith", "er-capacity takes radiology's A100s");
    let args = [
        "plan", "--base", "HEAD~1", "--head", "HEAD", "--path", "platform", "--format", "json",
    ];
    let cold = r.plinth(&[&args[..], &["--no-cache"]].concat());
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        stderr(&cold).contains("project `er-capacity` is allocated 18 GPUs, over the cap of 16"),
        "the default library's GPU cap denies er-capacity: {}",
        stderr(&cold)
    );
    // The base alone first (cached, its projects' policy data digested), then the head against it.
    let base_only = [
        "plan", "--base", "HEAD~1", "--head", "HEAD~1", "--path", "platform",
    ];
    assert_eq!(r.plinth(&base_only).status.code(), Some(0));
    let cached = r.plinth(&args);
    assert_eq!(stderr(&cached), stderr(&cold));
    assert_eq!(text(&cached), text(&cold));
    assert_eq!(cached.status.code(), cold.status.code());
}

/// A head planned against a base found in the cache is lowered against the base's units: the
/// units the two share are not read (its timings say so), and the plan is the one made
/// without the cache, byte for byte; the head's revision it stores is found whole next time.
#[test]
fn a_head_planned_against_a_cached_base_reads_only_the_units_that_differ() {
    let mut r = example_repo();
    // A first plan caches the base (and its head, the same tree).
    let base = r.plinth(&[
        "plan", "--base", "HEAD", "--head", "HEAD", "--path", "platform", "--format", "json",
    ]);
    assert_eq!(base.status.code(), Some(0), "{}", text(&base));
    set_allocation(&r, "bed-management", 7, 9);
    r.commit("Dana Smith", "bed-management: two more MIG slices");
    let plan = |extra: &[&str]| plan_timed(&r, extra);
    let stderr = |o: &Output| String::from_utf8_lossy(&o.stderr).into_owned();
    let against = plan(&[]);
    assert!(
        stderr(&against).contains("timing head lower (delta)"),
        "{}",
        stderr(&against)
    );
    let whole = plan(&["--no-cache"]);
    assert!(!stderr(&whole).contains("(delta)"), "{}", stderr(&whole));
    assert_eq!(against.status.code(), Some(2), "{}", text(&against));
    assert_eq!(
        String::from_utf8_lossy(&against.stdout),
        String::from_utf8_lossy(&whole.stdout)
    );
    let again = plan(&[]);
    assert!(
        stderr(&again).contains("timing head cache hit"),
        "{}",
        stderr(&again)
    );
    assert_eq!(again.stdout, whole.stdout);
}

/// A base compiled once is found again by its git tree: the next plan reads none of its files
/// (its timings say so) and is the same plan; the head, stored while the first plan compared,
/// is found by its tree too. An alias that cannot be read is only a miss, and is recorded
/// again.
#[test]
fn a_cached_base_is_found_by_its_tree_without_reading_it() {
    let mut r = example_repo();
    set_allocation(&r, "bed-management", 7, 9);
    r.commit("Dana Smith", "bed-management: two more MIG slices");
    let plan = || plan_timed(&r, &[]);
    let by_tree = |o: &Output| String::from_utf8_lossy(&o.stderr).contains("cache hit (by tree)");
    let first = plan();
    assert_eq!(first.status.code(), Some(2), "{}", text(&first));
    assert!(!by_tree(&first), "nothing was cached yet");
    let second = plan();
    assert!(
        by_tree(&second),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    // The head's revision, stored beside the first plan's comparison, is found by its tree too.
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("timing head cache hit (by tree)"),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    assert_eq!(second.stdout, first.stdout);
    assert_eq!(second.status.code(), Some(2));

    let trees = r.path().join(".git/plinth-cache/trees");
    let aliases: Vec<PathBuf> = fs::read_dir(&trees)
        .expect("aliases kept")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(aliases.len(), 2, "the base's tree and the head's");
    for a in &aliases {
        fs::write(a, "not a key").expect("write");
    }
    let third = plan();
    assert!(
        !by_tree(&third),
        "{}",
        String::from_utf8_lossy(&third.stderr)
    );
    assert_eq!(third.stdout, first.stdout);
    let fourth = plan();
    assert!(by_tree(&fourth), "the aliases are recorded again");
    assert!(String::from_utf8_lossy(&fourth.stderr).contains("timing head cache hit (by tree)"));
    assert_eq!(fourth.stdout, first.stdout);

    // An alias whose entry cannot be read: the base is read from git and compiled after all.
    let cache = r.path().join(".git/plinth-cache");
    for d in fs::read_dir(&cache).expect("cache").flatten() {
        if d.file_name().len() == 2 {
            for e in fs::read_dir(d.path()).expect("entries").flatten() {
                if e.path().extension().is_some_and(|x| x == "json") {
                    fs::write(e.path(), "{ damaged").expect("write");
                }
            }
        }
    }
    let fifth = plan();
    assert!(!by_tree(&fifth));
    assert_eq!(fifth.status.code(), Some(2), "{}", text(&fifth));
    assert_eq!(fifth.stdout, first.stdout);
}

/// A head that does not compile is kept in the cache too (its diagnostics), as before its
/// revision was stored beside the comparison: both sides' revisions are there after the plan.
#[test]
fn a_head_that_does_not_compile_is_kept_in_the_cache() {
    let mut r = example_repo();
    let file = r.path().join("platform/projects/bed-management.yaml");
    let spec = fs::read_to_string(&file).expect("read");
    fs::write(&file, spec.replacen("spec:", "spec:\n  notAField: 1", 1)).expect("write");
    r.commit("Dana Smith", "a field plinth does not know");
    let o = r.plinth(&[
        "plan", "--base", "HEAD~1", "--head", "HEAD", "--path", "platform",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("does not compile"));
    let cache = r.path().join(".git/plinth-cache");
    let revisions = fs::read_dir(&cache)
        .expect("cache")
        .flatten()
        .filter(|d| d.file_name().len() == 2)
        .flat_map(|d| fs::read_dir(d.path()).expect("entries").flatten())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .count();
    assert_eq!(revisions, 2, "the base's and the head's");
    // Planned again, it is compiled again and says why it does not compile: a revision with
    // errors is never taken from the cache by its tree.
    let again = r.plinth(&[
        "plan", "--base", "HEAD~1", "--head", "HEAD", "--path", "platform",
    ]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert_eq!(again.stderr, o.stderr);
}

/// A pull request planned again after its base moved: its head, compiled by the first plan, is
/// found by its tree (none of its files listed or read: its timings say so), and the plan is
/// the one made without the cache, byte for byte.
#[test]
fn a_head_planned_again_after_its_base_moved_is_found_by_its_tree() {
    let mut r = example_repo();
    let start = r.git(&["rev-parse", "HEAD"]);
    r.git(&["checkout", "-q", "-b", "change"]);
    set_allocation(&r, "bed-management", 7, 9);
    r.commit("Dana Smith", "bed-management: two more MIG slices");
    let dir = r.path().to_path_buf();
    let plan = |base: &str, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_plinth"))
            .args([
                "plan", "--base", base, "--head", "change", "--path", "platform",
            ])
            .args(["--format", "json"])
            .args(extra)
            .current_dir(&dir)
            .env("NO_COLOR", "1")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("PLINTH_TIMINGS", "1")
            .output()
            .expect("plinth runs")
    };
    let head_by_tree =
        |o: &Output| String::from_utf8_lossy(&o.stderr).contains("timing head cache hit (by tree)");
    let first = plan(&start, &[]);
    assert_eq!(first.status.code(), Some(2), "{}", text(&first));
    assert!(!head_by_tree(&first), "nothing was cached yet");
    // The main branch moves on (another project's quota).
    r.git(&["checkout", "-q", "main"]);
    let file = r.path().join("platform/projects/er-capacity.yaml");
    let spec = fs::read_to_string(&file).expect("read");
    assert!(spec.contains("    pods: 150\n"));
    fs::write(&file, spec.replace("    pods: 150\n", "    pods: 160\n")).expect("write");
    let moved = r.commit("Liam Brennan", "er-capacity: ten more pods");
    let again = plan(&moved, &[]);
    assert!(
        head_by_tree(&again),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let fresh = plan(&moved, &["--no-cache"]);
    assert!(!head_by_tree(&fresh));
    assert_eq!(again.status.code(), fresh.status.code(), "{}", text(&again));
    assert_eq!(
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&fresh.stdout)
    );
    assert_ne!(again.stdout, first.stdout, "the base moved");
}

/// A project edit planned against a cached base takes the base's check and GPU capacity where
/// the edit cannot reach (its timings say so), and the plan is the one made without the cache.
#[test]
fn a_project_edit_takes_the_bases_check_and_capacity() {
    let mut r = example_repo();
    let file = r.path().join("platform/projects/er-capacity.yaml");
    let spec = fs::read_to_string(&file).expect("read");
    let needle = "    memory: 512Gi\n    gpu: 4\n";
    assert!(
        spec.contains(needle),
        "example changed: no per-user GPU limit of 4"
    );
    fs::write(
        &file,
        spec.replace(needle, "    memory: 512Gi\n    gpu: 2\n"),
    )
    .expect("write");
    r.commit("Dana Smith", "a lower per-user GPU limit");
    let args = [
        "plan", "--base", "HEAD~1", "--head", "HEAD", "--path", "platform", "--format", "json",
    ];
    let cold = r.plinth(&[&args[..], &["--no-cache"]].concat());
    assert!(
        text(&cold).contains("\"perUser\""),
        "the capacity section shows it"
    );
    // The base alone first: cached, then found by its tree.
    let base_only = [
        "plan", "--base", "HEAD~1", "--head", "HEAD~1", "--path", "platform",
    ];
    assert_eq!(r.plinth(&base_only).status.code(), Some(0));
    let timed = plan_timed(&r, &[]);
    let stderr = String::from_utf8_lossy(&timed.stderr);
    assert!(stderr.contains("check (against the base)"), "{stderr}");
    assert!(stderr.contains("capacity (against the base)"), "{stderr}");
    assert_eq!(text(&timed), text(&cold));
    assert_eq!(timed.status.code(), cold.status.code());
}
