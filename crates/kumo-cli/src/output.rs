//! How results are shown: `--output json` prints what the API returned, pretty-printed;
//! `--output table` (the default) prints a plain, grep-friendly table built with comfy-table.
//! Lists use one row per item; `view` commands use a two-column FIELD/VALUE table.

use crate::json::Json;
use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use comfy_table::{presets, ContentArrangement, Table};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::io::Write;

/// The `--output` choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable table.
    Table,
    /// The API's JSON, pretty-printed.
    Json,
}

/// Pretty-prints a JSON value on stdout.
pub fn print_json(value: &Json) -> Result<()> {
    let text = value.to_pretty().context("formatting JSON output")?;
    emit(&text)
}

/// Writes a line to stdout. A closed pipe (`kumo … | head`) ends output quietly instead of
/// panicking as `println!` would.
pub fn emit(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}").and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e).context("writing to stdout"),
        _ => Ok(()),
    }
}

/// Renders a table as text without trailing spaces, so output diffs and greps cleanly.
pub fn render(table: &Table) -> String {
    table.lines().map(|line| line.trim_end().to_string()).collect::<Vec<_>>().join("\n")
}

/// A borderless table with the given column headers.
pub fn list_table(headers: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(headers.to_vec());
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// A two-column FIELD/VALUE table for one resource.
pub fn view_table(rows: Vec<(&str, String)>) -> Table {
    let mut table = Table::new();
    table.load_preset(presets::NOTHING);
    // Wrap long values to the terminal, but only when its width is known and sensible: a pty
    // reporting 0 columns would otherwise get one character per line.
    if table.width().is_some_and(|w| w >= 40) {
        table.set_content_arrangement(ContentArrangement::Dynamic);
    }
    for (field, value) in rows {
        table.add_row(vec![field.to_string(), value]);
    }
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// Decodes the `items` of a (merged) results page into typed views.
pub fn items<T: DeserializeOwned>(page: &Value) -> Result<Vec<T>> {
    let items = page.get("items").cloned().unwrap_or(Value::Array(Vec::new()));
    serde_json::from_value(items).context("the API returned list items this client does not understand")
}

/// Decodes one view returned by the API.
pub fn view<T: DeserializeOwned>(value: &Value) -> Result<T> {
    serde_json::from_value(value.clone()).context("the API returned a view this client does not understand")
}

/// "-" for absent or empty values, so columns never look shifted.
pub fn or_dash(value: Option<&str>) -> String {
    match value {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => "-".to_string(),
    }
}

/// Time since `t`, kubectl style: 42s, 5m, 3h, 12d.
pub fn age(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let secs = (now - t).num_seconds().max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 2 * 3600 => format!("{}m", s / 60),
        s if s < 2 * 86400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86400),
    }
}

/// A timestamp with its age: `2024-05-01T10:00:00Z (3h ago)`.
pub fn time_with_age(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    format!("{} ({} ago)", timestamp(t), age(t, now))
}

/// RFC 3339 UTC to the second.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Bytes in the largest binary unit that keeps the number readable.
pub fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn ages_read_like_kubectl() {
        let now = Utc.with_ymd_and_hms(2024, 5, 1, 12, 0, 0).single().expect("valid time");
        let ago = |s: i64| age(now - chrono::Duration::seconds(s), now);
        assert_eq!(ago(5), "5s");
        assert_eq!(ago(600), "10m");
        assert_eq!(ago(3 * 3600), "3h");
        assert_eq!(ago(5 * 86400), "5d");
        // Clock skew never shows a negative age.
        assert_eq!(ago(-30), "0s");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(10 * 1024 * 1024 * 1024), "10.0 GiB");
        assert_eq!(bytes(1536 * 1024), "1.5 MiB");
    }

    #[test]
    fn tables_have_no_trailing_spaces() {
        let mut table = list_table(&["NAME", "STATE"]);
        table.add_row(vec!["web1", "running"]);
        table.add_row(vec!["database-primary", "-"]);
        let text = render(&table);
        assert!(text.lines().all(|l| l == l.trim_end()), "{text:?}");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("NAME"));
        // Columns line up: STATE starts where "running" does.
        assert_eq!(lines[0].find("STATE"), lines[1].find("running"));
    }

    #[test]
    fn or_dash_fills_blanks() {
        assert_eq!(or_dash(None), "-");
        assert_eq!(or_dash(Some("")), "-");
        assert_eq!(or_dash(Some("h1")), "h1");
    }
}
