//! `/v1/placement-groups`

use super::{page, ApiJson, ApiQuery, ProjectSelector};
use crate::app::placement_groups;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{ErrorBody, PageParams, PlacementGroupCreate, PlacementGroupView, ResultsPage};
use std::sync::Arc;

/// List a project's placement groups
#[utoipa::path(get, path = "/v1/placement-groups", tag = "placement-groups", operation_id = "placement_group_list",
    params(ProjectSelector, PageParams),
    responses((status = 200, body = ResultsPage<PlacementGroupView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn placement_group_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<PlacementGroupView>>> {
    Ok(Json(placement_groups::list(&app, &ctx, sel.project.as_deref(), &page(&p)?).await?))
}

/// Create a placement group
#[utoipa::path(post, path = "/v1/placement-groups", tag = "placement-groups", operation_id = "placement_group_create",
    params(ProjectSelector), request_body = PlacementGroupCreate,
    responses((status = 201, body = PlacementGroupView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn placement_group_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<PlacementGroupCreate>,
) -> ApiResult<(StatusCode, Json<PlacementGroupView>)> {
    Ok((StatusCode::CREATED, Json(placement_groups::create(&app, &ctx, sel.project.as_deref(), &body).await?)))
}

/// View a placement group
#[utoipa::path(get, path = "/v1/placement-groups/{placement_group}", tag = "placement-groups", operation_id = "placement_group_view",
    params(("placement_group" = String, Path, description = "Placement group name or id"), ProjectSelector),
    responses((status = 200, body = PlacementGroupView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn placement_group_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Json<PlacementGroupView>> {
    Ok(Json(placement_groups::view(&app, &ctx, sel.project.as_deref(), &name).await?))
}

/// Delete a placement group
#[utoipa::path(delete, path = "/v1/placement-groups/{placement_group}", tag = "placement-groups", operation_id = "placement_group_delete",
    params(("placement_group" = String, Path, description = "Placement group name or id"), ProjectSelector),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn placement_group_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(name): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<StatusCode> {
    placement_groups::delete(&app, &ctx, sel.project.as_deref(), &name).await?;
    Ok(StatusCode::NO_CONTENT)
}
