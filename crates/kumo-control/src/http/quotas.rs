//! `/v1/projects/{project}/quotas` and `/v1/system/quotas`

use super::ApiJson;
use crate::app::quotas;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::Json;
use kumo_types::billing::{QuotaLimits, QuotaList, QuotaView};
use kumo_types::ErrorBody;
use std::sync::Arc;

/// View a project's quota: limits and current use
#[utoipa::path(get, path = "/v1/projects/{project}/quotas", tag = "billing", operation_id = "quota_view",
    params(("project" = String, Path, description = "Project name or id")),
    responses((status = 200, body = QuotaView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn quota_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(project): Path<String>,
) -> ApiResult<Json<QuotaView>> {
    Ok(Json(quotas::view_of(&app, &ctx, &project).await?))
}

/// Set a project's quota limits (operators; null or absent is unlimited)
#[utoipa::path(put, path = "/v1/projects/{project}/quotas", tag = "billing", operation_id = "quota_update",
    params(("project" = String, Path, description = "Project name or id")), request_body = QuotaLimits,
    responses((status = 200, body = QuotaView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn quota_update(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<QuotaLimits>,
) -> ApiResult<Json<QuotaView>> {
    Ok(Json(quotas::update(&app, &ctx, &project, &body).await?))
}

/// Quota limits and use of every project (operators)
#[utoipa::path(get, path = "/v1/system/quotas", tag = "billing", operation_id = "quota_list",
    responses((status = 200, body = QuotaList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn quota_list(State(app): State<Arc<App>>, ctx: OpContext) -> ApiResult<Json<QuotaList>> {
    Ok(Json(quotas::list(&app, &ctx).await?))
}
