//! `/v1/snapshots`

use super::{page, ApiJson, ApiQuery, ProjectSelector};
use crate::app::snapshots;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{ErrorBody, PageParams, ResultsPage, SnapshotCreate, SnapshotView};
use std::sync::Arc;

/// List a project's snapshots
#[utoipa::path(get, path = "/v1/snapshots", tag = "snapshots", operation_id = "snapshot_list",
    params(ProjectSelector, PageParams),
    responses((status = 200, body = ResultsPage<SnapshotView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn snapshot_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<SnapshotView>>> {
    Ok(Json(snapshots::list(&app, &ctx, sel.project.as_deref(), &page(&p)?).await?))
}

/// Take a crash-consistent snapshot of a volume (detached, or attached to a running guest)
#[utoipa::path(post, path = "/v1/snapshots", tag = "snapshots", operation_id = "snapshot_create",
    params(ProjectSelector), request_body = SnapshotCreate,
    responses((status = 201, body = SnapshotView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn snapshot_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<SnapshotCreate>,
) -> ApiResult<(StatusCode, Json<SnapshotView>)> {
    Ok((StatusCode::CREATED, Json(snapshots::create(&app, &ctx, sel.project.as_deref(), &body).await?)))
}

/// View a snapshot
#[utoipa::path(get, path = "/v1/snapshots/{snapshot}", tag = "snapshots", operation_id = "snapshot_view",
    params(("snapshot" = String, Path, description = "Snapshot name or id"), ProjectSelector),
    responses((status = 200, body = SnapshotView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn snapshot_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(snapshot): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Json<SnapshotView>> {
    Ok(Json(snapshots::view(&app, &ctx, sel.project.as_deref(), &snapshot).await?))
}

/// Delete a snapshot (volumes made from it keep their data)
#[utoipa::path(delete, path = "/v1/snapshots/{snapshot}", tag = "snapshots", operation_id = "snapshot_delete",
    params(("snapshot" = String, Path, description = "Snapshot name or id"), ProjectSelector),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn snapshot_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(snapshot): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<StatusCode> {
    snapshots::delete(&app, &ctx, sel.project.as_deref(), &snapshot).await?;
    Ok(StatusCode::NO_CONTENT)
}
