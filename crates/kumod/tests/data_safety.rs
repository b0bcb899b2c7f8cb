//! Data safety (issue 10, items 1, 2, 7, 13, 14): host identity, the data directory and the
//! database recognising each other, quarantine instead of deletion, owner-only modes, secrets at
//! rest, and the orphan sweep — including a crash at a named step (fault injection,
//! `KUMOD_FAULT`, see kumo_agent::system::fault).

mod common;

use common::{cloud, kumod_binary, Cloud};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(20);

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display())).permissions().mode() & 0o777
}

/// The flags `cloud()` starts kumod with, plus `extra`.
fn cloud_args(c: &Cloud, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = ["--driver", "sim", "--image-cache", &c.images.path().to_string_lossy()]
        .iter()
        .map(|s| s.to_string())
        .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Spawns kumod on `dir` with `args` and `env`, its output in `dir/kumod.log`.
fn spawn_raw(dir: &Path, args: &[String], env: &[(&str, &str)]) -> Child {
    let _ = std::fs::remove_file(dir.join("kumod.addr"));
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("kumod.log")).expect("log");
    let mut cmd = Command::new(kumod_binary());
    cmd.arg("--data-dir").arg(dir).args(["--listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0"]).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null()).stdout(log.try_clone().expect("dup")).stderr(log).spawn().expect("spawn kumod")
}

/// Runs kumod expecting it to refuse to start: returns its exit status and what it printed.
fn refused(dir: &Path, args: &[String], env: &[(&str, &str)]) -> (ExitStatus, String) {
    let log = dir.join("kumod.log");
    let before = std::fs::read_to_string(&log).map(|s| s.len()).unwrap_or(0);
    let mut child = spawn_raw(dir, args, env);
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() >= deadline || dir.join("kumod.addr").exists() {
            let _ = child.kill();
            let _ = child.wait();
            let out = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("kumod started (or hung) instead of refusing:\n{}", &out[before.min(out.len())..]);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = std::fs::read_to_string(&log).unwrap_or_default();
    (status, out[before.min(out.len())..].to_string())
}

fn one_host(c: &Cloud) -> Value {
    let (s, v) = c.get("/v1/hosts");
    assert_eq!(s, 200, "{v}");
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "exactly one host expected: {v}");
    items[0].clone()
}

fn reconciler(c: &Cloud, name: &str) -> Value {
    let (s, v) = c.get("/v1/system/reconcilers");
    assert_eq!(s, 200, "{v}");
    v.as_array().and_then(|a| a.iter().find(|r| r["name"] == name).cloned()).unwrap_or_else(|| panic!("{v}"))
}

/// Every entry `quarantine/<kind>/*/<file>` (the file names quarantined of that kind).
fn quarantined(dir: &Path, kind: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir.join("quarantine").join(kind)).into_iter().flatten().flatten() {
        for f in std::fs::read_dir(e.path()).into_iter().flatten().flatten() {
            out.push(f.file_name().to_string_lossy().into_owned());
        }
    }
    out.sort();
    out
}

/// Item 1: the host's id is kept in the data directory; another --host-name renames the host row,
/// never registers a second host, and nothing of the first is collected as a leak.
#[test]
fn another_host_name_renames_the_host_and_destroys_nothing() {
    let mut c = cloud(&["--host-name", "alpha"]);
    c.create_project("web");
    let (s, v) = c.post(
        "/v1/instances?project=web",
        json!({"name": "vm1", "image": common::FIXTURE_IMAGE, "instance_type": "k1-nano"}),
    );
    assert_eq!(s, 202, "{v}");
    c.wait_state("web", "vm1", "running", WAIT);
    let host = one_host(&c);
    assert_eq!(host["name"], "alpha", "{host}");
    let id_file = c.data_dir().join("host-id");
    assert_eq!(std::fs::read_to_string(&id_file).expect("host-id").trim(), host["id"].as_str().expect("id"));
    assert_eq!(mode(&id_file), 0o600);

    let args = cloud_args(&c, &["--host-name", "beta"]);
    c.restart_with(&args.iter().map(String::as_str).collect::<Vec<_>>());

    let renamed = one_host(&c);
    assert_eq!((&renamed["id"], &renamed["name"]), (&host["id"], &json!("beta")), "{renamed}");
    // The instance is still this host's: the reconciler handles it (the sim guest died with the
    // old process, so it is found stopped) and can start it again; nothing was collected.
    let v = c.wait_state("web", "vm1", "stopped", WAIT);
    assert_eq!(v["host"], "beta", "{v}");
    let (s, v) = c.post_empty("/v1/instances/vm1/start?project=web");
    assert_eq!(s, 202, "{v}");
    c.wait_state("web", "vm1", "running", WAIT);
    let r = reconciler(&c, "instances");
    assert_eq!((r["leaks_collected"].as_u64(), r["foreign_skipped"].as_u64()), (Some(0), Some(0)), "{r}");
}

/// Item 1 (migration): a data directory from before host ids (no host-id file, one host row by
/// name) adopts the existing row, even under a new name.
#[test]
fn a_data_dir_without_host_id_adopts_its_existing_host_row() {
    let mut c = cloud(&["--host-name", "old"]);
    let host = one_host(&c);
    c.kill9();
    std::fs::remove_file(c.data_dir().join("host-id")).expect("rm host-id");
    let args = cloud_args(&c, &["--host-name", "renamed"]);
    c.restart_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let adopted = one_host(&c);
    assert_eq!((&adopted["id"], &adopted["name"]), (&host["id"], &json!("renamed")), "{adopted}");
    assert_eq!(std::fs::read_to_string(c.data_dir().join("host-id")).expect("host-id").trim(), host["id"]);
}

/// Item 2: a fresh database, or another cloud's, is refused with both ids named; the data
/// directory is untouched and the right database still works.
#[test]
fn a_fresh_or_foreign_database_is_refused_naming_both_ids() {
    let mut c = cloud(&[]);
    c.create_project("web");
    let (s, v) = c.post(
        "/v1/instances?project=web",
        json!({"name": "vm1", "image": common::FIXTURE_IMAGE, "instance_type": "k1-nano"}),
    );
    assert_eq!(s, 202, "{v}");
    c.wait_state("web", "vm1", "running", WAIT);
    let cloud_id = std::fs::read_to_string(c.data_dir().join("cloud-id")).expect("cloud-id").trim().to_string();
    assert_eq!(mode(&c.data_dir().join("cloud-id")), 0o600);
    c.kill9();
    let listing = |d: &Path| {
        let mut v: Vec<PathBuf> =
            walk(d).into_iter().filter(|p| !p.ends_with("kumod.log") && !p.ends_with("kumod.addr")).collect();
        v.sort();
        v
    };
    let before = listing(c.data_dir());

    // A fresh, empty database.
    let fresh = tempfile::tempdir().expect("tmp");
    let url = format!("sqlite://{}", fresh.path().join("new.db").display());
    let (status, out) = refused(c.data_dir(), &cloud_args(&c, &["--database", &url]), &[]);
    assert!(!status.success());
    assert!(out.contains("refusing to start") && out.contains(&cloud_id) && out.contains("fresh or empty"), "{out}");

    // Another cloud's database.
    let mut other = cloud(&[]);
    other.kill9();
    let other_id = std::fs::read_to_string(other.data_dir().join("cloud-id")).expect("cloud-id").trim().to_string();
    let url = format!("sqlite://{}", other.data_dir().join("kumo.db").display());
    let (status, out) = refused(c.data_dir(), &cloud_args(&c, &["--database", &url]), &[]);
    assert!(!status.success());
    assert!(out.contains(&cloud_id) && out.contains(&other_id), "both ids must be named: {out}");
    assert_eq!(listing(c.data_dir()), before, "a refused start changed the data directory");

    // Its own database: everything is still there.
    c.restart();
    let (s, v) = c.get("/v1/instances/vm1?project=web");
    assert_eq!(s, 200, "{v}");
}

/// Two kumods on one data directory would each collect the other's guests as leaks: the second is
/// refused before it touches anything, and the first keeps serving.
#[test]
fn a_second_kumod_on_the_same_data_directory_is_refused_and_the_first_keeps_serving() {
    let c = cloud(&[]);
    c.create_project("web");
    let addr = std::fs::read_to_string(c.data_dir().join("kumod.addr")).expect("kumod.addr");
    let (status, out) = refused(c.data_dir(), &cloud_args(&c, &[]), &[]);
    // `refused` removes kumod.addr to notice a start: give the first kumod's back.
    std::fs::write(c.data_dir().join("kumod.addr"), &addr).expect("restore kumod.addr");
    assert!(!status.success());
    assert!(out.contains("another kumod is already running on"), "{out}");
    let (s, v) = c.get("/v1/projects/web");
    assert_eq!(s, 200, "the first kumod must keep serving: {v}");
}

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![d.to_path_buf()];
    while let Some(p) = stack.pop() {
        out.push(p.clone());
        if p.is_dir() && !p.is_symlink() {
            stack.extend(std::fs::read_dir(&p).into_iter().flatten().flatten().map(|e| e.path()));
        }
    }
    out
}

/// Items 2, 13, 14: leftovers planted in the data directory are quarantined (moved aside, counted
/// in the sweep's status and /metrics), a stale unwrapped secret is deleted, and the quarantine
/// is emptied once past its grace period.
#[test]
fn leftovers_are_quarantined_and_stale_secrets_deleted() {
    let mut c = cloud(&[]);
    c.kill9();
    let d = c.data_dir().to_path_buf();
    let (img, vol, inst) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    // A half-finished upload (no image record), a snapshot's new top, a provisioning temporary,
    // an unwrapped LUKS key left by a kill -9 during a guest start.
    std::fs::create_dir_all(d.join(format!("images/{img}"))).expect("mkdir");
    std::fs::write(d.join(format!("images/{img}/upload")), b"half an image").expect("plant");
    std::fs::create_dir_all(d.join("volumes/keys")).expect("mkdir");
    std::fs::write(d.join(format!("volumes/{vol}.qcow2.new")), b"new top").expect("plant");
    let secret = d.join(format!("volumes/keys/{vol}.0123abcd.secret"));
    std::fs::write(&secret, b"00112233445566778899aabbccddeeff").expect("plant");
    std::fs::create_dir_all(d.join(format!("instances/{inst}"))).expect("mkdir");
    std::fs::write(d.join(format!("instances/{inst}/disk.qcow2.tmp")), b"tmp").expect("plant");
    let seeded: Vec<PathBuf> =
        std::fs::read_dir(d.join("images")).expect("images").flatten().map(|e| e.path()).collect();

    c.restart();

    assert!(!secret.exists(), "the stale secret was not swept");
    assert!(quarantined(&d, "keys").is_empty(), "secrets are deleted, never kept in the quarantine");
    assert!(!d.join(format!("images/{img}")).exists());
    assert_eq!(quarantined(&d, "images"), [img.to_string()]);
    let entry = d.join("quarantine/images").read_dir().expect("quarantine").flatten().next().expect("entry").path();
    let upload = entry.join(img.to_string()).join("upload");
    assert_eq!(std::fs::read(&upload).expect("the quarantined upload"), b"half an image");
    assert_eq!(quarantined(&d, "volumes"), [format!("{vol}.qcow2.new")]);
    assert_eq!(quarantined(&d, "instances"), ["disk.qcow2.tmp"]);
    // The live seeded image was left alone.
    for p in seeded.iter().filter(|p| !p.ends_with(img.to_string())) {
        assert!(p.join("disk.qcow2").exists(), "{} was swept", p.display());
    }
    let sweep = reconciler(&c, "sweep");
    assert_eq!(sweep["quarantined"].as_u64(), Some(3), "{sweep}");
    let metrics = c.text("/metrics");
    for kind in ["images", "volumes", "instances"] {
        assert!(metrics.contains(&format!("kumo_quarantined_total{{kind=\"{kind}\"}} 1")), "{kind}: {metrics}");
    }

    // Past the grace period (0 days here), the quarantine is emptied at the next start.
    let args = cloud_args(&c, &["--quarantine-days", "0"]);
    c.restart_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
    for kind in ["images", "volumes", "instances"] {
        assert!(quarantined(&d, kind).is_empty(), "{kind} not purged");
    }
    assert!(c.text("/metrics").contains("kumo_quarantine_purged_total 3"), "{}", c.text("/metrics"));
}

/// Item 7: the data directory and what is in it are owner-only after start, and wrong modes of
/// existing files are fixed at the next start.
#[test]
fn the_data_directory_is_owner_only_and_wrong_modes_are_fixed() {
    let mut c = cloud(&[]);
    let d = c.data_dir().to_path_buf();
    let image_disk = walk(&d.join("images")).into_iter().find(|p| p.ends_with("disk.qcow2")).expect("seeded image");
    let check = || {
        assert_eq!(mode(&d), 0o700, "data dir");
        for f in ["kumo.db", "admin-token", "host-id", "cloud-id", "kumod.addr"] {
            assert_eq!(mode(&d.join(f)), 0o600, "{f}");
        }
        assert_eq!(mode(&d.join("images")), 0o700, "images dir");
        assert_eq!(mode(&image_disk), 0o600, "image disk");
    };
    check();
    c.kill9();
    for (p, m) in
        [(d.clone(), 0o755), (d.join("kumo.db"), 0o644), (image_disk.clone(), 0o644), (d.join("images"), 0o755)]
    {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).expect("chmod");
    }
    c.restart();
    check();
    assert!(c.log_tail(200).contains("readable by other local users"), "the fix is not logged");
}

/// Item 13: the master key can live outside the data directory (a file, or the environment);
/// a key that did not seal the existing volume keys is refused, and so is a missing one.
#[test]
fn master_key_from_outside_the_data_dir_and_a_wrong_one_is_refused() {
    use kumo_agent::storage::keys::{KeyStore, MasterKey};
    let keys = tempfile::tempdir().expect("tmp");
    let right = keys.path().join("right.key");
    let wrong = keys.path().join("wrong.key");
    std::fs::write(&right, "ab".repeat(32)).expect("key");
    std::fs::write(&wrong, "cd".repeat(32)).expect("key");
    std::fs::set_permissions(&right, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let right_s = right.to_string_lossy().into_owned();

    let mut c = cloud(&["--master-key-file", &right_s]);
    c.kill9();
    let d = c.data_dir().to_path_buf();
    // A volume key sealed under the right key (what an encrypted volume leaves on a real host).
    let master = MasterKey::parse("ab".repeat(32).as_bytes(), "test").expect("key");
    KeyStore::with_master(d.join("volumes/keys"), master).create(uuid::Uuid::now_v7()).expect("seal");

    let with_file = cloud_args(&c, &["--master-key-file", &right_s]);
    c.restart_with(&with_file.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(!d.join("master.key").exists(), "a master key was written into the data directory");
    c.kill9();

    let (status, out) = refused(&d, &cloud_args(&c, &["--master-key-file", &wrong.to_string_lossy()]), &[]);
    assert!(!status.success());
    assert!(out.contains("does not open the keys") && out.contains("wrong.key"), "{out}");
    let (_, out) = refused(&d, &cloud_args(&c, &[]), &[]);
    assert!(out.contains("no master key at") && out.contains("master.key"), "{out}");

    // The key itself from the service's environment (base64 here; hex works too).
    let b64 = "q6urq6urq6urq6urq6urq6urq6urq6urq6urq6urq6s="; // 32 bytes of 0xab
    let mut child = spawn_raw(&d, &cloud_args(&c, &[]), &[("KUMOD_MASTER_KEY", b64)]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(d.join("kumod.addr")).is_ok_and(|a| a.ends_with('\n')) {
        if let Some(s) = child.try_wait().expect("wait") {
            panic!("kumod with the key from the environment exited ({s}):\n{}", c.log_tail(30));
        }
        assert!(Instant::now() < deadline, "kumod did not start:\n{}", c.log_tail(30));
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// Item 14, a crash at a named step: kumod aborts right after an image delete committed (fault
/// point `image.delete.committed`), before the image's directory is removed; the next start
/// quarantines the orphaned directory.
#[test]
fn a_crash_after_an_image_delete_commits_leaves_an_orphan_the_next_start_quarantines() {
    let mut c = cloud(&[]);
    c.create_project("p");
    let resp = c
        .http
        .post(format!("{}/v1/images/import?project=p&name=img", c.url))
        .bearer_auth(&c.token)
        .header("content-type", "application/octet-stream")
        .body(c.fixture_bytes())
        .send()
        .expect("import");
    assert_eq!(resp.status().as_u16(), 201);
    let image: Value = resp.json().expect("json");
    let id = image["id"].as_str().expect("id").to_string();
    let dir = c.data_dir().join("images").join(&id);
    assert!(dir.join("disk.qcow2").exists());
    c.kill9();

    let d = c.data_dir().to_path_buf();
    let (mut child, addr) = spawn_with_fault(&c, "image.delete.committed");
    let r = c.http.delete(format!("http://{addr}/v1/images/img?project=p")).bearer_auth(&c.token).send();
    assert!(r.is_err(), "the delete answered although kumod was to abort: {r:?}");
    wait_abort(&c, &mut child, "image.delete.committed");
    assert!(dir.join("disk.qcow2").exists(), "the crash came before the directory was removed");

    c.restart();
    let (s, v) = c.get("/v1/images/img?project=p");
    assert_eq!(s, 404, "the delete had committed: {v}");
    assert!(!dir.exists(), "the orphaned image directory is still in place");
    assert_eq!(quarantined(&d, "images"), [id]);
}

/// Starts kumod on the cloud's (stopped) data directory with `KUMOD_FAULT=<point>`; returns the
/// process and its API address.
fn spawn_with_fault(c: &Cloud, point: &str) -> (Child, String) {
    let d = c.data_dir();
    let mut child = spawn_raw(d, &cloud_args(c, &[]), &[("KUMOD_FAULT", point)]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(a) = std::fs::read_to_string(d.join("kumod.addr")) {
            if a.ends_with('\n') {
                return (child, a.trim().to_string());
            }
        }
        assert!(child.try_wait().expect("wait").is_none(), "kumod exited early:\n{}", c.log_tail(30));
        assert!(Instant::now() < deadline, "kumod did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until kumod aborted (SIGABRT) at the named fault point.
fn wait_abort(c: &Cloud, child: &mut Child, point: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "kumod did not abort at the fault point {point}");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.signal(), Some(libc::SIGABRT), "{status}");
    assert!(c.log_tail(20).contains(&format!("aborting at '{point}'")), "{}", c.log_tail(20));
}

/// Item 14, a crash at a named step: kumod aborts once an upload is fully received but before
/// it is converted and recorded (`image.import.received`); the next start quarantines the
/// half-finished upload and the image does not exist.
#[test]
fn a_crash_during_an_image_import_leaves_an_upload_the_next_start_quarantines() {
    let mut c = cloud(&[]);
    c.create_project("p");
    c.kill9();
    let d = c.data_dir().to_path_buf();
    let before: Vec<PathBuf> =
        std::fs::read_dir(d.join("images")).expect("images").flatten().map(|e| e.path()).collect();
    let (mut child, addr) = spawn_with_fault(&c, "image.import.received");
    let r = c
        .http
        .post(format!("http://{addr}/v1/images/import?project=p&name=half"))
        .bearer_auth(&c.token)
        .header("content-type", "application/octet-stream")
        .body(c.fixture_bytes())
        .send();
    assert!(r.is_err(), "the import answered although kumod was to abort: {r:?}");
    wait_abort(&c, &mut child, "image.import.received");
    let upload_dirs: Vec<PathBuf> = std::fs::read_dir(d.join("images"))
        .expect("images")
        .flatten()
        .map(|e| e.path())
        .filter(|p| !before.contains(p))
        .collect();
    assert_eq!(upload_dirs.len(), 1, "the crash left the upload's directory: {upload_dirs:?}");
    assert!(upload_dirs[0].join("upload").exists());

    c.restart();
    assert!(!upload_dirs[0].exists(), "the half-finished upload is still in place");
    let id = upload_dirs[0].file_name().expect("name").to_string_lossy().into_owned();
    assert_eq!(quarantined(&d, "images"), [id]);
    let (s, v) = c.get("/v1/images/half?project=p");
    assert_eq!(s, 404, "{v}");
}
