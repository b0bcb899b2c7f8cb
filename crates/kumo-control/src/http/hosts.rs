//! `/v1/hosts` and `/v1/join-tokens` (operators)

use super::{page, ApiJson, ApiQuery};
use crate::app::hosts;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{ErrorBody, HostLabelsSet, HostView, JoinTokenCreate, JoinTokenCreated, PageParams, ResultsPage};
use std::sync::Arc;

/// List hosts with their capacity (operators)
#[utoipa::path(get, path = "/v1/hosts", tag = "hosts", operation_id = "host_list",
    params(PageParams),
    responses((status = 200, body = ResultsPage<HostView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn host_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<HostView>>> {
    Ok(Json(hosts::list(&app, &ctx, &page(&p)?).await?))
}

/// View a host (operators)
#[utoipa::path(get, path = "/v1/hosts/{host}", tag = "hosts", operation_id = "host_view",
    params(("host" = String, Path, description = "Host name or id")),
    responses((status = 200, body = HostView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn host_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(host): Path<String>,
) -> ApiResult<Json<HostView>> {
    Ok(Json(hosts::view(&app, &ctx, &host).await?))
}

/// Cordon a host: no new instance is placed on it; its instances keep running (operators)
#[utoipa::path(post, path = "/v1/hosts/{host}/cordon", tag = "hosts", operation_id = "host_cordon",
    params(("host" = String, Path, description = "Host name or id")),
    responses((status = 200, body = HostView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn host_cordon(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(host): Path<String>,
) -> ApiResult<Json<HostView>> {
    Ok(Json(hosts::set_cordoned(&app, &ctx, &host, true).await?))
}

/// Uncordon a host: the scheduler may place instances on it again (operators)
#[utoipa::path(post, path = "/v1/hosts/{host}/uncordon", tag = "hosts", operation_id = "host_uncordon",
    params(("host" = String, Path, description = "Host name or id")),
    responses((status = 200, body = HostView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn host_uncordon(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(host): Path<String>,
) -> ApiResult<Json<HostView>> {
    Ok(Json(hosts::set_cordoned(&app, &ctx, &host, false).await?))
}

/// Remove an agent host from the cloud: refused while anything is placed on it (operators)
#[utoipa::path(delete, path = "/v1/hosts/{host}", tag = "hosts", operation_id = "host_delete",
    params(("host" = String, Path, description = "Host name or id")),
    responses((status = 204, description = "Removed; its agent's credential no longer works"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn host_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(host): Path<String>,
) -> ApiResult<StatusCode> {
    hosts::delete(&app, &ctx, &host).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Set a host's labels, replacing them (operators): instance types with `host_labels` are placed
/// only on hosts that have them all
#[utoipa::path(put, path = "/v1/hosts/{host}/labels", tag = "hosts", operation_id = "host_labels_set",
    params(("host" = String, Path, description = "Host name or id")),
    request_body = HostLabelsSet,
    responses((status = 200, body = HostView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn host_labels_set(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(host): Path<String>,
    ApiJson(body): ApiJson<HostLabelsSet>,
) -> ApiResult<Json<HostView>> {
    Ok(Json(hosts::set_labels(&app, &ctx, &host, &body.labels).await?))
}

/// Drain a host: cordon it and move every instance off it to other hosts of its zone, one at a
/// time (cold migration); `drain` in the host's view shows the progress (operators)
#[utoipa::path(post, path = "/v1/hosts/{host}/drain", tag = "hosts", operation_id = "host_drain",
    params(("host" = String, Path, description = "Host name or id")),
    responses((status = 202, description = "Accepted: the host is cordoned and being drained", body = HostView),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
pub async fn host_drain(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(host): Path<String>,
) -> ApiResult<(StatusCode, Json<HostView>)> {
    Ok((StatusCode::ACCEPTED, Json(hosts::drain(&app, &ctx, &host).await?)))
}

/// Create a one-time join token for a `kumod agent` to join as a host of a zone; the token is
/// shown once (operators)
#[utoipa::path(post, path = "/v1/join-tokens", tag = "hosts", operation_id = "join_token_create",
    request_body = JoinTokenCreate,
    responses((status = 201, body = JoinTokenCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn join_token_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiJson(body): ApiJson<JoinTokenCreate>,
) -> ApiResult<(StatusCode, Json<JoinTokenCreated>)> {
    Ok((StatusCode::CREATED, Json(crate::app::join_tokens::create(&app, &ctx, &body).await?)))
}
