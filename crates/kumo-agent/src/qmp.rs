//! A thin QMP client on the `qapi` crate: connect to an instance's socket, negotiate, run one
//! command. QMP connections are short-lived (one per operation), so a restarted `kumod` needs no
//! state to talk to a guest that kept running.

use crate::{AgentError, Result};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs one QMP command against the socket at `path`.
pub async fn execute<C>(path: &Path, command: C) -> Result<C::Ok>
where
    C: qapi::Command + Send + 'static,
    C::Ok: Send + 'static,
{
    let path: PathBuf = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let stream =
            UnixStream::connect(&path).map_err(|e| AgentError::Qmp(format!("connect {}: {e}", path.display())))?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| AgentError::Qmp(e.to_string()))?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| AgentError::Qmp(e.to_string()))?;
        let mut qmp = qapi::Qmp::from_stream(&stream);
        qmp.handshake().map_err(|e| AgentError::Qmp(format!("handshake: {e}")))?;
        qmp.execute(&command).map_err(|e| AgentError::Qmp(e.to_string()))
    })
    .await
    .map_err(|e| AgentError::Qmp(format!("QMP task failed: {e}")))?
}

/// True when QMP answers and says the guest's vCPUs run.
pub async fn is_running(path: &Path) -> bool {
    match execute(path, qapi::qmp::query_status {}).await {
        Ok(status) => status.running,
        Err(_) => false,
    }
}
