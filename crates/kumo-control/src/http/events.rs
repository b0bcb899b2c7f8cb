//! `/v1/events`

use super::{page, ApiQuery, ProjectSelector};
use crate::app::events;
use crate::context::OpContext;
use crate::error::ApiResult;
use crate::App;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::Json;
use kumo_types::{ErrorBody, EventView, PageParams, ResultsPage};
use serde::Deserialize;
use std::sync::Arc;
use tokio::sync::broadcast::error::RecvError;
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

/// Follow a project's events live (server-sent events)
///
/// Every event recorded in the project from now on, as `event: kumo` with the event (as in
/// `event_list`) as JSON data, and a comment every 15 seconds to keep the connection open. A client
/// that falls more than 1024 events behind gets `event: lagged` (data: how many it missed) and
/// should re-read `GET /v1/events`.
#[utoipa::path(get, path = "/v1/events/stream", tag = "events", operation_id = "event_stream",
    params(ProjectSelector),
    responses((status = 200, description = "A stream of `event: kumo` messages whose data is an event",
               content_type = "text/event-stream", body = EventView),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn event_stream(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>>> {
    let project_id = events::stream_project(&app, &ctx, sel.project.as_deref()).await?;
    Ok(project_event_stream(&app, project_id))
}

/// The live events of one project as server-sent events (`event: kumo`, data = the event view),
/// with keep-alives. The caller has authorised the subscription (`app::events::stream_project`);
/// the dashboard serves the same stream to its cookie sessions.
pub fn project_event_stream(
    app: &App,
    project_id: uuid::Uuid,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    // Subscribe before answering, so nothing that happens after the response head is missed.
    let rx = app.events.subscribe();
    let stream = futures_util::stream::unfold(rx, move |mut rx| async move {
        loop {
            match rx.recv().await {
                Ok(p) if p.project_id == Some(project_id) => {
                    let ev = SseEvent::default().event("kumo").json_data(&p.view).unwrap_or_default();
                    return Some((Ok(ev), rx));
                }
                Ok(_) => continue,
                Err(RecvError::Lagged(n)) => {
                    return Some((Ok(SseEvent::default().event("lagged").data(n.to_string())), rx));
                }
                Err(RecvError::Closed) => return None,
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
}
