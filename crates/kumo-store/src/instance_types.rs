//! Instance types (plans) and the default catalogue.

use crate::{map_unique, new_id, now, page, parse_ts, parse_uuid, ts, Conn, Result};
use kumo_types::page::PageRequest;
use kumo_types::{InstanceTypeCreate, InstanceTypeId, InstanceTypeView, ResultsPage};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLS: &str =
    "t.id, t.name, t.description, t.time_created, t.time_modified, t.vcpus, t.memory_mib, t.disk_gib, t.gpus, \
     t.host_labels";

fn from_row(r: &AnyRow) -> Result<InstanceTypeView> {
    Ok(InstanceTypeView {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
        time_modified: parse_ts(&r.try_get::<String, _>(4)?)?,
        vcpus: r.try_get(5)?,
        memory_mib: r.try_get(6)?,
        disk_gib: r.try_get(7)?,
        gpus: r.try_get(8)?,
        host_labels: crate::labels_from_text(&r.try_get::<String, _>(9)?)?,
    })
}

/// The catalogue a new cloud starts with: (name, vcpus, memory MiB, disk GiB, gpus, description).
pub const DEFAULTS: [(&str, i64, i64, i64, i64, &str); 5] = [
    ("k1-nano", 1, 128, 1, 0, "1 vCPU, 128 MiB, 1 GiB: the smallest plan, for tests"),
    ("k1-small", 1, 512, 5, 0, "1 vCPU, 512 MiB, 5 GiB"),
    ("k1-medium", 2, 1024, 10, 0, "2 vCPU, 1 GiB, 10 GiB"),
    ("k1-large", 4, 4096, 40, 0, "4 vCPU, 4 GiB, 40 GiB"),
    ("g1-small", 2, 2048, 20, 1, "2 vCPU, 2 GiB, 20 GiB, 1 GPU (placed only on hosts with a free GPU)"),
];

/// Inserts the default catalogue when the table has never held anything.
pub async fn seed_defaults(conn: &mut Conn) -> Result<()> {
    let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM instance_types").fetch_one(&mut *conn).await?;
    if n > 0 {
        return Ok(());
    }
    for (name, vcpus, memory_mib, disk_gib, gpus, description) in DEFAULTS {
        let params = InstanceTypeCreate {
            name: kumo_types::Name::parse(name).map_err(crate::StoreError::Corrupt)?,
            description: description.into(),
            vcpus,
            memory_mib,
            disk_gib,
            gpus,
            host_labels: Default::default(),
        };
        create(conn, &params).await?;
    }
    Ok(())
}

pub async fn create(conn: &mut Conn, p: &InstanceTypeCreate) -> Result<InstanceTypeView> {
    let id: InstanceTypeId = new_id();
    let t = ts(now());
    sqlx::query(
        "INSERT INTO instance_types (id, name, description, time_created, time_modified, vcpus, memory_mib, disk_gib, gpus, \
         host_labels) VALUES ($1, $2, $3, $4, $4, $5, $6, $7, $8, $9)",
    )
    .bind(id.to_string())
    .bind(p.name.as_str())
    .bind(&p.description)
    .bind(&t)
    .bind(p.vcpus)
    .bind(p.memory_mib)
    .bind(p.disk_gib)
    .bind(p.gpus)
    .bind(crate::labels_to_text(&p.host_labels))
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    get_by_name(conn, p.name.as_str()).await?.ok_or_else(|| crate::StoreError::Corrupt("instance type vanished".into()))
}

pub async fn get_by_name(conn: &mut Conn, name: &str) -> Result<Option<InstanceTypeView>> {
    let sql = format!("SELECT {COLS} FROM instance_types t WHERE t.name = $1 AND t.time_deleted IS NULL");
    let row = sqlx::query(&sql).bind(name).fetch_optional(&mut *conn).await?;
    row.as_ref().map(from_row).transpose()
}

pub async fn list(conn: &mut Conn, req: &PageRequest) -> Result<ResultsPage<InstanceTypeView>> {
    let sql = format!("SELECT {COLS} FROM instance_types t WHERE t.time_deleted IS NULL");
    page::fetch(conn, &sql, &[], "t", req, from_row).await
}

/// Live instances using the type (deleting a type in use is refused).
pub async fn count_users(conn: &mut Conn, type_id: InstanceTypeId) -> Result<i64> {
    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM instances WHERE instance_type_id = $1 AND time_deleted IS NULL")
        .bind(type_id.to_string())
        .fetch_one(&mut *conn)
        .await?)
}

pub async fn soft_delete(conn: &mut Conn, type_id: InstanceTypeId) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE instance_types SET time_deleted = $1, time_modified = $1 WHERE id = $2 AND time_deleted IS NULL",
    )
    .bind(ts(now()))
    .bind(type_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// The labels instance type `id` needs of its host (deleted or not: its instances still need them).
pub async fn host_labels(conn: &mut Conn, id: InstanceTypeId) -> Result<kumo_types::Labels> {
    let text: Option<String> = sqlx::query_scalar("SELECT host_labels FROM instance_types WHERE id = $1")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    text.map_or_else(|| Ok(Default::default()), |t| crate::labels_from_text(&t))
}
