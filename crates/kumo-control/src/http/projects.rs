//! `/v1/projects`

use super::{page, ApiJson, ApiQuery};
use crate::app::projects;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{ErrorBody, PageParams, ProjectCreate, ProjectView, ResultsPage};
use std::sync::Arc;

/// List projects
#[utoipa::path(get, path = "/v1/projects", tag = "projects", operation_id = "project_list",
    params(PageParams),
    responses((status = 200, description = "A page of projects", body = ResultsPage<ProjectView>),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn project_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<ProjectView>>> {
    Ok(Json(projects::list(&app, &ctx, &page(&p)?).await?))
}

/// Create a project
#[utoipa::path(post, path = "/v1/projects", tag = "projects", operation_id = "project_create",
    request_body = ProjectCreate,
    responses((status = 201, description = "Created", body = ProjectView),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn project_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiJson(body): ApiJson<ProjectCreate>,
) -> ApiResult<(StatusCode, Json<ProjectView>)> {
    Ok((StatusCode::CREATED, Json(projects::create(&app, &ctx, &body).await?)))
}

/// View a project
#[utoipa::path(get, path = "/v1/projects/{project}", tag = "projects", operation_id = "project_view",
    params(("project" = String, Path, description = "Project name or id")),
    responses((status = 200, body = ProjectView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn project_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(project): Path<String>,
) -> ApiResult<Json<ProjectView>> {
    Ok(Json(projects::view(&app, &ctx, &project).await?))
}

/// Delete an empty project
#[utoipa::path(delete, path = "/v1/projects/{project}", tag = "projects", operation_id = "project_delete",
    params(("project" = String, Path, description = "Project name or id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn project_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(project): Path<String>,
) -> ApiResult<StatusCode> {
    projects::delete(&app, &ctx, &project).await?;
    Ok(StatusCode::NO_CONTENT)
}
