//! Pay-as-you-go: the price catalogue, usage, invoices of closed months, budgets, and what the
//! billing reconciler does (its loop is [`crate::background::billing`]). The arithmetic is in [`crate::metering`] (pure); this module reads events and
//! prices from the store, and stores invoices and budget alerts.
//!
//! - Prices are appended, effective from the moment they are set: never retroactive.
//! - Usage of any window is computed from the durable events on demand.
//! - A month's invoice is generated once after the month ended (on first request, or by the
//!   billing reconciler), stored, and served as stored ever after: later events or price changes
//!   cannot change it.
//! - The billing reconciler also records one `budget_alert` event per project and month when the
//!   month-to-date cost crosses the budget's threshold.

use super::read;
use crate::context::{Access, OpContext};
use crate::error::{ApiError, ApiResult};
use crate::metering::{self, MeterEvent, PriceBook, Size};
use crate::App;
use chrono::{DateTime, Datelike, TimeZone, Utc};
use kumo_store::billing::{InvoiceRecord, LineRecord};
use kumo_store::events::{EventState, NewEvent};
use kumo_store::Conn;
use kumo_types::billing::{
    BudgetSet, BudgetView, InvoiceList, InvoiceSummary, InvoiceView, PriceList, PriceSet, PriceView, UsageInterval,
    UsageLine, UsageReport,
};
use kumo_types::{money, ErrorCode, NameOrId, ProjectId, ProjectView, VolumeState};

/// Price kinds: (kind, price unit).
pub const PRICE_KINDS: [(&str, &str); 10] = [
    ("instance_type", "hour"),
    ("disk", "GiB-month"),
    ("volume", "GiB-month"),
    ("snapshot", "GiB-month"),
    ("backup", "GiB-month"),
    ("image", "GiB-month"),
    ("floating_ip", "hour"),
    ("object_storage", "GiB-month"),
    ("object_write_requests", "1,000 requests"),
    ("object_read_requests", "1,000 requests"),
];

fn price_unit(kind: &str) -> &'static str {
    PRICE_KINDS.iter().find(|(k, _)| *k == kind).map_or("hour", |(_, u)| u)
}

// ---------------------------------------------------------------------------------------------
// Prices

pub async fn price_list(app: &App, ctx: &OpContext) -> ApiResult<PriceList> {
    ctx.authorize(Access::Operator)?;
    let prices = kumo_store::billing::prices(&mut *read(app).await?).await?;
    let mut items: Vec<PriceView> = Vec::with_capacity(prices.len());
    for (i, p) in prices.iter().enumerate() {
        let next = prices.get(i + 1).filter(|n| n.kind == p.kind && n.name == p.name);
        items.push(PriceView {
            id: p.id,
            kind: p.kind.clone(),
            name: (!p.name.is_empty()).then(|| p.name.clone()),
            unit_price: money::format_micros(p.unit_price_micros),
            unit_price_micros: p.unit_price_micros,
            price_unit: price_unit(&p.kind).into(),
            effective_from: p.effective_from,
            effective_until: next.map(|n| n.effective_from),
        });
    }
    Ok(PriceList { items })
}

/// Adds a price effective from now.
pub async fn price_set(app: &App, ctx: &OpContext, p: &PriceSet) -> ApiResult<PriceView> {
    ctx.authorize(Access::Operator)?;
    let kinds = PRICE_KINDS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ");
    if !PRICE_KINDS.iter().any(|(k, _)| *k == p.kind) {
        return Err(ApiError::invalid(format!("price kind '{}' is not one of {kinds}", p.kind)));
    }
    let micros = money::parse_decimal(&p.unit_price, 6).map_err(|e| ApiError::invalid(format!("unit_price: {e}")))?;
    let mut tx = app.store.begin().await?;
    let name = match (p.kind.as_str(), p.name.as_deref()) {
        ("instance_type", Some(n)) => {
            let n = kumo_types::Name::parse(n).map_err(|e| ApiError::invalid(format!("name: {e}")))?;
            if kumo_store::instance_types::get_by_name(&mut tx, n.as_str()).await?.is_none() {
                return Err(ApiError::invalid(format!(
                    "instance type '{n}' does not exist (see `kumo instance-type list`)"
                )));
            }
            n.to_string()
        }
        ("instance_type", None) => {
            return Err(ApiError::invalid("a price of kind instance_type needs the type's 'name'"));
        }
        (_, Some(_)) => return Err(ApiError::invalid(format!("a price of kind {} takes no 'name'", p.kind))),
        (_, None) => String::new(),
    };
    let rec = kumo_store::billing::add_price(&mut tx, &p.kind, &name, micros, kumo_store::now()).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(PriceView {
        id: rec.id,
        kind: rec.kind,
        name: (!name.is_empty()).then_some(name),
        unit_price: money::format_micros(micros),
        unit_price_micros: micros,
        price_unit: price_unit(&p.kind).into(),
        effective_from: rec.effective_from,
        effective_until: None,
    })
}

// ---------------------------------------------------------------------------------------------
// Usage

async fn price_book(conn: &mut Conn) -> ApiResult<PriceBook> {
    let prices = kumo_store::billing::prices(conn).await?;
    Ok(PriceBook::new(prices.into_iter().map(|p| (p.kind, p.name, p.effective_from, p.unit_price_micros))))
}

/// Where metering reads events from: the write transaction at hand (which also stores a month's
/// carry built on the way, see `kumo_store::metering`), or the store's typed read path (see
/// `kumo_store::fast`), which a request outside a transaction uses.
pub enum Events<'a> {
    Conn,
    Fast(&'a kumo_store::Store),
}

/// The events metering needs for `[from, to)`: the window's, and per resource that can still be
/// billed its last events before the window (see `kumo_store::metering`: read from the carry of
/// the month that holds `from`, not from the project's history).
async fn meter_rows(
    conn: &mut Conn,
    via: &Events<'_>,
    project_id: ProjectId,
    resource_type: &str,
    carry: &[kumo_store::events::Carry],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<Vec<kumo_store::events::MeterRow>> {
    Ok(match via {
        Events::Conn => {
            kumo_store::events::for_metering_window(conn, project_id, resource_type, carry, from, to).await?
        }
        Events::Fast(store) => {
            kumo_store::events::fast_for_metering_window(store, project_id, resource_type, carry, from, to).await?
        }
    })
}

/// The priced usage lines of a project over `[from, to)`, from its durable events. Reads only the
/// window's events and, per resource, the few events before it that fix its state at `from`
/// (the folds in [`metering`] keep, per field, the last value set, so those give the same state
/// as the whole history; a resource destroyed or deleted before `from` adds nothing and is left
/// out). `conn` must be a write transaction when `via` is [`Events::Conn`].
pub async fn lines(
    conn: &mut Conn,
    via: Events<'_>,
    project_id: ProjectId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> ApiResult<Vec<UsageLine>> {
    use kumo_store::events::Carry;
    let book = price_book(conn).await?;
    // An instance's state, and its size (every instance event's detail is a `Size`).
    let carry = [Carry::State, Carry::DetailWith("disk_gib")];
    let rows = meter_rows(conn, &via, project_id, "instance", &carry, from, to).await?;
    let mut out = Vec::new();
    for group in rows.chunk_by(|a, b| a.resource_id == b.resource_id) {
        let id = group[0].resource_id;
        // An instance's events repeat its size in every detail: parse a detail only when it
        // differs from the one before (tens of thousands of rows in a month's usage).
        let mut parsed: Option<(&str, Option<Size>)> = None;
        let events: Vec<MeterEvent> = group
            .iter()
            .map(|r| {
                let size = r.detail.as_deref().and_then(|d| match &parsed {
                    Some((before, size)) if *before == d => size.clone(),
                    _ => {
                        let size = serde_json::from_str::<Size>(d).ok();
                        parsed = Some((d, size.clone()));
                        size
                    }
                });
                MeterEvent { time: r.time, to_state: r.to_state.and_then(EventState::instance), size }
            })
            .collect();
        let ivs = metering::intervals(&events, from, to);
        if ivs.is_empty() {
            continue;
        }
        let name = group.last().map(|r| r.resource_name.as_str()).unwrap_or_default();
        out.extend(metering::price_lines(metering::instance_resource_type, name, id, &ivs, &book));
    }
    // Floating IPs: held from creation to release.
    let rows = meter_rows(conn, &via, project_id, "floating_ip", &[Carry::Held], from, to).await?;
    for group in rows.chunk_by(|a, b| a.resource_id == b.resource_id) {
        let kinds: Vec<_> = group.iter().map(|r| (r.time, r.kind.as_str())).collect();
        let ivs = metering::held_intervals(&kinds, from, to);
        if let (false, Some(last)) = (ivs.is_empty(), group.last()) {
            out.extend(metering::price_lines(
                metering::instance_resource_type,
                &last.resource_name,
                last.resource_id,
                &ivs,
                &book,
            ));
        }
    }
    out.extend(storage_lines(conn, &via, project_id, from, to, &book, &STORED).await?);
    out.extend(request_lines(conn, project_id, from, to, &book).await?);
    Ok(out)
}

/// Requests to buckets: counted per hour (see [`super::buckets::Requests`]), the hours starting
/// in the window.
async fn request_lines(
    conn: &mut Conn,
    project_id: ProjectId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    book: &PriceBook,
) -> ApiResult<Vec<UsageLine>> {
    let counts = kumo_store::objects::requests_of_project(conn, project_id, from, to).await?;
    let mut out = Vec::new();
    for group in counts.chunk_by(|a, b| a.bucket_id == b.bucket_id && a.class == b.class) {
        let hours: Vec<_> = group.iter().map(|c| (c.hour, c.requests)).collect();
        let first = &group[0];
        out.extend(metering::request_lines(&first.bucket_name, first.bucket_id.get(), &first.class, &hours, book));
    }
    Ok(out)
}

/// Month-to-date cost (minor units) of each of a project's buckets that cost anything: storage
/// and requests, the lines the usage report has for them (only those are computed).
pub async fn bucket_costs(app: &App, project_id: ProjectId) -> ApiResult<std::collections::HashMap<uuid::Uuid, i64>> {
    let mut conn = read(app).await?;
    let book = price_book(&mut conn).await?;
    let to = kumo_store::now();
    let from = month_start(to);
    let via = Events::Fast(&app.store);
    let mut lines = storage_lines(&mut conn, &via, project_id, from, to, &book, &[BUCKETS]).await?;
    lines.extend(request_lines(&mut conn, project_id, from, to, &book).await?);
    let mut out = std::collections::HashMap::new();
    for l in lines {
        *out.entry(l.resource_id).or_default() += l.cost;
    }
    Ok(out)
}

/// A stored resource's events: (resource type, meter, the detail field with its size).
type Stored = (&'static str, metering::Meter, &'static str);

const BUCKETS: Stored = ("bucket", metering::Meter::ObjectStorage, "bytes_stored");

/// Every stored resource metering bills by size and time.
const STORED: [Stored; 4] = [
    ("volume", metering::Meter::Volume, "size_gib"),
    ("snapshot", metering::Meter::Snapshot, "size_gib"),
    ("volume_backup", metering::Meter::Backup, "bytes_stored"),
    BUCKETS,
];

/// Volumes, snapshots, backups and buckets (`kinds`): GiB-seconds from their creation to their
/// deletion (see [`metering::storage_intervals`]), from their events (whose detail carries the
/// size).
async fn storage_lines(
    conn: &mut Conn,
    via: &Events<'_>,
    project_id: ProjectId,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    book: &PriceBook,
    kinds: &[Stored],
) -> ApiResult<Vec<UsageLine>> {
    use kumo_store::events::Carry;
    use metering::{Meter, StorageEvent};
    let mut out = Vec::new();
    for (resource_type, meter, size_key) in kinds.iter().cloned() {
        let carry = [Carry::Lifecycle, Carry::DetailWith(size_key)];
        let rows = meter_rows(conn, via, project_id, resource_type, &carry, from, to).await?;
        for group in rows.chunk_by(|a, b| a.resource_id == b.resource_id) {
            let events: Vec<StorageEvent> = group
                .iter()
                .map(|r| {
                    let detail: serde_json::Value =
                        r.detail.as_deref().and_then(|d| serde_json::from_str(d).ok()).unwrap_or_default();
                    let gib = match meter {
                        // What the backup really stored, in whole GiB (rounded up).
                        Meter::Backup | Meter::ObjectStorage => {
                            detail["bytes_stored"].as_i64().map(|b| (b + (1 << 30) - 1) >> 30)
                        }
                        _ => detail["size_gib"].as_i64(),
                    };
                    let exists = match (r.kind.as_str(), r.to_state) {
                        ("created", _) => Some(true),
                        ("deleted", _) | (_, Some(EventState::Volume(VolumeState::Deleted))) => Some(false),
                        _ => None,
                    };
                    StorageEvent { time: r.time, exists, gib }
                })
                .collect();
            let ivs = metering::storage_intervals(meter.clone(), &events, from, to);
            if ivs.is_empty() {
                continue;
            }
            let (id, name) = (group[0].resource_id, group.last().map(|r| r.resource_name.as_str()).unwrap_or(""));
            out.extend(metering::price_lines(metering::instance_resource_type, name, id, &ivs, book));
        }
    }
    Ok(out)
}

/// Start of the calendar month (UTC) that contains `t`.
pub fn month_start(t: DateTime<Utc>) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0).single().unwrap_or(t)
}

/// Parses `YYYY-MM` into the month's `[start, end)`.
pub fn month_bounds(period: &str) -> ApiResult<(DateTime<Utc>, DateTime<Utc>)> {
    let bad = || ApiError::invalid(format!("'{period}' is not a month like 2026-11 (YYYY-MM)"));
    let (y, m) = period.split_once('-').ok_or_else(bad)?;
    if y.len() != 4 || m.len() != 2 {
        return Err(bad());
    }
    let (y, m): (i32, u32) = (y.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    let start = Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().ok_or_else(bad)?;
    let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
    let end = Utc.with_ymd_and_hms(ny, nm, 1, 0, 0, 0).single().ok_or_else(bad)?;
    Ok((start, end))
}

pub fn period_of(t: DateTime<Utc>) -> String {
    format!("{:04}-{:02}", t.year(), t.month())
}

fn total(lines: &[UsageLine]) -> i64 {
    lines.iter().map(|l| l.cost).sum()
}

/// The window of a usage query.
#[derive(Debug, Default)]
pub struct Window {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub month: Option<String>,
}

pub async fn usage(app: &App, ctx: &OpContext, project: &str, w: &Window) -> ApiResult<UsageReport> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, Some(project), Access::Read).await?;
    let now = kumo_store::now();
    let (from, to) = match (&w.month, w.from, w.to) {
        (Some(m), None, None) => month_bounds(m)?,
        (Some(_), _, _) => return Err(ApiError::invalid("give either 'month' or 'from'/'to', not both")),
        (None, from, to) => (from.unwrap_or_else(|| month_start(now)), to.unwrap_or(now)),
    };
    if from > to {
        return Err(ApiError::invalid(format!(
            "the window starts ({}) after it ends ({})",
            kumo_store::ts(from),
            kumo_store::ts(to)
        )));
    }
    // Nothing is known about the future: the window ends at now at the latest (a window wholly in
    // the future is empty).
    let to = to.min(now).max(from);
    let items = lines(&mut conn, Events::Fast(&app.store), p.id, from, to).await?;
    Ok(UsageReport { project: p.name, from, to, total: total(&items), items })
}

// ---------------------------------------------------------------------------------------------
// Invoices

fn to_record(period: &str, from: DateTime<Utc>, to: DateTime<Utc>, lines: &[UsageLine]) -> InvoiceRecord {
    InvoiceRecord {
        id: kumo_store::new_id(),
        period: period.into(),
        period_start: from,
        period_end: to,
        total_cents: total(lines),
        time_created: kumo_store::now(),
        lines: lines
            .iter()
            .map(|l| LineRecord {
                resource_type: l.resource_type.clone(),
                resource_id: l.resource_id,
                resource_name: l.resource.clone(),
                price_kind: l.price_kind.clone(),
                price_name: l.price_name.clone().unwrap_or_default(),
                quantity: l.quantity,
                unit: l.unit.clone(),
                unit_price_micros: l.unit_price_micros,
                price_unit: l.price_unit.clone(),
                cost_cents: l.cost,
                intervals: serde_json::to_string(&l.intervals).unwrap_or_else(|_| "[]".into()),
            })
            .collect(),
    }
}

fn invoice_view(project: &str, r: InvoiceRecord) -> InvoiceView {
    let items = r
        .lines
        .into_iter()
        .map(|l| UsageLine {
            resource_type: l.resource_type,
            resource: l.resource_name,
            resource_id: l.resource_id,
            price_kind: l.price_kind,
            price_name: (!l.price_name.is_empty()).then_some(l.price_name),
            quantity: l.quantity,
            unit: l.unit,
            unit_price: money::format_micros(l.unit_price_micros),
            unit_price_micros: l.unit_price_micros,
            price_unit: l.price_unit,
            cost: l.cost_cents,
            intervals: serde_json::from_str::<Vec<UsageInterval>>(&l.intervals).unwrap_or_default(),
        })
        .collect();
    InvoiceView {
        project: project.into(),
        period: r.period,
        from: r.period_start,
        to: r.period_end,
        time_created: r.time_created,
        items,
        total: r.total_cents,
    }
}

/// The stored invoice of a closed month, generating and storing it first if needed.
async fn ensure_invoice(app: &App, p: &ProjectView, period: &str) -> ApiResult<InvoiceRecord> {
    if let Some(r) = kumo_store::billing::invoice(&mut *read(app).await?, p.id, period).await? {
        return Ok(r);
    }
    let (from, to) = month_bounds(period)?;
    let mut tx = app.store.begin().await?;
    let items = lines(&mut tx, Events::Conn, p.id, from, to).await?;
    let stored = kumo_store::billing::insert_invoice(&mut tx, p.id, &to_record(period, from, to, &items)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(stored)
}

/// The closed months of a project: from the month of its first event to last month.
async fn closed_periods(conn: &mut Conn, p: &ProjectView, now: DateTime<Utc>) -> ApiResult<Vec<String>> {
    let first = kumo_store::events::earliest_time(conn, p.id).await?.unwrap_or(p.time_created).min(p.time_created);
    let mut out = Vec::new();
    let mut m = month_start(first);
    let current = month_start(now);
    while m < current {
        let period = period_of(m);
        out.push(period.clone());
        m = month_bounds(&period)?.1;
    }
    Ok(out)
}

pub async fn invoice_list(app: &App, ctx: &OpContext, project: &str) -> ApiResult<InvoiceList> {
    let p = super::project(&mut *read(app).await?, ctx, Some(project), Access::Read).await?;
    let periods = closed_periods(&mut *read(app).await?, &p, kumo_store::now()).await?;
    let mut items = Vec::new();
    for period in periods {
        let r = ensure_invoice(app, &p, &period).await?;
        items.push(InvoiceSummary {
            period: r.period,
            total: r.total_cents,
            lines: r.lines.len(),
            time_created: r.time_created,
        });
    }
    Ok(InvoiceList { items })
}

pub async fn invoice_get(app: &App, ctx: &OpContext, project: &str, period: &str) -> ApiResult<InvoiceView> {
    let p = super::project(&mut *read(app).await?, ctx, Some(project), Access::Read).await?;
    let (_, end) = month_bounds(period)?;
    let now = kumo_store::now();
    if end > now {
        return Err(ApiError::new(
            ErrorCode::InvalidState,
            format!(
                "{period} is not closed yet (it ends {}); its usage so far is at GET /v1/projects/{}/usage?month={period} \
                 (`kumo usage --project {} --month {period}`)",
                kumo_store::ts(end),
                p.name,
                p.name
            ),
        ));
    }
    let periods = closed_periods(&mut *read(app).await?, &p, now).await?;
    if !periods.iter().any(|x| x == period) {
        return Err(ApiError::not_found("invoice", format!("{period}' of project '{}", p.name)));
    }
    Ok(invoice_view(&p.name, ensure_invoice(app, &p, period).await?))
}

// ---------------------------------------------------------------------------------------------
// Budgets

async fn budget_view_of(app: &App, conn: &mut Conn, p: &ProjectView) -> ApiResult<BudgetView> {
    let b = kumo_store::billing::budget(conn, p.id).await?;
    let now = kumo_store::now();
    let mtd = total(&lines(conn, Events::Fast(&app.store), p.id, month_start(now), now).await?);
    Ok(BudgetView {
        project: p.name.clone(),
        monthly: b.as_ref().map(|b| money::format_cents(b.monthly_cents)),
        monthly_cents: b.as_ref().map(|b| b.monthly_cents),
        alert_at_percent: b.as_ref().map(|b| b.alert_at_percent),
        month_to_date: mtd,
        last_alert_period: b.and_then(|b| b.last_alert_period),
    })
}

pub async fn budget_view(app: &App, ctx: &OpContext, project: &str) -> ApiResult<BudgetView> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, Some(project), Access::Read).await?;
    budget_view_of(app, &mut conn, &p).await
}

/// Sets the monthly budget (project owners).
pub async fn budget_update(app: &App, ctx: &OpContext, project: &str, b: &BudgetSet) -> ApiResult<BudgetView> {
    let cents = money::parse_decimal(&b.monthly, 2).map_err(|e| ApiError::invalid(format!("monthly: {e}")))?;
    if !(1..=1000).contains(&b.alert_at_percent) {
        return Err(ApiError::invalid(format!("alert_at_percent must be 1 to 1000 (got {})", b.alert_at_percent)));
    }
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, Some(project), Access::Manage).await?;
    kumo_store::billing::set_budget(&mut tx, p.id, cents, b.alert_at_percent).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.billing.wake();
    budget_view(app, ctx, project).await
}

/// Records a `budget_alert` event for every project whose month-to-date cost reached its
/// threshold and that was not alerted this month yet. Returns how many were recorded.
pub async fn check_budgets(app: &App, now: DateTime<Utc>) -> ApiResult<u64> {
    let budgets = kumo_store::billing::budgets(&mut *read(app).await?).await?;
    let period = period_of(now);
    let mut recorded = 0;
    for b in budgets {
        if b.last_alert_period.as_deref() == Some(period.as_str()) {
            continue;
        }
        let mut tx = app.store.begin().await?;
        let Some(p) = kumo_store::projects::get(&mut tx, &NameOrId::Id(b.project_id.get())).await? else { continue };
        let cost = total(&lines(&mut tx, Events::Conn, p.id, month_start(now), now).await?);
        // cost / monthly >= percent / 100, in integers.
        if (cost as i128) * 100 < (b.monthly_cents as i128) * (b.alert_at_percent as i128) {
            continue;
        }
        if !kumo_store::billing::mark_alerted(&mut tx, p.id, &period).await? {
            continue;
        }
        let cause = format!(
            "billing: month-to-date cost {} reached {}% of the monthly budget {} ({period})",
            money::format_cents(cost),
            b.alert_at_percent,
            money::format_cents(b.monthly_cents)
        );
        let detail = serde_json::json!({
            "period": period, "month_to_date": cost, "monthly_budget": b.monthly_cents,
            "alert_at_percent": b.alert_at_percent,
        });
        let event = NewEvent {
            project_id: Some(p.id),
            resource_type: "project",
            resource_id: p.id.get(),
            resource_name: &p.name,
            kind: "budget_alert",
            from_state: None,
            to_state: None,
            cause: &cause,
            detail: Some(detail.to_string()),
        };
        let ev = kumo_store::events::record(&mut tx, &event).await?;
        tx.commit().await.map_err(ApiError::internal)?;
        app.events.publish(Some(p.id), Some(&p.name), ev);
        tracing::info!(project = %p.name, "{cause}");
        recorded += 1;
    }
    Ok(recorded)
}

/// Generates the stored invoices of last month for every project that has none yet.
pub async fn close_last_month(app: &App, now: DateTime<Utc>) -> ApiResult<u64> {
    let last = period_of(month_start(now) - chrono::Duration::days(1));
    let projects = kumo_store::projects::all_live(&mut *read(app).await?).await?;
    let mut generated = 0;
    for p in projects {
        let periods = closed_periods(&mut *read(app).await?, &p, now).await?;
        if periods.last() == Some(&last)
            && kumo_store::billing::invoice(&mut *read(app).await?, p.id, &last).await?.is_none()
        {
            ensure_invoice(app, &p, &last).await?;
            generated += 1;
        }
    }
    Ok(generated)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_parse_into_their_bounds() {
        let (a, b) = month_bounds("2026-12").expect("valid");
        assert_eq!(kumo_store::ts(a), "2026-12-01T00:00:00.000000Z");
        assert_eq!(kumo_store::ts(b), "2027-01-01T00:00:00.000000Z");
        assert_eq!(period_of(a), "2026-12");
        assert_eq!(month_start(b - chrono::Duration::seconds(1)), a);
        for bad in ["2026-13", "2026-1", "26-01", "2026/01", "", "2026-00"] {
            assert!(month_bounds(bad).is_err(), "{bad}");
        }
    }
}
