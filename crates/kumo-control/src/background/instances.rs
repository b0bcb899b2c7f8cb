//! The instance reconciler.
//!
//! A reconciler takes no input: each pass reads the recorded intent (instance states in the
//! store) and the actual state (what the host agent reports), and does the one next step that
//! brings them closer. Every step is idempotent and keyed by the instance id, so a pass that was
//! killed half-way (kumod SIGKILLed) is simply done again by the next `kumod`: a `creating`
//! instance is provisioned again (a no-op if its disk exists), a `starting` one is started (a no-op
//! if its QEMU already runs), a `deleting` one is destroyed again (a no-op for what is gone).
//!
//! It runs when woken (every API change wakes it) and periodically. Steps of different instances
//! run concurrently; steps of one instance never overlap. Each pass also collects leaks: anything
//! on the host whose instance is not live in the store is stopped and quarantined (moved aside,
//! deleted after the grace period; see [`kumo_agent::storage::quarantine`]) — never destroyed outright,
//! and never when the store says the instance lives on another host. It runs under the one driver
//! of background work ([`super`]); operators read its status (last pass, changes, errors) at
//! `GET /v1/system/reconcilers`.

use super::{Error, Task};
use crate::app::instances;
use crate::error::ApiError;
use crate::App;
use kumo_host_api::{GuestStatus, HostAgent, HostError};
use kumo_types::{HostId, InstanceId, InstanceObservation, InstanceState};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

/// The instance reconciler task (see [`super::spawn`]).
pub struct Instances;

impl Task for Instances {
    async fn pass(&mut self, app: &Arc<App>) -> Result<u64, Error> {
        pass(app).await;
        // Its steps count their changes and errors themselves, when they end.
        Ok(0)
    }
}

/// One pass, for every host with an agent: collect its leaks, then start a step for every
/// instance on it that needs one. Instances of a host without an agent here (not joined, or not
/// seen by this controller yet) are left alone.
pub async fn pass(app: &Arc<App>) {
    // Moves and drains first: a move's commit hands its instance to the steps below.
    super::migrations::pass(app).await;
    for host in app.hosts.reachable() {
        let Some(agent) = app.hosts.get(host) else { continue };
        if let Err(e) = collect_leaks(app, host, agent.as_ref()).await {
            record_error(app, format!("leak collection on host {host}: {e}"));
        }
        let records = match app.store.read().await {
            Ok(mut conn) => kumo_store::instances::on_host(&mut conn, host).await,
            Err(e) => Err(e),
        };
        let records = match records {
            Ok(r) => r,
            Err(e) => {
                record_error(app, format!("listing instances: {e}"));
                return;
            }
        };
        for rec in records {
            // A migrating instance is the move's (see `super::migrations`).
            if matches!(rec.state(), InstanceState::Failed | InstanceState::Migrating) {
                continue;
            }
            if !app.reconciler.claim(rec.view.id, rec.generation) {
                continue;
            }
            let app = app.clone();
            let agent = agent.clone();
            tokio::spawn(async move {
                let id = rec.view.id;
                let changed = step(&app, agent.as_ref(), rec).await;
                let changed_meanwhile = app.reconciler.release(id);
                if changed || changed_meanwhile {
                    // The next step of this instance (e.g. starting after creating) follows at once.
                    app.reconciler.wake();
                }
            });
        }
    }
}

fn record_error(app: &App, msg: String) {
    app.reconciler.record_error(&Error::Step(msg));
}

/// Why an instance's spec could not be made, as its failure reason: the cause the app layer keeps
/// (its internal one, not the "see the server log" text meant for a request — a background step
/// has no request id to look up), logged with it.
fn spec_failure(id: InstanceId, e: ApiError) -> String {
    let cause = Error::from(e);
    tracing::error!(instance = %id, "preparing the instance's configuration failed: {cause}");
    format!("preparing the instance's configuration failed: {cause}")
}

/// Quarantines whatever is on the host without a live instance in the store: its guest is
/// stopped, its disks moved aside (see [`kumo_agent::storage::quarantine`]). The host is listed before the
/// store is read: an instance is inserted before anything of it exists on the host, so nothing
/// created in between can be mistaken for a leak. What the store says belongs to another host id
/// is never touched.
async fn collect_leaks(app: &App, host: HostId, agent: &dyn HostAgent) -> anyhow::Result<()> {
    let on_host = agent.list_instances().await?;
    if on_host.is_empty() {
        return Ok(());
    }
    let mut conn = app.store.read().await?;
    let live: HashSet<InstanceId> =
        kumo_store::instances::on_host(&mut conn, host).await?.into_iter().map(|r| r.view.id).collect();
    for id in on_host.into_iter().filter(|id| !live.contains(id)) {
        if let Some(rec) = kumo_store::instances::get_by_id(&mut conn, id).await? {
            if rec.host_id != host {
                tracing::warn!(instance = %id, owner = %rec.host_id, %host,
                    "not collecting: the store says this instance belongs to another host");
                app.reconciler.update(|s| s.foreign_skipped += 1);
                continue;
            }
        }
        tracing::warn!(instance = %id, "quarantining the host resources of an instance that is not live");
        agent.quarantine_instance(id).await?;
        app.reconciler.update(|s| {
            s.leaks_collected += 1;
            s.quarantined += 1;
        });
    }
    Ok(())
}

/// Why a step did not do its work: a failure of the instance (it becomes `failed` with the
/// reason), or its host's agent could not be reached (nothing is known about the guest: the step
/// is tried again at the next pass, the instance keeps its state).
pub(super) enum StepError {
    Failed(String),
    Unreachable(String),
}

impl From<HostError> for StepError {
    fn from(e: HostError) -> StepError {
        match e {
            HostError::Unreachable(_) => StepError::Unreachable(e.to_string()),
            e => StepError::Failed(e.to_string()),
        }
    }
}

impl From<kumo_store::StoreError> for StepError {
    fn from(e: kumo_store::StoreError) -> StepError {
        // Not the resource's fault: the step is tried again.
        StepError::Unreachable(format!("store: {e}"))
    }
}

impl From<String> for StepError {
    fn from(reason: String) -> StepError {
        StepError::Failed(reason)
    }
}

/// A failed network pass before a start: the host's agent unreachable is not the instance's
/// failure.
fn network_error(e: super::Error) -> StepError {
    let unreachable = match &e {
        super::Error::Other(any) => {
            any.chain().any(|c| matches!(c.downcast_ref::<HostError>(), Some(HostError::Unreachable(_))))
        }
        _ => false,
    };
    let msg = format!("network: {e:#}");
    if unreachable {
        StepError::Unreachable(msg)
    } else {
        StepError::Failed(msg)
    }
}

/// Does the next step for one instance, through the agent of its host. Returns whether its state
/// changed.
async fn step(app: &App, hv: &dyn HostAgent, rec: kumo_store::instances::InstanceRecord) -> bool {
    let id = rec.view.id;
    let outcome: Result<Option<(InstanceObservation, &str)>, StepError> = async {
        let spec = || async { instances::spec_for(app, &rec).await.map_err(|e| spec_failure(id, e)) };
        match rec.state() {
            InstanceState::Creating => {
                hv.provision(spec().await?).await?;
                Ok(Some((InstanceObservation::Provisioned, "reconciler: root disk and config drive ready")))
            }
            InstanceState::Starting => {
                let spec = spec().await?;
                if !spec.nics.is_empty() {
                    // Its taps must exist before the hypervisor opens them.
                    crate::background::network::converge_one(app, rec.host_id).await.map_err(network_error)?;
                }
                hv.start(spec).await?;
                Ok(Some((InstanceObservation::Booted, "reconciler: hypervisor runs the guest")))
            }
            InstanceState::Stopping => {
                hv.stop(id, app.config.stop_timeout).await?;
                Ok(Some((InstanceObservation::PoweredOff, "reconciler: guest powered off")))
            }
            InstanceState::Rebooting => {
                if hv.status(id).await? != GuestStatus::Running {
                    return Ok(Some((
                        InstanceObservation::PoweredOff,
                        "reconciler: the guest was not running at reboot",
                    )));
                }
                hv.reboot(id).await?;
                Ok(Some((InstanceObservation::Rebooted, "reconciler: guest reset")))
            }
            InstanceState::Deleting => {
                hv.destroy(id).await?;
                Ok(Some((InstanceObservation::Destroyed, "reconciler: every host resource removed")))
            }
            InstanceState::Running => match hv.status(id).await? {
                GuestStatus::Running => Ok(None),
                _ => {
                    Ok(Some((InstanceObservation::PoweredOff, "reconciler: the guest powered off or its QEMU exited")))
                }
            },
            InstanceState::Stopped => {
                // Converge: nothing may run for a stopped instance.
                if hv.status(id).await? == GuestStatus::Running {
                    hv.stop(id, app.config.stop_timeout).await?;
                }
                Ok(None)
            }
            InstanceState::Failed | InstanceState::Destroyed | InstanceState::Unknown | InstanceState::Migrating => {
                Ok(None)
            }
        }
    }
    .await;
    let (obs, cause) = match outcome {
        Ok(Some((obs, cause))) => (obs, cause.to_string()),
        Ok(None) => return false,
        Err(StepError::Unreachable(reason)) => {
            record_error(app, format!("instance {id} ({}), its host {}: {reason}", rec.state(), rec.host_id));
            return false;
        }
        Err(StepError::Failed(reason)) => {
            record_error(app, format!("instance {id} ({}): {reason}", rec.state()));
            (InstanceObservation::Failed { reason: reason.clone() }, format!("reconciler: {} failed", rec.state()))
        }
    };
    match instances::observe(app, id, obs, &cause).await {
        Ok(Some(t)) => {
            tracing::info!(instance = %id, from = %t.from, to = %t.to, "{cause}");
            app.reconciler.update(|s| s.changes += 1);
            true
        }
        Ok(None) => false,
        Err(e) => {
            record_error(app, format!("instance {id}: recording the observation: {}", e.internal.unwrap_or(e.message)));
            false
        }
    }
}

/// Waits until no step is in flight (tests and graceful shutdown).
pub async fn idle(app: &App, timeout: Duration) -> bool {
    let until = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < until {
        if app.reconciler.steps_in_flight() == 0 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}
