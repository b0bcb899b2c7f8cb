//! Volumes on real QEMU guests (TCG here): a guest writes a marker to a hot-plugged volume, the
//! volume is detached (the guest releases it), attached to a second running instance while
//! `kumod` is SIGKILLed, and the marker is read back there; and a volume attached to a stopped
//! instance is on its disks at the next start. Guests report through the serial console.
//!
//! They need root, `qemu-system-x86_64` and the tiny image (scripts/test.sh provides all three).
//! Without them they fail in CI (env CI set) and skip with a printed reason elsewhere.

mod common;

use common::{become_subreaper, image_cache, kumo_binary, qemu_pids_under, qemu_prerequisites, Kumod};
use serde_json::{json, Value};
use std::process::Command;
use std::time::{Duration, Instant};

const BOOT: Duration = Duration::from_secs(240);
const WAIT: Duration = Duration::from_secs(90);

fn qemu_kumod() -> Kumod {
    become_subreaper();
    Kumod::start(&["--driver", "qemu", "--image-cache", image_cache(), "--stop-timeout", "20"])
}

/// Polls the serial console until it contains `needle`.
fn wait_serial(k: &Kumod, name: &str, needle: &str) -> String {
    let deadline = Instant::now() + BOOT;
    loop {
        let log = k.text(&format!("/v1/instances/{name}/serial-console?project=demo"));
        if log.contains(needle) {
            return log;
        }
        if Instant::now() > deadline {
            let tail: Vec<&str> = log.lines().collect();
            panic!(
                "serial console of {name} did not show '{needle}' within {BOOT:?}; last 40 lines:\n{}\nkumod log:\n{}",
                tail[tail.len().saturating_sub(40)..].join("\n"),
                k.log_tail(40)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn wait_volume(k: &Kumod, name: &str, state: &str) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let (s, v) = k.get(&format!("/v1/volumes/{name}?project=demo"));
        if (state == "gone" && s == 404) || (s == 200 && v["state"] == state) {
            return v;
        }
        assert!(Instant::now() < deadline, "volume {name} did not reach {state}: {v}\n{}", k.log_tail(40));
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn cli_json(k: &Kumod, args: &[&str]) -> Value {
    let out = Command::new(kumo_binary())
        .args(["--output", "json"])
        .args(args)
        .env("KUMO_URL", &k.url)
        .env("KUMO_TOKEN", &k.token)
        .env("KUMO_CONFIG", k.data_dir().join("cli-config.json"))
        .output()
        .unwrap_or_else(|e| panic!("run {}: {e} (build the workspace first)", kumo_binary().display()));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "kumo {args:?} failed:\n{stdout}\n{}\nkumod log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        k.log_tail(30)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("kumo {args:?} printed no JSON ({e}): {stdout}"))
}

/// Waits in the guest for the first volume (/dev/vdc: after the root disk and config drive).
const WAIT_FOR_VDC: &str = "i=0; while [ ! -b /dev/vdc ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\n";

fn instance(k: &Kumod, name: &str, user_data: &str) {
    let body = json!({"name": name, "image": "tiny", "instance_type": "k1-nano", "user_data": user_data});
    let (s, v) = k.post("/v1/instances?project=demo", body);
    assert_eq!(s, 202, "{v}");
    k.wait_state("demo", name, "running", BOOT);
    wait_serial(k, name, "kumo-guest: ready");
}

fn reader_script() -> String {
    format!("{WAIT_FOR_VDC}echo \"read: $(dd if=/dev/vdc bs=64 count=1 2>/dev/null | tr -d '\\000' | head -n 1)\"\n")
}

#[test]
fn data_moves_between_guests_by_hot_plug_and_survives_a_kumod_crash_during_attach() {
    if !qemu_prerequisites() {
        return;
    }
    let mut k = qemu_kumod();
    k.create_project("demo");
    let v = cli_json(&k, &["volume", "create", "data", "--size", "1", "--project", "demo", "--wait"]);
    assert_eq!(v["state"], "available", "{v}");
    let id = v["id"].as_str().expect("id").to_string();
    let file = k.data_dir().join("volumes").join(format!("{id}.qcow2"));
    assert!(file.exists(), "no volume file {}", file.display());

    // web1 writes a marker as soon as the disk appears, then reports when the disk is gone.
    let marker = format!("kumo-marker-{}", &id[24..]);
    let writer = format!(
        "{WAIT_FOR_VDC}printf '{marker}\\n' | dd of=/dev/vdc bs=512 conv=sync,fsync 2>/dev/null; sync\n\
         echo wrote-marker\n\
         while [ -b /dev/vdc ]; do sleep 0.2; done; echo vdc-released\n"
    );
    instance(&k, "web1", &writer);
    let v = cli_json(&k, &["volume", "attach", "data", "--instance", "web1", "--project", "demo", "--wait"]);
    assert_eq!((v["state"].as_str(), v["attached_to"].as_str()), (Some("attached"), Some("web1")), "{v}");
    wait_serial(&k, "web1", "wrote-marker");

    let v = cli_json(&k, &["volume", "detach", "data", "--project", "demo", "--wait"]);
    assert_eq!(v["state"], "available", "{v}");
    assert!(v["attached_to"].is_null(), "{v}");
    wait_serial(&k, "web1", "vdc-released");

    // web2 reads it back. kumod is SIGKILLed right after accepting the attach: the next kumod
    // finishes it.
    instance(&k, "web2", &reader_script());
    let (s, v) = k.post("/v1/volumes/data/attach?project=demo", json!({"instance": "web2"}));
    assert_eq!((s, v["state"].as_str()), (202, Some("attaching")), "{v}");
    k.kill9();
    k.restart();
    let v = wait_volume(&k, "data", "attached");
    assert_eq!(v["attached_to"], "web2", "{v}");
    let log = wait_serial(&k, "web2", "read: ");
    assert!(log.contains(&format!("read: {marker}")), "web2 did not read the marker:\n{log}");

    // Attached volumes cannot be deleted; deleting the instance frees it; then it goes.
    let (s, v) = k.delete("/v1/volumes/data?project=demo");
    assert_eq!(s, 409, "{v}");
    for name in ["web1", "web2"] {
        let (s, v) = k.delete(&format!("/v1/instances/{name}?project=demo"));
        assert_eq!(s, 202, "{v}");
        k.wait_state("demo", name, "gone", WAIT);
    }
    wait_volume(&k, "data", "available");
    let (s, v) = k.delete("/v1/volumes/data?project=demo");
    assert_eq!(s, 202, "{v}");
    wait_volume(&k, "data", "gone");
    assert!(!file.exists(), "volume file left behind");
    assert!(qemu_pids_under(&k.data_dir().to_string_lossy()).is_empty(), "QEMU left running");
}

#[test]
fn a_volume_attached_to_a_stopped_instance_is_there_at_the_next_start() {
    if !qemu_prerequisites() {
        return;
    }
    let k = qemu_kumod();
    k.create_project("demo");
    // The image's root file system as a volume: the guest sees an ext4 superblock magic on vdc.
    let (s, v) = k.post("/v1/volumes?project=demo", json!({"name": "logs", "size_gib": 1}));
    assert_eq!(s, 202, "{v}");
    wait_volume(&k, "logs", "available");
    // Cold-attached disks are probed with the root disk, before "ready": a short wait is plenty.
    let script = "i=0; while [ ! -b /dev/vdc ] && [ $i -lt 30 ]; do sleep 0.1; i=$((i+1)); done\n\
        if [ -b /dev/vdc ]; then echo \"vdc-size: $(cat /sys/block/vdc/size)\"; else echo no-vdc; fi\n";
    instance(&k, "web1", script);
    wait_serial(&k, "web1", "no-vdc");
    let (s, v) = k.post_empty("/v1/instances/web1/stop?project=demo");
    assert_eq!(s, 202, "{v}");
    k.wait_state("demo", "web1", "stopped", WAIT);
    let (s, v) = k.post("/v1/volumes/logs/attach?project=demo", json!({"instance": "web1"}));
    assert_eq!(s, 202, "{v}");
    wait_volume(&k, "logs", "attached");
    let (s, v) = k.post_empty("/v1/instances/web1/start?project=demo");
    assert_eq!(s, 202, "{v}");
    // 1 GiB = 2097152 sectors of 512 bytes.
    wait_serial(&k, "web1", "vdc-size: 2097152");

    // Online growth: the running guest sees the new size.
    let (s, v) = k.post("/v1/volumes/logs/resize?project=demo", json!({"size_gib": 2}));
    assert_eq!((s, v["size_gib"].as_i64()), (200, Some(2)), "{v}");
    let (s, v) = k.delete("/v1/instances/web1?project=demo");
    assert_eq!(s, 202, "{v}");
    k.wait_state("demo", "web1", "gone", WAIT);
    let id = wait_volume(&k, "logs", "available")["id"].as_str().expect("id").to_string();
    let out = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(k.data_dir().join("volumes").join(format!("{id}.qcow2")))
        .output()
        .expect("qemu-img");
    let info: Value = serde_json::from_slice(&out.stdout).expect("qemu-img json");
    assert_eq!(info["virtual-size"].as_u64(), Some(2 << 30), "{info}");
}

/// The first line of a volume's data, read on the host through its qcow2 chain.
fn host_read(k: &Kumod, volume_id: &str) -> String {
    let file = k.data_dir().join("volumes").join(format!("{volume_id}.qcow2"));
    let out_file = k.data_dir().join(format!("read-{volume_id}.raw"));
    let out = Command::new("qemu-img")
        .args(["dd", "-f", "qcow2", "-O", "raw", "bs=512", "count=1"])
        .arg(format!("if={}", file.display()))
        .arg(format!("of={}", out_file.display()))
        .output()
        .expect("qemu-img dd");
    assert!(out.status.success(), "qemu-img dd: {}", String::from_utf8_lossy(&out.stderr));
    let bytes = std::fs::read(&out_file).expect("read raw");
    let _ = std::fs::remove_file(&out_file);
    String::from_utf8_lossy(&bytes).trim_end_matches('\0').lines().next().unwrap_or("").to_string()
}

fn volume_id(k: &Kumod, name: &str) -> String {
    let (s, v) = k.get(&format!("/v1/volumes/{name}?project=demo"));
    assert_eq!(s, 200, "{v}");
    v["id"].as_str().expect("id").to_string()
}

#[test]
fn snapshots_keep_the_data_of_their_instant_and_later_writes_do_not_leak_into_them() {
    if !qemu_prerequisites() {
        return;
    }
    let k = qemu_kumod();
    k.create_project("demo");
    for name in ["data", "trigger"] {
        let (s, v) = k.post("/v1/volumes?project=demo", json!({"name": name, "size_gib": 1}));
        assert_eq!(s, 202, "{v}");
        wait_volume(&k, name, "available");
    }
    // web1 writes "before", then — once a second disk appears (the trigger) — "after".
    let writer = format!(
        "{WAIT_FOR_VDC}printf 'before\\n' | dd of=/dev/vdc bs=512 conv=sync,fsync 2>/dev/null; sync; echo wrote-before\n\
         i=0; while [ ! -b /dev/vdd ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\n\
         printf 'after\\n' | dd of=/dev/vdc bs=512 conv=sync,fsync 2>/dev/null; sync; echo wrote-after\n"
    );
    instance(&k, "web1", &writer);
    let (s, v) = k.post("/v1/volumes/data/attach?project=demo", json!({"instance": "web1"}));
    assert_eq!(s, 202, "{v}");
    wait_volume(&k, "data", "attached");
    wait_serial(&k, "web1", "wrote-before");

    // Online snapshot of the running guest's disk, then the guest writes again.
    let v = cli_json(&k, &["snapshot", "create", "s1", "--volume", "data", "--project", "demo"]);
    assert_eq!(v["volume"], "data", "{v}");
    let (s, v) = k.post("/v1/volumes/trigger/attach?project=demo", json!({"instance": "web1"}));
    assert_eq!(s, 202, "{v}");
    wait_serial(&k, "web1", "wrote-after");

    // A volume from s1 has the data of the snapshot's instant, read by another guest.
    let v = cli_json(
        &k,
        &["volume", "create", "restored", "--size", "1", "--from-snapshot", "s1", "--project", "demo", "--wait"],
    );
    assert_eq!(v["source"], "snapshot:s1", "{v}");
    instance(&k, "web2", &reader_script());
    let v = cli_json(&k, &["volume", "attach", "restored", "--instance", "web2", "--project", "demo", "--wait"]);
    assert_eq!(v["state"], "attached", "{v}");
    let log = wait_serial(&k, "web2", "read: ");
    assert!(log.contains("read: before"), "the snapshot's volume does not hold 'before':\n{log}");

    // The original holds the later write. Detached, it can be snapshotted offline too.
    cli_json(&k, &["volume", "detach", "data", "--project", "demo", "--wait"]);
    assert_eq!(host_read(&k, &volume_id(&k, "data")), "after");
    cli_json(&k, &["snapshot", "create", "s2", "--volume", "data", "--project", "demo"]);
    cli_json(&k, &["volume", "create", "r2", "--size", "1", "--from-snapshot", "s2", "--project", "demo", "--wait"]);
    assert_eq!(host_read(&k, &volume_id(&k, "r2")), "after");

    // Deleting s1 never corrupts "restored", which reads from its layer.
    let (s, v) = k.delete("/v1/snapshots/s1?project=demo");
    assert_eq!(s, 204, "{v}");
    for name in ["web1", "web2"] {
        let (s, v) = k.delete(&format!("/v1/instances/{name}?project=demo"));
        assert_eq!(s, 202, "{v}");
        k.wait_state("demo", name, "gone", WAIT);
    }
    wait_volume(&k, "restored", "available");
    assert_eq!(host_read(&k, &volume_id(&k, "restored")), "before");
    assert_eq!(host_read(&k, &volume_id(&k, "data")), "after");

    // Once nothing uses them any more, every layer goes.
    for name in ["data", "trigger", "restored", "r2"] {
        let (s, v) = k.delete(&format!("/v1/volumes/{name}?project=demo"));
        assert_eq!(s, 202, "{v}");
        wait_volume(&k, name, "gone");
    }
    let (s, v) = k.delete("/v1/snapshots/s2?project=demo");
    assert_eq!(s, 204, "{v}");
    let layers = k.data_dir().join("volumes").join("layers");
    let deadline = Instant::now() + WAIT;
    loop {
        let left: Vec<_> =
            std::fs::read_dir(&layers).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
        if left.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "layers left behind: {left:?}\n{}", k.log_tail(20));
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Whether `needle` occurs anywhere in a file (read in chunks).
fn file_contains(path: &std::path::Path, needle: &[u8]) -> bool {
    use std::io::Read;
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut buf = vec![0u8; 1 << 20];
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let n = f.read(&mut buf).expect("read");
        if n == 0 {
            return false;
        }
        carry.extend_from_slice(&buf[..n]);
        if carry.windows(needle.len()).any(|w| w == needle) {
            return true;
        }
        carry = carry[carry.len().saturating_sub(needle.len())..].to_vec();
    }
}

#[test]
fn encrypted_volumes_read_and_write_in_the_guest_and_hold_no_plaintext_on_the_host() {
    if !qemu_prerequisites() {
        return;
    }
    let k = qemu_kumod();
    k.create_project("demo");
    let v = cli_json(&k, &["volume", "create", "secret", "--size", "1", "--encrypted", "--project", "demo", "--wait"]);
    assert_eq!((v["state"].as_str(), v["encrypted"].as_bool()), (Some("available"), Some(true)), "{v}");
    let (s, v) = k.post("/v1/volumes?project=demo", json!({"name": "plain", "size_gib": 1}));
    assert_eq!(s, 202, "{v}");
    wait_volume(&k, "plain", "available");
    let master = k.data_dir().join("master.key");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&master).expect("master key").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "master key mode");
    }

    // The guest writes the same marker to both (encrypted vdc at start, plain vdd), reads it back.
    let marker = "kumo-plaintext-marker-0123456789";
    let script = format!(
        "{WAIT_FOR_VDC}i=0; while [ ! -b /dev/vdd ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done\n\
         for d in vdc vdd; do i=0; while [ $i -lt 256 ]; do echo {marker}; i=$((i+1)); done \
         | dd of=/dev/$d bs=4096 conv=sync,fsync 2>/dev/null; done; sync\n\
         echo \"enc-read: $(dd if=/dev/vdc bs=64 count=1 2>/dev/null | head -n 1)\"\n"
    );
    let body = json!({"name": "web1", "image": "tiny", "instance_type": "k1-nano", "user_data": script});
    let (s, v) = k.post("/v1/instances?project=demo", body);
    assert_eq!(s, 202, "{v}");
    k.wait_state("demo", "web1", "running", BOOT);
    let (s, v) = k.post_empty("/v1/instances/web1/stop?project=demo");
    assert_eq!(s, 202, "{v}");
    k.wait_state("demo", "web1", "stopped", WAIT);
    for name in ["secret", "plain"] {
        let (s, v) = k.post(&format!("/v1/volumes/{name}/attach?project=demo"), json!({"instance": "web1"}));
        assert_eq!(s, 202, "{v}");
        wait_volume(&k, name, "attached");
    }
    let (s, v) = k.post_empty("/v1/instances/web1/start?project=demo");
    assert_eq!(s, 202, "{v}");
    let log = wait_serial(&k, "web1", "enc-read: ");
    assert!(log.contains(&format!("enc-read: {marker}")), "the guest did not read its plaintext back:\n{log}");
    // No key file is left in the clear once QEMU has read it.
    let keys = k.data_dir().join("volumes").join("keys");
    let secrets: Vec<_> = std::fs::read_dir(&keys)
        .expect("keys dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".secret"))
        .collect();
    assert!(secrets.is_empty(), "transient secret files left: {secrets:?}");

    // Hot-unplug and re-plug of the encrypted volume (its key goes to QEMU over QMP).
    let (s, v) = k.post_empty("/v1/volumes/secret/detach?project=demo");
    assert_eq!(s, 202, "{v}");
    wait_volume(&k, "secret", "available");
    let (s, v) = k.post("/v1/volumes/secret/attach?project=demo", json!({"instance": "web1"}));
    assert_eq!(s, 202, "{v}");
    let v = wait_volume(&k, "secret", "attached");
    assert_eq!(v["state_reason"], Value::Null, "{v}");

    let (s, v) = k.delete("/v1/instances/web1?project=demo");
    assert_eq!(s, 202, "{v}");
    k.wait_state("demo", "web1", "gone", WAIT);
    let file = |name: &str| k.data_dir().join("volumes").join(format!("{}.qcow2", volume_id(&k, name)));
    assert!(file_contains(&file("plain"), marker.as_bytes()), "control: the plain volume should hold the marker");
    assert!(!file_contains(&file("secret"), marker.as_bytes()), "the encrypted volume's file holds plaintext");
    let msg = k.post("/v1/snapshots?project=demo", json!({"name": "s1", "volume": "secret"}));
    assert_eq!(msg.0, 400, "{}", msg.1);

    // Offline growth of an encrypted volume (qemu-img needs its key for that).
    let (s, v) = k.post("/v1/volumes/secret/resize?project=demo", json!({"size_gib": 2}));
    assert_eq!((s, v["size_gib"].as_i64()), (200, Some(2)), "{v}");
    // A backup of the plain volume restored into an encrypted one: the data is encrypted too.
    let (s, v) = k.post("/v1/volume-backups?project=demo", json!({"name": "b1", "volume": "plain"}));
    assert_eq!(s, 201, "{v}");
    let body = json!({"name": "sealed", "size_gib": 1, "source_backup": "b1", "encrypted": true});
    let (s, v) = k.post("/v1/volumes?project=demo", body);
    assert_eq!(s, 202, "{v}");
    let v = wait_volume(&k, "sealed", "available");
    assert_eq!(v["encrypted"], true, "{v}");
    assert!(!file_contains(&file("sealed"), marker.as_bytes()), "the restored encrypted volume holds plaintext");
    // …and a guest reads the restored data through the key.
    instance(&k, "web2", &reader_script());
    let (s, v) = k.post("/v1/volumes/sealed/attach?project=demo", json!({"instance": "web2"}));
    assert_eq!(s, 202, "{v}");
    let log = wait_serial(&k, "web2", "read: ");
    assert!(log.contains(&format!("read: {marker}")), "the guest did not read the restored data:\n{log}");
}

/// sha256 of the first `mib` MiB of a volume's data, read on the host through its chain.
fn host_sha256(k: &Kumod, volume_id: &str, mib: u32) -> String {
    let file = k.data_dir().join("volumes").join(format!("{volume_id}.qcow2"));
    let raw = k.data_dir().join(format!("sum-{volume_id}.raw"));
    let out = Command::new("qemu-img")
        .args(["dd", "-f", "qcow2", "-O", "raw", "bs=1M"])
        .arg(format!("count={mib}"))
        .arg(format!("if={}", file.display()))
        .arg(format!("of={}", raw.display()))
        .output()
        .expect("qemu-img dd");
    assert!(out.status.success(), "qemu-img dd: {}", String::from_utf8_lossy(&out.stderr));
    let sum = Command::new("sha256sum").arg(&raw).output().expect("sha256sum");
    let _ = std::fs::remove_file(&raw);
    String::from_utf8_lossy(&sum.stdout).split_whitespace().next().unwrap_or("").to_string()
}

fn stop_and_backup(k: &Kumod, backup: &str) -> Value {
    let (s, v) = k.post_empty("/v1/instances/web1/stop?project=demo");
    assert_eq!(s, 202, "{v}");
    k.wait_state("demo", "web1", "stopped", WAIT);
    cli_json(k, &["backup", "create", backup, "--volume", "data", "--project", "demo"])
}

#[test]
fn backups_are_incremental_and_restore_verified_data() {
    if !qemu_prerequisites() {
        return;
    }
    let k = qemu_kumod();
    k.create_project("demo");
    let (s, v) = k.post("/v1/volumes?project=demo", json!({"name": "data", "size_gib": 1}));
    assert_eq!(s, 202, "{v}");
    wait_volume(&k, "data", "available");
    // Every boot: the first time, 8 MiB of random data after a header; later, a 4 KiB change.
    let script = format!(
        "{WAIT_FOR_VDC}if [ \"$(dd if=/dev/vdc bs=11 count=1 2>/dev/null)\" = kumo-phase1 ]; then\n\
           dd if=/dev/urandom of=/dev/vdc bs=4096 count=1 seek=1280 conv=fsync 2>/dev/null; p=phase2\n\
         else\n\
           printf kumo-phase1 | dd of=/dev/vdc bs=512 conv=sync,fsync 2>/dev/null\n\
           dd if=/dev/urandom of=/dev/vdc bs=1M count=8 seek=1 conv=fsync 2>/dev/null; p=phase1\n\
         fi; sync\n\
         echo \"$p-sum: $(dd if=/dev/vdc bs=1M count=10 2>/dev/null | sha256sum | cut -d' ' -f1)\"\n"
    );
    instance(&k, "web1", &script);
    let (s, v) = k.post("/v1/volumes/data/attach?project=demo", json!({"instance": "web1"}));
    assert_eq!(s, 202, "{v}");
    let log = wait_serial(&k, "web1", "phase1-sum: ");
    let sum_of = |log: &str, phase: &str| -> String {
        let line = log.lines().find(|l| l.starts_with(&format!("{phase}-sum: "))).expect("sum line");
        line.split_whitespace().nth(1).unwrap_or("").to_string()
    };
    let sum1 = sum_of(&log, "phase1");

    // A volume in use by a running guest is not backed up.
    let (s, v) = k.post("/v1/volume-backups?project=demo", json!({"name": "b0", "volume": "data"}));
    assert_eq!(s, 409, "{v}");

    let full = stop_and_backup(&k, "b1");
    assert_eq!(full["kind"], "full", "{full}");
    let (s, v) = k.post_empty("/v1/instances/web1/start?project=demo");
    assert_eq!(s, 202, "{v}");
    let log = wait_serial(&k, "web1", "phase2-sum: ");
    let sum2 = sum_of(&log, "phase2");
    assert_ne!(sum1, sum2);
    let inc = stop_and_backup(&k, "b2");
    assert_eq!(inc["kind"], "incremental", "{inc}");
    let (full_bytes, inc_bytes) = (full["bytes_stored"].as_i64().unwrap(), inc["bytes_stored"].as_i64().unwrap());
    assert!(full_bytes >= 8 << 20, "the full backup stored {full_bytes} bytes");
    assert!(inc_bytes * 4 < full_bytes, "incremental {inc_bytes} bytes is not much smaller than full {full_bytes}");

    // Restores hold exactly the data of their backup (what the guest hashed at the time).
    for (name, backup, sum) in [("r1", "b1", &sum1), ("r2", "b2", &sum2)] {
        let v = cli_json(
            &k,
            &["volume", "create", name, "--size", "1", "--from-backup", backup, "--project", "demo", "--wait"],
        );
        assert_eq!(v["source"], format!("backup:{backup}"), "{v}");
        assert_eq!(&host_sha256(&k, v["id"].as_str().unwrap(), 10), sum, "volume {name} restored from {backup}");
    }

    // A corrupted chunk fails the restore, clearly, instead of making a corrupt volume.
    // The project's own chunk store (one per project).
    let (s, project) = k.get("/v1/projects/demo");
    assert_eq!(s, 200, "{project}");
    let backups = k.data_dir().join("backups/projects").join(project["id"].as_str().expect("project id"));
    let manifest = backups.join("manifests").join(format!("{}.json", inc["id"].as_str().unwrap()));
    let manifest: Value = serde_json::from_slice(&std::fs::read(&manifest).expect("manifest")).expect("json");
    let sha = manifest["chunks"].as_array().unwrap().iter().find_map(|c| c.as_str()).expect("a chunk").to_string();
    std::fs::write(backups.join("chunks").join(&sha[..2]).join(&sha), b"bit rot").expect("tamper");
    let (s, v) = k.post("/v1/volumes?project=demo", json!({"name": "r3", "size_gib": 1, "source_backup": "b2"}));
    assert_eq!(s, 202, "{v}");
    let v = wait_volume(&k, "r3", "failed");
    assert!(v["state_reason"].as_str().is_some_and(|r| r.contains("checksum")), "{v}");
}

#[test]
fn image_import_converts_vmdk_and_vhdx_and_refuses_files_that_point_elsewhere() {
    if !qemu_prerequisites() {
        return;
    }
    let k = qemu_kumod();
    k.create_project("demo");
    let dir = k.data_dir().join("upload-src");
    std::fs::create_dir_all(&dir).unwrap();
    let raw = dir.join("legacy.raw");
    let mut bytes = b"legacy-server-marker\n".to_vec();
    bytes.resize(8 << 20, 0);
    std::fs::write(&raw, &bytes).unwrap();
    let qemu_img = |args: &[&str]| {
        let out = Command::new("qemu-img").args(args).output().expect("qemu-img");
        assert!(out.status.success(), "qemu-img {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    // File names say nothing: the format is detected from the content.
    qemu_img(&["convert", "-f", "raw", "-O", "vmdk", &path("legacy.raw"), &path("disk-a.img")]);
    qemu_img(&["convert", "-f", "raw", "-O", "vhdx", &path("legacy.raw"), &path("disk-b.img")]);
    for (file, name, format) in [("disk-a.img", "from-vmdk", "vmdk"), ("disk-b.img", "from-vhdx", "vhdx")] {
        let v = cli_json(&k, &["image", "import", &path(file), "--name", name, "--project", "demo"]);
        assert_eq!(v["size_bytes"], 8 << 20, "{v}");
        assert!(v["os"].as_str().unwrap_or("").contains(format), "{v}");
        // Its data survived the conversion: a volume cloned from it reads the marker.
        let vol = format!("vol-{name}");
        let body = json!({"name": vol, "size_gib": 1, "source_image": name});
        let (s, v) = k.post("/v1/volumes?project=demo", body);
        assert_eq!(s, 202, "{v}");
        let id = wait_volume(&k, &vol, "available")["id"].as_str().unwrap().to_string();
        assert_eq!(host_read(&k, &id), "legacy-server-marker");
    }

    // The classic attack: a qcow2 whose backing file is /etc/shadow, and a vmdk descriptor whose
    // flat extent is /etc/shadow. Both 400, nothing stored.
    qemu_img(&["create", "-q", "-f", "qcow2", "-u", "-F", "raw", "-b", "/etc/shadow", &path("evil.qcow2"), "1M"]);
    std::fs::write(
        dir.join("evil.vmdk"),
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n\
         RW 2048 FLAT \"/etc/shadow\" 0\n\nddb.adapterType = \"ide\"\n",
    )
    .unwrap();
    let images_before = std::fs::read_dir(k.data_dir().join("images")).unwrap().count();
    // (qemu-img, confined, may already be refused /etc/shadow: then the answer names the file.)
    for (file, needles) in
        [("evil.qcow2", ["backing file", "/etc/shadow"]), ("evil.vmdk", ["monolithicFlat", "/etc/shadow"])]
    {
        let resp = k
            .http
            .post(format!("{}/v1/images/import?project=demo&name=evil", k.url))
            .bearer_auth(&k.token)
            .header("content-type", "application/octet-stream")
            .body(std::fs::read(dir.join(file)).unwrap())
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        let v: Value = resp.json().unwrap_or(Value::Null);
        assert_eq!(status, 400, "{file}: {v}");
        let message = v["message"].as_str().unwrap_or("");
        assert!(needles.iter().any(|n| message.contains(n)), "{file}: {v}");
    }
    let (_, list) = k.get("/v1/images?project=demo");
    assert!(!list["items"].as_array().unwrap().iter().any(|i| i["name"] == "evil"), "{list}");
    assert_eq!(std::fs::read_dir(k.data_dir().join("images")).unwrap().count(), images_before, "leftovers");
}

/// Removes a directory when dropped (also when the test fails).
struct RemoveDir(std::path::PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn image_import_of_a_vmdk_whose_extent_is_a_fifo_answers_400_quickly() {
    if !qemu_prerequisites() {
        return;
    }
    // The sim driver is enough: the import runs qemu-img whatever the hypervisor.
    let k = Kumod::start(&[]);
    k.create_project("demo");
    // A FIFO anyone may open, in a directory anyone may enter: opening it for reading blocks
    // until a writer comes, which never happens. qemu-img (as root, unconfined) hung on it.
    let fifo_dir = RemoveDir(std::env::temp_dir().join(format!("kumo-fifo-{}", std::process::id())));
    let _ = std::fs::remove_dir_all(&fifo_dir.0);
    std::fs::create_dir_all(&fifo_dir.0).unwrap();
    std::fs::set_permissions(&fifo_dir.0, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let fifo = fifo_dir.0.join("fifo");
    let status = Command::new("mkfifo").args(["-m", "0666"]).arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let vmdk = format!(
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\n\
         RW 2048 FLAT \"{}\" 0\n\nddb.adapterType = \"ide\"\n",
        fifo.display()
    );
    let images_before = std::fs::read_dir(k.data_dir().join("images")).map(|d| d.count()).unwrap_or(0);
    let started = Instant::now();
    let resp = k
        .http
        .post(format!("{}/v1/images/import?project=demo&name=fifo", k.url))
        .bearer_auth(&k.token)
        .header("content-type", "application/octet-stream")
        .timeout(Duration::from_secs(120))
        .body(vmdk.into_bytes())
        .send()
        .expect("the import must answer (not hang)");
    let took = started.elapsed();
    let status = resp.status().as_u16();
    let v: Value = resp.json().unwrap_or(Value::Null);
    assert_eq!(status, 400, "{v}\n{}", k.log_tail(20));
    assert!(v["message"].as_str().unwrap_or("").contains("FIFO"), "{v}");
    // qemu-img's info timeout is 20 s; allow for a loaded machine, but not for a hang.
    assert!(took < Duration::from_secs(60), "the import took {took:?}");
    let (_, list) = k.get("/v1/images?project=demo");
    assert!(!list["items"].as_array().unwrap().iter().any(|i| i["name"] == "fifo"), "{list}");
    let images_after = std::fs::read_dir(k.data_dir().join("images")).map(|d| d.count()).unwrap_or(0);
    assert_eq!(images_after, images_before, "leftovers in the images directory");
    // No qemu-img of this kumod is left blocked on the FIFO.
    let deadline = Instant::now() + Duration::from_secs(10);
    while qemu_img_under(k.data_dir()) {
        assert!(Instant::now() < deadline, "a qemu-img still runs in {}", k.data_dir().display());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// True when a qemu-img process works in a directory under `dir` (the confined runs work in the
/// image's directory).
fn qemu_img_under(dir: &std::path::Path) -> bool {
    let Ok(rd) = std::fs::read_dir("/proc") else { return false };
    rd.flatten().any(|e| {
        let p = e.path();
        let comm = std::fs::read_to_string(p.join("comm")).unwrap_or_default();
        comm.trim() == "qemu-img" && std::fs::read_link(p.join("cwd")).is_ok_and(|cwd| cwd.starts_with(dir))
    })
}

/// One QMP command on a guest's socket (a raw client: greeting, capabilities, command).
fn qmp(socket: &std::path::Path, command: &str) -> Value {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect QMP");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut answer = || loop {
        let mut line = String::new();
        r.read_line(&mut line).expect("QMP answer");
        let v: Value = serde_json::from_str(&line).expect("QMP JSON");
        if v.get("event").is_none() {
            return v;
        }
    };
    answer();
    s.write_all(b"{\"execute\":\"qmp_capabilities\"}\n").unwrap();
    answer();
    s.write_all(format!("{{\"execute\":\"{command}\"}}\n").as_bytes()).unwrap();
    answer()["return"].clone()
}

/// The guest's cgroup directories, from /proc/<pid>/cgroup (v2: one line `0::/path`; v1: the
/// `cpu` and `memory` hierarchies), with the files that hold its limits.
fn guest_cgroup_limits(pid: i32) -> (Vec<String>, u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let read = |p: String| std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}")).trim().to_string();
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists()
        && read("/sys/fs/cgroup/cgroup.controllers".into()).split_whitespace().any(|c| c == "memory");
    if v2 {
        let path = text.lines().find_map(|l| l.strip_prefix("0::")).expect("v2 line").to_string();
        let cpu_max = read(format!("/sys/fs/cgroup{path}/cpu.max"));
        let quota: u64 = cpu_max.split_whitespace().next().unwrap().parse().unwrap();
        let mem: u64 = read(format!("/sys/fs/cgroup{path}/memory.max")).parse().unwrap();
        return (vec![path], quota, mem);
    }
    let find = |ctrl: &str| {
        text.lines()
            .find_map(|l| {
                let mut f = l.splitn(3, ':');
                let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
                ctrls.split(',').any(|c| c == ctrl).then(|| path.to_string())
            })
            .unwrap_or_else(|| panic!("no {ctrl} line in {text}"))
    };
    let (cpu, memory) = (find("cpu"), find("memory"));
    let quota: u64 = read(format!("/sys/fs/cgroup/cpu{cpu}/cpu.cfs_quota_us")).parse().unwrap();
    let mem: u64 = read(format!("/sys/fs/cgroup/memory{memory}/memory.limit_in_bytes")).parse().unwrap();
    (vec![format!("/sys/fs/cgroup/cpu{cpu}"), format!("/sys/fs/cgroup/memory{memory}")], quota, mem)
}

#[test]
fn guests_run_sandboxed_unprivileged_in_their_cgroup_and_still_take_hot_plugged_disks() {
    if !qemu_prerequisites() {
        return;
    }
    let k = qemu_kumod();
    k.create_project("demo");
    let v = cli_json(&k, &["volume", "create", "data", "--size", "1", "--project", "demo", "--wait"]);
    assert_eq!(v["state"], "available", "{v}");
    // The guest also tries busybox wget with a timeout, which used to segfault (exit 139): once
    // against a server that answers, once against one that never does (nc's stdin is a pipe that
    // stays open: a background job's stdin is /dev/null, and nc would hang up at once).
    let script = format!(
        "mkdir -p /tmp/www && echo wget-body-ok > /tmp/www/x && httpd -p 127.0.0.1:8080 -h /tmp/www\n\
         echo \"wget-T: $(wget -T 5 -q -O - http://127.0.0.1:8080/x) rc=$?\"\n\
         (sleep 60 | nc -l -p 8081 >/dev/null 2>&1) &\n\
         n=0; until netstat -ltn | grep -q ':8081 ' || [ $n -ge 100 ]; do n=$((n+1)); sleep 0.1; done\n\
         t0=$(date +%s); wget -T 2 -q -O - http://127.0.0.1:8081/x; rc=$?; t1=$(date +%s)\n\
         echo \"wget-T-silent: rc=$rc secs=$((t1-t0))\"\n\
         {WAIT_FOR_VDC}echo hotplug-ok > /dev/vdc && sync && echo \"vdc: written\"\n"
    );
    instance(&k, "web1", &script);
    let inst = k.get("/v1/instances/web1?project=demo").1;
    let id = inst["id"].as_str().unwrap().to_string();
    let pids = qemu_pids_under(&k.data_dir().to_string_lossy());
    assert_eq!(pids.len(), 1, "{pids:?}");
    let pid = pids[0];

    // QEMU's own sandbox is on, and it dropped root for the unprivileged user.
    let cmdline: Vec<String> = std::fs::read(format!("/proc/{pid}/cmdline"))
        .unwrap()
        .split(|b| *b == 0)
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    let after = |flag: &str| cmdline.iter().position(|a| a == flag).map(|i| cmdline[i + 1].clone());
    let sandbox = after("-sandbox").expect("-sandbox on the command line");
    for needle in ["on", "obsolete=deny", "spawn=deny", "resourcecontrol=deny"] {
        assert!(sandbox.split(',').any(|o| o == needle), "{sandbox}");
    }
    assert_eq!(after("-runas").as_deref(), Some("kumo-qemu"));
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.split_whitespace().map(String::from).collect::<Vec<_>>())
    };
    let out = Command::new("id").args(["-u", "kumo-qemu"]).output().unwrap();
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(!uid.is_empty() && uid != "0", "kumo-qemu uid {uid:?}");
    assert_eq!(field("Uid:").unwrap(), vec![uid.clone(); 4], "{status}");
    assert_eq!(field("Seccomp:").unwrap(), ["2"], "{status}");
    assert_eq!(field("CapEff:").unwrap(), ["0000000000000000"], "{status}");
    // Its files stay root's.
    let meta = std::fs::metadata(k.data_dir().join("instances").join(&id).join("disk.qcow2")).unwrap();
    assert_eq!(std::os::unix::fs::MetadataExt::uid(&meta), 0);

    // Its cgroup has the limits of its type.
    let (_, itype) = k.get(&format!("/v1/instance-types/{}", inst["instance_type"].as_str().unwrap_or("k1-nano")));
    let (vcpus, mem_mib) = (itype["vcpus"].as_u64().unwrap(), itype["memory_mib"].as_u64().unwrap());
    let (dirs, quota, mem) = guest_cgroup_limits(pid);
    assert!(dirs.iter().all(|d| d.ends_with(&format!("kumo.slice/{id}"))), "{dirs:?}");
    assert_eq!(quota, vcpus * 100_000 + 50_000, "the vCPUs and half a CPU for QEMU's own threads");
    let guest = mem_mib << 20;
    // Under TCG the bounded translation cache (tb-size, MiB) is part of QEMU's allowance.
    let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default().replace('\0', " ");
    let tcg_cache = match cmdline.split_once("tcg,tb-size=") {
        Some((_, rest)) => rest.split_whitespace().next().and_then(|n| n.parse::<u64>().ok()).expect("tb-size") << 20,
        None => 0,
    };
    assert!(cmdline.contains("-accel kvm") || tcg_cache > 0, "a TCG guest without a bounded cache: {cmdline}");
    assert_eq!(mem, guest + (256 << 20) + guest / 8 + tcg_cache);

    // The root disk is throttled like volumes are.
    let blocks = qmp(&k.data_dir().join("instances").join(&id).join("qmp.sock"), "query-block");
    let root = blocks.as_array().unwrap().iter().find(|b| b["device"] == "kumo-root").expect("kumo-root drive");
    assert_eq!(root["inserted"]["iops"], 2000 * vcpus, "{root}");
    assert_eq!(root["inserted"]["bps"], (200u64 << 20) * vcpus, "{root}");

    // Hot-plug still works, although QEMU may no longer open the volume's file itself.
    let (s, v) = k.post("/v1/volumes/data/attach?project=demo", json!({"instance": "web1"}));
    assert_eq!(s, 202, "{v}");
    wait_volume(&k, "data", "attached");
    let log = wait_serial(&k, "web1", "vdc: written");
    assert!(log.contains("wget-T: wget-body-ok rc=0"), "{log}");
    let line = log.lines().find(|l| l.starts_with("wget-T-silent:")).expect("wget-T-silent line");
    assert!(line.starts_with("wget-T-silent: rc=1 "), "{line}");
    let secs: u64 = line.rsplit("secs=").next().unwrap().trim().parse().unwrap();
    assert!((1..=4).contains(&secs), "{line}");

    // Gone with the guest: the cgroup.
    cli_json(&k, &["volume", "detach", "data", "--project", "demo", "--wait"]);
    assert_eq!(host_read(&k, &volume_id(&k, "data")), "hotplug-ok");
    let s = k.delete("/v1/instances/web1?project=demo").0;
    assert!(s == 202 || s == 204, "{s}");
    let deadline = Instant::now() + WAIT;
    while dirs.iter().any(|d| {
        let p = if d.starts_with("/sys") { d.clone() } else { format!("/sys/fs/cgroup{d}") };
        std::path::Path::new(&p).exists()
    }) {
        assert!(Instant::now() < deadline, "cgroup {dirs:?} left after delete");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn bandwidth_limits_throttle_the_guest_and_change_live() {
    if !qemu_prerequisites() {
        return;
    }
    let k = qemu_kumod();
    k.create_project("demo");
    let body = json!({"name": "slow", "size_gib": 1, "bandwidth_limit_mib_s": 1});
    let (s, v) = k.post("/v1/volumes?project=demo", body);
    assert_eq!(s, 202, "{v}");
    wait_volume(&k, "slow", "available");
    let (s, v) = k.post("/v1/volumes?project=demo", json!({"name": "trigger", "size_gib": 1}));
    assert_eq!(s, 202, "{v}");
    wait_volume(&k, "trigger", "available");
    // Write 4 MiB (synchronously) at 1 MiB/s; then, once the trigger disk appears, again.
    let write = "t0=$(date +%s); dd if=/dev/zero of=/dev/vdc bs=1M count=4 conv=fsync 2>/dev/null; t1=$(date +%s)";
    let script = format!(
        "{WAIT_FOR_VDC}{write}; echo \"limited-secs: $((t1-t0))\"\n\
         i=0; while [ ! -b /dev/vdd ] && [ $i -lt 1200 ]; do sleep 0.1; i=$((i+1)); done\n\
         {write}; echo \"unlimited-secs: $((t1-t0))\"\n"
    );
    // Attached while stopped: on the disks from the next start, throttled before the guest runs.
    instance(&k, "web1", &script);
    let (s, v) = k.post_empty("/v1/instances/web1/stop?project=demo");
    assert_eq!(s, 202, "{v}");
    k.wait_state("demo", "web1", "stopped", WAIT);
    let (s, v) = k.post("/v1/volumes/slow/attach?project=demo", json!({"instance": "web1"}));
    assert_eq!(s, 202, "{v}");
    wait_volume(&k, "slow", "attached");
    let (s, v) = k.post_empty("/v1/instances/web1/start?project=demo");
    assert_eq!(s, 202, "{v}");
    let log = wait_serial(&k, "web1", "limited-secs: ");
    let secs = |log: &str, what: &str| -> u64 {
        let line = log.lines().find(|l| l.starts_with(what)).expect("line");
        line[what.len()..].trim().parse().unwrap_or_else(|_| panic!("bad line {line}"))
    };
    let limited = secs(&log, "limited-secs: ");
    assert!(limited >= 2, "4 MiB at 1 MiB/s took only {limited}s");

    // Lift the limit on the running guest, then let it write again.
    let v = cli_json(&k, &["volume", "set-limits", "slow", "--project", "demo"]);
    assert!(v["bandwidth_limit_mib_s"].is_null(), "{v}");
    let (s, v) = k.post("/v1/volumes/trigger/attach?project=demo", json!({"instance": "web1"}));
    assert_eq!(s, 202, "{v}");
    let log = wait_serial(&k, "web1", "unlimited-secs: ");
    let unlimited = secs(&log, "unlimited-secs: ");
    assert!(unlimited < limited, "unlimited write took {unlimited}s, limited {limited}s");
}

#[test]
fn images_made_from_a_snapshot_and_a_stopped_instance_keep_their_data_and_boot() {
    if !qemu_prerequisites() {
        return;
    }
    let k = qemu_kumod();
    k.create_project("demo");
    let (s, v) = k.post("/v1/volumes?project=demo", json!({"name": "data", "size_gib": 1}));
    assert_eq!(s, 202, "{v}");
    wait_volume(&k, "data", "available");
    // web1 leaves a file on its root file system and a marker on its volume.
    let script = format!(
        "echo golden-content > /mnt/root/golden.txt; sync\n{WAIT_FOR_VDC}\
         printf 'snapshot-image-marker\\n' | dd of=/dev/vdc bs=512 conv=sync,fsync 2>/dev/null; sync; echo wrote-both\n"
    );
    instance(&k, "web1", &script);
    let (s, v) = k.post("/v1/volumes/data/attach?project=demo", json!({"instance": "web1"}));
    assert_eq!(s, 202, "{v}");
    wait_serial(&k, "web1", "wrote-both");
    cli_json(&k, &["snapshot", "create", "s1", "--volume", "data", "--project", "demo"]);
    let v = cli_json(&k, &["image", "create", "from-snap", "--from-snapshot", "s1", "--project", "demo"]);
    assert_eq!(v["boot"], "disk", "{v}");
    let (s, v) =
        k.post("/v1/volumes?project=demo", json!({"name": "copy", "size_gib": 1, "source_image": "from-snap"}));
    assert_eq!(s, 202, "{v}");
    let id = wait_volume(&k, "copy", "available")["id"].as_str().unwrap().to_string();
    assert_eq!(host_read(&k, &id), "snapshot-image-marker");

    // A stopped instance's root disk as an image: a new instance boots from it with the file.
    let (s, v) = k.post_empty("/v1/instances/web1/stop?project=demo");
    assert_eq!(s, 202, "{v}");
    k.wait_state("demo", "web1", "stopped", WAIT);
    let v = cli_json(&k, &["image", "create", "golden", "--from-instance", "web1", "--project", "demo"]);
    assert_eq!(v["boot"], "kernel", "{v}");
    let golden_size = v["size_bytes"].clone();
    let body = json!({"name": "web2", "image": "golden", "instance_type": "k1-nano",
                      "user_data": "echo \"found: $(cat /mnt/root/golden.txt)\"\n"});
    let (s, v) = k.post("/v1/instances?project=demo", body);
    assert_eq!(s, 202, "{v}");
    k.wait_state("demo", "web2", "running", BOOT);
    wait_serial(&k, "web2", "found: golden-content");

    // Export through the CLI: a standalone qcow2 of the image's size.
    let file = k.data_dir().join("golden-export.qcow2");
    let out = Command::new(kumo_binary())
        .args(["image", "export", "golden", "--project", "demo", "--file"])
        .arg(&file)
        .env("KUMO_URL", &k.url)
        .env("KUMO_TOKEN", &k.token)
        .env("KUMO_CONFIG", k.data_dir().join("cli-config.json"))
        .output()
        .expect("kumo image export");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let info = Command::new("qemu-img").args(["info", "--output=json"]).arg(&file).output().expect("qemu-img");
    let info: Value = serde_json::from_slice(&info.stdout).expect("json");
    assert_eq!((info["format"].as_str(), info["backing-filename"].as_str()), (Some("qcow2"), None), "{info}");
    assert_eq!(info["virtual-size"], golden_size, "{info}");
}

#[test]
fn kill9_during_detach_and_snapshot_converges_and_loses_nothing() {
    if !qemu_prerequisites() {
        return;
    }
    let mut k = qemu_kumod();
    k.create_project("demo");
    let (s, v) = k.post("/v1/volumes?project=demo", json!({"name": "data", "size_gib": 1}));
    assert_eq!(s, 202, "{v}");
    wait_volume(&k, "data", "available");
    let script = format!(
        "{WAIT_FOR_VDC}printf 'survivor\\n' | dd of=/dev/vdc bs=512 conv=sync,fsync 2>/dev/null; sync; echo wrote\n\
         while [ -b /dev/vdc ]; do sleep 0.2; done; echo released\n"
    );
    instance(&k, "web1", &script);
    let (s, v) = k.post("/v1/volumes/data/attach?project=demo", json!({"instance": "web1"}));
    assert_eq!(s, 202, "{v}");
    wait_volume(&k, "data", "attached");
    wait_serial(&k, "web1", "wrote");

    // kumod dies while a snapshot request is in flight: whatever it got to, the volume stays
    // attached and whole, and snapshots work afterwards.
    let (url, token) = (k.url.clone(), k.token.clone());
    let inflight = std::thread::spawn(move || {
        reqwest::blocking::Client::new()
            .post(format!("{url}/v1/snapshots?project=demo"))
            .bearer_auth(token)
            .json(&json!({"name": "s1", "volume": "data"}))
            .send()
            .map(|r| r.status().as_u16())
    });
    std::thread::sleep(Duration::from_millis(15));
    k.kill9();
    let _ = inflight.join();
    k.restart();
    let v = wait_volume(&k, "data", "attached");
    assert_eq!(v["attached_to"], "web1", "{v}");
    let (s, v) = k.post("/v1/snapshots?project=demo", json!({"name": "s2", "volume": "data"}));
    assert_eq!(s, 201, "a snapshot after the crash: {v}");

    // kumod dies right after accepting a detach: the next one finishes it; the guest released it.
    let (s, v) = k.post_empty("/v1/volumes/data/detach?project=demo");
    assert_eq!((s, v["state"].as_str()), (202, Some("detaching")), "{v}");
    k.kill9();
    k.restart();
    let v = wait_volume(&k, "data", "available");
    assert!(v["attached_to"].is_null(), "{v}");
    wait_serial(&k, "web1", "released");
    assert_eq!(host_read(&k, v["id"].as_str().unwrap()), "survivor");
    // And the volume from the post-crash snapshot has the data too.
    let (s, v) = k.post("/v1/volumes?project=demo", json!({"name": "from-s2", "size_gib": 1, "source_snapshot": "s2"}));
    assert_eq!(s, 202, "{v}");
    let id = wait_volume(&k, "from-s2", "available")["id"].as_str().unwrap().to_string();
    assert_eq!(host_read(&k, &id), "survivor");

    // Nothing leaked: once everything is deleted, the pool holds no file at all.
    let (s, v) = k.delete("/v1/instances/web1?project=demo");
    assert_eq!(s, 202, "{v}");
    k.wait_state("demo", "web1", "gone", WAIT);
    for name in ["data", "from-s2"] {
        let (s, v) = k.delete(&format!("/v1/volumes/{name}?project=demo"));
        assert_eq!(s, 202, "{v}");
        wait_volume(&k, name, "gone");
    }
    for snap in ["s1", "s2"] {
        let _ = k.delete(&format!("/v1/snapshots/{snap}?project=demo"));
    }
    let files = |dir: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    todo.push(e.path());
                } else {
                    out.push(e.path());
                }
            }
        }
        out
    };
    let pool = k.data_dir().join("volumes");
    let deadline = Instant::now() + WAIT;
    while !files(&pool).is_empty() {
        assert!(Instant::now() < deadline, "leaked in the pool: {:?}\n{}", files(&pool), k.log_tail(20));
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(qemu_pids_under(&k.data_dir().to_string_lossy()).is_empty(), "QEMU left running");
}
