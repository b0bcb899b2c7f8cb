//! `/v1/instance-types`

use super::{page, ApiJson, ApiQuery};
use crate::app::instance_types;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{ErrorBody, InstanceTypeCreate, InstanceTypeView, PageParams, ResultsPage};
use std::sync::Arc;

/// List instance types (plans)
#[utoipa::path(get, path = "/v1/instance-types", tag = "instance-types", operation_id = "instance_type_list",
    params(PageParams),
    responses((status = 200, body = ResultsPage<InstanceTypeView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn instance_type_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<InstanceTypeView>>> {
    Ok(Json(instance_types::list(&app, &ctx, &page(&p)?).await?))
}

/// Add an instance type to the catalogue (operators)
#[utoipa::path(post, path = "/v1/instance-types", tag = "instance-types", operation_id = "instance_type_create",
    request_body = InstanceTypeCreate,
    responses((status = 201, body = InstanceTypeView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn instance_type_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiJson(body): ApiJson<InstanceTypeCreate>,
) -> ApiResult<(StatusCode, Json<InstanceTypeView>)> {
    Ok((StatusCode::CREATED, Json(instance_types::create(&app, &ctx, &body).await?)))
}

/// View an instance type
#[utoipa::path(get, path = "/v1/instance-types/{instance_type}", tag = "instance-types", operation_id = "instance_type_view",
    params(("instance_type" = String, Path, description = "Instance type name (not id)", pattern = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")),
    responses((status = 200, body = InstanceTypeView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn instance_type_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
) -> ApiResult<Json<InstanceTypeView>> {
    Ok(Json(instance_types::view(&app, &ctx, &name).await?))
}

/// Remove an unused instance type from the catalogue (operators)
#[utoipa::path(delete, path = "/v1/instance-types/{instance_type}", tag = "instance-types", operation_id = "instance_type_delete",
    params(("instance_type" = String, Path, description = "Instance type name (not id)", pattern = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn instance_type_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    instance_types::delete(&app, &ctx, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
