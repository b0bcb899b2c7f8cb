//! Hosts and their capacity counters.
//!
//! Capacity is reserved with a conditional `UPDATE … WHERE used + asked <= limit`, inside the same
//! transaction that inserts the instance: the row lock (PostgreSQL) or the single writer (SQLite)
//! makes concurrent reservations unable to overshoot. On PostgreSQL this holds under READ
//! COMMITTED: an `UPDATE` that waited for another transaction's lock on the row evaluates its
//! `WHERE` again on the row as that transaction committed it, so the second of two claims sees
//! the first one's use. [`lock_if_free`] lets a create pass over a host another create is
//! claiming (tried again after the free ones), so concurrent creates spread over the hosts
//! rather than queue on the best one.

use crate::{lookup, new_id, now, page, parse_ts, parse_uuid, ts, Conn, Result, StoreError};
use kumo_types::page::PageRequest;
use kumo_types::{DrainState, DrainView, HostId, HostRole, HostState, HostView, NameOrId, ResultsPage, ZoneId};
use sqlx::any::AnyRow;
use sqlx::Row;

const COLS: &str = "h.id, h.name, h.description, h.time_created, h.time_modified, h.driver, h.accelerator, \
    h.accelerator_reason, h.vcpus_total, h.vcpus_used, h.vcpus_limit, h.memory_mib_total, h.memory_mib_used, \
    h.memory_mib_limit, h.disk_gib_total, h.disk_gib_used, h.disk_gib_limit, h.gpus_total, h.gpus_used, \
    h.cpu_overcommit, h.memory_overcommit, h.disk_overcommit, COALESCE(z.name, ''), h.role, h.cordoned, h.last_seen, \
    h.address, h.drain_state, h.drain_started, h.drain_finished, h.drain_reason, h.labels, h.time_left";
const FROM: &str = "FROM hosts h LEFT JOIN zones z ON z.id = h.zone_id";

/// The state a row shows before the control plane applies its heartbeat deadline: cordoned, else
/// ready, except an agent never heard from (unreachable). The control plane's
/// `kumo_control::app::hosts::state` is the rule every view goes through; the store cannot know
/// the deadline (`--host-unreachable-seconds`).
fn stored_state(
    role: HostRole,
    cordoned: bool,
    last_seen: Option<chrono::DateTime<chrono::Utc>>,
    left: Option<chrono::DateTime<chrono::Utc>>,
) -> HostState {
    if left.is_some() {
        HostState::Down
    } else if cordoned {
        HostState::Cordoned
    } else if role == HostRole::Agent && last_seen.is_none() {
        HostState::Unreachable
    } else {
        HostState::Ready
    }
}

fn from_row(r: &AnyRow) -> Result<HostView> {
    let role_text: String = r.try_get(23)?;
    let role =
        HostRole::parse(&role_text).ok_or_else(|| StoreError::Corrupt(format!("bad host role '{role_text}'")))?;
    let cordoned = r.try_get::<i64, _>(24)? != 0;
    let last_seen = r.try_get::<Option<String>, _>(25)?.map(|t| parse_ts(&t)).transpose()?;
    let left = r.try_get::<Option<String>, _>(32)?.map(|t| parse_ts(&t)).transpose()?;
    // Back once a heartbeat came after it left.
    let left = left.filter(|l| last_seen.is_none_or(|s| s <= *l));
    Ok(HostView {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        name: r.try_get(1)?,
        description: r.try_get(2)?,
        time_created: parse_ts(&r.try_get::<String, _>(3)?)?,
        time_modified: parse_ts(&r.try_get::<String, _>(4)?)?,
        driver: r.try_get(5)?,
        accelerator: r.try_get(6)?,
        accelerator_reason: r.try_get(7)?,
        vcpus_total: r.try_get(8)?,
        vcpus_used: r.try_get(9)?,
        vcpus_limit: r.try_get(10)?,
        memory_mib_total: r.try_get(11)?,
        memory_mib_used: r.try_get(12)?,
        memory_mib_limit: r.try_get(13)?,
        disk_gib_total: r.try_get(14)?,
        disk_gib_used: r.try_get(15)?,
        disk_gib_limit: r.try_get(16)?,
        gpus_total: r.try_get(17)?,
        gpus_used: r.try_get(18)?,
        cpu_overcommit: r.try_get(19)?,
        memory_overcommit: r.try_get(20)?,
        disk_overcommit: r.try_get(21)?,
        zone: r.try_get(22)?,
        state: stored_state(role, cordoned, last_seen, left),
        role,
        cordoned,
        last_seen,
        address: r.try_get(26)?,
        drain: drain_from_row(r)?,
        labels: crate::labels_from_text(&r.try_get::<String, _>(31)?)?,
        time_left: left,
    })
}

/// The drain columns (27–30); its counts are the control plane's to fill in.
fn drain_from_row(r: &AnyRow) -> Result<Option<DrainView>> {
    let Some(state) = r.try_get::<Option<String>, _>(27)? else { return Ok(None) };
    let state = DrainState::parse(&state).ok_or_else(|| StoreError::Corrupt(format!("drain state '{state}'")))?;
    let started: Option<String> = r.try_get(28)?;
    let finished: Option<String> = r.try_get(29)?;
    Ok(Some(DrainView {
        state,
        time_started: parse_ts(started.as_deref().unwrap_or_default())?,
        time_finished: finished.map(|t| parse_ts(&t)).transpose()?,
        moved: 0,
        failed: 0,
        remaining: 0,
        moving: None,
        reason: r.try_get(30)?,
    }))
}

/// Starts a drain of the host: cordoned, drain `draining` from now. Returns false (nothing
/// changed) when it is draining already.
pub async fn start_drain(conn: &mut Conn, id: HostId) -> Result<bool> {
    let t = ts(now());
    let r = sqlx::query(
        "UPDATE hosts SET cordoned = 1, drain_state = 'draining', drain_started = $1, drain_finished = NULL, \
         drain_reason = NULL, time_modified = $1 \
         WHERE id = $2 AND time_deleted IS NULL AND (drain_state IS NULL OR drain_state <> 'draining')",
    )
    .bind(&t)
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Ends a running drain as `state` (`done` or `incomplete`) with `reason`.
pub async fn finish_drain(conn: &mut Conn, id: HostId, state: DrainState, reason: Option<&str>) -> Result<bool> {
    let t = ts(now());
    let r = sqlx::query(
        "UPDATE hosts SET drain_state = $1, drain_finished = $2, drain_reason = $3, time_modified = $2 \
         WHERE id = $4 AND drain_state = 'draining'",
    )
    .bind(state.as_str())
    .bind(&t)
    .bind(reason)
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Forgets the host's drain (uncordon ends it).
pub async fn clear_drain(conn: &mut Conn, id: HostId) -> Result<()> {
    sqlx::query(
        "UPDATE hosts SET drain_state = NULL, drain_started = NULL, drain_finished = NULL, drain_reason = NULL \
         WHERE id = $1",
    )
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Hosts with a drain under way.
pub async fn draining(conn: &mut Conn) -> Result<Vec<HostView>> {
    let sql =
        format!("SELECT {COLS} {FROM} WHERE h.time_deleted IS NULL AND h.drain_state = 'draining' ORDER BY h.name");
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}

/// Amounts of the schedulable resources.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
    pub gpus: i64,
}

/// What a host agent reports about itself when it registers.
#[derive(Debug, Clone)]
pub struct HostReport {
    pub name: String,
    pub driver: String,
    pub accelerator: String,
    pub accelerator_reason: String,
    pub total: Resources,
    pub cpu_overcommit: f64,
    pub memory_overcommit: f64,
    pub disk_overcommit: f64,
}

impl HostReport {
    /// Limits are the physical amount times the overcommit ratio, rounded down. GPUs are never
    /// overcommitted.
    pub fn limits(&self) -> Resources {
        Resources {
            vcpus: (self.total.vcpus as f64 * self.cpu_overcommit).floor() as i64,
            memory_mib: (self.total.memory_mib as f64 * self.memory_overcommit).floor() as i64,
            disk_gib: (self.total.disk_gib as f64 * self.disk_overcommit).floor() as i64,
            gpus: self.total.gpus,
        }
    }
}

/// Registers a host by name, or refreshes what it reports (its reservations are kept): the
/// host of that name keeps its id, a new name gets a new one. kumod itself registers by the id in
/// its data directory ([`register`]); this is for tests and tools that have no data directory.
pub async fn upsert(conn: &mut Conn, r: &HostReport) -> Result<HostView> {
    let name = kumo_types::Name::parse(&r.name).map_err(crate::StoreError::Corrupt)?;
    let id = get(conn, &NameOrId::Name(name)).await?.map(|h| h.id).unwrap_or_else(new_id);
    register(conn, id, r).await
}

type AnyQuery<'q> = sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>;

/// Binds what a host reports, in the column order `driver, accelerator, accelerator_reason,
/// vcpus_total, memory_mib_total, disk_gib_total, gpus_total, vcpus_limit, memory_mib_limit,
/// disk_gib_limit, cpu_overcommit, memory_overcommit, disk_overcommit` (13 values).
fn bind_report<'q>(q: AnyQuery<'q>, r: &'q HostReport) -> AnyQuery<'q> {
    let l = r.limits();
    q.bind(&r.driver)
        .bind(&r.accelerator)
        .bind(&r.accelerator_reason)
        .bind(r.total.vcpus)
        .bind(r.total.memory_mib)
        .bind(r.total.disk_gib)
        .bind(r.total.gpus)
        .bind(l.vcpus)
        .bind(l.memory_mib)
        .bind(l.disk_gib)
        .bind(r.cpu_overcommit)
        .bind(r.memory_overcommit)
        .bind(r.disk_overcommit)
}

/// Inserts host `id` with what it reports, plus `also_cols` (`, col, …`) set to `also_values`
/// (`, $17, …`, numbered from `$17`; `$3` is the time) bound to `also_binds` in order.
async fn insert(
    conn: &mut Conn,
    id: HostId,
    r: &HostReport,
    also_cols: &str,
    also_values: &str,
    also_binds: &[&str],
) -> Result<()> {
    let sql = format!(
        "INSERT INTO hosts (id, name, description, time_created, time_modified, driver, accelerator, \
         accelerator_reason, vcpus_total, memory_mib_total, disk_gib_total, gpus_total, vcpus_limit, \
         memory_mib_limit, disk_gib_limit, cpu_overcommit, memory_overcommit, disk_overcommit{also_cols}) \
         VALUES ($1, $2, '', $3, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16{also_values})"
    );
    let mut q = bind_report(sqlx::query(&sql).bind(id.to_string()).bind(&r.name).bind(ts(now())), r);
    for b in also_binds {
        q = q.bind(*b);
    }
    q.execute(&mut *conn).await.map_err(crate::map_unique)?;
    Ok(())
}

/// Refreshes what host `id` reports (driver, accelerator, capacity, limits, overcommit; its
/// reservations are kept) and `also`: more assignments, numbered from `$15`, bound to `also_binds`
/// in order (`$1` is the time). Returns the rows changed (0: no live host has the id).
async fn refresh(conn: &mut Conn, id: HostId, r: &HostReport, also: &str, also_binds: &[&str]) -> Result<u64> {
    let sql = format!(
        "UPDATE hosts SET time_modified = $1, driver = $2, accelerator = $3, accelerator_reason = $4, \
         vcpus_total = $5, memory_mib_total = $6, disk_gib_total = $7, gpus_total = $8, \
         vcpus_limit = $9, memory_mib_limit = $10, disk_gib_limit = $11, \
         cpu_overcommit = $12, memory_overcommit = $13, disk_overcommit = $14{also} \
         WHERE id = ${} AND time_deleted IS NULL",
        15 + also_binds.len()
    );
    let mut q = bind_report(sqlx::query(&sql).bind(ts(now())), r);
    for b in also_binds {
        q = q.bind(*b);
    }
    Ok(q.bind(id.to_string()).execute(&mut *conn).await.map_err(crate::map_unique)?.rows_affected())
}

/// Registers the host with the stable id kept in its data directory (`DATA_DIR/host-id`), or
/// refreshes what it reports, its name included: a renamed machine (or another `--host-name`)
/// renames its row, it never becomes a second host. Its reservations are kept. Fails with
/// `Conflict` when another live host already has the name. A host in no zone (a new one, or one
/// from before zones) is put in the zone `default`, which is created if needed.
pub async fn register(conn: &mut Conn, id: HostId, r: &HostReport) -> Result<HostView> {
    if let Some(other) =
        get(conn, &NameOrId::Name(kumo_types::Name::parse(&r.name).map_err(crate::StoreError::Corrupt)?))
            .await?
            .filter(|h| h.id != id)
    {
        return Err(crate::StoreError::Conflict(format!(
            "host name '{}' is already taken by host {}; start with another --host-name",
            r.name, other.id
        )));
    }
    let updated = refresh(conn, id, r, ", name = $15", &[&r.name]).await?;
    if updated == 0 {
        insert(conn, id, r, "", "", &[]).await?;
    }
    let zoneless = sqlx::query("SELECT 1 FROM hosts WHERE id = $1 AND zone_id IS NULL")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?
        .is_some();
    if zoneless {
        let zone = crate::zones::ensure(conn, crate::zones::DEFAULT).await?;
        set_zone(conn, id, zone).await?;
    }
    get(conn, &NameOrId::Id(id.get())).await?.ok_or_else(|| crate::StoreError::Corrupt("host vanished".into()))
}

/// A host that joined the cluster over the network (`kumod agent` with a join token).
pub struct JoinedHost<'a> {
    pub id: HostId,
    pub report: &'a HostReport,
    pub zone: ZoneId,
    /// The agent's API base URL (`https://10.77.0.2:7401`).
    pub address: &'a str,
    /// SHA-256 of the agent's TLS certificate, `AB:CD:…`.
    pub fingerprint: &'a str,
    /// The bearer controllers present to the agent.
    pub agent_secret: &'a str,
    /// SHA-256 hex of the bearer the agent presents to controllers.
    pub credential_hash: &'a str,
}

/// Inserts a host that joined: role `agent`, seen now. `Conflict` when a live host has its name
/// (or its id, or its credential).
pub async fn join(conn: &mut Conn, h: &JoinedHost<'_>) -> Result<HostView> {
    let r = h.report;
    let name = kumo_types::Name::parse(&r.name).map_err(StoreError::Corrupt)?;
    if let Some(other) = get(conn, &NameOrId::Name(name)).await? {
        return Err(StoreError::Conflict(format!(
            "host name '{}' is already taken by host {}; join with another host name",
            r.name, other.id
        )));
    }
    let zone = h.zone.to_string();
    insert(
        conn,
        h.id,
        r,
        ", zone_id, role, address, cert_fingerprint, agent_secret, credential_hash, last_seen",
        ", $17, 'agent', $18, $19, $20, $21, $3",
        &[&zone, h.address, h.fingerprint, h.agent_secret, h.credential_hash],
    )
    .await?;
    get(conn, &NameOrId::Id(h.id.get())).await?.ok_or_else(|| StoreError::Corrupt("host vanished".into()))
}

/// The live host whose agent presents the bearer hashing to `credential_hash`.
pub async fn by_credential(conn: &mut Conn, credential_hash: &str) -> Result<Option<HostId>> {
    let row = sqlx::query("SELECT id FROM hosts WHERE credential_hash = $1 AND time_deleted IS NULL")
        .bind(credential_hash)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| parse_uuid(&r.try_get::<String, _>(0)?)).transpose()
}

/// An agent's heartbeat: refreshes what it reports (capacity, limits; its reservations are
/// kept), its address and certificate fingerprint, and `last_seen`. `Conflict` when no live host
/// has the id (it was deleted).
pub async fn heartbeat(conn: &mut Conn, id: HostId, r: &HostReport, address: &str, fingerprint: &str) -> Result<()> {
    let updated =
        refresh(conn, id, r, ", last_seen = $1, address = $15, cert_fingerprint = $16", &[address, fingerprint])
            .await?;
    if updated == 0 {
        return Err(StoreError::Conflict(format!("host {id} is not a live host")));
    }
    Ok(())
}

/// Renews the leases of hosts whose report has not changed (their heartbeats, gathered into one
/// statement): `last_seen` becomes now. Returns the ids that are live hosts (the others were
/// deleted: their heartbeat is refused).
pub async fn renew(conn: &mut Conn, ids: &[HostId]) -> Result<Vec<HostId>> {
    let mut live = Vec::with_capacity(ids.len());
    let at = ts(now());
    // Well under every database's limit of bound values.
    for chunk in ids.chunks(1000) {
        let marks: Vec<String> = (0..chunk.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "UPDATE hosts SET last_seen = $1 WHERE time_deleted IS NULL AND id IN ({}) RETURNING id",
            marks.join(", ")
        );
        let mut q = sqlx::query(&sql).bind(&at);
        for id in chunk {
            q = q.bind(id.to_string());
        }
        for r in q.fetch_all(&mut *conn).await? {
            live.push(parse_uuid(&r.try_get::<String, _>(0)?)?);
        }
    }
    Ok(live)
}

/// Removes agent host `id` from the cloud when nothing holds capacity on it (every counter at 0:
/// no instance, no move under way); its credential stops working at once. The condition is on
/// the row that every reservation updates, so a removal and a concurrent reservation are
/// serialised by the row (PostgreSQL re-checks the condition on the row a committed reservation
/// left): one of them wins, never both. False when the host is not a live agent host with
/// nothing on it.
pub async fn remove(conn: &mut Conn, id: HostId) -> Result<bool> {
    let t = ts(now());
    let done = sqlx::query(
        "UPDATE hosts SET time_deleted = $1, time_modified = $1 WHERE id = $2 AND time_deleted IS NULL \
         AND role = 'agent' AND vcpus_used = 0 AND memory_mib_used = 0 AND disk_gib_used = 0 AND gpus_used = 0",
    )
    .bind(&t)
    .bind(id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records that agent host `id`'s agent said it is stopping (a clean shutdown): the host is
/// `down` until its next heartbeat.
pub async fn leave(conn: &mut Conn, id: HostId) -> Result<bool> {
    let done = sqlx::query("UPDATE hosts SET time_left = $1 WHERE id = $2 AND time_deleted IS NULL AND role = 'agent'")
        .bind(ts(now()))
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces a live host's labels; false when there is no such host.
pub async fn set_labels(conn: &mut Conn, id: HostId, labels: &kumo_types::Labels) -> Result<bool> {
    let done = sqlx::query("UPDATE hosts SET labels = $1, time_modified = $2 WHERE id = $3 AND time_deleted IS NULL")
        .bind(crate::labels_to_text(labels))
        .bind(ts(now()))
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Cordons (no new instances are placed on it) or uncordons a host.
pub async fn set_cordoned(conn: &mut Conn, id: HostId, cordoned: bool) -> Result<()> {
    sqlx::query("UPDATE hosts SET cordoned = $1, time_modified = $2 WHERE id = $3 AND time_deleted IS NULL")
        .bind(i64::from(cordoned))
        .bind(ts(now()))
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// How a controller reaches an agent host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentEndpoint {
    pub id: HostId,
    pub name: String,
    /// The agent's API base URL.
    pub address: String,
    /// SHA-256 of its TLS certificate, `AB:CD:…`.
    pub fingerprint: String,
    /// The bearer to present to it.
    pub secret: String,
}

/// Every live agent host (role `agent`), by name.
pub async fn agent_endpoints(conn: &mut Conn) -> Result<Vec<AgentEndpoint>> {
    let rows = sqlx::query(
        "SELECT id, name, COALESCE(address, ''), COALESCE(cert_fingerprint, ''), COALESCE(agent_secret, '') \
         FROM hosts WHERE role = 'agent' AND time_deleted IS NULL ORDER BY name",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(AgentEndpoint {
                id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                name: r.try_get(1)?,
                address: r.try_get(2)?,
                fingerprint: r.try_get(3)?,
                secret: r.try_get(4)?,
            })
        })
        .collect()
}

/// Puts a host in a zone.
pub async fn set_zone(conn: &mut Conn, id: HostId, zone: ZoneId) -> Result<()> {
    sqlx::query("UPDATE hosts SET zone_id = $1 WHERE id = $2")
        .bind(zone.to_string())
        .bind(id.to_string())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The host row a data directory from before host ids (no `DATA_DIR/host-id` yet) adopts: the
/// live host named `name`, else the only live host (a renamed single machine), else none.
pub async fn adoptable(conn: &mut Conn, name: &str) -> Result<Option<HostId>> {
    let rows = sqlx::query("SELECT id, name FROM hosts WHERE time_deleted IS NULL").fetch_all(&mut *conn).await?;
    let mut hosts = Vec::new();
    for r in &rows {
        hosts.push((parse_uuid(&r.try_get::<String, _>(0)?)?, r.try_get::<String, _>(1)?));
    }
    if let Some((id, _)) = hosts.iter().find(|(_, n)| n == name) {
        return Ok(Some(*id));
    }
    Ok(if hosts.len() == 1 { Some(hosts[0].0) } else { None })
}

pub async fn get(conn: &mut Conn, sel: &NameOrId) -> Result<Option<HostView>> {
    lookup::get(conn, (), sel).await
}

lookup::impl_lookup!(HostView: COLS FROM "h", Global => (), from_row);

pub async fn list(conn: &mut Conn, req: &PageRequest) -> Result<ResultsPage<HostView>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE h.time_deleted IS NULL");
    page::fetch(conn, &sql, &[], "h", req, from_row).await
}

/// Every live host, for the scheduler: with its zone, role, cordon flag and last heartbeat (its
/// `state` is the stored one; apply `kumo_control::app::hosts::state` for the deadline).
pub async fn all(conn: &mut Conn) -> Result<Vec<HostView>> {
    let sql = format!("SELECT {COLS} {FROM} WHERE h.time_deleted IS NULL ORDER BY h.name");
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}

/// Takes host `id`'s row for the caller's transaction unless another transaction holds it
/// (PostgreSQL `FOR UPDATE SKIP LOCKED`); false when another does. SQLite has a single writer:
/// always true there.
pub async fn lock_if_free(conn: &mut Conn, id: HostId) -> Result<bool> {
    if !crate::is_postgres(conn) {
        return Ok(true);
    }
    let row = sqlx::query("SELECT id FROM hosts WHERE id = $1 FOR UPDATE SKIP LOCKED")
        .bind(id.to_string())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.is_some())
}

/// The `limit` live, uncordoned hosts (of `zone`, if given) with the most free memory, then
/// vCPUs, that can take `want` — best first, ties by name, as the scheduler ranks them — with
/// their stored state (apply `kumo_control::app::hosts::state` for the deadline). What a create
/// reads instead of [`all`] at thousands of hosts: the best few, not every row.
pub async fn roomiest(conn: &mut Conn, zone: Option<&str>, want: Resources, limit: i64) -> Result<Vec<HostView>> {
    let zone_filter = if zone.is_some() { " AND z.name = $6" } else { "" };
    let sql = format!(
        "SELECT {COLS} {FROM} WHERE h.time_deleted IS NULL AND h.cordoned = 0 \
         AND h.vcpus_used + $1 <= h.vcpus_limit AND h.memory_mib_used + $2 <= h.memory_mib_limit \
         AND h.disk_gib_used + $3 <= h.disk_gib_limit AND h.gpus_used + $4 <= h.gpus_total{zone_filter} \
         ORDER BY h.memory_mib_limit - h.memory_mib_used DESC, h.vcpus_limit - h.vcpus_used DESC, h.name \
         LIMIT $5"
    );
    let mut q =
        sqlx::query(&sql).bind(want.vcpus).bind(want.memory_mib).bind(want.disk_gib).bind(want.gpus).bind(limit);
    if let Some(z) = zone {
        q = q.bind(z);
    }
    let rows = q.fetch_all(&mut *conn).await?;
    rows.iter().map(from_row).collect()
}

/// Reserves `r` on the host if it fits under every limit. Returns false (and changes nothing)
/// when it does not fit.
pub async fn reserve(conn: &mut Conn, host_id: HostId, r: Resources) -> Result<bool> {
    let res = sqlx::query(
        "UPDATE hosts SET vcpus_used = vcpus_used + $1, memory_mib_used = memory_mib_used + $2, \
         disk_gib_used = disk_gib_used + $3, gpus_used = gpus_used + $4 \
         WHERE id = $5 AND time_deleted IS NULL AND vcpus_used + $1 <= vcpus_limit \
         AND memory_mib_used + $2 <= memory_mib_limit AND disk_gib_used + $3 <= disk_gib_limit \
         AND gpus_used + $4 <= gpus_total",
    )
    .bind(r.vcpus)
    .bind(r.memory_mib)
    .bind(r.disk_gib)
    .bind(r.gpus)
    .bind(host_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(res.rows_affected() == 1)
}

/// Gives back a reservation.
pub async fn release(conn: &mut Conn, host_id: HostId, r: Resources) -> Result<()> {
    sqlx::query(
        "UPDATE hosts SET vcpus_used = vcpus_used - $1, memory_mib_used = memory_mib_used - $2, \
         disk_gib_used = disk_gib_used - $3, gpus_used = gpus_used - $4 WHERE id = $5",
    )
    .bind(r.vcpus)
    .bind(r.memory_mib)
    .bind(r.disk_gib)
    .bind(r.gpus)
    .bind(host_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(())
}
