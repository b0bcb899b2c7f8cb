//! Hosts joining the cluster and keeping their lease (the controller's side of
//! [`kumo_host_api::membership`]). Agents are not users: they authenticate with a join token once,
//! then with the credential they got; a tenant's or operator's API token means nothing here.

use crate::context::{hash_token, new_token_secret};
use crate::error::{ApiError, ApiResult};
use crate::App;
use kumo_host_api::membership::{Heartbeat, HeartbeatAck, JoinRequest, JoinResponse};
use kumo_host_api::HostInfo;
use kumo_store::hosts::{HostReport, JoinedHost, Resources};
use kumo_store::join_tokens::Consumed;
use kumo_types::{ErrorCode, HostId, NameOrId};
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What a host reports, with this controller's overcommit ratios.
fn report(app: &App, info: &HostInfo) -> HostReport {
    HostReport {
        name: info.name.clone(),
        driver: info.driver.clone(),
        accelerator: info.accelerator.clone(),
        accelerator_reason: info.accelerator_reason.clone(),
        total: Resources { vcpus: info.vcpus, memory_mib: info.memory_mib, disk_gib: info.disk_gib, gpus: info.gpus },
        cpu_overcommit: app.config.overcommit[0],
        memory_overcommit: app.config.overcommit[1],
        disk_overcommit: app.config.overcommit[2],
    }
}

/// Checks what an agent says about where it listens: an https URL with a host and a port.
fn check_endpoint(address: &str, fingerprint: &str) -> ApiResult<()> {
    let rest = address
        .strip_prefix("https://")
        .ok_or_else(|| ApiError::invalid(format!("address must be an https:// URL (got '{address}')")))?;
    if rest.is_empty() || rest.contains('/') || rest.rsplit_once(':').is_none_or(|(_, p)| p.parse::<u16>().is_err()) {
        return Err(ApiError::invalid(format!("address must be https://HOST:PORT (got '{address}')")));
    }
    let hex = fingerprint.split(':').collect::<Vec<_>>();
    if hex.len() != 32 || !hex.iter().all(|b| b.len() == 2 && b.chars().all(|c| c.is_ascii_hexdigit())) {
        return Err(ApiError::invalid("fingerprint must be a SHA-256 as 32 hex bytes separated by ':'"));
    }
    Ok(())
}

fn check_info(info: &HostInfo) -> ApiResult<()> {
    kumo_types::Name::parse(&info.name).map_err(|e| ApiError::invalid(format!("host name: {e}")))?;
    if info.vcpus < 1 || info.memory_mib < 1 || info.disk_gib < 0 || info.gpus < 0 {
        return Err(ApiError::invalid("host capacity must be at least 1 vCPU and 1 MiB of memory, never negative"));
    }
    Ok(())
}

/// A host joins: its join token is spent (once), its row made, its credential returned (only its
/// hash is kept). Nothing is changed when anything is wrong.
pub async fn join(app: &App, req: JoinRequest) -> ApiResult<JoinResponse> {
    check_info(&req.info)?;
    check_endpoint(&req.address, &req.fingerprint)?;
    if req.agent_secret.len() < 32 {
        return Err(ApiError::invalid("agent_secret must be at least 32 characters"));
    }
    let host_id: HostId = kumo_store::new_id();
    let credential = new_token_secret();
    let mut tx = app.store.begin().await?;
    let zone = match kumo_store::join_tokens::consume(&mut tx, &hash_token(&req.token), host_id).await? {
        Consumed::Zone(z) => z,
        Consumed::Unknown => return Err(ApiError::unauthenticated("the join token is not valid")),
        Consumed::AlreadyUsed => {
            return Err(ApiError::unauthenticated("the join token was used already (each works once)"))
        }
        Consumed::Expired => return Err(ApiError::unauthenticated("the join token has expired")),
    };
    let zone_view = kumo_store::zones::get(&mut tx, &NameOrId::Id(zone.get()))
        .await?
        .ok_or_else(|| ApiError::internal("the join token's zone is gone"))?;
    if let Some(asked) = &req.zone {
        if *asked != zone_view.name {
            return Err(ApiError::invalid(format!("the join token is for zone '{}', not '{asked}'", zone_view.name)));
        }
    }
    let report = report(app, &req.info);
    let host = kumo_store::hosts::join(
        &mut tx,
        &JoinedHost {
            id: host_id,
            report: &report,
            zone,
            address: &req.address,
            fingerprint: &req.fingerprint,
            agent_secret: &req.agent_secret,
            credential_hash: &hash_token(&credential),
        },
    )
    .await
    .map_err(crate::error::already_exists("host", &req.info.name))?;
    tx.commit().await.map_err(ApiError::internal)?;
    tracing::info!(host = %host.id, name = %host.name, zone = %zone_view.name, address = %req.address, "host joined");
    app.hosts_sync.wake();
    Ok(JoinResponse {
        host_id: host.id,
        zone: zone_view.name,
        credential,
        lease_seconds: app.config.host_unreachable_after.as_secs(),
    })
}

/// The host a credential belongs to (remembered once checked: a heartbeat of a host that was
/// removed is refused all the same, by [`Renewals::renew`], and forgotten).
pub async fn authenticate(app: &App, credential: &str) -> ApiResult<HostId> {
    let hash = hash_token(credential);
    if let Some(host) = lock(&app.renewals.credentials).get(&hash) {
        return Ok(*host);
    }
    let mut conn = app.store.read().await?;
    let host = kumo_store::hosts::by_credential(&mut conn, &hash).await?.ok_or_else(not_a_host)?;
    lock(&app.renewals.credentials).insert(hash, host);
    Ok(host)
}

fn not_a_host() -> ApiError {
    ApiError::unauthenticated("not a host credential (unknown, or the host was removed)")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// How long the writer of a batch of renewals waits for more heartbeats to join it (what a
/// heartbeat's answer may wait, at most twice: small beside the lease).
const GATHER: Duration = Duration::from_millis(20);

/// A heartbeat whose report this controller wrote less than this long ago only renews the lease.
const REWRITE_AFTER: Duration = Duration::from_secs(300);

/// What makes heartbeats cheap at thousands of hosts. A heartbeat must be written before it is
/// acknowledged (an acknowledged heartbeat is a renewed lease: see docs/architecture.md, "Host
/// health and fencing"); but most heartbeats report what the host reported before, so they only
/// need `last_seen` to move, and those are written **together**: each heartbeat joins the batch
/// of pending ones, one writer at a time lets the heartbeats of the next [`GATHER`] join, writes
/// the whole batch in one statement ([`kumo_store::hosts::renew`]), and each heartbeat is
/// answered once its batch committed (group commit). A heartbeat whose report
/// changed (or that this controller has not written for [`REWRITE_AFTER`]) is written in full, on
/// its own. Checked host credentials are remembered.
#[derive(Default)]
pub struct Renewals {
    /// Heartbeats waiting for the next batch, and how to tell each: renewed, not a live host, or
    /// None when writing failed.
    pending: Mutex<Vec<(HostId, oneshot::Sender<Option<bool>>)>>,
    /// One batch at a time: the heartbeats that come while it is written are the next batch.
    writer: tokio::sync::Mutex<()>,
    /// A digest of what this controller last wrote of each host's report, and when.
    written: Mutex<HashMap<HostId, (u64, Instant)>>,
    /// Checked host credentials: hash → host.
    credentials: Mutex<HashMap<String, HostId>>,
}

impl Renewals {
    fn digest(report: &HostReport, address: &str, fingerprint: &str) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        format!("{report:?}|{address}|{fingerprint}").hash(&mut h);
        h.finish()
    }

    /// Whether this controller wrote exactly this report of `host` recently.
    fn unchanged(&self, host: HostId, digest: u64) -> bool {
        lock(&self.written).get(&host).is_some_and(|(d, at)| *d == digest && at.elapsed() < REWRITE_AFTER)
    }

    fn wrote(&self, host: HostId, digest: u64) {
        lock(&self.written).insert(host, (digest, Instant::now()));
    }

    /// Forgets a host that is gone (its credential no longer works).
    fn forget(&self, host: HostId) {
        lock(&self.written).remove(&host);
        lock(&self.credentials).retain(|_, h| *h != host);
    }

    /// Renews `host`'s lease with the batch it joins; false when it is not a live host.
    async fn renew(&self, store: &kumo_store::Store, host: HostId) -> ApiResult<bool> {
        let (tell, mut told) = oneshot::channel();
        lock(&self.pending).push((host, tell));
        let writer = self.writer.lock().await;
        if let Ok(answer) = told.try_recv() {
            // Written by the batch before, while this one waited for its turn.
            return answer.ok_or_else(|| ApiError::internal("renewing the host's lease failed"));
        }
        // The heartbeats of the next moment join this batch.
        tokio::time::sleep(GATHER).await;
        let batch = std::mem::take(&mut *lock(&self.pending));
        let ids: Vec<HostId> = batch.iter().map(|(h, _)| *h).collect();
        let written = async {
            let mut tx = store.begin().await?;
            let live = kumo_store::hosts::renew(&mut tx, &ids).await?;
            tx.commit().await?;
            Ok::<_, kumo_store::StoreError>(live)
        }
        .await;
        match written {
            Ok(live) => {
                let live: HashSet<HostId> = live.into_iter().collect();
                for (h, tell) in batch {
                    let _ = tell.send(Some(live.contains(&h)));
                }
            }
            Err(e) => {
                tracing::warn!(heartbeats = ids.len(), "renewing the hosts' leases failed: {e}");
                for (_, tell) in batch {
                    let _ = tell.send(None);
                }
            }
        }
        drop(writer);
        told.await.ok().flatten().ok_or_else(|| ApiError::internal("renewing the host's lease failed"))
    }
}

/// A heartbeat of host `host` (authenticated): renews its lease, refreshes what it reports.
/// Answered once written (see [`Renewals`]).
pub async fn heartbeat(app: &App, host: HostId, hb: Heartbeat) -> ApiResult<HeartbeatAck> {
    if hb.host_id != host {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this credential is host {host}'s; it cannot act for host {}", hb.host_id),
        ));
    }
    check_info(&hb.info)?;
    check_endpoint(&hb.address, &hb.fingerprint)?;
    let report = report(app, &hb.info);
    let digest = Renewals::digest(&report, &hb.address, &hb.fingerprint);
    if app.renewals.unchanged(host, digest) {
        if !app.renewals.renew(&app.store, host).await? {
            app.renewals.forget(host);
            return Err(not_a_host());
        }
    } else {
        let mut tx = app.store.begin().await?;
        match kumo_store::hosts::heartbeat(&mut tx, host, &report, &hb.address, &hb.fingerprint).await {
            Err(kumo_store::StoreError::Conflict(_)) => {
                app.renewals.forget(host);
                return Err(not_a_host());
            }
            r => r?,
        }
        tx.commit().await.map_err(ApiError::internal)?;
        app.renewals.wrote(host, digest);
    }
    // The hosts task syncs every few seconds anyway; a host this controller has no client for,
    // or takes for lost, is looked at again at once.
    if app.hosts.get(host).is_none() || app.hosts.is_lost(host) {
        app.hosts_sync.wake();
    }
    Ok(HeartbeatAck { lease_seconds: app.config.host_unreachable_after.as_secs() })
}

/// Host `host`'s agent says it is stopping (authenticated): the host is `down` (and its
/// instances `unknown`) at once, until its next heartbeat, instead of `unreachable` after the
/// deadline.
pub async fn leave(app: &App, host: HostId, req: &kumo_host_api::membership::Leave) -> ApiResult<()> {
    if req.host_id != host {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("this credential is host {host}'s; it cannot act for host {}", req.host_id),
        ));
    }
    let mut tx = app.store.begin().await?;
    if !kumo_store::hosts::leave(&mut tx, host).await? {
        return Err(ApiError::unauthenticated("not a host credential (unknown, or the host was removed)"));
    }
    tx.commit().await.map_err(ApiError::internal)?;
    tracing::info!(%host, "host down: its agent is stopping");
    app.hosts_sync.wake();
    Ok(())
}
