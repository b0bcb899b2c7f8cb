//! Floating IPs: addresses of the operator's public pool, held by a project, attached to at most
//! one instance. An address is taken by inserting its row (unique among live rows).

use crate::{lookup, map_unique, new_id, now, page, parse_ts, parse_uuid, ts, Conn, Result, StoreError};
use kumo_types::page::PageRequest;
use kumo_types::{FloatingIpId, FloatingIpView, InstanceId, NameOrId, ProjectId, ResultsPage};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

const COLS: &str = "f.id, f.name, f.description, f.time_created, f.time_modified, p.name, f.ip, i.name, \
    f.project_id, f.instance_id";
const FROM: &str = "FROM floating_ips f JOIN projects p ON p.id = f.project_id \
    LEFT JOIN instances i ON i.id = f.instance_id";

#[derive(Debug, Clone)]
pub struct FloatingIpRecord {
    pub view: FloatingIpView,
    pub project_id: ProjectId,
    pub instance_id: Option<InstanceId>,
}

impl page::Keyed for FloatingIpRecord {
    fn key_name(&self) -> &str {
        &self.view.name
    }
    fn key_id(&self) -> Uuid {
        self.view.id.get()
    }
}

fn from_row(r: &AnyRow) -> Result<FloatingIpRecord> {
    Ok(FloatingIpRecord {
        view: FloatingIpView {
            id: parse_uuid(&r.try_get::<String, _>(0)?)?,
            name: r.try_get(1)?,
            description: r.try_get(2)?,
            time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
            time_modified: parse_ts(&r.try_get::<String, _>(4)?)?,
            project: r.try_get(5)?,
            ip: r.try_get(6)?,
            instance: r.try_get(7)?,
        },
        project_id: parse_uuid(&r.try_get::<String, _>(8)?)?,
        instance_id: r.try_get::<Option<String>, _>(9)?.map(|s| parse_uuid(&s)).transpose()?,
    })
}

/// Addresses held by live floating IPs (to pick a free one from the pool).
pub async fn used_ips(conn: &mut Conn) -> Result<Vec<String>> {
    Ok(sqlx::query_scalar("SELECT ip FROM floating_ips WHERE time_deleted IS NULL").fetch_all(&mut *conn).await?)
}

pub async fn insert(
    conn: &mut Conn,
    project_id: ProjectId,
    name: &str,
    description: &str,
    ip: &str,
) -> Result<FloatingIpRecord> {
    let id: FloatingIpId = new_id();
    sqlx::query(
        "INSERT INTO floating_ips (id, project_id, name, description, time_created, time_modified, ip) \
         VALUES ($1, $2, $3, $4, $5, $5, $6)",
    )
    .bind(id.to_string())
    .bind(project_id.to_string())
    .bind(name)
    .bind(description)
    .bind(ts(now()))
    .bind(ip)
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    get(conn, project_id, &NameOrId::Id(id.get()))
        .await?
        .ok_or_else(|| StoreError::Corrupt("floating ip vanished".into()))
}

pub async fn get(conn: &mut Conn, project_id: ProjectId, s: &NameOrId) -> Result<Option<FloatingIpRecord>> {
    lookup::get(conn, project_id, s).await
}

lookup::impl_lookup!(FloatingIpRecord: COLS FROM "f", Parent("project_id") => ProjectId, from_row);

pub async fn list(conn: &mut Conn, project_id: ProjectId, req: &PageRequest) -> Result<ResultsPage<FloatingIpRecord>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE f.project_id = $1 AND f.time_deleted IS NULL");
    page::fetch(conn, &sql, &[project_id.to_string()], "f", req, from_row).await
}

/// Attaches (Some) or detaches (None). The unique index refuses a second IP on one instance.
pub async fn set_instance(conn: &mut Conn, id: FloatingIpId, instance_id: Option<InstanceId>) -> Result<()> {
    sqlx::query("UPDATE floating_ips SET instance_id = $1, time_modified = $2 WHERE id = $3 AND time_deleted IS NULL")
        .bind(instance_id.map(|i| i.to_string()))
        .bind(ts(now()))
        .bind(id.to_string())
        .execute(&mut *conn)
        .await
        .map_err(map_unique)?;
    Ok(())
}

/// Detaches whatever is attached to the instance (it is being destroyed).
pub async fn detach_instance(conn: &mut Conn, instance_id: InstanceId) -> Result<()> {
    sqlx::query("UPDATE floating_ips SET instance_id = NULL, time_modified = $1 WHERE instance_id = $2")
        .bind(ts(now()))
        .bind(instance_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

pub async fn soft_delete(conn: &mut Conn, id: FloatingIpId) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE floating_ips SET time_deleted = $1, time_modified = $1, instance_id = NULL \
         WHERE id = $2 AND time_deleted IS NULL",
    )
    .bind(ts(now()))
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}
