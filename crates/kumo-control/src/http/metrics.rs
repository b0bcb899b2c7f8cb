//! `/v1/instances/{instance}/metrics` (per-instance time series) and `/metrics` (Prometheus, for
//! operators; outside `/v1` and the OpenAPI document, see [`crate::telemetry`]).

use super::{ApiQuery, ProjectSelector};
use crate::app::metrics;
use crate::context::{Access, OpContext};
use crate::error::{ApiError, ApiResult};
use crate::App;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::Json;
use chrono::{DateTime, Utc};
use kumo_types::{ErrorBody, MetricSeries};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

/// Which metric, over which window.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MetricParams {
    /// `cpu` (percent of one host CPU), `memory` (bytes), `disk_read`, `disk_write`, `net_rx`,
    /// `net_tx` (bytes per second).
    #[param(pattern = "^(cpu|memory|disk_read|disk_write|net_rx|net_tx)$")]
    pub metric: String,
    /// Start of the window, RFC 3339 (default: one hour before `to`).
    #[param(format = DateTime)]
    pub from: Option<String>,
    /// End of the window, RFC 3339, exclusive (default: now).
    #[param(format = DateTime)]
    pub to: Option<String>,
}

fn time(what: &str, s: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    s.map(|s| {
        DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).map_err(|e| {
            ApiError::invalid(format!("'{what}' must be an RFC 3339 time such as 2026-11-27T12:00:00Z: {e}"))
        })
    })
    .transpose()
}

/// One metric of an instance over time
///
/// The resolution follows the window: raw samples (every few seconds, kept 1 hour) for windows
/// within the last hour, 1-minute means (kept 1 day) within the last day, else 1-hour means
/// (kept 30 days).
#[utoipa::path(get, path = "/v1/instances/{instance}/metrics", tag = "instances", operation_id = "instance_metrics",
    params(("instance" = String, Path, description = "Instance name or id"), ProjectSelector, MetricParams),
    responses((status = 200, body = MetricSeries), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn instance_metrics(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(instance): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(p): ApiQuery<MetricParams>,
) -> ApiResult<Json<MetricSeries>> {
    let from = time("from", p.from.as_deref())?;
    let to = time("to", p.to.as_deref())?;
    Ok(Json(metrics::query(&app, &ctx, sel.project.as_deref(), &instance, &p.metric, from, to).await?))
}

/// `GET /metrics`: the Prometheus exposition (operators only).
pub async fn prometheus(State(app): State<Arc<App>>, ctx: OpContext) -> ApiResult<(HeaderMap, String)> {
    ctx.authorize(Access::Operator)?;
    let body = crate::telemetry::render(&app).await.map_err(ApiError::internal)?;
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    Ok((headers, body))
}
