//! One cgroup per guest, with the limits of its instance type: CPU quota = its vCPUs, CPU weight
//! proportional to them, memory max = guest memory + QEMU's overhead.
//!
//! cgroup v2 (`/sys/fs/cgroup` with the `cpu` and `memory` controllers) is used when the host has
//! it: `/sys/fs/cgroup/kumo.slice/<instance-id>/`. Hosts still on the v1 (or hybrid) layout get
//! the same limits from the v1 `cpu` and `memory` hierarchies:
//! `/sys/fs/cgroup/{cpu,memory}/kumo.slice/<instance-id>/`. Neither usable (no controllers, or
//! not writable): guests run without, and a warning says so once.
//!
//! QEMU enters its cgroup between fork and exec (see [`Placement`]), so everything it allocates is
//! charged there. The cgroup lives as long as the guest's QEMU: it is removed when QEMU has gone
//! (stop, destroy, leak collection, or QEMU ending by itself).

use std::ffi::CString;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// The parent of all guests' cgroups, in each hierarchy.
pub const SLICE: &str = "kumo.slice";
const ROOT: &str = "/sys/fs/cgroup";
/// cpu.max / cfs period: 100 ms.
const PERIOD_US: u64 = 100_000;
/// CPU time QEMU's own threads (the main loop's device emulation, the RCU and I/O threads) get on
/// top of the vCPUs, per period: half a CPU. A vCPU is one thread, so it can never use more than
/// one CPU by itself; a quota of exactly `vcpus` CPUs only ever bites when emulation runs beside
/// busy vCPUs, and then it slows the guest down: a Debian boot under TCG was held back 0.6–1.3 s
/// of ~42 s by it, ~5 % slower than the same QEMU without a cgroup (`kumo-bench boot`,
/// docs/benchmarks.md). libvirt keeps the emulator's quota apart from the vCPUs' for this reason.
pub const EMULATOR_CPU_US: u64 = PERIOD_US / 2;
/// Size of a TCG guest's translation cache, MiB (`-accel tcg,tb-size=`), counted in its memory limit.
pub const TCG_CACHE_MIB: u64 = 256;

/// Which cgroup layout the host offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// Unified hierarchy at this root.
    V2(PathBuf),
    /// v1 hierarchies of the `cpu` and `memory` controllers.
    V1 { cpu: PathBuf, memory: PathBuf },
    /// No usable controllers (the reason).
    Unavailable(String),
}

/// The limits of one guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestLimits {
    pub vcpus: u64,
    pub memory_bytes: u64,
}

impl GuestLimits {
    /// Limits for a guest of `vcpus` and `memory_mib`: QEMU's own memory (device emulation, I/O
    /// buffers) on top of the guest's: 256 MiB plus 1/8, and under TCG its translation cache
    /// ([`TCG_CACHE_MIB`], bounded on QEMU's command line). Without the cache in the limit a
    /// TCG guest running new code is OOM-killed (seen: anon RSS 408 MiB for a 128 MiB guest).
    pub fn for_guest(vcpus: i64, memory_mib: i64, tcg: bool) -> GuestLimits {
        let mem = (memory_mib.max(1) as u64) << 20;
        let tcg_cache = if tcg { TCG_CACHE_MIB << 20 } else { 0 };
        GuestLimits { vcpus: vcpus.max(1) as u64, memory_bytes: mem + (256 << 20) + mem / 8 + tcg_cache }
    }
    /// CPU time per period: `vcpus` CPUs for the vCPUs and [`EMULATOR_CPU_US`] for QEMU's own work.
    pub fn cpu_quota_us(&self) -> u64 {
        self.vcpus * PERIOD_US + EMULATOR_CPU_US
    }
    /// cgroup v2 `cpu.max`: [`GuestLimits::cpu_quota_us`] per period.
    pub fn cpu_max(&self) -> String {
        format!("{} {PERIOD_US}", self.cpu_quota_us())
    }
    /// cgroup v2 `cpu.weight` (1-10000, default 100): 100 per vCPU.
    pub fn cpu_weight(&self) -> u64 {
        (self.vcpus * 100).clamp(1, 10_000)
    }
    /// cgroup v1 `cpu.shares` (default 1024): 1024 per vCPU.
    pub fn cpu_shares(&self) -> u64 {
        self.vcpus * 1024
    }
}

impl Cgroups {
    /// Looks at this host's layout.
    pub fn detect() -> Cgroups {
        Self::detect_at(Path::new(ROOT))
    }

    pub fn detect_at(root: &Path) -> Cgroups {
        let controllers = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
        if has("cpu") && has("memory") {
            return Cgroups::V2(root.to_path_buf());
        }
        let (cpu, memory) = (root.join("cpu"), root.join("memory"));
        if cpu.join("cpu.cfs_quota_us").exists() && memory.join("memory.limit_in_bytes").exists() {
            return Cgroups::V1 { cpu, memory };
        }
        Cgroups::Unavailable(format!(
            "{} has neither cgroup v2 with the cpu and memory controllers nor v1 cpu and memory hierarchies",
            root.display()
        ))
    }

    /// The guest's cgroup directories (one for v2, cpu and memory for v1).
    pub fn dirs(&self, id: Uuid) -> Vec<PathBuf> {
        let id = id.to_string();
        match self {
            Cgroups::V2(root) => vec![root.join(SLICE).join(&id)],
            Cgroups::V1 { cpu, memory } => vec![cpu.join(SLICE).join(&id), memory.join(SLICE).join(&id)],
            Cgroups::Unavailable(_) => vec![],
        }
    }

    /// Creates the guest's cgroup with its limits; what QEMU must do to enter it.
    pub fn create(&self, id: Uuid, limits: GuestLimits) -> std::io::Result<Placement> {
        let write = |dir: &Path, file: &str, value: &str| {
            std::fs::write(dir.join(file), value).map_err(|e| {
                std::io::Error::new(e.kind(), format!("write {value} to {}: {e}", dir.join(file).display()))
            })
        };
        match self {
            Cgroups::V2(root) => {
                // Controllers must be enabled in every ancestor for the leaf to have their files.
                let slice = root.join(SLICE);
                std::fs::create_dir_all(&slice)?;
                write(root, "cgroup.subtree_control", "+cpu +memory")?;
                write(&slice, "cgroup.subtree_control", "+cpu +memory")?;
                let dir = slice.join(id.to_string());
                std::fs::create_dir_all(&dir)?;
                write(&dir, "cpu.max", &limits.cpu_max())?;
                write(&dir, "cpu.weight", &limits.cpu_weight().to_string())?;
                write(&dir, "memory.max", &limits.memory_bytes.to_string())?;
                // Without swap limits a guest over its memory could push the host into swap.
                let _ = write(&dir, "memory.swap.max", "0");
                Placement::new(vec![dir.join("cgroup.procs")])
            }
            Cgroups::V1 { .. } => {
                let dirs = self.dirs(id);
                let (cpu, memory) = (&dirs[0], &dirs[1]);
                std::fs::create_dir_all(cpu)?;
                std::fs::create_dir_all(memory)?;
                write(cpu, "cpu.cfs_period_us", &PERIOD_US.to_string())?;
                write(cpu, "cpu.cfs_quota_us", &limits.cpu_quota_us().to_string())?;
                write(cpu, "cpu.shares", &limits.cpu_shares().to_string())?;
                write(memory, "memory.limit_in_bytes", &limits.memory_bytes.to_string())?;
                Placement::new(vec![cpu.join("cgroup.procs"), memory.join("cgroup.procs")])
            }
            Cgroups::Unavailable(_) => Placement::new(vec![]),
        }
    }

    /// Removes the guest's cgroup (its processes must be gone). Absent is fine.
    pub fn remove(&self, id: Uuid) -> std::io::Result<()> {
        let mut result = Ok(());
        for dir in self.dirs(id) {
            match std::fs::remove_dir(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => result = Err(std::io::Error::new(e.kind(), format!("remove cgroup {}: {e}", dir.display()))),
            }
        }
        result
    }

    /// Ids of the guests that have a cgroup here.
    pub fn list(&self) -> Vec<Uuid> {
        let mut ids: Vec<Uuid> = Vec::new();
        for dir in self.dirs(Uuid::nil()) {
            let Some(slice) = dir.parent() else { continue };
            let Ok(rd) = std::fs::read_dir(slice) else { continue };
            for e in rd.flatten() {
                if let Some(id) = e.file_name().to_str().and_then(|s| Uuid::parse_str(s).ok()) {
                    if e.path().is_dir() && !ids.contains(&id) {
                        ids.push(id);
                    }
                }
            }
        }
        ids
    }
}

/// The `cgroup.procs` files a new process writes its pid to, prepared before fork so that the
/// child only makes async-signal-safe calls.
#[derive(Debug, Clone)]
pub struct Placement {
    procs: Vec<CString>,
}

impl Placement {
    fn new(files: Vec<PathBuf>) -> std::io::Result<Placement> {
        let procs = files
            .into_iter()
            .map(|f| CString::new(f.into_os_string().into_encoded_bytes()).map_err(std::io::Error::other))
            .collect::<std::io::Result<_>>()?;
        Ok(Placement { procs })
    }

    /// Moves the calling process into the cgroup. Async-signal-safe (open, write, close,
    /// getpid; no allocation): meant for `pre_exec`.
    pub fn enter(&self) -> std::io::Result<()> {
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let mut buf = [0u8; 16];
        let digits = format_u32(pid as u32, &mut buf);
        for p in &self.procs {
            // SAFETY: p is a NUL-terminated path; digits points into buf, which outlives the calls.
            unsafe {
                let fd = libc::open(p.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let n = libc::write(fd, digits.as_ptr().cast(), digits.len());
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if n != digits.len() as isize {
                    return Err(err);
                }
            }
        }
        Ok(())
    }
}

/// Decimal digits of `n` in `buf`, without allocating.
fn format_u32(mut n: u32, buf: &mut [u8; 16]) -> &[u8] {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    &buf[i..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_type() {
        let l = GuestLimits::for_guest(2, 512, false);
        assert_eq!(l.cpu_max(), "250000 100000", "2 vCPUs and half a CPU for QEMU's own threads");
        assert_eq!(l.cpu_weight(), 200);
        assert_eq!(l.cpu_shares(), 2048);
        assert_eq!(l.memory_bytes, (512 << 20) + (256 << 20) + (64 << 20));
        // Under TCG the translation cache QEMU is told to keep is in the limit too.
        let t = GuestLimits::for_guest(2, 512, true);
        assert_eq!(t.memory_bytes, l.memory_bytes + (TCG_CACHE_MIB << 20));
    }

    #[test]
    fn digits_without_allocation() {
        let mut buf = [0u8; 16];
        assert_eq!(format_u32(0, &mut buf), b"0");
        assert_eq!(format_u32(4_294_967_295, &mut buf), b"4294967295");
    }

    #[test]
    fn layouts_are_told_apart() {
        let d = tempfile::tempdir().unwrap();
        assert!(matches!(Cgroups::detect_at(d.path()), Cgroups::Unavailable(_)));
        std::fs::create_dir_all(d.path().join("cpu")).unwrap();
        std::fs::create_dir_all(d.path().join("memory")).unwrap();
        std::fs::write(d.path().join("cpu/cpu.cfs_quota_us"), "-1").unwrap();
        std::fs::write(d.path().join("memory/memory.limit_in_bytes"), "0").unwrap();
        let v1 = Cgroups::detect_at(d.path());
        assert!(matches!(v1, Cgroups::V1 { .. }));
        let id = Uuid::now_v7();
        assert_eq!(v1.dirs(id)[1], d.path().join("memory").join(SLICE).join(id.to_string()));
        std::fs::write(d.path().join("cgroup.controllers"), "cpuset cpu io memory pids").unwrap();
        assert_eq!(Cgroups::detect_at(d.path()), Cgroups::V2(d.path().to_path_buf()));
    }
}
