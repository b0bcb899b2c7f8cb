//! Events: an append-only record of every state change, with its cause.

use crate::{new_id, now, page, parse_ts, parse_uuid, ts, Conn, Result, StoreError};
use chrono::{DateTime, Utc};
use kumo_types::page::PageRequest;
use kumo_types::{EventId, EventView, InstanceState, ProjectId, ResultsPage, VolumeState};
use sqlx::any::AnyRow;
use sqlx::Row;

/// An event to record.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    pub project_id: Option<ProjectId>,
    pub resource_type: &'a str,
    pub resource_id: uuid::Uuid,
    pub resource_name: &'a str,
    pub kind: &'a str,
    pub from_state: Option<&'a str>,
    pub to_state: Option<&'a str>,
    pub cause: &'a str,
    /// Structured attributes (JSON text): for instances, the type and size at that moment, which
    /// metering bills from.
    pub detail: Option<String>,
}

/// Records an event. Returns its view (with `project` unset: the caller knows the project's name)
/// for the live event stream, which publishes it once the transaction has committed.
pub async fn record(conn: &mut Conn, e: &NewEvent<'_>) -> Result<EventView> {
    insert(conn, e, now()).await
}

/// Records an event with an explicit time (imports, and tests that need a past period). An event
/// in the past drops metering's stored carry of the months after it (`crate::metering`).
pub async fn record_at(conn: &mut Conn, e: &NewEvent<'_>, at: DateTime<Utc>) -> Result<EventView> {
    let view = insert(conn, e, at).await?;
    if let Some(project_id) = e.project_id {
        crate::metering::invalidate(conn, project_id, e.resource_type, at).await?;
    }
    Ok(view)
}

async fn insert(conn: &mut Conn, e: &NewEvent<'_>, at: DateTime<Utc>) -> Result<EventView> {
    let id: EventId = new_id();
    sqlx::query(
        "INSERT INTO events (id, time_created, project_id, resource_type, resource_id, resource_name, kind, \
         from_state, to_state, cause, detail) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id.to_string())
    .bind(ts(at))
    .bind(e.project_id.map(|p| p.to_string()))
    .bind(e.resource_type)
    .bind(e.resource_id.to_string())
    .bind(e.resource_name)
    .bind(e.kind)
    .bind(e.from_state)
    .bind(e.to_state)
    .bind(e.cause)
    .bind(e.detail.as_deref())
    .execute(&mut *conn)
    .await?;
    Ok(EventView {
        id,
        time_created: at,
        project: None,
        resource_type: e.resource_type.to_string(),
        resource_id: e.resource_id,
        resource_name: e.resource_name.to_string(),
        kind: e.kind.to_string(),
        from_state: e.from_state.map(String::from),
        to_state: e.to_state.map(String::from),
        cause: e.cause.to_string(),
        detail: e.detail.as_deref().and_then(|d| serde_json::from_str(d).ok()),
    })
}

fn from_row(r: &AnyRow) -> Result<EventView> {
    Ok(EventView {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        time_created: parse_ts(&r.try_get::<String, _>(1)?)?,
        project: r.try_get(2)?,
        resource_type: r.try_get(3)?,
        resource_id: parse_uuid(&r.try_get::<String, _>(4)?)?,
        resource_name: r.try_get(5)?,
        kind: r.try_get(6)?,
        from_state: r.try_get(7)?,
        to_state: r.try_get(8)?,
        cause: r.try_get(9)?,
        detail: r.try_get::<Option<String>, _>(10)?.and_then(|d| serde_json::from_str(&d).ok()),
    })
}

/// Events of a project (optionally of one resource), oldest first. Events are always listed in
/// id order (ids are time-ordered), whatever `sort_by` says.
pub async fn list(
    conn: &mut Conn,
    project_id: ProjectId,
    resource_id: Option<uuid::Uuid>,
    req: &PageRequest,
) -> Result<ResultsPage<EventView>> {
    let mut sql = String::from(
        "SELECT e.id, e.time_created, p.name, e.resource_type, e.resource_id, e.resource_name, e.kind, \
         e.from_state, e.to_state, e.cause, e.detail FROM events e LEFT JOIN projects p ON p.id = e.project_id \
         WHERE e.project_id = $1",
    );
    let mut binds = vec![project_id.to_string()];
    if let Some(r) = resource_id {
        binds.push(r.to_string());
        sql.push_str(&format!(" AND e.resource_id = ${}", binds.len()));
    }
    page::fetch_by_id(conn, &sql, binds, "e.id", req, from_row, |e| e.id.into()).await
}

/// One event as metering reads it.
#[derive(Debug, Clone)]
pub struct MeterRow {
    pub resource_id: uuid::Uuid,
    pub resource_name: String,
    pub time: DateTime<Utc>,
    pub kind: String,
    pub to_state: Option<EventState>,
    pub detail: Option<String>,
}

/// The state an event recorded, parsed by the kind of resource it is about. Events keep states as
/// text; a stored state the resource's state machine does not have is corrupt data, not a string
/// to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventState {
    Instance(InstanceState),
    Volume(VolumeState),
}

impl EventState {
    pub(crate) fn parse(resource_type: &str, s: &str) -> Result<EventState> {
        let state = match resource_type {
            "instance" => InstanceState::parse(s).map(EventState::Instance),
            "volume" => VolumeState::parse(s).map(EventState::Volume),
            _ => None,
        };
        state.ok_or_else(|| StoreError::Corrupt(format!("{resource_type} event with state '{s}'")))
    }

    /// The instance state, if this is one.
    pub fn instance(self) -> Option<InstanceState> {
        match self {
            EventState::Instance(s) => Some(s),
            EventState::Volume(_) => None,
        }
    }
}

/// Every event of `resource_type` in a project before `until`, by resource then time: the input
/// of metering (a resource's whole history, so its state at the start of a window is known).
pub async fn for_metering(
    conn: &mut Conn,
    project_id: ProjectId,
    resource_type: &str,
    until: DateTime<Utc>,
) -> Result<Vec<MeterRow>> {
    let rows = sqlx::query(
        "SELECT resource_id, resource_name, time_created, kind, to_state, detail FROM events \
         WHERE project_id = $1 AND resource_type = $2 AND time_created < $3 \
         ORDER BY resource_id, time_created, id",
    )
    .bind(project_id.to_string())
    .bind(resource_type)
    .bind(ts(until))
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(MeterRow {
                resource_id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                resource_name: r.try_get(1)?,
                time: parse_ts(&r.try_get::<String, _>(2)?)?,
                kind: r.try_get(3)?,
                to_state: r
                    .try_get::<Option<String>, _>(4)?
                    .map(|s| EventState::parse(resource_type, &s))
                    .transpose()?,
                detail: r.try_get(5)?,
            })
        })
        .collect()
}

pub use crate::metering::{fast_for_metering_window, for_metering_window, Carry};

/// The time of a project's first event, if any (where its billing history starts).
pub async fn earliest_time(conn: &mut Conn, project_id: ProjectId) -> Result<Option<DateTime<Utc>>> {
    let t: Option<String> = sqlx::query_scalar("SELECT MIN(time_created) FROM events WHERE project_id = $1")
        .bind(project_id.to_string())
        .fetch_one(&mut *conn)
        .await?;
    t.map(|t| parse_ts(&t)).transpose()
}
