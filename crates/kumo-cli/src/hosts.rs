//! `kumo host …`: the machines instances run on, and how much of each is reserved (operators).

use crate::cli::ListArgs;
use crate::output::{self, age, list_table, or_dash, time_with_age, view_table};
use crate::Ctx;
use anyhow::Result;
use chrono::Utc;
use clap::Subcommand;
use kumo_types::HostView;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// List hosts with their used/limit capacity
    List(ListArgs),
    /// Show one host
    View {
        /// Host name or id
        host: String,
    },
}

pub fn run(ctx: &Ctx, command: &HostCommand) -> Result<()> {
    match command {
        HostCommand::List(list) => {
            let page = ctx.client.list_all(&["hosts"], &[], list.cap())?;
            ctx.show(&page, render_list)
        }
        HostCommand::View { host } => {
            let found = ctx.client.get(&["hosts", host], &[])?;
            ctx.show(&found, render_view)
        }
    }
}

fn used_of(used: i64, limit: i64) -> String {
    format!("{used}/{limit}")
}

fn render_list(page: &Value) -> Result<String> {
    let now = Utc::now();
    let headers = ["NAME", "DRIVER", "ACCEL", "VCPU", "MEMORY MIB", "DISK GIB", "GPU", "SEEN"];
    let mut table = list_table(&headers);
    for h in output::items::<HostView>(page)? {
        table.add_row(vec![
            h.name,
            h.driver,
            h.accelerator,
            used_of(h.vcpus_used, h.vcpus_limit),
            used_of(h.memory_mib_used, h.memory_mib_limit),
            used_of(h.disk_gib_used, h.disk_gib_limit),
            used_of(h.gpus_used, h.gpus_total),
            format!("{} ago", age(h.time_modified, now)),
        ]);
    }
    Ok(output::render(&table))
}

fn render_view(value: &Value) -> Result<String> {
    let h: HostView = output::view(value)?;
    let now = Utc::now();
    let capacity = |used: i64, limit: i64, total: i64, ratio: f64, unit: &str| {
        format!("{used}/{limit}{unit} used (physical {total}{unit}, overcommit x{ratio})")
    };
    let table = view_table(vec![
        ("NAME", h.name),
        ("ID", h.id.to_string()),
        ("DESCRIPTION", or_dash(Some(&h.description))),
        ("DRIVER", h.driver),
        ("ACCELERATOR", format!("{} ({})", h.accelerator, or_dash(Some(&h.accelerator_reason)))),
        ("VCPU", capacity(h.vcpus_used, h.vcpus_limit, h.vcpus_total, h.cpu_overcommit, "")),
        ("MEMORY", capacity(h.memory_mib_used, h.memory_mib_limit, h.memory_mib_total, h.memory_overcommit, " MiB")),
        ("DISK", capacity(h.disk_gib_used, h.disk_gib_limit, h.disk_gib_total, h.disk_overcommit, " GiB")),
        ("GPU", used_of(h.gpus_used, h.gpus_total)),
        ("REGISTERED", time_with_age(h.time_created, now)),
        ("LAST SEEN", time_with_age(h.time_modified, now)),
    ]);
    Ok(output::render(&table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Value {
        json!({
            "id": "0190b2a4-0000-7000-8000-000000000006", "name": "host-a", "description": "",
            "time_created": "2024-05-01T10:00:00Z", "time_modified": "2024-05-01T10:00:00Z",
            "driver": "qemu", "accelerator": "tcg", "accelerator_reason": "KVM probe boot timed out",
            "vcpus_total": 2, "vcpus_used": 3, "vcpus_limit": 8,
            "memory_mib_total": 4096, "memory_mib_used": 1024, "memory_mib_limit": 6144,
            "disk_gib_total": 100, "disk_gib_used": 20, "disk_gib_limit": 100,
            "gpus_total": 0, "gpus_used": 0,
            "cpu_overcommit": 4.0, "memory_overcommit": 1.5, "disk_overcommit": 1.0
        })
    }

    #[test]
    fn capacity_is_shown_as_used_over_limit() {
        let text = render_list(&json!({"items": [sample()]})).expect("render");
        let lines: Vec<&str> = text.lines().collect();
        let header: Vec<&str> = lines[0].split_whitespace().collect();
        assert_eq!(&header[..4], ["NAME", "DRIVER", "ACCEL", "VCPU"]);
        let row: Vec<&str> = lines[1].split_whitespace().collect();
        assert_eq!(&row[..7], ["host-a", "qemu", "tcg", "3/8", "1024/6144", "20/100", "0/0"]);
        let view = render_view(&sample()).expect("view");
        assert!(view.contains("1024/6144 MiB used (physical 4096 MiB, overcommit x1.5)"), "{view}");
        assert!(view.contains("tcg (KVM probe boot timed out)"), "{view}");
    }
}
