//! Root disks on the move (cold migration): the host side of [`kumo_host_api::HostAgent::export_disk`]
//! and its companions. Everything lives in `DATA_DIR/moves`, one file per instance and direction:
//!
//! | file              | what                                                                     |
//! |-------------------|--------------------------------------------------------------------------|
//! | `<id>.export`     | the source's staged copy: the root disk flattened into one standalone qcow2 (written as `.export.tmp`, then renamed: a present export is complete) |
//! | `<id>.import`     | the target's incoming copy, written chunk by chunk in order; checked (size, SHA-256) before it becomes the instance's disk by one rename |
//!
//! Nothing here is the instance's disk: discarding a move ([`Moves::discard`]) never loses data.

use crate::{AgentError, Result};
use kumo_host_api::{DiskExport, DISK_CHUNK_BYTES};
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// `DATA_DIR/moves`.
#[derive(Debug, Clone)]
pub struct Moves {
    dir: PathBuf,
}

impl Moves {
    pub fn new(dir: PathBuf) -> Moves {
        Moves { dir }
    }

    pub fn export_path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.export"))
    }

    pub fn import_path(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.import"))
    }

    /// A temporary name for an export being written.
    pub fn export_tmp(&self, id: Uuid) -> PathBuf {
        self.dir.join(format!("{id}.export.tmp"))
    }

    pub async fn ensure_dir(&self) -> Result<()> {
        tokio::fs::create_dir_all(&self.dir)
            .await
            .map_err(|e| AgentError::io(format!("create {}", self.dir.display()), e))
    }

    /// Up to `max` bytes (at most [`DISK_CHUNK_BYTES`]) of the staged export from `offset`.
    pub async fn read_export(&self, id: Uuid, offset: u64, max: u64) -> Result<Vec<u8>> {
        let path = self.export_path(id);
        let max = max.min(DISK_CHUNK_BYTES) as usize;
        blocking(move || {
            let mut f = match std::fs::File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(AgentError::NotFound(id)),
                Err(e) => return Err(AgentError::io(format!("open {}", path.display()), e)),
            };
            f.seek(SeekFrom::Start(offset)).map_err(|e| AgentError::io("seek in the export", e))?;
            let mut buf = Vec::with_capacity(max);
            f.take(max as u64).read_to_end(&mut buf).map_err(|e| AgentError::io("read the export", e))?;
            Ok(buf)
        })
        .await
    }

    /// Writes `bytes` at `offset` of the incoming copy: offset 0 starts it afresh; a later offset
    /// must not leave a hole (what lies past it is cut off, so a chunk sent again is harmless).
    pub async fn write_import(&self, id: Uuid, offset: u64, bytes: Vec<u8>) -> Result<()> {
        self.ensure_dir().await?;
        let path = self.import_path(id);
        blocking(move || {
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(offset == 0)
                .open(&path)
                .map_err(|e| AgentError::io(format!("open {}", path.display()), e))?;
            let len = f.metadata().map_err(|e| AgentError::io("stat the incoming copy", e))?.len();
            if offset > len {
                return Err(AgentError::Hypervisor(format!(
                    "a chunk at byte {offset} of instance {id}'s incoming disk, which has only {len} bytes: \
                     chunks are written in order"
                )));
            }
            f.set_len(offset).map_err(|e| AgentError::io("cut the incoming copy", e))?;
            f.seek(SeekFrom::Start(offset)).map_err(|e| AgentError::io("seek in the incoming copy", e))?;
            f.write_all(&bytes).map_err(|e| AgentError::io("write the incoming copy", e))?;
            f.sync_data().map_err(|e| AgentError::io("sync the incoming copy", e))
        })
        .await
    }

    /// Removes both files of the instance's move, if any.
    pub async fn discard(&self, id: Uuid) -> Result<()> {
        for path in [self.export_path(id), self.export_tmp(id), self.import_path(id)] {
            match tokio::fs::remove_file(&path).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(AgentError::io(format!("remove {}", path.display()), e)),
            }
        }
        Ok(())
    }
}

/// Size and SHA-256 of a file.
pub async fn digest(path: &Path) -> Result<DiskExport> {
    let path = path.to_path_buf();
    blocking(move || {
        let mut f = std::fs::File::open(&path).map_err(|e| AgentError::io(format!("open {}", path.display()), e))?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        let mut size = 0u64;
        loop {
            let n = f.read(&mut buf).map_err(|e| AgentError::io(format!("read {}", path.display()), e))?;
            if n == 0 {
                break;
            }
            hash.update(&buf[..n]);
            size += n as u64;
        }
        Ok(DiskExport { size_bytes: size, sha256: hex::encode(hash.finalize()) })
    })
    .await
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AgentError::Hypervisor(format!("a disk transfer task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn chunks_are_written_in_order_and_a_resent_one_is_harmless() {
        let dir = tempfile::tempdir().unwrap();
        let m = Moves::new(dir.path().join("moves"));
        let id = Uuid::now_v7();
        m.write_import(id, 0, b"hello ".to_vec()).await.unwrap();
        m.write_import(id, 6, b"world".to_vec()).await.unwrap();
        m.write_import(id, 6, b"world".to_vec()).await.unwrap();
        assert_eq!(std::fs::read(m.import_path(id)).unwrap(), b"hello world");
        let err = m.write_import(id, 100, b"x".to_vec()).await.unwrap_err();
        assert!(err.to_string().contains("in order"), "{err}");
        let d = digest(&m.import_path(id)).await.unwrap();
        assert_eq!(d.size_bytes, 11);
        assert_eq!(d.sha256, "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9");
        std::fs::write(m.export_path(id), b"abcdef").unwrap();
        assert_eq!(m.read_export(id, 2, 3).await.unwrap(), b"cde");
        assert_eq!(m.read_export(id, 10, 3).await.unwrap(), b"");
        m.discard(id).await.unwrap();
        assert!(!m.import_path(id).exists() && !m.export_path(id).exists());
        assert!(matches!(m.read_export(id, 0, 1).await, Err(AgentError::NotFound(_))));
    }
}
