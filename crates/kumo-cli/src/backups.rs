//! `kumo backup …`: backups of volumes (full the first time, then incremental);
//! `kumo volume create --from-backup` restores one.

use crate::cli::{parse_name, ListArgs, ProjectArg};
use crate::output::{self, age, bytes, list_table, or_dash, time_with_age, view_table};
use crate::Ctx;
use anyhow::Result;
use chrono::Utc;
use clap::{Args, Subcommand};
use kumo_types::{BackupCreate, BackupView, Name};
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// List a project's volume backups
    List {
        #[command(flatten)]
        project: ProjectArg,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Back up a volume (not in use by a running instance)
    Create(BackupCreateArgs),
    /// Show one backup
    View(BackupRef),
    /// Delete a backup
    Delete(BackupRef),
}

#[derive(Debug, Args)]
pub struct BackupCreateArgs {
    /// Name of the new backup
    #[arg(value_parser = parse_name)]
    pub name: Name,
    /// The volume to back up (name or id)
    #[arg(long)]
    pub volume: String,
    #[command(flatten)]
    pub project: ProjectArg,
    /// Free-form description
    #[arg(long, default_value = "")]
    pub description: String,
}

#[derive(Debug, Args)]
pub struct BackupRef {
    /// Backup name or id
    pub backup: String,
    #[command(flatten)]
    pub project: ProjectArg,
}

pub fn run(ctx: &Ctx, command: &BackupCommand) -> Result<()> {
    match command {
        BackupCommand::List { project, list } => {
            let page = ctx.client.list_all(&["volume-backups"], &[("project", &project.project)], list.cap())?;
            ctx.show(&page, render_list)
        }
        BackupCommand::Create(a) => {
            let body =
                BackupCreate { name: a.name.clone(), description: a.description.clone(), volume: a.volume.clone() };
            let query = [("project", a.project.project.as_str())];
            let created = ctx.client.post(&["volume-backups"], &query, Some(&body))?;
            ctx.show(&created, render_view)
        }
        BackupCommand::View(r) => {
            let found = ctx.client.get(&["volume-backups", &r.backup], &[("project", &r.project.project)])?;
            ctx.show(&found, render_view)
        }
        BackupCommand::Delete(r) => {
            ctx.client.delete(&["volume-backups", &r.backup], &[("project", &r.project.project)])?;
            ctx.done(&format!("deleted backup {}", r.backup));
            Ok(())
        }
    }
}

fn render_list(page: &Value) -> Result<String> {
    let now = Utc::now();
    let mut table = list_table(&["NAME", "VOLUME", "KIND", "SIZE", "STORED", "AGE"]);
    for b in output::items::<BackupView>(page)? {
        table.add_row(vec![
            b.name,
            b.volume,
            b.kind,
            format!("{} GiB", b.size_gib),
            bytes(b.bytes_stored),
            age(b.time_created, now),
        ]);
    }
    Ok(output::render(&table))
}

pub fn render_view(value: &Value) -> Result<String> {
    let b: BackupView = output::view(value)?;
    let now = Utc::now();
    let rows = vec![
        ("NAME", b.name),
        ("ID", b.id.to_string()),
        ("PROJECT", b.project),
        ("DESCRIPTION", or_dash(Some(&b.description))),
        ("VOLUME", b.volume),
        ("KIND", b.kind),
        ("SIZE", format!("{} GiB", b.size_gib)),
        ("CHUNKS", format!("{} × 1 MiB", b.chunks)),
        ("STORED", bytes(b.bytes_stored)),
        ("CREATED", time_with_age(b.time_created, now)),
    ];
    Ok(output::render(&view_table(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_shows_kind_and_what_was_stored() {
        let page = json!({"items": [{
            "id": "0190b2a4-0000-7000-8000-00000000000b", "name": "b2", "description": "",
            "time_created": "2024-05-01T10:00:00Z", "time_modified": "2024-05-01T10:00:00Z",
            "project": "demo", "volume": "data", "size_gib": 1, "kind": "incremental",
            "chunks": 3, "bytes_stored": 1048576
        }]});
        let text = render_list(&page).expect("render");
        let row: Vec<&str> = text.lines().nth(1).expect("row").split_whitespace().collect();
        assert_eq!(&row[..3], ["b2", "data", "incremental"]);
    }
}
