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
/// Where guests look for a metadata service. The raw side serves the same documents kumod's
/// service gives a benchmark guest (see [`metadata_tree`]) with Python's `http.server`, bound to
/// this address on the namespace's loopback, so a raw guest does the same work as kumod's.
const METADATA_IP: &str = "169.254.169.254";
/// The paths the tiny image's init asks for (images/tiny/init), in the EC2 layout.
const METADATA_PATHS: &[&str] = &[
    "/latest/meta-data/instance-id",
    "/latest/meta-data/hostname",
    "/latest/meta-data/public-keys/0/openssh-key",
    "/latest/user-data",
];

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
    // Field order is drop order: dnsmasq and the metadata server stop before their namespace goes.
    _dnsmasq: Reaped,
    _metadata: Reaped,
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
        let dnsmasq = Reaped(child);
        let metadata = serve_metadata(&ns, dir)?;
        Ok(RawNet { _dnsmasq: dnsmasq, _metadata: metadata, ns, taps: AtomicU32::new(0) })
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

/// Writes, under `root`, the documents kumod's metadata service gives a benchmark guest (created
/// without SSH keys or user data: the key and the user data are not found there either), rendered
/// by kumod's own function.
fn metadata_tree(root: &Path) -> Result<()> {
    let md = kumo_agent::network::metadata::Metadata {
        instance_id: "01900000-0000-7000-8000-000000000000".into(),
        hostname: "raw".into(),
        local_ipv4: RAW_FIRST_IP.parse()?,
        public_ipv4: None,
        ssh_keys: Vec::new(),
        user_data: None,
        mac: RAW_FIRST_MAC.into(),
    };
    for path in METADATA_PATHS {
        if let Some((_, body)) = kumo_agent::network::metadata::render(&md, path) {
            let file = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(file.parent().context("a metadata path has a parent")?)?;
            std::fs::write(file, body)?;
        }
    }
    Ok(())
}

/// Starts Python's `http.server` on 169.254.169.254:80 in `ns`, serving [`metadata_tree`], and
/// waits until it listens.
fn serve_metadata(ns: &Netns, dir: &Path) -> Result<Reaped> {
    let root = dir.join("metadata");
    metadata_tree(&root)?;
    let log = std::fs::File::create(dir.join("metadata.log"))?;
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.0, "python3", "-m", "http.server", "80", "--bind", METADATA_IP, "--directory"])
        .arg(&root)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .context("run python3 -m http.server (the raw side's metadata service)")?;
    let child = Reaped(child);
    for _ in 0..100 {
        let out = Command::new("ip").args(["netns", "exec", &ns.0, "ss", "-Hltn", "sport = :80"]).output()?;
        if !String::from_utf8_lossy(&out.stdout).trim().is_empty() {
            return Ok(child);
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    bail!("the raw side's metadata server did not listen within 5 s (see {})", dir.join("metadata.log").display())
}
