//! `/v1/volumes`

use super::{page, ApiJson, ApiQuery, ProjectSelector};
use crate::app::volumes;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{
    ErrorBody, PageParams, ResultsPage, VolumeAttach, VolumeCreate, VolumeIoLimits, VolumeResize, VolumeView,
};
use std::sync::Arc;

/// List a project's volumes
#[utoipa::path(get, path = "/v1/volumes", tag = "volumes", operation_id = "volume_list",
    params(ProjectSelector, PageParams),
    responses((status = 200, body = ResultsPage<VolumeView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn volume_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<VolumeView>>> {
    Ok(Json(volumes::list(&app, &ctx, sel.project.as_deref(), &page(&p)?).await?))
}

/// Create a volume (empty, or a copy-on-write clone of an image); it becomes `available` in the background
#[utoipa::path(post, path = "/v1/volumes", tag = "volumes", operation_id = "volume_create",
    params(ProjectSelector), request_body = VolumeCreate,
    responses((status = 202, description = "Accepted, in state creating", body = VolumeView),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 507, body = ErrorBody)))]
pub async fn volume_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<VolumeCreate>,
) -> ApiResult<(StatusCode, Json<VolumeView>)> {
    Ok((StatusCode::ACCEPTED, Json(volumes::create(&app, &ctx, sel.project.as_deref(), &body).await?)))
}

/// View a volume
#[utoipa::path(get, path = "/v1/volumes/{volume}", tag = "volumes", operation_id = "volume_view",
    params(("volume" = String, Path, description = "Volume name or id"), ProjectSelector),
    responses((status = 200, body = VolumeView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn volume_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(volume): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Json<VolumeView>> {
    Ok(Json(volumes::view(&app, &ctx, sel.project.as_deref(), &volume).await?))
}

/// Delete a detached volume; its disk is removed in the background
#[utoipa::path(delete, path = "/v1/volumes/{volume}", tag = "volumes", operation_id = "volume_delete",
    params(("volume" = String, Path, description = "Volume name or id"), ProjectSelector),
    responses((status = 202, description = "Accepted, in state deleting", body = VolumeView),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn volume_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(volume): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<(StatusCode, Json<VolumeView>)> {
    Ok((StatusCode::ACCEPTED, Json(volumes::delete(&app, &ctx, sel.project.as_deref(), &volume).await?)))
}

/// Attach a volume to an instance (hot-plugged when it runs)
#[utoipa::path(post, path = "/v1/volumes/{volume}/attach", tag = "volumes", operation_id = "volume_attach",
    params(("volume" = String, Path, description = "Volume name or id"), ProjectSelector),
    request_body = VolumeAttach,
    responses((status = 202, description = "Accepted, in state attaching", body = VolumeView),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn volume_attach(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(volume): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<VolumeAttach>,
) -> ApiResult<(StatusCode, Json<VolumeView>)> {
    let view = volumes::attach(&app, &ctx, sel.project.as_deref(), &volume, &body.instance).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Detach a volume from its instance (the guest is asked to release it)
#[utoipa::path(post, path = "/v1/volumes/{volume}/detach", tag = "volumes", operation_id = "volume_detach",
    params(("volume" = String, Path, description = "Volume name or id"), ProjectSelector),
    responses((status = 202, description = "Accepted, in state detaching", body = VolumeView),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn volume_detach(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(volume): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<(StatusCode, Json<VolumeView>)> {
    Ok((StatusCode::ACCEPTED, Json(volumes::detach(&app, &ctx, sel.project.as_deref(), &volume).await?)))
}

/// Grow a volume (online when attached to a running instance)
#[utoipa::path(post, path = "/v1/volumes/{volume}/resize", tag = "volumes", operation_id = "volume_resize",
    params(("volume" = String, Path, description = "Volume name or id"), ProjectSelector),
    request_body = VolumeResize,
    responses((status = 200, body = VolumeView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 507, body = ErrorBody)))]
pub async fn volume_resize(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(volume): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<VolumeResize>,
) -> ApiResult<Json<VolumeView>> {
    Ok(Json(volumes::resize(&app, &ctx, sel.project.as_deref(), &volume, body.size_gib).await?))
}

/// Change a volume's I/O limits (IOPS, bandwidth); live when attached to a running instance
#[utoipa::path(put, path = "/v1/volumes/{volume}/io-limits", tag = "volumes", operation_id = "volume_io_limits_update",
    params(("volume" = String, Path, description = "Volume name or id"), ProjectSelector),
    request_body = VolumeIoLimits,
    responses((status = 200, body = VolumeView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn volume_io_limits_update(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(volume): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<VolumeIoLimits>,
) -> ApiResult<Json<VolumeView>> {
    Ok(Json(volumes::set_io_limits(&app, &ctx, sel.project.as_deref(), &volume, &body).await?))
}
