//! `/v1/volume-backups`

use super::{page, ApiJson, ApiQuery, ProjectSelector};
use crate::app::backups;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{BackupCreate, BackupView, ErrorBody, PageParams, ResultsPage};
use std::sync::Arc;

/// List a project's volume backups
#[utoipa::path(get, path = "/v1/volume-backups", tag = "volume-backups", operation_id = "volume_backup_list",
    params(ProjectSelector, PageParams),
    responses((status = 200, body = ResultsPage<BackupView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn volume_backup_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<BackupView>>> {
    Ok(Json(backups::list(&app, &ctx, sel.project.as_deref(), &page(&p)?).await?))
}

/// Back up a volume not in use by a running guest (full the first time, then incremental)
#[utoipa::path(post, path = "/v1/volume-backups", tag = "volume-backups", operation_id = "volume_backup_create",
    params(ProjectSelector), request_body = BackupCreate,
    responses((status = 201, body = BackupView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 500, body = ErrorBody)))]
pub async fn volume_backup_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<BackupCreate>,
) -> ApiResult<(StatusCode, Json<BackupView>)> {
    Ok((StatusCode::CREATED, Json(backups::create(&app, &ctx, sel.project.as_deref(), &body).await?)))
}

/// View a volume backup
#[utoipa::path(get, path = "/v1/volume-backups/{backup}", tag = "volume-backups", operation_id = "volume_backup_view",
    params(("backup" = String, Path, description = "Backup name or id"), ProjectSelector),
    responses((status = 200, body = BackupView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn volume_backup_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(backup): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Json<BackupView>> {
    Ok(Json(backups::view(&app, &ctx, sel.project.as_deref(), &backup).await?))
}

/// Delete a volume backup (data other backups share is kept)
#[utoipa::path(delete, path = "/v1/volume-backups/{backup}", tag = "volume-backups", operation_id = "volume_backup_delete",
    params(("backup" = String, Path, description = "Backup name or id"), ProjectSelector),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn volume_backup_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(backup): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<StatusCode> {
    backups::delete(&app, &ctx, sel.project.as_deref(), &backup).await?;
    Ok(StatusCode::NO_CONTENT)
}
