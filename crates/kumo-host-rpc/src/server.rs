//! The serving side of the host agent's API: an axum [`Router`] for an agent (authentication,
//! `POST /agent/v1/call`, `GET /agent/v1/health`) and [`serve_tls`] to serve a router over TLS.
//! See the crate docs for the protocol.

use crate::{CALL_PATH, DISK_PATH, HEALTH_PATH};
use anyhow::Context;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::Extension;
use axum::{Json, Router};
use kumo_host_api::wire::{dispatch, Call, Reply};
use kumo_host_api::{HostAgent, HostError, InstanceId, DISK_CHUNK_BYTES};
use rand::RngCore;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;

/// The largest call body accepted. Calls carry ids and specs, never bulk data; the largest is a
/// host's whole desired network (every NIC with its metadata and user data).
pub const MAX_CALL_BYTES: usize = 64 << 20;

/// The API for `agent`, open to requests that carry `Authorization: Bearer SECRET`. An empty
/// `secret` refuses every request.
pub fn router(agent: Arc<dyn HostAgent>, secret: String) -> Router {
    let secret: Arc<str> = secret.into();
    router_by_secret(Arc::new(move |given: &str| {
        (!secret.is_empty() && bool::from(given.as_bytes().ct_eq(secret.as_bytes()))).then(|| agent.clone())
    }))
}

/// Finds the agent a bearer secret is for (None: no agent takes it).
pub type BySecret = dyn Fn(&str) -> Option<Arc<dyn HostAgent>> + Send + Sync;

/// The API of several hosts behind one listener: each request is served by the agent its bearer
/// secret belongs to (`by_secret`), a request whose secret none takes is refused (401). The
/// protocol is [`router`]'s; a caller cannot tell the difference. `kumo-bench cluster` serves
/// its simulated hosts so (one listener for thousands of hosts).
pub fn router_by_secret(by_secret: Arc<BySecret>) -> Router {
    Router::new()
        .route(CALL_PATH, post(call))
        .route(HEALTH_PATH, get(health))
        .route(&format!("{DISK_PATH}/{{id}}/export"), get(read_export))
        .route(&format!("{DISK_PATH}/{{id}}/import"), put(write_import))
        .layer(DefaultBodyLimit::max(MAX_CALL_BYTES))
        // Outermost: nothing is read or called before the secret is checked.
        .layer(middleware::from_fn_with_state(by_secret, authenticate))
}

/// A new random secret for [`router`]: 256 bits from the OS, as hex.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Serves `router` over TLS with `tls` on `listener` until `shutdown` (then open requests get 5
/// s to finish). Handlers may read the peer's `ConnectInfo<SocketAddr>`.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Arc<rustls::ServerConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        // Open event streams never end by themselves: give requests a moment, then close.
        stopper.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    let config = axum_server::tls_rustls::RustlsConfig::from_config(tls);
    let listener = listener.into_std().context("the listener")?;
    axum_server::from_tcp_rustls(listener, config)
        .context("serve TLS on the listener")?
        .handle(handle)
        .serve(router.into_make_service_with_connect_info::<SocketAddr>())
        .await
        .context("serving TLS")?;
    Ok(())
}

/// A JSON error body: `{"error": "…"}`.
fn refuse(status: StatusCode, message: String) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

async fn authenticate(State(by_secret): State<Arc<BySecret>>, mut req: Request, next: Next) -> Response {
    let given =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let agent = given.and_then(|g| by_secret(g));
    let Some(agent) = agent else {
        let what = if given.is_some() { "a wrong secret" } else { "no bearer secret" };
        tracing::warn!(path = %req.uri().path(), "host agent API: refused a request with {what}");
        let mut resp = refuse(
            StatusCode::UNAUTHORIZED,
            format!("the host agent refuses a request with {what} (Authorization: Bearer SECRET)"),
        );
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return resp;
    };
    req.extensions_mut().insert(agent);
    next.run(req).await
}

async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

async fn call(Extension(agent): Extension<Arc<dyn HostAgent>>, body: Bytes) -> Response {
    let call: Call = match serde_json::from_slice(&body) {
        Ok(call) => call,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("the body is not a call of the host agent API ({{\"call\": NAME, \"args\": {{…}}}}): {e}"),
            )
        }
    };
    let name = call.name();
    tracing::debug!(call = name, "host agent call");
    // In a task of its own: a caller that goes away (its timeout) does not cut a call half-way.
    match tokio::spawn(async move { dispatch(&*agent, call).await }).await {
        Ok(answer) => Json(answer).into_response(),
        Err(e) => {
            tracing::error!(call = name, "host agent call failed: {e}");
            refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("{name}: the agent's task failed: {e}"))
        }
    }
}

/// A host's error of a disk transfer: 422 with the JSON of its [`Reply`] (it keeps its kind).
fn host_error(e: HostError) -> Response {
    (StatusCode::UNPROCESSABLE_ENTITY, Json(Reply::<()>::Err(e))).into_response()
}

/// A number of the query string (`offset`, `max`); the message of a 400 when it is not one.
fn query_number(q: &HashMap<String, String>, name: &str, default: Option<u64>) -> Result<u64, String> {
    match (q.get(name), default) {
        (Some(v), _) => v.parse().map_err(|_| format!("'{name}' must be a byte count (got '{v}')")),
        (None, Some(d)) => Ok(d),
        (None, None) => Err(format!("the query parameter '{name}' is missing")),
    }
}

fn instance_id(id: &str) -> Result<InstanceId, String> {
    id.parse().map_err(|_| format!("'{id}' is not an instance id"))
}

/// `GET /agent/v1/disks/{id}/export?offset=N&max=M`: bytes of a staged export.
async fn read_export(
    Extension(agent): Extension<Arc<dyn HostAgent>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let parsed = instance_id(&id)
        .and_then(|id| Ok((id, query_number(&q, "offset", None)?, query_number(&q, "max", Some(DISK_CHUNK_BYTES))?)));
    let (id, offset, max) = match parsed {
        Ok(p) => p,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    match tokio::spawn(async move { agent.read_export(id, offset, max).await }).await {
        Ok(Ok(bytes)) => ([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response(),
        Ok(Err(e)) => host_error(e),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("read_export: the agent's task failed: {e}")),
    }
}

/// `PUT /agent/v1/disks/{id}/import?offset=N`: writes the body into the incoming copy.
async fn write_import(
    Extension(agent): Extension<Arc<dyn HostAgent>>,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let parsed = instance_id(&id).and_then(|id| Ok((id, query_number(&q, "offset", None)?)));
    let (id, offset) = match parsed {
        Ok(p) => p,
        Err(message) => return refuse(StatusCode::BAD_REQUEST, message),
    };
    if body.len() as u64 > DISK_CHUNK_BYTES {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, format!("a chunk is at most {DISK_CHUNK_BYTES} bytes"));
    }
    // In a task of its own: a caller that goes away does not cut a write half-way.
    match tokio::spawn(async move { agent.write_import(id, offset, body.to_vec()).await }).await {
        Ok(Ok(())) => Json(Reply::Ok(())).into_response(),
        Ok(Err(e)) => host_error(e),
        Err(e) => refuse(StatusCode::INTERNAL_SERVER_ERROR, format!("write_import: the agent's task failed: {e}")),
    }
}
