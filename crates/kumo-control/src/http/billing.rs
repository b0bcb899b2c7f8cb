//! `/v1/system/prices`, `/v1/projects/{project}/usage`, `…/invoices`, `…/budget`

use super::{ApiJson, ApiQuery};
use crate::app::billing::{self, Window};
use crate::context::OpContext;
use crate::error::{ApiError, ApiResult};
use crate::App;
use axum::extract::{Path, State};
use axum::Json;
use kumo_types::billing::{
    BudgetSet, BudgetView, InvoiceList, InvoiceView, PriceList, PriceSet, PriceView, UsageReport,
};
use kumo_types::ErrorBody;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

/// The price catalogue, with history (operators)
#[utoipa::path(get, path = "/v1/system/prices", tag = "billing", operation_id = "price_list",
    responses((status = 200, body = PriceList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn price_list(State(app): State<Arc<App>>, ctx: OpContext) -> ApiResult<Json<PriceList>> {
    Ok(Json(billing::price_list(&app, &ctx).await?))
}

/// Set a price, effective from now (operators; never retroactive, history is kept)
#[utoipa::path(put, path = "/v1/system/prices", tag = "billing", operation_id = "price_update",
    request_body = PriceSet,
    responses((status = 200, body = PriceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn price_update(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiJson(body): ApiJson<PriceSet>,
) -> ApiResult<Json<PriceView>> {
    Ok(Json(billing::price_set(&app, &ctx, &body).await?))
}

/// The window of a usage query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageParams {
    /// Window start, RFC 3339 (default: the start of the current month, UTC).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// Window end, RFC 3339 (default and latest: now).
    #[param(format = DateTime)]
    pub to: Option<String>,
    /// A calendar month `YYYY-MM` instead of from/to.
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")]
    pub month: Option<String>,
}

fn time(what: &str, s: Option<&str>) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
    s.map(|s| {
        chrono::DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&chrono::Utc)).map_err(|e| {
            ApiError::invalid(format!("{what}: '{s}' is not an RFC 3339 time like 2026-11-01T00:00:00Z ({e})"))
        })
    })
    .transpose()
}

/// Usage and cost of a project over a window (default: month to date)
#[utoipa::path(get, path = "/v1/projects/{project}/usage", tag = "billing", operation_id = "usage_view",
    params(("project" = String, Path, description = "Project name or id"), UsageParams),
    responses((status = 200, body = UsageReport), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn usage_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(project): Path<String>,
    ApiQuery(q): ApiQuery<UsageParams>,
) -> ApiResult<Json<UsageReport>> {
    let w = Window { from: time("from", q.from.as_deref())?, to: time("to", q.to.as_deref())?, month: q.month };
    Ok(Json(billing::usage(&app, &ctx, &project, &w).await?))
}

/// List a project's invoices (closed months)
#[utoipa::path(get, path = "/v1/projects/{project}/invoices", tag = "billing", operation_id = "invoice_list",
    params(("project" = String, Path, description = "Project name or id")),
    responses((status = 200, body = InvoiceList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn invoice_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(project): Path<String>,
) -> ApiResult<Json<InvoiceList>> {
    Ok(Json(billing::invoice_list(&app, &ctx, &project).await?))
}

/// View the invoice of a closed month (the current month is 409: see usage)
#[utoipa::path(get, path = "/v1/projects/{project}/invoices/{period}", tag = "billing", operation_id = "invoice_view",
    params(("project" = String, Path, description = "Project name or id"),
           ("period" = String, Path, description = "The month, YYYY-MM", pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$")),
    responses((status = 200, body = InvoiceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn invoice_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path((project, period)): Path<(String, String)>,
) -> ApiResult<Json<InvoiceView>> {
    Ok(Json(billing::invoice_get(&app, &ctx, &project, &period).await?))
}

/// View a project's monthly budget and month-to-date cost
#[utoipa::path(get, path = "/v1/projects/{project}/budget", tag = "billing", operation_id = "budget_view",
    params(("project" = String, Path, description = "Project name or id")),
    responses((status = 200, body = BudgetView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn budget_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(project): Path<String>,
) -> ApiResult<Json<BudgetView>> {
    Ok(Json(billing::budget_view(&app, &ctx, &project).await?))
}

/// Set a project's monthly budget and alert threshold (owners)
#[utoipa::path(put, path = "/v1/projects/{project}/budget", tag = "billing", operation_id = "budget_update",
    params(("project" = String, Path, description = "Project name or id")), request_body = BudgetSet,
    responses((status = 200, body = BudgetView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn budget_update(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<BudgetSet>,
) -> ApiResult<Json<BudgetView>> {
    Ok(Json(billing::budget_update(&app, &ctx, &project, &body).await?))
}
