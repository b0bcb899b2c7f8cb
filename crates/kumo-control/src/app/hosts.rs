//! Hosts (operators only): registration of the local host, and the operator views.

use super::{read, selector};
use crate::context::{Access, OpContext};
use crate::error::{ApiError, ApiResult};
use crate::{App, ControlConfig};
use kumo_host_api::HostAgent;
use kumo_store::hosts::{HostReport, Resources};
use kumo_store::Store;
use kumo_types::page::PageRequest;
use kumo_types::{HostId, HostView, ResultsPage};

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
    let mut tx = store.begin().await?;
    let host = kumo_store::hosts::register(&mut tx, config.host_id, &report).await?;
    tx.commit().await?;
    tracing::info!(
        host = %host.name, driver = %host.driver, accelerator = %host.accelerator,
        reason = %host.accelerator_reason, "host registered"
    );
    Ok(host.id)
}

pub async fn list(app: &App, ctx: &OpContext, page: &PageRequest) -> ApiResult<ResultsPage<HostView>> {
    ctx.authorize(Access::Operator)?;
    Ok(kumo_store::hosts::list(&mut *read(app).await?, page).await?)
}

pub async fn view(app: &App, ctx: &OpContext, host: &str) -> ApiResult<HostView> {
    ctx.authorize(Access::Operator)?;
    let sel = selector("host", host)?;
    kumo_store::hosts::get(&mut *read(app).await?, &sel).await?.ok_or_else(|| ApiError::not_found("host", host))
}
