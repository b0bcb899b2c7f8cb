//! Zones: named groups of hosts. A zone's view sums the capacity of its live hosts.

use crate::{lookup, map_unique, new_id, now, page, parse_ts, parse_uuid, ts, Conn, Result, StoreError};
use kumo_types::page::PageRequest;
use kumo_types::{Name, NameOrId, ResultsPage, ZoneId, ZoneView};
use sqlx::any::AnyRow;
use sqlx::Row;

/// The name of the zone the all-in-one's host (and any host registered without one) is put in.
pub const DEFAULT: &str = "default";

/// A sum over the zone's live hosts, as BIGINT (PostgreSQL's SUM of BIGINT is NUMERIC).
macro_rules! host_sum {
    ($col:literal) => {
        concat!(
            "CAST((SELECT COALESCE(SUM(zh.",
            $col,
            "), 0) FROM hosts zh WHERE zh.zone_id = z.id AND zh.time_deleted IS NULL) AS BIGINT)"
        )
    };
}

const COLS: &str = concat!(
    "z.id, z.name, z.description, z.time_created, z.time_modified, ",
    "CAST((SELECT COUNT(*) FROM hosts zh WHERE zh.zone_id = z.id AND zh.time_deleted IS NULL) AS BIGINT), ",
    host_sum!("vcpus_limit"),
    ", ",
    host_sum!("vcpus_used"),
    ", ",
    host_sum!("memory_mib_limit"),
    ", ",
    host_sum!("memory_mib_used"),
    ", ",
    host_sum!("disk_gib_limit"),
    ", ",
    host_sum!("disk_gib_used")
);

fn from_row(r: &AnyRow) -> Result<ZoneView> {
    Ok(ZoneView {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
        time_modified: parse_ts(&r.try_get::<String, _>(4)?)?,
        hosts: Some(r.try_get(5)?),
        vcpus_limit: Some(r.try_get(6)?),
        vcpus_used: Some(r.try_get(7)?),
        memory_mib_limit: Some(r.try_get(8)?),
        memory_mib_used: Some(r.try_get(9)?),
        disk_gib_limit: Some(r.try_get(10)?),
        disk_gib_used: Some(r.try_get(11)?),
    })
}

/// Creates a zone. `Conflict` when a live zone has the name.
pub async fn create(conn: &mut Conn, name: &str, description: &str) -> Result<ZoneView> {
    let id: ZoneId = new_id();
    sqlx::query("INSERT INTO zones (id, name, description, time_created, time_modified) VALUES ($1, $2, $3, $4, $4)")
        .bind(id.to_string())
        .bind(name)
        .bind(description)
        .bind(ts(now()))
        .execute(&mut *conn)
        .await
        .map_err(map_unique)?;
    get(conn, &NameOrId::Id(id.get())).await?.ok_or_else(|| StoreError::Corrupt("zone vanished".into()))
}

pub async fn get(conn: &mut Conn, sel: &NameOrId) -> Result<Option<ZoneView>> {
    lookup::get(conn, (), sel).await
}

lookup::impl_lookup!(ZoneView: COLS "FROM zones z" "z", Global => (), from_row);

pub async fn list(conn: &mut Conn, req: &PageRequest) -> Result<ResultsPage<ZoneView>> {
    let sql = format!("SELECT {COLS} FROM zones z WHERE z.time_deleted IS NULL");
    page::fetch(conn, &sql, &[], "z", req, from_row).await
}

/// The id of the live zone `name`, created (with no description) if there is none.
pub async fn ensure(conn: &mut Conn, name: &str) -> Result<ZoneId> {
    let sel = NameOrId::Name(Name::parse(name).map_err(StoreError::Corrupt)?);
    if let Some(z) = get(conn, &sel).await? {
        return Ok(z.id);
    }
    Ok(create(conn, name, "").await?.id)
}
