//! Events of a project.

use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{ApiError, ApiResult};
use crate::App;
use kumo_types::page::PageRequest;
use kumo_types::{EventView, InstanceId, ProjectId, ResultsPage};

pub async fn list(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    instance: Option<&str>,
    page: &PageRequest,
) -> ApiResult<ResultsPage<EventView>> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    let resource = match instance {
        None => None,
        Some(i) => {
            let sel = selector("instance", i)?;
            // Events outlive instances: look among deleted ones too when given an id.
            match kumo_store::instances::get(&mut conn, p.id, &sel).await? {
                Some(rec) => Some(rec.view.id),
                None => match sel {
                    kumo_types::NameOrId::Id(id) => Some(InstanceId::from(id)),
                    kumo_types::NameOrId::Name(_) => return Err(ApiError::not_found("instance", i)),
                },
            }
        }
    };
    Ok(kumo_store::events::list(&mut conn, p.id, resource.map(InstanceId::get), page).await?)
}

/// The live event stream's feed: every recorded event is published here once its transaction has
/// committed (never before: a rolled-back change must not be announced). A tokio broadcast
/// channel, so `GET /v1/events/stream` needs no polling of the database. A subscriber that falls
/// more than [`EventBus::CAPACITY`] events behind is told it lagged (it should re-read the list).
pub struct EventBus {
    tx: tokio::sync::broadcast::Sender<std::sync::Arc<Published>>,
}

/// An event on the bus, with the id of its project (for filtering).
#[derive(Debug, Clone)]
pub struct Published {
    pub project_id: Option<ProjectId>,
    pub view: EventView,
}

impl Default for EventBus {
    fn default() -> EventBus {
        EventBus { tx: tokio::sync::broadcast::channel(EventBus::CAPACITY).0 }
    }
}

impl EventBus {
    /// Events a subscriber may fall behind before it misses some.
    pub const CAPACITY: usize = 1024;

    /// Publishes a committed event. `project` names its project (the view from the store does not).
    pub fn publish(&self, project_id: Option<ProjectId>, project: Option<&str>, mut view: EventView) {
        view.project = project.map(String::from);
        // No subscriber is not an error.
        let _ = self.tx.send(std::sync::Arc::new(Published { project_id, view }));
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<std::sync::Arc<Published>> {
        self.tx.subscribe()
    }
}

/// Authorises a subscription to a project's live events (like [`list`]) and returns the project id.
pub async fn stream_project(app: &App, ctx: &OpContext, project: Option<&str>) -> ApiResult<ProjectId> {
    let mut conn = read(app).await?;
    Ok(super::project(&mut conn, ctx, project, Access::Read).await?.id)
}

/// Whether the holder of a token (by its hash) may still read a project's events: the token is
/// still valid (not revoked, expired or logged out) and its user still a member of the project
/// (or an operator). Any error counts as no: a stream that cannot prove its authority ends.
pub async fn still_authorised(app: &App, token_hash: &str, project_id: ProjectId) -> bool {
    match crate::context::resolve_hash(app, token_hash.to_string()).await {
        Ok(actor) => {
            let ctx = OpContext { actor, request_id: String::new() };
            ctx.authorize_project(project_id, "", Access::Read).is_ok()
        }
        Err(_) => false,
    }
}
