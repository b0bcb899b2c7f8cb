//! `/v1/me/tokens`: the caller's API tokens.

use super::ApiJson;
use crate::app::me;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{ErrorBody, TokenCreate, TokenCreated, TokenView};
use std::sync::Arc;

/// List your API tokens (never their secrets)
#[utoipa::path(get, path = "/v1/me/tokens", tag = "tokens", operation_id = "token_list",
    responses((status = 200, body = Vec<TokenView>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn token_list(State(app): State<Arc<App>>, ctx: OpContext) -> ApiResult<Json<Vec<TokenView>>> {
    Ok(Json(me::token_list(&app, &ctx).await?))
}

/// Create an API token; its secret is shown only in this answer
#[utoipa::path(post, path = "/v1/me/tokens", tag = "tokens", operation_id = "token_create",
    request_body = TokenCreate,
    responses((status = 201, description = "Created", body = TokenCreated),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn token_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiJson(body): ApiJson<TokenCreate>,
) -> ApiResult<(StatusCode, Json<TokenCreated>)> {
    Ok((StatusCode::CREATED, Json(me::token_create(&app, &ctx, &body).await?)))
}

/// Revoke one of your API tokens (it stops working at once)
#[utoipa::path(delete, path = "/v1/me/tokens/{token}", tag = "tokens", operation_id = "token_delete",
    params(("token" = String, Path, description = "Token name (not id)", pattern = "^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")),
    responses((status = 204, description = "Revoked"), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn token_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(token): Path<String>,
) -> ApiResult<StatusCode> {
    me::token_delete(&app, &ctx, &token).await?;
    Ok(StatusCode::NO_CONTENT)
}
