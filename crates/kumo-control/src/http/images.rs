//! `/v1/images`

use super::{page, ApiQuery, ProjectSelector};
use crate::app::images;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{ErrorBody, ImageView, PageParams, ResultsPage};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

/// List public images and, with `project`, that project's images
#[utoipa::path(get, path = "/v1/images", tag = "images", operation_id = "image_list",
    params(ProjectSelector, PageParams),
    responses((status = 200, body = ResultsPage<ImageView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn image_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<ImageView>>> {
    Ok(Json(images::list(&app, &ctx, sel.project.as_deref(), &page(&p)?).await?))
}

/// View an image
#[utoipa::path(get, path = "/v1/images/{image}", tag = "images", operation_id = "image_view",
    params(("image" = String, Path, description = "Image name or id"), ProjectSelector),
    responses((status = 200, body = ImageView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn image_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(image): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Json<ImageView>> {
    Ok(Json(images::view(&app, &ctx, sel.project.as_deref(), &image).await?))
}

/// Delete an image no instance uses
#[utoipa::path(delete, path = "/v1/images/{image}", tag = "images", operation_id = "image_delete",
    params(("image" = String, Path, description = "Image name or id"), ProjectSelector),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn image_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(image): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<StatusCode> {
    images::delete(&app, &ctx, sel.project.as_deref(), &image).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Import parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// Name of the new image.
    pub name: String,
    /// Free-form description.
    pub description: Option<String>,
}

/// Import a disk image (qcow2 or raw, detected from the content) by streaming it as the body
#[utoipa::path(post, path = "/v1/images/import", tag = "images", operation_id = "image_import",
    params(ProjectSelector, ImportParams),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The image file"),
    responses((status = 201, body = ImageView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn image_import(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(params): ApiQuery<ImportParams>,
    body: Body,
) -> ApiResult<(StatusCode, Json<ImageView>)> {
    let stream = body.into_data_stream();
    let view = images::import(
        &app,
        &ctx,
        sel.project.as_deref(),
        &params.name,
        params.description.as_deref().unwrap_or(""),
        stream,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}
