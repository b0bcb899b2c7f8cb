//! `/v1/access-keys`: S3 access keys of a project (see [`crate::app::access_keys`]).

use super::{page, ApiJson, ApiQuery, ProjectSelector};
use crate::app::access_keys;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{AccessKeyCreate, AccessKeyCreated, AccessKeyView, ErrorBody, PageParams, ResultsPage};
use std::sync::Arc;

/// List a project's S3 access keys
#[utoipa::path(get, path = "/v1/access-keys", tag = "access-keys", operation_id = "access_key_list",
    params(ProjectSelector, PageParams),
    responses((status = 200, body = ResultsPage<AccessKeyView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn access_key_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<AccessKeyView>>> {
    Ok(Json(access_keys::list(&app, &ctx, sel.project.as_deref(), &page(&p)?).await?))
}

/// Create an S3 access key for yourself; its secret is shown only in this answer
#[utoipa::path(post, path = "/v1/access-keys", tag = "access-keys", operation_id = "access_key_create",
    params(ProjectSelector), request_body = AccessKeyCreate,
    responses((status = 201, body = AccessKeyCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn access_key_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<AccessKeyCreate>,
) -> ApiResult<(StatusCode, Json<AccessKeyCreated>)> {
    Ok((StatusCode::CREATED, Json(access_keys::create(&app, &ctx, sel.project.as_deref(), &body).await?)))
}

/// View an S3 access key
#[utoipa::path(get, path = "/v1/access-keys/{access_key}", tag = "access-keys", operation_id = "access_key_view",
    params(("access_key" = String, Path, description = "Access key name or id"), ProjectSelector),
    responses((status = 200, body = AccessKeyView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn access_key_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Json<AccessKeyView>> {
    Ok(Json(access_keys::view(&app, &ctx, sel.project.as_deref(), &name).await?))
}

/// Delete an S3 access key (yours, or any as an owner of the project); it stops working at once
#[utoipa::path(delete, path = "/v1/access-keys/{access_key}", tag = "access-keys", operation_id = "access_key_delete",
    params(("access_key" = String, Path, description = "Access key name or id"), ProjectSelector),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn access_key_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<StatusCode> {
    access_keys::delete(&app, &ctx, sel.project.as_deref(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
