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

/// The host a credential belongs to.
pub async fn authenticate(app: &App, credential: &str) -> ApiResult<HostId> {
    let mut conn = app.store.read().await?;
    kumo_store::hosts::by_credential(&mut conn, &hash_token(credential))
        .await?
        .ok_or_else(|| ApiError::unauthenticated("not a host credential (unknown, or the host was removed)"))
}

/// A heartbeat of host `host` (authenticated): renews its lease, refreshes what it reports.
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
    let mut tx = app.store.begin().await?;
    kumo_store::hosts::heartbeat(&mut tx, host, &report, &hb.address, &hb.fingerprint).await?;
    tx.commit().await.map_err(ApiError::internal)?;
    app.hosts_sync.wake();
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
