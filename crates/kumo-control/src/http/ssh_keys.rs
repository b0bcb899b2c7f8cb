//! `/v1/ssh-keys`

use super::{page, ApiJson, ApiQuery, ProjectSelector};
use crate::app::ssh_keys;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{ErrorBody, PageParams, ResultsPage, SshKeyCreate, SshKeyView};
use std::sync::Arc;

/// List a project's SSH keys
#[utoipa::path(get, path = "/v1/ssh-keys", tag = "ssh-keys", operation_id = "ssh_key_list",
    params(ProjectSelector, PageParams),
    responses((status = 200, body = ResultsPage<SshKeyView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn ssh_key_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<SshKeyView>>> {
    Ok(Json(ssh_keys::list(&app, &ctx, sel.project.as_deref(), &page(&p)?).await?))
}

/// Create a SSH key
#[utoipa::path(post, path = "/v1/ssh-keys", tag = "ssh-keys", operation_id = "ssh_key_create",
    params(ProjectSelector), request_body = SshKeyCreate,
    responses((status = 201, body = SshKeyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn ssh_key_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<SshKeyCreate>,
) -> ApiResult<(StatusCode, Json<SshKeyView>)> {
    Ok((StatusCode::CREATED, Json(ssh_keys::create(&app, &ctx, sel.project.as_deref(), &body).await?)))
}

/// View a SSH key
#[utoipa::path(get, path = "/v1/ssh-keys/{ssh_key}", tag = "ssh-keys", operation_id = "ssh_key_view",
    params(("ssh_key" = String, Path, description = "Ssh key name or id"), ProjectSelector),
    responses((status = 200, body = SshKeyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn ssh_key_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Json<SshKeyView>> {
    Ok(Json(ssh_keys::view(&app, &ctx, sel.project.as_deref(), &name).await?))
}

/// Delete a SSH key
#[utoipa::path(delete, path = "/v1/ssh-keys/{ssh_key}", tag = "ssh-keys", operation_id = "ssh_key_delete",
    params(("ssh_key" = String, Path, description = "Ssh key name or id"), ProjectSelector),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn ssh_key_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<StatusCode> {
    ssh_keys::delete(&app, &ctx, sel.project.as_deref(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
