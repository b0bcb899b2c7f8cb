//! The orphan sweep: the one place that knows every kind of file kumod makes in its data
//! directory, and what to do with the ones a crash (`kill -9`, power loss) left behind.
//!
//! It runs once at start-up, before the API serves and before any reconciler (nothing can be in
//! flight then, so every leftover is an orphan), and then every `--sweep-minutes`, when it only
//! takes what is clearly stale: not being made right now ([`InFlight`]) and untouched for
//! [`STALE`]. Orphans are **quarantined** like leaks (`DATA_DIR/quarantine/<kind>/…`, deleted after
//! the grace period, `--quarantine-days`), never deleted outright — except unwrapped secrets,
//! whose whole point is not to linger on disk.
//!
//! | file (under DATA_DIR)                      | made by                          | rule |
//! |--------------------------------------------|----------------------------------|------|
//! | `kumo.db`, `kumo.db-wal`, `kumo.db-shm`    | the store (SQLite)               | kept |
//! | `admin-token`, `host-id`, `cloud-id`       | first start                      | kept |
//! | `kumod.lock`, `kumod.addr`, `s3.addr`, `master.key` | every start / first encrypted volume | kept |
//! | `admin-token.tmp`, `master.tmp`            | writing those (crash before the rename) | **deleted** (a secret in clear) |
//! | `host-id.tmp`, `cloud-id.tmp`              | writing those                    | quarantined (`ids`) |
//! | `volumes/keys/<vol>.<rand>.secret`         | an unwrapped LUKS key handed to QEMU/qemu-img for one start | **deleted** at start; later when older than [`STALE`] |
//! | `volumes/keys/<vol>.tmp`                   | a wrapped key being written      | quarantined (`keys`) |
//! | `volumes/keys/<vol>.key`                   | the wrapped key of a volume      | kept (goes with its volume: the volume reconciler quarantines both) |
//! | `volumes/<vol>.qcow2`                      | a volume                         | the volume reconciler: quarantined when no live volume owns it |
//! | `volumes/<vol>.qcow2.tmp`                  | a volume being made              | beside its `<vol>.qcow2`: quarantined (`volumes`); alone: the volume reconciler's (retried or quarantined) |
//! | `volumes/<vol>.qcow2.new`                  | a snapshot's new top being made  | quarantined (`volumes`) |
//! | `volumes/layers/<snap>.qcow2`              | snapshot layers                  | the volume reconciler (removed when no chain uses them) |
//! | `instances/<id>/`                          | an instance's run directory      | the instance reconciler: quarantined when no live instance of this host owns it |
//! | `instances/<id>/*.tmp`                     | provisioning (disk, config drive) | quarantined (`instances`) |
//! | `images/<id>/`                             | an image (import, from a snapshot or an instance, seeded) | quarantined (`images`) when no live image names it and no instance or volume uses it: a half-finished upload, conversion or copy, or a delete interrupted after its commit |
//! | `images/<id>/upload`                       | an upload being received         | beside a live image: quarantined (`images`); else with its directory |
//! | `objects/blobs/XY/<blob>`                  | object data (kumo-objects)       | **deleted** when no object or upload part names it (overwritten, deleted, or a write whose commit a crash prevented): at start-up all of them, later those older than [`BLOB_SETTLE`] |
//! | `objects/tmp/<blob>`                       | object data being written        | deleted when the data directory is opened (kumo-objects) |
//! | `backups/…`                                | volume backups (kumo-agent backup.rs) | left alone here: the backup store collects its own |
//! | `quarantine/<kind>/<name>-<time>/`         | this module and leak collection  | deleted once older than the grace period |
//!
//! Anything else is not kumod's and is left alone.

use super::{Error, Task};
use crate::App;
use kumo_types::ImageId;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use uuid::Uuid;

/// How long a periodic pass leaves a leftover alone (it may belong to a step still running).
pub const STALE: Duration = Duration::from_secs(3600);

/// How long a periodic pass leaves an image directory nothing names alone after its last change
/// (an import commits its record right after its last file change).
pub const IMAGE_SETTLE: Duration = Duration::from_secs(600);

/// How long a periodic pass leaves a blob nothing names alone: a write's file is complete from its
/// rename on, and its metadata commit follows its fsync (which for a 5 GiB part on a slow disk can
/// take minutes).
pub const BLOB_SETTLE: Duration = Duration::from_secs(600);

/// How long a multipart upload may stay unfinished before the sweep aborts it (as an S3 lifecycle
/// rule `AbortIncompleteMultipartUpload` would).
pub const UPLOAD_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Paths being made right now; the periodic sweep leaves them alone.
#[derive(Default, Clone)]
pub struct InFlight(Arc<Mutex<HashSet<PathBuf>>>);

/// Holds a path in [`InFlight`] until dropped.
pub struct InFlightGuard(InFlight, PathBuf);

impl InFlight {
    pub fn hold(&self, path: &Path) -> InFlightGuard {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).insert(path.to_path_buf());
        InFlightGuard(self.clone(), path.to_path_buf())
    }

    fn contains(&self, path: &Path) -> bool {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).contains(path)
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        (self.0).0.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.1);
    }
}

/// Start-up (everything left over is an orphan) or periodic (only what is stale).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Startup,
    Periodic,
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub quarantined: Vec<PathBuf>,
    pub deleted: Vec<PathBuf>,
    pub purged: usize,
}

fn age(path: &Path) -> Duration {
    std::fs::symlink_metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or_default()
}

fn entries(dir: &Path) -> Vec<(String, PathBuf)> {
    match std::fs::read_dir(dir) {
        Ok(rd) => rd.flatten().filter_map(|e| Some((e.file_name().to_str()?.to_string(), e.path()))).collect(),
        Err(_) => Vec::new(),
    }
}

struct Pass<'a> {
    app: &'a App,
    mode: Mode,
    out: Outcome,
}

impl Pass<'_> {
    fn old_enough(&self, path: &Path, min: Duration) -> bool {
        self.mode == Mode::Startup || (age(path) >= min && !self.app.in_flight.contains(path))
    }

    fn quarantine(&mut self, kind: &str, name: &str, path: &Path) {
        match self.app.quarantine.put(kind, name, &[path]) {
            Ok(Some(_)) => self.out.quarantined.push(path.to_path_buf()),
            Ok(None) => {}
            Err(e) => record_error(self.app, format!("quarantine {}: {e}", path.display())),
        }
    }

    fn delete(&mut self, path: &Path) {
        match std::fs::remove_file(path) {
            Ok(()) => {
                tracing::warn!(file = %path.display(), "deleted a leftover secret");
                self.out.deleted.push(path.to_path_buf());
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => record_error(self.app, format!("delete {}: {e}", path.display())),
        }
    }
}

fn record_error(app: &App, msg: String) {
    app.sweep.record_error(&Error::Step(msg));
}

/// One pass over the data directory (see the module docs for the rules).
pub async fn pass(app: &App, mode: Mode) -> Outcome {
    let data = app.config.data_dir.clone();
    let mut p = Pass { app, mode, out: Outcome::default() };

    // Top level: temporary names of the files written once.
    for name in ["admin-token.tmp", "master.tmp"] {
        let path = data.join(name);
        if path.exists() && p.old_enough(&path, STALE) {
            p.delete(&path);
        }
    }
    for name in ["host-id.tmp", "cloud-id.tmp"] {
        let path = data.join(name);
        if path.exists() && p.old_enough(&path, STALE) {
            p.quarantine("ids", name, &path);
        }
    }

    // Volume keys: unwrapped secrets and half-written wrapped keys.
    for (name, path) in entries(&data.join("volumes/keys")) {
        if name.ends_with(".secret") && p.old_enough(&path, STALE) {
            p.delete(&path);
        } else if name.ends_with(".tmp") && p.old_enough(&path, STALE) {
            p.quarantine("keys", &name, &path);
        }
    }

    // Volumes: temporary files of a snapshot or a create that a crash interrupted.
    let volumes = data.join("volumes");
    for (name, path) in entries(&volumes) {
        let leftover = match (name.strip_suffix(".qcow2.new"), name.strip_suffix(".qcow2.tmp")) {
            (Some(id), _) => Uuid::parse_str(id).is_ok(),
            // Alone, a .tmp is a volume being made: the volume reconciler's.
            (_, Some(id)) => Uuid::parse_str(id).is_ok() && volumes.join(format!("{id}.qcow2")).exists(),
            _ => false,
        };
        if leftover && p.old_enough(&path, STALE) {
            p.quarantine("volumes", &name, &path);
        }
    }

    // Instances: temporary files of provisioning.
    for (id, dir) in entries(&data.join("instances")) {
        if Uuid::parse_str(&id).is_err() {
            continue;
        }
        for (name, path) in entries(&dir) {
            if name.ends_with(".tmp") && p.old_enough(&path, STALE) {
                p.quarantine("instances", &format!("{id}-{name}"), &path);
            }
        }
    }

    // Images: directories no live image names (listed before the store is read, so an image
    // committed in between is seen as live).
    if let Err(e) = sweep_images(&mut p, &data.join("images")).await {
        record_error(app, format!("images: {e}"));
    }

    // Object data: abandoned uploads, then blobs nothing names.
    if let Err(e) = sweep_objects(&mut p).await {
        record_error(app, format!("object data: {e}"));
    }

    p.out.purged = app.quarantine.purge(app.config.quarantine_grace);
    let n = (p.out.quarantined.len() + p.out.deleted.len()) as u64;
    app.sweep.update(|s| s.quarantined += p.out.quarantined.len() as u64);
    if n > 0 {
        tracing::warn!(
            quarantined = p.out.quarantined.len(),
            deleted = p.out.deleted.len(),
            "orphan sweep ({mode:?}): leftovers of interrupted work moved aside"
        );
    }
    p.out
}

async fn sweep_objects(p: &mut Pass<'_>) -> anyhow::Result<()> {
    let expired = chrono::Utc::now() - chrono::Duration::from_std(UPLOAD_EXPIRY)?;
    let uploads = {
        let mut conn = p.app.store.read().await?;
        kumo_store::objects::uploads_begun_before(&mut conn, expired).await?
    };
    for u in uploads {
        let mut tx = p.app.store.begin().await?;
        let Some(bucket) = kumo_store::objects::bucket_of(&mut tx, u.bucket_id).await? else { continue };
        if let Some(bytes) = kumo_store::objects::upload_abort(&mut tx, u.id).await? {
            let release = kumo_store::quotas::QuotaAmounts { object_bytes: bytes as i64, ..Default::default() };
            kumo_store::quotas::release(&mut tx, bucket.project_id, release).await?;
            let cause = "sweep: an abandoned multipart upload expired";
            crate::app::buckets::account(&mut tx, bucket.project_id, (bucket.id, &bucket.name), -(bytes as i64), cause)
                .await
                .map_err(|e| anyhow::anyhow!(e.internal.unwrap_or(e.message)))?;
        }
        tx.commit().await?;
        tracing::info!(upload = %u.id, key = %u.key, "object storage: an abandoned multipart upload expired");
    }
    apply_lifecycle(p).await?;
    // Listed before the store is read: a blob committed in between is seen as named.
    let before = match p.mode {
        Mode::Startup => SystemTime::now() + Duration::from_secs(3600),
        Mode::Periodic => SystemTime::now() - BLOB_SETTLE,
    };
    let listed: Vec<kumo_types::BlobId> =
        p.app.objects.list(before).await?.into_iter().map(kumo_types::BlobId::from).collect();
    if listed.is_empty() {
        return Ok(());
    }
    let known = {
        let mut conn = p.app.store.read().await?;
        kumo_store::objects::blobs_known(&mut conn, &listed).await?
    };
    for id in listed.into_iter().filter(|id| !known.contains(id)) {
        p.app.objects.remove(id.get()).await?;
        p.out.deleted.push(PathBuf::from(format!("objects/blobs/{id}")));
    }
    Ok(())
}

/// Buckets' lifecycle rules (set with S3's PutBucketLifecycleConfiguration), each under its key
/// prefix: objects unchanged for its days expire (deleted — in a versioned bucket, hidden behind a
/// delete marker as S3 does); versions noncurrent for its days are deleted for good; uploads begun
/// that long ago are aborted. What goes is released from the quota, with an event of the project.
async fn apply_lifecycle(p: &mut Pass<'_>) -> anyhow::Result<()> {
    let buckets = {
        let mut conn = p.app.store.read().await?;
        kumo_store::objects::buckets_with_lifecycle(&mut conn).await?
    };
    let now = chrono::Utc::now();
    let days_ago = |days: u32| now - chrono::Duration::days(i64::from(days));
    for (b, rules) in buckets {
        for r in rules.iter().filter(|r| r.enabled) {
            let cause = format!("lifecycle rule '{}' of bucket '{}'", r.id, b.name);
            if let Some(days) = r.expire_days {
                expire(p, &b, (&r.prefix, days_ago(days)), Expiry::Current, &cause).await?;
            }
            if let Some(days) = r.noncurrent_days {
                expire(p, &b, (&r.prefix, days_ago(days)), Expiry::Noncurrent, &cause).await?;
            }
            if let Some(days) = r.abort_upload_days {
                abort_uploads(p, &b, &r.prefix, days_ago(days), &cause).await?;
            }
        }
    }
    Ok(())
}

const LIFECYCLE_BATCH: usize = 500;

/// What a lifecycle rule expires.
#[derive(Clone, Copy)]
enum Expiry {
    /// Current objects unchanged since the cut-off go as a delete would: gone, or (versioned)
    /// behind a delete marker.
    Current,
    /// Versions (and delete markers) noncurrent since before the cut-off are deleted for good.
    Noncurrent,
}

async fn expire(
    p: &mut Pass<'_>,
    b: &kumo_store::objects::Bucket,
    (prefix, before): (&str, chrono::DateTime<chrono::Utc>),
    what: Expiry,
    cause: &str,
) -> anyhow::Result<()> {
    use kumo_store::objects::{self as objects, Deleted};
    loop {
        let batch = {
            let mut conn = p.app.store.read().await?;
            match what {
                Expiry::Current => {
                    objects::objects_changed_before(&mut conn, b.id, prefix, before, LIFECYCLE_BATCH).await?
                }
                Expiry::Noncurrent => {
                    objects::versions_noncurrent_before(&mut conn, b.id, prefix, before, LIFECYCLE_BATCH).await?
                }
            }
        };
        let n = batch.len();
        for o in batch {
            let mut tx = p.app.store.begin().await?;
            let freed = match what {
                Expiry::Current => match objects::object_expire(&mut tx, b.id, o.id, &o.key, b.versioning).await? {
                    None => continue,
                    Some(Deleted::Removed(r)) => r.map(|(_, f)| f).unwrap_or_default(),
                    Some(Deleted::Marker(w)) => w.freed,
                },
                Expiry::Noncurrent => match objects::object_delete_version(&mut tx, b.id, &o.key, &o.version_id).await?
                {
                    None => continue,
                    Some((_, freed)) => freed,
                },
            };
            let kind = match what {
                Expiry::Current => "expired",
                Expiry::Noncurrent => "noncurrent version expired",
            };
            released(p, tx, b, freed, (o.id, &o.key), kind, cause).await?;
        }
        if n < LIFECYCLE_BATCH {
            return Ok(());
        }
    }
}

/// Releases what a lifecycle action freed, records its event and commits.
async fn released(
    p: &mut Pass<'_>,
    mut tx: kumo_store::Tx,
    b: &kumo_store::objects::Bucket,
    freed: kumo_store::objects::Freed,
    (id, key): (kumo_types::ObjectId, &str),
    kind: &str,
    cause: &str,
) -> anyhow::Result<()> {
    let release = kumo_store::quotas::QuotaAmounts {
        objects: freed.objects as i64,
        object_bytes: freed.bytes as i64,
        ..Default::default()
    };
    kumo_store::quotas::release(&mut tx, b.project_id, release).await?;
    crate::app::buckets::account(&mut tx, b.project_id, (b.id, &b.name), -(freed.bytes as i64), cause)
        .await
        .map_err(|e| anyhow::anyhow!(e.internal.unwrap_or(e.message)))?;
    let name = format!("{}/{key}", b.name);
    let ev = crate::app::vpcs::event(b.project_id, "object", id, &name, kind, cause);
    let ev = kumo_store::events::record(&mut tx, &ev).await?;
    tx.commit().await?;
    p.app.events.publish(Some(b.project_id), Some(&b.project_name), ev);
    Ok(())
}

/// Uploads begun before `before` are aborted, their parts released.
async fn abort_uploads(
    p: &mut Pass<'_>,
    b: &kumo_store::objects::Bucket,
    prefix: &str,
    before: chrono::DateTime<chrono::Utc>,
    cause: &str,
) -> anyhow::Result<()> {
    let uploads = {
        let mut conn = p.app.store.read().await?;
        kumo_store::objects::upload_list(&mut conn, b.id, prefix, usize::MAX >> 1).await?
    };
    for u in uploads.into_iter().filter(|u| u.time_created < before) {
        let mut tx = p.app.store.begin().await?;
        if let Some(bytes) = kumo_store::objects::upload_abort(&mut tx, u.id).await? {
            let release = kumo_store::quotas::QuotaAmounts { object_bytes: bytes as i64, ..Default::default() };
            kumo_store::quotas::release(&mut tx, b.project_id, release).await?;
        }
        tx.commit().await?;
        tracing::info!(upload = %u.id, key = %u.key, "{cause}: an incomplete upload aborted");
    }
    Ok(())
}

async fn sweep_images(p: &mut Pass<'_>, images: &Path) -> anyhow::Result<()> {
    let dirs: Vec<(ImageId, PathBuf)> =
        entries(images).into_iter().filter_map(|(n, path)| Some((n.parse::<ImageId>().ok()?, path))).collect();
    if dirs.is_empty() {
        return Ok(());
    }
    let mut conn = p.app.store.read().await?;
    let live = kumo_store::images::live_files(&mut conn).await?;
    let mut keep: HashSet<PathBuf> = HashSet::new();
    let mut live_ids = HashSet::new();
    for (id, files) in live {
        live_ids.insert(id);
        keep.extend(files.iter().filter_map(|f| Path::new(f).parent().map(Path::to_path_buf)));
    }
    for (id, dir) in dirs {
        if live_ids.contains(&id) || keep.contains(&dir) {
            let upload = dir.join("upload");
            if upload.exists() && p.old_enough(&upload, STALE) {
                p.quarantine("images", &format!("{id}-upload"), &upload);
            }
            continue;
        }
        if !p.old_enough(&dir, IMAGE_SETTLE) {
            continue;
        }
        // Belt and braces: a disk still backed by it keeps it, whatever its record says.
        let users = kumo_store::images::count_users(&mut conn, id).await?;
        if users > 0 {
            tracing::warn!(image = %id, users, "image directory has no live record but disks use it; kept");
            continue;
        }
        p.quarantine("images", &id.to_string(), &dir);
    }
    Ok(())
}

impl Outcome {
    /// Files quarantined, deleted, and quarantine entries purged.
    pub fn changes(&self) -> u64 {
        (self.quarantined.len() + self.deleted.len() + self.purged) as u64
    }
}

/// The start-up pass, run by kumod before serving and before any other background task (counted
/// in the sweep's status like the periodic ones).
pub async fn startup(app: &App) -> Outcome {
    let mut out = Outcome::default();
    let _ = app
        .sweep
        .run_pass(async {
            out = pass(app, Mode::Startup).await;
            Ok(out.changes())
        })
        .await;
    out
}

/// The periodic sweep task (see [`super::spawn`]; its first pass is one period after the start).
pub struct Periodic;

impl Task for Periodic {
    async fn pass(&mut self, app: &Arc<App>) -> Result<u64, Error> {
        Ok(pass(app, Mode::Periodic).await.changes())
    }
}
