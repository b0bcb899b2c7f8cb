//! `kumo-bench cluster` (issue 13, part 8): a cluster at scale on one machine — two `kumod
//! controller`s on a fresh PostgreSQL database and a [`Fleet`] of simulated hosts in this
//! process that join and heartbeat through the agents' real protocol — and its figures:
//!
//! - (a) placement: the scheduler's decision alone (`kumo_control::scheduler::rank` over the
//!   hosts as the store holds them, in this process), and creates through the API, spread over
//!   both controllers and several projects, from request to 201 (then until every one runs);
//! - (b) `GET /v1/instances`, first page of 1,000, with `--instances` in the cloud: the creates
//!   of (a) plus the rest written straight into the database (stopped, on a host row no agent
//!   serves, as the `reads` benchmark does) — faster than creating them one by one;
//! - (c) heartbeat load: the controllers' CPU (utime + stime of their processes) over a window
//!   with heartbeats and nothing else asked of them, minus a window of the same length with every
//!   heartbeat held back (shorter than the lease, so no host is lost meanwhile);
//! - (d) one host's heartbeats stopped (its agent "killed") → the time until the controllers show
//!   it `unreachable`.

use crate::fleet::Fleet;
use crate::kumod::{Api, Kumod};
use crate::procs;
use crate::reads::PgDb;
use crate::report::{self, Summary};
use anyhow::{bail, Context, Result};
use serde_json::json;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Sizes and knobs of the run (`kumo-bench cluster --hosts … --instances … --zones …`).
#[derive(Debug, Clone)]
pub struct Options {
    pub hosts: usize,
    pub zones: usize,
    pub instances: usize,
    /// Instances created through the API (the rest of `instances` is written into the database).
    pub creates: usize,
    /// Requests in flight at once (creates, joins).
    pub concurrency: usize,
    /// Length of each heartbeat window, seconds.
    pub seconds: f64,
    pub postgres: String,
}

/// Projects the creates are spread over (each has its own default subnet and quota row).
const PROJECTS: usize = 64;
pub const PAGE: usize = 1_000;
const PAGE_REPEAT: usize = 20;
/// The controllers' deadline: `kumod controller`'s default.
pub const UNREACHABLE_AFTER: Duration = Duration::from_secs(30);

pub struct Figures {
    pub opts: Options,
    pub join_secs: f64,
    pub decisions: Decisions,
    pub creates: Creates,
    pub page: Vec<(usize, Summary, usize)>,
    pub listed_project_instances: usize,
    pub heartbeat: HeartbeatLoad,
    pub unreachable: Unreachable,
    pub instances_task: Option<f64>,
}

pub struct Decisions {
    /// Decisions per second over every zone, and within one zone.
    pub any_zone: f64,
    pub one_zone: f64,
    /// Reading the candidate hosts from the store, as a create does (ms, median).
    pub read_ms: Summary,
}

pub struct Creates {
    pub ok: usize,
    pub failed: usize,
    pub first_error: Option<String>,
    pub secs: f64,
    /// Seconds from the first create until every created instance was `running` (None: not
    /// within the wait).
    pub all_running_secs: Option<f64>,
    pub running: usize,
}

pub struct HeartbeatLoad {
    pub window_secs: f64,
    /// Heartbeats acknowledged per second in the window with heartbeats.
    pub rate: f64,
    pub failed: u64,
    pub mean_latency_ms: f64,
    /// Controllers' CPU, % of one core (both summed), with and without heartbeats.
    pub controllers_on: f64,
    pub controllers_off: f64,
    /// PostgreSQL's (every `postgres` process on the machine), same windows.
    pub postgres_on: f64,
    pub postgres_off: f64,
    /// This process (the fleet: its heartbeats and the hosts' API), with heartbeats.
    pub fleet_on: f64,
}

pub struct Unreachable {
    pub secs: f64,
    /// Age of the host's last acknowledged heartbeat when it went silent.
    pub last_ack_age: f64,
}

/// Every `postgres` process's CPU seconds.
fn postgres_cpu() -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc") else { return 0.0 };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "postgres"))
        .filter_map(procs::cpu_secs)
        .sum()
}

/// CPU seconds of the controllers, of PostgreSQL, of this process.
fn cpu(pids: &[i32]) -> [f64; 3] {
    [
        pids.iter().filter_map(|p| procs::cpu_secs(*p)).sum(),
        postgres_cpu(),
        procs::cpu_secs(std::process::id() as i32).unwrap_or(0.0),
    ]
}

pub async fn run(root: &Path, opts: &Options) -> Result<Figures> {
    if opts.hosts == 0 || opts.zones == 0 || opts.instances == 0 {
        bail!("--hosts, --zones and --instances must be positive");
    }
    let db = PgDb::create(&opts.postgres).await?;
    let r = run_on(root, opts, &db.url).await;
    db.drop_now().await;
    r
}

async fn run_on(root: &Path, opts: &Options, db_url: &str) -> Result<Figures> {
    // Two controllers on the database; the second serves the first's certificate.
    let c0_dir = root.join("c0");
    let tls_dir = c0_dir.join("tls");
    let admin = c0_dir.join("admin-token");
    let common = |tls: Vec<String>| {
        let mut f: Vec<String> = vec!["--database".into(), db_url.into()];
        f.extend(tls);
        f
    };
    eprintln!("starting two controllers on a fresh PostgreSQL database");
    let c0 = Kumod::start_controller(&c0_dir, &common(vec!["--tls-self-signed".into()]), &tls_dir, &admin).await?;
    let c1_flags = common(vec![
        "--tls-cert".into(),
        tls_dir.join("cert.pem").to_string_lossy().into_owned(),
        "--tls-key".into(),
        tls_dir.join("key.pem").to_string_lossy().into_owned(),
    ]);
    let c1 = Kumod::start_controller(&root.join("c1"), &c1_flags, &tls_dir, &admin).await?;
    let apis = [c0.api.clone(), c1.api.clone()];
    let pids = [c0.pid, c1.pid];
    let fingerprint = std::fs::read_to_string(tls_dir.join("fingerprint"))?.trim().to_string();

    let zones: Vec<String> = (0..opts.zones).map(|z| format!("zone-{z:02}")).collect();
    for z in &zones {
        apis[0].post("/v1/zones", json!({ "name": z })).await?;
    }
    eprintln!("{} simulated hosts joining {} zones", opts.hosts, opts.zones);
    let fleet = Fleet::start(
        &root.join("fleet"),
        opts.hosts,
        &zones,
        apis.iter().map(|a| a.base.clone()).collect(),
        &fingerprint,
    )
    .await?;
    let t = Instant::now();
    fleet.join_all(&apis[0], opts.concurrency).await?;
    let join_secs = t.elapsed().as_secs_f64();
    eprintln!("  joined in {join_secs:.1} s; heartbeats start");
    fleet.heartbeat();
    let store = kumo_store::Store::open(db_url).await?;
    // Both controllers have a client for every host (their hosts task syncs every 2 s), and a
    // whole round of heartbeats has passed.
    tokio::time::sleep(crate::fleet::HEARTBEAT + Duration::from_secs(3)).await;

    // (c) heartbeat load, before anything else is asked of the controllers.
    let window = Duration::from_secs_f64(opts.seconds);
    // Held back for less than half the lease: no host is lost meanwhile.
    let quiet = window.min(UNREACHABLE_AFTER / 2 - crate::fleet::HEARTBEAT);
    eprintln!("heartbeat load: {:.0} s with heartbeats, {:.0} s without", window.as_secs_f64(), quiet.as_secs_f64());
    let (a0, f0, l0) = fleet.snapshot();
    let c_start = cpu(&pids);
    tokio::time::sleep(window).await;
    let c_mid = cpu(&pids);
    let (a1, f1, l1) = fleet.snapshot();
    fleet.paused.store(true, Ordering::SeqCst);
    // Heartbeats in flight end first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c_quiet = cpu(&pids);
    tokio::time::sleep(quiet).await;
    let c_end = cpu(&pids);
    fleet.paused.store(false, Ordering::SeqCst);
    let pct = |a: f64, b: f64, secs: f64| 100.0 * (b - a) / secs;
    let (w, q) = (window.as_secs_f64(), quiet.as_secs_f64());
    let heartbeat = HeartbeatLoad {
        window_secs: w,
        rate: (a1 - a0) as f64 / w,
        failed: f1 - f0,
        mean_latency_ms: (l1 - l0) as f64 / 1000.0 / (a1 - a0).max(1) as f64,
        controllers_on: pct(c_start[0], c_mid[0], w),
        controllers_off: pct(c_quiet[0], c_end[0], q),
        postgres_on: pct(c_start[1], c_mid[1], w),
        postgres_off: pct(c_quiet[1], c_end[1], q),
        fleet_on: pct(c_start[2], c_mid[2], w),
    };
    eprintln!(
        "  {:.0} heartbeats/s; controllers {:.1} % → {:.1} % of a core without them",
        heartbeat.rate, heartbeat.controllers_on, heartbeat.controllers_off
    );
    if let Some(e) = fleet.counters.last_error.lock().unwrap_or_else(|p| p.into_inner()).clone() {
        eprintln!("  last heartbeat error: {e}");
    }
    // Let a round of heartbeats renew every lease.
    tokio::time::sleep(crate::fleet::HEARTBEAT + Duration::from_secs(1)).await;

    // (d) one host's agent stops heartbeating.
    let unreachable = time_to_unreachable(&fleet, &apis[1]).await?;
    eprintln!("  agent killed → unreachable in {:.1} s", unreachable.secs);

    // (a) the decision alone, on the hosts as the store holds them.
    let decisions = decisions(&store, &zones).await?;
    eprintln!(
        "scheduler decision: {:.0}/s (any zone), {:.0}/s (one zone); reading the candidates {:.1} ms",
        decisions.any_zone, decisions.one_zone, decisions.read_ms.median
    );

    // (a) creates through the API.
    let creates = creates(&apis, &store, opts).await?;

    // (b) the rest of the instances, written into the database; the first page.
    let listed = "bench-00";
    let rest = opts.instances.saturating_sub(creates.ok);
    let mut listed_project_instances = creates.ok.div_ceil(PROJECTS);
    if rest > 0 {
        eprintln!("writing {rest} more instances into project {listed} (database)");
        let project: uuid::Uuid =
            apis[0].get(&format!("/v1/projects/{listed}")).await?["id"].as_str().context("project id")?.parse()?;
        let one = apis[0].get(&format!("/v1/instances?project={listed}&limit=1")).await?;
        let template: uuid::Uuid = one["items"][0]["id"].as_str().context("no instance was created")?.parse()?;
        crate::reads::insert_instances(db_url, project, template, rest, "bulk").await?;
        listed_project_instances += rest;
    }
    let mut page = Vec::new();
    for (c, api) in apis.iter().enumerate() {
        let path = format!("/v1/instances?project={listed}&limit={PAGE}");
        let (ms, bytes) = crate::reads::time_get(api, &path, PAGE_REPEAT).await?;
        eprintln!("  first page of {PAGE} on controller {c}: median {:.1} ms", ms.median);
        page.push((c, ms, bytes));
    }
    let instances_task = instances_pass(&apis).await;

    fleet.stop();
    store.close().await;
    // The second controller's command line names the first's directory (its certificate): it
    // stops first.
    drop(c1);
    drop(c0);
    Ok(Figures {
        opts: opts.clone(),
        join_secs,
        decisions,
        creates,
        page,
        listed_project_instances,
        heartbeat,
        unreachable,
        instances_task,
    })
}

/// How long the last pass of the instances task took on the controller doing the background work.
async fn instances_pass(apis: &[Api]) -> Option<f64> {
    for api in apis {
        let Ok(v) = api.get("/v1/system/reconcilers").await else { continue };
        let items = v["items"].as_array().cloned().or_else(|| v.as_array().cloned()).unwrap_or_default();
        for t in items {
            if t["name"] == "instances" && t["passes"].as_u64().unwrap_or(0) > 0 {
                return t["last_duration_seconds"].as_f64();
            }
        }
    }
    None
}

async fn time_to_unreachable(fleet: &Fleet, api: &Api) -> Result<Unreachable> {
    let host = &fleet.hosts[0];
    let id = host.id().context("host 0 has not joined")?;
    eprintln!("host {} stops heartbeating (its agent is killed)", host.name);
    host.silent.store(true, Ordering::SeqCst);
    let t = Instant::now();
    let last_ack_age =
        host.last_ack.lock().unwrap_or_else(|p| p.into_inner()).map(|a| a.elapsed().as_secs_f64()).unwrap_or(0.0);
    let limit = UNREACHABLE_AFTER * 2;
    let secs = loop {
        let v = api.get(&format!("/v1/hosts/{id}")).await?;
        if v["state"] == "unreachable" {
            break t.elapsed().as_secs_f64();
        }
        if t.elapsed() > limit {
            bail!("host {} still {} {:?} after its heartbeats stopped", host.name, v["state"], limit);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    host.silent.store(false, Ordering::SeqCst);
    Ok(Unreachable { secs, last_ack_age })
}

/// The scheduler's decision for a k1-nano instance, over the hosts read from the store with their
/// state as of now, for ~2 s each way.
async fn decisions(store: &kumo_store::Store, zones: &[String]) -> Result<Decisions> {
    use kumo_control::scheduler;
    let mut reads = Vec::new();
    let mut hosts = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        hosts = kumo_store::hosts::all(&mut *store.read().await?).await?;
        reads.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let now = chrono::Utc::now();
    for h in &mut hosts {
        h.state = kumo_control::app::hosts::state(h, now, UNREACHABLE_AFTER);
    }
    let want = kumo_store::hosts::Resources { vcpus: 1, memory_mib: 128, disk_gib: 1, gpus: 0 };
    let rate = |zone: &dyn Fn(usize) -> Option<String>| -> Result<f64> {
        let t = Instant::now();
        let mut n = 0usize;
        while t.elapsed() < Duration::from_secs(2) {
            let z = zone(n);
            let ranked = scheduler::rank(&hosts, &scheduler::Ask { zone: z.as_deref(), ..Default::default() }, want)
                .map_err(anyhow::Error::msg)?;
            std::hint::black_box(ranked.first());
            n += 1;
        }
        Ok(n as f64 / t.elapsed().as_secs_f64())
    };
    Ok(Decisions {
        any_zone: rate(&|_| None)?,
        one_zone: rate(&|n| Some(zones[n % zones.len()].clone()))?,
        read_ms: report::summarize(&reads),
    })
}

/// `opts.creates` k1-nano instances through the API, `opts.concurrency` in flight, alternating
/// controllers, over [`PROJECTS`] projects; then waits for them to run.
async fn creates(apis: &[Api; 2], store: &kumo_store::Store, opts: &Options) -> Result<Creates> {
    let n = opts.creates.min(opts.instances);
    for p in 0..PROJECTS {
        apis[0].create_project(&format!("bench-{p:02}")).await?;
    }
    eprintln!("creating {n} instances through the API ({} in flight, both controllers)", opts.concurrency);
    let next = Arc::new(AtomicU64::new(0));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let first_error = Arc::new(std::sync::Mutex::new(None));
    let t = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..opts.concurrency.max(1) {
        let (apis, next, ok, failed, first_error) =
            (apis.clone(), next.clone(), ok.clone(), failed.clone(), first_error.clone());
        workers.spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::Relaxed) as usize;
                if k >= n {
                    return;
                }
                let body = json!({ "name": format!("c{k:06}"), "image": crate::kumod::IMAGE,
                                   "instance_type": crate::kumod::INSTANCE_TYPE });
                let path = format!("/v1/instances?project=bench-{:02}", k % PROJECTS);
                match apis[k % 2].post(&path, body).await {
                    Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        first_error.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert(format!("{e:#}"));
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        });
    }
    while workers.join_next().await.is_some() {}
    let secs = t.elapsed().as_secs_f64();
    let (ok, failed) = (ok.load(Ordering::Relaxed) as usize, failed.load(Ordering::Relaxed) as usize);
    eprintln!("  {ok} created in {secs:.1} s ({:.0}/s), {failed} refused", ok as f64 / secs);
    // Until every one runs: counted in the database, not to load the API.
    let wait = Duration::from_secs(120).max(Duration::from_secs_f64(secs * 4.0));
    let mut running = 0;
    let mut all_running_secs = None;
    while t.elapsed() < wait + Duration::from_secs_f64(secs) {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM instances WHERE state = 'running'")
            .fetch_one(&mut *store.read().await?)
            .await?;
        running = n as usize;
        if running >= ok {
            all_running_secs = Some(t.elapsed().as_secs_f64());
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    match all_running_secs {
        Some(s) => eprintln!("  all {ok} running {s:.1} s after the first create"),
        None => eprintln!("  {running} of {ok} running after {:.0} s", t.elapsed().as_secs_f64()),
    }
    let first_error = first_error.lock().unwrap_or_else(|p| p.into_inner()).clone();
    Ok(Creates { ok, failed, first_error, secs, all_running_secs, running })
}
