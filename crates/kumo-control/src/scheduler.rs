//! Scheduler v0: placement arithmetic, kept pure so it can be tested exhaustively.
//!
//! A host fits a request when, for every resource, `used + requested <= limit`, where `limit` is
//! the physical amount times the host's overcommit ratio (GPUs are never overcommitted). Among the
//! hosts that fit, the one with the most free memory comes first (spreading load). The caller then
//! reserves on the first host whose conditional reservation succeeds, in the same transaction as
//! the insert, so concurrent creates cannot overshoot.

use kumo_store::hosts::Resources;
use kumo_types::{HostId, HostView};

fn free(h: &HostView) -> Resources {
    Resources {
        vcpus: h.vcpus_limit - h.vcpus_used,
        memory_mib: h.memory_mib_limit - h.memory_mib_used,
        disk_gib: h.disk_gib_limit - h.disk_gib_used,
        gpus: h.gpus_total - h.gpus_used,
    }
}

pub fn fits(h: &HostView, want: Resources) -> bool {
    let f = free(h);
    want.vcpus <= f.vcpus && want.memory_mib <= f.memory_mib && want.disk_gib <= f.disk_gib && want.gpus <= f.gpus
}

/// Hosts that can take `want`, best first; or a message saying what is short.
pub fn rank(hosts: &[HostView], want: Resources) -> Result<Vec<HostId>, String> {
    let mut fitting: Vec<&HostView> = hosts.iter().filter(|h| fits(h, want)).collect();
    if fitting.is_empty() {
        return Err(shortage(hosts, want));
    }
    fitting.sort_by_key(|h| std::cmp::Reverse((free(h).memory_mib, free(h).vcpus)));
    Ok(fitting.into_iter().map(|h| h.id).collect())
}

/// Explains why nothing fits: which resources no host has enough of.
pub fn shortage(hosts: &[HostView], want: Resources) -> String {
    if hosts.is_empty() {
        return "no host is registered".into();
    }
    let most = |f: fn(&Resources) -> i64| hosts.iter().map(|h| f(&free(h))).max().unwrap_or(0).max(0);
    let checks: [(&str, i64, i64); 4] = [
        ("vCPUs", want.vcpus, most(|r| r.vcpus)),
        ("MiB of memory", want.memory_mib, most(|r| r.memory_mib)),
        ("GiB of disk", want.disk_gib, most(|r| r.disk_gib)),
        ("GPUs", want.gpus, most(|r| r.gpus)),
    ];
    let short: Vec<String> = checks
        .iter()
        .filter(|(_, need, have)| need > have)
        .map(|(what, need, have)| format!("{need} {what} requested, at most {have} free on any host"))
        .collect();
    if short.is_empty() {
        format!(
            "no single host has {} vCPUs, {} MiB of memory, {} GiB of disk and {} GPUs free at once",
            want.vcpus, want.memory_mib, want.disk_gib, want.gpus
        )
    } else {
        format!("not enough capacity: {}", short.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(name: &str, limit: [i64; 3], used: [i64; 3], gpus: (i64, i64)) -> HostView {
        let t = chrono::Utc::now();
        HostView {
            id: kumo_types::HostId::new_v7(),
            name: name.into(),
            description: String::new(),
            time_created: t,
            time_modified: t,
            driver: "sim".into(),
            accelerator: "simulated".into(),
            accelerator_reason: String::new(),
            vcpus_total: limit[0],
            vcpus_used: used[0],
            vcpus_limit: limit[0],
            memory_mib_total: limit[1],
            memory_mib_used: used[1],
            memory_mib_limit: limit[1],
            disk_gib_total: limit[2],
            disk_gib_used: used[2],
            disk_gib_limit: limit[2],
            gpus_total: gpus.0,
            gpus_used: gpus.1,
            cpu_overcommit: 1.0,
            memory_overcommit: 1.0,
            disk_overcommit: 1.0,
        }
    }

    fn want(v: i64, m: i64, d: i64, g: i64) -> Resources {
        Resources { vcpus: v, memory_mib: m, disk_gib: d, gpus: g }
    }

    #[test]
    fn exact_fit_is_a_fit_and_one_more_is_not() {
        let h = host("a", [4, 1024, 10], [2, 512, 5], (0, 0));
        assert!(fits(&h, want(2, 512, 5, 0)));
        assert!(!fits(&h, want(3, 512, 5, 0)));
        assert!(!fits(&h, want(2, 513, 5, 0)));
        assert!(!fits(&h, want(2, 512, 6, 0)));
    }

    #[test]
    fn gpu_types_only_go_where_gpus_are_free() {
        let plain = host("plain", [8, 8192, 100], [0, 0, 0], (0, 0));
        let gpu = host("gpu", [8, 4096, 100], [0, 0, 0], (1, 0));
        let busy_gpu = host("busy", [8, 8192, 100], [0, 0, 0], (1, 1));
        let ranked = rank(&[plain.clone(), gpu.clone(), busy_gpu.clone()], want(1, 512, 1, 1)).unwrap();
        assert_eq!(ranked, vec![gpu.id]);
        let err = rank(&[plain, busy_gpu], want(1, 512, 1, 1)).unwrap_err();
        assert!(err.contains("1 GPUs requested, at most 0 free"), "{err}");
    }

    #[test]
    fn prefers_the_host_with_most_free_memory() {
        let a = host("a", [8, 2048, 100], [0, 1024, 0], (0, 0));
        let b = host("b", [8, 4096, 100], [0, 0, 0], (0, 0));
        assert_eq!(rank(&[a.clone(), b.clone()], want(1, 256, 1, 0)).unwrap(), vec![b.id, a.id]);
    }

    #[test]
    fn shortage_names_what_is_short() {
        let h = host("a", [2, 1024, 10], [2, 0, 0], (0, 0));
        let msg = rank(std::slice::from_ref(&h), want(1, 2048, 1, 0)).unwrap_err();
        assert!(msg.contains("1 vCPUs requested, at most 0 free"), "{msg}");
        assert!(msg.contains("2048 MiB of memory requested, at most 1024 free"), "{msg}");
        assert!(!msg.contains("disk"), "{msg}");
        // Enough of each somewhere, but never all on one host.
        let cpu_rich = host("c", [8, 256, 10], [0, 0, 0], (0, 0));
        let mem_rich = host("m", [1, 8192, 10], [0, 0, 0], (0, 0));
        let msg = rank(&[cpu_rich, mem_rich], want(4, 4096, 1, 0)).unwrap_err();
        assert!(msg.starts_with("no single host"), "{msg}");
        assert_eq!(rank(&[], want(1, 1, 1, 0)).unwrap_err(), "no host is registered");
    }
}
