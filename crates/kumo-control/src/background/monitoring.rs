//! The monitoring task: per-instance metrics.
//!
//! A small reconciler like [`super::instances`], under the same driver ([`super`]): every
//! `--metrics-interval` (default 5 s) it asks the host agent for the cumulative counters of every
//! running instance ([`kumo_host_api::HostAgent::sample`]), turns two successive samples into rates, and writes one
//! row per instance in **one transaction per round** (`kumo_store::metrics::insert_raw`). The same
//! transaction rolls finished minutes and hours up and prunes what is past retention
//! (`kumo_store::metrics::maintain`: raw 1 hour, 1-minute means 1 day, 1-hour means 30 days).
//!
//! What the values mean (docs/monitoring.md):
//! - `cpu`: percent of one host CPU used by the instance's hypervisor process over the interval
//!   (vCPU threads plus device emulation; 100 = one full core, a 2-vCPU guest can reach 200);
//! - `memory`: resident memory of the hypervisor process, bytes (a gauge, not a rate);
//! - `disk_read`/`disk_write`: bytes per second read/written by the guest on its disks;
//! - `net_rx`/`net_tx`: bytes per second on its NICs (instances have no NICs yet: 0).
//!
//! The first sample of an instance (or the first after its hypervisor process restarted, seen as a
//! counter going down) only primes the rates: its row is written at the next round. The latest
//! values are also kept in memory for the Prometheus endpoint. The task takes no input and is
//! idempotent; its status is at `GET /v1/system/reconcilers` (name `monitoring`).

use super::{Error, Task};
use crate::App;
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use kumo_host_api::InstanceSample;
use kumo_store::metrics::MetricRow;
use kumo_types::{InstanceId, InstanceState};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Agent calls in flight at once during a round (QMP round trips of real guests overlap).
const CONCURRENCY: usize = 16;

/// The latest metrics of one instance (for `/metrics`).
#[derive(Debug, Clone, PartialEq)]
pub struct Latest {
    pub project: String,
    pub instance: String,
    pub time: DateTime<Utc>,
    /// In the order of [`kumo_store::metrics::COLUMNS`].
    pub values: [f64; 6],
    /// The guest's configured memory, bytes.
    pub memory_configured_bytes: u64,
}

/// The monitoring task's memory between rounds (`App::instance_metrics`).
#[derive(Default)]
pub struct Memory {
    /// The previous sample of each running instance and when it was taken.
    previous: Mutex<HashMap<InstanceId, (DateTime<Utc>, InstanceSample)>>,
    latest: Mutex<HashMap<InstanceId, Latest>>,
}

impl Memory {
    /// The latest metrics of every running instance that has them.
    pub fn latest(&self) -> Vec<Latest> {
        let mut v: Vec<Latest> = self.latest.lock().unwrap_or_else(|p| p.into_inner()).values().cloned().collect();
        v.sort_by(|a, b| (&a.project, &a.instance).cmp(&(&b.project, &b.instance)));
        v
    }
}

/// Rates between two samples `secs` seconds apart, in the order of
/// [`kumo_store::metrics::COLUMNS`]. None when a counter went down (the hypervisor process was
/// restarted, so `prev` belongs to another process) or no time passed.
pub fn rates(prev: &InstanceSample, cur: &InstanceSample, secs: f64) -> Option<[f64; 6]> {
    if secs <= 0.0 {
        return None;
    }
    let d = |a: u64, b: u64| b.checked_sub(a).map(|x| x as f64 / secs);
    Some([
        d(prev.cpu_ns, cur.cpu_ns)? / 1e9 * 100.0,
        cur.memory_bytes as f64,
        d(prev.disk_read_bytes, cur.disk_read_bytes)?,
        d(prev.disk_write_bytes, cur.disk_write_bytes)?,
        d(prev.net_rx_bytes, cur.net_rx_bytes)?,
        d(prev.net_tx_bytes, cur.net_tx_bytes)?,
    ])
}

/// The monitoring task (see [`super::spawn`]): one round every `config.metrics_interval`, then
/// the serial logs are kept within their cap.
pub struct Monitoring;

impl Task for Monitoring {
    async fn pass(&mut self, app: &Arc<App>) -> Result<u64, Error> {
        let round = round(app, kumo_store::now()).await;
        trim_serial_logs(app).await;
        Ok(round?.rows as u64)
    }
}

/// Keeps every serial log on every host within its cap (a guest printing without end would fill
/// the disk otherwise).
pub async fn trim_serial_logs(app: &App) -> u64 {
    let mut total = 0;
    for host in app.hosts.reachable() {
        let Some(agent) = app.hosts.get(host) else { continue };
        match agent.trim_serial_logs(app.config.serial_log_max_bytes).await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(%host, bytes = n, "serial logs trimmed");
                }
                total += n;
            }
            Err(e) => tracing::warn!(%host, "trimming serial logs: {e}"),
        }
    }
    total
}

/// A running instance and the agent of its host. (A struct, not a tuple: with the trait object
/// in a tuple the round's future was not provably `Send` — rustc's higher-ranked lifetime issue.)
struct Running {
    rec: kumo_store::instances::InstanceRecord,
    hv: Arc<dyn kumo_host_api::HostAgent>,
}

async fn sample_one(
    r: Running,
) -> (kumo_store::instances::InstanceRecord, kumo_host_api::Result<Option<kumo_host_api::InstanceSample>>) {
    let s = r.hv.sample(r.rec.view.id).await;
    (r.rec, s)
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default)]
pub struct RoundReport {
    /// Instances sampled.
    pub sampled: usize,
    /// Raw rows written.
    pub rows: usize,
}

/// One round at time `now`: sample, compute rates, write, roll up, prune. On an error the
/// round's rows are lost; the next round starts again.
pub async fn round(app: &App, now: DateTime<Utc>) -> Result<RoundReport, Error> {
    try_round(app, now).await.map_err(Error::from)
}

async fn try_round(app: &App, now: DateTime<Utc>) -> anyhow::Result<RoundReport> {
    let mut running: Vec<Running> = Vec::new();
    {
        let mut conn = app.store.read().await?;
        for host in app.hosts.reachable() {
            let Some(agent) = app.hosts.get(host) else { continue };
            let records = kumo_store::instances::on_host(&mut conn, host).await?;
            running.extend(
                records
                    .into_iter()
                    .filter(|r| r.state() == InstanceState::Running)
                    .map(|rec| Running { rec, hv: agent.clone() }),
            );
        }
    }
    let samples: Vec<_> =
        futures_util::stream::iter(running).map(sample_one).buffer_unordered(CONCURRENCY).collect().await;

    let mut rows = Vec::with_capacity(samples.len());
    let mut latest = HashMap::with_capacity(samples.len());
    let mut sampled = 0;
    let mut failures = Vec::new();
    {
        let mut previous = app.instance_metrics.previous.lock().unwrap_or_else(|p| p.into_inner());
        let mut next_previous = HashMap::with_capacity(samples.len());
        for (rec, s) in samples {
            let id = rec.view.id;
            let cur = match s {
                Ok(Some(cur)) => cur,
                Ok(None) => continue,
                Err(e) => {
                    failures.push(format!("instance {id}: {e}"));
                    continue;
                }
            };
            sampled += 1;
            if let Some((t, prev)) = previous.get(&id) {
                let secs = (now - *t).num_microseconds().unwrap_or(0) as f64 / 1e6;
                if let Some(values) = rates(prev, &cur, secs) {
                    rows.push(MetricRow { instance_id: id, time: now, values });
                    latest.insert(
                        id,
                        Latest {
                            project: rec.view.project.clone(),
                            instance: rec.view.name.clone(),
                            time: now,
                            values,
                            memory_configured_bytes: cur.memory_configured_bytes,
                        },
                    );
                }
            }
            next_previous.insert(id, (now, cur));
        }
        // Instances that stopped or went away are forgotten.
        *previous = next_previous;
    }
    {
        let mut l = app.instance_metrics.latest.lock().unwrap_or_else(|p| p.into_inner());
        // Keep an instance's last values across a priming round, drop instances no longer sampled.
        let prev_latest = std::mem::take(&mut *l);
        let still: std::collections::HashSet<InstanceId> =
            app.instance_metrics.previous.lock().unwrap_or_else(|p| p.into_inner()).keys().copied().collect();
        *l = prev_latest.into_iter().filter(|(id, _)| still.contains(id)).collect();
        l.extend(latest);
    }
    let mut tx = app.store.begin().await?;
    kumo_store::metrics::insert_raw(&mut tx, &rows).await?;
    kumo_store::metrics::maintain(&mut tx, now).await?;
    tx.commit().await?;
    if !failures.is_empty() {
        anyhow::bail!("sampling failed for {} instance(s): {}", failures.len(), failures.join("; "));
    }
    Ok(RoundReport { sampled, rows: rows.len() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(cpu_s: f64, rss: u64, rd: u64, wr: u64) -> InstanceSample {
        InstanceSample {
            cpu_ns: (cpu_s * 1e9) as u64,
            memory_bytes: rss,
            disk_read_bytes: rd,
            disk_write_bytes: wr,
            ..Default::default()
        }
    }

    #[test]
    fn rates_are_per_second_and_cpu_is_percent_of_one_core() {
        let r = rates(&s(1.0, 10, 0, 1000), &s(3.5, 20, 5000, 11_000), 5.0).expect("rates");
        assert_eq!(r, [50.0, 20.0, 1000.0, 2000.0, 0.0, 0.0]);
        // Two busy vCPUs: above 100.
        assert_eq!(rates(&s(0.0, 0, 0, 0), &s(2.0, 0, 0, 0), 1.0).expect("rates")[0], 200.0);
    }

    #[test]
    fn a_restarted_process_or_no_elapsed_time_gives_no_rates() {
        assert_eq!(rates(&s(9.0, 0, 0, 0), &s(1.0, 0, 0, 0), 5.0), None);
        assert_eq!(rates(&s(0.0, 0, 9, 0), &s(1.0, 0, 1, 0), 5.0), None);
        assert_eq!(rates(&s(0.0, 0, 0, 0), &s(1.0, 0, 0, 0), 0.0), None);
    }
}
