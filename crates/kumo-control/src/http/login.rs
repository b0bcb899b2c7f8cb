//! `POST /v1/login`: the one operation that takes no bearer token.

use super::audit::{AuditNote, SourceAddr};
use super::ApiJson;
use crate::app::login::{self, LoginOutcome};
use crate::App;
use axum::extract::State;
use axum::http::header::RETRY_AFTER;
use axum::response::{IntoResponse, Response};
use axum::Json;
use kumo_types::{ErrorBody, LoginRequest, LoginResponse};
use std::sync::Arc;

/// Log in: exchange a user name and password for a session token (12 hours)
#[utoipa::path(post, path = "/v1/login", tag = "users", operation_id = "session_create",
    request_body = LoginRequest,
    security(()),
    responses((status = 200, body = LoginResponse), (status = 400, body = ErrorBody),
              (status = 401, description = "Wrong user name or password", body = ErrorBody),
              (status = 429, description = "Too many failed logins; see the Retry-After header", body = ErrorBody)))]
pub async fn session_create(
    State(app): State<Arc<App>>,
    SourceAddr(source): SourceAddr,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Response {
    let actor = format!("login as '{}'", body.username.chars().take(64).collect::<String>());
    let (mut resp, user_id) = match login::login(&app, &body, source).await {
        LoginOutcome::Ok(token, user_id) => (Json(token).into_response(), Some(user_id)),
        LoginOutcome::Err(e, Some(secs)) => (([(RETRY_AFTER, secs.to_string())], e).into_response(), None),
        LoginOutcome::Err(e, None) => (e.into_response(), None),
    };
    resp.extensions_mut().insert(AuditNote { actor, user_id });
    resp
}
