//! `plinth report`: the page of the example platform, rendered in headless Chromium (Debian's
//! `chromium`, installed by `.ci/run`). The screenshot must not be blank and the DOM must hold
//! the key figures. Without Chromium the browser test fails, unless `PLINTH_SKIP_BROWSER=1`
//! says to skip it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Write the report of `repo` to `out`; the exit code.
fn report(repo: &Path, out: &Path) -> i32 {
    let o = Command::new(env!("CARGO_BIN_EXE_plinth"))
        .args(["report"])
        .arg(repo)
        .arg("--out")
        .arg(out)
        .output()
        .expect("plinth runs");
    assert!(
        out.exists(),
        "no report written: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.status.code().unwrap_or(-1)
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser"]
        .iter()
        .flat_map(|n| std::env::split_paths(&path).map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

/// Run headless Chromium on `url` with `extra` arguments; its standard output.
fn run_chromium(bin: &Path, profile: &Path, extra: &[String], url: &str) -> Vec<u8> {
    let o = Command::new(bin)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("chromium runs");
    assert!(
        o.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    o.stdout
}

/// Width, height and the total size of the compressed image data (IDAT chunks) of a PNG.
fn png_facts(png: &[u8]) -> (u32, u32, usize) {
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let (mut at, mut w, mut h, mut idat) = (8usize, 0, 0, 0usize);
    while at + 8 <= png.len() {
        let len = be(&png[at..]) as usize;
        let kind = &png[at + 4..at + 8];
        let data = &png[at + 8..at + 8 + len];
        if kind == b"IHDR" {
            (w, h) = (be(data), be(&data[4..]));
        } else if kind == b"IDAT" {
            idat += len;
        }
        at += 12 + len;
    }
    (w, h, idat)
}

#[test]
fn the_page_is_self_contained_and_escapes_user_text() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.html");
    assert_eq!(report(&root().join("examples/repo"), &out), 0);
    let html = std::fs::read_to_string(&out).unwrap();
    // Nothing loaded from anywhere: no script, no external resource, a CSP that forbids them.
    for banned in [
        "<script",
        " src=",
        " href=",
        "@import",
        "url(",
        "<link",
        "@font-face",
    ] {
        assert!(!html.contains(banned), "the page holds {banned:?}");
    }
    assert!(html.contains("default-src 'none'"));
    // The same repository gives the same page.
    let again = dir.path().join("again.html");
    report(&root().join("examples/repo"), &again);
    assert_eq!(html, std::fs::read_to_string(&again).unwrap());

    // Hostile text in a display name and a user name stays text.
    let mut files = common::example();
    common::edit(
        &mut files,
        "gpu/a100.yaml",
        "displayName: NVIDIA A100 80GB (whole GPUs)",
        "displayName: \"<script>alert(1)</script><img src=x onerror=alert(2)>\"",
    );
    common::edit(
        &mut files,
        "projects/radiology-imaging.yaml",
        "displayName: Radiology Imaging AI",
        "displayName: \"Radiology </td><b onmouseover=x>AI\"",
    );
    let repo = dir.path().join("hostile");
    for (p, t) in &files {
        let f = repo.join(p);
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, t).unwrap();
    }
    let out = dir.path().join("hostile.html");
    assert_eq!(report(&repo, &out), 0);
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(
        !html.contains("<script") && !html.contains("<img") && !html.contains("<b onmouseover")
    );
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;")
    );
    assert!(html.contains("Radiology &lt;/td&gt;&lt;b onmouseover=x&gt;AI"));
}

#[test]
fn chromium_renders_the_example_report() {
    let Some(bin) = chromium() else {
        if std::env::var_os("PLINTH_SKIP_BROWSER").is_some_and(|v| v == "1") {
            eprintln!("skipped: no chromium and PLINTH_SKIP_BROWSER=1");
            return;
        }
        panic!(
            "headless Chromium is needed (`apt-get install chromium`, as .ci/run does); set PLINTH_SKIP_BROWSER=1 to skip this test"
        );
    };
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("report.html");
    assert_eq!(report(&root().join("examples/repo"), &page), 0);
    let url = format!("file://{}", page.display());

    // The DOM as the browser built it holds the key figures, per cluster.
    let dom = String::from_utf8(run_chromium(
        &bin,
        &dir.path().join("profile-dom"),
        &["--dump-dom".to_owned()],
        &url,
    ))
    .unwrap();
    let prod = &dom[dom.find("id=\"cluster-prod-a\"").expect("prod-a")
        ..dom.find("id=\"cluster-research-b\"").expect("research-b")];
    let research = &dom[dom.find("id=\"cluster-research-b\"").unwrap()..];
    for (text, figure) in [
        (prod, "28 of 32"),     // a100: allocations of capacity
        (prod, "42 of 49"),     // a100-mig in prod-a
        (research, "21 of 28"), // a100-mig in research-b (radiology only)
        (prod, "<b class=\"capacity\">32</b>"),
        (prod, "chest-xray-triage"),
        (prod, "v4 100% · v5 0%"),   // blue-green split
        (prod, "v13 100% · v14 0%"), // shadow
        (prod, "8 × a100-mig"),      // 2 GPUs × 2 replicas × 2 versions
        (prod, "read-write"),
        (research, "chest-xray"), // a dataset mounted on research-b only
    ] {
        assert!(text.contains(figure), "{figure:?} not in the DOM");
    }
    assert!(
        !prod.contains("chest-xray</code><br>"),
        "the research-only dataset is listed in prod-a"
    );

    // The screenshot is not blank: its compressed image data is many times that of a blank
    // page of the same size (a uniform image compresses to almost nothing).
    let shot = |html: &Path, name: &str| {
        let png = dir.path().join(format!("{name}.png"));
        run_chromium(
            &bin,
            &dir.path().join(format!("profile-{name}")),
            &[
                format!("--screenshot={}", png.display()),
                "--window-size=1280,2000".to_owned(),
            ],
            &format!("file://{}", html.display()),
        );
        png_facts(&std::fs::read(&png).expect("screenshot written"))
    };
    let blank = dir.path().join("blank.html");
    std::fs::write(&blank, "<!DOCTYPE html><html><body></body></html>").unwrap();
    let (bw, bh, blank_size) = shot(&blank, "blank");
    let (w, h, size) = shot(&page, "report");
    assert_eq!((w, h), (bw, bh));
    assert_eq!((w, h), (1280, 2000));
    assert!(
        size > 10 * blank_size.max(1) && size > 50_000,
        "the screenshot looks blank: {size} bytes of image data (blank page: {blank_size})"
    );
}
