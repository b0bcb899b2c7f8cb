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
//! **One chunk store per project.** Deduplication never crosses projects: a shared store would let
//! a tenant learn, from a backup's `bytes_stored`, whether anyone else holds a given chunk.
//!
//! **Collection never races a backup.** A backup finds a chunk already stored and skips it long
//! before its manifest names that chunk; collecting "chunks no manifest names" in between would
//! break the backup. So each chunk store has a lock: backups and restores hold it shared for their
//! whole run ([`BackupTarget::hold`]); collection takes it exclusive, and only if it is free — a
//! deletion that finds the store busy leaves its chunks to the next [`BackupTarget::sweep`]. The
//! lock is an `flock(2)`, so a killed kumod releases it.
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
use std::sync::Mutex;
use std::time::{Duration, SystemTime};
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

pub use kumo_host_api::{BackupStats, SweepStats};

/// Proof that a project's chunk store is held (shared) by a backup or restore: while any exists,
/// no chunk of that store is collected. Released on drop.
pub type Hold = Box<dyn std::any::Any + Send + Sync>;

/// Where backups are kept. Every call names the project: each project has its own chunk store.
#[async_trait]
pub trait BackupTarget: Send + Sync + 'static {
    /// Holds the project's chunk store for a backup or restore (waits while a collection runs).
    async fn hold(&self, project: Uuid) -> Result<Hold>;
    /// Stores a chunk under its hash; returns false if the project's store had it already.
    /// Call it while holding the store ([`BackupTarget::hold`]).
    async fn put_chunk(&self, project: Uuid, sha: &str, data: &[u8]) -> Result<bool>;
    async fn get_chunk(&self, project: Uuid, sha: &str) -> Result<Vec<u8>>;
    async fn put_manifest(&self, project: Uuid, id: Uuid, m: &Manifest) -> Result<()>;
    async fn get_manifest(&self, project: Uuid, id: Uuid) -> Result<Manifest>;
    /// Removes a backup, then every chunk no remaining manifest uses — unless a backup or restore
    /// holds the store: then the chunks stay for the next sweep. Returns whether it collected.
    async fn delete(&self, project: Uuid, id: Uuid) -> Result<bool>;
    /// Collects what a crash or a busy deletion left: unused chunks of every store that is not
    /// held, and temporary files older than `grace` that no backup or restore in flight owns.
    async fn sweep(&self, grace: Duration) -> Result<SweepStats>;
}

/// A directory target:
///
/// - `projects/<project>/chunks/<ab>/<sha256>`, `projects/<project>/manifests/<id>.json` and
///   `projects/<project>/lock`: one store per project;
/// - `chunks/`, `manifests/`, `lock` at the top: the shared store of kumod before per-project
///   stores. Its backups stay readable and deletable (the project's store is looked in first);
///   nothing new is written there, and it empties as its backups are deleted;
/// - `export-<id>.raw`, `restore-<id>.raw`: raw scratch files of backups and restores in flight
///   ([`Scratch`]).
pub struct DirTarget {
    root: PathBuf,
}

/// One chunk store: `chunks/`, `manifests/` and `lock` under `dir`.
struct Store {
    dir: PathBuf,
}

impl Store {
    fn chunk_path(&self, sha: &str) -> Result<PathBuf> {
        // The name becomes a path: only a hash may.
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(AgentError::Hypervisor(format!("'{sha}' is not a chunk hash")));
        }
        Ok(self.dir.join("chunks").join(&sha[..2]).join(sha))
    }
    fn manifest_path(&self, id: Uuid) -> PathBuf {
        self.dir.join("manifests").join(format!("{id}.json"))
    }
    fn read_manifest(&self, id: Uuid) -> std::io::Result<Vec<u8>> {
        std::fs::read(self.manifest_path(id))
    }

    /// Takes the store's lock: shared (waits for a collection), or exclusive if free right now.
    fn lock(&self, exclusive: bool) -> Result<Option<std::fs::File>> {
        std::fs::create_dir_all(&self.dir).map_err(io("create backup store"))?;
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("lock"))
            .map_err(io("open backup store lock"))?;
        let op = if exclusive { libc::LOCK_EX | libc::LOCK_NB } else { libc::LOCK_SH };
        loop {
            // SAFETY: flock on an open descriptor has no memory-safety preconditions.
            if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
                return Ok(Some(f));
            }
            let e = std::io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if exclusive => return Ok(None),
                _ => return Err(AgentError::io("lock backup store", e)),
            }
        }
    }

    /// Removes the chunks no manifest of this store names, and half-written files, if no backup
    /// or restore holds the store. None when it is held.
    fn collect(&self) -> Result<Option<SweepStats>> {
        let Some(_lock) = self.lock(true)? else { return Ok(None) };
        let mut stats = SweepStats::default();
        // Under the exclusive lock no backup writes: every temporary file is a dead one's.
        let mut used = HashSet::new();
        for e in read_dir_or_empty(&self.dir.join("manifests"), "list backup manifests")? {
            let path = e.path();
            if is_temp(&path) {
                remove(&path, &mut stats.temp_files)?;
                continue;
            }
            let bytes = std::fs::read(&path).map_err(io("read backup manifest"))?;
            // A manifest that does not parse stops the collection: never delete on a guess.
            let m: Manifest = serde_json::from_slice(&bytes)
                .map_err(|e| AgentError::Hypervisor(format!("backup manifest {}: {e}", path.display())))?;
            used.extend(m.chunks.into_iter().flatten());
        }
        for p in read_dir_or_empty(&self.dir.join("chunks"), "list backup chunks")? {
            for c in read_dir_or_empty(&p.path(), "list backup chunks")? {
                let path = c.path();
                if is_temp(&path) {
                    remove(&path, &mut stats.temp_files)?;
                } else if !used.contains(c.file_name().to_string_lossy().as_ref()) {
                    stats.chunk_bytes += c.metadata().map(|m| m.len()).unwrap_or(0);
                    remove(&path, &mut stats.chunks)?;
                }
            }
        }
        Ok(Some(stats))
    }
}

fn read_dir_or_empty(dir: &Path, what: &str) -> Result<Vec<std::fs::DirEntry>> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.collect::<std::io::Result<Vec<_>>>().map_err(io(what)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(AgentError::io(what, e)),
    }
}

/// Whether `path` is a temporary file of [`write_atomic`].
fn is_temp(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n.to_string_lossy().contains(".tmp-"))
}

fn remove(path: &Path, count: &mut u64) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => {
            *count += 1;
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(AgentError::io(format!("remove {}", path.display()), e)),
    }
}

/// The locks of a hold: the project's store and the legacy store (restores may read from it).
struct Locks(#[allow(dead_code)] Vec<std::fs::File>);

impl DirTarget {
    pub fn new(root: PathBuf) -> DirTarget {
        DirTarget { root }
    }
    fn store(&self, project: Uuid) -> Store {
        Store { dir: self.root.join("projects").join(project.to_string()) }
    }
    /// The shared store of kumod before per-project stores (read and deleted from, never written).
    fn legacy(&self) -> Store {
        Store { dir: self.root.clone() }
    }
    /// The legacy store, if this directory was used by such a kumod (not yet emptied).
    fn legacy_in_use(&self) -> Option<Store> {
        let s = self.legacy();
        (s.dir.join("chunks").exists() || s.dir.join("manifests").exists()).then_some(s)
    }
}

fn io(what: &str) -> impl FnOnce(std::io::Error) -> AgentError + '_ {
    move |e| AgentError::io(what, e)
}

/// Syncs a directory, so that the names created or renamed in it survive a crash.
fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io("sync backup dir"))
}

/// Writes a file atomically (temporary name, rename); with `sync`, durably (the file, then its
/// directory's entry).
fn write_atomic(path: &Path, data: &[u8], sync: bool) -> Result<()> {
    let Some(dir) = path.parent() else {
        return Err(AgentError::Hypervisor(format!("{} has no directory", path.display())));
    };
    std::fs::create_dir_all(dir).map_err(io("create backup dir"))?;
    let tmp = path.with_extension(format!("tmp-{}", Uuid::new_v4().simple()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp).map_err(io("write backup file"))?;
        f.write_all(data).map_err(io("write backup file"))?;
        if sync {
            f.sync_all().map_err(io("sync backup file"))?;
        }
        std::fs::rename(&tmp, path).map_err(io("rename backup file"))
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written?;
    if sync {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Raw files of backups and restores in flight in this process (see [`Scratch`]).
static IN_FLIGHT: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// A raw scratch file of a backup (`export-<id>.raw`) or restore (`restore-<id>.raw`) in the
/// target's directory: removed on drop, and left alone by [`BackupTarget::sweep`] while it lives.
/// After a kill -9 nothing owns it any more, and a sweep removes it once older than the grace.
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// `kind` is `export` or `restore`.
    pub fn new(dir: &Path, kind: &str, id: Uuid) -> Scratch {
        let path = dir.join(format!("{kind}-{id}.raw"));
        IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).push(path.clone());
        Scratch { path }
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let mut in_flight = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = in_flight.iter().position(|p| *p == self.path) {
            in_flight.swap_remove(i);
        }
    }
}

fn is_scratch(name: &str) -> bool {
    (name.starts_with("export-") || name.starts_with("restore-")) && name.ends_with(".raw")
}

#[async_trait]
impl BackupTarget for DirTarget {
    async fn hold(&self, project: Uuid) -> Result<Hold> {
        let stores: Vec<Store> = [Some(self.store(project)), self.legacy_in_use()].into_iter().flatten().collect();
        // flock may wait for a collection: off the async workers.
        let locks = tokio::task::spawn_blocking(move || -> Result<Locks> {
            let mut locks = Vec::new();
            for s in stores {
                locks.extend(s.lock(false)?);
            }
            Ok(Locks(locks))
        })
        .await
        .map_err(|e| AgentError::Hypervisor(format!("backup store lock: {e}")))??;
        Ok(Box::new(locks))
    }

    async fn put_chunk(&self, project: Uuid, sha: &str, data: &[u8]) -> Result<bool> {
        let path = self.store(project).chunk_path(sha)?;
        // A chunk renamed into place but lost its data in a crash (before the syncfs of its
        // manifest) would otherwise be trusted forever: a size mismatch rewrites it.
        if std::fs::metadata(&path).is_ok_and(|m| m.len() == data.len() as u64) {
            return Ok(false);
        }
        // Not synced one by one: `put_manifest` makes every chunk durable (syncfs) before the
        // manifest that names them exists.
        write_atomic(&path, data, false)?;
        Ok(true)
    }

    async fn get_chunk(&self, project: Uuid, sha: &str) -> Result<Vec<u8>> {
        match std::fs::read(self.store(project).chunk_path(sha)?) {
            Ok(data) => Ok(data),
            // A backup taken before per-project stores has its chunks in the shared one.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::read(self.legacy().chunk_path(sha)?).map_err(io("read backup chunk"))
            }
            Err(e) => Err(AgentError::io("read backup chunk", e)),
        }
    }

    async fn put_manifest(&self, project: Uuid, id: Uuid, m: &Manifest) -> Result<()> {
        let bytes = serde_json::to_vec(m).map_err(|e| AgentError::Hypervisor(e.to_string()))?;
        let store = self.store(project);
        std::fs::create_dir_all(&store.dir).map_err(io("create backup dir"))?;
        let dir = std::fs::File::open(&store.dir).map_err(io("open backup dir"))?;
        // SAFETY: syncfs on an open descriptor has no memory-safety preconditions.
        if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
            return Err(AgentError::io("sync backup chunks", std::io::Error::last_os_error()));
        }
        write_atomic(&store.manifest_path(id), &bytes, true)
    }

    async fn get_manifest(&self, project: Uuid, id: Uuid) -> Result<Manifest> {
        let bytes = match self.store(project).read_manifest(id) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.legacy().read_manifest(id),
            r => r,
        }
        .map_err(io("read backup manifest"))?;
        serde_json::from_slice(&bytes).map_err(|e| AgentError::Hypervisor(format!("backup manifest {id}: {e}")))
    }

    async fn delete(&self, project: Uuid, id: Uuid) -> Result<bool> {
        let mut collected = true;
        for store in [self.store(project), self.legacy()] {
            let path = store.manifest_path(id);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(AgentError::io("remove backup manifest", e)),
            }
            if let Some(dir) = path.parent() {
                sync_dir(dir)?;
            }
            let collect = tokio::task::spawn_blocking(move || store.collect())
                .await
                .map_err(|e| AgentError::Hypervisor(format!("backup collection: {e}")))??;
            collected &= collect.is_some();
        }
        Ok(collected)
    }

    async fn sweep(&self, grace: Duration) -> Result<SweepStats> {
        let root = self.root.clone();
        let mut stores: Vec<Store> = self.legacy_in_use().into_iter().collect();
        for e in read_dir_or_empty(&root.join("projects"), "list backup stores")? {
            stores.push(Store { dir: e.path() });
        }
        tokio::task::spawn_blocking(move || {
            let mut total = SweepStats::default();
            for s in stores {
                match s.collect()? {
                    None => total.busy += 1,
                    Some(st) => {
                        total.chunks += st.chunks;
                        total.chunk_bytes += st.chunk_bytes;
                        total.temp_files += st.temp_files;
                    }
                }
            }
            // Raw scratch files: no lock covers them; this process's own in-flight ones are
            // known, and the grace keeps anything recently written (another process's).
            let in_flight = IN_FLIGHT.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let now = SystemTime::now();
            for e in read_dir_or_empty(&root, "list backup dir")? {
                let path = e.path();
                if !is_scratch(&e.file_name().to_string_lossy()) || in_flight.contains(&path) {
                    continue;
                }
                let age = e.metadata().and_then(|m| m.modified()).map(|t| now.duration_since(t).unwrap_or_default());
                if age.is_ok_and(|a| a >= grace) {
                    remove(&path, &mut total.temp_files)?;
                }
            }
            Ok(total)
        })
        .await
        .map_err(|e| AgentError::Hypervisor(format!("backup sweep: {e}")))?
    }
}

/// Whether `[offset, offset+len)` of a (sparse) file is a hole: no data to read.
fn is_hole(f: &std::fs::File, offset: u64, len: u64) -> bool {
    // SAFETY: lseek on an open descriptor has no memory-safety preconditions.
    let next = unsafe { libc::lseek(f.as_raw_fd(), offset as libc::off_t, libc::SEEK_DATA) };
    // -1 with ENXIO: no data after offset at all.
    next < 0 || next as u64 >= offset + len
}

/// Backs up the raw image at `raw` as backup `id` of `project`, holding the project's store
/// from the first chunk to the manifest.
pub async fn backup_raw(target: &dyn BackupTarget, project: Uuid, raw: &Path, id: Uuid) -> Result<BackupStats> {
    let _hold = target.hold(project).await?;
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
            if target.put_chunk(project, &sha, data).await? {
                stats.new_chunks += 1;
                stats.bytes_stored += len as u64;
            }
            chunks.push(Some(sha));
        }
        offset += len as u64;
    }
    crate::system::fault::point("backup.before-manifest");
    target.put_manifest(project, id, &Manifest { size_bytes: size, chunk_size: CHUNK, chunks }).await?;
    Ok(stats)
}

/// Writes backup `id` of `project` to a new sparse raw file at `raw`, verifying every chunk's
/// hash (holding the project's store, so that a deletion meanwhile cannot collect its chunks).
pub async fn restore_raw(target: &dyn BackupTarget, project: Uuid, id: Uuid, raw: &Path) -> Result<u64> {
    let _hold = target.hold(project).await?;
    let m = target.get_manifest(project, id).await?;
    let mut f = std::fs::File::create(raw).map_err(io("create raw restore"))?;
    f.set_len(m.size_bytes).map_err(io("size raw restore"))?;
    for (i, sha) in m.chunks.iter().enumerate() {
        let Some(sha) = sha else { continue };
        let data = target.get_chunk(project, sha).await?;
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
    use std::sync::Arc;
    use tokio::sync::oneshot;

    /// A sparse raw file of `chunks` chunks, chunk i filled with `fill[i]` (0: a hole).
    fn raw_file(path: &Path, fill: &[u8]) {
        let mut f = std::fs::File::create(path).unwrap();
        f.set_len((fill.len() * CHUNK) as u64).unwrap();
        for (i, b) in fill.iter().enumerate().filter(|(_, b)| **b != 0) {
            f.seek(SeekFrom::Start((i * CHUNK) as u64)).unwrap();
            f.write_all(&vec![*b; CHUNK]).unwrap();
        }
    }

    /// Every chunk file of a store directory.
    fn chunk_files(store: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for p in read_dir_or_empty(&store.join("chunks"), "").unwrap() {
            out.extend(read_dir_or_empty(&p.path(), "").unwrap().into_iter().map(|e| e.path()));
        }
        out.sort();
        out
    }

    #[tokio::test]
    async fn incremental_stores_only_changes_and_restore_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let target = DirTarget::new(dir.path().join("t"));
        let p = Uuid::now_v7();
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
        let full = backup_raw(&target, p, &raw, a).await.unwrap();
        assert_eq!((full.chunks, full.new_chunks, full.bytes_stored), (3, 1, CHUNK as u64), "identical chunks dedup");
        write_at(5 * CHUNK as u64, b"changed");
        let inc = backup_raw(&target, p, &raw, b).await.unwrap();
        assert_eq!((inc.chunks, inc.new_chunks), (4, 1));
        assert!(inc.bytes_stored <= full.bytes_stored);

        let out = dir.path().join("r.raw");
        restore_raw(&target, p, b, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&raw).unwrap());
        // Deleting the full backup keeps what the incremental needs.
        assert!(target.delete(p, a).await.unwrap(), "nothing held the store: collected at once");
        restore_raw(&target, p, b, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&raw).unwrap());
        // A corrupt chunk fails the restore.
        let m = target.get_manifest(p, b).await.unwrap();
        let sha = m.chunks[5].clone().unwrap();
        std::fs::write(target.store(p).chunk_path(&sha).unwrap(), b"tampered").unwrap();
        let err = restore_raw(&target, p, b, &out).await.unwrap_err().to_string();
        assert!(err.contains("chunk 5"), "{err}");
        // Another project cannot name this project's backup.
        assert!(target.get_manifest(Uuid::now_v7(), b).await.is_err());
    }

    /// A target that stops a backup right after its first chunk was found already stored (the
    /// moment the old code was exposed), until the test lets it go on.
    struct PauseAfterFirstChunk {
        inner: DirTarget,
        gate: Mutex<Option<(oneshot::Sender<bool>, oneshot::Receiver<()>)>>,
    }

    #[async_trait]
    impl BackupTarget for PauseAfterFirstChunk {
        async fn hold(&self, project: Uuid) -> Result<Hold> {
            self.inner.hold(project).await
        }
        async fn put_chunk(&self, project: Uuid, sha: &str, data: &[u8]) -> Result<bool> {
            let stored = self.inner.put_chunk(project, sha, data).await?;
            let gate = self.gate.lock().unwrap().take();
            if let Some((paused, go)) = gate {
                paused.send(stored).unwrap();
                go.await.unwrap();
            }
            Ok(stored)
        }
        async fn get_chunk(&self, project: Uuid, sha: &str) -> Result<Vec<u8>> {
            self.inner.get_chunk(project, sha).await
        }
        async fn put_manifest(&self, project: Uuid, id: Uuid, m: &Manifest) -> Result<()> {
            self.inner.put_manifest(project, id, m).await
        }
        async fn get_manifest(&self, project: Uuid, id: Uuid) -> Result<Manifest> {
            self.inner.get_manifest(project, id).await
        }
        async fn delete(&self, project: Uuid, id: Uuid) -> Result<bool> {
            self.inner.delete(project, id).await
        }
        async fn sweep(&self, grace: Duration) -> Result<SweepStats> {
            self.inner.sweep(grace).await
        }
    }

    /// Item 3 of issue 10: a backup running while another backup of the same data is deleted.
    /// The running one has found its chunks stored (and skipped them) but not yet written its
    /// manifest; the deletion must not collect those chunks, and the backup must restore.
    #[tokio::test]
    async fn delete_during_a_backup_keeps_its_chunks_and_it_restores() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        let p = Uuid::now_v7();
        let raw = dir.path().join("v.raw");
        raw_file(&raw, &[1, 2, 0, 3]);
        let (first, second) = (Uuid::now_v7(), Uuid::now_v7());
        let (paused_tx, paused_rx) = oneshot::channel();
        let (go_tx, go_rx) = oneshot::channel();
        let target = Arc::new(PauseAfterFirstChunk { inner: DirTarget::new(root.clone()), gate: Mutex::new(None) });
        backup_raw(target.as_ref(), p, &raw, first).await.unwrap();
        *target.gate.lock().unwrap() = Some((paused_tx, go_rx));

        let running = {
            let (target, raw) = (target.clone(), raw.clone());
            tokio::spawn(async move { backup_raw(target.as_ref(), p, &raw, second).await })
        };
        let stored = paused_rx.await.unwrap();
        assert!(!stored, "the second backup found its first chunk in the store already");
        // Now the first backup goes: its manifest is the only one naming the chunks.
        let collected = target.delete(p, first).await.unwrap();
        assert!(!collected, "the store is held by the running backup: collection is left to the sweep");
        assert_eq!(chunk_files(&root.join("projects").join(p.to_string())).len(), 3);
        let sweep = target.sweep(Duration::ZERO).await.unwrap();
        assert_eq!((sweep.chunks, sweep.busy), (0, 1), "a sweep skips a held store too: {sweep:?}");

        go_tx.send(()).unwrap();
        let stats = running.await.unwrap().unwrap();
        assert_eq!((stats.chunks, stats.new_chunks, stats.bytes_stored), (3, 0, 0));
        let out = dir.path().join("r.raw");
        restore_raw(target.as_ref(), p, second, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&raw).unwrap());

        // Nothing held any more: the sweep finds nothing to collect (the second backup uses all),
        // and deleting the second backup collects every chunk.
        assert_eq!(target.sweep(Duration::ZERO).await.unwrap(), SweepStats::default());
        assert!(target.delete(p, second).await.unwrap());
        assert!(chunk_files(&root.join("projects").join(p.to_string())).is_empty());
    }

    /// Item 3 of issue 10: two projects backing up the same data share no chunk, and each one's
    /// `bytes_stored` is what it would be alone (it tells nothing about the other project).
    #[tokio::test]
    async fn projects_do_not_share_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        let target = DirTarget::new(root.clone());
        let (pa, pb) = (Uuid::now_v7(), Uuid::now_v7());
        let raw = dir.path().join("v.raw");
        raw_file(&raw, &[9, 8, 0, 9]);
        let (ba, bb) = (Uuid::now_v7(), Uuid::now_v7());
        let a = backup_raw(&target, pa, &raw, ba).await.unwrap();
        let b = backup_raw(&target, pb, &raw, bb).await.unwrap();
        assert_eq!(a, b, "the second project's backup stored as much as the first's");
        assert_eq!(b.bytes_stored, 2 * CHUNK as u64);
        let (ca, cb) = (
            chunk_files(&root.join("projects").join(pa.to_string())),
            chunk_files(&root.join("projects").join(pb.to_string())),
        );
        assert_eq!((ca.len(), cb.len()), (2, 2));
        assert!(ca.iter().all(|c| !cb.contains(c)));
        // Deleting one project's backup leaves the other's whole.
        assert!(target.delete(pa, ba).await.unwrap());
        assert!(chunk_files(&root.join("projects").join(pa.to_string())).is_empty());
        let out = dir.path().join("r.raw");
        restore_raw(&target, pb, bb, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&raw).unwrap());
        // And a project cannot restore another's backup by its id.
        assert!(restore_raw(&target, pa, bb, &out).await.is_err());
    }

    /// Backups written by kumod before per-project stores (one shared `chunks/` and `manifests/`)
    /// stay restorable, and deleting them collects their chunks.
    #[tokio::test]
    async fn backups_of_the_shared_layout_stay_restorable() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        let target = DirTarget::new(root.clone());
        let raw = dir.path().join("v.raw");
        raw_file(&raw, &[5, 0, 6]);
        // What the old code wrote: chunks/<ab>/<sha> and manifests/<id>.json at the top.
        let data = std::fs::read(&raw).unwrap();
        let mut chunks = Vec::new();
        for c in data.chunks(CHUNK) {
            if c == &ZEROES[..c.len()] {
                chunks.push(None);
                continue;
            }
            let sha = hex::encode(Sha256::digest(c));
            write_atomic(&target.legacy().chunk_path(&sha).unwrap(), c, false).unwrap();
            chunks.push(Some(sha));
        }
        let old = Uuid::now_v7();
        let m = Manifest { size_bytes: data.len() as u64, chunk_size: CHUNK, chunks };
        write_atomic(&target.legacy().manifest_path(old), &serde_json::to_vec(&m).unwrap(), true).unwrap();

        let p = Uuid::now_v7();
        let out = dir.path().join("r.raw");
        restore_raw(&target, p, old, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), data);
        // A new backup of the same data goes to the project's store (nothing shared with the old).
        let new = backup_raw(&target, p, &raw, Uuid::now_v7()).await.unwrap();
        assert_eq!(new.new_chunks, 2);
        assert!(target.delete(p, old).await.unwrap());
        assert!(chunk_files(&root).is_empty(), "the old backup's chunks were collected");
    }

    /// Item 14 of issue 10 (backups): what a kill -9 leaves — chunks of a backup that never wrote
    /// its manifest, half-written files, raw export/restore files — is swept; what is in flight or
    /// younger than the grace is not.
    #[tokio::test]
    async fn sweep_collects_what_a_crash_left() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("t");
        let target = DirTarget::new(root.clone());
        let p = Uuid::now_v7();
        let raw = dir.path().join("v.raw");
        raw_file(&raw, &[1, 2]);
        let kept = Uuid::now_v7();
        backup_raw(&target, p, &raw, kept).await.unwrap();
        // A backup killed after storing a chunk, before its manifest; and half-written files.
        let orphan = vec![3u8; CHUNK];
        let orphan_sha = hex::encode(Sha256::digest(&orphan));
        {
            let _hold = target.hold(p).await.unwrap();
            assert!(target.put_chunk(p, &orphan_sha, &orphan).await.unwrap());
        }
        let store = target.store(p);
        let half_chunk = store.chunk_path(&orphan_sha).unwrap().with_extension("tmp-dead");
        std::fs::write(&half_chunk, b"half").unwrap();
        let half_manifest = store.manifest_path(Uuid::now_v7()).with_extension("tmp-dead");
        std::fs::write(&half_manifest, b"{").unwrap();
        // Raw files: one of a killed kumod (old), one being written by a live backup (owned, old),
        // one just written by another process (young, unowned).
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        let dead_export = root.join(format!("export-{}.raw", Uuid::now_v7()));
        let live = Scratch::new(&root, "restore", Uuid::now_v7());
        let young = root.join(format!("export-{}.raw", Uuid::now_v7()));
        for path in [&dead_export, &live.path().to_path_buf(), &young] {
            std::fs::write(path, b"raw").unwrap();
        }
        for path in [&dead_export, &live.path().to_path_buf()] {
            std::fs::File::options().write(true).open(path).unwrap().set_modified(hour_ago).unwrap();
        }

        let st = target.sweep(Duration::from_secs(600)).await.unwrap();
        assert_eq!(st, SweepStats { chunks: 1, chunk_bytes: CHUNK as u64, temp_files: 3, busy: 0 });
        assert!(!store.chunk_path(&orphan_sha).unwrap().exists());
        assert!(!half_chunk.exists() && !half_manifest.exists() && !dead_export.exists());
        assert!(live.path().exists(), "a raw file in flight stays");
        assert!(young.exists(), "a raw file younger than the grace stays");
        let out = dir.path().join("r.raw");
        restore_raw(&target, p, kept, &out).await.unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&raw).unwrap());
        let live_path = live.path().to_path_buf();
        drop(live);
        assert!(!live_path.exists(), "a scratch file goes with its owner");
    }
}
