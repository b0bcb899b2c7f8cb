//! `kumo zone …`: named groups of hosts, with their hosts' summed capacity (operators).

use crate::cli::{parse_name, ListArgs};
use crate::output::{self, list_table, or_dash, time_with_age, view_table};
use crate::Ctx;
use anyhow::Result;
use chrono::Utc;
use clap::Subcommand;
use kumo_types::{Name, ZoneCreate, ZoneView};
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum ZoneCommand {
    /// List zones with their hosts and used/limit capacity
    List(ListArgs),
    /// Show one zone
    View {
        /// Zone name or id
        zone: String,
    },
    /// Create a zone
    Create {
        /// Name of the new zone
        #[arg(value_parser = parse_name)]
        name: Name,
        /// Free-form description
        #[arg(long, default_value = "")]
        description: String,
    },
}

pub fn run(ctx: &Ctx, command: &ZoneCommand) -> Result<()> {
    match command {
        ZoneCommand::List(list) => {
            let page = ctx.client.list_all(&["zones"], &[], list.cap())?;
            ctx.show(&page, render_list)
        }
        ZoneCommand::View { zone } => {
            let found = ctx.client.get(&["zones", zone], &[])?;
            ctx.show(&found, render_view)
        }
        ZoneCommand::Create { name, description } => {
            let body = ZoneCreate { name: name.clone(), description: description.clone() };
            let created = ctx.client.post(&["zones"], &[], Some(&body))?;
            ctx.show(&created, render_view)
        }
    }
}

fn used_of(used: i64, limit: i64) -> String {
    format!("{used}/{limit}")
}

/// The capacity columns: hosts, vCPU, memory, disk (dashes for a tenant, who is not shown them).
fn capacity_cells(z: &ZoneView) -> Option<[String; 4]> {
    Some([
        z.hosts?.to_string(),
        used_of(z.vcpus_used?, z.vcpus_limit?),
        used_of(z.memory_mib_used?, z.memory_mib_limit?),
        used_of(z.disk_gib_used?, z.disk_gib_limit?),
    ])
}

fn render_list(page: &Value) -> Result<String> {
    let mut table = list_table(&["NAME", "HOSTS", "VCPU", "MEMORY MIB", "DISK GIB", "DESCRIPTION"]);
    for z in output::items::<ZoneView>(page)? {
        let [hosts, vcpu, memory, disk] = capacity_cells(&z).unwrap_or_else(|| std::array::from_fn(|_| "-".into()));
        table.add_row(vec![z.name, hosts, vcpu, memory, disk, or_dash(Some(&z.description))]);
    }
    Ok(output::render(&table))
}

fn render_view(value: &Value) -> Result<String> {
    let z: ZoneView = output::view(value)?;
    let now = Utc::now();
    let capacity = capacity_cells(&z);
    let mut rows = vec![("NAME", z.name), ("ID", z.id.to_string()), ("DESCRIPTION", or_dash(Some(&z.description)))];
    if let Some([hosts, vcpu, memory, disk]) = capacity {
        rows.extend([
            ("HOSTS", hosts),
            ("VCPU", format!("{vcpu} used")),
            ("MEMORY", format!("{memory} MiB used")),
            ("DISK", format!("{disk} GiB used")),
        ]);
    }
    rows.push(("CREATED", time_with_age(z.time_created, now)));
    let table = view_table(rows);
    Ok(output::render(&table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn zones_show_their_hosts_and_capacity() {
        let z = json!({
            "id": "0190b2a4-0000-7000-8000-000000000008", "name": "east", "description": "",
            "time_created": "2024-05-01T10:00:00Z", "time_modified": "2024-05-01T10:00:00Z",
            "hosts": 2, "vcpus_limit": 32, "vcpus_used": 3, "memory_mib_limit": 8192, "memory_mib_used": 1024,
            "disk_gib_limit": 200, "disk_gib_used": 20
        });
        let text = render_list(&json!({"items": [z]})).expect("render");
        let row: Vec<&str> = text.lines().nth(1).expect("row").split_whitespace().collect();
        assert_eq!(row, ["east", "2", "3/32", "1024/8192", "20/200", "-"]);
        assert!(render_view(&z).expect("view").contains("1024/8192 MiB used"));
    }

    #[test]
    fn a_tenant_sees_zones_without_capacity() {
        let z = json!({
            "id": "0190b2a4-0000-7000-8000-000000000008", "name": "east", "description": "room 2",
            "time_created": "2024-05-01T10:00:00Z", "time_modified": "2024-05-01T10:00:00Z"
        });
        let text = render_list(&json!({"items": [z]})).expect("render");
        let row: Vec<&str> = text.lines().nth(1).expect("row").split_whitespace().collect();
        assert_eq!(row, ["east", "-", "-", "-", "-", "room", "2"]);
        let view = render_view(&z).expect("view");
        assert!(view.contains("room 2") && !view.contains("HOSTS"), "{view}");
    }
}
