//! `kumo instance metrics`: one metric of an instance over time, as a table of time and value.

use crate::cli::ProjectArg;
use crate::output::{self, list_table, timestamp};
use crate::Ctx;
use anyhow::{bail, Result};
use chrono::{SecondsFormat, TimeDelta, Utc};
use clap::Args;
use kumo_types::MetricSeries;
use serde_json::Value;

#[derive(Debug, Args)]
pub struct MetricsArgs {
    /// Instance name or id
    pub instance: String,
    #[command(flatten)]
    pub project: ProjectArg,
    /// cpu (percent of one host CPU), memory (bytes), disk_read, disk_write, net_rx, net_tx (bytes/s)
    #[arg(long, default_value = "cpu")]
    pub metric: String,
    /// How far back: e.g. 90s, 30m, 1h, 7d (the resolution follows: raw up to 1h, 1-minute up to 1d, else 1-hour)
    #[arg(long, default_value = "1h", value_parser = parse_since)]
    pub since: TimeDelta,
}

/// Parses `90s`, `30m`, `1h`, `7d`.
pub fn parse_since(s: &str) -> Result<TimeDelta, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: i64 = n.parse().map_err(|_| format!("'{s}' is not a duration such as 90s, 30m, 1h or 7d"))?;
    let d = match unit {
        "s" => TimeDelta::try_seconds(n),
        "m" => TimeDelta::try_minutes(n),
        "h" | "" => TimeDelta::try_hours(n),
        "d" => TimeDelta::try_days(n),
        _ => None,
    };
    match d {
        Some(d) if n > 0 => Ok(d),
        _ => Err(format!("'{s}' is not a duration such as 90s, 30m, 1h or 7d")),
    }
}

pub fn run(ctx: &Ctx, a: &MetricsArgs) -> Result<()> {
    if a.metric.is_empty() {
        bail!("--metric must not be empty");
    }
    let from = (Utc::now() - a.since).to_rfc3339_opts(SecondsFormat::Secs, true);
    let query = [("project", a.project.project.as_str()), ("metric", a.metric.as_str()), ("from", from.as_str())];
    let series = ctx.client.get(&["instances", &a.instance, "metrics"], &query)?;
    ctx.show(&series, render)
}

fn value_text(unit: &str, v: f64) -> String {
    match unit {
        "percent" => format!("{v:.1} %"),
        "bytes" => output::bytes(v as i64),
        "bytes_per_second" => format!("{}/s", output::bytes(v as i64)),
        _ => format!("{v}"),
    }
}

fn render(v: &Value) -> Result<String> {
    let s: MetricSeries = serde_json::from_value(v.clone())?;
    if s.points.is_empty() {
        return Ok(format!(
            "no {} data in that window yet (the instance is sampled every few seconds while it runs)",
            s.metric
        ));
    }
    let mut table = list_table(&["TIME", &s.metric.to_uppercase()]);
    for p in &s.points {
        table.add_row(vec![timestamp(p.time), value_text(&s.unit, p.value)]);
    }
    Ok(format!("{}\n({} s resolution)", output::render(&table), s.resolution_seconds))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn since_durations() {
        assert_eq!(parse_since("90s"), Ok(TimeDelta::seconds(90)));
        assert_eq!(parse_since("1h"), Ok(TimeDelta::hours(1)));
        assert_eq!(parse_since("7d"), Ok(TimeDelta::days(7)));
        assert!(parse_since("0m").is_err());
        assert!(parse_since("soon").is_err());
        assert!(parse_since("5y").is_err());
    }

    #[test]
    fn renders_points_with_units() {
        let v = json!({"metric": "cpu", "unit": "percent", "resolution_seconds": 5,
            "points": [{"time": "2026-11-27T12:00:05Z", "value": 42.25}]});
        let text = render(&v).expect("render");
        assert!(text.contains("2026-11-27T12:00:05Z") && text.contains("42.2 %"), "{text}");
        assert!(text.contains("5 s resolution"), "{text}");
        let empty = json!({"metric": "cpu", "unit": "percent", "resolution_seconds": 5, "points": []});
        assert!(render(&empty).expect("render").starts_with("no cpu data"));
    }
}
