//! Commit signature verification, as `git verify-commit` does it, without a git checkout.
//!
//! - **SSH** signatures (`gpg.format ssh`): `ssh-keygen -Y find-principals` and `ssh-keygen -Y
//!   verify -n git` against an allowed-signers file (the format of git's
//!   `gpg.ssh.allowedSignersFile`: `principal[,principal…] [options] key-type key`).
//! - **OpenPGP** signatures: `gpg --verify` against a keyring file (a binary export, `gpg
//!   --export KEYID… > trusted.gpg`), with a throwaway home directory and `--trust-model always`:
//!   every key of the keyring is trusted, no other key is.
//!
//! Only the commit being applied is verified (as Flux does), not its ancestors. A commit signed
//! in a format the configured verifier does not read counts as untrusted. Blocking: run it
//! from `spawn_blocking`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// What signatures are trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verifier {
    /// SSH signatures by the keys of an allowed-signers file.
    Ssh { allowed_signers: PathBuf },
    /// OpenPGP signatures by the keys of a keyring file.
    Gpg { keyring: PathBuf },
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A good signature by a trusted key; `signer` names it (principal or key id).
    Trusted { signer: String },
    /// No signature at all.
    Unsigned,
    /// A signature that does not verify or whose key is not trusted.
    Untrusted(String),
}

const SSH_ARMOR: &[u8] = b"-----BEGIN SSH SIGNATURE-----";
const PGP_ARMOR: &[u8] = b"-----BEGIN PGP SIGNATURE-----";

/// Verify `signature` (armored, from the commit's `gpgsig` header) over `payload` (the commit
/// without that header); `None` signature is an unsigned commit.
pub fn verify(verifier: &Verifier, signature: Option<(&[u8], &[u8])>) -> Verdict {
    let Some((sig, payload)) = signature else {
        return Verdict::Unsigned;
    };
    let result = match verifier {
        Verifier::Ssh { allowed_signers } => {
            if !sig.starts_with(SSH_ARMOR) {
                return Verdict::Untrusted("not an SSH signature".into());
            }
            ssh(allowed_signers, sig, payload)
        }
        Verifier::Gpg { keyring } => {
            if !sig.starts_with(PGP_ARMOR) {
                return Verdict::Untrusted("not an OpenPGP signature".into());
            }
            gpg(keyring, sig, payload)
        }
    };
    result.unwrap_or_else(|e| Verdict::Untrusted(format!("cannot verify: {e}")))
}

fn run(mut cmd: Command, stdin: &[u8]) -> std::io::Result<(bool, String, String)> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut i) = child.stdin.take() {
        // A verifier that exits early closes its stdin: not an error of ours.
        let _ = i.write_all(stdin);
    }
    let out = child.wait_with_output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

fn first_line(s: &str) -> String {
    s.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output")
        .to_owned()
}

fn ssh(allowed: &Path, sig: &[u8], payload: &[u8]) -> std::io::Result<Verdict> {
    let dir = tempfile::tempdir()?;
    let sig_path = dir.path().join("commit.sig");
    std::fs::write(&sig_path, sig)?;
    let mut find = Command::new("ssh-keygen");
    find.args(["-Y", "find-principals", "-f"])
        .arg(allowed)
        .arg("-s")
        .arg(&sig_path);
    let (ok, out, err) = run(find, b"")?;
    let Some(principal) = out.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return Ok(Verdict::Untrusted(if ok {
            "the key is not an allowed signer".into()
        } else {
            format!("the key is not an allowed signer ({})", first_line(&err))
        }));
    };
    let mut check = Command::new("ssh-keygen");
    check
        .args(["-Y", "verify", "-n", "git", "-f"])
        .arg(allowed)
        .args(["-I", principal, "-s"])
        .arg(&sig_path);
    let (ok, out, err) = run(check, payload)?;
    Ok(if ok {
        Verdict::Trusted {
            signer: principal.to_owned(),
        }
    } else {
        Verdict::Untrusted(first_line(&format!("{err}\n{out}")))
    })
}

fn gpg(keyring: &Path, sig: &[u8], payload: &[u8]) -> std::io::Result<Verdict> {
    let dir = tempfile::tempdir()?;
    let home = dir.path().join("home");
    std::fs::create_dir(&home)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700))?;
    }
    let sig_path = dir.path().join("commit.sig");
    std::fs::write(&sig_path, sig)?;
    let keyring = std::path::absolute(keyring)?;
    let mut cmd = Command::new("gpg");
    cmd.arg("--homedir")
        .arg(&home)
        .args([
            "--batch",
            "--no-tty",
            "--no-autostart",
            "--no-default-keyring",
            "--trust-model",
            "always",
            "--status-fd",
            "1",
            "--keyring",
        ])
        .arg(&keyring)
        .arg("--verify")
        .arg(&sig_path)
        .arg("-");
    let (ok, out, err) = run(cmd, payload)?;
    let status = |tag: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("[GNUPG:] {tag} ")))
            .map(str::to_owned)
    };
    Ok(match (ok, status("GOODSIG"), status("VALIDSIG")) {
        (true, Some(good), Some(_)) => Verdict::Trusted {
            signer: good
                .split_once(' ')
                .map_or(good.clone(), |(id, who)| format!("{who} ({id})")),
        },
        _ => Verdict::Untrusted(
            status("NO_PUBKEY")
                .map(|k| format!("the key {k} is not in the keyring"))
                .or_else(|| status("BADSIG").map(|k| format!("bad signature by {k}")))
                .unwrap_or_else(|| first_line(&err)),
        ),
    })
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Trusted { signer } => write!(f, "signed by {signer}"),
            Verdict::Unsigned => f.write_str("not signed"),
            Verdict::Untrusted(why) => write!(f, "signature not trusted: {why}"),
        }
    }
}
