//! The git source: a bare mirror of one branch of a remote, fetched with `gix`, and the
//! history questions the loop asks of it (is the new commit a descendant of the applied one,
//! who wrote it, is it signed).
//!
//! Transports: `file://` and local paths (spawns `git upload-pack`), `git://`, `http(s)://`
//! (a token read from a file as the password, re-read on every fetch so rotated secrets take
//! effect) and `ssh://` / `user@host:path` (the system `ssh` with a key file and a known-hosts
//! file). Credentials are never prompted for and never taken from the environment or a global
//! git configuration: the mirror is opened isolated.
//!
//! Blocking: call [`Mirror::fetch`] from `tokio::task::spawn_blocking`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::ObjectId;
use gix::bstr::ByteSlice;
use plinth::load::git::{CommitInfo, GitRepo};

use crate::error::chain;

/// A failed fetch or history question.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    /// The cache directory cannot be used.
    #[error("git cache `{path}`: {message}")]
    Cache { path: String, message: String },
    /// The remote could not be reached or refused us.
    #[error("fetching `{branch}` from {url}: {message}")]
    Fetch {
        url: String,
        branch: String,
        message: String,
    },
    /// A token or key file could not be read.
    #[error("cannot read `{path}`: {message}")]
    Secret { path: String, message: String },
    /// Reading the local mirror failed.
    #[error("git: {0}")]
    Git(String),
}

/// How to authenticate to the remote.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    /// A file holding a token, sent as the password over http(s).
    pub token_file: Option<PathBuf>,
    /// The user name sent with the token (`x-access-token` for GitHub, `oauth2` for GitLab).
    pub username: String,
    /// A private key for ssh remotes.
    pub ssh_key_file: Option<PathBuf>,
    /// `known_hosts` for ssh remotes; without it, host keys are not checked (say so in logs).
    pub known_hosts_file: Option<PathBuf>,
}

/// One branch of a remote.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: String,
    pub branch: String,
    pub auth: Auth,
}

impl Remote {
    /// The URL with any password removed, for logs and statuses.
    pub fn display_url(&self) -> String {
        redact_url(&self.url)
    }

    /// The local ref the branch is fetched into.
    pub fn tracking_ref(&self) -> String {
        format!("refs/remotes/origin/{}", self.branch)
    }
}

/// `https://user:secret@host/x` → `https://(redacted)@host/x`: the whole userinfo goes, as a
/// token is as often put in the user name as in the password.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://(redacted)@{host}{tail}"),
        None => url.to_owned(),
    }
}

/// The secrets of an http(s) URL's userinfo (user name and password), to scrub from messages.
pub fn url_secrets(url: &str) -> Vec<String> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return Vec::new();
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some((userinfo, _)) = rest[..end].rsplit_once('@') else {
        return Vec::new();
    };
    userinfo
        .split(':')
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `text` with every secret in `secrets` replaced by `(redacted)`, and whatever
/// [`plinth::redact::text`] recognises (URL userinfo, token formats) dropped too.
pub fn scrub(text: &str, secrets: &[String]) -> String {
    let mut out = text.to_owned();
    for s in secrets {
        if !s.is_empty() {
            out = out.replace(s.as_str(), "(redacted)");
        }
    }
    plinth::redact::text(&out).into_owned()
}

/// Where a credential may go: a URL's scheme, host and port (the scheme's default port when
/// none is written).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub scheme: String,
    pub host: String,
    pub port: Option<u16>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        Ok(())
    }
}

impl Origin {
    /// The origin of a `scheme://…` URL; `None` for scp-like addresses and paths.
    pub fn of(url: &str) -> Option<Origin> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let authority = &rest[..end];
        let hostport = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let (host, port) = if let Some(r) = hostport.strip_prefix('[') {
            let (h, after) = r.split_once(']')?;
            (h, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = match port {
            Some(p) if !p.is_empty() => Some(p.parse().ok()?),
            _ => match scheme.as_str() {
                "https" => Some(443),
                "http" => Some(80),
                "ssh" => Some(22),
                "git" => Some(9418),
                _ => None,
            },
        };
        Some(Origin {
            scheme,
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// `localhost` or a loopback address: traffic that never leaves the machine.
    pub fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self
                .host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// Refuse to send a token in clear text: `url` (a remote or a forge API, named `what` in the
/// message) must be `https://` when `carries_token`, unless it is a loopback address or
/// `allow_insecure` (`--allow-insecure-http`).
pub fn require_https(
    url: &str,
    carries_token: bool,
    allow_insecure: bool,
    what: &str,
) -> Result<(), String> {
    let carries_token = carries_token || !url_secrets(url).is_empty();
    let Some(origin) = Origin::of(url) else {
        return Ok(());
    };
    if origin.scheme == "http" && carries_token && !origin.is_loopback() && !allow_insecure {
        return Err(format!(
            "{what} `{}` would receive the token in clear text over `http://`: use `https://`, or pass `--allow-insecure-http` (a network you trust)",
            redact_url(url)
        ));
    }
    Ok(())
}

/// Make `dir` the agent's private directory: created `0700` when missing; an existing one must
/// be owned by the agent's user and closed to everyone else, else it is refused (someone else
/// could plant a git configuration or objects in it).
pub fn private_dir(dir: &Path) -> Result<(), String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
        if !dir.exists() {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| e.to_string())?;
        }
        let meta = std::fs::symlink_metadata(dir).map_err(|e| e.to_string())?;
        if !meta.is_dir() {
            return Err("not a directory (a symbolic link is refused too)".into());
        }
        // Who we are, without libc: the owner of a file we create.
        let probe = dir.join(".plinth-owner");
        std::fs::write(&probe, b"").map_err(|e| e.to_string())?;
        let me = std::fs::metadata(&probe).map_err(|e| e.to_string())?.uid();
        let _ = std::fs::remove_file(&probe);
        if meta.uid() != me {
            return Err(format!(
                "owned by user {} and not by the agent's user {me}",
                meta.uid()
            ));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            // An empty directory of ours (a fresh temporary one) is simply closed; one with
            // content may hold what someone else put there.
            let empty = std::fs::read_dir(dir)
                .map_err(|e| e.to_string())?
                .next()
                .is_none();
            if !empty {
                return Err(format!(
                    "open to other users (mode {mode:04o}): `chmod 700` it, or point `--cache-dir` at a directory of its own"
                ));
            }
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| e.to_string())?;
        }
    }
    #[cfg(not(unix))]
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    Ok(())
}

/// The mirror's own configuration: nothing but what a bare repository needs. Written over
/// whatever is there before each fetch, so no `core.sshCommand`, `http.*`, `protocol.*`,
/// `credential.*` or include planted in the mirror is ever read.
const MIRROR_CONFIG: &str =
    "[core]\n\trepositoryformatversion = 0\n\tfilemode = true\n\tbare = true\n";

/// A bare repository holding what was fetched.
#[derive(Debug, Clone)]
pub struct Mirror {
    dir: PathBuf,
}

fn git_err(e: impl std::fmt::Display) -> SourceError {
    SourceError::Git(e.to_string())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

impl Mirror {
    /// The mirror in `dir` (a private directory, see [`private_dir`]), created (bare) if it
    /// does not exist yet; its configuration reset to [`MIRROR_CONFIG`] and its hooks removed.
    pub fn open(dir: &Path) -> Result<Mirror, SourceError> {
        let cache = |e: &dyn std::fmt::Display| SourceError::Cache {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        private_dir(dir).map_err(|e| cache(&e))?;
        // Absolute: repository discovery misreads relative paths such as `../cache`.
        let dir = std::fs::canonicalize(dir).map_err(|e| cache(&e))?;
        if !dir.join("HEAD").exists() {
            gix::init_bare(&dir).map_err(|e| cache(&e))?;
        }
        let mirror = Mirror { dir };
        mirror.distrust().map_err(|e| cache(&e))?;
        if gix::open_opts(&mirror.dir, gix::open::Options::isolated()).is_err() {
            gix::init_bare(&mirror.dir).map_err(|e| cache(&e))?;
        }
        Ok(mirror)
    }

    /// Put back the mirror's own configuration and drop any hooks.
    fn distrust(&self) -> std::io::Result<()> {
        let config = self.dir.join("config");
        if std::fs::read_to_string(&config).ok().as_deref() != Some(MIRROR_CONFIG) {
            std::fs::write(&config, MIRROR_CONFIG)?;
        }
        let hooks = self.dir.join("hooks");
        if hooks.exists() {
            std::fs::remove_dir_all(&hooks)?;
        }
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn repo(&self, overrides: Vec<String>) -> Result<gix::Repository, SourceError> {
        // Neither the system's, the user's nor the environment's configuration; the mirror's
        // own is reset before each fetch ([`Mirror::distrust`]).
        let opts = gix::open::Options::isolated().config_overrides(overrides);
        gix::open_opts(&self.dir, opts).map_err(git_err)
    }

    /// Fetch the branch; returns the commit it points at. `interrupt` aborts a running fetch.
    pub fn fetch(&self, remote: &Remote, interrupt: &AtomicBool) -> Result<ObjectId, SourceError> {
        let token = match &remote.auth.token_file {
            Some(p) => Some(read_secret(p)?).filter(|t| !t.is_empty()),
            None => None,
        };
        // Whatever could carry a secret in an error message is scrubbed from it.
        let mut secrets = url_secrets(&remote.url);
        secrets.extend(token.clone());
        let fetch_err = |m: String| SourceError::Fetch {
            url: remote.display_url(),
            branch: remote.branch.clone(),
            message: scrub(&m.replace(&remote.url, &remote.display_url()), &secrets),
        };
        self.distrust()
            .map_err(|e| fetch_err(format!("resetting the mirror's configuration: {e}")))?;
        let mut overrides = vec![
            // Identify ourselves to servers.
            format!(
                "gitoxide.userAgent=plinth-agent/{}",
                env!("CARGO_PKG_VERSION")
            ),
        ];
        // The ssh command is always ours (never one from a configuration file).
        let hosts = match &remote.auth.known_hosts_file {
            Some(k) => format!(
                "-o StrictHostKeyChecking=yes -o UserKnownHostsFile={}",
                shell_quote(&k.display().to_string())
            ),
            None => "-o StrictHostKeyChecking=accept-new".to_owned(),
        };
        let key = match &remote.auth.ssh_key_file {
            Some(key) => format!(
                "-i {} -o IdentitiesOnly=yes ",
                shell_quote(&key.display().to_string())
            ),
            None => String::new(),
        };
        overrides.push(format!("core.sshCommand=ssh {key}-o BatchMode=yes {hosts}"));
        let username = if remote.auth.username.is_empty() {
            "plinth".to_owned()
        } else {
            remote.auth.username.clone()
        };
        let repo = self.repo(overrides)?;
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", remote.branch);
        let r = repo
            // No `url.*.insteadOf` rewriting: the remote is the URL given, nothing else.
            .remote_at_without_url_rewrite(remote.url.as_str())
            .map_err(|e| fetch_err(format!("not a usable URL: {e}")))?
            .with_refspecs([refspec.as_str()], gix::remote::Direction::Fetch)
            .map_err(|e| fetch_err(e.to_string()))?;
        let conn = r
            .connect(gix::remote::Direction::Fetch)
            .map_err(|e| fetch_err(chain(&e)))?;
        // The token goes to the remote's own scheme, host and port, and nowhere else (not to
        // the host a redirect leads to).
        let home = Origin::of(&remote.url);
        let conn = conn.with_credentials(move |action| match action {
            gix::credentials::helper::Action::Get(ctx) => {
                let asked = ctx
                    .url
                    .as_ref()
                    .and_then(|u| Origin::of(&u.to_str_lossy()));
                if token.is_some() && (home.is_none() || asked != home) {
                    tracing::warn!(
                        asked = %asked.as_ref().map_or_else(|| "an unknown URL".to_owned(), ToString::to_string),
                        "not sending the token: the request is not for the remote's origin (a redirect?)"
                    );
                    return Ok(None);
                }
                Ok(token.as_ref().map(|t| gix::credentials::protocol::Outcome {
                    identity: gix::sec::identity::Account {
                        username: username.clone(),
                        password: t.clone(),
                        oauth_refresh_token: None,
                    },
                    next: ctx.into(),
                }))
            }
            _ => Ok(None),
        });
        let prepared = conn
            .prepare_fetch(gix::progress::Discard, Default::default())
            .map_err(|e| fetch_err(chain(&e)))?;
        prepared
            .receive(gix::progress::Discard, interrupt)
            .map_err(|e| fetch_err(chain(&e)))?;
        let repo = self.repo(Vec::new())?;
        let mut r = repo
            .find_reference(remote.tracking_ref().as_str())
            .map_err(|e| fetch_err(format!("branch `{}` not found: {e}", remote.branch)))?;
        let id = r.peel_to_id().map_err(git_err)?;
        Ok(id.detach())
    }

    /// The commit the tracking ref points at, as last fetched.
    pub fn head(&self, remote: &Remote) -> Result<Option<ObjectId>, SourceError> {
        let repo = self.repo(Vec::new())?;
        let Ok(mut r) = repo.find_reference(remote.tracking_ref().as_str()) else {
            return Ok(None);
        };
        Ok(Some(r.peel_to_id().map_err(git_err)?.detach()))
    }

    /// plinth's view of the mirror: sources at any commit, commit facts, history.
    pub fn plinth_repo(&self) -> Result<GitRepo, SourceError> {
        GitRepo::open_isolated(&self.dir).map_err(git_err)
    }

    /// Whether `commit` is `ancestor` or one of its descendants.
    pub fn descends_from(&self, commit: ObjectId, ancestor: ObjectId) -> Result<bool, SourceError> {
        if commit == ancestor {
            return Ok(true);
        }
        let repo = self.repo(Vec::new())?;
        if repo.find_object(ancestor).is_err() {
            // The applied commit is no longer anywhere in the fetched history.
            return Ok(false);
        }
        let walk = repo.rev_walk([commit]).all().map_err(git_err)?;
        for info in walk {
            let info = info.map_err(git_err)?;
            if info.id == ancestor {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Facts about a commit.
    pub fn commit(&self, id: ObjectId) -> Result<CommitInfo, SourceError> {
        self.plinth_repo()?.commit(id).map_err(git_err)
    }

    /// A commit's signature (the `gpgsig` header) and the bytes it signs; `None` when unsigned.
    pub fn signature(&self, id: ObjectId) -> Result<Option<Signed>, SourceError> {
        let repo = self.repo(Vec::new())?;
        let commit = repo
            .find_object(id)
            .map_err(git_err)?
            .try_into_commit()
            .map_err(git_err)?;
        let Some((sig, signed)) = commit.signature().map_err(git_err)? else {
            return Ok(None);
        };
        Ok(Some(Signed {
            signature: sig.as_bytes().to_vec(),
            payload: signed.to_bstring().to_vec(),
        }))
    }
}

/// A signed commit's signature and the bytes it covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// Armored (`-----BEGIN SSH SIGNATURE-----`, `-----BEGIN PGP SIGNATURE-----`).
    pub signature: Vec<u8>,
    /// The commit object without its `gpgsig` header.
    pub payload: Vec<u8>,
}

/// A secret file's content, trimmed.
pub fn read_secret(p: &Path) -> Result<String, SourceError> {
    std::fs::read_to_string(p)
        .map(|s| s.trim().to_owned())
        .map_err(|e| SourceError::Secret {
            path: p.display().to_string(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins() {
        let o = |u: &str| Origin::of(u).map(|o| o.to_string());
        assert_eq!(
            o("https://GitHub.com/a/b").as_deref(),
            Some("https://github.com:443")
        );
        assert_eq!(
            o("http://u:p@127.0.0.1:8080/x").as_deref(),
            Some("http://127.0.0.1:8080")
        );
        assert_eq!(o("http://[::1]:9/x").as_deref(), Some("http://::1:9"));
        assert_eq!(o("git@github.com:a/b.git"), None);
        assert!(Origin::of("http://[::1]/").is_some_and(|o| o.is_loopback()));
        assert!(Origin::of("http://localhost:1/").is_some_and(|o| o.is_loopback()));
        assert!(!Origin::of("http://10.0.0.1/").is_some_and(|o| o.is_loopback()));
        assert!(require_https("http://git.example/a.git", true, false, "the remote").is_err());
        assert!(require_https("http://u:t@git.example/a.git", false, false, "the remote").is_err());
        assert!(require_https("http://git.example/a.git", false, false, "the remote").is_ok());
        assert!(require_https("http://git.example/a.git", true, true, "the remote").is_ok());
        assert!(require_https("http://127.0.0.1:9/a.git", true, false, "the remote").is_ok());
        assert!(require_https("https://git.example/a.git", true, false, "the remote").is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn the_mirror_directory_is_private() {
        use std::os::unix::fs::PermissionsExt as _;
        let t = tempfile::tempdir().expect("tempdir");
        let d = t.path().join("a/mirror");
        assert_eq!(private_dir(&d), Ok(()));
        let mode = std::fs::metadata(&d).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        // An empty one of ours is closed; one with content is refused.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        assert_eq!(private_dir(&d), Ok(()));
        let mode = std::fs::metadata(&d).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::write(d.join("config"), "[core]\n").expect("write");
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o777)).expect("chmod");
        assert!(private_dir(&d).is_err_and(|e| e.contains("mode 0777")));
        let f = d.join("config");
        assert!(private_dir(&f).is_err_and(|e| e.contains("not a directory")));
    }

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("https://x-access-token:ghp_secret@github.com/acme/platform.git"),
            "https://(redacted)@github.com/acme/platform.git"
        );
        // A token as the user name goes too.
        assert_eq!(
            redact_url("https://ghp_secret@github.com/a/b?x=1"),
            "https://(redacted)@github.com/a/b?x=1"
        );
        assert_eq!(url_secrets("https://u:p@h/x"), ["u", "p"]);
        assert!(url_secrets("ssh://git@h/x").is_empty());
        assert_eq!(
            scrub(
                "cannot reach https://u:tok3n@h/x (tok3n)",
                &["tok3n".into()]
            ),
            "cannot reach https://(redacted)@h/x ((redacted))"
        );
        assert_eq!(
            redact_url("https://github.com/acme/platform.git"),
            "https://github.com/acme/platform.git"
        );
        assert_eq!(
            redact_url("git@github.com:acme/p.git"),
            "git@github.com:acme/p.git"
        );
    }
}
