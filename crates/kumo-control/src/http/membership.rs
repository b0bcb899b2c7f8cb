//! `/agent/v1/join` and `/agent/v1/heartbeat`: the controller's side of the agents' protocol
//! ([`kumo_host_api::membership`]). Not part of the REST API and its OpenAPI document: agents are
//! not users, and no user token is accepted here (join: a join token in the body; heartbeat: the
//! host's credential as the bearer).
//!
//! A join, and an agent saying it stops, are changes to the cloud and land in the audit log (as
//! `host_join` and `host_leave`, the actor naming the host); heartbeats are the hosts' leases,
//! renewed every few seconds by every host: only refused ones are audited (`host_heartbeat`).

use super::audit::AuditNote;
use super::ApiJson;
use crate::app::membership;
use crate::error::{ApiError, ApiResult};
use crate::App;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use kumo_host_api::membership::{Heartbeat, HeartbeatAck, JoinRequest, JoinResponse, Leave};
use std::sync::Arc;

/// The agents' operations the audit log names, as (method, route, operation id): they are not in
/// the OpenAPI document the other operation ids come from.
pub const AUDITED: [(&str, &str, &str); 3] = [
    ("POST", "/agent/v1/join", "host_join"),
    ("POST", "/agent/v1/leave", "host_leave"),
    ("POST", HEARTBEAT_PATH, "host_heartbeat"),
];

/// Where agents heartbeat. Accepted heartbeats are not in the audit log (they are the hosts'
/// leases, renewed every few seconds by every host: a host's `last_seen` is their record);
/// refused ones are, as joins and leaves are.
pub const HEARTBEAT_PATH: &str = "/agent/v1/heartbeat";

/// The routes, for [`super::router_with`].
pub fn router() -> Router<Arc<App>> {
    Router::new()
        .route("/agent/v1/join", post(join))
        .route("/agent/v1/leave", post(leave))
        .route(HEARTBEAT_PATH, post(heartbeat))
}

async fn join(State(app): State<Arc<App>>, ApiJson(req): ApiJson<JoinRequest>) -> Response {
    let actor = format!("agent joining as host '{}'", req.info.name.chars().take(64).collect::<String>());
    let mut resp = match membership::join(&app, req).await {
        Ok(joined) => Json::<JoinResponse>(joined).into_response(),
        Err(e) => e.into_response(),
    };
    resp.extensions_mut().insert(AuditNote { actor, user_id: None });
    resp
}

/// The host whose credential is the request's bearer.
async fn host_of(app: &App, headers: &HeaderMap) -> ApiResult<kumo_types::HostId> {
    let credential = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| h.split_once(' '))
        .filter(|(scheme, t)| scheme.eq_ignore_ascii_case("bearer") && !t.trim().is_empty())
        .map(|(_, t)| t.trim().to_string())
        .ok_or_else(|| ApiError::unauthenticated("missing 'Authorization: Bearer <host credential>' header"))?;
    membership::authenticate(app, &credential).await
}

async fn heartbeat(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    ApiJson(hb): ApiJson<Heartbeat>,
) -> ApiResult<Json<HeartbeatAck>> {
    let host = host_of(&app, &headers).await?;
    Ok(Json(membership::heartbeat(&app, host, hb).await?))
}

async fn leave(State(app): State<Arc<App>>, headers: HeaderMap, ApiJson(req): ApiJson<Leave>) -> Response {
    let (actor, result) = match host_of(&app, &headers).await {
        Ok(host) => (format!("agent of host {host}, stopping"), membership::leave(&app, host, &req).await),
        Err(e) => ("agent (unknown credential)".to_string(), Err(e)),
    };
    let mut resp = match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => e.into_response(),
    };
    resp.extensions_mut().insert(AuditNote { actor, user_id: None });
    resp
}
