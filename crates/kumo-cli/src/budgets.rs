//! `kumo budget …`: a project's monthly budget; an alert event is recorded when the month-to-date
//! cost reaches the threshold.

use crate::output::{self, or_dash, view_table};
use crate::Ctx;
use anyhow::Result;
use clap::Subcommand;
use kumo_types::billing::{BudgetSet, BudgetView};
use kumo_types::money::format_cents;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum BudgetCommand {
    /// Set a project's monthly budget (project owners)
    Set {
        /// Project name or id
        project: String,
        /// Monthly budget, a decimal like 50 or 49.90
        #[arg(long, value_name = "AMOUNT")]
        monthly: String,
        /// Alert when month-to-date cost reaches this percentage of the budget
        #[arg(long, value_name = "PERCENT", default_value_t = 80)]
        alert_at: i64,
    },
    /// Show a project's budget and month-to-date cost
    Show {
        /// Project name or id
        project: String,
    },
}

pub fn run(ctx: &Ctx, command: &BudgetCommand) -> Result<()> {
    match command {
        BudgetCommand::Set { project, monthly, alert_at } => {
            let body = BudgetSet { monthly: monthly.clone(), alert_at_percent: *alert_at };
            let set = ctx.client.put(&["projects", project, "budget"], &[], &body)?;
            ctx.show(&set, render_view)
        }
        BudgetCommand::Show { project } => {
            let found = ctx.client.get(&["projects", project, "budget"], &[])?;
            ctx.show(&found, render_view)
        }
    }
}

fn render_view(value: &Value) -> Result<String> {
    let b: BudgetView = output::view(value)?;
    let mtd = match b.monthly_cents {
        Some(m) if m > 0 => format!("{} ({}% of the budget)", format_cents(b.month_to_date), b.month_to_date * 100 / m),
        _ => format_cents(b.month_to_date),
    };
    let table = view_table(vec![
        ("PROJECT", b.project),
        ("MONTHLY", b.monthly.unwrap_or_else(|| "- (no budget; set one with `kumo budget set`)".into())),
        ("ALERT AT", b.alert_at_percent.map_or_else(|| "-".into(), |p| format!("{p}%"))),
        ("MONTH TO DATE", mtd),
        ("LAST ALERT", or_dash(b.last_alert_period.as_deref())),
    ]);
    Ok(output::render(&table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn budget_shows_month_to_date_against_the_budget() {
        let v = json!({"project": "shop", "monthly": "50.00", "monthly_cents": 5000, "alert_at_percent": 80,
                       "month_to_date": 4100, "last_alert_period": "2026-11"});
        let text = render_view(&v).expect("render");
        assert!(text.contains("41.00 (82% of the budget)"), "{text}");
        assert!(text.contains("2026-11"), "{text}");
    }
}
