//! Floating IPs: allocated from the operator's pool (`kumod --public-ip-pool CIDR`), counted
//! against the project's `floating_ips` quota, attached to one instance at a time. The network
//! reconciler turns an attachment into DNAT/SNAT rules on the host.

use super::vpcs::event;
use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{already_exists, ApiError, ApiResult};
use crate::App;
use kumo_store::floating_ips::FloatingIpRecord;
use kumo_store::quotas::QuotaAmounts;
use kumo_store::Conn;
use kumo_types::page::PageRequest;
use kumo_types::{ErrorCode, FloatingIpCreate, FloatingIpView, ProjectView, ResultsPage};
use std::net::Ipv4Addr;

fn one_ip() -> QuotaAmounts {
    QuotaAmounts { floating_ips: 1, ..QuotaAmounts::default() }
}

async fn fip_in(conn: &mut Conn, p: &ProjectView, fip: &str) -> ApiResult<FloatingIpRecord> {
    let sel = selector("floating ip", fip)?;
    kumo_store::floating_ips::get(conn, p.id, &sel).await?.ok_or_else(|| ApiError::not_found("floating ip", fip))
}

pub async fn list(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    page: &PageRequest,
) -> ApiResult<ResultsPage<FloatingIpView>> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    let page = kumo_store::floating_ips::list(&mut conn, p.id, page).await?;
    Ok(ResultsPage { items: page.items.into_iter().map(|r| r.view).collect(), next_page: page.next_page })
}

pub async fn view(app: &App, ctx: &OpContext, project: Option<&str>, fip: &str) -> ApiResult<FloatingIpView> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    Ok(fip_in(&mut conn, &p, fip).await?.view)
}

pub async fn create(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    c: &FloatingIpCreate,
) -> ApiResult<FloatingIpView> {
    super::check_description(&c.description)?;
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Write).await?;
    let Some(pool) = app.config.public_ip_pool else {
        return Err(ApiError::new(
            ErrorCode::InsufficientCapacity,
            "this cloud has no public IP pool (the operator sets one with `kumod --public-ip-pool CIDR`)",
        ));
    };
    super::quotas::charge(&mut tx, p.id, &p.name, one_ip()).await?;
    let used: std::collections::HashSet<String> =
        kumo_store::floating_ips::used_ips(&mut tx).await?.into_iter().collect();
    // Every host address of the pool but the first, which the host's uplink holds.
    let first = u32::from(pool.network()) + 2;
    let last = u32::from(pool.broadcast()).saturating_sub(1);
    let ip = (first..=last).map(Ipv4Addr::from).find(|ip| !used.contains(&ip.to_string())).ok_or_else(|| {
        ApiError::new(ErrorCode::InsufficientCapacity, format!("the public IP pool {pool} has no free address left"))
    })?;
    let f = kumo_store::floating_ips::insert(&mut tx, p.id, c.name.as_str(), &c.description, &ip.to_string())
        .await
        .map_err(already_exists("floating ip", c.name.as_str()))?;
    let cause = ctx.cause("floating_ip_create");
    let ev =
        kumo_store::events::record(&mut tx, &event(p.id, "floating_ip", f.view.id, &f.view.name, "created", &cause))
            .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    Ok(f.view)
}

pub async fn delete(app: &App, ctx: &OpContext, project: Option<&str>, fip: &str) -> ApiResult<()> {
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Write).await?;
    let f = fip_in(&mut tx, &p, fip).await?;
    kumo_store::floating_ips::soft_delete(&mut tx, f.view.id).await?;
    kumo_store::quotas::release(&mut tx, p.id, one_ip()).await?;
    let cause = ctx.cause("floating_ip_delete");
    let ev =
        kumo_store::events::record(&mut tx, &event(p.id, "floating_ip", f.view.id, &f.view.name, "deleted", &cause))
            .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    app.network.wake();
    Ok(())
}

pub async fn attach(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    fip: &str,
    instance: Option<&str>,
) -> ApiResult<FloatingIpView> {
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Write).await?;
    let f = fip_in(&mut tx, &p, fip).await?;
    let (kind, target) = match instance {
        Some(i) => {
            let rec = super::instances::get(&mut tx, ctx, Some(&p.id.to_string()), i, Access::Write).await?;
            if rec.view.network_interfaces.is_empty() {
                return Err(ApiError::conflict(format!("instance '{i}' has no network interface")));
            }
            if let Some(other) = &rec.view.public_ip {
                if *other != f.view.ip {
                    return Err(ApiError::conflict(format!(
                        "instance '{i}' already has floating ip {other}; detach it first"
                    )));
                }
            }
            if f.instance_id.is_some_and(|id| id != rec.view.id) {
                return Err(ApiError::conflict(format!(
                    "floating ip '{}' is attached to instance '{}'; detach it first",
                    f.view.name,
                    f.view.instance.clone().unwrap_or_default()
                )));
            }
            ("attached", Some(rec.view.id))
        }
        None => ("detached", None),
    };
    kumo_store::floating_ips::set_instance(&mut tx, f.view.id, target).await.map_err(ApiError::internal)?;
    let cause = ctx.cause(if target.is_some() { "floating_ip_attach" } else { "floating_ip_detach" });
    let ev =
        kumo_store::events::record(&mut tx, &event(p.id, "floating_ip", f.view.id, &f.view.name, kind, &cause)).await?;
    let view = fip_in(&mut tx, &p, &f.view.id.to_string()).await?.view;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    app.network.wake();
    Ok(view)
}
