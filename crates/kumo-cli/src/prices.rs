//! `kumo price …`: the price catalogue (operators). Prices apply from the moment they are set.

use crate::output::{self, list_table, timestamp};
use crate::Ctx;
use anyhow::{bail, Result};
use clap::{Subcommand, ValueEnum};
use kumo_types::billing::{PriceList, PriceSet};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PriceKind {
    /// Running time of an instance type, per hour
    InstanceType,
    /// Instance root disks, per GiB-month
    Disk,
    /// Volumes, per GiB-month
    Volume,
    /// Snapshots, per GiB-month
    Snapshot,
    /// Backups, per GiB-month
    Backup,
    /// Images, per GiB-month
    Image,
    /// Floating IPs, per hour
    FloatingIp,
    /// Object storage (bucket contents), per GiB-month
    ObjectStorage,
    /// Requests that change a bucket (PUT, COPY, POST, DELETE), per 1,000
    ObjectWriteRequests,
    /// Other requests to a bucket (GET, HEAD, listings), per 1,000
    ObjectReadRequests,
}

impl PriceKind {
    fn api(self) -> &'static str {
        match self {
            PriceKind::InstanceType => "instance_type",
            PriceKind::Disk => "disk",
            PriceKind::Volume => "volume",
            PriceKind::Snapshot => "snapshot",
            PriceKind::Backup => "backup",
            PriceKind::Image => "image",
            PriceKind::ObjectStorage => "object_storage",
            PriceKind::FloatingIp => "floating_ip",
            PriceKind::ObjectWriteRequests => "object_write_requests",
            PriceKind::ObjectReadRequests => "object_read_requests",
        }
    }

    /// The flag its price is given with.
    fn per(self) -> Per {
        match self {
            PriceKind::InstanceType | PriceKind::FloatingIp => Per::Hour,
            PriceKind::ObjectWriteRequests | PriceKind::ObjectReadRequests => Per::ThousandRequests,
            _ => Per::GibMonth,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Per {
    Hour,
    GibMonth,
    ThousandRequests,
}

#[derive(Debug, Subcommand)]
pub enum PriceCommand {
    /// Set a price, effective from now: `kumo price set instance-type k1-small --per-hour 0.012`,
    /// `kumo price set volume --per-gib-month 0.10`
    Set {
        /// What is priced
        #[arg(value_enum)]
        kind: PriceKind,
        /// The instance type (for instance-type prices)
        name: Option<String>,
        /// Price per hour (instance-type, floating-ip), a decimal like 0.012
        #[arg(long, value_name = "PRICE", conflicts_with_all = ["per_gib_month", "per_1000_requests"])]
        per_hour: Option<String>,
        /// Price per GiB-month of 730 hours (disk, volume, snapshot, backup, image, object-storage)
        #[arg(long, value_name = "PRICE", conflicts_with = "per_1000_requests")]
        per_gib_month: Option<String>,
        /// Price per 1,000 requests (object-write-requests, object-read-requests)
        #[arg(long = "per-1000-requests", value_name = "PRICE")]
        per_1000_requests: Option<String>,
    },
    /// List prices with their history
    List,
}

pub fn run(ctx: &Ctx, command: &PriceCommand) -> Result<()> {
    match command {
        PriceCommand::Set { kind, name, per_hour, per_gib_month, per_1000_requests } => {
            let price = match (kind.per(), per_hour, per_gib_month, per_1000_requests) {
                (Per::Hour, Some(p), None, None)
                | (Per::GibMonth, None, Some(p), None)
                | (Per::ThousandRequests, None, None, Some(p)) => p.clone(),
                (Per::Hour, ..) => bail!("{} prices are per hour: give --per-hour", kind.api()),
                (Per::GibMonth, ..) => bail!("{} prices are per GiB-month: give --per-gib-month", kind.api()),
                (Per::ThousandRequests, ..) => {
                    bail!("{} prices are per 1,000 requests: give --per-1000-requests", kind.api())
                }
            };
            if (*kind == PriceKind::InstanceType) != name.is_some() {
                bail!("give an instance type name for instance-type prices, and no name for others");
            }
            let body = PriceSet { kind: kind.api().to_string(), name: name.clone(), unit_price: price };
            let set = ctx.client.put(&["system", "prices"], &[], &body)?;
            ctx.show(&set, |v| render_list(&serde_json::json!({"items": [v]})))
        }
        PriceCommand::List => {
            let found = ctx.client.get(&["system", "prices"], &[])?;
            ctx.show(&found, render_list)
        }
    }
}

fn render_list(value: &Value) -> Result<String> {
    let list: PriceList = output::view(value)?;
    let mut table = list_table(&["KIND", "NAME", "PRICE", "PER", "FROM", "UNTIL"]);
    for p in list.items {
        table.add_row(vec![
            p.kind,
            p.name.unwrap_or_else(|| "-".into()),
            p.unit_price,
            p.price_unit,
            timestamp(p.effective_from),
            p.effective_until.map_or_else(|| "(current)".to_string(), timestamp),
        ]);
    }
    Ok(output::render(&table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prices_list_with_their_validity() {
        let v = json!({"items": [
            {"id": "0190b2a4-0000-7000-8000-000000000001", "kind": "instance_type", "name": "k1-small", "unit_price": "0.012",
             "unit_price_micros": 12000, "price_unit": "hour", "effective_from": "2026-11-01T00:00:00Z",
             "effective_until": "2026-11-15T00:00:00Z"},
            {"id": "0190b2a4-0000-7000-8000-000000000002", "kind": "volume", "name": null, "unit_price": "0.10",
             "unit_price_micros": 100000, "price_unit": "GiB-month", "effective_from": "2026-11-01T00:00:00Z",
             "effective_until": null}]});
        let text = render_list(&v).expect("render");
        let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split_whitespace().collect()).collect();
        assert_eq!(lines[1][..4], ["instance_type", "k1-small", "0.012", "hour"]);
        assert_eq!(lines[2][..4], ["volume", "-", "0.10", "GiB-month"]);
        assert!(text.contains("(current)"), "{text}");
    }
}
