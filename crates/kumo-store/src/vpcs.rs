//! VPCs and their subnets. A VPC's VNI (24-bit VXLAN id: bridge and routing-table names) and its
//! conntrack zone (16-bit) are allocated here, in the creating transaction, as the lowest value
//! free among live VPCs: deleting a VPC gives both back. A row lock on `vpc_allocator` serialises
//! allocations on PostgreSQL (SQLite has one writer); the partial unique indexes are the backstop.

use crate::{lookup, map_unique, new_id, now, page, parse_ts, parse_uuid, ts, Conn, Result, StoreError};
use kumo_types::network::SubnetPlan;
use kumo_types::page::PageRequest;
use kumo_types::{NameOrId, ProjectId, ResultsPage, SubnetId, SubnetView, VpcId, VpcView};
use sqlx::any::AnyRow;
use sqlx::Row;
use uuid::Uuid;

const VPC_COLS: &str = "v.id, v.name, v.description, v.time_created, v.time_modified, p.name, v.ipv4_cidr, v.vni, \
    v.project_id, v.ct_zone";
const VPC_FROM: &str = "FROM vpcs v JOIN projects p ON p.id = v.project_id";

/// A VPC and its project's id.
#[derive(Debug, Clone)]
pub struct VpcRecord {
    pub view: VpcView,
    pub project_id: ProjectId,
    /// Conntrack zone of the VPC's traffic (1..=65535; unique among live VPCs).
    pub ct_zone: i64,
}

/// Largest VXLAN network id (24 bits).
pub const MAX_VNI: i64 = (1 << 24) - 1;
/// Largest conntrack zone (16 bits; zone 0 is the host's own).
pub const MAX_CT_ZONE: i64 = 65535;

/// Why a VPC could not be inserted.
#[derive(Debug, thiserror::Error)]
pub enum VpcInsertError {
    /// Every VNI or conntrack zone is held by a live VPC.
    #[error("every {0} is in use by a live VPC")]
    Exhausted(&'static str),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sqlx::Error> for VpcInsertError {
    fn from(e: sqlx::Error) -> Self {
        VpcInsertError::Store(e.into())
    }
}

/// The lowest value in 1..=max of `column` that no live VPC holds (None: all taken). Candidates
/// are 1 and every held value + 1 whose successor is free.
async fn lowest_free(conn: &mut Conn, column: &str, max: i64) -> Result<Option<i64>> {
    let sql = format!(
        "SELECT MIN(c) FROM ( \
           SELECT CAST(1 AS BIGINT) AS c WHERE NOT EXISTS \
             (SELECT 1 FROM vpcs WHERE time_deleted IS NULL AND {column} = 1) \
           UNION ALL \
           SELECT v.{column} + 1 AS c FROM vpcs v WHERE v.time_deleted IS NULL AND v.{column} < $1 \
             AND NOT EXISTS (SELECT 1 FROM vpcs w WHERE w.time_deleted IS NULL AND w.{column} = v.{column} + 1) \
         ) free"
    );
    Ok(sqlx::query_scalar::<_, Option<i64>>(&sql).bind(max).fetch_one(&mut *conn).await?)
}

impl page::Keyed for VpcRecord {
    fn key_name(&self) -> &str {
        &self.view.name
    }
    fn key_id(&self) -> Uuid {
        self.view.id.get()
    }
}

fn vpc_from_row(r: &AnyRow) -> Result<VpcRecord> {
    Ok(VpcRecord {
        view: VpcView {
            id: parse_uuid(&r.try_get::<String, _>(0)?)?,
            name: r.try_get(1)?,
            description: r.try_get(2)?,
            time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
            time_modified: parse_ts(&r.try_get::<String, _>(4)?)?,
            project: r.try_get(5)?,
            ipv4_cidr: r.try_get(6)?,
            vni: r.try_get(7)?,
        },
        project_id: parse_uuid(&r.try_get::<String, _>(8)?)?,
        ct_zone: r.try_get(9)?,
    })
}

pub async fn insert_vpc(
    conn: &mut Conn,
    project_id: ProjectId,
    name: &str,
    description: &str,
    cidr: &str,
) -> Result<VpcRecord, VpcInsertError> {
    let id: VpcId = new_id();
    let t = ts(now());
    // Held until the transaction ends: a concurrent create waits here, then sees this one's row.
    sqlx::query("UPDATE vpc_allocator SET allocations = allocations + 1 WHERE id = 1").execute(&mut *conn).await?;
    let vni = lowest_free(conn, "vni", MAX_VNI).await?.ok_or(VpcInsertError::Exhausted("VNI"))?;
    let zone = lowest_free(conn, "ct_zone", MAX_CT_ZONE).await?.ok_or(VpcInsertError::Exhausted("conntrack zone"))?;
    sqlx::query(
        "INSERT INTO vpcs (id, project_id, name, description, time_created, time_modified, ipv4_cidr, vni, ct_zone) \
         VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8)",
    )
    .bind(id.to_string())
    .bind(project_id.to_string())
    .bind(name)
    .bind(description)
    .bind(&t)
    .bind(cidr)
    .bind(vni)
    .bind(zone)
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    Ok(vpc_by_id(conn, id).await?.ok_or_else(|| StoreError::Corrupt("vpc vanished".into()))?)
}

pub async fn vpc_by_id(conn: &mut Conn, id: VpcId) -> Result<Option<VpcRecord>> {
    let sql = format!("SELECT {VPC_COLS} {VPC_FROM} WHERE v.id = $1");
    let row = sqlx::query(&sql).bind(id.to_string()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(vpc_from_row).transpose()
}

pub async fn get_vpc(conn: &mut Conn, project_id: ProjectId, s: &NameOrId) -> Result<Option<VpcRecord>> {
    lookup::get(conn, project_id, s).await
}

lookup::impl_lookup!(VpcRecord: VPC_COLS VPC_FROM "v", Parent("project_id") => ProjectId, vpc_from_row);

pub async fn list_vpcs(conn: &mut Conn, project_id: ProjectId, req: &PageRequest) -> Result<ResultsPage<VpcRecord>> {
    let sql = format!("SELECT {VPC_COLS} {VPC_FROM} WHERE v.project_id = $1 AND v.time_deleted IS NULL");
    page::fetch(conn, &sql, &[project_id.to_string()], "v", req, vpc_from_row).await
}

/// Every live VPC (the data plane's desired state).
pub async fn all_vpcs(conn: &mut Conn) -> Result<Vec<VpcRecord>> {
    let sql = format!("SELECT {VPC_COLS} {VPC_FROM} WHERE v.time_deleted IS NULL ORDER BY v.vni");
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter().map(vpc_from_row).collect()
}

/// Live interfaces in the VPC (instances using it).
pub async fn count_vpc_interfaces(conn: &mut Conn, vpc_id: VpcId) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT COUNT(*) FROM network_interfaces n JOIN vpc_subnets s ON s.id = n.subnet_id \
         WHERE s.vpc_id = $1 AND n.time_deleted IS NULL",
    )
    .bind(vpc_id.to_string())
    .fetch_one(&mut *conn)
    .await?)
}

/// Soft-deletes a VPC and its subnets.
pub async fn delete_vpc(conn: &mut Conn, vpc_id: VpcId) -> Result<bool> {
    let t = ts(now());
    sqlx::query("UPDATE vpc_subnets SET time_deleted = $1 WHERE vpc_id = $2 AND time_deleted IS NULL")
        .bind(&t)
        .bind(vpc_id.to_string())
        .execute(&mut *conn)
        .await?;
    let r = sqlx::query("UPDATE vpcs SET time_deleted = $1, time_modified = $1 WHERE id = $2 AND time_deleted IS NULL")
        .bind(&t)
        .bind(vpc_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(r.rows_affected() == 1)
}

const SUBNET_COLS: &str = "s.id, s.name, s.description, s.time_created, s.time_modified, p.name, v.name, s.ipv4_cidr, \
    (SELECT COUNT(*) FROM network_interfaces n WHERE n.subnet_id = s.id AND n.time_deleted IS NULL), \
    s.vpc_id, s.project_id, v.vni, v.ct_zone";
const SUBNET_FROM: &str = "FROM vpc_subnets s JOIN vpcs v ON v.id = s.vpc_id JOIN projects p ON p.id = s.project_id";

/// A subnet with its VPC's id and VNI.
#[derive(Debug, Clone)]
pub struct SubnetRecord {
    pub view: SubnetView,
    pub vpc_id: VpcId,
    pub project_id: ProjectId,
    pub vni: i64,
    pub ct_zone: i64,
    pub plan: SubnetPlan,
}

impl page::Keyed for SubnetRecord {
    fn key_name(&self) -> &str {
        &self.view.name
    }
    fn key_id(&self) -> Uuid {
        self.view.id.get()
    }
}

fn subnet_from_row(r: &AnyRow) -> Result<SubnetRecord> {
    let cidr: String = r.try_get(7)?;
    let plan = SubnetPlan::new(cidr.parse().map_err(|_| StoreError::Corrupt(format!("subnet cidr '{cidr}'")))?);
    Ok(SubnetRecord {
        view: SubnetView {
            id: parse_uuid(&r.try_get::<String, _>(0)?)?,
            name: r.try_get(1)?,
            description: r.try_get(2)?,
            time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
            time_modified: parse_ts(&r.try_get::<String, _>(4)?)?,
            project: r.try_get(5)?,
            vpc: r.try_get(6)?,
            ipv4_cidr: cidr,
            gateway: plan.gateway().to_string(),
            capacity: plan.capacity() as i64,
            allocated: r.try_get(8)?,
        },
        vpc_id: parse_uuid(&r.try_get::<String, _>(9)?)?,
        project_id: parse_uuid(&r.try_get::<String, _>(10)?)?,
        vni: r.try_get(11)?,
        ct_zone: r.try_get(12)?,
        plan,
    })
}

pub async fn insert_subnet(
    conn: &mut Conn,
    vpc: &VpcRecord,
    name: &str,
    description: &str,
    cidr: &str,
) -> Result<SubnetRecord> {
    let id: SubnetId = new_id();
    let t = ts(now());
    sqlx::query(
        "INSERT INTO vpc_subnets (id, project_id, vpc_id, name, description, time_created, time_modified, ipv4_cidr) \
         VALUES ($1, $2, $3, $4, $5, $6, $6, $7)",
    )
    .bind(id.to_string())
    .bind(vpc.project_id.to_string())
    .bind(vpc.view.id.to_string())
    .bind(name)
    .bind(description)
    .bind(&t)
    .bind(cidr)
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    subnet_by_id(conn, id).await?.ok_or_else(|| StoreError::Corrupt("subnet vanished".into()))
}

pub async fn subnet_by_id(conn: &mut Conn, id: SubnetId) -> Result<Option<SubnetRecord>> {
    let sql = format!("SELECT {SUBNET_COLS} {SUBNET_FROM} WHERE s.id = $1");
    let row = sqlx::query(&sql).bind(id.to_string()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(subnet_from_row).transpose()
}

pub async fn get_subnet(conn: &mut Conn, vpc_id: VpcId, s: &NameOrId) -> Result<Option<SubnetRecord>> {
    lookup::get(conn, vpc_id, s).await
}

lookup::impl_lookup!(SubnetRecord: SUBNET_COLS SUBNET_FROM "s", Parent("vpc_id") => VpcId, subnet_from_row);

/// A live subnet by id within a project (selectors by id need no VPC).
pub async fn get_subnet_in_project(
    conn: &mut Conn,
    project_id: ProjectId,
    id: SubnetId,
) -> Result<Option<SubnetRecord>> {
    let sql =
        format!("SELECT {SUBNET_COLS} {SUBNET_FROM} WHERE s.project_id = $1 AND s.id = $2 AND s.time_deleted IS NULL");
    let row = sqlx::query(&sql).bind(project_id.to_string()).bind(id.to_string()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(subnet_from_row).transpose()
}

pub async fn list_subnets(conn: &mut Conn, vpc_id: VpcId, req: &PageRequest) -> Result<ResultsPage<SubnetRecord>> {
    let sql = format!("SELECT {SUBNET_COLS} {SUBNET_FROM} WHERE s.vpc_id = $1 AND s.time_deleted IS NULL");
    page::fetch(conn, &sql, &[vpc_id.to_string()], "s", req, subnet_from_row).await
}

/// Every live subnet of a VPC (overlap checks) or of every VPC (`None`: the data plane).
pub async fn all_subnets(conn: &mut Conn, vpc_id: Option<VpcId>) -> Result<Vec<SubnetRecord>> {
    let (pred, val) = match vpc_id {
        Some(v) => ("s.vpc_id = $1", v.to_string()),
        None => ("$1 = ''", String::new()),
    };
    let sql = format!("SELECT {SUBNET_COLS} {SUBNET_FROM} WHERE {pred} AND s.time_deleted IS NULL ORDER BY s.id");
    let rows = sqlx::query(&sql).bind(val).fetch_all(&mut *conn).await?;
    rows.iter().map(subnet_from_row).collect()
}

pub async fn delete_subnet(conn: &mut Conn, subnet_id: SubnetId) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE vpc_subnets SET time_deleted = $1, time_modified = $1 WHERE id = $2 AND time_deleted IS NULL",
    )
    .bind(ts(now()))
    .bind(subnet_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Takes the subnet's row lock (PostgreSQL; SQLite has one writer anyway) so that concurrent
/// allocations in one subnet run one after the other.
pub async fn lock_subnet(conn: &mut Conn, subnet_id: SubnetId) -> Result<()> {
    sqlx::query("UPDATE vpc_subnets SET time_modified = time_modified WHERE id = $1")
        .bind(subnet_id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}
