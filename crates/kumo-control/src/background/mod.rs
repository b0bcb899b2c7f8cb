//! Background work: every loop that makes the hosts match the recorded intent, in one place,
//! behind one driver.
//!
//! A background task is a small reconciler. It takes no input: each pass reads the desired state
//! (the store) and the actual state (what the host agent reports), and does the next idempotent
//! step that brings them closer, so a pass killed half-way is simply done again by the next one
//! (or by the next `kumod`). One file per task:
//!
//! | task (status name)            | file                  | period                      | woken by |
//! |-------------------------------|-----------------------|-----------------------------|----------|
//! | instances (`instances`)       | [`instances`], [`migrations`] (moves between hosts, drains) | `reconcile_period` | every instance change, move and drain |
//! | volumes (`volumes`)           | [`volumes`]           | `reconcile_period`          | every volume or snapshot change |
//! | network (`network`)           | [`network`]           | 5 × `reconcile_period`      | every network change, instance create/destroy |
//! | monitoring (`monitoring`)     | [`monitoring`]        | `--metrics-interval`        | — |
//! | billing (`billing`)           | [`billing`]           | `reconcile_period`          | a budget change |
//! | audit retention (`audit_retention`) | [`audit_retention`] | 1 hour (only with `--audit-retention-days`) | — |
//! | orphan sweep (`sweep`)        | [`sweep`]             | `--sweep-minutes`           | — (its start-up pass runs before the API serves) |
//! | image catalogue (`images`)    | [`images`]            | `--image-rescan-seconds`    | — (its start-up pass runs before the API serves) |
//! | S3 request counts (`requests`) | [`requests`]         | 10 s (every controller: no lease) | — (and a last flush when kumod stops) |
//!
//! The driver ([`spawn`]) runs a task's pass at start (or after one period, for the sweep), then
//! whenever the task is woken ([`Handle::wake`]) or its period has passed since the last pass
//! began. Passes of one task never overlap: a pass asked for directly (the network converge an
//! instance start waits for) waits for the loop's ([`Handle::run_pass`]). The driver keeps the one
//! status shape of every task ([`ReconcilerStatus`]: last pass, how long it took, passes, changes,
//! errors, the last error and when): operators read it at `GET /v1/system/reconcilers`
//! (`kumo reconciler list`) and in `/metrics` (`kumo_reconciler_*{reconciler}`). Tasks whose steps
//! run concurrently (instances, volumes) keep them in the handle ([`Handle::claim`]), keyed by
//! the resource id, so the steps of one resource never overlap.
//!
//! Errors of background work are not request errors: a task reports [`Error`], which keeps the
//! cause (the store's, the host agent's, the app layer's internal one — never the user-facing "see
//! the server log" text). A failure a user sees (an instance's failure reason) is a useful summary
//! of that cause, and the cause is logged.

pub mod audit_retention;
pub mod billing;
pub mod hosts;
pub mod images;
pub mod instances;
pub mod migrations;
pub mod monitoring;
pub mod network;
pub mod requests;
pub mod sweep;
pub mod volumes;

use crate::App;
use serde::Serialize;
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use utoipa::ToSchema;

/// What went wrong in background work.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading or writing the store failed.
    #[error("store: {0}")]
    Store(#[from] kumo_store::StoreError),
    /// The host agent failed.
    #[error("host agent: {0}")]
    Agent(#[from] kumo_agent::AgentError),
    /// An app-layer operation failed; holds its cause (the internal one when there is one).
    #[error("{0}")]
    App(String),
    /// One step of a task failed (the pass went on with the others).
    #[error("{0}")]
    Step(String),
    /// Anything else, with its context chain.
    #[error("{0:#}")]
    Other(#[from] anyhow::Error),
}

impl From<crate::error::ApiError> for Error {
    fn from(e: crate::error::ApiError) -> Error {
        Error::App(e.internal.unwrap_or(e.message))
    }
}

/// Status of a background task, for operators: the same shape for every task.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct ReconcilerStatus {
    /// Task name (`instances`, `volumes`, `network`, `monitoring`, `billing`, `audit_retention`, `sweep`,
    /// `images`).
    pub name: String,
    /// Whether the task runs in this kumod (audit retention runs only with a retention set).
    pub enabled: bool,
    /// Seconds between periodic passes (a task is also woken by the changes it cares about).
    pub period_seconds: f64,
    /// When the last pass started.
    pub last_pass: Option<chrono::DateTime<chrono::Utc>>,
    /// How long the last finished pass took, seconds.
    pub last_duration_seconds: Option<f64>,
    /// Passes since kumod started.
    pub passes: u64,
    /// State changes made since kumod started.
    pub changes: u64,
    /// Leaked host resources collected since kumod started.
    pub leaks_collected: u64,
    /// Leaks and orphans moved into the quarantine since kumod started (deleted after the grace
    /// period, `--quarantine-days`).
    pub quarantined: u64,
    /// Leak candidates left alone because the store says they belong to another host.
    pub foreign_skipped: u64,
    /// Failed passes and steps since kumod started.
    pub errors: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
    /// When the last error happened.
    pub last_error_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Steps running now (instances, volumes).
    pub in_flight: usize,
    /// Whether this process runs the task's passes now: on a controller, the tasks that need the
    /// `background` lease run only on the controller holding it (the hosts task runs on every
    /// one); the all-in-one `kumod` runs every enabled task.
    pub runs_here: bool,
}

/// One background task's handle: wakes it, serialises its passes, keeps its status and its steps
/// in flight. The same type for every task.
pub struct Handle {
    name: &'static str,
    notify: Notify,
    /// Serialises passes (the loop's and those asked for directly).
    pass_lock: tokio::sync::Mutex<()>,
    status: Mutex<ReconcilerStatus>,
    /// Whether its passes run only on the holder of the background lease (set by [`spawn`]).
    needs_lease: std::sync::atomic::AtomicBool,
    /// Resources with a step running, and the generation of the record the step works from.
    in_flight: Mutex<HashMap<uuid::Uuid, i64>>,
    /// In-flight resources a pass found changed since their step began (e.g. deleted while being
    /// created): their step wakes a new pass when it ends, rather than leaving them to the period.
    changed_meanwhile: Mutex<HashSet<uuid::Uuid>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Handle {
    pub fn new(name: &'static str) -> Handle {
        Handle {
            name,
            notify: Notify::new(),
            pass_lock: tokio::sync::Mutex::new(()),
            status: Mutex::new(ReconcilerStatus { name: name.into(), ..ReconcilerStatus::default() }),
            needs_lease: Default::default(),
            in_flight: Mutex::default(),
            changed_meanwhile: Mutex::default(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Asks for a pass now.
    pub fn wake(&self) {
        self.notify.notify_one();
    }

    pub fn status(&self) -> ReconcilerStatus {
        let mut s = lock(&self.status).clone();
        s.in_flight = lock(&self.in_flight).len();
        s
    }

    pub(crate) fn update(&self, f: impl FnOnce(&mut ReconcilerStatus)) {
        f(&mut lock(&self.status));
    }

    /// Counts and logs an error (a pass's or one step's).
    pub fn record_error(&self, e: &Error) {
        let msg = e.to_string();
        tracing::warn!(task = self.name, "{msg}");
        self.update(|s| {
            s.errors += 1;
            s.last_error = Some(msg);
            s.last_error_at = Some(chrono::Utc::now());
        });
    }

    /// Runs one pass of the task under its pass lock and records it: when it started, how long it
    /// took, the changes it reports, or its error (returned too).
    pub async fn run_pass<F>(&self, pass: F) -> Result<u64, Error>
    where
        F: Future<Output = Result<u64, Error>>,
    {
        let _one = self.pass_lock.lock().await;
        let started = std::time::Instant::now();
        self.update(|s| {
            s.passes += 1;
            s.last_pass = Some(chrono::Utc::now());
        });
        let res = pass.await;
        let took = started.elapsed().as_secs_f64();
        self.update(|s| s.last_duration_seconds = Some(took));
        match &res {
            Ok(n) => self.update(|s| s.changes += n),
            Err(e) => self.record_error(e),
        }
        res
    }

    /// Starts a step of resource `id` unless one runs (a changed `generation` meanwhile is noted).
    pub(crate) fn claim(&self, id: impl Into<uuid::Uuid>, generation: i64) -> bool {
        let id = id.into();
        let mut in_flight = lock(&self.in_flight);
        match in_flight.get(&id) {
            None => {
                in_flight.insert(id, generation);
                true
            }
            Some(g) => {
                if *g != generation {
                    lock(&self.changed_meanwhile).insert(id);
                }
                false
            }
        }
    }

    /// Ends a step; returns whether a pass found the resource changed while the step ran.
    pub(crate) fn release(&self, id: impl Into<uuid::Uuid>) -> bool {
        let id = id.into();
        lock(&self.in_flight).remove(&id);
        lock(&self.changed_meanwhile).remove(&id)
    }

    /// Steps running now.
    pub fn steps_in_flight(&self) -> usize {
        lock(&self.in_flight).len()
    }
}

/// One background task: what a pass does. Its own state between passes lives in `self`.
pub trait Task: Send + 'static {
    /// One pass; returns the changes it made (steps it starts may count theirs later).
    fn pass(&mut self, app: &Arc<App>) -> impl Future<Output = Result<u64, Error>> + Send;

    /// Whether passes run only on the controller that holds the background lease (see
    /// [`hosts::Leadership`]); every task but the one that keeps the lease does.
    fn needs_lease(&self) -> bool {
        true
    }
}

/// When the first pass runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum First {
    /// At once.
    Now,
    /// After one period (the task's start-up pass ran before, e.g. the orphan sweep's).
    AfterPeriod,
}

/// The driver: runs `task` at start, when woken and every `period` (see the module docs).
/// `handle` picks the task's handle out of the [`App`].
pub fn spawn<T: Task>(
    app: Arc<App>,
    handle: fn(&App) -> &Handle,
    period: Duration,
    first: First,
    mut task: T,
) -> tokio::task::JoinHandle<()> {
    handle(&app).update(|s| {
        s.enabled = true;
        s.period_seconds = period.as_secs_f64();
    });
    handle(&app).needs_lease.store(task.needs_lease(), std::sync::atomic::Ordering::Relaxed);
    tokio::spawn(async move {
        let mut next = tokio::time::Instant::now() + if first == First::Now { Duration::ZERO } else { period };
        loop {
            tokio::select! {
                _ = handle(&app).notify.notified() => {}
                _ = tokio::time::sleep_until(next) => {}
            }
            next = tokio::time::Instant::now() + period;
            if task.needs_lease() && !app.leadership.leads() {
                continue;
            }
            // Errors are recorded (and logged) by run_pass; the next pass starts afresh.
            let _ = handle(&app).run_pass(task.pass(&app)).await;
        }
    })
}

/// Starts every background task of this kumod (after [`sweep::startup`] and the first
/// [`network::converge`]).
pub fn spawn_all(app: &Arc<App>) {
    let period = app.config.reconcile_period;
    if app.leadership.id().is_some() {
        spawn(app.clone(), |a| &a.hosts_sync, hosts::PERIOD, First::Now, hosts::Hosts);
    }
    spawn(app.clone(), |a| &a.network, period * 5, First::Now, network::Converge);
    spawn(app.clone(), |a| &a.reconciler, period, First::Now, instances::Instances);
    // Volumes live in the all-in-one host's storage; a controller has none (see App::agent).
    if app.local_host().is_some() {
        spawn(app.clone(), |a| &a.volume_reconciler, period, First::Now, volumes::Volumes::default());
    }
    spawn(app.clone(), |a| &a.billing, period, First::Now, billing::Billing::default());
    if let Some(keep) = app.config.audit_retention {
        spawn(app.clone(), |a| &a.audit_retention, audit_retention::PERIOD, First::Now, audit_retention::Prune(keep));
    }
    spawn(app.clone(), |a| &a.monitoring, app.config.metrics_interval, First::Now, monitoring::Monitoring);
    spawn(app.clone(), |a| &a.sweep, app.config.sweep_period, First::AfterPeriod, sweep::Periodic);
    if app.config.image_cache.is_some() {
        spawn(app.clone(), |a| &a.images, app.config.image_rescan_period, First::AfterPeriod, images::Rescan);
    }
    spawn(app.clone(), |a| &a.request_flush, requests::PERIOD, First::Now, requests::Flush);
}

/// The status of every task of this process (see [`all`]), with whether it runs here now.
pub fn statuses(app: &App) -> Vec<ReconcilerStatus> {
    let leads = app.leadership.leads();
    all(app)
        .into_iter()
        .map(|h| {
            let mut s = h.status();
            s.runs_here = s.enabled && (leads || !h.needs_lease.load(std::sync::atomic::Ordering::Relaxed));
            s
        })
        .collect()
}

/// The handles of every task, in the order `GET /v1/system/reconcilers` lists them (the hosts
/// task exists on controllers only).
pub fn all(app: &App) -> Vec<&Handle> {
    let mut out = vec![
        &app.reconciler,
        &app.billing,
        &app.monitoring,
        &app.volume_reconciler,
        &app.network,
        &app.sweep,
        &app.images,
        &app.audit_retention,
        &app.request_flush,
    ];
    if app.leadership.id().is_some() {
        out.push(&app.hosts_sync);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pass_is_timed_and_counted_and_its_error_kept() {
        let h = Handle::new("probe");
        assert_eq!(h.run_pass(async { Ok(3) }).await.expect("pass"), 3);
        let s = h.status();
        assert_eq!((s.name.as_str(), s.passes, s.changes, s.errors), ("probe", 1, 3, 0));
        assert!(s.last_pass.is_some() && s.last_duration_seconds.is_some(), "{s:?}");
        assert!(s.last_error.is_none() && s.last_error_at.is_none(), "{s:?}");

        let e = h.run_pass(async { Err(Error::Step("instance x: disk gone".into())) }).await;
        assert!(e.is_err());
        let s = h.status();
        assert_eq!((s.passes, s.changes, s.errors), (2, 3, 1));
        assert_eq!(s.last_error.as_deref(), Some("instance x: disk gone"));
        assert!(s.last_error_at.is_some(), "{s:?}");
    }

    #[test]
    fn steps_of_one_resource_never_overlap_and_a_change_meanwhile_is_noted() {
        let h = Handle::new("probe");
        let id = uuid::Uuid::now_v7();
        assert!(h.claim(id, 1));
        assert!(!h.claim(id, 1), "a second step of the same resource waits");
        assert_eq!(h.status().in_flight, 1);
        assert!(!h.claim(id, 2), "still running; the change is noted");
        assert!(h.release(id), "the step's end asks for a new pass");
        assert_eq!(h.steps_in_flight(), 0);
        assert!(h.claim(id, 2));
        assert!(!h.release(id));
    }

    #[test]
    fn an_app_error_keeps_its_cause_not_the_request_text() {
        let e = Error::from(crate::error::ApiError::internal("image 1 of instance 2 is missing"));
        assert_eq!(e.to_string(), "image 1 of instance 2 is missing");
        let e = Error::from(crate::error::ApiError::invalid("bad name"));
        assert_eq!(e.to_string(), "bad name");
    }
}
