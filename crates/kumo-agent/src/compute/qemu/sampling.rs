//! Samples of a running guest: CPU time and memory of its QEMU process, its taps' traffic, its
//! disks' I/O (see [`Hypervisor::sample`](crate::Hypervisor::sample)).

use super::QemuDriver;
use crate::compute::{proc, qmp};
use crate::{InstanceSample, Result};
use uuid::Uuid;

impl QemuDriver {
    /// [`Hypervisor::sample`](crate::Hypervisor::sample).
    pub(super) async fn sample_live(&self, id: Uuid) -> Result<Option<InstanceSample>> {
        let Some(pid) = self.live_pid(id) else { return Ok(None) };
        let Some((cpu_ns, memory_bytes)) = proc::cpu_and_rss(pid) else { return Ok(None) };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let memory_configured_bytes = configured_memory_bytes(&cmdline).unwrap_or(0);
        let mut sample = InstanceSample { cpu_ns, memory_bytes, memory_configured_bytes, ..Default::default() };
        // The guest's taps, as the namespace QEMU runs in sees them (QEMU was started inside the
        // data plane's namespace, so /proc/<pid>/net/dev lists its taps). What the tap receives
        // the guest sent, and the other way round.
        let taps = tap_names(&cmdline);
        if !taps.is_empty() {
            let dev = std::fs::read_to_string(format!("/proc/{pid}/net/dev")).unwrap_or_default();
            for (name, c) in parse_net_dev(&dev) {
                if taps.contains(&name) {
                    sample.net_tx_bytes += c.rx_bytes;
                    sample.net_tx_packets += c.rx_packets;
                    sample.net_rx_bytes += c.tx_bytes;
                    sample.net_rx_packets += c.tx_packets;
                }
            }
        }
        // Every disk of the guest (root disk, config drive, volumes).
        for dev in qmp::execute(&self.run_dir(id).qmp(), qmp::QueryBlockstats {}).await? {
            sample.disk_read_bytes += dev.stats.rd_bytes;
            sample.disk_write_bytes += dev.stats.wr_bytes;
            sample.disk_read_ops += dev.stats.rd_operations;
            sample.disk_write_ops += dev.stats.wr_operations;
        }
        Ok(Some(sample))
    }
}

/// The guest memory (`-m <MiB>`) of a QEMU command line (NUL-separated, as in /proc/<pid>/cmdline).
pub fn configured_memory_bytes(cmdline: &[u8]) -> Option<u64> {
    let mut args = cmdline.split(|b| *b == 0);
    while let Some(a) = args.next() {
        if a == b"-m" {
            let v = std::str::from_utf8(args.next()?).ok()?;
            // `-m 256`, `-m 256M` or `-m size=256M`
            let v = v.trim_start_matches("size=").trim_end_matches(['M', 'm']);
            return v.parse::<u64>().ok().map(|mib| mib << 20);
        }
    }
    None
}

/// The taps of a QEMU command line (`-netdev tap,…,ifname=<tap>,…`; NUL-separated, as in
/// /proc/<pid>/cmdline).
pub fn tap_names(cmdline: &[u8]) -> Vec<String> {
    let mut args = cmdline.split(|b| *b == 0);
    let mut out = Vec::new();
    while let Some(a) = args.next() {
        if a == b"-netdev" {
            let Some(v) = args.next().and_then(|v| std::str::from_utf8(v).ok()) else { break };
            if v.starts_with("tap,") {
                out.extend(v.split(',').filter_map(|kv| kv.strip_prefix("ifname=")).map(String::from));
            }
        }
    }
    out
}

/// Counters of one network device, as the host sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetDevCounters {
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
}

/// Parses /proc/net/dev: `name: rx_bytes rx_packets errs drop fifo frame compressed multicast
/// tx_bytes tx_packets …` after two header lines.
pub fn parse_net_dev(text: &str) -> Vec<(String, NetDevCounters)> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let n: Vec<u64> = rest.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect();
            (n.len() >= 10).then(|| {
                let c = NetDevCounters { rx_bytes: n[0], rx_packets: n[1], tx_bytes: n[8], tx_packets: n[9] };
                (name.trim().to_string(), c)
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::kvm_probe::Accel;
    use crate::compute::qemu::cmdline::command_line;
    use crate::compute::qemu::tests::spec;
    use crate::compute::qemu::RunDir;
    use std::path::Path;

    #[test]
    fn configured_memory_from_the_command_line() {
        assert_eq!(configured_memory_bytes(b"qemu\0-name\0x\0-m\x00256\0-smp\x001\0"), Some(256 << 20));
        assert_eq!(configured_memory_bytes(b"qemu\0-m\0size=512M\0"), Some(512 << 20));
        assert_eq!(configured_memory_bytes(b"qemu\0-smp\x001\0"), None);
    }

    #[test]
    fn taps_of_the_command_line_and_their_counters() {
        let mut spec = spec(None);
        spec.nics = vec![crate::NicSpec { mac: "52:54:0a:1b:2c:3d".into() }];
        let run = RunDir::new(Path::new("/d"), spec.id);
        let cmdline: Vec<u8> = command_line(&spec, &run, Accel::Tcg)
            .iter()
            .flat_map(|a| a.as_encoded_bytes().iter().copied().chain([0]))
            .collect();
        assert_eq!(tap_names(&cmdline), ["kt0a1b2c3d"]);
        assert!(tap_names(b"qemu\0-netdev\0user,id=n0\0").is_empty());

        let dev = "Inter-|   Receive                                                |  Transmit\n \
             face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n\
                lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0\n\
            kt0a1b2c3d: 5000      40    0    0    0     0          0         0    70000      55    0    0    0     0       0          0\n";
        let parsed = parse_net_dev(dev);
        assert_eq!(parsed.len(), 2);
        assert_eq!(
            parsed[1],
            (
                "kt0a1b2c3d".to_string(),
                NetDevCounters { rx_bytes: 5000, rx_packets: 40, tx_bytes: 70000, tx_packets: 55 }
            )
        );
    }
}
