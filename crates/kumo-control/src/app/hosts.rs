//! Hosts (operators only): registration of the local host, the operator views, cordoning, and
//! the one rule of a host's state ([`state`]).

use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{ApiError, ApiResult};
use crate::{App, ControlConfig};
use chrono::{DateTime, Utc};
use kumo_host_api::HostAgent;
use kumo_store::hosts::{HostReport, Resources};
use kumo_store::Store;
use kumo_types::page::PageRequest;
use kumo_types::{HostId, HostRole, HostState, HostView, ResultsPage};
use std::time::Duration;

/// Whether a host takes new instances, the one rule every view and the scheduler go through: an
/// agent host whose agent said it was stopping and has not sent a heartbeat since → `down`;
/// cordoned → `cordoned`; the local host (in process) → `ready`; an agent host whose last
/// heartbeat is older than `unreachable_after` (`--host-unreachable-seconds`), or that was never
/// heard from → `unreachable`; else `ready`.
pub fn state(h: &HostView, now: DateTime<Utc>, unreachable_after: Duration) -> HostState {
    if h.time_left.is_some() {
        HostState::Down
    } else if h.cordoned {
        HostState::Cordoned
    } else if is_unreachable(h, now, unreachable_after) {
        HostState::Unreachable
    } else {
        HostState::Ready
    }
}

/// Whether the host's agent has not renewed its lease within `unreachable_after` (never true of
/// the all-in-one's own host, which is in process), cordoned or not.
pub fn is_unreachable(h: &HostView, now: DateTime<Utc>, unreachable_after: Duration) -> bool {
    h.role == HostRole::Agent && lease_expired(h.last_seen, now, unreachable_after)
}

/// Whether an agent last heard from at `last_seen` (None: never) has lost its lease at `now`:
/// the one rule for a host's `unreachable` and its instances' `unknown`.
pub fn lease_expired(last_seen: Option<DateTime<Utc>>, now: DateTime<Utc>, unreachable_after: Duration) -> bool {
    match last_seen {
        Some(seen) => (now - seen).to_std().unwrap_or_default() > unreachable_after,
        None => true,
    }
}

/// `h` with its [`state`] as of now.
pub fn with_state(mut h: HostView, config: &ControlConfig) -> HostView {
    h.state = state(&h, Utc::now(), config.host_unreachable_after);
    h
}

/// Registers (or refreshes, renaming it if its name changed) the host the agent runs on, under
/// its stable id (`config.host_id`, from `DATA_DIR/host-id`; see [`crate::identity`]); returns
/// its id.
pub async fn register(store: &Store, host: &dyn HostAgent, config: &ControlConfig) -> anyhow::Result<HostId> {
    let info = host.host_info().await?;
    let report = HostReport {
        name: info.name.clone(),
        driver: info.driver,
        accelerator: info.accelerator,
        accelerator_reason: info.accelerator_reason,
        total: Resources { vcpus: info.vcpus, memory_mib: info.memory_mib, disk_gib: info.disk_gib, gpus: info.gpus },
        cpu_overcommit: config.overcommit[0],
        memory_overcommit: config.overcommit[1],
        disk_overcommit: config.overcommit[2],
    };
    // A new host (or one from before zones) is put in the zone `default` by the store.
    let mut tx = store.begin().await?;
    let host = kumo_store::hosts::register(&mut tx, config.host_id, &report).await?;
    tx.commit().await?;
    tracing::info!(
        host = %host.name, zone = %host.zone, driver = %host.driver, accelerator = %host.accelerator,
        reason = %host.accelerator_reason, "host registered"
    );
    Ok(host.id)
}

pub async fn list(app: &App, ctx: &OpContext, page: &PageRequest) -> ApiResult<ResultsPage<HostView>> {
    ctx.authorize(Access::Operator)?;
    let mut page = kumo_store::hosts::list(&mut *read(app).await?, page).await?;
    page.items = page.items.into_iter().map(|h| with_state(h, &app.config)).collect();
    Ok(page)
}

pub async fn view(app: &App, ctx: &OpContext, host: &str) -> ApiResult<HostView> {
    ctx.authorize(Access::Operator)?;
    let sel = selector("host", host)?;
    let h =
        kumo_store::hosts::get(&mut *read(app).await?, &sel).await?.ok_or_else(|| ApiError::not_found("host", host))?;
    Ok(with_state(h, &app.config))
}

/// Cordons a host (no new instance is placed on it; the ones there keep running) or uncordons
/// it. Idempotent.
pub async fn set_cordoned(app: &App, ctx: &OpContext, host: &str, cordoned: bool) -> ApiResult<HostView> {
    ctx.authorize(Access::Operator)?;
    let sel = selector("host", host)?;
    let mut tx = app.store.begin().await?;
    let h = kumo_store::hosts::get(&mut tx, &sel).await?.ok_or_else(|| ApiError::not_found("host", host))?;
    kumo_store::hosts::set_cordoned(&mut tx, h.id, cordoned).await?;
    let h = kumo_store::hosts::get(&mut tx, &kumo_types::NameOrId::Id(h.id.get()))
        .await?
        .ok_or_else(|| ApiError::internal("host vanished"))?;
    tx.commit().await.map_err(ApiError::internal)?;
    tracing::info!(host = %h.name, cordoned, "host cordon changed");
    Ok(with_state(h, &app.config))
}

/// Replaces a host's operator labels (instance types' `host_labels` are matched against them).
/// Bad labels → 400 and nothing changed; idempotent.
pub async fn set_labels(app: &App, ctx: &OpContext, host: &str, labels: &kumo_types::Labels) -> ApiResult<HostView> {
    ctx.authorize(Access::Operator)?;
    kumo_types::check_labels(labels).map_err(|e| ApiError::invalid(format!("labels: {e}")))?;
    let sel = selector("host", host)?;
    let mut tx = app.store.begin().await?;
    let h = kumo_store::hosts::get(&mut tx, &sel).await?.ok_or_else(|| ApiError::not_found("host", host))?;
    if !kumo_store::hosts::set_labels(&mut tx, h.id, labels).await? {
        return Err(ApiError::not_found("host", host));
    }
    let h = kumo_store::hosts::get(&mut tx, &kumo_types::NameOrId::Id(h.id.get()))
        .await?
        .ok_or_else(|| ApiError::internal("host vanished"))?;
    tx.commit().await.map_err(ApiError::internal)?;
    tracing::info!(host = %h.name, labels = %kumo_types::labels_text(labels), "host labels set");
    Ok(with_state(h, &app.config))
}

/// Removes an agent host from the cloud (operators): a host retired, or one that died and will
/// not come back. Refused (409, nothing changed) while anything is placed on it — its instances
/// must be moved or deleted first — and for the all-in-one's own host. Its agent's credential
/// stops working at once (its heartbeats get 401); to bring the machine back, join it again with a
/// new token (after removing the agent's `DATA_DIR/membership.json`).
pub async fn delete(app: &App, ctx: &OpContext, host: &str) -> ApiResult<()> {
    ctx.authorize(Access::Operator)?;
    let sel = selector("host", host)?;
    let mut tx = app.store.begin().await?;
    let h = kumo_store::hosts::get(&mut tx, &sel).await?.ok_or_else(|| ApiError::not_found("host", host))?;
    if h.role == kumo_types::HostRole::Local {
        return Err(ApiError::conflict(format!(
            "host '{}' is this all-in-one kumod's own host; it cannot be removed",
            h.name
        )));
    }
    let on = kumo_store::instances::on_host(&mut tx, h.id).await?;
    if !on.is_empty() {
        let names: Vec<&str> = on.iter().take(5).map(|i| i.view.name.as_str()).collect();
        let more = if on.len() > names.len() { format!(" and {} more", on.len() - names.len()) } else { String::new() };
        return Err(ApiError::conflict(format!(
            "host '{}' still has {} instance{} ({}{more}): move them off it (kumo host drain) or delete them first",
            h.name,
            on.len(),
            if on.len() == 1 { "" } else { "s" },
            names.join(", ")
        )));
    }
    if !kumo_store::hosts::remove(&mut tx, h.id).await? {
        return Err(ApiError::conflict(format!(
            "host '{}' has capacity reserved (an instance being placed or moved there); try again when it is done",
            h.name
        )));
    }
    tx.commit().await.map_err(ApiError::internal)?;
    tracing::info!(host = %h.name, id = %h.id, "host removed");
    app.hosts_sync.wake();
    Ok(())
}
