//! `kumo reconciler …`: the control plane's background reconcilers (operators).

use crate::output::{self, list_table};
use crate::Ctx;
use anyhow::Result;
use clap::Subcommand;
use serde_json::Value;

#[derive(Debug, Subcommand)]
pub enum ReconcilerCommand {
    /// Show each reconciler's last pass and how long it took, changes, leaks collected, what it quarantined, errors
    /// and whether it runs on the controller asked (only the holder of the background lease runs most)
    List,
}

pub fn run(ctx: &Ctx, command: &ReconcilerCommand) -> Result<()> {
    match command {
        ReconcilerCommand::List => {
            let found = ctx.client.get(&["system", "reconcilers"], &[])?;
            ctx.show(&found, render_list)
        }
    }
}

fn render_list(value: &Value) -> Result<String> {
    let mut table = list_table(&[
        "NAME",
        "LAST PASS",
        "TOOK",
        "PASSES",
        "CHANGES",
        "LEAKS",
        "QUARANTINED",
        "ERRORS",
        "IN FLIGHT",
        "HERE",
        "LAST ERROR",
    ]);
    for r in value.as_array().map(Vec::as_slice).unwrap_or(&[]) {
        let s = |k: &str| match &r[k] {
            Value::Null => "-".to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        table.add_row(vec![
            s("name"),
            s("last_pass"),
            r["last_duration_seconds"].as_f64().map_or("-".to_string(), |d| format!("{d:.3}s")),
            s("passes"),
            s("changes"),
            s("leaks_collected"),
            s("quarantined"),
            s("errors"),
            s("in_flight"),
            if r["runs_here"] == Value::Bool(true) { "yes" } else { "no" }.to_string(),
            s("last_error"),
        ]);
    }
    Ok(output::render(&table))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_status_rows() {
        let v = serde_json::json!([{"name":"instances","last_pass":"2026-11-27T00:00:00Z","last_duration_seconds":0.0042,"passes":3,"changes":2,
            "leaks_collected":1,"errors":0,"in_flight":0,"last_error":null}]);
        let out = render_list(&v).unwrap();
        assert!(out.contains("instances") && out.contains("LEAKS") && out.contains("QUARANTINED"), "{out}");
        assert!(out.contains("0.004s"), "{out}");
    }
}
