//! Instances.
//!
//! Every state change is a compare-and-set on `generation`: the API (actions) and the reconciler
//! (observations) may race, and whoever read an older generation loses and re-reads. The state
//! change and its event are written in one transaction by the caller (`kumo-control`).

use crate::fast::Cols;
use crate::hosts::Resources;
use crate::page::Keyed;
use crate::{lookup, map_unique, now, page, parse_ts, parse_uuid, ts, Conn, Result, Store, StoreError};
use kumo_types::page::PageRequest;
use kumo_types::{
    HostId, ImageId, InstanceId, InstanceState, InstanceTypeId, InstanceView, NameOrId, PlacementGroupId, ProjectId,
    ResultsPage,
};
use sqlx::any::AnyRow;
use uuid::Uuid;

const COLS: &str = "i.id, i.name, i.description, i.time_created, i.time_modified, p.name, i.state, \
    i.state_reason, im.name, t.name, i.vcpus, i.memory_mib, i.disk_gib, i.gpus, h.name, i.project_id, \
    i.image_id, i.instance_type_id, i.host_id, i.user_data, i.generation, plg.name, i.placement_group_id";
const FROM: &str = "FROM instances i JOIN projects p ON p.id = i.project_id JOIN images im ON im.id = i.image_id \
    JOIN instance_types t ON t.id = i.instance_type_id JOIN hosts h ON h.id = i.host_id \
    LEFT JOIN placement_groups plg ON plg.id = i.placement_group_id";

/// Everything the control plane knows about an instance.
#[derive(Debug, Clone)]
pub struct InstanceRecord {
    pub view: InstanceView,
    pub gpus: i64,
    pub project_id: ProjectId,
    pub image_id: ImageId,
    pub instance_type_id: InstanceTypeId,
    pub host_id: HostId,
    pub user_data: Option<String>,
    pub generation: i64,
    pub placement_group_id: Option<PlacementGroupId>,
}

impl InstanceRecord {
    pub fn state(&self) -> InstanceState {
        self.view.state
    }

    pub fn resources(&self) -> Resources {
        Resources {
            vcpus: self.view.vcpus,
            memory_mib: self.view.memory_mib,
            disk_gib: self.view.disk_gib,
            gpus: self.gpus,
        }
    }
}

impl Keyed for InstanceRecord {
    fn key_name(&self) -> &str {
        &self.view.name
    }
    fn key_id(&self) -> Uuid {
        self.view.id.get()
    }
}

fn from_row(r: &dyn Cols) -> Result<InstanceRecord> {
    let state = r.text(6)?;
    Ok(InstanceRecord {
        view: InstanceView {
            id: parse_uuid(&r.text(0)?)?,
            name: r.text(1)?,
            description: r.text(2)?,
            time_created: parse_ts(&r.text(3)?)?,
            time_modified: parse_ts(&r.text(4)?)?,
            project: r.text(5)?,
            state: InstanceState::parse(&state)
                .ok_or_else(|| StoreError::Corrupt(format!("instance state '{state}'")))?,
            state_reason: r.opt_text(7)?,
            image: r.text(8)?,
            instance_type: r.text(9)?,
            vcpus: r.int(10)?,
            memory_mib: r.int(11)?,
            disk_gib: r.int(12)?,
            host: r.opt_text(14)?,
            network_interfaces: Vec::new(),
            public_ip: None,
            placement_group: r.opt_text(21)?,
        },
        gpus: r.int(13)?,
        project_id: parse_uuid(&r.text(15)?)?,
        image_id: parse_uuid(&r.text(16)?)?,
        instance_type_id: parse_uuid(&r.text(17)?)?,
        host_id: parse_uuid(&r.text(18)?)?,
        user_data: r.opt_text(19)?,
        generation: r.int(20)?,
        placement_group_id: r.opt_text(22)?.map(|s| parse_uuid(&s)).transpose()?,
    })
}

fn from_any(r: &AnyRow) -> Result<InstanceRecord> {
    from_row(r)
}

/// The typed read path's columns: [`COLS`] and the floating IP attached, if any (so a view needs
/// one query for the instance and one for its interfaces).
const FAST_COLS: &str = "i.id, i.name, i.description, i.time_created, i.time_modified, p.name, i.state, \
    i.state_reason, im.name, t.name, i.vcpus, i.memory_mib, i.disk_gib, i.gpus, h.name, i.project_id, \
    i.image_id, i.instance_type_id, i.host_id, i.user_data, i.generation, plg.name, i.placement_group_id, \
    (SELECT f.ip FROM floating_ips f WHERE f.instance_id = i.id AND f.time_deleted IS NULL)";

fn from_fast_row(r: &dyn Cols) -> Result<InstanceRecord> {
    let mut rec = from_row(r)?;
    rec.view.public_ip = r.opt_text(23)?;
    Ok(rec)
}

/// [`get_in_project`] on the typed read path (the API's view of an instance): the instance and
/// its interfaces in one trip to the database (see `Reader::both`).
pub async fn fast_get_in_project(store: &Store, project: &NameOrId, sel: &NameOrId) -> Result<Option<InstanceRecord>> {
    let (found, binds) = in_project(project, sel);
    let sql = format!("SELECT {FAST_COLS} {FROM} WHERE {found}");
    // A live name is unique in its project, so the subquery has at most one row.
    let nics = crate::nics::fast_interfaces_sql(&format!(
        "= (SELECT i.id FROM instances i JOIN projects p ON p.id = i.project_id WHERE {found})"
    ));
    let (recs, nics) = store.fast.both(&sql, &nics, &binds, from_fast_row, crate::nics::fast_interface).await?;
    Ok(with_interfaces(recs, nics))
}

/// [`get_by_id`] on the typed read path.
pub async fn fast_get_by_id(store: &Store, id: InstanceId) -> Result<Option<InstanceRecord>> {
    let sql = format!("SELECT {FAST_COLS} {FROM} WHERE i.id = $1 AND i.time_deleted IS NULL");
    let nics = crate::nics::fast_interfaces_sql("= $1");
    let (recs, nics) =
        store.fast.both(&sql, &nics, &[id.to_string()], from_fast_row, crate::nics::fast_interface).await?;
    Ok(with_interfaces(recs, nics))
}

/// [`list`] on the typed read path.
pub async fn fast_list(store: &Store, project_id: ProjectId, req: &PageRequest) -> Result<ResultsPage<InstanceRecord>> {
    let sql = format!("SELECT {FAST_COLS} {FROM} WHERE i.project_id = $1 AND i.time_deleted IS NULL");
    let mut page = page::fetch_fast(&store.fast, &sql, &[project_id.to_string()], "i", req, from_fast_row).await?;
    let mut views: Vec<&mut InstanceView> = page.items.iter_mut().map(|r| &mut r.view).collect();
    crate::nics::fast_fill_interfaces(&store.fast, &mut views).await?;
    Ok(page)
}

fn with_interfaces(
    recs: Vec<InstanceRecord>,
    nics: Vec<(InstanceId, kumo_types::NetworkInterfaceView)>,
) -> Option<InstanceRecord> {
    let mut rec = recs.into_iter().next()?;
    crate::nics::attach_interfaces(&mut [&mut rec.view], nics);
    Some(rec)
}

/// An instance to insert (capacity on `host_id` must already be reserved in the same transaction).
#[derive(Debug, Clone)]
pub struct NewInstance<'a> {
    pub id: InstanceId,
    pub project_id: ProjectId,
    pub name: &'a str,
    pub description: &'a str,
    pub image_id: ImageId,
    pub instance_type_id: InstanceTypeId,
    pub host_id: HostId,
    pub resources: Resources,
    pub user_data: Option<&'a str>,
    pub placement_group_id: Option<PlacementGroupId>,
}

pub async fn insert(conn: &mut Conn, n: &NewInstance<'_>) -> Result<()> {
    let t = ts(now());
    sqlx::query(
        "INSERT INTO instances (id, project_id, name, description, time_created, time_modified, image_id, \
         instance_type_id, host_id, vcpus, memory_mib, disk_gib, gpus, state, user_data, generation, \
         placement_group_id) VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 1, $15)",
    )
    .bind(n.id.to_string())
    .bind(n.project_id.to_string())
    .bind(n.name)
    .bind(n.description)
    .bind(&t)
    .bind(n.image_id.to_string())
    .bind(n.instance_type_id.to_string())
    .bind(n.host_id.to_string())
    .bind(n.resources.vcpus)
    .bind(n.resources.memory_mib)
    .bind(n.resources.disk_gib)
    .bind(n.resources.gpus)
    .bind(InstanceState::Creating.as_str())
    .bind(n.user_data)
    .bind(n.placement_group_id.map(|g| g.to_string()))
    .execute(&mut *conn)
    .await
    .map_err(map_unique)?;
    Ok(())
}

/// A live instance of a project, by name or id.
pub async fn get(conn: &mut Conn, project_id: ProjectId, sel: &NameOrId) -> Result<Option<InstanceRecord>> {
    let rec = lookup::get(conn, project_id, sel).await?;
    with_network(conn, rec).await
}

lookup::impl_lookup!(InstanceRecord: COLS FROM "i", Parent("project_id") => ProjectId, from_any);

/// The condition (on [`FROM`]) and binds of a live instance by name or id in a live project
/// given by name or id.
fn in_project(project: &NameOrId, sel: &NameOrId) -> (String, Vec<String>) {
    let (ppred, pval) = lookup::name_or_id("p", 1, project);
    let (pred, val) = lookup::name_or_id("i", 2, sel);
    (format!("{ppred} AND p.time_deleted IS NULL AND {pred} AND i.time_deleted IS NULL"), vec![pval, val])
}

/// A live instance by name or id in a project given by name or id, in one query.
pub async fn get_in_project(conn: &mut Conn, project: &NameOrId, sel: &NameOrId) -> Result<Option<InstanceRecord>> {
    let (found, binds) = in_project(project, sel);
    let sql = format!("SELECT {COLS} {FROM} WHERE {found}");
    let mut q = sqlx::query(&sql);
    for b in binds {
        q = q.bind(b);
    }
    let row = q.fetch_optional(&mut *conn).await?;
    with_network(conn, row.as_ref().map(from_any).transpose()?).await
}

/// A live instance by id, whatever its project.
pub async fn get_by_id(conn: &mut Conn, id: InstanceId) -> Result<Option<InstanceRecord>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE i.id = $1 AND i.time_deleted IS NULL");
    let row = sqlx::query(&sql).bind(id.to_string()).fetch_optional(&mut *conn).await?;
    with_network(conn, row.as_ref().map(from_any).transpose()?).await
}

pub async fn list(conn: &mut Conn, project_id: ProjectId, req: &PageRequest) -> Result<ResultsPage<InstanceRecord>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE i.project_id = $1 AND i.time_deleted IS NULL");
    let mut page = page::fetch(conn, &sql, &[project_id.to_string()], "i", req, from_any).await?;
    let mut views: Vec<&mut InstanceView> = page.items.iter_mut().map(|r| &mut r.view).collect();
    crate::nics::fill_views(conn, &mut views).await?;
    Ok(page)
}

/// Fills the view's network interfaces and public IP.
async fn with_network(conn: &mut Conn, rec: Option<InstanceRecord>) -> Result<Option<InstanceRecord>> {
    let Some(mut rec) = rec else { return Ok(None) };
    crate::nics::fill_views(conn, &mut [&mut rec.view]).await?;
    Ok(Some(rec))
}

/// Every live instance placed on a host (what its agent should have).
pub async fn on_host(conn: &mut Conn, host_id: HostId) -> Result<Vec<InstanceRecord>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE i.host_id = $1 AND i.time_deleted IS NULL ORDER BY i.id");
    let rows = sqlx::query(&sql).bind(host_id.to_string()).fetch_all(&mut *conn).await?;
    rows.iter().map(from_any).collect()
}

/// Compare-and-set of the state: succeeds only if nobody changed the instance since `generation`.
pub async fn set_state(
    conn: &mut Conn,
    id: InstanceId,
    generation: i64,
    state: InstanceState,
    reason: Option<&str>,
) -> Result<bool> {
    update_state(conn, id, generation, None, state, reason).await
}

/// [`set_state`] that also puts the instance on another host (a move's commit; the caller moves
/// the capacity reservation in the same transaction).
pub async fn move_to(
    conn: &mut Conn,
    id: InstanceId,
    generation: i64,
    host_id: HostId,
    state: InstanceState,
    reason: Option<&str>,
) -> Result<bool> {
    update_state(conn, id, generation, Some(host_id), state, reason).await
}

async fn update_state(
    conn: &mut Conn,
    id: InstanceId,
    generation: i64,
    host_id: Option<HostId>,
    state: InstanceState,
    reason: Option<&str>,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE instances SET host_id = COALESCE($1, host_id), state = $2, state_reason = $3, \
         generation = generation + 1, time_modified = $4 WHERE id = $5 AND generation = $6 AND time_deleted IS NULL",
    )
    .bind(host_id.map(|h| h.to_string()))
    .bind(state.as_str())
    .bind(reason)
    .bind(ts(now()))
    .bind(id.to_string())
    .bind(generation)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Compare-and-set of the instance type and the resources it reserves.
pub async fn set_type(
    conn: &mut Conn,
    id: InstanceId,
    generation: i64,
    instance_type_id: InstanceTypeId,
    r: Resources,
) -> Result<bool> {
    let res = sqlx::query(
        "UPDATE instances SET instance_type_id = $1, vcpus = $2, memory_mib = $3, disk_gib = $4, gpus = $5, \
         generation = generation + 1, time_modified = $6 WHERE id = $7 AND generation = $8 AND time_deleted IS NULL",
    )
    .bind(instance_type_id.to_string())
    .bind(r.vcpus)
    .bind(r.memory_mib)
    .bind(r.disk_gib)
    .bind(r.gpus)
    .bind(ts(now()))
    .bind(id.to_string())
    .bind(generation)
    .execute(&mut *conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Soft-deletes a destroyed instance (the row stays for history; its name becomes free).
pub async fn mark_destroyed(conn: &mut Conn, id: InstanceId, generation: i64) -> Result<bool> {
    let t = ts(now());
    let r = sqlx::query(
        "UPDATE instances SET state = $1, generation = generation + 1, time_modified = $2, time_deleted = $2 \
         WHERE id = $3 AND generation = $4 AND time_deleted IS NULL",
    )
    .bind(InstanceState::Destroyed.as_str())
    .bind(t)
    .bind(id.to_string())
    .bind(generation)
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}
