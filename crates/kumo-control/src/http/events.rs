//! `/v1/events`

use super::{page, ApiQuery, ProjectSelector};
use crate::app::events;
use crate::context::{OpContext, TokenHash};
use crate::error::{ApiError, ApiResult};
use crate::App;
use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::{Extension, Json};
use kumo_types::{ErrorBody, EventView, PageParams, ProjectId, ResultsPage};
use serde::Deserialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::watch;
use utoipa::IntoParams;

/// Filter of the event list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventFilter {
    /// Only events of this instance (name or id).
    #[param(
        pattern = "^([a-z]([a-z0-9-]{0,61}[a-z0-9])?|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
    )]
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
/// should re-read `GET /v1/events`. The stream ends, after an `event: revoked`, as soon as the
/// token is revoked or expires, the session logs out, or the caller's membership is removed.
#[utoipa::path(get, path = "/v1/events/stream", tag = "events", operation_id = "event_stream",
    params(ProjectSelector),
    responses((status = 200, description = "A stream of `event: kumo` messages whose data is an event",
               content_type = "text/event-stream", body = EventView),
              (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn event_stream(
    State(app): State<Arc<App>>,
    ctx: OpContext,
    token: Option<Extension<TokenHash>>,
    ApiQuery(sel): ApiQuery<ProjectSelector>,
) -> ApiResult<Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>>> {
    let project_id = events::stream_project(&app, &ctx, sel.project.as_deref()).await?;
    let Some(Extension(TokenHash(hash))) = token else {
        return Err(ApiError::unauthenticated("missing credentials"));
    };
    Ok(project_event_stream(&app, hash, project_id))
}

/// How often an open stream re-checks its authority even when nothing is revoked here (tokens
/// and sessions expire on their own).
pub const RECHECK_PERIOD: Duration = Duration::from_secs(5);

struct StreamState {
    app: Arc<App>,
    events: broadcast::Receiver<Arc<events::Published>>,
    revocations: watch::Receiver<u64>,
    tick: tokio::time::Interval,
    token_hash: String,
    project_id: ProjectId,
    ended: bool,
}

impl StreamState {
    /// The last message of a stream whose authority is gone; the stream ends after it.
    fn end(mut self) -> Option<(Result<SseEvent, std::convert::Infallible>, StreamState)> {
        self.ended = true;
        let ev = SseEvent::default().event("revoked").data(
            "access to this project's events ended (token revoked or expired, logged out, or membership removed)",
        );
        Some((Ok(ev), self))
    }
}

/// The live events of one project as server-sent events (`event: kumo`, data = the event view),
/// with keep-alives. The caller has authorised the subscription (`app::events::stream_project`);
/// the dashboard serves the same stream to its cookie sessions.
///
/// An open stream must not outlive the authority it was opened with: before each event it
/// re-checks that the token (by `token_hash`) is still valid and still allows reading the project,
/// and it re-checks at once when any token or membership is withdrawn (the token cache's
/// revocation signal) and every [`RECHECK_PERIOD`]. Once the check fails it sends
/// `event: revoked` and ends; no event is delivered after that.
pub fn project_event_stream(
    app: &Arc<App>,
    token_hash: String,
    project_id: ProjectId,
) -> Sse<impl futures_util::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    // Subscribe before answering, so nothing that happens after the response head is missed.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + RECHECK_PERIOD, RECHECK_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = StreamState {
        app: app.clone(),
        events: app.events.subscribe(),
        revocations: app.tokens.subscribe(),
        tick,
        token_hash,
        project_id,
        ended: false,
    };
    let stream = futures_util::stream::unfold(state, |mut st| async move {
        if st.ended {
            return None;
        }
        loop {
            tokio::select! {
                r = st.events.recv() => match r {
                    Ok(p) if p.project_id == Some(st.project_id) => {
                        if !events::still_authorised(&st.app, &st.token_hash, st.project_id).await {
                            return st.end();
                        }
                        let ev = SseEvent::default().event("kumo").json_data(&p.view).unwrap_or_default();
                        return Some((Ok(ev), st));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        return Some((Ok(SseEvent::default().event("lagged").data(n.to_string())), st));
                    }
                    Err(RecvError::Closed) => return None,
                },
                // The sender lives in the App this stream holds: it cannot close under us.
                _ = st.revocations.changed() => {
                    if !events::still_authorised(&st.app, &st.token_hash, st.project_id).await {
                        return st.end();
                    }
                }
                _ = st.tick.tick() => {
                    if !events::still_authorised(&st.app, &st.token_hash, st.project_id).await {
                        return st.end();
                    }
                }
            }
        }
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(15)))
}
