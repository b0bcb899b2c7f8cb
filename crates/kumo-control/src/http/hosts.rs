//! `/v1/hosts` (operators)

use super::{page, ApiQuery};
use crate::app::hosts;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::Json;
use kumo_types::{ErrorBody, HostView, PageParams, ResultsPage};
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
