//! Per-instance metrics: raw samples, and their 1-minute and 1-hour means.
//!
//! The monitoring task (kumo-control `monitoring.rs`) writes one batch of raw rows per sampling
//! round with [`insert_raw`], then calls [`maintain`], which rolls finished intervals up into the
//! coarser tables (raw → 1 minute → 1 hour) and prunes what is past each table's retention. Every
//! function takes the current time as an argument, so tests drive it with a fake clock.
//!
//! Rollups are tracked by a watermark per resolution (`metrics_rollups.done_until`): an interval is
//! computed once, when it has ended, from the rows of the finer table. Samples are written as they
//! are taken, so none arrive for an interval that has already been rolled up.

use crate::{parse_ts, parse_uuid, ts, Conn, Result, StoreError};
use chrono::{DateTime, TimeDelta, Utc};
use kumo_types::InstanceId;
use sqlx::Row;
use std::collections::BTreeMap;

/// Metric columns, in the order of [`MetricRow::values`] (the names of [`kumo_types::metrics::METRICS`]).
pub const COLUMNS: [&str; 6] = ["cpu", "memory", "disk_read", "disk_write", "net_rx", "net_tx"];

/// One instance's metrics at one time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricRow {
    pub instance_id: InstanceId,
    pub time: DateTime<Utc>,
    /// cpu %, memory bytes, disk read B/s, disk write B/s, net rx B/s, net tx B/s.
    pub values: [f64; 6],
}

/// A table of metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// One row per sampling round.
    Raw,
    /// 1-minute means.
    Minute,
    /// 1-hour means.
    Hour,
}

impl Resolution {
    pub fn table(self) -> &'static str {
        match self {
            Resolution::Raw => "metrics_raw",
            Resolution::Minute => "metrics_1m",
            Resolution::Hour => "metrics_1h",
        }
    }

    /// Length of an interval (None for raw rows, whose spacing is the sampling interval).
    pub fn interval(self) -> Option<TimeDelta> {
        match self {
            Resolution::Raw => None,
            Resolution::Minute => Some(TimeDelta::minutes(1)),
            Resolution::Hour => Some(TimeDelta::hours(1)),
        }
    }

    /// How long rows are kept.
    pub fn retention(self) -> TimeDelta {
        match self {
            Resolution::Raw => TimeDelta::hours(1),
            Resolution::Minute => TimeDelta::days(1),
            Resolution::Hour => TimeDelta::days(30),
        }
    }
}

fn column(metric: &str) -> Result<&'static str> {
    COLUMNS
        .iter()
        .find(|c| **c == metric)
        .copied()
        .ok_or_else(|| StoreError::Corrupt(format!("unknown metric '{metric}'")))
}

/// Rows per INSERT statement (8 parameters each; far below every database's parameter limit).
const INSERT_CHUNK: usize = 100;

/// Inserts rows into `res`'s table; a row for an (instance, time) that exists replaces it.
pub async fn insert(conn: &mut Conn, res: Resolution, rows: &[MetricRow]) -> Result<()> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let mut sql = format!(
            "INSERT INTO {} (instance_id, time, cpu, memory, disk_read, disk_write, net_rx, net_tx) VALUES ",
            res.table()
        );
        for i in 0..chunk.len() {
            let b = i * 8;
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                b + 1,
                b + 2,
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8
            ));
        }
        sql.push_str(
            " ON CONFLICT (instance_id, time) DO UPDATE SET cpu = excluded.cpu, memory = excluded.memory, \
             disk_read = excluded.disk_read, disk_write = excluded.disk_write, net_rx = excluded.net_rx, \
             net_tx = excluded.net_tx",
        );
        let mut q = sqlx::query(&sql);
        for r in chunk {
            q = q.bind(r.instance_id.to_string()).bind(ts(r.time));
            for v in r.values {
                q = q.bind(v);
            }
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Inserts one sampling round of raw rows.
pub async fn insert_raw(conn: &mut Conn, rows: &[MetricRow]) -> Result<()> {
    insert(conn, Resolution::Raw, rows).await
}

/// One metric of one instance at resolution `res`, with `from <= time < to`, in time order.
pub async fn series(
    conn: &mut Conn,
    instance_id: InstanceId,
    res: Resolution,
    metric: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Result<Vec<(DateTime<Utc>, f64)>> {
    let sql = format!(
        "SELECT time, {} FROM {} WHERE instance_id = $1 AND time >= $2 AND time < $3 ORDER BY time",
        column(metric)?,
        res.table()
    );
    let rows =
        sqlx::query(&sql).bind(instance_id.to_string()).bind(ts(from)).bind(ts(to)).fetch_all(&mut *conn).await?;
    rows.iter().map(|r| Ok((parse_ts(&r.try_get::<String, _>(0)?)?, r.try_get::<f64, _>(1)?))).collect()
}

/// Every row of a table with `from <= time < to` (for rollups and tests).
pub async fn rows(conn: &mut Conn, res: Resolution, from: DateTime<Utc>, to: DateTime<Utc>) -> Result<Vec<MetricRow>> {
    let sql = format!(
        "SELECT instance_id, time, cpu, memory, disk_read, disk_write, net_rx, net_tx FROM {} \
         WHERE time >= $1 AND time < $2 ORDER BY instance_id, time",
        res.table()
    );
    let rows = sqlx::query(&sql).bind(ts(from)).bind(ts(to)).fetch_all(&mut *conn).await?;
    rows.iter()
        .map(|r| {
            let mut values = [0.0; 6];
            for (i, v) in values.iter_mut().enumerate() {
                *v = r.try_get::<f64, _>(i + 2)?;
            }
            Ok(MetricRow {
                instance_id: parse_uuid(&r.try_get::<String, _>(0)?)?,
                time: parse_ts(&r.try_get::<String, _>(1)?)?,
                values,
            })
        })
        .collect()
}

/// The start of the interval of length `interval` that holds `t` (intervals are aligned to the
/// Unix epoch, so minutes and hours start on the minute and the hour).
pub fn floor(t: DateTime<Utc>, interval: TimeDelta) -> DateTime<Utc> {
    let step = interval.num_microseconds().unwrap_or(1).max(1);
    let micros = t.timestamp_micros();
    DateTime::from_timestamp_micros(micros - micros.rem_euclid(step)).unwrap_or(t)
}

async fn watermark(conn: &mut Conn, res: Resolution) -> Result<Option<DateTime<Utc>>> {
    let t: Option<String> = sqlx::query_scalar("SELECT done_until FROM metrics_rollups WHERE resolution = $1")
        .bind(res.table())
        .fetch_optional(&mut *conn)
        .await?;
    t.map(|t| parse_ts(&t)).transpose()
}

async fn set_watermark(conn: &mut Conn, res: Resolution, t: DateTime<Utc>) -> Result<()> {
    sqlx::query(
        "INSERT INTO metrics_rollups (resolution, done_until) VALUES ($1, $2) \
         ON CONFLICT (resolution) DO UPDATE SET done_until = excluded.done_until",
    )
    .bind(res.table())
    .bind(ts(t))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Computes the means of every interval of `to` that has ended by `now` and is not computed yet,
/// from the rows of `from`. Returns how many rows it wrote.
pub async fn downsample(conn: &mut Conn, from: Resolution, to: Resolution, now: DateTime<Utc>) -> Result<usize> {
    let interval = to.interval().ok_or_else(|| StoreError::Corrupt("cannot downsample into raw".into()))?;
    let until = floor(now, interval);
    let start = match watermark(conn, to).await? {
        Some(t) => t,
        None => {
            let first: Option<String> =
                sqlx::query_scalar(&format!("SELECT MIN(time) FROM {}", from.table())).fetch_one(&mut *conn).await?;
            match first {
                Some(t) => floor(parse_ts(&t)?, interval),
                None => until,
            }
        }
    };
    if start >= until {
        set_watermark(conn, to, until.max(start)).await?;
        return Ok(0);
    }
    let mut buckets: BTreeMap<(InstanceId, DateTime<Utc>), ([f64; 6], u32)> = BTreeMap::new();
    for r in rows(conn, from, start, until).await? {
        let (sum, n) = buckets.entry((r.instance_id, floor(r.time, interval))).or_insert(([0.0; 6], 0));
        for (s, v) in sum.iter_mut().zip(r.values) {
            *s += v;
        }
        *n += 1;
    }
    let out: Vec<MetricRow> = buckets
        .into_iter()
        .map(|((instance_id, time), (sum, n))| MetricRow { instance_id, time, values: sum.map(|s| s / n as f64) })
        .collect();
    insert(conn, to, &out).await?;
    set_watermark(conn, to, until).await?;
    Ok(out.len())
}

/// Deletes the rows of `res` older than its retention. Returns how many.
pub async fn prune(conn: &mut Conn, res: Resolution, now: DateTime<Utc>) -> Result<u64> {
    let r = sqlx::query(&format!("DELETE FROM {} WHERE time < $1", res.table()))
        .bind(ts(now - res.retention()))
        .execute(&mut *conn)
        .await?;
    Ok(r.rows_affected())
}

/// What one [`maintain`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Maintenance {
    pub minute_rows: usize,
    pub hour_rows: usize,
    pub pruned: u64,
}

/// Rolls raw rows up into minutes and minutes into hours, then prunes every table.
pub async fn maintain(conn: &mut Conn, now: DateTime<Utc>) -> Result<Maintenance> {
    let minute_rows = downsample(conn, Resolution::Raw, Resolution::Minute, now).await?;
    let hour_rows = downsample(conn, Resolution::Minute, Resolution::Hour, now).await?;
    let mut pruned = 0;
    for res in [Resolution::Raw, Resolution::Minute, Resolution::Hour] {
        pruned += prune(conn, res, now).await?;
    }
    Ok(Maintenance { minute_rows, hour_rows, pruned })
}
