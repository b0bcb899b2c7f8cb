//! Project members and their roles: owners (and operators) manage them; every member may list them.

use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{ApiError, ApiResult};
use crate::App;
use kumo_types::{ErrorCode, MemberAdd, MemberView};

fn view(m: kumo_store::members::Member) -> MemberView {
    MemberView { user_id: m.user_id, user: m.user_name, role: m.role, time_created: m.time_created }
}

pub async fn list(app: &App, ctx: &OpContext, project: &str) -> ApiResult<Vec<MemberView>> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, Some(project), Access::Read).await?;
    Ok(kumo_store::members::list(&mut conn, p.id).await?.into_iter().map(view).collect())
}

/// Adds a member or changes their role.
pub async fn add(app: &App, ctx: &OpContext, project: &str, m: &MemberAdd) -> ApiResult<MemberView> {
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, Some(project), Access::Manage).await?;
    let sel = selector("user", &m.user)?;
    let user = kumo_store::users::get(&mut tx, &sel)
        .await?
        .ok_or_else(|| ApiError::invalid(format!("user '{}' does not exist", m.user)))?;
    kumo_store::members::put(&mut tx, p.id, user.id, m.role.as_str()).await?;
    let member = kumo_store::members::list(&mut tx, p.id)
        .await?
        .into_iter()
        .find(|x| x.user_id == user.id)
        .ok_or_else(|| ApiError::internal("member vanished"))?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.tokens.forget_user(user.id);
    Ok(view(member))
}

pub async fn remove(app: &App, ctx: &OpContext, project: &str, user: &str) -> ApiResult<()> {
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, Some(project), Access::Manage).await?;
    let sel = selector("user", user)?;
    let not_member =
        || ApiError::new(ErrorCode::NotFound, format!("user '{user}' is not a member of project '{}'", p.name));
    let u = kumo_store::users::get(&mut tx, &sel).await?.ok_or_else(not_member)?;
    if !kumo_store::members::remove(&mut tx, p.id, u.id).await? {
        return Err(not_member());
    }
    tx.commit().await.map_err(ApiError::internal)?;
    app.tokens.forget_user(u.id);
    Ok(())
}
