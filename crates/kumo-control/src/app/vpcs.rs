//! VPCs and subnets, and every project's default network (`default` VPC, `default` subnet,
//! `default` security group), created with the project or, for projects from before networking,
//! on first use.

use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{already_exists, ApiError, ApiResult};
use crate::App;
use kumo_store::events::NewEvent;
use kumo_store::quotas::QuotaAmounts;
use kumo_store::vpcs::{SubnetRecord, VpcInsertError, VpcRecord};
use kumo_store::Conn;
use kumo_types::network::parse_private_cidr;
use kumo_types::page::PageRequest;
use kumo_types::{
    ErrorCode, NameOrId, ProjectId, ProjectView, ResultsPage, SubnetCreate, SubnetId, SubnetView, VpcCreate, VpcView,
};
use uuid::Uuid;

/// The name of every project's default VPC, subnet and security group.
pub const DEFAULT: &str = "default";
const DEFAULT_VPC_CIDR: &str = "10.0.0.0/16";
const DEFAULT_SUBNET_CIDR: &str = "10.0.0.0/20";

pub fn event<'a>(
    project_id: ProjectId,
    resource_type: &'a str,
    id: impl Into<Uuid>,
    name: &'a str,
    kind: &'a str,
    cause: &'a str,
) -> NewEvent<'a> {
    NewEvent {
        project_id: Some(project_id),
        resource_type,
        resource_id: id.into(),
        resource_name: name,
        kind,
        from_state: None,
        to_state: None,
        cause,
        detail: None,
    }
}

/// One VPC of the `vpcs` quota.
fn one_vpc() -> QuotaAmounts {
    QuotaAmounts { vpcs: 1, ..QuotaAmounts::default() }
}

/// Charges one VPC to the project's quota and inserts the VPC (its VNI and conntrack zone
/// allocated in `tx`). 403 QuotaExceeded, 409 for a taken name, 507 when no zone is left.
async fn insert_charged(
    tx: &mut Conn,
    project_id: ProjectId,
    project: &str,
    name: &str,
    description: &str,
    cidr: &str,
) -> ApiResult<VpcRecord> {
    super::quotas::charge(tx, project_id, project, one_vpc()).await?;
    kumo_store::vpcs::insert_vpc(tx, project_id, name, description, cidr).await.map_err(|e| match e {
        VpcInsertError::Exhausted(what) => ApiError::new(
            ErrorCode::InsufficientCapacity,
            format!(
                "cannot create vpc '{name}': every {what} is in use by a live VPC (at most {} VPCs can exist at \
                 once); delete unused VPCs",
                kumo_store::vpcs::MAX_CT_ZONE
            ),
        ),
        VpcInsertError::Store(e) => already_exists("vpc", name)(e),
    })
}

/// Makes the project's default VPC, subnet and security group exist (idempotent; in `tx`).
pub async fn ensure_default_network(tx: &mut Conn, project_id: ProjectId, project: &str, cause: &str) -> ApiResult<()> {
    let default = NameOrId::Name(kumo_types::Name::parse(DEFAULT).map_err(ApiError::internal)?);
    let vpc = match kumo_store::vpcs::get_vpc(tx, project_id, &default).await? {
        Some(v) => v,
        None => {
            let v =
                insert_charged(tx, project_id, project, DEFAULT, "the project's default VPC", DEFAULT_VPC_CIDR).await?;
            kumo_store::events::record(tx, &event(project_id, "vpc", v.view.id, DEFAULT, "created", cause)).await?;
            v
        }
    };
    if kumo_store::vpcs::get_subnet(tx, vpc.view.id, &default).await?.is_none() {
        let s =
            kumo_store::vpcs::insert_subnet(tx, &vpc, DEFAULT, "the default VPC's subnet", DEFAULT_SUBNET_CIDR).await?;
        kumo_store::events::record(tx, &event(project_id, "vpc_subnet", s.view.id, DEFAULT, "created", cause)).await?;
    }
    if kumo_store::security_groups::get(tx, project_id, &default).await?.is_none() {
        let g = kumo_store::security_groups::insert(tx, project_id, DEFAULT, "members reach each other; egress open")
            .await?;
        kumo_store::events::record(tx, &event(project_id, "security_group", g.view.id, DEFAULT, "created", cause))
            .await?;
    }
    Ok(())
}

/// Resolves a VPC of a project the caller may access.
pub(crate) async fn vpc_in(conn: &mut Conn, project: &ProjectView, vpc: &str) -> ApiResult<VpcRecord> {
    let sel = selector("vpc", vpc)?;
    kumo_store::vpcs::get_vpc(conn, project.id, &sel).await?.ok_or_else(|| ApiError::not_found("vpc", vpc))
}

pub async fn list(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    page: &PageRequest,
) -> ApiResult<ResultsPage<VpcView>> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    let page = kumo_store::vpcs::list_vpcs(&mut conn, p.id, page).await?;
    Ok(ResultsPage { items: page.items.into_iter().map(|r| r.view).collect(), next_page: page.next_page })
}

pub async fn view(app: &App, ctx: &OpContext, project: Option<&str>, vpc: &str) -> ApiResult<VpcView> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    Ok(vpc_in(&mut conn, &p, vpc).await?.view)
}

pub async fn create(app: &App, ctx: &OpContext, project: Option<&str>, c: &VpcCreate) -> ApiResult<VpcView> {
    super::check_description(&c.description)?;
    parse_private_cidr("ipv4_cidr", &c.ipv4_cidr).map_err(ApiError::invalid)?;
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Write).await?;
    let v = insert_charged(&mut tx, p.id, &p.name, c.name.as_str(), &c.description, &c.ipv4_cidr).await?;
    let cause = ctx.cause("vpc_create");
    let ev =
        kumo_store::events::record(&mut tx, &event(p.id, "vpc", v.view.id, &v.view.name, "created", &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    app.network.wake();
    Ok(v.view)
}

pub async fn delete(app: &App, ctx: &OpContext, project: Option<&str>, vpc: &str) -> ApiResult<()> {
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Write).await?;
    let v = vpc_in(&mut tx, &p, vpc).await?;
    let n = kumo_store::vpcs::count_vpc_interfaces(&mut tx, v.view.id).await?;
    if n > 0 {
        return Err(ApiError::conflict(format!(
            "vpc '{}' has {n} instance interface(s); delete those instances first",
            v.view.name
        )));
    }
    if kumo_store::vpcs::delete_vpc(&mut tx, v.view.id).await? {
        kumo_store::quotas::release(&mut tx, p.id, one_vpc()).await?;
    }
    let cause = ctx.cause("vpc_delete");
    let ev =
        kumo_store::events::record(&mut tx, &event(p.id, "vpc", v.view.id, &v.view.name, "deleted", &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    app.network.wake();
    Ok(())
}

fn vpc_param(vpc: Option<&str>) -> ApiResult<&str> {
    vpc.ok_or_else(|| ApiError::invalid("the 'vpc' query parameter is required (e.g. ?project=demo&vpc=app)"))
}

/// Resolves a subnet: by name within `vpc`, or by id within the project.
pub(crate) async fn subnet_in(
    conn: &mut Conn,
    project: &ProjectView,
    vpc: Option<&str>,
    subnet: &str,
) -> ApiResult<SubnetRecord> {
    let sel = selector("subnet", subnet)?;
    let found = match (&sel, vpc) {
        (NameOrId::Id(id), _) => kumo_store::vpcs::get_subnet_in_project(conn, project.id, SubnetId::from(*id)).await?,
        (NameOrId::Name(_), vpc) => {
            let v = vpc_in(conn, project, vpc_param(vpc)?).await?;
            kumo_store::vpcs::get_subnet(conn, v.view.id, &sel).await?
        }
    };
    found.ok_or_else(|| ApiError::not_found("subnet", subnet))
}

pub async fn subnet_list(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    vpc: Option<&str>,
    page: &PageRequest,
) -> ApiResult<ResultsPage<SubnetView>> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    let v = vpc_in(&mut conn, &p, vpc_param(vpc)?).await?;
    let page = kumo_store::vpcs::list_subnets(&mut conn, v.view.id, page).await?;
    Ok(ResultsPage { items: page.items.into_iter().map(|r| r.view).collect(), next_page: page.next_page })
}

pub async fn subnet_view(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    vpc: Option<&str>,
    subnet: &str,
) -> ApiResult<SubnetView> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    Ok(subnet_in(&mut conn, &p, vpc, subnet).await?.view)
}

pub async fn subnet_create(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    vpc: Option<&str>,
    c: &SubnetCreate,
) -> ApiResult<SubnetView> {
    super::check_description(&c.description)?;
    let net = parse_private_cidr("ipv4_cidr", &c.ipv4_cidr).map_err(ApiError::invalid)?;
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Write).await?;
    let v = vpc_in(&mut tx, &p, vpc_param(vpc)?).await?;
    let vnet: ipnet::Ipv4Net = v.view.ipv4_cidr.parse().map_err(ApiError::internal)?;
    if !vnet.contains(&net) {
        return Err(ApiError::invalid(format!(
            "subnet {} is not inside vpc '{}' ({})",
            c.ipv4_cidr, v.view.name, v.view.ipv4_cidr
        )));
    }
    if net.prefix_len() < kumo_types::network::SUBNET_MIN_PREFIX {
        return Err(ApiError::invalid(format!(
            "subnet {} is too large (at most a /{})",
            c.ipv4_cidr,
            kumo_types::network::SUBNET_MIN_PREFIX
        )));
    }
    for other in kumo_store::vpcs::all_subnets(&mut tx, Some(v.view.id)).await? {
        if other.plan.net.contains(&net) || net.contains(&other.plan.net) {
            return Err(ApiError::conflict(format!(
                "subnet {} overlaps subnet '{}' ({}) of vpc '{}'",
                c.ipv4_cidr, other.view.name, other.view.ipv4_cidr, v.view.name
            )));
        }
    }
    let s = kumo_store::vpcs::insert_subnet(&mut tx, &v, c.name.as_str(), &c.description, &c.ipv4_cidr)
        .await
        .map_err(already_exists("subnet", c.name.as_str()))?;
    let cause = ctx.cause("vpc_subnet_create");
    let ev =
        kumo_store::events::record(&mut tx, &event(p.id, "vpc_subnet", s.view.id, &s.view.name, "created", &cause))
            .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    app.network.wake();
    Ok(s.view)
}

pub async fn subnet_delete(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    vpc: Option<&str>,
    subnet: &str,
) -> ApiResult<()> {
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Write).await?;
    let s = subnet_in(&mut tx, &p, vpc, subnet).await?;
    if s.view.allocated > 0 {
        return Err(ApiError::conflict(format!(
            "subnet '{}' has {} instance interface(s); delete those instances first",
            s.view.name, s.view.allocated
        )));
    }
    kumo_store::vpcs::delete_subnet(&mut tx, s.view.id).await?;
    let cause = ctx.cause("vpc_subnet_delete");
    let ev =
        kumo_store::events::record(&mut tx, &event(p.id, "vpc_subnet", s.view.id, &s.view.name, "deleted", &cause))
            .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    app.network.wake();
    Ok(())
}
