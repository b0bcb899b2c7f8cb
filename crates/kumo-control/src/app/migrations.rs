//! Moving an instance to another host (cold migration) and draining a host: the requests. The
//! move itself is carried out by the background reconciler (`background::migrations`), phase by
//! phase, from the row recorded here.
//!
//! A move is begun in one transaction (`begin`): the state machine allows it (`running` or
//! `stopped` → `migrating`), the target is chosen (the scheduler among the other ready hosts of
//! the instance's zone, or the host asked for, checked the same way), its capacity reserved, the
//! move recorded (phase `exporting`) and the instance set `migrating`. Nothing happens on a host
//! before that commits, and nothing is changed when it is refused. Refusals: a host that is not
//! ready (cordoned, unreachable) or is the instance's own, another zone, no capacity (507 with the
//! scheduler's reason), attached volumes and an unreachable source host (their disks live only
//! there: moving them needs shared storage, a later issue).

use super::instances::{candidates, event, reserve_among};
use super::selector;
use crate::context::{Access, OpContext};
use crate::error::{ApiError, ApiResult};
use crate::scheduler;
use crate::App;
use kumo_store::instances::InstanceRecord;
use kumo_store::migrations::{NewMigration, Phase};
use kumo_store::Conn;
use kumo_types::{
    EventView, HostState, HostView, InstanceAction, InstanceMigrate, InstanceState, InstanceView, NameOrId,
};

/// `POST /v1/instances/{instance}/migrate` (operators).
pub async fn migrate(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    instance: &str,
    p: &InstanceMigrate,
) -> ApiResult<InstanceView> {
    ctx.authorize(Access::Operator)?;
    let target = p.host.as_deref().map(|h| selector("host", h)).transpose()?;
    let mut tx = app.store.begin().await?;
    let rec = super::instances::get(&mut tx, ctx, project, instance, Access::Write).await?;
    let ev = begin(app, &mut tx, &rec, target.as_ref(), false, &ctx.cause("instance_migrate")).await?;
    super::instances::commit_action(app, ctx, tx, &rec, ev).await
}

/// Begins a move of `rec` to `target` (None: the scheduler's choice) in the caller's transaction:
/// checks, reserves the target's capacity, records the move and sets the instance `migrating`.
/// Returns the state change's event (to publish once committed). See the module docs.
pub(crate) async fn begin(
    app: &App,
    tx: &mut Conn,
    rec: &InstanceRecord,
    target: Option<&NameOrId>,
    drain: bool,
    cause: &str,
) -> ApiResult<EventView> {
    let name = &rec.view.name;
    let t = rec.state().on_action(InstanceAction::Migrate).map_err(ApiError::conflict)?;
    let hosts = candidates(tx, &app.config).await?;
    let source = hosts
        .iter()
        .find(|h| h.id == rec.host_id)
        .ok_or_else(|| ApiError::internal(format!("host {} of instance {} is missing", rec.host_id, rec.view.id)))?;
    if hosts.len() == 1 {
        return Err(ApiError::conflict(format!(
            "instance '{name}' cannot be moved: its host '{}' is the only host of the cloud",
            source.name
        )));
    }
    if matches!(source.state, HostState::Unreachable | HostState::Down) || app.hosts.is_lost(source.id) {
        return Err(ApiError::conflict(format!(
            "instance '{name}' cannot be moved: its host '{}' is {} and its root disk is only there; \
             moving instances off a lost host needs shared storage (a later issue)",
            source.name,
            if source.state == HostState::Down { "down" } else { "unreachable" }
        )));
    }
    let volumes = kumo_store::volumes::of_instance(tx, rec.view.id).await?;
    if !volumes.is_empty() {
        return Err(ApiError::conflict(format!(
            "instance '{name}' has {} volume(s) attached ({}); moving volumes between hosts needs shared storage \
             (a later issue): detach them first",
            volumes.len(),
            volumes.iter().map(|v| v.view.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    if let Some(open) = kumo_store::migrations::open_for_instance(tx, rec.view.id).await? {
        return Err(ApiError::conflict(format!(
            "instance '{name}' has a move still being cleaned up (phase {}); try again shortly",
            open.phase.as_str()
        )));
    }
    let group = match rec.placement_group_id {
        Some(g) => kumo_store::placement_groups::get(tx, rec.project_id, &NameOrId::Id(g.get())).await?,
        None => None,
    };
    let zone = Some(source.zone.as_str()).filter(|z| !z.is_empty());
    // The target must have what the instance's type needs of its host, weighed as creates are.
    let labels = kumo_store::instance_types::host_labels(tx, rec.instance_type_id).await?;
    let weights = app.config.scheduler_weights;
    let target_id = match target {
        Some(sel) => {
            let h = find(&hosts, sel).ok_or_else(|| {
                ApiError::invalid(format!("host '{}' does not exist (see `kumo host list`)", show(sel)))
            })?;
            check_target(rec, source, h)?;
            let only = h.id;
            let ask = scheduler::Ask { zone: None, labels: Some(&labels), weights };
            reserve_among(tx, &app.config, &ask, group.as_ref(), rec.resources(), &|c: &HostView| c.id == only)
                .await
                .map_err(|e| capacity_refusal(e, &format!("host '{}' cannot take instance '{name}'", h.name)))?
        }
        None => {
            let from = source.id;
            let ask = scheduler::Ask { zone, labels: Some(&labels), weights };
            reserve_among(tx, &app.config, &ask, group.as_ref(), rec.resources(), &|c: &HostView| c.id != from)
                .await
                .map_err(|e| capacity_refusal(e, &format!("no other host can take instance '{name}'")))?
        }
    };
    let target_name = hosts.iter().find(|h| h.id == target_id).map(|h| h.name.clone()).unwrap_or_default();
    let reason = format!(
        "moving from host '{}' to host '{target_name}': stopping the guest, staging its root disk",
        source.name
    );
    if !kumo_store::instances::set_state(tx, rec.view.id, rec.generation, t.to, Some(&reason)).await? {
        return Err(ApiError::conflict("the instance changed while the request was handled; retry"));
    }
    let new = NewMigration {
        instance_id: rec.view.id,
        source_host_id: source.id,
        target_host_id: Some(target_id),
        phase: Phase::Exporting,
        was_running: rec.state() == InstanceState::Running,
        drain,
        reason: None,
    };
    kumo_store::migrations::insert(tx, &new).await?;
    let cause = format!("{cause} (from host '{}' to host '{target_name}')", source.name);
    Ok(kumo_store::events::record(tx, &event(rec, "state_changed", Some(t), &cause)).await?)
}

/// The scheduler's refusal, saying which move it refuses.
fn capacity_refusal(e: ApiError, what: &str) -> ApiError {
    match e.code {
        kumo_types::ErrorCode::InsufficientCapacity => ApiError { message: format!("{what}: {}", e.message), ..e },
        _ => e,
    }
}

fn find<'a>(hosts: &'a [HostView], sel: &NameOrId) -> Option<&'a HostView> {
    hosts.iter().find(|h| match sel {
        NameOrId::Name(n) => h.name == n.as_str(),
        NameOrId::Id(id) => h.id.get() == *id,
    })
}

fn show(sel: &NameOrId) -> String {
    match sel {
        NameOrId::Name(n) => n.to_string(),
        NameOrId::Id(id) => id.to_string(),
    }
}

/// Why the host asked for cannot take the instance (before capacity, which the scheduler says).
fn check_target(rec: &InstanceRecord, source: &HostView, h: &HostView) -> ApiResult<()> {
    let name = &rec.view.name;
    if h.id == source.id {
        return Err(ApiError::conflict(format!("instance '{name}' is already on host '{}'", h.name)));
    }
    match h.state {
        HostState::Ready => {}
        HostState::Cordoned => {
            return Err(ApiError::conflict(format!(
                "host '{}' is cordoned: it takes no instances (`kumo host uncordon {}` first)",
                h.name, h.name
            )))
        }
        HostState::Unreachable => {
            return Err(ApiError::conflict(format!("host '{}' is unreachable: no heartbeat from its agent", h.name)))
        }
        HostState::Down => return Err(ApiError::conflict(format!("host '{}' is down: its agent was stopped", h.name))),
    }
    if h.zone != source.zone {
        return Err(ApiError::conflict(format!(
            "host '{}' is in zone '{}', instance '{name}' in zone '{}': a move stays in its zone",
            h.name, h.zone, source.zone
        )));
    }
    Ok(())
}
