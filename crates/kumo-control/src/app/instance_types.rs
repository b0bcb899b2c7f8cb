//! Instance types (plans): everyone reads the catalogue; operators extend it.

use super::read;
use crate::context::{Access, OpContext};
use crate::error::{already_exists, ApiError, ApiResult};
use crate::App;
use kumo_types::page::PageRequest;
use kumo_types::{InstanceTypeCreate, InstanceTypeView, Name, ResultsPage};

fn type_name(name: &str) -> ApiResult<Name> {
    Name::parse(name).map_err(|e| ApiError::invalid(format!("instance type: {e}")))
}

pub async fn list(app: &App, ctx: &OpContext, page: &PageRequest) -> ApiResult<ResultsPage<InstanceTypeView>> {
    ctx.authorize(Access::Read)?;
    Ok(kumo_store::instance_types::list(&mut *read(app).await?, page).await?)
}

pub async fn view(app: &App, ctx: &OpContext, name: &str) -> ApiResult<InstanceTypeView> {
    ctx.authorize(Access::Read)?;
    let n = type_name(name)?;
    kumo_store::instance_types::get_by_name(&mut *read(app).await?, n.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("instance type", name))
}

pub async fn create(app: &App, ctx: &OpContext, p: &InstanceTypeCreate) -> ApiResult<InstanceTypeView> {
    ctx.authorize(Access::Operator)?;
    p.validate().map_err(ApiError::invalid)?;
    super::check_description(&p.description)?;
    let mut tx = app.store.begin().await?;
    let view = kumo_store::instance_types::create(&mut tx, p)
        .await
        .map_err(already_exists("instance type", p.name.as_str()))?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(view)
}

pub async fn delete(app: &App, ctx: &OpContext, name: &str) -> ApiResult<()> {
    ctx.authorize(Access::Operator)?;
    let n = type_name(name)?;
    let mut tx = app.store.begin().await?;
    let t = kumo_store::instance_types::get_by_name(&mut tx, n.as_str())
        .await?
        .ok_or_else(|| ApiError::not_found("instance type", name))?;
    let users = kumo_store::instance_types::count_users(&mut tx, t.id).await?;
    if users > 0 {
        return Err(ApiError::conflict(format!(
            "instance type '{name}' is used by {users} instance(s); resize or delete them first"
        )));
    }
    kumo_store::instance_types::soft_delete(&mut tx, t.id).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(())
}
