//! Storage: disks and what happens to them. The storage pool holding volumes ([`pool`]), volume
//! keys for encryption at rest ([`keys`]), qemu-img ([`qemu_img`]), backups ([`backup`]) and the
//! quarantine where leaked disks and files are moved instead of being deleted ([`quarantine`]).

pub mod backup;
pub mod keys;
pub mod moves;
pub mod pool;
pub mod qemu_img;
pub mod quarantine;
