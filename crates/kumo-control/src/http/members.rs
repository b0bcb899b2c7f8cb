//! `/v1/projects/{project}/members`: who may do what in a project.

use super::ApiJson;
use crate::app::members;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{ErrorBody, MemberAdd, MemberView};
use std::sync::Arc;

/// List a project's members and their roles
#[utoipa::path(get, path = "/v1/projects/{project}/members", tag = "projects", operation_id = "member_list",
    params(("project" = String, Path, description = "Project name or id")),
    responses((status = 200, body = Vec<MemberView>), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn member_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(project): Path<String>,
) -> ApiResult<Json<Vec<MemberView>>> {
    Ok(Json(members::list(&app, &ctx, &project).await?))
}

/// Add a member to a project, or change their role (owners, operators)
#[utoipa::path(post, path = "/v1/projects/{project}/members", tag = "projects", operation_id = "member_add",
    params(("project" = String, Path, description = "Project name or id")),
    request_body = MemberAdd,
    responses((status = 201, description = "Added (or role changed)", body = MemberView),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn member_add(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(project): Path<String>,
    ApiJson(body): ApiJson<MemberAdd>,
) -> ApiResult<(StatusCode, Json<MemberView>)> {
    Ok((StatusCode::CREATED, Json(members::add(&app, &ctx, &project, &body).await?)))
}

/// Remove a member from a project (owners, operators)
#[utoipa::path(delete, path = "/v1/projects/{project}/members/{user}", tag = "projects", operation_id = "member_remove",
    params(("project" = String, Path, description = "Project name or id"),
           ("user" = String, Path, description = "User name or id")),
    responses((status = 204, description = "Removed"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn member_remove(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path((project, user)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    members::remove(&app, &ctx, &project, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}
