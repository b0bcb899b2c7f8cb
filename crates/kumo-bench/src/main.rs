//! `kumo-bench`: Kumo's benchmarks. Each figure is printed next to the physical limit measured in
//! the same run on the same machine (raw `qemu-system-x86_64` with kumod's own command line; a
//! trivial HTTP server), as a ratio with its target and PASS/MISS. A MISS is a figure, not a
//! failure: the exit code is non-zero only when the benchmark itself could not run.
//!
//! It starts its own kumod (the release binary next to this one) in a temp directory under /tmp,
//! and on exit — normal, error or Ctrl-C — stops it and kills every process it or its kumod
//! started (see [`procs`]). docs/benchmarks.md has the results and how to read them.

mod api_load;
mod boot;
mod cluster;
mod fleet;
mod kumod;
mod launch;
mod net;
mod procs;
mod raw;
mod reads;
mod report;
mod s3;
mod storage;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use kumod::{Kumod, PROJECT};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug)]
#[command(
    name = "kumo-bench",
    version,
    about = "Kumo benchmarks: figures as ratios against the physical limit measured in the same run"
)]
struct Cli {
    #[command(subcommand)]
    what: Option<What>,
    /// Launches per side (kumod and raw) for the launch-latency benchmark.
    #[arg(long, global = true, default_value_t = 5)]
    runs: usize,
    /// Instances launched at once in the concurrent benchmark.
    #[arg(long, global = true, default_value_t = 20)]
    concurrency: usize,
    /// Measured seconds per API load run (after a 1 s warm-up).
    #[arg(long, global = true, default_value_t = 10.0)]
    seconds: f64,
    /// Keep-alive connections of the API load generator.
    #[arg(long, global = true, default_value_t = 32)]
    connections: usize,
    /// PostgreSQL server for the `reads` benchmark (a URL whose role may create databases, e.g. what
    /// scripts/postgres.sh prints); a fresh database is created on it and dropped afterwards.
    /// Without it, `reads` measures SQLite only.
    #[arg(long, global = true, env = "KUMO_BENCH_POSTGRES_URL")]
    postgres: Option<String>,
    /// Run one part of the `reads` benchmark only (api, page or usage).
    #[arg(long, global = true, value_enum)]
    only: Option<reads::Part>,
    /// Public image the `boot` benchmark boots (one with a default user in its OS facts).
    #[arg(long, global = true, default_value = "debian-12")]
    image: String,
    /// Directory of public images the `boot` benchmark's kumod registers (where scripts/test.sh
    /// builds the Debian image).
    #[arg(long, global = true, default_value = "/var/cache/kumo/os-images")]
    image_cache: PathBuf,
    /// Launch without networks (launch, concurrent, rss): kumod without its data plane and raw
    /// QEMU without a tap, so guests have no NIC — how the figures before 2026-12-03 were taken.
    /// By default both sides give every guest a NIC with DHCP, as users get it.
    #[arg(long, global = true)]
    no_network: bool,
    /// Instance type of the `boot` benchmark.
    #[arg(long, global = true, default_value = "k1-small")]
    instance_type: String,
    /// `cluster`: simulated hosts.
    #[arg(long, global = true, default_value_t = 10_000)]
    hosts: usize,
    /// `cluster`: zones the hosts are spread over.
    #[arg(long, global = true, default_value_t = 10)]
    zones: usize,
    /// `cluster`: instances in the cloud when the list is measured.
    #[arg(long, global = true, default_value_t = 100_000)]
    instances: usize,
    /// `cluster`: how many of them are created through the API (the rest is written into the
    /// database).
    #[arg(long, global = true, default_value_t = 5_000)]
    creates: usize,
}

#[derive(Subcommand, Debug, Clone, PartialEq)]
enum What {
    /// Every benchmark (the default).
    All,
    /// Launch latency: API create → guest ready, vs raw QEMU.
    Launch,
    /// Many launches at once, vs raw single boots divided by the cores.
    Concurrent,
    /// API throughput (GET view, GET list) vs a trivial HTTP server.
    Api,
    /// kumod idle memory and per-instance QEMU memory, vs raw QEMU.
    Rss,
    /// Storage: volume-from-image create time (1 and 10 GiB), backup throughput vs a file copy.
    /// Needs no kumod.
    Storage,
    /// Fast read paths (issue 11): GET view, GET list, a page of 1,000 of 100,000 instances and a
    /// month's usage of 10,000 instances, on SQLite and (with --postgres) on PostgreSQL.
    Reads,
    /// A real OS (default debian-12) from create to SSH answering, through kumod with its data plane
    /// vs raw QEMU with a tap and DHCP; not part of `all` (minutes per boot under TCG).
    Boot,
    /// Scale on simulated hosts (issue 13): --hosts simulated agents in --zones zones, two
    /// `kumod controller`s on a fresh database of --postgres: placement decisions and creates per
    /// second, the first page of 1,000 of --instances instances, heartbeat load, time to
    /// `unreachable`. Not part of `all`.
    Cluster,
    /// Object storage (issue 14): PUT and GET of a 64 MiB and a 1 GiB object and of 1,000 × 4 KiB
    /// objects through kumod's S3 endpoint with boto3 (the venv of scripts/s3-clients.sh), vs the
    /// same bytes written (fsync, rename, directory fsync) and read as files on the same disk.
    /// Not part of `all` (it needs that venv).
    S3,
    /// (internal) The trivial HTTP server of the API benchmark.
    #[command(hide = true)]
    ServeStatic { files: Vec<PathBuf> },
}

/// A tokio interval that does not burst to catch up after a slow iteration.
pub fn ticker(period: Duration) -> tokio::time::Interval {
    let mut i = tokio::time::interval(period);
    i.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    i
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.what {
        Some(What::ServeStatic { files }) => api_load::static_args(files)
            .and_then(|(v, l, a)| api_load::serve_static(v, l, a))
            .map(|_| ExitCode::SUCCESS),
        Some(What::Storage) => storage_bench(&cli),
        _ => bench(&cli),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("kumo-bench: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn bench(cli: &Cli) -> Result<ExitCode> {
    if cli.runs == 0 || cli.concurrency == 0 || cli.connections == 0 || cli.seconds <= 0.0 {
        bail!("--runs, --concurrency, --connections and --seconds must be positive");
    }
    kumod::binary()?;
    procs::become_subreaper();
    // Short: QMP socket paths under it must stay below the 108-byte unix socket limit.
    let root = tempfile::Builder::new().prefix("kb-").tempdir_in("/tmp").context("create a temp dir in /tmp")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let cpu = procs::CpuAccount::start();
    let outcome = rt.block_on(async {
        tokio::select! {
            r = run(cli, root.path()) => Some(r),
            sig = interrupted() => {
                eprintln!("\nkumo-bench: {sig}: stopping and cleaning up");
                None
            }
        }
    });
    // Dropping the benchmark above stopped kumod and the raw QEMUs; this catches anything else.
    rt.shutdown_timeout(Duration::from_secs(5));
    let left = procs::kill_everything_under(root.path());
    if !left.is_empty() {
        eprintln!("cleanup: killed {} leftover process(es):", left.len());
        for l in &left {
            eprintln!("  {l}");
        }
    }
    if let Err(e) = root.close() {
        eprintln!("cleanup: could not remove the temp dir: {e}");
    }
    if let Some(Ok(())) = outcome {
        // Everything of ours has been reaped now, so the rest of the machine's busy time is others'.
        let used = cpu.finish(cores());
        println!(
            "\nCPU used by other processes on this machine during the run: {:.0} of {:.0} core-seconds ({:.0}%); \
             stolen by the hypervisor: {:.0} core-seconds. Above a few percent, expect noise in the timings.",
            used.others,
            used.capacity,
            100.0 * used.others / used.capacity.max(1e-9),
            used.steal
        );
    }
    match outcome {
        Some(Ok(())) => Ok(ExitCode::SUCCESS),
        Some(Err(e)) => Err(e),
        None => Ok(ExitCode::from(130)),
    }
}

/// The storage benchmarks, in a temp dir under /tmp removed afterwards.
fn storage_bench(cli: &Cli) -> Result<ExitCode> {
    let root = tempfile::Builder::new().prefix("kbs-").tempdir_in("/tmp").context("create a temp dir in /tmp")?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        storage::run(root.path(), cli.runs.max(3)).await?;
        storage::guest_io_ratio(root.path(), cli.runs.clamp(1, 5)).await
    })?;
    Ok(ExitCode::SUCCESS)
}

async fn interrupted() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => "interrupted (SIGINT)",
        _ = term.recv() => "terminated (SIGTERM)",
        _ = hup.recv() => "hung up (SIGHUP)",
    }
}

fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

async fn run(cli: &Cli, root: &Path) -> Result<()> {
    let what = cli.what.clone().unwrap_or(What::All);
    let all = what == What::All;
    let cores = cores();
    print_machine(cli, &what, cores);
    let mut memory = report::Memory::default();

    if all || matches!(what, What::Launch | What::Concurrent | What::Rss) {
        // The default overcommit (4 vCPUs per core) would refuse N 1-vCPU instances on a small
        // machine with 507; the benchmark is about launching them, so make room.
        let overcommit = ((cli.concurrency + 1) as f64 / cores as f64).ceil().max(4.0);
        let mut flags: Vec<String> =
            ["--driver", "qemu", "--accel", "auto", "--cpu-overcommit", &overcommit.to_string()]
                .map(String::from)
                .into();
        // kumod's data plane in a namespace of its own, as scripts/up.sh runs it (kumod makes it).
        let kumod_ns = (!cli.no_network).then(|| net::Netns::name("launch"));
        if let Some(ns) = &kumod_ns {
            flags.extend(["--host-netns".to_string(), ns.0.clone()]);
        }
        eprintln!(
            "starting kumod (qemu driver{}) in {}",
            if kumod_ns.is_some() { ", guests with a NIC" } else { ", guests without a NIC" },
            root.join("q").display()
        );
        let mut kumod = Kumod::start(&root.join("q"), &flags).await?;
        memory.kumod_idle_start_kib = procs::vm_rss_kib(kumod.pid);
        let host = kumod.host().await?;
        let accel = host["accelerator"].as_str().unwrap_or("?").to_string();
        println!("kumod accelerator: {accel} — {}", host["accelerator_reason"].as_str().unwrap_or(""));
        kumod.api.create_project(PROJECT).await?;
        if kumod_ns.is_some() {
            let q = format!("?project={PROJECT}");
            kumod.api.post(&format!("/v1/vpcs{q}"), json!({"name": "bench", "ipv4_cidr": "10.30.0.0/16"})).await?;
            let subnet = json!({"name": "bench", "ipv4_cidr": "10.30.0.0/24"});
            kumod.api.post(&format!("/v1/vpc-subnets{q}&vpc=bench"), subnet).await?;
            kumod
                .api
                .create_extra
                .extend([("vpc".to_string(), json!("bench")), ("subnet".to_string(), json!("bench"))]);
        }
        let mut setup = raw::RawSetup::like(
            &kumod,
            &root.join("raw"),
            Path::new(kumod::IMAGE_CACHE),
            kumod::IMAGE,
            kumod::INSTANCE_TYPE,
        )
        .await?;
        if kumod_ns.is_some() {
            setup.net = Some(std::sync::Arc::new(net::RawNet::start(&root.join("rawnet"))?));
        }

        let mut raw_single = None;
        if all || matches!(what, What::Launch | What::Rss) {
            let runs = if what == What::Rss { 1 } else { cli.runs };
            eprintln!("launch latency: {runs} run(s) each side");
            let f = launch::launch_latency(&kumod, &setup, runs).await?;
            if what != What::Rss {
                report::launch(&f, &accel, kumod_ns.is_some());
            }
            raw_single = Some(f.raw.clone());
            memory.single = Some((f.kumod_mem, f.raw_mem));
        }
        if all || what == What::Concurrent {
            let raw_single = match raw_single {
                Some(r) => r,
                None => {
                    eprintln!("raw single boots (baseline of the concurrent benchmark): {} runs", cli.runs);
                    launch::raw_single_boots(&setup, cli.runs).await?
                }
            };
            eprintln!("concurrent launches: {} through kumod, then {} raw", cli.concurrency, cli.concurrency);
            let k = launch::kumod_concurrent(&kumod, cli.concurrency, setup.memory_mib).await?;
            let r = launch::raw_concurrent(&setup, cli.concurrency).await?;
            report::concurrent(&k, &r, &raw_single, cores, kumod_ns.is_some());
            memory.concurrent = Some((k.mem, r.mem));
        }
        memory.kumod_idle_end_kib = procs::vm_rss_kib(kumod.pid);
        let left = kumod.stop();
        if !left.is_empty() {
            println!("\nWARNING: after every instance was deleted through the API and kumod stopped, {} process(es) were still running under its data directory (killed now):", left.len());
            for l in &left {
                println!("  {l}");
            }
        }
    }

    if all || what == What::Api {
        eprintln!(
            "API throughput: sim kumod with {} instances, {} connections, {} s per run",
            api_load::INSTANCES,
            cli.connections,
            cli.seconds
        );
        let f = api_load::api_throughput(root, cli.connections, cli.seconds).await?;
        report::api(&f, cores);
        memory.sim_kumod_loaded_kib = f.sim_kumod_rss_kib;
    }

    if all || what == What::Rss {
        report::memory(&memory);
    }

    if what == What::Boot {
        let opts = boot::BootOptions {
            image: cli.image.clone(),
            image_cache: cli.image_cache.clone(),
            instance_type: cli.instance_type.clone(),
            runs: cli.runs,
        };
        eprintln!(
            "boot: {} of {} ({}), {} round(s), kumod and raw interleaved",
            opts.image,
            opts.image_cache.display(),
            opts.instance_type,
            opts.runs
        );
        let f = boot::run(&root.join("boot"), &opts).await?;
        report::boot(&f, &opts);
    }

    if what == What::Cluster {
        let Some(postgres) = cli.postgres.clone() else {
            bail!("cluster needs --postgres URL (e.g. --postgres \"$(scripts/postgres.sh | tail -n 1)\")");
        };
        let opts = cluster::Options {
            hosts: cli.hosts,
            zones: cli.zones,
            instances: cli.instances,
            creates: cli.creates,
            concurrency: cli.connections,
            seconds: cli.seconds,
            postgres,
        };
        let f = cluster::run(root, &opts).await?;
        report::cluster(&f);
    }

    if what == What::S3 {
        eprintln!("object storage: {} round(s)", cli.runs);
        let f = s3::run(root, cli.runs).await?;
        report::s3(&f);
    }

    if what == What::Reads {
        let mut figures = Vec::new();
        eprintln!("fast read paths: SQLite");
        figures.push(reads::run(root, "SQLite", None, cli.connections, cli.seconds, cli.only).await?);
        match &cli.postgres {
            Some(admin) => {
                eprintln!("fast read paths: PostgreSQL");
                let db = reads::PgDb::create(admin).await?;
                let r = reads::run(root, "PostgreSQL", Some(&db.url), cli.connections, cli.seconds, cli.only).await;
                db.drop_now().await;
                figures.push(r?);
            }
            None => println!(
                "(no --postgres URL: PostgreSQL not measured; e.g. --postgres \"$(scripts/postgres.sh | tail -n 1)\")"
            ),
        }
        report::reads(&figures);
    }
    Ok(())
}

/// 1, 5 and 15 minute load averages: other work on the machine shows here.
fn loadavg() -> String {
    let l = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The machine and the options, first thing in the report.
fn print_machine(cli: &Cli, what: &What, cores: usize) {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
        .unwrap_or_default();
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .unwrap_or("")
        .trim_matches('"')
        .to_string();
    let version = |bin: &Path| {
        std::process::Command::new(bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
            .unwrap_or_else(|e| format!("unavailable ({e})"))
    };
    let kumod_version = kumod::binary().map(|b| version(&b)).unwrap_or_default();
    println!("# kumo-bench {}", what_name(what));
    println!();
    println!(
        "machine: {os}, kernel {}, {cores} cores ({cpu}), {:.1} GiB RAM",
        read("/proc/sys/kernel/osrelease").trim(),
        mem_kib as f64 / 1048576.0
    );
    println!("qemu:    {}", version(Path::new(kumo_agent::compute::qemu::QEMU_BINARY)));
    println!("kumod:   {kumod_version}");
    println!("load:    {} (1/5/15-minute load average before the run)", loadavg());
    if *what == What::Cluster {
        println!(
            "options: --hosts {} --zones {} --instances {} --creates {} --connections {} --seconds {}",
            cli.hosts, cli.zones, cli.instances, cli.creates, cli.connections, cli.seconds
        );
    } else if *what == What::S3 {
        println!(
            "options: --runs {} (part {} MiB, {} parts in flight, {} threads for the small objects)",
            cli.runs,
            s3::PART >> 20,
            s3::CONCURRENCY,
            s3::THREADS
        );
    } else if *what == What::Boot {
        println!(
            "options: --runs {} --image {} --image-cache {} --instance-type {}",
            cli.runs,
            cli.image,
            cli.image_cache.display(),
            cli.instance_type
        );
    } else {
        println!(
            "options: --runs {} --concurrency {} --seconds {} --connections {}",
            cli.runs, cli.concurrency, cli.seconds, cli.connections
        );
    }
}

fn what_name(w: &What) -> &'static str {
    match w {
        What::All => "all",
        What::Launch => "launch",
        What::Concurrent => "concurrent",
        What::Api => "api",
        What::Rss => "rss",
        What::ServeStatic { .. } => "serve-static",
        What::Storage => "storage",
        What::Reads => "reads",
        What::Boot => "boot",
        What::Cluster => "cluster",
        What::S3 => "s3",
    }
}
