//! Audit log retention: deletes entries older than `--audit-retention-days`, at start and then
//! every hour. Without a retention the task is not started (its status says `enabled: false`).
//! The audit log itself is [`crate::app::audit`].

use super::{Error, Task};
use crate::App;
use chrono::TimeDelta;
use std::sync::Arc;
use std::time::Duration;

/// How often old entries are pruned.
pub const PERIOD: Duration = Duration::from_secs(3600);

/// The retention task: keeps entries for the given duration.
pub struct Prune(pub Duration);

impl Task for Prune {
    async fn pass(&mut self, app: &Arc<App>) -> Result<u64, Error> {
        let keep = TimeDelta::from_std(self.0)
            .map_err(|e| anyhow::anyhow!("audit retention {:?} is out of range: {e}", self.0))?;
        let before = kumo_store::now() - keep;
        let mut tx = app.store.begin().await?;
        let n = kumo_store::audit::prune(&mut tx, before).await?;
        tx.commit().await.map_err(kumo_store::StoreError::from)?;
        if n > 0 {
            tracing::info!(entries = n, "audit log: pruned entries older than the retention");
        }
        Ok(n)
    }
}
