//! Projects.

use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{already_exists, ApiError, ApiResult};
use crate::App;
use kumo_store::events::NewEvent;
use kumo_types::page::PageRequest;
use kumo_types::{ProjectCreate, ProjectView, ResultsPage};

pub async fn list(app: &App, ctx: &OpContext, page: &PageRequest) -> ApiResult<ResultsPage<ProjectView>> {
    let mut conn = read(app).await?;
    match (&ctx.actor.user, ctx.actor.operator) {
        (Some(user), false) => Ok(kumo_store::projects::list_for_user(&mut conn, user.id, page).await?),
        _ => Ok(kumo_store::projects::list(&mut conn, page).await?),
    }
}

pub async fn view(app: &App, ctx: &OpContext, project: &str) -> ApiResult<ProjectView> {
    super::project(&mut *read(app).await?, ctx, Some(project), Access::Read).await
}

pub async fn create(app: &App, ctx: &OpContext, p: &ProjectCreate) -> ApiResult<ProjectView> {
    ctx.authorize(Access::Operator)?;
    super::check_description(&p.description)?;
    let mut tx = app.store.begin().await?;
    let view = kumo_store::projects::create(&mut tx, p.name.as_str(), &p.description)
        .await
        .map_err(already_exists("project", p.name.as_str()))?;
    let cause = ctx.cause("project_create");
    let ev = kumo_store::events::record(&mut tx, &project_event(&view, "created", &cause)).await?;
    super::vpcs::ensure_default_network(&mut tx, view.id, &view.name, &cause).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(view.id), Some(&view.name), ev);
    Ok(view)
}

pub async fn delete(app: &App, ctx: &OpContext, project: &str) -> ApiResult<()> {
    ctx.authorize(Access::Operator)?;
    let sel = selector("project", project)?;
    let mut tx = app.store.begin().await?;
    let p = kumo_store::projects::get(&mut tx, &sel).await?.ok_or_else(|| ApiError::not_found("project", project))?;
    let children = kumo_store::projects::count_children(&mut tx, p.id).await?;
    if children > 0 {
        return Err(ApiError::conflict(format!(
            "project '{}' still has {children} instance(s), image(s) or floating IP(s); delete them first",
            p.name
        )));
    }
    kumo_store::projects::soft_delete(&mut tx, p.id).await?;
    let cause = ctx.cause("project_delete");
    let ev = kumo_store::events::record(&mut tx, &project_event(&p, "deleted", &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    Ok(())
}

/// The event of a project's own life (created, deleted).
fn project_event<'a>(p: &'a ProjectView, kind: &'a str, cause: &'a str) -> NewEvent<'a> {
    NewEvent {
        project_id: Some(p.id),
        resource_type: "project",
        resource_id: p.id.get(),
        resource_name: &p.name,
        kind,
        from_state: None,
        to_state: None,
        cause,
        detail: None,
    }
}
