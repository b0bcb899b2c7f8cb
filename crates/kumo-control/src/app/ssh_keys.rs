//! SSH public keys of a project. Instances get copies at creation (through the metadata service).

use super::vpcs::event;
use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{already_exists, ApiError, ApiResult};
use crate::App;
use kumo_types::page::PageRequest;
use kumo_types::{ResultsPage, SshKeyCreate, SshKeyView};

pub async fn list(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    page: &PageRequest,
) -> ApiResult<ResultsPage<SshKeyView>> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    Ok(kumo_store::ssh_keys::list(&mut conn, p.id, page).await?)
}

pub async fn view(app: &App, ctx: &OpContext, project: Option<&str>, key: &str) -> ApiResult<SshKeyView> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    let sel = selector("ssh key", key)?;
    kumo_store::ssh_keys::get(&mut conn, p.id, &sel).await?.ok_or_else(|| ApiError::not_found("ssh key", key))
}

pub async fn create(app: &App, ctx: &OpContext, project: Option<&str>, c: &SshKeyCreate) -> ApiResult<SshKeyView> {
    super::check_description(&c.description)?;
    kumo_types::network::check_public_key(&c.public_key).map_err(ApiError::invalid)?;
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Write).await?;
    let k = kumo_store::ssh_keys::insert(&mut tx, p.id, c.name.as_str(), &c.description, c.public_key.trim())
        .await
        .map_err(already_exists("ssh key", c.name.as_str()))?;
    let cause = ctx.cause("ssh_key_create");
    let ev = kumo_store::events::record(&mut tx, &event(p.id, "ssh_key", k.id, &k.name, "created", &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    Ok(k)
}

pub async fn delete(app: &App, ctx: &OpContext, project: Option<&str>, key: &str) -> ApiResult<()> {
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Write).await?;
    let sel = selector("ssh key", key)?;
    let k = kumo_store::ssh_keys::get(&mut tx, p.id, &sel).await?.ok_or_else(|| ApiError::not_found("ssh key", key))?;
    kumo_store::ssh_keys::soft_delete(&mut tx, k.id).await?;
    let cause = ctx.cause("ssh_key_delete");
    let ev = kumo_store::events::record(&mut tx, &event(p.id, "ssh_key", k.id, &k.name, "deleted", &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    Ok(())
}
