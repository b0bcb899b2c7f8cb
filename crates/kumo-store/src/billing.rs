//! Pay-as-you-go: the price catalogue (append-only history), stored invoices, budgets.
//!
//! Money is integers only: unit prices in micro-units, costs in minor units (cents).

use crate::{new_id, now, parse_ts, parse_uuid, ts, Conn, Result};
use chrono::{DateTime, Utc};
use kumo_types::{InvoiceId, PriceId, ProjectId};
use sqlx::Row;

/// One price of the catalogue, in force from `effective_from` until the next price of the same
/// kind and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceRecord {
    pub id: PriceId,
    pub kind: String,
    pub name: String,
    pub unit_price_micros: i64,
    pub effective_from: DateTime<Utc>,
}

/// Adds a price effective from `at` (the API passes now: prices are never retroactive).
pub async fn add_price(
    conn: &mut Conn,
    kind: &str,
    name: &str,
    unit_price_micros: i64,
    at: DateTime<Utc>,
) -> Result<PriceRecord> {
    let id: PriceId = new_id();
    sqlx::query(
        "INSERT INTO prices (id, kind, name, unit_price_micros, effective_from, time_created) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id.to_string())
    .bind(kind)
    .bind(name)
    .bind(unit_price_micros)
    .bind(ts(at))
    .bind(ts(now()))
    .execute(&mut *conn)
    .await?;
    Ok(PriceRecord { id, kind: kind.into(), name: name.into(), unit_price_micros, effective_from: at })
}

/// Every price ever set, by kind, name, then time.
pub async fn prices(conn: &mut Conn) -> Result<Vec<PriceRecord>> {
    let rows = sqlx::query(
        "SELECT id, kind, name, unit_price_micros, effective_from FROM prices ORDER BY kind, name, effective_from, id",
    )
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(PriceRecord {
                id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                kind: r.try_get(1)?,
                name: r.try_get(2)?,
                unit_price_micros: r.try_get(3)?,
                effective_from: parse_ts(&r.try_get::<String, _>(4)?)?,
            })
        })
        .collect()
}

/// A stored invoice line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineRecord {
    pub resource_type: String,
    pub resource_id: uuid::Uuid,
    pub resource_name: String,
    pub price_kind: String,
    pub price_name: String,
    pub quantity: i64,
    pub unit: String,
    pub unit_price_micros: i64,
    pub price_unit: String,
    pub cost_cents: i64,
    /// JSON text: the intervals that produced the line.
    pub intervals: String,
}

/// A stored invoice of a closed month.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvoiceRecord {
    pub id: InvoiceId,
    pub period: String,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub total_cents: i64,
    pub time_created: DateTime<Utc>,
    pub lines: Vec<LineRecord>,
}

/// Stores an invoice unless one exists for the period; returns the stored one either way (the
/// first writer wins, so an invoice never changes once stored).
pub async fn insert_invoice(conn: &mut Conn, project_id: ProjectId, inv: &InvoiceRecord) -> Result<InvoiceRecord> {
    if let Some(existing) = invoice(conn, project_id, &inv.period).await? {
        return Ok(existing);
    }
    // Two writers may close the same month at once (a request and the billing task): the loser keeps
    // the winner's invoice. ON CONFLICT waits for the winner to commit, and the read after it (a new
    // statement) sees the committed row on PostgreSQL; SQLite serialises writers anyway.
    let inserted = sqlx::query(
        "INSERT INTO invoices (id, project_id, period, period_start, period_end, total_cents, time_created) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (project_id, period) DO NOTHING",
    )
    .bind(inv.id.to_string())
    .bind(project_id.to_string())
    .bind(&inv.period)
    .bind(ts(inv.period_start))
    .bind(ts(inv.period_end))
    .bind(inv.total_cents)
    .bind(ts(inv.time_created))
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        return invoice(conn, project_id, &inv.period)
            .await?
            .ok_or_else(|| crate::StoreError::Corrupt(format!("invoice {} vanished after a conflict", inv.period)));
    }
    for (i, l) in inv.lines.iter().enumerate() {
        sqlx::query(
            "INSERT INTO invoice_lines (invoice_id, line_no, resource_type, resource_id, resource_name, price_kind, \
             price_name, quantity, unit, unit_price_micros, price_unit, cost_cents, intervals) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
        )
        .bind(inv.id.to_string())
        .bind(i as i64)
        .bind(&l.resource_type)
        .bind(l.resource_id.to_string())
        .bind(&l.resource_name)
        .bind(&l.price_kind)
        .bind(&l.price_name)
        .bind(l.quantity)
        .bind(&l.unit)
        .bind(l.unit_price_micros)
        .bind(&l.price_unit)
        .bind(l.cost_cents)
        .bind(&l.intervals)
        .execute(&mut *conn)
        .await?;
    }
    Ok(inv.clone())
}

/// The stored invoice of a project for a period (`YYYY-MM`), with its lines.
pub async fn invoice(conn: &mut Conn, project_id: ProjectId, period: &str) -> Result<Option<InvoiceRecord>> {
    let row = sqlx::query(
        "SELECT id, period, period_start, period_end, total_cents, time_created FROM invoices \
         WHERE project_id = $1 AND period = $2",
    )
    .bind(project_id.to_string())
    .bind(period)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(r) = row else { return Ok(None) };
    let id: InvoiceId = parse_uuid(&r.try_get::<String, _>(0)?)?;
    let lines = sqlx::query(
        "SELECT resource_type, resource_id, resource_name, price_kind, price_name, quantity, unit, \
         unit_price_micros, price_unit, cost_cents, intervals FROM invoice_lines WHERE invoice_id = $1 ORDER BY line_no",
    )
    .bind(id.to_string())
    .fetch_all(&mut *conn)
    .await?;
    let lines = lines
        .iter()
        .map(|l| {
            Ok(LineRecord {
                resource_type: l.try_get(0)?,
                resource_id: parse_uuid(&l.try_get::<String, _>(1)?)?,
                resource_name: l.try_get(2)?,
                price_kind: l.try_get(3)?,
                price_name: l.try_get(4)?,
                quantity: l.try_get(5)?,
                unit: l.try_get(6)?,
                unit_price_micros: l.try_get(7)?,
                price_unit: l.try_get(8)?,
                cost_cents: l.try_get(9)?,
                intervals: l.try_get(10)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Some(InvoiceRecord {
        id,
        period: r.try_get(1)?,
        period_start: parse_ts(&r.try_get::<String, _>(2)?)?,
        period_end: parse_ts(&r.try_get::<String, _>(3)?)?,
        total_cents: r.try_get(4)?,
        time_created: parse_ts(&r.try_get::<String, _>(5)?)?,
        lines,
    }))
}

/// A project's monthly budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetRecord {
    pub project_id: ProjectId,
    pub monthly_cents: i64,
    pub alert_at_percent: i64,
    pub last_alert_period: Option<String>,
}

pub async fn set_budget(
    conn: &mut Conn,
    project_id: ProjectId,
    monthly_cents: i64,
    alert_at_percent: i64,
) -> Result<()> {
    let t = ts(now());
    let updated = sqlx::query(
        "UPDATE budgets SET monthly_cents = $1, alert_at_percent = $2, time_modified = $3 WHERE project_id = $4",
    )
    .bind(monthly_cents)
    .bind(alert_at_percent)
    .bind(&t)
    .bind(project_id.to_string())
    .execute(&mut *conn)
    .await?;
    if updated.rows_affected() == 0 {
        sqlx::query(
            "INSERT INTO budgets (project_id, monthly_cents, alert_at_percent, time_modified) VALUES ($1, $2, $3, $4)",
        )
        .bind(project_id.to_string())
        .bind(monthly_cents)
        .bind(alert_at_percent)
        .bind(&t)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

const BUDGET_COLS: &str = "b.project_id, b.monthly_cents, b.alert_at_percent, b.last_alert_period";

fn budget_row(r: &sqlx::any::AnyRow) -> Result<BudgetRecord> {
    Ok(BudgetRecord {
        project_id: parse_uuid(&r.try_get::<String, _>(0)?)?,
        monthly_cents: r.try_get(1)?,
        alert_at_percent: r.try_get(2)?,
        last_alert_period: r.try_get(3)?,
    })
}

pub async fn budget(conn: &mut Conn, project_id: ProjectId) -> Result<Option<BudgetRecord>> {
    let sql = format!("SELECT {BUDGET_COLS} FROM budgets b WHERE b.project_id = $1");
    let row = sqlx::query(&sql).bind(project_id.to_string()).fetch_optional(&mut *conn).await?;
    row.as_ref().map(budget_row).transpose()
}

/// Budgets of every live project.
pub async fn budgets(conn: &mut Conn) -> Result<Vec<BudgetRecord>> {
    let sql = format!(
        "SELECT {BUDGET_COLS} FROM budgets b JOIN projects p ON p.id = b.project_id WHERE p.time_deleted IS NULL \
         ORDER BY b.project_id"
    );
    let rows = sqlx::query(&sql).fetch_all(&mut *conn).await?;
    rows.iter().map(budget_row).collect()
}

/// Marks the budget alerted for `period`; false when it already was (one alert per month).
pub async fn mark_alerted(conn: &mut Conn, project_id: ProjectId, period: &str) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE budgets SET last_alert_period = $1 WHERE project_id = $2 \
         AND (last_alert_period IS NULL OR last_alert_period <> $1)",
    )
    .bind(period)
    .bind(project_id.to_string())
    .execute(&mut *conn)
    .await?;
    Ok(r.rows_affected() == 1)
}
