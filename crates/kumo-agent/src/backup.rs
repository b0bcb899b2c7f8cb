//! Volume backups: content-addressed chunks behind a [`BackupTarget`].
//!
//! A volume's raw data is cut into fixed-size chunks (1 MiB); each non-zero chunk is stored once
//! under its SHA-256, and a backup is a manifest listing the chunk hashes in order (`null` for an
//! all-zero chunk, which is never stored). Every manifest is complete — restoring never needs
//! another backup — yet a backup stores only the chunks the target does not have yet, so the
//! second and later backups of a volume are incremental: their cost is the data that changed.
//! Restore reads every chunk back and verifies its hash; a mismatch fails the restore with the
//! chunk's index rather than producing a silently corrupt volume.
//!
//! The first target is a directory ([`DirTarget`]); an object store is another implementation
//! of the trait (chunks are immutable objects named by their hash).

use crate::{AgentError, Result};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Size of a backup chunk.
pub const CHUNK: usize = 1 << 20;

/// A zero chunk to compare against (a memcmp, fast in every build profile).
static ZEROES: [u8; CHUNK] = [0; CHUNK];

/// What a backup holds: the volume's size and its chunks in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub size_bytes: u64,
    pub chunk_size: usize,
    /// SHA-256 (hex) of each chunk; None for an all-zero chunk.
    pub chunks: Vec<Option<String>>,
}

/// What taking a backup did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BackupStats {
    /// Non-zero chunks in the backup.
    pub chunks: u64,
    /// Chunks this backup had to store (the rest were in the target already).
    pub new_chunks: u64,
    /// Bytes this backup added to the target.
    pub bytes_stored: u64,
}

/// Where backups are kept.
#[async_trait]
pub trait BackupTarget: Send + Sync + 'static {
    /// Stores a chunk under its hash; returns false if it was there already.
    async fn put_chunk(&self, sha: &str, data: &[u8]) -> Result<bool>;
    async fn get_chunk(&self, sha: &str) -> Result<Vec<u8>>;
    async fn put_manifest(&self, id: Uuid, m: &Manifest) -> Result<()>;
    async fn get_manifest(&self, id: Uuid) -> Result<Manifest>;
    /// Removes a backup, then every chunk no remaining manifest uses.
    async fn delete(&self, id: Uuid) -> Result<()>;
}

/// A directory target: `chunks/<ab>/<sha256>` and `manifests/<id>.json`.
pub struct DirTarget {
    root: PathBuf,
}

impl DirTarget {
    pub fn new(root: PathBuf) -> DirTarget {
        DirTarget { root }
    }
    fn chunk_path(&self, sha: &str) -> PathBuf {
        self.root.join("chunks").join(&sha[..2]).join(sha)
    }
    fn manifest_path(&self, id: Uuid) -> PathBuf {
        self.root.join("manifests").join(format!("{id}.json"))
    }
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |e| AgentError::io(what, e)
}

/// Writes a file atomically (temporary name, rename); with `sync`, durably (fsync first).
fn write_atomic(path: &Path, data: &[u8], sync: bool) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io("create backup dir"))?;
    }
    let tmp = path.with_extension(format!("tmp-{}", Uuid::new_v4().simple()));
    let mut f = std::fs::File::create(&tmp).map_err(io("write backup file"))?;
    f.write_all(data).map_err(io("write backup file"))?;
    if sync {
        f.sync_all().map_err(io("sync backup file"))?;
    }
    std::fs::rename(&tmp, path).map_err(io("rename backup file"))
}

#[async_trait]
impl BackupTarget for DirTarget {
    async fn put_chunk(&self, sha: &str, data: &[u8]) -> Result<bool> {
        let path = self.chunk_path(sha);
        if path.exists() {
            return Ok(false);
        }
        // Not synced one by one: `put_manifest` makes every chunk durable (syncfs) before the
        // manifest that names them exists.
        write_atomic(&path, data, false)?;
        Ok(true)
    }

    async fn get_chunk(&self, sha: &str) -> Result<Vec<u8>> {
        std::fs::read(self.chunk_path(sha)).map_err(io("read backup chunk"))
    }

    async fn put_manifest(&self, id: Uuid, m: &Manifest) -> Result<()> {
        let bytes = serde_json::to_vec(m).map_err(|e| AgentError::Hypervisor(e.to_string()))?;
        std::fs::create_dir_all(&self.root).map_err(io("create backup dir"))?;
        let root = std::fs::File::open(&self.root).map_err(io("open backup dir"))?;
        // SAFETY: syncfs on an open descriptor has no memory-safety preconditions.
        if unsafe { libc::syncfs(root.as_raw_fd()) } != 0 {
            return Err(AgentError::io("sync backup chunks", std::io::Error::last_os_error()));
        }
        write_atomic(&self.manifest_path(id), &bytes, true)
    }

    async fn get_manifest(&self, id: Uuid) -> Result<Manifest> {
        let bytes = std::fs::read(self.manifest_path(id)).map_err(io("read backup manifest"))?;
        serde_json::from_slice(&bytes).map_err(|e| AgentError::Hypervisor(format!("backup manifest {id}: {e}")))
    }

    async fn delete(&self, id: Uuid) -> Result<()> {
        match std::fs::remove_file(self.manifest_path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AgentError::io("remove backup manifest", e)),
        }
        let mut used = HashSet::new();
        if let Ok(rd) = std::fs::read_dir(self.root.join("manifests")) {
            for e in rd.flatten() {
                let bytes = std::fs::read(e.path()).map_err(io("read backup manifest"))?;
                let m: Manifest = serde_json::from_slice(&bytes)
                    .map_err(|e| AgentError::Hypervisor(format!("backup manifest: {e}")))?;
                used.extend(m.chunks.into_iter().flatten());
            }
        }
        if let Ok(prefixes) = std::fs::read_dir(self.root.join("chunks")) {
            for p in prefixes.flatten() {
                for c in std::fs::read_dir(p.path()).map_err(io("list chunks"))?.flatten() {
                    if !used.contains(c.file_name().to_string_lossy().as_ref()) {
                        std::fs::remove_file(c.path()).map_err(io("remove chunk"))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether `[offset, offset+len)` of a (sparse) file is a hole: no data to read.
fn is_hole(f: &std::fs::File, offset: u64, len: u64) -> bool {
    // SAFETY: lseek on an open descriptor has no memory-safety preconditions.
    let next = unsafe { libc::lseek(f.as_raw_fd(), offset as libc::off_t, libc::SEEK_DATA) };
    // -1 with ENXIO: no data after offset at all.
    next < 0 || next as u64 >= offset + len
}

/// Backs up the raw image at `raw` as backup `id`.
pub async fn backup_raw(target: &dyn BackupTarget, raw: &Path, id: Uuid) -> Result<BackupStats> {
    let mut f = std::fs::File::open(raw).map_err(io("open raw export"))?;
    let size = f.metadata().map_err(io("stat raw export"))?.len();
    let mut stats = BackupStats::default();
    let mut chunks = Vec::new();
    let mut buf = vec![0u8; CHUNK];
    let mut offset = 0u64;
    while offset < size {
        let len = (size - offset).min(CHUNK as u64) as usize;
        if is_hole(&f, offset, len as u64) {
            chunks.push(None);
            offset += len as u64;
            continue;
        }
        f.seek(SeekFrom::Start(offset)).map_err(io("seek raw export"))?;
        f.read_exact(&mut buf[..len]).map_err(io("read raw export"))?;
        let data = &buf[..len];
        if data == &ZEROES[..len] {
            chunks.push(None);
        } else {
            let sha = hex::encode(Sha256::digest(data));
            stats.chunks += 1;
            if target.put_chunk(&sha, data).await? {
                stats.new_chunks += 1;
                stats.bytes_stored += len as u64;
            }
            chunks.push(Some(sha));
        }
        offset += len as u64;
    }
    target.put_manifest(id, &Manifest { size_bytes: size, chunk_size: CHUNK, chunks }).await?;
    Ok(stats)
}

/// Writes backup `id` to a new sparse raw file at `raw`, verifying every chunk's hash.
pub async fn restore_raw(target: &dyn BackupTarget, id: Uuid, raw: &Path) -> Result<u64> {
    let m = target.get_manifest(id).await?;
    let mut f = std::fs::File::create(raw).map_err(io("create raw restore"))?;
    f.set_len(m.size_bytes).map_err(io("size raw restore"))?;
    for (i, sha) in m.chunks.iter().enumerate() {
        let Some(sha) = sha else { continue };
        let data = target.get_chunk(sha).await?;
        if hex::encode(Sha256::digest(&data)) != *sha {
            return Err(AgentError::Hypervisor(format!(
                "backup {id} is corrupt: chunk {i} does not match its checksum; nothing was restored"
            )));
        }
        f.seek(SeekFrom::Start((i * m.chunk_size) as u64)).map_err(io("seek raw restore"))?;
        f.write_all(&data).map_err(io("write raw restore"))?;
    }
    f.sync_all().map_err(io("sync raw restore"))?;
    Ok(m.size_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn incremental_stores_only_changes_and_restore_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let target = DirTarget::new(dir.path().join("t"));
        let raw = dir.path().join("v.raw");
        let f = std::fs::File::create(&raw).unwrap();
        f.set_len(8 * CHUNK as u64).unwrap();
        drop(f);
        let write_at = |off: u64, data: &[u8]| {
            let mut f = std::fs::OpenOptions::new().write(true).open(&raw).unwrap();
            f.seek(SeekFrom::Start(off)).unwrap();
            f.write_all(data).unwrap();
        };
        write_at(0, &vec![7u8; 3 * CHUNK]);
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let full = backup_raw(&target, &raw, a).await.unwrap();
        assert_eq!((full.chunks, full.new_chunks, full.bytes_stored), (3, 1, CHUNK as u64), "identical chunks dedup");
        write_at(5 * CHUNK as u64, b"changed");
        let inc = backup_raw(&target, &raw, b).await.unwrap();
        assert_eq!((inc.chunks, inc.new_chunks), (4, 1));
        assert!(inc.bytes_stored <= full.bytes_stored);

        let out = dir.path().join("r.raw");
        restore_raw(&target, b, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&raw).unwrap());
        // Deleting the full backup keeps what the incremental needs.
        target.delete(a).await.unwrap();
        restore_raw(&target, b, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&raw).unwrap());
        // A corrupt chunk fails the restore.
        let m = target.get_manifest(b).await.unwrap();
        let sha = m.chunks[5].clone().unwrap();
        std::fs::write(target.chunk_path(&sha), b"tampered").unwrap();
        let err = restore_raw(&target, b, &out).await.unwrap_err().to_string();
        assert!(err.contains("chunk 5"), "{err}");
    }
}
