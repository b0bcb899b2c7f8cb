//! Operator telemetry: the Prometheus endpoint `GET /metrics`.
//!
//! Served outside `/v1` but behind the same bearer-token authentication, for operators only; not
//! part of the OpenAPI document (it is not JSON and not part of the tenant API). The metrics are
//! kept and encoded with the `prometheus-client` crate, whose output is OpenMetrics; it is served
//! in the classic Prometheus text format 0.0.4 instead (see [`to_prometheus_text`]), which every
//! Prometheus and Debian 12's `promtool check metrics` read. What it exposes:
//!
//! - `kumo_http_requests_total{operation,status}` and `kumo_http_request_duration_seconds{…}`:
//!   every API request, counted and timed by [`track`] (a middleware around the whole router);
//!   `operation` is the OpenAPI operation id (`other` for unknown paths, `metrics` for this one);
//! - `kumo_reconciler_runs_total`, `…_changes_total`, `…_errors_total{reconciler}` and
//!   `kumo_reconciler_last_pass_duration_seconds{reconciler}`: every background task (see
//!   [`crate::background`]);
//! - `kumo_quarantined_total{kind}`, `kumo_quarantine_purged_total`: leaks and orphans moved aside
//!   and deleted after the grace period (see `kumo_agent::storage::quarantine`);
//! - `kumo_host_capacity`, `kumo_host_used`, `kumo_host_limit{host,resource}` (vcpus,
//!   memory_mib, disk_gib, gpus);
//! - per-instance latest metrics from the monitoring task, labelled `project` and `instance`:
//!   `kumo_instance_cpu_ratio` (1 = one host CPU), `kumo_instance_memory_bytes`,
//!   `kumo_instance_memory_configured_bytes`, `kumo_instance_{disk_read,disk_write,net_rx,net_tx}_bytes_per_second`.

use crate::http::audit::Operations;
use crate::App;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

type Labels = Vec<(String, String)>;
type FloatGauge = Gauge<f64, AtomicU64>;

fn latency_histogram() -> Histogram {
    // 0.5 ms … ~8 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 15))
}

/// Request counters and latency histograms (kept for the life of the process).
pub struct Telemetry {
    requests: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, fn() -> Histogram>,
}

impl Default for Telemetry {
    fn default() -> Telemetry {
        Telemetry {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
        }
    }
}

impl Telemetry {
    /// Counts and times one request.
    pub fn observe(&self, operation: &str, status: u16, seconds: f64) {
        let labels = vec![("operation".to_string(), operation.to_string()), ("status".to_string(), status.to_string())];
        self.requests.get_or_create(&labels).inc();
        self.latency.get_or_create(&labels).observe(seconds);
    }
}

/// Middleware: counts and times every request by operation id and status.
pub async fn track(State((app, ops)): State<(Arc<App>, Arc<Operations>)>, req: Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().as_str().to_string();
    let operation = match req.extensions().get::<MatchedPath>() {
        Some(m) if m.as_str() == "/metrics" => "metrics".to_string(),
        Some(m) => ops.get(&method, m.as_str()).unwrap_or("other").to_string(),
        None => "other".to_string(),
    };
    let resp = next.run(req).await;
    app.telemetry.observe(&operation, resp.status().as_u16(), started.elapsed().as_secs_f64());
    resp
}

fn gauge_family() -> Family<Labels, FloatGauge> {
    Family::default()
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Renders the whole exposition.
pub async fn render(app: &App) -> anyhow::Result<String> {
    let mut reg = Registry::default();
    reg.register("kumo_http_requests", "API requests by operation id and HTTP status", app.telemetry.requests.clone());
    reg.register(
        "kumo_http_request_duration_seconds",
        "API request latency (until the response head) by operation id and HTTP status",
        app.telemetry.latency.clone(),
    );

    let runs = Family::<Labels, Counter>::default();
    let changes = Family::<Labels, Counter>::default();
    let errors = Family::<Labels, Counter>::default();
    let durations = gauge_family();
    for s in crate::background::all(app).iter().map(|h| h.status()) {
        let l = labels(&[("reconciler", &s.name)]);
        runs.get_or_create(&l).inc_by(s.passes);
        changes.get_or_create(&l).inc_by(s.changes);
        errors.get_or_create(&l).inc_by(s.errors);
        if let Some(d) = s.last_duration_seconds {
            durations.get_or_create(&l).set(d);
        }
    }
    reg.register("kumo_reconciler_runs", "Passes of each background reconciler since kumod started", runs);
    reg.register("kumo_reconciler_changes", "Changes made by each reconciler since kumod started", changes);
    reg.register("kumo_reconciler_errors", "Failed passes and steps of each reconciler since kumod started", errors);
    reg.register(
        "kumo_reconciler_last_pass_duration_seconds",
        "How long the last finished pass of each reconciler took",
        durations,
    );

    // Quarantine (leak collection and the orphan sweep): what was moved aside, and deleted later.
    let quarantined = Family::<Labels, Counter>::default();
    for (kind, n) in app.quarantine.moved() {
        quarantined.get_or_create(&labels(&[("kind", &kind)])).inc_by(n);
    }
    reg.register(
        "kumo_quarantined",
        "Leaks and orphans moved into DATA_DIR/quarantine since kumod started, by kind",
        quarantined,
    );
    let purged = Counter::<u64>::default();
    purged.inc_by(app.quarantine.purged());
    reg.register("kumo_quarantine_purged", "Quarantine entries deleted after their grace period", purged);

    let hosts = {
        let mut conn = app.store.read().await?;
        kumo_store::hosts::all(&mut conn).await?
    };
    let (capacity, used, limit) = (gauge_family(), gauge_family(), gauge_family());
    for h in &hosts {
        for (resource, t, u, lim) in [
            ("vcpus", h.vcpus_total, h.vcpus_used, h.vcpus_limit),
            ("memory_mib", h.memory_mib_total, h.memory_mib_used, h.memory_mib_limit),
            ("disk_gib", h.disk_gib_total, h.disk_gib_used, h.disk_gib_limit),
            ("gpus", h.gpus_total, h.gpus_used, h.gpus_total),
        ] {
            let l = labels(&[("host", &h.name), ("resource", resource)]);
            capacity.get_or_create(&l).set(t as f64);
            used.get_or_create(&l).set(u as f64);
            limit.get_or_create(&l).set(lim as f64);
        }
    }
    reg.register("kumo_host_capacity", "Physical capacity of each host, per resource", capacity);
    reg.register("kumo_host_used", "Capacity reserved by instances on each host, per resource", used);
    reg.register("kumo_host_limit", "Reservable capacity of each host (physical x overcommit), per resource", limit);

    let cpu = gauge_family();
    let mem = gauge_family();
    let mem_conf = gauge_family();
    let rates = [gauge_family(), gauge_family(), gauge_family(), gauge_family()];
    for m in app.instance_metrics.latest() {
        let l = labels(&[("project", &m.project), ("instance", &m.instance)]);
        cpu.get_or_create(&l).set(m.values[0] / 100.0);
        mem.get_or_create(&l).set(m.values[1]);
        mem_conf.get_or_create(&l).set(m.memory_configured_bytes as f64);
        for (family, v) in rates.iter().zip(&m.values[2..]) {
            family.get_or_create(&l).set(*v);
        }
    }
    reg.register("kumo_instance_cpu_ratio", "CPU used by the instance's hypervisor process (1 = one host CPU)", cpu);
    reg.register("kumo_instance_memory_bytes", "Resident memory of the instance's hypervisor process", mem);
    reg.register("kumo_instance_memory_configured_bytes", "Memory configured for the guest", mem_conf);
    let [rd, wr, rx, tx] = rates;
    reg.register("kumo_instance_disk_read_bytes_per_second", "Bytes per second the guest reads from its disks", rd);
    reg.register("kumo_instance_disk_write_bytes_per_second", "Bytes per second the guest writes to its disks", wr);
    reg.register(
        "kumo_instance_net_rx_bytes_per_second",
        "Bytes per second the guest receives (0: instances have no NICs yet)",
        rx,
    );
    reg.register(
        "kumo_instance_net_tx_bytes_per_second",
        "Bytes per second the guest sends (0: instances have no NICs yet)",
        tx,
    );

    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &reg)?;
    Ok(to_prometheus_text(&out))
}

/// OpenMetrics text → Prometheus text format 0.0.4. They differ, for what we emit, only in that
/// OpenMetrics names a counter family without its `_total` suffix (`# TYPE x counter` with
/// samples `x_total`), which the classic parser (and `promtool`) reads as an untyped metric
/// without help; and in the `# EOF` trailer.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len() + 64);
    for line in openmetrics.lines() {
        if line == "# EOF" {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].iter().find_map(|p| line.strip_prefix(p).map(|rest| (*p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_get_their_total_suffix_in_metadata_and_eof_goes() {
        let om = "# HELP a_b Reqs.\n# TYPE a_b counter\na_b_total{x=\"1\"} 2\n# HELP g A gauge.\n# TYPE g gauge\ng 1.5\n# EOF\n";
        assert_eq!(
            to_prometheus_text(om),
            "# HELP a_b_total Reqs.\n# TYPE a_b_total counter\na_b_total{x=\"1\"} 2\n# HELP g A gauge.\n# TYPE g gauge\ng 1.5\n"
        );
    }
}
