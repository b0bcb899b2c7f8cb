//! `/v1/me` and `/v1/system/*`: who am I, and the control plane's own status.

use crate::context::{Access, OpContext};
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
    /// `operator` (a cloud operator) or `user` (a tenant user).
    pub kind: String,
    /// Name of the token used.
    pub token_name: String,
    /// The user the token belongs to (null for the bootstrap operator token).
    pub user: Option<String>,
}

/// Who is calling
#[utoipa::path(get, path = "/v1/me", tag = "system", operation_id = "me_view",
    responses((status = 200, body = MeView), (status = 401, body = ErrorBody)))]
pub async fn me_view(ctx: OpContext) -> ApiResult<Json<MeView>> {
    ctx.authorize(Access::Read)?;
    let kind = if ctx.actor.operator { "operator" } else { "user" };
    Ok(Json(MeView { kind: kind.into(), token_name: ctx.actor.token_name, user: ctx.actor.user.map(|u| u.name) }))
}

/// Status of the background reconcilers (operators)
#[utoipa::path(get, path = "/v1/system/reconcilers", tag = "system", operation_id = "reconciler_list",
    responses((status = 200, body = Vec<ReconcilerStatus>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn reconciler_list(State(app): State<Arc<App>>, ctx: OpContext) -> ApiResult<Json<Vec<ReconcilerStatus>>> {
    ctx.authorize(Access::Operator)?;
    Ok(Json(vec![app.reconciler.status()]))
}
