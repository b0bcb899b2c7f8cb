//! Choosing the accelerator.
//!
//! On some machines `/dev/kvm` opens and VM creation succeeds, yet a real guest hangs under KVM
//! right after the kernel's real-mode setup. So KVM is trusted only after a short, timed probe
//! boot of the tiny image reaches its readiness line; otherwise QEMU runs with TCG (software
//! emulation). The probe's verdict is cached per (kernel release, QEMU version), so it costs its
//! few seconds once per machine, not once per `kumod` start.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

/// The readiness line the tiny image's init prints on the serial console.
pub const READY_LINE: &str = "kumo-guest: ready";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Accel {
    Kvm,
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What the operator asked for (`--accel`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccelRequest {
    Auto,
    Kvm,
    Tcg,
}

impl std::str::FromStr for AccelRequest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(AccelRequest::Auto),
            "kvm" => Ok(AccelRequest::Kvm),
            "tcg" => Ok(AccelRequest::Tcg),
            _ => Err(format!("accelerator must be auto, kvm or tcg (got '{s}')")),
        }
    }
}

/// The probe's input: a kernel (+initrd) that prints [`READY_LINE`] when it has booted.
#[derive(Debug, Clone)]
pub struct ProbeImage {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedVerdict {
    key: String,
    kvm_works: bool,
    detail: String,
}

/// Decides the accelerator and says why.
pub async fn choose(
    req: AccelRequest,
    probe: Option<&ProbeImage>,
    cache_dir: &Path,
    timeout: Duration,
) -> (Accel, String) {
    match req {
        AccelRequest::Tcg => return (Accel::Tcg, "TCG requested by --accel tcg".into()),
        AccelRequest::Kvm => return (Accel::Kvm, "KVM requested by --accel kvm (not probed)".into()),
        AccelRequest::Auto => {}
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm") {
        return (Accel::Tcg, format!("TCG: /dev/kvm is not usable ({e})"));
    }
    let Some(probe) = probe else {
        return (Accel::Tcg, "TCG: no probe image to test KVM with, and KVM is not trusted unprobed".into());
    };
    let key = cache_key().await;
    let cache_file = cache_dir.join("kvm-probe.json");
    if let Some(v) = std::fs::read(&cache_file).ok().and_then(|b| serde_json::from_slice::<CachedVerdict>(&b).ok()) {
        if v.key == key {
            return verdict(v.kvm_works, format!("{} (cached probe result)", v.detail));
        }
    }
    let (works, detail) = probe_boot(probe, timeout).await;
    let _ = std::fs::create_dir_all(cache_dir);
    let cached = CachedVerdict { key, kvm_works: works, detail: detail.clone() };
    if let Ok(bytes) = serde_json::to_vec(&cached) {
        let _ = std::fs::write(&cache_file, bytes);
    }
    verdict(works, detail)
}

fn verdict(kvm_works: bool, detail: String) -> (Accel, String) {
    if kvm_works {
        (Accel::Kvm, format!("KVM: {detail}"))
    } else {
        (Accel::Tcg, format!("TCG: {detail}"))
    }
}

async fn cache_key() -> String {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let qemu = tokio::process::Command::new(crate::compute::qemu::QEMU_BINARY)
        .arg("--version")
        .output()
        .await
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").to_string())
        .unwrap_or_default();
    format!("{} / {}", release.trim(), qemu.trim())
}

/// Boots the probe image under KVM and waits for the readiness line.
async fn probe_boot(probe: &ProbeImage, timeout: Duration) -> (bool, String) {
    let dir = match tempfile_dir() {
        Ok(d) => d,
        Err(e) => return (false, format!("probe could not make a temp dir: {e}")),
    };
    let serial = dir.join("serial.log");
    let mut cmd = tokio::process::Command::new(crate::compute::qemu::QEMU_BINARY);
    cmd.args(["-accel", "kvm", "-m", "128", "-smp", "1", "-nodefaults", "-no-user-config", "-display", "none"])
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .arg("-kernel")
        .arg(&probe.kernel)
        .args(probe.initrd.iter().flat_map(|i| [std::ffi::OsString::from("-initrd"), i.into()]))
        .arg("-append")
        .arg(&probe.cmdline)
        .arg("-no-reboot")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let started = Instant::now();
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return (false, format!("probe could not run QEMU: {e}"));
        }
    };
    let result = loop {
        let log = std::fs::read_to_string(&serial).unwrap_or_default();
        if log.contains(READY_LINE) {
            break (true, format!("probe guest booted under KVM in {:.1}s", started.elapsed().as_secs_f64()));
        }
        if let Ok(Some(status)) = child.try_wait() {
            break (false, format!("probe QEMU under KVM exited early ({status})"));
        }
        if started.elapsed() >= timeout {
            break (
                false,
                format!("probe guest under KVM did not boot within {}s (KVM hangs here)", timeout.as_secs()),
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = child.start_kill();
    let _ = child.wait().await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn tempfile_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("kumo-kvm-probe-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn explicit_requests_skip_the_probe() {
        let d = std::env::temp_dir();
        assert_eq!(choose(AccelRequest::Tcg, None, &d, Duration::from_secs(1)).await.0, Accel::Tcg);
        assert_eq!(choose(AccelRequest::Kvm, None, &d, Duration::from_secs(1)).await.0, Accel::Kvm);
    }

    #[tokio::test]
    async fn without_a_probe_image_kvm_is_not_trusted() {
        let (accel, reason) = choose(AccelRequest::Auto, None, &std::env::temp_dir(), Duration::from_secs(1)).await;
        assert_eq!(accel, Accel::Tcg);
        assert!(reason.starts_with("TCG"), "{reason}");
    }

    #[test]
    fn parses_requests() {
        assert_eq!("auto".parse::<AccelRequest>().unwrap(), AccelRequest::Auto);
        assert!("xen".parse::<AccelRequest>().unwrap_err().contains("auto, kvm or tcg"));
    }
}
