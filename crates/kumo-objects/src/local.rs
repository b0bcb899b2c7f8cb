//! [`LocalDir`]: blobs as files of a local directory.
//!
//! `ROOT/blobs/XY/ID` holds blob `ID` (`XY`: its id's first two hex digits, so that no directory
//! grows past a few thousand entries); a write goes to `ROOT/tmp/ID` first and is renamed into
//! place once fsynced, then the directory is fsynced: a file under `blobs/` is always whole.
//! `tmp/` holds only writes in flight, so opening the directory empties it (a crash's leftovers).

use crate::{ByteStream, Check, Error, ObjectData, Result, Written, BLOCK};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use md5::{Digest, Md5};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};
use uuid::Uuid;

/// Size of the writes to and reads from a blob's file.
const CHUNK: usize = 1 << 20;

/// Blobs in a local directory.
#[derive(Debug, Clone)]
pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    /// Opens (creating) the directory, and removes the leftovers of writes a crash interrupted.
    pub fn open(root: &Path) -> Result<LocalDir> {
        std::fs::create_dir_all(root.join("blobs"))?;
        let tmp = root.join("tmp");
        if tmp.exists() {
            for e in std::fs::read_dir(&tmp)? {
                let e = e?;
                tracing::info!(path = %e.path().display(), "object data: removing an interrupted write");
                std::fs::remove_file(e.path())?;
            }
        }
        std::fs::create_dir_all(&tmp)?;
        Ok(LocalDir { root: root.to_path_buf() })
    }

    fn dir_of(&self, id: Uuid) -> PathBuf {
        self.root.join("blobs").join(&id.simple().to_string()[..2])
    }

    fn path_of(&self, id: Uuid) -> PathBuf {
        self.dir_of(id).join(id.to_string())
    }
}

async fn fsync_dir(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(dir)?.sync_all()).await.map_err(std::io::Error::other)?
}

#[async_trait::async_trait]
impl ObjectData for LocalDir {
    async fn write(&self, id: Uuid, mut body: ByteStream, limit: u64) -> Result<Written> {
        let tmp = self.root.join("tmp").join(id.to_string());
        let mut file = tokio::fs::File::create(&tmp).await?;
        let mut md5 = Md5::new();
        let mut crc = crate::crc32c();
        let mut blocks = Blocks::default();
        let mut size = 0u64;
        let mut buf = BytesMut::with_capacity(CHUNK);
        let result: Result<()> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(Error::Body)?;
                size += chunk.len() as u64;
                if size > limit {
                    return Err(Error::TooLarge(limit));
                }
                md5.update(&chunk);
                crc.update(&chunk);
                blocks.update(&chunk);
                buf.extend_from_slice(&chunk);
                if buf.len() >= CHUNK {
                    file.write_all(&buf).await?;
                    buf.clear();
                }
            }
            file.write_all(&buf).await?;
            file.sync_all().await?;
            Ok(())
        }
        .await;
        drop(file);
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        let dir = self.dir_of(id);
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::rename(&tmp, self.path_of(id)).await?;
        fsync_dir(&dir).await?;
        Ok(Written { size, md5: md5.finalize().into(), crc32c: crc.finalize() as u32, blocks: blocks.finish() })
    }

    async fn read(&self, id: Uuid, range: Range<u64>, check: Check) -> Result<ByteStream> {
        let mut file = match tokio::fs::File::open(self.path_of(id)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(Error::NotFound(id)),
            Err(e) => return Err(e.into()),
        };
        let len = file.metadata().await?.len();
        let end = range.end.min(len);
        let start = range.start.min(end);
        if let Some(blocks) = check.blocks {
            if blocks.len() as u64 != len.div_ceil(BLOCK) {
                tracing::error!(blob = %id, "object data: the file's size does not match its blocks");
                return Err(Error::Corrupt(id));
            }
            return Ok(read_blocks(file, id, start..end, len, blocks).await?);
        }
        file.seek(std::io::SeekFrom::Start(start)).await?;
        // Verify only a whole read: a range cannot be checked against the whole blob's sum.
        let verify = check.crc32c.filter(|_| start == 0 && end == len);
        struct St {
            file: tokio::fs::File,
            left: u64,
            hasher: Option<(crc_fast::Digest, u32)>,
            held: Option<Bytes>,
            id: Uuid,
        }
        let st = St { file, left: end - start, hasher: verify.map(|c| (crate::crc32c(), c)), held: None, id };
        let stream = futures::stream::unfold(Some(st), |st| async move {
            let mut st = st?;
            loop {
                if st.left == 0 {
                    // The end: hand out the chunk held back once the sum is verified.
                    let held = st.held.take();
                    if let Some((hasher, want)) = st.hasher.take() {
                        if hasher.finalize() as u32 != want {
                            tracing::error!(blob = %st.id, "object data: CRC32C mismatch on read");
                            let e = std::io::Error::new(std::io::ErrorKind::InvalidData, Error::Corrupt(st.id));
                            return Some((Err(e), None));
                        }
                    }
                    return held.map(|b| (Ok(b), None));
                }
                let n = (st.left as usize).min(CHUNK);
                let mut buf = vec![0u8; n];
                if let Err(e) = st.file.read_exact(&mut buf).await {
                    return Some((Err(e), None));
                }
                st.left -= n as u64;
                let chunk = Bytes::from(buf);
                match &mut st.hasher {
                    None => return Some((Ok(chunk), Some(st))),
                    Some((hasher, _)) => {
                        hasher.update(&chunk);
                        if let Some(prev) = st.held.replace(chunk) {
                            return Some((Ok(prev), Some(st)));
                        }
                    }
                }
            }
        });
        Ok(Box::pin(stream))
    }

    async fn remove(&self, id: Uuid) -> Result<()> {
        match tokio::fs::remove_file(self.path_of(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn list(&self, before: SystemTime) -> Result<Vec<Uuid>> {
        let root = self.root.join("blobs");
        tokio::task::spawn_blocking(move || -> Result<Vec<Uuid>> {
            let mut out = Vec::new();
            for d in std::fs::read_dir(&root)? {
                let d = d?;
                if !d.file_type()?.is_dir() {
                    continue;
                }
                for f in std::fs::read_dir(d.path())? {
                    let f = f?;
                    let Some(id) = f.file_name().to_str().and_then(|n| Uuid::parse_str(n).ok()) else { continue };
                    if f.metadata()?.modified()? < before {
                        out.push(id);
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(std::io::Error::other)?
    }

    async fn used_bytes(&self) -> Result<u64> {
        let root = self.root.join("blobs");
        tokio::task::spawn_blocking(move || -> Result<u64> {
            let mut n = 0;
            for d in std::fs::read_dir(&root)? {
                let d = d?;
                if d.file_type()?.is_dir() {
                    for f in std::fs::read_dir(d.path())? {
                        n += f?.metadata()?.len();
                    }
                }
            }
            Ok(n)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// CRC32C of each [`BLOCK`] of a stream of bytes.
#[derive(Default)]
struct Blocks {
    done: Vec<u32>,
    current: Option<(crc_fast::Digest, u64)>,
}

impl Blocks {
    fn update(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            let (digest, filled) = self.current.get_or_insert_with(|| (crate::crc32c(), 0));
            let n = ((BLOCK - *filled) as usize).min(bytes.len());
            digest.update(&bytes[..n]);
            *filled += n as u64;
            bytes = &bytes[n..];
            if *filled == BLOCK {
                let (digest, _) = self.current.take().expect("a block in progress");
                self.done.push(digest.finalize() as u32);
            }
        }
    }

    fn finish(mut self) -> Vec<u32> {
        if let Some((digest, _)) = self.current.take() {
            self.done.push(digest.finalize() as u32);
        }
        self.done
    }
}

/// Reads `range` of a blob of `len` bytes block by block: each block the range touches is read
/// whole and checked against its sum before any of its bytes is given.
async fn read_blocks(
    mut file: tokio::fs::File,
    id: Uuid,
    range: Range<u64>,
    len: u64,
    blocks: std::sync::Arc<[u32]>,
) -> std::io::Result<ByteStream> {
    let first = range.start / BLOCK;
    file.seek(std::io::SeekFrom::Start(first * BLOCK)).await?;
    let st = (file, first, range);
    let stream = futures::stream::unfold(Some(st), move |st| {
        let blocks = blocks.clone();
        async move {
            let (mut file, index, range) = st?;
            let at = index * BLOCK;
            if at >= range.end {
                return None;
            }
            let mut buf = vec![0u8; (len - at).min(BLOCK) as usize];
            if let Err(e) = file.read_exact(&mut buf).await {
                return Some((Err(e), None));
            }
            if crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, &buf) as u32 != blocks[index as usize] {
                tracing::error!(blob = %id, block = index, "object data: CRC32C mismatch on read");
                return Some((Err(std::io::Error::new(std::io::ErrorKind::InvalidData, Error::Corrupt(id))), None));
            }
            let from = (range.start.max(at) - at) as usize;
            let to = (range.end.min(at + buf.len() as u64) - at) as usize;
            let chunk = Bytes::from(buf).slice(from..to);
            Some((Ok(chunk), Some((file, index + 1, range))))
        }
    });
    Ok(Box::pin(stream))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[&'static [u8]]) -> ByteStream {
        let v: Vec<std::io::Result<Bytes>> = parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
        Box::pin(futures::stream::iter(v))
    }

    async fn collect(s: ByteStream) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c?);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn write_read_range_verify_and_damage() {
        let dir = tempfile::tempdir().unwrap();
        let d = LocalDir::open(dir.path()).unwrap();
        let id = Uuid::new_v4();
        let w = d.write(id, body(&[b"hello ", b"world"]), 100).await.unwrap();
        assert_eq!(w.size, 11);
        assert_eq!(w.md5, <[u8; 16]>::from(Md5::digest(b"hello world")));
        assert_eq!(w.crc32c, crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, b"hello world") as u32);
        let whole = Check { crc32c: Some(w.crc32c), blocks: None };
        assert_eq!(collect(d.read(id, 0..u64::MAX, whole.clone()).await.unwrap()).await.unwrap(), b"hello world");
        assert_eq!(collect(d.read(id, 6..11, whole.clone()).await.unwrap()).await.unwrap(), b"world");
        assert_eq!(d.used_bytes().await.unwrap(), 11);
        // A flipped byte: the whole read fails instead of giving wrong data.
        let path = d.path_of(id);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[3] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        let err = collect(d.read(id, 0..u64::MAX, whole).await.unwrap()).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        d.remove(id).await.unwrap();
        d.remove(id).await.unwrap();
        assert!(matches!(d.read(id, 0..1, Check::default()).await, Err(Error::NotFound(_))));
    }

    #[tokio::test]
    async fn ranged_reads_verify_the_blocks_they_touch() {
        let dir = tempfile::tempdir().unwrap();
        let d = LocalDir::open(dir.path()).unwrap();
        let id = Uuid::new_v4();
        // 2.5 blocks, written in pieces that do not fall on block boundaries.
        let data: Vec<u8> = (0..(BLOCK * 5 / 2)).map(|i| (i % 251) as u8).collect();
        let pieces: Vec<std::io::Result<Bytes>> = data.chunks(300_001).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        let w = d.write(id, Box::pin(futures::stream::iter(pieces)), u64::MAX).await.unwrap();
        let sum = |b: &[u8]| crc_fast::checksum(crc_fast::CrcAlgorithm::Crc32Iscsi, b) as u32;
        let want: Vec<u32> = data.chunks(BLOCK as usize).map(sum).collect();
        assert_eq!(w.blocks, want);
        let check = Check { crc32c: Some(w.crc32c), blocks: Some(w.blocks.clone().into()) };
        for r in [0..data.len() as u64, 5..10, BLOCK - 3..BLOCK + 3, 2 * BLOCK + 7..data.len() as u64, 0..0] {
            let got = collect(d.read(id, r.clone(), check.clone()).await.unwrap()).await.unwrap();
            assert_eq!(got, &data[r.start as usize..r.end as usize], "{r:?}");
        }
        // A flipped byte in the second block: any range touching it fails, the others still read.
        let path = d.path_of(id);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[(BLOCK + 10) as usize] ^= 1;
        std::fs::write(&path, bytes).unwrap();
        for r in [BLOCK + 100..BLOCK + 200, BLOCK - 3..BLOCK + 3, 0..data.len() as u64] {
            let err = collect(d.read(id, r.clone(), check.clone()).await.unwrap()).await.unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::InvalidData, "{r:?}");
        }
        for r in [5..10, 2 * BLOCK..2 * BLOCK + 9] {
            let got = collect(d.read(id, r.clone(), check.clone()).await.unwrap()).await.unwrap();
            assert_eq!(got, &data[r.start as usize..r.end as usize], "{r:?}");
        }
        // A file whose size no longer matches its blocks (truncated) is refused at once.
        std::fs::write(&path, &data[..10]).unwrap();
        assert!(matches!(d.read(id, 0..5, check).await, Err(Error::Corrupt(_))));
    }

    #[tokio::test]
    async fn too_large_or_failed_bodies_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let d = LocalDir::open(dir.path()).unwrap();
        let id = Uuid::new_v4();
        assert!(matches!(d.write(id, body(&[b"0123456789"]), 5).await, Err(Error::TooLarge(5))));
        let failing: ByteStream = Box::pin(futures::stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(std::io::Error::other("client went away")),
        ]));
        assert!(matches!(d.write(id, failing, 100).await, Err(Error::Body(_))));
        assert!(d.list(SystemTime::now() + std::time::Duration::from_secs(60)).await.unwrap().is_empty());
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[tokio::test]
    async fn opening_removes_interrupted_writes_and_lists_by_age() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::write(dir.path().join("tmp").join(Uuid::new_v4().to_string()), b"half").unwrap();
        let d = LocalDir::open(dir.path()).unwrap();
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
        let id = Uuid::new_v4();
        d.write(id, body(&[b"x"]), 10).await.unwrap();
        assert!(d.list(SystemTime::now() - std::time::Duration::from_secs(60)).await.unwrap().is_empty());
        assert_eq!(d.list(SystemTime::now() + std::time::Duration::from_secs(60)).await.unwrap(), vec![id]);
    }
}
