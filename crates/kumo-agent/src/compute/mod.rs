//! Compute: running guests. The hypervisor drivers ([`qemu`]: real QEMU processes; [`sim`]: the
//! in-process simulation) and what they stand on: QMP ([`qmp`]), the serial console log
//! ([`serial_log`]), per-guest cgroups ([`cgroup`]), confinement of processes touching untrusted
//! data ([`confine`]), the KVM probe ([`kvm_probe`]), processes kumod did not necessarily start
//! ([`proc`]) and what this machine offers guests ([`capacity`]).

pub mod capacity;
pub mod cgroup;
pub mod confine;
pub mod kvm_probe;
pub mod proc;
pub mod qemu;
pub mod qmp;
pub mod serial_log;
pub mod sim;
