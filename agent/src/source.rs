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

/// `https://user:secret@host/x` → `https://user@host/x`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{host}/{path}")
        }
        None => url.to_owned(),
    }
}

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
    /// The mirror in `dir`, created (bare) if it does not exist yet.
    pub fn open(dir: &Path) -> Result<Mirror, SourceError> {
        let cache = |e: &dyn std::fmt::Display| SourceError::Cache {
            path: dir.display().to_string(),
            message: e.to_string(),
        };
        std::fs::create_dir_all(dir).map_err(|e| cache(&e))?;
        // Absolute: repository discovery misreads relative paths such as `../cache`.
        let dir = std::fs::canonicalize(dir).map_err(|e| cache(&e))?;
        if gix::open_opts(&dir, gix::open::Options::isolated()).is_err() {
            gix::init_bare(&dir).map_err(|e| cache(&e))?;
        }
        Ok(Mirror { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn repo(&self, overrides: Vec<String>) -> Result<gix::Repository, SourceError> {
        let opts = gix::open::Options::isolated().config_overrides(overrides);
        gix::open_opts(&self.dir, opts).map_err(git_err)
    }

    /// Fetch the branch; returns the commit it points at. `interrupt` aborts a running fetch.
    pub fn fetch(&self, remote: &Remote, interrupt: &AtomicBool) -> Result<ObjectId, SourceError> {
        let fetch_err = |m: String| SourceError::Fetch {
            url: remote.display_url(),
            branch: remote.branch.clone(),
            message: m,
        };
        let mut overrides = vec![
            // Identify ourselves to servers.
            format!(
                "gitoxide.userAgent=plinth-agent/{}",
                env!("CARGO_PKG_VERSION")
            ),
        ];
        if let Some(key) = &remote.auth.ssh_key_file {
            let hosts = match &remote.auth.known_hosts_file {
                Some(k) => format!(
                    "-o StrictHostKeyChecking=yes -o UserKnownHostsFile={}",
                    shell_quote(&k.display().to_string())
                ),
                None => "-o StrictHostKeyChecking=accept-new".to_owned(),
            };
            overrides.push(format!(
                "core.sshCommand=ssh -i {} -o IdentitiesOnly=yes -o BatchMode=yes {hosts}",
                shell_quote(&key.display().to_string())
            ));
        }
        let token = match &remote.auth.token_file {
            Some(p) => Some(read_secret(p)?),
            None => None,
        };
        let username = if remote.auth.username.is_empty() {
            "plinth".to_owned()
        } else {
            remote.auth.username.clone()
        };
        let repo = self.repo(overrides)?;
        let refspec = format!("+refs/heads/{0}:refs/remotes/origin/{0}", remote.branch);
        let r = repo
            .remote_at(remote.url.as_str())
            .map_err(|e| fetch_err(format!("not a usable URL: {e}")))?
            .with_refspecs([refspec.as_str()], gix::remote::Direction::Fetch)
            .map_err(|e| fetch_err(e.to_string()))?;
        let conn = r
            .connect(gix::remote::Direction::Fetch)
            .map_err(|e| fetch_err(chain(&e)))?;
        let conn = conn.with_credentials(move |action| match action {
            gix::credentials::helper::Action::Get(ctx) => {
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
        GitRepo::discover(&self.dir).map_err(git_err)
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

/// An error with its causes, `: `-separated.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_passwords() {
        assert_eq!(
            redact_url("https://x-access-token:ghp_secret@github.com/acme/platform.git"),
            "https://x-access-token@github.com/acme/platform.git"
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
