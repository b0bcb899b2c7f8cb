//! `kumo project …`: projects, the unit of tenancy.

use crate::cli::{parse_name, ListArgs};
use crate::output::{self, age, list_table, or_dash, time_with_age, view_table};
use crate::Ctx;
use anyhow::Result;
use chrono::Utc;
use clap::{Args, Subcommand};
use kumo_types::{Name, ProjectCreate, ProjectView};
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum ProjectCommand {
    /// List projects
    List(ListArgs),
    /// Create a project
    Create(ProjectCreateArgs),
    /// Show one project
    View {
        /// Project name or id
        project: String,
    },
    /// Delete a project (it must be empty)
    Delete {
        /// Project name or id
        project: String,
    },
    /// Project members and their roles
    #[command(subcommand)]
    Member(crate::members::MemberCommand),
}

#[derive(Debug, Args)]
pub struct ProjectCreateArgs {
    /// Name of the new project
    #[arg(value_parser = parse_name)]
    pub name: Name,
    /// Free-form description
    #[arg(long, default_value = "")]
    pub description: String,
}

pub fn run(ctx: &Ctx, command: &ProjectCommand) -> Result<()> {
    match command {
        ProjectCommand::List(list) => {
            let page = ctx.client.list_all(&["projects"], &[], list.cap())?;
            ctx.show(&page, render_list)
        }
        ProjectCommand::Create(args) => {
            let body = ProjectCreate { name: args.name.clone(), description: args.description.clone() };
            let created = ctx.client.post(&["projects"], &[], Some(&body))?;
            ctx.show(&created, render_view)
        }
        ProjectCommand::View { project } => {
            let found = ctx.client.get(&["projects", project], &[])?;
            ctx.show(&found, render_view)
        }
        ProjectCommand::Delete { project } => {
            ctx.client.delete(&["projects", project], &[])?;
            ctx.done(&format!("deleted project {project}"));
            Ok(())
        }
        ProjectCommand::Member(c) => crate::members::run(ctx, c),
    }
}

fn render_list(page: &Value) -> Result<String> {
    let now = Utc::now();
    let mut table = list_table(&["NAME", "DESCRIPTION", "AGE"]);
    for p in output::items::<ProjectView>(page)? {
        table.add_row(vec![p.name, or_dash(Some(&p.description)), age(p.time_created, now)]);
    }
    Ok(output::render(&table))
}

fn render_view(value: &Value) -> Result<String> {
    let p: ProjectView = output::view(value)?;
    let now = Utc::now();
    let table = view_table(vec![
        ("NAME", p.name),
        ("ID", p.id.to_string()),
        ("DESCRIPTION", or_dash(Some(&p.description))),
        ("CREATED", time_with_age(p.time_created, now)),
        ("MODIFIED", time_with_age(p.time_modified, now)),
    ]);
    Ok(output::render(&table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_a_project_list() {
        let page = json!({"items": [{
            "id": "0190b2a4-0000-7000-8000-000000000001", "name": "demo", "description": "",
            "time_created": "2024-05-01T10:00:00Z", "time_modified": "2024-05-01T10:00:00Z"
        }], "next_page": null});
        let text = render_list(&page).expect("render");
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME") && lines[0].contains("AGE"));
        assert!(lines[1].starts_with("demo") && lines[1].contains('-'));
    }
}
