//! `/agent/v1/join` and `/agent/v1/heartbeat`: the controller's side of the agents' protocol
//! ([`kumo_host_api::membership`]). Not part of the REST API and its OpenAPI document: agents are
//! not users, and no user token is accepted here (join: a join token in the body; heartbeat: the
//! host's credential as the bearer).

use super::ApiJson;
use crate::app::membership;
use crate::error::{ApiError, ApiResult};
use crate::App;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::routing::post;
use axum::{Json, Router};
use kumo_host_api::membership::{Heartbeat, HeartbeatAck, JoinRequest, JoinResponse};
use std::sync::Arc;

/// Where agents heartbeat. Accepted heartbeats are not in the audit log (joins and refused
/// heartbeats are).
pub const HEARTBEAT_PATH: &str = "/agent/v1/heartbeat";

/// The routes, for [`super::router_with`].
pub fn router() -> Router<Arc<App>> {
    Router::new().route("/agent/v1/join", post(join)).route(HEARTBEAT_PATH, post(heartbeat))
}

async fn join(State(app): State<Arc<App>>, ApiJson(req): ApiJson<JoinRequest>) -> ApiResult<Json<JoinResponse>> {
    Ok(Json(membership::join(&app, req).await?))
}

async fn heartbeat(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> ApiResult<Json<HeartbeatAck>> {
    let credential = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, t)| scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty())
        .map(|(_, t)| t.trim().to_string())
        .ok_or_else(|| ApiError::unauthenticated("missing 'Authorization: Bearer <host credential>' header"))?;
    let host = membership::authenticate(&app, &credential).await?;
    Ok(Json(membership::heartbeat(&app, host, hb).await?))
}
