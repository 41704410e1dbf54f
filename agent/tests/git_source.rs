//! The git source: fetching a branch over `file://`, `git://` (the real `git daemon`) and
//! `http://` (the real `git http-backend`, with and without a token), ancestry after a
//! force-push, fetch errors as values, compiling a commit in memory, and commit signature
//! verification (SSH allowed signers, OpenPGP keyring) on commits signed by the `git` CLI.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::atomic::AtomicBool;

use common::git::{GitDaemon, GitHttp, Repo, git};
use common::{PLATFORM, project};
use gix::ObjectId;
use plinth_agent::compile::{self, CompileOptions, Compiled};
use plinth_agent::signature::{self, Verdict, Verifier};
use plinth_agent::source::{Auth, Mirror, Remote, SourceError};

fn remote(url: &str) -> Remote {
    Remote {
        url: url.to_owned(),
        branch: "main".into(),
        auth: Auth::default(),
    }
}

fn id(hex: &str) -> ObjectId {
    ObjectId::from_hex(hex.as_bytes()).unwrap()
}

fn platform_repo() -> Repo {
    let r = Repo::new();
    r.write("platform/plinth.yaml", PLATFORM);
    let (p, t) = project("er-capacity", Some("32"));
    r.write(&format!("platform/{p}"), &t);
    r.publish("a first project");
    r
}

/// Fetch twice (the second time a new commit) and check what the mirror holds.
fn fetch_twice(r: &Repo, rem: &Remote) {
    let cache = tempfile::tempdir().unwrap();
    let m = Mirror::open(&cache.path().join("mirror")).unwrap();
    let no = AtomicBool::new(false);
    let first = m.fetch(rem, &no).unwrap();
    assert_eq!(first.to_string(), r.head());
    let (p, t) = project("icu", None);
    r.write(&format!("platform/{p}"), &t);
    let second_id = r.publish("a second project");
    let second = m.fetch(rem, &no).unwrap();
    assert_eq!(second.to_string(), second_id);
    assert!(m.descends_from(second, first).unwrap());
    assert!(!m.descends_from(first, second).unwrap());
    assert_eq!(m.head(rem).unwrap(), Some(second));
    let info = m.commit(second).unwrap();
    assert_eq!(info.author, "Dana Scully");
    assert_eq!(info.summary, "a second project");

    // The platform at the fetched commit, compiled in memory.
    let opts = CompileOptions {
        cluster: "prod".into(),
        path: "platform".into(),
        policies: true,
        cache: false,
    };
    let repo = m.plinth_repo().unwrap();
    match compile::compile(&repo, second, &opts).unwrap() {
        Compiled::Ok(d) => {
            assert_eq!(d.cluster, "prod");
            assert!(
                d.objects
                    .iter()
                    .any(|o| o.key.to_string() == "Namespace icu")
            );
            assert!(
                d.objects
                    .iter()
                    .any(|o| o.source.starts_with("projects/icu.yaml:"))
            );
        }
        Compiled::Rejected { summary, .. } => panic!("{summary}"),
    }
    let other = CompileOptions {
        cluster: "staging".into(),
        ..opts.clone()
    };
    match compile::compile(&repo, second, &other).unwrap() {
        Compiled::Rejected { summary, .. } => {
            assert!(summary.contains("no cluster `staging`"), "{summary}");
        }
        Compiled::Ok(_) => panic!("no such cluster"),
    }
}

/// Commits compiled through plinth's cache in the mirror give what a cold compile gives: the
/// first (filling it), the next one (a file away, through its units and blobs) and each again
/// (whole-revision hits), the same objects and lock hash; a commit that does not check is
/// rejected the same way, cached or not.
#[test]
fn commits_compiled_through_the_mirrors_cache_are_what_a_cold_compile_gives() {
    let r = platform_repo();
    let rem = remote(&r.file_url());
    let dir = tempfile::tempdir().unwrap();
    let m = Mirror::open(&dir.path().join("mirror")).unwrap();
    let no = AtomicBool::new(false);
    let first = m.fetch(&rem, &no).unwrap();
    let (p, t) = project("icu", None);
    r.write(&format!("platform/{p}"), &t);
    r.publish("a second project");
    let second = m.fetch(&rem, &no).unwrap();
    r.write(
        "platform/projects/broken.yaml",
        "kind: Project\nmetadata: {name: Broken}\n",
    );
    r.publish("a broken project");
    let third = m.fetch(&rem, &no).unwrap();
    let cold = CompileOptions {
        cluster: "prod".into(),
        path: "platform".into(),
        policies: true,
        cache: false,
    };
    let cached = CompileOptions {
        cache: true,
        ..cold.clone()
    };
    let repo = m.plinth_repo().unwrap();
    let seen = |c: Compiled| match c {
        Compiled::Ok(d) => format!(
            "{} {}",
            d.revision,
            d.objects
                .iter()
                .map(|o| format!("{} {} {}", o.key, o.hash, o.object))
                .collect::<Vec<_>>()
                .join("\n")
        ),
        Compiled::Rejected { summary, details } => format!("rejected: {summary}\n{details}"),
    };
    for (round, commit) in [first, second, first, second, third, third]
        .into_iter()
        .enumerate()
    {
        let want = seen(compile::compile(&repo, commit, &cold).unwrap());
        let got = seen(compile::compile(&repo, commit, &cached).unwrap());
        assert_eq!(got, want, "round {round}");
        assert_eq!(want.starts_with("rejected"), commit == third, "{want}");
    }
    let kept = repo.git_dir().join("plinth-cache");
    assert!(kept.join("units").is_dir(), "units are kept in the mirror");
    assert!(
        kept.join("blobs/pack").is_file(),
        "blobs are kept in the mirror"
    );
}

#[test]
fn fetches_over_file_urls() {
    let r = platform_repo();
    fetch_twice(&r, &remote(&r.file_url()));
}

#[test]
fn fetches_from_git_daemon() {
    let r = platform_repo();
    let daemon = GitDaemon::start(&r.remote_root());
    fetch_twice(&r, &remote(&daemon.url("platform.git")));
}

#[test]
fn fetches_over_http_with_and_without_a_token() {
    let r = platform_repo();
    let open = GitHttp::start(&r.remote_root(), None);
    fetch_twice(&r, &remote(&open.url("platform.git")));

    let guarded = GitHttp::start(&r.remote_root(), Some("x-access-token:s3cret"));
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret\n").unwrap();
    let mut rem = remote(&guarded.url("platform.git"));
    rem.auth = Auth {
        token_file: Some(token.clone()),
        username: "x-access-token".into(),
        ..Auth::default()
    };
    let m = Mirror::open(&dir.path().join("mirror")).unwrap();
    let got = m.fetch(&rem, &AtomicBool::new(false)).unwrap();
    assert_eq!(got.to_string(), r.head());
    let seen = guarded.auth_seen.lock().unwrap().clone();
    assert!(
        seen.iter().any(|a| a.as_deref()
            == Some(&format!("Basic {}", common::git::base64(b"x-access-token:s3cret"))[..])),
        "{seen:?}"
    );

    // A wrong token (rotated in the file) is an error value, with no secret in it.
    std::fs::write(&token, "wrong").unwrap();
    let m2 = Mirror::open(&dir.path().join("mirror2")).unwrap();
    let e = m2.fetch(&rem, &AtomicBool::new(false)).unwrap_err();
    assert!(matches!(e, SourceError::Fetch { .. }), "{e}");
    assert!(!e.to_string().contains("wrong"), "{e}");
    // No token at all: never prompted, an error.
    rem.auth.token_file = None;
    let e = m2.fetch(&rem, &AtomicBool::new(false)).unwrap_err();
    assert!(matches!(e, SourceError::Fetch { .. }), "{e}");
}

#[test]
fn unreachable_remotes_and_missing_branches_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let m = Mirror::open(&dir.path().join("mirror")).unwrap();
    let no = AtomicBool::new(false);
    let port = common::git::free_port();
    let e = m
        .fetch(&remote(&format!("git://127.0.0.1:{port}/nothing.git")), &no)
        .unwrap_err();
    assert!(e.to_string().contains("fetching `main`"), "{e}");
    let e = m
        .fetch(
            &remote(&format!("http://127.0.0.1:{port}/nothing.git")),
            &no,
        )
        .unwrap_err();
    assert!(matches!(e, SourceError::Fetch { .. }), "{e}");
    let r = platform_repo();
    let mut rem = remote(&r.file_url());
    rem.branch = "release".into();
    let e = m.fetch(&rem, &no).unwrap_err();
    assert!(matches!(e, SourceError::Fetch { .. }), "{e}");
}

#[test]
fn a_force_push_is_not_a_descendant() {
    let r = platform_repo();
    let cache = tempfile::tempdir().unwrap();
    let m = Mirror::open(cache.path()).unwrap();
    let no = AtomicBool::new(false);
    let rem = remote(&r.file_url());
    let (p, t) = project("icu", None);
    r.write(&format!("platform/{p}"), &t);
    let applied = id(&r.publish("icu"));
    assert_eq!(m.fetch(&rem, &no).unwrap(), applied);
    r.git(&["reset", "-q", "--hard", "HEAD~1"]);
    let (p, t) = project("lab", None);
    r.write(&format!("platform/{p}"), &t);
    r.commit("lab instead");
    r.force_push();
    let rewritten = m.fetch(&rem, &no).unwrap();
    assert_ne!(rewritten, applied);
    assert!(!m.descends_from(rewritten, applied).unwrap());
}

fn ssh_keygen(dir: &Path, name: &str) -> (String, String) {
    let key = dir.join(name);
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", name, "-f"])
        .arg(&key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let public = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    (key.display().to_string(), public.trim().to_owned())
}

#[test]
fn ssh_signatures_are_verified_against_allowed_signers() {
    let r = platform_repo();
    let keys = tempfile::tempdir().unwrap();
    let (dana, dana_pub) = ssh_keygen(keys.path(), "dana");
    let (_eve, eve_pub) = ssh_keygen(keys.path(), "eve");
    let allowed = keys.path().join("allowed_signers");
    std::fs::write(&allowed, format!("dana@acme.example {dana_pub}\n")).unwrap();
    let verifier = Verifier::Ssh {
        allowed_signers: allowed,
    };
    git(&r.work, &["config", "gpg.format", "ssh"]);
    git(&r.work, &["config", "user.signingkey", &dana]);
    r.write("platform/README.md", "signed\n");
    git(&r.work, &["add", "-A"]);
    git(&r.work, &["commit", "-q", "-S", "-m", "signed by dana"]);
    let signed = id(&r.head());
    git(
        &r.work,
        &["commit", "-q", "--allow-empty", "-m", "unsigned"],
    );
    let unsigned = id(&r.head());
    let eve_key = keys.path().join("eve");
    git(
        &r.work,
        &["config", "user.signingkey", eve_key.to_str().unwrap()],
    );
    git(
        &r.work,
        &["commit", "-q", "--allow-empty", "-S", "-m", "signed by eve"],
    );
    let by_eve = id(&r.head());
    assert!(eve_pub.starts_with("ssh-ed25519"));
    r.push();

    let cache = tempfile::tempdir().unwrap();
    let m = Mirror::open(cache.path()).unwrap();
    m.fetch(&remote(&r.file_url()), &AtomicBool::new(false))
        .unwrap();
    let check = |c: ObjectId| {
        let s = m.signature(c).unwrap();
        signature::verify(
            &verifier,
            s.as_ref().map(|s| (&s.signature[..], &s.payload[..])),
        )
    };
    assert_eq!(
        check(signed),
        Verdict::Trusted {
            signer: "dana@acme.example".into()
        }
    );
    assert_eq!(check(unsigned), Verdict::Unsigned);
    assert!(
        matches!(check(by_eve), Verdict::Untrusted(_)),
        "{:?}",
        check(by_eve)
    );
    // A tampered payload does not verify.
    let s = m.signature(signed).unwrap().unwrap();
    let mut payload = s.payload.clone();
    payload.extend_from_slice(b"\nextra");
    assert!(matches!(
        signature::verify(&verifier, Some((&s.signature, &payload))),
        Verdict::Untrusted(_)
    ));
    // An OpenPGP verifier does not take an SSH signature.
    let gpg = Verifier::Gpg {
        keyring: "/nonexistent".into(),
    };
    assert!(matches!(
        signature::verify(&gpg, Some((&s.signature, &s.payload))),
        Verdict::Untrusted(_)
    ));
}

/// `gpg` with a throwaway home; its agent is stopped on drop.
struct Gpg {
    home: tempfile::TempDir,
}

impl Gpg {
    fn new() -> Gpg {
        let home = tempfile::tempdir().unwrap();
        Gpg { home }
    }
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("gpg")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args)
            .output()
            .unwrap()
    }
}

impl Drop for Gpg {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .arg("--homedir")
            .arg(self.home.path())
            .args(["--kill", "all"])
            .output();
    }
}

#[test]
fn openpgp_signatures_are_verified_against_a_keyring() {
    if Command::new("gpg").arg("--version").output().is_err() {
        eprintln!("gpg is not installed; skipping");
        return;
    }
    let r = platform_repo();
    let g = Gpg::new();
    let out = g.run(&[
        "--quick-gen-key",
        "Dana Scully <dana@acme.example>",
        "ed25519",
        "sign",
        "never",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let keyring = g.home.path().join("trusted.gpg");
    let out = g.run(&["--export", "--output", keyring.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let wrapper = g.home.path().join("gpg.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexec gpg --homedir '{}' --batch --pinentry-mode loopback --passphrase '' \"$@\"\n",
            g.home.path().display()
        ),
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    git(
        &r.work,
        &["config", "gpg.program", wrapper.to_str().unwrap()],
    );
    git(&r.work, &["config", "user.signingkey", "dana@acme.example"]);
    git(
        &r.work,
        &[
            "commit",
            "-q",
            "--allow-empty",
            "-S",
            "-m",
            "signed with gpg",
        ],
    );
    let signed = id(&r.head());
    r.push();
    let cache = tempfile::tempdir().unwrap();
    let m = Mirror::open(cache.path()).unwrap();
    m.fetch(&remote(&r.file_url()), &AtomicBool::new(false))
        .unwrap();
    let s = m.signature(signed).unwrap().unwrap();
    let v = signature::verify(
        &Verifier::Gpg {
            keyring: keyring.clone(),
        },
        Some((&s.signature, &s.payload)),
    );
    assert!(
        matches!(&v, Verdict::Trusted { signer } if signer.contains("dana@acme.example")),
        "{v:?}"
    );
    // Another keyring: untrusted.
    let empty = g.home.path().join("empty.gpg");
    std::fs::write(&empty, b"").unwrap();
    let v = signature::verify(
        &Verifier::Gpg { keyring: empty },
        Some((&s.signature, &s.payload)),
    );
    assert!(matches!(v, Verdict::Untrusted(_)), "{v:?}");
}
