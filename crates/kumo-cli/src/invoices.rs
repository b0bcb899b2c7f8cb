//! `kumo invoice …`: invoices of closed months (immutable once generated).

use crate::output::{self, list_table, timestamp};
use crate::usage::lines_table;
use crate::Ctx;
use anyhow::Result;
use clap::Subcommand;
use kumo_types::billing::{InvoiceList, InvoiceView};
use kumo_types::money::format_cents;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum InvoiceCommand {
    /// List a project's invoices (closed months)
    List {
        #[command(flatten)]
        project: crate::cli::ProjectArg,
    },
    /// Show one month's invoice, line by line
    Show {
        /// The month, YYYY-MM
        period: String,
        #[command(flatten)]
        project: crate::cli::ProjectArg,
    },
}

pub fn run(ctx: &Ctx, command: &InvoiceCommand) -> Result<()> {
    match command {
        InvoiceCommand::List { project } => {
            let found = ctx.client.get(&["projects", &project.project, "invoices"], &[])?;
            ctx.show(&found, render_list)
        }
        InvoiceCommand::Show { period, project } => {
            let found = ctx.client.get(&["projects", &project.project, "invoices", period], &[])?;
            ctx.show(&found, render_view)
        }
    }
}

fn render_list(value: &Value) -> Result<String> {
    let list: InvoiceList = output::view(value)?;
    let mut table = list_table(&["PERIOD", "LINES", "TOTAL", "GENERATED"]);
    let mut sum = 0;
    for i in list.items {
        sum += i.total;
        table.add_row(vec![i.period, i.lines.to_string(), format_cents(i.total), timestamp(i.time_created)]);
    }
    table.add_row(vec!["TOTAL".to_string(), String::new(), format_cents(sum), String::new()]);
    Ok(output::render(&table))
}

fn render_view(value: &Value) -> Result<String> {
    let inv: InvoiceView = output::view(value)?;
    Ok(format!(
        "invoice {} of project {} ({} to {}, generated {})\n{}",
        inv.period,
        inv.project,
        timestamp(inv.from),
        timestamp(inv.to),
        timestamp(inv.time_created),
        lines_table(&inv.items, inv.total)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn invoices_render_with_totals() {
        let list = json!({"items": [
            {"period": "2026-09", "total": 100, "lines": 1, "time_created": "2026-10-01T00:00:05Z"},
            {"period": "2026-10", "total": 321, "lines": 2, "time_created": "2026-11-01T00:00:05Z"}]});
        let text = render_list(&list).expect("render");
        assert_eq!(text.lines().last().map(|l| l.split_whitespace().collect::<Vec<_>>()), Some(vec!["TOTAL", "4.21"]));
        let inv = json!({"project": "shop", "period": "2026-10", "from": "2026-10-01T00:00:00Z",
            "to": "2026-11-01T00:00:00Z", "time_created": "2026-11-01T00:00:05Z", "total": 0, "items": []});
        let text = render_view(&inv).expect("render");
        assert!(text.starts_with("invoice 2026-10 of project shop"), "{text}");
        assert!(text.lines().last().is_some_and(|l| l.starts_with("TOTAL") && l.ends_with("0.00")), "{text}");
    }
}
