//! The Kumo control plane.
//!
//! Layers, each with one module per resource:
//! - [`http`]: the REST API. Handlers parse and validate input, then call the app layer. The
//!   OpenAPI document is generated from their annotations.
//! - [`app`]: business logic. Each operation authorises, then does its work in one store
//!   transaction (for instance create: schedule, reserve capacity, insert, record an event).
//! - [`scheduler`]: pure placement arithmetic.
//! - [`background`]: background tasks that make the hosts match the recorded intent.
//!
//! The control plane reaches hosts only through their agents ([`agents::HostAgents`]: host id →
//! [`kumo_host_api::HostAgent`]), with plain-data arguments and results; it holds no object of a
//! host, runs no host tool and names no path of a host (see `kumo-host-api`).

pub mod agents;
pub mod app;
pub mod background;
pub mod context;
pub mod error;
pub mod http;
pub mod identity;
pub mod metering;
pub mod modes;
pub mod openapi;
pub mod scheduler;
pub mod telemetry;

use kumo_host_api::HostAgent;
use kumo_store::Store;
use kumo_types::HostId;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Control-plane settings (from `kumod`'s flags and config file).
#[derive(Debug, Clone)]
pub struct ControlConfig {
    /// The data directory (database, images, instance run directories, admin token).
    pub data_dir: PathBuf,
    /// How long a stop waits for the guest to power off after ACPI powerdown before forcing it.
    pub stop_timeout: Duration,
    /// CPU, memory and disk overcommit ratios of the local host.
    pub overcommit: [f64; 3],
    /// Largest image upload accepted, bytes.
    pub max_image_bytes: u64,
    /// Period of the reconciler's periodic pass (it is also woken by every change).
    pub reconcile_period: Duration,
    /// How long audit log entries are kept (None: forever).
    pub audit_retention: Option<Duration>,
    /// How often the monitoring task samples every running instance (`--metrics-interval`).
    pub metrics_interval: Duration,
    /// The operator's public IPv4 pool for floating IPs (`--public-ip-pool`).
    pub public_ip_pool: Option<ipnet::Ipv4Net>,
    /// Reverse proxies whose forwarded-client headers are believed (`--trusted-proxy`,
    /// `--forwarded-header`); see [`http::forwarded`].
    pub trusted_proxies: http::forwarded::TrustedProxies,
    /// This host's stable id (`DATA_DIR/host-id`; see [`identity`]); on a controller, which has no
    /// host of its own, an id no host row has.
    pub host_id: HostId,
    /// How long quarantined leaks and orphans are kept before they are deleted (`--quarantine-days`).
    pub quarantine_grace: Duration,
    /// Period of the orphan sweep (see [`background::sweep`]).
    pub sweep_period: Duration,
    /// The machine-wide image cache whose images are public (`--image-cache`; None: none).
    pub image_cache: Option<PathBuf>,
    /// How often the image cache is scanned for new images (see [`background::images`]).
    pub image_rescan_period: Duration,
    /// Cap of each instance's serial log, bytes (`--serial-log-max-mib`); see
    /// [`kumo_agent::compute::serial_log`].
    pub serial_log_max_bytes: u64,
    /// An agent host whose last heartbeat is older than this is `unreachable` and takes no new
    /// instance (`--host-unreachable-seconds`; see [`app::hosts::state`]).
    pub host_unreachable_after: Duration,
    /// How the scheduler orders the hosts that can take an instance (`--scheduler-weights`).
    pub scheduler_weights: scheduler::Weights,
    /// The master key that seals the secrets the control plane must keep in clear form (S3 access
    /// keys' secrets; see [`app::access_keys`]). Every controller of a cluster needs the same one.
    pub master_key: kumo_agent::storage::keys::MasterKey,
}

impl ControlConfig {
    pub fn images_dir(&self) -> PathBuf {
        self.data_dir.join("images")
    }

    pub fn quarantine_dir(&self) -> PathBuf {
        self.data_dir.join("quarantine")
    }
}

/// Everything a request handler or background task needs.
pub struct App {
    pub store: Store,
    /// The hosts' agents, by host id; see [`agents`].
    pub hosts: agents::HostAgents,
    /// The hosts task of a controller (agent clients, the background lease); see
    /// [`background::hosts`].
    pub hosts_sync: background::Handle,
    /// Heartbeats written together, checked host credentials; see [`app::membership::Renewals`].
    pub renewals: app::membership::Renewals,
    /// Whether this process does the background work (always, for the all-in-one `kumod`).
    pub leadership: background::hosts::Leadership,
    /// The placeholder [`App::agent`] answers with on a controller (no local host).
    no_local_host: Arc<dyn HostAgent>,
    pub config: ControlConfig,
    pub tokens: context::TokenCache,
    /// Recent failed logins, for brute-force protection.
    pub logins: app::login::LoginLimiter,
    /// The instance reconciler; see [`background::instances`]. Every background task has a
    /// [`background::Handle`] here (wake, status); [`background::all`] lists them.
    pub reconciler: background::Handle,
    /// The billing reconciler (budget alerts, closing months); see [`background::billing`].
    pub billing: background::Handle,
    /// The monitoring task (per-instance metrics); see [`background::monitoring`].
    pub monitoring: background::Handle,
    /// The latest per-instance metrics the monitoring task keeps (for `/metrics`).
    pub instance_metrics: background::monitoring::Memory,
    /// Audit log retention; see [`background::audit_retention`].
    pub audit_retention: background::Handle,
    /// Requests to the S3 endpoint counted since the last flush; see [`app::buckets::Requests`].
    pub requests: app::buckets::Requests,
    /// Their flush to the store; see [`background::requests`].
    pub request_flush: background::Handle,
    /// Request counters and latencies for `/metrics`; see [`telemetry`].
    pub telemetry: telemetry::Telemetry,
    /// Committed events, for the live event stream; see [`app::events::EventBus`].
    pub events: app::events::EventBus,
    /// The volume reconciler; see [`background::volumes`].
    pub volume_reconciler: background::Handle,
    /// Set when a snapshot or a volume goes: the volume reconciler then looks for snapshot layers
    /// nothing uses any more (reading every chain is too costly for every pass).
    pub layers_dirty: std::sync::atomic::AtomicBool,
    /// The network reconciler; see [`background::network`].
    pub network: background::Handle,
    /// Where the orphan sweep moves what it would delete (the local agent's leak collection shares
    /// it); see [`kumo_agent::storage::quarantine`].
    pub quarantine: Arc<kumo_agent::storage::quarantine::Quarantine>,
    /// The orphan sweep; see [`background::sweep`].
    pub sweep: background::Handle,
    /// Where the object storage service keeps object data (`DATA_DIR/objects`; see
    /// [`kumo_objects`]); the metadata are in the store.
    pub objects: Arc<dyn kumo_objects::ObjectData>,
    /// The public image catalogue's rescan of the image cache; see [`background::images`].
    pub images: background::Handle,
    /// Files being made right now (e.g. an image upload before its record exists), which the
    /// periodic sweep must not take for orphans; see [`background::sweep::InFlight`].
    pub in_flight: background::sweep::InFlight,
}

impl App {
    /// The local host's agent (the one host of the all-in-one `kumod`), where volumes, backups
    /// and image files live. On a controller (no local host) every call of it fails with a message
    /// saying so: those need storage a cluster shares, which comes with Ceph.
    pub fn agent(&self) -> &dyn HostAgent {
        match self.hosts.local() {
            Some((_, a)) => a.as_ref(),
            None => self.no_local_host.as_ref(),
        }
    }

    /// The host whose storage holds volumes, backups and image files: the all-in-one `kumod`'s
    /// own. On a controller, a 409 saying why — checked before any work (e.g. before an upload
    /// is received), so nothing is half-done.
    pub fn storage_host(&self) -> Result<HostId, error::ApiError> {
        self.local_host()
            .ok_or_else(|| error::ApiError::new(kumo_types::ErrorCode::InvalidState, agents::NO_LOCAL_HOST.to_string()))
    }

    /// The local host's id (the all-in-one `kumod`); None on a controller.
    pub fn local_host(&self) -> Option<HostId> {
        self.hosts.local().map(|(id, _)| id)
    }

    /// Opens the control plane: registers the local host (described by its `agent`), seeds the
    /// catalogue, bootstraps the operator token. `quarantine` is the data directory's (shared with
    /// the local agent). Does not start background tasks or serve (see [`background::spawn_all`],
    /// [`http::serve`]).
    pub async fn open(
        store: Store,
        agent: Arc<dyn HostAgent>,
        quarantine: Arc<kumo_agent::storage::quarantine::Quarantine>,
        config: ControlConfig,
    ) -> anyhow::Result<Arc<App>> {
        let host_id = app::hosts::register(&store, agent.as_ref(), &config).await?;
        let hosts = agents::HostAgents::new(host_id, agent);
        App::with_hosts(store, hosts, background::hosts::Leadership::alone(), quarantine, config).await
    }

    /// Opens a controller's control plane: no local host; the joined hosts' agents are reached
    /// through clients made by `connect` (see [`agents::HostAgents::sync`] and
    /// [`background::hosts`]). `quarantine` is the controller's data directory's (nothing of a
    /// guest is ever put there: leaks are quarantined on their host).
    pub async fn open_controller(
        store: Store,
        connect: Box<agents::Connect>,
        quarantine: Arc<kumo_agent::storage::quarantine::Quarantine>,
        config: ControlConfig,
    ) -> anyhow::Result<Arc<App>> {
        let leadership = background::hosts::Leadership::controller(format!("controller-{}", uuid::Uuid::now_v7()));
        App::with_hosts(
            store,
            agents::HostAgents::remote(connect, config.host_unreachable_after),
            leadership,
            quarantine,
            config,
        )
        .await
    }

    async fn with_hosts(
        store: Store,
        hosts: agents::HostAgents,
        leadership: background::hosts::Leadership,
        quarantine: Arc<kumo_agent::storage::quarantine::Quarantine>,
        config: ControlConfig,
    ) -> anyhow::Result<Arc<App>> {
        {
            let mut tx = store.begin().await?;
            kumo_store::instance_types::seed_defaults(&mut tx).await?;
            tx.commit().await?;
        }
        app::tokens::bootstrap_admin_token(&store, &config.data_dir).await?;
        let objects = Arc::new(kumo_objects::LocalDir::open(&config.data_dir.join("objects"))?);
        Ok(Arc::new(App {
            store,
            hosts,
            hosts_sync: background::Handle::new("hosts"),
            renewals: Default::default(),
            leadership,
            no_local_host: Arc::new(agents::NoLocalHost),
            tokens: context::TokenCache::default(),
            logins: app::login::LoginLimiter::default(),
            reconciler: background::Handle::new("instances"),
            billing: background::Handle::new("billing"),
            monitoring: background::Handle::new("monitoring"),
            instance_metrics: background::monitoring::Memory::default(),
            audit_retention: background::Handle::new("audit_retention"),
            requests: Default::default(),
            request_flush: background::Handle::new("requests"),
            images: background::Handle::new("images"),
            telemetry: telemetry::Telemetry::default(),
            events: app::events::EventBus::default(),
            volume_reconciler: background::Handle::new("volumes"),
            layers_dirty: std::sync::atomic::AtomicBool::new(true),
            network: background::Handle::new("network"),
            quarantine,
            sweep: background::Handle::new("sweep"),
            objects,
            in_flight: background::sweep::InFlight::default(),
            config,
        }))
    }
}
