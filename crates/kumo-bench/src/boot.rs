//! `kumo-bench boot`: a real operating system from create to SSH (issue 12), against the same image
//! booted by hand with raw QEMU in the same run.
//!
//! - **kumod**: a kumod with its data plane in a network namespace of its own (`--host-netns`, as
//!   `scripts/up.sh` runs it), a VPC, a subnet, a security group letting SSH in, an SSH key. Timed
//!   from `POST /v1/instances` (with the key) to the first `ssh debian@<floating IP> true` that
//!   succeeds, run inside that namespace as a tenant would; the floating IP is made and attached
//!   right after the create (part of the timed path).
//! - **raw**: `qemu-system-x86_64` with kumod's own command line ([`crate::raw`]): the same image
//!   file, overlay size, vCPUs, memory and a config drive of the same shape (same key, a NIC in
//!   `network_data.json`), its tap on a bridge in a namespace of the benchmark's own where
//!   `dnsmasq` answers DHCP. Timed from QEMU's spawn (overlay, config drive and tap made before,
//!   untimed) to the first successful `ssh debian@<its address> true` from that namespace.
//!
//! Both sides are probed the same way (one `ssh` at a time, a new one at most every
//! [`PROBE_EVERY`]), rounds interleave (kumod first in even rounds, raw first in odd ones), and
//! every guest is gone before the next round starts. Namespaces, dnsmasq and QEMUs are removed on
//! every exit path (guards).

use crate::kumod::{Kumod, PROJECT};
use crate::procs;
use crate::raw::RawSetup;
use anyhow::{bail, Context, Result};
use kumo_agent::NicSpec;
use serde_json::json;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A new SSH probe at most this often (each probe waits for its predecessor).
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// One probe's connect timeout (a guest without its address yet does not answer ARP).
const CONNECT_TIMEOUT_S: u32 = 3;
/// First boot under TCG on 2 shared cores took 75–120 s in the tests; far more is a failure.
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
const DELETE_TIMEOUT: Duration = Duration::from_secs(180);
/// The raw side's bridge network (inside its own namespace).
const RAW_HOST_IP: &str = "10.77.0.1";
const RAW_GUEST_IP: &str = "10.77.0.10";
const RAW_MAC: &str = "52:54:00:6b:62:01";
/// The kumod side's addresses (inside its namespace; documentation prefix for the public pool).
const VPC_CIDR: &str = "10.20.0.0/16";
const SUBNET_CIDR: &str = "10.20.1.0/24";
const PUBLIC_POOL: &str = "203.0.113.0/28";

/// What `kumo-bench boot` boots.
#[derive(Debug, Clone)]
pub struct BootOptions {
    pub image: String,
    pub image_cache: PathBuf,
    pub instance_type: String,
    pub runs: usize,
}

/// One side's times, create/spawn → SSH answers.
#[derive(Debug, Clone, Default)]
pub struct BootFigures {
    pub kumod: Vec<Duration>,
    /// Of each kumod boot: create → its QEMU process started (from /proc, ±10 ms).
    pub kumod_spawn: Vec<f64>,
    pub raw: Vec<Duration>,
    pub accel: String,
    pub user: String,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
}

/// A network namespace, deleted on drop with everything in it.
struct Netns(String);

impl Netns {
    fn name(tag: &str) -> Netns {
        let ns = Netns(format!("kb-{tag}-{}", std::process::id()));
        // One left by an earlier run that was killed.
        let _ = Command::new("ip").args(["netns", "del", &ns.0]).stderr(Stdio::null()).status();
        ns
    }

    fn create(tag: &str) -> Result<Netns> {
        let ns = Netns::name(tag);
        ip(&["netns", "add", &ns.0])?;
        Ok(ns)
    }

    fn ip(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["-n", self.0.as_str()];
        all.extend_from_slice(args);
        ip(&all)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).stderr(Stdio::null()).status();
    }
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().context("run ip (iproute2)")?;
    if !out.status.success() {
        bail!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// A child process killed (and reaped) on drop.
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The raw side's network: a bridge with a tap for the guest and dnsmasq answering DHCP, all in a
/// namespace of the benchmark's own.
struct RawNet {
    // Field order is drop order: dnsmasq stops before its namespace goes.
    _dnsmasq: Reaped,
    ns: Netns,
}

impl RawNet {
    fn start(dir: &Path) -> Result<RawNet> {
        let ns = Netns::create("raw")?;
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&["addr", "add", &format!("{RAW_HOST_IP}/24"), "dev", "br0"])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        let tap = kumo_agent::network::tap_name(RAW_MAC);
        ns.ip(&["tuntap", "add", "dev", &tap, "mode", "tap"])?;
        ns.ip(&["link", "set", &tap, "master", "br0"])?;
        ns.ip(&["link", "set", &tap, "up"])?;
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("dnsmasq.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.0, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0"])
            .args(["--interface=br0", "--bind-interfaces", "--dhcp-authoritative", "--log-dhcp"])
            .arg("--dhcp-range=10.77.0.50,10.77.0.99,1h")
            .arg(format!("--dhcp-host={RAW_MAC},{RAW_GUEST_IP}"))
            .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("run dnsmasq (scripts/install-deps.sh installs it)")?;
        Ok(RawNet { _dnsmasq: Reaped(child), ns })
    }
}

/// One `ssh USER@ADDR true` inside `netns` with the benchmark's key: true once the guest let us in.
async fn ssh_answers(netns: &str, key: &Path, user: &str, addr: &str) -> bool {
    let mut cmd = tokio::process::Command::new("ip");
    cmd.args(["netns", "exec", netns, "ssh", "-i"])
        .arg(key)
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "LogLevel=ERROR", "-o", &format!("ConnectTimeout={CONNECT_TIMEOUT_S}")])
        .arg(format!("{user}@{addr}"))
        .arg("true")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let limit = Duration::from_secs(CONNECT_TIMEOUT_S as u64 + 10);
    matches!(tokio::time::timeout(limit, cmd.status()).await, Ok(Ok(s)) if s.success())
}

/// Probes until SSH answers; `alive` is asked every ~10 probes and fails the wait when the guest
/// is gone. Returns the time since `started` at the successful probe.
async fn wait_for_ssh<F, Fut>(
    started: Instant,
    netns: &str,
    key: &Path,
    user: &str,
    addr: &str,
    mut alive: F,
) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<()>>,
{
    let mut tick = crate::ticker(PROBE_EVERY);
    for probe in 0u64.. {
        tick.tick().await;
        if ssh_answers(netns, key, user, addr).await {
            return Ok(started.elapsed());
        }
        if probe % 10 == 9 {
            alive().await?;
        }
        if started.elapsed() > BOOT_TIMEOUT {
            bail!("no SSH to {user}@{addr} within {BOOT_TIMEOUT:?}");
        }
    }
    unreachable!()
}

fn ssh_keygen(dir: &Path) -> Result<(PathBuf, String)> {
    let key = dir.join("id_ed25519");
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "kumo-bench", "-f"])
        .arg(&key)
        .output()
        .context("run ssh-keygen (openssh-client)")?;
    if !out.status.success() {
        bail!("ssh-keygen: {}", String::from_utf8_lossy(&out.stderr));
    }
    let public = std::fs::read_to_string(key.with_extension("pub"))?.trim().to_string();
    Ok((key, public))
}

/// The whole benchmark (see the module docs).
pub async fn run(root: &Path, opts: &BootOptions) -> Result<BootFigures> {
    let manifest = opts.image_cache.join(&opts.image).join("manifest.json");
    if !manifest.exists() {
        bail!("{} missing: build the image first (images/debian/build.sh, run by scripts/test.sh)", manifest.display());
    }
    std::fs::create_dir_all(root)?;
    let (key, public) = ssh_keygen(root)?;

    // kumod as scripts/up.sh runs it: its data plane in a namespace (which kumod makes).
    let kumod_ns = Netns::name("boot");
    let flags = ["--driver", "qemu", "--accel", "auto", "--stop-timeout", "20", "--host-netns", &kumod_ns.0]
        .into_iter()
        .chain(["--public-ip-pool", PUBLIC_POOL])
        .map(String::from)
        .collect::<Vec<_>>();
    eprintln!("starting kumod (qemu driver, data plane in namespace {}) in {}", kumod_ns.0, root.join("k").display());
    let mut kumod = Kumod::start_with_images(&root.join("k"), &opts.image_cache, &flags).await?;
    let api = kumod.api.clone();
    let host = kumod.host().await?;
    let accel = host["accelerator"].as_str().unwrap_or("?").to_string();
    let image = api.get(&format!("/v1/images/{}", opts.image)).await?;
    let user = image["os_facts"]["default_user"]
        .as_str()
        .with_context(|| format!("image {} has no default user in its OS facts", opts.image))?
        .to_string();
    api.create_project(PROJECT).await?;
    let q = format!("?project={PROJECT}");
    api.post(&format!("/v1/ssh-keys{q}"), json!({"name": "bench", "public_key": public})).await?;
    api.post(&format!("/v1/vpcs{q}"), json!({"name": "boot", "ipv4_cidr": VPC_CIDR})).await?;
    api.post(&format!("/v1/vpc-subnets{q}&vpc=boot"), json!({"name": "boot", "ipv4_cidr": SUBNET_CIDR})).await?;
    let ssh_in =
        json!({"rules": [{"direction": "ingress", "protocol": "tcp", "port_range": "22", "source": "0.0.0.0/0"}]});
    api.put(&format!("/v1/security-groups/default/rules{q}"), ssh_in).await?;

    let setup = RawSetup::like(&kumod, &root.join("raw"), &opts.image_cache, &opts.image, &opts.instance_type).await?;
    let raw_net = RawNet::start(&root.join("rawnet"))?;
    let mut f = BootFigures {
        accel,
        user: user.clone(),
        vcpus: setup.vcpus,
        memory_mib: setup.memory_mib,
        disk_gib: setup.disk_gib,
        ..BootFigures::default()
    };

    for round in 0..opts.runs {
        for side in if round % 2 == 0 { ["kumod", "raw"] } else { ["raw", "kumod"] } {
            let took = if side == "kumod" {
                let (took, spawn) = kumod_boot(&kumod, opts, round, &kumod_ns.0, &key, &user).await?;
                f.kumod_spawn.extend(spawn);
                took
            } else {
                raw_boot(&setup, round, &raw_net.ns.0, &key, &public, &user).await?
            };
            eprintln!("round {}/{}: {side:5} create → SSH {:.1} s", round + 1, opts.runs, took.as_secs_f64());
            if side == "kumod" { &mut f.kumod } else { &mut f.raw }.push(took);
        }
    }

    let left = kumod.stop();
    if !left.is_empty() {
        bail!("after every instance was deleted and kumod stopped, {} process(es) were left: {left:?}", left.len());
    }
    drop(raw_net);
    drop(kumod_ns);
    Ok(f)
}

/// One boot through the API (see the module docs); the instance and its floating IP are deleted
/// afterwards. Returns create → SSH, and create → QEMU started when /proc told.
async fn kumod_boot(
    kumod: &Kumod,
    opts: &BootOptions,
    round: usize,
    ns: &str,
    key: &Path,
    user: &str,
) -> Result<(Duration, Option<f64>)> {
    let api = &kumod.api;
    let q = format!("?project={PROJECT}");
    let name = format!("boot{round}");
    let fip = format!("ip-{name}");
    let body = json!({"name": name, "image": opts.image, "instance_type": opts.instance_type,
        "vpc": "boot", "subnet": "boot", "ssh_keys": ["bench"]});
    let boot_before = procs::boottime_now();
    let started = Instant::now();
    let view = api.post(&format!("/v1/instances{q}"), body).await?;
    let id = view["id"].as_str().context("created instance without id")?.to_string();
    let ip = api.post(&format!("/v1/floating-ips{q}"), json!({"name": fip})).await?;
    let addr = ip["ip"].as_str().context("floating IP view without ip")?.to_string();
    api.post(&format!("/v1/floating-ips/{fip}/attach{q}"), json!({"instance": name})).await?;
    let alive = || async {
        match api.instance(&name).await? {
            Some(v) if v["state"] == "failed" => bail!("instance {name} failed: {v}"),
            Some(_) => Ok(()),
            None => bail!("instance {name} vanished"),
        }
    };
    let took = wait_for_ssh(started, ns, key, user, &addr, alive)
        .await
        .with_context(|| format!("kumod side, round {}; kumod log:\n{}", round + 1, procs::tail(&kumod.log, 3000)))?;
    let spawn = kumod.qemu_pid(&id).and_then(procs::started_at).map(|t| (t - boot_before).max(0.0));
    api.delete_instance_and_wait(&name, DELETE_TIMEOUT).await?;
    api.delete(&format!("/v1/floating-ips/{fip}{q}")).await?;
    Ok((took, spawn))
}

/// One raw boot (see the module docs); QEMU is killed and its run directory removed afterwards.
async fn raw_boot(setup: &RawSetup, round: usize, ns: &str, key: &Path, public: &str, user: &str) -> Result<Duration> {
    let nics = vec![NicSpec { mac: RAW_MAC.to_string() }];
    let prepared = setup.prepare_with(&format!("raw{round}"), vec![public.to_string()], nics).await?;
    let mut qemu = prepared.spawn_in(Some(ns))?;
    let started = qemu.spawned();
    let took = wait_for_ssh(started, ns, key, user, RAW_GUEST_IP, || {
        let exited = qemu.exited();
        async move { exited.map_or(Ok(()), |why| Err(anyhow::anyhow!("raw QEMU exited: {why}"))) }
    })
    .await;
    let took =
        took.with_context(|| format!("raw side, round {}; serial tail:\n{}", round + 1, qemu.serial_tail(3000)))?;
    drop(qemu);
    Ok(took)
}
