//! Security groups: create, delete, and the rule list (a PUT replaces it in one transaction; the
//! network reconciler then replaces the host's nft ruleset in one atomic `nft` transaction).

use super::vpcs::event;
use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{already_exists, ApiError, ApiResult};
use crate::App;
use kumo_store::security_groups::{GroupRecord, StoredRule};
use kumo_store::Conn;
use kumo_types::network::{RuleSource, RULES_MAX};
use kumo_types::page::PageRequest;
use kumo_types::{NameOrId, ProjectView, ResultsPage, SecurityGroupCreate, SecurityGroupView, SecurityRules};

pub(crate) async fn group_in(conn: &mut Conn, p: &ProjectView, group: &str) -> ApiResult<GroupRecord> {
    let sel = selector("security group", group)?;
    kumo_store::security_groups::get(conn, p.id, &sel)
        .await?
        .ok_or_else(|| ApiError::not_found("security group", group))
}

pub async fn list(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    page: &PageRequest,
) -> ApiResult<ResultsPage<SecurityGroupView>> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    let page = kumo_store::security_groups::list(&mut conn, p.id, page).await?;
    Ok(ResultsPage { items: page.items.into_iter().map(|r| r.view).collect(), next_page: page.next_page })
}

pub async fn view(app: &App, ctx: &OpContext, project: Option<&str>, group: &str) -> ApiResult<SecurityGroupView> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    Ok(group_in(&mut conn, &p, group).await?.view)
}

pub async fn create(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    c: &SecurityGroupCreate,
) -> ApiResult<SecurityGroupView> {
    super::check_description(&c.description)?;
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Write).await?;
    let g = kumo_store::security_groups::insert(&mut tx, p.id, c.name.as_str(), &c.description)
        .await
        .map_err(already_exists("security group", c.name.as_str()))?;
    let cause = ctx.cause("security_group_create");
    let ev =
        kumo_store::events::record(&mut tx, &event(p.id, "security_group", g.view.id, &g.view.name, "created", &cause))
            .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    Ok(g.view)
}

pub async fn delete(app: &App, ctx: &OpContext, project: Option<&str>, group: &str) -> ApiResult<()> {
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Write).await?;
    let g = group_in(&mut tx, &p, group).await?;
    let n = kumo_store::security_groups::count_members(&mut tx, g.view.id).await?;
    if n > 0 {
        return Err(ApiError::conflict(format!(
            "security group '{}' is used by {n} instance(s); delete them first",
            g.view.name
        )));
    }
    let refs = kumo_store::security_groups::referenced_by(&mut tx, g.view.id).await?;
    if !refs.is_empty() {
        return Err(ApiError::conflict(format!(
            "security group '{}' is the source of rules in {}; change those rules first",
            g.view.name,
            refs.join(", ")
        )));
    }
    kumo_store::security_groups::soft_delete(&mut tx, g.view.id).await?;
    let cause = ctx.cause("security_group_delete");
    let ev =
        kumo_store::events::record(&mut tx, &event(p.id, "security_group", g.view.id, &g.view.name, "deleted", &cause))
            .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    app.network.wake();
    Ok(())
}

pub async fn rules_view(app: &App, ctx: &OpContext, project: Option<&str>, group: &str) -> ApiResult<SecurityRules> {
    let mut conn = read(app).await?;
    let p = super::project(&mut conn, ctx, project, Access::Read).await?;
    let g = group_in(&mut conn, &p, group).await?;
    let rules = kumo_store::security_groups::rules(&mut conn, Some(g.view.id)).await?;
    Ok(SecurityRules { rules: rules.iter().map(|(_, r)| r.to_wire()).collect() })
}

/// Replaces the group's rules. Returns once they are committed; the network reconciler is woken
/// and applies them to the hosts.
pub async fn rules_update(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    group: &str,
    body: &SecurityRules,
) -> ApiResult<SecurityRules> {
    if body.rules.len() > RULES_MAX {
        return Err(ApiError::invalid(format!("{} rules given; a group holds at most {RULES_MAX}", body.rules.len())));
    }
    let parsed = body
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| r.parse(i))
        .collect::<Result<Vec<_>, _>>()
        .map_err(ApiError::invalid)?;
    let mut tx = app.store.begin().await?;
    let p = super::project(&mut tx, ctx, project, Access::Write).await?;
    let g = group_in(&mut tx, &p, group).await?;
    let mut stored = Vec::with_capacity(parsed.len());
    for (i, r) in parsed.iter().enumerate() {
        let (source_cidr, source_group) = match &r.source {
            RuleSource::Cidr(c) => (Some(c.to_string()), None),
            RuleSource::Group(name) => {
                let sg = kumo_store::security_groups::get(&mut tx, p.id, &NameOrId::Name(name.clone()))
                    .await?
                    .ok_or_else(|| {
                        ApiError::invalid(format!(
                            "rules[{i}]: source group '{name}' does not exist in project '{}'",
                            p.name
                        ))
                    })?;
                (None, Some((sg.view.id, sg.view.name)))
            }
        };
        stored.push(StoredRule {
            direction: r.direction,
            protocol: r.protocol,
            ports: r.ports,
            source_cidr,
            source_group,
        });
    }
    kumo_store::security_groups::replace_rules(&mut tx, g.view.id, &stored).await?;
    let cause = ctx.cause("security_group_rules_update");
    let ev = kumo_store::events::record(
        &mut tx,
        &event(p.id, "security_group", g.view.id, &g.view.name, "rules_replaced", &cause),
    )
    .await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(p.id), Some(&p.name), ev);
    app.network.wake();
    Ok(SecurityRules { rules: stored.iter().map(StoredRule::to_wire).collect() })
}
