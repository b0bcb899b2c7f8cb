//! `/v1/users` (operators)

use super::{page, ApiJson, ApiQuery};
use crate::app::users;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{ErrorBody, PageParams, ResultsPage, UserCreate, UserView};
use std::sync::Arc;

/// List users (operators)
#[utoipa::path(get, path = "/v1/users", tag = "users", operation_id = "user_list",
    params(PageParams),
    responses((status = 200, description = "A page of users", body = ResultsPage<UserView>),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn user_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<UserView>>> {
    Ok(Json(users::list(&app, &ctx, &page(&p)?).await?))
}

/// Create a user (operators)
#[utoipa::path(post, path = "/v1/users", tag = "users", operation_id = "user_create",
    request_body = UserCreate,
    responses((status = 201, description = "Created", body = UserView),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn user_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiJson(body): ApiJson<UserCreate>,
) -> ApiResult<(StatusCode, Json<UserView>)> {
    Ok((StatusCode::CREATED, Json(users::create(&app, &ctx, &body).await?)))
}

/// View a user (operators)
#[utoipa::path(get, path = "/v1/users/{user}", tag = "users", operation_id = "user_view",
    params(("user" = String, Path, description = "User name or id")),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn user_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(user): Path<String>,
) -> ApiResult<Json<UserView>> {
    Ok(Json(users::view(&app, &ctx, &user).await?))
}

/// Delete a user and revoke all their tokens (operators)
#[utoipa::path(delete, path = "/v1/users/{user}", tag = "users", operation_id = "user_delete",
    params(("user" = String, Path, description = "User name or id")),
    responses((status = 204, description = "Deleted"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn user_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(user): Path<String>,
) -> ApiResult<StatusCode> {
    users::delete(&app, &ctx, &user).await?;
    Ok(StatusCode::NO_CONTENT)
}
