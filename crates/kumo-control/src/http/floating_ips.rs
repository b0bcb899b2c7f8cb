//! `/v1/floating-ips`

use super::{page, ApiJson, ApiQuery, ProjectSelector};
use crate::app::floating_ips;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{ErrorBody, FloatingIpAttach, FloatingIpCreate, FloatingIpView, PageParams, ResultsPage};
use std::sync::Arc;

/// List a project's floating IPs
#[utoipa::path(get, path = "/v1/floating-ips", tag = "floating-ips", operation_id = "floating_ip_list",
    params(ProjectSelector, PageParams),
    responses((status = 200, body = ResultsPage<FloatingIpView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn floating_ip_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<FloatingIpView>>> {
    Ok(Json(floating_ips::list(&app, &ctx, sel.project.as_deref(), &page(&p)?).await?))
}

/// Create a floating IP
#[utoipa::path(post, path = "/v1/floating-ips", tag = "floating-ips", operation_id = "floating_ip_create",
    params(ProjectSelector), request_body = FloatingIpCreate,
    responses((status = 201, body = FloatingIpView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 507, body = ErrorBody)))]
pub async fn floating_ip_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<FloatingIpCreate>,
) -> ApiResult<(StatusCode, Json<FloatingIpView>)> {
    Ok((StatusCode::CREATED, Json(floating_ips::create(&app, &ctx, sel.project.as_deref(), &body).await?)))
}

/// View a floating IP
#[utoipa::path(get, path = "/v1/floating-ips/{floating_ip}", tag = "floating-ips", operation_id = "floating_ip_view",
    params(("floating_ip" = String, Path, description = "Floating ip name or id"), ProjectSelector),
    responses((status = 200, body = FloatingIpView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn floating_ip_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Json<FloatingIpView>> {
    Ok(Json(floating_ips::view(&app, &ctx, sel.project.as_deref(), &name).await?))
}

/// Delete a floating IP
#[utoipa::path(delete, path = "/v1/floating-ips/{floating_ip}", tag = "floating-ips", operation_id = "floating_ip_delete",
    params(("floating_ip" = String, Path, description = "Floating ip name or id"), ProjectSelector),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn floating_ip_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<StatusCode> {
    floating_ips::delete(&app, &ctx, sel.project.as_deref(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Attach a floating IP to an instance (the host DNATs it to the instance's private address)
#[utoipa::path(post, path = "/v1/floating-ips/{floating_ip}/attach", tag = "floating-ips", operation_id = "floating_ip_attach",
    params(("floating_ip" = String, Path, description = "Floating IP name or id"), ProjectSelector),
    request_body = FloatingIpAttach,
    responses((status = 200, body = FloatingIpView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn floating_ip_attach(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<FloatingIpAttach>,
) -> ApiResult<Json<FloatingIpView>> {
    Ok(Json(floating_ips::attach(&app, &ctx, sel.project.as_deref(), &name, Some(&body.instance)).await?))
}

/// Detach a floating IP from its instance
#[utoipa::path(post, path = "/v1/floating-ips/{floating_ip}/detach", tag = "floating-ips", operation_id = "floating_ip_detach",
    params(("floating_ip" = String, Path, description = "Floating IP name or id"), ProjectSelector),
    responses((status = 200, body = FloatingIpView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn floating_ip_detach(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Json<FloatingIpView>> {
    Ok(Json(floating_ips::attach(&app, &ctx, sel.project.as_deref(), &name, None).await?))
}
