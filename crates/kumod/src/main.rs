//! `kumod`: the Kumo server. With no role flags it runs all-in-one: the control plane (REST API,
//! reconcilers, store) and the local host's agent (hypervisor driver) in one process.

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use kumo_agent::compute::kvm_probe::{self, AccelRequest, ProbeImage};
use kumo_agent::compute::{capacity, qemu::QemuDriver, sim::SimDriver};
use kumo_agent::storage::keys::{KeyStore, MasterKey};
use kumo_agent::storage::pool::DirPool;
use kumo_agent::{Hypervisor, LocalAgent};
use kumo_control::{App, ControlConfig};
use kumo_host_api::{HostAgent, JsonRoundTrip};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod agent;
mod controller;
mod tls;

#[derive(Parser, Debug)]
#[command(name = "kumod", version, about = "The Kumo IaaS server (all-in-one: control plane + local host agent)")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the OpenAPI document of the REST API.
    Openapi,
    /// Run a controller of a cluster: the REST API and the background work, on a shared database
    /// (PostgreSQL), reaching the hosts' agents over the network; no guest runs here.
    Controller(RunArgs),
    /// Run a host's agent: joins a cluster's controllers (once, with a join token), serves them
    /// the host-agent API over HTTPS, renews its lease and fences itself when it cannot.
    Agent(agent::AgentArgs),
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum DriverKind {
    /// Real QEMU guests.
    Qemu,
    /// Simulated hypervisor (tests, scale simulations): no guest really runs.
    Sim,
}

/// How the control plane holds the local host's agent.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum AgentAdapter {
    /// Directly, in process.
    Direct,
    /// Through a JSON round trip of every call and its answer: proves the host-agent seam can
    /// cross a wire (tests; see kumo_host_api::JsonRoundTrip).
    Json,
    /// Over HTTPS, as a controller reaches a remote host: the local agent is served on a loopback
    /// port (a fresh self-signed certificate, a random secret) and the control plane calls it
    /// through a `RemoteAgent` pinned to that certificate (tests; see kumo-host-rpc).
    Http,
}

#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// Data directory: database, images, instance disks and run directories, admin token.
    #[arg(long, env = "KUMOD_DATA_DIR", default_value = "/var/lib/kumo")]
    data_dir: PathBuf,
    /// Address to serve the API on (port 0 picks a free port; the chosen address is written to DATA_DIR/kumod.addr).
    #[arg(long, env = "KUMOD_LISTEN", default_value = "127.0.0.1:7400")]
    listen: SocketAddr,
    /// Address of the S3-compatible object storage endpoint (port 0 picks a free port; the chosen
    /// address is written to DATA_DIR/s3.addr).
    #[arg(long, env = "KUMOD_S3_LISTEN", default_value = "127.0.0.1:7480")]
    s3_listen: SocketAddr,
    /// Domain of virtual-host-style S3 requests (BUCKET.DOMAIN); repeatable. Path-style requests
    /// are answered whatever the host name.
    #[arg(long = "s3-domain", env = "KUMOD_S3_DOMAIN", value_delimiter = ',')]
    s3_domains: Vec<String>,
    /// Database URL: sqlite:///path or postgres://user:pass@host/db (default: SQLite in the data directory).
    #[arg(long, env = "KUMOD_DATABASE")]
    database: Option<String>,
    /// Hypervisor driver.
    #[arg(long, env = "KUMOD_DRIVER", value_enum, default_value = "qemu")]
    driver: DriverKind,
    /// Accelerator: auto (probe KVM with a timed boot, fall back to TCG), kvm or tcg.
    #[arg(long, env = "KUMOD_ACCEL", default_value = "auto")]
    accel: String,
    /// Machine-wide image cache; each subdirectory with a manifest.json becomes a public image.
    #[arg(long, env = "KUMOD_IMAGE_CACHE", default_value = "/var/cache/kumo/images")]
    image_cache: PathBuf,
    /// Name of this host (default: the machine's hostname).
    #[arg(long, env = "KUMOD_HOST_NAME")]
    host_name: Option<String>,
    /// vCPUs that may be reserved per physical CPU.
    #[arg(long, default_value_t = 4.0)]
    cpu_overcommit: f64,
    /// Memory that may be reserved per MiB of physical memory.
    #[arg(long, default_value_t = 1.0)]
    memory_overcommit: f64,
    /// Disk that may be reserved per GiB of the data directory's filesystem.
    #[arg(long, default_value_t = 1.0)]
    disk_overcommit: f64,
    /// Override the host's CPU count offered to guests.
    #[arg(long)]
    host_vcpus: Option<i64>,
    /// Override the host's memory offered to guests, MiB.
    #[arg(long)]
    host_memory_mib: Option<i64>,
    /// Override the host's disk offered to guests, GiB.
    #[arg(long)]
    host_disk_gib: Option<i64>,
    /// GPUs this host offers.
    #[arg(long, default_value_t = 0)]
    host_gpus: i64,
    /// Seconds a stop waits for the guest to power off after ACPI powerdown before forcing it.
    #[arg(long, default_value_t = 30)]
    stop_timeout: u64,
    /// Largest image upload accepted, GiB.
    #[arg(long, default_value_t = 64)]
    max_image_gib: u64,
    /// Days to keep audit log entries (default: forever); older ones are pruned hourly.
    #[arg(long, env = "KUMOD_AUDIT_RETENTION_DAYS", value_parser = clap::value_parser!(u64).range(1..))]
    audit_retention_days: Option<u64>,
    /// Artificial latency of every sim-driver operation, milliseconds.
    #[arg(long, default_value_t = 0)]
    sim_latency_ms: u64,
    /// Seconds between two samples of every running instance's metrics (CPU, memory, disk, network).
    #[arg(long, env = "KUMOD_METRICS_INTERVAL", default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..))]
    metrics_interval: u64,
    /// Put the tenant-network data plane (bridges, taps, nft tables, DHCP, metadata, the public
    /// uplink) in this network namespace, created if missing (default: the machine's own).
    #[arg(long, visible_alias = "netns", env = "KUMOD_HOST_NETNS", conflicts_with = "host_network")]
    host_netns: Option<String>,
    /// Run the tenant-network data plane in the machine's own network namespace (production).
    /// Without this or --host-netns, guests get no NIC (their addresses are still allocated).
    #[arg(long, env = "KUMOD_HOST_NETWORK")]
    host_network: bool,

    /// How the control plane holds the local agent (`json`: every call round-trips through JSON;
    /// `http`: every call goes over HTTPS to the agent served on a loopback port).
    #[arg(long, env = "KUMOD_AGENT_ADAPTER", value_enum, default_value = "direct", hide = true)]
    agent_adapter: AgentAdapter,
    /// The operator's public IPv4 pool for floating IPs, e.g. 203.0.113.0/24 (its first address
    /// is the host's uplink address).
    #[arg(long, env = "KUMOD_PUBLIC_IP_POOL")]
    public_ip_pool: Option<ipnet::Ipv4Net>,
    /// HTTPS: --tls-cert/--tls-key, --tls-self-signed, --tls-san, --insecure-http (see tls.rs).
    #[command(flatten)]
    tls: tls::TlsArgs,
    /// A reverse proxy (CIDR, repeatable) whose forwarded-client header is believed for the login
    /// rate limit and the audit log; the right-most address not in these networks is the client.
    /// Comma-separated in the environment variable.
    #[arg(long = "trusted-proxy", env = "KUMOD_TRUSTED_PROXIES", value_name = "CIDR", value_delimiter = ',')]
    trusted_proxies: Vec<ipnet::IpNet>,
    /// The header the trusted proxies write: x-forwarded-for or forwarded (RFC 7239). Only that
    /// one is read: a proxy passes the other on from the client untouched.
    #[arg(long, env = "KUMOD_FORWARDED_HEADER", default_value = "x-forwarded-for")]
    forwarded_header: kumo_control::http::forwarded::ForwardedHeader,
    /// The master key that seals volume keys, kept outside the data directory (32 raw bytes, 64
    /// hex digits or base64). Default: DATA_DIR/master.key, made on first use. The environment
    /// variable KUMOD_MASTER_KEY (hex or base64) gives the key itself instead.
    #[arg(long, env = "KUMOD_MASTER_KEY_FILE")]
    master_key_file: Option<PathBuf>,
    /// Days leaked and orphaned files stay in DATA_DIR/quarantine before they are deleted.
    #[arg(long, env = "KUMOD_QUARANTINE_DAYS", default_value_t = 7)]
    quarantine_days: u64,
    /// Minutes between two orphan sweeps of the data directory (one also runs at every start).
    #[arg(long, env = "KUMOD_SWEEP_MINUTES", default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    sweep_minutes: u64,
    /// Seconds between two scans of --image-cache for new images and new builds (one also runs at
    /// every start, before the API serves).
    #[arg(long, env = "KUMOD_IMAGE_RESCAN_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    image_rescan_seconds: u64,
    /// An agent host whose last heartbeat is older than this many seconds is `unreachable`: the
    /// scheduler places nothing on it (the all-in-one's own host is never unreachable).
    #[arg(long, env = "KUMOD_HOST_UNREACHABLE_SECONDS", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    host_unreachable_seconds: u64,
    /// How the scheduler orders the hosts that can take an instance: `spread` (most free memory
    /// first) or `pack` (least free memory first: hosts filled one by one). Placement groups'
    /// policies come first.
    #[arg(long, env = "KUMOD_SCHEDULER_WEIGHTS", default_value = "spread",
          value_parser = |s: &str| s.parse::<kumo_control::scheduler::Weights>())]
    scheduler_weights: kumo_control::scheduler::Weights,
    /// Cap of each instance's serial log, MiB: past it, the oldest bytes are trimmed (down to
    /// half the cap) at the next monitoring round; the console API keeps absolute offsets.
    #[arg(long, env = "KUMOD_SERIAL_LOG_MAX_MIB", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=4096))]
    serial_log_max_mib: u64,
    /// Unprivileged system user QEMU and qemu-img (on uploaded images) run as; created when
    /// missing. Empty: they run as kumod's user (not recommended).
    #[arg(long, env = "KUMOD_QEMU_USER", default_value = kumo_agent::compute::confine::DEFAULT_USER)]
    qemu_user: String,
    /// Root-disk I/O allowance per vCPU of the instance type, in requests per second (0: unlimited).
    #[arg(long, env = "KUMOD_ROOT_DISK_IOPS_PER_VCPU", default_value_t = kumo_agent::compute::qemu::ROOT_IOPS_PER_VCPU)]
    root_disk_iops_per_vcpu: u64,
    /// Root-disk I/O allowance per vCPU of the instance type, in MiB/s (0: unlimited).
    #[arg(long, env = "KUMOD_ROOT_DISK_MIB_S_PER_VCPU", default_value_t = kumo_agent::compute::qemu::ROOT_MIB_S_PER_VCPU)]
    root_disk_mib_s_per_vcpu: u64,
}

/// The environment variable giving the master key itself (hex or base64), for services whose
/// secrets come in their environment. Not a flag: a command line is visible to every local user.
const MASTER_KEY_ENV: &str = "KUMOD_MASTER_KEY";

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::Openapi) = cli.command {
        print!("{}", kumo_control::openapi::document_json());
        return Ok(());
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,sqlx=warn,tower_http=warn".into()),
        )
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match cli.command {
        Some(Command::Controller(args)) => rt.block_on(controller::run(args)),
        Some(Command::Agent(args)) => rt.block_on(agent::run(args)),
        _ => rt.block_on(run(cli.run)),
    }
}

/// Holds an exclusive lock on the data directory for the life of the process: two kumods on one
/// data directory would fight over the same guests. The kernel drops it when the process dies.
///
/// A POSIX record lock (`fcntl(F_SETLK)`), not `flock(2)`: an flock belongs to the open file
/// description, which a child forked to start QEMU or qemu-img shares until its `exec` — and a
/// child still in its `pre_exec` (joining a cgroup can take tens of milliseconds) when kumod is
/// killed kept the lock, so the restarted kumod refused to start. A record lock belongs to the
/// process alone and is never inherited by a fork.
fn lock_data_dir(dir: &Path) -> anyhow::Result<std::fs::File> {
    let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(dir.join("kumod.lock"))?;
    // SAFETY: a zeroed flock struct is valid; fcntl(2) on a descriptor we own.
    let taken = unsafe {
        let mut lock: libc::flock = std::mem::zeroed();
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        libc::fcntl(f.as_raw_fd(), libc::F_SETLK, &lock) == 0
    };
    if !taken {
        bail!("another kumod is already running on {}", dir.display());
    }
    Ok(f)
}

pub(crate) fn host_name(args: &RunArgs) -> String {
    args.host_name.clone().unwrap_or_else(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_lowercase())
            .ok()
            .and_then(|s| kumo_types::Name::parse(&s).ok().map(|n| n.to_string()))
            .unwrap_or_else(|| "host-1".into())
    })
}

/// The kernel+initrd the KVM probe boots: the tiny image from the cache, when built.
fn probe_image(cache: &Path) -> Option<ProbeImage> {
    let dir = cache.join("tiny");
    let m: serde_json_lite::Manifest = serde_json_lite::read(&dir.join("manifest.json"))?;
    Some(ProbeImage {
        kernel: dir.join(m.kernel?),
        initrd: m.initrd.map(|i| dir.join(i)),
        cmdline: m.cmdline.unwrap_or_else(|| "console=ttyS0".into()),
    })
}

mod serde_json_lite {
    //! Reads the few fields of an image manifest the probe needs.
    pub struct Manifest {
        pub kernel: Option<String>,
        pub initrd: Option<String>,
        pub cmdline: Option<String>,
    }
    pub fn read(path: &std::path::Path) -> Option<Manifest> {
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
        let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(String::from);
        Some(Manifest { kernel: s("kernel"), initrd: s("initrd"), cmdline: s("cmdline") })
    }
}

/// Where the master key comes from: `--master-key-file`, `KUMOD_MASTER_KEY`, or the data
/// directory's own file.
pub(crate) fn master_key(args: &RunArgs, data_dir: &Path) -> anyhow::Result<MasterKey> {
    let env = std::env::var(MASTER_KEY_ENV).ok().filter(|v| !v.trim().is_empty());
    let in_dir = data_dir.join("master.key");
    let key = match (&args.master_key_file, env) {
        (Some(_), Some(_)) => {
            bail!("give the master key once: --master-key-file (KUMOD_MASTER_KEY_FILE) or {MASTER_KEY_ENV}, not both")
        }
        (Some(path), None) => {
            let bytes = std::fs::read(path).with_context(|| {
                format!(
                    "read the master key file {} (to move the data directory's key there: mv {} {0}; a new key, \
                     only before any encrypted volume exists: head -c 32 /dev/urandom > {0})",
                    path.display(),
                    in_dir.display()
                )
            })?;
            if let Ok(m) = std::fs::metadata(path) {
                use std::os::unix::fs::PermissionsExt;
                if m.permissions().mode() & 0o077 != 0 {
                    tracing::warn!(
                        "the master key file {} is readable by other local users; chmod 600 it",
                        path.display()
                    );
                }
            }
            MasterKey::parse(&bytes, &path.display().to_string()).map_err(anyhow::Error::msg)?
        }
        (None, Some(v)) => MasterKey::parse(v.as_bytes(), &format!("the environment ({MASTER_KEY_ENV})"))
            .map_err(anyhow::Error::msg)?,
        (None, None) => return Ok(MasterKey::File(in_dir)),
    };
    if in_dir.exists() {
        tracing::warn!(
            "the master key is given from {} but {} still lies beside the volumes it protects; remove it once \
             the key is safe elsewhere",
            key.describe(),
            in_dir.display()
        );
    }
    Ok(key)
}

/// Refuses a master key that does not open the keys of the existing encrypted volumes.
fn check_master_key(data_dir: &Path, master: &MasterKey) -> anyhow::Result<()> {
    let keys = KeyStore::with_master(data_dir.join("volumes").join("keys"), master.clone());
    let check = keys.check_master().map_err(|e| anyhow::anyhow!("refusing to start: {e}"))?;
    if check.open == 0 && !check.refused.is_empty() {
        bail!(
            "refusing to start: the master key from {} does not open the keys of the {} encrypted volume(s) in {} \
             (e.g. volume {}): it is not the key that sealed them. Give the right key (--master-key-file, \
             KUMOD_MASTER_KEY_FILE or {MASTER_KEY_ENV}); nothing was changed",
            master.describe(),
            check.refused.len(),
            keys.dir().display(),
            check.refused[0]
        );
    }
    for v in &check.refused {
        tracing::warn!(volume = %v, "the master key does not open this volume's key (corrupt key file?)");
    }
    Ok(())
}

/// What every role does first with its data directory: owner-only files, the directory made and
/// locked (one process per data directory), the user QEMU runs as.
pub(crate) fn prepare_data_dir(args: &RunArgs) -> anyhow::Result<(PathBuf, std::fs::File)> {
    // Everything kumod, QEMU and qemu-img create is owner-only (see kumo_control::modes).
    // SAFETY: umask(2) cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    std::fs::create_dir_all(&args.data_dir).with_context(|| format!("create {}", args.data_dir.display()))?;
    let data_dir = args.data_dir.canonicalize()?;
    if !args.qemu_user.is_empty() {
        kumo_agent::compute::confine::set_user_name(&args.qemu_user);
    }
    let lock = lock_data_dir(&data_dir)?;
    Ok((data_dir, lock))
}

/// Opens the store of a control plane (all-in-one or controller) and checks that it and the data
/// directory belong to the same cloud.
pub(crate) async fn open_store(args: &RunArgs, data_dir: &Path) -> anyhow::Result<kumo_store::Store> {
    let db_url = args.database.clone().unwrap_or_else(|| format!("sqlite://{}", data_dir.join("kumo.db").display()));
    let store = kumo_store::Store::open(&db_url)
        .await
        .with_context(|| format!("open database {}", kumo_control::identity::redact(&db_url)))?;
    // Before anything acts on the data directory: is this store its own, and which host is this?
    kumo_control::identity::check_cloud(&store, data_dir, &db_url).await?;
    Ok(store)
}

/// The host's master key, checked against the encrypted volumes it must open; then the data
/// directory's modes are fixed.
pub(crate) fn master_key_checked(args: &RunArgs, data_dir: &Path) -> anyhow::Result<MasterKey> {
    let master = master_key(args, data_dir)?;
    check_master_key(data_dir, &master)?;
    let fixed = kumo_control::modes::secure(data_dir);
    if fixed > 0 {
        tracing::warn!("{fixed} path(s) in {} were readable by other local users; fixed", data_dir.display());
    }
    Ok(master)
}

/// The host's capacity offered to guests: [vCPUs, MiB of memory, GiB of disk, GPUs].
fn host_capacity(args: &RunArgs, data_dir: &Path) -> [i64; 4] {
    [
        args.host_vcpus.unwrap_or_else(capacity::cpus),
        args.host_memory_mib.unwrap_or_else(capacity::memory_mib),
        args.host_disk_gib.unwrap_or_else(|| capacity::disk_gib(data_dir)),
        args.host_gpus,
    ]
}

/// The local host's agent: the hypervisor driver, storage pool, quarantine and (with a data
/// plane) the tenant network, as `args` ask.
pub(crate) async fn local_agent(
    args: &RunArgs,
    data_dir: &Path,
    master: MasterKey,
    quarantine: Arc<kumo_agent::storage::quarantine::Quarantine>,
) -> anyhow::Result<LocalAgent> {
    let capacity = host_capacity(args, data_dir);
    let name = host_name(args);
    let hypervisor: Arc<dyn Hypervisor> = match args.driver {
        DriverKind::Sim => Arc::new(SimDriver::new(name, capacity, Duration::from_millis(args.sim_latency_ms))),
        DriverKind::Qemu => {
            let req: AccelRequest = args.accel.parse().map_err(anyhow::Error::msg)?;
            let probe = probe_image(&args.image_cache);
            let cache = args.image_cache.parent().unwrap_or(Path::new("/var/cache/kumo")).to_path_buf();
            let (accel, reason) = kvm_probe::choose(req, probe.as_ref(), &cache, Duration::from_secs(8)).await;
            tracing::info!(accelerator = accel.as_str(), %reason, "accelerator chosen");
            let pool = DirPool::with_master(data_dir.join("volumes"), master);
            Arc::new(
                QemuDriver::new(data_dir.join("instances"), name, accel, reason, capacity)
                    .with_pool(Arc::new(pool))
                    .with_netns(args.host_netns.clone())
                    .with_user(if args.qemu_user.is_empty() {
                        None
                    } else {
                        kumo_agent::compute::confine::unprivileged()
                    })
                    .with_root_disk_limits(kumo_agent::IoLimits {
                        iops: Some(args.root_disk_iops_per_vcpu),
                        bytes_per_sec: Some(args.root_disk_mib_s_per_vcpu << 20),
                    }),
            )
        }
    };
    let local = LocalAgent::new(hypervisor, data_dir, quarantine);
    // The host network data plane (bridges, taps, nft, DHCP, metadata); the sim driver has no
    // guests to connect: no data plane.
    Ok(match (&args.driver, &args.host_netns, args.host_network) {
        (DriverKind::Qemu, Some(ns), _) => local.with_network(Some(ns.clone())),
        (DriverKind::Qemu, None, true) => local.with_network(None),
        _ => local,
    })
}

/// The control plane's configuration from the flags; `host_id` is the local host's (a
/// controller passes an id no host has).
pub(crate) fn control_config(
    args: &RunArgs,
    data_dir: &Path,
    host_id: kumo_types::HostId,
    master_key: MasterKey,
) -> ControlConfig {
    ControlConfig {
        data_dir: data_dir.to_path_buf(),
        stop_timeout: Duration::from_secs(args.stop_timeout),
        overcommit: [args.cpu_overcommit, args.memory_overcommit, args.disk_overcommit],
        max_image_bytes: args.max_image_gib << 30,
        reconcile_period: Duration::from_secs(2),
        audit_retention: args.audit_retention_days.map(|d| Duration::from_secs(d * 86_400)),
        metrics_interval: Duration::from_secs(args.metrics_interval),
        public_ip_pool: args.public_ip_pool.map(|p| p.trunc()),
        trusted_proxies: kumo_control::http::forwarded::TrustedProxies {
            networks: args.trusted_proxies.iter().map(|n| n.trunc()).collect(),
            header: args.forwarded_header,
        },
        host_id,
        quarantine_grace: Duration::from_secs(args.quarantine_days * 86_400),
        sweep_period: Duration::from_secs(args.sweep_minutes * 60),
        serial_log_max_bytes: args.serial_log_max_mib << 20,
        image_cache: Some(args.image_cache.clone()),
        image_rescan_period: Duration::from_secs(args.image_rescan_seconds),
        host_unreachable_after: Duration::from_secs(args.host_unreachable_seconds),
        scheduler_weights: args.scheduler_weights,
        master_key,
    }
}

/// Writes a listener's address file whole (a reader never sees it half-written).
fn write_addr(path: &Path, addr: std::net::SocketAddr) -> anyhow::Result<()> {
    let tmp = path.with_extension("addr.tmp");
    std::fs::write(&tmp, format!("{addr}\n"))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// Serves the API and the dashboard on `args.listen` until SIGTERM / Ctrl-C (writing the address
/// chosen to DATA_DIR/kumod.addr).
pub(crate) async fn serve_api(
    app: Arc<App>,
    args: &RunArgs,
    data_dir: &Path,
    tls: Option<tls::ServerTls>,
) -> anyhow::Result<()> {
    // The object storage endpoint (kumo-s3), on its own listener. Its address is written before
    // kumod.addr, which tells scripts and tests that kumod serves: both are there by then.
    let s3 = tokio::net::TcpListener::bind(args.s3_listen)
        .await
        .with_context(|| format!("listen on {} for the S3 endpoint (--s3-listen)", args.s3_listen))?;
    let s3_addr = s3.local_addr()?;
    write_addr(&data_dir.join("s3.addr"), s3_addr)?;
    // Built before serving: a bad --s3-domain refuses the start.
    let s3_service = kumo_s3::service(app.clone(), &args.s3_domains)?;
    let listener =
        tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = kumo_s3::serve(s3_service, s3).await {
            tracing::error!(error = %format!("{e:#}"), "the S3 endpoint stopped");
        }
    });
    write_addr(&data_dir.join("kumod.addr"), addr)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!("kumod listening on {scheme}://{addr} (data dir {})", data_dir.display());
    match &tls {
        Some(t) => println!("kumod listening on https://{addr} (certificate SHA-256 fingerprint {})", t.fingerprint),
        None => println!("kumod listening on http://{addr}"),
    }
    println!("kumod S3 endpoint on http://{s3_addr}");
    // The dashboard (kumo-web) is served beside the API, at /.
    let served = tls::serve(app.clone(), listener, tls, shutdown_signal()).await;
    // The S3 requests counted since the last flush are billed too.
    if let Err(e) = app.requests.flush(&app.store).await {
        tracing::warn!(error = %e, "could not record the last S3 request counts");
    }
    served
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let (data_dir, _lock) = prepare_data_dir(&args)?;
    // Before anything starts, so an unusable certificate refuses the start.
    let tls = tls::setup(&args.tls, args.listen, &data_dir)?;
    let store = open_store(&args, &data_dir).await?;
    let master = master_key_checked(&args, &data_dir)?;
    let host_id = kumo_control::identity::host_id(&store, &data_dir, &host_name(&args)).await?;
    let config = control_config(&args, &data_dir, host_id, master.clone());
    let quarantine = Arc::new(kumo_agent::storage::quarantine::Quarantine::new(config.quarantine_dir()));
    let local = local_agent(&args, &data_dir, master, quarantine.clone()).await?;
    let agent: Arc<dyn HostAgent> = match args.agent_adapter {
        AgentAdapter::Direct => Arc::new(local),
        AgentAdapter::Json => Arc::new(JsonRoundTrip(local)),
        AgentAdapter::Http => Arc::new(serve_agent_on_loopback(Arc::new(local)).await?),
    };
    let app = App::open(store, agent, quarantine, config).await?;
    // Leftovers of a crash, before anything new is made (nothing is in flight yet).
    kumo_control::background::sweep::startup(&app).await;
    kumo_control::background::images::startup(&app).await;
    // Converge the network first: guests started by the reconciler need their taps.
    if let Err(e) = kumo_control::background::network::converge(&app).await {
        tracing::warn!("network: {e:#}");
    }
    kumo_control::background::spawn_all(&app);
    serve_api(app, &args, &data_dir, tls).await?;
    tracing::info!("kumod stopped; guests keep running and are found again at the next start");
    Ok(())
}

/// Serves `agent`'s API over HTTPS on a free loopback port, with a fresh self-signed certificate
/// and a random secret, for as long as kumod runs; returns the client the control plane holds.
async fn serve_agent_on_loopback(agent: Arc<dyn HostAgent>) -> anyhow::Result<kumo_host_rpc::client::RemoteAgent> {
    use kumo_host_rpc::{server, tls};
    let cert = tls::self_signed(&["127.0.0.1".to_string()])?;
    let secret = server::new_secret();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("listen for the host agent's API")?;
    let base = format!("https://{}", listener.local_addr()?);
    let router = server::router(agent, secret.clone());
    let config = tls::server_config(&cert)?;
    tokio::spawn(async move {
        // No shutdown of its own: the agent serves the control plane until the process ends.
        if let Err(e) = server::serve_tls(listener, router, config, std::future::pending()).await {
            tracing::error!("the host agent's API stopped: {e:#}");
        }
    });
    let remote = kumo_host_rpc::client::RemoteAgent::new(&base, &cert.fingerprint, &secret)?;
    remote.health().await.context("the host agent's API on loopback")?;
    tracing::info!(fingerprint = %cert.fingerprint, "the control plane reaches the local agent over HTTPS at {base}");
    Ok(remote)
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
