//! `kumo event list`: every state change of a project's resources, oldest first.

use crate::cli::{ListArgs, ProjectArg};
use crate::output::{self, list_table, timestamp};
use crate::Ctx;
use anyhow::Result;
use clap::Subcommand;
use kumo_types::EventView;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum EventCommand {
    /// List a project's events, oldest first
    List {
        #[command(flatten)]
        project: ProjectArg,
        /// Only the events of this instance
        #[arg(long, value_name = "NAME")]
        instance: Option<String>,
        #[command(flatten)]
        list: ListArgs,
    },
    /// Follow a project's events live as they happen (server-sent events), until Ctrl-C
    Watch {
        #[command(flatten)]
        project: ProjectArg,
    },
}

pub fn run(ctx: &Ctx, command: &EventCommand) -> Result<()> {
    match command {
        EventCommand::List { project, instance, list } => {
            let mut query = vec![("project", project.project.as_str())];
            if let Some(name) = instance {
                query.push(("instance", name.as_str()));
            }
            let page = ctx.client.list_all(&["events"], &query, list.cap())?;
            ctx.show(&page, render_list)
        }
        EventCommand::Watch { project } => {
            let response = ctx.client.get_stream(&["events", "stream"], &[("project", project.project.as_str())])?;
            let json = matches!(ctx.output, crate::output::OutputFormat::Json);
            let mut event = String::new();
            for line in std::io::BufRead::lines(std::io::BufReader::new(response)) {
                let line = line?;
                // Server-sent events: `event: <kind>` then `data: <EventView JSON>`; keep-alives skipped.
                if let Some(kind) = line.strip_prefix("event:") {
                    event = kind.trim().to_string();
                    continue;
                }
                let Some(data) = line.strip_prefix("data:") else { continue };
                // The server ends the stream once the token or the membership is withdrawn.
                if event == "revoked" {
                    anyhow::bail!("the event stream ended: {}", data.trim());
                }
                let Ok(e) = serde_json::from_str::<EventView>(data.trim()) else { continue };
                if json {
                    println!("{}", data.trim());
                } else {
                    println!("{}", watch_line(&e));
                }
            }
            Ok(())
        }
    }
}

/// One event as a line of `kumo event watch`.
fn watch_line(e: &EventView) -> String {
    format!(
        "{}  {}/{}  {}  {}  {}",
        timestamp(e.time_created),
        e.resource_type,
        e.resource_name,
        e.kind,
        change(e),
        e.cause
    )
}

fn change(e: &EventView) -> String {
    match (&e.from_state, &e.to_state) {
        (Some(from), Some(to)) => format!("{from} -> {to}"),
        (None, Some(to)) => format!("-> {to}"),
        (Some(from), None) => format!("{from} ->"),
        (None, None) => "-".to_string(),
    }
}

fn render_list(page: &Value) -> Result<String> {
    let mut table = list_table(&["TIME", "RESOURCE", "EVENT", "CHANGE", "CAUSE"]);
    for e in output::items::<EventView>(page)? {
        let change = change(&e);
        table.add_row(vec![
            timestamp(e.time_created),
            format!("{}/{}", e.resource_type, e.resource_name),
            e.kind,
            change,
            e.cause,
        ]);
    }
    Ok(output::render(&table))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn renders_state_changes() {
        let page = json!({"items": [{
            "id": "0190b2a4-0000-7000-8000-000000000005", "time_created": "2024-05-01T10:00:00.123Z",
            "project": "demo", "resource_type": "instance",
            "resource_id": "0190b2a4-0000-7000-8000-000000000004", "resource_name": "web1",
            "kind": "state_changed", "from_state": "starting", "to_state": "running",
            "cause": "reconciler: guest booted"
        }], "next_page": null});
        let text = render_list(&page).expect("render");
        let row = text.lines().nth(1).expect("row");
        for cell in ["2024-05-01T10:00:00Z", "instance/web1", "state_changed", "starting -> running", "guest booted"] {
            assert!(row.contains(cell), "{row}");
        }
    }
}
