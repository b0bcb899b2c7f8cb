//! Object storage metadata (migration 0021): buckets, objects, multipart uploads and the blobs of
//! object data they name. The data themselves are in the data backend (`kumo_objects`); a blob
//! row is written only once its bytes are durable, in the transaction that makes the object or the
//! part it belongs to visible.
//!
//! Keys sort byte-wise, as S3 lists them: SQLite compares text that way; PostgreSQL is told to
//! (`COLLATE "C"`), whatever the database's collation.

use crate::{is_postgres, map_unique, new_id, now, parse_ts, parse_uuid, ts, Conn, Result};
use chrono::{DateTime, Utc};
use kumo_types::{BlobId, BucketId, ObjectId, ProjectId, UploadId};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::HashSet;

/// A lifecycle rule of a bucket (S3's `LifecycleRule`, the parts Kumo applies): objects whose
/// keys start with `prefix` expire `expire_days` after their last change; uploads begun that many
/// `abort_upload_days` ago are aborted; versions noncurrent for `noncurrent_days` are deleted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LifecycleRule {
    pub id: String,
    pub prefix: String,
    pub enabled: bool,
    #[serde(default)]
    pub expire_days: Option<u32>,
    #[serde(default)]
    pub abort_upload_days: Option<u32>,
    /// Versions that stopped being current that many days ago are deleted for good.
    #[serde(default)]
    pub noncurrent_days: Option<u32>,
}

/// A bucket's versioning (S3's `BucketVersioningStatus`; a bucket once versioned is never
/// unversioned again, only suspended).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versioning {
    /// Never enabled: a write replaces the key's only version, `null`.
    Unversioned,
    /// A write adds a version; a delete adds a delete marker.
    Enabled,
    /// A write or a delete replaces the key's `null` version, keeping the others.
    Suspended,
}

impl Versioning {
    fn from_column(s: Option<&str>) -> Result<Versioning> {
        match s {
            None => Ok(Versioning::Unversioned),
            Some("Enabled") => Ok(Versioning::Enabled),
            Some("Suspended") => Ok(Versioning::Suspended),
            Some(other) => Err(crate::StoreError::Corrupt(format!("bucket versioning '{other}'"))),
        }
    }

    /// S3's status (None: never enabled).
    pub fn status(self) -> Option<&'static str> {
        match self {
            Versioning::Unversioned => None,
            Versioning::Enabled => Some("Enabled"),
            Versioning::Suspended => Some("Suspended"),
        }
    }
}

/// The version id of what an unversioned or suspended bucket writes.
pub const NULL_VERSION: &str = "null";

/// A live bucket.
#[derive(Debug, Clone)]
pub struct Bucket {
    pub id: BucketId,
    pub name: String,
    pub project_id: ProjectId,
    pub project_name: String,
    pub public_read: bool,
    pub versioning: Versioning,
    pub time_created: DateTime<Utc>,
}

const BUCKET_COLS: &str = "b.id, b.name, b.project_id, p.name, b.public_read, b.time_created, b.versioning";
const BUCKET_FROM: &str = "FROM buckets b JOIN projects p ON p.id = b.project_id";

fn bucket_from_row(r: &AnyRow) -> Result<Bucket> {
    Ok(Bucket {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        name: r.try_get(1)?,
        project_id: parse_uuid(&r.try_get::<String, _>(2)?)?,
        project_name: r.try_get(3)?,
        public_read: r.try_get::<i64, _>(4)? != 0,
        time_created: parse_ts(&r.try_get::<String, _>(5)?)?,
        versioning: Versioning::from_column(r.try_get::<Option<String>, _>(6)?.as_deref())?,
    })
}

/// Sets a bucket's versioning to `Enabled` or `Suspended`.
pub async fn bucket_set_versioning(conn: &mut Conn, id: BucketId, v: Versioning) -> Result<()> {
    sqlx::query("UPDATE buckets SET versioning = $1, time_modified = $2 WHERE id = $3")
        .bind(v.status())
        .bind(ts(now()))
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Creates a bucket (a live bucket of that name anywhere → `Conflict`).
pub async fn bucket_insert(conn: &mut Conn, project_id: ProjectId, name: &str, public_read: bool) -> Result<Bucket> {
    let id: BucketId = new_id();
    sqlx::query(
        "INSERT INTO buckets (id, name, project_id, public_read, time_created, time_modified) \
         VALUES ($1, $2, $3, $4, $5, $5)",
    )
    .bind(id.to_string())
    .bind(name)
    .bind(project_id.to_string())
    .bind(i64::from(public_read))
    .bind(ts(now()))
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    bucket_by_name(conn, name).await?.ok_or_else(|| crate::StoreError::Corrupt("bucket vanished".into()))
}

/// The live bucket of that name (on the whole endpoint).
pub async fn bucket_by_name(conn: &mut Conn, name: &str) -> Result<Option<Bucket>> {
    let sql = format!("SELECT {BUCKET_COLS} {BUCKET_FROM} WHERE b.name = $1 AND b.time_deleted IS NULL");
    let row = sqlx::query(&sql).bind(name).fetch_optional(&mut *conn).await?;
    row.as_ref().map(bucket_from_row).transpose()
}

/// The bucket of that id (live or deleted).
pub async fn bucket_of(conn: &mut Conn, id: BucketId) -> Result<Option<Bucket>> {
    let sql = format!("SELECT {BUCKET_COLS} {BUCKET_FROM} WHERE b.id = $1");
    let row = sqlx::query(&sql).bind(id.to_string()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(bucket_from_row).transpose()
}

/// A project's live buckets, by name.
pub async fn buckets_of_project(conn: &mut Conn, project_id: ProjectId) -> Result<Vec<Bucket>> {
    let sql = format!(
        "SELECT {BUCKET_COLS} {BUCKET_FROM} WHERE b.project_id = $1 AND b.time_deleted IS NULL ORDER BY b.name"
    );
    let rows = sqlx::query(&sql).bind(project_id.to_string()).fetch_all(&mut *conn).await?;
    rows.iter().map(bucket_from_row).collect()
}

/// Sets (Some) or removes (None) a bucket's lifecycle rules.
pub async fn bucket_set_lifecycle(conn: &mut Conn, id: BucketId, rules: Option<&[LifecycleRule]>) -> Result<()> {
    let text = rules.map(|r| serde_json::to_string(r).unwrap_or_else(|_| "[]".into()));
    sqlx::query("UPDATE buckets SET lifecycle = $1, time_modified = $2 WHERE id = $3")
        .bind(text)
        .bind(ts(now()))
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// A bucket's lifecycle rules (None: it has none).
pub async fn bucket_lifecycle(conn: &mut Conn, id: BucketId) -> Result<Option<Vec<LifecycleRule>>> {
    let text: Option<String> = sqlx::query_scalar("SELECT lifecycle FROM buckets WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .flatten();
    text.map(|t| serde_json::from_str(&t).map_err(|e| crate::StoreError::Corrupt(format!("lifecycle rules: {e}"))))
        .transpose()
}

/// Every live bucket with lifecycle rules.
pub async fn buckets_with_lifecycle(conn: &mut Conn) -> Result<Vec<(Bucket, Vec<LifecycleRule>)>> {
    let sql = format!(
        "SELECT {BUCKET_COLS}, b.lifecycle {BUCKET_FROM} WHERE b.lifecycle IS NOT NULL AND b.time_deleted IS NULL"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    let mut out = Vec::new();
    for r in &rows {
        let text: String = r.try_get(7)?;
        let rules =
            serde_json::from_str(&text).map_err(|e| crate::StoreError::Corrupt(format!("lifecycle rules: {e}")))?;
        out.push((bucket_from_row(r)?, rules));
    }
    Ok(out)
}

/// Up to `limit` current objects (not delete markers) of a bucket whose keys start with `prefix`,
/// last changed before `before`.
pub async fn objects_changed_before(
    conn: &mut Conn,
    bucket_id: BucketId,
    prefix: &str,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Object>> {
    let mut q = Objects::of(conn, bucket_id).prefix(prefix);
    let at = q.bind(ts(before));
    q.and(&format!("time_modified < ${at} AND {CURRENT}"))
        .fetch(conn, &format!("ORDER BY time_modified LIMIT {limit}"))
        .await
}

/// Up to `limit` noncurrent versions (delete markers too) of a bucket whose keys start with
/// `prefix`, noncurrent since before `before`.
pub async fn versions_noncurrent_before(
    conn: &mut Conn,
    bucket_id: BucketId,
    prefix: &str,
    before: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<Object>> {
    let mut q = Objects::of(conn, bucket_id).prefix(prefix);
    let at = q.bind(ts(before));
    q.and(&format!("is_latest = 0 AND time_noncurrent < ${at}"))
        .fetch(conn, &format!("ORDER BY time_noncurrent LIMIT {limit}"))
        .await
}

/// Adds `delta` to a bucket's stored bytes: (before, after). One statement, so concurrent writers
/// on PostgreSQL never lose each other's change.
pub async fn bucket_add_bytes(conn: &mut Conn, id: BucketId, delta: i64) -> Result<(u64, u64)> {
    let after: i64 = sqlx::query_scalar(
        "UPDATE buckets SET bytes_stored = CASE WHEN bytes_stored + $1 < 0 THEN 0 ELSE bytes_stored + $1 END \
         WHERE id = $2 RETURNING bytes_stored",
    )
    .bind(delta)
    .bind(id.to_string())
    .fetch_one(&mut *conn)
    .await?;
    Ok(((after - delta).max(0) as u64, after as u64))
}

pub async fn bucket_set_public_read(conn: &mut Conn, id: BucketId, public_read: bool) -> Result<()> {
    sqlx::query("UPDATE buckets SET public_read = $1, time_modified = $2 WHERE id = $3")
        .bind(i64::from(public_read))
        .bind(ts(now()))
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Versions (with data, current or not) and their bytes stored in a bucket (parts of uploads in
/// progress are counted by [`project_usage`]).
pub async fn bucket_usage(conn: &mut Conn, id: BucketId) -> Result<(u64, u64)> {
    let r = sqlx::query(
        "SELECT COUNT(*), CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM objects WHERE bucket_id = $1 AND delete_marker = 0",
    )
        .bind(id.to_string())
        .fetch_one(&mut *conn)
        .await?;
    Ok((r.try_get::<i64, _>(0)? as u64, r.try_get::<i64, _>(1)? as u64))
}

/// Versions with data and bytes stored by every bucket of a project (with the parts of its
/// uploads).
pub async fn project_usage(conn: &mut Conn, project_id: ProjectId) -> Result<(u64, u64)> {
    let r = sqlx::query(
        "SELECT COUNT(o.id), CAST(COALESCE(SUM(o.size), 0) AS BIGINT) FROM objects o JOIN buckets b ON b.id = o.bucket_id \
         WHERE b.project_id = $1 AND o.delete_marker = 0",
    )
    .bind(project_id.to_string())
    .fetch_one(&mut *conn)
    .await?;
    let parts: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(bl.size), 0) AS BIGINT) FROM blobs bl JOIN multipart_uploads u ON u.id = bl.upload_id \
         JOIN buckets b ON b.id = u.bucket_id WHERE b.project_id = $1",
    )
    .bind(project_id.to_string())
    .fetch_one(&mut *conn)
    .await?;
    Ok((r.try_get::<i64, _>(0)? as u64, r.try_get::<i64, _>(1)? as u64 + parts as u64))
}

/// Deletes an empty bucket (None: it holds objects, or versions, or delete markers) with its uploads in progress (their blobs
/// become orphans for the sweep). Some: the bytes of those uploads' parts (to release).
pub async fn bucket_delete(conn: &mut Conn, id: BucketId) -> Result<Option<u64>> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM objects WHERE bucket_id = $1")
        .bind(id.to_string())
        .fetch_one(&mut *conn)
        .await?;
    if n > 0 {
        return Ok(None);
    }
    let parts: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs WHERE upload_id IN (SELECT id FROM multipart_uploads WHERE bucket_id = $1)",
    )
    .bind(id.to_string())
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM blobs WHERE upload_id IN (SELECT id FROM multipart_uploads WHERE bucket_id = $1)")
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    sqlx::query("DELETE FROM multipart_uploads WHERE bucket_id = $1").bind(id.to_string()).execute(&mut *conn).await?;
    sqlx::query("UPDATE buckets SET time_deleted = $1, time_modified = $1 WHERE id = $2 AND time_deleted IS NULL")
        .bind(ts(now()))
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(Some(parts as u64))
}

const VIEW_COLS: &str = "b.id, b.name, p.name, b.public_read, \
    (SELECT COUNT(*) FROM objects o WHERE o.bucket_id = b.id AND o.is_latest = 1 AND o.delete_marker = 0), \
    (SELECT CAST(COALESCE(SUM(o.size), 0) AS BIGINT) FROM objects o WHERE o.bucket_id = b.id), \
    (SELECT COUNT(*) FROM multipart_uploads u WHERE u.bucket_id = b.id), b.time_created, b.versioning";

fn view_from_row(r: &AnyRow) -> Result<kumo_types::BucketView> {
    Ok(kumo_types::BucketView {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        name: r.try_get(1)?,
        project: r.try_get(2)?,
        public_read: r.try_get::<i64, _>(3)? != 0,
        objects: r.try_get::<i64, _>(4)? as u64,
        bytes: r.try_get::<i64, _>(5)? as u64,
        uploads: r.try_get::<i64, _>(6)? as u64,
        time_created: parse_ts(&r.try_get::<String, _>(7)?)?,
        versioning: r.try_get::<Option<String>, _>(8)?.map(|v| v.to_lowercase()),
        // The app layer prices it (app::billing::bucket_costs).
        cost_month_to_date: 0,
    })
}

/// A page of a project's live buckets with what they hold.
pub async fn bucket_views(
    conn: &mut Conn,
    project_id: ProjectId,
    req: &kumo_types::page::PageRequest,
) -> Result<kumo_types::ResultsPage<kumo_types::BucketView>> {
    let sql = format!("SELECT {VIEW_COLS} {BUCKET_FROM} WHERE b.project_id = $1 AND b.time_deleted IS NULL");
    crate::page::fetch(conn, &sql, &[project_id.to_string()], "b", req, view_from_row).await
}

/// One live bucket of a project, by name, with what it holds.
pub async fn bucket_view(conn: &mut Conn, project_id: ProjectId, name: &str) -> Result<Option<kumo_types::BucketView>> {
    let sql =
        format!("SELECT {VIEW_COLS} {BUCKET_FROM} WHERE b.project_id = $1 AND b.name = $2 AND b.time_deleted IS NULL");
    let row = sqlx::query(&sql).bind(project_id.to_string()).bind(name).fetch_optional(&mut *conn).await?;
    row.as_ref().map(view_from_row).transpose()
}

/// A blob of object data, as an object or an upload names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    pub id: BlobId,
    /// Its place in the object (0, 1, …) or its part number in the upload.
    pub seq: i64,
    pub size: u64,
    /// MD5 of its bytes, lower-case hex.
    pub md5: String,
    /// CRC32C of its bytes.
    pub crc32c: u32,
    /// CRC32C of each 1 MiB block of its bytes (empty: written before blocks were summed).
    pub blocks: Vec<u32>,
}

/// Blocks' sums as stored: 8 hex digits each.
fn blocks_text(blocks: &[u32]) -> Option<String> {
    (!blocks.is_empty()).then(|| blocks.iter().map(|b| format!("{b:08x}")).collect())
}

fn blocks_of(text: Option<String>) -> Result<Vec<u32>> {
    let Some(t) = text else { return Ok(Vec::new()) };
    let bad = || crate::StoreError::Corrupt("a blob's block sums".into());
    if t.len() % 8 != 0 || !t.is_ascii() {
        return Err(bad());
    }
    (0..t.len() / 8).map(|i| u32::from_str_radix(&t[i * 8..i * 8 + 8], 16).map_err(|_| bad())).collect()
}

fn blob_from_row(r: &AnyRow) -> Result<Blob> {
    Ok(Blob {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        seq: r.try_get(1)?,
        size: r.try_get::<i64, _>(2)? as u64,
        md5: r.try_get(3)?,
        crc32c: r.try_get::<i64, _>(4)? as u32,
        blocks: blocks_of(r.try_get(5)?)?,
    })
}

/// A version of an object (the current one unless `is_latest` is false): its metadata and, when
/// read with [`object_get`] or [`object_version`], its blobs in order. A delete marker has no data.
#[derive(Debug, Clone)]
pub struct Object {
    pub id: ObjectId,
    pub key: String,
    /// `null` ([`NULL_VERSION`]) or the version's own id.
    pub version_id: String,
    pub is_latest: bool,
    pub delete_marker: bool,
    pub size: u64,
    pub etag: String,
    /// Standard and user-metadata headers, a JSON object.
    pub headers: String,
    /// Verified checksums, a JSON object.
    pub checksums: String,
    pub time_modified: DateTime<Utc>,
    pub blobs: Vec<Blob>,
}

const OBJECT_COLS: &str =
    "id, object_key, size, etag, headers, checksums, time_modified, version_id, is_latest, delete_marker, seq";

/// The current version of a key, when it is not a delete marker.
const CURRENT: &str = "is_latest = 1 AND delete_marker = 0";

fn object_from_row(r: &AnyRow) -> Result<Object> {
    Ok(Object {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        key: r.try_get(1)?,
        size: r.try_get::<i64, _>(2)? as u64,
        etag: r.try_get(3)?,
        headers: r.try_get(4)?,
        checksums: r.try_get(5)?,
        time_modified: parse_ts(&r.try_get::<String, _>(6)?)?,
        version_id: r.try_get(7)?,
        is_latest: r.try_get::<i64, _>(8)? != 0,
        delete_marker: r.try_get::<i64, _>(9)? != 0,
        blobs: Vec::new(),
    })
}

/// Byte-wise comparison of keys on either backend.
fn collate(conn: &Conn) -> &'static str {
    if is_postgres(conn) {
        " COLLATE \"C\""
    } else {
        ""
    }
}

async fn with_blobs(conn: &mut Conn, row: Option<AnyRow>) -> Result<Option<Object>> {
    let Some(row) = row else { return Ok(None) };
    let mut o = object_from_row(&row)?;
    let rows =
        sqlx::query("SELECT id, seq, size, md5, crc32c, block_crcs FROM blobs WHERE object_id = $1 ORDER BY seq")
            .bind(o.id.to_string())
            .fetch_all(&mut *conn)
            .await?;
    o.blobs = rows.iter().map(blob_from_row).collect::<Result<_>>()?;
    Ok(Some(o))
}

/// The latest version of a key (which may be a delete marker), with its blobs.
pub async fn object_get(conn: &mut Conn, bucket_id: BucketId, key: &str) -> Result<Option<Object>> {
    let sql = format!("SELECT {OBJECT_COLS} FROM objects WHERE bucket_id = $1 AND object_key = $2 AND is_latest = 1");
    let row = sqlx::query(&sql).bind(bucket_id.to_string()).bind(key).fetch_optional(&mut *conn).await?;
    with_blobs(conn, row).await
}

/// A version of a key by its version id, with its blobs.
pub async fn object_version(conn: &mut Conn, bucket_id: BucketId, key: &str, version: &str) -> Result<Option<Object>> {
    let sql = format!("SELECT {OBJECT_COLS} FROM objects WHERE bucket_id = $1 AND object_key = $2 AND version_id = $3");
    let row = sqlx::query(&sql).bind(bucket_id.to_string()).bind(key).bind(version).fetch_optional(&mut *conn).await?;
    with_blobs(conn, row).await
}

/// A new object's metadata.
pub struct NewObject<'a> {
    pub bucket_id: BucketId,
    pub key: &'a str,
    pub size: u64,
    pub etag: &'a str,
    pub headers: &'a str,
    pub checksums: &'a str,
    /// Write only if the key has no current object (a PUT with `If-None-Match: *`): else
    /// `StoreError::Conflict`, decided under the key's lock.
    pub only_if_absent: bool,
}

/// What a write or a delete removed for good (its blobs become orphans): versions with data and
/// their bytes, to release from the quota.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Freed {
    pub objects: u64,
    pub bytes: u64,
}

impl Freed {
    fn add(&mut self, other: Freed) {
        self.objects += other.objects;
        self.bytes += other.bytes;
    }
}

/// A version written: its row id and version id, and what it replaced for good.
#[derive(Debug, Clone)]
pub struct Written {
    pub id: ObjectId,
    pub version_id: String,
    pub freed: Freed,
}

/// Serialises the writers of one key until the transaction ends, so two concurrent PUTs or
/// deletes of a key never both take it as theirs (the `is_latest` swap). SQLite has one writer at
/// a time already; PostgreSQL takes a transaction-scoped advisory lock on the key.
async fn lock_key(conn: &mut Conn, bucket_id: BucketId, key: &str) -> Result<()> {
    if is_postgres(conn) {
        sqlx::query("SELECT 1 FROM (SELECT pg_advisory_xact_lock(hashtextextended($1, 0))) AS locked")
            .bind(format!("{bucket_id}/{key}"))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// Removes the version rows of a key matching `which` (an SQL condition) with their blob rows.
async fn remove_versions(conn: &mut Conn, bucket_id: BucketId, key: &str, which: &str) -> Result<Freed> {
    let sql =
        format!("SELECT id, size, delete_marker FROM objects WHERE bucket_id = $1 AND object_key = $2 AND ({which})");
    let rows = sqlx::query(&sql).bind(bucket_id.to_string()).bind(key).fetch_all(&mut *conn).await?;
    let mut freed = Freed::default();
    for r in &rows {
        let id: String = r.try_get(0)?;
        if r.try_get::<i64, _>(2)? == 0 {
            freed.add(Freed { objects: 1, bytes: r.try_get::<i64, _>(1)? as u64 });
        }
        sqlx::query("DELETE FROM blobs WHERE object_id = $1").bind(&id).execute(&mut *conn).await?;
        sqlx::query("DELETE FROM objects WHERE id = $1").bind(&id).execute(&mut *conn).await?;
    }
    Ok(freed)
}

/// Inserts a new latest version of a key as the bucket's versioning says: unversioned, it replaces
/// the key's only version; suspended, its `null` version; enabled, it is added beside the others.
/// `marker`: a delete marker (no data).
async fn insert_version(conn: &mut Conn, o: &NewObject<'_>, v: Versioning, marker: bool) -> Result<Written> {
    lock_key(conn, o.bucket_id, o.key).await?;
    if o.only_if_absent {
        let sql = format!("SELECT id FROM objects WHERE bucket_id = $1 AND object_key = $2 AND {CURRENT}");
        let found: Option<String> =
            sqlx::query_scalar(&sql).bind(o.bucket_id.to_string()).bind(o.key).fetch_optional(&mut *conn).await?;
        if found.is_some() {
            return Err(crate::StoreError::Conflict(format!("key '{}' has an object", o.key)));
        }
    }
    let freed = match v {
        Versioning::Unversioned => remove_versions(conn, o.bucket_id, o.key, "1 = 1").await?,
        Versioning::Suspended => remove_versions(conn, o.bucket_id, o.key, "version_id = 'null'").await?,
        Versioning::Enabled => Freed::default(),
    };
    sqlx::query(
        "UPDATE objects SET is_latest = 0, time_noncurrent = $3 WHERE bucket_id = $1 AND object_key = $2 \
         AND is_latest = 1",
    )
    .bind(o.bucket_id.to_string())
    .bind(o.key)
    .bind(ts(now()))
    .execute(&mut *conn)
    .await?;
    let seq: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(MAX(seq), 0) AS BIGINT) + 1 FROM objects WHERE bucket_id = $1 AND object_key = $2",
    )
    .bind(o.bucket_id.to_string())
    .bind(o.key)
    .fetch_one(&mut *conn)
    .await?;
    let id: ObjectId = new_id();
    let version_id = match v {
        Versioning::Enabled => id.get().simple().to_string(),
        _ => NULL_VERSION.to_string(),
    };
    sqlx::query(&format!(
        "INSERT INTO objects ({OBJECT_COLS}, bucket_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 1, $9, $10, $11)"
    ))
    .bind(id.to_string())
    .bind(o.key)
    .bind(o.size as i64)
    .bind(o.etag)
    .bind(o.headers)
    .bind(o.checksums)
    .bind(ts(now()))
    .bind(&version_id)
    .bind(i64::from(marker))
    .bind(seq)
    .bind(o.bucket_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(Written { id, version_id, freed })
}

/// Makes an object of one blob the latest version of its key (see [`insert_version`]). Run in the
/// transaction that commits the write.
pub async fn object_put(conn: &mut Conn, o: &NewObject<'_>, v: Versioning, blob: &Blob) -> Result<Written> {
    let w = insert_version(conn, o, v, false).await?;
    insert_blob(conn, blob, Some(w.id), None).await?;
    Ok(w)
}

async fn insert_blob(conn: &mut Conn, b: &Blob, object: Option<ObjectId>, upload: Option<UploadId>) -> Result<()> {
    sqlx::query(
        "INSERT INTO blobs (id, object_id, upload_id, seq, size, md5, crc32c, time_created, block_crcs) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(b.id.to_string())
    .bind(object.map(|o| o.to_string()))
    .bind(upload.map(|u| u.to_string()))
    .bind(b.seq)
    .bind(b.size as i64)
    .bind(&b.md5)
    .bind(i64::from(b.crc32c))
    .bind(ts(now()))
    .bind(blocks_text(&b.blocks))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// What deleting a key did.
#[derive(Debug, Clone)]
pub enum Deleted {
    /// Unversioned: the object of the key was removed (None: there was none).
    Removed(Option<(ObjectId, Freed)>),
    /// Versioned (enabled or suspended): a delete marker became the latest version.
    Marker(Written),
}

/// Deletes a key as the bucket's versioning says: unversioned, its object goes; otherwise a delete
/// marker becomes its latest version (suspended: replacing its `null` version).
pub async fn object_delete(conn: &mut Conn, bucket_id: BucketId, key: &str, v: Versioning) -> Result<Deleted> {
    if v == Versioning::Unversioned {
        lock_key(conn, bucket_id, key).await?;
        let id: Option<String> = sqlx::query_scalar("SELECT id FROM objects WHERE bucket_id = $1 AND object_key = $2")
            .bind(bucket_id.to_string())
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
        let Some(id) = id else { return Ok(Deleted::Removed(None)) };
        let freed = remove_versions(conn, bucket_id, key, "1 = 1").await?;
        return Ok(Deleted::Removed(Some((parse_uuid(&id)?, freed))));
    }
    let marker = NewObject { bucket_id, key, size: 0, etag: "", headers: "{}", checksums: "{}", only_if_absent: false };
    Ok(Deleted::Marker(insert_version(conn, &marker, v, true).await?))
}

/// Expires the current object `id` of a key (a lifecycle rule), as a delete of the key would,
/// unless it is no longer the key's current object (overwritten or deleted meanwhile: None).
pub async fn object_expire(
    conn: &mut Conn,
    bucket_id: BucketId,
    id: ObjectId,
    key: &str,
    v: Versioning,
) -> Result<Option<Deleted>> {
    lock_key(conn, bucket_id, key).await?;
    let sql = format!("SELECT id FROM objects WHERE id = $1 AND {CURRENT}");
    let current: Option<String> = sqlx::query_scalar(&sql).bind(id.to_string()).fetch_optional(&mut *conn).await?;
    if current.is_none() {
        return Ok(None);
    }
    Ok(Some(object_delete(conn, bucket_id, key, v).await?))
}

/// Deletes one version of a key for good (None: no such version). When it was the latest, the
/// newest remaining version becomes the latest. Returns the version removed (without blobs) and
/// what it freed.
pub async fn object_delete_version(
    conn: &mut Conn,
    bucket_id: BucketId,
    key: &str,
    version: &str,
) -> Result<Option<(Object, Freed)>> {
    lock_key(conn, bucket_id, key).await?;
    let sql = format!("SELECT {OBJECT_COLS} FROM objects WHERE bucket_id = $1 AND object_key = $2 AND version_id = $3");
    let row = sqlx::query(&sql).bind(bucket_id.to_string()).bind(key).bind(version).fetch_optional(&mut *conn).await?;
    let Some(row) = row else { return Ok(None) };
    let o = object_from_row(&row)?;
    let freed = remove_versions(conn, bucket_id, key, &format!("id = '{}'", o.id)).await?;
    if o.is_latest {
        sqlx::query(
            "UPDATE objects SET is_latest = 1, time_noncurrent = NULL WHERE id = (SELECT id FROM objects \
             WHERE bucket_id = $1 AND object_key = $2 ORDER BY seq DESC LIMIT 1)",
        )
        .bind(bucket_id.to_string())
        .bind(key)
        .execute(&mut *conn)
        .await?;
    }
    Ok(Some((o, freed)))
}

/// Up to `limit` current objects (not delete markers) whose keys start with `prefix` and sort
/// after `after`, in key order (without their blobs).
pub async fn object_list(
    conn: &mut Conn,
    bucket_id: BucketId,
    prefix: &str,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<Object>> {
    let mut q = Objects::of(conn, bucket_id).and(CURRENT).prefix(prefix);
    let c = q.collate;
    if let Some(a) = after {
        let k = q.bind(a.to_string());
        q = q.and(&format!("object_key{c} > ${k}"));
    }
    q.fetch(conn, &format!("ORDER BY object_key{c} LIMIT {limit}")).await
}

/// Up to `limit` versions (delete markers too) whose keys start with `prefix`, in key order and,
/// for each key, newest first, after the version `(key, version)` (S3's key-marker and
/// version-id-marker; a key alone: after every version of it).
pub async fn version_list(
    conn: &mut Conn,
    bucket_id: BucketId,
    prefix: &str,
    after: Option<(&str, Option<&str>)>,
    limit: usize,
) -> Result<Vec<Object>> {
    let mut q = Objects::of(conn, bucket_id).prefix(prefix);
    let c = q.collate;
    if let Some((key, version)) = after {
        let seq: Option<i64> = match version {
            None => None,
            Some(v) => {
                sqlx::query_scalar(
                    "SELECT seq FROM objects WHERE bucket_id = $1 AND object_key = $2 AND version_id = $3",
                )
                .bind(bucket_id.to_string())
                .bind(key)
                .bind(v)
                .fetch_optional(&mut *conn)
                .await?
            }
        };
        let k = q.bind(key.to_string());
        q = match seq {
            Some(seq) => q.and(&format!("(object_key{c} > ${k} OR (object_key = ${k} AND seq < {seq}))")),
            None => q.and(&format!("object_key{c} > ${k}")),
        };
    }
    q.fetch(conn, &format!("ORDER BY object_key{c}, seq DESC LIMIT {limit}")).await
}

/// A query of a bucket's versions, its conditions added with their binds. Keys compare byte-wise.
struct Objects {
    sql: String,
    binds: Vec<String>,
    collate: &'static str,
}

impl Objects {
    fn of(conn: &Conn, bucket_id: BucketId) -> Objects {
        Objects {
            sql: format!("SELECT {OBJECT_COLS} FROM objects WHERE bucket_id = $1"),
            binds: vec![bucket_id.to_string()],
            collate: collate(conn),
        }
    }

    /// Adds a bind: its placeholder's number.
    fn bind(&mut self, value: String) -> usize {
        self.binds.push(value);
        self.binds.len()
    }

    fn and(mut self, condition: &str) -> Objects {
        self.sql += " AND ";
        self.sql += condition;
        self
    }

    /// Keys starting with `prefix`, by range: [prefix, prefix + U+10FFFF) holds every one.
    fn prefix(mut self, prefix: &str) -> Objects {
        if prefix.is_empty() {
            return self;
        }
        let (from, to) = (self.bind(prefix.to_string()), self.bind(format!("{prefix}\u{10FFFF}")));
        let c = self.collate;
        self.and(&format!("object_key{c} >= ${from} AND object_key{c} < ${to}"))
    }

    async fn fetch(self, conn: &mut Conn, order_and_limit: &str) -> Result<Vec<Object>> {
        let sql = format!("{} {order_and_limit}", self.sql);
        let mut q = sqlx::query(&sql);
        for b in &self.binds {
            q = q.bind(b);
        }
        let rows = q.fetch_all(&mut *conn).await?;
        rows.iter().map(object_from_row).collect()
    }
}

/// A multipart upload in progress.
#[derive(Debug, Clone)]
pub struct Upload {
    pub id: UploadId,
    pub bucket_id: BucketId,
    pub key: String,
    pub headers: String,
    pub time_created: DateTime<Utc>,
}

fn upload_from_row(r: &AnyRow) -> Result<Upload> {
    Ok(Upload {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        bucket_id: parse_uuid(&r.try_get::<String, _>(1)?)?,
        key: r.try_get(2)?,
        headers: r.try_get(3)?,
        time_created: parse_ts(&r.try_get::<String, _>(4)?)?,
    })
}

const UPLOAD_COLS: &str = "id, bucket_id, object_key, headers, time_created";

pub async fn upload_create(conn: &mut Conn, bucket_id: BucketId, key: &str, headers: &str) -> Result<UploadId> {
    let id: UploadId = new_id();
    sqlx::query(&format!("INSERT INTO multipart_uploads ({UPLOAD_COLS}) VALUES ($1, $2, $3, $4, $5)"))
        .bind(id.to_string())
        .bind(bucket_id.to_string())
        .bind(key)
        .bind(headers)
        .bind(ts(now()))
        .execute(&mut *conn)
        .await?;
    Ok(id)
}

/// The upload of that id in that bucket.
pub async fn upload_get(conn: &mut Conn, bucket_id: BucketId, id: UploadId) -> Result<Option<Upload>> {
    let sql = format!("SELECT {UPLOAD_COLS} FROM multipart_uploads WHERE id = $1 AND bucket_id = $2");
    let row = sqlx::query(&sql).bind(id.to_string()).bind(bucket_id.to_string()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(upload_from_row).transpose()
}

/// A bucket's uploads in progress whose keys start with `prefix`, by key then age.
pub async fn upload_list(conn: &mut Conn, bucket_id: BucketId, prefix: &str, limit: usize) -> Result<Vec<Upload>> {
    let c = collate(conn);
    let sql = format!(
        "SELECT {UPLOAD_COLS} FROM multipart_uploads WHERE bucket_id = $1 AND object_key{c} >= $2 \
         AND object_key{c} < $3 ORDER BY object_key{c}, id LIMIT {limit}"
    );
    let rows = sqlx::query(&sql)
        .bind(bucket_id.to_string())
        .bind(prefix)
        .bind(format!("{prefix}\u{10FFFF}"))
        .fetch_all(&mut *conn)
        .await?;
    rows.iter().map(upload_from_row).collect()
}

/// Uploads begun before `before` (abandoned: the sweep aborts them).
pub async fn uploads_begun_before(conn: &mut Conn, before: DateTime<Utc>) -> Result<Vec<Upload>> {
    let sql = format!("SELECT {UPLOAD_COLS} FROM multipart_uploads WHERE time_created < $1 ORDER BY time_created");
    let rows = sqlx::query(&sql).bind(ts(before)).fetch_all(&mut *conn).await?;
    rows.iter().map(upload_from_row).collect()
}

/// Records a part (replacing an earlier upload of the same part number, whose blob becomes an
/// orphan): Some(bytes of the part replaced, 0 if none), or None when the upload is gone
/// (completed or aborted meanwhile).
pub async fn upload_put_part(conn: &mut Conn, upload_id: UploadId, part: &Blob) -> Result<Option<u64>> {
    let live: Option<String> = sqlx::query_scalar("SELECT id FROM multipart_uploads WHERE id = $1")
        .bind(upload_id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    if live.is_none() {
        return Ok(None);
    }
    let replaced: i64 = sqlx::query_scalar(
        "SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs WHERE upload_id = $1 AND seq = $2",
    )
    .bind(upload_id.to_string())
    .bind(part.seq)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM blobs WHERE upload_id = $1 AND seq = $2")
        .bind(upload_id.to_string())
        .bind(part.seq)
        .execute(&mut *conn)
        .await?;
    insert_blob(conn, part, None, Some(upload_id)).await?;
    Ok(Some(replaced as u64))
}

/// An upload's parts, by part number.
pub async fn upload_parts(conn: &mut Conn, upload_id: UploadId) -> Result<Vec<Blob>> {
    let rows =
        sqlx::query("SELECT id, seq, size, md5, crc32c, block_crcs FROM blobs WHERE upload_id = $1 ORDER BY seq")
            .bind(upload_id.to_string())
            .fetch_all(&mut *conn)
            .await?;
    rows.iter().map(blob_from_row).collect()
}

/// Completes an upload: the latest version of its key becomes `parts` (blobs of the upload, in
/// order; see [`insert_version`]), its other parts become orphans and the upload goes. Returns the
/// version written and the bytes of the parts left out.
pub async fn upload_complete(
    conn: &mut Conn,
    upload_id: UploadId,
    o: &NewObject<'_>,
    v: Versioning,
    parts: &[BlobId],
) -> Result<(Written, u64)> {
    let w = insert_version(conn, o, v, false).await?;
    let id = w.id;
    for (i, b) in parts.iter().enumerate() {
        sqlx::query("UPDATE blobs SET object_id = $1, upload_id = NULL, seq = $2 WHERE id = $3 AND upload_id = $4")
            .bind(id.to_string())
            .bind(i as i64)
            .bind(b.to_string())
            .bind(upload_id.to_string())
            .execute(&mut *conn)
            .await?;
    }
    let left_out = upload_abort(conn, upload_id).await?.unwrap_or(0);
    Ok((w, left_out))
}

/// Removes an upload and its parts' rows (their blobs become orphans): the bytes of those parts,
/// or None when it was gone.
pub async fn upload_abort(conn: &mut Conn, upload_id: UploadId) -> Result<Option<u64>> {
    let bytes: i64 =
        sqlx::query_scalar("SELECT CAST(COALESCE(SUM(size), 0) AS BIGINT) FROM blobs WHERE upload_id = $1")
            .bind(upload_id.to_string())
            .fetch_one(&mut *conn)
            .await?;
    sqlx::query("DELETE FROM blobs WHERE upload_id = $1").bind(upload_id.to_string()).execute(&mut *conn).await?;
    let r = sqlx::query("DELETE FROM multipart_uploads WHERE id = $1")
        .bind(upload_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok((r.rows_affected() == 1).then_some(bytes as u64))
}

/// Which of `ids` a row names (the others are orphans).
pub async fn blobs_known(conn: &mut Conn, ids: &[BlobId]) -> Result<HashSet<BlobId>> {
    let mut known = HashSet::new();
    for chunk in ids.chunks(500) {
        let marks: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
        let sql = format!("SELECT id FROM blobs WHERE id IN ({})", marks.join(", "));
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for id in chunk {
            q = q.bind(id.to_string());
        }
        for s in q.fetch_all(&mut *conn).await? {
            known.insert(parse_uuid(&s)?);
        }
    }
    Ok(known)
}

/// Requests of one class to one bucket within one hour.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestCount {
    pub bucket_id: BucketId,
    pub bucket_name: String,
    /// The start of the hour.
    pub hour: DateTime<Utc>,
    /// `write` or `read`.
    pub class: String,
    pub requests: u64,
}

/// Adds `n` requests of `class` to a bucket's count for the hour starting at `hour`.
pub async fn requests_add(
    conn: &mut Conn,
    bucket_id: BucketId,
    hour: DateTime<Utc>,
    class: &str,
    n: u64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO bucket_requests (bucket_id, hour, class, requests) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (bucket_id, hour, class) DO UPDATE SET requests = bucket_requests.requests + excluded.requests",
    )
    .bind(bucket_id.to_string())
    .bind(ts(hour))
    .bind(class)
    .bind(n as i64)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The request counts of a project's buckets (deleted ones too) for the hours starting within
/// `[from, to)`, by bucket, class and hour.
pub async fn requests_of_project(
    conn: &mut Conn,
    project_id: ProjectId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<RequestCount>> {
    let rows = sqlx::query(
        "SELECT r.bucket_id, b.name, r.hour, r.class, r.requests FROM bucket_requests r \
         JOIN buckets b ON b.id = r.bucket_id WHERE b.project_id = $1 AND r.hour >= $2 AND r.hour < $3 \
         ORDER BY r.bucket_id, r.class, r.hour",
    )
    .bind(project_id.to_string())
    .bind(ts(from))
    .bind(ts(to))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(RequestCount {
                bucket_id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                bucket_name: r.try_get(1)?,
                hour: parse_ts(&r.try_get::<String, _>(2)?)?,
                class: r.try_get(3)?,
                requests: r.try_get::<i64, _>(4)? as u64,
            })
        })
        .collect()
}
