//! Moves of instances to another host (cold migration): one row per move, its phase the
//! persisted intent the reconciler drives (see migration 0017 and `kumo_control::background::migrations`).
//! Every phase change is a compare-and-set on the phase, so two controllers (or a controller and
//! its successor) never both take the same step's result.

use crate::{new_id, now, parse_ts, parse_uuid, ts, Conn, Result, StoreError};
use kumo_types::{HostId, InstanceId, MigrationId};
use sqlx::any::AnyRow;
use sqlx::Row;

/// Where a move is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The guest is being stopped and its root disk staged on the source.
    Exporting,
    /// The staged disk is being copied to the target and checked there.
    Copying,
    /// Committed (the instance is on the target); the source's disk is being removed.
    Cleaning,
    /// Finished: the instance is on the target, nothing of it is left on the source.
    Done,
    /// Given up before the commit; the target's copy is being removed.
    RollingBack,
    /// Finished: the instance stayed on its host, nothing of it is left on the target.
    RolledBack,
    /// A drain could not start the move (no host could take the instance).
    Refused,
}

impl Phase {
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Exporting => "exporting",
            Phase::Copying => "copying",
            Phase::Cleaning => "cleaning",
            Phase::Done => "done",
            Phase::RollingBack => "rolling_back",
            Phase::RolledBack => "rolled_back",
            Phase::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        [
            Phase::Exporting,
            Phase::Copying,
            Phase::Cleaning,
            Phase::Done,
            Phase::RollingBack,
            Phase::RolledBack,
            Phase::Refused,
        ]
        .into_iter()
        .find(|p| p.as_str() == s)
    }

    /// Before the commit: the instance is still on the source.
    pub fn before_commit(self) -> bool {
        matches!(self, Phase::Exporting | Phase::Copying)
    }
}

/// One move.
#[derive(Debug, Clone)]
pub struct MigrationRecord {
    pub id: MigrationId,
    pub instance_id: InstanceId,
    pub source_host_id: HostId,
    pub target_host_id: Option<HostId>,
    pub phase: Phase,
    pub was_running: bool,
    pub drain: bool,
    /// Size and SHA-256 of the staged export (set when `exporting` ends).
    pub disk: Option<(u64, String)>,
    pub reason: Option<String>,
    pub time_created: chrono::DateTime<chrono::Utc>,
    pub time_modified: chrono::DateTime<chrono::Utc>,
}

const COLS: &str = "id, instance_id, source_host_id, target_host_id, phase, was_running, drain, disk_bytes, \
    disk_sha256, reason, time_created, time_modified";

fn from_row(r: &AnyRow) -> Result<MigrationRecord> {
    let phase: String = r.try_get(4)?;
    let bytes: Option<i64> = r.try_get(7)?;
    let sha: Option<String> = r.try_get(8)?;
    Ok(MigrationRecord {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        instance_id: parse_uuid(&r.try_get::<String, _>(1)?)?,
        source_host_id: parse_uuid(&r.try_get::<String, _>(2)?)?,
        target_host_id: r.try_get::<Option<String>, _>(3)?.map(|s| parse_uuid(&s)).transpose()?,
        phase: Phase::parse(&phase).ok_or_else(|| StoreError::Corrupt(format!("migration phase '{phase}'")))?,
        was_running: r.try_get::<i64, _>(5)? != 0,
        drain: r.try_get::<i64, _>(6)? != 0,
        disk: bytes.zip(sha).map(|(b, s)| (b as u64, s)),
        reason: r.try_get(9)?,
        time_created: parse_ts(&r.try_get::<String, _>(10)?)?,
        time_modified: parse_ts(&r.try_get::<String, _>(11)?)?,
    })
}

/// A move to insert (its target's capacity reserved in the same transaction).
#[derive(Debug, Clone)]
pub struct NewMigration<'a> {
    pub instance_id: InstanceId,
    pub source_host_id: HostId,
    /// None only for a refused one.
    pub target_host_id: Option<HostId>,
    pub phase: Phase,
    pub was_running: bool,
    pub drain: bool,
    pub reason: Option<&'a str>,
}

/// Inserts a move; a refused one is finished at once. `Conflict` when the instance has an open
/// move already.
pub async fn insert(conn: &mut Conn, m: &NewMigration<'_>) -> Result<MigrationId> {
    let id: MigrationId = new_id();
    let t = ts(now());
    let finished = (m.phase == Phase::Refused).then(|| t.clone());
    sqlx::query(
        "INSERT INTO migrations (id, instance_id, source_host_id, target_host_id, phase, was_running, drain, \
         reason, time_created, time_modified, time_finished) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
    )
    .bind(id.to_string())
    .bind(m.instance_id.to_string())
    .bind(m.source_host_id.to_string())
    .bind(m.target_host_id.map(|h| h.to_string()))
    .bind(m.phase.as_str())
    .bind(i64::from(m.was_running))
    .bind(i64::from(m.drain))
    .bind(m.reason)
    .bind(&t)
    .bind(finished)
    .execute(&mut *conn)
    .await
    .map_err(crate::map_unique)?;
    Ok(id)
}

/// Every open move (not finished), oldest first.
pub async fn open(conn: &mut Conn) -> Result<Vec<MigrationRecord>> {
    let sql = format!("SELECT {COLS} FROM migrations WHERE time_finished IS NULL ORDER BY time_created, id");
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}

/// The instance's open move, if any.
pub async fn open_for_instance(conn: &mut Conn, instance: InstanceId) -> Result<Option<MigrationRecord>> {
    let sql = format!("SELECT {COLS} FROM migrations WHERE instance_id = $1 AND time_finished IS NULL");
    let row = sqlx::query(&sql).bind(instance.to_string()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(from_row).transpose()
}

/// The moves off `host` since `since` (a drain's), oldest first.
pub async fn from_host_since(
    conn: &mut Conn,
    host: HostId,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<MigrationRecord>> {
    let sql = format!(
        "SELECT {COLS} FROM migrations WHERE source_host_id = $1 AND time_created >= $2 ORDER BY time_created, id"
    );
    let rows = sqlx::query(&sql).bind(host.to_string()).bind(ts(since)).fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}

/// Compare-and-set of the phase (`from` → `to`, with `reason`); `to` finished (done, rolled
/// back) closes the move. Returns false when the move was not in `from`.
pub async fn set_phase(conn: &mut Conn, id: MigrationId, from: Phase, to: Phase, reason: Option<&str>) -> Result<bool> {
    let t = ts(now());
    let finished = matches!(to, Phase::Done | Phase::RolledBack | Phase::Refused).then(|| t.clone());
    let r = sqlx::query(
        "UPDATE migrations SET phase = $1, reason = COALESCE($2, reason), time_modified = $3, time_finished = $4 \
         WHERE id = $5 AND phase = $6 AND time_finished IS NULL",
    )
    .bind(to.as_str())
    .bind(reason)
    .bind(&t)
    .bind(finished)
    .bind(id.to_string())
    .bind(from.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Records the staged export's size and SHA-256 and moves `exporting` → `copying`.
pub async fn exported(conn: &mut Conn, id: MigrationId, bytes: u64, sha256: &str) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE migrations SET phase = $1, disk_bytes = $2, disk_sha256 = $3, time_modified = $4 \
         WHERE id = $5 AND phase = $6 AND time_finished IS NULL",
    )
    .bind(Phase::Copying.as_str())
    .bind(bytes as i64)
    .bind(sha256)
    .bind(ts(now()))
    .bind(id.to_string())
    .bind(Phase::Exporting.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}
