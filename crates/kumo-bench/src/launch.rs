//! Launch benchmarks: one instance at a time (API create → readiness line on the serial console,
//! vs raw QEMU spawn → readiness line in its serial file), and many at once. Memory samples of
//! every QEMU are taken at the moment its guest is ready.

use crate::kumod::{Api, Kumod};
use crate::procs;
use crate::raw::{RawQemu, RawSetup};
use anyhow::{bail, Context, Result};
use kumo_agent::compute::kvm_probe::READY_LINE;
use std::time::{Duration, Instant};

/// How often a single launch is polled (API or serial file).
pub const POLL: Duration = Duration::from_millis(20);
const SINGLE_TIMEOUT: Duration = Duration::from_secs(180);
const CONCURRENT_TIMEOUT: Duration = Duration::from_secs(900);
const DELETE_TIMEOUT: Duration = Duration::from_secs(60);

/// Poll period per instance when many boot at once: 20 ms each would be 1,000 API requests/s for
/// 20 guests, stealing CPU from the guests being measured. Raw guests are polled at the same rate.
pub fn concurrent_poll(n: usize) -> Duration {
    POLL.max(Duration::from_millis(5 * n as u64))
}

/// Memory of one QEMU when its guest became ready.
#[derive(Debug, Clone, Copy)]
pub struct MemSample {
    pub rss_kib: u64,
    pub guest_mib: u64,
    pub smaps: procs::QemuSmaps,
}

impl MemSample {
    pub fn of(pid: i32, guest_mib: i64) -> Option<MemSample> {
        let guest_mib = guest_mib.max(0) as u64;
        Some(MemSample {
            rss_kib: procs::vm_rss_kib(pid)?,
            guest_mib,
            smaps: procs::qemu_smaps(pid, guest_mib).unwrap_or_default(),
        })
    }

    /// VmRSS minus the guest's memory size (negative when the guest has not touched all its RAM).
    pub fn rss_minus_guest_mib(&self) -> f64 {
        self.rss_kib as f64 / 1024.0 - self.guest_mib as f64
    }

    /// VmRSS minus the resident part of the guest-RAM mapping: QEMU's own memory.
    pub fn outside_guest_ram_mib(&self) -> Option<f64> {
        self.smaps.guest_ram_kib.map(|g| (self.rss_kib.saturating_sub(g)) as f64 / 1024.0)
    }

    /// Resident part of the guest-RAM mapping.
    pub fn guest_ram_mib(&self) -> Option<f64> {
        self.smaps.guest_ram_kib.map(|g| g as f64 / 1024.0)
    }

    /// Of QEMU's own memory, the TCG translation cache.
    pub fn tcg_code_mib(&self) -> f64 {
        self.smaps.tcg_code_kib as f64 / 1024.0
    }
}

/// Follows one instance's serial console through the API until the readiness line shows.
struct ApiWatcher {
    name: String,
    id: String,
    offset: u64,
    tail: String,
    polls: u64,
}

impl ApiWatcher {
    fn new(name: String, id: String) -> ApiWatcher {
        ApiWatcher { name, id, offset: 0, tail: String::new(), polls: 0 }
    }

    /// One look. Every 25th look also checks that the instance has not failed.
    async fn poll(&mut self, api: &Api) -> Result<bool> {
        let (bytes, next) = api.serial(&self.name, self.offset).await?;
        self.offset = next;
        self.tail.push_str(&String::from_utf8_lossy(&bytes));
        if self.tail.contains(READY_LINE) {
            return Ok(true);
        }
        // Keep enough to find a line split across two reads, and the last lines for errors.
        if self.tail.len() > 4096 {
            let mut cut = self.tail.len() - 2048;
            while !self.tail.is_char_boundary(cut) {
                cut += 1;
            }
            self.tail.drain(..cut);
        }
        self.polls += 1;
        if self.polls.is_multiple_of(25) {
            let view = api.instance(&self.name).await?.with_context(|| format!("instance {} vanished", self.name))?;
            if view["state"] == "failed" {
                bail!("instance {} failed: {}", self.name, view["state_reason"]);
            }
        }
        Ok(false)
    }

    fn timeout_error(&self, timeout: Duration) -> anyhow::Error {
        anyhow::anyhow!("instance {} not ready within {timeout:?}; serial tail:\n{}", self.name, self.tail.trim())
    }
}

/// Part 1: `runs` launches through kumod and `runs` raw launches, interleaved so that load from
/// elsewhere on the machine hits both alike.
pub struct LaunchFigures {
    pub kumod: Vec<Duration>,
    pub raw: Vec<Duration>,
    /// API create → kumod's QEMU process started (its start time in /proc, 10 ms resolution).
    pub kumod_spawn: Vec<f64>,
    /// CPU seconds kumod used during each launch (serving the serial-console polls included).
    pub kumod_cpu: Vec<f64>,
    /// Serial-console polls per launch.
    pub polls: Vec<u64>,
    pub kumod_mem: Vec<MemSample>,
    pub raw_mem: Vec<MemSample>,
}

pub async fn launch_latency(kumod: &Kumod, setup: &RawSetup, runs: usize) -> Result<LaunchFigures> {
    let mut f = LaunchFigures {
        kumod: Vec::new(),
        raw: Vec::new(),
        kumod_spawn: Vec::new(),
        kumod_cpu: Vec::new(),
        polls: Vec::new(),
        kumod_mem: Vec::new(),
        raw_mem: Vec::new(),
    };
    for i in 1..=runs {
        let name = format!("lat-{i}");
        let cpu_before = procs::cpu_secs(kumod.pid);
        let boot_before = procs::boottime_now();
        let started = Instant::now();
        let id = kumod.api.create_instance(&name).await?;
        let mut w = ApiWatcher::new(name.clone(), id);
        let mut tick = crate::ticker(POLL);
        let took = loop {
            tick.tick().await;
            if w.poll(&kumod.api).await? {
                break started.elapsed();
            }
            if started.elapsed() > SINGLE_TIMEOUT {
                return Err(w.timeout_error(SINGLE_TIMEOUT));
            }
        };
        if let (Some(a), Some(b)) = (cpu_before, procs::cpu_secs(kumod.pid)) {
            f.kumod_cpu.push(b - a);
        }
        if let Some(pid) = kumod.qemu_pid(&w.id) {
            f.kumod_mem.extend(MemSample::of(pid, setup.memory_mib));
            f.kumod_spawn.extend(procs::started_at(pid).map(|t| (t - boot_before).max(0.0)));
        }
        f.polls.push(w.polls + 1);
        f.kumod.push(took);
        kumod.api.delete_instance_and_wait(&name, DELETE_TIMEOUT).await?;

        let mut q = setup.prepare(&format!("raw-{i}")).await?.spawn()?;
        let raw = q.wait_ready(POLL, SINGLE_TIMEOUT).await?;
        f.raw_mem.extend(MemSample::of(q.pid(), q.memory_mib));
        drop(q);
        f.raw.push(raw);
        eprintln!("  launch {i}/{runs}: kumod {:.3} s, raw QEMU {:.3} s", took.as_secs_f64(), raw.as_secs_f64());
    }
    Ok(f)
}

/// Raw single boots only (the baseline of part 2 when part 1 is not run).
pub async fn raw_single_boots(setup: &RawSetup, runs: usize) -> Result<Vec<Duration>> {
    let mut out = Vec::new();
    for i in 1..=runs {
        let mut q = setup.prepare(&format!("raw-{i}")).await?.spawn()?;
        let d = q.wait_ready(POLL, SINGLE_TIMEOUT).await?;
        eprintln!("  raw single boot {i}/{runs}: {:.3} s", d.as_secs_f64());
        out.push(d);
    }
    Ok(out)
}

/// Part 2: `n` launches at once.
pub struct ConcurrentFigures {
    /// First create (or spawn) → the last guest ready.
    pub wall: Duration,
    /// First create (or spawn) → each guest ready.
    pub each: Vec<Duration>,
    /// First create (or spawn) → each QEMU process started.
    pub spawned: Vec<f64>,
    pub mem: Vec<MemSample>,
}

pub async fn kumod_concurrent(kumod: &Kumod, n: usize, guest_mib: i64) -> Result<ConcurrentFigures> {
    let boot_before = procs::boottime_now();
    let started = Instant::now();
    let mut creates = tokio::task::JoinSet::new();
    for i in 1..=n {
        let api = kumod.api.clone();
        let name = format!("conc-{i:02}");
        creates.spawn(async move { api.create_instance(&name).await.map(|id| ApiWatcher::new(name, id)) });
    }
    let mut pending = Vec::new();
    while let Some(r) = creates.join_next().await {
        pending.push(r??);
    }
    let mut fig = ConcurrentFigures { wall: Duration::ZERO, each: Vec::new(), spawned: Vec::new(), mem: Vec::new() };
    let mut tick = crate::ticker(concurrent_poll(n));
    while !pending.is_empty() {
        tick.tick().await;
        let mut still = Vec::new();
        for mut w in pending {
            if w.poll(&kumod.api).await? {
                fig.each.push(started.elapsed());
                if let Some(pid) = kumod.qemu_pid(&w.id) {
                    fig.mem.extend(MemSample::of(pid, guest_mib));
                    fig.spawned.extend(procs::started_at(pid).map(|t| (t - boot_before).max(0.0)));
                }
            } else if started.elapsed() > CONCURRENT_TIMEOUT {
                return Err(w.timeout_error(CONCURRENT_TIMEOUT));
            } else {
                still.push(w);
            }
        }
        pending = still;
    }
    fig.wall = started.elapsed();
    eprintln!("  {n} concurrent launches through kumod: all ready after {:.2} s", fig.wall.as_secs_f64());
    let mut deletes = tokio::task::JoinSet::new();
    for i in 1..=n {
        let api = kumod.api.clone();
        deletes.spawn(async move { api.delete_instance_and_wait(&format!("conc-{i:02}"), DELETE_TIMEOUT).await });
    }
    while let Some(r) = deletes.join_next().await {
        r??;
    }
    Ok(fig)
}

pub async fn raw_concurrent(setup: &RawSetup, n: usize) -> Result<ConcurrentFigures> {
    let mut prepared = Vec::new();
    for i in 1..=n {
        prepared.push(setup.prepare(&format!("rawc-{i:02}")).await?);
    }
    let boot_before = procs::boottime_now();
    let started = Instant::now();
    let mut guests: Vec<RawQemu> = Vec::new();
    for p in prepared {
        guests.push(p.spawn()?);
    }
    let spawned =
        guests.iter().filter_map(|q| procs::started_at(q.pid())).map(|t| (t - boot_before).max(0.0)).collect();
    let mut fig = ConcurrentFigures { wall: Duration::ZERO, each: Vec::new(), spawned, mem: Vec::new() };
    let mut tick = crate::ticker(concurrent_poll(n));
    loop {
        tick.tick().await;
        let mut all = true;
        for q in guests.iter_mut() {
            let was_ready = q.ready.is_some();
            if q.poll_ready()?.is_none() {
                all = false;
            } else if !was_ready {
                fig.each.push(started.elapsed());
                fig.mem.extend(MemSample::of(q.pid(), q.memory_mib));
            }
        }
        if all {
            break;
        }
        if started.elapsed() > CONCURRENT_TIMEOUT {
            bail!(
                "{} of {n} raw guests not ready within {CONCURRENT_TIMEOUT:?}",
                guests.iter().filter(|q| q.ready.is_none()).count()
            );
        }
    }
    fig.wall = started.elapsed();
    eprintln!("  {n} concurrent raw QEMUs: all ready after {:.2} s", fig.wall.as_secs_f64());
    Ok(fig)
}
