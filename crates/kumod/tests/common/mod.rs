//! Test harness: a real `kumod` on port 0 with a fresh data directory, driven over HTTP.
//! The guard kills the process and every QEMU it started, and removes the directory, even when
//! the test fails.
#![allow(dead_code)]

pub mod cluster;

use reqwest::blocking::Client;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Kumod {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub url: String,
    pub token: String,
    args: Vec<String>,
    pub http: Client,
    /// This kumod's own PostgreSQL database (dropped after kumod is killed), when the tests run
    /// on PostgreSQL; None: SQLite in the data directory.
    pub db: Option<PostgresDb>,
    /// Extra environment of the kumod process (e.g. a fault-injection point), from the next start.
    pub env: Vec<(String, String)>,
}

/// The environment variable that picks the tests' database: `postgres` runs every kumod of the
/// tests on a fresh PostgreSQL database of its own; unset or `sqlite`, on SQLite (`kumo.db` in
/// its data directory). scripts/test.sh runs the API, authorisation and billing suites both ways.
pub const DATABASE_ENV: &str = "KUMO_TEST_DATABASE";

/// Whether the tests run on PostgreSQL (KUMO_TEST_DATABASE=postgres). Any other value than
/// `postgres`, `sqlite` or nothing fails the test: a typo must not silently test SQLite.
pub fn on_postgres() -> bool {
    match std::env::var(DATABASE_ENV).as_deref() {
        Ok("postgres") => true,
        Ok("sqlite") | Ok("") | Err(std::env::VarError::NotPresent) => false,
        Ok(other) => panic!("{DATABASE_ENV}={other}: use `postgres` or `sqlite`"),
        Err(e) => panic!("{DATABASE_ENV}: {e}"),
    }
}

/// The environment variable that picks how each kumod of the tests holds its host agent: `http`
/// serves the agent's API on a loopback port and calls it over HTTPS (`kumod --agent-adapter
/// http`, see kumo-host-rpc), proving the control plane / host seam crosses the network as a
/// remote host's would; `json` passes every call and its answer through a JSON round trip in
/// process (`--agent-adapter json`, kumo_host_api::JsonRoundTrip); unset or `direct`, in process.
/// scripts/test.sh runs the sim-driver API suites directly and over `http`.
pub const AGENT_ENV: &str = "KUMO_TEST_AGENT";

/// The `--agent-adapter` of the tests' kumod processes (KUMO_TEST_AGENT). Any other value than
/// `http`, `json`, `direct` or nothing fails the test: a typo must not silently test the direct
/// path.
pub fn agent_adapter() -> &'static str {
    match std::env::var(AGENT_ENV).as_deref() {
        Ok("http") => "http",
        Ok("json") => "json",
        Ok("direct") | Ok("") | Err(std::env::VarError::NotPresent) => "direct",
        Ok(other) => panic!("{AGENT_ENV}={other}: use `http`, `json` or `direct`"),
        Err(e) => panic!("{AGENT_ENV}: {e}"),
    }
}

/// Skips the rest of a test on PostgreSQL, saying why (a test of something only SQLite has).
/// Returns true when the test must stop here.
pub fn sqlite_only(reason: &str) -> bool {
    if on_postgres() {
        eprintln!("SKIPPED on PostgreSQL: {reason}");
        return true;
    }
    false
}

/// A fresh PostgreSQL database `kumo_test_<random>`, created through KUMO_TEST_POSTGRES_URL (what
/// scripts/postgres.sh prints) like kumo-store's tests do, and dropped (WITH (FORCE)) on drop.
pub struct PostgresDb {
    admin_url: String,
    pub name: String,
    pub url: String,
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(f)
}

impl PostgresDb {
    /// Fails loudly when PostgreSQL was asked for and is not there.
    pub fn create() -> PostgresDb {
        use sqlx::{Connection, Executor};
        let admin_url = match std::env::var("KUMO_TEST_POSTGRES_URL") {
            Ok(u) if !u.trim().is_empty() => u.trim().to_string(),
            _ => panic!(
                "{DATABASE_ENV}=postgres needs KUMO_TEST_POSTGRES_URL (scripts/postgres.sh prints it: \
                 KUMO_TEST_POSTGRES_URL=$(scripts/postgres.sh | tail -n 1))"
            ),
        };
        sqlx::any::install_default_drivers();
        let name = format!("kumo_test_{}", uuid::Uuid::new_v4().simple());
        block_on(async {
            let mut admin = sqlx::AnyConnection::connect(&admin_url).await.unwrap_or_else(|e| {
                panic!("{DATABASE_ENV}=postgres: connect to KUMO_TEST_POSTGRES_URL={admin_url}: {e}")
            });
            // C collation, as docs/operations.md tells operators (names sort byte-wise, as on SQLite).
            admin
                .execute(format!("CREATE DATABASE {name} TEMPLATE template0 LC_COLLATE 'C' LC_CTYPE 'C'").as_str())
                .await
                .unwrap_or_else(|e| panic!("CREATE DATABASE {name} through {admin_url}: {e}"));
            let _ = admin.close().await;
        });
        let url = match admin_url.rsplit_once('/') {
            Some((server, _)) if server.contains("://") && !server.ends_with('/') => format!("{server}/{name}"),
            _ => panic!("KUMO_TEST_POSTGRES_URL={admin_url}: expected postgres://user:pass@host:port/database"),
        };
        PostgresDb { admin_url, name, url }
    }
}

impl Drop for PostgresDb {
    fn drop(&mut self) {
        use sqlx::{Connection, Executor};
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Its own thread and runtime: the test may be unwinding.
        let dropped = std::thread::spawn(move || {
            block_on(async {
                let mut admin = sqlx::AnyConnection::connect(&admin_url).await.map_err(|e| e.to_string())?;
                admin
                    .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok::<(), String>(())
            })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("could not drop test database {}: {e}", self.name),
            Err(_) => eprintln!("could not drop test database {}: the dropping thread panicked", self.name),
        }
    }
}

pub fn kumod_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kumod"))
}

/// The `kumo` CLI binary, built beside kumod (scripts/test.sh builds the workspace first).
pub fn kumo_binary() -> PathBuf {
    kumod_binary().with_file_name("kumo")
}

impl Kumod {
    /// kumod with the simulated hypervisor.
    pub fn sim(extra: &[&str]) -> Kumod {
        let mut args = vec!["--driver", "sim", "--image-cache", "/nonexistent"];
        args.extend_from_slice(extra);
        Kumod::start(&args)
    }

    pub fn start(extra: &[&str]) -> Kumod {
        // Short path: QMP socket paths must stay under 108 bytes.
        let dir = tempfile::Builder::new().prefix("kt").tempdir_in("/tmp").expect("temp dir");
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let db = on_postgres().then(PostgresDb::create);
        if let Some(db) = &db {
            args.extend(["--database".to_string(), db.url.clone()]);
        }
        let mut k = Kumod {
            child: None,
            dir,
            url: String::new(),
            token: String::new(),
            args,
            http: Client::builder().timeout(Duration::from_secs(60)).build().expect("http client"),
            db,
            env: Vec::new(),
        };
        k.spawn();
        k
    }

    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The URL of this kumod's database (SQLite in its data directory, or its PostgreSQL one).
    pub fn database_url(&self) -> String {
        match &self.db {
            Some(db) => db.url.clone(),
            None => format!("sqlite://{}", self.data_dir().join("kumo.db").display()),
        }
    }

    fn spawn(&mut self) {
        let addr_file = self.dir.path().join("kumod.addr");
        let _ = std::fs::remove_file(&addr_file);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("kumod.log"))
            .expect("log file");
        let child = Command::new(kumod_binary())
            .arg("--data-dir")
            .arg(self.dir.path())
            .args(["--listen", "127.0.0.1:0", "--s3-listen", "127.0.0.1:0"])
            .args(&self.args)
            .env("RUST_LOG", "info,kumo_control=debug")
            .env("KUMOD_AGENT_ADAPTER", agent_adapter())
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("spawn kumod");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(addr) = std::fs::read_to_string(&addr_file) {
                if addr.ends_with('\n') {
                    self.url = format!("http://{}", addr.trim());
                    break;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!("kumod exited at start ({status}):\n{}", self.log_tail(60));
            }
            assert!(Instant::now() < deadline, "kumod did not start within 60s:\n{}", self.log_tail(60));
            std::thread::sleep(Duration::from_millis(20));
        }
        self.token =
            std::fs::read_to_string(self.dir.path().join("admin-token")).expect("admin-token").trim().to_string();
    }

    /// SIGKILL, as a crash would.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts kumod again on the same data directory.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// Stops kumod as an operator's `systemctl stop` does (SIGTERM), waits for it to exit, and
    /// starts it again.
    pub fn restart_gracefully(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
            let _ = c.wait();
        }
        self.spawn();
    }

    /// Starts kumod again on the same data directory with other flags.
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.args = extra.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let s = std::fs::read_to_string(self.dir.path().join("kumod.log")).unwrap_or_default();
        let all: Vec<&str> = s.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    fn send(&self, req: reqwest::blocking::RequestBuilder) -> (u16, Value) {
        let resp = req.bearer_auth(&self.token).send().expect("request");
        let status = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, v)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.send(self.http.get(format!("{}{path}", self.url)))
    }
    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.url)).json(&body))
    }
    pub fn post_empty(&self, path: &str) -> (u16, Value) {
        self.send(self.http.post(format!("{}{path}", self.url)))
    }
    pub fn send_put(&self, path: &str, body: Value) -> (u16, Value) {
        self.send(self.http.put(format!("{}{path}", self.url)).json(&body))
    }
    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.send(self.http.delete(format!("{}{path}", self.url)))
    }
    pub fn text(&self, path: &str) -> String {
        self.http
            .get(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .send()
            .expect("request")
            .text()
            .unwrap_or_default()
    }

    pub fn create_project(&self, name: &str) {
        let (s, v) = self.post("/v1/projects", json!({"name": name}));
        assert_eq!(s, 201, "{v}");
    }

    /// Polls an instance until `pred` holds for its view (or it is gone, when `state` is "gone").
    pub fn wait_state(&self, project: &str, name: &str, state: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            let (s, v) = self.get(&format!("/v1/instances/{name}?project={project}"));
            if state == "gone" && s == 404 {
                return v;
            }
            if s == 200 && v["state"] == state {
                return v;
            }
            if s == 200 {
                last = v;
            }
            assert!(
                Instant::now() < deadline,
                "instance {name} did not reach '{state}' within {timeout:?}; last view: {last}\nkumod log:\n{}",
                self.log_tail(40)
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Kumod {
    fn drop(&mut self) {
        self.kill9();
        kill_qemus_under(self.dir.path());
    }
}

/// Kills every QEMU whose command line mentions `dir`, and reaps those that are our children.
pub fn kill_qemus_under(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    for pid in qemu_pids_under(&needle) {
        // SAFETY: plain kill(2)/waitpid(2) on a pid.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
        }
    }
    reap_zombie_children();
}

pub fn qemu_pids_under(needle: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.starts_with("qemu-system") && cmd.contains(needle) {
                pids.push(pid);
            }
        }
    }
    pids
}

/// Reaps our zombie children (QEMUs orphaned by a killed kumod are re-parented to the test
/// process, which makes itself a child subreaper; see `become_subreaper`).
pub fn reap_zombie_children() {
    let me = std::process::id() as i32;
    for _ in 0..50 {
        let mut any = false;
        if let Ok(rd) = std::fs::read_dir("/proc") {
            for e in rd.flatten() {
                let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
                let Some((_, rest)) = stat.rsplit_once(')') else { continue };
                let fields: Vec<&str> = rest.split_whitespace().collect();
                if fields.len() > 1 && fields[1].parse::<i32>().ok() == Some(me) && stat.contains("(qemu-system") {
                    // SAFETY: waitpid on our own child.
                    let r = unsafe { libc::waitpid(pid, std::ptr::null_mut(), libc::WNOHANG) };
                    if r == 0 {
                        any = true; // still running (being killed)
                    }
                }
            }
        }
        if !any {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Makes the test process the reaper of orphaned descendants (QEMUs of a SIGKILLed kumod).
pub fn become_subreaper() {
    // SAFETY: prctl with an integer argument.
    unsafe {
        libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
    }
}

/// Name of the image every sim cloud of the tests has.
pub const FIXTURE_IMAGE: &str = "fixture";

/// An image cache with one image, `fixture`: a 1 GiB (sparse, empty) qcow2 disk made with
/// `qemu-img` (from qemu-utils, which scripts/install-deps.sh installs).
pub fn fixture_image_cache() -> tempfile::TempDir {
    let dir = tempfile::Builder::new().prefix("kimg").tempdir_in("/tmp").expect("temp dir");
    let img = dir.path().join(FIXTURE_IMAGE);
    std::fs::create_dir(&img).expect("mkdir");
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(img.join("disk.qcow2"))
        .arg("1G")
        .output()
        .unwrap_or_else(|e| {
            panic!("qemu-img is needed for the fixture image (scripts/install-deps.sh installs it): {e}")
        });
    assert!(out.status.success(), "qemu-img create failed: {}", String::from_utf8_lossy(&out.stderr));
    let manifest = json!({"name": FIXTURE_IMAGE, "os": "test fixture (empty disk)", "disk": "disk.qcow2"});
    std::fs::write(img.join("manifest.json"), manifest.to_string()).expect("manifest");
    dir
}

/// A kumod on the sim driver plus the image cache it was started with (removed after kumod).
pub struct Cloud {
    pub k: Kumod,
    pub images: tempfile::TempDir,
}

impl std::ops::Deref for Cloud {
    type Target = Kumod;
    fn deref(&self) -> &Kumod {
        &self.k
    }
}

impl std::ops::DerefMut for Cloud {
    fn deref_mut(&mut self) -> &mut Kumod {
        &mut self.k
    }
}

impl Cloud {
    /// The bytes of the fixture image (for import tests).
    pub fn fixture_bytes(&self) -> Vec<u8> {
        std::fs::read(self.images.path().join(FIXTURE_IMAGE).join("disk.qcow2")).expect("fixture image")
    }
}

/// kumod with the sim driver, the fixture image and `extra` flags; checks the image is registered.
pub fn cloud(extra: &[&str]) -> Cloud {
    let images = fixture_image_cache();
    let cache = images.path().to_string_lossy().into_owned();
    let mut args = vec!["--driver", "sim", "--image-cache", cache.as_str()];
    args.extend_from_slice(extra);
    let k = Kumod::start(&args);
    let (s, v) = k.get("/v1/images");
    assert_eq!(s, 200, "{v}");
    assert!(
        v["items"].as_array().is_some_and(|i| i.iter().any(|im| im["name"] == FIXTURE_IMAGE)),
        "the fixture image was not registered: {v}\n{}",
        k.log_tail(40)
    );
    Cloud { k, images }
}

/// The image cache the real-QEMU tests boot the tiny image from: the machine-wide one, or
/// `KUMO_TEST_IMAGE_CACHE` (e.g. a changed tiny recipe built into a temp dir before CI rebuilds it).
pub fn image_cache() -> &'static str {
    static DIR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DIR.get_or_init(|| std::env::var("KUMO_TEST_IMAGE_CACHE").unwrap_or_else(|_| "/var/cache/kumo/images".into()))
}

/// Whether a missing prerequisite must fail the test rather than skip it: in CI (env `CI`) and under
/// scripts/test.sh (env `KUMO_TEST_STRICT`), which is the README's test command.
pub fn strict() -> bool {
    std::env::var_os("CI").is_some() || std::env::var_os("KUMO_TEST_STRICT").is_some()
}

/// Whether real-QEMU tests can run: root, `qemu-system-x86_64` and the tiny image. Without them
/// they fail in CI (env CI set) and skip with a printed reason elsewhere.
pub fn qemu_prerequisites() -> bool {
    let mut missing = Vec::new();
    if Command::new("qemu-system-x86_64").arg("--version").output().is_err() {
        missing.push("qemu-system-x86_64 (scripts/install-deps.sh)");
    }
    if !Path::new(image_cache()).join("tiny/manifest.json").exists() {
        missing.push("the tiny image (images/tiny/build.sh)");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        missing.push("root");
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("real-QEMU tests need: {}", missing.join(", "));
    assert!(!strict(), "{msg}");
    eprintln!("SKIPPED: {msg}");
    false
}

/// Writes into a (stopped) kumod's database (SQLite or PostgreSQL), in one transaction: billing
/// tests and benches put events in the past this way.
pub fn with_store(k: &Kumod, f: impl AsyncFnOnce(&mut kumo_store::Conn)) {
    let url = k.database_url();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let store = kumo_store::Store::open(&url).await.expect("open store");
        let mut tx = store.begin().await.expect("begin");
        f(&mut *tx).await;
        tx.commit().await.expect("commit");
        store.close().await;
    });
}

/// Records a life of an instance: created at `t0` (k1-small, 5 GiB), running from t0+10s for
/// `run_hours`, stopped, destroyed at `destroyed` (4 events).
pub async fn past_instance(
    tx: &mut kumo_store::Conn,
    project: uuid::Uuid,
    name: &str,
    t0: chrono::DateTime<chrono::Utc>,
    run_hours: i64,
    destroyed: chrono::DateTime<chrono::Utc>,
) {
    let id = uuid::Uuid::now_v7();
    let detail = json!({"instance_type": "k1-small", "vcpus": 1, "memory_mib": 512, "disk_gib": 5}).to_string();
    let running = t0 + chrono::TimeDelta::seconds(10);
    let steps = [
        (t0, "created", "creating"),
        (running, "state_changed", "running"),
        (running + chrono::TimeDelta::hours(run_hours), "state_changed", "stopped"),
        (destroyed, "state_changed", "destroyed"),
    ];
    for (at, kind, to) in steps {
        let e = kumo_store::events::NewEvent {
            project_id: Some(project.into()),
            resource_type: "instance",
            resource_id: id,
            resource_name: name,
            kind,
            from_state: None,
            to_state: Some(to),
            cause: "test: a past period",
            detail: Some(detail.clone()),
        };
        kumo_store::events::record_at(tx, &e, at).await.expect("event");
    }
}

/// A network namespace removed on drop (with every bridge, tap and nft table in it).
pub struct Netns(pub String);

impl Netns {
    pub fn new(tag: &str) -> Netns {
        let name = format!("kumo-{tag}-{}", std::process::id());
        // One left by an earlier run that was killed (none, usually: stderr is not the test's).
        let _ = Command::new("ip").args(["netns", "del", &name]).stderr(Stdio::null()).status();
        Netns(name)
    }
    pub fn exec(&self, args: &[&str]) -> std::process::Output {
        Command::new("ip").args(["netns", "exec", &self.0]).args(args).output().expect("ip netns exec")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}
