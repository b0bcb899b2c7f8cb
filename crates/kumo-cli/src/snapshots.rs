//! `kumo snapshot …`: crash-consistent snapshots of volumes (`kumo volume create --from-snapshot`
//! makes a volume of one).

use crate::cli::{parse_name, ListArgs, ProjectArg};
use crate::output::{self, age, list_table, or_dash, time_with_age, view_table};
use crate::Ctx;
use anyhow::Result;
use chrono::Utc;
use clap::{Args, Subcommand};
use kumo_types::{Name, SnapshotCreate, SnapshotView};
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// List a project's snapshots
    List {
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Snapshot a volume (detached, or attached to a running instance)
    Create(SnapshotCreateArgs),
    /// Show one snapshot
    View(SnapshotRef),
    /// Delete a snapshot (volumes made from it keep their data)
    Delete(SnapshotRef),
}

#[derive(Debug, Args)]
pub struct SnapshotCreateArgs {
    /// Name of the new snapshot
    #[arg(value_parser = parse_name)]
    pub name: Name,
    /// The volume to snapshot (name or id)
    #[arg(long)]
    pub volume: String,
    #[command(flatten)]
    pub project: ProjectArg,
    /// Free-form description
    #[arg(long, default_value = "")]
    pub description: String,
}

#[derive(Debug, Args)]
pub struct SnapshotRef {
    /// Snapshot name or id
    pub snapshot: String,
    #[command(flatten)]
    pub project: ProjectArg,
}

pub fn run(ctx: &Ctx, command: &SnapshotCommand) -> Result<()> {
    match command {
        SnapshotCommand::List { project, list } => {
            let page = ctx.client.list_all(&["snapshots"], &[("project", &project.project)], list.cap())?;
            ctx.show(&page, render_list)
        }
        SnapshotCommand::Create(a) => {
            let body =
                SnapshotCreate { name: a.name.clone(), description: a.description.clone(), volume: a.volume.clone() };
            let created = ctx.client.post(&["snapshots"], &[("project", a.project.project.as_str())], Some(&body))?;
            ctx.show(&created, render_view)
        }
        SnapshotCommand::View(r) => {
            let found = ctx.client.get(&["snapshots", &r.snapshot], &[("project", &r.project.project)])?;
            ctx.show(&found, render_view)
        }
        SnapshotCommand::Delete(r) => {
            ctx.client.delete(&["snapshots", &r.snapshot], &[("project", &r.project.project)])?;
            ctx.done(&format!("deleted snapshot {}", r.snapshot));
            Ok(())
        }
    }
}

fn render_list(page: &Value) -> Result<String> {
    let now = Utc::now();
    let mut table = list_table(&["NAME", "VOLUME", "SIZE", "AGE"]);
    for s in output::items::<SnapshotView>(page)? {
        table.add_row(vec![s.name, s.volume, format!("{} GiB", s.size_gib), age(s.time_created, now)]);
    }
    Ok(output::render(&table))
}

pub fn render_view(value: &Value) -> Result<String> {
    let s: SnapshotView = output::view(value)?;
    let now = Utc::now();
    let rows = vec![
        ("NAME", s.name),
        ("ID", s.id.to_string()),
        ("PROJECT", s.project),
        ("DESCRIPTION", or_dash(Some(&s.description))),
        ("VOLUME", s.volume),
        ("SIZE", format!("{} GiB", s.size_gib)),
        ("CREATED", time_with_age(s.time_created, now)),
    ];
    Ok(output::render(&view_table(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_shows_the_volume_and_size() {
        let page = json!({"items": [{
            "id": "0190b2a4-0000-7000-8000-00000000000a", "name": "s1", "description": "",
            "time_created": "2024-05-01T10:00:00Z", "time_modified": "2024-05-01T10:00:00Z",
            "project": "demo", "volume": "data", "size_gib": 10
        }]});
        let text = render_list(&page).expect("render");
        let row: Vec<&str> = text.lines().nth(1).expect("row").split_whitespace().collect();
        assert_eq!(&row[..4], ["s1", "data", "10", "GiB"]);
    }
}
