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

/// CPU time (user + system, nanoseconds) and resident memory (bytes) of a process, from
/// `/proc/<pid>/stat` and `/proc/<pid>/statm`. None when the process is gone.
pub fn cpu_and_rss(pid: i32) -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let cpu_ticks = stat_cpu_ticks(&stat)?;
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let resident_pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no memory-safety preconditions.
    let (tck, page) = unsafe { (libc::sysconf(libc::_SC_CLK_TCK), libc::sysconf(libc::_SC_PAGESIZE)) };
    let tck = if tck > 0 { tck as u64 } else { 100 };
    let page = if page > 0 { page as u64 } else { 4096 };
    Some((cpu_ticks.saturating_mul(1_000_000_000) / tck, resident_pages.saturating_mul(page)))
}

/// utime + stime (fields 14 and 15, clock ticks) of a `/proc/<pid>/stat` line. The command name
/// (field 2) may contain spaces and parentheses, so fields are counted after its last ')'.
pub fn stat_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14 → index 11, stime index 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
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

    #[test]
    fn cpu_ticks_are_utime_plus_stime_even_with_odd_names() {
        let stat = "4711 (qemu (x) y) S 1 4711 4711 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 1000 1 1";
        assert_eq!(stat_cpu_ticks(stat), Some(300));
        assert_eq!(stat_cpu_ticks("garbage"), None);
        let (cpu, rss) = cpu_and_rss(std::process::id() as i32).expect("own process");
        assert!(rss > 0);
        let _ = cpu;
        assert!(cpu_and_rss(i32::MAX).is_none());
    }
}
