//! Storage benchmarks (no kumod needed: they time the storage pool and the backup code kumod
//! runs, on this machine's disk):
//!
//! - volume-from-image create at 1 and 10 GiB (copy-on-write overlay: should not depend on the
//!   size; target ≤ 50 ms), next to a full copy of the same image (what a non-CoW create costs);
//! - backup throughput (export + chunk + hash + store) against a plain copy of the volume's file
//!   with the same amount of data, and an incremental backup after a small change.

use anyhow::{bail, Context, Result};
use kumo_agent::backup::{backup_raw, DirTarget};
use kumo_agent::storage::{DirPool, StoragePool, VolumeSource};
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
            let stats = backup_raw(target, export, id).await?;
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
