//! `kumo placement-group …`: how a project's instances are placed relative to each other.

use crate::cli::{parse_name, ProjectArg};
use crate::network::{ProjectList, Ref};
use crate::output::{self, list_table, or_dash, time_with_age, view_table};
use crate::Ctx;
use anyhow::Result;
use chrono::Utc;
use clap::{Subcommand, ValueEnum};
use kumo_types::{Name, PlacementGroupCreate, PlacementGroupView, PlacementPolicy};
use serde_json::Value;

/// `--policy`: how the group's instances are placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Policy {
    /// On the hosts with the fewest of its instances first
    Spread,
    /// On the hosts with the most of its instances first
    Pack,
    /// Never two of its instances on one host (refused when no host is left)
    AntiAffinity,
    /// All of its instances on the host(s) of the first one (refused when full)
    Affinity,
}

impl From<Policy> for PlacementPolicy {
    fn from(p: Policy) -> Self {
        match p {
            Policy::Spread => PlacementPolicy::Spread,
            Policy::Pack => PlacementPolicy::Pack,
            Policy::AntiAffinity => PlacementPolicy::AntiAffinity,
            Policy::Affinity => PlacementPolicy::Affinity,
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum PlacementGroupCommand {
    /// List a project's placement groups
    List(ProjectList),
    /// Show one placement group
    View(Ref),
    /// Create a placement group (instances join it with `kumo instance create --placement-group`)
    Create {
        #[arg(value_parser = parse_name)]
        name: Name,
        #[command(flatten)]
        project: ProjectArg,
        /// How its instances are placed
        #[arg(long, value_enum)]
        policy: Policy,
        /// Free-form description
        #[arg(long, default_value = "")]
        description: String,
    },
    /// Delete a placement group (it must have no instances left)
    Delete(Ref),
}

fn q(p: &ProjectArg) -> [(&str, &str); 1] {
    [("project", p.project.as_str())]
}

pub fn run(ctx: &Ctx, c: &PlacementGroupCommand) -> Result<()> {
    match c {
        PlacementGroupCommand::List(a) => {
            ctx.show(&ctx.client.list_all(&["placement-groups"], &q(&a.project), a.list.cap())?, render_list)
        }
        PlacementGroupCommand::View(r) => {
            ctx.show(&ctx.client.get(&["placement-groups", &r.name], &q(&r.project))?, render_view)
        }
        PlacementGroupCommand::Create { name, project, policy, description } => {
            let body =
                PlacementGroupCreate { name: name.clone(), description: description.clone(), policy: (*policy).into() };
            ctx.show(&ctx.client.post(&["placement-groups"], &q(project), Some(&body))?, render_view)
        }
        PlacementGroupCommand::Delete(r) => {
            ctx.client.delete(&["placement-groups", &r.name], &q(&r.project))?;
            ctx.done(&format!("deleted placement group {}", r.name));
            Ok(())
        }
    }
}

fn render_list(page: &Value) -> Result<String> {
    let mut t = list_table(&["NAME", "POLICY", "INSTANCES", "DESCRIPTION"]);
    for g in output::items::<PlacementGroupView>(page)? {
        t.add_row(vec![g.name, g.policy.to_string(), g.instances.to_string(), or_dash(Some(&g.description))]);
    }
    Ok(output::render(&t))
}

fn render_view(value: &Value) -> Result<String> {
    let g: PlacementGroupView = output::view(value)?;
    Ok(output::render(&view_table(vec![
        ("NAME", g.name),
        ("ID", g.id.to_string()),
        ("PROJECT", g.project),
        ("DESCRIPTION", or_dash(Some(&g.description))),
        ("POLICY", g.policy.to_string()),
        ("INSTANCES", g.instances.to_string()),
        ("CREATED", time_with_age(g.time_created, Utc::now())),
    ])))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use serde_json::json;

    #[test]
    fn policies_parse_as_the_api_spells_them() {
        for p in PlacementPolicy::ALL {
            let cli = Policy::from_str(p.as_str(), false).expect("a policy");
            assert_eq!(PlacementPolicy::from(cli), p);
        }
        let parsed = crate::cli::Cli::try_parse_from([
            "kumo",
            "placement-group",
            "create",
            "web",
            "--project",
            "demo",
            "--policy",
            "anti-affinity",
        ])
        .expect("parse");
        assert!(format!("{:?}", parsed.command).contains("AntiAffinity"), "{:?}", parsed.command);
    }

    #[test]
    fn list_and_view_show_policy_and_instances() {
        let g = json!({
            "id": "0190b2a4-0000-7000-8000-000000000009", "name": "web", "description": "",
            "time_created": "2024-05-01T10:00:00Z", "time_modified": "2024-05-01T10:00:00Z",
            "project": "demo", "policy": "anti-affinity", "instances": 3
        });
        let text = render_list(&json!({"items": [g.clone()]})).expect("render");
        let row: Vec<&str> = text.lines().nth(1).expect("a row").split_whitespace().collect();
        assert_eq!(row, ["web", "anti-affinity", "3", "-"]);
        let text = render_view(&g).expect("render");
        assert!(text.lines().any(|l| l.starts_with("POLICY") && l.ends_with("anti-affinity")), "{text}");
    }
}
