//! Confinement of the processes that touch untrusted data: the unprivileged system user they run
//! as, resource limits, and wall-clock timeouts.
//!
//! Guests (QEMU) and the `qemu-img` runs on uploaded images run as one dedicated system user,
//! `kumo-qemu` by default (created at first use when missing). It owns nothing but what is handed
//! to it, so a compromised QEMU or a crafted image cannot read `kumo.db`, keys or other tenants'
//! disks.

use crate::system::tool::ToolError;
use std::ffi::{CString, OsString};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The default name of the unprivileged user.
pub const DEFAULT_USER: &str = "kumo-qemu";

/// A system user to run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

static USER_NAME: OnceLock<String> = OnceLock::new();
static IDENTITY: OnceLock<Option<Identity>> = OnceLock::new();

/// Chooses the user's name (`kumod --qemu-user`); call before the first [`unprivileged`].
pub fn set_user_name(name: &str) {
    let _ = USER_NAME.set(name.to_string());
}

/// The unprivileged user, created when missing. None (with an error logged once) when kumod does
/// not run as root (it cannot switch users then anyway) or the user cannot be made.
pub fn unprivileged() -> Option<Identity> {
    IDENTITY
        .get_or_init(|| {
            let name = USER_NAME.get().map(String::as_str).unwrap_or(DEFAULT_USER);
            // SAFETY: geteuid has no preconditions.
            if unsafe { libc::geteuid() } != 0 {
                tracing::warn!("not running as root: QEMU and qemu-img run as this user, not as '{name}'");
                return None;
            }
            match ensure_user(name) {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::error!("cannot use the unprivileged user '{name}': {e}; QEMU and qemu-img run as root");
                    None
                }
            }
        })
        .clone()
}

/// Looks a user up in the passwd database.
pub fn lookup_user(name: &str) -> Option<Identity> {
    let cname = CString::new(name).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    // SAFETY: an all-zero passwd is a valid out-parameter for getpwnam_r.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the call and buf outlives it.
    let rc = unsafe { libc::getpwnam_r(cname.as_ptr(), &mut pwd, buf.as_mut_ptr().cast(), buf.len(), &mut result) };
    if rc != 0 || result.is_null() {
        return None;
    }
    Some(Identity { name: name.to_string(), uid: pwd.pw_uid, gid: pwd.pw_gid })
}

/// The user, made a system user with its own group, no home and no login shell when missing.
pub fn ensure_user(name: &str) -> Result<Identity, String> {
    if let Some(id) = lookup_user(name) {
        return check_unprivileged(id);
    }
    let out = std::process::Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent"])
        .args(["--shell", "/usr/sbin/nologin", "--comment", "Kumo guests (QEMU, qemu-img)", name])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("could not run useradd: {e}"))?;
    // A concurrent start may have made it in between: look again either way.
    match lookup_user(name) {
        Some(id) => {
            tracing::info!(user = name, uid = id.uid, "created the system user for guests");
            check_unprivileged(id)
        }
        None => Err(format!("useradd {name} failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
    }
}

fn check_unprivileged(id: Identity) -> Result<Identity, String> {
    if id.uid == 0 || id.gid == 0 {
        return Err(format!("user '{}' is root (uid {} gid {}); it must be unprivileged", id.name, id.uid, id.gid));
    }
    Ok(id)
}

/// Gives a file or directory to `id` (owner and group). A no-op without an identity.
pub fn give(path: &Path, id: Option<&Identity>) -> std::io::Result<()> {
    match id {
        Some(id) => std::os::unix::fs::chown(path, Some(id.uid), Some(id.gid)),
        None => Ok(()),
    }
}

/// Gives a file or directory back to root.
pub fn take_back(path: &Path) -> std::io::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(0), Some(0))
}

/// Limits of one confined run.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Wall-clock time; the process (group) is killed after it.
    pub timeout: Duration,
    /// RLIMIT_AS, bytes.
    pub address_space: u64,
    /// RLIMIT_CPU, seconds.
    pub cpu_secs: u64,
    /// RLIMIT_FSIZE, bytes (0: the process may write no file at all).
    pub file_size: u64,
    /// RLIMIT_NOFILE.
    pub open_files: u64,
}

/// One confined command: `program args…` run in `cwd`, as `user`, under `limits`.
pub struct Confined {
    pub program: String,
    pub args: Vec<OsString>,
    /// The working directory, entered before the user is switched: relative paths in `args`
    /// reach files there even when its parents are closed to the user.
    pub cwd: PathBuf,
    pub user: Option<Identity>,
    pub limits: Limits,
}

/// Runs a confined command to completion. Non-zero exit or timeout → [`ToolError::Failed`]
/// (the timeout says so in `status`).
pub async fn run(c: Confined) -> Result<Output, ToolError> {
    let command = format!(
        "{} {} (in {}, as {})",
        c.program,
        c.args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" "),
        c.cwd.display(),
        c.user.as_ref().map(|u| u.name.as_str()).unwrap_or("root")
    );
    tracing::debug!(%command, "running confined");
    let cwd = CString::new(c.cwd.as_os_str().as_encoded_bytes())
        .map_err(|e| ToolError::Spawn { program: c.program.clone(), source: std::io::Error::other(e) })?;
    let mut cmd = tokio::process::Command::new(&c.program);
    cmd.args(&c.args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so the timeout kills whatever it started too.
        .process_group(0)
        .kill_on_drop(true);
    let user = c.user.clone();
    let limits = c.limits;
    // SAFETY: only async-signal-safe calls (chdir, setrlimit, setgroups, setgid, setuid) between
    // fork and exec; everything they use was allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            let check = |rc: libc::c_int| if rc == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
            check(libc::chdir(cwd.as_ptr()))?;
            for (resource, value) in [
                (libc::RLIMIT_AS, limits.address_space),
                (libc::RLIMIT_CPU, limits.cpu_secs),
                (libc::RLIMIT_FSIZE, limits.file_size),
                (libc::RLIMIT_NOFILE, limits.open_files),
                (libc::RLIMIT_CORE, 0),
            ] {
                let lim = libc::rlimit { rlim_cur: value, rlim_max: value };
                check(libc::setrlimit(resource, &lim))?;
            }
            if let Some(u) = &user {
                check(libc::setgroups(0, std::ptr::null()))?;
                check(libc::setgid(u.gid))?;
                check(libc::setuid(u.uid))?;
            }
            Ok(())
        });
    }
    let child = cmd.spawn().map_err(|source| ToolError::Spawn { program: c.program.clone(), source })?;
    let pid = child.id();
    let out = match tokio::time::timeout(c.limits.timeout, child.wait_with_output()).await {
        Ok(out) => out.map_err(|source| ToolError::Spawn { program: c.program.clone(), source })?,
        Err(_) => {
            // The future (and with it the child, kill_on_drop) is gone; kill its group as well.
            if let Some(pid) = pid {
                // SAFETY: kill(2) has no memory-safety preconditions.
                unsafe {
                    libc::kill(-(pid as i32), libc::SIGKILL);
                }
            }
            tracing::warn!(%command, "timed out after {}s; killed", c.limits.timeout.as_secs());
            return Err(ToolError::Failed {
                command,
                status: format!("timed out after {}s", c.limits.timeout.as_secs()),
                stderr: "killed".into(),
            });
        }
    };
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        tracing::warn!(%command, %stderr, "confined command failed");
        return Err(ToolError::Failed { command, status: out.status.to_string(), stderr });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(timeout: Duration) -> Limits {
        Limits { timeout, address_space: 1 << 30, cpu_secs: 10, file_size: 0, open_files: 64 }
    }

    #[tokio::test]
    async fn a_hanging_command_is_killed_at_the_timeout() {
        let started = std::time::Instant::now();
        let c = Confined {
            program: "sleep".into(),
            args: vec!["30".into()],
            cwd: "/".into(),
            user: None,
            limits: limits(Duration::from_millis(300)),
        };
        let err = run(c).await.expect_err("must time out");
        assert!(err.to_string().contains("timed out"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn limits_and_user_apply_in_the_child() {
        let dir = tempfile::tempdir().unwrap();
        // RLIMIT_FSIZE 0: writing a byte fails (SIGXFSZ); reading works; cwd is the given dir.
        let c = Confined {
            program: "sh".into(),
            args: vec!["-c".into(), "pwd; ulimit -f; ulimit -v; id -u".into()],
            cwd: dir.path().into(),
            user: unprivileged(),
            limits: limits(Duration::from_secs(10)),
        };
        let out = run(c).await.unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], dir.path().to_str().unwrap());
        assert_eq!(lines[1], "0", "{text}");
        assert_eq!(lines[2], (1u64 << 20).to_string(), "{text}");
        let want_uid = unprivileged().map(|u| u.uid).unwrap_or_else(|| unsafe { libc::geteuid() });
        assert_eq!(lines[3], want_uid.to_string(), "{text}");
        let c = Confined {
            program: "sh".into(),
            args: vec!["-c".into(), "echo x > f".into()],
            cwd: dir.path().into(),
            user: None,
            limits: limits(Duration::from_secs(10)),
        };
        assert!(run(c).await.is_err(), "a write past RLIMIT_FSIZE 0 must fail");
    }
}
