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
use crate::net::{Netns, RawNet, RAW_FIRST_IP};
use crate::procs;
use crate::raw::RawSetup;
use anyhow::{bail, Context, Result};
use kumo_agent::NicSpec;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A new SSH probe at most this often (each probe waits for its predecessor).
pub const PROBE_EVERY: Duration = Duration::from_millis(500);
/// One probe's connect timeout (a guest without its address yet does not answer ARP).
const CONNECT_TIMEOUT_S: u32 = 3;
/// First boot under TCG on 2 shared cores took 75–120 s in the tests; far more is a failure.
const BOOT_TIMEOUT: Duration = Duration::from_secs(900);
const DELETE_TIMEOUT: Duration = Duration::from_secs(180);
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
    /// Of each kumod boot: how long its cgroup's CPU quota held QEMU back until SSH answered.
    pub kumod_throttled: Vec<f64>,
    /// Of each kumod boot: QEMU's CPU time (all its threads) until SSH answered.
    pub kumod_qemu_cpu: Vec<f64>,
    /// Of each raw boot: QEMU's CPU time until SSH answered.
    pub raw_qemu_cpu: Vec<f64>,
    pub raw: Vec<Duration>,
    pub accel: String,
    pub user: String,
    pub vcpus: i64,
    pub memory_mib: i64,
    pub disk_gib: i64,
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

/// With `KUMO_BENCH_BOOT_DIAG=1`: what the guest says about its boot (systemd's and cloud-init's
/// own timings), printed to stderr after each boot, to see where two sides' boots differ.
async fn print_guest_diagnostics(side: &str, netns: &str, key: &Path, user: &str, addr: &str) {
    if std::env::var_os("KUMO_BENCH_BOOT_DIAG").is_none_or(|v| v != "1") {
        return;
    }
    let script =
        "systemd-analyze; systemd-analyze blame | head -n 12; cloud-init analyze blame 2>/dev/null | head -n 14; \
                  cat /etc/resolv.conf; ip -br addr; ip route";
    let out = tokio::process::Command::new("ip")
        .args(["netns", "exec", netns, "ssh", "-i"])
        .arg(key)
        .args(["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10"])
        .arg(format!("{user}@{addr}"))
        .arg(format!("cloud-init status --wait >/dev/null 2>&1; {script}"))
        .stdin(Stdio::null())
        .output()
        .await;
    match out {
        Ok(o) => eprintln!(
            "--- {side} guest's own boot timings:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => eprintln!("--- {side} guest: ssh failed: {e}"),
    }
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

    let mut setup =
        RawSetup::like(&kumod, &root.join("raw"), &opts.image_cache, &opts.image, &opts.instance_type).await?;
    let raw_net = Arc::new(RawNet::start(&root.join("rawnet"))?);
    // One tap for every raw boot (one guest at a time): its guest always gets RAW_FIRST_IP.
    let raw_nic = raw_net.add_tap()?;
    setup.net = Some(raw_net.clone());
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
                let b = kumod_boot(&kumod, opts, round, &kumod_ns.0, &key, &user).await?;
                f.kumod_spawn.extend(b.spawn);
                f.kumod_throttled.extend(b.throttled);
                f.kumod_qemu_cpu.extend(b.qemu_cpu);
                b.took
            } else {
                let (took, cpu) = raw_boot(&setup, round, &raw_net.ns.0, &raw_nic, &key, &public, &user).await?;
                f.raw_qemu_cpu.extend(cpu);
                took
            };
            eprintln!("round {}/{}: {side:5} create → SSH {:.1} s", round + 1, opts.runs, took.as_secs_f64());
            if side == "kumod" { &mut f.kumod } else { &mut f.raw }.push(took);
        }
    }

    let left = kumod.stop();
    if !left.is_empty() {
        bail!("after every instance was deleted and kumod stopped, {} process(es) were left: {left:?}", left.len());
    }
    drop(setup);
    drop(raw_net);
    drop(kumod_ns);
    Ok(f)
}

/// What one boot through kumod measured.
struct KumodBoot {
    took: Duration,
    /// Create → QEMU started, when /proc told.
    spawn: Option<f64>,
    throttled: Option<f64>,
    qemu_cpu: Option<f64>,
}

/// One boot through the API (see the module docs); the instance and its floating IP are deleted
/// afterwards.
async fn kumod_boot(
    kumod: &Kumod,
    opts: &BootOptions,
    round: usize,
    ns: &str,
    key: &Path,
    user: &str,
) -> Result<KumodBoot> {
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
    let pid = kumod.qemu_pid(&id);
    let spawn = pid.and_then(procs::started_at).map(|t| (t - boot_before).max(0.0));
    let throttled = pid.and_then(procs::cpu_throttled_secs);
    let qemu_cpu = pid.and_then(procs::cpu_secs);
    print_guest_diagnostics("kumod", ns, key, user, &addr).await;
    api.delete_instance_and_wait(&name, DELETE_TIMEOUT).await?;
    api.delete(&format!("/v1/floating-ips/{fip}{q}")).await?;
    Ok(KumodBoot { took, spawn, throttled, qemu_cpu })
}

/// One raw boot (see the module docs); QEMU is killed and its run directory removed afterwards.
async fn raw_boot(
    setup: &RawSetup,
    round: usize,
    ns: &str,
    nic: &NicSpec,
    key: &Path,
    public: &str,
    user: &str,
) -> Result<(Duration, Option<f64>)> {
    let prepared = setup.prepare_with(&format!("raw{round}"), vec![public.to_string()], vec![nic.clone()]).await?;
    let mut qemu = prepared.spawn()?;
    let started = qemu.spawned();
    let took = wait_for_ssh(started, ns, key, user, RAW_FIRST_IP, || {
        let exited = qemu.exited();
        async move { exited.map_or(Ok(()), |why| Err(anyhow::anyhow!("raw QEMU exited: {why}"))) }
    })
    .await;
    let took =
        took.with_context(|| format!("raw side, round {}; serial tail:\n{}", round + 1, qemu.serial_tail(3000)))?;
    let cpu = procs::cpu_secs(qemu.pid());
    print_guest_diagnostics("raw", ns, key, user, RAW_FIRST_IP).await;
    drop(qemu);
    Ok((took, cpu))
}
