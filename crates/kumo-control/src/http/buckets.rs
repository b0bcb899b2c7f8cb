//! `/v1/buckets`: a project's object storage buckets (see [`crate::app::buckets`]).

use super::{page, ApiJson, ApiQuery, ProjectSelector};
use crate::app::buckets;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{BucketCreate, BucketUpdate, BucketView, ErrorBody, PageParams, ResultsPage};
use std::sync::Arc;

/// List a project's buckets with what they hold
#[utoipa::path(get, path = "/v1/buckets", tag = "buckets", operation_id = "bucket_list",
    params(ProjectSelector, PageParams),
    responses((status = 200, body = ResultsPage<BucketView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn bucket_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<BucketView>>> {
    Ok(Json(buckets::list(&app, &ctx, sel.project.as_deref(), &page(&p)?).await?))
}

/// View a bucket
#[utoipa::path(get, path = "/v1/buckets/{bucket}", tag = "buckets", operation_id = "bucket_view",
    params(("bucket" = String, Path, description = "Bucket name"), ProjectSelector),
    responses((status = 200, body = BucketView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn bucket_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Json<BucketView>> {
    Ok(Json(buckets::view(&app, &ctx, sel.project.as_deref(), &name).await?))
}

/// Make a bucket public-read or private (owners of the project)
#[utoipa::path(put, path = "/v1/buckets/{bucket}", tag = "buckets", operation_id = "bucket_update",
    params(("bucket" = String, Path, description = "Bucket name"), ProjectSelector), request_body = BucketUpdate,
    responses((status = 200, body = BucketView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn bucket_update(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<BucketUpdate>,
) -> ApiResult<Json<BucketView>> {
    Ok(Json(buckets::update(&app, &ctx, sel.project.as_deref(), &name, &body).await?))
}

/// Create a bucket
#[utoipa::path(post, path = "/v1/buckets", tag = "buckets", operation_id = "bucket_create",
    params(ProjectSelector), request_body = BucketCreate,
    responses((status = 201, body = BucketView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn bucket_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<BucketCreate>,
) -> ApiResult<(StatusCode, Json<BucketView>)> {
    Ok((StatusCode::CREATED, Json(buckets::create(&app, &ctx, sel.project.as_deref(), &body).await?)))
}

/// Delete an empty bucket
#[utoipa::path(delete, path = "/v1/buckets/{bucket}", tag = "buckets", operation_id = "bucket_delete",
    params(("bucket" = String, Path, description = "Bucket name"), ProjectSelector),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn bucket_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<StatusCode> {
    buckets::delete(&app, &ctx, sel.project.as_deref(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
