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

/// `query-blockstats`, with a lenient answer type.
///
/// The qapi crate's generated `qapi::qmp::query_blockstats` follows a newer QEMU schema than
/// Debian 12's QEMU 7.2 (it requires the zoned-storage counters added in QEMU 8.1), so its typed
/// answer fails to parse there. This command has the same name and arguments and reads only the
/// counters every QEMU since 2.x reports.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct QueryBlockstats {}

impl qapi::Command for QueryBlockstats {
    type Ok = Vec<BlockStats>;
    const NAME: &'static str = <qapi::qmp::query_blockstats as qapi::Command>::NAME;
    const ALLOW_OOB: bool = false;
}

/// One block device's statistics (the part Kumo reads).
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub struct BlockStats {
    #[serde(default)]
    pub device: Option<String>,
    pub stats: BlockDeviceStats,
}

#[derive(Debug, Clone, Copy, Default, serde::Deserialize)]
pub struct BlockDeviceStats {
    #[serde(default)]
    pub rd_bytes: u64,
    #[serde(default)]
    pub wr_bytes: u64,
    #[serde(default)]
    pub rd_operations: u64,
    #[serde(default)]
    pub wr_operations: u64,
}

/// Declares a QMP command whose arguments are free-form JSON and whose answer is read as JSON.
/// Used for block-device hot-plug, whose typed `qapi` arguments (`BlockdevOptions`) are a large
/// enum that would have to mirror what the storage pool already describes as JSON.
macro_rules! raw_command {
    ($($name:ident = $qmp:literal),* $(,)?) => {$(
        #[doc = concat!("`", $qmp, "` with free-form JSON arguments.")]
        #[derive(Debug, Clone, serde::Serialize)]
        #[serde(transparent)]
        pub struct $name(pub serde_json::Value);

        impl qapi::Command for $name {
            type Ok = serde_json::Value;
            const NAME: &'static str = $qmp;
            const ALLOW_OOB: bool = false;
        }
    )*};
}

raw_command!(
    BlockdevAdd = "blockdev-add",
    BlockdevDel = "blockdev-del",
    DeviceAdd = "device_add",
    DeviceDel = "device_del",
    BlockResize = "block_resize",
    BlockdevSnapshot = "blockdev-snapshot",
    QueryBlock = "query-block",
    ObjectAdd = "object-add",
    BlockSetIoThrottle = "block_set_io_throttle",
    ObjectDel = "object-del",
    QomList = "qom-list",
    QueryNamedBlockNodes = "query-named-block-nodes",
);

/// Ids of the devices added with an id (`-device …,id=X` or `device_add`).
pub async fn device_ids(path: &Path) -> Result<Vec<String>> {
    let v = execute(path, QomList(serde_json::json!({"path": "/machine/peripheral"}))).await?;
    Ok(v.as_array()
        .map(|a| a.iter().filter_map(|p| p.get("name")?.as_str().map(String::from)).collect())
        .unwrap_or_default())
}

/// The top block node of a device (what it reads and writes), by the device's id.
pub async fn device_node(path: &Path, device_id: &str) -> Result<Option<String>> {
    let v = execute(path, QueryBlock(serde_json::json!({}))).await?;
    let wanted = format!("/machine/peripheral/{device_id}/");
    Ok(v.as_array()
        .and_then(|a| {
            a.iter().find_map(|b| {
                let qdev = b.get("qdev")?.as_str()?;
                (qdev == device_id || qdev.starts_with(&wanted))
                    .then(|| b.get("inserted")?.get("node-name")?.as_str())?
            })
        })
        .map(String::from))
}

/// Names of the block nodes that have one.
pub async fn node_names(path: &Path) -> Result<Vec<String>> {
    let v = execute(path, QueryNamedBlockNodes(serde_json::json!({"flat": true}))).await?;
    Ok(v.as_array()
        .map(|a| a.iter().filter_map(|n| n.get("node-name")?.as_str().map(String::from)).collect())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blockstats_parse_a_qemu_7_2_answer() {
        // Trimmed from QEMU 7.2 (no zone_append_* fields, which the generated type requires).
        let answer = r#"[{"device": "", "qdev": "/machine/peripheral-anon/device[0]/virtio-backend",
            "stats": {"rd_bytes": 1048576, "wr_bytes": 4096, "rd_operations": 20, "wr_operations": 1,
                      "flush_operations": 0, "account_invalid": true, "account_failed": true}}]"#;
        let v: Vec<BlockStats> = serde_json::from_str(answer).unwrap();
        assert_eq!((v[0].stats.rd_bytes, v[0].stats.wr_bytes, v[0].stats.wr_operations), (1048576, 4096, 1));
        assert_eq!(<QueryBlockstats as qapi::Command>::NAME, "query-blockstats");
    }
}
