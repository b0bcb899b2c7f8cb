//! The REST API: routing, extractors that turn every bad input into the API's error body, the
//! request-id middleware, and one module of handlers per resource. Handlers only parse and
//! validate; the work is in [`crate::app`].

pub mod access_keys;
pub mod audit;
pub mod backups;
pub mod billing;
pub mod buckets;
pub mod events;
pub mod floating_ips;
pub mod forwarded;
pub mod hosts;
pub mod images;
pub mod instance_types;
pub mod instances;
pub mod login;
pub mod members;
pub mod membership;
pub mod metrics;
pub mod placement_groups;
pub mod projects;
pub mod quotas;
pub mod security_groups;
pub mod snapshots;
pub mod ssh_keys;
pub mod system;
pub mod tokens;
pub mod users;
pub mod volumes;
pub mod vpcs;
pub mod zones;

use crate::error::{ApiError, REQUEST_ID};
use crate::App;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use kumo_types::ErrorCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

/// Largest JSON request body accepted.
pub const JSON_BODY_MAX: usize = 64 * 1024;

/// JSON body extractor: syntax errors, wrong types, unknown fields → 400 `InvalidValue` with
/// serde's explanation; too large → 413.
/// `MAX` is the largest body accepted (default [`JSON_BODY_MAX`]).
pub struct ApiJson<T, const MAX: usize = JSON_BODY_MAX>(pub T);

impl<T: DeserializeOwned, S: Send + Sync, const MAX: usize> FromRequest<S> for ApiJson<T, MAX> {
    type Rejection = ApiError;
    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        let ct = req.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
        if !ct.starts_with("application/json") {
            return Err(ApiError::invalid("the request body must be JSON with 'Content-Type: application/json'"));
        }
        let bytes = axum::body::to_bytes(req.into_body(), MAX).await.map_err(|_| {
            ApiError::new(ErrorCode::PayloadTooLarge, format!("the request body is larger than {MAX} bytes"))
        })?;
        serde_json::from_slice(&bytes).map(ApiJson).map_err(|e| ApiError::invalid(format!("invalid request body: {e}")))
    }
}

/// Query-string extractor with the API's error body.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded_from_str(q).map(ApiQuery).map_err(|e| ApiError::invalid(format!("invalid query string: {e}")))
    }
}

fn serde_urlencoded_from_str<T: DeserializeOwned>(q: &str) -> Result<T, String> {
    axum::extract::Query::<T>::try_from_uri(&format!("/?{q}").parse().map_err(|e| format!("{e}"))?)
        .map(|axum::extract::Query(t)| t)
        .map_err(|e| e.body_text())
}

/// The `project` selector of project-scoped operations (required: without it the answer is 400).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ProjectSelector {
    /// Project name or id.
    #[param(
        required = true,
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub project: Option<String>,
}

/// The `project` selector of operations that also work without one (images: the public ones).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OptionalProjectSelector {
    /// Project name or id; omit it for the public images only.
    #[param(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
    pub project: Option<String>,
}

/// Validates list parameters.
pub fn page(p: &kumo_types::PageParams) -> Result<kumo_types::page::PageRequest, ApiError> {
    p.validate().map_err(ApiError::invalid)
}

/// Gives every request an id (in the error body, the `x-request-id` header and the logs).
pub async fn request_id(req: Request, next: Next) -> Response {
    let id = uuid::Uuid::new_v4().simple().to_string()[..16].to_string();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let started = std::time::Instant::now();
    let mut resp = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    tracing::debug!(request_id = %id, %method, %path, status = resp.status().as_u16(), elapsed_us = started.elapsed().as_micros() as u64, "request");
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, "this path does not take that HTTP method; see /v1/openapi.json")
}

async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such API path; the API is described at /v1/openapi.json")
}

/// The whole HTTP application.
pub fn router(app: Arc<App>) -> Router {
    router_with(app, Router::new())
}

/// The HTTP application plus `extra` routes (the dashboard, `kumo_web::router`), which get the
/// same request ids and audit log as the API.
pub fn router_with(app: Arc<App>, extra: Router<Arc<App>>) -> Router {
    let (api, _) = crate::openapi::router().split_for_parts();
    let (public, _) = crate::openapi::public_router().split_for_parts();
    let doc = Arc::new(crate::openapi::document());
    let operations = Arc::new(audit::Operations::from_document(&doc));
    let api = api.layer(axum::middleware::from_fn_with_state(app.clone(), crate::context::authenticate));
    // Prometheus (operators): outside /v1 and the OpenAPI document, same authentication.
    let prometheus = Router::new()
        .route("/metrics", axum::routing::get(metrics::prometheus))
        .layer(axum::middleware::from_fn_with_state(app.clone(), crate::context::authenticate));
    Router::new()
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(api)
        .merge(public)
        .merge(prometheus)
        .merge(membership::router())
        .merge(extra)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state((app.clone(), operations.clone()), audit::record))
        .layer(axum::middleware::from_fn_with_state((app.clone(), operations), crate::telemetry::track))
        .layer(axum::middleware::from_fn(request_id))
        // Outside the audit log and every handler: they all see the resolved client address.
        .layer(axum::middleware::from_fn_with_state(app.clone(), forwarded::resolve))
        .with_state(app)
}

/// Serves the API and `extra` routes (see [`router_with`]) until `shutdown` resolves.
pub async fn serve_with(
    app: Arc<App>,
    extra: Router<Arc<App>>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router_with(app, extra).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves the API until `shutdown` resolves. Handlers see the client's address (audit log, login
/// rate limit).
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(app).into_make_service_with_connect_info::<std::net::SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}
