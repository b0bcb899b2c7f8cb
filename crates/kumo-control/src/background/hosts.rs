//! The hosts task of a controller: keeps [`crate::agents::HostAgents`] in step with the hosts
//! that joined (a client for each, made again when its address, certificate or secret changes),
//! and holds the controller's lease on background work ([`Leadership`]).
//!
//! Several controllers share one database; each runs this task. Exactly one of them — the holder
//! of the `background` lease — runs the other background tasks (instances, volumes, network,
//! monitoring, billing, …), so an object is never worked on by two controllers at once. The lease
//! lasts [`LEASE_TTL`] and is renewed every pass (every [`PERIOD`]); a controller that dies stops
//! renewing it and another takes it over once it expired. A holder that fails to renew stops
//! working at once (before the lease can expire), so two holders never overlap.
//! The all-in-one `kumod` is alone by construction: it always leads and holds no lease.

use super::{Error, Task};
use crate::App;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How often the task runs (and the lease is renewed).
pub const PERIOD: Duration = Duration::from_secs(2);
/// How long a lease lasts unless renewed.
pub const LEASE_TTL: Duration = Duration::from_secs(10);
/// The lease on background work.
pub const BACKGROUND_LEASE: &str = "background";

/// Whether this process does the background work.
pub struct Leadership {
    /// None: alone (the all-in-one `kumod`), always leads. Some(id): a controller, leads while it
    /// holds the lease under this id.
    controller: Option<String>,
    held: AtomicBool,
}

impl Leadership {
    pub fn alone() -> Leadership {
        Leadership { controller: None, held: AtomicBool::new(true) }
    }

    /// A controller known as `id` (unique per process: a restarted controller is a new holder).
    pub fn controller(id: String) -> Leadership {
        Leadership { controller: Some(id), held: AtomicBool::new(false) }
    }

    pub fn leads(&self) -> bool {
        self.held.load(Ordering::SeqCst)
    }

    /// This controller's holder id (None for the all-in-one `kumod`).
    pub fn id(&self) -> Option<&str> {
        self.controller.as_deref()
    }
}

/// The task (see [`super::spawn`]); it runs on every controller, leader or not.
pub struct Hosts;

impl Task for Hosts {
    fn needs_lease(&self) -> bool {
        false
    }

    async fn pass(&mut self, app: &Arc<App>) -> Result<u64, Error> {
        let mut changes = renew(app).await? as u64;
        let (endpoints, hosts) = {
            let mut conn = app.store.read().await?;
            (kumo_store::hosts::agent_endpoints(&mut conn).await?, kumo_store::hosts::all(&mut conn).await?)
        };
        // A host whose agent said it stopped is lost at once (as if never heard from).
        let seen = hosts
            .iter()
            .filter(|h| h.role == kumo_types::HostRole::Agent)
            .map(|h| (h.id, if h.time_left.is_some() { None } else { h.last_seen }))
            .collect();
        changes += app.hosts.sync(endpoints) as u64;
        if app.hosts.set_seen(seen) {
            changes += 1;
            // Instances of a host that came back are looked at again at once.
            app.reconciler.wake();
        }
        Ok(changes)
    }
}

/// Takes or renews the lease; returns whether leadership changed. On any failure this controller
/// stops leading at once.
async fn renew(app: &Arc<App>) -> Result<bool, Error> {
    let Some(id) = app.leadership.id() else { return Ok(false) };
    let ttl = chrono::Duration::from_std(LEASE_TTL).unwrap_or(chrono::Duration::seconds(10));
    let held = async {
        let mut tx = app.store.begin().await?;
        let held = kumo_store::leases::acquire(&mut tx, BACKGROUND_LEASE, id, ttl).await?;
        tx.commit().await?;
        Ok::<bool, kumo_store::StoreError>(held)
    }
    .await;
    let now = matches!(held, Ok(true));
    let before = app.leadership.held.swap(now, Ordering::SeqCst);
    if now != before {
        if now {
            tracing::info!(controller = id, "this controller now does the background work (holds the lease)");
            for h in super::all(app) {
                h.wake();
            }
        } else {
            tracing::warn!(controller = id, "this controller no longer does the background work (lease lost)");
        }
    }
    held?;
    Ok(now != before)
}
