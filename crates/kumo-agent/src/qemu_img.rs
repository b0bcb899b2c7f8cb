//! The `qemu-img` wrapper: overlays, inspection, conversion, growth.

use crate::tool::{self, ToolError};
use serde::Deserialize;
use std::ffi::OsString;
use std::path::Path;

/// Builds an argument list from paths and literals alike.
macro_rules! args {
    ($($a:expr),* $(,)?) => { vec![$(OsString::from($a)),*] };
}

/// What `qemu-img info --output=json` says about a file.
#[derive(Debug, Clone, Deserialize)]
pub struct ImageInfo {
    pub format: String,
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
    #[serde(rename = "backing-filename")]
    pub backing_filename: Option<String>,
    #[serde(rename = "format-specific", default)]
    pub format_specific: Option<serde_json::Value>,
}

impl ImageInfo {
    /// A qcow2 may keep its data in an external file (`data-file`); like a backing file, that
    /// could point anywhere on the host.
    pub fn external_data_file(&self) -> Option<&str> {
        self.format_specific.as_ref()?.get("data")?.get("data-file")?.as_str()
    }
}

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
    let out = tool::run("qemu-img", args!["info", "--output=json", "--backing-chain", "-U", path]).await?;
    let chain: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).map_err(|e| ToolError::Failed {
        command: format!("qemu-img info --backing-chain {}", path.display()),
        status: "unparsable output".into(),
        stderr: e.to_string(),
    })?;
    Ok(chain.iter().filter_map(|i| i.get("filename")?.as_str().map(String::from)).collect())
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
    args.extend(args!["-o", format!("encrypt.format=luks,encrypt.key-secret={secret_id}")]);
    if let Some(b) = backing {
        args.extend(args!["-F", "qcow2", "-b", b]);
    }
    args.extend(args![path, size_bytes.to_string()]);
    tool::run("qemu-img", args).await.map(|_| ())
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
        args.push(format!("encrypt.format=luks,encrypt.key-secret={}", s.0).into());
    }
    args.extend(args![src, dst]);
    tool::run("qemu-img", args).await.map(|_| ())
}

/// Creates an empty standalone qcow2 of `size_bytes` (sparse: O(1)).
pub async fn create(path: &Path, size_bytes: u64) -> Result<(), ToolError> {
    tool::run("qemu-img", args!["create", "-q", "-f", "qcow2", path, size_bytes.to_string()]).await.map(|_| ())
}
