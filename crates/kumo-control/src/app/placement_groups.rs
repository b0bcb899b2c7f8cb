//! Placement groups of a project: how the scheduler places their instances relative to each other
//! (see [`crate::scheduler::rank_in_group`]). Nothing on a host; no quota, at most
//! [`PLACEMENT_GROUPS_PER_PROJECT`] per project.

use super::vpcs::event;
use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{already_exists, ApiError, ApiResult};
use crate::App;
use kumo_store::Conn;
use kumo_types::page::PageRequest;
use kumo_types::{
    Name, NameOrId, PlacementGroupCreate, PlacementGroupView, ProjectId, ResultsPage, PLACEMENT_GROUPS_PER_PROJECT,
};

/// At most this many member names in a message; then "and N more".
const NAMES_SHOWN: usize = 5;

pub async fn list(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    page: &PageRequest,
) -> ApiResult<ResultsPage<PlacementGroupView>> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    Ok(kumo_store::placement_groups::list(&mut conn, p.id, page).await?)
}

pub async fn view(app: &App, ctx: &OpContext, project: Option<&str>, group: &str) -> ApiResult<PlacementGroupView> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    let sel = selector("placement group", group)?;
    kumo_store::placement_groups::get(&mut conn, p.id, &sel)
        .await?
        .ok_or_else(|| ApiError::not_found("placement group", group))
}

/// The placement group an instance create names (in the instance's project): 400 when the name is
/// malformed or no live group has it.
pub(crate) async fn referenced(conn: &mut Conn, project_id: ProjectId, group: &str) -> ApiResult<PlacementGroupView> {
    let name = Name::parse(group).map_err(|e| ApiError::invalid(format!("placement_group: {e}")))?;
    kumo_store::placement_groups::get(conn, project_id, &NameOrId::Name(name)).await?.ok_or_else(|| {
        ApiError::invalid(format!("placement group '{group}' does not exist (see `kumo placement-group list`)"))
    })
}

pub async fn create(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    c: &PlacementGroupCreate,
) -> ApiResult<PlacementGroupView> {
    super::check_description(&c.description)?;
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Write).await?;
    let n = kumo_store::placement_groups::count(&mut tx, p.id).await?;
    if n >= PLACEMENT_GROUPS_PER_PROJECT {
        return Err(ApiError::invalid(format!(
            "project '{}' has {n} placement groups, the most a project may have; delete one first",
            p.name
        )));
    }
    let g = kumo_store::placement_groups::insert(&mut tx, p.id, c.name.as_str(), &c.description, c.policy)
        .await
        .map_err(already_exists("placement group", c.name.as_str()))?;
    let cause = ctx.cause("placement_group_create");
    let ev =
        kumo_store::events::record(&mut tx, &event(p.id, "placement_group", g.id, &g.name, "created", &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    Ok(g)
}

/// Deletes a group without live instances (409 naming them otherwise).
pub async fn delete(app: &App, ctx: &OpContext, project: Option<&str>, group: &str) -> ApiResult<()> {
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Write).await?;
    let sel = selector("placement group", group)?;
    let g = kumo_store::placement_groups::get(&mut tx, p.id, &sel)
        .await?
        .ok_or_else(|| ApiError::not_found("placement group", group))?;
    // Taken first, so an instance being created in the group waits for (or sees) the delete.
    if !kumo_store::placement_groups::lock(&mut tx, g.id).await? {
        return Err(ApiError::not_found("placement group", group));
    }
    let members = kumo_store::placement_groups::members(&mut tx, g.id).await?;
    if !members.is_empty() {
        let mut shown: Vec<&str> = members.iter().take(NAMES_SHOWN).map(String::as_str).collect();
        let more = members.len().saturating_sub(NAMES_SHOWN);
        let more = (more > 0).then(|| format!("and {more} more"));
        shown.extend(more.as_deref());
        let n = members.len();
        return Err(ApiError::conflict(format!(
            "placement group '{}' still has {n} instance{} ({}); delete {} first",
            g.name,
            if n == 1 { "" } else { "s" },
            shown.join(", "),
            if n == 1 { "it" } else { "them" }
        )));
    }
    kumo_store::placement_groups::soft_delete(&mut tx, g.id).await?;
    let cause = ctx.cause("placement_group_delete");
    let ev =
        kumo_store::events::record(&mut tx, &event(p.id, "placement_group", g.id, &g.name, "deleted", &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    Ok(())
}
