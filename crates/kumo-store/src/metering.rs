//! Metering's read model: the state each resource carries across a month's start.
//!
//! Usage of a window `[from, to)` needs every event in the window and, per resource, its state at
//! `from`. That state is fixed by a few of its events before `from`: its last event, and its last
//! event setting each field the fold keeps ([`Carry`]: state, size, existence). The fold in
//! `kumo-control` keeps, per field, the value of the last event that sets it, so replaying these
//! few events gives the same state at `from` as replaying the whole history.
//!
//! Finding them from `events` alone costs a seek per resource that ever had an event (the
//! version of issue 11 did that: O(resources of the project's whole life), and PostgreSQL did not
//! plan it as an index walk). Instead, per (project, resource type, [`Carry`] list, month), the
//! table `metering_carry` (migration 0013) holds those events as of the month's start, for the
//! resources that can still be billed (see [`Carry::ends`]), and `metering_carry_months` says
//! that the month's set is there. A usage read is then two range reads — the carry of the month
//! that holds `from` and the events from that month's start to `to` — and a fold of those rows:
//! O(live resources + events of the month), whatever the project's age.
//!
//! The carry of a month is derived data, never the source of a number:
//! - **built on first need** from the latest earlier month's carry and the events since (from the
//!   project's first event when there is none), and stored in one transaction;
//! - **rebuilt when missing**: a crash loses at most a set not yet committed;
//! - **dropped when stale**: an event recorded with a past time ([`crate::events::record_at`],
//!   imports and tests) deletes the sets of the months after it; events recorded now cannot change
//!   a stored set, because a month's set is only stored an hour after the month began
//!   ([`SETTLED`]) — until then it is computed and used, not stored;
//! - **checked when stored**: the build counts the events it read; the transaction that stores the
//!   set counts them again (after `LOCK TABLE` on PostgreSQL, which [`invalidate`] takes too) and
//!   stores nothing if a backdated event slipped in between.

use crate::events::{EventState, MeterRow};
use crate::fast::Cols;
use crate::{is_postgres, now, parse_ts, parse_uuid, ts, Conn, Result, Store};
use chrono::{DateTime, Datelike, TimeZone, Utc};
use kumo_types::ProjectId;
use std::collections::BTreeMap;
use uuid::Uuid;

/// What metering needs to know of a resource's history before a window, besides its last event:
/// the last event before the window matching each of these is read with the window's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carry {
    /// The last state change (`to_state` set): an instance's state.
    State,
    /// The last `created`/`deleted` (by kind, or `to_state` `deleted`): whether a stored resource
    /// exists.
    Lifecycle,
    /// The last `created`/`deleted` by kind: whether a floating IP is held.
    Held,
    /// The last event whose detail has this key (an instance's size: `disk_gib`; a volume's:
    /// `size_gib`; a backup's: `bytes_stored`). The key must be a plain identifier.
    DetailWith(&'static str),
}

impl Carry {
    fn matches(self, e: &Raw) -> bool {
        match self {
            Carry::State => e.to_state.is_some(),
            Carry::Lifecycle => {
                matches!(e.kind.as_str(), "created" | "deleted") || e.to_state.as_deref() == Some("deleted")
            }
            Carry::Held => matches!(e.kind.as_str(), "created" | "deleted"),
            Carry::DetailWith(key) => e.detail.as_deref().is_some_and(|d| {
                // `"key"` anywhere in the JSON text, as the SQL `LIKE '%"key"%'` of before.
                d.match_indices(key).any(|(i, _)| d[..i].ends_with('"') && d[i + key.len()..].starts_with('"'))
            }),
        }
    }

    /// Whether `e`, the last event matching this, ends what can be billed of the resource: an
    /// instance `destroyed`, a stored resource deleted, a floating IP released. Nothing leads out of
    /// those (the state machines have no transition out of `destroyed` or `deleted`; a resource is
    /// created once), so the resource adds nothing to any later window and is not carried further.
    /// For a floating IP this is exact whatever follows: `held_intervals` only opens on a later
    /// `created`, with or without the carried `deleted`.
    fn ends(self, e: &Raw) -> bool {
        match self {
            Carry::State => e.to_state.as_deref() == Some("destroyed"),
            Carry::Lifecycle => e.kind == "deleted" || e.to_state.as_deref() == Some("deleted"),
            Carry::Held => e.kind == "deleted",
            Carry::DetailWith(_) => false,
        }
    }

    fn name(self) -> String {
        match self {
            Carry::State => "state".into(),
            Carry::Lifecycle => "lifecycle".into(),
            Carry::Held => "held".into(),
            Carry::DetailWith(key) => {
                assert!(key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "detail key {key:?}");
                format!("detail:{key}")
            }
        }
    }
}

/// The `spec` column: the rule's version and what is carried. A change of either reads and builds
/// sets of its own.
fn spec(carry: &[Carry]) -> String {
    format!("v1:{}", carry.iter().map(|c| c.name()).collect::<Vec<_>>().join(","))
}

/// How long after a month's start its carry may be stored (see the module docs): longer than any
/// transaction that read the clock before the month began can still be open.
pub const SETTLED: chrono::TimeDelta = chrono::TimeDelta::hours(1);

/// Start of the calendar month (UTC) that contains `t`.
fn month_start(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0).single().unwrap_or(t)
}

/// An event as the read model handles it (state still as text).
#[derive(Debug, Clone)]
struct Raw {
    resource_id: Uuid,
    id: Uuid,
    time: DateTime<Utc>,
    resource_name: String,
    kind: String,
    to_state: Option<String>,
    detail: Option<String>,
}

impl Raw {
    fn key(&self) -> (Uuid, DateTime<Utc>, Uuid) {
        (self.resource_id, self.time, self.id)
    }
}

/// Columns: resource_id, resource_name, time_created, kind, to_state, detail, id.
fn raw(r: &dyn Cols) -> Result<Raw> {
    Ok(Raw {
        resource_id: parse_uuid(&r.text(0)?)?,
        resource_name: r.text(1)?,
        time: parse_ts(&r.text(2)?)?,
        kind: r.text(3)?,
        to_state: r.opt_text(4)?,
        detail: r.opt_text(5)?,
        id: parse_uuid(&r.text(6)?)?,
    })
}

/// A row of [`CARRY_SQL`]: `None` for a month whose set is stored and empty.
fn carry_row(r: &dyn Cols) -> Result<Option<Raw>> {
    match r.opt_text(0)? {
        None => Ok(None),
        Some(_) => raw(r).map(Some),
    }
}

/// The stored set of a month: binds `$1` project, `$2` resource type, `$3` spec, `$4` month.
/// No row: not stored; one row of NULLs: stored and empty.
const CARRY_SQL: &str = "SELECT c.resource_id, c.resource_name, c.time_created, c.kind, c.to_state, c.detail, \
     c.event_id FROM metering_carry_months m LEFT JOIN metering_carry c ON c.project_id = m.project_id \
     AND c.resource_type = m.resource_type AND c.spec = m.spec AND c.month = m.month \
     WHERE m.project_id = $1 AND m.resource_type = $2 AND m.spec = $3 AND m.month = $4";

/// Events of a type in `[$3, $4)`, in no particular order (sorted in memory: a database sort of
/// tens of thousands of wide rows spills to disk on PostgreSQL's default `work_mem`).
const EVENTS_SQL: &str = "SELECT resource_id, resource_name, time_created, kind, to_state, detail, id FROM events \
     WHERE project_id = $1 AND resource_type = $2 AND time_created >= $3 AND time_created < $4";

const COUNT_SQL: &str = "SELECT COUNT(*) FROM events \
     WHERE project_id = $1 AND resource_type = $2 AND time_created >= $3 AND time_created < $4";

/// The latest month before `$4` with a stored set.
const PREVIOUS_SQL: &str = "SELECT MAX(month) FROM metering_carry_months \
     WHERE project_id = $1 AND resource_type = $2 AND spec = $3 AND month < $4";

/// Per resource, its carried events, by time.
type Carried = BTreeMap<Uuid, Vec<Raw>>;

/// The carry after `events` (all later than those of `base`, in any order): per resource, its
/// last event and its last one matching each of `carry`, without the resources that ended.
fn advance(mut base: Carried, mut events: Vec<Raw>, carry: &[Carry]) -> Carried {
    events.sort_unstable_by_key(Raw::key);
    let mut it = events.into_iter().peekable();
    while let Some(first) = it.next() {
        let rid = first.resource_id;
        let mut rows = base.remove(&rid).unwrap_or_default();
        rows.push(first);
        while let Some(e) = it.next_if(|e| e.resource_id == rid) {
            rows.push(e);
        }
        base.insert(rid, picks(rows, carry));
    }
    base.retain(|_, rows| !ended(rows, carry));
    base
}

/// Of one resource's events, the last one and the last matching each of `carry`, by time.
fn picks(mut rows: Vec<Raw>, carry: &[Carry]) -> Vec<Raw> {
    rows.sort_unstable_by_key(Raw::key);
    let mut keep = vec![false; rows.len()];
    if let Some(last) = keep.last_mut() {
        *last = true;
    }
    for c in carry {
        if let Some(i) = rows.iter().rposition(|r| c.matches(r)) {
            keep[i] = true;
        }
    }
    rows.into_iter().zip(keep).filter_map(|(r, k)| k.then_some(r)).collect()
}

fn ended(rows: &[Raw], carry: &[Carry]) -> bool {
    carry.iter().any(|c| rows.iter().rev().find(|r| c.matches(r)).is_some_and(|r| c.ends(r)))
}

/// The rows of a window: the carry at `from` (from the carry at the month's start and the
/// month's events before `from`), then the window's events, by resource, time and id.
fn window_rows(
    resource_type: &str,
    month: Carried,
    events: Vec<Raw>,
    carry: &[Carry],
    from: DateTime<Utc>,
) -> Result<Vec<MeterRow>> {
    let (before, window): (Vec<Raw>, Vec<Raw>) = events.into_iter().partition(|e| e.time < from);
    let at_from = if before.is_empty() { month } else { advance(month, before, carry) };
    let mut rows: Vec<Raw> = at_from.into_values().flatten().chain(window).collect();
    rows.sort_unstable_by_key(Raw::key);
    rows.into_iter()
        .map(|r| {
            Ok(MeterRow {
                resource_id: r.resource_id,
                resource_name: r.resource_name,
                time: r.time,
                kind: r.kind,
                to_state: r.to_state.map(|s| EventState::parse(resource_type, &s)).transpose()?,
                detail: r.detail,
            })
        })
        .collect()
}

/// What identifies one stored set, and the binds of the queries about it.
struct Set<'a> {
    project_id: String,
    resource_type: &'a str,
    spec: String,
    month: DateTime<Utc>,
}

impl Set<'_> {
    fn binds(&self, month: &str) -> Vec<String> {
        vec![self.project_id.clone(), self.resource_type.to_string(), self.spec.clone(), month.to_string()]
    }

    fn events_binds(&self, from: &str, to: DateTime<Utc>) -> Vec<String> {
        vec![self.project_id.clone(), self.resource_type.to_string(), from.to_string(), ts(to)]
    }

    /// Whether the set may be stored now (see [`SETTLED`]).
    fn settled(&self) -> bool {
        self.month + SETTLED <= now()
    }
}

/// A set computed from an earlier one and the events since, and what it took, to check the
/// inputs again when storing it.
struct Built {
    carried: Carried,
    /// The earlier month's start (text), "" when built from the project's first event.
    previous: String,
    events: i64,
}

/// Groups the rows of [`CARRY_SQL`]: `None` when the set is not stored.
fn stored(rows: Vec<Option<Raw>>) -> Option<Carried> {
    if rows.is_empty() {
        return None;
    }
    let mut out = Carried::new();
    for r in rows.into_iter().flatten() {
        out.entry(r.resource_id).or_default().push(r);
    }
    for rows in out.values_mut() {
        rows.sort_unstable_by_key(Raw::key);
    }
    Some(out)
}

async fn conn_all<T>(
    conn: &mut Conn,
    sql: &str,
    binds: &[String],
    decode: impl Fn(&dyn Cols) -> Result<T>,
) -> Result<Vec<T>> {
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(b.as_str());
    }
    let rows = q.fetch_all(&mut *conn).await?;
    rows.iter().map(|r| decode(r)).collect()
}

async fn previous_conn(conn: &mut Conn, set: &Set<'_>) -> Result<String> {
    let p: Option<String> =
        conn_all(conn, PREVIOUS_SQL, &set.binds(&ts(set.month)), |r| r.opt_text(0)).await?.into_iter().flatten().next();
    Ok(p.unwrap_or_default())
}

/// Builds the set of `set.month` on `conn`.
async fn build_conn(conn: &mut Conn, set: &Set<'_>, carry: &[Carry]) -> Result<Built> {
    let previous = previous_conn(conn, set).await?;
    let base = stored(conn_all(conn, CARRY_SQL, &set.binds(&previous), carry_row).await?).unwrap_or_default();
    let events = conn_all(conn, EVENTS_SQL, &set.events_binds(&previous, set.month), raw).await?;
    let n = events.len() as i64;
    Ok(Built { carried: advance(base, events, carry), previous, events: n })
}

/// Builds the set of `set.month` on the typed read path.
async fn build_fast(store: &Store, set: &Set<'_>, carry: &[Carry]) -> Result<Built> {
    let previous = store
        .fast
        .one(PREVIOUS_SQL, &set.binds(&ts(set.month)), |r| r.opt_text(0))
        .await?
        .flatten()
        .unwrap_or_default();
    let (base, events) = store
        .fast
        .pair((CARRY_SQL, &set.binds(&previous)), (EVENTS_SQL, &set.events_binds(&previous, set.month)), carry_row, raw)
        .await?;
    let n = events.len() as i64;
    Ok(Built { carried: advance(stored(base).unwrap_or_default(), events, carry), previous, events: n })
}

/// Stores a built set in the write transaction `conn`, unless its inputs changed since it was
/// built (a backdated event, or the earlier set dropped) or another writer stored it first.
/// Returns whether it was stored.
async fn store_set(conn: &mut Conn, set: &Set<'_>, built: &Built) -> Result<bool> {
    if is_postgres(conn) {
        // Serialises with `invalidate` (see the module docs).
        sqlx::query("LOCK TABLE metering_carry_months IN SHARE ROW EXCLUSIVE MODE").execute(&mut *conn).await?;
    }
    let month = ts(set.month);
    let count = conn_all(conn, COUNT_SQL, &set.events_binds(&built.previous, set.month), |r| r.int(0)).await?;
    if count.first().copied() != Some(built.events) {
        return Ok(false);
    }
    if !built.previous.is_empty() {
        let still = conn_all(
            conn,
            "SELECT COUNT(*) FROM metering_carry_months \
             WHERE project_id = $1 AND resource_type = $2 AND spec = $3 AND month = $4",
            &set.binds(&built.previous),
            |r| r.int(0),
        )
        .await?;
        if still.first().copied() != Some(1) {
            return Ok(false);
        }
    }
    let added = sqlx::query(
        "INSERT INTO metering_carry_months (project_id, resource_type, spec, month, time_built, resources) \
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(set.project_id.as_str())
    .bind(set.resource_type)
    .bind(set.spec.as_str())
    .bind(month.as_str())
    .bind(ts(now()))
    .bind(built.carried.len() as i64)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if added == 0 {
        return Ok(false);
    }
    let rows: Vec<&Raw> = built.carried.values().flatten().collect();
    const ROWS: usize = 200;
    for chunk in rows.chunks(ROWS) {
        let mut sql = String::from(
            "INSERT INTO metering_carry (project_id, resource_type, spec, month, resource_id, event_id, \
             resource_name, time_created, kind, to_state, detail) VALUES ",
        );
        for k in 0..chunk.len() {
            let b = 4 + k * 7;
            if k > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "($1, $2, $3, $4, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7
            ));
        }
        let mut q = sqlx::query(&sql)
            .bind(set.project_id.as_str())
            .bind(set.resource_type)
            .bind(set.spec.as_str())
            .bind(month.as_str());
        for r in chunk {
            q = q
                .bind(r.resource_id.to_string())
                .bind(r.id.to_string())
                .bind(r.resource_name.as_str())
                .bind(ts(r.time))
                .bind(r.kind.as_str())
                .bind(r.to_state.as_deref())
                .bind(r.detail.as_deref());
        }
        q.execute(&mut *conn).await?;
    }
    Ok(true)
}

/// Drops the stored sets of a project's months after `at` (an event of `resource_type` was
/// recorded at that past time). In the event's transaction.
pub(crate) async fn invalidate(
    conn: &mut Conn,
    project_id: ProjectId,
    resource_type: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    if is_postgres(conn) {
        sqlx::query("LOCK TABLE metering_carry_months IN SHARE ROW EXCLUSIVE MODE").execute(&mut *conn).await?;
    }
    for table in ["metering_carry_months", "metering_carry"] {
        sqlx::query(&format!("DELETE FROM {table} WHERE project_id = $1 AND resource_type = $2 AND month > $3"))
            .bind(project_id.to_string())
            .bind(resource_type)
            .bind(ts(at))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

fn set_of<'a>(project_id: ProjectId, resource_type: &'a str, carry: &[Carry], from: DateTime<Utc>) -> Set<'a> {
    Set { project_id: project_id.to_string(), resource_type, spec: spec(carry), month: month_start(from) }
}

/// The input of metering for the window `[from, to)`, by resource then time: every event of
/// `resource_type` in the window, preceded, for each resource that can still be billed at `from`
/// and has events before it, by its last event before `from` and its last one matching each of
/// `carry` (the resources that ended before `from` are left out, see [`Carry::ends`]).
///
/// For a fold that keeps, per field, the value of the last event that sets it (state, size,
/// existence), replaying these few events gives the same state at `from` as replaying the whole
/// history — and metering clips everything before `from` away — so usage is what
/// [`crate::events::for_metering`] gives, without reading the project's history: reads the
/// stored carry of the month holding `from` (see the module docs) and the events from that
/// month's start to `to`.
///
/// `conn` must be a write transaction: a carry built here is stored in it.
pub async fn for_metering_window(
    conn: &mut Conn,
    project_id: ProjectId,
    resource_type: &str,
    carry: &[Carry],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<MeterRow>> {
    let set = set_of(project_id, resource_type, carry, from);
    let month = ts(set.month);
    let found = stored(conn_all(conn, CARRY_SQL, &set.binds(&month), carry_row).await?);
    let events = conn_all(conn, EVENTS_SQL, &set.events_binds(&month, to.max(set.month)), raw).await?;
    let carried = match found {
        Some(c) => c,
        None => {
            let built = build_conn(conn, &set, carry).await?;
            if set.settled() {
                store_set(conn, &set, &built).await?;
            }
            built.carried
        }
    };
    window_rows(resource_type, carried, events, carry, from)
}

/// [`for_metering_window`] on the typed read path (see `crate::fast`); a carry built here is
/// stored in a write transaction of its own (a failure to store it is logged: the result stands).
pub async fn fast_for_metering_window(
    store: &Store,
    project_id: ProjectId,
    resource_type: &str,
    carry: &[Carry],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<MeterRow>> {
    let set = set_of(project_id, resource_type, carry, from);
    let month = ts(set.month);
    let (found, events) = store
        .fast
        .pair(
            (CARRY_SQL, &set.binds(&month)),
            (EVENTS_SQL, &set.events_binds(&month, to.max(set.month))),
            carry_row,
            raw,
        )
        .await?;
    let carried = match stored(found) {
        Some(c) => c,
        None => {
            let built = build_fast(store, &set, carry).await?;
            if set.settled() {
                let save = async {
                    let mut tx = store.begin().await?;
                    let done = store_set(&mut tx, &set, &built).await?;
                    tx.commit().await?;
                    Ok::<_, crate::StoreError>(done)
                };
                if let Err(e) = save.await {
                    tracing::warn!(resource_type, month = %month, "could not store the metering carry: {e}");
                }
            }
            built.carried
        }
    };
    window_rows(resource_type, carried, events, carry, from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(rid: u128, t: i64, kind: &str, state: Option<&str>, detail: Option<&str>) -> Raw {
        Raw {
            resource_id: Uuid::from_u128(rid),
            id: Uuid::now_v7(),
            time: DateTime::from_timestamp(1_790_000_000 + t, 0).unwrap(),
            resource_name: "r".into(),
            kind: kind.into(),
            to_state: state.map(String::from),
            detail: detail.map(String::from),
        }
    }

    #[test]
    fn a_month_is_stored_only_once_settled() {
        let set = |month| Set { project_id: String::new(), resource_type: "instance", spec: String::new(), month };
        assert!(!set(now() - chrono::TimeDelta::minutes(30)).settled());
        assert!(set(now() - SETTLED - chrono::TimeDelta::seconds(1)).settled());
    }

    #[test]
    fn detail_keys_match_as_whole_json_keys() {
        let e = ev(1, 0, "x", None, Some(r#"{"size_gib":3,"bytes_stored_x":1}"#));
        assert!(Carry::DetailWith("size_gib").matches(&e));
        assert!(!Carry::DetailWith("bytes_stored").matches(&e));
        assert!(!Carry::DetailWith("gib").matches(&e));
    }

    #[test]
    fn advancing_in_steps_equals_advancing_at_once_and_ended_resources_drop() {
        let carry = [Carry::State, Carry::DetailWith("disk_gib")];
        let size = Some(r#"{"disk_gib":5}"#);
        let all = vec![
            ev(1, 0, "created", Some("creating"), size),
            ev(1, 10, "state_changed", Some("running"), None),
            ev(1, 20, "note", None, None),
            ev(2, 5, "created", Some("creating"), size),
            ev(2, 15, "state_changed", Some("destroyed"), size),
            ev(3, 30, "created", Some("creating"), size),
        ];
        let once = advance(Carried::new(), all.clone(), &carry);
        let steps = advance(advance(Carried::new(), all[..2].to_vec(), &carry), all[2..].to_vec(), &carry);
        let ids = |c: &Carried| c.values().flatten().map(|r| r.id).collect::<Vec<_>>();
        assert_eq!(ids(&once), ids(&steps));
        // Resource 1: its last event (the note), its last state (running), its last size (created).
        assert_eq!(once[&Uuid::from_u128(1)].len(), 3);
        assert!(!once.contains_key(&Uuid::from_u128(2)), "destroyed: not carried");
        assert_eq!(once[&Uuid::from_u128(3)].len(), 1);
    }
}
