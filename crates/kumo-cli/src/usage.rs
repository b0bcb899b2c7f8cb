//! `kumo usage`: a project's usage and cost over a window (default: month to date), one line per
//! resource and unit price, with the total. The same table renders invoices.

use crate::output::{self, list_table};
use crate::Ctx;
use anyhow::Result;
use clap::Args;
use kumo_types::billing::{UsageLine, UsageReport};
use kumo_types::money::{format_cents, format_decimal};
use serde_json::Value;

#[derive(Debug, Clone, Args)]
pub struct UsageArgs {
    /// Project (name or id)
    #[arg(long, env = "KUMO_PROJECT", value_name = "PROJECT")]
    pub project: String,
    /// A calendar month, YYYY-MM (default: the current month to date)
    #[arg(long, value_name = "YYYY-MM", conflicts_with_all = ["from", "to"])]
    pub month: Option<String>,
    /// Window start, RFC 3339
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Window end, RFC 3339 (default: now)
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
}

pub fn run(ctx: &Ctx, a: &UsageArgs) -> Result<()> {
    let mut query = Vec::new();
    for (k, v) in [("month", &a.month), ("from", &a.from), ("to", &a.to)] {
        if let Some(v) = v {
            query.push((k, v.as_str()));
        }
    }
    let found = ctx.client.get(&["projects", &a.project, "usage"], &query)?;
    ctx.show(&found, render)
}

/// "5400 s (1.5 h)" or "8640000 GiB-s (3.2877 GiB-month)": the billed quantity and the same in
/// the unit of the price.
pub fn quantity(l: &UsageLine) -> String {
    let (per, short) = if l.unit == "second" { (3600i128, "h") } else { (730 * 3600i128, "GiB-month") };
    let in_price_unit = (l.quantity as i128 * 10_000 / per) as i64;
    let unit = if l.unit == "second" { "s" } else { "GiB-s" };
    format!("{} {unit} ({} {short})", l.quantity, format_decimal(in_price_unit, 4, 1))
}

/// The lines table with a TOTAL row.
pub fn lines_table(items: &[UsageLine], total: i64) -> String {
    let mut table = list_table(&["RESOURCE", "TYPE", "ITEM", "QUANTITY", "UNIT PRICE", "COST"]);
    for l in items {
        let item = match &l.price_name {
            Some(n) => format!("{} {n}", l.price_kind),
            None => l.price_kind.clone(),
        };
        table.add_row(vec![
            l.resource.clone(),
            l.resource_type.clone(),
            item,
            quantity(l),
            format!("{}/{}", l.unit_price, l.price_unit),
            format_cents(l.cost),
        ]);
    }
    table.add_row(vec![
        "TOTAL".to_string(),
        String::new(),
        String::new(),
        String::new(),
        String::new(),
        format_cents(total),
    ]);
    output::render(&table)
}

fn render(value: &Value) -> Result<String> {
    let r: UsageReport = output::view(value)?;
    Ok(format!(
        "usage of project {} from {} to {}\n{}",
        r.project,
        output::timestamp(r.from),
        output::timestamp(r.to),
        lines_table(&r.items, r.total)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    pub fn sample_lines() -> Value {
        json!([
            {"resource_type": "instance", "resource": "web", "resource_id": "0190b2a4-0000-7000-8000-000000000001",
             "price_kind": "instance_type", "price_name": "k1-small", "quantity": 864000, "unit": "second",
             "unit_price": "0.012", "unit_price_micros": 12000, "price_unit": "hour", "cost": 288,
             "intervals": [{"start": "2026-10-02T00:00:10Z", "end": "2026-10-12T00:00:10Z"}]},
            {"resource_type": "disk", "resource": "web", "resource_id": "0190b2a4-0000-7000-8000-000000000001",
             "price_kind": "disk", "price_name": null, "quantity": 8640000, "unit": "GiB-second",
             "unit_price": "0.10", "unit_price_micros": 100000, "price_unit": "GiB-month", "cost": 33,
             "intervals": [{"start": "2026-10-02T00:00:00Z", "end": "2026-10-22T00:00:00Z", "gib": 5}]}
        ])
    }

    #[test]
    fn usage_renders_lines_and_the_total() {
        let v = json!({"project": "shop", "from": "2026-10-01T00:00:00Z", "to": "2026-11-01T00:00:00Z",
                       "items": sample_lines(), "total": 321});
        let text = render(&v).expect("render");
        let rows: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(rows[1][0], "RESOURCE");
        assert_eq!(
            rows[2],
            ["web", "instance", "instance_type", "k1-small", "864000", "s", "(240.0", "h)", "0.012/hour", "2.88"]
        );
        assert_eq!(
            rows[3],
            ["web", "disk", "disk", "8640000", "GiB-s", "(3.2876", "GiB-month)", "0.10/GiB-month", "0.33"]
        );
        assert_eq!(rows[4], ["TOTAL", "3.21"]);
    }
}
