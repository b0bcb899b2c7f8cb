//! Request counts of the S3 endpoint: every few seconds, the counts this process kept in memory
//! ([`crate::app::buckets::Requests`]) are added to the store, where metering prices them. Every
//! controller flushes its own counts (no lease).

use super::{Error, Task};
use crate::App;
use std::sync::Arc;
use std::time::Duration;

/// How often counts are flushed: what a crash may lose.
pub const PERIOD: Duration = Duration::from_secs(10);

pub struct Flush;

impl Task for Flush {
    async fn pass(&mut self, app: &Arc<App>) -> Result<u64, Error> {
        Ok(app.requests.flush(&app.store).await?)
    }

    fn needs_lease(&self) -> bool {
        false
    }
}
