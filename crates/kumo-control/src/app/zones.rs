//! Zones: named groups of hosts; an instance may ask for one. Every user may list them (to choose
//! one); operators make them and see their hosts' capacity.

use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{already_exists, ApiError, ApiResult};
use crate::App;
use kumo_store::Conn;
use kumo_types::page::PageRequest;
use kumo_types::{Name, NameOrId, ResultsPage, ZoneCreate, ZoneId, ZoneView};

pub async fn list(app: &App, ctx: &OpContext, page: &PageRequest) -> ApiResult<ResultsPage<ZoneView>> {
    ctx.authorize(Access::Read)?;
    let mut zones = kumo_store::zones::list(&mut *read(app).await?, page).await?;
    zones.items = zones.items.into_iter().map(|z| for_caller(ctx, z)).collect();
    Ok(zones)
}

pub async fn view(app: &App, ctx: &OpContext, zone: &str) -> ApiResult<ZoneView> {
    ctx.authorize(Access::Read)?;
    let sel = selector("zone", zone)?;
    let z =
        kumo_store::zones::get(&mut *read(app).await?, &sel).await?.ok_or_else(|| ApiError::not_found("zone", zone))?;
    Ok(for_caller(ctx, z))
}

/// A zone as the caller may see it: its hosts and capacity are the provider's, for operators only.
fn for_caller(ctx: &OpContext, zone: ZoneView) -> ZoneView {
    if ctx.actor.operator {
        zone
    } else {
        zone.without_capacity()
    }
}

pub async fn create(app: &App, ctx: &OpContext, p: &ZoneCreate) -> ApiResult<ZoneView> {
    ctx.authorize(Access::Operator)?;
    super::check_description(&p.description)?;
    let mut tx = app.store.begin().await?;
    let view = kumo_store::zones::create(&mut tx, p.name.as_str(), &p.description)
        .await
        .map_err(already_exists("zone", p.name.as_str()))?;
    tx.commit().await.map_err(ApiError::internal)?;
    Ok(view)
}

/// The zone a request body names (`field` is the body's field, for the message): 400 when the
/// name is malformed or no zone has it.
pub async fn referenced(conn: &mut Conn, field: &str, zone: &str) -> ApiResult<(ZoneId, String)> {
    let name = Name::parse(zone).map_err(|e| ApiError::invalid(format!("{field}: {e}")))?;
    let z = kumo_store::zones::get(conn, &NameOrId::Name(name))
        .await?
        .ok_or_else(|| ApiError::invalid(format!("zone '{zone}' does not exist (see `kumo zone list`)")))?;
    Ok((z.id, z.name))
}
