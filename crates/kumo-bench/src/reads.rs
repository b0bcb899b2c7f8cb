//! Fast read paths (issue 11), on SQLite and on PostgreSQL: the API throughput of GET view and
//! GET list of 100 (against the same-run HTTP ceiling, see [`crate::api_load`]), the first page of
//! 1,000 of a project with 100,000 instances, and a month's usage of a 10,000-instance project.
//!
//! The two large data sets are written straight into the running sim kumod's database through
//! `kumo_store` (as `crates/kumod/tests/billing_bench.rs` does), not through the API:
//! - 100,000 `stopped` instances in project `big`, placed on a second host row `bench-parked`
//!   that no agent serves (so the sim reconciler does not walk them every pass);
//! - project `billing`: 10,000 instances whose lives (k1-small, 4 events each: created, running,
//!   stopped after 1–200 h, destroyed a day later) fall in the measured month, plus the same
//!   history in each of the three months before (another 30,000 lives, 120,000 events), and
//!   1,000 instances running since before the measured month with no event in it, so that usage
//!   must carry state across the month boundary.

use crate::api_load::{self, ApiFigures};
use crate::kumod::Kumod;
use crate::report::{self, Summary};
use anyhow::{Context, Result};
use chrono::{DateTime, Datelike, Duration as ChronoDuration, TimeZone, Utc};
use sqlx::{Connection, Executor};
use std::path::Path;
use std::time::Instant;

pub const BIG_INSTANCES: usize = 100_000;
pub const PAGE: usize = 1_000;
pub const USAGE_INSTANCES: usize = 10_000;
const HISTORY_MONTHS: i64 = 3;
const CARRIED: usize = 1_000;
const REPEAT: usize = 20;

/// A part of the `reads` benchmark (`--only`): each writes its own data set, so running one part
/// alone takes a fraction of the whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    /// GET view and GET list under load, against the HTTP ceiling.
    Api,
    /// The first page of 1,000 of 100,000 instances.
    Page,
    /// A month's usage of the 10,000-instance project, and where its time goes.
    Usage,
}

pub struct ReadFigures {
    pub backend: &'static str,
    pub api: Option<ApiFigures>,
    pub page: Option<PageFigures>,
    pub usage: Option<UsageFigures>,
}

pub struct PageFigures {
    pub ms: Summary,
    pub bytes: usize,
}

pub struct UsageFigures {
    /// The first request of the month: builds and stores the month's carry (kumo_store::metering).
    pub first_ms: f64,
    /// The request, from sending to having the whole body (the later ones).
    pub ms: Summary,
    pub bytes: usize,
    pub lines: usize,
    pub events: usize,
    /// In the benchmark's process, on the same database: the store read of the instance rows
    /// (carry + the month's events, decoded and folded into the window's rows) …
    pub store_ms: Summary,
    /// … the usage lines (every resource type's store read, the fold into intervals, pricing) …
    pub lines_ms: Summary,
    /// … and the report's JSON.
    pub json_ms: Summary,
}

/// A fresh PostgreSQL database for one benchmark run, dropped at the end.
pub struct PgDb {
    admin: String,
    name: String,
    pub url: String,
}

impl PgDb {
    pub async fn create(admin: &str) -> Result<PgDb> {
        sqlx::any::install_default_drivers();
        let name = format!("kumo_bench_{}", uuid::Uuid::new_v4().simple());
        let mut c = sqlx::AnyConnection::connect(admin).await.with_context(|| format!("connect to {admin}"))?;
        // C collation: names sort byte-wise, as on SQLite (docs/operations.md).
        c.execute(format!("CREATE DATABASE {name} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'").as_str()).await?;
        let _ = c.close().await;
        let (base, _) = admin.rsplit_once('/').context("admin URL without a database")?;
        Ok(PgDb { admin: admin.to_string(), url: format!("{base}/{name}"), name })
    }

    pub async fn drop_now(&self) {
        if let Ok(mut c) = sqlx::AnyConnection::connect(&self.admin).await {
            let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
            if let Err(e) = c.execute(sql.as_str()).await {
                eprintln!("could not drop {}: {e}", self.name);
            }
            let _ = c.close().await;
        }
    }
}

/// One backend's figures: `database` is None for SQLite (kumod's default) or a PostgreSQL URL;
/// `only` picks one part.
pub async fn run(
    root: &Path,
    backend: &'static str,
    database: Option<&str>,
    connections: usize,
    seconds: f64,
    only: Option<Part>,
) -> Result<ReadFigures> {
    let part = |p: Part| only.is_none_or(|o| o == p);
    let mut extra = Vec::new();
    if let Some(url) = database {
        extra.extend(["--database".to_string(), url.to_string()]);
    }
    let dir = root.join(backend);
    let kumod = api_load::start_sim(&dir.join("s"), &extra).await?;
    let api = match part(Part::Api) {
        true => Some(api_load::api_throughput_on(&kumod, &dir, connections, seconds).await?),
        false => None,
    };
    let db_url = database.map(String::from).unwrap_or_else(|| format!("sqlite://{}", dir.join("s/kumo.db").display()));

    let mut page = None;
    if part(Part::Page) {
        eprintln!("  writing {BIG_INSTANCES} instances into project big ({backend})");
        kumod.api.create_project("big").await?;
        let big = project_id(&kumod, "big").await?;
        let vm = kumod.api.get(&format!("/v1/instances/vm-000?project={}", crate::kumod::PROJECT)).await?;
        let vm_id: uuid::Uuid = vm["id"].as_str().context("instance id")?.parse()?;
        insert_instances(&db_url, big, vm_id, BIG_INSTANCES, "vm").await?;
        let page_path = format!("/v1/instances?project=big&limit={PAGE}");
        let (ms, bytes) = time_get(&kumod.api, &page_path, REPEAT).await?;
        eprintln!("  first page of {PAGE} of {BIG_INSTANCES}: median {:.1} ms", ms.median);
        page = Some(PageFigures { ms, bytes });
    }

    let mut usage = None;
    if part(Part::Usage) {
        eprintln!("  writing the usage data set into project billing ({backend})");
        kumod.api.create_project("billing").await?;
        let billing = project_id(&kumod, "billing").await?;
        let (month, events) = insert_usage(&db_url, billing).await?;
        let usage_path = format!("/v1/projects/billing/usage?month={month}");
        let t = Instant::now();
        let body = kumod.api.get(&usage_path).await?;
        let first_ms = t.elapsed().as_secs_f64() * 1000.0;
        let lines = body["items"].as_array().map_or(0, Vec::len);
        let (ms, bytes) = time_get(&kumod.api, &usage_path, REPEAT / 2).await?;
        eprintln!("  usage of {month} ({lines} lines): first {first_ms:.1} ms, then median {:.1} ms", ms.median);
        let (store_ms, lines_ms, json_ms) = usage_breakdown(&db_url, billing, &month, REPEAT / 2).await?;
        eprintln!(
            "  in process: store read {:.1} ms, lines {:.1} ms, JSON {:.1} ms (medians)",
            store_ms.median, lines_ms.median, json_ms.median
        );
        usage = Some(UsageFigures { first_ms, ms, bytes, lines, events, store_ms, lines_ms, json_ms });
    }
    drop(kumod);
    Ok(ReadFigures { backend, api, page, usage })
}

/// Where a usage request's time goes, measured in this process on the same database (its month's
/// carry already stored by the requests before): the store read of the instance rows, the whole
/// usage lines (`kumo_control::app::billing::lines`: every resource type's read, fold, pricing),
/// and the JSON of the report.
async fn usage_breakdown(url: &str, project: uuid::Uuid, month: &str, n: usize) -> Result<(Summary, Summary, Summary)> {
    use kumo_control::app::billing::{self, Events};
    use kumo_store::events::Carry;
    let store = kumo_store::Store::open(url).await?;
    let (from, to) = billing::month_bounds(month).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let project = kumo_types::ProjectId::from(project);
    let (mut read, mut lines, mut json) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let t = Instant::now();
        let rows = kumo_store::events::fast_for_metering_window(
            &store,
            project,
            "instance",
            &[Carry::State, Carry::DetailWith("disk_gib")],
            from,
            to,
        )
        .await?;
        read.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(!rows.is_empty(), "no usage rows read");
        let mut conn = store.read().await?;
        let t = Instant::now();
        let items = billing::lines(&mut conn, Events::Fast(&store), project, from, to)
            .await
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        lines.push(t.elapsed().as_secs_f64() * 1000.0);
        let report = kumo_types::billing::UsageReport {
            project: "billing".into(),
            from,
            to,
            total: items.iter().map(|l| l.cost).sum(),
            items,
        };
        let t = Instant::now();
        let body = serde_json::to_vec(&report)?;
        json.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(!body.is_empty());
    }
    store.close().await;
    Ok((report::summarize(&read), report::summarize(&lines), report::summarize(&json)))
}

async fn project_id(kumod: &Kumod, name: &str) -> Result<uuid::Uuid> {
    Ok(kumod.api.get(&format!("/v1/projects/{name}")).await?["id"].as_str().context("project id")?.parse()?)
}

/// `n` sequential GETs, timed from sending to having the whole body.
pub async fn time_get(api: &crate::kumod::Api, path: &str, n: usize) -> Result<(Summary, usize)> {
    let mut ms = Vec::with_capacity(n);
    let mut bytes = 0;
    for _ in 0..n {
        let t = Instant::now();
        bytes = api.get_bytes(path).await?.len();
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    Ok((report::summarize(&ms), bytes))
}

/// `count` stopped instances like `template`, named `PREFIX-NNNNNN`, on a host row of their own
/// (`bench-parked`: a host no agent serves, so no reconciler walks them).
pub async fn insert_instances(
    url: &str,
    project: uuid::Uuid,
    template: uuid::Uuid,
    count: usize,
    prefix: &str,
) -> Result<()> {
    let store = kumo_store::Store::open(url).await?;
    let rec =
        kumo_store::instances::get_by_id(&mut *store.read().await?, template.into()).await?.context("template")?;
    let host: uuid::Uuid = kumo_store::new_id();
    let mut tx = store.begin().await?;
    sqlx::query(
        "INSERT INTO hosts (id, name, description, time_created, time_modified, driver, accelerator, \
         accelerator_reason, vcpus_total, memory_mib_total, disk_gib_total, gpus_total, vcpus_limit, \
         memory_mib_limit, disk_gib_limit, cpu_overcommit, memory_overcommit, disk_overcommit) \
         SELECT $1, 'bench-parked', description, time_created, time_modified, driver, accelerator, \
         accelerator_reason, vcpus_total, memory_mib_total, disk_gib_total, gpus_total, vcpus_limit, \
         memory_mib_limit, disk_gib_limit, cpu_overcommit, memory_overcommit, disk_overcommit \
         FROM hosts WHERE id = $2",
    )
    .bind(host.to_string())
    .bind(rec.host_id.to_string())
    .execute(&mut *tx)
    .await?;
    let t = kumo_store::ts(kumo_store::now());
    const ROWS: usize = 500;
    for chunk in (0..count).collect::<Vec<_>>().chunks(ROWS) {
        let mut sql = String::from(
            "INSERT INTO instances (id, project_id, name, description, time_created, time_modified, image_id, \
             instance_type_id, host_id, vcpus, memory_mib, disk_gib, gpus, state, generation) VALUES ",
        );
        for (k, _) in chunk.iter().enumerate() {
            let b = k * 2;
            if k > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, $1, ${}, '', $2, $2, $3, $4, $5, {}, {}, {}, {}, 'stopped', 1)",
                b + 6,
                b + 7,
                rec.view.vcpus,
                rec.view.memory_mib,
                rec.view.disk_gib,
                rec.gpus
            ));
        }
        let mut q = sqlx::query(&sql)
            .bind(project.to_string())
            .bind(t.clone())
            .bind(rec.image_id.to_string())
            .bind(rec.instance_type_id.to_string())
            .bind(host.to_string());
        for i in chunk {
            q = q.bind(kumo_store::new_id::<uuid::Uuid>().to_string()).bind(format!("{prefix}-{i:06}"));
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    store.close().await;
    Ok(())
}

/// The usage data set (see the module docs). Returns the measured month (`YYYY-MM`) and the
/// number of the project's events.
async fn insert_usage(url: &str, project: uuid::Uuid) -> Result<(String, usize)> {
    let now = Utc::now();
    // The month before last: the billing reconciler closes last month at start-up.
    let this = Utc.with_ymd_and_hms(now.year(), now.month(), 1, 0, 0, 0).single().context("month")?;
    let month_start = |t: DateTime<Utc>| Utc.with_ymd_and_hms(t.year(), t.month(), 1, 0, 0, 0).single();
    let last = month_start(this - ChronoDuration::days(1)).context("month")?;
    let measured = month_start(last - ChronoDuration::days(1)).context("month")?;
    let store = kumo_store::Store::open(url).await?;
    let mut tx = store.begin().await?;
    let long_ago = measured - ChronoDuration::days(40 + 31 * HISTORY_MONTHS);
    kumo_store::billing::add_price(&mut tx, "instance_type", "k1-small", 12_000, long_ago).await?;
    kumo_store::billing::add_price(&mut tx, "disk", "", 100_000, long_ago).await?;
    let detail = r#"{"instance_type":"k1-small","vcpus":1,"memory_mib":512,"disk_gib":5}"#;
    let mut rows: Vec<(uuid::Uuid, String, DateTime<Utc>, &str, &str)> = Vec::new();
    // The measured month and the ones before it: 10,000 lives each.
    for m in 0..=HISTORY_MONTHS {
        let start = measured - ChronoDuration::days(31 * m);
        for i in 0..USAGE_INSTANCES {
            let id = kumo_store::new_id();
            let name = format!("m{m}-vm-{i:05}");
            let t0 = start + ChronoDuration::seconds((i as i64 * 173) % (20 * 86400));
            let run = t0 + ChronoDuration::seconds(10);
            let stop = run + ChronoDuration::hours(1 + (i as i64 % 200));
            for (at, kind, to) in [
                (t0, "created", "creating"),
                (run, "state_changed", "running"),
                (stop, "state_changed", "stopped"),
                (stop + ChronoDuration::days(1), "state_changed", "destroyed"),
            ] {
                rows.push((id, name.clone(), at, kind, to));
            }
        }
    }
    // Running since before the measured month, no event in it.
    for i in 0..CARRIED {
        let id = kumo_store::new_id();
        let t0 = measured - ChronoDuration::days(45) + ChronoDuration::seconds(i as i64);
        rows.push((id, format!("steady-{i:04}"), t0, "created", "creating"));
        rows.push((id, format!("steady-{i:04}"), t0 + ChronoDuration::seconds(10), "state_changed", "running"));
    }
    const ROWS: usize = 400;
    for chunk in rows.chunks(ROWS) {
        let mut sql = String::from(
            "INSERT INTO events (id, time_created, project_id, resource_type, resource_id, resource_name, kind, \
             to_state, cause, detail) VALUES ",
        );
        for k in 0..chunk.len() {
            let b = k * 6;
            if k > 0 {
                sql.push(',');
            }
            sql.push_str(&format!(
                "(${}, ${}, $1, 'instance', ${}, ${}, ${}, ${}, 'bench', $2)",
                b + 3,
                b + 4,
                b + 5,
                b + 6,
                b + 7,
                b + 8
            ));
        }
        let mut q = sqlx::query(&sql).bind(project.to_string()).bind(detail);
        for (id, name, at, kind, to) in chunk {
            q = q
                .bind(kumo_store::new_id::<uuid::Uuid>().to_string())
                .bind(kumo_store::ts(*at))
                .bind(id.to_string())
                .bind(name.clone())
                .bind(*kind)
                .bind(*to);
        }
        q.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    store.close().await;
    Ok((format!("{:04}-{:02}", measured.year(), measured.month()), rows.len()))
}
