//! Per-instance metrics: the time series `GET /v1/instances/{instance}/metrics` returns.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// The metrics Kumo keeps per instance, with their unit. `cpu` is the percentage of one host CPU
/// the instance's hypervisor process used (100 = one full core; a 2-vCPU guest can reach 200);
/// `memory` is the resident memory of the hypervisor process; disk and network are rates.
pub const METRICS: [(&str, &str); 6] = [
    ("cpu", "percent"),
    ("memory", "bytes"),
    ("disk_read", "bytes_per_second"),
    ("disk_write", "bytes_per_second"),
    ("net_rx", "bytes_per_second"),
    ("net_tx", "bytes_per_second"),
];

/// The unit of a metric, or None when Kumo does not keep that metric.
pub fn metric_unit(metric: &str) -> Option<&'static str> {
    METRICS.iter().find(|(m, _)| *m == metric).map(|(_, u)| *u)
}

/// One point of a series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricPoint {
    /// Start of the interval the value covers (the sample time at raw resolution).
    pub time: chrono::DateTime<chrono::Utc>,
    /// The value: the sample at raw resolution, the mean over the interval otherwise.
    pub value: f64,
}

/// A time series of one metric of one instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct MetricSeries {
    /// `cpu`, `memory`, `disk_read`, `disk_write`, `net_rx` or `net_tx`.
    pub metric: String,
    /// `percent` (cpu), `bytes` (memory) or `bytes_per_second` (disk, network).
    pub unit: String,
    /// Seconds between points: the sampling interval (raw, kept 1 hour), 60 (kept 1 day) or
    /// 3600 (kept 30 days), chosen from the requested window.
    pub resolution_seconds: i64,
    /// Points in time order.
    pub points: Vec<MetricPoint>,
}
