//! `/v1/events`

use super::{page, ApiQuery, ProjectSelector};
use crate::app::events;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::State;
use axum::Json;
use kumo_types::{ErrorBody, EventView, PageParams, ResultsPage};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::IntoParams;

/// Filter of the event list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventFilter {
    /// Only events of this instance (name or id).
    pub instance: Option<String>,
}

/// List a project's events, oldest first
#[utoipa::path(get, path = "/v1/events", tag = "events", operation_id = "event_list",
    params(ProjectSelector, EventFilter, PageParams),
    responses((status = 200, body = ResultsPage<EventView>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub async fn event_list(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
    ApiQuery(filter): ApiQuery<EventFilter>,
    ApiQuery(p): ApiQuery<PageParams>,
) -> ApiResult<Json<ResultsPage<EventView>>> {
    Ok(Json(events::list(&app, &ctx, sel.project.as_deref(), filter.instance.as_deref(), &page(&p)?).await?))
}
