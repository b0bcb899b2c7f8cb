//! `/v1/images`

use super::{page, ApiQuery, OptionalProjectSelector, ProjectSelector};
use crate::app::images;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{ErrorBody, ImageCreate, ImageFacts, ImageView, PageParams, ResultsPage};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

/// List public images and, with `project`, that project's images
#[utoipa::path(get, path = "/v1/images", tag = "images", operation_id = "image_list",
    params(OptionalProjectSelector, PageParams),
    responses((status = 200, body = ResultsPage<ImageView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn image_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<OptionalProjectSelector>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<ImageView>>> {
    Ok(Json(images::list(&app, &ctx, sel.project.as_deref(), &page(&p)?).await?))
}

/// View an image
#[utoipa::path(get, path = "/v1/images/{image}", tag = "images", operation_id = "image_view",
    params(("image" = String, Path, description = "Image name or id"), OptionalProjectSelector),
    responses((status = 200, body = ImageView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn image_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(image): Path<String>,
    ApiQuery(sel): ApiQuery<OptionalProjectSelector>,
) -> ApiResult<Json<ImageView>> {
    Ok(Json(images::view(&app, &ctx, sel.project.as_deref(), &image).await?))
}

/// Delete an image no instance uses
#[utoipa::path(delete, path = "/v1/images/{image}", tag = "images", operation_id = "image_delete",
    params(("image" = String, Path, description = "Image name or id"), OptionalProjectSelector),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn image_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(image): Path<String>,
    ApiQuery(sel): ApiQuery<OptionalProjectSelector>,
) -> ApiResult<StatusCode> {
    images::delete(&app, &ctx, sel.project.as_deref(), &image).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Import parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ImportParams {
    /// Name of the new image.
    #[param(pattern = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")]
    pub name: String,
    /// Free-form description.
    #[param(max_length = 512)]
    pub description: Option<String>,
    /// Distribution in the image, as os-release's `ID` (`debian`, `ubuntu`, `rocky`…).
    #[param(pattern = "^[a-z0-9._-]{1,64}$")]
    pub os_family: Option<String>,
    /// Its version, as os-release's `VERSION_ID` (`12`, `24.04`…); needs `os_family`.
    #[param(pattern = "^[a-z0-9._-]{1,64}$")]
    pub os_version: Option<String>,
    /// The user cloud-init makes for the instance's SSH keys (`kumo instance ssh` logs in as it):
    /// a Linux user name.
    #[param(pattern = "^[a-z_][a-z0-9_-]{0,31}$")]
    pub default_user: Option<String>,
    /// Smallest memory an instance of the image may have, in MiB: smaller instance types are refused.
    #[param(minimum = 1, maximum = 262144)]
    pub min_memory_mib: Option<i64>,
    /// Smallest root disk, in GiB: an instance's root disk is grown to it.
    #[param(minimum = 1, maximum = 16384)]
    pub min_disk_gib: Option<i64>,
}

impl ImportParams {
    fn facts(&self) -> ImageFacts {
        ImageFacts {
            os_family: self.os_family.clone(),
            os_version: self.os_version.clone(),
            default_user: self.default_user.clone(),
            min_memory_mib: self.min_memory_mib,
            min_disk_gib: self.min_disk_gib,
        }
    }
}

/// Import a disk image (qcow2, raw, vmdk or vhdx, detected from the content) by streaming it as the body, with its OS facts
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
        &params.facts(),
        stream,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Make a project image from a snapshot or from a stopped instance's root disk
#[utoipa::path(post, path = "/v1/images", tag = "images", operation_id = "image_create",
    params(ProjectSelector), request_body = ImageCreate,
    responses((status = 201, body = ImageView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn image_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    super::ApiJson(body): super::ApiJson<ImageCreate>,
) -> ApiResult<(StatusCode, Json<ImageView>)> {
    Ok((StatusCode::CREATED, Json(images::create(&app, &ctx, sel.project.as_deref(), &body).await?)))
}

/// Download an image's disk (a standalone qcow2), streamed
#[utoipa::path(get, path = "/v1/images/{image}/export", tag = "images", operation_id = "image_export",
    params(("image" = String, Path, description = "Image name or id"), OptionalProjectSelector),
    responses((status = 200, description = "The image's disk as qcow2", content_type = "application/octet-stream", body = Vec<u8>),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn image_export(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(image): Path<String>,
    ApiQuery(sel): ApiQuery<OptionalProjectSelector>,
) -> ApiResult<(axum::http::HeaderMap, Body)> {
    use axum::http::{header, HeaderValue};
    use tokio::io::AsyncReadExt;
    let (path, file_name) = images::export(&app, &ctx, sel.project.as_deref(), &image).await?;
    let file = tokio::fs::File::open(&path).await.map_err(crate::error::ApiError::internal)?;
    let len = file.metadata().await.map_err(crate::error::ApiError::internal)?.len();
    // Streamed in 1 MiB pieces: never the whole image in memory.
    let stream = futures_util::stream::unfold(file, |mut f| async move {
        let mut buf = vec![0u8; 1 << 20];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    });
    let mut headers = axum::http::HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok((headers, Body::from_stream(stream)))
}
