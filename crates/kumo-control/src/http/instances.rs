//! `/v1/instances`

use super::{page, ApiJson, ApiQuery, ProjectSelector};
use crate::app::instances;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::Json;
use kumo_types::{
    ErrorBody, InstanceAction, InstanceCreate, InstanceMigrate, InstanceResize, InstanceView, PageParams, ResultsPage,
};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

/// List a project's instances
#[utoipa::path(get, path = "/v1/instances", tag = "instances", operation_id = "instance_list",
    params(ProjectSelector, PageParams),
    responses((status = 200, body = ResultsPage<InstanceView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn instance_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<InstanceView>>> {
    Ok(Json(instances::list(&app, &ctx, sel.project.as_deref(), &page(&p)?).await?))
}

/// Create an instance; it converges to `running` in the background
#[utoipa::path(post, path = "/v1/instances", tag = "instances", operation_id = "instance_create",
    params(ProjectSelector), request_body = InstanceCreate,
    responses((status = 202, description = "Accepted, in state creating", body = InstanceView),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 413, body = ErrorBody), (status = 507, body = ErrorBody)))]
pub async fn instance_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<InstanceCreate>,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    Ok((StatusCode::ACCEPTED, Json(instances::create(&app, &ctx, sel.project.as_deref(), &body).await?)))
}

/// View an instance
#[utoipa::path(get, path = "/v1/instances/{instance}", tag = "instances", operation_id = "instance_view",
    params(("instance" = String, Path, description = "Instance name or id"), ProjectSelector),
    responses((status = 200, body = InstanceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn instance_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(instance): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Json<InstanceView>> {
    Ok(Json(instances::view(&app, &ctx, sel.project.as_deref(), &instance).await?))
}

async fn act(
    app: Arc<App>,
    ctx: OpContext,
    instance: String,
    sel: ProjectSelector,
    action: InstanceAction,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    Ok((StatusCode::ACCEPTED, Json(instances::act(&app, &ctx, sel.project.as_deref(), &instance, action).await?)))
}

/// Delete an instance; every host resource is removed in the background
#[utoipa::path(delete, path = "/v1/instances/{instance}", tag = "instances", operation_id = "instance_delete",
    params(("instance" = String, Path, description = "Instance name or id"), ProjectSelector),
    responses((status = 202, description = "Accepted, in state deleting", body = InstanceView),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn instance_delete(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(instance): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    act(app, ctx, instance, sel, InstanceAction::Delete).await
}

/// Start a stopped or failed instance
#[utoipa::path(post, path = "/v1/instances/{instance}/start", tag = "instances", operation_id = "instance_start",
    params(("instance" = String, Path, description = "Instance name or id"), ProjectSelector),
    responses((status = 202, description = "Accepted, in state starting", body = InstanceView),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn instance_start(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(instance): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    act(app, ctx, instance, sel, InstanceAction::Start).await
}

/// Stop an instance: ACPI power-off, forced after a deadline
#[utoipa::path(post, path = "/v1/instances/{instance}/stop", tag = "instances", operation_id = "instance_stop",
    params(("instance" = String, Path, description = "Instance name or id"), ProjectSelector),
    responses((status = 202, description = "Accepted, in state stopping", body = InstanceView),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn instance_stop(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(instance): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    act(app, ctx, instance, sel, InstanceAction::Stop).await
}

/// Reboot (reset) a running instance
#[utoipa::path(post, path = "/v1/instances/{instance}/reboot", tag = "instances", operation_id = "instance_reboot",
    params(("instance" = String, Path, description = "Instance name or id"), ProjectSelector),
    responses((status = 202, description = "Accepted, in state rebooting", body = InstanceView),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn instance_reboot(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(instance): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    act(app, ctx, instance, sel, InstanceAction::Reboot).await
}

/// Change the instance type of a stopped instance (up or down; the root disk never shrinks)
#[utoipa::path(post, path = "/v1/instances/{instance}/resize", tag = "instances", operation_id = "instance_resize",
    params(("instance" = String, Path, description = "Instance name or id"), ProjectSelector),
    request_body = InstanceResize,
    responses((status = 200, body = InstanceView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 507, body = ErrorBody)))]
pub async fn instance_resize(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(instance): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<InstanceResize>,
) -> ApiResult<Json<InstanceView>> {
    Ok(Json(instances::resize(&app, &ctx, sel.project.as_deref(), &instance, &body.instance_type).await?))
}

/// Move an instance to another host (operators). Cold: a running instance is stopped, its root
/// disk copied to the new host and checked there, and it starts again there; it keeps its name,
/// id, IP and MAC. It shows `migrating` (its reason says where to and how far) until the move
/// commits (then `starting` or `stopped` on the new host) or rolls back (then as it was, on its
/// host, with the reason)
#[utoipa::path(post, path = "/v1/instances/{instance}/migrate", tag = "instances", operation_id = "instance_migrate",
    params(("instance" = String, Path, description = "Instance name or id"), ProjectSelector),
    request_body = InstanceMigrate,
    responses((status = 202, description = "Accepted, in state migrating", body = InstanceView),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 507, body = ErrorBody)))]
pub async fn instance_migrate(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(instance): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiJson(body): ApiJson<InstanceMigrate>,
) -> ApiResult<(StatusCode, Json<InstanceView>)> {
    let view = crate::app::migrations::migrate(&app, &ctx, sel.project.as_deref(), &instance, &body).await?;
    Ok((StatusCode::ACCEPTED, Json(view)))
}

/// Where to read the serial console from.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SerialParams {
    /// Byte offset to read from (default 0); pass the previous response's `kumo-serial-next-offset` to follow.
    /// The log keeps only its newest bytes (`kumod --serial-log-max-mib`): an older offset reads from the
    /// oldest byte kept, and the response's `kumo-serial-start-offset` says where that is.
    pub offset: Option<u64>,
    /// At most this many bytes (default and maximum 1 MiB).
    pub max_bytes: Option<usize>,
}

const SERIAL_MAX: usize = 1 << 20;

/// Read the serial console (text)
#[utoipa::path(get, path = "/v1/instances/{instance}/serial-console", tag = "instances", operation_id = "instance_serial_console",
    params(("instance" = String, Path, description = "Instance name or id"), ProjectSelector, SerialParams),
    responses((status = 200, description = "Console output; header kumo-serial-next-offset tells where to continue, \
        kumo-serial-start-offset the offset of the first byte returned (later than the one asked for when older \
        output was trimmed; then kumo-serial-skipped-bytes says how much was lost)",
               content_type = "text/plain", body = String),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn instance_serial_console(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(instance): Path<String>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(params): ApiQuery<SerialParams>,
) -> ApiResult<(HeaderMap, Vec<u8>)> {
    let max = params.max_bytes.unwrap_or(SERIAL_MAX).clamp(1, SERIAL_MAX);
    let offset = params.offset.unwrap_or(0);
    let chunk = instances::serial(&app, &ctx, sel.project.as_deref(), &instance, offset, max).await?;
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert("kumo-serial-next-offset", HeaderValue::from(chunk.next));
    headers.insert("kumo-serial-start-offset", HeaderValue::from(chunk.start));
    if chunk.start > offset {
        headers.insert("kumo-serial-skipped-bytes", HeaderValue::from(chunk.start - offset));
    }
    Ok((headers, chunk.bytes))
}
