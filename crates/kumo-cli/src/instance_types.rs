//! `kumo instance-type …`: the catalogue of instance sizes (plans). Operators extend it.

use crate::cli::{parse_name, ListArgs};
use crate::output::{self, list_table, or_dash, time_with_age, view_table};
use crate::Ctx;
use anyhow::{bail, Result};
use chrono::Utc;
use clap::{Args, Subcommand};
use kumo_types::{InstanceTypeCreate, InstanceTypeView, Name};
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum InstanceTypeCommand {
    /// List instance types
    List(ListArgs),
    /// Show one instance type
    View {
        /// Instance type name or id
        instance_type: String,
    },
    /// Add an instance type to the catalogue (operators)
    Create(InstanceTypeCreateArgs),
    /// Remove an instance type from the catalogue (operators)
    Delete {
        /// Instance type name or id
        instance_type: String,
    },
}

#[derive(Debug, Args)]
pub struct InstanceTypeCreateArgs {
    /// Name of the new instance type
    #[arg(value_parser = parse_name)]
    pub name: Name,
    /// Virtual CPUs (1-64)
    #[arg(long)]
    pub vcpus: i64,
    /// Memory in MiB (64-262144)
    #[arg(long)]
    pub memory_mib: i64,
    /// Root disk size in GiB (1-16384)
    #[arg(long)]
    pub disk_gib: i64,
    /// GPUs passed through (0-16)
    #[arg(long, default_value_t = 0)]
    pub gpus: i64,
    /// Free-form description
    #[arg(long, default_value = "")]
    pub description: String,
    /// A label its instances' hosts must have, KEY=VALUE (repeat for several; see `kumo host label`)
    #[arg(long = "host-label", value_name = "KEY=VALUE", value_parser = crate::hosts::parse_label)]
    pub host_labels: Vec<(String, String)>,
}

pub fn run(ctx: &Ctx, command: &InstanceTypeCommand) -> Result<()> {
    match command {
        InstanceTypeCommand::List(list) => {
            let page = ctx.client.list_all(&["instance-types"], &[], list.cap())?;
            ctx.show(&page, render_list)
        }
        InstanceTypeCommand::View { instance_type } => {
            let found = ctx.client.get(&["instance-types", instance_type], &[])?;
            ctx.show(&found, render_view)
        }
        InstanceTypeCommand::Create(args) => {
            let body = InstanceTypeCreate {
                name: args.name.clone(),
                description: args.description.clone(),
                vcpus: args.vcpus,
                memory_mib: args.memory_mib,
                disk_gib: args.disk_gib,
                gpus: args.gpus,
                host_labels: args.host_labels.iter().cloned().collect(),
            };
            // Same range checks as the server, to fail before a round trip.
            if let Err(message) = body.validate() {
                bail!("{message}");
            }
            let created = ctx.client.post(&["instance-types"], &[], Some(&body))?;
            ctx.show(&created, render_view)
        }
        InstanceTypeCommand::Delete { instance_type } => {
            ctx.client.delete(&["instance-types", instance_type], &[])?;
            ctx.done(&format!("deleted instance type {instance_type}"));
            Ok(())
        }
    }
}

fn render_list(page: &Value) -> Result<String> {
    let mut table = list_table(&["NAME", "VCPUS", "MEMORY", "DISK", "GPUS", "DESCRIPTION"]);
    for t in output::items::<InstanceTypeView>(page)? {
        table.add_row(vec![
            t.name,
            t.vcpus.to_string(),
            format!("{} MiB", t.memory_mib),
            format!("{} GiB", t.disk_gib),
            t.gpus.to_string(),
            or_dash(Some(&t.description)),
        ]);
    }
    Ok(output::render(&table))
}

fn render_view(value: &Value) -> Result<String> {
    let t: InstanceTypeView = output::view(value)?;
    let now = Utc::now();
    let table = view_table(vec![
        ("NAME", t.name),
        ("ID", t.id.to_string()),
        ("DESCRIPTION", or_dash(Some(&t.description))),
        ("VCPUS", t.vcpus.to_string()),
        ("MEMORY", format!("{} MiB", t.memory_mib)),
        ("DISK", format!("{} GiB", t.disk_gib)),
        ("GPUS", t.gpus.to_string()),
        ("HOST LABELS", or_dash(Some(&kumo_types::labels_text(&t.host_labels)))),
        ("CREATED", time_with_age(t.time_created, now)),
        ("MODIFIED", time_with_age(t.time_modified, now)),
    ]);
    Ok(output::render(&table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_the_catalogue() {
        let page = json!({"items": [{
            "id": "0190b2a4-0000-7000-8000-000000000003", "name": "small", "description": "1 vCPU",
            "time_created": "2024-05-01T10:00:00Z", "time_modified": "2024-05-01T10:00:00Z",
            "vcpus": 1, "memory_mib": 512, "disk_gib": 10, "gpus": 0
        }], "next_page": null});
        let text = render_list(&page).expect("render");
        let row = text.lines().nth(1).expect("a row");
        for cell in ["small", "512 MiB", "10 GiB", "1 vCPU"] {
            assert!(row.contains(cell), "{row}");
        }
        let view = render_view(&page["items"][0]).expect("view");
        assert!(view.lines().any(|l| l.starts_with("MEMORY") && l.ends_with("512 MiB")), "{view}");
    }
}
