//! What this machine has to offer guests.

use std::path::Path;

/// Online CPUs.
pub fn cpus() -> i64 {
    std::thread::available_parallelism().map(|n| n.get() as i64).unwrap_or(1)
}

/// Total memory in MiB (MemTotal of /proc/meminfo).
pub fn memory_mib() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<i64>().ok())
        })
        .map(|kib| kib / 1024)
        .unwrap_or(0)
}

/// Size of the filesystem holding `dir`, in GiB.
pub fn disk_gib(dir: &Path) -> i64 {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = CString::new(dir.as_os_str().as_bytes()) else { return 0 };
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return 0;
    }
    (st.f_blocks as i64 * st.f_frsize as i64) >> 30
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_this_machine() {
        assert!(super::cpus() >= 1);
        assert!(super::memory_mib() > 0);
        assert!(super::disk_gib(std::path::Path::new("/")) > 0);
    }
}
