//! Runs system tools (qemu-img, …): logs the exact command, and turns a failure into a typed error
//! that carries the tool's stderr.

use std::ffi::OsStr;
use std::process::Output;
use tokio::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    #[error("could not run {program}: {source} (is it installed? scripts/install-deps.sh installs it)")]
    Spawn { program: String, source: std::io::Error },
    #[error("{command} failed ({status}): {stderr}")]
    Failed { command: String, status: String, stderr: String },
}

/// Runs `program args…` to completion. Non-zero exit → [`ToolError::Failed`] with stderr.
pub async fn run<I, S>(program: &str, args: I) -> Result<Output, ToolError>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<std::ffi::OsString> = args.into_iter().map(|a| a.as_ref().to_os_string()).collect();
    let command =
        format!("{program} {}", args.iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" "));
    tracing::debug!(%command, "running");
    let out = Command::new(program)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|source| ToolError::Spawn { program: program.to_string(), source })?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        tracing::warn!(%command, %stderr, "command failed");
        return Err(ToolError::Failed { command, status: out.status.to_string(), stderr });
    }
    Ok(out)
}
