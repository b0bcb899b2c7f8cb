//! The simulated hypervisor: instances are entries in a map, "booting" prints a few lines that say
//! they are simulated. For fast API tests and scale simulations; reported as driver `sim` and
//! accelerator `simulated` so nobody mistakes it for the real thing.

use crate::{GuestStatus, HostInfo, Hypervisor, InstanceSpec, Result};
use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use uuid::Uuid;

#[derive(Debug, Default)]
struct SimGuest {
    running: bool,
    serial: Vec<u8>,
}

pub struct SimDriver {
    info: HostInfo,
    /// Artificial latency of each operation (0 by default).
    latency: Duration,
    guests: Mutex<HashMap<Uuid, SimGuest>>,
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
            guests: Mutex::new(HashMap::new()),
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
            g.entry(spec.id).or_default();
        });
        Ok(())
    }

    async fn start(&self, spec: &InstanceSpec) -> Result<()> {
        self.delay().await;
        self.with(|g| {
            let guest = g.entry(spec.id).or_default();
            if !guest.running {
                guest.running = true;
                let boot = format!(
                    "[simulated] Linux version 0.0.0-sim (simulated guest '{}', {} vCPU, {} MiB)\n[simulated] {}\n",
                    spec.name,
                    spec.vcpus,
                    spec.memory_mib,
                    crate::kvm_probe::READY_LINE
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

    async fn serial(&self, id: Uuid, offset: u64, max: usize) -> Result<(Vec<u8>, u64)> {
        Ok(self.with(|g| {
            let log = g.get(&id).map(|guest| guest.serial.as_slice()).unwrap_or(&[]);
            let start = (offset as usize).min(log.len());
            let end = (start + max).min(log.len());
            (log[start..end].to_vec(), end as u64)
        }))
    }

    async fn list(&self) -> Result<Vec<Uuid>> {
        Ok(self.with(|g| g.keys().copied().collect()))
    }
}
