//! `/v1/me` and `/v1/system/*`: who am I, and the control plane's own status.

use crate::context::{Access, Actor, OpContext};
use crate::error::ApiResult;
use crate::reconciler::ReconcilerStatus;
use crate::App;
use axum::extract::State;
use axum::Json;
use kumo_types::ErrorBody;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// The caller.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeView {
    /// `operator` (tenant users come later).
    pub kind: String,
    /// Name of the token used.
    pub token_name: String,
}

/// Who is calling
#[utoipa::path(get, path = "/v1/me", tag = "system", operation_id = "me_view",
    responses((status = 200, body = MeView), (status = 401, body = ErrorBody)))]
pub async fn me_view(ctx: OpContext) -> ApiResult<Json<MeView>> {
    ctx.authorize(Access::Read)?;
    let Actor::Operator { token_name, .. } = ctx.actor;
    Ok(Json(MeView { kind: "operator".into(), token_name }))
}

/// Status of the background reconcilers (operators)
#[utoipa::path(get, path = "/v1/system/reconcilers", tag = "system", operation_id = "reconciler_list",
    responses((status = 200, body = Vec<ReconcilerStatus>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn reconciler_list(State(app): State<Arc<App>>, ctx: OpContext) -> ApiResult<Json<Vec<ReconcilerStatus>>> {
    ctx.authorize(Access::Operator)?;
    Ok(Json(vec![app.reconciler.status()]))
}
