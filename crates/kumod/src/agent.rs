//! `kumod agent`: the agent of one host of a cluster.
//!
//! - **Joins once.** Without a membership in its data directory it needs `--join-token`: it
//!   presents the token to a controller with what the host is, the https address of its API, its
//!   certificate's fingerprint and the secret controllers must present to it; it gets its host id
//!   and its own credential, and keeps them in `DATA_DIR/membership.json` (0600). Later starts
//!   use that file; the token is spent.
//! - **Serves the host-agent API** ([`kumo_host_rpc::server`]) over HTTPS with its own
//!   certificate (`DATA_DIR/agent-tls/`), to callers presenting the secret.
//! - **Renews its lease** with a heartbeat to a controller every [`HEARTBEAT`] (more often when
//!   the fence time is short: at least three heartbeats per fence time); the answer says how
//!   long the lease lasts.
//! - **Fences itself.** When no heartbeat has been acknowledged for `--fence-seconds` (default:
//!   half the lease; it must be shorter than the lease), counted from when the last acknowledged
//!   one was sent and watched on its own clock ([`fence_watch`]), it stops every guest it runs,
//!   by itself, and keeps them stopped, before the controllers may take the host for lost (the
//!   lease's end) — so a host cut off from the controllers never runs a guest that could be
//!   started elsewhere. See docs/architecture.md, "Host health and fencing".

use crate::{local_agent, master_key_checked, prepare_data_dir, shutdown_signal, RunArgs};
use anyhow::{bail, Context};
use kumo_agent::LocalAgent;
use kumo_host_api::membership::{Heartbeat, HeartbeatAck, JoinRequest, JoinResponse, Leave};
use kumo_host_api::{GuestStatus, HostAgent};
use kumo_types::HostId;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often the agent renews its lease (at most; see [`heartbeat_period`]).
pub const HEARTBEAT: Duration = Duration::from_secs(3);

/// The period of heartbeats for a fence time: [`HEARTBEAT`], or a third of the fence time if
/// shorter, so that one slow or lost heartbeat never fences a host.
fn heartbeat_period(fence_after: Duration) -> Duration {
    HEARTBEAT.min(fence_after / 3)
}

/// Flags of `kumod agent` (besides the host's own, shared with the all-in-one `kumod`; there
/// `--listen` is the address of the agent's API).
#[derive(clap::Args, Debug)]
pub struct AgentArgs {
    #[command(flatten)]
    run: RunArgs,
    /// A controller's URL, e.g. https://10.77.0.1:7400 (repeatable, comma-separated in the
    /// environment); the agent talks to the one that answered last, else the next that answers.
    #[arg(long = "controller", env = "KUMOD_CONTROLLERS", value_delimiter = ',', required = true)]
    controllers: Vec<String>,
    /// SHA-256 fingerprint of the controllers' TLS certificate (kumod prints it at start and
    /// writes it to DATA_DIR/tls/fingerprint); the agent trusts exactly that certificate.
    #[arg(long, env = "KUMOD_CONTROLLER_FINGERPRINT")]
    controller_fingerprint: String,
    /// The operator's one-time join token (`kumo host join-token create`); needed at the first
    /// start only.
    #[arg(long, env = "KUMOD_JOIN_TOKEN")]
    join_token: Option<String>,
    /// The zone to join (must be the join token's).
    #[arg(long, env = "KUMOD_ZONE")]
    zone: Option<String>,
    /// Address controllers reach this agent's API at (default: --listen).
    #[arg(long, env = "KUMOD_ADVERTISE")]
    advertise: Option<SocketAddr>,
    /// Seconds without an acknowledged heartbeat after which the agent stops its guests (default:
    /// half the lease the controllers give).
    #[arg(long, env = "KUMOD_FENCE_SECONDS")]
    fence_seconds: Option<u64>,
}

/// What the agent keeps of its joining (DATA_DIR/membership.json, 0600).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Membership {
    host_id: HostId,
    zone: String,
    /// The bearer it presents to controllers.
    credential: String,
    /// The bearer controllers present to it.
    agent_secret: String,
    lease_seconds: u64,
}

const MEMBERSHIP: &str = "membership.json";

/// The agent's client of the controllers: the one that answered last, else the next that answers.
struct Controllers {
    urls: Vec<String>,
    http: reqwest::Client,
    /// Index of the controller that answered last (tried first: a hung one costs its timeout once).
    preferred: std::sync::atomic::AtomicUsize,
}

impl Controllers {
    fn new(urls: Vec<String>, fingerprint: &str) -> anyhow::Result<Controllers> {
        for u in &urls {
            if !u.starts_with("https://") {
                bail!("--controller must be an https:// URL (got '{u}'): agents talk to controllers over TLS only");
            }
        }
        let tls = kumo_host_rpc::tls::pinned_client_config(fingerprint, None)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .build()?;
        Ok(Controllers { urls, http, preferred: Default::default() })
    }

    /// POSTs `body` to `path`, on the controller that answered last first, then the others in
    /// turn; a controller's 4xx answer is final (another would say the same), a transport error or
    /// 5xx tries the next.
    async fn post<B: Serialize, R: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        bearer: Option<&str>,
        body: &B,
    ) -> anyhow::Result<R> {
        use std::sync::atomic::Ordering;
        let mut last = None;
        let first = self.preferred.load(Ordering::Relaxed);
        for i in (0..self.urls.len()).map(|k| (first + k) % self.urls.len()) {
            let base = &self.urls[i];
            let mut req = self.http.post(format!("{}{path}", base.trim_end_matches('/'))).json(body);
            if let Some(b) = bearer {
                req = req.bearer_auth(b);
            }
            match req.send().await {
                Ok(resp) if resp.status().is_success() => {
                    self.preferred.store(i, Ordering::Relaxed);
                    // An answer without a body (204) is JSON `null`: `()` for a call answering nothing.
                    let body = resp.bytes().await?;
                    return Ok(serde_json::from_slice(if body.is_empty() { b"null" } else { &body })?);
                }
                Ok(resp) if resp.status().is_client_error() => {
                    let status = resp.status();
                    let text = resp.text().await.unwrap_or_default();
                    bail!("{base} refused ({status}): {text}");
                }
                Ok(resp) => last = Some(anyhow::anyhow!("{base}: {}", resp.status())),
                Err(e) => last = Some(anyhow::anyhow!("{base}: {e}")),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("no controller given")))
    }
}

fn read_membership(path: &Path) -> anyhow::Result<Option<Membership>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(serde_json::from_slice(&bytes).with_context(|| {
            format!("{} is damaged; restore it from a backup (or remove the host and join again)", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

pub async fn run(args: AgentArgs) -> anyhow::Result<()> {
    let (data_dir, _lock) = prepare_data_dir(&args.run)?;
    let master = master_key_checked(&args.run, &data_dir)?;
    let quarantine = Arc::new(kumo_agent::storage::quarantine::Quarantine::new(data_dir.join("quarantine")));
    let local = Arc::new(local_agent(&args.run, &data_dir, master, quarantine).await?);
    let info = local.host_info().await?;

    let advertise = args.advertise.unwrap_or(args.run.listen);
    if advertise.ip().is_unspecified() {
        bail!("--listen {} is not an address controllers can reach: give --advertise", args.run.listen);
    }
    let address = format!("https://{advertise}");
    let cert = kumo_host_rpc::tls::load_or_make(&data_dir.join("agent-tls"), &[advertise.ip().to_string()])?;
    let controllers = Controllers::new(args.controllers.clone(), &args.controller_fingerprint)?;

    let path = data_dir.join(MEMBERSHIP);
    let membership = match read_membership(&path)? {
        Some(m) => {
            tracing::info!(host = %m.host_id, zone = %m.zone, "member of the cluster (from {})", path.display());
            m
        }
        None => {
            let Some(token) = &args.join_token else {
                bail!("this host has not joined a cluster yet: give --join-token (kumo host join-token create)")
            };
            let agent_secret = kumo_control::context::new_token_secret();
            let req = JoinRequest {
                token: token.clone(),
                zone: args.zone.clone(),
                info: info.clone(),
                address: address.clone(),
                fingerprint: cert.fingerprint.clone(),
                agent_secret: agent_secret.clone(),
            };
            let joined: JoinResponse = controllers.post("/agent/v1/join", None, &req).await.context("joining")?;
            let m = Membership {
                host_id: joined.host_id,
                zone: joined.zone,
                credential: joined.credential,
                agent_secret,
                lease_seconds: joined.lease_seconds,
            };
            kumo_host_rpc::tls::write_atomic(&path, &serde_json::to_vec_pretty(&m)?, 0o600)?;
            tracing::info!(host = %m.host_id, zone = %m.zone, "joined the cluster");
            m
        }
    };
    println!("kumod agent: host {} in zone {}, serving {address}", membership.host_id, membership.zone);

    let listener = tokio::net::TcpListener::bind(args.run.listen)
        .await
        .with_context(|| format!("listen on {}", args.run.listen))?;
    std::fs::write(data_dir.join("agent.addr"), format!("{}\n", listener.local_addr()?))?;
    let router = kumo_host_rpc::server::router(local.clone() as Arc<dyn HostAgent>, membership.agent_secret.clone());
    let server_tls = kumo_host_rpc::tls::server_config(&cert)?;

    let fence_after = Duration::from_secs(args.fence_seconds.unwrap_or((membership.lease_seconds / 2).max(1)));
    if fence_after.as_secs() >= membership.lease_seconds {
        bail!(
            "--fence-seconds {} is not shorter than the lease the controllers give ({} s): the host would run \
             its guests after the controllers may take it for lost (see docs/architecture.md, \
             \"Host health and fencing\")",
            fence_after.as_secs(),
            membership.lease_seconds
        );
    }
    let hb = Heartbeat { host_id: membership.host_id, info, address, fingerprint: cert.fingerprint.clone() };
    let controllers = Arc::new(controllers);
    let (host_id, credential) = (membership.host_id, membership.credential.clone());
    let beating = tokio::spawn(heartbeats(controllers.clone(), membership, hb, local, fence_after));

    kumo_host_rpc::server::serve_tls(listener, router, server_tls, shutdown_signal()).await?;
    // A clean stop: no heartbeat after this, and the controllers are told, so the host shows
    // `down` at once instead of `unreachable` after the deadline (its next heartbeat undoes it).
    beating.abort();
    let leave = Leave { host_id };
    match tokio::time::timeout(LEAVE_WAIT, controllers.post::<_, ()>("/agent/v1/leave", Some(&credential), &leave))
        .await
    {
        Ok(Ok(())) => tracing::info!("the controllers know this host is down"),
        Ok(Err(e)) => tracing::warn!("could not tell the controllers this host is down: {e:#}"),
        Err(_) => tracing::warn!("no controller answered within {LEAVE_WAIT:?} that this host is down"),
    }
    tracing::info!("agent stopped; guests keep running and are found again at the next start");
    Ok(())
}

/// How long a stopping agent waits for a controller to take note that its host is down.
const LEAVE_WAIT: Duration = Duration::from_secs(3);

/// Renews the lease every [`heartbeat_period`]; the fence watch ([`fence_watch`]) fences the host when
/// renewals fail for `fence_after`.
async fn heartbeats(
    controllers: Arc<Controllers>,
    m: Membership,
    hb: Heartbeat,
    local: Arc<LocalAgent>,
    fence_after: Duration,
) {
    // When the last acknowledged heartbeat was sent (before the controller received it and
    // counted the host's lease from then: the agent's deadline comes first).
    let renewed = Arc::new(std::sync::Mutex::new(Instant::now()));
    tokio::spawn(fence_watch(renewed.clone(), local, fence_after));
    let period = heartbeat_period(fence_after);
    loop {
        let sent = Instant::now();
        match controllers.post::<_, HeartbeatAck>("/agent/v1/heartbeat", Some(&m.credential), &hb).await {
            Ok(_) => *renewed.lock().unwrap_or_else(|p| p.into_inner()) = sent,
            Err(e) => {
                let since = renewed.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
                tracing::warn!("heartbeat not acknowledged ({since:.0?} since the last one): {e:#}");
            }
        }
        tokio::time::sleep(period).await;
    }
}

/// How often the fence watch looks at the lease.
const FENCE_TICK: Duration = Duration::from_millis(250);

/// Fences the host once `fence_after` has passed since the last acknowledged heartbeat was sent,
/// whatever the heartbeat in flight does (a controller that does not answer holds a heartbeat up
/// to its timeout, once per controller: the fence must not wait for that). While the lease is not
/// renewed it keeps every guest stopped (a guest started meanwhile is stopped within a
/// [`HEARTBEAT`]).
async fn fence_watch(renewed: Arc<std::sync::Mutex<Instant>>, local: Arc<LocalAgent>, fence_after: Duration) {
    let mut fenced_at: Option<Instant> = None;
    loop {
        let since = renewed.lock().unwrap_or_else(|p| p.into_inner()).elapsed();
        if since < fence_after {
            if fenced_at.take().is_some() {
                tracing::warn!("heartbeats acknowledged again; the controllers decide what runs here now");
            }
        } else if fenced_at.is_none_or(|t| t.elapsed() >= HEARTBEAT) {
            let first = fenced_at.is_none();
            fenced_at = Some(Instant::now());
            fence(local.as_ref(), first, since).await;
        }
        tokio::time::sleep(FENCE_TICK).await;
    }
}

/// Stops every guest of this host at once (forced): the host has lost its lease or is about to.
/// `first`: the first fence since the lease was last renewed (logged even when nothing ran).
async fn fence(local: &LocalAgent, first: bool, since: Duration) {
    let ids = match local.list_instances().await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::error!("fencing: cannot list the guests: {e}");
            return;
        }
    };
    let mut stopped = 0;
    for id in ids {
        if matches!(local.status(id).await, Ok(GuestStatus::Running)) {
            match local.stop(id, Duration::ZERO).await {
                Ok(()) => stopped += 1,
                Err(e) => tracing::error!(instance = %id, "fencing: stopping the guest failed: {e}"),
            }
        }
    }
    if first || stopped > 0 {
        tracing::warn!(
            stopped,
            "fenced: no controller acknowledged this host's lease for {since:.1?}; its guests are stopped"
        );
    }
}
