//! Instance metrics: the time series the monitoring task keeps (see [`crate::background::monitoring`]).
//!
//! [`query`] is the one entry point (the API handler and the dashboard's charts call it). It
//! authorises like `instance_view` (project readers; 404 for non-members), then reads one metric
//! at the finest resolution that still holds the whole window:
//!
//! | window                                    | resolution                    |
//! |-------------------------------------------|-------------------------------|
//! | ≤ 1 hour and starting within the last hour | raw (the sampling interval)   |
//! | ≤ 1 day and starting within the last day   | 1 minute                      |
//!
//! (each bound with a minute of slack for client clocks and rounding)
//! | anything else                             | 1 hour (kept 30 days)         |

use super::read;
use crate::context::{Access, OpContext};
use crate::error::{ApiError, ApiResult};
use crate::App;
use chrono::{DateTime, TimeDelta, Utc};
use kumo_store::metrics::Resolution;
use kumo_types::metrics::{metric_unit, METRICS};
use kumo_types::{MetricPoint, MetricSeries};

/// Longest window a query may span.
pub const MAX_WINDOW: TimeDelta = TimeDelta::days(31);

/// Picks the resolution for the window `from..to` at time `now`.
pub fn resolution_for(from: DateTime<Utc>, to: DateTime<Utc>, now: DateTime<Utc>) -> Resolution {
    let window = to - from;
    // A minute of slack: "the last hour" computed on a client whose clock or rounding differs
    // slightly still gets raw samples.
    let slack = TimeDelta::minutes(1);
    for res in [Resolution::Raw, Resolution::Minute] {
        if window <= res.retention() + slack && from >= now - res.retention() - slack {
            return res;
        }
    }
    Resolution::Hour
}

/// One metric of an instance over `from..to` (defaults: the last hour until now).
pub async fn query(
    app: &App,
    ctx: &OpContext,
    project: Option<&str>,
    instance: &str,
    metric: &str,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> ApiResult<MetricSeries> {
    let unit = metric_unit(metric).ok_or_else(|| {
        let known: Vec<&str> = METRICS.iter().map(|(m, _)| *m).collect();
        ApiError::invalid(format!("unknown metric '{metric}': use one of {}", known.join(", ")))
    })?;
    let now = kumo_store::now();
    let to = to.unwrap_or(now);
    let from = from.unwrap_or(to - TimeDelta::hours(1));
    if from >= to {
        return Err(ApiError::invalid(format!("'from' ({from}) must be before 'to' ({to})")));
    }
    if to - from > MAX_WINDOW {
        return Err(ApiError::invalid(format!(
            "the window from {from} to {to} is longer than {} days; ask for a shorter one",
            MAX_WINDOW.num_days()
        )));
    }
    let mut conn = read(app).await?;
    let rec = super::instances::get(&mut conn, ctx, project, instance, Access::Read).await?;
    let res = resolution_for(from, to, now);
    let points = kumo_store::metrics::series(&mut conn, rec.view.id, res, metric, from, to)
        .await?
        .into_iter()
        .map(|(time, value)| MetricPoint { time, value })
        .collect();
    let resolution_seconds = match res.interval() {
        Some(i) => i.num_seconds(),
        None => app.config.metrics_interval.as_secs().max(1) as i64,
    };
    Ok(MetricSeries { metric: metric.to_string(), unit: unit.to_string(), resolution_seconds, points })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_finest_resolution_that_holds_the_window() {
        let now = DateTime::parse_from_rfc3339("2026-11-27T12:00:00Z").unwrap().with_timezone(&Utc);
        let h = TimeDelta::hours;
        assert_eq!(resolution_for(now - h(1), now, now), Resolution::Raw);
        assert_eq!(resolution_for(now - TimeDelta::minutes(10), now, now), Resolution::Raw);
        // An hour's window that starts beyond raw retention.
        assert_eq!(resolution_for(now - h(3), now - h(2), now), Resolution::Minute);
        assert_eq!(resolution_for(now - h(1) - TimeDelta::seconds(5), now, now), Resolution::Raw);
        assert_eq!(resolution_for(now - h(2), now, now), Resolution::Minute);
        assert_eq!(resolution_for(now - h(24), now, now), Resolution::Minute);
        assert_eq!(resolution_for(now - h(25), now, now), Resolution::Hour);
        assert_eq!(resolution_for(now - h(24 * 7), now, now), Resolution::Hour);
    }
}
