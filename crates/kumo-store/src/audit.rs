//! The audit log: one append-only row per mutating API request. Rows are only ever inserted, and
//! deleted by retention (`prune`); nothing updates them.

use crate::{new_id, page, parse_ts, parse_uuid, ts, Conn, Result};
use chrono::{DateTime, Utc};
use kumo_types::page::PageRequest;
use kumo_types::{AuditEntryId, AuditEntryView, ProjectId, ResultsPage, TokenId, UserId};
use sqlx::any::AnyRow;
use sqlx::Row;

/// An entry to record.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub time: DateTime<Utc>,
    pub request_id: String,
    pub actor: String,
    pub user_id: Option<UserId>,
    pub token_id: Option<TokenId>,
    pub source_address: String,
    pub method: String,
    pub path: String,
    pub operation: String,
    pub project_id: Option<ProjectId>,
    pub status: u16,
    pub result: String,
}

pub async fn record(conn: &mut Conn, e: &NewAuditEntry) -> Result<()> {
    sqlx::query(
        "INSERT INTO audit_log (id, time_created, request_id, actor, user_id, token_id, source_address, method, \
         path, operation, project_id, status, result) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
    )
    .bind(new_id::<AuditEntryId>().to_string())
    .bind(ts(e.time))
    .bind(&e.request_id)
    .bind(&e.actor)
    .bind(e.user_id.map(|u| u.to_string()))
    .bind(e.token_id.map(|u| u.to_string()))
    .bind(&e.source_address)
    .bind(&e.method)
    .bind(&e.path)
    .bind(&e.operation)
    .bind(e.project_id.map(|u| u.to_string()))
    .bind(i64::from(e.status))
    .bind(&e.result)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Filters of the audit log query (all optional, combined with AND).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    pub user_id: Option<UserId>,
    pub project_id: Option<ProjectId>,
    pub operation: Option<String>,
}

fn opt_uuid<I: From<uuid::Uuid>>(r: &AnyRow, i: usize) -> Result<Option<I>> {
    r.try_get::<Option<String>, _>(i)?.map(|s| parse_uuid(&s)).transpose()
}

fn from_row(r: &AnyRow) -> Result<AuditEntryView> {
    Ok(AuditEntryView {
        id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        time: parse_ts(&r.try_get::<String, _>(1)?)?,
        request_id: r.try_get(2)?,
        actor: r.try_get(3)?,
        user_id: opt_uuid(r, 4)?,
        token_id: opt_uuid(r, 5)?,
        source_address: r.try_get(6)?,
        method: r.try_get(7)?,
        path: r.try_get(8)?,
        operation: r.try_get(9)?,
        project_id: opt_uuid(r, 10)?,
        status: u16::try_from(r.try_get::<i64, _>(11)?).unwrap_or(0),
        result: r.try_get(12)?,
    })
}

/// Entries matching `f`, oldest first (id order: ids are time-ordered), whatever `sort_by` says.
pub async fn list(conn: &mut Conn, f: &AuditFilter, req: &PageRequest) -> Result<ResultsPage<AuditEntryView>> {
    let mut sql = String::from(
        "SELECT id, time_created, request_id, actor, user_id, token_id, source_address, method, path, operation, \
         project_id, status, result FROM audit_log WHERE 1 = 1",
    );
    let mut binds: Vec<String> = Vec::new();
    let mut cond = |sql: &mut String, clause: &str, value: String| {
        binds.push(value);
        sql.push_str(&format!(" AND {clause} ${}", binds.len()));
    };
    if let Some(t) = f.since {
        cond(&mut sql, "time_created >=", ts(t));
    }
    if let Some(t) = f.until {
        cond(&mut sql, "time_created <", ts(t));
    }
    if let Some(u) = f.user_id {
        cond(&mut sql, "user_id =", u.to_string());
    }
    if let Some(p) = f.project_id {
        cond(&mut sql, "project_id =", p.to_string());
    }
    if let Some(o) = &f.operation {
        cond(&mut sql, "operation =", o.clone());
    }
    page::fetch_by_id(conn, &sql, binds, "id", req, from_row, |e| e.id.into()).await
}

/// Deletes entries older than `before` (retention). Returns how many.
pub async fn prune(conn: &mut Conn, before: DateTime<Utc>) -> Result<u64> {
    let r = sqlx::query("DELETE FROM audit_log WHERE time_created < $1").bind(ts(before)).execute(&mut *conn).await?;
    Ok(r.rows_affected())
}
