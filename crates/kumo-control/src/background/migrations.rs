//! Moves of instances to another host (cold migration) and host drains: the background side.
//! Part of the instance reconciler's pass (so only the controller holding the background lease
//! runs it; see [`super::Task::needs_lease`]).
//!
//! A move is a row of the `migrations` table (see `kumo_store::migrations`) recorded by
//! `app::migrations::begin`; each step does the next phase and records it with a
//! compare-and-set on the phase, so a controller killed anywhere leaves the row where the next
//! one (its successor holding the lease) picks it up and does the step again — every host call
//! here is idempotent:
//!
//! ```text
//!  exporting ──▶ copying ──▶ [commit] ──▶ cleaning ──▶ done
//!      │            │
//!      └────────────┴──(a host refused, or a host unreachable for MOVE_PATIENCE)──▶ rolling_back ──▶ rolled_back
//! ```
//!
//! - `exporting`: the source stops the guest (a no-op if stopped) and stages its root disk,
//!   flattened into one standalone qcow2 (`export_disk`: size and SHA-256 recorded).
//! - `copying`: the controller reads the staged file from the source in chunks and writes them
//!   to the target (`read_export` / `write_import`, raw bytes over the agents' HTTPS API, always
//!   from byte 0 again after a crash); the target checks size and SHA-256 and only then makes the
//!   copy the instance's root disk (`finish_import`). Then the **commit**, one transaction: the
//!   instance row takes the target host and leaves `migrating` (`starting` if it was running,
//!   else `stopped`), the source's capacity is released (the target's was reserved when the move
//!   was recorded), the phase becomes `cleaning`.
//! - `cleaning`: the source's copy is destroyed — only now, after the target confirmed its copy
//!   and the store says the instance lives there — and both hosts' staging files removed.
//! - Rolling back (before the commit only): the instance goes back to `starting`/`stopped` on its
//!   source (its disk never left it), the target's reservation is released, then the target's
//!   copy is destroyed (`rolling_back`).
//!
//! Why nothing runs twice and nothing is lost: before the commit the store places the instance on
//! the source, whose guest is stopped, and the target holds only a disk that nothing starts (the
//! instance reconciler starts guests only on the host the store names, and leaves `migrating`
//! instances alone; the leak collector never touches an instance the store places on another
//! host). After the commit only the target may start it. The source's disk is removed only after
//! the commit, and the target's only after a roll-back. See docs/architecture.md.
//!
//! Drains: a host with a drain under way gets one move at a time (the scheduler chooses each
//! target); an instance whose move was refused or rolled back during this drain is not tried
//! again; instances in a transitional state are waited for. The drain ends `done` when no
//! instance is left on the host and every move off it has cleaned up its source copy, `incomplete` (saying why per instance) when what is left cannot move.

use super::instances::StepError;
use super::Error;
use crate::app::instances::event;
use crate::App;
use kumo_host_api::{DiskExport, HostAgent, DISK_CHUNK_BYTES};
use kumo_store::migrations::{MigrationRecord, Phase};
use kumo_types::{DrainState, HostId, InstanceId, InstanceObservation, InstanceState, NameOrId};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// How long a move waits for an unreachable host before it is rolled back (before its commit).
pub const MOVE_PATIENCE: Duration = Duration::from_secs(10 * 60);

/// Drives the drains, then starts a step for every open move.
pub async fn pass(app: &Arc<App>) {
    if let Err(e) = drive_drains(app).await {
        app.reconciler.record_error(&e);
    }
    let open = match app.store.read().await {
        Ok(mut conn) => kumo_store::migrations::open(&mut conn).await,
        Err(e) => Err(e),
    };
    let open = match open {
        Ok(o) => o,
        Err(e) => return app.reconciler.record_error(&Error::Store(e)),
    };
    for m in open {
        // Keyed by the move (not the instance): cleaning a source runs beside the instance's
        // own steps on its new host.
        if !app.reconciler.claim(m.id, 0) {
            continue;
        }
        let app = app.clone();
        tokio::spawn(async move {
            let id = m.id;
            let changed = step(&app, m).await;
            let again = app.reconciler.release(id);
            if changed || again {
                app.reconciler.wake();
            }
        });
    }
}

fn agent(app: &App, host: HostId) -> Result<Arc<dyn HostAgent>, StepError> {
    if app.hosts.is_lost(host) {
        return Err(StepError::Unreachable(format!("host {host} is unreachable")));
    }
    app.hosts.get(host).ok_or_else(|| StepError::Unreachable(format!("no agent of host {host} here yet")))
}

/// The next phase of one move; returns whether it changed anything.
async fn step(app: &App, m: MigrationRecord) -> bool {
    let outcome = match m.phase {
        Phase::Exporting => export(app, &m).await,
        Phase::Copying => copy_and_commit(app, &m).await,
        Phase::Cleaning => clean_source(app, &m).await,
        Phase::RollingBack => clean_target(app, &m).await,
        Phase::Done | Phase::RolledBack | Phase::Refused => Ok(false),
    };
    let record = |msg: &str| {
        app.reconciler.record_error(&Error::Step(format!(
            "move of instance {} ({}): {msg}",
            m.instance_id,
            m.phase.as_str()
        )))
    };
    match outcome {
        Ok(changed) => changed,
        Err(StepError::Unreachable(msg)) => {
            record(&msg);
            let waited = (chrono::Utc::now() - m.time_modified).to_std().unwrap_or_default();
            if m.phase.before_commit() && waited > MOVE_PATIENCE {
                let why = format!("gave up after {} minutes: {msg}", MOVE_PATIENCE.as_secs() / 60);
                return roll_back(app, &m, &why).await;
            }
            false
        }
        Err(StepError::Failed(msg)) => {
            record(&msg);
            // After the commit a failure is retried: the instance is on its new host already.
            m.phase.before_commit() && roll_back(app, &m, &msg).await
        }
    }
}

fn target_of(m: &MigrationRecord) -> Result<HostId, StepError> {
    m.target_host_id.ok_or_else(|| StepError::Failed("the move has no target host".into()))
}

async fn host_name(app: &App, host: HostId) -> String {
    let name = match app.store.read().await {
        Ok(mut conn) => {
            kumo_store::hosts::get(&mut conn, &NameOrId::Id(host.get())).await.ok().flatten().map(|h| h.name)
        }
        Err(_) => None,
    };
    name.unwrap_or_else(|| host.to_string())
}

/// `exporting`: stop the guest on the source and stage its disk.
async fn export(app: &App, m: &MigrationRecord) -> Result<bool, StepError> {
    let source = agent(app, m.source_host_id)?;
    let id = m.instance_id;
    source.stop(id, app.config.stop_timeout).await?;
    let staged = source.export_disk(id).await?;
    let mut tx = app.store.begin().await?;
    if !kumo_store::migrations::exported(&mut tx, m.id, staged.size_bytes, &staged.sha256).await? {
        return Ok(false);
    }
    let (from, to) = (host_name(app, m.source_host_id).await, host_name(app, target_of(m)?).await);
    let reason = format!(
        "moving from host '{from}' to host '{to}': copying its root disk ({} MiB)",
        staged.size_bytes.div_ceil(1 << 20)
    );
    set_reason(&mut tx, id, &reason).await?;
    tx.commit().await.map_err(kumo_store::StoreError::from)?;
    tracing::info!(instance = %id, bytes = staged.size_bytes, sha256 = %staged.sha256, "move: root disk staged");
    Ok(true)
}

/// The progress of a `migrating` instance, in its reason (no state change).
async fn set_reason(tx: &mut kumo_store::Conn, id: InstanceId, reason: &str) -> Result<(), StepError> {
    if let Some(rec) = kumo_store::instances::get_by_id(tx, id).await? {
        if rec.state() == InstanceState::Migrating {
            kumo_store::instances::set_state(tx, id, rec.generation, InstanceState::Migrating, Some(reason)).await?;
        }
    }
    Ok(())
}

/// `copying`: the staged disk to the target in chunks, checked there; then the commit.
async fn copy_and_commit(app: &App, m: &MigrationRecord) -> Result<bool, StepError> {
    let (source, target) = (agent(app, m.source_host_id)?, agent(app, target_of(m)?)?);
    let id = m.instance_id;
    let Some((size, sha256)) = m.disk.clone() else {
        return Err(StepError::Failed("the move has no staged disk recorded".into()));
    };
    let started = std::time::Instant::now();
    let mut offset = 0u64;
    loop {
        let chunk = source.read_export(id, offset, DISK_CHUNK_BYTES).await?;
        let n = chunk.len() as u64;
        // The first write (offset 0) starts the copy afresh, even for an empty disk.
        if n > 0 || offset == 0 {
            target.write_import(id, offset, chunk).await?;
        }
        offset += n;
        if n == 0 || offset >= size {
            break;
        }
    }
    if offset != size {
        return Err(StepError::Failed(format!(
            "the staged disk on the source has {offset} bytes, {size} were recorded"
        )));
    }
    target.finish_import(id, DiskExport { size_bytes: size, sha256 }).await?;
    let secs = started.elapsed().as_secs_f64();
    tracing::info!(instance = %id, bytes = size, secs, "move: root disk copied and verified on the target");
    commit(app, m).await
}

/// The commit: the instance is on the target from now on (one transaction; see the module docs).
async fn commit(app: &App, m: &MigrationRecord) -> Result<bool, StepError> {
    let target_id = target_of(m)?;
    let (from, to) = (host_name(app, m.source_host_id).await, host_name(app, target_id).await);
    let mut tx = app.store.begin().await?;
    let Some(rec) = kumo_store::instances::get_by_id(&mut tx, m.instance_id).await? else { return Ok(false) };
    if rec.host_id != m.source_host_id {
        return Err(StepError::Failed(format!("the instance is on host {}, not on the move's source", rec.host_id)));
    }
    let obs = InstanceObservation::Moved { was_running: m.was_running };
    let Some(t) = rec.state().on_observation(&obs) else {
        return Err(StepError::Failed(format!("the instance is {}, not migrating", rec.state())));
    };
    let reason = (t.to == InstanceState::Stopped).then(|| format!("moved from host '{from}' to host '{to}'"));
    if !kumo_store::migrations::set_phase(&mut tx, m.id, Phase::Copying, Phase::Cleaning, None).await? {
        return Ok(false);
    }
    kumo_store::hosts::release(&mut tx, m.source_host_id, rec.resources()).await?;
    if !kumo_store::instances::move_to(&mut tx, rec.view.id, rec.generation, target_id, t.to, reason.as_deref()).await?
    {
        return Ok(false);
    }
    let cause = format!("reconciler: moved from host '{from}' to host '{to}'");
    let ev = kumo_store::events::record(&mut tx, &event(&rec, "state_changed", Some(t), &cause)).await?;
    tx.commit().await.map_err(kumo_store::StoreError::from)?;
    app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
    tracing::info!(instance = %rec.view.id, from = %from, to = %to, state = %t.to, "move committed");
    // The interfaces follow the instance: taps, DHCP and firewall entries on the target, gone
    // from the source.
    app.network.wake();
    Ok(true)
}

/// `cleaning`: the source's copy goes, now that the instance lives on the target.
async fn clean_source(app: &App, m: &MigrationRecord) -> Result<bool, StepError> {
    let source = agent(app, m.source_host_id)?;
    let id = m.instance_id;
    let on = current_host(app, id).await?;
    if on == Some(m.source_host_id) {
        // Never: the commit moved it. Refuse to destroy the only copy.
        return Err(StepError::Unreachable("the store still places the instance on the source; not cleaning".into()));
    }
    source.destroy(id).await?;
    source.discard_move(id).await?;
    agent(app, target_of(m)?)?.discard_move(id).await?;
    let mut tx = app.store.begin().await?;
    let done = kumo_store::migrations::set_phase(&mut tx, m.id, Phase::Cleaning, Phase::Done, None).await?;
    tx.commit().await.map_err(kumo_store::StoreError::from)?;
    tracing::info!(instance = %id, "move done: nothing of the instance is left on the source");
    Ok(done)
}

/// `rolling_back`: the target's copy goes; the instance never left the source.
async fn clean_target(app: &App, m: &MigrationRecord) -> Result<bool, StepError> {
    let id = m.instance_id;
    let target_id = target_of(m)?;
    let target = agent(app, target_id)?;
    if current_host(app, id).await? == Some(target_id) {
        return Err(StepError::Unreachable("the store places the instance on the target; not cleaning it".into()));
    }
    target.destroy(id).await?;
    target.discard_move(id).await?;
    agent(app, m.source_host_id)?.discard_move(id).await?;
    let mut tx = app.store.begin().await?;
    let done = kumo_store::migrations::set_phase(&mut tx, m.id, Phase::RollingBack, Phase::RolledBack, None).await?;
    tx.commit().await.map_err(kumo_store::StoreError::from)?;
    tracing::info!(instance = %id, "move rolled back: nothing of the instance is left on the target");
    Ok(done)
}

async fn current_host(app: &App, id: InstanceId) -> Result<Option<HostId>, StepError> {
    let mut conn = app.store.read().await?;
    Ok(kumo_store::instances::get_by_id(&mut conn, id).await?.map(|r| r.host_id))
}

/// Gives a move up before its commit: the instance back as it was on its source, the target's
/// reservation released, in one transaction; its copy is removed next (`rolling_back`).
async fn roll_back(app: &App, m: &MigrationRecord, why: &str) -> bool {
    let outcome: Result<bool, StepError> = async {
        let target_id = target_of(m)?;
        let to = host_name(app, target_id).await;
        let mut tx = app.store.begin().await?;
        let reason = format!("the move to host '{to}' was rolled back: {why}");
        if !kumo_store::migrations::set_phase(&mut tx, m.id, m.phase, Phase::RollingBack, Some(why)).await? {
            return Ok(false);
        }
        let mut ev = None;
        if let Some(rec) = kumo_store::instances::get_by_id(&mut tx, m.instance_id).await? {
            kumo_store::hosts::release(&mut tx, target_id, rec.resources()).await?;
            let obs = InstanceObservation::MoveRolledBack { was_running: m.was_running, reason: why.to_string() };
            if let Some(t) = rec.state().on_observation(&obs).filter(|_| rec.host_id == m.source_host_id) {
                kumo_store::instances::set_state(&mut tx, rec.view.id, rec.generation, t.to, Some(&reason)).await?;
                let cause = format!("reconciler: {reason}");
                let e = kumo_store::events::record(&mut tx, &event(&rec, "state_changed", Some(t), &cause)).await?;
                ev = Some((rec, e));
            }
        }
        tx.commit().await.map_err(kumo_store::StoreError::from)?;
        if let Some((rec, e)) = ev {
            app.events.publish(Some(rec.project_id), Some(&rec.view.project), e);
        }
        tracing::warn!(instance = %m.instance_id, "{reason}");
        Ok(true)
    }
    .await;
    match outcome {
        Ok(changed) => changed,
        Err(StepError::Failed(msg) | StepError::Unreachable(msg)) => {
            app.reconciler.record_error(&Error::Step(format!("rolling back the move of {}: {msg}", m.instance_id)));
            false
        }
    }
}

/// Every host being drained: the next move, or the drain's end.
async fn drive_drains(app: &App) -> Result<(), Error> {
    let hosts = {
        let mut conn = app.store.read().await?;
        kumo_store::hosts::draining(&mut conn).await?
    };
    for h in hosts {
        let Some(drain) = &h.drain else { continue };
        let mut tx = app.store.begin().await?;
        let moves = kumo_store::migrations::from_host_since(&mut tx, h.id, drain.time_started).await?;
        if moves.iter().any(|m| m.phase.before_commit()) {
            continue; // one at a time
        }
        let on_host = kumo_store::instances::on_host(&mut tx, h.id).await?;
        if on_host.is_empty() {
            if moves.iter().any(|m| m.phase == Phase::Cleaning) {
                continue; // done once nothing of the moved instances is left on the host either
            }
            kumo_store::hosts::finish_drain(&mut tx, h.id, DrainState::Done, None).await?;
            tx.commit().await.map_err(kumo_store::StoreError::from)?;
            tracing::info!(host = %h.name, "drain done: no instance is left on the host");
            continue;
        }
        let tried: HashSet<InstanceId> = moves
            .iter()
            .filter(|m| m.drain && matches!(m.phase, Phase::RollingBack | Phase::RolledBack | Phase::Refused))
            .map(|m| m.instance_id)
            .collect();
        let next = on_host.iter().find(|r| {
            matches!(r.state(), InstanceState::Running | InstanceState::Stopped) && !tried.contains(&r.view.id)
        });
        if let Some(rec) = next {
            let cause = format!("host_drain of '{}'", h.name);
            match crate::app::migrations::begin(app, &mut tx, rec, None, true, &cause).await {
                Ok(ev) => {
                    tx.commit().await.map_err(kumo_store::StoreError::from)?;
                    app.events.publish(Some(rec.project_id), Some(&rec.view.project), ev);
                    tracing::info!(host = %h.name, instance = %rec.view.name, "drain: moving an instance off the host");
                }
                Err(e) => {
                    drop(tx);
                    let why = e.internal.clone().unwrap_or(e.message.clone());
                    refuse(app, h.id, rec, &why).await?;
                    tracing::warn!(host = %h.name, instance = %rec.view.name, "drain: cannot move: {why}");
                }
            }
            app.reconciler.wake();
            continue;
        }
        if on_host.iter().any(|r| r.state().is_transitional()) {
            continue; // wait for it to rest
        }
        let mut left = Vec::new();
        for r in &on_host {
            let why = moves
                .iter()
                .rev()
                .find(|m| m.instance_id == r.view.id && m.reason.is_some())
                .and_then(|m| m.reason.clone())
                .unwrap_or_else(|| format!("it is {} (only running and stopped instances move)", r.state()));
            left.push(format!("{}: {why}", r.view.name));
        }
        let reason = format!("{} instance(s) left on the host: {}", left.len(), left.join("; "));
        kumo_store::hosts::finish_drain(&mut tx, h.id, DrainState::Incomplete, Some(&reason)).await?;
        tx.commit().await.map_err(kumo_store::StoreError::from)?;
        tracing::warn!(host = %h.name, "drain incomplete: {reason}");
    }
    Ok(())
}

/// Records that a drain could not start a move of `rec` (so it is not tried again in this drain).
async fn refuse(app: &App, host: HostId, rec: &kumo_store::instances::InstanceRecord, why: &str) -> Result<(), Error> {
    let mut tx = app.store.begin().await?;
    let new = kumo_store::migrations::NewMigration {
        instance_id: rec.view.id,
        source_host_id: host,
        target_host_id: None,
        phase: Phase::Refused,
        was_running: rec.state() == InstanceState::Running,
        drain: true,
        reason: Some(why),
    };
    kumo_store::migrations::insert(&mut tx, &new).await?;
    tx.commit().await.map_err(kumo_store::StoreError::from)?;
    Ok(())
}
