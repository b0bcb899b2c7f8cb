//! The `qemu-img` wrapper: overlays, inspection, conversion, growth.

use crate::system::tool::{self, ToolError};
use std::ffi::OsString;
use std::path::Path;

/// Builds an argument list from paths and literals alike.
macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$(OsString::from($a)),*] };
}

pub use kumo_host_api::ImageInfo;

/// Inspects a file. Without `format` the format is detected from the content.
pub async fn info(path: &Path, format: Option<&str>) -> Result<ImageInfo, ToolError> {
    let mut args = args!["info", "--output=json"];
    if let Some(f) = format {
        args.extend(args!["-f", f]);
    }
    args.push(path.into());
    let out = tool::run("qemu-img", args).await?;
    serde_json::from_slice(&out.stdout).map_err(|e| ToolError::Failed {
        command: format!("qemu-img info {}", path.display()),
        status: "unparsable output".into(),
        stderr: e.to_string(),
    })
}

/// Creates a qcow2 overlay of `size_bytes` backed by `backing` (a qcow2). O(1) in the backing size.
pub async fn create_overlay(backing: &Path, overlay: &Path, size_bytes: u64) -> Result<(), ToolError> {
    let args = args!["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", backing, overlay, size_bytes.to_string()];
    tool::run("qemu-img", args).await.map(|_| ())
}

/// Converts a readable image of format `src_format` to a standalone qcow2.
pub async fn convert_to_qcow2(src: &Path, src_format: &str, dst: &Path) -> Result<(), ToolError> {
    let args = args!["convert", "-q", "-f", src_format, "-O", "qcow2", src, dst];
    tool::run("qemu-img", args).await.map(|_| ())
}

/// Checks a qcow2's metadata for corruption.
pub async fn check(path: &Path) -> Result<(), ToolError> {
    tool::run("qemu-img", args!["check", "-q", "-f", "qcow2", path]).await.map(|_| ())
}

/// Grows a qcow2 to `size_bytes`.
pub async fn grow(path: &Path, size_bytes: u64) -> Result<(), ToolError> {
    tool::run("qemu-img", args!["resize", "-q", "-f", "qcow2", path, size_bytes.to_string()]).await.map(|_| ())
}

/// The virtual size of a qcow2 that a running QEMU may hold open (`-U`: no lock taken).
pub async fn virtual_size_shared(path: &Path) -> Result<u64, ToolError> {
    let out = tool::run("qemu-img", args!["info", "--output=json", "-U", "-f", "qcow2", path]).await?;
    serde_json::from_slice::<ImageInfo>(&out.stdout).map(|i| i.virtual_size).map_err(|e| ToolError::Failed {
        command: format!("qemu-img info -U {}", path.display()),
        status: "unparsable output".into(),
        stderr: e.to_string(),
    })
}

/// Every file of a qcow2's backing chain (itself first), read without taking locks.
pub async fn backing_chain(path: &Path) -> Result<Vec<String>, ToolError> {
    Ok(backing_chain_formats(path).await?.into_iter().map(|(file, _)| file).collect())
}

/// Every file of a qcow2's backing chain (itself first) with its format, read without locks.
pub async fn backing_chain_formats(path: &Path) -> Result<Vec<(String, String)>, ToolError> {
    let out = tool::run("qemu-img", args!["info", "--output=json", "--backing-chain", "-U", path]).await?;
    let chain: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).map_err(|e| ToolError::Failed {
        command: format!("qemu-img info --backing-chain {}", path.display()),
        status: "unparsable output".into(),
        stderr: e.to_string(),
    })?;
    Ok(chain
        .iter()
        .filter_map(|i| Some((i.get("filename")?.as_str()?.to_string(), i.get("format")?.as_str()?.to_string())))
        .collect())
}

/// Creates a qcow2 overlay on `backing` without opening it (`-u`): the backing may be in use or
/// not exist yet (a snapshot layer about to be linked into place).
pub async fn create_overlay_unsafe(backing: &Path, overlay: &Path, size_bytes: u64) -> Result<(), ToolError> {
    let args =
        args!["create", "-q", "-f", "qcow2", "-u", "-F", "qcow2", "-b", backing, overlay, size_bytes.to_string()];
    tool::run("qemu-img", args).await.map(|_| ())
}

/// Creates a LUKS-encrypted qcow2 (empty, or an overlay on an unencrypted `backing`), keyed by
/// the secret in `secret_file` (a 0600 file: the key never appears on the command line).
pub async fn create_encrypted(
    path: &Path,
    size_bytes: u64,
    backing: Option<&Path>,
    secret_id: &str,
    secret_file: &Path,
) -> Result<(), ToolError> {
    let mut args = args!["create", "-q", "-f", "qcow2", "--object"];
    args.push(format!("secret,id={secret_id},file={},format=raw", secret_file.display()).into());
    args.extend(args!["-o", format!("encrypt.format=luks,encrypt.key-secret={secret_id},{LUKS_HASH}")]);
    if let Some(b) = backing {
        args.extend(args!["-F", "qcow2", "-b", b]);
    }
    args.extend(args![path, size_bytes.to_string()]);
    run_luks_format(args).await
}

/// How often a command that formats LUKS is run when QEMU's PBKDF benchmark fails.
const LUKS_ATTEMPTS: usize = 5;

/// The PBKDF2 hash of new LUKS headers. SHA-512 rather than QEMU's default SHA-256: QEMU 7.2
/// sizes the key derivation by timing a first round of 2^15 iterations, and with SHA-256 (in
/// hardware on these CPUs) that round is so short that the thread's CPU time often reads 0 ms
/// and qemu-img gives up ("Unable to get accurate CPU usage": 5 of 20 runs here, idle); SHA-512
/// takes long enough (0 of 20). Headers record their hash: volumes made before open as they were.
const LUKS_HASH: &str = "encrypt.hash-alg=sha512";

/// Whether qemu-img failed in QEMU's PBKDF2 benchmark (`qcrypto_pbkdf2_count_iters`), which on a
/// fast or busy machine can read 0 ms of CPU time for its first round and give up — a QEMU bug
/// (fixed upstream in 2025 by measuring until the time is non-zero), transient by nature.
fn pbkdf_benchmark_flake(e: &ToolError) -> bool {
    matches!(e, ToolError::Failed { stderr, .. } if stderr.contains("Unable to get accurate CPU usage"))
}

/// Runs a qemu-img command that formats a LUKS header (it writes its output afresh each run),
/// again when QEMU's PBKDF benchmark flaked ([`pbkdf_benchmark_flake`]).
async fn run_luks_format(args: Vec<OsString>) -> Result<(), ToolError> {
    let mut attempt = 1;
    loop {
        match tool::run("qemu-img", &args).await {
            Err(e) if attempt < LUKS_ATTEMPTS && pbkdf_benchmark_flake(&e) => {
                tracing::warn!(attempt, "qemu-img's PBKDF benchmark read no CPU time (a QEMU bug); running it again");
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
            other => return other.map(|_| ()),
        }
    }
}

/// Grows an encrypted qcow2 (it must be opened with its key).
pub async fn grow_encrypted(
    path: &Path,
    size_bytes: u64,
    secret_id: &str,
    secret_file: &Path,
) -> Result<(), ToolError> {
    let mut args = args!["resize", "-q", "--object"];
    args.push(format!("secret,id={secret_id},file={},format=raw", secret_file.display()).into());
    args.push("--image-opts".into());
    args.push(format!("driver=qcow2,file.filename={},encrypt.key-secret={secret_id}", path.display()).into());
    args.push(size_bytes.to_string().into());
    tool::run("qemu-img", args).await.map(|_| ())
}

/// A secret object argument for qemu-img (`--object secret,…,file=`).
fn secret_object(secret: (&str, &Path)) -> OsString {
    format!("secret,id={},file={},format=raw", secret.0, secret.1.display()).into()
}

/// Writes a qcow2's data (its whole chain) to a sparse raw file. `secret`: (id, file) of an
/// encrypted qcow2's key.
pub async fn export_raw(src: &Path, dst: &Path, secret: Option<(&str, &Path)>) -> Result<(), ToolError> {
    let mut args = args!["convert", "-q", "-O", "raw"];
    match secret {
        Some(s) => {
            args.extend([OsString::from("--object"), secret_object(s), OsString::from("--image-opts")]);
            args.push(format!("driver=qcow2,file.filename={},encrypt.key-secret={}", src.display(), s.0).into());
        }
        None => args.extend(args!["-f", "qcow2", src]),
    }
    args.push(dst.into());
    tool::run("qemu-img", args).await.map(|_| ())
}

/// Makes a standalone qcow2 (LUKS-encrypted when `secret` is given) from a raw file.
pub async fn import_raw(src: &Path, dst: &Path, secret: Option<(&str, &Path)>) -> Result<(), ToolError> {
    let mut args = args!["convert", "-q", "-f", "raw", "-O", "qcow2"];
    if let Some(s) = secret {
        args.extend([OsString::from("--object"), secret_object(s), OsString::from("-o")]);
        args.push(format!("encrypt.format=luks,encrypt.key-secret={},{LUKS_HASH}", s.0).into());
    }
    args.extend(args![src, dst]);
    match secret {
        Some(_) => run_luks_format(args).await,
        None => tool::run("qemu-img", args).await.map(|_| ()),
    }
}

/// Creates an empty standalone qcow2 of `size_bytes` (sparse: O(1)).
pub async fn create(path: &Path, size_bytes: u64) -> Result<(), ToolError> {
    tool::run("qemu-img", args!["create", "-q", "-f", "qcow2", path, size_bytes.to_string()]).await.map(|_| ())
}

/// `qemu-img` on a file a tenant uploaded: it may be crafted to make qemu-img open other host
/// files (a vmdk extent or a qcow2 data file naming `/etc/shadow`, a FIFO that blocks `open`
/// forever, a device), allocate without bound or spin. So it runs confined:
///
/// * as the unprivileged user ([`crate::compute::confine::unprivileged`]), in the upload's directory and
///   with relative file names: the directory and the upload are lent to that user for the run,
///   while the data directory above stays closed to it, so what a crafted image names by absolute
///   path is reachable only if it is world-readable;
/// * with a wall-clock timeout (the process group is killed: a FIFO cannot hang the request),
///   RLIMIT_AS/CPU/NOFILE, no core dumps, and RLIMIT_FSIZE 0 for `info` and `check` (they must
///   write nothing) or the output's bound for `convert`.
///
/// Everything in `dir` is given back to root afterwards.
pub mod untrusted {
    use super::*;
    use crate::compute::confine::{self, Confined, Limits};
    use std::time::Duration;

    /// Reading metadata takes milliseconds; anything longer is a trap.
    pub const INFO_TIMEOUT: Duration = Duration::from_secs(20);
    /// `check` reads every metadata cluster (a 64 GiB qcow2: seconds).
    pub const CHECK_TIMEOUT: Duration = Duration::from_secs(300);
    /// `convert` copies the data: up to the import limit, at disk speed.
    pub const CONVERT_TIMEOUT: Duration = Duration::from_secs(3600);
    const ADDRESS_SPACE: u64 = 2 << 30;
    const OPEN_FILES: u64 = 64;

    fn limits(timeout: Duration, file_size: u64) -> Limits {
        Limits {
            timeout,
            address_space: ADDRESS_SPACE,
            cpu_secs: timeout.as_secs().max(1),
            file_size,
            open_files: OPEN_FILES,
        }
    }

    async fn run(
        dir: &Path,
        lend: &[&str],
        args: Vec<OsString>,
        limits: Limits,
    ) -> Result<std::process::Output, ToolError> {
        let user = confine::unprivileged();
        let io = |what: &str, e: std::io::Error| ToolError::Failed {
            command: format!("qemu-img {}", args.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default()),
            status: format!("{what} failed"),
            stderr: e.to_string(),
        };
        confine::give(dir, user.as_ref()).map_err(|e| io("lend the directory", e))?;
        for f in lend {
            confine::give(&dir.join(f), user.as_ref()).map_err(|e| io("lend the file", e))?;
        }
        let out =
            confine::run(Confined { program: "qemu-img".into(), args, cwd: dir.to_path_buf(), user, limits }).await;
        // Whatever it made (or half made) goes back to root with the directory.
        if let Ok(mut rd) = std::fs::read_dir(dir) {
            while let Some(Ok(e)) = rd.next() {
                let _ = confine::take_back(&e.path());
            }
        }
        let _ = confine::take_back(dir);
        out
    }

    /// `qemu-img info` of `dir/file`, format detected from the content.
    pub async fn info(dir: &Path, file: &str) -> Result<ImageInfo, ToolError> {
        let out = run(dir, &[file], args!["info", "--output=json", file], limits(INFO_TIMEOUT, 0)).await?;
        serde_json::from_slice(&out.stdout).map_err(|e| ToolError::Failed {
            command: format!("qemu-img info {file}"),
            status: "unparsable output".into(),
            stderr: e.to_string(),
        })
    }

    /// `qemu-img check` of the qcow2 `dir/file`.
    pub async fn check(dir: &Path, file: &str) -> Result<(), ToolError> {
        run(dir, &[file], args!["check", "-q", "-f", "qcow2", file], limits(CHECK_TIMEOUT, 0)).await.map(|_| ())
    }

    /// Converts `dir/src` (format `src_format`) to the standalone qcow2 `dir/dst`, which may
    /// grow to `max_out_bytes`.
    pub async fn convert_to_qcow2(
        dir: &Path,
        src: &str,
        src_format: &str,
        dst: &str,
        max_out_bytes: u64,
    ) -> Result<(), ToolError> {
        let args = args!["convert", "-q", "-f", src_format, "-O", "qcow2", src, dst];
        run(dir, &[src], args, limits(CONVERT_TIMEOUT, max_out_bytes)).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failed(stderr: &str) -> ToolError {
        ToolError::Failed { command: "qemu-img convert".into(), status: "exit status: 1".into(), stderr: stderr.into() }
    }

    #[test]
    fn only_the_pbkdf_benchmark_failure_is_run_again() {
        let flake = "qemu-img: /v/x.qcow2.tmp: error while converting qcow2: Unable to get accurate CPU usage";
        assert!(pbkdf_benchmark_flake(&failed(flake)));
        assert!(!pbkdf_benchmark_flake(&failed("qemu-img: Could not open 'x': No such file or directory")));
        assert!(!pbkdf_benchmark_flake(&failed("qemu-img: Invalid password, cannot unlock any keyslot")));
    }
}
