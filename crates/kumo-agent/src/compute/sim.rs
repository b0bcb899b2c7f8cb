//! The simulated hypervisor: instances are entries in a map, "booting" prints a few lines that say
//! they are simulated. For fast API tests and scale simulations; reported as driver `sim` and
//! accelerator `simulated` so nobody mistakes it for the real thing.

use crate::{GuestStatus, HostInfo, Hypervisor, InstanceSample, InstanceSpec, Result};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use uuid::Uuid;

#[derive(Debug, Default)]
struct SimGuest {
    running: bool,
    serial: Vec<u8>,
    /// Bytes trimmed from the front of `serial` (offsets stay absolute, as with QEMU's log file).
    serial_discarded: u64,
    /// Volumes the running guest has (hot-plugged or from its spec at start).
    volumes: Vec<Uuid>,
    memory_mib: i64,
    /// When the simulated guest last started (its counters run from there).
    started: Option<Instant>,
    /// The simulated root disk's bytes: made at provision, moved with the instance.
    disk: Vec<u8>,
}

/// The bytes of a fresh simulated root disk (256 KiB, different for every instance), so a move
/// has something to copy and verify.
fn simulated_disk(id: Uuid) -> Vec<u8> {
    let line = format!("kumo simulated root disk of instance {id}\n");
    line.as_bytes().iter().copied().cycle().take(256 << 10).collect()
}

/// Simulated counters: a guest that has run `secs` seconds. Each instance gets a steady load of
/// its own derived from its id (CPU 5–50 % of one core, a few KiB/s of disk), so charts of
/// simulated guests differ from each other and are reproducible. Clearly not measurements.
pub fn simulated_sample(id: Uuid, memory_mib: i64, secs: f64) -> InstanceSample {
    let seed = id.as_u128();
    let cpu_fraction = 0.05 + (seed % 46) as f64 / 100.0;
    let disk_read_rate = 1024.0 * (1 + (seed >> 8) % 64) as f64;
    let disk_write_rate = 512.0 * (1 + (seed >> 16) % 64) as f64;
    let configured = (memory_mib.max(0) as u64) << 20;
    InstanceSample {
        cpu_ns: (secs * cpu_fraction * 1e9) as u64,
        // Resident memory grows to 60 % of the configured memory over the first minute.
        memory_bytes: (configured as f64 * 0.6 * (secs / 60.0).min(1.0)) as u64,
        memory_configured_bytes: configured,
        disk_read_bytes: (secs * disk_read_rate) as u64,
        disk_write_bytes: (secs * disk_write_rate) as u64,
        disk_read_ops: (secs * disk_read_rate / 4096.0) as u64,
        disk_write_ops: (secs * disk_write_rate / 4096.0) as u64,
        ..Default::default()
    }
}

pub struct SimDriver {
    info: HostInfo,
    pool: crate::storage::pool::SimPool,
    /// Artificial latency of each operation (0 by default).
    latency: Duration,
    guests: Mutex<HashMap<Uuid, SimGuest>>,
    /// How many times each instance's guest was made (provisioned where nothing was), kept after
    /// it is destroyed: a guest made twice says so on its console (`made (time 2)`), which is how
    /// tests see that a provision retried after a crash was not done twice.
    made: Mutex<HashMap<Uuid, u32>>,
}

impl SimDriver {
    pub fn new(host_name: String, capacity: [i64; 4], latency: Duration) -> SimDriver {
        SimDriver {
            info: HostInfo {
                name: host_name,
                driver: "sim".into(),
                accelerator: "simulated".into(),
                accelerator_reason: "simulated hypervisor (sim driver): no guest really runs".into(),
                vcpus: capacity[0],
                memory_mib: capacity[1],
                disk_gib: capacity[2],
                gpus: capacity[3],
            },
            latency,
            pool: Default::default(),
            guests: Mutex::new(HashMap::new()),
            made: Mutex::default(),
        }
    }

    async fn delay(&self) {
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<Uuid, SimGuest>) -> T) -> T {
        let mut g = self.guests.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut g)
    }
}

#[async_trait]
impl Hypervisor for SimDriver {
    fn host_info(&self) -> HostInfo {
        self.info.clone()
    }

    async fn provision(&self, spec: &InstanceSpec) -> Result<()> {
        self.delay().await;
        self.with(|g| {
            let guest = match g.entry(spec.id) {
                std::collections::hash_map::Entry::Vacant(e) => {
                    let mut made = self.made.lock().unwrap_or_else(|p| p.into_inner());
                    let times = made.entry(spec.id).or_default();
                    *times += 1;
                    let line = format!("[simulated] root disk and config drive made (time {times})\n");
                    e.insert(SimGuest { serial: line.into_bytes(), ..SimGuest::default() })
                }
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            };
            if guest.disk.is_empty() {
                guest.disk = simulated_disk(spec.id);
            }
        });
        Ok(())
    }

    async fn start(&self, spec: &InstanceSpec) -> Result<()> {
        self.delay().await;
        self.with(|g| {
            let guest = g.entry(spec.id).or_default();
            if guest.disk.is_empty() {
                guest.disk = simulated_disk(spec.id);
            }
            if !guest.running {
                guest.running = true;
                guest.volumes = spec.volumes.iter().map(|v| v.id).collect();
                guest.memory_mib = spec.memory_mib;
                guest.started = Some(Instant::now());
                let boot = format!(
                    "[simulated] Linux version 0.0.0-sim (simulated guest '{}', {} vCPU, {} MiB)\n[simulated] {}\n",
                    spec.name,
                    spec.vcpus,
                    spec.memory_mib,
                    crate::compute::kvm_probe::READY_LINE
                );
                guest.serial.extend_from_slice(boot.as_bytes());
            }
        });
        Ok(())
    }

    async fn status(&self, id: Uuid) -> Result<GuestStatus> {
        Ok(self.with(|g| match g.get(&id) {
            None => GuestStatus::Absent,
            Some(guest) if guest.running => GuestStatus::Running,
            Some(_) => GuestStatus::Provisioned,
        }))
    }

    async fn stop(&self, id: Uuid, _grace: Duration) -> Result<()> {
        self.delay().await;
        self.with(|g| {
            if let Some(guest) = g.get_mut(&id) {
                if guest.running {
                    guest.running = false;
                    guest.volumes.clear();
                    guest.serial.extend_from_slice(b"[simulated] powered off\n");
                }
            }
        });
        Ok(())
    }

    async fn reboot(&self, id: Uuid) -> Result<()> {
        self.delay().await;
        self.with(|g| match g.get_mut(&id) {
            Some(guest) if guest.running => {
                guest.serial.extend_from_slice(b"[simulated] reset\n");
                Ok(())
            }
            _ => Err(crate::AgentError::Hypervisor("the guest is not running".into())),
        })
    }

    async fn destroy(&self, id: Uuid) -> Result<()> {
        self.delay().await;
        self.with(|g| g.remove(&id));
        Ok(())
    }

    async fn quarantine(&self, id: Uuid, _q: &crate::storage::quarantine::Quarantine) -> Result<()> {
        // Nothing of a simulated guest is on disk: stopping it is all there is to do.
        self.delay().await;
        self.with(|g| g.remove(&id));
        Ok(())
    }

    async fn serial(&self, id: Uuid, offset: u64, max: usize) -> Result<crate::compute::serial_log::SerialChunk> {
        Ok(self.with(|g| {
            let (log, discarded) =
                g.get(&id).map(|guest| (guest.serial.as_slice(), guest.serial_discarded)).unwrap_or((&[], 0));
            let (pos, _) = crate::compute::serial_log::locate(offset, discarded);
            // An offset past the end reads from the end.
            let from = (pos as usize).min(log.len());
            let start = discarded + from as u64;
            let end = from.saturating_add(max).min(log.len());
            let bytes = log[from..end].to_vec();
            let next = start + bytes.len() as u64;
            crate::compute::serial_log::SerialChunk { bytes, start, next }
        }))
    }

    async fn trim_serial_logs(&self, max_bytes: u64) -> Result<u64> {
        Ok(self.with(|g| {
            let mut total = 0;
            for guest in g.values_mut() {
                let d = crate::compute::serial_log::discard_amount(guest.serial.len() as u64, max_bytes, 1);
                guest.serial.drain(..d as usize);
                guest.serial_discarded += d;
                total += d;
            }
            total
        }))
    }

    async fn list(&self) -> Result<Vec<Uuid>> {
        Ok(self.with(|g| g.keys().copied().collect()))
    }

    fn pool(&self) -> &dyn crate::storage::pool::StoragePool {
        &self.pool
    }

    async fn attach_volume(&self, id: Uuid, disk: &crate::VolumeDisk) -> Result<()> {
        let volume = disk.id;
        self.delay().await;
        self.with(|g| {
            if let Some(guest) = g.get_mut(&id).filter(|guest| guest.running) {
                if !guest.volumes.contains(&volume) {
                    guest.volumes.push(volume);
                    guest.serial.extend_from_slice(format!("[simulated] virtio disk {volume} added\n").as_bytes());
                }
            }
        });
        Ok(())
    }

    async fn detach_volume(&self, id: Uuid, volume: Uuid, _deadline: Duration) -> Result<()> {
        self.delay().await;
        self.with(|g| {
            if let Some(guest) = g.get_mut(&id) {
                if guest.volumes.contains(&volume) {
                    guest.volumes.retain(|v| *v != volume);
                    guest.serial.extend_from_slice(format!("[simulated] virtio disk {volume} removed\n").as_bytes());
                }
            }
        });
        Ok(())
    }

    async fn set_volume_limits(&self, _id: Uuid, _volume: Uuid, _limits: crate::IoLimits) -> Result<()> {
        self.delay().await;
        Ok(())
    }

    async fn grow_volume(&self, _instance: Option<Uuid>, volume: Uuid, size_bytes: u64) -> Result<()> {
        use crate::storage::pool::StoragePool;
        self.pool.grow(volume, size_bytes).await
    }

    async fn export_root_disk(&self, _id: Uuid, dst: &std::path::Path) -> Result<()> {
        Ok(crate::storage::qemu_img::create(dst, 1 << 30).await?)
    }

    async fn export_for_move(&self, id: Uuid, dst: &std::path::Path) -> Result<()> {
        self.delay().await;
        let disk = self.with(|g| match g.get(&id) {
            None => Err(crate::AgentError::NotFound(id)),
            Some(guest) if guest.running => {
                Err(crate::AgentError::Hypervisor("the instance is running; stop it first".into()))
            }
            Some(guest) => Ok(guest.disk.clone()),
        })?;
        tokio::fs::write(dst, disk).await.map_err(|e| crate::AgentError::io(format!("write {}", dst.display()), e))
    }

    async fn import_root_disk(&self, id: Uuid, src: &std::path::Path) -> Result<()> {
        self.delay().await;
        let disk =
            tokio::fs::read(src).await.map_err(|e| crate::AgentError::io(format!("read {}", src.display()), e))?;
        self.with(|g| {
            let guest = g.entry(id).or_default();
            if guest.running {
                return Err(crate::AgentError::Hypervisor(
                    "the instance runs on this host; its disk is not replaced".into(),
                ));
            }
            guest.disk = disk;
            guest.serial.extend_from_slice(b"[simulated] root disk copied in from another host\n");
            Ok(())
        })?;
        tokio::fs::remove_file(src).await.map_err(|e| crate::AgentError::io(format!("remove {}", src.display()), e))
    }

    async fn snapshot_volume(&self, _instance: Option<Uuid>, volume: Uuid, snapshot: Uuid) -> Result<()> {
        use crate::storage::pool::StoragePool;
        self.pool.snapshot(volume, snapshot).await
    }

    async fn sample(&self, id: Uuid) -> Result<Option<InstanceSample>> {
        Ok(self.with(|g| match g.get(&id) {
            Some(SimGuest { running: true, started: Some(t), memory_mib, .. }) => {
                Some(simulated_sample(id, *memory_mib, t.elapsed().as_secs_f64()))
            }
            _ => None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The simulated log is capped like QEMU's file: same arithmetic, absolute offsets.
    #[tokio::test]
    async fn the_serial_log_is_capped_and_keeps_absolute_offsets() {
        let sim = SimDriver::new("h".into(), [1, 1, 1, 0], Duration::ZERO);
        let id = Uuid::from_u128(1);
        let log: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        sim.with(|g| g.entry(id).or_default().serial = log.clone());
        assert_eq!(sim.trim_serial_logs(20_000).await.unwrap(), 0, "within the cap");
        let gone = sim.trim_serial_logs(4_000).await.unwrap();
        assert_eq!(gone, 8_000, "down to half the cap");
        let c = sim.serial(id, 0, 100).await.unwrap();
        assert_eq!((c.start, c.next), (8_000, 8_100), "an old offset starts at the oldest kept byte");
        assert_eq!(c.bytes, &log[8_000..8_100]);
        let c = sim.serial(id, 9_990, 100).await.unwrap();
        assert_eq!((c.start, c.next, c.bytes.as_slice()), (9_990, 10_000, &log[9_990..]));
    }

    /// A provision of what exists is a no-op; a guest made again after its destroy says so.
    #[tokio::test]
    async fn the_console_counts_how_often_a_guest_was_made() {
        let sim = SimDriver::new("h".into(), [1, 1, 1, 0], Duration::ZERO);
        let spec = InstanceSpec {
            id: Uuid::from_u128(7),
            name: "vm".into(),
            vcpus: 1,
            memory_mib: 128,
            disk_gib: 1,
            image_disk: "/images/tiny/disk.qcow2".into(),
            boot: crate::BootSpec::Disk,
            user_data: None,
            ssh_keys: vec![],
            volumes: vec![],
            nics: vec![],
        };
        let console = |sim: &SimDriver| sim.with(|g| String::from_utf8_lossy(&g[&spec.id].serial).into_owned());
        sim.provision(&spec).await.unwrap();
        sim.provision(&spec).await.unwrap();
        assert_eq!(console(&sim), "[simulated] root disk and config drive made (time 1)\n");
        sim.destroy(spec.id).await.unwrap();
        sim.provision(&spec).await.unwrap();
        assert_eq!(console(&sim), "[simulated] root disk and config drive made (time 2)\n");
    }
}
