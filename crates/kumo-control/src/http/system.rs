//! `/v1/me` and `/v1/system/*`: who am I, and the control plane's own status.

use crate::background::{self, ReconcilerStatus};
use crate::context::{Access, OpContext};
use crate::error::ApiResult;
use crate::App;
use axum::extract::State;
use axum::Json;
use kumo_types::{ErrorBody, MeView};
use std::sync::Arc;

/// Who is calling, and for tenant users their projects and roles
#[utoipa::path(get, path = "/v1/me", tag = "system", operation_id = "me_view",
    responses((status = 200, body = MeView), (status = 401, body = ErrorBody)))]
pub async fn me_view(State(app): State<Arc<App>>, ctx: OpContext) -> ApiResult<Json<MeView>> {
    Ok(Json(crate::app::me::view(&app, &ctx).await?))
}

/// Status of the background tasks (operators)
#[utoipa::path(get, path = "/v1/system/reconcilers", tag = "system", operation_id = "reconciler_list",
    responses((status = 200, body = Vec<ReconcilerStatus>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn reconciler_list(State(app): State<Arc<App>>, ctx: OpContext) -> ApiResult<Json<Vec<ReconcilerStatus>>> {
    ctx.authorize(Access::Operator)?;
    Ok(Json(background::statuses(&app)))
}
