//! Billing: month-to-date cost by resource (the usage report), the budget, and the invoices of
//! closed months (`kumo_control::app::billing`).

use crate::render::{self, WebError};
use crate::session::Session;
use axum::extract::{Path, State};
use axum::response::Response;
use kumo_control::app::{billing, projects};
use kumo_control::App;
use minijinja::context;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;

/// Cost per resource (all of its lines added up), largest first, for the bar chart.
#[derive(Serialize)]
struct ResourceCost {
    resource_type: String,
    resource: String,
    cost: i64,
    percent: i64,
}

/// Cost of one day of the month so far, for the chart by day.
#[derive(Serialize)]
struct DayCost {
    day: String,
    cost: i64,
    percent: i64,
}

/// Month-to-date cost day by day: the same usage report, one window per UTC day (each day's
/// lines rounded on their own, so the days can differ from the month's total by a few cents).
async fn cost_by_day(
    app: &App,
    s: &Session,
    p: &str,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<DayCost>, WebError> {
    let mut days = Vec::new();
    let mut start = from;
    while start < to {
        let end = (start + chrono::TimeDelta::days(1)).min(to);
        let w = billing::Window { from: Some(start), to: Some(end), month: None };
        let cost = billing::usage(app, &s.ctx, p, &w).await?.total;
        days.push(DayCost { day: start.format("%b %d").to_string(), cost, percent: 0 });
        start = end;
    }
    let max = days.iter().map(|d| d.cost).max().unwrap_or(0).max(1);
    for d in &mut days {
        d.percent = (d.cost * 100 / max).clamp(0, 100);
    }
    Ok(days)
}

async fn render_billing(app: &App, s: &Session, p: &str) -> Result<Response, WebError> {
    let project = projects::view(app, &s.ctx, p).await?;
    let usage = billing::usage(app, &s.ctx, p, &billing::Window::default()).await?;
    let days = cost_by_day(app, s, p, usage.from, usage.to).await?;
    let budget = billing::budget_view(app, &s.ctx, p).await?;
    let invoices = billing::invoice_list(app, &s.ctx, p).await?;
    let mut by: BTreeMap<(String, String), i64> = BTreeMap::new();
    for l in &usage.items {
        *by.entry((l.resource_type.clone(), l.resource.clone())).or_default() += l.cost;
    }
    let max = by.values().copied().max().unwrap_or(0).max(1);
    let mut resources: Vec<ResourceCost> = by
        .into_iter()
        .map(|((resource_type, resource), cost)| ResourceCost {
            resource_type,
            resource,
            cost,
            percent: (cost * 100 / max).clamp(0, 100),
        })
        .collect();
    resources.sort_by_key(|r| std::cmp::Reverse(r.cost));
    let budget_percent = budget.monthly_cents.filter(|m| *m > 0).map(|m| (budget.month_to_date * 100 / m).min(100));
    render::page(
        s,
        "billing.html",
        context! {
            project => project, usage => usage, budget => budget, budget_percent => budget_percent,
            invoices => invoices.items, resources => resources, days => days, section => "billing",
        },
    )
}

pub async fn page(State(app): State<Arc<App>>, s: Session, Path(p): Path<String>) -> Result<Response, WebError> {
    render_billing(&app, &s, &p).await
}
