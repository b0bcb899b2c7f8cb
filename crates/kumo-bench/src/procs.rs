//! Processes the benchmark starts (kumod, raw QEMUs, the static HTTP server) and the ones its kumod
//! starts (QEMUs): memory figures from `/proc`, and teardown that leaves nothing running.
//!
//! Every process of a run has the run's temp directory in its command line (data dir, serial file,
//! pidfile…), so "everything this run started" is "every process whose command line contains that
//! path". The benchmark is also a child subreaper, so QEMUs orphaned by a killed kumod become its
//! children and are reaped here rather than left as zombies.

use std::path::Path;
use std::time::{Duration, Instant};

/// Resident memory of a process from `/proc/PID/status`, in KiB.
pub fn vm_rss_kib(pid: i32) -> Option<u64> {
    status_kib(pid, "VmRSS:")
}

fn status_kib(pid: i32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line[field.len()..].split_whitespace().next()?.parse().ok()
}

/// Where a QEMU's resident memory is, from `/proc/PID/smaps`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QemuSmaps {
    /// Resident KiB of the guest-RAM mapping: the anonymous mapping whose size is exactly the
    /// guest's memory. `None` when there is no such mapping (QEMU laid the RAM out differently).
    pub guest_ram_kib: Option<u64>,
    /// Resident KiB of anonymous executable mappings: TCG's translation cache (none under KVM).
    pub tcg_code_kib: u64,
}

pub fn qemu_smaps(pid: i32, guest_mib: u64) -> Option<QemuSmaps> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    Some(parse_smaps(&smaps, guest_mib))
}

fn parse_smaps(smaps: &str, guest_mib: u64) -> QemuSmaps {
    let want = guest_mib * 1024;
    let mut out = QemuSmaps::default();
    // (anonymous, executable, size) of the mapping being read.
    let mut current: Option<(bool, bool, u64)> = None;
    for line in smaps.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let Some(&first) = fields.first() else { continue };
        if first.contains('-') && !first.ends_with(':') {
            // A mapping header: "start-end perms offset dev inode [path]"; anonymous = no path.
            let perms = fields.get(1).copied().unwrap_or("");
            current = Some((fields.len() == 5, perms.contains('x'), 0));
        } else if let Some((anon, exec, size)) = current.as_mut() {
            let kib = fields.get(1).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            match first {
                "Size:" => *size = kib,
                "Rss:" if *anon && *exec => out.tcg_code_kib += kib,
                "Rss:" if *anon && *size == want => out.guest_ram_kib = Some(out.guest_ram_kib.unwrap_or(0) + kib),
                _ => {}
            }
        }
    }
    out
}

/// Fields of `/proc/PID/stat` after the command name, numbered as in proc(5) (3 = state).
fn stat_field(pid: i32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    rest.split_whitespace().nth(n.checked_sub(3)?)?.parse().ok()
}

fn clock_ticks_per_sec() -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CLOCK_BOOTTIME now, in seconds: the clock process start times are measured on.
pub fn boottime_now() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe {
        libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts);
    }
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// When a process started, on [`boottime_now`]'s clock (resolution: one clock tick, 10 ms).
pub fn started_at(pid: i32) -> Option<f64> {
    Some(stat_field(pid, 22)? as f64 / clock_ticks_per_sec())
}

/// How long the CPU controller of a live process's cgroup has throttled it (its `cpu.max` /
/// `cpu.cfs_quota_us` quota used up), in seconds: cgroup v2 `throttled_usec`, or v1
/// `throttled_time` (ns) of its `cpu` hierarchy. None when it is in no such cgroup.
pub fn cpu_throttled_secs(pid: i32) -> Option<f64> {
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let stat = |path: String| std::fs::read_to_string(path).ok();
    let field = |stat: &str, key: &str| stat.lines().find_map(|l| l.strip_prefix(key)?.trim().parse::<f64>().ok());
    for line in cgroups.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        if controllers.split(',').any(|c| c == "cpu") {
            let s = stat(format!("/sys/fs/cgroup/cpu{path}/cpu.stat"))?;
            return field(&s, "throttled_time ").map(|ns| ns / 1e9);
        }
    }
    let path = cgroups.lines().find_map(|l| l.strip_prefix("0::"))?;
    let s = stat(format!("/sys/fs/cgroup{path}/cpu.stat"))?;
    field(&s, "throttled_usec ").map(|us| us / 1e6)
}

/// CPU time (user + system) a live process has used, in seconds.
pub fn cpu_secs(pid: i32) -> Option<f64> {
    Some((stat_field(pid, 14)? + stat_field(pid, 15)?) as f64 / clock_ticks_per_sec())
}

/// How much of the machine's CPU went to processes that are not this benchmark's, over a span:
/// busy time of all CPUs (from `/proc/stat`) minus this process and its reaped descendants (kumod,
/// and through kumod the QEMUs it reaped; raw QEMUs; adopted orphans). Valid once every process
/// of the span has been reaped.
pub struct CpuAccount {
    busy: f64,
    steal: f64,
    ours: f64,
    wall: std::time::Instant,
}

/// The finished account, in core-seconds.
pub struct CpuUse {
    pub capacity: f64,
    pub others: f64,
    pub steal: f64,
}

impl CpuAccount {
    pub fn start() -> CpuAccount {
        let (busy, steal) = machine_busy_secs();
        CpuAccount { busy, steal, ours: own_and_children_cpu_secs(), wall: std::time::Instant::now() }
    }

    pub fn finish(&self, cores: usize) -> CpuUse {
        let (busy, steal) = machine_busy_secs();
        let ours = own_and_children_cpu_secs() - self.ours;
        CpuUse {
            capacity: self.wall.elapsed().as_secs_f64() * cores as f64,
            others: (busy - self.busy - ours).max(0.0),
            steal: steal - self.steal,
        }
    }
}

/// (busy, steal) seconds of all CPUs since boot.
fn machine_busy_secs() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let Some(cpu) = stat.lines().find(|l| l.starts_with("cpu ")) else { return (0.0, 0.0) };
    let v: Vec<f64> = cpu.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let at = |i: usize| v.get(i).copied().unwrap_or(0.0);
    // user nice system idle iowait irq softirq steal (guest time is already inside user).
    let busy = at(0) + at(1) + at(2) + at(5) + at(6);
    let tck = clock_ticks_per_sec();
    (busy / tck, at(7) / tck)
}

fn own_and_children_cpu_secs() -> f64 {
    let secs = |who| {
        // SAFETY: getrusage fills the struct we pass.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe {
            libc::getrusage(who, &mut ru);
        }
        let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        tv(ru.ru_utime) + tv(ru.ru_stime)
    };
    secs(libc::RUSAGE_SELF) + secs(libc::RUSAGE_CHILDREN)
}

/// Makes this process the reaper of its orphaned descendants (QEMUs of a kumod that died).
pub fn become_subreaper() {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes integer arguments only.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// True while `/proc/PID` exists and is not a zombie.
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !matches!(stat.rsplit_once(')').and_then(|(_, r)| r.split_whitespace().next()), Some("Z" | "X")),
        Err(_) => false,
    }
}

/// Reaps `pid` if it is a (possibly adopted) child of ours that has exited.
fn reap(pid: i32) {
    let mut status = 0;
    // SAFETY: waitpid with a valid pointer to a local; WNOHANG never blocks.
    unsafe {
        libc::waitpid(pid, &mut status, libc::WNOHANG);
    }
}

/// Pids of live processes other than ourselves whose command line contains `marker`.
pub fn pids_with_marker(marker: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(rd) = std::fs::read_dir("/proc") else { return Vec::new() };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()))
        .filter(|&pid| pid != me && alive(pid))
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .collect()
}

/// SIGKILLs every process whose command line contains `dir` and waits (up to 10 s) until they are
/// gone. Returns the command lines of those it killed (for the "left running" warning).
pub fn kill_everything_under(dir: &Path) -> Vec<String> {
    let marker = format!("{}/", dir.display());
    let pids = pids_with_marker(&marker);
    let mut killed = Vec::new();
    for &pid in &pids {
        let cmd = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").trim().to_string())
            .unwrap_or_default();
        signal(pid, libc::SIGKILL);
        killed.push(format!("pid {pid}: {}", shorten(&cmd, 160)));
    }
    wait_gone(&pids, Duration::from_secs(10));
    killed
}

/// Waits until none of `pids` is alive, reaping the ones that are our children.
pub fn wait_gone(pids: &[i32], timeout: Duration) -> bool {
    let until = Instant::now() + timeout;
    loop {
        for &pid in pids {
            reap(pid);
        }
        if pids.iter().all(|&p| !alive(p)) {
            return true;
        }
        if Instant::now() >= until {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn shorten(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// The last `max` bytes of a log file, for error messages.
pub fn tail(path: &Path, max: usize) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let mut start = s.len().saturating_sub(max);
    while !s.is_char_boundary(start) {
        start += 1;
    }
    s[start..].trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_qemu_memory() {
        let smaps = "\
7f00-7f80 rw-p 00000000 00:00 0
Size:             131072 kB
Rss:              118784 kB
7f80-7fff rwxp 00000000 00:00 0
Size:            1047552 kB
Rss:               51200 kB
5600-5700 r-xp 00407000 fe:00 10199054                   /usr/bin/qemu-system-x86_64
Size:               5000 kB
Rss:                5000 kB
";
        let m = parse_smaps(smaps, 128);
        assert_eq!(m, QemuSmaps { guest_ram_kib: Some(118784), tcg_code_kib: 51200 });
        assert_eq!(parse_smaps(smaps, 256).guest_ram_kib, None);
    }

    #[test]
    fn reads_own_rss() {
        let me = std::process::id() as i32;
        let started = started_at(me).unwrap();
        assert!(started <= boottime_now() && started > 0.0);
        assert!(cpu_secs(me).is_some());
        assert!(vm_rss_kib(me).is_some_and(|k| k > 0));
        assert!(alive(me));
        assert!(!alive(i32::MAX));
    }

    #[test]
    fn finds_a_child_by_marker_and_kills_it() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().unwrap();
        // argv[0] carries the marker, as a QEMU's serial path does.
        let mut child = std::process::Command::new("sleep").arg0(dir.path().join("marker")).arg("30").spawn().unwrap();
        // spawn() returns once the exec has begun, but the kernel fills in the new command line a
        // moment later (an empty /proc/PID/cmdline until then): wait until it shows.
        let marker = format!("{}/", dir.path().display());
        let until = Instant::now() + Duration::from_secs(10);
        while pids_with_marker(&marker).is_empty() {
            assert!(Instant::now() < until, "the child's command line never showed the marker");
            std::thread::sleep(Duration::from_millis(10));
        }
        let killed = kill_everything_under(dir.path());
        assert_eq!(killed.len(), 1, "{killed:?}");
        assert!(!alive(child.id() as i32), "killed and reaped");
        // Already reaped by kill_everything_under: wait() finds no child, which is fine.
        let _ = child.wait();
        assert!(pids_with_marker(&marker).is_empty());
    }
}
