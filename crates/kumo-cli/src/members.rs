//! `kumo project member …`: who may do what in a project (owners and operators manage them).

use crate::output::{self, list_table, timestamp};
use crate::Ctx;
use anyhow::Result;
use clap::{Subcommand, ValueEnum};
use kumo_types::{MemberAdd, MemberView, ProjectRole};
use serde_json::Value;

/// A project role, as the CLI takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RoleArg {
    /// Everything in the project, including its members
    Owner,
    /// Create, change and delete the project's resources
    Collaborator,
    /// Read only
    Viewer,
}

impl From<RoleArg> for ProjectRole {
    fn from(r: RoleArg) -> ProjectRole {
        match r {
            RoleArg::Owner => ProjectRole::Owner,
            RoleArg::Collaborator => ProjectRole::Collaborator,
            RoleArg::Viewer => ProjectRole::Viewer,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Add a user to a project, or change their role
    Add {
        /// Project name or id
        project: String,
        /// User name or id
        user: String,
        /// Role in the project
        #[arg(long, value_enum)]
        role: RoleArg,
    },
    /// List a project's members and their roles
    List {
        /// Project name or id
        project: String,
    },
    /// Remove a user from a project
    Remove {
        /// Project name or id
        project: String,
        /// User name or id
        user: String,
    },
}

pub fn run(ctx: &Ctx, command: &MemberCommand) -> Result<()> {
    match command {
        MemberCommand::Add { project, user, role } => {
            let body = MemberAdd { user: user.clone(), role: (*role).into() };
            let added = ctx.client.post(&["projects", project, "members"], &[], Some(&body))?;
            ctx.show(&added, render_one)
        }
        MemberCommand::List { project } => {
            let found = ctx.client.get(&["projects", project, "members"], &[])?;
            ctx.show(&found, render_list)
        }
        MemberCommand::Remove { project, user } => {
            ctx.client.delete(&["projects", project, "members", user], &[])?;
            ctx.done(&format!("removed {user} from project {project}"));
            Ok(())
        }
    }
}

fn table(members: Vec<MemberView>) -> String {
    let mut table = list_table(&["USER", "ROLE", "SINCE"]);
    for m in members {
        table.add_row(vec![m.user, m.role, timestamp(m.time_created)]);
    }
    output::render(&table)
}

fn render_one(value: &Value) -> Result<String> {
    Ok(table(vec![output::view(value)?]))
}

fn render_list(value: &Value) -> Result<String> {
    Ok(table(output::view(value)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_members() {
        let v = serde_json::json!([{"user_id": "0190b2a4-0000-7000-8000-000000000001", "user": "alice", "role": "owner",
            "time_created": "2026-11-01T10:00:00Z"}]);
        let text = render_list(&v).unwrap();
        assert!(text.lines().nth(1).is_some_and(|l| l.starts_with("alice") && l.contains("owner")), "{text}");
    }
}
