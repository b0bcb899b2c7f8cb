//! Processes we did not necessarily start (QEMU outlives a restarted `kumod`): liveness by pid
//! with a guard against pid reuse, and signals.

use std::path::Path;

/// Reads a pidfile.
pub fn read_pidfile(path: &Path) -> Option<i32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// True when `pid` is a live (not zombie) process whose command line contains `marker`.
pub fn alive_with_marker(pid: i32, marker: &str) -> bool {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(_) => return false,
    };
    // Field 3, after the parenthesised command name, is the state; Z (zombie) and X (dead) are gone.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X") | None) {
        return false;
    }
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(cmdline) => String::from_utf8_lossy(&cmdline).contains(marker),
        Err(_) => false,
    }
}

/// Sends SIGKILL. A process that is already gone is fine.
pub fn kill(pid: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sees_itself_and_not_a_wrong_marker() {
        let me = std::process::id() as i32;
        let exe = std::env::args().next().unwrap_or_default();
        let marker = Path::new(&exe).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        assert!(alive_with_marker(me, &marker));
        assert!(!alive_with_marker(me, "definitely-not-in-the-cmdline-4711"));
        assert!(!alive_with_marker(i32::MAX, ""));
    }
}
