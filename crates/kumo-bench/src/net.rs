//! Networks of the benchmarks' guests, as users get them: kumod's data plane lives in a network
//! namespace of its own (`--host-netns`, as `scripts/up.sh` runs it), named by [`Netns::name`]; the
//! raw QEMUs' network is [`RawNet`], a bridge in a namespace of the benchmark's own with a tap per
//! guest and `dnsmasq` answering DHCP. Every piece is a guard: dropping it removes it.

use anyhow::{bail, Context, Result};
use kumo_agent::NicSpec;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

/// The raw side's bridge network (inside its own namespace).
pub const RAW_HOST_IP: &str = "10.77.0.1";
/// The address the first raw guest (MAC [`RAW_FIRST_MAC`]) always gets.
pub const RAW_FIRST_IP: &str = "10.77.0.10";
const RAW_FIRST_MAC: &str = "52:54:00:6b:62:00";
/// Where guests look for a metadata service. The raw side has none: this address on the
/// namespace's loopback makes a guest's request refused at once (as by a host without the
/// service) instead of unanswered until the guest's timeout.
const METADATA_IP: &str = "169.254.169.254";

/// A network namespace, deleted on drop with everything in it.
#[derive(Debug)]
pub struct Netns(pub String);

impl Netns {
    /// `kb-<tag>-<pid>`, not created (kumod makes its own); one left by an earlier run that was
    /// killed is removed.
    pub fn name(tag: &str) -> Netns {
        let ns = Netns(format!("kb-{tag}-{}", std::process::id()));
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
#[derive(Debug)]
struct Reaped(Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The raw side's network (see the module docs).
#[derive(Debug)]
pub struct RawNet {
    // Field order is drop order: dnsmasq stops before its namespace goes.
    _dnsmasq: Reaped,
    pub ns: Netns,
    taps: AtomicU32,
}

impl RawNet {
    /// Makes the namespace, its bridge and dnsmasq (its log and leases in `dir`).
    pub fn start(dir: &Path) -> Result<RawNet> {
        let ns = Netns::create("raw")?;
        ns.ip(&["link", "set", "lo", "up"])?;
        ns.ip(&["addr", "add", &format!("{METADATA_IP}/32"), "dev", "lo"])?;
        ns.ip(&["link", "add", "br0", "type", "bridge"])?;
        ns.ip(&["addr", "add", &format!("{RAW_HOST_IP}/24"), "dev", "br0"])?;
        ns.ip(&["link", "set", "br0", "up"])?;
        std::fs::create_dir_all(dir)?;
        let log = std::fs::File::create(dir.join("dnsmasq.log"))?;
        let child = Command::new("ip")
            .args(["netns", "exec", &ns.0, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0"])
            // `--no-ping`: by default dnsmasq pings an address of the range before offering it and
            // waits 3 s for an answer — a delay kumod's own DHCP server does not have, which made
            // every raw guest after the first (whose address is fixed) 3 s slower.
            .args(["--interface=br0", "--bind-interfaces", "--dhcp-authoritative", "--log-dhcp", "--no-ping"])
            .arg("--dhcp-range=10.77.0.50,10.77.0.250,1h")
            .arg(format!("--dhcp-host={RAW_FIRST_MAC},{RAW_FIRST_IP}"))
            .arg(format!("--dhcp-leasefile={}", dir.join("leases").display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .context("run dnsmasq (scripts/install-deps.sh installs it)")?;
        Ok(RawNet { _dnsmasq: Reaped(child), ns, taps: AtomicU32::new(0) })
    }

    /// A new tap on the bridge, for one guest: the NIC to give it. The first one's guest gets
    /// [`RAW_FIRST_IP`], later ones an address of the DHCP range.
    pub fn add_tap(&self) -> Result<NicSpec> {
        let n = self.taps.fetch_add(1, Ordering::Relaxed);
        let mac = format!("52:54:00:6b:{:02x}:{:02x}", 0x62 + (n >> 8), n & 0xff);
        let tap = kumo_agent::network::tap_name(&mac);
        self.ns.ip(&["tuntap", "add", "dev", &tap, "mode", "tap"])?;
        self.ns.ip(&["link", "set", &tap, "master", "br0"])?;
        self.ns.ip(&["link", "set", &tap, "up"])?;
        Ok(NicSpec { mac })
    }
}
