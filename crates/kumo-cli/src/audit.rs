//! `kumo audit-log`: who changed what, when, and how it ended (operators; owners for their project).

use crate::cli::ListArgs;
use crate::output::{self, list_table, timestamp};
use crate::Ctx;
use anyhow::Result;
use clap::Args;
use kumo_types::AuditEntryView;
use serde_json::Value;

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Only entries since this time: RFC 3339 or a duration back from now (30m, 1h, 7d)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only entries before this time (same forms as --since)
    #[arg(long, value_name = "TIME")]
    pub until: Option<String>,
    /// Only requests of this user
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Only requests about this project
    #[arg(long, value_name = "PROJECT")]
    pub project: Option<String>,
    /// Only this operation, e.g. instance_create
    #[arg(long, value_name = "OPERATION")]
    pub operation: Option<String>,
    #[command(flatten)]
    pub list: ListArgs,
}

impl AuditArgs {
    pub fn query(&self) -> Vec<(&str, &str)> {
        let pairs = [
            ("since", &self.since),
            ("until", &self.until),
            ("user", &self.user),
            ("project", &self.project),
            ("operation", &self.operation),
        ];
        pairs.into_iter().filter_map(|(k, v)| v.as_deref().map(|v| (k, v))).collect()
    }
}

pub fn run(ctx: &Ctx, args: &AuditArgs) -> Result<()> {
    let page = ctx.client.list_all(&["system", "audit-log"], &args.query(), args.list.cap())?;
    ctx.show(&page, render_list)
}

fn render_list(page: &Value) -> Result<String> {
    let mut table = list_table(&["TIME", "ACTOR", "SOURCE", "OPERATION", "PATH", "STATUS", "RESULT", "REQUEST"]);
    for e in output::items::<AuditEntryView>(page)? {
        table.add_row(vec![
            timestamp(e.time),
            e.actor,
            e.source_address,
            e.operation,
            format!("{} {}", e.method, e.path),
            e.status.to_string(),
            e.result,
            e.request_id,
        ]);
    }
    Ok(output::render(&table))
}
