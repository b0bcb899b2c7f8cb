//! `/v1/zones` (every user lists and views; operators create)

use super::{page, ApiJson, ApiQuery};
use crate::app::zones;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use kumo_types::{ErrorBody, PageParams, ResultsPage, ZoneCreate, ZoneView};
use std::sync::Arc;

/// List zones (operators also see their hosts' summed capacity)
#[utoipa::path(get, path = "/v1/zones", tag = "zones", operation_id = "zone_list",
    params(PageParams),
    responses((status = 200, body = ResultsPage<ZoneView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub async fn zone_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<ZoneView>>> {
    Ok(Json(zones::list(&app, &ctx, &page(&p)?).await?))
}

/// Create a zone (operators)
#[utoipa::path(post, path = "/v1/zones", tag = "zones", operation_id = "zone_create",
    request_body = ZoneCreate,
    responses((status = 201, body = ZoneView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn zone_create(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiJson(body): ApiJson<ZoneCreate>,
) -> ApiResult<(StatusCode, Json<ZoneView>)> {
    Ok((StatusCode::CREATED, Json(zones::create(&app, &ctx, &body).await?)))
}

/// View a zone (operators also see its hosts' summed capacity)
#[utoipa::path(get, path = "/v1/zones/{zone}", tag = "zones", operation_id = "zone_view",
    params(("zone" = String, Path, description = "Zone name or id")),
    responses((status = 200, body = ZoneView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn zone_view(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    Path(zone): Path<String>,
) -> ApiResult<Json<ZoneView>> {
    Ok(Json(zones::view(&app, &ctx, &zone).await?))
}
