//! Placement groups of a project, and where their live instances are (the scheduler's input).

use crate::{lookup, map_unique, new_id, now, page, parse_ts, parse_uuid, ts, Conn, Result, StoreError};
use kumo_types::page::PageRequest;
use kumo_types::{HostId, NameOrId, PlacementGroupId, PlacementGroupView, PlacementPolicy, ProjectId, ResultsPage};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLS: &str = "g.id, g.name, g.description, g.time_created, g.time_modified, p.name, g.policy, \
    (SELECT COUNT(*) FROM instances x WHERE x.placement_group_id = g.id AND x.time_deleted IS NULL)";
const FROM: &str = "FROM placement_groups g JOIN projects p ON p.id = g.project_id";

fn from_row(r: &AnyRow) -> Result<PlacementGroupView> {
    let policy: String = r.try_get(6)?;
    Ok(PlacementGroupView {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
        time_modified: parse_ts(&r.try_get::<String, _>(4)?)?,
        project: r.try_get(5)?,
        policy: PlacementPolicy::parse(&policy)
            .ok_or_else(|| StoreError::Corrupt(format!("placement policy '{policy}'")))?,
        instances: r.try_get(7)?,
    })
}

pub async fn insert(
    conn: &mut Conn,
    project_id: ProjectId,
    name: &str,
    description: &str,
    policy: PlacementPolicy,
) -> Result<PlacementGroupView> {
    let id: PlacementGroupId = new_id();
    sqlx::query(
        "INSERT INTO placement_groups (id, project_id, name, description, policy, time_created, time_modified) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(id.to_string())
    .bind(project_id.to_string())
    .bind(name)
    .bind(description)
    .bind(policy.as_str())
    .bind(ts(now()))
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    get(conn, project_id, &NameOrId::Id(id.get()))
        .await?
        .ok_or_else(|| StoreError::Corrupt("placement group vanished".into()))
}

/// A live group of a project, by name or id.
pub async fn get(conn: &mut Conn, project_id: ProjectId, s: &NameOrId) -> Result<Option<PlacementGroupView>> {
    lookup::get(conn, project_id, s).await
}

lookup::impl_lookup!(PlacementGroupView: COLS FROM "g", Parent("project_id") => ProjectId, from_row);

pub async fn list(
    conn: &mut Conn,
    project_id: ProjectId,
    req: &PageRequest,
) -> Result<ResultsPage<PlacementGroupView>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE g.project_id = $1 AND g.time_deleted IS NULL");
    page::fetch(conn, &sql, &[project_id.to_string()], "g", req, from_row).await
}

/// How many live groups the project has.
pub async fn count(conn: &mut Conn, project_id: ProjectId) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM placement_groups WHERE project_id = $1 AND time_deleted IS NULL")
        .bind(project_id.to_string())
        .fetch_one(&mut *conn)
        .await?)
}

/// The names of the group's live instances, in name order.
pub async fn members(conn: &mut Conn, id: PlacementGroupId) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar(
        "SELECT name FROM instances WHERE placement_group_id = $1 AND time_deleted IS NULL ORDER BY name",
    )
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?)
}

/// How many live instances of the group each host runs (hosts with none are left out).
pub async fn members_per_host(conn: &mut Conn, id: PlacementGroupId) -> Result<Vec<(HostId, i64)>> {
    let rows = sqlx::query(
        "SELECT host_id, COUNT(*) FROM instances WHERE placement_group_id = $1 AND time_deleted IS NULL \
         GROUP BY host_id ORDER BY host_id",
    )
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(|r| Ok((parse_uuid(&r.try_get::<String, _>(0)?)?, r.try_get(1)?))).collect()
}

pub async fn soft_delete(conn: &mut Conn, id: PlacementGroupId) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE placement_groups SET time_deleted = $1, time_modified = $1 WHERE id = $2 AND time_deleted IS NULL",
    )
    .bind(ts(now()))
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Takes the group's row for the rest of the transaction (a no-op write), so that creates in the
/// same group (and its delete) count its members one after the other: without it two creates in
/// an anti-affinity group could both see a host free of members and both land on it. False when
/// the group is no longer live (deleted since it was read).
pub async fn lock(conn: &mut Conn, id: PlacementGroupId) -> Result<bool> {
    let r =
        sqlx::query("UPDATE placement_groups SET time_modified = time_modified WHERE id = $1 AND time_deleted IS NULL")
            .bind(id.to_string())
            .execute(&mut *conn)
            .await?;
    Ok(r.rows_affected() == 1)
}
