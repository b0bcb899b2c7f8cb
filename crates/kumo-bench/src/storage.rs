//! Storage benchmarks (no kumod needed: they time the storage pool and the backup code kumod
//! runs, on this machine's disk):
//!
//! - volume-from-image create at 1 and 10 GiB (copy-on-write overlay: should not depend on the
//!   size; target ≤ 50 ms), next to a full copy of the same image (what a non-CoW create costs);
//! - backup throughput (export + chunk + hash + store) against a plain copy of the volume's file
//!   with the same amount of data, and an incremental backup after a small change.

use anyhow::{bail, Context, Result};
use kumo_agent::storage::backup::{backup_raw, DirTarget};
use kumo_agent::storage::pool::{DirPool, StoragePool, VolumeSource};
use std::path::Path;
use std::time::{Duration, Instant};
use uuid::Uuid;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn run_tool(cmd: &str, args: &[&str]) -> Result<()> {
    let out = std::process::Command::new(cmd).args(args).output().with_context(|| format!("run {cmd}"))?;
    if !out.status.success() {
        bail!("{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn sync() {
    // SAFETY: sync(2) has no preconditions.
    unsafe { libc::sync() };
}

pub async fn run(root: &Path, runs: usize) -> Result<()> {
    println!("\n== Storage: volume-from-image create (copy-on-write), {runs} runs per size ==");
    println!(
        "{:<8} {:>14} {:>14} {:>22} {:>8}",
        "IMAGE", "CREATE MEDIAN", "CREATE MAX", "FULL COPY (baseline)", "TARGET"
    );
    let pool = DirPool::new(root.join("volumes"));
    for gib in [1u64, 10] {
        let image = root.join(format!("image-{gib}g.qcow2"));
        let image_s = image.to_string_lossy().into_owned();
        run_tool("qemu-img", &["create", "-q", "-f", "qcow2", &image_s, &format!("{gib}G")])?;
        // Some real data in the image (64 MiB), so a copy has something to copy.
        run_tool("qemu-io", &["-f", "qcow2", "-c", "write -P 0xab 0 64M", &image_s])?;
        let mut times = Vec::new();
        for _ in 0..runs {
            let id = Uuid::now_v7();
            let t = Instant::now();
            pool.create(id, gib * GIB, &VolumeSource::Image(image.clone()), false).await?;
            times.push(t.elapsed());
            pool.delete(id).await?;
        }
        let copy = root.join("copy.qcow2");
        let t = Instant::now();
        run_tool("qemu-img", &["convert", "-q", "-O", "qcow2", &image_s, &copy.to_string_lossy()])?;
        let full = t.elapsed();
        let _ = std::fs::remove_file(&copy);
        let med = median(times.clone());
        let max = times.iter().max().copied().unwrap_or_default();
        println!(
            "{:<8} {:>11.1} ms {:>11.1} ms {:>19.1} ms {:>8}",
            format!("{gib} GiB"),
            ms(med),
            ms(max),
            ms(full),
            if ms(med) <= 50.0 { "PASS" } else { "MISS" }
        );
        let _ = std::fs::remove_file(&image);
    }

    println!("\n== Storage: backup throughput vs a plain copy of the volume file ==");
    let data_mib = 256u64;
    let raw = root.join("data.raw");
    run_tool(
        "dd",
        &["if=/dev/urandom", &format!("of={}", raw.display()), "bs=1M", &format!("count={data_mib}"), "status=none"],
    )?;
    let f = std::fs::OpenOptions::new().write(true).open(&raw)?;
    f.set_len(GIB)?;
    drop(f);
    let vol = Uuid::now_v7();
    pool.create(vol, GIB, &VolumeSource::Raw(raw.clone()), false).await?;
    std::fs::remove_file(&raw)?;
    let target = DirTarget::new(root.join("backups"));
    // One project's chunk store, as kumod keeps one per project.
    let project = Uuid::now_v7();
    let export = root.join("export.raw");

    let copy_dst = root.join("copy-of-volume.qcow2");
    sync();
    let t = Instant::now();
    std::fs::copy(pool.path(vol), &copy_dst)?;
    std::fs::File::open(&copy_dst)?.sync_all()?;
    let copy_time = t.elapsed();
    std::fs::remove_file(&copy_dst)?;

    let backup = |id: Uuid| {
        let (pool, target, export) = (&pool, &target, &export);
        async move {
            sync();
            let t = Instant::now();
            pool.export_raw(vol, export).await?;
            let exported = t.elapsed();
            let stats = backup_raw(target, project, export, id).await?;
            sync();
            let took = t.elapsed();
            std::fs::remove_file(export)?;
            anyhow::Ok((took, exported, stats))
        }
    };
    let (full_time, full_export, full) = backup(Uuid::now_v7()).await?;
    // 4 MiB of new random data (a pattern would deduplicate to one chunk).
    let change = root.join("change.bin");
    run_tool("dd", &["if=/dev/urandom", &format!("of={}", change.display()), "bs=1M", "count=4", "status=none"])?;
    let write = format!("write -s {} 100M 4M", change.display());
    run_tool("qemu-io", &["-f", "qcow2", "-c", &write, &pool.path(vol).to_string_lossy()])?;
    let (inc_time, _, inc) = backup(Uuid::now_v7()).await?;
    let rate = |d: Duration| data_mib as f64 / d.as_secs_f64();
    println!("{:<34} {:>10} {:>12} {:>14}", "", "TIME", "MiB/s", "STORED");
    println!(
        "{:<34} {:>7.0} ms {:>12.0} {:>14}",
        format!("plain copy of the file ({data_mib} MiB data)"),
        ms(copy_time),
        rate(copy_time),
        "-"
    );
    println!(
        "{:<34} {:>7.0} ms {:>12.0} {:>11} MiB",
        "full backup",
        ms(full_time),
        rate(full_time),
        full.bytes_stored / MIB
    );
    println!(
        "{:<34} {:>7.0} ms {:>12} {:>11} MiB",
        "incremental backup (4 MiB changed)",
        ms(inc_time),
        "-",
        inc.bytes_stored / MIB
    );
    println!(
        "(of the full backup, {:.0} ms is the raw export through qemu-img, the rest chunking, SHA-256, storing)",
        ms(full_export)
    );
    println!(
        "backup/copy throughput ratio: {:.2}; incremental stored {:.1}% of the full",
        rate(full_time) / rate(copy_time),
        100.0 * inc.bytes_stored as f64 / full.bytes_stored.max(1) as f64
    );
    pool.delete(vol).await?;
    Ok(())
}

/// The guest's I/O script: sequential write then read of 128 MiB on vdc, timed with the
/// guest's uptime (centiseconds), read caches dropped in between.
const GUEST_IO_SCRIPT: &str = "i=0; while [ ! -b /dev/vdc ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
up() { cut -d' ' -f1 /proc/uptime; }
a=$(up); dd if=/dev/zero of=/dev/vdc bs=1M count=128 conv=fsync 2>/dev/null; b=$(up)
echo 3 > /proc/sys/vm/drop_caches
c=$(up); dd if=/dev/vdc of=/dev/null bs=1M count=128 2>/dev/null; d=$(up)
echo \"io-result $a $b $c $d\"
";

/// Kills and reaps a QEMU on drop.
struct Guest(std::process::Child);

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Boots the tiny guest with a fresh 1 GiB volume given either as kumod gives it (`-blockdev`
/// from the pool + virtio-blk device) or by hand (`-drive if=virtio`); returns the guest's
/// (write, read) seconds for 128 MiB.
async fn guest_io(root: &Path, kumod_way: bool) -> Result<(f64, f64)> {
    use kumo_agent::compute::kvm_probe::Accel;
    use kumo_agent::compute::qemu::cmdline::{command_line, volume_args};
    use kumo_agent::compute::qemu::config_drive::config_drive_bytes;
    use kumo_agent::compute::qemu::{RunDir, QEMU_BINARY};
    use kumo_agent::storage::qemu_img;
    use kumo_agent::{BootSpec, InstanceSpec, IoLimits, VolumeDisk};
    let cache = Path::new("/var/cache/kumo/images/tiny");
    let manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(cache.join("manifest.json"))?)?;
    let field = |k: &str| manifest[k].as_str().map(|f| cache.join(f));
    let id = Uuid::now_v7();
    let side = if kumod_way { "kumod" } else { "raw" };
    let run = RunDir::new(&root.join(format!("io-{side}")), id);
    std::fs::create_dir_all(&run.dir)?;
    let spec = InstanceSpec {
        id,
        name: format!("io-{side}"),
        vcpus: 1,
        memory_mib: 256,
        disk_gib: 1,
        image_disk: field("disk").context("manifest without disk")?,
        boot: BootSpec::Kernel {
            kernel: field("kernel").context("manifest without kernel")?,
            initrd: field("initrd"),
            cmdline: manifest["cmdline"].as_str().unwrap_or_default().to_string(),
        },
        user_data: Some(GUEST_IO_SCRIPT.to_string()),
        ssh_keys: Vec::new(),
        volumes: vec![VolumeDisk { id: Uuid::now_v7(), limits: IoLimits::default() }],
        nics: Vec::new(),
    };
    qemu_img::create_overlay(&spec.image_disk, &run.disk(), 1 << 30).await?;
    std::fs::write(run.config_drive(), config_drive_bytes(&spec)?)?;
    let pool = DirPool::new(root.join(format!("io-{side}-volumes")));
    pool.create(spec.volumes[0].id, GIB, &VolumeSource::Empty, false).await?;
    let mut args = command_line(&spec, &run, Accel::Tcg);
    if kumod_way {
        args.extend(volume_args(&pool, &spec.volumes));
    } else {
        args.push("-drive".into());
        args.push(format!("file={},if=virtio,format=qcow2", pool.path(spec.volumes[0].id).display()).into());
    }
    let child = std::process::Command::new(QEMU_BINARY)
        .args(&args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .context("start qemu-system-x86_64")?;
    let _guest = Guest(child);
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let log = std::fs::read_to_string(run.serial()).unwrap_or_default();
        if let Some(line) = log.lines().find(|l| l.starts_with("io-result ")) {
            let t: Vec<f64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
            if t.len() != 4 {
                bail!("bad result line: {line}");
            }
            return Ok((t[1] - t[0], t[3] - t[2]));
        }
        if Instant::now() > deadline {
            bail!("the {side} guest did not report within 300 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Guest sequential I/O on a volume as kumod attaches it vs the same kind of qcow2 attached to a
/// QEMU started by hand (TCG here: the guest's CPU emulation bounds both).
pub async fn guest_io_ratio(root: &Path, runs: usize) -> Result<()> {
    println!("\n== Storage: guest sequential I/O, 128 MiB on a 1 GiB volume ({runs} runs per side, TCG) ==");
    let (mut kw, mut kr, mut rw, mut rr) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let (w, r) = guest_io(root, true).await?;
        kw.push(w);
        kr.push(r);
        let (w, r) = guest_io(root, false).await?;
        rw.push(w);
        rr.push(r);
    }
    let med = |mut v: Vec<f64>| {
        v.sort_by(|a, b| a.total_cmp(b));
        v[v.len() / 2]
    };
    let mib_s = |s: f64| 128.0 / s.max(0.01);
    let (kw, kr, rw, rr) = (med(kw), med(kr), med(rw), med(rr));
    println!("{:<10} {:>16} {:>16} {:>8} {:>8}", "", "kumod volume", "raw -drive", "ratio", "target");
    for (what, k, r) in [("seq write", kw, rw), ("seq read", kr, rr)] {
        let ratio = mib_s(k) / mib_s(r);
        println!(
            "{what:<10} {:>10.0} MiB/s {:>10.0} MiB/s {:>8.2} {:>8}",
            mib_s(k),
            mib_s(r),
            ratio,
            if ratio >= 0.95 { "PASS" } else { "MISS" }
        );
    }
    Ok(())
}
