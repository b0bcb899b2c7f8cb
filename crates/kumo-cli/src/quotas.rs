//! `kumo quota …`: a project's limits and use (setting them is for operators).

use crate::output::{self, list_table};
use crate::Ctx;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use kumo_types::billing::{QuotaLimits, QuotaList, QuotaView};
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// Set limits of a project (operators); limits not given stay as they are
    Set(QuotaSetArgs),
    /// Show a project's limits and use
    Show {
        /// Project name or id
        project: String,
    },
    /// Every project's limits and use (operators)
    List,
}

/// A limit: a number, or `unlimited`.
#[derive(Debug, Clone, Args)]
pub struct QuotaSetArgs {
    /// Project name or id
    pub project: String,
    /// Most instances (a number, or `unlimited`)
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub instances: Option<Limit>,
    /// Most vCPUs
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub vcpus: Option<Limit>,
    /// Most memory, GiB
    #[arg(long, value_name = "GIB", value_parser = parse_limit)]
    pub memory_gib: Option<Limit>,
    /// Most storage, GiB
    #[arg(long, value_name = "GIB", value_parser = parse_limit)]
    pub storage_gib: Option<Limit>,
    /// Most floating IPs
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub floating_ips: Option<Limit>,
    /// Most VPCs
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub vpcs: Option<Limit>,
    /// Most project images (their GiB count against storage too)
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub images: Option<Limit>,
    /// Most snapshots
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub snapshots: Option<Limit>,
    /// Most volume backups
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub backups: Option<Limit>,
    /// Most objects in the project's buckets
    #[arg(long, value_name = "N", value_parser = parse_limit)]
    pub objects: Option<Limit>,
    /// Most object storage, GiB
    #[arg(long, value_name = "GIB", value_parser = parse_limit)]
    pub object_storage_gib: Option<Limit>,
}

/// A limit given on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    Unlimited,
    At(i64),
}

fn parse_limit(s: &str) -> Result<Limit, String> {
    if s == "unlimited" {
        return Ok(Limit::Unlimited);
    }
    s.parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .map(Limit::At)
        .ok_or_else(|| format!("'{s}' is not a limit: give a whole number >= 0, or 'unlimited'"))
}

fn apply(current: Option<i64>, given: Option<Limit>) -> Option<i64> {
    match given {
        None => current,
        Some(Limit::Unlimited) => None,
        Some(Limit::At(n)) => Some(n),
    }
}

pub fn run(ctx: &Ctx, command: &QuotaCommand) -> Result<()> {
    match command {
        QuotaCommand::Set(a) => {
            let given = [
                a.instances,
                a.vcpus,
                a.memory_gib,
                a.storage_gib,
                a.floating_ips,
                a.vpcs,
                a.images,
                a.snapshots,
                a.backups,
                a.objects,
                a.object_storage_gib,
            ];
            if given.iter().all(Option::is_none) {
                bail!("give at least one limit, e.g. --vcpus 16 (or --vcpus unlimited)");
            }
            let current: QuotaView = ctx.client.get(&["projects", &a.project, "quotas"], &[])?.decode()?;
            let l = current.limits;
            let body = QuotaLimits {
                instances: apply(l.instances, a.instances),
                vcpus: apply(l.vcpus, a.vcpus),
                memory_gib: apply(l.memory_gib, a.memory_gib),
                storage_gib: apply(l.storage_gib, a.storage_gib),
                floating_ips: apply(l.floating_ips, a.floating_ips),
                vpcs: apply(l.vpcs, a.vpcs),
                images: apply(l.images, a.images),
                snapshots: apply(l.snapshots, a.snapshots),
                backups: apply(l.backups, a.backups),
                objects: apply(l.objects, a.objects),
                object_storage_gib: apply(l.object_storage_gib, a.object_storage_gib),
            };
            let updated = ctx.client.put(&["projects", &a.project, "quotas"], &[], &body)?;
            ctx.show(&updated, render_view)
        }
        QuotaCommand::Show { project } => {
            let found = ctx.client.get(&["projects", project, "quotas"], &[])?;
            ctx.show(&found, render_view)
        }
        QuotaCommand::List => {
            let found = ctx.client.get(&["system", "quotas"], &[])?;
            ctx.show(&found, render_list)
        }
    }
}

fn limit(l: Option<i64>) -> String {
    l.map_or_else(|| "unlimited".to_string(), |n| n.to_string())
}

fn rows(q: &QuotaView) -> Vec<[String; 3]> {
    let mem_used = kumo_types::money::format_decimal(q.used.memory_mib * 100 / 1024, 2, 0);
    vec![
        ["instances".into(), q.used.instances.to_string(), limit(q.limits.instances)],
        ["vcpus".into(), q.used.vcpus.to_string(), limit(q.limits.vcpus)],
        ["memory GiB".into(), mem_used, limit(q.limits.memory_gib)],
        ["storage GiB".into(), q.used.storage_gib.to_string(), limit(q.limits.storage_gib)],
        ["floating IPs".into(), q.used.floating_ips.to_string(), limit(q.limits.floating_ips)],
        ["vpcs".into(), q.used.vpcs.to_string(), limit(q.limits.vpcs)],
        ["images".into(), q.used.images.to_string(), limit(q.limits.images)],
        ["snapshots".into(), q.used.snapshots.to_string(), limit(q.limits.snapshots)],
        ["backups".into(), q.used.backups.to_string(), limit(q.limits.backups)],
        ["objects".into(), q.used.objects.to_string(), limit(q.limits.objects)],
        [
            "object storage GiB".into(),
            kumo_types::money::format_decimal(q.used.object_bytes * 100 / (1 << 30), 2, 0),
            limit(q.limits.object_storage_gib),
        ],
    ]
}

fn render_view(value: &Value) -> Result<String> {
    let q: QuotaView = output::view(value)?;
    let mut table = list_table(&["RESOURCE", "USED", "LIMIT"]);
    for r in rows(&q) {
        table.add_row(r.to_vec());
    }
    Ok(format!("project {}\n{}", q.project, output::render(&table)))
}

fn render_list(value: &Value) -> Result<String> {
    let list: QuotaList = output::view(value)?;
    let mut table = list_table(&[
        "PROJECT",
        "INSTANCES",
        "VCPUS",
        "MEMORY GIB",
        "STORAGE GIB",
        "FLOATING IPS",
        "VPCS",
        "IMAGES",
        "SNAPSHOTS",
        "BACKUPS",
    ]);
    for q in &list.items {
        let r = rows(q);
        let mut row = vec![q.project.clone()];
        row.extend(r.iter().map(|[_, used, lim]| format!("{used}/{lim}")));
        table.add_row(row);
    }
    Ok(output::render(&table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn limits_show_used_over_limit_and_merge_with_the_current_ones() {
        let v = json!({"project": "shop",
            "limits": {"instances": 10, "vcpus": 16, "memory_gib": 32, "storage_gib": null, "floating_ips": 2},
            "used": {"instances": 2, "vcpus": 3, "memory_mib": 1536, "storage_gib": 11, "floating_ips": 0,
                     "vpcs": 3, "images": 1, "snapshots": 0, "backups": 0}});
        let text = render_view(&v).expect("render");
        assert!(
            text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["memory", "GiB", "1.5", "32"]),
            "{text}"
        );
        assert!(
            text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["storage", "GiB", "11", "unlimited"]),
            "{text}"
        );
        assert!(text.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["vpcs", "3", "unlimited"]), "{text}");
        let list = render_list(&json!({"items": [v]})).expect("render");
        assert!(list.contains("2/10") && list.contains("11/unlimited"), "{list}");
        assert_eq!(apply(Some(3), None), Some(3));
        assert_eq!(apply(Some(3), Some(Limit::Unlimited)), None);
        assert_eq!(apply(None, Some(Limit::At(5))), Some(5));
        assert!(parse_limit("-1").is_err() && parse_limit("many").is_err());
    }
}
