//! The billing reconciler: records budget alerts, and once a month generates last month's
//! invoices. The business logic ([`check_budgets`], [`close_last_month`]) is in
//! [`crate::app::billing`]; this is only the loop. Woken when a budget changes.

use super::{Error, Task};
use crate::app::billing::{check_budgets, close_last_month, period_of};
use crate::App;
use std::sync::Arc;

/// The billing task; remembers the month whose invoices it closed.
#[derive(Default)]
pub struct Billing {
    closed: Option<String>,
}

impl Task for Billing {
    /// One pass: budget alerts, and (once per month) last month's invoices.
    async fn pass(&mut self, app: &Arc<App>) -> Result<u64, Error> {
        let now = kumo_store::now();
        let mut changes = 0;
        match check_budgets(app, now).await {
            Ok(n) => changes += n,
            Err(e) => app.billing.record_error(&Error::Step(format!("budgets: {}", Error::from(e)))),
        }
        let month = period_of(now);
        if self.closed.as_deref() != Some(month.as_str()) {
            match close_last_month(app, now).await {
                Ok(n) => {
                    changes += n;
                    self.closed = Some(month);
                }
                Err(e) => app.billing.record_error(&Error::Step(format!("invoices: {}", Error::from(e)))),
            }
        }
        Ok(changes)
    }
}
