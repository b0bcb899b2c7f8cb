//! The QEMU command line of an instance: the machine, its root disk and config drive, NICs and
//! boot ([`command_line`]), its volumes in fixed PCI slots ([`volume_args`]), QEMU's own sandbox
//! ([`confinement_args`]) and the root disk's I/O allowance ([`root_disk_limits`]).

use super::RunDir;
use crate::compute::kvm_probe::Accel;
use crate::storage::pool::{self as storage, StoragePool};
use crate::{BootSpec, InstanceSpec, IoLimits, VolumeDisk};
use std::ffi::OsString;

/// The QEMU command line for an instance. The benchmark starts "raw" QEMU with exactly this, so
/// the comparison is like for like.
pub fn command_line(spec: &InstanceSpec, run: &RunDir, accel: Accel) -> Vec<OsString> {
    let mut a: Vec<OsString> = Vec::new();
    let mut push = |s: &str| a.push(OsString::from(s));
    push("-name");
    push(&format!("kumo-{},debug-threads=off", spec.id));
    push("-uuid");
    push(&spec.id.to_string());
    push("-smbios");
    push(&smbios_system(spec));
    push("-accel");
    match accel {
        // TCG's translation cache is anonymous memory that grows up to its size (QEMU's default
        // is 1 GiB): bound it, so the guest's cgroup limit (cgroup::TCG_CACHE_MIB) holds it.
        Accel::Tcg => push(&format!("tcg,tb-size={}", crate::compute::cgroup::TCG_CACHE_MIB)),
        Accel::Kvm => push(accel.as_str()),
    }
    push("-m");
    push(&spec.memory_mib.to_string());
    push("-smp");
    push(&spec.vcpus.to_string());
    push("-nodefaults");
    push("-no-user-config");
    push("-display");
    push("none");
    push("-chardev");
    push(&format!("file,id=serial0,path={},append=on", run.serial().display()));
    push("-serial");
    push("chardev:serial0");
    push("-qmp");
    push(&format!("unix:{},server=on,wait=off", run.qmp().display()));
    push("-pidfile");
    push(&run.pidfile().display().to_string());
    push("-drive");
    push(&format!(
        "file={},id={ROOT_DRIVE},if=virtio,format=qcow2,cache=writeback,discard=unmap",
        run.disk().display()
    ));
    push("-drive");
    push(&format!("file={},if=virtio,format=raw,readonly=on", run.config_drive().display()));
    if spec.nics.is_empty() {
        push("-nic");
        push("none");
    }
    for (i, nic) in spec.nics.iter().enumerate() {
        // The tap exists already (the host data plane made it, on the VPC's bridge).
        push("-netdev");
        push(&format!("tap,id=net{i},ifname={},script=no,downscript=no", crate::network::tap_name(&nic.mac)));
        push("-device");
        push(&format!("virtio-net-pci,netdev=net{i},mac={}", nic.mac));
    }
    if let BootSpec::Kernel { kernel, initrd, cmdline } = &spec.boot {
        push("-kernel");
        push(&kernel.display().to_string());
        if let Some(initrd) = initrd {
            push("-initrd");
            push(&initrd.display().to_string());
        }
        push("-append");
        push(cmdline);
    }
    a
}

/// SMBIOS type 1 (system) strings: what cloud-init's `ds-identify` reads to decide which
/// datasources may apply. `product=OpenStack Nova` lets it enable the OpenStack metadata service
/// at 169.254.169.254 beside the config drive (found by its label alone); the serial is the
/// instance id, as Nova sets it. No value contains a comma (QEMU's option separator).
pub fn smbios_system(spec: &InstanceSpec) -> String {
    format!(
        "type=1,manufacturer=Kumo,product=OpenStack Nova,version={},serial={},family=Virtual Machine",
        env!("CARGO_PKG_VERSION"),
        spec.id
    )
}

/// The root disk's drive id: its block backend's name, which QMP's `block_set_io_throttle` takes.
pub const ROOT_DRIVE: &str = "kumo-root";

/// QEMU's own confinement: its seccomp sandbox, and the unprivileged user it switches to once it
/// has opened its files (disks, taps, sockets, serial log), so those stay owned by root and
/// closed to that user. The sandbox denies obsolete system calls, spawning processes and
/// changing scheduling/resource limits. With `-runas` it must allow set*uid: QEMU 7.2 installs
/// the filter before it drops privileges, so `elevateprivileges=deny` kills it with SIGSYS at the
/// drop; once dropped, the user has no capabilities and `no_new_privs` is set (by the sandbox),
/// so it cannot regain any. Without a user (kumod not root) set*uid is denied as well.
pub fn confinement_args(user: Option<&str>) -> Vec<OsString> {
    let elevate = if user.is_some() { "allow" } else { "deny" };
    let mut a: Vec<OsString> = vec![
        "-sandbox".into(),
        format!("on,obsolete=deny,elevateprivileges={elevate},spawn=deny,resourcecontrol=deny").into(),
    ];
    if let Some(u) = user {
        a.push("-runas".into());
        a.push(u.into());
    }
    a
}

/// The root disk's I/O limits for a guest of `vcpus`, from the per-vCPU allowance (0 or None:
/// unlimited).
pub fn root_disk_limits(per_vcpu: IoLimits, vcpus: i64) -> IoLimits {
    let scale = |v: Option<u64>| v.filter(|v| *v > 0).map(|v| v.saturating_mul(vcpus.max(1) as u64));
    IoLimits { iops: scale(per_vcpu.iops), bytes_per_sec: scale(per_vcpu.bytes_per_sec) }
}

/// First PCI slot of cold-attached volumes. `-device`s are realised before `-drive if=virtio`
/// disks, so without fixed slots a volume would take a lower slot than the root disk and the guest
/// would name it vda. Slots from 0x10 leave the low ones to the root disk, the config drive and
/// NICs (auto-assigned, lowest free first), so the guest sees volumes as vdc, vdd, … in order.
const VOLUME_FIRST_SLOT: usize = 0x10;

/// The command-line arguments that give the guest its volumes, in order: a `-blockdev` opening
/// each (described by the pool) and a virtio-blk device on it, with the ids hot-plug uses, so a
/// cold-attached volume can be hot-unplugged like a hot-plugged one.
pub fn volume_args(pool: &dyn StoragePool, volumes: &[VolumeDisk]) -> Vec<OsString> {
    let mut a = Vec::new();
    for (i, v) in volumes.iter().map(|d| &d.id).enumerate() {
        let node = storage::node_name(*v);
        a.push(OsString::from("-blockdev"));
        a.push(OsString::from(pool.blockdev(*v, &node).to_string()));
        a.push(OsString::from("-device"));
        a.push(OsString::from(format!(
            "virtio-blk-pci,drive={node},id={},serial={},addr={:#x}",
            storage::device_id(*v),
            storage::disk_serial(*v),
            VOLUME_FIRST_SLOT + i
        )));
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compute::qemu::tests::spec;
    use crate::storage::pool::DirPool;
    use std::path::Path;
    use uuid::Uuid;

    #[test]
    fn command_line_has_the_essentials() {
        let run = RunDir::new(Path::new("/d/instances"), Uuid::nil());
        let args: Vec<String> =
            command_line(&spec(None), &run, Accel::Tcg).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let joined = args.join(" ");
        for needle in
            ["-accel tcg", "-m 256", "-smp 2", "-pidfile /d/instances/", "-kernel /k", "-initrd /i", "append=on"]
        {
            assert!(joined.contains(needle), "missing {needle} in {joined}");
        }
    }

    #[test]
    fn guests_are_sandboxed_and_drop_to_the_unprivileged_user() {
        let strs = |v: Vec<OsString>| v.into_iter().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>();
        assert_eq!(
            strs(confinement_args(Some("kumo-qemu"))),
            [
                "-sandbox",
                "on,obsolete=deny,elevateprivileges=allow,spawn=deny,resourcecontrol=deny",
                "-runas",
                "kumo-qemu"
            ]
        );
        // Staying root: nothing needs set*uid, so it is denied too.
        assert_eq!(
            strs(confinement_args(None)),
            ["-sandbox", "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"]
        );
    }

    #[test]
    fn guests_identify_as_openstack_to_cloud_init() {
        let run = RunDir::new(Path::new("/d/instances"), Uuid::nil());
        let s = spec(None);
        let args: Vec<String> =
            command_line(&s, &run, Accel::Tcg).iter().map(|a| a.to_string_lossy().into_owned()).collect();
        let i = args.iter().position(|a| a == "-smbios").expect("-smbios on the command line");
        let fields: Vec<&str> = args[i + 1].split(',').collect();
        assert_eq!(fields[0], "type=1");
        assert!(fields.contains(&"product=OpenStack Nova"), "{fields:?}");
        assert!(fields.contains(&format!("serial={}", s.id).as_str()), "{fields:?}");
        assert!(fields.iter().all(|f| f.contains('=')), "a value holds a comma: {fields:?}");
    }

    #[test]
    fn the_root_disk_is_named_and_limited_by_the_type() {
        let run = RunDir::new(Path::new("/d/instances"), Uuid::nil());
        let joined: String = command_line(&spec(None), &run, Accel::Tcg)
            .iter()
            .map(|a| a.to_string_lossy().into_owned() + " ")
            .collect();
        assert!(joined.contains(&format!("disk.qcow2,id={ROOT_DRIVE},if=virtio")), "{joined}");
        let per_vcpu = IoLimits { iops: Some(2000), bytes_per_sec: Some(100 << 20) };
        assert_eq!(root_disk_limits(per_vcpu, 4), IoLimits { iops: Some(8000), bytes_per_sec: Some(400 << 20) });
        assert_eq!(root_disk_limits(IoLimits { iops: Some(0), bytes_per_sec: None }, 4), IoLimits::default());
    }

    #[test]
    fn volumes_come_after_the_root_disk_in_fixed_slots() {
        let pool = DirPool::new("/d/volumes".into());
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let disks = [a, b].map(|id| VolumeDisk { id, limits: IoLimits::default() });
        let args: Vec<String> = volume_args(&pool, &disks).iter().map(|s| s.to_string_lossy().into_owned()).collect();
        assert_eq!(args.len(), 8);
        assert_eq!(args[0], "-blockdev");
        let blockdev: serde_json::Value = serde_json::from_str(&args[1]).unwrap();
        assert_eq!(blockdev["file"]["filename"], format!("/d/volumes/{a}.qcow2"));
        assert_eq!(blockdev["node-name"], storage::node_name(a));
        assert!(args[3].contains(&format!("id={}", storage::device_id(a))) && args[3].ends_with("addr=0x10"));
        assert!(args[7].ends_with("addr=0x11"), "{}", args[7]);
    }
}
