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

/// A QMP connection kept open over several commands, which can pass file descriptors
/// (`SCM_RIGHTS`) along with a command. Needed when QEMU runs unprivileged: it cannot open the
/// files of a hot-plugged disk itself, so they are opened here and handed over with `add-fd`;
/// the fd set lives while a monitor is connected or a block node uses it, so the `add-fd`s and
/// the `blockdev-add` that uses them go over one connection. Blocking: use from
/// `spawn_blocking`.
pub struct Session {
    stream: UnixStream,
    reader: std::io::BufReader<UnixStream>,
}

impl Session {
    /// Connects and negotiates capabilities.
    pub fn connect(path: &Path) -> Result<Session> {
        let stream =
            UnixStream::connect(path).map_err(|e| AgentError::Qmp(format!("connect {}: {e}", path.display())))?;
        stream.set_read_timeout(Some(IO_TIMEOUT)).map_err(|e| AgentError::Qmp(e.to_string()))?;
        stream.set_write_timeout(Some(IO_TIMEOUT)).map_err(|e| AgentError::Qmp(e.to_string()))?;
        let reader = std::io::BufReader::new(stream.try_clone().map_err(|e| AgentError::Qmp(e.to_string()))?);
        let mut s = Session { stream, reader };
        let greeting = s.read_message()?;
        if greeting.get("QMP").is_none() {
            return Err(AgentError::Qmp(format!("unexpected greeting: {greeting}")));
        }
        s.execute("qmp_capabilities", serde_json::json!({}))?;
        Ok(s)
    }

    fn read_message(&mut self) -> Result<serde_json::Value> {
        use std::io::BufRead;
        let mut line = String::new();
        let n = self.reader.read_line(&mut line).map_err(|e| AgentError::Qmp(format!("read: {e}")))?;
        if n == 0 {
            return Err(AgentError::Qmp("QEMU closed the connection".into()));
        }
        serde_json::from_str(&line).map_err(|e| AgentError::Qmp(format!("unparsable answer {line:?}: {e}")))
    }

    fn answer(&mut self, name: &str) -> Result<serde_json::Value> {
        loop {
            let m = self.read_message()?;
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                let desc = e.get("desc").and_then(|d| d.as_str()).unwrap_or("error");
                return Err(AgentError::Qmp(format!("{name}: {desc}")));
            }
            // Anything else is an asynchronous event: skip it.
        }
    }

    /// Runs a command; its `return`, or its error as [`AgentError::Qmp`].
    pub fn execute(&mut self, name: &str, arguments: serde_json::Value) -> Result<serde_json::Value> {
        use std::io::Write;
        let msg = serde_json::json!({"execute": name, "arguments": arguments}).to_string() + "\n";
        self.stream.write_all(msg.as_bytes()).map_err(|e| AgentError::Qmp(format!("write: {e}")))?;
        self.answer(name)
    }

    /// `add-fd`: hands `fd` to QEMU (into fd set `set`, or a new one); the fd set's id and the
    /// descriptor's number in QEMU.
    pub fn add_fd(&mut self, fd: std::os::fd::BorrowedFd<'_>, set: Option<u64>) -> Result<(u64, u64)> {
        use std::os::fd::AsRawFd;
        let mut args = serde_json::json!({});
        if let Some(set) = set {
            args["fdset-id"] = set.into();
        }
        let msg = serde_json::json!({"execute": "add-fd", "arguments": args}).to_string() + "\n";
        send_with_fd(self.stream.as_raw_fd(), msg.as_bytes(), fd.as_raw_fd())
            .map_err(|e| AgentError::Qmp(format!("send fd: {e}")))?;
        let r = self.answer("add-fd")?;
        match (r.get("fdset-id").and_then(|v| v.as_u64()), r.get("fd").and_then(|v| v.as_u64())) {
            (Some(set), Some(fd)) => Ok((set, fd)),
            _ => Err(AgentError::Qmp(format!("add-fd answered {r}"))),
        }
    }
}

/// sendmsg(2) of `data` with one descriptor attached (SCM_RIGHTS).
fn send_with_fd(sock: std::os::fd::RawFd, data: &[u8], fd: std::os::fd::RawFd) -> std::io::Result<()> {
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<libc::c_int>() as u32) } as usize;
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: an all-zero msghdr is valid; the pointers set below outlive the sendmsg call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: msg_control has room for one cmsg carrying one int (CMSG_SPACE above).
    unsafe {
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        (*cmsg).cmsg_level = libc::SOL_SOCKET;
        (*cmsg).cmsg_type = libc::SCM_RIGHTS;
        (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<libc::c_int>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(cmsg) as *mut libc::c_int, fd);
    }
    let mut sent = 0usize;
    // SAFETY: msg is fully initialised above.
    let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    sent += n as usize;
    // The descriptor went with the first bytes; the rest of a short write goes plainly.
    if sent < data.len() {
        use std::io::Write;
        // SAFETY: sock is a valid, open socket borrowed for this call only.
        let mut s = std::mem::ManuallyDrop::new(unsafe { <UnixStream as std::os::fd::FromRawFd>::from_raw_fd(sock) });
        s.write_all(&data[sent..])?;
    }
    Ok(())
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
