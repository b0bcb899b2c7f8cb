//! Instances: create (schedule + reserve + insert in one transaction), actions through the state
//! machine, resize, the serial console, and applying what the reconciler observed.
//!
//! The recorded intent of an instance is its state: a transitional state (`starting`, `stopping`,
//! `rebooting`, `deleting`, `creating`) is the API's request, which the reconciler carries out;
//! a resting state (`running`, `stopped`) is what the instance should stay in. So the desired state
//! is derived from the state (see [`desired`]) rather than stored twice.

use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{already_exists, ApiError, ApiResult};
use crate::{scheduler, App};
use kumo_host_api::{BootSpec, InstanceSpec, NicSpec, SerialChunk};
use kumo_store::events::NewEvent;
use kumo_store::hosts::Resources;
use kumo_store::instances::{InstanceRecord, NewInstance};
use kumo_store::Conn;
use kumo_types::page::PageRequest;
use kumo_types::{
    ErrorCode, HostId, InstanceAction, InstanceCreate, InstanceId, InstanceObservation, InstanceState, InstanceView,
    Name, NameOrId, ResultsPage, Transition, USER_DATA_MAX_BYTES,
};

/// What the instance should end up as, given its state.
pub fn desired(state: InstanceState) -> &'static str {
    match state {
        InstanceState::Creating | InstanceState::Starting | InstanceState::Running | InstanceState::Rebooting => {
            "running"
        }
        InstanceState::Stopping | InstanceState::Stopped => "stopped",
        InstanceState::Failed => "failed (waiting for start or delete)",
        InstanceState::Deleting | InstanceState::Destroyed => "destroyed",
        InstanceState::Unknown => "unknown (its host is unreachable)",
        InstanceState::Migrating => "as it was (running or stopped), on another host",
    }
}

/// Resolves an instance selector and checks the caller's access (the instance operations' one
/// authorisation check; also used by [`super::metrics`]).
pub(crate) async fn get(
    conn: &mut Conn,
    ctx: &OpContext,
    project: Option<&str>,
    instance: &str,
    access: Access,
) -> ApiResult<InstanceRecord> {
    let sel = selector("instance", instance)?;
    // An id needs no project selector (docs/api.md); with one, the instance must be in it.
    if let (None, NameOrId::Id(id)) = (project, &sel) {
        let rec = kumo_store::instances::get_by_id(conn, InstanceId::from(*id))
            .await?
            .ok_or_else(|| ApiError::not_found("instance", instance))?;
        // Not a member: the instance does not exist as far as the caller may know.
        ctx.authorize_project(rec.project_id, &rec.view.project, access).map_err(|e| match e.code {
            ErrorCode::NotFound => ApiError::not_found("instance", instance),
            _ => e,
        })?;
        return Ok(rec);
    }
    // Hot path (every view and action): project and instance in one query.
    if let Some(p) = project {
        let project_sel = selector("project", p)?;
        if let Some(rec) = kumo_store::instances::get_in_project(conn, &project_sel, &sel).await? {
            ctx.authorize_project(rec.project_id, &rec.view.project, access).map_err(|e| super::not_a_member(e, p))?;
            return Ok(rec);
        }
    }
    // Not found that way: say precisely what is missing (or not allowed).
    let p = super::project(conn, ctx, project, access).await?;
    kumo_store::instances::get(conn, p.id, &sel).await?.ok_or_else(|| ApiError::not_found("instance", instance))
}

/// An instance as the caller may see it: tenants never see hosts; an instance of a host that has
/// not renewed its lease in time shows `unknown` (never a stale `running`), its recorded state
/// kept in the reason.
pub(crate) fn visible(app: &App, ctx: &OpContext, host: HostId, mut view: InstanceView) -> InstanceView {
    if app.hosts.is_lost(host) && !matches!(view.state, InstanceState::Destroyed) {
        view.state_reason = Some(format!(
            "its host is unreachable (no heartbeat within {} s); last recorded state: {}",
            app.config.host_unreachable_after.as_secs(),
            view.state
        ));
        view.state = InstanceState::Unknown;
    }
    if !ctx.actor.operator {
        view.host = None;
    }
    view
}

pub async fn list(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    page: &PageRequest,
) -> ApiResult<ResultsPage<InstanceView>> {
    // The typed read path (kumo_store::fast): project, then one page and its interfaces.
    let name =
        project.ok_or_else(|| ApiError::invalid("the 'project' query parameter is required (e.g. ?project=demo)"))?;
    let p = kumo_store::projects::fast_get(&app.store, &selector("project", name)?)
        .await?
        .ok_or_else(|| ApiError::not_found("project", name))?;
    ctx.authorize_project(p.id, &p.name, Access::Read).map_err(|e| super::not_a_member(e, name))?;
    let page = kumo_store::instances::fast_list(&app.store, p.id, page).await?;
    Ok(ResultsPage {
        items: page.items.into_iter().map(|r| visible(app, ctx, r.host_id, r.view)).collect(),
        next_page: page.next_page,
    })
}

pub async fn view(app: &App, ctx: &OpContext, project: Option<&str>, instance: &str) -> ApiResult<InstanceView> {
    // Hot path on the typed read path (kumo_store::fast): the instance with its project, then its
    // interfaces; the same authorisation as [`get`].
    let sel = selector("instance", instance)?;
    match (project, &sel) {
        (Some(p), _) => {
            let project_sel = selector("project", p)?;
            if let Some(rec) = kumo_store::instances::fast_get_in_project(&app.store, &project_sel, &sel).await? {
                ctx.authorize_project(rec.project_id, &rec.view.project, Access::Read)
                    .map_err(|e| super::not_a_member(e, p))?;
                return Ok(visible(app, ctx, rec.host_id, rec.view));
            }
        }
        (None, NameOrId::Id(id)) => {
            if let Some(rec) = kumo_store::instances::fast_get_by_id(&app.store, (*id).into()).await? {
                ctx.authorize_project(rec.project_id, &rec.view.project, Access::Read).map_err(|e| match e.code {
                    ErrorCode::NotFound => ApiError::not_found("instance", instance),
                    _ => e,
                })?;
                return Ok(visible(app, ctx, rec.host_id, rec.view));
            }
        }
        _ => {}
    }
    // Not found that way: the general path says precisely what is missing (or not allowed).
    let rec = get(&mut *read(app).await?, ctx, project, instance, Access::Read).await?;
    Ok(visible(app, ctx, rec.host_id, rec.view))
}

pub(crate) fn event<'a>(rec: &'a InstanceRecord, kind: &'a str, t: Option<Transition>, cause: &'a str) -> NewEvent<'a> {
    NewEvent {
        project_id: Some(rec.project_id),
        resource_type: "instance",
        resource_id: rec.view.id.get(),
        resource_name: &rec.view.name,
        kind,
        from_state: t.map(|t| t.from.as_str()),
        to_state: t.map(|t| t.to.as_str()),
        cause,
        detail: Some(size_detail(&rec.view.instance_type, rec.resources())),
    }
}

/// The event detail metering bills from: the instance's type and size from this event on
/// (see [`crate::metering::Size`]).
fn size_detail(instance_type: &str, r: Resources) -> String {
    let size = crate::metering::Size {
        instance_type: instance_type.to_string(),
        vcpus: r.vcpus,
        memory_mib: r.memory_mib,
        disk_gib: r.disk_gib,
    };
    serde_json::to_string(&size).unwrap_or_default()
}

pub async fn create(app: &App, ctx: &OpContext, project: Option<&str>, p: &InstanceCreate) -> ApiResult<InstanceView> {
    super::check_description(&p.description)?;
    if let Some(ud) = &p.user_data {
        if ud.len() > USER_DATA_MAX_BYTES {
            return Err(ApiError::invalid(format!("user_data is {} bytes (at most {USER_DATA_MAX_BYTES})", ud.len())));
        }
    }
    let image_sel = selector("image", &p.image)?;
    let type_name = Name::parse(&p.instance_type).map_err(|e| ApiError::invalid(format!("instance_type: {e}")))?;

    let mut tx = app.store.begin().await?;
    let proj = super::project(&mut tx, ctx, project, Access::Write).await?;
    let image = kumo_store::images::get(&mut tx, Some(proj.id), &image_sel)
        .await?
        .ok_or_else(|| ApiError::invalid(format!("image '{}' does not exist (see `kumo image list`)", p.image)))?;
    let itype = kumo_store::instance_types::get_by_name(&mut tx, type_name.as_str()).await?.ok_or_else(|| {
        ApiError::invalid(format!("instance type '{}' does not exist (see `kumo instance-type list`)", p.instance_type))
    })?;
    refuse_below_minimum(&image.view, &itype)?;
    let zone = match &p.zone {
        Some(z) => Some(super::zones::referenced(&mut tx, "zone", z).await?.1),
        None => None,
    };
    let image_gib =
        ((image.view.size_bytes + (1 << 30) - 1) / (1 << 30)).max(image.view.os_facts.min_disk_gib.unwrap_or(0));
    let mut disk_gib = itype.disk_gib.max(image_gib);
    if let Some(root) = p.root_size_gib {
        let max = kumo_types::volume::VOLUME_MAX_GIB;
        if root < disk_gib || root > max {
            return Err(ApiError::invalid(format!(
                "root_size_gib must be between {disk_gib} (the type's and the image's size) and {max} (got {root})"
            )));
        }
        disk_gib = root;
    }
    let group = match &p.placement_group {
        Some(g) => Some(super::placement_groups::referenced(&mut tx, proj.id, g).await?),
        None => None,
    };
    let want = Resources { vcpus: itype.vcpus, memory_mib: itype.memory_mib, disk_gib, gpus: itype.gpus };
    let amounts = super::quotas::instance_amounts(want);
    let ask = scheduler::Ask {
        zone: zone.as_deref(),
        labels: Some(&itype.host_labels),
        weights: app.config.scheduler_weights,
    };
    // A create no host has room for now is refused at once, before it takes any lock (the
    // project's quota row, a host's): a storm of creates into a full cloud does not queue the
    // ones that fit. Quota before capacity: a tenant over its quota is told so (403), not that
    // the cloud is full. The reservation below decides.
    if let Err(why) = fits_now(&mut tx, &app.config, &ask, group.as_ref(), want).await? {
        super::quotas::precheck(&mut tx, proj.id, &proj.name, amounts).await?;
        return Err(ApiError::new(ErrorCode::InsufficientCapacity, why));
    }
    super::quotas::charge(&mut tx, proj.id, &proj.name, amounts).await?;
    let host_id = reserve_anywhere(&mut tx, &app.config, &ask, group.as_ref(), want).await?;
    let id = kumo_store::new_id();
    let new = NewInstance {
        id,
        project_id: proj.id,
        name: p.name.as_str(),
        description: &p.description,
        image_id: image.view.id,
        instance_type_id: itype.id,
        host_id,
        resources: want,
        user_data: p.user_data.as_deref(),
        placement_group_id: group.as_ref().map(|g| g.id),
    };
    kumo_store::instances::insert(&mut tx, &new).await.map_err(already_exists("instance", p.name.as_str()))?;
    attach_network(&mut tx, &proj, id, p, &ctx.cause("instance_create")).await?;
    let rec =
        kumo_store::instances::get_by_id(&mut tx, id).await?.ok_or_else(|| ApiError::internal("instance vanished"))?;
    let cause = ctx.cause("instance_create");
    let created = NewEvent { to_state: Some(InstanceState::Creating.as_str()), ..event(&rec, "created", None, &cause) };
    let ev = kumo_store::events::record(&mut tx, &created).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
    app.network.wake();
    app.reconciler.wake();
    Ok(visible(app, ctx, rec.host_id, rec.view))
}

/// Gives a new instance its interface (an address of its subnet, allocated here, in the
/// instance's transaction), its security groups and its SSH keys. Defaults: the project's
/// `default` VPC, subnet and security group.
async fn attach_network(
    tx: &mut Conn,
    proj: &kumo_types::ProjectView,
    instance_id: InstanceId,
    p: &InstanceCreate,
    cause: &str,
) -> ApiResult<()> {
    use super::vpcs::DEFAULT;
    super::vpcs::ensure_default_network(tx, proj.id, &proj.name, cause).await?;
    let vpc = super::vpcs::vpc_in(tx, proj, p.vpc.as_deref().unwrap_or(DEFAULT))
        .await
        .map_err(|e| ApiError::invalid(format!("vpc: {}", e.message)))?;
    let vpc_name = vpc.view.name.clone();
    let subnet = match &p.subnet {
        Some(s) => super::vpcs::subnet_in(tx, proj, Some(&vpc_name), s)
            .await
            .map_err(|e| ApiError::invalid(format!("subnet: {} in vpc '{vpc_name}'", e.message)))?,
        None => {
            let all = kumo_store::vpcs::all_subnets(tx, Some(vpc.view.id)).await?;
            match all.iter().position(|s| s.view.name == DEFAULT) {
                Some(i) => all[i].clone(),
                None if all.len() == 1 => all[0].clone(),
                None => {
                    return Err(ApiError::invalid(format!(
                        "vpc '{vpc_name}' has {} subnets; choose one with 'subnet'",
                        all.len()
                    )))
                }
            }
        }
    };
    kumo_store::nics::allocate(tx, instance_id, &subnet).await.map_err(|e| match e {
        kumo_store::nics::AllocError::Exhausted => ApiError::new(
            ErrorCode::InsufficientCapacity,
            format!(
                "subnet '{}' ({}) of vpc '{vpc_name}' has no free address: all {} are allocated",
                subnet.view.name, subnet.view.ipv4_cidr, subnet.view.capacity
            ),
        ),
        kumo_store::nics::AllocError::Store(e) => ApiError::internal(e),
    })?;
    let group_names = p.security_groups.clone().unwrap_or_else(|| vec![DEFAULT.to_string()]);
    let mut groups = Vec::new();
    for g in &group_names {
        let rec = super::security_groups::group_in(tx, proj, g)
            .await
            .map_err(|e| ApiError::invalid(format!("security_groups: {}", e.message)))?;
        if !groups.contains(&rec.view.id) {
            groups.push(rec.view.id);
        }
    }
    kumo_store::security_groups::set_instance_groups(tx, instance_id, &groups).await?;
    let mut keys = Vec::new();
    for k in &p.ssh_keys {
        let sel = selector("ssh key", k)?;
        let key = kumo_store::ssh_keys::get(tx, proj.id, &sel)
            .await?
            .ok_or_else(|| ApiError::invalid(format!("ssh_keys: ssh key '{k}' not found (see `kumo ssh-key list`)")))?;
        keys.push(key.public_key);
    }
    kumo_store::nics::set_instance_ssh_keys(tx, instance_id, &keys).await?;
    Ok(())
}

/// Reserves `want` on the best ready host (as `ask` says: zone, labels, weights; by the policy of
/// placement group `group`, if given), in the caller's transaction; 507 naming why none can take it.
async fn reserve_anywhere(
    tx: &mut Conn,
    config: &crate::ControlConfig,
    ask: &scheduler::Ask<'_>,
    group: Option<&kumo_types::PlacementGroupView>,
    want: Resources,
) -> ApiResult<HostId> {
    reserve_among(tx, config, ask, group, want, &|_| true).await
}

/// [`reserve_anywhere`] among the hosts `pick` keeps (a move: every host but the instance's own,
/// or the one asked for); the refusal explains those hosts only.
pub(crate) async fn reserve_among(
    tx: &mut Conn,
    config: &crate::ControlConfig,
    ask: &scheduler::Ask<'_>,
    group: Option<&kumo_types::PlacementGroupView>,
    want: Resources,
    pick: &(dyn Fn(&kumo_types::HostView) -> bool + Sync),
) -> ApiResult<HostId> {
    // The group's members are counted in this transaction, after taking the group's row: creates
    // in one group are placed one after the other.
    let members = match group {
        Some(g) => {
            if !kumo_store::placement_groups::lock(tx, g.id).await? {
                return Err(ApiError::invalid(format!("placement group '{}' was deleted", g.name)));
            }
            kumo_store::placement_groups::members_per_host(tx, g.id).await?
        }
        None => Vec::new(),
    };
    let as_group = group.map(|g| scheduler::Group { name: &g.name, policy: g.policy, members_per_host: &members });
    if group.is_none() && ask.weights == scheduler::Weights::Spread {
        // The roomiest few hosts first (at thousands of hosts, reading every row is what a create
        // costs): their ranking is the head of the whole ranking whenever the best host that may
        // take it is among them. When none of them is, or none takes the reservation, every host
        // is read.
        let few = roomiest(tx, config, ask.zone, want).await?;
        let few: Vec<_> = few.into_iter().filter(|h| pick(h)).collect();
        if let Ok(ranked) = scheduler::rank(&few, ask, want) {
            if let Some(host_id) = reserve_first(tx, ranked, want).await? {
                return Ok(host_id);
            }
        }
    }
    let hosts: Vec<_> = candidates(tx, config).await?.into_iter().filter(|h| pick(h)).collect();
    let ranked = scheduler::rank_in_group(&hosts, ask, want, as_group)
        .map_err(|m| ApiError::new(ErrorCode::InsufficientCapacity, m))?;
    if let Some(host_id) = reserve_first(tx, ranked, want).await? {
        return Ok(host_id);
    }
    // Every candidate filled up between the read and the reservation.
    let hosts: Vec<_> = candidates(tx, config).await?.into_iter().filter(|h| pick(h)).collect();
    let msg = match scheduler::rank_in_group(&hosts, ask, want, as_group) {
        Err(m) => m,
        Ok(_) => scheduler::explain(&hosts, ask, want),
    };
    Err(ApiError::new(ErrorCode::InsufficientCapacity, msg))
}

/// Whether some ready host has room for `want` as of now (by the placement group's policy, its
/// members counted without taking the group), else why not — a read, deciding nothing. Without a
/// group, the roomiest few hosts are asked first (if one of them can take it, some host can).
async fn fits_now(
    tx: &mut Conn,
    config: &crate::ControlConfig,
    ask: &scheduler::Ask<'_>,
    group: Option<&kumo_types::PlacementGroupView>,
    want: Resources,
) -> ApiResult<Result<(), String>> {
    if group.is_none() && scheduler::rank(&roomiest(tx, config, ask.zone, want).await?, ask, want).is_ok() {
        return Ok(Ok(()));
    }
    let members = match group {
        Some(g) => kumo_store::placement_groups::members_per_host(tx, g.id).await?,
        None => Vec::new(),
    };
    let as_group = group.map(|g| scheduler::Group { name: &g.name, policy: g.policy, members_per_host: &members });
    let hosts = candidates(tx, config).await?;
    Ok(scheduler::rank_in_group(&hosts, ask, want, as_group).map(|_| ()))
}

/// How many of the roomiest hosts a create without a placement group reads first.
const ROOMIEST: i64 = 32;

/// The [`ROOMIEST`] uncordoned hosts (of `zone`) with room for `want`, most free memory first,
/// with their state as of now.
async fn roomiest(
    tx: &mut Conn,
    config: &crate::ControlConfig,
    zone: Option<&str>,
    want: Resources,
) -> ApiResult<Vec<kumo_types::HostView>> {
    let few = kumo_store::hosts::roomiest(tx, zone, want, ROOMIEST).await?;
    Ok(few.into_iter().map(|h| super::hosts::with_state(h, config)).collect())
}

/// Reserves `want` on the first of `ranked` that takes it, trying the hosts another create is
/// claiming after the free ones (PostgreSQL; see kumo_store::hosts::lock_if_free).
async fn reserve_first(tx: &mut Conn, ranked: Vec<HostId>, want: Resources) -> ApiResult<Option<HostId>> {
    let mut busy = Vec::new();
    for host_id in ranked {
        if !kumo_store::hosts::lock_if_free(tx, host_id).await? {
            busy.push(host_id);
        } else if kumo_store::hosts::reserve(tx, host_id, want).await? {
            return Ok(Some(host_id));
        }
    }
    for host_id in busy {
        if kumo_store::hosts::reserve(tx, host_id, want).await? {
            return Ok(Some(host_id));
        }
    }
    Ok(None)
}

/// Every live host with its state as of now.
pub(crate) async fn candidates(tx: &mut Conn, config: &crate::ControlConfig) -> ApiResult<Vec<kumo_types::HostView>> {
    let hosts = kumo_store::hosts::all(tx).await?;
    Ok(hosts.into_iter().map(|h| super::hosts::with_state(h, config)).collect())
}

/// Start, stop, reboot or delete: the state machine decides whether it is allowed.
pub async fn act(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    instance: &str,
    action: InstanceAction,
) -> ApiResult<InstanceView> {
    let operation = format!("instance_{}", action.as_str());
    let mut tx = app.store.begin().await?;
    let rec = get(&mut tx, ctx, project, instance, Access::Write).await?;
    let t = rec.state().on_action(action).map_err(ApiError::conflict)?;
    if !kumo_store::instances::set_state(&mut tx, rec.view.id, rec.generation, t.to, None).await? {
        return Err(ApiError::conflict("the instance changed while the request was handled; retry"));
    }
    let cause = ctx.cause(&operation);
    let ev = kumo_store::events::record(&mut tx, &event(&rec, "state_changed", Some(t), &cause)).await?;
    commit_action(app, ctx, tx, &rec, ev).await
}

/// Ends an action's transaction: reads the instance as changed, commits, publishes the action's
/// event and wakes the reconciler; returns the view.
pub(crate) async fn commit_action(
    app: &App,
    ctx: &OpContext,
    mut tx: kumo_store::Tx,
    rec: &InstanceRecord,
    ev: kumo_types::EventView,
) -> ApiResult<InstanceView> {
    let view = kumo_store::instances::get_by_id(&mut tx, rec.view.id)
        .await?
        .ok_or_else(|| ApiError::internal("instance vanished"))?
        .view;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
    app.reconciler.wake();
    Ok(visible(app, ctx, rec.host_id, view))
}

/// An image's minimum memory refuses smaller instance types (its minimum disk only grows the
/// root disk, as its virtual size does).
fn refuse_below_minimum(image: &kumo_types::ImageView, itype: &kumo_types::InstanceTypeView) -> ApiResult<()> {
    match image.os_facts.min_memory_mib {
        Some(min) if itype.memory_mib < min => Err(ApiError::invalid(format!(
            "image '{}' needs at least {min} MiB of memory; instance type '{}' has {} MiB (see `kumo instance-type list`)",
            image.name, itype.name, itype.memory_mib
        ))),
        _ => Ok(()),
    }
}

/// Changes the plan of a stopped instance. The root disk never shrinks: downgrading to a type
/// with a smaller disk keeps (and keeps reserving) the current disk size.
pub async fn resize(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    instance: &str,
    new_type: &str,
) -> ApiResult<InstanceView> {
    let type_name = Name::parse(new_type).map_err(|e| ApiError::invalid(format!("instance_type: {e}")))?;
    let mut tx = app.store.begin().await?;
    let rec = get(&mut tx, ctx, project, instance, Access::Write).await?;
    rec.state().on_action(InstanceAction::Resize).map_err(ApiError::conflict)?;
    let itype = kumo_store::instance_types::get_by_name(&mut tx, type_name.as_str()).await?.ok_or_else(|| {
        ApiError::invalid(format!("instance type '{new_type}' does not exist (see `kumo instance-type list`)"))
    })?;
    if let Some(image) = kumo_store::images::get_by_id(&mut tx, rec.image_id).await? {
        refuse_below_minimum(&image.view, &itype)?;
    }
    let old = rec.resources();
    let new = Resources {
        vcpus: itype.vcpus,
        memory_mib: itype.memory_mib,
        disk_gib: itype.disk_gib.max(old.disk_gib),
        gpus: itype.gpus,
    };
    let project_name = rec.view.project.clone();
    super::quotas::charge(&mut tx, rec.project_id, &project_name, super::quotas::resize_delta(old, new)).await?;
    kumo_store::hosts::release(&mut tx, rec.host_id, old).await?;
    if !kumo_store::hosts::reserve(&mut tx, rec.host_id, new).await? {
        let host = kumo_store::hosts::get(&mut tx, &NameOrId::Id(rec.host_id.get())).await?;
        let msg = scheduler::shortage(&host.into_iter().collect::<Vec<_>>(), new);
        return Err(ApiError::new(
            ErrorCode::InsufficientCapacity,
            format!("the instance's host cannot take type '{new_type}': {msg}"),
        ));
    }
    if !kumo_store::instances::set_type(&mut tx, rec.view.id, rec.generation, itype.id, new).await? {
        return Err(ApiError::conflict("the instance changed while the request was handled; retry"));
    }
    let cause = format!("{} (from {} to {})", ctx.cause("instance_resize"), rec.view.instance_type, itype.name);
    let resized = NewEvent { detail: Some(size_detail(&itype.name, new)), ..event(&rec, "resized", None, &cause) };
    let ev = kumo_store::events::record(&mut tx, &resized).await?;
    let view = kumo_store::instances::get_by_id(&mut tx, rec.view.id)
        .await?
        .ok_or_else(|| ApiError::internal("instance vanished"))?
        .view;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
    Ok(visible(app, ctx, rec.host_id, view))
}

/// Serial console bytes from absolute `offset` (from the oldest kept byte if that was trimmed).
pub async fn serial(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    instance: &str,
    offset: u64,
    max: usize,
) -> ApiResult<SerialChunk> {
    let rec = get(&mut *read(app).await?, ctx, project, instance, Access::Read).await?;
    let agent = app.hosts.require(rec.host_id).map_err(ApiError::internal)?;
    agent.serial(rec.view.id, offset, max as u64).await.map_err(ApiError::internal)
}

/// The agent's view of an instance: what it needs to provision and run it.
pub async fn spec_for(app: &App, rec: &InstanceRecord) -> ApiResult<InstanceSpec> {
    // One connection for every read here: a second one taken while holding the first deadlocks
    // once as many steps run at once as the read pool has connections (a burst of creates).
    let mut conn = read(app).await?;
    let volumes = super::volumes::plugged_into(&mut conn, rec.view.id).await?;
    let image = kumo_store::images::get_by_id(&mut conn, rec.image_id)
        .await?
        .ok_or_else(|| ApiError::internal(format!("image {} of instance {} is missing", rec.image_id, rec.view.id)))?;
    let boot = match &image.kernel_path {
        Some(k) => BootSpec::Kernel {
            kernel: k.into(),
            initrd: image.initrd_path.as_ref().map(Into::into),
            cmdline: image.cmdline.clone().unwrap_or_default(),
        },
        None => BootSpec::Disk,
    };
    Ok(InstanceSpec {
        id: rec.view.id.get(),
        name: rec.view.name.clone(),
        vcpus: rec.view.vcpus,
        memory_mib: rec.view.memory_mib,
        disk_gib: rec.view.disk_gib,
        image_disk: image.disk_path.into(),
        boot,
        user_data: rec.user_data.clone(),
        ssh_keys: kumo_store::nics::instance_ssh_keys(&mut conn, rec.view.id).await?,
        volumes,
        // The host names the taps (and, without a data plane, gives the guest no NIC).
        nics: kumo_store::nics::for_instances(&mut conn, &[rec.view.id])
            .await?
            .remove(&rec.view.id)
            .map(|(nics, _)| nics)
            .unwrap_or_default()
            .iter()
            .map(|n| NicSpec { mac: n.mac.clone() })
            .collect(),
    })
}

/// Applies an observation of the reconciler. Stale observations (the state moved on) change
/// nothing. `Destroyed` also gives the host capacity back and soft-deletes the row, atomically.
pub async fn observe(
    app: &App,
    id: InstanceId,
    obs: InstanceObservation,
    cause: &str,
) -> ApiResult<Option<Transition>> {
    let mut tx = app.store.begin().await?;
    let Some(rec) = kumo_store::instances::get_by_id(&mut tx, id).await? else { return Ok(None) };
    let Some(t) = rec.state().on_observation(&obs) else { return Ok(None) };
    let reason = match &obs {
        InstanceObservation::Failed { reason } => Some(reason.as_str()),
        _ => None,
    };
    let mut volume_events = Vec::new();
    let ok = if t.to == InstanceState::Destroyed {
        volume_events = super::volumes::release_from_instance(&mut tx, id, &rec.view.name).await?;
        kumo_store::hosts::release(&mut tx, rec.host_id, rec.resources()).await?;
        kumo_store::quotas::release(&mut tx, rec.project_id, super::quotas::instance_amounts(rec.resources())).await?;
        kumo_store::nics::release_for_instance(&mut tx, id).await?;
        kumo_store::floating_ips::detach_instance(&mut tx, id).await?;
        kumo_store::instances::mark_destroyed(&mut tx, id, rec.generation).await?
    } else {
        kumo_store::instances::set_state(&mut tx, id, rec.generation, t.to, reason).await?
    };
    if !ok {
        return Ok(None);
    }
    let cause = match reason {
        Some(r) => format!("{cause}: {r}"),
        None => cause.to_string(),
    };
    let ev = kumo_store::events::record(&mut tx, &event(&rec, "state_changed", Some(t), &cause)).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
    for ev in volume_events {
        app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
    }
    if t.to == InstanceState::Destroyed {
        app.network.wake();
    }
    Ok(Some(t))
}
